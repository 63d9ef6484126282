//! A cheap, allocation-light scan of SQL text for the statements that change session state.
//! It runs on every query in transaction mode, so it looks for a few keywords first and only
//! then looks closer. It errs on the side of pinning: a false pin costs pooling efficiency for
//! one client, a missed pin breaks the client.

/// Why a client is pinned to its server connection in transaction mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// CREATE TEMP/TEMPORARY TABLE (or sequence/view).
    TempObject,
    /// DECLARE … WITH HOLD.
    HoldCursor,
    /// Session-level advisory lock.
    AdvisoryLock,
    /// LISTEN.
    Listen,
    /// SQL-level PREPARE.
    SqlPrepare,
    /// LOAD or other state pgproxy cannot track.
    Other,
}

impl PinReason {
    /// Lowercase name for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            PinReason::TempObject => "temp_object",
            PinReason::HoldCursor => "hold_cursor",
            PinReason::AdvisoryLock => "advisory_lock",
            PinReason::Listen => "listen",
            PinReason::SqlPrepare => "sql_prepare",
            PinReason::Other => "other",
        }
    }
}

/// What a statement (or a multi-statement string) does to session state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Creates state that cannot move between server connections.
    pub pin: Option<PinReason>,
    /// May release such state (DISCARD, UNLISTEN, DEALLOCATE, DROP, CLOSE, advisory unlock).
    pub maybe_unpin: bool,
    /// Names of settings it may change (SET, RESET, set_config).
    pub set_names: Vec<String>,
    /// RESET ALL / DISCARD ALL / SET SESSION AUTHORIZATION DEFAULT: every setting may change.
    pub reset_all: bool,
    /// RESET ALL / DISCARD ALL: settings return to the session defaults, which include the
    /// client's startup parameters.
    pub restores_startup: bool,
    /// DISCARD ALL / DEALLOCATE ALL: every prepared statement of the session is gone.
    pub drops_statements: bool,
    /// Reads the session's sequence state (currval, lastval): it must run where this client's
    /// nextval ran, or see none (`reads_sequence_state`).
    pub sequence_state: bool,
}

impl Effects {
    /// True if the statement has no effect on session state.
    pub fn is_empty(&self) -> bool {
        self.pin.is_none()
            && !self.maybe_unpin
            && self.set_names.is_empty()
            && !self.reset_all
            && !self.drops_statements
            && !self.sequence_state
    }
}

/// A leading keyword of statements that may change session state.
fn is_leading(word: &str) -> bool {
    // One length switch and a short compare per word: this runs on every simple Query.
    let mut low = [0u8; 10];
    let Some(dst) = low.get_mut(..word.len()) else {
        return false;
    };
    dst.copy_from_slice(word.as_bytes());
    dst.make_ascii_lowercase();
    matches!(
        &*dst,
        b"set"
            | b"reset"
            | b"create"
            | b"declare"
            | b"listen"
            | b"unlisten"
            | b"prepare"
            | b"discard"
            | b"deallocate"
            | b"drop"
            | b"close"
            | b"load"
    )
}

