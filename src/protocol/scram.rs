//! Server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) exactly as PostgreSQL does it (the client
//! side, for logging in to nodes, is in `client`), and the
//! stored verifier format (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`).
//!
//! Pure: the caller reads the SASLInitialResponse / SASLResponse frames, hands the SCRAM payload
//! to [`ScramServer`] and sends back what it returns. No IO, no channel binding: pgproxy advertises
//! only the mechanism `SCRAM-SHA-256`, so a client may send the gs2 header `n,,` or `y,,` but not
//! `p=…`. Like PostgreSQL, the user name in client-first-message is ignored (the startup packet
//! names the user). <https://www.postgresql.org/docs/current/sasl-authentication.html>

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Iterations used by [`Verifier::generate`] (PostgreSQL's `scram_iterations` default).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Mechanism name advertised in AuthenticationSASL.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Random bytes in the server nonce (PostgreSQL's `SCRAM_RAW_NONCE_LEN`).
const SERVER_NONCE_LEN: usize = 18;
/// Salt length used by [`Verifier::generate`] (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
const SALT_LEN: usize = 16;

/// Why a SCRAM exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// A message did not follow the RFC 5802 grammar; the text says which part.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=…`), which pgproxy does not offer.
    #[error("channel binding is not supported; use SCRAM-SHA-256 without channel binding (channel_binding=disable or prefer)")]
    ChannelBindingUnsupported,
    /// The client sent an authorization identity (`a=…`), which PostgreSQL does not support.
    #[error("client uses an authorization identity, which is not supported")]
    AuthzidUnsupported,
    /// The nonce in client-final-message is not the one agreed in the first round.
    #[error("SCRAM nonce does not match")]
    NonceMismatch,
    /// The client proof is wrong: wrong password.
    #[error("password authentication failed")]
    InvalidProof,
    /// A message arrived in the wrong state (e.g. client-final before client-first).
    #[error("unexpected SCRAM message in state {0}")]
    OutOfOrder(&'static str),
}

/// A stored SCRAM-SHA-256 secret, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl fmt::Debug for Verifier {
    // The keys are password-equivalent for impersonating the server: keep them out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Parses PostgreSQL's form `SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>`.
    pub fn parse(s: &str) -> Option<Verifier> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iter.parse().ok().filter(|&i| i > 0)?;
        let salt = B64.decode(salt).ok().filter(|s| !s.is_empty())?;
        let stored_key = B64.decode(stored).ok()?.try_into().ok()?;
        let server_key = B64.decode(server).ok()?.try_into().ok()?;
        Some(Verifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Computes the verifier of a password.
    ///
    /// SASLprep (RFC 4013): an ASCII password is used as is, which is what PostgreSQL does too.
    /// A non-ASCII password is used as its raw UTF-8 bytes without normalization. This matches
    /// PostgreSQL for passwords already in NFKC form without special spaces or mapped-to-nothing
    /// characters (e.g. `pässwörd` typed normally), but not for, say, a password containing
    /// U+00A0 or a ligature: for those, copy the verifier from `pg_authid` instead.
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier with a fresh random 16-byte salt and 4096 iterations.
    pub fn generate(password: &str) -> Verifier {
        let mut salt = [0u8; SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::from_password(password, &salt, DEFAULT_ITERATIONS)
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// Where the exchange stands.
enum State {
    /// Waiting for client-first-message.
    Initial,
    /// server-first-message sent; waiting for client-final-message.
    SentServerFirst {
        /// The gs2 header the client used (`n,,` or `y,,`), echoed in `c=`.
        gs2_header: String,
        /// client-first-message-bare, part of AuthMessage.
        client_first_bare: String,
        /// server-first-message, part of AuthMessage.
        server_first: String,
        /// client nonce + server nonce.
        nonce: String,
    },
    /// Finished, successfully or not; no more messages are accepted.
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Initial => "initial",
            State::SentServerFirst { .. } => "server-first sent",
            State::Done => "done",
        }
    }
}

/// One server-side SCRAM-SHA-256 exchange for one login attempt.
pub struct ScramServer {
    verifier: Verifier,
    server_nonce: String,
    state: State,
}

impl ScramServer {
    /// Starts an exchange against a stored verifier, with a fresh random server nonce.
    pub fn new(verifier: Verifier) -> ScramServer {
        let mut raw = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut raw);
        Self::with_nonce(verifier, B64.encode(raw))
    }

    /// Starts an exchange with a given server nonce (tests need a fixed one).
    fn with_nonce(verifier: Verifier, server_nonce: String) -> ScramServer {
        ScramServer {
            verifier,
            server_nonce,
            state: State::Initial,
        }
    }

    /// True once client_final succeeded or any step failed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes client-first-message (the SASLInitialResponse data) and returns
    /// server-first-message (`r=<nonce>,s=<salt>,i=<iterations>`).
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(ScramError::OutOfOrder(self.state.name()));
        }
        self.state = State::Done; // stays Done on any error below
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (gs2_header, bare) = split_gs2_header(msg)?;
        let client_nonce = parse_client_first_bare(bare)?;
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::SentServerFirst {
            gs2_header: gs2_header.to_string(),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Takes client-final-message (the SASLResponse data), checks channel-binding data, nonce
    /// and proof, and returns server-final-message (`v=<ServerSignature>`) to send in
    /// AuthenticationSASLFinal.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        let State::SentServerFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = state
        else {
            return Err(ScramError::OutOfOrder(state.name()));
        };
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let final_msg = parse_client_final(msg)?;
        let cbind = B64
            .decode(final_msg.channel_binding)
            .map_err(|_| ScramError::Malformed("invalid base64 in channel binding (c=)"))?;
        if cbind != gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding data (c=) does not match the gs2 header",
            ));
        }
        if !constant_time_eq(final_msg.nonce.as_bytes(), nonce.as_bytes()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(final_msg.proof)
            .map_err(|_| ScramError::Malformed("invalid base64 in proof (p=)"))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("proof (p=) is not 32 bytes"));
        }
        let auth_message = format!(
            "{client_first_bare},{server_first},{}",
            final_msg.without_proof
        );
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature.iter())
            .map(|(p, s)| p ^ s)
            .collect();
        let stored_key = Sha256::digest(&client_key);
        if !constant_time_eq(&stored_key, &self.verifier.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Splits `gs2-header client-first-message-bare`; the header is `n,,` or `y,,`.
fn split_gs2_header(msg: &str) -> Result<(&str, &str), ScramError> {
    match msg.as_bytes().first() {
        Some(b'n' | b'y') => {}
        Some(b'p') => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Malformed("unexpected channel-binding flag")),
    }
    if msg.as_bytes().get(1) != Some(&b',') {
        return Err(ScramError::Malformed(
            "comma expected after channel-binding flag",
        ));
    }
    match msg.as_bytes().get(2) {
        Some(b',') => Ok((&msg[..3], &msg[3..])),
        Some(b'a') => Err(ScramError::AuthzidUnsupported),
        _ => Err(ScramError::Malformed("unexpected attribute in gs2 header")),
    }
}

