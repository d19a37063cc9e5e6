//! A whole topology in one process on 127.0.0.1:0: a PKI, a root with a
//! signed table, authorities (DE with a sub-delegated block to a carrier,
//! FR, and a rogue one delegated +44 with a +33 certificate), and
//! resolvers. Servers can be stopped and restarted on the same port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signpost_authority::core::{Authority, Settings as ASettings};
use signpost_authority::service::{AuthorityService, FeedSettings};
use signpost_authority::store::RedbStore;
use signpost_net::client::Client;
use signpost_net::limits::{LimitSettings, Limiter};
use signpost_net::{Limits, Metrics, Server, Service, bind};
use signpost_resolver::core::Policy;
use signpost_resolver::resolver::{Resolver, Settings as RSettings};
use signpost_resolver::service::ResolverService;
use signpost_root::{LoadedTable, RootService};
use signpost_schemas::lost::{AuthorityRef, Cover, Delegation, Endpoint};
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Clock, E164Prefix, ManualClock, Name, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::peer::{Usage, chain_from_pem, validate};
use signpost_trust::sign::{Signer, Verifier};
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use signpost_trust::{Peer, Role, ScopeEntry, TrustAnchor};

pub const DAY: u64 = 86_400;

pub struct Pki {
    pub ca: Ca,
    pub anchor: TrustAnchor,
    pub now: Timestamp,
}

pub struct Cert {
    pub chain: String,
    pub key: String,
}

impl Pki {
    pub fn new() -> Pki {
        let now = SystemClock.now();
        let ca = Ca::generate("topology", Timestamp::from_secs(now.as_secs() - DAY), now.plus_secs(30 * DAY)).unwrap();
        Pki { anchor: TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap(), ca, now }
    }
    pub fn cert(&self, role: Role, id: &str, scope: &[&str]) -> Cert {
        let i = self
            .ca
            .issue(&LeafRequest {
                role,
                id: Name::parse(id).unwrap(),
                scope: scope.iter().map(|s| ScopeEntry::parse(s).unwrap()).collect(),
                not_before: Timestamp::from_secs(self.now.as_secs() - DAY),
                not_after: self.now.plus_secs(30 * DAY),
                ip_sans: vec![],
            })
            .unwrap();
        Cert { chain: i.chain_pem, key: i.key_pem }
    }
    pub fn peer(&self, role: Role, id: &str, scope: &[&str]) -> Peer {
        let c = self.cert(role, id, scope);
        validate(&self.anchor, &chain_from_pem(c.chain.as_bytes()).unwrap(), self.now, Usage::Client).unwrap()
    }
    pub fn client(&self, cert: Option<&Cert>) -> Client {
        let id = cert.map(|c| Identity::from_pem(c.chain.as_bytes(), c.key.as_bytes()).unwrap());
        Client::new(Arc::new(client_config(&self.anchor, id.as_ref()).unwrap()), Duration::from_secs(3))
    }
}

/// A server that can be stopped and started again on the same address.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

pub async fn run<S: Service>(svc: Arc<S>, cert: &Cert, anchor: &TrustAnchor, auth: ClientAuth, addr: SocketAddr) -> Running {
    let id = Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).unwrap();
    let tls = Arc::new(server_config(&id, anchor, auth).unwrap());
    let l = bind(addr, "lost").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = Limits { drain_grace: Duration::from_millis(100), ..Limits::default() };
    let server = Server::new(svc, Some(tls), Some(anchor.clone()), limits, Arc::new(Metrics::new()), Arc::new(SystemClock));
    let done = tokio::spawn(server.serve(l, async {
        let _ = rx.await;
    }));
    Running { addr, stop: Some(tx), done: Some(done) }
}

impl Running {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("https://{}/lost", self.addr)).unwrap()
    }
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
}

pub struct Auth {
    pub core: Arc<Authority<RedbStore>>,
    pub svc: Arc<AuthorityService<RedbStore>>,
    pub cert: Cert,
    pub running: Running,
    _dir: tempfile::TempDir,
}

impl Auth {
    pub async fn start(pki: &Pki, id: &str, scope: &[&str]) -> Auth {
        Auth::start_claiming(pki, id, scope, scope).await
    }

    /// An authority whose certificate covers `scope` but which claims (and
    /// answers for) `claims`: a rogue when the two differ.
    pub async fn start_claiming(pki: &Pki, id: &str, scope: &[&str], claims: &[&str]) -> Auth {
        let cert = pki.cert(Role::Authority, id, scope);
        let dir = tempfile::tempdir().unwrap();
        let settings = ASettings {
            id: Name::parse(id).unwrap(),
            scope: claims.iter().map(|s| ScopeEntry::parse(s).unwrap()).collect(),
            mapping_ttl: 3600,
            negative_ttl: 600,
            signature_validity: 7 * DAY,
            renew_before: DAY,
            root: None,
        };
        let core = Arc::new(
            Authority::new(settings, RedbStore::open(&dir.path().join("a.redb")).unwrap(), Signer::from_pem(cert.key.as_bytes()).unwrap(), Arc::new(SystemClock)).await.unwrap(),
        );
        let key_id = Signer::from_pem(cert.key.as_bytes()).unwrap().key_id().as_str().to_owned();
        let svc = Arc::new(AuthorityService::new(
            core.clone(),
            Limiter::new(LimitSettings { rate: 1e6, burst: 1e6, miss_budget: 1_000_000, miss_window: 60 }),
            FeedSettings { heartbeat: Duration::from_millis(200), page: 512 },
            Bytes::from(cert.chain.clone()),
            key_id,
            Arc::new(Metrics::new()),
        ));
        let running = run(svc.clone(), &cert, &pki.anchor, ClientAuth::Optional, "127.0.0.1:0".parse().unwrap()).await;
        Auth { core, svc, cert, running, _dir: dir }
    }
    pub fn reference(&self) -> AuthorityRef {
        AuthorityRef { id: self.core.settings().id.clone(), endpoints: vec![self.running.endpoint()] }
    }
    pub async fn restart(&mut self, pki: &Pki) {
        let addr = self.running.addr;
        self.running = run(self.svc.clone(), &self.cert, &pki.anchor, ClientAuth::Optional, addr).await;
    }
}

