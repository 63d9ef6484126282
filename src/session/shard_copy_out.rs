//! `COPY <sharded table> TO STDOUT` (simple or extended protocol): the same COPY runs on one node of
//! each shard, one shard after the other, and the client gets one COPY: the first shard's
//! CopyOutResponse, every shard's rows (a CSV header line once; in binary format the file
//! header once and one trailer at the end), one `COPY <total>`. Rows stream through (a few
//! messages buffered at a time). A shard's error ends the COPY with that error, as PostgreSQL
//! ends a COPY that fails midway.

use super::relay::Session;
use super::replica::Plan;
use super::shard_copy::CopyRequest;
use super::SessionError;
use crate::protocol::frame::Frame;
use crate::protocol::message::{self, be, fe};
use crate::protocol::sqlstate;
use crate::router::determinism::COPY_BINARY_TRAILER;
use crate::router::route::{copy_out_shape, CopyOutShape, Route};
use bytes::BufMut;

/// Bytes for the client gathered before they are written.
const FLUSH_BYTES: usize = 64 * 1024;

/// The 11-byte signature, flags and header-extension length of a binary COPY's header.
const BINARY_HEADER: usize = 19;

/// What became of one shard's COPY.
enum Outcome {
    /// Its rows were passed on; its row count.
    Rows(u64),
    /// Its error (to pass on), and whether the connection can be released.
    Failed(Frame, bool),
}

impl Session {
    /// Runs a COPY out of a sharded table (see the module doc).
    pub(super) async fn copy_out_of_shards(
        &mut self,
        route: &Route,
        shards: &[usize],
        frames: &[u8],
        simple: bool,
    ) -> Result<Plan, SessionError> {
        // In the extended protocol (tokio-postgres' copy_out), the Sync after the COPY's end
        // gets ReadyForQuery.
        let ends_sync = frames.len() >= 5 && frames[frames.len() - 5] == fe::SYNC;
        if !simple && !ends_sync {
            return self.refuse_msg(false, "a COPY out of a sharded table is put together from every shard only in a request that ends with Sync: send Parse/Bind/Execute/Sync, or the COPY as a simple Query");
        }
        let Some(CopyRequest {
            sql,
            prefix,
            close_portal,
        }) = self.copy_request(route, shards, frames, simple, "out of")?
        else {
            return Ok(Plan::Done);
        };
        let prefix = prefix.unwrap_or_default();
        let sql = sql.as_str();
        let shape = match copy_out_shape(sql) {
            Ok(s) => s,
            Err(why) => {
                return self.refuse_msg(simple, &format!("COPY out of a sharded table: {why}; use COPY <table> [(columns)] TO STDOUT [WITH (…)]"));
            }
        };
        if self.tx_status != b'I' {
            if let Some(why) = self.merged_read_in_txn_obstacle(false).await {
                return self.refuse_msg(simple, &format!("a COPY out of a sharded table reads every shard, which pgproxy does inside a transaction only while it is READ COMMITTED, has not written and changed no setting; not {why}: run it outside the transaction"));
            }
        }
        let mut parts = match self.scatter_connect(shards, false).await {
            Ok(p) => p,
            Err(e) => {
                self.note_refusal();
                self.report_error(&e, simple);
                return Ok(Plan::Done);
            }
        };
        self.to_client.put_slice(&prefix);
        let query = message::query(sql);
        let before = self.cancel.swap(None);
        let mut cancelled = false;
        let mut total = 0u64;
        let mut error = None;
        for (i, part) in parts.iter_mut().enumerate() {
            let Some(conn) = part.conn_mut() else {
                continue;
            };
            cancelled |= self
                .cancel
                .swap(Some(super::cancel::CancelTarget::of(conn)));
            let outcome = self.copy_out_one(conn, query.raw(), shape, i).await;
            match outcome {
                Ok(Outcome::Rows(n)) => total += n,
                Ok(Outcome::Failed(e, clean)) => {
                    if !clean {
                        part.close();
                    }
                    error = Some(e);
                    break;
                }
                Err(e) => {
                    part.close();
                    error = Some(message::error_response(
                        message::Severity::Error,
                        sqlstate::CONNECTION_FAILURE,
                        &format!("a shard's node failed during the COPY: {e}"),
                        Some("retry the COPY"),
                    ));
                    break;
                }
            }
        }
        let attached = self.server.as_deref().map(super::cancel::CancelTarget::of);
        cancelled |= self.cancel.swap(attached);
        self.cancel.restore_sent(before);
        // A connection a cancel went to is closed, not pooled (`CancelSlot::take_sent`).
        for c in parts
            .into_iter()
            .filter_map(super::scatter::Part::into_pooled)
        {
            if !cancelled {
                c.release();
            }
        }
        match error {
            None => {
                if shape.binary {
                    self.to_client
                        .put_slice(Frame::new(be::COPY_DATA, &COPY_BINARY_TRAILER).raw());
                }
                // CopyDone, then the tag, as PostgreSQL ends a COPY TO.
                self.to_client
                    .put_slice(Frame::new(be::COPY_DONE, &[]).raw());
                self.to_client
                    .put_slice(message::command_complete(&format!("COPY {total}")).raw());
                if close_portal {
                    self.to_client
                        .put_slice(Frame::new(be::CLOSE_COMPLETE, &[]).raw());
                }
            }
            Some(e) => {
                self.to_client.put_slice(e.raw());
                self.note_refusal();
            }
        }
        self.to_client
            .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        self.flush_client().await?;
        Ok(Plan::Done)
    }

