//! `COPY … FROM STDIN` whose column list leaves out a column with a non-deterministic default
//! (serial or identity, gen_random_uuid(), random(), now()): every node would compute that
//! default itself. pgproxy adds the column to the list (`CopyPlan::sql`, sent to every node)
//! and appends the same value to every data row (`RowCutter`, text and CSV formats); the
//! caller evaluates the values on the main node.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Statement,
};

use super::defaults::{ident_name, quoted};
use super::fallback;
use super::rewrite::{nd_defaults, Collector};
use super::{parse_tokens, Need, Schema};
use crate::router::classify::lex::Lexed;
use crate::router::classify::object_key;

/// A COPY that pgproxy completes with the values of the columns it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// The COPY to send to every node instead: the added columns listed last.
    pub sql: String,
    /// The columns added, in the order their values follow each row.
    pub added: Vec<AddedColumn>,
    /// How the data is laid out.
    pub format: CopyFormat,
    /// Columns the client listed: a row with fewer fields is left as it is (the nodes refuse
    /// it as PostgreSQL would).
    pub listed: usize,
}

/// A column pgproxy adds to a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedColumn {
    /// Its name in the catalog.
    pub name: String,
    /// Its default expression, evaluated on the main node.
    pub expr: String,
    /// Evaluated for every row (nextval, random(), gen_random_uuid()); otherwise once per
    /// COPY (clock functions: the transaction's time, as PostgreSQL does).
    pub per_row: bool,
    /// The default is `nextval(<this>)`: the followers' sequence moves past the last value.
    pub sequence: Option<String>,
}

/// The data format options of a COPY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    pub header: bool,
    pub null: Vec<u8>,
}

impl CopyFormat {
    /// PostgreSQL's text format with its defaults.
    pub fn text() -> CopyFormat {
        Given::default().format()
    }
}

/// The options as given, before the format's defaults fill the rest.
#[derive(Default)]
struct Given {
    csv: bool,
    delimiter: Option<u8>,
    quote: Option<u8>,
    escape: Option<u8>,
    header: bool,
    null: Option<Vec<u8>>,
}

impl Given {
    fn format(self) -> CopyFormat {
        let quote = self.quote.unwrap_or(b'"');
        CopyFormat {
            csv: self.csv,
            delimiter: self
                .delimiter
                .unwrap_or(if self.csv { b',' } else { b'\t' }),
            quote,
            escape: self.escape.unwrap_or(quote),
            header: self.header,
            null: self.null.unwrap_or_else(|| {
                if self.csv {
                    Vec::new()
                } else {
                    b"\\N".to_vec()
                }
            }),
        }
    }
}

/// One ASCII character of an option, or what it is instead.
fn option_byte(c: char, what: &str) -> Result<u8, String> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| format!("a {what} that is not one ASCII character"))
}

