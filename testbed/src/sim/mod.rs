//! The simulated mode: the same scenarios in virtual time, at sizes no
//! machine runs live.
//!
//! One process, one event queue per policy, deterministic for a seed. The
//! code under test is the product's own: every resolver is an instance of
//! `signpost-resolver-core`'s state machine, every authority is
//! `signpost-authority`'s `Authority` (role checks, porting cases, release
//! epochs, signing, feed numbering) over the in-memory store, and the root
//! table is signed and verified as in production. What is modelled is only
//! what lies between them: link delays, loss, outages, and the users'
//! lookups and the numbering events.
//!
//! Scale comes from laziness and sampling ([`space`]): identifiers exist as
//! a pure function of (seed, index) and only the followed ones are ever
//! materialized; popularity bands are sampled, and each simulated lookup
//! carries the weight of the lookups it stands for (see
//! `docs/simulation.md`).

pub mod report;
pub mod space;
pub mod validate;

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use signpost_authority::core::{Authority, Settings as ASettings};
use signpost_authority::import::ImportItem;
use signpost_authority::store::{FeedPage, MemStore, Store};
use signpost_resolver::core::cache::Variant;
use signpost_resolver::core::{Answer, Config, FeedEvent, Fetched, Resolver, StreamId, Transmit, TransmitId, Upstream, Verify};
use signpost_resolver::resolver::TrustVerifier;
use signpost_schemas::lost::{Assurance, AuthorityRef, Endpoint};
use signpost_schemas::sp::{EntryRecord, FeedFrame, Provision, RootTable, Visibility};
use signpost_schemas::{Csi, FindService, KeyId, Limits, ManualClock, Mapping, Name, Response, Timestamp, failure_errors};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::peer::{Usage, chain_from_pem, validate};
use signpost_trust::sign::Signer;
use signpost_trust::{Peer, Role, ScopeEntry, TrustAnchor};

use crate::oracle::{Oracle, Truth, Verdict};
use crate::scenario::Scenario;
use report::{PolicyFigures, SimReport};
use space::{Space, entry, harmonic, mix};

/// Virtual time starts here (a fixed instant: runs are reproducible).
pub const T0_MS: u64 = 1_798_761_600_000; // 2027-01-01T00:00:00Z

const DAY_S: u64 = 86_400;

fn t0() -> Timestamp {
    Timestamp::from_millis(T0_MS)
}

/// Polls a future that must complete without waiting (the authority's code
/// over the in-memory store never waits).
fn ready<F: Future>(f: F) -> Result<F::Output, String> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err("an authority operation waited in the simulator (it must not)".into()),
    }
}

/// A small deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
    /// An exponential wait with this rate (per second), in µs.
    fn exp_us(&mut self, rate: f64) -> u64 {
        if rate <= 0.0 {
            return u64::MAX;
        }
        let u = self.unit().max(1e-300);
        let s = -u.ln() / rate;
        if s > 1e12 { u64::MAX } else { (s * 1e6) as u64 }
    }
    /// A standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (a, b) = (self.unit().max(1e-300), self.unit());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

// ---------------------------------------------------------------------
// The deployment's keys, made once per run and shared by every policy.

/// Certificates of the simulated deployment (valid for the whole run).
struct Keys {
    anchor: TrustAnchor,
    root_chain: String,
    table: Bytes,
    decoded: RootTable,
    root: signpost_root::RootService,
    /// Per authority: chain and key PEM.
    auth: Vec<(String, String)>,
    /// Peers for provisioning, by (role, id, scope).
    peers: std::sync::Mutex<HashMap<(Role, String, String), Peer>>,
    ca: Ca,
    until: Timestamp,
}

impl Keys {
    fn new(space: &Space, days: u64, negative_ttl: u32) -> Result<Keys, String> {
        let from = Timestamp::from_millis(T0_MS - DAY_S * 1000);
        let until = t0().plus_secs((days + 30) * DAY_S);
        let ca = Ca::generate("signpost-sim", from, until).map_err(|e| e.to_string())?;
        let anchor = TrustAnchor::from_pem(ca.cert_pem().as_bytes()).map_err(|e| e.to_string())?;
        let issue = |role: Role, id: &str, scope: &[&str]| -> Result<(String, String), String> {
            let i = ca
                .issue(&LeafRequest {
                    role,
                    id: Name::parse(id).map_err(|e| e.to_string())?,
                    scope: scope.iter().map(|s| ScopeEntry::parse(s)).collect::<Result<_, _>>()?,
                    not_before: from,
                    not_after: until,
                    ip_sans: vec![],
                })
                .map_err(|e| e.to_string())?;
            Ok((i.chain_pem, i.key_pem))
        };
        let mut auth = Vec::new();
        let mut delegations = Vec::new();
        for a in &space.auths {
            auth.push(issue(Role::Authority, a.id.as_str(), &[&a.key])?);
            delegations.push(signpost_kit::delegation(&a.key, reference(&a.id)?, DAY_S as u32)?);
        }
        let (root_chain, root_key) = issue(Role::Root, "root.sim.example", &[])?;
        let mut t = RootTable { source: Name::parse("root.sim.example").map_err(|e| e.to_string())?, serial: 1, valid_until: until, negative_lifetime: negative_ttl, delegations, signature: None };
        Signer::from_pem(root_key.as_bytes()).map_err(|e| e.to_string())?.sign_root_table(&mut t, t0(), until).map_err(|e| e.to_string())?;
        let table = Bytes::from(t.encode());
        let decoded = RootTable::decode(&table, &Limits::DOCUMENT).map_err(|e| e.to_string())?;
        // The root's own service answers the resolvers' root queries.
        let mut v = signpost_trust::sign::Verifier::new(anchor.clone());
        v.add_pem(root_chain.as_bytes(), t0()).map_err(|e| e.to_string())?;
        let root = signpost_root::RootService::new(t.source.clone(), signpost_root::LoadedTable::load(&table, &v, &t.source, t0())?);
        Ok(Keys { anchor, root_chain, table, decoded, root, auth, peers: std::sync::Mutex::new(HashMap::new()), ca, until })
    }

    fn peer(&self, role: Role, id: &str, scope: &str) -> Result<Peer, String> {
        let key = (role, id.to_owned(), scope.to_owned());
        let mut g = self.peers.lock().map_err(|_| "peer cache poisoned")?;
        if let Some(p) = g.get(&key) {
            return Ok(p.clone());
        }
        let scopes: Vec<ScopeEntry> = if scope.is_empty() { vec![] } else { vec![ScopeEntry::parse(scope)?] };
        let i = self
            .ca
            .issue(&LeafRequest { role, id: Name::parse(id).map_err(|e| e.to_string())?, scope: scopes, not_before: Timestamp::from_millis(T0_MS - DAY_S * 1000), not_after: self.until, ip_sans: vec![] })
            .map_err(|e| e.to_string())?;
        let p = validate(&self.anchor, &chain_from_pem(i.chain_pem.as_bytes()).map_err(|e| e.to_string())?, t0(), Usage::Client).map_err(|e| e.to_string())?;
        g.insert(key, p.clone());
        Ok(p)
    }
}

fn endpoint(id: &Name) -> Result<Endpoint, String> {
    Endpoint::parse(&format!("https://{id}/")).map_err(|e| e.to_string())
}

fn reference(id: &Name) -> Result<AuthorityRef, String> {
    Ok(AuthorityRef { id: id.clone(), endpoints: vec![endpoint(id)?] })
}

