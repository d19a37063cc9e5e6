//! The DNS bridge with real DNS peers: the `signpost-authority` binary
//! serves LoST over TLS and plain DNS on 127.0.0.1; a real Unbound, started
//! by the test with its own config (stub zones pointing at the bridge, no
//! root hints used, nothing outside loopback), answers `dig`'s NAPTR and
//! TXT (MIMI, MIMIX) queries for provisioned numbers and addresses; the
//! answers carry the same URIs as the LoST answer; a port shows through
//! Unbound once the cached answer's TTL has run out.
//!
//! Skipped (with the reason printed) when `unbound` or `dig` is missing;
//! required when `CI=true` (`.ci/run` installs both).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_kit::{Cert, Pki};
use signpost_schemas::lost::{Assurance, Endpoint, Uri};
use signpost_schemas::sp::{EntryRecord, Provision, ProvisionResult, Visibility};
use signpost_schemas::{Csi, FindService, Name, Request, Response};
use signpost_trust::Role;

const BIN: &str = env!("CARGO_BIN_EXE_signpost-authority");
/// The mapping lifetime the test authority gives (short, to watch a TTL
/// run out).
const TTL: u32 = 3;

/// The program on PATH, or where Debian puts it (root's PATH has sbin,
/// others' may not).
fn bin(name: &str) -> String {
    let sbin = format!("/usr/sbin/{name}");
    if Path::new(&sbin).exists() { sbin } else { name.to_owned() }
}

fn tools() -> bool {
    let have = |b: &str, arg: &str| Command::new(bin(b)).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if have("unbound", "-V") && have("dig", "-v") {
        return true;
    }
    let why = "unbound and dig are not installed (Debian: apt-get install unbound bind9-dnsutils)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true requires them");
    }
    eprintln!("skipped: {why}");
    false
}

/// A child process killed when the test ends, however it ends.
struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `signpost-authority serve` and what it logged.
struct Served {
    pub _proc: Proc,
    pub log: Arc<Mutex<Vec<String>>>,
    pub lost: SocketAddr,
    pub dns: SocketAddr,
}

fn logged(log: &Arc<Mutex<Vec<String>>>, what: &str) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(a) = log.lock().unwrap().iter().find_map(|l| l.split(what).nth(1).map(|a| a.trim().parse().unwrap())) {
            return a;
        }
        assert!(Instant::now() < deadline, "no {what:?} in {:?}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes the PKI files and an authority config with a `[dns]` section.
fn write_authority(dir: &Path, pki: &Pki, ttl: u32) -> PathBuf {
    let me = pki.cert(Role::Authority, "dp.de.example", &["+49", "mail.example"]).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.ca_pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), &me.chain).unwrap();
    std::fs::write(dir.join("key.pem"), &me.key).unwrap();
    let cfg = format!(
        r#"id = "dp.de.example"
[listen]
lost = "127.0.0.1:0"
admin = "127.0.0.1:0"
[tls]
ca = "ca.pem"
cert = "cert.pem"
key = "key.pem"
[store]
path = "authority.redb"
[answers]
mapping_ttl_s = {ttl}
negative_ttl_s = 1
[dns]
listen = "127.0.0.1:0"
enum_apex = "e164.arpa"
"#
    );
    let p = dir.join("authority.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn serve(cfg: &Path) -> Served {
    let mut child = Command::new(BIN).args(["serve", "--config", &cfg.display().to_string()]).env("RUST_LOG", "info").stderr(Stdio::piped()).spawn().unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l2, err) = (log.clone(), child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(line);
        }
    });
    let proc = Proc(child);
    let lost = logged(&log, "listening for lost on ");
    let dns = logged(&log, "listening for dns on ");
    Served { _proc: proc, log, lost, dns }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Unbound on 127.0.0.1 with stub zones for the bridge's zones; no
