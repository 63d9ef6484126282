//! Before the relay: SSLRequest/GSSENCRequest, CancelRequest, StartupMessage, authentication,
//! the first server checkout (to report the node's ParameterStatus and apply startup settings),
//! then AuthenticationOk … ReadyForQuery.

use super::auth::{self, AuthError};
use super::client::{frame_error, ClientConn};
use super::relay::Session;
use super::{settings, SessionError, Shared};
use crate::config::PoolMode;
use crate::net::Stream;
use crate::protocol::frame::decode_untagged;
use crate::protocol::message::{
    self, authentication, backend_key_data_msg, parameter_status_msg, ready_for_query,
};
use crate::protocol::startup::{self as sp, StartupPacket};
use crate::protocol::{sqlstate, ClientError};
use bytes::{BufMut, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{debug, info, Span};

/// Largest startup packet accepted (PostgreSQL uses 10000 too).
const MAX_STARTUP_PACKET: usize = 10_000;

/// A refusal during startup with its SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartupRefusal {
    code: &'static str,
    message: String,
    hint: Option<String>,
}

impl ClientError for StartupRefusal {
    fn sqlstate(&self) -> &'static str {
        self.code
    }
    fn is_fatal(&self) -> bool {
        true
    }
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

fn refuse(code: &'static str, message: String, hint: Option<&str>) -> StartupRefusal {
    StartupRefusal {
        code,
        message,
        hint: hint.map(str::to_string),
    }
}

/// Runs the startup phase. `Ok(None)` when the connection ended normally (cancel request,
/// refused login already reported).
pub async fn establish(
    tcp: TcpStream,
    shared: &Arc<Shared>,
) -> Result<Option<Session>, SessionError> {
    let cfg = shared.cluster.config();
    let mut client = ClientConn {
        stream: Stream::Plain(tcp),
        buf: BytesMut::with_capacity(1024),
        max_message: cfg.general.max_message_size,
    };
    let params = loop {
        let body = loop {
            if let Some(b) =
                decode_untagged(&mut client.buf, MAX_STARTUP_PACKET).map_err(frame_error)?
            {
                break b;
            }
            client.fill().await?;
        };
        let packet = match sp::parse(&body) {
            Ok(p) => p,
            Err(e) => {
                let code = match e {
                    sp::StartupError::UnsupportedProtocol { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
                    sp::StartupError::Malformed => sqlstate::PROTOCOL_VIOLATION,
                };
                client.fatal(&refuse(code, e.to_string(), None)).await;
                return Ok(None);
            }
        };
        match packet {
            StartupPacket::SslRequest => {
                if !client.buf.is_empty() {
                    // Bytes after SSLRequest before the handshake: a protocol violation (and a
                    // known injection vector), as PostgreSQL treats it.
                    return Err(SessionError::Protocol(
                        "data received after SSLRequest".into(),
                    ));
                }
                let acceptor = (**shared.tls.load()).clone();
                let Some(acceptor) = acceptor else {
                    client.write_all(b"N").await?;
                    continue;
                };
                client.write_all(b"S").await?;
                let Stream::Plain(tcp) = client.stream else {
                    return Err(SessionError::Protocol("SSLRequest inside TLS".into()));
                };
                let tls = acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| SessionError::ClientIo(format!("TLS handshake failed: {e}")))?;
                client.stream = Stream::ServerTls(Box::new(tls));
            }
            StartupPacket::GssEncRequest => client.write_all(b"N").await?,
            StartupPacket::Cancel { pid, secret } => {
                shared.cancels.cancel(pid, secret).await;
                return Ok(None);
            }
            StartupPacket::Startup { minor, params } => {
                negotiate_version(&mut client, minor, &params).await?;
                break params;
            }
        }
    };
    match login(client, params, shared).await {
        Ok(s) => Ok(Some(s)),
        Err((mut client, e)) => {
            debug!(error = %e, "login refused");
            client.fatal(e.as_ref()).await;
            Ok(None)
        }
    }
}

/// Answers a request for protocol 3.x (x > 0) or `_pq_.` options with NegotiateProtocolVersion.
async fn negotiate_version(
    client: &mut ClientConn,
    minor: i32,
    params: &[(String, String)],
) -> Result<(), SessionError> {
    let unknown: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.as_str())
        .collect();
    if minor == 0 && unknown.is_empty() {
        return Ok(());
    }
    let mut b = BytesMut::new();
    b.put_i32(sp::PROTOCOL_3_0);
    b.put_i32(unknown.len() as i32);
    for k in unknown {
        b.put_slice(k.as_bytes());
        b.put_u8(0);
    }
    let f = crate::protocol::Frame::new(message::be::NEGOTIATE_PROTOCOL_VERSION, &b);
    client.write_all(f.raw()).await
}

type LoginError = (ClientConn, Box<dyn ClientError + Send + Sync>);

