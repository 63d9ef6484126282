//! A batch of one statement per key in one request (pgjdbc's executeBatch, psycopg 3's and
//! asyncpg's executemany: Bind/Execute per row, one Sync) whose rows belong to different
//! shards: run as one transaction across the shards, answered as PostgreSQL answers the
//! request. Real PostgreSQL shards of two nodes each, raw protocol from the client side.

mod common;

use common::sharded::ShardedCluster;
use common::wire::{self, RawConn};
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

const SCHEMA: &str = "CREATE TABLE contacts (user_id bigint NOT NULL, name text NOT NULL, \
                      PRIMARY KEY (user_id, name))";

/// One request: the INSERT parsed once (unnamed), then Bind/Describe/Execute per row, Sync.
fn batch(rows: &[(i64, &str)], begin: bool) -> Vec<u8> {
    batch_limit(rows, begin, 0)
}

/// Like `batch`, each Execute with a row limit (pgjdbc executes batch statements with 1).
fn batch_limit(rows: &[(i64, &str)], begin: bool, max_rows: i32) -> Vec<u8> {
    let mut m = Vec::new();
    if begin {
        m.extend(wire::parse("", "BEGIN"));
        m.extend(wire::bind("", "", &[]));
        m.extend(wire::execute("", 0));
    }
    m.extend(wire::parse(
        "",
        "INSERT INTO contacts (user_id, name) VALUES ($1, $2)",
    ));
    for (key, name) in rows {
        let k = key.to_string();
        m.extend(wire::bind("", "", &[Some(&k), Some(name)]));
        m.extend(wire::describe(b'P', ""));
        m.extend(wire::execute("", max_rows));
    }
    m.extend(wire::sync());
    m
}

/// The answers up to ReadyForQuery, as tags, and the ReadyForQuery status.
async fn answers(raw: &mut RawConn) -> (String, u8, Vec<wire::Msg>) {
    let got = raw.through_ready().await;
    let tags: String = got.iter().map(|m| m.tag as char).collect();
    let status = got
        .last()
        .and_then(|m| m.body.first().copied())
        .unwrap_or(0);
    (tags, status, got)
}

async fn count(c: &ShardedCluster, key: i64, name_like: &str) -> String {
    let sql =
        format!("SELECT count(*) FROM contacts WHERE user_id = {key} AND name LIKE '{name_like}'");
    let mut seen = Vec::new();
    for node in &c.shards[shard_of(key)] {
        seen.push(node.scalar(&sql).await);
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "nodes differ: {seen:?}"
    );
    seen.remove(0)
}

fn keys() -> Vec<i64> {
    (1..=8).collect()
}

#[tokio::test]
async fn a_batch_across_shards_commits_as_one_request() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let ks = keys();
    assert!(ks.iter().any(|&k| shard_of(k) == 0) && ks.iter().any(|&k| shard_of(k) == 1));
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let rows: Vec<(i64, &str)> = ks.iter().map(|&k| (k, "a")).collect();
    raw.send(&batch(&rows, false)).await.unwrap();
    let (tags, status, got) = answers(&mut raw).await;
    // What PostgreSQL answers: ParseComplete, then per row BindComplete, NoData,
    // CommandComplete; one ReadyForQuery, idle.
    assert_eq!(tags, format!("1{}Z", "2nC".repeat(ks.len())), "{got:?}");
    assert_eq!(status, b'I');
    for &k in &ks {
        assert_eq!(count(&c, k, "a").await, "1", "key {k}");
    }
    // The session goes on: a second batch (row limit 1, as pgjdbc), then a plain query.
    let rows: Vec<(i64, &str)> = ks.iter().map(|&k| (k, "b")).collect();
    raw.send(&batch_limit(&rows, false, 1)).await.unwrap();
    let (tags, status, _) = answers(&mut raw).await;
    assert_eq!((tags.len(), status), (2 + 3 * ks.len(), b'I'));
    let n = raw
        .simple_query("SELECT count(*) FROM contacts WHERE user_id = 1")
        .await;
    assert_eq!(n, vec![vec![Some("2".to_string())]]);
    for node in c.all_nodes() {
        let left = node.scalar("SELECT count(*) FROM pg_prepared_xacts").await;
        assert_eq!(left, "0", "no prepared transaction left behind");
    }
}

