//! The rewritten SQL as a template: text with slots, each slot a value from the main node
//! rendered as a typed literal. Markers (`Value::Placeholder` in the AST) become slots when the
//! statement text is split.

use super::Need;

/// How one replaced call renders once the main node's value (as text) is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// now(), CURRENT_TIMESTAMP[(p)], transaction_timestamp(), clock_timestamp(),
    /// statement_timestamp().
    Timestamptz(Option<u64>),
    /// CURRENT_DATE.
    Date,
    /// CURRENT_TIME[(p)].
    Timetz(Option<u64>),
    /// LOCALTIMESTAMP[(p)].
    Timestamp(Option<u64>),
    /// LOCALTIME[(p)].
    Time(Option<u64>),
    /// timeofday(): text in its own format.
    TimeOfDay,
    /// random().
    Float8,
    /// gen_random_uuid(), uuid_generate_v4().
    Uuid,
    /// nextval().
    Int8,
    /// nextval() for each row (`Need::NextvalRows`).
    Int8Array,
    /// gen_random_uuid() for each row (`Need::UuidRows`).
    UuidArray,
}

impl Form {
    /// The SQL literal for value `v`.
    pub(super) fn literal(self, v: &str) -> String {
        let q = quote(v);
        let typ = |t: &str, p: Option<u64>| match p {
            Some(p) => format!("{t}({p})"),
            None => t.to_string(),
        };
        match self {
            Form::Timestamptz(p) => format!("{q}::{}", typ("timestamptz", p)),
            Form::Date => format!("{q}::timestamptz::date"),
            Form::Timetz(p) => format!("{q}::timestamptz::{}", typ("timetz", p)),
            Form::Timestamp(p) => format!("{q}::timestamptz::{}", typ("timestamp", p)),
            Form::Time(p) => format!("{q}::timestamptz::{}", typ("time", p)),
            Form::TimeOfDay => {
                format!("pg_catalog.to_char({q}::timestamptz, 'Dy Mon DD HH24:MI:SS.US YYYY TZ')")
            }
            Form::Float8 => format!("{q}::float8"),
            Form::Uuid => format!("{q}::uuid"),
            Form::Int8 => format!("{q}::int8"),
            Form::Int8Array => format!("{q}::int8[]"),
            Form::UuidArray => format!("{q}::uuid[]"),
        }
    }
}

/// A standard-conforming string literal.
pub(super) fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// One replaced call: which need supplies its value and how it renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub need: usize,
    pub form: Form,
}

/// A piece of the rewritten SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    Slot(usize),
    /// Parameter `$n` of a template (see `template`): the original text of its number.
    Param(usize),
}

/// The marker text for slot `i` (the sentinel never occurs in the client's SQL).
pub(super) fn marker(sentinel: &str, i: usize) -> String {
    format!("{sentinel}{i}_")
}

/// A sentinel that does not occur in `sql`.
pub(super) fn sentinel_for(sql: &str) -> String {
    (0u32..)
        .map(|k| format!("__pgproxy_slot{k}_"))
        .find(|s| !sql.contains(s.as_str()))
        .expect("some sentinel is absent from any finite text")
}

/// Splits statement text at markers into pieces, appending to `out`.
pub(super) fn split_markers(text: &str, sentinel: &str, out: &mut Vec<Piece>) {
    let mut rest = text;
    while let Some(at) = rest.find(sentinel) {
        let after = &rest[at + sentinel.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let slot = after[..digits].parse::<usize>().ok();
        match (slot, after.as_bytes().get(digits)) {
            (Some(i), Some(b'_')) => {
                push_text(out, &rest[..at]);
                out.push(Piece::Slot(i));
                rest = &after[digits + 1..];
            }
            _ => {
                push_text(out, &rest[..at + sentinel.len()]);
                rest = after;
            }
        }
    }
    push_text(out, rest);
}

/// Appends text, merging with a preceding text piece.
pub(super) fn push_text(out: &mut Vec<Piece>, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Some(Piece::Text(t)) = out.last_mut() {
        t.push_str(s);
    } else {
        out.push(Piece::Text(s.to_string()));
    }
}

/// Renders pieces with `values[i]` for `needs[i]` and `params[n - 1]` for a template's `$n`.
/// A missing value renders as NULL (a caller bug, caught by a debug assertion).
pub(super) fn render(
    pieces: &[Piece],
    slots: &[Slot],
    values: &[String],
    params: &[&str],
) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Param(n) => match params.get(n.wrapping_sub(1)) {
                Some(v) => out.push_str(v),
                None => {
                    debug_assert!(false, "no value for parameter ${n}");
                    out.push_str("NULL");
                }
            },
            Piece::Slot(i) => match slots.get(*i).and_then(|s| Some((s, values.get(s.need)?))) {
                Some((slot, v)) => out.push_str(&slot.form.literal(v)),
                None => {
                    debug_assert!(false, "no value for slot {i}");
                    out.push_str("NULL");
                }
            },
        }
    }
    out
}

/// A plausible value for a need, to check that rewritten SQL parses.
pub(super) fn sample_value(need: &Need) -> &'static str {
    match need {
        Need::TxnTimestamp | Need::ClockTimestamp => "2000-01-01 00:00:00+00",
        Need::Random => "0.5",
        Need::Uuid => "00000000-0000-0000-0000-000000000000",
        Need::Nextval(_) | Need::SequenceState(_) => "1",
        Need::NextvalRows { .. } => "{1}",
        Need::UuidRows { .. } => "{00000000-0000-0000-0000-000000000000}",
    }
}
