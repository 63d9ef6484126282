//! How to merge a SELECT run on several shards into the one answer a single PostgreSQL would
//! give: the statement each shard runs (AVG rewritten to SUM and COUNT, LIMIT widened by the
//! OFFSET, hidden columns appended for ORDER BY / GROUP BY expressions the select list lacks),
//! and what pgproxy does with the rows (streaming k-way merge on the ORDER BY, or combining
//! groups of partial aggregates, then OFFSET / LIMIT). Whatever it cannot merge exactly is an
//! `Err` with the reason. Pure.

use super::colname;
use sqlparser::ast::{
    BinaryOperator, Distinct, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, ObjectNamePart, OrderByKind,
    Query, SelectItem, SetExpr, Value, Visit, Visitor,
};
use std::ops::ControlFlow;

/// A column of the rows the shards return: a client-visible position, or the n-th hidden
/// column appended at the end (dropped before the client sees the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// 0-based visible position.
    Pos(usize),
    /// 0-based index among the hidden columns.
    Hidden(usize),
}

/// How partial aggregates combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// count(): sum of the counts.
    Count,
    /// sum(): sum, NULL when every part is NULL.
    Sum,
    /// min().
    Min,
    /// max().
    Max,
    /// avg(): the column holds sum(x); `count` holds count(x).
    Avg {
        /// The hidden count column.
        count: Col,
    },
}

/// What to do with the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeKind {
    /// Plain rows: merged in ORDER BY order (each shard sorts), or concatenated.
    Rows,
    /// Groups: rows with equal `keys` combine (`None`: every visible column, for DISTINCT);
    /// `aggs` say how; other columns keep the first value seen (they depend on the keys).
    Group {
        /// Group key columns.
        keys: Option<Vec<Col>>,
        /// Aggregate columns.
        aggs: Vec<(Col, Agg)>,
    },
}

/// One ORDER BY key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// The column.
    pub col: Col,
    /// DESC.
    pub desc: bool,
    /// NULLS FIRST (PostgreSQL's default: NULLS LAST for ASC, FIRST for DESC).
    pub nulls_first: bool,
}

/// A LIMIT or OFFSET count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// A literal.
    Lit(u64),
    /// `$n`.
    Param(usize),
}

/// The merge of one multi-shard SELECT.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSpec {
    /// The statement each shard runs.
    pub sql: String,
    /// Hidden columns at the end of each row.
    pub hidden: usize,
    /// Rows or groups.
    pub kind: MergeKind,
    /// ORDER BY (applied by the k-way merge, or after grouping).
    pub order: Vec<SortKey>,
    /// LIMIT.
    pub limit: Option<Count>,
    /// OFFSET.
    pub offset: Option<Count>,
}

const AGGREGATES: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "xmlagg",
    "range_agg",
    "range_intersect_agg",
    "any_value",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "grouping",
];

fn func_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => id.value.to_lowercase(),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [n] => Some(n.clone()),
        [s, n] if s == "pg_catalog" => Some(n.clone()),
        _ => None,
    }
}

/// The mergeable aggregate an expression is, if it is one: count/sum/min/max/avg with one
/// plain argument (count(*) included), no DISTINCT, FILTER, ORDER BY or OVER.
fn simple_agg(e: &Expr) -> Option<(&'static str, Option<Expr>)> {
    let Expr::Function(f) = e else { return None };
    let name = func_name(&f.name)?;
    let name: &'static str = match name.as_str() {
        "count" => "count",
        "sum" => "sum",
        "min" => "min",
        "max" => "max",
        "avg" => "avg",
        _ => return None,
    };
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    if matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct))
        || !list.clauses.is_empty()
        || list.args.len() != 1
    {
        return None;
    }
    match &list.args[0] {
        FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "count" => Some((name, None)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some((name, Some(x.clone()))),
        _ => None,
    }
}

