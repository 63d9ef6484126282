//! Randomized differential test of the COPY completion of a replicated shard (see
//! docs/REPLICATION.md: a `COPY … FROM STDIN` whose column list leaves out a column with a
//! non-deterministic default is completed by pgproxy, which appends the values to every data
//! row). Every round makes a fresh table `t` with a `serial`/identity id and three copied
//! columns, and the same seeded random COPY (text or CSV; random delimiter, quote, escape, NULL
//! string, header, legacy syntax, line endings, end marker, values full of quotes, delimiters,
//! backslashes, line breaks, NULL look-alikes, non-ASCII and long values, sometimes more rows
//! than one batch of pgproxy's) runs
//!
//! 1. through pgproxy on a 2-node replicated shard, and
//! 2. directly on a plain PostgreSQL node (the oracle for what the bytes mean),
//!
//! as a simple Query with CopyData messages cut at random bytes (inside `\r\n`, quoted fields and
//! escapes too) sent in random TCP writes, or through tokio-postgres `copy_in` (extended
//! protocol). Both must give the same command tag, or fail with the same SQLSTATE; the rows
//! (`SELECT id, a, b, c FROM t ORDER BY id`) through pgproxy and directly on each node must be
//! the reference's; after a success the sequence `t_id_seq` is the reference's on both nodes;
//! `pgproxy verify` passes. Data the generator encoded without a deliberate defect must also
//! load on the reference as the rows generated (a check of the encoder itself).
//!
//! Knobs (environment): `PGPROXY_RANDOM_SEED` (decimal or 0x…), `PGPROXY_RANDOM_ROUNDS`,
//! `PGPROXY_RANDOM_TRACE` (set: print every round). The seed is printed; on a mismatch the case
//! is written to a file whose path is in the failure message.

mod common;

use bytes::Bytes;
use common::cluster::*;
use common::rng::Rng;
use common::wire::{self, RawConn};
use common::*;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const DEFAULT_SEED: u64 = 0x00C0_FFEE_C0B1;
const DEFAULT_ROUNDS: u64 = 24;
/// pgproxy evaluates values in batches of this many rows (`src/session/copy_fill.rs`).
const BATCH_ROWS: usize = 2000;

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

// ---------------------------------------------------------------------------------------------
// The case: table, COPY statement, data bytes and how they are sent.
// ---------------------------------------------------------------------------------------------

/// The data format of a COPY.
#[derive(Debug, Clone)]
struct Fmt {
    csv: bool,
    delim: u8,
    quote: u8,
    escape: u8,
    null: String,
    header: Header,
    crlf: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    Off,
    On,
    Match,
}

/// One generated row: a, b, c.
type Row = (Option<String>, Option<String>, Option<i32>);

/// How the COPY is sent.
#[derive(Debug, Clone)]
enum Delivery {
    /// Query, then the data as CopyData messages ending at `cuts` (byte offsets into the data;
    /// an offset may repeat: an empty CopyData), then CopyDone; all of it written in TCP chunks
    /// of at most `tcp_chunk` bytes.
    Simple { cuts: Vec<usize>, tcp_chunk: usize },
    /// tokio-postgres `copy_in` with the data in chunks ending at `cuts`.
    Extended { cuts: Vec<usize> },
}

#[derive(Debug, Clone)]
struct Case {
    create: String,
    copy: String,
    data: Vec<u8>,
    send: Delivery,
    /// The rows the reference must hold when the data has no deliberate defect.
    expect: Option<Vec<Row>>,
    /// What was done to the data or statement on purpose (for the report).
    notes: Vec<String>,
}

/// Text values that stress the formats.
const PIECES: &[&str] = &[
    "plain",
    "x",
    "Hello world",
    " ",
    "\"",
    "'",
    ",",
    ";",
    "|",
    "\t",
    "\\",
    "\r",
    "\n",
    "\r\n",
    "\\N",
    "NULL",
    "\\.",
    ".",
    "é",
    "日本語",
    "🐘",
    "~",
    "\u{b}",
    "\u{8}",
    "\u{c}",
    "a\\b",
    "\\r\\n",
    "\"\"",
    "#",
    "\\x41",
    "\\101",
    "<nil>",
    "''",
    "\n\\.\n",
    "\r\n\\.\r\n",
];

struct Gen {
    rng: Rng,
    /// Also generate what once ran into pgproxy bugs (see the fixed cases).
    known_bugs: bool,
}

impl Gen {
    fn text_value(&mut self, fmt: &Fmt, long_budget: &mut usize) -> Option<String> {
        let r = &mut self.rng;
        match r.below(24) {
            0 | 1 => None,
            2 => Some(String::new()),
            3 => Some(fmt.null.clone()),
            4 => Some("\\.".into()),
            5 => Some("\\N".into()),
            6 if *long_budget > 0 => {
                *long_budget -= 1;
                let target = r.urange(8_000, 70_000);
                let mut s = String::with_capacity(target + 16);
                while s.len() < target {
                    if r.chance(0.7) {
                        s.push_str("lorem ipsum ");
                    } else {
                        let piece = PIECES[r.below(PIECES.len())];
                        s.push_str(piece);
                    }
                }
                Some(s)
            }
            7 => Some(format!("v{}", r.below(100_000))),
            _ => {
                let n = r.urange(1, 6);
                let mut s = String::new();
                for _ in 0..n {
                    let piece = PIECES[r.below(PIECES.len())];
                    s.push_str(piece);
                }
                Some(s)
            }
        }
    }

    fn int_value(&mut self) -> Option<i32> {
        let r = &mut self.rng;
        match r.below(10) {
            0 => None,
            1 => Some(0),
            2 => Some(i32::MIN),
            3 => Some(i32::MAX),
            _ => Some(r.next() as i32 % 100_000),
        }
    }

