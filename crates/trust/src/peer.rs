//! Validating certificates: chain to the anchor, validity at `now`, key
//! usage, and Signpost's extension. A [`Peer`] is only built here.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use signpost_schemas::lost::KeyId;
use signpost_schemas::{Name, Timestamp};

use crate::TrustError;
use crate::ext::{Authorization, OID, Role, ScopeEntry};

/// The deployment's trust anchor (the root operator's CA certificate).
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    der: CertificateDer<'static>,
}

impl TrustAnchor {
    /// From the CA certificate's PEM (the first certificate in the text).
    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchor, TrustError> {
        let der = CertificateDer::from_pem_slice(pem).map_err(|e| TrustError::Malformed(format!("CA PEM: {e}")))?;
        TrustAnchor::from_der(der)
    }
    /// From DER.
    pub fn from_der(der: CertificateDer<'static>) -> Result<TrustAnchor, TrustError> {
        webpki::anchor_from_trusted_cert(&der).map_err(|e| TrustError::Malformed(format!("CA certificate: {e:?}")))?;
        Ok(TrustAnchor { der })
    }
    /// The anchor certificate.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }
}

/// What a chain is validated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (or a signer: Signpost leaves carry both usages).
    Server,
    /// A TLS client.
    Client,
}

/// A validated certificate holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    auth: Authorization,
    key_id: KeyId,
    public_key: Vec<u8>,
    not_before: Timestamp,
    not_after: Timestamp,
}

impl Peer {
    /// The holder's role.
    pub fn role(&self) -> Role {
        self.auth.role
    }
    /// The holder's id.
    pub fn id(&self) -> &Name {
        &self.auth.id
    }
    /// The holder's scope.
    pub fn scope(&self) -> &[ScopeEntry] {
        &self.auth.scope
    }
    /// Whether the scope covers a CSI.
    pub fn covers(&self, csi: &signpost_schemas::Csi) -> bool {
        self.auth.covers(csi)
    }
    /// The key id of the leaf's public key.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
    /// The leaf's raw public key (the EC point).
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
    /// The end of the chain's validity: the earliest `notAfter` of its
    /// certificates.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }
    /// Whether every certificate of the chain is valid at `now`.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now <= self.not_after
    }
    /// Requires a role.
    pub fn require(&self, role: Role) -> Result<(), TrustError> {
        if self.auth.role == role {
            Ok(())
        } else {
            Err(TrustError::WrongRole { id: self.auth.id.to_string(), got: self.auth.role.as_str(), want: role.as_str() })
        }
    }
}

/// `sha256-` and the first 16 bytes (hex) of SHA-256 over the raw public
/// key: the id that `sp:signature/@keyId` and `GET /certs/{keyId}` use.
pub fn key_id_of(public_key: &[u8]) -> KeyId {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut s = String::from("sha256-");
    for b in d.as_ref().iter().take(16) {
        s.push_str(&format!("{b:02x}"));
    }
    // Only hex and the fixed prefix: always a valid key id.
    KeyId::parse(&s).unwrap_or_else(|_| unreachable_key_id())
}

fn unreachable_key_id() -> KeyId {
    match KeyId::parse("sha256-invalid") {
        Ok(k) => k,
        Err(_) => std::process::abort(),
    }
}

/// Reads every certificate from PEM text, leaf first.
pub fn chain_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let v: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TrustError::Malformed(format!("certificate PEM: {e}")))?;
    if v.is_empty() {
        return Err(TrustError::Malformed("no certificate in PEM".into()));
    }
    Ok(v)
}

fn from_unix(t: UnixTime) -> Timestamp {
    Timestamp::from_secs(t.as_secs())
}

/// webpki's error in words an operator can act on (its `Display` is its
/// `Debug`: `CertExpired { time: UnixTime(…) }`).
pub(crate) fn words(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { time, not_after } => {
            format!("the certificate expired at {} (it is now {}); issue a new one", from_unix(*not_after), from_unix(*time))
        }
        webpki::Error::CertNotValidYet { time, not_before } => {
            format!("the certificate is not valid before {} (it is now {}); check the clock", from_unix(*not_before), from_unix(*time))
        }
        webpki::Error::UnknownIssuer => "the certificate was not issued by this deployment's CA (unknown issuer)".into(),
        webpki::Error::InvalidSignatureForPublicKey => "the certificate's signature does not verify with its issuer's key".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => "the certificate is not for this use (extended key usage: server or client)".into(),
        other => format!("{other:?}"),
    }
}

fn unix(t: Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_millis(t.as_millis()))
}