/// Cheap pre-check run on every statement: a leading keyword from `is_leading`, a second
/// statement, or a call to an advisory-lock function or set_config anywhere.
fn worth_a_closer_look(sql: &str) -> bool {
    let head = strip_leading_comments(sql);
    let first = head
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    if is_leading(first) {
        return true;
    }
    let b = sql.as_bytes();
    if let Some(i) = memchr::memchr(b';', b) {
        if !sql[i + 1..].trim().is_empty() {
            return true;
        }
    }
    let at = |from: usize, word: &[u8]| {
        b.get(from..from + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    memchr::memchr_iter(b'_', b)
        .any(|i| at(i + 1, b"advisory") || (i >= 3 && at(i - 3, b"set_config")))
}

/// Whether the text calls currval( or lastval( (any case; conservative: also in a string or
/// comment). One memchr pass over the text's parentheses.
pub fn reads_sequence_state(sql: &str) -> bool {
    bytes_read_sequence_state(sql.as_bytes())
}

/// [`reads_sequence_state`] over raw bytes (a Query's or Parse's body as received: no UTF-8
/// check, and a statement name that happens to contain `currval(` only errs on the safe side).
pub fn bytes_read_sequence_state(b: &[u8]) -> bool {
    memchr::memchr_iter(b'(', b).any(|i| {
        i >= 7 && {
            let w = &b[i - 7..i];
            w.eq_ignore_ascii_case(b"currval") || w.eq_ignore_ascii_case(b"lastval")
        }
    })
}

/// Classifies SQL text. Fast path: nothing that can change session state → no effects.
pub fn session_effects(sql: &str) -> Effects {
    let mut e = Effects {
        sequence_state: reads_sequence_state(sql),
        ..Effects::default()
    };
    if !worth_a_closer_look(sql) {
        return e;
    }
    for stmt in split_statements(sql) {
        classify_one(stmt, &mut e);
    }
    if contains_ci(sql, "set_config") {
        for name in set_config_names(sql) {
            push_name(&mut e, name);
        }
    }
    if contains_ci(sql, "advisory") {
        let lower = sql.to_ascii_lowercase();
        for f in ["pg_advisory_lock", "pg_try_advisory_lock"] {
            if lower
                .match_indices(f)
                .any(|(i, _)| !lower[i + f.len()..].starts_with("_xact"))
            {
                e.pin.get_or_insert(PinReason::AdvisoryLock);
            }
        }
        if lower.contains("advisory_unlock") {
            e.maybe_unpin = true;
        }
    }
    e
}

fn classify_one(stmt: &str, e: &mut Effects) {
    let words: Vec<String> = stmt
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "set" => set_statement(&words[1..], e),
        "reset" => match w(1) {
            "all" => {
                e.reset_all = true;
                e.restores_startup = true;
            }
            "" => {}
            "session" if w(2) == "authorization" => push_name(e, "session_authorization".into()),
            "time" if w(2) == "zone" => push_name(e, "timezone".into()),
            name => push_name(e, name.into()),
        },
        "discard" => {
            e.maybe_unpin = true;
            if w(1) == "all" {
                e.reset_all = true;
                e.restores_startup = true;
                e.drops_statements = true;
            }
        }
        "deallocate" => {
            e.maybe_unpin = true;
            let all = if w(1) == "prepare" { w(2) } else { w(1) };
            if all == "all" {
                e.drops_statements = true;
            }
        }
        "create" => {
            let temp = words[1..]
                .iter()
                .take(4)
                .any(|x| x == "temp" || x == "temporary")
                || words[1..]
                    .iter()
                    .take(6)
                    .any(|x| x.starts_with("pg_temp.") || x.starts_with("\"pg_temp\"."));
            if temp {
                e.pin.get_or_insert(PinReason::TempObject);
            }
        }
        "declare" if contains_ci(stmt, " with hold") => {
            e.pin.get_or_insert(PinReason::HoldCursor);
        }
        "listen" => {
            e.pin.get_or_insert(PinReason::Listen);
        }
        "prepare" if w(1) != "transaction" => {
            e.pin.get_or_insert(PinReason::SqlPrepare);
        }
        "load" => {
            e.pin.get_or_insert(PinReason::Other);
        }
        "unlisten" | "drop" | "close" => e.maybe_unpin = true,
        _ => {}
    }
}

fn set_statement(words: &[String], e: &mut Effects) {
    let mut i = 0;
    // SET LOCAL counts too: until the transaction ends the setting differs from what pgproxy
    // last read (a statement prepared meanwhile may resolve names under another search_path);
    // read back afterwards, it has its session value again.
    if matches!(
        words.first().map(String::as_str),
        Some("session") | Some("local")
    ) {
        i = 1;
    }
    match words.get(i).map(String::as_str) {
        Some("transaction") | Some("constraints") | None => {}
        Some("time") if words.get(i + 1).map(String::as_str) == Some("zone") => {
            push_name(e, "timezone".into())
        }
        Some("names") => push_name(e, "client_encoding".into()),
        Some("role") => push_name(e, "role".into()),
        Some("authorization") => {
            push_name(e, "session_authorization".into());
            e.reset_all = true;
        }
        Some("characteristics") => push_name(e, "default_transaction_isolation".into()),
        Some(name) => {
            let name = name.split(['=', ' ']).next().unwrap_or(name);
            let name = name.trim_matches('"');
            if !name.is_empty() {
                push_name(e, name.to_string());
            }
        }
    }
}

fn push_name(e: &mut Effects, name: String) {
    if !e.set_names.contains(&name) {
        e.set_names.push(name);
    }
}

/// Names passed as string literals to `set_config('name', …)`.
fn set_config_names(sql: &str) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let mut out = Vec::new();
    for (i, _) in lower.match_indices("set_config") {
        let rest = lower[i + "set_config".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(lit) = rest.strip_prefix('\'') {
            if let Some(end) = lit.find('\'') {
                out.push(lit[..end].to_string());
            }
        }
    }
    out
}

/// Splits on semicolons outside quotes, dollar quotes and comments (good enough to find
/// statement starts; never used to execute anything).
pub(crate) fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                if let Some(tag_end) = sql[i + 1..].find('$') {
                    let tag = &sql[i..i + tag_end + 2];
                    if tag[1..tag.len() - 1]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_')
                    {
                        if let Some(close) = sql[i + tag.len()..].find(tag) {
                            i += tag.len() + close + tag.len() - 1;
                        }
                    }
                }
            }
            b';' => {
                out.push(strip_leading_comments(&sql[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < sql.len() {
        out.push(strip_leading_comments(&sql[start..]));
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

fn strip_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map(|x| x.1).unwrap_or("");
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map(|x| x.1).unwrap_or("");
        } else {
            return s;
        }
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    super::keywords::contains_ignore_case(hay.as_bytes(), needle.as_bytes())
}

/// True if the statement ends a transaction by rolling it back (ROLLBACK / ABORT, not TO SAVEPOINT).
pub fn is_rollback(sql: &str) -> bool {
    let s = strip_leading_comments(sql)
        .trim()
        .trim_end_matches(';')
        .trim();
    let lower = s.to_ascii_lowercase();
    let mut words = lower.split_whitespace();
    matches!(words.next(), Some("rollback") | Some("abort"))
        && !lower.contains(" to ")
        && !lower.contains("prepared")
}

#[cfg(test)]
mod tests;