// ---------------------------------------------------------------------
// Verification: every check, the signature arithmetic sampled.

struct Checks {
    by_key: HashMap<KeyId, (Name, Vec<ScopeEntry>)>,
    full: TrustVerifier,
    every: u64,
    count: Cell<u64>,
    verified: Cell<u64>,
}

/// The simulator's [`Verify`]: signer known, authority role, source =
/// signer, scope covers the identifier, signature present and in its
/// validity — for every mapping; the ECDSA check itself for every Nth
/// (all of them when `verify_every` is 1).
#[derive(Clone)]
struct SimVerify(Rc<Checks>);

impl Verify for SimVerify {
    fn knows(&self, key: &KeyId) -> bool {
        self.0.by_key.contains_key(key)
    }
    fn add_certificate(&mut self, _pem: &[u8], _now: Timestamp) -> Result<KeyId, String> {
        Err("the simulated deployment knows every signing key".into())
    }
    fn verify_mapping(&self, csi: &Csi, m: &Mapping, now: Timestamp) -> Result<(), String> {
        let s = m.signature.as_ref().ok_or("unsigned mapping")?;
        let (id, scope) = self.0.by_key.get(&s.key_id).ok_or("unknown signing key")?;
        if now > s.valid_until || now.plus_millis(60_000) < s.signed_at {
            return Err("signature outside its validity".into());
        }
        if &m.source != id {
            return Err(format!("source {} is not the signer {id}", m.source));
        }
        if !scope.iter().any(|x| x.covers(csi)) {
            return Err(format!("{id} is not authoritative for this identifier"));
        }
        let n = self.0.count.get();
        self.0.count.set(n + 1);
        if n.is_multiple_of(self.0.every.max(1)) {
            self.0.verified.set(self.0.verified.get() + 1);
            self.0.full.verify_mapping(csi, m, now)?;
        }
        Ok(())
    }
    fn verify_root_table(&self, t: &RootTable, now: Timestamp) -> Result<(), String> {
        self.0.full.verify_root_table(t, now)
    }
}

// ---------------------------------------------------------------------
// The world of one policy.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Root,
    Auth(usize),
}

enum Req {
    Query(TransmitId, Box<FindService>),
    Table(TransmitId),
    Subscribe(StreamId, Option<u64>),
}

enum Inc {
    Up(TransmitId, Upstream),
    Fetch(TransmitId, Fetched),
    Feed(StreamId, FeedEvent),
}

enum Ev {
    Lookup(u32),
    Life(u32),
    Script(usize),
    Arrive { node: Node, r: u32, epoch: u32, req: Req },
    Deliver { r: u32, epoch: u32, inc: Box<Inc> },
    Timer { r: u32, at: u64 },
    Check { r: u32 },
    Outage { a: usize, up: bool },
    Restart { r: u32 },
}

struct Item {
    t: u64,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        Reverse((self.t, self.seq)).cmp(&Reverse((o.t, o.seq)))
    }
}

/// A followed identifier.
struct Ident {
    g: u64,
    csi: Csi,
    auth: usize,
    phone: bool,
    tnsp: Option<u8>,
    entries: Vec<EntryRecord>,
    /// Lookups simulated per second, and the weight of each.
    rate: f64,
    weight: f64,
    /// Resolvers its lookups go to (empty: any).
    subset: Vec<u32>,
    /// Resolvers that have asked for it.
    lookers: Vec<u32>,
    rng: Rng,
    /// Its events' own generator (a pure function of seed and index, so
    /// whether it changes in the run is known before the run).
    life: Rng,
    /// The identifier's own events: the next one's kind.
    next: Life,
    /// Identifiers it stands for (1 / inclusion probability).
    stands_for: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    None,
    Port,
    Release,
    Preference,
    Reassign,
    Claim,
}

struct Sub {
    r: u32,
    epoch: u32,
    stream: StreamId,
    cursor: u64,
    muted: bool,
    last: u64,
}

struct AuthNode {
    core: Authority<MemStore>,
    up: bool,
    subs: Vec<Sub>,
    frames: u64,
    bytes: u64,
    changes: u64,
}

struct Pending {
    tid: u32,
    sent: u64,
    w: f64,
}

struct Watch {
    tid: u32,
    since: u64,
    old: u64,
}

struct Res {
    core: Resolver<SimVerify>,
    epoch: u32,
    zone: u8,
    home: usize,
    armed: Option<u64>,
    queries: HashMap<u64, Pending>,
    watches: Vec<Watch>,
    table_sent: bool,
}

/// One policy's run.
struct World<'a> {
    s: &'a Scenario,
    space: &'a Space,
    keys: &'a Keys,
    policy: &'a str,
    heap: BinaryHeap<Item>,
    seq: u64,
    now: u64,
    end: u64,
    clock: Arc<ManualClock>,
    auths: Vec<AuthNode>,
    by_name: HashMap<Name, Node>,
    root_up: bool,
    res: Vec<Res>,
    cfg: Config,
    checks: Rc<Checks>,
    idents: Vec<Ident>,
    oracle: Oracle,
    rng: Rng,
    script_rng: Rng,
    next_query: u64,
    /// Decoded cached bodies: (hash, len) → what the answer says.
    memo: HashMap<(u64, usize), Result<Truth, String>>,
    fig: PolicyFigures,
    cur_w: f64,
    events: u64,
    frame_sizes: HashMap<u64, usize>,
    progress: bool,
    /// Per authority: resolvers at metro, continental, intercontinental
    /// distance (homes never change).
    classes: Vec<[u64; 3]>,
}

fn body_hash(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in b.chunks(8) {
        let mut x = [0u8; 8];
        x[..c.len()].copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(x));
    }
    h
}

fn observe(r: &Response) -> Result<Truth, String> {
    crate::run::observe(r)
}

fn truth_of(tnsp: Option<u8>, entries: &[EntryRecord]) -> Truth {
    tnsp?;
    let set: std::collections::BTreeSet<String> = entries.iter().filter(|e| matches!(e.visibility, Visibility::All)).map(|e| e.provider.to_string()).collect();
    if set.is_empty() { None } else { Some(set) }
}

impl<'a> World<'a> {
    fn at(&self, us: u64) -> Timestamp {
        t0().plus_millis(us / 1000)
    }

    fn push(&mut self, t: u64, ev: Ev) {
        if t > self.end {
            return;
        }
        self.seq += 1;
        self.heap.push(Item { t, seq: self.seq, ev });
    }

    /// One-way delay between resolver `r` and `node`, µs.
    fn delay(&mut self, r: usize, node: Node) -> u64 {
        let n = &self.s.simulate.network;
        let base = match node {
            Node::Root => n.metro_ms,
            Node::Auth(a) => [n.metro_ms, n.continental_ms, n.intercontinental_ms][self.class(r, a)],
        };
        let j = (n.jitter * self.rng.normal()).exp();
        ((base * j).max(0.01) * 1000.0) as u64
    }

    fn run(&mut self) -> Result<(), String> {
        let tenth = (self.end / 10).max(1);
        let mut shown = 0;
        while let Some(it) = self.heap.pop() {
            if it.t > self.end {
                break;
            }
            if self.progress && it.t / tenth > shown {
                shown = it.t / tenth;
                eprintln!("signpost-testbed: {} {}0 % of the simulated time ({} events)", self.policy, shown, self.events);
            }
            self.now = it.t;
            self.events += 1;
            self.clock.set(self.at(it.t));
            self.step(it.ev)?;
        }
        self.now = self.end;
        Ok(())
    }

