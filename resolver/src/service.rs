//! The resolver behind the HTTP shell: `POST /lost` for its clients (APs),
//! with per-client limits; and, when configured, the Oblivious HTTP
//! gateway for the same endpoint (`GET`/`POST /.well-known/ohttp-gateway`,
//! RFC 9540 and RFC 9458).

use std::sync::Arc;

use bytes::Bytes;

use signpost_net::limits::Limiter;
use signpost_net::{Ctx, Failure, LostReply, Reply, Service};
use signpost_schemas::lost::SERVICE_MIMI;
use signpost_schemas::{ListServicesResponse, Name, Path, Request, Response};

use crate::bulk::{self, NewIdentifierBudget};
use crate::ohttp::{self, Gateway, OhttpError};
use crate::resolver::Resolver;

/// The resolver's HTTP service.
#[derive(Debug)]
pub struct ResolverService {
    r: Arc<Resolver>,
    limiter: Limiter,
    gateway: Option<Arc<Gateway>>,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
    bulk_max: usize,
    budget: NewIdentifierBudget,
    observer: Option<Arc<signpost_net::observe::Observer>>,
}

/// Queries of one bulk resolved at once.
const BULK_CONCURRENCY: usize = 64;

/// Client identities remembered at most by [`ResolverService::clients_seen`].
const SEEN_KEPT: usize = 4096;

impl ResolverService {
    /// Wraps a resolver.
    pub fn new(r: Arc<Resolver>, limiter: Limiter) -> ResolverService {
        let d = crate::config::Bulk::default();
        ResolverService {
            r,
            limiter,
            gateway: None,
            seen: std::sync::Mutex::new(std::collections::HashSet::new()),
            bulk_max: d.max_queries,
            budget: NewIdentifierBudget::new(d.new_identifiers_per_window, d.window_s),
            observer: None,
        }
    }

    /// Records what every LoST request it answers (direct, bulk, or opened
    /// by the gateway) names and who sent it, as salted hashes (the
    /// testbed's privacy measurement; the binary never sets one).
    pub fn with_observer(mut self, o: Arc<signpost_net::observe::Observer>) -> ResolverService {
        self.observer = Some(o);
        self
    }

    /// The client identities (certificate ids, or addresses without one)
    /// this service has answered LoST requests from, directly or through
    /// the gateway (at most 4096): what the resolver learns about who asks.
    pub fn clients_seen(&self) -> Vec<String> {
        let mut v: Vec<String> = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        v.sort();
        v
    }

    /// Bulk lookups: at most `max_queries` per request, and at most
    /// `new_per_window` identifiers a client has not asked about before in
    /// `window_s` (defaults: [`crate::config::Bulk`]).
    pub fn with_bulk(mut self, max_queries: usize, new_per_window: usize, window_s: u64) -> ResolverService {
        self.bulk_max = max_queries;
        self.budget = NewIdentifierBudget::new(new_per_window, window_s);
        self
    }

    fn client_key(ctx: &Ctx) -> &str {
        &ctx.client
    }

    fn remember(&self, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() < SEEN_KEPT && !seen.contains(key) {
            seen.insert(key.to_owned());
        }
    }

