//! The trait every error that can reach a client implements: it knows its SQLSTATE, whether the
//! session must end, and the text a client may see (no internals, no secrets).

use super::frame::Frame;
use super::message::{error_response, Severity};

/// An error that can be reported to a client as an ErrorResponse.
pub trait ClientError: std::fmt::Display {
    /// The SQLSTATE to report.
    fn sqlstate(&self) -> &'static str;

    /// True if the session cannot go on after this error (reported as FATAL).
    fn is_fatal(&self) -> bool {
        false
    }

    /// A hint telling the user what to do, if there is one.
    fn hint(&self) -> Option<String> {
        None
    }

    /// The ErrorResponse frame for this error.
    fn to_frame(&self) -> Frame {
        let sev = if self.is_fatal() {
            Severity::Fatal
        } else {
            Severity::Error
        };
        error_response(
            sev,
            self.sqlstate(),
            &self.to_string(),
            self.hint().as_deref(),
        )
    }
}
