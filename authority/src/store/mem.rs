//! A store in memory: the testbed's simulator runs the authority's own
//! answer and lifecycle logic over it, at a cost a simulation of hundreds
//! of authorities can afford. Same semantics as the durable backends (the
//! conformance suite runs against it); nothing survives the process.
//!
//! Every method completes without waiting, so a caller without an async
//! runtime can poll its futures to completion at once.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use signpost_schemas::lost::Delegation;
use signpost_schemas::sp::Change;
use signpost_schemas::{Csi, Timestamp};

use super::{Checkpoint, Commit, FeedPage, Stats, Store, StoreError, cover_key};
use crate::model::NumberRecord;

#[derive(Debug, Default)]
struct Inner {
    numbers: BTreeMap<String, NumberRecord>,
    /// Retained changes by sequence number (`oldest..=head`).
    changes: BTreeMap<u64, Change>,
    delegations: BTreeMap<String, Delegation>,
    checkpoint: Option<Vec<u8>>,
    head: u64,
    oldest: u64,
}

/// The in-memory backend.
#[derive(Debug)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore::new()
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore { inner: Mutex::new(Inner { oldest: 1, ..Inner::default() }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records held (the simulator's laziness check).
    pub fn len(&self) -> usize {
        self.lock().numbers.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for MemStore {
    async fn get(&self, csi: &Csi) -> Result<Option<NumberRecord>, StoreError> {
        Ok(self.lock().numbers.get(csi.uri()).cloned())
    }

    async fn commit(&self, c: Commit) -> Result<u64, StoreError> {
        let mut g = self.lock();
        for r in c.records {
            g.numbers.insert(r.csi.uri().to_owned(), r);
        }
        for d in c.delegations_put {
            g.delegations.insert(cover_key(&d.cover), d);
        }
        for cv in &c.delegations_remove {
            g.delegations.remove(&cover_key(cv));
        }
        match c.checkpoint {
            Some(Checkpoint::Set(b)) => g.checkpoint = Some(b),
            Some(Checkpoint::Clear) => g.checkpoint = None,
            None => {}
        }
        for (subject, op) in c.changes {
            g.head += 1;
            let seq = g.head;
            g.changes.insert(seq, Change { seq, subject, op, time: c.time });
        }
        Ok(g.head)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        Ok(self.lock().head)
    }

    async fn changes_since(&self, since: u64, limit: usize) -> Result<FeedPage, StoreError> {
        let g = self.lock();
        if since < g.head && since.saturating_add(1) < g.oldest {
            return Ok(FeedPage::Gone { oldest: g.oldest, head: g.head });
        }
        Ok(FeedPage::Changes(g.changes.range(since.saturating_add(1)..).take(limit).map(|(_, c)| c.clone()).collect()))
    }

    async fn delegations(&self) -> Result<Vec<Delegation>, StoreError> {
        Ok(self.lock().delegations.values().cloned().collect())
    }

    async fn prune(&self, keep: u64, older_than: Timestamp) -> Result<u64, StoreError> {
        let mut g = self.lock();
        let mut new_oldest = g.oldest.max(g.head.saturating_sub(keep).saturating_add(1));
        for (seq, c) in g.changes.range(new_oldest..) {
            if c.time >= older_than {
                break;
            }
            new_oldest = seq + 1;
        }
        let kept = g.changes.split_off(&new_oldest);
        let dropped = g.changes.len() as u64;
        g.changes = kept;
        g.oldest = new_oldest;
        Ok(dropped)
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let g = self.lock();
        Ok(Stats { records: g.numbers.len() as u64, changes: g.changes.len() as u64, head: g.head })
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        let g = self.lock();
        Ok(g.numbers.range(prefix.to_owned()..).take_while(|(k, _)| k.starts_with(prefix)).take(limit).map(|(_, r)| r.clone()).collect())
    }

    async fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        let g = self.lock();
        let it: Box<dyn Iterator<Item = (&String, &NumberRecord)>> = match after {
            Some(a) => Box::new(g.numbers.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))),
            None => Box::new(g.numbers.iter()),
        };
        Ok(it.take(limit).map(|(_, r)| r.clone()).collect())
    }

    async fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().checkpoint.clone())
    }
}
