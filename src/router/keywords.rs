//! Cheap first-words checks on SQL text that replication needs before (or instead of) a full
//! parse: statements PostgreSQL refuses inside a transaction block, COPY FROM STDIN, temporary
//! objects, catalog/oid reads, schema changes. Pure; they err on the safe side.

/// Statements PostgreSQL refuses inside a transaction block: they run on each node on
/// their own (main first), not in a transaction pgproxy opens.
pub fn cannot_run_in_block(sql: &str) -> bool {
    let mut words = [""; 4];
    let mut n = 0;
    for w in sql.split_whitespace().take(4) {
        words[n] = w.trim_end_matches(';');
        n += 1;
    }
    let words = &words[..n];
    let w = |i: usize| words.get(i).copied().unwrap_or("");
    let is = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    let concurrently = || words.iter().any(|x| is(x, "concurrently"));
    let first = w(0);
    if is(first, "vacuum") || is(first, "checkpoint") {
        true
    } else if is(first, "create") || is(first, "drop") {
        ["database", "tablespace", "subscription"]
            .iter()
            .any(|k| is(w(1), k))
            || ((is(w(1), "index") || is(w(1), "unique")) && concurrently())
    } else if is(first, "alter") {
        ["system", "database", "subscription"]
            .iter()
            .any(|k| is(w(1), k))
    } else if is(first, "reindex") || is(first, "refresh") {
        concurrently()
    } else {
        is(first, "cluster") && n == 1
    }
}

/// Reads the system catalogs or object ids, which differ between the nodes of a shard.
pub fn reads_catalog(sql: &str) -> bool {
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
    .any(|k| contains_ignore_case(sql.as_bytes(), k.as_bytes()))
}

/// `CREATE TEMP|TEMPORARY ...` (also `CREATE GLOBAL/LOCAL TEMPORARY`).
pub fn creates_temp(sql: &str) -> bool {
    let mut words = sql.split_whitespace().take(4);
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("create"))
        && words.any(|w| w.eq_ignore_ascii_case("temp") || w.eq_ignore_ascii_case("temporary"))
}

/// `COPY ... FROM STDIN` (the data follows from the client).
pub fn is_copy_from_stdin(sql: &str) -> bool {
    let t = sql.trim_start().as_bytes();
    t.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"copy"))
        && contains_ignore_case(t, b"from stdin")
}

/// Might start a COPY FROM STDIN anywhere in the text (conservative: mentions both `copy` and
/// `stdin` in any case). No allocation: it runs on every Execute.
pub fn may_copy_in(sql: &str) -> bool {
    contains_ignore_case(sql.as_bytes(), b"copy") && contains_ignore_case(sql.as_bytes(), b"stdin")
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    hay.len() >= needle.len()
        && (0..=hay.len() - needle.len()).any(|i| {
            hay[i].eq_ignore_ascii_case(&first)
                && hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest)
        })
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
