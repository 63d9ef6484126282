//! Reading a COPY's options from tokens, for text sqlparser cannot parse (`HEADER MATCH`,
//! `HEADER on`, a `WHERE` clause, options of newer PostgreSQL versions).

use super::{option_byte, CopyFormat, Given};
use crate::router::classify::lex::{is_blank, Lexed};
use sqlparser::tokenizer::Token;
use std::ops::Range;

/// `None` when the text is not understood (the COPY is then refused if it needs values);
/// `Some(Err)` for a format pgproxy cannot add values to.
pub(super) fn read(lexed: &Lexed, r: Range<usize>) -> Option<Result<CopyFormat, String>> {
    let toks: Vec<&Token> = lexed.tokens[r]
        .iter()
        .map(|t| &t.token)
        .filter(|t| !is_blank(t) && **t != Token::SemiColon)
        .collect();
    // After the column list: FROM STDIN.
    let close = toks.iter().position(|t| **t == Token::RParen)?;
    let mut k = close + 1;
    if !word(toks.get(k), "from") || !word(toks.get(k + 1), "stdin") {
        return None;
    }
    k += 2;
    if word(toks.get(k), "with") {
        k += 1;
    }
    let mut g = Given::default();
    let result = if toks.get(k) == Some(&&Token::LParen) {
        list(&toks, k + 1, &mut g)
    } else {
        legacy(&toks, k, &mut g)
    };
    match result? {
        Err(e) => Some(Err(e)),
        Ok(end) if end == toks.len() || word(toks.get(end), "where") => Some(Ok(g.format())),
        Ok(_) => None,
    }
}

fn word(t: Option<&&Token>, w: &str) -> bool {
    matches!(t, Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
}

fn string(t: Option<&&Token>) -> Option<String> {
    match t? {
        Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s) => Some(s.clone()),
        _ => None,
    }
}

fn one_char(t: Option<&&Token>, what: &str) -> Option<Result<u8, String>> {
    let s = string(t)?;
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(option_byte(c, what)),
        _ => None,
    }
}

/// `( name [value], … )` from `k`: the index after `)`.
fn list(toks: &[&Token], mut k: usize, g: &mut Given) -> Option<Result<usize, String>> {
    loop {
        let Token::Word(name) = toks.get(k)? else {
            return None;
        };
        let name = name.value.to_ascii_lowercase();
        k += 1;
        // The value: every token up to the next `,` or `)` at this depth.
        let start = k;
        let mut depth = 0;
        while let Some(t) = toks.get(k) {
            match t {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ => {}
            }
            k += 1;
        }
        let value = &toks[start..k];
        let v = value.first();
        match name.as_str() {
            "format" => match v {
                Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("csv") => g.csv = true,
                Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("text") => g.csv = false,
                Some(Token::Word(w)) => return Some(Err(format!("{} data", w.value))),
                _ => match string(v)?.to_ascii_lowercase().as_str() {
                    "csv" => g.csv = true,
                    "text" => g.csv = false,
                    other => return Some(Err(format!("{other} data"))),
                },
            },
            "delimiter" => g.delimiter = Some(one_char(v, "delimiter")?.ok()?),
            "quote" => g.quote = Some(one_char(v, "quote")?.ok()?),
            "escape" => g.escape = Some(one_char(v, "escape")?.ok()?),
            "null" => g.null = Some(string(v)?.into_bytes()),
            "header" => {
                g.header = match v {
                    None => true,
                    Some(Token::Number(n, _)) => n != "0",
                    Some(Token::Word(w)) => !["false", "off"]
                        .iter()
                        .any(|f| w.value.eq_ignore_ascii_case(f)),
                    Some(_) => !matches!(
                        string(v)?.to_ascii_lowercase().as_str(),
                        "false" | "off" | "0"
                    ),
                }
            }
            "encoding" => return Some(Err("data in another ENCODING".into())),
            "freeze" | "force_quote" | "force_not_null" | "force_null" | "on_error"
            | "log_verbosity" | "reject_limit" => {}
            _ => return None,
        }
        match toks.get(k)? {
            Token::Comma => k += 1,
            Token::RParen => return Some(Ok(k + 1)),
            _ => return None,
        }
    }
}

/// The options of PostgreSQL before 9.0 from `k`: the index after them.
fn legacy(toks: &[&Token], mut k: usize, g: &mut Given) -> Option<Result<usize, String>> {
    let skip_as = |k: usize| if word(toks.get(k), "as") { k + 1 } else { k };
    while let Some(Token::Word(w)) = toks.get(k) {
        match w.value.to_ascii_lowercase().as_str() {
            "binary" => return Some(Err("binary data".into())),
            "csv" => {
                g.csv = true;
                k += 1;
            }
            "header" => {
                g.header = true;
                k += 1;
            }
            "delimiter" | "quote" | "escape" => {
                let what = w.value.to_ascii_lowercase();
                let at = skip_as(k + 1);
                let c = one_char(toks.get(at), &what)?.ok()?;
                match what.as_str() {
                    "delimiter" => g.delimiter = Some(c),
                    "quote" => g.quote = Some(c),
                    _ => g.escape = Some(c),
                }
                k = at + 1;
            }
            "null" => {
                let at = skip_as(k + 1);
                g.null = Some(string(toks.get(at))?.into_bytes());
                k = at + 1;
            }
            "force" => {
                // FORCE QUOTE / FORCE NOT NULL <columns>
                k += 1;
                while word(toks.get(k), "quote")
                    || word(toks.get(k), "not")
                    || word(toks.get(k), "null")
                {
                    k += 1;
                }
                while matches!(
                    toks.get(k),
                    Some(Token::Word(_) | Token::Comma | Token::Mul)
                ) && !word(toks.get(k), "where")
                {
                    k += 1;
                }
            }
            "where" => return Some(Ok(k)),
            _ => return None,
        }
    }
    Some(Ok(k))
}
