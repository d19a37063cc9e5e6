//! The simulated mode's reports: `report.json` (deterministic: the same
//! seed and scenario give the same bytes), `report.md`, `report.html`, and
//! `measured.json` (the simulator's own speed and memory, which vary from
//! run to run and so are kept out of `report.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::space::Space;
use crate::report::{Axes, chart, esc, fmt_num};
use crate::scenario::Scenario;

/// Values with weights (each simulated observation stands for `weight`).
#[derive(Debug, Clone, Default)]
pub struct Weighted {
    v: Vec<(f64, f64)>,
    sorted: bool,
}

impl Weighted {
    /// Adds one value.
    pub fn push(&mut self, value: f64, weight: f64) {
        self.v.push((value, weight));
        self.sorted = false;
    }
    fn sort(&mut self) {
        if !self.sorted {
            self.v.sort_by(|a, b| a.0.total_cmp(&b.0));
            self.sorted = true;
        }
    }
    /// The weighted `p` quantile.
    pub fn quantile(&mut self, p: f64) -> Option<f64> {
        self.sort();
        let total: f64 = self.v.iter().map(|x| x.1).sum();
        if self.v.is_empty() || total <= 0.0 {
            return None;
        }
        let want = p * total;
        let mut acc = 0.0;
        for (v, w) in &self.v {
            acc += w;
            if acc >= want {
                return Some(*v);
            }
        }
        self.v.last().map(|x| x.0)
    }
    /// Adds every observation of `other`.
    pub fn extend(&mut self, other: &Weighted) {
        self.v.extend_from_slice(&other.v);
        self.sorted = false;
    }
    /// Observations.
    pub fn len(&self) -> usize {
        self.v.len()
    }
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.v.is_empty()
    }
    /// The weighted CDF at up to `n` points.
    pub fn cdf(&mut self, n: usize) -> Vec<(f64, f64)> {
        self.sort();
        let total: f64 = self.v.iter().map(|x| x.1).sum();
        if total <= 0.0 {
            return vec![];
        }
        let step = (self.v.len() / n.max(1)).max(1);
        let mut acc = 0.0;
        let mut out = Vec::new();
        for (i, (v, w)) in self.v.iter().enumerate() {
            acc += w;
            if i % step == 0 || i + 1 == self.v.len() {
                out.push((*v, (acc / total).min(1.0)));
            }
        }
        out
    }
}

/// Answers of one time bucket (weighted).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    /// Correct.
    pub correct: f64,
    /// Stale.
    pub stale: f64,
    /// Wrong.
    pub wrong: f64,
    /// Errors.
    pub errors: f64,
}

/// One authority's change feed.
#[derive(Debug, Clone, Serialize)]
pub struct FeedFigures {
    /// The authority (its delegation key).
    pub authority: String,
    /// Changes committed in the simulation.
    pub changes_simulated: u64,
    /// Change frames delivered to subscribers.
    pub frames_delivered: u64,
    /// Their bytes.
    pub bytes_delivered: u64,
    /// Resolvers subscribed at the end.
    pub subscribers_at_end: u64,
}

