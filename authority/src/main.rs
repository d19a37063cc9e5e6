//! `signpost-authority`: an authoritative discovery provider.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{CommandFactory, Parser, Subcommand};
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

use signpost_net::exit;

const EX_USAGE: u8 = exit::USAGE;
const EX_DATAERR: u8 = exit::DATA;
/// Bad rows reported per import run, at most.
const MAX_IMPORT_ERRORS: usize = 50;

#[derive(Parser)]
#[command(name = "signpost-authority", version, after_help = exit::HELP, about = "Signpost authority: signed mappings for the numbers and domains in its certificate's scope, provisioning, and a change feed for resolvers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Cmd {
    /// Show the stored record of one identifier: state, serving TNSP, epoch
    /// and every MSP entry. Reads the store: stop the server first.
    Show {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
        /// A phone number, an email address or a MIMI user identifier
        /// (mymimi.example.com).
        csi: String,
        /// Default region for national-format numbers, e.g. DE.
        #[arg(long)]
        region: Option<String>,
    },
    /// List stored identifiers under an E.164 prefix (+4915) or whose URI
    /// starts with a text (mailto:alice), one line each. Reads the store:
    /// stop the server first.
    List {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
        /// +<digits>, or the start of a CSI URI.
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Provision one record through a running authority's `POST
    /// /v1/provision` (mTLS; the client certificate's role decides what is
    /// allowed), without writing XML.
    Provision {
        /// The authority's provisioning URL base, e.g. https://127.0.0.1:7402.
        #[arg(long)]
        server: String,
        /// The authority's id (its certificate name).
        #[arg(long)]
        server_id: String,
        /// The deployment CA certificate.
        #[arg(long)]
        ca: PathBuf,
        /// The client certificate (role msp, csip or admin).
        #[arg(long)]
        cert: PathBuf,
        /// Its key.
        #[arg(long)]
        key: PathBuf,
        /// Default region for national-format numbers, e.g. DE.
        #[arg(long)]
        region: Option<String>,
        #[command(subcommand)]
        op: ProvisionOp,
    },
    #[command(flatten)]
    Docs(signpost_net::docs::DocsCmd),
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
    /// Import numbering data (CSV, or a private-ENUM DNS zone file; see
    /// authority/import-format.md) into the store, all or nothing. With
    /// redb, stop the server first (the file is locked); with PostgreSQL it
    /// may run beside serving frontends.
    Import {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
        /// The CSV or zone file.
        data: PathBuf,
        /// Default region for national-format numbers, e.g. DE (CSV).
        #[arg(long)]
        region: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// csv or zone; by default a file ending in .zone, or starting with
        /// a $ORIGIN/$TTL directive or a record line, is a zone file.
        #[arg(long)]
        format: Option<String>,
        /// Zone: the TNSP the numbers are assigned to (default: this
        /// authority's id).
        #[arg(long)]
        tnsp: Option<String>,
        /// Zone: the ENUM apex the owner names are under (default: dns.enum_apex
        /// of the config, else e164.arpa).
        #[arg(long)]
        enum_apex: Option<String>,
    },
}

