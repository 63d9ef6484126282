//! Templates of simple-protocol statements: the numeric literals in value positions become
//! parameters (`$1`, `$2`, …), so that one plan serves every statement that differs only in
//! those numbers (`UPDATE t SET v = v + 17 WHERE id = 4` and `… + 3 WHERE id = 9`). Planning
//! parses SQL with sqlparser, which costs tens of microseconds; a template is a cheap scan.
//!
//! A number becomes a parameter only where any value could stand: after an operator (`=`,
//! `+`, `<`, …) or as an element of a `VALUES (…)` row or an `IN (…)` list. A number in
//! any other place (a type modifier `numeric(10,2)`, a precision `CURRENT_TIMESTAMP(3)`,
//! `LIMIT 5`, a function argument) stays as written, so the template means what the text
//! means. A text with `$` anywhere (dollar quotes, parameters) is not templated.

use std::ops::Range;

/// A statement text with its templated numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The text with the i-th templated number replaced by `$i` (from 1).
    pub text: String,
    /// Where the numbers were in the original text, in order.
    pub literals: Vec<Range<usize>>,
}

impl Template {
    /// The original texts of the templated numbers (`$i` is `params[i - 1]`).
    pub fn params<'a>(&self, sql: &'a str) -> Vec<&'a str> {
        self.literals.iter().map(|r| &sql[r.clone()]).collect()
    }
}

/// What came before, for deciding whether a number stands where any value could.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    /// An operator character sequence (`=`, `<>`, `+`, `-`, …).
    Operator,
    /// `(` opening a VALUES row or an IN list.
    OpenList,
    /// `,` directly inside such a list.
    ListComma,
    /// `VALUES` or `IN`.
    ListKeyword,
    Other,
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The template of `sql`, or `None` when it has no number to template or cannot be scanned
/// safely (a `$`, an unterminated quote or comment, a number glued to a word).
pub fn template(sql: &str) -> Option<Template> {
    let s = sql.as_bytes();
    if s.contains(&b'$') {
        return None;
    }
    let mut text = String::with_capacity(sql.len() + 8);
    let mut literals = Vec::new();
    // One entry per open parenthesis: whether it is a VALUES row / IN list.
    let mut parens: Vec<bool> = Vec::new();
    // After a `)` that closed a VALUES row, a `,` continues the VALUES clause.
    let mut closed_row = false;
    let mut prev = Prev::Start;
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'\'' => {
                i = skip_quoted(s, i, b'\'', e_string(s, i))?;
                prev = Prev::Other;
            }
            b'"' => {
                i = skip_quoted(s, i, b'"', false)?;
                prev = Prev::Other;
            }
            b'-' if s.get(i + 1) == Some(&b'-') => {
                i = s[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(s.len(), |p| i + p);
                continue;
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(s, i)?;
                continue;
            }
            b'(' => {
                let list = matches!(prev, Prev::ListKeyword)
                    || (prev == Prev::ListComma && parens.is_empty());
                parens.push(list);
                closed_row = false;
                prev = if list { Prev::OpenList } else { Prev::Other };
                i += 1;
                continue;
            }
            b')' => {
                closed_row = parens.pop().unwrap_or(false);
                prev = Prev::Other;
                i += 1;
                continue;
            }
            b',' => {
                let in_list = parens.last().copied().unwrap_or(false);
                prev = if in_list || (parens.is_empty() && closed_row) {
                    Prev::ListComma
                } else {
                    Prev::Other
                };
                closed_row = false;
                i += 1;
                continue;
            }
            b'0'..=b'9' => {
                let end = number_end(s, i);
                if end < s.len() && (ident_byte(s[end]) || s[end] == b'.') {
                    return None;
                }
                if matches!(prev, Prev::Operator | Prev::OpenList | Prev::ListComma) {
                    text.push_str(&sql[copied..i]);
                    literals.push(i..end);
                    text.push('$');
                    text.push_str(&literals.len().to_string());
                    copied = end;
                }
                prev = Prev::Other;
                i = end;
                continue;
            }
            b'.' if s.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                // `.5`: a number, but also `t.5`-like oddities; leave it as written.
                prev = Prev::Other;
                i = number_end(s, i);
                continue;
            }
            _ if ident_byte(b) => {
                let end = i + s[i..].iter().take_while(|&&c| ident_byte(c)).count();
                let word = &sql[i..end];
                prev = if word.eq_ignore_ascii_case("values") || word.eq_ignore_ascii_case("in") {
                    Prev::ListKeyword
                } else {
                    Prev::Other
                };
                closed_row = false;
                i = end;
                continue;
            }
            b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'%' | b'!' => {
                i += 1;
                while i < s.len()
                    && matches!(
                        s[i],
                        b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'%' | b'!'
                    )
                {
                    if (s[i] == b'-' && s.get(i + 1) == Some(&b'-'))
                        || (s[i] == b'/' && s.get(i + 1) == Some(&b'*'))
                    {
                        break;
                    }
                    i += 1;
                }
                prev = Prev::Operator;
                closed_row = false;
                continue;
            }
            _ => {
                // `::`, `;`, `[`, `]`, `@`, `#`, `^`, `|`, `&`, `~`, `?`, `:` …
                prev = Prev::Other;
                closed_row = false;
                i += 1;
                continue;
            }
        }
        closed_row = false;
    }
    if literals.is_empty() {
        return None;
    }
    text.push_str(&sql[copied..]);
    Some(Template { text, literals })
}

