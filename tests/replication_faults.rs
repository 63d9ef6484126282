//! Replication under failures, through the built binary and real PostgreSQL nodes: a replica or
//! the main killed (SIGKILL) while pgbench runs, a node detached by health checks that never
//! returns by itself, a node whose result differs from the main's being quarantined, and
//! prepared transactions left in doubt by a pgproxy killed between the two commit phases.

mod common;

use common::cluster::*;
use common::workloads::exec;
use common::*;
use futures_util::future::join_all;
use std::collections::HashSet;
use std::time::Duration;

const PGBENCH_TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_tellers",
    "pgbench_branches",
    "pgbench_history",
];

/// The postmaster's PID as its data dir records it (first line of postmaster.pid).
fn postmaster_pid(node: &PgNode) -> u32 {
    let text = std::fs::read_to_string(node.data_dir().join("postmaster.pid"))
        .expect("read postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid on the first line of postmaster.pid")
}

/// 3 nodes, `pgbench -i -s 1` through the proxy, then an 8 s TPC-B run with 16 clients during
/// which node `victim` is killed once transactions flow. Asserts pgbench saw no failure and the
/// survivors (directly and by `pgproxy verify` over them) are identical.
async fn pgbench_survives_losing(victim: usize) {
    let mut cl = ReplCluster::start(3, |c| c.health("interval_ms", "200")).await;
    let port = cl.port();
    let init = pgbench(port, "app", "secret", "app", &["-i", "-s", "1", "-q"]);
    let init = match tokio::time::timeout(Duration::from_secs(45), init).await {
        Ok(out) => out,
        Err(_) => panic!("pgbench -i hangs; nodes:\n{}", cl.activity().await),
    };
    assert!(
        init.status.success(),
        "pgbench -i through pgproxy: {init:?}"
    );
    cl.assert_identical(&PGBENCH_TABLES).await;

    let run = pgbench(
        port,
        "app",
        "secret",
        "app",
        &["-n", "-c", "16", "-j", "2", "-T", "8", "--max-tries=10"],
    );
    let kill = async {
        // Kill only once transactions are committing through every node.
        eventually(20, "pgbench transactions committed", || async {
            let n: i64 = cl.nodes[0]
                .scalar("SELECT count(*) FROM pgbench_history")
                .await
                .parse()
                .expect("count");
            (n >= 200).then_some(())
        })
        .await;
        let node = &mut cl.nodes[victim];
        assert_eq!(Some(postmaster_pid(node)), node.pid(), "postmaster.pid");
        node.kill9();
    };
    let run = tokio::time::timeout(Duration::from_secs(45), async { tokio::join!(run, kill).0 });
    let run = match run.await {
        Ok(out) => out,
        Err(_) => panic!("pgbench hangs; nodes:\n{}", cl.activity().await),
    };
    println!("pgbench after killing node {victim}:\n{}", run.stdout);
    assert!(run.status.success(), "pgbench failed: {run:?}");
    let (processed, failed) = pgbench_counts(&run.stdout);
    assert!(processed > 0, "{}", run.stdout);
    assert_eq!(
        failed,
        Some(0),
        "number of failed transactions: {}",
        run.stdout
    );
    assert!(
        cl.proxy.log().contains("node state changed"),
        "victim detached"
    );

    let survivors: Vec<&PgNode> = (0..3)
        .filter(|&i| i != victim)
        .map(|i| &cl.nodes[i])
        .collect();
    let digests = assert_identical(&survivors, &PGBENCH_TABLES).await;
    println!("survivors identical: {digests:?}");
    for node in &survivors {
        assert_eq!(
            node.scalar("SELECT sum(abalance) - (SELECT sum(delta) FROM pgbench_history) FROM pgbench_accounts")
                .await,
            "0",
            "TPC-B balances add up"
        );
    }
    let ports: Vec<u16> = survivors.iter().map(|n| n.port()).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = cl.config.clone().with_ports(&ports);
    assert_verify_ok_for(&config, dir.path(), "survivors.toml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_survives_a_replica_killed_mid_run() {
    within(120, "test", pgbench_survives_losing(2)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_survives_the_main_killed_mid_run() {
    within(120, "test", pgbench_survives_losing(0)).await
}

/// Ports that answer `n` load-balanced reads.
async fn read_ports(c: &tokio_postgres::Client, n: usize) -> HashSet<String> {
    let mut seen = HashSet::new();
    for _ in 0..n {
        seen.insert(scalar(c, "SELECT current_setting('port')").await);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_detach_a_dead_replica_for_good() {
    within(90, "test", async {
        let mut cl = ReplCluster::start(3, |c| {
            c.health("interval_ms", "200")
                .health("timeout_ms", "1000")
                .health("failures", "2")
        })
        .await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
        exec(
            &c,
            "INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 10) i",
        )
        .await;
        cl.assert_identical(&["t"]).await;
        let dead = cl.nodes[2].port().to_string();
        assert!(
            read_ports(&c, 100).await.contains(&dead),
            "node 2 serves reads while up"
        );

        // No traffic: only the health checks can notice.
        cl.nodes[2].kill9();
        cl.wait_log(10, "node state changed").await;
        let log = cl.proxy.log();
        assert!(
            log.contains("health checks failed"),
            "detached by health checks:\n{log}"
        );

        exec(&c, "INSERT INTO t VALUES (11, 'after detach')").await;
        cl.nodes[2].restart().await;
        assert_eq!(cl.nodes[2].scalar("SELECT count(*) FROM t").await, "10");
        exec(&c, "INSERT INTO t VALUES (12, 'after restart')").await;
        for sql in ["BEGIN", "UPDATE t SET v = 'x' WHERE id = 1", "COMMIT"] {
            exec(&c, sql).await;
        }
        assert!(
            !read_ports(&c, 100).await.contains(&dead),
            "no reads on the detached node"
        );

        assert_eq!(
            cl.nodes[2]
                .scalar("SELECT count(*) || ':' || max(id) || ':' || min(v) FROM t")
                .await,
            "10:10:v1",
            "the detached node got nothing, even after it came back"
        );
        for node in &cl.nodes[..2] {
            assert_eq!(node.scalar("SELECT count(*) FROM t").await, "12");
        }
        assert_identical(&[&cl.nodes[0], &cl.nodes[1]], &["t"]).await;
        let (code, out, _) = verify(&cl.proxy.config_path()).await;
        assert_eq!(code, 1, "the stale node differs:\n{out}");

        // A new pgproxy on the same config (and decision log) keeps the node detached, and
        // says so at start: it answers again but missed writes.
        drop(c);
        cl.proxy.signal(libc::SIGINT);
        assert!(
            cl.proxy.wait_exit(Duration::from_secs(10)).await.is_some(),
            "pgproxy exits on SIGINT"
        );
        cl.proxy = Proxy::start(&cl.config.render()).await;
        cl.wait_log(10, "node stays detached").await;
        let c = cl.client().await;
        exec(&c, "INSERT INTO t VALUES (13, 'after a pgproxy restart')").await;
        assert!(
            !read_ports(&c, 100).await.contains(&dead),
            "no reads on the detached node after a restart"
        );
        assert_eq!(cl.nodes[2].scalar("SELECT count(*) FROM t").await, "10");
        assert_identical(&[&cl.nodes[0], &cl.nodes[1]], &["t"]).await;
    })
    .await
}

/// A machine so busy that health checks time out (here: a 1 ms timeout, set by a reload while
/// clients run) while the nodes keep answering the clients' statements: slow is not dead, no
/// node is detached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_health_checks_on_nodes_that_answer_traffic_detach_nothing() {
    within(90, "test", async {
        let cl = ReplCluster::start(2, |c| {
            c.health("interval_ms", "50")
                .health("timeout_ms", "2000")
                .health("failures", "2")
        })
        .await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY, v text)").await;
        let clients = join_all((0..4).map(|_| cl.client())).await;
        let start = std::time::Instant::now();
        let work = clients.iter().enumerate().map(|(k, c)| async move {
            let mut i = 0;
            while start.elapsed() < Duration::from_secs(4) {
                i += 1;
                let id = k * 1_000_000 + i;
                exec(c, &format!("INSERT INTO t VALUES ({id}, 'v')")).await;
                scalar(c, "SELECT count(*) FROM t").await;
            }
            i
        });
        let config = std::fs::read_to_string(cl.proxy.config_path()).expect("config");
        let set_timeout = |ms: &str| {
            let text = config.replace("timeout_ms = 2000", &format!("timeout_ms = {ms}"));
            cl.proxy.rewrite_config_raw(&text);
            cl.proxy.signal(libc::SIGHUP);
        };
        // A check on an open connection can answer within 1 ms on an idle machine: end the
        // health checks' connections (their last query is `SELECT 1`), so that every check
        // has to log in again, which takes longer than 1 ms.
        let kill_checks = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                           WHERE query = 'SELECT 1' AND pid <> pg_backend_pid()";
        let reloads = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            set_timeout("1");
            tokio::time::sleep(Duration::from_millis(200)).await;
            for node in &cl.nodes {
                node.scalar(kill_checks).await;
            }
            tokio::time::sleep(Duration::from_millis(2300)).await;
            set_timeout("2000");
        };
        let (done, ()) = tokio::join!(join_all(work), reloads);
        let done: usize = done.into_iter().sum();
        let log = cl.proxy.log();
        assert!(
            log.contains("health check slow"),
            "the checks did time out:\n{log}"
        );
        assert!(
            !log.contains("node state changed"),
            "a node answering traffic was detached:\n{log}"
        );
        assert_eq!(scalar(&c, "SELECT count(*) FROM t").await, done.to_string());
        cl.assert_identical(&["t"]).await;
    })
    .await
}

/// 3 nodes holding t(id, v) ids 1..10; node 1 loses row 5 behind pgproxy's back, then
/// `UPDATE t SET v = v + 1` through pgproxy (10 rows on the main, 9 on node 1) detaches it.
async fn diverged() -> (ReplCluster, tokio_postgres::Client) {
    let cl = ReplCluster::start(3, |c| c).await;
    let c = cl.client().await;
    exec(&c, "CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    exec(
        &c,
        "INSERT INTO t SELECT i, 0 FROM generate_series(1, 10) i",
    )
    .await;
    cl.assert_identical(&["t"]).await;
    cl.nodes[1].scalar("DELETE FROM t WHERE id = 5").await;
    let n = c
        .execute("UPDATE t SET v = v + 1", &[])
        .await
        .expect("update");
    assert_eq!(n, 10, "the client gets the main's row count");
    cl.wait_log(10, "node state changed").await;
    let log = cl.proxy.log();
    assert!(
        log.contains("differed from the main"),
        "detached for diverging:\n{log}"
    );
    (cl, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_follower_is_quarantined() {
    within(90, "test", async {
        let (cl, c) = diverged().await;
        exec(&c, "INSERT INTO t VALUES (11, 100)").await;
        exec(&c, "UPDATE t SET v = v + 1 WHERE id <= 3").await;
        let gone = cl.nodes[1].port().to_string();
        let ports = read_ports(&c, 100).await;
        assert!(!ports.contains(&gone), "no reads on the quarantined node");
        let sql = "SELECT count(*) || ':' || sum(v) FROM t";
        let stale = cl.nodes[1].scalar(sql).await;
        assert_eq!(
            stale, "9:0",
            "the quarantined node got no write from the diverging one on"
        );
        for node in [&cl.nodes[0], &cl.nodes[2]] {
            assert_eq!(node.scalar(sql).await, "11:113");
        }
        assert_identical(&[&cl.nodes[0], &cl.nodes[2]], &["t"]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = [cl.nodes[0].port(), cl.nodes[2].port()];
        assert_verify_ok_for(&cl.config.clone().with_ports(&ports), dir.path(), "ok.toml").await;
        let (code, out, _) = verify(&cl.proxy.config_path()).await;
        assert_eq!(code, 1, "the quarantined node differs:\n{out}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_follower_is_left_without_a_prepared_transaction() {
    within(90, "test", async {
        let (cl, _c) = diverged().await;
        let sql = "SELECT coalesce(string_agg(gid, ','), '') FROM pg_prepared_xacts";
        eventually(
            10,
            "no prepared transaction left on the detached node",
            || async { cl.nodes[1].scalar(sql).await.is_empty().then_some(()) },
        )
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_resolves_in_doubt_prepared_transactions() {
    within(120, "test", async {
        let nodes = start_nodes(2).await;
        let (commit, rollback) = ("pgproxy_00c0ffee12345678_1", "pgproxy_00c0ffee12345678_2");
        for node in &nodes {
            let app = connect_app(node.port()).await;
            exec(&app, "CREATE TABLE t (x int)").await;
            for (gid, x) in [(commit, 1), (rollback, 2)] {
                let sql = format!("BEGIN; INSERT INTO t VALUES ({x}); PREPARE TRANSACTION '{gid}'");
                exec(&app, &sql).await;
            }
            assert_eq!(
                node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
                "2"
            );
        }
        // pgproxy was killed after recording the first decision, before the second phase.
        let dir = decision_dir();
        let log = dir.path().join("decisions.log");
        std::fs::write(&log, format!("C {commit}\n")).expect("write log");
        let cl = ReplCluster::with_nodes(nodes, dir, |c| c).await;
        for node in &cl.nodes {
            eventually(20, "prepared transactions resolved", || async {
                let left = node.scalar("SELECT count(*) FROM pg_prepared_xacts").await;
                (left == "0").then_some(())
            })
            .await;
            let rows = node.scalar("SELECT string_agg(x::text, ',' ORDER BY x) FROM t");
            assert_eq!(rows.await, "1", "committed and rolled back as decided");
        }
        eventually(10, "decision marked done", || async {
            let text = std::fs::read_to_string(cl.decision_log()).unwrap_or_default();
            text.contains(&format!("D {commit}")).then_some(())
        })
        .await;
        assert_eq!(
            scalar(&cl.client().await, "SELECT count(*) FROM t").await,
            "1"
        );
        cl.assert_verify_ok().await;
    })
    .await
}

/// The followers' prepared transactions of a commit the main decided (gids naming the main's
/// transaction id and node) are resolved at startup by asking the main: committed there →
/// committed, rolled back there → rolled back; a gid naming a node outside the configuration
/// stays prepared (pgproxy does not guess).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_asks_the_main_about_its_followers_prepared_transactions() {
    within(120, "test", async {
        let nodes = start_nodes(2).await;
        let main = connect_app(nodes[0].port()).await;
        exec(&main, "CREATE TABLE t (x int)").await;
        let mut xids = Vec::new();
        for (x, end) in [(1, "COMMIT"), (2, "ROLLBACK"), (3, "COMMIT")] {
            exec(&main, &format!("BEGIN; INSERT INTO t VALUES ({x})")).await;
            xids.push(scalar(&main, "SELECT txid_current()::text").await);
            exec(&main, end).await;
        }
        let gid = |n: usize, host: &str, port: u16| {
            format!(
                "pgproxy_00c0ffee12345678_{}_{}@{host}:{port}",
                n + 1,
                xids[n]
            )
        };
        let main_port = nodes[0].port();
        let gids = [
            gid(0, "127.0.0.1", main_port),
            gid(1, "127.0.0.1", main_port),
            gid(2, "192.0.2.1", 5432),
        ];
        let follower = connect_app(nodes[1].port()).await;
        exec(&follower, "CREATE TABLE t (x int)").await;
        for (x, gid) in gids.iter().enumerate() {
            let sql = format!(
                "BEGIN; INSERT INTO t VALUES ({}); PREPARE TRANSACTION '{gid}'",
                x + 1
            );
            exec(&follower, &sql).await;
        }
        let cl = ReplCluster::with_nodes(nodes, decision_dir(), |c| c).await;
        let left = "SELECT string_agg(gid, ',') FROM pg_prepared_xacts";
        eventually(20, "the main's transactions resolved", || async {
            let left = cl.nodes[1].scalar(left).await;
            (left == gids[2]).then_some(())
        })
        .await;
        assert_eq!(
            cl.nodes[1]
                .scalar("SELECT string_agg(x::text, ',' ORDER BY x) FROM t")
                .await,
            "1",
            "committed and rolled back as the main did"
        );
        cl.wait_log(10, "in-doubt transaction left prepared").await;
        exec(&follower, &format!("ROLLBACK PREPARED '{}'", gids[2])).await;
    })
    .await
}

/// Two nodes where the follower holds two prepared transactions of a commit the main decided
/// (gids naming the main): the main committed the first (x = 1) and rolled back the second
/// (x = 2). Returns the nodes and the gids.
async fn followers_in_doubt() -> (Vec<PgNode>, [String; 2]) {
    let nodes = start_nodes(2).await;
    let main = connect_app(nodes[0].port()).await;
    exec(&main, "CREATE TABLE t (x int PRIMARY KEY)").await;
    let mut gids = Vec::new();
    for (x, end) in [(1, "COMMIT"), (2, "ROLLBACK")] {
        exec(&main, &format!("BEGIN; INSERT INTO t VALUES ({x})")).await;
        let xid = scalar(&main, "SELECT txid_current()::text").await;
        exec(&main, end).await;
        gids.push(format!(
            "pgproxy_00c0ffee12345678_{x}_{xid}@127.0.0.1:{}",
            nodes[0].port()
        ));
    }
    let follower = connect_app(nodes[1].port()).await;
    exec(&follower, "CREATE TABLE t (x int PRIMARY KEY)").await;
    for (x, gid) in gids.iter().enumerate() {
        let sql = format!(
            "BEGIN; INSERT INTO t VALUES ({}); PREPARE TRANSACTION '{gid}'",
            x + 1
        );
        exec(&follower, &sql).await;
    }
    let gids = [gids[0].clone(), gids[1].clone()];
    (nodes, gids)
}

/// The follower's committed rows and prepared gids, once nothing is left prepared.
async fn follower_settles(node: &PgNode) -> String {
    eventually(
        30,
        "the follower's in-doubt transactions resolved",
        || async {
            let left = node.scalar("SELECT count(*) FROM pg_prepared_xacts").await;
            (left == "0").then_some(())
        },
    )
    .await;
    node.scalar("SELECT coalesce(string_agg(x::text, ',' ORDER BY x), '') FROM t")
        .await
}

/// The main a follower's prepared transactions name is down when pgproxy starts (so they stay
/// prepared, holding their row locks) and comes back while pgproxy runs: pgproxy asks it again
/// and resolves them as it decided, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_main_unreachable_at_start_is_asked_again_once_back() {
    within(120, "test", async {
        let (mut nodes, gids) = followers_in_doubt().await;
        nodes[0].stop();
        // Health checks that never detach the main during this test.
        let mut cl = ReplCluster::with_nodes(nodes, decision_dir(), |c| {
            c.health("interval_ms", "200").health("failures", "100000")
        })
        .await;
        cl.wait_log(20, "in-doubt transaction left prepared").await;
        assert_eq!(
            cl.nodes[1]
                .scalar("SELECT count(*) FROM pg_prepared_xacts")
                .await,
            "2",
            "nothing decided while the main cannot say"
        );
        cl.nodes[0].restart().await;
        assert_eq!(
            follower_settles(&cl.nodes[1]).await,
            "1",
            "as the main decided ({gids:?})"
        );
        cl.wait_log(10, "all resolved").await;
        let c = cl.client().await;
        exec(&c, "INSERT INTO t VALUES (2)").await;
        cl.assert_identical(&["t"]).await;
    })
    .await
}

/// The same, but the main never comes back: once health checks detach it (recorded), the
/// followers hold the transactions and pgproxy commits them, so their rows are not locked
/// until the next start and writes to them go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_in_doubt_commit_once_their_main_is_detached() {
    within(120, "test", async {
        let (mut nodes, _gids) = followers_in_doubt().await;
        nodes[0].stop();
        let cl = ReplCluster::with_nodes(nodes, decision_dir(), |c| {
            c.health("interval_ms", "200").health("failures", "2")
        })
        .await;
        assert_eq!(follower_settles(&cl.nodes[1]).await, "1,2");
        let c = cl.client().await;
        // Both rows were held by prepared transactions: a write to them neither waits nor fails.
        exec(&c, "UPDATE t SET x = x + 10").await;
        assert_eq!(
            scalar(&c, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t").await,
            "11,12"
        );
    })
    .await
}

/// 3 nodes with t(id, v) = (1, 0); a direct transaction on the main holds row 1 while a client
/// (inside an explicit transaction when `in_txn`) runs `UPDATE t SET v = v + 1` through pgproxy,
/// which waits on the main; then the main is killed. Returns the cluster, the client and what
/// its UPDATE got.
async fn main_dies_under_a_statement(
    in_txn: bool,
) -> (ReplCluster, tokio_postgres::Client, Result<(), String>) {
    let mut cl = ReplCluster::start(3, |c| c.health("interval_ms", "200")).await;
    let c = cl.client().await;
    exec(
        &c,
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)",
    )
    .await;
    let blocker = cl.nodes[0].superuser("app").await;
    exec(&blocker, "BEGIN; UPDATE t SET v = 100 WHERE id = 1").await;
    if in_txn {
        exec(&c, "BEGIN").await;
    }
    let update = tokio::spawn(async move {
        let res = c.batch_execute("UPDATE t SET v = v + 1 WHERE id = 1").await;
        (c, res.map_err(|e| describe(&e)))
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";
    eventually(10, "the UPDATE waits on the main", || async {
        (cl.nodes[0].scalar(waiting).await == "1").then_some(())
    })
    .await;
    cl.nodes[0].kill9();
    let (c, res) = within(20, "the in-flight UPDATE is answered", update)
        .await
        .expect("task");
    (cl, c, res)
}

/// After the failover the client's retry works on the new main and the survivors agree.
async fn retry_works(cl: &ReplCluster, c: &tokio_postgres::Client) {
    let n = c.execute("UPDATE t SET v = v + 1 WHERE id = 1", &[]).await;
    assert_eq!(n.unwrap_or_else(|e| panic!("retry: {}", describe(&e))), 1);
    for node in &cl.nodes[1..] {
        assert_eq!(
            node.scalar("SELECT v FROM t").await,
            "1",
            "node {}",
            node.port()
        );
    }
    assert_identical(&[&cl.nodes[1], &cl.nodes[2]], &["t"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_flight_on_a_dying_main_fails_with_40001_and_can_be_retried() {
    within(90, "test", async {
        let (cl, c, res) = main_dies_under_a_statement(true).await;
        let err = res.expect_err("the statement cannot succeed");
        assert!(err.contains("40001"), "{err}");
        exec(&c, "ROLLBACK").await;
        retry_works(&cl, &c).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autocommit_write_in_flight_on_a_dying_main_fails_with_40001_and_can_be_retried() {
    within(90, "test", async {
        let (cl, c, res) = main_dies_under_a_statement(false).await;
        let err = res.expect_err("the statement cannot succeed");
        assert!(err.contains("40001"), "{err}");
        retry_works(&cl, &c).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_flight_when_the_main_dies_is_never_reported_as_committed() {
    within(90, "test", async {
        let mut cl = ReplCluster::start(3, |c| c.health("interval_ms", "200")).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        // On the main only: PREPARE TRANSACTION runs this deferred trigger, and so takes 3 s.
        let slow = "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION slow()";
        exec(&cl.nodes[0].superuser("app").await, slow).await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        let commit = tokio::spawn(async move {
            let res = c.batch_execute("COMMIT").await;
            (c, res.map_err(|e| describe(&e)))
        });
        let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'";
        eventually(10, "PREPARE runs on the main", || async {
            (cl.nodes[0].scalar(sleeping).await == "1").then_some(())
        })
        .await;
        cl.nodes[0].kill9();
        let (c, res) = within(20, "COMMIT answered", commit).await.expect("task");
        let rows = join_all(
            cl.nodes[1..]
                .iter()
                .map(|n| n.scalar("SELECT count(*) FROM t")),
        )
        .await;
        match &res {
            Ok(()) => assert_eq!(rows, ["1", "1"], "COMMIT succeeded: the row is kept"),
            Err(e) => {
                assert!(e.contains("40001"), "{e}");
                assert_eq!(rows, ["0", "0"], "COMMIT failed: nothing is kept");
            }
        }
        assert_eq!(scalar(&c, "SELECT 42").await, "42", "the session goes on");
        for node in &cl.nodes[1..] {
            let prepared = node.scalar("SELECT count(*) FROM pg_prepared_xacts").await;
            assert_eq!(prepared, "0", "node {}", node.port());
        }
    })
    .await
}

/// Every pgbench query mode in both pool modes through a 2-node shard: no failed transaction,
/// nodes identical (regression: `-M prepared` lost its END statement after one transaction,
/// because pgproxy's own frames of one request leaked into the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_every_query_mode_in_both_pool_modes() {
    for mode in ["transaction", "session"] {
        let cl = ReplCluster::start(2, |c| c.general("pool_mode", &format!("\"{mode}\""))).await;
        let port = cl.port();
        let init = pgbench(port, "app", "secret", "app", &["-i", "-s", "1", "-q"]).await;
        assert!(init.status.success(), "pgbench -i ({mode}): {init:?}");
        for q in ["simple", "extended", "prepared"] {
            let args = ["-n", "-M", q, "-c", "4", "-j", "2", "-t", "25"];
            let run = within(60, "pgbench", pgbench(port, "app", "secret", "app", &args)).await;
            assert!(run.status.success(), "pgbench -M {q} ({mode}): {run:?}");
            let (processed, failed) = pgbench_counts(&run.stdout);
            assert_eq!(processed, 100, "-M {q} ({mode}): {}", run.stdout);
            assert_eq!(failed, Some(0), "-M {q} ({mode}): {}", run.stdout);
        }
        cl.assert_identical(&PGBENCH_TABLES).await;
        cl.assert_verify_ok().await;
        assert!(
            !cl.proxy.log().contains("node state changed"),
            "no node detached ({mode})"
        );
    }
}
