//! The `signpost-resolver` binary: `lookup` against a live topology (human
//! and XML output, verification), `check-config`, the sample config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use signpost_schemas::lost::{Assurance, Uri};
use signpost_schemas::sp::{EntryRecord, Provision, Visibility};
use signpost_schemas::{Csi, Name};
use signpost_trust::Role;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_signpost-resolver");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_prints_verified_providers() {
    let t = Topology::start().await;
    let n = Csi::from_wire("tel:+4915112345678").unwrap();
    let csip = t.pki.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]).unwrap();
    t.de.core.provision(&csip, Provision::Assign { csi: n.clone(), tnsp: None }).await.unwrap();
    let msp = t.pki.peer(Role::Msp, "provider-a.example", &[]).unwrap();
    let e = EntryRecord {
        provider: Name::parse("provider-a.example").unwrap(),
        display_name: Some(signpost_schemas::DisplayName { text: "Provider A".into(), lang: "en".into() }),
        uris: vec![Uri::parse("mimi://provider-a.example/u/alice").unwrap()],
        priority: 10,
        tags: vec![],
        assurance: Assurance::MspVerified,
        bound_to_tnsp: false,
        visibility: Visibility::All,
    };
    t.de.core.provision(&msp, Provision::PutEntry { csi: n, entry: e }).await.unwrap();
    let r = t.resolver(t.plan()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, t.pki.ca_pem()).unwrap();
    let url = format!("https://{}/lost", r.running.addr);
    let args = |extra: &[&str]| {
        let mut v = vec!["lookup".to_owned(), "+49 151 1234 5678".to_owned(), "--resolver".into(), url.clone(), "--resolver-id".into(), "resolver.carrier-x.example".into(), "--ca".into(), ca.display().to_string()];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let o = tokio::task::spawn_blocking({
        let a = args(&[]);
        move || Command::new(BIN).args(a).output().unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("provider-a.example \"Provider A\"") && out.contains("verified (dp.de.example signed)"), "{out}");
    assert!(out.contains("resolver.carrier-x.example → dp.de.example"), "{out}");
    let o = tokio::task::spawn_blocking({
        let a = args(&["--xml"]);
        move || Command::new(BIN).args(a).output().unwrap()
    })
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("<?xml"));
    // Not discoverable: exit 2 and a clear line.
    let o = tokio::task::spawn_blocking({
        let mut a = args(&[]);
        a[1] = "+49 151 9999 9999".into();
        move || Command::new(BIN).args(a).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("notFound"));
    // Bad input names the problem.
    let o = Command::new(BIN).args(["lookup", "not a number", "--ca", &ca.display().to_string()]).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a number"));
}

#[test]
fn sample_config_is_strict() {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("resolver.sample.toml");
    signpost_resolver::config::Config::load(&sample).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.toml");
    std::fs::write(&p, std::fs::read_to_string(&sample).unwrap().replace("[cache]", "[cache]\nmax_entrys = 1")).unwrap();
    let o = Command::new(BIN).args(["check-config", "--config", &p.display().to_string()]).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("max_entrys"));
}

fn ca_file(dir: &std::path::Path) -> PathBuf {
    let now = signpost_schemas::Clock::now(&signpost_schemas::SystemClock);
    let ca = signpost_trust::ca::Ca::generate("t", signpost_schemas::Timestamp::from_secs(now.as_secs() - DAY), now.plus_secs(DAY)).unwrap();
    let p = dir.join("ca.pem");
    std::fs::write(&p, ca.cert_pem()).unwrap();
    p
}

#[test]
fn lookup_exit_codes_tell_usage_from_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path()).display().to_string();
    // A port nothing listens on (loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let https = format!("https://127.0.0.1:{port}/lost");
    let o = run(&["lookup", "+49 151 1234 5678", "--resolver", &https, "--ca", &ca]);
    assert_eq!(o.status.code(), Some(69), "resolver down: {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be reached"), "{}", String::from_utf8_lossy(&o.stderr));
    // Plain HTTP names the flag that allows it, and the flag exists.
    let http = format!("http://127.0.0.1:{port}/lost");
    let o = run(&["lookup", "+49 151 1234 5678", "--resolver", &http, "--ca", &ca]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dev-plaintext"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["lookup", "+49 151 1234 5678", "--resolver", &http, "--ca", &ca, "--dev-plaintext"]);
    assert_eq!(o.status.code(), Some(69), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("WARNING: --dev-plaintext"), "{}", String::from_utf8_lossy(&o.stderr));
    // Usage errors are 64, never 2 (2 is "not found").
    assert_eq!(run(&["lookup"]).status.code(), Some(64));
    assert_eq!(run(&["lookup", "+4915112345678", "--ca", &ca, "--bogus"]).status.code(), Some(64));
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Exit codes") && help.contains("2   not found"), "{help}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let o = run(&["completions", "bash"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--dev-plaintext"));
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["man", "--out", &dir.path().display().to_string()]).status.success());
    assert!(std::fs::read_to_string(dir.path().join("signpost-resolver-lookup.1")).unwrap().contains(".TH"));
}

/// A lookup without a client certificate at a resolver that requires one
/// says what to do, not only that the operation was canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_without_a_required_client_certificate_says_to_pass_one() {
    let t = Topology::start().await;
    let mut p = t.plan();
    p.client_auth = signpost_kit::Auth::Required;
    let r = t.resolver(p).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, t.pki.ca_pem()).unwrap();
    let url = format!("https://{}/lost", r.running.addr);
    let o = tokio::task::spawn_blocking(move || {
        Command::new(BIN).args(["lookup", "+49 151 1234 5678", "--resolver", &url, "--resolver-id", RES, "--ca", &ca.display().to_string()]).output().unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(69), "{err}");
    assert!(err.contains("pass --cert and --key"), "{err}");
}
