//! # signpost-testbed — whole topologies, scenarios, a ground-truth oracle
//!
//! Live mode: a real root, authorities and resolvers on loopback with a
//! generated PKI (the same library code the binaries run), a synthetic
//! population, lookup load from simulated APs, timed events (ports,
//! releases, reassignments, claims, authority outages), every answer judged
//! against the testbed's own record of the truth, and reports in JSON,
//! Markdown and HTML. Each scenario can run under push invalidation and
//! TTL-only (how DNS/ENUM behaves today) for comparison.

#![forbid(unsafe_code)]

pub mod oracle;
pub mod privacy;
pub mod report;
#[allow(clippy::indexing_slicing)] // indices come from the lengths they index
pub mod run;
pub mod scenario;
#[allow(clippy::indexing_slicing)] // indices come from the lengths they index
pub mod sim;
pub mod topology;

/// Runs every policy of a scenario in every mode (modes first, in the
/// scenario's order); `tick(run, second)` reports progress, `run`
/// counting from 0.
pub async fn run_all(s: &scenario::Scenario, tick: &(dyn Fn(usize, u64) + Sync)) -> Result<report::Report, String> {
    let mut runs = Vec::new();
    run::live_scale(s)?;
    for m in &s.modes {
        for p in s.policies.iter().filter(|p| scenario::LIVE_POLICIES.contains(&p.as_str())) {
            let k = runs.len();
            runs.push(run::run(s, p, m, &move |i| tick(k, i)).await?);
        }
    }
    Ok(report::Report::new(s.name.clone(), runs))
}
