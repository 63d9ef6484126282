//! Column defaults made explicit: an INSERT gets every column whose default is not
//! deterministic (SERIAL, identity, now(), gen_random_uuid() …) with a value from the main
//! node; UPDATE … SET col = DEFAULT likewise for clock defaults; what cannot be made explicit
//! is refused.

use sqlparser::ast::{
    AssignmentTarget, Expr, Ident, Insert, MergeAction, MergeInsertKind, ObjectName, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableObject, Values,
};

use super::rewrite::{nd_defaults, NdDefault};
use super::statement::{Cx, OVERRIDING_SYSTEM, OVERRIDING_USER};
use super::Schema;
use crate::router::classify::object_key;

/// Column names as PostgreSQL stores them.
pub(super) fn ident_name(id: &Ident) -> String {
    match id.quote_style {
        None => id.value.to_lowercase(),
        Some(_) => id.value.clone(),
    }
}

pub(super) fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

/// `DEFAULT` in a VALUES row or a SET clause.
fn is_default_keyword(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
}

pub(super) fn plan_insert(
    ins: &mut Insert,
    cx: &mut Cx,
    user: Option<&'static str>,
) -> Result<(), String> {
    let schema = cx.schema;
    let (defaults, location) = match &ins.table {
        TableObject::TableName(n) => (
            schema.defaults(&object_key(n)),
            n.0.first()
                .and_then(|p| p.as_ident())
                .map(|id| id.span.start),
        ),
        _ => (None, None),
    };
    let nd = match defaults {
        Some(d) => nd_defaults(&d.columns)?,
        None => Vec::new(),
    };
    let all = defaults.map(|d| d.all_columns.as_slice()).unwrap_or(&[]);
    let table = ins.table.to_string();
    if user == Some(OVERRIDING_USER) && nd.iter().any(|d| d.per_row) {
        return Err(format!(
            "INSERT ... OVERRIDING USER VALUE into {table}: every node would number the identity column itself; leave out OVERRIDING USER VALUE and the identity column"
        ));
    }
    let mut always = false;
    let mut source = ins.source.take();
    match source.as_deref_mut() {
        None if !nd.is_empty() && ins.columns.is_empty() => {
            let mut row = Vec::new();
            for d in &nd {
                row.push(d.instantiate(cx.c)?);
                always |= d.always;
                ins.columns.push(quoted(d.name));
            }
            source = Some(Box::new(values_query(row)));
        }
        None => {}
        Some(q) => match q.body.as_mut() {
            SetExpr::Values(v) => always = plan_values(v, &nd, &mut ins.columns, all, &table, cx)?,
            _ => always = plan_insert_select(q, &nd, &mut ins.columns, all, &table, cx)?,
        },
    }
    ins.source = source;
    if let (Some(clause), Some(at)) = (
        if always {
            Some(OVERRIDING_SYSTEM)
        } else {
            user
        },
        location,
    ) {
        cx.overriding.push((at, clause));
    }
    Ok(())
}

fn values_query(row: Vec<Expr>) -> Query {
    Query {
        with: None,
        body: Box::new(SetExpr::Values(Values {
            explicit_row: false,
            rows: vec![row],
        })),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: Vec::new(),
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: Vec::new(),
    }
}

fn unknown_columns(table: &str) -> String {
    format!("pgproxy does not know the columns of {table}; list the columns in the INSERT")
}

/// INSERT … VALUES: each row gets its own values; DEFAULT and missing columns whose default is
/// not deterministic become explicit. Returns true if an identity ALWAYS column was added.
fn plan_values(
    v: &mut Values,
    nd: &[NdDefault],
    columns: &mut Vec<Ident>,
    all: &[String],
    table: &str,
    cx: &mut Cx,
) -> Result<bool, String> {
    let width = v.rows.iter().map(Vec::len).max().unwrap_or(0);
    let implicit = columns.is_empty();
    let names: Vec<String> = match (implicit, nd.is_empty()) {
        (false, _) => columns.iter().map(ident_name).collect(),
        (true, true) => Vec::new(),
        (true, false) if all.len() < width => return Err(unknown_columns(table)),
        (true, false) => all[..width].to_vec(),
    };
    let missing: Vec<&NdDefault> = nd
        .iter()
        .filter(|d| !names.iter().any(|n| n == d.name))
        .collect();
    let mut always = false;
    for row in &mut v.rows {
        for (j, e) in row.iter_mut().enumerate() {
            let default = names.get(j).and_then(|n| nd.iter().find(|d| d.name == n));
            match default {
                Some(d) if is_default_keyword(e) => {
                    *e = d.instantiate(cx.c)?;
                    always |= d.always;
                }
                _ => cx.once(e)?,
            }
        }
        for d in &missing {
            row.push(d.instantiate(cx.c)?);
            always |= d.always;
        }
    }
    if !missing.is_empty() {
        if implicit {
            *columns = names.iter().map(|n| quoted(n)).collect();
        }
        columns.extend(missing.iter().map(|d| quoted(d.name)));
    }
    Ok(always)
}

