//! The state machine in virtual time against a modelled authority: first
//! one rule per test, then a model-based property test that interleaves
//! lookups, changes, delayed and dropped feed frames, reconnects, lifetimes
//! running out, outages, history pruning and resolver restarts, and checks
//! after every step:
//!
//! 1. no answer is older than a change whose frame (or resync) was processed;
//! 2. once everything in flight is delivered, every committed change has
//!    reached the resolver: no cached answer is older than the truth;
//! 3. stale answers only while the authority is unreachable, within max-stale;
//! 4. at most one upstream query per key is in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use signpost_resolver_core::{Answer, Config, FeedEvent, Policy, QueryId, Resolver, StreamId, Transmit, TransmitId, Upstream, Verify};
use signpost_schemas::lost::{Assurance, Cover, Delegation, Endpoint, Epoch, MappingBody, ProviderEntry, Uri};
use signpost_schemas::sp::{Change, ChangeOp, FeedFrame, RootTable, Subject};
use signpost_schemas::{
    AuthorityRef, Csi, E164Prefix, ErrorKind, Errors, Expires, FindService, FindServiceResponse, Issue, KeyId, Limits, Mapping, Name, Path, Response, Timestamp,
};

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);
const TTL: u64 = 60;
const MAX_STALE: u64 = 600;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}
fn csi(i: usize) -> Csi {
    Csi::from_wire(&format!("tel:+491511234567{i}")).unwrap()
}
fn ep(s: &str) -> Endpoint {
    Endpoint::parse(s).unwrap()
}

/// Accepts every mapping (the model's authority is honest) and the table.
#[derive(Debug)]
struct Trusting;

impl Verify for Trusting {
    fn knows(&self, _key: &KeyId) -> bool {
        true
    }
    fn add_certificate(&mut self, _pem: &[u8], _now: Timestamp) -> Result<KeyId, String> {
        Err("no certificates in the model".into())
    }
    fn verify_mapping(&self, _csi: &Csi, _m: &Mapping, _now: Timestamp) -> Result<(), String> {
        Ok(())
    }
    fn verify_root_table(&self, _t: &RootTable, _now: Timestamp) -> Result<(), String> {
        Ok(())
    }
}

/// One authority (`dp.de.example`): versions per identifier (0: not
/// discoverable), a numbered change log with retention, an up/down switch.
#[derive(Debug, Default)]
struct Authority {
    version: BTreeMap<usize, u64>,
    log: Vec<(u64, usize)>,
    head: u64,
    oldest: u64,
    down: bool,
    /// A lagging replica: answers as of this position (and its versions).
    lag: Option<u64>,
}

impl Authority {
    fn commit(&mut self, i: usize) -> u64 {
        self.head += 1;
        *self.version.entry(i).or_default() += 1;
        self.log.push((self.head, i));
        self.head
    }
    fn answer(&self, f: &FindService, now: Timestamp) -> Response {
        let (_, c) = f.csi_location().unwrap();
        let i = (0..4).find(|&i| &csi(i) == c).unwrap();
        let at = self.lag.unwrap_or(self.head);
        let v = self.log.iter().filter(|(s, j)| *s <= at && *j == i).count() as u64;
        let mut path = f.path.clone().unwrap();
        path.push(name("dp.de.example"));
        if v == 0 {
            let mut e = Errors::one(name("dp.de.example"), Issue::new(ErrorKind::NotFound, "no"));
            e.negative_lifetime = Some(TTL as u32);
            e.feed_position = Some(at);
            return Response::Errors(e);
        }
        let m = Mapping {
            expires: Expires::At(now.plus_secs(TTL)),
            last_updated: now,
            source: name("dp.de.example"),
            source_id: format!("m{i}"),
            display_names: vec![],
            service: None,
            uris: vec![Uri::parse(&format!("mimi://p.example/u/{i}/v{v}")).unwrap()],
            body: MappingBody::Provider(ProviderEntry { id: name("p.example"), priority: 1, tags: vec![], assurance: Assurance::MspVerified, epoch: Epoch(1) }),
            signature: None,
        };
        Response::Found(FindServiceResponse { mappings: vec![m], warnings: vec![], path, location_used: Some("l1".into()), feed_position: Some(at) })
    }
    fn change(&self, seq: u64, i: usize) -> FeedFrame {
        FeedFrame::Change(Change { seq, subject: Subject::Csi(csi(i)), op: ChangeOp::EntryPut, time: T0 })
    }
}

