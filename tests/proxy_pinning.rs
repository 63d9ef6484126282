//! Session state that cannot move between server connections (temp tables, session advisory
//! locks, SQL-level PREPARE, WITH HOLD cursors, LISTEN) keeps a transaction-mode client on its
//! server connection, while other clients go on through the rest of the pool.

mod common;

use common::*;
use std::time::Duration;
use tokio_postgres::Client;

async fn backend_pid(client: &Client) -> i32 {
    scalar(client, "select pg_backend_pid()")
        .await
        .parse()
        .expect("pid")
}

/// pool_size 2: `pinned` keeps one server connection to itself (checked by backend pid) while
/// `others` take turns on the other one.
async fn churn(pinned: &Client, others: &[Client], rounds: usize) {
    let pid = backend_pid(pinned).await;
    for round in 0..rounds as i32 {
        for c in others {
            let row = c
                .query_one("select $1::int4, pg_backend_pid()", &[&round])
                .await
                .expect("churn");
            assert_eq!(row.get::<_, i32>(0), round);
            assert_ne!(
                row.get::<_, i32>(1),
                pid,
                "another client ran on the pinned connection"
            );
        }
    }
    assert_eq!(
        backend_pid(pinned).await,
        pid,
        "the pinned client moved to another connection"
    );
}

async fn setup() -> (PgNode, Proxy, Client, Vec<Client>) {
    let (node, proxy) = node_and_proxy(|c| c.pool_size(2).checkout_timeout_ms(10_000)).await;
    let pinned = connect_app(proxy.port()).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(connect_app(proxy.port()).await);
    }
    (node, proxy, pinned, others)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_table_stays_visible_across_statements() {
    within(90, "test", async {
        let (node, proxy, a, others) = setup().await;
        a.batch_execute("create temp table tmp_a(x int)")
            .await
            .expect("create temp");
        churn(&a, &others, 5).await;
        a.batch_execute("insert into tmp_a values (1), (2)")
            .await
            .expect("insert");
        churn(&a, &others, 5).await;
        assert_eq!(scalar(&a, "select count(*) from tmp_a").await, "2");
        let n: i64 = a
            .query_one("select count(*) from tmp_a", &[])
            .await
            .expect("extended")
            .get(0);
        assert_eq!(n, 2);
        for c in &others {
            expect_sqlstate(c.simple_query("select * from tmp_a").await, "42P01");
        }
        // Once the client leaves, its temp table goes with its session state.
        drop(a);
        eventually(10, "temp table dropped after the client left", || async {
            let n = node
                .scalar("select count(*) from pg_class where relname = 'tmp_a'")
                .await;
            (n == "0").then_some(())
        })
        .await;
        let fresh = connect_app(proxy.port()).await;
        expect_sqlstate(fresh.simple_query("select * from tmp_a").await, "42P01");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_advisory_lock_is_held_until_unlocked() {
    within(90, "test", async {
        let (node, _proxy, a, others) = setup().await;
        assert_eq!(scalar(&a, "select pg_advisory_lock(42)").await, "");
        churn(&a, &others, 5).await;
        let held = "select count(*) from pg_locks where locktype = 'advisory' and granted";
        assert_eq!(scalar(&others[0], held).await, "1");
        churn(&a, &others, 5).await;
        assert_eq!(scalar(&a, "select pg_advisory_unlock(42)").await, "t");
        assert_eq!(scalar(&others[1], held).await, "0");
        // A lock left behind by a departing client must not stay with a pooled connection.
        assert_eq!(scalar(&a, "select pg_advisory_lock(43)").await, "");
        drop(a);
        eventually(
            10,
            "advisory lock released after the client left",
            || async { (node.scalar(held).await == "0").then_some(()) },
        )
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_and_execute_across_statements() {
    within(90, "test", async {
        let (_node, _proxy, a, others) = setup().await;
        a.batch_execute("PREPARE triple(int) AS select $1 * 3")
            .await
            .expect("prepare");
        for i in 0..10 {
            churn(&a, &others, 1).await;
            assert_eq!(
                scalar(&a, &format!("EXECUTE triple({i})")).await,
                (i * 3).to_string()
            );
        }
        for c in &others {
            expect_sqlstate(c.simple_query("EXECUTE triple(1)").await, "26000");
        }
        a.batch_execute("DEALLOCATE triple")
            .await
            .expect("deallocate");
        expect_sqlstate(a.simple_query("EXECUTE triple(1)").await, "26000");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hold_cursor_is_fetched_in_later_statements() {
    within(90, "test", async {
        let (_node, _proxy, a, others) = setup().await;
        a.batch_execute("DECLARE c CURSOR WITH HOLD FOR select g from generate_series(1, 30) g")
            .await
            .expect("declare");
        let mut seen = Vec::new();
        for _ in 0..3 {
            churn(&a, &others, 2).await;
            let rows = simple_rows(&a, "FETCH 10 FROM c").await;
            assert_eq!(rows.len(), 10);
            seen.extend(
                rows.into_iter()
                    .map(|r| r[0].clone().expect("not null").parse::<i32>().expect("int")),
            );
        }
        assert_eq!(seen, (1..=30).collect::<Vec<_>>());
        assert!(simple_rows(&a, "FETCH 10 FROM c").await.is_empty());
        a.batch_execute("CLOSE c").await.expect("close");
        expect_sqlstate(a.simple_query("FETCH 1 FROM c").await, "34000");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_keeps_receiving_in_transaction_mode() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(2).checkout_timeout_ms(10_000)).await;
        let (a, mut notes) = connect_notify(&pg_config(proxy.port(), "app", "secret", "app"))
            .await
            .expect("connect listener");
        a.batch_execute("LISTEN ch_txn").await.expect("listen");
        let b = connect_app(proxy.port()).await;
        let c = connect_app(proxy.port()).await;
        for i in 0..5 {
            churn(&a, std::slice::from_ref(&c), 3).await;
            b.batch_execute(&format!("NOTIFY ch_txn, 'hi {i}'"))
                .await
                .expect("notify");
            let n = within(10, "notification", notes.recv())
                .await
                .expect("listener connection alive");
            assert_eq!(
                (n.channel(), n.payload()),
                ("ch_txn", format!("hi {i}").as_str())
            );
        }
        a.batch_execute("UNLISTEN ch_txn").await.expect("unlisten");
        b.batch_execute("NOTIFY ch_txn, 'after unlisten'")
            .await
            .expect("notify");
        assert_eq!(scalar(&a, "select 'still here'").await, "still here");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), notes.recv())
                .await
                .is_err(),
            "no notification after UNLISTEN"
        );
    })
    .await
}
