//! Statements ORMs send that the router once refused or routed wrongly, through pgproxy on two
//! real PostgreSQL shards: LIMIT / OFFSET cast to an integer type in a merged read
//! (SQLAlchemy). Rows are checked directly on the nodes.

mod common;

use common::sharded::ShardedCluster;
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

/// A key of shard `s` (of 2).
fn key_on(s: usize) -> i64 {
    (1..).find(|&k| shard_of(k) == s).expect("key")
}

const SCHEMA: &str = "CREATE TABLE contacts (id bigint NOT NULL, user_id bigint NOT NULL, \
     name text, PRIMARY KEY (id, user_id))";

/// Contacts of `user_id` on shard `s`.
async fn names_on(c: &ShardedCluster, s: usize, user_id: i64) -> String {
    c.shard_scalar(
        s,
        &format!(
            "SELECT coalesce(string_agg(id || ':' || name, ',' ORDER BY id), '') FROM contacts WHERE user_id = {user_id}"
        ),
    )
    .await
}

fn ids(rows: &[tokio_postgres::Row]) -> Vec<i64> {
    rows.iter().map(|r| r.get::<_, i64>(0)).collect()
}

#[tokio::test]
async fn limit_and_offset_cast_to_an_integer_type_in_a_merged_read() {
    within(120, "test", async {
        let c = ShardedCluster::start(2, 1, "").await;
        let client = c.client().await;
        client.batch_execute(SCHEMA).await.expect("schema");
        // Users 1..=20 (both shards), ids u*10 + 0..3.
        for u in 1..=20i64 {
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, name) VALUES ({}, {u}, 'a'), ({}, {u}, 'b'), ({}, {u}, 'c')",
                    u * 10,
                    u * 10 + 1,
                    u * 10 + 2
                ))
                .await
                .expect("seed");
        }
        assert!(names_on(&c, 0, key_on(0)).await.contains(':'));
        assert!(names_on(&c, 1, key_on(1)).await.contains(':'));
        let all: Vec<i64> = (1..=20i64)
            .flat_map(|u| [u * 10, u * 10 + 1, u * 10 + 2])
            .collect();
        // Simple protocol: the literal forms.
        let cases: &[(&str, &[i64])] = &[
            (
                "SELECT id FROM contacts WHERE user_id BETWEEN 1 AND 2 ORDER BY id LIMIT 5::integer",
                &[10, 11, 12, 20, 21],
            ),
            (
                "SELECT id FROM contacts ORDER BY id LIMIT CAST(3 AS int) OFFSET 2::bigint",
                &[12, 20, 21],
            ),
            (
                "SELECT id FROM contacts ORDER BY id LIMIT 2::int2 OFFSET (1::int4)",
                &[11, 12],
            ),
            ("SELECT id FROM contacts ORDER BY id LIMIT 2::numeric", &[10, 11]),
            (
                "SELECT id FROM contacts ORDER BY id OFFSET 1 ROW FETCH FIRST 2 ROWS ONLY",
                &[11, 12],
            ),
            ("SELECT id FROM contacts ORDER BY id FETCH FIRST ROW ONLY", &[10]),
            ("SELECT id FROM contacts ORDER BY id LIMIT ALL OFFSET 58", &[201, 202]),
            (
                "SELECT id FROM contacts ORDER BY id LIMIT NULL::integer OFFSET NULL",
                &all,
            ),
        ];
        for (sql, want) in cases {
            let rows = simple_rows(&client, sql).await;
            let got: Vec<i64> = rows
                .iter()
                .map(|r| r[0].as_deref().expect("id").parse().expect("int"))
                .collect();
            assert_eq!(got, *want, "{sql}");
        }
        // Extended protocol, as SQLAlchemy's asyncpg / psycopg dialects send it: the
        // parameters are int4 (binary from tokio-postgres), as the casts say.
        let rows = client
            .query(
                "SELECT id FROM contacts WHERE user_id BETWEEN $1 AND $2 ORDER BY id LIMIT $3::INTEGER OFFSET $4::INTEGER",
                &[&1i64, &20i64, &5i32, &2i32],
            )
            .await
            .expect("LIMIT $3::INTEGER OFFSET $4::INTEGER");
        assert_eq!(ids(&rows), vec![12, 20, 21, 22, 30]);
        let rows = client
            .query(
                "SELECT id FROM contacts ORDER BY id DESC LIMIT CAST($1 AS int) OFFSET $2::bigint",
                &[&2i32, &1i64],
            )
            .await
            .expect("CAST($1 AS int)");
        assert_eq!(ids(&rows), vec![201, 200]);
        let rows = client
            .query(
                "SELECT count(*) FROM contacts LIMIT $1::integer OFFSET $2::integer",
                &[&1i32, &0i32],
            )
            .await
            .expect("count with LIMIT $1::integer");
        assert_eq!(ids(&rows), vec![60]);
        // A cast to a type that is not a count is still refused, with the reason.
        let e = expect_sqlstate(
            client
                .simple_query("SELECT id FROM contacts ORDER BY id LIMIT 2::text")
                .await,
            "0A000",
        );
        assert!(describe(&e).contains("LIMIT/OFFSET"), "{}", describe(&e));
    })
    .await
}
