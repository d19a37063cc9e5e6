//! The authority behind the HTTP shell: `POST /lost`, `POST /v1/provision`,
//! `GET /feed?since=N`, `GET /certs/{keyId}`, and the online import
//! (`POST /v1/import` starts one, `GET /v1/import` reports it; an
//! admin-role client certificate only).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use signpost_net::{Ctx, Failure, Metrics, Reply, Service};
use signpost_schemas::lost::SERVICE_MIMI;
use signpost_schemas::sp::{FEED_CONTENT_TYPE, FeedFrame, Provision};
use signpost_schemas::{Errors, Issue, Limits, ListServicesResponse, Name, Path, Request, Response};
use signpost_trust::Role;

use crate::core::{Authority, ProvisionError};
use crate::limits::Limiter;
use crate::store::{FeedPage, Store};

/// Media type of provisioning requests and results.
pub const PROVISION_CONTENT_TYPE: &str = "application/signpost+xml";

/// Where online imports are started and followed.
pub const IMPORT_PATH: &str = "/v1/import";
/// Media type of import requests and statuses (`key value` lines).
pub const IMPORT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Feed settings.
#[derive(Clone, Copy, Debug)]
pub struct FeedSettings {
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Events per store read.
    pub page: usize,
}

/// The authority's HTTP service.
pub struct AuthorityService<S: Store> {
    core: Arc<Authority<S>>,
    limiter: Limiter,
    feed: FeedSettings,
    cert_pem: Bytes,
    key_id: String,
    metrics: Arc<Metrics>,
    imports: Arc<crate::bulk::Jobs>,
}

impl<S: Store> std::fmt::Debug for AuthorityService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityService").field("id", &self.core.settings().id).finish()
    }
}

/// The client's id for limits (its certificate's id, else its address),
/// computed once per connection.
fn client_key(ctx: &Ctx) -> &str {
    &ctx.client
}

impl<S: Store> AuthorityService<S> {
    /// Wraps the core.
    pub fn new(core: Arc<Authority<S>>, limiter: Limiter, feed: FeedSettings, cert_pem: Bytes, key_id: String, metrics: Arc<Metrics>) -> Self {
        AuthorityService { core, limiter, feed, cert_pem, key_id, metrics, imports: Arc::default() }
    }

    fn errors(&self, status: u16, issue: Issue) -> Reply {
        Reply::full(status, signpost_schemas::lost::CONTENT_TYPE, Response::Errors(Errors::one(self.core.settings().id.clone(), issue)).encode())
    }

