//! The plan of one statement: what kind of statement it is decides the rules (a read of
//! sharded tables, an INSERT with keys per row, UPDATE/DELETE by key, DDL to every shard, …);
//! `scope.rs` supplies the facts about tables and keys. Pure.

use super::scope::{key_expr, split_name, Scope};
use super::{merge, CursorName, KeyExpr, StmtPlan, Target};
use crate::router::classify::lex::{is_blank, Lexed};
use crate::router::classify::{fallback_kind, ident_key, statement_kind};
use crate::router::Kind;
use crate::shard::ShardMap;
use sqlparser::ast::{
    AssignmentTarget, CopySource, Expr, Insert, ObjectNamePart, Query, SetExpr, Statement,
    TableObject,
};
use sqlparser::tokenizer::Token;
use std::collections::BTreeMap;
use std::ops::Range;

const HINT: &str = "add a /* pgproxy: shard=… */ or /* pgproxy: shard_key=… */ hint";

/// Plans the statement in `r`.
pub(super) fn plan_one(lexed: &Lexed<'_>, r: Range<usize>, map: &ShardMap) -> StmtPlan {
    if let Some(p) = cursor_use(lexed, r.clone()) {
        return p;
    }
    let stmts = match lexed.parse(r.clone()) {
        Ok(s) if s.len() == 1 => s,
        _ => {
            let words = lexed.words(r.clone(), 16);
            if words.first().is_some_and(|w| w == "copy") {
                // `COPY … FROM STDIN` without a semicolon (sqlparser reads inline data).
                match super::copy_in::parse_copy(lexed.text(r.clone())) {
                    Some(s) => s,
                    None => return unparsed(&words, map),
                }
            } else {
                return unparsed(&lexed.words(r, 3), map);
            }
        }
    };
    let stmt = &stmts[0];
    let kind = statement_kind(stmt);
    let plan = plan_parsed(stmt, kind, map, lexed.text(r));
    // A statement that names no sharded table would run on the session's current shard; one
    // that runs a user function there may read or write rows of any shard (the function's
    // body is invisible here), so it needs a key. Built-ins (now(), set_config, advisory
    // locks, nextval, …) read and write no user table: they stay where they are.
    if plan.target == Target::Any && kind == Kind::Write {
        if let Some(f) = crate::router::classify::user_function(stmt) {
            return StmtPlan::simple(
                Target::Opaque(opaque_call(&format!(
                    "this statement calls {f}(), which is not a PostgreSQL built-in"
                ))),
                true,
                "calls a user function",
            );
        }
    }
    plan
}

/// The refusal of a statement that runs code pgproxy cannot see into.
fn opaque_call(what: &str) -> String {
    format!(
        "{what}: pgproxy cannot see which shard's rows it reads or writes, and the statement names no \
         sharding key; add a /* pgproxy: shard_key=… */ hint (the key whose rows it touches) or \
         /* pgproxy: shard=… */, or SET pgproxy.shard_key"
    )
}

fn plan_parsed(stmt: &Statement, kind: Kind, map: &ShardMap, text: &str) -> StmtPlan {
    match stmt {
        Statement::Query(q) => {
            let mut p = plan_query(q, map, text);
            if kind == Kind::MainOnly && p.target == Target::Any {
                return StmtPlan::simple(
                    Target::Home,
                    false,
                    "pg_notify: the first shard, where listeners are",
                );
            }
            if kind != Kind::Read && p.merge.is_some() {
                // pg_notify, advisory locks, unknown functions: not to be run on every shard.
                p.merge = None;
                p.no_merge = Some(
                    "this query calls functions that change state or that pgproxy does not know (a user function may write, or be an aggregate), so it cannot run on several shards".into(),
                );
            }
            return p;
        }
        Statement::Declare { stmts } => {
            let mut out = StmtPlan::simple(Target::Any, false, "DECLARE");
            for d in stmts {
                if let Some(q) = &d.for_query {
                    out = plan_query(q, map, &q.to_string());
                    out.merge = None;
                    out.no_merge = Some("a cursor over several shards is not supported".into());
                }
                if let Some(name) = d.names.first() {
                    out.declares = Some((
                        ident_key(&name.value, name.quote_style),
                        d.hold == Some(true),
                    ));
                }
            }
            return out;
        }
        _ => {}
    }
    if kind == Kind::MainOnly {
        return StmtPlan::simple(
            Target::Home,
            false,
            "LISTEN / NOTIFY: the first shard, where listeners and notifiers meet",
        );
    }
    match kind {
        Kind::Session | Kind::Empty => {}
        k if k.is_txn_control() => {}
        Kind::Unsupported => {}
        _ => return plan_statement(stmt, kind, map, text),
    }
    if let Statement::Prepare { statement, .. } = stmt {
        let inner = plan_statement(
            statement,
            statement_kind(statement),
            map,
            &statement.to_string(),
        );
        // EXECUTE would run a user function's call wherever the session is.
        if inner.target != Target::Any
            || inner.write
            || crate::router::classify::user_function(statement).is_some()
        {
            return StmtPlan::simple(
                Target::Refuse(
                    "SQL-level PREPARE of a statement on sharded or shared tables cannot be routed at EXECUTE: \
                     use your driver's (protocol-level) prepared statements"
                        .into(),
                ),
                false,
                "PREPARE",
            );
        }
    }
    StmtPlan::simple(Target::Any, false, "session or transaction statement")
}

