//! Cached lookups through the real resolver over TLS 1.3 + HTTP/2 + LoST
//! XML on loopback, with the resolver's own CPU time measured separately
//! from the load generator's (server and client run on separate runtimes
//! whose threads are told apart by name in /proc).
//!
//! `cargo bench -p signpost-resolver --bench cached`: at most 600,000
//! requests or 15 s; without `--bench` (cargo test) a 300-request smoke run.
//!
//! Serve mode, for an outside load generator (`bench/compare.sh`):
//! `SIGNPOST_BENCH_SERVE=DIR` starts the same topology with
//! `SIGNPOST_BENCH_NUMBERS` numbers (default 1000) provisioned, the
//! resolver's TLS 1.3 + HTTP/2 server taking clients without a certificate,
//! measures the cold path (each number asked once), the memory the warmed
//! cache takes and the push visibility of a provisioning change, writes
//! `DIR/port`, `DIR/body.xml` (a findService for a cached number),
//! `DIR/numbers.txt` (the E.164 numbers) and `DIR/stats.json`, then serves
//! until its standard input closes (or `SIGNPOST_BENCH_SERVE_SECS`,
//! default 3600, pass).
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
    if let Some(dir) = std::env::var_os("SIGNPOST_BENCH_SERVE") {
        serve(std::path::PathBuf::from(dir));
        return;
    }
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
            t.de.core.provision(&msp, Provision::PutEntry { csi: n, entry: bench_entry(&format!("mimi://provider-a.example/u/{i}")) }).await.unwrap();
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

/// The E.164 number of bench number `i` (digits only).
fn number(i: u64) -> String {
    format!("49151{:08}", i)
}

/// CPU seconds of this process's threads whose name starts with `prefix`,
/// from the scheduler's nanosecond run time (finer than `cpu_of`'s ticks).
fn run_time_of(prefix: &str) -> f64 {
    let mut ns = 0u64;
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        if std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().starts_with(prefix) {
            ns += std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default().split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// Resident set size of this process in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn serve(dir: std::path::PathBuf) {
    let n: u64 = std::env::var("SIGNPOST_BENCH_NUMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000).clamp(1, 1_000_000);
    let bound = Duration::from_secs(std::env::var("SIGNPOST_BENCH_SERVE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3600));
    // Root and authorities on their own runtime ("auth"), the resolver on
    // "srv", the in-process client (warm-up, probes) on "load".
    let auth = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("auth").enable_all().build().unwrap();
    let srv = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("srv").enable_all().build().unwrap();
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("load").enable_all().build().unwrap();
    let t = auth.block_on(async {
        let t = support::Topology::start().await;
        let csip = t.pki.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]).unwrap();
        let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]).unwrap();
        for i in 0..n {
            let c = Csi::from_wire(&format!("tel:+{}", number(i))).unwrap();
            t.de.core.provision(&csip, Provision::Assign { csi: c.clone(), tnsp: None }).await.unwrap();
            t.de.core.provision(&msp, Provision::PutEntry { csi: c, entry: bench_entry(&format!("mimi://provider-a.example/u/{i}")) }).await.unwrap();
        }
        t
    });
    let r = srv.block_on(t.resolver(t.plan()));
    let metrics = r.running.metrics.clone();
    let ep = r.running.endpoint().unwrap();
    let rid = Name::parse(support::RES).unwrap();
    let body = |c: &str| Bytes::from(Request::FindService(FindService::for_csi(Csi::from_wire(c).unwrap(), true)).encode());
    let stats = load.block_on(async {
        let c = t.ap();
        // One lookup first so the root table and the connections are in
        // place before the cold path is measured.
        c.post_lost(&ep, &rid, body("tel:+4930123456")).await.unwrap();
        let server_cpu = || run_time_of("srv") + run_time_of("auth");
        let (rss0, bytes0) = (rss(), support::metric(&metrics, "signpost_resolver_cache_bytes"));
        let (cpu0, start) = (server_cpu(), Instant::now());
        for i in 0..n {
            let a = c.post_lost(&ep, &rid, body(&format!("tel:+{}", number(i)))).await.unwrap();
            assert!(a.body.windows(7).any(|w| w == b"mapping"), "warm-up answer: {}", String::from_utf8_lossy(&a.body));
        }
        let (cold_cpu, cold_wall) = (server_cpu() - cpu0, start.elapsed().as_secs_f64());
        let (rss1, bytes1) = (rss(), support::metric(&metrics, "signpost_resolver_cache_bytes"));
        // Negative answers: numbers in +49 nobody has assigned.
        for i in 0..n {
            c.post_lost(&ep, &rid, body(&format!("tel:+49152{:08}", i))).await.unwrap();
        }
        let bytes2 = support::metric(&metrics, "signpost_resolver_cache_bytes");
        // Push visibility: time from a provisioning change at the authority
        // to the resolver's changed answer (5 samples).
        let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]).unwrap();
        let mut visible = Vec::new();
        for k in 0..5u64.min(n) {
            let csi = format!("tel:+{}", number(k));
            let uri = format!("mimi://provider-a.example/u/moved-{k}");
            let start = Instant::now();
            t.de.core.provision(&msp, Provision::PutEntry { csi: Csi::from_wire(&csi).unwrap(), entry: bench_entry(&uri) }).await.unwrap();
            while start.elapsed() < Duration::from_secs(30) {
                let a = c.post_lost(&ep, &rid, body(&csi)).await.unwrap();
                if a.body.windows(uri.len()).any(|w| w == uri.as_bytes()) {
                    visible.push(start.elapsed().as_secs_f64() * 1e3);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        serde_json::json!({
            "numbers": n,
            "cold_lookups": n,
            "cold_server_cpu_us_per_lookup": cold_cpu * 1e6 / n as f64,
            "cold_wall_us_per_lookup": cold_wall * 1e6 / n as f64,
            "rss_bytes_before_warm": rss0,
            "rss_bytes_after_warm": rss1,
            "rss_bytes_per_cached_answer": rss1.saturating_sub(rss0) as f64 / n as f64,
            "cache_bytes_per_cached_answer": bytes1.saturating_sub(bytes0) as f64 / n as f64,
            "cache_bytes_per_cached_negative": bytes2.saturating_sub(bytes1) as f64 / n as f64,
            "push_visibility_ms": visible,
            "mapping_ttl_s": 3600,
        })
    });
    let mid = number(n / 2);
    std::fs::write(dir.join("body.xml"), body(&format!("tel:+{mid}"))).unwrap();
    let list: String = (0..n).map(|i| number(i) + "\n").collect();
    std::fs::write(dir.join("numbers.txt"), list).unwrap();
    std::fs::write(dir.join("stats.json"), serde_json::to_string_pretty(&stats).unwrap()).unwrap();
    // The port file last: its presence says the server is ready.
    let tmp = dir.join("port.tmp");
    std::fs::write(&tmp, r.running.addr.port().to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("port")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(bound);
    drop(r);
    drop(t);
}

fn bench_entry(uri: &str) -> EntryRecord {
    EntryRecord {
        provider: Name::parse("provider-a.example").unwrap(),
        display_name: None,
        uris: vec![Uri::parse(uri).unwrap()],
        priority: 10,
        tags: vec![],
        assurance: Assurance::MspVerified,
        bound_to_tnsp: false,
        visibility: Visibility::All,
    }
}
