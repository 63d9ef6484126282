//! rustls configuration: the acceptor for client TLS and the connector for node TLS.

use std::sync::Arc;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// TLS setup failures (bad or unreadable certificate files).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// File path.
        path: String,
        /// OS error.
        message: String,
    },
    /// The file holds no usable certificate or key.
    #[error("{0}")]
    Invalid(String),
}

fn read_pem(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Io {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Builds the acceptor offered to clients that send SSLRequest.
pub fn server_acceptor(cert_file: &str, key_file: &str) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read_pem(cert_file)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("{cert_file}: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{cert_file}: no certificate found"
        )));
    }
    let key = rustls_pemfile::private_key(&mut &read_pem(key_file)?[..])
        .map_err(|e| TlsError::Invalid(format!("{key_file}: {e}")))?
        .ok_or_else(|| TlsError::Invalid(format!("{key_file}: no private key found")))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Invalid(format!("{cert_file}: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Builds the connector used towards nodes. With `ca_file`, certificates are verified against it
/// (verify-full); without, any certificate is accepted (prefer/require, as libpq does).
pub fn client_connector(ca_file: Option<&str>) -> Result<TlsConnector, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut &read_pem(path)?[..]) {
                let cert = cert.map_err(|e| TlsError::Invalid(format!("{path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Invalid(format!("{path}: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts any server certificate (libpq's sslmode=require semantics) but still checks the
/// handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
