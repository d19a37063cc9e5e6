//! Reports: `report.json` (every figure), `report.md` (the summary table)
//! and `report.html` (charts as inline SVG, no scripts, no network).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::run::PolicyReport;

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// One entry per policy and mode.
    pub runs: Vec<PolicyReport>,
    /// The observer table: mode (`direct`, `relay`) → tier (`ap`,
    /// `relay`, `resolver`, `root`, `authority`) → what that tier's own
    /// records show it learned, of `ap-identity`, `sender-provider` and
    /// `recipient-csi` (the union over the mode's runs; a tier that took
    /// no part in a mode, the relay in `direct`, is absent). See
    /// [`crate::privacy`].
    pub privacy: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

/// The `p` quantile of sorted values.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |x| if x >= 1000.0 { format!("{:.2} s", x / 1000.0) } else { format!("{x:.1} ms") })
}

fn pct(a: u64, total: u64) -> String {
    if total == 0 { "–".into() } else { format!("{:.3} %", 100.0 * a as f64 / total as f64) }
}

impl Report {
    /// A report of `runs`, with the observer table computed from them.
    pub fn new(scenario: String, runs: Vec<PolicyReport>) -> Report {
        let privacy = crate::privacy::table(runs.iter().map(|r| (r.mode.as_str(), &r.privacy)));
        Report { scenario, runs, privacy }
    }

    /// The observer table's rows: (tier, mode, learned per fact, records).
    fn privacy_rows(&self) -> Vec<(&'static str, &'static str, [bool; 3], u64)> {
        let mut rows = Vec::new();
        for tier in crate::privacy::TIERS {
            for mode in crate::privacy::MODES {
                let Some(l) = self.privacy.get(mode).and_then(|m| m.get(tier)) else { continue };
                let requests = self.runs.iter().filter(|r| r.mode == mode).filter_map(|r| r.privacy.get(tier)).map(|v| v.requests).sum();
                rows.push((tier, mode, crate::privacy::FACTS.map(|f| l.contains(f)), requests));
            }
        }
        rows
    }

