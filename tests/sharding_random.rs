//! Randomized differential test of sharding: the same seeded random SQL runs through pgproxy
//! (3 shards by default, `contacts` and `notes` sharded by `user_id`, `countries` shared) and on
//! one plain PostgreSQL holding the same rows. For every statement pgproxy must either give the
//! same answer as PostgreSQL (same rows in the same order when the ORDER BY is total, the same
//! multiset otherwise; same column names; same row count; same SQLSTATE when PostgreSQL fails) or
//! refuse it with SQLSTATE 0A000. Anything else (other rows or values, another error, a hang, a
//! refusal of a statement that pins one shard) is reported; the test fails listing every one.
//!
//! Three ways of sending: the simple protocol (tokio-postgres `simple_query`), the extended
//! protocol with text results (raw wire messages, unnamed or named statements, text parameters)
//! and the extended protocol with binary results (tokio-postgres `query` / `execute` with typed
//! parameters; merged reads in binary are encoded by pgproxy from the shards' text, or refused
//! for types and settings it cannot encode exactly, which is allowed).
//! Writes run through pgproxy first (a refused write is not run on PostgreSQL); after each write
//! the tables it touched are compared through `SELECT * … ORDER BY id` on both sides, and every
//! so often each shard is read directly (every row on the shard that owns its key, the union equal
//! to PostgreSQL's table). Now and then a few statements run as one transaction block (BEGIN,
//! then COMMIT or ROLLBACK) on both sides: reads inside it must see its own writes; an error
//! or a refusal ends the block with ROLLBACK on both sides (a refusal of a statement that pins
//! one shard may then be one of the transaction rules pgproxy documents).
//!
//! Knobs (environment): `PGPROXY_RANDOM_SEED` (decimal or 0x…), `PGPROXY_RANDOM_STATEMENTS`,
//! `PGPROXY_RANDOM_SHARDS`, `PGPROXY_RANDOM_NODES` (nodes per shard, default 1: with more, every
//! node of a shard must also hold the same rows as its first), `PGPROXY_RANDOM_ECHO` (print
//! every statement with pgproxy's answer), `PGPROXY_RANDOM_TXN_PCT` (how often a transaction
//! block starts, percent, default 4). The seed is printed; rerun with it to reproduce.

mod common;

use common::binary::{binary_text, Raw};
use common::rng::Rng;
use common::sharded::ShardedCluster;
use common::wire::{self, RawConn};
use common::*;
use pgproxy::shard::{hash_shard, KeyType, KeyValue};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, SimpleQueryMessage};

const DEFAULT_SEED: u64 = 0x005E_ED0F_5A4D;
const DEFAULT_STATEMENTS: usize = 2000;
const USERS: i64 = 30;
/// How long one statement may take before it counts as a hang.
const STATEMENT_LIMIT: Duration = Duration::from_secs(20);
const RAW_LIMIT: Duration = Duration::from_secs(8);

const SCHEMA: &str = "\
    CREATE TABLE contacts (id bigint PRIMARY KEY, user_id bigint NOT NULL, name text, age int, \
      score numeric(10,2), city text, big bigint, active bool, born date, seen timestamp, \
      rating float8, amount numeric, country text, CONSTRAINT age_ok CHECK (age < 1000)); \
    CREATE TABLE notes (id bigint PRIMARY KEY, user_id bigint NOT NULL, contact_id bigint, \
      body text, stars int, created date); \
    CREATE TABLE countries (code text PRIMARY KEY, name text, pop int)";

// ---------------------------------------------------------------------------------------------
// Values and columns

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Big,
    Num,
    Text,
    Bool,
    Date,
    Ts,
    Float,
}

impl Ty {
    /// pgproxy groups (and DISTINCTs) only by types whose text form is canonical.
    fn canonical(self) -> bool {
        !matches!(self, Ty::Num | Ty::Float)
    }
}

/// A value as stored (text forms as PostgreSQL accepts them).
#[derive(Clone, Debug)]
enum V {
    Null,
    Int(i64),
    Num(String),
    Text(String),
    Bool(bool),
    Date(String),
    Ts(String),
    Float(String),
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl V {
    /// An SQL literal.
    fn sql(&self) -> String {
        match self {
            V::Null => "NULL".into(),
            V::Int(i) => i.to_string(),
            V::Num(n) => n.clone(),
            V::Text(t) | V::Date(t) | V::Ts(t) => quote(t),
            V::Bool(b) => if *b { "true" } else { "false" }.into(),
            V::Float(f) => {
                if f.chars().any(|c| c.is_ascii_alphabetic() && c != 'e') {
                    quote(f)
                } else {
                    f.clone()
                }
            }
        }
    }
    /// The text a parameter in text format carries (None for NULL).
    fn text(&self) -> Option<String> {
        match self {
            V::Null => None,
            V::Int(i) => Some(i.to_string()),
            V::Num(s) | V::Text(s) | V::Date(s) | V::Ts(s) | V::Float(s) => Some(s.clone()),
            V::Bool(b) => Some(if *b { "t" } else { "f" }.into()),
        }
    }
    fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }
}

/// A bind parameter.
#[derive(Clone, Debug)]
enum Pv {
    /// Text format (raw wire).
    Text(Option<String>),
    I32(i32),
    I64(Option<i64>),
    Str(String),
    F64(f64),
    Bool(bool),
}

impl Pv {
    fn show(&self) -> String {
        match self {
            Pv::Text(Some(t)) => quote(t),
            Pv::Text(None) | Pv::I64(None) => "NULL".into(),
            Pv::I32(i) => format!("{i}::int4"),
            Pv::I64(Some(i)) => format!("{i}::int8"),
            Pv::Str(s) => quote(s),
            Pv::F64(f) => format!("{f:?}::float8"),
            Pv::Bool(b) => b.to_string(),
        }
    }
    fn boxed(&self) -> Box<dyn ToSql + Sync + Send> {
        match self {
            Pv::Text(t) => Box::new(t.clone()),
            Pv::I32(i) => Box::new(*i),
            Pv::I64(i) => Box::new(*i),
            Pv::Str(s) => Box::new(s.clone()),
            Pv::F64(f) => Box::new(*f),
            Pv::Bool(b) => Box::new(*b),
        }
    }
}

struct ColDef {
    name: &'static str,
    ty: Ty,
}

const fn col(name: &'static str, ty: Ty) -> ColDef {
    ColDef { name, ty }
}

const CONTACTS: &[ColDef] = &[
    col("id", Ty::Big),
    col("user_id", Ty::Big),
    col("name", Ty::Text),
    col("age", Ty::Int),
    col("score", Ty::Num),
    col("city", Ty::Text),
    col("big", Ty::Big),
    col("active", Ty::Bool),
    col("born", Ty::Date),
    col("seen", Ty::Ts),
    col("rating", Ty::Float),
    col("amount", Ty::Num),
    col("country", Ty::Text),
];

const NOTES: &[ColDef] = &[
    col("id", Ty::Big),
    col("user_id", Ty::Big),
    col("contact_id", Ty::Big),
    col("body", Ty::Text),
    col("stars", Ty::Int),
    col("created", Ty::Date),
];

const COUNTRIES: &[ColDef] = &[
    col("code", Ty::Text),
    col("name", Ty::Text),
    col("pop", Ty::Int),
];

fn table_cols(table: &str) -> &'static [ColDef] {
    match table {
        "contacts" => CONTACTS,
        "notes" => NOTES,
        _ => COUNTRIES,
    }
}

fn pk(table: &str) -> &'static str {
    if table == "countries" {
        "code"
    } else {
        "id"
    }
}

// ---------------------------------------------------------------------------------------------
// The data set

const NAMES: &[&str] = &[
    "ann", "Bob", "bob", "BOB", "carl", "Dana", "eve", "Émile", "zoë", "", "al ice", "n1", "n10",
    "n2", "O'Hara", "ab", "abc", "Ab",
];
const CITIES: &[&str] = &[
    "paris",
    "lyon",
    "berlin",
    "oslo",
    "rome",
    "Zagreb",
    "åre",
    "São Paulo",
    "",
    "oslo ",
    "Oslo",
];
const CODES: &[&str] = &["fr", "no", "de", "it", "hr", "se", "br", "xx"];
const BODIES: &[&str] = &[
    "hello",
    "call back",
    "Urgent",
    "urgent",
    "",
    "ok",
    "née",
    "z",
    "Z",
];

struct Data {
    rows: HashMap<&'static str, Vec<Vec<V>>>,
}

impl Data {
    fn generate(rng: &mut Rng) -> Data {
        let mut contacts = Vec::new();
        let mut notes = Vec::new();
        for u in 1..=USERS {
            let n = 4 + rng.below(30) as i64;
            for k in 1..=n {
                contacts.push(random_contact(rng, u * 1000 + k, u));
            }
            let m = rng.below(18) as i64;
            for k in 1..=m {
                let contact = if rng.chance(0.8) {
                    V::Int(u * 1000 + rng.range(1, n + 3))
                } else {
                    V::Null
                };
                notes.push(random_note(rng, u * 1000 + 500 + k, u, contact));
            }
        }
        // A few special float values, on rows of few users.
        for (i, f) in ["NaN", "Infinity", "1.25e20", "-Infinity"]
            .iter()
            .enumerate()
        {
            if let Some(r) = contacts.get_mut(7 + i * 97) {
                r[10] = V::Float(f.to_string());
            }
        }
        let countries = vec![
            vec![V::Text("fr".into()), V::Text("France".into()), V::Int(68)],
            vec![V::Text("no".into()), V::Text("Norway".into()), V::Int(5)],
            vec![V::Text("de".into()), V::Text("Germany".into()), V::Int(83)],
            vec![V::Text("it".into()), V::Text("Italy".into()), V::Int(59)],
            vec![V::Text("hr".into()), V::Text("Croatia".into()), V::Int(4)],
            vec![V::Text("se".into()), V::Text("Sweden".into()), V::Int(10)],
            vec![V::Text("br".into()), V::Text("Brazil".into()), V::Int(214)],
            vec![V::Text("es".into()), V::Text("Spain".into()), V::Null],
        ];
        let mut rows = HashMap::new();
        rows.insert("contacts", contacts);
        rows.insert("notes", notes);
        rows.insert("countries", countries);
        Data { rows }
    }

    /// INSERT statements for the whole data set, one shard's rows each (grouped by user).
    fn inserts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for table in ["countries", "contacts", "notes"] {
            let cols: Vec<&str> = table_cols(table).iter().map(|c| c.name).collect();
            let mut by_user: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            for r in &self.rows[table] {
                let user = match (table, &r[1]) {
                    ("countries", _) => 0,
                    (_, V::Int(u)) => *u,
                    _ => 0,
                };
                let vals: Vec<String> = r.iter().map(V::sql).collect();
                by_user
                    .entry(user)
                    .or_default()
                    .push(format!("({})", vals.join(", ")));
            }
            for rows in by_user.values() {
                for chunk in rows.chunks(40) {
                    out.push(format!(
                        "INSERT INTO {table} ({}) VALUES {}",
                        cols.join(", "),
                        chunk.join(", ")
                    ));
                }
            }
        }
        out
    }

    /// A random non-NULL value of a column (NULL if the column has none).
    fn sample(&self, rng: &mut Rng, table: &str, col: &str) -> V {
        let cols = table_cols(table);
        let i = cols.iter().position(|c| c.name == col).expect("column");
        let rows = &self.rows[table];
        for _ in 0..20 {
            let v = &rng.pick(rows)[i];
            if !v.is_null() {
                return v.clone();
            }
        }
        V::Null
    }
}

fn maybe_null(rng: &mut Rng, p: f64, v: V) -> V {
    if rng.chance(p) {
        V::Null
    } else {
        v
    }
}

fn random_date(rng: &mut Rng) -> String {
    match rng.below(40) {
        0 => "infinity".into(),
        1 => "-infinity".into(),
        2 => "0044-03-15 BC".into(),
        _ => format!(
            "{:04}-{:02}-{:02}",
            rng.range(1950, 2024),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
    }
}

fn random_ts(rng: &mut Rng) -> String {
    match rng.below(50) {
        0 => "infinity".into(),
        1 => "0100-01-01 12:00:00 BC".into(),
        _ => {
            let frac = match rng.below(4) {
                0 => ".5".to_string(),
                1 => format!(".{:06}", rng.range(0, 999_999)),
                _ => String::new(),
            };
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{frac}",
                rng.range(2023, 2024),
                rng.range(1, 12),
                rng.range(1, 28),
                rng.range(0, 23),
                rng.range(0, 59),
                rng.range(0, 59)
            )
        }
    }
}

fn random_num2(rng: &mut Rng) -> String {
    let cents = rng.range(-10_000, 99_999);
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn random_amount(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "0.0001".into(),
        1 => format!("{}.123", rng.range(100_000, 999_999_999)),
        2 => format!("-{}", rng.range(1, 50)),
        3 => format!("{}.5", rng.range(0, 20)),
        4 => "0.333333333333".into(),
        5 => format!("{}", rng.range(0, 1000)),
        6 => "0.00001".into(),
        7 => format!("-0.{:03}", rng.range(1, 999)),
        _ => format!("{}.{:02}", rng.range(0, 500), rng.range(0, 99)),
    }
}

