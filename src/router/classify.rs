//! Classification of SQL text for replication: may a statement run on one node (a read), must
//! it run on every node of the shard (a write), does it only change session state, or does it
//! control the transaction. It fails closed: anything it does not recognise, cannot parse or
//! cannot prove free of side effects is a write. Pure: no IO, no pools.

pub(crate) mod builtins;
pub(crate) mod functions;
pub(crate) mod lex;

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, UtilityOption, Value,
    Visit, Visitor,
};

use functions::Effect;
use lex::Lexed;

/// What one statement does, for replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Changes nothing: may run on any single node.
    Read,
    /// Changes data, schema or other shared state: must run on every node.
    Write,
    /// Changes session state only (SET, RESET, DISCARD, SQL PREPARE, DEALLOCATE, LOAD):
    /// mirrored on every node the session uses.
    Session,
    /// LISTEN, UNLISTEN, NOTIFY, `SELECT pg_notify(…)`: only on the main node, where
    /// listeners connect.
    MainOnly,
    /// BEGIN / START TRANSACTION, with any modes.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT (not TO SAVEPOINT).
    Rollback,
    /// SAVEPOINT.
    Savepoint,
    /// RELEASE [SAVEPOINT].
    Release,
    /// ROLLBACK TO [SAVEPOINT].
    RollbackTo,
    /// PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK PREPARED.
    TwoPhase,
    /// COMMIT AND CHAIN / ROLLBACK AND CHAIN: ends a transaction and starts the next one in a
    /// single statement; pgproxy refuses it.
    Unsupported,
    /// Nothing to run: empty text, only comments or only semicolons.
    Empty,
}

impl Kind {
    /// True for statements that start, end or structure a transaction.
    pub fn is_txn_control(self) -> bool {
        matches!(
            self,
            Kind::Begin
                | Kind::Commit
                | Kind::Rollback
                | Kind::Savepoint
                | Kind::Release
                | Kind::RollbackTo
                | Kind::TwoPhase
        )
    }
}

/// The classification of one SQL string (one or more statements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// One kind per statement, in order; `[Empty]` when there is no statement.
    pub kinds: Vec<Kind>,
    /// A comment hint `/* pgproxy: main */` (or `-- pgproxy: main`) appears somewhere.
    pub force_main: bool,
    /// sqlparser could not parse at least one statement; those statements are `Write` unless
    /// their first keywords prove a transaction-control, SET-like, SHOW or LISTEN-like
    /// statement.
    pub parse_failed: bool,
    /// Called functions that are neither known read-only built-ins nor known state-changing
    /// built-ins, lowercased (quoted parts keep their case and quotes), schema-qualified as
    /// written, without duplicates. Each makes its statement a write.
    pub unknown_functions: Vec<String>,
}

impl Classified {
    /// The kind that routes the whole string: `Unsupported` if any statement is, else the
    /// strongest of Write > MainOnly > Session > Read. A string of transaction control only
    /// reports its first statement's kind; `[Empty]` reports `Empty`. Transaction control mixed
    /// with other statements is reported by `has_txn_control`.
    pub fn unit_kind(&self) -> Kind {
        if self.kinds.contains(&Kind::Unsupported) {
            return Kind::Unsupported;
        }
        let rank = |k: Kind| match k {
            Kind::Write => 4,
            Kind::MainOnly => 3,
            Kind::Session => 2,
            Kind::Read => 1,
            _ => 0,
        };
        match self.kinds.iter().copied().max_by_key(|k| rank(*k)) {
            Some(k) if rank(k) > 0 => k,
            _ => self
                .kinds
                .iter()
                .copied()
                .find(|k| *k != Kind::Empty)
                .unwrap_or(Kind::Empty),
        }
    }

    /// True if any statement is transaction control (Begin, Commit, Rollback, Savepoint,
    /// Release, RollbackTo, TwoPhase).
    pub fn has_txn_control(&self) -> bool {
        self.kinds.iter().any(|k| k.is_txn_control())
    }
}

