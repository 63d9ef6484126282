//! The sharding key of each row of an `INSERT … SELECT` over rows the statement lists itself,
//! the batch INSERTs of ORMs: `SELECT p0, p1 FROM (VALUES ($1, $2, 0), …) AS v(p0, p1, n)`
//! (SQLAlchemy's insertmanyvalues) and `SELECT * FROM UNNEST('{…}'::int[], …)` (Django's
//! bulk_create). The keys route the statement like a multi-row INSERT … VALUES; a SELECT of
//! any other shape has no keys pgproxy can read.

use sqlparser::ast::{CastKind, Expr, Query, SelectItem, SetExpr, TableFactor, Value};

use super::scope::{cast_kind, key_expr, KeyCast};
use super::KeyExpr;
use crate::router::classify::{ident_key, is_row_by_row_select};

/// Per listed row, its key (`None`: not a literal or parameter, or NULL); `None` if `q` is
/// not a plain SELECT over listed rows or its column `pos` is not read from them as it is.
pub(super) fn listed_keys(q: &Query, pos: usize) -> Option<Vec<Option<KeyExpr>>> {
    if q.with.is_some() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if !is_row_by_row_select(s) {
        return None;
    }
    // Which column of the listed rows the key is.
    let wildcard = matches!(
        s.projection.as_slice(),
        [SelectItem::Wildcard(_)] | [SelectItem::QualifiedWildcard(..)]
    );
    let projected = match (wildcard, s.projection.get(pos)) {
        (true, _) => None,
        (false, Some(SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. })) => {
            Some(column_name(e)?)
        }
        _ => return None,
    };
    match &s.from[0].relation {
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
        } => {
            let SetExpr::Values(v) = subquery.body.as_ref() else {
                return None;
            };
            if subquery.with.is_some() {
                return None;
            }
            let j = match projected {
                None => pos,
                Some(name) => {
                    let named = alias
                        .columns
                        .iter()
                        .position(|c| ident_key(&c.name.value, c.name.quote_style) == name);
                    // Columns past the alias's names keep PostgreSQL's names column1, …
                    named.or_else(|| {
                        let k = name.strip_prefix("column")?.parse::<usize>().ok()?;
                        (k > alias.columns.len()).then(|| k - 1)
                    })?
                }
            };
            v.rows
                .iter()
                .map(|r| r.get(j).map(key_expr))
                .collect::<Option<Vec<_>>>()
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } => {
            let j = match projected {
                None => pos,
                Some(name) => alias
                    .as_ref()?
                    .columns
                    .iter()
                    .position(|c| ident_key(&c.name.value, c.name.quote_style) == name)?,
            };
            array_keys(array_exprs.get(j)?)
        }
        _ => None,
    }
}

/// The column a projected expression reads as it is (`p0`, `v.p0`, `p0::INTEGER`).
fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Nested(inner) => column_name(inner),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } if matches!(cast_kind(&data_type.to_string()), KeyCast::Exact) => column_name(expr),
        Expr::Identifier(id) => Some(ident_key(&id.value, id.quote_style)),
        Expr::CompoundIdentifier(ids) if ids.len() == 2 => {
            ids.last().map(|id| ident_key(&id.value, id.quote_style))
        }
        _ => None,
    }
}

/// The elements of a literal one-dimensional array: `ARRAY[1, 2]` or `'{1,2}'` (cast or not).
fn array_keys(e: &Expr) -> Option<Vec<Option<KeyExpr>>> {
    match e {
        Expr::Nested(inner) => array_keys(inner),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } => {
            let keys = array_keys(expr)?;
            // numeric[] / float8[]: whole numbers the element type holds exactly only (a NULL
            // element stays a NULL key).
            let cast = cast_kind(data_type.to_string().trim_end_matches("[]"));
            (!matches!(cast, KeyCast::Other)
                && keys
                    .iter()
                    .all(|k| k.as_ref().is_none_or(|k| cast.keeps(k))))
            .then_some(keys)
        }
        Expr::Array(a) => Some(a.elem.iter().map(key_expr).collect()),
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => array_text(s),
            _ => None,
        },
        _ => None,
    }
}

/// The elements of an array's text form, if it is one-dimensional with plain elements (no
/// quotes, backslashes or nested braces); NULL elements as `None`.
fn array_text(s: &str) -> Option<Vec<Option<KeyExpr>>> {
    let inner = s.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.contains(['{', '}', '"', '\\']) {
        return None;
    }
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    Some(
        inner
            .split(',')
            .map(|x| {
                let x = x.trim();
                (!x.eq_ignore_ascii_case("null")).then(|| KeyExpr::Lit(x.to_string()))
            })
            .collect(),
    )
}
