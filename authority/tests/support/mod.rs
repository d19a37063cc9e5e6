//! Shared test setup: a PKI, peers from validated certificates, an
//! authority over a fresh redb store, and a manual clock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod pg;

use std::sync::Arc;

use signpost_authority::core::{Authority, Settings};
use signpost_authority::store::RedbStore;
use signpost_schemas::lost::{Assurance, DisplayName, Uri};
use signpost_schemas::sp::{EntryRecord, Visibility};
use signpost_schemas::{Csi, ManualClock, Name, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::peer::{Usage, chain_from_pem, validate};
use signpost_trust::sign::{Signer, Verifier};
use signpost_trust::{Peer, Role, ScopeEntry, TrustAnchor};

pub const DAY: u64 = 86_400;

pub fn t0() -> Timestamp {
    Timestamp::from_secs(1_795_417_200)
}

pub struct World {
    pub ca: Ca,
    pub anchor: TrustAnchor,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    pub authority_cert: String,
    pub authority_key: String,
}

impl World {
    pub fn new() -> World {
        let ca = Ca::generate("test", Timestamp::from_secs(t0().as_secs() - DAY), t0().plus_secs(3650 * DAY)).unwrap();
        let anchor = TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
        let (authority_cert, authority_key) = issue(&ca, Role::Authority, "dp.de.example", &["+49", "mail.example"]);
        World { ca, anchor, clock: ManualClock::new(t0()), dir: tempfile::tempdir().unwrap(), authority_cert, authority_key }
    }

    pub fn peer(&self, role: Role, id: &str, scope: &[&str]) -> Peer {
        let (cert, _) = issue(&self.ca, role, id, scope);
        validate(&self.anchor, &chain_from_pem(cert.as_bytes()).unwrap(), t0(), Usage::Client).unwrap()
    }

    pub fn settings(&self) -> Settings {
        Settings {
            id: Name::parse("dp.de.example").unwrap(),
            scope: vec![ScopeEntry::parse("+49").unwrap(), ScopeEntry::parse("mail.example").unwrap()],
            mapping_ttl: 3600,
            negative_ttl: 60,
            signature_validity: 7 * DAY,
            renew_before: DAY,
            root: None,
        }
    }

    pub async fn authority(&self) -> Authority<RedbStore> {
        let store = RedbStore::open(&self.dir.path().join("authority.redb")).unwrap();
        Authority::new(self.settings(), store, Signer::from_pem(self.authority_key.as_bytes()).unwrap(), Arc::new(self.clock.clone())).await.unwrap()
    }

    /// An authority of this world over any store (a PostgreSQL frontend).
    pub async fn authority_on<S: signpost_authority::store::Store>(&self, store: S) -> Authority<S> {
        Authority::new(self.settings(), store, Signer::from_pem(self.authority_key.as_bytes()).unwrap(), Arc::new(self.clock.clone())).await.unwrap()
    }

    pub fn verifier(&self) -> Verifier {
        let mut v = Verifier::new(self.anchor.clone());
        v.add_pem(self.authority_cert.as_bytes(), t0()).unwrap();
        v
    }
}

pub fn issue(ca: &Ca, role: Role, id: &str, scope: &[&str]) -> (String, String) {
    let i = ca
        .issue(&LeafRequest {
            role,
            id: Name::parse(id).unwrap(),
            scope: scope.iter().map(|s| ScopeEntry::parse(s).unwrap()).collect(),
            not_before: Timestamp::from_secs(t0().as_secs() - DAY),
            not_after: t0().plus_secs(365 * DAY),
            ip_sans: vec!["127.0.0.1".parse().unwrap()],
        })
        .unwrap();
    (i.chain_pem, i.key_pem)
}

pub fn csi(s: &str) -> Csi {
    Csi::from_wire(s).unwrap()
}

pub fn entry(provider: &str, bound: bool) -> EntryRecord {
    EntryRecord {
        provider: Name::parse(provider).unwrap(),
        display_name: Some(DisplayName { text: format!("{provider} app"), lang: "en".into() }),
        uris: vec![Uri::parse(&format!("mimi://{provider}/u/alice")).unwrap()],
        priority: 10,
        tags: vec![],
        assurance: Assurance::MspVerified,
        bound_to_tnsp: bound,
        visibility: Visibility::All,
    }
}
