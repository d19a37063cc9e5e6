//! The resolver's control plane: `POST /v1/control` on the LoST listener,
//! admin-role client certificates only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use bytes::Bytes;
use signpost_trust::Role;
use support::*;

async fn post(c: &signpost_net::client::Client, ep: &signpost_schemas::lost::Endpoint, cmd: &'static str) -> signpost_net::client::Answer {
    c.raw(ep, &name(RES), signpost_net::hyper::Method::POST, "text/plain", Bytes::from_static(cmd.as_bytes())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_read_stats_and_dump_others_are_refused() {
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4915112345678", "+4915", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let (ap, mut docs) = (t.ap(), Docs::default());
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    let ep = signpost_schemas::lost::Endpoint::parse(&format!("https://{}/v1/control", r.running.addr)).unwrap();
    let admin = t.pki.client(Some(&t.pki.cert(Role::Admin, "ops.carrier-x.example", &[]).unwrap())).unwrap();
    let a = post(&admin, &ep, "stats").await;
    assert_eq!(a.status, 200);
    let stats = String::from_utf8_lossy(&a.body);
    assert!(stats.contains("entries 1\n") && stats.contains("root_table serial"), "{stats}");
    assert!(stats.contains(&format!("feed {} connected", t.de.id())), "{stats}");
    let a = post(&admin, &ep, "dump 10").await;
    assert_eq!(a.status, 200);
    assert!(String::from_utf8_lossy(&a.body).starts_with(&format!("tel:+4915112345678 found from {}", t.de.id())), "{}", String::from_utf8_lossy(&a.body));
    let a = post(&admin, &ep, "flush tel:+4915112345678").await;
    assert_eq!((a.status, String::from_utf8_lossy(&a.body).into_owned()), (200, "flushed 1 answers\n".to_owned()));
    assert_eq!(r.resolver.stats().entries, 0);
    ask(&ap, &r, "tel:+4915112345678", &mut docs).await;
    assert_eq!(post(&admin, &ep, "flush +49").await.status, 200);
    assert_eq!(r.resolver.stats().entries, 0);
    assert_eq!(post(&admin, &ep, "flush negatives").await.status, 200);
    assert_eq!(post(&admin, &ep, "flush all").await.status, 200);
    assert_eq!(post(&admin, &ep, "flush +4x").await.status, 400);
    assert_eq!(post(&admin, &ep, "frobnicate").await.status, 400);
    // An AP (MSP role) may not.
    assert_eq!(post(&ap, &ep, "stats").await.status, 403);
}
