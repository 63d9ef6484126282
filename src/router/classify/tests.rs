use super::*;
use Kind::*;

/// (sql, kinds per statement)
const CASES: &[(&str, &[Kind])] = &[
    // reads
    ("SELECT 1", &[Read]),
    ("select * from t where id = 1", &[Read]),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 1", &[Read]),
    ("SELECT a FROM t WHERE a = $1 AND b = $2", &[Read]),
    ("VALUES (1), (2)", &[Read]),
    ("TABLE t", &[Read]),
    ("SHOW search_path", &[Read]),
    ("SHOW ALL", &[Read]),
    ("SHOW TRANSACTION ISOLATION LEVEL", &[Read]),
    ("EXPLAIN SELECT 1", &[Read]),
    ("EXPLAIN UPDATE t SET a = 1", &[Read]),
    ("EXPLAIN ANALYZE SELECT * FROM t", &[Read]),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", &[Read]),
    ("COPY t TO STDOUT", &[Read]),
    ("COPY (SELECT * FROM t) TO STDOUT WITH (FORMAT csv)", &[Read]),
    ("SELECT now(), current_timestamp, CURRENT_DATE, LOCALTIMESTAMP(2)", &[Read]),
    ("SELECT count(*), sum(a), avg(a), max(a) FROM t GROUP BY b", &[Read]),
    ("SELECT coalesce(a, 1), lower(b), length(c), date_trunc('day', d) FROM t", &[Read]),
    ("SELECT * FROM generate_series(1, 3) AS g", &[Read]),
    ("SELECT jsonb_build_object('a', 1), to_char(now(), 'YYYY')", &[Read]),
    ("SELECT pg_catalog.now(), pg_catalog.version()", &[Read]),
    ("SELECT current_setting('search_path'), pg_sleep(0.1)", &[Read]),
    ("SELECT random(), gen_random_uuid(), clock_timestamp()", &[Read]),
    ("SELECT row_number() OVER (ORDER BY a) FROM t", &[Read]),
    ("SELECT EXISTS (SELECT 1 FROM t WHERE a IN (SELECT b FROM u))", &[Read]),
    ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", &[Read]),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", &[Read]),
    ("SELECT 1 UNION ALL SELECT 2", &[Read]),
    ("SELECT ';' AS semi, $$a;b$$, $tag$x;y$tag$", &[Read]),
    ("SELECT E'a\\'b; COMMIT'", &[Read]),
    ("SELECT 1 -- ; DELETE FROM t\n", &[Read]),
    ("SELECT /* ; DROP TABLE t; */ 1", &[Read]),
    // writes
    ("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;", &[Write]),
    ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)", &[Write]),
    ("INSERT INTO t VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = excluded.b RETURNING *", &[Write]),
    ("DELETE FROM t WHERE id = 1", &[Write]),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", &[Write]),
    ("TRUNCATE t", &[Write]),
    ("CREATE TABLE t (id serial PRIMARY KEY, ts timestamptz DEFAULT now())", &[Write]),
    ("CREATE TEMP TABLE x (a int)", &[Write]),
    ("ALTER TABLE t ADD COLUMN c int", &[Write]),
    ("DROP TABLE t", &[Write]),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", &[Write]),
    ("COMMENT ON TABLE t IS 'x'", &[Write]),
    ("GRANT SELECT ON t TO u", &[Write]),
    ("REVOKE SELECT ON t FROM u", &[Write]),
    ("COPY t FROM STDIN", &[Write]),
    ("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", &[Write]),
    ("COPY t FROM '/tmp/x'", &[Write]),
    ("SELECT * FROM t FOR UPDATE", &[Write]),
    ("SELECT * FROM t FOR SHARE OF t NOWAIT", &[Write]),
    ("SELECT * FROM t FOR NO KEY UPDATE", &[Write]),
    ("SELECT 1 FROM t FOR KEY SHARE", &[Write]),
    ("TABLE t FOR UPDATE", &[Write]),
    ("SELECT * INTO t2 FROM t", &[Write]),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", &[Write]),
    ("WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM x", &[Write]),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", &[Write]),
    ("SELECT nextval('s')", &[Write]),
    ("SELECT setval('s', 10)", &[Write]),
    ("SELECT pg_advisory_lock(1)", &[Write]),
    ("SELECT pg_try_advisory_xact_lock(1)", &[Write]),
    ("SELECT pg_advisory_unlock_all()", &[Write]),
    ("SELECT set_config('a.b', 'c', false)", &[Write]),
    ("SELECT lo_create(0)", &[Write]),
    ("SELECT txid_current()", &[Write]),
    ("SELECT currval('s')", &[Write]),
    ("SELECT my_func(1)", &[Write]),
    ("SELECT public.lower('x')", &[Write]),
    ("SELECT * FROM my_srf(1)", &[Write]),
    ("SELECT (SELECT nextval('s'))", &[Write]),
    ("EXPLAIN ANALYZE UPDATE t SET a = 1", &[Write]),
    ("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", &[Write]),
    ("CALL p(1)", &[Write]),
    ("DO $$ BEGIN PERFORM 1; END $$", &[Write]),
    ("EXECUTE p(1)", &[Write]),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", &[Write]),
    ("VACUUM t", &[Write]),
    ("VACUUM ANALYZE t", &[Write]),
    ("ANALYZE t", &[Write]),
    ("CLUSTER t", &[Write]),
    ("REINDEX TABLE t", &[Write]),
    ("REFRESH MATERIALIZED VIEW v", &[Write]),
    ("CHECKPOINT", &[Write]),
    // Cursors over reads live on the main only (the portal is there).
    ("DECLARE c CURSOR FOR SELECT 1", &[MainOnly]),
    ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", &[Write]),
    ("FETCH 10 FROM c", &[MainOnly]),
    ("MOVE FORWARD 10 __asyncpg_portal_2__", &[MainOnly]),
    ("CLOSE c", &[MainOnly]),
    // Plain DML takes the fast path (no parse) and is still a write.
    ("UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 9;", &[Write]),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = $1", &[Read]),
    ("SELECT a FROM t WHERE id = 1 FOR UPDATE", &[Write]),
    ("SELECT 1; DELETE FROM t", &[Read, Write]),
    ("this is not sql", &[Write]),
    ("SELECT 'unterminated", &[Write]),
    // session
    ("SET search_path TO public, x", &[Session]),
    ("SET LOCAL statement_timeout = '5s'", &[Session]),
    ("SET SESSION AUTHORIZATION DEFAULT", &[Session]),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &[Session]),
    ("SET CONSTRAINTS ALL DEFERRED", &[Session]),
    ("SET TIME ZONE 'UTC'", &[Session]),
    ("RESET ALL", &[Session]),
    ("RESET search_path", &[Session]),
    ("DISCARD ALL", &[Session]),
    ("PREPARE p (int) AS SELECT $1", &[Session]),
    ("PREPARE q AS INSERT INTO t VALUES ($1)", &[Session]),
    ("DEALLOCATE p", &[Session]),
    ("DEALLOCATE ALL", &[Session]),
    ("LOAD 'auto_explain'", &[Session]),
    // main only
    ("LISTEN foo", &[MainOnly]),
    ("UNLISTEN *", &[MainOnly]),
    ("NOTIFY foo, 'bar'", &[MainOnly]),
    ("SELECT pg_notify('c', 'x')", &[MainOnly]),
    // transaction control
    ("BEGIN", &[Begin]),
    ("begin isolation level serializable", &[Begin]),
    ("BEGIN TRANSACTION READ ONLY", &[Begin]),
    ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", &[Begin]),
    ("END", &[Commit]),
    ("COMMIT", &[Commit]),
    ("COMMIT AND NO CHAIN", &[Commit]),
    ("COMMIT AND CHAIN", &[Unsupported]),
    ("ROLLBACK AND CHAIN", &[Unsupported]),
    ("ROLLBACK", &[Rollback]),
    ("ABORT", &[Rollback]),
    ("begin;", &[Begin]),
    ("  Start Transaction ;", &[Begin]),
    ("COMMIT WORK", &[Commit]),
    ("end transaction;", &[Commit]),
    ("ROLLBACK WORK", &[Rollback]),
    ("abort transaction", &[Rollback]),
    ("COMMIT PREPARED 'x'", &[TwoPhase]),
    ("ROLLBACK PREPARED 'x'", &[TwoPhase]),
    ("ROLLBACK TO SAVEPOINT a", &[RollbackTo]),
    ("ROLLBACK TO a", &[RollbackTo]),
    ("SAVEPOINT a", &[Savepoint]),
    ("RELEASE SAVEPOINT a", &[Release]),
    ("RELEASE a", &[Release]),
    ("PREPARE TRANSACTION 'foo'", &[TwoPhase]),
    ("COMMIT PREPARED 'foo'", &[TwoPhase]),
    ("ROLLBACK PREPARED 'foo'", &[TwoPhase]),
    // empty
    ("", &[Empty]),
    ("   ", &[Empty]),
    (";;", &[Empty]),
    ("-- only a comment", &[Empty]),
    ("/* nothing */ ;", &[Empty]),
    // several statements
    ("BEGIN; SELECT 1; END", &[Begin, Read, Commit]),
    ("SELECT 1; UPDATE t SET a = 1;", &[Read, Write]),
    ("BEGIN; RESET ALL; UPDATE t SET a = 1; COMMIT", &[Begin, Session, Write, Commit]),
    ("SELECT 'a;b'; ABORT", &[Read, Rollback]),
    ("SELECT 1;; SELECT 2", &[Read, Read]),
    ("SET x = 1; garbage here; SHOW x", &[Session, Write, Read]),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 3",
        &[Write, Read],
    ),
];

