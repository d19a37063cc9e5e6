//! The resolver against a real root and real authorities over mTLS on
//! 127.0.0.1:0: cold and cached resolution, delegation reuse, negative
//! caching, push invalidation, resync, serve-stale and recovery, root-down
//! resolution from the preloaded table, loops and depth, a rogue authority,
//! a tampered signature, client certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod topo;
#[path = "../../schemas/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_authority::store::{Commit, Store};
use signpost_net::client::Client;
use signpost_resolver::core::Policy;
use signpost_schemas::lost::{Assurance, Uri};
use signpost_schemas::sp::{EntryRecord, Provision, Visibility};
use signpost_schemas::{Csi, ErrorKind, FindService, Limits, Name, Path, Request, Response};
use signpost_trust::Role;
use signpost_trust::tls::ClientAuth;
use topo::*;

const RES: &str = "resolver.carrier-x.example";

fn csi(s: &str) -> Csi {
    Csi::from_wire(s).unwrap()
}

fn entry(p: &str) -> EntryRecord {
    EntryRecord {
        provider: Name::parse(p).unwrap(),
        display_name: None,
        uris: vec![Uri::parse(&format!("mimi://{p}/u/alice")).unwrap()],
        priority: 10,
        tags: vec![],
        assurance: Assurance::MspVerified,
        bound_to_tnsp: false,
        visibility: Visibility::All,
    }
}

/// Assigns a number at an authority and gives it one entry.
async fn provision(t: &Topology, auth: &topo::Auth, n: &str, tnsp: &str, scope: &str, msp: &str) {
    let csip = t.pki.peer(Role::Csip, tnsp, &[scope]);
    auth.core.provision(&csip, Provision::Assign { csi: csi(n), tnsp: None }).await.unwrap();
    let m = t.pki.peer(Role::Msp, msp, &[]);
    auth.core.provision(&m, Provision::PutEntry { csi: csi(n), entry: entry(msp) }).await.unwrap();
}

async fn ask(c: &Client, r: &Running, n: &str, docs: &mut Vec<(String, String)>) -> Response {
    ask_req(c, r, FindService::for_csi(csi(n), true), docs).await
}

async fn ask_req(c: &Client, r: &Running, f: FindService, docs: &mut Vec<(String, String)>) -> Response {
    let a = c.post_lost(&r.endpoint(), &Name::parse(RES).unwrap(), Bytes::from(Request::FindService(f).encode())).await.unwrap();
    assert_eq!(a.status, 200);
    let body = String::from_utf8(a.body.to_vec()).unwrap();
    docs.push((String::from("answer"), body.clone()));
    Response::decode(body.as_bytes(), &Limits::MESSAGE).unwrap()
}

fn providers(r: &Response) -> Vec<String> {
    match r {
        Response::Found(f) => f.mappings.iter().map(|m| match &m.body {
            signpost_schemas::MappingBody::Provider(p) => p.id.to_string(),
            signpost_schemas::MappingBody::NoProviders { .. } => "none".into(),
        }).collect(),
        other => panic!("expected mappings, got {other:?}"),
    }
}

