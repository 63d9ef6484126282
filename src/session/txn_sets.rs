//! Settings changed inside a transaction that moves between shards.
//!
//! A SET (or SET LOCAL, RESET …) inside a transaction changes the session for every statement
//! that follows, on whichever shard it runs. pgproxy keeps the transaction's setting statements
//! in order; a shard the transaction moves to runs them right after its BEGIN, and a shard it
//! comes back to runs those made while it was away (`Session::move_transaction`). The shard the
//! transaction ends on has then run all of them, so what pgproxy reads back after it is what
//! one PostgreSQL would hold; the other shards' connections count those settings as unknown
//! (`Session::after_txn`).

use crate::router::classify::lex::Lexed;

/// The open transaction's setting statements.
#[derive(Default)]
pub struct TxnSets {
    /// In the order they ran.
    all: Vec<String>,
    /// Those of the unit being routed: added to `all` once it runs on its shard (a unit that
    /// moves the transaction runs its own statements on the new shard).
    unit: Vec<String>,
    /// For each shard the transaction left: how many of `all` its connection ran.
    seen: Vec<(usize, usize)>,
}

impl TxnSets {
    /// A unit begins outside a transaction: nothing carried over.
    pub fn clear(&mut self) {
        self.all.clear();
        self.unit.clear();
        self.seen.clear();
    }

    /// A unit is being routed.
    pub fn begin_unit(&mut self) {
        self.unit.clear();
    }

    /// Notes the setting statements of `sql`, one of the unit's texts.
    pub fn note(&mut self, sql: &str) {
        self.unit.extend(setting_statements(sql));
    }

    /// The unit runs on its shard: its statements are the transaction's.
    pub fn unit_ran(&mut self) {
        self.all.append(&mut self.unit);
    }

    /// Whether the transaction changed a setting (so far, or in the unit being routed).
    pub fn any(&self) -> bool {
        !self.all.is_empty() || !self.unit.is_empty()
    }

    /// The transaction leaves `shard`, whose connection ran all of them.
    pub fn left(&mut self, shard: usize) {
        let n = self.all.len();
        match self.seen.iter_mut().find(|(s, _)| *s == shard) {
            Some(e) => e.1 = n,
            None => self.seen.push((shard, n)),
        }
    }

    /// SQL for a shard the transaction comes back to: what its connection has not run yet.
    pub fn catch_up(&self, shard: usize) -> Option<String> {
        let from = self
            .seen
            .iter()
            .find(|(s, _)| *s == shard)
            .map_or(0, |e| e.1);
        let rest = self.all.get(from..).unwrap_or_default();
        (!rest.is_empty()).then(|| rest.join(";\n"))
    }

    /// SQL for a connection new to the transaction: all of them.
    pub fn all_sql(&self) -> Option<String> {
        (!self.all.is_empty()).then(|| self.all.join(";\n"))
    }
}

/// The statements of `sql` that change settings: SET / RESET of anything but the transaction's
/// characteristics (`SET TRANSACTION`, carried by the BEGIN) and pgproxy's own settings.
pub fn setting_statements(sql: &str) -> Vec<String> {
    if !contains_set(sql) {
        return Vec::new();
    }
    let Some(lexed) = Lexed::new(sql) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in lexed.statements() {
        let text = lexed.text(r);
        let words: Vec<String> = text
            .split_whitespace()
            .take(3)
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let word = |i: usize| words.get(i).map_or("", String::as_str);
        let name = match word(0) {
            "set" if matches!(word(1), "local" | "session") => word(2),
            "set" | "reset" => word(1),
            _ => continue,
        };
        if name == "transaction" || name.starts_with("pgproxy.") {
            continue;
        }
        out.push(text.to_string());
    }
    out
}

/// Whether `sql` may hold a SET or RESET (cheap, before tokenizing): one statement is judged
/// by its first word (an UPDATE … SET or an OFFSET is not tokenized on every execution).
fn contains_set(sql: &str) -> bool {
    let one = sql.trim().trim_end_matches(';').trim_start();
    let first = one
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    if one.contains(';') || one.starts_with("/*") || one.starts_with("--") {
        return sql
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"set"));
    }
    first.eq_ignore_ascii_case("set") || first.eq_ignore_ascii_case("reset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_statements_are_picked_out() {
        assert_eq!(
            setting_statements("BEGIN; SET DateStyle = 'German'; SELECT 1; reset all -- x\n"),
            vec!["SET DateStyle = 'German'", "reset all"]
        );
        assert_eq!(
            setting_statements("SET LOCAL statement_timeout = 5; SET SESSION search_path = a"),
            vec![
                "SET LOCAL statement_timeout = 5",
                "SET SESSION search_path = a"
            ]
        );
        assert_eq!(
            setting_statements("/* c */ set  search_path=a;"),
            vec!["set  search_path=a"]
        );
        assert_eq!(
            setting_statements("  Reset DateStyle"),
            vec!["Reset DateStyle"]
        );
        for none in [
            "SELECT 1",
            "UPDATE t SET a = 1",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET pgproxy.shard_key = 5",
            "RESET pgproxy.shard_key",
            "SELECT 'SET x = 1'",
            "UPDATE t SET a = 1;",
            "SELECT 1 OFFSET 3",
        ] {
            assert!(setting_statements(none).is_empty(), "{none}");
        }
    }

    #[test]
    fn a_shard_catches_up_on_what_it_missed() {
        let mut t = TxnSets::default();
        t.begin_unit();
        t.note("SET a = 1");
        assert!(t.any());
        assert_eq!(t.catch_up(1), None, "the unit has not run yet");
        t.unit_ran();
        t.left(0);
        assert_eq!(t.catch_up(1).as_deref(), Some("SET a = 1"));
        t.begin_unit();
        t.note("SET b = 2");
        t.unit_ran();
        t.left(1);
        assert_eq!(t.catch_up(0).as_deref(), Some("SET b = 2"));
        assert_eq!(t.catch_up(2).as_deref(), Some("SET a = 1;\nSET b = 2"));
        assert_eq!(t.all_sql(), t.catch_up(2));
        assert_eq!(t.catch_up(1), None);
        t.clear();
        assert!(!t.any());
    }
}
