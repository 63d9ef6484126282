//! Client authentication at the proxy (SCRAM, MD5, trust), login failures with their SQLSTATEs,
//! and a pool whose node is down. Every failure must arrive as an error, never a hang, and the
//! proxy must go on serving other clients.

mod common;

use common::*;
use std::time::{Duration, Instant};

async fn current_user(client: &tokio_postgres::Client) -> String {
    scalar(client, "select current_user").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_md5_and_trust_users_log_in() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let port = proxy.port();
        for _ in 0..3 {
            let app = connect(port, "app", "secret", "app")
                .await
                .unwrap_or_else(|e| panic!("scram: {}", describe(&e)));
            assert_eq!(current_user(&app).await, "app");
            expect_sqlstate(
                connect(port, "app", "not-the-password", "app").await,
                "28P01",
            );

            let md5 = connect(port, "md5user", "md5pass", "app")
                .await
                .unwrap_or_else(|e| panic!("md5: {}", describe(&e)));
            assert_eq!(current_user(&md5).await, "md5user");
            md5.batch_execute(
                "create table if not exists md5t(x int); insert into md5t values (1)",
            )
            .await
            .expect("md5 work");
            expect_sqlstate(connect(port, "md5user", "wrong", "app").await, "28P01");

            let trust = connect(port, "trustuser", "", "app")
                .await
                .unwrap_or_else(|e| panic!("trust: {}", describe(&e)));
            assert_eq!(current_user(&trust).await, "trustuser");
        }
        // A password-less attempt for a SCRAM user fails on the client side (it was asked for one)
        // or with 28P01; either way promptly.
        let res = connect(port, "app", "", "app").await;
        assert!(res.is_err(), "app without a password must not log in");
        assert_eq!(current_user(&connect_app(port).await).await, "app");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_database_are_refused() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let port = proxy.port();
        let keep = connect_app(port).await;
        for _ in 0..3 {
            expect_sqlstate(connect(port, "nobody", "secret", "app").await, "28000");
            expect_sqlstate(connect(port, "app", "secret", "no_such_db").await, "3D000");
            // Databases are listed in the config: one that exists on the node but is not listed
            // is refused as well.
            expect_sqlstate(connect(port, "app", "secret", "postgres").await, "3D000");
        }
        assert_eq!(
            current_user(&keep).await,
            "app",
            "an existing session is unaffected"
        );
        assert_eq!(
            current_user(&connect_app(port).await).await,
            "app",
            "new logins still work"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_down_gives_08006_not_a_hang() {
    within(90, "test", async {
        let closed_port = free_port();
        let cfg = ProxyConfig::new(closed_port).general("connect_timeout_ms", 2000);
        let proxy = Proxy::start(&cfg.render()).await;
        for attempt in 0..3 {
            let started = Instant::now();
            // Depending on when the proxy first needs a server connection, the error comes at
            // login or at the first query.
            let err = match connect(proxy.port(), "app", "secret", "app").await {
                Err(e) => e,
                Ok(client) => client
                    .simple_query("select 1")
                    .await
                    .expect_err("node is down"),
            };
            assert_eq!(
                sqlstate(&err).as_deref(),
                Some("08006"),
                "attempt {attempt}: {}",
                describe(&err)
            );
            let msg = err
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default();
            assert!(!msg.trim().is_empty(), "the error must say what failed");
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "took {:?}",
                started.elapsed()
            );
        }
        // Login failures are still decided at the proxy while the node is down.
        expect_sqlstate(connect(proxy.port(), "app", "bad", "app").await, "28P01");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_recovers_when_the_node_comes_back() {
    within(120, "test", async {
        let (mut node, proxy) =
            node_and_proxy(|c| c.pool_size(2).general("connect_timeout_ms", 2000)).await;
        let client = connect_app(proxy.port()).await;
        assert_eq!(scalar(&client, "select 1").await, "1");
        node.stop();
        let err = client
            .simple_query("select 1")
            .await
            .expect_err("node is down");
        let code = sqlstate(&err);
        assert!(
            matches!(code.as_deref(), Some("08006") | Some("57P01")) || err.is_closed(),
            "{}",
            describe(&err)
        );
        node.restart().await;
        let fresh = eventually(
            15,
            "proxy serves again after the node restarted",
            || async {
                let c = connect(proxy.port(), "app", "secret", "app").await.ok()?;
                c.simple_query("select 1").await.ok().map(|_| c)
            },
        )
        .await;
        for i in 0..10 {
            assert_eq!(scalar(&fresh, &format!("select {i}")).await, i.to_string());
        }
    })
    .await
}
