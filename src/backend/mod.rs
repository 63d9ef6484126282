//! One server connection to a PostgreSQL node: connect, TLS, authenticate, and move frames.
//! Knows nothing about clients; the pool owns these and sessions borrow them.

mod auth;
mod conn;

pub use conn::{
    ConnectParams, Exchange, InternalResult, PreparedSet, ServerConn, MAX_SERVER_MESSAGE,
};

use crate::protocol::{sqlstate, ClientError};

/// Failures talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect or TLS failed, or timed out.
    #[error("could not connect to server {addr}: {message}")]
    Connect {
        /// host:port.
        addr: String,
        /// Cause.
        message: String,
    },
    /// The node refused our login (wrong server password, no such role, …).
    #[error("server {addr} refused login: {message}")]
    Auth {
        /// host:port.
        addr: String,
        /// The node's message.
        message: String,
        /// The node's SQLSTATE.
        code: String,
    },
    /// The node asked for something we cannot do (e.g. an unsupported auth method).
    #[error("server {addr}: {message}")]
    Unsupported {
        /// host:port.
        addr: String,
        /// What.
        message: String,
    },
    /// The connection broke or the node spoke garbage.
    #[error("server connection lost: {0}")]
    Io(String),
}

impl ClientError for BackendError {
    fn sqlstate(&self) -> &'static str {
        match self {
            BackendError::Auth { code, .. } if code == sqlstate::INVALID_CATALOG_NAME => {
                sqlstate::INVALID_CATALOG_NAME
            }
            BackendError::Auth { .. } => sqlstate::CONNECTION_FAILURE,
            BackendError::Unsupported { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
            _ => sqlstate::CONNECTION_FAILURE,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            BackendError::Connect { .. } | BackendError::Io(_) => Some(
                "the PostgreSQL node behind pgproxy is unreachable; check that it runs and that \
                 [[shards.nodes]] in the pgproxy config points at it"
                    .into(),
            ),
            BackendError::Auth { .. } => Some(
                "pgproxy could not log in to the node: check server_user/server_password for this \
                 user in the pgproxy config and pg_hba.conf on the node"
                    .into(),
            ),
            BackendError::Unsupported { .. } => None,
        }
    }
}

impl BackendError {
    /// The node could not be reached or is not accepting connections (shutting down,
    /// starting up): a sign the node itself is down, not this one connection.
    pub fn is_connect(&self) -> bool {
        match self {
            BackendError::Connect { .. } => true,
            BackendError::Auth { code, .. } => {
                code == sqlstate::CANNOT_CONNECT_NOW || code == sqlstate::ADMIN_SHUTDOWN
            }
            _ => false,
        }
    }
}
