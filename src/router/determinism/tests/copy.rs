use super::*;
use crate::router::determinism::{ColumnDefault, TableDefaults};
use std::collections::HashMap;

fn schema() -> HashMap<String, TableDefaults> {
    let col = |name: &str, expr: &str| ColumnDefault {
        name: name.into(),
        expr: expr.into(),
        identity_always: false,
    };
    let t = TableDefaults {
        columns: vec![
            col("id", "nextval('t_id_seq'::regclass)"),
            col("created", "now()"),
            col("u", "gen_random_uuid()"),
            col("kind", "'plain'::text"),
        ],
        all_columns: ["id", "name", "created", "u", "kind"]
            .map(String::from)
            .to_vec(),
    };
    let odd = TableDefaults {
        columns: vec![
            col("Code", "('c-'::text || nextval('odd_seq'::regclass))"),
            col("at", "(random() * (now() - '2000-01-01'::timestamptz))"),
        ],
        all_columns: ["Code", "at", "name"].map(String::from).to_vec(),
    };
    HashMap::from([("t".into(), t), ("odd".into(), odd)])
}

#[test]
fn plans_the_columns_left_out() {
    let p = plan_copy("COPY t (name) FROM STDIN", &schema())
        .expect("test")
        .expect("test");
    assert_eq!(p.sql, "COPY t (name, id, created, u) FROM STDIN");
    let names: Vec<_> = p.added.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["id", "created", "u"]);
    assert_eq!(p.added[0].sequence.as_deref(), Some("'t_id_seq'::regclass"));
    assert!(p.added[0].per_row && !p.added[1].per_row && p.added[2].per_row);
    assert_eq!(p.added[2].sequence, None);
    assert!(!p.format.csv);
    assert_eq!(p.format.delimiter, b'\t');
    assert_eq!(p.format.null, b"\\N");
}

#[test]
fn keeps_options_and_reads_the_format() {
    let s = schema();
    let p = plan_copy(
        "copy t (name, created, u) from stdin with (format csv, header true, delimiter ';', null 'NULL')",
        &s,
    )
    .expect("test")
    .expect("test");
    assert_eq!(
        p.sql,
        "copy t (name, created, u, id) from stdin with (format csv, header true, delimiter ';', null 'NULL')"
    );
    assert_eq!(p.listed, 3);
    // Options reach the nodes as written (sqlparser would print QUOTE '''' as QUOTE ''').
    let q = plan_copy("COPY t (name) FROM STDIN (FORMAT csv, QUOTE '''')", &s)
        .expect("test")
        .expect("test");
    assert_eq!(
        q.sql,
        "COPY t (name, id, created, u) FROM STDIN (FORMAT csv, QUOTE '''')"
    );
    assert_eq!(q.format.quote, b'\'');
    assert!(p.format.csv && p.format.header);
    assert_eq!(
        (p.format.delimiter, p.format.quote, p.format.escape),
        (b';', b'"', b'"')
    );
    let legacy = plan_copy(
        "COPY t (name, created, u) FROM STDIN CSV HEADER QUOTE '''' ESCAPE '\\'",
        &s,
    )
    .expect("test")
    .expect("test");
    assert!(legacy.format.csv && legacy.format.header);
    assert_eq!((legacy.format.quote, legacy.format.escape), (b'\'', b'\\'));
}

#[test]
fn leaves_complete_copies_alone_and_refuses_what_it_cannot_fill() {
    let s = schema();
    for sql in [
        "COPY t FROM STDIN",
        "COPY t (id, name, created, u) FROM STDIN",
        "COPY other (a) FROM STDIN",
        "COPY t (name) TO STDOUT",
        "COPY t (name) FROM '/tmp/x'",
    ] {
        assert_eq!(plan_copy(sql, &s), None, "{sql}");
    }
    for (sql, word) in [
        ("COPY t (name) FROM STDIN (FORMAT binary)", "binary"),
        ("COPY t (name) FROM STDIN BINARY", "binary"),
        ("COPY t (name) FROM STDIN (ENCODING 'SJIS')", "ENCODING"),
        (
            "COPY odd (name, at) FROM STDIN",
            "\"Code\"".trim_matches('"'),
        ),
        ("COPY odd (name, \"Code\") FROM STDIN", "at"),
    ] {
        let e = plan_copy(sql, &s).expect("test").expect_err("refused");
        assert!(e.contains(word), "{sql}: {e}");
    }
}

fn fmt(csv: bool) -> CopyFormat {
    CopyFormat {
        csv,
        delimiter: if csv { b',' } else { b'\t' },
        quote: b'"',
        escape: b'"',
        header: false,
        null: if csv { Vec::new() } else { b"\\N".to_vec() },
    }
}

fn vals(n: usize) -> Vec<Vec<String>> {
    (1..=n).map(|i| vec![i.to_string()]).collect()
}

/// Feeds `data` (rows of `fields` fields) in chunks of `step` bytes, taking rows as they
/// complete.
fn run(format: CopyFormat, fields: usize, data: &[u8], step: usize) -> Vec<u8> {
    let mut c = RowCutter::new(format, fields);
    let mut out = Vec::new();
    let mut next = 1;
    let mut take = |c: &mut RowCutter, out: &mut Vec<u8>| {
        let n = c.data_rows();
        let v: Vec<Vec<String>> = (next..next + n).map(|i| vec![i.to_string()]).collect();
        next += n;
        out.extend(c.take(&v, &["id".to_string()]).expect("test"));
    };
    for chunk in data.chunks(step) {
        c.push(chunk);
        take(&mut c, &mut out);
    }
    c.finish();
    take(&mut c, &mut out);
    out
}