    fn fmt(&mut self) -> Fmt {
        let known_bugs = self.known_bugs;
        let r = &mut self.rng;
        let csv = r.chance(0.5);
        let delim = *r.pick(if csv {
            &[b',', b',', b';', b'|', b'\t'][..]
        } else {
            &[b'\t', b'\t', b',', b';', b'|'][..]
        });
        let (mut quote, mut escape) = (b'"', b'"');
        if csv {
            // A quote or escape `'`: bug 1 (`quote_or_escape_apostrophe_…`).
            let apostrophe: &[u8] = if known_bugs { b"'" } else { b"" };
            quote = *r.pick(&[&[b'"', b'"', b'~'][..], apostrophe].concat());
            escape = match r.below(4) {
                0 | 1 => quote,
                2 => b'\\',
                _ => *r.pick(&[&[b'"', b'~', b'\\'][..], apostrophe].concat()),
            };
        }
        let null = if csv {
            *r.pick(&["", "", "\\N", "NULL", "<nil>"])
        } else {
            *r.pick(&["\\N", "\\N", "", "NULL", "<nil>"])
        };
        let header = match r.below(6) {
            0 | 1 => Header::On,
            // HEADER MATCH: limitation 3 (`header_spellings_…`).
            2 if known_bugs => Header::Match,
            2 => Header::On,
            _ => Header::Off,
        };
        Fmt {
            csv,
            delim,
            quote,
            escape,
            null: null.into(),
            header,
            crlf: r.chance(0.35),
        }
    }