/// Whether the quote at `i` opens an E'…' string (backslash escapes): the E is a word of its
/// own.
fn e_string(s: &[u8], i: usize) -> bool {
    i > 0 && matches!(s[i - 1], b'e' | b'E') && (i < 2 || !ident_byte(s[i - 2]))
}

/// The end of a quoted string or identifier starting at `start`; `None` if unterminated.
fn skip_quoted(s: &[u8], start: usize, quote: u8, escapes: bool) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        if escapes && s[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i] == quote {
            if s.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// The end of a (nestable) block comment starting at `start`; `None` if unterminated.
fn skip_block_comment(s: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < s.len() {
        match (s[i], s[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The end of the number starting at `i`: digits, a fraction, an exponent.
fn number_end(s: &[u8], mut i: usize) -> usize {
    let digits = |s: &[u8], mut i: usize| {
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    i = digits(s, i);
    if s.get(i) == Some(&b'.') && s.get(i + 1) != Some(&b'.') {
        i = digits(s, i + 1);
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if s.get(j).is_some_and(u8::is_ascii_digit) {
            i = digits(s, j);
        }
    }
    i
}

/// Splits text at the parameters a template put there: `(text before, parameter number)`
/// pairs and the rest. Quotes and comments are skipped (the text may quote a `$`).
pub(super) fn split_params(text: &str) -> (Vec<(String, usize)>, String) {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\'' => {
                i = skip_quoted(s, i, b'\'', e_string(s, i)).unwrap_or(s.len());
            }
            b'"' => i = skip_quoted(s, i, b'"', false).unwrap_or(s.len()),
            b'-' if s.get(i + 1) == Some(&b'-') => {
                i = s[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(s.len(), |p| i + p);
            }
            b'/' if s.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(s, i).unwrap_or(s.len());
            }
            b'$' if i == 0 || !ident_byte(s[i - 1]) => {
                let end = i + 1 + s[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                match text[i + 1..end].parse::<usize>() {
                    Ok(n) if n > 0 => {
                        out.push((text[copied..i].to_string(), n));
                        copied = end;
                    }
                    _ => {}
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    (out, text[copied..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> Option<(String, Vec<&str>)> {
        template(sql).map(|t| (t.text.clone(), t.params(sql)))
    }

    type Case<'a> = (&'a str, Option<(&'a str, &'a [&'a str])>);

    #[test]
    fn numbers_in_value_positions_become_parameters() {
        let cases: &[Case] = &[
            (
                "UPDATE pgbench_accounts SET abalance = abalance + -3876 WHERE aid = 41589;",
                Some((
                    "UPDATE pgbench_accounts SET abalance = abalance + -$1 WHERE aid = $2;",
                    &["3876", "41589"],
                )),
            ),
            (
                "INSERT INTO h (tid, bid, aid, delta, mtime) VALUES (56, 6, 41589, -3876, CURRENT_TIMESTAMP)",
                Some((
                    "INSERT INTO h (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, -$4, CURRENT_TIMESTAMP)",
                    &["56", "6", "41589", "3876"],
                )),
            ),
            (
                "insert into t values (1, 'a'), (2.5e3, 'b')",
                Some(("insert into t values ($1, 'a'), ($2, 'b')", &["1", "2.5e3"])),
            ),
            (
                "DELETE FROM t WHERE id IN (1, 2) AND v >= 3",
                Some(("DELETE FROM t WHERE id IN ($1, $2) AND v >= $3", &["1", "2", "3"])),
            ),
            // Not value positions: type modifiers, precisions, LIMIT, function arguments.
            ("SELECT 'x'::numeric(10,2), CURRENT_TIMESTAMP(3) LIMIT 5", None),
            ("INSERT INTO t VALUES (round(2.5, 1), 'x'::varchar(10))", None),
            (
                "INSERT INTO t VALUES (now() + 7 * interval '1 day', (1))",
                Some((
                    "INSERT INTO t VALUES (now() + $1 * interval '1 day', (1))",
                    &["7"],
                )),
            ),
            // Quotes and comments are not scanned for numbers.
            (
                "UPDATE t SET a = 'x = 1', \"b=2\" = 3 /* = 4 */ -- = 5\n WHERE c = E'\\' = 6'",
                Some((
                    "UPDATE t SET a = 'x = 1', \"b=2\" = $1 /* = 4 */ -- = 5\n WHERE c = E'\\' = 6'",
                    &["3"],
                )),
            ),
            // Not templated at all.
            ("SELECT $1 = 2", None),
            ("SELECT $$ = 2 $$", None),
            ("UPDATE t SET a = 1abc", None),
            ("UPDATE t SET a = 'unterminated = 1", None),
            ("SELECT col1 FROM t2", None),
        ];
        for (sql, want) in cases {
            let got = t(sql);
            let want = want.map(|(s, p)| (s.to_string(), p.to_vec()));
            assert_eq!(got, want, "{sql}");
        }
    }

    #[test]
    fn params_split_outside_quotes_only() {
        let (parts, rest) = split_params("a = $1 AND b = '$2' AND f$3 = $10 -- $4\n");
        assert_eq!(
            parts,
            vec![
                ("a = ".to_string(), 1),
                (" AND b = '$2' AND f$3 = ".to_string(), 10)
            ]
        );
        assert_eq!(rest, " -- $4\n");
    }
}
