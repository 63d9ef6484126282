//! Session settings a client made (startup parameters, SET) and their replay on whichever
//! server connection serves the client next in transaction mode.
//!
//! pgproxy does not try to predict what a SET did (savepoints, errors, SET LOCAL, RESET all
//! change it): after a transaction that may have changed settings, it asks the server for the
//! current values of the names involved and records them.

use std::collections::{BTreeMap, BTreeSet};

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

/// Settings from a startup packet (including `-c name=value` in `options`).
pub fn from_startup(params: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in params {
        let k = k.to_ascii_lowercase();
        if k == "options" {
            for (ok, ov) in crate::protocol::startup::parse_options(v) {
                out.insert(ok.to_ascii_lowercase(), ov);
            }
        } else if !NOT_SETTINGS.contains(&k.as_str()) && !k.starts_with("_pq_.") {
            out.insert(k, v.clone());
        }
    }
    out
}

/// True for names safe to put in SQL unquoted (GUC names: letters, digits, `_`, `.`).
fn is_plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// A string literal that reads the same whatever `standard_conforming_strings` is.
pub fn literal(v: &str) -> String {
    if v.contains('\\') {
        format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

/// The value recorded for a setting whose value on a server connection is not known: it
/// differs from any value a client wants, so the next user sets it again (or RESETs it).
pub const UNKNOWN: &str = "\u{0}unknown";

/// SQL that turns a server connection's settings (`have`) into the client's (`want`), or
/// `None` if they already match.
pub fn replay_sql(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) -> Option<String> {
    if want == have {
        // The usual case, on every checkout: one ordered walk instead of a lookup per name.
        return None;
    }
    let mut resets = String::new();
    let mut sets = Vec::new();
    for k in have.keys() {
        if !want.contains_key(k) && is_plain_name(k) {
            resets.push_str(&format!("RESET {k}; "));
        }
    }
    for (k, v) in want {
        if have.get(k) != Some(v) {
            sets.push(format!("set_config({}, {}, false)", literal(k), literal(v)));
        }
    }
    if resets.is_empty() && sets.is_empty() {
        return None;
    }
    let mut sql = resets;
    if !sets.is_empty() {
        sql.push_str("SELECT ");
        sql.push_str(&sets.join(", "));
    }
    Some(sql)
}

/// Marks `names` (with `all_held`, also every setting `map` holds) as unknown on a connection
/// whose values pgproxy did not read back: whoever uses it next sets (or RESETs) them again.
pub fn forget<'a>(
    map: &mut BTreeMap<String, String>,
    names: impl IntoIterator<Item = &'a String>,
    all_held: bool,
) {
    let held: Vec<String> = if all_held {
        map.keys().cloned().collect()
    } else {
        Vec::new()
    };
    for n in names.into_iter().cloned().chain(held) {
        map.insert(n, UNKNOWN.to_string());
    }
}

/// SQL reading the current values of `names` (NULL for unknown names), one column each.
pub fn refresh_sql(names: &BTreeSet<String>) -> String {
    let cols: Vec<String> = names
        .iter()
        .map(|n| format!("current_setting({}, true)", literal(n)))
        .collect();
    format!("SELECT {}", cols.join(", "))
}

/// Applies a refresh result: names with a value are set, NULLs removed.
pub fn apply_refresh(
    map: &mut BTreeMap<String, String>,
    names: &BTreeSet<String>,
    row: &[Option<String>],
) {
    for (n, v) in names.iter().zip(row) {
        match v {
            Some(v) => {
                map.insert(n.clone(), v.clone());
            }
            None => {
                map.remove(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn startup_settings() {
        let p = vec![
            ("user".to_string(), "app".to_string()),
            ("database".into(), "app".into()),
            ("application_name".into(), "psql".into()),
            ("options".into(), "-c search_path=s1".into()),
            ("_pq_.x".into(), "1".into()),
        ];
        assert_eq!(
            from_startup(&p),
            m(&[("application_name", "psql"), ("search_path", "s1")])
        );
    }

    #[test]
    fn replay_only_differences() {
        let want = m(&[("a", "1"), ("b", "it's")]);
        let have = m(&[("a", "1"), ("c", "x")]);
        assert_eq!(
            replay_sql(&want, &have).as_deref(),
            Some("RESET c; SELECT set_config('b', 'it''s', false)")
        );
        assert_eq!(replay_sql(&want, &want), None);
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn refresh_roundtrip() {
        let names: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
        assert_eq!(
            refresh_sql(&names),
            "SELECT current_setting('a', true), current_setting('b', true)"
        );
        let mut map = m(&[("b", "old")]);
        apply_refresh(&mut map, &names, &[Some("1".into()), None]);
        assert_eq!(map, m(&[("a", "1")]));
    }
}
