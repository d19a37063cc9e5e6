//! The resolver behind the HTTP shell: `POST /lost` for its clients (APs),
//! with per-client limits.

use std::sync::Arc;

use signpost_net::limits::Limiter;
use signpost_net::{Ctx, Failure, LostReply, Reply, Service};
use signpost_schemas::lost::SERVICE_MIMI;
use signpost_schemas::{ListServicesResponse, Name, Path, Request, Response};

use crate::resolver::Resolver;

/// The resolver's HTTP service.
#[derive(Debug)]
pub struct ResolverService {
    r: Arc<Resolver>,
    limiter: Limiter,
}

impl ResolverService {
    /// Wraps a resolver.
    pub fn new(r: Arc<Resolver>, limiter: Limiter) -> ResolverService {
        ResolverService { r, limiter }
    }
}

impl Service for ResolverService {
    fn id(&self) -> Name {
        self.r.settings().id.clone()
    }

    async fn lost(&self, req: Request, ctx: &Ctx) -> Result<LostReply, Failure> {
        let key = match &ctx.peer {
            Some(p) => p.id().to_string(),
            None => ctx.remote.ip().to_string(),
        };
        if let Err(secs) = self.limiter.query(&key, signpost_schemas::Clock::now(&signpost_schemas::SystemClock)) {
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
    /// state; the flush commands need an input the resolver core does not
    /// have yet and answer 501.
    async fn post(&self, path: &str, _headers: &signpost_net::hyper::HeaderMap, body: bytes::Bytes, ctx: &Ctx) -> Option<Reply> {
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
            "flush" => (501, "flush (one identifier, a prefix or domain, negatives, everything) needs a control input on the resolver core; not available yet\n".to_owned()),
            _ => (400, "commands: stats | dump [N] | flush …\n".to_owned()),
        };
        Some(Reply::full(status, "text/plain; charset=utf-8", out))
    }

    async fn get(&self, path: &str, _headers: &signpost_net::hyper::HeaderMap, _ctx: &Ctx) -> Option<Reply> {
        let k = path.strip_prefix("/certs/")?;
        self.r.cert_pem(k).map(|pem| Reply::full(200, "application/pem-certificate-chain", pem))
    }
}
