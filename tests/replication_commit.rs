//! The default commit of a replicated transaction, through the built binary and real
//! PostgreSQL nodes: the followers PREPARE, the main commits with a plain COMMIT (its commit is
//! the decision), then the followers COMMIT PREPARED. Who refuses what, and what the client and
//! the nodes end up with. (In-doubt resolution after a crash: tests/replication_faults.rs.)

mod common;

use common::cluster::*;
use common::workloads::exec;
use common::*;

/// A deferred trigger that refuses every row at COMMIT (23514), to install on one node only.
const REFUSE_AT_COMMIT: &str = "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'this node refuses the row' USING ERRCODE = '23514'; END $$;
    CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION refuse()";

/// `sql`'s one value on each node, in order.
async fn per_node(cl: &ReplCluster, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for node in &cl.nodes {
        out.push(node.scalar(sql).await);
    }
    out
}

async fn rows_per_node(cl: &ReplCluster) -> Vec<String> {
    per_node(cl, "SELECT count(*) FROM t").await
}

async fn prepared_left(cl: &ReplCluster) -> Vec<String> {
    per_node(cl, "SELECT count(*) FROM pg_prepared_xacts").await
}

/// The main refuses its COMMIT (a deferred check fails there): the client gets the main's
/// error, the followers' prepared transactions are rolled back, no node is detached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_refusing_its_commit_rolls_the_followers_back() {
    within(90, "test", async {
        let cl = ReplCluster::start(3, |c| c).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&cl.nodes[0].superuser("app").await, REFUSE_AT_COMMIT).await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        let e = expect_sqlstate(c.batch_execute("COMMIT").await, "23514");
        assert!(
            describe(&e).contains("this node refuses the row"),
            "{}",
            describe(&e)
        );
        assert_eq!(rows_per_node(&cl).await, ["0", "0", "0"]);
        assert_eq!(prepared_left(&cl).await, ["0", "0", "0"]);
        // Nothing was detached: a write without the trigger's table still reaches every node.
        exec(&c, "CREATE TABLE u (id int); INSERT INTO u VALUES (1)").await;
        for node in &cl.nodes {
            assert_eq!(node.scalar("SELECT count(*) FROM u").await, "1");
        }
        assert!(!cl.proxy.log().contains("panicked"), "{}", cl.proxy.log());
    })
    .await
}

/// One follower alone refuses to prepare (a check only it has: it differs): the main passes
/// the same checks, so that follower is detached and the transaction commits on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_alone_refuses_to_prepare_is_detached() {
    within(90, "test", async {
        let cl = ReplCluster::start(3, |c| c).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&cl.nodes[2].superuser("app").await, REFUSE_AT_COMMIT).await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        exec(&c, "COMMIT").await;
        cl.wait_log(10, "follower detached").await;
        assert_eq!(rows_per_node(&cl).await, ["1", "1", "0"]);
        assert_eq!(prepared_left(&cl).await, ["0", "0", "0"]);
        exec(&c, "INSERT INTO t VALUES (2)").await;
        assert_eq!(rows_per_node(&cl).await, ["2", "2", "0"]);
        assert!(!cl.proxy.log().contains("panicked"), "{}", cl.proxy.log());
    })
    .await
}

/// Every follower refuses to prepare and so does the main's check (a deferred unique
/// violation): the client gets the main's own error, nothing is detached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_violation_everywhere_fails_with_the_mains_error() {
    within(90, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(
            &c,
            "CREATE TABLE t (id int UNIQUE DEFERRABLE INITIALLY DEFERRED); INSERT INTO t VALUES (1)",
        )
        .await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        let e = expect_sqlstate(c.batch_execute("COMMIT").await, "23505");
        assert!(describe(&e).contains("t_id_key"), "{}", describe(&e));
        assert_eq!(rows_per_node(&cl).await, ["1", "1"]);
        assert_eq!(prepared_left(&cl).await, ["0", "0"]);
        exec(&c, "INSERT INTO t VALUES (2)").await;
        assert_eq!(rows_per_node(&cl).await, ["2", "2"]);
        assert!(!cl.proxy.log().contains("detached"), "{}", cl.proxy.log());
    })
    .await
}

/// NOTIFY runs on the main only; the main no longer prepares, so a transaction that wrote and
/// notified commits (PostgreSQL cannot PREPARE a transaction that ran NOTIFY: before, its
/// COMMIT failed with 0A000). Autocommit writes take the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_transaction_that_notifies_commits() {
    within(90, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (1)").await;
        exec(&c, "NOTIFY t_changed").await;
        exec(&c, "COMMIT").await;
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO t VALUES (2)").await;
        exec(&c, "SELECT pg_notify('t_changed', '2')").await;
        exec(&c, "COMMIT").await;
        exec(&c, "INSERT INTO t VALUES (3)").await;
        assert_eq!(rows_per_node(&cl).await, ["3", "3"]);
        assert_eq!(prepared_left(&cl).await, ["0", "0"]);
        cl.assert_verify_ok().await;
    })
    .await
}
