//! The async driver around the state machine (`signpost-resolver-core`):
//! it owns sockets, timers and tasks and nothing else. Every decision —
//! caching, lifetimes, referrals, failover, single-flight, serve-stale,
//! feed cursors, invalidation — is the core's; the driver feeds it inputs
//! (client queries, upstream answers, fetched certificates and root tables,
//! feed frames, timer ticks, all with the clock's `now`) and carries out
//! what it asks for (HTTP requests over the pooled mTLS client, feed
//! streams, saving the verified root table).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use signpost_net::client::Client;
use signpost_net::{Failure, LostReply, Metrics};
use signpost_resolver_core::{Answer, Config, Event, FeedEvent, Fetched, Policy, QueryId, Stats, StreamId, Transmit, Upstream, Verify};
use signpost_schemas::lost::AuthorityRef;
use signpost_schemas::sp::{FeedFrame, RootTable};
use signpost_schemas::{Clock, Csi, Errors, FindService, KeyId, Limits, Mapping, Name, Request, Response, Timestamp};
use signpost_trust::TrustAnchor;
use signpost_trust::sign::Verifier;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

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
    /// Where the verified root table is kept between runs (RFC 8806: a
    /// resolver started while every root is down still resolves).
    pub root_table_cache: Option<PathBuf>,
    /// Lifetimes.
    pub policy: Policy,
    /// Cached answers at most.
    pub max_entries: u64,
    /// Bytes of cached answers at most.
    pub max_bytes: u64,
    /// RFC 8767's client response timer: each client is answered within
    /// this (stale, or `serverTimeout`).
    pub upstream_timeout: Duration,
    /// One upstream attempt, before the next endpoint is tried.
    pub attempt_timeout: Duration,
    /// After an authority failed, it is not asked again for this long
    /// (RFC 8767's failure recheck timer); stale answers are served.
    pub failure_recheck: Duration,
    /// Hits after which an invalidated entry is refreshed at once.
    pub hot_hits: u32,
    /// Subscribe to authorities' change feeds (push invalidation). Off,
    /// answers live until their lifetime ends, as with DNS/ENUM today.
    pub push: bool,
}

impl Settings {
    fn core(&self) -> Config {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut c = Config::new(self.id.clone(), self.root.clone());
        c.policy = self.policy;
        c.max_entries = usize::try_from(self.max_entries).unwrap_or(usize::MAX);
        c.max_bytes = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        c.client_timeout_ms = ms(self.upstream_timeout);
        c.attempt_timeout_ms = ms(self.attempt_timeout);
        c.failure_recheck_ms = ms(self.failure_recheck);
        c.hot_hits = self.hot_hits;
        c.push = self.push;
        c.preload_root_table = self.root_table_signer.is_some();
        c.root_table_refresh_ms = ms(self.root_table_refresh);
        c
    }
}

/// The X.509 / ES256 verifier of `signpost-trust` behind the core's
/// [`Verify`] hook; it also keeps the PEM of every signing certificate it
/// validated, for `GET /certs/{keyId}`.
#[derive(Debug)]
pub struct TrustVerifier {
    v: Verifier,
    pems: HashMap<String, Bytes>,
}

/// Signing certificates kept at most (a hostile authority cannot grow it).
const MAX_CERTS: usize = 10_000;

impl TrustVerifier {
    /// A verifier for `anchor`; with `root_signer`, root tables signed by
    /// that certificate verify.
    pub fn new(anchor: TrustAnchor, root_signer: Option<&[u8]>, now: Timestamp) -> Result<TrustVerifier, String> {
        let mut v = Verifier::new(anchor);
        if let Some(pem) = root_signer {
            v.add_pem(pem, now).map_err(|e| format!("root table signer: {e}"))?;
        }
        Ok(TrustVerifier { v, pems: HashMap::new() })
    }
    /// The PEM of a validated signing certificate.
    pub fn pem(&self, key: &str) -> Option<Bytes> {
        self.pems.get(key).cloned()
    }
}

