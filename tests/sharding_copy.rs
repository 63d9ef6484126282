//! `COPY <sharded table> FROM STDIN`: pgproxy reads each row's key and sends the row to its
//! shard; all shards commit together or nothing is written. Real PostgreSQL shards (two nodes
//! each where replication matters), driven by the raw protocol and by psql's `\copy`.

mod common;

use common::psql;
use common::sharded::ShardedCluster;
use common::wire::{self, error_fields, Msg, RawConn};
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

const SCHEMA: &str = "CREATE TABLE contacts (user_id bigint NOT NULL, name text NOT NULL, \
                      PRIMARY KEY (user_id, name))";

/// Sends a COPY … FROM STDIN, then `chunks` as CopyData and CopyDone; the answers through
/// ReadyForQuery (the CopyInResponse included).
async fn copy(raw: &mut RawConn, sql: &str, chunks: &[&[u8]]) -> Vec<Msg> {
    raw.send(&wire::query(sql)).await.unwrap();
    let first = raw.recv().await.expect("an answer to the COPY");
    if first.tag != b'G' {
        if first.tag == b'Z' {
            return vec![first];
        }
        let mut rest = raw.through_ready().await;
        rest.insert(0, first);
        return rest;
    }
    for c in chunks {
        raw.send(&wire::copy_data(c)).await.unwrap();
    }
    raw.send(&wire::copy_done()).await.unwrap();
    let mut got = raw.through_ready().await;
    got.insert(0, first);
    got
}

/// The message types of an answer, one letter each (`"12nHdcCZ"`).
fn tag_letters(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// Parse of `sql` as the unnamed statement, Bind, Execute, Sync.
fn pbes(sql: &str) -> Vec<u8> {
    let mut m = wire::parse("", sql);
    m.extend(wire::bind("", "", &[]));
    m.extend(wire::execute("", 0));
    m.extend(wire::sync());
    m
}

fn tag(msgs: &[Msg]) -> Option<String> {
    msgs.iter()
        .find(|m| m.tag == b'C')
        .map(|m| String::from_utf8_lossy(&m.body[..m.body.len() - 1]).to_string())
}

fn error_code(msgs: &[Msg]) -> Option<String> {
    msgs.iter()
        .find(|m| m.tag == b'E')
        .and_then(|m| error_fields(&m.body).get(&b'C').cloned())
}

fn status(msgs: &[Msg]) -> u8 {
    msgs.last()
        .and_then(|m| m.body.first().copied())
        .unwrap_or(0)
}

/// Rows of `contacts` on each shard (every node of a shard agreeing), as "key:name" sorted.
async fn rows_per_shard(c: &ShardedCluster) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (s, _) in c.shards.iter().enumerate() {
        let v = c
            .shard_scalar(
                s,
                "SELECT coalesce(string_agg(user_id || ':' || name, '|' ORDER BY user_id, name), '') FROM contacts",
            )
            .await;
        out.push(if v.is_empty() {
            Vec::new()
        } else {
            v.split('|').map(str::to_string).collect()
        });
    }
    out
}

/// A cluster of `shards` shards of `nodes` nodes with the contacts table, and a raw client.
async fn setup(shards: usize, nodes: usize) -> (ShardedCluster, RawConn) {
    let c = ShardedCluster::start(shards, nodes, "").await;
    c.client()
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    (c, raw)
}

/// Every row is on its key's shard.
fn assert_placed(per: &[Vec<String>]) {
    for (s, rows) in per.iter().enumerate() {
        for r in rows {
            let key: i64 = r.split(':').next().unwrap().parse().unwrap();
            assert_eq!(shard_of(key), s, "row {r} on shard {s}");
        }
    }
}

/// `n` rows in all, on both shards, each on its key's shard; the rows per shard.
async fn assert_spread(c: &ShardedCluster, n: usize) -> Vec<Vec<String>> {
    let per = rows_per_shard(c).await;
    assert_eq!(per.iter().flatten().count(), n);
    assert!(
        per.iter().all(|rows| !rows.is_empty()),
        "both shards got rows"
    );
    assert_placed(&per);
    per
}

