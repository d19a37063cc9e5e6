//! The direct answer path over an existing (imported) redb store, for
//! instruction counts at scale: first answers (the mapping is signed on
//! demand) and repeated answers (its signature copied from the cache).
//!
//! ```sh
//! cargo bench -p signpost-authority --bench answer_store --no-run
//! valgrind --tool=callgrind <bench binary> --store a.redb --key key.pem \
//!     --numbers 10000000 --first 2000 --repeat 20000
//! ```
//!
//! The store must hold `tel:+49151nnnnnnnn` for n below `--numbers` (the
//! generator in the authority's import notes), imported by authority
//! `dp.de.example` with scope `+49`. It answers `--first` distinct numbers
//! spread over the store, then `--repeat` more answers cycling over the
//! same numbers (from the answer cache, as the LoST service answers);
//! each answer is encoded. Running it with `--first D
//! --repeat 0` and `--first D --repeat R` gives per-answer costs from the
//! differences (callgrind's totals). Without arguments (cargo test): a
//! small store of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use signpost_authority::core::Authority;
use signpost_authority::store::RedbStore;
use signpost_schemas::{Clock, Csi, FindService, Response, SystemClock, Timestamp};
use signpost_trust::sign::Signer;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1).cloned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let settings = common::settings();
    let _own;
    let (store, key, numbers) = match arg("--store") {
        Some(p) => (RedbStore::open_with_cache(std::path::Path::new(&p), None).unwrap(), std::fs::read_to_string(arg("--key").expect("--key PEM")).unwrap(), arg("--numbers").expect("--numbers N").parse::<u64>().unwrap()),
        None => {
            let now = SystemClock.now();
            let ca = signpost_trust::ca::Ca::generate("bench", Timestamp::from_secs(now.as_secs() - 3600), now.plus_secs(86_400)).unwrap();
            let i = ca
                .issue(&signpost_trust::ca::LeafRequest {
                    role: signpost_trust::Role::Authority,
                    id: settings.id.clone(),
                    scope: settings.scope.clone(),
                    not_before: Timestamp::from_secs(now.as_secs() - 3600),
                    not_after: now.plus_secs(86_400),
                    ip_sans: vec![],
                })
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let store = RedbStore::open(&dir.path().join("a.redb")).unwrap();
            _own = dir;
            (store, i.key_pem, 100)
        }
    };
    let first: u64 = arg("--first").map_or(50, |v| v.parse().unwrap());
    let repeat: u64 = arg("--repeat").map_or(500, |v| v.parse().unwrap());
    let a = Arc::new(Authority::new(settings, store, Signer::from_pem(key.as_bytes()).unwrap(), Arc::new(SystemClock)).await.unwrap());
    if arg("--store").is_none() {
        let mut text = format!("{}\n", signpost_authority::import::HEADER);
        for n in 0..numbers {
            text.push_str(&format!("+49151{n:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{n},10,personal,msp-verified,false,User {n}\n"));
        }
        a.import(signpost_authority::import::parse(&text, None, 10).unwrap(), &|_| {}).await.unwrap();
    }
    // Spread over the whole store (a prime stride).
    let queries: Vec<FindService> = (0..first.max(1)).map(|k| FindService::for_csi(Csi::from_wire(&format!("tel:+49151{:08}", (k * 7_919_201) % numbers)).unwrap(), false)).collect();
    let mut out = String::with_capacity(4096);
    // As the LoST service answers: from the answer cache when the stored
    // record is unchanged, else decoded, signed on demand and encoded.
    let mut answer = async |q: &FindService| match a.answer_wire(q).await.unwrap() {
        signpost_net::LostReply::Encoded { body, .. } => body.len(),
        signpost_net::LostReply::Response(r) => {
            assert!(matches!(r, Response::Found(_)), "{r:?}");
            out.clear();
            r.encode_into(&mut out);
            out.len()
        }
    };
    let t = Instant::now();
    let mut bytes = 0;
    for q in queries.iter().take(first as usize) {
        bytes += answer(q).await;
    }
    let t1 = t.elapsed().as_secs_f64();
    for k in 0..repeat {
        bytes += answer(&queries[(k % queries.len() as u64) as usize]).await;
    }
    let t2 = t.elapsed().as_secs_f64() - t1;
    let c = a.signature_cache().stats();
    let e = a.answer_cache().stats();
    println!(
        "{first} first answers in {t1:.3} s ({:.1} µs each), {repeat} repeated in {t2:.3} s ({:.1} µs each); {bytes} bytes encoded; signature cache {} entries, {} bytes; answer cache {} entries, {} bytes",
        t1 * 1e6 / first.max(1) as f64,
        t2 * 1e6 / repeat.max(1) as f64,
        c.entries,
        c.bytes,
        e.entries,
        e.bytes
    );
}
