//! The resolver as one state machine (in the style of quinn-proto's
//! `Connection`): inputs carry `now`, outputs are values the driver carries
//! out. It reads no clock, opens no socket and spawns nothing, so the async
//! server and the testbed's simulator run the same decisions.
//!
//! Inputs: [`Resolver::handle_query`], [`Resolver::handle_upstream`],
//! [`Resolver::handle_fetch`], [`Resolver::handle_feed`],
//! [`Resolver::handle_timeout`], [`Resolver::load_root_table`].
//! Outputs: [`Resolver::poll_answer`], [`Resolver::poll_transmit`],
//! [`Resolver::poll_timeout`], [`Resolver::poll_event`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::Bytes;
use signpost_schemas::lost::{Location, StaleAnswer, Warnings};
use signpost_schemas::route::RoutingTable;
use signpost_schemas::sp::{FeedFrame, RootTable, Subject};
use signpost_schemas::{
    AuthorityRef, Csi, DecodeError, Delegation, Endpoint, ErrorKind, Errors, Expires, Failure, FindService, FindServiceResponse, IssueList, KeyId, Limits, Mapping, Name, Path, Response, Timestamp, failure_errors,
};

use crate::cache::{Answers, Delegations, Entry, Learned, Variant, covers_cover};
use crate::feed::{Coverage, Feed, Link};
use crate::policy::Policy;

/// The driver's handle for one client query.
pub type QueryId = u64;

/// The state machine's handle for one request it asked the driver to make.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TransmitId(pub u64);

/// The state machine's handle for one feed subscription (a new one for
/// every attempt, so frames of an abandoned stream are recognised).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct StreamId(pub u64);

/// Checks what authorities sign. The server plugs in the X.509/ES256
/// verifier of `signpost-trust`; the simulator may plug in a cheaper one
/// (its report says which).
pub trait Verify {
    /// Whether the signing certificate `key` is known.
    fn knows(&self, key: &KeyId) -> bool;
    /// Validates a signing certificate (chain to the anchor, validity at
    /// `now`) and remembers it; returns its key id.
    fn add_certificate(&mut self, pem: &[u8], now: Timestamp) -> Result<KeyId, String>;
    /// Checks one mapping: signer chain and validity, authority role, the
    /// signer's scope covers `csi`, source = signer, the signature.
    fn verify_mapping(&self, csi: &Csi, m: &Mapping, now: Timestamp) -> Result<(), String>;
    /// Checks the root table's signature and signer.
    fn verify_root_table(&self, t: &RootTable, now: Timestamp) -> Result<(), String>;
}

/// Settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The resolver's id (its `via`).
    pub id: Name,
    /// The root.
    pub root: AuthorityRef,
    /// Lifetimes and depth.
    pub policy: Policy,
    /// Cached answers at most.
    pub max_entries: usize,
    /// Bytes of cached answers at most.
    pub max_bytes: usize,
    /// Cached referrals at most.
    pub max_delegations: usize,
    /// RFC 8767's client response timer: every client gets an answer
    /// within this (a stale one, or `serverTimeout`), ms.
    pub client_timeout_ms: u64,
    /// One upstream attempt may take this long before the next endpoint
    /// is tried, ms.
    pub attempt_timeout_ms: u64,
    /// RFC 8767's failure recheck timer: after an authority failed it is
    /// asked again only after this; meanwhile stale answers are served, ms.
    pub failure_recheck_ms: u64,
    /// Hits after which an invalidated answer is resolved again at once.
    pub hot_hits: u32,
    /// Subscribe to authorities' change feeds (push invalidation). Off,
    /// answers live until their lifetime ends, as with DNS/ENUM today.
    pub push: bool,
    /// Fetch, verify and use the root's signed table (RFC 8806's idea).
    pub preload_root_table: bool,
    /// How often the preloaded table is fetched again, ms.
    pub root_table_refresh_ms: u64,
    /// First and longest wait before a feed is subscribed again, ms.
    pub feed_backoff_ms: (u64, u64),
    /// How often an answer that a change overtook is asked again before the
    /// query fails (`serverError`: the authority lags its own feed).
    pub max_reasks: u8,
}

impl Config {
    /// Defaults around an id and a root.
    pub fn new(id: Name, root: AuthorityRef) -> Config {
        Config {
            id,
            root,
            policy: Policy::default(),
            max_entries: 1_000_000,
            max_bytes: 1 << 30,
            max_delegations: 100_000,
            client_timeout_ms: 1_800,
            attempt_timeout_ms: 800,
            failure_recheck_ms: 30_000,
            hot_hits: 100,
            push: true,
            preload_root_table: false,
            root_table_refresh_ms: 3_600_000,
            feed_backoff_ms: (100, 30_000),
            max_reasks: 2,
        }
    }
}

/// I/O the driver carries out. Every request's result comes back through
/// the matching `handle_*` call with the same id.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// POST this findService to `endpoint`, whose certificate must name
    /// `server`; the result goes to [`Resolver::handle_upstream`].
    Query {
        /// Id.
        id: TransmitId,
        /// The server's id.
        server: Name,
        /// Where.
        endpoint: Endpoint,
        /// What (our `via` already added).
        request: FindService,
    },
    /// GET `/certs/{key}` at `endpoint`; to [`Resolver::handle_fetch`].
    FetchCert {
        /// Id.
        id: TransmitId,
        /// The server's id.
        server: Name,
        /// Where.
        endpoint: Endpoint,
        /// Which certificate.
        key: KeyId,
    },
    /// GET `/root-table` at `endpoint`; to [`Resolver::handle_fetch`].
    FetchRootTable {
        /// Id.
        id: TransmitId,
        /// The root's id.
        server: Name,
        /// Where.
        endpoint: Endpoint,
    },
    /// Open `GET /feed[?since=N]`; frames and the stream's end go to
    /// [`Resolver::handle_feed`] with this stream id.
    Subscribe {
        /// Stream id.
        stream: StreamId,
        /// The authority.
        authority: Name,
        /// Where.
        endpoint: Endpoint,
        /// Resume after this position (`None`: from the authority's head).
        since: Option<u64>,
    },
    /// Close a stream opened by `Subscribe`.
    Unsubscribe {
        /// Stream id.
        stream: StreamId,
    },
    /// Keep this verified root table where the next start finds it (RFC
    /// 8806: resolution survives every root being down, restarts included).
    SaveRootTable {
        /// The signed table as fetched.
        bytes: Bytes,
    },
}

/// The result of a [`Transmit::Query`].
#[derive(Clone, Debug)]
pub enum Upstream {
    /// A LoST answer.
    Answer(Response),
    /// A body that is not a LoST answer.
    Undecodable(DecodeError),
    /// An HTTP status other than 200.
    Status(u16),
    /// Connection, TLS or HTTP failure.
    Transport(String),
    /// No answer in time.
    Timeout,
}

/// The result of a certificate or root-table fetch.
#[derive(Clone, Debug)]
pub enum Fetched {
    /// 200 and a body.
    Body(Bytes),
    /// Another HTTP status.
    Status(u16),
    /// Connection, TLS or HTTP failure.
    Transport(String),
    /// No answer in time.
    Timeout,
}

/// What happened on a feed stream.
#[derive(Clone, Debug)]
pub enum FeedEvent {
    /// The authority accepted the subscription (HTTP 200).
    Connected,
    /// One frame.
    Frame(FeedFrame),
    /// A line that is not a frame.
    Garbled(String),
    /// The subscription was refused with this HTTP status.
    Refused(u16),
    /// The stream could not be opened, or ended.
    Closed(String),
}

