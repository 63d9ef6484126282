use super::*;

fn config(sharding: &str, shards: usize) -> Config {
    let mut text = String::from("[[users]]\nname = \"u\"\npassword = \"p\"\n");
    for i in 0..shards {
        text.push_str(&format!(
            "[[shards]]\nname = \"s{i}\"\n[[shards.nodes]]\nhost = \"h\"\n"
        ));
    }
    text.push_str(sharding);
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{}", e.render("test")))
}

fn map(sharding: &str, shards: usize) -> ShardMap {
    ShardMap::from_config(&config(sharding, shards)).expect("map")
}

const TABLES: &str = "[[sharding.tables]]\nname = \"contacts\"\ncolumn = \"user_id\"\n[[sharding.tables]]\nname = \"app.Users\"\ncolumn = \"ID\"\n";

#[test]
fn tables_and_columns_match_case_insensitively() {
    let m = map(&format!("[sharding]\n{TABLES}"), 2);
    assert_eq!(m.key_column(None, "contacts"), Some("user_id"));
    assert_eq!(m.key_column(Some("public"), "contacts"), Some("user_id"));
    assert_eq!(m.key_column(Some("app"), "users"), Some("id"));
    assert_eq!(m.key_column(None, "users"), Some("id"));
    assert_eq!(m.key_column(Some("other"), "users"), None);
    assert_eq!(m.key_column(None, "groups"), None);
    assert!(m.has_tables());
    assert_eq!(m.shard_count(), 2);
    assert_eq!(m.index("s1"), Some(1));
    assert_eq!(m.name(0), "s0");
}

#[test]
fn range_list_and_overrides() {
    let range = map(
        &format!("[sharding]\nfunction = \"range\"\n{TABLES}[[sharding.ranges]]\nshard = \"s0\"\nto = 100\n[[sharding.ranges]]\nshard = \"s1\"\nfrom = 100\nto = 200\n[[sharding.ranges]]\nshard = \"s2\"\nfrom = 300\n[[sharding.overrides]]\nkey = 42\nshard = \"s2\"\n"),
        3,
    );
    let cases: &[(&str, Result<usize, &str>)] = &[
        ("-5", Ok(0)),
        ("0", Ok(0)),
        ("99", Ok(0)),
        ("100", Ok(1)),
        ("199", Ok(1)),
        ("200", Err("23514")),
        ("299", Err("23514")),
        ("300", Ok(2)),
        ("9223372036854775807", Ok(2)),
        ("42", Ok(2)),
        (" 7 ", Ok(0)),
        ("abc", Err("22P02")),
        ("1.5", Err("22P02")),
    ];
    for (key, want) in cases {
        let got = range.shard_of_text(key).map_err(|e| e.sqlstate());
        assert_eq!(got, want.map_err(|s| s), "range key {key}");
    }
    let list = map(
        &format!("[sharding]\nfunction = \"list\"\nkey_type = \"text\"\n{TABLES}[[sharding.lists]]\nshard = \"s0\"\nvalues = [\"fr\", \"be\"]\n[[sharding.lists]]\nshard = \"s1\"\nvalues = [\"de\"]\n"),
        2,
    );
    assert_eq!(list.shard_of_text("fr"), Ok(0));
    assert_eq!(list.shard_of_text("de"), Ok(1));
    assert_eq!(
        list.shard_of_text("DE").map_err(|e| e.sqlstate()),
        Err("23514")
    );
}

#[test]
fn hash_uses_postgres_placement_and_overrides_win() {
    let m = map(
        &format!("[sharding]\n{TABLES}[[sharding.overrides]]\nkey = 1\nshard = \"s2\"\n"),
        3,
    );
    for k in [0i64, 2, 3, 1000, -7] {
        let want = hash_shard(KeyType::Bigint, &KeyValue::Int(k), 3) as usize;
        assert_eq!(m.shard_of_text(&k.to_string()), Ok(want), "key {k}");
    }
    assert_eq!(m.shard_of_text("1"), Ok(2));
}

