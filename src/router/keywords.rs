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

/// Reads the system catalogs or object ids, which differ between the nodes of a shard: names
/// `pg_catalog`, `pg_type`, `pg_class`, `pg_attribute`, `pg_namespace` or `pg_proc`, casts to a
/// `reg*` type, or says `oid` (any case, anywhere: a word like `void` only errs on the safe
/// side). Two memchr passes; it runs on every unit of a replicated session.
pub fn reads_catalog(sql: &str) -> bool {
    const CATALOGS: [&[u8]; 6] = [
        b"pg_catalog",
        b"pg_type",
        b"pg_class",
        b"pg_attribute",
        b"pg_namespace",
        b"pg_proc",
    ];
    let b = sql.as_bytes();
    let at = |i: usize, word: &[u8]| {
        b.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    memchr::memchr3_iter(b'p', b'P', b':', b).any(|i| {
        if b[i] == b':' {
            at(i, b"::reg")
        } else {
            CATALOGS.iter().any(|w| at(i, w))
        }
    }) || contains_ignore_case(b, b"oid")
}

/// Makes or uses temporary objects: some statement of the text is `CREATE TEMP|TEMPORARY …`
/// (also `CREATE GLOBAL/LOCAL TEMPORARY`), or the text names the `pg_temp` schema (Sequelize's
/// `CREATE FUNCTION pg_temp.f …`). Conservative: a `;` or `pg_temp` inside a literal only
/// makes it true.
pub fn creates_temp(sql: &str) -> bool {
    contains_ignore_case(sql.as_bytes(), b"pg_temp")
        || sql.split(';').any(|part| {
            let mut words = part.split_whitespace().take(4);
            words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("create"))
                && words
                    .any(|w| w.eq_ignore_ascii_case("temp") || w.eq_ignore_ascii_case("temporary"))
        })
}

/// `COPY ... FROM STDIN` (the data follows from the client).
pub fn is_copy_from_stdin(sql: &str) -> bool {
    let t = sql.trim_start().as_bytes();
    t.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"copy"))
        && contains_ignore_case(t, b"from stdin")
}

/// Might start a COPY FROM STDIN anywhere in the text (conservative: mentions both `copy` and
/// `stdin` in any case; for a single statement, text with no `;` but at its end, only when
/// its first word is COPY). No allocation: it runs on every Query and Execute.
pub fn may_copy_in(sql: &str) -> bool {
    let b = sql.as_bytes();
    let single =
        memchr::memchr(b';', b).is_none_or(|i| b[i + 1..].iter().all(|c| c.is_ascii_whitespace()));
    if single {
        if let Some(head) = skip_blanks_and_comments(b) {
            return head
                .get(..4)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"copy"))
                && contains_ignore_case(head, b"stdin");
        }
    }
    contains_ignore_case(b, b"copy") && contains_ignore_case(b, b"stdin")
}

/// The text after leading whitespace and comments; `None` for an unterminated comment.
fn skip_blanks_and_comments(mut b: &[u8]) -> Option<&[u8]> {
    loop {
        let start = b
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(b.len());
        b = &b[start..];
        if let Some(rest) = b.strip_prefix(b"--") {
            b = &rest[memchr::memchr(b'\n', rest)? + 1..];
        } else if b.starts_with(b"/*") {
            // Nested comments: leave them to the conservative scan.
            let end = memchr::memmem::find(&b[2..], b"*/")? + 4;
            if memchr::memmem::find(&b[2..end - 2], b"/*").is_some() {
                return None;
            }
            b = &b[end..];
        } else {
            return Some(b);
        }
    }
}

/// `needle` (ASCII) occurs in `hay`, ignoring ASCII case; no allocation.
pub(crate) fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        &hay[..=last_start],
    )
    .any(|i| hay[i + 1..i + needle.len()].eq_ignore_ascii_case(rest))
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

