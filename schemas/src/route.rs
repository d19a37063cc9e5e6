//! Routing tables: longest E.164 prefix, nearest email domain.
//!
//! Used by the root (delegations from its table), by authorities (their
//! sub-delegations) and by resolvers (the delegation cache: a cached `+49`
//! referral answers every `+49…` number).

use std::collections::HashMap;

use crate::csi::{Csi, Domain, E164Prefix};
use crate::lost::Cover;

/// A digit trie: each node has ten children. Lookup walks at most 15 nodes
/// and never allocates.
#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    nodes: Vec<Node>,
    values: Vec<(E164Prefix, T)>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    children: [u32; 10], // 0 = none (node 0 is the root, never a child)
    value: u32,          // 0 = none, else index + 1 into `values`
}

const EMPTY: Node = Node { children: [0; 10], value: 0 };

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable { nodes: vec![EMPTY], values: Vec::new() }
    }
}

fn digit(b: u8) -> usize {
    usize::from(b.wrapping_sub(b'0')).min(9)
}

impl<T> PrefixTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces the value for `prefix`; returns the old value.
    pub fn insert(&mut self, prefix: E164Prefix, value: T) -> Option<T> {
        let mut at = 0usize;
        for b in prefix.digits().bytes() {
            let d = digit(b);
            let next = self.nodes.get(at).and_then(|n| n.children.get(d).copied()).unwrap_or(0);
            at = if next == 0 {
                let idx = self.nodes.len();
                self.nodes.push(EMPTY);
                if let Some(slot) = self.nodes.get_mut(at).and_then(|n| n.children.get_mut(d)) {
                    *slot = idx as u32;
                }
                idx
            } else {
                next as usize
            };
        }
        let slot = self.nodes.get(at).map_or(0, |n| n.value);
        if slot == 0 {
            self.values.push((prefix, value));
            let v = self.values.len() as u32;
            if let Some(n) = self.nodes.get_mut(at) {
                n.value = v;
            }
            None
        } else {
            self.values.get_mut(slot as usize - 1).map(|e| std::mem::replace(&mut e.1, value))
        }
    }

    /// The entry with the longest prefix of `digits` (no `+`).
    pub fn longest_match(&self, digits: &str) -> Option<(&E164Prefix, &T)> {
        let mut at = 0usize;
        let mut best = 0u32;
        for b in digits.bytes() {
            if !b.is_ascii_digit() {
                break;
            }
            let Some(node) = self.nodes.get(at) else { break };
            let next = node.children.get(digit(b)).copied().unwrap_or(0);
            if next == 0 {
                break;
            }
            at = next as usize;
            if let Some(n) = self.nodes.get(at)
                && n.value != 0
            {
                best = n.value;
            }
        }
        if best == 0 {
            return None;
        }
        self.values.get(best as usize - 1).map(|(p, v)| (p, v))
    }

    /// The value stored for exactly `prefix`.
    pub fn get_exact(&self, prefix: &E164Prefix) -> Option<&T> {
        self.longest_match(prefix.digits()).filter(|(p, _)| *p == prefix).map(|(_, v)| v)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.values.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    /// Every (prefix, value), in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&E164Prefix, &T)> {
        self.values.iter().map(|(p, v)| (p, v))
    }
}

/// Email domains: an exact match wins; otherwise the nearest ancestor
/// delegated with `includeSubdomains`. An ancestor delegated without it
/// covers only itself, and the search goes on above it.
#[derive(Debug, Clone)]
pub struct DomainTable<T> {
    map: HashMap<Box<str>, (Domain, bool, T)>,
}

impl<T> Default for DomainTable<T> {
    fn default() -> Self {
        DomainTable { map: HashMap::new() }
    }
}

impl<T> DomainTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, domain: Domain, include_subdomains: bool, value: T) -> Option<T> {
        let key: Box<str> = domain.as_str().into();
        self.map.insert(key, (domain, include_subdomains, value)).map(|(_, _, v)| v)
    }
    /// The delegation covering `domain` (A-label text).
    pub fn nearest(&self, domain: &str) -> Option<(&Domain, bool, &T)> {
        if let Some((d, inc, v)) = self.map.get(domain) {
            return Some((d, *inc, v));
        }
        let mut rest = domain;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some((d, true, v)) = self.map.get(parent) {
                return Some((d, true, v));
            }
            rest = parent;
        }
        None
    }
    /// Number of domains.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Both tables behind one lookup by CSI.
