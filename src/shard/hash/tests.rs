//! Unit tests of the PostgreSQL-compatible hash: expected hashes and remainders were computed by
//! a real PostgreSQL 15.18 (x86_64), then pasted in; plus parsing of text and binary keys.

use super::KeyType::{Bigint, Integer, Smallint, Text, Uuid};
use super::*;

/// The moduli of the remainder columns of [`PG15`].
const MODULI: [u64; 4] = [2, 3, 4, 7];

/// (key type, key literal, partition hash, remainders for moduli 2, 3, 4, 7), from PostgreSQL 15.18:
///
/// ```sql
/// create table h_int8 (k bigint) partition by hash (k);  -- likewise h_int2, h_int4, h_text, h_uuid
/// -- the partition hash: the support function's hash, hash_combine64(0, h) done in numeric
/// create function u64(h bigint) returns numeric language sql immutable as
///  $$ select ((h::numeric + 18446744073709551616 + 5305509591434766563) % 18446744073709551616) $$;
/// -- the remainder, asked of PostgreSQL's own partition check
/// create function rem(tbl regclass, m int, v anyelement) returns int language plpgsql as
///  $$ declare r int; begin for r in 0..m-1 loop
///       if satisfies_hash_partition(tbl, m, r, v) then return r; end if;
///     end loop; return -1; end $$;
/// select v::text, u64(hashint8extended(v, 8816678312871386365)),
///        rem('h_int8', 2, v), rem('h_int8', 3, v), rem('h_int8', 4, v), rem('h_int8', 7, v)
///   from unnest(array[0, 1, -1, ...]::bigint[]) v;
/// -- likewise hashint2extended, hashint4extended, hashtextextended, uuid_hash_extended;
/// -- every hash % modulus was checked to equal its satisfies_hash_partition remainder
/// -- (18446744073709551616 = 2^64, 5305509591434766563 = hash_combine64's 0x49a0f4dd15e5a8e3).
/// ```
#[rustfmt::skip]
const PG15: &[(KeyType, &str, u64, [u64; 4])] = &[
    (Smallint, "0", 0x0c8440b74fd699b0, [0, 2, 0, 4]),
    (Smallint, "1", 0x9c7715e2970a8fb8, [0, 2, 0, 5]),
    (Smallint, "-1", 0x0400bc251f3bafa5, [1, 2, 1, 0]),
    (Smallint, "2", 0xeb7b1343af5ea17a, [0, 0, 2, 6]),
    (Smallint, "42", 0xafd30d9a116a5a62, [0, 0, 2, 0]),
    (Smallint, "-12345", 0x23e7c2c401ed4e35, [1, 2, 1, 3]),
    (Smallint, "32767", 0xf04d37bf04315ece, [0, 1, 2, 5]),
    (Smallint, "-32768", 0x9b4d89bf3c86847d, [1, 0, 1, 0]),
    (Integer, "0", 0x0c8440b74fd699b0, [0, 2, 0, 4]),
    (Integer, "1", 0x9c7715e2970a8fb8, [0, 2, 0, 5]),
    (Integer, "-1", 0x0400bc251f3bafa5, [1, 2, 1, 0]),
    (Integer, "2", 0xeb7b1343af5ea17a, [0, 0, 2, 6]),
    (Integer, "42", 0xafd30d9a116a5a62, [0, 0, 2, 0]),
    (Integer, "-7", 0xe457ec323f4a4cda, [0, 0, 2, 3]),
    (Integer, "1000000", 0x82828d5ed7df688b, [1, 0, 3, 4]),
    (Integer, "123456789", 0x3cd2148f59efd3cd, [1, 1, 1, 4]),
    (Integer, "2147483647", 0xf5aa185b5e7fa17f, [1, 1, 3, 0]),
    (Integer, "-2147483648", 0x8e2a2eec347a3a76, [0, 0, 2, 3]),
    (Bigint, "0", 0x0c8440b74fd699b0, [0, 2, 0, 4]),
    (Bigint, "1", 0x9c7715e2970a8fb8, [0, 2, 0, 5]),
    (Bigint, "-1", 0x0400bc251f3bafa5, [1, 2, 1, 0]),
    (Bigint, "42", 0xafd30d9a116a5a62, [0, 0, 2, 0]),
    (Bigint, "-12345", 0x23e7c2c401ed4e35, [1, 2, 1, 3]),
    (Bigint, "2147483647", 0xf5aa185b5e7fa17f, [1, 1, 3, 0]),
    (Bigint, "-2147483648", 0x8e2a2eec347a3a76, [0, 0, 2, 3]),
    (Bigint, "2147483648", 0x8e2a2eec347a3a76, [0, 0, 2, 3]),
    (Bigint, "-2147483649", 0xf5aa185b5e7fa17f, [1, 1, 3, 0]),
    (Bigint, "4294967295", 0x0400bc251f3bafa5, [1, 2, 1, 0]),
    (Bigint, "4294967296", 0x9c7715e2970a8fb8, [0, 2, 0, 5]),
    (Bigint, "-4294967296", 0x0c8440b74fd699b0, [0, 2, 0, 4]),
    (Bigint, "10000000000", 0xfdc2beb92b6eb56d, [1, 2, 1, 6]),
    (Bigint, "1234567890123", 0x8463cd0ee7d06ecf, [1, 0, 3, 0]),
    (Bigint, "-987654321098765", 0x5359471bd9d02852, [0, 1, 2, 6]),
    (Bigint, "9223372036854775807", 0x8e2a2eec347a3a76, [0, 0, 2, 3]),
    (Bigint, "-9223372036854775808", 0xf5aa185b5e7fa17f, [1, 1, 3, 0]),
    (Bigint, "-9223372036854775807", 0xe514a3ca1e87bf62, [0, 0, 2, 5]),
    (Text, "", 0xfa8431e86a2568a6, [0, 2, 2, 1]),
    (Text, "a", 0xec9335d598214f5e, [0, 2, 2, 3]),
    (Text, "ab", 0x51e667eb5fa09c20, [0, 0, 0, 6]),
    (Text, "abc", 0x7bfcf7ae85298aa5, [1, 1, 1, 3]),
    (Text, "abcd", 0x818c35210ce35951, [1, 2, 1, 5]),
    (Text, "hello", 0x250e9012d8862b94, [0, 1, 0, 3]),
    (Text, "user_42", 0xc8bd0bef0d97dcc0, [0, 0, 0, 1]),
    (Text, "abcdefghijk", 0x2d3a8ecb003bcb5b, [1, 0, 3, 3]),
    (Text, "hello world!", 0x2f7394b872ac10dc, [0, 2, 0, 5]),
    (Text, "hello world!!", 0xb12449275a173f83, [1, 2, 3, 4]),
    (Text, "abcdefghijklmnopqrstuvw", 0xe3fa9929ff30fd64, [0, 1, 0, 4]),
    (Text, "abcdefghijklmnopqrstuvwx", 0x497a059e53b08c51, [1, 1, 1, 4]),
    (Text, "abcdefghijklmnopqrstuvwxy", 0x5cd26cf05946e0a2, [0, 1, 2, 3]),
    (Text, "alice@example.com", 0x3652e46640bb42dc, [0, 1, 0, 5]),
    (Text, " spaced ", 0x71a17f8c6f216c23, [1, 0, 3, 6]),
    (Text, "Ж", 0x95cdaf1593f46d1f, [1, 1, 3, 6]),
    (Text, "ünïcødé", 0xc184988698f7eee3, [1, 2, 3, 6]),
    (Text, "日本語テキスト", 0x7e1c95c7c27df149, [1, 1, 1, 6]),
    (Text, "🦀 crab", 0xf797bc743177ecf9, [1, 2, 1, 1]),
    (Text, "Zürich-Straße 12, 8000 Zürich", 0x86ed1d5a25197614, [0, 0, 0, 6]),
    (Text, "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789", 0x80b1224e61e10ce3, [1, 0, 3, 1]),
    (Text, "tenant:00000001", 0xe218831b0d7b7a04, [0, 1, 0, 5]),
    (Text, "O'Brien", 0x414115791f6ad239, [1, 1, 1, 3]),
    (Uuid, "00000000-0000-0000-0000-000000000000", 0x0056c8a1c0433ba5, [1, 0, 1, 2]),
    (Uuid, "ffffffff-ffff-ffff-ffff-ffffffffffff", 0x478fa676b27dfd81, [1, 1, 1, 0]),
    (Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 0x4f85215c955b65d0, [0, 1, 0, 6]),
    (Uuid, "123e4567-e89b-12d3-a456-426614174000", 0x38407cd05ad87385, [1, 1, 1, 5]),
    (Uuid, "550e8400-e29b-41d4-a716-446655440000", 0x198087c78d25a5c9, [1, 2, 1, 4]),
    (Uuid, "00000000-0000-0000-0000-000000000001", 0x92a370671f3a8e2d, [1, 2, 1, 1]),
    (Uuid, "6ba7b810-9dad-11d1-80b4-00c04fd430c8", 0x2c790548ad599be6, [0, 1, 2, 4]),
    (Uuid, "f47ac10b-58cc-4372-a567-0e02b2c3d479", 0xb6834cc61bad616a, [0, 0, 2, 3]),
];

