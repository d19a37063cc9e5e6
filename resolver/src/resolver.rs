//! The async driver around the decision core: caches (answers, delegations,
//! certificates), the preloaded root table, upstream queries with failover
//! and RTT-aware endpoint choice, single-flight misses, change-feed
//! subscriptions, and serve-stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use signpost_net::client::Client;
use signpost_net::{Failure, LostReply, Metrics};
use signpost_schemas::lost::{AuthorityRef, Delegation, Endpoint, SERVICE_MIMI, StaleAnswer, Warnings};
use signpost_schemas::route::RoutingTable;
use signpost_schemas::sp::{FeedFrame, RootTable, Subject};
use signpost_schemas::{Clock, Csi, Errors, Expires, FindService, FindServiceResponse, IssueList, Limits, Name, Response, Timestamp};
use signpost_trust::TrustAnchor;
use signpost_trust::sign::Verifier;
use tokio::sync::watch;

use crate::core::{Outcome, Policy, Step, Walk};

/// Runtime settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The resolver's id (its `via`).
    pub id: Name,
    /// The root.
    pub root: AuthorityRef,
    /// PEM of the certificate that signs the root table (role root); with
    /// it the table is preloaded and refreshed.
    pub root_table_signer: Option<Vec<u8>>,
    /// How often the preloaded table is refreshed.
    pub root_table_refresh: Duration,
    /// Lifetimes.
    pub policy: Policy,
    /// Cached answers at most.
    pub max_entries: u64,
    /// Time an upstream query may take before stale data is served (RFC
    /// 8767's client response timer).
    pub upstream_timeout: Duration,
    /// After an authority failed, it is not asked again for this long
    /// (RFC 8767's failure recheck timer); stale answers are served.
    pub failure_recheck: Duration,
    /// Hits after which an invalidated entry is refreshed at once.
    pub hot_hits: u32,
    /// Subscribe to authorities' change feeds (push invalidation). Off,
    /// answers live until their lifetime ends, as with DNS/ENUM today.
    pub push: bool,
}

/// A cached answer.
#[derive(Debug)]
struct Cached {
    /// The encoded document as served to clients (for `loc`).
    body: Bytes,
    loc: String,
    found: Option<FindServiceResponse>,
    request: FindService,
    fresh_until: Timestamp,
    stale_until: Timestamp,
    stored_at: Timestamp,
    authority: Name,
    hits: AtomicU32,
}

type Inflight = watch::Receiver<Option<Result<Arc<Cached>, Failure>>>;

struct Counters {
    hits: &'static AtomicU64,
    misses: &'static AtomicU64,
    stale: &'static AtomicU64,
    up_ok: &'static AtomicU64,
    up_fail: &'static AtomicU64,
    rejected: &'static AtomicU64,
    invalidations: &'static AtomicU64,
    hit_latency: &'static signpost_net::metrics::Histogram,
    miss_latency: &'static signpost_net::metrics::Histogram,
}

/// The resolver.
pub struct Resolver {
    s: Settings,
    clock: Arc<dyn Clock>,
    client: Client,
    verifier: RwLock<Verifier>,
    answers: moka::sync::Cache<String, Arc<Cached>>,
    by_csi: Mutex<HashMap<String, Vec<String>>>,
    delegations: RwLock<RoutingTable<(Delegation, Timestamp)>>,
    preloaded: RwLock<Option<(RoutingTable<Delegation>, Timestamp)>>,
    inflight: Mutex<HashMap<String, Inflight>>,
    down: Mutex<HashMap<Name, Timestamp>>,
    rtt: Mutex<HashMap<String, f64>>,
    feeds: Mutex<HashMap<Name, u64>>,
    cert_pems: Mutex<HashMap<String, Bytes>>,
    metrics: Arc<Metrics>,
    c: Counters,
    me: Weak<Resolver>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("id", &self.s.id).finish()
    }
}