fn random_float(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => "3.5e-7".into(),
        1 => "-0.5".into(),
        2 => "0.1".into(),
        3 => format!("{}.25", rng.range(-20, 20)),
        _ => format!("{}.{}", rng.range(0, 99), rng.range(0, 99)),
    }
}

fn random_contact(rng: &mut Rng, id: i64, user: i64) -> Vec<V> {
    let name = V::Text(rng.pick(NAMES).to_string());
    let age = V::Int(if rng.chance(0.1) {
        30
    } else {
        rng.range(10, 89)
    });
    let score = V::Num(random_num2(rng));
    let city = V::Text(rng.pick(CITIES).to_string());
    let big = V::Int(match rng.below(4) {
        0 => 1_000_000_000_000,
        1 => -7,
        _ => rng.range(-1_000_000_000_000_000, 1_000_000_000_000_000),
    });
    let active = V::Bool(rng.chance(0.5));
    let born = V::Date(random_date(rng));
    let seen = V::Ts(random_ts(rng));
    let rating = V::Float(random_float(rng));
    let amount = V::Num(random_amount(rng));
    let country = V::Text(rng.pick(CODES).to_string());
    vec![
        V::Int(id),
        V::Int(user),
        maybe_null(rng, 0.05, name),
        maybe_null(rng, 0.1, age),
        maybe_null(rng, 0.1, score),
        maybe_null(rng, 0.1, city),
        maybe_null(rng, 0.1, big),
        maybe_null(rng, 0.15, active),
        maybe_null(rng, 0.1, born),
        maybe_null(rng, 0.1, seen),
        maybe_null(rng, 0.1, rating),
        maybe_null(rng, 0.15, amount),
        maybe_null(rng, 0.1, country),
    ]
}

fn random_note(rng: &mut Rng, id: i64, user: i64, contact: V) -> Vec<V> {
    let body = V::Text(rng.pick(BODIES).to_string());
    let stars = V::Int(rng.range(0, 5));
    let created = V::Date(random_date(rng));
    vec![
        V::Int(id),
        V::Int(user),
        contact,
        maybe_null(rng, 0.1, body),
        maybe_null(rng, 0.1, stars),
        maybe_null(rng, 0.1, created),
    ]
}

// ---------------------------------------------------------------------------------------------
// Statements

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// tokio-postgres simple_query.
    Simple,
    /// Raw extended protocol, text parameters and results.
    Text,
    /// tokio-postgres query/execute: typed parameters, binary results.
    Binary,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    /// Same rows in the same order (the ORDER BY is total).
    Ordered,
    /// Same multiset of rows.
    Unordered,
}

#[derive(Clone, Debug)]
struct Stmt {
    sql: String,
    params: Vec<Pv>,
    mode: Mode,
    cmp: Cmp,
    /// Result columns holding float sums/averages: compared with a relative tolerance.
    float_cols: Vec<usize>,
    /// Tables a write changes (empty for reads).
    writes: Vec<&'static str>,
    /// A write with RETURNING.
    returning: bool,
    family: &'static str,
    /// The statement pins exactly one shard and uses nothing pgproxy refuses on one shard:
    /// a refusal is a bug.
    must_run: bool,
    /// Text mode: through a named prepared statement (Parse, then Bind/Execute).
    named: bool,
}

impl Stmt {
    fn show(&self) -> String {
        let mut s = format!(
            "[{:?}{}] {}",
            self.mode,
            if self.named { ", named" } else { "" },
            self.sql
        );
        if !self.params.is_empty() {
            let p: Vec<String> = self.params.iter().map(Pv::show).collect();
            let _ = write!(s, "   -- params: {}", p.join(", "));
        }
        s
    }
}

/// A select-list item.
#[derive(Clone, Debug)]
struct Item {
    sql: String,
    ty: Ty,
    /// sum/avg of floats: compared with a tolerance, never ordered by.
    float_agg: bool,
    alias: Option<String>,
}

impl Item {
    fn new(sql: String, ty: Ty) -> Item {
        Item {
            sql,
            ty,
            float_agg: false,
            alias: None,
        }
    }
    fn render(&self) -> String {
        match &self.alias {
            Some(a) => format!("{} AS {a}", self.sql),
            None => self.sql.clone(),
        }
    }
}

/// A column usable in conditions: its SQL, type, and where to sample literals from.
#[derive(Clone, Debug)]
struct Src {
    sql: String,
    ty: Ty,
    table: &'static str,
    col: &'static str,
}

fn srcs(table: &'static str, prefix: &str) -> Vec<Src> {
    table_cols(table)
        .iter()
        .map(|c| Src {
            sql: format!("{prefix}{}", c.name),
            ty: c.ty,
            table,
            col: c.name,
        })
        .collect()
}

/// Expressions over contacts (prefix `p`: "c." or "" or "contacts.").
fn contact_exprs(p: &str) -> Vec<Item> {
    let e = |s: String, t: Ty| Item::new(s, t);
    vec![
        e(format!("{p}age + 1"), Ty::Int),
        e(format!("{p}score * 2"), Ty::Num),
        e(format!("lower({p}name)"), Ty::Text),
        e(format!("upper({p}city)"), Ty::Text),
        e(format!("coalesce({p}city, 'none')"), Ty::Text),
        e(format!("coalesce({p}age, 0)"), Ty::Int),
        e(format!("{p}big - 1"), Ty::Big),
        e(format!("length({p}name)"), Ty::Int),
        e(format!("{p}born + 7"), Ty::Date),
        e(format!("{p}rating * 2"), Ty::Float),
        e(format!("{p}age::text"), Ty::Text),
        e(format!("-{p}age"), Ty::Int),
        e(format!("abs({p}score)"), Ty::Num),
        e(format!("{p}name || '/' || {p}city"), Ty::Text),
        e(
            format!(
                "CASE WHEN {p}age > 50 THEN 'old' WHEN {p}age IS NULL THEN NULL ELSE 'young' END"
            ),
            Ty::Text,
        ),
        e(format!("round({p}amount, 1)"), Ty::Num),
        e(format!("{p}seen::date"), Ty::Date),
        e(format!("date_trunc('month', {p}seen)"), Ty::Ts),
        e(format!("nullif({p}age, 30)"), Ty::Int),
        e(format!("{p}active IS TRUE"), Ty::Bool),
        e(format!("{p}amount + {p}score"), Ty::Num),
        e(format!("{p}user_id * 10 + 1"), Ty::Big),
        e(format!("{p}age / 10"), Ty::Int),
    ]
}

/// Aggregates over contacts that pgproxy can merge (and a few it cannot).
fn contact_aggs(p: &str) -> Vec<Item> {
    let a = |s: String, t: Ty| Item::new(s, t);
    let f = |s: String| Item {
        sql: s,
        ty: Ty::Float,
        float_agg: true,
        alias: None,
    };
    vec![
        a("count(*)".into(), Ty::Big),
        a(format!("count({p}age)"), Ty::Big),
        a(format!("count({p}city)"), Ty::Big),
        a(format!("sum({p}age)"), Ty::Big),
        a(format!("sum({p}big)"), Ty::Num),
        a(format!("sum({p}score)"), Ty::Num),
        a(format!("sum({p}amount)"), Ty::Num),
        f(format!("sum({p}rating)")),
        a(format!("avg({p}age)"), Ty::Num),
        a(format!("avg({p}big)"), Ty::Num),
        a(format!("avg({p}score)"), Ty::Num),
        a(format!("avg({p}amount)"), Ty::Num),
        f(format!("avg({p}rating)")),
        a(format!("avg({p}age + 1)"), Ty::Num),
        a(format!("sum({p}score * 2)"), Ty::Num),
        a(format!("min({p}age)"), Ty::Int),
        a(format!("max({p}age)"), Ty::Int),
        a(format!("min({p}big)"), Ty::Big),
        a(format!("max({p}score)"), Ty::Num),
        a(format!("min({p}amount)"), Ty::Num),
        a(format!("max({p}amount)"), Ty::Num),
        a(format!("min({p}rating)"), Ty::Float),
        a(format!("max({p}rating)"), Ty::Float),
        a(format!("min({p}name)"), Ty::Text),
        a(format!("max({p}city)"), Ty::Text),
        a(format!("min({p}born)"), Ty::Date),
        a(format!("max({p}born)"), Ty::Date),
        a(format!("min({p}seen)"), Ty::Ts),
        a(format!("max({p}seen)"), Ty::Ts),
        a(format!("max({p}id)"), Ty::Big),
        a(format!("min(lower({p}name))"), Ty::Text),
        a(format!("sum({p}user_id)"), Ty::Num),
    ]
}

/// Group keys over contacts (canonical text forms, plus rare numeric/float ones pgproxy refuses).
fn contact_group_keys(p: &str) -> Vec<Item> {
    let e = |s: String, t: Ty| Item::new(s, t);
    vec![
        e(format!("{p}city"), Ty::Text),
        e(format!("{p}user_id"), Ty::Big),
        e(format!("{p}age"), Ty::Int),
        e(format!("{p}active"), Ty::Bool),
        e(format!("{p}born"), Ty::Date),
        e(format!("{p}country"), Ty::Text),
        e(format!("lower({p}city)"), Ty::Text),
        e(format!("{p}age / 10"), Ty::Int),
        e(format!("{p}seen::date"), Ty::Date),
        e(format!("{p}name"), Ty::Text),
        e(format!("{p}city"), Ty::Text),
        e(format!("{p}user_id"), Ty::Big),
        e(format!("{p}score"), Ty::Num),
        e(format!("{p}rating"), Ty::Float),
    ]
}

struct Gen {
    rng: Rng,
    data: Data,
    shards: u64,
    mode: Mode,
    params: Vec<Pv>,
    /// Next free contact / note number per user.
    next_contact: HashMap<i64, i64>,
    next_note: HashMap<i64, i64>,
    /// The statement being generated pins one shard with a valid key.
    pinned: bool,
    /// The statement has something that may legitimately be refused even on one shard.
    refusable: bool,
    aliases: usize,
}

impl Gen {
    fn new(seed: u64, data: Data, shards: u64) -> Gen {
        Gen {
            rng: Rng(seed ^ 0xA5A5_5A5A_0F0F_F0F0),
            data,
            shards,
            mode: Mode::Simple,
            params: Vec::new(),
            next_contact: HashMap::new(),
            next_note: HashMap::new(),
            pinned: false,
            refusable: false,
            aliases: 0,
        }
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("x{}", self.aliases)
    }

    fn maybe_alias(&mut self, it: &mut Item, p: f64) {
        if self.rng.chance(p) {
            it.alias = Some(self.alias());
        }
    }

    /// One statement, in a random protocol.
    fn statement(&mut self) -> Stmt {
        self.params.clear();
        self.pinned = false;
        self.refusable = false;
        self.aliases = 0;
        self.mode = match self.rng.below(20) {
            0..=10 => Mode::Simple,
            11..=15 => Mode::Text,
            _ => Mode::Binary,
        };
        if self.rng.chance(0.02) {
            return self.session_setting();
        }
        let r = self.rng.below(100);
        let mut st = match r {
            0..=17 => self.select_plain(),
            18..=25 => self.select_agg(),
            26..=38 => self.select_group(),
            39..=44 => self.select_distinct(),
            45..=54 => self.select_join(),
            55..=59 => self.select_shared(),
            60..=67 => self.select_subquery(),
            68..=70 => self.select_sets(),
            71..=74 => self.select_refused(),
            75..=76 => self.select_error(),
            77..=85 => self.insert(),
            86..=93 => self.update(),
            _ => self.delete(),
        };
        st.params = std::mem::take(&mut self.params);
        st.mode = self.mode;
        st.named = self.mode == Mode::Text && self.rng.chance(0.4);
        st.must_run = self.pinned && !self.refusable;
        st
    }

    fn stmt(&self, sql: String, cmp: Cmp, items: &[Item], family: &'static str) -> Stmt {
        Stmt {
            sql,
            params: Vec::new(),
            mode: self.mode,
            cmp,
            float_cols: items
                .iter()
                .enumerate()
                .filter(|(_, i)| i.float_agg)
                .map(|(n, _)| n)
                .collect(),
            writes: Vec::new(),
            returning: false,
            family,
            must_run: false,
            named: false,
        }
    }

    // ---- literals

