//! Test support: validation of documents with xmllint against the official
//! LoST schema, the LoST+sp driver grammar, and the sp schema.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The schemas crate's directory (this file is also used by other crates'
/// tests through `#[path]`).
pub fn manifest() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if here.join("rng/sp-defs.rng").exists() {
        return here;
    }
    for up in ["../schemas", "../../schemas"] {
        if here.join(up).join("rng/sp-defs.rng").exists() {
            return here.join(up).canonicalize().unwrap();
        }
    }
    panic!("cannot find the schemas crate from {}", here.display())
}

/// Where the official LoST schema is, or why it is not used.
#[derive(Debug, PartialEq, Eq)]
pub enum LostRng {
    /// Validate against this file.
    Found(PathBuf),
    /// Skip the validation (not under CI): the text says how to enable it.
    Skip(String),
}

/// The decision behind [`lost_rng`], without the environment: `env_rng` is
/// `$SIGNPOST_LOST_RNG`, `ci` whether `$CI` is `true`, `beside` the copy in
/// `shared/` beside the checkout. A path set explicitly must exist; under CI
/// the schema is required (CI always has `shared/` beside the checkout);
/// elsewhere the validation is skipped with a word on how to enable it.
pub fn decide_lost_rng(env_rng: Option<&str>, ci: bool, beside: &Path) -> Result<LostRng, String> {
    if let Some(p) = env_rng.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(LostRng::Found(p))
        } else {
            Err(format!("SIGNPOST_LOST_RNG={} is not a file", p.display()))
        };
    }
    if beside.is_file() {
        return Ok(LostRng::Found(beside.to_path_buf()));
    }
    let how = format!(
        "the official LoST schema (lost1.rng, RFC 5222) is not at {}; set SIGNPOST_LOST_RNG=/path/to/lost1.rng to enable this validation",
        beside.display()
    );
    if ci { Err(format!("{how} (required when CI=true)")) } else { Ok(LostRng::Skip(how)) }
}

/// The official LoST schema: `$SIGNPOST_LOST_RNG`, else the copy in
/// `shared/reference/lost/` beside the workspace; `None` (after printing
/// that the validation is skipped and how to enable it) when neither exists
/// and `$CI` is not `true`. Panics under CI without it.
pub fn lost_rng() -> Option<PathBuf> {
    let env_rng = std::env::var("SIGNPOST_LOST_RNG").ok();
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    let beside = manifest().join("../../shared/reference/lost/lost1.rng");
    match decide_lost_rng(env_rng.as_deref(), ci, &beside) {
        Ok(LostRng::Found(p)) => Some(p.canonicalize().unwrap()),
        Ok(LostRng::Skip(how)) => {
            // Straight to stderr: the test harness captures print macros of
            // passing tests, and a skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED: LoST schema validation: {how}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

pub fn sp_rng() -> PathBuf {
    manifest().join("rng/sp.rng")
}

/// Writes the driver grammar (LoST with sp extensions checked) into `dir`;
/// `None` when the official LoST schema is not available (see [`lost_rng`]).
pub fn driver_rng(dir: &Path) -> Option<PathBuf> {
    let lost = lost_rng()?;
    Some(driver_rng_with(&lost, dir))
}

fn driver_rng_with(lost: &Path, dir: &Path) -> PathBuf {
    let template = std::fs::read_to_string(manifest().join("rng/signpost-lost.rng.in")).unwrap();
    let text = template
        .replace("@LOST1_RNG@", &lost.display().to_string())
        .replace("@SP_DEFS_RNG@", &manifest().join("rng/sp-defs.rng").canonicalize().unwrap().display().to_string());
    let p = dir.join("signpost-lost.rng");
    std::fs::write(&p, text).unwrap();
    p
}

/// Validates LoST documents against the official LoST schema and against
/// the driver grammar (LoST with sp extensions checked); returns the
/// failures of both. Without the official schema (see [`lost_rng`]) this
/// prints that it skipped and returns no failures.
pub fn xmllint_lost(docs: &[(String, String)]) -> Vec<String> {
    let Some(lost) = lost_rng() else { return Vec::new() };
    let tmp = tempfile::tempdir().unwrap();
    let driver = driver_rng_with(&lost, tmp.path());
    let mut failures = xmllint(&lost, docs);
    failures.extend(xmllint(&driver, docs).into_iter().map(|f| format!("(driver grammar) {f}")));
    failures
}

/// Validates every document with xmllint; returns the failures as
/// "name: xmllint's complaint".
pub fn xmllint(schema: &Path, docs: &[(String, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, (name, body)) in docs.iter().enumerate() {
        let f = dir.path().join(format!("{i:05}.xml"));
        std::fs::write(&f, body).unwrap();
        files.push((f, name));
    }
    let mut failures = Vec::new();
    for chunk in files.chunks(200) {
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg("--relaxng")
            .arg(schema)
            .args(chunk.iter().map(|(f, _)| f))
            .output()
            .expect("xmllint is required (Debian: apt-get install libxml2-utils)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for (f, name) in chunk {
            let fname = f.display().to_string();
            if !stderr.lines().any(|l| l == format!("{fname} validates")) {
                let why: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&fname)).collect();
                failures.push(format!("{name}: {}", why.join(" | ")));
            }
        }
    }
    failures
}

/// Every `*.xml` in a folder, sorted, as (file name, content).
pub fn samples(sub: &str) -> Vec<(String, Vec<u8>)> {
    let dir = manifest().join("samples").join(sub);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no samples in {}", dir.display());
    v
}