    /// The Markdown summary table.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Signpost testbed: {}\n\n", self.scenario);
        for r in &self.runs {
            let _ = writeln!(s, "- **{}**", verdict_line(&r.label(), r.wrong, r.stale, r.lookups, quantile(&r.invalidation_ms, 0.99)));
        }
        s.push('\n');
        s.push_str("| policy | lookups | lookups/s | correct | stale | wrong | errors | invalidation p50 | p99 | max | hit ratio |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.runs {
            let errs: u64 = r.errors.values().sum();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} ({}) | {} | {} | {} | {} | {} | {:.1} % |",
                r.label(),
                r.lookups,
                r.lookups_per_s,
                r.correct,
                r.stale,
                pct(r.stale, r.lookups),
                r.wrong,
                errs,
                ms(quantile(&r.invalidation_ms, 0.5)),
                ms(quantile(&r.invalidation_ms, 0.99)),
                ms(r.invalidation_ms.last().copied()),
                100.0 * r.hit_ratio
            );
        }
        s.push_str("\nInvalidation latency: from the commit at the authority until every resolver answers the new truth (probed every 5 ms).\n");
        s.push_str("Verdicts come from the testbed's own record of every committed change, never from the system under test.\n");
        let rows = self.privacy_rows();
        if !rows.is_empty() {
            s.push_str("\n## Who learned what\n\n");
            s.push_str("| tier | mode | AP identity | sender's provider | recipient CSI | requests recorded |\n|---|---|---|---|---|---:|\n");
            for (tier, mode, facts, n) in rows {
                let f = facts.map(|b| if b { "learned" } else { "–" });
                let _ = writeln!(s, "| {tier} | {} | {} | {} | {} | {n} |", crate::privacy::mode_name(mode), f[0], f[1], f[2]);
            }
            s.push('\n');
            s.push_str(PRIVACY_NOTE);
            s.push('\n');
        }
        for r in &self.runs {
            let _ = writeln!(s, "\n## {}\n", r.label());
            let _ = writeln!(s, "- identifiers: {}; run {:.1} s", r.identifiers, r.duration_s);
            let _ = writeln!(s, "- requests per tier: {}", r.tier_requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
            if r.scan_sent > 0 {
                let by = if r.mode == "relay" { "(429 with Retry-After) by the relay's per-AP limit" } else { "(forbidden with Retry-After) by the resolver's per-client limit" };
                let _ = writeln!(s, "- enumeration scan: {} requests, {} refused {by}", r.scan_sent, r.scan_throttled);
            }
            if !r.errors.is_empty() {
                let _ = writeln!(s, "- errors: {}", r.errors.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
            }
            let ages: Vec<f64> = r.stale_age_ms.iter().map(|&a| a as f64).collect();
            let _ = writeln!(s, "- stale answers were out of date by p50 {} / max {}", ms(quantile(&ages, 0.5)), ms(ages.last().copied()));
            for e in &r.events {
                let _ = writeln!(s, "- event {e}");
            }
        }
        s
    }

    /// The HTML page.
    pub fn html(&self) -> String {
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
        let mut body = String::new();
        // Stale-answer rate over time.
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .runs
            .iter()
            .map(|r| {
                let pts = r
                    .timeline
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let total = s.correct + s.stale + s.wrong + s.errors;
                        (i as f64, if total == 0 { 0.0 } else { 100.0 * (s.stale + s.wrong) as f64 / total as f64 })
                    })
                    .collect();
                (r.label(), pts)
            })
            .collect();
        // The scenario's events, as markers on the time chart.
        let marks: Vec<(f64, String)> = self.runs.first().map(|r| r.event_marks.clone()).unwrap_or_default();
        let mut head = String::from("<h2>Verdict</h2><ul>");
        for r in &self.runs {
            let _ = write!(head, "<li><b>{}</b></li>", esc(&verdict_line(&r.label(), r.wrong, r.stale, r.lookups, quantile(&r.invalidation_ms, 0.99))));
        }
        head.push_str("</ul>");
        body.push_str(&head);
        let rows = self.privacy_rows();
        if !rows.is_empty() {
            body.push_str("<h2>Who learned what</h2><table><tr><th>tier</th><th>mode</th><th>AP identity</th><th>sender's provider</th><th>recipient CSI</th><th>requests recorded</th></tr>");
            for (tier, mode, facts, n) in rows {
                let f = facts.map(|b| if b { "<b>learned</b>" } else { "–" });
                let _ = write!(body, "<tr><td>{tier}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{n}</td></tr>", esc(crate::privacy::mode_name(mode)), f[0], f[1], f[2]);
            }
            let _ = write!(body, "</table><p>{}</p>", esc(PRIVACY_NOTE));
        }
        body.push_str(&chart("Stale or wrong answers over time", &Axes { x: "second of the run", y: "% of answers", log_x: false, y_max: None, marks: &marks }, &series, &colors));
        // Invalidation latency CDF.
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .runs
            .iter()
            .map(|r| {
                let n = r.invalidation_ms.len().max(1) as f64;
                (r.label(), r.invalidation_ms.iter().enumerate().map(|(i, v)| (*v, (i + 1) as f64 / n)).collect())
            })
            .collect();
        body.push_str(&chart("Invalidation latency (CDF)", &Axes { x: "ms from commit to every resolver answering the new truth (log scale)", y: "fraction", log_x: true, y_max: Some(1.0), marks: &[] }, &series, &colors));
        body.push_str(&error_bars(&self.runs, &colors));
        // Requests per tier.
        body.push_str(&bars(&self.runs, &colors));
        // Summary table.
        body.push_str("<h2>Summary</h2><table><tr><th>policy</th><th>lookups</th><th>lookups/s</th><th>correct</th><th>stale</th><th>wrong</th><th>errors</th><th>invalidation p50</th><th>p99</th><th>hit ratio</th></tr>");
        for r in &self.runs {
            let errs: u64 = r.errors.values().sum();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} %</td></tr>",
                esc(&r.label()),
                r.lookups,
                r.lookups_per_s,
                r.correct,
                r.stale,
                r.wrong,
                errs,
                ms(quantile(&r.invalidation_ms, 0.5)),
                ms(quantile(&r.invalidation_ms, 0.99)),
                100.0 * r.hit_ratio
            );
        }
        body.push_str("</table>");
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signpost testbed: {}</title>\
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}svg{{background:#fff;border:1px solid #ddd;margin:1em 0}}</style>\
</head><body><h1>Signpost testbed: {}</h1>{body}</body></html>\n",
            esc(&self.scenario),
            esc(&self.scenario)
        )
    }

    /// Writes the three files into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        for (name, text) in [("report.json", json), ("report.md", self.markdown()), ("report.html", self.html())] {
            std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        }
        Ok(())
    }
}

