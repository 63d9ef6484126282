//! The relay: the one place that matches on message types. Client messages go to the attached
//! server connection (checked out on demand in transaction mode, with prepared statements and
//! settings carried over); server messages go back in order through the `Expect` queue; at each
//! idle point (ReadyForQuery 'I', nothing in flight) a transaction-mode client gives its server
//! connection back unless it is pinned.

use super::cancel::{CancelSlot, CancelTarget};
use super::client::{frame_error, ClientConn};
use super::expect::Expect;
use super::statements::ClientStatements;
use super::{settings, SessionError, Shared};
use crate::config::PoolMode;
use crate::pool::{Pool, PoolError, Pooled};
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe};
use crate::protocol::ClientError;
use crate::router::{Effects, PinReason};
use bytes::{Buf, BufMut, BytesMut};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::{debug, info};

/// A logged-in client session.
pub struct Session {
    pub(super) client: ClientConn,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Pool,
    pub(super) server: Option<Pooled>,
    pub(super) mode: PoolMode,
    /// The client's settings (startup parameters and SETs), as last read from a server.
    pub(super) settings: BTreeMap<String, String>,
    /// Startup settings (what RESET ALL / DISCARD ALL return to).
    pub(super) startup_settings: BTreeMap<String, String>,
    /// Setting names a statement since the last idle point may have changed.
    pub(super) dirty: BTreeSet<String>,
    /// A RESET ALL / DISCARD ALL ran: settings are back to the node's defaults, and the
    /// client's startup settings must be applied again (PostgreSQL keeps them as session defaults).
    pub(super) reset_pending: bool,
    /// A RESET ALL / DISCARD ALL was sent; `reset_ran`: the server ran it, in a transaction
    /// not yet over.
    pub(super) reset_sent: bool,
    pub(super) reset_ran: bool,
    pub(super) pid: i32,
    pub(super) cancel: Arc<CancelSlot>,
    pub(super) statements: ClientStatements,
    pub(super) queue: VecDeque<Expect>,
    /// Extended-protocol messages were sent since the last Sync.
    pub(super) since_sync: bool,
    /// Of those, some bound or executed something (not only Parse, Describe of a statement,
    /// Close): the implicit transaction they began may hold work.
    pub(super) pipeline_ran: bool,
    /// Transaction status from the last ReadyForQuery.
    pub(super) tx_status: u8,
    pub(super) pin: Option<PinReason>,
    pub(super) check_unpin: bool,
    /// The server reported an error in an extended-protocol batch whose Sync has not been sent
    /// yet: like the server, ignore the client's messages up to that Sync.
    pub(super) server_skipping: bool,
    /// Skip client messages up to Sync (after an error pgproxy reported itself).
    pub(super) skip_until_sync: bool,
    /// pgproxy refused a statement inside the client's transaction: the transaction must be
    /// aborted on its server, as any error aborts it in PostgreSQL (`lost::abort_refused_txn`).
    pub(super) abort_owed: bool,
    /// The server sent a FATAL error: it is closing, and the client has been told.
    pub(super) server_fatal: bool,
    /// The server is in copy-in mode for that request: it ignores Sync until CopyDone/CopyFail.
    pub(super) server_copy: Option<u64>,
    /// Numbering of Query/Execute requests (any may start a COPY).
    pub(super) exec_seq: u64,
    /// The last Query/Execute, while no CopyDone/CopyFail followed it: a Sync sent now is
    /// ignored by the server if that request started a COPY FROM STDIN.
    pub(super) copy_window: Option<u64>,
    /// CopyDone/CopyFail the client sent before the server's CopyInResponse reached pgproxy
    /// (asyncpg sends COPY, its data and CopyDone at once): that many CopyInResponses start
    /// a copy-in that is already over.
    /// The server connection died inside a transaction: only ROLLBACK is accepted.
    pub(super) lost_txn: bool,
    /// Replicated shard: the transaction was lost while the client was between statements; its
    /// next statement gets a retryable error.
    pub(super) lost_untold: bool,
    pub(super) lost_batch: super::lost::LostBatch,
    pub(super) to_server: BytesMut,
    pub(super) to_client: BytesMut,
    /// Replication state, on a shard with several nodes.
    pub(super) repl: Option<Box<super::replica::Repl>>,
    /// A request of statements for several shards being run part by part (`batch.rs`).
    pub(super) batch: Option<Box<super::batch::Batch>>,
    /// A COPY into a sharded table being routed row by row (`shard_copy.rs`).
    pub(super) shard_copy: Option<Box<super::shard_copy_rows::ShardCopy>>,
    /// The last Query/Execute whose text might start a COPY FROM STDIN.
    pub(super) copy_risk: Option<u64>,
    /// The answer to the last shape check (see `shape.rs`): the new plan's result columns
    /// (None inside if unreadable).
    pub(super) shape_verdict: Option<Option<crate::protocol::rows::ResultShape>>,
    /// Resolves when a drain starts; kept across loop turns so it registers once.
    drain: super::drain::DrainWait,
}

