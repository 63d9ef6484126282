//! Column defaults that earlier statements of the same text set: a multi-statement Query that
//! creates a table (or changes a column's default) and then inserts into it is planned before
//! it runs, when the main's catalog does not show those defaults yet.

use std::collections::HashMap;

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, CreateTable, Statement,
};

use super::defaults::ident_name;
use super::{ColumnDefault, Schema, TableDefaults};
use crate::router::classify::object_key;

/// The caller's schema, with what earlier statements of the text did on top.
pub(super) struct Overlay<'a> {
    base: &'a dyn Schema,
    local: HashMap<String, TableDefaults>,
}

impl Schema for Overlay<'_> {
    fn defaults(&self, table: &str) -> Option<&TableDefaults> {
        self.local.get(table).or_else(|| self.base.defaults(table))
    }
}

/// Whether the catalog knows `table` (the caller loads an empty entry for a missing one).
fn known(schema: &dyn Schema, table: &str) -> bool {
    schema
        .defaults(table)
        .is_some_and(|t| !t.all_columns.is_empty())
}

/// A default pgproxy can evaluate before the text runs: not nextval (its sequence, a serial
/// column's included, may be created by the same text; a new sequence hands out the same
/// values on every node anyway).
fn usable(expr: &str) -> bool {
    !expr.to_ascii_lowercase().contains("nextval")
}

impl<'a> Overlay<'a> {
    pub(super) fn new(base: &'a dyn Schema) -> Self {
        Overlay {
            base,
            local: HashMap::new(),
        }
    }

    /// Takes note of a statement's effect on column defaults.
    pub(super) fn learn(&mut self, stmt: &Statement) {
        match stmt {
            Statement::CreateTable(ct) => self.created(ct),
            Statement::AlterTable {
                name, operations, ..
            } => {
                let key = object_key(name);
                for op in operations {
                    let AlterTableOperation::AlterColumn { column_name, op } = op else {
                        continue;
                    };
                    let column = ident_name(column_name);
                    match op {
                        AlterColumnOperation::SetDefault { value } => {
                            self.set_default(&key, &column, Some(value.to_string()))
                        }
                        AlterColumnOperation::DropDefault => self.set_default(&key, &column, None),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn created(&mut self, ct: &CreateTable) {
        let key = object_key(&ct.name);
        if ct.query.is_some() || (ct.if_not_exists && known(self.base, &key)) {
            return;
        }
        let mut t = TableDefaults::default();
        for c in &ct.columns {
            let name = ident_name(&c.name);
            t.all_columns.push(name.clone());
            for o in &c.options {
                if let ColumnOption::Default(e) = &o.option {
                    let expr = e.to_string();
                    if usable(&expr) {
                        t.columns.push(ColumnDefault {
                            name: name.clone(),
                            expr,
                            identity_always: false,
                        });
                    }
                }
            }
        }
        self.local.insert(key, t);
    }

    fn set_default(&mut self, key: &str, column: &str, expr: Option<String>) {
        let Some(mut t) = self
            .defaults(key)
            .filter(|t| !t.all_columns.is_empty())
            .cloned()
        else {
            return;
        };
        t.columns.retain(|c| c.name != column);
        if let Some(expr) = expr.filter(|e| usable(e)) {
            t.columns.push(ColumnDefault {
                name: column.to_string(),
                expr,
                identity_always: false,
            });
        }
        self.local.insert(key.to_string(), t);
    }
}
