//! MIMI user identifiers (MUIs, `mymimi.example.com`) through the whole
//! hierarchy on 127.0.0.1 over mTLS: the root delegates the domain, the
//! authority answers for MUIs under it (a MUI under a subdomain reaches the
//! nearest delegated parent), the resolver caches the answer and drops it
//! when the authority's feed says it changed, and `signpost-resolver
//! lookup` takes the name as a person types it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
#[path = "../../schemas/tests/common/mod.rs"]
mod common;

use std::process::Command;

use signpost_kit::{AuthorityNode, AuthorityPlan, RootNode, delegation};
use signpost_schemas::sp::Provision;
use signpost_schemas::{Name, Response};
use signpost_trust::Role;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_signpost-resolver");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mui_resolves_through_the_root_is_cached_invalidated_and_looked_up() {
    let t = Topology::start().await;
    // An authority for example.com, delegated by a root of its own.
    let ex = AuthorityNode::start(&t.pki, &AuthorityPlan::new("dp.example.com", "example.com")).await.unwrap();
    let root = RootNode::start(&t.pki, "root.signpost.example", vec![delegation("example.com", ex.reference().unwrap(), 3600).unwrap()], 600, 10 * signpost_kit::DAY).await.unwrap();
    let csip = t.pki.peer(Role::Csip, "im.example.com", &["example.com"]).unwrap();
    for m in ["mui:mymimi.example.com", "mui:bob.eu.example.com"] {
        ex.core.provision(&csip, Provision::Assign { csi: csi(m), tnsp: None }).await.unwrap();
        let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]).unwrap();
        ex.core.provision(&msp, Provision::PutEntry { csi: csi(m), entry: entry("provider-a.example") }).await.unwrap();
    }
    // No preloaded root table: the referral comes from the root itself.
    let mut plan = t.plan();
    plan.preload = false;
    let r = signpost_kit::ResolverNode::start(&t.pki, &root, plan).await.unwrap();
    let (ap, mut docs) = (t.ap(), Docs::default());

    // Cold: root referral (the parent domain), then the authority.
    let a = ask(&ap, &r, "mui:mymimi.example.com", &mut docs).await;
    assert_eq!(providers(&a), ["provider-a.example"]);
    let Response::Found(f) = &a else { unreachable!() };
    assert_eq!(f.path.vias().iter().map(Name::as_str).collect::<Vec<_>>(), [RES, "dp.example.com"]);
    assert_eq!(upstream_ok(&r), 2, "root, then the authority");
    // A MUI under a subdomain: the nearest delegated parent (example.com,
    // with its subdomains) from the cached referral: one upstream query.
    assert_eq!(providers(&ask(&ap, &r, "mui:bob.eu.example.com", &mut docs).await), ["provider-a.example"]);
    assert_eq!(upstream_ok(&r), 3);
    // Cached.
    ask(&ap, &r, "mui:mymimi.example.com", &mut docs).await;
    assert_eq!(upstream_ok(&r), 3);
    // Changed at the authority: the feed evicts the cached answer.
    let seq = t.put(&ex, "mui:mymimi.example.com", "provider-a.example", "mimi://provider-a.example/u/new").await;
    let id = ex.id();
    eventually("the change is applied", || r.resolver.feed_position(&id).is_some_and(|p| p >= seq)).await;
    assert_eq!(uri(&ask(&ap, &r, "mui:mymimi.example.com", &mut docs).await), "mimi://provider-a.example/u/new");
    // Outside every delegation: notFound from the root.
    assert!(matches!(ask(&ap, &r, "mui:carol.other.example", &mut docs).await, Response::Errors(_)));
    assert_eq!(common::xmllint_lost(&docs.0), Vec::<String>::new());

    // The lookup CLI, the name typed as a person would.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, t.pki.ca_pem()).unwrap();
    let url = format!("https://{}/lost", r.running.addr);
    let o = tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(["lookup", "MyMimi.Example.COM.", "--resolver", &url, "--resolver-id", RES, "--ca", &ca.display().to_string()]).output().unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("provider-a.example") && out.contains("verified (dp.example.com signed)") && out.contains("mimi://provider-a.example/u/new"), "{out}");
}
