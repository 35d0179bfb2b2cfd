//! TLS for Coffer's listeners (SMTP's STARTTLS, the console's HTTPS): one server configuration
//! from a certificate in the store, TLS 1.2 and 1.3 only.

use std::sync::Arc;

pub use tokio_rustls::TlsAcceptor;

use crate::ArchiveError;
use crate::certs::CertStore;

/// An acceptor for the certificate chain and key in PEM.
pub fn acceptor_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut &cert_pem[..]).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| e.to_string())?
        .ok_or("no private key in the PEM")?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&tokio_rustls::rustls::version::TLS12, &tokio_rustls::rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// An acceptor for the certificate `alias` of the store; `setting` names what asked for it, so
/// the error says what to fix.
pub fn acceptor(certs: &CertStore, alias: &str, setting: &str) -> Result<TlsAcceptor, ArchiveError> {
    let pem = certs.certificate_pem(alias).map_err(|_| {
        ArchiveError::Invalid(format!("{setting} = {alias:?}: no such certificate (`coffer cert list` shows them)"))
    })?;
    acceptor_from_pem(pem.as_bytes(), &certs.private_key_pem(alias)?)
        .map_err(|e| ArchiveError::Invalid(format!("{setting}: certificate {alias:?} cannot be used for TLS: {e}")))
}
