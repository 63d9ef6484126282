//! Adversarial routing cases (review).
//!
//! `router_once_got_these_wrong`: statements an adversarial review found the router routing,
//! merging or splitting UNSAFELY (too few shards, a wrong merge, a write that should not
//! happen), each with the correct answer; all fixed, kept as regression cases (a refusal is
//! always an acceptable answer).
//!
//! `router_keeps_these_right`: tricky statements the router handled correctly at the time of
//! the review, kept so that later changes do not break them.
//!
//! Keys: A and B live on different shards, C on A's shard; the standalone upper-case words
//! `A`, `B`, `C` in a case are replaced by them (as in `tests.rs`).

use super::merge::Col;
use super::tests::{keys, map, map_with};
use super::*;
use std::collections::BTreeSet;

fn run(
    m: &ShardMap,
    sql: &str,
    params: &[Option<&str>],
    session: Option<&str>,
) -> Result<Route, RouteError> {
    let p = plan(sql, m);
    let get = |n: usize| -> Option<Param<'_>> {
        params.get(n - 1).map(|v| match v {
            Some(t) => Param::Text(t),
            None => Param::Null,
        })
    };
    p.resolve(m, &get, session)
}

/// Replaces the placeholders A, B, C where they stand alone as upper-case words.
fn substitute(sql: &str, k: (i64, i64, i64)) -> String {
    let mut out = String::new();
    let chars: Vec<char> = sql.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let alone = |j: usize| {
            let before = j == 0 || !chars[j - 1].is_alphanumeric() && chars[j - 1] != '_';
            let after =
                j + 1 >= chars.len() || !chars[j + 1].is_alphanumeric() && chars[j + 1] != '_';
            before && after
        };
        match c {
            'A' if alone(i) => out.push_str(&k.0.to_string()),
            'B' if alone(i) => out.push_str(&k.1.to_string()),
            'C' if alone(i) => out.push_str(&k.2.to_string()),
            _ => out.push(c),
        }
    }
    out
}