    fn case(&mut self) -> Case {
        let mut notes = Vec::new();
        let fmt = self.fmt();
        // The table: the id first, last or between the copied columns; sometimes more defaults.
        let id = *self.rng.pick(&[
            "id serial PRIMARY KEY",
            "id serial PRIMARY KEY",
            "id bigserial PRIMARY KEY",
            "id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
            "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        ]);
        let mut cols = vec!["a text".to_string(), "b text".into(), "c int".into()];
        cols.insert(self.rng.below(4), id.into());
        if self.rng.chance(0.2) {
            cols.push("d text DEFAULT 'dflt'".into());
        }
        if self.rng.chance(0.15) {
            cols.push("e timestamptz DEFAULT now()".into());
        }
        if self.rng.chance(0.15) {
            cols.push("u uuid DEFAULT gen_random_uuid()".into());
        }
        let create = format!("CREATE TABLE t ({})", cols.join(", "));
        // The copied columns, in a random order.
        let mut order = [0usize, 1, 2];
        for i in (1..3).rev() {
            let j = self.rng.below(i + 1);
            order.swap(i, j);
        }
        let copy = self.copy_sql(&fmt, &order);
        // Rows.
        let n = match self.rng.below(20) {
            0..=7 => self.rng.urange(0, 12),
            8..=12 => self.rng.urange(13, 300),
            13..=15 => self.rng.urange(300, 1800),
            16 => BATCH_ROWS + self.rng.urange(0, 1),
            _ => self.rng.urange(BATCH_ROWS + 1, 4600),
        };
        let mut long_budget = if self.rng.chance(0.3) {
            self.rng.urange(1, 6)
        } else {
            0
        };
        let rows: Vec<Row> = (0..n)
            .map(|_| {
                (
                    self.text_value(&fmt, &mut long_budget),
                    self.text_value(&fmt, &mut long_budget),
                    self.int_value(),
                )
            })
            .collect();
        // Encode: lines of fields.
        let mut header_line: Option<Vec<Vec<u8>>> = None;
        if fmt.header != Header::Off {
            let names = ["a", "b", "c"];
            let mut fields: Vec<Vec<u8>> = order
                .iter()
                .map(|&i| self.field(&fmt, &Some(names[i].to_string())))
                .collect();
            if fmt.header == Header::On && self.rng.chance(0.4) {
                // Anything: the line is skipped (in CSV it may span lines inside quotes).
                let mut budget = 0;
                let k = self.rng.urange(1, 4);
                fields = (0..k)
                    .map(|_| {
                        let v = self.text_value(&fmt, &mut budget);
                        self.field(&fmt, &v)
                    })
                    .collect();
            }
            header_line = Some(fields);
        }
        let mut lines: Vec<Vec<Vec<u8>>> = rows
            .iter()
            .map(|row| {
                let vals = [row.0.clone(), row.1.clone()];
                order
                    .iter()
                    .map(|&i| match i {
                        2 => self.int_field(&fmt, row.2),
                        _ => self.field(&fmt, &vals[i]),
                    })
                    .collect()
            })
            .collect();
        // What the reference must store (text format with NULL '': an empty string is NULL).
        let mut expect: Option<Vec<Row>> = Some(
            rows.iter()
                .map(|(a, b, c)| {
                    let f = |v: &Option<String>| match v {
                        Some(s) if !fmt.csv && s.is_empty() && fmt.null.is_empty() => None,
                        v => v.clone(),
                    };
                    (f(a), f(b), *c)
                })
                .collect(),
        );
        // A deliberate defect, sometimes.
        let mut eol_override: Option<(usize, &'static [u8])> = None;
        let mut tail: Vec<u8> = Vec::new();
        let mut end_marker = false;
        let mut final_eol = !self.rng.chance(0.25);
        if self.rng.chance(0.15) && !lines.is_empty() {
            expect = None;
            let i = self.rng.below(lines.len());
            let k = self.rng.below(3);
            // More than the id added: bug 5 (`a_row_with_a_field_fewer_…`).
            let one_added = !create.contains("now()") && !create.contains("gen_random_uuid");
            match self.rng.below(12) {
                0 if one_added || self.known_bugs => {
                    lines[i].remove(k);
                    notes.push(format!("row {i}: a field fewer"));
                }
                1 => {
                    lines[i].push(b"extra".to_vec());
                    notes.push(format!("row {i}: a field more"));
                }
                2 => {
                    let pos = order.iter().position(|&o| o == 2).expect("c listed");
                    lines[i][pos] = b"x1".to_vec();
                    notes.push(format!("row {i}: c is not a number"));
                }
                3 => {
                    lines[i][k] = b"cr\rin the middle".to_vec();
                    notes.push(format!("row {i}: a raw carriage return"));
                }
                4 => {
                    lines[i][k] = b"lf\nin the middle".to_vec();
                    notes.push(format!("row {i}: a raw line feed"));
                }
                5 => {
                    lines[i][k] = b"bad\xff\xfeutf8".to_vec();
                    notes.push(format!("row {i}: invalid UTF-8"));
                }
                6 if !fmt.csv => {
                    lines[i][k] = b"nul\\000byte".to_vec();
                    notes.push(format!("row {i}: an escaped NUL byte"));
                }
                // Bug 4 (`text_end_marker_at_the_end_of_a_row_…`).
                7 if !fmt.csv && self.known_bugs => {
                    let last = lines[i].len() - 1;
                    lines[i][last].extend_from_slice(b"\\.");
                    notes.push(format!(
                        "row {i}: \\. at its end (text end marker mid-line)"
                    ));
                }
                8 if fmt.csv => {
                    let q = fmt.quote;
                    lines[i][k] = vec![q, b'u', b'n', b't', b'e', b'r', b'm'];
                    notes.push(format!("row {i}: an unterminated quoted field"));
                }
                9 if lines.len() > 1 && i + 1 < lines.len() => {
                    let other: &'static [u8] = if fmt.crlf { b"\n" } else { b"\r\n" };
                    eol_override = Some((i, other));
                    notes.push(format!("row {i}: the other line ending"));
                }
                10 => {
                    end_marker = true;
                    final_eol = false;
                    notes.push("end marker without a line ending".into());
                }
                _ => {
                    tail.extend_from_slice(b"\\.x");
                    notes.push("a line \\.x".into());
                }
            }
        }
        if expect.is_some() && self.rng.chance(0.2) {
            end_marker = true;
            final_eol = true;
            notes.push("end marker".into());
            if self.rng.chance(0.5) {
                tail.extend_from_slice(b"junk after the end\tmarker,\"\n\\.\nmore");
                notes.push("junk after the end marker".into());
            }
        }
        // Join.
        let eol: &[u8] = if fmt.crlf { b"\r\n" } else { b"\n" };
        let mut data = Vec::new();
        let mut all: Vec<&Vec<Vec<u8>>> = Vec::new();
        if let Some(h) = &header_line {
            all.push(h);
        }
        all.extend(lines.iter());
        let total = all.len();
        for (li, fields) in all.iter().enumerate() {
            for (fi, f) in fields.iter().enumerate() {
                if fi > 0 {
                    data.push(fmt.delim);
                }
                data.extend_from_slice(f);
            }
            let is_last = li + 1 == total;
            let row_index = li.checked_sub(usize::from(header_line.is_some()));
            let this_eol = match eol_override {
                Some((i, e)) if row_index == Some(i) => e,
                _ => eol,
            };
            if !is_last || final_eol || end_marker || !tail.is_empty() {
                data.extend_from_slice(this_eol);
            }
        }
        if end_marker {
            data.extend_from_slice(b"\\.");
            if final_eol {
                data.extend_from_slice(eol);
            }
        }
        if !tail.is_empty() {
            data.extend_from_slice(&tail);
            if self.rng.chance(0.5) {
                data.extend_from_slice(eol);
            }
        }
        let send = self.send(&data, &fmt);
        Case {
            create,
            copy,
            data,
            send,
            expect,
            notes,
        }
    }

    /// The COPY statement for `fmt` (modern or legacy syntax).
    fn copy_sql(&mut self, fmt: &Fmt, order: &[usize; 3]) -> String {
        // Spellings pgproxy's parser does not know (limitation 3, `header_spellings_…`).
        let odd = self.known_bugs;
        let r = &mut self.rng;
        let upper = r.chance(0.7);
        let kw = |s: &str| {
            if upper {
                s.to_string()
            } else {
                s.to_ascii_lowercase()
            }
        };
        let names = ["a", "b", "c"];
        let list: Vec<&str> = order.iter().map(|&i| names[i]).collect();
        let mut sql = format!(
            "{} t ({}) {} {}",
            kw("COPY"),
            list.join(", "),
            kw("FROM"),
            kw("STDIN")
        );
        let dflt_delim = if fmt.csv { b',' } else { b'\t' };
        let dflt_null = if fmt.csv { "" } else { "\\N" };
        // Legacy syntax: no HEADER MATCH, header only after CSV.
        let legacy =
            r.chance(0.3) && fmt.header != Header::Match && (fmt.csv || fmt.header == Header::Off);
        if legacy {
            if r.chance(0.5) {
                sql += &format!(" {}", kw("WITH"));
            }
            let mut items = Vec::new();
            let as_ = |r: &mut Rng| {
                if r.chance(0.3) {
                    format!(" {}", kw("AS"))
                } else {
                    String::new()
                }
            };
            if fmt.delim != dflt_delim || r.chance(0.3) {
                items.push(format!(
                    "{}{} {}",
                    kw("DELIMITER"),
                    as_(r),
                    lit(r, &[fmt.delim])
                ));
            }
            if fmt.null != dflt_null || r.chance(0.3) {
                items.push(format!(
                    "{}{} {}",
                    kw("NULL"),
                    as_(r),
                    lit(r, fmt.null.as_bytes())
                ));
            }
            if fmt.csv {
                items.push(kw("CSV"));
                if fmt.header == Header::On {
                    items.push(kw("HEADER"));
                }
                if fmt.quote != b'"' || r.chance(0.3) {
                    items.push(format!(
                        "{}{} {}",
                        kw("QUOTE"),
                        as_(r),
                        lit(r, &[fmt.quote])
                    ));
                }
                if fmt.escape != fmt.quote || r.chance(0.3) {
                    items.push(format!(
                        "{}{} {}",
                        kw("ESCAPE"),
                        as_(r),
                        lit(r, &[fmt.escape])
                    ));
                }
            }
            for i in items {
                sql += " ";
                sql += &i;
            }
            return sql;
        }
        let mut items = Vec::new();
        if fmt.csv {
            items.push(format!(
                "{} {}",
                kw("FORMAT"),
                r.pick(&["csv", "CSV", "'csv'"])
            ));
        } else if r.chance(0.4) {
            items.push(format!(
                "{} {}",
                kw("FORMAT"),
                r.pick(&["text", "TEXT", "'text'"])
            ));
        }
        match fmt.header {
            Header::On => items.push(format!(
                "{}{}",
                kw("HEADER"),
                r.pick(if odd {
                    &["", " true", " on", " 1", " TRUE"][..]
                } else {
                    &["", " true", " TRUE"][..]
                })
            )),
            Header::Match => {
                items.push(format!("{} {}", kw("HEADER"), r.pick(&["match", "MATCH"])))
            }
            Header::Off => {
                if r.chance(0.2) {
                    items.push(format!(
                        "{} {}",
                        kw("HEADER"),
                        r.pick(if odd {
                            &["false", "off", "0"][..]
                        } else {
                            &["false", "FALSE"][..]
                        })
                    ));
                }
            }
        }
        if fmt.delim != dflt_delim || r.chance(0.3) {
            items.push(format!("{} {}", kw("DELIMITER"), lit(r, &[fmt.delim])));
        }
        if fmt.null != dflt_null || r.chance(0.3) {
            items.push(format!("{} {}", kw("NULL"), lit(r, fmt.null.as_bytes())));
        }
        if fmt.csv {
            if fmt.quote != b'"' || r.chance(0.3) {
                items.push(format!("{} {}", kw("QUOTE"), lit(r, &[fmt.quote])));
            }
            if fmt.escape != fmt.quote || r.chance(0.3) {
                items.push(format!("{} {}", kw("ESCAPE"), lit(r, &[fmt.escape])));
            }
        }
        if r.chance(0.05) {
            items.push(format!("{} false", kw("FREEZE")));
        }
        // Random order of the options.
        for i in (1..items.len()).rev() {
            let j = r.below(i + 1);
            items.swap(i, j);
        }
        if items.is_empty() {
            return sql;
        }
        let with = if r.chance(0.5) {
            format!("{} ", kw("WITH"))
        } else {
            String::new()
        };
        sql += &format!(" {with}({})", items.join(", "));
        sql
    }

    /// One text/CSV field for a text value.
    fn field(&mut self, fmt: &Fmt, v: &Option<String>) -> Vec<u8> {
        if fmt.csv {
            self.csv_field(fmt, v)
        } else {
            self.text_field(fmt, v)
        }
    }

    fn int_field(&mut self, fmt: &Fmt, v: Option<i32>) -> Vec<u8> {
        let Some(n) = v else {
            return fmt.null.as_bytes().to_vec();
        };
        let s = match self.rng.below(8) {
            0 => format!(" {n}"),
            1 => format!("{n} "),
            2 if n >= 0 => format!("+{n}"),
            _ => n.to_string(),
        };
        if fmt.csv && (self.rng.chance(0.1) || s.as_bytes().contains(&fmt.delim)) {
            let mut out = vec![fmt.quote];
            out.extend_from_slice(s.as_bytes());
            out.push(fmt.quote);
            return out;
        }
        s.into_bytes()
    }

    fn text_field(&mut self, fmt: &Fmt, v: &Option<String>) -> Vec<u8> {
        let Some(s) = v else {
            return fmt.null.as_bytes().to_vec();
        };
        let r = &mut self.rng;
        let mut out = Vec::with_capacity(s.len() + 8);
        let mut buf = [0u8; 4];
        for ch in s.chars() {
            match ch {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' if fmt.delim == b'\t' || r.chance(0.5) => out.extend_from_slice(b"\\t"),
                '\u{8}' if r.chance(0.5) => out.extend_from_slice(b"\\b"),
                '\u{c}' if r.chance(0.5) => out.extend_from_slice(b"\\f"),
                '\u{b}' if r.chance(0.5) => out.extend_from_slice(b"\\v"),
                c if c.is_ascii() && c as u8 == fmt.delim => {
                    out.push(b'\\');
                    out.push(c as u8);
                }
                c if c.is_ascii_graphic() && r.chance(0.03) => {
                    // Octal or hex escape of a plain character.
                    if r.chance(0.5) {
                        out.extend_from_slice(format!("\\{:03o}", c as u8).as_bytes());
                    } else {
                        out.extend_from_slice(format!("\\x{:02x}", c as u8).as_bytes());
                    }
                }
                c if c.is_ascii_alphabetic() && !"bfnrtvxN".contains(c) && r.chance(0.02) => {
                    // A backslash before an ordinary character stands for the character.
                    out.push(b'\\');
                    out.push(c as u8);
                }
                c => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
            }
        }
        if !fmt.null.is_empty() && out == fmt.null.as_bytes() {
            // The value reads as the NULL string: write its first character in octal.
            let first = out[0];
            let mut o = format!("\\{first:03o}").into_bytes();
            o.extend_from_slice(&out[1..]);
            out = o;
        }
        out
    }

    fn csv_field(&mut self, fmt: &Fmt, v: &Option<String>) -> Vec<u8> {
        let Some(s) = v else {
            return fmt.null.as_bytes().to_vec();
        };
        let b = s.as_bytes();
        let must = *s == fmt.null
            || s == "\\."
            || b.iter()
                .any(|&c| c == fmt.delim || c == fmt.quote || c == b'\r' || c == b'\n');
        if !must && !self.rng.chance(0.15) {
            return b.to_vec();
        }
        let mut out = Vec::with_capacity(b.len() + 8);
        out.push(fmt.quote);
        for (i, &c) in b.iter().enumerate() {
            if c == fmt.quote {
                out.push(fmt.escape);
            } else if c == fmt.escape {
                // An escape before anything but the quote or the escape is itself: leave it
                // single sometimes.
                let next = b.get(i + 1);
                let single_ok = matches!(next, Some(&n) if n != fmt.quote && n != fmt.escape);
                if !single_ok || self.rng.chance(0.6) {
                    out.push(fmt.escape);
                }
            }
            out.push(c);
        }
        out.push(fmt.quote);
        out
    }

    /// Where the data is cut into CopyData messages, and how it is sent.
    fn send(&mut self, data: &[u8], fmt: &Fmt) -> Delivery {
        let r = &mut self.rng;
        let len = data.len();
        let mut cuts: Vec<usize> = match r.below(6) {
            0 => Vec::new(),
            1 => data
                .iter()
                .enumerate()
                .filter(|(_, &c)| c == b'\n')
                .map(|(i, _)| i + 1)
                .collect(),
            2 => (0..r.urange(1, 40)).map(|_| r.below(len + 1)).collect(),
            3 | 4 => {
                // After the bytes that change how the next one reads.
                let special: Vec<usize> = data
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| {
                        c == b'\r' || c == b'\\' || (fmt.csv && (c == fmt.quote || c == fmt.escape))
                    })
                    .map(|(i, _)| i + 1)
                    .collect();
                let mut v: Vec<usize> = (0..r.urange(1, 60))
                    .filter(|_| !special.is_empty())
                    .map(|_| special[r.below(special.len())])
                    .collect();
                v.extend((0..r.urange(0, 10)).map(|_| r.below(len + 1)));
                v
            }
            _ => {
                let step = if len < 20_000 {
                    r.urange(1, 9)
                } else {
                    r.urange(500, 9000)
                };
                (1..=len / step).map(|k| k * step).collect()
            }
        };
        if r.chance(0.15) {
            // Empty messages.
            for _ in 0..r.urange(1, 3) {
                cuts.push(r.below(len + 1));
                let c = *cuts.last().expect("just pushed");
                cuts.push(c);
            }
        }
        cuts.sort_unstable();
        if r.chance(0.25) {
            Delivery::Extended { cuts }
        } else {
            let tcp_chunk = match r.below(3) {
                0 => usize::MAX,
                1 => r.urange(1, 64).max(len / 2000),
                _ => r.urange(64, 20_000),
            };
            Delivery::Simple { cuts, tcp_chunk }
        }
    }
}

/// An SQL string literal for the option value `v` (sometimes an E'' literal).
fn lit(r: &mut Rng, v: &[u8]) -> String {
    let s = String::from_utf8(v.to_vec()).expect("ASCII option");
    if r.chance(0.25) || (s == "\t" && r.chance(0.5)) {
        let mut out = String::from("E'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str(if r.chance(0.5) { "\\'" } else { "''" }),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    format!("'{}'", s.replace('\'', "''"))
}

/// The data cut at `cuts` (empty pieces included).
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        let c = c.min(data.len());
        out.push(&data[start..c]);
        start = c;
    }
    out.push(&data[start..]);
    out
}

