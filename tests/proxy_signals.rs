//! Signals: SIGHUP reloads the config (and keeps the last good one when the new file is invalid),
//! SIGTERM drains open transactions up to shutdown_timeout_ms, SIGINT exits promptly.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_passwords_and_survives_an_invalid_config() {
    within(90, "test", async {
        let (node, mut proxy) = node_and_proxy(|c| c).await;
        let port = proxy.port();
        let a = connect_app(port).await;
        assert_eq!(scalar(&a, "select 'before'").await, "before");

        // Rotate the password on the node and in the proxy's config, then reload.
        node.scalar("alter role app password 'newsecret'").await;
        proxy.rewrite_config(
            &ProxyConfig::new(node.port())
                .password("app", "newsecret")
                .render(),
        );
        proxy.signal(libc::SIGHUP);
        let b = eventually(10, "the new password is accepted after SIGHUP", || async {
            connect(port, "app", "newsecret", "app").await.ok()
        })
        .await;
        assert_eq!(scalar(&b, "select current_user").await, "app");
        expect_sqlstate(connect(port, "app", "secret", "app").await, "28P01");
        assert_eq!(
            scalar(&a, "select 'during'").await,
            "during",
            "a connected client keeps working"
        );

        // An invalid file is rejected; the proxy keeps running with the last good config.
        proxy.rewrite_config_raw("[general\nlisten = \"oops\n");
        proxy.signal(libc::SIGHUP);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            proxy.is_running(),
            "an invalid config must not stop the proxy"
        );
        let c = connect(port, "app", "newsecret", "app")
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        assert_eq!(
            scalar(&c, "select 'last good config'").await,
            "last good config"
        );
        expect_sqlstate(connect(port, "app", "secret", "app").await, "28P01");
        assert_eq!(scalar(&a, "select 'after'").await, "after");
        assert_eq!(scalar(&b, "select 'b after'").await, "b after");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_transaction_finish_then_exits() {
    within(60, "test", async {
        let (node, mut proxy) = node_and_proxy(|c| c.general("shutdown_timeout_ms", 5000)).await;
        let port = proxy.port();
        let a = connect_app(port).await;
        a.batch_execute("create table drained(x int)")
            .await
            .expect("ddl");
        a.batch_execute("BEGIN; insert into drained values (1)")
            .await
            .expect("begin");
        proxy.signal(libc::SIGTERM);
        eventually(3, "new connections refused after SIGTERM", || async {
            connect(port, "app", "secret", "app")
                .await
                .err()
                .map(|_| ())
        })
        .await;
        a.batch_execute("insert into drained values (2)")
            .await
            .expect("statement during drain");
        a.batch_execute("COMMIT")
            .await
            .expect("commit during drain");
        let status = proxy
            .wait_exit(Duration::from_secs(6))
            .await
            .expect("proxy exits after the drain");
        assert!(status.success(), "clean exit after drain: {status}");
        assert_eq!(
            node.scalar("select count(*) from drained").await,
            "2",
            "the drained transaction committed"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_up_on_a_transaction_left_open_past_the_timeout() {
    within(60, "test", async {
        let (node, mut proxy) = node_and_proxy(|c| c.general("shutdown_timeout_ms", 1000)).await;
        let a = connect_app(proxy.port()).await;
        a.batch_execute("create table abandoned(x int)")
            .await
            .expect("ddl");
        a.batch_execute("BEGIN; insert into abandoned values (1)")
            .await
            .expect("begin");
        let sent = Instant::now();
        proxy.signal(libc::SIGTERM);
        let status = proxy.wait_exit(Duration::from_secs(5)).await;
        assert!(
            status.is_some(),
            "still running {:?} after SIGTERM with a 1 s shutdown timeout",
            sent.elapsed()
        );
        assert!(
            a.simple_query("COMMIT").await.is_err(),
            "the abandoned client is disconnected"
        );
        eventually(
            10,
            "the abandoned transaction is rolled back on the node",
            || async {
                let active = node
                    .scalar("select count(*) from pg_stat_activity where usename = 'app'")
                    .await;
                (active == "0").then_some(())
            },
        )
        .await;
        assert_eq!(node.scalar("select count(*) from abandoned").await, "0");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_promptly() {
    within(60, "test", async {
        let (_node, mut proxy) = node_and_proxy(|c| c.general("shutdown_timeout_ms", 30_000)).await;
        let a = connect_app(proxy.port()).await;
        a.batch_execute("BEGIN")
            .await
            .expect("an open transaction does not delay SIGINT");
        proxy.signal(libc::SIGINT);
        let status = proxy.wait_exit(Duration::from_secs(3)).await;
        assert!(status.is_some(), "pgproxy still running 3 s after SIGINT");
        let port_closed = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .is_err();
        assert!(port_closed, "the port is closed after exit");
    })
    .await
}
