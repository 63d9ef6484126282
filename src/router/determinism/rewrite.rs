//! Replacing non-deterministic calls by markers: which calls are non-deterministic, where a
//! per-row call may be replaced (evaluated exactly once), and column defaults as expressions.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, TableFactor, Value, Visit, VisitMut, VisitorMut,
};

use super::render::{marker, Form, Slot};
use super::{ColumnDefault, Need};
use crate::router::classify::lex::Lexed;

/// Needs and slots of one plan, filled while statements are rewritten.
pub(super) struct Collector {
    pub needs: Vec<Need>,
    pub slots: Vec<Slot>,
    txn: Option<usize>,
    sentinel: String,
}

impl Collector {
    /// An empty collector whose markers start with `sentinel`.
    pub fn new(sentinel: String) -> Self {
        Collector {
            needs: Vec::new(),
            slots: Vec::new(),
            txn: None,
            sentinel,
        }
    }

    /// The marker expression of a new slot.
    fn slot(&mut self, need: Need, form: Form) -> Expr {
        Expr::value(Value::Placeholder(self.marker(need, form)))
    }

    /// The marker text of a new slot. All TxnTimestamp slots share one need.
    pub fn marker(&mut self, need: Need, form: Form) -> String {
        let idx = match (&need, self.txn) {
            (Need::TxnTimestamp, Some(i)) => i,
            _ => {
                self.needs.push(need);
                let i = self.needs.len() - 1;
                if self.needs[i] == Need::TxnTimestamp {
                    self.txn = Some(i);
                }
                i
            }
        };
        self.slots.push(Slot { need: idx, form });
        marker(&self.sentinel, self.slots.len() - 1)
    }
}

/// A non-deterministic call.
enum Call {
    /// Same value for every row of a statement (clock functions): allowed anywhere.
    Stable(Need, Form),
    /// A new value per evaluation: allowed only where evaluated exactly once.
    PerRow(Need, Form, &'static str),
}

/// The lowercased base name of a call to a built-in: unqualified or `pg_catalog.`.
pub(super) fn builtin_name(name: &ObjectName) -> Option<String> {
    let ident = |p: &ObjectNamePart| match p {
        ObjectNamePart::Identifier(id) => Some(match id.quote_style {
            None => id.value.to_ascii_lowercase(),
            Some(_) => id.value.clone(),
        }),
        _ => None,
    };
    match name.0.as_slice() {
        [n] => ident(n),
        [s, n] if ident(s).as_deref() == Some("pg_catalog") => ident(n),
        _ => None,
    }
}

fn last_ident(f: &Function) -> Option<&Ident> {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(id)) => Some(id),
        _ => None,
    }
}

fn args(f: &Function) -> &[FunctionArg] {
    match &f.args {
        FunctionArguments::List(l) => &l.args,
        _ => &[],
    }
}

/// `CURRENT_TIMESTAMP(3)`: the precision, if given as a number.
fn precision(f: &Function) -> Result<Option<u64>, String> {
    match args(f) {
        [] => Ok(None),
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] => match &v.value {
            Value::Number(n, _) => n
                .parse()
                .map(Some)
                .map_err(|_| format!("unsupported precision {n}")),
            other => Err(format!("unsupported precision {other}")),
        },
        _ => Err("a clock function with unsupported arguments".to_string()),
    }
}

