//! The `signpost-authority` binary: check-config, import (good and bad
//! files), the sample config.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
#[path = "../../crates/net/tests/support/prometheus.rs"]
mod prom;

use std::path::PathBuf;
use std::process::Command;

use signpost_trust::Role;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_signpost-authority");

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let now = signpost_schemas::Clock::now(&signpost_schemas::SystemClock);
    let ca = signpost_trust::ca::Ca::generate("t", signpost_schemas::Timestamp::from_secs(now.as_secs() - DAY), now.plus_secs(30 * DAY)).unwrap();
    ca.write_dir(&dir.path().join("ca")).unwrap();
    let i = ca
        .issue(&signpost_trust::ca::LeafRequest {
            role: Role::Authority,
            id: signpost_schemas::Name::parse("dp.de.example").unwrap(),
            scope: vec![signpost_trust::ScopeEntry::parse("+49").unwrap()],
            not_before: signpost_schemas::Timestamp::from_secs(now.as_secs() - DAY),
            not_after: now.plus_secs(30 * DAY),
            ip_sans: vec![],
        })
        .unwrap();
    std::fs::create_dir_all(dir.path().join("dp")).unwrap();
    std::fs::write(dir.path().join("dp/cert.pem"), i.chain_pem).unwrap();
    std::fs::write(dir.path().join("dp/key.pem"), i.key_pem).unwrap();
    let sample = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("authority.sample.toml")).unwrap();
    let cfg = sample
        .replace("pki/ca/ca.pem", "ca/ca.pem")
        .replace("pki/dp-de/cert.pem", "dp/cert.pem")
        .replace("pki/dp-de/key.pem", "dp/key.pem")
        .replace("127.0.0.1:7402", "127.0.0.1:0")
        .replace("127.0.0.1:7412", "127.0.0.1:0");
    let p = dir.path().join("authority.toml");
    std::fs::write(&p, cfg).unwrap();
    (dir, p)
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// The sample's commented postgres keys, switched on, pointing at `url`.
fn postgres_sample(sample: &str, url: &str) -> String {
    let out = sample
        .replace("backend = \"redb\"", "backend = \"postgres\"")
        .replace("path = \"authority.redb\"\n", "")
        .replace("# url = \"postgres://signpost:secret@127.0.0.1:5432/signpost\"", &format!("url = \"{url}\""))
        .replace("# pool_size = 16", "pool_size = 4");
    assert!(out.contains("backend = \"postgres\"") && out.contains("pool_size = 4") && !out.contains("authority.redb"), "the sample's [store] section changed");
    out
}

#[test]
fn import_all_or_nothing_and_check_config() {
    let (dir, cfg) = setup();
    import_and_check(&dir, &cfg);
}

/// The same with `backend = "postgres"` (a real server, see `support::pg`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_check_config_on_postgres() {
    let Some(db) = support::pg::fresh_db().await else { return };
    let (dir, cfg) = setup();
    std::fs::write(&cfg, postgres_sample(&std::fs::read_to_string(&cfg).unwrap(), &db.url())).unwrap();
    tokio::task::spawn_blocking(move || import_and_check(&dir, &cfg)).await.unwrap();
    // A server that is not there: check-config says so.
    let (dir, cfg) = setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&cfg, postgres_sample(&std::fs::read_to_string(&cfg).unwrap(), &format!("host=127.0.0.1 port={port} user=nobody dbname=none"))).unwrap();
    let o = run(&["check-config", "--config", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("postgres"), "{}", String::from_utf8_lossy(&o.stderr));
    drop(dir);
}

/// `serve` on a streaming standby of the primary `import` wrote to
/// (`support::pg::primary_and_standby`): it says so at start, answers the
/// imported number once replayed, reports `signpost_store_standby 1` and
/// its replication lag on /metrics, and refuses provisioning with the
/// reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_a_standby() {
    let Some(pair) = tokio::task::spawn_blocking(support::pg::primary_and_standby).await.unwrap() else { return };
    let (dir, cfg) = setup();
    let sample = std::fs::read_to_string(&cfg).unwrap();
    let primary = dir.path().join("primary.toml");
    std::fs::write(&primary, postgres_sample(&sample, &pair.primary)).unwrap();
    std::fs::write(&cfg, postgres_sample(&sample, &pair.standby)).unwrap();
    let data = dir.path().join("one.csv");
    std::fs::write(&data, format!("{}\n+4915112345678,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/1,10,,csip-attested,false,OTT\n", signpost_authority::import::HEADER)).unwrap();
    let o = run(&["import", "--config", &primary.display().to_string(), "--quiet", &data.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Until the schema is replayed, the standby refuses to serve (bounded
    // only so a broken build cannot hang CI; not a latency assertion).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let o = run(&["check-config", "--config", &cfg.display().to_string()]);
        if o.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (mut child, log, addr, client) = start_server(&dir, &cfg);
    assert!(log.lock().unwrap().iter().any(|l| l.contains("serving from a PostgreSQL standby")), "{:?}", log.lock().unwrap());
    loop {
        let r = lookup(&client, addr, "tel:+4915112345678").await;
        if let signpost_schemas::Response::Found(f) = &r {
            assert_eq!(f.mappings.len(), 1);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page = loop {
        let page = scrape(&log).await;
        if page.contains("\nsignpost_store_replication_lag_seconds ") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(page.contains("\nsignpost_store_standby 1\n"), "{page}");
    if let Some(s) = prom::parse(&page) {
        prom::expect(&s, &[("signpost_store_standby", "gauge"), ("signpost_store_replication_lag_seconds", "gauge")]);
        assert_eq!(s.value("signpost_store_standby", ""), Some(1.0), "{page}");
        let lag = s.value("signpost_store_replication_lag_seconds", "").unwrap();
        assert!(lag.is_finite() && lag >= 0.0, "{page}");
    }
    // Provisioning through the standby's frontend: refused, with the reason.
    let ca = signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap();
    let (cc, ck) = issue(&ca, Role::Csip, "tnsp-a.de.example", &["+4915"]);
    std::fs::write(dir.path().join("csip-cert.pem"), cc).unwrap();
    std::fs::write(dir.path().join("csip-key.pem"), ck).unwrap();
    let d = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        let (ca, cert, key) = (d.join("ca/ca.pem"), d.join("csip-cert.pem"), d.join("csip-key.pem"));
        let server = format!("https://{addr}");
        run(&["provision", "--server", &server, "--server-id", "dp.de.example", "--ca", &ca.display().to_string(), "--cert", &cert.display().to_string(), "--key", &key.display().to_string(), "assign", "+4915112340000"])
    })
    .await
    .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(signpost_authority::store::pg::READ_ONLY), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success());
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("4915112340000") || l.contains("feed prune failed")), "{:?}", log.lock().unwrap());
}

