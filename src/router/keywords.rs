//! Cheap first-words checks on SQL text that replication needs before (or instead of) a full
//! parse: statements PostgreSQL refuses inside a transaction block, COPY FROM STDIN, temporary
//! objects, catalog/oid reads, schema changes. Pure; they err on the safe side.

/// Statements PostgreSQL refuses inside a transaction block: they run on each node on
/// their own (main first), not in a transaction pgproxy opens.
pub fn cannot_run_in_block(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.trim_end_matches(';').to_ascii_lowercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match w(0) {
        "vacuum" | "checkpoint" => true,
        "create" | "drop" => {
            matches!(w(1), "database" | "tablespace" | "subscription")
                || (matches!(w(1), "index" | "unique") && words.iter().any(|x| x == "concurrently"))
        }
        "alter" => matches!(w(1), "system" | "database" | "subscription"),
        "reindex" | "refresh" => words.iter().any(|x| x == "concurrently"),
        "cluster" => words.len() == 1,
        _ => false,
    }
}

/// Reads the system catalogs or object ids, which differ between the nodes of a shard.
pub fn reads_catalog(sql: &str) -> bool {
    let l = sql.to_ascii_lowercase();
    [
        "pg_catalog",
        "pg_type",
        "pg_class",
        "pg_attribute",
        "pg_namespace",
        "pg_proc",
        "::reg",
        "oid",
    ]
    .iter()
    .any(|k| l.contains(k))
}

/// `CREATE TEMP|TEMPORARY ...` (also `CREATE GLOBAL/LOCAL TEMPORARY`).
pub fn creates_temp(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_lowercase())
        .collect();
    words.first().is_some_and(|w| w == "create")
        && words[1..].iter().any(|w| w == "temp" || w == "temporary")
}

/// `COPY ... FROM STDIN` (the data follows from the client).
pub fn is_copy_from_stdin(sql: &str) -> bool {
    let t = sql.trim_start().to_ascii_lowercase();
    t.starts_with("copy") && t.contains("from stdin")
}

/// Might start a COPY FROM STDIN anywhere in the text (conservative: mentions both `copy` and
/// `stdin` in any case). No allocation: it runs on every Execute.
pub fn may_copy_in(sql: &str) -> bool {
    contains_ignore_case(sql.as_bytes(), b"copy") && contains_ignore_case(sql.as_bytes(), b"stdin")
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Might change a table's definition (then cached defaults are dropped): any statement of the
/// text starting with CREATE, ALTER, DROP, COMMENT or TRUNCATE. (A `;` inside a literal can
/// only cause a needless reload, never a missed one.)
pub fn is_ddl(sql: &str) -> bool {
    sql.split(';').any(|part| {
        let first = part.split_whitespace().next().unwrap_or("");
        ["create", "alter", "drop", "comment", "truncate"]
            .iter()
            .any(|k| first.eq_ignore_ascii_case(k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_in_is_seen_anywhere_in_the_text() {
        assert!(may_copy_in("COPY t FROM STDIN"));
        assert!(may_copy_in(
            "/* load */ copy t (a) from stdin with (format csv)"
        ));
        assert!(may_copy_in("select 1; Copy t From Stdin"));
        assert!(!may_copy_in("COPY t TO STDOUT"));
        assert!(!may_copy_in("SELECT a FROM t"));
    }

    #[test]
    fn only_schema_changes_drop_the_cached_defaults() {
        // A trailing semicolon (pgbench's statements) is not a schema change.
        assert!(!is_ddl("INSERT INTO pgbench_history (tid) VALUES (1);"));
        assert!(!is_ddl("UPDATE t SET v = 1 WHERE id = 2;"));
        assert!(is_ddl("ALTER TABLE t ADD COLUMN c int"));
        assert!(is_ddl("insert into t values (1); drop table u;"));
        assert!(is_ddl("  create table x (id serial)"));
        assert!(is_ddl("TRUNCATE t"));
    }
}
