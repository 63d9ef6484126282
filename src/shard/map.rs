//! The shard map built from `[sharding]`: which tables are sharded by which column, and which
//! shard holds a key (override first, then the function). Built once per config; the router
//! reads it. Pure: no IO.

use super::hash::{hash_shard, KeyType, KeyValue};
use crate::config::{Config, CrossShard, KeyLiteral, KeyTypeName, KeylessWrites, ShardFunction};
use std::collections::HashMap;

/// Why a key has no shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// The key does not parse as the key type.
    #[error("invalid sharding key {key:?}: {why}")]
    BadKey {
        /// The key as written.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// No range or list holds the key.
    #[error("no shard holds sharding key {0}: add it to a [[sharding.ranges]] / [[sharding.lists]] entry")]
    NoShard(String),
}

impl ShardError {
    /// The SQLSTATE a client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            // numeric_value_out_of_range, as PostgreSQL for 99999999999999999999::bigint.
            ShardError::BadKey { why, .. } if why.contains("out of range") => "22003",
            // invalid_text_representation, as PostgreSQL for a bad literal of the type.
            ShardError::BadKey { .. } => "22P02",
            // check_violation, as PostgreSQL for a row no partition accepts.
            ShardError::NoShard(_) => "23514",
        }
    }
}

/// One sharded table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRule {
    /// Schema, when the rule names one (lower case).
    pub schema: Option<String>,
    /// Table name (lower case).
    pub name: String,
    /// Key column (lower case).
    pub column: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Function {
    Hash,
    /// (from inclusive, to exclusive, shard).
    Range(Vec<(Option<KeyValue>, Option<KeyValue>, usize)>),
    List(HashMap<KeyValue, usize>),
}

/// The shard map.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardMap {
    names: Vec<String>,
    key_type: KeyType,
    function: Function,
    overrides: HashMap<KeyValue, usize>,
    tables: Vec<TableRule>,
    /// Transactions across shards.
    pub cross_shard: CrossShard,
    /// UPDATE / DELETE without a key.
    pub keyless_writes: KeylessWrites,
    /// Columns of sharded tables in table order, by the name an INSERT without a column list
    /// gave (as written), read from the catalog by a session (`with_columns`); empty in the
    /// map built from the config.
    columns: HashMap<String, Vec<String>>,
}

fn key_type(t: KeyTypeName) -> KeyType {
    match t {
        KeyTypeName::Smallint => KeyType::Smallint,
        KeyTypeName::Integer => KeyType::Integer,
        KeyTypeName::Bigint => KeyType::Bigint,
        KeyTypeName::Text => KeyType::Text,
        KeyTypeName::Uuid => KeyType::Uuid,
    }
}