// ---------------------------------------------------------------------------------------------
// Running a case on one side.
// ---------------------------------------------------------------------------------------------

/// How a COPY ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// CommandComplete with this tag.
    Done(String),
    /// ErrorResponse.
    Failed { code: String, message: String },
    /// Neither, or the connection broke.
    Broken(String),
}

impl Outcome {
    fn same_as(&self, other: &Outcome) -> bool {
        match (self, other) {
            (Outcome::Done(a), Outcome::Done(b)) => a == b,
            (Outcome::Failed { code: a, .. }, Outcome::Failed { code: b, .. }) => a == b,
            _ => false,
        }
    }
    fn short(&self) -> String {
        match self {
            Outcome::Done(t) => t.clone(),
            Outcome::Failed { code, message } => format!("ERROR {code}: {message}"),
            Outcome::Broken(why) => format!("BROKEN: {why}"),
        }
    }
}

fn outcome_of_error(e: &tokio_postgres::Error) -> Outcome {
    match e.as_db_error() {
        Some(db) => Outcome::Failed {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
        },
        None => Outcome::Broken(e.to_string()),
    }
}

/// One side of the comparison: a raw connection and a tokio-postgres client to it.
struct Side {
    port: u16,
    raw: Option<RawConn>,
    client: Client,
    /// The last `copy_in` failed before CopyInResponse: tokio-postgres then sends CopyFail and
    /// Sync, and closes its connection when that Sync's (unexpected) ReadyForQuery arrives.
    copy_in_refused: bool,
}