    /// `POST /lost/bulk`: status, content type, body. One LoST answer per
    /// query, in order, in an `sp:bulkFindServiceResponse`; a refusal of
    /// the whole bulk is one LoST `<errors>` document (400 malformed, 413
    /// too many queries, 200 `<forbidden>` over the rate or the budget of
    /// new identifiers, as `POST /lost` answers a rate limit).
    async fn bulk_bytes(&self, body: &[u8], ctx: &Ctx) -> (u16, &'static str, Bytes) {
        use signpost_schemas::lost::CONTENT_TYPE as LOST_CT;
        use signpost_schemas::{ErrorKind, Errors, Issue};
        let err = |status: u16, f: Failure| (status, LOST_CT, Bytes::from(Response::Errors(signpost_net::failure_errors(self.id(), f)).encode()));
        let bad = |status: u16, msg: String| (status, LOST_CT, Bytes::from(Response::Errors(Errors::one(self.id(), Issue::new(ErrorKind::BadRequest, msg))).encode()));
        let key = Self::client_key(ctx);
        self.remember(key);
        let now = signpost_schemas::Clock::now(&signpost_schemas::SystemClock);
        if let Err(secs) = self.limiter.query(key, now) {
            return err(200, Failure::RateLimited { message: "query rate limit exceeded".into(), retry_after: secs });
        }
        let docs = match bulk::split(body, bulk::REQUEST_ROOT, self.bulk_max) {
            Ok(d) if d.is_empty() => return bad(400, bulk::BulkError::Empty.to_string()),
            Ok(d) => d,
            Err(e @ bulk::BulkError::TooMany { .. }) => return bad(413, e.to_string()),
            Err(e) => return bad(400, e.to_string()),
        };
        // Each query decoded; an undecodable one is answered in its place.
        let queries: Vec<Result<signpost_schemas::FindService, Box<Response>>> = docs
            .iter()
            .map(|d| match Request::decode(d, &signpost_schemas::Limits::MESSAGE) {
                Ok(Request::FindService(f)) => Ok(f),
                Ok(Request::ListServices(_)) => Err(Box::new(Response::Errors(Errors::one(self.id(), Issue::new(ErrorKind::BadRequest, "a bulk request holds findService queries only"))))),
                Err(e) => Err(Box::new(Response::Errors(signpost_net::failure_errors(self.id(), Failure::Decode(e))))),
            })
            .collect();
        let ids: Vec<String> = queries.iter().filter_map(|q| q.as_ref().ok()).filter_map(|f| f.csi_location().ok().map(|(_, c)| c.uri().to_owned())).collect();
        if let Some(o) = &self.observer {
            let sender = queries.iter().filter_map(|q| q.as_ref().ok()).find_map(|f| f.context.as_ref().and_then(|c| c.sender_provider.as_ref()));
            o.see(ctx.peer.as_ref().map(|p| p.id().as_str()), Some(ctx.remote.ip()), ids.iter().map(String::as_str), sender.map(Name::as_str));
        }
        match self.budget.charge(key, ids.iter().map(String::as_str), now) {
            Ok(fresh) => tracing::debug!(client = %key, queries = docs.len(), new_identifiers = fresh, "bulk lookup"),
            Err(secs) => {
                return err(200, Failure::RateLimited { message: format!("bulk: budget of new identifiers spent for this window ({} of them in this request were not asked about before)", ids.len()), retry_after: secs });
            }
        }
        let mut answers: Vec<Bytes> = Vec::with_capacity(queries.len());
        let mut it = queries.into_iter().peekable();
        while it.peek().is_some() {
            let mut set = tokio::task::JoinSet::new();
            let mut slots: Vec<Option<Bytes>> = Vec::new();
            for (i, q) in it.by_ref().take(BULK_CONCURRENCY).enumerate() {
                match q {
                    Ok(f) => {
                        slots.push(None);
                        let r = self.r.clone();
                        set.spawn(async move { (i, r.resolve(f).await) });
                    }
                    Err(resp) => slots.push(Some(Bytes::from(resp.encode()))),
                }
            }
            while let Some(j) = set.join_next().await {
                let (i, res) = match j {
                    Ok(x) => x,
                    Err(e) => return err(500, Failure::Internal(format!("bulk: a query task failed: {e}"))),
                };
                let b = match res {
                    Ok(LostReply::Encoded { body, .. }) => body,
                    Ok(LostReply::Response(r)) => Bytes::from(r.encode()),
                    Err(f) => Bytes::from(Response::Errors(signpost_net::failure_errors(self.id(), f)).encode()),
                };
                if let Some(s) = slots.get_mut(i) {
                    *s = Some(b);
                }
            }
            answers.extend(slots.into_iter().map(Option::unwrap_or_default));
        }
        (200, bulk::CONTENT_TYPE, Bytes::from(bulk::wrap(bulk::RESPONSE_ROOT, answers.iter().map(|b| b.as_ref()))))
    }

    /// Also serves as the Oblivious HTTP gateway for its LoST endpoint.
    pub fn with_gateway(mut self, g: Arc<Gateway>) -> ResolverService {
        self.gateway = Some(g);
        self
    }

    /// One LoST request as `POST /lost` would answer it: status, content
    /// type, body (the shell's mapping: a LoST error, rate limiting
    /// included, is a 200 with an `<errors>` body).
    async fn lost_bytes(&self, body: &[u8], ctx: &Ctx) -> (u16, &'static str, Bytes) {
        use signpost_schemas::lost::CONTENT_TYPE as LOST_CT;
        let result = match Request::decode(body, &signpost_schemas::Limits::MESSAGE) {
            Err(e) => Err(Failure::Decode(e)),
            Ok(r) => self.lost(r, ctx).await,
        };
        let bytes = match result {
            Ok(LostReply::Encoded { body, .. }) => body,
            Ok(LostReply::Response(r)) => Bytes::from(r.encode()),
            Err(f) => Bytes::from(Response::Errors(signpost_net::failure_errors(self.id(), f)).encode()),
        };
        (200, LOST_CT, bytes)
    }

