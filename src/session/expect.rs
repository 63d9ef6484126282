//! The queue of responses a session expects from its server connection, in order.
//!
//! Every request pgproxy sends gets an entry; each entry ends with one "terminal" response.
//! Entries for requests pgproxy injected (a Parse re-preparing a statement on a new server
//! connection) have their responses dropped; synthetic entries (a Parse answered from cache, a
//! Close of a shared statement) are emitted by pgproxy itself once every response before them
//! has been forwarded, so the client sees exactly the order PostgreSQL would produce.
//! <https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY>

use super::statements::Statement;
use crate::protocol::frame::Frame;
use std::sync::Arc;

/// What one pending request expects.
#[derive(Debug)]
pub enum Expect {
    /// Simple Query or FunctionCall: ends at ReadyForQuery. `seq` numbers it among the
    /// requests that may start a COPY.
    Query {
        /// Sequence number.
        seq: u64,
    },
    /// Parse from the client: ParseComplete forwarded.
    Parse {
        /// The statement (None for unnamed), to forget it on the server if the Parse fails.
        stmt: Option<Arc<Statement>>,
    },
    /// Parse injected by pgproxy: ParseComplete dropped.
    InjectedParse {
        /// The statement (None for unnamed), to forget on failure.
        stmt: Option<Arc<Statement>>,
    },
    /// Bind: BindComplete. Carries the statement, to drop it from the shared cache if the
    /// server says its plan is stale.
    Bind {
        /// The client's statement (None if pgproxy does not know the name).
        stmt: Option<Arc<Statement>>,
    },
    /// Describe: ends at RowDescription or NoData. Carries the statement described (directly or
    /// through its portal), whose result shape is recorded from the answer.
    Describe {
        /// The statement, when pgproxy knows it.
        stmt: Option<Arc<Statement>>,
    },
    /// A Describe pgproxy sent after preparing a statement on a server connection that lacked
    /// it: ParameterDescription dropped, RowDescription/NoData compared with the shape the
    /// client was told, then dropped.
    ShapeCheck,
    /// A message pgproxy sent in place of the client's Bind or Describe of a statement whose
    /// result shape changed, only to make the server fail the batch as PostgreSQL would: its
    /// ErrorResponse becomes "cached plan must not change result type".
    StalePlan,
    /// Execute: ends at CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        /// Sequence number (see `Query`).
        seq: u64,
    },
    /// Close from the client: CloseComplete.
    Close,
    /// Close injected by pgproxy (a shared statement over `max_prepared_statements`):
    /// CloseComplete dropped.
    InjectedClose {
        /// The statement id closed.
        id: u64,
    },
    /// Sync: ReadyForQuery. `window` is the request it followed with no CopyDone/CopyFail in
    /// between: if that request turns out to be a COPY FROM STDIN, the server ignores this Sync.
    Sync {
        /// Sequence number of the Query/Execute whose copy window this Sync fell in.
        window: Option<u64>,
    },
    /// A response pgproxy makes itself, in order.
    Synthetic(Frame),
    /// A simple query pgproxy sent itself (BEGIN of a transaction it opened): every answer up
    /// to its ReadyForQuery is dropped.
    InjectedQuery,
    /// Like `InjectedQuery`, but its first row is kept: the transaction's timestamp and the
    /// main's transaction id, either NULL (`Repl::txn_ts`, `Repl::txn_xid`).
    CaptureTxnTimestamp,
}

impl Expect {
    /// True for a shape check (see `shape.rs`).
    pub fn is_shape_check(&self) -> bool {
        matches!(self, Expect::ShapeCheck)
    }

    /// True for the entries that end at ReadyForQuery.
    pub fn ends_at_ready(&self) -> bool {
        matches!(
            self,
            Expect::Query { .. }
                | Expect::Sync { .. }
                | Expect::InjectedQuery
                | Expect::CaptureTxnTimestamp
        )
    }
}