/// DNSSEC validation (the bridge signs nothing), no prefetch, its own
/// directory. Returns the process and its port once it answers.
fn unbound(dir: &Path, bridge: SocketAddr, zones: &[&str]) -> (Proc, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut conf = format!(
            "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  do-not-query-localhost: no\n  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  num-threads: 1\n  module-config: \"iterator\"\n  access-control: 127.0.0.0/8 allow\n  prefetch: no\n  serve-expired: no\n  cache-min-ttl: 0\n  qname-minimisation: yes\nremote-control:\n  control-enable: no\n",
            d = dir.display()
        );
        for z in zones {
            conf.push_str(&format!("stub-zone:\n  name: \"{z}\"\n  stub-addr: {}@{}\n", bridge.ip(), bridge.port()));
        }
        let path = dir.join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let check = Command::new(bin("unbound-checkconf")).arg(&path).output();
        if let Ok(o) = &check {
            assert!(o.status.success(), "unbound-checkconf: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        }
        let child = Command::new(bin("unbound")).args(["-d", "-c", &path.display().to_string()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut p = Proc(child);
        // Ready once it answers a query for the apex.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = p.0.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            if dig(port, zones[0], "SOA", &[]).status == "NOERROR" {
                return (p, port);
            }
            assert!(Instant::now() < deadline, "unbound did not answer on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("unbound did not start");
}

/// What dig printed, taken apart.
#[derive(Debug)]
struct Dug {
    pub status: String,
    /// (ttl, type, rdata) of the answer section.
    pub answers: Vec<(u32, String, String)>,
    pub aa: bool,
    pub raw: String,
}

fn dig(port: u16, name: &str, qtype: &str, extra: &[&str]) -> Dug {
    let o = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), name, qtype, "+noall", "+answer", "+comments", "+tries=1", "+time=3"])
        .args(extra)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&o.stdout).into_owned();
    let status = raw.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("").to_owned();
    let aa = raw.lines().any(|l| l.contains(";; flags:") && l.split(';').any(|p| p.contains("flags:") && p.split_whitespace().any(|w| w == "aa")));
    let mut answers = Vec::new();
    for l in raw.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 5 {
            answers.push((f[1].parse().unwrap_or(0), f[3].to_owned(), f[4..].join(" ")));
        }
    }
    Dug { status, answers, aa, raw }
}

struct Provisioner {
    pub client: signpost_net::client::Client,
    pub msp: signpost_net::client::Client,
    pub csip_mail: signpost_net::client::Client,
    pub endpoint: Endpoint,
}

fn provisioner(pki: &Pki, lost: SocketAddr) -> Provisioner {
    let csip: Cert = pki.cert(Role::Csip, "tnsp-a.de.example", &["+4915"]).unwrap();
    let msp = pki.cert(Role::Admin, "admin.de.example", &["+49", "mail.example"]).unwrap();
    let mail = pki.cert(Role::Csip, "postmaster.mail.example", &["mail.example"]).unwrap();
    Provisioner {
        client: pki.client(Some(&csip)).unwrap(),
        msp: pki.client(Some(&msp)).unwrap(),
        csip_mail: pki.client(Some(&mail)).unwrap(),
        endpoint: Endpoint::parse(&format!("https://{lost}/v1/provision")).unwrap(),
    }
}

impl Provisioner {
    pub async fn send(&self, who: &signpost_net::client::Client, p: Provision) -> ProvisionResult {
        let a = who
            .raw(&self.endpoint, &Name::parse("dp.de.example").unwrap(), signpost_net::hyper::Method::POST, signpost_authority::service::PROVISION_CONTENT_TYPE, Bytes::from(p.encode()))
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        ProvisionResult::decode(&a.body).unwrap()
    }
}

fn entry(provider: &str, uri: &str, priority: u32, bound: bool, visibility: Visibility) -> EntryRecord {
    EntryRecord {
        provider: Name::parse(provider).unwrap(),
        display_name: None,
        uris: vec![Uri::parse(uri).unwrap()],
        priority,
        tags: vec![],
        assurance: Assurance::CsipAttested,
        bound_to_tnsp: bound,
        visibility,
    }
}

