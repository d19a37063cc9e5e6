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
    /// state; `flush all | negatives | IDENTIFIER | +PREFIX | DOMAIN` drops
    /// cached answers (and referrals under a prefix or domain).
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
