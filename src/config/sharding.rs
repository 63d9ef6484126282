//! `[sharding]`: which tables are sharded by which key column, the sharding function that maps
//! a key to a shard, per-key overrides, and what to do with statements that span shards.
//!
//! One key space: every sharded table is sharded by the same kind of key (the user id in the
//! contacts product), so rows of different tables with the same key live on the same shard and
//! joins between them on that key stay on one shard. Tables not listed are reference tables,
//! present on every shard. The mapping itself lives in `shard/`; this module only models the
//! TOML.

use serde::Deserialize;

/// `[sharding]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Sharding {
    /// Type of the sharding key (the same for every sharded table).
    pub key_type: KeyTypeName,
    /// How a key maps to a shard.
    pub function: ShardFunction,
    /// Transactions that touch more than one shard.
    pub cross_shard_transactions: CrossShard,
    /// UPDATE / DELETE of a sharded table without its key: run on every shard, or refuse.
    pub keyless_writes: KeylessWrites,
    /// The sharded tables.
    pub tables: Vec<ShardedTable>,
    /// `function = "range"`: the ranges, each owned by a shard.
    pub ranges: Vec<RangeRule>,
    /// `function = "list"`: the key lists, each owned by a shard.
    pub lists: Vec<ListRule>,
    /// Keys pinned to a shard whatever the function says.
    pub overrides: Vec<Override>,
    /// Accept, on reload, rules that move keys already stored (after moving the data).
    pub force: bool,
}

impl Sharding {
    /// True when no table is sharded (every table is a reference table).
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// Type of the sharding key column.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyTypeName {
    /// `smallint` (int2).
    Smallint,
    /// `integer` (int4).
    Integer,
    /// `bigint` (int8).
    #[default]
    Bigint,
    /// `text` / `varchar`.
    Text,
    /// `uuid`.
    Uuid,
}

/// The sharding function.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ShardFunction {
    /// PostgreSQL's hash partitioning: shard i holds the keys with remainder i for modulus =
    /// number of shards (`satisfies_hash_partition` agrees).
    #[default]
    Hash,
    /// Key ranges (`[[sharding.ranges]]`).
    Range,
    /// Key lists (`[[sharding.lists]]`).
    List,
}

/// Transactions that touch several shards.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum CrossShard {
    /// Allowed; committed with two-phase commit across the shards.
    #[default]
    #[serde(rename = "2pc")]
    TwoPhase,
    /// Refused with an error that names the shards.
    Deny,
}

/// UPDATE / DELETE of a sharded table without a key.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeylessWrites {
    /// Run on every shard.
    #[default]
    Allow,
    /// Refuse with an error that asks for the key.
    Deny,
}

/// `[[sharding.tables]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardedTable {
    /// Table name, optionally schema-qualified (`contacts` or `app.contacts`). Unqualified
    /// names match the table in any schema.
    pub name: String,
    /// The key column.
    pub column: String,
}

/// A key in the config: an integer or a string (text and uuid keys).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum KeyLiteral {
    /// An integer key.
    Int(i64),
    /// A text or uuid key.
    Text(String),
}

impl KeyLiteral {
    /// The key's text form, as a SQL literal would spell it.
    pub fn text(&self) -> String {
        match self {
            KeyLiteral::Int(i) => i.to_string(),
            KeyLiteral::Text(s) => s.clone(),
        }
    }
}

/// `[[sharding.ranges]]`: keys from `from` (inclusive) to `to` (exclusive) live on `shard`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RangeRule {
    /// Shard name.
    pub shard: String,
    /// Lowest key (inclusive); absent = unbounded.
    #[serde(default)]
    pub from: Option<KeyLiteral>,
    /// Key past the range (exclusive); absent = unbounded.
    #[serde(default)]
    pub to: Option<KeyLiteral>,
}

/// `[[sharding.lists]]`: these keys live on `shard`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListRule {
    /// Shard name.
    pub shard: String,
    /// The keys.
    pub values: Vec<KeyLiteral>,
}

/// `[[sharding.overrides]]`: one key pinned to a shard.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// The key.
    pub key: KeyLiteral,
    /// Shard name.
    pub shard: String,
}
