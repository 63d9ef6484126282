//! Transactions across shards through pgproxy against real PostgreSQL shards of two nodes:
//! two-phase commit over every node of every shard touched (commit, rollback, an error inside,
//! going back to an earlier shard), the deny policy, and pgproxy killed at random moments of a
//! stream of cross-shard transactions: after a restart every transaction is on all of its
//! shards or on none, and every acknowledged one is there.

mod common;

use common::sharded::ShardedCluster;
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn shard_of(key: i64, shards: u64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), shards) as usize
}

/// Two keys on different shards of 2.
fn two_keys() -> (i64, i64) {
    let a = 1;
    let b = (2..)
        .find(|&k| shard_of(k, 2) != shard_of(a, 2))
        .expect("b");
    (a, b)
}

const SCHEMA: &str =
    "CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, name text)";

async fn count_on(c: &ShardedCluster, key: i64, id: i64) -> String {
    c.shard_scalar(
        shard_of(key, 2),
        &format!("SELECT count(*) FROM contacts WHERE id = {id} AND user_id = {key}"),
    )
    .await
}

#[tokio::test]
async fn a_transaction_across_shards_commits_or_rolls_back_everywhere() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let (a, b) = two_keys();
    let ins = |id: i64, key: i64| {
        format!("INSERT INTO contacts (id, user_id, name) VALUES ({id}, {key}, 'x')")
    };
    // Commit: both shards, every node.
    client
        .batch_execute(&format!("BEGIN; {}; {}; COMMIT", ins(1, a), ins(2, b)))
        .await
        .expect_err("one request may not span shards");
    for sql in [
        "BEGIN".to_string(),
        ins(1, a),
        ins(2, b),
        "COMMIT".to_string(),
    ] {
        client.simple_query(&sql).await.expect(&sql);
    }
    assert_eq!(count_on(&c, a, 1).await, "1");
    assert_eq!(count_on(&c, b, 2).await, "1");
    // Rollback: neither.
    for sql in [
        "BEGIN".to_string(),
        ins(3, a),
        ins(4, b),
        "ROLLBACK".to_string(),
    ] {
        client.simple_query(&sql).await.expect(&sql);
    }
    assert_eq!(count_on(&c, a, 3).await, "0");
    assert_eq!(count_on(&c, b, 4).await, "0");
    // Back and forth between the shards, with bind parameters, then commit.
    let tx = client.simple_query("BEGIN").await;
    tx.expect("begin");
    for (id, key) in [(5i64, a), (6, b), (7, a), (8, b)] {
        client
            .execute(
                "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'p')",
                &[&id, &key],
            )
            .await
            .expect("insert with parameters");
    }
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM contacts WHERE user_id = $1 AND id >= 5",
            &[&a],
        )
        .await
        .expect("read inside")
        .get(0);
    assert_eq!(n, 2, "the transaction sees its own rows");
    client.simple_query("COMMIT").await.expect("commit");
    for (id, key) in [(5, a), (6, b), (7, a), (8, b)] {
        assert_eq!(count_on(&c, key, id).await, "1", "row {id}");
    }
    // An error on the second shard aborts the whole transaction.
    client.simple_query("BEGIN").await.expect("begin");
    client.simple_query(&ins(9, a)).await.expect("first shard");
    let e = client
        .simple_query(&ins(2, b))
        .await
        .expect_err("duplicate key");
    assert_eq!(sqlstate(&e).as_deref(), Some("23505"), "{}", describe(&e));
    client
        .simple_query("COMMIT")
        .await
        .expect("commit of an aborted transaction");
    assert_eq!(
        count_on(&c, a, 9).await,
        "0",
        "rolled back on the first shard too"
    );
    // Nothing left prepared, and the session goes on.
    for node in c.all_nodes() {
        assert_eq!(
            node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
            "0"
        );
    }
    let rows = simple_rows(&client, "SELECT count(*) FROM contacts").await;
    assert_eq!(rows, vec![vec![Some("6".into())]]);
}