/// `None` when the text is not a single `COPY <table> (<columns>) FROM STDIN` leaving out a
/// column whose default is non-deterministic (then it runs as it is); otherwise the plan, or
/// why pgproxy cannot complete it.
pub fn plan_copy(sql: &str, schema: &dyn Schema) -> Option<Result<CopyPlan, String>> {
    let lexed = Lexed::new(sql)?;
    let ranges = lexed.statements();
    let [r] = ranges.as_slice() else {
        return None;
    };
    let (table, listed, format) = match parse_tokens(lexed.tokens[r.clone()].to_vec()) {
        Ok(stmts) => match stmts.as_slice() {
            [Statement::Copy {
                source:
                    CopySource::Table {
                        table_name,
                        columns,
                    },
                to: false,
                target: CopyTarget::Stdin,
                options,
                legacy_options,
                values,
            }] if !columns.is_empty() && values.is_empty() => (
                object_key(table_name),
                columns.iter().map(ident_name).collect::<Vec<_>>(),
                format_of(options, legacy_options),
            ),
            _ => return None,
        },
        // Options or clauses sqlparser does not know (HEADER MATCH, WHERE, newer options):
        // read from tokens; what pgproxy cannot read either is refused by the general plan.
        Err(_) => {
            let target = fallback::copy_target(&lexed, r.clone())?;
            let (columns, _) = target.columns?;
            (
                target.table,
                columns,
                copy_options::read(&lexed, r.clone())?,
            )
        }
    };
    let defaults = schema.defaults(&table)?;
    let nd = match nd_defaults(&defaults.columns) {
        Ok(nd) => nd,
        Err(e) => return Some(Err(e)),
    };
    let missing: Vec<_> = nd
        .iter()
        .filter(|d| !listed.iter().any(|n| n == d.name))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let format = match format {
        Ok(f) => f,
        Err(what) => {
            return Some(Err(format!(
                "COPY into {table} without column {}, whose default {} every node would evaluate itself: pgproxy adds such values only to text or CSV data, not to {what}; list {} in the COPY's column list and send its values",
                missing[0].name, missing[0].text, missing[0].name
            )))
        }
    };
    let mut added = Vec::new();
    for d in missing {
        let mut c = Collector::new(String::new());
        if let Err(e) = d.instantiate(&mut c) {
            return Some(Err(e));
        }
        let clock = c
            .needs
            .iter()
            .any(|n| matches!(n, Need::TxnTimestamp | Need::ClockTimestamp));
        let nextvals: Vec<&String> = c
            .needs
            .iter()
            .filter_map(|n| match n {
                Need::Nextval(arg) => Some(arg),
                _ => None,
            })
            .collect();
        let plain_nextval = d.text.trim().to_ascii_lowercase().starts_with("nextval(")
            && d.text.trim().ends_with(')')
            && c.needs.len() == 1
            && nextvals.len() == 1;
        if (d.per_row && clock) || (!nextvals.is_empty() && !plain_nextval) {
            return Some(Err(format!(
                "COPY into {table} without column {}, whose default {} pgproxy cannot evaluate row by row for every node; list {} in the COPY's column list and send its values",
                d.name, d.text, d.name
            )));
        }
        added.push(AddedColumn {
            name: d.name.to_string(),
            expr: d.text.to_string(),
            per_row: d.per_row,
            sequence: plain_nextval.then(|| nextvals[0].clone()),
        });
    }
    // The added columns go into the text as the client wrote it (sqlparser prints some
    // options wrongly: an apostrophe as QUOTE loses its doubling).
    let Some((_, close)) = fallback::copy_target(&lexed, r.clone()).and_then(|t| t.columns) else {
        return Some(Err(format!(
            "pgproxy could not find the column list of this COPY into {table} to add column {} to; list it and send its values",
            added[0].name
        )));
    };
    let names: Vec<String> = added
        .iter()
        .map(|a| quoted_ident(&a.name).to_string())
        .collect();
    let sql = format!("{}, {}{}", &sql[..close], names.join(", "), &sql[close..]);
    let listed = listed.len();
    Some(Ok(CopyPlan {
        sql,
        added,
        format,
        listed,
    }))
}

/// The column as an identifier, quoted only where it must be (as PostgreSQL prints it).
fn quoted_ident(name: &str) -> Ident {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ident::new(name)
    } else {
        quoted(name)
    }
}

/// The data format, or what pgproxy cannot add values to.
/// The data format a COPY's options describe; Err names what pgproxy cannot read (binary).
pub fn copy_format(
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
) -> Result<CopyFormat, String> {
    format_of(options, legacy)
}

fn format_of(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat, String> {
    let mut g = Given::default();
    for o in options {
        match o {
            CopyOption::Format(f) => match f.value.to_ascii_lowercase().as_str() {
                "csv" => g.csv = true,
                "text" => g.csv = false,
                other => return Err(format!("{other} data")),
            },
            CopyOption::Delimiter(c) => g.delimiter = Some(option_byte(*c, "delimiter")?),
            CopyOption::Null(s) => g.null = Some(s.as_bytes().to_vec()),
            CopyOption::Header(h) => g.header = *h,
            CopyOption::Quote(c) => g.quote = Some(option_byte(*c, "quote")?),
            CopyOption::Escape(c) => g.escape = Some(option_byte(*c, "escape")?),
            CopyOption::Encoding(_) => return Err("data in another ENCODING".into()),
            CopyOption::Freeze(_)
            | CopyOption::ForceQuote(_)
            | CopyOption::ForceNotNull(_)
            | CopyOption::ForceNull(_) => {}
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => return Err("binary data".into()),
            CopyLegacyOption::Delimiter(c) => g.delimiter = Some(option_byte(*c, "delimiter")?),
            CopyLegacyOption::Null(s) => g.null = Some(s.as_bytes().to_vec()),
            CopyLegacyOption::Csv(opts) => {
                g.csv = true;
                for o in opts {
                    match o {
                        CopyLegacyCsvOption::Header => g.header = true,
                        CopyLegacyCsvOption::Quote(c) => g.quote = Some(option_byte(*c, "quote")?),
                        CopyLegacyCsvOption::Escape(c) => {
                            g.escape = Some(option_byte(*c, "escape")?)
                        }
                        CopyLegacyCsvOption::ForceQuote(_)
                        | CopyLegacyCsvOption::ForceNotNull(_) => {}
                    }
                }
            }
            other => return Err(format!("the option {other}")),
        }
    }
    Ok(g.format())
}

#[path = "copy_options.rs"]
mod copy_options;

/// A row `RowCutter::drain` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutRow {
    /// The CSV header line.
    Header,
    /// A data row with at least the fields the cutter was made for.
    Data,
    /// A data row with fewer fields.
    Odd,
}

