//! Regressions, each run in both pool modes: DEALLOCATE ALL / DISCARD ALL / RESET ALL and
//! prepared statements, re-preparing after ALTER TABLE, RESET ALL restoring startup settings, an
//! error reaching the client before the rest of its extended batch, COPY data sent without waiting
//! for CopyInResponse, and an error in the middle of a pipeline. Wire sequences are first checked
//! against PostgreSQL itself.

mod common;

use common::wire::{self, Msg, RawConn};
use common::*;
use std::time::Duration;
use tokio_postgres::{Client, Statement};

/// For each `test => body`, a module `test` with tests `transaction` and `session` that run
/// `body(mode)` within `secs` seconds, so that each mode passes or fails on its own.
macro_rules! in_both_modes {
    ($($test:ident => $body:ident, $secs:expr;)*) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn transaction() {
                super::within($secs, "test", super::$body("transaction")).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn session() {
                super::within($secs, "test", super::$body("session")).await
            }
        }
    )*};
}

in_both_modes! {
    deallocate_all_and_discard_all_drop_statements_reset_all_keeps_them => statements_and_resets, 90;
    preparing_again_after_alter_table_sees_the_new_row_type => reprepare_after_alter, 90;
    reset_all_restores_startup_settings => reset_all_restores_startup, 90;
    error_reaching_the_client_before_the_rest_of_its_batch => error_before_rest_of_batch, 90;
    copy_from_stdin_without_waiting_for_copy_in_response => copy_without_waiting, 90;
    error_in_the_middle_of_a_pipeline => pipeline_error, 90;
}

/// Node and proxy in `mode` with `pool_size` server connections.
async fn start(mode: &str, pool_size: usize) -> (PgNode, Proxy) {
    node_and_proxy(|c| c.pool_mode(mode).pool_size(pool_size)).await
}

/// Pool size 1 in transaction mode (clients share one connection), 2 in session mode (so that
/// two clients can be connected at once).
fn size_for(mode: &str) -> usize {
    if mode == "transaction" {
        1
    } else {
        2
    }
}

async fn one_i32(client: &Client, stmt: &Statement, arg: i32, what: &str) -> i32 {
    let row = client.query_one(stmt, &[&arg]).await;
    row.unwrap_or_else(|e| panic!("{what}: {}", describe(&e)))
        .get(0)
}

async fn statements_and_resets(mode: &str) {
    let (_node, proxy) = start(mode, size_for(mode)).await;
    let client = connect_app(proxy.port()).await;
    // Another client's statement must survive `client`'s DEALLOCATE/DISCARD (in transaction mode
    // both run on the one server connection).
    let other = connect_app(proxy.port()).await;
    let sql = "select 40 + $1::int4";
    let theirs = other.prepare(sql).await.expect("prepare (other)");
    for cmd in ["DEALLOCATE ALL", "DISCARD ALL"] {
        let what = format!("{mode}, {cmd}");
        let old = client.prepare(sql).await.expect("prepare");
        assert_eq!(one_i32(&client, &old, 2, &what).await, 42, "{what}");
        let done = client.batch_execute(cmd).await;
        done.unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
        expect_sqlstate(client.query_one(&old, &[&2]).await, "26000");
        let new = client.prepare(sql).await;
        let new = new.unwrap_or_else(|e| panic!("{what}: prepare again: {}", describe(&e)));
        assert_eq!(one_i32(&client, &new, 3, &what).await, 43, "{what}");
        assert_eq!(one_i32(&client, &new, 4, &what).await, 44, "{what}");
        assert_eq!(
            one_i32(&other, &theirs, 5, &what).await,
            45,
            "{what}: other"
        );
    }
    let kept = client
        .prepare("select 10 * $1::int4")
        .await
        .expect("prepare");
    assert_eq!(one_i32(&client, &kept, 1, mode).await, 10, "{mode}");
    client.batch_execute("RESET ALL").await.expect("RESET ALL");
    let what = format!("{mode}: after RESET ALL");
    assert_eq!(one_i32(&client, &kept, 2, &what).await, 20, "{what}");
    assert_eq!(
        one_i32(&other, &theirs, 6, &what).await,
        46,
        "{what}: other"
    );
}

