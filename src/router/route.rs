//! Shard routing: which shard(s) a statement must run on, decided from the SQL (sqlparser,
//! PostgreSQL dialect) and the shard map. A plan is made once per SQL text (at Parse for the
//! extended protocol) and resolved per execution with the bind parameters, so a prepared
//! statement is not parsed again. What pgproxy cannot route or merge correctly is refused
//! with an explanation, never sent to the wrong place. Pure: no IO.
//!
//! Targets, from narrowest: `Any` (touches no sharded table: one shard will do), the shards of
//! the keys the statement pins, every shard (`All`: DDL and writes to reference tables, which
//! exist on every shard), or a fan-out over every shard of a sharded read (merged by
//! `merge.rs`) or a keyless UPDATE/DELETE.

mod colname;
mod copy_in;
mod explain;
mod hint;
mod listed;
pub mod merge;
mod scope;
mod split;
mod statement;

pub use copy_in::{copy_into, copy_out_shape, CopyInto, CopyOutShape};
pub use explain::explain;
pub use merge::{Agg, MergeKind, MergeSpec, SortKey};
pub use split::{Split, SplitPart};

use crate::router::classify::lex::Lexed;
use crate::shard::{KeyValue, ShardError, ShardMap};
use std::collections::BTreeSet;

/// A key as the SQL gives it: a literal's text, or a bind parameter (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyExpr {
    /// A literal's text.
    Lit(String),
    /// `$n`.
    Param(usize),
}

/// A bind parameter's value, as the session has it.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// Text format.
    Text(&'a str),
    /// Binary format.
    Binary(&'a [u8]),
    /// NULL.
    Null,
}

/// Where one statement goes, before parameters are known.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Touches no sharded table: any one shard (the session's current one).
    Any,
    /// Every shard: DDL, writes to reference tables.
    All,
    /// The first shard, always: LISTEN / NOTIFY / pg_notify, so listeners and notifiers meet.
    Home,
    /// The shards of these keys: pin sets, ANDed; each set's keys ORed.
    Keys(Vec<Vec<KeyExpr>>),
    /// Several groups of sharded tables that are not joined on the key: allowed only when
    /// every group lands on the same single shard.
    Groups(Vec<Vec<Vec<KeyExpr>>>),
    /// A sharded table without a key: every shard (reads merged, writes keyless).
    Fanout,
    /// INSERT rows, each with its key (None: no key given): each row to its key's shard.
    Rows(Vec<Option<KeyExpr>>),
    /// Runs code pgproxy cannot see into (a user function or procedure) and names no key: the
    /// shard of the session's `pgproxy.shard_key`, else refused (0A000) with this explanation.
    Opaque(String),
    /// FETCH / MOVE / CLOSE of a cursor: the shard the session's cursor lives on (any
    /// shard when pgproxy knows no such cursor: PostgreSQL reports it).
    Cursor {
        /// Which cursor.
        name: CursorName,
        /// CLOSE (the cursor is gone afterwards).
        closes: bool,
    },
    /// `COPY <sharded table> FROM STDIN`: every shard; pgproxy reads each row's key and sends
    /// the row to its shard (`copy_in.rs`, `session/shard_copy.rs`).
    CopyIn,
    /// `COPY <sharded table> TO STDOUT`: every shard, the outputs concatenated
    /// (`session/shard_copy_out.rs`).
    CopyOut,
    /// Cannot be run correctly: 0A000 with this explanation.
    Refuse(String),
}

/// The cursor a FETCH / MOVE / CLOSE names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CursorName {
    /// A cursor, by its name as PostgreSQL keys it (unquoted names folded to lowercase; see
    /// `classify::ident_key`).
    Named(String),
    /// `CLOSE ALL`.
    All,
}

