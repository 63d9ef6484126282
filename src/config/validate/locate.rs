//! Where things are in the TOML text: byte offsets to lines, config paths (`users[1].password`)
//! to spans, and which bytes to blank out to get past one deserialization error.
//!
//! Works on a `toml_edit::ImDocument`, which keeps the span of every key, value and table.

use std::ops::Range;
use toml_edit::{ImDocument, Item, Key, Value};

/// One step of a path into the config: a key or an index into an array (of tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seg {
    /// A key of a table.
    Key(&'static str),
    /// An element of an array or array of tables (0-based).
    Index(usize),
}

/// The parsed document plus its text.
pub(super) struct Doc<'t> {
    text: &'t str,
    doc: ImDocument<&'t str>,
}

/// The key or table a deserialization error points at, and how to get past it.
pub(super) struct Found {
    /// Where the error is, e.g. `shards[0].nodes[1].port`.
    pub path: String,
    /// Path of what `removal` blanks out (the key-value or table holding the error).
    pub removed: String,
    /// Bytes to blank so that deserialization can go on past this error.
    pub removal: Vec<Range<usize>>,
    /// True if `removal` drops a whole table (an entry such as one `[[users]]`), not one key.
    pub drops_table: bool,
}

impl<'t> Doc<'t> {
    /// Parses `text`; on a syntax error, its line and message.
    pub fn parse(text: &'t str) -> Result<Doc<'t>, (Option<usize>, String)> {
        match ImDocument::parse(text) {
            Ok(doc) => Ok(Doc { text, doc }),
            Err(e) => Err((
                e.span().map(|s| line_of(text, s.start)),
                e.message().trim_end().to_string(),
            )),
        }
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// Span of the deepest existing part of `path`: the key itself if present, else the
    /// nearest enclosing entry. `None` if not even the first step exists.
    pub fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let mut item = self.doc.as_item();
        let mut best = None;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => item
                    .as_table_like()
                    .and_then(|t| t.get_key_value(k))
                    .map(|(key, child)| (key.span().or_else(|| child.span()), child)),
                Seg::Index(i) => item.get(*i).map(|child| (child.span(), child)),
            };
            let Some((span, child)) = next else { break };
            best = span.or(best);
            item = child;
        }
        best
    }

    /// Span of the item at `path` itself (a whole table for an entry), if it exists and has one.
    pub fn item_span(&self, path: &[Seg]) -> Option<Range<usize>> {
        let mut item = self.doc.as_item();
        for seg in path {
            item = match seg {
                Seg::Key(k) => item.get(*k)?,
                Seg::Index(i) => item.get(*i)?,
            };
        }
        item.span()
    }

    /// Line of `path` as [`Doc::span`] finds it.
    pub fn line_of_path(&self, path: &[Seg]) -> Option<usize> {
        self.span(path).map(|s| self.line(s.start))
    }

    /// The innermost key or table containing byte `offset` (where a deserialization error
    /// pointed), and what to blank to get past it.
    pub fn find(&self, offset: usize) -> Option<Found> {
        let mut path = Vec::new();
        find_in(self.text, self.doc.as_item(), offset, false, &mut path)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn line_start(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

fn contains(span: &Option<Range<usize>>, offset: usize) -> bool {
    span.as_ref()
        .is_some_and(|s| s.contains(&offset) || (s.is_empty() && s.start == offset))
}

/// Searches the children of a table-like `item` for `offset`. `dotted` is true inside a
/// dotted-key table (`a.b = 1`): a key-value then starts at the beginning of its line.
fn find_in(
    text: &str,
    item: &Item,
    offset: usize,
    dotted: bool,
    path: &mut Vec<String>,
) -> Option<Found> {
    let table = item.as_table_like()?;
    for (name, child) in table.iter() {
        let key = table.get_key_value(name).map(|(k, _)| k);
        path.push(name.to_string());
        if let Some(found) = find_child(text, key, child, offset, dotted, path) {
            return Some(found);
        }
        path.pop();
    }
    None
}

fn find_child(
    text: &str,
    key: Option<&Key>,
    child: &Item,
    offset: usize,
    dotted: bool,
    path: &mut Vec<String>,
) -> Option<Found> {
    match child {
        Item::Value(v) => {
            let key_start = key.and_then(|k| k.span())?.start;
            let start = if dotted {
                line_start(text, key_start)
            } else {
                key_start
            };
            let end = v.span()?.end;
            if !(start..end).contains(&offset) {
                return None;
            }
            let removed = path.join(".");
            let whole: Vec<Range<usize>> = std::iter::once(start..end).collect();
            let deeper = match v {
                Value::InlineTable(_) => find_in(text, child, offset, false, path),
                Value::Array(a) => a.iter().enumerate().find_map(|(i, e)| {
                    if !contains(&e.span(), offset) {
                        return None;
                    }
                    with_index(path, i);
                    let inner = Item::Value(e.clone());
                    // An element cannot be blanked without breaking the commas: drop the key.
                    Some(
                        find_in(text, &inner, offset, false, path)
                            .unwrap_or_else(|| found(path, removed.clone(), whole.clone(), false)),
                    )
                }),
                _ => None,
            };
            deeper.or_else(|| Some(found(path, removed, whole, false)))
        }
        Item::Table(t) if t.span().is_none() => {
            // Implicit (`[a.b]` without `[a]`) or dotted (`a.b = 1`) table: look inside.
            find_in(text, child, offset, t.is_dotted(), path)
        }
        Item::Table(t) => find_in(text, child, offset, false, path)
            .or_else(|| contains(&t.span(), offset).then(|| table_found(path, child))),
        Item::ArrayOfTables(a) => a.iter().enumerate().find_map(|(i, t)| {
            let item = Item::Table(t.clone());
            with_index(path, i);
            let hit = find_in(text, &item, offset, false, path)
                .or_else(|| contains(&t.span(), offset).then(|| table_found(path, &item)));
            without_index(path);
            hit
        }),
        Item::None => None,
    }
}

/// `users` → `users[2]`.
fn with_index(path: &mut [String], i: usize) {
    if let Some(last) = path.last_mut() {
        without_index(std::slice::from_mut(last));
        last.push_str(&format!("[{i}]"));
    }
}

fn without_index(path: &mut [String]) {
    if let Some(last) = path.last_mut() {
        if let Some(at) = last.find('[') {
            last.truncate(at);
        }
    }
}

fn table_found(path: &[String], table: &Item) -> Found {
    found(path, path.join("."), table_spans(table), true)
}

fn found(path: &[String], removed: String, removal: Vec<Range<usize>>, drops_table: bool) -> Found {
    Found {
        path: path.join("."),
        removed,
        removal,
        drops_table,
    }
}

/// The spans making up a table, including sub-tables written as separate sections
/// (`[[shards.nodes]]` after `[[shards]]`), which lie outside the table's own span.
fn table_spans(item: &Item) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    collect_table_spans(item, &mut spans);
    spans
}

fn collect_table_spans(item: &Item, spans: &mut Vec<Range<usize>>) {
    match item {
        Item::Table(t) => {
            spans.extend(t.span());
            for (_, child) in t.iter() {
                collect_table_spans(child, spans);
            }
        }
        Item::ArrayOfTables(a) => {
            for t in a.iter() {
                collect_table_spans(&Item::Table(t.clone()), spans);
            }
        }
        Item::Value(_) | Item::None => {}
    }
}

/// Replaces the bytes of `ranges` with spaces, keeping line breaks so that every offset and
/// line number of the rest stays valid.
pub(super) fn blank(text: &str, ranges: &[Range<usize>]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for r in ranges {
        let end = r.end.min(bytes.len());
        for b in bytes.iter_mut().take(end).skip(r.start) {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