/// Write buffers up to this capacity stay with an idle session (10,000 idle clients hold at
/// most 20 MB in them).
const KEPT_WRITE_BUFFER: usize = 1024;

/// What the loop waits for.
enum Event {
    Client(Result<usize, SessionError>),
    Server(Result<usize, crate::backend::BackendError>),
    Drain,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        client: ClientConn,
        shared: Arc<Shared>,
        pool: Pool,
        server: Option<Pooled>,
        mode: PoolMode,
        settings: BTreeMap<String, String>,
        pid: i32,
        cancel: Arc<CancelSlot>,
        repl: Option<Box<super::replica::Repl>>,
    ) -> Session {
        let mut s = Session {
            client,
            pool,
            server: None,
            mode,
            startup_settings: settings.clone(),
            settings,
            dirty: BTreeSet::new(),
            reset_pending: false,
            reset_sent: false,
            reset_ran: false,
            pid,
            cancel,
            statements: ClientStatements::default(),
            queue: VecDeque::new(),
            since_sync: false,
            pipeline_ran: false,
            tx_status: b'I',
            pin: None,
            check_unpin: false,
            skip_until_sync: false,
            abort_owed: false,
            batch: None,
            shard_copy: None,
            server_skipping: false,
            server_copy: None,
            exec_seq: 0,
            copy_window: None,
            server_fatal: false,
            lost_txn: false,
            lost_untold: false,
            lost_batch: Default::default(),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            repl,
            shape_verdict: None,
            copy_risk: None,
            drain: shared.draining.wait(),
            shared,
        };
        if let Some(server) = server {
            s.attach(server);
        }
        s
    }

    /// Runs the session to its end, then cleans up. Errors the client should see are sent as
    /// FATAL before closing.
    pub async fn run(mut self) -> Result<(), SessionError> {
        let result = self.run_loop().await;
        self.shared.cancels.unregister(self.pid);
        if self.pin.is_some() {
            self.shared.stats.pinned.fetch_sub(1, Ordering::Relaxed);
        }
        let idle = self.is_idle();
        if let Some(server) = self.server.take() {
            if idle {
                self.hand_back(server, true);
            }
            // else: dropped, which closes it: never hand a mid-transaction connection on.
        }
        if let Some(repl) = self.repl.as_mut() {
            for f in repl.followers.drain(..) {
                if idle && f.is_idle() {
                    f.conn.reset_and_release();
                }
            }
        }
        match &result {
            Err(SessionError::ClientGone) | Err(SessionError::ClientIo(_)) => {}
            Err(SessionError::ServerLost(_)) if self.server_fatal && self.repl.is_none() => {
                // The server's own FATAL error already went to the client.
                let _ = self.client.write_all(&self.to_client).await;
            }
            Err(e) => {
                let _ = self.client.write_all(&self.to_client).await;
                self.client.fatal(e).await;
            }
            Ok(()) => {}
        }
        result
    }

    async fn run_loop(&mut self) -> Result<(), SessionError> {
        loop {
            if self.process_client().await? {
                return Ok(());
            }
            let idle = self.is_idle();
            if self.server.is_none() {
                // Between transactions: hold no read buffer while the client thinks, and only
                // small write buffers (allocating and growing them again for every
                // transaction costs more than a short query's whole relay).
                self.client.shrink_if_empty();
                for b in [&mut self.to_client, &mut self.to_server] {
                    if b.capacity() > KEPT_WRITE_BUFFER {
                        *b = BytesMut::new();
                    }
                }
            }
            // `biased`: no random branch order to draw per turn. Neither side can starve the
            // other: a server only sends what a request asked for, and a client is read
            // whenever the server has nothing more.
            let ev = match self.server.as_mut() {
                None => tokio::select! {
                    biased;
                    r = self.client.fill() => Event::Client(r),
                    _ = &mut self.drain, if idle => Event::Drain,
                },
                Some(server) => tokio::select! {
                    biased;
                    r = server.fill() => Event::Server(r),
                    r = self.client.fill() => Event::Client(r),
                    _ = &mut self.drain, if idle => Event::Drain,
                },
            };
            match ev {
                Event::Client(r) => {
                    r?;
                }
                Event::Server(Ok(_)) => self.process_server().await?,
                Event::Server(Err(e)) => self.server_lost(e.to_string())?,
                Event::Drain => return Err(SessionError::Shutdown),
            }
            self.flush_client().await?;
        }
    }

    /// No transaction open and nothing in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.since_sync && self.tx_status == b'I' && !self.lost_txn
    }

    pub(super) async fn flush_client(&mut self) -> Result<(), SessionError> {
        if !self.to_client.is_empty() {
            if self.batch.is_some() {
                self.filter_batch_output();
            }
            let keep = self.held_command_complete();
            let n = self.to_client.len() - keep;
            self.client.write_all(&self.to_client[..n]).await?;
            self.to_client.advance(n);
            self.batch_output_flushed();
        }
        Ok(())
    }

    /// Bytes at the end of the client's output to hold back: while an autocommit write sent
    /// as a simple Query runs on a replicated shard, its last CommandComplete so far, which the
    /// commit pgproxy runs after it replaces with the error if it fails (as PostgreSQL reports
    /// a failing implicit commit instead of the last statement's CommandComplete;
    /// `drop_last_command_complete`). The main's answer may come in several reads (its
    /// transaction id is read after the statement): this keeps the frame until the commit.
    fn held_command_complete(&self) -> usize {
        // Runs at every flush: the cheap checks first.
        let Some(r) = self.repl.as_ref().filter(|r| r.implicit) else {
            return 0;
        };
        let simple_unit = r
            .unit
            .as_ref()
            .is_some_and(|u| u.frames.first() == Some(&fe::QUERY));
        if self.batch.is_some() || !simple_unit {
            return 0;
        }
        super::replica::last_command_complete(&self.to_client)
            .map_or(0, |at| self.to_client.len() - at)
    }

    pub(super) async fn flush_server(&mut self) -> Result<(), SessionError> {
        if self.to_server.is_empty() {
            return Ok(());
        }
        let Some(server) = self.server.as_mut() else {
            // Only copy messages and Flush are queued without an answer to wait for, and they
            // can outlive the server connection they were meant for: a client ending a COPY
            // the server refused (CopyFail after the error) after that connection went back
            // to the pool. PostgreSQL ignores them outside a COPY; so does pgproxy.
            let only_copy = frame_tags(&self.to_server)
                .all(|t| matches!(t, fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL | fe::FLUSH));
            let n = self.to_server.len();
            self.to_server.clear();
            if !only_copy {
                return Err(SessionError::Protocol(
                    "internal error: messages were queued for a server connection pgproxy no longer holds".into(),
                ));
            }
            debug!(
                bytes = n,
                "dropping copy messages for a server connection already let go"
            );
            return Ok(());
        };
        let written = server.write_all(&self.to_server).await;
        self.to_server.clear();
        if let Err(e) = written {
            self.server_lost(e.to_string())?;
        }
        Ok(())
    }

    /// Handles every complete client message in the buffer. Returns true on Terminate.
    async fn process_client(&mut self) -> Result<bool, SessionError> {
        // Frames are handled in place in the read buffer (no split, no refcount); what must
        // outlive it (an unnamed statement's Parse) is copied.
        let mut buf = std::mem::take(&mut self.client.buf);
        let mut pos = 0;
        let result = loop {
            if self.repl.is_some() {
                match self.repl_step(&buf, &mut pos).await {
                    Ok(super::replica::Step::Continue) => continue,
                    Ok(super::replica::Step::Wait) => break Ok(false),
                    Ok(super::replica::Step::Terminate) => break Ok(true),
                    Err(e) => break Err(e),
                }
            }
            let n = match frame::peek_frame_len(&buf[pos..], self.client.max_message) {
                Ok(Some(n)) => n,
                Ok(None) => break Ok(false),
                Err(e) => break Err(frame_error(e)),
            };
            let f = FrameRef::new(&buf[pos..pos + n]);
            pos += n;
            match self.client_message(f).await {
                Ok(false) => {}
                other => break other,
            }
        };
        buf.advance(pos);
        self.client.buf = buf;
        if result? {
            return Ok(true);
        }
        self.flush_server().await?;
        self.flush_client().await?;
        Ok(false)
    }

    /// One client message, through the skip states first. Returns true on Terminate.
    pub(super) async fn client_message(&mut self, f: FrameRef<'_>) -> Result<bool, SessionError> {
        if self.skip_until_sync {
            if f.tag() == fe::SYNC {
                self.skip_until_sync = false;
                self.to_client
                    .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
            }
            return Ok(false);
        }
        if self.server_skipping && self.server.is_some() {
            match f.tag() {
                fe::SYNC => self.server_skipping = false,
                fe::TERMINATE | fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {}
                // The server ignores these until Sync; so does pgproxy (no expectations).
                _ => return Ok(false),
            }
        }
        if self.lost_txn {
            return self.lost_message(f);
        }
        self.handle_client(f).await
    }

    pub(super) fn tx_status_for_client(&self) -> u8 {
        if self.lost_txn {
            b'E'
        } else {
            self.tx_status
        }
    }

    /// One client message. Returns true on Terminate.
    async fn handle_client(&mut self, f: FrameRef<'_>) -> Result<bool, SessionError> {
        let tag = f.tag();
        match tag {
            fe::TERMINATE => return Ok(true),
            // Nothing pending on the server, so nothing for it to flush (pgproxy's own answers
            // go out anyway). Queued, it could outlive the server connection: a COMMIT right
            // behind it is run with pgproxy's own messages and the connection given back.
            fe::FLUSH if self.queue.is_empty() => return Ok(false),
            fe::COPY_DATA | fe::COPY_DONE | fe::COPY_FAIL => {
                // Only meaningful in copy-in; PostgreSQL ignores them otherwise.
                if tag != fe::COPY_DATA {
                    self.copy_window = None;
                    self.server_copy = None;
                }
                if self.server.is_some() {
                    self.to_server.put_slice(f.raw());
                }
                return Ok(false);
            }
            fe::QUERY
            | fe::PARSE
            | fe::BIND
            | fe::DESCRIBE
            | fe::EXECUTE
            | fe::CLOSE
            | fe::SYNC
            | fe::FLUSH
            | fe::FUNCTION_CALL => {}
            other => {
                return Err(SessionError::Protocol(format!(
                    "unexpected message type '{}'",
                    (other as char).escape_default()
                )))
            }
        }
        let mut copies = false;
        let mut sequence_state = false;
        if tag == fe::QUERY {
            let sql = message::query_text(f.body())
                .ok_or_else(|| SessionError::Protocol("malformed Query message".into()))?;
            if self.try_local_deallocate(sql) {
                return Ok(false);
            }
            let e = crate::router::session_effects(sql);
            self.note_effects(&e);
            sequence_state = e.sequence_state;
            copies = crate::router::keywords::may_copy_in(sql);
        }
        if self.server.is_none() && self.answer_without_server(f)? {
            return Ok(false);
        }
        if self.server.is_none() && tag != fe::QUERY {
            sequence_state = self.reads_sequence_state(f);
        }
        if !self
            .ensure_server(tag == fe::QUERY || tag == fe::FUNCTION_CALL, sequence_state)
            .await?
        {
            return Ok(false);
        }
        match tag {
            fe::QUERY | fe::FUNCTION_CALL => {
                let seq = self.next_seq();
                // A Query that may hold a COPY FROM STDIN keeps a later shape check of the
                // same batch from running (its Describe would reach the server in copy-in
                // mode). Only such a Query: pgjdbc's autosave puts a SAVEPOINT Query before
                // every statement of a transaction, and a skipped check lets a stale plan run.
                if copies {
                    self.copy_risk = Some(seq);
                }
                if tag == fe::QUERY {
                    // PostgreSQL drops the unnamed statement at a simple Query: so does the
                    // client's view of it (a later Bind to it fails there as it would directly).
                    self.server().unnamed = None;
                    self.statements.unnamed = None;
                }
                self.queue.push_back(Expect::Query { seq });
                self.to_server.put_slice(f.raw());
            }
            fe::PARSE => self.on_parse(f)?,
            fe::BIND => self.on_bind(f).await?,
            fe::DESCRIBE => self.on_describe(f).await?,
            fe::EXECUTE => {
                self.since_sync = true;
                self.pipeline_ran = true;
                let seq = self.next_seq();
                let portal = message::execute_portal(f.body());
                let stmt = portal.and_then(|p| self.statements.portal(p));
                if stmt.is_none_or(|s| s.may_copy_in) {
                    self.copy_risk = Some(seq);
                }
                self.queue.push_back(Expect::Execute { seq });
                self.to_server.put_slice(f.raw());
            }
            fe::CLOSE => self.on_close(f)?,
            fe::SYNC if self.copy_window.is_some() && self.copy_window == self.server_copy => {
                // Ignored by the server during copy-in: no ReadyForQuery will answer it.
                self.to_server.put_slice(f.raw());
            }
            fe::SYNC => {
                self.since_sync = false;
                self.pipeline_ran = false;
                let window = self.copy_window;
                self.queue.push_back(Expect::Sync { window });
                self.to_server.put_slice(f.raw());
            }
            _ => {
                // Flush: responses so far are sent by the server; nothing to expect.
                self.to_server.put_slice(f.raw());
            }
        }
        Ok(false)
    }

    /// Records what a statement does to session state.
    pub(super) fn note_effects(&mut self, e: &Effects) {
        if e.is_empty() {
            return;
        }
        if let Some(reason) = e.pin {
            if self.mode == PoolMode::Transaction && self.pin.is_none() {
                self.pin = Some(reason);
                self.shared.stats.pinned.fetch_add(1, Ordering::Relaxed);
                self.shared.stats.pins_total.fetch_add(1, Ordering::Relaxed);
                info!(
                    reason = reason.as_str(),
                    "client pinned to its server connection"
                );
            }
        }
        if e.maybe_unpin && self.pin.is_some() {
            self.check_unpin = true;
        }
        if e.restores_startup {
            // Applied once the server confirms it and its transaction ends well (a RESET ALL
            // rolled back changes nothing): see `track_reset`.
            self.reset_sent = true;
        }
        // In every pool mode: a shared statement's identity includes the search_path.
        let mut names: Vec<String> = e.set_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        self.dirty.extend(names.iter().cloned());
        if e.reset_all {
            self.dirty.extend(self.settings.keys().cloned());
        }
        if let Some(repl) = self.repl.as_mut() {
            // The followers run it too; what their connections then hold is not read back
            // (only the main's is), so those settings count as unknown there: whoever uses
            // such a connection next sets them again (or RESETs them).
            if e.reset_all {
                names.extend(self.settings.keys().cloned());
                names.extend(self.startup_settings.keys().cloned());
            }
            for f in &mut repl.followers {
                settings::forget(&mut f.conn.settings, &names, e.reset_all);
            }
        }
    }

    /// Gives the attached server connection back to its pool (reset first when `reset`),
    /// unless a cancel was forwarded to it: then it is closed (`CancelSlot::take_sent`).
    pub(super) fn hand_back(&self, server: Pooled, reset: bool) {
        self.cancel.set(None);
        if self.cancel.take_sent() {
            debug!("server connection closed: a cancel was forwarded to it");
        } else if reset {
            server.reset_and_release();
        } else {
            server.release();
        }
    }

    /// Attaches a server connection (cancel requests now reach it).
    pub(super) fn attach(&mut self, mut server: Pooled) {
        self.cancel.set(Some(CancelTarget::of(&server)));
        server.last_client = self.pid;
        self.server = Some(server);
    }

    /// Whether a Query's or Parse's text, or a Bind's statement, reads the session's sequence
    /// state.
    pub(super) fn reads_sequence_state(&self, f: FrameRef<'_>) -> bool {
        match f.tag() {
            // (The raw body: a malformed message is refused later, when it is parsed.)
            fe::QUERY | fe::PARSE => crate::router::bytes_read_sequence_state(f.body()),
            fe::BIND if !self.statements.any_sequence_state => false,
            fe::BIND => message::Bind::parse(f.body())
                .and_then(|b| self.statements.get(b.statement))
                .and_then(|s| s.effects.as_ref())
                .is_some_and(|e| e.sequence_state),
            _ => false,
        }
    }

    /// Checks a server connection out if none is attached and brings its settings in line.
    /// On failure, reports the error to the client (for a Query: error + ReadyForQuery; for
    /// extended messages: error, then skip to Sync) and returns false.
    ///
    /// `sequence_state`: the statement reads currval/lastval (see `checkout_own`).
    async fn ensure_server(
        &mut self,
        simple: bool,
        sequence_state: bool,
    ) -> Result<bool, SessionError> {
        if self.server.is_some() {
            return Ok(true);
        }
        if self.shared.is_draining() {
            return Err(SessionError::Shutdown);
        }
        // Replicated and sharded sessions check out their main in `attach_main`.
        let own = sequence_state && self.mode == PoolMode::Transaction && self.repl.is_none();
        let server = match self.checkout_own(own).await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "checkout failed");
                self.report_error(&e, simple);
                return Ok(false);
            }
        };
        self.attach_checked_out(server, simple).await?;
        Ok(self.server.is_some())
    }

    /// Checks a connection out of `self.pool`. `own_sequences` (a statement that reads
    /// currval/lastval, in transaction mode): the idle connection this client used last when
    /// there is one, so it reads the client's own value; a connection another client used
    /// forgets that client's sequence state first (DISCARD SEQUENCES), so currval answers as
    /// in a session that has not called nextval (55000), never with another client's value.
    pub(super) async fn checkout_own(&self, own_sequences: bool) -> Result<Pooled, PoolError> {
        if !own_sequences {
            return self.pool.checkout().await;
        }
        let mut server = self.pool.checkout_for(self.pid).await?;
        if server.last_client != self.pid && server.last_client != 0 {
            server.run_internal("DISCARD SEQUENCES").await?;
        }
        Ok(server)
    }

    /// Brings a checked-out connection's settings in line with the client's and attaches it.
    /// On failure the client gets the error and nothing is attached.
    pub(super) async fn attach_checked_out(
        &mut self,
        mut server: Pooled,
        simple: bool,
    ) -> Result<(), SessionError> {
        if self.shared.is_draining() {
            return Err(SessionError::Shutdown);
        }
        if let Some(sql) = settings::replay_sql(&self.settings, &server.settings) {
            if let Err(e) = server.run_internal(&sql).await {
                drop(server);
                self.report_error(&e, simple);
                return Ok(());
            }
            server.settings = self.settings.clone();
        }
        self.tx_status = b'I';
        self.server_fatal = false;
        self.attach(server);
        Ok(())
    }

    pub(super) fn report_error(&mut self, e: &dyn ClientError, simple: bool) {
        let mut f = e.to_frame();
        if e.is_fatal() {
            f = message::error_response(
                message::Severity::Error,
                e.sqlstate(),
                &e.to_string(),
                e.hint().as_deref(),
            );
        }
        self.answer_unit_error(f.raw(), simple);
    }

    /// Answers a unit with an error (an ErrorResponse's bytes): then ReadyForQuery with the
    /// session's status (simple protocol), or the rest of the batch is skipped up to its Sync,
    /// as PostgreSQL does after an error (extended protocol).
    pub(super) fn answer_unit_error(&mut self, error: &[u8], simple: bool) {
        self.to_client.put_slice(error);
        if simple {
            self.to_client
                .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        } else {
            self.skip_until_sync = true;
        }
    }
}

/// The complete frames in `buf`.
pub(super) fn frames_of(buf: &[u8]) -> impl Iterator<Item = FrameRef<'_>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let n = frame::peek_frame_len(&buf[pos..], usize::MAX).ok()??;
        let f = FrameRef::new(&buf[pos..pos + n]);
        pos += n;
        Some(f)
    })
}

/// The tags of the complete frames in `buf`.
pub(super) fn frame_tags(buf: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let n = frame::peek_frame_len(&buf[pos..], usize::MAX).ok()??;
        let tag = buf[pos];
        pos += n;
        Some(tag)
    })
}
