//! `COPY … FROM STDIN` on a replicated shard whose column list leaves out columns with
//! non-deterministic defaults (serial, identity, now(), gen_random_uuid(), random()): pgproxy
//! fills in those columns itself, so every node stores the same rows and the sequences stay
//! equal. Driven by psql's `\copy` (the way a DBA loads a file) and raw protocol messages.

mod common;

use common::cluster::*;
use common::wire::{self, RawConn};
use common::workloads::*;
use common::*;
use std::fmt::Write as _;

const TABLE: &str = "CREATE TABLE c (id serial PRIMARY KEY, name text NOT NULL, note text, \
     at timestamptz DEFAULT now(), u uuid DEFAULT gen_random_uuid(), r float8 DEFAULT random(), \
     n int GENERATED ALWAYS AS IDENTITY, k text DEFAULT 'k')";

async fn psql_ok(cl: &ReplCluster, sql: &str) -> String {
    let out = psql(cl.port(), "app", "secret", "app", sql).await;
    assert!(out.status.success(), "psql {sql}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// Every node: `sql` gives `want`.
async fn on_every_node(cl: &ReplCluster, sql: &str, want: &str) {
    for node in &cl.nodes {
        assert_eq!(node.scalar(sql).await, want, "node {}: {sql}", node.port());
    }
}

/// CopyData with `rows` one-column rows, then CopyDone.
fn copy_msgs(rows: usize) -> Vec<u8> {
    let mut data = String::new();
    for i in 0..rows {
        writeln!(data, "r{i}").unwrap();
    }
    let mut out = wire::copy_data(data.as_bytes());
    out.extend(wire::copy_done());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_leaving_out_serial_and_volatile_defaults_fills_identical_rows() {
    within(180, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(&c, TABLE).await;
        let dir = tempfile::tempdir().unwrap();
        // CSV with a header, quoted commas, quotes and line feeds, and more rows than one batch.
        let mut csv = String::from("name,note\n");
        for i in 0..5000 {
            match i % 3 {
                0 => writeln!(csv, "n{i},plain").unwrap(),
                1 => writeln!(csv, "\"n{i}, with comma\",\"two\nlines \"\"q\"\"\"").unwrap(),
                _ => writeln!(csv, "n{i},").unwrap(),
            }
        }
        let path = dir.path().join("c.csv");
        std::fs::write(&path, csv).unwrap();
        let got = psql_ok(
            &cl,
            &format!("\\copy c (name, note) from '{}' with (format csv, header true)", path.display()),
        )
        .await;
        assert_eq!(got, "COPY 5000");
        // Text format, default options, escaped tab and line feed, no final line feed.
        let mut text = String::new();
        for i in 0..3000 {
            writeln!(text, "t{i}\\tx\tline\\nfeed").unwrap();
        }
        text.push_str("last\t\\N");
        let path = dir.path().join("c.txt");
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            psql_ok(&cl, &format!("\\copy c (name, note) from '{}'", path.display())).await,
            "COPY 3001"
        );
        for node in &cl.nodes {
            let row = node
                .psql_direct("SELECT count(*), count(DISTINCT id), min(id), max(id), count(DISTINCT n), count(DISTINCT u), count(DISTINCT at), count(*) FILTER (WHERE k = 'k') FROM c");
            assert_eq!(row.trim(), "8001|8001|1|8001|8001|8001|2|8001", "node {}", node.port());
        }
        on_every_node(&cl, "SELECT count(*) FROM c WHERE note = E'two\\nlines \"q\"'", "1667").await;
        on_every_node(&cl, "SELECT count(*) FROM c WHERE name = E't7\\tx' AND note = E'line\\nfeed'", "1").await;
        cl.assert_verify_ok().await;
        // The sequences moved alike: the next rows get the same new ids everywhere.
        on_every_node(&cl, "SELECT last_value FROM c_id_seq", "8001").await;
        on_every_node(&cl, "SELECT last_value FROM c_n_seq", "8001").await;
        exec(&c, "INSERT INTO c (name) VALUES ('after')").await;
        on_every_node(&cl, "SELECT id || '/' || n FROM c WHERE name = 'after'", "8002/8002").await;
        cl.assert_verify_ok().await;
    })
    .await
}

/// COPY in a transaction: the clock default is the transaction's time (as in PostgreSQL), a
/// rolled back COPY leaves nothing, a bad row fails the COPY on every node, inserts running
/// meanwhile get ids of their own, and binary data is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fill_in_transactions_with_failures_and_concurrent_inserts() {
    within(180, "test", async {
        let cl = ReplCluster::start(2, |c| c).await;
        let c = cl.client().await;
        exec(&c, TABLE).await;
        let mut raw = RawConn::login_password(cl.port(), "app", "secret", "app").await;
        raw.simple_query("BEGIN").await;
        let ts = raw.simple_query("SELECT now()::text").await[0][0]
            .clone()
            .unwrap();
        raw.send(&wire::query("COPY c (name) FROM STDIN"))
            .await
            .unwrap();
        let data = copy_msgs(2500);
        raw.send(&data).await.unwrap();
        let got = raw.until_ready_any().await;
        assert!(got.iter().all(|m| m.tag != b'E'), "{got:?}");
        raw.simple_query("COMMIT").await;
        on_every_node(
            &cl,
            &format!("SELECT count(*) FROM c WHERE at = '{ts}'"),
            "2500",
        )
        .await;
        // Rolled back: nothing stays, the sequences still agree.
        raw.simple_query("BEGIN").await;
        raw.send(&wire::query("COPY c (name) FROM STDIN"))
            .await
            .unwrap();
        let data = copy_msgs(100);
        raw.send(&data).await.unwrap();
        raw.until_ready_any().await;
        raw.simple_query("ROLLBACK").await;
        on_every_node(&cl, "SELECT count(*) FROM c", "2500").await;
        on_every_node(&cl, "SELECT last_value FROM c_id_seq", "2600").await;
        // A bad row (NULL name) in the second batch: the COPY fails, on every node.
        let mut data = String::new();
        for i in 0..3000 {
            if i == 2500 {
                data.push_str("\\N\n");
            } else {
                writeln!(data, "b{i}").unwrap();
            }
        }
        raw.send(&wire::query("COPY c (name) FROM STDIN"))
            .await
            .unwrap();
        let mut msg = wire::copy_data(data.as_bytes());
        msg.extend(wire::copy_done());
        raw.send(&msg).await.unwrap();
        let got = raw.until_ready_any().await;
        let e = got
            .iter()
            .find(|m| m.tag == b'E')
            .expect("the bad row fails the COPY");
        assert_eq!(wire::error_fields(&e.body)[&b'C'], "23502");
        on_every_node(&cl, "SELECT count(*) FROM c", "2500").await;
        // Inserts from other clients while a big COPY runs: their own ids, identical nodes.
        let port = cl.port();
        let inserts = tokio::spawn(async move {
            let c = connect_app(port).await;
            for i in 0..300 {
                c.execute("INSERT INTO c (name) VALUES ($1)", &[&format!("i{i}")])
                    .await
                    .unwrap();
            }
        });
        raw.send(&wire::query("COPY c (name) FROM STDIN"))
            .await
            .unwrap();
        for chunk in 0..20 {
            let mut data = String::new();
            for i in 0..500 {
                writeln!(data, "big{chunk}-{i}").unwrap();
            }
            raw.send(&wire::copy_data(data.as_bytes())).await.unwrap();
        }
        raw.send(&wire::copy_done()).await.unwrap();
        let got = raw.until_ready_any().await;
        assert!(got.iter().all(|m| m.tag != b'E'), "{got:?}");
        inserts.await.unwrap();
        on_every_node(&cl, "SELECT count(*) FROM c", "12800").await;
        on_every_node(&cl, "SELECT count(DISTINCT id) FROM c", "12800").await;
        cl.assert_verify_ok().await;
        // Binary data: pgproxy cannot add values to it.
        raw.send(&wire::query("COPY c (name) FROM STDIN (FORMAT binary)"))
            .await
            .unwrap();
        let got = raw.until_ready_any().await;
        let e = got.iter().find(|m| m.tag == b'E').expect("binary refused");
        let f = wire::error_fields(&e.body);
        assert_eq!(f[&b'C'], "0A000", "{f:?}");
        assert!(f[&b'M'].contains("binary data"), "{f:?}");
    })
    .await
}
