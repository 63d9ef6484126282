//! A raw PostgreSQL wire-protocol client over TCP, for tests that need bytes tokio-postgres will
//! not send: malformed frames, SSLRequest, CancelRequest, and statement names chosen by the test.
//! <https://www.postgresql.org/docs/current/protocol-message-formats.html>

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest backend message this client accepts (a guard against misframing).
const MAX_MESSAGE: usize = 64 << 20;
/// Longest wait for any single read.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// One backend message: type byte and body (without the length).
#[derive(Debug, Clone)]
pub struct Msg {
    /// Message type byte ('E', 'Z', 'D', ...).
    pub tag: u8,
    /// Body after the length word.
    pub body: Bytes,
}

/// How the proxy answered input it should reject.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// An ErrorResponse with this SQLSTATE (the connection may close after).
    Error(String),
    /// The connection was closed without an ErrorResponse.
    Closed,
}

/// A raw connection.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawConn {
    /// Opens a TCP connection to 127.0.0.1:`port`.
    pub async fn connect(port: u16) -> RawConn {
        let stream = super::within(
            10,
            "raw TCP connect",
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .unwrap_or_else(|e| panic!("raw connect to {port}: {e}"));
        RawConn {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Connects and logs in as a trust user; returns after the first ReadyForQuery.
    pub async fn login_trust(port: u16, user: &str, db: &str) -> RawConn {
        let mut conn = RawConn::connect(port).await;
        conn.send(&startup(user, db)).await.expect("send startup");
        for msg in conn.until_ready().await {
            if msg.tag == b'R' {
                assert_eq!(
                    &msg.body[..4],
                    &[0, 0, 0, 0],
                    "trust login must get AuthenticationOk"
                );
            }
        }
        conn
    }

    /// Connects and logs in with a password (SCRAM-SHA-256, MD5 or cleartext, whichever the
    /// peer asks for); returns after the first ReadyForQuery. Panics if the login fails.
    pub async fn login_password(port: u16, user: &str, password: &str, db: &str) -> RawConn {
        use postgres_protocol::authentication::{md5_hash, sasl};
        let mut conn = RawConn::connect(port).await;
        conn.send(&startup(user, db)).await.expect("send startup");
        let mut scram = None;
        loop {
            let msg = conn.recv().await.expect("connection closed during login");
            match msg.tag {
                b'E' => panic!("login failed: {:?}", error_fields(&msg.body)),
                b'Z' => return conn,
                b'R' => {}
                _ => continue,
            }
            let code = u32::from_be_bytes([msg.body[0], msg.body[1], msg.body[2], msg.body[3]]);
            let data = &msg.body[4..];
            match code {
                0 => {}
                3 => {
                    let mut body = BytesMut::new();
                    put_cstr(&mut body, password);
                    conn.send(&message(b'p', &body))
                        .await
                        .expect("send password");
                }
                5 => {
                    let salt = [data[0], data[1], data[2], data[3]];
                    let hash = md5_hash(user.as_bytes(), password.as_bytes(), salt);
                    let mut body = BytesMut::new();
                    put_cstr(&mut body, &hash);
                    conn.send(&message(b'p', &body)).await.expect("send md5");
                }
                10 => {
                    let s = sasl::ScramSha256::new(
                        password.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    let mut body = BytesMut::new();
                    put_cstr(&mut body, sasl::SCRAM_SHA_256);
                    body.put_i32(s.message().len() as i32);
                    body.put_slice(s.message());
                    conn.send(&message(b'p', &body))
                        .await
                        .expect("send SASL init");
                    scram = Some(s);
                }
                11 => {
                    let s = scram.as_mut().expect("SASLContinue before SASL");
                    s.update(data).expect("SCRAM server-first");
                    conn.send(&message(b'p', s.message()))
                        .await
                        .expect("send SASL response");
                }
                12 => {
                    let s = scram.as_mut().expect("SASLFinal before SASL");
                    s.finish(data).expect("SCRAM server-final");
                }
                other => panic!("unsupported authentication request {other}"),
            }
        }
    }

    /// Writes bytes; an error means the peer closed (which some tests expect).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads exactly one byte (the answer to SSLRequest); `None` on EOF.
    pub async fn recv_byte(&mut self) -> Option<u8> {
        if !self.buf.is_empty() {
            return Some(self.buf.split_to(1)[0]);
        }
        let mut b = [0u8; 1];
        match super::within(
            READ_LIMIT.as_secs(),
            "raw read of one byte",
            self.stream.read(&mut b),
        )
        .await
        {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    }

    /// Reads one message; `None` when the peer closed (EOF or reset). Panics if nothing arrives
    /// within the read limit: the proxy must answer or close, never leave a client hanging.
    pub async fn recv(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                assert!(
                    (4..MAX_MESSAGE).contains(&len),
                    "backend sent a bad length {len}"
                );
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).freeze();
                    return Some(Msg { tag, body });
                }
            }
            let read = super::within(
                READ_LIMIT.as_secs(),
                "raw read",
                self.stream.read_buf(&mut self.buf),
            )
            .await;
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads through the next ReadyForQuery, returning everything before it; panics on EOF or
    /// on an ErrorResponse (use [`RawConn::until_ready_any`] where errors are expected).
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let msgs = self.until_ready_any().await;
        if let Some(e) = msgs.iter().find(|m| m.tag == b'E') {
            panic!("unexpected ErrorResponse: {:?}", error_fields(&e.body));
        }
        msgs
    }

    /// Reads through the next ReadyForQuery, which is the last message returned (errors
    /// included); panics on EOF.
    pub async fn through_ready(&mut self) -> Vec<Msg> {
        let mut msgs = Vec::new();
        loop {
            let msg = self
                .recv()
                .await
                .expect("connection closed before ReadyForQuery");
            let ready = msg.tag == b'Z';
            msgs.push(msg);
            if ready {
                return msgs;
            }
        }
    }

    /// Reads through the next ReadyForQuery (errors included); panics on EOF.
    pub async fn until_ready_any(&mut self) -> Vec<Msg> {
        let mut msgs = self.through_ready().await;
        msgs.pop();
        msgs
    }

    /// Reads until an ErrorResponse or close. Other messages (e.g. a NoticeResponse) are skipped.
    pub async fn rejection(&mut self) -> Rejection {
        while let Some(msg) = self.recv().await {
            if msg.tag == b'E' {
                let fields = error_fields(&msg.body);
                return Rejection::Error(fields.get(&b'C').cloned().unwrap_or_default());
            }
        }
        Rejection::Closed
    }

    /// Simple query; the DataRows as text. Panics on an ErrorResponse.
    pub async fn simple_query(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.send(&query(sql)).await.expect("send Query");
        rows(&self.until_ready().await)
    }
}

/// The DataRows among `msgs`, as text columns.
pub fn rows(msgs: &[Msg]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| data_row(&m.body))
        .collect()
}

