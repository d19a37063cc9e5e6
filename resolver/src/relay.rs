//! The Oblivious HTTP relay (RFC 9458 §6.2): `signpost-resolver relay`.
//!
//! APs connect with their client certificates (mTLS) and `POST /relay`
//! encapsulated requests (`message/ohttp-req`); the relay applies per-AP
//! limits and forwards the bytes, unopened, to the gateway over its own
//! mTLS connection, so the gateway sees the relay's identity and never the
//! AP's. It cannot read the requests (it holds no gateway key) and keeps no
//! more than who sent how many bytes when. `GET /relay/keys` hands out the
//! gateway's key configuration, so an AP needs no connection of its own to
//! the resolver.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::Deserialize;
use signpost_net::client::Client;
use signpost_net::config::{ConfigError, LimitsConfig, Listen, Log, Tls};
use signpost_net::limits::Limiter;
use signpost_net::{Ctx, Failure, LostReply, Reply, Service};
use signpost_schemas::lost::Endpoint;
use signpost_schemas::{Clock, Name, Request, SystemClock};

use crate::ohttp;

/// The relay resource.
pub const RELAY_PATH: &str = "/relay";
/// The gateway's key configuration, fetched through the relay.
pub const KEYS_PATH: &str = "/relay/keys";

/// The relay's configuration: strict TOML, every key documented in
/// `resolver/relay.sample.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The relay's id (its certificate's id).
    pub id: String,
    /// Listeners.
    pub listen: Listen,
    /// TLS material: the relay's own certificate (towards APs, and as the
    /// client certificate towards the gateway).
    pub tls: Tls,
    /// The gateway.
    pub gateway: GatewayRef,
    /// Per-AP limits.
    #[serde(default)]
    pub rate: crate::config::Rate,
    /// Server bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: Log,
}

/// Where encapsulated requests go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRef {
    /// The gateway resource, `https://…/.well-known/ohttp-gateway`.
    pub url: String,
    /// The gateway's id (the resolver's certificate name).
    pub id: String,
    /// Time for the gateway's answer, ms.
    #[serde(default = "gateway_timeout")]
    pub timeout_ms: u64,
}

fn gateway_timeout() -> u64 {
    5000
}

impl RelayConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<(RelayConfig, PathBuf), ConfigError> {
        signpost_net::config::load_toml(path, RelayConfig::check)
    }

    fn check(&self) -> Result<(), String> {
        Name::parse(&self.id).map_err(|e| format!("id: {e}"))?;
        Name::parse(&self.gateway.id).map_err(|e| format!("gateway.id: {e}"))?;
        let ep = Endpoint::parse(&self.gateway.url).map_err(|e| format!("gateway.url: {e}"))?;
        if !ep.is_https() {
            return Err(format!("gateway.url = {:?}: the relay speaks to the gateway over TLS only (https://)", self.gateway.url));
        }
        if self.gateway.timeout_ms == 0 {
            return Err("gateway.timeout_ms must be positive".into());
        }
        if self.tls.client_auth != "required" {
            return Err(format!("tls.client_auth = {:?}: a relay needs client certificates from APs (\"required\"), since its limits are per AP", self.tls.client_auth));
        }
        self.rate.check()?;
        self.log.check()?;
        self.limits.check()
    }
}

/// What the relay keeps of one forwarded request: who, how big, the
/// gateway's status. Never the content (it cannot read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRecord {
    /// The AP's certificate id.
    pub ap: String,
    /// Encapsulated request bytes.
    pub request_bytes: usize,
    /// Encapsulated response bytes.
    pub response_bytes: usize,
    /// The gateway's HTTP status (0: not reached).
    pub status: u16,
}

/// Records kept at most (the most recent).
const RECORDS_KEPT: usize = 1024;

/// Outcomes of `POST /relay`: `forwarded` (the gateway answered 200),
/// `gateway_refused` (its 4xx problem, passed on: a stale key, a replay),
/// `gateway_unreachable`, `gateway_garbled` (an answer that is neither),
/// `rate_limited` (the AP's limit), `no_client_cert`,
/// `unsupported_media_type`.
pub const RELAY_OUTCOMES: [&str; 7] = ["forwarded", "gateway_refused", "gateway_unreachable", "gateway_garbled", "rate_limited", "no_client_cert", "unsupported_media_type"];
/// Outcomes of `GET /relay/keys`: `ok`, `gateway_failed` (the gateway
/// answered another status or could not be reached), `rate_limited`,
/// `no_client_cert`.
pub const KEY_FETCH_OUTCOMES: [&str; 4] = ["ok", "gateway_failed", "rate_limited", "no_client_cert"];