    fn fresh(&mut self, ty: Ty) -> V {
        let r = &mut self.rng;
        match ty {
            Ty::Int => V::Int(r.range(-5, 100)),
            Ty::Big => V::Int(r.range(-10, 40_000)),
            Ty::Num => V::Num(random_num2(r)),
            Ty::Text => V::Text(match r.below(3) {
                0 => r.pick(NAMES).to_string(),
                1 => r.pick(CITIES).to_string(),
                _ => r.pick(BODIES).to_string(),
            }),
            Ty::Bool => V::Bool(r.chance(0.5)),
            Ty::Date => V::Date(random_date(r)),
            Ty::Ts => V::Ts(random_ts(r)),
            Ty::Float => V::Float(random_float(r)),
        }
    }

    fn value_for(&mut self, s: &Src) -> V {
        if self.rng.chance(0.8) {
            let v = self.data.sample(&mut self.rng, s.table, s.col);
            if !v.is_null() {
                return v;
            }
        }
        self.fresh(s.ty)
    }

    /// A literal for a comparison with `s`, inline or as a bind parameter.
    fn lit(&mut self, s: &Src, v: &V) -> String {
        let allowed = match self.mode {
            Mode::Simple => false,
            Mode::Text => true,
            Mode::Binary => {
                !v.is_null() && matches!(s.ty, Ty::Int | Ty::Big | Ty::Text | Ty::Bool | Ty::Float)
            }
        };
        if !allowed || !self.rng.chance(0.45) {
            return v.sql();
        }
        let p = match self.mode {
            Mode::Text => Pv::Text(v.text()),
            _ => match (s.ty, v) {
                (Ty::Int, V::Int(i)) => Pv::I32(*i as i32),
                (Ty::Big, V::Int(i)) => Pv::I64(Some(*i)),
                (Ty::Text, V::Text(t)) => Pv::Str(t.clone()),
                (Ty::Bool, V::Bool(b)) => Pv::Bool(*b),
                (Ty::Float, V::Float(f)) => Pv::F64(f.parse().expect("float")),
                _ => return v.sql(),
            },
        };
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// A LIMIT / OFFSET count, inline or as a parameter.
    fn count(&mut self, n: i64) -> String {
        if self.mode != Mode::Simple && self.rng.chance(0.4) {
            self.params.push(match self.mode {
                Mode::Text => Pv::Text(Some(n.to_string())),
                _ => Pv::I64(Some(n)),
            });
            return format!("${}", self.params.len());
        }
        n.to_string()
    }

    fn key_value(&mut self) -> i64 {
        match self.rng.below(30) {
            0 => USERS + 1 + self.rng.range(0, 3),
            1 => -self.rng.range(1, 3),
            _ => self.rng.range(1, USERS),
        }
    }

    // ---- conditions

    /// A condition on `key` (the key column's SQL) that pins the statement; sets `pinned` when
    /// it is one valid key.
    fn pin(&mut self, key: &str) -> String {
        let k = self.key_value();
        if self.mode != Mode::Simple && self.rng.chance(0.5) {
            let null = self.rng.chance(0.05);
            let p = match self.mode {
                Mode::Text => Pv::Text(if null {
                    None
                } else {
                    Some(match self.rng.below(6) {
                        0 => format!(" {k}"),
                        1 => format!("{k} "),
                        2 if k > 0 => format!("+{k}"),
                        _ => k.to_string(),
                    })
                }),
                _ => Pv::I64(if null { None } else { Some(k) }),
            };
            self.params.push(p);
            self.pinned = true;
            let n = self.params.len();
            return if self.rng.chance(0.8) {
                format!("{key} = ${n}")
            } else {
                format!("${n} = {key}")
            };
        }
        let (sql, single) = match self.rng.below(14) {
            0..=2 => (format!("{key} = {k}"), true),
            3 => (format!("{k} = {key}"), true),
            4 => (format!("{key} = '{k}'"), true),
            5 => (format!("{key} = {k}::bigint"), true),
            6 => (format!("{key} = CAST({k} AS bigint)"), true),
            7 => (format!("{key} = ' {k} '"), true),
            8 => (format!("({key} = {k})"), true),
            9 => (format!("{key} IN ({k})"), true),
            10 => (format!("{key} = '{k}'::int8"), true),
            11 => (format!("{key} = {k}.0"), false),
            _ => {
                let n = 2 + self.rng.below(3);
                let ks: Vec<String> = (0..n).map(|_| self.key_value().to_string()).collect();
                let same = ks.iter().all(|x| {
                    let a: i64 = x.parse().expect("key");
                    let b: i64 = ks[0].parse().expect("key");
                    hash_shard(KeyType::Bigint, &KeyValue::Int(a), self.shards)
                        == hash_shard(KeyType::Bigint, &KeyValue::Int(b), self.shards)
                });
                (format!("{key} IN ({})", ks.join(", ")), same)
            }
        };
        self.pinned |= single;
        sql
    }

    /// A condition on the key column that does not pin (pgproxy must read every shard).
    fn loose_key(&mut self, key: &str) -> String {
        let k = self.key_value();
        let k2 = self.key_value();
        match self.rng.below(9) {
            0 => format!("{key} + 0 = {k}"),
            1 => format!("{key} BETWEEN {} AND {}", k.min(k2), k.max(k2)),
            2 => format!("{key} > {k}"),
            3 => format!("{key}::text = '{k}'"),
            4 => format!("{key} = ANY('{{{k},{k2}}}')"),
            5 => format!("({key} = {k} OR {key} = {k2})"),
            6 => format!("NOT ({key} = {k})"),
            7 => format!("{key} = {k}.0"),
            _ => format!("{key} <> {k}"),
        }
    }

    fn atom(&mut self, cols: &[Src]) -> String {
        let s = self.rng.pick(cols).clone();
        if s.col == "user_id" && self.rng.chance(0.5) {
            return self.loose_key(&s.sql);
        }
        let c = &s.sql;
        if s.ty == Ty::Bool {
            return match self.rng.below(6) {
                0 => c.clone(),
                1 => format!("NOT {c}"),
                2 => format!("{c} IS TRUE"),
                3 => format!("{c} IS NOT FALSE"),
                4 => format!("{c} IS NULL"),
                _ => {
                    let v = V::Bool(self.rng.chance(0.5));
                    format!("{c} = {}", self.lit(&s, &v))
                }
            };
        }
        match self.rng.below(16) {
            0 => format!("{c} IS NULL"),
            1 => format!("{c} IS NOT NULL"),
            2..=4 => {
                let n = 1 + self.rng.below(4);
                let mut vals = Vec::new();
                for _ in 0..n {
                    let v = self.value_for(&s);
                    vals.push(self.lit(&s, &v));
                }
                let not = if self.rng.chance(0.25) { "NOT " } else { "" };
                format!("{c} {not}IN ({})", vals.join(", "))
            }
            5 => {
                let a = self.value_for(&s);
                let b = self.value_for(&s);
                let (a, b) = (self.lit(&s, &a), self.lit(&s, &b));
                format!("{c} BETWEEN {a} AND {b}")
            }
            6 if s.ty == Ty::Text => {
                let v = self.value_for(&s);
                let t = v.text().unwrap_or_default();
                let prefix: String = t.chars().take(1 + self.rng.below(2)).collect();
                let pat = V::Text(format!("{prefix}%"));
                format!("{c} LIKE {}", self.lit(&s, &pat))
            }
            7 if s.ty == Ty::Text => {
                let v = self.value_for(&s);
                let v = V::Text(v.text().unwrap_or_default().to_lowercase());
                format!("lower({c}) = {}", self.lit(&s, &v))
            }
            _ => {
                let op = *self.rng.pick(&["=", "<>", "<", "<=", ">", ">=", "!=", "="]);
                let v = self.value_for(&s);
                let l = self.lit(&s, &v);
                if self.rng.chance(0.15) {
                    let flipped = match op {
                        "<" => ">",
                        "<=" => ">=",
                        ">" => "<",
                        ">=" => "<=",
                        o => o,
                    };
                    format!("{l} {flipped} {c}")
                } else {
                    format!("{c} {op} {l}")
                }
            }
        }
    }

    fn pred(&mut self, cols: &[Src], depth: usize) -> String {
        if depth > 0 {
            match self.rng.below(10) {
                0 | 1 => {
                    let (a, b) = (self.pred(cols, depth - 1), self.pred(cols, depth - 1));
                    return format!("({a} AND {b})");
                }
                2 | 3 => {
                    let (a, b) = (self.pred(cols, depth - 1), self.pred(cols, depth - 1));
                    return format!("({a} OR {b})");
                }
                4 => return format!("NOT ({})", self.pred(cols, depth - 1)),
                _ => {}
            }
        }
        self.atom(cols)
    }

    fn pin_chance(&self) -> f64 {
        if self.mode == Mode::Binary {
            0.75
        } else {
            0.35
        }
    }

    /// ` WHERE …` (or ""): a random condition, `extra` conditions, maybe a pin on `key`.
    fn where_clause(&mut self, cols: &[Src], key: Option<&str>, extra: Vec<String>) -> String {
        let mut conj = extra;
        if self.rng.chance(0.7) {
            let d = self.rng.below(3);
            conj.push(self.pred(cols, d));
        }
        if let Some(key) = key {
            if self.rng.chance(self.pin_chance()) {
                conj.push(self.pin(key));
            }
        }
        self.rng.shuffle(&mut conj);
        if conj.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conj.join(" AND "))
        }
    }

    // ---- ORDER BY and LIMIT

    fn dir(&mut self) -> String {
        let d = *self.rng.pick(&["", "", " ASC", " DESC", " DESC"]);
        let n = *self.rng.pick(&["", "", "", " NULLS FIRST", " NULLS LAST"]);
        format!("{d}{n}")
    }

    /// How ORDER BY names select item `i`: position, alias or the expression again.
    fn item_ref(&mut self, items: &[Item], i: usize) -> String {
        match self.rng.below(3) {
            0 => (i + 1).to_string(),
            1 if items[i].alias.is_some() => items[i].alias.clone().expect("alias"),
            _ => items[i].sql.clone(),
        }
    }

    /// ` LIMIT …` / ` OFFSET …` / FETCH (only after a total ORDER BY).
    fn limit(&mut self) -> String {
        let n = self.rng.range(0, 40);
        let o = self.rng.range(0, 60);
        match self.rng.below(10) {
            0..=2 => format!(" LIMIT {}", self.count(n)),
            3 | 4 => {
                let (l, o) = (self.count(n), self.count(o));
                format!(" LIMIT {l} OFFSET {o}")
            }
            5 => format!(" OFFSET {}", self.count(o)),
            6 => {
                let (o, l) = (self.count(o), self.count(n));
                format!(" OFFSET {o} ROWS FETCH FIRST {l} ROWS ONLY")
            }
            7 => format!(" FETCH NEXT {} ROWS ONLY", self.count(n)),
            8 => " LIMIT ALL".into(),
            _ => format!(" OFFSET {} LIMIT {}", o, n),
        }
    }

    /// FROM for contacts alone: (text, column prefix).
    fn contacts_from(&mut self) -> (String, String) {
        match self.rng.below(6) {
            0 | 1 => ("contacts c".into(), "c.".into()),
            2 => ("contacts".into(), String::new()),
            3 => ("contacts".into(), "contacts.".into()),
            4 => ("public.contacts AS c".into(), "c.".into()),
            _ => ("contacts AS k".into(), "k.".into()),
        }
    }

    // ---- reads

    fn select_plain(&mut self) -> Stmt {
        let (from, p) = self.contacts_from();
        let cols = srcs("contacts", &p);
        let exprs = contact_exprs(&p);
        let mut items: Vec<Item> = Vec::new();
        let list;
        if self.rng.chance(0.1) {
            items = CONTACTS
                .iter()
                .map(|c| Item::new(c.name.to_string(), c.ty))
                .collect();
            let mut l = "*".to_string();
            if self.rng.chance(0.4) {
                let mut e = self.rng.pick(&exprs).clone();
                e.alias = Some(self.alias());
                l += &format!(", {}", e.render());
                items.push(e);
            }
            list = l;
        } else {
            let n = 1 + self.rng.below(5);
            for _ in 0..n {
                let mut it = if self.rng.chance(0.5) {
                    let s = self.rng.pick(&cols).clone();
                    Item::new(s.sql, s.ty)
                } else {
                    self.rng.pick(&exprs).clone()
                };
                self.maybe_alias(&mut it, 0.3);
                if self.rng.chance(0.03) {
                    // An output name that shadows an input column: ORDER BY that name means
                    // the output column.
                    // Never `id`: the primary key appended below must stay the input column.
                    let name = self.rng.pick(&CONTACTS[1..]).name;
                    it.alias = Some(name.to_string());
                }
                items.push(it);
            }
            list = items
                .iter()
                .map(Item::render)
                .collect::<Vec<_>>()
                .join(", ");
        }
        let key = format!("{p}user_id");
        let w = self.where_clause(&cols, Some(&key), Vec::new());
        let mut keys = Vec::new();
        for _ in 0..self.rng.below(4) {
            let k = if self.rng.chance(0.6) {
                let i = self.rng.below(items.len());
                self.item_ref(&items, i)
            } else if self.rng.chance(0.5) {
                self.rng.pick(&cols).sql.clone()
            } else {
                self.rng.pick(&exprs).sql.clone()
            };
            let d = self.dir();
            keys.push(format!("{k}{d}"));
        }
        let total = self.rng.chance(0.8);
        if total {
            let d = *self.rng.pick(&["", " DESC", " ASC"]);
            keys.push(format!("{p}id{d}"));
        }
        let mut sql = format!("SELECT {list} FROM {from}{w}");
        if !keys.is_empty() {
            sql += &format!(" ORDER BY {}", keys.join(", "));
        }
        if total && self.rng.chance(0.6) {
            sql += &self.limit();
        }
        let cmp = if total { Cmp::Ordered } else { Cmp::Unordered };
        self.stmt(sql, cmp, &items, "plain")
    }

    fn select_agg(&mut self) -> Stmt {
        let (from, p) = self.contacts_from();
        let cols = srcs("contacts", &p);
        let aggs = contact_aggs(&p);
        let mut items = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let mut it = self.rng.pick(&aggs).clone();
            self.maybe_alias(&mut it, 0.3);
            items.push(it);
        }
        if self.rng.chance(0.03) {
            // Not grouped: PostgreSQL's error 42803.
            items.push(Item::new(format!("{p}age"), Ty::Int));
        }
        let key = format!("{p}user_id");
        let w = self.where_clause(&cols, Some(&key), Vec::new());
        let list = items
            .iter()
            .map(Item::render)
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT {list} FROM {from}{w}");
        if self.rng.chance(0.1) {
            sql += " ORDER BY 1";
        }
        if self.rng.chance(0.1) {
            sql += " LIMIT 5";
        }
        self.stmt(sql, Cmp::Ordered, &items, "aggregate")
    }

    fn select_group(&mut self) -> Stmt {
        let (from, p) = self.contacts_from();
        let cols = srcs("contacts", &p);
        let aggs = contact_aggs(&p);
        let cands = contact_group_keys(&p);
        let nkeys = 1 + self.rng.below(2);
        let mut gkeys: Vec<Item> = Vec::new();
        while gkeys.len() < nkeys {
            let k = self.rng.pick(&cands).clone();
            if !gkeys.iter().any(|g| g.sql == k.sql) {
                gkeys.push(k);
            }
        }
        // Select list: some of the keys and some aggregates, in random order.
        let mut items: Vec<Item> = Vec::new();
        let mut key_pos: Vec<Option<usize>> = vec![None; gkeys.len()];
        let mut entries: Vec<(Option<usize>, Item)> = Vec::new();
        for (i, g) in gkeys.iter().enumerate() {
            if self.rng.chance(0.8) {
                entries.push((Some(i), g.clone()));
            }
        }
        for _ in 0..1 + self.rng.below(3) {
            entries.push((None, self.rng.pick(&aggs).clone()));
        }
        if self.rng.chance(0.1) {
            // An expression over a key column.
            let g = &gkeys[0];
            if g.sql == format!("{p}city") {
                entries.push((None, Item::new(format!("upper({p}city)"), Ty::Text)));
            } else if g.sql == format!("{p}age") {
                entries.push((None, Item::new(format!("{p}age + 1"), Ty::Int)));
            }
        }
        self.rng.shuffle(&mut entries);
        for (k, mut it) in entries {
            self.maybe_alias(&mut it, 0.3);
            if let Some(k) = k {
                key_pos[k] = Some(items.len());
            }
            items.push(it);
        }
        let key = format!("{p}user_id");
        let w = self.where_clause(&cols, Some(&key), Vec::new());
        let group: Vec<String> = gkeys
            .iter()
            .enumerate()
            .map(|(i, g)| match key_pos[i] {
                Some(pos) if self.rng.chance(0.3) => (pos + 1).to_string(),
                _ => g.sql.clone(),
            })
            .collect();
        let mut order = Vec::new();
        let mut used = vec![false; gkeys.len()];
        for _ in 0..self.rng.below(3) {
            if self.rng.chance(0.7) {
                let i = self.rng.below(items.len());
                if items[i].float_agg {
                    continue;
                }
                if let Some(k) = key_pos.iter().position(|p| *p == Some(i)) {
                    used[k] = true;
                }
                let r = self.item_ref(&items, i);
                let d = self.dir();
                order.push(format!("{r}{d}"));
            } else {
                let hidden = [
                    "count(*)".to_string(),
                    format!("sum({p}age)"),
                    format!("min({p}name)"),
                    format!("max({p}born)"),
                ];
                let h = self.rng.pick(&hidden).clone();
                let d = self.dir();
                order.push(format!("{h}{d}"));
            }
        }
        let total = self.rng.chance(0.85);
        if total {
            for (i, g) in gkeys.iter().enumerate() {
                if used[i] {
                    continue;
                }
                let r = match key_pos[i] {
                    Some(pos) if self.rng.chance(0.5) => (pos + 1).to_string(),
                    _ => g.sql.clone(),
                };
                let d = self.dir();
                order.push(format!("{r}{d}"));
            }
        }
        let list = items
            .iter()
            .map(Item::render)
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT {list} FROM {from}{w} GROUP BY {}", group.join(", "));
        if !order.is_empty() {
            sql += &format!(" ORDER BY {}", order.join(", "));
        }
        if total && self.rng.chance(0.4) {
            sql += &self.limit();
        }
        let cmp = if total { Cmp::Ordered } else { Cmp::Unordered };
        self.stmt(sql, cmp, &items, "group")
    }

    fn select_distinct(&mut self) -> Stmt {
        let (from, p) = self.contacts_from();
        let cols = srcs("contacts", &p);
        let exprs = contact_exprs(&p);
        let mut items: Vec<Item> = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let mut it = if self.rng.chance(0.6) {
                let s = self.rng.pick(&cols).clone();
                Item::new(s.sql, s.ty)
            } else {
                self.rng.pick(&exprs).clone()
            };
            if !it.ty.canonical() && self.rng.chance(0.8) {
                continue;
            }
            self.maybe_alias(&mut it, 0.3);
            items.push(it);
        }
        if items.is_empty() {
            items.push(Item::new(format!("{p}city"), Ty::Text));
        }
        let key = format!("{p}user_id");
        let w = self.where_clause(&cols, Some(&key), Vec::new());
        let list = items
            .iter()
            .map(Item::render)
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT DISTINCT {list} FROM {from}{w}");
        let total = self.rng.chance(0.7);
        if total {
            let mut idx: Vec<usize> = (0..items.len()).collect();
            self.rng.shuffle(&mut idx);
            let mut keys = Vec::new();
            for i in idx {
                let r = self.item_ref(&items, i);
                let d = self.dir();
                keys.push(format!("{r}{d}"));
            }
            sql += &format!(" ORDER BY {}", keys.join(", "));
            if self.rng.chance(0.4) {
                sql += &self.limit();
            }
        }
        let cmp = if total { Cmp::Ordered } else { Cmp::Unordered };
        self.stmt(sql, cmp, &items, "distinct")
    }

    fn select_join(&mut self) -> Stmt {
        let forms: &[(&str, &str, bool)] = &[
            ("contacts c JOIN notes n ON n.user_id = c.user_id", "", true),
            (
                "contacts c JOIN notes n ON c.user_id = n.user_id AND n.contact_id = c.id",
                "",
                true,
            ),
            ("contacts c INNER JOIN notes n USING (user_id)", "", true),
            ("contacts c, notes n", "n.user_id = c.user_id", true),
            (
                "contacts c LEFT JOIN notes n ON n.user_id = c.user_id AND n.stars >= 3",
                "",
                true,
            ),
            (
                "notes n RIGHT JOIN contacts c ON c.user_id = n.user_id",
                "",
                true,
            ),
            (
                "contacts c FULL JOIN notes n ON n.user_id = c.user_id AND n.contact_id = c.id",
                "",
                true,
            ),
            (
                "notes n JOIN contacts c ON n.user_id = c.user_id AND n.created < c.born",
                "",
                true,
            ),
            ("contacts c JOIN notes n ON n.contact_id = c.id", "", false),
        ];
        let (from, link, on_key) = *self.rng.pick(forms);
        if !on_key {
            self.refusable = true;
        }
        let mut cols = srcs("contacts", "c.");
        cols.extend(srcs("notes", "n."));
        let extra = if link.is_empty() {
            Vec::new()
        } else {
            vec![link.to_string()]
        };
        let key = if self.rng.chance(0.5) {
            "c.user_id"
        } else {
            "n.user_id"
        };
        // A pin on the nullable side of an outer join keeps only joined rows: still one shard.
        let w = self.where_clause(&cols, Some(key), extra);
        if self.rng.chance(0.6) {
            let pool = [
                Item::new("c.id".into(), Ty::Big),
                Item::new("n.id".into(), Ty::Big),
                Item::new("c.name".into(), Ty::Text),
                Item::new("n.body".into(), Ty::Text),
                Item::new("n.stars".into(), Ty::Int),
                Item::new("c.age".into(), Ty::Int),
                Item::new("c.city".into(), Ty::Text),
                Item::new("n.created".into(), Ty::Date),
                Item::new("c.score".into(), Ty::Num),
                Item::new("n.user_id".into(), Ty::Big),
                Item::new("coalesce(n.stars, -1) + c.age".into(), Ty::Int),
            ];
            let mut items = Vec::new();
            for _ in 0..1 + self.rng.below(4) {
                let mut it = self.rng.pick(&pool).clone();
                self.maybe_alias(&mut it, 0.3);
                items.push(it);
            }
            let mut keys = Vec::new();
            for _ in 0..self.rng.below(3) {
                let k = if self.rng.chance(0.6) {
                    let i = self.rng.below(items.len());
                    self.item_ref(&items, i)
                } else {
                    self.rng.pick(&cols).sql.clone()
                };
                let d = self.dir();
                keys.push(format!("{k}{d}"));
            }
            let total = self.rng.chance(0.8);
            if total {
                keys.push("c.id".into());
                keys.push(format!("n.id{}", self.rng.pick(&["", " DESC"])));
            }
            let list = items
                .iter()
                .map(Item::render)
                .collect::<Vec<_>>()
                .join(", ");
            let mut sql = format!("SELECT {list} FROM {from}{w}");
            if !keys.is_empty() {
                sql += &format!(" ORDER BY {}", keys.join(", "));
            }
            if total && self.rng.chance(0.5) {
                sql += &self.limit();
            }
            let cmp = if total { Cmp::Ordered } else { Cmp::Unordered };
            self.stmt(sql, cmp, &items, "join")
        } else {
            let gk = self
                .rng
                .pick(&["c.city", "n.stars", "c.user_id", "n.body", "c.active"])
                .to_string();
            let aggs = [
                Item::new("count(*)".into(), Ty::Big),
                Item::new("count(n.id)".into(), Ty::Big),
                Item::new("sum(n.stars)".into(), Ty::Big),
                Item::new("avg(n.stars)".into(), Ty::Num),
                Item::new("max(n.body)".into(), Ty::Text),
                Item::new("min(c.name)".into(), Ty::Text),
                Item::new("max(n.created)".into(), Ty::Date),
                Item::new("avg(c.age)".into(), Ty::Num),
                Item::new("sum(c.score)".into(), Ty::Num),
            ];
            let mut items = vec![Item::new(gk.clone(), Ty::Text)];
            for _ in 0..1 + self.rng.below(3) {
                let mut it = self.rng.pick(&aggs).clone();
                self.maybe_alias(&mut it, 0.3);
                items.push(it);
            }
            let total = self.rng.chance(0.85);
            let mut sql = format!(
                "SELECT {} FROM {from}{w} GROUP BY {gk}",
                items
                    .iter()
                    .map(Item::render)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if total {
                let r = if self.rng.chance(0.5) {
                    "1".to_string()
                } else {
                    gk.clone()
                };
                if self.rng.chance(0.3) {
                    sql += &format!(" ORDER BY 2 DESC, {r}{}", self.dir());
                } else {
                    sql += &format!(" ORDER BY {r}{}", self.dir());
                }
                if self.rng.chance(0.3) {
                    sql += &self.limit();
                }
            }
            let cmp = if total { Cmp::Ordered } else { Cmp::Unordered };
            self.stmt(sql, cmp, &items, "join-group")
        }
    }

    fn select_shared(&mut self) -> Stmt {
        let mut cols = srcs("contacts", "c.");
        cols.extend(srcs("countries", "co."));
        match self.rng.below(4) {
            0 => {
                let w = self.where_clause(&srcs("countries", ""), None, Vec::new());
                let sql = format!("SELECT code, name, pop FROM countries{w} ORDER BY code");
                let items = vec![Item::new("code".into(), Ty::Text); 3];
                self.stmt(sql, Cmp::Ordered, &items, "shared")
            }
            1 => {
                let join = *self.rng.pick(&["JOIN", "LEFT JOIN"]);
                let w = self.where_clause(&cols, Some("c.user_id"), Vec::new());
                let sql = format!(
                    "SELECT co.name, count(*), sum(c.age), avg(co.pop) FROM contacts c {join} countries co ON co.code = c.country{w} GROUP BY co.name ORDER BY co.name{}",
                    self.dir()
                );
                let items = vec![Item::new("co.name".into(), Ty::Text); 4];
                self.stmt(sql, Cmp::Ordered, &items, "shared-join")
            }
            2 => {
                let mut all = cols.clone();
                all.extend(srcs("notes", "n."));
                let w = self.where_clause(&all, Some("c.user_id"), Vec::new());
                let mut sql = format!(
                    "SELECT c.id, n.id, co.name, n.stars FROM contacts c JOIN notes n ON n.user_id = c.user_id JOIN countries co ON co.code = c.country{w} ORDER BY co.name{}, c.id, n.id",
                    self.dir()
                );
                if self.rng.chance(0.5) {
                    sql += &self.limit();
                }
                let items = vec![Item::new("c.id".into(), Ty::Big); 4];
                self.stmt(sql, Cmp::Ordered, &items, "shared-join")
            }
            _ => {
                let join = *self.rng.pick(&["JOIN", "LEFT JOIN"]);
                let w = self.where_clause(&cols, Some("c.user_id"), Vec::new());
                let mut sql = format!(
                    "SELECT c.id, c.name, co.name AS country_name, co.pop FROM contacts c {join} countries co ON co.code = c.country{w} ORDER BY co.pop{}, c.id",
                    self.dir()
                );
                if self.rng.chance(0.5) {
                    sql += &self.limit();
                }
                let items = vec![Item::new("c.id".into(), Ty::Big); 4];
                self.stmt(sql, Cmp::Ordered, &items, "shared-join")
            }
        }
    }

    fn select_subquery(&mut self) -> Stmt {
        let cols = srcs("contacts", "c.");
        let s = self.rng.range(0, 5);
        let k = self.key_value();
        let a = self.rng.range(20, 70);
        // (condition, correlated on the key or over shared tables only)
        let forms: Vec<(String, bool)> = vec![
            (format!("EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND n.stars >= {s})"), true),
            ("NOT EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND n.contact_id = c.id)".into(), true),
            (format!("c.id IN (SELECT n.contact_id FROM notes n WHERE n.user_id = c.user_id AND n.stars > {s})"), true),
            (format!("c.id NOT IN (SELECT n.contact_id FROM notes n WHERE c.user_id = n.user_id AND n.stars > {s} AND n.contact_id IS NOT NULL)"), true),
            ("c.age > (SELECT avg(n.stars) * 10 FROM notes n WHERE n.user_id = c.user_id)".into(), true),
            (format!("(SELECT count(*) FROM notes n WHERE n.user_id = c.user_id) > {s}"), true),
            (format!("EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND n.user_id = {k})"), true),
            (format!("NOT EXISTS (SELECT 1 FROM notes n WHERE n.user_id = c.user_id AND n.user_id = {k})"), true),
            (format!("c.country IN (SELECT code FROM countries WHERE pop > {a})"), true),
            ("EXISTS (SELECT 1 FROM countries co WHERE co.code = c.country AND co.pop IS NOT NULL)".into(), true),
            (format!("c.age IN (SELECT n.stars * 10 FROM notes n WHERE n.stars > {s})"), false),
            (format!("EXISTS (SELECT 1 FROM notes n WHERE n.stars = {s} AND n.contact_id = c.id)"), false),
            (format!("c.user_id IN (SELECT n.user_id FROM notes n WHERE n.stars = {s})"), false),
            (format!("c.age > (SELECT avg(age) FROM contacts WHERE user_id = {k})"), false),
        ];
        let (cond, ok) = self.rng.pick(&forms).clone();
        if !ok {
            self.refusable = true;
        }
        let mut items = vec![
            Item::new("c.id".into(), Ty::Big),
            Item::new("c.name".into(), Ty::Text),
        ];
        if self.rng.chance(0.4) {
            let sub = *self.rng.pick(&[
                "(SELECT count(*) FROM notes n WHERE n.user_id = c.user_id)",
                "(SELECT max(n.stars) FROM notes n WHERE n.user_id = c.user_id AND n.contact_id = c.id)",
                "(SELECT co.name FROM countries co WHERE co.code = c.country)",
            ]);
            items.push(Item {
                sql: sub.into(),
                ty: Ty::Big,
                float_agg: false,
                alias: Some("sub".into()),
            });
        }
        let w = self.where_clause(&cols, Some("c.user_id"), vec![cond]);
        let list = items
            .iter()
            .map(Item::render)
            .collect::<Vec<_>>()
            .join(", ");
        let first = if items.len() > 2 && self.rng.chance(0.5) {
            format!("sub{}, ", self.dir())
        } else {
            String::new()
        };
        let mut sql = format!("SELECT {list} FROM contacts c{w} ORDER BY {first}c.id");
        if self.rng.chance(0.4) {
            sql += &self.limit();
        }
        self.stmt(sql, Cmp::Ordered, &items, "subquery")
    }

    fn select_sets(&mut self) -> Stmt {
        let k = self.key_value();
        let k2 = if self.rng.chance(0.5) {
            k
        } else {
            self.key_value()
        };
        let same = hash_shard(KeyType::Bigint, &KeyValue::Int(k), self.shards)
            == hash_shard(KeyType::Bigint, &KeyValue::Int(k2), self.shards);
        let items = vec![Item::new("id".into(), Ty::Big); 2];
        let (sql, single) = match self.rng.below(6) {
            0 => (
                format!("SELECT id, name FROM contacts WHERE user_id = {k} UNION ALL SELECT id, body FROM notes WHERE user_id = {k2} ORDER BY 1"),
                same,
            ),
            1 => (
                "SELECT city FROM contacts UNION SELECT body FROM notes ORDER BY 1".to_string(),
                false,
            ),
            2 => (
                format!("WITH x AS (SELECT * FROM contacts WHERE user_id = {k}) SELECT count(*), sum(age) FROM x"),
                true,
            ),
            3 => (
                format!("SELECT s.city, s.n FROM (SELECT city, count(*) AS n FROM contacts WHERE user_id = {k} GROUP BY city) s ORDER BY s.city"),
                true,
            ),
            4 => (
                "SELECT count(*) FROM (SELECT * FROM contacts) s".to_string(),
                false,
            ),
            _ => (
                format!("WITH x AS (SELECT user_id, age FROM contacts) SELECT count(*) FROM x WHERE user_id = {k}"),
                false,
            ),
        };
        self.pinned = single;
        self.stmt(sql, Cmp::Ordered, &items, "set/cte")
    }

    /// What pgproxy refuses across shards (but must run on one shard).
    fn select_refused(&mut self) -> Stmt {
        let pinned = self.rng.chance(0.5);
        let k = self.key_value();
        let w = if pinned {
            self.pinned = true;
            format!(" WHERE user_id = {k}")
        } else {
            String::new()
        };
        let items = vec![Item::new("x".into(), Ty::Text); 3];
        let sql = match self.rng.below(12) {
            0 => format!("SELECT city, count(*) FROM contacts{w} GROUP BY city HAVING count(*) > 1 ORDER BY city"),
            1 => format!("SELECT id, row_number() OVER (ORDER BY id) FROM contacts{w} ORDER BY id"),
            2 => format!("SELECT string_agg(name, ',' ORDER BY id) FROM contacts{w}"),
            3 => format!("SELECT count(DISTINCT city) FROM contacts{w}"),
            4 => format!("SELECT count(*) + 1 FROM contacts{w}"),
            5 => format!("SELECT DISTINCT ON (user_id) user_id, id FROM contacts{w} ORDER BY user_id, id"),
            6 => format!("SELECT id, name FROM contacts{w} ORDER BY name COLLATE \"C\", id"),
            7 => format!("SELECT sum(age) FILTER (WHERE age > 30) FROM contacts{w}"),
            8 => format!("SELECT city, count(*) FROM contacts{w} GROUP BY ROLLUP (city) ORDER BY city, GROUPING(city)"),
            9 => format!("SELECT bool_and(active), array_agg(id ORDER BY id) FROM contacts{w}"),
            10 => format!("SELECT id, age - lag(age) OVER (ORDER BY id) FROM contacts{w} ORDER BY id"),
            _ => format!("SELECT DISTINCT city, count(*) FROM contacts{w} GROUP BY city ORDER BY city"),
        };
        self.stmt(sql, Cmp::Ordered, &items, "refused-forms")
    }

    /// Statements PostgreSQL rejects: pgproxy must give the same SQLSTATE (or 0A000).
    fn select_error(&mut self) -> Stmt {
        let k = self.key_value();
        let w = if self.rng.chance(0.5) {
            self.pinned = true;
            format!(" WHERE user_id = {k}")
        } else {
            String::new()
        };
        let items = vec![Item::new("x".into(), Ty::Text)];
        let sql = match self.rng.below(11) {
            0 => format!("SELECT nosuchcol FROM contacts{w}"),
            1 => format!("SELECT name + 1 FROM contacts{w}"),
            2 => format!("SELECT max(active) FROM contacts{w}"),
            3 => format!("SELECT sum(name) FROM contacts{w}"),
            4 => "SELECT * FROM nosuchtable".to_string(),
            5 => "SELECT id FROM contacts WHERE user_id = 'abc'".to_string(),
            6 => format!("SELECT 1/0 FROM contacts{w}"),
            7 => format!("SELECT age, count(*) FROM contacts{w}"),
            8 => format!("SELECT id FROM contacts{w} ORDER BY 99"),
            9 => "SELECT count(*) FROM contacts c JOIN notes n ON n.user_id = c.user_id WHERE user_id = 5".to_string(),
            _ => format!("SELECT id FROM contacts{w} LIMIT -1"),
        };
        self.stmt(sql, Cmp::Ordered, &items, "error")
    }

    /// SET / RESET of settings the merge depends on (DateStyle, extra_float_digits), on the
    /// simple-protocol session of both sides; the following statements run with them.
    fn session_setting(&mut self) -> Stmt {
        self.mode = Mode::Simple;
        let sql = if self.rng.chance(0.5) {
            "RESET ALL"
        } else {
            *self.rng.pick(&[
                "SET DateStyle = 'German'",
                "SET DateStyle = 'SQL, DMY'",
                "SET DateStyle = 'Postgres, MDY'",
                "SET DateStyle = 'ISO, DMY'",
                "SET extra_float_digits = 0",
                "SET extra_float_digits = 3",
                "SET extra_float_digits = -2",
                "RESET DateStyle",
                "RESET extra_float_digits",
            ])
        };
        let mut st = self.stmt(sql.to_string(), Cmp::Ordered, &[], "session");
        st.mode = Mode::Simple;
        st
    }

    // ---- writes

    fn new_contact_id(&mut self, user: i64) -> i64 {
        let k = self.next_contact.entry(user).or_insert(100);
        *k += 1;
        user * 1000 + *k
    }

    fn write_stmt(
        &self,
        sql: String,
        tables: &[&'static str],
        returning: bool,
        family: &'static str,
    ) -> Stmt {
        let mut st = self.stmt(sql, Cmp::Unordered, &[], family);
        st.writes = tables.to_vec();
        st.returning = returning;
        st
    }

    fn insert(&mut self) -> Stmt {
        match self.rng.below(10) {
            0 => return self.insert_note(),
            1 => {
                let code = format!("x{}", self.rng.below(4));
                let sql = match self.rng.below(3) {
                    0 => format!("INSERT INTO countries (code, name, pop) VALUES ('{code}', 'X', {}) ON CONFLICT (code) DO NOTHING", self.rng.range(1, 9)),
                    1 => format!("UPDATE countries SET pop = pop + 1 WHERE code = '{}'", self.rng.pick(CODES)),
                    _ => format!("DELETE FROM countries WHERE code = '{code}'"),
                };
                return self.write_stmt(sql, &["countries"], false, "write-shared");
            }
            _ => {}
        }
        let nrows = if self.rng.chance(0.7) {
            1
        } else {
            2 + self.rng.below(3)
        };
        let mut names: Vec<&'static str> = vec!["id", "user_id"];
        for c in &CONTACTS[2..] {
            if self.rng.chance(0.5) {
                names.push(c.name);
            }
        }
        self.rng.shuffle(&mut names);
        let conflict = self.rng.below(10);
        let mut rows = Vec::new();
        let mut bad_key = false;
        for _ in 0..nrows {
            let user = if self.rng.chance(0.1) {
                USERS + 1 + self.rng.range(0, 4)
            } else {
                self.rng.range(1, USERS)
            };
            // An existing id (same user: ids embed their user) for the conflict cases.
            let id = if conflict < 3 {
                user * 1000 + self.rng.range(1, 8)
            } else {
                self.new_contact_id(user)
            };
            let full = random_contact(&mut self.rng, id, user);
            let mut vals = Vec::new();
            for n in &names {
                let i = CONTACTS.iter().position(|c| c.name == *n).expect("column");
                let src = Src {
                    sql: String::new(),
                    ty: CONTACTS[i].ty,
                    table: "contacts",
                    col: CONTACTS[i].name,
                };
                let v = if *n == "user_id" && self.rng.chance(0.04) {
                    bad_key = true;
                    match self.rng.below(4) {
                        0 => V::Num(format!("{user}.5")),
                        1 => V::Text("99999999999999999999".into()),
                        2 => V::Null,
                        _ => V::Text(format!("{user}x")),
                    }
                } else {
                    full[i].clone()
                };
                let l = if nrows == 1 || self.mode == Mode::Text {
                    self.lit(&src, &v)
                } else {
                    v.sql()
                };
                vals.push(l);
            }
            rows.push(format!("({})", vals.join(", ")));
        }
        let mut sql = format!(
            "INSERT INTO contacts ({}) VALUES {}",
            names.join(", "),
            rows.join(", ")
        );
        match conflict {
            0 => sql += " ON CONFLICT (id) DO NOTHING",
            1 => {
                sql +=
                    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, age = contacts.age + 1"
            }
            _ => {}
        }
        let returning = self.rng.chance(0.2);
        if returning {
            sql += " RETURNING id, user_id";
        }
        self.pinned = nrows == 1 && !bad_key;
        if nrows > 1 && !bad_key && !(returning && conflict == 0) {
            // Documented: split into one INSERT per shard, RETURNING rows in VALUES order
            // (refused only with RETURNING and ON CONFLICT DO NOTHING).
            self.pinned = true;
        }
        self.write_stmt(sql, &["contacts"], returning, "insert")
    }

    fn insert_note(&mut self) -> Stmt {
        let user = self.rng.range(1, USERS + 2);
        let k = self.next_note.entry(user).or_insert(600);
        *k += 1;
        let id = user * 1000 + *k;
        let contact = V::Int(user * 1000 + self.rng.range(1, 12));
        let row = random_note(&mut self.rng, id, user, contact);
        let mut vals = Vec::new();
        for (i, c) in NOTES.iter().enumerate() {
            let src = Src {
                sql: String::new(),
                ty: c.ty,
                table: "notes",
                col: c.name,
            };
            vals.push(self.lit(&src, &row[i]));
        }
        let cols: Vec<&str> = NOTES.iter().map(|c| c.name).collect();
        // Every column in table order: sometimes without the column list (pgproxy reads the
        // table's columns to find the key).
        let list = if self.rng.chance(0.3) {
            String::new()
        } else {
            format!(" ({})", cols.join(", "))
        };
        let sql = format!("INSERT INTO notes{list} VALUES ({})", vals.join(", "));
        self.pinned = true;
        self.write_stmt(sql, &["notes"], false, "insert")
    }

    fn update(&mut self) -> Stmt {
        if self.rng.chance(0.15) {
            let cols = srcs("notes", "");
            let w = self.where_clause(&cols, Some("user_id"), Vec::new());
            let set = *self.rng.pick(&[
                "stars = stars + 1",
                "body = upper(body)",
                "created = created + 1",
                "contact_id = NULL",
            ]);
            return self.write_stmt(
                format!("UPDATE notes SET {set}{w}"),
                &["notes"],
                false,
                "update",
            );
        }
        let (table, p) = match self.rng.below(3) {
            0 => ("contacts c", "c."),
            _ => ("contacts", ""),
        };
        let cols = srcs("contacts", p);
        let age = self.rng.range(10, 90);
        let name = quote(self.rng.pick::<&str>(NAMES));
        let sets = [
            format!("age = {p}age + 1"),
            format!("age = {age}"),
            "age = NULL".to_string(),
            format!("name = lower({p}name)"),
            format!("name = {name}"),
            format!("name = {p}name || 'x'"),
            format!("score = {p}score + 1.25"),
            format!("city = {}", quote(self.rng.pick::<&str>(CITIES))),
            format!("active = NOT {p}active"),
            format!("rating = {p}rating + 0.5"),
            format!("amount = {p}amount * 2"),
            format!("seen = {p}seen + interval '1 hour'"),
            format!("born = {p}born + 1"),
            format!("big = {p}big + 1"),
            format!("country = {}", quote(self.rng.pick::<&str>(CODES))),
        ];
        let mut chosen: Vec<String> = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let s = self.rng.pick(&sets).clone();
            let col = s.split(' ').next().unwrap_or("").to_string();
            if !chosen.iter().any(|c| c.starts_with(&format!("{col} "))) {
                chosen.push(s);
            }
        }
        match self.rng.below(40) {
            0 => chosen.push(format!("age = {p}age * 20")), // may break CHECK (age < 1000)
            1 => chosen = vec![format!("user_id = {}", self.rng.range(1, USERS))],
            _ => {}
        }
        let key = format!("{p}user_id");
        let pin = self
            .rng
            .chance(if self.mode == Mode::Binary { 0.7 } else { 0.55 });
        let mut conj = Vec::new();
        if pin {
            conj.push(self.pin(&key));
        }
        if self.rng.chance(0.8) {
            let d = self.rng.below(2);
            conj.push(self.pred(&cols, d));
        }
        let w = if conj.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conj.join(" AND "))
        };
        let returning = self.rng.chance(0.15);
        let mut sql = format!("UPDATE {table} SET {}{w}", chosen.join(", "));
        if returning {
            sql += &format!(" RETURNING {p}id, {p}age");
        }
        if chosen.iter().any(|c| c.starts_with("user_id")) {
            self.refusable = true;
        }
        self.write_stmt(sql, &["contacts"], returning, "update")
    }

    fn delete(&mut self) -> Stmt {
        if self.rng.chance(0.2) {
            let id = self.data.sample(&mut self.rng, "notes", "id");
            return self.write_stmt(
                format!("DELETE FROM notes WHERE id = {}", id.sql()),
                &["notes"],
                false,
                "delete",
            );
        }
        let cols = srcs("contacts", "");
        let id = self.data.sample(&mut self.rng, "contacts", "id");
        let idsrc = cols[0].clone();
        let v = self.value_for(&cols[3]);
        let mut sql = match self.rng.below(5) {
            0 | 1 => format!("DELETE FROM contacts WHERE id = {}", self.lit(&idsrc, &id)),
            2 => {
                let k = self.pin("user_id");
                let p = self.atom(&cols);
                format!("DELETE FROM contacts WHERE {k} AND {p}")
            }
            3 => {
                let l = self.lit(&cols[3], &v);
                let city = quote(self.rng.pick::<&str>(CITIES));
                format!("DELETE FROM contacts WHERE age = {l} AND city = {city}")
            }
            _ => {
                let k = self.pin("user_id");
                format!("DELETE FROM contacts WHERE {k} AND id = {}", id.sql())
            }
        };
        let returning = self.rng.chance(0.2);
        if returning {
            sql += " RETURNING id, name";
        }
        self.write_stmt(sql, &["contacts"], returning, "delete")
    }
}

