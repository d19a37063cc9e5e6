//! The storage trait, the embedded, crash-safe default backend (redb), and
//! the PostgreSQL backend ([`pg`]) for several frontends on one database.
//!
//! Every commit writes its records and its change-feed entries, with their
//! sequence numbers, in one transaction: no change can be lost between
//! commit and push. Writers are serialized by the authority core (one
//! writer at a time, as redb itself requires); the PostgreSQL backend also
//! serializes writers of different frontends in the database (a row lock on
//! the feed head, taken first in every commit; see [`pg`]).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use signpost_schemas::lost::{Cover, Delegation};
use signpost_schemas::sp::{Change, ChangeOp, FeedFrame, Provision, Subject};
use signpost_schemas::{Csi, Limits, Timestamp};

use crate::model::NumberRecord;

pub mod mem;
pub mod pg;
pub use mem::MemStore;
pub use pg::{PgSettings, PgStore};

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    message: String,
    conflict: bool,
}

impl StoreError {
    /// A failure.
    pub fn new(message: impl Into<String>) -> StoreError {
        StoreError { message: message.into(), conflict: false }
    }
    /// A commit refused because a record it was based on changed since it
    /// was read (another writer on a shared backend); retrying may succeed.
    pub fn conflict(message: impl Into<String>) -> StoreError {
        StoreError { message: message.into(), conflict: true }
    }
    /// Whether this is [`StoreError::conflict`].
    pub fn is_conflict(&self) -> bool {
        self.conflict
    }
    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn se(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(e.to_string())
}

/// One atomic write.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// Records to insert or replace.
    pub records: Vec<NumberRecord>,
    /// Their stored forms ([`NumberRecord::encode`]), made beforehand by a
    /// writer that can encode in parallel (a bulk import does it on its
    /// build threads); empty: the store encodes them in the commit.
    pub encoded: Vec<Vec<u8>>,
    /// Delegations to insert or replace.
    pub delegations_put: Vec<Delegation>,
    /// Delegations to remove.
    pub delegations_remove: Vec<Cover>,
    /// Feed events, numbered in the same transaction.
    pub changes: Vec<(Subject, ChangeOp)>,
    /// What the commit was decided on: each CSI the writer read, with the
    /// record it found (`None`: absent). A backend shared by several
    /// writers (PostgreSQL) refuses the commit with
    /// [`StoreError::conflict`] when one of them is no longer so, so a
    /// change made through another frontend in between is never
    /// overwritten. redb need not check: its file has one process, whose
    /// core serializes every read-decide-write.
    pub expect: Vec<(Csi, Option<NumberRecord>)>,
    /// The bulk import's checkpoint, written in the same transaction as
    /// the records and events of its batch (`None`: left as it is).
    pub checkpoint: Option<Checkpoint>,
    /// The commit time.
    pub time: Timestamp,
}

/// What a commit does to the stored import checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Records how far an import got (opaque to the store).
    Set(Vec<u8>),
    /// The import finished: no checkpoint.
    Clear,
}

/// A page of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedPage {
    /// Changes after `since`, in order (possibly empty).
    Changes(Vec<Change>),
    /// `since` is older than what is retained.
    Gone {
        /// The oldest retained sequence number.
        oldest: u64,
        /// The newest.
        head: u64,
    },
}

/// Counts for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Stored CSIs.
    pub records: u64,
    /// Retained feed events.
    pub changes: u64,
    /// The newest sequence number.
    pub head: u64,
}

