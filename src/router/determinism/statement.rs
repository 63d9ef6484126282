//! Planning one parsed write statement: where per-row calls may be replaced (INSERT … VALUES
//! rows, a SELECT without FROM, CALL and EXECUTE arguments) and refusals everywhere else;
//! output column names kept when a call becomes a literal.

use sqlparser::ast::{
    AlterTableOperation, ColumnOption, CopySource, Expr, GroupByExpr, Insert, Query, Select,
    SelectItem, SetExpr, Statement, VisitMut,
};
use sqlparser::tokenizer::Location;

use super::defaults::{
    copy_defaults, ident_name, merge_defaults, plan_insert, quoted, update_defaults,
};
use super::rewrite::{builtin_name, has_nd_call, is_nondeterministic, Collector, Rewriter};
use super::Schema;
use crate::router::classify::functions::is_scalar_builtin;
use crate::router::classify::lex::Lexed;

/// `OVERRIDING SYSTEM VALUE`.
pub(super) const OVERRIDING_SYSTEM: &str = "OVERRIDING SYSTEM VALUE";
/// `OVERRIDING USER VALUE`.
pub(super) const OVERRIDING_USER: &str = "OVERRIDING USER VALUE";

/// What planning one statement works with.
pub(super) struct Cx<'a, 's> {
    pub c: &'a mut Collector,
    pub src: &'a Lexed<'s>,
    pub schema: &'a dyn Schema,
    /// OVERRIDING clauses to render: (start of the INSERT's table name, clause).
    pub overriding: Vec<(Location, &'static str)>,
}

impl Cx<'_, '_> {
    pub(super) fn generic<T: VisitMut>(
        &mut self,
        node: &mut T,
        context: &str,
    ) -> Result<(), String> {
        Rewriter::new(self.c, self.src, false, context).run(node)
    }

    pub(super) fn once<T: VisitMut>(&mut self, node: &mut T) -> Result<(), String> {
        Rewriter::new(self.c, self.src, true, "").run(node)
    }
}

/// Plans one statement classified as a write. `user` is an OVERRIDING clause the client wrote
/// (removed before parsing, sqlparser does not know it).
pub(super) fn plan_statement(
    stmt: &mut Statement,
    cx: &mut Cx,
    user: Option<&'static str>,
) -> Result<(), String> {
    match stmt {
        Statement::Insert(ins) => {
            plan_insert(ins, cx, user)?;
            cx.generic(ins, "the ON CONFLICT or RETURNING clause of an INSERT")
        }
        Statement::Update { .. } => {
            update_defaults(stmt, cx)?;
            cx.generic(stmt, "an UPDATE that may touch several rows")
        }
        Statement::Delete(_) => cx.generic(stmt, "a DELETE that may touch several rows"),
        Statement::Merge { .. } => {
            merge_defaults(stmt, cx.schema)?;
            cx.generic(stmt, "a MERGE that may touch several rows")
        }
        Statement::Query(q) => plan_query(q, cx),
        Statement::Explain { statement, .. } => plan_statement(statement, cx, None),
        Statement::CreateTable(ct) => match ct.query.as_mut() {
            Some(q) => cx.generic(q, "CREATE TABLE ... AS, which may insert several rows"),
            None => Ok(()),
        },
        Statement::AlterTable {
            name, operations, ..
        } => check_add_column(&name.to_string(), operations),
        Statement::Copy {
            source:
                CopySource::Table {
                    table_name,
                    columns,
                },
            to: false,
            ..
        } => copy_defaults(table_name, columns, cx.schema),
        Statement::Call(f) => cx.once(&mut f.args),
        Statement::Execute { parameters, .. } => cx.once(parameters),
        _ => Ok(()),
    }
}

fn plan_query(q: &mut Query, cx: &mut Cx) -> Result<(), String> {
    if let Some(w) = q.with.as_mut() {
        for cte in &mut w.cte_tables {
            plan_body(&mut cte.query.body, cx)?;
        }
    }
    plan_body(&mut q.body, cx)?;
    if let SetExpr::Select(s) = q.body.as_mut() {
        if is_single_row(s) {
            cx.once(&mut s.projection)?;
        }
    }
    cx.generic(q, "a query that may return several rows")
}

fn plan_body(body: &mut SetExpr, cx: &mut Cx) -> Result<(), String> {
    match body {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
            plan_statement(s, cx, None)
        }
        SetExpr::Query(q) => plan_query(q, cx),
        _ => Ok(()),
    }
}

/// A SELECT without FROM, WHERE, GROUP BY or HAVING whose functions are known scalar
/// built-ins returns exactly one row: a per-row call in it is evaluated once.
fn is_single_row(s: &Select) -> bool {
    let grouped = !matches!(&s.group_by, GroupByExpr::Expressions(v, _) if v.is_empty());
    if !s.from.is_empty() || s.selection.is_some() || s.having.is_some() || grouped {
        return false;
    }
    sqlparser::ast::visit_expressions(&s.projection, |e| match e {
        Expr::Function(f) => match builtin_name(&f.name) {
            Some(n) if is_nondeterministic(&n) || is_scalar_builtin(&n) => {
                std::ops::ControlFlow::Continue(())
            }
            _ => std::ops::ControlFlow::Break(()),
        },
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_continue()
}

/// ALTER TABLE … ADD COLUMN with a non-deterministic default fills existing rows per node.
fn check_add_column(table: &str, ops: &[AlterTableOperation]) -> Result<(), String> {
    for op in ops {
        let AlterTableOperation::AddColumn { column_def: c, .. } = op else {
            continue;
        };
        let serial = matches!(
            c.data_type.to_string().to_ascii_lowercase().as_str(),
            "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
        );
        let nd = c.options.iter().any(|o| match &o.option {
            ColumnOption::Default(e) => has_nd_call(e),
            ColumnOption::Generated {
                generation_expr: None,
                ..
            } => true,
            _ => false,
        });
        if serial || nd {
            return Err(format!(
                "ALTER TABLE {table} ADD COLUMN {} with a non-deterministic default: every node would fill the existing rows with its own values; add the column without a default, fill it with an UPDATE that uses literal values, then set the default",
                c.name
            ));
        }
    }
    Ok(())
}

/// Keeps the column names a client sees when a call in an output list becomes a literal:
/// `SELECT nextval('s')` still returns a column named `nextval`.
pub(super) fn name_outputs(stmt: &mut Statement) {
    match stmt {
        Statement::Query(q) => name_query_outputs(q),
        Statement::Insert(Insert { returning, .. })
        | Statement::Update { returning, .. }
        | Statement::Delete(sqlparser::ast::Delete { returning, .. }) => {
            if let Some(items) = returning {
                name_items(items);
            }
        }
        _ => {}
    }
}

fn name_query_outputs(q: &mut Query) {
    let mut body = q.body.as_mut();
    loop {
        match body {
            SetExpr::Select(s) => return name_items(&mut s.projection),
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(inner) => body = inner.body.as_mut(),
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) => return name_outputs(s),
            _ => return,
        }
    }
}

fn name_items(items: &mut [SelectItem]) {
    for item in items {
        let SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        if let (true, Some(name)) = (has_nd_call(e), column_name(e)) {
            let expr = std::mem::replace(e, Expr::value(sqlparser::ast::Value::Null));
            *item = SelectItem::ExprWithAlias {
                expr,
                alias: quoted(&name),
            };
        }
    }
}

/// PostgreSQL's output column name for a call or a cast of one (FigureColname).
fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(ident_name),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => column_name(expr),
        _ => None,
    }
}