async fn no_prepared_left(c: &ShardedCluster) {
    for node in c.all_nodes() {
        let left = node.scalar("SELECT count(*) FROM pg_prepared_xacts").await;
        assert_eq!(left, "0", "no prepared transaction left behind");
    }
}

#[tokio::test]
async fn copy_into_a_sharded_table_sends_each_row_to_its_shard() {
    let (c, mut raw) = setup(2, 2).await;
    let data: String = (1..=40).map(|k| format!("{k}\tname {k}\n")).collect();
    // Chunks cut mid-row, as a client streaming a file sends them.
    let bytes = data.as_bytes();
    let chunks: Vec<&[u8]> = bytes.chunks(37).collect();
    let got = copy(
        &mut raw,
        "COPY contacts (user_id, name) FROM STDIN",
        &chunks,
    )
    .await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"), "{got:?}");
    assert_eq!(status(&got), b'I');
    let per = rows_per_shard(&c).await;
    assert_placed(&per);
    for (s, rows) in per.iter().enumerate() {
        let want: Vec<String> = (1..=40)
            .filter(|&k| shard_of(k) == s)
            .map(|k| format!("{k}:name {k}"))
            .collect();
        assert_eq!(rows, &want, "shard {s}");
    }
    no_prepared_left(&c).await;
    // The session goes on: a read by key.
    let n = raw
        .simple_query("SELECT count(*) FROM contacts WHERE user_id = 7")
        .await;
    assert_eq!(n, vec![vec![Some("1".to_string())]]);
}

#[tokio::test]
async fn csv_with_a_header_and_no_column_list_and_escaped_text() {
    let (c, mut raw) = setup(2, 1).await;
    let got = copy(
        &mut raw,
        "COPY contacts FROM STDIN WITH (FORMAT csv, HEADER true)",
        &[
            b"user_id,name\r\n\"3\",\"a,b\"\r\n4,\"multi\nline\"\r\n",
            b"5,x\r\n",
        ],
    )
    .await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 3"), "{got:?}");
    let got = copy(
        &mut raw,
        "COPY contacts (name, user_id) FROM STDIN",
        &[b"tab\\there\t\\061\\x30\nplain\t11\n"],
    )
    .await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 2"), "{got:?}");
    let per = rows_per_shard(&c).await;
    let all: Vec<&String> = per.iter().flatten().collect();
    assert_eq!(all.len(), 5, "{per:?}");
    assert_placed(&per);
    let ten = c
        .shard_scalar(shard_of(10), "SELECT name FROM contacts WHERE user_id = 10")
        .await;
    assert_eq!(ten, "tab\there");
    let three = c
        .shard_scalar(shard_of(3), "SELECT name FROM contacts WHERE user_id = 3")
        .await;
    assert_eq!(three, "a,b");
}

#[tokio::test]
async fn a_bad_row_anywhere_writes_nothing_on_any_shard() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    client
        .batch_execute("INSERT INTO contacts (user_id, name) VALUES (8, 'dup')")
        .await
        .expect("seed");
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let sql = "COPY contacts (user_id, name) FROM STDIN";
    // A duplicate on one shard after rows of both.
    let got = copy(&mut raw, sql, &[b"1\ta\n2\ta\n3\ta\n8\tdup\n"]).await;
    assert_eq!(error_code(&got).as_deref(), Some("23505"), "{got:?}");
    assert_eq!(status(&got), b'I');
    // A NULL key, a key that is not a bigint.
    let got = copy(&mut raw, sql, &[b"1\ta\n\\N\tb\n"]).await;
    assert_eq!(error_code(&got).as_deref(), Some("23502"), "{got:?}");
    let got = copy(&mut raw, sql, &[b"1\ta\nabc\tb\n"]).await;
    assert_eq!(error_code(&got).as_deref(), Some("22P02"), "{got:?}");
    // A row too short: PostgreSQL's own error.
    let got = copy(&mut raw, sql, &[b"1\ta\n2\n"]).await;
    assert_eq!(error_code(&got).as_deref(), Some("22P04"), "{got:?}");
    // The client gives up: CopyFail.
    raw.send(&wire::query(sql)).await.unwrap();
    assert_eq!(raw.recv().await.expect("G").tag, b'G');
    raw.send(&wire::copy_data(b"1\ta\n2\ta\n")).await.unwrap();
    let mut fail = vec![b'f'];
    let msg = b"client gave up\0";
    fail.extend(((4 + msg.len()) as i32).to_be_bytes());
    fail.extend(msg);
    raw.send(&fail).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(error_code(&got).as_deref(), Some("57014"), "{got:?}");
    let per = rows_per_shard(&c).await;
    assert_eq!(
        per.iter().flatten().count(),
        1,
        "only the seed row: {per:?}"
    );
    no_prepared_left(&c).await;
    let n = raw.simple_query("SELECT 1").await;
    assert_eq!(n, vec![vec![Some("1".to_string())]]);
}