/// What every backend provides. A conformance suite
/// (`authority/tests/store_conformance.rs`) runs against each one.
pub trait Store: Send + Sync + 'static {
    /// The record of a CSI.
    fn get(&self, csi: &Csi) -> impl Future<Output = Result<Option<NumberRecord>, StoreError>> + Send;
    /// `f` of the bytes stored for a CSI (its record as
    /// [`NumberRecord::encode`] wrote it), without a copy where the
    /// backend allows: what the answer path compares its encoded answers
    /// with. The default encodes the record [`Store::get`] returns.
    fn get_raw<R: Send, F: FnOnce(&[u8]) -> R + Send>(&self, csi: &Csi, f: F) -> impl Future<Output = Result<Option<R>, StoreError>> + Send {
        async move { Ok(self.get(csi).await?.map(|r| f(&r.encode()))) }
    }
    /// The records of several CSIs, in their order (a backend over the
    /// network answers a batch per round trip).
    fn get_many(&self, csis: &[Csi]) -> impl Future<Output = Result<Vec<Option<NumberRecord>>, StoreError>> + Send {
        async move {
            let mut out = Vec::with_capacity(csis.len());
            for c in csis {
                out.push(self.get(c).await?);
            }
            Ok(out)
        }
    }
    /// Applies a commit atomically; returns the newest sequence number.
    fn commit(&self, c: Commit) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The newest sequence number (0 before the first change).
    fn head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// At most `limit` changes after `since`.
    fn changes_since(&self, since: u64, limit: usize) -> impl Future<Output = Result<FeedPage, StoreError>> + Send;
    /// Every sub-delegation.
    fn delegations(&self) -> impl Future<Output = Result<Vec<Delegation>, StoreError>> + Send;
    /// Drops feed events beyond retention: keeps at most `keep` events and
    /// none older than `older_than`. Returns how many were dropped.
    fn prune(&self, keep: u64, older_than: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Counts.
    fn stats(&self) -> impl Future<Output = Result<Stats, StoreError>> + Send;
    /// At most `limit` records whose CSI URI starts with `prefix` (e.g.
    /// `tel:+4915`), in URI order (operator tooling, not the hot path).
    fn list(&self, prefix: &str, limit: usize) -> impl Future<Output = Result<Vec<NumberRecord>, StoreError>> + Send;
    /// At most `limit` records whose CSI URI sorts after `after` (`None`:
    /// from the first), in URI byte order: `export` pages through the
    /// whole store with it.
    fn page(&self, after: Option<&str>, limit: usize) -> impl Future<Output = Result<Vec<NumberRecord>, StoreError>> + Send;
    /// The import checkpoint the last batch of an unfinished import
    /// recorded (see [`Commit::checkpoint`]).
    fn checkpoint(&self) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Whether other processes may commit to this store (a shared
    /// database): then the core follows its head (`Authority::follow`).
    fn shared(&self) -> bool {
        false
    }
    /// Returns when a commit may have been made elsewhere (a notification
    /// from the database), or after `max` at the latest (the polling
    /// fallback).
    fn wait_external(&self, max: std::time::Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(max)
    }
}

const NUMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("numbers");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const DELEGATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("delegations");
const IMPORT: TableDefinition<&str, &[u8]> = TableDefinition::new("import");

/// A feed event as the embedded store keeps it: for an identifier, a
/// tag byte, the op, the commit time as a varint and the CSI URI (about 30
/// bytes, where the XML frame takes about 130); for a delegation change,
/// the XML frame (which starts with `<`, never with the tag).
const COMPACT_CHANGE: u8 = 1;

fn encode_change(c: Change) -> Vec<u8> {
    match &c.subject {
        Subject::Csi(csi) => {
            let op = ChangeOp::ALL.iter().position(|o| *o == c.op).unwrap_or(0);
            let mut out = Vec::with_capacity(12 + csi.uri().len());
            out.push(COMPACT_CHANGE);
            out.push(u8::try_from(op).unwrap_or(0));
            let mut t = c.time.as_millis();
            while t >= 0x80 {
                out.push((t as u8) | 0x80);
                t >>= 7;
            }
            out.push(t as u8);
            out.extend_from_slice(csi.uri().as_bytes());
            out
        }
        Subject::Cover(_) => FeedFrame::Change(c).encode().into_bytes(),
    }
}

fn decode_change(seq: u64, b: &[u8]) -> Result<Change, StoreError> {
    let corrupt = || StoreError::new(format!("corrupt feed entry {seq}"));
    match b {
        [COMPACT_CHANGE, op, rest @ ..] => {
            let op = *ChangeOp::ALL.get(usize::from(*op)).ok_or_else(corrupt)?;
            let mut t = 0u64;
            let mut i = 0;
            loop {
                let byte = *rest.get(i).ok_or_else(corrupt)?;
                t |= u64::from(byte & 0x7f) << (7 * i);
                i += 1;
                if byte & 0x80 == 0 {
                    break;
                }
                if i >= 10 {
                    return Err(corrupt());
                }
            }
            let uri = std::str::from_utf8(rest.get(i..).unwrap_or(&[])).map_err(|_| corrupt())?;
            let csi = Csi::from_wire(uri).map_err(|_| corrupt())?;
            Ok(Change { seq, subject: Subject::Csi(csi), op, time: Timestamp::from_millis(t) })
        }
        _ => match FeedFrame::decode(b).map_err(se)? {
            FeedFrame::Change(c) => Ok(c),
            other => Err(StoreError::new(format!("corrupt feed entry {other:?}"))),
        },
    }
}

/// The embedded backend: one redb file (copy-on-write B-trees, fsync on
/// commit, so a crash leaves the last committed state).
#[derive(Clone, Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    numbers: Arc<NumbersView>,
}

