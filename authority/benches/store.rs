//! The two stores under the authority core, same work on each: a bulk
//! import (records signed and written in one commit), provisioning commits
//! one after another (each a durable transaction with its feed event), and
//! on PostgreSQL the same commits from two frontends on one database at
//! once (four writers each). PostgreSQL is a throwaway local cluster with
//! `fsync = on` (`tests/support/pg.rs`; or `SIGNPOST_PG`), redb a file in a
//! temp dir; both on this machine's disk.
//!
//! `cargo bench -p signpost-authority --bench store`: 100,000 imported
//! numbers and 2,000 commits per run; without `--bench` a smoke run of
//! 200 and 20. Without a PostgreSQL server only redb runs (outside CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, dead_code)]

#[path = "common/mod.rs"]
mod common;

#[path = "../tests/support/pg.rs"]
mod pg;

use std::sync::Arc;
use std::time::Instant;

use signpost_authority::core::Authority;
use signpost_authority::import::ImportItem;
use signpost_authority::store::{PgStore, RedbStore, Store};
use signpost_schemas::sp::Provision;
use signpost_schemas::{Csi, SystemClock};
use signpost_trust::sign::Signer;
use signpost_trust::{Peer, Role};

struct Pki {
    key_pem: String,
    csip: Peer,
}

fn pki() -> Pki {
    // The shared kit's PKI (a CA made now, certificates for a week).
    let kit = signpost_kit::Pki::new().unwrap();
    let auth = kit.cert(Role::Authority, "dp.de.example", &["+49"]).unwrap();
    Pki { key_pem: auth.key, csip: kit.peer(Role::Csip, "tnsp-a.de.example", &["+49"]).unwrap() }
}

async fn core<S: Store>(p: &Pki, s: S) -> Arc<Authority<S>> {
    Arc::new(Authority::new(common::settings(), s, Signer::from_pem(p.key_pem.as_bytes()).unwrap(), Arc::new(SystemClock)).await.unwrap())
}

fn csi(block: u64, i: u64) -> Csi {
    Csi::from_wire(&format!("tel:+49{block}{i:08}")).unwrap()
}

fn items(n: u64) -> Vec<ImportItem> {
    let text: String = std::iter::once(format!("{}\n", signpost_authority::import::HEADER))
        .chain((0..n).map(|i| format!("+49151{i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,,msp-verified,false,\n")))
        .collect();
    signpost_authority::import::parse(&text, None, 50).unwrap()
}

/// Import, then sequential commits; returns (import/s, commits/s).
async fn run<S: Store>(p: &Pki, s: S, n: u64, commits: u64) -> (f64, f64) {
    let a = core(p, s).await;
    let t = Instant::now();
    a.import(items(n), &|_| {}).await.unwrap();
    let import = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..commits {
        a.provision(&p.csip, Provision::Assign { csi: csi(151, 40_000_000 + i), tnsp: None }).await.unwrap();
    }
    (import, commits as f64 / t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, commits) = if full { (100_000u64, 2_000u64) } else { (200, 20) };
    let p = pki();
    println!("store bench: import {n} numbers, then {commits} assign commits");

    let dir = tempfile::tempdir().unwrap();
    let (imp, com) = run(&p, RedbStore::open(&dir.path().join("a.redb")).unwrap(), n, commits).await;
    println!("redb      import {imp:>9.0} numbers/s   sequential commits {com:>7.0}/s");

    pg::durable();
    let Some(db) = pg::fresh_db().await else { return };
    let (imp, com) = run(&p, PgStore::open_config(db.config.clone(), 8, None).await.unwrap(), n, commits).await;
    println!("postgres  import {imp:>9.0} numbers/s   sequential commits {com:>7.0}/s");

    // Two frontends, four writers each, on one database.
    let fa = core(&p, PgStore::open_config(db.config.clone(), 8, None).await.unwrap()).await;
    let fb = core(&p, PgStore::open_config(db.config.clone(), 8, None).await.unwrap()).await;
    let writers = 8u64;
    let per = (commits / writers).max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let a = if w % 2 == 0 { fa.clone() } else { fb.clone() };
        let peer = p.csip.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                a.provision(&peer, Provision::Assign { csi: csi(151, 50_000_000 + w * 1_000_000 + i), tnsp: None }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = writers * per;
    println!("postgres  {total} commits from 2 frontends x 4 writers: {:>7.0}/s", total as f64 / t.elapsed().as_secs_f64());
}
