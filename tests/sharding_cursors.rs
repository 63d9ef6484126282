//! What ORMs and drivers do through a sharded pgproxy (2 shards of one node, `contacts`
//! sharded by `user_id` with hash), against real PostgreSQL: SQL-level cursors (Django's
//! `.iterator()`, SQLAlchemy's `stream_results`, psycopg's named cursors) for keys on either
//! shard, pgproxy's own refusals inside a client transaction (which abort it, as any error
//! does in PostgreSQL), and asyncpg's prepare (Parse/Describe/Flush) before a statement for a
//! key on another shard.
//!
//! Each exchange is compared with the same bytes sent to one plain PostgreSQL holding all the
//! rows, or checked on the shards' nodes directly.

mod common;

use common::sharded::ShardedCluster;
use common::wire::{self, Msg, RawConn};
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

/// A key of shard `s` (of 2).
fn key_on(s: usize) -> i64 {
    (1..).find(|&k| shard_of(k) == s).expect("key")
}

const SCHEMA: &str = "CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, \
     name text)";

/// 3 contacts for each of users 1..=10 (both shards).
fn seed_sql() -> Vec<String> {
    (1..=10i64)
        .map(|u| {
            let rows: Vec<String> = (0..3i64)
                .map(|k| format!("({}, {u}, 'n{}')", u * 10 + k, u * 10 + k))
                .collect();
            format!(
                "INSERT INTO contacts (id, user_id, name) VALUES {}",
                rows.join(", ")
            )
        })
        .collect()
}

/// A sharded cluster and a reference node, both with the schema and the seed rows.
async fn setup() -> (ShardedCluster, PgNode) {
    let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let direct = connect(reference.port(), "app", "secret", "app")
        .await
        .expect("connect to the reference");
    direct.batch_execute(SCHEMA).await.expect("schema");
    for sql in seed_sql() {
        client.simple_query(&sql).await.expect("seed via pgproxy");
        direct.simple_query(&sql).await.expect("seed reference");
    }
    (c, reference)
}

async fn raw_proxy(c: &ShardedCluster) -> RawConn {
    RawConn::login_password(c.proxy.port(), "app", "secret", "app").await
}

async fn raw_node(n: &PgNode) -> RawConn {
    RawConn::login_password(n.port(), "app", "secret", "app").await
}

/// A comparable form of one backend message.
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
        b't' => "ParameterDescription".into(),
        b'T' => "RowDescription".into(),
        b'D' => format!("DataRow {:?}", wire::data_row(&m.body)),
        b'C' => format!("CommandComplete {}", cstr(&m.body)),
        b'E' => {
            let f = wire::error_fields(&m.body);
            format!("Error {}", f.get(&b'C').cloned().unwrap_or_default())
        }
        b'N' | b'S' | b'A' => return None,
        t => format!("'{}'", t as char),
    })
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

async fn exchange(conn: &mut RawConn, bytes: &[u8]) -> Vec<String> {
    conn.send(bytes).await.expect("send");
    read_ready(conn).await
}

/// The same bytes to pgproxy and to the reference: equal answers; returns pgproxy's.
async fn same_answer(p: &mut RawConn, r: &mut RawConn, bytes: &[u8], what: &str) -> Vec<String> {
    let want = exchange(r, bytes).await;
    let got = exchange(p, bytes).await;
    assert_eq!(got, want, "{what}: pgproxy (left) vs PostgreSQL (right)");
    got
}

/// Simple queries, each answered by pgproxy as by PostgreSQL.
async fn same_queries(p: &mut RawConn, r: &mut RawConn, sqls: &[String]) {
    for sql in sqls {
        same_answer(p, r, &wire::query(sql), sql).await;
    }
}

fn with_sync(mut m: Vec<u8>) -> Vec<u8> {
    m.extend(wire::sync());
    m
}

