//! The split INSERT of `keyless`: a multi-row INSERT whose rows belong to several shards
//! (`router::route::Split`), run as one part per shard. In the extended protocol each part is
//! prepared with its own parameters (`$1..$k`) and bound with the subset of the client's values
//! (each keeps its format code) and the client's result formats. RETURNING rows come back per
//! shard in that part's VALUES order and are put back in the whole statement's VALUES order.
//!
//! Parameter types: a part is prepared with the types the client declared in its Parse. A
//! parameter the client left untyped (0) that the statement writes exactly once is typed by
//! the same context (column, expression) in its part as in the whole statement, so it stays
//! untyped. One written several times (or not at all) could be typed differently once rows
//! are left out: then the whole statement is described first on one shard's main (inside the
//! transaction pgproxy opened there) and every part is prepared with the types PostgreSQL
//! reported for it (ParameterDescription); if the whole statement does not prepare, the client
//! gets that error, as from one server.

use super::keyless::{run, Answer, Participant};
use super::keyless_request::Request;
use crate::backend::BackendError;
use crate::protocol::frame::{self, Frame};
use crate::protocol::message::{self, Parse};
use crate::protocol::rows::{bind_subset, bind_values};
use crate::router::route::{Split, SplitPart};
use bytes::{BufMut, BytesMut};

/// An extended-protocol split waiting for its parameter types.
pub(super) struct Pending {
    /// The client's Parse parameter types, raw (int16 count, int32 OIDs).
    raw_types: Vec<u8>,
    /// The whole statement's parameter types as declared (0: unspecified), one per parameter.
    types: Vec<u32>,
    /// Per part (in `Split::parts` order), the rest of its Bind.
    binds: Vec<Vec<u8>>,
}

/// Declared parameter types of a Parse (`Parse::param_types` raw).
fn declared(raw: &[u8]) -> Vec<u32> {
    let mut b = raw;
    let n = frame::read_i16(&mut b).unwrap_or(0).max(0) as usize;
    (0..n)
        .map_while(|_| frame::read_i32(&mut b).map(|t| t as u32))
        .collect()
}

/// Raw parameter types (int16 count, int32 OIDs).
fn encode_types(types: &[u32]) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(2 + 4 * types.len());
    out.put_i16(i16::try_from(types.len()).unwrap_or(i16::MAX));
    for t in types {
        out.put_u32(*t);
    }
    out.to_vec()
}

/// The pending split of an extended-protocol unit: `Err((SQLSTATE, message))` when the Bind
/// does not match the statement (the error PostgreSQL gives).
pub(super) fn pending(
    split: &Split,
    raw_types: &[u8],
    rest: &[u8],
    statement: &str,
) -> Result<Pending, (&'static str, String)> {
    let mut types = declared(raw_types);
    let total = types.len().max(split.max_param());
    types.resize(total, 0);
    let given = bind_values(rest).map(|v| v.params.len());
    if given != Some(total) {
        return Err((
            crate::protocol::sqlstate::PROTOCOL_VIOLATION,
            format!(
                "bind message supplies {} parameters, but prepared statement \"{statement}\" requires {total}",
                given.unwrap_or(0)
            ),
        ));
    }
    let mut binds = Vec::with_capacity(split.parts.len());
    for p in &split.parts {
        let Some(b) = bind_subset(rest, &p.params) else {
            return Err((
                crate::protocol::sqlstate::PROTOCOL_VIOLATION,
                "malformed Bind message".into(),
            ));
        };
        binds.push(b);
    }
    Ok(Pending {
        raw_types: raw_types.to_vec(),
        types,
        binds,
    })
}

/// The request of one part: Parse, Bind, (Describe), Execute, Sync.
fn part_request(part: &SplitPart, types: &[u32], bind: &[u8], describe: Option<u8>) -> Vec<u8> {
    let own: Vec<u32> = part
        .params
        .iter()
        .map(|&n| types.get(n - 1).copied().unwrap_or(0))
        .collect();
    // A described part's ParameterDescription is the part's: the client gets the whole
    // statement's.
    super::keyless_request::one_shot(&part.sql, &encode_types(&own), bind, describe)
}

/// Builds the parts' requests of an extended-protocol split (`req.pending`), describing the
/// whole statement first when its parameter types are needed. Some(answers, one per
/// participant) when the statement did not get that far: the describe failed (the failing
/// shard's participants carry its error) or its connection did.
pub(super) async fn prepare_parts(
    req: &mut Request,
    parts: &mut [Participant],
) -> Option<Vec<Result<Answer, BackendError>>> {
    let p = req.pending.take()?;
    let split = req.split.as_ref()?;
    let mut types = p.types;
    let unsure = types
        .iter()
        .enumerate()
        .any(|(i, &t)| t == 0 && split.param_uses.get(i).copied().unwrap_or(0) != 1);
    // The client's Describe of the statement needs every type.
    let unsure = unsure || (req.describe == Some(b'S') && types.contains(&0));
    // Every shard has its main taking part (`keyless_write` checks).
    if let Some(i) = parts.iter().position(|x| x.main).filter(|_| unsure) {
        match describe(&mut parts[i].conn, &req.sql, &p.raw_types).await {
            Ok(Ok(t)) if t.len() == types.len() => types = t,
            Ok(Ok(_)) => {
                // PostgreSQL counts the parameters as pgproxy does; if not, do not guess.
                let e = message::error_response(
                    message::Severity::Error,
                    crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                    "pgproxy could not tell the parameter types of this INSERT, whose rows belong to several shards: send one INSERT per shard",
                    None,
                );
                return Some(failed_at(parts, i, Ok(error_answer(e, b'E'))));
            }
            Ok(Err(a)) => return Some(failed_at(parts, i, Ok(a))),
            Err(e) => return Some(failed_at(parts, i, Err(e))),
        }
    }
    req.param_types = Some(types.clone());
    req.per_shard = split
        .parts
        .iter()
        .zip(&p.binds)
        .map(|(part, bind)| (part.shard, part_request(part, &types, bind, req.describe)))
        .collect();
    None
}