/// Finds aggregate or window calls anywhere in an expression (not inside subqueries).
#[derive(Default)]
struct AggScan {
    aggregates: usize,
    window: bool,
    other_agg: Option<String>,
    /// A function pgproxy does not know: it could be a user-defined aggregate.
    unknown: Option<String>,
    hex: bool,
    /// A COLLATE whose order is not byte order: merging by bytes would order or pick
    /// (min/max) differently from PostgreSQL.
    odd_collate: Option<String>,
    depth: usize,
}

impl Visitor for AggScan {
    type Break = ();
    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = e {
            // sqlparser prints 0x1F back as X'1F' (a bit string in PostgreSQL).
            self.hex |= matches!(v.value, Value::HexStringLiteral(_));
        }
        if let Expr::Collate { collation, .. } = e {
            let name = collation
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.clone())
                .unwrap_or_default();
            if !BYTE_ORDER_COLLATIONS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&name))
            {
                self.odd_collate.get_or_insert(collation.to_string());
            }
        }
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        if let Expr::Function(f) = e {
            if f.over.is_some() {
                self.window = true;
            }
            if let Some(n) = func_name(&f.name) {
                if matches!(n.as_str(), "count" | "sum" | "min" | "max" | "avg") {
                    self.aggregates += 1;
                } else if AGGREGATES.contains(&n.as_str()) {
                    self.other_agg = Some(n);
                } else if crate::router::classify::functions::READ_ONLY
                    .binary_search(&n.as_str())
                    .is_err()
                {
                    self.unknown = Some(n);
                }
            } else {
                self.unknown = Some(f.name.to_string());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Collations that order text as pgproxy compares it (bytes), or as the database's default
/// (which the session checks is byte order before it merges text by order).
const BYTE_ORDER_COLLATIONS: &[&str] = &["C", "POSIX", "ucs_basic", "default"];

/// Refuses a COLLATE other than byte order in a select-list item, GROUP BY or ORDER BY.
fn no_odd_collate(s: &AggScan) -> Result<(), String> {
    match &s.odd_collate {
        Some(c) => Err(format!(
            "COLLATE {c} across shards is not supported (pgproxy merges text in byte order)"
        )),
        None => Ok(()),
    }
}

fn scan(e: &Expr) -> AggScan {
    let mut s = AggScan::default();
    let _ = e.visit(&mut s);
    s
}

/// Types a LIMIT / OFFSET count may be cast to: PostgreSQL turns the count into a bigint, so
/// only the value matters (drivers write `LIMIT $1::INTEGER`). Sized types (`numeric(3, 1)`)
/// may change the value: not here.
const COUNT_TYPES: &[&str] = &[
    "bigint", "decimal", "int", "int2", "int4", "int8", "integer", "numeric", "smallint",
];

/// Why `spec` gave up on a negative LIMIT / OFFSET literal: PostgreSQL fails such a query
/// (2201W / 2201X) whatever the rows, so one shard runs it and reports the error.
pub const NEGATIVE_COUNT: &str = "a negative LIMIT/OFFSET fails on any shard";

/// A LIMIT / OFFSET count: a whole number, a parameter or NULL (no limit, no offset), possibly
/// in parentheses or cast to an integer type.
fn count_expr(e: &Expr) -> Result<Option<Count>, String> {
    const WHAT: &str = "LIMIT/OFFSET must be a number or a parameter (optionally cast to an integer type) across shards";
    match e {
        Expr::UnaryOp {
            op: sqlparser::ast::UnaryOperator::Minus,
            expr,
        } => match count_expr(expr)? {
            Some(Count::Lit(0)) => Ok(Some(Count::Lit(0))),
            Some(Count::Lit(_)) => Err(NEGATIVE_COUNT.into()),
            _ => Err(WHAT.into()),
        },
        Expr::Value(v) => match &v.value {
            Value::Number(n, _)
                if n.starts_with('-') && !n.trim_start_matches(['-', '0']).is_empty() =>
            {
                Err(NEGATIVE_COUNT.into())
            }
            Value::Number(n, _) => n
                .parse::<u64>()
                .map(|n| Some(Count::Lit(n)))
                .map_err(|_| format!("LIMIT/OFFSET {n} is not a whole number")),
            // `LIMIT '5'`: PostgreSQL reads the literal as a bigint.
            Value::SingleQuotedString(s) => s
                .trim()
                .parse::<u64>()
                .map(|n| Some(Count::Lit(n)))
                .map_err(|_| WHAT.to_string()),
            Value::Null => Ok(None),
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .map(|n| Some(Count::Param(n)))
                .ok_or_else(|| WHAT.to_string()),
            _ => Err(WHAT.into()),
        },
        Expr::Nested(inner) => count_expr(inner),
        Expr::Cast {
            kind: sqlparser::ast::CastKind::Cast | sqlparser::ast::CastKind::DoubleColon,
            expr,
            data_type,
            format: None,
        } if COUNT_TYPES.contains(&data_type.to_string().to_ascii_lowercase().as_str()) => {
            count_expr(expr)
        }
        _ => Err(WHAT.into()),
    }
}

/// How each shard's statement writes a count: a literal as a number; a parameter as the client
/// wrote it (`src`, so that `$1::INTEGER` keeps the parameter's type: the client binds an int4),
/// cast to bigint (`$1 + $2` alone is ambiguous to PostgreSQL's parameter type inference).
fn count_to_expr(c: Count, src: Option<&Expr>) -> Expr {
    match c {
        Count::Lit(n) => Expr::value(Value::Number(n.to_string(), false)),
        Count::Param(n) => Expr::Cast {
            kind: sqlparser::ast::CastKind::Cast,
            expr: Box::new(
                src.map(strip_nested)
                    .cloned()
                    .unwrap_or_else(|| Expr::value(Value::Placeholder(format!("${n}")))),
            ),
            data_type: sqlparser::ast::DataType::BigInt(None),
            format: None,
        },
    }
}

fn strip_nested(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip_nested(inner),
        other => other,
    }
}

/// The merge of a SELECT that may run on several shards, or why it cannot be merged.
pub fn spec(q: &Query, original: &str) -> Result<MergeSpec, String> {
    let mut q = q.clone();
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return Err("UNION / INTERSECT / EXCEPT across shards is not supported".into());
    };
    if sel.into.is_some() {
        return Err("SELECT … INTO across shards is not supported".into());
    }
    if sel.having.is_some() {
        return Err("HAVING across shards is not supported".into());
    }
    if matches!(sel.distinct, Some(Distinct::On(_))) {
        return Err("DISTINCT ON across shards is not supported".into());
    }
    if q.fetch.as_ref().is_some_and(|f| f.with_ties || f.percent) {
        return Err("FETCH … WITH TIES / PERCENT across shards is not supported".into());
    }
    let group_exprs: Vec<Expr> = match &sel.group_by {
        GroupByExpr::Expressions(e, mods) if mods.is_empty() => e.clone(),
        _ => {
            return Err(
                "GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS across shards is not supported"
                    .into(),
            )
        }
    };
    if group_exprs
        .iter()
        .any(|e| matches!(e, Expr::Rollup(_) | Expr::Cube(_) | Expr::GroupingSets(_)))
    {
        return Err("ROLLUP / CUBE / GROUPING SETS across shards is not supported".into());
    }
    for g in &group_exprs {
        no_odd_collate(&scan(g))?;
    }
    let wildcard = sel.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    // The select list as written (before avg is rewritten), for matching ORDER BY / GROUP BY.
    let items: Vec<(Option<Expr>, Option<String>)> = sel
        .projection
        .iter()
        .map(|i| match i {
            SelectItem::UnnamedExpr(e) => (Some(e.clone()), None),
            SelectItem::ExprWithAlias { expr, alias } => (
                Some(expr.clone()),
                Some(crate::router::classify::ident_key(
                    &alias.value,
                    alias.quote_style,
                )),
            ),
            _ => (None, None),
        })
        .collect();
    // Their output names, as PostgreSQL reads a bare name in ORDER BY.
    let names: Vec<colname::Figured> = sel.projection.iter().map(colname::item_name).collect();
    let mut rewritten = false;
    let mut whole = AggScan::default();
    let _ = sel.visit(&mut whole);
    if whole.hex {
        return Err("hexadecimal literals across shards are not supported".into());
    }
    let mut aggs: Vec<(Col, Agg)> = Vec::new();
    let mut hidden: Vec<SelectItem> = Vec::new();
    let mut any_agg = false;
    for (i, item) in sel.projection.iter_mut().enumerate() {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e.clone(), None),
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
            _ => continue,
        };
        let s = scan(&expr);
        no_odd_collate(&s)?;
        if s.window {
            return Err("window functions across shards are not supported".into());
        }
        if let Some(n) = s.other_agg {
            return Err(format!(
                "aggregate {n}() across shards is not supported (count, sum, min, max and avg are)"
            ));
        }
        if s.aggregates == 0 {
            continue;
        }
        any_agg = true;
        let Some((name, arg)) = simple_agg(&expr) else {
            return Err("an aggregate inside an expression, or with DISTINCT / FILTER / ORDER BY, cannot be merged across shards: select the plain aggregate".into());
        };
        let agg = match name {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "min" => Agg::Min,
            "max" => Agg::Max,
            _ => {
                let arg = arg.expect("avg has an argument");
                let count = Col::Hidden(hidden.len());
                hidden.push(SelectItem::UnnamedExpr(call("count", arg.clone())));
                rewritten = true;
                *item = SelectItem::ExprWithAlias {
                    expr: call("sum", arg),
                    alias: alias.unwrap_or_else(|| Ident::new("avg")),
                };
                Agg::Avg { count }
            }
        };
        aggs.push((Col::Pos(i), agg));
    }
    // Aggregates in ORDER BY make the query an aggregate too (one row).
    let order_aggs = q.order_by.as_ref().is_some_and(|ob| match &ob.kind {
        OrderByKind::Expressions(v) => v.iter().any(|o| scan(&o.expr).aggregates > 0),
        _ => false,
    });
    let grouped = any_agg || order_aggs || !group_exprs.is_empty();
    let distinct = matches!(sel.distinct, Some(Distinct::Distinct));
    if grouped && wildcard {
        return Err(
            "SELECT * with GROUP BY or aggregates across shards is not supported: name the columns"
                .into(),
        );
    }
    if grouped && distinct {
        return Err("SELECT DISTINCT with aggregates across shards is not supported".into());
    }
    // A select-list position for an ORDER BY / GROUP BY item: a number, an output alias, or
    // the same expression. With `*` in the list, positions of named items are unknown.
    let find = |e: &Expr| -> Option<usize> {
        if let Expr::Value(v) = e {
            if let Value::Number(n, _) = &v.value {
                return n.parse::<usize>().ok().filter(|n| *n >= 1).map(|n| n - 1);
            }
        }
        if wildcard {
            return None;
        }
        if let Expr::Identifier(id) = e {
            let key = crate::router::classify::ident_key(&id.value, id.quote_style);
            if let Some(p) = items
                .iter()
                .position(|(_, a)| a.as_deref() == Some(key.as_str()))
            {
                return Some(p);
            }
        }
        items.iter().position(|(x, _)| x.as_ref() == Some(e))
    };
    // With `*`, an ORDER BY alias stands for its expression.
    let alias_expr = |e: &Expr| -> Option<Expr> {
        let Expr::Identifier(id) = e else { return None };
        let key = crate::router::classify::ident_key(&id.value, id.quote_style);
        items
            .iter()
            .find(|(_, a)| a.as_deref() == Some(key.as_str()))
            .and_then(|(x, _)| x.clone())
    };
    let mut keys = Vec::new();
    for g in &group_exprs {
        // PostgreSQL reads a bare name in GROUP BY as an input column first, an output alias
        // second: an alias standing for another expression is ambiguous here.
        if let Some(x) = alias_expr(g) {
            if x != *g {
                return Err("GROUP BY an output alias across shards is not supported: group by the expression".into());
            }
        }
        match find(g) {
            Some(p) => keys.push(Col::Pos(p)),
            None => {
                keys.push(Col::Hidden(hidden.len()));
                hidden.push(SelectItem::UnnamedExpr(g.clone()));
            }
        }
    }
    let mut order = Vec::new();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(exprs) = &ob.kind else {
            return Err("ORDER BY ALL across shards is not supported".into());
        };
        for o in exprs {
            if matches!(o.expr, Expr::Collate { .. }) {
                return Err("ORDER BY … COLLATE across shards is not supported".into());
            }
            let s = scan(&o.expr);
            no_odd_collate(&s)?;
            if s.window || s.other_agg.is_some() {
                return Err("this ORDER BY cannot be merged across shards".into());
            }
            let named = if wildcard {
                None
            } else {
                order_by_name(&o.expr, &names, &items)?
            };
            let col = match named.or_else(|| find(&o.expr)) {
                Some(p) => Col::Pos(p),
                None if distinct => {
                    return Err(
                        "with DISTINCT, ORDER BY expressions must appear in the select list".into(),
                    )
                }
                None if grouped => {
                    if let Some(k) = group_exprs.iter().position(|g| *g == o.expr) {
                        keys[k]
                    } else if let Some((name, _)) = simple_agg(&o.expr).filter(|(n, _)| *n != "avg")
                    {
                        let c = Col::Hidden(hidden.len());
                        hidden.push(SelectItem::UnnamedExpr(o.expr.clone()));
                        aggs.push((
                            c,
                            match name {
                                "count" => Agg::Count,
                                "sum" => Agg::Sum,
                                "min" => Agg::Min,
                                _ => Agg::Max,
                            },
                        ));
                        c
                    } else {
                        return Err("ORDER BY an expression that is neither a selected column, a GROUP BY key nor a plain aggregate cannot be merged across shards".into());
                    }
                }
                None => {
                    let c = Col::Hidden(hidden.len());
                    let e = alias_expr(&o.expr).unwrap_or_else(|| o.expr.clone());
                    hidden.push(SelectItem::UnnamedExpr(e));
                    c
                }
            };
            let desc = o.options.asc == Some(false);
            order.push(SortKey {
                col,
                desc,
                nulls_first: o.options.nulls_first.unwrap_or(desc),
            });
        }
    }
    let (mut limit, mut offset) = (None, None);
    // The counts as written, for the statement each shard runs.
    let (mut limit_src, mut offset_src): (Option<Expr>, Option<Expr>) = (None, None);
    match &q.limit_clause {
        None => {}
        Some(LimitClause::LimitOffset {
            limit: l,
            offset: o,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err("LIMIT BY is not supported".into());
            }
            limit = l.as_ref().map(count_expr).transpose()?.flatten();
            offset = o
                .as_ref()
                .map(|o| count_expr(&o.value))
                .transpose()?
                .flatten();
            limit_src = l.clone();
            offset_src = o.as_ref().map(|o| o.value.clone());
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => {
            return Err("LIMIT a, b is not PostgreSQL syntax".into())
        }
    }
    if let Some(f) = &q.fetch {
        rewritten = true;
        limit = f
            .quantity
            .as_ref()
            .map(count_expr)
            .transpose()?
            .flatten()
            .or(Some(Count::Lit(1)));
        limit_src = f.quantity.clone();
        q.fetch = None;
    }
    for (j, h) in hidden.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(e) = h {
            *h = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', format!("__pgproxy_{j}")),
            };
        }
    }
    let n_hidden = hidden.len();
    rewritten |= n_hidden > 0;
    sel.projection.extend(hidden);
    // What each shard runs.
    if grouped || distinct {
        rewritten |= q.order_by.is_some() || q.limit_clause.is_some();
        if q.order_by
            .as_ref()
            .is_some_and(|ob| ob.to_string().contains('$'))
        {
            return Err(
                "a parameter in ORDER BY of a grouped read across shards is not supported".into(),
            );
        }
        q.order_by = None;
        // Parameters of the LIMIT / OFFSET pgproxy applies itself stay referenced (the client
        // binds them), in a form that limits nothing.
        q.limit_clause = unused_counts(
            limit.map(|c| (c, limit_src.as_ref())),
            offset.map(|c| (c, offset_src.as_ref())),
        );
    } else if limit.is_none() && matches!(offset, Some(Count::Param(_))) {
        rewritten = true;
        q.limit_clause = unused_counts(None, offset.map(|c| (c, offset_src.as_ref())));
    } else {
        let lim = |c: Count| count_to_expr(c, limit_src.as_ref());
        let off = |c: Count| count_to_expr(c, offset_src.as_ref());
        rewritten |= offset.is_some();
        let widened = match (limit, offset) {
            (Some(Count::Lit(l)), Some(Count::Lit(o))) => {
                Some(lim(Count::Lit(l.saturating_add(o))))
            }
            (Some(l), Some(o)) => Some(Expr::BinaryOp {
                left: Box::new(lim(l)),
                op: BinaryOperator::Plus,
                right: Box::new(off(o)),
            }),
            (Some(l), None) => Some(lim(l)),
            (None, _) => None,
        };
        q.limit_clause = widened.map(|l| LimitClause::LimitOffset {
            limit: Some(l),
            offset: None,
            limit_by: vec![],
        });
    }
    let kind = if grouped {
        MergeKind::Group {
            keys: Some(keys),
            aggs,
        }
    } else if distinct {
        MergeKind::Group {
            keys: None,
            aggs: Vec::new(),
        }
    } else {
        MergeKind::Rows
    };
    // The original text when nothing changed (re-printing could alter details).
    let sql = if rewritten {
        q.to_string()
    } else {
        original.to_string()
    };
    Ok(MergeSpec {
        sql,
        hidden: n_hidden,
        kind,
        order,
        limit,
        offset,
    })
}