// ---------------------------------------------------------------------------------------------
// Running a statement and what it gave

type Row = Vec<Option<String>>;

#[derive(Clone, Debug)]
enum Out {
    Rows {
        /// Column names (and, where the protocol tells, type oid / length / modifier).
        cols: Vec<String>,
        rows: Vec<Row>,
        /// Command tag(s) or row count.
        tag: Option<String>,
        /// Raw protocol: the message types answered (rows left out).
        seq: String,
    },
    Err {
        code: String,
        msg: String,
    },
    Hang,
    Broken(String),
}

fn show_rows(rows: &[Row], max: usize) -> String {
    let mut s = String::new();
    for r in rows.iter().take(max) {
        let cells: Vec<String> = r
            .iter()
            .map(|c| {
                c.as_deref()
                    .map_or("NULL".to_string(), |v| format!("{v:?}"))
            })
            .collect();
        let _ = write!(s, "\n        ({})", cells.join(", "));
    }
    if rows.len() > max {
        let _ = write!(s, "\n        … {} more", rows.len() - max);
    }
    s
}

impl Out {
    fn show(&self) -> String {
        match self {
            Out::Rows {
                cols,
                rows,
                tag,
                seq,
            } => format!(
                "{} rows, tag {:?}, columns {:?}{}{}",
                rows.len(),
                tag,
                cols,
                if seq.is_empty() {
                    String::new()
                } else {
                    format!(", messages {seq:?}")
                },
                show_rows(rows, 8)
            ),
            Out::Err { code, msg } => format!("ERROR {code}: {msg}"),
            Out::Hang => format!("no answer within {STATEMENT_LIMIT:?} (hang)"),
            Out::Broken(e) => format!("connection broken: {e}"),
        }
    }
    /// An error, a refusal, a hang or a broken connection.
    fn failed(&self) -> bool {
        !matches!(self, Out::Rows { .. })
    }

