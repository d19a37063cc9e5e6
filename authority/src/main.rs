//! `signpost-authority`: an authoritative discovery provider.

/// mimalloc instead of the system allocator: a bulk import allocates and
/// frees millions of small strings across threads, where glibc's malloc
/// took a third of the CPU (measured with perf).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
const MAX_IMPORT_ERRORS: usize = signpost_authority::bulk::MAX_ERRORS;

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
    /// authority/import-format.md) into the store. CSV: pass 1 checks the
    /// whole file (nothing is written if a row is bad); pass 2 signs on
    /// every core and writes in batches, each with a checkpoint in the same
    /// transaction: an interrupted import (a crash, kill -9) resumes where
    /// it stopped when run again with the same file. A zone file is checked
    /// whole and written in one transaction. At the end a redb file is
    /// compacted. With --config the store is opened here: a redb file must
    /// not be held by a running server (PostgreSQL may be). With --server
    /// the running authority imports the CSV file itself (it must be on
    /// the server's machine) while it keeps answering, and the feed
    /// carries every imported identifier to the subscribed resolvers; this
    /// command follows its progress and exits as an offline import would.
    Import {
        /// The TOML config (offline import).
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        config: Option<PathBuf>,
        /// Online import: the running authority's URL base, e.g.
        /// https://127.0.0.1:7402 (needs --server-id, --ca, --cert, --key).
        #[arg(long, requires_all = ["server_id", "ca", "cert", "key"])]
        server: Option<String>,
        /// Online import: the authority's id (its certificate name).
        #[arg(long, requires = "server")]
        server_id: Option<String>,
        /// Online import: the deployment CA certificate.
        #[arg(long, requires = "server")]
        ca: Option<PathBuf>,
        /// Online import: an admin-role client certificate.
        #[arg(long, requires = "server")]
        cert: Option<PathBuf>,
        /// Online import: its key.
        #[arg(long, requires = "server")]
        key: Option<PathBuf>,
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
    /// Write every stored identifier in the import format (the full
    /// header, with epoch, opt-out, visibility and display-name language),
    /// in identifier order, for backups and for moving between backends:
    /// importing the file into an empty store and exporting again gives the
    /// same bytes. Delegations are not included. With redb, stop the server
    /// first.
    Export {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
        /// The CSV file to write (written as OUT.partial, renamed when
        /// complete); standard output without it.
        out: Option<PathBuf>,
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
    /// The config file's directory (relative paths are taken from it).
    base: PathBuf,
    core: Arc<Authority<AnyStore>>,
    tls: signpost_net::config::LoadedTls,
}

/// The redb page cache of `import` (it mostly writes: a small cache keeps
/// its memory bounded whatever the file size).
const IMPORT_CACHE: usize = 64 << 20;

async fn prepare(config: &Path) -> Result<Prepared, String> {
    prepare_with(config, None).await
}

async fn prepare_with(config: &Path, cache: Option<usize>) -> Result<Prepared, String> {
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
    let store = open_store(&cfg, &base, cache).await?;
    let core = Authority::new(settings, store, signer, clock).await.map_err(|e| e.to_string())?.with_signature_cache(cfg.answers.signature_cache_mib << 20).with_answer_cache(cfg.answers.answer_cache_mib << 20);
    Ok(Prepared { cfg, base: base.to_path_buf(), core: Arc::new(core), tls })
}

/// The configured backend; for PostgreSQL this connects (so `check-config`
/// proves the database is reachable) and applies pending migrations.
async fn open_store(cfg: &Config, base: &Path, cache: Option<usize>) -> Result<AnyStore, String> {
    let s = &cfg.store;
    match s.backend {
        Backend::Redb => {
            let path = s.path.as_ref().ok_or("store.path is required with backend = \"redb\"")?;
            Ok(AnyStore::Redb(RedbStore::open_with_cache(&resolve(base, path), cache).map_err(|e| e.to_string())?))
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
            Cmd::Import { config, server, server_id, ca, cert, key, data, region, quiet, format, tnsp, enum_apex } => match (config, server, server_id, ca, cert, key) {
                (Some(config), ..) => import(&config, &data, region.as_deref(), quiet, ZoneArgs { format, tnsp, enum_apex }).await,
                (None, Some(server), Some(server_id), Some(ca), Some(cert), Some(key)) => {
                    if format.as_deref().is_some_and(|f| f != "csv") || tnsp.is_some() || enum_apex.is_some() {
                        return fail(EX_USAGE, "an online import (--server) takes CSV files only; import a zone file offline (--config)");
                    }
                    let client = OnlineClient { server, server_id, ca, cert, key };
                    match import_online(&client, &data, region.as_deref(), quiet).await {
                        Ok(code) => code,
                        Err((code, e)) => fail(code, e),
                    }
                }
                _ => fail(EX_USAGE, "import needs --config (offline) or --server with --server-id, --ca, --cert and --key (online)"),
            },
            Cmd::Export { config, out } => export(&config, out.as_deref()).await,
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
    open_store(&cfg, &base, Some(IMPORT_CACHE)).await.map_err(|e| match cfg.store.backend {
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
    let is_zone = match zone.format.as_deref() {
        Some("zone") => true,
        Some("csv") => false,
        Some(f) => return fail(EX_USAGE, format!("--format {f:?}: use csv or zone")),
        None => {
            // Sniffed from the name and the first lines.
            let head = match std::fs::File::open(data) {
                Ok(f) => {
                    use std::io::Read as _;
                    let mut b = Vec::with_capacity(8192);
                    let _ = f.take(8192).read_to_end(&mut b);
                    String::from_utf8_lossy(&b).into_owned()
                }
                Err(e) => return fail(EX_USAGE, format!("{}: {e}", data.display())),
            };
            signpost_authority::zone_import::looks_like_zone(data, &head)
        }
    };
    if is_zone { import_zone(config, data, quiet, zone).await } else { import_csv(config, data, region, quiet).await }
}

/// A private-ENUM zone file: parsed whole, checked, written in one transaction.
async fn import_zone(config: &Path, data: &Path, quiet: bool, zone: ZoneArgs) -> ExitCode {
    let p = match prepare_with(config, Some(IMPORT_CACHE)).await {
        Ok(p) => p,
        Err(e) => return fail(EX_USAGE, e),
    };
    let text = match std::fs::read_to_string(data) {
        Ok(t) => t,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", data.display())),
    };
    let tnsp = match Name::parse(zone.tnsp.as_deref().unwrap_or(&p.cfg.id)) {
        Ok(t) => t,
        Err(e) => return fail(EX_USAGE, format!("--tnsp: {e}")),
    };
    let apex = zone.enum_apex.clone().or_else(|| p.cfg.dns.as_ref().map(|d| d.enum_apex.clone())).unwrap_or_else(|| "e164.arpa".into());
    let opts = signpost_authority::zone_import::ZoneOptions { apex, tnsp, origin: None };
    let items = match signpost_authority::zone_import::parse(&text, &opts, MAX_IMPORT_ERRORS) {
        Ok((items, st)) => {
            if !quiet {
                eprintln!("import: {}: zone file: {} records, {} messaging NAPTRs mapped, {} skipped (not discovery data)", data.display(), st.records, st.mapped, st.skipped);
            }
            items
        }
        Err(errors) => return bad_rows(data, &errors),
    };
    let recs: Vec<signpost_authority::import::ImportRecord> =
        items.iter().map(|it| signpost_authority::import::ImportRecord { item: it.clone(), epoch: signpost_schemas::lost::Epoch(1), opted_out: false, offset: 0 }).collect();
    match p.core.import_problems(&recs, 0, MAX_IMPORT_ERRORS).await {
        Ok(problems) if problems.is_empty() => {}
        Ok(problems) => return bad_rows(data, &problems),
        Err(e) => return fail(EX_DATAERR, format!("{}: {e}; nothing was imported", data.display())),
    }
    let n = items.len();
    match p.core.import(items, &|_| {}).await {
        Ok(r) => {
            println!("imported {n} identifiers from {} (feed head {})", data.display(), r.seq);
            ExitCode::SUCCESS
        }
        Err(e) => fail(EX_DATAERR, format!("{}: {e}; nothing was imported", data.display())),
    }
}

fn bad_rows(data: &Path, errors: &[String]) -> ExitCode {
    for e in errors {
        eprintln!("{}: {e}", data.display());
    }
    let more = if errors.len() >= MAX_IMPORT_ERRORS { " (the first ones; there may be more)" } else { "" };
    fail(EX_DATAERR, format!("{}: {} bad row(s){more}; nothing was imported", data.display(), errors.len()))
}

async fn import_csv(config: &Path, data: &Path, region: Option<&str>, quiet: bool) -> ExitCode {
    use signpost_authority::bulk::{self, Failed, Step};
    use signpost_authority::import::cores;
    let region: Option<Region> = match region.map(str::parse).transpose() {
        Ok(r) => r,
        Err(e) => return fail(EX_USAGE, e),
    };
    let p = match prepare_with(config, Some(IMPORT_CACHE)).await {
        Ok(p) => p,
        Err(e) if e.contains(signpost_authority::store::HELD) => {
            return fail(
                exit::UNAVAILABLE,
                format!("{e}; stop the server, or import through it: signpost-authority import --server https://HOST:PORT --server-id ID --ca CA.pem --cert ADMIN-CERT.pem --key ADMIN-KEY.pem {}", data.display()),
            );
        }
        Err(e) => return fail(EX_USAGE, e),
    };
    if let Err(e) = std::fs::File::open(data) {
        return fail(EX_USAGE, format!("{}: {e}", data.display()));
    }
    let name = data.display().to_string();
    let core = p.core.clone();
    let t = std::time::Instant::now();
    let plain = !quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if quiet || plain { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} importing {pos}/{len} identifiers [{bar:40}] {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let reported = std::sync::atomic::AtomicU64::new(0);
    let step = |s: Step| match s {
        Step::Checking { .. } => {}
        Step::Writing { total, done, resume_line } => {
            if plain {
                eprintln!("import: {name}: {total} identifiers checked (rows valid, in scope, new to the store); building records on {} threads and writing them in batches (unsigned: signed when first answered)", cores());
                if let Some(l) = resume_line {
                    eprintln!("import: resuming an interrupted import: {done} of {total} identifiers were written; continuing at line {l}");
                }
            }
            bar.set_length(total);
            bar.set_position(done);
            reported.store(done / (total / 10).max(1), std::sync::atomic::Ordering::Relaxed);
        }
        Step::Written { done, total, .. } => {
            bar.set_position(done);
            let tenth = (total / 10).max(1);
            if plain && (done / tenth > reported.load(std::sync::atomic::Ordering::Relaxed) || done == total) {
                reported.store(done / tenth, std::sync::atomic::Ordering::Relaxed);
                eprintln!("import: written {done}/{total} ({}%)", done * 100 / total.max(1));
            }
        }
    };
    let outcome = match bulk::run(&core, data, region, None, &step).await {
        Ok(o) => o,
        Err(Failed::BadRows { errors, .. }) => return bad_rows(data, &errors),
        Err(e) => return fail(e.exit_code(), format!("{name}: {e}")),
    };
    bar.finish_and_clear();
    // The embedded file: without the pages the batches' commits freed.
    let compact = match (&p.cfg.store.backend, &p.cfg.store.path) {
        (Backend::Redb, Some(path)) => Some(resolve(&p.base, path)),
        _ => None,
    };
    if let Some(path) = compact {
        drop(core);
        drop(p);
        match tokio::task::spawn_blocking(move || RedbStore::compact_file(&path, Some(IMPORT_CACHE))).await {
            Ok(Ok((before, after))) if plain => eprintln!("import: store compacted from {} to {} MiB", before >> 20, after >> 20),
            Ok(Ok(_)) => {}
            // Everything is written; only the file is larger than it needs to be.
            Ok(Err(e)) => eprintln!("signpost-authority: compacting the store: {e} (the import is complete)"),
            Err(e) => return fail(exit::INTERNAL, e),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let (total, before) = (outcome.total, outcome.before);
    let now = total - before;
    let resumed = if before > 0 { format!(" ({before} by an earlier, interrupted run)") } else { String::new() };
    println!("imported {total} identifiers from {name}{resumed}: {now} written in {secs:.1} s ({:.0} identifiers/s; feed head {})", now as f64 / secs.max(1e-9), outcome.seq);
    ExitCode::SUCCESS
}

/// How to reach a running authority as an admin.
struct OnlineClient {
    server: String,
    server_id: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// How often `import --server` asks for the status.
const IMPORT_POLL: Duration = Duration::from_millis(200);

/// `import --server`: asks the running authority to import the file (its
/// absolute path), then follows the status until the import ends, and
/// exits as the offline import would.
async fn import_online(c: &OnlineClient, data: &Path, region: Option<&str>, quiet: bool) -> Result<ExitCode, (u8, String)> {
    use signpost_authority::bulk::{JobState, JobStatus};
    use signpost_authority::service::{IMPORT_CONTENT_TYPE, IMPORT_PATH};
    let usage = |e: String| (EX_USAGE, e);
    let file = std::fs::canonicalize(data).map_err(|e| usage(format!("{}: {e}", data.display())))?;
    let name = data.display().to_string();
    if let Some(r) = region {
        r.parse::<Region>().map_err(|e| usage(format!("--region: {e}")))?;
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())));
    let anchor = signpost_trust::TrustAnchor::from_pem(&read(&c.ca)?).map_err(|e| usage(format!("{}: {e}", c.ca.display())))?;
    let id = signpost_trust::tls::Identity::from_pem(&read(&c.cert)?, &read(&c.key)?).map_err(|e| usage(format!("{} / {}: {e}", c.cert.display(), c.key.display())))?;
    let tls = signpost_trust::tls::client_config(&anchor, Some(&id)).map_err(|e| usage(e.to_string()))?;
    let client = signpost_net::client::Client::new(Arc::new(tls), Duration::from_secs(10));
    let url = format!("{}{IMPORT_PATH}", c.server.trim_end_matches('/'));
    let ep = Endpoint::parse(&url).map_err(|e| usage(format!("--server: {e}")))?;
    let sid = Name::parse(&c.server_id).map_err(|e| usage(format!("--server-id: {e}")))?;
    let mut req = format!("file {}\n", file.display());
    if let Some(r) = region {
        req.push_str(&format!("region {r}\n"));
    }
    let t = std::time::Instant::now();
    let unreachable = |e: String| (exit::UNAVAILABLE, format!("{url}: {e}"));
    let a = client.raw(&ep, &sid, signpost_net::hyper::Method::POST, IMPORT_CONTENT_TYPE, Bytes::from(req)).await.map_err(|e| unreachable(e.to_string()))?;
    let body = String::from_utf8_lossy(&a.body).into_owned();
    let started = match a.status {
        202 => JobStatus::decode(&body).map_err(|e| (exit::INTERNAL, e))?,
        409 => {
            let running = JobStatus::decode(&body).map(|s| format!(" (import {} of {} by {})", s.id, s.file, s.by)).unwrap_or_default();
            return Err((exit::UNAVAILABLE, format!("{url}: another import is running{running}; wait for it to end")));
        }
        403 => return Err((EX_USAGE, format!("{url}: refused (HTTP 403): {}", body.trim()))),
        s if s >= 500 => return Err(unreachable(format!("HTTP {s}: {}", body.trim()))),
        s => return Err((EX_DATAERR, format!("{name}: refused (HTTP {s}): {}", body.trim()))),
    };
    if !quiet {
        eprintln!("import: {name}: import {} started on {} (the server reads the file and keeps answering)", started.id, c.server_id);
    }
    let mut reported = (JobState::Checking, 0u64);
    let lost = |e: String| (exit::UNAVAILABLE, format!("{url}: lost the import's status: {e}; the server may still be importing (the store keeps a checkpoint: a run of the same import resumes an interrupted one)"));
    let st = loop {
        tokio::time::sleep(IMPORT_POLL).await;
        let a = client.raw(&ep, &sid, signpost_net::hyper::Method::GET, IMPORT_CONTENT_TYPE, Bytes::new()).await.map_err(|e| lost(e.to_string()))?;
        if a.status != 200 {
            return Err(lost(format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body).trim())));
        }
        let st = JobStatus::decode(&String::from_utf8_lossy(&a.body)).map_err(|e| (exit::INTERNAL, e))?;
        if st.id != started.id {
            return Err(lost(format!("the server now reports import {} (was it restarted?)", st.id)));
        }
        if !quiet {
            match st.state {
                JobState::Writing if reported.0 == JobState::Checking => {
                    eprintln!("import: {name}: {} identifiers checked (rows valid, in scope, new to the store); writing them in batches", st.total);
                    if st.before > 0 {
                        eprintln!("import: resuming an interrupted import: {} of {} identifiers were written", st.before, st.total);
                    }
                    reported = (JobState::Writing, st.written * 10 / st.total.max(1));
                }
                JobState::Writing if st.written * 10 / st.total.max(1) > reported.1 => {
                    reported.1 = st.written * 10 / st.total.max(1);
                    eprintln!("import: written {}/{} ({}%)", st.written, st.total, st.written * 100 / st.total.max(1));
                }
                JobState::Done => eprintln!("import: written {}/{} (100%)", st.total, st.total),
                _ => {}
            }
        }
        if matches!(st.state, JobState::Done | JobState::Failed) {
            break st;
        }
    };
    if let Some((code, e)) = &st.error {
        if !st.bad.is_empty() {
            return Ok(bad_rows(data, &st.bad));
        }
        return Err((*code, format!("{name}: {e}")));
    }
    let secs = t.elapsed().as_secs_f64();
    let now = st.total - st.before;
    let resumed = if st.before > 0 { format!(" ({} by an earlier, interrupted run)", st.before) } else { String::new() };
    println!("imported {} identifiers from {name}{resumed} into the running server: {now} written in {secs:.1} s ({:.0} identifiers/s; feed head {})", st.total, now as f64 / secs.max(1e-9), st.seq);
    Ok(ExitCode::SUCCESS)
}

async fn export(config: &Path, out: Option<&Path>) -> ExitCode {
    use std::io::Write as _;
    let store = match open_store_of(config).await {
        Ok(s) => s,
        Err(e) => return fail(EX_USAGE, e),
    };
    let partial = out.map(|o| {
        let mut p = o.as_os_str().to_owned();
        p.push(".partial");
        PathBuf::from(p)
    });
    let sink: Box<dyn std::io::Write> = match &partial {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => return fail(exit::INTERNAL, format!("{}: {e}", p.display())),
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
    let target = out.map_or_else(|| "standard output".to_owned(), |o| o.display().to_string());
    let io_err = |e: std::io::Error| fail(exit::INTERNAL, format!("{target}: {e}"));
    if let Err(e) = writeln!(w, "{}", signpost_authority::import::HEADER_FULL) {
        return io_err(e);
    }
    let mut after: Option<String> = None;
    let mut n = 0u64;
    let mut buf = String::with_capacity(1 << 20);
    loop {
        let page = match store.page(after.as_deref(), 4096).await {
            Ok(p) => p,
            Err(e) => return fail(exit::UNAVAILABLE, e),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.csi.uri().to_owned());
        buf.clear();
        for r in &page {
            if let Err(e) = signpost_authority::import::export_rows(r, &mut buf) {
                return fail(EX_DATAERR, e);
            }
        }
        n += page.len() as u64;
        if let Err(e) = w.write_all(buf.as_bytes()) {
            return io_err(e);
        }
    }
    let finished = w.into_inner().map_err(|e| e.into_error()).and_then(|mut f| f.flush().map(|()| f));
    match finished {
        Ok(f) => drop(f),
        Err(e) => return io_err(e),
    }
    if let (Some(p), Some(o)) = (&partial, out) {
        if let Err(e) = std::fs::File::open(p).and_then(|f| f.sync_all()).and_then(|()| std::fs::rename(p, o)) {
            return fail(exit::INTERNAL, format!("{}: {e}", o.display()));
        }
        eprintln!("signpost-authority: exported {n} identifiers to {}", o.display());
    }
    ExitCode::SUCCESS
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
    // On PostgreSQL: whether it reads a standby, and its replication lag.
    let standby = match p.core.store() {
        AnyStore::Postgres(pg) => {
            pg.report_replication(&metrics, Duration::from_secs(1));
            pg.is_standby()
        }
        AnyStore::Redb(_) => false,
    };
    if standby {
        tracing::info!("serving from a PostgreSQL standby: read-only (provisioning is refused), following the primary by polling");
    }
    // Feed retention (by the primary's frontends) and the store-size gauge.
    let (core, keep, age_ms, m) = (p.core.clone(), p.cfg.feed.retention_count, p.cfg.feed.retention_h * 3_600_000, metrics.clone());
    tokio::spawn(async move {
        loop {
            let now = core.now();
            let cutoff = signpost_schemas::Timestamp::from_millis(now.as_millis().saturating_sub(age_ms));
            match if standby { Ok(0) } else { core.store().prune(keep, cutoff).await } {
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