/// What a correct router may answer.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Exactly the shards of these keys (comma-separated); merged when several and a read.
    Keys(&'static str),
    /// Exactly the shards of these keys, or a refusal.
    KeysOrRefuse(&'static str),
    /// Any one shard (touches no sharded table).
    Any,
    /// Every shard, merged (a read).
    Merge,
    /// This shard.
    Shard(usize),
    /// An INSERT split per shard.
    Split,
    /// A refusal whose message contains this text.
    RefuseWith(&'static str),
    /// A refusal (any error).
    Refuse,
    /// Every shard (a merged read or a keyless write), or a refusal.
    AllOrRefuse,
    /// At least the shards of these keys (merged if a read on several), or a refusal.
    CoverOrRefuse(&'static str),
    /// A merge whose first ORDER BY key is a hidden column (computed by the shards from the
    /// expression PostgreSQL actually sorts by), or a refusal.
    OrderHiddenOrRefuse,
    /// A merge whose first ORDER BY key is this column, or a refusal.
    OrderColOrRefuse(Col),
    /// A grouped merge whose first group key is a hidden column, or a refusal.
    GroupKeyHiddenOrRefuse,
    /// A merge whose per-shard SQL does not contain this text, or a refusal.
    SqlLacksOrRefuse(&'static str),
    /// Not split into plain statements (the statement text goes as written), or a refusal.
    NoSplitOrRefuse,
}

fn shards_of(m: &ShardMap, ks: &str) -> Vec<usize> {
    let set: BTreeSet<usize> = ks
        .split(',')
        .map(|k| m.shard_of_text(k.trim()).expect("key"))
        .collect();
    set.into_iter().collect()
}

fn verdict(m: &ShardMap, got: &Result<Route, RouteError>, want: Want, k: (i64, i64, i64)) -> bool {
    let all: Vec<usize> = (0..m.shard_count()).collect();
    let ks = |s: &str| shards_of(m, &substitute(s, k));
    let several_ok = |r: &Route| match &r.shards {
        Shards::Some(v) if v.len() > 1 => r.merge.is_some() || r.write,
        _ => true,
    };
    match (want, got) {
        (Want::Refuse, Err(_)) => true,
        (Want::RefuseWith(why), Err(RouteError::Unroutable(msg))) => msg.contains(why),
        (
            Want::AllOrRefuse
            | Want::CoverOrRefuse(_)
            | Want::OrderHiddenOrRefuse
            | Want::OrderColOrRefuse(_)
            | Want::GroupKeyHiddenOrRefuse
            | Want::SqlLacksOrRefuse(_)
            | Want::NoSplitOrRefuse
            | Want::KeysOrRefuse(_),
            Err(_),
        ) => true,
        (_, Err(_)) => false,
        (Want::Refuse | Want::RefuseWith(_), Ok(_)) => false,
        (Want::Keys(s) | Want::KeysOrRefuse(s), Ok(r)) => {
            r.shards == Shards::Some(ks(s)) && several_ok(r)
        }
        (Want::Any, Ok(r)) => r.shards == Shards::Any,
        (Want::Merge, Ok(r)) => r.shards == Shards::Some(all.clone()) && r.merge.is_some(),
        (Want::Shard(n), Ok(r)) => r.shards == Shards::Some(vec![n]),
        (Want::Split, Ok(r)) => r.split.is_some(),
        (Want::AllOrRefuse, Ok(r)) => {
            r.shards == Shards::Some(all.clone()) && (r.merge.is_some() || r.write)
        }
        (Want::CoverOrRefuse(s), Ok(r)) => match &r.shards {
            Shards::Some(v) => ks(s).iter().all(|x| v.contains(x)) && several_ok(r),
            Shards::Any => false,
        },
        (Want::OrderHiddenOrRefuse, Ok(r)) => r
            .merge
            .as_ref()
            .and_then(|m| m.order.first())
            .is_some_and(|o| matches!(o.col, Col::Hidden(_))),
        (Want::OrderColOrRefuse(c), Ok(r)) => r
            .merge
            .as_ref()
            .and_then(|m| m.order.first())
            .is_some_and(|o| o.col == c),
        (Want::GroupKeyHiddenOrRefuse, Ok(r)) => r.merge.as_ref().is_some_and(|m| {
            matches!(&m.kind, MergeKind::Group { keys: Some(keys), .. }
                if matches!(keys.first(), Some(Col::Hidden(_))))
        }),
        (Want::SqlLacksOrRefuse(s), Ok(r)) => r.merge.as_ref().is_some_and(|m| !m.sql.contains(s)),
        (Want::NoSplitOrRefuse, Ok(r)) => r.split.is_none(),
    }
}

/// One case: SQL, bind parameters (`$n` = params[n-1], placeholders substituted), the
/// session's `pgproxy.shard_key` (placeholder), and what a correct router answers.
type Case = (
    &'static str,
    &'static [Option<&'static str>],
    Option<&'static str>,
    Want,
);

/// Statements the router currently gets WRONG (unsafe), roughly from the most to the least
/// likely in a real application.
const WRONG: &[Case] = &[
    // ---- 1. SQL-level cursors (psycopg2/psycopg named cursors, Django `.iterator()`, any
    // "server-side cursor" helper send DECLARE … CURSOR FOR SELECT). plan_one treats the
    // MainOnly kind as a session statement and routes it to `Any` (the session's current
    // shard) without looking at the query. Correct: plan the inner query like a SELECT; a
    // single shard is required (a cursor cannot be merged), so a key pins it, otherwise refuse.
    ("DECLARE cur CURSOR FOR SELECT * FROM contacts WHERE user_id = B", &[], None, Want::KeysOrRefuse("B")),
    ("DECLARE cur NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM contacts", &[], None, Want::Refuse),
    // Same root cause (MainOnly → Any): pg_notify with a payload read from a sharded table is
    // evaluated on the session's current shard, where user B's row is not.
    ("SELECT pg_notify('ch', (SELECT name FROM contacts WHERE user_id = B))", &[], None, Want::CoverOrRefuse("B")),
    // ---- 2. Merge: `*` before an aliased item. `find` (merge.rs) returns the position in the
    // select LIST (1) for the alias, but the client-visible column is 1 + (number of columns
    // of contacts): the k-way merge then sorts by contacts' 2nd column instead of note_count,
    // so the "top 10" is wrong. Correct: with a wildcard, resolve an alias to a hidden column
    // (append the expression) or refuse.
    ("SELECT c.*, (SELECT count(*) FROM notes n WHERE n.user_id = c.user_id) AS note_count FROM contacts c ORDER BY note_count DESC LIMIT 10", &[], None, Want::OrderHiddenOrRefuse),
    ("SELECT DISTINCT *, lower(name) AS l FROM contacts ORDER BY l", &[], None, Want::OrderHiddenOrRefuse),
    // ---- 3. A key condition on an OUTER table written inside a subquery pins the outer table
    // (key_ref resolves qualified names through every frame, and apply_conjuncts pins
    // whatever it finds). The conjunct restricts only the subquery, which sits under OR / NOT
    // EXISTS / the select list / a LEFT JOIN LATERAL, so the outer rows are NOT restricted to
    // key A. The router sends these to A's shard only; rows of every other user are lost.
    // Correct: every shard (merged / keyless write) — or refuse.
    //   "public contacts, or mine that have notes":
    ("SELECT * FROM contacts c WHERE c.is_public OR EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND c.user_id = $1)", &[Some("A")], None, Want::AllOrRefuse),
    //   NOT EXISTS (… AND c.user_id = A) is true for every contact of every other user:
    ("SELECT * FROM contacts c WHERE NOT EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND c.user_id = A)", &[], None, Want::AllOrRefuse),
    //   the same as a write: the DELETE runs on A's shard only, archived contacts elsewhere stay.
    ("DELETE FROM contacts c WHERE c.archived OR EXISTS (SELECT 1 FROM countries k WHERE k.code = c.country AND c.user_id = A)", &[], None, Want::AllOrRefuse),
    //   a select-list subquery does not filter rows at all:
    ("SELECT c.id, (SELECT k.name FROM countries k WHERE k.code = c.country AND c.user_id = A) FROM contacts c", &[], None, Want::AllOrRefuse),
    //   LEFT JOIN LATERAL keeps every outer row:
    ("SELECT * FROM contacts c LEFT JOIN LATERAL (SELECT 1 AS x WHERE c.user_id = A) l ON true", &[], None, Want::AllOrRefuse),
    //   alias shadowing: the inner `c` is the reference table countries, so `c.user_id` is
    //   countries.user_id and the EXISTS is uncorrelated (all contacts or none); key_ref finds
    //   no sharded `c` in the inner frame and falls through to the OUTER contacts `c`.
    ("SELECT * FROM contacts c WHERE EXISTS (SELECT 1 FROM countries c WHERE c.user_id = A)", &[], None, Want::AllOrRefuse),
    // ---- 4. INSERT … VALUES with a subquery: plan_insert never looks at the subqueries in
    // VALUES or ON CONFLICT DO UPDATE. The row goes to A's shard, where user B does not live
    // (the note gets NULL) / where max(id) covers one shard only. Correct: refuse unless the
    // subqueries are pinned to the row's shard (walk them with Scope and treat as Groups).
    ("INSERT INTO notes (user_id, body) VALUES (A, (SELECT name FROM users WHERE id = B))", &[], None, Want::Refuse),
    ("INSERT INTO notes (user_id, id, body) VALUES (A, (SELECT coalesce(max(id), 0) + 1 FROM notes), 'x')", &[], None, Want::Refuse),
    ("INSERT INTO contacts (user_id, id, name) VALUES (A, 1, 'x') ON CONFLICT (id) DO UPDATE SET name = (SELECT name FROM users WHERE id = B)", &[], None, Want::Refuse),
    // ---- 5. INSERT … ON CONFLICT DO UPDATE SET <key> = …: moves the existing row to another
    // key on the wrong shard (UPDATE of the key is refused, this path is not checked).
    // Correct: refuse (as for UPDATE … SET user_id).
    ("INSERT INTO contacts (user_id, id, name) VALUES (A, 1, 'x') ON CONFLICT (id) DO UPDATE SET user_id = B", &[], None, Want::Refuse),
    // ---- 6. Merge: GROUP BY <name> where <name> is both an output alias and an input column.
    // PostgreSQL groups by the INPUT column (name), output lower(name): 'Bob' and 'bob' stay
    // two rows. `find` matches the alias first, so pgproxy groups by lower(name) and merges
    // them into one row with the summed count. Correct: for GROUP BY, only fall back to the
    // alias when no input column has the name — since pgproxy cannot know the columns, use a
    // hidden column (group by the bare identifier as the shard sees it) or refuse.
    ("SELECT lower(name) AS name, count(*) FROM contacts GROUP BY name", &[], None, Want::GroupKeyHiddenOrRefuse),
    // ---- 7. Merge: avg rewritten before the ORDER BY lookup. The select list becomes
    // `name, sum(x) AS avg, sum(x)`, so ORDER BY sum(x) matches position 1 (the avg column)
    // instead of position 2: rows come out ordered by the average, not the total. Correct:
    // match ORDER BY / GROUP BY items against the ORIGINAL select list (position 2).
    ("SELECT name, avg(x), sum(x) FROM contacts GROUP BY name ORDER BY sum(x) DESC", &[], None, Want::OrderColOrRefuse(Col::Pos(2))),
    // ---- 8. Aggregates pgproxy does not know are merged as plain rows: every shard returns
    // its own aggregate row and the client gets one row per shard instead of one. The list in
    // merge.rs misses PostgreSQL 16's *_strict / *_unique and SQL/JSON aggregates, and any
    // extension or user aggregate (PostGIS ST_Extent/ST_Union, first()/last(), …). Correct:
    // fail closed — refuse a fan-out whose select list / ORDER BY calls a function not known
    // to be a plain scalar (or not in classify::functions' read-only scalar list).
    ("SELECT jsonb_agg_strict(name) FROM contacts", &[], None, Want::Refuse),
    ("SELECT json_arrayagg(name) FROM contacts", &[], None, Want::Refuse),
    ("SELECT st_extent(geom) FROM contacts", &[], None, Want::Refuse),
    // ---- 9. EXPLAIN (without ANALYZE) of a multi-row INSERT keeps the INSERT's split: the
    // per-shard texts are plain INSERTs, so an EXPLAIN inserts the rows. Correct: EXPLAIN of
    // Target::Rows must not split (Any / refuse, like the other EXPLAIN cases).
    ("EXPLAIN INSERT INTO contacts (user_id, name) VALUES (A, 'x'), (B, 'y')", &[], None, Want::NoSplitOrRefuse),
    // ---- 10. A non-recursive CTE is not visible inside its own body (nor in earlier
    // siblings): there `contacts` is the real table. Scope::query registers every CTE name
    // before walking the bodies, so the real table is taken for the CTE and the statement
    // goes to `Any`. Correct: key A / every shard or refuse.
    ("WITH contacts AS (SELECT * FROM contacts WHERE user_id = A) SELECT * FROM contacts", &[], None, Want::KeysOrRefuse("A")),
    ("WITH contacts AS (SELECT * FROM contacts) SELECT count(*) FROM contacts", &[], None, Want::AllOrRefuse),
    ("WITH a AS (SELECT count(*) FROM contacts), contacts AS (SELECT 1 AS user_id) SELECT * FROM a", &[], None, Want::AllOrRefuse),
    // ---- 11. SET pgproxy.shard_key overrides keys the statement DOES give when they span
    // several shards (fanout() returns the session shard) or when another group is unpinned
    // (Groups returns the session shard without checking the pinned groups). B's rows live on
    // another shard than the session key A: they are missed, and the UPDATE misses them.
    // Correct: the statement's own keys win ("a statement with its own key keeps it");
    // refuse when they conflict with the session shard.
    ("SELECT * FROM contacts WHERE user_id IN (B, C)", &[], Some("A"), Want::CoverOrRefuse("B,C")),
    ("UPDATE contacts SET x = 1 WHERE user_id IN (B, C)", &[], Some("A"), Want::CoverOrRefuse("B,C")),
    ("SELECT * FROM contacts c, notes n WHERE c.user_id = B", &[], Some("A"), Want::CoverOrRefuse("B")),
    // ---- 12. Pins from an INNER join's ON spread through a later OUTER join's link into the
    // preserved side. u JOIN c ON … AND u.id = A restricts (u, c), but RIGHT/FULL JOIN notes
    // keeps every note; spread_pins copies A to n. Correct: every shard or refuse (do not
    // spread pins across outer-join links, nor take ON pins of joins nested in a nullable side).
    ("SELECT * FROM users u JOIN contacts c ON c.user_id = u.id AND u.id = A RIGHT JOIN notes n ON n.user_id = c.user_id", &[], None, Want::AllOrRefuse),
    ("SELECT * FROM users u JOIN contacts c ON c.user_id = u.id AND u.id = A FULL JOIN notes n ON n.user_id = c.user_id", &[], None, Want::AllOrRefuse),
    ("SELECT * FROM notes n LEFT JOIN (contacts c JOIN users u ON u.id = c.user_id AND u.id = A) ON c.user_id = n.user_id", &[], None, Want::AllOrRefuse),
    // ---- 13. Text the sqlparser tokenizer rejects but PostgreSQL accepts goes to `Any`
    // ("PostgreSQL reports the error" is false): UTF-8 bytes as \x escapes (é), a UTF-16
    // surrogate pair (😀). The DELETE runs on one shard only. Correct: refuse when the text
    // does not tokenize (as classify already fails closed to Write).
    ("DELETE FROM contacts WHERE name = E'\\xc3\\xa9'", &[], None, Want::AllOrRefuse),
    ("SELECT count(*) FROM contacts WHERE name = E'\\uD83D\\uDE00'", &[], None, Want::AllOrRefuse),
    // ---- 14. Subqueries the scope walk never visits: query-level ORDER BY / LIMIT, and the
    // arguments of a table function in FROM (TableFactor::Table { args }). A sharded table
    // there is invisible, the statement goes to `Any`. Correct: walk them; refuse here.
    ("SELECT * FROM countries k ORDER BY (SELECT count(*) FROM contacts c WHERE c.country = k.code) DESC", &[], None, Want::Refuse),
    ("SELECT * FROM countries LIMIT (SELECT count(*) FROM contacts)", &[], None, Want::Refuse),
    ("SELECT * FROM generate_series(1, (SELECT max(user_id) FROM contacts))", &[], None, Want::Refuse),
    // ---- 15. Merge: a quoted mixed-case alias compared case-insensitively. ORDER BY name is
    // the input column `name` ("Name" is another identifier), each shard sorts by it, but the
    // merge compares initcap(name) (position 0): the merged stream is out of order. Correct:
    // compare aliases with ident_key rules (unquoted folded, quoted exact).
    ("SELECT initcap(name) AS \"Name\" FROM contacts ORDER BY name", &[], None, Want::OrderHiddenOrRefuse),
    // ---- 16. Writes of shared (reference) tables fed by sharded tables: every shard runs it
    // with only its own rows, so the shared table diverges / holds a partial copy (the same
    // reasoning as the refused INSERT INTO countries SELECT … FROM contacts). Correct: refuse.
    ("CREATE TABLE contacts_copy AS SELECT * FROM contacts", &[], None, Want::Refuse),
    ("MERGE INTO countries k USING contacts c ON k.code = c.country WHEN NOT MATCHED THEN INSERT (code) VALUES (c.country)", &[], None, Want::Refuse),
    ("INSERT INTO countries (code, n) VALUES ('fr', 1) ON CONFLICT (code) DO UPDATE SET n = (SELECT count(*) FROM contacts)", &[], None, Want::Refuse),
    // ---- 17. JOIN USING / NATURAL link the right table with ANY earlier sharded table of the
    // block (link_on_columns gets every ref of the frame), not with the join's own left side.
    // Here the USING joins audit (a reference table with user_id) and notes; contacts is only
    // cross-joined, yet it is linked to notes and the cross product is fanned out (pairs on
    // different shards lost). Correct: refuse.
    ("SELECT * FROM contacts c, audit a JOIN notes n USING (user_id)", &[], None, Want::Refuse),
    ("SELECT * FROM contacts c JOIN (audit a JOIN notes n USING (user_id)) ON a.id = c.id", &[], None, Want::Refuse),
    // ---- 18. A key equality between two OUTER tables inside a subquery links them
    // ("links are sound wherever the block sits" holds only when one side is the subquery's
    // own table, and is not transitive under NOT). Under NOT EXISTS these pairs are those with
    // DIFFERENT keys: on different shards. Correct: refuse.
    ("SELECT * FROM contacts c, notes n WHERE NOT EXISTS (SELECT 1 WHERE c.user_id = n.user_id)", &[], None, Want::Refuse),
    ("SELECT * FROM contacts c, users u WHERE NOT EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND n.user_id = u.id)", &[], None, Want::Refuse),
    // ---- 19. The per-shard SQL is regenerated by sqlparser's Display, which turns 0x1F
    // (PostgreSQL 16: integer 31; before: 0 AS x1F) into X'1F' (a bit string): the shards
    // answer '00011111'. Correct: refuse (or send the original text when nothing is rewritten).
    ("SELECT name, 0x1F AS v FROM contacts", &[], None, Want::SqlLacksOrRefuse("X'1F'")),
    // ---- 20. An aggregate only in ORDER BY makes the query an aggregate query (one row);
    // `grouped` only looks at the select list and GROUP BY, so each shard's row is
    // concatenated (3 rows). Correct: a one-group merge or refuse.
    // Now merged as one group (an aggregate in ORDER BY makes the query an aggregate).
    ("SELECT 1 FROM contacts ORDER BY count(*)", &[], None, Want::AllOrRefuse),
    // ---- 21. A column alias list renames columns: with contacts(user_id, id, …),
    // c(id, user_id) makes c.user_id the ORIGINAL id. The pin is taken at face value.
    // Correct: no pins through a table alias with a column list (every shard), or refuse.
    ("SELECT * FROM contacts AS c(id, user_id) WHERE c.user_id = A", &[], None, Want::AllOrRefuse),
];

#[test]
fn router_once_got_these_wrong() {
    let m = map();
    let k = keys(&m);
    let mut wrong = Vec::new();
    for (sql, params, session, want) in WRONG {
        let sql = substitute(sql, k);
        let params: Vec<Option<String>> =
            params.iter().map(|p| p.map(|s| substitute(s, k))).collect();
        let params: Vec<Option<&str>> = params.iter().map(|p| p.as_deref()).collect();
        let session = session.map(|s| substitute(s, k));
        let got = run(&m, &sql, &params, session.as_deref());
        if !verdict(&m, &got, *want, k) {
            wrong.push(format!("{sql}\n    want {want:?}\n    got  {got:?}"));
        }
    }

    // ---- 22. Text keys: key_expr strips every cast, including casts that change the value.
    // 'k12345'::varchar(3) is 'k12' (and 'k1 '::char(3) compares as 'k1'); the router routes
    // by the uncast literal. The INSERT stores the row under 'k12' on the shard of 'k12345'.
    // Correct: only strip casts that preserve the value (to the key type, or unsized
    // text/varchar/int types); otherwise no pin (every shard) / refuse the INSERT.
    let t = map_with("key_type = \"text\"");
    let long = (0..)
        .map(|n| format!("k{n:05}"))
        .find(|s| t.shard_of_text(s).ok() != t.shard_of_text(&s[..3]).ok())
        .expect("a key whose 3-char prefix lives elsewhere");
    let short = long[..3].to_string();
    // 'k1 '::bpchar compares with text as 'k1' (trailing spaces dropped).
    let spaced = (0..)
        .map(|n| format!("k{n}"))
        .find(|s| t.shard_of_text(s).ok() != t.shard_of_text(&format!("{s} ")).ok())
        .expect("a key whose spaced form lives elsewhere");
    let text_cases = [
        (
            format!("SELECT * FROM contacts WHERE user_id = '{spaced} '::bpchar"),
            spaced.clone(),
        ),
        (
            format!("INSERT INTO contacts (user_id, name) VALUES ('{spaced} '::bpchar, 'x')"),
            spaced.clone(),
        ),
        (
            format!("SELECT * FROM contacts WHERE user_id = '{long}'::varchar(3)"),
            short.clone(),
        ),
        (
            format!("INSERT INTO contacts (user_id, name) VALUES ('{long}'::varchar(3), 'x')"),
            short.clone(),
        ),
    ];
    for (sql, key) in &text_cases {
        let got = run(&t, sql, &[], None);
        let ok = match &got {
            Err(_) => true,
            Ok(r) => match &r.shards {
                Shards::Some(v) => v.contains(&t.shard_of_text(key).expect("shard")),
                Shards::Any => false,
            },
        };
        if !ok {
            wrong.push(format!(
                "{sql}\n    want the shard of {key:?} (or every shard / refuse)\n    got  {got:?}"
            ));
        }
    }

    // ---- 23. Hints: `shard_key='O''Brien'` is cut at the first quote (hint::parse), so the
    // statement goes to the shard of "O", not "O'Brien". Correct: undouble '' inside the
    // quoted value (or reject the hint).
    let name = (0..)
        .map(|n| format!("O'Brien{n}"))
        .find(|s| t.shard_of_text(s).ok() != t.shard_of_text("O").ok())
        .expect("a name on another shard than \"O\"");
    let quoted = name.replace('\'', "''");
    let sql = format!(
        "/* pgproxy: shard_key='{quoted}' */ SELECT * FROM contacts WHERE user_id = '{quoted}'"
    );
    let got = run(&t, &sql, &[], None);
    let ok = match &got {
        Err(_) => true,
        Ok(r) => r.shards == Shards::Some(vec![t.shard_of_text(&name).expect("shard")]),
    };
    if !ok {
        wrong.push(format!(
            "{sql}\n    want the shard of {name:?}\n    got  {got:?}"
        ));
    }

    assert!(
        wrong.is_empty(),
        "{} statement(s) routed unsafely:\n\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

/// Tricky statements the router currently handles correctly.
const RIGHT: &[Case] = &[
    // WHERE on the nullable side of an outer join filters out the NULL rows: key A is sound.
    ("SELECT * FROM contacts c LEFT JOIN notes n ON n.user_id = c.user_id WHERE n.user_id = A", &[], None, Want::Keys("A")),
    ("SELECT * FROM contacts c RIGHT JOIN notes n ON n.user_id = c.user_id WHERE c.user_id = A", &[], None, Want::Keys("A")),
    // An inner-join pin followed by a LEFT JOIN: every row keeps u.id = A.
    ("SELECT * FROM users u JOIN contacts c ON c.user_id = u.id AND u.id = A LEFT JOIN notes n ON n.user_id = c.user_id", &[], None, Want::CoverOrRefuse("A")), // conservative now: ON constants do not pin a block with an outer join
    // The inner alias `c` (notes) shadows the outer one: the pin is on notes, contacts is free.
    ("SELECT * FROM contacts c WHERE EXISTS (SELECT 1 FROM notes c WHERE c.user_id = A)", &[], None, Want::RefuseWith("joins sharded tables")),
    // Keys under OR, in row comparisons, ANY(array) or next to NULL do not pin.
    ("SELECT * FROM contacts WHERE user_id = A OR user_id = B", &[], None, Want::Merge),
    ("SELECT * FROM contacts WHERE (user_id, name) = (A, 'x')", &[], None, Want::Merge),
    ("SELECT * FROM contacts WHERE user_id = ANY(ARRAY[A])", &[], None, Want::Merge),
    ("SELECT * FROM contacts WHERE user_id IN (A, NULL)", &[], None, Want::Merge),
    // A correlated link under OR is not a link.
    ("SELECT * FROM contacts c WHERE c.user_id = A AND EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id OR n.user_id = B)", &[], None, Want::RefuseWith("joins sharded tables")),
    ("SELECT * FROM contacts c JOIN notes n ON n.user_id = c.user_id OR n.user_id = A WHERE c.user_id = A", &[], None, Want::RefuseWith("joins sharded tables")),
    // A branch whose keys exclude each other is empty on any shard.
    ("SELECT name FROM contacts WHERE user_id = A EXCEPT SELECT name FROM notes WHERE user_id = A AND user_id = B", &[], None, Want::Keys("A")),
    // Parameters: ANDed keys intersect; a NULL key matches nothing.
    ("SELECT * FROM contacts WHERE user_id = $1 AND user_id = $2", &[Some("A"), Some("C")], None, Want::Keys("A")),
    ("SELECT * FROM contacts WHERE user_id IN ($1, $2)", &[None, Some("B")], None, Want::Keys("B")),
    // A hint inside a string literal is not a hint.
    ("SELECT * FROM contacts WHERE name = '/* pgproxy: shard=s1 */'", &[], None, Want::Merge),
    ("SELECT * FROM contacts WHERE name = $$ -- pgproxy: shard=s1 $$", &[], None, Want::Merge),
    // A schema-qualified name is never the CTE.
    ("WITH contacts AS (SELECT 1 AS user_id) SELECT * FROM public.contacts WHERE user_id = A", &[], None, Want::Keys("A")),
    // A recursive CTE whose both branches are pinned to A.
    ("WITH RECURSIVE t AS (SELECT id FROM contacts WHERE user_id = A UNION ALL SELECT c.id FROM contacts c JOIN t ON c.parent = t.id WHERE c.user_id = A) SELECT * FROM t", &[], None, Want::Keys("A")),
    // LATERAL correlated on the key: per-row, same shard.
    ("SELECT * FROM contacts c, LATERAL (SELECT * FROM notes n WHERE n.user_id = c.user_id ORDER BY n.id LIMIT 1) x", &[], None, Want::Merge),
    ("SELECT * FROM contacts c LEFT JOIN LATERAL (SELECT * FROM notes n WHERE n.user_id = c.user_id LIMIT 1) x ON true WHERE c.user_id = A", &[], None, Want::Keys("A")),
    // Keyless anti-join DELETE: every shard.
    ("DELETE FROM contacts c WHERE NOT EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id)", &[], None, Want::AllOrRefuse),
    // The key column quoted, or moved through a tuple assignment, is still the key.
    ("UPDATE contacts SET \"user_id\" = 5 WHERE user_id = A", &[], None, Want::RefuseWith("move the row")),
    // A shared table written from a sharded subquery is refused.
    ("UPDATE countries SET n = 1 WHERE code IN (SELECT country FROM contacts WHERE user_id = A)", &[], None, Want::RefuseWith("shared")),
    // Split INSERT with ON CONFLICT DO NOTHING.
    ("INSERT INTO contacts (user_id, name) VALUES (A, 'x'), (B, 'y') ON CONFLICT DO NOTHING", &[], None, Want::Split),
    // Merges: ORDER BY an aggregate and a key; position into a scalar subquery; avg by alias.
    ("SELECT name, count(*) FROM contacts GROUP BY name ORDER BY count(*) DESC, name LIMIT 3", &[], None, Want::OrderColOrRefuse(Col::Pos(1))),
    ("SELECT u.id, (SELECT count(*) FROM notes n WHERE n.user_id = u.id) FROM users u ORDER BY 2 DESC LIMIT 5", &[], None, Want::OrderColOrRefuse(Col::Pos(1))),
    ("SELECT avg(x) AS a FROM contacts GROUP BY name ORDER BY a", &[], None, Want::OrderColOrRefuse(Col::Pos(0))),
    ("SELECT DISTINCT name FROM contacts ORDER BY name LIMIT 2 OFFSET 1", &[], None, Want::Merge),
    // Aggregates that cannot be merged are refused.
    ("SELECT count(DISTINCT name), avg(x) FILTER (WHERE x > 0) FROM contacts", &[], None, Want::Refuse),
    ("SELECT name, avg(x) FROM contacts GROUP BY name ORDER BY avg(x)", &[], None, Want::OrderColOrRefuse(Col::Pos(1))),
    // A reference-table UNION branch next to a pinned branch.
    ("SELECT name FROM contacts WHERE user_id = A UNION ALL SELECT name FROM countries", &[], None, Want::Keys("A")),
    // E-strings the tokenizer understands.
    ("DELETE FROM contacts WHERE name = E'caf\\u00e9'", &[], None, Want::AllOrRefuse),
    // The session key fills in only for what the statement does not pin.
    ("SELECT * FROM contacts WHERE user_id = B", &[], Some("A"), Want::Keys("B")),
    // Several statements on different shards are refused.
    ("DELETE FROM contacts WHERE user_id = A; DELETE FROM contacts WHERE user_id = B", &[], None, Want::RefuseWith("different shards")),
    // A hint wins, wherever the comment is.
    ("SELECT * FROM contacts WHERE user_id = A -- pgproxy: shard=s1", &[], None, Want::Shard(1)),
    // "CONTACTS" quoted is another table; contacts aliased as "Cc" keeps its pin.
    ("SELECT * FROM \"CONTACTS\" WHERE user_id = A", &[], None, Want::Any),
    ("SELECT * FROM contacts \"Cc\" WHERE \"Cc\".user_id = A", &[], None, Want::Keys("A")),
];

#[test]
fn router_keeps_these_right() {
    let m = map();
    let k = keys(&m);
    let mut bad = Vec::new();
    for (sql, params, session, want) in RIGHT {
        let sql = substitute(sql, k);
        let params: Vec<Option<String>> =
            params.iter().map(|p| p.map(|s| substitute(s, k))).collect();
        let params: Vec<Option<&str>> = params.iter().map(|p| p.as_deref()).collect();
        let session = session.map(|s| substitute(s, k));
        let got = run(&m, &sql, &params, session.as_deref());
        if !verdict(&m, &got, *want, k) {
            bad.push(format!("{sql}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    assert!(RIGHT.len() >= 20);
}
