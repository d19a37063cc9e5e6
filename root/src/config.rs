//! The root's configuration: strict TOML (unknown keys are errors). Every
//! key is documented in `root/root.sample.toml`. Relative paths are taken
//! from the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signpost_schemas::Name;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The root's id (appears as `source` of its answers; must equal the
    /// table's `source` and the id in its certificate).
    pub id: String,
    /// Serve plain HTTP instead of TLS. Development only; logged loudly.
    #[serde(default)]
    pub dev_plaintext: bool,
    /// Listener addresses.
    pub listen: Listen,
    /// TLS material (required unless `dev_plaintext`).
    pub tls: Option<Tls>,
    /// The root table.
    pub table: Table,
    /// Bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: Log,
}

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

/// The table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The signed table file.
    pub path: PathBuf,
    /// The certificate of the key that signs the table (role root);
    /// default: `tls.cert`.
    pub signer_cert: Option<PathBuf>,
    /// How often the file is checked for changes, in milliseconds.
    #[serde(default = "reload_ms")]
    pub reload_interval_ms: u64,
}

fn reload_ms() -> u64 {
    1000
}

/// Bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// TLS handshake time, ms.
    pub handshake_timeout_ms: u64,
    /// Time to receive request headers (also the keep-alive idle time), ms.
    pub header_read_timeout_ms: u64,
    /// Handler time, ms.
    pub request_timeout_ms: u64,
    /// Drain time at shutdown, ms.
    pub drain_grace_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = signpost_net::Limits::default();
        LimitsConfig {
            max_body: d.max_body,
            max_connections: d.max_connections,
            handshake_timeout_ms: ms(d.handshake_timeout),
            header_read_timeout_ms: ms(d.header_read_timeout),
            request_timeout_ms: ms(d.request_timeout),
            drain_grace_ms: ms(d.drain_grace),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LimitsConfig {
    /// As the shell's limits.
    pub fn to_limits(&self) -> signpost_net::Limits {
        signpost_net::Limits {
            max_body: self.max_body,
            max_connections: self.max_connections,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            drain_grace: Duration::from_millis(self.drain_grace_ms),
            ..signpost_net::Limits::default()
        }
    }
}

/// Logging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

impl Config {
    /// Reads and checks a config file (no binding, no table loading).
    pub fn load(path: &Path) -> Result<(Config, PathBuf), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        cfg.check().map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Ok((cfg, base))
    }

    fn check(&self) -> Result<(), String> {
        Name::parse(&self.id).map_err(|e| format!("id: {e}"))?;
        if !self.dev_plaintext && self.tls.is_none() {
            return Err("[tls] is required (set dev_plaintext = true only for development)".into());
        }
        if let Some(t) = &self.tls
            && !matches!(t.client_auth.as_str(), "required" | "optional" | "none")
        {
            return Err(format!("tls.client_auth = {:?}: use required, optional or none", t.client_auth));
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(format!("log.format = {:?}: use human or json", self.log.format));
        }
        if self.limits.max_body == 0 || self.limits.max_connections == 0 {
            return Err("limits.max_body and limits.max_connections must be positive".into());
        }
        if self.table.reload_interval_ms == 0 {
            return Err("table.reload_interval_ms must be positive".into());
        }
        Ok(())
    }
}

/// Resolves a config-relative path.
pub fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}