#[test]
fn placement_changes_are_named() {
    let base = format!("[sharding]\n{TABLES}");
    let a = map(&base, 2);
    assert_eq!(a.placement_change(&map(&base, 2)), None);
    let more = a.placement_change(&map(&base, 3)).expect("count");
    assert!(more.contains("number of shards"), "{more}");
    let over = a
        .placement_change(&map(
            &format!("{base}[[sharding.overrides]]\nkey = 5\nshard = \"s1\"\n"),
            2,
        ))
        .expect("override");
    assert!(over.contains("overrides"), "{over}");
    let keyless = map(
        &format!("[sharding]\nkeyless_writes = \"deny\"\n{TABLES}"),
        2,
    );
    assert_eq!(
        a.placement_change(&keyless),
        None,
        "policy options move nothing"
    );
    let table = a
        .placement_change(&map(
            &format!("{base}[[sharding.tables]]\nname = \"notes\"\ncolumn = \"user_id\"\n"),
            2,
        ))
        .expect("table");
    assert!(table.contains("tables"), "{table}");
}

#[test]
fn config_problems_are_reported() {
    let bad = |sharding: &str, shards: usize| -> String {
        let mut text = String::from("[[users]]\nname = \"u\"\npassword = \"p\"\n");
        for i in 0..shards {
            text.push_str(&format!(
                "[[shards]]\nname = \"s{i}\"\n[[shards.nodes]]\nhost = \"h\"\n"
            ));
        }
        text.push_str(sharding);
        match Config::from_toml(&text) {
            Ok(_) => panic!("accepted: {sharding}"),
            Err(e) => e.render("f"),
        }
    };
    let cases: &[(&str, usize, &str)] = &[
        ("", 2, "no [[sharding.tables]]"),
        ("[sharding]\nfunction = \"range\"\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n", 2, "needs [[sharding.ranges]]"),
        ("[sharding]\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.ranges]]\nshard = \"s0\"\n", 2, "only apply with function = \"range\""),
        ("[sharding]\nfunction = \"range\"\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.ranges]]\nshard = \"s0\"\nto = 10\n[[sharding.ranges]]\nshard = \"s1\"\nfrom = 5\n", 2, "overlaps"),
        ("[sharding]\nfunction = \"range\"\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.ranges]]\nshard = \"s0\"\nfrom = 10\nto = 10\n", 2, "from must be below to"),
        ("[sharding]\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.overrides]]\nkey = 1\nshard = \"s9\"\n", 2, "no shard named \"s9\""),
        ("[sharding]\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.overrides]]\nkey = \"x\"\nshard = \"s1\"\n", 2, "write it without quotes"),
        ("[sharding]\nkey_type = \"integer\"\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.overrides]]\nkey = 3000000000\nshard = \"s1\"\n", 2, "out of range"),
        ("[sharding]\nkey_type = \"uuid\"\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.overrides]]\nkey = \"nope\"\nshard = \"s1\"\n", 2, "is not a uuid"),
        ("[sharding]\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.tables]]\nname = \"T\"\ncolumn = \"k\"\n", 2, "listed twice"),
        ("[sharding]\n[[sharding.tables]]\nname = \"a.b.c\"\ncolumn = \"k\"\n", 2, "expected table or schema.table"),
        ("[sharding]\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.overrides]]\nkey = 1\nshard = \"s1\"\n[[sharding.overrides]]\nkey = 1\nshard = \"s0\"\n", 2, "already pinned"),
        ("[sharding]\nfunction = \"list\"\n[[sharding.tables]]\nname = \"t\"\ncolumn = \"k\"\n[[sharding.lists]]\nshard = \"s0\"\nvalues = [1, 2]\n[[sharding.lists]]\nshard = \"s1\"\nvalues = [2]\n", 2, "already listed"),
        ("[sharding]\nfunction = \"modulo\"\n", 2, "unknown variant"),
    ];
    for (sharding, shards, want) in cases {
        let got = bad(sharding, *shards);
        assert!(got.contains(want), "{sharding:?}: want {want:?} in {got}");
    }
}
