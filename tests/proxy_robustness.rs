//! Failures the proxy must survive: a backend terminated mid-query, malformed or hostile client
//! bytes, and clients vanishing mid-transaction. Each must end in an error or a close, never a
//! hang, and leave the proxy serving normal clients.

mod common;

use common::wire::{self, RawConn, Rejection};
use common::*;

async fn terminate_backend_running(node: &PgNode, marker: &str) {
    let find = format!(
        "select pid from pg_stat_activity where state = 'active' and query like '%{marker}%' \
         and pid <> pg_backend_pid()"
    );
    let pid: i32 = eventually(10, "victim query visible", || async {
        node.scalar(&find).await.parse().ok()
    })
    .await;
    assert_eq!(
        node.scalar(&format!("select pg_terminate_backend({pid})"))
            .await,
        "t"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_terminated_mid_query_fails_that_query_only() {
    within(120, "test", async {
        for mode in ["transaction", "session"] {
            let (node, proxy) = node_and_proxy(|c| c.pool_mode(mode).pool_size(1)).await;
            let client = connect_app(proxy.port()).await;
            let victim = client.simple_query("select pg_sleep(30) /* victim */");
            let (res, ()) = within(20, "victim query ends", async {
                tokio::join!(victim, terminate_backend_running(&node, "victim"))
            })
            .await;
            let err = res.expect_err("terminated backend");
            let code = sqlstate(&err);
            assert!(
                matches!(code.as_deref(), Some("57P01") | Some("08006")) || err.is_closed(),
                "{mode}: {}",
                describe(&err)
            );
            // Transaction mode: the same client goes on. Session mode: its session is gone, a new
            // client works.
            let next = if mode == "transaction" {
                client
            } else {
                drop(client); // frees the only pool slot its session held
                connect_app(proxy.port()).await
            };
            for i in 0..10 {
                assert_eq!(
                    scalar(&next, &format!("select {i}")).await,
                    i.to_string(),
                    "{mode}"
                );
            }
            drop(next); // in session mode it holds the only pool slot
            let other = connect_app(proxy.port()).await;
            assert_eq!(
                scalar(&other, "select 'pool not poisoned'").await,
                "pool not poisoned",
                "{mode}"
            );
        }
    })
    .await
}

/// After each hostile input, a normal client still works.
async fn still_serves(port: u16) {
    let client = connect_app(port).await;
    assert_eq!(
        scalar(&client, "select 'still serving'").await,
        "still serving"
    );
}

fn assert_rejected(got: Rejection, what: &str) {
    match got {
        Rejection::Closed => {}
        Rejection::Error(code) => {
            assert!(!code.is_empty(), "{what}: ErrorResponse without SQLSTATE")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_are_refused() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let port = proxy.port();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "http request",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            ("length 2^31-1", vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
            ("length below 8", vec![0, 0, 0, 2]),
            (
                "unknown protocol version",
                [0, 0, 0, 8, 0, 9, 0, 9].to_vec(),
            ),
            (
                "startup without user",
                [vec![0, 0, 0, 9, 0, 3, 0, 0], vec![0]].concat(),
            ),
            (
                "negative length, then noise",
                [0xff, 0xff, 0xff, 0xf0]
                    .into_iter()
                    .chain((0..60u32).map(|i| (i * 37) as u8))
                    .collect(),
            ),
        ];
        for (what, bytes) in cases {
            let mut raw = RawConn::connect(port).await;
            let _ = raw.send(&bytes).await;
            assert_rejected(raw.rejection().await, what);
            still_serves(port).await;
        }
        // A client that connects and says nothing, then leaves, does not block others.
        let silent = RawConn::connect(port).await;
        still_serves(port).await;
        drop(silent);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_after_login_are_refused() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let port = proxy.port();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "Query with length 0x7fffffff",
                [&[b'Q', 0x7f, 0xff, 0xff, 0xff][..], b"select 1\0"].concat(),
            ),
            ("Query with length 3", vec![b'Q', 0, 0, 0, 3]),
            ("Query with length 0", vec![b'Q', 0, 0, 0, 0]),
            ("unknown message type", wire::message(b'?', b"")),
            (
                "Query without NUL terminator",
                wire::message(b'Q', b"select 1"),
            ),
            (
                "Bind of an absurd parameter count",
                wire::message(b'B', &[0, 0, 0xff, 0xff]),
            ),
        ];
        for (what, bytes) in cases {
            let mut raw = RawConn::login_trust(port, "trustuser", "app").await;
            assert_eq!(
                raw.simple_query("select 1").await,
                vec![vec![Some("1".into())]],
                "{what}: login"
            );
            let _ = raw.send(&bytes).await;
            assert_rejected(raw.rejection().await, what);
            still_serves(port).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_request_without_tls_gets_n_then_plain_startup_works() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let mut raw = RawConn::connect(proxy.port()).await;
        raw.send(&wire::ssl_request())
            .await
            .expect("send SSLRequest");
        assert_eq!(raw.recv_byte().await, Some(b'N'));
        raw.send(&wire::startup("trustuser", "app"))
            .await
            .expect("send startup");
        raw.until_ready().await;
        assert_eq!(
            raw.simple_query("select 40 + 2").await,
            vec![vec![Some("42".into())]]
        );
        raw.send(&wire::terminate()).await.expect("terminate");
        assert_eq!(
            raw.recv().await.map(|m| m.tag),
            None,
            "closed after Terminate"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_transaction_leaves_a_clean_connection() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(1).checkout_timeout_ms(10_000)).await;
        let port = proxy.port();
        connect_app(port)
            .await
            .batch_execute("create table t(x int); grant all on t to public")
            .await
            .expect("ddl");
        for _ in 0..3 {
            let mut raw = RawConn::login_trust(port, "trustuser", "app").await;
            raw.simple_query(
                "begin; insert into t values (1); set local statement_timeout = '1ms'",
            )
            .await;
            drop(raw); // no Terminate, no ROLLBACK: the TCP connection just goes away
            let client = connect(port, "trustuser", "", "app")
                .await
                .expect("trustuser");
            assert_eq!(
                scalar(&client, "select count(*) from t").await,
                "0",
                "the open transaction was rolled back"
            );
            assert_eq!(scalar(&client, "show statement_timeout").await, "0");
            assert_eq!(
                scalar(&client, "select pg_sleep(0.01)::text || 'ok'").await,
                "ok"
            );
        }
    })
    .await
}