/// FETCH / MOVE / CLOSE: the cursor they name is the statement's last token (`FETCH
/// [direction] [FROM | IN] name`, `MOVE …`, `CLOSE name | ALL`), read from the tokens so that
/// what sqlparser does not parse (MOVE) is routed the same way.
fn cursor_use(lexed: &Lexed<'_>, r: Range<usize>) -> Option<StmtPlan> {
    let first = lexed.words(r.clone(), 1);
    let verb = first.first()?.as_str();
    if !matches!(verb, "fetch" | "move" | "close") {
        return None;
    }
    let last = lexed.tokens[r].iter().rev().find(|t| !is_blank(&t.token))?;
    let Token::Word(w) = &last.token else {
        // Not a cursor name: PostgreSQL reports the syntax error on any shard.
        return Some(StmtPlan::simple(Target::Any, false, "FETCH / MOVE / CLOSE"));
    };
    let closes = verb == "close";
    let name = if closes && w.quote_style.is_none() && w.value.eq_ignore_ascii_case("all") {
        CursorName::All
    } else {
        CursorName::Named(ident_key(&w.value, w.quote_style))
    };
    let why = if closes { "CLOSE" } else { "FETCH / MOVE" };
    Some(StmtPlan::simple(
        Target::Cursor { name, closes },
        false,
        why,
    ))
}

/// A statement sqlparser cannot parse: DDL-like words go to every shard (PostgreSQL judges
/// it), session words anywhere, the rest is refused (it could touch any table).
fn unparsed(words: &[String], map: &ShardMap) -> StmtPlan {
    let first = words.first().map(String::as_str).unwrap_or("");
    if first == "copy" {
        let table = words.get(1).map(String::as_str).unwrap_or("");
        let (schema, name, next) = match (words.get(2), words.get(3)) {
            (Some(dot), Some(n)) if dot == "." => (Some(table), n.as_str(), 4),
            _ => (None, table, 2),
        };
        let to = words
            .iter()
            .skip(next)
            .find(|w| *w == "to" || *w == "from")
            .is_some_and(|w| w == "to");
        if map.key_column(schema, name).is_none() && !table.starts_with('(') {
            return if to {
                StmtPlan::simple(Target::Any, false, "COPY from a shared table: one shard")
            } else {
                StmtPlan::simple(
                    Target::All,
                    true,
                    "COPY into a shared table: every node of every shard",
                )
            };
        }
        return StmtPlan::simple(
            Target::Refuse(format!(
                "COPY {table} {}: pgproxy could not read this COPY (an option or clause its parser does not know), so it cannot route its rows; {}",
                if to { "TO" } else { "FROM" },
                if to { "use COPY (SELECT … WHERE key = …) TO STDOUT" } else { "use COPY <table> [(columns)] FROM STDIN [WITH (FORMAT text|csv, …)]" }
            )),
            !to,
            "COPY",
        );
    }
    if first == "call" {
        return StmtPlan::simple(
            Target::Opaque(opaque_call("CALL runs a user procedure")),
            true,
            "CALL",
        );
    }
    match first {
        "create" | "alter" | "drop" | "comment" | "grant" | "revoke" | "reindex" | "cluster"
        | "security" | "do" | "vacuum" | "analyze" | "analyse" | "checkpoint" => StmtPlan::simple(
            Target::All,
            true,
            "schema or maintenance statement pgproxy does not parse: every shard",
        ),
        _ => match fallback_kind(words) {
            Kind::Write | Kind::Read => StmtPlan::simple(
                Target::Refuse(format!(
                    "{}, so it cannot tell which shard owns its rows: {HINT}",
                    super::UNPARSED
                )),
                true,
                "unparsed",
            ),
            _ => StmtPlan::simple(Target::Any, false, "session or transaction statement"),
        },
    }
}

