//! The real `signpost-root` binary on 127.0.0.1:0 with real TLS, driven
//! through the real client: PKI made by its own `ca` commands, a table
//! signed by `table sign`, answers checked and validated with xmllint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "../../schemas/tests/common/mod.rs"]
mod common;
#[path = "../../crates/net/tests/support/prometheus.rs"]
mod prom;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use signpost_net::client::Client;
use signpost_schemas::lost::{Endpoint, Location, Path as LostPath, Uri};
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Csi, ErrorKind, FindService, Limits, Name, Request, Response};
use signpost_trust::TrustAnchor;
use signpost_trust::sign::Verifier;
use signpost_trust::tls::{Identity, client_config};

const BIN: &str = env!("CARGO_BIN_EXE_signpost-root");
const ROOT_ID: &str = "root.test.example";

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = |s: &str| dir.path().join(s).display().to_string();
        ok(&["ca", "init", "--out", &d("ca")]);
        ok(&["ca", "issue", "--ca", &d("ca"), "--role", "root", "--id", ROOT_ID, "--out", &d("root")]);
        ok(&["ca", "issue", "--ca", &d("ca"), "--role", "resolver", "--id", "resolver.carrier.example", "--out", &d("resolver")]);
        ok(&["ca", "issue", "--ca", &d("ca"), "--role", "authority", "--id", "dp.de.example", "--scope", "+49", "--out", &d("dp")]);
        Pki { dir }
    }
    fn path(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn anchor(&self) -> TrustAnchor {
        TrustAnchor::from_pem(&std::fs::read(self.path("ca/ca.pem")).unwrap()).unwrap()
    }
    fn client(&self, who: Option<&str>) -> Client {
        let id = who.map(|w| {
            Identity::from_pem(&std::fs::read(self.path(&format!("{w}/cert.pem"))).unwrap(), &std::fs::read(self.path(&format!("{w}/key.pem"))).unwrap()).unwrap()
        });
        Client::new(Arc::new(client_config(&self.anchor(), id.as_ref()).unwrap()), Duration::from_secs(5))
    }
    fn write_table(&self, serial: u64, extra: &str) {
        let o = self.sign_table(serial, "2099-01-01T00:00:00Z", extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    /// Writes and signs a table valid until `until`; `table sign`'s output.
    fn sign_table(&self, serial: u64, until: &str, extra: &str) -> std::process::Output {
        let t = format!(
            r#"<sp:rootTable xmlns:sp="urn:signpost:params:xml:ns:disc1" source="{ROOT_ID}" serial="{serial}" validUntil="{until}" negativeLifetime="120">
  <sp:delegation prefix="+49" lifetime="86400"><sp:authority id="dp.de.example"><sp:endpoint url="https://127.0.0.1:7402/lost"/></sp:authority></sp:delegation>
  <sp:delegation prefix="+1" lifetime="86400"><sp:authority id="dp.nanp.example"><sp:endpoint url="https://127.0.0.1:7404/lost"/></sp:authority></sp:delegation>
  <sp:delegation prefix="+1204" lifetime="600"><sp:authority id="dp.mb.example"><sp:endpoint url="https://127.0.0.1:7405/lost"/></sp:authority></sp:delegation>
  <sp:delegation domain="mail.example" includeSubdomains="true" lifetime="3600"><sp:authority id="dp.mail.example"><sp:endpoint url="https://127.0.0.1:7403/lost"/></sp:authority></sp:delegation>
  <sp:delegation domain="corp.example" lifetime="3600"><sp:authority id="dp.corp.example"><sp:endpoint url="https://[::1]:7406/lost"/></sp:authority></sp:delegation>
  {extra}
</sp:rootTable>"#
        );
        let tmp = self.path("new-table.xml");
        std::fs::write(&tmp, t).unwrap();
        let o = run(&["table", "sign", "--key", &self.path("root/key.pem").display().to_string(), &tmp.display().to_string()]);
        if o.status.success() {
            std::fs::rename(&tmp, self.path("root-table.xml")).unwrap();
        }
        o
    }
    fn config(&self, client_auth: &str, reload_ms: u64) -> PathBuf {
        let c = format!(
            r#"id = "{ROOT_ID}"
[listen]
lost = "127.0.0.1:0"
admin = "127.0.0.1:0"
[tls]
ca = "ca/ca.pem"
cert = "root/cert.pem"
key = "root/key.pem"
client_auth = "{client_auth}"
[table]
path = "root-table.xml"
reload_interval_ms = {reload_ms}
[limits]
max_body = 8192
max_connections = 64
handshake_timeout_ms = 2000
header_read_timeout_ms = 5000
request_timeout_ms = 5000
drain_grace_ms = 2000
"#
        );
        let p = self.path(&format!("root-{client_auth}-{reload_ms}.toml"));
        std::fs::write(&p, c).unwrap();
        p
    }
}

struct Running {
    child: Child,
    lost: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(config: &Path) -> Running {
        Running::start_with(config, Some("info"))
    }
    /// Starts the binary; `rust_log: None` leaves the level to the config.
    fn start_with(config: &Path, rust_log: Option<&str>) -> Running {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", &config.display().to_string()]).env_remove("RUST_LOG");
        if let Some(l) = rust_log {
            cmd.env("RUST_LOG", l);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let find = |kind: &str| -> Option<SocketAddr> {
            log.lock().unwrap().iter().find_map(|l| l.split(&format!("listening for {kind} on ")).nth(1).map(|a| a.trim().parse().unwrap()))
        };
        loop {
            if let (Some(lost), Some(admin)) = (find("lost"), find("admin")) {
                return Running { child, lost, admin, log };
            }
            assert!(Instant::now() < deadline, "server did not start: {:?}", log.lock().unwrap());
            if let Ok(Some(st)) = child.try_wait() {
                panic!("server exited with {st}: {:?}", log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("https://{}/lost", self.lost)).unwrap()
    }
    fn admin_get(&self, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(self.admin).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
    fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
    /// Waits (without a time threshold of its own beyond a generous
    /// deadline) until a line containing `needle` is logged.
    fn wait_logged(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.logged(needle) {
            assert!(Instant::now() < deadline, "never logged {needle:?}: {:?}", self.log.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn admin_body(&self, path: &str) -> String {
        let page = self.admin_get(path);
        page.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_parses_as_prometheus_text_and_a_table_near_its_end_is_warned_about() {
    use signpost_schemas::{Clock, SystemClock};
    let pki = Pki::new();
    // Three days of validity: `table sign` signs, with a warning.
    let until = SystemClock.now().plus_secs(3 * 86_400).to_string();
    let o = pki.sign_table(1, &until, "");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("valid for under 7 days"), "{}", String::from_utf8_lossy(&o.stderr));
    let r = Running::start(&pki.config("optional", 1000));
    r.wait_logged("the root table expires in under a week");
    // One answer, so the request families have samples.
    let c = pki.client(Some("resolver"));
    let req = Request::FindService(FindService::for_csi(Csi::from_wire("tel:+4915112345678").unwrap(), false));
    c.post_lost(&r.endpoint(), &Name::parse(ROOT_ID).unwrap(), Bytes::from(req.encode())).await.unwrap();
    assert!(r.admin_get("/readyz").starts_with("HTTP/1.1 200"), "not expired yet: ready");
    let page = r.admin_body("/metrics");
    let Some(s) = prom::parse(&page) else { return };
    prom::expect(
        &s,
        &[
            ("signpost_build_info", "gauge"),
            ("signpost_requests_total", "counter"),
            ("signpost_request_duration_seconds", "histogram"),
            ("signpost_connections_open", "gauge"),
            ("signpost_connections_total", "counter"),
            ("signpost_tls_handshake_failures_total", "counter"),
            ("signpost_tls_certificate_expiry_seconds", "gauge"),
            ("signpost_root_table_expiry_seconds", "gauge"),
            ("signpost_root_table_expiry_stage", "gauge"),
            ("signpost_root_table_serial", "gauge"),
        ],
    );
    assert_eq!(s.value("signpost_build_info", &format!("role=root,version={}", env!("CARGO_PKG_VERSION"))), Some(1.0), "{page}");
    assert_eq!(s.value("signpost_requests_total", "outcome=redirect"), Some(1.0), "{page}");
    let left = s.value("signpost_root_table_expiry_seconds", "").unwrap();
    assert!(left > 2.0 * 86_400.0 && left <= 3.0 * 86_400.0, "{left}");
    assert_eq!(s.value("signpost_root_table_expiry_stage", ""), Some(1.0), "{page}");
    assert_eq!(s.value("signpost_root_table_serial", ""), Some(1.0), "{page}");
    // `ca issue` defaults to 365 days.
    let cert = s.value("signpost_tls_certificate_expiry_seconds", "").unwrap();
    assert!(cert > 300.0 * 86_400.0 && cert <= 366.0 * 86_400.0, "{cert}");
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(csi: &str) -> FindService {
    FindService::for_csi(Csi::from_wire(csi).unwrap(), false)
}

async fn ask(c: &Client, r: &Running, req: &Request, docs: &mut Vec<(String, String)>) -> Response {
    let a = c.post_lost(&r.endpoint(), &Name::parse(ROOT_ID).unwrap(), Bytes::from(req.encode())).await.unwrap();
    assert_eq!(a.status, 200);
    let body = String::from_utf8(a.body.to_vec()).unwrap();
    docs.push((format!("answer to {req:?}"), body.clone()));
    Response::decode(body.as_bytes(), &Limits::MESSAGE).unwrap()
}

fn redirect_target(r: &Response) -> (String, String) {
    match r {
        Response::Redirect(x) => (x.target.to_string(), x.delegation.cover.to_string()),
        other => panic!("expected a redirect, got {other:?}"),
    }
}

fn error_kind(r: &Response) -> ErrorKind {
    match r {
        Response::Errors(e) => e.kind().unwrap(),
        other => panic!("expected errors, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_answers_over_mtls() {
    let pki = Pki::new();
    pki.write_table(1, "");
    let r = Running::start(&pki.config("required", 1000));
    let c = pki.client(Some("resolver"));
    let mut docs = Vec::new();

    // Longest prefix: +49, +1204 beside +1.
    let a = ask(&c, &r, &Request::FindService(find("tel:+4915112345678")), &mut docs).await;
    assert_eq!(redirect_target(&a), ("dp.de.example".into(), "+49".into()));
    if let Response::Redirect(x) = &a {
        assert_eq!(x.source.as_str(), ROOT_ID);
        assert_eq!(x.delegation.lifetime, 86400);
        assert_eq!(x.delegation.authorities[0].endpoints[0].as_str(), "https://127.0.0.1:7402/lost");
    }
    let a = ask(&c, &r, &Request::FindService(find("tel:+12045550123")), &mut docs).await;
    assert_eq!(redirect_target(&a), ("dp.mb.example".into(), "+1204".into()));
    let a = ask(&c, &r, &Request::FindService(find("tel:+12125550123")), &mut docs).await;
    assert_eq!(redirect_target(&a), ("dp.nanp.example".into(), "+1".into()));
    // Email domains: exact, subdomain with includeSubdomains, and without.
    let a = ask(&c, &r, &Request::FindService(find("mailto:alice@mail.example")), &mut docs).await;
    assert_eq!(redirect_target(&a).0, "dp.mail.example");
    let a = ask(&c, &r, &Request::FindService(find("mailto:alice@eu.mail.example")), &mut docs).await;
    assert_eq!(redirect_target(&a), ("dp.mail.example".into(), "*.mail.example".into()));
    let a = ask(&c, &r, &Request::FindService(find("mailto:bob@corp.example")), &mut docs).await;
    assert_eq!(redirect_target(&a).0, "dp.corp.example");
    let a = ask(&c, &r, &Request::FindService(find("mailto:bob@x.corp.example")), &mut docs).await;
    assert_eq!(error_kind(&a), ErrorKind::NotFound);
    // No delegation: notFound with the negative lifetime.
    let a = ask(&c, &r, &Request::FindService(find("tel:+33612345678")), &mut docs).await;
    match &a {
        Response::Errors(e) => {
            assert_eq!(e.kind(), Some(ErrorKind::NotFound));
            assert_eq!(e.negative_lifetime, Some(120));
            assert_eq!(e.source.as_str(), ROOT_ID);
        }
        other => panic!("{other:?}"),
    }
    // Wrong profile.
    let mut geo = find("tel:+4915112345678");
    geo.locations = vec![Location::Other { id: "g".into(), profile: Some("geodetic-2d".into()) }];
    let a = ask(&c, &r, &Request::FindService(geo), &mut docs).await;
    assert_eq!(error_kind(&a), ErrorKind::LocationProfileUnrecognized);
    // Another service.
    let mut svc = find("tel:+4915112345678");
    svc.service = Some(Uri::parse("urn:service:sos").unwrap());
    assert_eq!(error_kind(&ask(&c, &r, &Request::FindService(svc), &mut docs).await), ErrorKind::ServiceNotImplemented);
    // Loops: our own id, or the next hop's, in the path.
    let mut l = find("tel:+4915112345678");
    l.path = Some(LostPath::new(Name::parse(ROOT_ID).unwrap()));
    assert_eq!(error_kind(&ask(&c, &r, &Request::FindService(l), &mut docs).await), ErrorKind::Loop);
    let mut l = find("tel:+4915112345678");
    l.path = Some(LostPath::new(Name::parse("dp.de.example").unwrap()));
    assert_eq!(error_kind(&ask(&c, &r, &Request::FindService(l), &mut docs).await), ErrorKind::Loop);
    // A path without us is fine.
    let mut l = find("tel:+4915112345678");
    l.path = Some(LostPath::new(Name::parse("resolver.carrier.example").unwrap()));
    assert_eq!(redirect_target(&ask(&c, &r, &Request::FindService(l), &mut docs).await).0, "dp.de.example");
    // listServices.
    let a = ask(&c, &r, &Request::ListServices(signpost_schemas::ListServices { service: None, path: None }), &mut docs).await;
    assert!(matches!(a, Response::Services(ref s) if s.services[0].as_str() == "urn:service:mimi"));

    // Bad XML: badRequest in a 200 body.
    let root = Name::parse(ROOT_ID).unwrap();
    let a = c.post_lost(&r.endpoint(), &root, Bytes::from_static(b"<findService xmlns=\"urn:ietf:params:xml:ns:lost1\"><loc")).await.unwrap();
    assert_eq!(a.status, 200);
    let body = String::from_utf8(a.body.to_vec()).unwrap();
    assert_eq!(error_kind(&Response::decode(body.as_bytes(), &Limits::MESSAGE).unwrap()), ErrorKind::BadRequest);
    docs.push(("bad xml".into(), body));
    // Oversized body: 413 with a LoST body.
    let big = format!("<findService xmlns=\"urn:ietf:params:xml:ns:lost1\">{}</findService>", " ".repeat(20_000));
    let a = c.post_lost(&r.endpoint(), &root, Bytes::from(big)).await.unwrap();
    assert_eq!(a.status, 413);
    docs.push(("413".into(), String::from_utf8(a.body.to_vec()).unwrap()));
    // Wrong content type: 415; wrong method: 405 with Allow.
    let a = c.raw(&r.endpoint(), &root, signpost_net::hyper::Method::POST, "text/xml", Bytes::from(Request::FindService(find("tel:+4915112345678")).encode())).await.unwrap();
    assert_eq!(a.status, 415);
    docs.push(("415".into(), String::from_utf8(a.body.to_vec()).unwrap()));
    let a = c.raw(&r.endpoint(), &root, signpost_net::hyper::Method::PUT, "application/lost+xml", Bytes::new()).await.unwrap();
    assert_eq!(a.status, 405);
    assert_eq!(a.headers.get("allow").unwrap(), "POST");

    // GET /root-table with ETag, 304 on If-None-Match; the body verifies.
    let a = c.get(&r.endpoint(), &root, "/root-table", &[]).await.unwrap();
    assert_eq!(a.status, 200);
    let etag = a.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert_eq!(etag, "\"1\"");
    let t = RootTable::decode(&a.body, &Limits::DOCUMENT).unwrap();
    let mut v = Verifier::new(pki.anchor());
    v.add_pem(&std::fs::read(pki.path("root/cert.pem")).unwrap(), signpost_schemas::Clock::now(&signpost_schemas::SystemClock)).unwrap();
    assert!(v.verify_root_table(&t, signpost_schemas::Clock::now(&signpost_schemas::SystemClock)).is_ok());
    let a = c.get(&r.endpoint(), &root, "/root-table", &[("if-none-match", etag)]).await.unwrap();
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());

    // Every answer is valid LoST, with valid sp extensions.
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());

    // Admin plane.
    assert!(r.admin_get("/healthz").starts_with("HTTP/1.1 200"));
    assert!(r.admin_get("/readyz").starts_with("HTTP/1.1 200"));
    let m = r.admin_get("/metrics");
    let redirects: u64 = m.lines().find(|l| l.starts_with("signpost_requests_total{outcome=\"redirect\"}")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(redirects, 7, "{m}");
    assert!(m.contains("signpost_request_duration_seconds_bucket"));
    // No identifier in the logs at the default level.
    assert!(!r.logged("4915112345678") && !r.logged("alice@"), "{:?}", r.log.lock().unwrap());
}

/// RFC 5222's own example request (a geodetic point, `urn:service:sos.police`)
/// as bytes on the wire.
pub const RFC5222_GEODETIC_POLICE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<findService xmlns="urn:ietf:params:xml:ns:lost1" xmlns:p2="http://www.opengis.net/gml" serviceBoundary="value" recursive="true">
  <location id="6020688f1ce1896d" profile="geodetic-2d">
    <p2:Point id="point1" srsName="urn:ogc:def:crs:EPSG::4326">
      <p2:pos>37.775 -122.422</p2:pos>
    </p2:Point>
  </location>
  <service>urn:service:sos.police</service>
</findService>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_applicable_error_and_list_services_by_service() {
    let pki = Pki::new();
    pki.write_table(1, "");
    let r = Running::start(&pki.config("required", 1000));
    let c = pki.client(Some("resolver"));
    let root = Name::parse(ROOT_ID).unwrap();
    let mut docs = Vec::new();
    // RFC 5222's example: both the profile and the service are wrong, and
    // both errors are reported in one <errors>.
    let a = c.post_lost(&r.endpoint(), &root, Bytes::from_static(RFC5222_GEODETIC_POLICE.as_bytes())).await.unwrap();
    assert_eq!(a.status, 200);
    let body = String::from_utf8(a.body.to_vec()).unwrap();
    let Response::Errors(e) = Response::decode(body.as_bytes(), &Limits::MESSAGE).unwrap() else { panic!("{body}") };
    let kinds: Vec<ErrorKind> = e.list.issues().iter().map(|i| i.kind).collect();
    assert_eq!(kinds, [ErrorKind::LocationProfileUnrecognized, ErrorKind::ServiceNotImplemented], "{body}");
    assert_eq!(e.list.get(ErrorKind::LocationProfileUnrecognized).unwrap().unsupported_profiles, ["geodetic-2d"]);
    docs.push(("geodetic sos.police".into(), body));
    // Only the service wrong: one error.
    let mut svc = find("tel:+4915112345678");
    svc.service = Some(Uri::parse("urn:service:sos.police").unwrap());
    let a = ask(&c, &r, &Request::FindService(svc), &mut docs).await;
    assert!(matches!(&a, Response::Errors(e) if e.list.issues().len() == 1 && e.kind() == Some(ErrorKind::ServiceNotImplemented)), "{a:?}");
    // listServices (RFC 5222 §10): without <service> the offered services;
    // for urn:service:mimi its sub-services (none); for another service
    // (urn:service:sos) serviceNotImplemented, never urn:service:mimi.
    let ls = |s: Option<&str>| Request::ListServices(signpost_schemas::ListServices { service: s.map(|s| Uri::parse(s).unwrap()), path: None });
    let a = ask(&c, &r, &ls(None), &mut docs).await;
    assert!(matches!(&a, Response::Services(s) if s.services.iter().map(Uri::as_str).collect::<Vec<_>>() == ["urn:service:mimi"]), "{a:?}");
    let a = ask(&c, &r, &ls(Some("urn:service:mimi")), &mut docs).await;
    assert!(matches!(&a, Response::Services(s) if s.services.is_empty()), "{a:?}");
    let a = ask(&c, &r, &ls(Some("urn:service:sos")), &mut docs).await;
    assert_eq!(error_kind(&a), ErrorKind::ServiceNotImplemented);
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_is_required_where_configured() {
    let pki = Pki::new();
    pki.write_table(1, "");
    let r = Running::start(&pki.config("required", 1000));
    let root = Name::parse(ROOT_ID).unwrap();
    let req = Bytes::from(Request::FindService(find("tel:+4915112345678")).encode());
    // No client certificate: the handshake is refused.
    let e = pki.client(None).post_lost(&r.endpoint(), &root, req.clone()).await.unwrap_err();
    assert!(matches!(e, signpost_net::client::ClientError::Tls(..) | signpost_net::client::ClientError::Http(_)), "{e:?}");
    // A certificate from another CA: refused too.
    let other = tempfile::tempdir().unwrap();
    let d = |s: &str| other.path().join(s).display().to_string();
    ok(&["ca", "init", "--out", &d("ca")]);
    ok(&["ca", "issue", "--ca", &d("ca"), "--role", "resolver", "--id", "resolver.rogue.example", "--out", &d("r")]);
    let id = Identity::from_pem(&std::fs::read(other.path().join("r/cert.pem")).unwrap(), &std::fs::read(other.path().join("r/key.pem")).unwrap()).unwrap();
    let rogue = Client::new(Arc::new(client_config(&pki.anchor(), Some(&id)).unwrap()), Duration::from_secs(5));
    assert!(rogue.post_lost(&r.endpoint(), &root, req.clone()).await.is_err());
    // The server's certificate is checked against the expected id.
    let e = pki.client(Some("resolver")).post_lost(&r.endpoint(), &Name::parse("other.example").unwrap(), req.clone()).await.unwrap_err();
    assert!(matches!(e, signpost_net::client::ClientError::Tls(..)), "{e:?}");
    // With a certificate from the anchor: answered.
    assert_eq!(pki.client(Some("resolver")).post_lost(&r.endpoint(), &root, req).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_good_tables_and_keeps_serving_on_bad_ones() {
    let pki = Pki::new();
    pki.write_table(1, "");
    let r = Running::start(&pki.config("required", 100));
    let c = pki.client(Some("resolver"));
    let mut docs = Vec::new();
    let fr = Request::FindService(find("tel:+33612345678"));
    assert_eq!(error_kind(&ask(&c, &r, &fr, &mut docs).await), ErrorKind::NotFound);

    // A good new table (higher serial, adds +33) is picked up.
    pki.write_table(2, r#"<sp:delegation prefix="+33" lifetime="60"><sp:authority id="dp.fr.example"><sp:endpoint url="https://127.0.0.1:7407/lost"/></sp:authority></sp:delegation>"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if matches!(ask(&c, &r, &fr, &mut docs).await, Response::Redirect(_)) {
            break;
        }
        assert!(Instant::now() < deadline, "new table never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An unsigned table is refused; the previous one keeps serving.
    std::fs::write(pki.path("root-table.xml"), std::fs::read(pki.path("root-table.xml")).unwrap().split(|&b| b == b'\n').filter(|l| !l.starts_with(b"<sp:signature") && !String::from_utf8_lossy(l).contains("sp:signature")).collect::<Vec<_>>().join(&b'\n')).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.logged("reload refused") {
        assert!(Instant::now() < deadline, "bad table not noticed: {:?}", r.log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(ask(&c, &r, &fr, &mut docs).await, Response::Redirect(_)));
    // A validly signed table with an older serial is refused as a rollback.
    pki.write_table(1, "");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.logged("older than the serving serial") {
        assert!(Instant::now() < deadline, "rollback not refused: {:?}", r.log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(ask(&c, &r, &fr, &mut docs).await, Response::Redirect(_)));
    // Requests kept being answered throughout.
    assert!(docs.iter().all(|(_, b)| Response::decode(b.as_bytes(), &Limits::MESSAGE).is_ok()));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_drains() {
    let pki = Pki::new();
    pki.write_table(1, "");
    // File polling every 10 minutes: only SIGHUP can bring the change in.
    let mut r = Running::start(&pki.config("required", 600_000));
    let c = pki.client(Some("resolver"));
    let mut docs = Vec::new();
    let fr = Request::FindService(find("tel:+33612345678"));
    pki.write_table(5, r#"<sp:delegation prefix="+33" lifetime="60"><sp:authority id="dp.fr.example"><sp:endpoint url="https://127.0.0.1:7407/lost"/></sp:authority></sp:delegation>"#);
    assert_eq!(error_kind(&ask(&c, &r, &fr, &mut docs).await), ErrorKind::NotFound);
    let pid = r.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(ask(&c, &r, &fr, &mut docs).await, Response::Redirect(_)) {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = r.child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(r.logged("shutting down"));
}

#[test]
fn check_config_and_samples() {
    let pki = Pki::new();
    pki.write_table(1, "");
    let cfg = pki.config("required", 1000);
    let o = run(&["check-config", "--config", &cfg.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("table serial 1"));
    // An unknown key is refused with exit 64, naming it.
    let bad = pki.path("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&cfg).unwrap().replace("[table]", "[table]\nreload_intervall_ms = 5")).unwrap();
    let o = run(&["check-config", "--config", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("reload_intervall_ms"), "{}", String::from_utf8_lossy(&o.stderr));
    // `table sign` refuses an authority's key, naming the file and the role.
    let t = pki.path("root-table.xml");
    let o = run(&["table", "sign", "--key", &pki.path("dp/key.pem").display().to_string(), &t.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("dp/key.pem") && e.contains("authority dp.de.example") && e.contains("root's key"), "{e}");
    // … and a key with another key's certificate.
    let o = run(&["table", "sign", "--key", &pki.path("dp/key.pem").display().to_string(), "--cert", &pki.path("root/cert.pem").display().to_string(), &t.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not the key of"), "{}", String::from_utf8_lossy(&o.stderr));
    // A table signed by a non-root key anyway (not through `table sign`) is
    // refused by the server.
    let mut table = RootTable::decode(&std::fs::read(&t).unwrap(), &Limits::DOCUMENT).unwrap();
    let dp = signpost_trust::sign::Signer::from_pem(&std::fs::read(pki.path("dp/key.pem")).unwrap()).unwrap();
    let until = table.valid_until;
    dp.sign_root_table(&mut table, signpost_schemas::Clock::now(&signpost_schemas::SystemClock), until).unwrap();
    std::fs::write(&t, table.encode()).unwrap();
    let o = run(&["check-config", "--config", &cfg.display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signature refused"), "{}", String::from_utf8_lossy(&o.stderr));

    // Every sample config in the repository parses strictly, and an added
    // unknown key is refused.
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("root.sample.toml");
    signpost_root::config::Config::load(&sample).unwrap();
    let text = std::fs::read_to_string(&sample).unwrap();
    let p = pki.path("sample-plus.toml");
    std::fs::write(&p, format!("{text}\nunknown_key = 1\n")).unwrap();
    assert!(signpost_root::config::Config::load(&p).unwrap_err().to_string().contains("unknown_key"));
    // The sample table decodes and validates against the sp schema.
    let st = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("root-table.sample.xml")).unwrap();
    RootTable::decode(&st, &Limits::DOCUMENT).unwrap();
    assert_eq!(common::xmllint(&common::sp_rng(), &[("sample table".into(), String::from_utf8(st).unwrap())]), Vec::<String>::new());
    // CLI errors name the problem.
    let o = run(&["ca", "issue", "--ca", &pki.path("ca").display().to_string(), "--role", "wizard", "--id", "x.example", "--out", &pki.path("w").display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown role"));
    let o = run(&["ca", "issue", "--ca", &pki.path("ca").display().to_string(), "--role", "authority", "--id", "x.example", "--scope", "+4a", "--out", &pki.path("w").display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    let o = run(&["ca", "init", "--out", &pki.path("ca").display().to_string()]);
    assert!(!o.status.success(), "ca init must not overwrite a CA");
}

#[test]
fn help_prints_the_exit_codes_and_usage_errors_exit_64() {
    let o = run(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Exit codes") && help.contains("64  usage") && help.contains("69  unavailable"), "{help}");
    // clap's own usage errors exit 64 (its default, 2, means "not found").
    assert_eq!(run(&["--no-such-flag"]).status.code(), Some(64));
    assert_eq!(run(&[]).status.code(), Some(64));
    assert_eq!(run(&["ca", "issue", "--ca", "x"]).status.code(), Some(64));
    assert_eq!(run(&["--version"]).status.code(), Some(0));
}

#[test]
fn issuing_refuses_mistakes_with_a_message() {
    let pki = Pki::new();
    let d = |s: &str| pki.path(s).display().to_string();
    let refused = |args: &[&str], words: &str| {
        let o = run(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(words), "{args:?}: {e}");
        assert!(!e.contains("UnixTime") && !e.contains("KeyMismatch"), "{e}");
    };
    refused(&["ca", "issue", "--ca", &d("ca"), "--role", "authority", "--id", "dp.fr.example", "--out", &d("fr")], "needs at least one --scope");
    refused(&["ca", "issue", "--ca", &d("ca"), "--role", "authority", "--id", "dp.fr.example", "--scope", "33", "--out", &d("fr")], "+33");
    refused(&["ca", "issue", "--ca", &d("ca"), "--role", "resolver", "--id", "r.example", "--days", "0", "--out", &d("r0")], "--days 0");
    refused(&["ca", "init", "--out", &d("ca2"), "--days", "0"], "--days 0");
    assert!(!pki.path("fr").exists() && !pki.path("r0").exists(), "nothing written");
    // A server whose key is not its certificate's says so in words, naming both files.
    pki.write_table(1, "");
    std::fs::copy(pki.path("resolver/key.pem"), pki.path("root/key.pem")).unwrap();
    let o = run(&["check-config", "--config", &pki.config("required", 1000).display().to_string()]);
    assert_eq!(o.status.code(), Some(64));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("does not belong to the certificate") && e.contains("root/cert.pem") && e.contains("root/key.pem"), "{e}");
}

#[test]
fn a_present_section_may_list_only_what_it_changes_and_the_sample_shows_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("id = \"{ROOT_ID}\"\n[listen]\nlost = \"127.0.0.1:0\"\n[tls]\nca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[table]\npath = \"t.xml\"\n");
    let partial = dir.path().join("partial.toml");
    std::fs::write(&partial, format!("{base}[limits]\nrequest_timeout_ms = 2000\n[log]\nformat = \"json\"\n")).unwrap();
    let (c, _) = signpost_root::config::Config::load(&partial).unwrap();
    assert_eq!((c.limits.request_timeout_ms, c.limits.max_body), (2000, 65536));
    assert_eq!((c.log.format.as_str(), c.log.level.as_str()), ("json", "info"));
    let minimal = dir.path().join("minimal.toml");
    std::fs::write(&minimal, &base).unwrap();
    let (m, _) = signpost_root::config::Config::load(&minimal).unwrap();
    let (s, _) = signpost_root::config::Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("root.sample.toml")).unwrap();
    assert_eq!(format!("{:?}", m.limits), format!("{:?}", s.limits));
    assert_eq!(format!("{:?}", m.log), format!("{:?}", s.log));
    assert_eq!((m.table.reload_interval_ms, s.table.reload_interval_ms), (1000, 1000));
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let o = run(&["completions", "bash"]);
    assert!(o.status.success());
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(script.contains("signpost-root") && script.contains("table") && script.contains("--scope"), "{script}");
    assert!(run(&["completions", "zsh"]).status.success());
    assert_eq!(run(&["completions", "tcsh-ish"]).status.code(), Some(64));
    let o = run(&["man"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains(".TH"));
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["man", "--out", &dir.path().display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let issue = std::fs::read_to_string(dir.path().join("signpost-root-ca-issue.1")).unwrap();
    assert!(issue.contains(".TH") && issue.contains("scope"), "{issue}");
    assert!(dir.path().join("signpost-root.1").exists() && dir.path().join("signpost-root-table-sign.1").exists());
}

#[test]
fn table_sign_keeps_layout_and_comments_and_verify_and_show_read_it() {
    let pki = Pki::new();
    let t = pki.path("commented.xml");
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- Deployment root table: raise the serial on every edit. -->\n<sp:rootTable xmlns:sp=\"urn:signpost:params:xml:ns:disc1\" source=\"{ROOT_ID}\" serial=\"7\" validUntil=\"2099-01-01T00:00:00Z\" negativeLifetime=\"120\">\n    <!-- Germany -->\n    <sp:delegation prefix=\"+49\" lifetime=\"86400\"><sp:authority id=\"dp.de.example\"><sp:endpoint url=\"https://127.0.0.1:7402/lost\"/></sp:authority></sp:delegation>\n</sp:rootTable>\n"
    );
    std::fs::write(&t, &text).unwrap();
    let key = pki.path("root/key.pem").display().to_string();
    for _ in 0..2 {
        ok(&["table", "sign", "--key", &key, &t.display().to_string()]);
    }
    let signed = std::fs::read_to_string(&t).unwrap();
    assert!(signed.contains("<!-- Deployment root table: raise the serial on every edit. -->") && signed.contains("    <!-- Germany -->"), "{signed}");
    assert_eq!(signed.matches("<sp:signature").count(), 1, "re-signing replaces the signature: {signed}");
    let o = run(&["table", "verify", "--ca", &pki.path("ca/ca.pem").display().to_string(), "--cert", &pki.path("root/cert.pem").display().to_string(), &t.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("OK: serial 7, 1 delegations"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = run(&["table", "show", &t.display().to_string()]);
    assert!(o.status.success());
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("serial 7") && shown.contains("+49") && shown.contains("dp.de.example [https://127.0.0.1:7402/lost]"), "{shown}");
    // A tampered table: verify says a server would refuse it (65).
    std::fs::write(&t, signed.replace("lifetime=\"86400\"", "lifetime=\"60\"")).unwrap();
    let o = run(&["table", "verify", "--ca", &pki.path("ca/ca.pem").display().to_string(), "--cert", &pki.path("root/cert.pem").display().to_string(), &t.display().to_string()]);
    assert_eq!(o.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&o.stderr).contains("would refuse"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_failed_tls_handshake_is_logged_at_info() {
    let pki = Pki::new();
    pki.write_table(1, "");
    let r = Running::start(&pki.config("required", 1000));
    // Plain HTTP to the TLS listener: the handshake fails.
    let mut s = std::net::TcpStream::connect(r.lost).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    r.wait_logged("TLS handshake with 127.0.0.1:");
    let line = r.log.lock().unwrap().iter().find(|l| l.contains("TLS handshake with")).cloned().unwrap();
    assert!(line.contains("INFO") && line.contains("failed"), "{line}");
    assert!(r.admin_body("/metrics").contains("signpost_tls_handshake_failures_total 1\n"));
}

/// SIGHUP reloads the certificate and key (new connections get the new
/// one; an open connection goes on) and the log level, without a restart.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_the_log_level_without_dropping_connections() {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pki = Pki::new();
    pki.write_table(1, "");
    let cfg = pki.config("required", 200);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}[log]\nlevel = \"info\"\n")).unwrap();
    let r = Running::start_with(&cfg, None);
    let c = pki.client(Some("resolver"));
    let mut docs = Vec::new();
    let de = Request::FindService(find("tel:+4915112345678"));
    assert!(matches!(ask(&c, &r, &de, &mut docs).await, Response::Redirect(_)));
    // A new certificate (other validity) and a new level, then SIGHUP.
    let d = |s: &str| pki.path(s).display().to_string();
    ok(&["ca", "issue", "--ca", &d("ca"), "--role", "root", "--id", ROOT_ID, "--days", "3", "--force", "--out", &d("root")]);
    std::fs::write(&cfg, format!("{text}[log]\nlevel = \"debug\"\n")).unwrap();
    assert!(!r.logged("DEBUG"), "debug lines before the reload");
    let pid = r.child.id().to_string();
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    r.wait_logged("SIGHUP: certificate and key reloaded");
    // The open connection goes on.
    assert!(matches!(ask(&c, &r, &de, &mut docs).await, Response::Redirect(_)));
    // A new connection is served the new certificate.
    let id = Identity::from_pem(&std::fs::read(pki.path("resolver/cert.pem")).unwrap(), &std::fs::read(pki.path("resolver/key.pem")).unwrap()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&pki.anchor(), Some(&id)).unwrap()));
    let tcp = tokio::net::TcpStream::connect(r.lost).await.unwrap();
    let tls = connector.connect(rustls_pki_types::ServerName::try_from(ROOT_ID).unwrap(), tcp).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let new = CertificateDer::from_pem_slice(&std::fs::read(pki.path("root/cert.pem")).unwrap()).unwrap();
    assert_eq!(served, new, "a new connection gets the reloaded certificate");
    // And the level: the table loop's debug line shows up.
    r.wait_logged("DEBUG");
}
