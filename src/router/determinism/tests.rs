use super::*;

fn col(name: &str, expr: &str, always: bool) -> ColumnDefault {
    ColumnDefault {
        name: name.into(),
        expr: expr.into(),
        identity_always: always,
    }
}

fn table(columns: Vec<ColumnDefault>, all: &[&str]) -> TableDefaults {
    TableDefaults {
        columns,
        all_columns: all.iter().map(|c| c.to_string()).collect(),
    }
}

/// t: SERIAL id, created DEFAULT now(); u: identity ALWAYS id, uuid default, constant default;
/// ts: clock defaults only; "Mixed": quoted names.
fn schema() -> HashMap<String, TableDefaults> {
    let t = table(
        vec![
            col("id", "nextval('t_id_seq'::regclass)", false),
            col("created", "now()", false),
        ],
        &["id", "name", "created"],
    );
    let mut m = HashMap::new();
    m.insert("t".to_string(), t.clone());
    m.insert("public.t".to_string(), t);
    m.insert(
        "u".to_string(),
        table(
            vec![
                col("id", "nextval('u_id_seq'::regclass)", true),
                col("uid", "gen_random_uuid()", false),
                col("kind", "'x'::text", false),
            ],
            &["id", "uid", "kind", "note"],
        ),
    );
    m.insert(
        "ts".to_string(),
        table(
            vec![
                col("at", "CURRENT_TIMESTAMP", false),
                col("d", "CURRENT_DATE", false),
            ],
            &["a", "at", "d"],
        ),
    );
    m.insert(
        "\"Mixed\"".to_string(),
        table(
            vec![col("Id", "nextval('\"Mixed_Id_seq\"'::regclass)", false)],
            &["Id", "v"],
        ),
    );
    m.insert(
        "plain".to_string(),
        table(vec![col("n", "0", false)], &["n", "m"]),
    );
    m
}

/// Distinct values per need index, so the tests see which need fills which slot.
fn values(needs: &[Need]) -> Vec<String> {
    needs
        .iter()
        .enumerate()
        .map(|(i, n)| match n {
            Need::TxnTimestamp => "2024-05-06 07:08:09.123456+00".to_string(),
            Need::ClockTimestamp => format!("2024-05-06 07:08:1{i}+00"),
            Need::Random => format!("0.{i}5"),
            Need::Uuid => format!("{i}1111111-1111-1111-1111-111111111111"),
            Need::Nextval(_) => format!("{}", 100 + i),
            Need::SequenceState(_) => format!("{}", 400 + i),
            Need::NextvalRows { .. } => format!("{{{},{}}}", 200 + i, 300 + i),
            Need::UuidRows { .. } => format!(
                "{{{i}2222222-2222-2222-2222-222222222222,{i}3333333-3333-3333-3333-333333333333}}"
            ),
        })
        .collect()
}

mod cases;
mod selection;
use cases::{Want, CASES};

/// Parses rendered SQL the way `plan` does (sqlparser does not know OVERRIDING).
fn reparses(sql: &str) -> bool {
    let Some(lexed) = Lexed::new(sql) else {
        return false;
    };
    let (tokens, _) = strip_overriding(&lexed.tokens);
    parse_tokens(tokens).is_ok()
}