fn plan_statement(stmt: &Statement, kind: Kind, map: &ShardMap, text: &str) -> StmtPlan {
    match stmt {
        Statement::Query(q) => plan_query(q, map, text),
        Statement::Insert(ins) => plan_insert(ins, map),
        Statement::Update { assignments, .. } => {
            let key_set = assignments.iter().any(|a| {
                let names: Vec<_> = match &a.target {
                    AssignmentTarget::ColumnName(n) => vec![n],
                    AssignmentTarget::Tuple(v) => v.iter().collect(),
                };
                names.iter().any(|n| {
                    let col = match n.0.last() {
                        Some(ObjectNamePart::Identifier(id)) => {
                            ident_key(&id.value, id.quote_style)
                        }
                        _ => return false,
                    };
                    map.tables().iter().any(|t| t.column == col)
                })
            });
            let mut plan = plan_dml(stmt, map, "UPDATE");
            if key_set && plan.target != Target::All {
                plan.target = Target::Refuse(
                    "UPDATE of a sharded table's key column would move the row to another shard: \
                     DELETE it and INSERT it with the new key instead"
                        .into(),
                );
            }
            plan
        }
        Statement::Delete(_) => plan_dml(stmt, map, "DELETE"),
        Statement::Merge { table, .. } => {
            let (schema, name) = match table {
                sqlparser::ast::TableFactor::Table { name, .. } => split_name(name),
                _ => (None, String::new()),
            };
            if map.key_column(schema.as_deref(), &name).is_some() || mentions_sharded(stmt, map) {
                StmtPlan::simple(
                    Target::Refuse(format!(
                        "MERGE into a sharded table is not supported: {HINT}"
                    )),
                    true,
                    "MERGE",
                )
            } else {
                StmtPlan::simple(Target::All, true, "MERGE into a shared table: every shard")
            }
        }
        Statement::Copy { source, to, .. } => plan_copy(source, *to, map),
        Statement::Explain {
            analyze,
            statement,
            options,
            ..
        } => {
            let analyze = *analyze
                || options
                    .iter()
                    .flatten()
                    .any(|o| o.name.value.eq_ignore_ascii_case("analyze"));
            let mut inner = plan_statement(statement, statement_kind(statement), map, &statement.to_string());
            // EXPLAIN of a multi-row INSERT must not turn into INSERTs per shard.
            inner.split = None;
            if analyze {
                return StmtPlan {
                    merge: None,
                    no_merge: Some(
                        "EXPLAIN ANALYZE runs the statement: it needs a single shard".into(),
                    ),
                    ..inner
                };
            }
            match inner.target {
                Target::Fanout | Target::All | Target::Keys(_) | Target::Rows(_) => StmtPlan::simple(
                    match inner.target {
                        Target::Keys(k) => Target::Keys(k),
                        _ => Target::Any,
                    },
                    false,
                    "EXPLAIN: the plan on one shard",
                ),
                _ => StmtPlan {
                    write: false,
                    ..inner
                },
            }
        }
        // Only PREPAREs of statements without tables are let through (see plan_one).
        Statement::Execute { .. } => {
            StmtPlan::simple(Target::Any, false, "EXECUTE of a statement without tables")
        }
        Statement::Truncate { .. } => StmtPlan::simple(Target::All, true, "TRUNCATE: every shard"),
        Statement::Call(f) => StmtPlan::simple(
            Target::Opaque(opaque_call(&format!("CALL {} runs a user procedure", f.name))),
            true,
            "CALL",
        ),
        _ if kind == Kind::Read => StmtPlan::simple(Target::Any, false, "reads no table"),
        _ if reads_sharded(stmt, map) => StmtPlan::simple(
            Target::Refuse(format!(
                "this statement changes every shard but reads a sharded table (CREATE TABLE AS, a view, …): each shard would see only its own rows; {HINT}"
            )),
            true,
            "DDL",
        ),
        _ => StmtPlan::simple(Target::All, true, "schema or shared-state change: every shard"),
    }
}

