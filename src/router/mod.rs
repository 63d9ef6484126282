//! Statement classification. Today: the session-state effects of a statement that transaction
//! pooling must know about (SET, state that pins a client to its server connection, statements
//! that may release such state). Sharding and read/write routing (sqlparser) come next.
//! Pure: no IO, no pools.

pub mod classify;
pub mod determinism;
mod effects;
pub mod keywords;

pub use classify::{classify, classify_with, Classified, Kind};
pub use effects::{
    bytes_read_sequence_state, is_rollback, reads_sequence_state, session_effects, Effects,
    PinReason,
};
pub mod route;
