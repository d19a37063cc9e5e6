//! One conformance suite for the `Store` trait, instantiated per backend:
//! redb, and PostgreSQL on a real server (`support::pg`: `SIGNPOST_PG`, or a
//! throwaway cluster; skipped with a message when neither can be had, unless
//! `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use signpost_authority::model::{NumberRecord, State};
use signpost_authority::store::{Checkpoint, Commit, FeedPage, PgStore, Store};
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
    assert_eq!(s.checkpoint().await.unwrap(), None);
    let head = s.commit(Commit { records: vec![rec(1, 1), rec(2, 1)], changes: vec![change(&rec(1, 1), ChangeOp::Assign), change(&rec(2, 1), ChangeOp::Assign)], time: t(0), ..Commit::default() }).await.unwrap();
    assert_eq!(head, 2);
    assert_eq!(s.get(&rec(1, 1).csi).await.unwrap(), Some(rec(1, 1)));
    // The stored bytes (what the answer cache compares): the record's
    // encoding, read in place; a commit shows in the next read.
    let s = &s;
    let raw = |r: NumberRecord| async move { s.get_raw(&r.csi, |b| b.to_vec()).await.unwrap() };
    assert_eq!(raw(rec(1, 1)).await, Some(rec(1, 1).encode()));
    assert_eq!(raw(rec(9, 1)).await, None);
    let head = s.commit(Commit { records: vec![rec(1, 2)], changes: vec![change(&rec(1, 2), ChangeOp::Release)], time: t(1), ..Commit::default() }).await.unwrap();
    assert_eq!(head, 3);
    assert_eq!(raw(rec(1, 2)).await, Some(rec(1, 2).encode()));
    assert_eq!(s.get(&rec(1, 1).csi).await.unwrap().unwrap().epoch, Epoch(2));
    // A commit without changes (a signature renewal) takes no number.
    assert_eq!(s.commit(Commit { records: vec![rec(2, 1)], time: t(2), ..Commit::default() }).await.unwrap(), 3);
    let st = s.stats().await.unwrap();
    assert_eq!((st.records, st.changes, st.head), (2, 3, 3));
    // The events as committed: subject, op and time.
    let FeedPage::Changes(p) = s.changes_since(2, 10).await.unwrap() else { panic!() };
    assert_eq!(p, vec![signpost_schemas::sp::Change { seq: 3, subject: change(&rec(1, 2), ChangeOp::Release).0, op: ChangeOp::Release, time: t(1) }]);
    // A batch read answers in the order asked, absent ones as None.
    let got = s.get_many(&[rec(2, 1).csi, rec(9, 1).csi, rec(1, 2).csi]).await.unwrap();
    assert_eq!(got, vec![Some(rec(2, 1)), None, Some(rec(1, 2))]);
    assert!(s.get_many(&[]).await.unwrap().is_empty());
    // The record count, for records the writer read (one new, one
    // replaced) and records it did not (one new, one replaced).
    let expect = vec![(rec(5, 1).csi, None), (rec(1, 2).csi, Some(rec(1, 2)))];
    s.commit(Commit { records: vec![rec(5, 1), rec(1, 3), rec(6, 1), rec(2, 2)], expect, time: t(3), ..Commit::default() }).await.unwrap();
    assert_eq!(s.stats().await.unwrap().records, 4);
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

/// The import checkpoint goes with its commit; records encoded by the
/// writer are stored as given; `page` walks every record in URI byte order.
async fn checkpoint_and_page<S: Store>(s: S) {
    assert_eq!(s.checkpoint().await.unwrap(), None);
    let set = |b: &str| Some(Checkpoint::Set(b.as_bytes().to_vec()));
    // Records encoded beforehand (as a bulk import does) read back the same.
    let encoded = vec![rec(3, 1).encode(), rec(1, 1).encode()];
    s.commit(Commit { records: vec![rec(3, 1), rec(1, 1)], encoded, changes: vec![change(&rec(3, 1), ChangeOp::Assign)], checkpoint: set("half"), time: t(0), ..Commit::default() }).await.unwrap();
    assert_eq!(s.checkpoint().await.unwrap(), Some(b"half".to_vec()));
    // A commit without one leaves it as it is.
    s.commit(Commit { records: vec![rec(2, 1)], time: t(1), ..Commit::default() }).await.unwrap();
    assert_eq!(s.checkpoint().await.unwrap(), Some(b"half".to_vec()));
    let mail = NumberRecord { csi: Csi::from_wire("mailto:a.b-c@mail.example").unwrap(), ..rec(9, 1) };
    s.commit(Commit { records: vec![rec(4, 1), mail.clone()], checkpoint: Some(Checkpoint::Clear), time: t(2), ..Commit::default() }).await.unwrap();
    assert_eq!(s.checkpoint().await.unwrap(), None);
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = s.page(after.as_deref(), 2).await.unwrap();
        assert!(p.len() <= 2);
        let Some(last) = p.last() else { break };
        after = Some(last.csi.uri().to_owned());
        all.extend(p);
    }
    assert_eq!(all, vec![mail, rec(1, 1), rec(2, 1), rec(3, 1), rec(4, 1)]);
}

