//! The TLS server loop and request dispatch.

use std::convert::Infallible;
use std::future::Future;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use signpost_schemas::lost::CONTENT_TYPE as LOST_CT;
use signpost_schemas::{Clock, Errors, Issue, Limits as XmlLimits, Request, Response};
use signpost_trust::TrustAnchor;
use signpost_trust::peer::{Usage, validate};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::{Ctx, Failure, HttpFailure, Metrics, Reply, Service, failure_errors, outcome};

/// Bounds of a server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body.
    pub max_body: usize,
    /// Connections served at once; further ones are closed at accept.
    pub max_connections: usize,
    /// Time for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to receive a request's headers; also the time a new
    /// connection may take, after the TLS handshake, to send its first
    /// request (HTTP/1.1 or HTTP/2): one that sends none is closed.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress after
    /// its last one (HTTP/1.1 keep-alive and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// Connections open at once from one client IP address; further ones
    /// are closed at accept.
    pub max_connections_per_ip: usize,
    /// Time a request body may take to arrive (else 408), and, once it
    /// has, the time a handler may take.
    pub request_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub drain_grace: Duration,
    /// HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// Which HTTP/2 implementation serves TLS connections that negotiate
    /// `h2`.
    pub http2: Http2,
}

/// The HTTP/2 implementation for TLS connections (`limits.http2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Http2 {
    /// Signpost's own ([`crate::h2`]): a state machine made for many
    /// small request/response exchanges (the default).
    #[default]
    Native,
    /// hyper's (the h2 crate), as before the native one existed.
    Hyper,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 64 * 1024,
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_ip: 256,
            request_timeout: Duration::from_secs(10),
            drain_grace: Duration::from_secs(10),
            h2_max_streams: 256,
            http2: Http2::Native,
        }
    }
}

/// At most one info line about failed TLS handshakes per this interval
/// (a scan or a misconfigured client would otherwise flood the log); the
/// line says how many were left out since the previous one.
const HANDSHAKE_LOG_EVERY_MS: u64 = 10_000;

/// A log rate limit: [`LogLimit::allow`] says whether to log now and how
/// many lines were suppressed since the last one.
#[derive(Debug)]
pub struct LogLimit {
    every_ms: u64,
    /// When the last line was let through (ms + 1; 0 = never).
    last: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimit {
    /// At most one line per `every_ms`.
    pub fn new(every_ms: u64) -> LogLimit {
        LogLimit { every_ms, last: 0.into(), suppressed: 0.into() }
    }
    /// `Some(suppressed since the last line)` when a line may be logged at
    /// `now_ms`, `None` (and one more suppressed) otherwise.
    pub fn allow(&self, now_ms: u64) -> Option<u64> {
        let stamp = now_ms.saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && stamp < last.saturating_add(self.every_ms) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self.last.compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Binds a listener and logs `listening for <kind> on <ip:port>` (the line
/// harnesses read to learn a port-0 address).
pub async fn bind(addr: SocketAddr, kind: &str) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr).await?;
    tracing::info!("listening for {kind} on {}", l.local_addr()?);
    Ok(l)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The server's TLS configuration, replaceable while it serves: a new
/// certificate applies to connections accepted from then on; open
/// connections keep the session they have (SIGHUP, see
/// [`reload_on_hangup`]).
#[derive(Clone)]
pub struct TlsSwitch(Arc<std::sync::RwLock<TlsAcceptor>>);

impl std::fmt::Debug for TlsSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSwitch")
    }
}

impl TlsSwitch {
    fn new(cfg: Arc<rustls::ServerConfig>) -> TlsSwitch {
        TlsSwitch(Arc::new(std::sync::RwLock::new(TlsAcceptor::from(cfg))))
    }
    /// Uses `cfg` for every connection accepted from now on.
    pub fn replace(&self, cfg: Arc<rustls::ServerConfig>) {
        let mut g = match self.0.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = TlsAcceptor::from(cfg);
    }
    fn current(&self) -> TlsAcceptor {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// On every SIGHUP, `reload` reads the configuration again and returns the
/// new TLS configuration and log level (or why it cannot: then nothing
/// changes and the reason is logged). Connections are not dropped.
pub fn reload_on_hangup(
    tls: Option<TlsSwitch>,
    log: crate::config::LogReload,
    reload: impl Fn() -> Result<(Option<Arc<rustls::ServerConfig>>, String), String> + Send + Sync + 'static,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            match reload() {
                Ok((cfg, level)) => {
                    if let (Some(sw), Some(cfg)) = (&tls, cfg) {
                        sw.replace(cfg);
                    }
                    match log.set(&level) {
                        Ok(()) => tracing::info!(level = %level, "SIGHUP: certificate and key reloaded for new connections; log level set"),
                        Err(e) => tracing::warn!("SIGHUP: certificate reloaded; log level {level:?} not applied: {e}"),
                    }
                }
                Err(e) => tracing::warn!("SIGHUP: configuration not reloaded, the running one stays: {e}"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (tls, log, reload);
}

/// A LoST server: a [`Service`] behind TLS (or, for development only,
/// plain TCP).
pub struct Server<S: Service> {
    svc: Arc<S>,
    tls: Option<TlsSwitch>,
    anchor: Option<TrustAnchor>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    handshake_log: Arc<LogLimit>,
}

impl<S: Service> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("tls", &self.tls.is_some()).field("limits", &self.limits).finish()
    }
}

impl<S: Service> Server<S> {
    /// `tls: None` serves plain HTTP: development only, logged loudly.
    /// `anchor` validates client certificates into [`Ctx::peer`].
    pub fn new(
        svc: Arc<S>,
        tls: Option<Arc<rustls::ServerConfig>>,
        anchor: Option<TrustAnchor>,
        limits: Limits,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        if tls.is_none() {
            tracing::warn!("PLAINTEXT: serving LoST without TLS (development flag); never do this in production");
        }
        Server { svc, tls: tls.map(TlsSwitch::new), anchor, limits: Arc::new(limits), metrics, clock, handshake_log: Arc::new(LogLimit::new(HANDSHAKE_LOG_EVERY_MS)) }
    }

