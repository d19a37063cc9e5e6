//! Counters, gauges and latency histograms, rendered as Prometheus text
//! (exposition format 0.0.4). Lock-free on the request path (atomics);
//! labels are fixed strings written by the caller as `name{k="v",…}`
//! (values escaped with [`label_value`]).
//!
//! Every family is rendered once, sorted by name, as `# HELP`, `# TYPE`
//! and its samples; a labelled histogram merges its labels with `le`
//! (`name_bucket{authority="…",le="…"}`). Gauges that are cheaper to
//! compute than to keep current (seconds until a table or a certificate
//! expires, feed links) are read at scrape time through [`Metrics::gauge_fn`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Latency bucket bounds in microseconds.
const BUCKETS_US: [u64; 14] = [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000];

/// A histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; 15],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_us(&self, us: u64) {
        let i = BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(BUCKETS_US.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cum = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Ordering::Relaxed);
            let le = BUCKETS_US.get(i).map_or("+Inf".to_owned(), |b| format!("{}", *b as f64 / 1e6));
            out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}\n"));
        }
        let l = braces(labels);
        out.push_str(&format!("{name}_sum{l} {}\n", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6));
        out.push_str(&format!("{name}_count{l} {cum}\n"));
    }
}

/// A value that goes up and down (or is set outright).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Sets the value from an unsigned count (saturating).
    pub fn set_u64(&self, v: u64) {
        self.set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }
    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A gauge family computed at scrape time: (labels without braces, value).
pub type GaugeFn = Box<dyn Fn() -> Vec<(String, f64)> + Send + Sync>;

/// Every outcome label of `signpost_requests_total`.
pub const OUTCOMES: [&str; 21] = [
    "found", "redirect", "services", "badRequest", "internalError", "serviceSubstitution",
    "defaultMappingReturned", "forbidden", "notFound", "loop", "serviceNotImplemented", "serverTimeout",
    "serverError", "locationInvalid", "locationProfileUnrecognized", "http_404", "http_405", "http_413",
    "http_415", "http_429", "http_408",
];

/// The help text of every family Signpost's servers register; a family
/// not listed here gets its text from [`Metrics::describe`] (or a generic
/// one, so that every family has a `# HELP` line).
const HELP: &[(&str, &str)] = &[
    ("signpost_build_info", "Build of this server (always 1): version and role."),
    ("signpost_requests_total", "LoST requests answered, by outcome (LoST answer or error element, or HTTP status)."),
    ("signpost_request_duration_seconds", "Time from request head to response, all outcomes."),
    ("signpost_connections_total", "TCP connections accepted."),
    ("signpost_connections_rejected_total", "TCP connections closed at once because max_connections were open."),
    ("signpost_connections_open", "TCP connections open now."),
    ("signpost_tls_handshake_failures_total", "TLS handshakes that failed or timed out."),
    ("signpost_connections_idle_closed_total", "Connections closed for idleness (no first request within the header timeout, idle past the idle timeout, or idle near the connection cap)."),
    ("signpost_tls_certificate_expiry_seconds", "Seconds until this server's own certificate chain ends (notAfter); negative once expired."),
    ("signpost_root_table_serial", "Serial of the root table served (root) or in use (resolver)."),
    ("signpost_root_table_expiry_seconds", "Seconds until the root table's validUntil; negative once expired."),
    ("signpost_root_table_reloads_total", "Root-table reloads, by outcome (ok, refused)."),
    ("signpost_provision_total", "Provisioning requests, by operation and outcome."),
    ("signpost_store_records", "Records in the authority's store."),
    ("signpost_feed_head", "Sequence number of the authority's last committed change."),
    ("signpost_feed_subscribers", "Change-feed subscribers connected now."),
    ("signpost_store_standby", "Whether the authority's PostgreSQL store is a read-only hot standby (1) or a primary (0)."),
    ("signpost_store_replication_lag_seconds", "Seconds the authority's PostgreSQL standby is behind: 0 when it has replayed all the WAL it received, else the age of the last transaction it replayed."),
    ("signpost_import_identifiers_total", "Identifiers written by online imports (POST /v1/import)."),
    ("signpost_imports_total", "Online imports ended, by outcome (done, bad_rows, stopped)."),
    ("signpost_resolver_cache_hits_total", "Queries answered from a fresh cache entry."),
    ("signpost_resolver_cache_misses_total", "Queries not answered from a fresh cache entry."),
    ("signpost_resolver_stale_answers_total", "Stale answers served (RFC 8767)."),
    ("signpost_resolver_upstream_queries_total", "Upstream queries, by outcome."),
    ("signpost_resolver_rejected_answers_total", "Upstream answers rejected by verification."),
    ("signpost_resolver_invalidations_total", "Cached answers removed by a change or a resync."),
    ("signpost_resolver_refreshes_total", "Hot answers resolved again after an invalidation."),
    ("signpost_resolver_superseded_answers_total", "Answers asked again because a change overtook them."),
    ("signpost_resolver_resyncs_total", "Feed resyncs (history older than the authority keeps)."),
    ("signpost_resolver_cache_entries", "Answers in the cache now."),
    ("signpost_resolver_cache_bytes", "Bytes of answers in the cache now."),
    ("signpost_resolver_hit_duration_seconds", "Time to answer a query from the cache."),
    ("signpost_resolver_miss_duration_seconds", "Time to answer a query that went upstream."),
    ("signpost_resolver_feed_lag_seconds", "Time from an authority's commit to its change reaching this resolver, by authority."),
    ("signpost_resolver_feed_connected", "Whether the change feed of an authority is connected (1) or not (0)."),
];

