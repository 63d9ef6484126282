//! Transaction pooling: many clients share few server connections, yet each keeps its own
//! prepared statements and session settings (SET, startup parameters), and the pool stays bounded.

mod common;

use common::wire::{self, RawConn};
use common::*;
use futures_util::future::join_all;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_of_many_clients_share_two_connections() {
    within(240, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_size(2).checkout_timeout_ms(30_000)).await;
        connect_app(proxy.port())
            .await
            .batch_execute("create table kv(k int primary key, v text)")
            .await
            .expect("ddl");
        let port = proxy.port();
        let clients = (0..20i32).map(|i| async move {
            let mut client = connect_app(port).await;
            let add = client.prepare("select $1::int4 + $2::int4").await.expect("prepare add");
            let label = client.prepare("select upper($1::text) || $2::int4::text").await.expect("prepare label");
            let upsert = client
                .prepare("insert into kv(k, v) values ($1, $2) on conflict (k) do update set v = excluded.v returning v")
                .await
                .expect("prepare upsert");
            for j in 0..50i32 {
                let sum: i32 = client.query_one(&add, &[&i, &j]).await.expect("add").get(0);
                assert_eq!(sum, i + j, "client {i} round {j}");
                let text: String = client.query_one(&label, &[&format!("c{i}x"), &j]).await.expect("label").get(0);
                assert_eq!(text, format!("C{i}X{j}"));
                if j % 10 == 0 {
                    let tx = client.transaction().await.expect("begin");
                    let k = i * 1000 + j;
                    let v: String = tx.query_one(&upsert, &[&k, &format!("v{k}")]).await.expect("upsert").get(0);
                    assert_eq!(v, format!("v{k}"));
                    let again: i32 = tx.query_one(&add, &[&k, &1]).await.expect("add in tx").get(0);
                    assert_eq!(again, k + 1);
                    tx.commit().await.expect("commit");
                }
            }
            client
        });
        // Sample the node's connections for `app` while the clients run.
        let monitor = node.superuser("app").await;
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let peak = tokio::spawn(async move {
            let mut peak = 0u32;
            loop {
                let n = scalar(&monitor, "select count(*) from pg_stat_activity where usename = 'app'").await;
                peak = peak.max(n.parse().expect("count"));
                if done_rx.try_recv().is_ok() {
                    return peak;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
        let clients = join_all(clients).await;
        assert_eq!(scalar(&clients[0], "select count(*) from kv").await, "100");
        // All 20 clients are still connected here.
        let now = node.scalar("select count(*) from pg_stat_activity where usename = 'app'").await;
        let now: u32 = now.parse().expect("count");
        assert!(now <= 2, "pool_size 2 but the node has {now} connections for app");
        done_tx.send(()).expect("monitor alive");
        let peak = peak.await.expect("monitor task");
        assert!(peak <= 2, "pool_size 2 but the node had up to {peak} connections for app");
        drop(clients);
    })
    .await
}

/// Two clients prepare different statements under the same name; with one server connection the
/// proxy must keep them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_statement_name_from_two_clients_does_not_mix() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(1)).await;
        let mut a = RawConn::login_trust(proxy.port(), "trustuser", "app").await;
        let mut b = RawConn::login_trust(proxy.port(), "trustuser", "app").await;
        let prepare = |sql: &str| [wire::parse("dup", sql), wire::sync()].concat();
        a.send(&prepare("select 'A' || $1::text"))
            .await
            .expect("parse A");
        a.until_ready().await;
        b.send(&prepare("select 'B', $1::int4 * 2"))
            .await
            .expect("parse B");
        b.until_ready().await;
        for i in 0..30 {
            let arg = i.to_string();
            let run = [
                wire::bind("", "dup", &[Some(&arg)]),
                wire::execute("", 0),
                wire::sync(),
            ]
            .concat();
            a.send(&run).await.expect("run A");
            b.send(&run).await.expect("run B");
            let rows_a = wire::rows(&a.until_ready().await);
            let rows_b = wire::rows(&b.until_ready().await);
            assert_eq!(rows_a, vec![vec![Some(format!("A{i}"))]]);
            assert_eq!(
                rows_b,
                vec![vec![Some("B".into()), Some((i * 2).to_string())]]
            );
        }
        let pid_a = a.simple_query("select pg_backend_pid()").await;
        let pid_b = b.simple_query("select pg_backend_pid()").await;
        assert_eq!(
            pid_a, pid_b,
            "pool_size 1: both clients run on the same server connection"
        );
        // Closing one client's statement leaves the other's in place.
        let close = [wire::message(b'C', b"Sdup\0"), wire::sync()].concat();
        a.send(&close).await.expect("close A");
        a.until_ready().await;
        b.send(
            &[
                wire::bind("", "dup", &[Some("5")]),
                wire::execute("", 0),
                wire::sync(),
            ]
            .concat(),
        )
        .await
        .expect("run B after A closed");
        assert_eq!(
            wire::rows(&b.until_ready().await),
            vec![vec![Some("B".into()), Some("10".into())]]
        );
        a.send(
            &[
                wire::bind("", "dup", &[Some("5")]),
                wire::execute("", 0),
                wire::sync(),
            ]
            .concat(),
        )
        .await
        .expect("run A after close");
        let msgs = a.until_ready_any().await;
        let err = msgs
            .iter()
            .find(|m| m.tag == b'E')
            .expect("A's statement is gone");
        assert_eq!(
            wire::error_fields(&err.body).get(&b'C').map(String::as_str),
            Some("26000")
        );
    })
    .await
}