#[tokio::test]
async fn copy_inside_a_transaction_joins_it() {
    let (c, mut raw) = setup(2, 2).await;
    let sql = "COPY contacts (user_id, name) FROM STDIN";
    let data = b"1\ta\n2\ta\n3\ta\n4\ta\n";
    raw.simple_query("BEGIN").await;
    let got = copy(&mut raw, sql, &[data]).await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 4"), "{got:?}");
    assert_eq!(status(&got), b'T');
    raw.simple_query("ROLLBACK").await;
    assert_eq!(rows_per_shard(&c).await.iter().flatten().count(), 0);
    raw.simple_query("BEGIN").await;
    raw.simple_query("INSERT INTO contacts (user_id, name) VALUES (9, 'before')")
        .await;
    let got = copy(&mut raw, sql, &[data]).await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 4"), "{got:?}");
    raw.simple_query("COMMIT").await;
    assert_eq!(rows_per_shard(&c).await.iter().flatten().count(), 5);
    // An error inside the transaction aborts it, as in PostgreSQL.
    raw.simple_query("BEGIN").await;
    let got = copy(&mut raw, sql, &[b"20\tx\n\\N\ty\n"]).await;
    assert_eq!(error_code(&got).as_deref(), Some("23502"), "{got:?}");
    assert_eq!(status(&got), b'E');
    raw.send(&wire::query("SELECT 1")).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(error_code(&got).as_deref(), Some("25P02"), "{got:?}");
    raw.simple_query("ROLLBACK").await;
    assert_eq!(rows_per_shard(&c).await.iter().flatten().count(), 5);
    no_prepared_left(&c).await;
}

#[tokio::test]
async fn psql_copy_loads_a_file_into_a_sharded_table() {
    let c = ShardedCluster::start(2, 2, "").await;
    c.client()
        .await
        .batch_execute(SCHEMA)
        .await
        .expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("contacts.csv");
    let data: String = (1..=500).map(|k| format!("{k},person {k}\n")).collect();
    std::fs::write(&file, data).expect("write");
    let out = psql(
        c.proxy.port(),
        "app",
        "secret",
        "app",
        &format!(
            "\\copy contacts (user_id, name) FROM '{}' WITH (FORMAT csv)",
            file.display()
        ),
    )
    .await;
    assert!(out.status.success(), "psql: {}", out.stderr);
    assert!(out.stdout.contains("COPY 500"), "{}", out.stdout);
    assert_spread(&c, 500).await;
}