/// Everything one policy's run counted.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyFigures {
    /// The policy.
    pub policy: String,
    /// Lookups the simulated ones stand for.
    pub lookups: f64,
    /// Lookups simulated.
    pub simulated_lookups: u64,
    /// Correct answers (weighted).
    pub correct: f64,
    /// Stale answers (weighted).
    pub stale: f64,
    /// Stale answers simulated.
    pub simulated_stale: u64,
    /// Wrong answers (weighted).
    pub wrong: f64,
    /// Errors by kind (weighted).
    pub errors: BTreeMap<String, f64>,
    /// Answer verdicts per bucket.
    pub timeline: Vec<Bucket>,
    /// Seconds per timeline bucket.
    pub bucket_s: u64,
    /// How out of date stale answers were, ms.
    #[serde(skip)]
    pub staleness: Weighted,
    /// Per change and resolver: ms until it answers the new truth (a
    /// resolver holding an old copy: until it stops serving it).
    #[serde(skip)]
    pub invalidation: Weighted,
    /// Per change and resolver that held a fresh copy of the old answer:
    /// ms until it no longer served it.
    #[serde(skip)]
    pub held_invalidation: Weighted,
    /// The first wrong answers, described.
    pub wrong_samples: Vec<String>,
    /// Upstream requests per tier (weighted by the lookups that caused them).
    pub tier_requests: BTreeMap<String, f64>,
    /// Upstream requests simulated per tier.
    pub tier_requests_simulated: BTreeMap<String, u64>,
    /// Answers rejected by verification.
    pub rejected: u64,
    /// Resyncs sent.
    pub resyncs: u64,
    /// Feed streams broken by a lost frame (push-lossy).
    pub feed_breaks: u64,
    /// Events by kind (weighted: the identifiers they stand for).
    pub events: BTreeMap<String, f64>,
    /// The scenario's scripted events as chart markers: (bucket, what).
    pub event_marks: Vec<(f64, String)>,
    /// Authority outages.
    pub outages: u64,
    /// Resolver restarts.
    pub restarts: u64,
    /// How signatures were checked.
    pub verification: String,
    /// Mappings checked.
    pub signatures_checked: u64,
    /// Of which ECDSA-verified.
    pub signatures_verified: u64,
    /// Lookups with no answer when the run ended.
    pub unanswered: u64,
    /// Cached answers per resolver at the end (mean).
    pub cache_entries_mean: f64,
    /// Most cached answers at one resolver at the end.
    pub cache_entries_max: u64,
    /// Bytes of cached answers at the end, all resolvers.
    #[serde(skip)]
    pub cache_bytes_total: u64,
    /// Resolver cache hit ratio (simulated lookups).
    pub hit_ratio: f64,
    /// Per authority.
    pub feed: Vec<FeedFigures>,
    /// Identifiers materialized in the authorities' stores.
    pub materialized: u64,
}

impl PolicyFigures {
    /// Empty figures.
    pub fn new(policy: &str, bucket_s: u64) -> PolicyFigures {
        PolicyFigures {
            policy: policy.into(),
            lookups: 0.0,
            simulated_lookups: 0,
            correct: 0.0,
            stale: 0.0,
            simulated_stale: 0,
            wrong: 0.0,
            errors: BTreeMap::new(),
            timeline: vec![],
            bucket_s,
            staleness: Weighted::default(),
            invalidation: Weighted::default(),
            held_invalidation: Weighted::default(),
            wrong_samples: vec![],
            tier_requests: BTreeMap::new(),
            tier_requests_simulated: BTreeMap::new(),
            rejected: 0,
            resyncs: 0,
            feed_breaks: 0,
            events: BTreeMap::new(),
            event_marks: vec![],
            outages: 0,
            restarts: 0,
            verification: String::new(),
            signatures_checked: 0,
            signatures_verified: 0,
            unanswered: 0,
            cache_entries_mean: 0.0,
            cache_entries_max: 0,
            cache_bytes_total: 0,
            hit_ratio: 0.0,
            feed: vec![],
            materialized: 0,
        }
    }
    /// The bucket of index `i`.
    pub fn bucket(&mut self, i: usize) -> &mut Bucket {
        while self.timeline.len() <= i {
            self.timeline.push(Bucket::default());
        }
        &mut self.timeline[i]
    }
}

