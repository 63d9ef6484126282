//! `COPY <sharded table> [(columns)] FROM STDIN`: what pgproxy needs to send each row to the
//! shard of its key — the table, the column list, the key column and the data format. The
//! session (`session/shard_copy.rs`) cuts the data into rows and routes them. Pure.

use super::scope::split_name;
use crate::router::determinism::{copy_format, CopyFormat};
use crate::shard::ShardMap;
use sqlparser::ast::{CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// A COPY into a sharded table, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInto {
    /// The table as the statement names it (for catalog lookups on the nodes).
    pub table: String,
    /// The table as pgproxy's schema cache keys it (`classify::object_key`).
    pub table_key: String,
    /// The listed columns, as PostgreSQL names them (unquoted names folded to lowercase);
    /// empty: every column of the table, in table order.
    pub columns: Vec<String>,
    /// The table's sharding key column.
    pub key_column: String,
    /// How the data is laid out (text or CSV).
    pub format: CopyFormat,
    /// The data is in binary format (`format` does not apply).
    pub binary: bool,
}

impl CopyInto {
    /// The field that holds the key, given the table's columns in order (used when the COPY
    /// lists none).
    pub fn key_field(&self, table_columns: &[String]) -> Option<usize> {
        let cols = if self.columns.is_empty() {
            table_columns
        } else {
            &self.columns
        };
        cols.iter().position(|c| *c == self.key_column)
    }
}

/// None when `sql` is not one `COPY … FROM` into a sharded table; Err when it is one pgproxy
/// cannot route row by row (why, for the client).
pub fn copy_into(sql: &str, map: &ShardMap) -> Option<Result<CopyInto, String>> {
    let stmts = parse_copy(sql)?;
    let [Statement::Copy {
        source: CopySource::Table {
            table_name,
            columns,
        },
        to: false,
        target,
        options,
        legacy_options,
        values,
    }] = stmts.as_slice()
    else {
        return None;
    };
    let (schema, name) = split_name(table_name);
    let key_column = map.key_column(schema.as_deref(), &name)?.to_string();
    let inline = values
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.is_empty()));
    if !matches!(target, CopyTarget::Stdin) || inline {
        return Some(Err(format!(
            "COPY into sharded table {table_name} from a file or program on the server: pgproxy routes rows by key only for COPY … FROM STDIN (psql's \\copy sends that)"
        )));
    }
    let binary = is_binary(options, legacy_options);
    let format = match copy_format(options, legacy_options) {
        Ok(f) => f,
        Err(_) if binary => CopyFormat::text(),
        Err(what) => {
            return Some(Err(format!(
                "COPY into sharded table {table_name} with {what}: pgproxy reads each row's key only in text, CSV or binary format"
            )))
        }
    };
    let columns: Vec<String> = columns
        .iter()
        .map(|c| match c.quote_style {
            None => c.value.to_lowercase(),
            Some(_) => c.value.clone(),
        })
        .collect();
    if !columns.is_empty() && !columns.contains(&key_column) {
        return Some(Err(format!(
            "COPY into sharded table {table_name} without its sharding key column {key_column}: list it, so that each row goes to its shard"
        )));
    }
    Some(Ok(CopyInto {
        table: table_name.to_string(),
        table_key: crate::router::classify::object_key(table_name),
        columns,
        key_column,
        format,
        binary,
    }))
}

/// A single COPY statement parsed; sqlparser wants `COPY … FROM STDIN` ended by a semicolon
/// (it reads inline data after it), which a client's Query need not have.
pub(crate) fn parse_copy(sql: &str) -> Option<Vec<Statement>> {
    let text = sql.trim_end();
    let text = text.strip_suffix(';').unwrap_or(text);
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, &format!("{text};")).ok()?;
    (stmts.len() == 1 && matches!(stmts[0], Statement::Copy { .. })).then_some(stmts)
}

/// What a `COPY <table> TO STDOUT` sends, as far as concatenating shards' outputs goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOutShape {
    /// Binary format (each shard's output has a file header and a trailer).
    pub binary: bool,
    /// Text or CSV with HEADER: each shard's output starts with a header line.
    pub header: bool,
}

/// The shape of a single `COPY <table> [(columns)] TO STDOUT`; Err: why pgproxy cannot put
/// the shards' outputs together.
pub fn copy_out_shape(sql: &str) -> Result<CopyOutShape, String> {
    let stmts = parse_copy(sql).ok_or("pgproxy could not read this COPY")?;
    let [Statement::Copy {
        source: CopySource::Table { .. },
        to: true,
        target,
        options,
        legacy_options,
        ..
    }] = stmts.as_slice()
    else {
        return Err("not a COPY of a table TO STDOUT".into());
    };
    if !matches!(target, CopyTarget::Stdout) {
        return Err("COPY TO a file or program on the server".into());
    }
    let binary = is_binary(options, legacy_options);
    if binary {
        return Ok(CopyOutShape {
            binary,
            header: false,
        });
    }
    let format = copy_format(options, legacy_options)?;
    Ok(CopyOutShape {
        binary: false,
        header: format.header,
    })
}

/// The options ask for the binary format.
fn is_binary(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> bool {
    options
        .iter()
        .any(|o| matches!(o, CopyOption::Format(f) if f.value.eq_ignore_ascii_case("binary")))
        || legacy.iter().any(|o| matches!(o, CopyLegacyOption::Binary))
}