#[tokio::test]
async fn a_serial_column_left_out_on_replicated_shards_is_filled_in_per_shard() {
    let c = ShardedCluster::start(2, 2, "").await;
    c.client()
        .await
        .batch_execute(
            "CREATE TABLE notes (id serial, user_id bigint NOT NULL, body text, \
             at timestamptz DEFAULT now(), PRIMARY KEY (user_id, id))",
        )
        .await
        .expect("schema");
    let mut raw = RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let data: String = (1..=40).map(|k| format!("{k}\tnote {k}\n")).collect();
    let chunks: Vec<&[u8]> = data.as_bytes().chunks(50).collect();
    let got = copy(&mut raw, "COPY notes (user_id, body) FROM STDIN", &chunks).await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"), "{got:?}");
    // Every node of a shard holds the same ids and times (shard_scalar compares them); each
    // shard counts its own ids from 1; the followers' sequences moved with the main's.
    let mut total = 0;
    for s in 0..2 {
        let n: usize = (1..=40).filter(|&k| shard_of(k) == s).count();
        let rows = c
            .shard_scalar(
                s,
                "SELECT string_agg(id || ':' || user_id || ':' || at, ',' ORDER BY id) FROM notes",
            )
            .await;
        assert_eq!(rows.split(',').count(), n, "shard {s}: {rows}");
        let ids = c
            .shard_scalar(
                s,
                "SELECT min(id) || '-' || max(id) || '/' || count(DISTINCT at) FROM notes",
            )
            .await;
        assert_eq!(ids, format!("1-{n}/1"), "shard {s}");
        let seq = c
            .shard_scalar(s, "SELECT last_value FROM notes_id_seq")
            .await;
        assert_eq!(
            seq,
            n.to_string(),
            "shard {s}: sequences moved on every node"
        );
        total += n;
    }
    assert_eq!(total, 40);
    // With a CSV header and inside a transaction, rolled back: nothing.
    raw.simple_query("BEGIN").await;
    let got = copy(
        &mut raw,
        "COPY notes (user_id, body) FROM STDIN WITH (FORMAT csv, HEADER)",
        &[b"user_id,body\n1,again\n2,again\n"],
    )
    .await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 2"), "{got:?}");
    raw.simple_query("ROLLBACK").await;
    let n = raw
        .simple_query("SELECT count(*) FROM notes WHERE user_id = 1")
        .await;
    assert_eq!(n, vec![vec![Some("1".to_string())]]);
    no_prepared_left(&c).await;
}

#[tokio::test]
async fn copy_in_the_extended_protocol_tokio_postgres() {
    use futures_util::SinkExt;
    let (c, mut raw) = setup(2, 2).await;
    let client = c.client().await;
    // tokio-postgres' copy_in: Parse/Describe/Sync, then Bind/Execute/Sync, the data,
    // CopyDone/Sync.
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY contacts (user_id, name) FROM STDIN")
        .await
        .expect("copy_in");
    futures_util::pin_mut!(sink);
    for k in 1..=30 {
        sink.send(bytes::Bytes::from(format!("{k}\tvia copy_in\n")))
            .await
            .expect("send");
    }
    assert_eq!(sink.finish().await.expect("finish"), 30);
    assert_spread(&c, 30).await;
    // An error (a duplicate on one shard): nothing written, the client goes on.
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY contacts (user_id, name) FROM STDIN")
        .await
        .expect("copy_in");
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"31\tnew\n5\tvia copy_in\n"))
        .await
        .expect("send");
    let err = sink.finish().await.expect_err("duplicate");
    assert_eq!(err.code().map(|c| c.code()), Some("23505"), "{err:?}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts WHERE user_id = 31", &[])
        .await
        .expect("session goes on")
        .get(0);
    assert_eq!(n, 0);
    // The same by hand: what PostgreSQL answers at each step.
    let mut m = Vec::new();
    m.extend(wire::parse("", "COPY contacts (user_id, name) FROM STDIN"));
    m.extend(wire::bind("", "", &[]));
    m.extend(wire::describe(b'P', ""));
    m.extend(wire::execute("", 0));
    m.extend(wire::sync());
    raw.send(&m).await.unwrap();
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(raw.recv().await.expect("answer").tag);
    }
    assert_eq!(
        tags, b"12nG",
        "ParseComplete, BindComplete, NoData, CopyInResponse"
    );
    raw.send(&wire::copy_data(b"40\tby hand\n41\tby hand\n"))
        .await
        .unwrap();
    raw.send(&wire::copy_done()).await.unwrap();
    raw.send(&wire::sync()).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(tag_letters(&got), "CZ", "{got:?}");
    assert_eq!(tag(&got).as_deref(), Some("COPY 2"));
    assert_eq!(status(&got), b'I');
    // A COPY the nodes refuse (no such column): PostgreSQL's error at the Execute.
    raw.send(&pbes("COPY contacts (user_id, nosuch) FROM STDIN"))
        .await
        .unwrap();
    let got = raw.through_ready().await;
    assert_eq!(tag_letters(&got), "12EZ", "{got:?}");
    assert_eq!(error_code(&got).as_deref(), Some("42703"));
    no_prepared_left(&c).await;
}

