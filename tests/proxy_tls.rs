//! TLS on both sides: clients that ask for it get it (rustls) when a certificate is configured,
//! with psql's sslmode=require and verify-full; pgproxy talks TLS to a node with
//! server_tls = "require" and "verify-full" (checked on the node in pg_stat_ssl).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A CA and a leaf certificate for localhost / 127.0.0.1, made with the openssl CLI.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (apt-get install -y openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pgproxy test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

fn psql_conninfo(conninfo: &str, sql: &str) -> ToolOutput {
    run_tool(
        "psql",
        &["-X", "-A", "-t", "-d", conninfo, "-c", sql],
        "secret",
        Duration::from_secs(60),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_tls_when_a_certificate_is_configured() {
    within(120, "test", async {
        let certs = tempfile::tempdir().expect("temp dir");
        make_certs(certs.path());
        let cert = certs.path().join("server.pem").display().to_string();
        let key = certs.path().join("server.key").display().to_string();
        let (_node, proxy) = node_and_proxy(|c| {
            c.general("tls_cert_file", toml_str(&cert)).general("tls_key_file", toml_str(&key))
        })
        .await;
        let port = proxy.port();
        let ca = certs.path().join("ca.pem").display().to_string();
        let cases = [
            format!("host=127.0.0.1 port={port} user=app dbname=app sslmode=require"),
            format!("host=127.0.0.1 port={port} user=app dbname=app sslmode=verify-full sslrootcert={ca}"),
        ];
        for conninfo in cases {
            let out = tokio::task::spawn_blocking(move || psql_conninfo(&conninfo, "\\conninfo")).await.expect("psql");
            assert!(out.status.success(), "{}", out.stderr);
            assert!(out.stdout.contains("SSL connection"), "not TLS: {}", out.stdout);
        }
        let plain = format!("host=127.0.0.1 port={port} user=app dbname=app sslmode=disable");
        let out = tokio::task::spawn_blocking(move || psql_conninfo(&plain, "select 40 + 2")).await.expect("psql");
        assert_eq!(out.stdout.trim(), "42", "{}", out.stderr);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_refused_cleanly_without_a_certificate() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let conninfo = format!(
            "host=127.0.0.1 port={} user=app dbname=app sslmode=require",
            proxy.port()
        );
        let out = tokio::task::spawn_blocking(move || psql_conninfo(&conninfo, "select 1"))
            .await
            .expect("psql");
        assert!(!out.status.success());
        assert!(
            out.stderr.contains("does not support SSL"),
            "{}",
            out.stderr
        );
    })
    .await
}

/// Turns TLS on at a running node with the test certificate.
async fn enable_node_tls(node: &PgNode, certs: &Path) {
    let data = node.data_dir();
    for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
        std::fs::copy(certs.join(from), data.join(to)).expect("copy cert into data dir");
        let path = data.join(to).display().to_string();
        let status = Command::new("chmod")
            .args(["600", &path])
            .status()
            .expect("chmod");
        assert!(status.success());
        if running_as_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres", &path])
                .status()
                .expect("chown");
            assert!(status.success());
        }
    }
    let su = node.superuser("app").await;
    su.batch_execute("ALTER SYSTEM SET ssl = on")
        .await
        .expect("alter system");
    su.batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    eventually(10, "node ssl on", || async {
        (node.scalar("show ssl").await == "on").then_some(())
    })
    .await;
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgproxy_speaks_tls_to_the_node() {
    within(120, "test", async {
        let certs = tempfile::tempdir().expect("temp dir");
        make_certs(certs.path());
        let node = PgNode::start().await;
        enable_node_tls(&node, certs.path()).await;
        let ca = certs.path().join("ca.pem").display().to_string();
        for (mode, ca_file) in [("require", None), ("verify-full", Some(ca.clone()))] {
            let mut cfg = ProxyConfig::new(node.port()).general("server_tls", toml_str(mode));
            if let Some(ca) = &ca_file {
                cfg = cfg.general("server_tls_ca_file", toml_str(ca));
            }
            let proxy = Proxy::start(&cfg.render()).await;
            let client = connect_app(proxy.port()).await;
            assert_eq!(
                scalar(&client, "select 'over tls'").await,
                "over tls",
                "{mode}"
            );
            let ssl = scalar(
                &client,
                "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            )
            .await;
            assert_eq!(ssl, "t", "{mode}: the server connection is not TLS");
        }
    })
    .await
}