/// The plan of one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct StmtPlan {
    /// Where it goes.
    pub target: Target,
    /// It changes data or schema.
    pub write: bool,
    /// A read that may run on several shards: how to merge (None: cannot merge; a fan-out
    /// then is refused with `no_merge`).
    pub merge: Option<MergeSpec>,
    /// Why the read cannot be merged across shards.
    pub no_merge: Option<String>,
    /// Explanation for `pgproxy route` / EXPLAIN ROUTE.
    pub why: String,
    /// An INSERT whose rows may go to different shards: the statement to split.
    pub split: Option<Box<sqlparser::ast::Insert>>,
    /// `DECLARE name … CURSOR`: the cursor's name (as [`CursorName::Named`] keys it) and
    /// whether it is WITH HOLD (outlives its transaction).
    pub declares: Option<(String, bool)>,
    /// An INSERT into a sharded table without a column list, refused because the map does not
    /// know the table's columns: the table's name as written (`ShardMap::with_columns`).
    pub needs_columns: Option<String>,
}

/// The plan of a SQL string: one entry per statement, plus any comment hint.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    /// Per statement.
    pub statements: Vec<StmtPlan>,
    /// `/* pgproxy: shard=… */` or `/* pgproxy: shard_key=… */`.
    pub hint: Option<hint::Hint>,
}

/// The shards a statement (string) runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shards {
    /// Any one shard: the caller picks (the session's current shard).
    Any,
    /// These shards (sorted, at least one).
    Some(Vec<usize>),
}

/// The resolved route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Where to run.
    pub shards: Shards,
    /// A read spanning several shards: how to merge the results.
    pub merge: Option<MergeSpec>,
    /// An INSERT whose rows go to different shards: its part per shard.
    pub split: Option<Split>,
    /// Writes data or schema.
    pub write: bool,
    /// A write of sharded rows on several shards (no key, or keys on several shards): each
    /// shard changes different rows, unlike `All` (the same change everywhere).
    pub keyless: bool,
    /// `COPY <sharded table> FROM STDIN`: each row goes to its key's shard.
    pub copy_in: bool,
    /// `COPY <sharded table> TO STDOUT`: every shard's rows, one after the other.
    pub copy_out: bool,
    /// Why.
    pub why: String,
}

impl Route {
    /// The single shard, when there is exactly one.
    pub fn single(&self) -> Option<usize> {
        match &self.shards {
            Shards::Some(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }
}

/// How the refusal of a statement sqlparser cannot parse begins.
pub const UNPARSED: &str = "pgproxy could not parse this statement";

/// Why a statement cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// pgproxy cannot run it correctly across shards.
    #[error("{0}")]
    Unroutable(String),
    /// A key that does not parse or that no shard holds.
    #[error(transparent)]
    Key(#[from] ShardError),
    /// A hint names no shard, or its key is invalid.
    #[error("{0}")]
    BadHint(String),
}

impl RouteError {
    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            RouteError::Unroutable(_) => "0A000",
            RouteError::Key(e) => e.sqlstate(),
            RouteError::BadHint(_) => "22023",
        }
    }
}

/// Plans a SQL string (one or more statements).
pub fn plan(sql: &str, map: &ShardMap) -> RoutePlan {
    let Some(lexed) = Lexed::new(sql) else {
        // The tokenizer rejects it (e.g. an unterminated quote): PostgreSQL will too, on any
        // shard; do not pretend to know more.
        return RoutePlan {
            statements: vec![StmtPlan::simple(
                Target::Refuse(
                    "pgproxy could not read this statement (its tokenizer rejects it), so it cannot tell which shard owns its rows: add a /* pgproxy: shard=… */ hint".into(),
                ),
                true,
                "does not tokenize",
            )],
            hint: hint::find_raw(sql),
        };
    };
    let hint = hint::find(&lexed, map);
    let mut statements = Vec::new();
    for r in lexed.statements() {
        statements.push(statement::plan_one(&lexed, r, map));
    }
    if statements.is_empty() {
        statements.push(StmtPlan::simple(Target::Any, false, "no statement"));
    }
    RoutePlan { statements, hint }
}

impl StmtPlan {
    pub(crate) fn simple(target: Target, write: bool, why: &str) -> StmtPlan {
        StmtPlan {
            target,
            write,
            merge: None,
            no_merge: None,
            why: why.to_string(),
            split: None,
            declares: None,
            needs_columns: None,
        }
    }
}

