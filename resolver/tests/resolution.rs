//! The resolver against a real root and real authorities over mTLS on
//! 127.0.0.1:0 (the shared kit), one rule per test. Waits are for events
//! the system reaches by itself (a feed position, a subscription); no test
//! measures how long anything took.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
#[path = "../../schemas/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signpost_authority::store::{Commit, Store};
use signpost_kit::ResolverPlan;
use signpost_net::{Ctx, Failure, LostReply, Reply, Service};
use signpost_resolver::core::Policy;
use signpost_schemas::lost::Uri;
use signpost_schemas::{Clock, ErrorKind, FindService, ManualClock, Name, Path, Request, Response, SystemClock};
use signpost_trust::Role;
use signpost_trust::tls::ClientAuth;
use support::*;

fn xmllint_all(docs: &Docs) {
    assert_eq!(common::xmllint_lost(&docs.0), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Resolution and caching

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_lookup_follows_the_root_referral_and_lists_resolver_then_authority() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let mut p = t.plan();
    p.preload = false;
    let r = t.resolver(p).await;
    let mut docs = Docs::default();
    let a = ask(&t.ap(), &r, "tel:+4915112345678", &mut docs).await;
    assert_eq!(providers(&a), ["provider-a.example"]);
    let Response::Found(f) = &a else { unreachable!() };
    assert_eq!(f.path.vias().iter().map(Name::as_str).collect::<Vec<_>>(), [RES, "dp.de.example"]);
    assert_eq!(upstream_ok(&r), 2, "root, then DE");
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_is_served_without_an_upstream_query() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    let before = upstream_ok(&r);
    let a = ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    assert_eq!(providers(&a), ["provider-a.example"]);
    assert_eq!(upstream_ok(&r), before);
    assert_eq!(metric(r.metrics(), "signpost_resolver_cache_hits_total"), 1);
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_referral_answers_every_number_under_its_prefix() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    t.provision(&t.de, "tel:+4915112345679", "+4915", "provider-b.example").await;
    let mut p = t.plan();
    p.preload = false;
    let r = t.resolver(p).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    assert_eq!(upstream_ok(&r), 2);
    assert_eq!(providers(&ask(&ap, &r, "tel:+4915112345679", &mut docs).await), ["provider-b.example"]);
    assert_eq!(upstream_ok(&r), 3, "DE only: the +49 referral was reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_delegated_block_is_followed_to_its_authority() {
    let t = Topology::start().await;
    t.provision(&t.carrier, "tel:+4916012345678", "+4916", "provider-c.example").await;
    let r = t.resolver(t.plan()).await;
    let mut docs = Docs::default();
    let a = ask(&t.ap(), &r, "tel:+4916012345678", &mut docs).await;
    assert_eq!(providers(&a), ["provider-c.example"]);
    let Response::Found(f) = &a else { unreachable!() };
    assert_eq!(f.path.vias().last().unwrap().as_str(), "dp.carrier.example");
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_found_answer_is_cached() {
    let t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    assert_eq!(kind(&ask(&ap, &r, "tel:+4915199999999", &mut docs).await), ErrorKind::NotFound);
    let before = upstream_ok(&r);
    assert_eq!(kind(&ask(&ap, &r, "tel:+4915199999999", &mut docs).await), ErrorKind::NotFound);
    assert_eq!(upstream_ok(&r), before);
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_for_one_identifier_make_one_upstream_query() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let ap = Arc::new(t.ap());
    let ep = r.running.endpoint().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (ap, ep) = (ap.clone(), ep.clone());
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(Request::FindService(FindService::for_csi(csi("tel:+4915112345678"), true)).encode());
            let a = ap.post_lost(&ep, &name(RES), body).await.unwrap();
            Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE).unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(providers(&t.await.unwrap()), ["provider-a.example"]);
    }
    // One upstream query: the preloaded table routes +49 to DE directly.
    assert_eq!(upstream_ok(&r), 1);
}

// ---------------------------------------------------------------------------
// Push invalidation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_evicts_the_cached_answer() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    assert_eq!(uri(&ask(&ap, &r, "tel:+4915112345678", &mut docs).await), "mimi://provider-a.example/u/alice");
    let seq = t.put(&t.de, "tel:+4915112345678", "provider-a.example", "mimi://provider-a.example/u/new").await;
    let de = t.de.id();
    eventually("the change is applied", || r.resolver.feed_position(&de).is_some_and(|p| p >= seq)).await;
    assert_eq!(uri(&ask(&ap, &r, "tel:+4915112345678", &mut docs).await), "mimi://provider-a.example/u/new");
    assert!(metric(r.metrics(), "signpost_resolver_invalidations_total") >= 1);
    xmllint_all(&docs);
}