/// An answer for a client.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A complete document (a cache hit's stored bytes).
    Encoded {
        /// The `application/lost+xml` document.
        body: Bytes,
        /// Its outcome label (`found`, `notFound`).
        outcome: &'static str,
    },
    /// A message to encode.
    Response(Response),
    /// A failure (the shell turns it into `<errors>`).
    Failed(Failure),
}

/// Something worth a log line or a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An answer failed verification (signature, chain or scope).
    Rejected {
        /// Who sent it.
        authority: Name,
        /// For which identifier.
        csi: Csi,
        /// Why (may name the identifier: debug level only).
        reason: String,
    },
    /// A certificate fetched from an authority was refused.
    CertRefused {
        /// Which key.
        key: KeyId,
        /// From whom.
        authority: Name,
        /// Why.
        reason: String,
    },
    /// A feed connected.
    FeedConnected {
        /// The authority.
        authority: Name,
        /// From where.
        since: Option<u64>,
    },
    /// A feed stream ended or could not be opened.
    FeedDown {
        /// The authority.
        authority: Name,
        /// Why.
        reason: String,
    },
    /// The authority said to flush what was learned from it.
    Resync {
        /// The authority.
        authority: Name,
        /// Its reason.
        reason: String,
        /// Answers flushed.
        flushed: usize,
    },
    /// A verified root table is in use.
    RootTable {
        /// Its serial.
        serial: u64,
        /// Delegations in it.
        delegations: usize,
    },
    /// A root table was refused (the previous one, if any, stays).
    RootTableRefused {
        /// Why.
        reason: String,
    },
}

/// What an operator flushes (like `unbound-control flush*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Every answer of one identifier.
    Identifier(Csi),
    /// Every answer and referral under a prefix or domain.
    Cover(signpost_schemas::Cover),
    /// Every cached `notFound`.
    Negatives,
    /// Everything: answers and referrals (the preloaded root table stays).
    All,
}

/// Counters (monotonic unless noted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Fresh cache hits.
    pub hits: u64,
    /// Queries not answered from a fresh entry.
    pub misses: u64,
    /// Stale answers served.
    pub stale: u64,
    /// Upstream answers received.
    pub upstream_ok: u64,
    /// Upstream attempts that failed (transport, timeout, status, garbage,
    /// upstream error).
    pub upstream_failed: u64,
    /// Answers rejected by verification.
    pub rejected: u64,
    /// Cached answers removed by a change or a resync.
    pub invalidations: u64,
    /// Hot answers resolved again after an invalidation.
    pub refreshes: u64,
    /// Answers asked again because a change overtook them.
    pub reasks: u64,
    /// Feed frames applied.
    pub frames: u64,
    /// Resyncs applied.
    pub resyncs: u64,
    /// Answers cached now (gauge).
    pub entries: u64,
    /// Bytes charged to cached answers now (gauge).
    pub bytes: u64,
    /// Client queries waiting now (gauge).
    pub waiting: u64,
}

// ---------------------------------------------------------------------------
// Internal state

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Timer {
    Query(QueryId),
    Attempt(TransmitId),
    Feed(StreamId),
    Table,
}

/// Why an upstream step failed, worst last (the order decides which cause a
/// failed resolution reports).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    /// Transport, timeout, HTTP 5xx/429 or an upstream error that says the
    /// server cannot answer now: stale answers may be served.
    Unreachable(String),
    /// A body that is not LoST, or an HTTP status that makes no sense for
    /// LoST: stale answers may be served.
    Broken(String),
    /// The server says our request is wrong (badRequest and kin).
    Refused(String),
    /// A referral we do not follow (does not cover, too deep).
    BadReferral(String),
    /// A mapping failed verification.
    Rejected(String),
    /// A loop.
    Loop(String),
}

impl Cause {
    fn stale_ok(&self) -> bool {
        match self {
            Cause::Unreachable(_) | Cause::Broken(_) => true,
            Cause::Refused(_) | Cause::BadReferral(_) | Cause::Rejected(_) | Cause::Loop(_) => false,
        }
    }
    fn into_failure(self) -> Failure {
        match self {
            Cause::Unreachable(m) => Failure::ServerTimeout(m),
            Cause::Broken(m) | Cause::Refused(m) | Cause::BadReferral(m) | Cause::Rejected(m) => Failure::ServerError(m),
            Cause::Loop(m) => Failure::Loop(m),
        }
    }
}