impl ShardMap {
    /// Builds the map from a validated config. Errors name the rule at fault.
    pub fn from_config(cfg: &Config) -> Result<ShardMap, String> {
        let sh = &cfg.sharding;
        let names: Vec<String> = cfg.shards.iter().map(|s| s.name.clone()).collect();
        let ty = key_type(sh.key_type);
        let index = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| format!("no shard named {name:?}"))
        };
        let key = |k: &KeyLiteral| ty.parse(&k.text()).map_err(|e| format!("key {k:?}: {e}"));
        let function = match sh.function {
            ShardFunction::Hash => Function::Hash,
            ShardFunction::Range => {
                let mut ranges = Vec::new();
                for r in &sh.ranges {
                    let from = r.from.as_ref().map(key).transpose()?;
                    let to = r.to.as_ref().map(key).transpose()?;
                    ranges.push((from, to, index(&r.shard)?));
                }
                Function::Range(ranges)
            }
            ShardFunction::List => {
                let mut map = HashMap::new();
                for l in &sh.lists {
                    let s = index(&l.shard)?;
                    for v in &l.values {
                        map.insert(key(v)?, s);
                    }
                }
                Function::List(map)
            }
        };
        let mut overrides = HashMap::new();
        for o in &sh.overrides {
            overrides.insert(key(&o.key)?, index(&o.shard)?);
        }
        let tables = sh
            .tables
            .iter()
            .map(|t| {
                let lower = t.name.to_lowercase();
                let (schema, name) = match lower.split_once('.') {
                    Some((s, n)) => (Some(s.to_string()), n.to_string()),
                    None => (None, lower.clone()),
                };
                TableRule {
                    schema,
                    name,
                    column: t.column.to_lowercase(),
                }
            })
            .collect();
        Ok(ShardMap {
            names,
            key_type: ty,
            function,
            overrides,
            tables,
            cross_shard: sh.cross_shard_transactions,
            keyless_writes: sh.keyless_writes,
            columns: HashMap::new(),
        })
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.names.len()
    }

    /// A shard's name.
    pub fn name(&self, shard: usize) -> &str {
        self.names.get(shard).map(String::as_str).unwrap_or("?")
    }

    /// A shard's index by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// True when some table is sharded.
    pub fn has_tables(&self) -> bool {
        !self.tables.is_empty()
    }

    /// This map, knowing that the table an INSERT names `table` (as written) has `columns` in
    /// this order.
    pub fn with_columns(&self, table: &str, columns: Vec<String>) -> ShardMap {
        let mut m = self.clone();
        m.columns.insert(table.to_string(), columns);
        m
    }

    /// The columns of the table named `table` (as written), if `with_columns` gave them.
    pub fn table_columns(&self, table: &str) -> Option<&[String]> {
        self.columns.get(table).map(Vec::as_slice)
    }

    /// The key column of a sharded table (names already lower-cased / unquoted).
    pub fn key_column(&self, schema: Option<&str>, name: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|t| {
                t.name == name
                    && match (&t.schema, schema) {
                        (Some(a), Some(b)) => a == b,
                        // An unqualified rule matches the table in any schema; a qualified rule
                        // also matches an unqualified reference (the search_path decides, and
                        // sharding by the rule is the safe reading).
                        _ => true,
                    }
            })
            .map(|t| t.column.as_str())
    }

    /// The sharded tables.
    pub fn tables(&self) -> &[TableRule] {
        &self.tables
    }

    /// The shard of a key given as text (a SQL literal or a text-format parameter).
    pub fn shard_of_text(&self, text: &str) -> Result<usize, ShardError> {
        let key = self
            .key_type
            .parse(text)
            .map_err(|why| ShardError::BadKey {
                key: text.to_string(),
                why,
            })?;
        self.shard_of(&key)
    }

    /// The shard of a parsed key.
    pub fn shard_of(&self, key: &KeyValue) -> Result<usize, ShardError> {
        if let Some(&s) = self.overrides.get(key) {
            return Ok(s);
        }
        match &self.function {
            Function::Hash => {
                Ok(hash_shard(self.key_type, key, self.names.len().max(1) as u64) as usize)
            }
            Function::Range(ranges) => ranges
                .iter()
                .find(|(from, to, _)| {
                    from.as_ref().is_none_or(|f| key >= f) && to.as_ref().is_none_or(|t| key < t)
                })
                .map(|r| r.2)
                .ok_or_else(|| ShardError::NoShard(key_text(key))),
            Function::List(map) => map
                .get(key)
                .copied()
                .ok_or_else(|| ShardError::NoShard(key_text(key))),
        }
    }

    /// Why replacing this map by `new` would move keys that may already be stored (shard
    /// count, key type, function, ranges, lists, overrides, or the sharded tables), or None when
    /// every key stays where it is.
    pub fn placement_change(&self, new: &ShardMap) -> Option<String> {
        let mut why = Vec::new();
        if self.names.len() != new.names.len() {
            why.push(format!(
                "the number of shards changes ({} -> {})",
                self.names.len(),
                new.names.len()
            ));
        }
        if self.key_type != new.key_type {
            why.push("the key type changes".to_string());
        }
        if self.function != new.function {
            why.push("the sharding function or its ranges/lists change".to_string());
        }
        if self.overrides != new.overrides {
            why.push("the per-key overrides change".to_string());
        }
        if self.tables != new.tables {
            why.push("the sharded tables or their key columns change".to_string());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

fn key_text(key: &KeyValue) -> String {
    match key {
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Text(s) => format!("{s:?}"),
        KeyValue::Uuid(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

#[cfg(test)]
mod tests;