/// Binary COPY data: header, one tuple per (key, name) with the key as int8, trailer.
fn binary_data(rows: &[(i64, &str)]) -> Vec<u8> {
    let mut d = b"PGCOPY\n\xff\r\n\0".to_vec();
    d.extend(0i32.to_be_bytes());
    d.extend(0i32.to_be_bytes());
    for (k, name) in rows {
        d.extend(2i16.to_be_bytes());
        d.extend(8i32.to_be_bytes());
        d.extend(k.to_be_bytes());
        d.extend((name.len() as i32).to_be_bytes());
        d.extend(name.as_bytes());
    }
    d.extend((-1i16).to_be_bytes());
    d
}

#[tokio::test]
async fn binary_copy_sends_each_tuple_to_its_shard() {
    let (c, mut raw) = setup(2, 2).await;
    let rows: Vec<(i64, String)> = (1..=30).map(|k| (k, format!("bin {k}"))).collect();
    let refs: Vec<(i64, &str)> = rows.iter().map(|(k, n)| (*k, n.as_str())).collect();
    let data = binary_data(&refs);
    // Chunks of 7 bytes: the header and every tuple cut across messages.
    let chunks: Vec<&[u8]> = data.chunks(7).collect();
    let sql = "COPY contacts (user_id, name) FROM STDIN WITH (FORMAT binary)";
    let got = copy(&mut raw, sql, &chunks).await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 30"), "{got:?}");
    let per = assert_spread(&c, 30).await;
    for r in per.iter().flatten() {
        let key = r.split(':').next().unwrap_or_default();
        assert_eq!(r, &format!("{key}:bin {key}"));
    }
    // A duplicate on one shard: nothing written. Data that is no binary COPY file: 22P04.
    let dup = binary_data(&[(40, "x"), (41, "x"), (1, "bin 1")]);
    let got = copy(&mut raw, sql, &[&dup]).await;
    assert_eq!(error_code(&got).as_deref(), Some("23505"), "{got:?}");
    let got = copy(&mut raw, sql, &[b"1\tnot binary\n"]).await;
    assert_eq!(error_code(&got).as_deref(), Some("22P04"), "{got:?}");
    assert_eq!(rows_per_shard(&c).await.iter().flatten().count(), 30);
    no_prepared_left(&c).await;
}

/// A COPY … TO STDOUT: the CopyData bodies concatenated, and the answers.
async fn copy_out(raw: &mut RawConn, sql: &str) -> (Vec<u8>, Vec<Msg>) {
    raw.send(&wire::query(sql)).await.unwrap();
    let got = raw.through_ready().await;
    let data = got
        .iter()
        .filter(|m| m.tag == b'd')
        .flat_map(|m| m.body.clone())
        .collect();
    (data, got)
}

