//! ES256 signatures over Signpost's canonical bytes, and their verification
//! with chain, validity, role and scope checks.

use std::collections::HashMap;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use signpost_schemas::lost::KeyId;
use signpost_schemas::signing::{self, SigParams};
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Csi, Mapping, Signature, Timestamp};

use crate::TrustError;
use crate::ext::Role;
use crate::peer::{Peer, TrustAnchor, Usage, chain_from_pem, key_id_of, validate};

/// A signing key (ECDSA P-256).
#[derive(Debug)]
pub struct Signer {
    key: EcdsaKeyPair,
    key_id: KeyId,
    rng: SystemRandom,
}

impl Signer {
    /// From a PKCS#8 PEM private key (as `ca issue` writes `key.pem`).
    pub fn from_pem(pem: &[u8]) -> Result<Signer, TrustError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| TrustError::Malformed(format!("key PEM: {e}")))?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_pkcs8_der(), &rng)
            .map_err(|e| TrustError::Malformed(format!("not an ECDSA P-256 key: {e}")))?;
        let key_id = key_id_of(key.public_key().as_ref());
        Ok(Signer { key, key_id, rng })
    }

    /// The key id of this key's public half.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    fn sign_bytes(&self, bytes: &[u8]) -> Result<Vec<u8>, TrustError> {
        self.key.sign(&self.rng, bytes).map(|s| s.as_ref().to_vec()).map_err(|e| TrustError::Signing(e.to_string()))
    }

    /// Signs a mapping for `csi` (sets its `signature`).
    pub fn sign_mapping(&self, csi: &Csi, m: &mut Mapping, signed_at: Timestamp, valid_until: Timestamp) -> Result<(), TrustError> {
        let p = SigParams { key_id: &self.key_id, signed_at, valid_until };
        let mut bytes = Vec::with_capacity(512);
        signing::mapping_bytes(csi, m, &p, &mut bytes);
        let value = self.sign_bytes(&bytes)?;
        m.signature = Some(Signature { key_id: self.key_id.clone(), signed_at, valid_until, value });
        Ok(())
    }

    /// Signs a root table (sets its `signature`).
    pub fn sign_root_table(&self, t: &mut RootTable, signed_at: Timestamp, valid_until: Timestamp) -> Result<(), TrustError> {
        let p = SigParams { key_id: &self.key_id, signed_at, valid_until };
        let mut bytes = Vec::with_capacity(256 + 128 * t.delegations.len());
        signing::root_table_bytes(t, &p, &mut bytes);
        let value = self.sign_bytes(&bytes)?;
        t.signature = Some(Signature { key_id: self.key_id.clone(), signed_at, valid_until, value });
        Ok(())
    }
}

/// A mapping whose signature, signer chain, validity, role, source and
/// scope were checked. Only [`Verifier::verify_mapping`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedMapping {
    mapping: Mapping,
    signer: Peer,
}

impl VerifiedMapping {
    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }
    /// The authority that signed it.
    pub fn signer(&self) -> &Peer {
        &self.signer
    }
    /// Gives the mapping back.
    pub fn into_mapping(self) -> Mapping {
        self.mapping
    }
}

/// A root table whose signature by a root-role certificate was checked.
#[derive(Clone, Debug)]
pub struct VerifiedRootTable {
    table: RootTable,
}

impl VerifiedRootTable {
    /// The table.
    pub fn table(&self) -> &RootTable {
        &self.table
    }
}

/// Verifies signatures against known signer certificates.
#[derive(Debug)]
pub struct Verifier {
    anchor: TrustAnchor,
    signers: HashMap<KeyId, Peer>,
}

/// Clock skew tolerated between signer and verifier: a signature may be
/// dated up to this far in the verifier's future.
pub const CLOCK_SKEW_SECS: u64 = 300;

fn check_window(s: &Signature, now: Timestamp) -> Result<(), TrustError> {
    if s.signed_at <= now.plus_secs(CLOCK_SKEW_SECS) && now <= s.valid_until {
        Ok(())
    } else {
        Err(TrustError::SignatureWindow { signed_at: s.signed_at.to_string(), valid_until: s.valid_until.to_string() })
    }
}

impl Verifier {
    /// A verifier with no signer certificates yet.
    pub fn new(anchor: TrustAnchor) -> Verifier {
        Verifier { anchor, signers: HashMap::new() }
    }

    /// Validates a signer's chain (PEM, leaf first) at `now` and remembers
    /// it under its key id.
    pub fn add_pem(&mut self, pem: &[u8], now: Timestamp) -> Result<KeyId, TrustError> {
        let chain = chain_from_pem(pem)?;
        let peer = validate(&self.anchor, &chain, now, Usage::Server)?;
        let id = peer.key_id().clone();
        self.signers.insert(id.clone(), peer);
        Ok(id)
    }

    /// The signer known under a key id.
    pub fn signer(&self, key_id: &KeyId) -> Option<&Peer> {
        self.signers.get(key_id)
    }

    fn check(&self, s: &Signature, bytes: &[u8], now: Timestamp, role: Role) -> Result<&Peer, TrustError> {
        let signer = self.signers.get(&s.key_id).ok_or_else(|| TrustError::UnknownKey(s.key_id.as_str().to_owned()))?;
        if !signer.valid_at(now) {
            return Err(TrustError::NotTrusted(format!("certificate of {} is not valid at {now}", signer.id())));
        }
        signer.require(role)?;
        check_window(s, now)?;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, signer.public_key())
            .verify(bytes, &s.value)
            .map_err(|_| TrustError::BadSignature)?;
        Ok(signer)
    }

    /// A mapping is accepted only when the signer chains to the anchor and is valid now, has the
    /// authority role, is the mapping's `source`, and its scope covers the
    /// CSI; the signature verifies and `now` is within its window.
    pub fn verify_mapping(&self, csi: &Csi, m: &Mapping, now: Timestamp) -> Result<VerifiedMapping, TrustError> {
        let s = m.signature.as_ref().ok_or(TrustError::Unsigned)?;
        let mut bytes = Vec::with_capacity(512);
        signing::mapping_bytes(csi, m, &SigParams::of(s), &mut bytes);
        let signer = self.check(s, &bytes, now, Role::Authority)?;
        if signer.id() != &m.source {
            return Err(TrustError::SourceMismatch { claimed: m.source.to_string(), signer: signer.id().to_string() });
        }
        if !signer.covers(csi) {
            return Err(TrustError::OutOfScope { id: signer.id().to_string(), what: csi.to_string() });
        }
        Ok(VerifiedMapping { mapping: m.clone(), signer: signer.clone() })
    }

    /// Verifies a root table signed by a root-role certificate whose id is
    /// the table's `source`.
    pub fn verify_root_table(&self, t: &RootTable, now: Timestamp) -> Result<VerifiedRootTable, TrustError> {
        let s = t.signature.as_ref().ok_or(TrustError::Unsigned)?;
        let mut bytes = Vec::with_capacity(256 + 128 * t.delegations.len());
        signing::root_table_bytes(t, &SigParams::of(s), &mut bytes);
        let signer = self.check(s, &bytes, now, Role::Root)?;
        if signer.id() != &t.source {
            return Err(TrustError::SourceMismatch { claimed: t.source.to_string(), signer: signer.id().to_string() });
        }
        Ok(VerifiedRootTable { table: t.clone() })
    }
}
