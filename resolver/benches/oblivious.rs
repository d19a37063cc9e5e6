//! CPU per lookup, cached answers, over real TLS 1.3 on loopback: direct
//! `POST /lost`; Oblivious HTTP through a relay (CPU at the relay and at the
//! gateway, measured apart: each runs on its own runtime, whose threads
//! are told apart by name in /proc); bulk requests of 1, 100 and 1000
//! identifiers through OHTTP and directly. Also the gateway's HPKE work
//! alone (open + seal), in process.
//!
//! `cargo bench -p signpost-resolver --bench oblivious`; without `--bench`
//! (cargo test) a small smoke run. Every loop is bounded in count and time.
//!
//! For instruction counts under valgrind (`bench/oblivious-instructions.sh`):
//! `SIGNPOST_BENCH_SCENARIO=KEY SIGNPOST_BENCH_REQUESTS=N` runs only that
//! scenario, exactly N requests with no time bound, and nothing else after
//! the warm-up. KEY is `direct`, `ohttp`, `bulk-direct-S` or `bulk-ohttp-S`
//! (S = 1, 100 or 1000 identifiers per bulk).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mod.rs"]
mod support;
mod common;

use common::cpu_of;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_kit::Auth;
use signpost_net::Metrics;
use signpost_net::limits::{LimitSettings, Limiter};
use signpost_resolver::lookup::Via;
use signpost_resolver::ohttp::{self, Gateway, GatewayKey};
use signpost_resolver::relay::RelayService;
use signpost_resolver::service::ResolverService;
use signpost_schemas::lost::Endpoint;
use signpost_schemas::{Csi, FindService, Request};
use signpost_trust::Role;

/// Serves `svc` over TLS on 127.0.0.1:0 with room for a 1000-query bulk
/// (the kit's servers keep the default 64 KiB body limit); its address.
async fn serve_big<S: signpost_net::Service>(svc: Arc<S>, cert: &signpost_kit::Cert, anchor: &signpost_trust::TrustAnchor, auth: Auth) -> std::net::SocketAddr {
    let id = signpost_trust::tls::Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).unwrap();
    let tls = Arc::new(signpost_trust::tls::server_config(&id, anchor, auth).unwrap());
    let l = signpost_net::bind("127.0.0.1:0".parse().unwrap(), "lost").await.unwrap();
    let addr = l.local_addr().unwrap();
    let limits = signpost_net::Limits { max_body: 4 << 20, ..signpost_net::Limits::default() };
    let server = signpost_net::Server::new(svc, Some(tls), Some(anchor.clone()), limits, Arc::new(Metrics::new()), Arc::new(signpost_schemas::SystemClock));
    tokio::spawn(server.serve(l, std::future::pending::<()>()));
    addr
}

fn number(i: usize) -> String {
    format!("tel:+49151{i:08}")
}

/// An HTTPS client presenting `cert`, waiting up to `timeout` for an answer.
fn client(pki: &signpost_kit::Pki, cert: &signpost_kit::Cert, timeout: Duration) -> signpost_net::client::Client {
    let id = signpost_trust::tls::Identity::from_pem(cert.chain.as_bytes(), cert.key.as_bytes()).unwrap();
    signpost_net::client::Client::new(Arc::new(signpost_trust::tls::client_config(&pki.anchor, Some(&id)).unwrap()), timeout)
}

fn unlimited() -> Limiter {
    Limiter::new(LimitSettings { rate: 1e9, burst: 1e9, miss_budget: usize::MAX, miss_window: 60 })
}

