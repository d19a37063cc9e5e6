//! The resolver's configuration: strict TOML, every key documented in
//! `resolver/resolver.sample.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use signpost_net::config::{ConfigError, LimitsConfig, Listen, Log, Tls, resolve};
use signpost_schemas::Name;
use signpost_schemas::lost::Endpoint;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The resolver's id (its certificate's id, its `via`).
    pub id: String,
    /// Plain HTTP towards clients: development only, logged loudly.
    #[serde(default)]
    pub dev_plaintext: bool,
    /// Listeners.
    pub listen: Listen,
    /// TLS material (role resolver; also the client certificate upstream).
    pub tls: Tls,
    /// The root.
    pub root: Root,
    /// Cache settings.
    #[serde(default)]
    pub cache: Cache,
    /// Upstream settings.
    #[serde(default)]
    pub upstream: Upstream,
    /// Per-client limits.
    #[serde(default)]
    pub rate: Rate,
    /// Server bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: Log,
}

/// The root.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Its id.
    pub id: String,
    /// Its endpoints.
    pub endpoints: Vec<String>,
    /// The certificate that signs the root table; with it the table is
    /// preloaded, so resolution goes on while every root is down.
    pub table_signer_cert: Option<PathBuf>,
    /// Table refresh interval, seconds.
    #[serde(default = "refresh")]
    pub table_refresh_s: u64,
}

fn refresh() -> u64 {
    3600
}

/// Cache settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cache {
    /// Cached answers at most.
    pub max_entries: u64,
    /// Positive lifetime clamp, seconds.
    pub min_ttl_s: u64,
    /// Positive lifetime clamp, seconds.
    pub max_ttl_s: u64,
    /// Negative lifetime clamp, seconds.
    pub negative_min_ttl_s: u64,
    /// Negative lifetime clamp, seconds.
    pub negative_max_ttl_s: u64,
    /// Serve-stale window (RFC 8767), seconds.
    pub max_stale_s: u64,
    /// Lifetime of a stale answer given to clients, seconds.
    pub stale_ttl_s: u64,
    /// Hits after which an invalidated entry is refreshed ahead.
    pub hot_hits: u32,
    /// "push" (subscribe to change feeds) or "ttl-only" (answers live
    /// until their lifetime ends, as with DNS/ENUM today).
    #[serde(default = "push")]
    pub invalidation: String,
}

fn push() -> String {
    "push".into()
}

impl Default for Cache {
    fn default() -> Self {
        Cache { max_entries: 1_000_000, min_ttl_s: 5, max_ttl_s: 86_400, negative_min_ttl_s: 5, negative_max_ttl_s: 3600, max_stale_s: 86_400, stale_ttl_s: 30, hot_hits: 100, invalidation: push() }
    }
}

/// Upstream settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Time an upstream query may take (client response timer), ms.
    pub timeout_ms: u64,
    /// After a failure, an authority is not asked again for this long, s.
    pub failure_recheck_s: u64,
    /// Referrals followed at most.
    pub max_depth: u8,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream { timeout_ms: 1800, failure_recheck_s: 30, max_depth: 8 }
    }
}

/// Per-client limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained queries per second per client.
    pub queries_per_s: f64,
    /// Burst.
    pub burst: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Rate { queries_per_s: 1000.0, burst: 2000.0 }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<(Config, PathBuf), ConfigError> {
        signpost_net::config::load_toml(path, Config::check)
    }

    fn check(&self) -> Result<(), String> {
        Name::parse(&self.id).map_err(|e| format!("id: {e}"))?;
        Name::parse(&self.root.id).map_err(|e| format!("root.id: {e}"))?;
        if self.root.endpoints.is_empty() {
            return Err("root.endpoints needs at least one URL".into());
        }
        for e in &self.root.endpoints {
            Endpoint::parse(e).map_err(|x| format!("root.endpoints: {x}"))?;
        }
        let c = &self.cache;
        if c.max_entries == 0 || c.min_ttl_s > c.max_ttl_s || c.negative_min_ttl_s > c.negative_max_ttl_s {
            return Err("cache: max_entries > 0, min_ttl_s <= max_ttl_s and negative_min_ttl_s <= negative_max_ttl_s are required".into());
        }
        if !matches!(self.cache.invalidation.as_str(), "push" | "ttl-only") {
            return Err(format!("cache.invalidation = {:?}: use push or ttl-only", self.cache.invalidation));
        }
        if self.upstream.timeout_ms == 0 || self.upstream.max_depth == 0 {
            return Err("upstream.timeout_ms and upstream.max_depth must be positive".into());
        }
        if self.rate.queries_per_s <= 0.0 || self.rate.burst < 1.0 {
            return Err("rate: queries_per_s > 0 and burst >= 1 are required".into());
        }
        self.log.check()?;
        self.limits.check()
    }
}