/// What a cut row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Header,
    Data,
    /// A data row with fewer fields than the client listed: sent as it is.
    Odd,
    /// The end-of-data marker `\.`: it and everything after pass unchanged.
    End,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    kind: RowKind,
    start: usize,
    /// End of the row's content (its line terminator excluded).
    content_end: usize,
    end: usize,
}

/// Cuts COPY data into rows as it streams in and appends values to each row. Holds at most
/// the complete rows not yet taken and one incomplete row.
#[derive(Debug)]
pub struct RowCutter {
    format: CopyFormat,
    buf: Vec<u8>,
    /// Complete rows in `buf`, in order, from its start.
    rows: Vec<Row>,
    /// Where scanning stopped, and whether it stopped inside CSV quotes.
    scan: usize,
    in_quotes: bool,
    header_pending: bool,
    /// The end-of-data marker was seen: nothing more is cut.
    ended: bool,
    /// Fields a data row must have, and the delimiters seen so far in the row being cut.
    fields: usize,
    delimiters: usize,
}

impl RowCutter {
    /// A cutter for rows of `fields` fields.
    pub fn new(format: CopyFormat, fields: usize) -> RowCutter {
        RowCutter {
            header_pending: format.header,
            format,
            buf: Vec::new(),
            rows: Vec::new(),
            scan: 0,
            in_quotes: false,
            ended: false,
            fields,
            delimiters: 0,
        }
    }

