//! Text sqlparser cannot parse: the OVERRIDING clause it does not know (removed before parsing
//! and put back when rendering), the target of an INSERT read from its tokens, and clock
//! functions replaced in the text itself. Per-row functions in such text are refused.

use std::ops::Range;

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::render::Form;
use super::rewrite::{is_nondeterministic, nd_defaults, refusal, Collector};
use super::statement::{OVERRIDING_SYSTEM, OVERRIDING_USER};
use super::{Need, Schema};
use crate::router::classify::lex::{is_blank, Lexed};
use crate::router::classify::{fallback_kind, ident_key, Kind};

fn is_word(t: Option<&Token>, w: &str) -> bool {
    matches!(t, Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
}

/// Removes `OVERRIDING {SYSTEM|USER} VALUE` (sqlparser 0.59 cannot parse it) and reports it.
pub(super) fn strip_overriding(
    tokens: &[TokenWithSpan],
) -> (Vec<TokenWithSpan>, Option<&'static str>) {
    let solid: Vec<usize> = (0..tokens.len())
        .filter(|&i| !is_blank(&tokens[i].token))
        .collect();
    let word = |i: usize, w: &str| is_word(Some(&tokens[i].token), w);
    for k in solid.windows(3) {
        let (a, b, c) = (k[0], k[1], k[2]);
        if word(a, "overriding") && word(c, "value") && (word(b, "system") || word(b, "user")) {
            let clause = if word(b, "system") {
                OVERRIDING_SYSTEM
            } else {
                OVERRIDING_USER
            };
            let kept = (0..tokens.len()).filter(|i| ![a, b, c].contains(i));
            return (kept.map(|i| tokens[i].clone()).collect(), Some(clause));
        }
    }
    (tokens.to_vec(), None)
}

/// The non-blank tokens of a statement range.
fn solid_tokens<'a>(
    lexed: &'a Lexed,
    r: Range<usize>,
) -> impl Iterator<Item = &'a TokenWithSpan> + Clone {
    lexed.tokens[r].iter().filter(|t| !is_blank(&t.token))
}

/// A dotted name (`t`, `public."T"`) as its `ident_key`, read from `solid`.
fn dotted_name<'a>(
    solid: &mut (impl Iterator<Item = &'a TokenWithSpan> + Clone),
) -> Option<String> {
    let mut parts = Vec::new();
    loop {
        match solid.next().map(|t| &t.token) {
            Some(Token::Word(w)) => parts.push(ident_key(&w.value, w.quote_style)),
            _ => return None,
        }
        if solid.clone().next().map(|t| &t.token) != Some(&Token::Period) {
            return Some(parts.join("."));
        }
        solid.next();
    }
}

/// `INSERT INTO <name>` read from tokens, for text sqlparser cannot parse.
pub(super) fn insert_target(lexed: &Lexed, r: Range<usize>) -> Option<String> {
    let mut solid = solid_tokens(lexed, r);
    let mut word = |w| is_word(solid.next().map(|t| &t.token), w);
    if !word("insert") || !word("into") {
        return None;
    }
    dotted_name(&mut solid)
}

/// `COPY <name> [(<columns>)]` read from tokens (also for text sqlparser cannot parse: options
/// it does not know, a WHERE clause).
pub(super) struct CopyTarget {
    /// The table's key (`object_key`).
    pub table: String,
    /// The columns listed, as named in the catalog, and the byte offset of the `)` closing
    /// the list; None without a list.
    pub columns: Option<(Vec<String>, usize)>,
}

pub(super) fn copy_target(lexed: &Lexed, r: Range<usize>) -> Option<CopyTarget> {
    let mut solid = solid_tokens(lexed, r);
    if !is_word(solid.next().map(|t| &t.token), "copy") {
        return None;
    }
    let table = dotted_name(&mut solid)?;
    if solid.clone().next().map(|t| &t.token) != Some(&Token::LParen) {
        return Some(CopyTarget {
            table,
            columns: None,
        });
    }
    solid.next();
    let mut names = Vec::new();
    for t in solid {
        match &t.token {
            Token::Word(w) if w.quote_style.is_some() => names.push(w.value.clone()),
            Token::Word(w) => names.push(w.value.to_lowercase()),
            Token::Comma => {}
            Token::RParen => {
                let end = lexed.offset(t.span.start)?;
                return Some(CopyTarget {
                    table,
                    columns: Some((names, end)),
                });
            }
            _ => return None,
        }
    }
    None
}

