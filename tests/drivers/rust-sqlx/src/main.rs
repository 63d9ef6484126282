//! sqlx (Rust, async, tokio) through pgproxy (or PostgreSQL directly): see scripts/test-drivers.
//!
//! Prints one PASS/FAIL line per check; exits 1 if any check failed.
//! Environment: DRIVER_HOST, DRIVER_PORT, DRIVER_USER, DRIVER_PASSWORD, DRIVER_DB, DRIVER_TARGET
//! (direct, transaction, session, replicated, sharded). LISTEN/NOTIFY runs on the session and
//! direct targets only; SQLX_LISTEN_ALL_TARGETS=1 runs it on every target (pgproxy pins a
//! listening client in transaction mode).
//!
//! sqlx uses the extended protocol for every `query*()` (named statements `sqlx_s_<n>`, cached per
//! connection, binary parameters and binary results) and the simple protocol for `raw_sql()`,
//! `begin()`/`commit()`/`rollback()` and `execute("text")` without parameters.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use serde_json::json;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolCopyExt, PgPoolOptions, PgRow,
};
use sqlx::types::chrono::{DateTime, NaiveDate, TimeZone, Utc};
use sqlx::types::{Decimal, JsonValue, Uuid};
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

type Res = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// `ensure!(cond, "what {}", x)`: a failed check with that message.
macro_rules! ensure {
    ($c:expr, $($what:tt)+) => {
        if !$c {
            return Err(format!($($what)+).into());
        }
    };
}

/// `eq!(actual, expected, "what {}", x)`
macro_rules! eq {
    ($a:expr, $e:expr, $($what:tt)+) => {
        match (&$a, &$e) {
            (a, e) => {
                if a != e {
                    return Err(format!("{}: expected {:?}, got {:?}", format!($($what)+), e, a).into());
                }
            }
        }
    };
}

/// A query text built at run time (table names carry this run's tag).
fn sql(s: impl Into<String>) -> AssertSqlSafe<String> {
    AssertSqlSafe(s.into())
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// The result must be an error with that SQLSTATE.
fn expect_code<T: std::fmt::Debug>(r: Result<T, sqlx::Error>, code: &str, what: &str) -> Res {
    match r {
        Ok(v) => Err(format!("{what}: no error (expected SQLSTATE {code}), got {v:?}").into()),
        Err(e) if sqlstate(&e).as_deref() == Some(code) => Ok(()),
        Err(e) => Err(format!("{what}: expected SQLSTATE {code}, got {:?}: {e}", sqlstate(&e)).into()),
    }
}

/// A documented refusal of the sharded target (0A000) for the statement itself, not for the
/// sequence of protocol messages that carried it.
fn expect_refused<T: std::fmt::Debug>(r: Result<T, sqlx::Error>, what: &str) -> Res {
    if let Err(e) = &r {
        let m = e.to_string();
        ensure!(!m.contains("combination of messages"), "{what}: refused for the message sequence: {m}");
    }
    expect_code(r, "0A000", what)
}

struct Cx {
    opts: PgConnectOptions,
    target: String,
    user: String,
    /// this run's table prefix: drv_sqlx_<target[:3]>_<pid>
    t: String,
    tag: String,
}

impl Cx {
    /// pgproxy in session mode gives each client a server connection of its pool of 2 for the
    /// whole session: never more than 2 client connections at once there.
    fn pool_max(&self, want: u32) -> u32 {
        if self.target == "session" {
            want.min(2)
        } else {
            want
        }
    }

    async fn pool(&self, max: u32) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(self.pool_max(max))
            .acquire_timeout(Duration::from_secs(40))
            .connect_with(self.opts.clone())
            .await
    }

    async fn conn(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.opts).await
    }
}

struct Checks {
    target: String,
    passed: u32,
    failed: u32,
}

impl Checks {
    async fn run<F: Future<Output = Res>>(&mut self, name: &str, timeout_s: u64, f: F) {
        let t0 = Instant::now();
        match tokio::time::timeout(Duration::from_secs(timeout_s), f).await {
            Ok(Ok(())) => {
                self.passed += 1;
                println!("PASS sqlx {}: {} ({:.2}s)", self.target, name, t0.elapsed().as_secs_f64());
            }
            Ok(Err(e)) => {
                self.failed += 1;
                println!("FAIL sqlx {}: {}: {}", self.target, name, e);
            }
            Err(_) => {
                self.failed += 1;
                println!("FAIL sqlx {}: {}: no answer after {}s (hung)", self.target, name, timeout_s);
            }
        }
    }
}

// ------------------------------------------------------------------ checks

async fn t_connect(cx: &Cx) -> Res {
    // a pool with several connections open at the same time
    let n = cx.pool_max(4);
    let pool = cx.pool(4).await?;
    let mut held = Vec::new();
    for k in 0..n {
        let mut c = pool.acquire().await?;
        let (u, db, one): (String, String, i32) =
            sqlx::query_as("SELECT current_user::text, current_database()::text, $1::int4")
                .bind(k as i32)
                .fetch_one(&mut *c)
                .await?;
        eq!(u, cx.user, "current_user on pooled connection {k}");
        eq!(db, "app", "current_database");
        eq!(one, k as i32, "bound value");
        held.push(c);
    }
    eq!(pool.size(), n, "pool size with {n} connections held");
    drop(held);
    pool.close().await;

    // one PgConnection
    let mut conn = cx.conn().await?;
    let v = conn.server_version_num().unwrap_or(0);
    ensure!(v >= 100000, "server_version_num {v}");
    let u: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut conn).await?;
    eq!(u, cx.user, "current_user");
    conn.ping().await?;
    let (enc, ds, tz): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('client_encoding'), current_setting('DateStyle'), current_setting('TimeZone')",
    )
    .fetch_one(&mut conn)
    .await?;
    // sqlx's startup parameters
    eq!((enc.as_str(), ds.as_str(), tz.as_str()), ("UTF8", "ISO, MDY", "UTC"), "startup settings");
    conn.close().await?;
    Ok(())
}

async fn t_types(cx: &Cx) -> Res {
    let mut conn = cx.conn().await?;
    let i2: i16 = -12345;
    let i4: i32 = 42;
    let i8_: i64 = (1i64 << 40) + 7;
    let f4: f32 = 1.5;
    let f8: f64 = std::f64::consts::PI;
    // rust_decimal: 28 significant digits at most
    let num = Decimal::from_str("1234567890123456789.123456789")?;
    let text = "héllo ☃ 'quote'\n\"dq\" \\ back".to_string();
    let by: Vec<u8> = b"\x00\x01\xffbinary".to_vec();
    let u = Uuid::parse_str("12345678-1234-5678-1234-567812345678")?;
    let ts: DateTime<Utc> = Utc.with_ymd_and_hms(2024, 2, 29, 12, 34, 56).unwrap()
        + chrono::Duration::microseconds(789_012);
    let d = NaiveDate::from_ymd_opt(1999, 12, 31).unwrap();
    let j: JsonValue = json!({"a": [1, 2, {"b": null}], "c": "d", "e": 1.25});
    let arr: Vec<i32> = vec![1, -2, 3];
    let tarr: Vec<Option<String>> = vec![Some("x".into()), None, Some("z,\"q\"".into())];
    let row: PgRow = sqlx::query(
        "SELECT $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::numeric, $7::text, \
         $8::bool, $9::bytea, $10::uuid, $11::timestamptz, $12::date, $13::json, $14::jsonb, \
         $15::int4[], $16::text[], $17::text, $18::int8, $19::bool",
    )
    .bind(i2)
    .bind(i4)
    .bind(i8_)
    .bind(f4)
    .bind(f8)
    .bind(num)
    .bind(&text)
    .bind(true)
    .bind(&by)
    .bind(u)
    .bind(ts)
    .bind(d)
    .bind(&j)
    .bind(&j)
    .bind(&arr)
    .bind(&tarr)
    .bind(None::<String>)
    .bind(None::<i64>)
    .bind(Some(false))
    .fetch_one(&mut conn)
    .await?;
    eq!(row.try_get::<i16, _>(0)?, i2, "int2");
    eq!(row.try_get::<i32, _>(1)?, i4, "int4");
    eq!(row.try_get::<i64, _>(2)?, i8_, "int8");
    eq!(row.try_get::<f32, _>(3)?, f4, "float4");
    eq!(row.try_get::<f64, _>(4)?, f8, "float8");
    eq!(row.try_get::<Decimal, _>(5)?, num, "numeric");
    eq!(row.try_get::<String, _>(6)?, text, "text");
    eq!(row.try_get::<bool, _>(7)?, true, "bool");
    eq!(row.try_get::<Vec<u8>, _>(8)?, by, "bytea");
    eq!(row.try_get::<Uuid, _>(9)?, u, "uuid");
    eq!(row.try_get::<DateTime<Utc>, _>(10)?, ts, "timestamptz");
    eq!(row.try_get::<NaiveDate, _>(11)?, d, "date");
    eq!(row.try_get::<JsonValue, _>(12)?, j, "json");
    eq!(row.try_get::<JsonValue, _>(13)?, j, "jsonb");
    eq!(row.try_get::<Vec<i32>, _>(14)?, arr, "int4[]");
    eq!(row.try_get::<Vec<Option<String>>, _>(15)?, tarr, "text[]");
    eq!(row.try_get::<Option<String>, _>(16)?, None, "NULL text");
    eq!(row.try_get::<Option<i64>, _>(17)?, None, "NULL int8");
    eq!(row.try_get::<Option<bool>, _>(18)?, Some(false), "Some(false)");

    // what the server made of the parameters (not only the round trip)
    let row = sqlx::query(
        "SELECT $1::uuid::text, to_char($2::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
         ($3::numeric * 2)::text, $4::jsonb->>'c', array_length($5::int4[], 1), $6::date - date '1999-01-01', \
         length($7::bytea), $8::text IS NULL, octet_length($9::text), $10::int8 % 1000",
    )
    .bind(u)
    .bind(ts)
    .bind(num)
    .bind(&j)
    .bind(&arr)
    .bind(d)
    .bind(&by)
    .bind(None::<String>)
    .bind(&text)
    .bind(i8_)
    .fetch_one(&mut conn)
    .await?;
    eq!(row.try_get::<String, _>(0)?, u.to_string(), "uuid as text");
    eq!(row.try_get::<String, _>(1)?, "2024-02-29 12:34:56.789012", "timestamptz as text");
    eq!(row.try_get::<String, _>(2)?, "2469135780246913578.246913578", "numeric * 2");
    eq!(row.try_get::<String, _>(3)?, "d", "jsonb ->> 'c'");
    eq!(row.try_get::<i32, _>(4)?, 3, "array_length");
    eq!(row.try_get::<i32, _>(5)?, 364, "date arithmetic");
    eq!(row.try_get::<i32, _>(6)?, by.len() as i32, "bytea length");
    eq!(row.try_get::<bool, _>(7)?, true, "NULL parameter IS NULL");
    eq!(row.try_get::<i32, _>(8)?, text.len() as i32, "text octet_length");
    eq!(row.try_get::<i64, _>(9)?, i8_ % 1000, "int8 arithmetic");

    // a large text and a large bytea (several protocol frames)
    let big = "x".repeat(300_000);
    let n: i32 = sqlx::query_scalar("SELECT length($1::text)").bind(&big).fetch_one(&mut conn).await?;
    eq!(n, 300_000, "big text");
    let blob: Vec<u8> = (0..256_000).map(|i| (i % 256) as u8).collect();
    let back: Vec<u8> = sqlx::query_scalar("SELECT $1::bytea").bind(&blob).fetch_one(&mut conn).await?;
    ensure!(back == blob, "big bytea differs (len {} vs {})", back.len(), blob.len());
    conn.close().await?;
    Ok(())
}

