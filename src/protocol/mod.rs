//! Wire format of the PostgreSQL frontend/backend protocol 3.0: framing over `Bytes`, typed views of
//! the few messages pgproxy inspects, builders for the messages it writes, SQLSTATE codes, and the
//! pure (IO-free) parts of authentication. Nothing here does IO.
//! <https://www.postgresql.org/docs/current/protocol-message-formats.html>

pub mod array;
pub mod frame;
pub mod md5;
pub mod message;
pub mod rows;
pub mod scram;
pub mod sqlstate;
pub mod startup;
pub mod value;

pub use frame::{Frame, FrameError};
pub mod error;
pub use error::ClientError;
