//! Reads merged across shards inside a transaction (psycopg and SQLAlchemy run every statement
//! in one by default): answered while the transaction is READ COMMITTED and changed no
//! setting, on the transaction's own connections where it has them (so it sees its own
//! writes); refused with 0A000 otherwise, and a refusal or an error aborts the transaction as
//! any error does in PostgreSQL. Real PostgreSQL shards, tokio-postgres.

mod common;

use common::sharded::ShardedCluster;
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

const SCHEMA: &str =
    "CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, name text)";

/// A cluster of 2 shards of `nodes` nodes with `rows` contacts, ids and keys 1..=rows.
async fn seeded(nodes: usize, rows: i64) -> (ShardedCluster, tokio_postgres::Client) {
    let c = ShardedCluster::start(2, nodes, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    for k in 1..=rows {
        client
            .execute(
                "INSERT INTO contacts (id, user_id, name) VALUES ($1, $1, 'x')",
                &[&k],
            )
            .await
            .expect("insert");
    }
    (c, client)
}

/// A query's single bigint, `what` naming it in a failure.
async fn int(c: &impl tokio_postgres::GenericClient, sql: &str, what: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
        .get(0)
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn merged_reads_inside_a_read_committed_transaction() {
    let (_c, mut client) = seeded(2, 8).await;
    assert!((1..=8).any(|k| shard_of(k) == 0) && (1..=8).any(|k| shard_of(k) == 1));
    // Extended protocol (tokio-postgres' query), a transaction that only reads: merged.
    let tx = client.transaction().await.expect("begin");
    let n = int(
        &tx,
        "SELECT count(*) FROM contacts",
        "merged count in a transaction",
    )
    .await;
    assert_eq!(n, 8);
    // A read by key, then merged again: still nothing written.
    let one = int(
        &tx,
        "SELECT count(*) FROM contacts WHERE user_id = 3",
        "by key",
    )
    .await;
    assert_eq!(one, 1);
    let rows = tx
        .query("SELECT id FROM contacts ORDER BY id LIMIT 3", &[])
        .await
        .expect("merged ORDER BY LIMIT");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    // Simple protocol too.
    let got = tx
        .simple_query("SELECT count(*) FROM contacts")
        .await
        .expect("simple merged count");
    let counts: Vec<Option<&str>> = got
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0)),
            _ => None,
        })
        .collect();
    assert_eq!(counts, vec![Some("8")]);
    // After a write: the read sees it, as in PostgreSQL.
    tx.execute(
        "INSERT INTO contacts (id, user_id, name) VALUES (9, 9, 'y')",
        &[],
    )
    .await
    .expect("write by key");
    let n = int(
        &tx,
        "SELECT count(*) FROM contacts",
        "merged read after a write",
    )
    .await;
    assert_eq!(n, 9, "the transaction's own row is counted");
    tx.rollback().await.expect("rollback");
    let n = int(&client, "SELECT count(*) FROM contacts", "after rollback").await;
    assert_eq!(n, 8, "the write was rolled back");
}

#[tokio::test]
async fn merged_reads_refused_where_they_would_differ() {
    let (_c, client) = seeded(1, 4).await;
    // Not sharded: on every shard.
    client
        .batch_execute("CREATE TABLE tags (id int PRIMARY KEY)")
        .await
        .expect("shared table");
    for (begin, what) in [
        ("BEGIN ISOLATION LEVEL REPEATABLE READ", "REPEATABLE READ"),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", "REPEATABLE READ"),
        ("BEGIN; SET LOCAL search_path = pg_catalog, public", "SET"),
        (
            "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SET",
        ),
        ("BEGIN; INSERT INTO tags VALUES (1)", "every shard"),
    ] {
        client.batch_execute(begin).await.expect(begin);
        let e = client
            .query_one("SELECT count(*) FROM contacts", &[])
            .await
            .expect_err(begin);
        assert_eq!(code(&e), "0A000", "{begin}: {e:?}");
        assert!(describe(&e).contains(what), "{begin}: {}", describe(&e));
        client.batch_execute("ROLLBACK").await.expect("rollback");
    }
    // An error on the shards aborts the transaction, as in PostgreSQL.
    client.batch_execute("BEGIN").await.expect("begin");
    let e = client
        .query("SELECT id / 0 FROM contacts", &[])
        .await
        .expect_err("division by zero");
    assert_eq!(code(&e), "22012");
    let e = client
        .query_one("SELECT 1", &[])
        .await
        .expect_err("aborted");
    assert_eq!(code(&e), "25P02");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let n = int(&client, "SELECT count(*) FROM contacts", "outside").await;
    assert_eq!(n, 4);
}

