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

/// The official LoST schema: `$SIGNPOST_LOST_RNG`, else the copy in
/// `shared/reference/lost/` beside the workspace.
pub fn lost_rng() -> PathBuf {
    if let Ok(p) = std::env::var("SIGNPOST_LOST_RNG") {
        return PathBuf::from(p);
    }
    let p = manifest().join("../../shared/reference/lost/lost1.rng");
    assert!(
        p.exists(),
        "the official LoST schema is not at {} (set SIGNPOST_LOST_RNG to its path)",
        p.display()
    );
    p.canonicalize().unwrap()
}

pub fn sp_rng() -> PathBuf {
    manifest().join("rng/sp.rng")
}

/// Writes the driver grammar (LoST with sp extensions checked) into `dir`.
pub fn driver_rng(dir: &Path) -> PathBuf {
    let template = std::fs::read_to_string(manifest().join("rng/signpost-lost.rng.in")).unwrap();
    let text = template
        .replace("@LOST1_RNG@", &lost_rng().display().to_string())
        .replace("@SP_DEFS_RNG@", &manifest().join("rng/sp-defs.rng").canonicalize().unwrap().display().to_string());
    let p = dir.join("signpost-lost.rng");
    std::fs::write(&p, text).unwrap();
    p
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