async fn delegations<S: Store>(s: S) {
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+4916").unwrap()),
        lifetime: 60,
        authorities: vec![AuthorityRef { id: Name::parse("dp.x.example").unwrap(), endpoints: vec![Endpoint::parse("https://127.0.0.1:1/lost").unwrap()] }],
    };
    s.commit(Commit { delegations_put: vec![d.clone()], changes: vec![(Subject::Cover(d.cover.clone()), ChangeOp::Delegate)], time: t(0), ..Commit::default() }).await.unwrap();
    assert_eq!(s.delegations().await.unwrap(), vec![d.clone()]);
    let FeedPage::Changes(p) = s.changes_since(0, 10).await.unwrap() else { panic!() };
    assert_eq!((p[0].seq, &p[0].subject, p[0].op, p[0].time), (1, &Subject::Cover(d.cover.clone()), ChangeOp::Delegate, t(0)));
    s.commit(Commit { delegations_remove: vec![d.cover.clone()], time: t(1), ..Commit::default() }).await.unwrap();
    assert!(s.delegations().await.unwrap().is_empty());
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn records_and_sequence() {
                let Some((s, _g)) = $make else { return };
                super::records_and_sequence(s).await;
            }
            #[tokio::test]
            async fn feed_pages_and_retention() {
                let Some((s, _g)) = $make else { return };
                super::feed_pages_and_retention(s).await;
            }
            #[tokio::test]
            async fn list_by_prefix() {
                let Some((s, _g)) = $make else { return };
                super::list_by_prefix(s).await;
            }
            #[tokio::test]
            async fn checkpoint_and_page() {
                let Some((s, _g)) = $make else { return };
                super::checkpoint_and_page(s).await;
            }
            #[tokio::test]
            async fn delegations() {
                let Some((s, _g)) = $make else { return };
                super::delegations(s).await;
            }
        }
    };
}

fn redb() -> Option<(signpost_authority::store::RedbStore, tempfile::TempDir)> {
    let d = tempfile::tempdir().unwrap();
    Some((signpost_authority::store::RedbStore::open(&d.path().join("s.redb")).unwrap(), d))
}

async fn pg() -> Option<(PgStore, support::pg::TestDb)> {
    let db = support::pg::fresh_db().await?;
    Some((PgStore::open_config(db.config.clone(), 4, None).await.unwrap(), db))
}

conformance!(redb_backend, redb());
fn memory() -> Option<(signpost_authority::store::MemStore, ())> {
    Some((signpost_authority::store::MemStore::new(), ()))
}

conformance!(memory_backend, memory());
conformance!(postgres_backend, pg().await);

/// Migrations run at open and are idempotent: a second open (another
/// frontend, a restart) finds the schema current and the data intact.
#[tokio::test]
async fn postgres_migrations_are_idempotent() {
    let Some((s, db)) = pg().await else { return };
    s.commit(Commit { records: vec![rec(7, 3)], changes: vec![change(&rec(7, 3), ChangeOp::Assign)], time: t(0), ..Commit::default() }).await.unwrap();
    let again = PgStore::open_config(db.config.clone(), 2, None).await.unwrap();
    assert_eq!(again.get(&rec(7, 3).csi).await.unwrap(), Some(rec(7, 3)));
    assert_eq!(again.head().await.unwrap(), 1);
    let (c, conn) = db.config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let v: i32 = c.query_one("SELECT version FROM schema_version", &[]).await.unwrap().get(0);
    assert_eq!(usize::try_from(v).unwrap(), PgStore::schema_version());
    assert_eq!(c.query_one("SELECT count(*) FROM schema_version", &[]).await.unwrap().get::<_, i64>(0), 1);
}

