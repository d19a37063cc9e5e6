//! A map from CSI to a value, bounded in bytes, evicting with the CLOCK
//! (second chance) policy: an entry read since the hand last passed it
//! survives one more turn. Sharded, each shard with its own lock and an
//! equal part of the bound. What the authority's in-memory caches (signed
//! mappings, encoded answers) are built on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use signpost_schemas::Csi;

/// Shards.
const SHARDS: usize = 16;

struct Slot<V> {
    value: V,
    bytes: usize,
    referenced: bool,
}

struct Shard<V> {
    map: HashMap<Csi, Slot<V>>,
    /// The CLOCK: every key in `map` once, the hand at the front.
    ring: VecDeque<Csi>,
    bytes: usize,
}

/// The bounded map.
pub(crate) struct ClockMap<V> {
    shards: Vec<Mutex<Shard<V>>>,
    /// Bytes per shard at most.
    per_shard: usize,
}

/// What a key costs beyond its value: twice the CSI (the map's key and the
/// ring's).
pub(crate) fn key_bytes(c: &Csi) -> usize {
    2 * (std::mem::size_of::<Csi>() + c.uri().len())
}

impl<V> ClockMap<V> {
    /// At most `bytes` (as the callers estimate them; 0 keeps nothing).
    pub(crate) fn new(bytes: u64) -> Self {
        let per_shard = usize::try_from(bytes / SHARDS as u64).unwrap_or(usize::MAX);
        ClockMap { shards: (0..SHARDS).map(|_| Mutex::new(Shard { map: HashMap::new(), ring: VecDeque::new(), bytes: 0 })).collect(), per_shard }
    }

    /// The bound, bytes.
    pub(crate) fn bound(&self) -> u64 {
        self.per_shard as u64 * SHARDS as u64
    }

    /// Whether anything is kept.
    pub(crate) fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// The shard of `csi`, locked (always `Some`: the index is taken
    /// modulo the shard count).
    fn shard(&self, csi: &Csi) -> Option<MutexGuard<'_, Shard<V>>> {
        use std::hash::BuildHasher;
        // A fixed hasher: the shard only spreads the lock, the map inside
        // uses the randomized one.
        let h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(csi);
        let m = self.shards.get((h as usize) % self.shards.len().max(1))?;
        Some(match m.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        })
    }

    /// `f` of the value of `csi`, if there is one; a `Some` from `f` marks
    /// the entry as used (it survives the hand's next pass).
    pub(crate) fn read<R>(&self, csi: &Csi, f: impl FnOnce(&V) -> Option<R>) -> Option<R> {
        if self.per_shard == 0 {
            return None;
        }
        let mut g = self.shard(csi)?;
        let slot = g.map.get_mut(csi)?;
        let r = f(&slot.value)?;
        slot.referenced = true;
        Some(r)
    }

    /// Sets the value of `csi` to `update(the old value)`, costing `size`
    /// bytes of it (plus the key); then evicts at the hand until the shard
    /// is within its bound. A value larger than a shard is not kept (and
    /// the old one goes).
    pub(crate) fn put(&self, csi: &Csi, update: impl FnOnce(Option<V>) -> V, size: impl Fn(&V) -> usize) {
        if self.per_shard == 0 {
            return;
        }
        let Some(mut g) = self.shard(csi) else { return };
        let sh = &mut *g;
        let old = sh.map.remove(csi);
        let known = old.is_some();
        let referenced = old.as_ref().is_some_and(|s| s.referenced);
        if let Some(s) = &old {
            sh.bytes -= s.bytes;
        }
        let value = update(old.map(|s| s.value));
        let bytes = size(&value) + key_bytes(csi);
        if bytes > self.per_shard {
            if known {
                sh.ring.retain(|k| k != csi);
            }
            return;
        }
        sh.map.insert(csi.clone(), Slot { value, bytes, referenced });
        if !known {
            sh.ring.push_back(csi.clone());
        }
        sh.bytes += bytes;
        // CLOCK: evict unreferenced entries at the hand until within bound
        // (each referenced one gets its bit cleared and a second turn, so
        // this ends within two passes).
        while sh.bytes > self.per_shard {
            let Some(k) = sh.ring.pop_front() else { break };
            let others = sh.map.len() > 1;
            let keep = match sh.map.get_mut(&k) {
                Some(slot) if slot.referenced && &k != csi => {
                    slot.referenced = false;
                    true
                }
                // The entry just put goes last, after every other.
                Some(_) if &k == csi && others => true,
                Some(_) => false,
                None => continue,
            };
            if keep {
                sh.ring.push_back(k);
            } else if let Some(slot) = sh.map.remove(&k) {
                sh.bytes -= slot.bytes;
            }
        }
    }

    /// Forgets `csi`.
    pub(crate) fn remove(&self, csi: &Csi) {
        let Some(mut g) = self.shard(csi) else { return };
        let sh = &mut *g;
        if let Some(s) = sh.map.remove(csi) {
            sh.bytes -= s.bytes;
            sh.ring.retain(|k| k != csi);
        }
    }

    /// Entries and bytes now.
    pub(crate) fn stats(&self) -> (usize, usize) {
        let (mut entries, mut bytes) = (0, 0);
        for m in &self.shards {
            let g = match m.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            entries += g.map.len();
            bytes += g.bytes;
        }
        (entries, bytes)
    }
}
