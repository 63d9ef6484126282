//! Merged reads through the extended protocol: a unit of [Parse] Bind [Describe portal]
//! Execute Sync whose statement has no single shard. Every shard gets the rewritten statement
//! as the unnamed statement with the client's parameters; the client gets the answers its own
//! messages ask for, and the merged rows in text format (binary results across shards are
//! refused: merging compares text values).

use super::relay::Session;
use super::replica::Plan;
use super::scatter::Request;
use super::SessionError;
use crate::protocol::frame::{self, FrameRef};
use crate::protocol::message::{self, fe, Bind, Parse};
use crate::protocol::rows::bind_values;
use crate::router::route::merge::Count;
use crate::router::route::MergeSpec;
use bytes::{BufMut, BytesMut};

/// The parts of a unit pgproxy can merge.
struct Shape {
    parse: Option<(String, String, Vec<u8>)>,
    bind: Vec<u8>,
    statement: String,
    describe: bool,
    describe_statement: bool,
    close_portal: bool,
    max_rows: u64,
}

fn shape(frames: &[u8]) -> Result<Shape, String> {
    let mut out = Shape {
        parse: None,
        bind: Vec::new(),
        statement: String::new(),
        describe: false,
        describe_statement: false,
        close_portal: false,
        max_rows: 0,
    };
    let (mut binds, mut executes) = (0, 0);
    let mut pos = 0;
    while pos < frames.len() {
        let Ok(Some(n)) = frame::peek_frame_len(&frames[pos..], usize::MAX) else {
            return Err("malformed message".into());
        };
        let f = FrameRef::new(&frames[pos..pos + n]);
        pos += n;
        match f.tag() {
            fe::PARSE if out.parse.is_none() && binds == 0 => {
                let p = Parse::parse(f.body()).ok_or("malformed Parse")?;
                out.parse = Some((
                    p.name.to_string(),
                    p.query.to_string(),
                    p.param_types.to_vec(),
                ));
            }
            fe::BIND => {
                binds += 1;
                let b = Bind::parse(f.body()).ok_or("malformed Bind")?;
                out.statement = b.statement.to_string();
                out.bind = b.rest.to_vec();
            }
            fe::DESCRIBE if f.body().first() == Some(&b'P') => out.describe = true,
            // pgjdbc describes the statement before binding it (parameter types unknown).
            fe::DESCRIBE if f.body().first() == Some(&b'S') && binds == 0 => {
                out.describe_statement = true
            }
            fe::EXECUTE => {
                executes += 1;
                let mut b = f.body();
                let _ = frame::read_cstr(&mut b);
                // asyncpg's fetchrow / fetchval ask for one row.
                out.max_rows = u64::try_from(frame::read_i32(&mut b).unwrap_or(0)).unwrap_or(0);
            }
            // sqlx closes the unnamed portal after executing it.
            fe::CLOSE if executes == 1 && f.body() == b"P\0" => out.close_portal = true,
            fe::SYNC if pos == frames.len() => {}
            _ => return Err("this combination of messages".into()),
        }
    }
    if binds != 1 || executes != 1 {
        return Err("several executions in one request".into());
    }
    Ok(out)
}

/// A LIMIT / OFFSET value from a bind parameter.
fn count_param(
    values: &crate::protocol::rows::BindValues<'_>,
    n: usize,
) -> Result<Option<u64>, String> {
    let (format, v) = values
        .params
        .get(n - 1)
        .copied()
        .ok_or("missing LIMIT / OFFSET parameter")?;
    let Some(v) = v else { return Ok(None) };
    let n: i64 = if format == 1 {
        match v.len() {
            8 => i64::from_be_bytes(v.try_into().map_err(|_| "bad integer")?),
            4 => i32::from_be_bytes(v.try_into().map_err(|_| "bad integer")?) as i64,
            2 => i16::from_be_bytes(v.try_into().map_err(|_| "bad integer")?) as i64,
            _ => return Err("LIMIT / OFFSET parameter of an unexpected size".into()),
        }
    } else {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("LIMIT / OFFSET parameter is not an integer")?
    };
    u64::try_from(n).map(Some).map_err(|_| NEGATIVE.into())
}

/// `count_param`'s answer to a negative count (PostgreSQL's error follows).
const NEGATIVE: &str = "negative";