    fn refused(&self) -> bool {
        matches!(self, Out::Err { code, .. } if code == "0A000")
    }
}

fn err_out(e: &tokio_postgres::Error) -> Out {
    match e.as_db_error() {
        Some(db) => Out::Err {
            code: db.code().code().to_string(),
            msg: db.message().to_string(),
        },
        None => Out::Broken(e.to_string()),
    }
}

async fn run_simple(c: &Client, sql: &str) -> Out {
    match tokio::time::timeout(STATEMENT_LIMIT, c.simple_query(sql)).await {
        Err(_) => Out::Hang,
        Ok(Err(e)) => err_out(&e),
        Ok(Ok(msgs)) => {
            let (mut cols, mut rows, mut tag) = (Vec::new(), Vec::new(), None);
            for m in msgs {
                match m {
                    SimpleQueryMessage::RowDescription(c) => {
                        cols = c.iter().map(|c| c.name().to_string()).collect()
                    }
                    SimpleQueryMessage::Row(r) => {
                        rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    SimpleQueryMessage::CommandComplete(n) => tag = Some(n.to_string()),
                    _ => {}
                }
            }
            Out::Rows {
                cols,
                rows,
                tag,
                seq: String::new(),
            }
        }
    }
}

async fn run_binary(c: &Client, st: &Stmt) -> Out {
    let boxed: Vec<Box<dyn ToSql + Sync + Send>> = st.params.iter().map(Pv::boxed).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = boxed
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let fut = async {
        let prepared = c.prepare(&st.sql).await?;
        let cols: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| format!("{}:{}", c.name(), c.type_().oid()))
            .collect();
        if !st.writes.is_empty() && !st.returning {
            let n = c.execute(&prepared, &refs).await?;
            return Ok::<Out, tokio_postgres::Error>(Out::Rows {
                cols,
                rows: Vec::new(),
                tag: Some(n.to_string()),
                seq: String::new(),
            });
        }
        let rows = c.query(&prepared, &refs).await?;
        let mut out = Vec::new();
        for r in &rows {
            let mut row = Vec::new();
            for (i, col) in r.columns().iter().enumerate() {
                let v: Raw = r.try_get(i)?;
                row.push(v.0.map(|b| binary_text(col.type_(), &b)));
            }
            out.push(row);
        }
        Ok(Out::Rows {
            cols,
            rows: out,
            tag: Some(rows.len().to_string()),
            seq: String::new(),
        })
    };
    match tokio::time::timeout(STATEMENT_LIMIT, fut).await {
        Err(_) => Out::Hang,
        Ok(Err(e)) => err_out(&e),
        Ok(Ok(o)) => o,
    }
}