/// One provisioning operation.
#[derive(Subcommand)]
enum ProvisionOp {
    /// CSIP: assign a number (new epoch), to the caller unless --tnsp.
    Assign {
        /// The identifier.
        csi: String,
        /// The serving TNSP / email provider.
        #[arg(long)]
        tnsp: Option<String>,
    },
    /// CSIP: release (every entry removed, epoch bumped).
    Release {
        /// The identifier.
        csi: String,
    },
    /// CSIP (or admin): opt the number out of discovery: it answers one
    /// signed mapping with no URI until opt-in or release.
    OptOut {
        /// The identifier.
        csi: String,
    },
    /// CSIP (or admin): end an opt-out; the entries are visible again.
    OptIn {
        /// The identifier.
        csi: String,
    },
    /// CSIP: port to another TNSP (donor-bound entries removed).
    Port {
        /// The identifier.
        csi: String,
        /// The recipient TNSP.
        #[arg(long)]
        to: String,
    },
    /// MSP: create or replace the caller's entry.
    PutEntry {
        /// The identifier.
        csi: String,
        /// The MSP (the caller's own id for an MSP).
        #[arg(long)]
        provider: String,
        /// A messaging URI, e.g. mimi://provider.example/u/alice; repeatable.
        #[arg(long, required = true)]
        uri: Vec<String>,
        /// Lower is preferred.
        #[arg(long, default_value_t = 10)]
        priority: u32,
        /// A tag (business, personal, …); repeatable.
        #[arg(long)]
        tag: Vec<String>,
        /// msp-verified or csip-attested.
        #[arg(long, default_value = "msp-verified")]
        assurance: String,
        /// A display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Removed when the number is ported away.
        #[arg(long)]
        bound_to_tnsp: bool,
    },
    /// MSP: remove an entry.
    RemoveEntry {
        /// The identifier.
        csi: String,
        /// Whose entry.
        #[arg(long)]
        provider: String,
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
    let cli: Cli = match signpost_net::docs::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(exit::INTERNAL, e),
    };
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Docs(d) => d.run(Cli::command(), "signpost-authority"),
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
            Cmd::Import { config, data, region, quiet, format, tnsp, enum_apex } => {
                import(&config, &data, region.as_deref(), quiet, ZoneArgs { format, tnsp, enum_apex }).await
            }
            Cmd::Show { config, csi, region } => show(&config, &csi, region.as_deref()).await,
            Cmd::List { config, prefix, limit } => list(&config, &prefix, limit).await,
            Cmd::Provision { server, server_id, ca, cert, key, region, op } => {
                match provision(&server, &server_id, &ca, &cert, &key, region.as_deref(), op).await {
                    Ok(code) => code,
                    Err((code, e)) => fail(code, e),
                }
            }
            Cmd::Serve { config } => {
                let p = match prepare(&config).await {
                    Ok(p) => p,
                    Err(e) => return fail(EX_USAGE, e),
                };
                let log = p.cfg.log.init_reloadable();
                match serve(p, config.clone(), log).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(exit::UNAVAILABLE, e),
                }
            }
        }
    })
}

fn parse_csi(csi: &str, region: Option<&str>) -> Result<signpost_schemas::Csi, String> {
    let region: Option<Region> = region.map(str::parse).transpose().map_err(|e: signpost_schemas::CsiError| e.to_string())?;
    signpost_schemas::Csi::parse(csi, region).map_err(|e| format!("{csi:?}: {e}"))
}

fn describe(r: &signpost_authority::model::NumberRecord) -> String {
    use signpost_authority::model::State;
    let state = match &r.state {
        State::Assigned { tnsp } => format!("assigned to {tnsp}"),
        State::Released => "released".to_owned(),
    };
    let mut out = format!("{}  {state}  epoch {}  {} entr{}\n", r.csi.uri(), r.epoch.0, r.entries.len(), if r.entries.len() == 1 { "y" } else { "ies" });
    for e in &r.entries {
        let e = &e.record;
        let uris: Vec<&str> = e.uris.iter().map(|u| u.as_str()).collect();
        let tags: Vec<&str> = e.tags.iter().map(|t| t.as_str()).collect();
        out.push_str(&format!(
            "  {}{}  priority {}  {}{}{}  {}\n",
            e.provider,
            e.display_name.as_ref().map_or_else(String::new, |d| format!(" {:?}", d.text)),
            e.priority,
            e.assurance.as_str(),
            if tags.is_empty() { String::new() } else { format!("  tags {}", tags.join(",")) },
            if e.bound_to_tnsp { "  bound to tnsp" } else { "" },
            uris.join(" ")
        ));
    }
    out
}

/// Opens only the store (no TLS material is needed to read it). The
/// embedded store is locked while its server runs; PostgreSQL is not.
async fn open_store_of(config: &Path) -> Result<AnyStore, String> {
    let (cfg, base) = Config::load(config).map_err(|e| e.to_string())?;
    open_store(&cfg, &base).await.map_err(|e| match cfg.store.backend {
        Backend::Redb => format!("{e} (is the server running? stop it first)"),
        Backend::Postgres => e,
    })
}