const SHOW_ALL: &str =
    "show search_path; show statement_timeout; show application_name; show timezone";

async fn settings(client: &tokio_postgres::Client) -> Vec<String> {
    simple_rows(client, SHOW_ALL)
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_commands_follow_each_client_across_one_shared_connection() {
    within(120, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(1)).await;
        let a = Arc::new(connect_app(proxy.port()).await);
        let b = Arc::new(connect_app(proxy.port()).await);
        let plain = Arc::new(connect_app(proxy.port()).await);
        let defaults = settings(&plain).await;
        let pid = |c: Arc<tokio_postgres::Client>| async move { scalar(&c, "select pg_backend_pid()").await };
        let (pid_a, pid_b) = tokio::join!(pid(a.clone()), pid(b.clone()));
        assert_eq!(pid_a, pid_b, "pool_size 1: both clients run on the same server connection");
        a.batch_execute("SET search_path TO s1, public").await.expect("set");
        a.batch_execute("SET statement_timeout = '1234ms'").await.expect("set");
        a.batch_execute("SET application_name = 'a'").await.expect("set");
        a.batch_execute("SET TimeZone = 'Asia/Tokyo'").await.expect("set");
        b.batch_execute("SET search_path TO s2, public; SET statement_timeout = '4321ms'; \
                         SET application_name = 'b'; SET TimeZone = 'America/New_York'")
            .await
            .expect("set");
        let want_a = ["s1, public", "1234ms", "a", "Asia/Tokyo"].map(String::from).to_vec();
        let want_b = ["s2, public", "4321ms", "b", "America/New_York"].map(String::from).to_vec();
        let check = |client: Arc<tokio_postgres::Client>, want: Vec<String>, who: &'static str| async move {
            for round in 0..25 {
                assert_eq!(settings(&client).await, want, "{who}, round {round}");
                let path: String = client.query_one("select current_setting('search_path')", &[]).await.expect("q").get(0);
                assert_eq!(path, want[0], "{who} (extended), round {round}");
            }
        };
        tokio::join!(
            check(a.clone(), want_a.clone(), "a"),
            check(b.clone(), want_b.clone(), "b"),
            check(plain.clone(), defaults.clone(), "client without SETs"),
        );
        assert_ne!(defaults[3], "Asia/Tokyo");

        // Rolled back: not kept. SET LOCAL: not kept past its transaction. Committed SET: kept.
        a.batch_execute("BEGIN; SET search_path TO rolled_back; ROLLBACK").await.expect("rollback");
        a.batch_execute("BEGIN; SET LOCAL statement_timeout = '99ms'; COMMIT").await.expect("local");
        a.batch_execute("BEGIN; SET application_name = 'a2'; COMMIT").await.expect("commit");
        for _ in 0..5 {
            b.batch_execute("select 1").await.expect("interleave b");
            let want = ["s1, public", "1234ms", "a2", "Asia/Tokyo"].map(String::from).to_vec();
            assert_eq!(settings(&a).await, want);
            assert_eq!(settings(&b).await, want_b);
        }
        // RESET brings back the default, for this client only.
        a.batch_execute("RESET statement_timeout").await.expect("reset");
        b.batch_execute("select 1").await.expect("interleave b");
        assert_eq!(scalar(&a, "show statement_timeout").await, defaults[1]);
        assert_eq!(scalar(&b, "show statement_timeout").await, "4321ms");
    })
    .await
}

