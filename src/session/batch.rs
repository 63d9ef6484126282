//! A batch of statements for different shards in one request: the drivers' bulk idiom
//! (pgjdbc's executeBatch, psycopg 3's and asyncpg's executemany send one Bind/Execute per
//! row, then a single Sync).
//!
//! pgproxy cuts the request at the Executes where the shard changes and runs the parts one
//! after the other, each ended by a Sync of its own, as one transaction that moves from
//! shard to shard (`shard::move_transaction`, committed with two-phase commit). Outside a
//! transaction the batch is wrapped in BEGIN … COMMIT, as PostgreSQL runs it in one implicit
//! transaction; after an error the remaining parts are not sent and that transaction is
//! rolled back. The client sees the answers of one request: its own messages' answers, then
//! one ReadyForQuery (`filter_batch_output` drops the parts' own ReadyForQuery and the
//! answers to pgproxy's BEGIN and COMMIT).

use super::relay::{frame_tags, Session};
use super::replica::{Plan, Step, UnitSql};
use super::SessionError;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, be, fe};
use crate::router::Kind;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

/// A batch being run.
pub struct Batch {
    /// The client's parts not sent yet, each ending with a Sync.
    parts: VecDeque<Bytes>,
    /// pgproxy opens the transaction (BEGIN first): COMMIT or ROLLBACK at the end.
    implicit: bool,
    /// The client's request ended with Flush (a pipeline inside its transaction): no
    /// ReadyForQuery at the end; after an error its messages are skipped up to its Sync.
    flush_ended: bool,
    /// The BEGIN was sent (or is not needed).
    begun: bool,
    /// The end (COMMIT / ROLLBACK) was sent.
    ended: bool,
    /// What each part sent and not yet filtered answers with, in order.
    roles: VecDeque<Role>,
    /// Status of the last ReadyForQuery dropped: the one the client gets at the end.
    held: u8,
    /// Bytes of the session's client buffer already filtered.
    filtered: usize,
}

/// What the answers of a part are to the client.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// pgproxy's BEGIN: nothing.
    Begin,
    /// The client's messages: everything but the ReadyForQuery.
    Client,
    /// pgproxy's COMMIT / ROLLBACK: only an error.
    End,
}

/// The request cut where the shard of the Executes changes (`per_execute`: the shard of each
/// Execute, None for any). Every part ends with a Sync; messages after the last Execute go
/// with the last part (a final Flush too).
fn cut(frames: &[u8], per_execute: &[Option<usize>]) -> VecDeque<Bytes> {
    let sync = message::sync();
    let mut parts = VecDeque::new();
    let mut start = 0;
    let mut pos = 0;
    let mut exec = 0;
    // Right after the last Execute: where the messages leading to the next one begin.
    let mut after_exec = 0;
    let mut current: Option<usize> = None;
    while pos < frames.len() {
        let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
            break;
        };
        let tag = frames[pos];
        if tag == fe::SYNC {
            break;
        }
        if tag == fe::EXECUTE {
            let shard = per_execute.get(exec).copied().flatten();
            exec += 1;
            if let (Some(c), Some(s)) = (current, shard) {
                if c != s {
                    // The part so far ends before the messages that lead to this Execute
                    // (its Parse / Bind / Describe): they start the next part.
                    let mut p = BytesMut::from(&frames[start..after_exec]);
                    p.put_slice(sync.raw());
                    parts.push_back(p.freeze());
                    start = after_exec;
                }
            }
            current = shard.or(current);
        }
        pos += n;
        if tag == fe::EXECUTE {
            after_exec = pos;
        }
    }
    let mut p = BytesMut::from(&frames[start..pos]);
    p.put_slice(sync.raw());
    parts.push_back(p.freeze());
    parts
}