/// The version an answer shows (0: notFound; `u64::MAX`: a failure), and
/// for a stale answer when its entry expired.
fn shown(a: &Answer) -> (u64, Option<Timestamp>) {
    let r = match a {
        Answer::Encoded { body, .. } => Response::decode(body, &Limits::MESSAGE).unwrap(),
        Answer::Response(r) => r.clone(),
        Answer::Failed(_) => return (u64::MAX, None),
    };
    match r {
        Response::Found(f) => {
            let u = f.mappings[0].uris[0].as_str().to_owned();
            (u.rsplit("/v").next().unwrap().parse().unwrap(), f.warnings.iter().find_map(|w| w.stale.as_ref().map(|s| s.expired_at)))
        }
        Response::Errors(e) if e.kind() == Some(ErrorKind::NotFound) => (0, None),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// The world: the machine, the authority, the network between them.
struct World {
    r: Resolver<Trusting>,
    a: Authority,
    now: Timestamp,
    /// Requests on their way to the authority.
    to_auth: VecDeque<Transmit>,
    /// Answers on their way back (read at the authority already).
    to_res: VecDeque<(TransmitId, Upstream)>,
    /// The open feed stream: its id, and whether the authority accepted it.
    stream: Option<(StreamId, bool)>,
    /// Frames on their way on that stream.
    frames: VecDeque<FeedFrame>,
    /// Position through which the authority has put changes on the stream.
    sent_through: u64,
    /// Highest version of each identifier whose change (or resync) reached
    /// the machine.
    processed: BTreeMap<usize, u64>,
    next_q: QueryId,
    queries: BTreeMap<QueryId, usize>,
    answers: Vec<(usize, u64, bool)>,
    /// When the machine last saw the authority fail: a transport error, or
    /// an attempt that timed out (for rule 3).
    failed_at: Option<Timestamp>,
    /// When each query in flight was sent (for rule 3).
    sent_at: BTreeMap<TransmitId, Timestamp>,
}

fn config() -> Config {
    let root = AuthorityRef { id: name("root.example"), endpoints: vec![ep("https://127.0.0.1:1/lost")] };
    let mut c = Config::new(name("resolver.example"), root);
    c.policy = Policy { min_ttl: 1, max_ttl: 3600, negative_min_ttl: 1, negative_max_ttl: 3600, max_stale: MAX_STALE, stale_ttl: 30, max_depth: 8 };
    c.client_timeout_ms = 1800;
    c.attempt_timeout_ms = 800;
    c.failure_recheck_ms = 5_000;
    c.hot_hits = 3;
    c
}

fn table() -> Vec<u8> {
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+49").unwrap()),
        lifetime: 3600,
        authorities: vec![AuthorityRef { id: name("dp.de.example"), endpoints: vec![ep("https://127.0.0.1:2/lost")] }],
    };
    RootTable { source: name("root.example"), serial: 1, valid_until: T0.plus_secs(365 * 86_400), negative_lifetime: 60, delegations: vec![d], signature: None }.encode().into_bytes()
}

impl World {
    fn new() -> World {
        let mut r = Resolver::new(config(), Trusting, T0);
        r.load_root_table(&table(), T0).unwrap();
        World {
            r,
            a: Authority::default(),
            now: T0,
            to_auth: VecDeque::new(),
            to_res: VecDeque::new(),
            stream: None,
            frames: VecDeque::new(),
            sent_through: 0,
            processed: BTreeMap::new(),
            next_q: 1,
            queries: BTreeMap::new(),
            answers: Vec::new(),
            failed_at: None,
            sent_at: BTreeMap::new(),
        }
    }

    /// Moves the machine's outputs into the world, checking rules 1, 3, 4.
    fn pump(&mut self) {
        while let Some(t) = self.r.poll_transmit() {
            match t {
                Transmit::Subscribe { stream, since, .. } => {
                    self.stream = Some((stream, false));
                    self.frames.clear();
                    self.to_auth.push_back(Transmit::Subscribe { stream, authority: name("dp.de.example"), endpoint: ep("https://127.0.0.1:2/lost"), since });
                }
                Transmit::Unsubscribe { stream } => {
                    if self.stream.is_some_and(|(s, _)| s == stream) {
                        self.stream = None;
                        self.frames.clear();
                    }
                }
                Transmit::SaveRootTable { .. } | Transmit::FetchRootTable { .. } | Transmit::FetchCert { .. } => {}
                q @ Transmit::Query { .. } => {
                    if let Transmit::Query { id, .. } = &q {
                        self.sent_at.insert(*id, self.now);
                    }
                    self.to_auth.push_back(q);
                }
            }
        }
        // Rule 4: one live query per key (an attempt past its timeout is
        // abandoned by the machine; its late answer is ignored).
        let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
        for t in &self.to_auth {
            if let Transmit::Query { id, request, .. } = t
                && self.sent_at.get(id).is_some_and(|s| self.now.millis_since(*s) < 800)
            {
                *per_key.entry(request.csi_location().unwrap().1.uri().to_owned()).or_default() += 1;
            }
        }
        assert!(self.r.resolutions_in_flight() <= 4, "one resolution per identifier at most");
        for (k, n) in per_key {
            assert!(n <= 1, "{n} queries in flight for {k}");
        }
        while let Some((q, a)) = self.r.poll_answer() {
            let Some(i) = self.queries.remove(&q) else { continue };
            let (v, stale) = shown(&a);
            if v == u64::MAX {
                // serverTimeout / failure: allowed while unreachable.
                continue;
            }
            // Rule 1.
            let seen = self.processed.get(&i).copied().unwrap_or(0);
            assert!(v >= seen, "identifier {i}: answered version {v} after version {seen}'s change was processed");
            // Rule 3: stale only while the authority is unreachable — down,
            // inside the failure-recheck window after coming back, or
            // silent past the client timer — and within max-stale.
            if let Some(expired_at) = stale {
                let recheck = self.failed_at.is_some_and(|t| self.now.millis_since(t) <= 5_000);
                let silent = self.sent_at.values().any(|t| self.now.millis_since(*t) >= 1_800);
                assert!(self.a.down || recheck || silent, "a stale answer while the authority answers");
                assert!(self.now <= expired_at.plus_secs(MAX_STALE), "stale beyond max-stale");
            }
            self.answers.push((i, v, stale.is_some()));
        }
        while self.r.poll_event().is_some() {}
    }

    fn lookup(&mut self, i: usize) {
        let q = self.next_q;
        self.next_q += 1;
        self.queries.insert(q, i);
        self.r.handle_query(q, FindService::for_csi(csi(i), true), self.now);
        self.pump();
    }

    fn commit(&mut self, i: usize) {
        let seq = self.a.commit(i);
        if let Some((_, true)) = self.stream
            && seq == self.sent_through + 1
        {
            self.frames.push_back(self.a.change(seq, i));
            self.sent_through = seq;
        }
    }

    /// The authority handles the oldest request (reading now).
    fn deliver_request(&mut self) {
        let Some(t) = self.to_auth.pop_front() else { return };
        match t {
            Transmit::Query { id, request, .. } => {
                let up = if self.a.down { Upstream::Transport("connection refused".into()) } else { Upstream::Answer(self.a.answer(&request, self.now)) };
                self.to_res.push_back((id, up));
            }
            Transmit::Subscribe { stream, since, .. } => {
                if self.stream.map(|(s, _)| s) != Some(stream) {
                    return;
                }
                if self.a.down {
                    self.stream = None;
                    self.r.handle_feed(stream, FeedEvent::Closed("connection refused".into()), self.now);
                    return self.pump();
                }
                self.stream = Some((stream, true));
                self.r.handle_feed(stream, FeedEvent::Connected, self.now);
                let from = since.unwrap_or(self.a.head);
                if from < self.a.oldest.saturating_sub(1) {
                    self.frames.push_back(FeedFrame::Resync { seq: self.a.head, reason: "pruned".into() });
                } else {
                    for &(s, i) in self.a.log.iter().filter(|(s, _)| *s > from) {
                        self.frames.push_back(self.a.change(s, i));
                    }
                }
                self.sent_through = self.a.head;
                self.pump();
            }
            _ => {}
        }
    }

    fn deliver_answer(&mut self) {
        if let Some((id, up)) = self.to_res.pop_front() {
            let sent = self.sent_at.remove(&id);
            if matches!(up, Upstream::Transport(_)) || sent.is_some_and(|t| self.now.millis_since(t) >= 800) {
                self.failed_at = Some(self.now);
            }
            self.r.handle_upstream(id, up, self.now);
            self.pump();
        }
    }

    /// A lookup whose request (the oldest in flight) reaches the authority
    /// and whose answer comes back.
    fn resolve(&mut self, i: usize) {
        self.lookup(i);
        self.deliver_request();
        self.deliver_answer();
    }

    /// Delivers every request and every answer in flight (not frames).
    fn flush(&mut self) {
        while !self.to_auth.is_empty() || !self.to_res.is_empty() {
            self.deliver_request();
            self.deliver_answer();
        }
    }

    fn deliver_frame(&mut self) {
        let Some((stream, true)) = self.stream else { return };
        let Some(f) = self.frames.pop_front() else { return };
        match &f {
            FeedFrame::Change(c) => {
                let Subject::Csi(c_csi) = &c.subject else { unreachable!() };
                let i = (0..4).find(|&i| &csi(i) == c_csi).unwrap();
                // The version this change made.
                let v = self.a.log.iter().filter(|(s, j)| *s <= c.seq && *j == i).count() as u64;
                let e = self.processed.entry(i).or_default();
                *e = (*e).max(v);
            }
            FeedFrame::Resync { seq, .. } => {
                for i in 0..4 {
                    let v = self.a.log.iter().filter(|(s, j)| s <= seq && *j == i).count() as u64;
                    let e = self.processed.entry(i).or_default();
                    *e = (*e).max(v);
                }
            }
            FeedFrame::Heartbeat { .. } => {}
        }
        self.r.handle_feed(stream, FeedEvent::Frame(f), self.now);
        self.pump();
    }

    fn drop_feed(&mut self) {
        if let Some((s, _)) = self.stream.take() {
            self.frames.clear();
            self.r.handle_feed(s, FeedEvent::Closed("reset".into()), self.now);
            self.pump();
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_millis(ms);
        if self.sent_at.values().any(|t| self.now.millis_since(*t) >= 800) {
            self.failed_at = Some(self.now);
        }
        self.r.handle_timeout(self.now);
        self.pump();
    }

    fn set_down(&mut self, down: bool) {
        if down && !self.a.down {
            self.a.down = true;
            self.drop_feed();
        } else if !down && self.a.down {
            self.a.down = false;
        }
    }

    fn prune(&mut self) {
        self.a.oldest = self.a.head + 1;
    }

    fn restart(&mut self) {
        self.r = Resolver::new(config(), Trusting, self.now);
        self.r.load_root_table(&table(), self.now).unwrap();
        self.to_auth.clear();
        self.to_res.clear();
        self.stream = None;
        self.frames.clear();
        self.processed.clear();
        self.queries.clear();
        self.sent_at.clear();
    }

    /// Delivers everything in flight (the authority up) and lets time pass
    /// so every feed reconnects; then rule 2.
    fn settle(&mut self) {
        self.set_down(false);
        for _ in 0..400 {
            let busy = !self.to_auth.is_empty() || !self.to_res.is_empty() || !self.frames.is_empty();
            if !busy && matches!(self.stream, Some((_, true))) && self.sent_through == self.a.head {
                break;
            }
            if !self.to_auth.is_empty() {
                self.deliver_request();
            } else if !self.to_res.is_empty() {
                self.deliver_answer();
            } else if !self.frames.is_empty() {
                self.deliver_frame();
            } else {
                self.advance(1_000);
            }
        }
        // Rule 2: every cached answer shows the truth.
        for (c, e) in self.r.answers().iter() {
            let i = (0..4).find(|&i| &csi(i) == c).unwrap();
            let truth = self.a.version.get(&i).copied().unwrap_or(0);
            let fresh = self.now <= e.fresh_until;
            if fresh && self.r.feed_connected(&name("dp.de.example")) {
                let v = shown(&Answer::Encoded { body: e.body.clone(), outcome: "" }).0;
                assert_eq!(v, truth, "identifier {i}: a cached answer of version {v} survived, truth {truth}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One rule per test

#[test]
fn a_hit_is_answered_at_once_without_a_transmit() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    assert_eq!(w.answers.last(), Some(&(0, 1, false)));
    w.lookup(0);
    assert_eq!(w.answers.len(), 2);
    assert!(w.to_auth.iter().all(|t| !matches!(t, Transmit::Query { .. })));
    assert_eq!(w.r.stats().hits, 1);
}

#[test]
fn the_first_answer_subscribes_from_the_position_it_was_read_at() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    let sub = w.to_auth.iter().find_map(|t| match t {
        Transmit::Subscribe { since, .. } => Some(*since),
        _ => None,
    });
    assert_eq!(sub, Some(Some(1)));
}

#[test]
fn a_change_committed_between_the_read_and_the_subscription_is_delivered() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    // Committed before the subscription reaches the authority.
    w.commit(0);
    w.deliver_request();
    w.deliver_frame();
    w.resolve(0);
    assert_eq!(w.answers.last(), Some(&(0, 2, false)));
}

#[test]
fn an_answer_overtaken_by_a_processed_change_is_asked_again() {
    let mut w = World::new();
    w.a.commit(0);
    w.a.commit(1);
    w.resolve(1);
    w.deliver_request(); // the subscription
    // Identifier 0 is read at version 1 ...
    w.lookup(0);
    w.deliver_request();
    // ... then changes, and the frame arrives before the answer.
    w.commit(0);
    w.deliver_frame();
    w.deliver_answer();
    assert!(w.answers.iter().all(|(i, _, _)| *i != 0), "the overtaken answer was not served");
    assert_eq!(w.r.stats().reasks, 1);
    w.deliver_request();
    w.deliver_answer();
    assert_eq!(w.answers.last(), Some(&(0, 2, false)));
}

#[test]
fn a_replica_that_lags_its_own_feed_is_not_believed() {
    let mut w = World::new();
    w.a.commit(0);
    w.a.commit(1);
    w.lookup(1);
    w.flush(); // identifier 1 cached; the feed subscribed from 2
    w.commit(0);
    w.deliver_frame(); // version 2 of identifier 0 is announced
    w.a.lag = Some(2); // ...but the replica answers as of position 2
    w.lookup(0);
    w.flush();
    assert!(w.answers.iter().all(|(i, _, _)| *i != 0), "an answer older than an applied change was served: {:?}", w.answers);
    assert_eq!(w.r.stats().reasks, 2);
    w.a.lag = None;
    w.lookup(0);
    w.flush();
    assert_eq!(w.answers.last(), Some(&(0, 2, false)));
}

#[test]
fn a_replaced_answer_is_still_invalidated() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    w.deliver_request(); // subscribe
    w.advance((TTL + 1) * 1000);
    w.lookup(0); // expired: fetched again and replaced
    w.deliver_request();
    w.deliver_answer();
    let before = w.r.stats().invalidations;
    w.commit(0);
    w.deliver_frame();
    assert_eq!(w.r.stats().invalidations, before + 1);
    assert!(w.r.answers().is_empty());
}

#[test]
fn a_resync_flushes_the_authoritys_answers() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    w.deliver_request();
    w.drop_feed();
    w.commit(0);
    w.prune();
    w.advance(200);
    w.deliver_request(); // resubscribe: since is pruned → resync
    w.deliver_frame();
    assert!(w.r.answers().is_empty());
    assert_eq!(w.r.stats().resyncs, 1);
}

#[test]
fn a_stale_answer_is_served_while_the_authority_is_unreachable() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    w.set_down(true);
    w.advance((TTL + 5) * 1000);
    w.lookup(0);
    w.flush();
    assert_eq!(w.answers.last(), Some(&(0, 1, true)));
    // Past max-stale: nothing stale any more.
    w.advance((MAX_STALE + 10) * 1000);
    let n = w.answers.len();
    w.lookup(0);
    w.flush();
    assert_eq!(w.answers.len(), n, "no stale answer past max-stale (serverTimeout instead): {:?}", w.answers);
}

#[test]
fn a_client_is_answered_within_the_client_timer_when_upstream_is_silent() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    w.advance((TTL + 5) * 1000);
    w.lookup(0);
    // The request is never delivered.
    w.advance(1_800);
    assert_eq!(w.answers.last(), Some(&(0, 1, true)));
}

