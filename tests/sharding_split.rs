//! Multi-row INSERTs whose rows belong to several shards, split into one INSERT per shard, as
//! ORMs send them: parameters (knex, TypeORM, Sequelize: `VALUES ($1, $2), ($3, $4) RETURNING
//! "id"`), literal rows with RETURNING (node-postgres, psycopg), in and out of transactions.
//! Rows are checked directly on every node: each on its key's shard only, RETURNING rows in
//! VALUES order.

mod common;

use common::sharded::ShardedCluster;
use common::wire::{self, Msg, RawConn};
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64, shards: u64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), shards) as usize
}

/// The first `n` keys of shard `s` (of `shards`).
fn keys_on(s: usize, shards: u64, n: usize) -> Vec<i64> {
    (1..)
        .filter(|&k| shard_of(k, shards) == s)
        .take(n)
        .collect()
}

const SCHEMA: &str = "CREATE TABLE contacts (id bigserial, user_id bigint NOT NULL, \
     name text, tag text, PRIMARY KEY (id, user_id))";

/// `user_id:name` of every contact on shard `s` (every node agreeing), by name.
async fn rows_on(c: &ShardedCluster, s: usize) -> String {
    c.shard_scalar(
        s,
        "SELECT coalesce(string_agg(user_id || ':' || name, ',' ORDER BY name), '') FROM contacts",
    )
    .await
}

/// Checks that each (id, user_id, name) returned is the row with that id on its key's shard.
async fn check_ids(c: &ShardedCluster, shards: u64, returned: &[(i64, i64, String)]) {
    for (id, user_id, name) in returned {
        let s = shard_of(*user_id, shards);
        let got = c
            .shard_scalar(
                s,
                &format!("SELECT name FROM contacts WHERE id = {id} AND user_id = {user_id}"),
            )
            .await;
        assert_eq!(&got, name, "row {id} of user {user_id} on shard {s}");
    }
}

fn returned(rows: &[tokio_postgres::Row]) -> Vec<(i64, i64, String)> {
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn raw(c: &ShardedCluster) -> RawConn {
    RawConn::login_password(c.proxy.port(), "app", "secret", "app").await
}

fn tags(msgs: &[Msg]) -> Vec<char> {
    msgs.iter().map(|m| m.tag as char).collect()
}

fn command_tag(msgs: &[Msg]) -> String {
    let m = msgs
        .iter()
        .find(|m| m.tag == b'C')
        .expect("CommandComplete");
    String::from_utf8_lossy(&m.body[..m.body.len() - 1]).into_owned()
}

#[tokio::test]
async fn extended_insert_with_parameters_and_returning_across_two_shards() {
    within(180, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = (keys_on(0, 2, 3), keys_on(1, 2, 2));
        // tokio-postgres: a named prepared statement, binary int8 keys (TypeORM / knex shape).
        let sql = "insert into \"contacts\" (\"name\",\"user_id\") values ($1, $2), ($3, $4), ($5, $6), ($7, $8), ($9, $10) \
                   returning \"id\", \"user_id\", \"name\"";
        let rows = client
            .query(
                sql,
                &[
                    &"a1", &a[0], &"b1", &b[0], &"a2", &a[1], &"a3", &a[2], &"b2", &b[1],
                ],
            )
            .await
            .expect("split INSERT with parameters and RETURNING");
        let got = returned(&rows);
        let order: Vec<(i64, String)> = got.iter().map(|r| (r.1, r.2.clone())).collect();
        assert_eq!(
            order,
            vec![
                (a[0], "a1".into()),
                (b[0], "b1".into()),
                (a[1], "a2".into()),
                (a[2], "a3".into()),
                (b[1], "b2".into()),
            ],
            "RETURNING rows in VALUES order"
        );
        // Each shard's sequence numbered its own rows in order.
        let ids: Vec<i64> = got.iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![1, 1, 2, 3, 2]);
        check_ids(&c, 2, &got).await;
        assert_eq!(
            rows_on(&c, 0).await,
            format!("{}:a1,{}:a2,{}:a3", a[0], a[1], a[2])
        );
        assert_eq!(rows_on(&c, 1).await, format!("{}:b1,{}:b2", b[0], b[1]));
        // query_typed: Parse with declared types, Bind, Describe, Execute, Sync in one request.
        let rows = client
            .query_typed(
                "INSERT INTO contacts (user_id, name) VALUES ($1, $2), ($3, $4) RETURNING id, user_id, name",
                &[
                    (&b[0], tokio_postgres::types::Type::INT8),
                    (&"b3", tokio_postgres::types::Type::TEXT),
                    (&a[0], tokio_postgres::types::Type::INT8),
                    (&"a4", tokio_postgres::types::Type::TEXT),
                ],
            )
            .await
            .expect("query_typed split");
        let got = returned(&rows);
        assert_eq!(
            got.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["b3", "a4"]
        );
        check_ids(&c, 2, &got).await;
        // execute: the summed row count.
        let n = client
            .execute(
                "INSERT INTO contacts (user_id, name) VALUES ($1, $2), ($3, $4), ($5, $6)",
                &[&a[1], &"a5", &b[1], &"b4", &a[2], &"a6"],
            )
            .await
            .expect("split without RETURNING");
        assert_eq!(n, 3);
        assert_eq!(
            rows_on(&c, 1).await,
            format!("{}:b1,{}:b2,{}:b3,{}:b4", b[0], b[1], b[0], b[1])
        );
        assert!(!rows_on(&c, 0).await.contains('b'));
        assert!(!rows_on(&c, 1).await.contains('a'));
    })
    .await;
}

