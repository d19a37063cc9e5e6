//! The ground truth over time: what each identifier's answer should be at
//! every instant, from the events the testbed committed. Nothing from the
//! system under test decides a verdict.

use std::collections::{BTreeSet, HashMap};

/// What an answer says: not discoverable, or these providers.
pub type Truth = Option<BTreeSet<String>>;

/// How an observed answer compares with the truth at the time it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Equal to the truth.
    Correct,
    /// Equal to an earlier truth; `age_ms` since the truth moved away from it.
    Stale {
        /// How long the observed answer had been out of date.
        age_ms: u64,
    },
    /// Never true for this identifier.
    Wrong,
}

/// Histories of every identifier: (time in ms, truth from then on).
#[derive(Debug, Default, Clone)]
pub struct Oracle {
    history: HashMap<String, Vec<(u64, Truth)>>,
}

impl Oracle {
    /// An empty oracle.
    pub fn new() -> Oracle {
        Oracle::default()
    }

    /// Records that from `at_ms` on, `csi`'s answer is `truth`.
    pub fn set(&mut self, csi: &str, at_ms: u64, truth: Truth) {
        let h = self.history.entry(csi.to_owned()).or_default();
        // Before its first record an identifier was not discoverable.
        if h.is_empty() && at_ms > 0 && truth.is_some() {
            h.push((0, None));
        }
        if h.last().is_some_and(|(_, t)| *t == truth) {
            return;
        }
        h.push((at_ms, truth));
    }

    /// The truth at `at_ms` (unknown identifiers are not discoverable).
    pub fn at(&self, csi: &str, at_ms: u64) -> Truth {
        self.history.get(csi).and_then(|h| h.iter().rev().find(|(t, _)| *t <= at_ms).map(|(_, v)| v.clone())).flatten()
    }

    /// The recorded history of an identifier.
    pub fn history(&self, csi: &str) -> Option<&[(u64, Truth)]> {
        self.history.get(csi).map(Vec::as_slice)
    }

    /// The identifiers known.
    pub fn csis(&self) -> impl Iterator<Item = &String> {
        self.history.keys()
    }

    /// Judges an answer observed at `at_ms`. An answer equal to the truth
    /// at any instant of the request's flight (`sent_ms..=at_ms`) is
    /// correct; equal to an earlier truth, stale; otherwise wrong.
    pub fn judge(&self, csi: &str, observed: &Truth, sent_ms: u64, at_ms: u64) -> Verdict {
        let empty = Vec::new();
        let h = self.history.get(csi).unwrap_or(&empty);
        let truth_at = |t: u64| h.iter().rev().find(|(s, _)| *s <= t).and_then(|(_, v)| v.clone());
        if truth_at(at_ms) == *observed || truth_at(sent_ms) == *observed {
            return Verdict::Correct;
        }
        if h.iter().any(|(s, v)| *s <= at_ms && *s > sent_ms && v == observed) {
            return Verdict::Correct;
        }
        // The latest earlier period whose truth equals the observation.
        for (i, (start, v)) in h.iter().enumerate().rev() {
            if *start <= sent_ms && v == observed {
                let ended = h.get(i + 1).map_or(at_ms, |(s, _)| *s);
                return Verdict::Stale { age_ms: at_ms.saturating_sub(ended) };
            }
        }
        Verdict::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> Truth {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn verdicts_from_hand_built_histories() {
        let mut o = Oracle::new();
        o.set("n", 0, set(&["a", "b"]));
        o.set("n", 1000, set(&["a"])); // port: b was operator-aligned
        o.set("n", 3000, None); // release
        o.set("n", 5000, set(&["c"])); // reassigned
        assert_eq!(o.judge("n", &set(&["a", "b"]), 100, 200), Verdict::Correct);
        assert_eq!(o.judge("n", &set(&["a", "b"]), 1200, 1300), Verdict::Stale { age_ms: 300 });
        assert_eq!(o.judge("n", &set(&["a"]), 1200, 1300), Verdict::Correct);
        // In flight across a change: either side is correct.
        assert_eq!(o.judge("n", &set(&["a", "b"]), 900, 1100), Verdict::Correct);
        assert_eq!(o.judge("n", &set(&["a"]), 900, 1100), Verdict::Correct);
        // After release, the old providers are stale (a blackhole risk);
        // never-true answers are wrong.
        assert_eq!(o.judge("n", &set(&["a"]), 3500, 3600), Verdict::Stale { age_ms: 600 });
        assert_eq!(o.judge("n", &set(&["z"]), 3500, 3600), Verdict::Wrong);
        assert_eq!(o.judge("n", &None, 3500, 3600), Verdict::Correct);
        // After reassignment, the previous holder's providers are stale.
        assert_eq!(o.judge("n", &set(&["a", "b"]), 6000, 6000), Verdict::Stale { age_ms: 5000 });
        assert_eq!(o.judge("n", &None, 6000, 6100), Verdict::Stale { age_ms: 1100 });
        // An identifier claimed later: notFound before, stale after.
        o.set("m", 2000, set(&["x"]));
        assert_eq!(o.judge("m", &None, 100, 200), Verdict::Correct);
        assert_eq!(o.judge("m", &None, 2500, 2600), Verdict::Stale { age_ms: 600 });
        assert_eq!(o.at("n", 4000), None);
        assert_eq!(o.at("n", 5000), set(&["c"]));
    }
}