impl RoutePlan {
    /// Resolves the plan with the bind parameters (`params(n)`, 1-based; None when the
    /// statement has no such parameter) and the session's `pgproxy.shard_key`, if set.
    pub fn resolve<'p>(
        &self,
        map: &ShardMap,
        params: &dyn Fn(usize) -> Option<Param<'p>>,
        session_key: Option<&str>,
    ) -> Result<Route, RouteError> {
        self.resolve_with_cursors(map, params, session_key, &|_| Vec::new())
    }

    /// Like [`RoutePlan::resolve`], with the session's cursors: `cursors(name)` gives the
    /// shards holding that cursor (for `CLOSE ALL`, every shard holding one); empty when
    /// pgproxy knows none.
    pub fn resolve_with_cursors<'p>(
        &self,
        map: &ShardMap,
        params: &dyn Fn(usize) -> Option<Param<'p>>,
        session_key: Option<&str>,
        cursors: &dyn Fn(&CursorName) -> Vec<usize>,
    ) -> Result<Route, RouteError> {
        if let Some(h) = &self.hint {
            let shard = h.shard(map)?;
            return Ok(Route {
                shards: Shards::Some(vec![shard]),
                merge: None,
                split: None,
                write: self.statements.iter().any(|s| s.write),
                keyless: false,
                copy_in: false,
                copy_out: false,
                why: format!("hint: {}", h.describe(map)),
            });
        }
        let mut out: Option<Route> = None;
        for st in &self.statements {
            let r = resolve_one(st, map, params, session_key, cursors)?;
            out = Some(match out {
                None => r,
                Some(prev) => combine(prev, r, self.statements.len())?,
            });
        }
        Ok(out.unwrap_or(Route {
            shards: Shards::Any,
            merge: None,
            split: None,
            write: false,
            keyless: false,
            copy_in: false,
            copy_out: false,
            why: "no statement".into(),
        }))
    }
}

fn combine(a: Route, b: Route, n: usize) -> Result<Route, RouteError> {
    if a.merge.is_some() || b.merge.is_some() || a.split.is_some() || b.split.is_some() {
        return Err(RouteError::Unroutable(format!(
            "a query string of {n} statements includes one that spans shards: send that statement on its own"
        )));
    }
    let shards = match (a.shards, b.shards) {
        (Shards::Any, s) | (s, Shards::Any) => s,
        (Shards::Some(x), Shards::Some(y)) if x == y => Shards::Some(x),
        (Shards::Some(_), Shards::Some(_)) => return Err(RouteError::Unroutable(
            "the statements of this query string go to different shards: send them one at a time"
                .into(),
        )),
    };
    Ok(Route {
        shards,
        merge: None,
        split: None,
        write: a.write || b.write,
        keyless: a.keyless || b.keyless,
        copy_in: a.copy_in || b.copy_in,
        copy_out: a.copy_out || b.copy_out,
        why: format!("{}; {}", a.why, b.why),
    })
}

fn all(map: &ShardMap) -> Vec<usize> {
    (0..map.shard_count()).collect()
}

/// The key's text, or None for NULL / a missing parameter.
fn key_text<'p>(
    k: &KeyExpr,
    map: &ShardMap,
    params: &dyn Fn(usize) -> Option<Param<'p>>,
) -> Result<Option<KeyValue>, ShardError> {
    let bad = |key: String, why: String| ShardError::BadKey { key, why };
    match k {
        KeyExpr::Lit(t) => map
            .key_type()
            .parse(t)
            .map(Some)
            .map_err(|w| bad(t.clone(), w)),
        KeyExpr::Param(n) => match params(*n) {
            None | Some(Param::Null) => Ok(None),
            Some(Param::Text(t)) => map
                .key_type()
                .parse(t)
                .map(Some)
                .map_err(|w| bad(t.to_string(), w)),
            Some(Param::Binary(b)) => map
                .key_type()
                .parse_binary(b)
                .map(Some)
                .map_err(|w| bad(format!("${n}"), w)),
        },
    }
}