/// Reads through ReadyForQuery; None if the connection closed.
async fn raw_until_ready(conn: &mut RawConn) -> Option<Vec<wire::Msg>> {
    let mut msgs = Vec::new();
    loop {
        let m = conn.recv().await?;
        if m.tag == b'Z' {
            return Some(msgs);
        }
        msgs.push(m);
    }
}

fn row_description(body: &[u8]) -> Vec<String> {
    let mut b = body;
    let take = |b: &mut &[u8], n: usize| -> Vec<u8> {
        let (h, t) = b.split_at(n.min(b.len()));
        *b = t;
        h.to_vec()
    };
    let n = u16::from_be_bytes(take(&mut b, 2).try_into().unwrap_or([0, 0]));
    let mut out = Vec::new();
    for _ in 0..n {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        let name = String::from_utf8_lossy(&take(&mut b, end)).into_owned();
        take(&mut b, 1);
        take(&mut b, 6); // table oid, column number
        let oid = u32::from_be_bytes(take(&mut b, 4).try_into().unwrap_or([0; 4]));
        let len = i16::from_be_bytes(take(&mut b, 2).try_into().unwrap_or([0; 2]));
        let typmod = i32::from_be_bytes(take(&mut b, 4).try_into().unwrap_or([0; 4]));
        take(&mut b, 2);
        out.push(format!("{name}:{oid}:{len}:{typmod}"));
    }
    out
}

