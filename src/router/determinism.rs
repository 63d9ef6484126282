//! Making a write deterministic for statement-based replication: every node of a shard runs
//! the same SQL, so a value that differs per evaluation (clock functions, random(),
//! gen_random_uuid(), nextval(), also hidden in column defaults) is evaluated once on the main
//! node and every node receives it as a literal. This module only plans: it says which values
//! the caller must fetch (`Need`) and renders the SQL once they are known. Writes it cannot
//! make deterministic are refused with a reason that says what to do instead.
//! Pure: no IO, no pools.

mod batch;
mod copy;
mod copy_binary;
mod copy_field;
mod defaults;
mod fallback;
mod overlay;
mod render;
mod rewrite;
mod selection;
mod statement;
mod template;

use std::collections::HashMap;
use std::ops::{ControlFlow, Range};

use sqlparser::ast::{visit_statements, CopySource, Insert, Statement, TableFactor, TableObject};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, TokenWithSpan};

use super::classify::lex::Lexed;
use super::classify::{object_key, statement_kind, Kind};
pub use copy::{copy_format, plan_copy, AddedColumn, CopyFormat, CopyPlan, CutRow, RowCutter};
pub use copy_binary::{BinaryCutter, BinaryTuple, TRAILER as COPY_BINARY_TRAILER};
pub use copy_field::field_of;
use fallback::strip_overriding;
use render::{Piece, Slot};
use rewrite::Collector;
use statement::Cx;
pub use template::{template, Template};

/// A value pgproxy must obtain once from the main node, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// now(), CURRENT_TIMESTAMP, transaction_timestamp(), CURRENT_DATE, CURRENT_TIME,
    /// LOCALTIME, LOCALTIMESTAMP: one per plan; the caller may reuse it for the transaction.
    TxnTimestamp,
    /// clock_timestamp(), statement_timestamp(), timeofday(): one per occurrence.
    ClockTimestamp,
    /// random().
    Random,
    /// gen_random_uuid(), uuid_generate_v4().
    Uuid,
    /// nextval(<arg>): the argument as SQL text exactly as written, e.g. `'t_id_seq'` or
    /// `'public.t_id_seq'::regclass`.
    Nextval(String),
    /// currval(<arg>) or lastval(): the call as SQL text. It reads the session's sequence
    /// state, which only the main's connection is sure to hold (the other nodes' sequences are
    /// moved with a setval that may not run).
    SequenceState(String),
    /// nextval(<arg>) once for each of the rows an `INSERT … SELECT … FROM UNNEST(…)` inserts,
    /// as an int8 array.
    NextvalRows { arg: String, count: RowCount },
    /// gen_random_uuid() once for each of `count` rows, as a uuid array.
    UuidRows { count: RowCount },
}

/// How many rows an `UNNEST(a, b, …)` gives: as many as its longest array has elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCount {
    /// SQL for each array's element count (`pg_catalog.cardinality(…)`, or a number).
    pub sql: Vec<String>,
    /// Arrays that are parameters (`$n`): their counts come from the Bind
    /// (`Need::with_row_counts`) before the need is evaluated.
    pub params: Vec<usize>,
}

impl RowCount {
    fn sql_text(&self) -> String {
        debug_assert!(
            self.params.is_empty(),
            "row count of parameters not resolved"
        );
        match self.sql.as_slice() {
            [] => "0".to_string(),
            [one] => one.clone(),
            many => format!("GREATEST({})", many.join(", ")),
        }
    }
}

