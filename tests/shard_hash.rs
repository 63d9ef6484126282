//! `shard::hash_shard` against a real PostgreSQL: rows inserted into hash-partitioned tables
//! (smallint, integer, bigint, text and uuid keys; modulus 2 and 3) must land in the partition
//! whose remainder `hash_shard` computes, for every row.

mod common;

use common::*;
use pgproxy::shard::{hash_shard, KeyType};

/// Keys generated per key type.
const KEYS_PER_TYPE: usize = 300;

/// A deterministic pseudo-random sequence (splitmix64), so a failure reproduces.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value with a random number of significant bits, so small and huge keys both occur.
    fn spread(&mut self) -> i64 {
        let bits = self.next() % 64;
        (self.next() >> bits) as i64
    }
}

/// `KEYS_PER_TYPE` keys of `ty` in their text form: edge values first, then pseudo-random ones.
fn keys(ty: KeyType, rng: &mut SplitMix) -> Vec<String> {
    let mut out: Vec<String> = match ty {
        KeyType::Smallint => [0i64, 1, -1, 32767, -32768].map(|v| v.to_string()).into(),
        KeyType::Integer => [0i64, 1, -1, i32::MAX.into(), i32::MIN.into()]
            .map(|v| v.to_string())
            .into(),
        KeyType::Bigint => [0, 1, -1, i64::MAX, i64::MIN, 1 << 32, -(1 << 32), 1 << 31]
            .map(|v| v.to_string())
            .into(),
        KeyType::Text => ["", " ", "a", "hello world!", "日本語テキスト", "🦀 crab"]
            .map(String::from)
            .into(),
        KeyType::Uuid => vec![
            "00000000-0000-0000-0000-000000000000".into(),
            "ffffffff-ffff-ffff-ffff-ffffffffffff".into(),
        ],
    };
    while out.len() < KEYS_PER_TYPE {
        out.push(match ty {
            KeyType::Smallint => (rng.spread() as i16).to_string(),
            KeyType::Integer => (rng.spread() as i32).to_string(),
            KeyType::Bigint => rng.spread().to_string(),
            KeyType::Text => random_text(rng),
            KeyType::Uuid => {
                let hex = format!("{:016x}{:016x}", rng.next(), rng.next());
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
        });
    }
    out
}

/// 0 to 40 characters mixing ASCII with 2-, 3- and 4-byte UTF-8, so every tail length of the
/// 12-byte block loop occurs.
fn random_text(rng: &mut SplitMix) -> String {
    const ALPHABET: &[char] = &[
        'a', 'b', 'z', 'A', 'Q', '0', '7', ' ', '_', '-', '@', '\'', 'é', 'ß', 'Ж', '日', '本',
        '🦀',
    ];
    let len = rng.next() % 41;
    (0..len)
        .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
        .collect()
}

/// Creates `table` hash-partitioned on a `ty` column into `modulus` partitions `<table>_r<n>`.
async fn create_partitioned(
    client: &tokio_postgres::Client,
    table: &str,
    ty: KeyType,
    modulus: u64,
) {
    let mut sql = format!(
        "create table {table} (k {} not null) partition by hash (k);",
        ty.pg_name()
    );
    for r in 0..modulus {
        sql.push_str(&format!(
            "create table {table}_r{r} partition of {table} \
             for values with (modulus {modulus}, remainder {r});"
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .expect("create partitioned table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_shard_picks_the_partition_postgres_picks() {
    within(180, "test", async {
        let node = PgNode::start().await;
        let client = node.superuser("app").await;
        let mut rng = SplitMix(0x5eed_f00d_5a4d);
        let types = [
            KeyType::Smallint,
            KeyType::Integer,
            KeyType::Bigint,
            KeyType::Text,
            KeyType::Uuid,
        ];
        for ty in types {
            let keys = keys(ty, &mut rng);
            for modulus in [2u64, 3] {
                let table = format!("h_{}_m{modulus}", ty.pg_name());
                create_partitioned(&client, &table, ty, modulus).await;
                let insert = format!(
                    "insert into {table} select unnest($1::text[])::{}",
                    ty.pg_name()
                );
                client
                    .execute(&insert, &[&keys])
                    .await
                    .expect("insert keys");
                let rows = client
                    .query(
                        &format!("select k::text, tableoid::regclass::text from {table}"),
                        &[],
                    )
                    .await
                    .expect("read back keys and partitions");
                assert_eq!(rows.len(), keys.len(), "{table}: every key inserted");
                let mut per_partition = vec![0usize; modulus as usize];
                for row in rows {
                    let (key, partition): (String, String) = (row.get(0), row.get(1));
                    let landed: u64 = partition
                        .rsplit_once("_r")
                        .and_then(|(_, r)| r.parse().ok())
                        .unwrap_or_else(|| panic!("unexpected partition name {partition}"));
                    let value = ty
                        .parse(&key)
                        .unwrap_or_else(|e| panic!("{table}: PostgreSQL's {key:?} parses: {e}"));
                    assert_eq!(
                        hash_shard(ty, &value, modulus),
                        landed,
                        "{table}: key {key:?} landed in {partition}"
                    );
                    per_partition[landed as usize] += 1;
                }
                assert!(
                    per_partition.iter().all(|&n| n > 0),
                    "{table}: every partition gets keys: {per_partition:?}"
                );
            }
        }
    })
    .await
}
