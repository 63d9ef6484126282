//! What ORMs do on a replicated shard that plain statement fan-out got wrong (found by the
//! Django, SQLAlchemy and Sequelize checks in tests/drivers): deferred foreign keys failing at
//! COMMIT (Django creates every ForeignKey DEFERRABLE INITIALLY DEFERRED), functions in
//! `pg_temp` (Sequelize's findOrCreate), a write in a READ ONLY transaction, VACUUM prepared by
//! name (psycopg's prepare=True). Each must behave as on one PostgreSQL and leave every node
//! attached and identical.

mod common;

use common::cluster::*;
use common::workloads::*;
use common::*;

const FK: &str = "CREATE TABLE fkp (id int PRIMARY KEY);
    CREATE TABLE fkc (id int PRIMARY KEY, p_id int REFERENCES fkp DEFERRABLE INITIALLY DEFERRED);
    INSERT INTO fkp VALUES (1)";

/// A deferred foreign key violated in autocommit, at COMMIT of a transaction (simple and
/// extended protocol): the client gets 23503, nothing is stored, no node is detached.
async fn deferred_fk_violations(commit: &str) {
    let cl = ReplCluster::start(2, |c| c.commit(commit)).await;
    let c = cl.client().await;
    exec(&c, FK).await;
    expect_sqlstate(
        c.simple_query("INSERT INTO fkc VALUES (1, 999)").await,
        "23503",
    );
    expect_sqlstate(
        c.execute("INSERT INTO fkc VALUES (2, $1)", &[&999i32])
            .await,
        "23503",
    );
    // What the client reads: the error instead of the statement's CommandComplete, as from one
    // PostgreSQL (which reports a simple query's commit before its last CommandComplete).
    let tags = |msgs: &[common::wire::Msg]| msgs.iter().map(|m| m.tag as char).collect::<String>();
    let sql = "INSERT INTO fkp VALUES (2); INSERT INTO fkc VALUES (7, 999)";
    let mut direct =
        common::wire::RawConn::login_password(cl.nodes[0].port(), "app", "secret", "app").await;
    direct.send(&common::wire::query(sql)).await.expect("send");
    let want = tags(&direct.until_ready_any().await);
    let mut raw = common::wire::RawConn::login_password(cl.port(), "app", "secret", "app").await;
    // Repeated: the main's answer and its transaction id (read after the statements) may come
    // in separate reads, which once let the last CommandComplete out before the commit failed
    // (seen under load).
    for _ in 0..20 {
        raw.send(&common::wire::query(sql)).await.expect("send");
        assert_eq!(
            tags(&raw.until_ready_any().await),
            want,
            "messages of a failing implicit commit"
        );
    }
    assert_eq!(
        want, "CE",
        "PostgreSQL: first INSERT's CommandComplete, then the error"
    );
    exec(&c, "BEGIN").await;
    exec(&c, "INSERT INTO fkc VALUES (3, 999)").await;
    exec(&c, "INSERT INTO fkc VALUES (4, 1)").await;
    expect_sqlstate(c.simple_query("COMMIT").await, "23503");
    assert_eq!(scalar(&c, "SELECT 'usable'").await, "usable");
    // The same through the extended protocol's COMMIT.
    let mut c = c;
    let tx = c.transaction().await.expect("begin");
    tx.execute("INSERT INTO fkc VALUES (5, $1)", &[&999i32])
        .await
        .expect("deferred: accepted until COMMIT");
    expect_sqlstate(tx.commit().await, "23503");
    let tx = c.transaction().await.expect("begin");
    tx.execute("INSERT INTO fkc VALUES (6, $1)", &[&1i32])
        .await
        .expect("valid row");
    tx.commit().await.expect("a valid transaction commits");
    assert_eq!(
        scalar(&c, "SELECT string_agg(id::text, ',' ORDER BY id) FROM fkc").await,
        "6"
    );
    let log = cl.proxy.log();
    assert!(
        !log.contains("node state changed") && !log.contains("quarantined"),
        "a node was detached:\n{log}"
    );
    cl.assert_identical(&["fkp", "fkc"]).await;
    cl.assert_verify_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_constraint_failing_at_prepare_detaches_nothing() {
    within(90, "test", deferred_fk_violations("2pc")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_constraint_failing_at_an_ordered_commit_detaches_nothing() {
    within(90, "test", deferred_fk_violations("ordered")).await
}

/// Sequelize's findOrCreate: a plpgsql function in pg_temp doing the INSERT, called and
/// dropped inside a transaction. PostgreSQL cannot PREPARE a transaction that touched
/// temporary objects, so such a session commits in order; the row commits on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_in_pg_temp_commits_on_every_node() {
    within(90, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(
            &c,
            "CREATE TABLE users (id int PRIMARY KEY, name text UNIQUE)",
        )
        .await;
        exec(&c, "BEGIN").await;
        exec(
            &c,
            "CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response users, OUT caught text) \
             RETURNS RECORD AS $func$ BEGIN INSERT INTO users (id, name) VALUES (1, 'ann') \
             RETURNING * INTO response; EXCEPTION WHEN unique_violation THEN \
             GET STACKED DIAGNOSTICS caught = PG_EXCEPTION_DETAIL; END $func$ LANGUAGE plpgsql; \
             SELECT (testfunc.response).*, testfunc.caught FROM pg_temp.testfunc(); \
             DROP FUNCTION IF EXISTS pg_temp.testfunc()",
        )
        .await;
        exec(&c, "COMMIT").await;
        assert_eq!(
            scalar(&c, "SELECT name FROM users WHERE id = 1").await,
            "ann"
        );
        for n in &cl.nodes {
            assert_eq!(n.scalar("SELECT count(*) FROM users").await, "1");
        }
        let log = cl.proxy.log();
        assert!(
            !log.contains("node state changed"),
            "a node was detached:\n{log}"
        );
        cl.assert_verify_ok().await;
    })
    .await
}

/// A write needing a value from the main (a serial id) in a READ ONLY transaction fails as
/// on PostgreSQL (25006, which applications use to spot a read-only server), and the
/// transaction is aborted like PostgreSQL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serial_insert_in_a_read_only_transaction_fails_with_25006() {
    within(90, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id serial PRIMARY KEY, v text)").await;
        exec(&c, "BEGIN READ ONLY").await;
        expect_sqlstate(
            c.simple_query("INSERT INTO t (v) VALUES ('x')").await,
            "25006",
        );
        expect_sqlstate(c.simple_query("SELECT 1").await, "25P02");
        let tag = c
            .simple_query("COMMIT")
            .await
            .expect("COMMIT of an aborted transaction");
        let done = tag.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        });
        assert_eq!(done, Some(0));
        let mut c = c;
        let tx = c
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .expect("begin read only");
        expect_sqlstate(
            tx.execute("INSERT INTO t (v) VALUES ($1)", &[&"y"]).await,
            "25006",
        );
        drop(tx);
        c.execute("INSERT INTO t (v) VALUES ($1)", &[&"z"])
            .await
            .expect("outside the read-only transaction");
        assert_eq!(scalar(&c, "SELECT string_agg(v, ',') FROM t").await, "z");
        cl.assert_identical(&["t"]).await;
        let log = cl.proxy.log();
        assert!(
            !log.contains("node state changed"),
            "a node was detached:\n{log}"
        );
    })
    .await
}