impl Side {
    async fn new(port: u16) -> Side {
        Side {
            port,
            raw: Some(RawConn::login_password(port, "app", "secret", "app").await),
            client: connect_app(port).await,
            copy_in_refused: false,
        }
    }

    /// Drops and creates `t`; the error, if any.
    async fn fresh_table(&self, create: &str) -> Result<(), String> {
        for sql in ["DROP TABLE IF EXISTS t", create] {
            self.client
                .batch_execute(sql)
                .await
                .map_err(|e| format!("{sql}: {}", describe(&e)))?;
        }
        Ok(())
    }

    async fn run(&mut self, case: &Case) -> Outcome {
        self.copy_in_refused = false;
        match &case.send {
            Delivery::Simple { cuts, tcp_chunk } => {
                if self.raw.is_none() {
                    self.raw =
                        Some(RawConn::login_password(self.port, "app", "secret", "app").await);
                }
                let raw = self.raw.as_mut().expect("connected above");
                let mut bytes = wire::query(&case.copy);
                for p in pieces(&case.data, cuts) {
                    bytes.extend(wire::copy_data(p));
                }
                bytes.extend(wire::copy_done());
                let mut sent = 0;
                let mut writes = 0usize;
                while sent < bytes.len() {
                    let end = bytes.len().min(sent.saturating_add(*tcp_chunk));
                    if let Err(e) = raw.send(&bytes[sent..end]).await {
                        self.raw = None;
                        return Outcome::Broken(format!("write: {e}"));
                    }
                    sent = end;
                    writes += 1;
                    if writes.is_multiple_of(97) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                let mut tag = None;
                let mut error = None;
                loop {
                    let Some(m) = raw.recv().await else {
                        self.raw = None;
                        return Outcome::Broken("connection closed".into());
                    };
                    match m.tag {
                        b'Z' => break,
                        b'C' => {
                            let body = &m.body[..m.body.len().saturating_sub(1)];
                            tag = Some(String::from_utf8_lossy(body).into_owned());
                        }
                        b'E' => {
                            let f = wire::error_fields(&m.body);
                            error.get_or_insert(Outcome::Failed {
                                code: f.get(&b'C').cloned().unwrap_or_default(),
                                message: f.get(&b'M').cloned().unwrap_or_default(),
                            });
                        }
                        _ => {}
                    }
                }
                match (error, tag) {
                    (Some(e), _) => e,
                    (None, Some(t)) => Outcome::Done(t),
                    (None, None) => Outcome::Broken("no CommandComplete".into()),
                }
            }
            Delivery::Extended { cuts } => {
                use futures_util::SinkExt;
                let sink = match self.client.copy_in::<_, Bytes>(&case.copy).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.copy_in_refused = true;
                        return outcome_of_error(&e);
                    }
                };
                let mut sink = std::pin::pin!(sink);
                for p in pieces(&case.data, cuts) {
                    if let Err(e) = sink.send(Bytes::copy_from_slice(p)).await {
                        return outcome_of_error(&e);
                    }
                }
                match sink.as_mut().finish().await {
                    Ok(n) => Outcome::Done(format!("COPY {n}")),
                    Err(e) => outcome_of_error(&e),
                }
            }
        }
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// The process id of the backend serving `c`.
async fn backend_pid(c: &Client) -> i32 {
    let rows = rows_on(c, "SELECT pg_backend_pid()").await;
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("pg_backend_pid(): {rows:?}"))
}