#[test]
fn partition_hash_and_remainders_match_postgres_15() {
    assert!(
        PG15.len() >= 60,
        "keep at least 60 PostgreSQL-computed keys"
    );
    for &(ty, literal, hash, remainders) in PG15 {
        let v = ty
            .parse(literal)
            .unwrap_or_else(|e| panic!("{literal:?}: {e}"));
        assert_eq!(
            partition_hash(ty, &v),
            hash,
            "partition_hash({ty:?}, {literal:?})"
        );
        for (modulus, remainder) in MODULI.into_iter().zip(remainders) {
            assert_eq!(
                hash_shard(ty, &v, modulus),
                remainder,
                "hash_shard({ty:?}, {literal:?}, {modulus})"
            );
        }
    }
}

#[test]
fn integer_widths_hash_alike_where_they_share_a_value() {
    // hashint8extended folds the high half in so the integer_ops family hashes consistently.
    for i in [0i64, 1, -1, 42, -12345, 32767, -32768] {
        let v = KeyValue::Int(i);
        let h = partition_hash(Bigint, &v);
        assert_eq!(partition_hash(Smallint, &v), h, "{i}");
        assert_eq!(partition_hash(Integer, &v), h, "{i}");
    }
    for i in [i64::from(i32::MIN), i64::from(i32::MAX), 1_000_000] {
        let v = KeyValue::Int(i);
        assert_eq!(
            partition_hash(Integer, &v),
            partition_hash(Bigint, &v),
            "{i}"
        );
    }
    // The fold also makes some bigints collide (see the PG15 table): x and x ^ (1 << 32) ^ ...
    let same = |a: i64, b: i64| {
        partition_hash(Bigint, &KeyValue::Int(a)) == partition_hash(Bigint, &KeyValue::Int(b))
    };
    assert!(same(4_294_967_296, 1));
    assert!(same(-4_294_967_296, 0));
    assert!(same(i64::MAX, i64::from(i32::MIN)));
    assert!(same(i64::MIN, i64::from(i32::MAX)));
    assert!(!same(2, 3));
}

