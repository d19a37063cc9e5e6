//! A deployed LoST client against a running authority: a SIP MESSAGE with a
//! PIDF-LO goes through Kamailio's `lost` module (`lost_query`) to the
//! authority over TLS on 127.0.0.1, and the test reads back what Kamailio
//! parsed (result code, URI, display name, error) from headers its route
//! adds to the reply.
//!
//! Kamailio builds a geodetic findService from the PIDF-LO: that request
//! reaches the authority byte for byte and must come back as
//! `locationProfileUnrecognized` that Kamailio can read. Kamailio cannot
//! send an `sp-csi` location, so for a found and a not-found answer a
//! small loopback relay swaps the request body for an `sp-csi` findService
//! and returns the authority's answer unchanged.
//!
//! Skipped (with the reason printed) when `kamailio` is not installed;
//! required when `CI=true` (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;
#[path = "../../schemas/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use signpost_authority::limits::{LimitSettings, Limiter};
use signpost_authority::service::{AuthorityService, FeedSettings};
use signpost_net::client::Client;
use signpost_net::{Limits, Metrics, Server, bind};
use signpost_schemas::lost::{DisplayName, Endpoint, Uri};
use signpost_schemas::sp::Provision;
use signpost_schemas::{FindService, Name, Request};
use signpost_trust::Role;
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: &str = "tel:+4915112345678";
const UNKNOWN: &str = "tel:+4915112345699";
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

fn kamailio() -> Option<String> {
    let runs = |bin: &str| Command::new(bin).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if Path::new(MODULES).join("lost.so").exists() {
        // On PATH, or where Debian puts it (root's PATH has it, others' may not).
        if let Some(bin) = ["kamailio", "/usr/sbin/kamailio"].into_iter().find(|b| runs(b)) {
            return Some(bin.into());
        }
    }
    let why = "kamailio with the lost module is not installed (Debian: apt-get install kamailio kamailio-utils-modules)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}; CI=true requires it");
    }
    eprintln!("skipped: {why}");
    None
}