/// Validates `chain` (leaf first, then intermediates; the anchor may be
/// included and is ignored) at `now`, and reads Signpost's extension.
pub fn validate(
    anchor: &TrustAnchor,
    chain: &[CertificateDer<'_>],
    now: Timestamp,
    usage: Usage,
) -> Result<Peer, TrustError> {
    let (leaf, rest) = chain.split_first().ok_or_else(|| TrustError::Malformed("empty certificate chain".into()))?;
    let ta = webpki::anchor_from_trusted_cert(anchor.der()).map_err(|e| TrustError::Malformed(format!("{e:?}")))?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| TrustError::Malformed(format!("leaf: {e:?}")))?;
    let intermediates: Vec<CertificateDer<'_>> =
        rest.iter().filter(|c| c.as_ref() != anchor.der().as_ref()).cloned().collect();
    let ku = match usage {
        Usage::Server => webpki::KeyUsage::server_auth(),
        Usage::Client => webpki::KeyUsage::client_auth(),
    };
    ee.verify_for_usage(
        rustls::crypto::ring::default_provider().signature_verification_algorithms.all,
        &[ta],
        &intermediates,
        unix(now),
        ku,
        None,
        None,
    )
    .map_err(|e| TrustError::NotTrusted(words(&e)))?;
    peer_of_validated(leaf, rest, now)
}

/// Reads the extension and validity of a chain that was validated (by
/// [`validate`] or by rustls with the same anchor).
pub(crate) fn peer_of_validated(
    leaf: &CertificateDer<'_>,
    rest: &[CertificateDer<'_>],
    _now: Timestamp,
) -> Result<Peer, TrustError> {
    let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TrustError::Malformed(format!("leaf: {e}")))?;
    let oid = x509_parser::oid_registry::Oid::from(&OID)
        .map_err(|_| TrustError::Malformed("extension OID".into()))?;
    let ext = x
        .get_extension_unique(&oid)
        .map_err(|e| TrustError::NoAuthorization(e.to_string()))?
        .ok_or_else(|| TrustError::NoAuthorization("extension absent".into()))?;
    let auth = Authorization::from_der(ext.value).map_err(TrustError::NoAuthorization)?;
    let public_key = x.public_key().subject_public_key.data.to_vec();
    let mut not_before = Timestamp::from_secs(u64::try_from(x.validity().not_before.timestamp()).unwrap_or(0));
    let mut not_after = Timestamp::from_secs(u64::try_from(x.validity().not_after.timestamp()).unwrap_or(0));
    for c in rest {
        if let Ok((_, ix)) = x509_parser::parse_x509_certificate(c.as_ref()) {
            not_before = not_before.max(Timestamp::from_secs(u64::try_from(ix.validity().not_before.timestamp()).unwrap_or(0)));
            not_after = not_after.min(Timestamp::from_secs(u64::try_from(ix.validity().not_after.timestamp()).unwrap_or(0)));
        }
    }
    Ok(Peer { key_id: key_id_of(&public_key), auth, public_key, not_before, not_after })
}

/// Reads the leaf of a PEM chain **without validating it**: its Signpost
/// authorization and the key id of its public key. For operator tools that
/// must tell which certificate a file holds (e.g. that a key about to sign
/// a root table is the root's); never for trust decisions.
pub fn inspect_pem(pem: &[u8]) -> Result<(Authorization, KeyId), TrustError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Malformed(format!("certificate PEM: {e}")))?;
    let leaf = chain.first().ok_or_else(|| TrustError::Malformed("no certificate in PEM".into()))?;
    let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| TrustError::Malformed(format!("leaf: {e}")))?;
    let oid = x509_parser::oid_registry::Oid::from(&OID).map_err(|_| TrustError::Malformed("extension OID".into()))?;
    let ext = x
        .get_extension_unique(&oid)
        .map_err(|e| TrustError::NoAuthorization(e.to_string()))?
        .ok_or_else(|| TrustError::NoAuthorization("extension absent".into()))?;
    let auth = Authorization::from_der(ext.value).map_err(TrustError::NoAuthorization)?;
    Ok((auth, key_id_of(&x.public_key().subject_public_key.data)))
}

/// The peer of a TLS connection whose chain rustls already validated
/// against the same anchor: the extension is read and the chain validated
/// again for the client usage, so a `Peer` never skips validation.
pub fn tls_client_peer(
    anchor: &TrustAnchor,
    chain: &[CertificateDer<'_>],
    now: Timestamp,
) -> Result<Peer, TrustError> {
    validate(anchor, chain, now, Usage::Client)
}