#[derive(Debug, Clone)]
pub struct RoutingTable<T> {
    /// E.164 prefixes.
    pub e164: PrefixTable<T>,
    /// Email domains.
    pub email: DomainTable<T>,
}

impl<T> Default for RoutingTable<T> {
    fn default() -> Self {
        RoutingTable { e164: PrefixTable::new(), email: DomainTable::new() }
    }
}

impl<T> RoutingTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Inserts under a cover; returns the old value.
    pub fn insert(&mut self, cover: Cover, value: T) -> Option<T> {
        match cover {
            Cover::Prefix(p) => self.e164.insert(p, value),
            Cover::Domain { domain, include_subdomains } => self.email.insert(domain, include_subdomains, value),
        }
    }
    /// The most specific entry covering `csi`, with its cover.
    pub fn lookup(&self, csi: &Csi) -> Option<(Cover, &T)> {
        match csi {
            Csi::E164(n) => self.e164.longest_match(n.digits()).map(|(p, v)| (Cover::Prefix(p.clone()), v)),
            Csi::Email(_) | Csi::Mui(_) => self.email.nearest(csi.routing_domain().map_or("", |d| d.as_str())).map(|(d, inc, v)| {
                (Cover::Domain { domain: d.clone(), include_subdomains: inc }, v)
            }),
        }
    }
    /// Like [`lookup`](Self::lookup) without building the cover.
    pub fn lookup_value(&self, csi: &Csi) -> Option<&T> {
        match csi {
            Csi::E164(n) => self.e164.longest_match(n.digits()).map(|(_, v)| v),
            Csi::Email(_) | Csi::Mui(_) => self.email.nearest(csi.routing_domain().map_or("", |d| d.as_str())).map(|(_, _, v)| v),
        }
    }
    /// Entries in both tables.
    pub fn len(&self) -> usize {
        self.e164.len() + self.email.len()
    }
    /// Whether both are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> E164Prefix {
        E164Prefix::parse(s).unwrap()
    }
    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = PrefixTable::new();
        t.insert(p("+1"), "nanp");
        t.insert(p("+1204"), "manitoba");
        t.insert(p("+49"), "de");
        t.insert(p("+4915"), "de-mobile");
        assert_eq!(t.longest_match("12045550123").map(|x| *x.1), Some("manitoba"));
        assert_eq!(t.longest_match("12125550123").map(|x| *x.1), Some("nanp"));
        assert_eq!(t.longest_match("4915112345678").map(|x| *x.1), Some("de-mobile"));
        assert_eq!(t.longest_match("493012345678").map(|x| x.0.as_str()), Some("+49"));
        assert_eq!(t.longest_match("33123456789"), None);
        assert_eq!(t.insert(p("+49"), "de2"), Some("de"));
        assert_eq!(t.get_exact(&p("+49")), Some(&"de2"));
        assert_eq!(t.get_exact(&p("+491")), None);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn nearest_domain() {
        let mut t = DomainTable::new();
        t.insert(d("example.com"), false, 1);
        t.insert(d("com"), true, 2);
        t.insert(d("corp.example.net"), true, 3);
        assert_eq!(t.nearest("example.com").map(|x| *x.2), Some(1));
        // example.com covers only itself, so a subdomain falls to "com".
        assert_eq!(t.nearest("mail.example.com").map(|x| *x.2), Some(2));
        assert_eq!(t.nearest("a.b.corp.example.net").map(|x| *x.2), Some(3));
        assert_eq!(t.nearest("example.net"), None);
    }

    #[test]
    fn by_csi() {
        let mut t = RoutingTable::new();
        t.insert(Cover::Prefix(p("+49")), "de");
        t.insert(Cover::Domain { domain: d("example.com"), include_subdomains: true }, "ex");
        let n = Csi::from_wire("tel:+4915112345678").unwrap();
        let (cover, v) = t.lookup(&n).unwrap();
        assert_eq!((cover.to_string(), *v), ("+49".to_owned(), "de"));
        let e = Csi::from_wire("mailto:bob@eu.example.com").unwrap();
        assert_eq!(t.lookup(&e).unwrap().0.to_string(), "*.example.com");
        assert!(t.lookup(&Csi::from_wire("mailto:bob@example.org").unwrap()).is_none());
    }
}