fn kind(r: &Response) -> ErrorKind {
    match r {
        Response::Errors(e) => e.kind().unwrap(),
        other => panic!("expected errors, got {other:?}"),
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_cached_delegation_reuse_negative_and_push_invalidation() {
    let t = Topology::start().await;
    provision(&t, &t.de, "tel:+4915112345678", "tnsp-a.de.example", "+4915", "provider-a.example").await;
    provision(&t, &t.de, "tel:+4915112345679", "tnsp-a.de.example", "+4915", "provider-b.example").await;
    provision(&t, &t.carrier, "tel:+4916012345678", "tnsp-c.de.example", "+4916", "provider-c.example").await;
    // No preloaded table: the root is asked first.
    let (r, running, _clock, m) = t.resolver(false, Policy::default(), ClientAuth::Required).await;
    let ap = t.pki.client(Some(&t.pki.cert(Role::Msp, "ap.carrier-x.example", &[])));
    let mut docs = Vec::new();
    let up = |m: &signpost_net::Metrics| metric(m, "signpost_resolver_upstream_queries_total{outcome=\"ok\"}");

    // Cold: root → DE, verified; path = resolver, authority.
    let a = ask(&ap, &running, "tel:+4915112345678", &mut docs).await;
    assert_eq!(providers(&a), ["provider-a.example"]);
    let Response::Found(f) = &a else { unreachable!() };
    assert_eq!(f.path.vias().iter().map(Name::as_str).collect::<Vec<_>>(), [RES, "dp.de.example"]);
    assert_eq!(up(&m), 2);
    // Cached: no upstream query.
    let a2 = ask(&ap, &running, "tel:+4915112345678", &mut docs).await;
    assert_eq!(providers(&a2), ["provider-a.example"]);
    assert_eq!(up(&m), 2);
    assert_eq!(metric(&m, "signpost_resolver_cache_hits_total"), 1);
    // Delegation reuse: another +49 number asks DE only.
    assert_eq!(providers(&ask(&ap, &running, "tel:+4915112345679", &mut docs).await), ["provider-b.example"]);
    assert_eq!(up(&m), 3);
    // Sub-delegated block: DE refers to the carrier.
    let a = ask(&ap, &running, "tel:+4916012345678", &mut docs).await;
    assert_eq!(providers(&a), ["provider-c.example"]);
    let Response::Found(f) = &a else { unreachable!() };
    assert_eq!(f.path.vias().last().unwrap().as_str(), "dp.carrier.example");
    assert_eq!(up(&m), 5);
    // Negative caching.
    assert_eq!(kind(&ask(&ap, &running, "tel:+4915199999999", &mut docs).await), ErrorKind::NotFound);
    assert_eq!(kind(&ask(&ap, &running, "tel:+4915199999999", &mut docs).await), ErrorKind::NotFound);
    assert_eq!(up(&m), 6);

    // Push invalidation: a port at DE evicts the cached answer within a
    // heartbeat, long before its one-hour lifetime.
    wait_for("feed subscription", || r.feed_position(&Name::parse("dp.de.example").unwrap()).is_some()).await;
    let before = metric(&m, "signpost_resolver_invalidations_total");
    let msp_a = t.pki.peer(Role::Msp, "provider-a.example", &[]);
    let t0 = Instant::now();
    t.de.core.provision(&msp_a, Provision::RemoveEntry { csi: csi("tel:+4915112345678"), provider: Name::parse("provider-a.example").unwrap() }).await.unwrap();
    wait_for("invalidation", || metric(&m, "signpost_resolver_invalidations_total") > before).await;
    eprintln!("authority commit → resolver eviction: {:?}", t0.elapsed());
    let a = ask(&ap, &running, "tel:+4915112345678", &mut docs).await;
    assert_eq!(kind(&a), ErrorKind::NotFound, "the entry is gone, and the resolver knows");
    // An assignment invalidates a cached negative answer too.
    let before = metric(&m, "signpost_resolver_invalidations_total");
    provision(&t, &t.de, "tel:+4915199999999", "tnsp-a.de.example", "+4915", "provider-z.example").await;
    wait_for("negative invalidation", || metric(&m, "signpost_resolver_invalidations_total") > before).await;
    assert_eq!(providers(&ask(&ap, &running, "tel:+4915199999999", &mut docs).await), ["provider-z.example"]);

    // Every answer is valid LoST with valid sp extensions.
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(common::xmllint(&common::lost_rng(), &docs), Vec::<String>::new());
    assert_eq!(common::xmllint(&common::driver_rng(tmp.path()), &docs), Vec::<String>::new());
    // Clients see hits and misses separately.
    assert!(m.render().contains("signpost_resolver_hit_duration_seconds_count"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_recovery_and_resync() {
    let mut t = Topology::start().await;
    provision(&t, &t.de, "tel:+4915112345678", "tnsp-a.de.example", "+4915", "provider-a.example").await;
    let (r, running, clock, m) = t.resolver(true, Policy::default(), ClientAuth::Optional).await;
    let ap = t.pki.client(None);
    let mut docs = Vec::new();
    assert_eq!(providers(&ask(&ap, &running, "tel:+4915112345678", &mut docs).await), ["provider-a.example"]);
    let de = Name::parse("dp.de.example").unwrap();
    wait_for("feed subscription", || r.feed_position(&de).is_some()).await;

    // The authority dies; two hours later the entry is past its lifetime:
    // it is served stale, with the warning and a short lifetime.
    t.de.running.stop().await;
    clock.advance_millis(2 * 3600 * 1000);
    let a = ask(&ap, &running, "tel:+4915112345678", &mut docs).await;
    let Response::Found(f) = &a else { panic!("{a:?}") };
    let stale = f.warnings[0].stale.as_ref().expect("stale warning");
    assert_eq!(stale.authority.as_str(), "dp.de.example");
    assert_eq!(metric(&m, "signpost_resolver_stale_answers_total"), 1);
    // Within the failure-recheck window the authority is not asked again.
    let fails = metric(&m, "signpost_resolver_upstream_queries_total{outcome=\"failed\"}");
    assert!(matches!(ask(&ap, &running, "tel:+4915112345678", &mut docs).await, Response::Found(ref f) if !f.warnings.is_empty()));
    assert_eq!(metric(&m, "signpost_resolver_upstream_queries_total{outcome=\"failed\"}"), fails);
    // An identifier never seen, while its authority is down: serverTimeout.
    assert_eq!(kind(&ask(&ap, &running, "tel:+4915100000001", &mut docs).await), ErrorKind::ServerTimeout);

    // While the feed is down, a change is committed and the history pruned:
    // on reconnect the resolver is told to resync and flushes what it
    // learned from DE.
    let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]);
    let mut e2 = entry("provider-a.example");
    e2.priority = 1;
    e2.uris = vec![Uri::parse("mimi://provider-a.example/u/alice-new").unwrap()];
    t.de.core.provision(&msp, Provision::PutEntry { csi: csi("tel:+4915112345678"), entry: e2 }).await.unwrap();
    t.de.core.store().prune(1, signpost_schemas::Timestamp::EPOCH).await.unwrap();
    t.de.restart(&t.pki).await;
    // Recovery: after the recheck window, a fresh answer (the new URI).
    clock.advance_millis(31_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = ask(&ap, &running, "tel:+4915112345678", &mut docs).await;
        if let Response::Found(f) = &a
            && f.warnings.is_empty()
        {
            assert_eq!(f.mappings[0].uris[0].as_str(), "mimi://provider-a.example/u/alice-new");
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for("resync position", || r.feed_position(&de).is_some_and(|s| s >= 3)).await;
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(common::xmllint(&common::driver_rng(tmp.path()), &docs), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_down_loops_depth_rogue_tamper_and_client_certificates() {
    let mut t = Topology::start().await;
    provision(&t, &t.fr, "tel:+33612345678", "tnsp.fr.example", "+33", "provider-f.example").await;
    provision(&t, &t.de, "tel:+4915112345678", "tnsp-a.de.example", "+4915", "provider-a.example").await;
    let (_r, running, _clock, m) = t.resolver(true, Policy::default(), ClientAuth::Required).await;
    let ap = t.pki.client(Some(&t.pki.cert(Role::Msp, "ap.carrier-x.example", &[])));
    let mut docs = Vec::new();
    let (_r0, running0, _c0, _m0) = t.resolver(true, Policy { max_depth: 0, ..Policy::default() }, ClientAuth::Required).await;

    // Every root is down: the preloaded table still routes +33.
    t.root.stop().await;
    assert_eq!(providers(&ask(&ap, &running, "tel:+33612345678", &mut docs).await), ["provider-f.example"]);

    // A rogue authority delegated +44, certified for +33: its mapping for a
    // +44 number is rejected (serverError), never cached.
    provision(&t, &t.rogue, "tel:+447700900123", "tnsp.uk.example", "+44", "provider-r.example").await;
    assert_eq!(kind(&ask(&ap, &running, "tel:+447700900123", &mut docs).await), ErrorKind::ServerError);
    assert_eq!(metric(&m, "signpost_resolver_rejected_answers_total"), 1);
    assert_eq!(kind(&ask(&ap, &running, "tel:+447700900123", &mut docs).await), ErrorKind::ServerError, "rejected answers are not cached");

    // A tampered mapping (URI changed after signing) is rejected.
    let n2 = "tel:+4915112345699";
    provision(&t, &t.de, n2, "tnsp-a.de.example", "+4915", "provider-t.example").await;
    let mut rec = t.de.core.store().get(&csi(n2)).await.unwrap().unwrap();
    rec.entries[0].signed.uris = vec![Uri::parse("mimi://evil.example/u/alice").unwrap()];
    t.de.core.store().commit(Commit { records: vec![rec], time: t.pki.now, ..Commit::default() }).await.unwrap();
    assert_eq!(kind(&ask(&ap, &running, n2, &mut docs).await), ErrorKind::ServerError);

    // Loop: our own id already in the path.
    let mut f = FindService::for_csi(csi("tel:+4915112345678"), true);
    f.path = Some(Path::new(Name::parse(RES).unwrap()));
    assert_eq!(kind(&ask_req(&ap, &running, f, &mut docs).await), ErrorKind::Loop);
    // Depth: a resolver that follows no referral cannot reach the carrier.
    provision(&t, &t.carrier, "tel:+4916012345678", "tnsp-c.de.example", "+4916", "provider-c.example").await;
    let a = ask(&ap, &running0, "tel:+4916012345678", &mut docs).await;
    assert_eq!(kind(&a), ErrorKind::ServerError);
    // Client certificates: required here, so a client without one is refused.
    let anonymous = t.pki.client(None);
    let e = anonymous.post_lost(&running.endpoint(), &Name::parse(RES).unwrap(), Bytes::from(Request::FindService(FindService::for_csi(csi("tel:+33612345678"), true)).encode())).await;
    assert!(e.is_err());
    // Wrong profile and wrong service.
    let mut g = FindService::for_csi(csi("tel:+33612345678"), true);
    g.locations = vec![signpost_schemas::Location::Other { id: "g".into(), profile: Some("civic".into()) }];
    assert_eq!(kind(&ask_req(&ap, &running, g, &mut docs).await), ErrorKind::LocationProfileUnrecognized);
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(common::xmllint(&common::driver_rng(tmp.path()), &docs), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_upstream_query() {
    let t = Topology::start().await;
    provision(&t, &t.de, "tel:+4915112345678", "tnsp-a.de.example", "+4915", "provider-a.example").await;
    let (_r, running, _clock, m) = t.resolver(true, Policy::default(), ClientAuth::Optional).await;
    let ap = std::sync::Arc::new(t.pki.client(None));
    let ep = running.endpoint();
    let before = metric(&m, "signpost_resolver_upstream_queries_total{outcome=\"ok\"}");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (ap, ep) = (ap.clone(), ep.clone());
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(Request::FindService(FindService::for_csi(csi("tel:+4915112345678"), true)).encode());
            let a = ap.post_lost(&ep, &Name::parse(RES).unwrap(), body).await.unwrap();
            Response::decode(&a.body, &Limits::MESSAGE).unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(providers(&t.await.unwrap()), ["provider-a.example"]);
    }
    // One upstream query (the preloaded table routes +49 to DE directly).
    assert_eq!(metric(&m, "signpost_resolver_upstream_queries_total{outcome=\"ok\"}") - before, 1);
}
