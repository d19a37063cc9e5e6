//! The shell's own limits, with a trivial service on 127.0.0.1:0: the
//! connection cap, the TLS handshake timeout, plaintext refusal by clients,
//! unknown paths, and the admin plane's readiness latch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use signpost_net::admin::Ready;
use signpost_net::client::{Client, ClientError};
use signpost_net::{Ctx, Failure, Limits, Metrics, Reply, Server, Service, bind};
use signpost_schemas::lost::Endpoint;
use signpost_schemas::{Csi, FindService, Name, Request, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest};
use signpost_trust::tls::{ClientAuth, Identity, client_config, server_config};
use signpost_trust::{Role, TrustAnchor};

struct Echo;

impl Service for Echo {
    fn id(&self) -> Name {
        Name::parse("echo.example").unwrap()
    }
    async fn lost(&self, _req: Request, ctx: &Ctx) -> Result<signpost_net::LostReply, Failure> {
        // Report who the peer is through a notFound message.
        Err(Failure::NotFound { message: format!("peer={}", ctx.peer.as_ref().map_or("none".into(), |p| p.id().to_string())), negative_lifetime: 1, feed_position: None })
    }
    async fn get(&self, _p: &str, _h: &signpost_net::hyper::HeaderMap, _c: &Ctx) -> Option<Reply> {
        None
    }
}

struct Setup {
    anchor: TrustAnchor,
    server: Identity,
    client: Identity,
}

fn setup() -> Setup {
    let now = signpost_schemas::Clock::now(&SystemClock);
    let ca = Ca::generate("t", Timestamp::from_secs(now.as_secs() - 60), now.plus_secs(3600)).unwrap();
    let issue = |role, id: &str| {
        let i = ca.issue(&LeafRequest { role, id: Name::parse(id).unwrap(), scope: vec![], not_before: Timestamp::from_secs(now.as_secs() - 60), not_after: now.plus_secs(3600), ip_sans: vec![] }).unwrap();
        Identity::from_pem(i.chain_pem.as_bytes(), i.key_pem.as_bytes()).unwrap()
    };
    Setup { anchor: TrustAnchor::from_pem(ca.cert_pem().as_bytes()).unwrap(), server: issue(Role::Authority, "echo.example"), client: issue(Role::Resolver, "r.example") }
}

async fn start(s: &Setup, limits: Limits, auth: ClientAuth) -> (std::net::SocketAddr, Arc<Metrics>, tokio::sync::oneshot::Sender<()>) {
    let tls = Arc::new(server_config(&s.server, &s.anchor, auth).unwrap());
    let l = bind("127.0.0.1:0".parse().unwrap(), "lost").await.unwrap();
    let addr = l.local_addr().unwrap();
    let m = Arc::new(Metrics::new());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let srv = Server::new(Arc::new(Echo), Some(tls), Some(s.anchor.clone()), limits, m.clone(), Arc::new(SystemClock));
    tokio::spawn(srv.serve(l, async {
        let _ = rx.await;
    }));
    (addr, m, tx)
}

fn body() -> Bytes {
    Bytes::from(Request::FindService(FindService::for_csi(Csi::from_wire("tel:+4915112345678").unwrap(), false)).encode())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_identity_reaches_the_handler_and_optional_auth_allows_anonymous() {
    let s = setup();
    let (addr, _m, _stop) = start(&s, Limits::default(), ClientAuth::Optional).await;
    let ep = Endpoint::parse(&format!("https://{addr}/lost")).unwrap();
    let id = Name::parse("echo.example").unwrap();
    let with = Client::new(Arc::new(client_config(&s.anchor, Some(&s.client)).unwrap()), Duration::from_secs(5));
    let a = with.post_lost(&ep, &id, body()).await.unwrap();
    assert!(String::from_utf8_lossy(&a.body).contains("peer=r.example"));
    let without = Client::new(Arc::new(client_config(&s.anchor, None).unwrap()), Duration::from_secs(5));
    let a = without.post_lost(&ep, &id, body()).await.unwrap();
    assert!(String::from_utf8_lossy(&a.body).contains("peer=none"));
    // Unknown path: 404.
    assert_eq!(with.get(&ep, &id, "/nothing", &[]).await.unwrap().status, 404);
    // A plain-HTTP endpoint is refused by a client without the dev flag.
    let plain = Endpoint::parse(&format!("http://{addr}/lost")).unwrap();
    assert!(matches!(with.post_lost(&plain, &id, body()).await, Err(ClientError::Plaintext(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_and_handshake_timeout() {
    let s = setup();
    let limits = Limits { max_connections: 1, handshake_timeout: Duration::from_millis(300), ..Limits::default() };
    let (addr, m, _stop) = start(&s, limits, ClientAuth::Required).await;
    // One silent connection holds the only slot, then is dropped by the
    // handshake timeout.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A second connection while the slot is taken is closed at once.
    let mut second = std::net::TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    let _ = second.write_all(b"\x16\x03\x01\x00\x05hello");
    assert_eq!(second.read(&mut buf).unwrap_or(0), 0, "second connection must be closed");
    // Closed by the server (Ok(0)), not given up on by our read timeout.
    silent.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    assert!(matches!(silent.read(&mut buf), Ok(0)), "the handshake timeout closes a silent connection");
    // The slot is free again: a real client gets through.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = Client::new(Arc::new(client_config(&s.anchor, Some(&s.client)).unwrap()), Duration::from_secs(5));
    let a = c.post_lost(&Endpoint::parse(&format!("https://{addr}/lost")).unwrap(), &Name::parse("echo.example").unwrap(), body()).await.unwrap();
    assert_eq!(a.status, 200);
    assert!(m.connections_rejected.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(m.handshake_failures.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(m.requests("notFound"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_a_latch() {
    let l = bind("127.0.0.1:0".parse().unwrap(), "admin").await.unwrap();
    let addr = l.local_addr().unwrap();
    let ready = Ready::new();
    tokio::spawn(signpost_net::admin::serve(l, Arc::new(Metrics::new()), ready.clone(), std::future::pending()));
    let get = move |p: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let (a, r) = tokio::task::spawn_blocking(move || (get("/healthz"), get("/readyz"))).await.unwrap();
    assert!(a.starts_with("HTTP/1.1 200") && r.starts_with("HTTP/1.1 503"));
    ready.set();
    let r = tokio::task::spawn_blocking(move || get("/readyz")).await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200"));
}

#[test]
fn csi_tags_hide_identifiers_but_are_stable() {
    let a = signpost_net::csi_tag("tel:+4915112345678");
    assert_eq!(a, signpost_net::csi_tag("tel:+4915112345678"));
    assert_ne!(a, signpost_net::csi_tag("tel:+4915112345679"));
    assert_eq!(a.len(), 16);
    assert!(!a.contains("4915112345678"));
}
