//! rustls configurations, ring provider only (no aws-lc-rs in the tree).

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TrustError;
use crate::peer::{TrustAnchor, chain_from_pem};

/// Whether a server asks clients for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate that chains to the anchor.
    Required,
    /// A certificate is verified if presented (role checks decide later).
    Optional,
    /// No client certificates.
    None,
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// From the PEM texts `ca issue` writes (`cert.pem`, `key.pem`).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, TrustError> {
        let chain = chain_from_pem(cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TrustError::Malformed(format!("key PEM: {e}")))?;
        Ok(Identity { chain, key })
    }
    fn clone_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(anchor: &TrustAnchor) -> Result<RootCertStore, TrustError> {
    let mut r = RootCertStore::empty();
    r.add(anchor.der().clone()).map_err(|e| TrustError::Malformed(format!("trust anchor: {e}")))?;
    Ok(r)
}

fn tls(e: rustls::Error) -> TrustError {
    match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TrustError::Malformed("the private key does not belong to the certificate (key.pem and cert.pem are from different issues)".into())
        }
        e => TrustError::Malformed(format!("TLS configuration: {e}")),
    }
}

/// A server config with ALPN h2 and http/1.1.
pub fn server_config(id: &Identity, anchor: &TrustAnchor, auth: ClientAuth) -> Result<ServerConfig, TrustError> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(tls)?;
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(anchor)?), provider());
            let v = if auth == ClientAuth::Optional { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(v.build().map_err(|e| TrustError::Malformed(e.to_string()))?)
        }
    };
    let mut cfg = builder.with_single_cert(id.chain.clone(), id.clone_key()).map_err(tls)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A client config trusting only the anchor, presenting `id` if given.
pub fn client_config(anchor: &TrustAnchor, id: Option<&Identity>) -> Result<ClientConfig, TrustError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_root_certificates(roots(anchor)?);
    let mut cfg = match id {
        Some(i) => builder.with_client_auth_cert(i.chain.clone(), i.clone_key()).map_err(tls)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