impl Verify for TrustVerifier {
    fn knows(&self, key: &KeyId) -> bool {
        self.v.signer(key).is_some()
    }
    fn add_certificate(&mut self, pem: &[u8], now: Timestamp) -> Result<KeyId, String> {
        if self.pems.len() >= MAX_CERTS {
            return Err(format!("{MAX_CERTS} signing certificates are kept at most"));
        }
        let k = self.v.add_pem(pem, now).map_err(|e| e.to_string())?;
        self.pems.insert(k.as_str().to_owned(), Bytes::copy_from_slice(pem));
        Ok(k)
    }
    fn verify_mapping(&self, csi: &Csi, m: &Mapping, now: Timestamp) -> Result<(), String> {
        self.v.verify_mapping(csi, m, now).map(|_| ()).map_err(|e| e.to_string())
    }
    fn verify_root_table(&self, t: &RootTable, now: Timestamp) -> Result<(), String> {
        self.v.verify_root_table(t, now).map(|_| ()).map_err(|e| e.to_string())
    }
}

type Core = signpost_resolver_core::Resolver<TrustVerifier>;

struct Inner {
    core: Core,
    waiters: HashMap<QueryId, oneshot::Sender<Answer>>,
    next_query: QueryId,
    streams: HashMap<StreamId, JoinHandle<()>>,
    /// Every authority a feed was opened to (for the feed-connected gauge).
    feeds: std::collections::BTreeSet<Name>,
    /// The earliest timer the timer task sleeps towards.
    armed: Option<Timestamp>,
    stopped: bool,
    /// The core's counters as last added to the metrics.
    published: Stats,
}

struct Counters {
    hits: &'static std::sync::atomic::AtomicU64,
    misses: &'static std::sync::atomic::AtomicU64,
    stale: &'static std::sync::atomic::AtomicU64,
    up_ok: &'static std::sync::atomic::AtomicU64,
    up_fail: &'static std::sync::atomic::AtomicU64,
    rejected: &'static std::sync::atomic::AtomicU64,
    invalidations: &'static std::sync::atomic::AtomicU64,
    refreshes: &'static std::sync::atomic::AtomicU64,
    reasks: &'static std::sync::atomic::AtomicU64,
    resyncs: &'static std::sync::atomic::AtomicU64,
    entries: &'static signpost_net::metrics::Gauge,
    bytes: &'static signpost_net::metrics::Gauge,
    hit_latency: &'static signpost_net::metrics::Histogram,
    miss_latency: &'static signpost_net::metrics::Histogram,
}

impl Counters {
    /// Adds what the core counted since `prev` (so counters of one
    /// registry keep adding up across a resolver's restart in one process,
    /// as the testbed restarts them) and sets the gauges.
    fn publish(&self, s: &Stats, prev: &Stats) {
        use std::sync::atomic::Ordering::Relaxed;
        let add = |c: &std::sync::atomic::AtomicU64, now: u64, before: u64| {
            if now > before {
                c.fetch_add(now - before, Relaxed);
            }
        };
        add(self.hits, s.hits, prev.hits);
        add(self.misses, s.misses, prev.misses);
        add(self.stale, s.stale, prev.stale);
        add(self.up_ok, s.upstream_ok, prev.upstream_ok);
        add(self.up_fail, s.upstream_failed, prev.upstream_failed);
        add(self.rejected, s.rejected, prev.rejected);
        add(self.invalidations, s.invalidations, prev.invalidations);
        add(self.refreshes, s.refreshes, prev.refreshes);
        add(self.reasks, s.reasks, prev.reasks);
        add(self.resyncs, s.resyncs, prev.resyncs);
        self.entries.set_u64(s.entries);
        self.bytes.set_u64(s.bytes);
    }
}

/// The resolver.
pub struct Resolver {
    s: Settings,
    clock: Arc<dyn Clock>,
    client: Client,
    inner: Mutex<Inner>,
    wake: Notify,
    c: Counters,
    me: Weak<Resolver>,
    timer_task: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("id", &self.s.id).finish()
    }
}

