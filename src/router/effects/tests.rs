use super::*;

fn names(sql: &str) -> Vec<String> {
    session_effects(sql).set_names
}

#[test]
fn plain_queries_have_no_effects() {
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
        "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 3",
        "insert into t values (1)",
        "BEGIN",
        "select 'set x = 1'",
    ] {
        let e = session_effects(sql);
        assert!(
            e.pin.is_none() && e.set_names.is_empty() && !e.reset_all,
            "{sql}: {e:?}"
        );
    }
}

#[test]
fn set_statements() {
    let cases: &[(&str, &[&str])] = &[
        ("SET search_path TO s1, public", &["search_path"]),
        ("set statement_timeout = '1s'", &["statement_timeout"]),
        ("SET SESSION TimeZone = 'UTC'", &["timezone"]),
        ("SET TIME ZONE 'Asia/Tokyo'", &["timezone"]),
        ("SET NAMES 'UTF8'", &["client_encoding"]),
        ("SET LOCAL work_mem = '1MB'", &["work_mem"]),
        ("SET LOCAL search_path = alt", &["search_path"]),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &[]),
        ("SET ROLE app", &["role"]),
        ("set application_name='x'", &["application_name"]),
        ("RESET search_path", &["search_path"]),
        (
            "select set_config('search_path', 'a', false)",
            &["search_path"],
        ),
        ("SET a.b = 1; SET c = 2", &["a.b", "c"]),
        ("/* hi */ SET x TO 1", &["x"]),
        ("-- c\nSET y TO 1", &["y"]),
    ];
    for (sql, want) in cases {
        assert_eq!(
            names(sql),
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{sql}"
        );
    }
    assert!(session_effects("RESET ALL").reset_all);
    assert!(session_effects("RESET ALL").restores_startup);
    assert!(!session_effects("SET SESSION AUTHORIZATION DEFAULT").restores_startup);
    assert!(!session_effects("RESET ALL").drops_statements);
    assert!(session_effects("DISCARD ALL").reset_all);
    assert!(session_effects("DISCARD ALL").drops_statements);
    assert!(session_effects("DEALLOCATE ALL").drops_statements);
    assert!(session_effects("deallocate prepare all").drops_statements);
    assert!(!session_effects("DEALLOCATE p").drops_statements);
}

#[test]
fn pins() {
    let cases: &[(&str, Option<PinReason>)] = &[
        ("CREATE TEMP TABLE t (a int)", Some(PinReason::TempObject)),
        (
            "create temporary table t as select 1",
            Some(PinReason::TempObject),
        ),
        (
            "CREATE GLOBAL TEMPORARY TABLE t (a int)",
            Some(PinReason::TempObject),
        ),
        ("CREATE TABLE temp_stuff (a int)", None),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            Some(PinReason::HoldCursor),
        ),
        ("DECLARE c CURSOR FOR SELECT 1", None),
        ("select pg_advisory_lock(1)", Some(PinReason::AdvisoryLock)),
        (
            "select pg_try_advisory_lock(1, 2)",
            Some(PinReason::AdvisoryLock),
        ),
        ("select pg_advisory_xact_lock(1)", None),
        ("LISTEN ch", Some(PinReason::Listen)),
        ("PREPARE p AS SELECT 1", Some(PinReason::SqlPrepare)),
        ("PREPARE TRANSACTION 'x'", None),
        ("select 1; listen x", Some(PinReason::Listen)),
    ];
    for (sql, want) in cases {
        assert_eq!(session_effects(sql).pin, *want, "{sql}");
    }
}

#[test]
fn unpin_candidates() {
    for sql in [
        "DISCARD TEMP",
        "UNLISTEN *",
        "DEALLOCATE p",
        "DROP TABLE t",
        "CLOSE c",
        "select pg_advisory_unlock(1)",
        "select pg_advisory_unlock_all()",
    ] {
        assert!(session_effects(sql).maybe_unpin, "{sql}");
    }
}

#[test]
fn statement_splitting_respects_quotes() {
    assert_eq!(
        split_statements("select ';'; set x=1"),
        vec!["select ';'", "set x=1"]
    );
    assert_eq!(
        split_statements("select $$a;b$$; select 2"),
        vec!["select $$a;b$$", "select 2"]
    );
    assert_eq!(
        split_statements("select 1 -- ; no\n; x"),
        vec!["select 1 -- ; no\n", "x"]
    );
}

#[test]
fn rollback_detection() {
    assert!(is_rollback("ROLLBACK"));
    assert!(is_rollback("abort;"));
    assert!(is_rollback("rollback work"));
    assert!(!is_rollback("ROLLBACK TO SAVEPOINT a"));
    assert!(!is_rollback("ROLLBACK PREPARED 'x'"));
    assert!(!is_rollback("select 1"));
}
