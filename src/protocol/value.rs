//! PostgreSQL values in text format (what a DataRow carries for format code 0), as needed to merge
//! the results of one SELECT run on several shards: ordering for a streaming ORDER BY merge and
//! combining partial `sum()`/`count()`/`avg()` results, exactly as one PostgreSQL 15 server would.
//! Pure: no IO, no session state. Assumes the server settings pgproxy's backends run with:
//! `DateStyle = ISO`, `extra_float_digits >= 1` (the default) and a byte-order (C) collation for
//! text; any other text layout fails to parse (None / `Invalid`) rather than misorder.
//! <https://www.postgresql.org/docs/15/datatype.html>

mod binary;
mod datetime;
mod float;
mod numeric;
#[cfg(test)]
mod tests;

use datetime::{parse_date, parse_timestamp};
use float::{add_float, cmp_float, float_out, parse_float};
use numeric::{Decimal, Numeric};
use std::cmp::Ordering;

/// PostgreSQL type OIDs this module understands.
pub mod oid {
    /// `boolean`.
    pub const BOOL: u32 = 16;
    /// `bigint`.
    pub const INT8: u32 = 20;
    /// `smallint`.
    pub const INT2: u32 = 21;
    /// `integer`.
    pub const INT4: u32 = 23;
    /// `text`.
    pub const TEXT: u32 = 25;
    /// `oid`.
    pub const OID: u32 = 26;
    /// `real`.
    pub const FLOAT4: u32 = 700;
    /// `double precision`.
    pub const FLOAT8: u32 = 701;
    /// `character(n)`.
    pub const BPCHAR: u32 = 1042;
    /// `character varying(n)`.
    pub const VARCHAR: u32 = 1043;
    /// `name`.
    pub const NAME: u32 = 19;
    /// `date`.
    pub const DATE: u32 = 1082;
    /// `timestamp without time zone`.
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamp with time zone`.
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `numeric`.
    pub const NUMERIC: u32 = 1700;
    /// `uuid`.
    pub const UUID: u32 = 2950;
    /// `bytea`.
    pub const BYTEA: u32 = 17;
    /// `json`.
    pub const JSON: u32 = 114;
    /// `jsonb`.
    pub const JSONB: u32 = 3802;
}

pub use binary::{binary_encodable, to_binary};

/// What can go wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// The result does not fit the type (PostgreSQL's "bigint out of range" and friends).
    #[error("{0} out of range")]
    Overflow(&'static str),
    /// pgproxy cannot merge values of this type (or cannot do it exactly as PostgreSQL would).
    #[error("cannot merge values of type {0}")]
    Unsupported(u32),
    /// A value is not valid text for its type.
    #[error("invalid value for type {0}")]
    Invalid(u32),
}

impl ValueError {
    /// SQLSTATE: 22003 for Overflow, 0A000 for Unsupported, 22P02 for Invalid.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ValueError::Overflow(_) => "22003",
            ValueError::Unsupported(_) => super::sqlstate::FEATURE_NOT_SUPPORTED,
            ValueError::Invalid(_) => "22P02",
        }
    }
}

impl super::ClientError for ValueError {
    fn sqlstate(&self) -> &'static str {
        ValueError::sqlstate(self)
    }
}

/// How text columns compare: only byte order (C / POSIX / C.UTF-8 collations) is supported.
/// Returns true if values of this type can be ordered by `compare` (given text compares bytewise).
pub fn is_orderable(type_oid: u32) -> bool {
    use oid::*;
    matches!(
        type_oid,
        BOOL | INT2
            | INT4
            | INT8
            | OID
            | TEXT
            | VARCHAR
            | NAME
            | BPCHAR
            | FLOAT4
            | FLOAT8
            | NUMERIC
            | DATE
            | TIMESTAMP
            | TIMESTAMPTZ
            | UUID
    )
}

/// Compares two non-NULL text-format values of a type as PostgreSQL's default btree opclass does
/// (text types: bytewise, i.e. C collation; bpchar ignoring trailing spaces; numeric incl. NaN
/// (greater than everything) and +-Infinity; float4/8 incl. NaN > everything, -0 == 0, Infinity;
/// bool false<true; date/timestamp in ISO DateStyle incl. infinity/-infinity and BC years;
/// timestamptz: ISO output with a UTC offset like "2024-03-01 10:00:00.5+01" or "+05:30" –
/// compare the instants; uuid; oid unsigned).
/// None if the type is unsupported or a value does not parse.
pub fn compare(type_oid: u32, a: &[u8], b: &[u8]) -> Option<Ordering> {
    fn by<T, K: Ord>(a: T, b: T, key: impl Fn(T) -> Option<K>) -> Option<Ordering> {
        Some(key(a)?.cmp(&key(b)?))
    }
    match type_oid {
        oid::TEXT | oid::VARCHAR | oid::NAME => Some(a.cmp(b)),
        oid::BPCHAR => Some(trim_trailing_spaces(a).cmp(trim_trailing_spaces(b))),
        oid::BOOL => by(a, b, parse_bool),
        oid::INT2 => by(a, b, parse_int::<i16>),
        oid::INT4 => by(a, b, parse_int::<i32>),
        oid::INT8 => by(a, b, parse_int::<i64>),
        oid::OID => by(a, b, parse_oid),
        oid::FLOAT4 => Some(cmp_float(
            f64::from(parse_float::<f32>(a)?),
            f64::from(parse_float::<f32>(b)?),
        )),
        oid::FLOAT8 => Some(cmp_float(parse_float(a)?, parse_float(b)?)),
        oid::NUMERIC => Some(Numeric::parse(a)?.cmp(&Numeric::parse(b)?)),
        oid::DATE => by(a, b, parse_date),
        oid::TIMESTAMP => by(a, b, |t| parse_timestamp(t, false)),
        oid::TIMESTAMPTZ => by(a, b, |t| parse_timestamp(t, true)),
        oid::UUID => by(a, b, parse_uuid),
        _ => None,
    }
}

/// Adds two non-NULL partial results of sum()/count() of the same type (int2/int4/int8 exact,
/// overflow -> Err(Overflow) as PG's "bigint out of range" 22003; numeric exact with the larger
/// display scale, NaN/Infinity rules as PG 15; float4/float8 -> IEEE add and output formatted
/// exactly like PostgreSQL 15's float4out/float8out with extra_float_digits=1, i.e. shortest
/// round-trip, with PG's exponent format e.g. "1e+20", "1.5e-05", "Infinity", "NaN").
///
/// Float addition rounds at every step and adding shard totals groups the terms differently
/// from one server's scan, so the last digits can differ from a single-server sum(), as they can
/// between PostgreSQL's own serial and parallel plans. Finite inputs overflowing to infinity are
/// `Overflow("value")`, PostgreSQL's "value out of range: overflow".
pub fn add(type_oid: u32, a: &[u8], b: &[u8]) -> Result<Vec<u8>, ValueError> {
    let invalid = || ValueError::Invalid(type_oid);
    let text = match type_oid {
        oid::INT2 => add_int((a, b), type_oid, "smallint", i16::checked_add)?,
        oid::INT4 => add_int((a, b), type_oid, "integer", i32::checked_add)?,
        oid::INT8 => add_int((a, b), type_oid, "bigint", i64::checked_add)?,
        oid::NUMERIC => {
            let x = Numeric::parse(a).ok_or_else(invalid)?;
            let y = Numeric::parse(b).ok_or_else(invalid)?;
            x.add(&y)
                .map_err(|_| ValueError::Overflow("numeric"))?
                .to_text()
        }
        oid::FLOAT4 => add_float::<f32>(a, b, type_oid)?,
        oid::FLOAT8 => add_float::<f64>(a, b, type_oid)?,
        other => return Err(ValueError::Unsupported(other)),
    };
    Ok(text.into_bytes())
}

/// avg(): the final value PostgreSQL's avg() gives from a total sum and a total count, where
/// `sum_oid` is the type of the sum column (int8 for avg over int2/int4 (PG sums those as int8),
/// numeric for avg over int8/numeric, float8 for float4/float8) and `count` > 0. Result text
/// exactly as PostgreSQL 15 prints avg(): numeric division with PostgreSQL's select_div_scale
/// rules (e.g. avg of 1,2 = "1.5000000000000000", avg of 1,2,2 = "1.6666666666666667", avg of 10
/// = "10.0000000000000000"), or float8 division.
/// count == 0 -> Ok(None) (avg is NULL); a negative count is `Invalid(INT8)`.
///
/// A float4 sum is refused (`Unsupported`): PostgreSQL's avg(real) accumulates in float8, so a
/// sum(real) column has already lost the precision avg() keeps. For float8, PostgreSQL's avg()
/// also accumulates the sum of squared deviations and fails with "value out of range: overflow"
/// when that overflows (already for values near 1e154, e.g. avg of 1e308 and 0); a sum and a
/// count cannot show that, so here such an avg() gets the quotient instead of the error.
pub fn avg(sum_oid: u32, sum: &[u8], count: i64) -> Result<Option<Vec<u8>>, ValueError> {
    let invalid = || ValueError::Invalid(sum_oid);
    if !matches!(
        sum_oid,
        oid::INT2 | oid::INT4 | oid::INT8 | oid::NUMERIC | oid::FLOAT8
    ) {
        return Err(ValueError::Unsupported(sum_oid));
    }
    let count = match u64::try_from(count) {
        Ok(0) => return Ok(None),
        Ok(n) => n,
        Err(_) => return Err(ValueError::Invalid(oid::INT8)),
    };
    let total = match sum_oid {
        oid::FLOAT8 => {
            let s: f64 = parse_float(sum).ok_or_else(invalid)?;
            // float8_avg: Sx / N, N being the count as a float8. Sx starts at +0, so a sum of
            // negative zeros averages to 0, not -0.
            return Ok(Some(float_out((s + 0.0) / count as f64).into_bytes()));
        }
        oid::NUMERIC => Numeric::parse(sum).ok_or_else(invalid)?,
        // int8_avg / numeric_poly_avg: the integer sum converted to numeric.
        _ => Numeric::Finite(Decimal::from_int(
            parse_int::<i64>(sum).ok_or_else(invalid)?.into(),
        )),
    };
    Ok(Some(total.div_count(count).to_text().into_bytes()))
}

/// `isspace()` in the C locale, which PostgreSQL's input functions skip around a value.
fn is_pg_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// The value as trimmed UTF-8, or None.
fn trimmed(text: &[u8]) -> Option<&str> {
    Some(std::str::from_utf8(text).ok()?.trim_matches(is_pg_space))
}

/// bpchar compares without its trailing spaces (`bcTruelen`).
fn trim_trailing_spaces(mut text: &[u8]) -> &[u8] {
    while let [rest @ .., b' '] = text {
        text = rest;
    }
    text
}

/// `int2in` / `int4in` / `int8in`: optional sign, decimal digits, surrounding whitespace.
fn parse_int<T: std::str::FromStr>(text: &[u8]) -> Option<T> {
    trimmed(text)?.parse().ok()
}

/// Exact integer addition; `name` is the type in PostgreSQL's "... out of range" error.
fn add_int<T: std::str::FromStr + ToString>(
    (a, b): (&[u8], &[u8]),
    type_oid: u32,
    name: &'static str,
    checked_add: fn(T, T) -> Option<T>,
) -> Result<String, ValueError> {
    let x: T = parse_int(a).ok_or(ValueError::Invalid(type_oid))?;
    let y: T = parse_int(b).ok_or(ValueError::Invalid(type_oid))?;
    checked_add(x, y)
        .map(|v| v.to_string())
        .ok_or(ValueError::Overflow(name))
}

/// `oidin`: an unsigned 32-bit number; negative input within int4 range wraps as in PostgreSQL.
fn parse_oid(text: &[u8]) -> Option<u32> {
    let v: i64 = parse_int(text)?;
    u32::try_from(v)
        .ok()
        .or_else(|| i32::try_from(v).ok().map(|v| v as u32))
}

/// `boolin`: t/true/y/yes/on/1 and f/false/n/no/off/0, case-insensitive, prefixes allowed.
fn parse_bool(text: &[u8]) -> Option<bool> {
    let s = trimmed(text)?.to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| s.len() >= min && word.starts_with(s.as_str());
    match s.as_str() {
        "1" => Some(true),
        "0" => Some(false),
        _ if prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) => Some(true),
        _ if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) => Some(false),
        _ => None,
    }
}

/// `uuid_in`: 32 hex digits, optionally in braces, a hyphen allowed after each group of four.
fn parse_uuid(text: &[u8]) -> Option<u128> {
    let (mut s, braces) = match text {
        [b'{', rest @ ..] => (rest, true),
        _ => (text, false),
    };
    let mut v: u128 = 0;
    for i in 0..16 {
        let [hi, lo, rest @ ..] = s else { return None };
        let hex = |c: u8| char::from(c).to_digit(16).map(u128::from);
        v = v << 8 | hex(*hi)? << 4 | hex(*lo)?;
        s = rest;
        if let [b'-', rest @ ..] = s {
            if i % 2 == 1 && i < 15 {
                s = rest;
            }
        }
    }
    match (braces, s) {
        (false, []) | (true, [b'}']) => Some(v),
        _ => None,
    }
}
