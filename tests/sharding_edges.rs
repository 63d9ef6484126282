//! Protocol and session edge cases of sharded sessions that real drivers and applications hit,
//! against real PostgreSQL shards: pipelined extended-protocol requests (one Sync, Flush,
//! Describe on one shard and Execute on another, row-limited portals, Close), merged reads that
//! fail on one shard or find nothing, NULL-only sort keys, a large merged result streamed in
//! bounded memory, keyless writes with RETURNING and savepoints, cross-shard transactions
//! (isolation level, read only, errors, a node killed before COMMIT, a client gone mid
//! transaction), session pooling, `SET pgproxy.shard_key`, CancelRequest and LISTEN/NOTIFY.
//!
//! Each test asserts what one plain PostgreSQL holding all the rows answers (often by sending
//! the same bytes to a reference node and comparing the message sequence), or a clean 0A000
//! refusal where docs/SHARDING.md says pgproxy refuses.

mod common;

use common::cluster::{decision_dir, start_nodes};
use common::sharded::{sharded_config, ShardedCluster};
use common::wire::{self, Msg, RawConn};
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};
use std::time::{Duration, Instant};

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

/// Two keys on different shards of 2: (a on shard_of(a), b on the other).
fn two_keys() -> (i64, i64) {
    let a = 1;
    let b = (2..).find(|&k| shard_of(k) != shard_of(a)).expect("b");
    (a, b)
}

/// A key of shard `s` (of 2).
fn key_on(s: usize) -> i64 {
    (1..).find(|&k| shard_of(k) == s).expect("key")
}

const SCHEMA: &str = "CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, \
     name text, age int)";

/// 20 users (both shards), 3 contacts each; one INSERT per user. Ages 10..59 and a few NULLs.
fn seed_sql() -> Vec<String> {
    (1..=20i64)
        .map(|u| {
            let rows: Vec<String> = (0..3i64)
                .map(|k| {
                    let id = u * 10 + k;
                    let age = if id % 7 == 0 {
                        "NULL".to_string()
                    } else {
                        (10 + (id * 13) % 50).to_string()
                    };
                    format!("({id}, {u}, 'n{id}', {age})")
                })
                .collect();
            format!(
                "INSERT INTO contacts (id, user_id, name, age) VALUES {}",
                rows.join(", ")
            )
        })
        .collect()
}

/// Schema (and optionally the seed rows) through pgproxy and on a plain reference node.
async fn setup_both(
    c: &ShardedCluster,
    reference: &PgNode,
    seed: bool,
) -> (tokio_postgres::Client, tokio_postgres::Client) {
    let client = c.client().await;
    client
        .batch_execute(SCHEMA)
        .await
        .expect("schema via pgproxy");
    // As `app`, so that raw connections (as `app`) to the reference own the tables.
    let direct = connect(reference.port(), "app", "secret", "app")
        .await
        .expect("connect to the reference as app");
    direct
        .batch_execute(SCHEMA)
        .await
        .expect("schema on reference");
    if seed {
        for sql in seed_sql() {
            client.simple_query(&sql).await.expect("seed via pgproxy");
            direct.simple_query(&sql).await.expect("seed on reference");
        }
    }
    (client, direct)
}

async fn raw_proxy(c: &ShardedCluster) -> RawConn {
    RawConn::login_password(c.proxy.port(), "app", "secret", "app").await
}

async fn raw_node(n: &PgNode) -> RawConn {
    RawConn::login_password(n.port(), "app", "secret", "app").await
}

/// A readable, comparable form of one backend message (object ids left out).
fn show(m: &Msg) -> Option<String> {
    let cstr = |b: &[u8]| -> String {
        let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Some(match m.tag {
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b's' => "PortalSuspended".into(),
        b'I' => "EmptyQuery".into(),
        b't' => {
            let n = u16::from_be_bytes([m.body[0], m.body[1]]) as usize;
            let oids: Vec<String> = (0..n)
                .map(|i| {
                    let o = 2 + i * 4;
                    u32::from_be_bytes([m.body[o], m.body[o + 1], m.body[o + 2], m.body[o + 3]])
                        .to_string()
                })
                .collect();
            format!("ParameterDescription {}", oids.join(","))
        }
        b'T' => {
            let mut b = &m.body[..];
            let n = u16::from_be_bytes([b[0], b[1]]) as usize;
            b = &b[2..];
            let mut cols = Vec::new();
            for _ in 0..n {
                let name = cstr(b);
                b = &b[name.len() + 1..];
                let ty = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
                b = &b[18..];
                cols.push(format!("{name}:{ty}"));
            }
            format!("RowDescription {}", cols.join(","))
        }
        b'D' => format!("DataRow {:?}", wire::data_row(&m.body)),
        b'C' => format!("CommandComplete {}", cstr(&m.body)),
        b'E' => {
            let f = wire::error_fields(&m.body);
            format!("Error {}", f.get(&b'C').cloned().unwrap_or_default())
        }
        // Notices, ParameterStatus: not compared.
        b'N' | b'S' | b'A' => return None,
        t => format!("'{}'", t as char),
    })
}

/// Sends `bytes` and reads through the next ReadyForQuery: the messages shown, then "Ready X".
async fn exchange(conn: &mut RawConn, bytes: &[u8]) -> Vec<String> {
    conn.send(bytes).await.expect("send");
    read_ready(conn).await
}

async fn read_ready(conn: &mut RawConn) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = conn
            .recv()
            .await
            .expect("connection closed before ReadyForQuery");
        if m.tag == b'Z' {
            out.push(format!("Ready {}", m.body[0] as char));
            return out;
        }
        if let Some(s) = show(&m) {
            out.push(s);
        }
    }
}

/// Reads until a message with one of `tags` arrives (inclusive); panics on EOF.
async fn read_until(conn: &mut RawConn, tags: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = conn.recv().await.expect("connection closed");
        let done = tags.contains(&m.tag);
        if let Some(s) = show(&m) {
            out.push(s);
        }
        if done {
            return out;
        }
    }
}

/// Parse + Bind + Describe portal + Execute of `sql` (unnamed), no Sync.
fn pbde(sql: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut m = wire::parse("", sql);
    m.extend(wire::bind("", "", params));
    m.extend(wire::describe(b'P', ""));
    m.extend(wire::execute("", 0));
    m
}

fn with_sync(mut m: Vec<u8>) -> Vec<u8> {
    m.extend(wire::sync());
    m
}

/// The same bytes to pgproxy and to the reference; asserts equal answers; returns pgproxy's.
async fn same_answer(
    proxy: &mut RawConn,
    reference: &mut RawConn,
    bytes: &[u8],
    what: &str,
) -> Vec<String> {
    let want = exchange(reference, bytes).await;
    let got = exchange(proxy, bytes).await;
    assert_eq!(got, want, "{what}: pgproxy (left) vs PostgreSQL (right)");
    got
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn count_on(c: &ShardedCluster, s: usize, where_: &str) -> i64 {
    c.shard_scalar(s, &format!("SELECT count(*) FROM contacts WHERE {where_}"))
        .await
        .parse()
        .expect("count")
}

/// Backends of database `app` in a transaction (other than the asking one), on one node.
async fn in_txn_backends(n: &PgNode) -> i64 {
    n.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' \
         AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
    )
    .await
    .parse()
    .expect("count")
}

/// A sharded cluster whose proxy runs with `pool_mode = mode` (fields drop in order).
struct ModeCluster {
    proxy: Proxy,
    shards: Vec<Vec<PgNode>>,
    _dir: tempfile::TempDir,
}

async fn cluster_with_mode(mode: &str, shards: usize, nodes: usize) -> ModeCluster {
    let mut all = start_nodes(shards * nodes).await;
    let mut per: Vec<Vec<PgNode>> = Vec::new();
    for _ in 0..shards {
        let rest = all.split_off(nodes);
        per.push(std::mem::replace(&mut all, rest));
    }
    let dir = decision_dir();
    let ports: Vec<Vec<u16>> = per
        .iter()
        .map(|s| s.iter().map(PgNode::port).collect())
        .collect();
    let log = dir.path().join("decisions.log");
    let text = sharded_config(&ports, "", log.to_str().expect("utf-8"));
    assert!(text.contains("pool_mode = \"transaction\""), "{text}");
    let text = text.replace(
        "pool_mode = \"transaction\"",
        &format!("pool_mode = \"{mode}\""),
    );
    let proxy = Proxy::start(&text).await;
    ModeCluster {
        proxy,
        shards: per,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------------
// Extended protocol: pipelining, Flush, Describe, row limits, Close
// ---------------------------------------------------------------------------------------------

/// Several Parse/Bind/Execute for the same key with one Sync run like on PostgreSQL; for two
/// keys on different shards, either all of it runs or (refused) none of it does.
#[tokio::test]
async fn pipelined_executes_with_one_sync() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        // Same key: inserts and a read in one pipeline.
        let mut m = Vec::new();
        for id in [1i64, 2] {
            m.extend(wire::parse(
                "",
                "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'pipe')",
            ));
            m.extend(wire::bind(
                "",
                "",
                &[Some(&id.to_string()), Some(&a.to_string())],
            ));
            m.extend(wire::execute("", 0));
        }
        m.extend(pbde(
            "SELECT id, name FROM contacts WHERE user_id = $1 ORDER BY id",
            &[Some(&a.to_string())],
        ));
        let m = with_sync(m);
        let got = same_answer(&mut p, &mut r, &m, "pipeline for one key").await;
        assert!(
            got.contains(&"DataRow [Some(\"2\"), Some(\"pipe\")]".to_string()),
            "{got:?}"
        );
        assert_eq!(
            count_on(&c, shard_of(a), &format!("user_id = {a}")).await,
            2
        );

        // Named statement parsed once, executed for the same key twice, one Sync.
        let mut m = wire::parse(
            "ins",
            "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'named')",
        );
        for id in [3i64, 4] {
            m.extend(wire::bind(
                "",
                "ins",
                &[Some(&id.to_string()), Some(&a.to_string())],
            ));
            m.extend(wire::execute("", 0));
        }
        let m = with_sync(m);
        same_answer(&mut p, &mut r, &m, "named statement twice").await;
        assert_eq!(
            count_on(&c, shard_of(a), &format!("user_id = {a}")).await,
            4
        );

        // Two keys on two shards, one Sync: all or nothing.
        let mut m = Vec::new();
        for (id, key) in [(10i64, a), (11, b)] {
            m.extend(wire::bind(
                "",
                "ins",
                &[Some(&id.to_string()), Some(&key.to_string())],
            ));
            m.extend(wire::execute("", 0));
        }
        let m = with_sync(m);
        let got = exchange(&mut p, &m).await;
        let on_a = count_on(&c, shard_of(a), "id = 10").await;
        let on_b = count_on(&c, shard_of(b), "id = 11").await;
        eprintln!("two keys in one Sync: {got:?}, rows on a/b: {on_a}/{on_b}");
        if got.iter().any(|s| s.starts_with("Error")) {
            assert!(got.contains(&"Error 0A000".to_string()), "{got:?}");
            assert_eq!((on_a, on_b), (0, 0), "refused, yet written: {got:?}");
        } else {
            assert_eq!((on_a, on_b), (1, 1), "{got:?}");
        }
        // The connection goes on.
        let got = exchange(&mut p, &wire::query("SELECT 1")).await;
        assert_eq!(got.last().map(String::as_str), Some("Ready I"), "{got:?}");
    })
    .await
}

