//! The caches the state machine owns, with time as an argument:
//!
//! - [`Answers`]: answers per identifier and *variant* (sender context and
//!   service), grouped by identifier so that an invalidation removes every
//!   variant of one identifier in one step and no index can fall out of
//!   step with the entries (there is no second index: the group *is* the
//!   index). Bounded by entries and by bytes; CLOCK (second-chance)
//!   eviction over groups, which also reclaims groups whose last entry is
//!   past its stale window as the hand passes.
//! - [`Delegations`]: referrals by cover (prefix-trie semantics through
//!   [`RoutingTable`]), each remembering which server taught it, so that a
//!   resync or a delegation change at one authority flushes only what that
//!   authority said.

use std::collections::HashMap;

use bytes::Bytes;
use signpost_schemas::lost::Tag;
use signpost_schemas::route::RoutingTable;
use signpost_schemas::{Cover, Csi, Delegation, FindService, Name, SenderContext, Timestamp, Uri};

/// What besides the identifier selects an answer: the sender's provider,
/// its wanted tags (as a set) and the service.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Variant {
    /// The sender's MSP id.
    pub sender: Option<Name>,
    /// Wanted tags, sorted, without repeats.
    pub tags: Vec<Tag>,
    /// The service asked for.
    pub service: Option<Uri>,
}

impl Variant {
    /// The variant a request asks for.
    pub fn of(f: &FindService) -> Variant {
        let (sender, mut tags) = match &f.context {
            Some(c) => (c.sender_provider.clone(), c.tags.clone()),
            None => (None, Vec::new()),
        };
        tags.sort_unstable();
        tags.dedup();
        Variant { sender, tags, service: f.service.clone() }
    }
    /// Whether `f` asks for this variant (no allocation: the hit path).
    pub fn matches(&self, f: &FindService) -> bool {
        if self.service != f.service {
            return false;
        }
        let (sender, tags): (Option<&Name>, &[Tag]) = match &f.context {
            Some(c) => (c.sender_provider.as_ref(), &c.tags),
            None => (None, &[]),
        };
        sender == self.sender.as_ref() && tags.iter().all(|t| self.tags.contains(t)) && self.tags.iter().all(|t| tags.contains(t))
    }
    /// The sender context to send upstream for this variant.
    pub fn context(&self) -> Option<SenderContext> {
        (self.sender.is_some() || !self.tags.is_empty()).then(|| SenderContext { sender_provider: self.sender.clone(), tags: self.tags.clone() })
    }
}

/// A cached answer.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Which variant it answers.
    pub variant: Variant,
    /// The document as served to clients.
    pub body: Bytes,
    /// The location id written in `body`'s `locationUsed`, and where its
    /// value sits in `body` (so another id can be spliced in).
    pub loc: String,
    /// Byte range of `loc` inside `body`.
    pub loc_span: Option<(usize, usize)>,
    /// Mappings (`true`) or `notFound` (`false`).
    pub found: bool,
    /// Fresh until.
    pub fresh_until: Timestamp,
    /// Kept (for serve-stale) until.
    pub stale_until: Timestamp,
    /// The server that answered.
    pub authority: Name,
    /// The authorities that referred to it (not the root), outermost first.
    pub chain: Vec<Name>,
    /// The answering authority's feed position when it read the answer.
    pub read_at: Option<u64>,
    /// Hits since stored.
    pub hits: u32,
}

impl Entry {
    /// Bytes this entry is charged with (its body, strings and a fixed
    /// overhead for the structures around it).
    pub fn charge(&self) -> usize {
        const OVERHEAD: usize = 192;
        self.body.len() + self.loc.len() + self.authority.as_str().len() + self.chain.iter().map(|n| n.as_str().len() + 24).sum::<usize>() + OVERHEAD
    }
    /// Whether the answer came (directly or through a referral) from `a`.
    pub fn learned_from(&self, a: &Name) -> bool {
        &self.authority == a || self.chain.contains(a)
    }
}

#[derive(Debug)]
struct Group {
    csi: Csi,
    entries: Vec<Entry>,
    referenced: bool,
}

