//! Criterion benchmarks of the per-statement SQL work on a replicated shard: classifying a
//! statement (read / write / transaction control) and planning its deterministic rewrite.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pgproxy::router::classify;
use pgproxy::router::determinism::{self, ColumnDefault, Planned, TableDefaults};
use std::collections::HashMap;

const TPCB: &[(&str, &str)] = &[
    ("update", "UPDATE pgbench_accounts SET abalance = abalance + -4321 WHERE aid = 98765;"),
    ("select", "SELECT abalance FROM pgbench_accounts WHERE aid = 98765;"),
    (
        "insert_now",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (12, 3, 98765, -4321, CURRENT_TIMESTAMP);",
    ),
    ("begin", "BEGIN;"),
];

fn schema() -> HashMap<String, TableDefaults> {
    let mut m = HashMap::new();
    m.insert(
        "contacts".to_string(),
        TableDefaults {
            columns: vec![
                ColumnDefault {
                    name: "id".into(),
                    expr: "nextval('contacts_id_seq'::regclass)".into(),
                    identity_always: false,
                },
                ColumnDefault {
                    name: "created".into(),
                    expr: "now()".into(),
                    identity_always: false,
                },
            ],
            all_columns: vec![
                "id".into(),
                "user_id".into(),
                "name".into(),
                "created".into(),
            ],
        },
    );
    m
}

fn bench_classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for (name, sql) in TPCB {
        g.bench_function(*name, |b| b.iter(|| black_box(classify(black_box(sql)))));
    }
    g.finish();
}

fn bench_plan(c: &mut Criterion) {
    let s = schema();
    let mut g = c.benchmark_group("determinism");
    let insert = TPCB[2].1;
    g.bench_function("plan_insert_now", |b| {
        b.iter(|| black_box(determinism::plan(black_box(insert), &s)))
    });
    let serial = "INSERT INTO contacts (user_id, name) VALUES (42, 'Ada')";
    g.bench_function("plan_insert_serial_default", |b| {
        b.iter(|| black_box(determinism::plan(black_box(serial), &s)))
    });
    let Planned::Rewrite(plan) = determinism::plan(insert, &s) else {
        panic!("the history insert needs the transaction timestamp");
    };
    let values = vec!["2026-11-26 17:00:00.123456+00".to_string()];
    g.bench_function("render_insert_now", |b| {
        b.iter(|| black_box(plan.render(black_box(&values))))
    });
    g.bench_function("write_targets", |b| {
        b.iter(|| black_box(determinism::write_targets(black_box(serial))))
    });
    // What a simple query whose template was planned before costs: the template scan (also
    // the cache key) and rendering with its own numbers.
    let tpl = determinism::template(insert).expect("numbers to template");
    let Some(Planned::Rewrite(tplan)) = determinism::plan_template(&tpl.text, &s) else {
        panic!("the history insert's template needs the transaction timestamp");
    };
    g.bench_function("template_scan_insert_now", |b| {
        b.iter(|| black_box(determinism::template(black_box(insert))))
    });
    g.bench_function("render_template_insert_now", |b| {
        b.iter(|| {
            let t = determinism::template(black_box(insert)).expect("template");
            black_box(tplan.render_with(&values, &t.params(insert)))
        })
    });
    g.finish();
}

criterion_group!(benches, bench_classify, bench_plan);
criterion_main!(benches);
