//! Config sections every Signpost server shares (strict TOML: unknown keys
//! are errors), and the start-up helpers that turn them into runtime
//! objects: TLS material, limits, logging.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use signpost_schemas::{Name, Timestamp};
use signpost_trust::tls::{ClientAuth, Identity, server_config};
use signpost_trust::{Peer, TrustAnchor};

/// Listener addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// LoST over HTTPS.
    pub lost: SocketAddr,
    /// Admin plane (plain HTTP; keep it on loopback).
    pub admin: Option<SocketAddr>,
}

/// TLS material.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The deployment CA (trust anchor).
    pub ca: PathBuf,
    /// This server's certificate chain (role root).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// `required` (default), `optional` or `none`.
    #[serde(default = "required")]
    pub client_auth: String,
}

fn required() -> String {
    "required".into()
}

/// Bounds.
#[derive(Debug, Deserialize)]
/// A section that is present may list only the keys it changes; the rest
/// keep their defaults (as the sample configs document).
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// TLS handshake time, ms.
    pub handshake_timeout_ms: u64,
    /// Time to receive request headers, and for a new connection to send
    /// its first request (else it is closed), ms.
    pub header_read_timeout_ms: u64,
    /// Time a connection may stay open with no request in progress after
    /// its last one (HTTP/1.1 keep-alive and HTTP/2), ms. Default 60000.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Connections open at once from one client IP address. Default 256.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Handler time, ms.
    pub request_timeout_ms: u64,
    /// Drain time at shutdown, ms.
    pub drain_grace_ms: u64,
    /// The HTTP/2 implementation for TLS connections: `native` (default:
    /// Signpost's own, made for small LoST exchanges) or `hyper` (the h2
    /// crate's, kept as a fallback).
    #[serde(default = "default_http2")]
    pub http2: String,
}

fn default_http2() -> String {
    "native".into()
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = crate::Limits::default();
        LimitsConfig {
            max_body: d.max_body,
            max_connections: d.max_connections,
            handshake_timeout_ms: ms(d.handshake_timeout),
            header_read_timeout_ms: ms(d.header_read_timeout),
            idle_timeout_ms: ms(d.idle_timeout),
            max_connections_per_ip: d.max_connections_per_ip,
            request_timeout_ms: ms(d.request_timeout),
            drain_grace_ms: ms(d.drain_grace),
            http2: default_http2(),
        }
    }
}

fn default_idle_timeout_ms() -> u64 {
    ms(crate::Limits::default().idle_timeout)
}

fn default_max_connections_per_ip() -> usize {
    crate::Limits::default().max_connections_per_ip
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LimitsConfig {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if self.max_body == 0 || self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err("limits.max_body, limits.max_connections and limits.max_connections_per_ip must be positive".into());
        }
        if self.header_read_timeout_ms == 0 || self.idle_timeout_ms == 0 {
            return Err("limits.header_read_timeout_ms and limits.idle_timeout_ms must be positive".into());
        }
        if !matches!(self.http2.as_str(), "native" | "hyper") {
            return Err(format!("limits.http2 is {:?}; it is \"native\" or \"hyper\"", self.http2));
        }
        Ok(())
    }

    /// As the shell's limits.
    pub fn to_limits(&self) -> crate::Limits {
        crate::Limits {
            max_body: self.max_body,
            max_connections: self.max_connections,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections_per_ip: self.max_connections_per_ip,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            drain_grace: Duration::from_millis(self.drain_grace_ms),
            http2: if self.http2 == "hyper" { crate::server::Http2::Hyper } else { crate::server::Http2::Native },
            ..crate::Limits::default()
        }
    }
}

/// Logging.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `human` (default) or `json`.
    #[serde(default = "human")]
    pub format: String,
    /// A tracing filter such as `info` (default) or `signpost=debug`;
    /// `RUST_LOG` overrides it.
    #[serde(default = "info")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log { format: human(), level: info() }
    }
}

fn human() -> String {
    "human".into()
}
fn info() -> String {
    "info".into()
}