impl Session {
    /// A request whose Executes go to different shards (`per_execute`): run as a batch if it
    /// can be, else refused as before.
    pub(super) async fn start_batch(
        &mut self,
        frames: &[u8],
        per_execute: &[Option<usize>],
    ) -> Result<Plan, SessionError> {
        let sql = self.unit_sql(frames);
        let begins = sql.kinds.first() == Some(&Kind::Begin);
        let last = frame_tags(frames).last();
        if let Some(why) = self.batch_obstacle(frames, &sql, last) {
            return self.refuse_msg(
                false,
                &format!("the statements of this request go to different shards and {why}: send them one at a time (or in one transaction per key)"),
            );
        }
        let implicit = self.tx_status == b'I' && !begins;
        if self.tx_status == b'I' {
            // The transaction begins on the first part's shard.
            if let Some(first) = per_execute.iter().flatten().next() {
                if let Some(plan) = self.switch_shard(*first, false).await? {
                    return Ok(plan);
                }
            }
        }
        let parts = cut(frames, per_execute);
        tracing::debug!(parts = parts.len(), implicit, "batch across shards");
        self.batch = Some(Box::new(Batch {
            parts,
            flush_ended: last == Some(fe::FLUSH),
            implicit,
            begun: !implicit,
            ended: false,
            roles: VecDeque::new(),
            held: self.tx_status,
            filtered: self.to_client.len(),
        }));
        Ok(Plan::Done)
    }

    /// Why the request cannot run as a batch, if it cannot (`sql`: what it executes,
    /// `last`: the tag of its last message).
    fn batch_obstacle(&mut self, frames: &[u8], sql: &UnitSql, last: Option<u8>) -> Option<String> {
        let begins = sql.kinds.first() == Some(&Kind::Begin);
        if self.repl_mut().implicit
            || (self.since_sync && self.pipeline_ran && self.tx_status == b'I')
        {
            // It continues a pipeline whose implicit transaction holds work on one shard
            // (statements only prepared before it, as asyncpg does, are no obstacle).
            return Some("the request continues a pipeline outside a transaction".into());
        }
        match last {
            Some(fe::SYNC) => {}
            // A pipeline inside a transaction (psycopg 3's executemany(…, returning=True)).
            Some(fe::FLUSH) if self.tx_status == b'T' || begins => {}
            _ => {
                return Some(
                    "the request ends with Flush outside a transaction (its implicit transaction cannot span shards)"
                        .into(),
                )
            }
        }
        if !matches!(self.tx_status, b'I' | b'T') || self.lost_txn {
            return Some("the transaction is not in a state to continue on another shard".into());
        }
        if !each_execute_bound_before(frames) {
            return Some("an Execute runs a portal not bound right before it".into());
        }
        // A BEGIN first is allowed (pgjdbc sends it with the first batch of a transaction).
        let skip = usize::from(begins && self.tx_status == b'I');
        let plain = sql
            .kinds
            .iter()
            .skip(skip)
            .all(|k| matches!(k, Kind::Read | Kind::Write | Kind::Empty));
        if !plain || sql.no_txn_block || sql.copy_in || sql.temp {
            return Some("not all of them are plain reads and writes".into());
        }
        let cfg = self.shared.cluster.config();
        if self.tx_status == b'T' {
            return self.cross_shard_obstacle(&cfg, false).map(String::from);
        }
        if cfg.sharding.cross_shard_transactions == crate::config::CrossShard::Deny {
            return Some("cross_shard_transactions = \"deny\"".into());
        }
        if cfg.replication.commit != crate::config::CommitMode::TwoPhase
            || self.repl_mut().temp_objects
        {
            return Some("a transaction across shards commits with two-phase commit, which replication.commit = \"ordered\" and temporary tables rule out".into());
        }
        if self.pin.is_some() {
            return Some("the session holds state on its shard (a temporary table, cursor, advisory lock or LISTEN)".into());
        }
        None
    }