fn raw_out(msgs: &[wire::Msg]) -> Out {
    if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
        let f = wire::error_fields(&e.body);
        return Out::Err {
            code: f.get(&b'C').cloned().unwrap_or_default(),
            msg: f.get(&b'M').cloned().unwrap_or_default(),
        };
    }
    let mut cols = Vec::new();
    let mut rows = Vec::new();
    let mut tags = Vec::new();
    let mut seq = String::new();
    for m in msgs {
        match m.tag {
            b'D' => rows.push(wire::data_row(&m.body)),
            b'N' | b'S' => {}
            t => {
                seq.push(t as char);
                if t == b'T' {
                    cols = row_description(&m.body);
                }
                if t == b'C' {
                    let end = m.body.iter().position(|&c| c == 0).unwrap_or(m.body.len());
                    tags.push(String::from_utf8_lossy(&m.body[..end]).into_owned());
                }
            }
        }
    }
    Out::Rows {
        cols,
        rows,
        tag: Some(tags.join("; ")),
        seq,
    }
}

async fn run_raw(conn: &mut RawConn, st: &Stmt, name: &str) -> Out {
    let params: Vec<Option<String>> = st
        .params
        .iter()
        .map(|p| match p {
            Pv::Text(t) => t.clone(),
            other => Some(other.show()),
        })
        .collect();
    let prefs: Vec<Option<&str>> = params.iter().map(|p| p.as_deref()).collect();
    let mut requests = Vec::new();
    if st.named {
        let mut m = wire::parse(name, &st.sql);
        m.extend(wire::describe(b'S', name));
        m.extend(wire::sync());
        requests.push(m);
        let mut m = wire::bind("", name, &prefs);
        m.extend(wire::describe(b'P', ""));
        m.extend(wire::execute("", 0));
        m.extend(wire::sync());
        requests.push(m);
        let mut body = vec![b'S'];
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        let mut m = wire::message(b'C', &body);
        m.extend(wire::sync());
        requests.push(m);
    } else {
        let mut m = wire::parse("", &st.sql);
        m.extend(wire::bind("", "", &prefs));
        m.extend(wire::describe(b'P', ""));
        m.extend(wire::execute("", 0));
        m.extend(wire::sync());
        requests.push(m);
    }
    let fut = async {
        let mut all = Vec::new();
        for r in &requests {
            if let Err(e) = conn.send(r).await {
                return Out::Broken(e.to_string());
            }
            match raw_until_ready(conn).await {
                Some(m) => all.extend(m),
                None => return Out::Broken("connection closed".into()),
            }
        }
        raw_out(&all)
    };
    tokio::time::timeout(RAW_LIMIT, fut)
        .await
        .unwrap_or(Out::Hang)
}

// ---------------------------------------------------------------------------------------------
// Comparing

fn float_eq(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (a.parse::<f64>(), b.parse::<f64>()) {
            // The same value printed differently is a difference.
            (Ok(x), Ok(y)) if x == y || (x.is_nan() && y.is_nan()) => false,
            (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            _ => false,
        },
        _ => false,
    }
}

fn row_eq(float_cols: &[usize], a: &Row, b: &Row) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).enumerate().all(|(i, (x, y))| {
            if float_cols.contains(&i) {
                float_eq(x, y)
            } else {
                x == y
            }
        })
}

/// Rows only on one side (exact text, as multisets).
fn multiset_diff(a: &[Row], b: &[Row]) -> (Vec<Row>, Vec<Row>) {
    let mut count: BTreeMap<&Row, i64> = BTreeMap::new();
    for r in a {
        *count.entry(r).or_default() += 1;
    }
    for r in b {
        *count.entry(r).or_default() -= 1;
    }
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for (r, n) in count {
        for _ in 0..n.max(0) {
            only_a.push(r.clone());
        }
        for _ in 0..(-n).max(0) {
            only_b.push(r.clone());
        }
    }
    (only_a, only_b)
}

fn compare_rows(cmp: Cmp, float_cols: &[usize], a: &[Row], b: &[Row]) -> Result<(), String> {
    let sort = |rows: &[Row]| -> Vec<Row> {
        let mut v = rows.to_vec();
        v.sort_by(|x, y| {
            let blank = |r: &Row| -> Row {
                r.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if float_cols.contains(&i) {
                            None
                        } else {
                            c.clone()
                        }
                    })
                    .collect()
            };
            blank(x).cmp(&blank(y)).then_with(|| x.cmp(y))
        });
        v
    };
    let (a2, b2) = match cmp {
        Cmp::Ordered => (a.to_vec(), b.to_vec()),
        Cmp::Unordered => (sort(a), sort(b)),
    };
    let same_len = a2.len() == b2.len();
    let first_diff = a2
        .iter()
        .zip(&b2)
        .position(|(x, y)| !row_eq(float_cols, x, y));
    if same_len && first_diff.is_none() {
        return Ok(());
    }
    let mut why = if same_len {
        String::new()
    } else {
        format!(
            "{} rows from pgproxy, {} from PostgreSQL; ",
            a.len(),
            b.len()
        )
    };
    if let Some(i) = first_diff {
        let _ = write!(
            why,
            "first difference at row {i}{}: pgproxy {:?} / PostgreSQL {:?}",
            if cmp == Cmp::Unordered {
                " (both sorted)"
            } else {
                ""
            },
            a2[i],
            b2[i]
        );
    } else {
        why += "one side has extra rows at the end";
    }
    let (only_p, only_r) = multiset_diff(a, b);
    if only_p.is_empty() && only_r.is_empty() {
        why += "; same rows, different order";
    } else {
        let _ = write!(
            why,
            "\n      only from pgproxy ({}):{}\n      only from PostgreSQL ({}):{}",
            only_p.len(),
            show_rows(&only_p, 6),
            only_r.len(),
            show_rows(&only_r, 6)
        );
    }
    Err(why)
}

enum Verdict {
    Same,
    SameError,
    Refused(String),
    Bad(String),
}

fn judge(st: &Stmt, p: &Out, r: &Out) -> Verdict {
    match (p, r) {
        (Out::Err { code, msg }, _) if code == "0A000" => Verdict::Refused(msg.clone()),
        (Out::Hang, _) => Verdict::Bad("pgproxy did not answer (hang)".into()),
        (Out::Broken(e), _) => Verdict::Bad(format!("pgproxy's connection broke: {e}")),
        (_, Out::Hang) | (_, Out::Broken(_)) => {
            Verdict::Bad("PostgreSQL itself did not answer (generator problem?)".into())
        }
        (Out::Err { code: a, .. }, Out::Err { code: b, .. }) => {
            if a == b {
                Verdict::SameError
            } else {
                Verdict::Bad(format!("different errors: pgproxy {a}, PostgreSQL {b}"))
            }
        }
        (Out::Err { code, .. }, Out::Rows { .. }) => {
            Verdict::Bad(format!("pgproxy failed ({code}) where PostgreSQL answered"))
        }
        (Out::Rows { .. }, Out::Err { code, .. }) => {
            Verdict::Bad(format!("pgproxy answered where PostgreSQL failed ({code})"))
        }
        (
            Out::Rows {
                cols: pc,
                rows: pr,
                tag: pt,
                seq: ps,
            },
            Out::Rows {
                cols: rc,
                rows: rr,
                tag: rt,
                seq: rs,
            },
        ) => {
            if let Err(why) = compare_rows(st.cmp, &st.float_cols, pr, rr) {
                return Verdict::Bad(format!("different rows: {why}"));
            }
            if pc != rc {
                return Verdict::Bad(format!(
                    "different columns: pgproxy {pc:?}, PostgreSQL {rc:?}"
                ));
            }
            if pt != rt {
                return Verdict::Bad(format!(
                    "different command tags / counts: pgproxy {pt:?}, PostgreSQL {rt:?}"
                ));
            }
            if ps != rs {
                return Verdict::Bad(format!(
                    "different protocol answers: pgproxy {ps:?}, PostgreSQL {rs:?}"
                ));
            }
            Verdict::Same
        }
    }
}

/// A refusal's reason with the specifics (numbers, quoted names) left out, to count by kind.
fn refusal_kind(msg: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in msg.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if quoted {
                    out.push('…');
                }
            }
            _ if quoted => {}
            '0'..='9' => {
                if !out.ends_with('N') {
                    out.push('N');
                }
            }
            _ => out.push(c),
        }
    }
    let cut = out
        .find(": add the")
        .or_else(|| out.find("; add a"))
        .unwrap_or(out.len());
    out.truncate(cut.min(110));
    out
}

// ---------------------------------------------------------------------------------------------
// The harness

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Proxy,
    Reference,
}

struct Harness {
    proxy_port: u16,
    ref_port: u16,
    proxy: Client,
    reference: Client,
    praw: RawConn,
    rraw: RawConn,
    /// Connections with default settings (the statements' sessions may have SET DateStyle /
    /// extra_float_digits) for comparing and reloading whole tables: through pgproxy and to
    /// PostgreSQL.
    pcheck: Client,
    rcheck: Client,
    /// Direct connections to each shard's node.
    shard_nodes: Vec<Client>,
    /// Every other node of each shard (`PGPROXY_RANDOM_NODES` > 1): must hold what the first holds.
    replicas: Vec<Vec<Client>>,
    shards: u64,
    bad: Vec<String>,
    unexpected_refusals: Vec<String>,
    refusals: BTreeMap<String, usize>,
    outcomes: BTreeMap<String, usize>,
    statement_no: usize,
    /// pgproxy stopped accepting connections: the run ends.
    dead: bool,
}

impl Harness {
    /// A new connection after a hang or a broken connection; false (and reported) when pgproxy
    /// no longer accepts connections.
    async fn reconnect(&mut self, side: Side, mode: Mode) -> bool {
        if side == Side::Proxy {
            match connect(self.proxy_port, "app", "secret", "app").await {
                Ok(c) => self.proxy = c,
                Err(e) => {
                    self.bad.push(format!(
                        "after #{}: pgproxy no longer accepts connections: {}",
                        self.statement_no,
                        describe(&e)
                    ));
                    self.dead = true;
                    return false;
                }
            }
        }
        match (side, mode) {
            (Side::Proxy, Mode::Text) => {
                self.praw = RawConn::login_password(self.proxy_port, "app", "secret", "app").await
            }
            (Side::Reference, Mode::Text) => {
                self.rraw = RawConn::login_trust(self.ref_port, "postgres", "app").await
            }
            (Side::Proxy, _) => {}
            (Side::Reference, _) => {
                self.reference = connect(self.ref_port, "postgres", "", "app")
                    .await
                    .expect("reconnect to the reference")
            }
        }
        true
    }

    async fn exec(&mut self, side: Side, st: &Stmt) -> Out {
        let name = format!("rnd_{}", self.statement_no);
        let out = match (st.mode, side) {
            (Mode::Simple, Side::Proxy) => run_simple(&self.proxy, &st.sql).await,
            (Mode::Simple, Side::Reference) => run_simple(&self.reference, &st.sql).await,
            (Mode::Binary, Side::Proxy) => run_binary(&self.proxy, st).await,
            (Mode::Binary, Side::Reference) => run_binary(&self.reference, st).await,
            (Mode::Text, Side::Proxy) => run_raw(&mut self.praw, st, &name).await,
            (Mode::Text, Side::Reference) => run_raw(&mut self.rraw, st, &name).await,
        };
        if matches!(out, Out::Hang | Out::Broken(_)) {
            self.reconnect(side, st.mode).await;
        }
        out
    }

    fn count(&mut self, what: String) {
        *self.outcomes.entry(what).or_default() += 1;
    }

    /// Runs `st` on both sides, judges it, and (outside a transaction) compares the tables it
    /// wrote. Returns whether it ran without an error or refusal on both sides.
    async fn run(&mut self, st: &Stmt) -> bool {
        self.run_in(st, false).await
    }

    /// `run`; `in_txn`: inside a transaction block (`run_txn`), where tables are compared
    /// after the block and a refusal of a single-shard statement may be one of the
    /// transaction rules pgproxy documents (their messages say "transaction").
    async fn run_in(&mut self, st: &Stmt, in_txn: bool) -> bool {
        self.statement_no += 1;
        let n = self.statement_no;
        let p = self.exec(Side::Proxy, st).await;
        if std::env::var_os("PGPROXY_RANDOM_ECHO").is_some() {
            eprintln!(
                "#{n}{} {} => {}",
                if in_txn { " (txn)" } else { "" },
                st.show(),
                p.show()
            );
        }
        // A write pgproxy refuses is not run on PostgreSQL either.
        let r = if !st.writes.is_empty() && p.refused() {
            Out::Broken("not run: pgproxy refused the write".into())
        } else {
            self.exec(Side::Reference, st).await
        };
        let verdict = judge(st, &p, &r);
        let label = match &verdict {
            Verdict::Same => "same result",
            Verdict::SameError => "same error",
            Verdict::Refused(_) => "refused (0A000)",
            Verdict::Bad(_) => "MISMATCH",
        };
        self.count(label.to_string());
        self.count(format!("{label} / {:?}", st.mode));
        self.count(format!("{label} / {}", st.family));
        match verdict {
            Verdict::Refused(msg) => {
                if in_txn {
                    eprintln!("refused in a transaction: {msg}\n    SQL: {}", st.show());
                }
                *self
                    .refusals
                    .entry(format!("{:?}: {}", st.mode, refusal_kind(&msg)))
                    .or_default() += 1;
                // Inside a transaction, its rules (which all say "transaction") may refuse it.
                if st.must_run && !(in_txn && msg.contains("transaction")) {
                    let line = format!(
                        "#{n} {}: refused although it pins one shard\n    SQL: {}\n    pgproxy: {}\n    PostgreSQL: {}",
                        st.family,
                        st.show(),
                        p.show(),
                        r.show()
                    );
                    eprintln!("UNEXPECTED REFUSAL {line}");
                    self.unexpected_refusals.push(line);
                }
            }
            Verdict::Bad(why) => {
                let line = format!(
                    "#{n} {}: {why}\n    SQL: {}\n    pgproxy: {}\n    PostgreSQL: {}",
                    st.family,
                    st.show(),
                    p.show(),
                    r.show()
                );
                eprintln!("MISMATCH {line}");
                self.bad.push(line);
            }
            _ => {}
        }
        if !st.writes.is_empty() && !in_txn {
            for t in st.writes.clone() {
                self.compare_table(t, st).await;
            }
        }
        !p.failed() && !r.failed()
    }