#[derive(sqlx::FromRow, Debug, PartialEq, Clone)]
struct Item {
    id: i32,
    name: String,
    score: Option<f64>,
    created: DateTime<Utc>,
    tags: Vec<String>,
}

async fn t_query_as(cx: &Cx) -> Res {
    let pool = cx.pool(2).await?;
    let t = &cx.t;
    sqlx::raw_sql(sql(format!(
        "DROP TABLE IF EXISTS {t}_items; CREATE TABLE {t}_items (id int PRIMARY KEY, name text NOT NULL, \
         score float8, created timestamptz NOT NULL, tags text[] NOT NULL)"
    )))
    .execute(&pool)
    .await?;
    let base = Utc.with_ymd_and_hms(2023, 6, 1, 8, 0, 0).unwrap();
    let items: Vec<Item> = (1..=5)
        .map(|i| Item {
            id: i,
            name: format!("item {i}"),
            score: if i % 2 == 0 { None } else { Some(i as f64 * 1.5) },
            created: base + chrono::Duration::hours(i as i64),
            tags: (0..i).map(|k| format!("t{k}")).collect(),
        })
        .collect();
    for it in &items {
        let r = sqlx::query(sql(format!(
            "INSERT INTO {t}_items (id, name, score, created, tags) VALUES ($1, $2, $3, $4, $5)"
        )))
        .bind(it.id)
        .bind(&it.name)
        .bind(it.score)
        .bind(it.created)
        .bind(&it.tags)
        .execute(&pool)
        .await?;
        eq!(r.rows_affected(), 1, "insert rows_affected");
    }
    let got: Vec<Item> = sqlx::query_as(sql(format!(
        "SELECT id, name, score, created, tags FROM {t}_items ORDER BY id"
    )))
    .fetch_all(&pool)
    .await?;
    eq!(got, items, "query_as rows");
    let one: Option<Item> = sqlx::query_as(sql(format!("SELECT * FROM {t}_items WHERE id = $1")))
        .bind(3)
        .fetch_optional(&pool)
        .await?;
    eq!(one, Some(items[2].clone()), "fetch_optional id 3");
    let none: Option<Item> = sqlx::query_as(sql(format!("SELECT * FROM {t}_items WHERE id = $1")))
        .bind(99)
        .fetch_optional(&pool)
        .await?;
    eq!(none, None, "fetch_optional id 99");
    let names: Vec<String> =
        sqlx::query_scalar(sql(format!("SELECT name FROM {t}_items WHERE score IS NULL ORDER BY id")))
            .fetch_all(&pool)
            .await?;
    eq!(names, vec!["item 2".to_string(), "item 4".to_string()], "query_scalar");
    pool.close().await;
    Ok(())
}

async fn t_prepared(cx: &Cx) -> Res {
    // the same statement 30 times on a pool of 3 (more client connections than pgproxy's pool of
    // 2 server connections in transaction mode): sqlx's named statement must keep working on
    // whichever server connection runs it
    let pool = cx.pool(3).await?;
    for i in 0..30i32 {
        let (a, b): (i32, String) = sqlx::query_as("SELECT $1::int4 * 2, $2::text || 'x'")
            .bind(i)
            .bind(i.to_string())
            .fetch_one(&pool)
            .await?;
        eq!((a, b), (i * 2, format!("{i}x")), "pool iteration {i}");
    }
    // several pool connections busy at once, each running the statement
    let mut hs = Vec::new();
    for k in 0..6i32 {
        let pool = pool.clone();
        hs.push(tokio::spawn(async move {
            for i in 0..10i32 {
                let v: i64 = sqlx::query_scalar("SELECT $1::int8 + $2::int8")
                    .bind(k as i64 * 100)
                    .bind(i as i64)
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| format!("task {k} iteration {i}: {e}"))?;
                if v != k as i64 * 100 + i as i64 {
                    return Err(format!("task {k} iteration {i}: got {v}"));
                }
            }
            Ok::<_, String>(())
        }));
    }
    for h in hs {
        h.await?.map_err(|e| format!("{e}"))?;
    }
    pool.close().await;

    // one connection: the statement cache holds the statements, reused 25 times, in
    // transactions too
    let mut conn = cx.conn().await?;
    for i in 0..25i64 {
        let v: i64 = sqlx::query_scalar("SELECT $1::int8 * 3").bind(i).fetch_one(&mut conn).await?;
        eq!(v, i * 3, "connection iteration {i}");
    }
    for i in 0..12i64 {
        let mut tx = conn.begin().await?;
        let v: i64 = sqlx::query_scalar("SELECT $1::int8 * 3").bind(i).fetch_one(&mut *tx).await?;
        eq!(v, i * 3, "in transaction {i}");
        tx.commit().await?;
    }
    ensure!(conn.cached_statements_size() >= 1, "sqlx cached no statement");
    // Close (statement) for every cached statement, then the same text again
    conn.clear_cached_statements().await?;
    eq!(conn.cached_statements_size(), 0, "cache after clear");
    for i in 0..5i64 {
        let v: i64 = sqlx::query_scalar("SELECT $1::int8 * 3").bind(i).fetch_one(&mut conn).await?;
        eq!(v, i * 3, "after clear_cached_statements {i}");
    }
    // not persistent: the unnamed statement
    for i in 0..5i64 {
        let v: i64 = sqlx::query_scalar("SELECT $1::int8 * 5")
            .bind(i)
            .persistent(false)
            .fetch_one(&mut conn)
            .await?;
        eq!(v, i * 5, "unnamed statement {i}");
    }
    conn.close().await?;

    // two connections, the same statement names (sqlx_s_1, sqlx_s_2: numbered per connection)
    // for different texts, interleaved
    let mut a = cx.conn().await?;
    let mut b = cx.conn().await?;
    for i in 0..10i32 {
        let x: i32 = sqlx::query_scalar("SELECT $1::int4 + 1000").bind(i).fetch_one(&mut a).await?;
        let y: String = sqlx::query_scalar("SELECT 'b:' || $1::text").bind(i.to_string()).fetch_one(&mut b).await?;
        let z: i32 = sqlx::query_scalar("SELECT $1::int4 - 1000").bind(i).fetch_one(&mut b).await?;
        let w: String = sqlx::query_scalar("SELECT 'a:' || $1::text").bind(i.to_string()).fetch_one(&mut a).await?;
        eq!((x, y.as_str(), z, w.as_str()), (i + 1000, format!("b:{i}").as_str(), i - 1000, format!("a:{i}").as_str()),
            "interleaved named statements {i}");
    }
    a.close().await?;
    b.close().await?;
    Ok(())
}