    /// Runs the COPY on shard number `i`'s connection and passes its rows on, up to its
    /// ReadyForQuery.
    async fn copy_out_one(
        &mut self,
        conn: &mut crate::pool::Pooled,
        query: &[u8],
        shape: CopyOutShape,
        i: usize,
    ) -> Result<Outcome, SessionError> {
        conn.write_all(query)
            .await
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        let mut first = true;
        let mut rows = 0u64;
        let mut failed: Option<Frame> = None;
        loop {
            let f = conn
                .read_frame()
                .await
                .map_err(|e| SessionError::Protocol(e.to_string()))?;
            match f.tag() {
                be::COPY_OUT_RESPONSE if i == 0 => self.to_client.put_slice(f.raw()),
                be::COPY_DATA => {
                    let data = f.body();
                    let was_first = std::mem::take(&mut first);
                    if shape.binary {
                        // The file header (first message) once, the trailer never: pgproxy
                        // sends one at the end.
                        let skip = if was_first {
                            binary_header_len(data).min(data.len())
                        } else {
                            0
                        };
                        let (head, mut rest) = data.split_at(skip);
                        if rest == COPY_BINARY_TRAILER {
                            rest = &[];
                        }
                        let mut out = Vec::with_capacity(data.len());
                        if i == 0 {
                            out.extend_from_slice(head);
                        }
                        out.extend_from_slice(rest);
                        if !out.is_empty() {
                            self.to_client
                                .put_slice(Frame::new(be::COPY_DATA, &out).raw());
                        }
                    } else if !(was_first && shape.header && i > 0) {
                        self.to_client.put_slice(f.raw());
                    }
                    if self.to_client.len() >= FLUSH_BYTES {
                        self.flush_client().await?;
                    }
                }
                be::COPY_DONE => {}
                be::COMMAND_COMPLETE => {
                    let mut b = f.body();
                    let tag = crate::protocol::frame::read_cstr(&mut b).unwrap_or_default();
                    rows = tag
                        .rsplit_once(' ')
                        .and_then(|(_, n)| n.parse().ok())
                        .unwrap_or(0);
                }
                be::ERROR_RESPONSE => {
                    if message::is_fatal_error(f.body()) {
                        return Ok(Outcome::Failed(f, false));
                    }
                    failed.get_or_insert(f);
                }
                be::NOTICE_RESPONSE => self.to_client.put_slice(f.raw()),
                be::READY_FOR_QUERY => {
                    return Ok(match failed {
                        Some(e) => Outcome::Failed(e, true),
                        None => Outcome::Rows(rows),
                    });
                }
                _ => {}
            }
        }
    }
}

/// Length of a binary COPY's file header at the start of `data` (its extension included).
fn binary_header_len(data: &[u8]) -> usize {
    match data.get(15..BINARY_HEADER) {
        Some(ext) => {
            let ext = u32::from_be_bytes([ext[0], ext[1], ext[2], ext[3]]) as usize;
            BINARY_HEADER.saturating_add(ext)
        }
        None => data.len(),
    }
}