/// Stops a local PostgreSQL backend process for `pause` (SIGSTOP, then SIGCONT from a thread):
/// what it answers meanwhile comes late, as on a loaded machine.
fn stall(pid: i32, pause: Duration) {
    // SAFETY: kill(2) on a backend of a node this test started.
    let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert_eq!(rc, 0, "SIGSTOP {pid}");
    std::thread::spawn(move || {
        std::thread::sleep(pause);
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
}

const SELECT: &str = "SELECT id, a, b, c FROM t ORDER BY id";
const SEQ: &str = "SELECT last_value, is_called FROM t_id_seq";

/// The rows of `sql` as text; an error is a row list of its own, so that it compares unequal.
async fn rows_on(c: &Client, sql: &str) -> Rows {
    match c.simple_query(sql).await {
        Ok(msgs) => msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect(),
        Err(e) => vec![vec![Some(format!("ERROR: {}", describe(&e)))]],
    }
}

fn expected_rows(expect: &[Row]) -> Rows {
    expect
        .iter()
        .enumerate()
        .map(|(i, (a, b, c))| {
            vec![
                Some((i + 1).to_string()),
                a.clone(),
                b.clone(),
                c.map(|n| n.to_string()),
            ]
        })
        .collect()
}

/// Where two row lists first differ, briefly.
fn rows_diff(want: &Rows, got: &Rows) -> Option<String> {
    if want == got {
        return None;
    }
    let short = |r: Option<&Vec<Option<String>>>| -> String {
        let s = format!("{r:?}");
        if s.chars().count() > 400 {
            format!(
                "{}… ({} chars)",
                s.chars().take(400).collect::<String>(),
                s.len()
            )
        } else {
            s
        }
    };
    let i = (0..want.len().max(got.len()))
        .find(|&i| want.get(i) != got.get(i))
        .unwrap_or(0);
    Some(format!(
        "{} rows vs {} rows; first difference at row {i}: want {} got {}",
        want.len(),
        got.len(),
        short(want.get(i)),
        short(got.get(i))
    ))
}

/// The case as text a person can replay: statement, data (Rust byte-string escapes), sends.
fn describe_case(case: &Case) -> String {
    let mut out = String::new();
    writeln!(out, "-- table: {}", case.create).unwrap();
    writeln!(out, "-- copy:  {}", case.copy).unwrap();
    writeln!(out, "-- notes: {:?}", case.notes).unwrap();
    let send = match &case.send {
        Delivery::Simple { cuts, tcp_chunk } => {
            format!("simple query, CopyData ends {cuts:?}, TCP chunks of {tcp_chunk}")
        }
        Delivery::Extended { cuts } => format!("extended (copy_in), chunk ends {cuts:?}"),
    };
    writeln!(out, "-- send:  {send}").unwrap();
    writeln!(out, "-- data ({} bytes):", case.data.len()).unwrap();
    out.push_str(&escape_bytes(&case.data));
    out.push('\n');
    out
}

fn escape_bytes(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

static ROUND: AtomicU64 = AtomicU64::new(u64::MAX);

/// Prints the seed and round when the test fails.
struct SeedReport(u64);

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "replication_copy_random FAILED: seed {:#x} (PGPROXY_RANDOM_SEED={:#x}), round {}",
                self.0,
                self.0,
                ROUND.load(Ordering::Relaxed)
            );
        }
    }
}

/// The replicated shard and the reference node.
struct Env {
    cl: ReplCluster,
    /// Direct clients to the shard's nodes.
    nodes: Vec<Client>,
    proxy: Side,
    reference: Side,
    _ref_node: PgNode,
    /// Bytes of pgproxy's log already looked at.
    log_seen: usize,
    /// Stop the reference's backend for a moment right after its run (a loaded machine): its
    /// answers to what the client sends after an error come late.
    stall_reference: bool,
}

impl Env {
    async fn start() -> Env {
        let (cl, ref_node) = tokio::join!(ReplCluster::start(2, |c| c), PgNode::start());
        let mut nodes = Vec::new();
        for n in &cl.nodes {
            nodes.push(n.superuser("app").await);
        }
        let proxy = Side::new(cl.port()).await;
        let reference = Side::new(ref_node.port()).await;
        Env {
            cl,
            nodes,
            proxy,
            reference,
            _ref_node: ref_node,
            log_seen: 0,
            stall_reference: false,
        }
    }