    /// The next step of a batch, when nothing is in flight: pgproxy's BEGIN, the next part,
    /// pgproxy's COMMIT (ROLLBACK after an error), or the client's one ReadyForQuery.
    pub(super) async fn batch_step(&mut self) -> Result<Step, SessionError> {
        self.filter_batch_output();
        let failed = self.tx_status_for_client() == b'E';
        let in_txn = self.tx_status != b'I';
        let b = self.batch.as_mut().expect("a batch");
        let next = if !b.begun {
            b.begun = true;
            Some((Role::Begin, message::query("BEGIN").into_raw()))
        } else if b.ended || failed || (b.implicit && !in_txn) {
            b.parts.clear();
            None
        } else {
            b.parts.pop_front().map(|p| (Role::Client, p))
        };
        let next = match next {
            Some(n) => Some(n),
            None if b.implicit && !b.ended => {
                b.ended = true;
                let end = if failed || !in_txn {
                    "ROLLBACK"
                } else {
                    "COMMIT"
                };
                Some((Role::End, message::query(end).into_raw()))
            }
            None => None,
        };
        let Some((role, part)) = next else {
            let b = self.batch.take().expect("a batch");
            if !b.flush_ended {
                // Done: the one ReadyForQuery of the client's request.
                self.to_client
                    .put_slice(message::ready_for_query(b.held).raw());
            } else if failed {
                // As PostgreSQL after an error in a pipeline: nothing until the client's Sync.
                self.skip_until_sync = true;
            }
            return Ok(Step::Continue);
        };
        b.roles.push_back(role);
        self.run_unit(&part).await
    }

    /// Drops from the client's output what the parts answer that the client did not ask
    /// for (see `Role`).
    pub(super) fn filter_batch_output(&mut self) {
        let Some(b) = self.batch.as_mut() else {
            return;
        };
        let from = b.filtered.min(self.to_client.len());
        if from == self.to_client.len() {
            return;
        }
        let mut kept = BytesMut::with_capacity(self.to_client.len() - from);
        let mut pos = from;
        while pos < self.to_client.len() {
            let Ok(Some(n)) = frame::peek_frame_len(&self.to_client[pos..], usize::MAX) else {
                break;
            };
            let f = FrameRef::new(&self.to_client[pos..pos + n]);
            pos += n;
            let tag = f.tag();
            if tag == be::READY_FOR_QUERY {
                b.held = f.body().first().copied().unwrap_or(b'I');
                b.roles.pop_front();
                continue;
            }
            let keep = match b.roles.front().copied().unwrap_or(Role::Client) {
                Role::Client => true,
                Role::Begin => false,
                Role::End => tag == be::ERROR_RESPONSE,
            } || matches!(tag, be::NOTIFICATION_RESPONSE | be::PARAMETER_STATUS);
            if keep {
                kept.put_slice(f.raw());
            }
        }
        // An incomplete frame (none is expected) stays as it is, not filtered yet.
        let rest = self.to_client.split_off(pos);
        self.to_client.truncate(from);
        self.to_client.put_slice(&kept);
        b.filtered = self.to_client.len();
        self.to_client.unsplit(rest);
    }

    /// The client's output went out: filtering starts again at its beginning.
    pub(super) fn batch_output_flushed(&mut self) {
        if let Some(b) = self.batch.as_mut() {
            b.filtered = 0;
        }
    }
}

/// Every Execute runs the portal of a Bind since the previous Execute (each part carries the
/// Bind of its portals, and no Execute continues a portal an earlier one suspended: pgjdbc
/// executes its batch statements with a row limit of 1).
fn each_execute_bound_before(frames: &[u8]) -> bool {
    let mut bound: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    while pos < frames.len() {
        let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
            return false;
        };
        let f = FrameRef::new(&frames[pos..pos + n]);
        pos += n;
        let mut body = f.body();
        match f.tag() {
            fe::BIND => match frame::read_cstr(&mut body) {
                Some(portal) => bound.push(portal.as_bytes()),
                None => return false,
            },
            fe::EXECUTE => {
                let Some(portal) = frame::read_cstr(&mut body) else {
                    return false;
                };
                if !bound.contains(&portal.as_bytes()) {
                    return false;
                }
                bound.clear();
            }
            _ => {}
        }
    }
    true
}