async fn show(config: &Path, csi: &str, region: Option<&str>) -> ExitCode {
    signpost_schemas::csi::warm_up();
    let csi = match parse_csi(csi, region) {
        Ok(c) => c,
        Err(e) => return fail(EX_USAGE, e),
    };
    let store = match open_store_of(config).await {
        Ok(s) => s,
        Err(e) => return fail(EX_USAGE, e),
    };
    match store.get(&csi).await {
        Ok(Some(r)) => {
            print!("{}", describe(&r));
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("{}: not in the store", csi.uri());
            ExitCode::from(exit::NOT_FOUND)
        }
        Err(e) => fail(exit::INTERNAL, e),
    }
}

async fn list(config: &Path, prefix: &str, limit: usize) -> ExitCode {
    let key = if prefix.starts_with('+') {
        match signpost_schemas::E164Prefix::parse(prefix) {
            Ok(p) => format!("tel:{}", p.as_str()),
            Err(e) => return fail(EX_USAGE, format!("{prefix:?}: {e}")),
        }
    } else {
        prefix.to_owned()
    };
    let store = match open_store_of(config).await {
        Ok(s) => s,
        Err(e) => return fail(EX_USAGE, e),
    };
    match store.list(&key, limit).await {
        Ok(rs) => {
            for r in &rs {
                print!("{}", describe(r));
            }
            if rs.len() >= limit {
                eprintln!("signpost-authority: the first {limit}; raise --limit for more");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::INTERNAL, e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn provision(server: &str, server_id: &str, ca: &Path, cert: &Path, key: &Path, region: Option<&str>, op: ProvisionOp) -> Result<ExitCode, (u8, String)> {
    use signpost_schemas::lost::{Assurance, Tag, Uri};
    use signpost_schemas::sp::{EntryRecord, Provision, ProvisionResult, Visibility};
    let usage = |e: String| (EX_USAGE, e);
    signpost_schemas::csi::warm_up();
    let name = |s: &str| Name::parse(s).map_err(|e| usage(format!("{s:?}: {e}")));
    let csi = |s: &str| parse_csi(s, region).map_err(usage);
    let p = match op {
        ProvisionOp::Assign { csi: c, tnsp } => Provision::Assign { csi: csi(&c)?, tnsp: tnsp.as_deref().map(name).transpose()? },
        ProvisionOp::Release { csi: c } => Provision::Release { csi: csi(&c)? },
        ProvisionOp::OptOut { csi: c } => Provision::OptOut { csi: csi(&c)? },
        ProvisionOp::OptIn { csi: c } => Provision::OptIn { csi: csi(&c)? },
        ProvisionOp::Port { csi: c, to } => Provision::Port { csi: csi(&c)?, to: name(&to)? },
        ProvisionOp::RemoveEntry { csi: c, provider } => Provision::RemoveEntry { csi: csi(&c)?, provider: name(&provider)? },
        ProvisionOp::PutEntry { csi: c, provider, uri, priority, tag, assurance, display_name, bound_to_tnsp } => Provision::PutEntry {
            csi: csi(&c)?,
            entry: EntryRecord {
                provider: name(&provider)?,
                display_name: display_name.map(|text| signpost_schemas::DisplayName { text, lang: "en".into() }),
                uris: uri.iter().map(|u| Uri::parse(u).map_err(|e| usage(format!("--uri {u:?}: {e}")))).collect::<Result<_, _>>()?,
                priority,
                tags: tag.iter().map(|t| Tag::parse(t).map_err(|e| usage(format!("--tag {t:?}: {e}")))).collect::<Result<_, _>>()?,
                assurance: Assurance::parse(&assurance).map_err(|e| usage(format!("--assurance: {e}")))?,
                bound_to_tnsp,
                visibility: Visibility::All,
            },
        },
    };
    let read = |p: &Path| std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())));
    let anchor = signpost_trust::TrustAnchor::from_pem(&read(ca)?).map_err(|e| usage(format!("{}: {e}", ca.display())))?;
    let id = signpost_trust::tls::Identity::from_pem(&read(cert)?, &read(key)?).map_err(|e| usage(format!("{} / {}: {e}", cert.display(), key.display())))?;
    let tls = signpost_trust::tls::client_config(&anchor, Some(&id)).map_err(|e| usage(e.to_string()))?;
    let client = signpost_net::client::Client::new(Arc::new(tls), Duration::from_secs(10));
    let url = format!("{}/v1/provision", server.trim_end_matches('/'));
    let ep = Endpoint::parse(&url).map_err(|e| usage(format!("--server: {e}")))?;
    let sid = name(server_id)?;
    let a = client
        .raw(&ep, &sid, signpost_net::hyper::Method::POST, signpost_authority::service::PROVISION_CONTENT_TYPE, Bytes::from(p.encode()))
        .await
        .map_err(|e| (exit::UNAVAILABLE, format!("{url}: {e}")))?;
    if a.status == 200
        && let Ok(r) = ProvisionResult::decode(&a.body)
    {
        println!("ok: {} changed, feed position {}{}", r.affected, r.seq, r.epoch.map_or_else(String::new, |e| format!(", epoch {}", e.0)));
        return Ok(ExitCode::SUCCESS);
    }
    let body = String::from_utf8_lossy(&a.body);
    let why = match signpost_schemas::Response::decode(&a.body, &signpost_schemas::Limits::MESSAGE) {
        Ok(signpost_schemas::Response::Errors(e)) => e.list.issues().iter().map(|i| format!("{}: {}", i.kind.element(), i.message.as_ref().map_or("", |m| m.text.as_str()))).collect::<Vec<_>>().join("; "),
        _ => body.chars().take(500).collect(),
    };
    let code = if a.status >= 500 { exit::UNAVAILABLE } else { exit::DATA };
    Err((code, format!("refused (HTTP {}): {why}", a.status)))
}

/// The zone-file options of `import`.
struct ZoneArgs {
    format: Option<String>,
    tnsp: Option<String>,
    enum_apex: Option<String>,
}

async fn import(config: &Path, data: &Path, region: Option<&str>, quiet: bool, zone: ZoneArgs) -> ExitCode {
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
    let is_zone = match zone.format.as_deref() {
        Some("zone") => true,
        Some("csv") => false,
        Some(f) => return fail(EX_USAGE, format!("--format {f:?}: use csv or zone")),
        None => signpost_authority::zone_import::looks_like_zone(data, &text),
    };
    let parsed = if is_zone {
        let tnsp = match Name::parse(zone.tnsp.as_deref().unwrap_or(&p.cfg.id)) {
            Ok(t) => t,
            Err(e) => return fail(EX_USAGE, format!("--tnsp: {e}")),
        };
        let apex = zone.enum_apex.clone().or_else(|| p.cfg.dns.as_ref().map(|d| d.enum_apex.clone())).unwrap_or_else(|| "e164.arpa".into());
        let opts = signpost_authority::zone_import::ZoneOptions { apex, tnsp, origin: None };
        signpost_authority::zone_import::parse(&text, &opts, MAX_IMPORT_ERRORS).map(|(items, s)| {
            if !quiet {
                eprintln!(
                    "import: {}: zone file: {} records, {} messaging NAPTRs mapped, {} skipped (not discovery data)",
                    data.display(),
                    s.records,
                    s.mapped,
                    s.skipped
                );
            }
            items
        })
    } else {
        signpost_authority::import::parse(&text, region, MAX_IMPORT_ERRORS)
    };
    let items = match parsed {
        Ok(i) => i,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", data.display());
            }
            let more = if errors.len() >= MAX_IMPORT_ERRORS { " (the first ones; there may be more)" } else { "" };
            return fail(EX_DATAERR, format!("{}: {} bad row(s){more}; nothing was imported", data.display(), errors.len()));
        }
    };
    match p.core.import_problems(&items, MAX_IMPORT_ERRORS).await {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => {
            for e in &problems {
                eprintln!("{}: {e}", data.display());
            }
            let more = if problems.len() >= MAX_IMPORT_ERRORS { " (the first ones; there may be more)" } else { "" };
            return fail(EX_DATAERR, format!("{}: {} bad row(s){more}; nothing was imported", data.display(), problems.len()));
        }
        Err(e) => return fail(EX_DATAERR, format!("{}: {e}; nothing was imported", data.display())),
    }
    let n = items.len() as u64;
    // On a terminal a progress bar; elsewhere (a log, systemd, CI) one line
    // per phase and per tenth of the signing.
    let plain = !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    if plain {
        eprintln!("import: {}: {n} identifiers checked (rows valid, in scope, new to the store); signing", data.display());
    }
    let bar = if quiet || plain { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(n) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} signing {pos}/{len} identifiers [{bar:40}] {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b2 = bar.clone();
    let t = std::time::Instant::now();
    let tenth = (n / 10).max(1);
    let r = p.core.import(items, &move |i| {
        b2.set_position(i);
        if plain && (i % tenth == 0 || i == n) {
            eprintln!("import: signed {i}/{n} ({}%)", i * 100 / n.max(1));
        }
    })
    .await;
    bar.finish_and_clear();
    if plain {
        eprintln!("import: written in one transaction");
    }
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
        Err(e) => fail(EX_DATAERR, format!("{}: {e}; nothing was imported", data.display())),
    }
}

