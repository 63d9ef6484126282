//! Errors that end or interrupt a session, each knowing its SQLSTATE.

use crate::protocol::{sqlstate, ClientError};

/// Session-level failures.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client sent something that breaks the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The client closed the connection.
    #[error("client closed the connection")]
    ClientGone,
    /// Reading from or writing to the client failed.
    #[error("client connection error: {0}")]
    ClientIo(String),
    /// A message exceeded max_message_size.
    #[error("{0}")]
    TooLarge(String),
    /// The server connection was lost and the session cannot continue.
    #[error("server connection lost: {0}")]
    ServerLost(String),
    /// pgproxy is shutting down.
    #[error("pgproxy is shutting down")]
    Shutdown,
}

impl ClientError for SessionError {
    fn sqlstate(&self) -> &'static str {
        match self {
            SessionError::Protocol(_) => sqlstate::PROTOCOL_VIOLATION,
            SessionError::TooLarge(_) => sqlstate::PROGRAM_LIMIT_EXCEEDED,
            SessionError::ServerLost(_) | SessionError::ClientIo(_) | SessionError::ClientGone => {
                sqlstate::CONNECTION_FAILURE
            }
            SessionError::Shutdown => sqlstate::ADMIN_SHUTDOWN,
        }
    }

    fn is_fatal(&self) -> bool {
        true
    }

    fn hint(&self) -> Option<String> {
        match self {
            SessionError::TooLarge(_) => Some(
                "raise max_message_size in the pgproxy config if such messages are expected".into(),
            ),
            SessionError::ServerLost(_) => Some("reconnect and retry the transaction".into()),
            _ => None,
        }
    }
}
