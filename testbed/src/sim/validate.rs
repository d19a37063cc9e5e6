//! The simulated mode checked against the live mode: the same small
//! scenario run both ways must give the same verdicts. What must agree, and
//! how closely (the reasoning is in `docs/simulation.md`):
//!
//! - wrong answers: equal (both zero);
//! - stale answers, summed over several seeds: within 3 standard
//!   deviations of a Poisson count plus a quarter of the mean — the two
//!   runs see the same kinds of events at the same instants but draw
//!   different identifiers and lookup times (which identifiers change
//!   decides most of the count, so one seed alone varies by half), and the
//!   live mode's provisioning takes milliseconds per change where the
//!   simulation's is instant;
//! - invalidation latency under TTL only (the remaining lifetime of the
//!   copies held, spread over the lifetime): p50 and p99 within a fifth of
//!   the mapping lifetime;
//! - invalidation latency under push (feed delivery and the probe
//!   interval on loopback): both below a tenth of the mapping lifetime,
//!   i.e. push is decided by the feed and not by the TTL in both modes.

use crate::report::{Report, quantile};
use crate::scenario::Scenario;
use crate::sim::report::SimReport;

/// One comparison.
#[derive(Debug, Clone)]
pub struct Check {
    /// The policy.
    pub policy: String,
    /// What is compared.
    pub figure: String,
    /// Live value.
    pub live: String,
    /// Simulated value.
    pub simulated: String,
    /// The tolerance.
    pub tolerance: String,
    /// Within it.
    pub pass: bool,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.0} ms"))
}

/// Compares live reports with simulated ones of the same scenario (one
/// pair per seed).
pub fn compare(s: &Scenario, live: &[Report], sim: &mut [SimReport]) -> Vec<Check> {
    let ttl = f64::from(s.mapping_ttl_s) * 1000.0;
    let mut out = Vec::new();
    for p in &s.policies {
        let runs: Vec<_> = live.iter().filter_map(|r| r.runs.iter().find(|x| &x.policy == p && x.mode == "direct")).collect();
        let sims: Vec<_> = sim.iter_mut().filter_map(|r| r.policies.get_mut(p)).collect();
        if runs.is_empty() || sims.len() != runs.len() {
            continue;
        }
        let p = p.clone();
        let live_wrong: u64 = runs.iter().map(|r| r.wrong).sum();
        let sim_wrong = sims.iter().map(|x| x.figures.wrong).sum::<f64>().round() as u64;
        out.push(Check { policy: p.clone(), figure: "wrong answers".into(), live: live_wrong.to_string(), simulated: sim_wrong.to_string(), tolerance: "equal".into(), pass: live_wrong == sim_wrong });
        // Compare rates, scaled to the live lookups (the two runs make
        // about the same number of lookups).
        let n: u64 = runs.iter().map(|r| r.lookups).sum();
        let ca = runs.iter().map(|r| r.stale).sum::<u64>() as f64;
        let cb = sims.iter().map(|x| x.figures.stale).sum::<f64>() / sims.iter().map(|x| x.figures.lookups).sum::<f64>().max(1.0) * n as f64;
        let tol = 3.0 * (ca + cb + 1.0).sqrt() + (ca + cb) / 8.0;
        out.push(Check {
            policy: p.clone(),
            figure: format!("stale answers per {n}"),
            live: format!("{ca:.0}"),
            simulated: format!("{cb:.0}"),
            tolerance: format!("±{tol:.0}"),
            pass: (ca - cb).abs() <= tol,
        });
        let mut pooled: Vec<f64> = runs.iter().flat_map(|r| r.invalidation_ms.iter().copied()).collect();
        pooled.sort_by(f64::total_cmp);
        let mut w = crate::sim::report::Weighted::default();
        for x in &sims {
            w.extend(&x.figures.invalidation);
        }
        let lp50 = quantile(&pooled, 0.5);
        let lp99 = quantile(&pooled, 0.99);
        let (sp50, sp99) = (w.quantile(0.5), w.quantile(0.99));
        if p == "ttl-only" {
            for (name, lv, sv) in [("invalidation p50", lp50, sp50), ("invalidation p99", lp99, sp99)] {
                let pass = match (lv, sv) {
                    (Some(a), Some(b)) => (a - b).abs() <= ttl / 5.0,
                    _ => false,
                };
                out.push(Check { policy: p.clone(), figure: name.into(), live: ms(lv), simulated: ms(sv), tolerance: format!("±{:.0} ms", ttl / 5.0), pass });
            }
        } else {
            let pass = lp99.is_some_and(|a| a < ttl / 10.0) && sp99.is_none_or(|b| b < ttl / 10.0);
            out.push(Check { policy: p.clone(), figure: "invalidation p99".into(), live: ms(lp99), simulated: ms(sp99), tolerance: format!("both < {:.0} ms", ttl / 10.0), pass });
        }
    }
    out
}
