//! Sharding through pgproxy against real PostgreSQL shards (each a replicated group of nodes):
//! rows land on the shard that owns their key and nowhere else (checked on every node
//! directly), reads by key, DDL and shared tables on every shard, reads without a key merged
//! across shards and compared with one plain PostgreSQL holding all the rows, and refusals of
//! what pgproxy cannot run correctly.

mod common;

use common::sharded::ShardedCluster;
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};

fn shard_of(key: i64, shards: u64) -> usize {
    hash_shard(KeyType::Bigint, &KeyValue::Int(key), shards) as usize
}

const SCHEMA: &str = "CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, \
    name text, age int, score numeric(10,2), city text); \
    CREATE TABLE countries (code text PRIMARY KEY, name text)";

/// A few thousand pseudo-random contacts (deterministic), as INSERT statements of 50 rows.
fn contact_inserts(n: usize) -> Vec<String> {
    let mut seed: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let cities = ["paris", "lyon", "berlin", "oslo", "rome", "Zagreb", "åre"];
    let mut rows = Vec::new();
    for id in 1..=n as i64 {
        let user = (next() % 40) as i64 + 1;
        let age = if next() % 10 == 0 {
            "NULL".to_string()
        } else {
            (next() % 80 + 10).to_string()
        };
        let score = format!("{}.{:02}", next() % 1000, next() % 100);
        let city = cities[(next() % cities.len() as u64) as usize];
        rows.push((
            user,
            format!(
                "({id}, {user}, 'n{}', {age}, {score}, '{city}')",
                next() % 500
            ),
        ));
    }
    // One INSERT per user (one shard each), in chunks.
    let mut out = Vec::new();
    for user in 1..=40 {
        let mine: Vec<&String> = rows
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, r)| r)
            .collect();
        for chunk in mine.chunks(50) {
            let values: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            out.push(format!(
                "INSERT INTO contacts (id, user_id, name, age, score, city) VALUES {}",
                values.join(", ")
            ));
        }
    }
    out
}

#[tokio::test]
async fn rows_land_on_the_owning_shard_only() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client
        .batch_execute(SCHEMA)
        .await
        .expect("DDL on every shard");
    // Simple protocol and bind parameters.
    for user in 1..=30i64 {
        client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id, name) VALUES ({user}, {user}, 'simple')"
            ))
            .await
            .expect("insert by key");
        client
            .execute(
                "INSERT INTO contacts (id, user_id, name) VALUES ($1, $2, 'bound')",
                &[&(1000 + user), &user],
            )
            .await
            .expect("insert with parameters");
    }
    for (s, nodes) in c.shards.iter().enumerate() {
        let want: Vec<i64> = (1..=30).filter(|&u| shard_of(u, 2) == s).collect();
        assert!(!want.is_empty(), "both shards get keys");
        for node in nodes {
            let got = node
                .scalar("SELECT string_agg(DISTINCT user_id::text, ',' ORDER BY user_id::text) FROM contacts")
                .await;
            let mut want_text: Vec<String> = want.iter().map(|u| u.to_string()).collect();
            want_text.sort();
            assert_eq!(got, want_text.join(","), "shard {s} node {}", node.port());
            let n = node.scalar("SELECT count(*) FROM contacts").await;
            assert_eq!(
                n,
                (want.len() * 2).to_string(),
                "shard {s}: only its own rows"
            );
        }
    }
    // Reads and writes by key reach the owner.
    for user in [3i64, 4, 17] {
        let rows = client
            .query(
                "SELECT name FROM contacts WHERE user_id = $1 ORDER BY id",
                &[&user],
            )
            .await
            .expect("read by key");
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(names, vec!["simple", "bound"], "user {user}");
        let n = client
            .execute(
                "UPDATE contacts SET name = 'changed' WHERE user_id = $1",
                &[&user],
            )
            .await
            .expect("update by key");
        assert_eq!(n, 2);
        let s = shard_of(user, 2);
        let changed = c
            .shard_scalar(
                s,
                &format!(
                    "SELECT count(*) FROM contacts WHERE name = 'changed' AND user_id = {user}"
                ),
            )
            .await;
        assert_eq!(changed, "2");
    }
    // EXPLAIN ROUTE over the wire says where a statement goes.
    let rows = simple_rows(
        &client,
        "EXPLAIN ROUTE SELECT * FROM contacts WHERE user_id = 3",
    )
    .await;
    let text: Vec<String> = rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let want = format!("shard s{} (read on one node)", shard_of(3, 2));
    assert!(text.iter().any(|l| l.starts_with(&want)), "{text:?}");
    let rows = simple_rows(
        &client,
        "explain route SELECT * FROM contacts a, contacts b",
    )
    .await;
    assert!(format!("{rows:?}").contains("refused (0A000)"), "{rows:?}");
    // Shared tables: on every node of every shard.
    client
        .simple_query(
            "INSERT INTO countries (code, name) VALUES ('fr', 'France'), ('no', 'Norway')",
        )
        .await
        .expect("write a shared table");
    for s in 0..2 {
        assert_eq!(
            c.shard_scalar(s, "SELECT count(*) FROM countries").await,
            "2"
        );
    }
    let rows = simple_rows(&client, "SELECT name FROM countries ORDER BY code").await;
    assert_eq!(
        rows,
        vec![vec![Some("France".into())], vec![Some("Norway".into())]]
    );
}