/// `LIMIT NULLIF($l, $l) OFFSET NULLIF($o, $o)` for the parameters among `limit` / `offset`:
/// NULL is no limit and no offset, and the statement still uses every parameter.
/// Each count comes with the expression the client wrote.
fn unused_counts(
    limit: Option<(Count, Option<&Expr>)>,
    offset: Option<(Count, Option<&Expr>)>,
) -> Option<LimitClause> {
    let nullif = |c: Option<(Count, Option<&Expr>)>| match c {
        Some((Count::Param(n), src)) => {
            let p = count_to_expr(Count::Param(n), src);
            let text = format!("NULLIF({p}, {p})");
            sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(&text)
                .and_then(|mut parser| parser.parse_expr())
                .ok()
        }
        _ => None,
    };
    let (l, o) = (nullif(limit), nullif(offset));
    if l.is_none() && o.is_none() {
        return None;
    }
    Some(LimitClause::LimitOffset {
        limit: l,
        offset: o.map(|value| sqlparser::ast::Offset {
            value,
            rows: sqlparser::ast::OffsetRows::None,
        }),
        limit_by: vec![],
    })
}

fn call(name: &str, arg: Expr) -> Expr {
    let text = format!("{name}({arg})");
    sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_expr())
        .unwrap_or(arg)
}

