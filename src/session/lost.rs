//! After a server connection died inside a client's transaction (transaction mode), the client
//! still believes it is in that transaction. Like PostgreSQL in a failed transaction, pgproxy
//! refuses everything with 25P02 until the client ends the transaction; ROLLBACK (or COMMIT,
//! which then reports ROLLBACK, as PostgreSQL does) clears the state. Never silently runs the
//! rest of a broken transaction in autocommit on another connection.
//!
//! A statement pgproxy refuses itself inside a transaction aborts that transaction too, as an
//! error from the server would: its server is made to fail the transaction
//! ([`Session::abort_refused_txn`]), so that the server answers what follows exactly as
//! PostgreSQL does after an error (25P02 until ROLLBACK, COMMIT answered ROLLBACK, ROLLBACK TO
//! SAVEPOINT recovers), in both protocols.

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

/// Fails the transaction it runs in, with an explanation in the server's log. Its SQLSTATE
/// (25P02) marks the error as expected (`response::on_injected_reply`).
pub(super) const ABORT_REFUSED_TXN: &str = "DO $pgproxy$ BEGIN RAISE EXCEPTION USING \
     ERRCODE = '25P02', MESSAGE = 'pgproxy refused a statement of this transaction; it is aborted'; \
     END $pgproxy$";

impl Session {
    /// A statement was refused by pgproxy (the client got the error): inside a transaction,
    /// the transaction is now aborted. The client's ReadyForQuery says so at once; the server
    /// is brought into the same state before the next unit (`abort_refused_txn`).
    pub(super) fn note_refusal(&mut self) {
        if self.tx_status == b'T' && !self.lost_txn && self.repl.is_some() {
            self.tx_status = b'E';
            self.abort_owed = true;
        }
    }

    /// Aborts the client's transaction on its server after a refusal: the main runs a
    /// statement that fails (queued like pgproxy's own queries; the next unit waits for its
    /// answer). Participants that only wait for the commit (followers without savepoints,
    /// parked shards) roll back now, as after an error of the main.
    pub(super) async fn abort_refused_txn(&mut self) -> Result<(), SessionError> {
        if self.server.is_none() {
            // The transaction was moving to another shard, which it has not begun on yet.
            let shard = self.repl_mut().shard;
            let Some(main) = self.shared.cluster.topology.main(shard) else {
                self.lost_txn = true;
                return Ok(());
            };
            let (user, db) = (self.repl_mut().user.clone(), self.repl_mut().db.clone());
            self.pool = self.shared.cluster.pool(&user, &db, shard, main);
            match self.pool.checkout().await {
                Ok(conn) => {
                    self.repl_mut().node = main;
                    self.attach(conn);
                }
                Err(e) => {
                    // Nowhere to abort it: pgproxy answers for the transaction (`lost_message`).
                    tracing::debug!(error = %e, "no connection to abort a refused transaction on");
                    self.lost_txn = true;
                    return Ok(());
                }
            }
        }
        if let Some(begin) = self.repl_mut().pending_begin.take() {
            self.inject_query(&begin, super::expect::Expect::InjectedQuery);
        }
        self.inject_query(ABORT_REFUSED_TXN, super::expect::Expect::InjectedQuery);
        self.tx_status = b'E';
        if !self.repl_mut().savepoints {
            self.rollback_followers().await;
        }
        Ok(())
    }

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
