//! Signatures made on demand, kept in memory.
//!
//! A bulk import stores mappings unsigned; the first answer that needs one
//! signs it and keeps the signed mapping here, so the next answer for the
//! same content copies it instead of signing again. The cache is bounded
//! in bytes (an estimate of the heap each entry holds, counted with its
//! key and bookkeeping) and evicts with the CLOCK (second chance) policy
//! ([`crate::clock`]).
//!
//! The cache is never the truth: an entry is used only when its content
//! equals the stored mapping's (everything but `expires` and the
//! signature) and its signature is valid beyond the renewal margin, so a
//! change of the record, on this frontend or another one sharing the
//! database, simply stops matching and the entry ages out.

use signpost_schemas::lost::MappingBody;
use signpost_schemas::{Csi, Mapping, Timestamp};

use crate::clock::ClockMap;

/// What a cache entry costs beyond its strings and its key: the map slot,
/// the queue slot and the `Vec` of mappings (a fixed estimate).
const ENTRY_OVERHEAD: usize = 96;

/// The default bound: 64 MiB.
pub const DEFAULT_BYTES: u64 = 64 << 20;

/// The bounded cache of signed mappings: per CSI, one signed mapping per
/// `source_id`.
pub struct SignatureCache {
    map: ClockMap<Vec<Mapping>>,
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

impl SignatureCache {
    /// A cache of at most `bytes` (estimated; 0 disables it).
    pub fn new(bytes: u64) -> Self {
        SignatureCache { map: ClockMap::new(bytes) }
    }

    /// The bound, bytes.
    pub fn bound(&self) -> u64 {
        self.map.bound()
    }

    /// The cached signed mapping with `unsigned`'s content whose signature
    /// is valid at `valid_at`, if any.
    pub fn get(&self, csi: &Csi, unsigned: &Mapping, valid_at: Timestamp) -> Option<Mapping> {
        self.map.read(csi, |ms| ms.iter().find(|m| same_content(m, unsigned) && m.signature.as_ref().is_some_and(|s| s.valid_until >= valid_at)).cloned())
    }

    /// Keeps a signed mapping (replacing the one with its `source_id`).
    pub fn put(&self, csi: &Csi, signed: Mapping) {
        self.map.put(
            csi,
            |old| {
                let mut ms = old.unwrap_or_default();
                ms.retain(|m| m.source_id != signed.source_id);
                ms.push(signed);
                ms
            },
            |ms| ENTRY_OVERHEAD + ms.iter().map(mapping_bytes).sum::<usize>(),
        );
    }

    /// Entries and bytes now.
    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = self.map.stats();
        CacheStats { entries, bytes }
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
