//! # signpost-kit — the one test kit
//!
//! A whole topology in one process on 127.0.0.1:0: a generated PKI, a root
//! with a signed table, authorities, and resolvers — the same library code
//! the binaries run, with real TLS (mTLS where the binaries require it),
//! real HTTP/2 and real change feeds. Servers can be stopped and started
//! again on their addresses (outages), resolvers restarted (empty caches).
//!
//! The resolver's topology tests, the benchmarks and the testbed's live
//! mode all build on this crate; it is for tests and tools only (no product
//! crate depends on it).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signpost_authority::core::{Authority, Settings as ASettings};
use signpost_authority::service::{AuthorityService, FeedSettings};
use signpost_authority::store::RedbStore;
use signpost_net::client::Client;
use signpost_net::limits::{LimitSettings, Limiter};
use signpost_net::observe::{Observed, Observer};
use signpost_net::{Limits, Metrics, Server, Service, bind};
use signpost_resolver::core::Policy;
use signpost_resolver::ohttp::{Gateway, KeyFile};
use signpost_resolver::relay::RelayService;
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

pub use signpost_trust::tls::ClientAuth as Auth;

/// Seconds in a day.
pub const DAY: u64 = 86_400;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A certificate and its key (PEM).
#[derive(Debug, Clone)]
pub struct Cert {
    /// Chain.
    pub chain: String,
    /// Key.
    pub key: String,
}

/// The topology's PKI: one CA, certificates valid from a day ago for a week.
#[derive(Debug)]
pub struct Pki {
    ca: Ca,
    /// The trust anchor.
    pub anchor: TrustAnchor,
    /// When the PKI was made.
    pub now: Timestamp,
}