/// Memory reclamation for the answer cache: an entry lives until its
/// stale window ends (freshness itself is checked against the resolver's
/// clock on every read).
struct Lifetime;

impl moka::Expiry<String, Arc<Cached>> for Lifetime {
    fn expire_after_create(&self, _k: &String, v: &Arc<Cached>, _at: Instant) -> Option<Duration> {
        Some(Duration::from_millis(v.stale_until.millis_since(v.stored_at).max(1000)))
    }
    // moka keeps the old deadline on update unless this is implemented
    // (shared/reference/crates.md §3.4).
    fn expire_after_update(&self, k: &String, v: &Arc<Cached>, at: Instant, _left: Option<Duration>) -> Option<Duration> {
        self.expire_after_create(k, v, at)
    }
}

fn cache_key(csi: &Csi, f: &FindService) -> String {
    let mut k = String::with_capacity(64);
    k.push_str(csi.uri());
    if let Some(c) = &f.context {
        k.push('|');
        if let Some(s) = &c.sender_provider {
            k.push_str(s.as_str());
        }
        let mut tags: Vec<&str> = c.tags.iter().map(|t| t.as_str()).collect();
        tags.sort_unstable();
        for t in tags {
            k.push('|');
            k.push_str(t);
        }
    }
    if let Some(s) = &f.service {
        k.push('#');
        k.push_str(s.as_str());
    }
    k
}

impl Resolver {
    /// A resolver; call [`Resolver::start`] to preload the root table.
    pub fn new(s: Settings, clock: Arc<dyn Clock>, client: Client, anchor: TrustAnchor, metrics: Arc<Metrics>) -> Arc<Resolver> {
        let c = Counters {
            hits: metrics.counter("signpost_resolver_cache_hits_total"),
            misses: metrics.counter("signpost_resolver_cache_misses_total"),
            stale: metrics.counter("signpost_resolver_stale_answers_total"),
            up_ok: metrics.counter("signpost_resolver_upstream_queries_total{outcome=\"ok\"}"),
            up_fail: metrics.counter("signpost_resolver_upstream_queries_total{outcome=\"failed\"}"),
            rejected: metrics.counter("signpost_resolver_rejected_answers_total"),
            invalidations: metrics.counter("signpost_resolver_invalidations_total"),
            hit_latency: metrics.histogram("signpost_resolver_hit_duration_seconds"),
            miss_latency: metrics.histogram("signpost_resolver_miss_duration_seconds"),
        };
        Arc::new_cyclic(|me| {
            let me2: Weak<Resolver> = me.clone();
            let answers = moka::sync::Cache::builder()
                .max_capacity(s.max_entries)
                .expire_after(Lifetime)
                .support_invalidation_closures()
                .eviction_listener(move |k: Arc<String>, v: Arc<Cached>, _cause| {
                    if let Some(r) = me2.upgrade()
                        && let Some(csi) = v.request.csi_location().ok().map(|(_, c)| c.uri().to_owned())
                        && let Ok(mut g) = r.by_csi.lock()
                        && let Some(list) = g.get_mut(&csi)
                    {
                        list.retain(|x| x.as_str() != k.as_str());
                        if list.is_empty() {
                            g.remove(&csi);
                        }
                    }
                })
                .build();
            Resolver {
                verifier: RwLock::new(Verifier::new(anchor)),
                answers,
                by_csi: Mutex::new(HashMap::new()),
                delegations: RwLock::new(RoutingTable::new()),
                preloaded: RwLock::new(None),
                inflight: Mutex::new(HashMap::new()),
                down: Mutex::new(HashMap::new()),
                rtt: Mutex::new(HashMap::new()),
                feeds: Mutex::new(HashMap::new()),
                cert_pems: Mutex::new(HashMap::new()),
                metrics,
                c,
                s,
                clock,
                client,
                me: me.clone(),
            }
        })
    }