#[tokio::test]
async fn reads_without_a_key_equal_one_postgres() {
    let (c, reference) = tokio::join!(ShardedCluster::start(3, 1, ""), PgNode::start());
    let client = c.client().await;
    client
        .batch_execute(SCHEMA)
        .await
        .expect("schema through pgproxy");
    let direct = reference.superuser("app").await;
    direct
        .batch_execute(SCHEMA)
        .await
        .expect("schema on the reference");
    for sql in contact_inserts(3000) {
        client
            .simple_query(&sql)
            .await
            .expect("insert through pgproxy");
        direct
            .simple_query(&sql)
            .await
            .expect("insert on the reference");
    }
    for s in 0..3 {
        let n: i64 = c
            .shard_scalar(s, "SELECT count(*) FROM contacts")
            .await
            .parse()
            .expect("n");
        assert!(n > 300, "shard {s} holds a share of the rows ({n})");
    }
    // Ordered results must be equal row for row; unordered ones as sets.
    let ordered = [
        "SELECT id, user_id, name FROM contacts ORDER BY id",
        "SELECT id, name FROM contacts ORDER BY name, id LIMIT 25",
        "SELECT id, age FROM contacts ORDER BY age DESC, id LIMIT 40 OFFSET 13",
        "SELECT id, age FROM contacts ORDER BY age NULLS FIRST, id DESC LIMIT 30",
        "SELECT id, score FROM contacts ORDER BY score DESC, id LIMIT 17",
        "SELECT id FROM contacts ORDER BY city, age, id OFFSET 2990",
        "SELECT name FROM contacts ORDER BY user_id, id LIMIT 5",
        "SELECT count(*) FROM contacts",
        "SELECT count(*), count(age), sum(age), min(age), max(age), avg(age) FROM contacts",
        "SELECT sum(score), avg(score), min(score), max(score) FROM contacts",
        "SELECT min(city), max(city), min(name) FROM contacts",
        "SELECT count(*) FROM contacts WHERE age > 200",
        "SELECT sum(age), avg(age), max(name) FROM contacts WHERE age > 200",
        "SELECT city, count(*) FROM contacts GROUP BY city ORDER BY city",
        "SELECT city, count(*) AS n, avg(age) FROM contacts GROUP BY city ORDER BY n DESC, city",
        "SELECT city, sum(score) FROM contacts GROUP BY city ORDER BY 2 DESC LIMIT 3",
        "SELECT user_id, count(*), min(age), max(score) FROM contacts GROUP BY user_id ORDER BY user_id",
        "SELECT city, age, count(*) FROM contacts GROUP BY city, age ORDER BY city, age NULLS FIRST LIMIT 50",
        "SELECT DISTINCT city FROM contacts ORDER BY city",
        "SELECT DISTINCT city, user_id FROM contacts ORDER BY user_id DESC, city LIMIT 20",
        "SELECT count(*) FROM contacts GROUP BY city ORDER BY count(*)",
        "SELECT id, name FROM contacts WHERE user_id IN (1, 2, 3, 4, 5) ORDER BY id",
        "SELECT id FROM contacts WHERE city = 'oslo' ORDER BY id DESC LIMIT 10",
    ];
    for sql in ordered {
        let got = simple_rows(&client, sql).await;
        let want = simple_rows(&direct, sql).await;
        assert_eq!(got, want, "{sql}");
    }
    let unordered = [
        "SELECT city, count(*) FROM contacts GROUP BY city",
        "SELECT DISTINCT age FROM contacts",
        "SELECT user_id, avg(score) FROM contacts GROUP BY user_id",
        "SELECT id, name FROM contacts WHERE age = 33",
    ];
    for sql in unordered {
        let mut got = simple_rows(&client, sql).await;
        let mut want = simple_rows(&direct, sql).await;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{sql}");
    }
}