/// The headline figures of one policy (what `report.json`'s `policies` maps to).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Stale answers / all answers.
    pub stale_rate: f64,
    /// Wrong answers / all answers.
    pub wrong_rate: f64,
    /// Errors / all answers.
    pub error_rate: f64,
    /// How out of date stale answers were: p50, p99 and max, ms.
    pub staleness_p50_ms: Option<f64>,
    /// p99.
    pub staleness_p99_ms: Option<f64>,
    /// Max.
    pub staleness_max_ms: Option<f64>,
    /// From a change's commit until a resolver holding the old answer no
    /// longer serves it: p50, p99, max, ms.
    pub invalidation_p50_ms: Option<f64>,
    /// p99.
    pub invalidation_p99_ms: Option<f64>,
    /// Max.
    pub invalidation_max_ms: Option<f64>,
    /// (change, resolver) pairs measured.
    pub invalidations: usize,
    /// Only resolvers that held a fresh copy of the old answer: p50, p99,
    /// max ms until they no longer served it.
    pub held_invalidation_p50_ms: Option<f64>,
    /// p99.
    pub held_invalidation_p99_ms: Option<f64>,
    /// Max.
    pub held_invalidation_max_ms: Option<f64>,
    /// Such (change, resolver) pairs.
    pub held_invalidations: usize,
    /// Lookups per second at the resolver tier the run stands for.
    pub lookups_per_s: f64,
    /// Upstream requests per second per tier the run stands for.
    pub tier_requests_per_s: BTreeMap<String, f64>,
    /// Changes per second across the namespace (weighted).
    pub changes_per_s: f64,
    /// Mean size of a change frame, bytes.
    pub frame_bytes: f64,
    /// The authority tier's feed traffic at every resolver subscribed to
    /// every authority, bytes per second (changes/s × frame × resolvers).
    pub feed_bytes_per_s_all_resolvers: f64,
    /// The busiest authority's share of that.
    pub feed_bytes_per_s_busiest_authority: f64,
    /// The busiest authority.
    pub busiest_authority: String,
    /// Everything counted.
    pub figures: PolicyFigures,
}

/// One row of the scale table.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    /// Policy.
    pub policy: String,
    /// Resolvers.
    pub resolvers: usize,
    /// Identifiers in the namespace.
    pub identifiers: u64,
    /// Changes in the simulated period (weighted).
    pub changes: f64,
    /// Lookups (weighted).
    pub lookups: f64,
    /// Lookups simulated.
    pub simulated_lookups: u64,
    /// Stale rate.
    pub stale_rate: f64,
    /// Staleness p99, ms.
    pub staleness_p99_ms: Option<f64>,
    /// Feed traffic at the authority tier, bytes per second.
    pub feed_bytes_per_s: f64,
}

/// The whole simulated run.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Scenario name.
    pub scenario: String,
    /// Always `simulated`.
    pub mode: String,
    /// The seed.
    pub seed: u64,
    /// Resolvers.
    pub resolvers: usize,
    /// Authorities.
    pub authorities: usize,
    /// Identifiers in the namespace.
    pub identifiers: u64,
    /// Simulated time, s.
    pub simulated_seconds: u64,
    /// Identifiers followed (materialized when touched).
    pub followed_identifiers: usize,
    /// How followed identifiers and lookups were sampled.
    pub sampling: String,
    /// What the scenario has that the simulation leaves out.
    pub not_simulated: Vec<String>,
    /// Per policy.
    pub policies: BTreeMap<String, Summary>,
    /// The scale table.
    pub scale: Vec<ScaleRow>,
}

