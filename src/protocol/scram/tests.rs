//! Tests of the SCRAM-SHA-256 server against postgres-protocol's client and PostgreSQL verifiers.

use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// `ALTER ROLE alice PASSWORD 'secret'` on PostgreSQL 15, read back from `pg_authid`.
const PG15_SECRET: &str = "SCRAM-SHA-256$4096:o6owG7An7YCe+C96zRooiQ==$yvKyvpvADLOWvuNP/zX0dXlXPX1rrSATSeO7o1itaUU=:+OggruqpgDc79O4j3sMIzK54Ugd+MZKAjBRhsaszFvk=";
/// The same for password `pässwörd` (NFC, as typed): raw bytes agree with SASLprep here.
const PG15_UMLAUT: &str = "SCRAM-SHA-256$4096:n+/yOOjZVi2Uu+tgX8ydRw==$bqXOQddK+nqtG9GkYcvVClIYBzWH/xH206e9RR1ccg8=:dM9B/cY2beuWfn3lC7E5zJXR8KMm+QX/d6AdjCOefWU=";

fn verifier(s: &str) -> Verifier {
    Verifier::parse(s).expect("test verifier parses")
}

/// Runs a whole exchange with the postgres-protocol client; Ok if both sides accept.
fn exchange(v: Verifier, password: &str, cb: ChannelBinding) -> Result<(), String> {
    let mut client = ScramSha256::new(password.as_bytes(), cb);
    let mut server = ScramServer::new(v);
    let first = server
        .client_first(client.message())
        .map_err(|e| e.to_string())?;
    client.update(first.as_bytes()).map_err(|e| e.to_string())?;
    let fin = server
        .client_final(client.message())
        .map_err(|e| e.to_string())?;
    assert!(server.is_done());
    client.finish(fin.as_bytes()).map_err(|e| e.to_string())
}

#[test]
fn exchanges_with_postgres_protocol_client() {
    let cases: &[(&str, Verifier, &str, bool)] = &[
        (
            "pg15 verifier, right password",
            verifier(PG15_SECRET),
            "secret",
            true,
        ),
        (
            "pg15 verifier, wrong password",
            verifier(PG15_SECRET),
            "Secret",
            false,
        ),
        (
            "pg15 umlaut verifier",
            verifier(PG15_UMLAUT),
            "pässwörd",
            true,
        ),
        (
            "generated, right",
            Verifier::generate("hunter2"),
            "hunter2",
            true,
        ),
        (
            "generated, wrong",
            Verifier::generate("hunter2"),
            "hunter3",
            false,
        ),
        ("generated, empty", Verifier::generate(""), "", true),
    ];
    for (name, v, password, ok) in cases {
        for cb in [ChannelBinding::unsupported(), ChannelBinding::unrequested()] {
            let got = exchange(v.clone(), password, cb);
            assert_eq!(got.is_ok(), *ok, "{name}: {got:?}");
            if !ok {
                assert_eq!(got, Err(ScramError::InvalidProof.to_string()), "{name}");
            }
        }
    }
}

#[test]
fn rejects_channel_binding_request() {
    let client = ScramSha256::new(b"secret", ChannelBinding::tls_server_end_point(vec![1; 32]));
    let mut server = ScramServer::new(verifier(PG15_SECRET));
    assert_eq!(
        server.client_first(client.message()),
        Err(ScramError::ChannelBindingUnsupported)
    );
}

#[test]
fn from_password_matches_postgres() {
    for (pg, password) in [(PG15_SECRET, "secret"), (PG15_UMLAUT, "pässwörd")] {
        let v = verifier(pg);
        let ours = Verifier::from_password(password, &v.salt, v.iterations);
        assert_eq!(ours, v, "{password}");
        assert_eq!(ours.to_string(), pg);
    }
    // postgres-protocol builds the same format.
    let theirs = verifier(&postgres_protocol::password::scram_sha_256(b"secret"));
    assert_eq!(
        Verifier::from_password("secret", &theirs.salt, theirs.iterations),
        theirs
    );
}

#[test]
fn display_round_trips() {
    for v in [verifier(PG15_SECRET), Verifier::generate("x")] {
        assert_eq!(Verifier::parse(&v.to_string()), Some(v.clone()));
    }
    let g = Verifier::generate("x");
    assert_eq!((g.salt.len(), g.iterations), (16, 4096));
    assert!(!format!("{g:?}").contains(&B64.encode(g.stored_key)));
}

#[test]
fn parse_rejects_malformed_verifiers() {
    let good_key = "yvKyvpvADLOWvuNP/zX0dXlXPX1rrSATSeO7o1itaUU=";
    let cases = [
        "",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1$4096:c2FsdA==$a:b",
        "SCRAM-SHA-256$4096:c2FsdA==",
        "SCRAM-SHA-256$0:c2FsdA==$K:K",
        "SCRAM-SHA-256$x:c2FsdA==$K:K",
        "SCRAM-SHA-256$4096:$K:K",
        "SCRAM-SHA-256$4096:!!$K:K",
        "SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:c2FsdA==",
        "md5abc",
    ];
    for c in cases {
        let c = c.replace('K', good_key);
        assert_eq!(Verifier::parse(&c), None, "{c}");
    }
}