    /// `POST /.well-known/ohttp-gateway`: open, answer the inner LoST POST,
    /// seal. Failures before the request is opened are a 400 with an
    /// RFC 9457 problem (an unknown or rotated-out key id has RFC 9458
    /// §5.3's `ohttp-key` type); failures of the inner request are
    /// answered inside the encapsulation.
    async fn gateway(&self, g: &Gateway, headers: &signpost_net::hyper::HeaderMap, body: &[u8], ctx: &Ctx) -> Reply {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(|v| v.trim().to_ascii_lowercase());
        if ct.as_deref() != Some(ohttp::REQUEST_CONTENT_TYPE) {
            g.count("unsupported_media_type");
            return Reply::full(415, "text/plain; charset=utf-8", format!("the gateway takes {}\n", ohttp::REQUEST_CONTENT_TYPE));
        }
        let now = signpost_schemas::Clock::now(&signpost_schemas::SystemClock).as_secs();
        let (inner, opened) = match g.open(body, now) {
            Ok(x) => x,
            Err(e) => {
                g.count(e.label());
                return problem(&e);
            }
        };
        let (status, ct, out) = match ohttp::decode_request(&inner) {
            Err(e) => (400, "text/plain; charset=utf-8", Bytes::from(format!("{e}\n"))),
            // The signing certificates, so a client verifies its answer
            // by the same route.
            Ok(r) if r.method == "GET" && r.path.starts_with("/certs/") => match self.get(&r.path, headers, ctx).await {
                Some(rep) => (rep.status, rep.content_type, rep.body),
                None => (404, "text/plain; charset=utf-8", Bytes::from_static(b"no such certificate\n")),
            },
            Ok(r) if r.method == "POST" && r.path == bulk::BULK_PATH && r.content_type == bulk::CONTENT_TYPE => self.bulk_bytes(&r.body, ctx).await,
            Ok(r) if r.method != "POST" => (405, "text/plain; charset=utf-8", Bytes::from_static(b"the gateway answers POST /lost, POST /lost/bulk and GET /certs/{keyId}\n")),
            Ok(r) if r.path != "/lost" => (404, "text/plain; charset=utf-8", Bytes::from_static(b"the gateway answers POST /lost, POST /lost/bulk and GET /certs/{keyId}\n")),
            Ok(r) if r.content_type != signpost_schemas::lost::CONTENT_TYPE => {
                (415, "text/plain; charset=utf-8", Bytes::from_static(b"the inner body must be application/lost+xml\n"))
            }
            Ok(r) => self.lost_bytes(&r.body, ctx).await,
        };
        match ohttp::encode_response(status, ct, &out).and_then(|b| opened.seal(&b)) {
            Ok(sealed) => {
                g.count("ok");
                Reply::full(200, ohttp::RESPONSE_CONTENT_TYPE, sealed)
            }
            Err(e) => {
                g.count(e.label());
                problem(&e)
            }
        }
    }
}

/// A 400 `application/problem+json` answer to an encapsulated request
/// that cannot be opened.
fn problem(e: &OhttpError) -> Reply {
    tracing::debug!(reason = e.label(), "OHTTP request refused: {e}");
    Reply::full(400, "application/problem+json", e.problem_json())
}

impl Service for ResolverService {
    fn id(&self) -> Name {
        self.r.settings().id.clone()
    }

    async fn lost(&self, req: Request, ctx: &Ctx) -> Result<LostReply, Failure> {
        if let Some(o) = &self.observer {
            o.see_request(ctx, Some(&req));
        }
        let key = Self::client_key(ctx);
        self.remember(key);
        if let Err(secs) = self.limiter.query(key, signpost_schemas::Clock::now(&signpost_schemas::SystemClock)) {
            return Err(Failure::RateLimited { message: "query rate limit exceeded".into(), retry_after: secs });
        }
        match req {
            Request::FindService(f) => self.r.resolve(f).await,
            Request::ListServices(l) => {
                let id = self.r.settings().id.clone();
                if l.path.as_ref().is_some_and(|p| p.contains(&id)) {
                    return Err(Failure::Loop(format!("{id} is already in the path")));
                }
                // RFC 5222 §10: the sub-services of the service asked about.
                let services = signpost_schemas::failure::list_services(&l, &id, &[SERVICE_MIMI])?;
                Ok(Response::Services(ListServicesResponse { services, warnings: vec![], path: Path::new(id) }).into())
            }
        }
    }

