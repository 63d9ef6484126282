//! Parsing and validation of the TOML text, reporting every problem with its line.
//!
//! Three passes: TOML syntax (stops at the first syntax error, as any parser must); serde
//! deserialization into `Config`, repeated after blanking out each offending key so that every
//! unknown key and wrongly typed value is reported, not just the first; then the semantic checks
//! of `check.rs` on the result. Line numbers come from the spans `toml_edit` keeps.

mod check;
mod locate;
mod sharding;

use super::Config;
use locate::{Doc, Seg};
use std::fmt;
use std::ops::Range;

/// Passes of deserialize-then-blank before giving up (each reports one problem).
const MAX_SERDE_PROBLEMS: usize = 100;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// Path given.
        path: String,
        /// OS error text.
        message: String,
    },
    /// The file was read but is invalid.
    #[error("invalid configuration: {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems found, in line order; empty for an IO error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }

    /// One line per problem, `FILE:LINE: message` (or `FILE: message` when the line is not
    /// known), as `pgproxy --check-config FILE` prints them. No trailing newline.
    pub fn render(&self, file: &str) -> String {
        match self {
            ConfigError::Io { message, .. } => format!("{file}: cannot read: {message}"),
            ConfigError::Invalid(problems) => problems
                .iter()
                .map(|p| match p.line {
                    Some(line) => format!("{file}:{line}: {}", p.message),
                    None => format!("{file}: {}", p.message),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

pub(super) fn parse_and_validate(text: &str) -> Result<Config, ConfigError> {
    let doc = match Doc::parse(text) {
        Ok(doc) => doc,
        Err((line, message)) => {
            return Err(ConfigError::Invalid(vec![Problem {
                line,
                message: format!("TOML syntax error: {message}"),
            }]))
        }
    };
    let mut outcome = deserialize(text, &doc);
    let mut problems = std::mem::take(&mut outcome.problems);
    if let Some(config) = &outcome.config {
        problems.extend(semantic_problems(config, &doc, &outcome));
    }
    match outcome.config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            // Stable: problems on one line keep the order they were found in.
            problems.sort_by_key(|p| p.line.unwrap_or(0));
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// What the serde pass produced.
struct Deserialized {
    /// The config read from the text with every offending key blanked out, if it got that far.
    config: Option<Config>,
    /// One problem per serde error.
    problems: Vec<Problem>,
    /// Byte ranges blanked out.
    blanked: Vec<Range<usize>>,
    /// Those of `blanked` that held a known key (a wrong value): the config lacks that value,
    /// so semantic problems of its entry may be echoes. An unknown key changes nothing.
    tainted: Vec<Range<usize>>,
    /// Top-level keys (`users`, `shards`) of which a whole entry was blanked: indices in
    /// `config` then no longer match the text, so their semantic problems are not reported.
    dropped: Vec<String>,
}

/// Deserializes `Config`; after each error, blanks out the key (or entry) at fault and tries
/// again, so that every unknown key and wrongly typed value is reported.
fn deserialize(text: &str, doc: &Doc<'_>) -> Deserialized {
    let mut out = Deserialized {
        config: None,
        problems: Vec::new(),
        blanked: Vec::new(),
        tainted: Vec::new(),
        dropped: Vec::new(),
    };
    let mut removed: Vec<String> = Vec::new();
    let mut work = text.to_string();
    for _ in 0..MAX_SERDE_PROBLEMS {
        let err = match toml::from_str::<Config>(&work) {
            Ok(config) => {
                out.config = Some(config);
                return out;
            }
            Err(err) => err,
        };
        let span = err.span();
        let found = span.as_ref().and_then(|s| doc.find(s.start));
        let message = err.message().trim_end();
        let line = span.map(|s| doc.line(s.start));
        let Some(found) = found else {
            out.problems.push(Problem {
                line,
                message: message.to_string(),
            });
            return out;
        };
        // A required key blanked out earlier shows up again as missing: say it once.
        if !is_echo(message, &found.path, &removed) {
            out.problems.push(Problem {
                line,
                message: serde_message(&found.path, message),
            });
        }
        let progress = found.removal.iter().any(|r| {
            !out.blanked
                .iter()
                .any(|b| b.start <= r.start && r.end <= b.end)
        });
        if !progress {
            return out;
        }
        work = locate::blank(&work, &found.removal);
        if Doc::parse(&work).is_err() {
            return out; // blanking broke the syntax: what was found so far is all we can say
        }
        // An unknown key or table blanked out changes nothing in the config.
        if !message.starts_with("unknown field") {
            out.tainted.extend(found.removal.iter().cloned());
            if found.drops_table {
                out.dropped.push(top_level(&found.removed).to_string());
            }
        }
        out.blanked.extend(found.removal);
        removed.push(found.removed);
    }
    out
}

/// True for "missing field `name`" in a table whose `name` (or something under it) was
/// blanked out after an earlier error.
fn is_echo(message: &str, table: &str, removed: &[String]) -> bool {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
        .is_some_and(|field| {
            let key = format!("{table}.{field}");
            removed.iter().any(|r| {
                r.strip_prefix(key.as_str())
                    .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
            })
        })
}

/// `users[0].pool_size: invalid type: string "x", expected usize`, with serde's wording made
/// to speak of keys rather than fields.
fn serde_message(path: &str, message: &str) -> String {
    let message = match suggest(message) {
        Some(better) => better,
        None => message
            .replace("unknown field", "unknown key")
            .replace("missing field", "missing key"),
    };
    if path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// Semantic problems, placed at their lines. Left out: those about an entry that had a value
/// blanked out (they may only be echoes of that value's problem) and those about a list that
/// lost an entry (their indices would point at the wrong entry).
fn semantic_problems(config: &Config, doc: &Doc<'_>, serde: &Deserialized) -> Vec<Problem> {
    let tainted = &serde.tainted;
    check::check(config)
        .into_iter()
        .filter(|issue| match issue.path.first() {
            Some(Seg::Key(top)) => !serde.dropped.iter().any(|d| d == top),
            _ => true,
        })
        .filter(|issue| {
            let entry = entry_of(&issue.path);
            let span = if entry.is_empty() {
                None
            } else {
                doc.item_span(entry)
            };
            let tainted = match span {
                Some(s) => tainted.iter().any(|b| b.start < s.end && s.start < b.end),
                None => false,
            };
            !tainted
        })
        .map(|issue| Problem {
            line: doc.line_of_path(&issue.path),
            message: issue.message,
        })
        .collect()
}

/// For serde's "unknown field `lisen`, expected one of `listen`, …": "unknown key `lisen`;
/// did you mean `listen`?" when one expected name is within two edits.
fn suggest(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (edit_distance(unknown, name), name))
        .min()?;
    (best.0 <= 2 && best.0 < unknown.len())
        .then(|| format!("unknown key `{unknown}`; did you mean `{}`?", best.1))
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `shards[0].nodes[1]` → `shards`.
fn top_level(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// The entry a path lies in: up to its last index (`users[1]`), or its first key (`general`).
fn entry_of(path: &[Seg]) -> &[Seg] {
    match path.iter().rposition(|s| matches!(s, Seg::Index(_))) {
        Some(i) => &path[..=i],
        None => &path[..path.len().min(1)],
    }
}

#[cfg(test)]
mod tests;
