//! The untagged packets a client may send before authentication: StartupMessage, SSLRequest,
//! GSSENCRequest and CancelRequest.
//! <https://www.postgresql.org/docs/current/protocol-message-formats.html#PROTOCOL-MESSAGE-FORMATS-STARTUPMESSAGE>

use super::frame::{read_cstr, read_i32};

/// Protocol version 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;
/// SSLRequest code.
pub const SSL_REQUEST: i32 = 80_877_103;
/// GSSENCRequest code.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// CancelRequest code.
pub const CANCEL_REQUEST: i32 = 80_877_102;

/// A decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// StartupMessage with protocol 3.x and its parameters, in order.
    Startup {
        /// Minor protocol version requested (0 for 3.0).
        minor: i32,
        /// Parameters (user, database, application_name, options, …).
        params: Vec<(String, String)>,
    },
    /// SSLRequest.
    SslRequest,
    /// GSSENCRequest.
    GssEncRequest,
    /// CancelRequest for a process id and secret key.
    Cancel {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        secret: i32,
    },
}

/// Why a startup packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartupError {
    /// Body too short or a string without NUL / not UTF-8.
    #[error("malformed startup packet")]
    Malformed,
    /// A protocol major version other than 3.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocol {
        /// Major version.
        major: i32,
        /// Minor version.
        minor: i32,
    },
}

/// Parses the body (after the length) of an untagged startup-phase packet.
pub fn parse(body: &[u8]) -> Result<StartupPacket, StartupError> {
    let mut b = body;
    let code = read_i32(&mut b).ok_or(StartupError::Malformed)?;
    match code {
        SSL_REQUEST => return Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => return Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            let pid = read_i32(&mut b).ok_or(StartupError::Malformed)?;
            let secret = read_i32(&mut b).ok_or(StartupError::Malformed)?;
            return Ok(StartupPacket::Cancel { pid, secret });
        }
        _ => {}
    }
    let (major, minor) = (code >> 16, code & 0xffff);
    if major != 3 {
        return Err(StartupError::UnsupportedProtocol { major, minor });
    }
    let mut params = Vec::new();
    loop {
        match b.first() {
            None => return Err(StartupError::Malformed),
            Some(0) => break,
            Some(_) => {}
        }
        let k = read_cstr(&mut b).ok_or(StartupError::Malformed)?;
        let v = read_cstr(&mut b).ok_or(StartupError::Malformed)?;
        params.push((k.to_string(), v.to_string()));
    }
    Ok(StartupPacket::Startup { minor, params })
}

/// Splits a libpq `options` value (`-c name=value --name=value`, backslash escapes) into settings.
pub fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let kv = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("-c").map(str::to_string)
        };
        if let Some(kv) = kv {
            if let Some((k, v)) = kv.split_once('=') {
                out.push((k.replace('-', "_"), v.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut v = code.to_be_bytes().to_vec();
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn startup_params() {
        let b = body(PROTOCOL_3_0, b"user\0app\0database\0db\0\0");
        let p = parse(&b).expect("valid");
        assert_eq!(
            p,
            StartupPacket::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "app".into()),
                    ("database".into(), "db".into())
                ]
            }
        );
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            parse(&body(SSL_REQUEST, b"")),
            Ok(StartupPacket::SslRequest)
        );
        assert_eq!(
            parse(&body(GSSENC_REQUEST, b"")),
            Ok(StartupPacket::GssEncRequest)
        );
        let mut rest = 7i32.to_be_bytes().to_vec();
        rest.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse(&body(CANCEL_REQUEST, &rest)),
            Ok(StartupPacket::Cancel { pid: 7, secret: 9 })
        );
    }

    #[test]
    fn malformed_startups() {
        assert_eq!(parse(&[0, 3]), Err(StartupError::Malformed));
        assert_eq!(
            parse(&body(PROTOCOL_3_0, b"user\0app")),
            Err(StartupError::Malformed)
        );
        assert_eq!(
            parse(&body(PROTOCOL_3_0, b"user\0app\0")),
            Err(StartupError::Malformed)
        );
        assert!(matches!(
            parse(&body(2 << 16, b"\0")),
            Err(StartupError::UnsupportedProtocol { major: 2, .. })
        ));
        assert_eq!(
            parse(&body(CANCEL_REQUEST, &[0, 0])),
            Err(StartupError::Malformed)
        );
    }

    #[test]
    fn options_parsing() {
        let o =
            parse_options("-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB -c x=a\\ b");
        assert_eq!(
            o,
            vec![
                ("search_path".into(), "a,b".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "64MB".into()),
                ("x".into(), "a b".into()),
            ]
        );
    }
}