impl Pki {
    /// A fresh CA.
    pub fn new() -> Result<Pki, String> {
        let now = SystemClock.now();
        let ca = Ca::generate("signpost-kit", Timestamp::from_secs(now.as_secs() - DAY), now.plus_secs(7 * DAY)).map_err(err)?;
        Ok(Pki { anchor: TrustAnchor::from_pem(ca.cert_pem().as_bytes()).map_err(err)?, ca, now })
    }
    /// The CA certificate (PEM), for clients that read it from a file.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem().to_owned()
    }
    /// A certificate for a role.
    pub fn cert(&self, role: Role, id: &str, scope: &[&str]) -> Result<Cert, String> {
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
    pub fn peer(&self, role: Role, id: &str, scope: &[&str]) -> Result<Peer, String> {
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

/// Serves `svc` over TLS on `addr` (port 0: any).
pub async fn serve<S: Service>(svc: Arc<S>, cert: &Cert, anchor: &TrustAnchor, auth: ClientAuth, addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Running, String> {
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

/// [`serve`], wrapped in [`Observed`] when an observer is given (every
/// request recorded, as salted hashes).
pub async fn serve_observed<S: Service>(svc: Arc<S>, observer: Option<&Arc<Observer>>, cert: &Cert, anchor: &TrustAnchor, auth: ClientAuth, addr: SocketAddr, metrics: Arc<Metrics>) -> Result<Running, String> {
    match observer {
        Some(o) => serve(Arc::new(Observed::new(svc, o.clone())), cert, anchor, auth, addr, metrics).await,
        None => serve(svc, cert, anchor, auth, addr, metrics).await,
    }
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

/// How an authority is started.
#[derive(Debug, Clone)]
pub struct AuthorityPlan {
    /// Its id.
    pub id: String,
    /// What its certificate covers.
    pub certified: Vec<String>,
    /// What it claims (and answers for): a rogue when it differs.
    pub claims: Vec<String>,
    /// Mapping lifetime, s.
    pub ttl: u32,
    /// Negative lifetime, s.
    pub neg: u32,
    /// Feed heartbeat.
    pub heartbeat: Duration,
    /// Records what it is asked (privacy measurements).
    pub observer: Option<Arc<Observer>>,
}

impl AuthorityPlan {
    /// An honest authority for `scope`.
    pub fn new(id: &str, scope: &str) -> AuthorityPlan {
        AuthorityPlan { id: id.into(), certified: vec![scope.into()], claims: vec![scope.into()], ttl: 3600, neg: 600, heartbeat: Duration::from_millis(200), observer: None }
    }
}

/// One authority.
pub struct AuthorityNode {
    /// The first thing it claims (`+49`, `mail.example`).
    pub key: String,
    /// The core.
    pub core: Arc<Authority<RedbStore>>,
    svc: Arc<AuthorityService<RedbStore>>,
    cert: Cert,
    observer: Option<Arc<Observer>>,
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
    /// Starts an authority on a fresh store.
    pub async fn start(pki: &Pki, p: &AuthorityPlan) -> Result<AuthorityNode, String> {
        let certified: Vec<&str> = p.certified.iter().map(String::as_str).collect();
        let cert = pki.cert(Role::Authority, &p.id, &certified)?;
        let dir = tempfile::tempdir().map_err(err)?;
        let settings = ASettings {
            id: Name::parse(&p.id).map_err(err)?,
            scope: p.claims.iter().map(|s| ScopeEntry::parse(s)).collect::<Result<_, _>>()?,
            mapping_ttl: p.ttl,
            negative_ttl: p.neg,
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
            FeedSettings { heartbeat: p.heartbeat, page: 512 },
            Bytes::from(cert.chain.clone()),
            key_id,
            metrics.clone(),
        ));
        let running = serve_observed(svc.clone(), p.observer.as_ref(), &cert, &pki.anchor, ClientAuth::Optional, "127.0.0.1:0".parse().map_err(err)?, metrics).await?;
        Ok(AuthorityNode { key: p.claims.first().cloned().unwrap_or_default(), core, svc, cert, observer: p.observer.clone(), running, _dir: dir })
    }
    /// Its reference (id + endpoint).
    pub fn reference(&self) -> Result<AuthorityRef, String> {
        Ok(AuthorityRef { id: self.core.settings().id.clone(), endpoints: vec![self.running.endpoint()?] })
    }
    /// Its id.
    pub fn id(&self) -> Name {
        self.core.settings().id.clone()
    }
    /// Restarts the server on the same address after an outage.
    pub async fn restart(&mut self, pki: &Pki) -> Result<(), String> {
        let (addr, m) = (self.running.addr, self.running.metrics.clone());
        self.running = serve_observed(self.svc.clone(), self.observer.as_ref(), &self.cert, &pki.anchor, ClientAuth::Optional, addr, m).await?;
        Ok(())
    }
}

/// A delegation of `key` (`+49` or a domain, with subdomains) to `a`.
pub fn delegation(key: &str, a: AuthorityRef, lifetime: u32) -> Result<Delegation, String> {
    let cover = if key.starts_with('+') { Cover::Prefix(E164Prefix::parse(key).map_err(err)?) } else { Cover::Domain { domain: Domain::parse(key).map_err(err)?, include_subdomains: true } };
    Ok(Delegation { cover, lifetime, authorities: vec![a] })
}

/// The root.
pub struct RootNode {
    /// Its id.
    pub id: Name,
    /// The signed table it serves.
    pub table: RootTable,
    /// The root operator's certificate (it signs the table).
    pub cert: Cert,
    svc: Arc<RootService>,
    observer: Option<Arc<Observer>>,
    /// The server.
    pub running: Running,
}

impl std::fmt::Debug for RootNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootNode").field("id", &self.id).finish()
    }
}

impl RootNode {
    /// A root with a table of `delegations`, signed, valid for `valid_for` seconds.
    pub async fn start(pki: &Pki, id: &str, delegations: Vec<Delegation>, negative_lifetime: u32, valid_for: u64) -> Result<RootNode, String> {
        RootNode::start_observed(pki, id, delegations, negative_lifetime, valid_for, None).await
    }

    /// [`RootNode::start`], recording what it is asked in `observer`.
    pub async fn start_observed(pki: &Pki, id: &str, delegations: Vec<Delegation>, negative_lifetime: u32, valid_for: u64, observer: Option<Arc<Observer>>) -> Result<RootNode, String> {
        let cert = pki.cert(Role::Root, id, &[])?;
        let now = pki.now;
        let mut t = RootTable { source: Name::parse(id).map_err(err)?, serial: 1, valid_until: now.plus_secs(valid_for), negative_lifetime, delegations, signature: None };
        Signer::from_pem(cert.key.as_bytes()).map_err(err)?.sign_root_table(&mut t, now, now.plus_secs(valid_for)).map_err(err)?;
        let mut v = Verifier::new(pki.anchor.clone());
        v.add_pem(cert.chain.as_bytes(), now).map_err(err)?;
        let loaded = LoadedTable::load(t.encode().as_bytes(), &v, &t.source, now)?;
        let svc = Arc::new(RootService::new(t.source.clone(), loaded));
        let running = serve_observed(svc.clone(), observer.as_ref(), &cert, &pki.anchor, ClientAuth::Required, "127.0.0.1:0".parse().map_err(err)?, Arc::new(Metrics::new())).await?;
        Ok(RootNode { id: t.source.clone(), table: t, cert, svc, observer, running })
    }
    /// Its reference.
    pub fn reference(&self) -> Result<AuthorityRef, String> {
        Ok(AuthorityRef { id: self.id.clone(), endpoints: vec![self.running.endpoint()?] })
    }
    /// Restarts the server on its address after an outage.
    pub async fn restart(&mut self, pki: &Pki) -> Result<(), String> {
        let (addr, m) = (self.running.addr, self.running.metrics.clone());
        self.running = serve_observed(self.svc.clone(), self.observer.as_ref(), &self.cert, &pki.anchor, ClientAuth::Required, addr, m).await?;
        Ok(())
    }
}

/// How a resolver is started.
#[derive(Clone)]
pub struct ResolverPlan {
    /// Its id.
    pub id: String,
    /// Push invalidation (else TTL only).
    pub push: bool,
    /// Lifetimes and depth.
    pub policy: Policy,
    /// Preload the root's signed table.
    pub preload: bool,
    /// Client certificates from APs.
    pub client_auth: ClientAuth,
    /// The resolver's clock.
    pub clock: Arc<dyn Clock>,
    /// Queries per second (and burst) per client.
    pub per_client_limit: f64,
    /// Hits that make an entry hot (refreshed ahead after an invalidation).
    pub hot_hits: u32,
    /// Where the verified root table is kept between runs.
    pub table_cache: Option<PathBuf>,
    /// Client response timer.
    pub client_timeout: Duration,
    /// One upstream attempt.
    pub attempt_timeout: Duration,
    /// Failure recheck.
    pub failure_recheck: Duration,
    /// Also an Oblivious HTTP gateway with these keys.
    pub gateway: Option<Arc<Gateway>>,
    /// Records what it is asked, directly or through the gateway.
    pub observer: Option<Arc<Observer>>,
}

impl std::fmt::Debug for ResolverPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverPlan").field("id", &self.id).field("push", &self.push).finish()
    }
}