/// What an upstream LoST error means for the resolution (exhaustive: a
/// new error kind must be placed here).
fn upstream_error(kind: ErrorKind, from: &Name, msg: &str) -> Cause {
    let m = format!("{from} answered {}: {msg}", kind.element());
    match kind {
        ErrorKind::ServerTimeout | ErrorKind::ServerError | ErrorKind::InternalError | ErrorKind::Forbidden => Cause::Unreachable(m),
        ErrorKind::Loop => Cause::Loop(m),
        ErrorKind::BadRequest | ErrorKind::LocationProfileUnrecognized | ErrorKind::ServiceNotImplemented | ErrorKind::LocationInvalid | ErrorKind::ServiceSubstitution | ErrorKind::DefaultMappingReturned | ErrorKind::NotFound => Cause::Refused(m),
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct ResKey {
    csi: Csi,
    variant: Variant,
    /// The client's path (requests that arrive through other recursing
    /// servers resolve on their own: their loop checks differ).
    path: Vec<Name>,
}

#[derive(Debug)]
enum Stage {
    /// Waiting for `tx` from `server`.
    Asking { tx: TransmitId, server: Name },
    /// Waiting for signing certificates before the answer is verified.
    Certs { from: Name, response: FindServiceResponse, pending: Vec<TransmitId> },
    /// Nothing in flight (between steps).
    Idle,
}

#[derive(Debug)]
struct Resolution {
    key: ResKey,
    request: FindService,
    /// Vias the client sent: never ask one of them.
    client_path: Vec<Name>,
    visited: Vec<Name>,
    depth: u8,
    /// Authorities that referred on the way (not the root).
    chain: Vec<Name>,
    /// The current step's servers, in preference order.
    targets: Vec<AuthorityRef>,
    /// Endpoints tried in this step.
    tried: Vec<Endpoint>,
    /// The worst failure seen in this step.
    worst: Option<Cause>,
    stage: Stage,
    waiters: Vec<QueryId>,
    reasks: u8,
    /// An operator flushed this key while the resolution was in flight:
    /// its answer (read before the flush, perhaps) is served, not cached.
    flushed: bool,
}

#[derive(Debug)]
struct Waiting {
    res: u64,
    loc: String,
    csi: Csi,
    variant: Variant,
}

#[derive(Debug)]
enum Pending {
    Query { res: u64, endpoint: Endpoint, sent: Timestamp },
    Cert { res: u64, key: KeyId, from: Name },
    Table { endpoint: usize },
}

#[derive(Debug)]
struct Table {
    routes: RoutingTable<Delegation>,
    serial: u64,
    valid_until: Timestamp,
    negative_lifetime: u32,
    source: Name,
}

#[derive(Clone, Copy, Debug, Default)]
struct Rtt {
    srtt_ms: u64,
    known: bool,
}

/// The resolver's decisions and state.
#[derive(Debug)]
pub struct Resolver<V> {
    cfg: Config,
    verifier: V,
    answers: Answers,
    delegations: Delegations,
    table: Option<Table>,
    table_fetch: Option<TransmitId>,
    resolutions: HashMap<u64, Resolution>,
    by_key: HashMap<ResKey, u64>,
    pending: HashMap<TransmitId, Pending>,
    queries: HashMap<QueryId, Waiting>,
    down: HashMap<Name, Timestamp>,
    rtt: HashMap<Endpoint, Rtt>,
    feeds: HashMap<Name, Feed>,
    streams: HashMap<StreamId, Name>,
    timers: BinaryHeap<Reverse<(Timestamp, Timer)>>,
    out_answers: VecDeque<(QueryId, Answer)>,
    out_transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    next: u64,
}

const EVENTS_MAX: usize = 4096;

impl<V: Verify> Resolver<V> {
    /// A resolver with empty caches. With `preload_root_table` it asks for
    /// the root's table at once (see [`Resolver::poll_transmit`]).
    pub fn new(cfg: Config, verifier: V, now: Timestamp) -> Resolver<V> {
        let mut r = Resolver {
            answers: Answers::new(cfg.max_entries, cfg.max_bytes),
            delegations: Delegations::new(cfg.max_delegations),
            cfg,
            verifier,
            table: None,
            table_fetch: None,
            resolutions: HashMap::new(),
            by_key: HashMap::new(),
            pending: HashMap::new(),
            queries: HashMap::new(),
            down: HashMap::new(),
            rtt: HashMap::new(),
            feeds: HashMap::new(),
            streams: HashMap::new(),
            timers: BinaryHeap::new(),
            out_answers: VecDeque::new(),
            out_transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            next: 1,
        };
        if r.cfg.preload_root_table {
            r.fetch_table(0, now);
        }
        r
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The verifier (e.g. to serve the certificates it validated).
    pub fn verifier(&self) -> &V {
        &self.verifier
    }
    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.entries = self.answers.len() as u64;
        s.bytes = self.answers.bytes() as u64;
        s.waiting = self.queries.len() as u64;
        s
    }
    /// The cached answers (inspection, tests).
    pub fn answers(&self) -> &Answers {
        &self.answers
    }
    /// Position through which an authority's changes are applied.
    pub fn feed_position(&self, a: &Name) -> Option<u64> {
        self.feeds.get(a).and_then(|f| f.known_through)
    }
    /// Whether an authority's feed is connected.
    pub fn feed_connected(&self, a: &Name) -> bool {
        self.feeds.get(a).is_some_and(|f| matches!(f.link, Link::Connected { .. }))
    }
    /// Serial and end of the root table in use.
    pub fn root_table(&self) -> Option<(u64, Timestamp)> {
        self.table.as_ref().map(|t| (t.serial, t.valid_until))
    }
    /// Whether a root-table fetch is in flight.
    pub fn root_table_fetching(&self) -> bool {
        self.table_fetch.is_some()
    }
    /// Resolutions in progress (single-flight: at most one per key).
    pub fn resolutions_in_flight(&self) -> usize {
        self.resolutions.len()
    }

    /// An operator's flush; returns how many cached answers went. A
    /// resolution in flight for a flushed identifier answers its clients
    /// but does not cache what it read.
    pub fn flush(&mut self, what: &Flush) -> usize {
        for r in self.resolutions.values_mut() {
            let hit = match what {
                Flush::Identifier(c) => &r.key.csi == c,
                Flush::Cover(cover) => cover.covers(&r.key.csi),
                Flush::Negatives | Flush::All => true,
            };
            r.flushed |= hit;
        }
        match what {
            Flush::Identifier(c) => self.answers.remove_where(c, |_| true).len(),
            Flush::Cover(cover) => {
                self.delegations.retain(|l| !covers_cover(cover, &l.delegation.cover));
                self.answers.retain(|c, _| !cover.covers(c))
            }
            Flush::Negatives => self.answers.retain(|_, e| e.found),
            Flush::All => {
                self.delegations.retain(|_| false);
                self.answers.retain(|_, _| false)
            }
        }
    }

    // -----------------------------------------------------------------
    // Outputs

    /// The next answer for a client.
    pub fn poll_answer(&mut self) -> Option<(QueryId, Answer)> {
        self.out_answers.pop_front()
    }
    /// The next I/O to carry out.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out_transmits.pop_front()
    }
    /// The next log-worthy event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    /// When [`Resolver::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn event(&mut self, e: Event) {
        if self.events.len() < EVENTS_MAX {
            self.events.push_back(e);
        }
    }
    fn id(&mut self) -> u64 {
        let i = self.next;
        self.next += 1;
        i
    }
    fn timer(&mut self, at: Timestamp, t: Timer) {
        self.timers.push(Reverse((at, t)));
    }
    fn answer(&mut self, q: QueryId, a: Answer) {
        self.out_answers.push_back((q, a));
    }

    // -----------------------------------------------------------------
    // Client queries

    /// A client's findService. The answer comes out of
    /// [`Resolver::poll_answer`] — at once for a hit, else later.
    pub fn handle_query(&mut self, q: QueryId, f: FindService, now: Timestamp) {
        let own = &self.cfg.id;
        // RFC 5222 lets one <errors> carry every error that applies: a
        // wrong service and a wrong profile are both reported.
        let (loc, csi) = match signpost_schemas::failure::check_find_service(&f, own, signpost_schemas::lost::SERVICE_MIMI) {
            Ok((l, c)) => (l, c),
            Err(e) => return self.answer(q, Answer::Failed(e)),
        };
        // RFC 5222 §6: "a server whose id is already in the path answers loop".
        let client_path: &[Name] = f.path.as_ref().map_or(&[], |p| p.vias());
        if client_path.contains(own) {
            let m = format!("{own} is already in the path");
            return self.answer(q, Answer::Failed(Failure::Loop(m)));
        }
        // The hit path borrows from the request; only a miss copies.
        let stale_ok_now = {
            match self.answers.get(csi, &f) {
                Some(e) if now <= e.fresh_until => {
                    // A hit. Its answer came through servers the client's
                    // path must not hold either.
                    if let Some(n) = client_path.iter().find(|n| e.learned_from(n)) {
                        let m = format!("{n} (which answered) is already in the path");
                        return self.answer(q, Answer::Failed(Failure::Loop(m)));
                    }
                    e.hits = e.hits.saturating_add(1);
                    let a = serve(e, loc);
                    self.stats.hits += 1;
                    return self.answer(q, a);
                }
                Some(e) => e.found && self.down.get(&e.authority).is_some_and(|&until| now < until) && self.cfg.policy.may_serve_stale(e.fresh_until, now),
                None => false,
            }
        };
        self.stats.misses += 1;
        let (loc, csi) = (loc.to_owned(), csi.clone());
        let variant = Variant::of(&f);
        if stale_ok_now {
            // RFC 8767 §5: within the failure-recheck window the authority
            // is not asked again; the stale answer is served.
            if let Some(a) = self.stale_answer(&csi, &variant, &loc, now) {
                return self.answer(q, a);
            }
        }
        let key = ResKey { csi: csi.clone(), variant: variant.clone(), path: client_path.to_vec() };
        let (res, fresh) = match self.by_key.get(&key) {
            Some(&r) => (r, false),
            None => match self.new_resolution(key, &f, now) {
                Ok(r) => (r, true),
                Err(a) => return self.answer(q, *a),
            },
        };
        if let Some(r) = self.resolutions.get_mut(&res) {
            r.waiters.push(q);
        }
        self.queries.insert(q, Waiting { res, loc, csi, variant });
        self.timer(now.plus_millis(self.cfg.client_timeout_ms), Timer::Query(q));
        if fresh {
            // Sent only now: a step that fails at once answers this query too.
            self.send_next(res, now);
        }
    }

    /// A stale answer for a waiting client, if the entry allows one.
    fn stale_answer(&mut self, csi: &Csi, v: &Variant, loc: &str, now: Timestamp) -> Option<Answer> {
        let e = self.answers.peek(csi, v)?;
        if !e.found || !self.cfg.policy.may_serve_stale(e.fresh_until, now) {
            return None;
        }
        let Ok(Response::Found(mut f)) = Response::decode(&e.body, &Limits::MESSAGE) else { return None };
        for m in &mut f.mappings {
            m.expires = Expires::At(now.plus_secs(self.cfg.policy.stale_ttl));
        }
        f.warnings.push(Warnings { source: self.cfg.id.clone(), list: IssueList::new(), stale: Some(StaleAnswer { authority: e.authority.clone(), expired_at: e.fresh_until }) });
        f.location_used = Some(loc.to_owned());
        self.stats.stale += 1;
        Some(Answer::Response(Response::Found(f)))
    }

    /// Sets up the resolution of `key` (the caller sends its first step
    /// with [`Self::send_next`]). An answer that needs no upstream query
    /// (the preloaded table has no delegation: its `notFound`) is the `Err`.
    fn new_resolution(&mut self, key: ResKey, f: &FindService, now: Timestamp) -> Result<u64, Box<Answer>> {
        let own = self.cfg.id.clone();
        let mut request = f.clone();
        request.recursive = false;
        request.path = Some(match &f.path {
            Some(p) => {
                let mut p = p.clone();
                p.push(own.clone());
                p
            }
            None => Path::new(own.clone()),
        });
        let visited = request.path.as_ref().map(|p| p.vias().to_vec()).unwrap_or_default();
        // The first step: a cached referral, the preloaded table, or the root.
        let (targets, chain) = match self.delegations.lookup(&key.csi, now) {
            Some(l) => (l.delegation.authorities.clone(), chain_after(&l.chain, &l.from, &self.cfg.root.id)),
            None => match self.table.as_ref().filter(|t| t.valid_until > now) {
                Some(t) => match t.routes.lookup_value(&key.csi) {
                    Some(d) => (d.authorities.clone(), Vec::new()),
                    None => {
                        // RFC 8806: the local copy of the root answers as the
                        // root would.
                        let m = format!("no delegation covers {}", key.csi.uri());
                        let e = failure_errors(t.source.clone(), Failure::NotFound { message: m, negative_lifetime: t.negative_lifetime, feed_position: None });
                        return Err(Box::new(Answer::Response(Response::Errors(e))));
                    }
                },
                None => (vec![self.cfg.root.clone()], Vec::new()),
            },
        };
        let id = self.id();
        let r = Resolution {
            key: key.clone(),
            request,
            client_path: key.path.clone(),
            visited,
            depth: 0,
            chain,
            targets,
            tried: Vec::new(),
            worst: None,
            stage: Stage::Idle,
            waiters: Vec::new(),
            reasks: 0,
            flushed: false,
        };
        self.resolutions.insert(id, r);
        self.by_key.insert(key, id);
        Ok(id)
    }

    /// Sends the resolution's request to the best endpoint not tried yet in
    /// this step; when none is left, the step (and the resolution) fails.
    fn send_next(&mut self, res: u64, now: Timestamp) {
        let Some(r) = self.resolutions.get(&res) else { return };
        let pick = {
            let mut best: Option<(bool, usize, u64, &AuthorityRef, &Endpoint)> = None;
            for (i, a) in r.targets.iter().enumerate() {
                if r.client_path.contains(&a.id) {
                    continue;
                }
                let is_down = self.down.get(&a.id).is_some_and(|&u| now < u);
                for ep in &a.endpoints {
                    if r.tried.contains(ep) {
                        continue;
                    }
                    let rtt = self.rtt.get(ep).copied().unwrap_or_default();
                    let score = if rtt.known { rtt.srtt_ms } else { 0 };
                    let cand = (is_down, i, score, a, ep);
                    let better = match &best {
                        None => true,
                        Some(b) => (cand.0, cand.1, cand.2) < (b.0, b.1, b.2),
                    };
                    if better {
                        best = Some(cand);
                    }
                }
            }
            best.map(|(_, _, _, a, ep)| (a.id.clone(), ep.clone()))
        };
        let Some((server, endpoint)) = pick else {
            let all_in_path = r.targets.iter().all(|a| r.client_path.contains(&a.id));
            let cause = if all_in_path && !r.targets.is_empty() {
                Cause::Loop(format!("{} (the next hop) is already in the path", r.targets.first().map_or("?", |a| a.id.as_str())))
            } else {
                r.worst.clone().unwrap_or_else(|| Cause::Unreachable("no server to ask".into()))
            };
            // Every endpoint of these servers failed: RFC 8767's failure
            // recheck starts for each.
            if cause.stale_ok() {
                let until = now.plus_millis(self.cfg.failure_recheck_ms);
                for a in r.targets.clone() {
                    self.down.insert(a.id, until);
                }
            }
            return self.fail(res, cause, now);
        };
        let tx = TransmitId(self.id());
        let request = match self.resolutions.get_mut(&res) {
            Some(r) => {
                r.tried.push(endpoint.clone());
                r.stage = Stage::Asking { tx, server: server.clone() };
                r.request.clone()
            }
            None => return,
        };
        self.pending.insert(tx, Pending::Query { res, endpoint: endpoint.clone(), sent: now });
        self.timer(now.plus_millis(self.cfg.attempt_timeout_ms), Timer::Attempt(tx));
        self.out_transmits.push_back(Transmit::Query { id: tx, server, endpoint, request });
    }

    /// One upstream attempt failed: note it and try the next endpoint.
    fn attempt_failed(&mut self, res: u64, endpoint: &Endpoint, cause: Cause, now: Timestamp) {
        self.stats.upstream_failed += 1;
        // A failed endpoint goes to the back of the RTT order.
        self.rtt.insert(endpoint.clone(), Rtt { srtt_ms: u64::from(u32::MAX), known: true });
        if let Some(r) = self.resolutions.get_mut(&res) {
            r.worst = Some(match r.worst.take() {
                Some(w) if w > cause => w,
                _ => cause,
            });
            r.stage = Stage::Idle;
        }
        self.send_next(res, now);
    }

    /// The result of a [`Transmit::Query`].
    pub fn handle_upstream(&mut self, tx: TransmitId, result: Upstream, now: Timestamp) {
        let Some(Pending::Query { res, endpoint, sent }) = self.pending.remove(&tx) else { return };
        let Some(server) = (match self.resolutions.get(&res).map(|r| &r.stage) {
            Some(Stage::Asking { tx: t, server }) if *t == tx => Some(server.clone()),
            _ => None,
        }) else {
            return;
        };
        let cause = match result {
            Upstream::Answer(resp) => {
                let ms = now.millis_since(sent);
                let e = self.rtt.entry(endpoint.clone()).or_default();
                e.srtt_ms = if e.known && e.srtt_ms < u64::from(u32::MAX) { (e.srtt_ms * 4 + ms) / 5 } else { ms };
                e.known = true;
                self.stats.upstream_ok += 1;
                return self.on_answer(res, &server, &endpoint, resp, now);
            }
            Upstream::Undecodable(e) => Cause::Broken(format!("{server} sent an answer that does not decode: {e}")),
            Upstream::Status(s) if s >= 500 || s == 429 => Cause::Unreachable(format!("{server} answered HTTP {s}")),
            Upstream::Status(s) => Cause::Broken(format!("{server} answered HTTP {s}")),
            Upstream::Transport(m) => Cause::Unreachable(format!("{server} at {}: {m}", endpoint.as_str())),
            Upstream::Timeout => Cause::Unreachable(format!("{server} at {}: no answer within {} ms", endpoint.as_str(), self.cfg.attempt_timeout_ms)),
        };
        self.attempt_failed(res, &endpoint, cause, now);
    }

    fn on_answer(&mut self, res: u64, from: &Name, endpoint: &Endpoint, resp: Response, now: Timestamp) {
        self.down.remove(from);
        match resp {
            Response::Redirect(rd) => self.on_redirect(res, from, rd, now),
            Response::Found(f) => {
                // Signing certificates not known yet are fetched first.
                let mut missing: Vec<KeyId> = Vec::new();
                for m in &f.mappings {
                    if let Some(s) = &m.signature
                        && !self.verifier.knows(&s.key_id)
                        && !missing.contains(&s.key_id)
                    {
                        missing.push(s.key_id.clone());
                    }
                }
                missing.truncate(4);
                if missing.is_empty() {
                    return self.on_found(res, from, f, now);
                }
                let mut pending = Vec::new();
                for key in missing {
                    let tx = TransmitId(self.id());
                    self.pending.insert(tx, Pending::Cert { res, key: key.clone(), from: from.clone() });
                    self.timer(now.plus_millis(self.cfg.attempt_timeout_ms), Timer::Attempt(tx));
                    self.out_transmits.push_back(Transmit::FetchCert { id: tx, server: from.clone(), endpoint: endpoint.clone(), key });
                    pending.push(tx);
                }
                if let Some(r) = self.resolutions.get_mut(&res) {
                    r.stage = Stage::Certs { from: from.clone(), response: f, pending };
                }
            }
            Response::Errors(e) => match e.kind() {
                Some(ErrorKind::NotFound) => self.on_not_found(res, from, e, now),
                Some(k) => {
                    let msg = e.list.issues().first().and_then(|i| i.message.as_ref()).map_or(String::new(), |m| m.text.clone());
                    let cause = upstream_error(k, from, &msg);
                    if matches!(cause, Cause::Loop(_) | Cause::Refused(_)) {
                        self.fail(res, cause, now);
                    } else {
                        self.attempt_failed(res, endpoint, cause, now);
                    }
                }
                None => self.attempt_failed(res, endpoint, Cause::Broken(format!("{from} answered an empty <errors>")), now),
            },
            Response::Services(_) => self.attempt_failed(res, endpoint, Cause::Broken(format!("{from} answered a listServicesResponse")), now),
        }
    }

    fn on_redirect(&mut self, res: u64, from: &Name, rd: signpost_schemas::Redirect, now: Timestamp) {
        let own = self.cfg.id.clone();
        let root = self.cfg.root.id.clone();
        let max_depth = self.cfg.policy.max_depth;
        let Some(r) = self.resolutions.get_mut(&res) else { return };
        r.depth += 1;
        if r.depth > max_depth {
            let c = Cause::BadReferral(format!("more than {max_depth} referrals"));
            return self.fail(res, c, now);
        }
        if !rd.delegation.cover.covers(&r.key.csi) {
            let c = Cause::BadReferral(format!("{from} referred to {}, which does not cover the identifier", rd.delegation.cover));
            return self.fail(res, c, now);
        }
        if rd.target == own || r.visited.contains(&rd.target) {
            let c = Cause::Loop(format!("{from} referred back to {}", rd.target));
            return self.fail(res, c, now);
        }
        r.visited.push(rd.target.clone());
        if from != &root && !r.chain.contains(from) {
            r.chain.push(from.clone());
        }
        let chain = r.chain.clone();
        let from_endpoints = r.targets.iter().find(|a| &a.id == from).map(|a| a.endpoints.clone()).unwrap_or_default();
        // The target first, then the delegation's other authorities.
        let mut targets = rd.delegation.authorities.clone();
        targets.sort_by_key(|a| a.id != rd.target);
        r.targets = targets;
        r.tried.clear();
        r.worst = None;
        r.stage = Stage::Idle;
        let until = self.cfg.policy.referral_until(rd.delegation.lifetime, now);
        let learned_chain = chain_after(&chain, from, &root);
        // A referral from an authority is covered by its feed (a later
        // undelegation is announced there).
        let cacheable = match rd.feed_position {
            Some(p) if from != &root && self.cfg.push => self.pin(from, &from_endpoints, None, p, now),
            _ => true,
        };
        if cacheable {
            self.delegations.insert(Learned { delegation: rd.delegation, until, from: from.clone(), chain: learned_chain }, now);
        }
        self.send_next(res, now);
    }

    /// Fails a resolution: each waiting client gets a stale answer where
    /// the cause allows one, else the failure.
    fn fail(&mut self, res: u64, cause: Cause, now: Timestamp) {
        let Some(r) = self.resolutions.remove(&res) else { return };
        self.by_key.remove(&r.key);
        if let Cause::Rejected(m) = &cause {
            let authority = match &r.stage {
                Stage::Certs { from, .. } => from.clone(),
                Stage::Asking { server, .. } => server.clone(),
                Stage::Idle => r.visited.last().cloned().unwrap_or_else(|| self.cfg.root.id.clone()),
            };
            self.stats.rejected += 1;
            self.event(Event::Rejected { authority, csi: r.key.csi.clone(), reason: m.clone() });
        }
        for q in r.waiters {
            let Some(w) = self.queries.remove(&q) else { continue };
            let stale = if cause.stale_ok() { self.stale_answer(&w.csi, &w.variant, &w.loc, now) } else { None };
            let a = stale.unwrap_or_else(|| Answer::Failed(cause.clone().into_failure()));
            self.answer(q, a);
        }
    }

    /// Finishes a resolution with an answer to cache (if `entry`) and serve.
    fn finish(&mut self, res: u64, entry: Option<Entry>, body_for_uncached: Option<Response>, now: Timestamp) {
        let Some(r) = self.resolutions.remove(&res) else { return };
        self.by_key.remove(&r.key);
        if let Some(e) = entry {
            self.answers.insert(&r.key.csi, e, now);
        }
        for q in r.waiters {
            let Some(w) = self.queries.remove(&q) else { continue };
            let a = match (self.answers.peek(&w.csi, &w.variant), &body_for_uncached) {
                (_, Some(resp)) => {
                    let mut resp = resp.clone();
                    if let Response::Found(f) = &mut resp {
                        f.location_used = Some(w.loc.clone());
                    }
                    Answer::Response(resp)
                }
                (Some(e), None) => serve(e, &w.loc),
                (None, None) => Answer::Failed(Failure::Internal("the answer was not kept".into())),
            };
            self.answer(q, a);
        }
    }

    fn on_found(&mut self, res: u64, from: &Name, mut f: FindServiceResponse, now: Timestamp) {
        let Some(r) = self.resolutions.get(&res) else { return };
        let csi = r.key.csi.clone();
        let mut fresh: Option<Timestamp> = None;
        let mut no_cache = false;
        for m in &f.mappings {
            if &m.source != from {
                let c = Cause::Rejected(format!("{from} answered with a mapping of {}", m.source));
                return self.fail(res, c, now);
            }
            if let Err(e) = self.verifier.verify_mapping(&csi, m, now) {
                let c = Cause::Rejected(format!("mapping from {from} rejected: {e}"));
                return self.fail(res, c, now);
            }
            match self.cfg.policy.fresh_until(m.expires, now) {
                Some(t) => fresh = Some(fresh.map_or(t, |x: Timestamp| x.min(t))),
                None => no_cache = true,
            }
        }
        let read_at = f.feed_position.take();
        let until = if no_cache { None } else { fresh };
        for m in &mut f.mappings {
            m.expires = until.map_or(Expires::NoCache, Expires::At);
        }
        let loc = first_loc(&r.request);
        f.location_used = Some(loc.clone());
        let flushed = self.resolutions.get(&res).is_some_and(|r| r.flushed);
        let Some(until) = until.filter(|_| !flushed) else {
            return self.finish(res, None, Some(Response::Found(f)), now);
        };
        match self.cover(res, from, read_at, now) {
            Pin::Cache => {}
            Pin::AskAgain => return self.reask(res, now),
            Pin::Lagging => return self.fail(res, Cause::Broken(format!("{from} keeps answering from before changes its feed already announced")), now),
        }
        let body = Response::Found(f).encode();
        let loc_span = loc_span(&body, &loc);
        let Some(r) = self.resolutions.get(&res) else { return };
        let e = Entry {
            variant: r.key.variant.clone(),
            body: Bytes::from(body),
            loc,
            loc_span,
            found: true,
            fresh_until: until,
            stale_until: until.plus_secs(self.cfg.policy.max_stale),
            authority: from.clone(),
            chain: r.chain.clone(),
            read_at,
            hits: 0,
        };
        self.finish(res, Some(e), None, now);
    }

    fn on_not_found(&mut self, res: u64, from: &Name, mut e: Errors, now: Timestamp) {
        let until = self.cfg.policy.negative_until(e.negative_lifetime, now);
        let read_at = e.feed_position.take();
        e.negative_lifetime = Some(u32::try_from(until.millis_since(now) / 1000).unwrap_or(u32::MAX));
        if self.resolutions.get(&res).is_some_and(|r| r.flushed) {
            return self.finish(res, None, Some(Response::Errors(e)), now);
        }
        match self.cover(res, from, read_at, now) {
            Pin::Cache => {}
            Pin::AskAgain => return self.reask(res, now),
            Pin::Lagging => return self.fail(res, Cause::Broken(format!("{from} keeps answering from before changes its feed already announced")), now),
        }
        let Some(r) = self.resolutions.get(&res) else { return };
        let e = Entry {
            variant: r.key.variant.clone(),
            body: Bytes::from(Response::Errors(e).encode()),
            loc: String::new(),
            loc_span: None,
            found: false,
            fresh_until: until,
            stale_until: until,
            authority: from.clone(),
            chain: r.chain.clone(),
            read_at,
            hits: 0,
        };
        self.finish(res, Some(e), None, now);
    }

    fn reask(&mut self, res: u64, now: Timestamp) {
        self.stats.reasks += 1;
        if let Some(r) = self.resolutions.get_mut(&res) {
            r.reasks += 1;
            r.tried.clear();
            r.worst = None;
            r.stage = Stage::Idle;
        }
        self.send_next(res, now);
    }

    /// Decides whether an answer from `from` read at `read_at` may be
    /// cached (the invalidation invariant), subscribing to its feed first
    /// where needed.
    fn cover(&mut self, res: u64, from: &Name, read_at: Option<u64>, now: Timestamp) -> Pin {
        if !self.cfg.push || from == &self.cfg.root.id {
            return Pin::Cache;
        }
        let Some(r) = self.resolutions.get(&res) else { return Pin::Lagging };
        let endpoints = r.targets.iter().find(|a| &a.id == from).map(|a| a.endpoints.clone()).unwrap_or_default();
        let csi = r.key.csi.clone();
        let reasks = r.reasks;
        let Some(p) = read_at else {
            // An authority that does not say where its feed stood: cached,
            // and the feed is subscribed from its head (best effort).
            self.ensure_feed(from, &endpoints, None, now);
            return Pin::Cache;
        };
        if self.pin(from, &endpoints, Some(&csi), p, now) {
            Pin::Cache
        } else if reasks < self.cfg.max_reasks {
            Pin::AskAgain
        } else {
            // Serving it would show a client an answer older than a change
            // already applied (a lagging replica): the query fails instead.
            Pin::Lagging
        }
    }

    /// Makes sure the feed of `a` delivers every change after `p`; whether
    /// an answer of `csi` read at `p` is covered (`None`: a referral, which
    /// any applied cover change under it would have superseded — checked
    /// conservatively by position only).
    fn pin(&mut self, a: &Name, endpoints: &[Endpoint], csi: Option<&Csi>, p: u64, now: Timestamp) -> bool {
        let backoff = self.cfg.feed_backoff_ms.0;
        let feed = self.feeds.entry(a.clone()).or_insert_with(|| Feed::new(endpoints.to_vec(), backoff));
        if feed.endpoints.is_empty() {
            feed.endpoints = endpoints.to_vec();
        }
        let (covered, restart) = match feed.link {
            Link::Idle => {
                feed.restart_at(p);
                (true, None)
            }
            Link::Connecting { stream } if !feed.applied_any && feed.known_through.is_some_and(|k| p < k) => {
                // Nothing applied yet: start the subscription earlier instead
                // of asking again.
                feed.restart_at(p);
                (true, Some(Some(StreamId(stream))))
            }
            Link::Backoff { .. } if !feed.applied_any && feed.known_through.is_some_and(|k| p < k) => {
                // The next subscription starts from here.
                feed.restart_at(p);
                return true;
            }
            _ => {
                let ok = match csi {
                    Some(c) => feed.coverage(c, p) == Coverage::Covered,
                    None => feed.known_through.is_none_or(|k| p >= k),
                };
                return ok;
            }
        };
        if let Some(Some(old)) = restart {
            self.streams.remove(&old);
            self.out_transmits.push_back(Transmit::Unsubscribe { stream: old });
        }
        self.subscribe(a, now);
        covered
    }

    fn ensure_feed(&mut self, a: &Name, endpoints: &[Endpoint], since: Option<u64>, now: Timestamp) {
        let backoff = self.cfg.feed_backoff_ms.0;
        let feed = self.feeds.entry(a.clone()).or_insert_with(|| Feed::new(endpoints.to_vec(), backoff));
        if feed.link == Link::Idle {
            if let Some(s) = since {
                feed.restart_at(s);
            }
            self.subscribe(a, now);
        }
    }

    fn subscribe(&mut self, a: &Name, _now: Timestamp) {
        let stream = StreamId(self.id());
        let Some(feed) = self.feeds.get_mut(a) else { return };
        let Some(endpoint) = feed.endpoints.get(feed.next_endpoint % feed.endpoints.len().max(1)).cloned() else { return };
        feed.link = Link::Connecting { stream: stream.0 };
        feed.applied_any = false;
        let since = feed.known_through;
        self.streams.insert(stream, a.clone());
        self.out_transmits.push_back(Transmit::Subscribe { stream, authority: a.clone(), endpoint, since });
    }

    // -----------------------------------------------------------------
    // Fetches: certificates and the root table

    /// The result of a [`Transmit::FetchCert`] or [`Transmit::FetchRootTable`].
    pub fn handle_fetch(&mut self, tx: TransmitId, result: Fetched, now: Timestamp) {
        match self.pending.remove(&tx) {
            Some(Pending::Cert { res, key, from }) => {
                match result {
                    Fetched::Body(pem) => {
                        if let Err(reason) = self.verifier.add_certificate(&pem, now) {
                            self.event(Event::CertRefused { key, authority: from.clone(), reason });
                        }
                    }
                    Fetched::Status(s) => self.event(Event::CertRefused { key, authority: from.clone(), reason: format!("HTTP {s}") }),
                    Fetched::Transport(m) => self.event(Event::CertRefused { key, authority: from.clone(), reason: m }),
                    Fetched::Timeout => self.event(Event::CertRefused { key, authority: from.clone(), reason: "no answer in time".into() }),
                }
                let done = match self.resolutions.get_mut(&res).map(|r| &mut r.stage) {
                    Some(Stage::Certs { pending, .. }) => {
                        pending.retain(|t| *t != tx);
                        pending.is_empty()
                    }
                    _ => false,
                };
                if done
                    && let Some(r) = self.resolutions.get_mut(&res)
                    && let Stage::Certs { from, response, .. } = std::mem::replace(&mut r.stage, Stage::Idle)
                {
                    // Unknown keys stay unknown: verification rejects them.
                    self.on_found(res, &from, response, now);
                }
            }
            Some(Pending::Table { endpoint }) => {
                if self.table_fetch != Some(tx) {
                    return;
                }
                self.table_fetch = None;
                match result {
                    Fetched::Body(b) => match self.install_table(&b, now) {
                        Ok(()) => {
                            self.out_transmits.push_back(Transmit::SaveRootTable { bytes: b });
                            self.timer(now.plus_millis(self.cfg.root_table_refresh_ms), Timer::Table);
                        }
                        Err(reason) => {
                            self.event(Event::RootTableRefused { reason });
                            self.table_retry(endpoint + 1, now);
                        }
                    },
                    Fetched::Status(304) => self.timer(now.plus_millis(self.cfg.root_table_refresh_ms), Timer::Table),
                    Fetched::Status(s) => {
                        self.event(Event::RootTableRefused { reason: format!("HTTP {s}") });
                        self.table_retry(endpoint + 1, now);
                    }
                    Fetched::Transport(m) => {
                        self.event(Event::RootTableRefused { reason: m });
                        self.table_retry(endpoint + 1, now);
                    }
                    Fetched::Timeout => {
                        self.event(Event::RootTableRefused { reason: "no answer in time".into() });
                        self.table_retry(endpoint + 1, now);
                    }
                }
            }
            Some(p @ Pending::Query { .. }) => {
                // Not a fetch: put it back for handle_upstream.
                self.pending.insert(tx, p);
            }
            None => {}
        }
    }

    fn fetch_table(&mut self, endpoint: usize, now: Timestamp) {
        let Some(ep) = self.cfg.root.endpoints.get(endpoint).cloned() else { return };
        let tx = TransmitId(self.id());
        self.table_fetch = Some(tx);
        self.pending.insert(tx, Pending::Table { endpoint });
        self.timer(now.plus_millis(self.cfg.attempt_timeout_ms), Timer::Attempt(tx));
        self.out_transmits.push_back(Transmit::FetchRootTable { id: tx, server: self.cfg.root.id.clone(), endpoint: ep });
    }

    /// After a failed fetch: the next root endpoint at once, or (all
    /// tried) again after a while.
    fn table_retry(&mut self, endpoint: usize, now: Timestamp) {
        if endpoint < self.cfg.root.endpoints.len() {
            self.fetch_table(endpoint, now);
        } else {
            let wait = self.cfg.root_table_refresh_ms.min(60_000);
            self.timer(now.plus_millis(wait), Timer::Table);
        }
    }

    /// A signed root table kept from an earlier run (or given by an
    /// operator): verified like a fetched one.
    pub fn load_root_table(&mut self, bytes: &[u8], now: Timestamp) -> Result<u64, String> {
        self.install_table(bytes, now)?;
        Ok(self.table.as_ref().map_or(0, |t| t.serial))
    }

    fn install_table(&mut self, bytes: &[u8], now: Timestamp) -> Result<(), String> {
        let t = RootTable::decode(bytes, &Limits::DOCUMENT).map_err(|e| format!("root table: {e}"))?;
        self.install_decoded(t, now)
    }

    /// A signed root table the driver has already decoded (the simulator
    /// starts thousands of resolvers from one table): checked and verified
    /// exactly like [`Resolver::load_root_table`]'s.
    pub fn load_root_table_decoded(&mut self, t: RootTable, now: Timestamp) -> Result<u64, String> {
        self.install_decoded(t, now)?;
        Ok(self.table.as_ref().map_or(0, |t| t.serial))
    }

    fn install_decoded(&mut self, t: RootTable, now: Timestamp) -> Result<(), String> {
        if t.source != self.cfg.root.id {
            return Err(format!("root table of {} is not from {}", t.source, self.cfg.root.id));
        }
        if t.valid_until <= now {
            return Err(format!("root table serial {} expired at {}", t.serial, t.valid_until));
        }
        if let Some(cur) = &self.table
            && t.serial < cur.serial
        {
            return Err(format!("root table serial {} is older than serial {} in use", t.serial, cur.serial));
        }
        self.verifier.verify_root_table(&t, now).map_err(|e| format!("root table: {e}"))?;
        let mut routes = RoutingTable::new();
        for d in &t.delegations {
            routes.insert(d.cover.clone(), d.clone());
        }
        self.event(Event::RootTable { serial: t.serial, delegations: t.delegations.len() });
        self.table = Some(Table { routes, serial: t.serial, valid_until: t.valid_until, negative_lifetime: t.negative_lifetime, source: t.source });
        Ok(())
    }

    // -----------------------------------------------------------------
    // Feeds

    /// Something happened on a feed stream.
    pub fn handle_feed(&mut self, stream: StreamId, ev: FeedEvent, now: Timestamp) {
        let Some(a) = self.streams.get(&stream).cloned() else { return };
        let Some(feed) = self.feeds.get_mut(&a) else { return };
        let current = matches!(feed.link, Link::Connecting { stream: s } | Link::Connected { stream: s } if s == stream.0);
        if !current {
            return;
        }
        match ev {
            FeedEvent::Connected => {
                feed.link = Link::Connected { stream: stream.0 };
                feed.backoff_ms = self.cfg.feed_backoff_ms.0;
                let since = feed.known_through;
                self.event(Event::FeedConnected { authority: a, since });
            }
            FeedEvent::Frame(FeedFrame::Change(c)) => {
                if feed.known_through.is_some_and(|k| c.seq <= k) {
                    return; // delivered again (at-least-once)
                }
                feed.applied(c.seq, c.subject.clone());
                self.stats.frames += 1;
                self.apply_change(&a, c.seq, &c.subject, now);
            }
            FeedEvent::Frame(FeedFrame::Heartbeat { seq, .. }) => {
                // Everything through `seq` has been sent before this frame.
                if feed.known_through.is_none_or(|k| seq > k) {
                    feed.known_through = Some(seq);
                }
            }
            FeedEvent::Frame(FeedFrame::Resync { seq, reason }) => {
                feed.restart_at(seq);
                feed.applied_any = true;
                self.stats.resyncs += 1;
                let n = self.answers.retain(|_, e| !e.learned_from(&a));
                self.stats.invalidations += n as u64;
                self.delegations.retain(|l| l.from != a && !l.chain.contains(&a));
                self.event(Event::Resync { authority: a, reason, flushed: n });
            }
            FeedEvent::Garbled(m) => {
                // A frame we cannot read may be a change: start over.
                self.drop_stream(&a, stream, format!("unreadable frame: {m}"), now);
            }
            FeedEvent::Refused(status) => self.drop_stream(&a, stream, format!("HTTP {status}"), now),
            FeedEvent::Closed(m) => self.drop_stream(&a, stream, m, now),
        }
    }

    fn drop_stream(&mut self, a: &Name, stream: StreamId, reason: String, now: Timestamp) {
        let (min, max) = self.cfg.feed_backoff_ms;
        let Some(feed) = self.feeds.get_mut(a) else { return };
        let wait = feed.backoff_ms.clamp(min, max);
        feed.backoff_ms = (wait.saturating_mul(2)).clamp(min, max);
        feed.next_endpoint = feed.next_endpoint.wrapping_add(1);
        feed.link = Link::Backoff { until: now.plus_millis(wait) };
        // The stream id now names the retry timer.
        self.timer(now.plus_millis(wait), Timer::Feed(stream));
        self.event(Event::FeedDown { authority: a.clone(), reason });
    }

    /// Applies one change from `a`'s feed: every answer it makes stale goes
    /// (hot ones are resolved again at once).
    fn apply_change(&mut self, a: &Name, seq: u64, subject: &Subject, now: Timestamp) {
        let hot = self.cfg.hot_hits;
        match subject {
            Subject::Csi(csi) => {
                let gone = self.answers.remove_where(csi, |e| e.learned_from(a) && e.read_at.is_none_or(|p| p < seq));
                self.stats.invalidations += gone.len() as u64;
                for e in gone {
                    if e.hits >= hot {
                        self.refresh(csi, &e, now);
                    }
                }
            }
            Subject::Cover(cover) => {
                let n = self.answers.retain(|c, e| !(e.learned_from(a) && cover.covers(c)));
                self.stats.invalidations += n as u64;
                self.delegations.retain(|l| !((l.from == *a || l.chain.contains(a)) && covers_cover(cover, &l.delegation.cover)));
            }
        }
    }

    /// Resolves an invalidated hot answer again, as the resolver itself
    /// (no client waits; the result is cached as any answer is).
    fn refresh(&mut self, csi: &Csi, e: &Entry, now: Timestamp) {
        let key = ResKey { csi: csi.clone(), variant: e.variant.clone(), path: Vec::new() };
        if self.by_key.contains_key(&key) {
            return;
        }
        let loc = if e.loc.is_empty() { "l1".to_owned() } else { e.loc.clone() };
        let f = FindService { recursive: false, locations: vec![Location::Csi { id: loc, csi: csi.clone() }], service: e.variant.service.clone(), path: None, context: e.variant.context() };
        self.stats.refreshes += 1;
        if let Ok(id) = self.new_resolution(key, &f, now) {
            self.send_next(id, now);
        }
    }

    // -----------------------------------------------------------------
    // Time

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, t))) = self.timers.pop() else { break };
            match t {
                Timer::Query(q) => {
                    // RFC 8767 §5: the client response timer. A stale answer
                    // if there is one, else serverTimeout; the resolution
                    // goes on and refreshes the cache.
                    let Some(w) = self.queries.remove(&q) else { continue };
                    if let Some(r) = self.resolutions.get_mut(&w.res) {
                        r.waiters.retain(|x| *x != q);
                    }
                    let a = self.stale_answer(&w.csi, &w.variant, &w.loc, now).unwrap_or_else(|| {
                        Answer::Failed(Failure::ServerTimeout(format!("no answer from upstream within {} ms", self.cfg.client_timeout_ms)))
                    });
                    self.answer(q, a);
                }
                Timer::Attempt(tx) => {
                    let query = match self.pending.get(&tx) {
                        Some(Pending::Query { .. }) => Some(true),
                        Some(Pending::Cert { .. } | Pending::Table { .. }) => Some(false),
                        None => None,
                    };
                    match query {
                        Some(true) => self.handle_upstream(tx, Upstream::Timeout, now),
                        Some(false) => self.handle_fetch(tx, Fetched::Timeout, now),
                        None => {}
                    }
                }
                Timer::Feed(stream) => {
                    let Some(a) = self.streams.remove(&stream) else { continue };
                    if self.feeds.get(&a).is_some_and(|f| matches!(f.link, Link::Backoff { .. })) {
                        self.subscribe(&a, now);
                    }
                }
                Timer::Table => {
                    if self.table_fetch.is_none() {
                        self.fetch_table(0, now);
                    }
                }
            }
        }
        // Refresh resolutions nobody waits for are bounded by their attempts.
    }
}