/// A request cut by Flush, then finished by a Sync in the next request, for a key of another
/// shard: PostgreSQL commits both inserts at the Sync (one implicit transaction). pgproxy must
/// commit both, or refuse and leave neither, and never leave a transaction open on a node.
#[tokio::test]
async fn flush_then_sync_for_another_shard() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        c.client()
            .await
            .batch_execute(SCHEMA)
            .await
            .expect("schema");
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let ins = "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'f')";
        // Warm up on shard b so that the first statement moves the session.
        exchange(
            &mut p,
            &wire::query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {b}"
            )),
        )
        .await;
        let mut m = wire::parse("", ins);
        m.extend(wire::bind("", "", &[Some("1"), Some(&a.to_string())]));
        m.extend(wire::execute("", 0));
        m.extend(wire::flush());
        p.send(&m).await.expect("send");
        let first = read_until(&mut p, b"CE").await;
        let mut m = wire::parse("", ins);
        m.extend(wire::bind("", "", &[Some("2"), Some(&b.to_string())]));
        m.extend(wire::execute("", 0));
        let second = exchange(&mut p, &with_sync(m)).await;
        let on_a = count_on(&c, shard_of(a), "id = 1").await;
        let on_b = count_on(&c, shard_of(b), "id = 2").await;
        let failed = first.iter().chain(&second).any(|s| s.starts_with("Error"));
        if failed {
            assert_eq!(
                (on_a, on_b),
                (0, 0),
                "an error, yet rows were written: {first:?} {second:?}"
            );
        } else {
            assert_eq!(
                (on_a, on_b),
                (1, 1),
                "both acknowledged: {first:?} {second:?}"
            );
        }
        for node in c.all_nodes() {
            eventually(5, "no transaction left open on a node", || async {
                (in_txn_backends(node).await == 0).then_some(())
            })
            .await;
        }
    })
    .await
}

/// Flush in a single-shard request (2-node shards): the rows are there at the Sync, on every
/// node.
#[tokio::test]
async fn flush_within_one_shard_then_sync() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 2, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        let (a, _) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let mut m = wire::parse(
            "",
            "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'f')",
        );
        m.extend(wire::bind("", "", &[Some("1"), Some(&a.to_string())]));
        m.extend(wire::execute("", 0));
        m.extend(wire::flush());
        p.send(&m).await.expect("send");
        r.send(&m).await.expect("send");
        let got = read_until(&mut p, b"CE").await;
        let want = read_until(&mut r, b"CE").await;
        assert_eq!(got, want, "answers before Sync");
        let m = with_sync(pbde(
            "SELECT id, name FROM contacts WHERE user_id = $1",
            &[Some(&a.to_string())],
        ));
        same_answer(&mut p, &mut r, &m, "read in the same implicit transaction").await;
        let s = shard_of(a);
        assert_eq!(
            c.shard_scalar(s, "SELECT count(*) FROM contacts WHERE id = 1")
                .await,
            "1"
        );
    })
    .await
}

/// A read without a key, ended by Flush (not Sync): either the merged rows (as PostgreSQL
/// sends them at Flush) or a clean 0A000; then Sync gets ReadyForQuery and the session goes on.
#[tokio::test]
async fn flush_instead_of_sync_for_a_merged_read() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let mut m = pbde("SELECT id FROM contacts ORDER BY id LIMIT 3", &[]);
        m.extend(wire::flush());
        r.send(&m).await.expect("send");
        let want = read_until(&mut r, b"CE").await;
        p.send(&m).await.expect("send");
        let got = read_until(&mut p, b"CE").await;
        eprintln!("merged read ended by Flush: {got:?}");
        if got != want {
            assert_eq!(
                got.last().map(String::as_str),
                Some("Error 0A000"),
                "{got:?} vs {want:?}"
            );
        }
        let after = exchange(&mut p, &wire::sync()).await;
        assert_eq!(after, vec!["Ready I".to_string()]);
        same_answer(
            &mut p,
            &mut r,
            &with_sync(pbde("SELECT count(*) FROM contacts", &[])),
            "after",
        )
        .await;
    })
    .await
}

/// A statement prepared (and described) on one shard, then bound and executed for keys of
/// both shards; named portals; tokio-postgres reusing one prepared statement.
#[tokio::test]
async fn statement_described_on_one_shard_executed_on_another() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 2, ""), PgNode::start());
        let (client, _direct) = setup_both(&c, &reference, true).await;
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let mut m = wire::parse(
            "by_user",
            "SELECT id, name FROM contacts WHERE user_id = $1 ORDER BY id",
        );
        m.extend(wire::describe(b'S', "by_user"));
        same_answer(&mut p, &mut r, &with_sync(m), "prepare + describe").await;
        for key in [a, b, a, b] {
            let mut m = wire::bind("", "by_user", &[Some(&key.to_string())]);
            m.extend(wire::describe(b'P', ""));
            m.extend(wire::execute("", 0));
            let got =
                same_answer(&mut p, &mut r, &with_sync(m), &format!("execute for {key}")).await;
            assert!(got.iter().any(|s| s.starts_with("DataRow")), "{got:?}");
        }
        // Describe of the statement again, after it ran on both shards.
        same_answer(
            &mut p,
            &mut r,
            &with_sync(wire::describe(b'S', "by_user")),
            "describe again",
        )
        .await;
        // tokio-postgres: one prepared statement, both shards.
        let stmt = client
            .prepare("SELECT count(*) FROM contacts WHERE user_id = $1")
            .await
            .expect("prepare");
        for key in [a, b, a] {
            let n: i64 = client
                .query_one(&stmt, &[&key])
                .await
                .expect("query")
                .get(0);
            assert_eq!(n, 3, "key {key}");
        }
    })
    .await
}

/// `n` rows of each of `two_keys()` (ids 100… and 200…), through pgproxy and on the reference.
async fn seed_rows(c: &ShardedCluster, reference: &PgNode, n: i64) {
    let (a, b) = two_keys();
    let client = c.client().await;
    let direct = reference.superuser("app").await;
    for (key, base) in [(a, 100i64), (b, 200)] {
        for k in 0..n {
            let sql = format!(
                "INSERT INTO contacts (id, user_id, name) VALUES ({}, {key}, 'r{k}')",
                base + k
            );
            client.simple_query(&sql).await.expect("insert");
            direct.simple_query(&sql).await.expect("insert");
        }
    }
}

/// Execute with a row limit on one shard: PortalSuspended, then the rest; inside one request,
/// across a Flush, and in a transaction across requests.
#[tokio::test]
async fn portal_with_a_row_limit_on_one_shard() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        let (a, b) = two_keys();
        seed_rows(&c, &reference, 5).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let sel = "SELECT id, name FROM contacts WHERE user_id = $1 ORDER BY id";
        for key in [a, b] {
            // One request: three Executes of a named portal.
            let mut m = wire::parse("", sel);
            m.extend(wire::bind("cur", "", &[Some(&key.to_string())]));
            m.extend(wire::execute("cur", 2));
            m.extend(wire::execute("cur", 2));
            m.extend(wire::execute("cur", 0));
            let got = same_answer(&mut p, &mut r, &with_sync(m), "row limit in one request").await;
            assert_eq!(
                got.iter().filter(|s| *s == "PortalSuspended").count(),
                2,
                "{got:?}"
            );
            // Across a Flush.
            let mut m = wire::parse("", sel);
            m.extend(wire::bind("cur", "", &[Some(&key.to_string())]));
            m.extend(wire::execute("cur", 2));
            m.extend(wire::flush());
            p.send(&m).await.expect("send");
            r.send(&m).await.expect("send");
            let got = read_until(&mut p, b"sCE").await;
            let want = read_until(&mut r, b"sCE").await;
            assert_eq!(got, want, "first batch before Flush");
            let mut m = wire::execute("cur", 2);
            m.extend(wire::execute("cur", 0));
            same_answer(&mut p, &mut r, &with_sync(m), "rest after Flush").await;
            // In a transaction, one Execute per request.
            same_answer(&mut p, &mut r, &wire::query("BEGIN"), "begin").await;
            let mut m = wire::parse("", sel);
            m.extend(wire::bind("cur", "", &[Some(&key.to_string())]));
            m.extend(wire::execute("cur", 3));
            same_answer(&mut p, &mut r, &with_sync(m), "first rows in a transaction").await;
            same_answer(
                &mut p,
                &mut r,
                &with_sync(wire::execute("cur", 3)),
                "next rows",
            )
            .await;
            same_answer(
                &mut p,
                &mut r,
                &with_sync(wire::execute("cur", 3)),
                "no more rows",
            )
            .await;
            same_answer(&mut p, &mut r, &wire::query("COMMIT"), "commit").await;
        }
    })
    .await
}

/// Close of statements and portals behaves as on PostgreSQL, across shards.
#[tokio::test]
async fn close_statements_and_portals() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let sa = a.to_string();
        let sb = b.to_string();
        // Prepare, run on shard a, close, then using it fails.
        let m = with_sync(wire::parse(
            "s1",
            "SELECT name FROM contacts WHERE user_id = $1 ORDER BY id",
        ));
        same_answer(&mut p, &mut r, &m, "parse s1").await;
        let mut m = wire::bind("", "s1", &[Some(&sa)]);
        m.extend(wire::execute("", 0));
        same_answer(&mut p, &mut r, &with_sync(m), "run s1 on a").await;
        let mut close = vec![b'S'];
        close.extend_from_slice(b"s1\0");
        let close_s1 = wire::message(b'C', &close);
        same_answer(&mut p, &mut r, &with_sync(close_s1.clone()), "close s1").await;
        for key in [&sa, &sb] {
            let mut m = wire::bind("", "s1", &[Some(key)]);
            m.extend(wire::execute("", 0));
            let got =
                same_answer(&mut p, &mut r, &with_sync(m), "bind of a closed statement").await;
            assert!(got.contains(&"Error 26000".to_string()), "{got:?}");
        }
        // The name reused for another text, run on the other shard.
        let m = with_sync(wire::parse(
            "s1",
            "SELECT id FROM contacts WHERE user_id = $1 ORDER BY id DESC",
        ));
        same_answer(&mut p, &mut r, &m, "parse s1 again").await;
        for key in [&sb, &sa] {
            let mut m = wire::bind("", "s1", &[Some(key)]);
            m.extend(wire::execute("", 0));
            same_answer(&mut p, &mut r, &with_sync(m), "new s1").await;
        }
        // Close of a portal, then Execute of it fails; Close of unknown names is fine.
        let mut m = wire::bind("p1", "s1", &[Some(&sb)]);
        m.extend(wire::message(b'C', b"Pp1\0"));
        m.extend(wire::execute("p1", 0));
        let got = same_answer(&mut p, &mut r, &with_sync(m), "closed portal").await;
        assert!(got.contains(&"Error 34000".to_string()), "{got:?}");
        let mut m = wire::message(b'C', b"Snope\0");
        m.extend(wire::message(b'C', b"Pnope\0"));
        same_answer(&mut p, &mut r, &with_sync(m), "close of unknown names").await;
        // Close in the same request as an execution, and then the statement is gone.
        let mut m = wire::bind("", "s1", &[Some(&sa)]);
        m.extend(wire::execute("", 0));
        m.extend(close_s1);
        same_answer(&mut p, &mut r, &with_sync(m), "execute then close").await;
        let mut m = wire::bind("", "s1", &[Some(&sb)]);
        m.extend(wire::execute("", 0));
        same_answer(&mut p, &mut r, &with_sync(m), "gone").await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Merged reads
// ---------------------------------------------------------------------------------------------