/// Regression: the eviction listener of the old cache deleted the index
/// entry that a refresh had just re-added, so a refreshed answer was never
/// invalidated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_evicts_an_answer_that_was_refreshed_once() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let clock = ManualClock::new(SystemClock.now());
    let mut p = t.plan();
    p.clock = Arc::new(clock.clone());
    p.policy = Policy { max_ttl: 60, ..Policy::default() };
    let r = t.resolver(p).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    // Past its lifetime: the next lookup fetches it again and replaces it.
    clock.advance_millis(61_000);
    let before = upstream_ok(&r);
    assert_eq!(uri(&ask(&ap, &r, "tel:+4915112345678", &mut docs).await), "mimi://provider-a.example/u/alice");
    assert_eq!(upstream_ok(&r), before + 1, "refreshed");
    let seq = t.put(&t.de, "tel:+4915112345678", "provider-a.example", "mimi://provider-a.example/u/new").await;
    let de = t.de.id();
    eventually("the change is applied", || r.resolver.feed_position(&de).is_some_and(|p| p >= seq)).await;
    assert_eq!(uri(&ask(&ap, &r, "tel:+4915112345678", &mut docs).await), "mimi://provider-a.example/u/new");
}

/// Regression: the first subscription was made after the answer was cached,
/// from the authority's head at that moment; a change committed in between
/// was lost and the old answer served for its whole lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_committed_right_after_the_first_answer_is_not_lost() {
    let t = Topology::start().await;
    let n = "tel:+4915112345678";
    t.provision(&t.de, n, "+4915", "provider-a.example").await;
    for round in 0..5 {
        let r = t.resolver(t.plan()).await;
        let (ap, mut docs) = (t.ap(), Docs::default());
        let old = uri(&ask(&ap, &r, n, &mut docs).await);
        // At once: no waiting for the subscription.
        let new = format!("mimi://provider-a.example/u/round-{round}");
        let seq = t.put(&t.de, n, "provider-a.example", &new).await;
        assert_ne!(old, new);
        let de = t.de.id();
        eventually("the change is applied", || r.resolver.feed_position(&de).is_some_and(|p| p >= seq)).await;
        assert_eq!(uri(&ask(&ap, &r, n, &mut docs).await), new, "round {round}");
        let mut r = r;
        r.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_evicts_a_cached_not_found() {
    let t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    assert_eq!(kind(&ask(&ap, &r, "tel:+4915199999999", &mut docs).await), ErrorKind::NotFound);
    let seq = t.provision(&t.de, "tel:+4915199999999", "+4915", "provider-z.example").await;
    let de = t.de.id();
    eventually("the change is applied", || r.resolver.feed_position(&de).is_some_and(|p| p >= seq)).await;
    assert_eq!(providers(&ask(&ap, &r, "tel:+4915199999999", &mut docs).await), ["provider-z.example"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_flushes_only_what_that_authority_said() {
    let mut t = Topology::start().await;
    let n = "tel:+4915112345678";
    t.provision(&t.de, n, "+4915", "provider-a.example").await;
    t.provision(&t.fr, "tel:+33612345678", "+33", "provider-f.example").await;
    let mut p = t.plan();
    p.preload = false;
    let r = t.resolver(p).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, n, &mut docs).await;
    ask(&ap, &r, "tel:+33612345678", &mut docs).await;
    let de = t.de.id();
    eventually("DE's feed", || r.resolver.feed_connected(&de)).await;
    // DE goes down; while it is, a change is committed and its history
    // pruned: on reconnect the resolver is told to resync.
    t.de.running.stop().await;
    t.put(&t.de, n, "provider-a.example", "mimi://provider-a.example/u/between").await;
    let seq = t.put(&t.de, n, "provider-a.example", "mimi://provider-a.example/u/new").await;
    t.de.core.store().prune(1, signpost_schemas::Timestamp::EPOCH).await.unwrap();
    t.de.restart(&t.pki).await.unwrap();
    eventually("the resync", || r.resolver.stats().resyncs >= 1 && r.resolver.feed_position(&de).is_some_and(|p| p >= seq)).await;
    let up = upstream_ok(&r);
    // FR's answer is still cached; the root's +49 referral too (DE is asked
    // directly, not the root).
    ask(&ap, &r, "tel:+33612345678", &mut docs).await;
    assert_eq!(upstream_ok(&r), up, "FR's answer survived DE's resync");
    assert_eq!(uri(&ask(&ap, &r, n, &mut docs).await), "mimi://provider-a.example/u/new");
    assert_eq!(upstream_ok(&r), up + 1, "DE only: the root's referral survived DE's resync");
}

/// A topology, one number at DE, a resolver on a manual clock that has
/// cached its answer.
async fn cached_on_a_manual_clock() -> (Topology, signpost_kit::ResolverNode, ManualClock, signpost_net::client::Client, Docs) {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let clock = ManualClock::new(SystemClock.now());
    let mut p = t.plan();
    p.clock = Arc::new(clock.clone());
    let r = t.resolver(p).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    (t, r, clock, ap, docs)
}

// ---------------------------------------------------------------------------
// Serve-stale (RFC 8767)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_answer_is_served_while_the_authority_is_down_then_a_fresh_one() {
    let (mut t, r, clock, ap, mut docs) = cached_on_a_manual_clock().await;
    t.de.running.stop().await;
    clock.advance_millis(2 * 3600 * 1000);
    let a = ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    let Response::Found(f) = &a else { panic!("{a:?}") };
    assert_eq!(f.warnings[0].stale.as_ref().expect("stale warning").authority.as_str(), "dp.de.example");
    assert_eq!(f.mappings[0].expires, signpost_schemas::Expires::At(clock.now().plus_secs(30)), "a stale answer lives 30 s");
    // Within the failure-recheck window the authority is not asked again.
    let fails = r.resolver.stats().upstream_failed;
    assert!(matches!(ask(&ap, &r, "tel:+4915112345678", &mut docs).await, Response::Found(ref f) if !f.warnings.is_empty()));
    assert_eq!(r.resolver.stats().upstream_failed, fails);
    // An identifier never seen: nothing stale to serve.
    assert_eq!(kind(&ask(&ap, &r, "tel:+4915100000001", &mut docs).await), ErrorKind::ServerTimeout);
    // Back up, past the recheck window: fresh again.
    t.de.restart(&t.pki).await.unwrap();
    clock.advance_millis(31_000);
    let a = ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    assert!(matches!(&a, Response::Found(f) if f.warnings.is_empty()), "{a:?}");
    xmllint_all(&docs);
}

/// An authority that accepts connections and never answers.
async fn black_hole(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    })
}

