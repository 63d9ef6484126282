//! The server → client direction: forwards responses in order through the `Expect` queue,
//! drops answers to injected messages, emits synthetic ones, and at each idle point refreshes
//! settings, checks pins and gives a transaction-mode server connection back.

use super::expect::Expect;
use super::relay::Session;
use super::{settings, SessionError};
use crate::backend::MAX_SERVER_MESSAGE;
use crate::config::PoolMode;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, be};
use crate::protocol::sqlstate;
use bytes::Buf;
use bytes::BufMut;
use std::sync::atomic::Ordering;
use tracing::{debug, error, info, warn};

/// Counts state that keeps a client pinned; zero means it may go back to the pool.
const PIN_CHECK_SQL: &str = "SELECT (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable) \
     + (SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql) \
     + (SELECT count(*) FROM pg_catalog.pg_listening_channels()) \
     + (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) \
     + (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())";

impl Session {
    /// Handles every complete message the server sent, then the idle point if reached.
    pub(super) async fn process_server(&mut self) -> Result<(), SessionError> {
        self.consume_server()?;
        if self.server_fatal && self.server.is_some() {
            // The server closes after a FATAL error: let go of it now, so that nothing more is
            // sent to it and what is pending gets its answer at once.
            return self.server_lost("the server terminated the connection".into());
        }
        if self.server.is_some()
            && self.queue.is_empty()
            && self
                .repl
                .as_ref()
                .is_some_and(|r| r.unit.as_ref().is_some_and(|u| !u.sync_owed))
        {
            self.finish_unit().await?;
        }
        if self.server.is_some() && self.is_idle() {
            self.flush_client().await?;
            self.idle_point().await?;
        }
        Ok(())
    }

