//! Where the rows of a statement can live: every reference to a sharded table, which of them are
//! joined on the key (co-located: same key, same shard), and which keys pin them.
//!
//! Two relations, kept apart because they are sound in different places:
//! - *links* (`x.key = y.key` in any block's WHERE or JOIN conjuncts, JOIN USING/NATURAL on the
//!   key): rows that meet live on the same shard, wherever the block sits (even under NOT
//!   EXISTS), so per-shard execution sees every pair;
//! - *pins* (`key = literal | $n`, `key IN (…)` as a top-level conjunct of a block's WHERE, or
//!   of an inner join's ON): they restrict the rows of that block only, and spread to the refs
//!   linked in the same block.
//!
//! Pure: the AST in, facts out.

use super::KeyExpr;
use crate::router::classify::ident_key;
use crate::shard::ShardMap;
use sqlparser::ast::{
    BinaryOperator, CastKind, Expr, FromTable, Join, JoinConstraint, JoinOperator, ObjectName,
    ObjectNamePart, Query, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
    UnaryOperator, Value, Visit, Visitor,
};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// One reference to a sharded table.
#[derive(Debug, Clone)]
pub struct Ref {
    alias: String,
    column: String,
    /// Block it appears in (0 = the statement's outermost block).
    pub block: usize,
    /// Nesting depth of the block (0 = top).
    pub depth: usize,
    /// Pin sets (ANDed); each is a list of keys (ORed).
    pub pins: Vec<Vec<KeyExpr>>,
}

/// The facts about one statement.
#[derive(Debug, Default)]
pub struct Scope {
    /// Sharded table references.
    pub refs: Vec<Ref>,
    parent: Vec<usize>,
    /// Reference (unsharded) tables named, lower case.
    pub reference_tables: Vec<String>,
    /// Something pgproxy cannot analyse safely (then the caller refuses multi-shard runs).
    pub opaque: Option<String>,
    blocks: usize,
    frames: Vec<Frame>,
    ctes: Vec<HashSet<String>>,
    depth: usize,
}

#[derive(Debug)]
struct Frame {
    block: usize,
    refs: Vec<usize>,
    /// Non-sharded relations visible in this block (their columns are unknown).
    others: usize,
    /// JOIN … ON conditions, with "is an inner join".
    ons: Vec<(Expr, bool)>,
    /// Key equalities between refs of this block.
    links: Vec<(usize, usize)>,
    /// Key equalities between a ref of this block and a ref of an enclosing block.
    correlations: Vec<(usize, usize)>,
    /// Aliases (or names) of the non-sharded relations of this block: they shadow outer ones.
    other_aliases: Vec<String>,
    /// The block has a LEFT / RIGHT / FULL join: constants in ON clauses do not restrict it.
    outer_join: bool,
}

impl Scope {
    /// Root of a ref's co-location class.
    pub fn class(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    fn link(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.class(a), self.class(b));
        if ra != rb {
            self.parent[rb] = ra;
        }
    }

    /// Walks a query (a statement's body or a subquery).
    pub fn query(&mut self, map: &ShardMap, q: &Query) {
        self.ctes.push(HashSet::new());
        if let Some(with) = &q.with {
            let name =
                |c: &sqlparser::ast::Cte| ident_key(&c.alias.name.value, c.alias.name.quote_style);
            // A CTE is visible in its own body and in earlier ones only WITH RECURSIVE.
            if with.recursive {
                for cte in &with.cte_tables {
                    self.ctes.last_mut().expect("pushed").insert(name(cte));
                }
            }
            for cte in &with.cte_tables {
                self.nested_query(map, &cte.query);
                self.ctes.last_mut().expect("pushed").insert(name(cte));
            }
        }
        self.set_expr(map, &q.body);
        // Subqueries in ORDER BY, LIMIT, OFFSET, FETCH.
        let mut exprs: Vec<&Expr> = Vec::new();
        if let Some(ob) = &q.order_by {
            if let sqlparser::ast::OrderByKind::Expressions(v) = &ob.kind {
                exprs.extend(v.iter().map(|o| &o.expr));
            }
        }
        if let Some(sqlparser::ast::LimitClause::LimitOffset { limit, offset, .. }) =
            &q.limit_clause
        {
            exprs.extend(limit.iter());
            exprs.extend(offset.iter().map(|o| &o.value));
        }
        if let Some(f) = &q.fetch {
            exprs.extend(f.quantity.iter());
        }
        for e in exprs {
            self.subqueries(map, e);
        }
        self.ctes.pop();
    }

