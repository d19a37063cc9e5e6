//! Signatures made on demand, kept in memory.
//!
//! A bulk import stores mappings unsigned; the first answer that needs one
//! signs it and keeps the signed mapping here, so the next answer for the
//! same content copies it instead of signing again. The cache is bounded
//! in bytes (an estimate of the heap each entry holds, counted with its
//! key and bookkeeping) and evicts with the CLOCK (second chance) policy:
//! an entry read since the hand last passed it survives one more turn.
//!
//! The cache is never the truth: an entry is used only when its content
//! equals the stored mapping's (everything but `expires` and the
//! signature) and its signature is valid beyond the renewal margin, so a
//! change of the record, on this frontend or another one sharing the
//! database, simply stops matching and the entry ages out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use signpost_schemas::lost::MappingBody;
use signpost_schemas::{Csi, Mapping, Timestamp};

/// Shards (each with its own lock and an equal part of the bound).
const SHARDS: usize = 16;

/// What a cache entry costs beyond its strings: the map slot, the queue
/// slot and the `Vec` of mappings (a fixed estimate).
const ENTRY_OVERHEAD: usize = 96;

/// The default bound: 64 MiB.
pub const DEFAULT_BYTES: u64 = 64 << 20;

struct Slot {
    /// The signed mappings of one CSI, one per `source_id`.
    mappings: Vec<Mapping>,
    bytes: usize,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Csi, Slot>,
    /// The CLOCK: every key in `map` once, the hand at the front.
    ring: VecDeque<Csi>,
    bytes: usize,
}

/// The bounded cache of signed mappings.
pub struct SignatureCache {
    shards: Vec<Mutex<Shard>>,
    /// Bytes per shard at most.
    per_shard: usize,
}

impl std::fmt::Debug for SignatureCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.stats();
        f.debug_struct("SignatureCache").field("entries", &s.entries).field("bytes", &s.bytes).field("bound", &self.bound()).finish()
    }
}

/// How full the cache is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// CSIs with at least one cached signed mapping.
    pub entries: usize,
    /// Their estimated bytes.
    pub bytes: usize,
}

/// The estimated heap bytes of a mapping (strings, lists, signature).
pub fn mapping_bytes(m: &Mapping) -> usize {
    let mut n = std::mem::size_of::<Mapping>() + m.source.as_str().len() + m.source_id.len();
    n += m.display_names.iter().map(|d| std::mem::size_of_val(d) + d.text.len() + d.lang.len()).sum::<usize>();
    n += m.service.as_ref().map_or(0, |u| u.as_str().len());
    n += m.uris.iter().map(|u| std::mem::size_of_val(u) + u.as_str().len()).sum::<usize>();
    if let MappingBody::Provider(p) = &m.body {
        n += p.id.as_str().len() + p.tags.iter().map(|t| std::mem::size_of_val(t) + t.as_str().len()).sum::<usize>();
    }
    if let Some(s) = &m.signature {
        n += s.key_id.as_str().len() + s.value.len();
    }
    n
}

/// Whether `a` and `b` say the same (everything a signature covers; the
/// per-answer `expires` and the signature itself aside).
pub fn same_content(a: &Mapping, b: &Mapping) -> bool {
    a.last_updated == b.last_updated
        && a.source_id == b.source_id
        && a.source == b.source
        && a.body == b.body
        && a.uris == b.uris
        && a.display_names == b.display_names
        && a.service == b.service
}

fn csi_bytes(c: &Csi) -> usize {
    // Twice: the map's key and the ring's.
    2 * (std::mem::size_of::<Csi>() + c.uri().len())
}