/// Classifies SQL text (one or more statements).
pub fn classify(sql: &str) -> Classified {
    if let Some(kind) = fast_kind(sql) {
        return Classified {
            kinds: vec![kind],
            force_main: false,
            parse_failed: false,
            unknown_functions: Vec::new(),
        };
    }
    classify_with(sql, &[])
}

/// The kind of a plain single statement whose kind its first word decides, without parsing
/// (sqlparser costs 10-20 µs a statement; most OLTP statements are these): INSERT, UPDATE,
/// DELETE, MERGE and TRUNCATE are writes whatever they call; a SELECT with no parenthesis
/// (no function call, no subquery) and no FOR/INTO clause reads. Anything else, or anything
/// with a comment, quote or semicolon that is not the last character, takes the full path.
fn fast_kind(sql: &str) -> Option<Kind> {
    let t = sql.trim();
    let body = t.strip_suffix(';').unwrap_or(t);
    let b = body.as_bytes();
    let tricky = b.iter().enumerate().any(|(i, &c)| match c {
        b';' | b'\'' | b'"' | b'\\' => true,
        // `$1` is a parameter; `$$` / `$tag$` start a dollar quote.
        b'$' => !b.get(i + 1).is_some_and(u8::is_ascii_digit),
        b'-' => b.get(i + 1) == Some(&b'-'),
        b'/' => b.get(i + 1) == Some(&b'*'),
        _ => false,
    });
    if tricky {
        return None;
    }
    let mut words = body.split_ascii_whitespace();
    let first = words.next()?;
    let is = |w: &str| first.eq_ignore_ascii_case(w);
    // BEGIN, COMMIT, END, ROLLBACK, ABORT, optionally with TRANSACTION / WORK, and START
    // TRANSACTION: transaction control without modes.
    let control = if is("begin") {
        Some(Kind::Begin)
    } else if is("commit") || is("end") {
        Some(Kind::Commit)
    } else if is("rollback") || is("abort") {
        Some(Kind::Rollback)
    } else {
        None
    };
    if let Some(kind) = control {
        let noise =
            |w: &str| w.eq_ignore_ascii_case("transaction") || w.eq_ignore_ascii_case("work");
        return match (words.next(), words.next()) {
            (None, _) => Some(kind),
            (Some(w), None) if noise(w) => Some(kind),
            _ => None,
        };
    }
    if is("start") {
        return match (words.next(), words.next()) {
            (Some(w), None) if w.eq_ignore_ascii_case("transaction") => Some(Kind::Begin),
            _ => None,
        };
    }
    if is("insert") || is("update") || is("delete") || is("merge") || is("truncate") {
        return Some(Kind::Write);
    }
    if is("select") && !body.contains('(') {
        let lower = body.to_ascii_lowercase();
        let words = lower.split_ascii_whitespace();
        if !words.into_iter().any(|w| matches!(w, "for" | "into")) {
            return Some(Kind::Read);
        }
    }
    None
}

/// Like `classify`, with extra functions the operator declared read-only (names as they appear
/// in `unknown_functions`, compared case-insensitively).
pub fn classify_with(sql: &str, read_only_functions: &[String]) -> Classified {
    let Some(lexed) = Lexed::new(sql) else {
        return Classified {
            kinds: vec![Kind::Write],
            force_main: lex::raw_has_main_hint(sql),
            parse_failed: true,
            unknown_functions: Vec::new(),
        };
    };
    let mut scan = Scan::new(read_only_functions);
    let mut kinds = Vec::new();
    let mut parse_failed = false;
    for r in lexed.statements() {
        match lexed.parse(r.clone()) {
            Ok(stmts) => kinds.extend(stmts.iter().map(|s| scan.kind(s))),
            Err(_) => {
                parse_failed = true;
                kinds.push(fallback_kind(&lexed.words(r, 16)));
            }
        }
    }
    if kinds.is_empty() {
        kinds.push(Kind::Empty);
    }
    Classified {
        kinds,
        force_main: lexed.has_main_hint(),
        parse_failed,
        unknown_functions: scan.unknown,
    }
}

