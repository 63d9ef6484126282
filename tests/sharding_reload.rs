//! Live rule changes: SIGHUP while pgbench runs through a sharded pgproxy. A policy change is
//! applied, a change that would move stored keys is refused (old rules kept) unless marked
//! with `force`, and no client sees an error or a dropped connection.

mod common;

use common::sharded::ShardedCluster;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_under_pgbench_without_client_errors() {
    let c = ShardedCluster::start(2, 1, "").await;
    let client = c.client().await;
    client
        .batch_execute(
            "CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, name text)",
        )
        .await
        .expect("schema");
    for u in 1..=200i64 {
        client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id, name) VALUES ({u}, {u}, 'n')"
            ))
            .await
            .expect("insert");
    }
    let dir = tempfile::tempdir().expect("script dir");
    let script = dir.path().join("keyed.sql");
    std::fs::write(
        &script,
        "\\set uid random(1, 200)\n\
         SELECT name FROM contacts WHERE user_id = :uid;\n\
         UPDATE contacts SET name = 'u' WHERE user_id = :uid;\n",
    )
    .expect("write script");
    let script = script.to_str().expect("utf-8").to_string();
    let port = c.proxy.port();
    let bench = tokio::spawn(async move {
        pgbench(
            port,
            "app",
            "secret",
            "app",
            &[
                "-n", "-c", "8", "-j", "2", "-T", "6", "-M", "prepared", "-f", &script,
            ],
        )
        .await
    });
    // (options of [sharding], extra tables, what the log must say)
    let reloads = [
        // A policy change: applied.
        ("keyless_writes = \"deny\"", "", "configuration reloaded"),
        // Would move key 7: refused, old rules kept.
        (
            "keyless_writes = \"deny\"",
            "[[sharding.overrides]]\nkey = 7\nshard = \"s1\"\n",
            "would move keys",
        ),
        // The same, marked as intended: applied.
        (
            "keyless_writes = \"deny\"\nforce = true",
            "[[sharding.overrides]]\nkey = 7\nshard = \"s1\"\n",
            "sharding rules changed with force",
        ),
    ];
    let base = c.config.clone();
    for (i, (opts, tables, needle)) in reloads.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let text = base.replace("[sharding]\n", &format!("[sharding]\n{opts}\n"));
        c.proxy.rewrite_config(&format!("{text}\n{tables}"));
        c.proxy.signal(libc::SIGHUP);
        eventually(10, &format!("reload {i} logged {needle:?}"), || async {
            c.proxy.log().contains(needle).then_some(())
        })
        .await;
    }
    let out = bench.await.expect("pgbench task");
    assert!(
        out.status.success(),
        "pgbench failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let (processed, failed) = pgbench_counts(&out.stdout);
    assert!(processed > 100, "pgbench ran: {}", out.stdout);
    assert_eq!(failed.unwrap_or(0), 0, "{}", out.stdout);
    assert!(
        !out.stderr.contains("ERROR"),
        "client errors: {}",
        out.stderr
    );
    // The refused reload kept the old rules; the forced one moved key 7 to s1.
    assert_eq!(
        c.proxy.log().matches("configuration reloaded").count(),
        2,
        "{}",
        c.proxy.log()
    );
    let e = client
        .simple_query("DELETE FROM contacts WHERE name = 'x'")
        .await
        .expect_err("keyless_writes = deny is live");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
}
