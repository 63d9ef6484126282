//! A follower: a server connection to one of the shard's other nodes, which receives every
//! write unit after the main node answered it, with the same statement names pgproxy uses on
//! the main (prepared on the follower when it lacks them). Its answers are not sent to the
//! client: only their outcome (command tags and error codes, per ReadyForQuery) is kept, to be
//! compared with the main's.

use super::statements::ClientStatements;
use crate::backend::{BackendError, MAX_SERVER_MESSAGE};
use crate::pool::Pooled;
use crate::protocol::frame::{self, Frame, FrameRef};
use crate::protocol::message::{self, be, fe, Bind, Parse, Target};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use tokio_util::sync::CancellationToken;

/// What one statement did, as far as replication compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// CommandComplete with this tag (e.g. `UPDATE 1`).
    Tag(Bytes),
    /// ErrorResponse with this SQLSTATE.
    Error(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Tag(t) => write!(f, "{}", String::from_utf8_lossy(t)),
            Outcome::Error(c) => write!(f, "error {c}"),
        }
    }
}

/// The outcome of an ErrorResponse or CommandComplete frame; None for other frames.
pub fn outcome_of(f: FrameRef<'_>) -> Option<Outcome> {
    match f.tag() {
        be::COMMAND_COMPLETE => {
            let b = f.body();
            Some(Outcome::Tag(Bytes::copy_from_slice(
                b.strip_suffix(&[0]).unwrap_or(b),
            )))
        }
        be::ERROR_RESPONSE => Some(Outcome::Error(
            message::error_code(f.body()).unwrap_or("?????").to_string(),
        )),
        _ => None,
    }
}

/// How the outcomes up to one ReadyForQuery count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Compared with the main's.
    Compared,
    /// pgproxy's own statement: must succeed.
    Internal,
    /// Not looked at (a copy abandoned after the main's error fails here too).
    Ignored,
}

/// One follower connection.
pub struct Follower {
    /// Shard index (another shard's node joins a write that spans shards).
    pub shard: usize,
    /// Node index within the shard.
    pub node: usize,
    /// The connection.
    pub conn: Pooled,
    /// A participant of a transaction across shards, on a shard the session left: it gets
    /// no more statements, only the commit protocol (or ROLLBACK).
    pub parked: bool,
    /// Parked, and was that shard's main: if it cannot prepare, the transaction aborts (it
    /// may be the only node holding that shard's changes).
    pub was_main: bool,
    out: BytesMut,
    /// Whether the unit being queued is compared.
    compare: bool,
    /// Bytes sent since answers were last read.
    sent_bytes: usize,
    /// An extended-protocol COPY is running: `end_copy` adds a Sync.
    copy_sync: bool,
    /// Leave Syncs out while queueing (the start of an extended-protocol COPY).
    skip_sync: bool,
    /// A Parse of the unnamed statement was queued in the unit being queued: a Bind of ""
    /// uses it as it is.
    unnamed_in_unit: bool,
    /// ReadyForQuery answers still to come, each with whether its outcomes are compared
    /// (client units) or must merely succeed (pgproxy's own statements).
    pending: VecDeque<Answer>,
    /// Cancelled when the node is detached: waiting for its answers stops.
    detached: CancellationToken,
}

/// What a follower answered to its queued work.
#[derive(Debug, Default)]
pub struct FollowerResult {
    /// Outcomes of the client units, in order.
    pub outcomes: Vec<Outcome>,
    /// The first error of pgproxy's own statements (BEGIN, replayed prefix, PREPARE ...).
    pub internal_error: Option<String>,
    /// That error's ErrorResponse, as the node sent it.
    pub internal_frame: Option<Frame>,
    /// Transaction status at the last ReadyForQuery.
    pub status: u8,
}

fn detached_error() -> BackendError {
    BackendError::Io("the node was detached while pgproxy waited for its answer".into())
}

impl Follower {
    /// Wraps a checked-out connection.
    pub fn new(shard: usize, node: usize, conn: Pooled, detached: CancellationToken) -> Follower {
        Follower {
            detached,
            shard,
            node,
            conn,
            parked: false,
            was_main: false,
            out: BytesMut::new(),
            compare: true,
            sent_bytes: 0,
            copy_sync: false,
            skip_sync: false,
            unnamed_in_unit: false,
            pending: VecDeque::new(),
        }
    }

