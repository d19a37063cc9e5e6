//! Test support: a `/metrics` page read by an independent parser, Python
//! `prometheus_client`'s text parser (Debian: python3-prometheus-client;
//! `.ci/run` installs it). Used by the servers' tests through `#[path]`.
//! Without it the check prints that it skipped and how to enable it; under
//! `CI=true` it is required.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// Beyond parsing: no labels inside `# TYPE`/`# HELP`, every family typed
/// and documented, one block per family, buckets with `le`.
const SCRIPT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
errs = []
for l in text.splitlines():
    if l.startswith('# TYPE ') or l.startswith('# HELP '):
        parts = l.split(None, 3)
        if len(parts) < 3 or '{' in parts[2]:
            errs.append('labels inside a comment line: ' + l)
seen = set()
for f in text_string_to_metric_families(text):
    if f.name in seen:
        errs.append('family split or repeated: ' + f.name)
    seen.add(f.name)
    if f.type == 'untyped':
        errs.append('untyped (a sample outside its # TYPE block): ' + f.name)
    if not f.documentation:
        errs.append('no # HELP: ' + f.name)
    print('F\t' + f.name + '\t' + f.type)
    for s in f.samples:
        if f.type == 'histogram' and s.name.endswith('_bucket') and 'le' not in s.labels:
            errs.append('bucket without le: ' + s.name)
        print('S\t' + s.name + '\t' + ','.join(k + '=' + v for k, v in sorted(s.labels.items())) + '\t' + repr(float(s.value)))
for e in errs:
    print('E\t' + e)
sys.exit(1 if errs else 0)
"#;

/// What the parser made of a page.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Family name (as the parser names it: counters without `_total`) → type.
    pub families: BTreeMap<String, String>,
    /// (sample name, `k=v,…` sorted, value).
    pub samples: Vec<(String, String, f64)>,
}

impl Scrape {
    /// The value of a sample with these labels (`k=v,…`, sorted).
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples.iter().find(|(n, l, _)| n == name && l == labels).map(|s| s.2)
    }
    /// The type of a family named as exposed (`x_total` for a counter).
    pub fn kind(&self, exposed: &str) -> Option<&str> {
        self.families.get(exposed).or_else(|| exposed.strip_suffix("_total").and_then(|b| self.families.get(b))).map(String::as_str)
    }
}

fn python() -> Option<String> {
    let mut candidates = vec!["python3".to_owned(), "/usr/bin/python3".to_owned()];
    if let Ok(p) = std::env::var("SIGNPOST_PYTHON") {
        candidates.insert(0, p);
    }
    candidates.into_iter().find(|p| {
        Command::new(p).args(["-c", "import prometheus_client.parser"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

/// Parses `text` with `prometheus_client`; panics with every problem it
/// found. `None` when the parser is not installed (and not under CI).
pub fn parse(text: &str) -> Option<Scrape> {
    let Some(py) = python() else {
        let how = "Python's prometheus_client is not installed (apt-get install python3-prometheus-client, or pip install prometheus-client; SIGNPOST_PYTHON names the interpreter)";
        if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
            panic!("{how} (required when CI=true)");
        }
        // Straight to stderr: the harness captures print macros of passing
        // tests, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "SKIPPED: Prometheus exposition check: {how}");
        return None;
    };
    let mut child = Command::new(py).args(["-c", SCRIPT]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("E\t")).collect();
    assert!(out.status.success() && errors.is_empty(), "the metrics page is not valid Prometheus text: {errors:#?}\n{}\n--- page ---\n{text}", String::from_utf8_lossy(&out.stderr));
    let mut s = Scrape::default();
    for l in stdout.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        match f[0] {
            "F" => {
                s.families.insert(f[1].to_owned(), f[2].to_owned());
            }
            "S" => s.samples.push((f[1].to_owned(), f[2].to_owned(), f[3].parse().unwrap())),
            _ => {}
        }
    }
    Some(s)
}

/// Checks that each (exposed family, type) is on the page.
pub fn expect(s: &Scrape, families: &[(&str, &str)]) {
    for (name, kind) in families {
        assert_eq!(s.kind(name), Some(*kind), "{name}: {:?}", s.families);
    }
}