/// Might take a transaction snapshot: some statement of the text is not one PostgreSQL runs
/// without a snapshot (transaction control, SET/RESET/SHOW, LOCK, LISTEN/UNLISTEN/NOTIFY,
/// FETCH/MOVE, CHECKPOINT; `PlannedStmtRequiresSnapshot`). In a REPEATABLE READ transaction
/// the first statement that takes one fixes what the transaction sees. Leading comments are
/// skipped; a `;` inside a literal can only make this true, never hide a statement.
pub fn takes_snapshot(sql: &str) -> bool {
    const WITHOUT: &[&str] = &[
        "begin",
        "start",
        "commit",
        "end",
        "rollback",
        "abort",
        "savepoint",
        "release",
        "set",
        "reset",
        "show",
        "lock",
        "listen",
        "unlisten",
        "notify",
        "fetch",
        "move",
        "checkpoint",
    ];
    sql.split(';').any(|part| {
        let first = first_word(part);
        !first.is_empty() && !WITHOUT.iter().any(|k| first.eq_ignore_ascii_case(k))
    })
}

/// The first word of a statement, after whitespace and comments (`--` and `/* */`).
fn first_word(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    // Not a word (`(SELECT …)`): its first character, which is no keyword.
    let end = match s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        Some(0) => s.chars().next().map_or(0, char::len_utf8),
        Some(n) => n,
        None => s.len(),
    };
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_catalog_finds_each_name_in_any_case_and_place() {
        // The definition it replaced: any of these, case-insensitively, anywhere.
        let reference = |sql: &str| {
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
            .any(|k| sql.to_ascii_lowercase().contains(k))
        };
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 2",
            "select typname from PG_TYPE",
            "SELECT * FROM pg_catalog.pg_class",
            "SELECT 'x'::regclass",
            "SELECT 'x'::REGTYPE",
            "SELECT ':' || 'reg'",
            "SELECT attname FROM pg_attribute",
            "SELECT * FROM Pg_Namespace",
            "select proname from pg_proc",
            "SELECT pg_procx FROM t",
            "SELECT oid FROM t",
            "SELECT void_col FROM t",
            "SELECT OID",
            "pg_typ",
            "p",
            ":",
            "::re",
            "",
            "SELECT p, pg, pg_, pg_c FROM pgpg_type",
        ] {
            assert_eq!(reads_catalog(sql), reference(sql), "{sql}");
        }
    }

    #[test]
    fn copy_in_is_seen_wherever_it_can_start() {
        for sql in [
            "COPY t FROM STDIN",
            "  copy t (a) from stdin with (format csv)",
            "/* x */ -- y\n Copy t FROM stdin",
            "/* a /* nested */ b */ COPY t FROM STDIN",
            "SELECT 1; COPY t FROM STDIN",
            "COPY t FROM STDIN;",
            "-- unterminated copy from stdin",
            "/* unterminated COPY t FROM STDIN",
        ] {
            assert!(may_copy_in(sql), "{sql}");
        }
        for sql in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;\n",
            "SELECT 'copy from stdin'",
            "/* copy */ SELECT stdin FROM t",
            "COPY t TO STDOUT",
            "",
        ] {
            assert!(!may_copy_in(sql), "{sql}");
        }
        assert!(contains_ignore_case(b"abcCOPYd", b"copy"));
        assert!(contains_ignore_case(b"copy", b"COPY"));
        assert!(!contains_ignore_case(b"cop", b"copy"));
        assert!(contains_ignore_case(b"x::REGCLASS", b"::reg"));
    }

    #[test]
    fn statements_without_a_snapshot_are_told_apart() {
        for sql in [
            "SAVEPOINT sp1",
            "release savepoint sp1",
            "ROLLBACK TO SAVEPOINT sp1",
            "SET statement_timeout = '1s'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "/* app */ SHOW search_path",
            "-- lock first\nLOCK TABLE t IN SHARE MODE",
            "BEGIN; SET LOCAL work_mem = '8MB';",
            "",
            ";",
        ] {
            assert!(!takes_snapshot(sql), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SAVEPOINT a; SELECT count(*) FROM t",
            "/* c */ UPDATE t SET a = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SET x = 'a;b'",
            "PREPARE p AS SELECT 1",
            "(SELECT 1)",
        ] {
            assert!(takes_snapshot(sql), "{sql}");
        }
    }

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
