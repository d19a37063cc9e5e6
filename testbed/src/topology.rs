//! A live topology in one process on 127.0.0.1:0: a generated PKI, a root
//! with a signed table, one authority per country / email domain, and
//! resolvers — the same library code the binaries run, with real TLS,
//! real HTTP/2 and real change feeds.

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
use signpost_schemas::{Clock, Domain, E164Prefix, Name, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::peer::{Usage, chain_from_pem, validate};
use signpost_trust::sign::{Signer, Verifier};
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use signpost_trust::{Peer, Role, ScopeEntry, TrustAnchor};

const DAY: u64 = 86_400;

/// A certificate and its key (PEM).
#[derive(Debug, Clone)]
pub struct Cert {
    /// Chain.
    pub chain: String,
    /// Key.
    pub key: String,
}

/// The topology's PKI.
#[derive(Debug)]
pub struct Pki {
    ca: Ca,
    /// The trust anchor.
    pub anchor: TrustAnchor,
    now: Timestamp,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Pki {
    /// A fresh CA.
    pub fn new() -> Result<Pki, String> {
        let now = SystemClock.now();
        let ca = Ca::generate("testbed", Timestamp::from_secs(now.as_secs() - DAY), now.plus_secs(7 * DAY)).map_err(err)?;
        Ok(Pki { anchor: TrustAnchor::from_pem(ca.cert_pem().as_bytes()).map_err(err)?, ca, now })
    }
    /// A certificate for a role.
    pub fn cert(&self, role: Role, id: &str, scope: &[String]) -> Result<Cert, String> {
        let i = self
            .ca
            .issue(&LeafRequest {
                role,
                id: Name::parse(id).map_err(err)?,
                scope: scope.iter().map(|s| ScopeEntry::parse(s)).collect::<Result<_, _>>()?,
                not_before: Timestamp::from_secs(self.now.as_secs() - DAY),
                not_after: self.now.plus_secs(7 * DAY),
                ip_sans: vec![],
            })
            .map_err(err)?;
        Ok(Cert { chain: i.chain_pem, key: i.key_pem })
    }
    /// A validated peer for a role (for in-process provisioning).
    pub fn peer(&self, role: Role, id: &str, scope: &[String]) -> Result<Peer, String> {
        let c = self.cert(role, id, scope)?;
        validate(&self.anchor, &chain_from_pem(c.chain.as_bytes()).map_err(err)?, self.now, Usage::Client).map_err(err)
    }
    /// An HTTPS client presenting `cert`.
    pub fn client(&self, cert: Option<&Cert>) -> Result<Client, String> {
        let id = cert.map(|c| Identity::from_pem(c.chain.as_bytes(), c.key.as_bytes())).transpose().map_err(err)?;
        Ok(Client::new(Arc::new(client_config(&self.anchor, id.as_ref()).map_err(err)?), Duration::from_secs(3)))
    }
}

/// A server that can be stopped and restarted on its address.
#[derive(Debug)]
pub struct Running {
    /// Bound address.
    pub addr: SocketAddr,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

async fn run<S: Service>(svc: Arc<S>, cert: &Cert, anchor: &TrustAnchor, auth: ClientAuth, addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Running, String> {
    let id = Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).map_err(err)?;
    let tls = Arc::new(server_config(&id, anchor, auth).map_err(err)?);
    let l = bind(addr, "lost").await.map_err(err)?;
    let addr = l.local_addr().map_err(err)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = Limits { drain_grace: Duration::from_millis(100), ..Limits::default() };
    let server = Server::new(svc, Some(tls), Some(anchor.clone()), limits, metrics.clone(), Arc::new(SystemClock));
    let done = tokio::spawn(server.serve(l, async {
        let _ = rx.await;
    }));
    Ok(Running { addr, metrics, stop: Some(tx), done: Some(done) })
}

impl Running {
    /// The LoST endpoint.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        Endpoint::parse(&format!("https://{}/lost", self.addr)).map_err(err)
    }
    /// Stops the server (its connections close).
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
}

/// One authority.
pub struct AuthorityNode {
    /// `+49` or `mail.example`.
    pub key: String,
    /// The core.
    pub core: Arc<Authority<RedbStore>>,
    svc: Arc<AuthorityService<RedbStore>>,
    cert: Cert,
    /// The server.
    pub running: Running,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for AuthorityNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityNode").field("key", &self.key).finish()
    }
}

impl AuthorityNode {
    async fn start(pki: &Pki, id: &str, key: &str, certified_for: &str, ttl: u32, neg: u32) -> Result<AuthorityNode, String> {
        let scope = vec![certified_for.to_owned()];
        let cert = pki.cert(Role::Authority, id, &scope)?;
        let dir = tempfile::tempdir().map_err(err)?;
        let settings = ASettings {
            id: Name::parse(id).map_err(err)?,
            scope: vec![ScopeEntry::parse(key)?],
            mapping_ttl: ttl,
            negative_ttl: neg,
            signature_validity: 7 * DAY,
            renew_before: DAY,
            root: None,
        };
        let signer = Signer::from_pem(cert.key.as_bytes()).map_err(err)?;
        let key_id = signer.key_id().as_str().to_owned();
        let core = Arc::new(Authority::new(settings, RedbStore::open(&dir.path().join("a.redb")).map_err(err)?, signer, Arc::new(SystemClock)).await.map_err(err)?);
        let metrics = Arc::new(Metrics::new());
        let svc = Arc::new(AuthorityService::new(
            core.clone(),
            Limiter::new(LimitSettings { rate: 1e6, burst: 1e6, miss_budget: usize::MAX, miss_window: 60 }),
            FeedSettings { heartbeat: Duration::from_millis(500), page: 512 },
            Bytes::from(cert.chain.clone()),
            key_id,
            metrics.clone(),
        ));
        let running = run(svc.clone(), &cert, &pki.anchor, ClientAuth::Optional, "127.0.0.1:0".parse().map_err(err)?, metrics).await?;
        Ok(AuthorityNode { key: key.to_owned(), core, svc, cert, running, _dir: dir })
    }
    /// Its reference (id + endpoint).
    pub fn reference(&self) -> Result<AuthorityRef, String> {
        Ok(AuthorityRef { id: self.core.settings().id.clone(), endpoints: vec![self.running.endpoint()?] })
    }
    /// Restarts the server on the same address after an outage.
    pub async fn restart(&mut self, pki: &Pki) -> Result<(), String> {
        let (addr, m) = (self.running.addr, self.running.metrics.clone());
        self.running = run(self.svc.clone(), &self.cert, &pki.anchor, ClientAuth::Optional, addr, m).await?;
        Ok(())
    }
}

/// One resolver.
#[derive(Debug)]
pub struct ResolverNode {
    /// The resolver.
    pub resolver: Arc<Resolver>,
    /// Its server.
    pub running: Running,
    /// Its id.
    pub id: Name,
    cert: Cert,
    settings: RSettings,
    limit: f64,
}

impl ResolverNode {
    async fn start(pki: &Pki, cert: Cert, settings: RSettings, limit: f64, addr: SocketAddr, metrics: Arc<Metrics>) -> Result<ResolverNode, String> {
        let ident = Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).map_err(err)?;
        let client = Client::new(Arc::new(client_config(&pki.anchor, Some(&ident)).map_err(err)?), Duration::from_millis(800));
        let r = Resolver::new(settings.clone(), Arc::new(SystemClock), client, pki.anchor.clone(), metrics.clone());
        r.start().await;
        let svc = Arc::new(ResolverService::new(r.clone(), Limiter::new(LimitSettings { rate: limit, burst: limit, miss_budget: usize::MAX, miss_window: 60 })));
        let running = run(svc, &cert, &pki.anchor, ClientAuth::Optional, addr, metrics).await?;
        Ok(ResolverNode { resolver: r, running, id: settings.id.clone(), cert, settings, limit })
    }

    /// Restarts the resolver process: same address and identity, empty
    /// caches, new feed subscriptions.
    pub async fn restart(&mut self, pki: &Pki) -> Result<(), String> {
        self.running.stop().await;
        let (addr, m) = (self.running.addr, self.running.metrics.clone());
        *self = ResolverNode::start(pki, self.cert.clone(), self.settings.clone(), self.limit, addr, m).await?;
        Ok(())
    }
}

