//! Per-client limits (R8): a token bucket for queries and a budget of
//! distinct missed CSIs per window (enumeration). Keyed by the client's
//! certificate id, or its address when it has none. Memory is bounded:
//! idle clients are swept, and each client remembers at most
//! `miss_budget` missed and [`KNOWN_PER_CLIENT`] found identifiers.
//!
//! The budget charges only identifiers the client has not looked up
//! before in the window: once it is spent, new identifiers are refused
//! (a scan stops) while the ones the client already asked about — its
//! address book — keep being answered.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use signpost_schemas::Timestamp;

/// Limit settings.
#[derive(Clone, Copy, Debug)]
pub struct LimitSettings {
    /// Sustained queries per second per client.
    pub rate: f64,
    /// Burst size.
    pub burst: f64,
    /// Distinct CSIs a client may miss (notFound) per window.
    pub miss_budget: usize,
    /// The miss window, seconds.
    pub miss_window: u64,
}

#[derive(Debug)]
struct Client {
    tokens: f64,
    at: Timestamp,
    window_start: Timestamp,
    misses: HashSet<u64>,
    /// Identifiers found for this client in the window.
    known: HashSet<u64>,
}

impl Client {
    fn roll(&mut self, now: Timestamp, window_s: u64) {
        if now.millis_since(self.window_start) >= window_s * 1000 {
            self.window_start = now;
            self.misses.clear();
            self.known.clear();
        }
    }
    fn left(&self, now: Timestamp, window_s: u64) -> u32 {
        let left = (window_s * 1000).saturating_sub(now.millis_since(self.window_start));
        u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
    }
}

/// Found identifiers remembered per client per window (beyond it, a found
/// identifier is not remembered and is charged like a new one once the
/// budget is spent).
pub const KNOWN_PER_CLIENT: usize = 4096;

/// The limiter.
#[derive(Debug)]
pub struct Limiter {
    s: LimitSettings,
    clients: Mutex<HashMap<String, Client>>,
}

const MAX_CLIENTS: usize = 100_000;