/// node-postgres / knex: an unnamed statement without declared types, Parse + Bind + Describe
/// portal + Execute + Sync in one request, text parameters; a parameter written twice makes
/// pgproxy describe the whole statement for its types first.
#[tokio::test]
async fn untyped_unnamed_statement_as_node_postgres_sends_it() {
    within(180, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = (keys_on(0, 2, 1)[0].to_string(), keys_on(1, 2, 1)[0].to_string());
        let mut conn = raw(&c).await;
        let run = |sql: &'static str, params: Vec<Option<String>>| {
            let mut req = wire::parse("", sql);
            let p: Vec<Option<&str>> = params.iter().map(|p| p.as_deref()).collect();
            req.extend(wire::bind("", "", &p));
            req.extend(wire::describe(b'P', ""));
            req.extend(wire::execute("", 0));
            req.extend(wire::sync());
            req
        };
        for (sql, params) in [
            (
                "insert into \"contacts\" (\"name\",\"user_id\") values ($1, $2), ($3, $4) returning \"id\", \"name\"",
                vec![Some("b1".to_string()), Some(b.clone()), Some("a1".into()), Some(a.clone())],
            ),
            // $3 (the tag) twice, once per shard: described first.
            (
                "insert into \"contacts\" (\"name\",\"user_id\",\"tag\") values ($1, $2, $3), ($4, $5, $3) returning \"id\", \"name\"",
                vec![Some("a2".into()), Some(a.clone()), Some("t".into()), Some("b2".into()), Some(b.clone())],
            ),
        ] {
            conn.send(&run(sql, params)).await.expect("send");
            let msgs = conn.until_ready().await;
            assert_eq!(tags(&msgs), vec!['1', '2', 'T', 'D', 'D', 'C'], "{sql}");
            assert_eq!(command_tag(&msgs), "INSERT 0 2");
            let names: Vec<String> = wire::rows(&msgs)
                .into_iter()
                .map(|r| r[1].clone().unwrap_or_default())
                .collect();
            let want = if sql.contains("tag") { ["a2", "b2"] } else { ["b1", "a1"] };
            assert_eq!(names, want);
        }
        assert_eq!(rows_on(&c, 0).await, format!("{a}:a1,{a}:a2"));
        assert_eq!(rows_on(&c, 1).await, format!("{b}:b1,{b}:b2"));
        assert_eq!(c.shard_scalar(0, "SELECT count(*) FROM contacts WHERE tag = 't'").await, "1");
        assert_eq!(c.shard_scalar(1, "SELECT count(*) FROM contacts WHERE tag = 't'").await, "1");
        // Describe of the statement before its Bind, in the same request: ParameterDescription
        // of the whole statement (4 parameters), the columns, then BindComplete.
        let mut req = wire::parse(
            "",
            "insert into contacts (name, user_id) values ($1, $2), ($3, $4) returning name",
        );
        req.extend(wire::describe(b'S', ""));
        req.extend(wire::bind(
            "",
            "",
            &[Some("a3"), Some(&a), Some("b3"), Some(&b)],
        ));
        req.extend(wire::execute("", 0));
        req.extend(wire::sync());
        conn.send(&req).await.expect("send");
        let msgs = conn.until_ready().await;
        assert_eq!(tags(&msgs), vec!['1', 't', 'T', '2', 'D', 'D', 'C']);
        let pd = &msgs[1].body;
        assert_eq!(&pd[..2], &[0, 4], "four parameters");
        assert_eq!(&pd[2..6], &25u32.to_be_bytes(), "$1 text");
        assert_eq!(&pd[6..10], &20u32.to_be_bytes(), "$2 int8");
        assert_eq!(command_tag(&msgs), "INSERT 0 2");
        conn.simple_query("DELETE FROM contacts WHERE name IN ('a3', 'b3')").await;
        // A declared parameter the text never uses, without a type: PostgreSQL cannot type it
        // (42P18), and nothing is written.
        let mut req = wire::parse_typed(
            "",
            "insert into contacts (name, user_id) values ($1, $2), ($3, $4)",
            &[0, 0, 0, 0, 0],
        );
        req.extend(wire::bind(
            "",
            "",
            &[Some("x"), Some(&a), Some("y"), Some(&b), Some("z")],
        ));
        req.extend(wire::execute("", 0));
        req.extend(wire::sync());
        conn.send(&req).await.expect("send");
        let msgs = conn.until_ready_any().await;
        let e = msgs.iter().find(|m| m.tag == b'E').expect("error");
        assert_eq!(wire::error_fields(&e.body)[&b'C'], "42P18");
        // A Bind with too many values: PostgreSQL's 08P01.
        let mut req = wire::parse("", "insert into contacts (name, user_id) values ($1, $2), ($3, $4)");
        req.extend(wire::bind(
            "",
            "",
            &[Some("x"), Some(&a), Some("y"), Some(&b), Some("z")],
        ));
        req.extend(wire::execute("", 0));
        req.extend(wire::sync());
        conn.send(&req).await.expect("send");
        let msgs = conn.until_ready_any().await;
        let e = msgs.iter().find(|m| m.tag == b'E').expect("error");
        assert_eq!(wire::error_fields(&e.body)[&b'C'], "08P01");
        assert_eq!(rows_on(&c, 0).await, format!("{a}:a1,{a}:a2"));
        assert_eq!(rows_on(&c, 1).await, format!("{b}:b1,{b}:b2"));
        // The session goes on.
        let rows = conn.simple_query("SELECT 1").await;
        assert_eq!(rows, vec![vec![Some("1".to_string())]]);
    })
    .await;
}

