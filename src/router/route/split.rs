//! A multi-row INSERT whose rows belong to several shards, split into one INSERT per shard:
//! each part keeps its rows in their VALUES order, its parameters renumbered `$1..$k` (the
//! session binds each part the subset of values it uses), and the statement's RETURNING, ON
//! CONFLICT and column list as written. Pure.

use super::{KeyExpr, Param, Route, RouteError, Shards, StmtPlan};
use crate::shard::ShardMap;
use sqlparser::ast::{Expr, Insert, OnConflictAction, OnInsert, SetExpr, Statement, Value};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// An INSERT split per shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// One per shard, in shard order.
    pub parts: Vec<SplitPart>,
    /// How many times each parameter (`$1` at index 0, up to the highest one written) appears
    /// in the whole statement: a parameter of unspecified type written once is typed by the
    /// same context in its part as in the whole statement.
    pub param_uses: Vec<usize>,
    /// The statement has RETURNING: each part's rows are put back in VALUES order.
    pub returning: bool,
}

/// One shard's part of a split INSERT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPart {
    /// The shard.
    pub shard: usize,
    /// Its statement.
    pub sql: String,
    /// The rows it inserts: their positions in the whole statement's VALUES (0-based,
    /// ascending), which is also the order of its RETURNING rows.
    pub rows: Vec<usize>,
    /// Its parameters: `$k` of the part is `$params[k-1]` of the whole statement.
    pub params: Vec<usize>,
}

impl Split {
    /// The number of parameters the whole statement's text writes (the highest `$n`).
    pub fn max_param(&self) -> usize {
        self.param_uses.len()
    }
}

/// Resolves an INSERT's rows: one shard, or the statement split per shard.
pub(super) fn split_rows<'p>(
    st: &StmtPlan,
    rows: &[Option<KeyExpr>],
    map: &ShardMap,
    params: &dyn Fn(usize) -> Option<Param<'p>>,
) -> Result<Route, RouteError> {
    let mut per_shard: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, k) in rows.iter().enumerate() {
        let Some(k) = k else {
            return Err(RouteError::Unroutable(format!(
                "the sharding key of row {} of this INSERT is NULL or not a literal or parameter: write the key itself",
                i + 1
            )));
        };
        let v = super::key_text(k, map, params)?.ok_or_else(|| {
            RouteError::Unroutable(format!(
                "the sharding key of row {} of this INSERT is NULL: every row needs a key",
                i + 1
            ))
        })?;
        per_shard.entry(map.shard_of(&v)?).or_default().push(i);
    }
    let route = |shards: Vec<usize>, split: Option<Split>| Route {
        shards: Shards::Some(shards),
        merge: None,
        keyless: split.is_some(),
        copy_in: false,
        copy_out: false,
        split,
        write: true,
        why: st.why.clone(),
    };
    if per_shard.len() <= 1 {
        let shard = per_shard.keys().next().copied().unwrap_or(0);
        return Ok(route(vec![shard], None));
    }
    let Some(ins) = st.split.as_deref() else {
        return Err(RouteError::Unroutable(
            "rows of this INSERT belong to different shards".into(),
        ));
    };
    let split = split_insert(ins, &per_shard)?;
    Ok(route(per_shard.keys().copied().collect(), Some(split)))
}

/// The parts of `ins` for rows grouped per shard.
fn split_insert(
    ins: &Insert,
    per_shard: &BTreeMap<usize, Vec<usize>>,
) -> Result<Split, RouteError> {
    let returning = ins.returning.is_some();
    if returning && skips_rows(ins) {
        return Err(RouteError::Unroutable(
            "the rows of this INSERT belong to different shards, and with ON CONFLICT DO NOTHING (or DO UPDATE … WHERE) \
             RETURNING may leave rows out, so pgproxy could not put the shards' rows back in VALUES order: \
             send one INSERT per shard, or leave out RETURNING"
                .into(),
        ));
    }
    let mut whole = Statement::Insert(ins.clone());
    let param_uses = renumber(&mut whole, &mut |_| None)?;
    let mut parts = Vec::new();
    for (shard, idx) in per_shard {
        let mut part = ins.clone();
        if let Some(src) = part.source.as_deref_mut() {
            if let SetExpr::Values(v) = src.body.as_mut() {
                v.rows = idx.iter().map(|&i| v.rows[i].clone()).collect();
            }
        }
        let mut stmt = Statement::Insert(part);
        let mut order: Vec<usize> = Vec::new();
        renumber(&mut stmt, &mut |n| {
            let k = match order.iter().position(|&o| o == n) {
                Some(k) => k,
                None => {
                    order.push(n);
                    order.len() - 1
                }
            };
            Some(k + 1)
        })?;
        parts.push(SplitPart {
            shard: *shard,
            sql: stmt.to_string(),
            rows: idx.clone(),
            params: order,
        });
    }
    Ok(Split {
        parts,
        param_uses,
        returning,
    })
}