/// Regression: the shell's request timeout cut off the serve-stale
/// fallback (the client got internalError); the resolver answers within its
/// own client response timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_authority_gets_a_stale_answer_within_the_client_timer() {
    let (mut t, r, clock, ap, mut docs) = cached_on_a_manual_clock().await;
    t.de.running.stop().await;
    let hole = black_hole(t.de.running.addr).await;
    clock.advance_millis(2 * 3600 * 1000);
    // The clock the resolver's timers read is manual: move it along while
    // the query waits, as real time would.
    let ticker = {
        let (clock, res) = (clock.clone(), r.resolver.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                clock.advance_millis(100);
                res.tick();
            }
        })
    };
    let a = ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    ticker.abort();
    hole.abort();
    let Response::Found(f) = &a else { panic!("{a:?}") };
    assert!(f.warnings[0].stale.is_some());
}

/// A LoST server that answers every findService with one error.
struct Failing(Name, Failure);

impl Service for Failing {
    fn id(&self) -> Name {
        self.0.clone()
    }
    async fn lost(&self, _req: Request, _ctx: &Ctx) -> Result<LostReply, Failure> {
        Err(self.1.clone())
    }
    async fn get(&self, _path: &str, _h: &signpost_net::hyper::HeaderMap, _ctx: &Ctx) -> Option<Reply> {
        None
    }
}