/// Why the rows of a read whose only sharded table sits in a subquery cannot be merged
/// (refusal text, without the "add the key" advice).
const SUBQUERY_ONLY: &str = "this statement reads a sharded table only inside a subquery or CTE, without its sharding key, \
     and pgproxy merges across shards only reads of a sharded table in the top-level FROM \
     or in one plain subquery in FROM";

/// A read whose FROM is one subquery over one sharded table (`SELECT count(*) FROM (SELECT …
/// FROM contacts WHERE …) AS anon_1`, SQLAlchemy's `Query.count()`): the subquery's rows are
/// the union of each shard's, so the outer query merges like a read of the table itself, if
/// and only if the subquery works row by row: no LIMIT / OFFSET / FETCH, DISTINCT, GROUP BY,
/// HAVING, aggregate, window, set operation, CTE, join or function pgproxy does not know (a
/// user aggregate). `is_sharded` says whether a table name is sharded. `Err`: why not.
pub fn derived_rows(q: &Query, is_sharded: &dyn Fn(&ObjectName) -> bool) -> Result<(), String> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(SUBQUERY_ONLY.into());
    };
    let [from] = sel.from.as_slice() else {
        return Err(SUBQUERY_ONLY.into());
    };
    let sqlparser::ast::TableFactor::Derived {
        lateral: false,
        subquery,
        ..
    } = &from.relation
    else {
        return Err(SUBQUERY_ONLY.into());
    };
    if !from.joins.is_empty() {
        return Err(SUBQUERY_ONLY.into());
    }
    let SetExpr::Select(inner) = subquery.body.as_ref() else {
        return Err("UNION / INTERSECT / EXCEPT in a subquery over a sharded table cannot be merged across shards".into());
    };
    let table = match inner.from.as_slice() {
        [t] if t.joins.is_empty() => match &t.relation {
            sqlparser::ast::TableFactor::Table {
                name, args: None, ..
            } if is_sharded(name) => name.to_string(),
            _ => return Err(SUBQUERY_ONLY.into()),
        },
        _ => return Err(SUBQUERY_ONLY.into()),
    };
    let not_rowwise = |what: &str| {
        Err(format!(
            "the subquery over sharded table {table} uses {what}: its rows on each shard do not add up to its rows on one PostgreSQL, so the query cannot be merged across shards"
        ))
    };
    if subquery.with.is_some() {
        return not_rowwise("WITH");
    }
    if subquery.limit_clause.is_some() || subquery.fetch.is_some() {
        return not_rowwise("LIMIT / OFFSET / FETCH");
    }
    if sel.into.is_some() || inner.into.is_some() || !subquery.locks.is_empty() {
        return Err(SUBQUERY_ONLY.into());
    }
    if inner.distinct.is_some() {
        return not_rowwise("DISTINCT");
    }
    if !matches!(&inner.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        || inner.having.is_some()
    {
        return not_rowwise("GROUP BY / HAVING");
    }
    if !inner.named_window.is_empty() || inner.qualify.is_some() {
        return not_rowwise("a window");
    }
    let mut s = AggScan::default();
    for item in &inner.projection {
        let _ = item.visit(&mut s);
    }
    if s.window {
        return not_rowwise("a window function");
    }
    if s.aggregates > 0 || s.other_agg.is_some() {
        return not_rowwise("an aggregate");
    }
    if let Some(f) = s.unknown {
        return not_rowwise(&format!(
            "{f}(), which pgproxy does not know (it may be an aggregate)"
        ));
    }
    Ok(())
}