fn import_and_check(dir: &tempfile::TempDir, cfg: &std::path::Path) {
    let c = cfg.display().to_string();
    let o = run(&["check-config", "--config", &c]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 stored identifiers"));

    // A bad file: every bad row named by line, nothing written.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{}\n+4915112345678,assigned,tnsp-a.de.example,,,,,,,\n+49151ABC,assigned,t.example,,,,,,,\n+4915112345679,sold,,,,,,,,\n", signpost_authority::import::HEADER)).unwrap();
    let o = run(&["import", "--config", &c, "--quiet", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 3:") && err.contains("line 4:") && err.contains("nothing was imported"), "{err}");
    let o = run(&["check-config", "--config", &c]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 stored identifiers"));

    // Out of scope: refused as a whole, too.
    let oos = dir.path().join("oos.csv");
    std::fs::write(&oos, format!("{}\n+4915112345678,assigned,tnsp-a.de.example,,,,,,,\n+33612345678,assigned,tnsp.fr.example,,,,,,,\n+447700900123,assigned,tnsp.uk.example,,,,,,,\n", signpost_authority::import::HEADER)).unwrap();
    let o = run(&["import", "--config", &c, "--quiet", &oos.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    // Every out-of-scope row, each with the file name.
    let err = String::from_utf8_lossy(&o.stderr);
    let f = oos.display().to_string();
    assert!(err.contains(&format!("{f}: line 3")) && err.contains(&format!("{f}: line 4")) && err.contains("2 bad row(s)"), "{err}");

    // A good file (national numbers with --region).
    let good = dir.path().join("good.csv");
    let mut text = format!("{}\n", signpost_authority::import::HEADER);
    for i in 0..200 {
        text.push_str(&format!("0151 1234{i:04},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,personal,csip-attested,false,\"OTT, {i}\"\n"));
    }
    text.push_str("0151 99990000,released,,,,,,,,\n");
    std::fs::write(&good, text).unwrap();
    // Not on a terminal (the test captures stderr): the phases are lines.
    let o = run(&["import", "--config", &c, "--region", "DE", &good.display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("201 identifiers checked") && err.contains("import: written 201/201 (100%)"), "{err}");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("imported 201 identifiers"));
    let o = run(&["check-config", "--config", &c]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("201 stored identifiers (feed head 201)"), "{}", String::from_utf8_lossy(&o.stdout));
    // One record, and a prefix listing, without XML.
    let o = run(&["show", "--config", &c, "--region", "DE", "0151 12340007"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("tel:+4915112340007  assigned to tnsp-a.de.example") && shown.contains("ott.example \"OTT, 7\"") && shown.contains("mimi://ott.example/u/7"), "{shown}");
    assert_eq!(run(&["show", "--config", &c, "+4915199998888"]).status.code(), Some(2));
    let o = run(&["list", "--config", &c, "+49151123400", "--limit", "5"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed = String::from_utf8_lossy(&o.stdout);
    assert_eq!(listed.lines().filter(|l| l.starts_with("tel:")).count(), 5, "{listed}");
    assert!(listed.starts_with("tel:+4915112340000"), "{listed}");
    // Importing again: the identifiers exist, refused as a whole, every
    // duplicate reported (up to the cap) with the file name.
    let o = run(&["import", "--config", &c, "--quiet", "--region", "DE", &good.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    let f = good.display().to_string();
    assert_eq!(err.lines().filter(|l| l.starts_with(&format!("{f}: line ")) && l.contains("already in the store")).count(), 50, "{err}");
    assert!(err.contains("there may be more"), "{err}");
}

#[test]
fn sample_config_is_strict_and_errors_name_the_key() {
    let (dir, cfg) = setup();
    let bad_store = dir.path().join("bad-store.toml");
    let sample_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("authority.sample.toml");
    signpost_authority::config::Config::load(&sample_path).unwrap();
    // Its postgres keys, uncommented, load strictly too.
    let sample = std::fs::read_to_string(&sample_path).unwrap();
    let pg = dir.path().join("pg.toml");
    std::fs::write(&pg, postgres_sample(&sample, "postgres://signpost:secret@127.0.0.1:5432/signpost").replace("# ca = ", "ca = ")).unwrap();
    let (c, _) = signpost_authority::config::Config::load(&pg).unwrap();
    assert_eq!(c.store.backend, signpost_authority::config::Backend::Postgres);
    assert_eq!((c.store.pool_size, c.store.path.as_deref()), (Some(4), None));
    assert!(c.store.ca.is_some());
    // Keys of the other backend are errors that name them.
    for (from, to, key) in [
        ("path = \"authority.redb\"", "path = \"authority.redb\"\nurl = \"host=127.0.0.1\"", "store.url"),
        ("path = \"authority.redb\"", "", "store.path"),
        ("backend = \"redb\"", "backend = \"sqlite\"", "sqlite"),
    ] {
        std::fs::write(&bad_store, std::fs::read_to_string(&cfg).unwrap().replace(from, to)).unwrap();
        let o = run(&["check-config", "--config", &bad_store.display().to_string()]);
        assert_eq!(o.status.code(), Some(64), "{key}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(key), "{key}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&cfg).unwrap().replace("[feed]", "[feed]\nheartbeat = 5")).unwrap();
    let o = run(&["check-config", "--config", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("heartbeat"));
    // A certificate of another role cannot run an authority.
    let (c, k) = issue(&signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap(), Role::Msp, "dp.de.example", &[]);
    std::fs::write(dir.path().join("dp/cert.pem"), c).unwrap();
    std::fs::write(dir.path().join("dp/key.pem"), k).unwrap();
    let o = run(&["check-config", "--config", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("role"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The stored identifier count and feed head `check-config` reports.
fn stored(cfg: &str) -> (u64, u64) {
    let o = run(&["check-config", "--config", cfg]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let n = |after: &str| -> u64 { out.split(after).nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()).and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("{out}")) };
    (n(" with "), n("(feed head "))
}

/// A file big enough for several batches (`BATCH_LINES`), one or two rows
/// per identifier, and what `export` must write for it.
fn big_file(n: u64) -> (String, String) {
    let mut text = format!("{}\n", signpost_authority::import::HEADER);
    let mut want = format!("{}\n", signpost_authority::import::HEADER_FULL);
    for i in 0..n {
        text.push_str(&format!("+49 151 {i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,personal,msp-verified,false,User {i}\n"));
        want.push_str(&format!("tel:+49151{i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,personal,msp-verified,false,User {i},1,false,,en\n"));
        if i % 3 == 0 {
            text.push_str(&format!("+4915 1{i:08},assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/{i},20,,,true,\n"));
            want.push_str(&format!("tel:+49151{i:08},assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/{i},20,,csip-attested,true,,1,false,,\n"));
        }
    }
    (text, want)
}

/// [`big_file`] written as `big.csv` in `dir`: its path and the export it must give.
fn write_big_file(dir: &tempfile::TempDir, n: u64) -> (String, String) {
    let (text, want) = big_file(n);
    let data = dir.path().join("big.csv");
    std::fs::write(&data, text).unwrap();
    (data.display().to_string(), want)
}

/// `kill -9` in the middle of an import: the batches written are there
/// with their feed events and the checkpoint; another file is refused
/// while the import is unfinished; the same file again resumes and the
/// store ends with every identifier once, one feed event each, and exactly
/// the file's contents (the export).
#[test]
fn import_resumes_after_kill_9() {
    use std::io::{BufRead, BufReader};
    let (dir, cfg) = setup();
    let c = cfg.display().to_string();
    const N: u64 = 40_000;
    let (d, want) = write_big_file(&dir, N);
    let mut child = Command::new(BIN).args(["import", "--config", &c, &d]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let first_batch = line.starts_with("import: written ");
        seen.push(line);
        if first_batch {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the import ended before the kill: {seen:?}");
    let (part, head) = stored(&c);
    assert!(part > 0 && part < N && head == part, "{part} {head} {seen:?}");

    // Another file while the import is unfinished: refused, nothing written.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, format!("{}\n+4915900000001,assigned,tnsp-a.de.example,,,,,,,\n", signpost_authority::import::HEADER)).unwrap();
    let o = run(&["import", "--config", &c, "--quiet", &other.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unfinished import of another file"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stored(&c), (part, part));

    let o = run(&["import", "--config", &c, &d]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("resuming an interrupted import: {part} of {N} identifiers were written")), "{err}");
    assert!(err.contains("import: store compacted from"), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("imported {N} identifiers from {d} ({part} by an earlier, interrupted run): {} written", N - part)), "{out}");
    // Each identifier once, one feed event each: nothing duplicated or lost.
    assert_eq!(stored(&c), (N, N));
    let exported = dir.path().join("out.csv");
    let o = run(&["export", "--config", &c, &exported.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&exported).unwrap() == want, "the store's contents differ from the file");
    // Finished: the checkpoint is gone, so the same file again is refused
    // as a whole (every identifier exists).
    let o = run(&["import", "--config", &c, "--quiet", &d]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in the store"));
}

/// A bad row far into a big file (past the first batches) and an
/// identifier whose rows are not adjacent: every problem reported with its
/// line, nothing written.
#[test]
fn import_checks_the_whole_file_before_writing() {
    let (dir, cfg) = setup();
    let c = cfg.display().to_string();
    let (mut text, _) = big_file(30_000);
    text.push_str("+4915199999999,assigned,tnsp-a.de.example,ott.example,,,,,,\n");
    text.push_str("+49 151 00000005,assigned,tnsp-a.de.example,x.example,mimi://x.example/u/5,,,,,\n");
    let lines = text.lines().count();
    let data = dir.path().join("late.csv");
    std::fs::write(&data, text).unwrap();
    let o = run(&["import", "--config", &c, "--quiet", &data.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    let f = data.display().to_string();
    assert!(err.contains(&format!("{f}: line {}: an entry needs at least one uri", lines - 1)), "{err}");
    assert_eq!(stored(&c), (0, 0));
    // Without the bad row, the repeat is found (by the second read).
    let text = std::fs::read_to_string(&data).unwrap().replace("+4915199999999,assigned,tnsp-a.de.example,ott.example,,,,,,\n", "");
    std::fs::write(&data, text).unwrap();
    let o = run(&["import", "--config", &c, "--quiet", &data.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{f}: line {}: tel:+4915100000005 already appeared on line 9", lines - 1)), "{err}");
    assert_eq!(stored(&c), (0, 0));
}

/// A file in the full format (epochs, opt-out, visibility, display-name
/// language, quoting, several URIs and tags, released numbers).
fn mixed_file() -> String {
    format!(
        "{}\n\
+4915100000001,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/1 mimi://ott.example/u/1b,5,personal business,msp-verified,false,\"Alice \"\"A\"\", Ltd\",3,false,friend.example other.example,de\n\
+4915100000001,assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/1,20,,csip-attested,true,,3,false,,\n\
+4915100000002,assigned,tnsp-a.de.example,,,,,,,,1,true,,\n\
+4915100000003,released,,,,,,,,,7,false,,\n\
+4915100000004,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/4,10,,msp-verified,false,\" padded \",2,true,,\n",
        signpost_authority::import::HEADER_FULL
    )
}

/// import → export → import into a fresh store → export: the same bytes;
/// what only the full format carries survives.
fn round_trip(dir: &tempfile::TempDir, first: &std::path::Path, second: &std::path::Path) {
    let src = dir.path().join("mixed.csv");
    std::fs::write(&src, mixed_file()).unwrap();
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    for (cfg, input, out) in [(first, &src, &a), (second, &a, &b)] {
        let cfg = cfg.display().to_string();
        let o = run(&["import", "--config", &cfg, "--quiet", &input.display().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = run(&["export", "--config", &cfg, &out.display().to_string()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (a, b) = (std::fs::read_to_string(&a).unwrap(), std::fs::read_to_string(&b).unwrap());
    assert_eq!(a, b);
    for want in [
        "tel:+4915100000001,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/1 mimi://ott.example/u/1b,5,personal business,msp-verified,false,\"Alice \"\"A\"\", Ltd\",3,false,friend.example other.example,de\n",
        "tel:+4915100000002,assigned,tnsp-a.de.example,,,,,,,,1,true,,\n",
        "tel:+4915100000003,released,,,,,,,,,7,false,,\n",
        "tel:+4915100000004,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/4,10,,msp-verified,false,padded,2,true,,en\n",
    ] {
        assert!(a.contains(want), "{want} not in\n{a}");
    }
    // To standard output as well.
    let o = run(&["export", "--config", &second.display().to_string()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), a);
}

#[test]
fn export_import_round_trip_is_exact() {
    let (dir, cfg) = setup();
    let fresh = dir.path().join("fresh.toml");
    std::fs::write(&fresh, std::fs::read_to_string(&cfg).unwrap().replace("path = \"authority.redb\"", "path = \"fresh.redb\"")).unwrap();
    round_trip(&dir, &cfg, &fresh);
}

/// From the embedded store to PostgreSQL (a real server, `support::pg`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_round_trip_from_redb_to_postgres() {
    let Some(db) = support::pg::fresh_db().await else { return };
    let (dir, cfg) = setup();
    let pg = dir.path().join("pg.toml");
    std::fs::write(&pg, postgres_sample(&std::fs::read_to_string(&cfg).unwrap(), &db.url())).unwrap();
    tokio::task::spawn_blocking(move || round_trip(&dir, &cfg, &pg)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_listeners_answers_and_drains() {
    let (dir, cfg) = setup();
    serve_and_drain(&dir, &cfg, false).await;
}

/// `serve` on `backend = "postgres"`: it follows the shared database and
/// answers what `import` put there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres() {
    let Some(db) = support::pg::fresh_db().await else { return };
    let (dir, cfg) = setup();
    std::fs::write(&cfg, postgres_sample(&std::fs::read_to_string(&cfg).unwrap(), &db.url())).unwrap();
    let data = dir.path().join("one.csv");
    std::fs::write(&data, format!("{}\n+4915112345678,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/1,10,,csip-attested,false,OTT\n", signpost_authority::import::HEADER)).unwrap();
    let o = run(&["import", "--config", &cfg.display().to_string(), "--quiet", &data.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serve_and_drain(&dir, &cfg, true).await;
}

type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts `serve` on `cfg`: the child, its log lines as they come, the
/// LoST address, and a resolver's mTLS client of the test CA.
fn start_server(dir: &tempfile::TempDir, cfg: &std::path::Path) -> (std::process::Child, Log, std::net::SocketAddr, signpost_net::client::Client) {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};
    let mut child = Command::new(BIN)
        .args(["serve", "--config", &cfg.display().to_string()])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l2, err) = (log.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let addr: std::net::SocketAddr = loop {
        if let Some(a) = log.lock().unwrap().iter().find_map(|l| l.split("listening for lost on ").nth(1).map(|a| a.trim().parse().unwrap())) {
            break a;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", log.lock().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let ca = signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap();
    let (c, k) = issue(&ca, Role::Resolver, "resolver.example", &[]);
    let anchor = signpost_trust::TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let id = signpost_trust::tls::Identity::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
    let client = signpost_net::client::Client::new(Arc::new(signpost_trust::tls::client_config(&anchor, Some(&id)).unwrap()), std::time::Duration::from_secs(5));
    (child, log, addr, client)
}

/// The body of the running server's `/metrics` (its admin address from
/// the log).
async fn scrape(log: &Log) -> String {
    let admin: std::net::SocketAddr =
        log.lock().unwrap().iter().find_map(|l| l.split("listening for admin on ").nth(1).map(|a| a.trim().parse().unwrap())).unwrap();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
    })
    .await
    .unwrap()
}

/// One findService over TLS, decoded.
async fn lookup(client: &signpost_net::client::Client, addr: std::net::SocketAddr, uri: &str) -> signpost_schemas::Response {
    let req = signpost_schemas::Request::FindService(signpost_schemas::FindService::for_csi(csi(uri), false));
    let a = client
        .post_lost(&signpost_schemas::lost::Endpoint::parse(&format!("https://{addr}/lost")).unwrap(), &signpost_schemas::Name::parse("dp.de.example").unwrap(), bytes::Bytes::from(req.encode()))
        .await
        .unwrap();
    signpost_schemas::Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE).unwrap()
}

/// The binary imports unsigned; the served answers carry signatures made
/// on demand that verify against the authority's certificate, a repeated
/// answer copies them from the cache, and answering writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_numbers_answer_signatures_made_on_demand_over_tls() {
    let (dir, cfg) = setup();
    let c = cfg.display().to_string();
    let file = dir.path().join("n.csv");
    let mut text = format!("{}\n", signpost_authority::import::HEADER_FULL);
    for i in 0..50 {
        text.push_str(&format!("+49151{i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,personal,msp-verified,false,User {i},1,false,,\n"));
        if i % 2 == 0 {
            text.push_str(&format!("+49151{i:08},assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/{i},20,,csip-attested,true,,1,false,,\n"));
        }
    }
    text.push_str("+4915199999999,assigned,tnsp-a.de.example,,,,,,,,1,true,,\n");
    std::fs::write(&file, text).unwrap();
    let o = run(&["import", "--config", &c, "--quiet", &file.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (mut child, log, addr, client) = start_server(&dir, &cfg);
    let now = signpost_schemas::Clock::now(&signpost_schemas::SystemClock);
    let ca = signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap();
    let mut v = signpost_trust::sign::Verifier::new(signpost_trust::TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap());
    v.add_pem(&std::fs::read(dir.path().join("dp/cert.pem")).unwrap(), now).unwrap();
    let sigs = |r: &signpost_schemas::Response| match r {
        signpost_schemas::Response::Found(f) => f.mappings.iter().map(|m| m.signature.as_ref().unwrap().value.clone()).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let mut first = Vec::new();
    for i in 0..50 {
        let uri = format!("tel:+49151{i:08}");
        let r = lookup(&client, addr, &uri).await;
        let signpost_schemas::Response::Found(f) = &r else { panic!("{r:?}") };
        assert_eq!(f.mappings.len(), if i % 2 == 0 { 2 } else { 1 });
        for m in &f.mappings {
            v.verify_mapping(&csi(&uri), m, now).unwrap();
            assert!(m.uris.iter().any(|u| u.as_str().ends_with(&format!("/u/{i}"))));
        }
        first.push(sigs(&r));
    }
    // Again: the same signature bytes (ECDSA is randomized: no new signature).
    for (i, s) in first.iter().enumerate() {
        assert_eq!(&sigs(&lookup(&client, addr, &format!("tel:+49151{i:08}")).await), s);
    }
    // The imported opt-out: its signed opt-out mapping, made on demand.
    let r = lookup(&client, addr, "tel:+4915199999999").await;
    let signpost_schemas::Response::Found(f) = &r else { panic!("{r:?}") };
    assert!(f.mappings[0].uris.is_empty() && f.mappings[0].source_id.starts_with("opted-out."));
    v.verify_mapping(&csi("tel:+4915199999999"), &f.mappings[0], now).unwrap();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "{:?}", log.lock().unwrap());
    // Answering wrote nothing: the feed head is the import's.
    let o = run(&["check-config", "--config", &c]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("51 stored identifiers (feed head 51)"), "{}", String::from_utf8_lossy(&o.stdout));
}

async fn serve_and_drain(dir: &tempfile::TempDir, cfg: &std::path::Path, postgres: bool) {
    let (mut child, log, addr, client) = start_server(dir, cfg);
    let ca = signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap();
    let req = signpost_schemas::Request::FindService(signpost_schemas::FindService::for_csi(csi("tel:+33612345678"), false));
    let a = client
        .post_lost(&signpost_schemas::lost::Endpoint::parse(&format!("https://{addr}/lost")).unwrap(), &signpost_schemas::Name::parse("dp.de.example").unwrap(), bytes::Bytes::from(req.encode()))
        .await
        .unwrap();
    // Out of scope with a root configured: redirect toward the root.
    let r = signpost_schemas::Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE).unwrap();
    assert!(matches!(r, signpost_schemas::Response::Redirect(ref x) if x.target.as_str() == "root.signpost.example"), "{r:?}");
    if postgres {
        assert!(log.lock().unwrap().iter().any(|l| l.contains("following the shared store")), "{:?}", log.lock().unwrap());
        let req = signpost_schemas::Request::FindService(signpost_schemas::FindService::for_csi(csi("tel:+4915112345678"), false));
        let a = client
            .post_lost(&signpost_schemas::lost::Endpoint::parse(&format!("https://{addr}/lost")).unwrap(), &signpost_schemas::Name::parse("dp.de.example").unwrap(), bytes::Bytes::from(req.encode()))
            .await
            .unwrap();
        let r = signpost_schemas::Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE).unwrap();
        assert!(matches!(r, signpost_schemas::Response::Found(ref f) if f.feed_position == Some(1)), "{r:?}");
    }
    if !postgres {
        // A feed subscriber is logged at info with its id (never an identifier).
        let (st, feed) = client.get_stream(&signpost_schemas::lost::Endpoint::parse(&format!("https://{addr}/feed")).unwrap(), &signpost_schemas::Name::parse("dp.de.example").unwrap(), "/feed").await.unwrap();
        assert_eq!(st, 200);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !log.lock().unwrap().iter().any(|l| l.contains("feed subscriber connected") && l.contains("resolver.example") && l.contains("INFO")) {
            assert!(std::time::Instant::now() < deadline, "{:?}", log.lock().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(feed);
        // The admin plane's /metrics, read by an independent parser.
        let page = scrape(&log).await;
        if let Some(s) = prom::parse(&page) {
            prom::expect(
                &s,
                &[
                    ("signpost_build_info", "gauge"),
                    ("signpost_requests_total", "counter"),
                    ("signpost_request_duration_seconds", "histogram"),
                    ("signpost_tls_certificate_expiry_seconds", "gauge"),
                    ("signpost_store_records", "gauge"),
                    ("signpost_feed_head", "gauge"),
                ],
            );
            assert_eq!(s.value("signpost_build_info", &format!("role=authority,version={}", env!("CARGO_PKG_VERSION"))), Some(1.0), "{page}");
            assert_eq!(s.value("signpost_requests_total", "outcome=redirect"), Some(1.0), "{page}");
            let cert = s.value("signpost_tls_certificate_expiry_seconds", "").unwrap();
            assert!(cert > 29.0 * 86_400.0 && cert <= 30.0 * 86_400.0, "{cert}");
        }
        // Provisioning one record without writing XML, through the running server.
        let (cc, ck) = issue(&ca, Role::Csip, "tnsp-a.de.example", &["+4915"]);
        let (mc, mk) = issue(&ca, Role::Msp, "ott.example", &[]);
        for (n, (c, k)) in [("csip", (&cc, &ck)), ("msp", (&mc, &mk))] {
            std::fs::write(dir.path().join(format!("{n}-cert.pem")), c).unwrap();
            std::fs::write(dir.path().join(format!("{n}-key.pem")), k).unwrap();
        }
        let d = dir.path().to_path_buf();
        let prov = move |who: &str, op: &[&str]| {
            let mut a: Vec<String> = ["provision", "--server", &format!("https://{addr}"), "--server-id", "dp.de.example", "--ca"].iter().map(|s| s.to_string()).collect();
            a.push(d.join("ca/ca.pem").display().to_string());
            a.extend(["--cert".into(), d.join(format!("{who}-cert.pem")).display().to_string(), "--key".into(), d.join(format!("{who}-key.pem")).display().to_string()]);
            a.extend(op.iter().map(|s| s.to_string()));
            Command::new(BIN).args(a).output().unwrap()
        };
        let o = tokio::task::spawn_blocking({
            let prov = prov.clone();
            move || {
                (
                    prov("csip", &["assign", "+49 151 1234 5678"]),
                    prov("msp", &["put-entry", "+4915112345678", "--provider", "ott.example", "--uri", "mimi://ott.example/u/1", "--tag", "personal"]),
                    prov("csip", &["assign", "+4930123456"]),
                    prov("msp", &["remove-entry", "+4915112345678", "--provider", "ott.example"]),
                    prov("csip", &["opt-out", "+4915112345678"]),
                    prov("csip", &["opt-in", "+4915112345678"]),
                    prov("csip", &["release", "+4915112345678"]),
                )
            }
        })
        .await
        .unwrap();
        for (what, out) in [("assign", &o.0), ("put-entry", &o.1), ("remove-entry", &o.3), ("opt-out", &o.4), ("opt-in", &o.5), ("release", &o.6)] {
            assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 changed"), "{what}: {}", String::from_utf8_lossy(&out.stdout));
        }
        // Outside the CSIP's scope: refused in words, exit 65.
        assert_eq!(o.2.status.code(), Some(65), "{}", String::from_utf8_lossy(&o.2.stderr));
        assert!(String::from_utf8_lossy(&o.2.stderr).contains("refused (HTTP"), "{}", String::from_utf8_lossy(&o.2.stderr));
    }
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let st = child.wait().unwrap();
    assert!(st.success());
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("33612345678")), "identifiers must not be logged");
}

#[test]
fn help_prints_the_exit_codes_and_usage_errors_exit_64() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Exit codes") && help.contains("65  bad data"), "{help}");
    assert_eq!(run(&["serve"]).status.code(), Some(64), "missing --config");
    assert_eq!(run(&["frobnicate"]).status.code(), Some(64));
}

#[test]
fn a_present_section_may_list_only_what_it_changes_and_the_sample_shows_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let base = "id = \"dp.de.example\"\n[listen]\nlost = \"127.0.0.1:0\"\n[tls]\nca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[store]\npath = \"a.redb\"\n";
    let partial = dir.path().join("partial.toml");
    std::fs::write(&partial, format!("{base}[answers]\nmapping_ttl_s = 60\n[feed]\nheartbeat_ms = 1000\n[rate]\nburst = 5.0\n[limits]\nmax_body = 1024\n[log]\nlevel = \"debug\"\n")).unwrap();
    let (c, _) = signpost_authority::config::Config::load(&partial).unwrap();
    assert_eq!((c.answers.mapping_ttl_s, c.answers.negative_ttl_s), (60, 60));
    assert_eq!((c.feed.heartbeat_ms, c.feed.retention_h), (1000, 168));
    assert_eq!((c.rate.burst, c.rate.queries_per_s), (5.0, 500.0));
    assert_eq!((c.limits.max_body, c.limits.max_connections), (1024, 4096));
    assert_eq!((c.log.level.as_str(), c.log.format.as_str()), ("debug", "human"));
    // The sample's values are the defaults.
    let minimal = dir.path().join("minimal.toml");
    std::fs::write(&minimal, base).unwrap();
    let (m, _) = signpost_authority::config::Config::load(&minimal).unwrap();
    let (s, _) = signpost_authority::config::Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("authority.sample.toml")).unwrap();
    for (a, b) in [
        (format!("{:?}", m.answers), format!("{:?}", s.answers)),
        (format!("{:?}", m.feed), format!("{:?}", s.feed)),
        (format!("{:?}", m.rate), format!("{:?}", s.rate)),
        (format!("{:?}", m.limits), format!("{:?}", s.limits)),
        (format!("{:?}", m.log), format!("{:?}", s.log)),
    ] {
        assert_eq!(a, b);
    }
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let o = run(&["completions", "fish"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("signpost-authority"));
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["man", "--out", &dir.path().display().to_string()]).status.success());
    assert!(std::fs::read_to_string(dir.path().join("signpost-authority-import.1")).unwrap().contains(".TH"));
}

/// An admin-role client certificate for `import --server`: the flags.
fn admin_flags(dir: &tempfile::TempDir, addr: std::net::SocketAddr, role: Role, scope: &str) -> Vec<String> {
    let ca = signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap();
    let (c, k) = issue(&ca, role, "admin.de.example", &[scope]);
    let (cp, kp) = (dir.path().join(format!("{role:?}{scope}-cert.pem")), dir.path().join(format!("{role:?}{scope}-key.pem")));
    std::fs::write(&cp, c).unwrap();
    std::fs::write(&kp, k).unwrap();
    ["--server", &format!("https://{addr}"), "--server-id", "dp.de.example", "--ca", &dir.path().join("ca/ca.pem").display().to_string(), "--cert", &cp.display().to_string(), "--key", &kp.display().to_string()]
        .map(str::to_owned)
        .to_vec()
}

/// Imports `n` numbers `+49160nnnnnnnn` (one entry each) offline.
fn import_held_before(dir: &tempfile::TempDir, cfg: &std::path::Path, n: u64) {
    let base = dir.path().join("base.csv");
    let mut text = format!("{}\n", signpost_authority::import::HEADER);
    for i in 0..n {
        text.push_str(&format!("+49160{i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/b/{i},10,,,,\n"));
    }
    std::fs::write(&base, text).unwrap();
    let o = run(&["import", "--config", &cfg.display().to_string(), "--quiet", &base.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The sample config with rate limits a lookup loop stays under.
fn setup_unthrottled() -> (tempfile::TempDir, PathBuf) {
    let (dir, cfg) = setup();
    let text = std::fs::read_to_string(&cfg).unwrap().replace("queries_per_s = 500.0", "queries_per_s = 1000000.0").replace("burst = 1000.0", "burst = 1000000.0").replace("miss_budget = 10000", "miss_budget = 100000000");
    std::fs::write(&cfg, text).unwrap();
    (dir, cfg)
}

/// Lookups in a loop until `stop`: (answers Found, answers NotFound,
/// failures: a transport error or any other answer).
fn lookup_loop(client: std::sync::Arc<signpost_net::client::Client>, addr: std::net::SocketAddr, uris: Vec<String>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<(u64, u64, Vec<String>)> {
    tokio::spawn(async move {
        let ep = signpost_schemas::lost::Endpoint::parse(&format!("https://{addr}/lost")).unwrap();
        let id = signpost_schemas::Name::parse("dp.de.example").unwrap();
        let (mut found, mut not_found, mut failed) = (0u64, 0u64, Vec::new());
        // Bounded: at most 200 k lookups or 300 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        for i in 0..200_000usize {
            if stop.load(std::sync::atomic::Ordering::Relaxed) || std::time::Instant::now() > deadline {
                break;
            }
            let uri = &uris[i % uris.len()];
            let req = signpost_schemas::Request::FindService(signpost_schemas::FindService::for_csi(csi(uri), false));
            match client.post_lost(&ep, &id, bytes::Bytes::from(req.encode())).await {
                Ok(a) => match signpost_schemas::Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE) {
                    Ok(signpost_schemas::Response::Found(_)) => found += 1,
                    Ok(signpost_schemas::Response::Errors(e)) if e.list.issues().iter().all(|x| x.kind == signpost_schemas::ErrorKind::NotFound) => not_found += 1,
                    other => failed.push(format!("{uri}: {other:?}")),
                },
                Err(e) => failed.push(format!("{uri}: {e}")),
            }
        }
        (found, not_found, failed)
    })
}

/// `import --server`: the running authority imports a file of several
/// batches while lookups run, and not one lookup fails: the numbers held
/// before keep answering, the new ones go from notFound to found. The
/// feed carries one event per imported identifier. A bad file is refused
/// whole with its rows' lines (nothing written), and a certificate without
/// the admin role is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_import_while_lookups_run() {
    let (dir, cfg) = setup_unthrottled();
    let c = cfg.display().to_string();
    // Held before: 100 numbers in another block.
    import_held_before(&dir, &cfg, 100);
    // Offline import beside the running server: refused with the way out.
    let (mut child, log, addr, client) = start_server(&dir, &cfg);
    let client = std::sync::Arc::new(client);
    const N: u64 = 40_000;
    let (big, _) = big_file(N);
    let data = dir.path().join("big.csv");
    std::fs::write(&data, big).unwrap();
    let d = data.display().to_string();
    let o = run(&["import", "--config", &c, "--quiet", &d]);
    assert_eq!(o.status.code(), Some(69), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("held by another process") && String::from_utf8_lossy(&o.stderr).contains("import --server"), "{}", String::from_utf8_lossy(&o.stderr));

    // Not an admin: refused.
    let msp = admin_flags(&dir, addr, Role::Msp, "+49");
    let o = Command::new(BIN).arg("import").args(&msp).arg(&d).output().unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("admin-role client certificate"), "{}", String::from_utf8_lossy(&o.stderr));

    // An admin of another block: every row is outside its scope.
    let other = admin_flags(&dir, addr, Role::Admin, "+4916");
    let o = Command::new(BIN).arg("import").args(&other).arg("--quiet").arg(&d).output().unwrap();
    assert_eq!(o.status.code(), Some(65), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2: tel:+4915100000000 is outside the scope of admin.de.example's certificate"), "{}", String::from_utf8_lossy(&o.stderr));

    // A bad row deep in the file: refused whole, nothing written.
    let admin = admin_flags(&dir, addr, Role::Admin, "+49");
    let bad = dir.path().join("bad.csv");
    let mut text = std::fs::read_to_string(&data).unwrap();
    text.push_str("+49151ABC,assigned,tnsp-a.de.example,,,,,,,\n");
    std::fs::write(&bad, text).unwrap();
    let o = Command::new(BIN).arg("import").args(&admin).arg("--quiet").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains(&format!("{}: line {}: csi", bad.display(), N + N.div_ceil(3) + 2)) && err.contains("nothing was imported"), "{err}");

    // The real one, with lookups running all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut uris: Vec<String> = (0..100).map(|i| format!("tel:+49160{i:08}")).collect();
    uris.extend((0..N).step_by(997).map(|i| format!("tel:+49151{i:08}")));
    let lookups = lookup_loop(client.clone(), addr, uris.clone(), stop.clone());
    let o = tokio::task::spawn_blocking(move || Command::new(BIN).arg("import").args(&admin).arg(&d).output().unwrap()).await.unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("imported {N} identifiers from {}", data.display())) && out.contains("into the running server"), "{out}");
    assert!(err.contains("import 3 started") && err.contains(&format!("{N} identifiers checked")) && err.contains(&format!("written {N}/{N} (100%)")), "{err}");
    // A few more lookups after the import, then stop the loop.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (found, not_found, failed) = lookups.await.unwrap();
    assert!(failed.is_empty(), "{} failed lookups, e.g. {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert!(found > 100, "{found} found, {not_found} notFound");
    // Every imported number sampled answers now.
    for u in uris.iter().skip(100) {
        assert!(matches!(lookup(&client, addr, u).await, signpost_schemas::Response::Found(_)), "{u}");
    }
    assert!(log.lock().unwrap().iter().any(|l| l.contains("online import done")), "{:?}", log.lock().unwrap());
    assert!(!log.lock().unwrap().iter().any(|l| l.contains("+49151")), "a raw identifier in the log");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "{:?}", log.lock().unwrap());
    // Each identifier once, one feed event each.
    assert_eq!(stored(&c), (100 + N, 100 + N));
}

/// `kill -9` of the server in the middle of an online import: the batches
/// it committed are there with the checkpoint, the command reports the
/// lost server, and the same import through the restarted server resumes
/// and ends with every identifier once and exactly the file's contents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_import_resumes_after_the_server_is_killed() {
    use std::io::{BufRead, BufReader};
    let (dir, cfg) = setup();
    let c = cfg.display().to_string();
    const N: u64 = 40_000;
    let (d, want) = write_big_file(&dir, N);
    let (mut server, _log, addr, _) = start_server(&dir, &cfg);
    let admin = admin_flags(&dir, addr, Role::Admin, "+49");
    let mut cli = Command::new(BIN).arg("import").args(&admin).arg(&d).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(cli.stderr.take().unwrap()).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let first_batch = line.starts_with("import: written ");
        seen.push(line);
        if first_batch {
            server.kill().unwrap(); // SIGKILL
            break;
        }
    }
    server.wait().unwrap();
    seen.extend(lines);
    let status = cli.wait().unwrap();
    assert_eq!(status.code(), Some(69), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("lost the import's status")), "{seen:?}");
    let (part, head) = stored(&c);
    assert!(part > 0 && part < N && head == part, "{part} {head} {seen:?}");

    let (mut server, log, addr, _) = start_server(&dir, &cfg);
    let admin = admin_flags(&dir, addr, Role::Admin, "+49");
    let o = tokio::task::spawn_blocking(move || Command::new(BIN).arg("import").args(&admin).arg(&d).output().unwrap()).await.unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("resuming an interrupted import: {part} of {N} identifiers were written")), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("({part} by an earlier, interrupted run)")), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap().success());
    assert!(server.wait().unwrap().success(), "{:?}", log.lock().unwrap());
    assert_eq!(stored(&c), (N, N));
    let exported = dir.path().join("out.csv");
    let o = run(&["export", "--config", &c, &exported.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&exported).unwrap() == want, "the store's contents differ from the file");
}

/// An mTLS client of the test CA with a certificate of `role`.
fn client_as(dir: &tempfile::TempDir, role: Role, id: &str, scope: &[&str]) -> std::sync::Arc<signpost_net::client::Client> {
    let ca = signpost_trust::ca::Ca::load_dir(&dir.path().join("ca")).unwrap();
    let (c, k) = issue(&ca, role, id, scope);
    let anchor = signpost_trust::TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let ident = signpost_trust::tls::Identity::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
    std::sync::Arc::new(signpost_net::client::Client::new(std::sync::Arc::new(signpost_trust::tls::client_config(&anchor, Some(&ident)).unwrap()), std::time::Duration::from_secs(5)))
}

/// Two `serve` processes on one PostgreSQL database. Frontend A is
/// killed (`kill -9`) under provisioning load: every write A acknowledged
/// is answered by B and reaches a resolver subscribed to B's feed, and B
/// answers throughout (not one lookup fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frontends_kill_9_of_one_loses_no_acknowledged_write() {
    use signpost_schemas::sp::{Provision, ProvisionResult};
    let Some(db) = support::pg::fresh_db().await else { return };
    let (dir, cfg) = setup_unthrottled();
    std::fs::write(&cfg, postgres_sample(&std::fs::read_to_string(&cfg).unwrap(), &db.url())).unwrap();
    // Numbers held before, for B's lookups.
    import_held_before(&dir, &cfg, 50);
    let (mut a, _log_a, addr_a, _) = start_server(&dir, &cfg);
    let (mut b, log_b, addr_b, client_b) = start_server(&dir, &cfg);
    let client_b = std::sync::Arc::new(client_b);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lookups = lookup_loop(client_b.clone(), addr_b, (0..50).map(|i| format!("tel:+49160{i:08}")).collect(), stop.clone());
    // A resolver subscribed to B's feed (from the import on) collects the
    // numbers whose entries were put, wherever they were provisioned.
    let (_, mut feed) = client_b.get_stream(&signpost_schemas::lost::Endpoint::parse(&format!("https://{addr_b}/lost")).unwrap(), &signpost_schemas::Name::parse("dp.de.example").unwrap(), "/feed?since=50").await.unwrap();
    let (put_tx, mut put_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let feed_task = tokio::spawn(async move {
        use http_body_util::BodyExt as _;
        let mut buf = String::new();
        while let Some(Ok(f)) = feed.frame().await {
            let Ok(d) = f.into_data() else { continue };
            buf.push_str(std::str::from_utf8(&d).unwrap());
            while let Some(i) = buf.find('\n') {
                let line: String = buf.drain(..=i).collect();
                if let signpost_schemas::sp::FeedFrame::Change(c) = signpost_schemas::sp::FeedFrame::decode(line.as_bytes()).unwrap()
                    && c.op == signpost_schemas::sp::ChangeOp::EntryPut
                    && let signpost_schemas::sp::Subject::Csi(x) = c.subject
                    && put_tx.send(x.uri().to_owned()).is_err()
                {
                    return;
                }
            }
        }
    });

    // Provisioning through A: assign, then an entry; a number counts as
    // acknowledged when A answered 200 to its entry.
    let admin = client_as(&dir, Role::Admin, "ops.dp.de.example", &["+49"]);
    let ep = signpost_schemas::lost::Endpoint::parse(&format!("https://{addr_a}/v1/provision")).unwrap();
    let id = signpost_schemas::Name::parse("dp.de.example").unwrap();
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let send = |p: Provision| {
            let (admin, ep, id) = (admin.clone(), ep.clone(), id.clone());
            async move {
                let a = admin.raw(&ep, &id, signpost_net::hyper::Method::POST, signpost_authority::service::PROVISION_CONTENT_TYPE, bytes::Bytes::from(p.encode())).await.map_err(|e| e.to_string())?;
                if a.status != 200 {
                    return Err(format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body)));
                }
                ProvisionResult::decode(&a.body).map_err(|e| e.to_string())
            }
        };
        // Bounded: 5,000 numbers at most; it ends at the first failure (A killed).
        for i in 0..5_000u64 {
            let c = format!("tel:+49170{i:08}");
            if send(Provision::Assign { csi: csi(&c), tnsp: Some(signpost_schemas::Name::parse("tnsp-a.de.example").unwrap()) }).await.is_err() {
                return;
            }
            if send(Provision::PutEntry { csi: csi(&c), entry: entry("provider-a.example", false) }).await.is_err() {
                return;
            }
            if acked_tx.send(c).is_err() {
                return;
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 40 {
        acked.push(tokio::time::timeout(std::time::Duration::from_secs(60), acked_rx.recv()).await.expect("provisioning through A stalled").expect("the writer ended early"));
    }
    a.kill().unwrap(); // SIGKILL, mid-load
    a.wait().unwrap();
    writer.await.unwrap();
    while let Ok(c) = acked_rx.try_recv() {
        acked.push(c);
    }
    // Every acknowledged write, answered by B.
    for c in &acked {
        let r = lookup(&client_b, addr_b, c).await;
        assert!(matches!(&r, signpost_schemas::Response::Found(f) if f.mappings.len() == 1), "{c} acknowledged by A, not answered by B: {r:?}");
    }
    // And carried by B's feed to its subscriber (bounded wait: B follows
    // A's commits by notification, or its one-second poll).
    let mut on_feed = std::collections::HashSet::new();
    while !acked.iter().all(|c| on_feed.contains(c)) {
        let c = tokio::time::timeout(std::time::Duration::from_secs(60), put_rx.recv()).await.expect("B's feed stalled").expect("B's feed ended");
        on_feed.insert(c);
    }
    feed_task.abort();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (found, _, failed) = lookups.await.unwrap();
    assert!(failed.is_empty(), "{} of B's lookups failed, e.g. {:?}", failed.len(), &failed[..failed.len().min(3)]);
    assert!(found > 0);
    assert!(Command::new("kill").args(["-TERM", &b.id().to_string()]).status().unwrap().success());
    assert!(b.wait().unwrap().success(), "{:?}", log_b.lock().unwrap());
}

/// `import --server` into a frontend on PostgreSQL: the same run, the
/// database's own conflict check instead of the extra read; another
/// frontend on the database answers the imported numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_import_on_postgres_reaches_the_other_frontend() {
    let Some(db) = support::pg::fresh_db().await else { return };
    let (dir, cfg) = setup_unthrottled();
    std::fs::write(&cfg, postgres_sample(&std::fs::read_to_string(&cfg).unwrap(), &db.url())).unwrap();
    const N: u64 = 20_000;
    let (d, want) = write_big_file(&dir, N);
    let (mut a, log_a, addr_a, _) = start_server(&dir, &cfg);
    let (mut b, log_b, addr_b, client_b) = start_server(&dir, &cfg);
    let admin = admin_flags(&dir, addr_a, Role::Admin, "+49");
    let o = tokio::task::spawn_blocking(move || Command::new(BIN).arg("import").args(&admin).arg(&d).output().unwrap()).await.unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("imported {N} identifiers")), "{}", String::from_utf8_lossy(&o.stdout));
    for i in (0..N).step_by(1999) {
        let r = lookup(&client_b, addr_b, &format!("tel:+49151{i:08}")).await;
        assert!(matches!(r, signpost_schemas::Response::Found(_)), "{i}: {r:?}");
    }
    for (child, log) in [(&mut a, &log_a), (&mut b, &log_b)] {
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        assert!(child.wait().unwrap().success(), "{:?}", log.lock().unwrap());
    }
    let c = cfg.display().to_string();
    assert_eq!(stored(&c), (N, N));
    let exported = dir.path().join("out.csv");
    let o = run(&["export", "--config", &c, &exported.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read_to_string(&exported).unwrap() == want, "the database's contents differ from the file");
}
