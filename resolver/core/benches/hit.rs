//! The state machine's share of a cached lookup: `handle_query` for an
//! identifier whose answer is cached, then `poll_answer`, over 1,000
//! cached identifiers (the driver's lock, HTTP, TLS and XML decoding are
//! not in it). Prints nanoseconds per hit; for instruction counts run it
//! under `valgrind --tool=callgrind --toggle-collect=*hit_loop*`.
//!
//! `cargo bench -p signpost-resolver-core --bench hit` (2,000,000 hits);
//! under `cargo test` a 10,000-hit smoke run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Instant;

use signpost_resolver_core::{Answer, Config, Resolver, Transmit, Upstream, Verify};
use signpost_schemas::lost::{Assurance, Cover, Delegation, Endpoint, Epoch, MappingBody, ProviderEntry, Uri};
use signpost_schemas::sp::RootTable;
use signpost_schemas::{AuthorityRef, Csi, E164Prefix, Expires, FindService, FindServiceResponse, KeyId, Mapping, Name, Path, Response, Timestamp};

struct Trusting;

impl Verify for Trusting {
    fn knows(&self, _: &KeyId) -> bool {
        true
    }
    fn add_certificate(&mut self, _: &[u8], _: Timestamp) -> Result<KeyId, String> {
        Err("none".into())
    }
    fn verify_mapping(&self, _: &Csi, _: &Mapping, _: Timestamp) -> Result<(), String> {
        Ok(())
    }
    fn verify_root_table(&self, _: &RootTable, _: Timestamp) -> Result<(), String> {
        Ok(())
    }
}

const N: usize = 1000;

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn setup(now: Timestamp) -> (Resolver<Trusting>, Vec<FindService>) {
    let de = AuthorityRef { id: name("dp.de.example"), endpoints: vec![Endpoint::parse("https://127.0.0.1:2/lost").unwrap()] };
    let root = AuthorityRef { id: name("root.example"), endpoints: vec![Endpoint::parse("https://127.0.0.1:1/lost").unwrap()] };
    let mut r = Resolver::new(Config::new(name("resolver.example"), root), Trusting, now);
    let d = Delegation { cover: Cover::Prefix(E164Prefix::parse("+49").unwrap()), lifetime: 3600, authorities: vec![de] };
    let t = RootTable { source: name("root.example"), serial: 1, valid_until: now.plus_secs(86_400), negative_lifetime: 60, delegations: vec![d], signature: None };
    r.load_root_table(t.encode().as_bytes(), now).unwrap();
    for i in 0..N {
        let csi = Csi::from_wire(&format!("tel:+4915112{i:06}")).unwrap();
        let f = FindService::for_csi(csi, true);
        r.handle_query(i as u64, f.clone(), now);
        let tx = loop {
            match r.poll_transmit() {
                Some(Transmit::Query { id, .. }) => break id,
                Some(_) => continue,
                None => panic!("no query"),
            }
        };
        let m = Mapping {
            expires: Expires::At(now.plus_secs(3600)),
            last_updated: now,
            source: name("dp.de.example"),
            source_id: format!("m{i}"),
            display_names: vec![],
            service: f.service.clone(),
            uris: vec![Uri::parse(&format!("mimi://provider-a.example/u/{i}")).unwrap()],
            body: MappingBody::Provider(ProviderEntry { id: name("provider-a.example"), priority: 10, tags: vec![], assurance: Assurance::MspVerified, epoch: Epoch(1) }),
            signature: None,
        };
        let mut path = Path::new(name("resolver.example"));
        path.push(name("dp.de.example"));
        let resp = Response::Found(FindServiceResponse { mappings: vec![m], warnings: vec![], path, location_used: Some("l1".into()), feed_position: Some(1) });
        r.handle_upstream(tx, Upstream::Answer(resp), now);
        while r.poll_answer().is_some() {}
        while r.poll_transmit().is_some() {}
    }
    (r, queries_of(N))
}

fn queries_of(n: usize) -> Vec<FindService> {
    (0..n).map(|i| FindService::for_csi(Csi::from_wire(&format!("tel:+4915112{i:06}")).unwrap(), true)).collect()
}

#[inline(never)]
fn hit_loop(r: &mut Resolver<Trusting>, qs: &[FindService], rounds: usize, now: Timestamp) -> usize {
    let mut bytes = 0;
    for k in 0..rounds {
        let f = qs[k % qs.len()].clone();
        r.handle_query(k as u64, f, now);
        match r.poll_answer() {
            Some((_, Answer::Encoded { body, .. })) => bytes += body.len(),
            other => panic!("not a hit: {other:?}"),
        }
    }
    bytes
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 2_000_000 } else { 10_000 };
    let now = Timestamp::from_secs(1_800_000_000);
    let (mut r, qs) = setup(now);
    hit_loop(&mut r, &qs, N, now);
    let t = Instant::now();
    let bytes = black_box(hit_loop(&mut r, &qs, rounds, now));
    let ns = t.elapsed().as_nanos() as f64 / rounds as f64;
    assert_eq!(r.stats().hits as usize, rounds + N);
    println!("state machine cache hit (clone of the decoded request + handle_query + poll_answer): {ns:.0} ns per hit over {N} cached identifiers ({} B per answer)", bytes / rounds);
}