/// The relay's HTTP service.
#[derive(Debug)]
pub struct RelayService {
    id: Name,
    client: Client,
    gateway: Endpoint,
    gateway_id: Name,
    limiter: Limiter,
    records: Mutex<VecDeque<RelayRecord>>,
    requests: ohttp::Outcomes,
    key_fetches: ohttp::Outcomes,
}

impl RelayService {
    /// A relay forwarding to `gateway` (server id `gateway_id`) with
    /// `client` (which presents the relay's certificate).
    pub fn new(id: Name, client: Client, gateway: Endpoint, gateway_id: Name, limiter: Limiter) -> RelayService {
        RelayService {
            id,
            client,
            gateway,
            gateway_id,
            limiter,
            records: Mutex::new(VecDeque::new()),
            requests: ohttp::Outcomes::new("signpost_ohttp_relay_requests_total", &RELAY_OUTCOMES),
            key_fetches: ohttp::Outcomes::new("signpost_ohttp_relay_key_fetches_total", &KEY_FETCH_OUTCOMES),
        }
    }

    /// Counts its requests in `m`: `signpost_ohttp_relay_requests_total`
    /// ([`RELAY_OUTCOMES`]) and `signpost_ohttp_relay_key_fetches_total`
    /// ([`KEY_FETCH_OUTCOMES`]), by outcome.
    pub fn register(&self, m: &signpost_net::Metrics) {
        self.requests.register(m, "Encapsulated requests relayed, by outcome: forwarded, gateway_refused (the gateway's 4xx problem, passed on), gateway_unreachable, gateway_garbled, rate_limited (per AP), no_client_cert, unsupported_media_type.");
        self.key_fetches.register(m, "Key configurations fetched through the relay, by outcome: ok, gateway_failed, rate_limited, no_client_cert.");
    }