/// A merged read that fails on one shard only (division by zero on some of its rows), a Bind
/// error, and an error in the extended protocol: the client gets PostgreSQL's error, and the
/// session goes on.
#[tokio::test]
async fn merged_read_with_an_error_on_one_shard() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, false).await;
        let (a, b) = two_keys();
        for sql in [
            format!("INSERT INTO contacts (id, user_id, age) VALUES (1, {a}, 30), (2, {a}, 31)"),
            format!("INSERT INTO contacts (id, user_id, age) VALUES (3, {b}, 40), (4, {b}, 41)"),
        ] {
            client.simple_query(&sql).await.expect("insert");
            direct.simple_query(&sql).await.expect("insert");
        }
        for sql in [
            "SELECT id, 100 / (age - 30) FROM contacts ORDER BY id",
            "SELECT 100 / (age - 30) FROM contacts",
            "SELECT sum(100 / (age - 30)) FROM contacts",
        ] {
            let e = client.simple_query(sql).await.expect_err(sql);
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some("22012"),
                "{sql}: {}",
                describe(&e)
            );
            assert_eq!(
                scalar(&client, "SELECT count(*) FROM contacts").await,
                "4",
                "after {sql}"
            );
        }
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        // Extended: the error after ParseComplete/BindComplete (rows before it may differ).
        let m = with_sync(pbde(
            "SELECT id, 100 / (age - 30) FROM contacts ORDER BY id",
            &[],
        ));
        let strip = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .filter(|s| !s.starts_with("DataRow"))
                .collect()
        };
        let want = strip(exchange(&mut r, &m).await);
        let got = strip(exchange(&mut p, &m).await);
        assert_eq!(got, want, "division by zero, extended protocol");
        same_answer(
            &mut p,
            &mut r,
            &wire::query("SELECT count(*) FROM contacts"),
            "after",
        )
        .await;
    })
    .await
}

/// A merged read whose Bind fails on the shards (a parameter that is not an integer):
/// PostgreSQL answers ParseComplete, then the error; a named statement stays usable.
#[tokio::test]
async fn merged_read_bind_error_answers_like_postgres() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let mut wrong = Vec::new();
        let mut check = |what: &str, got: Vec<String>, want: Vec<String>| {
            if got != want {
                wrong.push(format!(
                    "{what}:\n  pgproxy:    {got:?}\n  PostgreSQL: {want:?}"
                ));
            }
        };
        // A named statement whose first execution fails at Bind, then a good execution.
        let mut m = wire::parse("st", "SELECT id FROM contacts WHERE age > $1 ORDER BY id");
        m.extend(wire::bind("", "st", &[Some("x")]));
        m.extend(wire::execute("", 0));
        let m = with_sync(m);
        let (got, want) = (exchange(&mut p, &m).await, exchange(&mut r, &m).await);
        assert!(got.contains(&"Error 22P02".to_string()), "{got:?}");
        check("named statement, bad parameter", got, want);
        let mut m = wire::bind("", "st", &[Some("35")]);
        m.extend(wire::execute("", 0));
        let m = with_sync(m);
        let (got, want) = (exchange(&mut p, &m).await, exchange(&mut r, &m).await);
        check("named statement, then a good parameter", got, want);
        // Unnamed, with Describe.
        let m = with_sync(pbde(
            "SELECT id FROM contacts WHERE age > $1 ORDER BY id",
            &[Some("abc")],
        ));
        let (got, want) = (exchange(&mut p, &m).await, exchange(&mut r, &m).await);
        check("unnamed statement, bad parameter", got, want);
        let m = wire::query("SELECT count(*) FROM contacts");
        let (got, want) = (exchange(&mut p, &m).await, exchange(&mut r, &m).await);
        check("after", got, want);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    })
    .await
}

/// Merged reads over no rows at all: row descriptions, empty results, aggregates of nothing.
#[tokio::test]
async fn merged_reads_over_no_rows() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let sqls = [
            "SELECT id, name FROM contacts ORDER BY id",
            "SELECT id, name FROM contacts",
            "SELECT id FROM contacts ORDER BY age DESC LIMIT 5 OFFSET 2",
            "SELECT count(*) FROM contacts",
            "SELECT count(*), count(age), sum(age), min(age), max(age), avg(age) FROM contacts",
            "SELECT age, count(*) FROM contacts GROUP BY age ORDER BY age",
            "SELECT DISTINCT name FROM contacts ORDER BY name",
            "SELECT min(name), max(id) FROM contacts",
        ];
        for sql in sqls {
            same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
            same_answer(
                &mut p,
                &mut r,
                &with_sync(pbde(sql, &[])),
                &format!("extended: {sql}"),
            )
            .await;
        }
        // Rows on one shard only.
        let (a, _) = two_keys();
        let ins = format!("INSERT INTO contacts (id, user_id, name, age) VALUES (1, {a}, 'x', 5)");
        same_answer(&mut p, &mut r, &wire::query(&ins), "insert").await;
        for sql in sqls {
            same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
        }
    })
    .await
}

/// ORDER BY a column that is NULL in every row of every shard.
#[tokio::test]
async fn nulls_everywhere_in_the_sort_key() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, false).await;
        for u in 1..=10i64 {
            let sql = format!(
                "INSERT INTO contacts (id, user_id, name, age) VALUES ({}, {u}, NULL, NULL), ({}, {u}, NULL, NULL)",
                u * 10,
                u * 10 + 1
            );
            client.simple_query(&sql).await.expect("insert");
            direct.simple_query(&sql).await.expect("insert");
        }
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for sql in [
            "SELECT id, age FROM contacts ORDER BY age, id",
            "SELECT id, age FROM contacts ORDER BY age DESC, id",
            "SELECT id, age FROM contacts ORDER BY age NULLS FIRST, id DESC LIMIT 7",
            "SELECT id FROM contacts ORDER BY age DESC NULLS LAST, name, id OFFSET 15",
            "SELECT id FROM contacts ORDER BY name, age, id LIMIT 3",
            "SELECT min(age), max(name), sum(age), avg(age), count(age) FROM contacts",
            "SELECT age, count(*) FROM contacts GROUP BY age ORDER BY age",
            "SELECT DISTINCT age FROM contacts",
        ] {
            same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
            same_answer(&mut p, &mut r, &with_sync(pbde(sql, &[])), sql).await;
        }
    })
    .await
}

/// A bare name in ORDER BY means the select-list column of that name first, as PostgreSQL
/// reads it (also a name PostgreSQL gives an unaliased expression: `age::text` is "age"):
/// merged reads sort by that column; two different columns of the name are an error there.
#[tokio::test]
async fn order_by_a_name_means_the_output_column_as_in_postgresql() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        let (_client, _direct) = setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for sql in [
            // Text order ('10' < '9'), not numeric.
            "SELECT age::text, id FROM contacts WHERE age IS NOT NULL ORDER BY age, id",
            "SELECT lower(name), id FROM contacts ORDER BY lower DESC, id LIMIT 5",
            "SELECT age, age FROM contacts ORDER BY age NULLS FIRST, 1 LIMIT 4",
            "SELECT c.age, id FROM contacts c ORDER BY age, id",
        ] {
            same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
        }
        for sql in [
            "SELECT DISTINCT age::text, age FROM contacts ORDER BY age",
            "SELECT name AS age, age FROM contacts ORDER BY age",
        ] {
            let want = exchange(&mut r, &wire::query(sql)).await;
            assert!(want.iter().any(|m| m.contains("42702")), "{sql}: {want:?}");
            let got = exchange(&mut p, &wire::query(sql)).await;
            assert!(
                got.iter()
                    .any(|m| m.contains("42702") || m.contains("0A000")),
                "{sql}: pgproxy answered {got:?}"
            );
        }
    })
    .await
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// 100k rows (about 100 MB) merged with ORDER BY and read slowly: in order, complete, and
/// without pgproxy holding the result; LIMIT/OFFSET deep into it are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_rows_merged_in_bounded_memory() {
    within(300, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        c.client()
            .await
            .batch_execute("CREATE TABLE notes (id bigint, user_id bigint, body text)")
            .await
            .expect("schema");
        // Straight into each shard's node: shard s holds the ids of parity s.
        for s in 0..2usize {
            let key = key_on(s);
            c.shards[s][0]
                .scalar(&format!(
                    "INSERT INTO notes SELECT g, {key}, repeat(md5(g::text), 32) \
                     FROM generate_series(1, 100000) g WHERE g % 2 = {s}"
                ))
                .await;
        }
        let pid = c.proxy.pid();
        let mut p = raw_proxy(&c).await;
        exchange(&mut p, &wire::query("SELECT 1")).await;
        let before = rss_kb(pid);
        let mut peak = before;
        p.send(&wire::query("SELECT id, body FROM notes ORDER BY id"))
            .await
            .expect("send");
        let (mut n, mut last, mut tag) = (0i64, 0i64, String::new());
        loop {
            let m = p.recv().await.expect("connection closed mid-result");
            match m.tag {
                b'D' => {
                    let row = wire::data_row(&m.body);
                    let id: i64 = row[0].as_deref().expect("id").parse().expect("int");
                    assert_eq!(id, last + 1, "rows out of order or missing");
                    assert_eq!(row[1].as_deref().map(str::len), Some(1024));
                    last = id;
                    n += 1;
                    if n % 5000 == 0 {
                        peak = peak.max(rss_kb(pid));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                b'C' => tag = show(&m).expect("tag"),
                b'E' => panic!("error: {:?}", wire::error_fields(&m.body)),
                b'Z' => break,
                _ => {}
            }
        }
        assert_eq!(n, 100_000);
        assert_eq!(tag, "CommandComplete SELECT 100000");
        let grown_mb = peak.saturating_sub(before) as f64 / 1024.0;
        assert!(
            grown_mb < 40.0,
            "pgproxy RSS grew by {grown_mb:.1} MB for a 100 MB merged result"
        );
        let got = exchange(
            &mut p,
            &wire::query("SELECT id FROM notes ORDER BY id DESC LIMIT 3 OFFSET 99990"),
        )
        .await;
        assert_eq!(
            got,
            vec![
                "RowDescription id:20",
                "DataRow [Some(\"10\")]",
                "DataRow [Some(\"9\")]",
                "DataRow [Some(\"8\")]",
                "CommandComplete SELECT 3",
                "Ready I"
            ]
        );
        let got = exchange(
            &mut p,
            &wire::query("SELECT count(*), max(id), min(id) FROM notes"),
        )
        .await;
        assert!(
            got.contains(&"DataRow [Some(\"100000\"), Some(\"100000\"), Some(\"1\")]".to_string()),
            "{got:?}"
        );
    })
    .await
}

/// A merged read with Describe of the statement in the same request (Parse, Describe S, Bind,
/// Execute, Sync: what pgjdbc sends for a statement it prepares).
#[tokio::test]
async fn merged_read_with_statement_describe_in_the_request() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let mut m = wire::parse(
            "",
            "SELECT id, age FROM contacts WHERE age > $1 ORDER BY id LIMIT 5",
        );
        m.extend(wire::describe(b'S', ""));
        m.extend(wire::bind("", "", &[Some("20")]));
        m.extend(wire::execute("", 0));
        let got = same_answer(&mut p, &mut r, &with_sync(m), "P/D(S)/B/E/S").await;
        assert!(got.iter().any(|s| s.starts_with("DataRow")), "{got:?}");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Keyless writes
// ---------------------------------------------------------------------------------------------

