//! `signpost-authority`: an authoritative discovery provider.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use signpost_authority::config::{Backend, Config, DEFAULT_POOL_SIZE, resolve};
use signpost_authority::core::{Authority, Settings};
use signpost_authority::limits::{LimitSettings, Limiter};
use signpost_authority::service::{AuthorityService, FeedSettings};
use signpost_authority::store::{AnyStore, PgSettings, PgStore, RedbStore, Store};
use signpost_net::{Metrics, Server};
use signpost_schemas::lost::{AuthorityRef, Endpoint};
use signpost_schemas::{Clock, Name, Region, SystemClock};
use signpost_trust::Role;
use signpost_trust::sign::Signer;

const EX_USAGE: u8 = 64;
const EX_DATAERR: u8 = 65;

#[derive(Parser)]
#[command(name = "signpost-authority", version, about = "Signpost authority: signed mappings for the numbers and domains in its certificate's scope, provisioning, and a change feed for resolvers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve LoST, provisioning, the change feed and the admin plane.
    Serve {
        /// The TOML config (see authority/authority.sample.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Load and check the config, certificate and store; bind nothing.
    CheckConfig {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Import numbering data (CSV, see authority/import-format.md) into the
    /// store, all or nothing. With redb, stop the server first (the file is
    /// locked); with PostgreSQL it may run beside serving frontends.
    Import {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
        /// The CSV file.
        data: PathBuf,
        /// Default region for national-format numbers, e.g. DE.
        #[arg(long)]
        region: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("signpost-authority: {msg}");
    ExitCode::from(code)
}

struct Prepared {
    cfg: Config,
    core: Arc<Authority<AnyStore>>,
    tls: signpost_net::config::LoadedTls,
}

async fn prepare(config: &Path) -> Result<Prepared, String> {
    signpost_schemas::csi::warm_up();
    let (cfg, base) = Config::load(config).map_err(|e| e.to_string())?;
    let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tls = cfg.tls.load(&base, &id, clock.now())?;
    tls.me.require(Role::Authority).map_err(|e| format!("tls.cert: {e}"))?;
    let signer = Signer::from_pem(&tls.key_pem).map_err(|e| format!("tls.key: {e}"))?;
    let root = match &cfg.root {
        Some(r) => Some(AuthorityRef {
            id: Name::parse(&r.id).map_err(|e| e.to_string())?,
            endpoints: r.endpoints.iter().map(|e| Endpoint::parse(e).map_err(|x| x.to_string())).collect::<Result<_, _>>()?,
        }),
        None => None,
    };
    let settings = Settings {
        id,
        scope: tls.me.scope().to_vec(),
        mapping_ttl: cfg.answers.mapping_ttl_s,
        negative_ttl: cfg.answers.negative_ttl_s,
        signature_validity: cfg.answers.signature_validity_h * 3600,
        renew_before: cfg.answers.renew_before_h * 3600,
        root,
    };
    let store = open_store(&cfg, &base).await?;
    let core = Authority::new(settings, store, signer, clock).await.map_err(|e| e.to_string())?;
    Ok(Prepared { cfg, core: Arc::new(core), tls })
}

/// The configured backend; for PostgreSQL this connects (so `check-config`
/// proves the database is reachable) and applies pending migrations.
async fn open_store(cfg: &Config, base: &Path) -> Result<AnyStore, String> {
    let s = &cfg.store;
    match s.backend {
        Backend::Redb => {
            let path = s.path.as_ref().ok_or("store.path is required with backend = \"redb\"")?;
            Ok(AnyStore::Redb(RedbStore::open(&resolve(base, path)).map_err(|e| e.to_string())?))
        }
        Backend::Postgres => {
            let url = s.url.clone().ok_or("store.url is required with backend = \"postgres\"")?;
            let settings = PgSettings { url, pool_size: s.pool_size.unwrap_or(DEFAULT_POOL_SIZE), ca: s.ca.as_ref().map(|c| resolve(base, c)) };
            Ok(AnyStore::Postgres(PgStore::open(&settings).await.map_err(|e| e.to_string())?))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(1, e),
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::CheckConfig { config } => match prepare(&config).await {
                Ok(p) => {
                    let st = p.core.store().stats().await.unwrap_or_default();
                    let scope: Vec<String> = p.core.settings().scope.iter().map(ToString::to_string).collect();
                    println!(
                        "configuration OK: authority {} for {} with {} stored identifiers (feed head {})",
                        p.cfg.id,
                        scope.join(" "),
                        st.records,
                        st.head
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_USAGE, e),
            },
            Cmd::Import { config, data, region, quiet } => import(&config, &data, region.as_deref(), quiet).await,
            Cmd::Serve { config } => {
                let p = match prepare(&config).await {
                    Ok(p) => p,
                    Err(e) => return fail(EX_USAGE, e),
                };
                p.cfg.log.init();
                match serve(p).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(1, e),
                }
            }
        }
    })
}

async fn import(config: &Path, data: &Path, region: Option<&str>, quiet: bool) -> ExitCode {
    let region: Option<Region> = match region.map(str::parse).transpose() {
        Ok(r) => r,
        Err(e) => return fail(EX_USAGE, e),
    };
    let p = match prepare(config).await {
        Ok(p) => p,
        Err(e) => return fail(EX_USAGE, e),
    };
    let text = match std::fs::read_to_string(data) {
        Ok(t) => t,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", data.display())),
    };
    let items = match signpost_authority::import::parse(&text, region, 50) {
        Ok(i) => i,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", data.display());
            }
            return fail(EX_DATAERR, format!("{} bad row(s); nothing was imported", errors.len()));
        }
    };
    let n = items.len() as u64;
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(n) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} signing {pos}/{len} identifiers [{bar:40}] {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b2 = bar.clone();
    let t = std::time::Instant::now();
    let r = p.core.import(items, &move |i| b2.set_position(i)).await;
    bar.finish_and_clear();
    match r {
        Ok(r) => {
            println!(
                "imported {} identifiers from {} in {:.1} s (feed head {})",
                r.affected,
                data.display(),
                t.elapsed().as_secs_f64(),
                r.seq
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EX_DATAERR, format!("{e}; nothing was imported")),
    }
}

async fn serve(p: Prepared) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let key_id = signpost_trust::peer::key_id_of(p.tls.me.public_key()).as_str().to_owned();
    let limiter = Limiter::new(LimitSettings {
        rate: p.cfg.rate.queries_per_s,
        burst: p.cfg.rate.burst,
        miss_budget: p.cfg.rate.miss_budget,
        miss_window: p.cfg.rate.miss_window_s,
    });
    let feed = FeedSettings { heartbeat: Duration::from_millis(p.cfg.feed.heartbeat_ms), page: 512 };
    let svc = Arc::new(AuthorityService::new(p.core.clone(), limiter, feed, Bytes::from(p.tls.cert_pem.clone()), key_id, metrics.clone()));
    // Feed retention and the store-size gauge.
    let (core, keep, age_ms, m) = (p.core.clone(), p.cfg.feed.retention_count, p.cfg.feed.retention_h * 3_600_000, metrics.clone());
    tokio::spawn(async move {
        loop {
            let now = core.now();
            let cutoff = signpost_schemas::Timestamp::from_millis(now.as_millis().saturating_sub(age_ms));
            match core.store().prune(keep, cutoff).await {
                Ok(n) if n > 0 => tracing::info!(dropped = n, "feed history pruned"),
                Ok(_) => {}
                Err(e) => tracing::error!("feed prune failed: {e}"),
            }
            if let Ok(st) = core.store().stats().await {
                m.counter("signpost_store_records").store(st.records, std::sync::atomic::Ordering::Relaxed);
                m.counter("signpost_feed_head").store(st.head, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    // Several frontends on one PostgreSQL database: follow the commits of
    // the others (notifications, and a poll every second as the fallback).
    if p.core.follow(Duration::from_secs(1)).is_some() {
        tracing::info!("following the shared store's feed head");
    }
    let tls = if p.cfg.dev_plaintext { None } else { Some(p.tls.server.clone()) };
    let server = Server::new(svc, tls, Some(p.tls.anchor.clone()), p.cfg.limits.to_limits(), metrics.clone(), Arc::new(SystemClock));
    tracing::info!(id = %p.cfg.id, "authority ready");
    signpost_net::run(server, &p.cfg.listen, metrics).await
}