struct Row {
    what: String,
    identifiers: u64,
    gateway_us: f64,
    relay_us: f64,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let only = std::env::var("SIGNPOST_BENCH_SCENARIO").ok();
    let fixed: Option<u64> = std::env::var("SIGNPOST_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok());
    // Under valgrind only a bulk of 1000 needs 1000 numbers (the warm-up
    // dominates the start-up); a cached answer costs the same either way.
    let population = match only.as_deref() {
        Some(k) => if k.ends_with("-1000") { 1000 } else { 100 },
        None => if full { 1000 } else { 100 },
    };
    // Under valgrind a bulk of 1000 takes seconds: the AP and the relay wait longer.
    let patience = if fixed.is_some() { Duration::from_secs(600) } else { Duration::from_secs(3) };
    let budget = if fixed.is_some() { Duration::from_secs(3600) } else if full { Duration::from_secs(10) } else { Duration::from_secs(1) };
    let srv = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("srv").enable_all().build().unwrap();
    let rly = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("rly").enable_all().build().unwrap();
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("load").enable_all().build().unwrap();

    // The topology, the resolver (also the gateway) and its population.
    let (t, node, resolver, gateway) = srv.block_on(async {
        let t = support::Topology::start().await;
        let csip = t.pki.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]).unwrap();
        let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]).unwrap();
        for i in 0..population {
            let n = Csi::from_wire(&number(i)).unwrap();
            t.de.core.provision(&csip, signpost_schemas::sp::Provision::Assign { csi: n.clone(), tnsp: None }).await.unwrap();
            t.de.core.provision(&msp, signpost_schemas::sp::Provision::PutEntry { csi: n, entry: support::entry("provider-a.example") }).await.unwrap();
        }
        let node = t.resolver(t.plan()).await;
        let gateway = Arc::new(Gateway::with_keys(vec![GatewayKey::from_private(1, &[7u8; 32]).unwrap()], 600));
        let svc = Arc::new(ResolverService::new(node.resolver.clone(), unlimited()).with_gateway(gateway.clone()).with_bulk(1000, usize::MAX / 2, 3600));
        let cert = t.pki.cert(Role::Resolver, support::RES, &[]).unwrap();
        let addr = serve_big(svc, &cert, &t.pki.anchor, Auth::Optional).await;
        (t, node, addr, gateway)
    });
    let relay = rly.block_on(async {
        let relay_cert = t.pki.cert(Role::Resolver, "relay.bench.example", &[]).unwrap();
        let gw = Endpoint::parse(&format!("https://{resolver}{}", ohttp::GATEWAY_PATH)).unwrap();
        let svc = Arc::new(RelayService::new(support::name("relay.bench.example"), client(&t.pki, &relay_cert, patience), gw, support::name(support::RES), unlimited()));
        serve_big(svc, &relay_cert, &t.pki.anchor, Auth::Required).await
    });
    let ap = client(&t.pki, &t.pki.cert(Role::Msp, "ap.bench.example", &[]).unwrap(), patience);
    let keys = gateway.key_configs();
    let direct_ep = Endpoint::parse(&format!("https://{resolver}/lost")).unwrap();
    let bulk_ep = Endpoint::parse(&format!("https://{resolver}/lost/bulk")).unwrap();
    let relay_ep = Endpoint::parse(&format!("https://{relay}/relay")).unwrap();
    let via = Via::Relay { relay: relay_ep.clone(), relay_id: support::name("relay.bench.example"), keys: keys.clone() };
    let bodies: Vec<String> = (0..population).map(|i| Request::FindService(FindService::for_csi(Csi::from_wire(&number(i)).unwrap(), true)).encode()).collect();
    let rid = support::name(support::RES);
    let relay_id = support::name("relay.bench.example");

    // Warm the cache (and the connections).
    load.block_on(async {
        for b in &bodies {
            let a = ap.post_lost(&direct_ep, &rid, Bytes::from(b.clone())).await.unwrap();
            assert_eq!(a.status, 200);
        }
    });

    let mut rows = Vec::new();
    // Runs `$body` (an async block, with `$i` the request number) until
    // `$max` requests or the time budget; CPU per identifier at each side.
    // With SIGNPOST_BENCH_SCENARIO, only the scenario `$key`, for exactly
    // SIGNPOST_BENCH_REQUESTS requests.
    macro_rules! measure {
        ($key:expr, $what:expr, $per:expr, $max:expr, |$i:ident| $body:expr) => {{
          if only.as_deref().is_none_or(|k| k == $key) {
            let max = fixed.unwrap_or($max);
            let (g0, r0) = (cpu_of("srv"), cpu_of("rly"));
            let start = Instant::now();
            let mut n = 0u64;
            load.block_on(async {
                while n < max && start.elapsed() < budget {
                    let $i = n;
                    $body.await;
                    n += 1;
                }
            });
            let ids = n * $per;
            let (g, r) = (cpu_of("srv") - g0, cpu_of("rly") - r0);
            rows.push(Row { what: $what, identifiers: ids, gateway_us: g * 1e6 / ids.max(1) as f64, relay_us: r * 1e6 / ids.max(1) as f64 });
          }
        }};
    }

    let max = if full { 20_000u64 } else { 200 };
    measure!("direct", "direct POST /lost (cached)".to_owned(), 1, max, |i| async {
        let a = ap.post_lost(&direct_ep, &rid, Bytes::from(bodies[i as usize % bodies.len()].clone())).await.unwrap();
        assert_eq!(a.status, 200);
    });
    measure!("ohttp", "OHTTP via relay, one lookup (cached)".to_owned(), 1, max, |i| async {
        let inner = ohttp::encode_request("resolver", "/lost", signpost_schemas::lost::CONTENT_TYPE, bodies[i as usize % bodies.len()].as_bytes()).unwrap();
        let s = ohttp::seal(&keys, &inner).unwrap();
        let a = ap.raw(&relay_ep, &relay_id, signpost_net::hyper::Method::POST, ohttp::REQUEST_CONTENT_TYPE, Bytes::from(s.body.clone())).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(ohttp::decode_response(&s.open(&a.body).unwrap()).unwrap().status, 200);
    });
    for size in [1usize, 100, 1000] {
        let size = size.min(population);
        let doc = signpost_resolver::bulk::wrap(signpost_resolver::bulk::REQUEST_ROOT, bodies.iter().take(size).map(|b| b.as_bytes()));
        let reps = (max / size as u64).max(3);
        let inner = ohttp::encode_request("resolver", signpost_resolver::bulk::BULK_PATH, signpost_resolver::bulk::CONTENT_TYPE, &doc).unwrap();
        measure!(format!("bulk-ohttp-{size}").as_str(), format!("OHTTP via relay, bulk of {size} (cached)"), size as u64, reps, |_i| async {
            let s = ohttp::seal(&keys, &inner).unwrap();
            let a = ap.raw(&relay_ep, &relay_id, signpost_net::hyper::Method::POST, ohttp::REQUEST_CONTENT_TYPE, Bytes::from(s.body.clone())).await.unwrap();
            assert_eq!(a.status, 200);
            let r = ohttp::decode_response(&s.open(&a.body).unwrap()).unwrap();
            assert_eq!(r.status, 200);
        });
        let doc = Bytes::from(doc);
        measure!(format!("bulk-direct-{size}").as_str(), format!("direct POST /lost/bulk, bulk of {size} (cached)"), size as u64, reps, |_i| async {
            let a = ap.raw(&bulk_ep, &rid, signpost_net::hyper::Method::POST, signpost_resolver::bulk::CONTENT_TYPE, doc.clone()).await.unwrap();
            assert_eq!(a.status, 200);
        });
    }
    if only.is_some() {
        for r in &rows {
            println!("{}: {} identifiers", r.what, r.identifiers);
        }
        assert!(!rows.is_empty(), "SIGNPOST_BENCH_SCENARIO={only:?}: no such scenario (direct, ohttp, bulk-direct-S, bulk-ohttp-S with S = 1, 100, 1000)");
        drop(node);
        return;
    }
    // The full client path once, as a check that the bench answers are
    // real: verified through the relay.
    load.block_on(async {
        let l = signpost_resolver::lookup::lookup_via(&ap, &via, &t.pki.anchor, &Csi::from_wire(&number(0)).unwrap(), None).await.unwrap();
        assert!(l.verified.iter().all(Result::is_ok));
    });

    // The gateway's HPKE work alone: open + seal, in process.
    let g = Gateway::with_keys(vec![GatewayKey::from_private(1, &[7u8; 32]).unwrap()], 600);
    let inner = ohttp::encode_request("resolver", "/lost", signpost_schemas::lost::CONTENT_TYPE, bodies[0].as_bytes()).unwrap();
    let n = if full { 5000 } else { 50 };
    let sealed: Vec<_> = (0..n).map(|_| ohttp::seal(&keys, &inner).unwrap()).collect();
    let answer = vec![0u8; 1500];
    let start = Instant::now();
    for (i, s) in sealed.iter().enumerate() {
        let (_, opened) = g.open(&s.body, i as u64).unwrap();
        let _ = opened.seal(&answer).unwrap();
    }
    let hpke_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;

    println!("{:<46} {:>11} {:>16} {:>14}", "scenario", "identifiers", "gateway µs/id", "relay µs/id");
    for r in &rows {
        println!("{:<46} {:>11} {:>16.1} {:>14.1}", r.what, r.identifiers, r.gateway_us, r.relay_us);
    }
    println!("gateway HPKE open + seal alone (X25519, AES-128-GCM, 1.5 kB answer): {hpke_us:.1} µs per request ({n} requests, wall time on one thread)");
    drop(node);
}
