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
    /// The Oblivious HTTP gateway (RFC 9458) for the LoST endpoint.
    #[serde(default)]
    pub ohttp: Ohttp,
    /// Bulk (address-book) lookups.
    #[serde(default)]
    pub bulk: Bulk,
    /// Server bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: Log,
}

/// The Oblivious HTTP gateway (a key left out takes its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ohttp {
    /// The key file (made by `signpost-resolver ohttp-keygen`; relative to
    /// this file). `""`: no gateway.
    pub keys: PathBuf,
    /// Requests are remembered at least this long to refuse replays, s.
    pub replay_window_s: u64,
    /// Remembered requests per half window at most (then the window turns
    /// over early).
    pub replay_max_entries: usize,
}

impl Default for Ohttp {
    fn default() -> Self {
        Ohttp { keys: PathBuf::new(), replay_window_s: 600, replay_max_entries: 1_000_000 }
    }
}

/// Bulk lookups (a key left out takes its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bulk {
    /// findService queries in one bulk request at most.
    pub max_queries: usize,
    /// Identifiers not seen before from one client, per window, at most.
    pub new_identifiers_per_window: usize,
    /// That window, seconds.
    pub window_s: u64,
}

impl Default for Bulk {
    fn default() -> Self {
        Bulk { max_queries: 1000, new_identifiers_per_window: 10_000, window_s: 3600 }
    }
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
    /// Where the verified table is kept between runs, so a resolver started
    /// while every root is down still resolves (relative to this file;
    /// `""` keeps nothing).
    #[serde(default = "table_cache")]
    pub table_cache: PathBuf,
}

fn table_cache() -> PathBuf {
    PathBuf::from("root-table.cache.xml")
}

fn refresh() -> u64 {
    3600
}

/// Cache settings (a key left out takes its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Cached answers at most.
    pub max_entries: u64,
    /// Bytes of cached answers at most (bodies and bookkeeping).
    pub max_bytes: u64,
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
    pub invalidation: String,
}

fn push() -> String {
    "push".into()
}

impl Default for Cache {
    fn default() -> Self {
        Cache { max_entries: 1_000_000, max_bytes: 1 << 30, min_ttl_s: 5, max_ttl_s: 86_400, negative_min_ttl_s: 5, negative_max_ttl_s: 3600, max_stale_s: 86_400, stale_ttl_s: 30, hot_hits: 100, invalidation: push() }
    }
}

/// Upstream settings (a key left out takes its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// RFC 8767's client response timer: every client is answered within
    /// this (a stale answer, or serverTimeout), ms.
    pub timeout_ms: u64,
    /// One upstream attempt may take this long before the next endpoint
    /// is tried, ms.
    pub attempt_timeout_ms: u64,
    /// After a failure, an authority is not asked again for this long, s.
    pub failure_recheck_s: u64,
    /// Referrals followed at most.
    pub max_depth: u8,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream { timeout_ms: 1800, attempt_timeout_ms: 800, failure_recheck_s: 30, max_depth: 8 }
    }
}

/// Per-client limits (a key left out takes its default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

impl Rate {
    /// Checks the values.
    pub fn check(&self) -> Result<(), String> {
        if self.queries_per_s <= 0.0 || self.burst < 1.0 {
            return Err("rate: queries_per_s > 0 and burst >= 1 are required".into());
        }
        Ok(())
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
        if self.upstream.timeout_ms == 0 || self.upstream.attempt_timeout_ms == 0 || self.upstream.max_depth == 0 {
            return Err("upstream.timeout_ms, upstream.attempt_timeout_ms and upstream.max_depth must be positive".into());
        }
        if self.cache.max_bytes < 65_536 {
            return Err(format!("cache.max_bytes = {}: at least 65536", self.cache.max_bytes));
        }
        // The resolver answers within its own timer; the shell's request
        // timeout must not cut that answer (a stale one, or serverTimeout) off.
        if self.limits.request_timeout_ms <= self.upstream.timeout_ms {
            return Err(format!(
                "limits.request_timeout_ms ({}) must be larger than upstream.timeout_ms ({}): the resolver answers within upstream.timeout_ms, stale or serverTimeout",
                self.limits.request_timeout_ms, self.upstream.timeout_ms
            ));
        }
        self.rate.check()?;
        if self.ohttp.replay_window_s < 2 || self.ohttp.replay_max_entries == 0 {
            return Err("ohttp: replay_window_s >= 2 and replay_max_entries > 0 are required".into());
        }
        if self.bulk.max_queries == 0 || self.bulk.new_identifiers_per_window == 0 || self.bulk.window_s == 0 {
            return Err("bulk: max_queries, new_identifiers_per_window and window_s must be positive".into());
        }
        self.log.check()?;
        self.limits.check()
    }
}
