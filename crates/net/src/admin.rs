//! The admin plane: `/healthz`, `/readyz`, `/metrics` over plain HTTP/1.1.
//! Bind it to loopback (the default in every sample config): it carries no
//! identifiers and takes no input, and Prometheus scrapes it locally.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::Metrics;

/// A readiness condition checked at every `/readyz`: `Some(why)` makes the
/// server not ready (503, with `why` as the body).
pub type ReadyCheck = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Readiness latch: set once the server can answer (config loaded, table
/// verified, listeners bound), plus conditions that can make a running
/// server unready (e.g. the root's table has expired).
#[derive(Clone, Default)]
pub struct Ready(Arc<AtomicBool>, Arc<std::sync::Mutex<Vec<ReadyCheck>>>);

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Ready").field(&self.is_set()).finish()
    }
}

impl Ready {
    /// Not ready.
    pub fn new() -> Ready {
        Ready::default()
    }
    /// Marks ready.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether ready.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Adds a condition checked at every `/readyz`.
    pub fn check(&self, c: ReadyCheck) {
        match self.1.lock() {
            Ok(mut g) => g.push(c),
            Err(p) => p.into_inner().push(c),
        }
    }
    /// `None` when ready, else why not.
    pub fn why_not(&self) -> Option<String> {
        if !self.is_set() {
            return Some("not ready".into());
        }
        let g = match self.1.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.iter().find_map(|c| c())
    }
}

/// Serves the admin plane until `shutdown` resolves.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Ready, shutdown: impl Future<Output = ()>) {
    if let Ok(a) = listener.local_addr()
        && !a.ip().is_loopback()
    {
        tracing::warn!("the admin listener {a} is not on loopback; its plain HTTP is reachable from the network");
    }
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a { Ok(x) => x, Err(_) => continue },
        };
        let (metrics, ready) = (metrics.clone(), ready.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (metrics, ready) = (metrics.clone(), ready.clone());
                async move {
                    let (status, body) = match req.uri().path() {
                        "/healthz" => (200, "ok\n".to_owned()),
                        "/readyz" => match ready.why_not() {
                            None => (200, "ready\n".to_owned()),
                            Some(why) => (503, format!("{why}\n")),
                        },
                        "/metrics" => (200, metrics.render()),
                        _ => (404, "not found\n".to_owned()),
                    };
                    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Ready;

    #[test]
    fn a_failing_condition_makes_a_ready_server_unready_with_its_reason() {
        let r = Ready::new();
        assert_eq!(r.why_not().as_deref(), Some("not ready"));
        r.set();
        assert_eq!(r.why_not(), None);
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        r.check(Box::new(move || f.load(std::sync::atomic::Ordering::SeqCst).then(|| "the root table expired".to_owned())));
        assert_eq!(r.why_not(), None);
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(r.why_not().as_deref(), Some("the root table expired"));
    }
}
