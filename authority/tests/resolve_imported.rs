//! Numbers imported in bulk (stored unsigned, signed when first answered)
//! resolve through a real resolver, which verifies every mapping's
//! signature against the authority's certificate before it answers: the
//! root, the authority and the resolver on 127.0.0.1:0 over mTLS (the
//! shared kit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use bytes::Bytes;
use signpost_kit::{Live, Plan};
use signpost_schemas::{Csi, FindService, Name, Request, Response};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_number_signed_on_demand_verifies_at_a_resolver() {
    let mut live = Live::start(&Plan { authorities: vec![("+49".into(), "+49".into())], resolvers: 1, push: true, ttl: 3600, neg: 60, per_client_limit: 1e6, relay: false, observe: false }).await.unwrap();
    let mut text = format!("{}\n", signpost_authority::import::HEADER);
    for i in 0..20 {
        text.push_str(&format!("+49151{i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,,msp-verified,false,User {i}\n"));
    }
    let core = live.authorities[0].core.clone();
    core.import(signpost_authority::import::parse(&text, None, 10).unwrap(), &|_| {}).await.unwrap();
    let stored = signpost_authority::store::Store::get(core.store(), &Csi::from_wire("tel:+4915100000007").unwrap()).await.unwrap().unwrap();
    assert!(stored.entries[0].signed.signature.is_none(), "imported unsigned");
    let r = &live.resolvers[0];
    let client = live.pki.client(None).unwrap();
    for i in [7, 3, 7] {
        let uri = format!("tel:+49151{i:08}");
        let req = Request::FindService(FindService::for_csi(Csi::from_wire(&uri).unwrap(), false));
        let a = client.post_lost(&r.running.endpoint().unwrap(), &Name::parse(r.id.as_str()).unwrap(), Bytes::from(req.encode())).await.unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let resp = Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE).unwrap();
        let Response::Found(f) = &resp else { panic!("{resp:?}") };
        assert_eq!(f.mappings.len(), 1);
        assert_eq!(f.mappings[0].uris[0].as_str(), format!("mimi://ott.example/u/{i}"));
        assert!(f.mappings[0].signature.is_some());
        assert_eq!(f.path.vias().iter().map(Name::as_str).collect::<Vec<_>>(), [r.id.as_str(), "dp0.testbed.example"]);
    }
    assert!(core.signature_cache().stats().entries >= 2);
    live.stop().await;
}