impl ResolverPlan {
    /// A resolver with the product's defaults, a real clock and the root table preloaded.
    pub fn new(id: &str) -> ResolverPlan {
        ResolverPlan {
            id: id.into(),
            push: true,
            policy: Policy::default(),
            preload: true,
            client_auth: ClientAuth::Optional,
            clock: Arc::new(SystemClock),
            per_client_limit: 1e6,
            hot_hits: u32::MAX,
            table_cache: None,
            client_timeout: Duration::from_millis(1800),
            attempt_timeout: Duration::from_millis(800),
            failure_recheck: Duration::from_secs(30),
            gateway: None,
            observer: None,
        }
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
    plan: ResolverPlan,
    root: AuthorityRef,
    root_signer: String,
}

impl ResolverNode {
    /// Starts a resolver that uses `root`.
    pub async fn start(pki: &Pki, root: &RootNode, plan: ResolverPlan) -> Result<ResolverNode, String> {
        let cert = pki.cert(Role::Resolver, &plan.id, &[])?;
        ResolverNode::start_with(pki, cert, plan, root.reference()?, root.cert.chain.clone(), "127.0.0.1:0".parse().map_err(err)?, Arc::new(Metrics::new())).await
    }

    async fn start_with(pki: &Pki, cert: Cert, plan: ResolverPlan, root: AuthorityRef, root_signer: String, addr: SocketAddr, metrics: Arc<Metrics>) -> Result<ResolverNode, String> {
        let ident = Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).map_err(err)?;
        let client = Client::new(Arc::new(client_config(&pki.anchor, Some(&ident)).map_err(err)?), plan.attempt_timeout);
        let settings = RSettings {
            id: Name::parse(&plan.id).map_err(err)?,
            root: root.clone(),
            root_table_signer: plan.preload.then(|| root_signer.clone().into_bytes()),
            root_table_refresh: Duration::from_secs(3600),
            root_table_cache: plan.table_cache.clone(),
            policy: plan.policy,
            max_entries: 1_000_000,
            max_bytes: 1 << 30,
            upstream_timeout: plan.client_timeout,
            attempt_timeout: plan.attempt_timeout,
            failure_recheck: plan.failure_recheck,
            hot_hits: plan.hot_hits,
            push: plan.push,
        };
        let r = Resolver::new(settings, plan.clock.clone(), client, pki.anchor.clone(), metrics.clone())?;
        r.start().await;
        let limit = plan.per_client_limit;
        let mut svc = ResolverService::new(r.clone(), Limiter::new(LimitSettings { rate: limit, burst: limit, miss_budget: usize::MAX, miss_window: 60 }));
        if let Some(g) = &plan.gateway {
            g.register(&metrics);
            svc = svc.with_gateway(g.clone());
        }
        if let Some(o) = &plan.observer {
            svc = svc.with_observer(o.clone());
        }
        let svc = Arc::new(svc);
        let running = serve(svc, &cert, &pki.anchor, plan.client_auth, addr, metrics).await?;
        Ok(ResolverNode { resolver: r, running, id: Name::parse(&plan.id).map_err(err)?, cert, plan, root, root_signer })
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.running.metrics
    }

