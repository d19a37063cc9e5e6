//! Runs a scenario under one invalidation policy: builds the topology,
//! provisions a synthetic population, drives lookups from simulated APs
//! through the resolvers, commits the timed events, and judges every answer
//! against the oracle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use signpost_authority::import::ImportItem;
use signpost_net::client::Client;
use signpost_schemas::lost::Assurance;
use signpost_schemas::sp::{EntryRecord, Provision, Visibility};
use signpost_net::observe::Observer;
use signpost_resolver::ohttp;
use signpost_schemas::lost::Endpoint;
use signpost_schemas::{Csi, E164, FindService, Limits, MappingBody, Name, Request, Response, SenderContext};
use signpost_trust::Role;

use crate::oracle::{Oracle, Truth, Verdict};
use crate::scenario::Scenario;
use crate::topology::Live;

/// A small deterministic generator (xorshift64*), seeded per scenario.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
}

/// Popularity: Zipf over ranks 1..=n.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// Weights 1/rank^s.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|r| {
                acc += 1.0 / (r as f64).powf(s);
                acc
            })
            .collect();
        Zipf { cumulative }
    }
    /// A rank (0-based).
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.unit() * total;
        self.cumulative.partition_point(|&c| c < x).min(self.cumulative.len().saturating_sub(1))
    }
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Correct answers.
    pub correct: u64,
    /// Stale answers.
    pub stale: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Errors (no answer).
    pub errors: u64,
}

/// What one policy run measured.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// `push` or `ttl-only`.
    pub policy: String,
    /// How the APs reached the resolvers: `direct` or `relay`.
    pub mode: String,
    /// Per tier: what its records show it learned (see [`crate::privacy`]).
    pub privacy: BTreeMap<String, crate::privacy::TierView>,
    /// Identifiers in the population.
    pub identifiers: usize,
    /// Lookups sent.
    pub lookups: u64,
    /// Verdicts.
    pub correct: u64,
    /// Stale answers.
    pub stale: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// Time from each commit until every resolver answered the new truth,
    /// ms, sorted.
    pub invalidation_ms: Vec<f64>,
    /// Ages of stale answers, ms, sorted.
    pub stale_age_ms: Vec<u64>,
    /// Resolver cache hit ratio.
    pub hit_ratio: f64,
    /// Requests served per tier.
    pub tier_requests: BTreeMap<String, u64>,
    /// Lookups per second achieved.
    pub lookups_per_s: f64,
    /// Run length, s.
    pub duration_s: f64,
    /// Events committed.
    pub events: Vec<String>,
    /// Events as chart markers: (second of the run, what).
    pub event_marks: Vec<(f64, String)>,
    /// The first wrong answers, described (identifier, what was seen, the
    /// recorded history), for diagnosis.
    pub wrong_samples: Vec<String>,
    /// Enumeration scans: requests sent.
    pub scan_sent: u64,
    /// Enumeration scans: requests refused by the rate limit (forbidden with Retry-After).
    pub scan_throttled: u64,
}

impl PolicyReport {
    /// The run's name in reports: the policy, and the mode unless direct.
    pub fn label(&self) -> String {
        if self.mode == "direct" { self.policy.clone() } else { format!("{} via relay", self.policy) }
    }
}

/// The sender's provider every simulated AP names in its lookups' sender
/// context (no recipient restricts an entry to it, so answers are the
/// same as without a context).
pub const SENDER_PROVIDER: &str = "msp-sender.testbed.example";

/// How an AP reaches a resolver.
#[derive(Debug, Clone)]
enum Route {
    /// `POST /lost` on the resolver.
    Direct(Endpoint, Name),
    /// Oblivious HTTP through a relay: its `POST /relay`, its id, the
    /// gateway's key configuration.
    Relay(Endpoint, Name, Arc<Vec<u8>>),
}

/// The findService every AP sends for `csi`.
fn find_body(csi: &Csi) -> Bytes {
    let mut f = FindService::for_csi(csi.clone(), true);
    f.context = Name::parse(SENDER_PROVIDER).ok().map(|p| SenderContext { sender_provider: Some(p), tags: vec![] });
    Bytes::from(Request::FindService(f).encode())
}