impl Need {
    /// The SQL expression the caller evaluates on the main node (it runs
    /// `SELECT (e1)::text, (e2)::text, …`).
    pub fn main_sql(&self) -> String {
        match self {
            Need::TxnTimestamp => "now()".to_string(),
            Need::ClockTimestamp => "clock_timestamp()".to_string(),
            Need::Random => "random()".to_string(),
            Need::Uuid => "gen_random_uuid()".to_string(),
            Need::Nextval(arg) => format!("nextval({arg})"),
            Need::SequenceState(call) => call.clone(),
            Need::NextvalRows { arg, count } => format!(
                "ARRAY(SELECT nextval({arg}) FROM pg_catalog.generate_series(1, {}))",
                count.sql_text()
            ),
            Need::UuidRows { count } => format!(
                "ARRAY(SELECT pg_catalog.gen_random_uuid() FROM pg_catalog.generate_series(1, {}))",
                count.sql_text()
            ),
        }
    }

    /// The parameters ($n) whose array lengths this need waits for.
    pub fn row_params(&self) -> &[usize] {
        match self {
            Need::NextvalRows { count, .. } | Need::UuidRows { count } => &count.params,
            _ => &[],
        }
    }

    /// This need with its parameters' array lengths filled in (`len(n)`: the number of
    /// elements of parameter `$n`); `None` if one is not known.
    pub fn with_row_counts(&self, len: impl Fn(usize) -> Option<usize>) -> Option<Need> {
        let fill = |c: &RowCount| -> Option<RowCount> {
            let mut sql = c.sql.clone();
            for &n in &c.params {
                sql.push(len(n)?.to_string());
            }
            Some(RowCount {
                sql,
                params: Vec::new(),
            })
        };
        Some(match self {
            Need::NextvalRows { arg, count } => Need::NextvalRows {
                arg: arg.clone(),
                count: fill(count)?,
            },
            Need::UuidRows { count } => Need::UuidRows {
                count: fill(count)?,
            },
            other => other.clone(),
        })
    }

    /// For `Nextval`: the SQL the caller runs on every other node so its sequence does not
    /// fall behind the main (`value` is the text the main returned). `None` for other needs.
    pub fn follower_sql(&self, value: &str) -> Option<String> {
        let (arg, value) = match self {
            Need::Nextval(arg) => (arg, value),
            // The last value handed out (they ascend); none for no rows.
            Need::NextvalRows { arg, .. } => (
                arg,
                value
                    .trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .rsplit(',')
                    .next()
                    .filter(|v| !v.is_empty())?,
            ),
            _ => return None,
        };
        let v = match value.trim().parse::<i64>() {
            Ok(n) => n.to_string(),
            Err(_) => format!("{}::int8", render::quote(value)),
        };
        Some(format!(
            "SELECT pg_catalog.setval({arg}, {v}) WHERE coalesce(pg_catalog.pg_sequence_last_value(({arg})::regclass), 0) < {v}"
        ))
    }
}

/// What the other nodes run so their sequences do not fall behind the main: one `setval` per
/// sequence, to the last value the main handed out (a batch of rows takes many).
#[derive(Debug, Default)]
pub struct CatchUp {
    by_sequence: Vec<(String, String)>,
}

impl CatchUp {
    /// Notes the main's value `value` for `need`.
    pub fn add(&mut self, need: &Need, value: &str) {
        let (Need::Nextval(arg) | Need::NextvalRows { arg, .. }) = need else {
            return;
        };
        let Some(sql) = need.follower_sql(value) else {
            return;
        };
        match self.by_sequence.iter_mut().find(|(a, _)| a == arg) {
            Some(slot) => slot.1 = sql,
            None => self.by_sequence.push((arg.clone(), sql)),
        }
    }

    /// The statements, in the order the sequences were first seen.
    pub fn into_sql(self) -> Vec<String> {
        self.by_sequence.into_iter().map(|(_, sql)| sql).collect()
    }
}

/// The default of one column, as the caller loaded it from the main node's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDefault {
    /// Column name as stored in the catalog.
    pub name: String,
    /// The default as `pg_get_expr(adbin, adrelid)` prints it (for identity columns the
    /// caller puts `nextval('<sequence>'::regclass)` here).
    pub expr: String,
    /// GENERATED ALWAYS AS IDENTITY: an explicit value needs OVERRIDING SYSTEM VALUE.
    pub identity_always: bool,
}

