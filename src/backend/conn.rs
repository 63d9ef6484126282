//! `ServerConn`: a logged-in connection to one node, with the per-connection state pgproxy tracks
//! (prepared statements it holds, settings applied, transaction status).

use super::{auth, BackendError};
use crate::config::ServerTls;
use crate::net::Stream;
use crate::protocol::frame::{self, Frame};
use crate::protocol::message::{self, be};
use crate::protocol::startup::PROTOCOL_3_0;
use bytes::{BufMut, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// Largest message accepted from a node (PostgreSQL's own limit for a field is 1 GB).
pub const MAX_SERVER_MESSAGE: usize = 1 << 30;

/// The shared statements prepared on one server connection, with a use clock so the least
/// recently used can be closed when the connection holds too many.
#[derive(Debug, Default)]
pub struct PreparedSet {
    last_use: HashMap<u64, u64>,
    clock: u64,
}

impl PreparedSet {
    /// True if the statement is prepared here; counts as a use.
    pub fn contains(&mut self, id: u64) -> bool {
        self.clock += 1;
        let now = self.clock;
        match self.last_use.get_mut(&id) {
            Some(t) => {
                *t = now;
                true
            }
            None => false,
        }
    }

    /// Records a statement as prepared here.
    pub fn insert(&mut self, id: u64) {
        self.clock += 1;
        self.last_use.insert(id, self.clock);
    }

    /// Forgets a statement.
    pub fn remove(&mut self, id: u64) {
        self.last_use.remove(&id);
    }

    /// Forgets every statement (DISCARD ALL / DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.last_use.clear();
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.last_use.len()
    }

    /// True when none is prepared.
    pub fn is_empty(&self) -> bool {
        self.last_use.is_empty()
    }

    /// The least recently used statement other than `keep`, removed from the set.
    pub fn pop_least_recent(&mut self, keep: u64) -> Option<u64> {
        let id = self
            .last_use
            .iter()
            .filter(|(id, _)| **id != keep)
            .min_by_key(|(_, t)| **t)
            .map(|(id, _)| *id)?;
        self.last_use.remove(&id);
        Some(id)
    }
}

/// Rows and ParameterStatus messages of an internal query.
#[derive(Debug, Default)]
pub struct InternalResult {
    /// Rows, each column as text (`None` for NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// ParameterStatus (name, value) pairs received.
    pub params: Vec<(String, String)>,
}

/// What `ServerConn::exchange` read.
#[derive(Debug)]
pub struct Exchange {
    /// Rows and ParameterStatus messages.
    pub result: InternalResult,
    /// The first ErrorResponse, as sent.
    pub error: Option<Frame>,
    /// Transaction status at the final ReadyForQuery.
    pub status: u8,
    /// The last CommandComplete's tag.
    pub tag: Option<String>,
}

/// Everything needed to open a connection to a node.
#[derive(Clone)]
pub struct ConnectParams {
    /// Node host.
    pub host: String,
    /// Node port.
    pub port: u16,
    /// Role on the node.
    pub user: String,
    /// Password on the node (if it asks).
    pub password: Option<String>,
    /// Database on the node.
    pub database: String,
    /// TLS mode.
    pub tls: ServerTls,
    /// Connector for TLS modes other than disable.
    pub tls_connector: Option<TlsConnector>,
    /// Connect + login timeout.
    pub connect_timeout: Duration,
    /// The node's activity counter (replicated shards), bumped on every read.
    pub activity: Option<Arc<AtomicU64>>,
    /// Salted passwords already computed for SCRAM logins.
    pub scram: Option<Arc<crate::protocol::scram::client::SaltedCache>>,
    /// Replicated shards: cancelled when the node is detached; a read waiting on the node
    /// then fails at once (a frozen node keeps its sockets open and would never answer).
    pub detached: Option<CancellationToken>,
}

impl ConnectParams {
    /// `host:port` for messages.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A logged-in server connection.
pub struct ServerConn {
    stream: Stream,
    /// Bytes read from the node and not yet consumed.
    pub rbuf: BytesMut,
    /// Backend process id (for CancelRequest).
    pub pid: i32,
    /// Backend secret key (for CancelRequest).
    pub secret: i32,
    /// Node address (for CancelRequest and logs).
    pub addr: Arc<str>,
    /// ParameterStatus values the node reported at login.
    pub startup_params: Vec<(String, String)>,
    /// pgproxy statement ids prepared on this connection, with when each was last used.
    pub prepared: PreparedSet,
    /// Statement id currently held as the unnamed statement, if known.
    pub unnamed: Option<u64>,
    /// Session settings applied on top of the login defaults (name → value).
    pub settings: BTreeMap<String, String>,
    /// When the connection was opened.
    pub created: Instant,
    /// When it was last returned to the pool.
    pub last_used: Instant,
    /// The client (pgproxy's BackendKeyData pid) whose statements ran on it last, 0 for none:
    /// the session's sequence state (currval/lastval) is that client's.
    pub last_client: i32,
    /// The node's activity counter (see `ConnectParams::activity`).
    activity: Option<Arc<AtomicU64>>,
    /// See `ConnectParams::detached`.
    detached: Option<CancellationToken>,
}

impl ServerConn {
    /// Connects, negotiates TLS if configured, logs in, and reads up to the first ReadyForQuery.
    pub async fn connect(p: &ConnectParams) -> Result<ServerConn, BackendError> {
        match tokio::time::timeout(p.connect_timeout, Self::connect_inner(p)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Connect {
                addr: p.addr(),
                message: format!("timed out after {} ms", p.connect_timeout.as_millis()),
            }),
        }
    }