    /// The switch that replaces the TLS configuration while serving.
    pub fn tls_switch(&self) -> Option<TlsSwitch> {
        self.tls.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives
    /// in-flight requests `drain_grace` to finish.
    ///
    /// Connection hygiene: a connection that sends no request within
    /// `header_read_timeout` of its handshake, or none for `idle_timeout`
    /// after its last one, is closed (gracefully: HTTP/2 GOAWAY). One
    /// client address holds at most `max_connections_per_ip`. Above 90 % of
    /// `max_connections` both limits shrink tenfold, so idle connections
    /// give their slots to clients that are sending.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout).max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.h2_max_streams)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .max_header_list_size(16 * 1024);
        let builder = Arc::new(builder);
        let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(self.limits.max_connections)),
            max: self.limits.max_connections,
            per_ip: Mutex::new(HashMap::new()),
            pressure: Notify::new(),
        });
        let mut shutdown = std::pin::pin!(shutdown);
        // Connection tasks, so that whatever outlives the drain (a change
        // feed never ends by itself) is closed when the grace is over.
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let (tcp, remote) = tokio::select! {
                _ = &mut shutdown => break,
                acc = listener.accept() => match acc {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                self.metrics.connections_rejected.fetch_add(1, Ordering::Relaxed);
                shared.pressure.notify_waiters();
                drop(tcp);
                continue;
            };
            let Some(ip_slot) = IpSlot::take(&shared, remote.ip(), self.limits.max_connections_per_ip) else {
                self.metrics.connections_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("{} has {} connections open; refusing another", remote.ip(), self.limits.max_connections_per_ip);
                drop(tcp);
                continue;
            };
            if shared.near_cap() {
                // Idle connections re-check their (now shorter) limits.
                shared.pressure.notify_waiters();
            }
            let _ = tcp.set_nodelay(true);
            self.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
            let conn = ConnTask {
                svc: self.svc.clone(),
                tls: self.tls.clone(),
                anchor: self.anchor.clone(),
                limits: self.limits.clone(),
                metrics: self.metrics.clone(),
                clock: self.clock.clone(),
                handshake_log: self.handshake_log.clone(),
                builder: builder.clone(),
                shared: shared.clone(),
                drain: drain_rx.clone(),
            };
            tasks.spawn(async move {
                conn.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
                let m = conn.metrics.clone();
                conn.run(tcp, remote).await;
                m.connections_open.fetch_sub(1, Ordering::Relaxed);
                drop(ip_slot);
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("draining {} connection(s)", tasks.len());
        let _ = drain_tx.send(true);
        let drained = tokio::time::timeout(self.limits.drain_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!("drain grace period over; closing the remaining connections");
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// State the accept loop and the connections share.
#[derive(Debug)]
struct Shared {
    slots: Arc<Semaphore>,
    max: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Woken when the server nears its cap.
    pressure: Notify,
}

impl Shared {
    /// Above 90 % of `max_connections`.
    fn near_cap(&self) -> bool {
        let open = self.max.saturating_sub(self.slots.available_permits());
        open.saturating_mul(10) >= self.max.saturating_mul(9)
    }
}

/// One open connection counted against its client address.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let mut g = match shared.per_ip.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = g.entry(ip).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                g.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot { shared: shared.clone(), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut g = match self.shared.per_ip.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = g.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.remove(&self.ip);
            }
        }
    }
}

/// What a connection's supervisor watches: requests in progress (a
/// streamed response counts until its body ends) and since when none is.
#[derive(Debug)]
struct Activity {
    base: Instant,
    active: AtomicUsize,
    idle_since_ms: AtomicU64,
    served: AtomicBool,
    changed: Notify,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity { base: Instant::now(), active: AtomicUsize::new(0), idle_since_ms: AtomicU64::new(0), served: AtomicBool::new(false), changed: Notify::new() })
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.served.store(true, Ordering::SeqCst);
        self.active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(self.clone())
    }
    /// How long no request has been in progress, if none is.
    fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(Duration::from_millis(self.now_ms().saturating_sub(self.idle_since_ms.load(Ordering::SeqCst))))
    }

    /// Resolves when the connection has been idle past its limit.
    async fn expired(&self, limits: &Limits, shared: &Shared) {
        loop {
            let pressure = shared.pressure.notified();
            let changed = self.changed.notified();
            let base = if self.served.load(Ordering::SeqCst) { limits.idle_timeout } else { limits.header_read_timeout };
            let limit = if shared.near_cap() { base / 10 } else { base };
            let wait = match self.idle_for() {
                None => base,
                Some(idle) if idle >= limit => return,
                Some(idle) => limit.saturating_sub(idle),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = pressure => {}
                _ = changed => {}
            }
        }
    }
}

