//! The rows of a COPY into a sharded table (`shard_copy`): the client's data cut into rows
//! (text and CSV by `RowCutter`, binary tuples by `BinaryCutter`), each row's key read and the
//! row gathered for its shard, the shards' batches sent to their nodes (with the values of
//! left-out columns, `shard_copy_fill`).

use super::keyless::Participant;
use super::shard_copy_fill::ShardFill;
use crate::protocol::frame::Frame;
use crate::protocol::message::{self, fe};
use crate::protocol::sqlstate;
use crate::router::determinism::{
    field_of, BinaryCutter, CopyFormat, CutRow, RowCutter, COPY_BINARY_TRAILER,
};
use crate::shard::{KeyType, KeyValue, ShardError, ShardMap};
use std::sync::Arc;

/// Bytes of rows gathered for one shard before they are sent.
pub(super) const SEND_BYTES: usize = 64 * 1024;
/// The longest row pgproxy holds while it waits for the row's end.
pub(super) const MAX_ROW: usize = 64 * 1024 * 1024;

/// A COPY into a sharded table in progress.
pub(super) struct ShardCopy {
    pub(super) parts: Vec<Participant>,
    pub(super) cutter: Cutter,
    pub(super) format: CopyFormat,
    pub(super) map: Arc<ShardMap>,
    /// The field holding the key, and the key column's name.
    pub(super) key: usize,
    pub(super) key_column: String,
    /// Rows waiting, per shard number.
    pub(super) pending: Vec<Vec<u8>>,
    /// The shard that gets rows too short to hold a key (it reports them).
    pub(super) first: usize,
    /// Data rows seen (for error messages: PostgreSQL counts lines from 1).
    pub(super) line: u64,
    pub(super) in_txn: bool,
    /// A cancel had been forwarded to the session's own connection before the COPY took the
    /// cancel target (`CancelSlot::swap`).
    pub(super) cancel_before: bool,
    /// The COPY came in the extended protocol: ReadyForQuery waits for the client's Sync.
    pub(super) extended: bool,
    /// pgproxy's own error: the nodes were sent CopyFail; the client's data is dropped until
    /// its CopyDone or CopyFail.
    pub(super) own: Option<Frame>,
    /// Values for columns left out whose defaults the nodes would compute each for itself.
    pub(super) fill: Option<ShardFill>,
}

/// Cuts the client's data into rows.
pub(super) enum Cutter {
    /// Text or CSV.
    Text(RowCutter),
    /// Binary: the header goes to every shard, then each tuple to its shard, then a trailer.
    Binary(BinaryCutter),
}

impl Cutter {
    pub(super) fn push(&mut self, data: &[u8]) {
        match self {
            Cutter::Text(c) => c.push(data),
            Cutter::Binary(c) => c.push(data),
        }
    }

    pub(super) fn partial_bytes(&self) -> usize {
        match self {
            Cutter::Text(c) => c.partial_bytes(),
            Cutter::Binary(c) => c.partial_bytes(),
        }
    }
}

/// The shard of a key in binary form: integers of any width for an integer key type (their
/// hashes agree across widths), else the key type's own binary form.
fn binary_shard(map: &ShardMap, v: &[u8]) -> Result<usize, ShardError> {
    let ty = map.key_type();
    let int = matches!(ty, KeyType::Smallint | KeyType::Integer | KeyType::Bigint);
    let key = match v.len() {
        2 if int => Ok(KeyValue::Int(i16::from_be_bytes([v[0], v[1]]).into())),
        4 if int => Ok(KeyValue::Int(
            i32::from_be_bytes([v[0], v[1], v[2], v[3]]).into(),
        )),
        _ => ty.parse_binary(v),
    }
    .map_err(|why| ShardError::BadKey {
        key: format!("({} bytes of binary data)", v.len()),
        why,
    })?;
    map.shard_of(&key)
}

/// pgproxy's own ErrorResponse.
pub(super) fn own_error(code: &str, msg: &str, hint: Option<&str>) -> Frame {
    message::error_response(message::Severity::Error, code, msg, hint)
}

