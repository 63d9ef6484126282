//! `INSERT … SELECT` over rows the statement lists itself, the batch INSERTs of ORMs:
//! `SELECT … FROM (VALUES …) AS v(…)` (SQLAlchemy's insertmanyvalues) and
//! `SELECT * FROM UNNEST(array, …)` (Django's bulk_create). Such rows are the same, in the
//! same order, on every node, so a per-row default (a serial or identity id, a uuid) can get
//! its values from the main and each row its own: an added VALUES column with one value per
//! row, or an added UNNEST array of as many values as there are rows.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, Query, Select, SelectItem, SetExpr, TableAlias, TableAliasColumnDef, TableFactor,
    Value, Values,
};

use super::defaults::{ident_name, quoted};
use super::render::Form;
use super::rewrite::{Collector, NdDefault};
use super::statement::Cx;
use super::{Need, RowCount};
use crate::router::classify::is_row_by_row_select;

/// The rows an INSERT's SELECT reads.
enum Listed<'q> {
    Values(&'q mut Values, &'q mut TableAlias),
    Unnest(&'q mut Vec<Expr>, Option<&'q mut TableAlias>),
}

/// Plans an INSERT … SELECT over listed rows whose missing defaults include per-row ones:
/// `None` if the SELECT is not of that shape or a default cannot be given per row (the caller
/// refuses as before), else whether an identity ALWAYS column was given a value.
pub(super) fn plan_listed(
    q: &mut Query,
    nd: &[NdDefault],
    columns: &mut Vec<Ident>,
    all: &[String],
    cx: &mut Cx,
) -> Option<Result<bool, String>> {
    if q.with.is_some() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_mut() else {
        return None;
    };
    let wildcard = match s.projection.as_slice() {
        [SelectItem::Wildcard(_)] | [SelectItem::QualifiedWildcard(..)] => true,
        p if p.iter().all(|i| {
            matches!(
                i,
                SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
            )
        }) =>
        {
            false
        }
        _ => return None,
    };
    let width_out = s.projection.len();
    let mut listed = listed(s)?;
    let width = match &listed {
        Listed::Values(v, _) => {
            let w = v.rows.first().map_or(0, Vec::len);
            if w == 0 || v.rows.iter().any(|r| r.len() != w) {
                return None;
            }
            w
        }
        Listed::Unnest(arrays, alias) => {
            let named = alias.as_ref().map_or(0, |a| a.columns.len());
            if !(named == 0 && wildcard || named == arrays.len()) {
                return None;
            }
            arrays.len()
        }
    };
    let given: Vec<String> = if !columns.is_empty() {
        columns.iter().map(ident_name).collect()
    } else {
        let n = if wildcard { width } else { width_out };
        all.get(..n)?.to_vec()
    };
    let missing: Vec<&NdDefault> = nd
        .iter()
        .filter(|d| !given.iter().any(|n| n == d.name))
        .collect();
    let (per_row, clock): (Vec<&NdDefault>, Vec<&NdDefault>) =
        missing.iter().partition(|d| d.per_row);
    // Per-row defaults become row columns.
    let mut row_values = Vec::new();
    if let Listed::Unnest(arrays, _) = &listed {
        let count = rows_count(arrays);
        for d in &per_row {
            row_values.push(series(d, &count)?);
        }
    }
    let names: Vec<String> = (0..per_row.len())
        .map(|i| format!("pgproxy_default{i}"))
        .collect();
    let alias = match &mut listed {
        Listed::Values(v, alias) => {
            for row in &mut v.rows {
                for d in &per_row {
                    match d.instantiate(cx.c) {
                        Ok(e) => row.push(e),
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
            if !wildcard || !alias.columns.is_empty() {
                // Name every column (PostgreSQL's own names for those not named), then the new.
                for j in alias.columns.len()..width {
                    let name = format!("column{}", j + 1);
                    alias.columns.push(TableAliasColumnDef::from_name(name));
                }
                for n in &names {
                    alias.columns.push(TableAliasColumnDef::from_name(n));
                }
            }
            Some(alias.name.clone())
        }
        Listed::Unnest(arrays, alias) => {
            for (need, form) in row_values {
                arrays.push(Expr::value(Value::Placeholder(cx.c.marker(need, form))));
            }
            if let Some(a) = alias.as_deref_mut() {
                if !a.columns.is_empty() {
                    for n in &names {
                        a.columns.push(TableAliasColumnDef::from_name(n));
                    }
                }
            }
            alias.as_ref().map(|a| a.name.clone())
        }
    };
    let SetExpr::Select(s) = q.body.as_mut() else {
        return None;
    };
    if !wildcard {
        // `wildcard` is false only with a named VALUES alias or a named UNNEST alias.
        let alias = alias?;
        for n in &names {
            s.projection
                .push(SelectItem::UnnamedExpr(Expr::CompoundIdentifier(vec![
                    alias.clone(),
                    Ident::new(n),
                ])));
        }
    }
    for d in &clock {
        match d.instantiate(cx.c) {
            Ok(e) => s.projection.push(SelectItem::UnnamedExpr(e)),
            Err(e) => return Some(Err(e)),
        }
    }
    if columns.is_empty() {
        *columns = given.iter().map(|n| quoted(n)).collect();
    }
    columns.extend(per_row.iter().chain(&clock).map(|d| quoted(d.name)));
    Some(Ok(missing.iter().any(|d| d.always)))
}

/// The single FROM item of a plain SELECT if it is a VALUES list or an UNNEST.
fn listed(s: &mut Select) -> Option<Listed<'_>> {
    if !is_row_by_row_select(s) || !s.named_window.is_empty() {
        return None;
    }
    match &mut s.from[0].relation {
        TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(alias),
        } if subquery.with.is_none()
            && subquery.order_by.is_none()
            && subquery.limit_clause.is_none()
            && subquery.fetch.is_none() =>
        {
            match subquery.body.as_mut() {
                SetExpr::Values(v) => Some(Listed::Values(v, alias)),
                _ => None,
            }
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_offset_alias: None,
            with_ordinality: false,
        } if array_exprs
            .iter()
            .all(|a| param_number(a).is_some() || !mentions_placeholder(a)) =>
        {
            Some(Listed::Unnest(array_exprs, alias.as_mut()))
        }
        _ => None,
    }
}

/// `$n`, maybe cast (`$1::int[]`): an array parameter, whose length the Bind tells.
fn param_number(e: &Expr) -> Option<usize> {
    match e {
        Expr::Nested(inner) => param_number(inner),
        Expr::Cast { expr, .. } => param_number(expr),
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok().filter(|&n| n >= 1),
            _ => None,
        },
        _ => None,
    }
}

