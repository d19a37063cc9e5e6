//! A frontend answering from a PostgreSQL streaming standby (real servers:
//! a primary and a `pg_basebackup -R` standby from `support::pg`): it
//! opens without migrating (and says clearly when the primary has no
//! schema yet), answers what a frontend on the primary provisioned once
//! it is replayed, follows the head by polling, reports that it is a
//! standby and its replication lag, and refuses every write with a clear
//! reason instead of failing in the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use signpost_authority::core::ProvisionError;
use signpost_authority::store::{Checkpoint, Commit, PgStore, Store, pg::READ_ONLY};
use signpost_schemas::sp::Provision;
use signpost_schemas::{FindService, Response};
use signpost_trust::Role;
use support::*;

const N: &str = "tel:+4915112345678";

async fn open(url: &str) -> Result<PgStore, String> {
    let cfg: tokio_postgres::Config = url.parse().unwrap();
    PgStore::open_config(cfg, 2, None).await.map_err(|e| e.to_string())
}

/// The value of an unlabelled sample in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_on_a_standby_answers_reports_its_lag_and_refuses_writes() {
    let Some(pair) = tokio::task::spawn_blocking(pg::primary_and_standby).await.unwrap() else { return };
    // Nothing on the primary yet: the standby cannot be migrated, and says so.
    let e = open(&pair.standby).await.unwrap_err();
    assert!(e.contains("the standby has no Signpost schema yet: start a frontend on the primary first"), "{e}");

    let w = World::new();
    let primary = open(&pair.primary).await.unwrap();
    assert!(!primary.is_standby());
    let a = w.authority_on(primary.clone()).await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let msp = w.peer(Role::Msp, "provider-a.example", &[]);
    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    let r = a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.unwrap();

    // The schema reaches the standby by replication; the bound only keeps
    // a broken build from hanging CI (not a latency assertion).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let store = loop {
        match open(&pair.standby).await {
            Ok(s) => break s,
            Err(e) => assert!(std::time::Instant::now() < deadline, "the standby never got the schema: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(store.is_standby());
    let b = Arc::new(w.authority_on(store.clone()).await);
    // No LISTEN on a standby: the follower polls.
    let _follow = b.follow(Duration::from_millis(50)).unwrap();
    let mut h = b.head();
    tokio::time::timeout(Duration::from_secs(120), async {
        while *h.borrow_and_update() < r.seq {
            h.changed().await.unwrap();
        }
    })
    .await
    .expect("the standby's head never reached the primary's");
    let Response::Found(f) = b.answer(&FindService::for_csi(csi(N), false)).await.unwrap() else { panic!("not found on the standby") };
    assert_eq!(f.feed_position, Some(r.seq));
    w.verifier().verify_mapping(&csi(N), &f.mappings[0], t0()).unwrap();

    // Lag: known once a transaction was replayed (or 0, caught up).
    let lag = store.replication_lag().await.unwrap().expect("a lag once the standby replayed a commit");
    assert!(lag.is_finite() && lag >= 0.0, "{lag}");
    assert_eq!(primary.replication_lag().await.unwrap(), None);

    // Replay paused while the primary commits: the standby holds WAL it
    // has not replayed, and the lag is the age of its last replayed
    // commit (above 0); resumed, it is caught up again (0).
    let (admin, conn) = tokio_postgres::connect(&pair.standby, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute("SELECT pg_wal_replay_pause()").await.unwrap();
    let r2 = a.provision(&tnsp, Provision::Assign { csi: csi("tel:+4915112340000"), tnsp: None }).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !admin.query_one("SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()", &[]).await.unwrap().get::<_, bool>(0) {
        assert!(std::time::Instant::now() < deadline, "the standby never received the commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let behind = store.replication_lag().await.unwrap().unwrap();
    assert!(behind > 0.0, "{behind}");
    assert!(store.head().await.unwrap() < r2.seq);
    admin.batch_execute("SELECT pg_wal_replay_resume()").await.unwrap();
    while store.replication_lag().await.unwrap() != Some(0.0) {
        assert!(std::time::Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.head().await.unwrap(), r2.seq);

    // The metrics: standby 1 and a lag sample on B; standby 0 and no lag on A.
    let m = Arc::new(signpost_net::Metrics::new());
    let task = store.report_replication(&m, Duration::from_millis(20)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let page = loop {
        let page = m.render();
        if sample(&page, "signpost_store_replication_lag_seconds").is_some() {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "no lag sample: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    task.abort();
    assert_eq!(sample(&page, "signpost_store_standby"), Some(1.0), "{page}");
    assert!(sample(&page, "signpost_store_replication_lag_seconds").is_some_and(|v| v >= 0.0), "{page}");
    assert!(page.contains("# HELP signpost_store_replication_lag_seconds Seconds the authority's PostgreSQL standby is behind"), "{page}");
    let mp = Arc::new(signpost_net::Metrics::new());
    assert!(primary.report_replication(&mp, Duration::from_millis(20)).is_none());
    let page = mp.render();
    assert_eq!(sample(&page, "signpost_store_standby"), Some(0.0), "{page}");
    assert_eq!(sample(&page, "signpost_store_replication_lag_seconds"), None, "{page}");

    // Every write is refused with the reason, the record left as it was.
    let e = b.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", true) }).await.unwrap_err();
    assert!(matches!(&e, ProvisionError::Internal(m) if m.contains(READ_ONLY)), "{e:?}");
    assert_eq!(e.status(), 500);
    let e = store.prune(0, t0()).await.unwrap_err();
    assert!(e.message().contains(READ_ONLY), "{e}");
    let e = store.commit(Commit { checkpoint: Some(Checkpoint::Set(vec![1])), time: t0(), ..Commit::default() }).await.unwrap_err();
    assert!(e.message().contains(READ_ONLY), "{e}");
    assert_eq!(store.checkpoint().await.unwrap(), None);
    assert_eq!(store.get(&csi(N)).await.unwrap(), primary.get(&csi(N)).await.unwrap());
    assert!(!store.get(&csi(N)).await.unwrap().unwrap().entries[0].record.bound_to_tnsp);
    // The feed still serves, read-only.
    let signpost_authority::store::FeedPage::Changes(ch) = store.changes_since(0, 10).await.unwrap() else { panic!("feed gone") };
    assert_eq!(ch.last().map(|c| c.seq), Some(r2.seq));
}