/// VACUUM (and other statements PostgreSQL refuses in a transaction block) prepared by name
/// and executed, as psycopg's prepare=True and asyncpg do: runs on every node outside
/// pgproxy's transaction block, like its simple-query form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_prepared_by_name_runs() {
    within(90, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(&c, "CREATE TABLE t (id int PRIMARY KEY)").await;
        let st = c.prepare("VACUUM t").await.expect("prepare VACUUM");
        c.execute(&st, &[])
            .await
            .expect("execute the prepared VACUUM");
        c.execute(&st, &[]).await.expect("and again");
        let st = c
            .prepare("CREATE INDEX CONCURRENTLY t_id2 ON t (id)")
            .await
            .expect("prepare CREATE INDEX CONCURRENTLY");
        c.execute(&st, &[]).await.expect("execute it");
        for n in &cl.nodes {
            assert_eq!(
                n.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 't_id2'")
                    .await,
                "1"
            );
        }
        let log = cl.proxy.log();
        assert!(
            !log.contains("node state changed"),
            "a node was detached:\n{log}"
        );
    })
    .await
}

const BATCH: &str = "CREATE TABLE orm_s (id serial PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT now());
    CREATE TABLE orm_u (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, uid uuid DEFAULT gen_random_uuid(), kind text DEFAULT 'k', note text)";