    async fn connect_inner(p: &ConnectParams) -> Result<ServerConn, BackendError> {
        let addr = p.addr();
        let conn_err = |e: std::io::Error| BackendError::Connect {
            addr: addr.clone(),
            message: e.to_string(),
        };
        let tcp = TcpStream::connect((p.host.as_str(), p.port))
            .await
            .map_err(conn_err)?;
        let _ = tcp.set_nodelay(true);
        let mut stream = Stream::Plain(tcp);
        if p.tls != ServerTls::Disable {
            stream = negotiate_tls(stream, p).await?;
        }
        let mut conn = ServerConn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            pid: 0,
            secret: 0,
            addr: Arc::from(addr.as_str()),
            startup_params: Vec::new(),
            prepared: PreparedSet::default(),
            unnamed: None,
            settings: BTreeMap::new(),
            created: Instant::now(),
            last_used: Instant::now(),
            last_client: 0,
            activity: p.activity.clone(),
            detached: p.detached.clone(),
        };
        conn.send_startup(p).await?;
        auth::login(&mut conn, p).await?;
        conn.read_until_ready(p).await?;
        Ok(conn)
    }

    async fn send_startup(&mut self, p: &ConnectParams) -> Result<(), BackendError> {
        let mut b = BytesMut::with_capacity(128);
        b.put_i32(0);
        b.put_i32(PROTOCOL_3_0);
        // No application_name: clients must see the same defaults as on a direct connection.
        for (k, v) in [("user", p.user.as_str()), ("database", p.database.as_str())] {
            b.put_slice(k.as_bytes());
            b.put_u8(0);
            b.put_slice(v.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
        let len = b.len() as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        self.write_all(&b).await
    }

    /// After AuthenticationOk: collect ParameterStatus and BackendKeyData until ReadyForQuery.
    async fn read_until_ready(&mut self, p: &ConnectParams) -> Result<(), BackendError> {
        loop {
            let f = self.read_frame().await?;
            match f.tag() {
                be::PARAMETER_STATUS => {
                    if let Some((k, v)) = message::parameter_status(f.body()) {
                        self.startup_params.push((k.to_string(), v.to_string()));
                    }
                }
                be::BACKEND_KEY_DATA => {
                    if let Some((pid, secret)) = message::backend_key_data(f.body()) {
                        self.pid = pid;
                        self.secret = secret;
                    }
                }
                be::READY_FOR_QUERY => return Ok(()),
                be::ERROR_RESPONSE => return Err(auth::login_error(p, f.body())),
                be::NOTICE_RESPONSE | be::NEGOTIATE_PROTOCOL_VERSION => {}
                t => {
                    return Err(BackendError::Io(format!(
                        "unexpected message '{}' during login",
                        t as char
                    )))
                }
            }
        }
    }

    /// Reads one complete frame, waiting for more bytes as needed.
    pub async fn read_frame(&mut self) -> Result<Frame, BackendError> {
        loop {
            match frame::decode(&mut self.rbuf, MAX_SERVER_MESSAGE) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(BackendError::Io(e.to_string())),
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into `rbuf`. An orderly close is an error: a node never closes first
    /// while we wait for an answer.
    pub async fn fill(&mut self) -> Result<usize, BackendError> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        let read = match &self.detached {
            None => self.stream.read_buf(&mut self.rbuf).await,
            Some(t) => tokio::select! {
                biased;
                r = self.stream.read_buf(&mut self.rbuf) => r,
                _ = t.cancelled() => {
                    return Err(BackendError::Io("the node was detached".into()))
                }
            },
        };
        match read {
            Ok(0) => Err(BackendError::Io("server closed the connection".into())),
            Ok(n) => {
                if let Some(a) = &self.activity {
                    a.fetch_add(1, Ordering::Relaxed);
                }
                Ok(n)
            }
            Err(e) => Err(BackendError::Io(e.to_string())),
        }
    }

    /// Writes all bytes.
    pub async fn write_all(&mut self, b: &[u8]) -> Result<(), BackendError> {
        self.stream
            .write_all(b)
            .await
            .map_err(|e| BackendError::Io(e.to_string()))
    }

    /// Runs an internal simple query. Returns its text-format rows and the ParameterStatus
    /// messages it caused; the first ErrorResponse becomes an error, and so does a connection
    /// left inside a transaction. Used for resets, settings replay and state checks, never for
    /// client queries.
    pub async fn run_internal(&mut self, sql: &str) -> Result<InternalResult, BackendError> {
        let r = self.exchange(sql).await?;
        if let Some(e) = &r.error {
            let fields = message::error_fields(e.body());
            let m = fields
                .iter()
                .find(|(c, _)| *c == b'M')
                .map(|(_, m)| m.to_string())
                .unwrap_or_default();
            return Err(BackendError::Io(format!("internal query failed: {m}")));
        }
        if r.status != b'I' {
            return Err(BackendError::Io(format!(
                "internal query left the connection in transaction state '{}'",
                r.status as char
            )));
        }
        Ok(r.result)
    }

    /// Asks the node to parse `sql` as the unnamed statement, without running it: its
    /// ErrorResponse if it does not parse (or names what does not exist). Outside a
    /// transaction only (a failed Parse would abort one).
    pub async fn parse_only(&mut self, sql: &str) -> Result<Option<Frame>, BackendError> {
        self.unnamed = None;
        let mut out = BytesMut::new();
        out.extend_from_slice(message::Parse::encode("", sql, &[0, 0]).raw());
        out.extend_from_slice(message::sync().raw());
        self.write_all(&out).await?;
        let mut error = None;
        loop {
            let f = self.read_frame().await?;
            match f.tag() {
                be::ERROR_RESPONSE if message::is_fatal_error(f.body()) => {
                    return Err(BackendError::Io("the node closed the connection".into()));
                }
                be::ERROR_RESPONSE => {
                    error.get_or_insert(f);
                }
                be::READY_FOR_QUERY => return Ok(error),
                _ => {}
            }
        }
    }

    /// Runs one of pgproxy's own simple queries in whatever transaction state the connection
    /// is in, up to its ReadyForQuery: rows, ParameterStatus, the first ErrorResponse (as the
    /// frame, to pass on to a client) and the final transaction status. A FATAL error is an
    /// `Err` (the node is closing the connection).
    pub async fn exchange(&mut self, sql: &str) -> Result<Exchange, BackendError> {
        // A simple Query drops the unnamed statement.
        self.unnamed = None;
        self.write_all(message::query(sql).raw()).await?;
        let mut out = Exchange {
            result: InternalResult::default(),
            error: None,
            status: b'I',
            tag: None,
        };
        loop {
            let f = self.read_frame().await?;
            match f.tag() {
                be::DATA_ROW => out.result.rows.push(message::data_row_text(f.body())),
                be::COMMAND_COMPLETE => out.tag = Some(message::command_tag(f.body()).to_string()),
                be::PARAMETER_STATUS => {
                    if let Some((k, v)) = message::parameter_status(f.body()) {
                        out.result.params.push((k.to_string(), v.to_string()));
                    }
                }
                be::READY_FOR_QUERY => {
                    out.status = f.body().first().copied().unwrap_or(b'I');
                    return Ok(out);
                }
                be::ERROR_RESPONSE => {
                    if message::is_fatal_error(f.body()) {
                        return Err(BackendError::Io(format!(
                            "the node terminated the connection: {:?}",
                            message::error_fields(f.body())
                        )));
                    }
                    out.error.get_or_insert(f);
                }
                _ => {}
            }
        }
    }

    /// True if the node closed the connection (or sent something) while it sat idle.
    pub fn is_dead_while_idle(&self) -> bool {
        !self.rbuf.is_empty() || self.stream.is_dead_while_idle()
    }

    /// Forgets every prepared statement (after `DEALLOCATE ALL`).
    pub fn forget_statements(&mut self) {
        self.prepared.clear();
        self.unnamed = None;
    }

    /// Forgets server-side session state after `DISCARD ALL`.
    pub fn forget_session_state(&mut self) {
        self.forget_statements();
        self.settings.clear();
    }

    /// Mutable access to the stream (for the relay's `select!`).
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}

async fn negotiate_tls(mut stream: Stream, p: &ConnectParams) -> Result<Stream, BackendError> {
    let addr = p.addr();
    let io = |e: std::io::Error| BackendError::Connect {
        addr: addr.clone(),
        message: e.to_string(),
    };
    let mut req = BytesMut::with_capacity(8);
    req.put_i32(8);
    req.put_i32(crate::protocol::startup::SSL_REQUEST);
    stream.write_all(&req).await.map_err(io)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.map_err(io)?;
    match (answer[0], p.tls) {
        (b'S', _) => {}
        (b'N', ServerTls::Prefer) => return Ok(stream),
        _ => {
            return Err(BackendError::Connect {
                addr,
                message: "server does not accept TLS but server_tls requires it".into(),
            })
        }
    }
    let connector = p
        .tls_connector
        .clone()
        .ok_or_else(|| BackendError::Connect {
            addr: addr.clone(),
            message: "TLS connector not configured".into(),
        })?;
    let name = rustls::pki_types::ServerName::try_from(p.host.clone()).map_err(|e| {
        BackendError::Connect {
            addr: addr.clone(),
            message: format!("invalid TLS server name: {e}"),
        }
    })?;
    let Stream::Plain(tcp) = stream else {
        return Err(BackendError::Connect {
            addr,
            message: "TLS requested twice".into(),
        });
    };
    let tls = connector.connect(name, tcp).await.map_err(io)?;
    Ok(Stream::ClientTls(Box::new(tls)))
}