/// After a merged read inside a transaction, a cancel still reaches the query the transaction
/// runs next on its own connection (pgproxy had forgotten where to send it).
#[tokio::test]
async fn a_cancel_after_a_merged_read_in_a_transaction_reaches_the_next_query() {
    let (_c, client) = seeded(1, 4).await;
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .query_one("SELECT id FROM contacts WHERE user_id = 1", &[])
        .await
        .expect("by key");
    let n = int(&client, "SELECT count(*) FROM contacts", "merged").await;
    assert_eq!(n, 4);
    let token = client.cancel_token();
    let cancel = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel request");
    });
    let started = std::time::Instant::now();
    let e = client
        .query("SELECT pg_sleep(20) FROM contacts WHERE user_id = 1", &[])
        .await
        .expect_err("cancelled");
    cancel.await.expect("cancel task");
    assert_eq!(code(&e), "57014", "{e:?}");
    assert!(
        started.elapsed().as_secs() < 15,
        "the cancel reached the query"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
}

/// A key of shard `s` not used by `seeded`.
fn key_of(s: usize, skip: usize) -> i64 {
    (100..)
        .filter(|k| shard_of(*k) == s)
        .nth(skip)
        .expect("a key")
}

fn simple_rows(got: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<String>> {
    got.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Writes on both shards of a replicated cluster, then merged reads in both protocols: each
/// sees the transaction's own inserts, updates and deletes, as one PostgreSQL would; a read
/// cut short by LIMIT leaves the transaction usable; after COMMIT every node agrees.
#[tokio::test]
async fn merged_reads_after_writes_see_the_transactions_own_changes() {
    let (c, client) = seeded(2, 8).await;
    let (a, b) = (key_of(0, 0), key_of(1, 0));
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute(
            "INSERT INTO contacts (id, user_id, name) VALUES ($1, $1, 'new')",
            &[&a],
        )
        .await
        .expect("insert on shard 0");
    // Shard 1 is not in the transaction yet: read on a connection of its own.
    let n = int(
        &client,
        "SELECT count(*) FROM contacts",
        "merged after one write",
    )
    .await;
    assert_eq!(n, 9);
    // The transaction moves to shard 1 (shard 0 waits for the commit) and changes more.
    client
        .execute(
            "INSERT INTO contacts (id, user_id, name) VALUES ($1, $1, 'new')",
            &[&b],
        )
        .await
        .expect("insert on shard 1");
    client
        .execute("UPDATE contacts SET name = 'upd' WHERE user_id = 1", &[])
        .await
        .expect("update");
    client
        .execute("DELETE FROM contacts WHERE user_id = 2", &[])
        .await
        .expect("delete");
    let mut want: Vec<i64> = (1..=8).filter(|k| *k != 2).collect();
    want.extend([a, b]);
    want.sort();
    let ids: Vec<i64> = client
        .query("SELECT id FROM contacts ORDER BY id", &[])
        .await
        .expect("merged ORDER BY (extended)")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, want);
    let groups = simple_rows(
        &client
            .simple_query("SELECT name, count(*) FROM contacts GROUP BY name ORDER BY name")
            .await
            .expect("merged GROUP BY (simple)"),
    );
    let g = |n: &str, k: &str| vec![n.to_string(), k.to_string()];
    assert_eq!(groups, vec![g("new", "2"), g("upd", "1"), g("x", "6")]);
    // A LIMIT leaves rows unread on the transaction's connections: still usable after.
    let first = int(
        &client,
        "SELECT id FROM contacts ORDER BY id LIMIT 1",
        "LIMIT 1",
    )
    .await;
    assert_eq!(first, 1);
    client
        .execute("UPDATE contacts SET name = 'upd' WHERE user_id = $1", &[&a])
        .await
        .expect("a write after the LIMIT read");
    let upd = int(
        &client,
        "SELECT count(*) FROM contacts WHERE name = 'upd'",
        "merged count",
    )
    .await;
    assert_eq!(upd, 2);
    client.batch_execute("COMMIT").await.expect("commit");
    let n = int(&client, "SELECT count(*) FROM contacts", "after commit").await;
    assert_eq!(n, 9);
    let mut total = 0;
    for s in 0..2 {
        let ids = c
            .shard_scalar(
                s,
                "SELECT string_agg(id || ':' || name, ',' ORDER BY id) FROM contacts",
            )
            .await;
        total += ids.split(',').count();
    }
    assert_eq!(total, 9, "every shard's nodes agree, and hold the rows");
}

/// An error of a merged read after a write aborts the transaction (25P02 until ROLLBACK, which
/// undoes the write); ROLLBACK TO SAVEPOINT recovers it on one shard, as in PostgreSQL; a
/// SAVEPOINT in a transaction across shards refuses the read (0A000).
#[tokio::test]
async fn merged_read_errors_after_writes_abort_like_postgresql() {
    let (_c, client) = seeded(1, 4).await;
    let (a, b) = (key_of(0, 0), key_of(1, 0));
    let insert = "INSERT INTO contacts (id, user_id, name) VALUES ($1, $1, 'new')";
    client.batch_execute("BEGIN").await.expect("begin");
    client.execute(insert, &[&a]).await.expect("insert");
    let e = client
        .query("SELECT id / (id - id) FROM contacts", &[])
        .await
        .expect_err("division by zero");
    assert_eq!(code(&e), "22012", "{e:?}");
    let e = client
        .query_one("SELECT 1", &[])
        .await
        .expect_err("aborted");
    assert_eq!(code(&e), "25P02");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let n = int(&client, "SELECT count(*) FROM contacts", "after rollback").await;
    assert_eq!(n, 4, "the write was rolled back");

    // A savepoint on the one shard the transaction wrote on.
    client.batch_execute("BEGIN").await.expect("begin");
    client.execute(insert, &[&a]).await.expect("insert");
    client
        .batch_execute("SAVEPOINT s")
        .await
        .expect("savepoint");
    let e = client
        .simple_query("SELECT id / (id - id) FROM contacts")
        .await
        .expect_err("division by zero");
    assert_eq!(code(&e), "22012", "{e:?}");
    client
        .batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .expect("rollback to savepoint");
    let n = int(
        &client,
        "SELECT count(*) FROM contacts",
        "merged read after ROLLBACK TO SAVEPOINT",
    )
    .await;
    assert_eq!(n, 5);
    client.batch_execute("COMMIT").await.expect("commit");
    let n = int(&client, "SELECT count(*) FROM contacts", "after commit").await;
    assert_eq!(n, 5, "the write was committed");

    // Across shards, then a savepoint: refused, and the transaction is aborted.
    client.batch_execute("BEGIN").await.expect("begin");
    client.execute(insert, &[&(a + 1000)]).await.ok();
    client
        .execute(insert, &[&b])
        .await
        .expect("insert on shard 1");
    client
        .batch_execute("SAVEPOINT s")
        .await
        .expect("savepoint");
    let e = client
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect_err("refused");
    assert_eq!(code(&e), "0A000", "{e:?}");
    assert!(describe(&e).contains("SAVEPOINT"), "{}", describe(&e));
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let n = int(&client, "SELECT count(*) FROM contacts", "after rollback").await;
    assert_eq!(n, 5);
}
