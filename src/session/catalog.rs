//! Queries pgproxy runs on a node for the determinism of writes: the column defaults of a
//! table from the node's catalog, and the values of expressions (nextval, now(), …), inside
//! whatever transaction is open on that connection.

use super::determinism::quote_lit;
use crate::backend::{BackendError, ServerConn};
use crate::protocol::frame::Frame;
use crate::protocol::message;
use crate::router::determinism::{ColumnDefault, TableDefaults};

/// Runs a query on the main inside whatever transaction is open and returns its text rows,
/// or the error message PostgreSQL gave (`Ok(Err)`); `Err` when the connection failed.
pub(super) async fn rows(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Result<Vec<Vec<Option<String>>>, String>, BackendError> {
    Ok(rows_or_error(conn, sql).await?.map_err(|e| {
        message::error_fields(e.body())
            .into_iter()
            .find(|(c, _)| *c == b'M')
            .map(|(_, m)| m.to_string())
            .unwrap_or_default()
    }))
}

/// `rows`, with the ErrorResponse itself when PostgreSQL refused the query.
pub(super) async fn rows_or_error(
    conn: &mut ServerConn,
    sql: &str,
) -> Result<Result<Vec<Vec<Option<String>>>, Frame>, BackendError> {
    let r = conn.exchange(sql).await?;
    Ok(match r.error {
        None => Ok(r.result.rows),
        Some(e) => Err(e),
    })
}

const DEFAULTS_SQL: &str = "SELECT a.attname, \
     CASE WHEN a.attidentity <> '' THEN 'nextval(' || quote_literal(pg_catalog.pg_get_serial_sequence(c.oid::regclass::text, a.attname)) || '::regclass)' \
          ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid) END, \
     a.attidentity = 'a' \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
     WHERE c.oid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

/// The column defaults of `table` (as `det::write_targets` names it) from the catalog of the
/// node behind `conn`, inside whatever transaction is open there; `Ok(Err)`: its error.
pub(super) async fn table_defaults(
    conn: &mut ServerConn,
    table: &str,
) -> Result<Result<TableDefaults, Frame>, BackendError> {
    let q = DEFAULTS_SQL.replace("$1", &quote_lit(table));
    let rows = match rows_or_error(conn, &q).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let mut t = TableDefaults::default();
    for r in rows {
        let name = r.first().cloned().flatten().unwrap_or_default();
        t.all_columns.push(name.clone());
        if let Some(expr) = r.get(1).cloned().flatten() {
            t.columns.push(ColumnDefault {
                name,
                expr,
                identity_always: r.get(2).cloned().flatten().as_deref() == Some("t"),
            });
        }
    }
    Ok(Ok(t))
}

/// `SELECT (e1)::text, …` on the node behind `conn`, inside whatever transaction is open
/// there: its one row, or its error.
pub(super) async fn values_on(
    conn: &mut ServerConn,
    exprs: &[String],
) -> Result<Result<Vec<Option<String>>, Frame>, BackendError> {
    let each = exprs
        .iter()
        .map(|e| format!("({e})::text"))
        .collect::<Vec<_>>()
        .join(", ");
    // Many values (a batch INSERT's ids): as rows of one array, evaluated in order, since a
    // row holds at most 1664 columns.
    let many = exprs.len() > MANY_VALUES;
    let sql = match many {
        false => format!("SELECT {each}"),
        true => format!("SELECT pg_catalog.unnest(ARRAY[{each}])"),
    };
    Ok(rows_or_error(conn, &sql).await?.map(|mut r| {
        if many {
            r.into_iter()
                .filter_map(|row| row.into_iter().next())
                .collect()
        } else if r.is_empty() {
            Vec::new()
        } else {
            r.swap_remove(0)
        }
    }))
}

/// Values evaluated on the main in one row at most; more come as rows of an array.
const MANY_VALUES: usize = 100;