#[test]
fn out_of_range_and_mismatched_values_do_not_panic() {
    // Never produced by parse(); they hash as the bigint / text / uuid they are.
    let big = KeyValue::Int(1 << 40);
    assert_eq!(partition_hash(Smallint, &big), partition_hash(Bigint, &big));
    let text = KeyValue::Text("abc".into());
    assert_eq!(partition_hash(Uuid, &text), partition_hash(Text, &text));
    assert_eq!(hash_shard(Bigint, &KeyValue::Int(1), 0), 0);
    assert_eq!(hash_shard(Bigint, &KeyValue::Int(1), 1), 0);
}

#[test]
fn integers_parse_like_postgres_15() {
    // Checked with `select $$<text>$$::<type>` on PostgreSQL 15.18.
    let good: &[(KeyType, &str, i64)] = &[
        (Smallint, " +42 ", 42),
        (Smallint, "\t-7\n", -7),
        (Smallint, "\x0b5", 5),
        (Smallint, "007", 7),
        (Smallint, "32767", 32767),
        (Smallint, "-32768", -32768),
        (Integer, "-0", 0),
        (Integer, "32768", 32768),
        (Integer, "-2147483648", -2_147_483_648),
        (Integer, "2147483647", 2_147_483_647),
        (Bigint, "2147483648", 2_147_483_648),
        (Bigint, "9223372036854775807", i64::MAX),
        (Bigint, " -9223372036854775808\r\n", i64::MIN),
        (Bigint, "00000000000000000000000001", 1),
    ];
    for &(ty, text, want) in good {
        assert_eq!(ty.parse(text), Ok(KeyValue::Int(want)), "{ty:?} {text:?}");
    }
    let syntax = [
        "", " ", "-", "+", "+-1", "--1", "1 2", "1_000", "0x10", "1.0", "1e3", "abc", "٣", "1\0",
    ];
    for ty in [Smallint, Integer, Bigint] {
        for text in syntax {
            let err = ty.parse(text).expect_err(text);
            assert!(
                err.starts_with("invalid input syntax for type"),
                "{text:?}: {err}"
            );
            assert!(err.contains(ty.pg_name()), "{err}");
        }
    }
    let range: &[(KeyType, &str)] = &[
        (Smallint, "32768"),
        (Smallint, "-32769"),
        (Smallint, "2147483648"),
        (Integer, "2147483648"),
        (Integer, "-2147483649"),
        (Bigint, "9223372036854775808"),
        (Bigint, "-9223372036854775809"),
        (Bigint, "99999999999999999999x"),
    ];
    for &(ty, text) in range {
        let err = ty.parse(text).expect_err(text);
        assert_eq!(
            err,
            format!("value \"{text}\" is out of range for type {}", ty.pg_name())
        );
    }
}