/// Several frontends (separate pools) committing at once on one database
/// get one feed: sequence numbers without gaps or repeats, in commit order,
/// and a reader following the feed meanwhile never sees a later number
/// before an earlier one (it would skip the earlier one for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frontends_share_one_ordered_feed() {
    let Some((first, db)) = pg().await else { return };
    let mut frontends = vec![first];
    for _ in 0..2 {
        frontends.push(PgStore::open_config(db.config.clone(), 3, None).await.unwrap());
    }
    const PER_WRITER: u64 = 40;
    let writers = frontends.len() as u64 * 2;
    let reader = {
        let s = frontends[0].clone();
        tokio::spawn(async move {
            let mut cursor = 0u64;
            while cursor < writers * PER_WRITER * 2 {
                let FeedPage::Changes(p) = s.changes_since(cursor, 7).await.unwrap() else { panic!("no pruning here") };
                for c in p {
                    assert_eq!(c.seq, cursor + 1, "the feed skipped or repeated a number");
                    cursor = c.seq;
                }
                tokio::task::yield_now().await;
            }
            cursor
        })
    };
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = frontends[(w as usize) % frontends.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut heads = Vec::new();
            for i in 0..PER_WRITER {
                // Two events per commit.
                let (a, b) = (rec(w * 1000 + 2 * i, 1), rec(w * 1000 + 2 * i + 1, 1));
                let changes = vec![change(&a, ChangeOp::Assign), change(&b, ChangeOp::Assign)];
                heads.push(s.commit(Commit { records: vec![a, b], changes, time: t(i), ..Commit::default() }).await.unwrap());
            }
            heads
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let heads = t.await.unwrap();
        // One writer's commits are ordered.
        assert!(heads.windows(2).all(|w| w[0] < w[1]));
        all.extend(heads);
    }
    all.sort_unstable();
    let n = writers * PER_WRITER;
    assert_eq!(all, (1..=n).map(|i| i * 2).collect::<Vec<_>>(), "every commit took two consecutive numbers");
    assert_eq!(reader.await.unwrap(), n * 2);
    // Each event names a record its commit wrote.
    let FeedPage::Changes(feed) = frontends[1].changes_since(0, usize::MAX).await.unwrap() else { panic!() };
    assert_eq!(feed.len() as u64, n * 2);
    for c in feed.iter().take(10) {
        let Subject::Csi(csi) = &c.subject else { panic!() };
        assert!(frontends[2].get(csi).await.unwrap().is_some());
    }
    let st = frontends[2].stats().await.unwrap();
    assert_eq!((st.records, st.changes, st.head), (n * 2, n * 2, n * 2));
}

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
    let key = rec(1, 1).csi.uri().to_owned();
    let r = rec(1, 1).encode();
    for cut in 0..r.len() {
        assert!(NumberRecord::decode(&key, &r[..cut]).is_err());
    }
    let mut bad = r.clone();
    bad[0] = 9;
    assert!(NumberRecord::decode(&key, &bad).is_err());
}

/// A commit decided on a record that another writer has changed since is
/// refused as a conflict and writes nothing (no lost update between
/// frontends); one decided on what is there goes through.
#[tokio::test]
async fn postgres_refuses_a_commit_on_a_stale_read() {
    let Some((a, db)) = pg().await else { return };
    let b = PgStore::open_config(db.config.clone(), 2, None).await.unwrap();
    let assign = |r: NumberRecord, expect: Option<NumberRecord>| Commit {
        changes: vec![change(&r, ChangeOp::Assign)],
        expect: vec![(r.csi.clone(), expect)],
        records: vec![r],
        time: t(0),
        ..Commit::default()
    };
    // Both frontends saw the number absent; A commits first.
    assert_eq!(a.commit(assign(rec(1, 1), None)).await.unwrap(), 1);
    let e = b.commit(Commit { checkpoint: Some(Checkpoint::Set(b"x".to_vec())), ..assign(rec(1, 5), None) }).await.unwrap_err();
    assert!(e.is_conflict(), "{e}");
    // Nothing of the refused commit, its checkpoint neither.
    assert_eq!(b.checkpoint().await.unwrap(), None);
    assert_eq!(b.get(&rec(1, 1).csi).await.unwrap(), Some(rec(1, 1)));
    assert_eq!(b.head().await.unwrap(), 1);
    // Decided on the current record: accepted.
    assert_eq!(b.commit(assign(rec(1, 2), Some(rec(1, 1)))).await.unwrap(), 2);
    // A stale Some is refused too.
    assert!(a.commit(assign(rec(1, 3), Some(rec(1, 1)))).await.unwrap_err().is_conflict());
    assert_eq!(a.stats().await.unwrap().records, 1);
}

/// `sslmode=require`: TLS through rustls, the server's certificate checked
/// against the configured CA; without the CA, or with another one, no
/// connection. Plain connections are refused to anything but loopback.
#[tokio::test]
async fn postgres_tls_and_plain_rules() {
    use signpost_authority::store::PgSettings;
    // Refused before any connection is tried.
    let remote = PgSettings { url: "host=192.0.2.1 user=signpost dbname=signpost".into(), pool_size: 1, ca: None };
    let e = PgStore::open(&remote).await.unwrap_err();
    assert!(e.to_string().contains("sslmode=require"), "{e}");
    let no_ca = PgSettings { url: "host=192.0.2.1 user=signpost dbname=signpost sslmode=require".into(), pool_size: 1, ca: None };
    assert!(PgStore::open(&no_ca).await.unwrap_err().to_string().contains("store.ca"));

    let Some(db) = support::pg::fresh_db().await else { return };
    let Some(ca) = db.tls_ca() else {
        eprintln!("skipped: the TLS half needs the tests' own cluster (unset SIGNPOST_PG)");
        return;
    };
    let url = format!("{} sslmode=require", db.url());
    let s = PgStore::open(&PgSettings { url: url.clone(), pool_size: 2, ca: Some(ca) }).await.unwrap();
    records_and_sequence(s.clone()).await;
    // Another CA: the handshake fails (so the session above was TLS, and
    // verified).
    let other = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(other.path().join("ca.pem"), p.self_signed(&key).unwrap().pem()).unwrap();
    let e = PgStore::open(&PgSettings { url, pool_size: 1, ca: Some(other.path().join("ca.pem")) }).await.unwrap_err();
    assert!(e.to_string().contains("TLS handshake") && e.to_string().contains("certificate"), "{e}");
}
