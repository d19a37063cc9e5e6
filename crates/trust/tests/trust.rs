//! Certificates, scopes and signatures through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use signpost_schemas::lost::*;
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Csi, Expires, Name, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::peer::{Usage, chain_from_pem, validate};
use signpost_trust::sign::{Signer, Verifier};
use signpost_trust::{Role, ScopeEntry, TrustAnchor, TrustError};

const DAY: u64 = 86_400;

fn now() -> Timestamp {
    Timestamp::from_secs(1_795_417_200) // 2026-11-23T07:00:00Z
}

fn ca() -> Ca {
    Ca::generate("Test Signpost CA", now().plus_secs(0).min(Timestamp::from_secs(now().as_secs() - 10 * DAY)), now().plus_secs(3650 * DAY)).unwrap()
}

fn leaf(ca: &Ca, role: Role, id: &str, scope: &[&str], from: Timestamp, to: Timestamp) -> (String, String) {
    let i = ca
        .issue(&LeafRequest {
            role,
            id: Name::parse(id).unwrap(),
            scope: scope.iter().map(|s| ScopeEntry::parse(s).unwrap()).collect(),
            not_before: from,
            not_after: to,
            ip_sans: vec![],
        })
        .unwrap();
    (i.chain_pem, i.key_pem)
}

fn valid(ca: &Ca, role: Role, id: &str, scope: &[&str]) -> (String, String) {
    leaf(ca, role, id, scope, Timestamp::from_secs(now().as_secs() - DAY), now().plus_secs(365 * DAY))
}

fn mapping(source: &str) -> Mapping {
    Mapping {
        expires: Expires::At(now().plus_secs(3600)),
        last_updated: now(),
        source: Name::parse(source).unwrap(),
        source_id: "m1".into(),
        display_names: vec![],
        service: Some(Uri::parse(SERVICE_MIMI).unwrap()),
        uris: vec![Uri::parse("mimi://provider-a.example/u/alice").unwrap()],
        body: MappingBody::Provider(ProviderEntry {
            id: Name::parse("provider-a.example").unwrap(),
            priority: 10,
            tags: vec![],
            assurance: Assurance::CsipAttested,
            epoch: Epoch(1),
        }),
        signature: None,
    }
}

fn de() -> Csi {
    Csi::from_wire("tel:+4915112345678").unwrap()
}