pub struct Topology {
    pub pki: Pki,
    pub root_cert: Cert,
    pub root: Running,
    pub de: Auth,
    pub carrier: Auth,
    pub fr: Auth,
    pub rogue: Auth,
}

pub fn d(prefix: &str, a: AuthorityRef) -> Delegation {
    Delegation { cover: Cover::Prefix(E164Prefix::parse(prefix).unwrap()), lifetime: 3600, authorities: vec![a] }
}

impl Topology {
    pub async fn start() -> Topology {
        signpost_schemas::csi::warm_up();
        let pki = Pki::new();
        let de = Auth::start(&pki, "dp.de.example", &["+49"]).await;
        let carrier = Auth::start(&pki, "dp.carrier.example", &["+4916"]).await;
        let fr = Auth::start(&pki, "dp.fr.example", &["+33"]).await;
        // A rogue: a valid certificate for +33, delegated +44 by mistake.
        let rogue = Auth::start_claiming(&pki, "dp.rogue.example", &["+33"], &["+33", "+44"]).await;
        let root_cert = pki.cert(Role::Root, "root.test.example", &[]);
        let mut t = RootTable {
            source: Name::parse("root.test.example").unwrap(),
            serial: 1,
            valid_until: pki.now.plus_secs(10 * DAY),
            negative_lifetime: 600,
            delegations: vec![d("+49", de.reference()), d("+33", fr.reference()), d("+44", rogue.reference())],
            signature: None,
        };
        Signer::from_pem(root_cert.key.as_bytes()).unwrap().sign_root_table(&mut t, pki.now, pki.now.plus_secs(10 * DAY)).unwrap();
        let mut v = Verifier::new(pki.anchor.clone());
        v.add_pem(root_cert.chain.as_bytes(), pki.now).unwrap();
        let loaded = LoadedTable::load(t.encode().as_bytes(), &v, &t.source, pki.now).unwrap();
        let root = run(Arc::new(RootService::new(t.source.clone(), loaded)), &root_cert, &pki.anchor, ClientAuth::Required, "127.0.0.1:0".parse().unwrap()).await;
        // DE sub-delegates +4916 to the carrier.
        let admin = pki.peer(Role::Admin, "admin.de.example", &["+49"]);
        de.core.provision(&admin, signpost_schemas::sp::Provision::Delegate(d("+4916", carrier.reference()))).await.unwrap();
        Topology { pki, root_cert, root, de, carrier, fr, rogue }
    }

    pub fn root_ref(&self) -> AuthorityRef {
        AuthorityRef { id: Name::parse("root.test.example").unwrap(), endpoints: vec![self.root.endpoint()] }
    }

    /// A resolver on a manual clock that starts at the real time.
    pub async fn resolver(&self, preload: bool, policy: Policy, auth: ClientAuth) -> (Arc<Resolver>, Running, ManualClock, Arc<Metrics>) {
        let cert = self.pki.cert(Role::Resolver, "resolver.carrier-x.example", &[]);
        let id = Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).unwrap();
        let client = Client::new(Arc::new(client_config(&self.pki.anchor, Some(&id)).unwrap()), Duration::from_millis(800));
        let clock = ManualClock::new(SystemClock.now());
        let metrics = Arc::new(Metrics::new());
        let s = RSettings {
            id: Name::parse("resolver.carrier-x.example").unwrap(),
            root: self.root_ref(),
            root_table_signer: preload.then(|| self.root_cert.chain.clone().into_bytes()),
            root_table_refresh: Duration::from_secs(3600),
            policy,
            max_entries: 10_000,
            upstream_timeout: Duration::from_millis(800),
            failure_recheck: Duration::from_secs(30),
            hot_hits: 1_000_000,
            push: true,
        };
        let r = Resolver::new(s, Arc::new(clock.clone()), client, self.pki.anchor.clone(), metrics.clone());
        r.start().await;
        let svc = Arc::new(ResolverService::new(r.clone(), Limiter::new(LimitSettings { rate: 1e6, burst: 1e6, miss_budget: usize::MAX, miss_window: 60 })));
        let running = run(svc, &cert, &self.pki.anchor, auth, "127.0.0.1:0".parse().unwrap()).await;
        (r, running, clock, metrics)
    }
}

/// Reads a counter from rendered metrics.
pub fn metric(m: &Metrics, name: &str) -> u64 {
    m.render().lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}
