//! A prepared statement whose table changed (ALTER … TYPE) must fail with PostgreSQL's 0A000
//! "cached plan must not change result type" wherever pgproxy runs it next, including a server
//! connection or a replica on which pgproxy has to prepare it afresh: drivers decode rows with
//! the column types they were told once, and a silently new row type reads as garbage (pgjdbc
//! read a bigint 1 as the int 0). After the error, preparing again works.

mod common;

use common::cluster::*;
use common::wire::{self, RawConn};
use common::*;
use tokio_postgres::{Client, GenericClient};

const SELECT: &str = "SELECT a FROM t";

/// The backend pid of a client's server connection, inside its open transaction.
async fn pid(c: &impl GenericClient) -> String {
    let row = c.query_one("SELECT pg_backend_pid()::text", &[]).await;
    row.expect("pg_backend_pid").get(0)
}

/// Of a pool of two server connections, holds the one with backend `pid` in a transaction of
/// another client (returned first; the second client keeps nothing or the other connection's
/// place free).
async fn hold(port: u16, pid_of: &str) -> (Client, Client) {
    let y1 = connect_app(port).await;
    let y2 = connect_app(port).await;
    y1.batch_execute("BEGIN").await.expect("begin y1");
    if pid(&y1).await == pid_of {
        return (y1, y2);
    }
    y2.batch_execute("BEGIN").await.expect("begin y2");
    assert_eq!(pid(&y2).await, pid_of, "two server connections");
    y1.batch_execute("COMMIT").await.expect("commit y1");
    (y2, y1)
}

/// One pipeline: an INSERT, then the stale statement, then Sync. The tags the client gets
/// and the rows left in `log`.
async fn stale_in_pipeline(x: &mut RawConn) -> (String, String) {
    let batch = [
        wire::parse("", "INSERT INTO log VALUES (1)"),
        wire::bind("", "", &[]),
        wire::execute("", 0),
        wire::bind("", "s", &[]),
        wire::execute("", 0),
        wire::sync(),
    ];
    x.send(&batch.concat()).await.expect("send pipeline");
    let msgs = x.until_ready_any().await;
    let mut tags: String = msgs.iter().map(|m| m.tag as char).collect();
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        let f = wire::error_fields(&e.body);
        tags += &format!(" {} {}", f[&b'C'], f[&b'M']);
    }
    let count = x.simple_query("SELECT count(*) FROM log").await;
    (tags, count[0][0].clone().unwrap_or_default())
}