#[test]
fn upstream_errors_are_classified_exhaustively() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    w.advance((TTL + 5) * 1000);
    w.a.down = true; // it says so itself: serverTimeout
    w.lookup(0);
    let i = w.to_auth.iter().position(|t| matches!(t, Transmit::Query { .. })).unwrap();
    let Some(Transmit::Query { id, .. }) = w.to_auth.remove(i) else { panic!() };
    let e = Errors::one(name("dp.de.example"), Issue::new(ErrorKind::ServerTimeout, "busy"));
    w.r.handle_upstream(id, Upstream::Answer(Response::Errors(e)), w.now);
    w.pump();
    assert_eq!(w.answers.last(), Some(&(0, 1, true)), "serverTimeout upstream → stale");
    assert_eq!(w.r.stats().upstream_failed, 1);
}

#[test]
fn http_5xx_and_undecodable_answers_fail_over_to_the_next_endpoint() {
    let root = AuthorityRef { id: name("root.example"), endpoints: vec![ep("https://127.0.0.1:1/lost")] };
    let mut r = Resolver::new(Config::new(name("resolver.example"), root), Trusting, T0);
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+49").unwrap()),
        lifetime: 3600,
        authorities: vec![AuthorityRef { id: name("dp.de.example"), endpoints: vec![ep("https://127.0.0.1:2/lost"), ep("https://127.0.0.1:3/lost"), ep("https://127.0.0.1:4/lost")] }],
    };
    let t = RootTable { source: name("root.example"), serial: 1, valid_until: T0.plus_secs(86_400), negative_lifetime: 60, delegations: vec![d], signature: None };
    r.load_root_table(t.encode().as_bytes(), T0).unwrap();
    r.handle_query(1, FindService::for_csi(csi(0), true), T0);
    let mut endpoints = Vec::new();
    for result in [Upstream::Status(503), Upstream::Undecodable(signpost_schemas::Request::decode(b"<x/>", &Limits::MESSAGE).unwrap_err())] {
        let Some(Transmit::Query { id, endpoint, .. }) = r.poll_transmit() else { panic!() };
        endpoints.push(endpoint);
        r.handle_upstream(id, result, T0);
    }
    let Some(Transmit::Query { endpoint, .. }) = r.poll_transmit() else { panic!("a third endpoint is tried") };
    endpoints.push(endpoint);
    endpoints.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    endpoints.dedup();
    assert_eq!(endpoints.len(), 3, "each endpoint once");
}