    /// `POST /v1/control` (admin-role client certificate only): a one-line
    /// text command, answered in text. `stats` and `dump [N]` read the
    /// state; `flush all | negatives | IDENTIFIER | +PREFIX | DOMAIN` drops
    /// cached answers (and referrals under a prefix or domain).
    async fn post(&self, path: &str, headers: &signpost_net::hyper::HeaderMap, body: bytes::Bytes, ctx: &Ctx) -> Option<Reply> {
        if path == ohttp::GATEWAY_PATH {
            let g = self.gateway.as_ref()?;
            return Some(self.gateway(g, headers, &body, ctx).await);
        }
        if path == bulk::BULK_PATH {
            let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(|v| v.trim().to_ascii_lowercase());
            if ct.as_deref() != Some(bulk::CONTENT_TYPE) {
                return Some(Reply::full(415, "text/plain; charset=utf-8", format!("a bulk request is {} (an sp:bulkFindService document)\n", bulk::CONTENT_TYPE)));
            }
            let (status, ct, out) = self.bulk_bytes(&body, ctx).await;
            return Some(Reply::full(status, ct, out));
        }
        (path == "/v1/control").then_some(())?;
        let who = match &ctx.peer {
            Some(p) if p.role() == signpost_trust::Role::Admin => p.id().to_string(),
            _ => return Some(Reply::full(403, "text/plain; charset=utf-8", "the control plane needs an admin-role client certificate\n")),
        };
        let text = String::from_utf8_lossy(&body);
        let mut words = text.split_whitespace();
        let cmd = words.next().unwrap_or("");
        tracing::info!(by = %who, command = cmd, "control command");
        let (status, out) = match cmd {
            "stats" => (200, self.r.control_stats()),
            "dump" => match words.next().map(str::parse::<usize>).transpose() {
                Ok(n) => (200, self.r.control_dump(n.unwrap_or(1000))),
                Err(_) => (400, "dump [N]: N is a count\n".to_owned()),
            },
            "flush" => match words.next().map(flush_target) {
                Some(Ok(what)) => {
                    let n = self.r.flush(&what);
                    (200, format!("flushed {n} answers\n"))
                }
                Some(Err(e)) => (400, format!("{e}\n")),
                None => (400, "flush all | negatives | IDENTIFIER | +PREFIX | DOMAIN\n".to_owned()),
            },
            _ => (400, "commands: stats | dump [N] | flush all|negatives|IDENTIFIER|+PREFIX|DOMAIN\n".to_owned()),
        };
        Some(Reply::full(status, "text/plain; charset=utf-8", out))
    }

    async fn get(&self, path: &str, _headers: &signpost_net::hyper::HeaderMap, _ctx: &Ctx) -> Option<Reply> {
        if path == ohttp::GATEWAY_PATH {
            // RFC 9540 §4: the key configuration at the gateway's location.
            let g = self.gateway.as_ref()?;
            let mut r = Reply::full(200, ohttp::KEYS_CONTENT_TYPE, g.key_configs());
            r.headers.push(("cache-control", "max-age=3600".into()));
            return Some(r);
        }
        let k = path.strip_prefix("/certs/")?;
        self.r.cert_pem(k).map(|pem| Reply::full(200, "application/pem-certificate-chain", pem))
    }
}

/// What `flush ARG` names: `all`, `negatives`, an identifier (`tel:`,
/// `mailto:`, `mui:`, `+49…` with 7+ digits is a number only with `tel:`), a prefix
/// (`+49`), or a domain (with its subdomains).
fn flush_target(arg: &str) -> Result<signpost_resolver_core::Flush, String> {
    use signpost_resolver_core::Flush;
    use signpost_schemas::{Cover, Csi, Domain, E164Prefix};
    match arg {
        "all" | "everything" => Ok(Flush::All),
        "negatives" => Ok(Flush::Negatives),
        a if a.starts_with("tel:") || a.starts_with("mailto:") || a.starts_with("mui:") || a.contains('@') => Csi::parse(a, None).map(Flush::Identifier).map_err(|e| format!("{a:?}: {e}")),
        a if a.starts_with('+') => E164Prefix::parse(a).map(|p| Flush::Cover(Cover::Prefix(p))).map_err(|e| format!("{a:?}: {e}")),
        a => Domain::parse(a).map(|d| Flush::Cover(Cover::Domain { domain: d, include_subdomains: true })).map_err(|e| format!("{a:?}: {e}")),
    }
}
