//! Per-client limits (R8): a token bucket for queries and a budget of
//! distinct missed CSIs per window (enumeration). Keyed by the client's
//! certificate id, or its address when it has none. Memory is bounded:
//! idle clients are swept.

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
}

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
        let c = g.entry(key.to_owned()).or_insert_with(|| Client { tokens: self.s.burst, at: now, window_start: now, misses: HashSet::new() });
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
    /// the window exceed the budget.
    pub fn miss(&self, key: &str, csi: &str, now: Timestamp) -> Result<(), u32> {
        let s = self.s;
        self.with(key, now, |c| {
            if now.millis_since(c.window_start) >= s.miss_window * 1000 {
                c.window_start = now;
                c.misses.clear();
            }
            if c.misses.len() < s.miss_budget {
                c.misses.insert(hash(csi));
                return Ok(());
            }
            if c.misses.contains(&hash(csi)) {
                return Ok(());
            }
            let left = (s.miss_window * 1000).saturating_sub(now.millis_since(c.window_start));
            Err(u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX).max(1))
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
}