/// Regression: an upstream serverTimeout became serverError through a
/// wildcard arm, so serve-stale never triggered on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_server_timeout_error_lets_the_stale_answer_be_served() {
    let (mut t, r, clock, ap, mut docs) = cached_on_a_manual_clock().await;
    t.de.running.stop().await;
    let cert = t.pki.cert(Role::Authority, "dp.de.example", &["+49"]).unwrap();
    let svc = Arc::new(Failing(name("dp.de.example"), Failure::ServerTimeout("the database is away".into())));
    let mut fake = signpost_kit::serve(svc, &cert, &t.pki.anchor, ClientAuth::Optional, t.de.running.addr, Arc::new(signpost_net::Metrics::new())).await.unwrap();
    clock.advance_millis(2 * 3600 * 1000);
    let a = ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    fake.stop().await;
    let Response::Found(f) = &a else { panic!("{a:?}") };
    assert!(f.warnings[0].stale.is_some());
    xmllint_all(&docs);
}

// ---------------------------------------------------------------------------
// The root and its preloaded table (RFC 8806)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_root_down_the_preloaded_table_routes() {
    let mut t = Topology::start().await;
    t.provision(&t.fr, "tel:+33612345678", "+33", "provider-f.example").await;
    let r = t.resolver(t.plan()).await;
    t.root.running.stop().await;
    let mut docs = Docs::default();
    assert_eq!(providers(&ask(&t.ap(), &r, "tel:+33612345678", &mut docs).await), ["provider-f.example"]);
}

/// Regression: a number under a prefix the table does not delegate got
/// serverTimeout with the root down; the table's own answer is notFound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_root_down_an_undelegated_prefix_is_the_tables_not_found() {
    let mut t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    t.root.running.stop().await;
    let mut docs = Docs::default();
    let a = ask(&t.ap(), &r, "tel:+81312345678", &mut docs).await;
    assert_eq!(kind(&a), ErrorKind::NotFound);
    let Response::Errors(e) = &a else { unreachable!() };
    assert_eq!(e.source.as_str(), ROOT);
    assert_eq!(e.negative_lifetime, Some(600));
    xmllint_all(&docs);
}

/// Regression: the verified table was not kept, so a resolver started while
/// every root was down had none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_started_while_every_root_is_down_uses_the_table_it_kept() {
    let mut t = Topology::start().await;
    t.provision(&t.fr, "tel:+33612345678", "+33", "provider-f.example").await;
    let dir = tempfile::tempdir().unwrap();
    let mut p = t.plan();
    p.table_cache = Some(dir.path().join("root-table.xml"));
    let mut first = t.resolver(p.clone()).await;
    let kept = dir.path().join("root-table.xml");
    eventually("the table is kept", || kept.exists()).await;
    first.stop().await;
    t.root.running.stop().await;
    let r = t.resolver(p).await;
    assert_eq!(r.resolver.root_table().map(|(s, _)| s), Some(1));
    let mut docs = Docs::default();
    assert_eq!(providers(&ask(&t.ap(), &r, "tel:+33612345678", &mut docs).await), ["provider-f.example"]);
}

/// Regression: after a notFound from the root, the resolver subscribed to
/// the root's change feed and retried for ever; only authorities have feeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_found_from_the_root_subscribes_to_no_feed() {
    let t = Topology::start().await;
    let mut p = t.plan();
    p.preload = false;
    let r = t.resolver(p).await;
    let mut docs = Docs::default();
    assert_eq!(kind(&ask(&t.ap(), &r, "tel:+81312345678", &mut docs).await), ErrorKind::NotFound);
    assert_eq!(upstream_ok(&r), 1);
    assert_eq!(r.resolver.feed_position(&name(ROOT)), None);
    assert!(!r.resolver.feed_connected(&name(ROOT)));
    assert_eq!(t.root.running.metrics.requests("http_404"), 0, "no GET /feed reached the root");
}