/// Cached answers, grouped by identifier.
#[derive(Debug)]
pub struct Answers {
    map: HashMap<Csi, usize>,
    slots: Vec<Option<Group>>,
    free: Vec<usize>,
    hand: usize,
    entries: usize,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Answers {
    /// An empty cache bounded by entry count and bytes.
    pub fn new(max_entries: usize, max_bytes: usize) -> Answers {
        Answers { map: HashMap::new(), slots: Vec::new(), free: Vec::new(), hand: 0, entries: 0, bytes: 0, max_entries: max_entries.max(1), max_bytes: max_bytes.max(1) }
    }
    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
    /// Bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entry for `csi` that `f` asks for, marked as used.
    pub fn get(&mut self, csi: &Csi, f: &FindService) -> Option<&mut Entry> {
        let i = *self.map.get(csi)?;
        let g = self.slots.get_mut(i)?.as_mut()?;
        g.referenced = true;
        g.entries.iter_mut().find(|e| e.variant.matches(f))
    }
    /// The entry for `csi` and `v`, without marking it.
    pub fn peek(&self, csi: &Csi, v: &Variant) -> Option<&Entry> {
        let i = *self.map.get(csi)?;
        self.slots.get(i)?.as_ref()?.entries.iter().find(|e| &e.variant == v)
    }

    /// Stores (or replaces) the entry for `csi` and its variant, then evicts
    /// down to the bounds. `now` lets the eviction hand reclaim groups past
    /// their stale window first.
    pub fn insert(&mut self, csi: &Csi, e: Entry, now: Timestamp) {
        let charge = e.charge();
        match self.map.get(csi).copied() {
            Some(i) => {
                if let Some(Some(g)) = self.slots.get_mut(i) {
                    g.referenced = true;
                    match g.entries.iter_mut().find(|x| x.variant == e.variant) {
                        Some(old) => {
                            self.bytes = self.bytes.saturating_sub(old.charge()) + charge;
                            *old = e;
                        }
                        None => {
                            g.entries.push(e);
                            self.entries += 1;
                            self.bytes += charge;
                        }
                    }
                }
            }
            None => {
                let g = Group { csi: csi.clone(), entries: vec![e], referenced: false };
                let i = match self.free.pop() {
                    Some(i) => {
                        if let Some(s) = self.slots.get_mut(i) {
                            *s = Some(g);
                        }
                        i
                    }
                    None => {
                        self.slots.push(Some(g));
                        self.slots.len() - 1
                    }
                };
                self.map.insert(csi.clone(), i);
                self.entries += 1;
                self.bytes += charge;
            }
        }
        // Incremental reclamation: look at two slots per insert.
        for _ in 0..2 {
            self.sweep_one(now, false);
        }
        let mut budget = self.slots.len().saturating_mul(2) + 2;
        while (self.entries > self.max_entries || self.bytes > self.max_bytes) && budget > 0 {
            self.sweep_one(now, true);
            budget -= 1;
        }
    }

    /// Advances the CLOCK hand by one slot: an expired group is removed; with
    /// `evict`, an unreferenced group is removed too (a referenced one gets
    /// its second chance).
    fn sweep_one(&mut self, now: Timestamp, evict: bool) {
        if self.slots.is_empty() {
            return;
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
        let i = self.hand;
        self.hand += 1;
        let remove = match self.slots.get_mut(i) {
            Some(Some(g)) => {
                if g.entries.iter().all(|e| e.stale_until < now) {
                    true
                } else if evict {
                    if g.referenced {
                        g.referenced = false;
                        false
                    } else {
                        true
                    }
                } else {
                    false
                }
            }
            _ => false,
        };
        if remove {
            self.remove_slot(i);
        }
    }

    fn remove_slot(&mut self, i: usize) -> Option<Group> {
        let g = self.slots.get_mut(i)?.take()?;
        self.map.remove(&g.csi);
        self.free.push(i);
        self.entries -= g.entries.len();
        self.bytes = self.bytes.saturating_sub(g.entries.iter().map(Entry::charge).sum());
        Some(g)
    }

    /// Removes the entries of `csi` that `pred` selects; returns them.
    pub fn remove_where(&mut self, csi: &Csi, mut pred: impl FnMut(&Entry) -> bool) -> Vec<Entry> {
        let Some(&i) = self.map.get(csi) else { return Vec::new() };
        let Some(Some(g)) = self.slots.get_mut(i) else { return Vec::new() };
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut g.entries).into_iter().partition(|e| pred(e));
        g.entries = kept;
        self.entries -= gone.len();
        self.bytes = self.bytes.saturating_sub(gone.iter().map(Entry::charge).sum());
        if g.entries.is_empty() {
            self.remove_slot(i);
        }
        gone
    }

    /// Removes every entry (of any identifier) that `pred` selects; returns
    /// how many. Walks the whole cache: for resyncs and delegation changes.
    pub fn retain(&mut self, mut pred: impl FnMut(&Csi, &Entry) -> bool) -> usize {
        let mut removed = 0;
        for i in 0..self.slots.len() {
            let Some(Some(g)) = self.slots.get_mut(i) else { continue };
            let before = g.entries.len();
            let csi = g.csi.clone();
            let mut freed = 0usize;
            g.entries.retain(|e| {
                let keep = pred(&csi, e);
                if !keep {
                    freed += e.charge();
                }
                keep
            });
            let n = before - g.entries.len();
            let empty = g.entries.is_empty();
            removed += n;
            self.entries -= n;
            self.bytes = self.bytes.saturating_sub(freed);
            if empty {
                self.remove_slot(i);
            }
        }
        removed
    }

    /// Every (identifier, entry) pair: for inspection and tests.
    pub fn iter(&self) -> impl Iterator<Item = (&Csi, &Entry)> {
        self.slots.iter().flatten().flat_map(|g| g.entries.iter().map(move |e| (&g.csi, e)))
    }
}

/// A referral as learned.
#[derive(Clone, Debug)]
pub struct Learned {
    /// The delegation.
    pub delegation: Delegation,
    /// Until when it may be used.
    pub until: Timestamp,
    /// The server that taught it (the root or an authority).
    pub from: Name,
    /// The authorities that referred to `from` (not the root).
    pub chain: Vec<Name>,
}

/// Cached referrals by cover.
#[derive(Debug)]
pub struct Delegations {
    by_cover: HashMap<Cover, Learned>,
    table: RoutingTable<Learned>,
    max: usize,
}

impl Delegations {
    /// An empty cache of at most `max` referrals.
    pub fn new(max: usize) -> Delegations {
        Delegations { by_cover: HashMap::new(), table: RoutingTable::new(), max: max.max(1) }
    }
    /// Referrals held.
    pub fn len(&self) -> usize {
        self.by_cover.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.by_cover.is_empty()
    }
    /// The most specific live referral covering `csi`.
    pub fn lookup(&self, csi: &Csi, now: Timestamp) -> Option<&Learned> {
        self.table.lookup_value(csi).filter(|l| l.until > now)
    }
    /// Stores a referral (replacing one for the same cover).
    pub fn insert(&mut self, l: Learned, now: Timestamp) {
        if self.by_cover.len() >= self.max && !self.by_cover.contains_key(&l.delegation.cover) {
            self.retain(|x| x.until > now);
            if self.by_cover.len() >= self.max {
                // Every referral is live and the table is full: start over
                // (they are relearned from the root or the preloaded table).
                self.retain(|_| false);
            }
        }
        self.table.insert(l.delegation.cover.clone(), l.clone());
        self.by_cover.insert(l.delegation.cover.clone(), l);
    }
    /// Keeps the referrals `keep` selects; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&Learned) -> bool) -> usize {
        let before = self.by_cover.len();
        self.by_cover.retain(|_, l| keep(l));
        let n = before - self.by_cover.len();
        if n > 0 {
            let mut t = RoutingTable::new();
            for (c, l) in &self.by_cover {
                t.insert(c.clone(), l.clone());
            }
            self.table = t;
        }
        n
    }
}

/// Whether a change of `changed` (a delegation) can affect referrals or
/// answers under `other`: one covers the other.
pub fn covers_cover(changed: &Cover, other: &Cover) -> bool {
    match (changed, other) {
        (Cover::Prefix(a), Cover::Prefix(b)) => a.as_str().starts_with(b.as_str()) || b.as_str().starts_with(a.as_str()),
        (Cover::Domain { domain: a, .. }, Cover::Domain { domain: b, .. }) => {
            let (a, b) = (a.as_str(), b.as_str());
            a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
        }
        _ => false,
    }
}