/// Seconds from `now` until `t` (negative when `t` has passed).
pub fn seconds_until(t: signpost_schemas::Timestamp, now: signpost_schemas::Timestamp) -> f64 {
    (t.as_millis() as f64 - now.as_millis() as f64) / 1000.0
}

/// Escapes a label value (`\`, `"`, newline) for the text format.
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn braces(labels: &str) -> String {
    if labels.is_empty() { String::new() } else { format!("{{{labels}}}") }
}

/// `name{labels}` → (`name`, `labels`).
fn split(name_and_labels: &str) -> (&str, &str) {
    match name_and_labels.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
        None => (name_and_labels, ""),
    }
}

#[derive(Clone, Copy)]
enum Series {
    Counter(&'static AtomicU64),
    Gauge(&'static Gauge),
    Histogram(&'static Histogram),
}

impl Series {
    fn kind(&self) -> &'static str {
        match self {
            Series::Counter(_) => "counter",
            Series::Gauge(_) => "gauge",
            Series::Histogram(_) => "histogram",
        }
    }
}

#[derive(Default)]
struct Registry {
    /// (family, labels, series).
    series: Vec<(String, String, Series)>,
    /// (family, computed gauge).
    fns: Vec<(String, GaugeFn)>,
    help: Vec<(String, String)>,
}

/// The shell's metrics; roles add theirs with [`Metrics::counter`],
/// [`Metrics::gauge`], [`Metrics::histogram`] and [`Metrics::gauge_fn`].
#[derive(Default)]
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: [AtomicU64; 21],
    latency: Histogram,
    /// Connections accepted.
    pub connections_total: AtomicU64,
    /// Connections refused by the cap.
    pub connections_rejected: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Connections closed for idleness: no first request within the
    /// header timeout, idle past the idle timeout, or idle while the
    /// server was near its connection cap.
    pub connections_idle_closed: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// New metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        match self.registry.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn series(&self, name_and_labels: &str, make: impl FnOnce() -> Series) -> Series {
        let (family, labels) = split(name_and_labels);
        let mut r = self.registry();
        if let Some((_, _, s)) = r.series.iter().find(|(f, l, _)| f == family && l == labels) {
            return *s;
        }
        let s = make();
        r.series.push((family.to_owned(), labels.to_owned(), s));
        s
    }