/// ON CONFLICT DO NOTHING, or DO UPDATE with a WHERE: a row may be neither inserted nor
/// updated, so RETURNING gives fewer rows than VALUES has.
fn skips_rows(ins: &Insert) -> bool {
    match &ins.on {
        Some(OnInsert::OnConflict(oc)) => match &oc.action {
            OnConflictAction::DoNothing => true,
            OnConflictAction::DoUpdate(du) => du.selection.is_some(),
        },
        Some(_) => true,
        None => false,
    }
}

/// Rewrites every `$n` of `stmt` to `$new(n)` (kept when None), and counts the uses of each
/// parameter. A placeholder that is not `$<number>` is refused.
fn renumber(
    stmt: &mut Statement,
    new: &mut dyn FnMut(usize) -> Option<usize>,
) -> Result<Vec<usize>, RouteError> {
    let mut uses: Vec<usize> = Vec::new();
    let mut bad = None;
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e: &mut Expr| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &mut v.value {
                match p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n >= 1)
                {
                    Some(n) => {
                        if uses.len() < n {
                            uses.resize(n, 0);
                        }
                        uses[n - 1] += 1;
                        if let Some(k) = new(n) {
                            *p = format!("${k}");
                        }
                    }
                    None => bad = Some(p.clone()),
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if let Some(p) = bad {
        return Err(RouteError::Unroutable(format!(
            "the rows of this INSERT belong to different shards and it has a placeholder {p} pgproxy cannot renumber: send one INSERT per shard"
        )));
    }
    Ok(uses)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{keys, map};
    use super::super::{plan, Param};

    fn split(sql: &str, params: &[&str]) -> super::Split {
        let m = map();
        let p = plan(sql, &m);
        let get = |n: usize| params.get(n - 1).map(|t| Param::Text(t));
        let r = p.resolve(&m, &get, None).expect("routes");
        r.split.expect("split")
    }

    #[test]
    fn parameters_are_renumbered_per_part() {
        let m = map();
        let (a, b, c) = keys(&m);
        let (a, b, c) = (a.to_string(), b.to_string(), c.to_string());
        let s = split(
            "INSERT INTO contacts (name, user_id) VALUES ($1, $2), ($3, $4), ($5, $6) RETURNING id",
            &["x", &a, "y", &b, "z", &c],
        );
        assert!(s.returning);
        assert_eq!(s.param_uses, vec![1; 6]);
        let sa = m.shard_of_text(&a).expect("shard");
        let pa = s.parts.iter().find(|p| p.shard == sa).expect("part of a");
        assert_eq!(pa.rows, vec![0, 2]);
        assert_eq!(pa.params, vec![1, 2, 5, 6]);
        assert_eq!(
            pa.sql,
            "INSERT INTO contacts (name, user_id) VALUES ($1, $2), ($3, $4) RETURNING id"
        );
        let pb = s.parts.iter().find(|p| p.shard != sa).expect("part of b");
        assert_eq!(pb.rows, vec![1]);
        assert_eq!(pb.params, vec![3, 4]);
        assert_eq!(
            pb.sql,
            "INSERT INTO contacts (name, user_id) VALUES ($1, $2) RETURNING id"
        );
    }

    #[test]
    fn a_parameter_outside_the_rows_goes_to_every_part() {
        let m = map();
        let (a, b, _) = keys(&m);
        let (a, b) = (a.to_string(), b.to_string());
        let s = split(
            "INSERT INTO contacts (id, user_id, name) VALUES (1, $2, $1), (2, $3, $1) \
             ON CONFLICT (id, user_id) DO UPDATE SET name = $4",
            &["n", &a, &b, "u"],
        );
        assert_eq!(s.param_uses, vec![2, 1, 1, 1]);
        let sa = m.shard_of_text(&a).expect("shard");
        for p in &s.parts {
            let key = if p.shard == sa { 2 } else { 3 };
            assert_eq!(p.params, vec![key, 1, 4], "{p:?}");
            assert!(p.sql.contains(", $1, $2) ON CONFLICT"), "{}", p.sql);
            assert!(p.sql.ends_with("SET name = $3"), "{}", p.sql);
        }
    }
}