    /// Queues one of pgproxy's own statements (must succeed; outcome not compared).
    pub fn queue_internal(&mut self, sql: &str) {
        // A simple Query drops the connection's unnamed statement.
        self.conn.unnamed = None;
        self.out.put_slice(message::query(sql).raw());
        self.pending.push_back(Answer::Internal);
    }

    /// Queues a unit replayed from earlier in the transaction (outcome not compared).
    pub fn queue_unit_internal(&mut self, frames: &[u8], statements: &ClientStatements) -> bool {
        self.compare = false;
        let ok = self.queue_unit(frames, statements);
        self.compare = true;
        ok
    }

    /// True when nothing is queued or awaited.
    pub fn is_idle(&self) -> bool {
        self.out.is_empty() && self.pending.is_empty()
    }

    /// True when so much was sent without reading the answers that the node could block
    /// writing them (its socket buffer full): then they must be read before more is sent.
    pub fn backlogged(&self) -> bool {
        self.sent_bytes > 512 * 1024 || self.pending.len() > 64
    }

    /// Queues a unit of client frames, translated for this connection: statements pgproxy
    /// shares are prepared here first if needed and referred to by their server names;
    /// Describe and Flush are left out (they change nothing). Returns false on a malformed frame.
    pub fn queue_unit(&mut self, frames: &[u8], statements: &ClientStatements) -> bool {
        self.unnamed_in_unit = false;
        let mut pos = 0;
        while pos < frames.len() {
            let n = match frame::peek_frame_len(&frames[pos..], usize::MAX) {
                Ok(Some(n)) => n,
                _ => return false,
            };
            let f = FrameRef::new(&frames[pos..pos + n]);
            pos += n;
            if !self.queue_frame(f, statements) {
                return false;
            }
        }
        true
    }

    fn queue_frame(&mut self, f: FrameRef<'_>, statements: &ClientStatements) -> bool {
        match f.tag() {
            fe::SYNC if self.skip_sync => {}
            fe::QUERY | fe::FUNCTION_CALL | fe::SYNC => {
                if f.tag() == fe::QUERY {
                    self.conn.unnamed = None;
                }
                self.pending.push_back(if self.compare {
                    Answer::Compared
                } else {
                    Answer::Internal
                });
                self.out.put_slice(f.raw());
            }
            fe::PARSE => {
                let Some(p) = Parse::parse(f.body()) else {
                    return false;
                };
                if p.name.is_empty() {
                    // The client's own unnamed statement, or one pgproxy made (a rewrite with
                    // literal values), which no later Bind may reuse.
                    self.conn.unnamed = statements
                        .unnamed
                        .as_ref()
                        .filter(|s| s.parse.raw().as_ref() == f.raw())
                        .map(|s| s.id);
                    self.unnamed_in_unit = true;
                    self.out.put_slice(f.raw());
                } else if let Some(stmt) = statements.get(p.name) {
                    if !self.conn.prepared.contains(stmt.id) {
                        self.conn.prepared.insert(stmt.id);
                        self.out.put_slice(stmt.parse_again().raw());
                    }
                }
            }
            fe::BIND => {
                let Some(b) = Bind::parse(f.body()) else {
                    return false;
                };
                if b.statement.is_empty() && self.unnamed_in_unit {
                    self.out.put_slice(f.raw());
                    return true;
                }
                match self.ensure_prepared(b.statement, statements) {
                    Some(name) if name != b.statement => {
                        self.out
                            .put_slice(Bind::encode(b.portal, &name, b.rest).raw());
                    }
                    _ => self.out.put_slice(f.raw()),
                }
            }
            fe::CLOSE => {
                let Some(t) = Target::parse(f.body()) else {
                    return false;
                };
                // Shared statements stay; portals and the unnamed statement close for real.
                if t.kind != b'S' || t.name.is_empty() {
                    self.out.put_slice(f.raw());
                }
            }
            fe::DESCRIBE | fe::FLUSH => {}
            _ => self.out.put_slice(f.raw()),
        }
        true
    }

    /// Queues the start of a COPY FROM STDIN unit. In the extended protocol its Syncs are left
    /// out (PostgreSQL ignores them during copy-in), and `end_copy` adds one after the data.
    pub fn queue_copy_start(
        &mut self,
        frames: &[u8],
        statements: &ClientStatements,
        extended: bool,
    ) -> bool {
        self.copy_sync = extended;
        self.skip_sync = extended;
        let ok = self.queue_unit(frames, statements);
        self.skip_sync = false;
        ok
    }