#[test]
fn text_rows_get_their_values_however_the_data_is_cut() {
    // A row with fewer fields than listed is left as it is (and takes no value).
    let data = b"a\tx\nb\\\nstill b\tx\\\\\r\nodd\nc\ty\rlast\t\\N";
    let want = b"a\tx\t1\nb\\\nstill b\tx\\\\\t2\r\nodd\nc\ty\t3\rlast\t\\N\t4".to_vec();
    for step in 1..data.len() + 1 {
        assert_eq!(
            String::from_utf8_lossy(&run(fmt(false), 2, data, step)),
            String::from_utf8_lossy(&want),
            "step {step}"
        );
    }
}

#[test]
fn the_end_marker_and_what_follows_pass_unchanged() {
    let data = b"a\n\\.\nignored\n";
    assert_eq!(run(fmt(false), 1, data, 3), b"a\t1\n\\.\nignored\n");
    // In text format the marker ends the data also after data on its line.
    for step in 1..8 {
        assert_eq!(
            run(fmt(false), 2, b"x\ty\\.\nz\n", step),
            b"x\ty\t1\\.\nz\n"
        );
    }
    let mut c = RowCutter::new(fmt(false), 1);
    c.push(b"x\n\\.\n");
    assert!(c.ended());
    assert_eq!(c.take(&vals(1), &[]).expect("test"), b"x\t1\n\\.\n");
}

#[test]
fn csv_rows_keep_quoted_newlines_and_get_a_header_name() {
    let mut f = fmt(true);
    f.header = true;
    let data = b"name,note\n\"two\nlines\",\"a \"\"q\"\" ,\"\n\"\",plain\n";
    let want = b"name,note,id\n\"two\nlines\",\"a \"\"q\"\" ,\",1\n\"\",plain,2\n".to_vec();
    for step in 1..data.len() + 1 {
        assert_eq!(run(f.clone(), 2, data, step), want, "step {step}");
    }
    let mut e = fmt(true);
    e.escape = b'\\';
    let data = b"\"x\\\"\ny\",1\n";
    assert_eq!(run(e, 2, data, 2), b"\"x\\\"\ny\",1,1\n");
}

#[test]
fn values_are_escaped_for_the_format() {
    let mut c = RowCutter::new(
        CopyFormat {
            delimiter: b' ',
            ..fmt(false)
        },
        1,
    );
    c.push(b"a\n");
    let v = vec![vec!["2026-11-27 10:00:00+00".to_string()]];
    assert_eq!(
        c.take(&v, &[]).expect("test"),
        b"a 2026-11-27\\ 10:00:00+00\n"
    );
    let mut c = RowCutter::new(
        CopyFormat {
            null: b"7".to_vec(),
            ..fmt(false)
        },
        1,
    );
    c.push(b"a\n");
    assert!(c.take(&[vec!["7".to_string()]], &[]).is_err());
    let mut c = RowCutter::new(
        CopyFormat {
            null: b"7".to_vec(),
            ..fmt(true)
        },
        1,
    );
    c.push(b"a\n");
    assert_eq!(
        c.take(&[vec!["7".to_string()]], &[]).expect("test"),
        b"a,\"7\"\n"
    );
}

#[test]
fn copies_sqlparser_cannot_parse_are_read_from_tokens_or_refused() {
    use crate::router::determinism::{plan, Planned};
    let s = schema();
    for (sql, csv, header, delimiter) in [
        (
            "COPY t (name) FROM STDIN WITH (HEADER MATCH)",
            false,
            true,
            b'\t',
        ),
        (
            "COPY t (name) FROM STDIN (FORMAT csv, HEADER on)",
            true,
            true,
            b',',
        ),
        (
            "COPY t (name) FROM STDIN (FORMAT csv, HEADER 0, DELIMITER E'\\t')",
            true,
            false,
            b'\t',
        ),
        (
            "COPY t (name) FROM STDIN WHERE name <> ''",
            false,
            false,
            b'\t',
        ),
        (
            "COPY t (name, created, u) FROM STDIN WITH (FORMAT csv, FORCE_NOT_NULL *)",
            true,
            false,
            b',',
        ),
        (
            "COPY t (name) FROM STDIN (ON_ERROR ignore, FORMAT 'csv') WHERE true;",
            true,
            false,
            b',',
        ),
    ] {
        let p = plan_copy(sql, &s)
            .unwrap_or_else(|| panic!("{sql}: not planned"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(
            (p.format.csv, p.format.header, p.format.delimiter),
            (csv, header, delimiter),
            "{sql}"
        );
        assert!(
            p.sql.contains("(name, ") && p.sql.contains("FROM STDIN"),
            "{}",
            p.sql
        );
    }
    // Neither sqlparser nor the token reader understands it: refused by the general plan.
    for sql in [
        "COPY t (name) FROM STDIN WITH (FORMAT csv, BOGUS_OPTION 1)",
        "COPY t (name) FROM STDIN OIDS",
    ] {
        assert_eq!(plan_copy(sql, &s), None, "{sql}");
        match plan(sql, &s) {
            Planned::Refused(why) => {
                assert!(why.contains("cannot parse this COPY into t"), "{why}")
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Every such column listed (or no list at all): nothing to fill in, it runs as it is.
    for sql in [
        "COPY t (id, name, created, u) FROM STDIN WHERE name <> ''",
        "COPY t FROM STDIN WITH (HEADER MATCH)",
    ] {
        assert_eq!(plan(sql, &s), Planned::Unchanged, "{sql}");
    }
    assert_eq!(
        crate::router::determinism::write_targets(
            "COPY public.t (name) FROM STDIN WHERE name <> ''"
        ),
        vec!["public.t".to_string()]
    );
}