/// UPDATE / DELETE without the key, with RETURNING, through the extended protocol (raw text
/// results and tokio-postgres binary results), on replicated shards.
#[tokio::test]
async fn keyless_update_and_delete_returning_extended() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 2, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let m = with_sync(pbde(
            "UPDATE contacts SET name = $1 WHERE age > $2 RETURNING id, name",
            &[Some("older"), Some("40")],
        ));
        let want = sorted(exchange(&mut r, &m).await);
        let got = sorted(exchange(&mut p, &m).await);
        assert_eq!(got, want, "UPDATE … RETURNING (rows sorted)");
        assert!(
            got.iter().filter(|s| s.starts_with("DataRow")).count() > 5,
            "{got:?}"
        );
        // Named statement prepared first, executed without Describe.
        let mut m = wire::parse("del", "DELETE FROM contacts WHERE age < $1 RETURNING id");
        m.extend(wire::describe(b'S', "del"));
        same_answer(&mut p, &mut r, &with_sync(m), "prepare DELETE").await;
        let mut m = wire::bind("", "del", &[Some("15")]);
        m.extend(wire::execute("", 0));
        let want = sorted(exchange(&mut r, &with_sync(m.clone())).await);
        let got = sorted(exchange(&mut p, &with_sync(m)).await);
        assert_eq!(got, want, "DELETE … RETURNING by a named statement");
        // tokio-postgres (binary results).
        let rows = client
            .query(
                "UPDATE contacts SET age = age + $1 WHERE age IS NULL OR age > 55 RETURNING id",
                &[&1i32],
            )
            .await
            .expect("keyless UPDATE RETURNING, binary");
        let drows = direct
            .query(
                "UPDATE contacts SET age = age + $1 WHERE age IS NULL OR age > 55 RETURNING id",
                &[&1i32],
            )
            .await
            .expect("reference");
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let mut want_ids: Vec<i64> = drows.iter().map(|r| r.get(0)).collect();
        ids.sort();
        want_ids.sort();
        assert_eq!(ids, want_ids);
        let n = client
            .execute("DELETE FROM contacts WHERE name = $1", &[&"older"])
            .await
            .expect("keyless DELETE, binary");
        let dn = direct
            .execute("DELETE FROM contacts WHERE name = $1", &[&"older"])
            .await
            .expect("reference");
        assert_eq!(n, dn);
        // The shards' nodes agree, and nothing is left prepared.
        for shard in &c.shards {
            let nodes: Vec<&PgNode> = shard.iter().collect();
            common::cluster::assert_identical(&nodes, &["contacts"]).await;
        }
        for node in c.all_nodes() {
            assert_eq!(
                node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
                "0"
            );
        }
        let got = scalar(&client, "SELECT count(*) FROM contacts").await;
        assert_eq!(got, scalar(&direct, "SELECT count(*) FROM contacts").await);
    })
    .await
}

/// A keyless UPDATE whose SET is a plain literal that happens to contain the word "default"
/// runs like any other literal (replicated shards).
#[tokio::test]
async fn keyless_write_with_the_word_default_in_a_literal() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 2, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, true).await;
        let sql = "UPDATE contacts SET name = 'default' WHERE age > 30";
        let want = direct.execute(sql, &[]).await.expect("reference");
        let got = client.simple_query(sql).await;
        let got = got.unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        let n = got.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        });
        assert_eq!(n, Some(want));
    })
    .await
}

/// One simple Query holding BEGIN, a keyless UPDATE and COMMIT: PostgreSQL runs it atomically.
/// pgproxy must run it (every row updated, nothing left prepared, no node detached) or refuse
/// it with 0A000 and change nothing.
#[tokio::test]
async fn keyless_write_in_a_multi_statement_query_with_commit() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 2, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, true).await;
        let sql = "BEGIN; UPDATE contacts SET name = 'multi' WHERE age >= 0; COMMIT";
        direct.batch_execute(sql).await.expect("reference");
        let want = scalar(
            &direct,
            "SELECT count(*) FROM contacts WHERE name = 'multi'",
        )
        .await;
        match client.batch_execute(sql).await {
            Ok(()) => {
                let got = scalar(
                    &client,
                    "SELECT count(*) FROM contacts WHERE name = 'multi'",
                )
                .await;
                assert_eq!(got, want);
            }
            Err(e) => {
                assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{}", describe(&e));
                let got = scalar(
                    &client,
                    "SELECT count(*) FROM contacts WHERE name = 'multi'",
                )
                .await;
                assert_eq!(got, "0", "refused, yet changed");
            }
        }
        for node in c.all_nodes() {
            assert_eq!(
                node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
                "0"
            );
            assert_eq!(in_txn_backends(node).await, 0);
        }
        let log = c.proxy.log();
        assert!(
            !log.contains("detached") && !log.contains("to=\"down\""),
            "a node was taken out of its shard:\n{log}"
        );
        // Writes by key still reach every node of both shards.
        let (a, b) = two_keys();
        for (id, k) in [(1001i64, a), (1002, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id) VALUES ({id}, {k})"
                ))
                .await
                .expect("insert by key");
            assert_eq!(count_on(&c, shard_of(k), &format!("id = {id}")).await, 1);
        }
    })
    .await
}

/// A keyless write in a transaction that set a savepoint is refused (0A000, as documented),
/// and the transaction goes on: ROLLBACK TO SAVEPOINT, more work, COMMIT.
#[tokio::test]
async fn keyless_write_after_a_savepoint_is_refused_cleanly() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        for (id, k) in [(1i64, a), (2, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, age) VALUES ({id}, {k}, 50)"
                ))
                .await
                .expect("insert");
        }
        client.simple_query("BEGIN").await.expect("begin");
        client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id) VALUES (3, {a})"
            ))
            .await
            .expect("insert in txn");
        client.simple_query("SAVEPOINT s").await.expect("savepoint");
        let e = client
            .simple_query("UPDATE contacts SET name = 'k' WHERE age > 0")
            .await
            .expect_err("keyless write after a savepoint");
        assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{}", describe(&e));
        // The refusal aborted the transaction, as an error does in PostgreSQL: what follows
        // gets 25P02 until ROLLBACK TO SAVEPOINT.
        let e = client
            .execute("UPDATE contacts SET name = $1 WHERE age > 0", &[&"k"])
            .await
            .expect_err("in an aborted transaction, extended");
        assert_eq!(sqlstate(&e).as_deref(), Some("25P02"), "{}", describe(&e));
        client
            .simple_query("ROLLBACK TO SAVEPOINT s")
            .await
            .expect("rollback to savepoint");
        client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id) VALUES (4, {a})"
            ))
            .await
            .expect("insert after");
        client.simple_query("COMMIT").await.expect("commit");
        assert_eq!(count_on(&c, shard_of(a), "id IN (3, 4)").await, 2);
        assert_eq!(
            count_on(&c, 0, "name = 'k'").await + count_on(&c, 1, "name = 'k'").await,
            0
        );
    })
    .await
}

/// A keyless write inside a transaction (it spans both shards), then a savepoint on the
/// current shard, a change rolled back to it, COMMIT: the keyless change is on every shard,
/// the rolled-back one nowhere.
#[tokio::test]
async fn keyless_write_in_a_transaction_then_rollback_to_savepoint() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 2, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        for (id, k) in [(1i64, a), (2, a), (3, b), (4, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, age) VALUES ({id}, {k}, 50)"
                ))
                .await
                .expect("insert");
        }
        client.simple_query("BEGIN").await.expect("begin");
        let n: i64 = client
            .query_one("SELECT count(*) FROM contacts WHERE user_id = $1", &[&a])
            .await
            .expect("read on a")
            .get(0);
        assert_eq!(n, 2);
        let n = client
            .execute("UPDATE contacts SET name = 'all' WHERE age = $1", &[&50i32])
            .await
            .expect("keyless update in the transaction");
        assert_eq!(n, 4);
        client.simple_query("SAVEPOINT s").await.expect("savepoint");
        client
            .simple_query(&format!(
                "UPDATE contacts SET name = 'undone' WHERE user_id = {a}"
            ))
            .await
            .expect("update on the current shard");
        client
            .simple_query("ROLLBACK TO SAVEPOINT s")
            .await
            .expect("rollback to savepoint");
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM contacts WHERE user_id = $1 AND name = 'all'",
                &[&a],
            )
            .await
            .expect("read after rollback to")
            .get(0);
        assert_eq!(n, 2);
        client.simple_query("COMMIT").await.expect("commit");
        for s in 0..2 {
            assert_eq!(count_on(&c, s, "name = 'all'").await, 2, "shard {s}");
            assert_eq!(count_on(&c, s, "name = 'undone'").await, 0, "shard {s}");
        }
        for node in c.all_nodes() {
            assert_eq!(
                node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
                "0"
            );
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Transactions across shards
// ---------------------------------------------------------------------------------------------

/// The isolation level (and its snapshot rule) carries over to the second shard.
#[tokio::test]
async fn isolation_level_follows_the_transaction_to_another_shard() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        let other = c.client().await;
        for (round, begin, want) in [
            (0i64, "BEGIN ISOLATION LEVEL REPEATABLE READ", "repeatable read"),
            (1, "START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "serializable"),
        ] {
            client.simple_query(begin).await.expect(begin);
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id) VALUES ({}, {a})",
                    10 + round
                ))
                .await
                .expect("insert on a");
            let rows = simple_rows(
                &client,
                &format!("SELECT current_setting('transaction_isolation'), count(*) FROM contacts WHERE user_id = {b}"),
            )
            .await;
            assert_eq!(rows[0][0].as_deref(), Some(want), "{begin}: on the second shard");
            let first_count = rows[0][1].clone();
            assert_eq!(
                scalar(&client, "SHOW transaction_isolation").await,
                want,
                "{begin}: SHOW on the current (second) shard"
            );
            // Another session commits a row on b: the snapshot does not see it.
            other
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id) VALUES ({}, {b})",
                    20 + round
                ))
                .await
                .expect("concurrent insert");
            let rows = simple_rows(
                &client,
                &format!("SELECT count(*) FROM contacts WHERE user_id = {b}"),
            )
            .await;
            assert_eq!(rows[0][0], first_count, "{begin}: snapshot on the second shard");
            client.simple_query("COMMIT").await.expect("commit");
        }
        // SET TRANSACTION after BEGIN.
        client.simple_query("BEGIN").await.expect("begin");
        client
            .simple_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .expect("set transaction");
        client
            .simple_query(&format!("SELECT count(*) FROM contacts WHERE user_id = {a}"))
            .await
            .expect("on a");
        let rows = simple_rows(
            &client,
            &format!("SELECT current_setting('transaction_isolation') FROM contacts WHERE user_id = {b} LIMIT 1"),
        )
        .await;
        assert_eq!(rows[0][0].as_deref(), Some("repeatable read"), "SET TRANSACTION carried");
        client.simple_query("COMMIT").await.expect("commit");
    })
    .await
}

/// A read-only transaction stays read-only on the second shard.
#[tokio::test]
async fn read_only_transaction_across_shards() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        client.simple_query("BEGIN READ ONLY").await.expect("begin");
        client
            .simple_query(&format!("SELECT count(*) FROM contacts WHERE user_id = {a}"))
            .await
            .expect("read a");
        let rows = simple_rows(
            &client,
            &format!("SELECT current_setting('transaction_read_only'), count(*) FROM contacts WHERE user_id = {b}"),
        )
        .await;
        assert_eq!(rows[0][0].as_deref(), Some("on"));
        let e = client
            .simple_query(&format!("INSERT INTO contacts (id, user_id) VALUES (1, {b})"))
            .await
            .expect_err("write in a read-only transaction");
        assert_eq!(sqlstate(&e).as_deref(), Some("25006"), "{}", describe(&e));
        client.simple_query("ROLLBACK").await.expect("rollback");
        // Committing a read-only transaction that visited both shards works.
        client.simple_query("BEGIN READ ONLY").await.expect("begin");
        for k in [a, b, a] {
            client
                .simple_query(&format!("SELECT count(*) FROM contacts WHERE user_id = {k}"))
                .await
                .expect("read");
        }
        client.simple_query("COMMIT").await.expect("commit read-only");
        assert_eq!(count_on(&c, shard_of(b), "true").await, 0);
        for node in c.all_nodes() {
            assert_eq!(node.scalar("SELECT count(*) FROM pg_prepared_xacts").await, "0");
        }
    })
    .await
}