impl SignatureCache {
    /// A cache of at most `bytes` (estimated; 0 disables it).
    pub fn new(bytes: u64) -> Self {
        let per_shard = usize::try_from(bytes / SHARDS as u64).unwrap_or(usize::MAX);
        SignatureCache { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), per_shard }
    }

    /// The bound, bytes.
    pub fn bound(&self) -> u64 {
        self.per_shard as u64 * SHARDS as u64
    }

    /// The shard of `csi`, locked (always `Some`: the index is taken
    /// modulo the shard count).
    fn shard(&self, csi: &Csi) -> Option<std::sync::MutexGuard<'_, Shard>> {
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

    /// The cached signed mapping with `unsigned`'s content whose signature
    /// is valid at `valid_at`, if any.
    pub fn get(&self, csi: &Csi, unsigned: &Mapping, valid_at: Timestamp) -> Option<Mapping> {
        if self.per_shard == 0 {
            return None;
        }
        let mut g = self.shard(csi)?;
        let slot = g.map.get_mut(csi)?;
        let m = slot.mappings.iter().find(|m| same_content(m, unsigned) && m.signature.as_ref().is_some_and(|s| s.valid_until >= valid_at))?;
        slot.referenced = true;
        Some(m.clone())
    }

    /// Keeps a signed mapping (replacing the one with its `source_id`).
    pub fn put(&self, csi: &Csi, signed: Mapping) {
        let cost = mapping_bytes(&signed);
        if self.per_shard == 0 || cost + ENTRY_OVERHEAD + csi_bytes(csi) > self.per_shard {
            return;
        }
        let Some(mut g) = self.shard(csi) else { return };
        let sh = &mut *g;
        match sh.map.get_mut(csi) {
            Some(slot) => {
                let old = slot.mappings.iter().position(|m| m.source_id == signed.source_id);
                if let Some(i) = old {
                    let gone = mapping_bytes(&slot.mappings.swap_remove(i));
                    slot.bytes -= gone;
                    sh.bytes -= gone;
                }
                slot.mappings.push(signed);
                slot.bytes += cost;
                sh.bytes += cost;
            }
            None => {
                let bytes = cost + ENTRY_OVERHEAD + csi_bytes(csi);
                sh.map.insert(csi.clone(), Slot { mappings: vec![signed], bytes, referenced: false });
                sh.ring.push_back(csi.clone());
                sh.bytes += bytes;
            }
        }
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

    /// Entries and bytes now.
    pub fn stats(&self) -> CacheStats {
        let mut s = CacheStats { entries: 0, bytes: 0 };
        for m in &self.shards {
            let g = match m.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            s.entries += g.map.len();
            s.bytes += g.bytes;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_schemas::lost::{Epoch, KeyId, NoProvidersReason, Signature};
    use signpost_schemas::Name;

    fn signed(n: u64, until: u64) -> (Csi, Mapping) {
        let csi = Csi::from_wire(&format!("tel:+4930{n:08}")).unwrap();
        let mut m = crate::model::none_mapping(&Name::parse("a.example").unwrap(), Epoch(1), NoProvidersReason::RecipientPreferences, Timestamp::from_millis(1000));
        m.signature = Some(Signature { key_id: KeyId::parse("sha256-00112233445566778899aabbccddeeff").unwrap(), signed_at: Timestamp::from_millis(1000), valid_until: Timestamp::from_millis(until), value: vec![7; 70] });
        (csi, m)
    }

    #[test]
    fn stays_within_its_bound_and_keeps_hot_entries() {
        let c = SignatureCache::new(64 * 1024);
        let (hot, hm) = signed(0, 10_000);
        c.put(&hot, hm.clone());
        for n in 1..5000 {
            let (k, m) = signed(n, 10_000);
            c.put(&k, m);
            assert!(c.get(&hot, &hm, Timestamp::from_millis(5000)).is_some(), "the hot entry survives (read between inserts)");
            assert!(c.stats().bytes <= 64 * 1024);
        }
        let s = c.stats();
        assert!(s.entries > 50 && s.entries < 5000, "{s:?}");
        // A cold early entry is gone.
        let (k, m) = signed(1, 10_000);
        assert!(c.get(&k, &m, Timestamp::from_millis(5000)).is_none());
    }

    #[test]
    fn matches_content_and_validity_only() {
        let c = SignatureCache::new(1 << 20);
        let (k, m) = signed(1, 10_000);
        c.put(&k, m.clone());
        let mut unsigned = m.clone();
        unsigned.signature = None;
        assert_eq!(c.get(&k, &unsigned, Timestamp::from_millis(9000)), Some(m.clone()));
        // Expiring within the margin: not used.
        assert!(c.get(&k, &unsigned, Timestamp::from_millis(10_001)).is_none());
        // Other content (a later lastUpdated): not used.
        let mut changed = unsigned.clone();
        changed.last_updated = Timestamp::from_millis(2000);
        assert!(c.get(&k, &changed, Timestamp::from_millis(9000)).is_none());
        // A replacement for the same source_id takes the old one's place.
        let mut m2 = m.clone();
        m2.last_updated = Timestamp::from_millis(2000);
        c.put(&k, m2.clone());
        assert_eq!(c.stats().entries, 1);
        assert_eq!(c.get(&k, &changed, Timestamp::from_millis(9000)), Some(m2));
        assert!(c.get(&k, &unsigned, Timestamp::from_millis(9000)).is_none());
        // Disabled.
        let off = SignatureCache::new(0);
        off.put(&k, m);
        assert_eq!(off.stats().entries, 0);
    }
}
