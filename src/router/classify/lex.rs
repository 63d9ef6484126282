//! SQL text as sqlparser tokens: statement boundaries, source slices, comment hints and the
//! first keywords of a statement. Shared by classification and the determinism planner so both
//! split a string the same way (semicolons inside quotes, dollar quotes and comments are the
//! tokenizer's business, not ours).

use std::ops::Range;

use sqlparser::ast::{Expr, Ident, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

/// SQL text with its tokens.
pub(crate) struct Lexed<'a> {
    pub sql: &'a str,
    pub tokens: Vec<TokenWithSpan>,
    line_starts: Vec<usize>,
}

impl<'a> Lexed<'a> {
    /// Tokenizes `sql`; `None` if the tokenizer rejects it (for example an unterminated quote).
    pub fn new(sql: &'a str) -> Option<Self> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .ok()?;
        let line_starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Some(Lexed {
            sql,
            tokens,
            line_starts,
        })
    }

    /// Token ranges of the statements, without the separating semicolons; statements with
    /// nothing but whitespace and comments are left out. A `BEGIN ATOMIC … END` function body
    /// is not split at its inner semicolons.
    pub fn statements(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let (mut start, mut atomic, mut case_depth) = (0, false, 0usize);
        let mut prev_word = String::new();
        for (i, t) in self.tokens.iter().enumerate() {
            match &t.token {
                Token::SemiColon if !atomic => {
                    self.push_if_nonempty(&mut out, start..i);
                    start = i + 1;
                }
                Token::Word(w) if w.quote_style.is_none() => {
                    let v = w.value.to_ascii_lowercase();
                    match v.as_str() {
                        "atomic" if prev_word == "begin" => atomic = true,
                        "case" if atomic => case_depth += 1,
                        "end" if atomic && case_depth > 0 => case_depth -= 1,
                        "end" if atomic => atomic = false,
                        _ => {}
                    }
                    prev_word = v;
                }
                Token::Whitespace(_) => {}
                _ => prev_word.clear(),
            }
        }
        self.push_if_nonempty(&mut out, start..self.tokens.len());
        out
    }

    fn push_if_nonempty(&self, out: &mut Vec<Range<usize>>, r: Range<usize>) {
        if self.tokens[r.clone()].iter().any(|t| !is_blank(&t.token)) {
            out.push(r);
        }
    }

    /// Parses the statements of one token range.
    pub fn parse(&self, r: Range<usize>) -> Result<Vec<Statement>, ParserError> {
        Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(self.tokens[r].to_vec())
            .parse_statements()
    }

    /// Parses the whole text as one expression (a column default as `pg_get_expr` prints it).
    pub fn parse_expr(&self) -> Option<Expr> {
        let mut p =
            Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(self.tokens.clone());
        let e = p.parse_expr().ok()?;
        (p.peek_token().token == Token::EOF).then_some(e)
    }

    /// The first `n` words of a token range, lowercased, skipping whitespace and comments.
    /// Non-word tokens count as words too (as their text) so `( … )` is visible.
    pub fn words(&self, r: Range<usize>, n: usize) -> Vec<String> {
        self.tokens[r]
            .iter()
            .filter(|t| !is_blank(&t.token))
            .take(n)
            .map(|t| match &t.token {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_lowercase(),
                other => other.to_string(),
            })
            .collect()
    }

    /// True if any comment carries the hint `pgproxy: main` (case and whitespace ignored).
    pub fn has_main_hint(&self) -> bool {
        self.tokens.iter().any(|t| match &t.token {
            Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) => is_hint(comment),
            Token::Whitespace(Whitespace::MultiLineComment(c)) => is_hint(c),
            _ => false,
        })
    }

    /// The comments before the first token of a range, each followed by a separator.
    pub fn leading_comments(&self, r: Range<usize>) -> String {
        let mut out = String::new();
        for t in self.tokens[r].iter().take_while(|t| is_blank(&t.token)) {
            match &t.token {
                Token::Whitespace(Whitespace::SingleLineComment { comment, prefix }) => {
                    out.push_str(prefix);
                    out.push_str(comment);
                    if !comment.ends_with('\n') {
                        out.push('\n');
                    }
                }
                Token::Whitespace(Whitespace::MultiLineComment(c)) => {
                    out.push_str("/*");
                    out.push_str(c);
                    out.push_str("*/ ");
                }
                _ => {}
            }
        }
        out
    }

    /// The source text of a token range, without leading and trailing whitespace and comments.
    pub fn text(&self, r: Range<usize>) -> &'a str {
        let toks = &self.tokens[r];
        let first = toks.iter().find(|t| !is_blank(&t.token));
        let last = toks.iter().rev().find(|t| !is_blank(&t.token));
        match (first, last) {
            (Some(a), Some(b)) => {
                let from = self.offset(a.span.start).unwrap_or(0);
                let to = self.offset(b.span.end).unwrap_or(self.sql.len());
                self.sql.get(from..to).unwrap_or("")
            }
            _ => "",
        }
    }

    /// Byte offset of a tokenizer location (1-based line and character column).
    pub fn offset(&self, loc: Location) -> Option<usize> {
        if loc.line == 0 || loc.column == 0 {
            return None;
        }
        let start = *self.line_starts.get(usize::try_from(loc.line).ok()? - 1)?;
        let col = usize::try_from(loc.column).ok()? - 1;
        let rest = &self.sql[start..];
        match rest.char_indices().nth(col) {
            Some((i, _)) => Some(start + i),
            None if rest.chars().count() == col => Some(self.sql.len()),
            None => None,
        }
    }

    /// The argument text of a call, exactly as written between the parentheses that follow the
    /// function name `name` (the last identifier of the called name).
    pub fn call_args(&self, name: &Ident) -> Option<&'a str> {
        let at = self
            .tokens
            .iter()
            .position(|t| t.span.start == name.span.start && !is_blank(&t.token))?;
        let mut iter = self.tokens[at + 1..].iter().filter(|t| !is_blank(&t.token));
        let open = iter.next().filter(|t| t.token == Token::LParen)?;
        let mut depth = 1usize;
        for t in iter {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        let from = self.offset(open.span.end)?;
                        let to = self.offset(t.span.start)?;
                        return self.sql.get(from..to).map(str::trim);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// Whitespace or a comment.
pub(crate) fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

fn is_hint(comment: &str) -> bool {
    let squeezed: String = comment
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    squeezed.contains("pgproxy:main")
}

/// Fallback for text the tokenizer rejects: a plain case-insensitive search for the hint.
pub(crate) fn raw_has_main_hint(sql: &str) -> bool {
    is_hint(sql)
}