#[tokio::test]
async fn simple_protocol_literal_rows_with_returning() {
    within(180, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = (keys_on(0, 2, 2), keys_on(1, 2, 2));
        let sql = format!(
            "INSERT INTO contacts (user_id, name) VALUES ({}, 'b1'), ({}, 'a1'), ({}, 'b2'), ({}, 'a$1') RETURNING id, user_id, name",
            b[0], a[0], b[1], a[1]
        );
        let msgs = client.simple_query(&sql).await.expect("simple split");
        let mut names = Vec::new();
        let mut count = None;
        for m in &msgs {
            match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    names.push(r.get(2).expect("name").to_string())
                }
                tokio_postgres::SimpleQueryMessage::CommandComplete(n) => count = Some(*n),
                _ => {}
            }
        }
        assert_eq!(names, ["b1", "a1", "b2", "a$1"]);
        assert_eq!(count, Some(4));
        assert_eq!(
            rows_on(&c, 0).await,
            format!("{}:a$1,{}:a1", a[1], a[0])
        );
        assert_eq!(rows_on(&c, 1).await, format!("{}:b1,{}:b2", b[0], b[1]));
        // ON CONFLICT DO NOTHING with RETURNING may leave rows out: refused, nothing written.
        let e = client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id, name) VALUES (1, {}, 'x'), (1, {}, 'y') ON CONFLICT DO NOTHING RETURNING id",
                a[0], b[0]
            ))
            .await
            .expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
        assert!(!rows_on(&c, 0).await.contains(":x"));
    })
    .await;
}

