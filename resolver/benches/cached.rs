//! Cached lookups through the real resolver over TLS 1.3 + HTTP/2 + LoST
//! XML on loopback, with the resolver's own CPU time measured separately
//! from the load generator's (server and client run on separate runtimes
//! whose threads are told apart by name in /proc).
//!
//! `cargo bench -p signpost-resolver --bench cached`: at most 600,000
//! requests or 15 s; without `--bench` (cargo test) a 300-request smoke run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../tests/support/mod.rs"]
mod support;
mod common;

use common::cpu_of;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_schemas::lost::{Assurance, Uri};
use signpost_schemas::sp::{EntryRecord, Provision, Visibility};
use signpost_schemas::{Csi, FindService, Name, Request};
use signpost_trust::Role;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (mut max_requests, mut max_time, conns, in_flight) = if full { (600_000u64, Duration::from_secs(15), 4usize, 32usize) } else { (300, Duration::from_secs(10), 2, 4) };
    // A fixed request count with no time bound (for instruction counts
    // under valgrind): SIGNPOST_BENCH_REQUESTS=N.
    if let Some(n) = std::env::var("SIGNPOST_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()) {
        max_requests = n;
        max_time = Duration::from_secs(3600);
    }
    let srv = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("srv").enable_all().build().unwrap();
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("load").enable_all().build().unwrap();

    let (t, running) = srv.block_on(async {
        let t = support::Topology::start().await;
        let csip = t.pki.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]).unwrap();
        let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]).unwrap();
        for i in 0..64u64 {
            let n = Csi::from_wire(&format!("tel:+49151{:08}", i)).unwrap();
            t.de.core.provision(&csip, Provision::Assign { csi: n.clone(), tnsp: None }).await.unwrap();
            let e = EntryRecord {
                provider: Name::parse("provider-a.example").unwrap(),
                display_name: None,
                uris: vec![Uri::parse(&format!("mimi://provider-a.example/u/{i}")).unwrap()],
                priority: 10,
                tags: vec![],
                assurance: Assurance::MspVerified,
                bound_to_tnsp: false,
                visibility: Visibility::All,
            };
            t.de.core.provision(&msp, Provision::PutEntry { csi: n, entry: e }).await.unwrap();
        }
        let mut p = t.plan();
        p.client_auth = signpost_kit::Auth::Required;
        let r = t.resolver(p).await;
        (t, r)
    });
    let metrics = running.running.metrics.clone();
    let client_cert = t.pki.cert(Role::Msp, "ap.bench.example", &[]).unwrap();
    let bodies: Vec<Bytes> = (0..64u64).map(|i| Bytes::from(Request::FindService(FindService::for_csi(Csi::from_wire(&format!("tel:+49151{:08}", i)).unwrap(), true)).encode())).collect();
    let ep = running.running.endpoint().unwrap();
    let rid = Name::parse("resolver.carrier-x.example").unwrap();
    load.block_on(async {
        let clients: Vec<Arc<signpost_net::client::Client>> = (0..conns).map(|_| Arc::new(t.pki.client(Some(&client_cert)).unwrap())).collect();
        // Warm the cache (one miss per number) and the connections.
        for (i, b) in bodies.iter().enumerate() {
            let a = clients[i % conns].post_lost(&ep, &rid, b.clone()).await.unwrap();
            assert!(a.body.windows(7).any(|w| w == b"mapping"), "warm-up answer: {}", String::from_utf8_lossy(&a.body));
        }
        let hits0 = support::metric(&metrics, "signpost_resolver_cache_hits_total");
        let done = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let (srv0, load0, start) = (cpu_of("srv"), cpu_of("load"), Instant::now());
        let mut tasks = Vec::new();
        for w in 0..conns * in_flight {
            let (c, ep, rid, bodies, done, bad) = (clients[w % conns].clone(), ep.clone(), rid.clone(), bodies.clone(), done.clone(), bad.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while start.elapsed() < max_time && done.fetch_add(1, Ordering::Relaxed) < max_requests {
                    i = (i + 7) % bodies.len();
                    match c.post_lost(&ep, &rid, bodies[i].clone()).await {
                        Ok(a) if a.status == 200 => {}
                        _ => {
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let (srv_cpu, load_cpu) = (cpu_of("srv") - srv0, cpu_of("load") - load0);
        let n = done.load(Ordering::Relaxed).min(max_requests) as f64;
        let hits = support::metric(&metrics, "signpost_resolver_cache_hits_total") - hits0;
        assert_eq!(bad.load(Ordering::Relaxed), 0);
        println!(
            "resolver cached lookups over TLS+HTTP/2+LoST: {n:.0} requests in {secs:.2} s = {:.0} req/s wall; \
             resolver CPU {srv_cpu:.2} s → {:.0} req per resolver CPU-second; load generator CPU {load_cpu:.2} s; \
             cache hits {hits} ({conns} connections x {in_flight} in flight)",
            n / secs,
            if srv_cpu > 0.0 { n / srv_cpu } else { 0.0 }
        );
    });
    drop(t);
}