    /// The client ended the copy (CopyDone/CopyFail queued): an extended-protocol COPY gets
    /// pgproxy's own Sync, whose ReadyForQuery carries the outcome.
    pub fn end_copy(&mut self) {
        if std::mem::take(&mut self.copy_sync) {
            self.out.put_slice(message::sync().raw());
            self.pending.push_back(Answer::Compared);
        }
    }

    /// The client left the copy without ending it (it stopped after the main's error): the
    /// follower's copy is failed too, and its outcome not compared (the main's error is not
    /// the follower's 57014).
    pub fn abort_copy(&mut self) {
        let fail = message::copy_fail("the client abandoned the COPY after the main node's error");
        self.out.put_slice(fail.raw());
        if std::mem::take(&mut self.copy_sync) {
            self.out.put_slice(message::sync().raw());
            self.pending.push_back(Answer::Ignored);
        } else if let Some(last) = self.pending.back_mut() {
            // The simple Query that holds the COPY.
            *last = Answer::Ignored;
        }
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Queues raw frames (COPY data) as they are.
    pub fn queue_raw(&mut self, raw: &[u8]) {
        self.out.put_slice(raw);
    }

    fn ensure_prepared(&mut self, name: &str, statements: &ClientStatements) -> Option<String> {
        let stmt = statements.get(name)?;
        if name.is_empty() {
            if self.conn.unnamed != Some(stmt.id) {
                self.conn.unnamed = Some(stmt.id);
                self.out.put_slice(stmt.parse_again().raw());
            }
        } else if !self.conn.prepared.contains(stmt.id) {
            self.conn.prepared.insert(stmt.id);
            self.out.put_slice(stmt.parse_again().raw());
        }
        Some(stmt.server_name.clone())
    }

    /// Sends what is queued.
    pub async fn flush(&mut self) -> Result<(), BackendError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.sent_bytes += out.len();
        let r = tokio::select! {
            r = self.conn.write_all(&out) => r,
            _ = self.detached.cancelled() => Err(detached_error()),
        };
        self.out = out;
        self.out.clear();
        r
    }

    /// Sends what is queued and reads every answer up to the last pending ReadyForQuery.
    pub async fn run(&mut self) -> Result<FollowerResult, BackendError> {
        self.flush().await?;
        let mut res = FollowerResult {
            status: b'I',
            ..Default::default()
        };
        let mut cur = Vec::new();
        while !self.pending.is_empty() {
            let mut pos = 0;
            loop {
                let n = match frame::peek_frame_len(&self.conn.rbuf[pos..], MAX_SERVER_MESSAGE) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => return Err(BackendError::Io(e.to_string())),
                };
                let f = FrameRef::new(&self.conn.rbuf[pos..pos + n]);
                pos += n;
                if let Some(o) = outcome_of(f) {
                    if matches!(o, Outcome::Error(_)) && message::is_fatal_error(f.body()) {
                        self.conn.rbuf.advance(pos);
                        return Err(BackendError::Io(format!(
                            "the node closed the connection ({o})"
                        )));
                    }
                    if matches!(o, Outcome::Error(_))
                        && res.internal_frame.is_none()
                        && matches!(self.pending.front(), Some(Answer::Internal))
                    {
                        res.internal_frame = Some(Frame::from_raw(Bytes::copy_from_slice(f.raw())));
                    }
                    cur.push(o);
                } else if f.tag() == be::READY_FOR_QUERY {
                    res.status = f.body().first().copied().unwrap_or(b'I');
                    match self.pending.pop_front().unwrap_or(Answer::Compared) {
                        Answer::Compared => res.outcomes.append(&mut cur),
                        Answer::Internal => {
                            if let Some(e) = cur.iter().find(|o| matches!(o, Outcome::Error(_))) {
                                res.internal_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                        Answer::Ignored => {}
                    }
                    cur.clear();
                    if self.pending.is_empty() {
                        break;
                    }
                }
            }
            self.conn.rbuf.advance(pos);
            if !self.pending.is_empty() {
                tokio::select! {
                    r = self.conn.fill() => {
                        r?;
                    }
                    _ = self.detached.cancelled() => return Err(detached_error()),
                }
            }
        }
        // Outcomes of a unit cut short by Flush come with a later ReadyForQuery.
        res.outcomes.append(&mut cur);
        self.sent_bytes = 0;
        Ok(res)
    }
}