/// The longest the timer task sleeps without looking at the clock again
/// (a manual clock in tests can jump).
const TICK_MAX: Duration = Duration::from_millis(250);

impl Resolver {
    /// A resolver; call [`Resolver::start`] to load the kept root table and
    /// start its timers.
    pub fn new(s: Settings, clock: Arc<dyn Clock>, client: Client, anchor: TrustAnchor, metrics: Arc<Metrics>) -> Result<Arc<Resolver>, String> {
        let now = clock.now();
        let verifier = TrustVerifier::new(anchor, s.root_table_signer.as_deref(), now)?;
        let core = Core::new(s.core(), verifier, now);
        let c = Counters {
            hits: metrics.counter("signpost_resolver_cache_hits_total"),
            misses: metrics.counter("signpost_resolver_cache_misses_total"),
            stale: metrics.counter("signpost_resolver_stale_answers_total"),
            up_ok: metrics.counter("signpost_resolver_upstream_queries_total{outcome=\"ok\"}"),
            up_fail: metrics.counter("signpost_resolver_upstream_queries_total{outcome=\"failed\"}"),
            rejected: metrics.counter("signpost_resolver_rejected_answers_total"),
            invalidations: metrics.counter("signpost_resolver_invalidations_total"),
            refreshes: metrics.counter("signpost_resolver_refreshes_total"),
            reasks: metrics.counter("signpost_resolver_superseded_answers_total"),
            resyncs: metrics.counter("signpost_resolver_resyncs_total"),
            entries: metrics.gauge("signpost_resolver_cache_entries"),
            bytes: metrics.gauge("signpost_resolver_cache_bytes"),
            hit_latency: metrics.histogram("signpost_resolver_hit_duration_seconds"),
            miss_latency: metrics.histogram("signpost_resolver_miss_duration_seconds"),
        };
        let r = Arc::new_cyclic(|me| Resolver {
            s,
            clock,
            client,
            inner: Mutex::new(Inner { core, waiters: HashMap::new(), next_query: 1, streams: HashMap::new(), feeds: std::collections::BTreeSet::new(), armed: None, stopped: false, published: Stats::default() }),
            wake: Notify::new(),
            c,
            me: me.clone(),
            timer_task: Mutex::new(None),
            metrics: metrics.clone(),
        });
        Self::register_gauges(&r, &metrics);
        Ok(r)
    }