#[test]
fn authority_signs_in_scope_and_the_verifier_accepts() {
    let ca = ca();
    let (cert, key) = valid(&ca, Role::Authority, "dp.de.example", &["+49"]);
    let signer = Signer::from_pem(key.as_bytes()).unwrap();
    let mut v = Verifier::new(TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap());
    assert_eq!(&v.add_pem(cert.as_bytes(), now()).unwrap(), signer.key_id());
    let mut m = mapping("dp.de.example");
    signer.sign_mapping(&de(), &mut m, now(), now().plus_secs(7 * DAY)).unwrap();
    let ok = v.verify_mapping(&de(), &m, now()).unwrap();
    assert_eq!(ok.signer().id().as_str(), "dp.de.example");
    // The cache lifetime is not signed: a resolver may rewrite it.
    m.expires = Expires::NoCache;
    assert!(v.verify_mapping(&de(), &m, now()).is_ok());
    // Survives the wire.
    let r = Response::Found(FindServiceResponse { mappings: vec![m.clone()], warnings: vec![], path: Path::new(m.source.clone()), location_used: None, feed_position: None });
    let Response::Found(back) = Response::decode(r.encode().as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap() else { panic!() };
    assert!(v.verify_mapping(&de(), &back.mappings[0], now()).is_ok());
}

#[test]
fn rogue_authority_cannot_sign_outside_its_scope() {
    let ca = ca();
    let (cert, key) = valid(&ca, Role::Authority, "dp.fr.example", &["+33"]);
    let signer = Signer::from_pem(key.as_bytes()).unwrap();
    let mut v = Verifier::new(TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap());
    v.add_pem(cert.as_bytes(), now()).unwrap();
    let mut m = mapping("dp.fr.example");
    signer.sign_mapping(&de(), &mut m, now(), now().plus_secs(DAY)).unwrap();
    assert!(matches!(v.verify_mapping(&de(), &m, now()), Err(TrustError::OutOfScope { .. })));
    // Claiming to be the +49 authority does not help either.
    let mut m2 = mapping("dp.de.example");
    signer.sign_mapping(&de(), &mut m2, now(), now().plus_secs(DAY)).unwrap();
    assert!(matches!(v.verify_mapping(&de(), &m2, now()), Err(TrustError::SourceMismatch { .. })));
}

#[test]
fn tampering_expiry_other_ca_and_wrong_role_fail() {
    let ca = ca();
    let anchor = TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let (cert, key) = valid(&ca, Role::Authority, "dp.de.example", &["+49"]);
    let signer = Signer::from_pem(key.as_bytes()).unwrap();
    let mut v = Verifier::new(anchor.clone());
    v.add_pem(cert.as_bytes(), now()).unwrap();
    let mut m = mapping("dp.de.example");
    signer.sign_mapping(&de(), &mut m, now(), now().plus_secs(DAY)).unwrap();

    let mut t = m.clone();
    t.uris = vec![Uri::parse("mimi://evil.example/u/alice").unwrap()];
    assert_eq!(v.verify_mapping(&de(), &t, now()).unwrap_err(), TrustError::BadSignature);
    let mut t = m.clone();
    t.signature.as_mut().unwrap().value[10] ^= 1;
    assert_eq!(v.verify_mapping(&de(), &t, now()).unwrap_err(), TrustError::BadSignature);
    let other = Csi::from_wire("tel:+4915199999999").unwrap();
    assert_eq!(v.verify_mapping(&other, &m, now()).unwrap_err(), TrustError::BadSignature);
    let mut t = m.clone();
    t.signature = None;
    assert_eq!(v.verify_mapping(&de(), &t, now()).unwrap_err(), TrustError::Unsigned);
    assert!(matches!(v.verify_mapping(&de(), &m, now().plus_secs(2 * DAY)), Err(TrustError::SignatureWindow { .. })));

    // An expired certificate: refused when added, and refused at verify
    // time once it has expired.
    let (old, _) = leaf(&ca, Role::Authority, "dp.old.example", &["+49"], Timestamp::from_secs(now().as_secs() - 30 * DAY), Timestamp::from_secs(now().as_secs() - DAY));
    let e = Verifier::new(anchor.clone()).add_pem(old.as_bytes(), now()).unwrap_err();
    assert!(matches!(e, TrustError::NotTrusted(_)));
    // In words, with the dates, not webpki's `CertExpired { time: UnixTime(…) }`.
    let words = e.to_string();
    assert!(words.contains("the certificate expired at 20") && !words.contains("UnixTime"), "{words}");
    assert!(matches!(v.verify_mapping(&de(), &m, now().plus_secs(400 * DAY)), Err(TrustError::NotTrusted(_))));

    // A certificate from another CA.
    let other_ca = Ca::generate("Other CA", Timestamp::from_secs(now().as_secs() - DAY), now().plus_secs(DAY * 10)).unwrap();
    let (foreign, _) = valid(&other_ca, Role::Authority, "dp.de.example", &["+49"]);
    let e = Verifier::new(anchor.clone()).add_pem(foreign.as_bytes(), now()).unwrap_err();
    assert!(matches!(e, TrustError::NotTrusted(_)) && e.to_string().contains("not issued by this deployment's CA"), "{e}");

    // An MSP key cannot sign mappings.
    let (msp, msp_key) = valid(&ca, Role::Msp, "provider-a.example", &["+49"]);
    let msp_signer = Signer::from_pem(msp_key.as_bytes()).unwrap();
    v.add_pem(msp.as_bytes(), now()).unwrap();
    let mut mm = mapping("provider-a.example");
    msp_signer.sign_mapping(&de(), &mut mm, now(), now().plus_secs(DAY)).unwrap();
    assert!(matches!(v.verify_mapping(&de(), &mm, now()), Err(TrustError::WrongRole { .. })));
}

#[test]
fn peers_come_from_validated_chains_only() {
    let ca = ca();
    let anchor = TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let (cert, _) = valid(&ca, Role::Csip, "tnsp-a.de.example", &["+4930", "mail.example"]);
    let chain = chain_from_pem(cert.as_bytes()).unwrap();
    let p = validate(&anchor, &chain, now(), Usage::Client).unwrap();
    assert_eq!(p.role(), Role::Csip);
    assert_eq!(p.id().as_str(), "tnsp-a.de.example");
    assert!(p.covers(&Csi::from_wire("tel:+493012345678").unwrap()));
    assert!(p.covers(&Csi::from_wire("mailto:a@x.mail.example").unwrap()));
    assert!(!p.covers(&de()));
    assert!(validate(&anchor, &chain, now().plus_secs(400 * DAY), Usage::Client).is_err());
}

#[test]
fn root_table_signature() {
    let ca = ca();
    let (cert, key) = valid(&ca, Role::Root, "root.example", &[]);
    let signer = Signer::from_pem(key.as_bytes()).unwrap();
    let mut v = Verifier::new(TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap());
    v.add_pem(cert.as_bytes(), now()).unwrap();
    let mut t = RootTable::decode(include_bytes!("../../../schemas/samples/valid/sp/root-table.xml"), &signpost_schemas::Limits::DOCUMENT).unwrap();
    t.source = Name::parse("root.example").unwrap();
    signer.sign_root_table(&mut t, now(), now().plus_secs(DAY)).unwrap();
    assert!(v.verify_root_table(&t, now()).is_ok());
    t.delegations[0].lifetime += 1;
    assert_eq!(v.verify_root_table(&t, now()).unwrap_err(), TrustError::BadSignature);
}

#[test]
fn openssl_accepts_what_ca_issue_writes() {
    let have = std::process::Command::new("openssl").arg("version").output().is_ok();
    if !have {
        assert!(std::env::var_os("CI").is_none(), "CI must install openssl");
        eprintln!("openssl not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("Test CA", Timestamp::from_secs(1_700_000_000), Timestamp::from_secs(4_000_000_000)).unwrap();
    ca.write_dir(dir.path()).unwrap();
    let ca = Ca::load_dir(dir.path()).unwrap();
    let system_now = signpost_schemas::SystemClock;
    let n = signpost_schemas::Clock::now(&system_now);
    let i = ca
        .issue(&LeafRequest {
            role: Role::Authority,
            id: Name::parse("dp.de.example").unwrap(),
            scope: vec![ScopeEntry::parse("+49").unwrap()],
            not_before: Timestamp::from_secs(n.as_secs() - DAY),
            not_after: n.plus_secs(DAY),
            ip_sans: vec!["127.0.0.1".parse().unwrap()],
        })
        .unwrap();
    std::fs::write(dir.path().join("cert.pem"), &i.chain_pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("cert.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    // A second init into the same directory is refused.
    assert!(ca.write_dir(dir.path()).is_err());
}
