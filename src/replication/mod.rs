//! Synchronous replication inside a shard: the two-phase commit decision log, resolution of
//! in-doubt prepared transactions at startup, and the data comparison behind `pgproxy verify`.
//! Must not accept clients.

pub mod decision_log;
pub mod resolve;
pub mod verify;
