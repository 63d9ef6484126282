//! ORM batch INSERTs into a sharded table with a serial id, through pgproxy on two shards of two
//! real PostgreSQL nodes each: SQLAlchemy's insertmanyvalues (`INSERT … SELECT … FROM (VALUES
//! …) ORDER BY sen_counter RETURNING`, parameters) and Django's bulk_create (`INSERT … SELECT *
//! FROM UNNEST(<literal arrays>) RETURNING`). The rows of one user land on that user's shard
//! only, with ids from the shard's main, identical on both of its nodes; rows of users on two
//! shards are refused (0A000), never placed on one.

mod common;

use common::sharded::ShardedCluster;
use common::workloads::exec;
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};
use tokio_postgres::types::ToSql;

fn shard_of(key: i64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), 2) as usize
}

fn key_on(s: usize) -> i64 {
    (1..).find(|&k| shard_of(k) == s).expect("key")
}

const SCHEMA: &str = "CREATE TABLE contacts (id bigserial, user_id bigint NOT NULL, \
     name text, PRIMARY KEY (id, user_id))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orm_batch_inserts_land_on_the_owning_shard() {
    within(120, "test", async {
        let cl = ShardedCluster::start(2, 2, "").await;
        let c = cl.client().await;
        exec(&c, SCHEMA).await;
        let (a, b) = (key_on(0), key_on(1));
        // SQLAlchemy: one user's new contacts, parameters, RETURNING in row order.
        let sql = "INSERT INTO contacts (user_id, name) SELECT p0::BIGINT, p1::VARCHAR \
             FROM (VALUES ($1, $2, 0), ($3, $4, 1), ($5, $6, 2)) AS imp_sen(p0, p1, sen_counter) \
             ORDER BY sen_counter RETURNING contacts.id, contacts.id AS id__1";
        let names = ["x0", "x1", "x2"];
        let params: Vec<&(dyn ToSql + Sync)> =
            vec![&b, &names[0], &b, &names[1], &b, &names[2]];
        // Typed as psycopg types a Python int (PostgreSQL would infer text in VALUES).
        use tokio_postgres::types::Type;
        let types = [Type::INT8, Type::TEXT, Type::INT8, Type::TEXT, Type::INT8, Type::TEXT];
        let st = c.prepare_typed(sql, &types).await.expect("prepare");
        let rows = c.query(&st, &params).await.expect("insertmanyvalues");
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, [1, 2, 3]);
        // Django: UNNEST of literal arrays, for the other user.
        let unnest = format!(
            "INSERT INTO contacts (user_id, name) SELECT * FROM UNNEST(('{{{a},{a}}}')::bigint[], ('{{d0,d1}}')::text[]) RETURNING contacts.id"
        );
        exec(&c, &unnest).await;
        let on = |s: usize, user: i64| {
            format!("SELECT coalesce(string_agg(id || ':' || name, ',' ORDER BY id), '') FROM contacts WHERE user_id = {user}; -- shard {s}")
        };
        assert_eq!(cl.shard_scalar(1, &on(1, b)).await, "1:x0,2:x1,3:x2");
        assert_eq!(cl.shard_scalar(0, &on(0, b)).await, "");
        assert_eq!(cl.shard_scalar(0, &on(0, a)).await, "1:d0,2:d1");
        assert_eq!(cl.shard_scalar(1, &on(1, a)).await, "");
        // Rows of two shards: refused, nothing stored.
        let params: Vec<&(dyn ToSql + Sync)> =
            vec![&a, &names[0], &b, &names[1], &b, &names[2]];
        let err = c.query(&st, &params).await.expect_err("two shards");
        let db = err.as_db_error().expect("an ErrorResponse");
        assert_eq!(db.code().code(), "0A000", "{db:?}");
        assert!(db.message().contains("different shards"), "{db:?}");
        let err = c
            .simple_query(&format!(
                "INSERT INTO contacts (user_id, name) SELECT * FROM UNNEST('{{{a},{b}}}'::bigint[], '{{y0,y1}}'::text[])"
            ))
            .await
            .expect_err("two shards");
        assert_eq!(err.code().map(|c| c.code()), Some("0A000"), "{err:?}");
        assert_eq!(
            scalar(&c, "SELECT count(*) FROM contacts").await,
            "5",
            "nothing of the refused batches stored"
        );
        // Sequences of each shard equal on its nodes.
        for s in 0..2 {
            cl.shard_scalar(s, "SELECT last_value FROM contacts_id_seq").await;
        }
    })
    .await
}