    /// Restarts the resolver process: same address and identity, empty
    /// caches, new feed subscriptions (the kept root table, if any, is
    /// read again).
    pub async fn restart(&mut self, pki: &Pki) -> Result<(), String> {
        self.running.stop().await;
        self.resolver.shutdown();
        // The same metrics registry: the testbed sums a resolver's counters
        // over a run that restarts it.
        let (addr, m) = (self.running.addr, self.running.metrics.clone());
        *self = ResolverNode::start_with(pki, self.cert.clone(), self.plan.clone(), self.root.clone(), self.root_signer.clone(), addr, m).await?;
        Ok(())
    }

    /// Stops it.
    pub async fn stop(&mut self) {
        self.running.stop().await;
        self.resolver.shutdown();
    }
}

/// An Oblivious HTTP relay in front of one resolver's gateway, with its
/// own certificate (role resolver) and per-AP limits.
#[derive(Debug)]
pub struct RelayNode {
    /// Its id.
    pub id: Name,
    /// The service (its forwarding records).
    pub svc: Arc<RelayService>,
    /// The server.
    pub running: Running,
}

impl RelayNode {
    /// A relay `id` forwarding to `gateway`'s Oblivious HTTP gateway,
    /// allowing `per_ap_limit` requests per second (and burst) per AP.
    pub async fn start(pki: &Pki, id: &str, gateway: &ResolverNode, per_ap_limit: f64, observer: Option<Arc<Observer>>) -> Result<RelayNode, String> {
        let cert = pki.cert(Role::Resolver, id, &[])?;
        let gw = Endpoint::parse(&format!("https://{}{}", gateway.running.addr, signpost_resolver::ohttp::GATEWAY_PATH)).map_err(err)?;
        let limiter = Limiter::new(LimitSettings { rate: per_ap_limit, burst: per_ap_limit, miss_budget: usize::MAX, miss_window: 60 });
        let id = Name::parse(id).map_err(err)?;
        let svc = Arc::new(RelayService::new(id.clone(), pki.client(Some(&cert))?, gw, gateway.id.clone(), limiter));
        let metrics = Arc::new(Metrics::new());
        svc.register(&metrics);
        let running = serve_observed(svc.clone(), observer.as_ref(), &cert, &pki.anchor, ClientAuth::Required, "127.0.0.1:0".parse().map_err(err)?, metrics).await?;
        Ok(RelayNode { id, svc, running })
    }
    /// Its `POST /relay` resource.
    pub fn url(&self) -> Result<Endpoint, String> {
        Endpoint::parse(&format!("https://{}{}", self.running.addr, signpost_resolver::relay::RELAY_PATH)).map_err(err)
    }
}

/// One recorder per tier (what each saw, as salted hashes).
#[derive(Debug, Default, Clone)]
pub struct Observers {
    /// The root.
    pub root: Arc<Observer>,
    /// Every authority.
    pub authority: Arc<Observer>,
    /// Every resolver (direct requests and those its gateway opened).
    pub resolver: Arc<Observer>,
    /// Every relay.
    pub relay: Arc<Observer>,
}