    /// Gauges read at scrape time: the root table in use (serial, seconds
    /// until its validUntil) and the link state of every authority's feed.
    fn register_gauges(r: &Arc<Resolver>, metrics: &Metrics) {
        let w = Arc::downgrade(r);
        metrics.gauge_fn(
            "signpost_root_table_expiry_seconds",
            Box::new(move || {
                w.upgrade()
                    .and_then(|r| r.root_table().map(|(_, until)| (String::new(), signpost_net::metrics::seconds_until(until, r.clock.now()))))
                    .into_iter()
                    .collect()
            }),
        );
        let w = Arc::downgrade(r);
        metrics.gauge_fn(
            "signpost_root_table_serial",
            Box::new(move || w.upgrade().and_then(|r| r.root_table()).map(|(serial, _)| (String::new(), serial as f64)).into_iter().collect()),
        );
        let w = Arc::downgrade(r);
        metrics.gauge_fn(
            "signpost_resolver_feed_connected",
            Box::new(move || {
                let Some(r) = w.upgrade() else { return Vec::new() };
                let g = r.lock();
                g.feeds
                    .iter()
                    .map(|a| {
                        let up = if g.core.feed_connected(a) { 1.0 } else { 0.0 };
                        (format!("authority=\"{}\"", signpost_net::metrics::label_value(a.as_str())), up)
                    })
                    .collect()
            }),
        );
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Loads the root table kept from the last run (if any), starts the
    /// timer task and carries out what the core asked for at start (the
    /// root-table fetch).
    pub async fn start(self: &Arc<Self>) {
        if let Some(p) = &self.s.root_table_cache
            && self.s.root_table_signer.is_some()
        {
            match tokio::fs::read(p).await {
                Ok(b) => {
                    let now = self.clock.now();
                    let mut g = self.lock();
                    match g.core.load_root_table(&b, now) {
                        Ok(serial) => tracing::info!(serial, file = %p.display(), "root table loaded from the last run"),
                        Err(e) => tracing::warn!(file = %p.display(), "kept root table not used: {e}"),
                    }
                    self.drain(&mut g, None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %p.display(), "kept root table unreadable: {e}"),
            }
        }
        {
            let mut g = self.lock();
            self.drain(&mut g, None);
        }
        let me = self.me.clone();
        let task = tokio::spawn(async move { timer_loop(me).await });
        if let Ok(mut t) = self.timer_task.lock()
            && let Some(old) = t.replace(task)
        {
            old.abort();
        }
        // While the first fetch of the table is in flight (at most one
        // attempt timeout per root endpoint), wait: the first queries then
        // use it. A failed fetch ends the wait at once.
        if self.s.root_table_signer.is_some() {
            let n = u32::try_from(self.s.root.endpoints.len()).unwrap_or(1).max(1);
            let end = Instant::now() + self.s.attempt_timeout * n + Duration::from_millis(100);
            loop {
                let (have, fetching) = {
                    let g = self.lock();
                    (g.core.root_table().is_some(), g.core.root_table_fetching())
                };
                if have || !fetching || Instant::now() >= end {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Stops the timer task and every feed stream; waiting clients get
    /// `internalError`. (A restart in tests and in the testbed.)
    pub fn shutdown(&self) {
        if let Ok(mut t) = self.timer_task.lock()
            && let Some(t) = t.take()
        {
            t.abort();
        }
        let mut g = self.lock();
        g.stopped = true;
        for (_, h) in g.streams.drain() {
            h.abort();
        }
        g.waiters.clear();
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// Counters and gauges of the core.
    pub fn stats(&self) -> Stats {
        self.lock().core.stats()
    }

    /// The control plane's `stats`: the core's counters and gauges, the
    /// root table in use and every feed's link, one `key value` per line.
    pub fn control_stats(&self) -> String {
        let g = self.lock();
        let st = g.core.stats();
        let mut out = String::new();
        for (k, v) in [
            ("hits", st.hits),
            ("misses", st.misses),
            ("stale", st.stale),
            ("upstream_ok", st.upstream_ok),
            ("upstream_failed", st.upstream_failed),
            ("rejected", st.rejected),
            ("invalidations", st.invalidations),
            ("refreshes", st.refreshes),
            ("reasks", st.reasks),
            ("frames", st.frames),
            ("resyncs", st.resyncs),
            ("entries", st.entries),
            ("bytes", st.bytes),
            ("waiting", st.waiting),
        ] {
            out.push_str(&format!("{k} {v}\n"));
        }
        match g.core.root_table() {
            Some((serial, until)) => out.push_str(&format!("root_table serial {serial} valid_until {until}\n")),
            None => out.push_str("root_table none\n"),
        }
        for a in &g.feeds {
            let pos = g.core.feed_position(a).map_or_else(|| "-".to_owned(), |p| p.to_string());
            out.push_str(&format!("feed {a} {} through {pos}\n", if g.core.feed_connected(a) { "connected" } else { "down" }));
        }
        out
    }

    /// The control plane's `dump`: at most `limit` cached answers, one line
    /// each (identifier, found or notFound, the answering authority, the
    /// sender variant, fresh and stale ends, hits). Identifiers appear in
    /// full: this goes to an authenticated admin, never to the logs.
    pub fn control_dump(&self, limit: usize) -> String {
        let g = self.lock();
        let mut out = String::new();
        for (csi, e) in g.core.answers().iter().take(limit) {
            let v = &e.variant;
            let tags: Vec<&str> = v.tags.iter().map(|t| t.as_str()).collect();
            out.push_str(&format!(
                "{} {} from {} sender {} tags {} fresh_until {} stale_until {} hits {}\n",
                csi.uri(),
                if e.found { "found" } else { "notFound" },
                e.authority,
                v.sender.as_ref().map_or("-", |n| n.as_str()),
                if tags.is_empty() { "-".to_owned() } else { tags.join(",") },
                e.fresh_until,
                e.stale_until,
                e.hits
            ));
        }
        out
    }

    /// Cached answers now.
    pub fn cache_len(&self) -> u64 {
        self.stats().entries
    }

    /// A signing certificate this resolver has validated, by key id (served
    /// at `GET /certs/{keyId}` so clients can verify mappings too).
    pub fn cert_pem(&self, key_id: &str) -> Option<Bytes> {
        self.lock().core.verifier().pem(key_id)
    }

    /// Position through which an authority's changes are applied.
    pub fn feed_position(&self, a: &Name) -> Option<u64> {
        self.lock().core.feed_position(a)
    }

    /// Whether an authority's feed is connected.
    pub fn feed_connected(&self, a: &Name) -> bool {
        self.lock().core.feed_connected(a)
    }

    /// Serial and end of the root table in use.
    pub fn root_table(&self) -> Option<(u64, Timestamp)> {
        self.lock().core.root_table()
    }

    /// An operator's flush (one identifier, a prefix or domain, the
    /// negatives, everything); how many cached answers went.
    pub fn flush(&self, what: &signpost_resolver_core::Flush) -> usize {
        let mut g = self.lock();
        let n = g.core.flush(what);
        self.drain(&mut g, None);
        n
    }

    /// Runs the core's due timers now (tests that move a manual clock call
    /// this instead of waiting for the timer task to look).
    pub fn tick(&self) {
        let now = self.clock.now();
        let mut g = self.lock();
        g.core.handle_timeout(now);
        self.drain(&mut g, None);
    }

    /// Answers a client's findService.
    pub async fn resolve(&self, f: FindService) -> Result<LostReply, Failure> {
        let start = Instant::now();
        let rx = {
            let mut g = self.lock();
            if g.stopped {
                return Err(Failure::Internal("the resolver is stopping".into()));
            }
            let q = g.next_query;
            g.next_query += 1;
            g.core.handle_query(q, f, self.clock.now());
            if let Some(a) = self.drain(&mut g, Some(q)) {
                drop(g);
                self.c.hit_latency.observe_us(micros(start));
                return reply(a);
            }
            let (tx, rx) = oneshot::channel();
            g.waiters.insert(q, tx);
            rx
        };
        let a = rx.await.unwrap_or_else(|_| Answer::Failed(Failure::Internal("the resolver stopped before answering".into())));
        self.c.miss_latency.observe_us(micros(start));
        reply(a)
    }

    /// Hands out everything the core produced: answers to their waiters
    /// (the one for `mine` is returned), I/O to tasks, events to the log,
    /// counters to the metrics, the next timer to the timer task.
    fn drain(&self, g: &mut Inner, mine: Option<QueryId>) -> Option<Answer> {
        let mut own = None;
        while let Some((q, a)) = g.core.poll_answer() {
            if Some(q) == mine {
                own = Some(a);
            } else if let Some(tx) = g.waiters.remove(&q) {
                let _ = tx.send(a);
            }
        }
        while let Some(t) = g.core.poll_transmit() {
            self.carry_out(g, t);
        }
        while let Some(e) = g.core.poll_event() {
            log_event(e);
        }
        let now = g.core.stats();
        self.c.publish(&now, &g.published);
        g.published = now;
        if let Some(t) = g.core.poll_timeout()
            && g.armed.is_none_or(|a| t < a)
        {
            g.armed = Some(t);
            self.wake.notify_one();
        }
        own
    }

    fn carry_out(&self, g: &mut Inner, t: Transmit) {
        if g.stopped {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        match t {
            Transmit::Query { id, server, endpoint, request } => {
                tokio::spawn(async move {
                    let body = Bytes::from(Request::FindService(request).encode());
                    let r = match tokio::time::timeout(me.s.attempt_timeout, me.client.post_lost(&endpoint, &server, body)).await {
                        Ok(Ok(a)) if a.status == 200 => match Response::decode(&a.body, &Limits::MESSAGE) {
                            Ok(resp) => Upstream::Answer(resp),
                            Err(e) => Upstream::Undecodable(e),
                        },
                        Ok(Ok(a)) => Upstream::Status(a.status),
                        Ok(Err(e)) => Upstream::Transport(e.to_string()),
                        Err(_) => Upstream::Timeout,
                    };
                    me.input(|core, now| core.handle_upstream(id, r, now));
                });
            }
            Transmit::FetchCert { id, server, endpoint, key } => {
                tokio::spawn(async move {
                    let r = me.fetch(&endpoint, &server, &format!("/certs/{}", key.as_str())).await;
                    me.input(|core, now| core.handle_fetch(id, r, now));
                });
            }
            Transmit::FetchRootTable { id, server, endpoint } => {
                tokio::spawn(async move {
                    let r = me.fetch(&endpoint, &server, "/root-table").await;
                    me.input(|core, now| core.handle_fetch(id, r, now));
                });
            }
            Transmit::Subscribe { stream, authority, endpoint, since } => {
                g.feeds.insert(authority.clone());
                let h = tokio::spawn(async move { feed_stream(me, stream, authority, endpoint, since).await });
                g.streams.insert(stream, h);
            }
            Transmit::Unsubscribe { stream } => {
                if let Some(h) = g.streams.remove(&stream) {
                    h.abort();
                }
            }
            Transmit::SaveRootTable { bytes } => {
                if let Some(p) = me.s.root_table_cache.clone() {
                    tokio::spawn(async move {
                        let tmp = p.with_extension("tmp");
                        let r = async {
                            tokio::fs::write(&tmp, &bytes).await?;
                            tokio::fs::rename(&tmp, &p).await
                        };
                        if let Err(e) = r.await {
                            tracing::warn!(file = %p.display(), "could not keep the root table: {e}");
                        }
                    });
                }
            }
        }
    }

    async fn fetch(&self, endpoint: &signpost_schemas::Endpoint, server: &Name, path: &str) -> Fetched {
        match tokio::time::timeout(self.s.attempt_timeout, self.client.get(endpoint, server, path, &[])).await {
            Ok(Ok(a)) if a.status == 200 => Fetched::Body(a.body),
            Ok(Ok(a)) => Fetched::Status(a.status),
            Ok(Err(e)) => Fetched::Transport(e.to_string()),
            Err(_) => Fetched::Timeout,
        }
    }

    /// Feeds one input to the core and hands out what it produced.
    fn input(&self, f: impl FnOnce(&mut Core, Timestamp)) {
        let now = self.clock.now();
        let mut g = self.lock();
        f(&mut g.core, now);
        self.drain(&mut g, None);
    }
}

fn micros(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn reply(a: Answer) -> Result<LostReply, Failure> {
    match a {
        Answer::Encoded { body, outcome } => Ok(LostReply::Encoded { body, outcome }),
        Answer::Response(r) => Ok(LostReply::Response(r)),
        Answer::Failed(f) => Err(f),
    }
}

fn log_event(e: Event) {
    match e {
        Event::Rejected { authority, csi, reason } => {
            // The reason may name the identifier: debug only.
            tracing::warn!(authority = %authority, csi = %signpost_net::csi_tag(csi.uri()), "answer rejected");
            tracing::debug!("{reason}");
        }
        Event::CertRefused { key, authority, reason } => tracing::warn!(authority = %authority, key = key.as_str(), "signing certificate refused: {reason}"),
        Event::FeedConnected { authority, since } => tracing::info!(authority = %authority, since = ?since, "feed connected"),
        Event::FeedDown { authority, reason } => tracing::info!(authority = %authority, "feed down, will resume: {reason}"),
        Event::Resync { authority, reason, flushed } => tracing::info!(authority = %authority, flushed, "feed resync: {reason}"),
        Event::RootTable { serial, delegations } => tracing::info!(serial, delegations, "root table preloaded"),
        Event::RootTableRefused { reason } => tracing::warn!("root table not used: {reason}"),
    }
}

/// Sleeps until the core's next timer (or at most [`TICK_MAX`]) and runs it.
async fn timer_loop(me: Weak<Resolver>) {
    loop {
        let (wait, wake) = {
            let Some(r) = me.upgrade() else { return };
            let now = r.clock.now();
            let mut g = r.lock();
            g.armed = g.core.poll_timeout();
            let wait = g.armed.map_or(TICK_MAX, |t| Duration::from_millis(t.millis_since(now)).min(TICK_MAX));
            drop(g);
            (wait, r)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.wake.notified() => {}
        }
        let now = wake.clock.now();
        let mut g = wake.lock();
        g.core.handle_timeout(now);
        wake.drain(&mut g, None);
        drop(g);
        drop(wake);
    }
}

/// One feed subscription: opens the stream, then hands every frame to the
/// core; its end (or failure) too. Reconnecting is the core's decision.
async fn feed_stream(me: Arc<Resolver>, stream: StreamId, authority: Name, endpoint: signpost_schemas::Endpoint, since: Option<u64>) {
    let path = since.map_or_else(|| "/feed".to_owned(), |s| format!("/feed?since={s}"));
    let mut body = match me.client.get_stream(&endpoint, &authority, &path).await {
        Ok((200, body)) => body,
        Ok((st, _)) => return me.input(|core, now| core.handle_feed(stream, FeedEvent::Refused(st), now)),
        Err(e) => return me.input(|core, now| core.handle_feed(stream, FeedEvent::Closed(e.to_string()), now)),
    };
    me.input(|core, now| core.handle_feed(stream, FeedEvent::Connected, now));
    let weak = Arc::downgrade(&me);
    drop(me);
    let mut buf: Vec<u8> = Vec::new();
    let mut lag: Option<&'static signpost_net::metrics::Histogram> = None;
    let end = loop {
        let chunk = match body.frame().await {
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
            Some(Err(e)) => break e.to_string(),
            None => break "the authority ended the stream".to_owned(),
        };
        buf.extend_from_slice(&chunk);
        if buf.len() > 1 << 20 {
            break "a feed line over 1 MiB".to_owned();
        }
        let Some(r) = weak.upgrade() else { return };
        let mut frames = Vec::new();
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            frames.push(match FeedFrame::decode(&line) {
                Ok(f) => FeedEvent::Frame(f),
                Err(e) => FeedEvent::Garbled(e.to_string()),
            });
        }
        let now = r.clock.now();
        for f in &frames {
            if let FeedEvent::Frame(FeedFrame::Change(c)) = f {
                lag.get_or_insert_with(|| {
                    r.metrics.histogram(&format!("signpost_resolver_feed_lag_seconds{{authority=\"{}\"}}", signpost_net::metrics::label_value(authority.as_str())))
                })
                .observe_us(now.millis_since(c.time).saturating_mul(1000));
            }
        }
        r.input(|core, now| {
            for f in frames {
                core.handle_feed(stream, f, now);
            }
        });
    };
    if let Some(r) = weak.upgrade() {
        r.input(|core, now| core.handle_feed(stream, FeedEvent::Closed(end), now));
    }
}

/// Errors that mean "not discoverable", for the lookup client.
pub fn is_not_found(e: &Errors) -> bool {
    e.kind() == Some(signpost_schemas::ErrorKind::NotFound)
}