/// One LoST request by a route: the answer's body and whether it carries
/// a rate limit's Retry-After; or an error label. Through a relay, the
/// relay's own 429 is `forbidden` (like the resolver's limit directly).
async fn ask(c: &Client, route: &Route, body: Bytes) -> Result<(bool, Bytes), String> {
    match route {
        Route::Direct(ep, id) => c.post_lost(ep, id, body).await.map(|a| (a.headers.contains_key("retry-after"), a.body)).map_err(|e| e.label().to_owned()),
        Route::Relay(relay, id, keys) => {
            let inner = ohttp::encode_request("resolver", "/lost", signpost_schemas::lost::CONTENT_TYPE, &body).map_err(|e| e.label().to_owned())?;
            let sealed = ohttp::seal(keys, &inner).map_err(|e| e.label().to_owned())?;
            let a = c.raw(relay, id, signpost_net::hyper::Method::POST, ohttp::REQUEST_CONTENT_TYPE, Bytes::from(sealed.body.clone())).await.map_err(|e| e.label().to_owned())?;
            if a.status == 429 {
                return Err("forbidden".into());
            }
            if a.status != 200 {
                return Err(format!("relay_{}", a.status));
            }
            let opened = sealed.open(&a.body).map_err(|e| e.label().to_owned())?;
            let r = ohttp::decode_response(&opened).map_err(|e| e.label().to_owned())?;
            // The inner answer carries no headers; the resolver's own limit
            // shows as its LoST `forbidden`.
            Ok((false, Bytes::from(r.body)))
        }
    }
}

fn truth_of(entries: &[EntryRecord]) -> Truth {
    if entries.is_empty() { None } else { Some(entries.iter().map(|e| e.provider.to_string()).collect()) }
}

/// An entry as the simulated mode makes it (one definition for both modes).
fn entry(provider: &str, i: usize, bound: bool) -> Result<EntryRecord, String> {
    crate::sim::space::entry(provider, i as u64, bound)
}

/// Records a change in the oracle as soon as it is committed, dated at
/// the start of its commit (an answer from then on may show it).
fn record(oracle: &Mutex<Oracle>, change: Option<&(Csi, Truth, u64)>) {
    if let (Some((csi, t, at)), Ok(mut o)) = (change, oracle.lock()) {
        o.set(csi.uri(), *at, t.clone());
    }
}

/// One lookup as seen by a simulated AP.
#[derive(Debug)]
struct Observation {
    pick: usize,
    result: Result<Truth, String>,
    sent: u64,
    at: u64,
    resolver: usize,
}

/// One identifier of the population.
#[derive(Debug, Clone)]
struct Ident {
    csi: Csi,
    authority: usize,
    tnsp: Option<String>,
    tnsps: [String; 2],
    entries: Vec<EntryRecord>,
    phone: bool,
}

/// What an answer says (providers, not discoverable) or its error kind.
pub(crate) fn observe(r: &Response) -> Result<Truth, String> {
    match r {
        Response::Found(f) => {
            let set: BTreeSet<String> = f
                .mappings
                .iter()
                .filter_map(|m| match &m.body {
                    MappingBody::Provider(p) => Some(p.id.to_string()),
                    MappingBody::NoProviders { .. } => None,
                })
                .collect();
            Ok(if set.is_empty() { None } else { Some(set) })
        }
        Response::Errors(e) if e.kind() == Some(signpost_schemas::ErrorKind::NotFound) => Ok(None),
        Response::Errors(e) => Err(e.kind().map_or("errors", signpost_schemas::ErrorKind::element).to_owned()),
        Response::Redirect(_) => Err("redirect".into()),
        Response::Services(_) => Err("services".into()),
    }
}

async fn query(c: &Client, route: &Route, csi: &Csi) -> Result<Truth, String> {
    let (_, body) = ask(c, route, find_body(csi)).await?;
    match Response::decode(&body, &Limits::MESSAGE) {
        Ok(r) => observe(&r),
        Err(_) => Err("undecodable".into()),
    }
}