impl SimReport {
    /// Builds the report from each policy's figures.
    pub fn new(s: &Scenario, space: &Space, seed: u64, duration: u64, followed: usize, figures: BTreeMap<String, PolicyFigures>) -> SimReport {
        let secs = duration.max(1) as f64;
        let mut policies = BTreeMap::new();
        let mut scale = Vec::new();
        for (name, mut f) in figures {
            let total = f.lookups.max(1e-12);
            let errs: f64 = f.errors.iter().filter(|(k, _)| !k.starts_with("provision")).map(|(_, v)| v).sum();
            let changes: f64 = f.events.values().sum();
            let frames: u64 = f.feed.iter().map(|x| x.frames_delivered).sum();
            let bytes: u64 = f.feed.iter().map(|x| x.bytes_delivered).sum();
            let frame_bytes = if frames == 0 { 0.0 } else { bytes as f64 / frames as f64 };
            let pushing = name != "ttl-only";
            let feed_all = if pushing { changes / secs * frame_bytes * s.resolvers as f64 } else { 0.0 };
            // The busiest authority: the most (weighted) changes, estimated
            // from its share of the simulated ones.
            let simulated: u64 = f.feed.iter().map(|x| x.changes_simulated).sum();
            let busiest = f.feed.iter().max_by_key(|x| x.changes_simulated).map(|x| (x.authority.clone(), x.changes_simulated)).unwrap_or_default();
            let share = if simulated == 0 { 0.0 } else { busiest.1 as f64 / simulated as f64 };
            let summary = Summary {
                stale_rate: f.stale / total,
                wrong_rate: f.wrong / total,
                error_rate: errs / total,
                staleness_p50_ms: f.staleness.quantile(0.5),
                staleness_p99_ms: f.staleness.quantile(0.99),
                staleness_max_ms: f.staleness.quantile(1.0),
                invalidation_p50_ms: f.invalidation.quantile(0.5),
                invalidation_p99_ms: f.invalidation.quantile(0.99),
                invalidation_max_ms: f.invalidation.quantile(1.0),
                invalidations: f.invalidation.len(),
                held_invalidation_p50_ms: f.held_invalidation.quantile(0.5),
                held_invalidation_p99_ms: f.held_invalidation.quantile(0.99),
                held_invalidation_max_ms: f.held_invalidation.quantile(1.0),
                held_invalidations: f.held_invalidation.len(),
                lookups_per_s: f.lookups / secs,
                tier_requests_per_s: f.tier_requests.iter().map(|(k, v)| (k.clone(), v / secs)).collect(),
                changes_per_s: changes / secs,
                frame_bytes,
                feed_bytes_per_s_all_resolvers: feed_all,
                feed_bytes_per_s_busiest_authority: feed_all * share,
                busiest_authority: busiest.0,
                figures: f.clone(),
            };
            scale.push(ScaleRow {
                policy: name.clone(),
                resolvers: s.resolvers,
                identifiers: space.total,
                changes,
                lookups: f.lookups,
                simulated_lookups: f.simulated_lookups,
                stale_rate: summary.stale_rate,
                staleness_p99_ms: summary.staleness_p99_ms,
                feed_bytes_per_s: feed_all,
            });
            policies.insert(name, summary);
        }
        let sm = &s.simulate;
        let strata = if sm.changers_per_band > 0 { format!(" (plus {} per band among the identifiers that change in the run)", sm.changers_per_band) } else { String::new() };
        let sampling = if sm.traced_per_band == 0 {
            "exact: every identifier followed, every lookup simulated".to_owned()
        } else {
            format!(
                "{} identifiers followed per popularity band (ranks 1–9, 10–99, …){strata}, each standing for its stratum's size / followed; a resolver asking for one identifier more than {} times per mapping lifetime is simulated at that rate; at most {} lookups simulated per identifier (through a sample of resolvers); every simulated lookup weighted by what it stands for",
                sm.traced_per_band, sm.warm_lookups_per_ttl, sm.max_lookups_per_identifier
            )
        };
        let mut not_simulated = Vec::new();
        if s.rogue.is_some() {
            not_simulated.push("rogue authority (live mode only)".to_owned());
        }
        if s.event.iter().any(|e| e.kind == "scan") {
            not_simulated.push("enumeration scan (live mode only: rate limits are the HTTP shell's)".to_owned());
        }
        not_simulated.push("feed heartbeats (idle keep-alives; not change traffic)".to_owned());
        SimReport {
            scenario: s.name.clone(),
            mode: "simulated".into(),
            seed,
            resolvers: s.resolvers,
            authorities: space.auths.len(),
            identifiers: space.total,
            simulated_seconds: duration,
            followed_identifiers: followed,
            sampling,
            not_simulated,
            policies,
            scale,
        }
    }

