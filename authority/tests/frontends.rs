//! Several authority frontends on one PostgreSQL database (in-process, a
//! real server: `support::pg`): a change provisioned through one appears on
//! the feed of the other, whose head follows the database (LISTEN/NOTIFY,
//! a poll as the fallback); delegations follow too; a decision on a
//! record another frontend changed meanwhile is refused, not lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use signpost_authority::core::{Authority, ProvisionError};
use signpost_authority::store::{FeedPage, PgStore, Store};
use signpost_schemas::lost::{AuthorityRef, Cover, Delegation, Endpoint};
use signpost_schemas::sp::{ChangeOp, Provision, Subject};
use signpost_schemas::{E164Prefix, FindService, Name, Response};
use signpost_trust::Role;
use support::*;

const N: &str = "tel:+4915112345678";

/// Waits until `a`'s published feed head reaches `seq`. The bound only
/// keeps a broken build from hanging CI; it is not a latency assertion.
async fn head_reaches(a: &Authority<PgStore>, seq: u64) {
    let mut h = a.head();
    tokio::time::timeout(Duration::from_secs(120), async {
        while *h.borrow_and_update() < seq {
            h.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the head never reached {seq}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_frontend_reaches_the_feed_of_another() {
    let Some(db) = pg::fresh_db().await else { return };
    let w = World::new();
    let a = Arc::new(w.authority_on(PgStore::open_config(db.config.clone(), 4, None).await.unwrap()).await);
    let b = Arc::new(w.authority_on(PgStore::open_config(db.config.clone(), 4, None).await.unwrap()).await);
    // A long poll: the head moves on the database's notification.
    let _follow = b.follow(Duration::from_secs(3600)).unwrap();
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let msp = w.peer(Role::Msp, "provider-a.example", &[]);

    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    let r = a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.unwrap();
    head_reaches(&b, r.seq).await;
    // What B's /feed streams read when their head moves.
    let FeedPage::Changes(ch) = b.store().changes_since(0, 10).await.unwrap() else { panic!() };
    assert_eq!(ch.iter().map(|c| (c.seq, c.op)).collect::<Vec<_>>(), [(1, ChangeOp::Assign), (2, ChangeOp::EntryPut)]);
    assert_eq!(ch[1].subject, Subject::Csi(csi(N)));
    // And B answers with it, qualified by the followed head.
    let Response::Found(f) = b.answer(&FindService::for_csi(csi(N), false)).await.unwrap() else { panic!() };
    assert_eq!(f.feed_position, Some(2));
    w.verifier().verify_mapping(&csi(N), &f.mappings[0], t0()).unwrap();

    // B's own commits continue the one feed.
    let r = b.provision(&msp, Provision::RemoveEntry { csi: csi(N), provider: Name::parse("provider-a.example").unwrap() }).await.unwrap();
    assert_eq!(r.seq, 3);
    head_reaches(&b, 3).await;

    // A delegation made through A is followed by B's routing.
    let admin = w.peer(Role::Admin, "admin.de.example", &["+49"]);
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+4916").unwrap()),
        lifetime: 600,
        authorities: vec![AuthorityRef { id: Name::parse("dp.carrier.example").unwrap(), endpoints: vec![Endpoint::parse("https://127.0.0.1:7410/lost").unwrap()] }],
    };
    let r = a.provision(&admin, Provision::Delegate(d)).await.unwrap();
    head_reaches(&b, r.seq).await;
    assert!(matches!(b.answer(&FindService::for_csi(csi("tel:+4916012345678"), false)).await, Ok(Response::Redirect(_))));
}

/// A frontend that starts following after commits were made elsewhere
/// (or whose listener reconnects) catches up without a notification: the
/// follower reads the store's head before each wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frontend_catches_up_on_commits_made_before_it_followed() {
    let Some(db) = pg::fresh_db().await else { return };
    let w = World::new();
    let a = w.authority_on(PgStore::open_config(db.config.clone(), 2, None).await.unwrap()).await;
    let b = Arc::new(w.authority_on(PgStore::open_config(db.config.clone(), 2, None).await.unwrap()).await);
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let r = a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    assert_eq!(*b.head().borrow(), 0);
    // The follower's first round reads the store's head before it waits.
    let _follow = b.follow(Duration::from_millis(50)).unwrap();
    head_reaches(&b, r.seq).await;
}

/// Two frontends decide on the same record: the second commit is refused
/// as a conflict (HTTP 409, retry), never a lost update.
#[tokio::test]
async fn a_stale_decision_is_refused_not_lost() {
    let Some(db) = pg::fresh_db().await else { return };
    let w = World::new();
    let a = w.authority_on(PgStore::open_config(db.config.clone(), 2, None).await.unwrap()).await;
    let b = w.authority_on(PgStore::open_config(db.config.clone(), 2, None).await.unwrap()).await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    // B already saw it assigned: a repeat changes nothing, and two MSPs'
    // entries through the two frontends both survive (each decision is
    // made on the current record under the database's writer lock or
    // refused).
    let m1 = w.peer(Role::Msp, "provider-a.example", &[]);
    let m2 = w.peer(Role::Msp, "provider-b.example", &[]);
    let (r1, r2) = tokio::join!(
        a.provision(&m1, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }),
        b.provision(&m2, Provision::PutEntry { csi: csi(N), entry: entry("provider-b.example", false) }),
    );
    let mut ok = 0;
    for r in [&r1, &r2] {
        match r {
            Ok(_) => ok += 1,
            Err(e @ ProvisionError::Conflict(m)) => {
                assert_eq!(e.status(), 409);
                assert!(m.contains("retry"), "{m}");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok >= 1);
    // Retry the refused one (as a client would on 409); both entries stay.
    if r1.is_err() {
        a.provision(&m1, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.unwrap();
    }
    if r2.is_err() {
        b.provision(&m2, Provision::PutEntry { csi: csi(N), entry: entry("provider-b.example", false) }).await.unwrap();
    }
    let rec = b.store().get(&csi(N)).await.unwrap().unwrap();
    let mut providers: Vec<&str> = rec.entries.iter().map(|e| e.record.provider.as_str()).collect();
    providers.sort_unstable();
    assert_eq!(providers, ["provider-a.example", "provider-b.example"]);
}