/// Parses `n=<user>,r=<nonce>[,ext…]` and returns the client nonce.
fn parse_client_first_bare(bare: &str) -> Result<&str, ScramError> {
    let mut attrs = bare.split(',');
    match attrs.next() {
        Some(a) if a.starts_with("m=") => {
            return Err(ScramError::Malformed(
                "mandatory extensions (m=) are not supported",
            ))
        }
        Some(a) if a.starts_with("n=") => {} // user name: ignored, as PostgreSQL does
        _ => return Err(ScramError::Malformed("user name (n=) expected")),
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("nonce (r=) expected"))?;
    if nonce.is_empty() || !nonce.bytes().all(is_printable) {
        return Err(ScramError::Malformed(
            "nonce (r=) is empty or not printable",
        ));
    }
    // Any further attributes are extensions, ignored like PostgreSQL does.
    if attrs.any(|a| !is_attribute(a)) {
        return Err(ScramError::Malformed("malformed extension attribute"));
    }
    Ok(nonce)
}

/// The parts of client-final-message.
struct ClientFinal<'a> {
    channel_binding: &'a str,
    nonce: &'a str,
    proof: &'a str,
    /// client-final-message-without-proof, part of AuthMessage.
    without_proof: &'a str,
}

/// Parses `c=<b64>,r=<nonce>[,ext…],p=<b64 proof>`.
fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, ScramError> {
    let (without_proof, proof) = msg
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("proof (p=) expected at the end"))?;
    let mut attrs = without_proof.split(',');
    let channel_binding = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(ScramError::Malformed("channel binding (c=) expected"))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(ScramError::Malformed("nonce (r=) expected"))?;
    if attrs.any(|a| !is_attribute(a)) || proof.contains(',') {
        return Err(ScramError::Malformed(
            "malformed attribute in client-final-message",
        ));
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

/// RFC 5802 `printable`: `%x21-2B / %x2D-7E` (visible ASCII except comma).
fn is_printable(c: u8) -> bool {
    (0x21..=0x7e).contains(&c) && c != b','
}

/// `attr-val`: one ASCII letter, `=`, a value.
fn is_attribute(a: &str) -> bool {
    let b = a.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'='
}

pub mod client;

#[cfg(test)]
mod tests;
