//! Message type tags, typed views over the bodies pgproxy inspects, and builders for the messages
//! pgproxy writes itself. Views borrow the frame's bytes; parsing returns `None` on malformed
//! input instead of panicking.

use super::frame::{read_cstr, read_i16, read_i32, Frame};
use bytes::{BufMut, BytesMut};

/// Frontend (client → server) message tags.
pub mod fe {
    /// Simple Query.
    pub const QUERY: u8 = b'Q';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Close.
    pub const CLOSE: u8 = b'C';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// PasswordMessage / SASLInitialResponse / SASLResponse.
    pub const PASSWORD: u8 = b'p';
}

/// Backend (server → client) message tags.
pub mod be {
    /// Authentication request.
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// BindComplete.
    pub const BIND_COMPLETE: u8 = b'2';
    /// CloseComplete.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyInResponse.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// CopyOutResponse.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// CopyBothResponse.
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY: u8 = b'I';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// FunctionCallResponse.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    /// NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// NoData.
    pub const NO_DATA: u8 = b'n';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// NotificationResponse.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// ParameterDescription.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// ParameterStatus.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ParseComplete.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// PortalSuspended.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// ReadyForQuery.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// A Parse message: `name`, `query`, then the parameter type OIDs (kept raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Prepared statement name ("" = unnamed).
    pub name: &'a str,
    /// Query text.
    pub query: &'a str,
    /// Raw bytes after the query: int16 count + int32 OIDs.
    pub param_types: &'a [u8],
}

#[allow(clippy::self_named_constructors)]
impl<'a> Parse<'a> {
    /// Parses a Parse body.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let mut b = body;
        let name = read_cstr(&mut b)?;
        let query = read_cstr(&mut b)?;
        let mut check = b;
        let n = read_i16(&mut check)?;
        if n < 0 || check.len() != n as usize * 4 {
            return None;
        }
        Some(Parse {
            name,
            query,
            param_types: b,
        })
    }

    /// Builds a Parse frame with another statement name.
    pub fn encode(name: &str, query: &str, param_types: &[u8]) -> Frame {
        let mut b = BytesMut::with_capacity(name.len() + query.len() + param_types.len() + 7);
        b.put_u8(fe::PARSE);
        b.put_i32(0);
        put_cstr(&mut b, name);
        put_cstr(&mut b, query);
        b.put_slice(param_types);
        finish(b)
    }
}

/// A Bind message: destination portal, source statement, and the rest (formats, values) raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal name.
    pub portal: &'a str,
    /// Statement name.
    pub statement: &'a str,
    /// Everything after the two names.
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    /// Parses the two names of a Bind body; the rest stays raw.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let mut b = body;
        let portal = read_cstr(&mut b)?;
        let statement = read_cstr(&mut b)?;
        Some(Bind {
            portal,
            statement,
            rest: b,
        })
    }

    /// Builds a Bind frame naming another statement.
    pub fn encode(portal: &str, statement: &str, rest: &[u8]) -> Frame {
        let mut b = BytesMut::with_capacity(portal.len() + statement.len() + rest.len() + 7);
        b.put_u8(fe::BIND);
        b.put_i32(0);
        put_cstr(&mut b, portal);
        put_cstr(&mut b, statement);
        b.put_slice(rest);
        finish(b)
    }
}

/// Describe or Close: a kind byte (`S` statement, `P` portal) and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// `b'S'` or `b'P'`.
    pub kind: u8,
    /// Statement or portal name.
    pub name: &'a str,
}

impl<'a> Target<'a> {
    /// Parses a Describe or Close body.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        let (&kind, mut rest) = body.split_first()?;
        if kind != b'S' && kind != b'P' {
            return None;
        }
        let name = read_cstr(&mut rest)?;
        Some(Target { kind, name })
    }

    /// Builds a Describe (`tag = b'D'`) or Close (`tag = b'C'`) frame.
    pub fn encode(tag: u8, kind: u8, name: &str) -> Frame {
        let mut b = BytesMut::with_capacity(name.len() + 7);
        b.put_u8(tag);
        b.put_i32(0);
        b.put_u8(kind);
        put_cstr(&mut b, name);
        finish(b)
    }
}

/// The query text of a Query message.
pub fn query_text(body: &[u8]) -> Option<&str> {
    let mut b = body;
    read_cstr(&mut b)
}

/// The command tag of a CommandComplete message.
pub fn command_tag(body: &[u8]) -> &str {
    let mut b = body;
    read_cstr(&mut b).unwrap_or("")
}

/// The fields of an ErrorResponse or NoticeResponse, as (code byte, value) pairs.
pub fn error_fields(body: &[u8]) -> Vec<(u8, &str)> {
    let mut out = Vec::new();
    let mut b = body;
    while let Some((&code, rest)) = b.split_first() {
        if code == 0 {
            break;
        }
        b = rest;
        match read_cstr(&mut b) {
            Some(v) => out.push((code, v)),
            None => break,
        }
    }
    out
}