/// The numbers table as of the last commit, opened once and shared by the
/// record reads until the next commit (a read transaction and a table
/// open cost more than the lookup they serve). Every write transaction
/// bumps `generation` after it commits, before the core publishes the new
/// feed head, so a read that follows a head it saw sees that commit.
#[derive(Default)]
struct NumbersView {
    generation: std::sync::atomic::AtomicU64,
    /// The open table and the generation it was opened at.
    table: std::sync::Mutex<Option<(u64, Arc<NumbersTable>)>>,
}

/// The numbers table, opened for reading.
type NumbersTable = redb::ReadOnlyTable<&'static str, &'static [u8]>;

impl std::fmt::Debug for NumbersView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumbersView").field("generation", &self.generation).finish()
    }
}

fn cover_key(c: &Cover) -> String {
    match c {
        Cover::Prefix(p) => p.as_str().to_owned(),
        Cover::Domain { domain, .. } => domain.as_str().to_owned(),
    }
}

/// Why an embedded store file cannot be opened while another process
/// (a running server) has it.
pub const HELD: &str = "the store file is held by another process (a running server?)";

impl RedbStore {
    /// Opens or creates the store file (redb's default page cache, 1 GiB at
    /// most: what the answer path reads from).
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        RedbStore::open_with_cache(path, None)
    }

    /// Opens or creates the store file with a page cache of at most
    /// `cache` bytes (`None`: redb's default). A bulk import mostly writes
    /// and uses a small one, so its memory stays bounded.
    pub fn open_with_cache(path: &Path, cache: Option<usize>) -> Result<RedbStore, StoreError> {
        let mut b = redb::Builder::new();
        if let Some(c) = cache {
            b.set_cache_size(c);
        }
        let db = b.create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::new(format!("{}: {HELD}", path.display())),
            e => StoreError::new(format!("{}: {e}", path.display())),
        })?;
        let w = db.begin_write().map_err(se)?;
        {
            w.open_table(NUMBERS).map_err(se)?;
            w.open_table(CHANGES).map_err(se)?;
            w.open_table(DELEGATIONS).map_err(se)?;
            w.open_table(IMPORT).map_err(se)?;
            let mut m = w.open_table(META).map_err(se)?;
            if m.get("head").map_err(se)?.is_none() {
                m.insert("head", 0).map_err(se)?;
                m.insert("oldest", 1).map_err(se)?;
            }
        }
        w.commit().map_err(se)?;
        Ok(RedbStore { db: Arc::new(db), numbers: Arc::default() })
    }

    /// The numbers table as of the last commit (see [`NumbersView`]).
    fn numbers_table(&self) -> Result<Arc<NumbersTable>, StoreError> {
        use std::sync::atomic::Ordering;
        let lock = || match self.numbers.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let generation = self.numbers.generation.load(Ordering::Acquire);
        if let Some((g, t)) = &*lock()
            && *g == generation
        {
            return Ok(t.clone());
        }
        // Opened after reading the generation: at least as new as it.
        let t = Arc::new(self.db.begin_read().map_err(se)?.open_table(NUMBERS).map_err(se)?);
        *lock() = Some((generation, t.clone()));
        Ok(t)
    }

    /// After a write transaction committed: later reads open a new view.
    fn committed(&self) {
        self.numbers.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Rewrites the file without the pages that earlier commits freed (a
    /// bulk import, one transaction per batch, leaves many), so it shrinks
    /// to what it holds; returns the sizes before and after. Needs the file
    /// to itself (nothing else may have it open).
    pub fn compact_file(path: &Path, cache: Option<usize>) -> Result<(u64, u64), StoreError> {
        let size = || std::fs::metadata(path).map(|m| m.len()).map_err(|e| StoreError::new(format!("{}: {e}", path.display())));
        let before = size()?;
        let mut b = redb::Builder::new();
        if let Some(c) = cache {
            b.set_cache_size(c);
        }
        let mut db = b.open(path).map_err(|e| StoreError::new(format!("{}: {e}", path.display())))?;
        while db.compact().map_err(se)? {}
        drop(db);
        Ok((before, size()?))
    }

    fn commit_sync(db: &Database, c: Commit) -> Result<u64, StoreError> {
        let w = db.begin_write().map_err(se)?;
        let head;
        {
            let mut numbers = w.open_table(NUMBERS).map_err(se)?;
            for (i, r) in c.records.iter().enumerate() {
                match c.encoded.get(i) {
                    Some(b) => numbers.insert(r.csi.uri(), b.as_slice()).map_err(se)?,
                    None => numbers.insert(r.csi.uri(), r.encode().as_slice()).map_err(se)?,
                };
            }
            let mut dels = w.open_table(DELEGATIONS).map_err(se)?;
            for d in &c.delegations_put {
                dels.insert(cover_key(&d.cover).as_str(), Provision::Delegate(d.clone()).encode().as_bytes()).map_err(se)?;
            }
            for cv in &c.delegations_remove {
                dels.remove(cover_key(cv).as_str()).map_err(se)?;
            }
            let mut meta = w.open_table(META).map_err(se)?;
            let mut seq = meta.get("head").map_err(se)?.map_or(0, |v| v.value());
            let mut changes = w.open_table(CHANGES).map_err(se)?;
            for (subject, op) in c.changes {
                seq += 1;
                changes.insert(seq, encode_change(Change { seq, subject, op, time: c.time }).as_slice()).map_err(se)?;
            }
            meta.insert("head", seq).map_err(se)?;
            head = seq;
            match &c.checkpoint {
                Some(Checkpoint::Set(b)) => {
                    w.open_table(IMPORT).map_err(se)?.insert("checkpoint", b.as_slice()).map_err(se)?;
                }
                Some(Checkpoint::Clear) => {
                    w.open_table(IMPORT).map_err(se)?.remove("checkpoint").map_err(se)?;
                }
                None => {}
            }
        }
        w.commit().map_err(se)?;
        Ok(head)
    }

    fn meta(&self, key: &str) -> Result<u64, StoreError> {
        let r = self.db.begin_read().map_err(se)?;
        let t = r.open_table(META).map_err(se)?;
        Ok(t.get(key).map_err(se)?.map_or(0, |v| v.value()))
    }
}

impl Store for RedbStore {
    async fn get(&self, csi: &Csi) -> Result<Option<NumberRecord>, StoreError> {
        self.get_raw(csi, |b| NumberRecord::decode(csi.uri(), b)).await?.transpose().map_err(se)
    }

    async fn get_raw<R: Send, F: FnOnce(&[u8]) -> R + Send>(&self, csi: &Csi, f: F) -> Result<Option<R>, StoreError> {
        let t = self.numbers_table()?;
        Ok(t.get(csi.uri()).map_err(se)?.map(|v| f(v.value())))
    }

    async fn commit(&self, c: Commit) -> Result<u64, StoreError> {
        let db = self.db.clone();
        // Bumped even when the commit failed (whether it reached the file
        // is not known then).
        let r = tokio::task::spawn_blocking(move || RedbStore::commit_sync(&db, c)).await.map_err(se);
        self.committed();
        r?
    }

    async fn head(&self) -> Result<u64, StoreError> {
        self.meta("head")
    }

    async fn changes_since(&self, since: u64, limit: usize) -> Result<FeedPage, StoreError> {
        let r = self.db.begin_read().map_err(se)?;
        let meta = r.open_table(META).map_err(se)?;
        let head = meta.get("head").map_err(se)?.map_or(0, |v| v.value());
        let oldest = meta.get("oldest").map_err(se)?.map_or(1, |v| v.value());
        if since < head && since.saturating_add(1) < oldest {
            return Ok(FeedPage::Gone { oldest, head });
        }
        let t = r.open_table(CHANGES).map_err(se)?;
        let mut out = Vec::new();
        for item in t.range(since.saturating_add(1)..).map_err(se)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(se)?;
            out.push(decode_change(k.value(), v.value())?);
        }
        Ok(FeedPage::Changes(out))
    }

    async fn delegations(&self) -> Result<Vec<Delegation>, StoreError> {
        let r = self.db.begin_read().map_err(se)?;
        let t = r.open_table(DELEGATIONS).map_err(se)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(se)? {
            let (_, v) = item.map_err(se)?;
            match Provision::decode(v.value(), &Limits::MESSAGE).map_err(se)? {
                Provision::Delegate(d) => out.push(d),
                other => return Err(StoreError::new(format!("corrupt delegation {}", other.label()))),
            }
        }
        Ok(out)
    }

    async fn prune(&self, keep: u64, older_than: Timestamp) -> Result<u64, StoreError> {
        let db = self.db.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<u64, StoreError> {
            let w = db.begin_write().map_err(se)?;
            let dropped;
            {
                let mut meta = w.open_table(META).map_err(se)?;
                let head = meta.get("head").map_err(se)?.map_or(0, |v| v.value());
                let oldest = meta.get("oldest").map_err(se)?.map_or(1, |v| v.value());
                let mut new_oldest = oldest.max(head.saturating_sub(keep).saturating_add(1));
                let mut changes = w.open_table(CHANGES).map_err(se)?;
                // Also drop events older than the age limit.
                for item in changes.range(new_oldest..).map_err(se)? {
                    let (k, v) = item.map_err(se)?;
                    let old = match decode_change(k.value(), v.value()) {
                        Ok(c) => c.time < older_than,
                        Err(_) => true,
                    };
                    if !old {
                        break;
                    }
                    new_oldest = k.value() + 1;
                }
                let mut n = 0;
                for seq in oldest..new_oldest {
                    if changes.remove(seq).map_err(se)?.is_some() {
                        n += 1;
                    }
                }
                meta.insert("oldest", new_oldest).map_err(se)?;
                dropped = n;
            }
            w.commit().map_err(se)?;
            Ok(dropped)
        })
        .await
        .map_err(se);
        // The view of before the prune would keep its freed pages.
        self.committed();
        r?
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let r = self.db.begin_read().map_err(se)?;
        let records = r.open_table(NUMBERS).map_err(se)?.len().map_err(se)?;
        let changes = r.open_table(CHANGES).map_err(se)?.len().map_err(se)?;
        let head = r.open_table(META).map_err(se)?.get("head").map_err(se)?.map_or(0, |v| v.value());
        Ok(Stats { records, changes, head })
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        let r = self.db.begin_read().map_err(se)?;
        let t = r.open_table(NUMBERS).map_err(se)?;
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(se)? {
            let (k, v) = item.map_err(se)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push(NumberRecord::decode(k.value(), v.value()).map_err(se)?);
        }
        Ok(out)
    }

    async fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        use std::ops::Bound;
        let r = self.db.begin_read().map_err(se)?;
        let t = r.open_table(NUMBERS).map_err(se)?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::with_capacity(limit.min(4096));
        for item in t.range::<&str>((from, Bound::Unbounded)).map_err(se)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(se)?;
            out.push(NumberRecord::decode(k.value(), v.value()).map_err(se)?);
        }
        Ok(out)
    }

    async fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.db.begin_read().map_err(se)?;
        let t = r.open_table(IMPORT).map_err(se)?;
        Ok(t.get("checkpoint").map_err(se)?.map(|v| v.value().to_vec()))
    }
}

