//! Client authentication: SCRAM-SHA-256, md5, trust, as configured per user.
//! <https://www.postgresql.org/docs/current/sasl-authentication.html>

use super::client::ClientConn;
use super::SessionError;
use crate::config::{AuthMethod, User};
use crate::protocol::frame::{read_cstr, read_i32};
use crate::protocol::message::{authentication, fe};
use crate::protocol::scram::{ScramServer, Verifier};
use crate::protocol::{md5, sqlstate, ClientError};
use parking_lot::Mutex;
use std::collections::HashMap;

/// Why a client was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password or failed proof.
    #[error("password authentication failed for user \"{0}\"")]
    BadPassword(String),
    /// The client broke the exchange.
    #[error("authentication protocol violation: {0}")]
    Protocol(String),
    /// Session-level failure (client gone, …).
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl ClientError for AuthError {
    fn sqlstate(&self) -> &'static str {
        match self {
            AuthError::BadPassword(_) => sqlstate::INVALID_PASSWORD,
            AuthError::Protocol(_) => sqlstate::PROTOCOL_VIOLATION,
            AuthError::Session(e) => e.sqlstate(),
        }
    }
    fn is_fatal(&self) -> bool {
        true
    }
}

/// SCRAM verifiers derived from plaintext passwords, computed once per (user, password).
#[derive(Default)]
pub struct VerifierCache {
    map: Mutex<HashMap<(String, String), Verifier>>,
}

impl VerifierCache {
    fn get(&self, user: &str, password: &str) -> Verifier {
        let key = (user.to_string(), password.to_string());
        if let Some(v) = self.map.lock().get(&key) {
            return v.clone();
        }
        let v = Verifier::generate(password);
        self.map.lock().insert(key, v.clone());
        v
    }
}

/// Runs the configured exchange with the client. On success the caller sends AuthenticationOk.
pub async fn authenticate(
    client: &mut ClientConn,
    user: &User,
    method: AuthMethod,
    cache: &VerifierCache,
) -> Result<(), AuthError> {
    match method {
        AuthMethod::Trust => Ok(()),
        AuthMethod::Md5 => md5_exchange(client, user).await,
        AuthMethod::ScramSha256 => scram_exchange(client, user, cache).await,
    }
}

async fn read_password_message(client: &mut ClientConn) -> Result<bytes::Bytes, AuthError> {
    let f = client.read_frame().await?;
    if f.tag() != fe::PASSWORD {
        return Err(AuthError::Protocol(format!(
            "expected a password message, got message type '{}'",
            f.tag() as char
        )));
    }
    Ok(f.body_bytes())
}

async fn md5_exchange(client: &mut ClientConn, user: &User) -> Result<(), AuthError> {
    let salt: [u8; 4] = rand::random();
    client.write_all(authentication(5, &salt).raw()).await?;
    let body = read_password_message(client).await?;
    let mut b = &body[..];
    let response =
        read_cstr(&mut b).ok_or_else(|| AuthError::Protocol("malformed password".into()))?;
    let stored = user.password.as_deref().unwrap_or("");
    if !stored.is_empty() && md5::verify(stored, &user.name, salt, response) {
        Ok(())
    } else {
        Err(AuthError::BadPassword(user.name.clone()))
    }
}

async fn scram_exchange(
    client: &mut ClientConn,
    user: &User,
    cache: &VerifierCache,
) -> Result<(), AuthError> {
    let stored = user.password.as_deref().unwrap_or("");
    let verifier = match Verifier::parse(stored) {
        Some(v) => v,
        None => cache.get(&user.name, stored),
    };
    let mut server = ScramServer::new(verifier);
    client
        .write_all(authentication(10, b"SCRAM-SHA-256\0\0").raw())
        .await?;
    let body = read_password_message(client).await?;
    let mut b = &body[..];
    let mechanism = read_cstr(&mut b)
        .ok_or_else(|| AuthError::Protocol("malformed SASLInitialResponse".into()))?;
    if mechanism != "SCRAM-SHA-256" {
        return Err(AuthError::Protocol(format!(
            "client selected SASL mechanism \"{mechanism}\"; pgproxy supports SCRAM-SHA-256 only"
        )));
    }
    let len = read_i32(&mut b)
        .ok_or_else(|| AuthError::Protocol("malformed SASLInitialResponse".into()))?;
    if len < 0 || len as usize != b.len() {
        return Err(AuthError::Protocol(
            "SASLInitialResponse length mismatch".into(),
        ));
    }
    let first = server
        .client_first(b)
        .map_err(|e| AuthError::Protocol(e.to_string()))?;
    client
        .write_all(authentication(11, first.as_bytes()).raw())
        .await?;
    let body = read_password_message(client).await?;
    let fin = server.client_final(&body).map_err(|e| match e {
        crate::protocol::scram::ScramError::InvalidProof => {
            AuthError::BadPassword(user.name.clone())
        }
        other => AuthError::Protocol(other.to_string()),
    })?;
    client
        .write_all(authentication(12, fin.as_bytes()).raw())
        .await?;
    Ok(())
}