/// Prepares `s` (SELECT a FROM t) with a Describe, inside a transaction; returns the backend pid.
async fn prepare_described(x: &mut RawConn) -> String {
    x.simple_query("BEGIN").await;
    let prep = [
        wire::parse("s", SELECT),
        wire::describe(b'S', "s"),
        wire::sync(),
    ];
    x.send(&prep.concat()).await.expect("send prepare");
    x.until_ready().await;
    let pid = x.simple_query("SELECT pg_backend_pid()").await;
    x.simple_query("COMMIT").await;
    pid[0][0].clone().expect("pid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_statement_in_a_pipeline_fails_it_as_postgresql_does() {
    within(90, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_mode("transaction").pool_size(2)).await;
        let setup = "CREATE TABLE t(a int); INSERT INTO t VALUES (1); CREATE TABLE log(a int)";
        connect_app(proxy.port())
            .await
            .batch_execute(setup)
            .await
            .expect("setup");
        let alter = "ALTER TABLE t ALTER a TYPE bigint";
        // PostgreSQL itself.
        let mut x = RawConn::login_password(node.port(), "app", "secret", "app").await;
        prepare_described(&mut x).await;
        connect_app(node.port())
            .await
            .batch_execute(alter)
            .await
            .expect("alter");
        let want = stale_in_pipeline(&mut x).await;
        assert!(want.0.contains("0A000"), "PostgreSQL: {want:?}");
        assert_eq!(want.1, "0", "PostgreSQL rolled the INSERT back");
        // pgproxy, on a server connection that never had the statement.
        connect_app(proxy.port())
            .await
            .batch_execute("ALTER TABLE t ALTER a TYPE int")
            .await
            .expect("alter back");
        let mut x = RawConn::login_password(proxy.port(), "app", "secret", "app").await;
        let xpid = prepare_described(&mut x).await;
        let (_holder, _y) = hold(proxy.port(), &xpid).await;
        connect_app(proxy.port())
            .await
            .batch_execute(alter)
            .await
            .expect("alter");
        let got = stale_in_pipeline(&mut x).await;
        assert_eq!(got, want, "pgproxy vs PostgreSQL");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_prepared_afresh_on_another_server_connection_reports_the_changed_row_type() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_mode("transaction").pool_size(2)).await;
        let port = proxy.port();
        let mut x = connect_app(port).await;
        x.batch_execute("CREATE TABLE t(a int); INSERT INTO t VALUES (1)")
            .await
            .expect("ddl");
        // Prepared, described and run on one server connection (all in one transaction).
        let t = x.transaction().await.expect("begin");
        let old = t.prepare(SELECT).await.expect("prepare");
        let rows = t.query(&old, &[]).await.expect("run");
        assert_eq!(rows[0].get::<_, i32>(0), 1);
        let xpid = pid(&t).await;
        t.commit().await.expect("commit");
        // Hold that connection in another client's transaction, so that x's next statement
        // goes to the other one, which has never seen the statement.
        let (holder, _y) = hold(port, &xpid).await;
        let alter = connect_app(port).await;
        alter
            .batch_execute("ALTER TABLE t ALTER a TYPE bigint")
            .await
            .expect("alter");
        drop(alter);
        // As PostgreSQL would answer on the connection that prepared it.
        let e = expect_sqlstate(x.query(&old, &[]).await, "0A000");
        let msg = describe(&e);
        assert!(
            msg.contains("cached plan must not change result type"),
            "{msg}"
        );
        // The session goes on: the error ended only that statement.
        assert_eq!(scalar(&x, "SELECT 'still here'").await, "still here");
        // Prepared again (a new name, as drivers do): the new row type.
        for round in 0..3 {
            let new = x.prepare(SELECT).await.expect("prepare again");
            let rows = x.query(&new, &[]).await;
            let rows = rows.unwrap_or_else(|e| panic!("round {round}: {}", describe(&e)));
            assert_eq!(rows[0].get::<_, i64>(0), 1, "round {round}");
        }
        // Back on the connection that cached the old plan: PostgreSQL's own error, again.
        holder.batch_execute("COMMIT").await.expect("commit holder");
        drop(holder);
        let mut held = Vec::new();
        for _ in 0..2 {
            let c = connect_app(port).await;
            c.batch_execute("BEGIN").await.expect("begin");
            held.push((pid(&c).await, c));
        }
        let (_, first) = held
            .iter()
            .find(|(p, _)| *p == xpid)
            .expect("both connections held");
        first
            .batch_execute("COMMIT")
            .await
            .expect("free x's first connection");
        let t = x.transaction().await.expect("begin");
        assert_eq!(pid(&t).await, xpid, "x is back on its first connection");
        expect_sqlstate(t.query(&old, &[]).await, "0A000");
        t.rollback().await.expect("rollback");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_read_from_either_replica_after_alter_reports_the_changed_row_type() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| c.health("interval_ms", "0")).await;
        let c = cl.client().await;
        c.batch_execute("CREATE TABLE t(a int); INSERT INTO t VALUES (1)")
            .await
            .expect("ddl");
        let old = c.prepare(SELECT).await.expect("prepare");
        // Reads are spread over both nodes: the statement gets prepared on each.
        for _ in 0..10 {
            let rows = c.query(&old, &[]).await.expect("run");
            assert_eq!(rows[0].get::<_, i32>(0), 1);
        }
        let other = cl.client().await;
        other
            .batch_execute("ALTER TABLE t ALTER a TYPE bigint")
            .await
            .expect("alter");
        // Whichever node serves it, and whether pgproxy prepares it there afresh or not.
        for i in 0..10 {
            let e = expect_sqlstate(c.query(&old, &[]).await, "0A000");
            let msg = describe(&e);
            assert!(msg.contains("cached plan"), "execution {i}: {msg}");
        }
        // Other clients with a fresh statement, and this one prepared again: the new type on
        // every node.
        for client in [&c, &other] {
            let new = client.prepare(SELECT).await.expect("prepare again");
            for i in 0..10 {
                let rows = client.query(&new, &[]).await;
                let rows = rows.unwrap_or_else(|e| panic!("execution {i}: {}", describe(&e)));
                assert_eq!(rows[0].get::<_, i64>(0), 1, "execution {i}");
            }
        }
        cl.assert_verify_ok().await;
    })
    .await
}

