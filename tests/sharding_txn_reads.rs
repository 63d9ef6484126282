//! Reads merged across shards inside a transaction (psycopg and SQLAlchemy run every statement
//! in one by default): answered while the transaction is READ COMMITTED, has written nothing
//! and changed no setting; refused with 0A000 otherwise, and a refusal or an error aborts the
//! transaction as any error does in PostgreSQL. Real PostgreSQL shards, tokio-postgres.

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

fn code(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn merged_reads_inside_a_read_committed_transaction() {
    let (_c, mut client) = seeded(2, 8).await;
    assert!((1..=8).any(|k| shard_of(k) == 0) && (1..=8).any(|k| shard_of(k) == 1));
    // Extended protocol (tokio-postgres' query), a transaction that only reads: merged.
    let tx = client.transaction().await.expect("begin");
    let n: i64 = tx
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect("merged count in a transaction")
        .get(0);
    assert_eq!(n, 8);
    // A read by key, then merged again: still nothing written.
    let one: i64 = tx
        .query_one("SELECT count(*) FROM contacts WHERE user_id = 3", &[])
        .await
        .expect("by key")
        .get(0);
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
    // After a write: refused (its row would be missing), and the transaction is aborted.
    tx.execute(
        "INSERT INTO contacts (id, user_id, name) VALUES (9, 9, 'y')",
        &[],
    )
    .await
    .expect("write by key");
    let e = tx
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect_err("merged read after a write");
    assert_eq!(code(&e), "0A000", "{e:?}");
    assert!(describe(&e).contains("write"), "{}", describe(&e));
    let e = tx
        .query_one("SELECT 1", &[])
        .await
        .expect_err("aborted transaction");
    assert_eq!(code(&e), "25P02");
    tx.rollback().await.expect("rollback");
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect("after rollback")
        .get(0);
    assert_eq!(n, 8, "the write was rolled back");
}

#[tokio::test]
async fn merged_reads_refused_where_they_would_differ() {
    let (_c, client) = seeded(1, 4).await;
    for (begin, what) in [
        ("BEGIN ISOLATION LEVEL REPEATABLE READ", "REPEATABLE READ"),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", "REPEATABLE READ"),
        ("BEGIN; SET LOCAL search_path = pg_catalog, public", "SET"),
        (
            "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            "SET",
        ),
        (
            "BEGIN; SELECT id FROM contacts WHERE user_id = 1 FOR UPDATE",
            "write",
        ),
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
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect("outside")
        .get(0);
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
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect("merged")
        .get(0);
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