/// Shards of a pin set (keys ORed). None when a key cannot be read (then the set does not
/// restrict anything: PostgreSQL may still match rows, e.g. `42.0` against a bigint key).
fn pin_shards<'p>(
    set: &[KeyExpr],
    map: &ShardMap,
    params: &dyn Fn(usize) -> Option<Param<'p>>,
) -> Option<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    for k in set {
        if let KeyExpr::Param(n) = k {
            // Not known (planning without values): the set restricts nothing.
            params(*n)?;
        }
        match key_text(k, map, params) {
            Ok(None) => {}
            Ok(Some(v)) => match map.shard_of(&v) {
                Ok(s) => {
                    out.insert(s);
                }
                // No shard holds the key: no row can have it.
                Err(ShardError::NoShard(_)) => {}
                Err(_) => return None,
            },
            Err(_) => return None,
        }
    }
    Some(out)
}

/// Intersection of the pin sets; None when no set restricts.
fn pinned<'p>(
    sets: &[Vec<KeyExpr>],
    map: &ShardMap,
    params: &dyn Fn(usize) -> Option<Param<'p>>,
) -> Option<BTreeSet<usize>> {
    let mut acc: Option<BTreeSet<usize>> = None;
    for s in sets {
        if let Some(shards) = pin_shards(s, map, params) {
            acc = Some(match acc {
                None => shards,
                Some(a) => a.intersection(&shards).copied().collect(),
            });
        }
    }
    acc
}

fn resolve_one<'p>(
    st: &StmtPlan,
    map: &ShardMap,
    params: &dyn Fn(usize) -> Option<Param<'p>>,
    session_key: Option<&str>,
    cursors: &dyn Fn(&CursorName) -> Vec<usize>,
) -> Result<Route, RouteError> {
    let route = |shards: Shards, why: String| Route {
        shards,
        merge: None,
        split: None,
        write: st.write,
        keyless: false,
        copy_in: false,
        copy_out: false,
        why,
    };
    // The session's shard key stands in for what the statement does not pin itself.
    let session_shard = || -> Result<Option<usize>, RouteError> {
        session_key
            .map(|k| map.shard_of_text(k).map_err(RouteError::from))
            .transpose()
    };
    match &st.target {
        Target::Any => Ok(route(Shards::Any, st.why.clone())),
        Target::Home => Ok(route(Shards::Some(vec![0]), st.why.clone())),
        Target::Cursor { name, .. } => {
            let held = cursors(name);
            match held.len() {
                // Unknown to pgproxy: the session's shard (PostgreSQL reports a missing one).
                0 => Ok(route(Shards::Any, st.why.clone())),
                1 => Ok(route(Shards::Some(held), format!("{}: the cursor's shard", st.why))),
                _ => Err(RouteError::Unroutable(
                    "CLOSE ALL while this session has cursors open on several shards: close each cursor by name"
                        .into(),
                )),
            }
        }
        Target::Refuse(why) => Err(RouteError::Unroutable(why.clone())),
        Target::Opaque(why) => match session_shard()? {
            Some(s) => Ok(route(Shards::Some(vec![s]), "SET pgproxy.shard_key".into())),
            None => Err(RouteError::Unroutable(why.clone())),
        },
        // DDL and shared tables change every shard, whatever the session's key.
        Target::All => Ok(route(Shards::Some(all(map)), st.why.clone())),
        Target::Keys(sets) => match pinned(sets, map, params) {
            // Contradictory keys: no row matches; one shard gives the (empty) answer.
            Some(s) if s.is_empty() => Ok(route(
                Shards::Some(vec![0]),
                format!("{} (the keys exclude each other)", st.why),
            )),
            Some(s) if s.len() == 1 => {
                Ok(route(Shards::Some(s.into_iter().collect()), st.why.clone()))
            }
            // The statement's own keys win over the session's.
            Some(s) => fanout(st, map, s.into_iter().collect(), None),
            None => fanout(st, map, all(map), session_shard()?),
        },
        Target::Groups(groups) => {
            let mut one: Option<usize> = None;
            let mut unpinned = false;
            for g in groups {
                match pinned(g, map, params) {
                    Some(s) if s.len() == 1 => {
                        let s = *s.iter().next().expect("one element");
                        if one.is_some_and(|o| o != s) {
                            return Err(cross_join(st));
                        }
                        one = Some(s);
                    }
                    Some(s) if s.is_empty() => {}
                    _ => unpinned = true,
                }
            }
            if unpinned {
                // The session's key stands in for the unpinned groups if it agrees with the
                // pinned ones.
                return match session_shard()? {
                    Some(s) if one.is_none_or(|o| o == s) => {
                        Ok(route(Shards::Some(vec![s]), "SET pgproxy.shard_key".into()))
                    }
                    _ => Err(cross_join(st)),
                };
            }
            Ok(route(Shards::Some(vec![one.unwrap_or(0)]), st.why.clone()))
        }
        Target::Fanout => fanout(st, map, all(map), session_shard()?),
        Target::CopyOut => Ok(Route {
            shards: Shards::Some(all(map)),
            merge: None,
            split: None,
            write: false,
            keyless: false,
            copy_in: false,
            copy_out: true,
            why: st.why.clone(),
        }),
        Target::CopyIn => Ok(Route {
            shards: Shards::Some(all(map)),
            merge: None,
            split: None,
            write: true,
            keyless: all(map).len() > 1,
            copy_in: true,
            copy_out: false,
            why: st.why.clone(),
        }),
        Target::Rows(rows) => split::split_rows(st, rows, map, params),
    }
}

