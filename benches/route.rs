//! Criterion benchmarks of shard routing on a 2-shard map: planning and resolving a fresh
//! simple-protocol statement (sqlparser parse + route), and resolving the cached plan of a
//! prepared statement with its bind parameter (what every Bind/Execute costs).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pgproxy::config::Config;
use pgproxy::router::route::{plan, Param, RoutePlan, Shards};
use pgproxy::shard::ShardMap;

/// Typical OLTP statements of the contacts product, as a client sends them unprepared.
const FRESH: &[(&str, &str)] = &[
    (
        "select_by_key",
        "SELECT id, name, email FROM contacts WHERE user_id = 42",
    ),
    (
        "update_by_key",
        "UPDATE contacts SET name = 'Ada', email = 'ada@example.com' WHERE user_id = 42 AND id = 7",
    ),
    (
        "insert_with_key",
        "INSERT INTO contacts (user_id, name, email) VALUES (42, 'Ada', 'ada@example.com')",
    ),
    (
        "join_on_key",
        "SELECT u.name, c.name FROM users u JOIN contacts c ON c.user_id = u.id WHERE u.id = 42",
    ),
    (
        "merge_order_limit",
        "SELECT id, name FROM contacts WHERE name LIKE 'A%' ORDER BY name LIMIT 20",
    ),
    (
        "group_by_aggregates",
        "SELECT name, count(*), sum(score), max(created) FROM contacts GROUP BY name",
    ),
];

/// Prepared statements with the key as `$1`.
const PREPARED: &[(&str, &str)] = &[
    (
        "select_by_key",
        "SELECT id, name, email FROM contacts WHERE user_id = $1",
    ),
    (
        "update_by_key",
        "UPDATE contacts SET name = $2 WHERE user_id = $1 AND id = $3",
    ),
];

/// Two shards, `contacts` and `users` sharded by the user id (bigint, hash).
fn map() -> ShardMap {
    let text = "[[users]]\nname = \"u\"\npassword = \"p\"\n\
        [[shards]]\nname = \"s0\"\n[[shards.nodes]]\nhost = \"h\"\n\
        [[shards]]\nname = \"s1\"\n[[shards.nodes]]\nhost = \"h\"\n\
        [sharding]\n\
        [[sharding.tables]]\nname = \"contacts\"\ncolumn = \"user_id\"\n\
        [[sharding.tables]]\nname = \"users\"\ncolumn = \"id\"\n";
    let cfg = Config::from_toml(text).expect("the bench config is valid");
    ShardMap::from_config(&cfg).expect("the bench shard map builds")
}

fn no_params(_: usize) -> Option<Param<'static>> {
    None
}

fn bind_42(n: usize) -> Option<Param<'static>> {
    (n == 1).then_some(Param::Text("42"))
}

/// Each statement must route as the bench claims (one shard, or a merged fan-out), so the
/// figures measure the intended path and not a refusal.
fn check(
    name: &str,
    p: &RoutePlan,
    m: &ShardMap,
    params: &dyn Fn(usize) -> Option<Param<'static>>,
) {
    let r = p
        .resolve(m, params, None)
        .expect("the bench statement routes");
    let fanout = name.starts_with("merge") || name.starts_with("group");
    if fanout {
        assert!(
            r.shards == Shards::Some(vec![0, 1]) && r.merge.is_some(),
            "{name}: {r:?}"
        );
    } else {
        assert!(r.single().is_some(), "{name}: {r:?}");
    }
}

fn bench_fresh(c: &mut Criterion) {
    let m = map();
    let mut g = c.benchmark_group("route_fresh");
    for (name, sql) in FRESH {
        check(name, &plan(sql, &m), &m, &no_params);
        g.bench_function(*name, |b| {
            b.iter(|| {
                let p = plan(black_box(sql), &m);
                black_box(p.resolve(&m, &no_params, None))
            })
        });
    }
    g.finish();
}

fn bench_cached(c: &mut Criterion) {
    let m = map();
    let mut g = c.benchmark_group("route_cached");
    for (name, sql) in PREPARED {
        let p = plan(sql, &m);
        check(name, &p, &m, &bind_42);
        g.bench_function(*name, |b| {
            b.iter(|| black_box(black_box(&p).resolve(&m, &bind_42, None)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_fresh, bench_cached);
criterion_main!(benches);