    /// Runs `case` on both sides; the problems found (none: they agree).
    async fn check(&mut self, case: &Case) -> (Outcome, Vec<String>) {
        let mut problems = Vec::new();
        for (side, r) in [
            ("reference", self.reference.fresh_table(&case.create).await),
            ("pgproxy", self.proxy.fresh_table(&case.create).await),
        ] {
            if let Err(e) = r {
                problems.push(format!("setup through {side}: {e}"));
                return (Outcome::Broken(e), problems);
            }
        }
        let stalled = match self.stall_reference {
            true => Some(backend_pid(&self.reference.client).await),
            false => None,
        };
        let want = self.reference.run(case).await;
        if let Some(pid) = stalled {
            stall(pid, Duration::from_millis(300));
        }
        let got = self.proxy.run(case).await;
        // tokio-postgres closes its connection after a copy_in that fails before CopyInResponse
        // (it sends CopyFail and Sync, and the second ReadyForQuery is unexpected): the same must
        // happen on both sides; then both reconnect.
        // The unexpected ReadyForQuery reaches each client in its own time (through pgproxy
        // later; on a loaded machine the reference's can come later still): wait until both
        // closed. Both still open is no agreement then: the stray ReadyForQuery would answer
        // the next statement on that connection, whose own answer then closes it (this once
        // failed under full CI load, reported as "pgproxy closed the client's connection").
        let expect_closed = self.reference.copy_in_refused;
        let mut closed = (false, false);
        for _ in 0..200 {
            closed = (
                self.reference.client.is_closed(),
                self.proxy.client.is_closed(),
            );
            let settled = match expect_closed {
                true => closed.0 && closed.1,
                false => closed.0 == closed.1,
            };
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if closed.0 != closed.1 || (expect_closed && !closed.0) {
            problems.push(format!(
                "client connection closed: reference {}, pgproxy {} (the reference's copy_in {})",
                closed.0,
                closed.1,
                if expect_closed {
                    "was refused: both must close"
                } else {
                    "started"
                }
            ));
        }
        for side in [&mut self.reference, &mut self.proxy] {
            if side.client.is_closed() {
                side.client = connect_app(side.port).await;
            }
        }
        let log = self.cl.proxy.log();
        let seen = self.log_seen.min(log.len());
        self.log_seen = log.len();
        if let Some(at) = log[seen..].find("panicked") {
            let at = seen + at;
            let end = log.len().min(at + 200);
            problems.push(format!("pgproxy panicked: {}", &log[at..end]));
        }
        if !want.same_as(&got) {
            problems.push(format!(
                "outcome: reference {} / pgproxy {}",
                want.short(),
                got.short()
            ));
        }
        let ref_rows = rows_on(&self.reference.client, SELECT).await;
        if let Some(expect) = &case.expect {
            if want != Outcome::Done(format!("COPY {}", expect.len())) {
                problems.push(format!(
                    "generator: the reference did not load the data as generated: {}",
                    want.short()
                ));
            } else if let Some(d) = rows_diff(&expected_rows(expect), &ref_rows) {
                problems.push(format!("generator: the reference holds other rows: {d}"));
            }
        }
        if let Some(d) = rows_diff(&ref_rows, &rows_on(&self.proxy.client, SELECT).await) {
            problems.push(format!("rows through pgproxy: {d}"));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(d) = rows_diff(&ref_rows, &rows_on(n, SELECT).await) {
                problems.push(format!("rows on node {i}: {d}"));
            }
        }
        if matches!(got, Outcome::Done(_)) && matches!(want, Outcome::Done(_)) {
            let ref_seq = rows_on(&self.reference.client, SEQ).await;
            for (i, n) in self.nodes.iter().enumerate() {
                let seq = rows_on(n, SEQ).await;
                if seq != ref_seq {
                    problems.push(format!(
                        "t_id_seq on node {i}: {seq:?}, reference {ref_seq:?}"
                    ));
                }
            }
        } else {
            // A failed COPY leaves the main's sequence ahead (documented): compare without it.
            if let Err(e) = self
                .proxy
                .client
                .batch_execute("DROP TABLE IF EXISTS t")
                .await
            {
                problems.push(format!("DROP TABLE through pgproxy: {}", describe(&e)));
            }
        }
        let (code, out, err) = verify(&self.cl.proxy.config_path()).await;
        if code != 0 {
            problems.push(format!("pgproxy verify exit {code}:\n{out}\n{err}"));
        }
        (want, problems)
    }
}

/// Writes the case to a file for replay; its path.
fn dump(seed: u64, round: u64, case: &Case, problems: &[String]) -> String {
    let path = std::env::temp_dir().join(format!("pgproxy-copy-random-{seed:x}-{round}.txt"));
    let mut text = format!("seed {seed:#x} round {round}\n");
    for p in problems {
        writeln!(text, "PROBLEM: {p}").unwrap();
    }
    text.push_str(&describe_case(case));
    std::fs::write(&path, text).expect("write the failing case");
    path.display().to_string()
}

/// Writes pgproxy's log next to the case; its path.
fn dump_log(seed: u64, round: u64, log: &str) -> String {
    let path = std::env::temp_dir().join(format!("pgproxy-copy-random-{seed:x}-{round}.log"));
    std::fs::write(&path, log).expect("write pgproxy's log");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_copy_completion_matches_plain_postgres() {
    let seed = env_num("PGPROXY_RANDOM_SEED").unwrap_or(DEFAULT_SEED);
    let rounds = env_num("PGPROXY_RANDOM_ROUNDS").unwrap_or(DEFAULT_ROUNDS);
    let trace = std::env::var_os("PGPROXY_RANDOM_TRACE").is_some();
    let _report = SeedReport(seed);
    eprintln!("replication_copy_random: seed {seed:#x} (PGPROXY_RANDOM_SEED), {rounds} rounds (PGPROXY_RANDOM_ROUNDS)");
    let limit = 120 + rounds * 20;
    within(limit, "random COPY rounds", async {
        let started = Instant::now();
        let mut env = Env::start().await;
        // Inputs that once hit pgproxy bugs (all fixed; the fixed cases below keep them):
        // an apostrophe as QUOTE/ESCAPE/DELIMITER, HEADER MATCH, `\.` after data on its line,
        // rows with a field fewer or more. Set PGPROXY_RANDOM_NO_OLD_BUGS to leave them out.
        let known_bugs = std::env::var_os("PGPROXY_RANDOM_NO_OLD_BUGS").is_none();
        let mut gen = Gen {
            rng: Rng(seed),
            known_bugs,
        };
        let (mut ok, mut failed, mut total_rows, mut total_bytes) = (0, 0, 0usize, 0usize);
        for round in 0..rounds {
            ROUND.store(round, Ordering::Relaxed);
            let case = gen.case();
            if trace {
                eprintln!("round {round} starts: {}", case.copy);
            }
            let t = Instant::now();
            let (want, problems) = within(120, "one round", env.check(&case)).await;
            if trace {
                eprintln!(
                    "round {round}: {} ({} bytes, {:?}) {} {:?} in {:?}",
                    case.copy,
                    case.data.len(),
                    match case.send {
                        Delivery::Simple { .. } => "simple",
                        Delivery::Extended { .. } => "extended",
                    },
                    want.short(),
                    case.notes,
                    t.elapsed()
                );
            }
            match &want {
                Outcome::Done(tag) => {
                    ok += 1;
                    total_rows += tag.trim_start_matches("COPY ").parse::<usize>().unwrap_or(0);
                }
                _ => failed += 1,
            }
            total_bytes += case.data.len();
            if !problems.is_empty() {
                let path = dump(seed, round, &case, &problems);
                let log = dump_log(seed, round, &env.cl.proxy.log());
                panic!(
                    "seed {seed:#x} round {round}: pgproxy differs from PostgreSQL (rerun with PGPROXY_RANDOM_SEED={seed:#x}); case written to {path}, pgproxy's log to {log}\n{}\n{}",
                    problems.join("\n"),
                    describe_case(&case).chars().take(3000).collect::<String>()
                );
            }
        }
        eprintln!(
            "replication_copy_random: seed {seed:#x}: {rounds} rounds ({ok} loaded, {failed} refused by PostgreSQL too), {total_rows} rows, {total_bytes} bytes, in {:?}",
            started.elapsed()
        );
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Fixed cases.
// ---------------------------------------------------------------------------------------------

const PLAIN_TABLE: &str = "CREATE TABLE t (id serial PRIMARY KEY, a text, b text, c int)";

fn fixed(create: &str, copy: &str, data: &[u8], extended: bool) -> Case {
    Case {
        create: create.into(),
        copy: copy.into(),
        data: data.to_vec(),
        send: if extended {
            Delivery::Extended { cuts: Vec::new() }
        } else {
            Delivery::Simple {
                cuts: Vec::new(),
                tcp_chunk: usize::MAX,
            }
        },
        expect: None,
        notes: vec!["fixed case".into()],
    }
}

/// Runs fixed cases on a fresh shard and reference; afterwards a new client must still get
/// through pgproxy. Panics with every problem found.
async fn run_fixed(cases: &[Case]) {
    run_fixed_with(cases, false).await
}

/// `run_fixed`, optionally with the reference's backend stalled after each run
/// (`Env::stall_reference`).
async fn run_fixed_with(cases: &[Case], stall_reference: bool) {
    within(120, "fixed COPY cases", async {
        let mut env = Env::start().await;
        env.stall_reference = stall_reference;
        let mut all = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let (_, problems) = within(60, "one case", env.check(case)).await;
            for p in problems {
                all.push(format!(
                    "case {i} ({}, {} bytes): {p}",
                    case.copy,
                    case.data.len()
                ));
            }
            match connect(env.cl.port(), "app", "secret", "app").await {
                Ok(c) => {
                    if let Err(e) = c.simple_query("SELECT 1").await {
                        all.push(format!(
                            "case {i}: a new client's SELECT 1: {}",
                            describe(&e)
                        ));
                    }
                }
                Err(e) => all.push(format!(
                    "case {i}: a new client cannot connect: {}",
                    describe(&e)
                )),
            }
            if !env.proxy.client.is_closed() && env.proxy.raw.is_some() {
                continue;
            }
            all.push(format!(
                "case {i}: the client's connection through pgproxy is closed"
            ));
            env.proxy = Side::new(env.cl.port()).await;
        }
        if !all.is_empty() {
            let path =
                std::env::temp_dir().join(format!("pgproxy-copy-fixed-{}.log", env.cl.port()));
            std::fs::write(&path, env.cl.proxy.log()).expect("write pgproxy's log");
            all.push(format!("pgproxy's log: {}", path.display()));
        }
        assert!(all.is_empty(), "{}", all.join("\n"));
    })
    .await
}

/// Once a bug: a QUOTE, ESCAPE or DELIMITER `'` (written `''''`) was sent to the nodes as `'''`
/// (sqlparser printed the character between quotes without doubling it), so every node failed
/// the completed COPY with 42601 while PostgreSQL loads it. The column list is now added to the
/// client's own text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_or_escape_apostrophe_reaches_the_nodes_intact() {
    run_fixed(&[
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (FORMAT csv, QUOTE '''')",
            b"'x,y',z,1\n",
            false,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN CSV QUOTE ''''",
            b"'x,y',z,1\n",
            false,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (FORMAT csv, ESCAPE '''')",
            b"\"x'\"\",y,1\n",
            false,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (DELIMITER '''')",
            b"x'y'1\n",
            false,
        ),
    ])
    .await
}

/// Once a bug: tokio-postgres `copy_in` of a completed COPY that fails at Execute (here QUOTE
/// equal to DELIMITER: 22023, PostgreSQL fails it too) sends CopyFail and Sync after the error;
/// PostgreSQL answers ReadyForQuery; pgproxy took the CopyFail for a frame of its own (offsets
/// of the unit before), and its session panicked or hung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_extended_copy_then_copy_fail_keeps_the_session() {
    run_fixed(&failing_then_completed_copy()).await
}

/// A completed COPY failing at Execute (QUOTE equal to DELIMITER), then a good one.
fn failing_then_completed_copy() -> [Case; 2] {
    [
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (FORMAT csv, QUOTE ',')",
            b"x,y,1\n",
            true,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (FORMAT csv)",
            b"x,y,1\n",
            true,
        ),
    ]
}

/// Once a flaky failure under full CI load (2026-11-27), a bug of this test: when neither
/// tokio-postgres client had received the stray ReadyForQuery of its CopyFail + Sync yet, both
/// "still open" counted as agreement; the stray message then answered the next statement on
/// each connection, which closed them ("pgproxy closed the client's connection"). pgproxy had
/// answered the Sync. Here the reference's backend is stopped for a moment after each run, so
/// its answer comes after pgproxy's copy_in is over (it failed 3 runs of 3 before the fix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_extended_copy_with_a_slow_reference_keeps_the_session() {
    run_fixed_with(&failing_then_completed_copy(), true).await
}

/// Once a limitation: valid PostgreSQL spellings of options that sqlparser does not know
/// (`HEADER on`, `HEADER 1`, `HEADER match`, `HEADER off`) made the completed COPY fail with
/// 0A000 ("pgproxy cannot parse this COPY"); they are now read from tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_spellings_pgproxy_cannot_parse() {
    run_fixed(&[
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (HEADER on)",
            b"a\tb\tc\nx\ty\t1\n",
            false,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (FORMAT csv, HEADER match)",
            b"a,b,c\nx,y,1\n",
            false,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN (FORMAT csv, HEADER 1)",
            b"a,b,c\nx,y,1\n",
            true,
        ),
    ])
    .await
}