#[tokio::test]
async fn copy_out_of_a_sharded_table_puts_every_shard_together() {
    let (c, mut raw) = setup(2, 2).await;
    let data: String = (1..=40).map(|k| format!("{k}\tname {k}\n")).collect();
    let got = copy(&mut raw, "COPY contacts FROM STDIN", &[data.as_bytes()]).await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"), "{got:?}");
    // Text: every row once, in some order; one CopyOutResponse, one COPY 40.
    let (out, got) = copy_out(&mut raw, "COPY contacts TO STDOUT").await;
    // What PostgreSQL sends: CopyOutResponse, the rows, CopyDone, CommandComplete.
    assert_eq!(
        tag_letters(&got),
        format!("H{}cCZ", "d".repeat(40)),
        "{got:?}"
    );
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"));
    assert_eq!(status(&got), b'I');
    let mut lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
    lines.sort();
    let mut want: Vec<String> = (1..=40).map(|k| format!("{k}\tname {k}")).collect();
    want.sort();
    assert_eq!(lines, want);
    // CSV with a header: the header line once, first.
    let (out, got) = copy_out(
        &mut raw,
        "COPY contacts (name, user_id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"));
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 41);
    assert_eq!(lines[0], "name,user_id");
    assert!(!lines[1..].contains(&"name,user_id"));
    // Binary: one file header, 40 tuples, one trailer; what a plain PostgreSQL would send for
    // the same rows, up to the order of the tuples.
    let (out, got) = copy_out(&mut raw, "COPY contacts TO STDOUT (FORMAT binary)").await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"));
    assert_eq!(&out[..11], b"PGCOPY\n\xff\r\n\0");
    assert_eq!(&out[out.len() - 2..], &[0xff, 0xff]);
    let mut pos = 19;
    let mut tuples = 0;
    while pos < out.len() - 2 {
        let n = i16::from_be_bytes([out[pos], out[pos + 1]]);
        assert_eq!(n, 2, "tuple {tuples} at {pos}");
        pos += 2;
        for _ in 0..n {
            let len = i32::from_be_bytes(out[pos..pos + 4].try_into().unwrap());
            pos += 4 + len.max(0) as usize;
        }
        tuples += 1;
    }
    assert_eq!((tuples, pos), (40, out.len() - 2));
    // psql's \copy to a file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("out.csv");
    let out = psql(
        c.proxy.port(),
        "app",
        "secret",
        "app",
        &format!("\\copy contacts TO '{}' WITH (FORMAT csv)", file.display()),
    )
    .await;
    assert!(out.status.success(), "psql: {}", out.stderr);
    let written = std::fs::read_to_string(&file).expect("file");
    assert_eq!(written.lines().count(), 40);
    // In a transaction: before a write, yes; after one, refused (its rows would be missing).
    raw.simple_query("BEGIN").await;
    let (_, got) = copy_out(&mut raw, "COPY contacts TO STDOUT").await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"), "{got:?}");
    raw.simple_query("INSERT INTO contacts (user_id, name) VALUES (99, 'x')")
        .await;
    let (_, got) = copy_out(&mut raw, "COPY contacts TO STDOUT").await;
    assert_eq!(error_code(&got).as_deref(), Some("0A000"), "{got:?}");
    raw.simple_query("ROLLBACK").await;
    // A shard without rows: its binary header and trailer alone are left out.
    let on_first: Vec<i64> = (1..=40).filter(|&k| shard_of(k) == 0).collect();
    for k in &on_first {
        raw.simple_query(&format!("DELETE FROM contacts WHERE user_id = {k}"))
            .await;
    }
    let (out, got) = copy_out(&mut raw, "COPY contacts TO STDOUT (FORMAT binary)").await;
    let left = 40 - on_first.len();
    assert_eq!(tag(&got), Some(format!("COPY {left}")));
    let mut reference = copy_out(
        &mut raw,
        "/* pgproxy: shard=s1 */ COPY contacts TO STDOUT (FORMAT binary)",
    )
    .await
    .0;
    assert_eq!(out.len(), reference.len());
    reference.truncate(19);
    assert_eq!(&out[..19], &reference[..], "one file header");
}

