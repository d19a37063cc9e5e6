//! Direct answers kept encoded, so a repeated answer costs a store
//! lookup, a comparison and a concatenation instead of decoding the record,
//! copying its signed mappings and encoding them again.
//!
//! An entry is made from one read of a record: the record's stored bytes,
//! and for each mapping an answer may carry (the MSP entries in priority
//! order, the "no providers" mapping) its signed form encoded without its
//! `expires` ([`MappingTail`]), with its signature's end and what the
//! sender-context filter needs (visibility, tags). A mapping whose signed
//! form was not at hand when the entry was made (stored unsigned and not
//! signed yet) is kept as missing.
//!
//! The cache is never the truth. An answer uses an entry only when the
//! bytes stored for the CSI now are the entry's bytes (compared, not
//! decoded: a change by provisioning, an import or another frontend on a
//! shared database makes them differ), and only when every mapping that
//! answer returns is present and signed beyond the renewal margin;
//! otherwise the answer is made the ordinary way (decode, sign on demand)
//! and makes a new entry. The per-answer parts (`expires`, the path, the
//! location used, the feed position read before the store) are written
//! for each answer. Bounded in bytes with CLOCK eviction
//! ([`crate::clock`]).

use std::sync::Arc;

use signpost_schemas::lost::{MappingTail, Tag};
use signpost_schemas::sp::Visibility;
use signpost_schemas::{Csi, Mapping, Name, SenderContext, Timestamp};

use crate::clock::ClockMap;
use crate::sigcache::CacheStats;

/// The default bound: 256 MiB (about 190 k numbers of one or two
/// entries, at the 1.4 KB each measured with `benches/answer_store.rs`).
pub const DEFAULT_BYTES: u64 = 256 << 20;

/// What an entry costs beyond its byte strings and its key (the `Arc`,
/// the vectors, the map and ring slots; a fixed estimate).
const ENTRY_OVERHEAD: usize = 160;

/// A signed mapping, encoded.
#[derive(Debug)]
pub(crate) struct Signed {
    /// When its signature ends.
    pub valid_until: Timestamp,
    /// Its encoding after `expires`.
    pub tail: MappingTail,
}

impl Signed {
    /// `m` encoded, if it is signed.
    pub fn of(m: &Mapping) -> Option<Signed> {
        let s = m.signature.as_ref()?;
        Some(Signed { valid_until: s.valid_until, tail: m.encode_tail() })
    }
    fn bytes(&self) -> usize {
        std::mem::size_of::<Signed>() + self.tail.as_str().len()
    }
}

/// One MSP entry of a record, as answers filter it.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Who may see it.
    pub visibility: Visibility,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its signed mapping (`None`: not signed when the entry was made).
    pub mapping: Option<Signed>,
}

/// The encoded answers of one stored record.
#[derive(Debug)]
pub(crate) struct Encoded {
    /// The stored bytes it was made from.
    pub raw: Box<[u8]>,
    /// The number opted out of discovery.
    pub opted_out: bool,
    /// The "no providers" mapping: `None` when the record has none,
    /// `Some(None)` when it was not signed when the entry was made.
    pub none: Option<Option<Signed>>,
    /// The MSP entries in priority order.
    pub entries: Vec<Entry>,
}

impl Encoded {
    fn bytes(&self) -> usize {
        let entry = |e: &Entry| {
            std::mem::size_of::<Entry>()
                + e.tags.iter().map(|t| std::mem::size_of_val(t) + t.as_str().len()).sum::<usize>()
                + match &e.visibility {
                    Visibility::All => 0,
                    Visibility::Only(l) => l.iter().map(|n| std::mem::size_of_val(n) + n.as_str().len()).sum(),
                }
                + e.mapping.as_ref().map_or(0, Signed::bytes)
        };
        ENTRY_OVERHEAD + self.raw.len() + self.none.as_ref().and_then(Option::as_ref).map_or(0, Signed::bytes) + self.entries.iter().map(entry).sum::<usize>()
    }
}

