//! The observer table: which tier learned what, computed from what each
//! tier recorded on the wire (`signpost_net::observe`), never asserted.
//!
//! Every tier keeps salted hashes of the client certificate ids and
//! addresses it saw, the identifiers asked about and the sender's
//! providers named in sender contexts. The APs (the testbed's lookup
//! clients) record what they sent. A tier then learned:
//!
//! - `ap-identity` when its client ids hold the hash of some AP's
//!   certificate id;
//! - `sender-provider` when its sender providers hold the hash of a
//!   provider an AP named in its context, or its client ids hold the hash
//!   of a resolver's id (a resolver is run by the sender's provider for
//!   its own users, so seeing the resolver is seeing the provider);
//! - `recipient-csi` when its identifiers hold the hash of an identifier
//!   an AP asked about.
//!
//! Addresses are recorded but not used: on loopback every party is
//! 127.0.0.1, so an address names no one here (in a deployment the relay
//! hides the AP's address the same way it hides its certificate: the
//! gateway's TCP peer is the relay).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use signpost_net::observe::Seen;

/// The AP's identity (its client certificate).
pub const AP_IDENTITY: &str = "ap-identity";
/// The sender's provider.
pub const SENDER_PROVIDER: &str = "sender-provider";
/// The recipient's identifier.
pub const RECIPIENT_CSI: &str = "recipient-csi";
/// The three, in table order.
pub const FACTS: [&str; 3] = [AP_IDENTITY, SENDER_PROVIDER, RECIPIENT_CSI];

/// Tiers in table order.
pub const TIERS: [&str; 5] = ["ap", "relay", "resolver", "root", "authority"];

/// The modes the live mode runs: APs ask the resolvers directly, or
/// through an Oblivious HTTP relay.
pub const MODES: [&str; 2] = ["direct", "relay"];

/// What one tier learned in one run, and from how much.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierView {
    /// Of [`FACTS`], what its records show it learned.
    pub learned: BTreeSet<String>,
    /// Requests it recorded.
    pub requests: u64,
    /// Distinct client certificate ids it saw.
    pub clients: usize,
    /// Distinct identifiers it saw.
    pub identifiers: usize,
    /// Distinct values its recorder could not keep (full): 0 means the
    /// verdicts rest on complete records.
    pub dropped: u64,
}

/// What `seen` shows a tier learned, against what the APs recorded
/// (`aps`) and the resolvers' ids (hashed like the records).
pub fn learned(seen: &Seen, aps: &Seen, resolver_ids: &BTreeSet<String>) -> TierView {
    let mut l = BTreeSet::new();
    if !seen.clients.is_disjoint(&aps.clients) {
        l.insert(AP_IDENTITY.to_owned());
    }
    if !seen.senders.is_disjoint(&aps.senders) || !seen.clients.is_disjoint(resolver_ids) {
        l.insert(SENDER_PROVIDER.to_owned());
    }
    if !seen.identifiers.is_disjoint(&aps.identifiers) {
        l.insert(RECIPIENT_CSI.to_owned());
    }
    TierView { learned: l, requests: seen.requests, clients: seen.clients.len(), identifiers: seen.identifiers.len(), dropped: seen.dropped }
}

/// `report.json`'s `privacy`: mode → tier → what it learned, the union
/// over the mode's runs.
pub fn table<'a>(runs: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, TierView>)>) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut t: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (mode, tiers) in runs {
        let m = t.entry(mode.to_owned()).or_default();
        for (tier, v) in tiers {
            m.entry(tier.clone()).or_default().extend(v.learned.iter().cloned());
        }
    }
    t
}

/// A fact as the report's tables name it.
pub fn fact_name(f: &str) -> &'static str {
    match f {
        AP_IDENTITY => "AP identity",
        SENDER_PROVIDER => "sender's provider",
        RECIPIENT_CSI => "recipient CSI",
        _ => "?",
    }
}

/// A mode as the report names it.
pub fn mode_name(m: &str) -> &'static str {
    match m {
        "direct" => "direct",
        "relay" => "through a relay (OHTTP)",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_net::observe::Observer;

    #[test]
    fn what_a_tier_learned_follows_from_its_records() {
        let aps = Observer::new();
        aps.see(Some("ap0.example"), None, ["tel:+4915112345678"], Some("msp.example"));
        let aps = aps.seen();
        let resolvers = BTreeSet::from([signpost_net::csi_tag("resolver0.example")]);
        // A relay: the AP, nothing it could read.
        let relay = Observer::new();
        relay.see(Some("ap0.example"), Some([127, 0, 0, 1].into()), None, None);
        assert_eq!(learned(&relay.seen(), &aps, &resolvers).learned, BTreeSet::from([AP_IDENTITY.to_owned()]));
        // A gateway behind it: the relay, the identifier, the context.
        let gw = Observer::new();
        gw.see(Some("relay0.example"), None, ["tel:+4915112345678"], Some("msp.example"));
        assert_eq!(learned(&gw.seen(), &aps, &resolvers).learned, BTreeSet::from([SENDER_PROVIDER.to_owned(), RECIPIENT_CSI.to_owned()]));
        // An authority: the resolver (its operator is the sender's provider), an identifier no AP asked about.
        let a = Observer::new();
        a.see(Some("resolver0.example"), None, ["tel:+4915199999999"], None);
        assert_eq!(learned(&a.seen(), &aps, &resolvers).learned, BTreeSet::from([SENDER_PROVIDER.to_owned()]));
    }
}