#[test]
fn plans() {
    let s = schema();
    let mut failures = Vec::new();
    for (sql, want) in CASES {
        let got = plan(sql, &s);
        let ok = match (want, &got) {
            (Want::Unchanged, Planned::Unchanged) => true,
            (Want::Refused(piece), Planned::Refused(reason)) => reason.contains(piece),
            (Want::Rewrite(needs, text), Planned::Rewrite(p)) => {
                let main: Vec<String> = p.needs.iter().map(Need::main_sql).collect();
                let rendered = p.render(&values(&p.needs));
                main == *needs && rendered == *text
            }
            _ => false,
        };
        if !ok {
            let shown = match &got {
                Planned::Rewrite(p) => format!("{:?} => {}", p.needs, p.render(&values(&p.needs))),
                other => format!("{other:?}"),
            };
            failures.push(format!("{sql}\n    got {shown}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rewritten_sql_reparses_and_has_no_markers() {
    let s = schema();
    for (sql, want) in CASES {
        let (Want::Rewrite(..), Planned::Rewrite(p)) = (want, plan(sql, &s)) else {
            continue;
        };
        let out = p.render(&values(&p.needs));
        assert!(
            !out.contains("__pgproxy_slot") || sql.contains("__pgproxy_slot"),
            "{out}"
        );
        if !sql.contains("NO KEY") {
            assert!(reparses(&out), "does not parse: {out}");
        }
        for v in values(&p.needs) {
            assert!(out.contains(&v), "{v} missing in {out}");
        }
    }
}

#[test]
fn pgbench_history_insert_contains_the_timestamp() {
    let sql = "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)";
    let Planned::Rewrite(p) = plan(sql, &HashMap::new()) else {
        panic!("not rewritten");
    };
    assert_eq!(p.needs, [Need::TxnTimestamp]);
    let out = p.render(&["2024-01-02 03:04:05+00".to_string()]);
    assert!(
        out.contains("$1, $2, $3, $4, '2024-01-02 03:04:05+00'::timestamptz"),
        "{out}"
    );
    assert!(reparses(&out));
}

#[test]
fn values_are_quoted() {
    let Planned::Rewrite(p) = plan("INSERT INTO x VALUES (timeofday())", &HashMap::new()) else {
        panic!("not rewritten");
    };
    let out = p.render(&["it's".to_string()]);
    assert!(out.contains("'it''s'::timestamptz"), "{out}");
}

#[test]
fn need_sql() {
    let n = Need::Nextval("'public.t_id_seq'::regclass".into());
    assert_eq!(n.main_sql(), "nextval('public.t_id_seq'::regclass)");
    assert_eq!(
        n.follower_sql("42").as_deref(),
        Some("SELECT pg_catalog.setval('public.t_id_seq'::regclass, 42) WHERE coalesce(pg_catalog.pg_sequence_last_value(('public.t_id_seq'::regclass)::regclass), 0) < 42")
    );
    assert!(n
        .follower_sql("x'y")
        .is_some_and(|s| s.contains("'x''y'::int8")));
    assert_eq!(Need::TxnTimestamp.main_sql(), "now()");
    assert_eq!(Need::ClockTimestamp.main_sql(), "clock_timestamp()");
    assert_eq!(Need::Random.main_sql(), "random()");
    assert_eq!(Need::Uuid.main_sql(), "gen_random_uuid()");
    for n in [
        Need::TxnTimestamp,
        Need::ClockTimestamp,
        Need::Random,
        Need::Uuid,
    ] {
        assert_eq!(n.follower_sql("1"), None);
    }
}

#[test]
fn write_targets_lists_each_table_once() {
    let sql = "INSERT INTO t VALUES (1); UPDATE public.\"T\" SET a = 1; \
               WITH x AS (INSERT INTO \"Mixed\" VALUES (1) RETURNING 1) SELECT 1; \
               MERGE INTO m USING s ON true WHEN MATCHED THEN DELETE; \
               INSERT INTO q (a) OVERRIDING SYSTEM VALUE VALUES (1); \
               INSERT INTO T VALUES (2); DELETE FROM d; SELECT * FROM r; \
               PREPARE p AS INSERT INTO \"p_t\" VALUES ($1); \
               INSERT INTO Sch.Odd VALUES (1) garbage";
    assert_eq!(
        write_targets(sql),
        ["t", "public.\"T\"", "\"Mixed\"", "m", "q", "p_t", "sch.odd"]
    );
    assert!(write_targets("SELECT 1").is_empty());
    assert!(write_targets("SELECT 'unterminated").is_empty());
}

#[test]
fn sentinel_avoids_client_text() {
    assert_eq!(render::sentinel_for("SELECT 1"), "__pgproxy_slot0_");
    assert_eq!(
        render::sentinel_for("SELECT '__pgproxy_slot0_'"),
        "__pgproxy_slot1_"
    );
}

#[test]
fn reads_and_session_statements_are_not_planned() {
    let s = schema();
    for sql in [
        "SELECT random() FROM t",
        "SHOW timezone",
        "SET application_name = 'x'",
        "BEGIN",
        "LISTEN c",
        "EXPLAIN UPDATE x SET a = random()",
    ] {
        assert_eq!(plan(sql, &s), Planned::Unchanged, "{sql}");
    }
}

/// A template's plan, rendered with the statement's own numbers, is the statement's plan.
#[test]
fn template_plans_render_as_the_statement_plans() {
    let s = schema();
    let mut extra: Vec<&str> = vec![
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (56, 6, 41589, -3876, CURRENT_TIMESTAMP)",
        "INSERT INTO t (name) VALUES ('a'), ('b') RETURNING id, 7 * 6",
        "UPDATE t SET created = now() + 3 * interval '1 s' WHERE id = 4",
        "INSERT INTO t (id, name) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET created = now(), name = 'y' || 2",
        "INSERT INTO u (note) VALUES ('n') ; UPDATE plain SET m = 5 WHERE n = 6",
        "INSERT INTO ts (a) VALUES (1.5e3), (-2)",
        "INSERT INTO x VALUES (CURRENT_TIMESTAMP(3), 1)",
        "DELETE FROM t WHERE id IN (1, 2, 3) AND created < now() - interval '1 day'",
    ];
    extra.extend(CASES.iter().map(|(sql, _)| *sql));
    let mut templated = 0;
    for sql in extra {
        let Some(t) = template(sql) else { continue };
        let Some(tp) = plan_template(&t.text, &s) else {
            continue;
        };
        templated += 1;
        match (plan(sql, &s), tp) {
            (Planned::Unchanged, Planned::Unchanged) => {}
            (Planned::Rewrite(p), Planned::Rewrite(q)) => {
                assert_eq!(p.needs, q.needs, "{sql}");
                let v = values(&p.needs);
                assert_eq!(p.render(&v), q.render_with(&v, &t.params(sql)), "{sql}");
            }
            (a, b) => panic!("{sql}: statement {a:?}, template {b:?}"),
        }
    }
    assert!(templated >= 8, "only {templated} statements templated");
}

#[test]
fn a_batch_of_ids_moves_followers_to_its_last_value() {
    let n = Need::NextvalRows {
        arg: "'t_id_seq'::regclass".into(),
        count: RowCount {
            sql: vec!["3".into()],
            params: Vec::new(),
        },
    };
    let sql = n.follower_sql("{7,8,9}").expect("setval");
    assert!(sql.contains("setval('t_id_seq'::regclass, 9)"), "{sql}");
    assert_eq!(n.follower_sql("{}"), None);
    assert_eq!(
        Need::UuidRows {
            count: RowCount {
                sql: vec!["1".into()],
                params: Vec::new(),
            }
        }
        .follower_sql("{x}"),
        None
    );
}

#[test]
fn an_unnest_of_array_parameters_counts_rows_from_the_bind() {
    let sql =
        "INSERT INTO u (note, kind) SELECT * FROM UNNEST($1::text[], '{a,b}'::text[], $2::text[])";
    let Planned::Rewrite(p) = plan(sql, &schema()) else {
        panic!("not rewritten");
    };
    assert_eq!(p.needs.len(), 2, "{:?}", p.needs);
    assert!(
        p.needs.iter().all(|n| n.row_params() == [1, 2]),
        "{:?}",
        p.needs
    );
    let lens = [Some(4), Some(6)];
    let filled: Vec<Need> = p
        .needs
        .iter()
        .map(|n| n.with_row_counts(|k| lens[k - 1]).expect("lengths known"))
        .collect();
    assert_eq!(
        filled[0].main_sql(),
        "ARRAY(SELECT nextval('u_id_seq'::regclass) FROM pg_catalog.generate_series(1, GREATEST(pg_catalog.cardinality('{a,b}'::TEXT[]), 4, 6)))"
    );
    assert!(p.needs[0].with_row_counts(|_| None).is_none());
    let out = p.render(&values(&filled));
    assert!(
        out.starts_with("INSERT INTO u (note, kind, \"id\", \"uid\") OVERRIDING SYSTEM VALUE SELECT * FROM UNNEST($1::TEXT[], '{a,b}'::TEXT[], $2::TEXT[], '{200,300}'::int8[], '{1"),
        "{out}"
    );
    // A template (the simple protocol's numbers as $n) never stands for such a plan.
    assert_eq!(plan_template(sql, &schema()), None);
}