#[test]
fn uuids_parse_like_postgres_15() {
    let want = KeyValue::Uuid([
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
    ]);
    for text in [
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        "A0EEBC999C0B4EF8BB6D6BB9BD380A11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
        "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",
    ] {
        assert_eq!(Uuid.parse(text).as_ref(), Ok(&want), "{text}");
    }
    for text in [
        "",
        "{}",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1-",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
        "a0eebc999-c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
        "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380aé",
    ] {
        let err = Uuid.parse(text).expect_err(text);
        assert_eq!(
            err,
            format!("invalid input syntax for type uuid: \"{text}\"")
        );
    }
}

#[test]
fn text_parses_anything_but_nul() {
    for text in ["", "a", " spaced ", "日本語", "🦀"] {
        assert_eq!(Text.parse(text), Ok(KeyValue::Text(text.to_string())));
    }
    assert!(Text.parse("a\0b").is_err());
}

#[test]
fn binary_parameters_parse() {
    assert_eq!(Smallint.parse_binary(&[0xff, 0xfe]), Ok(KeyValue::Int(-2)));
    assert_eq!(Integer.parse_binary(&[0, 0, 1, 0]), Ok(KeyValue::Int(256)));
    assert_eq!(
        Bigint.parse_binary(&i64::MIN.to_be_bytes()),
        Ok(KeyValue::Int(i64::MIN))
    );
    assert_eq!(
        Text.parse_binary("Zürich".as_bytes()),
        Ok(KeyValue::Text("Zürich".into()))
    );
    let uuid: Vec<u8> = (1..=16).collect();
    assert_eq!(
        Uuid.parse_binary(&uuid),
        Ok(KeyValue::Uuid(uuid.clone().try_into().expect("16 bytes")))
    );
    let bad: &[(KeyType, &[u8])] = &[
        (Smallint, &[1]),
        (Smallint, &[0, 0, 1, 0]),
        (Integer, &[0, 0, 0, 0, 0, 0, 0, 1]),
        (Integer, &[]),
        (Bigint, &[0, 0, 0, 1]),
        (Text, &[0xff, 0xfe]),
        (Text, &[b'a', 0]),
        (Uuid, &[0; 15]),
        (Uuid, &[0; 17]),
    ];
    for &(ty, bytes) in bad {
        assert!(ty.parse_binary(bytes).is_err(), "{ty:?} {bytes:?}");
    }
}

#[test]
fn binary_and_text_forms_hash_alike() {
    for &(ty, literal, hash, _) in PG15 {
        let v = ty.parse(literal).expect("PG15 literals parse");
        let bytes = match (&v, ty) {
            (KeyValue::Int(i), Smallint) => (*i as i16).to_be_bytes().to_vec(),
            (KeyValue::Int(i), Integer) => (*i as i32).to_be_bytes().to_vec(),
            (KeyValue::Int(i), _) => i.to_be_bytes().to_vec(),
            (KeyValue::Text(s), _) => s.as_bytes().to_vec(),
            (KeyValue::Uuid(u), _) => u.to_vec(),
        };
        let b = ty.parse_binary(&bytes).expect("binary form parses");
        assert_eq!(partition_hash(ty, &b), hash, "{ty:?} {literal:?}");
    }
}

#[test]
fn key_type_names_and_config_spelling() {
    let names = [
        (Smallint, "smallint"),
        (Integer, "integer"),
        (Bigint, "bigint"),
        (Text, "text"),
        (Uuid, "uuid"),
    ];
    for (ty, name) in names {
        assert_eq!(ty.pg_name(), name);
        #[derive(serde::Deserialize)]
        struct Wrap {
            key: KeyType,
        }
        let w: Wrap = toml::from_str(&format!("key = \"{name}\"")).expect("lowercase name");
        assert_eq!(w.key, ty);
    }
}
