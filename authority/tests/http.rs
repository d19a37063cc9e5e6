//! The authority over real TLS on 127.0.0.1:0, driven by real clients with
//! a certificate per role: provisioning and its refusals, signed answers,
//! the change feed (live invalidation, resume, heartbeat, resync), limits,
//! every applicable error at once, listServices by service, the NENA i3
//! echoes, idempotent assign, opt-out, and two frontends on one PostgreSQL
//! database (a change through one streams from the other's feed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
#[path = "../../schemas/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use signpost_authority::limits::{LimitSettings, Limiter};
use signpost_authority::service::{AuthorityService, FeedSettings};
use signpost_authority::store::Store;
use signpost_net::client::Client;
use signpost_net::{Limits, Metrics, Server, bind};
use signpost_schemas::lost::Endpoint;
use signpost_schemas::sp::{ChangeOp, FeedFrame, Provision, ProvisionResult, Subject};
use signpost_schemas::{ErrorKind, FindService, Name, Request, Response};
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use signpost_trust::Role;
use support::*;

const N: &str = "tel:+4915112345678";

struct Live<S: Store = signpost_authority::store::RedbStore> {
    w: Arc<World>,
    addr: std::net::SocketAddr,
    core: Arc<signpost_authority::core::Authority<S>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(rate: LimitSettings) -> Live {
    let w = Arc::new(World::new());
    let core = Arc::new(w.authority().await);
    serve_core(w, core, rate).await
}

/// Serves an authority core of the world `w` (one frontend).
async fn serve_core<S: Store>(w: Arc<World>, core: Arc<signpost_authority::core::Authority<S>>, rate: LimitSettings) -> Live<S> {
    let id = Identity::from_pem(w.authority_cert.as_bytes(), w.authority_key.as_bytes()).unwrap();
    let tls = Arc::new(server_config(&id, &w.anchor, ClientAuth::Optional).unwrap());
    let key_id = signpost_trust::sign::Signer::from_pem(w.authority_key.as_bytes()).unwrap().key_id().as_str().to_owned();
    let svc = Arc::new(AuthorityService::new(
        core.clone(),
        Limiter::new(rate),
        FeedSettings { heartbeat: Duration::from_millis(200), page: 512 },
        Bytes::from(w.authority_cert.clone()),
        key_id,
        Arc::new(Metrics::new()),
    ));
    let l = bind("127.0.0.1:0".parse().unwrap(), "lost").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(svc, Some(tls), Some(w.anchor.clone()), Limits::default(), Arc::new(Metrics::new()), Arc::new(w.clock.clone()));
    tokio::spawn(server.serve(l, async {
        let _ = rx.await;
    }));
    Live { w, addr, core, _stop: tx }
}

fn generous() -> LimitSettings {
    LimitSettings { rate: 10_000.0, burst: 10_000.0, miss_budget: 10_000, miss_window: 3600 }
}

impl<S: Store> Live<S> {
    fn client(&self, role: Option<(Role, &str, &[&str])>) -> Client {
        let id = role.map(|(r, id, scope)| {
            let (c, k) = issue(&self.w.ca, r, id, scope);
            Identity::from_pem(c.as_bytes(), k.as_bytes()).unwrap()
        });
        Client::new(Arc::new(client_config(&self.w.anchor, id.as_ref()).unwrap()), Duration::from_secs(5))
    }
    fn ep(&self, path: &str) -> Endpoint {
        Endpoint::parse(&format!("https://{}{path}", self.addr)).unwrap()
    }
    async fn provision(&self, c: &Client, op: Provision) -> (u16, String) {
        let a = c.raw(&self.ep("/v1/provision"), &name("dp.de.example"), signpost_net::hyper::Method::POST, "application/signpost+xml", Bytes::from(op.encode())).await.unwrap();
        (a.status, String::from_utf8(a.body.to_vec()).unwrap())
    }
    async fn find(&self, c: &Client, f: FindService) -> (u16, Response, String) {
        let a = c.post_lost(&self.ep("/lost"), &name("dp.de.example"), Bytes::from(Request::FindService(f).encode())).await.unwrap();
        let body = String::from_utf8(a.body.to_vec()).unwrap();
        (a.status, Response::decode(body.as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap(), body)
    }
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn q(c: &str) -> FindService {
    FindService::for_csi(csi(c), false)
}

fn errors_kind(body: &str) -> ErrorKind {
    match Response::decode(body.as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap() {
        Response::Errors(e) => e.kind().unwrap(),
        other => panic!("{other:?}"),
    }
}

/// Reads feed frames until `want` frames or the deadline.
async fn frames(body: &mut signpost_net::hyper::body::Incoming, buf: &mut String, want: usize, deadline: Duration) -> Vec<FeedFrame> {
    let end = Instant::now() + deadline;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < end {
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            out.push(FeedFrame::decode(line.as_bytes()).unwrap());
            if out.len() == want {
                return out;
            }
        }
        match tokio::time::timeout(end.saturating_duration_since(Instant::now()), body.frame()).await {
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    buf.push_str(std::str::from_utf8(&d).unwrap());
                }
            }
            _ => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_by_role_over_mtls() {
    let live = start(generous()).await;
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let msp = live.client(Some((Role::Msp, "provider-a.example", &[])));
    let other_msp = live.client(Some((Role::Msp, "provider-b.example", &[])));
    let anonymous = live.client(None);
    let mut docs = Vec::new();

    let (st, body) = live.provision(&anonymous, Provision::Assign { csi: csi(N), tnsp: None }).await;
    assert_eq!((st, errors_kind(&body)), (403, ErrorKind::Forbidden));
    let (st, body) = live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await;
    assert_eq!(st, 409, "{body}");
    let (st, body) = live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(ProvisionResult::decode(body.as_bytes()).unwrap().epoch.map(|e| e.0), Some(1));
    let (st, body) = live.provision(&other_msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await;
    assert_eq!((st, errors_kind(&body)), (403, ErrorKind::Forbidden));
    docs.push(("403".into(), body));
    let (st, _) = live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await;
    assert_eq!(st, 200);
    let (st, body) = live.provision(&msp, Provision::Release { csi: csi(N) }).await;
    assert_eq!((st, errors_kind(&body)), (403, ErrorKind::Forbidden));
    // A malformed body: 400 with badRequest.
    let a = msp.raw(&live.ep("/v1/provision"), &name("dp.de.example"), signpost_net::hyper::Method::POST, "application/signpost+xml", Bytes::from_static(b"<sp:explode xmlns:sp=\"urn:signpost:params:xml:ns:disc1\"/>")).await.unwrap();
    assert_eq!(a.status, 400);

    // The answer over HTTP verifies and validates.
    let (st, r, body) = live.find(&anonymous, q(N)).await;
    assert_eq!(st, 200);
    let Response::Found(f) = &r else { panic!("{r:?}") };
    live.w.verifier().verify_mapping(&csi(N), &f.mappings[0], t0()).unwrap();
    docs.push(("found".into(), body));
    let (_, r, body) = live.find(&anonymous, q("tel:+4915199999999")).await;
    assert!(matches!(r, Response::Errors(ref e) if e.kind() == Some(ErrorKind::NotFound) && e.negative_lifetime == Some(60)));
    docs.push(("not found".into(), body));
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());

    // The signing certificate is served under its key id.
    let kid = f.mappings[0].signature.as_ref().unwrap().key_id.as_str().to_owned();
    let a = anonymous.get(&live.ep("/lost"), &name("dp.de.example"), &format!("/certs/{kid}"), &[]).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(anonymous.get(&live.ep("/lost"), &name("dp.de.example"), "/certs/sha256-0000", &[]).await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_invalidation_resume_heartbeat_and_resync() {
    let live = start(generous()).await;
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let msp = live.client(Some((Role::Msp, "provider-a.example", &[])));
    let resolver = live.client(Some((Role::Resolver, "resolver.carrier.example", &[])));
    // Only resolvers subscribe.
    let (st, _) = msp.get_stream(&live.ep("/lost"), &name("dp.de.example"), "/feed?since=0").await.unwrap();
    assert_eq!(st, 403);
    assert_eq!(live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await.0, 200);
    assert_eq!(live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.0, 200);

    let (st, mut body) = resolver.get_stream(&live.ep("/lost"), &name("dp.de.example"), "/feed?since=0").await.unwrap();
    assert_eq!(st, 200);
    let mut buf = String::new();
    let got = frames(&mut body, &mut buf, 2, Duration::from_secs(5)).await;
    let ops: Vec<_> = got.iter().map(|f| match f { FeedFrame::Change(c) => (c.seq, c.op), other => panic!("{other:?}") }).collect();
    assert_eq!(ops, [(1, ChangeOp::Assign), (2, ChangeOp::EntryPut)]);
    // Idle: a heartbeat carrying the head.
    let hb = frames(&mut body, &mut buf, 1, Duration::from_secs(5)).await;
    assert!(matches!(hb[..], [FeedFrame::Heartbeat { seq: 2, .. }]), "{hb:?}");
    // A port committed now appears on the open feed.
    let t = Instant::now();
    assert_eq!(live.provision(&csip, Provision::Port { csi: csi(N), to: name("tnsp-b.de.example") }).await.0, 200);
    let next = loop {
        let f = frames(&mut body, &mut buf, 1, Duration::from_secs(5)).await;
        match f.first() {
            Some(FeedFrame::Heartbeat { .. }) => continue,
            other => break other.cloned(),
        }
    };
    let latency = t.elapsed();
    match next {
        Some(FeedFrame::Change(c)) => {
            assert_eq!((c.seq, c.op, c.subject), (3, ChangeOp::Port, Subject::Csi(csi(N))));
        }
        other => panic!("{other:?}"),
    }
    eprintln!("commit → feed frame at the subscriber: {latency:?}");
    drop(body);
    // Resume after a reconnect: only what came after seq 3.
    let (st, body4) = live.provision(&msp, Provision::RemoveEntry { csi: csi(N), provider: name("provider-a.example") }).await;
    assert_eq!(st, 200, "{body4}");
    let (_, mut body) = resolver.get_stream(&live.ep("/lost"), &name("dp.de.example"), "/feed?since=3").await.unwrap();
    let mut buf = String::new();
    let got = frames(&mut body, &mut buf, 1, Duration::from_secs(5)).await;
    assert!(matches!(&got[..], [FeedFrame::Change(c)] if c.seq == 4), "{got:?}");
    drop(body);
    // Below retention: resync to the head, then live frames.
    live.core.store().prune(1, t0()).await.unwrap();
    let (_, mut body) = resolver.get_stream(&live.ep("/lost"), &name("dp.de.example"), "/feed?since=1").await.unwrap();
    let mut buf = String::new();
    let got = frames(&mut body, &mut buf, 1, Duration::from_secs(5)).await;
    assert!(matches!(&got[..], [FeedFrame::Resync { seq: 4, .. }]), "{got:?}");
    // Without since: from the head on (nothing old, the next change only).
    let (_, mut body) = resolver.get_stream(&live.ep("/lost"), &name("dp.de.example"), "/feed").await.unwrap();
    let mut buf = String::new();
    assert_eq!(live.provision(&csip, Provision::Release { csi: csi(N) }).await.0, 403);
    let tnsp_b = live.client(Some((Role::Csip, "tnsp-b.de.example", &["+4930"])));
    assert_eq!(live.provision(&tnsp_b, Provision::Release { csi: csi(N) }).await.0, 200);
    let got = loop {
        let f = frames(&mut body, &mut buf, 1, Duration::from_secs(5)).await;
        if !matches!(f.first(), Some(FeedFrame::Heartbeat { .. })) {
            break f;
        }
    };
    assert!(matches!(&got[..], [FeedFrame::Change(c)] if c.seq == 5 && c.op == ChangeOp::Release), "{got:?}");
    drop(body);
    let a = resolver.get(&live.ep("/lost"), &name("dp.de.example"), "/feed?since=abc", &[]).await;
    assert_eq!(a.unwrap().status, 400);
}

/// Posts a raw LoST body; (status, Retry-After header, body).
async fn post_raw(live: &Live, c: &Client, body: &str) -> (u16, Option<String>, String) {
    let a = c.post_lost(&live.ep("/lost"), &name("dp.de.example"), Bytes::from(body.to_owned())).await.unwrap();
    let ra = a.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (a.status, ra, String::from_utf8(a.body.to_vec()).unwrap())
}

fn retry_after_in_body(body: &str) -> Option<u32> {
    match Response::decode(body.as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap() {
        Response::Errors(e) => e.list.get(ErrorKind::Forbidden).and_then(|i| i.retry_after),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_enumeration_budget() {
    let live = start(LimitSettings { rate: 0.001, burst: 12.0, miss_budget: 3, miss_window: 3600 }).await;
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let msp = live.client(Some((Role::Msp, "provider-a.example", &[])));
    assert_eq!(live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await.0, 200);
    assert_eq!(live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.0, 200);
    let resolver = live.client(Some((Role::Resolver, "resolver.carrier.example", &[])));
    let mut docs = Vec::new();
    // The client's address book: one number found, one missed.
    let (st, r, _) = live.find(&resolver, q(N)).await;
    assert!(st == 200 && matches!(r, Response::Found(_)));
    // Three distinct unknown numbers are answered notFound (the budget)...
    for i in 0..3 {
        let (st, r, _) = live.find(&resolver, q(&format!("tel:+491511234567{i}"))).await;
        assert_eq!(st, 200);
        assert!(matches!(r, Response::Errors(ref e) if e.kind() == Some(ErrorKind::NotFound)));
    }
    // ...the fourth is refused: HTTP 200 (what LoST clients read) with a
    // <forbidden> carrying <sp:retryAfter>, and the Retry-After header.
    let (st, ra, body) = post_raw(&live, &resolver, &Request::FindService(q("tel:+4915112345679")).encode()).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(errors_kind(&body), ErrorKind::Forbidden);
    let secs = retry_after_in_body(&body).expect("sp:retryAfter inside <forbidden>");
    assert_eq!(ra, Some(secs.to_string()));
    assert!(body.contains("<sp:retryAfter") && body.find("<forbidden") < body.find("<sp:retryAfter"), "{body}");
    docs.push(("budget".into(), body));
    // The scan is stopped, the address book is not: the known number and
    // an already-missed one are still answered as before.
    let (st, r, _) = live.find(&resolver, q(N)).await;
    assert!(st == 200 && matches!(r, Response::Found(_)), "{r:?}");
    let (_, r, _) = live.find(&resolver, q("tel:+4915112345670")).await;
    assert!(matches!(r, Response::Errors(ref e) if e.kind() == Some(ErrorKind::NotFound)), "{r:?}");
    // The query bucket (12) runs dry too: the same 200 + forbidden.
    let mut limited = None;
    for _ in 0..12 {
        let (st, ra, body) = post_raw(&live, &resolver, &Request::FindService(q(N)).encode()).await;
        assert_eq!(st, 200);
        if ra.is_some() {
            limited = Some((ra, body));
            break;
        }
    }
    let (ra, body) = limited.expect("the bucket never ran dry");
    assert_eq!(errors_kind(&body), ErrorKind::Forbidden);
    assert_eq!(ra, retry_after_in_body(&body).map(|s| s.to_string()));
    docs.push(("rate".into(), body));
    // Another client is unaffected.
    let other = live.client(Some((Role::Resolver, "resolver.other.example", &[])));
    let (st, _, _) = live.find(&other, q(N)).await;
    assert_eq!(st, 200);
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
}

const RFC5222_GEODETIC_POLICE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<findService xmlns="urn:ietf:params:xml:ns:lost1" xmlns:p2="http://www.opengis.net/gml" serviceBoundary="value" recursive="true">
  <location id="6020688f1ce1896d" profile="geodetic-2d">
    <p2:Point id="point1" srsName="urn:ogc:def:crs:EPSG::4326">
      <p2:pos>37.775 -122.422</p2:pos>
    </p2:Point>
  </location>
  <service>urn:service:sos.police</service>
</findService>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applicable_error_list_services_and_echoes() {
    let live = start(generous()).await;
    let anonymous = live.client(None);
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let msp = live.client(Some((Role::Msp, "provider-a.example", &[])));
    let mut docs = Vec::new();
    // RFC 5222's example request: both errors in one <errors>.
    let (st, _, body) = post_raw(&live, &anonymous, RFC5222_GEODETIC_POLICE).await;
    assert_eq!(st, 200);
    let Response::Errors(e) = Response::decode(body.as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap() else { panic!("{body}") };
    let kinds: Vec<ErrorKind> = e.list.issues().iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [ErrorKind::LocationProfileUnrecognized, ErrorKind::ServiceNotImplemented], "{body}");
    docs.push(("geodetic sos.police".into(), body));
    // listServices follows <service> (RFC 5222 §10).
    let ls = |s: Option<&str>| Request::ListServices(signpost_schemas::ListServices { service: s.map(|s| signpost_schemas::Uri::parse(s).unwrap()), path: None }).encode();
    let (_, _, body) = post_raw(&live, &anonymous, &ls(Some("urn:service:sos"))).await;
    assert_eq!(errors_kind(&body), ErrorKind::ServiceNotImplemented, "{body}");
    assert!(!body.contains("urn:service:mimi</serviceList>"));
    docs.push(("list sos".into(), body));
    let (_, _, body) = post_raw(&live, &anonymous, &ls(Some("urn:service:mimi"))).await;
    let r = Response::decode(body.as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap();
    assert!(matches!(&r, Response::Services(s) if s.services.is_empty()), "{body}");
    docs.push(("list mimi".into(), body));
    let (_, _, body) = post_raw(&live, &anonymous, &ls(None)).await;
    let r = Response::decode(body.as_bytes(), &signpost_schemas::Limits::MESSAGE).unwrap();
    assert!(matches!(&r, Response::Services(s) if s.services.iter().map(|u| u.as_str()).collect::<Vec<_>>() == ["urn:service:mimi"]), "{body}");
    docs.push(("list all".into(), body));
    // NENA i3 conformance echoes: the request's <service> in every mapping
    // and locationUsed naming the location that was used (here the second).
    assert_eq!(live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await.0, 200);
    assert_eq!(live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.0, 200);
    let other_msp = live.client(Some((Role::Msp, "provider-b.example", &[])));
    assert_eq!(live.provision(&other_msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-b.example", false) }).await.0, 200);
    let mut f = q(N);
    f.locations = vec![
        signpost_schemas::Location::Other { id: "geo-1".into(), profile: Some("geodetic-2d".into()) },
        signpost_schemas::Location::Csi { id: "loc-7".into(), csi: csi(N) },
    ];
    let (st, r, body) = live.find(&anonymous, f).await;
    assert_eq!(st, 200);
    let Response::Found(found) = &r else { panic!("{body}") };
    assert_eq!(found.mappings.len(), 2);
    assert!(found.mappings.iter().all(|m| m.service.as_ref().map(|u| u.as_str()) == Some("urn:service:mimi")), "{body}");
    assert_eq!(found.location_used.as_deref(), Some("loc-7"));
    assert!(body.contains(r#"<locationUsed id="loc-7"/>"#), "{body}");
    docs.push(("echoes".into(), body));
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
}

async fn changes(live: &Live) -> Vec<signpost_schemas::sp::Change> {
    match live.core.store().changes_since(0, 1000).await.unwrap() {
        signpost_authority::store::FeedPage::Changes(v) => v,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_assign_succeeds_with_the_same_epoch_and_one_change() {
    let live = start(generous()).await;
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let (st, first) = live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await;
    assert_eq!(st, 200, "{first}");
    // The acknowledgement was lost; the CSIP retries.
    let (st, again) = live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await;
    assert_eq!(st, 200, "{again}");
    let (a, b) = (ProvisionResult::decode(first.as_bytes()).unwrap(), ProvisionResult::decode(again.as_bytes()).unwrap());
    assert_eq!((a.epoch, a.affected), (b.epoch, 1));
    assert_eq!((b.affected, b.seq), (0, a.seq), "the repeat commits nothing");
    let c = changes(&live).await;
    assert_eq!(c.iter().filter(|c| c.op == ChangeOp::Assign).count(), 1, "{c:?}");
    // Not a repeat: another CSIP, or an admin assigning it elsewhere.
    let other = live.client(Some((Role::Csip, "tnsp-b.de.example", &["+4915"])));
    assert_eq!(live.provision(&other, Provision::Assign { csi: csi(N), tnsp: None }).await.0, 403);
    let admin = live.client(Some((Role::Admin, "admin.dp.de.example", &["+49"])));
    assert_eq!(live.provision(&admin, Provision::Assign { csi: csi(N), tnsp: Some(name("tnsp-b.de.example")) }).await.0, 409);
    // A repeated range (exactly) succeeds and commits nothing.
    let range = Provision::AssignRange { first: signpost_schemas::E164::from_digits("4915112340000").unwrap(), count: 5, tnsp: None };
    let (st, r1) = live.provision(&csip, range.clone()).await;
    assert_eq!((st, ProvisionResult::decode(r1.as_bytes()).unwrap().affected), (200, 5), "{r1}");
    let (st, r2) = live.provision(&csip, range).await;
    assert_eq!((st, ProvisionResult::decode(r2.as_bytes()).unwrap().affected), (200, 0), "{r2}");
    assert_eq!(changes(&live).await.len(), 6);
    // The admin repeating the assignment as it is: success, no change.
    let (st, body) = live.provision(&admin, Provision::Assign { csi: csi(N), tnsp: Some(name("tnsp-a.de.example")) }).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(changes(&live).await.len(), 6);
    assert_eq!(common::xmllint(&common::sp_rng(), &[("first".into(), first), ("again".into(), again), ("admin".into(), body)]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_is_provisioned_answered_signed_and_cleared_by_release() {
    let live = start(generous()).await;
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let msp = live.client(Some((Role::Msp, "provider-a.example", &[])));
    let admin = live.client(Some((Role::Admin, "admin.dp.de.example", &["+49"])));
    let anonymous = live.client(None);
    let mut docs = Vec::new();
    let mut sp_docs = Vec::new();
    // Not assigned: nothing to opt out.
    assert_eq!(live.provision(&csip, Provision::OptOut { csi: csi(N) }).await.0, 409);
    assert_eq!(live.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await.0, 200);
    assert_eq!(live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.0, 200);
    // An MSP may not opt a number out; the CSIP serving it may.
    assert_eq!(live.provision(&msp, Provision::OptOut { csi: csi(N) }).await.0, 403);
    let (st, body) = live.provision(&csip, Provision::OptOut { csi: csi(N) }).await;
    assert_eq!(st, 200, "{body}");
    sp_docs.push(("opt-out result".into(), body));
    sp_docs.push(("opt-out request".into(), Provision::OptOut { csi: csi(N) }.encode()));
    let opted = |r: &Response| match r {
        Response::Found(f) => {
            f.mappings.len() == 1
                && f.mappings[0].uris.is_empty()
                && matches!(f.mappings[0].body, signpost_schemas::MappingBody::NoProviders { reason: signpost_schemas::NoProvidersReason::OptedOut, .. })
        }
        _ => false,
    };
    let (st, r, body) = live.find(&anonymous, q(N)).await;
    assert!(st == 200 && opted(&r), "{body}");
    assert!(body.contains(r#"reason="opted-out""#), "{body}");
    let Response::Found(f) = &r else { unreachable!() };
    live.w.verifier().verify_mapping(&csi(N), &f.mappings[0], t0()).unwrap();
    docs.push(("opted out".into(), body));
    // Renewed near the end of its signature, it stays an opt-out.
    let until = f.mappings[0].signature.as_ref().unwrap().valid_until;
    live.w.clock.advance_millis((6 * DAY + DAY / 2) * 1000);
    let (_, r, body) = live.find(&anonymous, q(N)).await;
    assert!(opted(&r), "{body}");
    let Response::Found(f) = &r else { unreachable!() };
    assert!(f.mappings[0].signature.as_ref().unwrap().valid_until > until);
    live.w.verifier().verify_mapping(&csi(N), &f.mappings[0], signpost_schemas::Clock::now(&live.w.clock)).unwrap();
    // A repeat (by the admin) changes nothing; the change went to the feed once.
    let (st, body) = live.provision(&admin, Provision::OptOut { csi: csi(N) }).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(ProvisionResult::decode(body.as_bytes()).unwrap().affected, 0);
    assert_eq!(changes(&live).await.iter().filter(|c| c.op == ChangeOp::OptOut).count(), 1);
    // Opt-in (the admin may too): the entries answer again.
    let (st, body) = live.provision(&admin, Provision::OptIn { csi: csi(N) }).await;
    assert_eq!(st, 200, "{body}");
    let (_, r, _) = live.find(&anonymous, q(N)).await;
    assert!(matches!(&r, Response::Found(f) if f.mappings.len() == 1 && !f.mappings[0].uris.is_empty()), "{r:?}");
    // An assigned number with no entries answers the opt-out as well.
    let m = "tel:+4915112345600";
    assert_eq!(live.provision(&csip, Provision::Assign { csi: csi(m), tnsp: None }).await.0, 200);
    let (_, r, _) = live.find(&anonymous, q(m)).await;
    assert!(matches!(&r, Response::Errors(e) if e.kind() == Some(ErrorKind::NotFound)));
    assert_eq!(live.provision(&csip, Provision::OptOut { csi: csi(m) }).await.0, 200);
    let (_, r, body) = live.find(&anonymous, q(m)).await;
    assert!(opted(&r), "{body}");
    docs.push(("opted out, no entries".into(), body));
    // Release clears the opt-out (new epoch); a reassigned number starts
    // without it.
    let (st, body) = live.provision(&csip, Provision::Release { csi: csi(m) }).await;
    assert_eq!(st, 200, "{body}");
    let (_, r, _) = live.find(&anonymous, q(m)).await;
    assert!(matches!(&r, Response::Errors(e) if e.kind() == Some(ErrorKind::NotFound)));
    let (st, body) = live.provision(&csip, Provision::Assign { csi: csi(m), tnsp: None }).await;
    assert_eq!(st, 200);
    // Epochs: 1 assigned, 2 released, 3 reassigned.
    assert_eq!(ProvisionResult::decode(body.as_bytes()).unwrap().epoch.map(|e| e.0), Some(3));
    let (_, r, _) = live.find(&anonymous, q(m)).await;
    assert!(matches!(&r, Response::Errors(e) if e.kind() == Some(ErrorKind::NotFound)), "{r:?}");
    let feed: Vec<String> = changes(&live).await.into_iter().map(|c| FeedFrame::Change(c).encode()).collect();
    sp_docs.extend(feed.into_iter().enumerate().map(|(i, f)| (format!("feed {i}"), f)));
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
    assert_eq!(common::xmllint(&common::sp_rng(), &sp_docs), Vec::<String>::new());
}

/// Two frontends on one PostgreSQL database (a real server, see
/// `support::pg`): a change provisioned through A streams from B's
/// `/feed`, and B's answer carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_through_one_frontend_streams_from_the_other() {
    use signpost_authority::store::PgStore;
    let Some(db) = support::pg::fresh_db().await else { return };
    let w = Arc::new(World::new());
    let ca = Arc::new(w.authority_on(PgStore::open_config(db.config.clone(), 4, None).await.unwrap()).await);
    let cb = Arc::new(w.authority_on(PgStore::open_config(db.config.clone(), 4, None).await.unwrap()).await);
    let (_fa, _fb) = (ca.follow(Duration::from_secs(1)).unwrap(), cb.follow(Duration::from_secs(1)).unwrap());
    let a = serve_core(w.clone(), ca, generous()).await;
    let b = serve_core(w.clone(), cb, generous()).await;
    let resolver = b.client(Some((Role::Resolver, "resolver.carrier.example", &[])));
    let (st, mut body) = resolver.get_stream(&b.ep("/lost"), &name("dp.de.example"), "/feed?since=0").await.unwrap();
    assert_eq!(st, 200);
    let csip = a.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    let msp = a.client(Some((Role::Msp, "provider-a.example", &[])));
    assert_eq!(a.provision(&csip, Provision::Assign { csi: csi(N), tnsp: None }).await.0, 200);
    assert_eq!(a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.0, 200);
    let mut buf = String::new();
    let mut got = Vec::new();
    while got.len() < 2 {
        let f = frames(&mut body, &mut buf, 1, Duration::from_secs(30)).await;
        match f.first() {
            Some(FeedFrame::Heartbeat { .. }) => {}
            Some(FeedFrame::Change(c)) => got.push((c.seq, c.op, c.subject.clone())),
            other => panic!("B's feed: {other:?}"),
        }
    }
    assert_eq!(got, [(1, ChangeOp::Assign, Subject::Csi(csi(N))), (2, ChangeOp::EntryPut, Subject::Csi(csi(N)))]);
    let (st, r, _) = b.find(&b.client(None), q(N)).await;
    assert_eq!(st, 200);
    let Response::Found(f) = r else { panic!("{r:?}") };
    assert_eq!(f.feed_position, Some(2));
}

/// Repeated answers are sent from the answer cache (encoded once, checked
/// against the stored bytes): over the real server, each is the same bytes
/// as an answer made from the record at the same moment, for every sender
/// context (restricted entries, tags), with a path; a change committed
/// behind the core's back (as another frontend on a shared database would)
/// and a release show at once; near the end of a signature the answer
/// carries a renewed one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_are_the_bytes_of_fresh_ones_and_follow_the_store() {
    use signpost_authority::store::Commit;
    use signpost_schemas::lost::{Tag, Uri};
    use signpost_schemas::sp::Visibility;
    use signpost_schemas::{Path, SenderContext};
    let live = start(generous()).await;
    let core = live.core.clone();
    // Imported (unsigned, signed on demand): two entries, one tagged.
    let csv = format!(
        "{}\n+4915112345678,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/1,10,personal,msp-verified,false,User 1\n\
         +4915112345678,assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/1,20,,csip-attested,true,\n",
        signpost_authority::import::HEADER
    );
    core.import(signpost_authority::import::parse(&csv, None, 10).unwrap(), &|_| {}).await.unwrap();
    // Provisioned (signed at commit): an entry only provider-b's senders see.
    let msp = live.client(Some((Role::Msp, "provider-b.example", &[])));
    let mut hidden = entry("provider-b.example", false);
    hidden.priority = 5;
    hidden.tags = vec![Tag::parse("business").unwrap()];
    hidden.visibility = Visibility::Only(vec![name("provider-b.example")]);
    assert_eq!(live.provision(&msp, Provision::PutEntry { csi: csi(N), entry: hidden }).await.0, 200);
    let anonymous = live.client(None);
    let ctx = |sender: Option<&str>, tags: &[&str]| SenderContext { sender_provider: sender.map(name), tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect() };
    let mut asks = vec![q(N)];
    for c in [ctx(Some("provider-b.example"), &[]), ctx(Some("provider-c.example"), &[]), ctx(None, &["personal"]), ctx(Some("provider-b.example"), &["business"]), ctx(None, &["other"])] {
        let mut f = q(N);
        f.context = Some(c);
        asks.push(f);
    }
    let mut via = q(N);
    via.path = Some(Path::new(name("resolver.carrier.example")));
    asks.push(via);
    let expect = |r: Response| r.encode();
    for f in &asks {
        for round in 0..3 {
            let (st, _, body) = live.find(&anonymous, f.clone()).await;
            assert_eq!(st, 200);
            let fresh = expect(core.answer(f).await.unwrap());
            assert_eq!(body, fresh, "round {round} of {:?}", f.context);
        }
    }
    assert_eq!(core.answer_cache().stats().entries, 1);
    // The contexts chose different mappings: provider-b's entry first for
    // its senders, the tagged one alone for "personal", everything
    // untagged-or-matching otherwise.
    let uris = |r: &Response| match r {
        Response::Found(x) => x.mappings.iter().map(|m| m.uris.first().map(|u| u.as_str().to_owned()).unwrap_or_default()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(uris(&live.find(&anonymous, asks[1].clone()).await.1), ["mimi://provider-b.example/u/alice", "mimi://ott.example/u/1", "mimi://rcs.example/u/1"]);
    assert_eq!(uris(&live.find(&anonymous, asks[0].clone()).await.1), ["mimi://ott.example/u/1", "mimi://rcs.example/u/1"]);
    assert_eq!(uris(&live.find(&anonymous, asks[3].clone()).await.1), ["mimi://ott.example/u/1", "mimi://rcs.example/u/1"]);
    // Another frontend changes the record (straight into the store): the
    // next answer carries it.
    let mut rec = core.store().get(&csi(N)).await.unwrap().unwrap();
    let e = rec.entries.iter_mut().find(|e| e.record.provider == name("rcs.example")).unwrap();
    e.record.uris = vec![Uri::parse("mimi://rcs.example/u/moved").unwrap()];
    e.signed.uris = e.record.uris.clone();
    e.signed.signature = None;
    core.store().commit(Commit { records: vec![rec], time: signpost_schemas::Clock::now(&live.w.clock), ..Commit::default() }).await.unwrap();
    let (_, r, body) = live.find(&anonymous, q(N)).await;
    assert_eq!(uris(&r), ["mimi://ott.example/u/1", "mimi://rcs.example/u/moved"]);
    assert_eq!(body, expect(core.answer(&q(N)).await.unwrap()));
    let Response::Found(f) = &r else { unreachable!() };
    for m in &f.mappings {
        live.w.verifier().verify_mapping(&csi(N), m, t0()).unwrap();
    }
    // Near the end of the signatures (validity 7 days, renewed within 1):
    // renewed, still the bytes of a fresh answer, `expires` capped by them.
    live.w.clock.advance_millis((6 * DAY + DAY / 2) * 1000);
    let now = signpost_schemas::Clock::now(&live.w.clock);
    for _ in 0..2 {
        let (_, r, body) = live.find(&anonymous, q(N)).await;
        assert_eq!(body, expect(core.answer(&q(N)).await.unwrap()));
        let Response::Found(f) = &r else { panic!("{r:?}") };
        for m in &f.mappings {
            assert!(m.signature.as_ref().unwrap().valid_until >= now.plus_secs(DAY), "{m:?}");
            live.w.verifier().verify_mapping(&csi(N), m, now).unwrap();
        }
    }
    // Released: notFound at once, and the entry is dropped.
    let csip = live.client(Some((Role::Csip, "tnsp-a.de.example", &["+4915"])));
    assert_eq!(live.provision(&csip, Provision::Release { csi: csi(N) }).await.0, 200);
    let (_, r, _) = live.find(&anonymous, q(N)).await;
    assert!(matches!(&r, Response::Errors(e) if e.kind() == Some(ErrorKind::NotFound)), "{r:?}");
    assert_eq!(core.answer_cache().stats().entries, 0);
}