/// How the observer table is made (under it in both reports).
const PRIVACY_NOTE: &str = "Each tier recorded, as salted hashes, the client certificate ids and addresses it saw and the identifiers and sender's providers the requests it could read named; a fact is \"learned\" when those records hold the hash of an AP's certificate id, of an identifier an AP asked about, or of the sender's provider an AP named (or of a resolver's id: a resolver is run by the sender's provider). The APs' own records are the reference. Addresses are not used: on loopback every party is 127.0.0.1.";

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 860.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

/// A round step (1, 2 or 5 × 10^k) giving about `n` intervals over `span`.
fn nice_step(span: f64, n: f64) -> f64 {
    let raw = (span / n).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 { 1.0 } else if f <= 2.0 { 2.0 } else if f <= 5.0 { 5.0 } else { 10.0 }
}

/// What a chart's axes show.
pub(crate) struct Axes<'a> {
    /// x axis label.
    pub x: &'a str,
    /// y axis label.
    pub y: &'a str,
    /// x on a log scale (values from 1 up).
    pub log_x: bool,
    /// A fixed top of the y axis (a CDF ends at 1).
    pub y_max: Option<f64>,
    /// Vertical markers: (x, label), e.g. the scenario's events.
    pub marks: &'a [(f64, String)],
}

pub(crate) fn chart(title: &str, axes: &Axes<'_>, series: &[(String, Vec<(f64, f64)>)], colors: &[&str]) -> String {
    let log_x = axes.log_x;
    // On a log axis values are shown from 1 (ms) up.
    let tx = |x: f64| if log_x { x.max(1.0).log10() } else { x };
    let data_x = series.iter().flat_map(|(_, p)| p.iter().map(|q| tx(q.0))).chain(axes.marks.iter().map(|m| tx(m.0))).fold(1.0_f64, f64::max);
    let data_y = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(0.0_f64, f64::max).max(1e-9);
    // Axes end at round values: a whole power of ten on a log axis, a
    // multiple of the tick step otherwise.
    let (xmax, xstep) = if log_x {
        (data_x.ceil().max(1.0), 1.0)
    } else {
        let st = nice_step(data_x, 5.0);
        ((data_x / st).ceil() * st, st)
    };
    let (ymax, ystep) = match axes.y_max {
        Some(m) => (m, nice_step(m, 4.0)),
        None => {
            let st = nice_step(data_y, 4.0);
            ((data_y / st).ceil().max(1.0) * st, st)
        }
    };
    let sx = |x: f64| PAD + (W - 2.0 * PAD) * tx(x) / xmax;
    let sxt = |t: f64| PAD + (W - 2.0 * PAD) * t / xmax;
    let sy = |y: f64| H - PAD - (H - 2.0 * PAD) * y / ymax;
    let mut s = format!("<h2>{}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">", esc(title), esc(title));
    let _ = write!(s, "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>", H - PAD, W - PAD, H - PAD);
    let _ = write!(s, "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#444\"/>", H - PAD);
    let mut y = 0.0;
    while y <= ymax + ystep * 1e-6 {
        let _ = write!(s, "<line x1=\"{PAD}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3:.1}\" font-size=\"11\" text-anchor=\"end\">{4}</text>", sy(y), W - PAD, PAD - 4.0, sy(y) + 4.0, fmt_num(y));
        y += ystep;
    }
    let mut t = 0.0;
    while t <= xmax + xstep * 1e-6 {
        let label = if log_x { fmt_num(10f64.powf(t)) } else { fmt_num(t) };
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>", sxt(t), H - PAD + 16.0);
        t += xstep;
    }
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>", W / 2.0, H - 8.0, esc(axes.x));
    let _ = write!(s, "<text x=\"12\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>", H / 2.0, H / 2.0, esc(axes.y));
    for (i, (x, label)) in axes.marks.iter().enumerate() {
        let px = sx(*x);
        let ty = PAD - 6.0 + 10.0 * (i % 3) as f64;
        let _ = write!(s, "<line x1=\"{px:.1}\" y1=\"{PAD}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"3,3\"><title>{}</title></line><text x=\"{:.1}\" y=\"{ty:.1}\" font-size=\"9\" fill=\"#666\">{}</text>", H - PAD, esc(label), px + 2.0, esc(label));
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors.get(i % colors.len()).copied().unwrap_or("#000");
        if !pts.is_empty() {
            let d: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
            let _ = write!(s, "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>", d.join(" "));
        }
        let _ = write!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>", W - PAD - 150.0, PAD + 18.0 * i as f64, W - PAD - 132.0, PAD + 10.0 + 18.0 * i as f64, esc(name));
    }
    s.push_str("</svg>");
    s
}

/// Errors by kind, one bar per policy and kind.
fn error_bars(runs: &[PolicyReport], colors: &[&str]) -> String {
    let kinds: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.errors.keys()).collect();
    if kinds.is_empty() {
        return "<h2>Errors by kind</h2><p>None.</p>".into();
    }
    let max = runs.iter().flat_map(|r| r.errors.values()).copied().max().unwrap_or(1).max(1) as f64;
    let mut s = format!("<h2>Errors by kind</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"errors by kind\">");
    let group = (W - 2.0 * PAD) / kinds.len() as f64;
    let bw = group / (runs.len() as f64 + 1.0);
    for (k, kind) in kinds.iter().enumerate() {
        for (i, r) in runs.iter().enumerate() {
            let v = r.errors.get(*kind).copied().unwrap_or(0) as f64;
            let h = (H - 2.0 * PAD) * v / max;
            let x = PAD + group * k as f64 + bw * (i as f64 + 0.5);
            let c = colors.get(i % colors.len()).copied().unwrap_or("#000");
            let _ = write!(s, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{c}\"><title>{} {}: {v}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{v}</text>", H - PAD - h, bw * 0.9, esc(kind), esc(&r.label()), x + bw * 0.45, H - PAD - h - 3.0);
        }
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>", PAD + group * (k as f64 + 0.5), H - PAD + 16.0, esc(kind));
    }
    for (i, r) in runs.iter().enumerate() {
        let c = colors.get(i % colors.len()).copied().unwrap_or("#000");
        let _ = write!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>", W - PAD - 150.0, PAD + 18.0 * i as f64, W - PAD - 132.0, PAD + 10.0 + 18.0 * i as f64, esc(&r.label()));
    }
    s.push_str("</svg>");
    s
}

