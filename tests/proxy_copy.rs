//! COPY through the proxy: FROM STDIN (100k rows), TO STDOUT (byte-exact), and errors or a
//! client abort in the middle of a COPY leaving the session usable.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, TryStreamExt};
use std::pin::pin;

const ROWS: usize = 100_000;

/// Tab-separated COPY text: `id \t name_id \n` for 1..=rows, with row `bad_at` (if any) broken.
fn copy_text(rows: usize, bad_at: Option<usize>) -> String {
    (1..=rows)
        .map(|i| match bad_at {
            Some(b) if b == i => "not_a_number\toops\n".to_string(),
            _ => format!("{i}\tname_{i}\n"),
        })
        .collect()
}

async fn copy_in(
    client: &tokio_postgres::Client,
    text: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in("COPY big(id, name) FROM STDIN").await?;
    let mut sink = pin!(sink);
    for chunk in text.as_bytes().chunks(64 * 1024) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_round_trip_100k_rows() {
    within(120, "test", async {
        for mode in ["transaction", "session"] {
            let (_node, proxy) = node_and_proxy(|c| c.pool_mode(mode)).await;
            let client = connect_app(proxy.port()).await;
            client
                .batch_execute("create table big(id int primary key, name text)")
                .await
                .expect("ddl");
            let text = copy_text(ROWS, None);
            let n = copy_in(&client, &text)
                .await
                .unwrap_or_else(|e| panic!("{mode}: {}", describe(&e)));
            assert_eq!(n, ROWS as u64, "{mode}");
            let row = client
                .query_one("select count(*), sum(id) from big", &[])
                .await
                .expect("count");
            assert_eq!(row.get::<_, i64>(0), ROWS as i64);
            assert_eq!(row.get::<_, i64>(1), (ROWS * (ROWS + 1) / 2) as i64);

            let out = client
                .copy_out("COPY (select id, name from big order by id) TO STDOUT")
                .await
                .expect("copy out");
            let chunks: Vec<Bytes> = out.try_collect().await.expect("copy out data");
            let got: Vec<u8> = chunks.concat();
            assert_eq!(got.len(), text.len(), "{mode}");
            assert!(
                got == text.as_bytes(),
                "{mode}: COPY TO STDOUT content differs"
            );
            assert_eq!(scalar(&client, "select 'after copy'").await, "after copy");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_errors_leave_the_session_usable() {
    within(120, "test", async {
        for mode in ["transaction", "session"] {
            let (_node, proxy) = node_and_proxy(|c| c.pool_mode(mode).pool_size(1)).await;
            let client = connect_app(proxy.port()).await;
            client
                .batch_execute("create table big(id int primary key, name text)")
                .await
                .expect("ddl");

            // A bad row in the middle: the server rejects the COPY, nothing is inserted.
            let err = copy_in(&client, &copy_text(20_000, Some(10_000)))
                .await
                .expect_err("bad row must fail");
            assert_eq!(
                sqlstate(&err).as_deref(),
                Some("22P02"),
                "{mode}: {}",
                describe(&err)
            );
            assert_eq!(
                scalar(&client, "select count(*) from big").await,
                "0",
                "{mode}"
            );

            // The client gives up mid-stream (dropping the sink sends CopyFail).
            {
                let sink = client
                    .copy_in::<_, Bytes>("COPY big(id, name) FROM STDIN")
                    .await
                    .expect("copy in");
                let mut sink = pin!(sink);
                sink.send(Bytes::from_static(b"1\tone\n2\ttwo\n"))
                    .await
                    .expect("send");
            }
            assert_eq!(
                scalar(&client, "select count(*) from big").await,
                "0",
                "{mode}"
            );

            // COPY of an unknown table fails up front. (Simple protocol: tokio-postgres's copy_in
            // sends a stray Sync when the COPY never starts, which would confuse the next request.)
            expect_sqlstate(client.simple_query("COPY nope FROM STDIN").await, "42P01");

            // The session, and with pool_size 1 the only server connection, still work.
            assert_eq!(
                copy_in(&client, &copy_text(100, None))
                    .await
                    .expect("good copy"),
                100
            );
            // In session mode the first client holds the only server connection until it leaves.
            drop(client);
            let other = connect_app(proxy.port()).await;
            assert_eq!(
                scalar(&other, "select count(*) from big").await,
                "100",
                "{mode}"
            );
        }
    })
    .await
}