/// Reads a counter or gauge from rendered metrics (0 when absent).
pub fn metric(m: &Metrics, name: &str) -> u64 {
    m.render()
        .lines()
        .find(|l| l.starts_with(name) && l.get(name.len()..).is_some_and(|r| r.starts_with(' ')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The whole topology of the testbed: one authority per country or domain.
pub struct Live {
    /// The PKI.
    pub pki: Pki,
    /// The root.
    pub root: RootNode,
    /// Authorities.
    pub authorities: Vec<AuthorityNode>,
    /// Resolvers.
    pub resolvers: Vec<ResolverNode>,
    /// With [`Plan::relay`]: one relay per resolver, in the same order.
    pub relays: Vec<RelayNode>,
    /// With [`Plan::observe`]: what each tier saw.
    pub observers: Option<Observers>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("authorities", &self.authorities).field("resolvers", &self.resolvers).finish()
    }
}

/// What a [`Live`] topology is built from.
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
    /// Each resolver's limit per client (queries/s and burst); with
    /// `relay`, each relay's limit per AP (the resolvers then do not limit:
    /// a relay is one client carrying all its APs).
    pub per_client_limit: f64,
    /// Each resolver is also an Oblivious HTTP gateway with a relay of
    /// its own in front (`relay{i}.testbed.example`).
    pub relay: bool,
    /// Every server records what it is asked ([`Live::observers`]).
    pub observe: bool,
}

impl Live {
    /// Starts the authorities of `plan`, a root delegating to them, and the
    /// resolvers.
    pub async fn start(plan: &Plan) -> Result<Live, String> {
        let pki = Pki::new()?;
        let observers = plan.observe.then(Observers::default);
        let mut authorities = Vec::new();
        for (i, (k, certified)) in plan.authorities.iter().enumerate() {
            let observer = observers.as_ref().map(|o| o.authority.clone());
            let p = AuthorityPlan { id: format!("dp{i}.testbed.example"), certified: vec![certified.clone()], claims: vec![k.clone()], ttl: plan.ttl, neg: plan.neg, heartbeat: Duration::from_millis(500), observer };
            authorities.push(AuthorityNode::start(&pki, &p).await?);
        }
        let mut delegations = Vec::new();
        for a in &authorities {
            delegations.push(delegation(&a.key, a.reference()?, 3600)?);
        }
        let root = RootNode::start_observed(&pki, "root.testbed.example", delegations, plan.neg, DAY, observers.as_ref().map(|o| o.root.clone())).await?;
        let mut resolvers = Vec::new();
        let mut relays = Vec::new();
        for i in 0..plan.resolvers {
            let mut rp = ResolverPlan::new(&format!("resolver{i}.testbed.example"));
            rp.push = plan.push;
            rp.policy = Policy { min_ttl: 1, ..Policy::default() };
            rp.failure_recheck = Duration::from_secs(5);
            rp.per_client_limit = if plan.relay { 1e6 } else { plan.per_client_limit };
            rp.observer = observers.as_ref().map(|o| o.resolver.clone());
            if plan.relay {
                // A fresh gateway key, made as `ohttp-keygen` makes one.
                let mut keys = KeyFile::default();
                keys.rotate(1, pki.now.as_secs());
                rp.gateway = Some(Arc::new(Gateway::with_keys(keys.gateway_keys()?, 600)));
            }
            let node = ResolverNode::start(&pki, &root, rp).await?;
            if plan.relay {
                relays.push(RelayNode::start(&pki, &format!("relay{i}.testbed.example"), &node, plan.per_client_limit, observers.as_ref().map(|o| o.relay.clone())).await?);
            }
            resolvers.push(node);
        }
        Ok(Live { pki, root, authorities, resolvers, relays, observers })
    }

    /// Restarts the root on its address after an outage.
    pub async fn restart_root(&mut self) -> Result<(), String> {
        self.root.restart(&self.pki).await
    }

    /// Stops every server.
    pub async fn stop(&mut self) {
        for r in &mut self.relays {
            r.running.stop().await;
        }
        for r in &mut self.resolvers {
            r.stop().await;
        }
        for a in &mut self.authorities {
            a.running.stop().await;
        }
        self.root.running.stop().await;
    }
}