fn csi(s: &str) -> Csi {
    Csi::parse(s, None).unwrap()
}

/// The URIs a LoST client without sender context gets for `c`.
async fn lost_uris(pki: &Pki, lost: SocketAddr, c: &str) -> Vec<String> {
    let client = pki.client(Some(&pki.cert(Role::Resolver, "resolver.example", &[]).unwrap())).unwrap();
    let req = Request::FindService(FindService::for_csi(csi(c), false));
    let a = client.post_lost(&Endpoint::parse(&format!("https://{lost}/lost")).unwrap(), &Name::parse("dp.de.example").unwrap(), Bytes::from(req.encode())).await.unwrap();
    match Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE).unwrap() {
        Response::Found(f) => {
            let mut u: Vec<String> = f.mappings.iter().flat_map(|m| m.uris.iter().map(|u| u.as_str().to_owned())).collect();
            u.sort();
            u
        }
        _ => vec![],
    }
}

/// The URIs in NAPTR rdata (`100 10 "u" "E2U+mimi" "!^.*$!uri!" .`).
fn naptr_uris(d: &Dug) -> Vec<String> {
    let mut out: Vec<String> = d
        .answers
        .iter()
        .filter(|(_, t, _)| t == "NAPTR")
        .filter_map(|(_, _, r)| {
            let re = r.split('"').nth(5)?;
            let delim = re.chars().next()?;
            re.split(delim).nth(2).map(str::to_owned)
        })
        .collect();
    out.sort();
    out
}

