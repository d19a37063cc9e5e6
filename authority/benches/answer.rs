//! Authority costs on this machine: import throughput (records stored
//! unsigned) and the answer path (the first answer of a number signs it,
//! later ones copy the cached signature): store read, preference filter,
//! response build and encode, in-process over a real redb store.
//!
//! `cargo bench -p signpost-authority --bench answer` runs 20,000
//! identifiers and 200,000 answers; without `--bench` (cargo test) a small
//! smoke run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use signpost_authority::core::Authority;
use signpost_authority::import::ImportItem;
use signpost_authority::store::RedbStore;
use signpost_schemas::lost::{Assurance, DisplayName, Uri};
use signpost_schemas::sp::{EntryRecord, Visibility};
use signpost_schemas::{Clock, Csi, FindService, Name, Response, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::sign::Signer;
use signpost_trust::{Role, ScopeEntry};

fn entry(p: &str, i: u64) -> EntryRecord {
    EntryRecord {
        provider: Name::parse(p).unwrap(),
        display_name: Some(DisplayName { text: format!("{p} app"), lang: "en".into() }),
        uris: vec![Uri::parse(&format!("mimi://{p}/u/{i}")).unwrap()],
        priority: 10,
        tags: vec![],
        assurance: Assurance::CsipAttested,
        bound_to_tnsp: false,
        visibility: Visibility::All,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (ids, answers) = if full { (20_000u64, 200_000u64) } else { (200, 1_000) };
    let now = SystemClock.now();
    let ca = Ca::generate("bench", Timestamp::from_secs(now.as_secs() - 3600), now.plus_secs(86_400 * 30)).unwrap();
    let i = ca
        .issue(&LeafRequest { role: Role::Authority, id: Name::parse("dp.de.example").unwrap(), scope: vec![ScopeEntry::parse("+49").unwrap()], not_before: Timestamp::from_secs(now.as_secs() - 3600), not_after: now.plus_secs(86_400 * 30), ip_sans: vec![] })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("a.redb")).unwrap();
    let settings = common::settings();
    let a = Arc::new(Authority::new(settings, store, Signer::from_pem(i.key_pem.as_bytes()).unwrap(), Arc::new(SystemClock)).await.unwrap());
    let items: Vec<ImportItem> = (0..ids)
        .map(|n| ImportItem {
            csi: Csi::from_wire(&format!("tel:+49151{:08}", n)).unwrap(),
            tnsp: Some(Name::parse("tnsp-a.de.example").unwrap()),
            entries: if n % 3 == 0 { vec![entry("ott.example", n), entry("rcs.example", n)] } else { vec![entry("ott.example", n)] },
            line: n as usize + 2,
        })
        .collect();
    let mappings: u64 = items.iter().map(|x| x.entries.len() as u64).sum();
    let t = Instant::now();
    a.import(items, &|_| {}).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!("import: {ids} identifiers, {mappings} mappings (+{ids} no-provider mappings), stored unsigned, in {secs:.2} s = {:.0} identifiers/s", ids as f64 / secs);
    let queries: Vec<FindService> = (0..1024u64).map(|n| FindService::for_csi(Csi::from_wire(&format!("tel:+49151{:08}", (n * 7919) % ids)).unwrap(), false)).collect();
    let mut out = String::with_capacity(4096);
    let t = Instant::now();
    let mut bytes = 0usize;
    for k in 0..answers {
        let r = a.answer(&queries[(k % 1024) as usize]).await.unwrap();
        assert!(matches!(r, Response::Found(_)));
        r.encode_into(&mut out);
        bytes += out.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "answer + encode: {answers} answers in {secs:.2} s = {:.0} answers/s, {:.2} µs each, {:.0} bytes average",
        answers as f64 / secs,
        secs * 1e6 / answers as f64,
        bytes as f64 / answers as f64
    );
}