/// Once a bug: in text format PostgreSQL (15) ends the data at a `\.` anywhere in a line; the
/// text before it is the last row. pgproxy cut rows only at line ends and appended the id after
/// the `\.`, so the nodes failed with 22P04 "end-of-copy marker corrupt" where PostgreSQL
/// loads the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_end_marker_at_the_end_of_a_row_ends_the_data() {
    run_fixed(&[
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN",
            b"x\ty\t1\\.\n",
            false,
        ),
        fixed(
            PLAIN_TABLE,
            "COPY t (a, b, c) FROM STDIN",
            b"p\tq\t2\nx\ty\t1\\.\nignored\n",
            false,
        ),
    ])
    .await
}

/// Once a bug: a row with a field fewer fails with 22P04 "missing data for column …" in
/// PostgreSQL; pgproxy appended its values to the short row, so they shifted into the copied
/// columns (here 22P02, the timestamp of `e` read as the id; with text columns a short row
/// could even load). A short row is now sent as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_a_field_fewer_fails_as_in_postgres() {
    run_fixed(&[fixed(
        "CREATE TABLE t (id serial PRIMARY KEY, a text, b text, c int, e timestamptz DEFAULT now())",
        "COPY t (a, b, c) FROM STDIN",
        b"x\ty\n",
        false,
    )])
    .await
}