/// Classifies a call; `Err` for a non-deterministic call pgproxy cannot handle.
fn nd_call(f: &Function, src: &Lexed) -> Result<Option<Call>, String> {
    let Some(name) = builtin_name(&f.name) else {
        return Ok(None);
    };
    let txn = |form| Ok(Some(Call::Stable(Need::TxnTimestamp, form)));
    match name.as_str() {
        "now" | "transaction_timestamp" => txn(Form::Timestamptz(None)),
        "current_timestamp" => txn(Form::Timestamptz(precision(f)?)),
        "current_date" => txn(Form::Date),
        "current_time" => txn(Form::Timetz(precision(f)?)),
        "localtimestamp" => txn(Form::Timestamp(precision(f)?)),
        "localtime" => txn(Form::Time(precision(f)?)),
        "clock_timestamp" | "statement_timestamp" => Ok(Some(Call::Stable(
            Need::ClockTimestamp,
            Form::Timestamptz(None),
        ))),
        "timeofday" => Ok(Some(Call::Stable(Need::ClockTimestamp, Form::TimeOfDay))),
        "random" if args(f).is_empty() => Ok(Some(Call::PerRow(Need::Random, Form::Float8, "random"))),
        "random" => Err("random() with arguments in a write: pgproxy cannot give every node the same value; compute the value in the application".to_string()),
        "gen_random_uuid" => Ok(Some(Call::PerRow(Need::Uuid, Form::Uuid, "gen_random_uuid"))),
        "uuid_generate_v4" => Ok(Some(Call::PerRow(Need::Uuid, Form::Uuid, "uuid_generate_v4"))),
        "nextval" => nextval(f, src).map(Some),
        "currval" => sequence_arg(f, src, "currval").map(|arg| {
            Some(Call::Stable(
                Need::SequenceState(format!("currval({arg})")),
                Form::Int8,
            ))
        }),
        "lastval" if args(f).is_empty() => Ok(Some(Call::Stable(
            Need::SequenceState("lastval()".to_string()),
            Form::Int8,
        ))),
        _ => Ok(None),
    }
}

/// nextval(<constant>): the argument text exactly as written.
fn nextval(f: &Function, src: &Lexed) -> Result<Call, String> {
    let text = sequence_arg(f, src, "nextval")?;
    Ok(Call::PerRow(Need::Nextval(text), Form::Int8, "nextval"))
}

/// The constant argument of nextval / currval, as written.
fn sequence_arg(f: &Function, src: &Lexed, name: &str) -> Result<String, String> {
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = args(f) else {
        return Err(format!("{name}() with other than one argument"));
    };
    let mut constant = true;
    let _ = sqlparser::ast::visit_expressions(arg, |e| {
        if matches!(
            e,
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Subquery(_)
        ) || matches!(e, Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
        {
            constant = false;
        }
        ControlFlow::<()>::Continue(())
    });
    if !constant {
        return Err(format!(
            "{name}({arg}) with a non-constant argument: pgproxy evaluates {name}() on the main node before the statement runs; name the sequence with a literal"
        ));
    }
    Ok(last_ident(f)
        .and_then(|id| src.call_args(id))
        .map(str::to_string)
        .unwrap_or_else(|| arg.to_string()))
}

/// The refusal for a per-row call in `context`.
pub(super) fn refusal(name: &str, context: &str) -> String {
    let advice = if name == "nextval" {
        "call nextval() in a statement of its own or in an INSERT ... VALUES row, or compute the value in the application"
    } else {
        "compute the value in the application or use a VALUES list"
    };
    format!("{name}() in {context}: each row would get a different value on each node; {advice}")
}

/// Replaces non-deterministic calls by markers.
pub(super) struct Rewriter<'a, 's> {
    pub c: &'a mut Collector,
    pub src: &'a Lexed<'s>,
    /// Per-row calls outside any subquery are evaluated exactly once here.
    pub per_row: bool,
    /// Where the walk is, for refusals ("an UPDATE that may touch several rows").
    pub context: &'a str,
    depth: usize,
}

impl<'a, 's> Rewriter<'a, 's> {
    /// A rewriter over text `src`.
    pub fn new(c: &'a mut Collector, src: &'a Lexed<'s>, per_row: bool, context: &'a str) -> Self {
        Rewriter {
            c,
            src,
            per_row,
            context,
            depth: 0,
        }
    }

    /// Rewrites any AST node.
    pub fn run<T: VisitMut>(mut self, node: &mut T) -> Result<(), String> {
        match node.visit(&mut self) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(reason) => Err(reason),
        }
    }
}

impl VisitorMut for Rewriter<'_, '_> {
    type Break = String;