/// Identifiers and resolvers one machine runs live at most.
pub const LIVE_MAX_IDENTIFIERS: u64 = 2_000_000;
/// See [`LIVE_MAX_IDENTIFIERS`].
pub const LIVE_MAX_RESOLVERS: usize = 64;

/// Refuses a scenario too large to run live on one machine.
pub fn live_scale(s: &Scenario) -> Result<(), String> {
    let ids: u64 = s.country.iter().map(|c| c.numbers).chain(s.email.iter().map(|e| e.addresses)).fold(0u64, u64::saturating_add);
    if ids > LIVE_MAX_IDENTIFIERS || s.resolvers > LIVE_MAX_RESOLVERS {
        return Err(format!(
            "{} identifiers and {} resolvers are more than one machine runs live ({LIVE_MAX_IDENTIFIERS} and {LIVE_MAX_RESOLVERS} at most); run it with `signpost-testbed simulate`",
            ids, s.resolvers
        ));
    }
    Ok(())
}

/// Runs `s` under `policy`, the APs reaching the resolvers in `mode`
/// (`direct`, or `relay`: Oblivious HTTP through a relay per resolver).
/// `tick` is called once per second of load.
pub async fn run(s: &Scenario, policy: &str, mode: &str, tick: &(dyn Fn(u64) + Sync)) -> Result<PolicyReport, String> {
    live_scale(s)?;
    if !crate::privacy::MODES.contains(&mode) {
        return Err(format!("mode {mode:?} is not one of {}", crate::privacy::MODES.join(", ")));
    }
    let push = policy == "push";
    let mut keys: Vec<(String, String)> = s.country.iter().map(|c| (c.prefix.clone(), c.prefix.clone())).collect();
    keys.extend(s.email.iter().map(|e| (e.domain.clone(), e.domain.clone())));
    if let Some(r) = &s.rogue {
        keys.push((r.prefix.clone(), r.certified_for.clone()));
    }
    let plan = crate::topology::Plan { authorities: keys, resolvers: s.resolvers, push, ttl: s.mapping_ttl_s, neg: s.negative_ttl_s, per_client_limit: s.load.per_client_limit, relay: mode == "relay", observe: true };
    let mut live = Live::start(&plan).await?;
    let mut rng = Rng::new(s.seed);

    // Population: valid numbers per country, addresses per domain.
    let mut pop: Vec<Ident> = Vec::new();
    let mut spare: Vec<Ident> = Vec::new();
    for (ai, c) in s.country.iter().enumerate() {
        let cc = c.prefix.trim_start_matches('+');
        let tag = c.region.to_ascii_lowercase();
        let tnsps = [format!("tnsp-a.{tag}.example"), format!("tnsp-b.{tag}.example")];
        let mut seen = BTreeSet::new();
        let numbers = c.numbers as usize;
        let want = numbers + numbers / 10;
        let mut tries = 0;
        while seen.len() < want && tries < want * 20 {
            tries += 1;
            let rest = c.national_digits.saturating_sub(c.block.len());
            let tail: String = (0..rest).map(|_| char::from(b'0' + (rng.next_u64() % 10) as u8)).collect();
            let digits = format!("{cc}{}{tail}", c.block);
            if let Ok(n) = E164::from_digits(&digits)
                && seen.insert(digits)
            {
                let id = Ident { csi: Csi::E164(n), authority: ai, tnsp: None, tnsps: tnsps.clone(), entries: vec![], phone: true };
                if seen.len() <= numbers { pop.push(id) } else { spare.push(id) }
            }
        }
    }
    for (k, e) in s.email.iter().enumerate() {
        let ai = s.country.len() + k;
        let addresses = e.addresses as usize;
        for i in 0..addresses + addresses / 10 {
            let csi = Csi::from_wire(&format!("mailto:user{i}@{}", e.domain)).map_err(|x| x.to_string())?;
            let id = Ident { csi, authority: ai, tnsp: None, tnsps: [e.domain.clone(), e.domain.clone()], entries: vec![], phone: false };
            if i < addresses { pop.push(id) } else { spare.push(id) }
        }
    }
    let rogue_index = s.country.len() + s.email.len();
    let mut rogue_ids: Vec<Ident> = Vec::new();
    if let Some(r) = &s.rogue {
        let cc = r.prefix.trim_start_matches('+');
        let mut seen = BTreeSet::new();
        let mut tries = 0;
        while seen.len() < r.numbers && tries < r.numbers * 50 {
            tries += 1;
            let tail: String = (0..(10usize.saturating_sub(cc.len()))).map(|_| char::from(b'0' + (rng.next_u64() % 10) as u8)).collect();
            let digits = format!("{cc}7{tail}");
            if let Ok(n) = E164::from_digits(&digits)
                && seen.insert(digits)
            {
                let t = ["tnsp.rogue.example".to_owned(), "tnsp.rogue.example".to_owned()];
                let mut id = Ident { csi: Csi::E164(n), authority: rogue_index, tnsp: Some(t[0].clone()), tnsps: t, entries: vec![], phone: true };
                id.entries.push(entry("ott-rogue.example", seen.len(), false)?);
                rogue_ids.push(id);
            }
        }
    }
    let mut oracle = Oracle::new();
    let mut batches: Vec<Vec<ImportItem>> = (0..live.authorities.len()).map(|_| Vec::new()).collect();
    for (i, id) in pop.iter_mut().enumerate() {
        let t = if id.phone { id.tnsps[rng.below(2)].clone() } else { id.tnsps[0].clone() };
        if rng.unit() >= s.population.undiscoverable_share {
            let n = if s.population.max_ott_per_user == 0 { 0 } else { 1 + rng.below(s.population.max_ott_per_user) };
            let mut names: Vec<&String> = s.population.ott.iter().collect();
            for _ in 0..n.min(names.len()) {
                let k = rng.below(names.len());
                let p = names.remove(k);
                id.entries.push(entry(p, i, false)?);
            }
            if id.phone && rng.unit() < s.population.operator_aligned_share {
                id.entries.push(entry(&format!("rcs.{t}"), i, true)?);
            }
        }
        id.tnsp = Some(t.clone());
        oracle.set(id.csi.uri(), 0, truth_of(&id.entries));
        if let Some(b) = batches.get_mut(id.authority) {
            b.push(ImportItem { csi: id.csi.clone(), tnsp: Some(Name::parse(&t).map_err(|e| e.to_string())?), entries: id.entries.clone(), line: i });
        }
    }
    for (i, r) in rogue_ids.iter().enumerate() {
        // Never legitimately discoverable: any providers seen are wrong.
        oracle.set(r.csi.uri(), 0, None);
        if let Some(b) = batches.get_mut(rogue_index) {
            b.push(ImportItem { csi: r.csi.clone(), tnsp: Some(Name::parse("tnsp.rogue.example").map_err(|e| e.to_string())?), entries: r.entries.clone(), line: i });
        }
    }
    for (a, b) in live.authorities.iter().zip(batches) {
        a.core.import(b, &|_| {}).await.map_err(|e| e.to_string())?;
    }
    for sp in &spare {
        oracle.set(sp.csi.uri(), 0, None);
    }

    // Lookup load from simulated APs; events on their own task.
    // The testbed's own measurement client (not an AP: it is not in the
    // APs' records).
    let probe_cert = live.pki.cert(Role::Msp, "probe.testbed.example", &[])?;
    let mut all: Vec<Csi> = pop.iter().map(|p| p.csi.clone()).collect();
    all.extend(spare.iter().map(|p| p.csi.clone()));
    all.extend(rogue_ids.iter().map(|p| p.csi.clone()));
    // Popularity order: a shuffled ranking.
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i + 1));
    }
    let all = Arc::new(all);
    let zipf = Arc::new(Zipf::new(all.len(), s.load.zipf));
    let oracle = Arc::new(Mutex::new(oracle));
    let start = Instant::now();
    let ms = move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let obs = Arc::new(Mutex::new(Vec::<Observation>::with_capacity(s.load.rate as usize * s.duration_s as usize + 64)));
    // The testbed's own probes ask the resolvers directly, in both modes.
    let eps: Vec<Route> = live.resolvers.iter().map(|r| Ok(Route::Direct(r.running.endpoint()?, r.id.clone()))).collect::<Result<_, String>>()?;
    let eps = Arc::new(eps);
    // The APs' routes: direct, or each resolver's relay with the gateway's
    // key configuration fetched through it.
    let aps = Arc::new(Observer::new());
    let ap_name = |c: usize| format!("ap{c}.testbed.example");
    let mut routes: Vec<Route> = Vec::new();
    if live.relays.is_empty() {
        routes.extend(eps.iter().cloned());
    } else {
        let first = live.pki.client(Some(&live.pki.cert(Role::Msp, &ap_name(0), &[])?))?;
        for r in &live.relays {
            let keys = signpost_resolver::lookup::load_keys(&first, &format!("https://{}{}", r.running.addr, signpost_resolver::relay::KEYS_PATH), &r.id).await.map_err(|e| e.to_string())?;
            routes.push(Route::Relay(r.url()?, r.id.clone(), Arc::new(keys)));
        }
    }
    let routes = Arc::new(routes);
    let duration = Duration::from_secs(s.duration_s);
    let mut load = Vec::new();
    let per_client = f64::from(s.load.rate) / s.load.clients as f64;
    for c in 0..s.load.clients {
        // Each simulated AP has its own certificate (and so its own limits).
        let me = ap_name(c);
        let client = live.pki.client(Some(&live.pki.cert(Role::Msp, &me, &[])?))?;
        let (all, zipf, routes, obs, aps) = (all.clone(), zipf.clone(), routes.clone(), obs.clone(), aps.clone());
        let mut rng = Rng::new(s.seed ^ ((c as u64 + 1) * 7919));
        load.push(tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / per_client.max(0.001));
            let mut next = Instant::now();
            let mut k = 0usize;
            while start.elapsed() < duration {
                next += gap;
                let pick = zipf.sample(&mut rng);
                let csi = &all[pick];
                let resolver = (c + k) % routes.len();
                k += 1;
                aps.see(Some(&me), None, [csi.uri()], Some(SENDER_PROVIDER));
                let sent = ms();
                let r = query(&client, &routes[resolver], csi).await;
                let at = ms();
                // Judged after the run, against the complete record: a
                // change is recorded once its commit returns, and an answer
                // may already show it.
                if let Ok(mut g) = obs.lock() {
                    g.push(Observation { pick, result: r, sent, at, resolver });
                }
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                } else if now - next > Duration::from_secs(1) {
                    next = now;
                }
            }
        }));
    }
    let ticker = {
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        (done, async move {
            let mut i = 0;
            while !d2.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                i += 1;
                tick(i);
            }
        })
    };

    // Events.
    let probe_client = Arc::new(live.pki.client(Some(&probe_cert))?);
    let probe_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut probes = Vec::new();
    let mut released: Vec<usize> = Vec::new();
    let mut scans: Vec<(u64, u64)> = Vec::new();
    let mut events_done = Vec::new();
    let mut marks: Vec<(f64, String)> = Vec::new();
    let mut events: Vec<_> = s.event.clone();
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let ttl_wait = Duration::from_secs(u64::from(s.mapping_ttl_s.max(s.negative_ttl_s)) + 5);
    let (ticker_done, ticker_fut) = ticker;
    let event_loop = async {
        for e in events {
            let at = Duration::from_secs_f64(e.at_s);
            if let Some(wait) = at.checked_sub(start.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let mut changed: Vec<(Csi, Truth, u64)> = Vec::new();
            match e.kind.as_str() {
                "port" => {
                    for _ in 0..e.count {
                        let cands: Vec<usize> = (0..pop.len()).filter(|&i| pop[i].phone && pop[i].tnsp.is_some()).collect();
                        let Some(&i) = cands.get(rng.below(cands.len())) else { break };
                        let p = &mut pop[i];
                        let from = p.tnsp.clone().unwrap_or_default();
                        let to = if from == p.tnsps[0] { p.tnsps[1].clone() } else { p.tnsps[0].clone() };
                        let peer = live.pki.peer(Role::Csip, &from, &[])?;
                        let began = ms();
                        live.authorities[p.authority].core.provision(&peer, Provision::Port { csi: p.csi.clone(), to: Name::parse(&to).map_err(|x| x.to_string())? }).await.map_err(|x| x.to_string())?;
                        p.entries.retain(|x| !x.bound_to_tnsp);
                        p.tnsp = Some(to);
                        changed.push((p.csi.clone(), truth_of(&p.entries), began));
                        record(&oracle, changed.last());
                    }
                }
                "release" => {
                    for _ in 0..e.count {
                        let cands: Vec<usize> = (0..pop.len()).filter(|&i| pop[i].tnsp.is_some()).collect();
                        let Some(&i) = cands.get(rng.below(cands.len())) else { break };
                        let p = &mut pop[i];
                        let peer = live.pki.peer(Role::Csip, p.tnsp.as_deref().unwrap_or_default(), &[])?;
                        let began = ms();
                        live.authorities[p.authority].core.provision(&peer, Provision::Release { csi: p.csi.clone() }).await.map_err(|x| x.to_string())?;
                        p.entries.clear();
                        p.tnsp = None;
                        released.push(i);
                        changed.push((p.csi.clone(), None, began));
                        record(&oracle, changed.last());
                    }
                }
                "reassign" | "claim" => {
                    for n in 0..e.count {
                        let p = if e.kind == "reassign" {
                            let Some(i) = released.pop() else { break };
                            &mut pop[i]
                        } else {
                            let Some(x) = spare.pop() else { break };
                            pop.push(x);
                            let last = pop.len() - 1;
                            &mut pop[last]
                        };
                        let key = live.authorities[p.authority].key.clone();
                        let t = p.tnsps[0].clone();
                        let peer = live.pki.peer(Role::Csip, &t, &[&key])?;
                        let core = &live.authorities[p.authority].core;
                        let began = ms();
                        core.provision(&peer, Provision::Assign { csi: p.csi.clone(), tnsp: None }).await.map_err(|x| x.to_string())?;
                        let provider = &s.population.ott[n % s.population.ott.len().max(1)];
                        let msp = live.pki.peer(Role::Msp, provider, &[])?;
                        let mut en = entry(provider, 1_000_000 + n, false)?;
                        en.assurance = Assurance::MspVerified;
                        core.provision(&msp, Provision::PutEntry { csi: p.csi.clone(), entry: en.clone() }).await.map_err(|x| x.to_string())?;
                        p.entries = vec![en];
                        p.tnsp = Some(t);
                        changed.push((p.csi.clone(), truth_of(&p.entries), began));
                        record(&oracle, changed.last());
                    }
                }
                "preference" => {
                    for _ in 0..e.count {
                        let cands: Vec<usize> = (0..pop.len()).filter(|&i| pop[i].entries.iter().any(|x| matches!(x.visibility, Visibility::All))).collect();
                        let Some(&i) = cands.get(rng.below(cands.len())) else { break };
                        let p = &mut pop[i];
                        let Some(k) = p.entries.iter().position(|x| matches!(x.visibility, Visibility::All)) else { continue };
                        let mut en = p.entries[k].clone();
                        en.visibility = Visibility::Only(vec![Name::parse("partner.example").map_err(|x| x.to_string())?]);
                        if en.assurance == Assurance::CsipAttested {
                            // Changed by the MSP itself: it can only vouch for its own verification.
                            en.assurance = Assurance::MspVerified;
                        }
                        let msp = live.pki.peer(Role::Msp, en.provider.as_str(), &[])?;
                        let began = ms();
                        live.authorities[p.authority].core.provision(&msp, Provision::PutEntry { csi: p.csi.clone(), entry: en.clone() }).await.map_err(|x| x.to_string())?;
                        p.entries[k] = en;
                        let visible: Vec<EntryRecord> = p.entries.iter().filter(|x| matches!(x.visibility, Visibility::All)).cloned().collect();
                        changed.push((p.csi.clone(), truth_of(&visible), began));
                        record(&oracle, changed.last());
                    }
                }
                "scan" => {
                    // One client enumerates unassigned numbers as fast as it can.
                    let scanner_id = "scanner.testbed.example";
                    let scanner = live.pki.client(Some(&live.pki.cert(Role::Msp, scanner_id, &[])?))?;
                    let route = routes[0].clone();
                    let cc = s.country.first().map_or("49".to_owned(), |c| c.prefix.trim_start_matches('+').to_owned());
                    // As fast as it can: 64 requests in flight at a time.
                    let scanner = Arc::new(scanner);
                    let (mut sent, mut throttled) = (0u64, 0u64);
                    let numbers: Vec<Csi> = (0..e.count).filter_map(|k| E164::from_digits(&format!("{cc}1{:09}", 900_000_000 + k)).ok().map(Csi::E164)).collect();
                    for chunk in numbers.chunks(64) {
                        let mut wave = Vec::with_capacity(chunk.len());
                        for n in chunk {
                            let (sc, route) = (scanner.clone(), route.clone());
                            aps.see(Some(scanner_id), None, [n.uri()], Some(SENDER_PROVIDER));
                            let body = find_body(n);
                            // A refusal by the rate limit is a LoST `forbidden` (HTTP 200)
                            // with a Retry-After header (through a relay: its 429).
                            wave.push(tokio::spawn(async move { ask(&sc, &route, body).await }));
                        }
                        for w in wave {
                            sent += 1;
                            match w.await {
                                Ok(Ok((true, _))) => throttled += 1,
                                Ok(Err(e)) if e == "forbidden" => throttled += 1,
                                _ => {}
                            }
                        }
                    }
                    scans.push((sent, throttled));
                }
                "resolver-restart" => {
                    let i = e.target.as_deref().and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
                    if let Some(r) = live.resolvers.get_mut(i) {
                        r.restart(&live.pki).await?;
                    }
                }
                "root-outage" => live.root.running.stop().await,
                "root-recover" => live.restart_root().await?,
                "outage" | "recover" => {
                    let target = e.target.clone().unwrap_or_default();
                    if let Some(a) = live.authorities.iter_mut().find(|a| a.key == target) {
                        if e.kind == "outage" {
                            a.running.stop().await;
                        } else {
                            a.restart(&live.pki).await?;
                        }
                    }
                }
                _ => {}
            }
            events_done.push(format!("{:>5.1} s  {} {}", e.at_s, e.kind, if e.target.is_some() { e.target.clone().unwrap_or_default() } else { e.count.to_string() }));
            marks.push((e.at_s, if let Some(t) = &e.target { format!("{} {t}", e.kind) } else if matches!(e.kind.as_str(), "root-outage" | "root-recover") { e.kind.clone() } else { format!("{} {}", e.kind, e.count) }));
            // Probes: time until every resolver answers the new truth.
            for (csi, truth, at) in changed {
                for route in eps.iter() {
                    let (c, route, csi, truth, pc, or) = (probe_client.clone(), route.clone(), csi.clone(), truth.clone(), probe_count.clone(), oracle.clone());
                    probes.push(tokio::spawn(async move {
                        let deadline = Instant::now() + ttl_wait;
                        while Instant::now() < deadline {
                            pc.fetch_add(1, Ordering::Relaxed);
                            let seen = query(&c, &route, &csi).await.ok();
                            // This change, or a later one that superseded it
                            // before the resolver was asked.
                            let now_truth = or.lock().ok().map(|o| o.at(csi.uri(), ms()));
                            if seen.as_ref() == Some(&truth) || (now_truth.is_some() && now_truth.as_ref() != Some(&truth) && seen == now_truth) {
                                return Some(ms().saturating_sub(at) as f64);
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        None
                    }));
                }
            }
        }
        Ok::<(), String>(())
    };
    let (ev, _) = tokio::join!(event_loop, async {
        tokio::select! {
            _ = ticker_fut => {}
            _ = tokio::time::sleep(duration + Duration::from_millis(100)) => {}
        }
    });
    ev?;
    for l in load {
        let _ = l.await;
    }
    let load_secs = start.elapsed().as_secs_f64();
    ticker_done.store(true, Ordering::Relaxed);
    let mut invalidation_ms: Vec<f64> = Vec::new();
    for p in probes {
        if let Ok(Some(v)) = p.await {
            invalidation_ms.push(v);
        }
    }
    invalidation_ms.sort_by(f64::total_cmp);
    let metric = |m: &signpost_net::Metrics, name: &str| -> u64 {
        m.render().lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let (mut hits, mut misses, mut rq) = (0, 0, 0);
    for r in &live.resolvers {
        hits += metric(&r.running.metrics, "signpost_resolver_cache_hits_total");
        misses += metric(&r.running.metrics, "signpost_resolver_cache_misses_total");
        rq += metric(&r.running.metrics, "signpost_requests_total");
    }
    // Probe queries are the testbed's own measurement, not user load.
    let rq = rq.saturating_sub(probe_count.load(Ordering::Relaxed));
    let aq: u64 = live.authorities.iter().map(|a| metric(&a.running.metrics, "signpost_requests_total")).sum();
    let root_q = metric(&live.root.running.metrics, "signpost_requests_total");
    live.stop().await;
    let privacy = {
        let aps = aps.seen();
        let resolver_ids: BTreeSet<String> = live.resolvers.iter().map(|r| signpost_net::csi_tag(r.id.as_str())).collect();
        let mut m = BTreeMap::new();
        m.insert("ap".to_owned(), crate::privacy::learned(&aps, &aps, &resolver_ids));
        if let Some(o) = &live.observers {
            let mut tiers = vec![("resolver", &o.resolver), ("root", &o.root), ("authority", &o.authority)];
            if !live.relays.is_empty() {
                tiers.push(("relay", &o.relay));
            }
            for (tier, ob) in tiers {
                m.insert(tier.to_owned(), crate::privacy::learned(&ob.seen(), &aps, &resolver_ids));
            }
        }
        m
    };
    let observations = match obs.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    let oracle = match oracle.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let (mut timeline, mut errors, mut ages, mut wrong_samples) = (Vec::<Second>::new(), BTreeMap::<String, u64>::new(), Vec::<u64>::new(), Vec::new());
    let lookups = observations.len() as u64;
    for o in observations {
        let sec = (o.at / 1000) as usize;
        while timeline.len() <= sec {
            timeline.push(Second::default());
        }
        let Some(csi) = all.get(o.pick) else { continue };
        match o.result {
            Err(kind) => {
                *errors.entry(kind).or_insert(0) += 1;
                timeline[sec].errors += 1;
            }
            Ok(observed) => match oracle.judge(csi.uri(), &observed, o.sent, o.at) {
                Verdict::Correct => timeline[sec].correct += 1,
                Verdict::Stale { age_ms } => {
                    timeline[sec].stale += 1;
                    ages.push(age_ms);
                }
                Verdict::Wrong => {
                    timeline[sec].wrong += 1;
                    tracing::warn!(csi = %signpost_net::csi_tag(csi.uri()), sent = o.sent, at = o.at, "wrong answer");
                    if wrong_samples.len() < 10 {
                        wrong_samples.push(format!("{} via resolver {} observed {observed:?} sent {} ms answered {} ms; history {:?}", csi.uri(), o.resolver, o.sent, o.at, oracle.history(csi.uri())));
                    }
                }
            },
        }
    }
    ages.sort_unstable();
    let sum = |f: fn(&Second) -> u64| timeline.iter().map(f).sum::<u64>();
    Ok(PolicyReport {
        policy: policy.to_owned(),
        mode: mode.to_owned(),
        privacy,
        identifiers: pop.len(),
        lookups,
        correct: sum(|s| s.correct),
        stale: sum(|s| s.stale),
        wrong: sum(|s| s.wrong),
        errors,
        timeline,
        invalidation_ms,
        stale_age_ms: ages,
        hit_ratio: if hits + misses == 0 { 0.0 } else { hits as f64 / (hits + misses) as f64 },
        tier_requests: BTreeMap::from([("root".to_owned(), root_q), ("authority".to_owned(), aq), ("resolver".to_owned(), rq)]),
        lookups_per_s: lookups as f64 / load_secs.max(0.001),
        duration_s: load_secs,
        events: events_done,
        event_marks: marks,
        wrong_samples,
        scan_sent: scans.iter().map(|x| x.0).sum(),
        scan_throttled: scans.iter().map(|x| x.1).sum(),
    })
}