#[tokio::test]
async fn copy_out_in_the_extended_protocol_tokio_postgres() {
    use futures_util::TryStreamExt;
    let (c, mut raw) = setup(2, 2).await;
    let data: String = (1..=40).map(|k| format!("{k}\tname {k}\n")).collect();
    let got = copy(&mut raw, "COPY contacts FROM STDIN", &[data.as_bytes()]).await;
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"), "{got:?}");
    // tokio-postgres' copy_out: Parse/Describe/Sync, then Bind/Execute/Sync.
    let client = c.client().await;
    let stream = client
        .copy_out("COPY contacts (user_id, name) TO STDOUT WITH (FORMAT csv, HEADER)")
        .await
        .expect("copy_out");
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.try_next().await.expect("copy data") {
        out.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(out).expect("utf-8");
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.remove(0), "user_id,name", "the header once, first");
    lines.sort();
    let mut want: Vec<String> = (1..=40).map(|k| format!("{k},name {k}")).collect();
    want.sort();
    assert_eq!(lines, want);
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts WHERE user_id = 7", &[])
        .await
        .expect("the session goes on")
        .get(0);
    assert_eq!(n, 1);
    // By hand, message by message as PostgreSQL answers a COPY in the extended protocol;
    // with the portal described and closed after its Execute (sqlx closes it).
    let mut m = Vec::new();
    m.extend(wire::parse("", "COPY contacts TO STDOUT"));
    m.extend(wire::bind("", "", &[]));
    m.extend(wire::describe(b'P', ""));
    m.extend(wire::execute("", 0));
    m.extend(wire::message(b'C', b"P\0"));
    m.extend(wire::sync());
    raw.send(&m).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(
        tag_letters(&got),
        format!("12nH{}cC3Z", "d".repeat(40)),
        "{got:?}"
    );
    assert_eq!(tag(&got).as_deref(), Some("COPY 40"));
    assert_eq!(status(&got), b'I');
    // A named statement described first, then bound (pgjdbc's and tokio-postgres' order).
    let mut m = Vec::new();
    m.extend(wire::parse("out", "COPY contacts (name) TO STDOUT"));
    m.extend(wire::describe(b'S', "out"));
    m.extend(wire::sync());
    raw.send(&m).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(tag_letters(&got), "1tnZ", "{got:?}");
    let mut m = Vec::new();
    m.extend(wire::bind("", "out", &[]));
    m.extend(wire::execute("", 0));
    m.extend(wire::sync());
    raw.send(&m).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(
        tag_letters(&got),
        format!("2H{}cCZ", "d".repeat(40)),
        "{got:?}"
    );
    // A COPY the nodes refuse: PostgreSQL's error at the Execute, and the session goes on.
    raw.send(&pbes("COPY contacts (nosuch) TO STDOUT"))
        .await
        .unwrap();
    let got = raw.through_ready().await;
    assert_eq!(tag_letters(&got), "12EZ", "{got:?}");
    assert_eq!(error_code(&got).as_deref(), Some("42703"));
    // Inside a transaction that wrote: refused (its rows would be missing), the transaction
    // aborted as by any error.
    raw.simple_query("BEGIN").await;
    raw.simple_query("INSERT INTO contacts (user_id, name) VALUES (99, 'x')")
        .await;
    raw.send(&pbes("COPY contacts TO STDOUT")).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(error_code(&got).as_deref(), Some("0A000"), "{got:?}");
    assert_eq!(status(&got), b'E');
    raw.simple_query("ROLLBACK").await;
    // Ended by Flush instead of Sync: refused, then the Sync answers.
    let mut m = Vec::new();
    m.extend(wire::parse("", "COPY contacts TO STDOUT"));
    m.extend(wire::bind("", "", &[]));
    m.extend(wire::execute("", 0));
    m.extend(wire::flush());
    raw.send(&m).await.unwrap();
    raw.send(&wire::sync()).await.unwrap();
    let got = raw.through_ready().await;
    assert_eq!(error_code(&got).as_deref(), Some("0A000"), "{got:?}");
    assert_eq!(status(&got), b'I');
    no_prepared_left(&c).await;
}

/// A CancelRequest during a COPY into a sharded table fails the whole COPY with 57014, as
/// PostgreSQL cancels a COPY: nothing is written on any shard, and the session goes on.
#[tokio::test]
async fn a_cancel_stops_a_copy_into_a_sharded_table() {
    use futures_util::SinkExt;
    let (c, _raw) = setup(2, 2).await;
    let client = c.client().await;
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY contacts (user_id, name) FROM STDIN")
        .await
        .expect("copy_in");
    futures_util::pin_mut!(sink);
    for k in 1..=20 {
        sink.send(bytes::Bytes::from(format!("{k}\tbefore the cancel\n")))
            .await
            .expect("send");
    }
    sink.flush().await.expect("flush");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("send cancel");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for k in 21..=40 {
        sink.send(bytes::Bytes::from(format!("{k}\tafter the cancel\n")))
            .await
            .expect("send");
    }
    let err = sink.finish().await.expect_err("cancelled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err:?}");
    assert_eq!(rows_per_shard(&c).await.iter().flatten().count(), 0);
    no_prepared_left(&c).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect("the session goes on")
        .get(0);
    assert_eq!(n, 0);
}