    fn pre_visit_query(&mut self, _q: &mut sqlparser::ast::Query) -> ControlFlow<String> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &mut sqlparser::ast::Query) -> ControlFlow<String> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<String> {
        if let TableFactor::Function { name, .. }
        | TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = t
        {
            if builtin_name(name).is_some_and(|n| is_nondeterministic(&n)) {
                return ControlFlow::Break(format!(
                    "{name}() used as a table in a write: pgproxy cannot give every node the same value; call it in a VALUES list or compute the value in the application"
                ));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<String> {
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        match nd_call(f, self.src) {
            Err(reason) => ControlFlow::Break(reason),
            Ok(None) => ControlFlow::Continue(()),
            Ok(Some(Call::Stable(need, form))) => {
                *e = self.c.slot(need, form);
                ControlFlow::Continue(())
            }
            Ok(Some(Call::PerRow(need, form, _))) if self.per_row && self.depth == 0 => {
                *e = self.c.slot(need, form);
                ControlFlow::Continue(())
            }
            Ok(Some(Call::PerRow(_, _, name))) => {
                let context = if self.per_row {
                    "a subquery, which may evaluate it for several rows"
                } else {
                    self.context
                };
                ControlFlow::Break(refusal(name, context))
            }
        }
    }
}

/// Names of the functions this planner replaces (also used on text it cannot parse).
pub(super) fn is_nondeterministic(name: &str) -> bool {
    matches!(
        name,
        "now"
            | "transaction_timestamp"
            | "current_timestamp"
            | "current_date"
            | "current_time"
            | "localtimestamp"
            | "localtime"
            | "clock_timestamp"
            | "statement_timestamp"
            | "timeofday"
            | "random"
            | "gen_random_uuid"
            | "uuid_generate_v4"
            | "nextval"
            | "currval"
            | "lastval"
    )
}

/// A column default that is not deterministic.
pub(super) struct NdDefault<'s> {
    pub name: &'s str,
    pub text: &'s str,
    pub always: bool,
    /// Contains a per-row call (nextval, random, uuid), not only clock functions.
    pub per_row: bool,
    expr: Expr,
    src: Lexed<'s>,
}

impl NdDefault<'_> {
    /// The default's expression with fresh slots, for one row.
    pub fn instantiate(&self, c: &mut Collector) -> Result<Expr, String> {
        let mut e = self.expr.clone();
        let context = format!("the default of column {}", self.name);
        Rewriter::new(c, &self.src, true, &context).run(&mut e)?;
        Ok(e)
    }
}

/// The non-deterministic defaults among `columns`.
pub(super) fn nd_defaults(columns: &[ColumnDefault]) -> Result<Vec<NdDefault<'_>>, String> {
    let mut out = Vec::new();
    for d in columns {
        let Some(src) = Lexed::new(&d.expr) else {
            continue;
        };
        let Some(expr) = src.parse_expr() else {
            let all = 0..src.tokens.len();
            if src
                .words(all, usize::MAX)
                .iter()
                .any(|w| is_nondeterministic(w))
            {
                return Err(format!(
                    "pgproxy cannot parse the default of column {} ({}) to make it deterministic; give the column a value explicitly",
                    d.name, d.expr
                ));
            }
            continue;
        };
        let mut probe = Collector::new(String::new());
        let mut e = expr.clone();
        Rewriter::new(&mut probe, &src, true, "a column default").run(&mut e)?;
        if probe.needs.is_empty() {
            continue;
        }
        let per_row = probe
            .needs
            .iter()
            .any(|n| !matches!(n, Need::TxnTimestamp | Need::ClockTimestamp));
        out.push(NdDefault {
            name: &d.name,
            text: &d.expr,
            always: d.identity_always,
            per_row,
            expr,
            src,
        });
    }
    Ok(out)
}

/// True if `node` calls a function this planner replaces.
pub(super) fn has_nd_call<T: Visit>(node: &T) -> bool {
    sqlparser::ast::visit_expressions(node, |e| match e {
        Expr::Function(f) if builtin_name(&f.name).is_some_and(|n| is_nondeterministic(&n)) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}