/// A parameter `$n` (or a marker already put in): its value is not known on the main.
fn mentions_placeholder(exprs: &Expr) -> bool {
    sqlparser::ast::visit_expressions(exprs, |e| match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// The number of rows `UNNEST(arrays)` gives (the longest array's).
fn rows_count(arrays: &[Expr]) -> RowCount {
    let mut count = RowCount {
        sql: Vec::new(),
        params: Vec::new(),
    };
    for a in arrays {
        match param_number(a) {
            Some(n) => count.params.push(n),
            None => count.sql.push(format!("pg_catalog.cardinality({a})")),
        }
    }
    count
}

/// The need and form giving `d` (exactly `nextval(…)` or `gen_random_uuid()`) for `count`
/// rows at once.
fn series(d: &NdDefault, count: &RowCount) -> Option<(Need, Form)> {
    let mut probe = Collector::new(String::new());
    let e = d.instantiate(&mut probe).ok()?;
    if !matches!(&e, Expr::Value(v) if matches!(v.value, Value::Placeholder(_))) {
        return None;
    }
    let count = count.clone();
    match probe.needs.as_slice() {
        [Need::Nextval(arg)] => Some((
            Need::NextvalRows {
                arg: arg.clone(),
                count,
            },
            Form::Int8Array,
        )),
        [Need::Uuid] => Some((Need::UuidRows { count }, Form::UuidArray)),
        _ => None,
    }
}
