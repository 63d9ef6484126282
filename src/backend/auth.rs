//! Logging in to a node: cleartext, md5 and SCRAM-SHA-256 (client side in protocol::scram).

use super::conn::{ConnectParams, ServerConn};
use super::BackendError;
use crate::protocol::frame::Frame;
use crate::protocol::message::{self, be, fe};
use crate::protocol::scram::client::ScramClient;
use crate::protocol::scram::MECHANISM as SCRAM_SHA_256;
use bytes::{BufMut, BytesMut};

/// Runs the authentication exchange up to AuthenticationOk.
pub(super) async fn login(conn: &mut ServerConn, p: &ConnectParams) -> Result<(), BackendError> {
    let mut scram: Option<ScramClient> = None;
    loop {
        let f = conn.read_frame().await?;
        match f.tag() {
            be::AUTHENTICATION => {}
            be::ERROR_RESPONSE => return Err(login_error(p, f.body())),
            be::NOTICE_RESPONSE => continue,
            t => {
                return Err(BackendError::Io(format!(
                    "unexpected message '{}' during authentication",
                    t as char
                )))
            }
        }
        let body = f.body();
        if body.len() < 4 {
            return Err(BackendError::Io("short authentication message".into()));
        }
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let data = &body[4..];
        match code {
            0 => return Ok(()),
            3 => {
                let pw = password(p)?;
                conn.write_all(password_message(pw.as_bytes()).raw())
                    .await?;
            }
            5 => {
                let pw = password(p)?;
                if data.len() < 4 {
                    return Err(BackendError::Io("short md5 salt".into()));
                }
                let salt = [data[0], data[1], data[2], data[3]];
                let hash = postgres_protocol::authentication::md5_hash(
                    p.user.as_bytes(),
                    pw.as_bytes(),
                    salt,
                );
                conn.write_all(password_message(hash.as_bytes()).raw())
                    .await?;
            }
            10 => {
                let offers_scram = data
                    .split(|&b| b == 0)
                    .any(|m| m == SCRAM_SHA_256.as_bytes());
                if !offers_scram {
                    return Err(unsupported(
                        p,
                        "server offers no SASL mechanism pgproxy supports",
                    ));
                }
                let pw = password(p)?;
                let (s, first) = ScramClient::new(pw);
                let msg = first.into_bytes();
                scram = Some(s);
                let mut b = BytesMut::new();
                b.put_slice(SCRAM_SHA_256.as_bytes());
                b.put_u8(0);
                b.put_i32(msg.len() as i32);
                b.put_slice(&msg);
                conn.write_all(Frame::new(fe::PASSWORD, &b).raw()).await?;
            }
            11 => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| BackendError::Io("SASLContinue before SASL".into()))?;
                let fin = s
                    .server_first(data, p.scram.as_deref())
                    .map_err(|e| BackendError::Io(format!("SCRAM: {e}")))?;
                conn.write_all(Frame::new(fe::PASSWORD, fin.as_bytes()).raw())
                    .await?;
            }
            12 => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| BackendError::Io("SASLFinal before SASL".into()))?;
                s.server_final(data).map_err(|e| BackendError::Auth {
                    addr: p.addr(),
                    message: format!("server SCRAM signature invalid: {e}"),
                    code: "28000".into(),
                })?;
            }
            other => {
                return Err(unsupported(
                    p,
                    &format!(
                    "server asks for authentication method {other}, which pgproxy does not support"
                ),
                ))
            }
        }
    }
}

fn password(p: &ConnectParams) -> Result<&str, BackendError> {
    p.password.as_deref().ok_or_else(|| BackendError::Auth {
        addr: p.addr(),
        message: format!(
            "server asks a password for role \"{}\" but none is configured (set server_password)",
            p.user
        ),
        code: "28000".into(),
    })
}

fn unsupported(p: &ConnectParams, m: &str) -> BackendError {
    BackendError::Unsupported {
        addr: p.addr(),
        message: m.into(),
    }
}

fn password_message(pw: &[u8]) -> Frame {
    let mut b = Vec::with_capacity(pw.len() + 1);
    b.extend_from_slice(pw);
    b.push(0);
    Frame::new(fe::PASSWORD, &b)
}

/// Turns a login ErrorResponse into a `BackendError::Auth`.
pub(super) fn login_error(p: &ConnectParams, body: &[u8]) -> BackendError {
    let fields = message::error_fields(body);
    let get = |c: u8| {
        fields
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    BackendError::Auth {
        addr: p.addr(),
        message: get(b'M'),
        code: get(b'C'),
    }
}
