//! MD5 password authentication (legacy), as PostgreSQL does it: the stored hash is
//! `"md5" + hex(md5(password ++ user))` and the client answers a 4-byte salt with
//! `"md5" + hex(md5(hex(md5(password ++ user)) ++ salt))`.
//!
//! Pure: no IO. <https://www.postgresql.org/docs/current/auth-password.html>

use md5::{Digest, Md5};

/// Stored form of a password: `"md5" + hex(md5(password ++ user))`, as in `pg_authid`.
pub fn hash(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex(&h.finalize()))
}

/// The expected PasswordMessage for a stored `md5…` hash and the salt sent in
/// AuthenticationMD5Password: `"md5" + hex(md5(hex_part_of_hash ++ salt))`.
pub fn salted(md5_hash: &str, salt: [u8; 4]) -> String {
    let hex_part = md5_hash.strip_prefix("md5").unwrap_or(md5_hash);
    let mut h = Md5::new();
    h.update(hex_part.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// True if `response` (the client's PasswordMessage text) is right for the stored password,
/// which may be plaintext or an `md5…` hash. Compares in constant time.
pub fn verify(stored: &str, user: &str, salt: [u8; 4], response: &str) -> bool {
    let stored_hash = if is_md5_hash(stored) {
        stored.to_string()
    } else {
        hash(user, stored)
    };
    let expected = salted(&stored_hash, salt);
    super::scram::constant_time_eq(expected.as_bytes(), response.as_bytes())
}

/// True for `md5` followed by 32 hex digits.
pub fn is_md5_hash(s: &str) -> bool {
    s.len() == 35 && s.starts_with("md5") && s[3..].bytes().all(|c| c.is_ascii_hexdigit())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::md5_hash;

    /// `ALTER ROLE bob PASSWORD 'secret'` with `password_encryption = md5` on PostgreSQL 15.
    const PG15_BOB_SECRET: &str = "md521f3163f8f86fa10bdefbfbd502a8f06";

    #[test]
    fn hash_matches_postgres() {
        let cases = [
            ("bob", "secret", PG15_BOB_SECRET.to_string()),
            (
                "app",
                "pässwörd",
                postgres_protocol::password::md5("pässwörd".as_bytes(), "app"),
            ),
            ("", "", postgres_protocol::password::md5(b"", "")),
        ];
        for (user, password, want) in cases {
            assert_eq!(hash(user, password), want, "{user}/{password}");
        }
    }

    #[test]
    fn salted_matches_postgres_protocol_client() {
        let cases = [
            ("bob", "secret", [1, 2, 3, 4]),
            ("app", "pässwörd", [0, 0, 0, 0]),
            ("u", "", [0xff, 0x7f, 0x80, 0x01]),
        ];
        for (user, password, salt) in cases {
            let client = md5_hash(user.as_bytes(), password.as_bytes(), salt);
            assert_eq!(salted(&hash(user, password), salt), client, "{user}");
        }
    }

    #[test]
    fn verify_accepts_plaintext_or_hash() {
        let salt = [9, 8, 7, 6];
        let right = md5_hash(b"bob", b"secret", salt);
        let cases: &[(&str, &str, [u8; 4], &str, bool)] = &[
            ("secret", "bob", salt, &right, true),
            (PG15_BOB_SECRET, "bob", salt, &right, true),
            ("secret", "alice", salt, &right, false),
            ("Secret", "bob", salt, &right, false),
            ("secret", "bob", [0; 4], &right, false),
            (PG15_BOB_SECRET, "bob", salt, "", false),
            (PG15_BOB_SECRET, "bob", salt, "md5", false),
            (PG15_BOB_SECRET, "bob", salt, &right.to_uppercase(), false),
        ];
        for (stored, user, salt, response, want) in cases {
            assert_eq!(
                verify(stored, user, *salt, response),
                *want,
                "{stored} {user}"
            );
        }
    }

    #[test]
    fn recognises_md5_hashes() {
        let cases = [
            (PG15_BOB_SECRET, true),
            ("md521f3163f8f86fa10bdefbfbd502a8f0", false),
            ("md521f3163f8f86fa10bdefbfbd502a8f0g", false),
            ("secret", false),
            ("", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_md5_hash(s), want, "{s}");
        }
    }
}