/// Held while a request is in progress (moved into its response body).
struct ActiveGuard(Arc<Activity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.idle_since_ms.store(self.0.now_ms(), Ordering::SeqCst);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in progress.
struct Guarded {
    inner: Body,
    _guard: ActiveGuard,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

struct ConnTask<S: Service> {
    svc: Arc<S>,
    tls: Option<TlsSwitch>,
    anchor: Option<TrustAnchor>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    handshake_log: Arc<LogLimit>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
    drain: tokio::sync::watch::Receiver<bool>,
}

impl<S: Service> ConnTask<S> {
    async fn run(self, tcp: TcpStream, remote: SocketAddr) {
        match self.tls.as_ref().map(TlsSwitch::current) {
            Some(acceptor) => {
                let tls = match tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        self.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(more) = self.handshake_log.allow(self.clock.now().as_millis()) {
                            tracing::info!(suppressed = more, "TLS handshake with {remote} failed: {e}");
                        }
                        return;
                    }
                    Err(_) => {
                        self.metrics.handshake_failures.fetch_add(1, Ordering::Relaxed);
                        if let Some(more) = self.handshake_log.allow(self.clock.now().as_millis()) {
                            tracing::info!(suppressed = more, "TLS handshake with {remote} timed out");
                        }
                        return;
                    }
                };
                let peer = match (tls.get_ref().1.peer_certificates(), &self.anchor) {
                    (Some(chain), Some(anchor)) => match validate(anchor, chain, self.clock.now(), Usage::Client) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::debug!("client certificate of {remote} not usable: {e}");
                            None
                        }
                    },
                    _ => None,
                };
                if self.limits.http2 == Http2::Native && tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    self.serve_h2(tls, Ctx::new(peer, remote)).await;
                } else {
                    self.serve_io(TokioIo::new(tls), Ctx::new(peer, remote)).await;
                }
            }
            None => self.serve_io(TokioIo::new(tcp), Ctx::new(None, remote)).await,
        }
    }

    async fn serve_io<I>(self, io: I, ctx: Ctx)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let remote = ctx.remote;
        let ctx = Arc::new(ctx);
        let activity = Activity::new();
        let (svc, limits, metrics) = (self.svc, self.limits, self.metrics);
        let service = {
            let (limits, metrics, activity) = (limits.clone(), metrics.clone(), activity.clone());
            service_fn(move |req| {
                let guard = activity.begin();
                let (svc, ctx, limits, metrics) = (svc.clone(), ctx.clone(), limits.clone(), metrics.clone());
                async move {
                    let start = Instant::now();
                    let (label, resp) = dispatch(req, &*svc, &ctx, &limits).await;
                    metrics.request(label, u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX));
                    Ok::<_, Infallible>(resp.map(|inner| Guarded { inner, _guard: guard }))
                }
            })
        };
        let mut conn = std::pin::pin!(self.builder.serve_connection(io, service).into_owned());
        let mut drain = self.drain;
        let draining = async move {
            if drain.wait_for(|v| *v).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let idle = tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = activity.expired(&limits, &self.shared) => true,
            _ = draining => false,
        };
        conn.as_mut().graceful_shutdown();
        if idle {
            metrics.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("closing the idle connection from {remote}");
            // Nothing is in progress: the close is quick; a peer that does
            // not let go is dropped after one more header timeout.
            match tokio::time::timeout(limits.header_read_timeout, conn.as_mut()).await {
                Ok(Err(e)) => tracing::debug!("connection ended: {e}"),
                Ok(Ok(())) => {}
                Err(_) => tracing::debug!("idle connection from {remote} did not close; dropped"),
            }
        } else if let Err(e) = conn.as_mut().await {
            // Draining: in-flight requests finish; the server aborts what
            // outlives its grace period.
            tracing::debug!("connection ended: {e}");
        }
    }
}

