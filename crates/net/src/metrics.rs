//! Counters and latency histograms, rendered as Prometheus text. Lock-free
//! on the request path (atomics); labels are fixed strings.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
        for (i, c) in self.counts.iter().enumerate() {
            cum += c.load(Ordering::Relaxed);
            let le = BUCKETS_US.get(i).map_or("+Inf".to_owned(), |b| format!("{}", *b as f64 / 1e6));
            out.push_str(&format!("{name}_bucket{{{labels}{}le=\"{le}\"}} {cum}\n", if labels.is_empty() { "" } else { "," }));
        }
        let l = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        out.push_str(&format!("{name}_sum{l} {}\n", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6));
        out.push_str(&format!("{name}_count{l} {cum}\n"));
    }
}

/// Every outcome label of `signpost_requests_total`.
pub const OUTCOMES: [&str; 21] = [
    "found", "redirect", "services", "badRequest", "internalError", "serviceSubstitution",
    "defaultMappingReturned", "forbidden", "notFound", "loop", "serviceNotImplemented", "serverTimeout",
    "serverError", "locationInvalid", "locationProfileUnrecognized", "http_404", "http_405", "http_413",
    "http_415", "http_429", "http_408",
];

/// The shell's metrics; roles add their own counters with [`Metrics::counter`].
#[derive(Debug, Default)]
pub struct Metrics {
    histograms: Mutex<Vec<(String, &'static Histogram)>>,
    requests: [AtomicU64; 21],
    counters: Mutex<Vec<(String, &'static AtomicU64)>>,
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

impl Metrics {
    /// New metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A counter `name{labels}`; the same name and labels give the same
    /// counter. The counter lives as long as the process (metrics do).
    pub fn counter(&self, name_and_labels: &str) -> &'static AtomicU64 {
        let mut v = match self.counters.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((_, c)) = v.iter().find(|(n, _)| n == name_and_labels) {
            return c;
        }
        let c: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        v.push((name_and_labels.to_owned(), c));
        c
    }

    /// A histogram `name` (seconds), registered once; the same name gives
    /// the same histogram.
    pub fn histogram(&self, name: &str) -> &'static Histogram {
        let mut v = match self.histograms.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((_, h)) = v.iter().find(|(n, _)| n == name) {
            return h;
        }
        let h: &'static Histogram = Box::leak(Box::new(Histogram::default()));
        v.push((name.to_owned(), h));
        h
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
        let mut out = String::with_capacity(4096);
        let v = match self.counters.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut sorted: Vec<_> = v.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut last = "";
        for (n, c) in sorted {
            let base = n.split('{').next().unwrap_or(n);
            if base != last {
                out.push_str(&format!("# TYPE {base} counter\n"));
                last = base;
            }
            out.push_str(&format!("{n} {}\n", c.load(Ordering::Relaxed)));
        }
        out.push_str("# TYPE signpost_requests_total counter\n");
        for (o, c) in OUTCOMES.iter().zip(&self.requests) {
            out.push_str(&format!("signpost_requests_total{{outcome=\"{o}\"}} {}\n", c.load(Ordering::Relaxed)));
        }
        for (name, a, kind) in [
            ("signpost_connections_total", &self.connections_total, "counter"),
            ("signpost_connections_rejected_total", &self.connections_rejected, "counter"),
            ("signpost_connections_open", &self.connections_open, "gauge"),
            ("signpost_tls_handshake_failures_total", &self.handshake_failures, "counter"),
            ("signpost_connections_idle_closed_total", &self.connections_idle_closed, "counter"),
        ] {
            out.push_str(&format!("# TYPE {name} {kind}\n{name} {}\n", a.load(Ordering::Relaxed)));
        }
        out.push_str("# TYPE signpost_request_duration_seconds histogram\n");
        self.latency.render("signpost_request_duration_seconds", "", &mut out);
        let hs = match self.histograms.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for (n, h) in hs.iter() {
            out.push_str(&format!("# TYPE {n} histogram\n"));
            h.render(n, "", &mut out);
        }
        out
    }
}
