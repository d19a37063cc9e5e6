//! Invalidation latency: from a provisioning call (checks, durable commit)
//! to the change frame arriving at a subscriber over TLS + HTTP/2 on loopback
//! (the authority's half of "a port visible at every resolver in < 50 ms").
//!
//! `cargo bench -p signpost-authority --bench feed`: 2,000 ports with 4
//! subscribers; without `--bench` a 20-port smoke run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use signpost_authority::core::{Authority, Settings};
use signpost_authority::limits::{LimitSettings, Limiter};
use signpost_authority::service::{AuthorityService, FeedSettings};
use signpost_authority::store::RedbStore;
use signpost_net::client::Client;
use signpost_net::{Limits, Metrics, Server, bind};
use signpost_schemas::lost::Endpoint;
use signpost_schemas::sp::{FeedFrame, Provision};
use signpost_schemas::{Clock, Csi, Name, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::peer::{Usage, chain_from_pem, validate};
use signpost_trust::sign::Signer;
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use signpost_trust::{Role, ScopeEntry, TrustAnchor};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (ports, subscribers) = if full { (2_000usize, 4usize) } else { (20, 2) };
    let now = SystemClock.now();
    let ca = Ca::generate("bench", Timestamp::from_secs(now.as_secs() - 3600), now.plus_secs(86_400)).unwrap();
    let anchor = TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let issue = |role, id: &str, scope: &[&str]| {
        ca.issue(&LeafRequest {
            role,
            id: Name::parse(id).unwrap(),
            scope: scope.iter().map(|s| ScopeEntry::parse(s).unwrap()).collect(),
            not_before: Timestamp::from_secs(now.as_secs() - 3600),
            not_after: now.plus_secs(86_400),
            ip_sans: vec![],
        })
        .unwrap()
    };
    let auth = issue(Role::Authority, "dp.de.example", &["+49"]);
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings { id: Name::parse("dp.de.example").unwrap(), scope: vec![ScopeEntry::parse("+49").unwrap()], mapping_ttl: 3600, negative_ttl: 60, signature_validity: 86_400, renew_before: 3600, root: None };
    let core = Arc::new(Authority::new(settings, RedbStore::open(&dir.path().join("a.redb")).unwrap(), Signer::from_pem(auth.key_pem.as_bytes()).unwrap(), Arc::new(SystemClock)).await.unwrap());
    let svc = Arc::new(AuthorityService::new(
        core.clone(),
        Limiter::new(LimitSettings { rate: 1e6, burst: 1e6, miss_budget: 1_000_000, miss_window: 60 }),
        FeedSettings { heartbeat: Duration::from_secs(5), page: 512 },
        Bytes::from(auth.chain_pem.clone()),
        "k".into(),
        Arc::new(Metrics::new()),
    ));
    let id = Identity::from_pem(auth.chain_pem.as_bytes(), auth.key_pem.as_bytes()).unwrap();
    let l = bind("127.0.0.1:0".parse().unwrap(), "lost").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = Server::new(svc, Some(Arc::new(server_config(&id, &anchor, ClientAuth::Required).unwrap())), Some(anchor.clone()), Limits::default(), Arc::new(Metrics::new()), Arc::new(SystemClock));
    tokio::spawn(server.serve(l, std::future::pending()));

    let csip_cert = issue(Role::Csip, "tnsp-a.de.example", &["+49"]);
    let csip = validate(&anchor, &chain_from_pem(csip_cert.chain_pem.as_bytes()).unwrap(), now, Usage::Client).unwrap();
    let n = Csi::from_wire("tel:+4915112345678").unwrap();
    core.provision(&csip, Provision::Assign { csi: n.clone(), tnsp: None }).await.unwrap();

    let r = issue(Role::Resolver, "resolver.example", &[]);
    let rid = Identity::from_pem(r.chain_pem.as_bytes(), r.key_pem.as_bytes()).unwrap();
    let ep = Endpoint::parse(&format!("https://{addr}/lost")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, Instant)>();
    for s in 0..subscribers {
        let client = Client::new(Arc::new(client_config(&anchor, Some(&rid)).unwrap()), Duration::from_secs(5));
        let (st, mut body) = client.get_stream(&ep, &Name::parse("dp.de.example").unwrap(), "/feed?since=1").await.unwrap();
        assert_eq!(st, 200);
        let tx = tx.clone();
        tokio::spawn(async move {
            let _keep = client;
            let mut buf = String::new();
            while let Some(Ok(f)) = body.frame().await {
                let at = Instant::now();
                if let Ok(d) = f.into_data() {
                    buf.push_str(std::str::from_utf8(&d).unwrap());
                }
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    if let Ok(FeedFrame::Change(c)) = FeedFrame::decode(line.as_bytes()) {
                        let _ = tx.send((s, c.seq, at));
                    }
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = Vec::with_capacity(ports * subscribers);
    let tnsps = [Name::parse("tnsp-b.de.example").unwrap(), Name::parse("tnsp-a.de.example").unwrap()];
    let b = validate(&anchor, &chain_from_pem(issue(Role::Csip, "tnsp-b.de.example", &["+4930"]).chain_pem.as_bytes()).unwrap(), now, Usage::Client).unwrap();
    let start = Instant::now();
    for k in 0..ports {
        let who = if k % 2 == 0 { &csip } else { &b };
        // From the provisioning call (validation, durable commit with its
        // fsync, head notification) to the frame at each subscriber.
        let called = Instant::now();
        let res = core.provision(who, Provision::Port { csi: n.clone(), to: tnsps[k % 2].clone() }).await.unwrap();
        let mut seen = 0;
        while seen < subscribers {
            let (_, seq, at) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            if seq == res.seq {
                lat.push(at.saturating_duration_since(called));
                seen += 1;
            }
        }
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "provision call (incl. durable commit) → frame at {subscribers} subscribers, {ports} ports ({:.0} ports/s): p50 {:?}, p99 {:?}, max {:?}",
        ports as f64 / total.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );
}
