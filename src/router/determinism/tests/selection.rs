//! Writes whose rows depend on each node's physical row order (`selection.rs`): refused; the
//! same shapes made deterministic (or that are reads, or only define a query) pass.

use super::*;

/// (SQL, a piece of the refusal or None for no refusal).
const CASES: &[(&str, Option<&str>)] = &[
    // LIMIT / OFFSET / FETCH without ORDER BY in a write
    ("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE done LIMIT 10)", Some("LIMIT, OFFSET or FETCH without ORDER BY")),
    ("UPDATE jobs SET taken = true WHERE id = (SELECT id FROM jobs WHERE NOT taken LIMIT 1)", Some("without ORDER BY")),
    ("INSERT INTO archive SELECT * FROM jobs LIMIT 100", Some("without ORDER BY")),
    ("INSERT INTO archive SELECT * FROM jobs OFFSET 5", Some("without ORDER BY")),
    ("INSERT INTO archive SELECT * FROM jobs FETCH FIRST 3 ROWS ONLY", Some("without ORDER BY")),
    ("WITH d AS (DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 5) RETURNING *) INSERT INTO archive SELECT * FROM d", Some("without ORDER BY")),
    ("CREATE TABLE top AS SELECT * FROM jobs LIMIT 5", Some("without ORDER BY")),
    ("SELECT * FROM jobs WHERE name = 'a' LIMIT 21 FOR UPDATE", None),
    ("SELECT * FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 2) FOR UPDATE", Some("without ORDER BY")),
    ("MERGE INTO t USING (SELECT * FROM s LIMIT 3) AS src ON t.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v", Some("without ORDER BY")),
    ("UPDATE t SET v = (SELECT v FROM (SELECT v FROM s LIMIT 2) x ORDER BY v LIMIT 1) WHERE id = 1", Some("without ORDER BY")),
    // ... with ORDER BY, or nothing to choose from, or only existence: fine
    ("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE done ORDER BY id LIMIT 10)", None),
    ("INSERT INTO archive SELECT * FROM jobs ORDER BY id LIMIT 100 OFFSET 5", None),
    ("SELECT * FROM jobs ORDER BY id LIMIT 1 FOR UPDATE", None),
    ("UPDATE t SET v = 1 WHERE EXISTS (SELECT 1 FROM s WHERE s.id = t.id LIMIT 1)", None),
    ("UPDATE t SET v = (SELECT 5 LIMIT 1) WHERE id = 3", None),
    ("INSERT INTO t (name) VALUES ('a') RETURNING id", None),
    ("UPDATE t SET v = v + 1 WHERE id = 7", None),
    // reads and definitions are not writes of rows
    ("SELECT * FROM jobs LIMIT 10", None),
    ("CREATE VIEW firsts AS SELECT * FROM jobs LIMIT 10", None),
    ("CREATE MATERIALIZED VIEW firsts AS SELECT * FROM jobs LIMIT 10", Some("without ORDER BY")),
    // SKIP LOCKED
    ("SELECT * FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED", Some("SKIP LOCKED")),
    ("UPDATE jobs SET taken = true WHERE id = (SELECT id FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id", Some("SKIP LOCKED")),
    ("SELECT * FROM jobs WHERE id = 3 FOR UPDATE NOWAIT", None),
    // DISTINCT ON
    ("INSERT INTO latest SELECT DISTINCT ON (user_id) user_id, v FROM events", Some("DISTINCT ON without ORDER BY")),
    ("INSERT INTO latest SELECT DISTINCT ON (user_id) user_id, v FROM events ORDER BY user_id, at DESC, id", None),
    ("INSERT INTO names SELECT DISTINCT name FROM events", None),
    // ctid, TABLESAMPLE
    ("DELETE FROM t WHERE ctid = '(0,1)'", Some("ctid")),
    ("DELETE FROM t a USING t b WHERE a.ctid < b.ctid AND a.k = b.k", Some("ctid")),
    ("UPDATE t SET \"ctid\" = 1 WHERE id = 1", None),
    ("INSERT INTO s SELECT * FROM t TABLESAMPLE SYSTEM (10)", Some("TABLESAMPLE")),
    // order-dependent window functions and aggregates
    ("INSERT INTO ranked SELECT id, row_number() OVER () FROM t", Some("row_number() over a window without ORDER BY")),
    ("INSERT INTO ranked SELECT id, row_number() OVER (PARTITION BY k) FROM t", Some("row_number()")),
    ("INSERT INTO ranked SELECT id, row_number() OVER (ORDER BY id) FROM t", None),
    ("INSERT INTO ranked SELECT id, lag(v) OVER w FROM t WINDOW w AS (ORDER BY id)", None),
    ("INSERT INTO ranked SELECT id, lag(v) OVER w FROM t WINDOW w AS (PARTITION BY k)", Some("lag()")),
    ("INSERT INTO ranked SELECT id, rank() OVER (), sum(v) OVER () FROM t", None),
    ("UPDATE t SET tags = (SELECT string_agg(tag, ',') FROM tags WHERE tags.t = t.id) WHERE id = 1", Some("string_agg() without ORDER BY")),
    ("UPDATE t SET tags = (SELECT string_agg(tag, ',' ORDER BY tag) FROM tags WHERE tags.t = t.id) WHERE id = 1", None),
    ("INSERT INTO s SELECT k, array_agg(v) FROM t GROUP BY k", Some("array_agg()")),
    ("INSERT INTO s SELECT k, count(*), sum(v), max(v) FROM t GROUP BY k", None),
    ("PREPARE p AS DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 1)", Some("without ORDER BY")),
];

#[test]
fn writes_that_pick_rows_by_physical_order_are_refused() {
    let s = HashMap::new();
    let mut failures = Vec::new();
    for (sql, want) in CASES {
        let got = plan(sql, &s);
        let ok = match (want, &got) {
            (None, Planned::Unchanged) => true,
            (Some(piece), Planned::Refused(reason)) => {
                reason.contains(piece) && reason.contains("silently diverge")
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{sql}\n    got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