/// Rows of `key` live on its shard only (so an answer with them came from that shard).
async fn assert_placed(c: &ShardedCluster, key: i64) {
    let sql = format!("SELECT count(*) FROM contacts WHERE user_id = {key}");
    let s = shard_of(key);
    assert_eq!(
        c.shard_scalar(s, &sql).await,
        "3",
        "rows of {key} on its shard"
    );
    assert_eq!(
        c.shard_scalar(1 - s, &sql).await,
        "0",
        "rows of {key} elsewhere"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Cursors
// ---------------------------------------------------------------------------------------------

/// Django's `.iterator()` outside a transaction: a WITH HOLD cursor, fetched and closed; then
/// the session goes on to the other shard.
#[tokio::test]
async fn with_hold_cursor_on_either_shard() {
    within(120, "test", async {
        let (c, reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        for s in [1, 0, 1] {
            let key = key_on(s);
            let other = key_on(1 - s);
            assert_placed(&c, key).await;
            same_queries(
                &mut p,
                &mut r,
                &[
                    format!("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT user_id, id FROM contacts WHERE user_id = {key} ORDER BY id"),
                    "FETCH FORWARD 2 FROM c".into(),
                    "MOVE FORWARD 0 IN C".into(),
                    "FETCH FORWARD 10 FROM c".into(),
                    "CLOSE c".into(),
                    // The cursor is gone: the session is free to move.
                    format!("SELECT count(*) FROM contacts WHERE user_id = {other}"),
                    "FETCH 1 FROM c".into(),
                ],
            )
            .await;
        }
        // DISCARD ALL forgets the cursors too.
        let key = key_on(1);
        same_queries(
            &mut p,
            &mut r,
            &[
                format!("DECLARE d CURSOR WITH HOLD FOR SELECT id FROM contacts WHERE user_id = {key} ORDER BY id"),
                "DISCARD ALL".into(),
                format!("SELECT count(*) FROM contacts WHERE user_id = {}", key_on(0)),
                "FETCH 1 FROM d".into(),
            ],
        )
        .await;
        // A cursor over every shard stays refused.
        let got = exchange(
            &mut p,
            &wire::query("DECLARE e CURSOR WITH HOLD FOR SELECT id FROM contacts ORDER BY id"),
        )
        .await;
        assert_eq!(got, ["Error 0A000", "Ready I"]);
    })
    .await
}

/// Cursors inside a transaction (no HOLD), with names as PostgreSQL compares them (unquoted
/// folded to lowercase, quoted exact), a trip of the transaction to the other shard between
/// fetches, CLOSE ALL; gone after COMMIT.
#[tokio::test]
async fn cursors_in_a_transaction_follow_their_shard() {
    within(120, "test", async {
        let (c, reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let (k0, k1) = (key_on(0), key_on(1));
        same_queries(
            &mut p,
            &mut r,
            &[
                "BEGIN".into(),
                format!("DECLARE Cur CURSOR FOR SELECT id FROM contacts WHERE user_id = {k1} ORDER BY id"),
                "FETCH 1 FROM cur".into(),
                format!("SELECT count(*) FROM contacts WHERE user_id = {k0}"),
                "FETCH 1 FROM CUR".into(),
                format!("DECLARE \"Other\" CURSOR FOR SELECT id FROM contacts WHERE user_id = {k0} ORDER BY id"),
                "FETCH ALL FROM \"Other\"".into(),
                "FETCH 5 IN cur".into(),
                "CLOSE \"Other\"".into(),
                "CLOSE ALL".into(),
                "COMMIT".into(),
                "FETCH 1 FROM cur".into(),
            ],
        )
        .await;
        // The name of a quoted cursor is not folded.
        same_queries(
            &mut p,
            &mut r,
            &[
                "BEGIN".into(),
                format!("DECLARE \"Q\" CURSOR FOR SELECT id FROM contacts WHERE user_id = {k1} ORDER BY id"),
                "FETCH 1 FROM \"Q\"".into(),
                "FETCH 1 FROM q".into(),
                "ROLLBACK".into(),
            ],
        )
        .await;
        // CLOSE ALL with cursors on both shards: refused (close them by name).
        for sql in [
            "BEGIN".to_string(),
            format!("DECLARE a CURSOR FOR SELECT id FROM contacts WHERE user_id = {k1}"),
            format!("DECLARE b CURSOR FOR SELECT id FROM contacts WHERE user_id = {k0}"),
        ] {
            assert_eq!(exchange(&mut p, &wire::query(&sql)).await, ["CommandComplete ".to_string() + if sql == "BEGIN" { "BEGIN" } else { "DECLARE CURSOR" }, "Ready T".into()]);
        }
        let got = exchange(&mut p, &wire::query("CLOSE ALL")).await;
        assert_eq!(got[0], "Error 0A000", "{got:?}");
        exchange(&mut p, &wire::query("ROLLBACK")).await;
    })
    .await
}

/// psycopg's named cursors: DECLARE "name" CURSOR WITHOUT HOLD FOR … with parameters in the
/// extended protocol, Describe of the cursor's portal, FETCH FORWARD n FROM "name", CLOSE
/// "name"; keys on both shards, within one transaction.
#[tokio::test]
async fn psycopg_named_cursors() {
    within(120, "test", async {
        let (c, reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        same_answer(&mut p, &mut r, &wire::query("BEGIN"), "begin").await;
        for (name, key) in [("_pg3_1", key_on(1)), ("_pg3_2", key_on(0))] {
            let declare = format!(
                "DECLARE \"{name}\" CURSOR WITHOUT HOLD FOR SELECT user_id, id FROM contacts WHERE user_id = $1 ORDER BY id"
            );
            let mut m = wire::parse("", &declare);
            m.extend(wire::bind("", "", &[Some(&key.to_string())]));
            m.extend(wire::execute("", 0));
            same_answer(&mut p, &mut r, &with_sync(m), "declare").await;
            let m = wire::describe(b'P', name);
            same_answer(&mut p, &mut r, &with_sync(m), "describe the cursor").await;
            for _ in 0..3 {
                let mut m = wire::parse("", &format!("FETCH FORWARD 2 FROM \"{name}\""));
                m.extend(wire::bind("", "", &[]));
                m.extend(wire::execute("", 0));
                same_answer(&mut p, &mut r, &with_sync(m), "fetch").await;
            }
        }
        for name in ["_pg3_1", "_pg3_2"] {
            let mut m = wire::parse("", &format!("CLOSE \"{name}\""));
            m.extend(wire::bind("", "", &[]));
            m.extend(wire::execute("", 0));
            same_answer(&mut p, &mut r, &with_sync(m), "close").await;
        }
        same_answer(&mut p, &mut r, &wire::query("COMMIT"), "commit").await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 2. A refusal inside a transaction aborts it
// ---------------------------------------------------------------------------------------------

/// Ids of the rows these tests insert are offset past the seed rows' ids.
const OFFSET: i64 = 5000;

fn insert(id: i64, key: i64) -> String {
    let id = id + OFFSET;
    format!("INSERT INTO contacts (id, user_id, name) VALUES ({id}, {key}, 'kept?')")
}

const NO_KEY: &str = "INSERT INTO contacts (id, name) VALUES (999, 'nokey')";

/// Rows with `id` on each shard.
async fn ids_on(c: &ShardedCluster, id: i64) -> (String, String) {
    let sql = format!("SELECT count(*) FROM contacts WHERE id = {}", id + OFFSET);
    (c.shard_scalar(0, &sql).await, c.shard_scalar(1, &sql).await)
}

async fn no_open_transactions(c: &ShardedCluster) {
    for node in c.all_nodes() {
        eventually(5, "no transaction left open on a node", || async {
            let n: i64 = node
                .scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app' \
                     AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()",
                )
                .await
                .parse()
                .expect("count");
            (n == 0).then_some(())
        })
        .await;
    }
}

/// Simple protocol, on one shard and across both: after pgproxy's 0A000 the transaction is
/// aborted (ReadyForQuery 'E', 25P02 for what follows), COMMIT answers ROLLBACK, nothing is
/// kept.
#[tokio::test]
async fn refusal_aborts_the_transaction_simple() {
    within(120, "test", async {
        let (c, _reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let (k0, k1) = (key_on(0), key_on(1));
        for (first, second, end) in [
            (insert(101, k1), None, "COMMIT"),
            (insert(102, k0), Some(insert(103, k1)), "COMMIT"),
            (insert(104, k1), Some(insert(105, k0)), "ROLLBACK"),
        ] {
            assert_eq!(exchange(&mut p, &wire::query("BEGIN")).await[1], "Ready T");
            let got = exchange(&mut p, &wire::query(&first)).await;
            assert_eq!(got, ["CommandComplete INSERT 0 1", "Ready T"]);
            if let Some(second) = &second {
                let got = exchange(&mut p, &wire::query(second)).await;
                assert_eq!(got, ["CommandComplete INSERT 0 1", "Ready T"]);
            }
            let got = exchange(&mut p, &wire::query(NO_KEY)).await;
            assert_eq!(got, ["Error 0A000", "Ready E"], "the refusal");
            for sql in [
                format!("SELECT count(*) FROM contacts WHERE user_id = {k1}"),
                format!("SELECT count(*) FROM contacts WHERE user_id = {k0}"),
                "SELECT 1".into(),
                insert(106, k1),
            ] {
                let got = exchange(&mut p, &wire::query(&sql)).await;
                assert_eq!(got, ["Error 25P02", "Ready E"], "{sql}");
            }
            let got = exchange(&mut p, &wire::query(end)).await;
            assert_eq!(got, ["CommandComplete ROLLBACK", "Ready I"], "{end}");
            // The session goes on.
            let got = exchange(&mut p, &wire::query("SELECT 1")).await;
            assert_eq!(
                got,
                [
                    "RowDescription",
                    "DataRow [Some(\"1\")]",
                    "CommandComplete SELECT 1",
                    "Ready I"
                ]
            );
        }
        for id in 101..=106 {
            assert_eq!(ids_on(&c, id).await, ("0".into(), "0".into()), "row {id}");
        }
        no_open_transactions(&c).await;
    })
    .await
}

/// The same in the extended protocol (the refused statement, then a read and COMMIT).
#[tokio::test]
async fn refusal_aborts_the_transaction_extended() {
    within(120, "test", async {
        let (c, _reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let k1 = key_on(1);
        let pbe = |sql: &str| {
            let mut m = wire::parse("", sql);
            m.extend(wire::bind("", "", &[]));
            m.extend(wire::execute("", 0));
            with_sync(m)
        };
        assert_eq!(
            exchange(&mut p, &pbe("BEGIN")).await,
            [
                "ParseComplete",
                "BindComplete",
                "CommandComplete BEGIN",
                "Ready T"
            ]
        );
        let got = exchange(&mut p, &pbe(&insert(201, k1))).await;
        assert_eq!(
            got,
            [
                "ParseComplete",
                "BindComplete",
                "CommandComplete INSERT 0 1",
                "Ready T"
            ]
        );
        let got = exchange(&mut p, &pbe(NO_KEY)).await;
        assert_eq!(got, ["Error 0A000", "Ready E"]);
        let got = exchange(
            &mut p,
            &pbe(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {k1}"
            )),
        )
        .await;
        assert_eq!(got, ["Error 25P02", "Ready E"]);
        let got = exchange(&mut p, &pbe("COMMIT")).await;
        assert_eq!(
            got,
            [
                "ParseComplete",
                "BindComplete",
                "CommandComplete ROLLBACK",
                "Ready I"
            ]
        );
        assert_eq!(ids_on(&c, 201).await, ("0".into(), "0".into()));
        no_open_transactions(&c).await;
    })
    .await
}

/// A savepoint set before the refusal: ROLLBACK TO SAVEPOINT recovers, as in PostgreSQL, and
/// what ran before the savepoint and after the recovery commits.
#[tokio::test]
async fn refusal_then_rollback_to_savepoint() {
    within(120, "test", async {
        let (c, _reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let k1 = key_on(1);
        for (sql, want) in [
            (
                "BEGIN".to_string(),
                vec!["CommandComplete BEGIN", "Ready T"],
            ),
            (
                insert(301, k1),
                vec!["CommandComplete INSERT 0 1", "Ready T"],
            ),
            (
                "SAVEPOINT s".into(),
                vec!["CommandComplete SAVEPOINT", "Ready T"],
            ),
            (
                insert(302, k1),
                vec!["CommandComplete INSERT 0 1", "Ready T"],
            ),
            (NO_KEY.into(), vec!["Error 0A000", "Ready E"]),
            ("SELECT 1".into(), vec!["Error 25P02", "Ready E"]),
            (
                "ROLLBACK TO SAVEPOINT s".into(),
                vec!["CommandComplete ROLLBACK", "Ready T"],
            ),
            (
                insert(303, k1),
                vec!["CommandComplete INSERT 0 1", "Ready T"],
            ),
            ("COMMIT".into(), vec!["CommandComplete COMMIT", "Ready I"]),
        ] {
            let got = exchange(&mut p, &wire::query(&sql)).await;
            assert_eq!(got, want, "{sql}");
        }
        let want = |n: &str| {
            if shard_of(k1) == 0 {
                (n.to_string(), "0".to_string())
            } else {
                ("0".to_string(), n.to_string())
            }
        };
        assert_eq!(ids_on(&c, 301).await, want("1"));
        assert_eq!(ids_on(&c, 302).await, want("0"));
        assert_eq!(ids_on(&c, 303).await, want("1"));
        no_open_transactions(&c).await;
    })
    .await
}

/// One replicated shard (2 nodes): pgproxy's refusal of a nondeterministic write inside
/// BEGIN … COMMIT aborts the transaction too; nothing is kept on either node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_on_a_replicated_shard_aborts_the_transaction() {
    within(120, "test", async {
        let cl = common::cluster::ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        c.batch_execute(
            "CREATE TABLE jobs (id int PRIMARY KEY, taken bool NOT NULL DEFAULT false)",
        )
        .await
        .expect("schema");
        c.batch_execute("INSERT INTO jobs (id) SELECT g FROM generate_series(1, 5) g")
            .await
            .expect("seed");
        let mut p = RawConn::login_password(cl.port(), "app", "secret", "app").await;
        for (sql, want) in [
            ("BEGIN", vec!["CommandComplete BEGIN", "Ready T"]),
            (
                "INSERT INTO jobs (id) VALUES (6)",
                vec!["CommandComplete INSERT 0 1", "Ready T"],
            ),
            (
                "UPDATE jobs SET taken = true WHERE id IN (SELECT id FROM jobs LIMIT 1)",
                vec!["Error 0A000", "Ready E"],
            ),
            ("SELECT count(*) FROM jobs", vec!["Error 25P02", "Ready E"]),
            ("COMMIT", vec!["CommandComplete ROLLBACK", "Ready I"]),
        ] {
            let got = exchange(&mut p, &wire::query(sql)).await;
            assert_eq!(got, want, "{sql}");
        }
        for node in cl.all() {
            assert_eq!(node.scalar("SELECT count(*) FROM jobs").await, "5");
        }
        cl.assert_identical(&["jobs"]).await;
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// 3. asyncpg: prepare with Parse/Describe/Flush, then execute for a key on another shard
// ---------------------------------------------------------------------------------------------

/// Reads until a message with tag `tag` arrives (inclusive).
async fn read_until(conn: &mut RawConn, tag: u8) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = conn.recv().await.expect("connection closed");
        if let Some(s) = show(&m) {
            out.push(s);
        }
        if m.tag == tag {
            return out;
        }
    }
}

/// asyncpg's `fetchval(sql, key)` outside a transaction: Parse + Describe statement + Flush
/// (on whatever shard the session is on), then Bind + Execute + Sync for a key of the other
/// shard, named and unnamed statements, answered as PostgreSQL answers; no transaction left
/// open. A pipeline that executed something before its Flush stays refused
/// (`sharding_edges::flush_then_sync_for_another_shard`).
#[tokio::test]
async fn prepare_with_flush_then_execute_on_another_shard() {
    within(120, "test", async {
        let (c, reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let sql = "SELECT count(*), min(id) FROM contacts WHERE user_id = $1";
        let mut round = 0;
        for (here, there) in [(0, 1), (1, 0), (1, 1), (0, 1)] {
            for name in ["__asyncpg_stmt_1__", ""] {
                round += 1;
                let (k_here, k_there) = (key_on(here), key_on(there));
                // Put the session on shard `here`.
                let q = wire::query(&format!(
                    "SELECT count(*) FROM contacts WHERE user_id = {k_here}"
                ));
                same_answer(&mut p, &mut r, &q, "warm up").await;
                let name = if name.is_empty() {
                    String::new()
                } else {
                    format!("{name}{round}")
                };
                let mut m = wire::parse(&name, sql);
                m.extend(wire::describe(b'S', &name));
                m.extend(wire::flush());
                r.send(&m).await.expect("send");
                let want = read_until(&mut r, b'T').await;
                p.send(&m).await.expect("send");
                let got = read_until(&mut p, b'T').await;
                assert_eq!(got, want, "prepare");
                let key = k_there.to_string();
                let mut m = wire::bind("", &name, &[Some(&key)]);
                m.extend(wire::execute("", 0));
                let got = same_answer(&mut p, &mut r, &with_sync(m), "execute").await;
                assert!(got.contains(&"Ready I".to_string()), "{got:?}");
                assert!(!got.iter().any(|s| s.starts_with("Error")), "{got:?}");
            }
        }
        no_open_transactions(&c).await;
    })
    .await
}

/// The same inside a transaction (SQLAlchemy's async engine over asyncpg: BEGIN, then each
/// statement prepared with Parse/Describe/Flush): the batch ends on the old shard, the
/// transaction moves to (or spans) the new one, and commits; rows land on their key's shard.
#[tokio::test]
async fn prepare_with_flush_in_a_transaction_then_execute_on_another_shard() {
    within(120, "test", async {
        let (c, reference) = setup().await;
        let mut p = raw_proxy(&c).await;
        let mut r = raw_node(&reference).await;
        let sql = "SELECT count(*), min(id) FROM contacts WHERE user_id = $1";
        for (round, (here, there)) in [(0, 1), (1, 0)].into_iter().enumerate() {
            let (k_here, k_there) = (key_on(here), key_on(there));
            same_answer(&mut p, &mut r, &wire::query("BEGIN"), "begin").await;
            let q = wire::query(&format!(
                "SELECT count(*) FROM contacts WHERE user_id = {k_here}"
            ));
            same_answer(&mut p, &mut r, &q, "first statement").await;
            let name = format!("__asyncpg_stmt_tx_{round}__");
            let mut m = wire::parse(&name, sql);
            m.extend(wire::describe(b'S', &name));
            m.extend(wire::flush());
            r.send(&m).await.expect("send");
            let want = read_until(&mut r, b'T').await;
            p.send(&m).await.expect("send");
            let got = read_until(&mut p, b'T').await;
            assert_eq!(got, want, "prepare");
            let key = k_there.to_string();
            let mut m = wire::bind("", &name, &[Some(&key)]);
            m.extend(wire::execute("", 0));
            let got = same_answer(&mut p, &mut r, &with_sync(m), "execute").await;
            assert!(got.contains(&"Ready T".to_string()), "{got:?}");
            assert!(!got.iter().any(|s| s.starts_with("Error")), "{got:?}");
            let got = same_answer(&mut p, &mut r, &wire::query("COMMIT"), "commit").await;
            assert!(got.contains(&"Ready I".to_string()), "{got:?}");
        }
        no_open_transactions(&c).await;
    })
    .await
}