async fn reprepare_after_alter(mode: &str) {
    let (_node, proxy) = start(mode, 1).await;
    let client = connect_app(proxy.port()).await;
    let ddl = "create table t(a int); insert into t values (1)";
    client.batch_execute(ddl).await.expect("ddl");
    let old = client.prepare("select * from t").await.expect("prepare");
    let rows = client.query(&old, &[]).await.expect("run");
    assert_eq!(rows[0].get::<_, i32>(0), 1, "{mode}");
    let alter = "alter table t alter a type bigint";
    if mode == "transaction" {
        // Another client, on the same (only) server connection, changes the table.
        let other = connect_app(proxy.port()).await;
        other.batch_execute(alter).await.expect("alter");
    } else {
        client.batch_execute(alter).await.expect("alter");
    }
    // As on PostgreSQL: "cached plan must not change result type".
    expect_sqlstate(client.query(&old, &[]).await, "0A000");
    for round in 0..2 {
        let what = format!("{mode}, prepare again, round {round}");
        let new = client.prepare("select * from t").await;
        let new = new.unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
        let rows = client.query(&new, &[]).await;
        let rows = rows.unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
        assert_eq!(rows.len(), 1, "{what}");
        assert_eq!(rows[0].get::<_, i64>(0), 1, "{what}");
    }
    // A client that never saw the old plan (same server connection: pool_size 1).
    drop(client);
    let fresh = connect_app(proxy.port()).await;
    let stmt = fresh.prepare("select * from t").await.expect("prepare");
    let rows = fresh.query(&stmt, &[]).await;
    let rows = rows.unwrap_or_else(|e| panic!("{mode}, fresh client: {}", describe(&e)));
    assert_eq!(rows[0].get::<_, i64>(0), 1, "{mode}, fresh client");
}

async fn reset_all_restores_startup(mode: &str) {
    let (_node, proxy) = start(mode, size_for(mode)).await;
    let mut cfg = pg_config(proxy.port(), "app", "secret", "app");
    cfg.application_name("startup_app")
        .options("-c work_mem=5MB");
    let client = connect_with(&cfg).await;
    let client = client.unwrap_or_else(|e| panic!("{}", describe(&e)));
    let other = connect_app(proxy.port()).await;
    // Interleaved with a client without settings (transaction mode: the same server connection).
    let check = |app: &'static str, mem: &'static str, step: &'static str| {
        let (client, other) = (&client, &other);
        async move {
            let what = format!("{mode}, {step}");
            assert_eq!(scalar(other, "show work_mem").await, "4MB", "{what}: other");
            assert_eq!(scalar(client, "show application_name").await, app, "{what}");
            assert_eq!(scalar(other, "show work_mem").await, "4MB", "{what}: other");
            assert_eq!(scalar(client, "show work_mem").await, mem, "{what}");
            assert_ne!(scalar(other, "show application_name").await, app, "{what}");
        }
    };
    check("startup_app", "5MB", "after connect").await;
    let set = "SET application_name = 'x'; SET work_mem = '7MB'";
    client.batch_execute(set).await.expect("set");
    check("x", "7MB", "after SET").await;
    client.batch_execute("RESET ALL").await.expect("reset all");
    check("startup_app", "5MB", "after RESET ALL").await;
    check("startup_app", "5MB", "again after RESET ALL").await;
}

/// Reads through the next ReadyForQuery: the messages before it and its status byte.
async fn until_z(conn: &mut RawConn, who: &str) -> (Vec<Msg>, u8) {
    let mut msgs = Vec::new();
    loop {
        let msg = conn.recv().await;
        let msg = msg.unwrap_or_else(|| panic!("{who}: closed before ReadyForQuery: {msgs:?}"));
        if msg.tag == b'Z' {
            return (msgs, msg.body[0]);
        }
        msgs.push(msg);
    }
}

/// Asserts the type bytes of `msgs` and the ReadyForQuery status after them.
#[track_caller]
fn assert_tags(got: &(Vec<Msg>, u8), tags: &str, who: &str) {
    let got_tags: String = got.0.iter().map(|m| m.tag as char).collect();
    let got_status = got.1 as char;
    assert_eq!(
        (got_tags.as_str(), got_status),
        (tags, 'I'),
        "{who}: {:?}",
        got.0
    );
}

/// Asserts nothing more arrives within 300 ms.
async fn assert_quiet(conn: &mut RawConn, who: &str) {
    if let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), conn.recv()).await {
        panic!(
            "{who}: unexpected {:?}",
            msg.map(|m| (m.tag as char, m.body))
        );
    }
}

/// Simple Query `select 3`: exactly RowDescription, DataRow 3, CommandComplete, ReadyForQuery(I).
async fn assert_select_3(conn: &mut RawConn, who: &str) {
    conn.send(&wire::query("select 3"))
        .await
        .expect("send Query");
    let got = until_z(conn, who).await;
    assert_tags(&got, "TDC", who);
    assert_eq!(
        wire::rows(&got.0),
        vec![vec![Some("3".to_string())]],
        "{who}"
    );
}

async fn error_then_rest_of_batch(port: u16, who: &str) {
    let mut conn = RawConn::login_password(port, "app", "secret", "app").await;
    let first = [
        wire::parse("", "select 1/0"),
        wire::bind("", "", &[]),
        wire::describe(b'P', ""),
        wire::execute("", 0),
        wire::flush(),
    ];
    conn.send(&first.concat()).await.expect("send batch");
    let err = loop {
        let msg = conn.recv().await.unwrap_or_else(|| panic!("{who}: closed"));
        if msg.tag == b'E' {
            break msg;
        }
        let tag = msg.tag as char;
        assert!("12T".contains(tag), "{who}: {tag:?} before the error");
    };
    let code = wire::error_fields(&err.body).remove(&b'C');
    assert_eq!(code.as_deref(), Some("22012"), "{who}");
    assert_quiet(&mut conn, &format!("{who}, before Sync")).await;
    let rest = [
        wire::parse("", "select 2"),
        wire::bind("", "", &[]),
        wire::describe(b'P', ""),
        wire::execute("", 0),
        wire::sync(),
    ];
    conn.send(&rest.concat()).await.expect("send rest");
    // Everything up to Sync is skipped: ReadyForQuery and nothing before it.
    assert_tags(&until_z(&mut conn, who).await, "", who);
    assert_select_3(&mut conn, who).await;
}

