//! Writes whose rows depend on the order a node happens to scan them in. Every node of a shard
//! runs the same SQL, but their tables are not laid out the same on disk (concurrent writers
//! reach the nodes in different interleavings, vacuum runs at different times), so a write that
//! picks "some" rows — a `LIMIT` without `ORDER BY`, `SKIP LOCKED`, a `TABLESAMPLE`, a `ctid`,
//! `DISTINCT ON` without `ORDER BY`, `row_number()` or `string_agg()` over an unordered input
//! — can pick different rows on each node, and the nodes silently diverge (the affected-row
//! count still agrees). pgproxy refuses such a write and says how to make it deterministic.
//! Pure: no IO.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Distinct, Expr, Function, FunctionArgumentClause, FunctionArguments, NamedWindowExpr, NonBlock,
    Query, SetExpr, Statement, TableFactor, Visit, Visitor, WindowType,
};

/// Why the rows `stmt` (already classified as a write) touches or produces may differ between
/// nodes, if they may.
pub(super) fn check(stmt: &Statement) -> Result<(), String> {
    let mut v = Selection::default();
    // `SELECT … LIMIT n FOR UPDATE` only locks rows (Django's select_for_update().get() and
    // update_or_create() send it): the rows a later write changes are named by that write.
    if let Statement::Query(q) = stmt {
        if !q.locks.is_empty() {
            v.locking_only = Some(q.as_ref() as *const Query);
        }
    }
    match stmt.visit(&mut v) {
        ControlFlow::Break(reason) => Err(format!(
            "{reason}: the nodes of a replicated shard could pick different rows and silently diverge"
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[derive(Default)]
struct Selection {
    /// Subqueries of EXISTS: only whether they return a row matters, not which.
    exists: Vec<*const Query>,
    /// Named windows (`WINDOW w AS (…)`) and whether they order their rows.
    windows: HashMap<String, bool>,
    /// A top-level `SELECT … FOR UPDATE/SHARE`: its LIMIT picks rows to lock, not to change.
    locking_only: Option<*const Query>,
}

impl Visitor for Selection {
    type Break = String;

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
        if let SetExpr::Select(s) = q.body.as_ref() {
            for w in &s.named_window {
                if let NamedWindowExpr::WindowSpec(spec) = &w.1 {
                    let ordered = !spec.order_by.is_empty() || spec.window_name.is_some();
                    let e = self.windows.entry(w.0.value.to_lowercase()).or_insert(true);
                    *e &= ordered;
                }
            }
        }
        if q.locks
            .iter()
            .any(|l| matches!(l.nonblock, Some(NonBlock::SkipLocked)))
        {
            return ControlFlow::Break(
                "a write with SKIP LOCKED (each node skips the rows its own other transactions \
                 hold); on a replicated shard take the rows by key instead, e.g. SELECT … ORDER \
                 BY id LIMIT n FOR UPDATE without SKIP LOCKED"
                    .into(),
            );
        }
        let unordered = q.order_by.is_none();
        let limited = q.limit_clause.is_some() || q.fetch.is_some();
        let exists = self.exists.contains(&(q as *const Query))
            || self.locking_only == Some(q as *const Query);
        if unordered && limited && !exists && has_rows_to_choose(&q.body) {
            return ControlFlow::Break(
                "a write that uses LIMIT, OFFSET or FETCH without ORDER BY (which rows it takes \
                 depends on each node's physical row order); add an ORDER BY that orders the \
                 rows completely, e.g. by the primary key"
                    .into(),
            );
        }
        if let SetExpr::Select(s) = q.body.as_ref() {
            if matches!(s.distinct, Some(Distinct::On(_))) && unordered {
                return ControlFlow::Break(
                    "a write that uses DISTINCT ON without ORDER BY (which row of each group it \
                     keeps depends on each node's physical row order); add an ORDER BY that \
                     orders each group's rows completely"
                        .into(),
                );
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        if let TableFactor::Table {
            sample: Some(_), ..
        } = t
        {
            return ControlFlow::Break(
                "a write that reads a TABLESAMPLE (each node samples its own pages)".into(),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        match e {
            Expr::Exists { subquery, .. } => self.exists.push(subquery.as_ref() as *const Query),
            Expr::Identifier(id)
                if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("ctid") =>
            {
                return ControlFlow::Break(ctid());
            }
            Expr::CompoundIdentifier(parts)
                if parts.last().is_some_and(|id| {
                    id.quote_style.is_none() && id.value.eq_ignore_ascii_case("ctid")
                }) =>
            {
                return ControlFlow::Break(ctid());
            }
            Expr::Function(f) => return self.function(f),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Selection {
    fn function(&self, f: &Function) -> ControlFlow<String> {
        let name = match f.name.0.last().and_then(|p| p.as_ident()) {
            Some(id) => id.value.to_lowercase(),
            None => return ControlFlow::Continue(()),
        };
        match &f.over {
            Some(w) if ORDER_DEPENDENT_WINDOW.contains(&name.as_str()) && !self.ordered(w) => {
                ControlFlow::Break(format!(
                    "a write that uses {name}() over a window without ORDER BY (its value per \
                     row depends on each node's physical row order); add an ORDER BY to the \
                     window that orders the rows completely"
                ))
            }
            None if ORDER_DEPENDENT_AGGREGATE.contains(&name.as_str()) && !agg_ordered(f) => {
                ControlFlow::Break(format!(
                    "a write that uses {name}() without ORDER BY inside the call (the order of \
                     the result depends on each node's physical row order); write it as \
                     {name}(… ORDER BY …) with an order that is complete"
                ))
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn ordered(&self, w: &WindowType) -> bool {
        let named = |n: &sqlparser::ast::Ident| {
            self.windows
                .get(&n.value.to_lowercase())
                .copied()
                .unwrap_or(false)
        };
        match w {
            WindowType::WindowSpec(spec) => {
                !spec.order_by.is_empty() || spec.window_name.as_ref().is_some_and(named)
            }
            WindowType::NamedWindow(n) => named(n),
        }
    }
}

/// Window functions whose value depends on the order of rows within the window.
const ORDER_DEPENDENT_WINDOW: &[&str] = &[
    "row_number",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// Aggregates whose result depends on the order of their input rows.
const ORDER_DEPENDENT_AGGREGATE: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_agg_strict",
    "jsonb_agg_strict",
    "json_object_agg",
    "jsonb_object_agg",
    "xmlagg",
];

fn agg_ordered(f: &Function) -> bool {
    match &f.args {
        FunctionArguments::List(l) => l
            .clauses
            .iter()
            .any(|c| matches!(c, FunctionArgumentClause::OrderBy(v) if !v.is_empty())),
        _ => false,
    }
}

fn ctid() -> String {
    "a write that uses ctid (a row's physical address, different on each node); use the \
     primary key instead"
        .into()
}

/// A query body that reads rows from somewhere: a SELECT with a FROM, VALUES of several rows,
/// a set operation. `SELECT 1 LIMIT 1` has nothing to choose from.
fn has_rows_to_choose(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => !s.from.is_empty(),
        SetExpr::Values(v) => v.rows.len() > 1,
        SetExpr::Query(q) => has_rows_to_choose(&q.body),
        _ => true,
    }
}
