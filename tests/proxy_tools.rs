//! Real PostgreSQL tools through the proxy (psql, pgbench in every query mode) and the
//! `--check-config` command line.

mod common;

use common::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_through_the_proxy() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let out = psql(proxy.port(), "app", "secret", "app", "select 42").await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "42");
        let out = psql(
            proxy.port(),
            "md5user",
            "md5pass",
            "app",
            "select current_user",
        )
        .await;
        assert_eq!(out.stdout.trim(), "md5user", "{out:?}");
        let out = psql(proxy.port(), "app", "wrong", "app", "select 1").await;
        assert!(!out.status.success(), "bad password must fail: {out:?}");
        assert!(
            out.stderr.contains("FATAL"),
            "the proxy's error reaches psql: {}",
            out.stderr
        );
    })
    .await
}

/// pgbench -i, then a timed run; checks the run's summary.
async fn bench(port: u16, modes: &[&str]) {
    let init = pgbench(port, "app", "secret", "app", &["-i", "-s", "1", "-q"]).await;
    assert!(
        init.status.success(),
        "pgbench -i through the proxy: {init:?}"
    );
    for mode in modes {
        let run = pgbench(
            port,
            "app",
            "secret",
            "app",
            &["-T", "3", "-c", "8", "-j", "2", "-M", mode],
        )
        .await;
        assert!(run.status.success(), "pgbench -M {mode}: {run:?}");
        let (processed, failed) = pgbench_counts(&run.stdout);
        assert!(
            processed > 0,
            "-M {mode}: no transactions processed:\n{}",
            run.stdout
        );
        assert_eq!(
            failed,
            Some(0),
            "-M {mode}: failed transactions:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_transaction_mode_every_query_mode() {
    within(240, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_size(4).checkout_timeout_ms(10_000)).await;
        bench(proxy.port(), &["simple", "extended", "prepared"]).await;
        let conns: u32 = node
            .scalar("select count(*) from pg_stat_activity where usename = 'app'")
            .await
            .parse()
            .expect("n");
        assert!(conns <= 4, "pool_size 4 but {conns} server connections");
        let direct = node.scalar("select count(*) from pgbench_accounts").await;
        assert_eq!(direct, "100000", "pgbench -i loaded through the proxy");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_session_mode() {
    within(180, "test", async {
        let (_node, proxy) = node_and_proxy(|c| {
            c.pool_mode("session")
                .pool_size(10)
                .checkout_timeout_ms(10_000)
        })
        .await;
        bench(proxy.port(), &["prepared"]).await;
    })
    .await
}

/// Runs `pgproxy --check-config FILE`; (success, stdout + stderr).
fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pgproxy.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_pgproxy"))
        .arg("--check-config")
        .arg(&path)
        .output()
        .expect("run pgproxy --check-config");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed, path.display().to_string())
}

#[test]
fn check_config_reports_the_line_of_each_problem() {
    let good = ProxyConfig::new(5432).render();
    let (ok, printed, _) = check_config(&good);
    assert!(ok, "a good config must pass --check-config:\n{printed}");

    let cases = [
        ("bad value", "[general]\nlisten = \"127.0.0.1:6432\"\npool_mode = \"sometimes\"\n", 3),
        ("syntax error", "[general]\ndefault_pool_size = 4\ncheckout_timeout_ms = = 5\n", 3),
        ("unknown key", "[general]\nlisten = \"127.0.0.1:6432\"\n\n[[users]]\nname = \"app\"\npasword = \"x\"\n", 6),
    ];
    for (what, text, line) in cases {
        let (ok, printed, path) = check_config(text);
        assert!(!ok, "{what}: --check-config must fail:\n{printed}");
        let want = format!("{path}:{line}:");
        assert!(
            printed.lines().any(|l| l.starts_with(&want)),
            "{what}: expected a line starting with {want:?}, got:\n{printed}"
        );
    }
}