/// An error on the second shard: the transaction is aborted everywhere (a statement for the
/// first shard gets 25P02 like on PostgreSQL), ROLLBACK ends it, nothing stays behind.
#[tokio::test]
async fn error_after_switching_shards_then_rollback() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 2, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id) VALUES (2, {b})"
            ))
            .await
            .expect("existing row");
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
            .expect_err("duplicate");
        assert_eq!(sqlstate(&e).as_deref(), Some("23505"));
        let e = client
            .simple_query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {a}"
            ))
            .await
            .expect_err("aborted transaction");
        assert_eq!(sqlstate(&e).as_deref(), Some("25P02"), "{}", describe(&e));
        let e = client
            .simple_query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {b}"
            ))
            .await
            .expect_err("aborted transaction, current shard");
        assert_eq!(sqlstate(&e).as_deref(), Some("25P02"), "{}", describe(&e));
        client.simple_query("ROLLBACK").await.expect("rollback");
        assert_eq!(count_on(&c, shard_of(a), "id = 1").await, 0);
        for node in c.all_nodes() {
            assert_eq!(
                node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
                "0"
            );
            eventually(5, "no transaction left open", || async {
                (in_txn_backends(node).await == 0).then_some(())
            })
            .await;
        }
        // The session goes on, on both shards, in a new cross-shard transaction.
        client.simple_query("BEGIN").await.expect("begin");
        for (id, k) in [(5i64, a), (6, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id) VALUES ({id}, {k})"
                ))
                .await
                .expect("insert");
        }
        client.simple_query("COMMIT").await.expect("commit");
        assert_eq!(count_on(&c, shard_of(a), "id = 5").await, 1);
        assert_eq!(count_on(&c, shard_of(b), "id = 6").await, 1);
    })
    .await
}

/// COMMIT of a cross-shard transaction when the node of one of its shards was killed: a clean
/// error, and no shard keeps the transaction's rows (no half commit). Both the shard the
/// transaction left (parked) and its current shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_when_a_shard_node_was_killed() {
    within(300, "test", async {
        let mut c = ShardedCluster::start(2, 1, "").await;
        c.client().await.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        // Without a pause (COMMIT may reach pgproxy before it notices the dead backend) and
        // with one (pgproxy has noticed the dead connection of the current shard by then).
        for (round, victim_key, pause_ms) in [(0i64, a, 0u64), (1, b, 0), (2, a, 1500), (3, b, 1500)] {
            let mut raw = raw_proxy(&c).await;
            let (ia, ib) = (round * 10 + 1, round * 10 + 2);
            for sql in [
                "BEGIN".to_string(),
                format!("INSERT INTO contacts (id, user_id) VALUES ({ia}, {a})"),
                format!("INSERT INTO contacts (id, user_id) VALUES ({ib}, {b})"),
            ] {
                let got = exchange(&mut raw, &wire::query(&sql)).await;
                assert_eq!(got.last().map(String::as_str), Some("Ready T"), "{sql}: {got:?}");
            }
            let victim = shard_of(victim_key);
            c.shards[victim][0].kill9();
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            // PostgreSQL's client would see its connection fail; through pgproxy an error
            // (or a closed connection) is expected, never a success.
            raw.send(&wire::query("COMMIT")).await.expect("send COMMIT");
            let mut got = Vec::new();
            let closed = loop {
                match within(30, "COMMIT with a dead shard", raw.recv()).await {
                    None => break true,
                    Some(m) if m.tag == b'Z' => {
                        got.push(format!("Ready {}", m.body[0] as char));
                        break false;
                    }
                    Some(m) => got.extend(show(&m)),
                }
            };
            assert!(
                closed || got.iter().any(|s| s.starts_with("Error")),
                "round {round} (node of shard {victim} killed: {}; COMMIT sent {pause_ms} ms later): the client got {got:?}",
                if victim == shard_of(b) { "the current shard" } else { "the shard the transaction left" }
            );
            c.shards[victim][0].restart().await;
            // Nothing committed on the shard that survived, nothing prepared anywhere.
            let survivor = 1 - victim;
            let (ids, key) = if survivor == shard_of(a) { (ia, a) } else { (ib, b) };
            assert_eq!(
                count_on(&c, survivor, &format!("id = {ids} AND user_id = {key}")).await,
                0,
                "round {round}: half commit on the surviving shard"
            );
            assert_eq!(count_on(&c, victim, &format!("id IN ({ia}, {ib})")).await, 0);
            for node in c.all_nodes() {
                eventually(20, "no prepared transaction left", || async {
                    (node.scalar("SELECT count(*) FROM pg_prepared_xacts").await == "0").then_some(())
                })
                .await;
            }
            // pgproxy serves the restarted shard again.
            let port = c.proxy.port();
            eventually(30, "writes on the restarted shard work again", || async move {
                let client = connect_app(port).await;
                client
                    .simple_query(&format!(
                        "INSERT INTO contacts (id, user_id) VALUES ({}, {victim_key}) ON CONFLICT DO NOTHING",
                        round * 10 + 5
                    ))
                    .await
                    .ok()
            })
            .await;
        }
    })
    .await
}

/// A client that disconnects in the middle of a cross-shard transaction (after a keyless
/// write too) leaves no prepared transaction, no open transaction and no lock on any node.
#[tokio::test]
async fn client_gone_mid_cross_shard_transaction() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 2, "").await;
        let setup = c.client().await;
        setup.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        for (id, k) in [(1i64, a), (2, b)] {
            setup
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, age) VALUES ({id}, {k}, 1)"
                ))
                .await
                .expect("insert");
        }
        for with_keyless in [false, true] {
            {
                let client = c.client().await;
                client.simple_query("BEGIN").await.expect("begin");
                client
                    .simple_query(&format!(
                        "UPDATE contacts SET name = 'gone' WHERE user_id = {a}"
                    ))
                    .await
                    .expect("on a");
                client
                    .simple_query(&format!(
                        "INSERT INTO contacts (id, user_id) VALUES (3, {b})"
                    ))
                    .await
                    .expect("on b");
                if with_keyless {
                    client
                        .simple_query("UPDATE contacts SET age = 2 WHERE age = 1")
                        .await
                        .expect("keyless");
                }
                // The client goes away without a word.
            }
            for node in c.all_nodes() {
                eventually(10, "no transaction left open on a node", || async {
                    (in_txn_backends(node).await == 0).then_some(())
                })
                .await;
                assert_eq!(
                    node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
                    "0"
                );
            }
            // The rows are free: another session updates them at once.
            setup
                .simple_query("SET lock_timeout = '2s'")
                .await
                .expect("lock_timeout");
            for k in [a, b] {
                setup
                    .simple_query(&format!(
                        "UPDATE contacts SET name = 'free' WHERE user_id = {k}"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("row of {k} still locked: {}", describe(&e)));
            }
            assert_eq!(
                count_on(&c, shard_of(b), "id = 3").await,
                0,
                "uncommitted row left"
            );
            assert_eq!(
                count_on(&c, 0, "age = 2").await + count_on(&c, 1, "age = 2").await,
                0
            );
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Session pooling and session state
// ---------------------------------------------------------------------------------------------

/// Settings made with SET (and a prepared statement) follow the session to another shard, in
/// session and in transaction pooling.
#[tokio::test]
async fn settings_survive_switching_shards() {
    within(120, "test", async {
        for mode in ["session", "transaction"] {
            let c = cluster_with_mode(mode, 2, 1).await;
            let client = connect_app(c.proxy.port()).await;
            client.batch_execute(SCHEMA).await.expect("schema");
            let (a, b) = two_keys();
            for (id, k) in [(1i64, a), (2, b)] {
                client
                    .simple_query(&format!("INSERT INTO contacts (id, user_id) VALUES ({id}, {k})"))
                    .await
                    .expect("insert");
            }
            client
                .batch_execute("SET application_name = 'edge'; SET myapp.flag = 'on'; SET TIME ZONE 'Asia/Tokyo'")
                .await
                .expect("set");
            let stmt = client
                .prepare("SELECT current_setting('myapp.flag'), current_setting('application_name'), current_setting('TimeZone'), count(*) FROM contacts WHERE user_id = $1")
                .await
                .expect("prepare");
            for k in [a, b, a, b] {
                let row = client.query_one(&stmt, &[&k]).await.unwrap_or_else(|e| panic!("{mode}: {}", describe(&e)));
                let got: (String, String, String, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
                assert_eq!(
                    got,
                    ("on".into(), "edge".into(), "Asia/Tokyo".into(), 1),
                    "{mode}: key {k}"
                );
                let rows = simple_rows(
                    &client,
                    &format!("SELECT current_setting('myapp.flag'), count(*) FROM contacts WHERE user_id = {k}"),
                )
                .await;
                assert_eq!(rows[0][0].as_deref(), Some("on"), "{mode}: simple, key {k}");
            }
            // A RESET on one shard is seen on the other.
            client.simple_query("RESET application_name").await.expect("reset");
            for k in [a, b] {
                let rows = simple_rows(
                    &client,
                    &format!("SELECT current_setting('application_name'), count(*) FROM contacts WHERE user_id = {k}"),
                )
                .await;
                assert_eq!(rows[0][0].as_deref(), Some(""), "{mode}: reset, key {k}");
            }
        }
    })
    .await
}

/// A temporary table, then a statement for another shard: refused with 0A000 (the session's
/// state lives on one shard) or run, but the temporary table must stay usable, and the
/// cluster healthy.
#[tokio::test]
async fn temporary_table_then_another_shard() {
    within(120, "test", async {
        for mode in ["session", "transaction"] {
            let c = cluster_with_mode(mode, 2, 1).await;
            let client = connect_app(c.proxy.port()).await;
            client.batch_execute(SCHEMA).await.expect("schema");
            let (a, b) = two_keys();
            client
                .simple_query(&format!(
                    "SELECT count(*) FROM contacts WHERE user_id = {a}"
                ))
                .await
                .expect("on a");
            client
                .simple_query("CREATE TEMP TABLE tt (x int)")
                .await
                .unwrap_or_else(|e| panic!("{mode}: create temp: {}", describe(&e)));
            client
                .simple_query("INSERT INTO tt VALUES (1)")
                .await
                .unwrap_or_else(|e| panic!("{mode}: insert into temp: {}", describe(&e)));
            assert_eq!(
                scalar(&client, "SELECT count(*) FROM tt").await,
                "1",
                "{mode}"
            );
            match client
                .simple_query(&format!(
                    "SELECT count(*) FROM contacts WHERE user_id = {b}"
                ))
                .await
            {
                Ok(_) => eprintln!("{mode}: temp table, then the other shard: ran"),
                Err(e) => {
                    eprintln!("{mode}: temp table, then the other shard: {}", describe(&e));
                    assert_eq!(
                        sqlstate(&e).as_deref(),
                        Some("0A000"),
                        "{mode}: {}",
                        describe(&e)
                    )
                }
            }
            let rows = client.simple_query("SELECT count(*) FROM tt").await;
            let rows = rows.unwrap_or_else(|e| {
                panic!(
                    "{mode}: temp table lost after another shard: {}",
                    describe(&e)
                )
            });
            let n = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            });
            assert_eq!(n.as_deref(), Some("1"), "{mode}");
            // Back and forth between the shards: the table and its row stay.
            for k in [a, b, a] {
                let _ = client
                    .simple_query(&format!(
                        "SELECT count(*) FROM contacts WHERE user_id = {k}"
                    ))
                    .await;
                let rows = client.simple_query("SELECT count(*) FROM tt").await;
                let rows = rows.unwrap_or_else(|e| {
                    panic!(
                        "{mode}: temp table lost after a trip to key {k}'s shard: {}",
                        describe(&e)
                    )
                });
                let n = rows.iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                });
                assert_eq!(n.as_deref(), Some("1"), "{mode}: after key {k}'s shard");
            }
            // Other clients do not see it, and writes by key work on both shards.
            let other = connect_app(c.proxy.port()).await;
            for (id, k) in [(1i64, a), (2, b)] {
                other
                    .simple_query(&format!(
                        "INSERT INTO contacts (id, user_id) VALUES ({id}, {k})"
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("{mode}: insert by key: {}", describe(&e)));
            }
            drop(client);
            let third = connect_app(c.proxy.port()).await;
            for k in [a, b, a] {
                third
                    .simple_query(&format!(
                        "SELECT count(*) FROM contacts WHERE user_id = {k}"
                    ))
                    .await
                    .expect("select");
                let e = third.simple_query("SELECT count(*) FROM tt").await;
                assert!(e.is_err(), "{mode}: another client sees the temp table tt");
            }
            let _ = &c.shards;
        }
    })
    .await
}