/// Fields of an ErrorResponse/NoticeResponse body by code byte ('C' SQLSTATE, 'M' message, ...).
pub fn error_fields(body: &[u8]) -> HashMap<u8, String> {
    let mut out = HashMap::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        out.insert(code, String::from_utf8_lossy(&tail[..end]).into_owned());
        rest = &tail[(end + 1).min(tail.len())..];
    }
    out
}

/// Columns of a DataRow body as text.
pub fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut b = body;
    let n = b.get_u16() as usize;
    (0..n)
        .map(|_| {
            let len = b.get_i32();
            if len < 0 {
                return None;
            }
            let v = String::from_utf8_lossy(&b[..len as usize]).into_owned();
            b.advance(len as usize);
            Some(v)
        })
        .collect()
}

/// A StartupMessage (protocol 3.0) for `user` and `db`.
pub fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u32(196608);
    for (k, v) in [("user", user), ("database", db)] {
        put_cstr(&mut body, k);
        put_cstr(&mut body, v);
    }
    body.put_u8(0);
    untagged(&body)
}

/// An SSLRequest.
pub fn ssl_request() -> Vec<u8> {
    untagged(&80877103u32.to_be_bytes())
}

/// A CancelRequest for a backend key.
pub fn cancel_request(pid: i32, secret: i32) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u32(80877102);
    body.put_i32(pid);
    body.put_i32(secret);
    untagged(&body)
}

/// A typed frontend message with a correct length.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Query ('Q').
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_cstr(&mut body, sql);
    message(b'Q', &body)
}

/// Parse ('P') of `sql` as statement `name`, parameter types left to the server.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_cstr(&mut body, name);
    put_cstr(&mut body, sql);
    body.put_u16(0);
    message(b'P', &body)
}

/// Bind ('B') text parameters to `statement` into `portal`, results as text.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_cstr(&mut body, portal);
    put_cstr(&mut body, statement);
    body.put_u16(0);
    body.put_u16(params.len() as u16);
    for p in params {
        match p {
            None => body.put_i32(-1),
            Some(v) => {
                body.put_i32(v.len() as i32);
                body.put_slice(v.as_bytes());
            }
        }
    }
    body.put_u16(0);
    message(b'B', &body)
}

/// Parse ('P') of `sql` as statement `name` with declared parameter type OIDs.
pub fn parse_typed(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_cstr(&mut body, name);
    put_cstr(&mut body, sql);
    body.put_u16(types.len() as u16);
    for t in types {
        body.put_u32(*t);
    }
    message(b'P', &body)
}

/// Bind ('B') binary-format parameters (raw bytes) to `statement` into `portal`, results as
/// text.
pub fn bind_binary(portal: &str, statement: &str, params: &[&[u8]]) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_cstr(&mut body, portal);
    put_cstr(&mut body, statement);
    body.put_u16(1);
    body.put_u16(1);
    body.put_u16(params.len() as u16);
    for p in params {
        body.put_i32(p.len() as i32);
        body.put_slice(p);
    }
    body.put_u16(0);
    message(b'B', &body)
}

/// Execute ('E') `portal`, all rows when `max_rows` is 0.
pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = BytesMut::new();
    put_cstr(&mut body, portal);
    body.put_i32(max_rows);
    message(b'E', &body)
}

/// Describe ('D') of portal `name` (kind b'P') or statement `name` (kind b'S').
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    put_cstr(&mut body, name);
    message(b'D', &body)
}

/// Flush ('H').
pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// CopyData ('d').
pub fn copy_data(data: &[u8]) -> Vec<u8> {
    message(b'd', data)
}

/// CopyDone ('c').
pub fn copy_done() -> Vec<u8> {
    message(b'c', &[])
}

/// Sync ('S').
pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// Terminate ('X').
pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.put_slice(s.as_bytes());
    buf.put_u8(0);
}

/// A message without a type byte (startup-phase packets): length word then `body`.
fn untagged(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}