    fn nested_query(&mut self, map: &ShardMap, q: &Query) {
        self.depth += 1;
        self.query(map, q);
        self.depth -= 1;
    }

    fn set_expr(&mut self, map: &ShardMap, s: &SetExpr) {
        match s {
            SetExpr::Select(sel) => {
                let frame = self.open_block();
                for t in &sel.from {
                    self.table_with_joins(map, t, frame);
                }
                let mut exprs: Vec<&Expr> = Vec::new();
                for item in &sel.projection {
                    match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                            exprs.push(e)
                        }
                        _ => {}
                    }
                }
                exprs.extend(sel.having.iter());
                if let sqlparser::ast::GroupByExpr::Expressions(g, _) = &sel.group_by {
                    exprs.extend(g.iter());
                }
                if let Some(sqlparser::ast::Distinct::On(d)) = &sel.distinct {
                    exprs.extend(d.iter());
                }
                self.close_block(map, frame, sel.selection.as_ref(), &exprs);
            }
            SetExpr::Query(q) => self.query(map, q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(map, left);
                self.set_expr(map, right);
            }
            SetExpr::Values(v) => {
                for row in &v.rows {
                    for e in row {
                        self.subqueries(map, e);
                    }
                }
            }
            SetExpr::Insert(stmt) | SetExpr::Update(stmt) | SetExpr::Delete(stmt) => {
                self.opaque = Some("a data-modifying statement inside WITH".into());
                self.statement(map, stmt);
            }
            _ => self.opaque = Some(format!("unsupported query form: {s}")),
        }
    }

    /// Walks UPDATE / DELETE (as a block) or a query statement.
    pub fn statement(&mut self, map: &ShardMap, stmt: &Statement) {
        match stmt {
            Statement::Query(q) => self.query(map, q),
            Statement::Update {
                table,
                assignments,
                from,
                selection,
                returning,
                ..
            } => {
                let frame = self.open_block();
                self.table_with_joins(map, table, frame);
                if let Some(sqlparser::ast::UpdateTableFromKind::AfterSet(f))
                | Some(sqlparser::ast::UpdateTableFromKind::BeforeSet(f)) = from
                {
                    for t in f {
                        self.table_with_joins(map, t, frame);
                    }
                }
                let mut exprs = returning_exprs(returning.as_deref());
                exprs.extend(assignments.iter().map(|a| &a.value));
                self.close_block(map, frame, selection.as_ref(), &exprs);
            }
            Statement::Delete(d) => {
                let frame = self.open_block();
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
                for t in from.iter().chain(d.using.iter().flatten()) {
                    self.table_with_joins(map, t, frame);
                }
                let exprs = returning_exprs(d.returning.as_deref());
                self.close_block(map, frame, d.selection.as_ref(), &exprs);
            }
            _ => {}
        }
    }

    fn open_block(&mut self) -> usize {
        let block = self.blocks;
        self.blocks += 1;
        self.frames.push(Frame {
            block,
            refs: Vec::new(),
            others: 0,
            ons: Vec::new(),
            links: Vec::new(),
            correlations: Vec::new(),
            other_aliases: Vec::new(),
            outer_join: false,
        });
        self.frames.len() - 1
    }

    /// Ends a block: links and pins from its WHERE (and the ON conjuncts gathered while walking
    /// its joins), then the subqueries in its expressions.
    fn close_block(
        &mut self,
        map: &ShardMap,
        frame: usize,
        selection: Option<&Expr>,
        exprs: &[&Expr],
    ) {
        if let Some(w) = selection {
            let mut conj = Vec::new();
            conjuncts(w, &mut conj);
            self.apply_conjuncts(&conj, true);
        }
        let ons = std::mem::take(&mut self.frames[frame].ons);
        let outer_join = self.frames[frame].outer_join;
        for (on, inner) in &ons {
            let mut conj = Vec::new();
            conjuncts(on, &mut conj);
            // An inner join's ON constants restrict the block only when no outer join keeps
            // rows regardless.
            self.apply_conjuncts(&conj, *inner && !outer_join);
        }
        self.correlate(frame);
        // Pins spread over the block's local links (same-block equalities).
        self.spread_pins(frame);
        for e in selection.into_iter().chain(exprs.iter().copied()) {
            self.subqueries(map, e);
        }
        for (on, _) in &ons {
            self.subqueries(map, on);
        }
        self.frames.truncate(frame);
    }
}