impl ShardCopy {
    /// Routes the complete rows cut so far to their shards' batches; Err: pgproxy's error.
    pub(super) fn route_rows(&mut self) -> Result<(), Frame> {
        let mut err = None;
        let (pending, map, format) = (&mut self.pending, &self.map, &self.format);
        let pending: &mut Vec<Vec<u8>> = pending;
        let (key, first, line) = (self.key, self.first, &mut self.line);
        let key_column = &self.key_column;
        let mut route = |line: u64, key: Option<Option<&[u8]>>, whole: &[u8], binary: bool| {
            let shard = match key {
                None => Ok(first),
                Some(None) => Err(own_error(
                    sqlstate::NOT_NULL_VIOLATION,
                    &format!("COPY row {line}: the sharding key {key_column} is NULL, so the row belongs to no shard; nothing was written"),
                    Some("give every row its key"),
                )),
                Some(Some(v)) => {
                    let s = if binary {
                        binary_shard(map, v)
                    } else {
                        map.shard_of_text(&String::from_utf8_lossy(v))
                    };
                    s.map_err(|e| {
                        own_error(
                            e.sqlstate(),
                            &format!("COPY row {line}: {e}; nothing was written"),
                            None,
                        )
                    })
                }
            };
            match shard {
                Ok(s) => match pending.get_mut(s) {
                    Some(b) => b.extend_from_slice(whole),
                    None => pending[first].extend_from_slice(whole),
                },
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        };
        // The first thing of the data, before any row: every shard gets it first.
        let mut header: Option<Vec<u8>> = None;
        match &mut self.cutter {
            Cutter::Text(c) => c.drain(|kind, content, whole| match kind {
                CutRow::Header => header = Some(whole.to_vec()),
                CutRow::Odd => route(0, None, whole, false),
                CutRow::Data => {
                    *line += 1;
                    let v = field_of(content, key, format);
                    route(*line, v.as_ref().map(|o| o.as_deref()), whole, false);
                }
            }),
            Cutter::Binary(c) => {
                header = c
                    .take_header()
                    .map_err(|why: String| own_error(sqlstate::BAD_COPY_FILE_FORMAT, &why, None))?;
                c.drain(key, |t| {
                    *line += 1;
                    route(*line, t.key, t.bytes, true);
                })
                .map_err(|why: String| own_error(sqlstate::BAD_COPY_FILE_FORMAT, &why, None))?;
            }
        }
        if let Some(h) = header {
            for b in self.pending.iter_mut() {
                b.splice(0..0, h.iter().copied());
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Binary data: every shard's tuples end with the trailer; what is left that makes no
    /// complete tuple goes to the first shard, which reports it as PostgreSQL does.
    pub(super) fn end_binary(&mut self) {
        let Cutter::Binary(c) = &mut self.cutter else {
            return;
        };
        let rest = c.take_rest();
        if !rest.is_empty() {
            self.pending[self.first].extend_from_slice(&rest);
        } else if c.header_seen() {
            for b in self.pending.iter_mut() {
                b.extend_from_slice(&COPY_BINARY_TRAILER);
            }
        }
    }

    /// Sends each shard's gathered rows once they reach `min` bytes (0: all of them).
    pub(super) async fn send(&mut self, min: usize) -> Vec<(usize, String)> {
        let mut failed = Vec::new();
        for s in 0..self.pending.len() {
            if self.pending[s].is_empty() || self.pending[s].len() < min.max(1) {
                continue;
            }
            let mut data = std::mem::take(&mut self.pending[s]);
            if let Some(fill) = self.fill.as_mut() {
                match fill.complete(s, &data, min == 0).await {
                    Ok(d) => data = d,
                    Err(why) => {
                        self.own.get_or_insert_with(|| {
                            own_error(
                                sqlstate::FEATURE_NOT_SUPPORTED,
                                &format!("pgproxy could not fill in the columns left out of the COPY: {why}; nothing was written"),
                                None,
                            )
                        });
                        return failed;
                    }
                }
            }
            let data = Frame::new(fe::COPY_DATA, &data);
            for (i, p) in self.parts.iter_mut().enumerate() {
                if p.shard == s {
                    if let Err(e) = p.conn.write_all(data.raw()).await {
                        failed.push((i, e.to_string()));
                    }
                }
            }
        }
        failed
    }
}