    /// Takes more COPY data.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.cut(false);
    }

    /// The client ended the data: what remains is the last row.
    pub fn finish(&mut self) {
        self.cut(true);
    }

    /// Complete data rows waiting for values.
    pub fn data_rows(&self) -> usize {
        self.rows.iter().filter(|r| r.kind == RowKind::Data).count()
    }

    /// Bytes of complete rows waiting.
    pub fn ready_bytes(&self) -> usize {
        self.ready_end()
    }

    /// Bytes of the incomplete row.
    pub fn partial_bytes(&self) -> usize {
        self.buf.len() - self.ready_end()
    }

    /// The complete rows (after `finish`: everything), each data row with `values[i]` (one
    /// text per added column) appended; `names` go on the header line. Removes what it
    /// returns. Err when a value cannot be written in this format.
    pub fn take(&mut self, values: &[Vec<String>], names: &[String]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(self.buf.len() + values.len() * 24);
        let mut next = values.iter();
        let ready = self.ready_end();
        for r in std::mem::take(&mut self.rows) {
            out.extend_from_slice(&self.buf[r.start..r.content_end]);
            let extra: &[String] = match r.kind {
                RowKind::Header => names,
                RowKind::Data => next.next().ok_or("fewer values than rows")?,
                RowKind::Odd | RowKind::End => &[],
            };
            for v in extra {
                out.push(self.format.delimiter);
                self.field(v, &mut out)?;
            }
            out.extend_from_slice(&self.buf[r.content_end..r.end]);
        }
        let done = if self.ended {
            out.extend_from_slice(&self.buf[ready..]);
            self.buf.len()
        } else {
            ready
        };
        self.buf.drain(..done);
        self.scan = self.scan.saturating_sub(done);
        Ok(out)
    }

    /// Takes the complete rows as they are (after `finish`: everything up to the end-of-data
    /// marker), giving `each` the row's kind, its content and its whole bytes (line terminator
    /// included). The marker and what follows it are dropped (PostgreSQL ignores them).
    pub fn drain(&mut self, mut each: impl FnMut(CutRow, &[u8], &[u8])) {
        let ready = self.ready_end();
        for r in std::mem::take(&mut self.rows) {
            let kind = match r.kind {
                RowKind::Header => CutRow::Header,
                RowKind::Data => CutRow::Data,
                RowKind::Odd => CutRow::Odd,
                RowKind::End => continue,
            };
            each(
                kind,
                &self.buf[r.start..r.content_end],
                &self.buf[r.start..r.end],
            );
        }
        let done = if self.ended { self.buf.len() } else { ready };
        self.buf.drain(..done);
        self.scan = self.scan.saturating_sub(done);
    }

    /// The end-of-data marker was seen: what comes after passes as it is (`take`).
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn ready_end(&self) -> usize {
        self.rows.last().map_or(0, |r| r.end)
    }

    /// Cuts complete rows from the scan position on; `last`: no more data will come, so a
    /// row without a line terminator is complete too.
    fn cut(&mut self, last: bool) {
        let (csv, quote, escape, delim) = (
            self.format.csv,
            self.format.quote,
            self.format.escape,
            self.format.delimiter,
        );
        let mut i = self.scan;
        let mut start = self.ready_end();
        while !self.ended && i < self.buf.len() {
            let c = self.buf[i];
            if csv && self.in_quotes {
                if c == escape && escape != quote {
                    match self.buf.get(i + 1) {
                        Some(&n) if n == quote || n == escape => i += 2,
                        Some(_) => i += 1,
                        None if last => i += 1,
                        None => break,
                    }
                } else {
                    self.in_quotes = c != quote;
                    i += 1;
                }
                continue;
            }
            if !csv && c == b'\\' {
                match self.buf.get(i + 1) {
                    // A backslash and a dot end the data in text format, also after data on
                    // its line (that is the last row): what follows passes as it is.
                    Some(b'.') => {
                        if i > start {
                            self.push_row(start, i, i);
                        }
                        self.ended = true;
                        break;
                    }
                    // A backslash takes the next byte as data, even a line feed.
                    Some(_) => i += 2,
                    None if last => i += 1,
                    None => break,
                }
                continue;
            }
            if c == delim {
                self.delimiters += 1;
                i += 1;
                continue;
            }
            if csv && c == quote {
                self.in_quotes = true;
                i += 1;
                continue;
            }
            if c != b'\n' && c != b'\r' {
                i += 1;
                continue;
            }
            let end = if c == b'\r' {
                match self.buf.get(i + 1) {
                    Some(b'\n') => i + 2,
                    Some(_) => i + 1,
                    None if last => i + 1,
                    None => break,
                }
            } else {
                i + 1
            };
            self.push_row(start, i, end);
            start = end;
            i = end;
        }
        if last && !self.ended && start < self.buf.len() {
            let end = self.buf.len();
            self.push_row(start, end, end);
            i = end;
        }
        self.scan = i.max(self.ready_end());
    }

    fn push_row(&mut self, start: usize, content_end: usize, end: usize) {
        let fields = std::mem::take(&mut self.delimiters) + 1;
        let kind = if &self.buf[start..content_end] == b"\\." {
            self.ended = true;
            RowKind::End
        } else if std::mem::take(&mut self.header_pending) {
            RowKind::Header
        } else if fields < self.fields {
            // Left as it is, the nodes report the first missing column, as PostgreSQL does;
            // a row with a field too many gets its values and still has one too many.
            RowKind::Odd
        } else {
            RowKind::Data
        };
        self.rows.push(Row {
            kind,
            start,
            content_end,
            end,
        });
    }

    /// One value as a field of this format.
    fn field(&self, v: &str, out: &mut Vec<u8>) -> Result<(), String> {
        let f = &self.format;
        if f.csv {
            let special = v.is_empty()
                || v.as_bytes() == f.null.as_slice()
                || v.bytes()
                    .any(|b| b == f.delimiter || b == f.quote || b == b'\n' || b == b'\r');
            if !special {
                out.extend_from_slice(v.as_bytes());
                return Ok(());
            }
            out.push(f.quote);
            for b in v.bytes() {
                if b == f.quote || b == f.escape {
                    out.push(f.escape);
                }
                out.push(b);
            }
            out.push(f.quote);
            return Ok(());
        }
        if v.as_bytes() == f.null.as_slice() {
            return Err(format!(
                "the value {v} reads as the COPY's NULL string in text format"
            ));
        }
        for b in v.bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ if b == f.delimiter => out.extend_from_slice(&[b'\\', b]),
                _ => out.push(b),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "tests/copy.rs"]
mod tests;