#[tokio::test]
async fn an_error_in_a_batch_across_shards_rolls_back_every_row() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let ks = keys();
    // The last key's row exists already: its INSERT fails with 23505 after rows of both
    // shards went in.
    let last = *ks.last().expect("keys");
    client
        .batch_execute(&format!(
            "INSERT INTO contacts (user_id, name) VALUES ({last}, 'dup')"
        ))
        .await
        .expect("seed");
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let rows: Vec<(i64, &str)> = ks
        .iter()
        .map(|&k| (k, if k == last { "dup" } else { "new" }))
        .collect();
    raw.send(&batch(&rows, false)).await.unwrap();
    let (tags, status, got) = answers(&mut raw).await;
    let n = ks.len() - 1;
    assert_eq!(tags, format!("1{}2nEZ", "2nC".repeat(n)), "{got:?}");
    assert_eq!(status, b'I');
    let err = got.iter().find(|m| m.tag == b'E').expect("error");
    assert_eq!(wire::error_fields(&err.body)[&b'C'], "23505");
    for &k in &ks {
        assert_eq!(count(&c, k, "new").await, "0", "key {k}: rolled back");
    }
    // Nothing left open: the next request runs in a transaction of its own.
    let n = raw.simple_query("SELECT 1").await;
    assert_eq!(n, vec![vec![Some("1".to_string())]]);
}

#[tokio::test]
async fn a_batch_across_shards_inside_a_transaction_stays_in_it() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let ks = keys();
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    for (end, name, expect) in [("ROLLBACK", "r", "0"), ("COMMIT", "c", "1")] {
        raw.simple_query("BEGIN").await;
        let rows: Vec<(i64, &str)> = ks.iter().map(|&k| (k, name)).collect();
        raw.send(&batch(&rows, false)).await.unwrap();
        let (tags, status, got) = answers(&mut raw).await;
        assert_eq!(tags, format!("1{}Z", "2nC".repeat(ks.len())), "{got:?}");
        assert_eq!(status, b'T');
        raw.simple_query(end).await;
        for &k in &ks {
            assert_eq!(count(&c, k, name).await, expect, "{end}, key {k}");
        }
    }
    // pgjdbc with autocommit off: BEGIN in the same request as the first batch.
    let rows: Vec<(i64, &str)> = ks.iter().map(|&k| (k, "j")).collect();
    raw.send(&batch(&rows, true)).await.unwrap();
    let (tags, status, got) = answers(&mut raw).await;
    assert_eq!(tags, format!("12C1{}Z", "2nC".repeat(ks.len())), "{got:?}");
    assert_eq!(status, b'T');
    raw.simple_query("COMMIT").await;
    for &k in &ks {
        assert_eq!(count(&c, k, "j").await, "1", "key {k}");
    }
    // An error inside the client's transaction: the transaction is aborted, as in PostgreSQL.
    raw.simple_query("BEGIN").await;
    let rows: Vec<(i64, &str)> = ks.iter().map(|&k| (k, "j")).collect();
    raw.send(&batch(&rows, false)).await.unwrap();
    let (tags, status, _) = answers(&mut raw).await;
    assert_eq!((tags.as_str(), status), ("12nEZ", b'E'));
    raw.simple_query("ROLLBACK").await;
}

#[tokio::test]
async fn a_batch_that_cannot_move_is_refused_whole() {
    let c = ShardedCluster::start(2, 1, "cross_shard_transactions = \"deny\"").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let ks = keys();
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let rows: Vec<(i64, &str)> = ks.iter().map(|&k| (k, "a")).collect();
    raw.send(&batch(&rows, false)).await.unwrap();
    let (tags, status, got) = answers(&mut raw).await;
    assert_eq!((tags.as_str(), status), ("EZ", b'I'), "{got:?}");
    let err = wire::error_fields(&got[0].body);
    assert_eq!(err[&b'C'], "0A000");
    assert!(err[&b'M'].contains("different shards"), "{err:?}");
    for &k in &ks {
        assert_eq!(count(&c, k, "a").await, "0");
    }
}

/// Reads messages until `n` of the tags in `until` came; returns the tags read.
async fn read_tags(raw: &mut RawConn, until: &[u8], n: usize) -> String {
    let mut tags = String::new();
    let mut seen = 0;
    while seen < n {
        let m = raw.recv().await.expect("connection closed");
        tags.push(m.tag as char);
        if until.contains(&m.tag) {
            seen += 1;
        }
    }
    tags
}

