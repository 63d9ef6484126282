//! Query paths through the proxy: simple protocol (multi-statement), errors keeping their
//! SQLSTATE, extended protocol with typed parameters, many rows, pipelining, and portals fetched
//! in batches (PortalSuspended).

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_query_runs_every_statement_of_a_string() {
    within(90, "test", async {
        for mode in ["transaction", "session"] {
            let (_node, proxy) = node_and_proxy(|c| c.pool_mode(mode)).await;
            let client = connect_app(proxy.port()).await;
            let rows = simple_rows(&client, "select 1; select 2").await;
            assert_eq!(
                rows,
                vec![vec![Some("1".into())], vec![Some("2".into())]],
                "{mode}"
            );
            let rows = simple_rows(
                &client,
                "create table t(x int); insert into t values (1), (2); select sum(x) from t",
            )
            .await;
            assert_eq!(rows, vec![vec![Some("3".into())]], "{mode}");
            let rows = simple_rows(&client, "select null::text, 'a b'").await;
            assert_eq!(rows, vec![vec![None, Some("a b".into())]], "{mode}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_their_sqlstate_and_the_session_goes_on() {
    within(90, "test", async {
        for mode in ["transaction", "session"] {
            let (_node, proxy) = node_and_proxy(|c| c.pool_mode(mode)).await;
            let client = connect_app(proxy.port()).await;
            for _ in 0..3 {
                expect_sqlstate(client.simple_query("select 1/0").await, "22012");
                assert_eq!(
                    scalar(&client, "select 'after simple error'").await,
                    "after simple error"
                );
                expect_sqlstate(
                    client.query("select * from no_such_table", &[]).await,
                    "42P01",
                );
                let n: i32 = client
                    .query_one("select $1::int4 + 1", &[&41i32])
                    .await
                    .expect("after error")
                    .get(0);
                assert_eq!(n, 42, "{mode}");
            }
            // An error in the middle of a multi-statement string stops it there.
            expect_sqlstate(
                client.simple_query("select 1; select 1/0; select 3").await,
                "22012",
            );
            // An error inside an explicit transaction aborts it until ROLLBACK.
            client.batch_execute("begin").await.expect("begin");
            expect_sqlstate(client.simple_query("select 1/0").await, "22012");
            expect_sqlstate(client.simple_query("select 1").await, "25P02");
            client.batch_execute("rollback").await.expect("rollback");
            assert_eq!(scalar(&client, "select 'usable'").await, "usable", "{mode}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_round_trips_typed_parameters() {
    within(60, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let client = connect_app(proxy.port()).await;
        let ts = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let bytes: Vec<u8> = (0..=255u8).collect();
        let row = client
            .query_one(
                "select $1::int4, $2::int8, $3::text, $4::bytea, $5::int4, $6::timestamptz, $7::timestamp, $8::bool, $9::float8",
                &[&-7i32, &(1i64 << 40), &"héllo 'quoted'", &bytes, &None::<i32>, &ts, &ts, &true, &1.5f64],
            )
            .await
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
        assert_eq!(row.get::<_, i32>(0), -7);
        assert_eq!(row.get::<_, i64>(1), 1i64 << 40);
        assert_eq!(row.get::<_, &str>(2), "héllo 'quoted'");
        assert_eq!(row.get::<_, Vec<u8>>(3), bytes);
        assert_eq!(row.get::<_, Option<i32>>(4), None);
        assert_eq!(row.get::<_, SystemTime>(5), ts);
        assert_eq!(row.get::<_, SystemTime>(6), ts);
        assert!(row.get::<_, bool>(7));
        assert_eq!(row.get::<_, f64>(8), 1.5);

        client.batch_execute("create table typed(id int primary key, name text, data bytea, at timestamptz)").await.expect("ddl");
        let insert = client.prepare("insert into typed values ($1, $2, $3, $4)").await.expect("prepare");
        for i in 0..20i32 {
            let name = (i % 3 != 0).then(|| format!("n{i}"));
            client.execute(&insert, &[&i, &name, &vec![i as u8; i as usize], &ts]).await.expect("insert");
        }
        let rows = client.query("select id, name, data from typed order by id", &[]).await.expect("select");
        assert_eq!(rows.len(), 20);
        for (i, row) in rows.iter().enumerate() {
            let i = i as i32;
            assert_eq!(row.get::<_, i32>(0), i);
            assert_eq!(row.get::<_, Option<String>>(1), (i % 3 != 0).then(|| format!("n{i}")));
            assert_eq!(row.get::<_, Vec<u8>>(2), vec![i as u8; i as usize]);
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_rows_arrive_complete() {
    within(90, "test", async {
        let (_node, proxy) = node_and_proxy(|c| c).await;
        let client = connect_app(proxy.port()).await;
        let rows = client
            .query(
                "select g, repeat('x', 100) from generate_series(1, 100000) g",
                &[],
            )
            .await
            .expect("100k rows");
        assert_eq!(rows.len(), 100_000);
        let sum: i64 = rows.iter().map(|r| r.get::<_, i32>(0) as i64).sum();
        assert_eq!(sum, 100_000 * 100_001 / 2);
        assert!(rows.iter().all(|r| r.get::<_, &str>(1).len() == 100));
        let simple = simple_rows(&client, "select g from generate_series(1, 50000) g").await;
        assert_eq!(simple.len(), 50_000);
        assert_eq!(simple[49_999], vec![Some("50000".to_string())]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_on_one_client_return_in_order() {
    within(60, "test", async {
        for mode in ["transaction", "session"] {
            let (_node, proxy) = node_and_proxy(|c| c.pool_mode(mode)).await;
            let client = connect_app(proxy.port()).await;
            let stmt = client
                .prepare("select $1::int4 * 2, pg_sleep(0.001)::text")
                .await
                .expect("prepare");
            // tokio-postgres writes all of these before reading any answer when polled together.
            let queries = (0..100i32).map(|i| {
                let (client, stmt) = (&client, &stmt);
                async move { (i, client.query_one(stmt, &[&i]).await) }
            });
            for (i, res) in join_all(queries).await {
                let row = res.unwrap_or_else(|e| panic!("{mode} query {i}: {}", describe(&e)));
                assert_eq!(row.get::<_, i32>(0), i * 2, "{mode}");
            }
            let (a, b, c) = tokio::join!(
                client.query("select generate_series(1, 1000)", &[]),
                client.query_one("select 1/0", &[]),
                client.query_one("select 'third'::text", &[]),
            );
            assert_eq!(a.expect("first").len(), 1000, "{mode}");
            expect_sqlstate(b, "22012");
            assert_eq!(
                c.expect("third after an error").get::<_, &str>(0),
                "third",
                "{mode}"
            );
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_fetch_in_batches() {
    within(60, "test", async {
        for mode in ["transaction", "session"] {
            let (_node, proxy) = node_and_proxy(|c| c.pool_mode(mode)).await;
            let mut client = connect_app(proxy.port()).await;
            let tx = client.transaction().await.expect("begin");
            let stmt = tx
                .prepare("select g from generate_series(1, 95) g")
                .await
                .expect("prepare");
            let portal = tx.bind(&stmt, &[]).await.expect("bind");
            let mut seen = Vec::new();
            let mut batches = Vec::new();
            loop {
                let rows = tx.query_portal(&portal, 10).await.expect("fetch 10");
                if rows.is_empty() {
                    break;
                }
                batches.push(rows.len());
                seen.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
                // Other statements may run between fetches while the portal stays open.
                let one: i32 = tx
                    .query_one("select 1", &[])
                    .await
                    .expect("between fetches")
                    .get(0);
                assert_eq!(one, 1);
            }
            assert_eq!(
                batches,
                vec![10, 10, 10, 10, 10, 10, 10, 10, 10, 5],
                "{mode}"
            );
            assert_eq!(seen, (1..=95).collect::<Vec<i32>>(), "{mode}");
            tx.commit().await.expect("commit");
            assert_eq!(
                scalar(&client, "select 'after portal'").await,
                "after portal"
            );
        }
    })
    .await
}