/// The per-client limits of `[rate]`.
fn limiter_of(cfg: &Config) -> Limiter {
    Limiter::new(LimitSettings { rate: cfg.rate.queries_per_s, burst: cfg.rate.burst, miss_budget: cfg.rate.miss_budget, miss_window: cfg.rate.miss_window_s })
}

async fn serve(p: Prepared, config: PathBuf, log: signpost_net::config::LogReload) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    metrics.build_info("authority", env!("CARGO_PKG_VERSION"));
    metrics.certificate_expiry(p.tls.me.not_after(), Arc::new(SystemClock));
    let key_id = signpost_trust::peer::key_id_of(p.tls.me.public_key()).as_str().to_owned();
    let limiter = limiter_of(&p.cfg);
    let feed = FeedSettings { heartbeat: Duration::from_millis(p.cfg.feed.heartbeat_ms), page: 512 };
    let svc = Arc::new(AuthorityService::new(p.core.clone(), limiter, feed, Bytes::from(p.tls.cert_pem.clone()), key_id, metrics.clone()));
    // Registered now, so a scrape before the first reading sees them.
    for g in ["signpost_store_records", "signpost_feed_head", "signpost_feed_subscribers"] {
        metrics.gauge(g);
    }
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
                m.gauge("signpost_store_records").set_u64(st.records);
                m.gauge("signpost_feed_head").set_u64(st.head);
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
    // The DNS bridge, when configured: plain DNS beside LoST.
    let dns = match &p.cfg.dns {
        Some(d) => {
            let zones = signpost_authority::dns::Zones::new(d, &p.cfg.id, &p.core.settings().scope, p.cfg.answers.negative_ttl_s)?;
            // Its own limiter with the same [rate] settings (DNS clients
            // are keyed by address, LoST clients by certificate).
            let bridge = Arc::new(signpost_authority::dns::DnsBridge::new(zones, p.core.clone(), limiter_of(&p.cfg)));
            Some(signpost_authority::dns::DnsListener::start(d, bridge).await?)
        }
        None => None,
    };
    tracing::info!(id = %p.cfg.id, "authority ready");
    // SIGHUP reloads the certificate and key (for new connections; open ones
    // keep theirs) and the log level.
    signpost_net::reload_on_hangup(server.tls_switch(), log, move || {
        let (cfg, base) = Config::load(&config).map_err(|e| e.to_string())?;
        let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
        let tls = cfg.tls.load(&base, &id, SystemClock.now())?;
        tls.me.require(Role::Authority).map_err(|e| format!("tls.cert: {e}"))?;
        Ok((Some(tls.server), cfg.log.level.clone()))
    });
    let r = signpost_net::run(server, &p.cfg.listen, metrics).await;
    if let Some(d) = dns {
        d.stop().await;
    }
    r
}