async fn login(
    mut client: ClientConn,
    params: Vec<(String, String)>,
    shared: &Arc<Shared>,
) -> Result<Session, LoginError> {
    let cfg = shared.cluster.config();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(user_name) = get("user") else {
        let e = refuse(
            sqlstate::INVALID_AUTHORIZATION,
            "no PostgreSQL user name specified in startup packet".into(),
            None,
        );
        return Err((client, Box::new(e)));
    };
    let db_name = get("database").unwrap_or_else(|| user_name.clone());
    Span::current()
        .record("user", user_name.as_str())
        .record("db", db_name.as_str());
    if get("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
        let e = refuse(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported through pgproxy".into(),
            Some("connect to a node directly for replication"),
        );
        return Err((client, Box::new(e)));
    }
    if shared.is_draining() {
        let e = refuse(
            sqlstate::CANNOT_CONNECT_NOW,
            "pgproxy is shutting down".into(),
            Some("connect again once it has restarted"),
        );
        return Err((client, Box::new(e)));
    }
    if shared.stats.clients.load(Ordering::Relaxed) > cfg.general.max_client_conn {
        let e = refuse(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!(
                "sorry, too many clients already (max_client_conn = {})",
                cfg.general.max_client_conn
            ),
            Some("retry later or raise max_client_conn"),
        );
        return Err((client, Box::new(e)));
    }
    let Some(user) = cfg.user(&user_name).cloned() else {
        let e = refuse(
            sqlstate::INVALID_AUTHORIZATION,
            format!("no such user \"{user_name}\" in pgproxy"),
            Some("add the user under [[users]] in the pgproxy config"),
        );
        return Err((client, Box::new(e)));
    };
    let Some(db) = cfg.database(&db_name) else {
        let e = refuse(
            sqlstate::INVALID_CATALOG_NAME,
            format!("database \"{db_name}\" does not exist"),
            Some("add it under [[databases]] in the pgproxy config"),
        );
        return Err((client, Box::new(e)));
    };
    let method = user.auth(&cfg.general);
    if let Err(e) = auth::authenticate(&mut client, &user, method, &shared.verifiers).await {
        if matches!(e, AuthError::BadPassword(_)) {
            info!(user = %user.name, "password authentication failed");
        }
        return Err((client, Box::new(e)));
    }
    let mode = cfg.pool_mode(&user, &db);
    // A sharded session, like a replicated one, handles requests unit by unit.
    let sharded = cfg.shards.len() > 1;
    let replicated = sharded || cfg.shards.first().is_some_and(|s| s.nodes.len() > 1);
    let client_settings = settings::from_startup(&params);
    let (pool, mut server, main_node) = loop {
        let main_node = shared.cluster.topology.main(0).unwrap_or(0);
        let pool = shared.cluster.main_pool(&user, &db);
        match pool.checkout().await {
            Ok(s) => break (pool, s, main_node),
            Err(crate::pool::PoolError::Backend(e)) if replicated && e.is_connect() => {
                // The main is down: fail over, then try the next one.
                let main = shared.cluster.topology.main(0).unwrap_or(0);
                let detail = e.to_string();
                let gone = shared.cluster.detach(
                    0,
                    main,
                    crate::cluster::DetachCause::ConnectionFailed,
                    &detail,
                ) || shared.cluster.topology.main(0) != Some(main);
                if !gone {
                    return Err((client, Box::new(e)));
                }
            }
            Err(e) => return Err((client, Box::new(e))),
        }
    };
    // Report what the node reports, after the client's startup settings are applied.
    let mut reported: Vec<(String, String)> = server.startup_params.clone();
    let replay = settings::replay_sql(&client_settings, &server.settings);
    if let Some(sql) = replay {
        match server.exchange(&sql).await {
            Ok(r) if r.error.is_none() && r.status == b'I' => {
                server.settings = client_settings.clone();
                for (k, v) in r.result.params {
                    match reported.iter_mut().find(|(n, _)| *n == k) {
                        Some(slot) => slot.1 = v,
                        None => reported.push((k, v)),
                    }
                }
            }
            Ok(r) => {
                // The node refused a setting: its SQLSTATE (22023, 42704, ...) and message.
                let fields = r.error.as_ref().map(|e| message::error_fields(e.body()));
                let field = |k: u8| {
                    fields
                        .iter()
                        .flatten()
                        .find(|(c, _)| *c == k)
                        .map(|(_, v)| v.to_string())
                };
                let code = sqlstate::setting_error(&field(b'C').unwrap_or_default());
                let msg = field(b'M').unwrap_or_else(|| "the node did not accept it".into());
                let e = refuse(code, format!("invalid startup parameter: {msg}"), None);
                return Err((client, Box::new(e)));
            }
            Err(e) => return Err((client, Box::new(e))),
        }
    }
    let (pid, secret, slot) = shared.cancels.register();
    let mut out = BytesMut::with_capacity(512);
    out.put_slice(authentication(0, &[]).raw());
    for (k, v) in &reported {
        out.put_slice(parameter_status_msg(k, v).raw());
    }
    out.put_slice(backend_key_data_msg(pid, secret).raw());
    out.put_slice(ready_for_query(b'I').raw());
    if let Err(e) = client.write_all(&out).await {
        shared.cancels.unregister(pid);
        return Err((client, Box::new(e)));
    }
    let server = if mode == PoolMode::Transaction {
        server.release();
        None
    } else {
        Some(server)
    };
    debug!(?mode, "client logged in");
    let _ = client.stream.flush().await;
    Ok(Session::new(
        client,
        shared.clone(),
        pool,
        server,
        mode,
        client_settings,
        pid,
        slot,
        replicated.then(|| {
            let mut repl = super::replica::Repl::new(0, main_node, user.clone(), db.clone());
            if sharded {
                repl.sharding = Some(Box::new(super::shard::ShardState::new(
                    shared.cluster.shard_map(),
                )));
            }
            Box::new(repl)
        }),
    ))
}