/// The refusal of a Groups target that needs several shards: the plan's own reason (a
/// sharded table only inside a subquery), else a join not on the key.
fn cross_join(st: &StmtPlan) -> RouteError {
    if let Some(why) = &st.no_merge {
        return RouteError::Unroutable(format!(
            "{why}: add the sharding key to the subquery's WHERE clause or a /* pgproxy: shard_key=… */ hint"
        ));
    }
    RouteError::Unroutable(
        "this statement joins sharded tables on something other than their sharding key, across shards: \
         join them on the key, add the key to the WHERE clause, or add a /* pgproxy: shard_key=… */ hint"
            .into(),
    )
}

fn fanout(
    st: &StmtPlan,
    map: &ShardMap,
    shards: Vec<usize>,
    session: Option<usize>,
) -> Result<Route, RouteError> {
    if let Some(s) = session {
        return Ok(Route {
            shards: Shards::Some(vec![s]),
            merge: None,
            split: None,
            write: st.write,
            keyless: false,
            copy_in: false,
            copy_out: false,
            why: "SET pgproxy.shard_key".into(),
        });
    }
    if shards.len() == 1 {
        return Ok(Route {
            shards: Shards::Some(shards),
            merge: None,
            split: None,
            write: st.write,
            keyless: false,
            copy_in: false,
            copy_out: false,
            why: st.why.clone(),
        });
    }
    if st.write {
        if map.keyless_writes == crate::config::KeylessWrites::Deny {
            return Err(RouteError::Unroutable(
                "UPDATE/DELETE without the sharding key would run on every shard, and keyless_writes = \"deny\": \
                 add the key to the WHERE clause"
                    .into(),
            ));
        }
        return Ok(Route {
            shards: Shards::Some(shards),
            merge: None,
            split: None,
            write: true,
            keyless: true,
            copy_in: false,
            copy_out: false,
            why: format!("{} (no key: every shard)", st.why),
        });
    }
    match &st.merge {
        Some(m) => Ok(Route {
            shards: Shards::Some(shards),
            merge: Some(m.clone()),
            split: None,
            write: false,
            keyless: false,
            copy_in: false,
            copy_out: false,
            why: format!(
                "{} (no single shard: runs on {} shards, results merged)",
                st.why,
                map.shard_count()
            ),
        }),
        None => Err(RouteError::Unroutable(format!(
            "{}: {}",
            st.no_merge
                .as_deref()
                .unwrap_or("this query cannot be merged across shards"),
            "add the sharding key to the WHERE clause or a /* pgproxy: shard_key=… */ hint"
        ))),
    }
}

#[cfg(test)]
mod review_tests;
#[cfg(test)]
mod tests;