    async fn provision(&self, body: &[u8], ctx: &Ctx) -> Reply {
        let Some(peer) = &ctx.peer else {
            return self.errors(403, Issue::new(signpost_schemas::ErrorKind::Forbidden, "provisioning needs a client certificate from the deployment CA"));
        };
        let op = match Provision::decode(body, &Limits::MESSAGE) {
            Ok(op) => op,
            Err(e) => return self.errors(400, Issue::new(e.kind(), e.message())),
        };
        let label = op.label();
        let tag = match &op {
            Provision::PutEntry { csi, .. }
            | Provision::RemoveEntry { csi, .. }
            | Provision::Assign { csi, .. }
            | Provision::Release { csi }
            | Provision::Port { csi, .. }
            | Provision::OptOut { csi }
            | Provision::OptIn { csi } => signpost_net::csi_tag(csi.uri()),
            Provision::AssignRange { first, .. } | Provision::ReleaseRange { first, .. } => signpost_net::csi_tag(first.uri()),
            Provision::Delegate(_) | Provision::Undelegate(_) => String::new(),
        };
        let result = self.core.provision(peer, op).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ProvisionError::Forbidden(_)) => "forbidden",
            Err(ProvisionError::Conflict(_)) => "conflict",
            Err(ProvisionError::BadRequest(_)) => "bad_request",
            Err(ProvisionError::Internal(_)) => "internal",
        };
        self.metrics.counter(&format!("signpost_provision_total{{op=\"{label}\",outcome=\"{outcome}\"}}")).fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(r) => {
                tracing::info!(op = label, by = %peer.id(), csi = %tag, seq = r.seq, "provisioned");
                Reply::full(200, PROVISION_CONTENT_TYPE, r.encode())
            }
            Err(e) => {
                // The reason names the identifier: it goes to debug only.
                tracing::info!(op = label, by = %peer.id(), csi = %tag, outcome, "provisioning refused");
                tracing::debug!(op = label, by = %peer.id(), "provisioning refused: {e}");
                self.errors(e.status(), Issue::new(e.kind(), e.to_string()))
            }
        }
    }

    /// `POST /v1/import`: `file PATH` (absolute, read by this server) and
    /// optionally `region XX`, one per line. 202 with the new import's
    /// status; 409 with the running one's if one runs.
    fn import(&self, body: &[u8], ctx: &Ctx) -> Reply {
        let text = |status: u16, t: String| Reply::full(status, IMPORT_CONTENT_TYPE, t);
        let who = match &ctx.peer {
            Some(p) if p.role() == Role::Admin => p.clone(),
            _ => return text(403, "an import needs an admin-role client certificate\n".into()),
        };
        let Ok(body) = std::str::from_utf8(body) else { return text(400, "the import request is not UTF-8\n".into()) };
        let (mut file, mut region) = (None, None);
        for l in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match l.split_once(' ') {
                Some(("file", v)) => file = Some(std::path::PathBuf::from(v.trim())),
                Some(("region", v)) => match v.trim().parse::<signpost_schemas::Region>() {
                    Ok(r) => region = Some(r),
                    Err(e) => return text(400, format!("region {v:?}: {e}\n")),
                },
                _ => return text(400, format!("unknown line {l:?}: the request is `file /absolute/path` and optionally `region XX`\n")),
            }
        }
        let Some(file) = file else { return text(400, "the request names no file (`file /absolute/path`)\n".into()) };
        if !file.is_absolute() {
            return text(400, format!("{}: the path must be absolute (the server reads it)\n", file.display()));
        }
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return text(400, format!("{}: not a regular file\n", file.display())),
            Err(e) => return text(400, format!("{}: {e} (the server reads the file: it must be on the server's machine, readable by it)\n", file.display())),
        }
        match self.imports.start(self.core.clone(), file, region, who, self.metrics.clone()) {
            Ok(s) => text(202, s.encode()),
            Err(running) => text(409, running.encode()),
        }
    }

    /// `GET /v1/import`: the running or last import's status (404 if this
    /// server has run none).
    fn import_status(&self, ctx: &Ctx) -> Reply {
        if !ctx.peer.as_ref().is_some_and(|p| p.role() == Role::Admin) {
            return Reply::full(403, IMPORT_CONTENT_TYPE, "the import status needs an admin-role client certificate\n");
        }
        match self.imports.status() {
            Some(s) => Reply::full(200, IMPORT_CONTENT_TYPE, s.encode()),
            None => Reply::full(404, IMPORT_CONTENT_TYPE, "no import has run on this server\n"),
        }
    }

    fn feed(&self, query: &str, ctx: &Ctx) -> Reply {
        match &ctx.peer {
            Some(p) if matches!(p.role(), Role::Resolver | Role::Admin) => {}
            _ => return self.errors(403, Issue::new(signpost_schemas::ErrorKind::Forbidden, "the change feed is for resolvers (a resolver-role client certificate)")),
        }
        // Without `since`, a subscriber gets the changes from now on.
        let since = match query.split('&').find_map(|kv| kv.strip_prefix("since=")) {
            None => *self.core.head().borrow(),
            Some(v) => match v.parse::<u64>() {
                Ok(n) => n,
                Err(_) => return self.errors(400, Issue::new(signpost_schemas::ErrorKind::BadRequest, format!("since={v:?} is not a sequence number"))),
            },
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let core = self.core.clone();
        let settings = self.feed;
        let gauge = self.metrics.gauge("signpost_feed_subscribers");
        gauge.add(1);
        let who = ctx.peer.as_ref().map_or_else(String::new, |p| p.id().to_string());
        tracing::info!(subscriber = %who, since, "feed subscriber connected");
        tokio::spawn(async move {
            feed_task(core, since, settings, tx).await;
            gauge.add(-1);
            tracing::info!(subscriber = %who, "feed subscriber gone");
        });
        Reply { status: 200, content_type: FEED_CONTENT_TYPE, headers: vec![("cache-control", "no-store".into())], body: Bytes::new(), stream: Some(rx) }
    }
}