    fn step(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Lookup(tid) => self.lookup(tid),
            Ev::Life(tid) => self.life(tid)?,
            Ev::Script(k) => self.script(k)?,
            Ev::Arrive { node, r, epoch, req } => self.arrive(node, r as usize, epoch, req)?,
            Ev::Deliver { r, epoch, inc } => {
                let ri = r as usize;
                if self.res[ri].epoch != epoch {
                    return Ok(());
                }
                let now = self.at(self.now);
                let w = self.cur_w;
                match *inc {
                    Inc::Up(tx, u) => self.res[ri].core.handle_upstream(tx, u, now),
                    Inc::Fetch(tx, f) => self.res[ri].core.handle_fetch(tx, f, now),
                    Inc::Feed(st, f) => self.res[ri].core.handle_feed(st, f, now),
                }
                self.drain(ri, w);
            }
            Ev::Timer { r, at } => {
                let ri = r as usize;
                if self.res[ri].armed != Some(at) {
                    return Ok(());
                }
                self.res[ri].armed = None;
                let now = self.at(self.now);
                self.res[ri].core.handle_timeout(now);
                let w = self.cur_w;
                self.drain(ri, w);
            }
            Ev::Check { r } => self.check_watches(r as usize),
            Ev::Outage { a, up } => self.outage(a, up),
            Ev::Restart { r } => self.restart(r as usize),
        }
        Ok(())
    }

    // --- lookups -------------------------------------------------------

    fn lookup(&mut self, tid: u32) {
        let Some(id) = self.idents.get_mut(tid as usize) else { return };
        let r = if id.subset.is_empty() { id.rng.below(self.res.len()) } else { id.subset[id.rng.below(id.subset.len())] as usize };
        let wait = id.rng.exp_us(id.rate);
        let (csi, w) = (id.csi.clone(), id.weight);
        if !id.lookers.contains(&(r as u32)) {
            id.lookers.push(r as u32);
        }
        self.push(self.now.saturating_add(wait), Ev::Lookup(tid));
        let q = self.next_query;
        self.next_query += 1;
        self.res[r].queries.insert(q, Pending { tid, sent: self.now, w });
        let now = self.at(self.now);
        self.res[r].core.handle_query(q, FindService::for_csi(csi, true), now);
        self.drain(r, w);
    }

    fn drain(&mut self, r: usize, w: f64) {
        self.cur_w = w;
        loop {
            if let Some((q, a)) = self.res[r].core.poll_answer() {
                self.answered(r, q, a);
                continue;
            }
            if let Some(t) = self.res[r].core.poll_transmit() {
                self.transmit(r, t);
                continue;
            }
            if let Some(e) = self.res[r].core.poll_event() {
                if let signpost_resolver::core::Event::Rejected { .. } = e {
                    self.fig.rejected += 1;
                }
                continue;
            }
            break;
        }
        if !self.res[r].watches.is_empty() {
            self.check_watches(r);
        }
        if let Some(t) = self.res[r].core.poll_timeout() {
            let us = t.as_millis().saturating_sub(T0_MS) * 1000;
            let us = us.max(self.now);
            if self.res[r].armed.is_none_or(|a| us < a) {
                self.res[r].armed = Some(us);
                self.push(us, Ev::Timer { r: r as u32, at: us });
            }
        }
    }

    fn truth_of_answer(&mut self, a: &Answer, r: usize) -> Result<Truth, String> {
        match a {
            Answer::Encoded { body, .. } => {
                let key = (body_hash(body), body.len());
                if let Some(v) = self.memo.get(&key) {
                    return v.clone();
                }
                let v = match Response::decode(body, &Limits::MESSAGE) {
                    Ok(r) => observe(&r),
                    Err(_) => Err("undecodable".into()),
                };
                if self.memo.len() > 1_000_000 {
                    self.memo.clear();
                }
                self.memo.insert(key, v.clone());
                v
            }
            Answer::Response(r) => observe(r),
            Answer::Failed(f) => observe(&Response::Errors(failure_errors(self.res[r].core.config().id.clone(), f.clone()))),
        }
    }

    fn answered(&mut self, r: usize, q: u64, a: Answer) {
        let Some(p) = self.res[r].queries.remove(&q) else { return };
        let seen = self.truth_of_answer(&a, r);
        let Some(ident) = self.idents.get(p.tid as usize) else { return };
        let uri = ident.csi.uri().to_owned();
        let (sent, at) = (p.sent / 1000, self.now / 1000);
        self.fig.simulated_lookups += 1;
        self.fig.lookups += p.w;
        let day = (self.now / 1_000_000 / self.fig.bucket_s.max(1)) as usize;
        match seen {
            Err(kind) => {
                *self.fig.errors.entry(kind).or_insert(0.0) += p.w;
                self.fig.bucket(day).errors += p.w;
            }
            Ok(truth) => match self.oracle.judge(&uri, &truth, sent, at) {
                Verdict::Correct => {
                    self.fig.correct += p.w;
                    self.fig.bucket(day).correct += p.w;
                }
                Verdict::Stale { age_ms } => {
                    self.fig.stale += p.w;
                    self.fig.simulated_stale += 1;
                    self.fig.bucket(day).stale += p.w;
                    self.fig.staleness.push(age_ms as f64, p.w);
                }
                Verdict::Wrong => {
                    self.fig.wrong += p.w;
                    self.fig.bucket(day).wrong += p.w;
                    if self.fig.wrong_samples.len() < 10 {
                        self.fig.wrong_samples.push(format!("{uri} at {at} ms (sent {sent} ms) via resolver {r}: {truth:?}; history {:?}", self.oracle.history(&uri)));
                    }
                }
            },
        }
    }

    // --- the network ---------------------------------------------------

    fn transmit(&mut self, r: usize, t: Transmit) {
        let epoch = self.res[r].epoch;
        match t {
            Transmit::Query { id, server, request, .. } => {
                let Some(&node) = self.by_name.get(&server) else {
                    self.push(self.now + 1000, Ev::Deliver { r: r as u32, epoch, inc: Box::new(Inc::Up(id, Upstream::Transport(format!("{server}: unknown host")))) });
                    return;
                };
                *self.fig.tier_requests.entry(tier(node).into()).or_insert(0.0) += self.cur_w;
                *self.fig.tier_requests_simulated.entry(tier(node).into()).or_insert(0) += 1;
                if self.rng.unit() < self.s.simulate.network.loss {
                    return;
                }
                let d = self.delay(r, node);
                self.push(self.now + d, Ev::Arrive { node, r: r as u32, epoch, req: Req::Query(id, Box::new(request)) });
            }
            Transmit::FetchRootTable { id, .. } => {
                *self.fig.tier_requests_simulated.entry("root".into()).or_insert(0) += 1;
                let d = self.delay(r, Node::Root);
                self.push(self.now + d, Ev::Arrive { node: Node::Root, r: r as u32, epoch, req: Req::Table(id) });
            }
            Transmit::FetchCert { id, .. } => {
                self.push(self.now + 1000, Ev::Deliver { r: r as u32, epoch, inc: Box::new(Inc::Fetch(id, Fetched::Status(404))) });
            }
            Transmit::Subscribe { stream, authority, since, .. } => {
                if let Some(&node) = self.by_name.get(&authority) {
                    let d = self.delay(r, node);
                    self.push(self.now + d, Ev::Arrive { node, r: r as u32, epoch, req: Req::Subscribe(stream, since) });
                }
            }
            Transmit::Unsubscribe { stream } => {
                for a in &mut self.auths {
                    a.subs.retain(|s| !(s.r as usize == r && s.stream == stream));
                }
            }
            Transmit::SaveRootTable { .. } => {}
        }
    }

    fn reply(&mut self, node: Node, r: usize, epoch: u32, inc: Inc) {
        let d = self.delay(r, node);
        self.push(self.now + d, Ev::Deliver { r: r as u32, epoch, inc: Box::new(inc) });
    }

    fn arrive(&mut self, node: Node, r: usize, epoch: u32, req: Req) -> Result<(), String> {
        if self.res[r].epoch != epoch {
            return Ok(());
        }
        let up = match node {
            Node::Root => self.root_up,
            Node::Auth(a) => self.auths[a].up,
        };
        if !up {
            let inc = match req {
                Req::Query(tx, _) => Inc::Up(tx, Upstream::Transport("connection refused".into())),
                Req::Table(tx) => Inc::Fetch(tx, Fetched::Transport("connection refused".into())),
                Req::Subscribe(st, _) => Inc::Feed(st, FeedEvent::Closed("connection refused".into())),
            };
            self.reply(node, r, epoch, inc);
            return Ok(());
        }
        match (node, req) {
            (Node::Root, Req::Table(tx)) => {
                let f = if self.res[r].table_sent { Fetched::Status(304) } else { Fetched::Body(self.keys.table.clone()) };
                self.res[r].table_sent = true;
                self.reply(node, r, epoch, Inc::Fetch(tx, f));
            }
            (Node::Root, Req::Query(tx, f)) => {
                // Rare (resolvers preload the table): `signpost-root`'s own service.
                let ctx = signpost_net::Ctx::new(None, std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
                let up = match ready(signpost_net::Service::lost(&self.keys.root, signpost_schemas::Request::FindService(*f), &ctx))? {
                    Ok(signpost_net::LostReply::Response(resp)) => Upstream::Answer(resp),
                    Ok(signpost_net::LostReply::Encoded { body, .. }) => match Response::decode(&body, &Limits::MESSAGE) {
                        Ok(resp) => Upstream::Answer(resp),
                        Err(e) => Upstream::Undecodable(e),
                    },
                    Err(fail) => Upstream::Answer(Response::Errors(failure_errors(signpost_net::Service::id(&self.keys.root), fail))),
                };
                self.reply(node, r, epoch, Inc::Up(tx, up));
            }
            (Node::Auth(a), Req::Query(tx, f)) => {
                let core = &self.auths[a].core;
                let resp = match ready(core.answer(&f))? {
                    Ok(resp) => resp,
                    Err(fail) => Response::Errors(failure_errors(core.settings().id.clone(), fail)),
                };
                self.reply(node, r, epoch, Inc::Up(tx, Upstream::Answer(resp)));
            }
            (Node::Auth(a), Req::Subscribe(stream, since)) => {
                let head = ready(self.auths[a].core.store().head())?.map_err(|e| e.to_string())?;
                let muted = self.policy == "flush-on-notify" && self.res[r].home != a;
                let cursor = since.unwrap_or(head);
                let now = self.at(self.now);
                self.auths[a].subs.push(Sub { r: r as u32, epoch, stream, cursor, muted, last: 0 });
                self.send(a, self.auths[a].subs.len() - 1, FeedEvent::Connected);
                self.send(a, self.auths[a].subs.len() - 1, FeedEvent::Frame(FeedFrame::Heartbeat { seq: cursor.min(head), time: now }));
                let last = self.auths[a].subs.len() - 1;
                self.pump(a, last)?;
            }
            (_, Req::Table(tx)) => self.reply(node, r, epoch, Inc::Fetch(tx, Fetched::Status(404))),
            (Node::Root, Req::Subscribe(st, _)) => self.reply(node, r, epoch, Inc::Feed(st, FeedEvent::Refused(404))),
        }
        Ok(())
    }

    /// Sends one feed event to subscriber `si` of authority `a`, in order.
    fn send(&mut self, a: usize, si: usize, ev: FeedEvent) {
        let (r, epoch, stream) = {
            let s = &self.auths[a].subs[si];
            (s.r as usize, s.epoch, s.stream)
        };
        let d = self.delay(r, Node::Auth(a));
        let s = &mut self.auths[a].subs[si];
        let t = (self.now + d).max(s.last + 1);
        s.last = t;
        self.push(t, Ev::Deliver { r: r as u32, epoch, inc: Box::new(Inc::Feed(stream, ev)) });
    }

    /// Sends subscriber `si` every change after its cursor.
    fn pump(&mut self, a: usize, si: usize) -> Result<(), String> {
        if self.auths[a].subs[si].muted {
            return Ok(());
        }
        loop {
            let cursor = self.auths[a].subs[si].cursor;
            let page = ready(self.auths[a].core.store().changes_since(cursor, 512))?.map_err(|e| e.to_string())?;
            match page {
                FeedPage::Gone { oldest, head } => {
                    self.auths[a].subs[si].cursor = head;
                    self.fig.resyncs += 1;
                    self.send(a, si, FeedEvent::Frame(FeedFrame::Resync { seq: head, reason: format!("since={cursor} is older than the retained history (oldest {oldest})") }));
                }
                FeedPage::Changes(v) if v.is_empty() => return Ok(()),
                FeedPage::Changes(v) => {
                    for c in v {
                        self.auths[a].subs[si].cursor = c.seq;
                        let size = *self.frame_sizes.entry(c.seq ^ ((a as u64) << 48)).or_insert_with(|| FeedFrame::Change(c.clone()).encode().len() + 1);
                        self.auths[a].frames += 1;
                        self.auths[a].bytes += size as u64;
                        if self.policy == "push-lossy" && self.rng.unit() < self.s.simulate.feed_loss {
                            // The stream breaks; the resolver resumes from
                            // what it has applied.
                            self.fig.feed_breaks += 1;
                            self.send(a, si, FeedEvent::Closed("frame lost in transit".into()));
                            self.auths[a].subs.swap_remove(si);
                            return Ok(());
                        }
                        self.send(a, si, FeedEvent::Frame(FeedFrame::Change(c)));
                    }
                }
            }
        }
    }

    fn committed(&mut self, a: usize) -> Result<(), String> {
        self.auths[a].changes += 1;
        let mut i = 0;
        while i < self.auths[a].subs.len() {
            let before = self.auths[a].subs.len();
            self.pump(a, i)?;
            if self.auths[a].subs.len() == before {
                i += 1;
            }
        }
        Ok(())
    }

    // --- invalidation latency --------------------------------------------

    /// After a change of `tid` committed now: every resolver holding a
    /// fresh answer from before is watched until it no longer serves it.
    fn watch(&mut self, tid: u32) {
        let Some(id) = self.idents.get(tid as usize) else { return };
        let (csi, lookers) = (id.csi.clone(), id.lookers.clone());
        let v = Variant::of(&FindService::for_csi(csi.clone(), true));
        let now = self.at(self.now);
        let a = id.auth;
        // A resolver holding no fresh copy answers the new truth on its
        // next fetch: one round trip (as the live mode's probe sees it).
        let mut fresh_fetch = self.classes[a];
        for r in lookers {
            let ri = r as usize;
            let Some(e) = self.res[ri].core.answers().peek(&csi, &v) else { continue };
            if e.fresh_until < now {
                continue;
            }
            fresh_fetch[self.class(ri, a)] -= 1;
            let (old, until) = (body_hash(&e.body), e.fresh_until);
            self.res[ri].watches.push(Watch { tid, since: self.now, old });
            let us = until.as_millis().saturating_sub(T0_MS) * 1000 + 1000;
            self.push(us, Ev::Check { r });
        }
        let n = &self.s.simulate.network;
        for (class, count) in fresh_fetch.into_iter().enumerate() {
            if count > 0 {
                let one_way = [n.metro_ms, n.continental_ms, n.intercontinental_ms][class];
                self.fig.invalidation.push(2.0 * one_way, count as f64);
            }
        }
    }

    /// The distance class between resolver `r` and authority `a`: 0 metro,
    /// 1 continental, 2 intercontinental.
    fn class(&self, r: usize, a: usize) -> usize {
        let res = &self.res[r];
        if res.home == a {
            0
        } else if self.space.auths[a].zone == res.zone {
            1
        } else {
            2
        }
    }

    fn check_watches(&mut self, r: usize) {
        let now = self.at(self.now);
        let mut ws = std::mem::take(&mut self.res[r].watches);
        ws.retain(|w| {
            let Some(id) = self.idents.get(w.tid as usize) else { return false };
            let v = Variant::of(&FindService::for_csi(id.csi.clone(), true));
            let held = self.res[r].core.answers().peek(&id.csi, &v).is_some_and(|e| e.fresh_until >= now && body_hash(&e.body) == w.old);
            if !held {
                let ms = (self.now - w.since) as f64 / 1000.0;
                self.fig.invalidation.push(ms, 1.0);
                self.fig.held_invalidation.push(ms, 1.0);
            }
            held
        });
        self.res[r].watches = ws;
    }

    // --- the identifiers' lives ------------------------------------------

    fn schedule_life(&mut self, tid: u32) {
        let rates = &self.s.simulate.rates;
        let Some(id) = self.idents.get_mut(tid as usize) else { return };
        let year = 365.0 * DAY_S as f64;
        let (kind, wait) = match id.tnsp {
            Some(_) => {
                let port = if id.phone { rates.port_per_year } else { 0.0 };
                let total = port + rates.release_per_year + rates.preference_per_year;
                if total <= 0.0 {
                    (Life::None, u64::MAX)
                } else {
                    let wait = id.life.exp_us(total / year);
                    let x = id.life.unit() * total;
                    (if x < port { Life::Port } else if x < port + rates.release_per_year { Life::Release } else { Life::Preference }, wait)
                }
            }
            None if id.entries.is_empty() && rates.reassign_after_days > 0.0 && id.next == Life::Release => (Life::Reassign, (rates.reassign_after_days * DAY_S as f64 * 1e6) as u64),
            None => (Life::Claim, id.life.exp_us(rates.claim_per_year / year)),
        };
        id.next = kind;
        if kind != Life::None && wait != u64::MAX {
            let t = self.now.saturating_add(wait);
            self.push(t, Ev::Life(tid));
        }
    }

    fn life(&mut self, tid: u32) -> Result<(), String> {
        let kind = self.idents.get(tid as usize).map_or(Life::None, |i| i.next);
        let done = self.apply(tid, kind)?;
        if done {
            *self.fig.events.entry(life_name(kind).into()).or_insert(0.0) += self.idents[tid as usize].stands_for;
        }
        self.schedule_life(tid);
        Ok(())
    }

    /// Applies one event through the authority's own provisioning.
    fn apply(&mut self, tid: u32, kind: Life) -> Result<bool, String> {
        let Some(id) = self.idents.get(tid as usize) else { return Ok(false) };
        let a = id.auth;
        let auth = &self.space.auths[a];
        let csi = id.csi.clone();
        let (tnsp, phone, g) = (id.tnsp, id.phone, id.g);
        let name = |i: u8| auth.tnsps[usize::from(i)].clone();
        let mut new_entries = id.entries.clone();
        let mut new_tnsp = tnsp;
        let ops: Vec<(Peer, Provision)> = match (kind, tnsp) {
            (Life::Port, Some(t)) if phone => {
                let to = 1 - t;
                new_entries.retain(|e| !e.bound_to_tnsp);
                new_tnsp = Some(to);
                vec![(self.keys.peer(Role::Csip, &name(t), "")?, Provision::Port { csi: csi.clone(), to: Name::parse(&name(to)).map_err(|e| e.to_string())? })]
            }
            (Life::Release, Some(t)) => {
                new_entries.clear();
                new_tnsp = None;
                vec![(self.keys.peer(Role::Csip, &name(t), "")?, Provision::Release { csi: csi.clone() })]
            }
            (Life::Preference, Some(_)) => {
                let Some(k) = new_entries.iter().position(|e| matches!(e.visibility, Visibility::All)) else { return Ok(false) };
                let mut en = new_entries[k].clone();
                en.visibility = Visibility::Only(vec![Name::parse("partner.example").map_err(|e| e.to_string())?]);
                if en.assurance == Assurance::CsipAttested {
                    en.assurance = Assurance::MspVerified;
                }
                new_entries[k] = en.clone();
                vec![(self.keys.peer(Role::Msp, en.provider.as_str(), "")?, Provision::PutEntry { csi: csi.clone(), entry: en })]
            }
            (Life::Reassign | Life::Claim, None) => {
                let ott = &self.s.population.ott;
                let provider = ott.get((mix(g ^ self.now) % ott.len().max(1) as u64) as usize).cloned().unwrap_or_else(|| "ott-a.example".into());
                let mut en = entry(&provider, g + (self.now << 8), false)?;
                en.assurance = Assurance::MspVerified;
                new_entries = vec![en.clone()];
                new_tnsp = Some(0);
                vec![
                    (self.keys.peer(Role::Csip, &name(0), &auth.key)?, Provision::Assign { csi: csi.clone(), tnsp: None }),
                    (self.keys.peer(Role::Msp, &provider, "")?, Provision::PutEntry { csi: csi.clone(), entry: en }),
                ]
            }
            _ => return Ok(false),
        };
        for (peer, op) in ops {
            if let Err(e) = ready(self.auths[a].core.provision(&peer, op))? {
                *self.fig.errors.entry(format!("provision refused: {e}")).or_insert(0.0) += 1.0;
                return Ok(false);
            }
        }
        let id = &mut self.idents[tid as usize];
        id.entries = new_entries;
        id.tnsp = new_tnsp;
        let truth = truth_of(new_tnsp, &id.entries);
        let uri = id.csi.uri().to_owned();
        self.oracle.set(&uri, self.now / 1000, truth);
        self.watch(tid);
        self.committed(a)?;
        Ok(true)
    }

    fn script(&mut self, k: usize) -> Result<(), String> {
        let Some(e) = self.s.event.get(k).cloned() else { return Ok(()) };
        let label = match &e.target {
            Some(t) => format!("{} {t}", e.kind),
            None if e.kind.starts_with("root-") => e.kind.clone(),
            None => format!("{} {}", e.kind, e.count),
        };
        self.fig.event_marks.push((e.at_s / self.fig.bucket_s.max(1) as f64, label));
        let kind = match e.kind.as_str() {
            "port" => Life::Port,
            "release" => Life::Release,
            "preference" => Life::Preference,
            "reassign" => Life::Reassign,
            "claim" => Life::Claim,
            "outage" | "recover" => {
                let up = e.kind == "recover";
                if let Some(a) = self.space.auths.iter().position(|x| Some(&x.key) == e.target.as_ref()) {
                    self.outage(a, up);
                }
                return Ok(());
            }
            "root-outage" => {
                self.root_up = false;
                return Ok(());
            }
            "root-recover" => {
                self.root_up = true;
                return Ok(());
            }
            "resolver-restart" => {
                let r = e.target.as_deref().and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
                if r < self.res.len() {
                    self.restart(r);
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        for _ in 0..e.count {
            // Candidates as the live mode picks them: ports and releases
            // among assigned identifiers, reassignments among released
            // ones, claims among spares.
            let cands: Vec<u32> = (0..self.idents.len() as u32)
                .filter(|&i| {
                    let id = &self.idents[i as usize];
                    match kind {
                        Life::Port => id.phone && id.tnsp.is_some(),
                        Life::Release => id.tnsp.is_some(),
                        Life::Preference => id.tnsp.is_some() && id.entries.iter().any(|x| matches!(x.visibility, Visibility::All)),
                        Life::Reassign => id.tnsp.is_none() && id.next == Life::Reassign,
                        Life::Claim => id.tnsp.is_none() && !self.space.assigned_at_start(id.g) && id.next != Life::Reassign,
                        Life::None => false,
                    }
                })
                .collect();
            let Some(&tid) = cands.get(self.script_rng.below(cands.len())) else { break };
            if self.apply(tid, kind)? {
                *self.fig.events.entry(life_name(kind).into()).or_insert(0.0) += 1.0;
                if kind == Life::Release {
                    self.idents[tid as usize].next = Life::Reassign;
                }
            }
        }
        Ok(())
    }

    fn outage(&mut self, a: usize, up: bool) {
        let Some(node) = self.auths.get_mut(a) else { return };
        node.up = up;
        if up {
            return;
        }
        self.fig.outages += 1;
        let subs = std::mem::take(&mut self.auths[a].subs);
        for s in subs {
            let d = self.delay(s.r as usize, Node::Auth(a));
            self.push(self.now + d, Ev::Deliver { r: s.r, epoch: s.epoch, inc: Box::new(Inc::Feed(s.stream, FeedEvent::Closed("authority down".into()))) });
        }
        let mean = self.s.simulate.rates.outage_minutes * 60.0;
        if mean > 0.0 && self.s.simulate.rates.authority_outages_per_year > 0.0 {
            let back = self.now + (mean * 1e6) as u64;
            self.push(back, Ev::Outage { a, up: true });
        }
    }

    fn restart(&mut self, r: usize) {
        self.fig.restarts += 1;
        let now = self.at(self.now);
        let mut cfg = self.cfg.clone();
        cfg.id = self.res[r].core.config().id.clone();
        let mut core = Resolver::new(cfg, SimVerify(self.checks.clone()), now);
        let _ = core.load_root_table_decoded(self.keys.decoded.clone(), now);
        let res = &mut self.res[r];
        res.core = core;
        res.epoch += 1;
        res.armed = None;
        res.watches.clear();
        let lost = res.queries.len();
        res.queries.clear();
        *self.fig.errors.entry("restart".into()).or_insert(0.0) += lost as f64;
        for a in &mut self.auths {
            a.subs.retain(|s| s.r as usize != r);
        }
        self.drain(r, 1.0);
        let rate = self.s.simulate.rates.resolver_restarts_per_year / (365.0 * DAY_S as f64);
        if rate > 0.0 {
            let t = self.now.saturating_add(self.rng.exp_us(rate));
            self.push(t, Ev::Restart { r: r as u32 });
        }
    }
}

fn tier(n: Node) -> &'static str {
    match n {
        Node::Root => "root",
        Node::Auth(_) => "authority",
    }
}

fn life_name(k: Life) -> &'static str {
    match k {
        Life::Port => "port",
        Life::Release => "release",
        Life::Preference => "preference",
        Life::Reassign => "reassign",
        Life::Claim => "claim",
        Life::None => "none",
    }
}

// ---------------------------------------------------------------------
// Which identifiers are followed, and how their lookups are sampled.

/// A followed identifier before materialization.
#[derive(Debug, Clone, PartialEq)]
pub struct Followed {
    /// Global index.
    pub g: u64,
    /// Popularity rank.
    pub rank: u64,
    /// Identifiers it stands for.
    pub stands_for: f64,
}

/// The popularity bands of a namespace of `total`: ranks [0, 9), [9, 99),
/// [99, 999), … (ranks 1–9, 10–99, … counted from 1).
fn bands(total: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut lo = 0u64;
    let mut width = 9u64;
    std::iter::from_fn(move || {
        if lo >= total {
            return None;
        }
        let hi = lo.saturating_add(width).min(total);
        let band = (lo, hi);
        lo = hi;
        width = width.saturating_mul(10);
        Some(band)
    })
}

fn life_rng(seed: u64, g: u64) -> Rng {
    Rng::new(seed ^ mix(g ^ 0x11FE))
}

/// Whether identifier `g`'s own events start within `duration` s: the
/// first draw of its event generator, as the run will make it.
pub fn changes_within(space: &Space, rates: &crate::scenario::Rates, g: u64, duration: u64) -> bool {
    let year = 365.0 * DAY_S as f64;
    let mut r = life_rng(space.seed, g);
    let (a, _) = space.locate(g);
    let total = if space.assigned_at_start(g) {
        let phone = space.auths.get(a).is_some_and(|x| x.phone.is_some());
        (if phone { rates.port_per_year } else { 0.0 }) + rates.release_per_year + rates.preference_per_year
    } else {
        rates.claim_per_year
    };
    r.exp_us(total / year) <= duration.saturating_mul(1_000_000)
}

/// The followed identifiers, stratified: per popularity band,
/// `per_band` drawn among those whose own events do not start in the run
/// and `changers` among those whose do (0: no stratification), each
/// standing for its stratum's estimated size / followed.
pub fn followed_stratified(space: &Space, rates: &crate::scenario::Rates, duration: u64, per_band: u64, changers: u64) -> Result<Vec<Followed>, String> {
    if changers == 0 || per_band == 0 {
        return followed(space, per_band);
    }
    let mut out = Vec::new();
    for (lo, hi) in bands(space.total) {
        let size = hi - lo;
        if size <= per_band + changers {
            out.extend((lo..hi).map(|rank| Followed { g: space.at_rank(rank), rank, stands_for: 1.0 }));
        } else {
            let (mut quiet, mut busy) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
            let (mut tries, mut seen_busy, mut k) = (0u64, 0u64, 0u64);
            let max_tries = 200 * (per_band + changers);
            while (quiet.len() < per_band as usize || busy.len() < changers as usize) && tries < max_tries {
                let rank = lo + mix(space.seed ^ mix(lo ^ mix(k ^ 0xBA4D))) % size;
                k += 1;
                if quiet.contains(&rank) || busy.contains(&rank) {
                    continue;
                }
                tries += 1;
                if changes_within(space, rates, space.at_rank(rank), duration) {
                    seen_busy += 1;
                    if busy.len() < changers as usize {
                        busy.insert(rank);
                    }
                } else if quiet.len() < per_band as usize {
                    quiet.insert(rank);
                }
            }
            // The stratum sizes, estimated from the draws.
            let share = seen_busy as f64 / tries.max(1) as f64;
            let (n_busy, n_quiet) = (size as f64 * share, size as f64 * (1.0 - share));
            let (bl, ql) = (busy.len().max(1) as f64, quiet.len().max(1) as f64);
            out.extend(busy.into_iter().map(|rank| Followed { g: space.at_rank(rank), rank, stands_for: n_busy / bl }));
            out.extend(quiet.into_iter().map(|rank| Followed { g: space.at_rank(rank), rank, stands_for: n_quiet / ql }));
        }
    }
    out.sort_by_key(|f| f.rank);
    Ok(out)
}

/// The followed identifiers: every one (exact), or per popularity band.
pub fn followed(space: &Space, per_band: u64) -> Result<Vec<Followed>, String> {
    const EXACT_MAX: u64 = 5_000_000;
    if per_band == 0 {
        if space.total > EXACT_MAX {
            return Err(format!("{} identifiers are too many to follow every one (at most {EXACT_MAX}); set simulate.traced_per_band", space.total));
        }
        return Ok((0..space.total).map(|rank| Followed { g: space.at_rank(rank), rank, stands_for: 1.0 }).collect());
    }
    let mut out = Vec::new();
    for (lo, hi) in bands(space.total) {
        let size = hi - lo;
        if size <= per_band {
            out.extend((lo..hi).map(|rank| Followed { g: space.at_rank(rank), rank, stands_for: 1.0 }));
        } else {
            let mut picked = std::collections::BTreeSet::new();
            let mut k = 0u64;
            while picked.len() < per_band as usize {
                picked.insert(lo + mix(space.seed ^ mix(lo ^ mix(k ^ 0xBA4D))) % size);
                k += 1;
            }
            let stands = size as f64 / per_band as f64;
            out.extend(picked.into_iter().map(|rank| Followed { g: space.at_rank(rank), rank, stands_for: stands }));
        }
    }
    Ok(out)
}

/// Runs every policy of `s` in virtual time.
pub fn simulate(s: &Scenario, seed: u64) -> Result<(SimReport, report::Measured), String> {
    let wall = std::time::Instant::now();
    let space = Space::new(s, seed)?;
    let duration = s.simulate.duration_s.unwrap_or(s.duration_s);
    let keys = Keys::new(&space, duration.div_ceil(DAY_S), s.negative_ttl_s)?;
    let follow = followed_stratified(&space, &s.simulate.rates, duration, s.simulate.traced_per_band, s.simulate.changers_per_band)?;
    let policies: Vec<String> = s.policies.clone();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    type Outcome = Result<(PolicyFigures, u64, f64), String>;
    let out: std::sync::Mutex<Vec<Option<Outcome>>> = std::sync::Mutex::new((0..policies.len()).map(|_| None).collect());
    std::thread::scope(|sc| {
        let workers: Vec<_> = (0..threads.min(policies.len()))
            .map(|_| {
                sc.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = policies.get(i) else { break };
                        let started = std::time::Instant::now();
                        let r = run_policy(s, &space, &keys, &follow, p, duration).map(|(f, n)| (f, n, started.elapsed().as_secs_f64()));
                        if let Ok(mut g) = out.lock() {
                            g[i] = Some(r);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
    });
    let results: Vec<Outcome> = out.into_inner().unwrap_or_default().into_iter().map(|x| x.unwrap_or_else(|| Err("a policy run did not finish".into()))).collect();
    let mut figures = BTreeMap::new();
    let mut measured = report::Measured { wall_s: 0.0, events: 0, events_per_s: 0.0, peak_rss_mib: 0.0, policies: BTreeMap::new() };
    for (p, r) in policies.iter().zip(results) {
        let (f, events, secs) = r?;
        measured.events += events;
        measured.policies.insert(p.clone(), report::MeasuredPolicy { wall_s: secs, events, events_per_s: events as f64 / secs.max(1e-9) });
        figures.insert(p.clone(), f);
    }
    measured.wall_s = wall.elapsed().as_secs_f64();
    measured.events_per_s = measured.events as f64 / measured.wall_s.max(1e-9);
    measured.peak_rss_mib = report::peak_rss_mib();
    let rep = SimReport::new(s, &space, seed, duration, follow.len(), figures);
    Ok((rep, measured))
}

fn run_policy(s: &Scenario, space: &Space, keys: &Keys, follow: &[Followed], policy: &str, duration: u64) -> Result<(PolicyFigures, u64), String> {
    let clock = Arc::new(ManualClock::new(t0()));
    let sim = &s.simulate;
    let seed = space.seed;
    // Authorities over in-memory stores.
    let mut auths = Vec::new();
    let mut by_name = HashMap::new();
    let mut by_key = HashMap::new();
    let mut full = TrustVerifier::new(keys.anchor.clone(), Some(keys.root_chain.as_bytes()), t0())?;
    for (i, (a, (chain, key))) in space.auths.iter().zip(&keys.auth).enumerate() {
        let signer = Signer::from_pem(key.as_bytes()).map_err(|e| e.to_string())?;
        by_key.insert(signer.key_id().clone(), (a.id.clone(), vec![ScopeEntry::parse(&a.key)?]));
        full.add_certificate(chain.as_bytes(), t0())?;
        let settings = ASettings {
            id: a.id.clone(),
            scope: vec![ScopeEntry::parse(&a.key)?],
            mapping_ttl: s.mapping_ttl_s,
            negative_ttl: s.negative_ttl_s,
            signature_validity: 14 * DAY_S,
            renew_before: 2 * DAY_S,
            root: None,
        };
        let core = ready(Authority::new(settings, MemStore::new(), signer, clock.clone()))?.map_err(|e| e.to_string())?;
        by_name.insert(a.id.clone(), Node::Auth(i));
        auths.push(AuthNode { core, up: true, subs: Vec::new(), frames: 0, bytes: 0, changes: 0 });
    }
    let root_id = Name::parse("root.sim.example").map_err(|e| e.to_string())?;
    by_name.insert(root_id.clone(), Node::Root);
    let checks = Rc::new(Checks { by_key, full, every: sim.verify_every, count: Cell::new(0), verified: Cell::new(0) });

    // The followed identifiers, materialized: their initial state (a pure
    // function of seed and index) imported into their authority.
    let year = 365.0 * DAY_S as f64;
    let rate_total = sim.lookup_rate.unwrap_or(f64::from(s.load.rate));
    let h = harmonic(space.total, s.load.zipf);
    let resolvers = s.resolvers as f64;
    let ttl = f64::from(s.mapping_ttl_s.max(1));
    let mut idents = Vec::with_capacity(follow.len());
    let mut oracle = Oracle::new();
    let mut batches: Vec<Vec<ImportItem>> = (0..space.auths.len()).map(|_| Vec::new()).collect();
    for f in follow {
        let (a, _) = space.locate(f.g);
        let csi = space.csi(f.g)?;
        let (tnsp, entries) = space.initial(f.g)?;
        let lam = rate_total * ((f.rank + 1) as f64).powf(-s.load.zipf) / h;
        let pair = lam / resolvers;
        let thin = if sim.warm_lookups_per_ttl > 0.0 { pair.min(sim.warm_lookups_per_ttl / ttl) } else { pair };
        let budget = sim.max_lookups_per_identifier / duration as f64;
        let k = if thin * resolvers <= budget { s.resolvers } else { ((budget / thin).floor() as usize).clamp(1, s.resolvers) };
        let rate = thin * k as f64;
        let weight = if rate > 0.0 { lam / rate * f.stands_for } else { 0.0 };
        let mut rng = Rng::new(seed ^ mix(f.g ^ 0x1DE));
        let subset = if k < s.resolvers {
            let mut set = std::collections::BTreeSet::new();
            while set.len() < k {
                set.insert(rng.below(s.resolvers) as u32);
            }
            set.into_iter().collect()
        } else {
            vec![]
        };
        oracle.set(csi.uri(), 0, truth_of(tnsp, &entries));
        if let Some(t) = tnsp {
            batches[a].push(ImportItem { csi: csi.clone(), tnsp: Some(Name::parse(&space.auths[a].tnsps[usize::from(t)]).map_err(|e| e.to_string())?), entries: entries.clone(), line: idents.len() + 1 });
        }
        idents.push(Ident { g: f.g, csi, auth: a, phone: space.auths[a].phone.is_some(), tnsp, entries, rate, weight, subset, lookers: vec![], rng, life: life_rng(seed, f.g), next: Life::None, stands_for: f.stands_for });
    }
    clock.set(t0());
    for (a, b) in auths.iter().zip(batches) {
        if !b.is_empty() {
            ready(a.core.import(b, &|_| {}))?.map_err(|e| e.to_string())?;
        }
    }

    // Resolvers: the product's state machine, the root table preloaded.
    let mut cfg = Config::new(Name::parse("r0.sim.example").map_err(|e| e.to_string())?, reference(&root_id)?);
    cfg.push = policy != "ttl-only";
    cfg.preload_root_table = true;
    cfg.root_table_refresh_ms = sim.root_table_refresh_s * 1000;
    if let Some(n) = sim.resolver_cache_entries {
        cfg.max_entries = n;
    }
    let phones: Vec<(usize, u64)> = space.auths.iter().enumerate().filter(|(_, a)| a.phone.is_some()).map(|(i, a)| (i, a.assigned.max(1))).collect();
    let weight_total: u64 = phones.iter().map(|p| p.1).sum();
    let mut res = Vec::with_capacity(s.resolvers);
    for r in 0..s.resolvers {
        let mut c = cfg.clone();
        c.id = Name::parse(&format!("r{r}.sim.example")).map_err(|e| e.to_string())?;
        let mut core = Resolver::new(c, SimVerify(checks.clone()), t0());
        core.load_root_table_decoded(keys.decoded.clone(), t0())?;
        // The resolver's home country: by numbers, from the seed.
        let mut x = mix(seed ^ mix(r as u64 ^ 0x4E5)) % weight_total.max(1);
        let mut home = phones.first().map_or(0, |p| p.0);
        for (i, w) in &phones {
            if x < *w {
                home = *i;
                break;
            }
            x -= w;
        }
        res.push(Res { core, epoch: 0, zone: space.auths[home].zone, home, armed: None, queries: HashMap::new(), watches: vec![], table_sent: true });
    }
    let end = duration * 1_000_000;
    let mut fig = PolicyFigures::new(policy, if duration > 4 * DAY_S { DAY_S } else { 1 });
    fig.verification = if sim.verify_every <= 1 { "every signature verified (ECDSA P-256)".into() } else { format!("every check on every mapping; the ECDSA signature on 1 in {}", sim.verify_every) };
    let mut w = World {
        s,
        space,
        keys,
        policy,
        heap: BinaryHeap::new(),
        seq: 0,
        now: 0,
        end,
        clock,
        auths,
        by_name,
        root_up: true,
        res,
        cfg,
        checks,
        idents,
        oracle,
        rng: Rng::new(seed ^ 0x0E7),
        script_rng: Rng::new(seed ^ 0x5C41),
        next_query: 1,
        memo: HashMap::new(),
        fig,
        cur_w: 1.0,
        events: 0,
        frame_sizes: HashMap::new(),
        progress: duration >= 7 * DAY_S,
        classes: vec![],
    };
    w.classes = (0..w.auths.len())
        .map(|a| {
            let mut c = [0u64; 3];
            for r in 0..w.res.len() {
                c[w.class(r, a)] += 1;
            }
            c
        })
        .collect();
    for r in 0..w.res.len() {
        w.drain(r, 1.0);
    }
    for tid in 0..w.idents.len() as u32 {
        let first = {
            let id = &mut w.idents[tid as usize];
            id.rng.exp_us(id.rate)
        };
        w.push(first, Ev::Lookup(tid));
        w.schedule_life(tid);
    }
    for (k, e) in s.event.iter().enumerate() {
        w.push((e.at_s * 1e6) as u64, Ev::Script(k));
    }
    let rates = &s.simulate.rates;
    if rates.authority_outages_per_year > 0.0 {
        for a in 0..w.auths.len() {
            let mut t = 0u64;
            loop {
                t = t.saturating_add(w.rng.exp_us(rates.authority_outages_per_year / year));
                if t > end {
                    break;
                }
                w.push(t, Ev::Outage { a, up: false });
            }
        }
    }
    if rates.resolver_restarts_per_year > 0.0 {
        for r in 0..w.res.len() {
            let t = w.rng.exp_us(rates.resolver_restarts_per_year / year);
            w.push(t, Ev::Restart { r: r as u32 });
        }
    }
    w.run()?;

    // What the run measured.
    let mut fig = std::mem::replace(&mut w.fig, PolicyFigures::new(policy, 1));
    fig.signatures_checked = w.checks.count.get();
    fig.signatures_verified = w.checks.verified.get();
    fig.unanswered = w.res.iter().map(|r| r.queries.len() as u64).sum();
    let entries: Vec<u64> = w.res.iter().map(|r| r.core.answers().len() as u64).collect();
    fig.cache_entries_mean = entries.iter().sum::<u64>() as f64 / entries.len().max(1) as f64;
    fig.cache_entries_max = entries.iter().copied().max().unwrap_or(0);
    fig.cache_bytes_total = w.res.iter().map(|r| r.core.answers().bytes() as u64).sum();
    let stats = w.res.iter().map(|r| r.core.stats()).fold((0u64, 0u64), |acc, st| (acc.0 + st.hits, acc.1 + st.misses));
    fig.hit_ratio = if stats.0 + stats.1 == 0 { 0.0 } else { stats.0 as f64 / (stats.0 + stats.1) as f64 };
    for (a, node) in space.auths.iter().zip(&w.auths) {
        fig.feed.push(report::FeedFigures { authority: a.key.clone(), changes_simulated: node.changes, frames_delivered: node.frames, bytes_delivered: node.bytes, subscribers_at_end: node.subs.len() as u64 });
    }
    fig.materialized = w.auths.iter().map(|a| a.core.store().len() as u64).sum();
    Ok((fig, w.events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_events_stay_small() {
        // The heap moves items on every push and pop: big payloads are boxed.
        assert!(std::mem::size_of::<Item>() <= 64, "{} bytes", std::mem::size_of::<Item>());
    }

    #[test]
    fn the_popularity_permutation_is_a_bijection() {
        let s = Scenario::parse(crate::scenario::DEMO).unwrap_or_else(|e| panic!("{e}"));
        let space = Space::new(&s, 3).unwrap_or_else(|e| panic!("{e}"));
        let mut seen = vec![false; space.total as usize];
        for r in 0..space.total {
            let g = space.at_rank(r) as usize;
            assert!(!seen[g], "rank {r} maps to {g} twice");
            seen[g] = true;
        }
    }
}
