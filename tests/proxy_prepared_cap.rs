//! `max_prepared_statements`: a server connection keeps at most that many shared statements;
//! the least recently used are closed and prepared again when needed, invisibly to clients.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_keep_at_most_the_configured_statements() {
    within(120, "test", async {
        let (_node, proxy) = node_and_proxy(|c| {
            c.pool_mode("transaction")
                .pool_size(1)
                .general("max_prepared_statements", 3)
        })
        .await;
        let client = connect_app(proxy.port()).await;
        let mut statements = Vec::new();
        for i in 0..10 {
            let sql = format!("select $1::int + {i}");
            statements.push(client.prepare(&sql).await.expect("prepare"));
        }
        for round in 0..5 {
            for (i, st) in statements.iter().enumerate() {
                let row = client.query_one(st, &[&round]).await.expect("execute");
                assert_eq!(row.get::<_, i32>(0), round + i as i32);
            }
        }
        let held: i64 = client
            .query_one(
                "select count(*) from pg_prepared_statements where name like 'pgproxy_%'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        // The cap, plus the statement of this very query.
        assert!(held <= 4, "server connection holds {held} statements");
        // A second client reuses the shared statements correctly too.
        let other = connect_app(proxy.port()).await;
        let st = other.prepare("select $1::int + 7").await.expect("prepare");
        assert_eq!(
            other
                .query_one(&st, &[&1])
                .await
                .expect("run")
                .get::<_, i32>(0),
            8
        );
    })
    .await
}