#[test]
fn kinds_per_statement() {
    let mut failures = Vec::new();
    for (sql, want) in CASES {
        let got = classify(sql);
        if got.kinds != *want {
            failures.push(format!("{sql:?}: want {want:?}, got {:?}", got.kinds));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_failed_flag() {
    for (sql, failed) in [
        ("SELECT 1", false),
        ("RESET ALL", true),
        ("ABORT", false), // transaction control is known without parsing
        ("COMMIT PREPARED 'x'", true),
        ("this is not sql", true),
        ("SELECT 'unterminated", true),
        ("BEGIN; SELECT 1; COMMIT", false),
        ("", false),
    ] {
        assert_eq!(classify(sql).parse_failed, failed, "{sql}");
    }
}

#[test]
fn main_hint() {
    for (sql, hint) in [
        ("/* pgproxy: main */ SELECT 1", true),
        ("SELECT 1 /*PGPROXY:MAIN*/", true),
        ("/*  pgproxy :  Main  */ SELECT 1", true),
        ("SELECT 1 -- pgproxy: main\n", true),
        ("SELECT 1; /* pgproxy: main */ SELECT 2", true),
        ("SELECT 'pgproxy: main'", false),
        ("SELECT 1 /* pgproxy: replica */", false),
        ("SELECT 1", false),
        ("/* pgproxy: main */ SELECT 'unterminated", true),
    ] {
        assert_eq!(classify(sql).force_main, hint, "{sql}");
    }
}

#[test]
fn unknown_functions_are_listed_once() {
    let c = classify("SELECT my_func(1), My_Func(2), s.f(), \"Odd\"(), lower('x'), nextval('s')");
    assert_eq!(c.unknown_functions, ["my_func", "s.f", "\"Odd\""]);
    assert_eq!(c.kinds, [Write]);
    assert!(classify("SELECT lower('x')").unknown_functions.is_empty());
}

#[test]
fn declared_read_only_functions() {
    let extra = vec!["my_func".to_string(), "s.f".to_string()];
    let c = classify_with("SELECT my_func(1), S.F()", &extra);
    assert_eq!(c.kinds, [Read]);
    assert!(c.unknown_functions.is_empty());
    assert_eq!(classify_with("SELECT other(1)", &extra).kinds, [Write]);
}

#[test]
fn unit_kind_and_txn_control() {
    for (sql, unit, txn) in [
        ("SELECT 1", Read, false),
        ("BEGIN; SELECT 1; COMMIT", Read, true),
        ("BEGIN; UPDATE t SET a = 1; COMMIT", Write, true),
        ("SET x = 1; SELECT 1", Session, false),
        ("LISTEN a; SELECT 1", MainOnly, false),
        ("LISTEN a; DELETE FROM t", Write, false),
        ("BEGIN", Begin, true),
        ("COMMIT", Commit, true),
        ("SAVEPOINT a; RELEASE a", Savepoint, true),
        ("PREPARE TRANSACTION 'x'", TwoPhase, true),
        ("SELECT 1; COMMIT AND CHAIN", Unsupported, false),
        ("", Empty, false),
    ] {
        let c = classify(sql);
        assert_eq!(c.unit_kind(), unit, "{sql}");
        assert_eq!(c.has_txn_control(), txn, "{sql}");
    }
}

#[test]
fn read_only_list_is_sorted() {
    let list = functions::READ_ONLY;
    assert!(
        list.windows(2).all(|w| w[0] < w[1]),
        "READ_ONLY must be sorted and unique"
    );
    assert!(list.len() >= 150, "{}", list.len());
}

#[test]
fn builtin_list_is_sorted() {
    let list = super::builtins::BUILTINS;
    assert!(
        list.windows(2).all(|w| w[0] < w[1]),
        "BUILTINS must be sorted and unique"
    );
    assert!(list.len() >= 2500, "{}", list.len());
}

#[test]
fn builtins_and_user_functions() {
    for name in [
        "now",
        "current_timestamp",
        "pg_catalog.now",
        "set_config",
        "pg_advisory_lock",
        "pg_try_advisory_xact_lock",
        "nextval",
        "version",
        "to_tsvector",
        "pg_cancel_backend",
        "format_type",
        "pg_notify",
        "information_schema._pg_expandarray",
        "lo_import",
    ] {
        assert!(functions::is_builtin(name), "{name}");
    }
    for name in [
        "my_insert_fn",
        "public.now",
        "app.f",
        "\"Now\"",
        "query_to_xml",
        "table_to_xml",
        "ts_stat",
        "crypt",
        "information_schema.my_fn",
    ] {
        assert!(!functions::is_builtin(name), "{name}");
    }
    let first = |sql: &str| {
        let stmts =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
                .expect(sql);
        super::user_function(&stmts[0])
    };
    assert_eq!(first("SELECT my_insert_fn()"), Some("my_insert_fn".into()));
    assert_eq!(
        first("SELECT lower(name), app.score(id) FROM countries"),
        Some("app.score".into())
    );
    assert_eq!(first("SELECT * FROM my_srf(1)"), Some("my_srf".into()));
    assert_eq!(first("SELECT now(), version(), nextval('s')"), None);
    assert_eq!(
        first("SELECT count(*) FROM countries WHERE code = lower($1)"),
        None
    );
}
