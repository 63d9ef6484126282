//! Client side of SCRAM-SHA-256, for pgproxy logging in to its nodes.
//!
//! The expensive step is PBKDF2 (4096 rounds of HMAC by default): a node keeps one salt per
//! role, so the salted password is the same at every login, and [`SaltedCache`] keeps it.
//! Without it every new server connection burned a few milliseconds of the (single) runtime
//! thread in a release build and tens of milliseconds in a debug one, long enough, when a pool
//! filled at once, to delay every session and make health checks time out.

use super::{hmac, ScramError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Password, salt and iteration count.
type SaltKey = (String, Vec<u8>, u32);

/// Salted passwords already computed, by (password, salt, iterations).
#[derive(Default)]
pub struct SaltedCache {
    map: Mutex<HashMap<SaltKey, [u8; 32]>>,
}

/// Entries kept at most (distinct users x nodes; a node that changes its salt adds one).
const MAX_CACHED: usize = 1024;

impl SaltedCache {
    fn salted(&self, password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
        let key = (password.to_string(), salt.to_vec(), iterations);
        if let Some(s) = self.map.lock().get(&key) {
            return *s;
        }
        let s = salted_password(password, salt, iterations);
        let mut map = self.map.lock();
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert(key, s);
        s
    }
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

/// One login's exchange.
pub struct ScramClient {
    password: String,
    client_nonce: String,
    /// The server signature to expect in server-final-message, once computed.
    expected_server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// Starts an exchange; returns it and client-first-message.
    pub fn new(password: &str) -> (ScramClient, String) {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let client_nonce = B64.encode(raw);
        let first = format!("n,,n=,r={client_nonce}");
        let c = ScramClient {
            password: password.to_string(),
            client_nonce,
            expected_server_signature: None,
        };
        (c, first)
    }

    /// Takes server-first-message; returns client-final-message.
    pub fn server_first(
        &mut self,
        msg: &[u8],
        cache: Option<&SaltedCache>,
    ) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = msg.split(',');
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("server nonce"))?;
        let salt = parts
            .next()
            .and_then(|p| p.strip_prefix("s="))
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed("salt"))?;
        let iterations: u32 = parts
            .next()
            .and_then(|p| p.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .filter(|&i| i > 0)
            .ok_or(ScramError::Malformed("iteration count"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salted = match cache {
            Some(c) => c.salted(&self.password, &salt, iterations),
            None => salted_password(&self.password, &salt, iterations),
        };
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r={},{msg},{without_proof}", self.client_nonce);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks server-final-message (the server proves it knew the password too).
    pub fn server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let expected = self
            .expected_server_signature
            .ok_or(ScramError::OutOfOrder("server-final before server-first"))?;
        let got = msg
            .split(',')
            .next()
            .and_then(|p| p.strip_prefix("v="))
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("server signature"))?;
        if got != expected {
            return Err(ScramError::InvalidProof);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ScramServer, Verifier};
    use super::*;

    /// A full exchange against pgproxy's own server side (itself checked against PostgreSQL's
    /// verifiers), with and without the cache, right and wrong passwords.
    #[test]
    fn logs_in_against_a_scram_server() {
        let cache = SaltedCache::default();
        let verifier = Verifier::from_password("secret", b"0123456789abcdef", 4096);
        for (password, ok) in [("secret", true), ("secret", true), ("wrong", false)] {
            for cache in [Some(&cache), None] {
                let mut server = ScramServer::new(verifier.clone());
                let (mut client, first) = ScramClient::new(password);
                let server_first = server.client_first(first.as_bytes()).expect("first");
                let fin = client
                    .server_first(server_first.as_bytes(), cache)
                    .expect("client-final");
                match server.client_final(fin.as_bytes()) {
                    Ok(server_final) => {
                        assert!(ok, "{password} accepted");
                        client
                            .server_final(server_final.as_bytes())
                            .expect("server signature");
                    }
                    Err(e) => {
                        assert!(!ok, "{password} refused: {e}");
                        assert_eq!(e, ScramError::InvalidProof);
                    }
                }
            }
        }
        assert_eq!(cache.map.lock().len(), 2, "one entry per password");
        let (mut client, _) = ScramClient::new("secret");
        let bad_nonce = "r=someone-else,s=MDEyMw==,i=4096";
        assert_eq!(
            client.server_first(bad_nonce.as_bytes(), None),
            Err(ScramError::NonceMismatch)
        );
        assert!(client.server_final(b"v=AAAA").is_err());
    }
}
