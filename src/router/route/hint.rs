//! Routing hints in comments: `/* pgproxy: shard=s1 */` and `/* pgproxy: shard_key=42 */`
//! (also `-- pgproxy: …`). A hint overrides what the parser concludes: it is how a user routes
//! what the parser cannot see (a key inside a function call, a per-shard maintenance job).

use super::RouteError;
use crate::router::classify::lex::Lexed;
use crate::shard::ShardMap;
use sqlparser::tokenizer::{Token, Whitespace};

/// A hint found in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// `shard=NAME`.
    Shard(String),
    /// `shard_key=VALUE`.
    Key(String),
}

impl Hint {
    /// The shard the hint names.
    pub fn shard(&self, map: &ShardMap) -> Result<usize, RouteError> {
        match self {
            Hint::Shard(name) => map.index(name).ok_or_else(|| {
                RouteError::BadHint(format!(
                    "the hint names shard {name:?}, which does not exist"
                ))
            }),
            Hint::Key(k) => map
                .shard_of_text(k)
                .map_err(|e| RouteError::BadHint(format!("the hint's shard_key: {e}"))),
        }
    }

    /// For explanations.
    pub fn describe(&self, map: &ShardMap) -> String {
        match self {
            Hint::Shard(n) => format!("shard={n}"),
            Hint::Key(k) => match map.shard_of_text(k) {
                Ok(s) => format!("shard_key={k} -> {}", map.name(s)),
                Err(_) => format!("shard_key={k}"),
            },
        }
    }
}

/// The first hint in the comments of a SQL string.
pub fn find(lexed: &Lexed<'_>, _map: &ShardMap) -> Option<Hint> {
    lexed.tokens.iter().find_map(|t| match &t.token {
        Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) => parse(comment),
        Token::Whitespace(Whitespace::MultiLineComment(c)) => parse(c),
        _ => None,
    })
}

/// A hint in text the tokenizer rejects: the first `pgproxy:` hint after a comment opener.
pub fn find_raw(sql: &str) -> Option<Hint> {
    let at = sql.find("/*").or_else(|| sql.find("--"))?;
    parse(&sql[at + 2..])
}

/// `pgproxy: shard=…` / `pgproxy: shard_key=…` inside one comment.
pub fn parse(comment: &str) -> Option<Hint> {
    let lower = comment.to_ascii_lowercase();
    let at = lower.find("pgproxy:")?;
    let rest = comment[at + "pgproxy:".len()..].trim_start();
    let (name, value) = rest.split_once('=')?;
    let value = value.trim_start();
    let value: String = match value.strip_prefix('\'') {
        Some(q) => {
            // A quoted value ends at a single quote; '' stands for one quote.
            let mut out = String::new();
            let mut chars = q.chars().peekable();
            loop {
                match chars.next()? {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        out.push('\'');
                    }
                    '\'' => break,
                    c => out.push(c),
                }
            }
            out
        }
        None => value
            .split(|c: char| c.is_whitespace() || c == '*' || c == ',')
            .next()?
            .to_string(),
    };
    if value.is_empty() {
        return None;
    }
    match name.trim().to_ascii_lowercase().as_str() {
        "shard" => Some(Hint::Shard(value)),
        "shard_key" => Some(Hint::Key(value)),
        _ => None,
    }
}