/// The kind of one parsed statement (no operator-declared read-only functions).
pub(crate) fn statement_kind(stmt: &Statement) -> Kind {
    Scan::new(&[]).kind(stmt)
}

/// The first function (or table function) the statement calls that is not a PostgreSQL
/// built-in (`functions::is_builtin`): a user or extension function, whose body pgproxy cannot
/// see. Its name as `object_key` gives it.
pub(crate) fn user_function(stmt: &Statement) -> Option<String> {
    let mut scan = Scan::new(&[]);
    let _ = stmt.visit(&mut scan);
    scan.unknown.into_iter().find(|n| !functions::is_builtin(n))
}

/// A table or function name as a lookup key: unquoted parts lowercased, quoted parts kept as
/// written (with their quotes unless they are plain lowercase identifiers), joined by dots.
pub(crate) fn object_key(name: &ObjectName) -> String {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => ident_key(&id.value, id.quote_style),
            other => other.to_string(),
        })
        .collect();
    parts.join(".")
}

/// A SELECT that passes its one FROM item's rows through: no DISTINCT, GROUP BY, HAVING,
/// INTO or join (what an ORM's batch INSERT … SELECT over VALUES or UNNEST looks like).
pub(crate) fn is_row_by_row_select(s: &sqlparser::ast::Select) -> bool {
    s.distinct.is_none()
        && s.having.is_none()
        && s.into.is_none()
        && matches!(&s.group_by, sqlparser::ast::GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
        && s.from.len() == 1
        && s.from[0].joins.is_empty()
}

/// One part of an `object_key`.
pub(crate) fn ident_key(value: &str, quote_style: Option<char>) -> String {
    match quote_style {
        None => value.to_lowercase(),
        Some(_) if is_plain_lowercase(value) => value.to_string(),
        Some(_) => format!("\"{}\"", value.replace('"', "\"\"")),
    }
}

fn is_plain_lowercase(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// Walks one statement and records the strongest effect found in it.
struct Scan<'a> {
    read_only: &'a [String],
    unknown: Vec<String>,
    effect: Effect,
    depth: usize,
}

impl<'a> Scan<'a> {
    fn new(read_only: &'a [String]) -> Self {
        Scan {
            read_only,
            unknown: Vec::new(),
            effect: Effect::Read,
            depth: 0,
        }
    }

    fn kind(&mut self, stmt: &Statement) -> Kind {
        match stmt {
            Statement::Query(_) | Statement::Copy { to: true, .. } => self.content(stmt),
            Statement::Explain {
                analyze,
                options,
                statement,
                ..
            } => {
                if !is_explain_analyze(*analyze, options.as_deref()) {
                    return Kind::Read;
                }
                match self.kind(statement) {
                    k @ (Kind::Read | Kind::MainOnly) => k,
                    _ => Kind::Write,
                }
            }
            Statement::ShowVariable { .. } => Kind::Read,
            Statement::Set(_)
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Prepare { .. }
            | Statement::Load { .. } => Kind::Session,
            Statement::LISTEN { .. } | Statement::UNLISTEN { .. } | Statement::NOTIFY { .. } => {
                Kind::MainOnly
            }
            Statement::StartTransaction {
                statements,
                exception,
                ..
            } if statements.is_empty() && exception.is_none() => Kind::Begin,
            Statement::Commit { chain: false, .. } => Kind::Commit,
            Statement::Commit { .. } | Statement::Rollback { chain: true, .. } => Kind::Unsupported,
            Statement::Rollback {
                savepoint: Some(_), ..
            } => Kind::RollbackTo,
            Statement::Rollback { .. } => Kind::Rollback,
            Statement::Savepoint { .. } => Kind::Savepoint,
            Statement::ReleaseSavepoint { .. } => Kind::Release,
            // Cursors over reads live on the main only (their portal is there).
            Statement::Fetch { .. } | Statement::Close { .. } => Kind::MainOnly,
            Statement::Declare { .. } => match self.content(stmt) {
                Kind::Read | Kind::MainOnly => Kind::MainOnly,
                _ => Kind::Write,
            },
            _ => {
                // Collect unknown functions for the report; the statement is a write anyway.
                self.content(stmt);
                Kind::Write
            }
        }
    }

    /// Read, MainOnly or Write, from what the statement's parts do.
    fn content(&mut self, stmt: &Statement) -> Kind {
        self.effect = Effect::Read;
        self.depth = 0;
        let _ = stmt.visit(self);
        match self.effect {
            Effect::Read => Kind::Read,
            Effect::MainOnly => Kind::MainOnly,
            Effect::Write => Kind::Write,
        }
    }

    fn call(&mut self, name: &ObjectName) {
        let key = object_key(name);
        let (effect, unknown) = functions::effect(&key, self.read_only);
        if unknown && !self.unknown.contains(&key) {
            self.unknown.push(key);
        }
        self.effect = self.effect.max(effect);
    }
}

impl Visitor for Scan<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, _s: &Statement) -> ControlFlow<()> {
        self.depth += 1;
        if self.depth > 1 {
            // A statement inside a statement: a data-modifying CTE, `WITH … INSERT`, or DML
            // inside COPY (…) TO.
            self.effect = Effect::Write;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _s: &Statement) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if !q.locks.is_empty() || has_select_into(&q.body) {
            self.effect = Effect::Write;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.call(name),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.call(&f.name);
        }
        ControlFlow::Continue(())
    }
}

