//! Prepared statements whose result columns changed under them.
//!
//! PostgreSQL fixes a prepared statement's result columns when it is prepared: if a later
//! schema change (`ALTER TABLE … TYPE bigint`) would change them, executing or describing it
//! fails with 0A000 "cached plan must not change result type", and drivers prepare it again.
//! Drivers rely on this: they decode rows with the column types they were told once.
//!
//! pgproxy prepares a client's statement on whichever server connection (or replica) serves
//! it, so a statement prepared there *after* the change would silently return the new columns.
//! When a client was told the result columns (a Describe), pgproxy records them on the shared
//! statement; each time it prepares that statement on another server connection it asks for
//! the new plan's columns (Describe + Flush, one round trip, once per server connection) and,
//! if they differ, gives the client PostgreSQL's error instead of running the statement: the
//! server is made to fail the batch as PostgreSQL would (a stand-in request that fails), the
//! new plan is closed again, and the shared statement is dropped so that the driver's next
//! Parse makes a fresh one.

use super::expect::Expect;
use super::relay::Session;
use super::statements::Statement;
use super::SessionError;
use crate::protocol::frame::FrameRef;
use crate::protocol::message::{self, be, fe, Target};
use crate::protocol::rows::ResultShape;
use bytes::BufMut;
use std::sync::Arc;

/// A portal no client can have: executing it fails the batch (34000), which pgproxy reports
/// as the stale plan.
const NO_PORTAL: &str = "pgproxy_stale_plan";

impl Session {
    /// Called right after pgproxy queued a Parse of `stmt` on the attached server. Returns true
    /// if the client's Bind or Describe of it may follow; false if it must not be sent (the
    /// result columns changed and the client gets PostgreSQL's error, or the batch failed or
    /// the server was lost while pgproxy waited).
    pub(super) async fn check_shape(
        &mut self,
        stmt: &Arc<Statement>,
    ) -> Result<bool, SessionError> {
        let Some(expected) = stmt.shape.get() else {
            return Ok(true);
        };
        if self.copy_pending() {
            // The server may be waiting for COPY data: it would not answer before the client
            // sends it. (A client sending Bind there is itself confused.)
            return Ok(true);
        }
        let expected = expected.clone();
        self.to_server
            .put_slice(Target::encode(fe::DESCRIBE, b'S', &stmt.server_name).raw());
        self.to_server.put_slice(message::flush().raw());
        self.queue.push_back(Expect::ShapeCheck);
        self.shape_verdict = None;
        self.flush_server().await?;
        while self.server.is_some() && self.queue.iter().any(Expect::is_shape_check) {
            let read = self.server.as_mut().expect("checked").fill().await;
            if let Err(e) = read {
                self.server_lost(e.to_string())?;
                break;
            }
            self.consume_server()?;
            if self.server_fatal && self.server.is_some() {
                self.server_lost("the server terminated the connection".into())?;
            }
        }
        self.flush_client().await?;
        let verdict = self.shape_verdict.take();
        if self.server.is_none() || self.server_skipping || self.skip_until_sync {
            // The server was lost or the batch failed meanwhile: the client has its error.
            return Ok(false);
        }
        match verdict {
            // Unreadable (never seen): let the server decide.
            Some(None) => Ok(true),
            Some(Some(got)) if got == expected => Ok(true),
            Some(Some(got)) => {
                tracing::info!(
                    statement = %stmt.server_name,
                    was = ?expected,
                    now = ?got,
                    "prepared statement's result columns changed; client told to prepare it again"
                );
                self.shared.statements.evict(stmt);
                if !stmt.server_name.is_empty() {
                    // The new plan must not serve the statement's other clients either.
                    self.server().prepared.remove(stmt.id);
                    self.queue_close(stmt.id);
                }
                self.since_sync = true;
                self.pipeline_ran = true;
                self.to_server
                    .put_slice(message::execute(NO_PORTAL, 0).raw());
                self.queue.push_back(Expect::StalePlan);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// A request that may be a COPY FROM STDIN is still unanswered.
    fn copy_pending(&self) -> bool {
        if self.server_copy.is_some() {
            return true;
        }
        let Some(w) = self.copy_risk else {
            return false;
        };
        self.queue
            .iter()
            .any(|e| matches!(e, Expect::Execute { seq } | Expect::Query { seq } if *seq == w))
    }

    /// A server message while a shape check heads the queue. Returns false if it is not part
    /// of the check's answer (then it is handled as usual).
    pub(super) fn on_shape_reply(&mut self, f: FrameRef<'_>) -> bool {
        match f.tag() {
            be::PARAMETER_DESCRIPTION => true,
            be::ROW_DESCRIPTION | be::NO_DATA => {
                self.queue.pop_front();
                self.shape_verdict = Some(ResultShape::of(f.tag(), f.body()));
                self.emit_synthetic();
                true
            }
            _ => false,
        }
    }

    /// Records what a Describe told the client, the first time the statement is described.
    pub(super) fn record_shape(&self, f: FrameRef<'_>) {
        if let Some(Expect::Describe { stmt: Some(s) }) = self.queue.front() {
            if s.shape.get().is_none() {
                let shape = match &s.shape_hint {
                    Some(h) if h.is_described_by(f.tag(), f.body()) => Some(h.clone()),
                    _ => ResultShape::of(f.tag(), f.body()),
                };
                if let Some(shape) = shape {
                    let _ = s.shape.set(shape);
                }
            }
        }
    }
}
