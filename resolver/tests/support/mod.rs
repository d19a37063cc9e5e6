//! The resolver's topology for its tests, built from the shared kit
//! (`signpost-kit`): a root delegating +49 to DE, +33 to FR and +44 to a
//! rogue (certified for +33 only); DE sub-delegates +4916 to a carrier.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_kit::{AuthorityNode, AuthorityPlan, Pki, ResolverNode, ResolverPlan, RootNode, delegation};
use signpost_net::client::Client;
use signpost_schemas::lost::{Assurance, Uri};
use signpost_schemas::sp::{EntryRecord, Provision, Visibility};
use signpost_schemas::{Csi, ErrorKind, FindService, Limits, MappingBody, Name, Request, Response};
use signpost_trust::Role;

pub use signpost_kit::{DAY, metric};

pub const ROOT: &str = "root.test.example";

pub struct Topology {
    pub pki: Pki,
    pub root: RootNode,
    pub de: AuthorityNode,
    pub carrier: AuthorityNode,
    pub fr: AuthorityNode,
    pub rogue: AuthorityNode,
}

pub fn csi(s: &str) -> Csi {
    Csi::from_wire(s).unwrap()
}

pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

impl Topology {
    pub async fn start() -> Topology {
        signpost_schemas::csi::warm_up();
        let pki = Pki::new().unwrap();
        let de = AuthorityNode::start(&pki, &AuthorityPlan::new("dp.de.example", "+49")).await.unwrap();
        let carrier = AuthorityNode::start(&pki, &AuthorityPlan::new("dp.carrier.example", "+4916")).await.unwrap();
        let fr = AuthorityNode::start(&pki, &AuthorityPlan::new("dp.fr.example", "+33")).await.unwrap();
        let mut rogue_plan = AuthorityPlan::new("dp.rogue.example", "+33");
        rogue_plan.claims = vec!["+33".into(), "+44".into()];
        let rogue = AuthorityNode::start(&pki, &rogue_plan).await.unwrap();
        let ds = vec![
            delegation("+49", de.reference().unwrap(), 3600).unwrap(),
            delegation("+33", fr.reference().unwrap(), 3600).unwrap(),
            delegation("+44", rogue.reference().unwrap(), 3600).unwrap(),
        ];
        let root = RootNode::start(&pki, ROOT, ds, 600, 10 * DAY).await.unwrap();
        let admin = pki.peer(Role::Admin, "admin.de.example", &["+49"]).unwrap();
        de.core.provision(&admin, Provision::Delegate(delegation("+4916", carrier.reference().unwrap(), 3600).unwrap())).await.unwrap();
        Topology { pki, root, de, carrier, fr, rogue }
    }

    /// A resolver (`resolver.carrier-x.example`).
    pub async fn resolver(&self, plan: ResolverPlan) -> ResolverNode {
        ResolverNode::start(&self.pki, &self.root, plan).await.unwrap()
    }

    /// The default resolver plan.
    pub fn plan(&self) -> ResolverPlan {
        ResolverPlan::new(RES)
    }

    /// Assigns a number at an authority and gives it one entry of `msp`;
    /// the feed position of the last change.
    pub async fn provision(&self, auth: &AuthorityNode, n: &str, scope: &str, msp: &str) -> u64 {
        let csip = self.pki.peer(Role::Csip, "tnsp-a.example", &[scope]).unwrap();
        auth.core.provision(&csip, Provision::Assign { csi: csi(n), tnsp: None }).await.unwrap();
        self.put(auth, n, msp, &format!("mimi://{msp}/u/alice")).await
    }

    /// Puts an entry of `msp` with `uri`; the change's feed position.
    pub async fn put(&self, auth: &AuthorityNode, n: &str, msp: &str, uri: &str) -> u64 {
        let m = self.pki.peer(Role::Msp, msp, &[]).unwrap();
        let mut e = entry(msp);
        e.uris = vec![Uri::parse(uri).unwrap()];
        auth.core.provision(&m, Provision::PutEntry { csi: csi(n), entry: e }).await.unwrap().seq
    }

    /// An AP's client (with a certificate).
    pub fn ap(&self) -> Client {
        self.pki.client(Some(&self.pki.cert(Role::Msp, "ap.carrier-x.example", &[]).unwrap())).unwrap()
    }
}

pub const RES: &str = "resolver.carrier-x.example";

pub fn entry(p: &str) -> EntryRecord {
    EntryRecord {
        provider: Name::parse(p).unwrap(),
        display_name: None,
        uris: vec![Uri::parse(&format!("mimi://{p}/u/alice")).unwrap()],
        priority: 10,
        tags: vec![],
        assurance: Assurance::MspVerified,
        bound_to_tnsp: false,
        visibility: Visibility::All,
    }
}

/// Every document a test received, to be checked with xmllint at its end.
#[derive(Default)]
pub struct Docs(pub Vec<(String, String)>);

pub async fn ask(c: &Client, r: &ResolverNode, n: &str, docs: &mut Docs) -> Response {
    ask_req(c, r, FindService::for_csi(csi(n), true), docs).await
}

pub async fn ask_req(c: &Client, r: &ResolverNode, f: FindService, docs: &mut Docs) -> Response {
    let a = c.post_lost(&r.running.endpoint().unwrap(), &name(RES), Bytes::from(Request::FindService(f).encode())).await.unwrap();
    assert_eq!(a.status, 200);
    let body = String::from_utf8(a.body.to_vec()).unwrap();
    docs.0.push((String::from("answer"), body.clone()));
    Response::decode(body.as_bytes(), &Limits::MESSAGE).unwrap()
}

pub fn providers(r: &Response) -> Vec<String> {
    match r {
        Response::Found(f) => f
            .mappings
            .iter()
            .map(|m| match &m.body {
                MappingBody::Provider(p) => p.id.to_string(),
                MappingBody::NoProviders { .. } => "none".into(),
            })
            .collect(),
        other => panic!("expected mappings, got {other:?}"),
    }
}

pub fn uri(r: &Response) -> String {
    match r {
        Response::Found(f) => f.mappings[0].uris[0].as_str().to_owned(),
        other => panic!("expected mappings, got {other:?}"),
    }
}

pub fn kind(r: &Response) -> ErrorKind {
    match r {
        Response::Errors(e) => e.kind().unwrap(),
        other => panic!("expected errors, got {other:?}"),
    }
}

/// Waits for a condition that the system reaches by itself (a feed frame
/// applied, a subscription made). The bound only keeps a broken build from
/// hanging: it is not a performance threshold.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn upstream_ok(r: &ResolverNode) -> u64 {
    r.resolver.stats().upstream_ok
}