/// The backend a config chose (what `serve` and `import` run on).
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// The embedded file.
    Redb(RedbStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

impl Store for AnyStore {
    async fn get(&self, csi: &Csi) -> Result<Option<NumberRecord>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.get(csi).await,
            AnyStore::Postgres(s) => s.get(csi).await,
        }
    }
    async fn get_raw<R: Send, F: FnOnce(&[u8]) -> R + Send>(&self, csi: &Csi, f: F) -> Result<Option<R>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.get_raw(csi, f).await,
            AnyStore::Postgres(s) => s.get_raw(csi, f).await,
        }
    }
    async fn get_many(&self, csis: &[Csi]) -> Result<Vec<Option<NumberRecord>>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.get_many(csis).await,
            AnyStore::Postgres(s) => s.get_many(csis).await,
        }
    }
    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.list(prefix, limit).await,
            AnyStore::Postgres(s) => s.list(prefix, limit).await,
        }
    }
    async fn commit(&self, c: Commit) -> Result<u64, StoreError> {
        match self {
            AnyStore::Redb(s) => s.commit(c).await,
            AnyStore::Postgres(s) => s.commit(c).await,
        }
    }
    async fn head(&self) -> Result<u64, StoreError> {
        match self {
            AnyStore::Redb(s) => s.head().await,
            AnyStore::Postgres(s) => s.head().await,
        }
    }
    async fn changes_since(&self, since: u64, limit: usize) -> Result<FeedPage, StoreError> {
        match self {
            AnyStore::Redb(s) => s.changes_since(since, limit).await,
            AnyStore::Postgres(s) => s.changes_since(since, limit).await,
        }
    }
    async fn delegations(&self) -> Result<Vec<Delegation>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.delegations().await,
            AnyStore::Postgres(s) => s.delegations().await,
        }
    }
    async fn prune(&self, keep: u64, older_than: Timestamp) -> Result<u64, StoreError> {
        match self {
            AnyStore::Redb(s) => s.prune(keep, older_than).await,
            AnyStore::Postgres(s) => s.prune(keep, older_than).await,
        }
    }
    async fn stats(&self) -> Result<Stats, StoreError> {
        match self {
            AnyStore::Redb(s) => s.stats().await,
            AnyStore::Postgres(s) => s.stats().await,
        }
    }
    async fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.page(after, limit).await,
            AnyStore::Postgres(s) => s.page(after, limit).await,
        }
    }
    async fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AnyStore::Redb(s) => s.checkpoint().await,
            AnyStore::Postgres(s) => s.checkpoint().await,
        }
    }
    fn shared(&self) -> bool {
        match self {
            AnyStore::Redb(s) => s.shared(),
            AnyStore::Postgres(s) => s.shared(),
        }
    }
    async fn wait_external(&self, max: std::time::Duration) {
        match self {
            AnyStore::Redb(s) => s.wait_external(max).await,
            AnyStore::Postgres(s) => s.wait_external(max).await,
        }
    }
}
