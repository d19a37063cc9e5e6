//! Root answers per second through the real server over TLS 1.3 + HTTP/2
//! with keep-alive, on loopback. Client and server run in this one process
//! on this machine's cores, so the figures are a floor for the server.
//!
//! `cargo bench -p signpost-root --bench load` runs the full measurement
//! (bounded: at most 400,000 requests or 10 s). Without `--bench` (as in
//! `cargo test --all-targets`) it runs a 200-request smoke test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_net::client::Client;
use signpost_net::{Limits, Metrics, Server, bind};
use signpost_root::{LoadedTable, RootService};
use signpost_schemas::lost::Endpoint;
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Clock, Csi, FindService, Name, Request, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::sign::{Signer, Verifier};
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use signpost_trust::{Role, TrustAnchor};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (Linux); 0 elsewhere.
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0) + f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (max_requests, max_time, conns, in_flight) =
        if full { (400_000u64, Duration::from_secs(10), 4usize, 32usize) } else { (200, Duration::from_secs(10), 2, 4) };

    let now = SystemClock.now();
    let ca = Ca::generate("bench CA", Timestamp::from_secs(now.as_secs() - 3600), now.plus_secs(86_400)).unwrap();
    let issue = |role, id: &str| {
        ca.issue(&LeafRequest { role, id: Name::parse(id).unwrap(), scope: vec![], not_before: Timestamp::from_secs(now.as_secs() - 3600), not_after: now.plus_secs(86_400), ip_sans: vec![] }).unwrap()
    };
    let root = issue(Role::Root, "root.bench.example");
    let client_id = issue(Role::Resolver, "resolver.bench.example");
    let anchor = TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let mut table = RootTable::decode(include_bytes!("../../schemas/samples/valid/sp/root-table.xml"), &signpost_schemas::Limits::DOCUMENT).unwrap();
    table.source = Name::parse("root.bench.example").unwrap();
    table.valid_until = now.plus_secs(86_400);
    Signer::from_pem(root.key_pem.as_bytes()).unwrap().sign_root_table(&mut table, now, now.plus_secs(86_400)).unwrap();
    let mut v = Verifier::new(anchor.clone());
    v.add_pem(root.chain_pem.as_bytes(), now).unwrap();
    let loaded = LoadedTable::load(table.encode().as_bytes(), &v, &table.source, now).unwrap();
    let svc = Arc::new(RootService::new(table.source.clone(), loaded));
    let server_id = Identity::from_pem(root.chain_pem.as_bytes(), root.key_pem.as_bytes()).unwrap();
    let tls = Arc::new(server_config(&server_id, &anchor, ClientAuth::Required).unwrap());
    let listener = bind("127.0.0.1:0".parse().unwrap(), "lost").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(svc, Some(tls), Some(anchor.clone()), Limits::default(), Arc::new(Metrics::new()), Arc::new(SystemClock));
    let server_task = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));

    let cid = Identity::from_pem(client_id.chain_pem.as_bytes(), client_id.key_pem.as_bytes()).unwrap();
    let ccfg = Arc::new(client_config(&anchor, Some(&cid)).unwrap());
    let ep = Endpoint::parse(&format!("https://{addr}/lost")).unwrap();
    let name = Name::parse("root.bench.example").unwrap();
    let bodies: Vec<Bytes> = (0..64u64)
        .map(|i| Bytes::from(Request::FindService(FindService::for_csi(Csi::from_wire(&format!("tel:+49151{:08}", i * 104_729 % 100_000_000)).unwrap(), false)).encode()))
        .collect();
    // Warm the connections.
    let clients: Vec<Arc<Client>> = (0..conns).map(|_| Arc::new(Client::new(ccfg.clone(), Duration::from_secs(5)))).collect();
    for c in &clients {
        assert_eq!(c.post_lost(&ep, &name, bodies[0].clone()).await.unwrap().status, 200);
    }
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    let mut tasks = Vec::new();
    for w in 0..conns * in_flight {
        let (c, ep, name, bodies, done, errors) = (clients[w % conns].clone(), ep.clone(), name.clone(), bodies.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while start.elapsed() < max_time && done.fetch_add(1, Ordering::Relaxed) < max_requests {
                i = (i + 1) % bodies.len();
                match c.post_lost(&ep, &name, bodies[i].clone()).await {
                    Ok(a) if a.status == 200 && a.body.starts_with(b"<?xml") => {}
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let n = done.load(Ordering::Relaxed).min(max_requests) as f64;
    let _ = tx.send(());
    let _ = server_task.await;
    assert_eq!(errors.load(Ordering::Relaxed), 0, "requests failed");
    println!(
        "root findService over TLS+HTTP/2 keep-alive: {n:.0} requests in {secs:.2} s = {:.0} req/s wall; \
         {:.0} req per process CPU-second (client and server together, {conns} connections x {in_flight} in flight)",
        n / secs,
        if cpu > 0.0 { n / cpu } else { 0.0 }
    );
}
