//! The requests of a write on several shards (`keyless`): from the client's unit (a Query, or
//! Parse / Bind / Describe / Execute / Sync), what each shard runs and what the client asked to
//! hear back. A split INSERT's parts get their own statements (`keyless_split`).

use super::keyless_split::Pending;
use super::relay::Session;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::router::route::{Route, Split};
use bytes::{BufMut, BytesMut};

/// The request each shard runs, and what the client's unit asked to hear back.
pub(super) struct Request {
    pub(super) per_shard: Vec<(usize, Vec<u8>)>,
    pub(super) extended: bool,
    pub(super) parse: bool,
    /// The client's Describe: of the portal (`P`) or of the statement (`S`, after its Bind:
    /// ParameterDescription, then the columns).
    pub(super) describe: Option<u8>,
    /// That Describe (of the statement) came before the Bind: its answer comes first too.
    pub(super) describe_first: bool,
    /// A split's parameter types, for the client's Describe of the statement.
    pub(super) param_types: Option<Vec<u32>>,
    /// The client closed the unnamed portal after its Execute (sqlx does).
    pub(super) close_portal: bool,
    pub(super) sql: String,
    /// A multi-row INSERT split per shard.
    pub(super) split: Option<Split>,
    /// Extended protocol, split: the parts' requests are built once their parameter types
    /// are known (`keyless_split::prepare_parts`).
    pub(super) pending: Option<Pending>,
}

/// Why a unit cannot run as a write on several shards.
pub(super) enum Unfit {
    /// pgproxy does not support it (0A000): what.
    Unsupported(String),
    /// PostgreSQL would refuse it: SQLSTATE and message.
    Error(&'static str, String),
}

impl From<&str> for Unfit {
    fn from(what: &str) -> Unfit {
        Unfit::Unsupported(what.to_string())
    }
}

impl Session {
    pub(super) fn keyless_request(
        &self,
        route: &Route,
        frames: &[u8],
        simple: bool,
        shards: &[usize],
    ) -> Result<Request, Unfit> {
        let mut q = None;
        let (mut parse, mut bind, mut describe, mut executes) = (None, None, None, 0);
        let mut describe_first = false;
        let mut close_portal = false;
        let mut pos = 0;
        while pos < frames.len() {
            let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
                return Err("malformed message".into());
            };
            let f = FrameRef::new(&frames[pos..pos + n]);
            pos += n;
            match f.tag() {
                fe::QUERY => q = message::query_text(f.body()).map(str::to_string),
                fe::PARSE => {
                    parse = Parse::parse(f.body())
                        .map(|p| (p.query.to_string(), p.param_types.to_vec()))
                }
                fe::BIND => {
                    bind = Bind::parse(f.body()).map(|b| (b.statement.to_string(), b.rest.to_vec()))
                }
                fe::DESCRIBE => {
                    let kind = f
                        .body()
                        .first()
                        .copied()
                        .filter(|k| *k == b'P' || *k == b'S');
                    if describe.is_none() && kind.is_some() {
                        describe = kind;
                        describe_first = bind.is_none() && kind == Some(b'S');
                    }
                }
                fe::EXECUTE => executes += 1,
                fe::CLOSE if executes == 1 && f.body() == b"P\0" => close_portal = true,
                fe::SYNC if pos == frames.len() => {}
                _ => return Err("this combination of messages".into()),
            }
        }
        if simple {
            let sql = q.ok_or("no query")?;
            let per_shard = match &route.split {
                Some(split) => split
                    .parts
                    .iter()
                    .map(|p| (p.shard, message::query(&p.sql).raw().to_vec()))
                    .collect(),
                None => shards
                    .iter()
                    .map(|&s| (s, message::query(&sql).raw().to_vec()))
                    .collect(),
            };
            return Ok(Request {
                per_shard,
                extended: false,
                parse: false,
                describe: None,
                describe_first: false,
                param_types: None,
                close_portal: false,
                sql,
                split: route.split.clone(),
                pending: None,
            });
        }
        if executes != 1 {
            return Err("several executions in one request".into());
        }
        let (stmt, rest) = bind.ok_or("no Bind")?;
        let (sql, types) = match &parse {
            Some(p) => p.clone(),
            None => {
                let s = self
                    .statements
                    .get(&stmt)
                    .ok_or("unknown prepared statement")?;
                let parse = s.parse_again();
                let p = Parse::parse(parse.body()).ok_or("unknown prepared statement")?;
                (p.query.to_string(), p.param_types.to_vec())
            }
        };
        let (per_shard, pending) = match &route.split {
            Some(split) => {
                let pending = super::keyless_split::pending(split, &types, &rest, &stmt)
                    .map_err(|(code, msg)| Unfit::Error(code, msg))?;
                (Vec::new(), Some(pending))
            }
            None => {
                let bytes = one_shot(&sql, &types, &rest, describe);
                (shards.iter().map(|&s| (s, bytes.clone())).collect(), None)
            }
        };
        Ok(Request {
            per_shard,
            extended: true,
            parse: parse.is_some(),
            describe,
            describe_first,
            param_types: None,
            close_portal,
            sql,
            split: route.split.clone(),
            pending,
        })
    }
}

/// Parse of `sql` into the unnamed statement (parameter types as a Parse encodes them), Bind
/// with `bind` (everything after a Bind's two names), Describe if asked (`b'S'` statement,
/// else portal), Execute, Sync.
pub(super) fn one_shot(sql: &str, types: &[u8], bind: &[u8], describe: Option<u8>) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_slice(Parse::encode("", sql, types).raw());
    out.put_slice(Bind::encode("", "", bind).raw());
    match describe {
        Some(b'S') => out.put_slice(message::describe_statement("").raw()),
        Some(_) => out.put_slice(message::describe_portal("").raw()),
        None => {}
    }
    out.put_slice(message::execute("", 0).raw());
    out.put_slice(message::sync().raw());
    out.to_vec()
}
