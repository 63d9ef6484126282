//! Shard map and sharding functions (PostgreSQL-compatible hash, range, list, per-key
//! overrides): key -> shard. Pure: no IO.

pub mod hash;
mod map;

pub use hash::{hash_shard, partition_hash, KeyType, KeyValue};
pub use map::{ShardError, ShardMap, TableRule};