    /// The Markdown summary.
    pub fn markdown(&self, m: &Measured) -> String {
        let mut s = format!("# Signpost testbed (simulated): {}\n\n", self.scenario);
        for (p, x) in &self.policies {
            let verdict = if x.figures.wrong > 0.0 { "WRONG" } else if x.figures.stale > 0.0 { "STALE" } else { "PASS" };
            let _ = writeln!(s, "- **{p}: {verdict}** — stale {}, wrong {}, staleness p99 {}; a resolver holding an old answer stopped serving it within {} (p99)", rate(x.stale_rate), rate(x.wrong_rate), ms(x.staleness_p99_ms), ms(x.held_invalidation_p99_ms));
        }
        let _ = writeln!(
            s,
            "\n{} resolvers, {} authorities, {} identifiers, {} simulated ({} followed), seed {}.\n",
            self.resolvers,
            self.authorities,
            big(self.identifiers as f64),
            dur(self.simulated_seconds),
            self.followed_identifiers,
            self.seed
        );
        s.push_str("| policy | lookups | stale | wrong | errors | staleness p50 | p99 | max | invalidation p50 | p99 | held copies p50 | p99 | hit ratio | feed at authorities |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (p, x) in &self.policies {
            let _ = writeln!(
                s,
                "| {p} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} % | {} |",
                big(x.figures.lookups),
                rate(x.stale_rate),
                rate(x.wrong_rate),
                rate(x.error_rate),
                ms(x.staleness_p50_ms),
                ms(x.staleness_p99_ms),
                ms(x.staleness_max_ms),
                ms(x.invalidation_p50_ms),
                ms(x.invalidation_p99_ms),
                ms(x.held_invalidation_p50_ms),
                ms(x.held_invalidation_p99_ms),
                100.0 * x.figures.hit_ratio,
                bps(x.feed_bytes_per_s_all_resolvers)
            );
        }
        s.push_str("\n## Scale\n\n| policy | resolvers | identifiers | changes | lookups (simulated) | stale rate | staleness p99 | feed traffic |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.scale {
            let _ = writeln!(s, "| {} | {} | {} | {} | {} ({}) | {} | {} | {} |", r.policy, r.resolvers, big(r.identifiers as f64), big(r.changes), big(r.lookups), r.simulated_lookups, rate(r.stale_rate), ms(r.staleness_p99_ms), bps(r.feed_bytes_per_s));
        }
        for (p, x) in &self.policies {
            let f = &x.figures;
            let _ = writeln!(s, "\n## {p}\n");
            let _ = writeln!(s, "- lookups per second at the resolvers: {}; upstream per second: {}", big(x.lookups_per_s), x.tier_requests_per_s.iter().map(|(k, v)| format!("{k} {}", big(*v))).collect::<Vec<_>>().join(", "));
            let _ = writeln!(s, "- changes per second across the namespace: {:.2}; change frame {:.0} B; busiest authority {} ({} at all resolvers)", x.changes_per_s, x.frame_bytes, x.busiest_authority, bps(x.feed_bytes_per_s_busiest_authority));
            let _ = writeln!(s, "- events: {}", f.events.iter().map(|(k, v)| format!("{k} {}", big(*v))).collect::<Vec<_>>().join(", "));
            if !f.errors.is_empty() {
                let _ = writeln!(s, "- errors: {}", f.errors.iter().map(|(k, v)| format!("{k} {}", big(*v))).collect::<Vec<_>>().join(", "));
            }
            let _ = writeln!(s, "- outages {}, resolver restarts {}, resyncs {}, feed breaks {}, rejected answers {}", f.outages, f.restarts, f.resyncs, f.feed_breaks, f.rejected);
            let _ = writeln!(s, "- verification: {} ({} mappings checked, {} ECDSA-verified)", f.verification, f.signatures_checked, f.signatures_verified);
            let _ = writeln!(s, "- resolver caches at the end: {:.1} answers on average, {} at most; identifiers materialized: {}", f.cache_entries_mean, f.cache_entries_max, f.materialized);
            for w in &f.wrong_samples {
                let _ = writeln!(s, "- wrong: {w}");
            }
        }
        let _ = writeln!(s, "\n## Method\n\n- sampling: {}", self.sampling);
        for n in &self.not_simulated {
            let _ = writeln!(s, "- not simulated: {n}");
        }
        let _ = writeln!(
            s,
            "\n## The simulator itself\n\n{:.1} s of wall time, {} events ({}/s), peak memory {:.0} MiB. Per policy: {}.",
            m.wall_s,
            m.events,
            big(m.events_per_s),
            m.peak_rss_mib,
            m.policies.iter().map(|(k, v)| format!("{k} {:.1} s ({}/s)", v.wall_s, big(v.events_per_s))).collect::<Vec<_>>().join(", ")
        );
        s
    }

