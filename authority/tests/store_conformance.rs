//! One conformance suite for the `Store` trait, instantiated per backend
//! (the PostgreSQL backend will add one line here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use signpost_authority::model::{NumberRecord, State};
use signpost_authority::store::{Commit, FeedPage, Store};
use signpost_schemas::lost::{AuthorityRef, Cover, Delegation, Endpoint, Epoch};
use signpost_schemas::sp::{ChangeOp, Subject};
use signpost_schemas::{Csi, E164Prefix, Name, Timestamp};

fn rec(n: u64, epoch: u64) -> NumberRecord {
    NumberRecord {
        csi: Csi::from_wire(&format!("tel:+49151{n:08}")).unwrap(),
        state: State::Assigned { tnsp: Name::parse("tnsp.example").unwrap() },
        epoch: Epoch(epoch),
        entries: vec![],
        none: None,
    }
}

fn change(r: &NumberRecord, op: ChangeOp) -> (Subject, ChangeOp) {
    (Subject::Csi(r.csi.clone()), op)
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

async fn records_and_sequence<S: Store>(s: S) {
    assert_eq!(s.head().await.unwrap(), 0);
    assert!(s.get(&rec(1, 1).csi).await.unwrap().is_none());
    let head = s.commit(Commit { records: vec![rec(1, 1), rec(2, 1)], changes: vec![change(&rec(1, 1), ChangeOp::Assign), change(&rec(2, 1), ChangeOp::Assign)], time: t(0), ..Commit::default() }).await.unwrap();
    assert_eq!(head, 2);
    assert_eq!(s.get(&rec(1, 1).csi).await.unwrap(), Some(rec(1, 1)));
    let head = s.commit(Commit { records: vec![rec(1, 2)], changes: vec![change(&rec(1, 2), ChangeOp::Release)], time: t(1), ..Commit::default() }).await.unwrap();
    assert_eq!(head, 3);
    assert_eq!(s.get(&rec(1, 1).csi).await.unwrap().unwrap().epoch, Epoch(2));
    // A commit without changes (a signature renewal) takes no number.
    assert_eq!(s.commit(Commit { records: vec![rec(2, 1)], time: t(2), ..Commit::default() }).await.unwrap(), 3);
    let st = s.stats().await.unwrap();
    assert_eq!((st.records, st.changes, st.head), (2, 3, 3));
}

async fn feed_pages_and_retention<S: Store>(s: S) {
    for i in 0..10u64 {
        s.commit(Commit { records: vec![rec(i, 1)], changes: vec![change(&rec(i, 1), ChangeOp::Assign)], time: t(i), ..Commit::default() }).await.unwrap();
    }
    let FeedPage::Changes(p) = s.changes_since(0, 4).await.unwrap() else { panic!() };
    assert_eq!(p.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(p[2].time, t(2));
    let FeedPage::Changes(p) = s.changes_since(8, 100).await.unwrap() else { panic!() };
    assert_eq!(p.iter().map(|c| c.seq).collect::<Vec<_>>(), [9, 10]);
    let FeedPage::Changes(p) = s.changes_since(10, 100).await.unwrap() else { panic!() };
    assert!(p.is_empty());
    // Keep at most 5 events: since=2 is now too old, since=5 is fine.
    assert_eq!(s.prune(5, t(0)).await.unwrap(), 5);
    assert_eq!(s.changes_since(2, 10).await.unwrap(), FeedPage::Gone { oldest: 6, head: 10 });
    let FeedPage::Changes(p) = s.changes_since(5, 10).await.unwrap() else { panic!() };
    assert_eq!(p.first().map(|c| c.seq), Some(6));
    // Age: drop everything older than t(8).
    s.prune(100, t(8)).await.unwrap();
    assert!(matches!(s.changes_since(6, 10).await.unwrap(), FeedPage::Gone { oldest: 9, .. }));
}

async fn list_by_prefix<S: Store>(s: S) {
    let other = NumberRecord { csi: Csi::from_wire("tel:+4930123456").unwrap(), ..rec(9, 1) };
    s.commit(Commit { records: vec![rec(3, 1), rec(1, 1), rec(2, 1), other.clone()], time: t(0), ..Commit::default() }).await.unwrap();
    let all: Vec<String> = s.list("tel:+49151", 100).await.unwrap().into_iter().map(|r| r.csi.uri().to_owned()).collect();
    assert_eq!(all, ["tel:+4915100000001", "tel:+4915100000002", "tel:+4915100000003"]);
    assert_eq!(s.list("tel:+49151", 2).await.unwrap().len(), 2);
    assert_eq!(s.list("tel:+4930", 10).await.unwrap(), vec![other]);
    assert!(s.list("tel:+33", 10).await.unwrap().is_empty());
}

async fn delegations<S: Store>(s: S) {
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+4916").unwrap()),
        lifetime: 60,
        authorities: vec![AuthorityRef { id: Name::parse("dp.x.example").unwrap(), endpoints: vec![Endpoint::parse("https://127.0.0.1:1/lost").unwrap()] }],
    };
    s.commit(Commit { delegations_put: vec![d.clone()], changes: vec![(Subject::Cover(d.cover.clone()), ChangeOp::Delegate)], time: t(0), ..Commit::default() }).await.unwrap();
    assert_eq!(s.delegations().await.unwrap(), vec![d.clone()]);
    s.commit(Commit { delegations_remove: vec![d.cover.clone()], time: t(1), ..Commit::default() }).await.unwrap();
    assert!(s.delegations().await.unwrap().is_empty());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn records_and_sequence() {
                let (s, _g) = $make;
                super::records_and_sequence(s).await;
            }
            #[tokio::test]
            async fn feed_pages_and_retention() {
                let (s, _g) = $make;
                super::feed_pages_and_retention(s).await;
            }
            #[tokio::test]
            async fn list_by_prefix() {
                let (s, _g) = $make;
                super::list_by_prefix(s).await;
            }
            #[tokio::test]
            async fn delegations() {
                let (s, _g) = $make;
                super::delegations(s).await;
            }
        }
    };
}

fn redb() -> (signpost_authority::store::RedbStore, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    (signpost_authority::store::RedbStore::open(&d.path().join("s.redb")).unwrap(), d)
}

conformance!(redb_backend, redb());

#[tokio::test]
async fn redb_survives_reopen() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.redb");
    {
        let s = signpost_authority::store::RedbStore::open(&p).unwrap();
        s.commit(Commit { records: vec![rec(7, 3)], changes: vec![change(&rec(7, 3), ChangeOp::Assign)], time: t(0), ..Commit::default() }).await.unwrap();
    }
    let s = signpost_authority::store::RedbStore::open(&p).unwrap();
    assert_eq!(s.get(&rec(7, 3).csi).await.unwrap(), Some(rec(7, 3)));
    assert_eq!(s.head().await.unwrap(), 1);
}

#[test]
fn corrupt_records_are_errors() {
    let r = rec(1, 1).encode();
    for cut in 0..r.len() {
        assert!(NumberRecord::decode(&r[..cut]).is_err());
    }
    let mut bad = r.clone();
    bad[0] = 9;
    assert!(NumberRecord::decode(&bad).is_err());
}