async fn t_transactions(cx: &Cx) -> Res {
    let t = &cx.t;
    let mut conn = cx.conn().await?;
    sqlx::raw_sql(sql(format!("DROP TABLE IF EXISTS {t}_tx; CREATE TABLE {t}_tx (a int)")))
        .execute(&mut conn)
        .await?;
    let ins = format!("INSERT INTO {t}_tx VALUES ($1)");
    let all = format!("SELECT coalesce(array_agg(a ORDER BY a), '{{}}') FROM {t}_tx");
    // commit
    let mut tx = conn.begin().await?;
    sqlx::query(sql(&ins)).bind(1).execute(&mut *tx).await?;
    let inside: Vec<i32> = sqlx::query_scalar(sql(&all)).fetch_one(&mut *tx).await?;
    eq!(inside, vec![1], "inside the transaction");
    tx.commit().await?;
    // rollback
    let mut tx = conn.begin().await?;
    sqlx::query(sql(&ins)).bind(2).execute(&mut *tx).await?;
    tx.rollback().await?;
    let v: Vec<i32> = sqlx::query_scalar(sql(&all)).fetch_one(&mut conn).await?;
    eq!(v, vec![1], "after rollback");
    // dropped without commit: sqlx queues a ROLLBACK, sent with the next statement
    {
        let mut tx = conn.begin().await?;
        sqlx::query(sql(&ins)).bind(6).execute(&mut *tx).await?;
    }
    let v: Vec<i32> = sqlx::query_scalar(sql(&all)).fetch_one(&mut conn).await?;
    eq!(v, vec![1], "after a dropped transaction");
    // savepoints: nested begin()
    let mut tx = conn.begin().await?;
    sqlx::query(sql(&ins)).bind(3).execute(&mut *tx).await?;
    {
        let mut sp = tx.begin().await?; // SAVEPOINT _sqlx_savepoint_1
        sqlx::query(sql(&ins)).bind(4).execute(&mut *sp).await?;
        let v: Vec<i32> = sqlx::query_scalar(sql(&all)).fetch_one(&mut *sp).await?;
        eq!(v, vec![1, 3, 4], "inside the savepoint");
        sp.rollback().await?; // ROLLBACK TO SAVEPOINT
    }
    {
        let mut sp = tx.begin().await?;
        sqlx::query(sql(&ins)).bind(5).execute(&mut *sp).await?;
        // an error inside a savepoint, rolled back to it: the outer transaction goes on
        {
            let mut sp2 = sp.begin().await?;
            let r = sqlx::query("SELECT 1 / $1::int4").bind(0).execute(&mut *sp2).await;
            expect_code(r, "22012", "division by zero in a savepoint")?;
            sp2.rollback().await?;
        }
        sp.commit().await?; // RELEASE SAVEPOINT
    }
    sqlx::query(sql(&ins)).bind(7).execute(&mut *tx).await?;
    tx.commit().await?;
    let v: Vec<i32> = sqlx::query_scalar(sql(&all)).fetch_one(&mut conn).await?;
    eq!(v, vec![1, 3, 5, 7], "savepoints");
    // a pool's transaction
    conn.close().await?;
    let pool = cx.pool(2).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(sql(&ins)).bind(8).execute(&mut *tx).await?;
    tx.rollback().await?;
    let mut tx = pool.begin().await?;
    sqlx::query(sql(&ins)).bind(9).execute(&mut *tx).await?;
    tx.commit().await?;
    let v: Vec<i32> = sqlx::query_scalar(sql(&all)).fetch_one(&pool).await?;
    eq!(v, vec![1, 3, 5, 7, 9], "pool transactions");
    sqlx::query(sql(format!("DROP TABLE {t}_tx"))).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

async fn t_errors(cx: &Cx) -> Res {
    let t = &cx.t;
    let mut conn = cx.conn().await?;
    sqlx::raw_sql(sql(format!("DROP TABLE IF EXISTS {t}_e; CREATE TABLE {t}_e (id int PRIMARY KEY)")))
        .execute(&mut conn)
        .await?;
    let ins = format!("INSERT INTO {t}_e VALUES ($1)");
    sqlx::query(sql(&ins)).bind(1).execute(&mut conn).await?;
    // unique violation: a prepared statement that worked before
    let r = sqlx::query(sql(&ins)).bind(1).execute(&mut conn).await;
    expect_code(r, "23505", "duplicate key")?;
    sqlx::query(sql(&ins)).bind(2).execute(&mut conn).await?;
    // the details of the error
    match sqlx::query(sql(&ins)).bind(2).execute(&mut conn).await {
        Err(sqlx::Error::Database(e)) => {
            eq!(e.constraint(), Some(format!("{t}_e_pkey").as_str()), "constraint name");
            ensure!(e.is_unique_violation(), "is_unique_violation");
        }
        other => return Err(format!("duplicate key: got {other:?}").into()),
    }
    // division by zero at Execute, then the same statement succeeds
    for i in 0..6i32 {
        let r = sqlx::query_scalar::<_, i32>("SELECT 10 / $1::int4")
            .bind(if i % 2 == 1 { 0 } else { 5 })
            .fetch_one(&mut conn)
            .await;
        if i % 2 == 1 {
            expect_code(r, "22012", &format!("division by zero {i}"))?;
        } else {
            eq!(r?, 2, "10 / 5 ({i})");
        }
    }
    // syntax error at Parse (extended protocol) and in the simple protocol
    expect_code(sqlx::query("SELEC $1::int4").bind(1).execute(&mut conn).await, "42601", "syntax error (Parse)")?;
    expect_code(sqlx::raw_sql("SELEC 1").execute(&mut conn).await, "42601", "syntax error (simple)")?;
    expect_code(
        sqlx::query("SELECT * FROM no_such_table_sqlx WHERE a = $1").bind(1).execute(&mut conn).await,
        "42P01",
        "undefined table",
    )?;
    let v: i32 = sqlx::query_scalar("SELECT $1::int4 + 1").bind(1).fetch_one(&mut conn).await?;
    eq!(v, 2, "after the errors");
    // an error in a transaction: 25P02 until the rollback
    let mut tx = conn.begin().await?;
    sqlx::query(sql(&ins)).bind(3).execute(&mut *tx).await?;
    expect_code(sqlx::query(sql(&ins)).bind(1).execute(&mut *tx).await, "23505", "duplicate in transaction")?;
    expect_code(
        sqlx::query_scalar::<_, i32>("SELECT $1::int4").bind(1).fetch_one(&mut *tx).await,
        "25P02",
        "statement in an aborted transaction",
    )?;
    tx.rollback().await?;
    let ids: Vec<i32> = sqlx::query_scalar(sql(format!("SELECT id FROM {t}_e ORDER BY id")))
        .fetch_all(&mut conn)
        .await?;
    eq!(ids, vec![1, 2], "rows after the failed transaction");
    // statement_timeout (57014), then the connection works
    sqlx::raw_sql("SET statement_timeout = '300ms'").execute(&mut conn).await?;
    expect_code(sqlx::query("SELECT pg_sleep($1)").bind(5.0f64).execute(&mut conn).await, "57014", "statement_timeout")?;
    sqlx::raw_sql("RESET statement_timeout").execute(&mut conn).await?;
    let v: i32 = sqlx::query_scalar("SELECT $1::int4 + 1").bind(5).fetch_one(&mut conn).await?;
    eq!(v, 6, "after statement_timeout");
    sqlx::query(sql(format!("DROP TABLE {t}_e"))).execute(&mut conn).await?;
    conn.close().await?;

    // the same through a pool: the connection that got the error goes back and is reused
    let pool = cx.pool(2).await?;
    for i in 0..6 {
        expect_code(sqlx::query("SELECT 1 / $1::int4").bind(0).execute(&pool).await, "22012", "pool: 1/0")?;
        let v: i32 = sqlx::query_scalar("SELECT $1::int4").bind(i).fetch_one(&pool).await?;
        eq!(v, i, "pool: after the error {i}");
    }
    pool.close().await;
    Ok(())
}

async fn t_raw_sql(cx: &Cx) -> Res {
    let t = &cx.t;
    let mut conn = cx.conn().await?;
    // several statements in one simple Query: rows affected add up
    let r = sqlx::raw_sql(sql(format!(
        "DROP TABLE IF EXISTS {t}_raw; CREATE TABLE {t}_raw (id int PRIMARY KEY, v text); \
         INSERT INTO {t}_raw VALUES (1, 'a'), (2, 'b'); INSERT INTO {t}_raw VALUES (3, 'c'); \
         UPDATE {t}_raw SET v = v || '!' WHERE id >= 2"
    )))
    .execute(&mut conn)
    .await?;
    eq!(r.rows_affected(), 5, "rows affected by the multi-statement string");
    // rows of several statements
    let rows = sqlx::raw_sql(sql(format!(
        "SELECT id, v FROM {t}_raw ORDER BY id; SELECT count(*) FROM {t}_raw"
    )))
    .fetch_all(&mut conn)
    .await?;
    eq!(rows.len(), 4, "rows of two statements");
    let first: Vec<(i32, String)> = rows[..3]
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    eq!(first, vec![(1, "a".into()), (2, "b!".into()), (3, "c!".into())], "first statement's rows");
    eq!(rows[3].try_get::<i64, _>(0)?, 3, "second statement's count");
    // Executor::execute with a plain string (simple protocol too)
    let r = conn
        .execute(sql(format!("DELETE FROM {t}_raw WHERE id = 3; INSERT INTO {t}_raw VALUES (4, 'd')")))
        .await?;
    eq!(r.rows_affected(), 2, "execute(&str)");
    // an error in the middle: the implicit transaction of the Query rolls back all of it
    let r = sqlx::raw_sql(sql(format!(
        "INSERT INTO {t}_raw VALUES (10, 'x'); SELECT 1/0; INSERT INTO {t}_raw VALUES (11, 'y')"
    )))
    .execute(&mut conn)
    .await;
    expect_code(r, "22012", "error in a multi-statement string")?;
    let ids: Vec<i32> = sqlx::query_scalar(sql(format!("SELECT id FROM {t}_raw ORDER BY id")))
        .fetch_all(&mut conn)
        .await?;
    eq!(ids, vec![1, 2, 4], "nothing of the failed string");
    // explicit BEGIN/COMMIT inside the string
    sqlx::raw_sql(sql(format!(
        "BEGIN; INSERT INTO {t}_raw VALUES (20, 'tx'); COMMIT; BEGIN; INSERT INTO {t}_raw VALUES (21, 'rb'); ROLLBACK"
    )))
    .execute(&mut conn)
    .await?;
    let ids: Vec<i32> = sqlx::query_scalar(sql(format!("SELECT id FROM {t}_raw ORDER BY id")))
        .fetch_all(&mut conn)
        .await?;
    eq!(ids, vec![1, 2, 4, 20], "BEGIN/COMMIT/ROLLBACK in the string");
    sqlx::raw_sql(sql(format!("DROP TABLE {t}_raw"))).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

async fn t_stream(cx: &Cx) -> Res {
    let pool = cx.pool(2).await?;
    let mut s = sqlx::query("SELECT g, 'row ' || g FROM generate_series(1, $1::int4) g").bind(10_000).fetch(&pool);
    let (mut n, mut sum) = (0i64, 0i64);
    while let Some(row) = s.try_next().await? {
        let g: i32 = row.try_get(0)?;
        let txt: String = row.try_get(1)?;
        n += 1;
        sum += g as i64;
        if txt != format!("row {g}") {
            return Err(format!("row {n}: {txt}").into());
        }
        if g as i64 != n {
            return Err(format!("row {n} has g = {g}").into());
        }
    }
    drop(s);
    eq!((n, sum), (10_000, 10_000 * 10_001 / 2), "streamed rows");
    pool.close().await; // session mode: at most 2 client connections at once
    // a stream dropped after 10 rows: the connection drains the rest and stays usable
    let mut conn = cx.conn().await?;
    {
        let mut s = sqlx::query("SELECT generate_series(1, 50000)").fetch(&mut conn);
        for _ in 0..10 {
            s.try_next().await?.ok_or("stream ended early")?;
        }
    }
    let v: i32 = sqlx::query_scalar("SELECT $1::int4").bind(7).fetch_one(&mut conn).await?;
    eq!(v, 7, "after a dropped stream");
    let c: i64 = sqlx::query_scalar("SELECT count(*) FROM generate_series(1, 10000)").fetch_one(&mut conn).await?;
    eq!(c, 10_000, "count");
    conn.close().await?;
    Ok(())
}

async fn t_copy(cx: &Cx) -> Res {
    let t = &cx.t;
    let mut conn = cx.conn().await?;
    sqlx::raw_sql(sql(format!(
        "DROP TABLE IF EXISTS {t}_c; CREATE TABLE {t}_c (a int, b text, c bytea)"
    )))
    .execute(&mut conn)
    .await?;
    // COPY text format: tab separated, \t an escaped tab, bytea as \\x.. (hex, its backslash escaped)
    let n = 5000usize;
    let mut data = String::new();
    for i in 0..n {
        data.push_str(&format!("{i}\trow {i}\\ttab\t\\\\x{:02x}{:02x}\n", i % 256, (i / 256) % 256));
    }
    let mut cp = conn.copy_in_raw(&format!("COPY {t}_c (a, b, c) FROM STDIN")).await?;
    // in pieces that cut rows in the middle
    for chunk in data.as_bytes().chunks(7_777) {
        cp.send(chunk).await?;
    }
    let rows = cp.finish().await?;
    eq!(rows, n as u64, "COPY in rows");
    let (cnt, sum): (i64, i64) = sqlx::query_as(sql(format!("SELECT count(*), sum(a) FROM {t}_c")))
        .fetch_one(&mut conn)
        .await?;
    eq!((cnt, sum), (n as i64, (n * (n - 1) / 2) as i64), "count and sum after COPY in");
    let (b, c): (String, Vec<u8>) = sqlx::query_as(sql(format!("SELECT b, c FROM {t}_c WHERE a = $1")))
        .bind(300)
        .fetch_one(&mut conn)
        .await?;
    eq!((b.as_str(), c), ("row 300\ttab", vec![44u8, 1]), "row 300");
    // COPY out: exactly what went in
    let mut out = Vec::new();
    {
        let mut s = conn.copy_out_raw(&format!("COPY (SELECT a, b, c FROM {t}_c ORDER BY a) TO STDOUT")).await?;
        while let Some(chunk) = s.try_next().await? {
            out.extend_from_slice(&chunk);
        }
    }
    ensure!(out == data.as_bytes(), "COPY out differs: {} bytes, expected {}; starts {:?}",
        out.len(), data.len(), String::from_utf8_lossy(&out[..out.len().min(80)]));
    // CSV out with a header
    let mut out = Vec::new();
    {
        let mut s = conn
            .copy_out_raw(&format!("COPY (SELECT a, b FROM {t}_c WHERE a < 3 ORDER BY a) TO STDOUT (FORMAT csv, HEADER)"))
            .await?;
        while let Some(chunk) = s.try_next().await? {
            out.extend_from_slice(&chunk);
        }
    }
    eq!(String::from_utf8(out)?, "a,b\n0,row 0\ttab\n1,row 1\ttab\n2,row 2\ttab\n", "CSV out");
    // bad data: 22P02 from finish(), the connection goes on
    let mut cp = conn.copy_in_raw(&format!("COPY {t}_c (a) FROM STDIN")).await?;
    cp.send(&b"1\nnot-a-number\n"[..]).await?;
    expect_code(cp.finish().await, "22P02", "bad COPY data")?;
    // the client aborts (CopyFail)
    let mut cp = conn.copy_in_raw(&format!("COPY {t}_c (a) FROM STDIN")).await?;
    cp.send(&b"1\n2\n"[..]).await?;
    cp.abort("client abort").await?;
    let cnt: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t}_c"))).fetch_one(&mut conn).await?;
    eq!(cnt, n as i64, "after the failed COPYs");
    // COPY in a transaction, rolled back
    let mut tx = conn.begin().await?;
    let mut cp = tx.copy_in_raw(&format!("COPY {t}_c (a, b) FROM STDIN")).await?;
    cp.send(&b"-1\tin tx\n"[..]).await?;
    eq!(cp.finish().await?, 1, "COPY in a transaction");
    let c2: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t}_c"))).fetch_one(&mut *tx).await?;
    eq!(c2, n as i64 + 1, "count inside the transaction");
    tx.rollback().await?;
    let cnt: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {t}_c"))).fetch_one(&mut conn).await?;
    eq!(cnt, n as i64, "after the rolled back COPY");
    conn.close().await?;
    // PgPoolCopyExt: COPY through a pool
    let pool = cx.pool(2).await?;
    let mut cp = pool.copy_in_raw(&format!("COPY {t}_c (a, b) FROM STDIN")).await?;
    cp.send(&b"-5\tpool\n-6\tpool\n"[..]).await?;
    eq!(cp.finish().await?, 2, "pool COPY in");
    let mut s = pool.copy_out_raw(&format!("COPY (SELECT a FROM {t}_c WHERE b = 'pool' ORDER BY a) TO STDOUT")).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.try_next().await? {
        out.extend_from_slice(&chunk);
    }
    drop(s);
    eq!(String::from_utf8(out)?, "-6\n-5\n", "pool COPY out");
    sqlx::query(sql(format!("DROP TABLE {t}_c"))).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

async fn recv_timeout(l: &mut PgListener, secs: f64) -> Result<Option<(String, String)>, sqlx::Error> {
    match tokio::time::timeout(Duration::from_secs_f64(secs), l.recv()).await {
        Ok(n) => {
            let n = n?;
            Ok(Some((n.channel().to_string(), n.payload().to_string())))
        }
        Err(_) => Ok(None),
    }
}

async fn t_listen_notify(cx: &Cx) -> Res {
    let chan = format!("chan_{}", cx.tag);
    let lpool = cx.pool(1).await?;
    let mut listener = PgListener::connect_with(&lpool).await?;
    listener.listen(&chan).await?;
    let mut notifier = cx.conn().await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(&chan).bind("hello").execute(&mut notifier).await?;
    sqlx::raw_sql(sql(format!("NOTIFY \"{chan}\", 'second'"))).execute(&mut notifier).await?;
    let a = recv_timeout(&mut listener, 10.0).await?;
    let b = recv_timeout(&mut listener, 10.0).await?;
    eq!(
        (a, b),
        (Some((chan.clone(), "hello".to_string())), Some((chan.clone(), "second".to_string()))),
        "notifications"
    );
    // a notification in a transaction arrives at its commit only
    let mut tx = notifier.begin().await?;
    sqlx::query("SELECT pg_notify($1, 'in tx')").bind(&chan).execute(&mut *tx).await?;
    eq!(recv_timeout(&mut listener, 0.5).await?, None, "before the commit");
    tx.commit().await?;
    eq!(recv_timeout(&mut listener, 10.0).await?, Some((chan.clone(), "in tx".to_string())), "after the commit");
    // a notification arriving while the listener runs a query (PgListener is an executor)
    sqlx::query("SELECT pg_notify($1, 'third')").bind(&chan).execute(&mut notifier).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let one: i32 = sqlx::query_scalar("SELECT $1::int4").bind(1).fetch_one(&mut listener).await?;
    eq!(one, 1, "query on the listener");
    eq!(recv_timeout(&mut listener, 5.0).await?, Some((chan.clone(), "third".to_string())), "during a query");
    // after UNLISTEN nothing arrives
    listener.unlisten(&chan).await?;
    sqlx::query("SELECT pg_notify($1, 'late')").bind(&chan).execute(&mut notifier).await?;
    eq!(recv_timeout(&mut listener, 0.5).await?, None, "after UNLISTEN");
    notifier.close().await?;
    drop(listener);
    lpool.close().await;
    Ok(())
}

async fn t_settings(cx: &Cx) -> Res {
    // SET outside a transaction follows the client (pgproxy replays it in transaction mode)
    let mut conn = cx.conn().await?;
    sqlx::raw_sql("SET application_name = 'sqlx-drv'; SET TimeZone = 'Asia/Tokyo'").execute(&mut conn).await?;
    for i in 0..6 {
        let mut tx = conn.begin().await?;
        let (app, tz): (String, String) =
            sqlx::query_as("SELECT current_setting('application_name'), current_setting('TimeZone')")
                .fetch_one(&mut *tx)
                .await?;
        eq!((app.as_str(), tz.as_str()), ("sqlx-drv", "Asia/Tokyo"), "settings in transaction {i}");
        tx.commit().await?;
        let h: String = sqlx::query_scalar("SELECT to_char($1::timestamptz, 'HH24')")
            .bind(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap())
            .fetch_one(&mut conn)
            .await?;
        eq!(h, "09", "timestamptz shown in Asia/Tokyo ({i})");
    }
    sqlx::raw_sql("RESET ALL").execute(&mut conn).await?;
    let (app, tz): (String, String) =
        sqlx::query_as("SELECT current_setting('application_name'), current_setting('TimeZone')")
            .fetch_one(&mut conn)
            .await?;
    // RESET ALL restores the startup packet's values
    eq!((app.as_str(), tz.as_str()), ("", "UTC"), "after RESET ALL");
    conn.close().await?;
    Ok(())
}

async fn t_concurrency(cx: &Cx) -> Res {
    let t = &cx.t;
    let pool = cx.pool(4).await?;
    sqlx::raw_sql(sql(format!(
        "DROP TABLE IF EXISTS {t}_conc; CREATE TABLE {t}_conc (k int, i int, v text, PRIMARY KEY (k, i))"
    )))
    .execute(&pool)
    .await?;
    let (tasks, iters) = (16i32, 20i32);
    let mut hs = Vec::new();
    for k in 0..tasks {
        let pool = pool.clone();
        let t = t.clone();
        hs.push(tokio::spawn(async move {
            let ins = format!("INSERT INTO {t}_conc (k, i, v) VALUES ($1, $2, $3)");
            let cnt = format!("SELECT count(*) FROM {t}_conc WHERE k = $1");
            let run = async {
                for i in 0..iters {
                    if i % 5 == 0 {
                        // in a transaction: insert, read it back, commit
                        let mut tx = pool.begin().await?;
                        sqlx::query(sql(&ins)).bind(k).bind(i).bind(format!("w{k}")).execute(&mut *tx).await?;
                        let c: i64 = sqlx::query_scalar(sql(&cnt)).bind(k).fetch_one(&mut *tx).await?;
                        if c != i as i64 + 1 {
                            return Err(format!("task {k} tx {i}: count {c}").into());
                        }
                        tx.commit().await?;
                    } else {
                        let r = sqlx::query(sql(&ins)).bind(k).bind(i).bind(format!("w{k}")).execute(&pool).await?;
                        if r.rows_affected() != 1 {
                            return Err(format!("task {k} insert {i}: rows_affected {}", r.rows_affected()).into());
                        }
                    }
                    if i % 7 == 3 {
                        // rolled back: not counted
                        let mut tx = pool.begin().await?;
                        sqlx::query(sql(&ins)).bind(k).bind(1000 + i).bind("rb").execute(&mut *tx).await?;
                        tx.rollback().await?;
                    }
                    let c: i64 = sqlx::query_scalar(sql(&cnt)).bind(k).fetch_one(&pool).await?;
                    if c != i as i64 + 1 {
                        return Err(format!("task {k} iteration {i}: count {c}").into());
                    }
                }
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            };
            run.await.map_err(|e| format!("task {k}: {e}"))
        }));
    }
    let mut errs = Vec::new();
    for h in hs {
        if let Err(e) = h.await? {
            errs.push(e);
        }
    }
    ensure!(errs.is_empty(), "{}", errs[..errs.len().min(5)].join("; "));
    let (n, sk, si): (i64, i64, i64) = sqlx::query_as(sql(format!(
        "SELECT count(*), sum(k), sum(i) FROM {t}_conc"
    )))
    .fetch_one(&pool)
    .await?;
    let exp_sk = (0..tasks as i64).sum::<i64>() * iters as i64;
    let exp_si = (0..iters as i64).sum::<i64>() * tasks as i64;
    eq!((n, sk, si), ((tasks * iters) as i64, exp_sk, exp_si), "final count, sum(k), sum(i)");
    sqlx::query(sql(format!("DROP TABLE {t}_conc"))).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

async fn t_cleanup(cx: &Cx) -> Res {
    let t = &cx.t;
    let mut conn = cx.conn().await?;
    sqlx::raw_sql(sql(format!(
        "DROP TABLE IF EXISTS {t}_items; DROP TABLE IF EXISTS {t}_tx; DROP TABLE IF EXISTS {t}_e; \
         DROP TABLE IF EXISTS {t}_raw; DROP TABLE IF EXISTS {t}_c; DROP TABLE IF EXISTS {t}_conc"
    )))
    .execute(&mut conn)
    .await?;
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE $1")
        .bind(format!("{t}%"))
        .fetch_one(&mut conn)
        .await?;
    eq!(left, 0, "tables of this run left");
    conn.close().await?;
    Ok(())
}

// ------------------------------------------------------------------ sharded table (sharded target)
// drv_contacts is sharded by user_id (hash, two shards: scripts/test-drivers). Shared by every
// driver run: this run uses its own key range (sqlx's band: 4e10..) and deletes its rows at the
// start and the end. Expected answers are computed from what was inserted. sqlx binds the key as
// a binary int8 and asks for binary results, merged ones included.

const SH: &str = "drv_contacts";
const SH_USERS: i64 = 20;

#[derive(sqlx::FromRow, Debug, PartialEq, Clone, PartialOrd, Eq, Ord)]
struct Contact {
    user_id: i64,
    id: i64,
    name: String,
    n: i32,
}

struct Sh {
    lo: i64,
    hi: i64,
    range: String,
    rows: std::collections::BTreeMap<(i64, i64), (String, i32)>,
    shard: std::collections::BTreeMap<i64, String>,
}

impl Sh {
    fn new() -> Sh {
        let lo = 40_000_000_000 + (std::process::id() as i64 % 4_000_000) * 100;
        let hi = lo + SH_USERS - 1;
        Sh {
            lo,
            hi,
            range: format!("user_id BETWEEN {lo} AND {hi}"),
            rows: Default::default(),
            shard: Default::default(),
        }
    }

    fn expected(&self) -> Vec<Contact> {
        self.rows
            .iter()
            .map(|(&(user_id, id), (name, n))| Contact { user_id, id, name: name.clone(), n: *n })
            .collect()
    }

    /// Every row of this run, read without a key (merged across shards), equals the model.
    /// Through raw_sql (simple protocol, text results), so that this bookkeeping works even where
    /// sqlx's extended-protocol merged reads do not (t_sh_merged checks those).
    async fn check_all(&self, c: &mut PgConnection, what: &str) -> Res {
        let rows = sqlx::raw_sql(sql(format!(
            "SELECT user_id, id, name, n FROM {SH} WHERE {} ORDER BY user_id, id",
            self.range
        )))
        .fetch_all(&mut *c)
        .await?;
        let got: Vec<Contact> = rows
            .iter()
            .map(|r| Ok(Contact { user_id: r.try_get(0)?, id: r.try_get(1)?, name: r.try_get(2)?, n: r.try_get(3)? }))
            .collect::<Result<_, sqlx::Error>>()?;
        eq!(got, self.expected(), "{what}");
        Ok(())
    }

    fn two_users(&self) -> Result<(i64, i64), String> {
        let a = self.lo;
        (self.lo..=self.hi)
            .find(|u| self.shard.get(u) != self.shard.get(&a))
            .map(|b| (a, b))
            .ok_or_else(|| "all users on one shard".to_string())
    }
}

async fn t_sh_setup(cx: &Cx, sh: &mut Sh) -> Res {
    let mut c = cx.conn().await?;
    sqlx::query(sql(format!(
        "CREATE TABLE IF NOT EXISTS {SH} (id bigint, user_id bigint NOT NULL, name text, n int, PRIMARY KEY (user_id, id))"
    )))
    .execute(&mut c)
    .await?;
    // every shard (simple protocol here: t_sh_keyless_write checks sqlx's extended protocol)
    sqlx::raw_sql(sql(format!("DELETE FROM {SH} WHERE {}", sh.range))).execute(&mut c).await?;
    let ins = format!("INSERT INTO {SH} (id, user_id, name, n) VALUES ($1, $2, $3, $4)");
    for k in 0..SH_USERS {
        let u = sh.lo + k;
        for i in 1..=3i64 {
            let name = format!("c{u}_{i}");
            let n = (k * 10 + i) as i32;
            let r = sqlx::query(sql(&ins)).bind(i).bind(u).bind(&name).bind(n).execute(&mut c).await?;
            eq!(r.rows_affected(), 1, "insert rows_affected {u}/{i}");
            sh.rows.insert((u, i), (name, n));
        }
    }
    // where each user landed: the same read on each shard by name (comment hint)
    for shard in ["s0", "s1"] {
        let us: Vec<i64> = sqlx::query_scalar(sql(format!(
            "/* pgproxy: shard={shard} */ SELECT user_id FROM {SH} WHERE {} AND id = 1",
            sh.range
        )))
        .fetch_all(&mut c)
        .await?;
        for u in us {
            ensure!(!sh.shard.contains_key(&u), "user {u} on both shards");
            sh.shard.insert(u, shard.to_string());
        }
    }
    eq!(sh.shard.keys().copied().collect::<Vec<_>>(), (sh.lo..=sh.hi).collect::<Vec<_>>(), "users placed");
    let shards: std::collections::BTreeSet<_> = sh.shard.values().collect();
    eq!(shards.len(), 2, "both shards hold rows of this run ({:?})", sh.shard);
    sh.check_all(&mut c, "all rows").await?;
    c.close().await?;
    Ok(())
}

async fn t_sh_by_key(cx: &Cx, sh: &mut Sh) -> Res {
    // on a pool: the named statements run on several client connections
    let pool = cx.pool(3).await?;
    for round in 0..2 {
        for u in sh.lo..=sh.hi {
            let got: Vec<Contact> = sqlx::query_as(sql(format!(
                "SELECT user_id, id, name, n FROM {SH} WHERE user_id = $1 ORDER BY id"
            )))
            .bind(u)
            .fetch_all(&pool)
            .await?;
            let exp: Vec<Contact> = sh.expected().into_iter().filter(|r| r.user_id == u).collect();
            eq!(got, exp, "user {u} round {round}");
            let name: String = sqlx::query_scalar(sql(format!("SELECT name FROM {SH} WHERE user_id = $1 AND id = $2")))
                .bind(u)
                .bind(2i64)
                .fetch_one(&pool)
                .await?;
            eq!(name, sh.rows[&(u, 2)].0, "name of {u}/2");
        }
    }
    // UPDATE / DELETE by key
    for u in sh.lo..=sh.hi {
        let r = sqlx::query(sql(format!("UPDATE {SH} SET n = n + 100 WHERE user_id = $1 AND id = $2")))
            .bind(u)
            .bind(1i64)
            .execute(&pool)
            .await?;
        eq!(r.rows_affected(), 1, "update {u}");
        sh.rows.get_mut(&(u, 1)).unwrap().1 += 100;
        if (u - sh.lo) % 2 == 0 {
            let r = sqlx::query(sql(format!("DELETE FROM {SH} WHERE user_id = $1 AND id = $2")))
                .bind(u)
                .bind(3i64)
                .execute(&pool)
                .await?;
            eq!(r.rows_affected(), 1, "delete {u}");
            sh.rows.remove(&(u, 3));
        }
    }
    // UPDATE ... RETURNING by key
    let u = sh.lo + 5;
    let mut got: Vec<(i64, String)> = sqlx::query_as(sql(format!(
        "UPDATE {SH} SET name = name || '!' WHERE user_id = $1 RETURNING id, name"
    )))
    .bind(u)
    .fetch_all(&pool)
    .await?;
    got.sort();
    let mut exp = Vec::new();
    for ((uu, i), (name, _)) in sh.rows.iter_mut() {
        if *uu == u {
            name.push('!');
            exp.push((*i, name.clone()));
        }
    }
    eq!(got, exp, "RETURNING");
    let mut c = pool.acquire().await?;
    sh.check_all(&mut c, "after updates and deletes").await?;
    drop(c);
    pool.close().await;
    Ok(())
}

async fn t_sh_tx(cx: &Cx, sh: &mut Sh) -> Res {
    let (a, b) = sh.two_users()?;
    let mut c = cx.conn().await?;
    let up = format!("UPDATE {SH} SET name = $1 WHERE user_id = $2 AND id = 1");
    // one user: commit, rollback
    let mut tx = c.begin().await?;
    sqlx::query(sql(&up)).bind("one").bind(a).execute(&mut *tx).await?;
    sqlx::query(sql(format!("INSERT INTO {SH} (id, user_id, name, n) VALUES ($1, $2, $3, $4)")))
        .bind(10i64)
        .bind(a)
        .bind("tx")
        .bind(7)
        .execute(&mut *tx)
        .await?;
    let cnt: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {SH} WHERE user_id = $1")))
        .bind(a)
        .fetch_one(&mut *tx)
        .await?;
    eq!(cnt, sh.rows.keys().filter(|(u, _)| *u == a).count() as i64 + 1, "count inside the transaction");
    tx.commit().await?;
    sh.rows.get_mut(&(a, 1)).unwrap().0 = "one".into();
    sh.rows.insert((a, 10), ("tx".into(), 7));
    let mut tx = c.begin().await?;
    sqlx::query(sql(&up)).bind("one-rb").bind(a).execute(&mut *tx).await?;
    tx.rollback().await?;
    // two users on two shards (2PC): commit, rollback
    let mut tx = c.begin().await?;
    sqlx::query(sql(&up)).bind("two-a").bind(a).execute(&mut *tx).await?;
    sqlx::query(sql(&up)).bind("two-b").bind(b).execute(&mut *tx).await?;
    let name: String = sqlx::query_scalar(sql(format!("SELECT name FROM {SH} WHERE user_id = $1 AND id = 1")))
        .bind(a)
        .fetch_one(&mut *tx)
        .await?;
    eq!(name, "two-a", "first shard read again in the transaction");
    tx.commit().await?;
    sh.rows.get_mut(&(a, 1)).unwrap().0 = "two-a".into();
    sh.rows.get_mut(&(b, 1)).unwrap().0 = "two-b".into();
    let mut tx = c.begin().await?;
    sqlx::query(sql(&up)).bind("two-rb").bind(a).execute(&mut *tx).await?;
    sqlx::query(sql(&up)).bind("two-rb").bind(b).execute(&mut *tx).await?;
    tx.rollback().await?;
    // an error on the second shard aborts the whole transaction
    let mut tx = c.begin().await?;
    sqlx::query(sql(format!("UPDATE {SH} SET n = -2 WHERE user_id = $1")))
        .bind(a)
        .execute(&mut *tx)
        .await?;
    let r = sqlx::query(sql(format!("INSERT INTO {SH} (id, user_id, name, n) VALUES ($1, $2, $3, $4)")))
        .bind(1i64)
        .bind(b)
        .bind("dup")
        .bind(1)
        .execute(&mut *tx)
        .await;
    expect_code(r, "23505", "duplicate key on the second shard")?;
    tx.rollback().await?;
    sh.check_all(&mut c, "after the transactions").await?;
    c.close().await?;
    Ok(())
}

async fn t_sh_merged(cx: &Cx, sh: &mut Sh) -> Res {
    let rows = sh.expected();
    let ns: Vec<i64> = rows.iter().map(|r| r.n as i64).collect();
    let mut c = cx.conn().await?;
    let (cnt, sum, mi, ma): (i64, i64, i32, i32) = sqlx::query_as(sql(format!(
        "SELECT count(*), sum(n), min(n), max(n) FROM {SH} WHERE {}",
        sh.range
    )))
    .fetch_one(&mut c)
    .await?;
    eq!(
        (cnt, sum, mi as i64, ma as i64),
        (rows.len() as i64, ns.iter().sum::<i64>(), *ns.iter().min().unwrap(), *ns.iter().max().unwrap()),
        "count, sum, min, max"
    );
    // avg: numeric, merged as sum / count
    let avg: Decimal = sqlx::query_scalar(sql(format!("SELECT avg(n) FROM {SH} WHERE {}", sh.range)))
        .fetch_one(&mut c)
        .await?;
    let exp = Decimal::from(ns.iter().sum::<i64>()) / Decimal::from(rows.len() as i64);
    ensure!((avg - exp).abs() < Decimal::from_str("0.000000000001")?, "avg {avg} != {exp}");
    // the range as parameters (prepared, several executions)
    for i in 0..8 {
        let n: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {SH} WHERE user_id BETWEEN $1 AND $2")))
            .bind(sh.lo + i)
            .bind(sh.hi)
            .fetch_one(&mut c)
            .await?;
        eq!(n, rows.iter().filter(|r| r.user_id >= sh.lo + i).count() as i64, "count from {}", sh.lo + i);
    }
    // ORDER BY ... LIMIT $1 / OFFSET $2: k-way merge
    let mut top = rows.clone();
    top.sort_by(|x, y| y.n.cmp(&x.n).then(x.user_id.cmp(&y.user_id)).then(x.id.cmp(&y.id)));
    for off in 0..5i64 {
        let got: Vec<(i64, i64, i32)> = sqlx::query_as(sql(format!(
            "SELECT user_id, id, n FROM {SH} WHERE {} ORDER BY n DESC, user_id, id LIMIT $1 OFFSET $2",
            sh.range
        )))
        .bind(4i64)
        .bind(off)
        .fetch_all(&mut c)
        .await?;
        let exp: Vec<(i64, i64, i32)> = top.iter().skip(off as usize).take(4).map(|r| (r.user_id, r.id, r.n)).collect();
        eq!(got, exp, "ORDER BY LIMIT 4 OFFSET {off}");
    }
    // GROUP BY the key
    let mut groups: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for r in &rows {
        let g = groups.entry(r.user_id).or_default();
        g.0 += 1;
        g.1 += r.n as i64;
    }
    let got: Vec<(i64, i64, i64)> = sqlx::query_as(sql(format!(
        "SELECT user_id, count(*), sum(n) FROM {SH} WHERE {} GROUP BY user_id ORDER BY user_id",
        sh.range
    )))
    .fetch_all(&mut c)
    .await?;
    eq!(got, groups.iter().map(|(u, (n, s))| (*u, *n, *s)).collect::<Vec<_>>(), "GROUP BY user_id");
    // streamed (fetch) merged rows
    let mut s = sqlx::query(sql(format!("SELECT user_id, id FROM {SH} WHERE {} ORDER BY user_id DESC, id DESC", sh.range)))
        .fetch(&mut c);
    let mut streamed = Vec::new();
    while let Some(r) = s.try_next().await? {
        streamed.push((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?));
    }
    drop(s);
    eq!(streamed, rows.iter().rev().map(|r| (r.user_id, r.id)).collect::<Vec<_>>(), "streamed ORDER BY DESC");
    c.close().await?;
    Ok(())
}

/// Keyless reads merged across shards through raw_sql (simple protocol, text results).
async fn t_sh_merged_simple(cx: &Cx, sh: &mut Sh) -> Res {
    let rows = sh.expected();
    let mut c = cx.conn().await?;
    let r = sqlx::raw_sql(sql(format!("SELECT count(*), sum(n), min(n), max(n) FROM {SH} WHERE {}", sh.range)))
        .fetch_one(&mut c)
        .await?;
    let ns: Vec<i64> = rows.iter().map(|r| r.n as i64).collect();
    eq!(
        (r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<i32, _>(2)? as i64, r.try_get::<i32, _>(3)? as i64),
        (rows.len() as i64, ns.iter().sum::<i64>(), *ns.iter().min().unwrap(), *ns.iter().max().unwrap()),
        "count, sum, min, max"
    );
    let mut top = rows.clone();
    top.sort_by(|x, y| y.n.cmp(&x.n).then(x.user_id.cmp(&y.user_id)).then(x.id.cmp(&y.id)));
    let got = sqlx::raw_sql(sql(format!(
        "SELECT user_id, id, n FROM {SH} WHERE {} ORDER BY n DESC, user_id, id LIMIT 5",
        sh.range
    )))
    .fetch_all(&mut c)
    .await?
    .iter()
    .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<i32, _>(2)?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    eq!(got, top.iter().take(5).map(|r| (r.user_id, r.id, r.n)).collect::<Vec<_>>(), "ORDER BY LIMIT 5");
    c.close().await?;
    Ok(())
}

/// COPY into the sharded table (each row to its key's shard) and out of it (every shard's rows
/// together); the model gets the rows, then they are deleted again by key.
async fn t_sh_copy(cx: &Cx, sh: &mut Sh) -> Res {
    let mut c = cx.conn().await?;
    let mut data = String::new();
    let mut added = Vec::new();
    for u in sh.lo..=sh.hi {
        let (id, name, n) = (100i64, format!("copied {u}"), 7i32);
        data.push_str(&format!("{id}\t{u}\t{name}\t{n}\n"));
        added.push(((u, id), (name, n)));
    }
    let mut cp = c.copy_in_raw(&format!("COPY {SH} (id, user_id, name, n) FROM STDIN")).await?;
    for chunk in data.as_bytes().chunks(37) {
        cp.send(chunk).await?;
    }
    eq!(cp.finish().await?, added.len() as u64, "COPY in rows");
    sh.rows.extend(added.iter().cloned());
    sh.check_all(&mut c, "after COPY in").await?;
    // out: the whole table (other runs' rows too), this run's rows picked by key
    let mut out = Vec::new();
    {
        let mut s = c.copy_out_raw(&format!("COPY {SH} (user_id, id, name, n) TO STDOUT (FORMAT csv)")).await?;
        while let Some(chunk) = s.try_next().await? {
            out.extend_from_slice(&chunk);
        }
    }
    let text = String::from_utf8(out)?;
    let mut mine: Vec<String> = text
        .lines()
        .filter(|l| l.split(',').next().and_then(|k| k.parse::<i64>().ok()).is_some_and(|k| (sh.lo..=sh.hi).contains(&k)))
        .map(str::to_string)
        .collect();
    mine.sort();
    let mut want: Vec<String> =
        sh.rows.iter().map(|((u, id), (name, n))| format!("{u},{id},{name},{n}")).collect();
    want.sort();
    eq!(mine, want, "COPY out, this run's rows");
    for ((u, id), _) in &added {
        sqlx::query(sql(format!("DELETE FROM {SH} WHERE user_id = $1 AND id = $2"))).bind(u).bind(id).execute(&mut c).await?;
        sh.rows.remove(&(*u, *id));
    }
    sh.check_all(&mut c, "after deleting the copied rows").await?;
    c.close().await?;
    Ok(())
}

/// A keyless read inside a transaction: merged until the transaction writes, then refused by
/// design (0A000); after the rollback, fine.
async fn t_sh_fanout_in_tx(cx: &Cx, sh: &mut Sh) -> Res {
    let rows = sh.expected();
    let mut c = cx.conn().await?;
    let mut tx = c.begin().await?;
    sqlx::query(sql(format!("SELECT name FROM {SH} WHERE user_id = $1 AND id = 2")))
        .bind(sh.lo)
        .fetch_one(&mut *tx)
        .await?;
    let count = format!("SELECT count(*) FROM {SH} WHERE {}", sh.range);
    let n: i64 = sqlx::query_scalar(sql(count.clone())).fetch_one(&mut *tx).await?;
    eq!(n, rows.len() as i64, "fan-out read in a transaction");
    // after a write: it sees the write, as on one PostgreSQL
    sqlx::query(sql(format!("INSERT INTO {SH} (id, user_id, name, n) VALUES (9999, $1, 'tx', 0)")))
        .bind(sh.lo)
        .execute(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar(sql(count)).fetch_one(&mut *tx).await?;
    eq!(n, rows.len() as i64 + 1, "fan-out read after a write in a transaction sees it");
    tx.rollback().await?;
    let n: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {SH} WHERE user_id = $1")))
        .bind(sh.lo)
        .fetch_one(&mut c)
        .await?;
    eq!(n, rows.iter().filter(|r| r.user_id == sh.lo).count() as i64, "rolled back");
    sh.check_all(&mut c, "rolled back").await?;
    c.close().await?;
    Ok(())
}

async fn t_sh_hints_refusals(cx: &Cx, sh: &mut Sh) -> Res {
    let (a, b) = sh.two_users()?;
    let on_a = sh.rows.keys().filter(|(u, _)| sh.shard[u] == sh.shard[&a]).count() as i64;
    let total = sh.rows.len() as i64;
    let mut c = cx.conn().await?;
    let n: i64 = sqlx::query_scalar(sql(format!(
        "/* pgproxy: shard_key={a} */ SELECT count(*) FROM {SH} WHERE {}",
        sh.range
    )))
    .fetch_one(&mut c)
    .await?;
    eq!(n, on_a, "comment hint");
    sqlx::raw_sql(sql(format!("SET pgproxy.shard_key = {a}"))).execute(&mut c).await?;
    for i in 0..4 {
        let n: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {SH} WHERE user_id BETWEEN $1 AND $2")))
            .bind(sh.lo)
            .bind(sh.hi)
            .fetch_one(&mut c)
            .await?;
        eq!(n, on_a, "SET pgproxy.shard_key {i}");
    }
    let n: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {SH} WHERE user_id = $1")))
        .bind(b)
        .fetch_one(&mut c)
        .await?;
    eq!(n, sh.rows.keys().filter(|(u, _)| *u == b).count() as i64, "own key under SET");
    sqlx::raw_sql("RESET pgproxy.shard_key").execute(&mut c).await?;
    // merged again (raw_sql: t_sh_merged checks sqlx's extended-protocol merged reads)
    let n: i64 = sqlx::raw_sql(sql(format!("SELECT count(*) FROM {SH} WHERE {}", sh.range)))
        .fetch_one(&mut c)
        .await?
        .try_get(0)?;
    eq!(n, total, "after RESET");
    // refused by design: INSERT without the key, a window function across shards
    let r = sqlx::query(sql(format!("INSERT INTO {SH} (id, name, n) VALUES ($1, $2, $3)")))
        .bind(99i64)
        .bind("nokey")
        .bind(1)
        .execute(&mut c)
        .await;
    expect_refused(r, "INSERT without the key")?;
    for i in 0..3 {
        let r = sqlx::query(sql(format!(
            "SELECT user_id, row_number() OVER (ORDER BY n) FROM {SH} WHERE user_id > $1"
        )))
        .bind(sh.lo)
        .fetch_all(&mut c)
        .await;
        expect_refused(r, &format!("window function across shards {i}"))?;
    }
    // the same over one user's rows: one shard, allowed
    let got: Vec<(i64, i64)> = sqlx::query_as(sql(format!(
        "SELECT id, row_number() OVER (ORDER BY id) FROM {SH} WHERE user_id = $1 ORDER BY id"
    )))
    .bind(a)
    .fetch_all(&mut c)
    .await?;
    let exp: Vec<(i64, i64)> =
        sh.rows.keys().filter(|(u, _)| *u == a).enumerate().map(|(k, (_, i))| (*i, k as i64 + 1)).collect();
    eq!(got, exp, "window function for one key");
    sh.check_all(&mut c, "nothing written by refused statements").await?;
    c.close().await?;
    Ok(())
}

/// UPDATE / DELETE without the key (every shard, two-phase commit) as sqlx sends them: query()
/// with bind parameters (Parse/Describe/Sync, then Bind/Execute/Close portal/Sync).
async fn t_sh_keyless_write(cx: &Cx, sh: &mut Sh) -> Res {
    let mut c = cx.conn().await?;
    let r = sqlx::query(sql(format!("UPDATE {SH} SET n = n + 1000 WHERE user_id BETWEEN $1 AND $2 AND id = $3")))
        .bind(sh.lo)
        .bind(sh.hi)
        .bind(2i64)
        .execute(&mut c)
        .await?;
    let mut k = 0;
    for ((_, i), (_, n)) in sh.rows.iter_mut() {
        if *i == 2 {
            *n += 1000;
            k += 1;
        }
    }
    eq!(r.rows_affected(), k, "UPDATE rows_affected");
    let r = sqlx::query(sql(format!("DELETE FROM {SH} WHERE user_id BETWEEN $1 AND $2 AND id = $3")))
        .bind(sh.lo)
        .bind(sh.hi)
        .bind(10i64)
        .execute(&mut c)
        .await?;
    let before = sh.rows.len();
    sh.rows.retain(|(_, i), _| *i != 10);
    eq!(r.rows_affected(), (before - sh.rows.len()) as u64, "DELETE rows_affected");
    sh.check_all(&mut c, "after the keyless writes").await?;
    c.close().await?;
    Ok(())
}

async fn t_sh_cleanup(cx: &Cx, sh: &mut Sh) -> Res {
    let mut c = cx.conn().await?;
    // simple protocol (t_sh_keyless_write checks the extended one)
    let r = sqlx::raw_sql(sql(format!("DELETE FROM {SH} WHERE {}", sh.range))).execute(&mut c).await?;
    eq!(r.rows_affected(), sh.rows.len() as u64, "rows deleted");
    let n: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM {SH} WHERE user_id = $1")))
        .bind(sh.lo)
        .fetch_one(&mut c)
        .await?;
    eq!(n, 0, "none left for {}", sh.lo);
    sh.rows.clear();
    sh.check_all(&mut c, "none left").await?;
    c.close().await?;
    Ok(())
}

// ------------------------------------------------------------------ main

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let host = env("DRIVER_HOST", "127.0.0.1");
    let port: u16 = env("DRIVER_PORT", "6432").parse().expect("DRIVER_PORT");
    let user = env("DRIVER_USER", "app");
    let password = env("DRIVER_PASSWORD", "secret");
    let db = env("DRIVER_DB", "app");
    let target = env("DRIVER_TARGET", "unknown");
    let opts = PgConnectOptions::new()
        .host(&host)
        .port(port)
        .username(&user)
        .password(&password)
        .database(&db)
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    let tag = format!("{}_{}", &target[..target.len().min(3)], std::process::id());
    let cx = Cx { opts, target: target.clone(), user, t: format!("drv_sqlx_{tag}"), tag };
    println!("sqlx 0.9 (tokio), target {target} postgres://{}@{host}:{port}/{db}", cx.user);
    let mut c = Checks { target: target.clone(), passed: 0, failed: 0 };
    c.run("connect: PgPool (several connections) and PgConnection (SCRAM)", 60, t_connect(&cx)).await;
    c.run("parameters and results of many types (binary)", 60, t_types(&cx)).await;
    c.run("query_as into a FromRow struct, fetch_optional, query_scalar", 60, t_query_as(&cx)).await;
    c.run("named statements reused on a pool and a connection, Close, two connections", 90, t_prepared(&cx)).await;
    c.run("transactions: commit, rollback, dropped, savepoints (nested begin)", 60, t_transactions(&cx)).await;
    c.run("errors: 23505, 22012, 42601, 42P01, 25P02, 57014; connection usable after", 60, t_errors(&cx)).await;
    c.run("raw_sql / execute: multi-statement strings", 60, t_raw_sql(&cx)).await;
    c.run("fetch: streaming 10,000 rows, dropped stream", 60, t_stream(&cx)).await;
    c.run("COPY in/out (copy_in_raw, copy_out_raw), errors, abort, in a transaction", 90, t_copy(&cx)).await;
    let listen_all = std::env::var("SQLX_LISTEN_ALL_TARGETS").map(|v| v == "1").unwrap_or(false);
    if target == "session" || target == "direct" || listen_all {
        c.run("LISTEN/NOTIFY (PgListener)", 60, t_listen_notify(&cx)).await;
    } else {
        println!("SKIP sqlx {target}: LISTEN/NOTIFY (PgListener): session and direct targets only");
    }
    c.run("SET settings follow the client", 60, t_settings(&cx)).await;
    c.run("16 tasks on a pool of 4: inserts, selects, transactions", 120, t_concurrency(&cx)).await;
    if target == "sharded" {
        let mut sh = Sh::new();
        c.run("sharded table: inserts by key (int8 binds), placement on both shards", 90, t_sh_setup(&cx, &mut sh)).await;
        if sh.shard.len() == SH_USERS as usize {
            c.run("sharded table: reads, UPDATE, DELETE, RETURNING by key on a pool", 90, t_sh_by_key(&cx, &mut sh)).await;
            c.run("sharded table: transactions on one user and on two shards (2PC)", 60, t_sh_tx(&cx, &mut sh)).await;
            c.run("sharded table: keyless reads merged, raw_sql (simple protocol)", 60, t_sh_merged_simple(&cx, &mut sh)).await;
            c.run("sharded table: keyless reads merged, query() (extended protocol, binary results)", 60, t_sh_merged(&cx, &mut sh)).await;
            c.run("sharded table: keyless read in a transaction merged, also after a write", 60, t_sh_fanout_in_tx(&cx, &mut sh)).await;
            c.run("sharded table: keyless UPDATE / DELETE with binds, query() (2PC)", 60, t_sh_keyless_write(&cx, &mut sh)).await;
            c.run("sharded table: hints, refusals (0A000)", 60, t_sh_hints_refusals(&cx, &mut sh)).await;
            c.run("sharded table: COPY in (rows to their shards) and out (copy_in_raw, copy_out_raw)", 60, t_sh_copy(&cx, &mut sh)).await;
        }
        c.run("sharded table: cleanup", 60, t_sh_cleanup(&cx, &mut sh)).await;
    }
    c.run("cleanup", 60, t_cleanup(&cx)).await;
    println!("sqlx {target}: {} passed, {} failed", c.passed, c.failed);
    std::process::exit(if c.failed > 0 || c.passed == 0 { 1 } else { 0 });
}
