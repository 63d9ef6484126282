//! The names PostgreSQL gives select-list items without an alias (its `FigureColname`), so
//! that a bare name in ORDER BY means the same output column to pgproxy's merge as to
//! PostgreSQL: `SELECT age::text FROM t ORDER BY age` sorts by the text column there, and
//! `SELECT age::text, age … ORDER BY age` is an error (42702, ambiguous).

use sqlparser::ast::{DataType, Expr, Function, Ident, Query, SelectItem, SetExpr};

use crate::router::classify::ident_key;

/// An output column's name as PostgreSQL derives it: `Some((name, strength))`, strength 0
/// for `?column?` (no name), 1 for a type name or `case`, 2 for a column or function name;
/// `None` when pgproxy cannot tell.
pub type Figured = Option<(String, u8)>;

/// The name of a select-list item (its alias, else the figured name of its expression).
pub fn item_name(item: &SelectItem) -> Figured {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some((key(alias), 2)),
        SelectItem::UnnamedExpr(e) => figure(e),
        _ => None,
    }
}

fn key(id: &Ident) -> String {
    ident_key(&id.value, id.quote_style)
}

fn named(s: &str) -> Figured {
    Some((s.to_string(), 2))
}

fn unnamed() -> Figured {
    Some((String::new(), 0))
}

/// PostgreSQL's `FigureColnameInternal` over sqlparser's expression.
pub fn figure(e: &Expr) -> Figured {
    match e {
        Expr::Identifier(id) => Some((key(id), 2)),
        Expr::CompoundIdentifier(ids) => ids.last().map(|id| (key(id), 2)),
        Expr::Nested(inner) => figure(inner),
        Expr::Collate { expr, .. } => figure(expr),
        Expr::Function(f) => function_name(f),
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr)? {
            (name, 2) => Some((name, 2)),
            _ => type_name(data_type).map(|t| (t, 1)),
        },
        Expr::Case { else_result, .. } => match else_result.as_deref().map(figure) {
            Some(None) => None,
            Some(Some((name, 2))) => Some((name, 2)),
            _ => Some(("case".into(), 1)),
        },
        Expr::Exists { negated: false, .. } => named("exists"),
        Expr::Array(a) if a.named => named("array"),
        Expr::Subquery(q) => subquery_name(q),
        Expr::Extract { .. } => named("extract"),
        Expr::AtTimeZone { .. } => named("timezone"),
        Expr::Substring { .. } => named("substring"),
        Expr::Position { .. } => named("position"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        // TRIM becomes btrim/ltrim/rtrim, ROW(…) "row", typed literals their type name…:
        // not worked out, so not guessed.
        Expr::Trim { .. }
        | Expr::Tuple(_)
        | Expr::TypedString(_)
        | Expr::Array(_)
        | Expr::CompoundFieldAccess { .. }
        | Expr::Prefixed { .. }
        | Expr::Interval(_) => None,
        Expr::Value(_)
        | Expr::BinaryOp { .. }
        | Expr::UnaryOp { .. }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::InSubquery { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::SimilarTo { .. }
        | Expr::AnyOp { .. }
        | Expr::AllOp { .. }
        | Expr::Exists { .. } => unnamed(),
        _ => None,
    }
}

fn function_name(f: &Function) -> Figured {
    let last = f.name.0.last()?.as_ident()?;
    Some((key(last), 2))
}

/// A scalar subquery is named after its single output column.
fn subquery_name(q: &Query) -> Figured {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    match item_name(s.projection.first()?)? {
        (name, 2) => Some((name, 2)),
        // PostgreSQL names the subquery's column first, then takes that name.
        (name, 1) => Some((name, 2)),
        _ => unnamed(),
    }
}

/// The last part of the type's name as PostgreSQL's grammar spells it, for the common types.
fn type_name(t: &DataType) -> Option<String> {
    let shown = t.to_string().to_ascii_lowercase();
    let base = shown.split('(').next().unwrap_or("").trim();
    let name = match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "float8" | "float" => "float8",
        "bool" | "boolean" => "bool",
        "numeric" | "decimal" => "numeric",
        "text" => "text",
        "varchar" | "character varying" => "varchar",
        "date" => "date",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "uuid" => "uuid",
        "json" => "json",
        "jsonb" => "jsonb",
        "bytea" => "bytea",
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Statement;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn names(sql: &str) -> Vec<Figured> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .pop()
            .expect("one");
        let Statement::Query(q) = stmt else {
            panic!("a query")
        };
        let SetExpr::Select(s) = *q.body else {
            panic!("a select")
        };
        s.projection.iter().map(item_name).collect()
    }

    fn n(s: &str, strength: u8) -> Figured {
        Some((s.to_string(), strength))
    }

    #[test]
    fn names_as_postgresql_figures_them() {
        assert_eq!(
            names("SELECT age::text, c.age, lower(Name), \"Mixed\", 1, a + b, x AS \"Y\", count(*) FROM t c"),
            vec![
                n("age", 2),
                n("age", 2),
                n("lower", 2),
                n("\"Mixed\"", 2),
                n("", 0),
                n("", 0),
                n("\"Y\"", 2),
                n("count", 2)
            ]
        );
        assert_eq!(
            names("SELECT (1 + 2)::int, 1::text::int, CASE WHEN a THEN 1 END, CASE WHEN a THEN b ELSE c END, coalesce(a, 0), EXISTS (SELECT 1), (SELECT max(x) FROM u), (a)"),
            vec![
                n("int4", 1),
                n("int4", 1),
                n("case", 1),
                n("c", 2),
                n("coalesce", 2),
                n("exists", 2),
                n("max", 2),
                n("a", 2)
            ]
        );
        assert_eq!(
            names("SELECT (a + 1)::mytype, ROW(1, 2)"),
            vec![None, n("row", 2)]
        );
    }
}