/// The ORMs' batch INSERTs into tables with a serial / identity / uuid default:
/// SQLAlchemy's insertmanyvalues (`INSERT … SELECT … FROM (VALUES …) ORDER BY sen_counter
/// RETURNING`, parameters, extended protocol) and Django 5.2's bulk_create (`INSERT … SELECT *
/// FROM UNNEST(…) RETURNING`, literal arrays). Every row gets its values from the main, in row
/// order; every node stores the same rows; the sequences stay equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orm_batch_inserts_with_serial_ids_land_identically() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(&c, BATCH).await;
        exec(&c, "INSERT INTO orm_s (name) VALUES ('first')").await;
        // SQLAlchemy, 150 rows (more values than fit in one row of the main's answer).
        let n = 150;
        let rows: Vec<String> = (0..n)
            .map(|i| format!("(${}, {i})", i + 1))
            .collect();
        let sql = format!(
            "INSERT INTO orm_s (name) SELECT p0::VARCHAR FROM (VALUES {}) AS imp_sen(p0, sen_counter) \
             ORDER BY sen_counter RETURNING orm_s.id, orm_s.id AS id__1",
            rows.join(", ")
        );
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = names
            .iter()
            .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let got = c.query(sql.as_str(), &params).await.expect("insertmanyvalues");
        let ids: Vec<i32> = got.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, (2..2 + n).collect::<Vec<_>>(), "ids in row order");
        assert_eq!(
            scalar(&c, "SELECT name FROM orm_s WHERE id = 2 + 149").await,
            "s149",
            "each row its own id"
        );
        // Django: UNNEST of literal arrays, with and without an explicit transaction.
        let unnest = "INSERT INTO orm_u (note, kind) SELECT * FROM UNNEST(('{a,b,c}')::text[], ('{x,y,z}')::text[]) RETURNING orm_u.id, orm_u.uid";
        let got = c.simple_query(unnest).await.expect("bulk_create");
        let ids: Vec<String> = got
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["1", "2", "3"]);
        exec(&c, "BEGIN").await;
        exec(&c, "INSERT INTO orm_u (note) SELECT * FROM UNNEST(ARRAY['d', 'e'])").await;
        exec(&c, "INSERT INTO orm_s (name) SELECT * FROM UNNEST('{t1,t2}'::text[])").await;
        exec(&c, "COMMIT").await;
        // The empty batch inserts nothing and moves nothing.
        exec(&c, "INSERT INTO orm_u (note) SELECT * FROM UNNEST('{}'::text[])").await;
        assert_eq!(
            scalar(&c, "SELECT count(*) || ' ' || max(id) || ' ' || count(DISTINCT uid) FROM orm_u").await,
            "5 5 5"
        );
        assert_eq!(
            scalar(&c, "SELECT count(*) || ' ' || max(id) || ' ' || count(DISTINCT at) FROM orm_s").await,
            "153 153 3"
        );
        // Arrays as parameters (asyncpg's and psycopg's server-side binding; binary here): as
        // many ids as the Bind's longest array has elements; a NULL array inserts nothing.
        let st = c
            .prepare("INSERT INTO orm_u (note, kind) SELECT * FROM UNNEST($1::text[], $2::text[]) RETURNING id")
            .await
            .expect("prepare");
        let notes = vec!["p1".to_string(), "p2".to_string(), "p3".to_string()];
        let kinds = vec!["q".to_string()];
        let got = c.query(&st, &[&notes, &kinds]).await.expect("array parameters");
        let ids: Vec<i32> = got.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, [6, 7, 8]);
        let none: Option<Vec<String>> = None;
        let got = c.query(&st, &[&none, &none]).await.expect("NULL arrays");
        assert!(got.is_empty());
        assert_eq!(
            scalar(&c, "SELECT string_agg(id || ':' || note || ':' || coalesce(kind, '-'), ',' ORDER BY id) FROM orm_u WHERE id > 5").await,
            "6:p1:q,7:p2:-,8:p3:-"
        );
        cl.assert_identical(&["orm_s", "orm_u"]).await;
        for seq in ["orm_s_id_seq", "orm_u_id_seq"] {
            let sql = format!("SELECT last_value FROM {seq}");
            let mut values = Vec::new();
            for node in &cl.nodes {
                values.push(node.scalar(&sql).await);
            }
            assert!(values.iter().all(|v| v == &values[0]), "{seq}: {values:?}");
        }
        let log = cl.proxy.log();
        assert!(!log.contains("quarantined"), "a node was detached:\n{log}");
        cl.assert_verify_ok().await;
    })
    .await
}