/// True when the statement names a sharded table anywhere (MERGE's source is a table).
fn mentions_sharded(stmt: &Statement, map: &ShardMap) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_relations(stmt, |name| {
        let (s, t) = split_name(name);
        found |= map.key_column(s.as_deref(), &t).is_some();
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// True when a query inside the statement reads a sharded table.
fn reads_sharded(stmt: &Statement, map: &ShardMap) -> bool {
    use sqlparser::ast::Visit;
    struct Queries<'m> {
        map: &'m ShardMap,
        found: bool,
    }
    impl sqlparser::ast::Visitor for Queries<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> std::ops::ControlFlow<()> {
            let mut scope = Scope::default();
            scope.query(self.map, q);
            if !scope.refs.is_empty() {
                self.found = true;
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut v = Queries { map, found: false };
    let _ = stmt.visit(&mut v);
    v.found
}

/// A co-location class: (depth of its shallowest members, their block if they share one,
/// has a top-level member, the pins of the shallowest members).
type Class = (usize, Option<usize>, bool, Vec<Vec<KeyExpr>>);

/// Where the rows of a scope live.
fn target_of(scope: &Scope) -> Target {
    if scope.refs.is_empty() {
        return Target::Any;
    }
    // Co-location classes, each with the pins of its shallowest members.
    let mut classes: BTreeMap<usize, Class> = BTreeMap::new();
    for (i, r) in scope.refs.iter().enumerate() {
        let root = scope.class(i);
        let e = classes
            .entry(root)
            .or_insert((usize::MAX, None, false, Vec::new()));
        if r.depth < e.0 {
            *e = (r.depth, Some(r.block), r.depth == 0, r.pins.clone());
        } else if r.depth == e.0 {
            if e.1 != Some(r.block) {
                // Shallowest members in different blocks: their pins restrict different rows.
                e.3.clear();
                e.1 = None;
            }
            e.2 |= r.depth == 0;
        }
    }
    let groups: Vec<(bool, Vec<Vec<KeyExpr>>)> =
        classes.into_values().map(|c| (c.2, c.3)).collect();
    if groups.len() == 1 && groups[0].0 {
        let pins = groups.into_iter().next().map(|g| g.1).unwrap_or_default();
        return if pins.is_empty() {
            Target::Fanout
        } else {
            Target::Keys(pins)
        };
    }
    Target::Groups(groups.into_iter().map(|g| g.1).collect())
}

fn plan_query(q: &Query, map: &ShardMap, text: &str) -> StmtPlan {
    let mut scope = Scope::default();
    scope.query(map, q);
    if let Some(why) = &scope.opaque {
        if !scope.refs.is_empty() || why.contains("data-modifying") {
            return StmtPlan::simple(
                Target::Refuse(format!("{why} is not supported with sharding: {HINT}")),
                true,
                "query",
            );
        }
    }
    if let SetExpr::Select(sel) = q.body.as_ref() {
        if sel.into.is_some() {
            return if scope.refs.is_empty() {
                StmtPlan::simple(Target::All, true, "SELECT INTO a new table: every shard")
            } else {
                StmtPlan::simple(
                    Target::Refuse(format!("SELECT … INTO from a sharded table: each shard would copy only its own rows; {HINT}")),
                    true,
                    "SELECT INTO",
                )
            };
        }
    }
    let mut target = target_of(&scope);
    // One sharded table, only inside subqueries: merged when it is one plain subquery in FROM.
    let mut subquery_only = None;
    if let Target::Groups(groups) = &target {
        if let ([pins], [_]) = (groups.as_slice(), scope.refs.as_slice()) {
            let sharded = |n: &sqlparser::ast::ObjectName| {
                let (s, t) = split_name(n);
                map.key_column(s.as_deref(), &t).is_some()
            };
            match merge::derived_rows(q, &sharded) {
                Ok(()) if pins.is_empty() => target = Target::Fanout,
                Ok(()) => target = Target::Keys(pins.clone()),
                Err(why) => subquery_only = Some(why),
            }
        } else if groups.len() == 1 {
            subquery_only = Some(merge::subquery_only());
        }
    }
    let mut plan = StmtPlan::simple(target, false, "query");
    // Why the Groups target cannot fan out, when that is not a join.
    plan.no_merge = subquery_only;
    plan.why = match &plan.target {
        Target::Any => "reads no sharded table: one shard".into(),
        Target::Keys(_) => "sharding key in WHERE".into(),
        Target::Fanout => "sharded table without a key".into(),
        Target::Groups(_) => "several sharded tables not joined on the key".into(),
        _ => "query".into(),
    };
    if matches!(plan.target, Target::Keys(_) | Target::Fanout) {
        match merge::spec(q, text) {
            Ok(m) => plan.merge = Some(m),
            Err(why) if why == merge::NEGATIVE_COUNT => {
                // Any one shard answers with PostgreSQL's own error.
                plan.target = Target::Any;
                plan.why = why;
            }
            Err(why) => plan.no_merge = Some(why),
        }
    }
    plan
}

fn plan_dml(stmt: &Statement, map: &ShardMap, verb: &str) -> StmtPlan {
    let mut scope = Scope::default();
    scope.statement(map, stmt);
    let target_is_sharded = scope
        .refs
        .first()
        .is_some_and(|r| r.depth == 0 && r.block == 0)
        && first_table_is_sharded(stmt, map);
    if !target_is_sharded {
        if !scope.refs.is_empty() {
            return StmtPlan::simple(
                Target::Refuse(format!(
                    "{verb} of a shared (unsharded) table that reads a sharded table: each shard would see only its own rows; {HINT}"
                )),
                true,
                verb,
            );
        }
        return StmtPlan::simple(
            Target::All,
            true,
            &format!("{verb} of a shared table: every shard"),
        );
    }
    if let Some(why) = &scope.opaque {
        return StmtPlan::simple(
            Target::Refuse(format!("{why} is not supported with sharding: {HINT}")),
            true,
            verb,
        );
    }
    let target = target_of(&scope);
    let why = match &target {
        Target::Keys(_) => format!("{verb} by sharding key"),
        Target::Fanout => format!("{verb} without a sharding key"),
        _ => verb.to_string(),
    };
    StmtPlan::simple(target, true, &why)
}

fn first_table_is_sharded(stmt: &Statement, map: &ShardMap) -> bool {
    let name = match stmt {
        Statement::Update { table, .. } => match &table.relation {
            sqlparser::ast::TableFactor::Table { name, .. } => Some(name),
            _ => None,
        },
        Statement::Delete(d) => {
            let (sqlparser::ast::FromTable::WithFromKeyword(f)
            | sqlparser::ast::FromTable::WithoutKeyword(f)) = &d.from;
            match f.first().map(|t| &t.relation) {
                Some(sqlparser::ast::TableFactor::Table { name, .. }) => Some(name),
                _ => None,
            }
        }
        _ => None,
    };
    name.is_some_and(|n| {
        let (s, t) = split_name(n);
        map.key_column(s.as_deref(), &t).is_some()
    })
}

fn plan_insert(ins: &Insert, map: &ShardMap) -> StmtPlan {
    let TableObject::TableName(name) = &ins.table else {
        return StmtPlan::simple(
            Target::Refuse(format!("INSERT into a table function: {HINT}")),
            true,
            "INSERT",
        );
    };
    let (schema, table) = split_name(name);
    let source_plan = ins
        .source
        .as_ref()
        .map(|q| plan_query(q, map, &q.to_string()));
    let Some(column) = map.key_column(schema.as_deref(), &table) else {
        if source_plan.is_some_and(|p| p.target != Target::Any) {
            return StmtPlan::simple(
                Target::Refuse(format!("INSERT into a shared table from a sharded table: each shard holds only its own rows; {HINT}")),
                true,
                "INSERT",
            );
        }
        if reads_sharded(&Statement::Insert(ins.clone()), map) {
            return StmtPlan::simple(
                Target::Refuse(format!("INSERT into a shared table that reads a sharded table: each shard holds only its own rows; {HINT}")),
                true,
                "INSERT",
            );
        }
        return StmtPlan::simple(Target::All, true, "INSERT into a shared table: every shard");
    };
    let pos = if ins.columns.is_empty() {
        if ins.source.is_none() {
            return StmtPlan::simple(
                Target::Refuse(format!(
                    "INSERT … DEFAULT VALUES into sharded table {name} gives no value for its sharding key {column}: give the key"
                )),
                true,
                "INSERT",
            );
        }
        // The table's own column order, once the session read it from the catalog.
        let Some(columns) = map.table_columns(&name.to_string()) else {
            let mut p = StmtPlan::simple(
                Target::Refuse(format!(
                    "INSERT into sharded table {name} without a column list: pgproxy could not read the table's columns to find the key {column} (no such table outside your transaction?); name the columns (INSERT INTO {name} (…) VALUES …)"
                )),
                true,
                "INSERT",
            );
            p.needs_columns = Some(name.to_string());
            return p;
        };
        columns.iter().position(|c| c == column)
    } else {
        ins.columns
            .iter()
            .position(|c| ident_key(&c.value, c.quote_style) == column)
    };
    let Some(pos) = pos else {
        return StmtPlan::simple(
            Target::Refuse(format!(
                "INSERT into sharded table {name} without its sharding key {column}: give the key"
            )),
            true,
            "INSERT",
        );
    };
    let mut scope = Scope::default();
    let keys: Vec<Option<KeyExpr>> = match ins.source.as_deref().map(|q| (q, q.body.as_ref())) {
        Some((q, SetExpr::Values(v))) if q.with.is_none() => {
            for row in &v.rows {
                for e in row {
                    scope.expr(map, e);
                }
            }
            v.rows
                .iter()
                .map(|r| r.get(pos).and_then(key_expr))
                .collect()
        }
        // An ORM's batch INSERT over rows it lists (VALUES in FROM, UNNEST): keyed per row,
        // when the SELECT reads no sharded table.
        Some((q, _))
            if source_plan
                .as_ref()
                .is_some_and(|p| p.target == Target::Any) =>
        {
            match super::listed::listed_keys(q, pos) {
                Some(keys) => keys,
                None => return insert_select_refused(name),
            }
        }
        _ => return insert_select_refused(name),
    };
    if let Some(sqlparser::ast::OnInsert::OnConflict(oc)) = &ins.on {
        if let sqlparser::ast::OnConflictAction::DoUpdate(du) = &oc.action {
            let keeps = KeyKept {
                column,
                table: &table,
                alias: ins.table_alias.as_ref(),
                in_target: matches!(&oc.conflict_target,
                    Some(sqlparser::ast::ConflictTarget::Columns(cols))
                        if cols.iter().any(|c| ident_key(&c.value, c.quote_style) == column)),
            };
            for a in &du.assignments {
                if let Some(why) = keeps.refusal(a) {
                    return StmtPlan::simple(Target::Refuse(why), true, "INSERT");
                }
                scope.expr(map, &a.value);
            }
            if let Some(w) = &du.selection {
                scope.expr(map, w);
            }
        }
    }
    if !scope.refs.is_empty() {
        return StmtPlan::simple(
            Target::Refuse(format!("INSERT into sharded table {name} with a subquery over a sharded table: compute the value first, or {HINT}")),
            true,
            "INSERT",
        );
    }
    let listed = !matches!(
        ins.source.as_deref().map(|q| q.body.as_ref()),
        Some(SetExpr::Values(_))
    );
    let mut plan = StmtPlan::simple(
        Target::Rows(keys),
        true,
        &format!("INSERT with key {column}"),
    );
    // Listed rows of several shards are refused (the SELECT is not split).
    if !listed {
        plan.split = Some(Box::new(ins.clone()));
    }
    plan
}

fn insert_select_refused(name: &sqlparser::ast::ObjectName) -> StmtPlan {
    StmtPlan::simple(
        Target::Refuse(format!(
            "INSERT … SELECT into sharded table {name}: pgproxy cannot check which shard each row belongs to; insert with VALUES (or SELECT from VALUES / UNNEST of literal arrays), or {HINT}"
        )),
        true,
        "INSERT",
    )
}

/// ON CONFLICT DO UPDATE of a sharded table: may an assignment set the key column? Only to
/// the value it has: the existing row's own key (`SET user_id = contacts.user_id`), or the
/// proposed row's key (`EXCLUDED.user_id`) when the key is one of the conflict columns, so the
/// conflicting row has that key already (Sequelize's upsert sets every conflict column).
/// Without the key in the conflict target (`ON CONFLICT (id)`, `ON CONFLICT ON CONSTRAINT …`)
/// the conflicting row may belong to another key: on one PostgreSQL it would move to the new
/// key, across shards pgproxy cannot move it.
struct KeyKept<'a> {
    column: &'a str,
    table: &'a str,
    alias: Option<&'a sqlparser::ast::Ident>,
    in_target: bool,
}

impl KeyKept<'_> {
    /// Why the assignment cannot run, if it sets the key to anything else.
    fn refusal(&self, a: &sqlparser::ast::Assignment) -> Option<String> {
        let is_key = |n: &sqlparser::ast::ObjectName| match n.0.last() {
            Some(ObjectNamePart::Identifier(id)) => {
                ident_key(&id.value, id.quote_style) == self.column
            }
            _ => false,
        };
        let value_ok = |e: &Expr| self.keeps_key(e);
        let ok = match &a.target {
            AssignmentTarget::ColumnName(n) => !is_key(n) || value_ok(&a.value),
            AssignmentTarget::Tuple(names) => match strip(&a.value) {
                Expr::Tuple(values) if values.len() == names.len() => names
                    .iter()
                    .zip(values)
                    .all(|(n, v)| !is_key(n) || value_ok(v)),
                _ => !names.iter().any(is_key),
            },
        };
        if ok {
            return None;
        }
        let column = self.column;
        Some(if self.in_target {
            format!(
                "ON CONFLICT DO UPDATE that sets the sharding key {column} to another value would move the row to another shard: \
                 set it to EXCLUDED.{column} (or leave it out) and update the other columns"
            )
        } else {
            format!(
                "ON CONFLICT DO UPDATE SET {column} = …: the conflicting row may belong to another key (the sharding key {column} is not among the conflict columns), \
                 and pgproxy cannot move it to another shard: list {column} in the conflict target (ON CONFLICT (…, {column})) or leave {column} out of SET"
            )
        })
    }

    /// `e` is the existing row's key, or (key in the conflict target) the proposed row's.
    fn keeps_key(&self, e: &Expr) -> bool {
        let parts: Vec<String> = match strip(e) {
            // Unqualified, the name is ambiguous (table or EXCLUDED): PostgreSQL refuses it.
            Expr::Identifier(id) => return ident_key(&id.value, id.quote_style) == self.column,
            Expr::CompoundIdentifier(ids) => ids
                .iter()
                .map(|id| ident_key(&id.value, id.quote_style))
                .collect(),
            _ => return false,
        };
        let [qualifier, col] = parts.as_slice() else {
            return false;
        };
        if col != self.column {
            return false;
        }
        // With an alias, PostgreSQL rejects the table's own name itself.
        let own = qualifier == self.table
            || self
                .alias
                .is_some_and(|a| *qualifier == ident_key(&a.value, a.quote_style));
        own || (self.in_target && qualifier == "excluded")
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

fn plan_copy(source: &CopySource, to: bool, map: &ShardMap) -> StmtPlan {
    match source {
        CopySource::Table { table_name, .. } => {
            let (s, t) = split_name(table_name);
            let sharded = map.key_column(s.as_deref(), &t).is_some();
            match (sharded, to) {
                (false, true) => {
                    StmtPlan::simple(Target::Any, false, "COPY from a shared table: one shard")
                }
                (false, false) => StmtPlan::simple(
                    Target::All,
                    true,
                    "COPY into a shared table: every node of every shard",
                ),
                (true, false) => StmtPlan::simple(
                    Target::CopyIn,
                    true,
                    "COPY into a sharded table: each row to its key's shard",
                ),
                (true, true) => StmtPlan::simple(
                    Target::CopyOut,
                    false,
                    "COPY out of a sharded table: every shard's rows, one shard after the other",
                ),
            }
        }
        CopySource::Query(q) => {
            let p = plan_query(q, map, &q.to_string());
            StmtPlan {
                merge: None,
                no_merge: Some("COPY (SELECT …) TO needs a single shard".into()),
                ..p
            }
        }
    }
}