/// The SQLSTATE (`C` field) of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> Option<&str> {
    error_fields(body)
        .into_iter()
        .find(|(c, _)| *c == b'C')
        .map(|(_, v)| v)
}

/// True if an ErrorResponse body has severity FATAL or PANIC (the server closes after it).
pub fn is_fatal_error(body: &[u8]) -> bool {
    error_fields(body)
        .iter()
        .any(|(c, v)| (*c == b'V' || *c == b'S') && (*v == "FATAL" || *v == "PANIC"))
}

/// The same ErrorResponse with severity ERROR (all other fields unchanged).
pub fn downgrade_to_error(body: &[u8]) -> Frame {
    let mut b = BytesMut::with_capacity(body.len() + 8);
    b.put_u8(be::ERROR_RESPONSE);
    b.put_i32(0);
    for (c, v) in error_fields(body) {
        b.put_u8(c);
        put_cstr(&mut b, if c == b'S' || c == b'V' { "ERROR" } else { v });
    }
    b.put_u8(0);
    finish(b)
}

/// Name and value of a ParameterStatus body.
pub fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut b = body;
    let name = read_cstr(&mut b)?;
    let value = read_cstr(&mut b)?;
    Some((name, value))
}

/// Process id and secret key of a BackendKeyData body.
pub fn backend_key_data(body: &[u8]) -> Option<(i32, i32)> {
    let mut b = body;
    Some((read_i32(&mut b)?, read_i32(&mut b)?))
}

/// The columns of a DataRow as text (`None` for NULL, lossy UTF-8). Malformed rows give
/// whatever columns could be read.
pub fn data_row_text(body: &[u8]) -> Vec<Option<String>> {
    let mut b = body;
    let n = read_i16(&mut b).unwrap_or(0).max(0) as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let Some(len) = read_i32(&mut b) else { break };
        if len < 0 {
            out.push(None);
            continue;
        }
        let len = len as usize;
        if len > b.len() {
            break;
        }
        out.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
        b = &b[len..];
    }
    out
}

fn put_cstr(b: &mut BytesMut, s: &str) {
    b.put_slice(s.as_bytes());
    b.put_u8(0);
}

fn finish(mut b: BytesMut) -> Frame {
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    Frame::from_raw(b.freeze())
}

/// Severity of an error pgproxy raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session continues.
    Error,
    /// The session ends.
    Fatal,
}

/// Builds an ErrorResponse with severity, SQLSTATE, message and optional hint.
pub fn error_response(severity: Severity, code: &str, message: &str, hint: Option<&str>) -> Frame {
    let sev = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    let mut b = BytesMut::with_capacity(64 + message.len());
    b.put_u8(be::ERROR_RESPONSE);
    b.put_i32(0);
    for (k, v) in [(b'S', sev), (b'V', sev), (b'C', code), (b'M', message)] {
        b.put_u8(k);
        put_cstr(&mut b, v);
    }
    if let Some(h) = hint {
        b.put_u8(b'H');
        put_cstr(&mut b, h);
    }
    b.put_u8(0);
    finish(b)
}

/// The error PostgreSQL raises when a prepared statement's result columns changed under it
/// (an ALTER of its table): drivers recognise it by SQLSTATE 0A000 and this message, pgjdbc by
/// the routine, and prepare the statement again.
pub fn stale_plan_error() -> Frame {
    let mut b = BytesMut::with_capacity(128);
    b.put_u8(be::ERROR_RESPONSE);
    b.put_i32(0);
    for (k, v) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', super::sqlstate::FEATURE_NOT_SUPPORTED),
        (b'M', "cached plan must not change result type"),
        (b'F', "plancache.c"),
        (b'R', "RevalidateCachedQuery"),
    ] {
        b.put_u8(k);
        put_cstr(&mut b, v);
    }
    b.put_u8(0);
    finish(b)
}

/// Builds a NoticeResponse (severity WARNING or NOTICE).
pub fn notice_response(severity: &str, code: &str, message: &str) -> Frame {
    let mut b = BytesMut::with_capacity(64 + message.len());
    b.put_u8(be::NOTICE_RESPONSE);
    b.put_i32(0);
    for (k, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        b.put_u8(k);
        put_cstr(&mut b, v);
    }
    b.put_u8(0);
    finish(b)
}

/// Builds an Authentication message with a sub-code and payload.
pub fn authentication(code: i32, payload: &[u8]) -> Frame {
    let mut body = Vec::with_capacity(4 + payload.len());
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(payload);
    Frame::new(be::AUTHENTICATION, &body)
}

/// Builds a ParameterStatus message.
pub fn parameter_status_msg(name: &str, value: &str) -> Frame {
    let mut b = BytesMut::with_capacity(name.len() + value.len() + 7);
    b.put_u8(be::PARAMETER_STATUS);
    b.put_i32(0);
    put_cstr(&mut b, name);
    put_cstr(&mut b, value);
    finish(b)
}

/// Builds BackendKeyData.
pub fn backend_key_data_msg(pid: i32, secret: i32) -> Frame {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&pid.to_be_bytes());
    body[4..].copy_from_slice(&secret.to_be_bytes());
    Frame::new(be::BACKEND_KEY_DATA, &body)
}

