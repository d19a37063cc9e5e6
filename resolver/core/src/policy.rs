//! Local lifetime policy: hickory-style clamps, positive and negative apart,
//! and the RFC 8767 serve-stale window.

use signpost_schemas::{Expires, Timestamp};

/// Lifetimes and limits a resolver applies to what authorities say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Shortest positive lifetime, seconds.
    pub min_ttl: u64,
    /// Longest positive lifetime (also for `NO-EXPIRATION`), seconds.
    pub max_ttl: u64,
    /// Shortest negative lifetime, seconds.
    pub negative_min_ttl: u64,
    /// Longest negative lifetime, seconds.
    pub negative_max_ttl: u64,
    /// How long past its lifetime an answer may still be served when the
    /// authority cannot be reached (RFC 8767 max-stale), seconds.
    pub max_stale: u64,
    /// Lifetime given to clients for a stale answer (RFC 8767: 30 s).
    pub stale_ttl: u64,
    /// Referrals followed at most for one query.
    pub max_depth: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { min_ttl: 5, max_ttl: 86_400, negative_min_ttl: 5, negative_max_ttl: 3_600, max_stale: 86_400, stale_ttl: 30, max_depth: 8 }
    }
}

impl Policy {
    /// The instant until which a positive answer is fresh; `None` for
    /// `NO-CACHE` (use once).
    pub fn fresh_until(&self, expires: Expires, now: Timestamp) -> Option<Timestamp> {
        let secs = match expires {
            Expires::NoCache => return None,
            Expires::NoExpiration => self.max_ttl,
            Expires::At(t) => (t.millis_since(now) / 1000).clamp(self.min_ttl, self.max_ttl),
        };
        Some(now.plus_secs(secs))
    }
    /// The instant until which a negative answer is fresh.
    pub fn negative_until(&self, lifetime: Option<u32>, now: Timestamp) -> Timestamp {
        let secs = u64::from(lifetime.unwrap_or(0)).clamp(self.negative_min_ttl, self.negative_max_ttl);
        now.plus_secs(secs)
    }
    /// The end of a referral's lifetime (clamped like positive answers).
    pub fn referral_until(&self, lifetime: u32, now: Timestamp) -> Timestamp {
        now.plus_secs(u64::from(lifetime).clamp(self.min_ttl, self.max_ttl))
    }
    /// RFC 8767 §4: "max-stale": whether an entry fresh until `fresh_until`
    /// may still be served, stale, at `now`.
    pub fn may_serve_stale(&self, fresh_until: Timestamp, now: Timestamp) -> bool {
        now <= fresh_until.plus_secs(self.max_stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn lifetimes_are_clamped_positive_and_negative_apart() {
        let p = Policy::default();
        assert_eq!(p.fresh_until(Expires::NoCache, NOW), None);
        assert_eq!(p.fresh_until(Expires::At(NOW.plus_secs(1)), NOW), Some(NOW.plus_secs(5)));
        assert_eq!(p.fresh_until(Expires::At(NOW.plus_secs(10_000_000)), NOW), Some(NOW.plus_secs(86_400)));
        assert_eq!(p.fresh_until(Expires::NoExpiration, NOW), Some(NOW.plus_secs(86_400)));
        assert_eq!(p.negative_until(Some(1), NOW), NOW.plus_secs(5));
        assert_eq!(p.negative_until(Some(999_999), NOW), NOW.plus_secs(3600));
        assert!(p.may_serve_stale(NOW, NOW.plus_secs(86_400)));
        assert!(!p.may_serve_stale(NOW, NOW.plus_secs(86_401)));
    }
}