const NUMBER: &str = "+4915112345678";
const ENUM_NAME: &str = "8.7.6.5.4.3.2.1.1.5.1.9.4.e164.arpa";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_answers_from_the_bridge_and_sees_a_port_after_the_ttl() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    let cfg = write_authority(dir.path(), &pki, TTL);
    let s = serve(&cfg);
    assert!(s.log.lock().unwrap().iter().any(|l| l.contains("no per-mapping signatures") && l.contains("WARN")), "{:?}", s.log.lock().unwrap());
    let p = provisioner(&pki, s.lost);

    // A number with an operator-aligned entry, an OTT entry and an entry
    // for one sender only; a mailbox; a released number.
    p.send(&p.client, Provision::Assign { csi: csi(NUMBER), tnsp: None }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi(NUMBER), entry: entry("rcs.tnsp-a.example", "sip:+4915112345678@ims.tnsp-a.example;user=phone", 5, true, Visibility::All) }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi(NUMBER), entry: entry("provider-b.example", "mimi://provider-b.example/u/alice", 20, false, Visibility::All) }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi(NUMBER), entry: entry("secret.example", "mimi://secret.example/u/alice", 1, false, Visibility::Only(vec![Name::parse("friend.example").unwrap()])) }).await;
    p.send(&p.csip_mail, Provision::Assign { csi: csi("alice@mail.example"), tnsp: None }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi("alice@mail.example"), entry: entry("provider-b.example", "mimi://provider-b.example/u/alice-mail", 10, false, Visibility::All) }).await;
    p.send(&p.csip_mail, Provision::Assign { csi: csi("first.last@mail.example"), tnsp: None }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi("first.last@mail.example"), entry: entry("provider-b.example", "mimi://provider-b.example/u/fl", 10, false, Visibility::All) }).await;
    p.send(&p.client, Provision::Assign { csi: csi("+4915100000001"), tnsp: None }).await;
    p.send(&p.client, Provision::Release { csi: csi("+4915100000001") }).await;

    // Straight to the bridge, over UDP and TCP: authoritative answers.
    let direct = dig(s.dns.port(), ENUM_NAME, "NAPTR", &[]);
    assert_eq!(direct.status, "NOERROR", "{}", direct.raw);
    assert!(direct.aa, "{}", direct.raw);
    let lost = lost_uris(&pki, s.lost, NUMBER).await;
    assert_eq!(lost, vec!["mimi://provider-b.example/u/alice".to_owned(), "sip:+4915112345678@ims.tnsp-a.example;user=phone".to_owned()]);
    assert_eq!(naptr_uris(&direct), lost, "DNS and LoST carry the same URIs: {}", direct.raw);
    assert!(!direct.raw.contains("secret.example"), "an entry for one sender only is not in DNS: {}", direct.raw);
    assert!(direct.raw.contains("\"E2U+sip\"") && direct.raw.contains("\"E2U+mimi\""), "{}", direct.raw);
    assert!(direct.raw.contains("100 5 \"u\""), "priority 5 as order 100, preference 5: {}", direct.raw);
    assert!(direct.answers.iter().all(|(ttl, _, _)| *ttl >= 1 && *ttl <= TTL), "TTLs from the mapping lifetime: {}", direct.raw);
    let tcp = dig(s.dns.port(), ENUM_NAME, "NAPTR", &["+tcp"]);
    assert_eq!(naptr_uris(&tcp), lost, "{}", tcp.raw);
    let refused = dig(s.dns.port(), "www.example.com", "A", &[]);
    assert_eq!(refused.status, "REFUSED", "outside the zones: {}", refused.raw);
    let apex = dig(s.dns.port(), "e164.arpa", "SOA", &[]);
    assert!(apex.status == "NOERROR" && apex.answers.iter().any(|(_, t, _)| t == "SOA"), "{}", apex.raw);

    // Through Unbound, stub zones pointing at the bridge.
    p.send(&p.csip_mail, Provision::Assign { csi: csi("mui:bob.users.mail.example"), tnsp: None }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi("mui:bob.users.mail.example"), entry: entry("provider-b.example", "mimi://provider-b.example/u/bob-mui", 10, false, Visibility::All) }).await;

    let (_unbound, port) = unbound(dir.path(), s.dns, &["e164.arpa", "mimi.dp.de.example", "_mimix.mail.example", "_mimi.bob.users.mail.example", "_mimi.nobody.users.mail.example"]);
    // A MUI's MIMI record, at `_mimi.<MUI>`, from the same mapping LoST
    // answers with; an unknown MUI does not exist.
    let mui = dig(port, "_mimi.bob.users.mail.example", "TXT", &[]);
    assert!(mui.raw.contains("\"v=MIMI1; p=10; a=mimi://provider-b.example/u/bob-mui; e=provider-b.example; s=provider-b.example\""), "{}", mui.raw);
    assert_eq!(dig(port, "_mimi.nobody.users.mail.example", "TXT", &[]).status, "NXDOMAIN");
    let naptr = dig(port, ENUM_NAME, "NAPTR", &[]);
    assert_eq!(naptr.status, "NOERROR", "{}", naptr.raw);
    assert_eq!(naptr_uris(&naptr), lost, "{}", naptr.raw);
    let mimi = dig(port, &format!("_mimi.{ENUM_NAME}"), "TXT", &[]);
    assert!(
        mimi.raw.contains("\"v=MIMI1; p=20; a=mimi://provider-b.example/u/alice; e=provider-b.example; s=provider-b.example\""),
        "{}",
        mimi.raw
    );
    assert!(mimi.raw.contains("a=sip:+4915112345678@ims.tnsp-a.example%3Buser=phone; e=ims.tnsp-a.example; s=rcs.tnsp-a.example"), "{}", mimi.raw);
    let mimix = dig(port, "_mimix.mail.example", "TXT", &[]);
    assert!(mimix.raw.contains("\"mail.example.mimi.dp.de.example\""), "{}", mimix.raw);
    let mail = dig(port, "_mimi.alice.mail.example.mimi.dp.de.example", "TXT", &[]);
    assert!(mail.raw.contains("\"v=MIMI1; p=10; a=mimi://provider-b.example/u/alice-mail; e=provider-b.example; s=provider-b.example\""), "{}", mail.raw);
    // A dot in the local part is a dot inside the one label.
    let dotted = dig(port, "_mimi.first\\.last.mail.example.mimi.dp.de.example", "TXT", &[]);
    assert!(dotted.raw.contains("a=mimi://provider-b.example/u/fl;"), "{}", dotted.raw);
    for (name, t) in [("0.0.0.0.0.0.0.1.1.5.1.9.4.e164.arpa", "NAPTR"), ("9.9.9.9.9.9.9.1.1.5.1.9.4.e164.arpa", "NAPTR"), ("_mimi.bob.mail.example.mimi.dp.de.example", "TXT")] {
        let d = dig(port, name, t, &[]);
        assert_eq!(d.status, "NXDOMAIN", "released or unknown: {name}: {}", d.raw);
    }
    // An empty non-terminal above held numbers exists (NOERROR, no data),
    // so a minimising resolver walks down to the number.
    assert_eq!(dig(port, "5.1.9.4.e164.arpa", "NAPTR", &[]).status, "NOERROR");

    // The number ports: the operator-aligned entry goes at once at the
    // authority (LoST and the bridge), but Unbound keeps its cached NAPTR
    // set until the TTL runs out — the staleness push invalidation avoids.
    p.send(&p.client, Provision::Port { csi: csi(NUMBER), to: Name::parse("tnsp-b.de.example").unwrap() }).await;
    let after = vec!["mimi://provider-b.example/u/alice".to_owned()];
    assert_eq!(lost_uris(&pki, s.lost, NUMBER).await, after);
    assert_eq!(naptr_uris(&dig(s.dns.port(), ENUM_NAME, "NAPTR", &[])), after);
    let cached = dig(port, ENUM_NAME, "NAPTR", &[]);
    if naptr_uris(&cached) != after {
        eprintln!("stale through Unbound right after the port (cached, TTL {:?} s left)", cached.answers.first().map(|a| a.0));
        assert!(cached.answers.iter().all(|(ttl, _, _)| *ttl <= TTL), "{}", cached.raw);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = dig(port, ENUM_NAME, "NAPTR", &[]);
        if naptr_uris(&d) == after {
            break;
        }
        assert!(Instant::now() < deadline, "the port never showed through Unbound: {}", d.raw);
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_samples_dns_section_loads_and_public_addresses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("authority.sample.toml")).unwrap();
    let on = sample
        .replace("# [dns]", "[dns]")
        .replace("# listen = \"127.0.0.1:7453\"", "listen = \"127.0.0.1:7453\"")
        .replace("# enum_apex = ", "enum_apex = ")
        .replace("# mimi_apex = ", "mimi_apex = ")
        .replace("# nameserver = ", "nameserver = ")
        .replace("# tcp_timeout_ms = ", "tcp_timeout_ms = ");
    let p = dir.path().join("dns.toml");
    std::fs::write(&p, &on).unwrap();
    let (c, _) = signpost_authority::config::Config::load(&p).unwrap();
    let d = c.dns.expect("the sample's [dns] section");
    assert_eq!((d.listen.as_str(), d.enum_apex.as_str(), d.mimi_apex.as_deref(), d.tcp_timeout_ms), ("127.0.0.1:7453", "e164.arpa", Some("mimi.dp.de.example"), 5000));
    // Off by default: the sample as shipped has no listener.
    let (s, _) = signpost_authority::config::Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("authority.sample.toml")).unwrap();
    assert!(s.dns.is_none());
    for (from, to, says) in [
        ("listen = \"127.0.0.1:7453\"", "listen = \"0.0.0.0:53\"", "loopback and private"),
        ("listen = \"127.0.0.1:7453\"", "listen = \"192.0.2.1:53\"", "loopback and private"),
        ("enum_apex = \"e164.arpa\"", "enum_apex = \"not a name\"", "dns.enum_apex"),
        ("tcp_timeout_ms = 5000", "tcp_timeout_ms = 5000\nrecursion = true", "recursion"),
    ] {
        std::fs::write(&p, on.replace(from, to)).unwrap();
        let o = Command::new(BIN).args(["check-config", "--config", &p.display().to_string()]).output().unwrap();
        assert_eq!(o.status.code(), Some(64), "{to}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(says), "{to}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A private-ENUM zone as an operator keeps it for NSD: SOA and NS, names
/// relative to the origin, blank owners continuing the previous one, a
/// voice NAPTR beside the messaging ones.
const ZONE: &str = r#"; private ENUM for +49 151 (NSD)
$ORIGIN e164.arpa.
$TTL 600
@       IN SOA  ns1.enum.tnsp-a.example. hostmaster.tnsp-a.example. (
                2026120101 ; serial
                3600 600 86400 60 )
        IN NS   ns1.enum.tnsp-a.example.
8.7.6.5.4.3.2.1.1.5.1.9.4 IN NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:+4915112345678@ims.tnsp-a.example!" .
        IN NAPTR 100 20 "u" "E2U+mimi" "!^.*$!mimi://provider-a.example/u/alice!" .
        IN NAPTR 100 30 "u" "E2U+voice:tel" "!^.*$!tel:+4915112345678!" .
9.7.6.5.4.3.2.1.1.5.1.9.4 IN NAPTR 100 15 "u" "E2U+xmpp" "!^.*$!xmpp:bob@chat.provider-b.example!" .
"#;

fn nsd(dir: &Path, zone: &Path) -> Option<(Proc, u16)> {
    for _ in 0..5 {
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1\n  port: {port}\n  do-ip6: no\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  verbosity: 1\nremote-control:\n  control-enable: no\nzone:\n  name: \"e164.arpa\"\n  zonefile: \"{}\"\n",
            zone.display()
        );
        let path = dir.join("nsd.conf");
        std::fs::write(&path, conf).unwrap();
        let o = Command::new(bin("nsd-checkconf")).arg(&path).output().unwrap();
        assert!(o.status.success(), "nsd-checkconf: {}", String::from_utf8_lossy(&o.stderr));
        let child = Command::new(bin("nsd")).args(["-d", "-c", &path.display().to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut p = Proc(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = p.0.try_wait() {
                break;
            }
            if dig(port, "e164.arpa", "SOA", &[]).status == "NOERROR" {
                return Some((p, port));
            }
            assert!(Instant::now() < deadline, "nsd did not answer on {port}: {}", std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("nsd did not start: {}", std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default());
}

/// The NAPTRs of messaging enumservices, rdata as dig prints it.
fn messaging_naptrs(d: &Dug) -> Vec<String> {
    let mut v: Vec<String> = d.answers.iter().filter(|(_, t, r)| t == "NAPTR" && !r.contains("E2U+voice")).map(|(_, _, r)| r.clone()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nsd_zone_imports_and_answers_the_same_through_lost_nsd_and_the_bridge() {
    let have_nsd = Command::new(bin("nsd-checkzone")).arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !tools() {
        return;
    }
    if !have_nsd {
        let why = "nsd is not installed (Debian: apt-get install nsd)";
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{why}; CI=true requires it");
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    let cfg = write_authority(dir.path(), &pki, 60);
    let zone = dir.path().join("e164.zone");
    std::fs::write(&zone, ZONE).unwrap();
    let o = Command::new(bin("nsd-checkzone")).args(["e164.arpa", &zone.display().to_string()]).output().unwrap();
    assert!(o.status.success(), "nsd-checkzone: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));

    // A zone NSD accepts but with a rule that keeps part of the number:
    // refused by line, nothing written.
    let bad = dir.path().join("bad.zone");
    std::fs::write(&bad, ZONE.replace("!^.*$!xmpp:bob@chat.provider-b.example!", "!^\\\\+(.*)$!xmpp:\\\\1@chat.provider-b.example!")).unwrap();
    let o = Command::new(bin("nsd-checkzone")).args(["e164.arpa", &bad.display().to_string()]).output().unwrap();
    assert!(o.status.success(), "nsd-checkzone (bad): {}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(BIN).args(["import", "--config", &cfg.display().to_string(), "--quiet", "--tnsp", "tnsp-a.de.example", &bad.display().to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains("line 11:") && err.contains("nothing was imported"), "{err}");
    let o = Command::new(BIN).args(["show", "--config", &cfg.display().to_string(), NUMBER]).output().unwrap();
    assert_eq!(o.status.code(), Some(signpost_net::exit::NOT_FOUND as i32), "all or nothing: {}", String::from_utf8_lossy(&o.stdout));

    // The good zone imports (detected by its extension).
    let o = Command::new(BIN).args(["import", "--config", &cfg.display().to_string(), "--tnsp", "tnsp-a.de.example", &zone.display().to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("3 messaging NAPTRs mapped, 3 skipped"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("imported 2 identifiers"), "{}", String::from_utf8_lossy(&o.stdout));

    let (_nsd, nsd_port) = nsd(dir.path(), &zone).unwrap();
    let s = serve(&cfg);
    for (number, name) in [(NUMBER, ENUM_NAME), ("+4915112345679", "9.7.6.5.4.3.2.1.1.5.1.9.4.e164.arpa")] {
        let from_nsd = dig(nsd_port, name, "NAPTR", &[]);
        let from_bridge = dig(s.dns.port(), name, "NAPTR", &[]);
        assert_eq!(messaging_naptrs(&from_bridge), messaging_naptrs(&from_nsd), "NSD: {}\nbridge: {}", from_nsd.raw, from_bridge.raw);
        assert!(!messaging_naptrs(&from_nsd).is_empty());
        let nsd_uris: Vec<String> = {
            let only = Dug { status: String::new(), answers: from_nsd.answers.iter().filter(|(_, _, r)| !r.contains("E2U+voice")).cloned().collect(), aa: true, raw: String::new() };
            naptr_uris(&only)
        };
        assert_eq!(lost_uris(&pki, s.lost, number).await, nsd_uris, "LoST carries the zone's URIs");
    }
}

/// The enumeration budget of `[rate]` holds for DNS clients too (keyed by
/// address): after `miss_budget` distinct unknown names a client is
/// REFUSED for new ones, while a number it found before still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_scan_runs_out_of_the_enumeration_budget() {
    if !tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new().unwrap();
    let cfg = write_authority(dir.path(), &pki, 60);
    std::fs::write(&cfg, std::fs::read_to_string(&cfg).unwrap().replace("[dns]", "[rate]\nmiss_budget = 3\n[dns]")).unwrap();
    let s = serve(&cfg);
    let p = provisioner(&pki, s.lost);
    p.send(&p.client, Provision::Assign { csi: csi(NUMBER), tnsp: None }).await;
    p.send(&p.msp, Provision::PutEntry { csi: csi(NUMBER), entry: entry("provider-b.example", "mimi://provider-b.example/u/alice", 20, false, Visibility::All) }).await;
    assert_eq!(dig(s.dns.port(), ENUM_NAME, "NAPTR", &[]).status, "NOERROR");
    let unknown = |i: u32| format!("{}.9.9.9.9.9.9.1.1.5.1.9.4.e164.arpa", i);
    for i in 0..3 {
        assert_eq!(dig(s.dns.port(), &unknown(i), "NAPTR", &[]).status, "NXDOMAIN", "{i}");
    }
    assert_eq!(dig(s.dns.port(), &unknown(3), "NAPTR", &[]).status, "REFUSED", "the fourth unknown name");
    assert_eq!(dig(s.dns.port(), &unknown(0), "NAPTR", &[]).status, "NXDOMAIN", "a name asked before costs nothing");
    assert_eq!(dig(s.dns.port(), ENUM_NAME, "NAPTR", &[]).status, "NOERROR", "a number found before still answers");
}