/// A prepared write on a replicated shard whose result columns changed: the client gets
/// 0A000 wherever it runs next, and no node runs it (a follower that executed it, with an old
/// plan or a fresh one, would disagree with the main's refusal and be quarantined).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_prepared_write_on_a_replicated_shard_runs_on_no_node() {
    within(120, "test", async {
        let cl = ReplCluster::start(2, |c| c.health("interval_ms", "0")).await;
        let c = cl.client().await;
        c.batch_execute("CREATE TABLE t(a int); INSERT INTO t VALUES (1)")
            .await
            .expect("ddl");
        let write = "UPDATE t SET a = a + 1 RETURNING a";
        let old = c.prepare(write).await.expect("prepare");
        // Other clients hold server connections meanwhile, so the statement gets prepared on
        // several of them (main and follower sides).
        for i in 0..6 {
            let busy = cl.client().await;
            busy.batch_execute("BEGIN; SELECT 1").await.expect("hold");
            let rows = c.query(&old, &[]).await.expect("run");
            assert_eq!(rows[0].get::<_, i32>(0), 2 + i);
            drop(busy);
        }
        let other = cl.client().await;
        other
            .batch_execute("ALTER TABLE t ALTER a TYPE bigint")
            .await
            .expect("alter");
        // With every existing server connection held, pgproxy prepares it afresh on a new one.
        let mut held = Vec::new();
        for _ in 0..8 {
            let busy = cl.client().await;
            busy.batch_execute("BEGIN; SELECT 1").await.expect("hold");
            held.push(busy);
        }
        for i in 0..6 {
            let e = expect_sqlstate(c.query(&old, &[]).await, "0A000");
            assert!(describe(&e).contains("cached plan"), "execution {i}");
            // Inside a transaction too: it fails the transaction on every node.
            c.batch_execute("BEGIN").await.expect("begin");
            expect_sqlstate(c.query(&old, &[]).await, "0A000");
            c.batch_execute("ROLLBACK").await.expect("rollback");
        }
        drop(held);
        let new = c.prepare(write).await.expect("prepare again");
        let rows = c.query(&new, &[]).await.expect("run again");
        assert_eq!(rows[0].get::<_, i64>(0), 8);
        let log = cl.proxy.log();
        assert!(!log.contains("follower detached"), "{log}");
        cl.assert_identical(&["t"]).await;
        cl.assert_verify_ok().await;
    })
    .await
}

/// pgjdbc's `autosave`: a SAVEPOINT Query and the stale statement in one write, inside a
/// transaction. The tags of both answers (and the error's SQLSTATE).
async fn stale_after_savepoint(x: &mut RawConn) -> String {
    x.simple_query("BEGIN").await;
    let batch = [
        wire::query("SAVEPOINT autosave"),
        wire::bind("", "s", &[]),
        wire::execute("", 0),
        wire::sync(),
    ];
    x.send(&batch.concat()).await.expect("send");
    let mut out = String::new();
    for _ in 0..2 {
        for m in x.until_ready_any().await {
            out.push(m.tag as char);
            if m.tag == b'E' {
                out += &format!(" {} ", wire::error_fields(&m.body)[&b'C']);
            }
        }
        out.push('|');
    }
    x.simple_query("ROLLBACK").await;
    out
}

