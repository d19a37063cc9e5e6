//! The authority over real TLS on 127.0.0.1:0, driven by real clients with
//! a certificate per role: provisioning and its refusals, signed answers,
//! the change feed (live invalidation, resume, heartbeat, resync), limits.
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

struct Live {
    w: World,
    addr: std::net::SocketAddr,
    core: Arc<signpost_authority::core::Authority<signpost_authority::store::RedbStore>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(rate: LimitSettings) -> Live {
    let w = World::new();
    let core = Arc::new(w.authority().await);
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

impl Live {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_and_enumeration_budget() {
    let live = start(LimitSettings { rate: 0.001, burst: 5.0, miss_budget: 3, miss_window: 3600 }).await;
    let resolver = live.client(Some((Role::Resolver, "resolver.carrier.example", &[])));
    // Three distinct unknown numbers are answered; the fourth is refused.
    for i in 0..3 {
        let (st, r, _) = live.find(&resolver, q(&format!("tel:+491511234567{i}"))).await;
        assert_eq!(st, 200);
        assert!(matches!(r, Response::Errors(ref e) if e.kind() == Some(ErrorKind::NotFound)));
    }
    let a = resolver.post_lost(&live.ep("/lost"), &name("dp.de.example"), Bytes::from(Request::FindService(q("tel:+4915112345679")).encode())).await.unwrap();
    assert_eq!(a.status, 429);
    assert!(a.headers.get("retry-after").is_some());
    assert_eq!(errors_kind(std::str::from_utf8(&a.body).unwrap()), ErrorKind::Forbidden);
    // The bucket (5 queries) is empty now too; another client is unaffected.
    let a = resolver.post_lost(&live.ep("/lost"), &name("dp.de.example"), Bytes::from(Request::FindService(q(N)).encode())).await.unwrap();
    assert_eq!(a.status, 429);
    let other = live.client(Some((Role::Resolver, "resolver.other.example", &[])));
    let (st, _, _) = live.find(&other, q(N)).await;
    assert_eq!(st, 200);
}