/// currval() / lastval() after an autocommit INSERT (PHP PDO's lastInsertId, a child row
/// inserted with `currval('parent_id_seq')`), from several clients whose main and follower
/// connections pair up differently from one transaction to the next: the other nodes get the
/// main's value, so nodes stay identical and none is detached. (Before, each node read its own
/// connection's sequence state: a follower whose connection had not run the client's
/// nextval answered 55000 where the main answered, and was quarantined.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currval_and_lastval_after_an_insert_keep_every_node() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let mut a = cl.client().await;
        let mut b = cl.client().await;
        exec(
            &a,
            "CREATE TABLE parent (id serial PRIMARY KEY, v text);
             CREATE TABLE child (id serial PRIMARY KEY, parent_id int, v text)",
        )
        .await;
        let insert = "INSERT INTO parent (v) VALUES ($1) RETURNING id";
        for round in 0..6 {
            // Overlapping transactions so the pools hand out connections in another order.
            let ta = a.transaction().await.expect("begin a");
            let id_a: i32 = ta
                .query_one(insert, &[&format!("a{round}")])
                .await
                .expect("insert a")
                .get(0);
            let tb = b.transaction().await.expect("begin b");
            let id_b: i32 = tb
                .query_one(insert, &[&format!("b{round}")])
                .await
                .expect("insert b")
                .get(0);
            if round % 2 == 0 {
                ta.commit().await.expect("commit a");
                tb.commit().await.expect("commit b");
            } else {
                tb.commit().await.expect("commit b");
                ta.commit().await.expect("commit a");
            }
            for (c, who, own) in [(&a, "a", id_a), (&b, "b", id_b)] {
                // The client's own value (its connection, when idle) or 55000, never the
                // other client's.
                for sql in ["SELECT currval('parent_id_seq')", "SELECT lastval()"] {
                    match c.simple_query(sql).await {
                        Ok(rows) => {
                            let got = rows.iter().find_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::Row(r) => {
                                    r.get(0).map(str::to_string)
                                }
                                _ => None,
                            });
                            assert_eq!(got, Some(own.to_string()), "{who} {sql}");
                        }
                        Err(e) => assert_eq!(
                            e.code().map(|c| c.code()),
                            Some("55000"),
                            "{who} {sql}: {e:?}"
                        ),
                    }
                }
                let sql = "INSERT INTO child (parent_id, v) VALUES (currval('parent_id_seq'), 'c')";
                if let Err(e) = c.simple_query(sql).await {
                    assert_eq!(
                        e.code().map(|c| c.code()),
                        Some("55000"),
                        "{who} {sql}: {e:?}"
                    );
                }
                // In one transaction with its INSERT: always the client's own value.
                c.batch_execute("BEGIN").await.expect("begin");
                let id: i32 = c
                    .query_one("INSERT INTO parent (v) VALUES ('t') RETURNING id", &[])
                    .await
                    .expect("insert in a transaction")
                    .get(0);
                let cur: i64 = c
                    .query_one("SELECT currval('parent_id_seq')", &[])
                    .await
                    .expect("currval in the transaction")
                    .get(0);
                assert_eq!(cur, i64::from(id), "{who}: currval after its own INSERT");
                c.batch_execute("COMMIT").await.expect("commit");
            }
        }
        cl.assert_identical(&["parent", "child"]).await;
        let log = cl.proxy.log();
        assert!(
            !log.contains("node state changed") && !log.contains("quarantined"),
            "a node was detached:\n{log}"
        );
    })
    .await
}
