//! Query cancellation through the proxy (the cancel key the client holds is the proxy's) and
//! LISTEN/NOTIFY in session mode.

mod common;

use common::wire::{self, RawConn};
use common::*;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Waits until the node shows `marker` running as an active query; returns its backend pid.
async fn wait_active(node: &PgNode, marker: &str) -> i32 {
    let sql = format!(
        "select pid from pg_stat_activity where state = 'active' and query like '%{marker}%' \
         and pid <> pg_backend_pid()"
    );
    eventually(10, "query visible in pg_stat_activity", || async {
        node.scalar(&sql).await.parse::<i32>().ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_through_the_proxy_stops_the_query() {
    within(120, "test", async {
        for mode in ["transaction", "session"] {
            let (node, proxy) = node_and_proxy(|c| c.pool_mode(mode)).await;
            let client = connect_app(proxy.port()).await;
            let bystander = connect_app(proxy.port()).await;
            for round in 0..2 {
                let token = client.cancel_token();
                let marker = format!("cancel_me_{round}");
                let sql = format!("select pg_sleep(30) /* {marker} */");
                let sleeper = client.simple_query(&sql);
                let canceller = async {
                    wait_active(&node, &marker).await;
                    token
                        .cancel_query(NoTls)
                        .await
                        .expect("send cancel to the proxy");
                    Instant::now()
                };
                let (res, sent_at) = within(20, "cancelled query", async {
                    tokio::join!(sleeper, canceller)
                })
                .await;
                expect_sqlstate(res, "57014");
                assert!(
                    sent_at.elapsed() < Duration::from_secs(5),
                    "{mode}: cancel took {:?}",
                    sent_at.elapsed()
                );
                // PostgreSQL's postmaster signals a cancelled backend twice (its pid, then its
                // process group): the second SIGINT, if it lands after the error was sent, can
                // cancel the backend's next statement (seen under CI load: round 1's query
                // cancelled 2 ms after round 0's). Let it land while the backend is idle.
                tokio::time::sleep(Duration::from_millis(300)).await;
                assert_eq!(
                    scalar(&client, "select 'usable after cancel'").await,
                    "usable after cancel",
                    "{mode}"
                );
                assert_eq!(
                    scalar(&bystander, "select 'bystander fine'").await,
                    "bystander fine",
                    "{mode}"
                );
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_with_a_wrong_key_cancels_nothing() {
    within(60, "test", async {
        let (node, proxy) = node_and_proxy(|c| c).await;
        let client = connect_app(proxy.port()).await;
        let sleeper = client.simple_query("select pg_sleep(1.5) /* not_cancelled */");
        let bogus = async {
            wait_active(&node, "not_cancelled").await;
            let mut raw = RawConn::connect(proxy.port()).await;
            raw.send(&wire::cancel_request(12345, 67890))
                .await
                .expect("send cancel");
            // The proxy closes a cancel connection without answering.
            assert_eq!(raw.rejection().await, wire::Rejection::Closed);
        };
        let (res, ()) = tokio::join!(sleeper, bogus);
        assert!(
            res.is_ok(),
            "a wrong key must not cancel: {:?}",
            res.err().map(|e| describe(&e))
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_in_session_mode() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_mode("session")).await;
        let (a, mut notes) = connect_notify(&pg_config(proxy.port(), "app", "secret", "app"))
            .await
            .expect("connect listener");
        a.batch_execute("LISTEN ch").await.expect("listen");
        let b = connect_app(proxy.port()).await;
        b.batch_execute("NOTIFY ch, 'hello'").await.expect("notify");
        let n = within(10, "notification", notes.recv())
            .await
            .expect("listener alive");
        assert_eq!((n.channel(), n.payload()), ("ch", "hello"));
        // Delivered while A is idle, and again via pg_notify from a transaction.
        b.batch_execute("begin; select pg_notify('ch', 'second'); commit")
            .await
            .expect("notify in tx");
        let n = within(10, "second notification", notes.recv())
            .await
            .expect("listener alive");
        assert_eq!(n.payload(), "second");
        assert_eq!(
            scalar(&a, "select 'listener still works'").await,
            "listener still works"
        );
    })
    .await
}

/// A server connection a cancel was forwarded to is closed, not handed to the next client:
/// PostgreSQL signals a cancelled backend twice, and a late second signal would cancel the
/// next client's statement there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_server_connection_is_not_reused() {
    within(60, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_mode("transaction").pool_size(1)).await;
        let client = connect_app(proxy.port()).await;
        let pid = wait_pid(&client).await;
        let token = client.cancel_token();
        let sleeper = client.simple_query("select pg_sleep(30) /* cancelled_once */");
        let canceller = async {
            wait_active(&node, "cancelled_once").await;
            token.cancel_query(NoTls).await.expect("send cancel");
        };
        let (res, ()) = tokio::join!(sleeper, canceller);
        expect_sqlstate(res, "57014");
        let next = connect_app(proxy.port()).await;
        let after = wait_pid(&next).await;
        assert_ne!(after, pid, "the cancelled backend served the next client");
        // Without a cancel the connection is reused as usual.
        assert_eq!(wait_pid(&client).await, after);
    })
    .await
}

async fn wait_pid(c: &tokio_postgres::Client) -> String {
    scalar(c, "select pg_backend_pid()::text").await
}
