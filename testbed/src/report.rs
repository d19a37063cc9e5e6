//! Reports: `report.json` (every figure), `report.md` (the summary table)
//! and `report.html` (charts as inline SVG, no scripts, no network).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::run::PolicyReport;

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// One entry per policy.
    pub runs: Vec<PolicyReport>,
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
    /// The Markdown summary table.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Signpost testbed: {}\n\n", self.scenario);
        s.push_str("| policy | lookups | lookups/s | correct | stale | wrong | errors | invalidation p50 | p99 | max | hit ratio |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for r in &self.runs {
            let errs: u64 = r.errors.values().sum();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} ({}) | {} | {} | {} | {} | {} | {:.1} % |",
                r.policy,
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
        for r in &self.runs {
            let _ = writeln!(s, "\n## {}\n", r.policy);
            let _ = writeln!(s, "- identifiers: {}; run {:.1} s", r.identifiers, r.duration_s);
            let _ = writeln!(s, "- requests per tier: {}", r.tier_requests.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
            if r.scan_sent > 0 {
                let _ = writeln!(s, "- enumeration scan: {} requests, {} refused (forbidden with Retry-After) by the resolver's per-client limit", r.scan_sent, r.scan_throttled);
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
                (r.policy.clone(), pts)
            })
            .collect();
        body.push_str(&chart("Stale or wrong answers over time", "second of the run", "% of answers", &series, &colors, false));
        // Invalidation latency CDF.
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .runs
            .iter()
            .map(|r| {
                let n = r.invalidation_ms.len().max(1) as f64;
                (r.policy.clone(), r.invalidation_ms.iter().enumerate().map(|(i, v)| (*v, (i + 1) as f64 / n)).collect())
            })
            .collect();
        body.push_str(&chart("Invalidation latency (CDF)", "ms from commit to every resolver answering the new truth (log scale)", "fraction", &series, &colors, true));
        // Requests per tier.
        body.push_str(&bars(&self.runs, &colors));
        // Summary table.
        body.push_str("<h2>Summary</h2><table><tr><th>policy</th><th>lookups</th><th>lookups/s</th><th>correct</th><th>stale</th><th>wrong</th><th>errors</th><th>invalidation p50</th><th>p99</th><th>hit ratio</th></tr>");
        for r in &self.runs {
            let errs: u64 = r.errors.values().sum();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} %</td></tr>",
                esc(&r.policy),
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

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 860.0;
const H: f64 = 300.0;
const PAD: f64 = 50.0;

pub(crate) fn chart(title: &str, xlabel: &str, ylabel: &str, series: &[(String, Vec<(f64, f64)>)], colors: &[&str], log_x: bool) -> String {
    // On a log axis values are shown from 1 (ms) up.
    let tx = |x: f64| if log_x { x.max(1.0).log10() } else { x };
    let xmax = series.iter().flat_map(|(_, p)| p.iter().map(|q| tx(q.0))).fold(1.0_f64, f64::max);
    let ymax = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
    let sx = |x: f64| PAD + (W - 2.0 * PAD) * tx(x) / xmax;
    let sy = |y: f64| H - PAD - (H - 2.0 * PAD) * y / ymax;
    let mut s = format!("<h2>{}</h2><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">", esc(title), esc(title));
    let _ = write!(s, "<line x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#444\"/>", H - PAD, W - PAD, H - PAD);
    let _ = write!(s, "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{}\" stroke=\"#444\"/>", H - PAD);
    for k in 0..=4 {
        let y = ymax * f64::from(k) / 4.0;
        let _ = write!(s, "<text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>", PAD - 4.0, sy(y) + 4.0, fmt_num(y));
        let t = xmax * f64::from(k) / 4.0;
        let (x, label) = if log_x { (10f64.powf(t), fmt_num(10f64.powf(t))) } else { (t, fmt_num(t)) };
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>", sx(x), H - PAD + 16.0, label);
    }
    let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>", W / 2.0, H - 8.0, esc(xlabel));
    let _ = write!(s, "<text x=\"12\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>", H / 2.0, H / 2.0, esc(ylabel));
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
            let _ = write!(s, "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{c}\"><title>{} {}: {v:.0}/s</title></rect>", H - PAD - h, bw * 0.9, esc(tier), esc(&r.policy));
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>", x + bw * 0.45, H - PAD - h - 3.0, fmt_num(v));
        }
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{tier}</text>", PAD + group * (t as f64 + 0.5), H - PAD + 16.0);
    }
    for (i, r) in runs.iter().enumerate() {
        let c = colors.get(i % colors.len()).copied().unwrap_or("#000");
        let _ = write!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>", W - PAD - 150.0, PAD + 18.0 * i as f64, W - PAD - 132.0, PAD + 10.0 + 18.0 * i as f64, esc(&r.policy));
    }
    s.push_str("</svg>");
    s
}

pub(crate) fn fmt_num(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else if v >= 1.0 { format!("{v:.1}") } else { format!("{v:.3}") }
}