/// `SET pgproxy.shard_key`: statements without a key go to that key's shard, statements with
/// their own key keep it; RESET and DEFAULT end it; an invalid value is an error that changes
/// nothing.
#[tokio::test]
async fn shard_key_setting() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        for sql in seed_sql() {
            client.simple_query(&sql).await.expect("seed");
        }
        let (a, b) = two_keys();
        let per_shard: Vec<i64> =
            vec![count_on(&c, 0, "true").await, count_on(&c, 1, "true").await];
        let total = (per_shard[0] + per_shard[1]).to_string();
        let count = "SELECT count(*) FROM contacts";
        client
            .simple_query(&format!("SET pgproxy.shard_key = {a}"))
            .await
            .expect("set");
        assert_eq!(
            scalar(&client, count).await,
            per_shard[shard_of(a)].to_string()
        );
        assert_eq!(
            scalar(
                &client,
                &format!("SELECT count(*) FROM contacts WHERE user_id = {b}")
            )
            .await,
            "3",
            "a statement's own key wins"
        );
        assert_eq!(
            scalar(&client, "SHOW pgproxy.shard_key").await,
            a.to_string()
        );
        client
            .simple_query("RESET pgproxy.shard_key")
            .await
            .expect("reset");
        assert_eq!(scalar(&client, count).await, total);
        client
            .simple_query(&format!("SET pgproxy.shard_key TO '{b}'"))
            .await
            .expect("set to");
        assert_eq!(
            scalar(&client, count).await,
            per_shard[shard_of(b)].to_string()
        );
        client
            .simple_query("SET pgproxy.shard_key TO DEFAULT")
            .await
            .expect("default");
        assert_eq!(scalar(&client, count).await, total);
        // Invalid values.
        client
            .simple_query(&format!("SET pgproxy.shard_key = {a}"))
            .await
            .expect("set");
        for bad in ["'abc'", "1.5", "''"] {
            let e = client
                .simple_query(&format!("SET pgproxy.shard_key = {bad}"))
                .await
                .expect_err(bad);
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some("22P02"),
                "{bad}: {}",
                describe(&e)
            );
            assert_eq!(
                scalar(&client, count).await,
                per_shard[shard_of(a)].to_string(),
                "after the invalid {bad}, the key is unchanged"
            );
        }
        client
            .simple_query("RESET pgproxy.shard_key")
            .await
            .expect("reset");
        assert_eq!(scalar(&client, count).await, total);
    })
    .await
}

/// `SET pgproxy.shard_key` sent through the extended protocol (as pgjdbc and tokio-postgres'
/// `execute` send it) routes like the simple-protocol SET.
#[tokio::test]
async fn shard_key_set_through_the_extended_protocol() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        for sql in seed_sql() {
            client.simple_query(&sql).await.expect("seed");
        }
        let (a, _) = two_keys();
        let mine = count_on(&c, shard_of(a), "true").await.to_string();
        client
            .execute(&format!("SET pgproxy.shard_key = {a}"), &[])
            .await
            .expect("SET through the extended protocol");
        assert_eq!(
            scalar(&client, "SHOW pgproxy.shard_key").await,
            a.to_string()
        );
        assert_eq!(
            scalar(&client, "SELECT count(*) FROM contacts").await,
            mine,
            "the key set through the extended protocol routes the next statement"
        );
    })
    .await
}

/// `SET pgproxy.shard_key = …; SELECT …` in one simple Query: PostgreSQL runs both.
#[tokio::test]
async fn shard_key_set_in_a_multi_statement_query() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        for sql in seed_sql() {
            client.simple_query(&sql).await.expect("seed");
        }
        let (a, _) = two_keys();
        let mine = count_on(&c, shard_of(a), "true").await.to_string();
        let rows = client
            .simple_query(&format!(
                "SET pgproxy.shard_key = {a}; SELECT count(*) FROM contacts"
            ))
            .await;
        let rows = rows.unwrap_or_else(|e| panic!("SET; SELECT: {}", describe(&e)));
        let n = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
        assert_eq!(n.as_deref(), Some(mine.as_str()));
        assert_eq!(scalar(&client, "SELECT count(*) FROM contacts").await, mine);
    })
    .await
}

/// The shard key follows PostgreSQL's rules for settings: RESET ALL / DISCARD ALL clear it, and
/// a SET in a transaction that rolls back is undone. (SHOW agrees with the routing.)
#[tokio::test]
async fn shard_key_cleared_like_a_setting() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        for sql in seed_sql() {
            client.simple_query(&sql).await.expect("seed");
        }
        let (a, _) = two_keys();
        let total = (count_on(&c, 0, "true").await + count_on(&c, 1, "true").await).to_string();
        let count = "SELECT count(*) FROM contacts";
        let mut wrong = Vec::new();
        for clear in ["RESET ALL", "DISCARD ALL", "ROLLBACK"] {
            if clear == "ROLLBACK" {
                client.simple_query("BEGIN").await.expect("begin");
            }
            client.simple_query(&format!("SET pgproxy.shard_key = {a}")).await.expect("set");
            client.simple_query(clear).await.expect(clear);
            let shown = scalar(&client, "SHOW pgproxy.shard_key").await;
            let n = scalar(&client, count).await;
            if !shown.is_empty() || n != total {
                wrong.push(format!(
                    "after SET pgproxy.shard_key = {a}; {clear}: SHOW gives {shown:?}, a read without key counts {n} of {total} rows"
                ));
            }
            // Back to no key for the next case.
            client.simple_query("RESET pgproxy.shard_key").await.expect("reset");
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Cancel, LISTEN/NOTIFY
// ---------------------------------------------------------------------------------------------

/// A CancelRequest stops a merged read running on every shard, as PostgreSQL stops a query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_during_a_merged_read() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, false).await;
        let (a, b) = two_keys();
        for (id, k) in [(1i64, a), (2, a), (3, a), (4, b), (5, b), (6, b)] {
            let sql = format!("INSERT INTO contacts (id, user_id) VALUES ({id}, {k})");
            client.simple_query(&sql).await.expect("insert");
            direct.simple_query(&sql).await.expect("insert");
        }
        let slow_all = "SELECT id FROM contacts WHERE pg_sleep(1) IS NOT NULL ORDER BY id";
        // The statement itself is fine (on the reference, and not cancelled it takes ~3 s).
        let rows = simple_rows(&direct, slow_all).await;
        assert_eq!(rows.len(), 6);
        // Baseline: a single-shard query is cancelled.
        let slow_one = format!("SELECT pg_sleep(5), count(*) FROM contacts WHERE user_id = {a}");
        for (what, sql) in [("one shard", slow_one.as_str()), ("merged", slow_all)] {
            let token = client.cancel_token();
            let started = Instant::now();
            let query = client.simple_query(sql);
            let cancel = async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                token
                    .cancel_query(tokio_postgres::NoTls)
                    .await
                    .expect("send cancel");
            };
            let (res, ()) = tokio::join!(query, cancel);
            let took = started.elapsed();
            let e = res.expect_err(what);
            assert_eq!(
                sqlstate(&e).as_deref(),
                Some("57014"),
                "{what}: {}",
                describe(&e)
            );
            assert!(
                took < Duration::from_millis(2000),
                "{what}: cancel took {took:?}"
            );
            assert_eq!(scalar(&client, "SELECT 'usable'").await, "usable", "{what}");
        }
    })
    .await
}

/// LISTEN on one session, NOTIFY from another whose last statement ran on the other shard:
/// PostgreSQL delivers the notification.
#[tokio::test]
async fn listen_notify_on_a_sharded_cluster() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        c.client()
            .await
            .batch_execute(SCHEMA)
            .await
            .expect("schema");
        let (a, b) = two_keys();
        let cfg = pg_config(c.proxy.port(), "app", "secret", "app");
        let (listener, mut rx) = connect_notify(&cfg).await.expect("connect listener");
        listener
            .simple_query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {a}"
            ))
            .await
            .expect("on a");
        listener.simple_query("LISTEN edge").await.expect("listen");
        let notifier = c.client().await;
        for (i, key) in [a, b].into_iter().enumerate() {
            notifier
                .simple_query(&format!(
                    "SELECT count(*) FROM contacts WHERE user_id = {key}"
                ))
                .await
                .expect("notifier on a shard");
            notifier
                .simple_query(&format!("NOTIFY edge, 'n{i}'"))
                .await
                .expect("notify");
            let n = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "notification {i} (notifier last on shard {}) not delivered",
                        shard_of(key)
                    )
                })
                .expect("listener connection open");
            assert_eq!(
                (n.channel(), n.payload()),
                ("edge", format!("n{i}").as_str())
            );
        }
        // The listener itself can still reach a key of the other shard (or is refused with
        // 0A000, its LISTEN holding it on its shard), and keeps listening.
        match listener
            .simple_query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {b}"
            ))
            .await
        {
            Ok(_) => eprintln!("listener, then the other shard: ran"),
            Err(e) => {
                eprintln!("listener, then the other shard: {}", describe(&e));
                assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{}", describe(&e))
            }
        }
        notifier
            .simple_query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {a}"
            ))
            .await
            .expect("notifier on a");
        notifier
            .simple_query("NOTIFY edge, 'last'")
            .await
            .expect("notify");
        let n = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("last notification")
            .expect("open");
        assert_eq!(n.payload(), "last");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// More session state across shards
// ---------------------------------------------------------------------------------------------