/// The authority over TLS, with one number whose entry has a SIP URI.
async fn authority(w: &World) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let core = Arc::new(w.authority().await);
    let id = Identity::from_pem(w.authority_cert.as_bytes(), w.authority_key.as_bytes()).unwrap();
    let tls = Arc::new(server_config(&id, &w.anchor, ClientAuth::Optional).unwrap());
    let key_id = signpost_trust::sign::Signer::from_pem(w.authority_key.as_bytes()).unwrap().key_id().as_str().to_owned();
    let svc = Arc::new(AuthorityService::new(
        core.clone(),
        Limiter::new(LimitSettings { rate: 1e4, burst: 1e4, miss_budget: 1000, miss_window: 3600 }),
        FeedSettings { heartbeat: Duration::from_secs(5), page: 512 },
        Bytes::from(w.authority_cert.clone()),
        key_id,
        Arc::new(Metrics::new()),
    ));
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    core.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    let msp = w.peer(Role::Msp, "provider-a.example", &[]);
    let mut e = entry("provider-a.example", false);
    e.uris = vec![Uri::parse("sip:alice@provider-a.example").unwrap()];
    e.display_name = Some(DisplayName { text: "Alice at provider A".into(), lang: "en".into() });
    core.provision(&msp, Provision::PutEntry { csi: csi(N), entry: e }).await.unwrap();
    let l = bind("127.0.0.1:0".parse().unwrap(), "lost").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(svc, Some(tls), Some(w.anchor.clone()), Limits::default(), Arc::new(Metrics::new()), Arc::new(w.clock.clone()));
    tokio::spawn(server.serve(l, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// What passed through the relay: (path, request body, answer body).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A loopback HTTP/1.1 relay for Kamailio's http_client: `/geo` forwards
/// Kamailio's own request, `/found` and `/notfound` send an `sp-csi`
/// request instead; the authority's answer goes back unchanged.
async fn relay(authority: SocketAddr, client: Arc<Client>) -> (SocketAddr, Seen) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        // Bounded: the test makes three queries.
        for _ in 0..16 {
            let Ok((mut s, _)) = l.accept().await else { return };
            let (client, log) = (client.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(n) if n > 0 && buf.len() < 65536 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0);
                if head.to_ascii_lowercase().contains("expect: 100-continue") {
                    let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let from_kamailio = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                let sent = match path.as_str() {
                    "/found" => Request::FindService(FindService::for_csi(csi(N), false)).encode(),
                    "/notfound" => Request::FindService(FindService::for_csi(csi(UNKNOWN), false)).encode(),
                    _ => from_kamailio.clone(),
                };
                let ep = Endpoint::parse(&format!("https://{authority}/lost")).unwrap();
                let a = client.post_lost(&ep, &Name::parse("dp.de.example").unwrap(), Bytes::from(sent)).await.unwrap();
                let answer = String::from_utf8_lossy(&a.body).to_string();
                // Logged before Kamailio can see the answer (and reply to
                // the test), so the test finds it.
                log.lock().unwrap().push((path, from_kamailio, answer));
                let reply = format!("HTTP/1.1 {} X\r\nContent-Type: application/lost+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", a.status, a.body.len());
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.write_all(&a.body).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn config(dir: &Path, sip_port: u16, relay: SocketAddr) -> std::path::PathBuf {
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{sip_port}
mpath="{MODULES}/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "http_client.so"
loadmodule "lost.so"
modparam("http_client", "query_result", 0)
modparam("http_client", "connection_timeout", 5)
modparam("http_client", "httpcon", "geo=>http://{relay}/geo")
modparam("http_client", "httpcon", "found=>http://{relay}/found")
modparam("http_client", "httpcon", "notfound=>http://{relay}/notfound")
request_route {{
    $var(uri) = "";
    $var(name) = "";
    $var(err) = "";
    $var(res) = lost_query("$hdr(X-Lost-Con)", "$rb", "", "$var(uri)", "$var(name)", "$var(err)");
    append_to_reply("X-Lost-Res: $var(res)\r\nX-Lost-Uri: $var(uri)\r\nX-Lost-Name: $var(name)\r\nX-Lost-Err: $var(err)\r\n");
    sl_send_reply("200", "OK");
    exit;
}}
"#
    );
    let p = dir.join("kamailio.cfg");
    std::fs::write(&p, cfg).unwrap();
    p
}

const PIDF: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" xmlns:gml="http://www.opengis.net/gml" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="pres:alice@example.com">
  <dm:device id="d1">
    <gp:geopriv>
      <gp:location-info>
        <gml:Point srsName="urn:ogc:def:crs:EPSG::4326">
          <gml:pos>48.137 11.575</gml:pos>
        </gml:Point>
      </gp:location-info>
      <gp:usage-rules/>
    </gp:geopriv>
    <dm:deviceID>mac:112233445566</dm:deviceID>
    <dm:timestamp>2026-12-01T20:00:00Z</dm:timestamp>
  </dm:device>
</presence>"#;

struct Kamailio(Child);

impl Drop for Kamailio {
    /// Kamailio forks its workers: the whole process group it was started
    /// in (its own) is stopped, SIGTERM first, then SIGKILL.
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).stderr(Stdio::null()).status();
        for _ in 0..50 {
            if self.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Any worker still there (none, normally: the group is gone).
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.0.wait();
    }
}

/// Sends a SIP MESSAGE with the PIDF-LO for `urn` to Kamailio, naming the
/// http_client connection to use; returns the X-Lost-* reply headers.
/// Retried a bounded number of times while Kamailio starts.
async fn ask(sip: SocketAddr, con: &str, urn: &str, n: u32) -> Vec<(String, String)> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sock.local_addr().unwrap();
    let msg = format!(
        "MESSAGE {urn} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-signpost-{con}-{n}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=t{n}\r\nTo: <{urn}>\r\nCall-ID: {con}-{n}@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nX-Lost-Con: {con}\r\nContent-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{PIDF}",
        PIDF.len()
    );
    for _ in 0..50 {
        sock.send_to(msg.as_bytes(), sip).await.unwrap();
        let mut buf = vec![0u8; 65536];
        if let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
            let text = String::from_utf8_lossy(&buf[..len]).to_string();
            return text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.starts_with("X-Lost-"))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect();
        }
    }
    panic!("no SIP reply from kamailio at {sip}");
}