/// Column defaults of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDefaults {
    /// Columns that have a default or are identity columns.
    pub columns: Vec<ColumnDefault>,
    /// Every column in table order (for an INSERT without a column list).
    pub all_columns: Vec<String>,
}

/// Where `plan` finds column defaults, keyed like `write_targets` names tables.
pub trait Schema {
    /// The defaults of `table`; `None` if unknown (treated as having no defaults).
    fn defaults(&self, table: &str) -> Option<&TableDefaults>;
}

impl Schema for HashMap<String, TableDefaults> {
    fn defaults(&self, table: &str) -> Option<&TableDefaults> {
        self.get(table)
    }
}

/// What to do with a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// Nothing non-deterministic: send the SQL as it is.
    Unchanged,
    /// Evaluate `needs` on the main node, then send `Plan::render(values)` instead.
    Rewrite(Plan),
    /// Cannot be made deterministic: why, and what to do instead.
    Refused(String),
}

/// A rewritten SQL string waiting for values from the main node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Values to evaluate on the main node, in order; `render` takes one text per need.
    pub needs: Vec<Need>,
    pieces: Vec<Piece>,
    slots: Vec<Slot>,
}

impl Plan {
    /// The SQL to send, with `values[i]` (the main node's text for `needs[i]`) as typed
    /// literals. Statements of a multi-statement string are joined by "; ".
    pub fn render(&self, values: &[String]) -> String {
        render::render(&self.pieces, &self.slots, values, &[])
    }

    /// `render` for a plan of a template: `params[n - 1]` is the original text of `$n`.
    pub fn render_with(&self, values: &[String], params: &[&str]) -> String {
        render::render(&self.pieces, &self.slots, values, params)
    }
}