    /// Handles every complete message in the server's read buffer.
    pub(super) fn consume_server(&mut self) -> Result<(), SessionError> {
        // Frames are handled in place: no split, no refcount; forwarded ones are copied once
        // into the client's output buffer.
        let mut rbuf = std::mem::take(
            &mut self
                .server
                .as_mut()
                .expect("consume_server runs with a server attached")
                .rbuf,
        );
        let mut pos = 0;
        let result = loop {
            match frame::peek_frame_len(&rbuf[pos..], MAX_SERVER_MESSAGE) {
                Ok(Some(n)) => {
                    let r = self.on_server_message(FrameRef::new(&rbuf[pos..pos + n]));
                    pos += n;
                    if r.is_err() || self.server.is_none() {
                        break r;
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break self.server_lost(format!("invalid message from server: {e}")),
            }
        };
        if let Some(server) = self.server.as_mut() {
            rbuf.advance(pos);
            server.rbuf = rbuf;
        }
        result
    }

    /// The client is waiting for no answer: nothing in flight, no batch begun.
    fn nothing_asked(&self) -> bool {
        self.queue.is_empty() && !self.since_sync
    }

    /// Answers to a query pgproxy sent itself are dropped up to its ReadyForQuery.
    fn on_injected_reply(&mut self, f: FrameRef<'_>) {
        match f.tag() {
            be::READY_FOR_QUERY => {
                self.queue.pop_front();
                self.tx_status = f.body().first().copied().unwrap_or(b'I');
                // Answers pgproxy makes itself may wait behind its own query.
                self.emit_synthetic();
            }
            be::ERROR_RESPONSE
                if matches!(self.queue.front(), Some(Expect::CaptureTxnTimestamp)) =>
            {
                // The client's statement before it failed the transaction (25P02).
                debug!(error = ?message::error_fields(f.body()), "transaction timestamp not read");
            }
            be::ERROR_RESPONSE
                if message::error_code(f.body()) == Some(sqlstate::IN_FAILED_TRANSACTION) =>
            {
                // `lost::ABORT_REFUSED_TXN` did its job (or the transaction was aborted already).
                debug!("transaction aborted after a refusal");
            }
            be::ERROR_RESPONSE => {
                warn!(error = ?message::error_fields(f.body()), "pgproxy's own statement failed");
            }
            be::DATA_ROW if matches!(self.queue.front(), Some(Expect::CaptureTxnTimestamp)) => {
                // (now(), txid_current_if_assigned()): either may be NULL.
                let mut row = message::data_row_text(f.body()).into_iter();
                let (ts, xid) = (row.next().flatten(), row.next().flatten());
                if let Some(r) = self.repl.as_mut() {
                    if ts.is_some() {
                        r.txn_ts = ts;
                    }
                    if let Some(x) = xid.and_then(|x| x.parse().ok()) {
                        r.txn_xid = Some((r.shard, r.node, x));
                    }
                }
            }
            _ => {}
        }
    }

    /// Replication: keep the main's outcome of a unit, to compare with the followers'.
    fn note_outcome(&mut self, f: FrameRef<'_>) {
        if let Some(r) = self.repl.as_mut() {
            if r.unit.is_some() {
                if let Some(o) = super::follower::outcome_of(f) {
                    r.outcomes.push(o);
                }
            }
        }
    }

    fn on_server_message(&mut self, f: FrameRef<'_>) -> Result<(), SessionError> {
        if matches!(
            self.queue.front(),
            Some(Expect::InjectedQuery | Expect::CaptureTxnTimestamp)
        ) {
            self.on_injected_reply(f);
            return Ok(());
        }
        if matches!(self.queue.front(), Some(Expect::ShapeCheck)) && self.on_shape_reply(f) {
            return Ok(());
        }
        match f.tag() {
            be::ERROR_RESPONSE if matches!(self.queue.front(), Some(Expect::StalePlan)) => {
                let stale = message::stale_plan_error();
                // On a replicated shard the main failed the unit: the followers never run it.
                self.note_outcome(FrameRef::new(stale.raw()));
                self.to_client.put_slice(stale.raw());
                self.on_error(f.body());
            }
            be::ERROR_RESPONSE => {
                self.note_outcome(f);
                if message::is_fatal_error(f.body()) {
                    // The server is closing this connection. A transaction-mode client keeps
                    // its session (pgproxy gives it another server connection), so for it the
                    // error is not fatal.
                    self.server_fatal = true;
                    if self.repl.is_some() {
                        // Replaced by a retryable error in server_lost.
                    } else if self.nothing_asked() {
                        // Nothing asked (e.g. pg_terminate_backend of a connection idle in
                        // a transaction): the client hears of it at its next statement.
                    } else if self.mode == PoolMode::Transaction && self.pin.is_none() {
                        self.to_client
                            .put_slice(message::downgrade_to_error(f.body()).raw());
                    } else {
                        self.to_client.put_slice(f.raw());
                    }
                } else {
                    self.to_client.put_slice(f.raw());
                }
                // An error ends copy-in mode too.
                self.server_copy = None;
                if self.tx_status == b'I' {
                    // An implicit transaction: everything it ran is undone.
                    self.reset_ran = false;
                }
                self.on_error(f.body());
            }
            be::READY_FOR_QUERY => {
                self.pop_expected(|e| e.ends_at_ready(), "ReadyForQuery")?;
                self.server_copy = None;
                if let Some(r) = self.repl.as_mut() {
                    // An ordered commit's COMMIT got its answer.
                    r.committed_elsewhere = false;
                }
                self.tx_status = f.body().first().copied().unwrap_or(b'I');
                if self.tx_status == b'I' {
                    if std::mem::take(&mut self.reset_ran) {
                        self.reset_pending = true;
                    }
                    self.reset_sent = false;
                    self.statements.end_portals();
                    self.shared
                        .stats
                        .transactions
                        .fetch_add(1, Ordering::Relaxed);
                }
                // The unit's last ReadyForQuery for the client (only pgproxy's own queries may
                // follow it).
                let hold = self.repl.as_ref().is_some_and(|r| r.unit.is_some())
                    && self
                        .queue
                        .iter()
                        .all(|e| matches!(e, Expect::InjectedQuery | Expect::CaptureTxnTimestamp));
                if hold {
                    // Released by finish_unit once the followers have answered too.
                    self.repl_mut().held_ready = Some(self.tx_status);
                } else {
                    self.to_client.put_slice(f.raw());
                }
                self.emit_synthetic();
            }
            be::PARSE_COMPLETE => {
                let e = self.pop_expected(
                    |e| matches!(e, Expect::Parse { .. } | Expect::InjectedParse { .. }),
                    "ParseComplete",
                )?;
                match e {
                    Expect::Parse { stmt } => {
                        if let Some(s) = stmt {
                            s.validated.store(true, Ordering::Relaxed);
                        }
                        self.to_client.put_slice(f.raw());
                    }
                    Expect::InjectedParse { stmt: Some(s) } => {
                        s.validated.store(true, Ordering::Relaxed)
                    }
                    _ => {}
                }
                self.emit_synthetic();
            }
            be::BIND_COMPLETE => {
                self.forward_terminal(f, |e| matches!(e, Expect::Bind { .. }), "BindComplete")?
            }
            be::CLOSE_COMPLETE => {
                let e = self.pop_expected(
                    |e| matches!(e, Expect::Close | Expect::InjectedClose { .. }),
                    "CloseComplete",
                )?;
                if matches!(e, Expect::Close) {
                    self.to_client.put_slice(f.raw());
                }
                self.emit_synthetic();
            }
            be::ROW_DESCRIPTION | be::NO_DATA => {
                if matches!(self.queue.front(), Some(Expect::Describe { .. })) {
                    self.record_shape(f);
                    self.forward_terminal(f, |_| true, "RowDescription")?;
                } else {
                    self.to_client.put_slice(f.raw());
                }
            }
            be::COMMAND_COMPLETE | be::EMPTY_QUERY | be::PORTAL_SUSPENDED => {
                if f.tag() == be::COMMAND_COMPLETE {
                    self.note_outcome(f);
                    self.server_copy = None;
                    self.on_command_complete(f.body());
                }
                if matches!(self.queue.front(), Some(Expect::Execute { .. })) {
                    self.forward_terminal(f, |_| true, "CommandComplete")?;
                } else {
                    self.to_client.put_slice(f.raw());
                }
            }
            be::PARAMETER_DESCRIPTION => {
                if let Some(Expect::Describe { stmt: Some(s) }) = self.queue.front() {
                    s.record_param_types(f.body());
                }
                self.to_client.put_slice(f.raw());
            }
            be::COPY_IN_RESPONSE => {
                self.on_copy_in_response();
                self.to_client.put_slice(f.raw());
            }
            be::AUTHENTICATION | be::BACKEND_KEY_DATA => {
                return self.server_lost(format!(
                    "unexpected message '{}' from server",
                    f.tag() as char
                ));
            }
            // DataRow, Copy*, ParameterDescription, Notice, Notification, ParameterStatus,
            // FunctionCallResponse: forwarded as they are.
            _ => self.to_client.put_slice(f.raw()),
        }
        Ok(())
    }

    /// DEALLOCATE ALL / DISCARD ALL ran (in either pool mode, whoever sent it): every statement
    /// prepared on this server connection, pgproxy's shared ones included, is gone, and so are
    /// the client's names. Cleared as the server reports it, so that a Parse later in the same
    /// transaction prepares again, and a failed DEALLOCATE ALL changes nothing.
    fn on_command_complete(&mut self, body: &[u8]) {
        let tag = body.strip_suffix(&[0]).unwrap_or(body);
        if self.reset_sent && (tag == b"RESET" || tag == b"DISCARD ALL") {
            self.reset_ran = true;
        } else if tag == b"ROLLBACK" {
            // (Also ROLLBACK TO SAVEPOINT, and COMMIT of a failed transaction.)
            self.reset_ran = false;
        }
        if tag.starts_with(b"ALTER ") || tag.starts_with(b"CREATE ") || tag.starts_with(b"DROP ") {
            match self.repl.as_mut() {
                // Once the transaction is over: the main answers before the followers ran
                // the change, and a statement made afresh in between could be prepared on a
                // follower before it.
                Some(r) => r.schema_changed = true,
                None => self.shared.statements.schema_changed(),
            }
        }
        if tag == b"DEALLOCATE ALL" || tag == b"DISCARD ALL" {
            self.statements.clear();
            if let Some(s) = self.server.as_mut() {
                s.forget_statements();
            }
            // The followers in the transaction run it too (after the main).
            if let Some(r) = self.repl.as_mut() {
                for f in r.followers.iter_mut().filter(|f| !f.parked) {
                    f.conn.forget_statements();
                }
            }
        }
    }

    fn forward_terminal(
        &mut self,
        f: FrameRef<'_>,
        ok: impl Fn(&Expect) -> bool,
        what: &str,
    ) -> Result<(), SessionError> {
        self.pop_expected(ok, what)?;
        self.to_client.put_slice(f.raw());
        self.emit_synthetic();
        Ok(())
    }

    /// The request at the head of the queue started a COPY FROM STDIN: the server ignores every
    /// Sync the client sent after it and before its CopyDone/CopyFail (tokio-postgres pipelines
    /// Bind/Execute/Sync before the data; asyncpg sends data and CopyDone without waiting), so
    /// those Syncs will get no ReadyForQuery.
    fn on_copy_in_response(&mut self) {
        let seq = match self.queue.front() {
            Some(Expect::Query { seq }) | Some(Expect::Execute { seq }) => *seq,
            _ => return,
        };
        let before = self.queue.len();
        self.queue
            .retain(|e| !matches!(e, Expect::Sync { window: Some(w) } if *w == seq));
        let removed = before != self.queue.len();
        if removed && !self.queue.iter().any(|e| matches!(e, Expect::Sync { .. })) {
            self.since_sync = true;
            self.pipeline_ran = true;
        }
        if let Some(unit) = self.repl.as_mut().and_then(|r| r.unit.as_mut()) {
            // A replicated unit ends at the client's next Sync (`Unit::sync_owed`).
            unit.sync_owed |= removed;
        }
        if self.copy_window == Some(seq) {
            // The client has not ended this copy yet.
            self.server_copy = Some(seq);
        }
    }

    /// Pops the head of the queue, which must be what `ok` accepts; anything else means pgproxy
    /// lost track of the conversation, and the session ends rather than risk a wrong answer.
    fn pop_expected(
        &mut self,
        ok: impl Fn(&Expect) -> bool,
        what: &str,
    ) -> Result<Expect, SessionError> {
        match self.queue.pop_front() {
            Some(e) if ok(&e) => Ok(e),
            other => {
                error!(got = what, expected = ?other, "response out of order; closing session");
                self.server.take();
                Err(SessionError::Protocol(format!(
                    "pgproxy lost track of the server's responses ({what})"
                )))
            }
        }
    }

    /// After an ErrorResponse: the server skips the rest of an extended-protocol batch up to
    /// Sync, so those entries will get no answer. A simple Query still ends at ReadyForQuery.
    fn on_error(&mut self, body: &[u8]) {
        if let Some(Expect::Bind { stmt: Some(stmt) } | Expect::Describe { stmt: Some(stmt) }) =
            self.queue.front()
        {
            // "cached plan must not change result type": the shared statement is stale (its
            // table changed). Forget it, so that the client's next Parse makes a fresh one.
            // It stays prepared on this server connection, where it keeps failing for the
            // clients that still use it, as on PostgreSQL.
            if message::error_code(body) == Some(sqlstate::FEATURE_NOT_SUPPORTED) {
                self.shared.statements.evict(stmt);
            }
        }
        match self.queue.front() {
            None | Some(Expect::Query { .. }) => {}
            Some(_) => {
                while let Some(e) = self.queue.front() {
                    if matches!(e, Expect::Sync { .. }) {
                        return;
                    }
                    let e = self.queue.pop_front().expect("front exists");
                    self.forget_unprocessed(&e);
                }
                // No Sync sent yet: the server ignores everything up to it.
                self.server_skipping = true;
            }
        }
    }

    /// A Parse the server did not process leaves no statement behind.
    fn forget_unprocessed(&mut self, e: &Expect) {
        let Some(server) = self.server.as_mut() else {
            return;
        };
        match e {
            Expect::Parse { stmt: Some(s) } | Expect::InjectedParse { stmt: Some(s) } => {
                server.prepared.remove(s.id);
            }
            // A Close the server skipped: the statement is still there.
            Expect::InjectedClose { id } => server.prepared.insert(*id),
            Expect::Parse { stmt: None } | Expect::InjectedParse { stmt: None } => {
                server.unnamed = None
            }
            _ => {}
        }
    }

    pub(super) fn emit_synthetic(&mut self) {
        while let Some(Expect::Synthetic(_)) = self.queue.front() {
            if let Some(Expect::Synthetic(f)) = self.queue.pop_front() {
                self.to_client.put_slice(f.raw());
            }
        }
    }

    /// Nothing in flight, no transaction open: bring tracked state up to date, then give the
    /// connection back (transaction mode, unpinned).
    pub(super) async fn idle_point(&mut self) -> Result<(), SessionError> {
        if self.reset_pending {
            self.reset_pending = false;
            let server = self.server.as_mut().expect("attached at an idle point");
            server.settings.clear();
            self.settings = self.startup_settings.clone();
            if let Some(sql) = settings::replay_sql(&self.settings, &server.settings) {
                match server.run_internal(&sql).await {
                    // The client saw the RESET's ParameterStatus; tell it the restored values.
                    Ok(r) => {
                        for (k, v) in r.params {
                            self.to_client
                                .put_slice(message::parameter_status_msg(&k, &v).raw());
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "could not re-apply startup settings; closing server connection");
                        self.server.take();
                        return Ok(());
                    }
                }
            }
            server.settings = self.settings.clone();
            for n in self.startup_settings.keys() {
                self.dirty.remove(n);
            }
        }
        if !self.dirty.is_empty() {
            let names = std::mem::take(&mut self.dirty);
            let sql = settings::refresh_sql(&names);
            let server = self.server.as_mut().expect("attached at an idle point");
            match server.run_internal(&sql).await {
                Ok(r) => {
                    let row = r.rows.first().cloned().unwrap_or_default();
                    settings::apply_refresh(&mut self.settings, &names, &row);
                    server.settings = self.settings.clone();
                }
                Err(e) => {
                    warn!(error = %e, "could not read settings back; closing server connection");
                    self.server.take();
                    return Ok(());
                }
            }
        }
        if self.pin.is_some() && self.check_unpin {
            self.check_unpin = false;
            let server = self.server.as_mut().expect("attached at an idle point");
            match server.run_internal(PIN_CHECK_SQL).await {
                Ok(r)
                    if r.rows
                        .first()
                        .and_then(|row| row.first().cloned().flatten())
                        .as_deref()
                        == Some("0") =>
                {
                    info!("client unpinned: its session state is gone");
                    self.pin = None;
                    self.shared.stats.pinned.fetch_sub(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pin check failed; client stays pinned"),
            }
        }
        if self.mode == PoolMode::Transaction && self.pin.is_none() {
            if let Some(server) = self.server.take() {
                self.hand_back(server, false);
            }
            if let Some(repl) = self.repl.as_mut() {
                for f in repl.followers.drain(..) {
                    if f.is_idle() {
                        f.conn.release();
                    }
                }
            }
        }
        Ok(())
    }

    /// The server connection broke. In transaction mode an unpinned client keeps its session:
    /// what was in flight fails with 08006, a transaction that was open is marked failed.
    /// Otherwise (session mode, pinned) the session ends: its server-side state is gone.
    pub(super) fn server_lost(&mut self, why: String) -> Result<(), SessionError> {
        warn!(reason = %why, "server connection lost");
        let replicated = self.repl.is_some();
        let committed_elsewhere = self
            .repl
            .as_mut()
            .is_some_and(|r| std::mem::take(&mut r.committed_elsewhere));
        if committed_elsewhere {
            // Ordered commit: the followers have the transaction, the main may not.
            let r = self.repl.as_ref().expect("replicated");
            let (shard, node) = (r.shard, r.node);
            self.shared.cluster.detach(
                shard,
                node,
                crate::cluster::DetachCause::CommitFailed,
                &format!("its COMMIT failed after the other nodes committed: {why}"),
            );
        }
        // The server's own FATAL error went to the client already (not when replicated).
        let answered = self.server_fatal && !replicated && !self.nothing_asked();
        // A transaction pgproxy opened around an autocommit write is not the client's.
        let implicit = self.repl.as_ref().is_some_and(|r| r.implicit);
        // A ReadyForQuery held back for the followers still owes the client an answer.
        let held = self.repl.as_ref().is_some_and(|r| r.held_ready.is_some());
        self.repl_main_lost();
        self.server.take();
        self.cancel.set(None);
        self.server_skipping = false;
        if self.mode == PoolMode::Session || self.pin.is_some() {
            return Err(SessionError::ServerLost(why));
        }
        let in_txn = self.tx_status != b'I' && !implicit;
        // One error per ReadyForQuery the client waits for (not pgproxy's own queries).
        let readies = self
            .queue
            .iter()
            .filter(|e| {
                e.ends_at_ready()
                    && !matches!(e, Expect::InjectedQuery | Expect::CaptureTxnTimestamp)
            })
            .count()
            + usize::from(held);
        self.queue.clear();
        self.server_copy = None;
        self.tx_status = b'I';
        self.lost_txn = in_txn;
        self.lost_untold = in_txn && readies == 0 && !self.since_sync;
        // Every request that was in flight fails: one error per ReadyForQuery the client
        // waits for (the server's own FATAL error already answered the first one), so no
        // pipelined query can look like an empty success.
        let error = if committed_elsewhere {
            message::error_response(
                message::Severity::Error,
                sqlstate::CONNECTION_FAILURE,
                &format!("the main node failed during COMMIT ({why}) after the shard's other nodes had committed: the transaction is committed there, and the main node was detached"),
                Some("do not repeat the transaction; check it is there if in doubt"),
            )
        } else if replicated {
            // Retryable: drivers and pgbench --max-tries retry 40001; the next transaction
            // runs on the shard's next main if this node is down.
            message::error_response(
                message::Severity::Error,
                sqlstate::SERIALIZATION_FAILURE,
                &format!("the node running this transaction failed ({why}); it was rolled back on every node"),
                Some("retry the transaction"),
            )
        } else {
            message::error_response(
                message::Severity::Error,
                sqlstate::CONNECTION_FAILURE,
                &format!("server connection lost while running the query: {why}"),
                Some("the statement did not complete; retry the transaction"),
            )
        };
        let status = if self.lost_txn { b'E' } else { b'I' };
        for i in 0..readies {
            if i > 0 || !answered {
                self.to_client.put_slice(error.raw());
            }
            self.to_client
                .put_slice(message::ready_for_query(status).raw());
        }
        if self.since_sync {
            // An extended-protocol batch without its Sync yet: fail it, answer its Sync later.
            if readies > 0 || !answered {
                self.to_client.put_slice(error.raw());
            }
            self.skip_until_sync = true;
        }
        self.since_sync = false;
        self.pipeline_ran = false;
        Ok(())
    }
}
