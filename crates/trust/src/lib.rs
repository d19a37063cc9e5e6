//! # signpost-trust — certificates, scopes, signatures
//!
//! - [`ca`]: issue a deployment CA and leaf certificates for every role,
//!   carrying Signpost's extension ([`ext`]: role, id, scope).
//! - [`peer`]: validate a certificate chain against the trust anchor at a
//!   given `now`; a [`peer::Peer`] exists only for a validated chain.
//! - [`sign`]: ES256 signatures over the canonical bytes of
//!   `signpost_schemas::signing`; a [`sign::VerifiedMapping`] exists only
//!   when chain, validity, role and scope all check out (so an
//!   authority cannot answer, or blackhole, identifiers outside its scope).
//! - [`tls`]: rustls server and client configs, ring provider only.
//!
//! No network, no clock reads: `now` is always an argument.

#![forbid(unsafe_code)]

pub mod ca;
pub mod ext;
pub mod peer;
pub mod sign;
pub mod tls;

pub use ext::{Authorization, Role, ScopeEntry};
pub use peer::{Peer, TrustAnchor};

/// Why something is not trusted. Each variant has a fixed label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// Not a parsable certificate, key or PEM file.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The chain does not lead to the trust anchor, or a certificate in it
    /// is not valid at the time asked about.
    #[error("certificate not trusted: {0}")]
    NotTrusted(String),
    /// The certificate lacks Signpost's extension, or it is malformed.
    #[error("certificate has no valid Signpost authorization: {0}")]
    NoAuthorization(String),
    /// The signer's role is not the one required.
    #[error("{id} has role {got}, but {want} is required")]
    WrongRole {
        /// The holder.
        id: String,
        /// Its role.
        got: &'static str,
        /// The required role.
        want: &'static str,
    },
    /// The signer's scope does not cover what was signed.
    #[error("{id} is not authoritative for {what}")]
    OutOfScope {
        /// The signer.
        id: String,
        /// What it tried to speak for.
        what: String,
    },
    /// No certificate is known for the key id.
    #[error("no certificate known for key {0}")]
    UnknownKey(String),
    /// The content carries no signature.
    #[error("content is not signed")]
    Unsigned,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `now` is outside the signature's window.
    #[error("signature is not valid now (signed {signed_at}, valid until {valid_until})")]
    SignatureWindow {
        /// signedAt.
        signed_at: String,
        /// validUntil.
        valid_until: String,
    },
    /// The content's `source` differs from the signer's id.
    #[error("content claims source {claimed} but is signed by {signer}")]
    SourceMismatch {
        /// The claimed source.
        claimed: String,
        /// The signer's id.
        signer: String,
    },
    /// A key could not sign (should not happen with a valid key).
    #[error("signing failed: {0}")]
    Signing(String),
}

impl TrustError {
    /// A fixed label for metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            TrustError::Malformed(_) => "malformed",
            TrustError::NotTrusted(_) => "not_trusted",
            TrustError::NoAuthorization(_) => "no_authorization",
            TrustError::WrongRole { .. } => "wrong_role",
            TrustError::OutOfScope { .. } => "out_of_scope",
            TrustError::UnknownKey(_) => "unknown_key",
            TrustError::Unsigned => "unsigned",
            TrustError::BadSignature => "bad_signature",
            TrustError::SignatureWindow { .. } => "signature_window",
            TrustError::SourceMismatch { .. } => "source_mismatch",
            TrustError::Signing(_) => "signing",
        }
    }
}
