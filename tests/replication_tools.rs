//! The replication tools against real files and real PostgreSQL: the two-phase commit decision
//! log (group commit, reopen, torn line, compaction), resolution of in-doubt prepared
//! transactions, and `pgproxy verify`.

mod common;

use common::*;
use pgproxy::config::Config;
use pgproxy::replication::decision_log::{DecisionLog, GidGen, COMPACT_ABOVE};
use pgproxy::replication::resolve::{resolve_in_doubt, Pass};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn set(gids: &[&str]) -> HashSet<String> {
    gids.iter().map(|g| g.to_string()).collect()
}

fn temp_dir() -> tempfile::TempDir {
    // Under the target dir (a real disk), so fsync costs what it costs in production.
    tempfile::Builder::new()
        .prefix("pgproxy-decisions-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

#[tokio::test]
async fn decision_log_survives_reopen_and_forgets_done_gids() {
    let dir = temp_dir();
    let path = dir.path().join("decisions.log");
    let log = DecisionLog::open(&path).expect("create log");
    assert!(path.exists(), "open creates the file");
    assert!(log.committed().is_empty());
    log.record_commit("pgproxy_a_1").await.expect("record 1");
    log.record_commit("pgproxy_a_2").await.expect("record 2");
    log.record_done("pgproxy_a_1").expect("done 1");
    assert_eq!(log.committed(), set(&["pgproxy_a_2"]));
    assert!(log.record_commit("not a gid\nC x").await.is_err());
    assert!(log.record_done("pgproxy_a_1'").is_err());
    log.flush().await.expect("flush");
    drop(log);
    let text = std::fs::read_to_string(&path).expect("read log");
    assert_eq!(text, "C pgproxy_a_1\nC pgproxy_a_2\nD pgproxy_a_1\n");
    let log = DecisionLog::open(&path).expect("reopen");
    assert_eq!(log.committed(), set(&["pgproxy_a_2"]));
}

#[tokio::test]
async fn decision_log_ignores_and_cuts_a_torn_last_line() {
    let dir = temp_dir();
    let path = dir.path().join("decisions.log");
    std::fs::write(
        &path,
        "C pgproxy_a_1\nC pgproxy_a_2\nD pgproxy_a_1\ngarbage\nC pgproxy_a_3",
    )
    .expect("write");
    let log = DecisionLog::open(&path).expect("open");
    assert_eq!(log.committed(), set(&["pgproxy_a_2"]));
    log.record_commit("pgproxy_b_1").await.expect("record");
    drop(log);
    let text = std::fs::read_to_string(&path).expect("read log");
    assert_eq!(
        text,
        "C pgproxy_a_1\nC pgproxy_a_2\nD pgproxy_a_1\ngarbage\nC pgproxy_b_1\n"
    );
    let log = DecisionLog::open(&path).expect("reopen");
    assert_eq!(log.committed(), set(&["pgproxy_a_2", "pgproxy_b_1"]));
}

#[tokio::test]
async fn decision_log_compacts_a_large_file_at_open() {
    let dir = temp_dir();
    let path = dir.path().join("decisions.log");
    let mut text = String::from("C pgproxy_ff_7\n");
    let mut i = 0;
    while text.len() as u64 <= COMPACT_ABOVE {
        text += &format!("C pgproxy_c_{i}\nD pgproxy_c_{i}\n");
        i += 1;
    }
    text += "C pgproxy_ff_8\nC pgproxy_ff_9\nD pgproxy_ff_9\nC pgproxy_ff_1";
    std::fs::write(&path, text).expect("write");
    let log = DecisionLog::open(&path).expect("open");
    assert_eq!(log.committed(), set(&["pgproxy_ff_7", "pgproxy_ff_8"]));
    let compacted = std::fs::read_to_string(&path).expect("read log");
    assert_eq!(compacted, "C pgproxy_ff_7\nC pgproxy_ff_8\n");
    log.record_commit("pgproxy_ff_10").await.expect("record");
    drop(log);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp file left: {names:?}");
    let log = DecisionLog::open(&path).expect("reopen");
    assert_eq!(
        log.committed(),
        set(&["pgproxy_ff_7", "pgproxy_ff_8", "pgproxy_ff_10"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decision_log_group_commit_shares_fsyncs_between_concurrent_callers() {
    let dir = temp_dir();
    let path = dir.path().join("decisions.log");
    let log = Arc::new(DecisionLog::open(&path).expect("open"));
    let gen = Arc::new(GidGen::new());
    let started = Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (log, gen) = (log.clone(), gen.clone());
            tokio::spawn(async move {
                let gid = gen.next();
                log.record_commit(&gid).await.expect("record");
                gid
            })
        })
        .collect();
    let mut gids = HashSet::new();
    for t in tasks {
        gids.insert(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    let syncs = log.sync_count();
    eprintln!("1000 concurrent record_commit: {elapsed:?}, {syncs} fsyncs");
    assert!(elapsed < Duration::from_secs(20), "too slow: {elapsed:?}");
    assert!(syncs < 1000, "no batching: {syncs} fsyncs for 1000 commits");
    assert_eq!(log.committed(), gids);
    drop(log);
    let reopened = DecisionLog::open(&path).expect("reopen");
    assert_eq!(reopened.committed(), gids);
    let lines = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .count();
    assert_eq!(lines, 1000);
}

/// BEGIN; `sql`; PREPARE TRANSACTION `gid` as `user` in database app.
async fn prepare(port: u16, user: &str, password: &str, gid: &str, sql: &str) {
    let c = connect(port, user, password, "app")
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {}", describe(&e)));
    c.batch_execute(&format!("BEGIN; {sql}; PREPARE TRANSACTION '{gid}'"))
        .await
        .unwrap_or_else(|e| panic!("prepare {gid}: {}", describe(&e)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_commits_logged_gids_and_rolls_back_the_others() {
    within(180, "test", async {
        let (a, b) = tokio::join!(PgNode::start(), PgNode::start());
        let gen = GidGen::new();
        let (commit, rollback, other_owner) = (gen.next(), gen.next(), gen.next());
        for node in [&a, &b] {
            let app = connect_app(node.port()).await;
            app.batch_execute("CREATE TABLE t (x int); GRANT ALL ON t TO md5user")
                .await
                .expect("create t");
            prepare(
                node.port(),
                "app",
                "secret",
                &commit,
                "INSERT INTO t VALUES (1)",
            )
            .await;
            prepare(
                node.port(),
                "app",
                "secret",
                &rollback,
                "INSERT INTO t VALUES (2)",
            )
            .await;
            let sql = "INSERT INTO t VALUES (3)";
            prepare(node.port(), "md5user", "md5pass", &other_owner, sql).await;
            prepare(
                node.port(),
                "app",
                "secret",
                "manual_1",
                "INSERT INTO t VALUES (4)",
            )
            .await;
        }
        let dir = temp_dir();
        let log = DecisionLog::open(&dir.path().join("decisions.log")).expect("open log");
        log.record_commit(&commit).await.expect("record");
        log.record_commit(&other_owner).await.expect("record");
        let config = Config::from_toml(&ProxyConfig::with_nodes(&[a.port(), b.port()]).render())
            .expect("config");

        let report = resolve_in_doubt(&config, &log, Pass::Startup)
            .await
            .expect("resolve");
        assert_eq!(
            (
                report.committed,
                report.rolled_back,
                report.unreachable_nodes
            ),
            (4, 2, 0),
            "{report}"
        );
        assert_eq!(report.failed, 0, "{report}");
        assert!(report.complete, "{report}");
        assert!(log.committed().is_empty(), "resolved decisions marked done");
        for node in [&a, &b] {
            assert_eq!(
                node.scalar("SELECT string_agg(x::text, ',' ORDER BY x) FROM t")
                    .await,
                "1,3"
            );
            let left = "SELECT string_agg(gid, ',') FROM pg_prepared_xacts";
            assert_eq!(
                node.scalar(left).await,
                "manual_1",
                "only the foreign gid is left"
            );
            node.scalar("ROLLBACK PREPARED 'manual_1'").await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_skips_an_unreachable_node_and_keeps_its_decisions() {
    within(120, "test", async {
        let a = PgNode::start().await;
        let gid = GidGen::new().next();
        connect_app(a.port())
            .await
            .batch_execute("CREATE TABLE t (x int)")
            .await
            .expect("create t");
        prepare(a.port(), "app", "secret", &gid, "INSERT INTO t VALUES (1)").await;
        let dir = temp_dir();
        let log = DecisionLog::open(&dir.path().join("decisions.log")).expect("open log");
        log.record_commit(&gid).await.expect("record");
        let config = Config::from_toml(&ProxyConfig::with_nodes(&[a.port(), free_port()]).render())
            .expect("config");

        let report = resolve_in_doubt(&config, &log, Pass::Startup)
            .await
            .expect("resolve");
        assert_eq!(
            (report.committed, report.unreachable_nodes),
            (1, 1),
            "{report}"
        );
        assert!(!report.complete);
        assert_eq!(
            log.committed(),
            set(&[&gid]),
            "decision kept for the other node"
        );
        assert_eq!(a.scalar("SELECT count(*) FROM t").await, "1");
    })
    .await
}

/// Runs the built binary with `args`; (exit code, stdout, stderr).
async fn pgproxy(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgproxy"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run pgproxy")
    })
    .await
    .expect("join");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

async fn verify(config: &Path) -> (i32, String, String) {
    let path = config.to_str().expect("utf-8 temp path");
    pgproxy(&["verify", "--config", path]).await
}

const SCHEMA: &str = "CREATE TABLE t (id int PRIMARY KEY, v text, at timestamptz);
    CREATE TABLE \"Odd Name\" (x float8); CREATE SEQUENCE s;
    SELECT nextval('s'), nextval('s');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_identical_nodes_then_the_table_that_differs() {
    within(180, "test", async {
        let (a, b) = tokio::join!(PgNode::start(), PgNode::start());
        for (node, order) in [(&a, "ASC"), (&b, "DESC")] {
            let app = connect_app(node.port()).await;
            app.batch_execute(SCHEMA).await.expect("schema");
            app.batch_execute(&format!(
                "INSERT INTO t SELECT i, 'row ' || i, '2024-01-01 12:00+00'::timestamptz + i * interval '1 hour' \
                 FROM generate_series(1, 200) i ORDER BY i {order};
                 INSERT INTO \"Odd Name\" SELECT i / 3.0 FROM generate_series(1, 50) i ORDER BY i {order}"
            ))
            .await
            .expect("data");
        }
        // Same data, different display settings on one node: must still compare equal.
        b.scalar("ALTER DATABASE app SET TimeZone = 'Asia/Tokyo'").await;
        let dir = temp_dir();
        let config = dir.path().join("pgproxy.toml");
        std::fs::write(&config, ProxyConfig::with_nodes(&[a.port(), b.port()]).render())
            .expect("write config");
        let config_arg = config.to_str().expect("utf-8");
        let (code, out, _) = pgproxy(&["--check-config", config_arg]).await;
        assert_eq!(code, 0, "--check-config still works: {out}");

        let (code, out, err) = verify(&config).await;
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("shard s0: 2 tables identical, 1 sequence identical"), "{out}");

        b.scalar("UPDATE t SET v = 'changed' WHERE id = 50").await;
        let (code, out, err) = verify(&config).await;
        assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
        assert!(out.contains("app: public.t DIFFERS: node0 count=200"), "{out}");
        assert!(out.contains("app: public.\"Odd Name\" OK"), "{out}");
        assert!(out.contains("shard s0: 1 of 2 tables differ"), "{out}");

        b.scalar("DROP TABLE \"Odd Name\"; SELECT nextval('s')").await;
        let (code, out, _) = verify(&config).await;
        assert_eq!(code, 1);
        assert!(out.contains("public.\"Odd Name\" MISSING on node1"), "{out}");
        assert!(out.contains("public.s (sequence) DIFFERS"), "{out}");
        assert!(out.contains("2 of 2 tables differ, 1 of 1 sequence differ"), "{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_exits_2_when_a_node_is_unreachable() {
    within(120, "test", async {
        let a = PgNode::start().await;
        let dir = temp_dir();
        let config = dir.path().join("pgproxy.toml");
        std::fs::write(
            &config,
            ProxyConfig::with_nodes(&[a.port(), free_port()]).render(),
        )
        .expect("write config");
        let (code, out, err) = verify(&config).await;
        assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains("could not connect"), "{err}");
        let (code, _, err) = pgproxy(&[
            "verify",
            "--config",
            config.to_str().expect("utf-8"),
            "--shard",
            "nope",
        ])
        .await;
        assert_eq!(code, 2);
        assert!(err.contains("no shard named \"nope\""), "{err}");
    })
    .await
}
