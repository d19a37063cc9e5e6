//! The root's configuration: strict TOML (unknown keys are errors). Every
//! key is documented in `root/root.sample.toml`. Relative paths are taken
//! from the config file's directory.

use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use signpost_net::config::{ConfigError, LimitsConfig, Listen, Log, Tls, resolve};
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

impl Config {
    /// Reads and checks a config file (no binding, no table loading).
    pub fn load(path: &Path) -> Result<(Config, PathBuf), ConfigError> {
        signpost_net::config::load_toml(path, Config::check)
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
        self.log.check()?;
        self.limits.check()?;
        if self.table.reload_interval_ms == 0 {
            return Err("table.reload_interval_ms must be positive".into());
        }
        Ok(())
    }
}

