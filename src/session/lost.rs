//! After a server connection died inside a client's transaction (transaction mode), the client
//! still believes it is in that transaction. Like PostgreSQL in a failed transaction, pgproxy
//! refuses everything with 25P02 until the client ends the transaction; ROLLBACK (or COMMIT,
//! which then reports ROLLBACK, as PostgreSQL does) clears the state. Never silently runs the
//! rest of a broken transaction in autocommit on another connection.

use super::relay::Session;
use super::SessionError;
use crate::protocol::frame::FrameRef;
use crate::protocol::message::{self, be, fe, Bind, Parse, Target};
use crate::protocol::{sqlstate, Frame};
use bytes::BufMut;
use bytes::Bytes;

/// Progress through one extended-protocol batch while the transaction is lost.
#[derive(Default)]
pub struct LostBatch {
    rollback: bool,
    /// The statement ending the transaction is a COMMIT.
    commit: bool,
    failed: bool,
}

/// True for statements that end a transaction (ROLLBACK, ABORT, COMMIT, END).
fn ends_transaction(sql: &str) -> bool {
    let s = sql.trim().trim_end_matches(';').trim().to_ascii_lowercase();
    let first = s.split_whitespace().next().unwrap_or("");
    matches!(first, "rollback" | "abort" | "commit" | "end")
        && !s.contains(" to ")
        && !s.contains("prepared")
}

/// COMMIT or END (not ROLLBACK / ABORT).
fn is_commit(sql: &str) -> bool {
    let s = sql.trim_start().to_ascii_lowercase();
    s.starts_with("commit") || s.starts_with("end")
}

fn retry_error() -> Frame {
    message::error_response(
        message::Severity::Error,
        sqlstate::SERIALIZATION_FAILURE,
        "the node running this transaction failed; the transaction was rolled back on every node",
        Some("issue ROLLBACK, then retry the transaction"),
    )
}

fn aborted_error() -> Frame {
    message::error_response(
        message::Severity::Error,
        sqlstate::IN_FAILED_TRANSACTION,
        "current transaction is aborted (its server connection was lost), commands ignored until end of transaction block",
        Some("issue ROLLBACK, then retry the transaction"),
    )
}

impl Session {
    /// The first error of a transaction lost while the client was between statements: on a
    /// replicated shard retryable (40001); on one node 08006, as when the connection breaks
    /// under a statement.
    fn untold_error(&self) -> Frame {
        if self.repl.is_some() {
            retry_error()
        } else {
            message::error_response(
                message::Severity::Error,
                sqlstate::CONNECTION_FAILURE,
                "the server connection of this transaction was lost; the transaction was rolled back",
                Some("issue ROLLBACK, then retry the transaction"),
            )
        }
    }

    /// The error for a statement of a lost transaction: on a replicated shard, the first one
    /// is retryable (40001), as the client has not been told yet.
    fn lost_error(&mut self) -> Frame {
        if std::mem::take(&mut self.lost_untold) {
            self.untold_error()
        } else {
            aborted_error()
        }
    }

    /// Handles one client message while the transaction is lost. Returns true on Terminate.
    pub(super) fn lost_message(&mut self, f: FrameRef<'_>) -> Result<bool, SessionError> {
        let body = f.body();
        match f.tag() {
            fe::TERMINATE => return Ok(true),
            fe::QUERY => {
                let sql = message::query_text(body).unwrap_or("");
                if ends_transaction(sql) {
                    // A COMMIT the client believes could still succeed: tell it the
                    // transaction is gone (a plain ROLLBACK tag reads as success to drivers).
                    let answer = if is_commit(sql) && std::mem::take(&mut self.lost_untold) {
                        self.untold_error()
                    } else {
                        message::command_complete("ROLLBACK")
                    };
                    self.to_client.put_slice(answer.raw());
                    self.lost_txn = false;
                    self.to_client
                        .put_slice(message::ready_for_query(b'I').raw());
                } else {
                    let e = self.lost_error();
                    self.to_client.put_slice(e.raw());
                    self.to_client
                        .put_slice(message::ready_for_query(b'E').raw());
                }
            }
            fe::PARSE => {
                let p = Parse::parse(body)
                    .ok_or_else(|| SessionError::Protocol("malformed Parse message".into()))?;
                if ends_transaction(p.query) {
                    let stmt = if p.name.is_empty() {
                        self.shared
                            .statements
                            .unnamed(Frame::from_raw(Bytes::copy_from_slice(f.raw())), p.query)
                    } else {
                        self.intern_statement(p.query, p.param_types)
                    };
                    self.statements.define(p.name, stmt);
                    self.lost_reply(Frame::new(be::PARSE_COMPLETE, &[]));
                } else {
                    self.lost_fail();
                }
            }
            fe::BIND => {
                let b = Bind::parse(body)
                    .ok_or_else(|| SessionError::Protocol("malformed Bind message".into()))?;
                let ends = self
                    .statements
                    .get(b.statement)
                    .is_some_and(|s| ends_transaction(s.query()));
                if ends {
                    self.lost_batch.rollback = true;
                    self.lost_batch.commit |= self
                        .statements
                        .get(b.statement)
                        .is_some_and(|s| is_commit(s.query()));
                    self.lost_reply(Frame::new(be::BIND_COMPLETE, &[]));
                } else {
                    self.lost_fail();
                }
            }
            fe::DESCRIBE => {
                if Target::parse(body).is_some_and(|t| t.kind == b'S') {
                    self.lost_reply(Frame::new(be::PARAMETER_DESCRIPTION, &[0, 0]));
                }
                self.lost_reply(Frame::new(be::NO_DATA, &[]));
            }
            fe::EXECUTE => {
                if self.lost_batch.rollback {
                    let answer = if self.lost_batch.commit && std::mem::take(&mut self.lost_untold)
                    {
                        self.untold_error()
                    } else {
                        message::command_complete("ROLLBACK")
                    };
                    self.lost_reply(answer);
                } else {
                    self.lost_fail();
                }
            }
            fe::CLOSE => self.lost_reply(Frame::new(be::CLOSE_COMPLETE, &[])),
            fe::SYNC => {
                let ok = self.lost_batch.rollback && !self.lost_batch.failed;
                self.lost_batch = LostBatch::default();
                if ok {
                    self.lost_txn = false;
                }
                let status = if ok { b'I' } else { b'E' };
                self.to_client
                    .put_slice(message::ready_for_query(status).raw());
            }
            _ => {}
        }
        Ok(false)
    }

    fn lost_reply(&mut self, f: Frame) {
        if !self.lost_batch.failed {
            self.to_client.put_slice(f.raw());
        }
    }

    fn lost_fail(&mut self) {
        if !self.lost_batch.failed {
            self.lost_batch.failed = true;
            let e = self.lost_error();
            self.to_client.put_slice(e.raw());
        }
    }
}