    /// The HTML page.
    pub fn html(&self, m: &Measured) -> String {
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
        let mut body = String::new();
        body.push_str("<h2>Verdict</h2><ul>");
        for (p, x) in &self.policies {
            let verdict = if x.figures.wrong > 0.0 { "WRONG" } else if x.figures.stale > 0.0 { "STALE" } else { "PASS" };
            let _ = write!(body, "<li><b>{} {verdict}</b>: stale {}, wrong {}, staleness p99 {}; held copies invalidated within {} (p99)</li>", esc(p), rate(x.stale_rate), rate(x.wrong_rate), ms(x.staleness_p99_ms), ms(x.held_invalidation_p99_ms));
        }
        body.push_str("</ul>");
        let unit = self.policies.values().next().map_or(1, |x| x.figures.bucket_s);
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .policies
            .iter()
            .map(|(p, x)| {
                let pts = x
                    .figures
                    .timeline
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let t = b.correct + b.stale + b.wrong + b.errors;
                        (i as f64, if t <= 0.0 { 0.0 } else { 100.0 * (b.stale + b.wrong) / t })
                    })
                    .collect();
                (p.clone(), pts)
            })
            .collect();
        let marks = self.policies.values().next().map(|x| x.figures.event_marks.clone()).unwrap_or_default();
        body.push_str(&chart("Stale or wrong answers over time", &Axes { x: if unit >= 86_400 { "day" } else { "second" }, y: "% of answers", log_x: false, y_max: None, marks: &marks }, &series, &colors));
        let series: Vec<(String, Vec<(f64, f64)>)> = self.policies.iter().map(|(p, x)| (p.clone(), x.figures.invalidation.clone().cdf(400))).collect();
        body.push_str(&chart("Invalidation latency (CDF)", &Axes { x: "ms from commit until every resolver answers the new truth (log scale)", y: "fraction", log_x: true, y_max: Some(1.0), marks: &[] }, &series, &colors));
        let md = self.markdown(m);
        let _ = write!(body, "<h2>Figures</h2><pre>{}</pre>", esc(&md));
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signpost simulation: {0}</title><style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}pre{{white-space:pre-wrap}}svg{{background:#fff;border:1px solid #ddd;margin:1em 0}}</style></head><body><h1>Signpost simulation: {0}</h1>{body}</body></html>\n",
            esc(&self.scenario)
        )
    }

    /// Writes report.json, report.md, report.html and measured.json.
    pub fn write(&self, m: &Measured, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let measured = serde_json::to_string_pretty(m).map_err(|e| e.to_string())?;
        for (name, text) in [("report.json", json), ("report.md", self.markdown(m)), ("report.html", self.html(m)), ("measured.json", measured)] {
            std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        }
        Ok(())
    }
}

/// What the simulator itself cost (varies between runs).
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Wall time, s.
    pub wall_s: f64,
    /// Events processed, all policies.
    pub events: u64,
    /// Per second of wall time.
    pub events_per_s: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// Per policy.
    pub policies: BTreeMap<String, MeasuredPolicy>,
}

/// One policy's cost.
#[derive(Debug, Clone, Serialize)]
pub struct MeasuredPolicy {
    /// Wall time, s.
    pub wall_s: f64,
    /// Events.
    pub events: u64,
    /// Per second.
    pub events_per_s: f64,
}

/// The process's peak resident memory (`VmHWM`), MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rate(x: f64) -> String {
    if x == 0.0 { "0".into() } else if x < 1e-3 { format!("{x:.2e}") } else { format!("{:.3} %", 100.0 * x) }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |x| {
        if x >= 86_400_000.0 {
            format!("{:.1} d", x / 86_400_000.0)
        } else if x >= 3_600_000.0 {
            format!("{:.1} h", x / 3_600_000.0)
        } else if x >= 1000.0 {
            format!("{:.2} s", x / 1000.0)
        } else {
            format!("{x:.1} ms")
        }
    })
}

fn big(x: f64) -> String {
    if x >= 1e12 {
        format!("{:.2} T", x / 1e12)
    } else if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        fmt_num(x)
    }
}

fn bps(x: f64) -> String {
    if x <= 0.0 { "–".into() } else { format!("{}B/s", big(x)) }
}

fn dur(s: u64) -> String {
    if s >= 86_400 { format!("{:.0} days", s as f64 / 86_400.0) } else { format!("{s} s") }
}