fn error_answer(e: Frame, status: u8) -> Answer {
    Answer {
        error: Some(e),
        status,
        ..Answer::default()
    }
}

/// Answers when participant `i` failed before any part ran: its shard's participants get its
/// answer (so they compare equal), the others an empty one (inside the transaction, nothing
/// run).
pub(super) fn failed_at(
    parts: &[Participant],
    i: usize,
    failed: Result<Answer, BackendError>,
) -> Vec<Result<Answer, BackendError>> {
    let shard = parts[i].shard;
    let answer = failed.as_ref().ok().cloned();
    let mut failed = Some(failed);
    parts
        .iter()
        .enumerate()
        .map(|(j, x)| {
            if j == i {
                failed.take().unwrap_or_else(|| Ok(Answer::default()))
            } else if x.shard == shard {
                match &answer {
                    Some(a) => Ok(a.clone()),
                    None => Ok(error_answer(
                        message::error_response(
                            message::Severity::Error,
                            crate::protocol::sqlstate::SERIALIZATION_FAILURE,
                            "the shard's main failed",
                            None,
                        ),
                        b'E',
                    )),
                }
            } else {
                Ok(Answer {
                    status: b'T',
                    ..Answer::default()
                })
            }
        })
        .collect()
}

/// Parse + Describe of the whole statement: its parameter types, or its error.
async fn describe(
    conn: &mut crate::pool::Pooled,
    sql: &str,
    raw_types: &[u8],
) -> Result<Result<Vec<u32>, Answer>, BackendError> {
    let mut out = BytesMut::new();
    out.put_slice(Parse::encode("", sql, raw_types).raw());
    out.put_slice(message::describe_statement("").raw());
    out.put_slice(message::sync().raw());
    let a = run(conn, &out).await?;
    if a.error.is_some() {
        return Ok(Err(a));
    }
    Ok(Ok(a.param_types.unwrap_or_default()))
}

/// A ParameterDescription of these types.
pub(super) fn parameter_description(types: &[u32]) -> Frame {
    Frame::new(
        crate::protocol::message::be::PARAMETER_DESCRIPTION,
        &encode_types(types),
    )
}

/// The body of a ParameterDescription: its types.
pub(super) fn parameter_types(body: &[u8]) -> Vec<u32> {
    declared(body)
}

/// The RETURNING rows of the shards' mains (`(shard, answer)`, one per part's shard) in the
/// whole statement's VALUES order. Err when a shard returned another number of rows than its
/// part has (a trigger or rule skipped or added rows): the order cannot be known.
pub(super) fn merged_rows<'a>(
    split: &Split,
    mains: &'a [(usize, Answer)],
) -> Result<Vec<&'a Frame>, String> {
    let total: usize = split.parts.iter().map(|p| p.rows.len()).sum();
    let mut owner = vec![usize::MAX; total];
    let mut rows: Vec<&[Frame]> = Vec::with_capacity(split.parts.len());
    for (k, p) in split.parts.iter().enumerate() {
        let Some((_, a)) = mains.iter().find(|(s, _)| *s == p.shard) else {
            return Err("a shard gave no answer".into());
        };
        if a.rows.len() != p.rows.len() {
            return Err(format!(
                "a shard returned {} rows for the {} rows it inserted",
                a.rows.len(),
                p.rows.len()
            ));
        }
        for &r in &p.rows {
            if let Some(o) = owner.get_mut(r) {
                *o = k;
            }
        }
        rows.push(&a.rows);
    }
    let mut next = vec![0usize; rows.len()];
    let mut out = Vec::with_capacity(total);
    for k in owner {
        let Some(part) = rows.get(k) else {
            return Err("a row of the INSERT went to no shard".into());
        };
        out.push(&part[next[k]]);
        next[k] += 1;
    }
    Ok(out)
}

/// The error a client gets when RETURNING rows cannot be put back in order.
pub(super) fn order_error(why: &str) -> Frame {
    message::error_response(
        message::Severity::Error,
        crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
        &format!(
            "the rows of this INSERT belong to several shards and pgproxy could not put its RETURNING rows back in VALUES order ({why}); nothing was written"
        ),
        Some("send one INSERT per shard"),
    )
}