enum Pin {
    Cache,
    AskAgain,
    Lagging,
}

/// The chain of referring authorities for a referral taught by `from`.
fn chain_after(chain: &[Name], from: &Name, root: &Name) -> Vec<Name> {
    let mut c = chain.to_vec();
    if from != root && !c.contains(from) {
        c.push(from.clone());
    }
    c
}

fn first_loc(f: &FindService) -> String {
    f.csi_location().map(|(l, _)| l.to_owned()).unwrap_or_default()
}

/// Where the location id's value sits in an encoded answer.
fn loc_span(body: &str, loc: &str) -> Option<(usize, usize)> {
    let marker = "<locationUsed id=\"";
    let start = body.rfind(marker)? + marker.len();
    let end = start + body.get(start..)?.find('"')?;
    // Only ids that need no escaping are spliced.
    (body.get(start..end) == Some(loc)).then_some((start, end))
}

/// A cached entry as the answer for a client whose location id is `loc`.
fn serve(e: &Entry, loc: &str) -> Answer {
    let outcome = if e.found { "found" } else { "notFound" };
    if !e.found || e.loc == loc {
        return Answer::Encoded { body: e.body.clone(), outcome };
    }
    match e.loc_span {
        Some((s, t)) if !loc.bytes().any(|b| matches!(b, b'"' | b'&' | b'<' | b'>' | b'\'')) => {
            let (Some(head), Some(tail)) = (e.body.get(..s), e.body.get(t..)) else { return Answer::Encoded { body: e.body.clone(), outcome } };
            let mut b = Vec::with_capacity(e.body.len() + loc.len());
            b.extend_from_slice(head);
            b.extend_from_slice(loc.as_bytes());
            b.extend_from_slice(tail);
            Answer::Encoded { body: Bytes::from(b), outcome }
        }
        _ => match Response::decode(&e.body, &Limits::MESSAGE) {
            Ok(Response::Found(mut f)) => {
                f.location_used = Some(loc.to_owned());
                Answer::Response(Response::Found(f))
            }
            _ => Answer::Encoded { body: e.body.clone(), outcome },
        },
    }
}