async fn error_before_rest_of_batch(mode: &str) {
    let (node, proxy) = start(mode, size_for(mode)).await;
    error_then_rest_of_batch(node.port(), &format!("{mode}: PostgreSQL")).await;
    error_then_rest_of_batch(proxy.port(), &format!("{mode}: pgproxy")).await;
    // Again, on the same pooled server connection.
    error_then_rest_of_batch(proxy.port(), &format!("{mode}: pgproxy, 2nd")).await;
}

async fn copy_steps(port: u16, who: &str) {
    let mut conn = RawConn::login_password(port, "app", "secret", "app").await;
    conn.simple_query("truncate t").await;
    let simple = [
        wire::query("COPY t FROM STDIN"),
        wire::copy_data(b"1\n2\n3\n"),
        wire::copy_done(),
    ];
    conn.send(&simple.concat()).await.expect("send copy");
    let got = until_z(&mut conn, who).await;
    assert_tags(&got, "GC", who);
    assert_eq!(&got.0[1].body[..], b"COPY 3\0", "{who}");
    let count = conn.simple_query("select count(*) from t").await;
    assert_eq!(count, vec![vec![Some("3".to_string())]], "{who}");

    let who = &format!("{who}, extended");
    let extended = [
        wire::parse("", "COPY t FROM STDIN"),
        wire::bind("", "", &[]),
        wire::execute("", 0),
        wire::sync(),
        wire::copy_data(b"4\n5\n"),
        wire::copy_done(),
        wire::sync(),
    ];
    conn.send(&extended.concat()).await.expect("send copy");
    let got = until_z(&mut conn, who).await;
    assert_tags(&got, "12GC", who);
    assert_eq!(&got.0[3].body[..], b"COPY 2\0", "{who}");
    // The Sync sent during copy-in is ignored: one ReadyForQuery only.
    assert_quiet(&mut conn, who).await;
    // This client is idle: another one gets a connection (transaction mode: the only one).
    let other = connect(port, "app", "secret", "app").await;
    let other = other.unwrap_or_else(|e| panic!("{who}: other client: {}", describe(&e)));
    let res = other.simple_query("select 1").await;
    res.unwrap_or_else(|e| panic!("{who}: other client: {}", describe(&e)));
    drop(other);
    let count = conn.simple_query("select count(*) from t").await;
    assert_eq!(count, vec![vec![Some("5".to_string())]], "{who}");
    let select = [
        wire::parse("", "select 6"),
        wire::bind("", "", &[]),
        wire::execute("", 0),
        wire::sync(),
    ];
    conn.send(&select.concat()).await.expect("send select");
    let got = until_z(&mut conn, who).await;
    assert_tags(&got, "12DC", who);
    assert_eq!(
        wire::rows(&got.0),
        vec![vec![Some("6".to_string())]],
        "{who}"
    );
    assert_select_3(&mut conn, who).await;
}

async fn copy_without_waiting(mode: &str) {
    let (node, proxy) = start(mode, size_for(mode)).await;
    let ddl = connect_app(proxy.port()).await;
    ddl.batch_execute("create table t(a int)")
        .await
        .expect("ddl");
    drop(ddl);
    copy_steps(node.port(), &format!("{mode}: PostgreSQL")).await;
    copy_steps(proxy.port(), &format!("{mode}: pgproxy")).await;
    copy_steps(proxy.port(), &format!("{mode}: pgproxy, 2nd")).await;
}

async fn pipeline_error(mode: &str) {
    let (_node, proxy) = start(mode, size_for(mode)).await;
    let client = connect_app(proxy.port()).await;
    for round in 0..3 {
        let (a, b, c) = tokio::join!(
            client.query("select 1::int4", &[]),
            client.query("select 1/0", &[]),
            client.query("select 3::int4", &[]),
        );
        let what = format!("{mode}, round {round}");
        let a = a.unwrap_or_else(|e| panic!("{what}: first: {}", describe(&e)));
        assert_eq!(a[0].get::<_, i32>(0), 1, "{what}");
        expect_sqlstate(b, "22012");
        let c = c.unwrap_or_else(|e| panic!("{what}: third: {}", describe(&e)));
        assert_eq!(c[0].get::<_, i32>(0), 3, "{what}");
    }
    assert_eq!(scalar(&client, "select 'after'").await, "after", "{mode}");
}