impl Scope {
    fn table_with_joins(&mut self, map: &ShardMap, t: &TableWithJoins, frame: usize) {
        let start = self.frames[frame].refs.len();
        self.factor(map, &t.relation, frame);
        for j in &t.joins {
            self.join(map, j, frame, start);
        }
    }

    /// A join; `start`: where this FROM item's refs begin (its left side).
    fn join(&mut self, map: &ShardMap, j: &Join, frame: usize, start: usize) {
        let before: Vec<usize> = self.frames[frame].refs[start..].to_vec();
        self.factor(map, &j.relation, frame);
        let added: Vec<usize> = self.frames[frame].refs[start + before.len()..].to_vec();
        let (constraint, inner) = match &j.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::CrossJoin(c) => {
                (Some(c), true)
            }
            JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c) => {
                self.frames[frame].outer_join = true;
                (Some(c), false)
            }
            JoinOperator::CrossApply | JoinOperator::OuterApply => (None, false),
            _ => {
                self.opaque = Some("an unsupported join type".into());
                (None, false)
            }
        };
        match constraint {
            Some(JoinConstraint::On(e)) => self.frames[frame].ons.push((e.clone(), inner)),
            Some(JoinConstraint::Using(cols)) => {
                let cols: Vec<String> = cols
                    .iter()
                    .filter_map(|c| c.0.last())
                    .filter_map(|p| match p {
                        ObjectNamePart::Identifier(id) => {
                            Some(ident_key(&id.value, id.quote_style))
                        }
                        _ => None,
                    })
                    .collect();
                self.link_on_columns(&before, &added, |c| cols.iter().any(|x| x == c));
            }
            Some(JoinConstraint::Natural) => self.link_on_columns(&before, &added, |_| true),
            _ => {}
        }
    }

    /// USING / NATURAL: a sharded table on each side whose key column is joined.
    fn link_on_columns(&mut self, left: &[usize], right: &[usize], joined: impl Fn(&str) -> bool) {
        for &r in right {
            if !joined(&self.refs[r].column) {
                continue;
            }
            let col = self.refs[r].column.clone();
            if let Some(&l) = left.iter().find(|&&l| self.refs[l].column == col) {
                self.link(l, r);
                if let Some(f) = self.frames.last_mut() {
                    f.links.push((l, r));
                }
            }
        }
    }

    fn factor(&mut self, map: &ShardMap, f: &TableFactor, frame: usize) {
        match f {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let (schema, table) = split_name(name);
                let alias_name = alias
                    .as_ref()
                    .map(|a| ident_key(&a.name.value, a.name.quote_style));
                if let Some(args) = args {
                    // A function in FROM (generate_series(…)), not a table.
                    self.frames[frame].others += 1;
                    self.frames[frame]
                        .other_aliases
                        .push(alias_name.unwrap_or(table));
                    for a in &args.args {
                        if let sqlparser::ast::FunctionArg::Unnamed(
                            sqlparser::ast::FunctionArgExpr::Expr(e),
                        ) = a
                        {
                            self.subqueries(map, e);
                        }
                    }
                    return;
                }
                let is_cte = schema.is_none() && self.ctes.iter().any(|c| c.contains(&table));
                let column = if is_cte {
                    None
                } else {
                    map.key_column(schema.as_deref(), &table)
                };
                // `AS c(a, b)` renames columns: the key column is not known by name any more.
                let renamed = alias.as_ref().is_some_and(|a| !a.columns.is_empty());
                let column = column.map(|c| if renamed { "" } else { c });
                match column {
                    Some(col) => {
                        let alias = alias
                            .as_ref()
                            .map(|a| ident_key(&a.name.value, a.name.quote_style))
                            .unwrap_or_else(|| table.clone());
                        self.parent.push(self.refs.len());
                        self.refs.push(Ref {
                            alias,
                            column: col.to_string(),
                            block: self.frames[frame].block,
                            depth: self.depth,
                            pins: Vec::new(),
                        });
                        let id = self.refs.len() - 1;
                        self.frames[frame].refs.push(id);
                    }
                    None => {
                        self.frames[frame]
                            .other_aliases
                            .push(alias_name.unwrap_or_else(|| table.clone()));
                        if !is_cte {
                            self.reference_tables.push(table);
                        }
                        self.frames[frame].others += 1;
                    }
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                self.frames[frame].others += 1;
                if let Some(a) = alias {
                    self.frames[frame]
                        .other_aliases
                        .push(ident_key(&a.name.value, a.name.quote_style));
                }
                self.nested_query(map, subquery);
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(map, table_with_joins, frame),
            TableFactor::Function { args, .. } => {
                self.frames[frame].others += 1;
                for a in args {
                    if let sqlparser::ast::FunctionArg::Unnamed(
                        sqlparser::ast::FunctionArgExpr::Expr(e),
                    ) = a
                    {
                        self.subqueries(map, e);
                    }
                }
            }
            TableFactor::TableFunction { expr, .. } => {
                self.frames[frame].others += 1;
                self.subqueries(map, expr);
            }
            TableFactor::UNNEST { array_exprs, .. } => {
                self.frames[frame].others += 1;
                for e in array_exprs {
                    self.subqueries(map, e);
                }
            }
            other => {
                self.frames[frame].others += 1;
                self.opaque = Some(format!("unsupported FROM item: {other}"));
            }
        }
    }

    /// Walks the subqueries of an expression outside any block (INSERT values).
    pub fn expr(&mut self, map: &ShardMap, e: &Expr) {
        self.subqueries(map, e);
    }

    /// Walks the subqueries inside an expression (each its own nested block).
    fn subqueries(&mut self, map: &ShardMap, e: &Expr) {
        let mut found = Subqueries::default();
        let _ = e.visit(&mut found);
        for q in found.queries {
            self.nested_query(map, &q);
        }
    }

    fn apply_conjuncts(&mut self, conj: &[&Expr], pins: bool) {
        for c in conj {
            match c {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => match (self.key_ref(left), self.key_ref(right)) {
                    (Some(a), Some(b)) => {
                        let (la, lb) = (self.is_local(a), self.is_local(b));
                        let f = self.frames.last_mut().expect("inside a block");
                        match (la, lb) {
                            (true, true) => {
                                f.links.push((a, b));
                                self.link(a, b);
                            }
                            (true, false) => f.correlations.push((a, b)),
                            (false, true) => f.correlations.push((b, a)),
                            // Two outer tables compared inside a subquery: that does not make
                            // their rows meet.
                            (false, false) => {}
                        }
                    }
                    (Some(a), None) if pins && self.is_local(a) => self.pin(a, right),
                    (None, Some(b)) if pins && self.is_local(b) => self.pin(b, left),
                    _ => {}
                },
                Expr::InList {
                    expr,
                    list,
                    negated: false,
                } if pins => {
                    if let Some(a) = self.key_ref(expr).filter(|&a| self.is_local(a)) {
                        let keys: Option<Vec<KeyExpr>> = list.iter().map(key_expr).collect();
                        if let Some(keys) = keys {
                            self.refs[a].pins.push(keys);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The ref belongs to the block being walked.
    fn is_local(&self, r: usize) -> bool {
        self.frames.last().is_some_and(|f| f.refs.contains(&r))
    }

    /// A subquery correlated on the key with its enclosing blocks: its tables meet the outer
    /// rows of the same key. Correlated with two different outer groups, it would relate rows
    /// of different keys: then nothing can be concluded.
    fn correlate(&mut self, frame: usize) {
        let corr = std::mem::take(&mut self.frames[frame].correlations);
        let mut outer: Vec<usize> = corr.iter().map(|&(_, o)| self.class(o)).collect();
        outer.sort_unstable();
        outer.dedup();
        if outer.len() > 1 {
            self.opaque = Some("a subquery that relates several outer sharded tables".into());
            return;
        }
        for (inner, o) in corr {
            self.link(inner, o);
        }
    }

    fn pin(&mut self, r: usize, e: &Expr) {
        if let Some(k) = key_expr(e) {
            self.refs[r].pins.push(vec![k]);
        }
    }

    fn spread_pins(&mut self, frame: usize) {
        let links = std::mem::take(&mut self.frames[frame].links);
        let members = self.frames[frame].refs.clone();
        // Small sets: repeat until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            for &(a, b) in &links {
                if !members.contains(&a) || !members.contains(&b) {
                    continue;
                }
                for (from, to) in [(a, b), (b, a)] {
                    let add: Vec<Vec<KeyExpr>> = self.refs[from]
                        .pins
                        .iter()
                        .filter(|p| !self.refs[to].pins.contains(p))
                        .cloned()
                        .collect();
                    if !add.is_empty() {
                        self.refs[to].pins.extend(add);
                        changed = true;
                    }
                }
            }
        }
    }

    /// The sharded ref whose key column an expression names, if it surely does.
    fn key_ref(&self, e: &Expr) -> Option<usize> {
        let parts: Vec<String> = match strip(e) {
            Expr::Identifier(id) => vec![ident_key(&id.value, id.quote_style)],
            Expr::CompoundIdentifier(ids) => ids
                .iter()
                .map(|id| ident_key(&id.value, id.quote_style))
                .collect(),
            _ => return None,
        };
        let (qual, col) = match parts.as_slice() {
            [col] => (None, col),
            [.., q, col] => (Some(q), col),
            [] => return None,
        };
        match qual {
            Some(q) => {
                for f in self.frames.iter().rev() {
                    if let Some(r) = f.refs.iter().copied().find(|&r| self.refs[r].alias == *q) {
                        return (self.refs[r].column == *col).then_some(r);
                    }
                    if f.other_aliases.iter().any(|a| a == q) {
                        // Shadowed by a relation of an inner block.
                        return None;
                    }
                }
                None
            }
            None => {
                // Unqualified: only the innermost block, and only if exactly one sharded table
                // there has this key column (a column of the same name elsewhere in the block
                // would make the statement ambiguous for PostgreSQL too).
                let f = self.frames.last()?;
                let mut hits = f
                    .refs
                    .iter()
                    .copied()
                    .filter(|&r| self.refs[r].column == *col);
                let first = hits.next()?;
                hits.next().is_none().then_some(first)
            }
        }
    }
}

fn returning_exprs(items: Option<&[SelectItem]>) -> Vec<&Expr> {
    items
        .unwrap_or(&[])
        .iter()
        .filter_map(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect()
}

/// `schema.table` → (schema, table), lower-cased unless quoted.
pub fn split_name(name: &ObjectName) -> (Option<String>, String) {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => ident_key(&id.value, id.quote_style),
            other => other.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [.., s, t] => (Some(s.clone()), t.clone()),
        [t] => (None, t.clone()),
        [] => (None, String::new()),
    }
}

/// Top-level AND conjuncts.
pub fn conjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        other => out.push(other),
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// A literal or parameter that can stand for a key: `42`, `-7`, `'abc'`, `$1`, optionally
/// cast (`'42'::bigint`, `CAST($1 AS int8)`).
pub fn key_expr(e: &Expr) -> Option<KeyExpr> {
    match strip(e) {
        Expr::Value(v) => match &v.value {
            // 2.5 is numeric: PostgreSQL rounds it into an integer key, pgproxy does not guess.
            Value::Number(n, _) if n.contains(['.', 'e', 'E']) => None,
            Value::Number(n, _) => Some(KeyExpr::Lit(n.clone())),
            Value::SingleQuotedString(s) => Some(KeyExpr::Lit(s.clone())),
            Value::Placeholder(p) => p
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1)
                .map(KeyExpr::Param),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match key_expr(expr)? {
            KeyExpr::Lit(n) if !n.starts_with('-') && n.bytes().all(|b| b.is_ascii_digit()) => {
                Some(KeyExpr::Lit(format!("-{n}")))
            }
            _ => None,
        },
        // Casts that keep the value: to types whose comparison with the key is exact.
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } => {
            let inner = key_expr(expr)?;
            cast_kind(&data_type.to_string())
                .keeps(&inner)
                .then_some(inner)
        }
        _ => None,
    }
}

/// What a cast does to a key value compared with the key column.
pub(super) enum KeyCast {
    /// Keeps it (integer types, text and varchar without a length, uuid).
    Exact,
    /// Keeps a whole number up to this magnitude (numeric; floats: their exact integers).
    Whole(u64),
    /// Anything else (`char(n)`/`bpchar` drop trailing spaces, `name` truncates, `citext`
    /// compares case-insensitively, `varchar(3)` truncates, …): not a key.
    Other,
}

impl KeyCast {
    /// Whether a key cast so still stands for itself. A float compares with the key as a
    /// float: keys past the float's exact integers share one value (9007199254740993::float8
    /// also equals …992); a numeric with a fraction is rounded into an integer key column.
    pub(super) fn keeps(&self, key: &KeyExpr) -> bool {
        match (self, key) {
            (KeyCast::Exact, _) => true,
            (KeyCast::Whole(limit), KeyExpr::Lit(n)) => n
                .trim()
                .parse::<i64>()
                .is_ok_and(|v| v.unsigned_abs() <= *limit),
            _ => false,
        }
    }
}

pub(super) fn cast_kind(type_name: &str) -> KeyCast {
    let t = type_name.to_ascii_lowercase();
    let t = t.strip_prefix("pg_catalog.").unwrap_or(&t);
    match t {
        "bigint" | "int8" | "integer" | "int" | "int4" | "smallint" | "int2" | "text"
        | "varchar" | "character varying" | "uuid" | "unknown" => KeyCast::Exact,
        "numeric" | "decimal" => KeyCast::Whole(u64::MAX),
        "float8" | "double precision" | "float" => KeyCast::Whole(1 << 53),
        "float4" | "real" => KeyCast::Whole(1 << 24),
        _ => KeyCast::Other,
    }
}

/// Collects the outermost subqueries of an expression.
#[derive(Default)]
struct Subqueries {
    queries: Vec<Query>,
    depth: usize,
}

impl Visitor for Subqueries {
    type Break = ();
    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            self.queries.push(q.clone());
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}