/// SELECT … INTO creates a table.
fn has_select_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => {
            has_select_into(left) || has_select_into(right)
        }
        _ => false,
    }
}

/// `EXPLAIN ANALYZE …` or `EXPLAIN (ANALYZE [true|on|1], …) …` executes the statement.
fn is_explain_analyze(analyze: bool, options: Option<&[UtilityOption]>) -> bool {
    analyze
        || options.unwrap_or_default().iter().any(|o| {
            o.name.value.eq_ignore_ascii_case("analyze")
                && match &o.arg {
                    None => true,
                    Some(Expr::Value(v)) => match &v.value {
                        Value::Boolean(b) => *b,
                        Value::Number(n, _) => n != "0",
                        Value::SingleQuotedString(s) => is_true_word(s),
                        _ => true,
                    },
                    Some(Expr::Identifier(id)) => is_true_word(&id.value),
                    Some(_) => true,
                }
        })
}

fn is_true_word(s: &str) -> bool {
    !matches!(
        s.to_ascii_lowercase().as_str(),
        "off" | "false" | "0" | "no"
    )
}

/// Kind of a statement sqlparser could not parse, from its first words (lowercased; other
/// tokens as their text). Only statements that are safe to recognise by their first keywords
/// get a kind other than `Write`.
pub(crate) fn fallback_kind(words: &[String]) -> Kind {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let has = |s: &str| words.iter().any(|x| x == s);
    let chain = words.windows(2).any(|p| p[1] == "chain" && p[0] != "no");
    match w(0) {
        "begin" => Kind::Begin,
        "start" if w(1) == "transaction" => Kind::Begin,
        "commit" if w(1) == "prepared" => Kind::TwoPhase,
        "rollback" if w(1) == "prepared" => Kind::TwoPhase,
        "prepare" if w(1) == "transaction" => Kind::TwoPhase,
        "commit" | "end" | "rollback" | "abort" if chain => Kind::Unsupported,
        "commit" | "end" => Kind::Commit,
        "rollback" | "abort" if has("to") => Kind::RollbackTo,
        "rollback" | "abort" => Kind::Rollback,
        "savepoint" => Kind::Savepoint,
        "release" => Kind::Release,
        "set" | "reset" | "discard" | "deallocate" | "prepare" | "load" => Kind::Session,
        "show" => Kind::Read,
        "listen" | "unlisten" | "notify" => Kind::MainOnly,
        "fetch" | "move" | "close" => Kind::MainOnly,
        // `TABLE name`: a read unless it locks rows or calls something.
        "table" if !has("for") && !has("(") => Kind::Read,
        _ => Kind::Write,
    }
}

#[cfg(test)]
mod tests;
