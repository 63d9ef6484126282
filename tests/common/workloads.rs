//! Client workloads and SQL scripts the replication tests run through pgproxy.

use super::{describe, sqlstate};
use tokio_postgres::Client;

/// Runs `sql` (simple protocol), panicking with the SQLSTATE on failure.
pub async fn exec(c: &Client, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {}", describe(&e)));
}

/// Runs each statement of `script` (separated by ";\n") as a Query of its own.
pub async fn run_script(c: &Client, script: &str) {
    for sql in script.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        exec(c, sql).await;
    }
}

/// DDL, DML, a multi-statement Query, transactions committed and rolled back, savepoints,
/// TRUNCATE; each statement is its own Query unless on one line.
pub const WRITES: &str = "
CREATE TABLE t (id int PRIMARY KEY, v text, n int);
CREATE INDEX t_v ON t (v);
ALTER TABLE t ADD COLUMN extra text DEFAULT 'x';
INSERT INTO t (id, v, n) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);
INSERT INTO t (id, v, n) VALUES (10, 'm', 1); UPDATE t SET v = v || '!' WHERE id = 10; INSERT INTO t (id, v) VALUES (11, 'm2');
BEGIN;
INSERT INTO t (id, v) VALUES (20, 'tx');
UPDATE t SET n = 7 WHERE id = 20;
COMMIT;
BEGIN;
INSERT INTO t (id, v) VALUES (30, 'gone');
ROLLBACK;
BEGIN;
INSERT INTO t (id, v) VALUES (40, 'kept');
SAVEPOINT s1;
INSERT INTO t (id, v) VALUES (41, 'undone');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO t (id, v) VALUES (42, 'after');
RELEASE SAVEPOINT s1;
COMMIT;
CREATE TABLE t2 (id int PRIMARY KEY, w text);
INSERT INTO t2 VALUES (1, 'a'), (2, 'b');
TRUNCATE t2;
INSERT INTO t2 VALUES (3, 'after truncate');
";

/// Tab-separated COPY text for ids `from..=to`.
pub fn copy_text(from: i32, to: i32) -> String {
    (from..=to).map(|i| format!("{i}\tv{i}\n")).collect()
}

pub const DET_TABLE: &str = "CREATE TABLE t (id serial PRIMARY KEY, \
    b bigint GENERATED ALWAYS AS IDENTITY, u uuid DEFAULT gen_random_uuid(), \
    r float8 DEFAULT random(), ts timestamptz DEFAULT now(), n int)";

/// 30 rows (n = B+0 .. B+29) through the simple protocol: single and multi-row VALUES,
/// explicit volatile calls, in and out of explicit transactions.
pub const THIRTY_ROWS: &str = "
INSERT INTO t (n) VALUES (B+0), (B+1), (B+2);
INSERT INTO t (n) VALUES (B+3), (B+4), (B+5);
INSERT INTO t (n) VALUES (B+6), (B+7), (B+8);
INSERT INTO t (n) VALUES (B+9), (B+10), (B+11);
INSERT INTO t (n, r, ts, u) VALUES (B+12, random(), now(), gen_random_uuid());
INSERT INTO t (n, r, ts, u) VALUES (B+13, random(), now(), gen_random_uuid());
INSERT INTO t (n, r, ts, u) VALUES (B+14, random(), clock_timestamp(), gen_random_uuid()), (B+15, random() * 2, now(), DEFAULT);
INSERT INTO t (n, u) VALUES (B+16, gen_random_uuid()), (B+17, DEFAULT);
BEGIN;
INSERT INTO t (n) VALUES (B+18);
INSERT INTO t (n, r) VALUES (B+19, random());
INSERT INTO t (n, u) VALUES (B+20, gen_random_uuid()), (B+21, DEFAULT), (B+22, gen_random_uuid());
COMMIT;
BEGIN;
INSERT INTO t (n, ts) VALUES (B+23, now());
INSERT INTO t (n) VALUES (B+24), (B+25);
INSERT INTO t (n, r) VALUES (B+26, random()), (B+27, random());
INSERT INTO t (n) VALUES (B+28);
COMMIT;
INSERT INTO t (n) VALUES (B+29);
";

/// 50 rows from client `k`: [`THIRTY_ROWS`], 10 single-row INSERTs, then 10 more through named
/// prepared statements (half inside a transaction) when `prepared`, else simple Queries.
pub async fn fifty_rows(mut c: Client, k: i32, prepared: bool) {
    let base = k * 1000;
    run_script(&c, &THIRTY_ROWS.replace("B+", &format!("{base}+"))).await;
    for i in 30..40 {
        exec(&c, &format!("INSERT INTO t (n) VALUES ({})", base + i)).await;
    }
    let texts = [
        "INSERT INTO t (n) VALUES ($1)",
        "INSERT INTO t (n, r, ts) VALUES ($1, random(), now())",
    ];
    if !prepared {
        for i in 40..50 {
            let sql = texts[i as usize % 2].replace("$1", &(base + i).to_string());
            exec(&c, &sql).await;
        }
        return;
    }
    let plain = c.prepare(texts[0]).await.expect("prepare");
    let rnd = c.prepare(texts[1]).await.expect("prepare");
    for i in 40..45 {
        let st = if i % 2 == 0 { &plain } else { &rnd };
        let res = c.execute(st, &[&(base + i)]).await;
        res.unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    let tx = c.transaction().await.expect("begin");
    for i in 45..50 {
        let st = if i % 2 == 0 { &plain } else { &rnd };
        let res = tx.execute(st, &[&(base + i)]).await;
        res.unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    tx.commit().await.expect("commit");
}

/// One transfer between two accounts; Err(SQLSTATE) when it must be retried.
pub async fn transfer(c: &Client, from: u32, to: u32) -> Result<(), String> {
    let steps = [
        "BEGIN".to_string(),
        format!("UPDATE acct SET bal = bal + 1 WHERE id = {to}"),
        format!("UPDATE acct SET bal = bal - 1 WHERE id = {from}"),
        "COMMIT".to_string(),
    ];
    for sql in &steps {
        if let Err(e) = c.batch_execute(sql).await {
            let code = sqlstate(&e).unwrap_or_default();
            let retry = matches!(code.as_str(), "40001" | "40P01");
            assert!(retry, "{sql}: {}", describe(&e));
            c.batch_execute("ROLLBACK")
                .await
                .expect("rollback after a conflict");
            return Err(code);
        }
    }
    Ok(())
}

pub const ORDERED: &str = "
CREATE TABLE t (id serial PRIMARY KEY, v text, at timestamptz DEFAULT now());
INSERT INTO t (v) VALUES ('a'), ('b');
UPDATE t SET v = v || '!' WHERE id = 1;
BEGIN;
INSERT INTO t (v) VALUES ('tx1');
INSERT INTO t (v, at) VALUES ('tx2', now());
COMMIT;
BEGIN;
INSERT INTO t (v) VALUES ('rolled back');
ROLLBACK;
";