/// A config error, naming the file and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Resolves a config-relative path.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// Reads a strict TOML config file and checks it; returns it with the
/// directory relative paths are taken from.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path, check: impl FnOnce(&T) -> Result<(), String>) -> Result<(T, PathBuf), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let cfg: T = toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    check(&cfg).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((cfg, base))
}

/// TLS material loaded and checked.
#[derive(Debug)]
pub struct LoadedTls {
    /// The server config.
    pub server: Arc<rustls::ServerConfig>,
    /// The trust anchor.
    pub anchor: TrustAnchor,
    /// This server's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// This server's key, PEM.
    pub key_pem: Vec<u8>,
    /// This server's validated identity (role, id, scope).
    pub me: Peer,
}

fn read(base: &Path, p: &Path) -> Result<Vec<u8>, String> {
    let p = resolve(base, p);
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}

impl Tls {
    /// Loads the files, validates this server's certificate at `now` and
    /// checks that it is for `id`.
    pub fn load(&self, base: &Path, id: &Name, now: Timestamp) -> Result<LoadedTls, String> {
        let anchor = TrustAnchor::from_pem(&read(base, &self.ca)?).map_err(|e| format!("tls.ca: {e}"))?;
        let cert_pem = read(base, &self.cert)?;
        let key_pem = read(base, &self.key)?;
        let identity = Identity::from_pem(&cert_pem, &key_pem).map_err(|e| format!("tls: {e}"))?;
        let me = signpost_trust::peer::validate(&anchor, &identity.chain, now, signpost_trust::peer::Usage::Server)
            .map_err(|e| format!("tls.cert {}: {e}", resolve(base, &self.cert).display()))?;
        if me.id() != id {
            return Err(format!("tls.cert is for {}, but id = {id}", me.id()));
        }
        let auth = match self.client_auth.as_str() {
            "required" => ClientAuth::Required,
            "optional" => ClientAuth::Optional,
            "none" => ClientAuth::None,
            other => return Err(format!("tls.client_auth = {other:?}: use required, optional or none")),
        };
        let server = Arc::new(
            server_config(&identity, &anchor, auth)
                .map_err(|e| format!("tls.cert {} and tls.key {}: {e}", resolve(base, &self.cert).display(), resolve(base, &self.key).display()))?,
        );
        Ok(LoadedTls { server, anchor, cert_pem, key_pem, me })
    }
}

impl Log {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if matches!(self.format.as_str(), "human" | "json") {
            Ok(())
        } else {
            Err(format!("log.format = {:?}: use human or json", self.format))
        }
    }

    /// Installs the global subscriber (stderr; colours only on a terminal).
    pub fn init(&self) {
        let _ = self.init_reloadable();
    }

    /// [`Log::init`], returning the handle that sets the level later (on
    /// SIGHUP). With `RUST_LOG` set, that filter stays.
    pub fn init_reloadable(&self) -> LogReload {
        use std::io::IsTerminal;
        let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
        let pinned = from_env.is_some();
        let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(self.level.clone()));
        let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
        let set: SetLevel = if self.format == "json" {
            let b = b.json().with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            Box::new(move |level| h.reload(tracing_subscriber::EnvFilter::new(level)).map_err(|e| e.to_string()))
        } else {
            let b = b.with_filter_reloading();
            let h = b.reload_handle();
            b.init();
            Box::new(move |level| h.reload(tracing_subscriber::EnvFilter::new(level)).map_err(|e| e.to_string()))
        };
        LogReload { set, pinned }
    }
}

type SetLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Sets the log level of a running server (see [`Log::init_reloadable`]).
pub struct LogReload {
    set: SetLevel,
    pinned: bool,
}

impl std::fmt::Debug for LogReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReload").field("pinned", &self.pinned).finish()
    }
}

impl LogReload {
    /// Sets the level (`info`, `debug`, or an `EnvFilter` directive);
    /// nothing changes while `RUST_LOG` decides.
    pub fn set(&self, level: &str) -> Result<(), String> {
        if self.pinned {
            return Err("RUST_LOG is set and decides the filter".into());
        }
        (self.set)(level)
    }
}