#[test]
fn the_next_hop_in_the_clients_path_is_never_asked() {
    let mut w = World::new();
    let mut f = FindService::for_csi(csi(0), true);
    f.path = Some(Path::new(name("dp.de.example")));
    w.queries.insert(99, 0);
    w.r.handle_query(99, f, w.now);
    let a = w.r.poll_answer().unwrap().1;
    assert!(matches!(a, Answer::Failed(signpost_schemas::Failure::Loop(_))), "{a:?}");
    assert!(w.r.poll_transmit().is_none());
}

#[test]
fn the_preloaded_table_answers_not_found_for_what_it_does_not_delegate() {
    let mut w = World::new();
    w.r.handle_query(1, FindService::for_csi(Csi::from_wire("tel:+33612345678").unwrap(), true), w.now);
    let Some((1, Answer::Response(Response::Errors(e)))) = w.r.poll_answer() else { panic!() };
    assert_eq!(e.kind(), Some(ErrorKind::NotFound));
    assert_eq!(e.source.as_str(), "root.example");
    assert!(w.r.poll_transmit().is_none());
}

#[test]
fn a_hot_answer_is_resolved_again_when_invalidated() {
    let mut w = World::new();
    w.a.commit(0);
    w.resolve(0);
    w.deliver_request(); // subscribe
    for _ in 0..3 {
        w.lookup(0);
    }
    w.commit(0);
    w.deliver_frame();
    assert_eq!(w.r.stats().refreshes, 1);
    w.deliver_request();
    w.deliver_answer();
    assert_eq!(w.r.answers().len(), 1, "refreshed into the cache with no client asking");
}