/// A statement sqlparser cannot parse. DDL and non-writes pass unchanged (DDL stores its
/// expressions, it does not evaluate them). A write gets its clock functions replaced in the
/// text; a per-row function, or an INSERT into a table whose defaults are not deterministic,
/// is refused. `Some(text)` is the rewritten statement with markers.
pub(super) fn unparsable(
    lexed: &Lexed,
    r: Range<usize>,
    schema: &dyn Schema,
    c: &mut Collector,
) -> Result<Option<String>, String> {
    let words = lexed.words(r.clone(), usize::MAX);
    let first = words.first().map(String::as_str).unwrap_or("");
    let ddl = [
        "create", "alter", "drop", "comment", "grant", "revoke", "do",
    ];
    if ddl.contains(&first) || fallback_kind(&words) != Kind::Write {
        return Ok(None);
    }
    if let Some(table) = insert_target(lexed, r.clone()) {
        if let Some(defaults) = schema.defaults(&table) {
            if let Some(d) = nd_defaults(&defaults.columns)?.first() {
                return Err(format!(
                    "pgproxy cannot parse this INSERT into {table}, whose column {} defaults to {}: every node would evaluate the default itself; give the column a value explicitly or simplify the statement",
                    d.name, d.text
                ));
            }
        }
    }
    if let Some(CopyTarget { table, columns }) = copy_target(lexed, r.clone()) {
        let nd = match schema.defaults(&table) {
            Some(defaults) => nd_defaults(&defaults.columns)?,
            None => Vec::new(),
        };
        let listed = |name: &str| {
            columns
                .as_ref()
                .is_none_or(|(c, _)| c.iter().any(|k| k == name))
        };
        if let Some(d) = nd.iter().find(|d| !listed(d.name)) {
            return Err(format!(
                "pgproxy cannot parse this COPY into {table} (an option or clause it does not know), which leaves out column {}, whose default {} every node would evaluate itself; list {} in the COPY's column list and send its values",
                d.name, d.text, d.name
            ));
        }
        return Ok(None);
    }
    rewrite_clock_tokens(lexed, r, c)
}

/// Replaces clock functions in the statement's text.
fn rewrite_clock_tokens(
    lexed: &Lexed,
    r: Range<usize>,
    c: &mut Collector,
) -> Result<Option<String>, String> {
    let toks = &lexed.tokens[r];
    let solid: Vec<&TokenWithSpan> = toks.iter().filter(|t| !is_blank(&t.token)).collect();
    let tok = |k: usize| solid.get(k).map(|t| &t.token);
    let word = |k: usize| match tok(k) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
        _ => None,
    };
    let internal =
        || "pgproxy could not locate a clock function in the statement's text".to_string();
    let (Some(head), Some(tail)) = (solid.first(), solid.last()) else {
        return Ok(None);
    };
    let mut last = lexed.offset(head.span.start).ok_or_else(internal)?;
    let end = lexed.offset(tail.span.end).ok_or_else(internal)?;
    let mut out = String::new();
    let mut k = 0;
    while k < solid.len() {
        let Some(w) = word(k) else {
            k += 1;
            continue;
        };
        let qualified = k >= 1 && tok(k - 1) == Some(&Token::Period);
        let pg_catalog = qualified && k >= 2 && word(k - 2).as_deref() == Some("pg_catalog");
        let empty_call = tok(k + 1) == Some(&Token::LParen) && tok(k + 2) == Some(&Token::RParen);
        let precision = match (tok(k + 1), tok(k + 2), tok(k + 3)) {
            (Some(Token::LParen), Some(Token::Number(n, _)), Some(Token::RParen)) => n.parse().ok(),
            _ => None,
        };
        let with_p = |f: fn(Option<u64>) -> Form| match precision {
            Some(p) => Some((Need::TxnTimestamp, f(Some(p)), k + 3)),
            None => Some((Need::TxnTimestamp, f(None), k)),
        };
        let call = match w.as_str() {
            _ if qualified && !pg_catalog => None,
            "now" | "transaction_timestamp" if empty_call => {
                Some((Need::TxnTimestamp, Form::Timestamptz(None), k + 2))
            }
            "clock_timestamp" | "statement_timestamp" if empty_call => {
                Some((Need::ClockTimestamp, Form::Timestamptz(None), k + 2))
            }
            "timeofday" if empty_call => Some((Need::ClockTimestamp, Form::TimeOfDay, k + 2)),
            "current_date" => Some((Need::TxnTimestamp, Form::Date, k)),
            "current_timestamp" => with_p(Form::Timestamptz),
            "current_time" => with_p(Form::Timetz),
            "localtimestamp" => with_p(Form::Timestamp),
            "localtime" => with_p(Form::Time),
            name if is_nondeterministic(name) && tok(k + 1) == Some(&Token::LParen) => {
                return Err(refusal(
                    name,
                    "a statement pgproxy cannot parse, so it cannot tell how often it runs",
                ));
            }
            _ => None,
        };
        let Some((need, form, to)) = call else {
            k += 1;
            continue;
        };
        let from = if pg_catalog { k - 2 } else { k };
        let at = lexed.offset(solid[from].span.start).ok_or_else(internal)?;
        out.push_str(lexed.sql.get(last..at).ok_or_else(internal)?);
        out.push_str(&c.marker(need, form));
        last = lexed.offset(solid[to].span.end).ok_or_else(internal)?;
        k = to + 1;
    }
    if out.is_empty() {
        return Ok(None);
    }
    out.push_str(lexed.sql.get(last..end).ok_or_else(internal)?);
    Ok(Some(out))
}