#[tokio::test]
async fn inside_transactions_commit_and_rollback() {
    within(180, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let mut client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = (keys_on(0, 2, 1)[0], keys_on(1, 2, 1)[0]);
        let sql = "INSERT INTO contacts (user_id, name) VALUES ($1, $2), ($3, $4) RETURNING id, user_id, name";
        // COMMIT: both parts and a later single-shard write are kept.
        let tx = client.transaction().await.expect("begin");
        tx.execute("INSERT INTO contacts (user_id, name) VALUES ($1, 'a0')", &[&a])
            .await
            .expect("single shard");
        let rows = tx
            .query(sql, &[&b, &"b1", &a, &"a1"])
            .await
            .expect("split in a transaction");
        assert_eq!(
            returned(&rows).iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["b1", "a1"]
        );
        tx.execute("INSERT INTO contacts (user_id, name) VALUES ($1, 'b2')", &[&b])
            .await
            .expect("after the split");
        tx.commit().await.expect("commit");
        assert_eq!(rows_on(&c, 0).await, format!("{a}:a0,{a}:a1"));
        assert_eq!(rows_on(&c, 1).await, format!("{b}:b1,{b}:b2"));
        // ROLLBACK: nothing of it anywhere.
        let tx = client.transaction().await.expect("begin");
        tx.query(sql, &[&a, &"a9", &b, &"b9"])
            .await
            .expect("split in a transaction");
        tx.rollback().await.expect("rollback");
        assert!(!rows_on(&c, 0).await.contains("9"));
        assert!(!rows_on(&c, 1).await.contains("9"));
        // An error in a part aborts the transaction, which keeps nothing.
        let tx = client.transaction().await.expect("begin");
        tx.query(sql, &[&a, &"a8", &b, &"b8"]).await.expect("split");
        let e = tx
            .query(
                "INSERT INTO contacts (id, user_id, name) VALUES (1, $1, 'dup'), (100, $2, 'ok')",
                &[&a, &b],
            )
            .await
            .expect_err("duplicate key on one shard");
        assert_eq!(sqlstate(&e).as_deref(), Some("23505"));
        let e = tx.query("SELECT 1", &[]).await.expect_err("aborted");
        assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
        drop(tx);
        let rows = client.query("SELECT 1", &[]).await.expect("after rollback");
        assert_eq!(rows.len(), 1);
        assert!(!rows_on(&c, 0).await.contains("8"));
        assert!(!rows_on(&c, 1).await.contains("8"));
    })
    .await;
}

#[tokio::test]
async fn cross_shard_transactions_deny_refuses_a_split_in_a_transaction() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "cross_shard_transactions = \"deny\"").await;
        let mut client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = (keys_on(0, 2, 1)[0], keys_on(1, 2, 1)[0]);
        let sql = "INSERT INTO contacts (user_id, name) VALUES ($1, $2), ($3, $4) RETURNING id";
        let tx = client.transaction().await.expect("begin");
        let e = tx
            .query(sql, &[&a, &"a1", &b, &"b1"])
            .await
            .expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
        drop(tx);
        // Outside a transaction it runs.
        let rows = client
            .query(sql, &[&a, &"a1", &b, &"b1"])
            .await
            .expect("split");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows_on(&c, 0).await, format!("{a}:a1"));
        assert_eq!(rows_on(&c, 1).await, format!("{b}:b1"));
    })
    .await;
}

#[tokio::test]
async fn rows_of_one_shard_and_a_null_key() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let a = keys_on(0, 2, 2);
        let b = keys_on(1, 2, 1)[0];
        let sql = "INSERT INTO contacts (user_id, name) VALUES ($1, $2), ($3, $4) RETURNING id, user_id, name";
        let rows = client
            .query(sql, &[&a[1], &"x2", &a[0], &"x1"])
            .await
            .expect("one shard");
        assert_eq!(
            returned(&rows).iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["x2", "x1"]
        );
        assert_eq!(rows_on(&c, 0).await, format!("{}:x1,{}:x2", a[0], a[1]));
        assert_eq!(rows_on(&c, 1).await, "");
        let e = client
            .query(sql, &[&b, &"y", &None::<i64>, &"z"])
            .await
            .expect_err("NULL key");
        assert_eq!(sqlstate(&e).as_deref(), Some("0A000"));
        assert!(describe(&e).contains("NULL"), "{}", describe(&e));
        assert_eq!(rows_on(&c, 1).await, "");
    })
    .await;
}