#[tokio::test]
async fn deny_policy_refuses_a_second_shard() {
    let c = ShardedCluster::start(2, 1, "cross_shard_transactions = \"deny\"").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let (a, b) = two_keys();
    client.simple_query("BEGIN").await.expect("begin");
    client
        .simple_query(&format!(
            "INSERT INTO contacts (id, user_id) VALUES (1, {a})"
        ))
        .await
        .expect("first shard");
    let e = client
        .simple_query(&format!(
            "INSERT INTO contacts (id, user_id) VALUES (2, {b})"
        ))
        .await
        .expect_err("second shard");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
    assert!(describe(&e).contains("deny"), "{}", describe(&e));
    client.simple_query("ROLLBACK").await.expect("rollback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgproxy_killed_mid_commit_leaves_every_transaction_whole() {
    let mut c = ShardedCluster::start(2, 2, "").await;
    c.client()
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let (a, b) = two_keys();
    for round in 0..3i64 {
        let acked = Arc::new(AtomicI64::new(-1));
        let port = c.proxy.port();
        let acked2 = acked.clone();
        let writer = tokio::spawn(async move {
            let client = connect_app(port).await;
            for i in 0..100_000i64 {
                let id = round * 1_000_000 + i * 2;
                let r = async {
                    client.simple_query("BEGIN").await?;
                    client
                        .simple_query(&format!(
                            "INSERT INTO contacts (id, user_id) VALUES ({id}, {a})"
                        ))
                        .await?;
                    client
                        .simple_query(&format!(
                            "INSERT INTO contacts (id, user_id) VALUES ({}, {b})",
                            id + 1
                        ))
                        .await?;
                    client.simple_query("COMMIT").await
                }
                .await;
                if r.is_err() {
                    return;
                }
                acked2.store(i, Ordering::SeqCst);
            }
        });
        // Let some transactions through, then kill at a moment unrelated to them.
        eventually(20, "some transactions committed", || async {
            (acked.load(Ordering::SeqCst) >= 20 + round * 7).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(37 * round as u64)).await;
        c.kill_and_restart_proxy().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        for node in c.all_nodes() {
            eventually(20, "in-doubt transactions resolved", || async {
                (node.scalar("SELECT count(*) FROM pg_prepared_xacts").await == "0").then_some(())
            })
            .await;
        }
        // Every transaction is on both shards or on neither; acknowledged ones are there.
        let ids = |key: i64| {
            let c = &c;
            async move {
                c.shard_scalar(
                    shard_of(key, 2),
                    &format!("SELECT coalesce(string_agg(((id - {round} * 1000000) / 2)::text, ',' ORDER BY id), '') FROM contacts WHERE user_id = {key} AND id >= {round} * 1000000 AND id < ({round} + 1) * 1000000"),
                )
                .await
            }
        };
        let (on_a, on_b) = (ids(a).await, ids(b).await);
        assert_eq!(
            on_a, on_b,
            "round {round}: transactions split between shards"
        );
        let n = on_a.split(',').filter(|s| !s.is_empty()).count() as i64;
        let acked = acked.load(Ordering::SeqCst);
        assert!(
            n > acked,
            "round {round}: {n} transactions present, {} acknowledged",
            acked + 1
        );
    }
}

/// A setting changed inside a transaction that then moves to another shard: the other shard's
/// statements run under it too (also on coming back to a shard it left), and after COMMIT the
/// session keeps it (after ROLLBACK drops it), as on one PostgreSQL; no pooled connection is
/// left with a setting its next user did not make. One-node and replicated shards.
#[tokio::test]
async fn settings_changed_in_a_transaction_follow_it_across_shards() {
    settings_follow_the_transaction(1).await;
    settings_follow_the_transaction(2).await;
}

async fn settings_follow_the_transaction(nodes: usize) {
    let c = ShardedCluster::start(2, nodes, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let (a, b) = two_keys();
    let date = |key: i64| {
        format!("SELECT '2024-06-25'::date::text FROM contacts WHERE user_id = {key} UNION ALL SELECT '2024-06-25'::date::text LIMIT 1")
    };
    let one = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap_or_default()
    };
    let other = c.client().await;
    for (set, end, after) in [
        ("SET DateStyle = 'SQL, DMY'", "COMMIT", "25/06/2024"),
        ("SET DateStyle = 'German'", "ROLLBACK", "25/06/2024"),
        ("RESET ALL", "COMMIT", "2024-06-25"),
        ("SET LOCAL DateStyle = 'German'", "COMMIT", "2024-06-25"),
        ("SET DateStyle = 'German'", "COMMIT", "25.06.2024"),
    ] {
        client.batch_execute("BEGIN").await.expect("begin");
        let before = one(client.simple_query(&date(a)).await.expect("on a"));
        // A write on each shard: their nodes are in the transaction.
        for k in [a, b] {
            client
                .execute("UPDATE contacts SET name = 'y' WHERE user_id = $1", &[&k])
                .await
                .expect("write");
        }
        client.batch_execute(set).await.expect(set);
        let on_b = one(client.simple_query(&date(b)).await.expect("on b"));
        let on_a = one(client.simple_query(&date(a)).await.expect("back on a"));
        assert_eq!(
            on_a, on_b,
            "{set}: both shards read under the setting ({before} before)"
        );
        assert_ne!(on_a, before, "{set}: the setting applies");
        client.batch_execute(end).await.expect(end);
        // Another client never gets the setting with a pooled connection.
        for _ in 0..4 {
            for k in [a, b] {
                let theirs = one(other.simple_query(&date(k)).await.expect("other"));
                assert_eq!(
                    theirs, "2024-06-25",
                    "{set}; {end}: another client, key {k}"
                );
            }
        }
        for k in [a, b, a, b] {
            let now = one(client.simple_query(&date(k)).await.expect("after"));
            assert_eq!(now, after, "{set}; {end}: key {k}");
        }
    }
}

/// A write on every shard (a shared table) and then a write of sharded rows on several shards
/// in one transaction: the shards' nodes that joined for the first take part in the second
/// (pgproxy had taken them for mere followers there and found no main: 08006). A write on
/// every shard after the transaction ran on several shards is refused: the shards it left
/// hold connections of their own that the write would have missed (it was lost there).
#[tokio::test]
async fn writes_on_every_shard_inside_a_transaction_across_shards() {
    for nodes in [1, 2] {
        let c = ShardedCluster::start(2, nodes, "").await;
        let client = c.client().await;
        client
            .batch_execute(&format!(
                "{SCHEMA}; CREATE TABLE tags (code text PRIMARY KEY)"
            ))
            .await
            .expect("schema");
        let (a, b) = two_keys();
        for (id, k) in [(1, a), (2, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, name) VALUES ({id}, {k}, 'x')"
                ))
                .await
                .expect("rows");
        }
        let run = |sql: String| {
            let client = &client;
            async move { client.simple_query(&sql).await.map(|_| ()) }
        };
        let refused = |r: Result<(), tokio_postgres::Error>, what: &str| {
            let e = r.expect_err(what);
            assert_eq!(
                e.code().map(|c| c.code()),
                Some("0A000"),
                "{nodes} node(s), {what}: {e:?}"
            );
        };
        // After the transaction read on both shards: refused.
        run("BEGIN".into()).await.expect("begin");
        for k in [a, b] {
            run(format!("SELECT * FROM contacts WHERE user_id = {k}"))
                .await
                .expect("read by key");
        }
        refused(
            run("INSERT INTO tags VALUES ('r')".into()).await,
            "after two shards",
        );
        run("ROLLBACK".into()).await.expect("rollback");
        // A shared write, then a write across shards: both land everywhere; a second shared
        // write after it is refused (first run, rolled back), else the transaction commits.
        for commit in [false, true] {
            run("BEGIN".into()).await.expect("begin");
            run("INSERT INTO tags VALUES ('t')".into())
                .await
                .expect("shared write");
            run("DELETE FROM contacts WHERE name = 'x'".into())
                .await
                .unwrap_or_else(|e| panic!("{nodes} node(s): write across shards: {e:?}"));
            if commit {
                break;
            }
            refused(
                run("INSERT INTO tags VALUES ('u')".into()).await,
                "a second shared write",
            );
            run("ROLLBACK".into()).await.expect("rollback");
        }
        run("COMMIT".into()).await.expect("commit");
        for s in 0..2 {
            assert_eq!(
                c.shard_scalar(s, "SELECT count(*) FROM contacts").await,
                "0"
            );
            let tags = c
                .shard_scalar(s, "SELECT string_agg(code, ',') FROM tags")
                .await;
            assert_eq!(tags, "t", "{nodes} node(s), shard {s}: tags");
        }
    }
}

