//! The resolver's `/metrics` page, served by the admin plane from a live
//! resolver in the test topology, read by an independent parser (Python
//! `prometheus_client`): every family typed and documented, gauges typed
//! `gauge`, the per-authority feed-lag histogram with merged labels, the
//! root table's expiry and the feed link state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
#[path = "../../crates/net/tests/support/prometheus.rs"]
mod prom;

use std::io::{Read, Write};

use support::*;

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_parses_as_prometheus_text() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    let seq = t.put(&t.de, "tel:+4915112345678", "provider-a.example", "mimi://provider-a.example/u/new").await;
    let de = t.de.id();
    eventually("the change is applied", || r.resolver.feed_position(&de).is_some_and(|p| p >= seq)).await;
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = signpost_net::admin::Ready::new();
    ready.set();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = tokio::spawn(signpost_net::admin::serve(listener, r.running.metrics.clone(), ready, async {
        let _ = stopped.await;
    }));
    let page = tokio::task::spawn_blocking(move || get(addr, "/metrics")).await.unwrap();
    let _ = stop.send(());
    admin.await.unwrap();

    let Some(s) = prom::parse(&page) else { return };
    prom::expect(
        &s,
        &[
            ("signpost_requests_total", "counter"),
            ("signpost_resolver_cache_hits_total", "counter"),
            ("signpost_resolver_upstream_queries_total", "counter"),
            ("signpost_resolver_cache_entries", "gauge"),
            ("signpost_resolver_cache_bytes", "gauge"),
            ("signpost_resolver_feed_lag_seconds", "histogram"),
            ("signpost_resolver_feed_connected", "gauge"),
            ("signpost_root_table_expiry_seconds", "gauge"),
            ("signpost_root_table_serial", "gauge"),
        ],
    );
    let auth = format!("authority={}", de.as_str());
    assert_eq!(s.value("signpost_resolver_feed_connected", &auth), Some(1.0), "{page}");
    assert_eq!(s.value("signpost_resolver_feed_lag_seconds_bucket", &format!("{auth},le=+Inf")), Some(1.0), "{page}");
    assert_eq!(s.value("signpost_resolver_feed_lag_seconds_count", &auth), Some(1.0), "{page}");
    assert!(s.value("signpost_resolver_cache_entries", "").unwrap() >= 1.0, "{page}");
    assert!(s.value("signpost_root_table_expiry_seconds", "").unwrap() > 0.0, "{page}");
}