#[test]
fn the_cache_keeps_to_its_entry_bound() {
    let root = AuthorityRef { id: name("root.example"), endpoints: vec![ep("https://127.0.0.1:1/lost")] };
    let mut c = Config::new(name("resolver.example"), root);
    c.max_entries = 2;
    c.push = false;
    let mut w = World::new();
    w.r = Resolver::new(c, Trusting, T0);
    w.r.load_root_table(&table(), T0).unwrap();
    for i in 0..4 {
        w.a.commit(i);
        w.lookup(i);
        w.deliver_request();
        w.deliver_answer();
    }
    assert!(w.r.answers().len() <= 2);
}

// ---------------------------------------------------------------------------
// The model

#[derive(Clone, Debug)]
enum Op {
    Lookup(usize),
    Commit(usize),
    DeliverRequest,
    DeliverAnswer,
    DeliverFrame,
    DropFeed,
    Advance(u64),
    Down,
    Up,
    Prune,
    Restart,
    Settle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4usize).prop_map(Op::Lookup),
        4 => (0..4usize).prop_map(Op::Commit),
        6 => Just(Op::DeliverRequest),
        6 => Just(Op::DeliverAnswer),
        6 => Just(Op::DeliverFrame),
        1 => Just(Op::DropFeed),
        3 => prop_oneof![Just(50u64), Just(900), Just(2_000), Just(30_000), Just(70_000)].prop_map(Op::Advance),
        1 => Just(Op::Down),
        1 => Just(Op::Up),
        1 => Just(Op::Prune),
        1 => Just(Op::Restart),
        1 => Just(Op::Settle),
    ]
}