fn hash(s: &str) -> u64 {
    // FNV-1a: stable, fast, and only used to count distinct CSIs.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl Limiter {
    /// A limiter.
    pub fn new(s: LimitSettings) -> Limiter {
        Limiter { s, clients: Mutex::new(HashMap::new()) }
    }

    fn with<T>(&self, key: &str, now: Timestamp, f: impl FnOnce(&mut Client) -> T) -> T {
        let mut g = match self.clients.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // The common case, a known client, allocates nothing.
        if let Some(c) = g.get_mut(key) {
            return f(c);
        }
        if g.len() >= MAX_CLIENTS {
            let horizon = now.as_millis().saturating_sub(self.s.miss_window * 1000);
            g.retain(|_, c| c.at.as_millis() >= horizon);
        }
        let c = g.entry(key.to_owned()).or_insert_with(|| Client { tokens: self.s.burst, at: now, window_start: now, misses: HashSet::new(), known: HashSet::new() });
        f(c)
    }

    /// Takes one query token; `Err(seconds)` when empty.
    pub fn query(&self, key: &str, now: Timestamp) -> Result<(), u32> {
        let s = self.s;
        self.with(key, now, |c| {
            let dt = now.millis_since(c.at) as f64 / 1000.0;
            c.tokens = (c.tokens + dt * s.rate).min(s.burst);
            c.at = now;
            if c.tokens >= 1.0 {
                c.tokens -= 1.0;
                Ok(())
            } else {
                Err(((1.0 - c.tokens) / s.rate).ceil().max(1.0) as u32)
            }
        })
    }

    /// Records a miss for a CSI; `Err(seconds)` once the distinct misses in
    /// the window exceed the budget. A CSI the client looked up before in
    /// the window (found or missed) costs nothing.
    pub fn miss(&self, key: &str, csi: &str, now: Timestamp) -> Result<(), u32> {
        let s = self.s;
        let h = hash(csi);
        self.with(key, now, |c| {
            c.roll(now, s.miss_window);
            if c.misses.contains(&h) || c.known.contains(&h) {
                return Ok(());
            }
            if c.misses.len() < s.miss_budget {
                c.misses.insert(h);
                return Ok(());
            }
            Err(c.left(now, s.miss_window))
        })
    }

    /// Records that a CSI was found for the client (so a later lookup of it
    /// is never charged to the budget).
    pub fn hit(&self, key: &str, csi: &str, now: Timestamp) {
        let s = self.s;
        let h = hash(csi);
        self.with(key, now, |c| {
            c.roll(now, s.miss_window);
            if c.known.len() < KNOWN_PER_CLIENT {
                c.known.insert(h);
            }
        });
    }

    /// Checked before answering a lookup of `csi`: `Err(seconds)` when the
    /// client's budget is spent and it has not looked this CSI up before in
    /// the window (a scan stops getting answers; an address book does not).
    pub fn lookup(&self, key: &str, csi: &str, now: Timestamp) -> Result<(), u32> {
        let s = self.s;
        let h = hash(csi);
        self.with(key, now, |c| {
            c.roll(now, s.miss_window);
            if c.misses.len() < s.miss_budget || c.misses.contains(&h) || c.known.contains(&h) {
                Ok(())
            } else {
                Err(c.left(now, s.miss_window))
            }
        })
    }

    /// Whether the client is over its miss budget now (checked before
    /// answering, so an enumerator stops getting answers at all).
    pub fn over_miss_budget(&self, key: &str, now: Timestamp) -> Option<u32> {
        let s = self.s;
        self.with(key, now, |c| {
            if now.millis_since(c.window_start) >= s.miss_window * 1000 {
                return None;
            }
            (c.misses.len() >= s.miss_budget).then(|| {
                let left = (s.miss_window * 1000).saturating_sub(now.millis_since(c.window_start));
                u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_budget() {
        let l = Limiter::new(LimitSettings { rate: 2.0, burst: 3.0, miss_budget: 2, miss_window: 60 });
        let t = Timestamp::from_secs(1000);
        assert!(l.query("a", t).is_ok() && l.query("a", t).is_ok() && l.query("a", t).is_ok());
        assert_eq!(l.query("a", t), Err(1));
        assert!(l.query("b", t).is_ok(), "clients are independent");
        assert!(l.query("a", t.plus_millis(600)).is_ok(), "tokens refill at the rate");
        assert!(l.miss("a", "tel:+491", t).is_ok() && l.miss("a", "tel:+492", t).is_ok());
        assert!(l.miss("a", "tel:+491", t).is_ok(), "the same CSI again costs nothing");
        assert_eq!(l.miss("a", "tel:+493", t.plus_secs(10)), Err(50));
        assert!(l.over_miss_budget("a", t.plus_secs(10)).is_some());
        assert!(l.over_miss_budget("a", t.plus_secs(61)).is_none(), "the window resets");
    }

    #[test]
    fn a_spent_budget_stops_new_identifiers_only() {
        let l = Limiter::new(LimitSettings { rate: 1e6, burst: 1e6, miss_budget: 2, miss_window: 3600 });
        let t = Timestamp::from_secs(1000);
        // The address book: one found, one missed.
        l.hit("a", "tel:+4915100000001", t);
        assert!(l.miss("a", "tel:+4915100000002", t).is_ok());
        // A scan spends the rest and is stopped.
        assert!(l.lookup("a", "tel:+4915190000000", t).is_ok());
        assert!(l.miss("a", "tel:+4915190000000", t).is_ok());
        assert!(l.lookup("a", "tel:+4915190000001", t).is_err());
        assert!(l.miss("a", "tel:+4915190000001", t).is_err());
        // What the client looked up before is still answered.
        assert!(l.lookup("a", "tel:+4915100000001", t).is_ok());
        assert!(l.lookup("a", "tel:+4915100000002", t).is_ok());
        // A known number that is now missing costs nothing.
        assert!(l.miss("a", "tel:+4915100000001", t).is_ok());
        // Next window: a fresh budget.
        assert!(l.lookup("a", "tel:+4915190000001", t.plus_secs(3600)).is_ok());
    }
}
