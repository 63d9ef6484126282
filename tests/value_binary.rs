//! `protocol::value::to_binary` (the binary encoding of a merged read's text values, for
//! clients such as pgjdbc that ask for binary results) against a real PostgreSQL: for every
//! value, PostgreSQL's own binary send format must equal pgproxy's encoding of its text form.

mod common;

use bytes::{Buf, BufMut, BytesMut};
use common::wire::{self, RawConn};
use common::*;
use pgproxy::protocol::value::{binary_encodable, to_binary};

/// (type name, type oid, SQL expressions of that type).
const CASES: &[(&str, u32, &[&str])] = &[
    ("bool", 16, &["true", "false"]),
    ("int2", 21, &["0", "-32768", "32767", "7"]),
    ("int4", 23, &["0", "-2147483648", "2147483647", "42"]),
    (
        "int8",
        20,
        &[
            "0",
            "-9223372036854775808",
            "9223372036854775807",
            "123456789012",
        ],
    ),
    ("oid", 26, &["0", "4294967295", "1259"]),
    (
        "float4",
        700,
        &[
            "0",
            "-0",
            "1.5",
            "3.4028235e38",
            "1e-45",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "0.1",
        ],
    ),
    (
        "float8",
        701,
        &[
            "0",
            "-0",
            "0.1",
            "1e308",
            "5e-324",
            "'NaN'",
            "'-Infinity'",
            "2.718281828459045",
            "1/3.0",
        ],
    ),
    (
        "numeric",
        1700,
        &[
            "0",
            "0.00",
            "-0.5",
            "1",
            "10000",
            "123.45",
            "0.0012",
            "-98765432109876543210.0123456789",
            "1e20",
            "1.000",
            "'NaN'",
            "'Infinity'",
            "'-Infinity'",
            "99999999",
            "0.00000001",
            "12345678.9",
            "sum(x) FROM (VALUES (1.5), (2.25)) v(x)",
            "avg(x) FROM (VALUES (1), (2), (2)) v(x)",
        ],
    ),
    ("text", 25, &["''", "'héllo wörld'", "'a''b'"]),
    ("varchar", 1043, &["'abc'::varchar(10)"]),
    ("bpchar", 1042, &["'ab'::char(4)"]),
    ("name", 19, &["'pg_class'::name"]),
    ("json", 114, &["'{\"a\": [1, 2]}'::json"]),
    ("jsonb", 3802, &["'{\"b\": 1, \"a\": [true, null]}'::jsonb"]),
    (
        "uuid",
        2950,
        &[
            "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
            "'00000000-0000-0000-0000-000000000000'",
        ],
    ),
    (
        "bytea",
        17,
        &[
            "'\\x'::bytea",
            "'\\x00ff10'::bytea",
            "convert_to('héllo', 'UTF8')",
        ],
    ),
    (
        "date",
        1082,
        &[
            "'2000-01-01'",
            "'1999-12-31'",
            "'2024-02-29'",
            "'0044-03-15 BC'",
            "'infinity'",
            "'-infinity'",
            "'5874897-12-31'",
        ],
    ),
    (
        "timestamp",
        1114,
        &[
            "'2000-01-01 00:00:00'",
            "'2024-03-10 12:34:56.789012'",
            "'1900-01-01 00:00:01'",
            "'0100-01-01 BC'",
            "'infinity'",
            "'-infinity'",
        ],
    ),
    (
        "timestamptz",
        1184,
        &[
            "'2000-01-01 00:00:00+00'",
            "'2024-03-10 12:34:56.5+05:30'",
            "'1969-07-20 20:17:40-04'",
            "'infinity'",
        ],
    ),
];

/// The one value of `SELECT expr::type`, in the given result format.
async fn value(conn: &mut RawConn, sql: &str, format: i16) -> Vec<u8> {
    let mut bind = BytesMut::new();
    bind.put_slice(b"\0\0"); // portal "", statement ""
    bind.put_i16(0); // no parameter formats
    bind.put_i16(0); // no parameters
    bind.put_i16(1);
    bind.put_i16(format);
    let m = [
        wire::parse("", sql),
        wire::message(b'B', &bind),
        wire::execute("", 0),
        wire::sync(),
    ]
    .concat();
    conn.send(&m).await.expect("send");
    let msgs = conn.until_ready().await;
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
    let mut b = &row.body[..];
    assert_eq!(b.get_u16(), 1);
    let len = b.get_i32();
    assert!(len >= 0, "{sql}: NULL");
    b[..len as usize].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_encoding_matches_postgresql() {
    within(120, "test", async {
        let node = PgNode::start().await;
        let mut conn = RawConn::login_password(node.port(), "app", "secret", "app").await;
        // pgproxy reads the ISO forms PostgreSQL prints by default.
        conn.simple_query("SET DateStyle = ISO; SET TimeZone = 'Asia/Tokyo'")
            .await;
        let mut failures = Vec::new();
        for (name, oid, exprs) in CASES {
            assert!(binary_encodable(*oid), "{name}");
            for e in *exprs {
                let sql = match e.split_once(" FROM ") {
                    Some((head, tail)) => format!("SELECT ({head})::{name} FROM {tail}"),
                    None => format!("SELECT ({e})::{name}"),
                };
                let text = value(&mut conn, &sql, 0).await;
                let want = value(&mut conn, &sql, 1).await;
                match to_binary(*oid, &text) {
                    Ok(got) if got == want => {}
                    other => failures.push(format!(
                        "{sql}: text {:?}: pgproxy {other:?}, PostgreSQL {want:?}",
                        String::from_utf8_lossy(&text)
                    )),
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
    .await
}
