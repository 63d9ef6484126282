//! Checks of the test harness itself against real PostgreSQL, without the proxy: nodes start,
//! roles authenticate the way the proxy tests assume, several nodes coexist, tools run, and the
//! config builder produces configs the proxy's own model accepts.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_roles_authenticate_as_the_proxy_tests_assume() {
    within(120, "test", async {
        let node = PgNode::start().await;
        let port = node.port();

        let app = connect(port, "app", "secret", "app")
            .await
            .expect("app with scram");
        assert_eq!(scalar(&app, "select current_user").await, "app");
        app.batch_execute("create table t(x int); insert into t values (1)")
            .await
            .expect("app owns db app");
        expect_sqlstate(connect(port, "app", "wrong", "app").await, "28P01");

        let md5 = connect(port, "md5user", "md5pass", "app")
            .await
            .expect("md5user with md5");
        md5.batch_execute("create table m(x int)")
            .await
            .expect("md5user may create in public");
        expect_sqlstate(connect(port, "md5user", "nope", "app").await, "28P01");
        let hash = node
            .scalar("select rolpassword from pg_authid where rolname = 'md5user'")
            .await;
        assert!(
            hash.starts_with("md5"),
            "md5user must have an md5 hash, got {hash}"
        );
        let verifier = node
            .scalar("select rolpassword from pg_authid where rolname = 'app'")
            .await;
        assert!(
            verifier.starts_with("SCRAM-SHA-256$"),
            "app must have a SCRAM verifier"
        );

        let trust = connect(port, "trustuser", "", "app")
            .await
            .expect("trustuser without password");
        assert_eq!(scalar(&trust, "select current_user").await, "trustuser");

        assert_eq!(node.scalar("show max_prepared_transactions").await, "20");
        assert_eq!(node.scalar("show max_connections").await, "200");
        assert_eq!(node.scalar("show fsync").await, "off");
        assert_eq!(node.psql_direct("select count(*) from t"), "1");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_nodes_run_side_by_side_and_survive_kill9_restart() {
    within(180, "test", async {
        let (a, b, c) = tokio::join!(PgNode::start(), PgNode::start(), PgNode::start());
        let mut ports = vec![a.port(), b.port(), c.port()];
        ports.dedup();
        assert_eq!(ports.len(), 3, "each node has its own port");
        for node in [&a, &b, &c] {
            node.superuser("app")
                .await
                .batch_execute("create table here(p int)")
                .await
                .expect("ddl");
            node.scalar(&format!("insert into here values ({})", node.port()))
                .await;
        }
        let mut b = b;
        b.kill9();
        assert!(
            connect(b.port(), "postgres", "", "app").await.is_err(),
            "killed node refuses"
        );
        assert_eq!(a.scalar("select p from here").await, a.port().to_string());
        b.restart().await;
        assert_eq!(
            b.scalar("select p from here").await,
            b.port().to_string(),
            "data kept"
        );
        b.stop();
        assert!(
            connect(b.port(), "postgres", "", "app").await.is_err(),
            "stopped node refuses"
        );
        assert_eq!(c.scalar("select count(*) from here").await, "1");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_pgbench_run_against_a_node() {
    within(180, "test", async {
        let node = PgNode::start().await;
        let out = psql(node.port(), "app", "secret", "app", "select 42").await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "42");

        let init = pgbench(
            node.port(),
            "app",
            "secret",
            "app",
            &["-i", "-s", "1", "-q"],
        )
        .await;
        assert!(init.status.success(), "{init:?}");
        let run = pgbench(
            node.port(),
            "app",
            "secret",
            "app",
            &["-T", "2", "-c", "4", "-j", "2", "-M", "prepared"],
        )
        .await;
        assert!(run.status.success(), "{run:?}");
        let (processed, failed) = pgbench_counts(&run.stdout);
        assert!(processed > 0, "{}", run.stdout);
        assert_eq!(failed, Some(0), "{}", run.stdout);
    })
    .await
}

#[test]
fn config_builder_output_is_accepted_by_the_config_model() {
    let cfg = ProxyConfig::new(5999)
        .pool_mode("session")
        .pool_size(2)
        .checkout_timeout_ms(500)
        .general("max_client_conn", 3)
        .user("app", "pool_size", 1)
        .password("app", "new\"pw");
    let text = with_listen(&cfg.render(), 7777);
    let parsed =
        pgproxy::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    assert_eq!(parsed.general.listen, "127.0.0.1:7777");
    assert_eq!(parsed.general.pool_mode, pgproxy::config::PoolMode::Session);
    assert_eq!(parsed.general.default_pool_size, 2);
    assert_eq!(parsed.general.checkout_timeout_ms, 500);
    assert_eq!(parsed.general.max_client_conn, 3);
    let app = parsed.user("app").expect("user app");
    assert_eq!(app.password.as_deref(), Some("new\"pw"));
    assert_eq!(app.pool_size, Some(1));
    assert_eq!(
        parsed.user("md5user").and_then(|u| u.auth_method),
        Some(pgproxy::config::AuthMethod::Md5)
    );
    assert_eq!(
        parsed.user("trustuser").and_then(|u| u.auth_method),
        Some(pgproxy::config::AuthMethod::Trust)
    );
    assert_eq!(parsed.shards[0].nodes[0].port, 5999);
    assert!(parsed.database("app").is_some() && parsed.database("other").is_none());
}

#[test]
fn listen_is_rewritten_in_place_or_added() {
    let replaced = with_listen(
        "[general]\nlisten = \"0.0.0.0:1\"\npool_mode = \"session\"\n",
        42,
    );
    assert_eq!(
        replaced,
        "[general]\nlisten = \"127.0.0.1:42\"\npool_mode = \"session\"\n"
    );
    let added = with_listen(
        "[general]\npool_mode = \"session\"\n[[users]]\nname = \"a\"\n",
        42,
    );
    assert_eq!(
        added,
        "[general]\npool_mode = \"session\"\nlisten = \"127.0.0.1:42\"\n[[users]]\nname = \"a\"\n"
    );
    let no_general = with_listen("[[users]]\nname = \"a\"\n", 42);
    assert!(no_general.starts_with("[general]\nlisten = \"127.0.0.1:42\"\n"));
}

#[test]
fn pgbench_summary_is_parsed() {
    let out = "number of transactions actually processed: 800/800\nnumber of failed transactions: 0 (0.000%)\n";
    assert_eq!(pgbench_counts(out), (800, Some(0)));
    assert_eq!(
        pgbench_counts("number of transactions actually processed: 1234\n"),
        (1234, None)
    );
}
