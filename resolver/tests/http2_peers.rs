//! The resolver's HTTP/2 (its own implementation, `limits.http2 =
//! "native"`) against HTTP/2 clients that are not Signpost's: curl
//! (libcurl + nghttp2) with a client certificate, and nghttp2's h2load
//! under load (many streams on several connections). Skipped with a note
//! when a tool is missing, required when `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::process::Command;

use signpost_schemas::{FindService, Request};
use signpost_trust::Role;
use support::{RES, Topology, csi};

fn tool(name: &str) -> bool {
    let found = Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success() || !o.stdout.is_empty());
    if !found {
        assert!(std::env::var("CI").is_err(), "{name} is required when CI=true (Debian: curl, nghttp2-client)");
        eprintln!("skipping: {name} is not installed");
    }
    found
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).to_string_lossy().into_owned()
    }
}

fn files(t: &Topology, body: &[u8]) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let c = t.pki.cert(Role::Msp, "ap.curl.example", &[]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), t.pki.ca_pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), &c.chain).unwrap();
    std::fs::write(dir.path().join("key.pem"), &c.key).unwrap();
    std::fs::write(dir.path().join("req.xml"), body).unwrap();
    std::fs::write(dir.path().join("big.xml"), vec![b' '; 300 * 1024]).unwrap();
    Files { dir }
}

/// curl over HTTP/2 with a client certificate: `(body, "version status")`.
fn curl(f: &Files, port: u16, path: &str, data: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "20", "--cacert", &f.path("ca.pem"), "--cert", &f.path("cert.pem"), "--key", &f.path("key.pem")])
        .args(["--resolve", &format!("{RES}:{port}:127.0.0.1"), "-H", "Content-Type: application/lost+xml"])
        .args(["--data-binary", &format!("@{}", f.path(data)), "-w", "\n%{http_version} %{response_code}"])
        .arg(format!("https://{RES}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl failed: {} {}", text, String::from_utf8_lossy(&out.stderr));
    let (body, tail) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), tail.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http2_with_a_client_certificate_gets_the_verified_answer_and_the_errors() {
    if !tool("curl") {
        return;
    }
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4930123456", "+49", "provider-a.example").await;
    let r = t.resolver(t.plan()).await;
    let port = r.running.addr.port();
    let body = Request::FindService(FindService::for_csi(csi("tel:+4930123456"), true)).encode();
    let f = files(&t, body.as_bytes());
    tokio::task::spawn_blocking(move || {
        // The same lookup twice: a miss, then a cache hit; both HTTP/2.
        for _ in 0..2 {
            let (answer, status) = curl(&f, port, "/lost", "req.xml");
            assert_eq!(status, "2 200", "{answer}");
            assert!(answer.contains("<findServiceResponse") && answer.contains("mimi://provider-a.example/u/alice"), "{answer}");
        }
        // A body over the limit: 413 with a LoST error, over HTTP/2.
        let (answer, status) = curl(&f, port, "/lost", "big.xml");
        assert_eq!(status, "2 413", "{answer}");
        assert!(answer.contains("<errors") && answer.contains("badRequest"), "{answer}");
        // An unknown path: 404 with a LoST error.
        let (answer, status) = curl(&f, port, "/nowhere", "req.xml");
        assert_eq!(status, "2 404", "{answer}");
        assert!(answer.contains("<errors"), "{answer}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_many_streams_on_several_connections_all_succeed() {
    if !tool("h2load") {
        return;
    }
    let t = Topology::start().await;
    t.provision(&t.de, "tel:+4930123456", "+49", "provider-a.example").await;
    let mut plan = t.plan();
    // h2load has no client certificates.
    plan.client_auth = signpost_kit::Auth::Optional;
    plan.per_client_limit = 1e9;
    let r = t.resolver(plan).await;
    let port = r.running.addr.port();
    let body = Request::FindService(FindService::for_csi(csi("tel:+4930123456"), true)).encode();
    let f = files(&t, body.as_bytes());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("h2load")
            .args(["-n", "4000", "-c", "4", "-m", "32", "-H", "content-type: application/lost+xml", "-d", &f.path("req.xml")])
            .arg(format!("https://127.0.0.1:{port}/lost"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, 0 errored"), "{text}");
    assert!(text.contains("status codes: 4000 2xx"), "{text}");
    assert!(text.contains("h2"), "{text}");
}