    /// A counter `name{labels}`; the same name and labels give the same
    /// counter. The counter lives as long as the process (metrics do).
    pub fn counter(&self, name_and_labels: &str) -> &'static AtomicU64 {
        match self.series(name_and_labels, || Series::Counter(Box::leak(Box::new(AtomicU64::new(0))))) {
            Series::Counter(c) => c,
            // Registered earlier as another kind: a detached counter, so a
            // naming mistake never takes the server down.
            _ => Box::leak(Box::new(AtomicU64::new(0))),
        }
    }

    /// A gauge `name{labels}`, typed `gauge`; the same name and labels give
    /// the same gauge.
    pub fn gauge(&self, name_and_labels: &str) -> &'static Gauge {
        match self.series(name_and_labels, || Series::Gauge(Box::leak(Box::new(Gauge::default())))) {
            Series::Gauge(g) => g,
            _ => Box::leak(Box::new(Gauge::default())),
        }
    }

    /// A histogram `name{labels}` (seconds); the same name and labels give
    /// the same histogram.
    pub fn histogram(&self, name_and_labels: &str) -> &'static Histogram {
        match self.series(name_and_labels, || Series::Histogram(Box::leak(Box::new(Histogram::default())))) {
            Series::Histogram(h) => h,
            _ => Box::leak(Box::new(Histogram::default())),
        }
    }

    /// A gauge family computed at every scrape: `f` returns each series as
    /// (labels without braces, value). Registering a family again replaces
    /// its function.
    pub fn gauge_fn(&self, family: &str, f: GaugeFn) {
        let mut r = self.registry();
        r.fns.retain(|(n, _)| n != family);
        r.fns.push((family.to_owned(), f));
    }

    /// The `# HELP` text of a family (overrides the built-in one).
    pub fn describe(&self, family: &str, help: &str) {
        let mut r = self.registry();
        r.help.retain(|(n, _)| n != family);
        r.help.push((family.to_owned(), help.to_owned()));
    }

    /// `signpost_build_info{version="…",role="…"} 1`.
    pub fn build_info(&self, role: &str, version: &str) {
        self.gauge(&format!("signpost_build_info{{version=\"{}\",role=\"{}\"}}", label_value(version), label_value(role))).set(1);
    }

    /// `signpost_tls_certificate_expiry_seconds`: seconds from the scrape
    /// until `not_after` (the server's own certificate chain), negative once
    /// it has passed.
    pub fn certificate_expiry(&self, not_after: signpost_schemas::Timestamp, clock: std::sync::Arc<dyn signpost_schemas::Clock>) {
        self.gauge_fn("signpost_tls_certificate_expiry_seconds", Box::new(move || vec![(String::new(), seconds_until(not_after, clock.now()))]));
    }

    /// Counts one request with its outcome label (one of [`OUTCOMES`]) and
    /// latency. No allocation, no lock.
    pub fn request(&self, outcome: &str, us: u64) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        if let Some(c) = self.requests.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe_us(us);
    }

    /// The count of one outcome so far.
    pub fn requests(&self, outcome: &str) -> u64 {
        OUTCOMES.iter().position(|o| *o == outcome).and_then(|i| self.requests.get(i)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        // family → (type, sample lines)
        let mut families: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
        let mut add = |family: &str, kind: &'static str, text: String| {
            let e = families.entry(family.to_owned()).or_insert((kind, String::new()));
            e.1.push_str(&text);
        };
        let mut reqs = String::new();
        for (o, c) in OUTCOMES.iter().zip(&self.requests) {
            reqs.push_str(&format!("signpost_requests_total{{outcome=\"{o}\"}} {}\n", c.load(Ordering::Relaxed)));
        }
        add("signpost_requests_total", "counter", reqs);
        for (name, a, kind) in [
            ("signpost_connections_total", &self.connections_total, "counter"),
            ("signpost_connections_rejected_total", &self.connections_rejected, "counter"),
            ("signpost_connections_open", &self.connections_open, "gauge"),
            ("signpost_tls_handshake_failures_total", &self.handshake_failures, "counter"),
            ("signpost_connections_idle_closed_total", &self.connections_idle_closed, "counter"),
        ] {
            add(name, kind, format!("{name} {}\n", a.load(Ordering::Relaxed)));
        }
        let mut lat = String::new();
        self.latency.render("signpost_request_duration_seconds", "", &mut lat);
        add("signpost_request_duration_seconds", "histogram", lat);
        let r = self.registry();
        let mut series: Vec<&(String, String, Series)> = r.series.iter().collect();
        series.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (family, labels, s) in series {
            let text = match s {
                Series::Counter(c) => format!("{family}{} {}\n", braces(labels), c.load(Ordering::Relaxed)),
                Series::Gauge(g) => format!("{family}{} {}\n", braces(labels), g.get()),
                Series::Histogram(h) => {
                    let mut t = String::new();
                    h.render(family, labels, &mut t);
                    t
                }
            };
            add(family, s.kind(), text);
        }
        for (family, f) in &r.fns {
            let mut text = String::new();
            for (labels, v) in f() {
                text.push_str(&format!("{family}{} {v}\n", braces(&labels)));
            }
            add(family, "gauge", text);
        }
        let mut out = String::with_capacity(8192);
        for (family, (kind, text)) in &families {
            let help = r
                .help
                .iter()
                .find(|(n, _)| n == family)
                .map(|(_, h)| h.as_str())
                .or_else(|| HELP.iter().find(|(n, _)| n == family).map(|(_, h)| *h))
                .unwrap_or("A Signpost metric.");
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            out.push_str(&format!("# HELP {family} {help}\n# TYPE {family} {kind}\n{text}"));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn labelled_histograms_merge_labels_and_types_name_the_family() {
        let m = Metrics::new();
        m.histogram("x_seconds{authority=\"a.example\"}").observe_us(10);
        m.histogram("x_seconds{authority=\"b.example\"}").observe_us(10);
        let t = m.render();
        assert!(t.contains("x_seconds_bucket{authority=\"a.example\",le=\"0.00005\"} 1\n"), "{t}");
        assert!(t.contains("x_seconds_count{authority=\"b.example\"} 1\n"), "{t}");
        assert_eq!(t.matches("# TYPE x_seconds histogram\n").count(), 1, "{t}");
        assert!(!t.lines().any(|l| l.starts_with('#') && l.contains('{')), "{t}");
    }

    #[test]
    fn gauges_are_typed_gauge_and_every_family_has_help() {
        let m = Metrics::new();
        m.gauge("signpost_resolver_cache_entries").set(5);
        m.gauge_fn("y_expiry_seconds", Box::new(|| vec![(String::new(), -3.0)]));
        m.build_info("root", "0.1.0");
        let t = m.render();
        assert!(t.contains("# TYPE signpost_resolver_cache_entries gauge\nsignpost_resolver_cache_entries 5\n"), "{t}");
        assert!(t.contains("# TYPE y_expiry_seconds gauge\ny_expiry_seconds -3\n"), "{t}");
        assert!(t.contains("signpost_build_info{version=\"0.1.0\",role=\"root\"} 1\n"), "{t}");
        let types = t.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = t.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "{t}");
    }
}