/// The refusal of a read whose sharded tables are all inside subqueries.
pub fn subquery_only() -> String {
    SUBQUERY_ONLY.into()
}

/// The output column a bare name in ORDER BY stands for, as PostgreSQL reads it: the select
/// items of that name (an alias, or the name PostgreSQL gives an unaliased expression); two of
/// them with different expressions make PostgreSQL fail (42702), so the read is not merged.
fn order_by_name(
    e: &Expr,
    names: &[colname::Figured],
    items: &[(Option<Expr>, Option<String>)],
) -> Result<Option<usize>, String> {
    let Expr::Identifier(id) = e else {
        return Ok(None);
    };
    let key = crate::router::classify::ident_key(&id.value, id.quote_style);
    let matching: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n, Some((name, s)) if *s > 0 && *name == key))
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = matching.first() else {
        if names.iter().any(Option::is_none) {
            return Err(format!("pgproxy cannot tell whether ORDER BY {key} names a column of the select list (an unnamed expression there): give the expressions aliases"));
        }
        return Ok(None);
    };
    if matching.iter().any(|&i| items[i].0 != items[first].0) {
        return Err(format!(
            "ORDER BY \"{}\" is ambiguous (PostgreSQL fails on it too)",
            id.value
        ));
    }
    Ok(Some(first))
}