/// Streams frames from `since` on: pages of changes, a resync when `since`
/// is older than retention, heartbeats when idle. Ends when the client goes.
async fn feed_task<S: Store>(core: Arc<Authority<S>>, since: u64, s: FeedSettings, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let mut head = core.head();
    let mut cursor = since;
    let mut buf = String::with_capacity(4096);
    loop {
        let page = match core.store().changes_since(cursor, s.page).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("feed read failed: {e}");
                return;
            }
        };
        match page {
            FeedPage::Gone { oldest, head } => {
                buf.clear();
                FeedFrame::Resync { seq: head, reason: format!("since={cursor} is older than the retained history (oldest {oldest})") }.encode_into(&mut buf);
                if tx.send(Bytes::from(std::mem::take(&mut buf))).await.is_err() {
                    return;
                }
                cursor = head;
            }
            FeedPage::Changes(v) if !v.is_empty() => {
                buf.clear();
                for c in v {
                    cursor = c.seq;
                    FeedFrame::Change(c).encode_into(&mut buf);
                }
                if tx.send(Bytes::from(std::mem::take(&mut buf))).await.is_err() {
                    return;
                }
            }
            FeedPage::Changes(_) => {
                tokio::select! {
                    changed = head.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    _ = tokio::time::sleep(s.heartbeat) => {
                        let frame = FeedFrame::Heartbeat { seq: cursor, time: core.now() }.encode();
                        if tx.send(Bytes::from(frame)).await.is_err() {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        }
    }
}

impl<S: Store> Service for AuthorityService<S> {
    fn id(&self) -> Name {
        self.core.settings().id.clone()
    }

    async fn lost(&self, req: Request, ctx: &Ctx) -> Result<signpost_net::LostReply, Failure> {
        let key = client_key(ctx);
        let now = self.core.now();
        if let Err(secs) = self.limiter.query(key, now) {
            return Err(Failure::RateLimited { message: "query rate limit exceeded".into(), retry_after: secs });
        }
        let budget = |secs| Failure::RateLimited { message: "too many distinct unknown identifiers (enumeration budget)".into(), retry_after: secs };
        match req {
            Request::FindService(f) => {
                // The enumeration budget charges only identifiers this
                // client has not looked up before in the window: once it is
                // spent a scan stops, the client's known numbers still
                // resolve.
                let csi = f.csi_location().ok().map(|(_, c)| c.uri());
                if let Some(c) = csi
                    && let Err(secs) = self.limiter.lookup(key, c, now)
                {
                    return Err(budget(secs));
                }
                let r = self.core.answer_wire(&f).await;
                if let Some(c) = csi {
                    match &r {
                        Err(Failure::NotFound { .. }) => self.limiter.miss(key, c, now).map_err(budget)?,
                        Ok(signpost_net::LostReply::Response(Response::Found(_)) | signpost_net::LostReply::Encoded { .. }) => self.limiter.hit(key, c, now),
                        _ => {}
                    }
                }
                r
            }
            Request::ListServices(l) => {
                let id = &self.core.settings().id;
                if let Some(p) = &l.path
                    && p.contains(id)
                {
                    return Err(Failure::Loop(format!("{id} is already in the path")));
                }
                let services = signpost_schemas::failure::list_services(&l, id, &[SERVICE_MIMI])?;
                Ok(Response::Services(ListServicesResponse { services, warnings: vec![], path: Path::new(id.clone()) }).into())
            }
        }
    }

    async fn get(&self, path: &str, _headers: &signpost_net::hyper::HeaderMap, ctx: &Ctx) -> Option<Reply> {
        let (p, query) = path.split_once('?').unwrap_or((path, ""));
        if p == "/feed" {
            return Some(self.feed(query, ctx));
        }
        if p == IMPORT_PATH {
            return Some(self.import_status(ctx));
        }
        if let Some(k) = p.strip_prefix("/certs/") {
            return (k == self.key_id).then(|| Reply::full(200, "application/pem-certificate-chain", self.cert_pem.clone()));
        }
        None
    }

    async fn post(&self, path: &str, _headers: &signpost_net::hyper::HeaderMap, body: Bytes, ctx: &Ctx) -> Option<Reply> {
        match path {
            "/v1/provision" => Some(self.provision(&body, ctx).await),
            IMPORT_PATH => Some(self.import(&body, ctx)),
            _ => None,
        }
    }
}