/// One line per policy: the verdict users would care about.
pub(crate) fn verdict_line(policy: &str, wrong: u64, stale: u64, lookups: u64, p99: Option<f64>) -> String {
    let v = if wrong > 0 { "WRONG" } else if stale > 0 { "STALE" } else { "PASS" };
    format!("{policy} {v}: {wrong} wrong and {stale} stale answers of {lookups}; invalidation p99 {}", ms(p99))
}

fn bars(runs: &[PolicyReport], colors: &[&str]) -> String {
    let tiers = ["resolver", "authority", "root"];
    let max = runs.iter().flat_map(|r| r.tier_requests.values().map(|v| *v as f64 / r.duration_s.max(0.001))).fold(1.0_f64, f64::max);
    let mut s = format!("<h2>Requests per second per tier</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"requests per tier\">");
    let group = (W - 2.0 * PAD) / tiers.len() as f64;
    let bw = group / (runs.len() as f64 + 1.0);
    for (t, tier) in tiers.iter().enumerate() {
        for (i, r) in runs.iter().enumerate() {
            let v = r.tier_requests.get(*tier).copied().unwrap_or(0) as f64 / r.duration_s.max(0.001);
            let h = (H - 2.0 * PAD) * v / max;
            let x = PAD + group * t as f64 + bw * (i as f64 + 0.5);
            let c = colors.get(i % colors.len()).copied().unwrap_or("#000");
            let _ = write!(s, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{c}\"><title>{} {}: {v:.0}/s</title></rect>", H - PAD - h, bw * 0.9, esc(tier), esc(&r.label()));
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>", x + bw * 0.45, H - PAD - h - 3.0, fmt_num(v));
        }
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{tier}</text>", PAD + group * (t as f64 + 0.5), H - PAD + 16.0);
    }
    for (i, r) in runs.iter().enumerate() {
        let c = colors.get(i % colors.len()).copied().unwrap_or("#000");
        let _ = write!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>", W - PAD - 150.0, PAD + 18.0 * i as f64, W - PAD - 132.0, PAD + 10.0 + 18.0 * i as f64, esc(&r.label()));
    }
    s.push_str("</svg>");
    s
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else if v >= 1.0 { format!("{v:.1}") } else { format!("{v:.3}") }
}
