//! pgproxy: a PostgreSQL wire-protocol middleware proxy.
//!
//! Modules are layered; each imports only modules listed above it (see docs/ARCHITECTURE.md):
//! protocol → config → telemetry → net → router → backend → pool → cluster → replication →
//! session → server.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::todo, clippy::dbg_macro)]

pub mod backend;
pub mod cluster;
pub mod config;
pub mod net;
pub mod pool;
pub mod protocol;
pub mod replication;
pub mod router;
pub mod server;
pub mod session;
pub mod shard;
pub mod telemetry;