#[test]
fn malformed_client_first_gives_errors() {
    use ScramError::*;
    let cases: &[(&[u8], ScramError)] = &[
        (b"", Malformed("unexpected channel-binding flag")),
        (b"x,,n=,r=abc", Malformed("unexpected channel-binding flag")),
        (b"p=tls-unique,,n=,r=abc", ChannelBindingUnsupported),
        (b"n", Malformed("comma expected after channel-binding flag")),
        (b"n,a=bob,n=,r=abc", AuthzidUnsupported),
        (b"n,x", Malformed("unexpected attribute in gs2 header")),
        (b"n,,", Malformed("user name (n=) expected")),
        (
            b"n,,m=ext,n=,r=abc",
            Malformed("mandatory extensions (m=) are not supported"),
        ),
        (b"n,,n=bob", Malformed("nonce (r=) expected")),
        (
            b"n,,n=bob,r=",
            Malformed("nonce (r=) is empty or not printable"),
        ),
        (
            b"n,,n=bob,r=a b",
            Malformed("nonce (r=) is empty or not printable"),
        ),
        (
            b"n,,n=bob,r=abc,junk",
            Malformed("malformed extension attribute"),
        ),
        (b"n,,n=\xff,r=abc", Malformed("not UTF-8")),
    ];
    for (msg, want) in cases {
        let mut s = ScramServer::new(verifier(PG15_SECRET));
        assert_eq!(s.client_first(msg).as_ref(), Err(want), "{msg:?}");
        assert!(s.is_done());
        assert!(matches!(
            s.client_final(b"c=biws,r=x,p=x"),
            Err(OutOfOrder(_))
        ));
    }
    let mut s = ScramServer::new(verifier(PG15_SECRET));
    assert!(s.client_first(b"y,,n=ignored,r=abc,x=ext").is_ok());
}

#[test]
fn malformed_client_final_gives_errors() {
    use ScramError::*;
    let proof = B64.encode([0u8; 32]);
    let cases: Vec<(String, ScramError)> = vec![
        ("".into(), Malformed("proof (p=) expected at the end")),
        (
            format!("r=cs,c=biws,p={proof}"),
            Malformed("channel binding (c=) expected"),
        ),
        (
            format!("c=biws,p={proof}"),
            Malformed("nonce (r=) expected"),
        ),
        (
            format!("c=biws,r=cs,zz,p={proof}"),
            Malformed("malformed attribute in client-final-message"),
        ),
        (
            format!("c=!!,r=cs,p={proof}"),
            Malformed("invalid base64 in channel binding (c=)"),
        ),
        (
            format!("c=eSws,r=cs,p={proof}"),
            Malformed("channel binding data (c=) does not match the gs2 header"),
        ),
        (format!("c=biws,r=cX,p={proof}"), NonceMismatch),
        (
            "c=biws,r=cs,p=!!".into(),
            Malformed("invalid base64 in proof (p=)"),
        ),
        (
            "c=biws,r=cs,p=AAAA".into(),
            Malformed("proof (p=) is not 32 bytes"),
        ),
        (format!("c=biws,r=cs,p={proof}"), InvalidProof),
    ];
    for (msg, want) in cases {
        let mut s = ScramServer::with_nonce(verifier(PG15_SECRET), "s".into());
        assert_eq!(
            s.client_first(b"n,,n=,r=c"),
            Ok("r=cs,s=o6owG7An7YCe+C96zRooiQ==,i=4096".into())
        );
        assert_eq!(s.client_final(msg.as_bytes()), Err(want), "{msg}");
        assert!(s.is_done());
        assert!(matches!(s.client_first(b"n,,n=,r=c"), Err(OutOfOrder(_))));
    }
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    let samples: &[&[u8]] = &[
        b",,,,",
        b"n,,n=,r=,",
        b"y,,n=,r=\x00",
        b"\xff\xfe",
        b"c=,r=,p=",
    ];
    for a in samples {
        for b in samples {
            let mut s = ScramServer::new(verifier(PG15_SECRET));
            let _ = s.client_first(a);
            let _ = s.client_final(b);
        }
    }
}

#[test]
fn constant_time_eq_compares() {
    let cases: &[(&[u8], &[u8], bool)] = &[
        (b"", b"", true),
        (b"abc", b"abc", true),
        (b"abc", b"abd", false),
        (b"abc", b"ab", false),
    ];
    for (a, b, want) in cases {
        assert_eq!(constant_time_eq(a, b), *want, "{a:?} {b:?}");
    }
}