/// Found with pgjdbc (autosave=conservative) in transaction mode: every simple Query counted as
/// a possible COPY, which turned off the shape check of a statement prepared afresh in the
/// same write, so the stale statement ran with the new row type (or failed with 08P01 when
/// the Bind gave result formats for the old columns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_statement_after_a_savepoint_query_fails_as_postgresql_does() {
    within(90, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_mode("transaction").pool_size(2)).await;
        let setup = "CREATE TABLE t(a int); INSERT INTO t VALUES (1)";
        connect_app(proxy.port())
            .await
            .batch_execute(setup)
            .await
            .expect("setup");
        let alter = "ALTER TABLE t ALTER a TYPE bigint";
        let mut x = RawConn::login_password(node.port(), "app", "secret", "app").await;
        prepare_described(&mut x).await;
        connect_app(node.port())
            .await
            .batch_execute(alter)
            .await
            .expect("alter");
        let want = stale_after_savepoint(&mut x).await;
        assert!(want.contains("0A000"), "PostgreSQL: {want}");
        connect_app(proxy.port())
            .await
            .batch_execute("ALTER TABLE t ALTER a TYPE int")
            .await
            .expect("alter back");
        let mut x = RawConn::login_password(proxy.port(), "app", "secret", "app").await;
        let xpid = prepare_described(&mut x).await;
        let (_holder, _y) = hold(proxy.port(), &xpid).await;
        connect_app(proxy.port())
            .await
            .batch_execute(alter)
            .await
            .expect("alter");
        let got = stale_after_savepoint(&mut x).await;
        assert_eq!(got, want, "pgproxy vs PostgreSQL");
    })
    .await
}

/// An unnamed statement parsed again with the same bytes takes its predecessor's result
/// columns only when its own Describe says the same. After a change behind pgproxy's back
/// (on the node directly), the statement is described with the new columns, and bound in a
/// later transaction on another server connection (prepared there afresh) it runs with them,
/// as on PostgreSQL: no "cached plan must not change result type" for what the client was
/// told last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_unnamed_statement_after_a_change_behind_pgproxys_back_keeps_working() {
    within(90, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_mode("transaction").pool_size(2)).await;
        let port = proxy.port();
        let setup = connect_app(port).await;
        setup
            .batch_execute("CREATE TABLE t(a int); INSERT INTO t VALUES (1)")
            .await
            .expect("ddl");
        drop(setup);
        let mut x = RawConn::login_password(port, "app", "secret", "app").await;
        let described = [
            wire::parse("", "SELECT * FROM t"),
            wire::describe(b'S', ""),
            wire::sync(),
        ]
        .concat();
        let columns = |msgs: &[wire::Msg]| {
            let t = msgs
                .iter()
                .find(|m| m.tag == b'T')
                .expect("a RowDescription");
            u16::from_be_bytes([t.body[0], t.body[1]])
        };
        x.send(&described).await.expect("send");
        assert_eq!(columns(&x.until_ready().await), 1);
        node.superuser("app")
            .await
            .batch_execute("ALTER TABLE t ADD b int DEFAULT 7")
            .await
            .expect("alter on the node");
        // The same bytes again, inside a transaction to learn its server connection (with
        // named statements: a simple Query would drop the unnamed statement, as in
        // PostgreSQL).
        x.simple_query("BEGIN").await;
        x.send(&described).await.expect("send");
        assert_eq!(columns(&x.until_ready().await), 2, "told the new columns");
        let named = |name: &str, sql: &str| {
            [
                wire::parse(name, sql),
                wire::bind("", name, &[]),
                wire::execute("", 0),
                wire::sync(),
            ]
            .concat()
        };
        x.send(&named("pid", "SELECT pg_backend_pid()"))
            .await
            .expect("send");
        let xpid = wire::rows(&x.until_ready().await)[0][0]
            .clone()
            .expect("pid");
        x.send(&named("commit", "COMMIT")).await.expect("send");
        x.until_ready().await;
        let (holder, _y) = hold(port, &xpid).await;
        let run = [wire::bind("", "", &[]), wire::execute("", 0), wire::sync()].concat();
        x.send(&run).await.expect("send");
        let msgs = x.until_ready_any().await;
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            panic!("{:?}", wire::error_fields(&e.body));
        }
        assert_eq!(
            wire::rows(&msgs),
            vec![vec![Some("1".to_string()), Some("7".to_string())]]
        );
        holder.batch_execute("COMMIT").await.expect("commit holder");
    })
    .await
}
