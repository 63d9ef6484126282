//! Limits: waiting for a server connection times out with 53300, max_client_conn refuses extra
//! clients with 53300, and an oversized message is refused without taking the proxy down.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_times_out_with_53300_then_recovers() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(1).checkout_timeout_ms(500)).await;
        let a = connect_app(proxy.port()).await;
        let b = connect_app(proxy.port()).await;
        a.batch_execute("BEGIN").await.expect("begin");
        assert_eq!(scalar(&a, "select 1").await, "1");
        for _ in 0..2 {
            let started = Instant::now();
            expect_sqlstate(b.simple_query("select 1").await, "53300");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "took {:?}",
                started.elapsed()
            );
        }
        expect_sqlstate(b.query("select $1::int4", &[&1i32]).await, "53300");
        // A is unaffected and can finish its transaction; then B gets the connection.
        assert_eq!(scalar(&a, "select 2").await, "2");
        a.batch_execute("COMMIT").await.expect("commit");
        assert_eq!(scalar(&b, "select 'b works'").await, "b works");
        let n: i32 = b
            .query_one("select $1::int4", &[&7i32])
            .await
            .expect("extended after 53300")
            .get(0);
        assert_eq!(n, 7);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_the_fourth_client() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.general("max_client_conn", 3)).await;
        let port = proxy.port();
        // The proxy's readiness probe was a client too: wait until it is counted out.
        let first = eventually(5, "first client admitted", || async {
            connect(port, "app", "secret", "app").await.ok()
        })
        .await;
        let second = connect_app(port).await;
        let third = connect_app(port).await;
        for c in [&first, &second, &third] {
            assert_eq!(scalar(c, "select 1").await, "1");
        }
        for _ in 0..3 {
            expect_sqlstate(connect(port, "app", "secret", "app").await, "53300");
        }
        drop(second);
        let replacement = eventually(5, "a slot frees up after a client leaves", || async {
            connect(port, "app", "secret", "app").await.ok()
        })
        .await;
        assert_eq!(
            scalar(&replacement, "select 'fourth in'").await,
            "fourth in"
        );
        expect_sqlstate(connect(port, "app", "secret", "app").await, "53300");
        assert_eq!(
            scalar(&first, "select 'first still in'").await,
            "first still in"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_refused() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.general("max_message_size", 1 << 20)).await;
        let client = connect_app(proxy.port()).await;
        let small = "x".repeat(1000);
        let echoed: String = client
            .query_one("select $1::text", &[&small])
            .await
            .expect("small")
            .get(0);
        assert_eq!(echoed, small);
        let big = "x".repeat(2 << 20);
        let err = client
            .query_one("select length($1::text)", &[&big])
            .await
            .expect_err("2 MiB > max_message_size");
        assert!(
            sqlstate(&err).as_deref() == Some("54000") || err.is_closed(),
            "expected 54000 or a closed connection: {}",
            describe(&err)
        );
        let other = connect_app(proxy.port()).await;
        assert_eq!(
            scalar(&other, "select 'proxy still serves'").await,
            "proxy still serves"
        );
    })
    .await
}
