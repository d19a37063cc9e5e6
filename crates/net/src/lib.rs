//! # signpost-net — the HTTP shell every Signpost server and client shares
//!
//! - [`server`]: hyper 1 (HTTP/1.1 and HTTP/2) over rustls; `POST /lost`
//!   dispatch to a [`Service`]; method, content-type and body-size checks;
//!   handshake, header-read and body-read timeouts; connection hygiene (no
//!   first request within the header timeout, or idle past the idle
//!   timeout: closed; a per-address cap; idle connections yield near the
//!   cap); a connection cap; graceful drain.
//! - [`Failure`] and [`failure_errors`] (from `signpost-schemas`, re-exported):
//!   the one place where an internal error becomes a LoST `<errors>` answer;
//!   [`HttpFailure`] does the same for HTTP-level refusals.
//! - [`admin`]: `/healthz`, `/readyz` (a latch), `/metrics` (Prometheus text).
//! - [`observe`]: an opt-in, bounded record of what a server saw (as
//!   salted hashes), for privacy measurements; off unless given.
//! - [`client`]: a pooled HTTPS client (one HTTP/2 connection per endpoint
//!   and server id) with timeouts.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod docs;
pub mod exit;
pub mod h2;
pub mod limits;
pub mod client;
pub mod metrics;
pub mod observe;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use signpost_schemas::{ErrorKind, Name, Request, Response};
use signpost_trust::Peer;

pub use hyper;
pub use metrics::Metrics;
pub use server::{Http2, Limits, Server, TlsSwitch, bind, reload_on_hangup, run, run_with, shutdown_signal};

/// What a handler knows about the request's origin.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The client's validated certificate, if it presented one.
    pub peer: Option<Peer>,
    /// The client's address.
    pub remote: SocketAddr,
    /// Who the client is, for limits and records: its certificate's id,
    /// else its IP address (computed once per connection).
    pub client: std::sync::Arc<str>,
}

impl Ctx {
    /// The context of a connection from `remote`, with `peer` if its
    /// certificate validated.
    pub fn new(peer: Option<Peer>, remote: SocketAddr) -> Ctx {
        let client: std::sync::Arc<str> = match &peer {
            Some(p) => p.id().to_string().into(),
            None => remote.ip().to_string().into(),
        };
        Ctx { peer, remote, client }
    }
}

/// A non-LoST HTTP answer (e.g. `GET /root-table`, the change feed).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (when `stream` is `None`).
    pub body: Bytes,
    /// A streamed body: each chunk is sent as it arrives; the response
    /// ends when the sender is dropped.
    pub stream: Option<tokio::sync::mpsc::Receiver<Bytes>>,
}

impl Reply {
    /// A complete body.
    pub fn full(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply { status, content_type, headers: Vec::new(), body: body.into(), stream: None }
    }
}

/// A LoST answer: a message to encode, or bytes already encoded (a
/// resolver's cache hit serves the stored document as it is).
#[derive(Debug)]
pub enum LostReply {
    /// Encode this.
    Response(Response),
    /// Send these bytes (a complete `application/lost+xml` document).
    Encoded {
        /// The document.
        body: Bytes,
        /// Its outcome label (one of `metrics::OUTCOMES`).
        outcome: &'static str,
    },
}

impl From<Response> for LostReply {
    fn from(r: Response) -> Self {
        LostReply::Response(r)
    }
}

/// A server role plugged into the shell.
pub trait Service: Send + Sync + 'static {
    /// The server's id: the `source` of its errors.
    fn id(&self) -> Name;
    /// Answers a decoded LoST request.
    fn lost(&self, req: Request, ctx: &Ctx) -> impl Future<Output = Result<LostReply, Failure>> + Send;
    /// Answers `GET path` (with its query); `None` is a 404.
    fn get(&self, path: &str, headers: &hyper::HeaderMap, ctx: &Ctx) -> impl Future<Output = Option<Reply>> + Send;
    /// Answers `POST path` for paths other than `/lost`; `None` is a 404.
    fn post(&self, path: &str, headers: &hyper::HeaderMap, body: Bytes, ctx: &Ctx) -> impl Future<Output = Option<Reply>> + Send {
        let _ = (path, headers, body, ctx);
        async { None }
    }
}

pub use signpost_schemas::failure::{Failure, failure_errors};

/// HTTP-level refusals, answered with a status and a LoST body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpFailure {
    /// Not POST on /lost.
    MethodNotAllowed,
    /// Not `application/lost+xml`.
    UnsupportedMediaType,
    /// Body over the limit.
    PayloadTooLarge,
    /// No such path.
    NotFound,
    /// The request body did not arrive within the request timeout (a
    /// slow or stalled sender).
    RequestTimeout,
    /// Rate limited on a non-LoST path (provisioning, feed): 429 with
    /// Retry-After and a `forbidden` body. A rate-limited `POST /lost` is
    /// answered 200 instead (see `schemas/README.md`, "HTTP binding").
    TooManyRequests {
        /// Seconds.
        retry_after: u32,
    },
}

impl HttpFailure {
    /// Status, LoST error kind, message, and a fixed label.
    pub fn parts(self) -> (u16, ErrorKind, &'static str, &'static str) {
        match self {
            HttpFailure::MethodNotAllowed => (405, ErrorKind::BadRequest, "LoST requests are POSTed to /lost", "http_405"),
            HttpFailure::UnsupportedMediaType => {
                (415, ErrorKind::BadRequest, "the body must be application/lost+xml", "http_415")
            }
            HttpFailure::PayloadTooLarge => (413, ErrorKind::BadRequest, "the body is larger than the limit", "http_413"),
            HttpFailure::NotFound => (404, ErrorKind::BadRequest, "no such resource", "http_404"),
            HttpFailure::RequestTimeout => (408, ErrorKind::BadRequest, "the request body did not arrive in time", "http_408"),
            HttpFailure::TooManyRequests { .. } => (429, ErrorKind::Forbidden, "rate limit exceeded", "http_429"),
        }
    }
}

/// How a CSI appears in logs at the default level (the house rule: logs at
/// info and above never show a raw identifier): a short
/// hash, salted per process so it cannot be looked up in a table of all
/// numbers, yet stable within a run so one identifier's lines can be
/// followed. The raw identifier only goes to debug-level logs.
pub fn csi_tag(csi: &str) -> String {
    static SALT: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut b = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        b
    });
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt);
    ctx.update(csi.as_bytes());
    let d = ctx.finish();
    let mut s = String::with_capacity(16);
    for b in d.as_ref().iter().take(8) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A label for a LoST response's outcome (metrics).
pub fn outcome(r: &Response) -> &'static str {
    match r {
        Response::Found(_) => "found",
        Response::Redirect(_) => "redirect",
        Response::Services(_) => "services",
        Response::Errors(e) => e.kind().map_or("errors", ErrorKind::element),
    }
}
