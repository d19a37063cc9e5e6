//! A pooled HTTPS client for LoST: one HTTP/2 connection per (endpoint,
//! server id), reused across requests and re-established on failure. The
//! server's certificate is checked against the id Signpost expects (its
//! DNS SAN), not against the address in the endpoint URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use signpost_schemas::lost::{CONTENT_TYPE as LOST_CT, Endpoint};
use signpost_schemas::Name;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("bad endpoint: {0}")]
    Endpoint(String),
    /// TCP connect failed.
    #[error("connect to {0} failed: {1}")]
    Connect(String, String),
    /// TLS failed (certificate not trusted, wrong id…).
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// HTTP/2 failure.
    #[error("HTTP: {0}")]
    Http(String),
    /// The answer body is larger than allowed.
    #[error("answer body over {0} bytes")]
    TooLarge(usize),
    /// A plain-HTTP endpoint without the development flag.
    #[error("refusing plain HTTP to {0} (enable the development flag to allow it)")]
    Plaintext(String),
}

impl ClientError {
    /// A fixed label for metrics.
    pub const fn label(&self) -> &'static str {
        match self {
            ClientError::Endpoint(_) => "endpoint",
            ClientError::Connect(..) => "connect",
            ClientError::Tls(..) => "tls",
            ClientError::Timeout(_) => "timeout",
            ClientError::Http(_) => "http",
            ClientError::TooLarge(_) => "too_large",
            ClientError::Plaintext(_) => "plaintext",
        }
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body.
    pub body: Bytes,
}

struct Target {
    https: bool,
    authority: String, // host:port as in the URL
    connect: String,   // host:port for TcpStream::connect (brackets removed)
}

fn parse(url: &str) -> Result<(Target, String), ClientError> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(ClientError::Endpoint(url.to_owned()));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(ClientError::Endpoint(url.to_owned()));
    }
    let default_port = if https { 443 } else { 80 };
    let has_port = match authority.rfind(']') {
        Some(b) => authority.get(b + 1..).is_some_and(|s| s.starts_with(':')),
        None => authority.contains(':'),
    };
    let with_port = if has_port { authority.to_owned() } else { format!("{authority}:{default_port}") };
    let connect = with_port.replace(['[', ']'], "");
    let connect = match connect.rsplit_once(':') {
        Some((h, p)) if h.contains(':') => format!("[{h}]:{p}"),
        _ => connect,
    };
    Ok((Target { https, authority: with_port, connect }, path.to_owned()))
}

/// Keyed by scheme + authority and the expected server id.
type Pool = HashMap<(String, Name), SendRequest<Full<Bytes>>>;

/// The pooled client.
pub struct Client {
    tls: Option<TlsConnector>,
    allow_plaintext: bool,
    timeout: Duration,
    max_body: usize,
    pool: Mutex<Pool>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("timeout", &self.timeout).field("allow_plaintext", &self.allow_plaintext).finish()
    }
}

impl Client {
    /// A client with a TLS config (anchor as the only root, optional
    /// client certificate) and a per-request timeout.
    pub fn new(tls: Arc<rustls::ClientConfig>, timeout: Duration) -> Client {
        Client { tls: Some(TlsConnector::from(tls)), allow_plaintext: false, timeout, max_body: 64 * 1024 * 1024, pool: Mutex::new(HashMap::new()) }
    }

    /// Development only: also speak plain HTTP to `http://` endpoints.
    pub fn allow_plaintext(mut self) -> Client {
        tracing::warn!("PLAINTEXT: the client will use plain HTTP for http:// endpoints (development flag)");
        self.allow_plaintext = true;
        self
    }

    fn pooled(&self, key: &(String, Name)) -> Option<SendRequest<Full<Bytes>>> {
        let g = match self.pool.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.get(key).filter(|s| !s.is_closed()).cloned()
    }