impl Session {
    /// A merged read sent through the extended protocol.
    pub(super) async fn scatter_extended(
        &mut self,
        spec: &MergeSpec,
        shards: &[usize],
        frames: &[u8],
    ) -> Result<Plan, SessionError> {
        let ends_sync = frames.len() >= 5 && frames[frames.len() - 5] == fe::SYNC;
        if !ends_sync {
            let msg = "a read without a sharding key is merged across shards only in a request that ends with Sync: add the key";
            let e = message::error_response(
                message::Severity::Error,
                crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
                msg,
                None,
            );
            self.to_client.put_slice(e.raw());
            self.skip_until_sync = true;
            return Ok(Plan::Done);
        }
        let shape = match shape(frames) {
            Ok(s) => s,
            Err(what) => return self.refuse_scatter(&format!("a read without a sharding key is merged across shards, but not with {what} yet: add the key, or send one Bind/Execute per request")),
        };
        let Some(values) = bind_values(&shape.bind) else {
            return self.refuse_scatter("malformed Bind");
        };
        let formats = values.result_formats.clone();
        let param_types = match &shape.parse {
            Some((_, _, types)) => types.clone(),
            None => match self.statements.get(&shape.statement) {
                Some(s) => Parse::parse(s.parse_again().body())
                    .map(|p| p.param_types.to_vec())
                    .unwrap_or_else(|| vec![0, 0]),
                None => return self.refuse_scatter("unknown prepared statement"),
            },
        };
        let lim = |c: Option<Count>| -> Result<Option<Option<u64>>, String> {
            match c {
                Some(Count::Param(n)) => count_param(&values, n).map(Some),
                _ => Ok(None),
            }
        };
        let (offset, limit) = match (lim(spec.offset), lim(spec.limit)) {
            (Ok(o), Ok(l)) => (o, l),
            // PostgreSQL checks the OFFSET first.
            (Err(e), _) if e == NEGATIVE => {
                return self.fail_scatter("2201X", "OFFSET must not be negative")
            }
            (_, Err(e)) if e == NEGATIVE => {
                return self.fail_scatter("2201W", "LIMIT must not be negative")
            }
            (Err(e), _) | (_, Err(e)) => return self.refuse_scatter(&e),
        };
        // Every shard: the rewritten statement, unnamed, with the client's parameters and
        // text results.
        let mut rest = BytesMut::new();
        let n_formats = i16::from_be_bytes([shape.bind[0], shape.bind[1]]) as usize;
        let params_end = {
            let mut b = &shape.bind[..];
            let _ = frame::read_i16(&mut b);
            for _ in 0..n_formats {
                let _ = frame::read_i16(&mut b);
            }
            let np = frame::read_i16(&mut b).unwrap_or(0);
            for _ in 0..np.max(0) {
                let len = frame::read_i32(&mut b).unwrap_or(-1);
                if len > 0 {
                    b = b.get(len as usize..).unwrap_or(&[]);
                }
            }
            shape.bind.len() - b.len()
        };
        rest.put_slice(&shape.bind[..params_end]);
        rest.put_i16(0);
        let mut out = BytesMut::new();
        out.put_slice(Parse::encode("", &spec.sql, &param_types).raw());
        if shape.describe_statement {
            out.put_slice(message::describe_statement("").raw());
        }
        out.put_slice(Bind::encode("", "", &rest).raw());
        out.put_slice(message::describe_portal("").raw());
        out.put_slice(message::execute("", 0).raw());
        out.put_slice(message::sync().raw());
        if let Some((name, query, types)) = &shape.parse {
            if !name.is_empty() {
                let stmt = self.intern_statement(query, types);
                self.statements.define(name, stmt);
            }
        }
        let request = Request {
            frames: out.to_vec(),
            parse: shape.parse.is_some(),
            describe_statement: shape.describe_statement,
            bind: true,
            describe: shape.describe,
            offset,
            limit,
            simple: false,
            formats,
            close_portal: shape.close_portal,
            max_rows: shape.max_rows,
        };
        self.scatter(spec, shards, request).await
    }

    fn refuse_scatter(&mut self, msg: &str) -> Result<Plan, SessionError> {
        tracing::debug!(reason = msg, "merged read refused");
        let e = message::error_response(
            message::Severity::Error,
            crate::protocol::sqlstate::FEATURE_NOT_SUPPORTED,
            msg,
            Some("see `pgproxy route --config FILE \"SQL\"` for how pgproxy routes a statement"),
        );
        self.end_scatter_with(e.raw())
    }

    /// The merged read fails as it would in PostgreSQL (`code`, `msg`).
    fn fail_scatter(&mut self, code: &str, msg: &str) -> Result<Plan, SessionError> {
        let e = message::error_response(message::Severity::Error, code, msg, None);
        self.end_scatter_with(e.raw())
    }

    /// Answers the unit with an error: like any error, it aborts the client's transaction.
    fn end_scatter_with(&mut self, error: &[u8]) -> Result<Plan, SessionError> {
        self.to_client.put_slice(error);
        self.note_refusal();
        // The unit ends with Sync: answer it.
        self.to_client
            .put_slice(message::ready_for_query(self.tx_status_for_client()).raw());
        Ok(Plan::Done)
    }
}