fn insert_row(key: i64, name: &str) -> Vec<u8> {
    let k = key.to_string();
    let mut m = wire::bind("", "ins", &[Some(&k), Some(name)]);
    m.extend(wire::execute("", 1));
    m
}

/// A pipeline (requests ended by Flush, one Sync at the end) inside the client's transaction
/// moves from shard to shard like any statement of the transaction: begun before the
/// pipeline, or by a BEGIN in it (psycopg 3), one row per request or several shards' rows in
/// one request (executemany(…, returning=True)); an error skips the rest up to the Sync. A
/// pipeline outside a transaction still cannot span shards.
#[tokio::test]
async fn a_pipeline_inside_a_transaction_moves_between_shards() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let ks = keys();
    let (a, b) = (
        ks[0],
        *ks.iter()
            .find(|&&k| shard_of(k) != shard_of(ks[0]))
            .expect("b"),
    );
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let parse = wire::parse(
        "ins",
        "INSERT INTO contacts (user_id, name) VALUES ($1, $2)",
    );
    // Begun before the pipeline; one request per row.
    raw.simple_query("BEGIN").await;
    let mut m = parse.clone();
    m.extend(insert_row(a, "p1"));
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    assert_eq!(read_tags(&mut raw, b"CE", 1).await, "12C");
    let mut m = insert_row(b, "p1");
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    assert_eq!(
        read_tags(&mut raw, b"CE", 1).await,
        "2C",
        "the second shard's row"
    );
    raw.send(&wire::sync()).await.unwrap();
    let (tags, status, _) = answers(&mut raw).await;
    assert_eq!((tags.as_str(), status), ("Z", b'T'));
    raw.simple_query("COMMIT").await;
    assert_eq!(
        (count(&c, a, "p1").await, count(&c, b, "p1").await),
        ("1".into(), "1".into())
    );
    // A BEGIN in the pipeline, then every key's row in one request, then one more.
    let mut m = wire::parse("", "BEGIN");
    m.extend(wire::bind("", "", &[]));
    m.extend(wire::execute("", 0));
    for &k in &ks {
        m.extend(insert_row(k, "p2"));
    }
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    let got = read_tags(&mut raw, b"CE", 1 + ks.len()).await;
    assert_eq!(got, format!("12C{}", "2C".repeat(ks.len())));
    let mut m = insert_row(b, "p2b");
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    assert_eq!(read_tags(&mut raw, b"CE", 1).await, "2C");
    raw.send(&wire::sync()).await.unwrap();
    let (tags, status, _) = answers(&mut raw).await;
    assert_eq!((tags.as_str(), status), ("Z", b'T'));
    raw.simple_query("COMMIT").await;
    for &k in &ks {
        assert_eq!(count(&c, k, "p2").await, "1", "key {k}");
    }
    // An error in such a request: the rest up to the Sync is skipped, the transaction aborted.
    raw.simple_query("BEGIN").await;
    let mut m = Vec::new();
    for &k in &ks {
        m.extend(insert_row(k, "p3"));
    }
    m.extend(insert_row(a, "p1")); // exists: 23505
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    let got = read_tags(&mut raw, b"E", 1).await;
    assert_eq!(got, format!("{}2E", "2C".repeat(ks.len())));
    let mut m = insert_row(b, "p3b");
    m.extend(wire::sync());
    raw.send(&m).await.unwrap();
    let (tags, status, _) = answers(&mut raw).await;
    assert_eq!(
        (tags.as_str(), status),
        ("Z", b'E'),
        "skipped up to the Sync"
    );
    raw.simple_query("ROLLBACK").await;
    for &k in &ks {
        assert_eq!(count(&c, k, "p3").await, "0", "key {k}");
    }
    // Outside a transaction: refused, nothing stored.
    let mut m = insert_row(a, "p4");
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    assert_eq!(read_tags(&mut raw, b"CE", 1).await, "2C");
    let mut m = insert_row(b, "p4");
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    let got = read_tags(&mut raw, b"CE", 1).await;
    assert!(got.ends_with('E'), "{got}");
    raw.send(&wire::sync()).await.unwrap();
    let (tags, status, _) = answers(&mut raw).await;
    assert_eq!((tags.as_str(), status), ("Z", b'I'));
    assert_eq!(
        (count(&c, a, "p4").await, count(&c, b, "p4").await),
        ("0".into(), "0".into())
    );
}
