//! The authority's configuration: strict TOML, every key documented in
//! `authority/authority.sample.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use signpost_net::config::{ConfigError, LimitsConfig, Listen, Log, Tls, resolve};
use signpost_schemas::Name;
use signpost_schemas::lost::Endpoint;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The authority's id (its certificate's id, its mappings' source).
    pub id: String,
    /// Plain HTTP instead of TLS: development only, logged loudly.
    #[serde(default)]
    pub dev_plaintext: bool,
    /// Listeners.
    pub listen: Listen,
    /// TLS material (the certificate's role must be authority; its scope
    /// is what this authority answers for).
    pub tls: Tls,
    /// The store.
    pub store: StoreConfig,
    /// Answer lifetimes and signatures.
    #[serde(default)]
    pub answers: Answers,
    /// Where out-of-scope queries are sent.
    pub root: Option<RootRef>,
    /// The change feed.
    #[serde(default)]
    pub feed: Feed,
    /// Per-client limits.
    #[serde(default)]
    pub rate: Rate,
    /// Server bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: Log,
    /// The optional plain-DNS bridge (absent: off).
    pub dns: Option<crate::dns::DnsConfig>,
}

/// The store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Which backend.
    #[serde(default)]
    pub backend: Backend,
    /// redb: the file (created if missing).
    pub path: Option<PathBuf>,
    /// postgres: the connection string.
    pub url: Option<String>,
    /// postgres: pooled connections at most.
    pub pool_size: Option<usize>,
    /// postgres: PEM CA of the server's certificate (with `sslmode=require`).
    pub ca: Option<PathBuf>,
}

/// The storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One embedded redb file.
    #[default]
    Redb,
    /// A PostgreSQL database (several frontends may share it).
    Postgres,
}

/// The pool size when `store.pool_size` is not given.
pub const DEFAULT_POOL_SIZE: usize = 16;

impl StoreConfig {
    fn check(&self) -> Result<(), String> {
        match self.backend {
            Backend::Redb => {
                if self.path.is_none() {
                    return Err("store.path is required with backend = \"redb\"".into());
                }
                if self.url.is_some() || self.pool_size.is_some() || self.ca.is_some() {
                    return Err("store.url, store.pool_size and store.ca belong to backend = \"postgres\"".into());
                }
            }
            Backend::Postgres => {
                let Some(url) = &self.url else {
                    return Err("store.url is required with backend = \"postgres\"".into());
                };
                if self.path.is_some() {
                    return Err("store.path belongs to backend = \"redb\"".into());
                }
                url.parse::<tokio_postgres::Config>().map_err(|e| format!("store.url: {e}"))?;
                if self.pool_size == Some(0) {
                    return Err("store.pool_size must be positive".into());
                }
            }
        }
        Ok(())
    }
}

/// Answer lifetimes and signatures.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Answers {
    /// Cache lifetime of a mapping, seconds.
    pub mapping_ttl_s: u32,
    /// Cache lifetime of a notFound, seconds.
    pub negative_ttl_s: u32,
    /// How long a signature vouches for content, hours.
    pub signature_validity_h: u64,
    /// Renew signatures this many hours before they end.
    pub renew_before_h: u64,
    /// Memory for signatures made on demand (answers of imported,
    /// unsigned mappings), MiB; 0 disables the cache.
    pub signature_cache_mib: u64,
    /// Memory for encoded answers (checked against the store at each
    /// answer), MiB; 0 disables the cache.
    pub answer_cache_mib: u64,
}

impl Default for Answers {
    fn default() -> Self {
        Answers { mapping_ttl_s: 3600, negative_ttl_s: 60, signature_validity_h: 168, renew_before_h: 24, signature_cache_mib: 64, answer_cache_mib: 256 }
    }
}

/// The root to redirect out-of-scope queries to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRef {
    /// The root's id.
    pub id: String,
    /// Its endpoints.
    pub endpoints: Vec<String>,
}

/// The change feed.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Feed {
    /// Heartbeat interval on an idle feed, ms.
    pub heartbeat_ms: u64,
    /// Events kept at most.
    pub retention_count: u64,
    /// Events kept at most this long, hours.
    pub retention_h: u64,
}

impl Default for Feed {
    fn default() -> Self {
        Feed { heartbeat_ms: 5000, retention_count: 10_000_000, retention_h: 168 }
    }
}

/// Per-client limits (R8).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rate {
    /// Sustained queries per second per client.
    pub queries_per_s: f64,
    /// Burst.
    pub burst: f64,
    /// Distinct unknown CSIs a client may ask for per window.
    pub miss_budget: usize,
    /// The window, seconds.
    pub miss_window_s: u64,
}

impl Default for Rate {
    fn default() -> Self {
        Rate { queries_per_s: 500.0, burst: 1000.0, miss_budget: 10_000, miss_window_s: 3600 }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<(Config, PathBuf), ConfigError> {
        signpost_net::config::load_toml(path, Config::check)
    }

    fn check(&self) -> Result<(), String> {
        Name::parse(&self.id).map_err(|e| format!("id: {e}"))?;
        self.log.check()?;
        self.store.check()?;
        self.limits.check()?;
        if self.rate.queries_per_s <= 0.0 || self.rate.burst < 1.0 || self.rate.miss_window_s == 0 {
            return Err("rate: queries_per_s > 0, burst >= 1 and miss_window_s > 0 are required".into());
        }
        if self.answers.renew_before_h >= self.answers.signature_validity_h {
            return Err("answers.renew_before_h must be shorter than answers.signature_validity_h".into());
        }
        if self.answers.signature_cache_mib > 1 << 20 {
            return Err("answers.signature_cache_mib must be at most 1048576 (1 TiB)".into());
        }
        if self.answers.answer_cache_mib > 1 << 20 {
            return Err("answers.answer_cache_mib must be at most 1048576 (1 TiB)".into());
        }
        if self.feed.heartbeat_ms == 0 || self.feed.retention_count == 0 {
            return Err("feed.heartbeat_ms and feed.retention_count must be positive".into());
        }
        if let Some(d) = &self.dns {
            d.check()?;
        }
        if let Some(r) = &self.root {
            Name::parse(&r.id).map_err(|e| format!("root.id: {e}"))?;
            if r.endpoints.is_empty() {
                return Err("root.endpoints needs at least one URL".into());
            }
            for e in &r.endpoints {
                Endpoint::parse(e).map_err(|x| format!("root.endpoints: {x}"))?;
            }
        }
        Ok(())
    }
}