// ---------------------------------------------------------------------------
// Verification

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_authoritys_mapping_is_rejected_and_not_cached() {
    let t = Topology::start().await;
    t.provision(&t.rogue, "tel:+447700900123", "+44", "provider-r.example").await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    assert_eq!(kind(&ask(&ap, &r, "tel:+447700900123", &mut docs).await), ErrorKind::ServerError);
    assert_eq!(metric(r.metrics(), "signpost_resolver_rejected_answers_total"), 1);
    assert_eq!(kind(&ask(&ap, &r, "tel:+447700900123", &mut docs).await), ErrorKind::ServerError);
    assert_eq!(metric(r.metrics(), "signpost_resolver_rejected_answers_total"), 2, "asked again: rejected answers are not cached");
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_tampered_with_after_signing_is_rejected() {
    let t = Topology::start().await;
    let n = "tel:+4915112345699";
    t.provision(&t.de, n, "+4915", "provider-t.example").await;
    let mut rec = t.de.core.store().get(&csi(n)).await.unwrap().unwrap();
    rec.entries[0].signed.uris = vec![Uri::parse("mimi://evil.example/u/alice").unwrap()];
    t.de.core.store().commit(Commit { records: vec![rec], time: t.pki.now, ..Commit::default() }).await.unwrap();
    let r = t.resolver(t.plan()).await;
    let mut docs = Docs::default();
    assert_eq!(kind(&ask(&t.ap(), &r, n, &mut docs).await), ErrorKind::ServerError);
}

// ---------------------------------------------------------------------------
// Loops, depth, requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_id_in_the_path_is_a_loop() {
    let t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    let mut f = FindService::for_csi(csi("tel:+4915112345678"), true);
    f.path = Some(Path::new(name(RES)));
    let mut docs = Docs::default();
    assert_eq!(kind(&ask_req(&t.ap(), &r, f, &mut docs).await), ErrorKind::Loop);
    assert_eq!(upstream_ok(&r), 0);
    xmllint_all(&docs);
}