    /// Preloads the root table (if a signer is configured) and keeps it
    /// fresh in the background.
    pub async fn start(self: &Arc<Self>) {
        if self.s.root_table_signer.is_none() {
            return;
        }
        if let Err(e) = self.refresh_root_table().await {
            tracing::warn!("root table preload failed (will query the root instead): {e}");
        }
        let me = Arc::downgrade(self);
        let every = self.s.root_table_refresh;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(r) = me.upgrade() else { return };
                if let Err(e) = r.refresh_root_table().await {
                    tracing::warn!("root table refresh failed: {e}");
                }
            }
        });
    }

    /// Fetches and verifies the root table now.
    pub async fn refresh_root_table(&self) -> Result<u64, String> {
        let signer = self.s.root_table_signer.as_ref().ok_or("no root table signer configured")?;
        let now = self.clock.now();
        let mut last = String::from("no endpoint");
        for ep in &self.s.root.endpoints {
            match self.client.get(ep, &self.s.root.id, "/root-table", &[]).await {
                Ok(a) if a.status == 200 => {
                    let t = RootTable::decode(&a.body, &Limits::DOCUMENT).map_err(|e| format!("root table: {e}"))?;
                    let mut v = match self.verifier.write() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    v.add_pem(signer, now).map_err(|e| format!("root table signer: {e}"))?;
                    v.verify_root_table(&t, now).map_err(|e| format!("root table: {e}"))?;
                    drop(v);
                    if t.source != self.s.root.id {
                        return Err(format!("root table of {} is not from {}", t.source, self.s.root.id));
                    }
                    let mut table = RoutingTable::new();
                    for d in &t.delegations {
                        table.insert(d.cover.clone(), d.clone());
                    }
                    let mut g = match self.preloaded.write() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    *g = Some((table, t.valid_until));
                    tracing::info!(serial = t.serial, delegations = t.delegations.len(), "root table preloaded");
                    return Ok(t.serial);
                }
                Ok(a) => last = format!("HTTP {}", a.status),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// Cached answers now (approximate).
    pub fn cache_len(&self) -> u64 {
        self.answers.run_pending_tasks();
        self.answers.entry_count()
    }

    fn known_delegation(&self, csi: &Csi, now: Timestamp) -> Option<Delegation> {
        if let Ok(g) = self.delegations.read()
            && let Some((d, until)) = g.lookup_value(csi)
            && *until > now
        {
            return Some(d.clone());
        }
        if let Ok(g) = self.preloaded.read()
            && let Some((t, valid_until)) = g.as_ref()
            && *valid_until > now
        {
            return t.lookup_value(csi).cloned();
        }
        None
    }

    /// Answers a client's findService.
    pub async fn resolve(&self, f: FindService) -> Result<LostReply, Failure> {
        let start = Instant::now();
        if let Some(s) = &f.service
            && s.as_str() != SERVICE_MIMI
        {
            return Err(Failure::ServiceNotImplemented(format!("{} resolves {SERVICE_MIMI} only", self.s.id)));
        }
        let (loc, csi) = f.csi_location().map_err(Failure::ProfileUnrecognized)?;
        let (loc, csi) = (loc.to_owned(), csi.clone());
        if f.path.as_ref().is_some_and(|p| p.contains(&self.s.id)) {
            return Err(Failure::Loop(format!("{} is already in the path", self.s.id)));
        }
        let key = cache_key(&csi, &f);
        let now = self.clock.now();
        let cached = self.answers.get(&key);
        if let Some(c) = &cached
            && now <= c.fresh_until
        {
            c.hits.fetch_add(1, Ordering::Relaxed);
            self.c.hits.fetch_add(1, Ordering::Relaxed);
            let r = self.serve(c, &loc);
            self.c.hit_latency.observe_us(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
            return Ok(r);
        }
        self.c.misses.fetch_add(1, Ordering::Relaxed);
        // An authority inside its failure-recheck window is not asked again.
        if let Some(c) = &cached
            && self.is_down(&c.authority, now)
            && self.s.policy.may_serve_stale(c.fresh_until, now)
        {
            return Ok(self.serve_stale(c, &loc, now));
        }
        // The miss path's future is large (the whole upstream walk); boxing
        // it keeps the hit path's future small, which every request's task
        // is moved with.
        let result = Box::pin(self.single_flight(&key, &f, &csi)).await;
        self.c.miss_latency.observe_us(u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
        match result {
            Ok(c) => Ok(self.serve(&c, &loc)),
            Err(Failure::ServerTimeout(m)) => match &cached {
                Some(c) if self.s.policy.may_serve_stale(c.fresh_until, self.clock.now()) => Ok(self.serve_stale(c, &loc, self.clock.now())),
                _ => Err(Failure::ServerTimeout(m)),
            },
            Err(e) => Err(e),
        }
    }

    fn serve(&self, c: &Cached, loc: &str) -> LostReply {
        if c.loc == loc {
            let outcome = if c.found.is_some() { "found" } else { "notFound" };
            return LostReply::Encoded { body: c.body.clone(), outcome };
        }
        match &c.found {
            Some(f) => {
                let mut f = f.clone();
                f.location_used = Some(loc.to_owned());
                LostReply::Response(Response::Found(f))
            }
            None => LostReply::Encoded { body: c.body.clone(), outcome: "notFound" },
        }
    }

    fn serve_stale(&self, c: &Cached, loc: &str, now: Timestamp) -> LostReply {
        let Some(found) = &c.found else {
            return LostReply::Encoded { body: c.body.clone(), outcome: "notFound" };
        };
        self.c.stale.fetch_add(1, Ordering::Relaxed);
        let mut f = found.clone();
        for m in &mut f.mappings {
            m.expires = Expires::At(now.plus_secs(self.s.policy.stale_ttl));
        }
        f.warnings.push(Warnings {
            source: self.s.id.clone(),
            list: IssueList::new(),
            stale: Some(StaleAnswer { authority: c.authority.clone(), expired_at: c.fresh_until }),
        });
        f.location_used = Some(loc.to_owned());
        LostReply::Response(Response::Found(f))
    }

    /// Concurrent misses for one key make one upstream resolution.
    async fn single_flight(&self, key: &str, f: &FindService, csi: &Csi) -> Result<Arc<Cached>, Failure> {
        let (tx, mut rx) = {
            let mut g = match self.inflight.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            match g.get(key) {
                Some(rx) => (None, rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    g.insert(key.to_owned(), rx.clone());
                    (Some(tx), rx)
                }
            }
        };
        let Some(tx) = tx else {
            return match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().unwrap_or_else(|| Err(Failure::Internal("lost result".into()))),
                Err(_) => Err(Failure::Internal("the resolution in progress was dropped".into())),
            };
        };
        let r = self.resolve_upstream(key, f, csi).await;
        let _ = tx.send(Some(r.clone()));
        if let Ok(mut g) = self.inflight.lock() {
            g.remove(key);
        }
        r
    }

    async fn resolve_upstream(&self, key: &str, f: &FindService, csi: &Csi) -> Result<Arc<Cached>, Failure> {
        let mut walk = Walk::new(f, csi.clone(), self.s.id.clone(), self.s.policy)?;
        let now = self.clock.now();
        let known = self.known_delegation(csi, now);
        let mut step = walk.start(known.as_ref(), &self.s.root);
        let mut refs: HashMap<Name, AuthorityRef> = HashMap::new();
        loop {
            match step {
                Step::Done(outcome) => return self.store(key, f, outcome, &refs),
                Step::Ask { targets, request, learned } => {
                    if let Some((d, until)) = learned
                        && let Ok(mut g) = self.delegations.write()
                    {
                        if g.len() > 100_000 {
                            *g = RoutingTable::new();
                        }
                        g.insert(d.cover.clone(), (d, until));
                    }
                    for t in &targets {
                        refs.insert(t.id.clone(), t.clone());
                    }
                    let (from, resp) = self.ask(&targets, &request).await?;
                    if let Response::Found(found) = &resp
                        && let Some(a) = refs.get(&from).cloned()
                    {
                        self.ensure_certs(&a, found).await;
                    }
                    let now = self.clock.now();
                    let v = match self.verifier.read() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    step = walk.on_response(&from, resp, now, &|csi, m| v.verify_mapping(csi, m, now).map(|_| ()).map_err(|e| e.to_string()));
                    if let Step::Done(Outcome::Fail(Failure::ServerError(m))) = &step
                        && m.contains("rejected")
                    {
                        self.c.rejected.fetch_add(1, Ordering::Relaxed);
                        // The reason may name the identifier: debug only.
                        tracing::warn!(authority = %from, csi = %signpost_net::csi_tag(csi.uri()), "answer rejected");
                        tracing::debug!("{m}");
                    }
                }
            }
        }
    }

    fn store(&self, key: &str, f: &FindService, outcome: Outcome, refs: &HashMap<Name, AuthorityRef>) -> Result<Arc<Cached>, Failure> {
        let now = self.clock.now();
        let loc = f.csi_location().map(|(l, _)| l.to_owned()).unwrap_or_default();
        let (cached, authority) = match outcome {
            Outcome::Fail(e) => return Err(e),
            Outcome::Found { mut response, fresh_until, authority } => {
                let until = fresh_until.unwrap_or(now);
                for m in &mut response.mappings {
                    m.expires = if fresh_until.is_some() { Expires::At(until) } else { Expires::NoCache };
                }
                response.location_used = Some(loc.clone());
                let body = Bytes::from(Response::Found(response.clone()).encode());
                let c = Arc::new(Cached {
                    body,
                    loc,
                    found: Some(response),
                    request: f.clone(),
                    fresh_until: until,
                    stale_until: until.plus_secs(self.s.policy.max_stale),
                    stored_at: now,
                    authority: authority.clone(),
                    hits: AtomicU32::new(0),
                });
                if fresh_until.is_none() {
                    return Ok(c);
                }
                (c, authority)
            }
            Outcome::NotFound { mut errors, until, authority } => {
                errors.negative_lifetime = Some(u32::try_from(until.millis_since(now) / 1000).unwrap_or(u32::MAX));
                let body = Bytes::from(Response::Errors(errors).encode());
                let c = Arc::new(Cached { body, loc, found: None, request: f.clone(), fresh_until: until, stale_until: until, stored_at: now, authority: authority.clone(), hits: AtomicU32::new(0) });
                (c, authority)
            }
        };
        let csi = f.csi_location().map(|(_, c)| c.uri().to_owned()).unwrap_or_default();
        if let Ok(mut g) = self.by_csi.lock() {
            let list = g.entry(csi).or_default();
            if !list.iter().any(|k| k == key) {
                list.push(key.to_owned());
            }
        }
        self.answers.insert(key.to_owned(), cached.clone());
        if let Some(a) = refs.get(&authority) {
            self.ensure_feed(a.clone());
        }
        Ok(cached)
    }

    fn is_down(&self, a: &Name, now: Timestamp) -> bool {
        self.down.lock().ok().and_then(|g| g.get(a).copied()).is_some_and(|until| now < until)
    }

    /// Asks the targets in order, each endpoint fastest first; the first
    /// answer wins. Authorities inside their failure-recheck window are
    /// tried last.
    async fn ask(&self, targets: &[AuthorityRef], req: &FindService) -> Result<(Name, Response), Failure> {
        let body = Bytes::from(signpost_schemas::Request::FindService(req.clone()).encode());
        let now = self.clock.now();
        let mut order: Vec<&AuthorityRef> = targets.iter().collect();
        order.sort_by_key(|a| self.is_down(&a.id, now));
        let mut last = String::from("no authority to ask");
        for a in order {
            let mut eps: Vec<&Endpoint> = a.endpoints.iter().collect();
            if let Ok(g) = self.rtt.lock() {
                eps.sort_by(|x, y| {
                    let rx = g.get(x.as_str()).copied().unwrap_or(0.0);
                    let ry = g.get(y.as_str()).copied().unwrap_or(0.0);
                    rx.total_cmp(&ry)
                });
            }
            for ep in eps {
                let t = Instant::now();
                match tokio::time::timeout(self.s.upstream_timeout, self.client.post_lost(ep, &a.id, body.clone())).await {
                    Ok(Ok(ans)) => {
                        let ms = t.elapsed().as_secs_f64() * 1000.0;
                        if let Ok(mut g) = self.rtt.lock() {
                            let e = g.entry(ep.as_str().to_owned()).or_insert(ms);
                            *e = *e * 0.8 + ms * 0.2;
                        }
                        if let Ok(mut g) = self.down.lock() {
                            g.remove(&a.id);
                        }
                        self.c.up_ok.fetch_add(1, Ordering::Relaxed);
                        return match Response::decode(&ans.body, &Limits::MESSAGE) {
                            Ok(r) => Ok((a.id.clone(), r)),
                            Err(e) => Err(Failure::ServerError(format!("{} sent an answer that does not decode: {e}", a.id))),
                        };
                    }
                    Ok(Err(e)) => last = format!("{} at {}: {e}", a.id, ep.as_str()),
                    Err(_) => last = format!("{} at {}: no answer within {:?}", a.id, ep.as_str(), self.s.upstream_timeout),
                }
                self.c.up_fail.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut g) = self.rtt.lock() {
                    g.insert(ep.as_str().to_owned(), 1e9);
                }
            }
            if let Ok(mut g) = self.down.lock() {
                g.insert(a.id.clone(), now.plus_millis(u64::try_from(self.s.failure_recheck.as_millis()).unwrap_or(u64::MAX)));
            }
        }
        Err(Failure::ServerTimeout(last))
    }

    /// Fetches the signing certificates of an answer's mappings that are
    /// not known yet (`GET /certs/{keyId}` at the answering authority).
    async fn ensure_certs(&self, a: &AuthorityRef, f: &FindServiceResponse) {
        for m in &f.mappings {
            let Some(sig) = &m.signature else { continue };
            let known = self.verifier.read().map(|v| v.signer(&sig.key_id).is_some()).unwrap_or(false);
            if known {
                continue;
            }
            for ep in &a.endpoints {
                if let Ok(ans) = self.client.get(ep, &a.id, &format!("/certs/{}", sig.key_id.as_str()), &[]).await
                    && ans.status == 200
                {
                    let now = self.clock.now();
                    if let Ok(mut v) = self.verifier.write() {
                        match v.add_pem(&ans.body, now) {
                            Ok(k) => {
                                if let Ok(mut g) = self.cert_pems.lock() {
                                    g.insert(k.as_str().to_owned(), ans.body.clone());
                                }
                            }
                            Err(e) => tracing::warn!("certificate {} from {} refused: {e}", sig.key_id.as_str(), a.id),
                        }
                    }
                    break;
                }
            }
        }
    }

    /// Drops every cached answer for a CSI; hot ones are resolved again at
    /// once (refresh ahead).
    pub fn invalidate(&self, csi: &str) {
        let keys = self.by_csi.lock().ok().and_then(|mut g| g.remove(csi)).unwrap_or_default();
        for k in keys {
            if let Some(c) = self.answers.remove(&k) {
                self.c.invalidations.fetch_add(1, Ordering::Relaxed);
                if c.hits.load(Ordering::Relaxed) >= self.s.hot_hits
                    && let Some(me) = self.me.upgrade()
                {
                    let req = c.request.clone();
                    tokio::spawn(async move {
                        let _ = me.resolve(req).await;
                    });
                }
            }
        }
    }

    /// Drops everything learned from an authority (feed resync).
    pub fn flush_authority(&self, a: &Name) {
        let a = a.clone();
        let _ = self.answers.invalidate_entries_if(move |_, v| v.authority == a);
        if let Ok(mut g) = self.delegations.write() {
            *g = RoutingTable::new();
        }
    }

    fn ensure_feed(&self, a: AuthorityRef) {
        if !self.s.push {
            return;
        }
        {
            let mut g = match self.feeds.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if g.contains_key(&a.id) {
                return;
            }
            g.insert(a.id.clone(), 0);
        }
        let me = self.me.clone();
        let lag = self.metrics.histogram(&format!("signpost_resolver_feed_lag_seconds{{authority=\"{}\"}}", a.id));
        tokio::spawn(async move { feed_loop(me, a, lag).await });
    }

    /// A signing certificate this resolver has validated, by key id (served
    /// at `GET /certs/{keyId}` so clients can verify mappings too).
    pub fn cert_pem(&self, key_id: &str) -> Option<Bytes> {
        self.cert_pems.lock().ok().and_then(|g| g.get(key_id).cloned())
    }

    /// The last feed sequence number seen from an authority.
    pub fn feed_position(&self, a: &Name) -> Option<u64> {
        self.feeds.lock().ok().and_then(|g| g.get(a).copied())
    }
}

/// One subscription: resume from the last sequence number after a
/// disconnect, with exponential backoff (100 ms to 30 s).
async fn feed_loop(me: Weak<Resolver>, a: AuthorityRef, lag: &'static signpost_net::metrics::Histogram) {
    let mut since: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(r) = me.upgrade() else { return };
        let path = since.map_or_else(|| "/feed".to_owned(), |s| format!("/feed?since={s}"));
        let mut connected = None;
        for ep in &a.endpoints {
            match r.client.get_stream(ep, &a.id, &path).await {
                Ok((200, body)) => {
                    connected = Some(body);
                    break;
                }
                Ok((st, _)) => tracing::warn!("feed of {} refused: HTTP {st}", a.id),
                Err(e) => tracing::debug!("feed of {} at {}: {e}", a.id, ep.as_str()),
            }
        }
        drop(r);
        let Some(mut body) = connected else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            continue;
        };
        backoff = Duration::from_millis(100);
        let mut buf = String::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else { continue };
            buf.push_str(&String::from_utf8_lossy(&data));
            let Some(r) = me.upgrade() else { return };
            while let Some(i) = buf.find('\n') {
                let line: String = buf.drain(..=i).collect();
                match FeedFrame::decode(line.as_bytes()) {
                    Ok(FeedFrame::Change(c)) => {
                        lag.observe_us(r.clock.now().millis_since(c.time) * 1000);
                        match &c.subject {
                            Subject::Csi(csi) => r.invalidate(csi.uri()),
                            Subject::Cover(_) => r.flush_authority(&a.id),
                        }
                        since = Some(c.seq);
                    }
                    Ok(FeedFrame::Heartbeat { seq, .. }) => since = Some(since.map_or(seq, |s| s.max(seq))),
                    Ok(FeedFrame::Resync { seq, reason }) => {
                        tracing::info!(authority = %a.id, "feed resync: {reason}");
                        r.flush_authority(&a.id);
                        since = Some(seq);
                    }
                    Err(e) => tracing::warn!("bad feed frame from {}: {e}", a.id),
                }
                if let (Some(s), Ok(mut g)) = (since, r.feeds.lock()) {
                    g.insert(a.id.clone(), s);
                }
            }
        }
        tracing::debug!("feed of {} ended; reconnecting", a.id);
    }
}

/// Errors that mean "not discoverable", for the lookup client.
pub fn is_not_found(e: &Errors) -> bool {
    e.kind() == Some(signpost_schemas::ErrorKind::NotFound)
}