/// A named portal opened on one shard inside a transaction, a statement for the other shard,
/// then more rows fetched from the portal: PostgreSQL keeps the portal for the whole
/// transaction.
#[tokio::test]
async fn portal_survives_a_trip_to_another_shard_in_a_transaction() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        same_answer(&mut p, &mut r, &wire::query("BEGIN"), "begin").await;
        let mut m = wire::parse("", "SELECT id FROM contacts WHERE user_id = $1 ORDER BY id");
        m.extend(wire::bind("c", "", &[Some(&a.to_string())]));
        m.extend(wire::execute("c", 1));
        same_answer(&mut p, &mut r, &with_sync(m), "first row of the portal").await;
        let q = format!("SELECT count(*) FROM contacts WHERE user_id = {b}");
        let got = exchange(&mut p, &wire::query(&q)).await;
        let want = exchange(&mut r, &wire::query(&q)).await;
        eprintln!("open portal, then the other shard: {got:?}");
        if got != want {
            // Refusing the other shard while a portal is open is acceptable; nothing else.
            assert_eq!(
                got.first().map(String::as_str),
                Some("Error 0A000"),
                "{got:?}"
            );
        }
        same_answer(
            &mut p,
            &mut r,
            &with_sync(wire::execute("c", 1)),
            "next row of the portal",
        )
        .await;
        same_answer(&mut p, &mut r, &wire::query("COMMIT"), "commit").await;
    })
    .await
}

/// DECLARE CURSOR on one shard inside a transaction, a statement for the other shard, then
/// FETCH: the cursor must still be there (or the other shard's statement refused with 0A000).
#[tokio::test]
async fn cursor_in_a_transaction_then_another_shard() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for sql in [
            "BEGIN".to_string(),
            format!(
                "DECLARE cur CURSOR FOR SELECT id FROM contacts WHERE user_id = {a} ORDER BY id"
            ),
            "FETCH 1 FROM cur".to_string(),
        ] {
            same_answer(&mut p, &mut r, &wire::query(&sql), &sql).await;
        }
        let q = format!("SELECT count(*) FROM contacts WHERE user_id = {b}");
        let got = exchange(&mut p, &wire::query(&q)).await;
        let want = exchange(&mut r, &wire::query(&q)).await;
        if got != want {
            assert_eq!(
                got.first().map(String::as_str),
                Some("Error 0A000"),
                "{got:?}"
            );
        }
        same_answer(
            &mut p,
            &mut r,
            &wire::query("FETCH 1 FROM cur"),
            "fetch after",
        )
        .await;
        same_answer(&mut p, &mut r, &wire::query("COMMIT"), "commit").await;
    })
    .await
}

/// `SET statement_timeout` applies to a merged read (every shard), and does not leak to other
/// sessions through the pooled connections the merge used.
#[tokio::test]
async fn statement_timeout_applies_to_a_merged_read() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        for (id, k) in [(1i64, a), (2, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id) VALUES ({id}, {k})"
                ))
                .await
                .expect("insert");
        }
        let slow = "SELECT id FROM contacts WHERE pg_sleep(0.6) IS NOT NULL ORDER BY id";
        client
            .simple_query("SET statement_timeout = '200ms'")
            .await
            .expect("set");
        let e = client
            .simple_query(slow)
            .await
            .expect_err("timeout on the merged read");
        assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{}", describe(&e));
        // Another session, no timeout: its merged read completes (the pooled connections do
        // not keep the first session's setting).
        let other = c.client().await;
        for _ in 0..3 {
            let rows = simple_rows(&other, slow).await;
            assert_eq!(rows.len(), 2);
        }
        client
            .simple_query("RESET statement_timeout")
            .await
            .expect("reset");
        assert_eq!(simple_rows(&client, slow).await.len(), 2);
    })
    .await
}

/// An INSERT whose key is NULL: PostgreSQL says 23502 (NOT NULL); pgproxy may also refuse it
/// (0A000), but never inserts it anywhere.
#[tokio::test]
async fn insert_with_a_null_key() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let e = client
            .simple_query("INSERT INTO contacts (id, user_id) VALUES (1, NULL)")
            .await
            .expect_err("NULL key, literal");
        let code = sqlstate(&e);
        assert!(
            matches!(code.as_deref(), Some("23502") | Some("0A000")),
            "{}",
            describe(&e)
        );
        let e = client
            .execute(
                "INSERT INTO contacts (id, user_id) VALUES ($1, $2)",
                &[&2i64, &None::<i64>],
            )
            .await
            .expect_err("NULL key, parameter");
        let code = sqlstate(&e);
        assert!(
            matches!(code.as_deref(), Some("23502") | Some("0A000")),
            "{}",
            describe(&e)
        );
        assert_eq!(
            count_on(&c, 0, "true").await + count_on(&c, 1, "true").await,
            0
        );
    })
    .await
}

/// Session pooling: a merged read, a keyless write and a cross-shard transaction work and see
/// the session's settings.
#[tokio::test]
async fn session_mode_merged_read_keyless_write_and_transaction() {
    within(120, "test", async {
        let c = cluster_with_mode("session", 2, 1).await;
        let client = connect_app(c.proxy.port()).await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = two_keys();
        for (id, k) in [(1i64, a), (2, b), (3, a), (4, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, age) VALUES ({id}, {k}, {id})"
                ))
                .await
                .expect("insert");
        }
        client
            .simple_query("SET myapp.flag = 'x'")
            .await
            .expect("set");
        let rows = simple_rows(
            &client,
            "SELECT id, current_setting('myapp.flag') FROM contacts ORDER BY id",
        )
        .await;
        assert_eq!(rows.len(), 4);
        assert!(
            rows.iter().all(|r| r[1].as_deref() == Some("x")),
            "{rows:?}"
        );
        let n = client
            .execute("UPDATE contacts SET name = 'k' WHERE age > $1", &[&0i32])
            .await
            .expect("keyless write in session mode");
        assert_eq!(n, 4);
        client.simple_query("BEGIN").await.expect("begin");
        for (id, k) in [(5i64, a), (6, b)] {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id) VALUES ({id}, {k})"
                ))
                .await
                .expect("insert in txn");
        }
        client.simple_query("COMMIT").await.expect("commit");
        assert_eq!(scalar(&client, "SELECT count(*) FROM contacts").await, "6");
        let mut total = 0;
        for s in 0..2 {
            total += c.shards[s][0]
                .scalar("SELECT count(*) FROM contacts WHERE name = 'k' OR id > 4")
                .await
                .parse::<i64>()
                .expect("n");
        }
        assert_eq!(total, 6);
    })
    .await
}

/// Several complete requests (each ending with Sync) written at once, as pipelining drivers do:
/// a merged read, a read by key, a keyless write, a merged read again. Answers in order, as
/// PostgreSQL gives them.
#[tokio::test]
async fn requests_pipelined_across_syncs() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let (a, b) = two_keys();
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let mut m = with_sync(pbde("SELECT id FROM contacts ORDER BY id LIMIT 4", &[]));
        m.extend(with_sync(pbde(
            "SELECT id, name FROM contacts WHERE user_id = $1 ORDER BY id",
            &[Some(&a.to_string())],
        )));
        m.extend(with_sync(pbde(
            "UPDATE contacts SET name = 'piped' WHERE age > $1",
            &[Some("45")],
        )));
        m.extend(with_sync(pbde(
            "SELECT count(*) FROM contacts WHERE name = $1",
            &[Some("piped")],
        )));
        m.extend(wire::query(&format!(
            "SELECT id FROM contacts WHERE user_id = {b} ORDER BY id"
        )));
        m.extend(wire::query("SELECT max(id) FROM contacts"));
        p.send(&m).await.expect("send");
        r.send(&m).await.expect("send");
        for i in 0..6 {
            let want = read_ready(&mut r).await;
            let got = read_ready(&mut p).await;
            assert_eq!(got, want, "answer {i} of the pipeline");
        }
    })
    .await
}

/// A keyless write that fails on one shard, through the extended protocol: the client gets
/// what PostgreSQL sends (ParseComplete, BindComplete, RowDescription, then the error), and no
/// shard keeps a change.
#[tokio::test]
async fn keyless_write_error_answers_like_postgres() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, false).await;
        let (a, b) = two_keys();
        for sql in [
            format!("INSERT INTO contacts (id, user_id, age) VALUES (1, {a}, 30), (2, {a}, 31)"),
            format!("INSERT INTO contacts (id, user_id, age) VALUES (3, {b}, 40), (4, {b}, 41)"),
        ] {
            client.simple_query(&sql).await.expect("insert");
            direct.simple_query(&sql).await.expect("insert");
        }
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let m = with_sync(pbde(
            "UPDATE contacts SET age = 100 / (age - 30) WHERE age > $1 RETURNING id",
            &[Some("0")],
        ));
        same_answer(&mut p, &mut r, &m, "keyless UPDATE failing on one shard").await;
        assert_eq!(
            scalar(&client, "SELECT sum(age) FROM contacts").await,
            "142",
            "no shard keeps a change"
        );
    })
    .await
}

/// A statement pgproxy's parser cannot read: when PostgreSQL cannot parse it either, the client
/// gets PostgreSQL's own syntax error (42601), in and out of a transaction, exactly as from one
/// plain node; valid SQL pgproxy cannot route stays a 0A000 refusal and runs nowhere.
#[tokio::test]
async fn syntax_errors_are_postgresqls_own() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for sql in [
            "SELEKT 1",
            "INSERT INTO contacts (id, user_id VALUES (1, 2)",
        ] {
            let got = same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
            assert_eq!(got, ["Error 42601", "Ready I"], "{sql}");
        }
        let m = with_sync(pbde("SELEKT $1", &[Some("1")]));
        let got = same_answer(&mut p, &mut r, &m, "extended protocol").await;
        assert_eq!(got, ["Error 42601", "Ready I"]);
        same_answer(&mut p, &mut r, &wire::query("BEGIN"), "begin").await;
        let got = same_answer(&mut p, &mut r, &wire::query("SELEKT 1"), "in a transaction").await;
        assert_eq!(got, ["Error 42601", "Ready E"]);
        same_answer(&mut p, &mut r, &wire::query("ROLLBACK"), "rollback").await;
        let got = exchange(
            &mut p,
            &wire::query("SELECT xmlelement(name foo, 1) FROM contacts"),
        )
        .await;
        assert_eq!(got, ["Error 0A000", "Ready I"]);
        let got = exchange(&mut p, &wire::query("SELECT 1")).await;
        assert_eq!(got.last().map(String::as_str), Some("Ready I"));
    })
    .await
}

/// Found with psycopg 3 and pgjdbc (`setInt`): a key sent as a binary int2/int4 parameter for a
/// bigint key column was refused ("bigint needs 8 bytes, got 4") where PostgreSQL casts it;
/// an INSERT could not be placed at all. The declared parameter type tells its width.
#[tokio::test]
async fn binary_int4_and_int2_keys_route_like_int8() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let (a, b) = two_keys();
        let insert = "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'bin')";
        for (id, key) in [(1i64, a), (2, b)] {
            // id as int8, user_id as int4 (OIDs 20 and 23), both binary.
            let key4 = (key as i32).to_be_bytes();
            let id8 = id.to_be_bytes();
            let m = [
                wire::parse_typed("", insert, &[20, 23]),
                wire::bind_binary("", "", &[&id8, &key4]),
                wire::execute("", 0),
                wire::sync(),
            ]
            .concat();
            let got = same_answer(&mut p, &mut r, &m, "insert with an int4 key").await;
            assert_eq!(
                got,
                [
                    "ParseComplete",
                    "BindComplete",
                    "CommandComplete INSERT 0 1",
                    "Ready I"
                ]
            );
            assert_eq!(
                count_on(&c, shard_of(key), &format!("user_id = {key}")).await,
                1
            );
            assert_eq!(
                count_on(&c, 1 - shard_of(key), &format!("user_id = {key}")).await,
                0
            );
        }
        // A point read with an int2 key.
        let key2 = (b as i16).to_be_bytes();
        let m = [
            wire::parse_typed("", "SELECT name FROM contacts WHERE user_id = $1", &[21]),
            wire::bind_binary("", "", &[&key2]),
            wire::execute("", 0),
            wire::sync(),
        ]
        .concat();
        let got = same_answer(&mut p, &mut r, &m, "read with an int2 key").await;
        assert!(got.iter().any(|m| m.contains("bin")), "{got:?}");
    })
    .await
}