/// The whole topology.
pub struct Live {
    /// The PKI.
    pub pki: Pki,
    /// The root.
    pub root: Running,
    root_svc: Arc<RootService>,
    root_cert: Cert,
    /// Authorities.
    pub authorities: Vec<AuthorityNode>,
    /// Resolvers.
    pub resolvers: Vec<ResolverNode>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("authorities", &self.authorities).field("resolvers", &self.resolvers).finish()
    }
}

/// What a topology is built from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// (key the root delegates, what the certificate covers) per authority.
    pub authorities: Vec<(String, String)>,
    /// Resolvers.
    pub resolvers: usize,
    /// Push invalidation (else TTL only).
    pub push: bool,
    /// Mapping lifetime, s.
    pub ttl: u32,
    /// Negative lifetime, s.
    pub neg: u32,
    /// Each resolver's limit per client (queries/s and burst).
    pub per_client_limit: f64,
}

impl Live {
    /// Starts the authorities of `plan`, a root delegating to them, and the
    /// resolvers.
    pub async fn start(plan: &Plan) -> Result<Live, String> {
        let (resolvers, push, ttl, neg) = (plan.resolvers, plan.push, plan.ttl, plan.neg);
        let pki = Pki::new()?;
        let mut authorities = Vec::new();
        for (i, (k, certified)) in plan.authorities.iter().enumerate() {
            let id = format!("dp{i}.testbed.example");
            authorities.push(AuthorityNode::start(&pki, &id, k, certified, ttl, neg).await?);
        }
        let root_cert = pki.cert(Role::Root, "root.testbed.example", &[])?;
        let mut delegations = Vec::new();
        for a in &authorities {
            let cover = if a.key.starts_with('+') {
                Cover::Prefix(E164Prefix::parse(&a.key).map_err(err)?)
            } else {
                Cover::Domain { domain: Domain::parse(&a.key).map_err(err)?, include_subdomains: true }
            };
            delegations.push(Delegation { cover, lifetime: 3600, authorities: vec![a.reference()?] });
        }
        let now = pki.now;
        let mut t = RootTable { source: Name::parse("root.testbed.example").map_err(err)?, serial: 1, valid_until: now.plus_secs(DAY), negative_lifetime: neg, delegations, signature: None };
        Signer::from_pem(root_cert.key.as_bytes()).map_err(err)?.sign_root_table(&mut t, now, now.plus_secs(DAY)).map_err(err)?;
        let mut v = Verifier::new(pki.anchor.clone());
        v.add_pem(root_cert.chain.as_bytes(), now).map_err(err)?;
        let loaded = LoadedTable::load(t.encode().as_bytes(), &v, &t.source, now)?;
        let root_svc = Arc::new(RootService::new(t.source.clone(), loaded));
        let root = run(root_svc.clone(), &root_cert, &pki.anchor, ClientAuth::Required, "127.0.0.1:0".parse().map_err(err)?, Arc::new(Metrics::new())).await?;
        let root_ref = AuthorityRef { id: t.source.clone(), endpoints: vec![root.endpoint()?] };
        let mut rs = Vec::new();
        for i in 0..resolvers {
            let id = format!("resolver{i}.testbed.example");
            let cert = pki.cert(Role::Resolver, &id, &[])?;
            let s = RSettings {
                id: Name::parse(&id).map_err(err)?,
                root: root_ref.clone(),
                root_table_signer: Some(root_cert.chain.clone().into_bytes()),
                root_table_refresh: Duration::from_secs(3600),
                policy: Policy { min_ttl: 1, ..Policy::default() },
                max_entries: 1_000_000,
                upstream_timeout: Duration::from_millis(800),
                failure_recheck: Duration::from_secs(5),
                hot_hits: u32::MAX,
                push,
            };
            rs.push(ResolverNode::start(&pki, cert, s, plan.per_client_limit, "127.0.0.1:0".parse().map_err(err)?, Arc::new(Metrics::new())).await?);
        }
        Ok(Live { pki, root, root_svc, root_cert, authorities, resolvers: rs })
    }

    /// Restarts the root on its address after an outage.
    pub async fn restart_root(&mut self) -> Result<(), String> {
        let (addr, m) = (self.root.addr, self.root.metrics.clone());
        self.root = run(self.root_svc.clone(), &self.root_cert, &self.pki.anchor, ClientAuth::Required, addr, m).await?;
        Ok(())
    }

    /// Stops every server.
    pub async fn stop(&mut self) {
        for r in &mut self.resolvers {
            r.running.stop().await;
        }
        for a in &mut self.authorities {
            a.running.stop().await;
        }
        self.root.stop().await;
    }
}