/// Cases per run (each up to 80 steps); `PROPTEST_CASES` overrides.
const CASES: u32 = 512;

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, max_shrink_iters: 2_000, .. ProptestConfig::default() })]

    #[test]
    fn the_invalidation_invariant_holds_under_any_interleaving(ops in proptest::collection::vec(op(), 1..80)) {
        let mut w = World::new();
        for o in ops {
            match o {
                Op::Lookup(i) => w.lookup(i),
                Op::Commit(i) => w.commit(i),
                Op::DeliverRequest => w.deliver_request(),
                Op::DeliverAnswer => w.deliver_answer(),
                Op::DeliverFrame => w.deliver_frame(),
                Op::DropFeed => w.drop_feed(),
                Op::Advance(ms) => w.advance(ms),
                Op::Down => w.set_down(true),
                Op::Up => w.set_down(false),
                Op::Prune => w.prune(),
                Op::Restart => w.restart(),
                Op::Settle => w.settle(),
            }
        }
        w.settle();
    }
}

/// A delegation change at an authority flushes the referrals it taught and
/// the answers obtained through them — and nothing of other authorities.
#[test]
fn a_delegation_change_flushes_only_what_came_through_that_referral() {
    let mut w = World::new();
    let carrier = AuthorityRef { id: name("dp.carrier.example"), endpoints: vec![ep("https://127.0.0.1:5/lost")] };
    let n = Csi::from_wire("tel:+4916012345678").unwrap();
    w.a.commit(0);
    w.lookup(0); // an answer of DE itself
    w.flush();
    // +4916...: DE refers to the carrier, which answers.
    w.r.handle_query(500, FindService::for_csi(n.clone(), true), w.now);
    let next = |w: &mut World| loop {
        match w.r.poll_transmit().expect("a transmit") {
            Transmit::Query { id, server, request, .. } => return (id, server, request),
            Transmit::Subscribe { stream, .. } => {
                w.stream = Some((stream, true));
                w.r.handle_feed(stream, FeedEvent::Connected, w.now);
            }
            _ => {}
        }
    };
    let (id, server, _) = next(&mut w);
    assert_eq!(server.as_str(), "dp.de.example");
    let rd = signpost_schemas::Redirect {
        target: carrier.id.clone(),
        source: name("dp.de.example"),
        message: None,
        delegation: Delegation { cover: Cover::Prefix(E164Prefix::parse("+4916").unwrap()), lifetime: 3600, authorities: vec![carrier.clone()] },
        feed_position: Some(w.a.head),
    };
    w.r.handle_upstream(id, Upstream::Answer(Response::Redirect(rd)), w.now);
    let (id, server, request) = next(&mut w);
    assert_eq!(server.as_str(), "dp.carrier.example");
    let mut fs = FindService::for_csi(csi(0), true);
    fs.path = request.path.clone();
    let mut answer = w.a.answer(&fs, w.now);
    if let Response::Found(f) = &mut answer {
        for m in &mut f.mappings {
            m.source = name("dp.carrier.example");
        }
        f.feed_position = Some(7);
    }
    w.r.handle_upstream(id, Upstream::Answer(answer), w.now);
    assert!(matches!(w.r.poll_answer(), Some((500, Answer::Encoded { .. }))));
    assert_eq!(w.r.answers().len(), 2);
    // DE changes the +4916 delegation.
    let (stream, _) = w.stream.unwrap();
    let seq = w.a.head + 1;
    let change = FeedFrame::Change(Change { seq, subject: Subject::Cover(Cover::Prefix(E164Prefix::parse("+4916").unwrap())), op: ChangeOp::Undelegate, time: T0 });
    w.r.handle_feed(stream, FeedEvent::Frame(change), w.now);
    let left: Vec<String> = w.r.answers().iter().map(|(c, _)| c.uri().to_owned()).collect();
    assert_eq!(left, [csi(0).uri().to_owned()], "the carrier's answer went, DE's own stayed");
    // The referral went too: the next +4916 lookup asks DE again.
    w.r.handle_query(501, FindService::for_csi(n, true), w.now);
    let (_, server, _) = next(&mut w);
    assert_eq!(server.as_str(), "dp.de.example");
}

