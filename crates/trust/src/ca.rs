//! Issuing certificates: the deployment CA and role certificates.

use std::net::IpAddr;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use signpost_schemas::{Name, Timestamp};

use crate::TrustError;
use crate::ext::{Authorization, OID, Role, ScopeEntry};

fn to_time(t: Timestamp) -> Result<time::OffsetDateTime, TrustError> {
    let secs = i64::try_from(t.as_secs()).map_err(|_| TrustError::Malformed("time out of range".into()))?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TrustError::Malformed(e.to_string()))
}

fn rc(e: rcgen::Error) -> TrustError {
    TrustError::Malformed(e.to_string())
}

/// A certificate authority: the deployment trust anchor, or an
/// intermediate (an authority issuing for its own clients).
#[derive(Debug)]
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// What a leaf certificate says.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// The holder's role.
    pub role: Role,
    /// The holder's id (also its DNS SAN and CN).
    pub id: Name,
    /// What it may speak for.
    pub scope: Vec<ScopeEntry>,
    /// Validity start.
    pub not_before: Timestamp,
    /// Validity end.
    pub not_after: Timestamp,
    /// Extra IP SANs (for clients that connect by address without SNI).
    pub ip_sans: Vec<IpAddr>,
}

/// An issued certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The leaf followed by the issuing CA, PEM.
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256).
    pub fn generate(name: &str, not_before: Timestamp, not_after: Timestamp) -> Result<Ca, TrustError> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Signpost deployment");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        p.not_before = to_time(not_before)?;
        p.not_after = to_time(not_after)?;
        let cert = p.self_signed(&key).map_err(rc)?;
        Ok(Ca { cert_pem: cert.pem(), issuer: Issuer::new(p, key) })
    }

    /// Loads `ca.pem` and `ca-key.pem` from a directory written by
    /// [`Ca::write_dir`].
    pub fn load_dir(dir: &Path) -> Result<Ca, TrustError> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| TrustError::Malformed(format!("{}: {e}", dir.join(f).display())))
        };
        let cert_pem = read("ca.pem")?;
        let key = KeyPair::from_pem(&read("ca-key.pem")?).map_err(rc)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(rc)?;
        Ok(Ca { issuer, cert_pem })
    }

    /// Writes `ca.pem` and `ca-key.pem` (the key readable by the owner
    /// only); refuses to overwrite an existing CA.
    pub fn write_dir(&self, dir: &Path) -> Result<(), TrustError> {
        let io = |e: std::io::Error| TrustError::Malformed(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        if dir.join("ca-key.pem").exists() {
            return Err(TrustError::Malformed(format!("{} already holds a CA; refusing to overwrite it", dir.display())));
        }
        std::fs::write(dir.join("ca.pem"), &self.cert_pem).map_err(io)?;
        write_private(&dir.join("ca-key.pem"), &self.issuer.key().serialize_pem()).map_err(io)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf certificate for a role.
    pub fn issue(&self, req: &LeafRequest) -> Result<Issued, TrustError> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut p = CertificateParams::new(vec![req.id.as_str().to_owned()]).map_err(rc)?;
        for ip in &req.ip_sans {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, req.id.as_str());
        dn.push(DnType::OrganizationalUnitName, req.role.as_str());
        p.distinguished_name = dn;
        p.is_ca = IsCa::NoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = to_time(req.not_before)?;
        p.not_after = to_time(req.not_after)?;
        let auth = Authorization { role: req.role, id: req.id.clone(), scope: req.scope.clone() };
        p.custom_extensions.push(CustomExtension::from_oid_content(&OID, auth.to_der()));
        let cert = p.signed_by(&key, &self.issuer).map_err(rc)?;
        Ok(Issued { chain_pem: format!("{}{}", cert.pem(), self.cert_pem), key_pem: key.serialize_pem() })
    }
}

/// Writes a file that only its owner may read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())
}