/// A startup setting the node refuses gets the node's SQLSTATE, as from PostgreSQL itself (not
/// an authorization error: drivers treat 28000 as a wrong password).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_startup_setting_gets_the_nodes_sqlstate() {
    within(60, "test", async {
        let (node, proxy) = node_and_proxy(|c| c.pool_size(2)).await;
        for (option, code) in [
            ("-c statement_timeout=banana", "22023"),
            ("-c no_such_setting_at_all=1", "42704"),
        ] {
            for port in [node.port(), proxy.port()] {
                let mut cfg = pg_config(port, "app", "secret", "app");
                cfg.options(option);
                let e = expect_sqlstate(connect_with(&cfg).await, code);
                let what = format!("{option} on port {port}: {}", describe(&e));
                assert!(describe(&e).contains("parameter"), "{what}");
            }
        }
        // The pool is fine afterwards.
        assert_eq!(
            scalar(&connect_app(proxy.port()).await, "SELECT 1").await,
            "1"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_follow_each_client() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(1)).await;
        let mut cfg = pg_config(proxy.port(), "app", "secret", "app");
        cfg.application_name("from_startup")
            .options("-c search_path=d1,public -c statement_timeout=777");
        let d = connect_with(&cfg)
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        let other = connect_app(proxy.port()).await;
        for _ in 0..10 {
            assert_eq!(scalar(&d, "show application_name").await, "from_startup");
            assert_eq!(scalar(&d, "show search_path").await, "d1,public");
            assert_eq!(scalar(&d, "show statement_timeout").await, "777ms");
            assert_eq!(
                scalar(&other, "show search_path").await,
                "\"$user\", public"
            );
            assert_ne!(
                scalar(&other, "show application_name").await,
                "from_startup"
            );
            assert_eq!(scalar(&other, "show statement_timeout").await, "0");
        }
        // A SET overrides the startup value and is kept.
        d.batch_execute("set application_name = 'changed'")
            .await
            .expect("set");
        other.batch_execute("select 1").await.expect("interleave");
        assert_eq!(scalar(&d, "show application_name").await, "changed");
        assert_eq!(scalar(&d, "show search_path").await, "d1,public");
    })
    .await
}

/// currval / lastval read the session's sequence state, which lives on a server connection.
/// A client gets the connection it used last when it is idle (its own value, as from one
/// session); otherwise the connection forgets the other clients' state first, so the client
/// sees 55000 (as a session that never called nextval), never another client's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn currval_never_answers_with_another_clients_value() {
    within(120, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c.pool_size(3)).await;
        let port = proxy.port();
        let (mut a, mut b, mut d) = (
            connect_app(port).await,
            connect_app(port).await,
            connect_app(port).await,
        );
        a.batch_execute("CREATE TABLE seqt (id serial PRIMARY KEY, v text)")
            .await
            .expect("ddl");
        // A's insert runs on X, B's transaction on Y; both go back idle (Y on top).
        let ta = a.transaction().await.expect("begin a");
        ta.execute("INSERT INTO seqt (v) VALUES ('a')", &[])
            .await
            .expect("insert a");
        let tb = b.transaction().await.expect("begin b");
        tb.execute("SELECT 1", &[]).await.expect("select b");
        ta.commit().await.expect("commit a");
        tb.commit().await.expect("commit b");
        // A's currval: its own connection (X), its own value.
        assert_eq!(scalar(&a, "SELECT currval('seqt_id_seq')").await, "1");
        // B never called nextval: 55000, as in PostgreSQL.
        let e = b
            .simple_query("SELECT currval('seqt_id_seq')")
            .await
            .expect_err("B has no currval");
        assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e:?}");
        // B inserts (id 2); A's lastval is still 1.
        b.execute("INSERT INTO seqt (v) VALUES ('b')", &[])
            .await
            .expect("insert b");
        assert_eq!(scalar(&a, "SELECT lastval()").await, "1");
        assert_eq!(scalar(&b, "SELECT currval('seqt_id_seq')").await, "2");
        let named = a
            .prepare("SELECT currval('seqt_id_seq')")
            .await
            .expect("prepare");
        assert_eq!(
            a.query_one(&named, &[])
                .await
                .expect("named currval")
                .get::<_, i64>(0),
            1
        );
        // D holds A's connection: A gets another one, which must not answer with B's 2.
        let td = d.transaction().await.expect("begin d");
        td.execute("SELECT 1", &[]).await.expect("select d");
        for _ in 0..3 {
            // A named statement prepared earlier: its Bind alone checks the connection out.
            match a.query_one(&named, &[]).await {
                Ok(row) => assert_eq!(row.get::<_, i64>(0), 1, "A's currval (named)"),
                Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e:?}"),
            }
            match a.simple_query("SELECT currval('seqt_id_seq')").await {
                Ok(rows) => {
                    let got = rows.iter().find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                        _ => None,
                    });
                    assert_eq!(got.as_deref(), Some("1"), "A's currval");
                }
                Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e:?}"),
            }
            // The extended protocol too (Parse/Bind of an unnamed statement).
            match a.query_one("SELECT lastval()", &[]).await {
                Ok(row) => assert_eq!(row.get::<_, i64>(0), 1, "A's lastval"),
                Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("55000"), "{e:?}"),
            }
        }
        td.commit().await.expect("commit d");
    })
    .await
}