/// The rows of one extended-protocol read with every result column in `format`: each
/// DataRow's raw body and the CommandComplete tag (RowDescriptions differ in table oids).
async fn raw_rows(conn: &mut RawConn, sql: &str, format: i16) -> Vec<Vec<u8>> {
    use bytes::BufMut;
    let mut bind = bytes::BytesMut::new();
    bind.put_slice(b"\0\0");
    bind.put_i16(0);
    bind.put_i16(0);
    bind.put_i16(1);
    bind.put_i16(format);
    let m = [
        wire::parse("", sql),
        wire::message(b'B', &bind),
        wire::describe(b'P', ""),
        wire::execute("", 0),
        wire::sync(),
    ]
    .concat();
    conn.send(&m).await.expect("send");
    conn.until_ready_any()
        .await
        .iter()
        .filter(|m| matches!(m.tag, b'D' | b'C' | b'E'))
        .map(|m| [&[m.tag][..], &m.body[..]].concat())
        .collect()
}

/// pgjdbc asks for binary results once it prepared a statement on the server: a read merged
/// across shards now answers in binary (pgproxy encodes the merged text values), byte for
/// byte what one PostgreSQL sends. It was refused with 0A000.
#[tokio::test]
async fn merged_reads_in_binary_format_match_postgresql() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for sql in [
            "SELECT id, user_id, name, age FROM contacts ORDER BY id LIMIT 7",
            "SELECT count(*), sum(age), avg(age), min(name), max(id) FROM contacts",
            "SELECT user_id, count(*), sum(id) FROM contacts GROUP BY user_id ORDER BY user_id",
            "SELECT age::numeric / 3 AS third, now()::date - now()::date AS zero FROM contacts WHERE age IS NOT NULL ORDER BY id DESC LIMIT 3",
        ] {
            let want = raw_rows(&mut r, sql, 1).await;
            let got = raw_rows(&mut p, sql, 1).await;
            assert!(!want.is_empty() && want.iter().all(|m| m[0] != b'E'), "{sql}: {want:?}");
            assert_eq!(got, want, "{sql}: pgproxy (left) vs PostgreSQL (right)");
        }
        // A type pgproxy cannot encode is refused, and the session goes on.
        let got = raw_rows(&mut p, "SELECT point(age, age) FROM contacts ORDER BY id", 1).await;
        assert!(got.iter().any(|m| m[0] == b'E'), "{got:?}");
        let got = raw_rows(&mut p, "SELECT count(*) FROM contacts", 0).await;
        assert_eq!(got.first().map(|m| m[0]), Some(b'D'));
    })
    .await
}

/// sqlx runs every query as Parse (named) + Describe, then Bind + Execute + Close of the
/// unnamed portal + Sync. A read merged across shards and a write on several shards sent that
/// way were refused with 0A000 ("this combination of messages"); they answer as PostgreSQL
/// does, CloseComplete included.
#[tokio::test]
async fn a_portal_closed_after_its_execute_merges_and_writes_like_postgresql() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let close_portal = wire::message(b'C', b"P\0");
        for (name, sql, param) in [
            (
                "r1",
                "SELECT count(*), max(age) FROM contacts WHERE id > $1",
                "15",
            ),
            (
                "r2",
                "SELECT id, name FROM contacts WHERE id > $1 ORDER BY id LIMIT 4",
                "100",
            ),
            (
                "w1",
                "UPDATE contacts SET name = name || '!' WHERE id > $1",
                "150",
            ),
            ("w2", "DELETE FROM contacts WHERE id < $1", "40"),
        ] {
            let mut m = wire::parse(name, sql);
            m.extend(wire::describe(b'S', name));
            let m = with_sync(m);
            same_answer(&mut p, &mut r, &m, &format!("prepare {sql}")).await;
            let mut m = wire::bind("", name, &[Some(param)]);
            m.extend(wire::execute("", 0));
            m.extend(close_portal.clone());
            let got = same_answer(&mut p, &mut r, &with_sync(m), sql).await;
            assert!(got.contains(&"CloseComplete".to_string()), "{sql}: {got:?}");
        }
        let total = |s| count_on(&c, s, "name LIKE '%!'");
        assert_eq!(total(0).await + total(1).await, 17);
    })
    .await
}

/// A negative LIMIT or OFFSET across shards fails as in PostgreSQL (2201W / 2201X, OFFSET
/// checked first), as a literal or a parameter, and like any error aborts the transaction.
#[tokio::test]
async fn negative_limit_and_offset_fail_as_in_postgres() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, true).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for sql in [
            "SELECT id FROM contacts LIMIT -1",
            "SELECT id FROM contacts ORDER BY id LIMIT 2 OFFSET -1",
            "SELECT id FROM contacts ORDER BY id LIMIT -0",
        ] {
            let got = same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
            eprintln!("{sql}: {got:?}");
        }
        // Parameters: the counts are known at Bind, where pgproxy answers with the error
        // (PostgreSQL sends ParseComplete, BindComplete and the RowDescription first).
        let sql = "SELECT id FROM contacts ORDER BY id LIMIT $1 OFFSET $2";
        for params in [
            [Some("-1"), Some("1")],
            [Some("1"), Some("-1")],
            [Some("-1"), Some("-1")],
            [Some("2"), Some("1")],
        ] {
            let m = with_sync(pbde(sql, &params));
            let want = exchange(&mut r, &m).await;
            let got = exchange(&mut p, &m).await;
            let tail = |v: &[String]| v[v.len().saturating_sub(2)..].to_vec();
            assert_eq!(tail(&got), tail(&want), "{params:?}: {got:?} vs {want:?}");
        }
        // In a transaction: the error aborts it, as any error does.
        for step in [
            wire::query("BEGIN"),
            wire::query("SELECT id FROM contacts LIMIT -3"),
            wire::query("SELECT 1"),
            wire::query("ROLLBACK"),
        ] {
            same_answer(&mut p, &mut r, &step, "in a transaction").await;
        }
        same_answer(&mut p, &mut r, &wire::query("BEGIN"), "begin").await;
        let m = with_sync(pbde(sql, &[Some("-3"), None]));
        let (want, got) = (exchange(&mut r, &m).await, exchange(&mut p, &m).await);
        assert_eq!(got.last(), want.last(), "{got:?} vs {want:?}");
        for step in [wire::query("SELECT 1"), wire::query("ROLLBACK")] {
            same_answer(&mut p, &mut r, &step, "after the error").await;
        }
    })
    .await
}

/// A merged read (no key) with a row limit on its Execute, alone in its request (asyncpg's
/// fetchrow / fetchval ask for one row): the first rows, then PortalSuspended when the limit
/// is reached, CommandComplete when not; as PostgreSQL answers.
#[tokio::test]
async fn merged_read_with_a_row_limit_answers_like_postgresql() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        setup_both(&c, &reference, false).await;
        seed_rows(&c, &reference, 3).await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for (sql, limit) in [
            ("SELECT count(*) FROM contacts", 1),
            ("SELECT id FROM contacts ORDER BY id", 1),
            ("SELECT id FROM contacts ORDER BY id", 6),
            ("SELECT id FROM contacts ORDER BY id", 7),
            ("SELECT id FROM contacts ORDER BY id LIMIT 2", 2),
            ("SELECT id FROM contacts ORDER BY id LIMIT 2", 5),
            (
                "SELECT user_id, count(*) FROM contacts GROUP BY user_id ORDER BY 1",
                1,
            ),
        ] {
            let mut m = wire::parse("", sql);
            m.extend(wire::bind("", "", &[]));
            m.extend(wire::describe(b'P', ""));
            m.extend(wire::execute("", limit));
            same_answer(
                &mut p,
                &mut r,
                &with_sync(m),
                &format!("{sql}, {limit} rows"),
            )
            .await;
        }
    })
    .await
}

/// Text is merged in byte order; a collation that orders otherwise must not be merged by
/// bytes: a COLLATE in the query, or a column (or domain) of such a collation in the
/// database, is refused (0A000) where the merge compares text; with neither, the answer is
/// PostgreSQL's.
#[tokio::test]
async fn text_of_another_collation_is_not_merged_in_byte_order() {
    within(120, "test", async {
        let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
        let (client, direct) = setup_both(&c, &reference, false).await;
        // 'B' < 'a' in byte order, 'a' < 'B' in any language's.
        for (u, name) in [
            (1i64, "a"),
            (2, "B"),
            (3, "c"),
            (4, "D"),
            (5, "e"),
            (6, "F"),
        ] {
            let sql = format!(
                "INSERT INTO contacts (id, user_id, name, age) VALUES ({u}, {u}, '{name}', {u})"
            );
            client.simple_query(&sql).await.expect("insert");
            direct.simple_query(&sql).await.expect("insert");
        }
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let merged = [
            "SELECT name FROM contacts ORDER BY name",
            "SELECT min(name), max(name) FROM contacts",
        ];
        for sql in merged {
            same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
        }
        for sql in [
            "SELECT max(name COLLATE \"und-x-icu\") FROM contacts",
            "SELECT name COLLATE \"und-x-icu\" AS n FROM contacts ORDER BY n",
            "SELECT upper(name COLLATE \"und-x-icu\") FROM contacts ORDER BY 1",
        ] {
            let got = exchange(&mut p, &wire::query(sql)).await;
            assert!(got.contains(&"Error 0A000".to_string()), "{sql}: {got:?}");
        }
        // A column of an ICU collation anywhere in the database: text is no longer merged by
        // order (a new session asks again).
        client
            .simple_query("ALTER TABLE contacts ADD COLUMN nick text COLLATE \"und-x-icu\"")
            .await
            .expect("add column");
        let mut p = raw_proxy(&c).await;
        for sql in merged {
            let got = exchange(&mut p, &wire::query(sql)).await;
            assert!(got.contains(&"Error 0A000".to_string()), "{sql}: {got:?}");
        }
        // Merges that compare no text still run.
        let got = exchange(&mut p, &wire::query("SELECT count(*) FROM contacts")).await;
        assert!(got.iter().any(|s| s.contains("6")), "{got:?}");
        client
            .simple_query("ALTER TABLE contacts DROP COLUMN nick")
            .await
            .expect("drop column");
        let mut p = raw_proxy(&c).await;
        for sql in merged {
            same_answer(&mut p, &mut r, &wire::query(sql), sql).await;
        }
        // A nondeterministic (case-insensitive) collation: 'a' and 'A' are one group in
        // PostgreSQL, two byte strings in pgproxy's merge: grouping text is refused.
        let grouped = [
            "SELECT name, count(*) FROM contacts GROUP BY name",
            "SELECT DISTINCT name FROM contacts",
        ];
        for sql in grouped {
            let got = exchange(&mut p, &wire::query(sql)).await;
            assert!(!got.iter().any(|s| s.starts_with("Error")), "{sql}: {got:?}");
        }
        client
            .batch_execute(
                "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false); \
                 ALTER TABLE contacts ADD COLUMN nick text COLLATE ci",
            )
            .await
            .expect("nondeterministic collation");
        let mut p = raw_proxy(&c).await;
        for sql in grouped {
            let got = exchange(&mut p, &wire::query(sql)).await;
            assert!(got.contains(&"Error 0A000".to_string()), "{sql}: {got:?}");
        }
        let got = exchange(&mut p, &wire::query("SELECT count(*) FROM contacts")).await;
        assert!(got.iter().any(|s| s.contains("6")), "{got:?}");
    })
    .await
}