/// Found by sharding_random seed 0x2201 (3 shards of 2 nodes): a transaction on shard A ran
/// a write for keys on other shards (they join it, A's main waits parked), then a write on A:
/// A's replica joined without the transaction's BEGIN, so the write committed there at once
/// and ROLLBACK did not undo it (the nodes differed; reads balanced to the replica saw it).
#[tokio::test]
async fn a_write_back_on_the_first_shard_after_a_write_elsewhere_stays_in_the_transaction() {
    let c = ShardedCluster::start(3, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    // Keys on three different shards: the transaction starts on a's.
    let mut keys: Vec<i64> = Vec::new();
    for k in 1.. {
        if keys.iter().all(|&o| shard_of(o, 3) != shard_of(k, 3)) {
            keys.push(k);
        }
        if keys.len() == 3 {
            break;
        }
    }
    let (a, b, d) = (keys[0], keys[1], keys[2]);
    for (id, k) in [(1, a), (2, b), (3, d)] {
        client
            .batch_execute(&format!(
                "INSERT INTO contacts (id, user_id, name) VALUES ({id}, {k}, 'x')"
            ))
            .await
            .expect("row");
    }
    for end in ["ROLLBACK", "COMMIT"] {
        client
            .batch_execute(&format!("SELECT * FROM contacts WHERE user_id = {a}"))
            .await
            .expect("on a's shard");
        client.batch_execute("BEGIN").await.expect("begin");
        client
            .batch_execute(&format!(
                "UPDATE contacts SET name = 'y' WHERE user_id IN ({b}, {d}) AND id = 0"
            ))
            .await
            .expect("write on two other shards");
        let n = client
            .execute(&format!("DELETE FROM contacts WHERE user_id = {a}"), &[])
            .await
            .expect("delete on a's shard");
        assert_eq!(n, 1);
        client.batch_execute(end).await.expect(end);
        let want = if end == "ROLLBACK" { "1" } else { "0" };
        // (shard_scalar also checks that both nodes agree.)
        let got = c
            .shard_scalar(
                shard_of(a, 3),
                &format!("SELECT count(*) FROM contacts WHERE user_id = {a}"),
            )
            .await;
        assert_eq!(got, want, "after {end} on a's shard");
    }
}

/// A write across shards inside a transaction that cannot reach one of them (its node is
/// gone): the transaction is lost (its earlier write rolled back with it), so the client's
/// next statements fail until it ends the transaction, instead of running outside it.
#[tokio::test]
async fn a_write_across_shards_that_cannot_reach_a_shard_loses_the_transaction() {
    let mut c = ShardedCluster::start(2, 1, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let (a, b) = two_keys();
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .batch_execute(&format!(
            "INSERT INTO contacts (id, user_id, name) VALUES (1, {a}, 'x')"
        ))
        .await
        .expect("write on a's shard");
    // A fast shutdown, waited for: a SIGKILLed postmaster leaves its backends running until
    // they notice, and a pooled one could still take the write.
    c.shards[shard_of(b, 2)][0].stop();
    let e = client
        .batch_execute(&format!(
            "UPDATE contacts SET name = 'y' WHERE user_id IN ({a}, {b})"
        ))
        .await
        .expect_err("b's shard is gone");
    println!("write across shards: {e:?}");
    let next = client
        .batch_execute(&format!(
            "INSERT INTO contacts (id, user_id, name) VALUES (2, {a}, 'z')"
        ))
        .await;
    assert!(
        next.is_err(),
        "a statement after the lost write ran: {next:?}"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(
        c.shards[shard_of(a, 2)][0]
            .scalar("SELECT count(*) FROM contacts")
            .await,
        "0",
        "nothing of the transaction stays on a's shard"
    );
}