/// Whether an MSP entry with this visibility and these tags is returned to
/// a sender with this context: a restricted entry only to the senders it
/// names, and when both the sender and the entry have tags, only when
/// they share one.
pub fn visible_to(ctx: Option<&SenderContext>, visibility: &Visibility, tags: &[Tag]) -> bool {
    let shown = match visibility {
        Visibility::All => true,
        Visibility::Only(list) => ctx.and_then(|c| c.sender_provider.as_ref()).is_some_and(|s: &Name| list.contains(s)),
    };
    shown
        && match ctx {
            Some(c) if !c.tags.is_empty() && !tags.is_empty() => tags.iter().any(|t| c.tags.contains(t)),
            _ => true,
        }
}

/// The bounded cache of encoded answers.
pub struct AnswerCache {
    map: ClockMap<Arc<Encoded>>,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.stats();
        f.debug_struct("AnswerCache").field("entries", &s.entries).field("bytes", &s.bytes).field("bound", &self.map.bound()).finish()
    }
}

impl AnswerCache {
    /// A cache of at most `bytes` (estimated; 0 disables it).
    pub fn new(bytes: u64) -> Self {
        AnswerCache { map: ClockMap::new(bytes) }
    }

    /// Whether it keeps anything.
    pub fn enabled(&self) -> bool {
        self.map.enabled()
    }

    /// The entry of `csi`, if any (marked as used).
    pub(crate) fn get(&self, csi: &Csi) -> Option<Arc<Encoded>> {
        self.map.read(csi, |e| Some(e.clone()))
    }

    /// Keeps the entry of `csi` (replacing any).
    pub(crate) fn put(&self, csi: &Csi, e: Encoded) {
        let e = Arc::new(e);
        self.map.put(csi, |_| e, |e| e.bytes());
    }

    /// Forgets `csi` (its record no longer answers with mappings).
    pub(crate) fn remove(&self, csi: &Csi) {
        self.map.remove(csi);
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

    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }

    #[test]
    fn the_sender_context_filter() {
        let a = Name::parse("a.example").unwrap();
        let only_a = Visibility::Only(vec![a.clone()]);
        let from = |p: Option<&Name>, tags: &[&str]| SenderContext { sender_provider: p.cloned(), tags: tags.iter().map(|t| tag(t)).collect() };
        assert!(visible_to(None, &Visibility::All, &[tag("work")]));
        assert!(!visible_to(None, &only_a, &[]));
        assert!(visible_to(Some(&from(Some(&a), &[])), &only_a, &[]));
        assert!(!visible_to(Some(&from(Some(&Name::parse("b.example").unwrap()), &[])), &only_a, &[]));
        assert!(!visible_to(Some(&from(None, &["personal"])), &Visibility::All, &[tag("work")]));
        assert!(visible_to(Some(&from(None, &["personal", "work"])), &Visibility::All, &[tag("work")]));
        assert!(visible_to(Some(&from(None, &["personal"])), &Visibility::All, &[]));
    }

    #[test]
    fn stays_within_its_bound() {
        let c = AnswerCache::new(64 * 1024);
        for n in 0..2000u64 {
            let csi = Csi::from_wire(&format!("tel:+4930{n:08}")).unwrap();
            c.put(&csi, Encoded { raw: vec![1; 200].into(), opted_out: false, none: None, entries: vec![] });
            assert!(c.stats().bytes <= 64 * 1024);
        }
        let s = c.stats();
        assert!(s.entries > 50 && s.entries < 2000, "{s:?}");
        let last = Csi::from_wire("tel:+493000001999").unwrap();
        assert!(c.get(&last).is_some());
        c.remove(&last);
        assert!(c.get(&last).is_none());
        assert_eq!(AnswerCache::new(0).get(&last).map(|_| ()), None);
    }
}