/// Tables that statements insert into, update or merge into (also inside WITH, EXPLAIN and
/// PREPARE), without duplicates: unquoted names lowercased, quoted parts kept with their
/// quotes, schema-qualified as written (`t`, `public.t`, `public."T"`). The caller loads their
/// defaults before calling `plan`.
pub fn write_targets(sql: &str) -> Vec<String> {
    let Some(lexed) = Lexed::new(sql) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |t: String| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for r in lexed.statements() {
        let (tokens, _) = strip_overriding(&lexed.tokens[r.clone()]);
        let Ok(stmts) = parse_tokens(tokens) else {
            if let Some(t) = fallback::insert_target(&lexed, r.clone()) {
                push(t);
            } else if let Some(c) = fallback::copy_target(&lexed, r) {
                push(c.table);
            }
            continue;
        };
        let _ = visit_statements(&stmts, |s| {
            match s {
                Statement::Insert(Insert {
                    table: TableObject::TableName(n),
                    ..
                }) => push(object_key(n)),
                Statement::Update { table, .. } => {
                    if let TableFactor::Table { name, .. } = &table.relation {
                        push(object_key(name));
                    }
                }
                Statement::Merge {
                    table: TableFactor::Table { name, .. },
                    ..
                } => push(object_key(name)),
                Statement::Copy {
                    source: CopySource::Table { table_name, .. },
                    to: false,
                    ..
                } => push(object_key(table_name)),
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
    }
    out
}

/// Plans a write (one or more statements). Statements that do not classify as writes are left
/// alone; so is text that does not even tokenize (the node reports the syntax error).
pub fn plan(sql: &str, schema: &dyn Schema) -> Planned {
    plan_inner(sql, schema, false).unwrap_or(Planned::Unchanged)
}

/// Plans the text of a `Template` (its numbers are parameters `$n`): the plan serves every
/// statement with that template, rendered with `Plan::render_with` and the statement's own
/// numbers. `None` when the template cannot stand for its statements, and the statement
/// itself must be planned: sqlparser cannot parse it (the token-level fallback would read
/// the template, not the statement), the plan is a refusal (its reason would quote the
/// template), or a value to evaluate mentions a parameter.
pub fn plan_template(text: &str, schema: &dyn Schema) -> Option<Planned> {
    let planned = plan_inner(text, schema, true)?;
    match &planned {
        Planned::Refused(_) => None,
        Planned::Rewrite(p)
            if p.needs
                .iter()
                .any(|n| !n.row_params().is_empty() || n.main_sql().contains('$')) =>
        {
            None
        }
        Planned::Rewrite(p) => {
            let mut pieces = Vec::with_capacity(p.pieces.len());
            for piece in &p.pieces {
                let Piece::Text(t) = piece else {
                    pieces.push(piece.clone());
                    continue;
                };
                let (parts, rest) = template::split_params(t);
                for (before, n) in parts {
                    render::push_text(&mut pieces, &before);
                    pieces.push(Piece::Param(n));
                }
                render::push_text(&mut pieces, &rest);
            }
            Some(Planned::Rewrite(Plan {
                needs: p.needs.clone(),
                pieces,
                slots: p.slots.clone(),
            }))
        }
        Planned::Unchanged => Some(planned),
    }
}

/// Calls setval, currval or lastval (conservative: any mention).
fn reads_sequence_state(sql: &str) -> bool {
    ["setval", "currval", "lastval"]
        .iter()
        .any(|f| super::keywords::contains_ignore_case(sql.as_bytes(), f.as_bytes()))
}

/// `plan`; `None` if `strict` and some statement needed the token-level fallback.
fn plan_inner(sql: &str, schema: &dyn Schema, strict: bool) -> Option<Planned> {
    let Some(lexed) = Lexed::new(sql) else {
        return if strict {
            None
        } else {
            Some(Planned::Unchanged)
        };
    };
    let sentinel = render::sentinel_for(sql);
    let mut c = Collector::new(sentinel.clone());
    let mut schema = overlay::Overlay::new(schema);
    let mut pieces = Vec::new();
    let mut changed = false;
    // An earlier statement of the text reads or sets a sequence's state (setval, currval,
    // lastval): a nextval evaluated before the text runs would come out of order with it.
    let mut sequence_state_before = false;
    let mut setval_so_far = false;
    let sequence_states = |c: &Collector| {
        c.needs
            .iter()
            .filter(|n| matches!(n, Need::SequenceState(_)))
            .count()
    };
    let nextvals = |c: &Collector| {
        c.needs
            .iter()
            .filter(|n| matches!(n, Need::Nextval(_)))
            .count()
    };
    for (i, r) in lexed.statements().into_iter().enumerate() {
        if i > 0 {
            render::push_text(&mut pieces, "; ");
        }
        let before = nextvals(&c);
        let states_before = sequence_states(&c);
        let planned = plan_range(&lexed, r.clone(), &mut schema, &mut c, strict);
        // currval()/lastval() are read before the text runs: a setval() before them (in an
        // earlier statement or the same one) would not be seen.
        setval_so_far |=
            super::keywords::contains_ignore_case(lexed.text(r.clone()).as_bytes(), b"setval");
        if setval_so_far && sequence_states(&c) > states_before {
            return Some(Planned::Refused(
                "on a replicated shard pgproxy reads currval() / lastval() on the main node \
                 before the query runs, so it cannot follow setval() in the same query; send \
                 them as separate queries"
                    .to_string(),
            ));
        }
        if sequence_state_before && nextvals(&c) > before {
            return Some(Planned::Refused(
                "on a replicated shard pgproxy evaluates nextval() (also a serial or identity \
                 default) before a multi-statement query runs, so it cannot follow setval(), \
                 currval() or lastval() in the same query; send them as separate queries"
                    .to_string(),
            ));
        }
        sequence_state_before |= reads_sequence_state(lexed.text(r.clone()));
        match planned {
            Err(Failed::Fallback) => return None,
            Err(Failed::Refused(reason)) => return Some(Planned::Refused(reason)),
            Ok(None) => render::push_text(&mut pieces, lexed.text(r)),
            Ok(Some((text, parsed))) => {
                if parsed {
                    if let Err(e) = check_parses(&text, &sentinel, &c) {
                        return Some(Planned::Refused(format!(
                            "pgproxy could not rewrite this statement to make it deterministic (the rewritten SQL does not parse: {e}); compute the values in the application"
                        )));
                    }
                }
                changed = true;
                render::push_text(&mut pieces, &lexed.leading_comments(r));
                render::split_markers(&text, &sentinel, &mut pieces);
            }
        }
    }
    if !changed {
        return Some(Planned::Unchanged);
    }
    Some(Planned::Rewrite(Plan {
        needs: c.needs,
        pieces,
        slots: c.slots,
    }))
}

/// Why a statement range has no plan.
enum Failed {
    /// The write cannot be made deterministic: why.
    Refused(String),
    /// sqlparser cannot parse it and the caller asked for no token-level fallback.
    Fallback,
}

impl From<String> for Failed {
    fn from(reason: String) -> Self {
        Failed::Refused(reason)
    }
}

/// Plans the statement(s) of one token range: `None` to send its text unchanged, else the
/// text with markers and whether it came from sqlparser (so it must re-parse).
fn plan_range(
    lexed: &Lexed,
    r: Range<usize>,
    schema: &mut overlay::Overlay,
    c: &mut Collector,
    strict: bool,
) -> Result<Option<(String, bool)>, Failed> {
    let (tokens, user) = strip_overriding(&lexed.tokens[r.clone()]);
    let Ok(mut stmts) = parse_tokens(tokens) else {
        if strict {
            return Err(Failed::Fallback);
        }
        return Ok(fallback::unparsable(lexed, r, schema, c)?.map(|t| (t, false)));
    };
    let mut texts = Vec::new();
    let mut changed = false;
    for stmt in &mut stmts {
        match plan_one(stmt, lexed, &*schema, c, user)? {
            Some(text) => {
                changed = true;
                texts.push(text);
            }
            None => texts.push(stmt.to_string()),
        }
        schema.learn(stmt);
    }
    Ok(changed.then(|| (texts.join("; "), true)))
}

fn plan_one(
    stmt: &mut Statement,
    lexed: &Lexed,
    schema: &dyn Schema,
    c: &mut Collector,
    user: Option<&'static str>,
) -> Result<Option<String>, String> {
    match statement_kind(stmt) {
        Kind::Write => {}
        Kind::Session => {
            if let Statement::Prepare { statement, .. } = stmt {
                probe_prepared(statement, lexed, schema)?;
            }
            return Ok(None);
        }
        _ => return Ok(None),
    }
    if picks_rows(stmt) {
        selection::check(stmt)?;
    }
    let before = c.slots.len();
    let mut cx = Cx {
        c,
        src: lexed,
        schema,
        overriding: Vec::new(),
    };
    statement::name_outputs(stmt);
    statement::plan_statement(stmt, &mut cx, user)?;
    if cx.c.slots.len() == before {
        return Ok(None);
    }
    if user.is_some() && !matches!(stmt, Statement::Insert(_)) {
        return Err("OVERRIDING ... VALUE outside a plain INSERT in a statement pgproxy must rewrite: move the INSERT out of WITH / EXPLAIN".to_string());
    }
    render_statement(stmt, &cx.overriding).map(Some)
}

/// A write that stores or changes rows (not DDL that only defines a query, like a view).
fn picks_rows(stmt: &Statement) -> bool {
    match stmt {
        Statement::Insert(_)
        | Statement::Update { .. }
        | Statement::Delete(_)
        | Statement::Merge { .. }
        | Statement::Query(_) => true,
        Statement::CreateTable(ct) => ct.query.is_some(),
        Statement::CreateView { materialized, .. } => *materialized,
        _ => false,
    }
}

/// PREPARE of a write whose values would be computed per node at EXECUTE time.
fn probe_prepared(inner: &Statement, lexed: &Lexed, schema: &dyn Schema) -> Result<(), String> {
    if statement_kind(inner) != Kind::Write {
        return Ok(());
    }
    if picks_rows(inner) {
        selection::check(inner)?;
    }
    let mut probe = inner.clone();
    let mut c = Collector::new(String::new());
    let mut cx = Cx {
        c: &mut c,
        src: lexed,
        schema,
        overriding: Vec::new(),
    };
    let result = statement::plan_statement(&mut probe, &mut cx, None);
    match (result, c.needs.first()) {
        (Err(reason), _) => Err(reason),
        (Ok(()), None) => Ok(()),
        (Ok(()), Some(need)) => Err(format!(
            "PREPARE of a write that uses {}: every node would evaluate it at EXECUTE time; use the extended protocol with parameters, or compute the value in the application",
            need.main_sql()
        )),
    }
}

/// The statement's SQL with markers, and the OVERRIDING clauses sqlparser cannot print.
fn render_statement(stmt: &Statement, overriding: &[(Location, &str)]) -> Result<String, String> {
    let mut text = stmt.to_string();
    for (at, clause) in overriding {
        let mut found = None;
        let _ = visit_statements(stmt, |s| match s {
            Statement::Insert(
                ins @ Insert {
                    table: TableObject::TableName(n),
                    ..
                },
            ) if n
                .0
                .first()
                .and_then(|p| p.as_ident())
                .map(|id| id.span.start)
                == Some(*at) =>
            {
                found = Some(ins.clone());
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        });
        let internal = || {
            "pgproxy could not place OVERRIDING SYSTEM VALUE in the rewritten INSERT; list the identity column's value yourself".to_string()
        };
        let ins = found.ok_or_else(internal)?;
        let full = ins.to_string();
        let mut head = ins.clone();
        head.source = None;
        head.on = None;
        head.returning = None;
        head.insert_alias = None;
        let head = head.to_string();
        let head = head.strip_suffix("DEFAULT VALUES").unwrap_or(&head);
        if !full.starts_with(head) {
            return Err(internal());
        }
        let pos = text.find(&full).ok_or_else(internal)? + head.len();
        text.insert_str(pos, &format!("{clause} "));
    }
    Ok(text)
}

/// Re-parses a rewritten statement with plausible values.
fn check_parses(text: &str, sentinel: &str, c: &Collector) -> Result<(), ParserError> {
    let mut pieces = Vec::new();
    render::split_markers(text, sentinel, &mut pieces);
    let values: Vec<String> = c
        .needs
        .iter()
        .map(|n| render::sample_value(n).to_string())
        .collect();
    let sql = render::render(&pieces, &c.slots, &values, &[]);
    let lexed = Lexed::new(&sql).ok_or_else(|| ParserError::TokenizerError(sql.clone()))?;
    let (tokens, _) = strip_overriding(&lexed.tokens);
    parse_tokens(tokens).map(|_| ())
}

fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Result<Vec<Statement>, ParserError> {
    let parse = |tokens| {
        Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(tokens)
            .parse_statements()
    };
    let copy = tokens
        .iter()
        .find(|t| !is_trivia(&t.token))
        .is_some_and(|t| matches!(&t.token, Token::Word(w) if w.keyword == Keyword::COPY));
    if !copy {
        return parse(tokens);
    }
    // sqlparser reads `COPY … FROM STDIN` only with its data after a semicolon (psql's
    // script form); a COPY statement sent on the wire has none.
    let mut with_end = tokens.clone();
    with_end.push(TokenWithSpan::wrap(Token::SemiColon));
    parse(with_end).or_else(|_| parse(tokens))
}

fn is_trivia(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

#[cfg(test)]
mod tests;