#[tokio::test]
async fn what_cannot_be_run_correctly_is_refused() {
    let c = ShardedCluster::start(2, 1, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    client
        .batch_execute("CREATE TABLE notes (id bigint, user_id bigint, body text)")
        .await
        .expect("notes");
    // Two keys on different shards.
    let a = 1i64;
    let b = (2..)
        .find(|&k| shard_of(k, 2) != shard_of(a, 2))
        .expect("b");
    let refused = [
        "SELECT * FROM contacts c JOIN notes n ON n.id = c.id".to_string(),
        "INSERT INTO contacts (id, name) VALUES (1, 'no key')".to_string(),
        "INSERT INTO contacts DEFAULT VALUES".to_string(),
        "SELECT city, count(*) FROM contacts GROUP BY city HAVING count(*) > 1".to_string(),
        "SELECT string_agg(name, ',') FROM contacts".to_string(),
        format!("UPDATE contacts SET user_id = {b} WHERE user_id = {a}"),
        "SELECT row_number() OVER () FROM contacts".to_string(),
    ];
    for sql in &refused {
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(
            sqlstate(&e).as_deref(),
            Some("0A000"),
            "{sql}: {}",
            describe(&e)
        );
    }
    // Keyless writes can be denied by policy (see also tests/sharding_txn.rs).
    let e = client.simple_query("ROLLBACK").await;
    e.expect("a stray ROLLBACK is fine");
    // The session still works, on either shard.
    for k in [a, b] {
        client
            .simple_query(&format!(
                "INSERT INTO contacts (id, user_id) VALUES ({k}, {k})"
            ))
            .await
            .expect("after the refusal");
    }
    let rows = simple_rows(&client, "SELECT count(*) FROM contacts").await;
    assert_eq!(rows, vec![vec![Some("2".into())]]);
}

#[tokio::test]
async fn extended_protocol_reads_merge_with_text_results() {
    let (c, reference) = tokio::join!(ShardedCluster::start(2, 1, ""), PgNode::start());
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let direct = reference.superuser("app").await;
    direct.batch_execute(SCHEMA).await.expect("schema");
    for sql in contact_inserts(600) {
        client.simple_query(&sql).await.expect("insert");
        direct.simple_query(&sql).await.expect("insert");
    }
    let mut raw = wire::RawConn::login_password(c.proxy.port(), "app", "secret", "app").await;
    let run = |sql: &str, params: &[Option<&str>]| {
        let mut m = wire::parse("", sql);
        m.extend(wire::bind("", "", params));
        m.extend(wire::describe(b'P', ""));
        m.extend(wire::execute("", 0));
        m.extend(wire::sync());
        m
    };
    let cases: &[(&str, &[Option<&str>], &str)] = &[
        ("SELECT id, age FROM contacts WHERE age > $1 ORDER BY id LIMIT $2", &[Some("20"), Some("7")], "SELECT id, age FROM contacts WHERE age > 20 ORDER BY id LIMIT 7"),
        ("SELECT id FROM contacts ORDER BY age DESC NULLS LAST, id LIMIT $1 OFFSET $2", &[Some("5"), Some("11")], "SELECT id FROM contacts ORDER BY age DESC NULLS LAST, id LIMIT 5 OFFSET 11"),
        ("SELECT city, count(*), avg(age) FROM contacts WHERE score > $1 GROUP BY city ORDER BY city", &[Some("100.5")], "SELECT city, count(*), avg(age) FROM contacts WHERE score > 100.5 GROUP BY city ORDER BY city"),
        ("SELECT count(*) FROM contacts WHERE user_id = ANY($1::bigint[])", &[Some("{1,2,3,4}")], "SELECT count(*) FROM contacts WHERE user_id = ANY('{1,2,3,4}'::bigint[])"),
    ];
    for (sql, params, plain) in cases {
        raw.send(&run(sql, params)).await.expect("send");
        let msgs = raw.until_ready().await;
        let got = wire::rows(&msgs);
        let want = simple_rows(&direct, plain).await;
        assert_eq!(got, want, "{sql}");
        assert!(
            msgs.iter().any(|m| m.tag == b'T'),
            "RowDescription for Describe: {sql}"
        );
    }
    // A named statement prepared once, executed with different parameters.
    let mut m = wire::parse("by_age", "SELECT count(*) FROM contacts WHERE age > $1");
    m.extend(wire::describe(b'S', "by_age"));
    m.extend(wire::sync());
    raw.send(&m).await.expect("prepare");
    let msgs = raw.until_ready().await;
    assert!(msgs.iter().all(|m| m.tag != b'E'), "prepare: {msgs:?}");
    for age in ["10", "50", "85"] {
        let mut m = wire::bind("", "by_age", &[Some(age)]);
        m.extend(wire::execute("", 0));
        m.extend(wire::sync());
        raw.send(&m).await.expect("execute");
        let got = wire::rows(&raw.until_ready().await);
        let want = simple_rows(
            &direct,
            &format!("SELECT count(*) FROM contacts WHERE age > {age}"),
        )
        .await;
        assert_eq!(got, want, "age > {age}");
    }
    // Binary results (tokio-postgres asks for them): pgproxy encodes the merged values.
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts", &[])
        .await
        .expect("binary results across shards")
        .get(0);
    let want = simple_rows(&direct, "SELECT count(*) FROM contacts").await;
    assert_eq!(Some(n.to_string()), want[0][0], "merged count in binary");
    // A type pgproxy does not encode in binary is refused, and the connection goes on.
    let e = client
        .query("SELECT point(age, age) FROM contacts", &[])
        .await
        .expect_err("point in binary across shards");
    assert_eq!(sqlstate(&e).as_deref(), Some("0A000"), "{}", describe(&e));
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts WHERE user_id = $1", &[&3i64])
        .await
        .expect("by key, binary is fine")
        .get(0);
    assert!(n > 0);
}

#[tokio::test]
async fn writes_across_shards_are_atomic_and_counted() {
    let c = ShardedCluster::start(2, 2, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    client
        .batch_execute("ALTER TABLE contacts ADD CONSTRAINT age_ok CHECK (age < 1000)")
        .await
        .expect("constraint on every shard");
    for user in 1..=20i64 {
        for k in 0..3i64 {
            let id = user * 10 + k;
            client
                .simple_query(&format!(
                    "INSERT INTO contacts (id, user_id, name, age) VALUES ({id}, {user}, 'a', {})",
                    20 + k * 30
                ))
                .await
                .expect("insert");
        }
    }
    let total = |sql: &'static str| {
        let c = &c;
        async move {
            let mut n = 0i64;
            for s in 0..2 {
                n += c.shard_scalar(s, sql).await.parse::<i64>().expect("count");
            }
            n
        }
    };
    // No key: every shard, one summed count (simple and extended protocol).
    let n = client
        .execute("UPDATE contacts SET name = 'b' WHERE age > 30", &[])
        .await
        .expect("update without key");
    assert_eq!(n, 40);
    assert_eq!(
        total("SELECT count(*) FROM contacts WHERE name = 'b'").await,
        40
    );
    let n = client
        .execute(
            "UPDATE contacts SET name = $1 WHERE id = $2",
            &[&"one", &72i64],
        )
        .await
        .expect("update by primary key only");
    assert_eq!(n, 1);
    assert_eq!(
        total("SELECT count(*) FROM contacts WHERE name = 'one' AND id = 72").await,
        1
    );
    let rows = simple_rows(
        &client,
        "UPDATE contacts SET age = age + 1 WHERE age = 80 RETURNING id",
    )
    .await;
    assert_eq!(rows.len(), 20, "RETURNING rows of every shard");
    // A failure on one shard changes nothing anywhere.
    let e = client
        .simple_query("UPDATE contacts SET age = age * 20 WHERE age > 40")
        .await
        .expect_err("check constraint on some rows");
    assert_eq!(sqlstate(&e).as_deref(), Some("23514"), "{}", describe(&e));
    assert_eq!(
        total("SELECT count(*) FROM contacts WHERE age > 100").await,
        0
    );
    // Inside a transaction: rolled back with it, or committed with it.
    client.simple_query("BEGIN").await.expect("begin");
    client
        .simple_query("INSERT INTO contacts (id, user_id, name) VALUES (999, 5, 't')")
        .await
        .expect("insert");
    let n = client
        .execute("DELETE FROM contacts WHERE age = 20", &[])
        .await
        .expect("delete without key");
    assert_eq!(n, 20);
    client.simple_query("ROLLBACK").await.expect("rollback");
    assert_eq!(total("SELECT count(*) FROM contacts").await, 60);
    client.simple_query("BEGIN").await.expect("begin");
    client
        .execute("DELETE FROM contacts WHERE age = 20", &[])
        .await
        .expect("delete without key");
    client
        .simple_query("INSERT INTO contacts (id, user_id, name) VALUES (999, 5, 't')")
        .await
        .expect("insert after");
    client.simple_query("COMMIT").await.expect("commit");
    assert_eq!(total("SELECT count(*) FROM contacts").await, 41);
    for node in c.all_nodes() {
        assert_eq!(
            node.scalar("SELECT count(*) FROM pg_prepared_xacts").await,
            "0"
        );
    }
    // Nodes of each shard stay identical.
    for shard in &c.shards {
        let nodes: Vec<&PgNode> = shard.iter().collect();
        common::cluster::assert_identical(&nodes, &["contacts"]).await;
    }
}

#[tokio::test]
async fn a_multi_row_insert_is_split_per_shard() {
    let c = ShardedCluster::start(2, 1, "").await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    let values: Vec<String> = (1..=40i64).map(|u| format!("({u}, {u}, 'v')")).collect();
    let msgs = client
        .simple_query(&format!(
            "INSERT INTO contacts (id, user_id, name) VALUES {}",
            values.join(", ")
        ))
        .await
        .expect("split insert");
    let tag = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
        _ => None,
    });
    assert_eq!(tag, Some(40));
    for s in 0..2 {
        let keys: Vec<i64> = (1..=40).filter(|&u| shard_of(u, 2) == s).collect();
        let got = c.shard_scalar(s, "SELECT count(*) FROM contacts").await;
        assert_eq!(got, keys.len().to_string(), "shard {s}");
        let wrong = c
            .shard_scalar(
                s,
                &format!(
                    "SELECT count(*) FROM contacts WHERE user_id NOT IN ({})",
                    keys.iter()
                        .map(|k| k.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            )
            .await;
        assert_eq!(wrong, "0", "shard {s} holds only its keys");
    }
}

#[tokio::test]
async fn an_override_pins_a_key_to_its_shard() {
    // Key 1 belongs to shard s{shard_of(1)} by hash; the override moves it to the other one.
    let home = shard_of(1, 2);
    let other = 1 - home;
    let extra = format!("[[sharding.overrides]]\nkey = 1\nshard = \"s{other}\"\n");
    let c = ShardedCluster::start_with_tables(2, 1, "", &extra).await;
    let client = c.client().await;
    client.batch_execute(SCHEMA).await.expect("schema");
    for (id, key) in [(1i64, 1i64), (2, 2), (3, 3)] {
        client
            .execute(
                "INSERT INTO contacts (id, user_id) VALUES ($1, $2)",
                &[&id, &key],
            )
            .await
            .expect("insert");
    }
    assert_eq!(
        c.shard_scalar(other, "SELECT count(*) FROM contacts WHERE user_id = 1")
            .await,
        "1"
    );
    assert_eq!(
        c.shard_scalar(home, "SELECT count(*) FROM contacts WHERE user_id = 1")
            .await,
        "0"
    );
    for key in [2i64, 3] {
        let s = shard_of(key, 2);
        assert_eq!(
            c.shard_scalar(
                s,
                &format!("SELECT count(*) FROM contacts WHERE user_id = {key}")
            )
            .await,
            "1"
        );
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM contacts WHERE user_id = $1", &[&1i64])
        .await
        .expect("read by key")
        .get(0);
    assert_eq!(n, 1, "reads of key 1 go to its override shard");
}