/// Builds ReadyForQuery with a transaction status (`I`, `T` or `E`).
pub fn ready_for_query(status: u8) -> Frame {
    Frame::new(be::READY_FOR_QUERY, &[status])
}

/// Builds a PortalSuspended.
pub fn portal_suspended() -> Frame {
    Frame::new(be::PORTAL_SUSPENDED, &[])
}

/// Builds a CloseComplete.
pub fn close_complete() -> Frame {
    Frame::new(be::CLOSE_COMPLETE, &[])
}

/// Builds a simple Query message.
pub fn query(sql: &str) -> Frame {
    let mut b = BytesMut::with_capacity(sql.len() + 6);
    b.put_u8(fe::QUERY);
    b.put_i32(0);
    put_cstr(&mut b, sql);
    finish(b)
}

/// Builds a Describe of a portal.
pub fn describe_portal(name: &str) -> Frame {
    let mut b = BytesMut::with_capacity(name.len() + 7);
    b.put_u8(fe::DESCRIBE);
    b.put_i32(0);
    b.put_u8(b'P');
    put_cstr(&mut b, name);
    finish(b)
}

/// Builds a Describe of a prepared statement.
pub fn describe_statement(name: &str) -> Frame {
    let mut b = BytesMut::with_capacity(name.len() + 7);
    b.put_u8(fe::DESCRIBE);
    b.put_i32(0);
    b.put_u8(b'S');
    put_cstr(&mut b, name);
    finish(b)
}

/// Builds an Execute of a portal (`max_rows` 0: all rows).
pub fn execute(portal: &str, max_rows: i32) -> Frame {
    let mut b = BytesMut::with_capacity(portal.len() + 10);
    b.put_u8(fe::EXECUTE);
    b.put_i32(0);
    put_cstr(&mut b, portal);
    b.put_i32(max_rows);
    finish(b)
}

/// The portal an Execute body names.
pub fn execute_portal(body: &[u8]) -> Option<&str> {
    let mut b = body;
    read_cstr(&mut b)
}

/// Builds a Sync.
pub fn sync() -> Frame {
    Frame::new(fe::SYNC, &[])
}

/// Builds a CopyFail with `reason`.
pub fn copy_fail(reason: &str) -> Frame {
    let mut body = BytesMut::new();
    put_cstr(&mut body, reason);
    Frame::new(fe::COPY_FAIL, &body)
}

/// Builds a Flush.
pub fn flush() -> Frame {
    Frame::new(fe::FLUSH, &[])
}

/// Builds a CommandComplete with the given tag.
pub fn command_complete(tag: &str) -> Frame {
    let mut b = BytesMut::with_capacity(tag.len() + 6);
    b.put_u8(be::COMMAND_COMPLETE);
    b.put_i32(0);
    put_cstr(&mut b, tag);
    finish(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roundtrip_and_rename() {
        let f = Parse::encode("s1", "select $1", &[0, 1, 0, 0, 0, 23]);
        let p = Parse::parse(f.body()).expect("valid parse");
        assert_eq!(p.name, "s1");
        assert_eq!(p.query, "select $1");
        assert_eq!(p.param_types, &[0, 1, 0, 0, 0, 23]);
        assert!(Parse::parse(b"s1\0select\0\0\x02\0\0\0\x17").is_none());
        assert!(Parse::parse(b"s1").is_none());
    }

    #[test]
    fn bind_rename_keeps_rest() {
        let f = Bind::encode("", "s1", &[0, 0, 0, 0, 0, 0]);
        let b = Bind::parse(f.body()).expect("valid bind");
        let g = Bind::encode(b.portal, "pgproxy_7", b.rest);
        let c = Bind::parse(g.body()).expect("valid bind");
        assert_eq!(c.statement, "pgproxy_7");
        assert_eq!(c.rest, b.rest);
    }

    #[test]
    fn error_response_fields() {
        let f = error_response(Severity::Fatal, "28P01", "bad password", Some("check it"));
        let fields = error_fields(f.body());
        assert!(fields.contains(&(b'C', "28P01")));
        assert!(fields.contains(&(b'S', "FATAL")));
        assert!(fields.contains(&(b'H', "check it")));
        assert_eq!(error_code(f.body()), Some("28P01"));
        assert!(is_fatal_error(f.body()));
        let g = downgrade_to_error(f.body());
        assert!(!is_fatal_error(g.body()));
        assert!(error_fields(g.body()).contains(&(b'S', "ERROR")));
        assert!(error_fields(g.body()).contains(&(b'H', "check it")));
    }

    #[test]
    fn targets() {
        let f = Target::encode(b'C', b'S', "x");
        assert_eq!(
            Target::parse(f.body()),
            Some(Target {
                kind: b'S',
                name: "x"
            })
        );
        assert_eq!(Target::parse(b"Zx\0"), None);
        assert_eq!(Target::parse(b""), None);
    }
}
