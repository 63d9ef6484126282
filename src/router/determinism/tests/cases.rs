//! The table of `plan` cases: SQL and the expected needs, rendered text or refusal.
//! Values are those of `tests::values`.

/// What `plan` should return for one case.
pub(super) enum Want {
    Unchanged,
    /// main_sql of each need, and the rendered SQL
    Rewrite(&'static [&'static str], &'static str),
    /// a piece of the reason
    Refused(&'static str),
}
use Want::*;

pub(super) const CASES: &[(&str, Want)] = &[
    // unchanged
    ("SELECT now(), random(), gen_random_uuid()", Unchanged),
    ("COPY t (id, name, created) FROM STDIN", Unchanged),
    ("COPY t FROM STDIN", Unchanged),
    ("COPY u (id, uid, note) FROM STDIN", Unchanged),
    ("COPY plain (a) FROM STDIN", Unchanged),
    ("COPY t (name) TO STDOUT", Unchanged),
    ("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", Unchanged),
    ("INSERT INTO x (a, b) VALUES ($1, $2)", Unchanged),
    ("INSERT INTO plain (m) VALUES (1)", Unchanged),
    ("INSERT INTO plain VALUES (DEFAULT, 1)", Unchanged),
    ("INSERT INTO unknown_table DEFAULT VALUES", Unchanged),
    ("INSERT INTO t (id, name, created) VALUES (1, 'a', '2020-01-01')", Unchanged),
    ("INSERT INTO u (id, uid, kind, note) OVERRIDING SYSTEM VALUE VALUES (5, '00000000-0000-0000-0000-000000000000', 'k', 'n')", Unchanged),
    ("SELECT * FROM x FOR UPDATE", Unchanged),
    ("SELECT setval('s', 5)", Unchanged),
    ("CREATE TABLE t3 (id serial, at timestamptz DEFAULT now())", Unchanged),
    // defaults set earlier in the same text (serial and nextval defaults are left to the nodes:
    // a sequence made by the text hands out the same values everywhere)
    ("CREATE TABLE e (id serial, n int); INSERT INTO e (n) VALUES (1)", Unchanged),
    ("CREATE TABLE IF NOT EXISTS plain (n int DEFAULT now()); INSERT INTO plain (m) VALUES (1)", Unchanged),
    (
        "CREATE TABLE e (id serial PRIMARY KEY, created timestamptz DEFAULT now()); INSERT INTO e (id) VALUES (1)",
        Rewrite(&["now()"], "CREATE TABLE e (id serial PRIMARY KEY, created timestamptz DEFAULT now()); INSERT INTO e (id, \"created\") VALUES (1, '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "CREATE TABLE e (u uuid DEFAULT gen_random_uuid(), v text); INSERT INTO e (v) VALUES ('a'), ('b')",
        Rewrite(&["gen_random_uuid()", "gen_random_uuid()"], "CREATE TABLE e (u uuid DEFAULT gen_random_uuid(), v text); INSERT INTO e (v, \"u\") VALUES ('a', '01111111-1111-1111-1111-111111111111'::uuid), ('b', '11111111-1111-1111-1111-111111111111'::uuid)"),
    ),
    (
        "ALTER TABLE plain ALTER COLUMN m SET DEFAULT random(); INSERT INTO plain (n) VALUES (1)",
        Rewrite(&["random()"], "ALTER TABLE plain ALTER COLUMN m SET DEFAULT random(); INSERT INTO plain (n, \"m\") VALUES (1, '0.05'::float8)"),
    ),
    (
        "ALTER TABLE t ALTER COLUMN created DROP DEFAULT; INSERT INTO t (name) VALUES ('x')",
        Rewrite(&["nextval('t_id_seq'::regclass)"], "ALTER TABLE t ALTER COLUMN created DROP DEFAULT; INSERT INTO t (name, \"id\") VALUES ('x', '100'::int8)"),
    ),
    ("ALTER TABLE x ADD COLUMN c int DEFAULT 0", Unchanged),
    ("PREPARE q AS INSERT INTO x VALUES ($1)", Unchanged),
    ("BEGIN; SET x = 1; COMMIT", Unchanged),
    ("COPY x FROM STDIN", Unchanged),
    ("TRUNCATE x", Unchanged),
    ("", Unchanged),
    // clock functions: allowed anywhere in a write
    (
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP)",
        Rewrite(&["now()"], "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "UPDATE x SET ts = now(), b = CURRENT_DATE, c = LOCALTIME(2), d = CURRENT_TIMESTAMP(3), e = LOCALTIMESTAMP, f = CURRENT_TIME WHERE id = $1",
        Rewrite(&["now()"], "UPDATE x SET ts = '2024-05-06 07:08:09.123456+00'::timestamptz, b = '2024-05-06 07:08:09.123456+00'::timestamptz::date, c = '2024-05-06 07:08:09.123456+00'::timestamptz::time(2), d = '2024-05-06 07:08:09.123456+00'::timestamptz(3), e = '2024-05-06 07:08:09.123456+00'::timestamptz::timestamp, f = '2024-05-06 07:08:09.123456+00'::timestamptz::timetz WHERE id = $1"),
    ),
    (
        "DELETE FROM x WHERE ts < now() - INTERVAL '1 day' RETURNING *",
        Rewrite(&["now()"], "DELETE FROM x WHERE ts < '2024-05-06 07:08:09.123456+00'::timestamptz - INTERVAL '1 day' RETURNING *"),
    ),
    (
        "INSERT INTO x SELECT now(), a FROM src",
        Rewrite(&["now()"], "INSERT INTO x SELECT '2024-05-06 07:08:09.123456+00'::timestamptz, a FROM src"),
    ),
    (
        "INSERT INTO x VALUES (timeofday(), statement_timestamp(), clock_timestamp())",
        Rewrite(&["clock_timestamp()", "clock_timestamp()", "clock_timestamp()"], "INSERT INTO x VALUES (pg_catalog.to_char('2024-05-06 07:08:10+00'::timestamptz, 'Dy Mon DD HH24:MI:SS.US YYYY TZ'), '2024-05-06 07:08:11+00'::timestamptz, '2024-05-06 07:08:12+00'::timestamptz)"),
    ),
    (
        "INSERT INTO x VALUES (transaction_timestamp(), pg_catalog.now(), \"now\"())",
        Rewrite(&["now()"], "INSERT INTO x VALUES ('2024-05-06 07:08:09.123456+00'::timestamptz, '2024-05-06 07:08:09.123456+00'::timestamptz, '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET created = now()",
        Rewrite(&["now()"], "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET created = '2024-05-06 07:08:09.123456+00'::timestamptz"),
    ),
    (
        "INSERT INTO x (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET ts = now() RETURNING a",
        Rewrite(&["now()"], "INSERT INTO x (a) VALUES (1) ON CONFLICT(a) DO UPDATE SET ts = '2024-05-06 07:08:09.123456+00'::timestamptz RETURNING a"),
    ),
    (
        "CREATE TABLE t2 AS SELECT now() AS at",
        Rewrite(&["now()"], "CREATE TABLE t2 AS SELECT '2024-05-06 07:08:09.123456+00'::timestamptz AS at"),
    ),
    (
        "SELECT my_func(now())",
        Rewrite(&["now()"], "SELECT my_func('2024-05-06 07:08:09.123456+00'::timestamptz) AS \"my_func\""),
    ),
    (
        "EXPLAIN ANALYZE INSERT INTO x VALUES (now())",
        Rewrite(&["now()"], "EXPLAIN ANALYZE INSERT INTO x VALUES ('2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    // per-row functions in VALUES rows: one need each, in order
    (
        "INSERT INTO x (a, b) VALUES (now(), random()), (clock_timestamp(), gen_random_uuid())",
        Rewrite(&["now()", "random()", "clock_timestamp()", "gen_random_uuid()"], "INSERT INTO x (a, b) VALUES ('2024-05-06 07:08:09.123456+00'::timestamptz, '0.15'::float8), ('2024-05-06 07:08:12+00'::timestamptz, '31111111-1111-1111-1111-111111111111'::uuid)"),
    ),
    (
        "INSERT INTO x (a) VALUES (nextval('s')), (nextval('public.s'::regclass)), (uuid_generate_v4())",
        Rewrite(&["nextval('s')", "nextval('public.s'::regclass)", "gen_random_uuid()"], "INSERT INTO x (a) VALUES ('100'::int8), ('101'::int8), ('21111111-1111-1111-1111-111111111111'::uuid)"),
    ),
    (
        "SELECT nextval('s'); SELECT currval('s') * 10",
        Rewrite(&["nextval('s')", "currval('s')"], "SELECT '100'::int8 AS \"nextval\"; SELECT '401'::int8 * 10"),
    ),
    // currval / lastval read the main's session state; the other nodes get the value.
    (
        "SELECT currval('s')",
        Rewrite(&["currval('s')"], "SELECT '400'::int8 AS \"currval\""),
    ),
    (
        "SELECT pg_catalog.lastval()",
        Rewrite(&["lastval()"], "SELECT '400'::int8 AS \"lastval\""),
    ),
    (
        "INSERT INTO child (parent_id, name) VALUES (currval('parent_id_seq'), 'x')",
        Rewrite(&["currval('parent_id_seq')"], "INSERT INTO child (parent_id, name) VALUES ('400'::int8, 'x')"),
    ),
    (
        "SELECT nextval('s'), now()::date",
        Rewrite(&["nextval('s')", "now()"], "SELECT '100'::int8 AS \"nextval\", '2024-05-06 07:08:09.123456+00'::timestamptz::DATE AS \"now\""),
    ),
    (
        "CALL p(now(), random())",
        Rewrite(&["now()", "random()"], "CALL p('2024-05-06 07:08:09.123456+00'::timestamptz, '0.15'::float8)"),
    ),
    (
        "EXECUTE q(now(), nextval('s'))",
        Rewrite(&["now()", "nextval('s')"], "EXECUTE q('2024-05-06 07:08:09.123456+00'::timestamptz, '101'::int8)"),
    ),
    // column defaults
    (
        "INSERT INTO t (name) VALUES ('a'), ('b')",
        Rewrite(&["nextval('t_id_seq'::regclass)", "now()", "nextval('t_id_seq'::regclass)"], "INSERT INTO t (name, \"id\", \"created\") VALUES ('a', '100'::int8, '2024-05-06 07:08:09.123456+00'::timestamptz), ('b', '102'::int8, '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "INSERT INTO t VALUES (DEFAULT, 'a')",
        Rewrite(&["nextval('t_id_seq'::regclass)", "now()"], "INSERT INTO t (\"id\", \"name\", \"created\") VALUES ('100'::int8, 'a', '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "INSERT INTO t DEFAULT VALUES",
        Rewrite(&["nextval('t_id_seq'::regclass)", "now()"], "INSERT INTO t (\"id\", \"created\") VALUES ('100'::int8, '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "INSERT INTO public.t (id, name, created) VALUES (1, 'x', DEFAULT) RETURNING id, now()",
        Rewrite(&["now()"], "INSERT INTO public.t (id, name, created) VALUES (1, 'x', '2024-05-06 07:08:09.123456+00'::timestamptz) RETURNING id, '2024-05-06 07:08:09.123456+00'::timestamptz AS \"now\""),
    ),
    (
        "INSERT INTO t (name) VALUES ('a') ON CONFLICT DO NOTHING RETURNING id",
        Rewrite(&["nextval('t_id_seq'::regclass)", "now()"], "INSERT INTO t (name, \"id\", \"created\") VALUES ('a', '100'::int8, '2024-05-06 07:08:09.123456+00'::timestamptz) ON CONFLICT DO NOTHING RETURNING id"),
    ),
    (
        "INSERT INTO u (note) VALUES ('n')",
        Rewrite(&["nextval('u_id_seq'::regclass)", "gen_random_uuid()"], "INSERT INTO u (note, \"id\", \"uid\") OVERRIDING SYSTEM VALUE VALUES ('n', '100'::int8, '11111111-1111-1111-1111-111111111111'::uuid)"),
    ),
    (
        "INSERT INTO u DEFAULT VALUES",
        Rewrite(&["nextval('u_id_seq'::regclass)", "gen_random_uuid()"], "INSERT INTO u (\"id\", \"uid\") OVERRIDING SYSTEM VALUE VALUES ('100'::int8, '11111111-1111-1111-1111-111111111111'::uuid)"),
    ),
    (
        "INSERT INTO u (id, note) OVERRIDING SYSTEM VALUE VALUES (5, 'n')",
        Rewrite(&["gen_random_uuid()"], "INSERT INTO u (id, note, \"uid\") OVERRIDING SYSTEM VALUE VALUES (5, 'n', '01111111-1111-1111-1111-111111111111'::uuid)"),
    ),
    (
        "INSERT INTO t OVERRIDING SYSTEM VALUE VALUES (DEFAULT, 'x')",
        Rewrite(&["nextval('t_id_seq'::regclass)", "now()"], "INSERT INTO t (\"id\", \"name\", \"created\") OVERRIDING SYSTEM VALUE VALUES ('100'::int8, 'x', '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "WITH x AS (INSERT INTO u (note) VALUES ('n') RETURNING id) SELECT * FROM x",
        Rewrite(&["nextval('u_id_seq'::regclass)", "gen_random_uuid()"], "WITH x AS (INSERT INTO u (note, \"id\", \"uid\") OVERRIDING SYSTEM VALUE VALUES ('n', '100'::int8, '11111111-1111-1111-1111-111111111111'::uuid) RETURNING id) SELECT * FROM x"),
    ),
    (
        "WITH ins AS (INSERT INTO t (name) VALUES ('a') RETURNING id) SELECT id, now() FROM ins",
        Rewrite(&["nextval('t_id_seq'::regclass)", "now()"], "WITH ins AS (INSERT INTO t (name, \"id\", \"created\") VALUES ('a', '100'::int8, '2024-05-06 07:08:09.123456+00'::timestamptz) RETURNING id) SELECT id, '2024-05-06 07:08:09.123456+00'::timestamptz AS \"now\" FROM ins"),
    ),
    (
        "INSERT INTO \"Mixed\" (v) VALUES (1)",
        Rewrite(&["nextval('\"Mixed_Id_seq\"'::regclass)"], "INSERT INTO \"Mixed\" (v, \"Id\") VALUES (1, '100'::int8)"),
    ),
    (
        "INSERT INTO ts (a) SELECT a FROM src",
        Rewrite(&["now()"], "INSERT INTO ts (a, \"at\", \"d\") SELECT a, '2024-05-06 07:08:09.123456+00'::timestamptz, '2024-05-06 07:08:09.123456+00'::timestamptz::date FROM src"),
    ),
    (
        "UPDATE t SET created = DEFAULT WHERE id = 1",
        Rewrite(&["now()"], "UPDATE t SET created = '2024-05-06 07:08:09.123456+00'::timestamptz WHERE id = 1"),
    ),
    // several statements: one shared transaction timestamp, untouched statements kept as written
    (
        "select 1 ; INSERT INTO x VALUES (now()); UPDATE y SET ts = now()",
        Rewrite(&["now()"], "select 1; INSERT INTO x VALUES ('2024-05-06 07:08:09.123456+00'::timestamptz); UPDATE y SET ts = '2024-05-06 07:08:09.123456+00'::timestamptz"),
    ),
    (
        "/* pgproxy: main */ INSERT INTO x VALUES ('it''s; a', now()) -- tail",
        Rewrite(&["now()"], "/* pgproxy: main */ INSERT INTO x VALUES ('it''s; a', '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    (
        "INSERT INTO x VALUES ('__pgproxy_slot0_1_', now())",
        Rewrite(&["now()"], "INSERT INTO x VALUES ('__pgproxy_slot0_1_', '2024-05-06 07:08:09.123456+00'::timestamptz)"),
    ),
    // text sqlparser cannot parse: clock functions replaced in the text
    (
        "SELECT * FROM x WHERE ts < now() AND d = CURRENT_DATE AND t > LOCALTIMESTAMP(3) AND pg_catalog.clock_timestamp() > a.now FOR NO KEY UPDATE",
        Rewrite(&["now()", "clock_timestamp()"], "SELECT * FROM x WHERE ts < '2024-05-06 07:08:09.123456+00'::timestamptz AND d = '2024-05-06 07:08:09.123456+00'::timestamptz::date AND t > '2024-05-06 07:08:09.123456+00'::timestamptz::timestamp(3) AND '2024-05-06 07:08:11+00'::timestamptz > a.now FOR NO KEY UPDATE"),
    ),
    // refused
    ("SELECT setval('s', 100); SELECT nextval('s')", Refused("cannot follow setval(), currval() or lastval()")),
    ("SELECT setval('s', 100); SELECT currval('s')", Refused("cannot follow setval() in the same query")),
    ("SELECT setval('s', 100), lastval()", Refused("cannot follow setval() in the same query")),
    ("SELECT currval(name) FROM seqs", Refused("currval(name) with a non-constant argument")),
    ("SELECT nextval('s'); SELECT currval('s'); SELECT nextval('s')", Refused("send them as separate queries")),
    ("SELECT lastval(); INSERT INTO t (name) VALUES ('a')", Refused("cannot follow setval()")),
    ("UPDATE x SET a = random() WHERE id = 1", Refused("random() in an UPDATE that may touch several rows")),
    ("DELETE FROM x WHERE r < random()", Refused("random() in a DELETE")),
    ("UPDATE t SET id = DEFAULT WHERE id = 1", Refused("SET id = DEFAULT")),
    // INSERT ... SELECT over rows the statement lists (ORM batch INSERTs)
    (
        "INSERT INTO t (name) SELECT p0::VARCHAR FROM (VALUES ($1, 0), ($2, 1)) AS imp_sen(p0, sen_counter) ORDER BY sen_counter RETURNING t.id, t.id AS id__1",
        Rewrite(&["nextval('t_id_seq'::regclass)", "nextval('t_id_seq'::regclass)", "now()"], "INSERT INTO t (name, \"id\", \"created\") SELECT p0::VARCHAR, imp_sen.pgproxy_default0, '2024-05-06 07:08:09.123456+00'::timestamptz FROM (VALUES ($1, 0, '100'::int8), ($2, 1, '101'::int8)) AS imp_sen (p0, sen_counter, pgproxy_default0) ORDER BY sen_counter RETURNING t.id, t.id AS id__1"),
    ),
    (
        "INSERT INTO u (note) SELECT * FROM (VALUES ('a'), ('b')) AS v",
        Rewrite(&["nextval('u_id_seq'::regclass)", "gen_random_uuid()", "nextval('u_id_seq'::regclass)", "gen_random_uuid()"], "INSERT INTO u (note, \"id\", \"uid\") OVERRIDING SYSTEM VALUE SELECT * FROM (VALUES ('a', '100'::int8, '11111111-1111-1111-1111-111111111111'::uuid), ('b', '102'::int8, '31111111-1111-1111-1111-111111111111'::uuid)) AS v"),
    ),
    (
        "INSERT INTO t (name) SELECT n FROM (VALUES ('a', 1), ('b', 2)) AS v(n) WHERE column2 > 1",
        Rewrite(&["nextval('t_id_seq'::regclass)", "nextval('t_id_seq'::regclass)", "now()"], "INSERT INTO t (name, \"id\", \"created\") SELECT n, v.pgproxy_default0, '2024-05-06 07:08:09.123456+00'::timestamptz FROM (VALUES ('a', 1, '100'::int8), ('b', 2, '101'::int8)) AS v (n, column2, pgproxy_default0) WHERE column2 > 1"),
    ),
    (
        "INSERT INTO t SELECT * FROM (VALUES (7, 'a')) AS v(i, n)",
        Rewrite(&["now()"], "INSERT INTO t (\"id\", \"name\", \"created\") SELECT *, '2024-05-06 07:08:09.123456+00'::timestamptz FROM (VALUES (7, 'a')) AS v (i, n)"),
    ),
    (
        "INSERT INTO t (name) SELECT * FROM UNNEST(('{a,b}')::varchar[])",
        Rewrite(&["ARRAY(SELECT nextval('t_id_seq'::regclass) FROM pg_catalog.generate_series(1, pg_catalog.cardinality(('{a,b}')::VARCHAR[])))", "now()"], "INSERT INTO t (name, \"id\", \"created\") SELECT *, '2024-05-06 07:08:09.123456+00'::timestamptz FROM UNNEST(('{a,b}')::VARCHAR[], '{200,300}'::int8[])"),
    ),
    (
        "INSERT INTO u (kind, note) SELECT * FROM UNNEST(ARRAY['k1', 'k2'], ARRAY['n1', 'n2', 'n3']) RETURNING id",
        Rewrite(&["ARRAY(SELECT nextval('u_id_seq'::regclass) FROM pg_catalog.generate_series(1, GREATEST(pg_catalog.cardinality(ARRAY['k1', 'k2']), pg_catalog.cardinality(ARRAY['n1', 'n2', 'n3']))))", "ARRAY(SELECT pg_catalog.gen_random_uuid() FROM pg_catalog.generate_series(1, GREATEST(pg_catalog.cardinality(ARRAY['k1', 'k2']), pg_catalog.cardinality(ARRAY['n1', 'n2', 'n3']))))"], "INSERT INTO u (kind, note, \"id\", \"uid\") OVERRIDING SYSTEM VALUE SELECT * FROM UNNEST(ARRAY['k1', 'k2'], ARRAY['n1', 'n2', 'n3'], '{200,300}'::int8[], '{12222222-2222-2222-2222-222222222222,13333333-3333-3333-3333-333333333333}'::uuid[]) RETURNING id"),
    ),
    (
        "INSERT INTO t (name) SELECT n FROM UNNEST('{a,b}'::text[]) AS x(n)",
        Rewrite(&["ARRAY(SELECT nextval('t_id_seq'::regclass) FROM pg_catalog.generate_series(1, pg_catalog.cardinality('{a,b}'::TEXT[])))", "now()"], "INSERT INTO t (name, \"id\", \"created\") SELECT n, x.pgproxy_default0, '2024-05-06 07:08:09.123456+00'::timestamptz FROM UNNEST('{a,b}'::TEXT[], '{200,300}'::int8[]) AS x (n, pgproxy_default0)"),
    ),
    ("INSERT INTO t (name) SELECT * FROM UNNEST(ARRAY[$1, $2])", Refused("whose column id defaults")),
    ("INSERT INTO t (name) SELECT DISTINCT * FROM (VALUES ('a'), ('a')) AS v", Refused("whose column id defaults")),
    ("INSERT INTO t (name) SELECT n FROM UNNEST('{a,b}'::text[]) AS x", Refused("whose column id defaults")),
    ("INSERT INTO t (name) SELECT * FROM UNNEST('{a,b}'::text[]) WITH ORDINALITY", Refused("whose column id defaults")),
    ("INSERT INTO t (name) SELECT name FROM src", Refused("INSERT ... SELECT into t, whose column id defaults to nextval('t_id_seq'::regclass)")),
    ("INSERT INTO t SELECT * FROM src", Refused("whose column id defaults")),
    ("INSERT INTO t (id, name, created) SELECT nextval('t_id_seq'), name, now() FROM src", Refused("nextval() in an INSERT ... SELECT")),
    ("INSERT INTO x VALUES ((SELECT random()))", Refused("random() in a subquery")),
    ("INSERT INTO x (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET r = random()", Refused("random() in the ON CONFLICT or RETURNING clause")),
    ("SELECT nextval('s') FROM generate_series(1, 3)", Refused("nextval() in a query that may return several rows")),
    ("SELECT nextval('s'), generate_series(1, 3)", Refused("nextval() in a query")),
    ("INSERT INTO x VALUES (nextval($1))", Refused("non-constant argument")),
    ("INSERT INTO x VALUES (nextval(some_col))", Refused("non-constant argument")),
    ("INSERT INTO x VALUES (random(1, 10))", Refused("random() with arguments")),
    ("INSERT INTO x SELECT * FROM nextval('s')", Refused("used as a table")),
    ("PREPARE q AS INSERT INTO x VALUES (now())", Refused("PREPARE of a write that uses now()")),
    ("INSERT INTO u OVERRIDING USER VALUE VALUES (1, '00000000-0000-0000-0000-000000000000', 'k', 'n')", Refused("OVERRIDING USER VALUE")),
    ("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT (name) VALUES (s.name)", Refused("MERGE ... INSERT into t")),
    ("ALTER TABLE x ADD COLUMN at timestamptz DEFAULT now()", Refused("ADD COLUMN at")),
    ("ALTER TABLE x ADD COLUMN id2 bigserial", Refused("ADD COLUMN id2")),
    ("SELECT * FROM x WHERE a = random() FOR NO KEY UPDATE", Refused("random() in a statement pgproxy cannot parse")),
    ("INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT pk DO NOTHING garbage", Refused("cannot parse this INSERT into t")),
    ("SELECT 1; UPDATE x SET a = gen_random_uuid()", Refused("gen_random_uuid() in an UPDATE")),
    ("CREATE TABLE e (id serial, at timestamptz DEFAULT now()); COPY e (id) FROM STDIN", Refused("COPY into e without column at")),
    ("COPY t (name) FROM STDIN", Refused("COPY into t without column id, whose default nextval('t_id_seq'::regclass)")),
    ("COPY t (id, name) FROM STDIN WITH (FORMAT csv)", Refused("without column created, whose default now()")),
    ("COPY public.t (name, created) FROM STDIN", Refused("without column id")),
    ("COPY u (id, note) FROM STDIN", Refused("without column uid")),
    ("COPY \"Mixed\" (v) FROM STDIN", Refused("without column Id")),
];