/// INSERT … SELECT: per-row calls are refused; missing clock defaults are appended to a plain
/// SELECT's projection; missing per-row defaults are given per row when the SELECT reads rows
/// the statement lists (`batch`), else refused. Returns true if an identity ALWAYS column was
/// added.
fn plan_insert_select(
    q: &mut Query,
    nd: &[NdDefault],
    columns: &mut Vec<Ident>,
    all: &[String],
    table: &str,
    cx: &mut Cx,
) -> Result<bool, String> {
    cx.generic(q, "an INSERT ... SELECT")?;
    if nd.iter().any(|d| d.per_row) {
        if let Some(done) = super::batch::plan_listed(q, nd, columns, all, cx) {
            return done;
        }
    }
    let implicit = columns.is_empty();
    let width = match q.body.as_ref() {
        SetExpr::Select(s)
            if s.projection.iter().all(|i| {
                matches!(
                    i,
                    SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
                )
            }) =>
        {
            Some(s.projection.len())
        }
        _ => None,
    };
    let given: Option<Vec<String>> = match (implicit, width) {
        (false, _) => Some(columns.iter().map(ident_name).collect()),
        (true, Some(n)) if all.len() >= n => Some(all[..n].to_vec()),
        _ => None,
    };
    let missing: Vec<&NdDefault> = nd
        .iter()
        .filter(|d| {
            given
                .as_ref()
                .is_none_or(|g| !g.iter().any(|n| n == d.name))
        })
        .collect();
    let Some(first) = missing.first() else {
        return Ok(false);
    };
    let per_row = missing.iter().find(|d| d.per_row);
    match (per_row, given, q.body.as_mut()) {
        (None, Some(g), SetExpr::Select(s)) => {
            for d in &missing {
                s.projection
                    .push(SelectItem::UnnamedExpr(d.instantiate(cx.c)?));
            }
            if implicit {
                *columns = g.iter().map(|n| quoted(n)).collect();
            }
            columns.extend(missing.iter().map(|d| quoted(d.name)));
            Ok(false)
        }
        (d, _, _) => {
            let d = d.unwrap_or(first);
            Err(format!(
                "INSERT ... SELECT into {table}, whose column {} defaults to {}: every node would evaluate the default itself; list {} in the column list and select its values explicitly, or insert with VALUES",
                d.name, d.text, d.name
            ))
        }
    }
}

/// UPDATE … SET col = DEFAULT: a clock default becomes a literal, a per-row default is refused.
pub(super) fn update_defaults(stmt: &mut Statement, cx: &mut Cx) -> Result<(), String> {
    let Statement::Update {
        table, assignments, ..
    } = stmt
    else {
        return Ok(());
    };
    let TableFactor::Table { name, .. } = &table.relation else {
        return Ok(());
    };
    let Some(defaults) = cx.schema.defaults(&object_key(name)) else {
        return Ok(());
    };
    let nd = nd_defaults(&defaults.columns)?;
    for a in assignments.iter_mut() {
        let AssignmentTarget::ColumnName(col) = &a.target else {
            continue;
        };
        let Some(col) = col.0.last().and_then(|p| p.as_ident()).map(ident_name) else {
            continue;
        };
        let Some(d) = nd.iter().find(|d| d.name == col) else {
            continue;
        };
        if !is_default_keyword(&a.value) {
            continue;
        }
        if d.per_row {
            return Err(format!(
                "UPDATE ... SET {col} = DEFAULT, whose default is {}: each row would get a different value on each node; compute the value in the application",
                d.text
            ));
        }
        a.value = d.instantiate(cx.c)?;
    }
    Ok(())
}

/// MERGE … INSERT into a table whose defaults are not deterministic is refused unless the
/// INSERT gives every such column.
pub(super) fn merge_defaults(stmt: &Statement, schema: &dyn Schema) -> Result<(), String> {
    let Statement::Merge { table, clauses, .. } = stmt else {
        return Ok(());
    };
    let TableFactor::Table { name, .. } = table else {
        return Ok(());
    };
    let Some(defaults) = schema.defaults(&object_key(name)) else {
        return Ok(());
    };
    let nd = nd_defaults(&defaults.columns)?;
    for clause in clauses {
        let MergeAction::Insert(ins) = &clause.action else {
            continue;
        };
        let row: &[Expr] = match &ins.kind {
            MergeInsertKind::Values(v) => v.rows.first().map(Vec::as_slice).unwrap_or(&[]),
            MergeInsertKind::Row => &[],
        };
        let names: Vec<String> = if ins.columns.is_empty() {
            defaults
                .all_columns
                .iter()
                .take(row.len())
                .cloned()
                .collect()
        } else {
            ins.columns.iter().map(ident_name).collect()
        };
        let bad = nd
            .iter()
            .find(|d| match names.iter().position(|n| n == d.name) {
                None => true,
                Some(j) => row.get(j).is_none_or(is_default_keyword),
            });
        if let Some(d) = bad {
            return Err(format!(
                "MERGE ... INSERT into {name}, whose column {} defaults to {}: every node would evaluate the default itself; give {} a value in the INSERT clause",
                d.name, d.text, d.name
            ));
        }
    }
    Ok(())
}

/// COPY … FROM STDIN with a column list: a column left out takes its default on every node,
/// evaluated there. pgproxy fills such columns in only for a COPY alone in its request
/// (`copy::plan_copy`, tried before this), so here a non-deterministic default (serial, now(),
/// gen_random_uuid()) of a column left out is refused.
pub(super) fn copy_defaults(
    table: &ObjectName,
    columns: &[Ident],
    schema: &dyn Schema,
) -> Result<(), String> {
    if columns.is_empty() {
        return Ok(());
    }
    let Some(defaults) = schema.defaults(&object_key(table)) else {
        return Ok(());
    };
    let names: Vec<String> = columns.iter().map(ident_name).collect();
    let nd = nd_defaults(&defaults.columns)?;
    match nd.iter().find(|d| !names.iter().any(|n| n == d.name)) {
        Some(d) => Err(format!(
            "COPY into {table} without column {}, whose default {} every node would evaluate itself (pgproxy fills such columns in only for a COPY alone in its request); list {} in the COPY's column list and send its values",
            d.name, d.text, d.name
        )),
        None => Ok(()),
    }
}