    async fn connect(&self, t: &Target, server: &Name) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let tcp = TcpStream::connect(&t.connect).await.map_err(|e| ClientError::Connect(t.connect.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(30)).keep_alive_while_idle(true);
        if t.https {
            let tls = self.tls.as_ref().ok_or_else(|| ClientError::Tls(t.connect.clone(), "no TLS configuration".into()))?;
            let name = ServerName::try_from(server.as_str().to_owned()).map_err(|e| ClientError::Tls(t.connect.clone(), e.to_string()))?;
            let stream = tls.connect(name, tcp).await.map_err(|e| ClientError::Tls(t.connect.clone(), e.to_string()))?;
            let (tx, conn) = b.handshake(TokioIo::new(stream)).await.map_err(|e| ClientError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(tx)
        } else {
            if !self.allow_plaintext {
                return Err(ClientError::Plaintext(t.authority.clone()));
            }
            let (tx, conn) = b.handshake(TokioIo::new(tcp)).await.map_err(|e| ClientError::Http(e.to_string()))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(tx)
        }
    }

    async fn send_once(&self, t: &Target, server: &Name, req: hyper::Request<Full<Bytes>>) -> Result<Answer, ClientError> {
        let scheme = if t.https { "https://" } else { "http://" };
        let key = (format!("{scheme}{}", t.authority), server.clone());
        let mut tx = match self.pooled(&key) {
            Some(tx) => tx,
            None => {
                let tx = self.connect(t, server).await?;
                let mut g = match self.pool.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                g.insert(key.clone(), tx.clone());
                tx
            }
        };
        let resp = match tx.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                if let Ok(mut g) = self.pool.lock() {
                    g.remove(&key);
                }
                return Err(ClientError::Http(e.to_string()));
            }
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, self.max_body).collect().await.map_err(|_| ClientError::TooLarge(self.max_body))?.to_bytes();
        Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
    }

    async fn send(&self, url: &str, server: &Name, build: impl Fn(&str) -> hyper::Request<Full<Bytes>>) -> Result<Answer, ClientError> {
        let (t, path) = parse(url)?;
        let uri = format!("{}://{}{}", if t.https { "https" } else { "http" }, t.authority, path);
        let attempt = async {
            match self.send_once(&t, server, build(&uri)).await {
                // A pooled connection may have died since its last use: one
                // fresh retry.
                Err(ClientError::Http(_)) => self.send_once(&t, server, build(&uri)).await,
                r => r,
            }
        };
        tokio::time::timeout(self.timeout, attempt).await.map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// POSTs a LoST body to an endpoint whose server id is `server`.
    pub async fn post_lost(&self, endpoint: &Endpoint, server: &Name, body: Bytes) -> Result<Answer, ClientError> {
        self.send(endpoint.as_str(), server, |uri| {
            let mut r = hyper::Request::new(Full::new(body.clone()));
            *r.method_mut() = hyper::Method::POST;
            *r.uri_mut() = uri.parse().unwrap_or_default();
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(LOST_CT));
            r
        })
        .await
    }

    /// GETs `path` on the host of `endpoint`.
    pub async fn get(&self, endpoint: &Endpoint, server: &Name, path: &str, headers: &[(&'static str, String)]) -> Result<Answer, ClientError> {
        let (t, _) = parse(endpoint.as_str())?;
        let url = format!("{}://{}{path}", if t.https { "https" } else { "http" }, t.authority);
        self.send(&url, server, |uri| {
            let mut r = hyper::Request::new(Full::new(Bytes::new()));
            *r.uri_mut() = uri.parse().unwrap_or_default();
            for (k, v) in headers {
                if let Ok(v) = HeaderValue::from_str(v) {
                    r.headers_mut().insert(*k, v);
                }
            }
            r
        })
        .await
    }

    /// GETs `path` and hands back the body as it streams (the change
    /// feed). The timeout covers the response head only.
    pub async fn get_stream(&self, endpoint: &Endpoint, server: &Name, path: &str) -> Result<(u16, hyper::body::Incoming), ClientError> {
        let (t, _) = parse(endpoint.as_str())?;
        let uri = format!("{}://{}{path}", if t.https { "https" } else { "http" }, t.authority);
        let key = (format!("{}{}", if t.https { "https://" } else { "http://" }, t.authority), server.clone());
        let head = async {
            let mut tx = match self.pooled(&key) {
                Some(tx) => tx,
                None => self.connect(&t, server).await?,
            };
            let mut r = hyper::Request::new(Full::new(Bytes::new()));
            *r.uri_mut() = uri.parse().map_err(|_| ClientError::Endpoint(uri.clone()))?;
            tx.send_request(r).await.map_err(|e| ClientError::Http(e.to_string()))
        };
        let resp = tokio::time::timeout(self.timeout, head).await.map_err(|_| ClientError::Timeout(self.timeout))??;
        Ok((resp.status().as_u16(), resp.into_body()))
    }

    /// Sends raw bytes with any method and content type (tests and tools).
    pub async fn raw(&self, endpoint: &Endpoint, server: &Name, method: hyper::Method, content_type: &str, body: Bytes) -> Result<Answer, ClientError> {
        let ct = HeaderValue::from_str(content_type).map_err(|e| ClientError::Endpoint(e.to_string()))?;
        self.send(endpoint.as_str(), server, |uri| {
            let mut r = hyper::Request::new(Full::new(body.clone()));
            *r.method_mut() = method.clone();
            *r.uri_mut() = uri.parse().unwrap_or_default();
            r.headers_mut().insert(CONTENT_TYPE, ct.clone());
            r
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let (t, p) = parse("https://127.0.0.1:7402/lost").unwrap();
        assert_eq!((t.authority.as_str(), t.connect.as_str(), p.as_str()), ("127.0.0.1:7402", "127.0.0.1:7402", "/lost"));
        let (t, _) = parse("https://[::1]:7402/lost").unwrap();
        assert_eq!((t.authority.as_str(), t.connect.as_str()), ("[::1]:7402", "[::1]:7402"));
        let (t, p) = parse("https://dp.example").unwrap();
        assert_eq!((t.authority.as_str(), p.as_str()), ("dp.example:443", "/"));
        assert!(parse("ftp://x").is_err());
    }
}