/// Regression: a query whose path already held the next hop was forwarded
/// to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_hop_in_the_path_is_a_loop_and_nothing_is_forwarded() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let mut f = FindService::for_csi(csi("tel:+4915112345678"), true);
    f.path = Some(Path::new(name("dp.de.example")));
    let de_before = t.de.running.metrics.requests("found") + t.de.running.metrics.requests("loop");
    let mut docs = Docs::default();
    assert_eq!(kind(&ask_req(&t.ap(), &r, f.clone(), &mut docs).await), ErrorKind::Loop);
    assert_eq!(t.de.running.metrics.requests("found") + t.de.running.metrics.requests("loop"), de_before, "DE was not asked");
    // Also when the answer is cached already.
    ask(&t.ap(), &r, "tel:+4915112345678", &mut docs).await;
    assert_eq!(kind(&ask_req(&t.ap(), &r, f, &mut docs).await), ErrorKind::Loop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrals_beyond_the_depth_limit_are_not_followed() {
    let t = Topology::start().await;
    t.provision(&t.carrier, "tel:+4916012345678", "+4916", "provider-c.example").await;
    let mut p = t.plan();
    p.policy = Policy { max_depth: 0, ..Policy::default() };
    let r = t.resolver(p).await;
    let mut docs = Docs::default();
    assert_eq!(kind(&ask(&t.ap(), &r, "tel:+4916012345678", &mut docs).await), ErrorKind::ServerError);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_required_certificate_is_refused() {
    let t = Topology::start().await;
    let mut p = t.plan();
    p.client_auth = ClientAuth::Required;
    let r = t.resolver(p).await;
    let anonymous = t.pki.client(None).unwrap();
    let body = Bytes::from(Request::FindService(FindService::for_csi(csi("tel:+33612345678"), true)).encode());
    assert!(anonymous.post_lost(&r.running.endpoint().unwrap(), &name(RES), body).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_profile_or_service_not_served_gets_its_error() {
    let t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    let mut docs = Docs::default();
    let mut g = FindService::for_csi(csi("tel:+33612345678"), true);
    g.locations = vec![signpost_schemas::Location::Other { id: "g".into(), profile: Some("civic".into()) }];
    assert_eq!(kind(&ask_req(&t.ap(), &r, g, &mut docs).await), ErrorKind::LocationProfileUnrecognized);
    let mut s = FindService::for_csi(csi("tel:+33612345678"), true);
    s.service = Some(Uri::parse("urn:service:sos").unwrap());
    assert_eq!(kind(&ask_req(&t.ap(), &r, s, &mut docs).await), ErrorKind::ServiceNotImplemented);
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_location_id_gets_the_cached_answer_with_its_own_location_used() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(ResolverPlan { ..t.plan() }).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    let mut f = FindService::for_csi(csi("tel:+4915112345678"), true);
    f.locations = vec![signpost_schemas::Location::Csi { id: "home-7".into(), csi: csi("tel:+4915112345678") }];
    let up = upstream_ok(&r);
    let a = ask_req(&ap, &r, f, &mut docs).await;
    let Response::Found(f) = &a else { panic!("{a:?}") };
    assert_eq!(f.location_used.as_deref(), Some("home-7"));
    assert_eq!(upstream_ok(&r), up);
    xmllint_all(&docs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_do_not_pass_the_authoritys_feed_position_to_clients() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let mut docs = Docs::default();
    let a = ask(&t.ap(), &r, "tel:+4915112345678", &mut docs).await;
    let Response::Found(f) = &a else { panic!("{a:?}") };
    assert_eq!(f.feed_position, None);
    assert!(!docs.0[0].1.contains("feedPosition"));
}

/// RFC 5222's own example asks for urn:service:sos.police with a geodetic
/// location: both errors that apply are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_service_and_a_wrong_profile_are_both_reported() {
    let t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    let mut g = FindService::for_csi(csi("tel:+33612345678"), true);
    g.locations = vec![signpost_schemas::Location::Other { id: "g".into(), profile: Some("geodetic-2d".into()) }];
    g.service = Some(Uri::parse("urn:service:sos.police").unwrap());
    let mut docs = Docs::default();
    let a = ask_req(&t.ap(), &r, g, &mut docs).await;
    let Response::Errors(e) = &a else { panic!("{a:?}") };
    let kinds: Vec<ErrorKind> = e.list.issues().iter().map(|i| i.kind).collect();
    assert!(kinds.contains(&ErrorKind::LocationProfileUnrecognized) && kinds.contains(&ErrorKind::ServiceNotImplemented), "{kinds:?}");
    xmllint_all(&docs);
}

/// RFC 5222 §10: listServices lists the sub-services of the service asked
/// about; the resolver offers urn:service:mimi, which has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_services_follows_the_service_asked_about() {
    let t = Topology::start().await;
    let r = t.resolver(t.plan()).await;
    let ask_list = |service: Option<&str>| {
        let l = signpost_schemas::ListServices { service: service.map(|s| Uri::parse(s).unwrap()), path: None };
        Bytes::from(Request::ListServices(l).encode())
    };
    let ap = t.ap();
    let ep = r.running.endpoint().unwrap();
    let all = ap.post_lost(&ep, &name(RES), ask_list(None)).await.unwrap();
    let Response::Services(s) = Response::decode(&all.body, &signpost_schemas::Limits::MESSAGE).unwrap() else { panic!() };
    assert_eq!(s.services.iter().map(Uri::as_str).collect::<Vec<_>>(), ["urn:service:mimi"]);
    let sos = ap.post_lost(&ep, &name(RES), ask_list(Some("urn:service:sos"))).await.unwrap();
    let r2 = Response::decode(&sos.body, &signpost_schemas::Limits::MESSAGE).unwrap();
    assert_eq!(kind(&r2), ErrorKind::ServiceNotImplemented, "never urn:service:mimi for the children of urn:service:sos");
    let mut docs = Docs::default();
    docs.0.push(("all".into(), String::from_utf8(all.body.to_vec()).unwrap()));
    docs.0.push(("sos".into(), String::from_utf8(sos.body.to_vec()).unwrap()));
    xmllint_all(&docs);
}