/// What a connection's handlers and body forwarders tell its driver.
enum H2Done {
    /// A handler that did not answer on its first poll finished.
    Reply { stream: u32, label: &'static str, reply: Reply, start: Instant },
    /// A chunk of a streamed response.
    Data { stream: u32, chunk: Bytes },
    /// A streamed response ended.
    End { stream: u32 },
}

/// A streamed response's forwarder and its credit: it may have this many
/// bytes queued in the connection (flow control) before it waits.
struct Streaming {
    task: tokio::task::AbortHandle,
    credit: Arc<Semaphore>,
    queued: usize,
}

/// Bytes a streamed response may have waiting for the peer's window.
const STREAM_CREDIT: usize = 256 * 1024;

impl<S: Service> ConnTask<S> {
    /// Serves an `h2` TLS connection with [`crate::h2::Conn`]: reads feed
    /// the state machine; a complete request runs its handler, polled once
    /// in place (a cache hit answers then, with no task spawned and no
    /// timer armed) and otherwise spawned; responses are written as one
    /// batch per read. Timeouts (first request, idle, body) are checked on
    /// a coarse tick rather than armed per request.
    async fn serve_h2<IO>(self, mut io: IO, ctx: Ctx)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let remote = ctx.remote;
        let ctx = Arc::new(ctx);
        let limits = self.limits.clone();
        let mut conn = crate::h2::Conn::new(crate::h2::Settings { max_streams: limits.h2_max_streams, max_body: limits.max_body, max_header_list: 16 * 1024 });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<H2Done>(64);
        let mut inbuf = bytes::BytesMut::with_capacity(16 * 1024);
        let mut outbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut running: crate::h2::IdMap<tokio::task::AbortHandle> = crate::h2::IdMap::default();
        let mut streaming: crate::h2::IdMap<Streaming> = crate::h2::IdMap::default();
        let mut receiving_since: crate::h2::IdMap<Instant> = crate::h2::IdMap::default();
        let shortest = limits.header_read_timeout.min(limits.idle_timeout).min(limits.request_timeout);
        let mut tick = tokio::time::interval((shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut served = false;
        let mut idle_since = Some(Instant::now());
        // When the connection was asked to close (idle, or the server
        // draining): a peer that does not let go within one more header
        // timeout (say, one holding a header block open) is dropped.
        let mut closing_since: Option<Instant> = None;
        let mut spare = None;
        loop {
            if conn.has_output() {
                conn.take_output(&mut outbuf);
                let write = async {
                    io.write_all(&outbuf).await?;
                    io.flush().await
                };
                // Pinned in place: no allocation per write.
                match bounded(std::pin::pin!(write), limits.idle_timeout).await {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::debug!("connection from {remote} ended: {e}");
                        break;
                    }
                    None => {
                        tracing::debug!("connection from {remote} did not read its responses; dropped");
                        break;
                    }
                }
            }
            if conn.is_done() {
                break;
            }
            if conn.open_streams() > 0 || !running.is_empty() {
                idle_since = None;
            } else if idle_since.is_none() {
                idle_since = Some(Instant::now());
            }
            tokio::select! {
                r = io.read_buf(&mut inbuf) => {
                    match r {
                        Ok(0) => break,
                        Err(e) => {
                            tracing::debug!("connection from {remote} ended: {e}");
                            break;
                        }
                        Ok(_) => {}
                    }
                    if let Err(e) = conn.recv(&mut inbuf) {
                        tracing::debug!("HTTP/2 connection from {remote} closed: {:?}: {}", e.code, e.reason);
                    }
                    while let Some(ev) = conn.poll_event() {
                        match ev {
                            crate::h2::Event::Request { stream, head, body } => {
                                served = true;
                                let start = Instant::now();
                                let fut = h2_answer(head, body, self.svc.clone(), ctx.clone(), limits.clone());
                                // The box of the last answer that did not
                                // wait is reused (every answer's future has
                                // the one type): no allocation per request.
                                let mut fut = match spare.take() {
                                    Some(mut b) => {
                                        std::pin::Pin::set(&mut b, fut);
                                        b
                                    }
                                    None => Box::pin(fut),
                                };
                                match std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await {
                                    std::task::Poll::Ready((label, reply)) => {
                                        spare = Some(fut);
                                        self.metrics.request(label, micros_since(start));
                                        h2_reply(&mut conn, stream, reply, &tx, &mut streaming);
                                    }
                                    std::task::Poll::Pending => {
                                        let tx = tx.clone();
                                        let h = tokio::spawn(async move {
                                            let (label, reply) = fut.await;
                                            let _ = tx.send(H2Done::Reply { stream, label, reply, start }).await;
                                        });
                                        running.insert(stream, h.abort_handle());
                                    }
                                }
                            }
                            crate::h2::Event::TooLarge { stream } => {
                                let (label, reply) = failure_reply(self.svc.id(), HttpFailure::PayloadTooLarge);
                                self.metrics.request(label, 0);
                                h2_reply(&mut conn, stream, reply, &tx, &mut streaming);
                            }
                            crate::h2::Event::Reset { stream } => {
                                if let Some(h) = running.remove(&stream) {
                                    h.abort();
                                }
                                if let Some(s) = streaming.remove(&stream) {
                                    s.task.abort();
                                }
                            }
                        }
                    }
                }
                Some(done) = rx.recv() => {
                    let mut next = Some(done);
                    // Take what else is ready: one write for the lot.
                    while let Some(done) = next {
                        match done {
                            H2Done::Reply { stream, label, reply, start } => {
                                running.remove(&stream);
                                self.metrics.request(label, micros_since(start));
                                h2_reply(&mut conn, stream, reply, &tx, &mut streaming);
                            }
                            H2Done::Data { stream, chunk } => {
                                if let Some(s) = streaming.get_mut(&stream) {
                                    s.queued += chunk.len();
                                }
                                conn.send_data(stream, chunk, false);
                            }
                            H2Done::End { stream } => {
                                conn.send_data(stream, Bytes::new(), true);
                                streaming.remove(&stream);
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if *self.drain.borrow() && closing_since.is_none() {
                        closing_since = Some(now);
                        conn.go_away();
                    }
                    if let Some(since) = idle_since {
                        let base = if served { limits.idle_timeout } else { limits.header_read_timeout };
                        let limit = if self.shared.near_cap() { base / 10 } else { base };
                        if now.saturating_duration_since(since) >= limit && closing_since.is_none() {
                            closing_since = Some(now);
                            self.metrics.connections_idle_closed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("closing the idle connection from {remote}");
                            conn.go_away();
                        }
                    }
                    if closing_since.is_some_and(|c| now.saturating_duration_since(c) >= limits.header_read_timeout) && conn.open_streams() == 0 {
                        tracing::debug!("connection from {remote} did not close; dropped");
                        break;
                    }
                    // Bodies that take longer than the request timeout.
                    let receiving: Vec<u32> = conn.receiving().collect();
                    receiving_since.retain(|id, _| receiving.contains(id));
                    for id in receiving {
                        let since = *receiving_since.entry(id).or_insert(now);
                        if now.saturating_duration_since(since) >= limits.request_timeout {
                            receiving_since.remove(&id);
                            if conn.responded(id) {
                                // Answered (413) and still not done sending.
                                conn.cancel(id);
                                continue;
                            }
                            let (label, reply) = failure_reply(self.svc.id(), HttpFailure::RequestTimeout);
                            self.metrics.request(label, 0);
                            h2_reply(&mut conn, id, reply, &tx, &mut streaming);
                        }
                    }
                }
            }
            // Credit back to streamed responses whose data went out.
            for (id, s) in streaming.iter_mut() {
                let q = conn.queued(*id).unwrap_or(0);
                if q < s.queued {
                    s.credit.add_permits(s.queued - q);
                    s.queued = q;
                }
            }
        }
        for (_, h) in running {
            h.abort();
        }
        for (_, s) in streaming {
            s.task.abort();
        }
        let _ = io.shutdown().await;
    }
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// [`answer`] for a request the native HTTP/2 connection decoded (owning
/// what it needs, so it can move to a task of its own).
async fn h2_answer<S: Service>(head: crate::h2::Head, body: Bytes, svc: Arc<S>, ctx: Arc<Ctx>, limits: Arc<Limits>) -> (&'static str, Reply) {
    let method = match &*head.method {
        "POST" => Method::POST,
        "GET" => Method::GET,
        other => Method::from_bytes(other.as_bytes()).unwrap_or(Method::OPTIONS),
    };
    // The header map is built only for the paths whose handlers read it.
    let mut headers = hyper::HeaderMap::new();
    if !is_lost_path(&head.path) {
        if let Some(ct) = head.content_type.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(CONTENT_TYPE, ct);
        }
        for (k, v) in &head.fields {
            if let (Ok(k), Ok(v)) = (hyper::header::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(v)) {
                headers.append(k, v);
            }
        }
    }
    let asked = Asked { method: &method, path: &head.path, content_type: head.content_type.as_deref(), headers: &headers };
    answer(asked, body, &*svc, &ctx, &limits).await
}

/// Starts the response on a native HTTP/2 stream; a streamed body gets a
/// forwarder task that feeds the connection within its credit.
fn h2_reply(conn: &mut crate::h2::Conn, stream: u32, reply: Reply, tx: &tokio::sync::mpsc::Sender<H2Done>, streaming: &mut crate::h2::IdMap<Streaming>) {
    let fields: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match reply.stream {
        None => conn.respond(stream, reply.status, reply.content_type, &fields, reply.body, true),
        Some(mut rx) => {
            conn.respond(stream, reply.status, reply.content_type, &fields, reply.body, false);
            let credit = Arc::new(Semaphore::new(STREAM_CREDIT));
            let (tx, c) = (tx.clone(), credit.clone());
            let task = tokio::spawn(async move {
                while let Some(mut chunk) = rx.recv().await {
                    while !chunk.is_empty() {
                        let piece = chunk.split_to(chunk.len().min(STREAM_CREDIT));
                        match c.acquire_many(u32::try_from(piece.len()).unwrap_or(u32::MAX)).await {
                            Ok(p) => p.forget(),
                            Err(_) => return,
                        }
                        if tx.send(H2Done::Data { stream, chunk: piece }).await.is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send(H2Done::End { stream }).await;
            });
            streaming.insert(stream, Streaming { task: task.abort_handle(), credit, queued: 0 });
        }
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
type HttpResponse = hyper::Response<Body>;

fn full(b: Bytes) -> Body {
    Full::new(b).boxed()
}

/// A body fed by a channel; ends when the sender is dropped.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

fn reply_response(reply: Reply) -> HttpResponse {
    let body = match reply.stream {
        Some(rx) => ChannelBody(rx).boxed(),
        None => full(reply.body),
    };
    let mut r = hyper::Response::new(body);
    *r.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    for (k, v) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

fn lost_reply(status: u16, body: String) -> Reply {
    Reply::full(status, LOST_CT, body)
}

fn failure_reply(source: signpost_schemas::Name, f: HttpFailure) -> (&'static str, Reply) {
    let (status, kind, message, label) = f.parts();
    let mut issue = Issue::new(kind, message);
    if let HttpFailure::TooManyRequests { retry_after } = f {
        issue.retry_after = Some(retry_after);
    }
    let mut r = lost_reply(status, Response::Errors(Errors::one(source, issue)).encode());
    match f {
        HttpFailure::MethodNotAllowed => r.headers.push(("allow", "POST".into())),
        HttpFailure::TooManyRequests { retry_after } => r.headers.push(("retry-after", retry_after.to_string())),
        HttpFailure::UnsupportedMediaType | HttpFailure::PayloadTooLarge | HttpFailure::NotFound | HttpFailure::RequestTimeout => {}
    }
    (label, r)
}

/// Reads a request body within the size limit and the request timeout (a
/// sender that trickles or stalls its body does not hold the connection
/// and its slot for longer).
async fn read_body(body: Incoming, limits: &Limits) -> Result<Bytes, HttpFailure> {
    match tokio::time::timeout(limits.request_timeout, Limited::new(body, limits.max_body).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(HttpFailure::PayloadTooLarge),
        Err(_) => Err(HttpFailure::RequestTimeout),
    }
}

/// `/lost`, with or without a query.
fn is_lost_path(path: &str) -> bool {
    path.strip_prefix("/lost").is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
}

/// Whether a content type is LoST's (parameters ignored).
fn is_lost_type(ct: Option<&str>) -> bool {
    ct.and_then(|v| v.split(';').next()).is_some_and(|v| v.trim().eq_ignore_ascii_case(LOST_CT))
}

/// A future bounded in time whose timer is armed only if it does not
/// finish when first polled: a cache hit answers on its first poll and
/// never touches the timer wheel.
struct Bounded<F> {
    fut: F,
    limit: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        if let std::task::Poll::Ready(v) = std::pin::Pin::new(&mut self.fut).poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        let limit = self.limit;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

fn bounded<F: Future + Unpin>(fut: F, limit: Duration) -> Bounded<F> {
    Bounded { fut, limit, sleep: None }
}

/// A request's head as [`answer`] reads it: `path` with its query, the
/// content type apart from the other `headers`.
struct Asked<'a> {
    method: &'a Method,
    path: &'a str,
    content_type: Option<&'a str>,
    headers: &'a hyper::HeaderMap,
}

/// Answers one request, whatever transport brought it, with its whole body
/// (empty for GET).
async fn answer<S: Service>(asked: Asked<'_>, body: Bytes, svc: &S, ctx: &Ctx, limits: &Limits) -> (&'static str, Reply) {
    let Asked { method, path, content_type, headers } = asked;
    if !is_lost_path(path) {
        if *method == Method::GET {
            if let Some(reply) = svc.get(path, headers, ctx).await {
                return ("found", reply);
            }
        } else if *method == Method::POST
            && let Some(reply) = svc.post(path, headers, body, ctx).await
        {
            return ("found", reply);
        }
        return failure_reply(svc.id(), HttpFailure::NotFound);
    }
    if *method != Method::POST {
        return failure_reply(svc.id(), HttpFailure::MethodNotAllowed);
    }
    if !is_lost_type(content_type) {
        return failure_reply(svc.id(), HttpFailure::UnsupportedMediaType);
    }
    let result = match Request::decode(&body, &XmlLimits::MESSAGE) {
        Err(e) => Err(Failure::Decode(e)),
        Ok(r) => {
            // Polled once in place: a cache hit is ready then, and neither a
            // box nor a timer is needed; only a request that waits gets the
            // request timeout.
            let fut = svc.lost(r, ctx);
            let mut fut = std::pin::pin!(fut);
            match std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => match tokio::time::timeout(limits.request_timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::Internal("the server did not finish the request in time".into())),
                },
            }
        }
    };
    let (resp, limited) = match result {
        Ok(crate::LostReply::Encoded { body, outcome }) => return (outcome, Reply::full(200, LOST_CT, body)),
        Ok(crate::LostReply::Response(r)) => (r, None),
        Err(Failure::RateLimited { message, retry_after }) => {
            (Response::Errors(failure_errors(svc.id(), Failure::RateLimited { message, retry_after })), Some(retry_after))
        }
        Err(f) => (Response::Errors(failure_errors(svc.id(), f)), None),
    };
    if let Some(secs) = limited {
        // A rate-limited LoST request is answered 200 with the LoST error
        // (`<forbidden>` carrying `<sp:retryAfter>`): RFC 5222 §13 carries
        // LoST errors in 200 bodies and deployed clients (Kamailio's lost
        // module) read no other status. The Retry-After header stays for
        // HTTP-aware clients. Non-LoST paths keep 429 (HttpFailure).
        let mut r = lost_reply(200, resp.encode());
        r.headers.push(("retry-after", secs.to_string()));
        return ("forbidden", r);
    }
    let label = outcome(&resp);
    (label, lost_reply(200, resp.encode()))
}

/// hyper's side of [`answer`]: reads the body (POST only; for `/lost` only
/// once the method, content type and declared length pass).
async fn dispatch<S: Service>(
    req: hyper::Request<Incoming>,
    svc: &S,
    ctx: &Ctx,
    limits: &Limits,
) -> (&'static str, HttpResponse) {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let is_lost = parts.uri.path() == "/lost";
    let ct = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body = if parts.method != Method::POST || (is_lost && !is_lost_type(ct)) {
        Bytes::new()
    } else {
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if is_lost && declared.is_some_and(|n| n > limits.max_body as u64) {
            let (label, r) = failure_reply(svc.id(), HttpFailure::PayloadTooLarge);
            return (label, reply_response(r));
        }
        match read_body(body, limits).await {
            Ok(b) => b,
            Err(f) => {
                let (label, r) = failure_reply(svc.id(), f);
                return (label, reply_response(r));
            }
        }
    };
    let asked = Asked { method: &parts.method, path, content_type: ct, headers: &parts.headers };
    let (label, reply) = answer(asked, body, svc, ctx, limits).await;
    (label, reply_response(reply))
}

/// The serve phase every Signpost binary shares: bind the LoST listener and
/// the admin listener (each logs `listening for <kind> on <addr>`), mark
/// ready, serve until SIGTERM/SIGINT, then drain.
pub async fn run<S: Service>(server: Server<S>, listen: &crate::config::Listen, metrics: Arc<Metrics>) -> Result<(), String> {
    run_with(server, listen, metrics, crate::admin::Ready::new()).await
}

/// [`run`] with a readiness latch that may carry conditions
/// ([`crate::admin::Ready::check`]); it is set once the listeners are bound.
pub async fn run_with<S: Service>(server: Server<S>, listen: &crate::config::Listen, metrics: Arc<Metrics>, ready: crate::admin::Ready) -> Result<(), String> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let lost = bind(listen.lost, "lost").await.map_err(|e| format!("listen.lost {}: {e}", listen.lost))?;
    if let Some(a) = listen.admin {
        let admin = bind(a, "admin").await.map_err(|e| format!("listen.admin {a}: {e}"))?;
        tokio::spawn(crate::admin::serve(admin, metrics, ready.clone(), stop()));
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    ready.set();
    server.serve(lost, stop()).await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod log_limit_tests {
    use super::LogLimit;

    #[test]
    fn handshake_failure_lines_are_rate_limited_and_count_what_they_left_out() {
        let l = LogLimit::new(10_000);
        assert_eq!(l.allow(0), Some(0));
        assert_eq!(l.allow(1), None);
        assert_eq!(l.allow(9_999), None);
        assert_eq!(l.allow(10_000), Some(2));
        assert_eq!(l.allow(15_000), None);
        assert_eq!(l.allow(25_000), Some(1));
    }
}