fn header<'a>(h: &'a [(String, String)], k: &str) -> &'a str {
    h.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_lost_module_reads_signpost_answers() {
    let Some(bin) = kamailio() else { return };
    let w = World::new();
    let (auth, _stop) = authority(&w).await;
    let client = Arc::new(Client::new(Arc::new(client_config(&w.anchor, None).unwrap()), Duration::from_secs(5)));
    let (relay_addr, seen) = relay(auth, client).await;
    let sip_port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), sip_port, relay_addr);
    let check = Command::new(&bin).args(["-c", "-f", &cfg.display().to_string()]).output().unwrap();
    assert!(check.status.success(), "kamailio -c: {}", String::from_utf8_lossy(&check.stderr));
    let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
    let _k = Kamailio(
        Command::new(&bin)
            .args(["-DD", "-E", "-f", &cfg.display().to_string(), "-Y", &dir.path().display().to_string()])
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let kam_log = || std::fs::read_to_string(dir.path().join("kamailio.log")).unwrap_or_default();

    // Geodetic (Kamailio's own request) for the service Signpost serves:
    // Kamailio reads locationProfileUnrecognized.
    let h = ask(sip, "geo", "urn:service:mimi", 1).await;
    assert_eq!(header(&h, "X-Lost-Res"), "500", "{h:?}\n{}", kam_log());
    assert_eq!(header(&h, "X-Lost-Err"), "locationProfileUnrecognized", "{h:?}\n{}", kam_log());
    // RFC 5222's example (geodetic, urn:service:sos.police): both errors
    // are in the answer, and Kamailio reads one of them as the error
    // (its parser keeps a single issue; it reports the last one).
    let h = ask(sip, "geo", "urn:service:sos.police", 4).await;
    assert_eq!(header(&h, "X-Lost-Res"), "500", "{h:?}\n{}", kam_log());
    assert!(["locationProfileUnrecognized", "serviceNotImplemented"].contains(&header(&h, "X-Lost-Err")), "{h:?}\n{}", kam_log());
    // Found: Kamailio picks the SIP URI and the display name.
    let h = ask(sip, "found", "urn:service:sos", 2).await;
    assert_eq!(header(&h, "X-Lost-Res"), "200", "{h:?}\n{}", kam_log());
    assert_eq!(header(&h, "X-Lost-Uri"), "sip:alice@provider-a.example", "{h:?}");
    assert_eq!(header(&h, "X-Lost-Name"), "Alice at provider A", "{h:?}");
    // Not found: Kamailio reads notFound (the qualifiers sit inside it).
    let h = ask(sip, "notfound", "urn:service:sos", 3).await;
    assert_eq!(header(&h, "X-Lost-Res"), "500", "{h:?}\n{}", kam_log());
    assert_eq!(header(&h, "X-Lost-Err"), "notFound", "{h:?}\n{}", kam_log());

    // What crossed the relay: Kamailio's geodetic request and every answer
    // are valid LoST.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let geo = seen.iter().find(|(p, q, _)| p == "/geo" && q.contains("urn:service:sos.police")).unwrap();
    assert!(geo.1.contains("geodetic-2d"), "{}", geo.1);
    assert!(geo.2.contains("<locationProfileUnrecognized") && geo.2.contains("<serviceNotImplemented"), "{}", geo.2);
    let docs: Vec<(String, String)> = seen.iter().map(|(p, _, a)| (format!("answer {p}"), a.clone())).collect();
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
}