    /// The most recent forwarding records (oldest first).
    pub fn records(&self) -> Vec<RelayRecord> {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    fn record(&self, r: RelayRecord) {
        tracing::debug!(ap = %r.ap, request_bytes = r.request_bytes, response_bytes = r.response_bytes, status = r.status, "relayed");
        let mut q = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= RECORDS_KEPT {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// The AP's identity, or the refusal.
    /// The AP's identity, or the refusal and its outcome label.
    fn admit(&self, ctx: &Ctx) -> Result<String, (&'static str, Reply)> {
        let Some(p) = &ctx.peer else {
            return Err(("no_client_cert", Reply::full(403, "text/plain; charset=utf-8", "the relay needs a client certificate from the deployment CA\n")));
        };
        let ap = p.id().to_string();
        if let Err(secs) = self.limiter.query(&ap, SystemClock.now()) {
            let mut r = Reply::full(429, "text/plain; charset=utf-8", "per-AP rate limit exceeded\n");
            r.headers.push(("retry-after", secs.to_string()));
            return Err(("rate_limited", r));
        }
        Ok(ap)
    }

    async fn forward(&self, ap: String, headers: &signpost_net::hyper::HeaderMap, body: Bytes) -> Reply {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(|v| v.trim().to_ascii_lowercase());
        if ct.as_deref() != Some(ohttp::REQUEST_CONTENT_TYPE) {
            self.requests.count("unsupported_media_type");
            return Reply::full(415, "text/plain; charset=utf-8", format!("the relay forwards {} only\n", ohttp::REQUEST_CONTENT_TYPE));
        }
        let n = body.len();
        // Nothing of the AP's request but its body goes on: no headers, no
        // address, no certificate.
        match self.client.raw(&self.gateway, &self.gateway_id, signpost_net::hyper::Method::POST, ohttp::REQUEST_CONTENT_TYPE, body).await {
            Ok(a) => {
                let ct = a.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
                self.record(RelayRecord { ap, request_bytes: n, response_bytes: a.body.len(), status: a.status });
                // The gateway's answer as it is: an encapsulated response,
                // or its problem (a stale key, a replay) for the AP to act on.
                let ct = if ct.starts_with(ohttp::RESPONSE_CONTENT_TYPE) {
                    ohttp::RESPONSE_CONTENT_TYPE
                } else if ct.starts_with("application/problem+json") {
                    "application/problem+json"
                } else {
                    self.requests.count("gateway_garbled");
                    return Reply::full(502, "text/plain; charset=utf-8", format!("the gateway answered HTTP {} with {ct:?}\n", a.status));
                };
                self.requests.count(if a.status == 200 && ct == ohttp::RESPONSE_CONTENT_TYPE { "forwarded" } else { "gateway_refused" });
                Reply::full(a.status, ct, a.body)
            }
            Err(e) => {
                tracing::info!(reason = e.label(), "the gateway cannot be reached: {e}");
                self.record(RelayRecord { ap, request_bytes: n, response_bytes: 0, status: 0 });
                self.requests.count("gateway_unreachable");
                Reply::full(502, "text/plain; charset=utf-8", format!("the gateway cannot be reached: {e}\n"))
            }
        }
    }
}

impl Service for RelayService {
    fn id(&self) -> Name {
        self.id.clone()
    }

    async fn lost(&self, _req: Request, _ctx: &Ctx) -> Result<LostReply, Failure> {
        Err(Failure::ServiceNotImplemented(format!("this is an Oblivious HTTP relay: POST {} with {} (see --relay in `signpost-resolver lookup`)", RELAY_PATH, ohttp::REQUEST_CONTENT_TYPE)))
    }

    async fn get(&self, path: &str, _headers: &signpost_net::hyper::HeaderMap, ctx: &Ctx) -> Option<Reply> {
        (path == KEYS_PATH).then_some(())?;
        if let Err((label, r)) = self.admit(ctx) {
            self.key_fetches.count(label);
            return Some(r);
        }
        let accept = [("accept", ohttp::KEYS_CONTENT_TYPE.to_owned())];
        let (label, reply) = match self.client.get(&self.gateway, &self.gateway_id, ohttp::GATEWAY_PATH, &accept).await {
            Ok(a) if a.status == 200 => ("ok", Reply::full(200, ohttp::KEYS_CONTENT_TYPE, a.body)),
            Ok(a) => ("gateway_failed", Reply::full(502, "text/plain; charset=utf-8", format!("the gateway's key configuration: HTTP {}\n", a.status))),
            Err(e) => ("gateway_failed", Reply::full(502, "text/plain; charset=utf-8", format!("the gateway cannot be reached: {e}\n"))),
        };
        self.key_fetches.count(label);
        Some(reply)
    }

    async fn post(&self, path: &str, headers: &signpost_net::hyper::HeaderMap, body: Bytes, ctx: &Ctx) -> Option<Reply> {
        (path == RELAY_PATH).then_some(())?;
        Some(match self.admit(ctx) {
            Ok(ap) => self.forward(ap, headers, body).await,
            Err((label, r)) => {
                self.requests.count(label);
                r
            }
        })
    }
}

/// Builds the relay from its config: the service and what the shell needs.
pub fn build(cfg: &RelayConfig, base: &Path) -> Result<(Arc<RelayService>, signpost_net::config::LoadedTls), String> {
    let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
    let tls = cfg.tls.load(base, &id, SystemClock.now())?;
    let identity = signpost_trust::tls::Identity::from_pem(&tls.cert_pem, &tls.key_pem).map_err(|e| e.to_string())?;
    let client_tls = signpost_trust::tls::client_config(&tls.anchor, Some(&identity)).map_err(|e| e.to_string())?;
    let client = Client::new(Arc::new(client_tls), std::time::Duration::from_millis(cfg.gateway.timeout_ms));
    let gateway = Endpoint::parse(&cfg.gateway.url).map_err(|e| e.to_string())?;
    let gateway_id = Name::parse(&cfg.gateway.id).map_err(|e| e.to_string())?;
    let limiter = Limiter::new(signpost_net::limits::LimitSettings { rate: cfg.rate.queries_per_s, burst: cfg.rate.burst, miss_budget: usize::MAX, miss_window: 3600 });
    Ok((Arc::new(RelayService::new(id, client, gateway, gateway_id, limiter)), tls))
}