#[test]
fn an_operator_flushes_one_identifier_a_prefix_the_negatives_or_everything() {
    use signpost_resolver_core::Flush;
    let mut w = World::new();
    w.a.commit(0);
    w.a.commit(1);
    for i in 0..4 {
        w.lookup(i); // 0 and 1 found, 2 and 3 notFound
        w.flush();
    }
    assert_eq!(w.r.answers().len(), 4);
    assert_eq!(w.r.flush(&Flush::Negatives), 2);
    assert_eq!(w.r.flush(&Flush::Identifier(csi(0))), 1);
    assert_eq!(w.r.flush(&Flush::Cover(Cover::Prefix(E164Prefix::parse("+33").unwrap()))), 0);
    assert_eq!(w.r.flush(&Flush::Cover(Cover::Prefix(E164Prefix::parse("+4915").unwrap()))), 1);
    assert!(w.r.answers().is_empty());
    w.lookup(1);
    w.flush();
    assert_eq!(w.r.flush(&Flush::All), 1);
    assert!(w.r.answers().is_empty());
    // A resolution in flight when its identifier is flushed answers, but
    // does not cache what it read before the flush.
    w.lookup(0);
    w.deliver_request();
    w.r.flush(&Flush::Identifier(csi(0)));
    w.deliver_answer();
    assert_eq!(w.answers.last().map(|a| a.0), Some(0));
    assert!(w.r.answers().is_empty());
}