#[tokio::test]
async fn three_shards() {
    within(180, "test", async {
        let c = ShardedCluster::start(3, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let k: Vec<i64> = (0..3).map(|s| keys_on(s, 3, 1)[0]).collect();
        let rows = client
            .query(
                "INSERT INTO contacts (user_id, name) VALUES ($1, 'r0'), ($2, 'r1'), ($3, 'r2'), ($4, 'r3'), ($5, 'r4'), ($6, 'r5') RETURNING id, user_id, name",
                &[&k[2], &k[0], &k[1], &k[1], &k[2], &k[0]],
            )
            .await
            .expect("split over 3 shards");
        let got = returned(&rows);
        assert_eq!(
            got.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["r0", "r1", "r2", "r3", "r4", "r5"]
        );
        check_ids(&c, 3, &got).await;
        assert_eq!(rows_on(&c, 0).await, format!("{}:r1,{}:r5", k[0], k[0]));
        assert_eq!(rows_on(&c, 1).await, format!("{}:r2,{}:r3", k[1], k[1]));
        assert_eq!(rows_on(&c, 2).await, format!("{}:r0,{}:r4", k[2], k[2]));
    })
    .await;
}

/// Shards of two nodes: each part runs on every node of its shard with the same values (the
/// serial id, now() and uuid defaults evaluated once on the shard's main), so the nodes of a
/// shard stay identical.
#[tokio::test]
async fn replicated_shards_stay_identical() {
    within(240, "test", async {
        let c = ShardedCluster::start(2, 2, "").await;
        let mut client = c.client().await;
        client
            .batch_execute(
                "CREATE TABLE contacts (id bigserial, user_id bigint NOT NULL, name text, tag text, \
                 created timestamptz NOT NULL DEFAULT now(), uid uuid NOT NULL DEFAULT gen_random_uuid(), \
                 PRIMARY KEY (id, user_id))",
            )
            .await
            .expect("schema");
        let (a, b) = (keys_on(0, 2, 2), keys_on(1, 2, 2));
        let sql = "insert into \"contacts\" (\"name\",\"user_id\") values ($1, $2), ($3, $4), ($5, $6) returning \"id\", \"user_id\", \"name\"";
        let rows = client
            .query(sql, &[&"a1", &a[0], &"b1", &b[0], &"a2", &a[1]])
            .await
            .expect("split on replicated shards");
        let got = returned(&rows);
        assert_eq!(
            got.iter().map(|r| r.2.as_str()).collect::<Vec<_>>(),
            ["a1", "b1", "a2"]
        );
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 1, 2]);
        check_ids(&c, 2, &got).await;
        // Simple protocol, literal rows.
        let msgs = client
            .simple_query(&format!(
                "INSERT INTO contacts (user_id, name) VALUES ({}, 'b2'), ({}, 'a3') RETURNING id, name",
                b[1], a[0]
            ))
            .await
            .expect("simple split on replicated shards");
        let names: Vec<String> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(1).expect("name").to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["b2", "a3"]);
        // In a transaction, then committed; and one rolled back.
        let tx = client.transaction().await.expect("begin");
        tx.execute(
            "INSERT INTO contacts (user_id, name) VALUES ($1, 'a5')",
            &[&a[0]],
        )
        .await
        .expect("a write on one shard first");
        tx.query(sql, &[&"b3", &b[0], &"a4", &a[1], &"b4", &b[1]])
            .await
            .expect("split in a transaction");
        tx.execute(
            "INSERT INTO contacts (user_id, name) VALUES ($1, 'b5')",
            &[&b[1]],
        )
        .await
        .expect("a write on the other shard after");
        tx.commit().await.expect("commit");
        let tx = client.transaction().await.expect("begin");
        tx.query(sql, &[&"b9", &b[0], &"a9", &a[1], &"b9", &b[1]])
            .await
            .expect("split in a transaction");
        tx.rollback().await.expect("rollback");
        // Every node of a shard holds the same rows, values computed by the main included
        // (shard_scalar asserts the nodes agree).
        let digest = "SELECT string_agg(id || ':' || user_id || ':' || name || ':' || created || ':' || uid, ',' ORDER BY id, user_id) FROM contacts";
        for s in 0..2 {
            assert!(!c.shard_scalar(s, digest).await.is_empty());
        }
        let (a0, a1, b0, b1) = (a[0], a[1], b[0], b[1]);
        assert_eq!(rows_on(&c, 0).await, format!("{a0}:a1,{a1}:a2,{a0}:a3,{a1}:a4,{a0}:a5"));
        assert_eq!(rows_on(&c, 1).await, format!("{b0}:b1,{b1}:b2,{b0}:b3,{b1}:b4,{b1}:b5"));
        // The sequences moved on every node: the next id after a failover is still new.
        for s in 0..2 {
            let last = c.shard_scalar(s, "SELECT last_value FROM contacts_id_seq").await;
            assert!(last.parse::<i64>().expect("int") >= 5, "shard {s}: {last}");
        }
    })
    .await;
}

/// A shard that is down: the split INSERT fails as a whole; no rows on the shard that is up.
#[tokio::test]
async fn a_shard_down_writes_nothing_anywhere() {
    within(180, "test", async {
        let mut c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        let (a, b) = (keys_on(0, 2, 1)[0], keys_on(1, 2, 1)[0]);
        c.shards[1][0].stop();
        let sql = "INSERT INTO contacts (user_id, name) VALUES ($1, $2), ($3, $4) RETURNING id";
        // Before and after pgproxy notices the node is gone.
        for _ in 0..2 {
            let e = client
                .query(sql, &[&a, &"a1", &b, &"b1"])
                .await
                .expect_err("a shard is down");
            assert!(sqlstate(&e).is_some(), "{}", describe(&e));
            assert_eq!(rows_on(&c, 0).await, "");
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
    })
    .await;
}