    /// A transaction block of `count` statements on the tokio-postgres connections (simple
    /// and binary modes), ended by COMMIT (or ROLLBACK): reads inside it must see its own
    /// writes on every shard, as on one PostgreSQL. An error or a refusal ends the block with
    /// ROLLBACK on both sides. The written tables are compared after the block. Returns the
    /// number of writes.
    async fn run_txn(&mut self, gen: &mut Gen, count: usize, commit: bool) -> usize {
        let begin = Stmt {
            sql: "BEGIN".into(),
            ..gen.stmt(String::new(), Cmp::Ordered, &[], "transaction")
        };
        let mut written: Vec<&'static str> = Vec::new();
        let mut ok = self
            .run_in(
                &Stmt {
                    mode: Mode::Simple,
                    ..begin
                },
                true,
            )
            .await;
        let mut writes = 0;
        for _ in 0..count {
            if !ok || self.dead {
                break;
            }
            let st = loop {
                let st = gen.statement();
                if st.mode != Mode::Text {
                    break st;
                }
            };
            if !st.writes.is_empty() {
                writes += 1;
                written.extend(st.writes.iter().copied());
            }
            ok = self.run_in(&st, true).await;
        }
        let end = if ok && commit { "COMMIT" } else { "ROLLBACK" };
        let end = Stmt {
            sql: end.into(),
            mode: Mode::Simple,
            ..gen.stmt(String::new(), Cmp::Ordered, &[], "transaction")
        };
        self.run_in(&end, true).await;
        written.sort();
        written.dedup();
        for t in written {
            self.compare_table(t, &end).await;
        }
        writes
    }

    /// The whole table through pgproxy and on PostgreSQL; on a difference, reported and the
    /// shards reloaded from PostgreSQL's copy.
    async fn compare_table(&mut self, table: &'static str, after: &Stmt) {
        let sql = format!("SELECT * FROM {table} ORDER BY {}", pk(table));
        let p = run_simple(&self.pcheck, &sql).await;
        let r = run_simple(&self.rcheck, &sql).await;
        let why = match (&p, &r) {
            (Out::Rows { rows: pr, .. }, Out::Rows { rows: rr, .. }) => {
                compare_rows(Cmp::Ordered, &[], pr, rr).err()
            }
            _ => Some(format!("pgproxy: {} / PostgreSQL: {}", p.show(), r.show())),
        };
        if let Some(why) = why {
            let line = format!(
                "#{} {}: table {table} differs after the write: {why}\n    SQL: {}",
                self.statement_no,
                after.family,
                after.show()
            );
            eprintln!("MISMATCH {line}");
            self.bad.push(line);
            self.resync(table).await;
        }
    }

    /// Reloads a table on every shard from PostgreSQL's copy.
    async fn resync(&mut self, table: &str) {
        if matches!(
            run_simple(&self.pcheck, "SELECT 1").await,
            Out::Hang | Out::Broken(_)
        ) {
            match connect(self.proxy_port, "app", "secret", "app").await {
                Ok(c) => self.pcheck = c,
                Err(e) => {
                    self.bad.push(format!(
                        "after #{}: pgproxy no longer accepts connections: {}",
                        self.statement_no,
                        describe(&e)
                    ));
                    self.dead = true;
                    return;
                }
            }
        }
        let cols: Vec<&str> = table_cols(table).iter().map(|c| c.name).collect();
        let rows = simple_rows(
            &self.rcheck,
            &format!(
                "SELECT {} FROM {table} ORDER BY {}",
                cols.join(", "),
                pk(table)
            ),
        )
        .await;
        self.pcheck
            .simple_query(&format!("TRUNCATE {table}"))
            .await
            .unwrap_or_else(|e| panic!("TRUNCATE {table} through pgproxy: {}", describe(&e)));
        for r in rows {
            let vals: Vec<String> = r
                .iter()
                .map(|v| v.as_deref().map_or("NULL".to_string(), quote))
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                cols.join(", "),
                vals.join(", ")
            );
            self.pcheck
                .simple_query(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        }
    }

    /// Reads every shard directly: each sharded row on the shard that owns its key, their union
    /// equal to PostgreSQL's table, shared tables equal everywhere, no prepared transactions
    /// left behind.
    async fn check_shards(&mut self) {
        for table in ["contacts", "notes", "countries"] {
            let sql = format!("SELECT * FROM {table} ORDER BY {}", pk(table));
            let want = simple_rows(&self.rcheck, &sql).await;
            let mut union = Vec::new();
            for (s, node) in self.shard_nodes.iter().enumerate() {
                let rows = simple_rows(node, &sql).await;
                for (n, replica) in self.replicas[s].iter().enumerate() {
                    let theirs = simple_rows(replica, &sql).await;
                    if theirs != rows {
                        self.bad.push(format!(
                            "after #{}: node {} of shard {s} holds other {table} rows than node 0:{}\n    vs{}",
                            self.statement_no,
                            n + 1,
                            show_rows(&theirs, 10),
                            show_rows(&rows, 10)
                        ));
                    }
                }
                if table == "countries" {
                    if rows != want {
                        self.bad.push(format!(
                            "after #{}: shared table countries on shard {s} differs from PostgreSQL's:{}\n    vs{}",
                            self.statement_no,
                            show_rows(&rows, 10),
                            show_rows(&want, 10)
                        ));
                    }
                    continue;
                }
                for r in &rows {
                    let key: i64 = r[1]
                        .as_deref()
                        .and_then(|k| k.parse().ok())
                        .unwrap_or(i64::MIN);
                    let owner =
                        hash_shard(KeyType::Bigint, &KeyValue::Int(key), self.shards) as usize;
                    if owner != s {
                        self.bad.push(format!(
                            "after #{}: {table} row {r:?} is on shard {s}, its key belongs to shard {owner}",
                            self.statement_no
                        ));
                    }
                }
                union.extend(rows);
            }
            if table != "countries" {
                if let Err(why) = compare_rows(Cmp::Unordered, &[], &union, &want) {
                    self.bad.push(format!(
                        "after #{}: the shards' {table} rows (read directly) differ from PostgreSQL's: {why}",
                        self.statement_no
                    ));
                }
            }
        }
        for (s, node) in self.shard_nodes.iter().enumerate().chain(
            self.replicas
                .iter()
                .enumerate()
                .flat_map(|(s, r)| r.iter().map(move |n| (s, n))),
        ) {
            let n = scalar(node, "SELECT count(*) FROM pg_prepared_xacts").await;
            if n != "0" {
                self.bad.push(format!(
                    "after #{}: shard {s} has {n} prepared transactions left",
                    self.statement_no
                ));
            }
        }
    }
}

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

#[tokio::test]
async fn random_sql_through_pgproxy_matches_one_postgres() {
    random_sql(DEFAULT_SEED, DEFAULT_STATEMENTS, 3, 1).await;
}

/// The same through replicated shards (two nodes each): every write also reaches both nodes of
/// its shard alike (compared directly on the nodes), and load-balanced reads answer the same.
#[tokio::test]
async fn random_sql_through_replicated_shards_matches_one_postgres() {
    random_sql(0x2E91_1CA7_ED00, 600, 2, 2).await;
}

/// Runs `statements` random statements (seed `seed`) through `shards` shards of `nodes` nodes;
/// the `PGPROXY_RANDOM_*` variables override each.
async fn random_sql(seed: u64, statements: usize, shards: usize, nodes: usize) {
    let seed = env_num("PGPROXY_RANDOM_SEED").unwrap_or(seed);
    let total = env_num("PGPROXY_RANDOM_STATEMENTS").map_or(statements, |n| n as usize);
    let shards = env_num("PGPROXY_RANDOM_SHARDS").map_or(shards, |n| n as usize);
    let nodes = env_num("PGPROXY_RANDOM_NODES").map_or(nodes, |n| n as usize);
    eprintln!(
        "sharding_random: seed {seed:#x} (PGPROXY_RANDOM_SEED), {total} statements, {shards} shards of {nodes} nodes"
    );
    let started = Instant::now();
    let (c, reference) = tokio::join!(ShardedCluster::start(shards, nodes, ""), PgNode::start());
    let proxy = c.client().await;
    let direct = reference.superuser("app").await;
    proxy
        .batch_execute(SCHEMA)
        .await
        .expect("schema through pgproxy");
    direct
        .batch_execute(SCHEMA)
        .await
        .expect("schema on PostgreSQL");
    let mut rng = Rng(seed);
    let data = Data::generate(&mut rng);
    for sql in data.inserts() {
        proxy
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        direct
            .simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
    let mut shard_nodes = Vec::new();
    let mut replicas = Vec::new();
    for s in &c.shards {
        shard_nodes.push(s[0].superuser("app").await);
        let mut others = Vec::new();
        for node in &s[1..] {
            others.push(node.superuser("app").await);
        }
        replicas.push(others);
    }
    let mut h = Harness {
        proxy_port: c.proxy.port(),
        ref_port: reference.port(),
        proxy,
        reference: direct,
        praw: RawConn::login_password(c.proxy.port(), "app", "secret", "app").await,
        rraw: RawConn::login_trust(reference.port(), "postgres", "app").await,
        pcheck: c.client().await,
        rcheck: reference.superuser("app").await,
        shard_nodes,
        replicas,
        shards: shards as u64,
        bad: Vec::new(),
        unexpected_refusals: Vec::new(),
        refusals: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        statement_no: 0,
        dead: false,
    };
    h.check_shards().await;
    assert!(h.bad.is_empty(), "initial data differs: {:#?}", h.bad);
    let loaded = started.elapsed();
    let mut gen = Gen::new(seed, data, shards as u64);
    let mut writes = 0;
    // How often a transaction block starts (`PGPROXY_RANDOM_TXN_PCT`, percent).
    let txn_share = env_num("PGPROXY_RANDOM_TXN_PCT").map_or(0.04, |p| p as f64 / 100.0);
    for i in 0..total {
        if h.dead {
            break;
        }
        let before = writes;
        if gen.rng.chance(txn_share) {
            // A transaction block: a few statements, most often committed.
            let count = 2 + gen.rng.below(5);
            let commit = gen.rng.chance(0.75);
            writes += h.run_txn(&mut gen, count, commit).await;
        } else {
            let st = gen.statement();
            h.run(&st).await;
            if !st.writes.is_empty() {
                writes += 1;
            }
        }
        if writes / 40 > before / 40 {
            h.check_shards().await;
        }
        if (i + 1) % 250 == 0 {
            eprintln!(
                "  … {} statements, {} mismatches, {:?}",
                i + 1,
                h.bad.len(),
                started.elapsed()
            );
        }
    }
    if !h.dead {
        h.check_shards().await;
    }
    let mut report = format!(
        "sharding_random: seed {seed:#x}, {total} statements ({writes} writes) on {shards} shards in {:?} (setup {loaded:?})\n",
        started.elapsed()
    );
    report += "outcomes:\n";
    for (k, v) in &h.outcomes {
        let _ = writeln!(report, "  {v:5}  {k}");
    }
    report += "refusals (0A000) by kind:\n";
    let mut kinds: Vec<(&String, &usize)> = h.refusals.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (k, v) in kinds {
        let _ = writeln!(report, "  {v:5}  {k}");
    }
    eprintln!("{report}");
    let mut problems = h.bad.clone();
    problems.extend(h.unexpected_refusals.iter().cloned());
    assert!(
        problems.is_empty(),
        "seed {seed:#x}: {} mismatches and {} refusals of single-shard statements (rerun with PGPROXY_RANDOM_SEED={seed:#x}):\n\n{}",
        h.bad.len(),
        h.unexpected_refusals.len(),
        problems.join("\n\n")
    );
}
