//! `signpost-resolver`: a carrier's recursive resolver, and the `lookup`
//! client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use signpost_net::client::Client;
use signpost_net::limits::{LimitSettings, Limiter};
use signpost_net::{Metrics, Server};
use signpost_resolver::config::{Config, resolve};
use signpost_resolver::core::Policy;
use signpost_resolver::lookup::Via;
use signpost_resolver::ohttp::{Gateway, GatewaySettings, KeyFile};
use signpost_resolver::resolver::{Resolver, Settings};
use signpost_resolver::service::ResolverService;
use signpost_schemas::lost::{AuthorityRef, Endpoint, Tag};
use signpost_schemas::{Clock, Csi, Name, Region, SenderContext, SystemClock};
use signpost_trust::tls::{Identity, client_config};
use signpost_trust::{Role, TrustAnchor};

use signpost_net::exit;

const EX_USAGE: u8 = exit::USAGE;

#[derive(Parser)]
#[command(name = "signpost-resolver", version, after_help = exit::HELP, about = "Signpost resolver: recursive, verifying, caching discovery for a carrier's clients; and a lookup client")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per run: the size of the lookup variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Docs(signpost_net::docs::DocsCmd),
    /// Serve LoST to clients (and the admin plane).
    Serve {
        /// The TOML config (see resolver/resolver.sample.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Load and check the config and certificates; bind nothing.
    CheckConfig {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Make a new Oblivious HTTP gateway key and make it current (the key
    /// file is created if missing); the previous current key stays accepted.
    /// A serving resolver picks the file up on SIGHUP.
    OhttpKeygen {
        /// The key file (ohttp.keys in the config).
        #[arg(long)]
        keys: PathBuf,
        /// Previous keys still accepted after the rotation (the overlap
        /// window); older ones are dropped.
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
    /// Serve as an Oblivious HTTP relay (RFC 9458): APs (mTLS, per-AP
    /// limits) POST encapsulated requests to /relay; they are forwarded,
    /// unopened, to the resolver's gateway.
    Relay {
        /// The relay's TOML config (see resolver/relay.sample.toml).
        #[arg(long)]
        config: PathBuf,
        /// Load and check the config and certificates; bind nothing.
        #[arg(long)]
        check: bool,
    },
    /// Ask a resolver where an identifier can be reached. Several
    /// identifiers go in one bulk request (POST /lost/bulk), answered in
    /// order; the exit code is the worst of their codes.
    Lookup {
        /// Phone numbers, email addresses or MIMI user identifiers
        /// (mymimi.example.com); one or more.
        #[arg(required = true, num_args = 1..)]
        csi: Vec<String>,
        /// The resolver's LoST URL.
        #[arg(long, default_value = "https://127.0.0.1:7420/lost")]
        resolver: String,
        /// The resolver's id (its certificate name).
        #[arg(long, default_value = "resolver.signpost.example")]
        resolver_id: String,
        /// The deployment CA certificate.
        #[arg(long)]
        ca: PathBuf,
        /// A client certificate (if the resolver requires one).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Its key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The sending MSP's id, for the recipient's preferences.
        #[arg(long)]
        sender: Option<String>,
        /// Wanted tags (business, personal…); repeatable.
        #[arg(long)]
        tag: Vec<String>,
        /// Default region for national-format numbers, e.g. DE.
        #[arg(long)]
        region: Option<String>,
        /// Print the raw LoST XML.
        #[arg(long)]
        xml: bool,
        /// Development only: allow a plain-HTTP (`http://`) resolver URL.
        /// Nothing is encrypted or authenticated; never use it in production.
        #[arg(long)]
        dev_plaintext: bool,
        /// Ask through this Oblivious HTTP relay (its `/relay` URL, e.g.
        /// https://127.0.0.1:7430/relay) instead of the resolver directly:
        /// the relay learns who asks but not what, the resolver what but not
        /// who. Needs --ohttp-keys; --resolver is then not contacted.
        #[arg(long, requires = "ohttp_keys")]
        relay: Option<String>,
        /// The relay's id (its certificate name).
        #[arg(long, default_value = "relay.signpost.example")]
        relay_id: String,
        /// The gateway's key configuration (application/ohttp-keys): a file,
        /// or a URL (the relay's /relay/keys, or the resolver's
        /// /.well-known/ohttp-gateway).
        #[arg(long, requires = "relay")]
        ohttp_keys: Option<String>,
    },
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("signpost-resolver: {msg}");
    ExitCode::from(code)
}

struct Prepared {
    cfg: Config,
    gateway: Option<Arc<Gateway>>,
    resolver: Arc<Resolver>,
    tls: signpost_net::config::LoadedTls,
    metrics: Arc<Metrics>,
}

fn prepare(config: &Path) -> Result<Prepared, String> {
    signpost_schemas::csi::warm_up();
    let (cfg, base) = Config::load(config).map_err(|e| e.to_string())?;
    let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tls = cfg.tls.load(&base, &id, clock.now())?;
    tls.me.require(Role::Resolver).map_err(|e| format!("tls.cert: {e}"))?;
    let identity = Identity::from_pem(&tls.cert_pem, &tls.key_pem).map_err(|e| e.to_string())?;
    let client = Client::new(Arc::new(client_config(&tls.anchor, Some(&identity)).map_err(|e| e.to_string())?), Duration::from_millis(cfg.upstream.timeout_ms));
    let root = AuthorityRef {
        id: Name::parse(&cfg.root.id).map_err(|e| e.to_string())?,
        endpoints: cfg.root.endpoints.iter().map(|e| Endpoint::parse(e).map_err(|x| x.to_string())).collect::<Result<_, _>>()?,
    };
    let signer = match &cfg.root.table_signer_cert {
        Some(p) => {
            let p = resolve(&base, p);
            Some(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let c = &cfg.cache;
    let table_cache = (!cfg.root.table_cache.as_os_str().is_empty()).then(|| resolve(&base, &cfg.root.table_cache));
    let settings = Settings {
        id,
        root,
        root_table_signer: signer,
        root_table_refresh: Duration::from_secs(cfg.root.table_refresh_s),
        root_table_cache: table_cache,
        policy: Policy {
            min_ttl: c.min_ttl_s,
            max_ttl: c.max_ttl_s,
            negative_min_ttl: c.negative_min_ttl_s,
            negative_max_ttl: c.negative_max_ttl_s,
            max_stale: c.max_stale_s,
            stale_ttl: c.stale_ttl_s,
            max_depth: cfg.upstream.max_depth,
        },
        max_entries: c.max_entries,
        max_bytes: c.max_bytes,
        upstream_timeout: Duration::from_millis(cfg.upstream.timeout_ms),
        attempt_timeout: Duration::from_millis(cfg.upstream.attempt_timeout_ms),
        failure_recheck: Duration::from_secs(cfg.upstream.failure_recheck_s),
        hot_hits: c.hot_hits,
        push: c.invalidation == "push",
    };
    let gateway = if cfg.ohttp.keys.as_os_str().is_empty() {
        None
    } else {
        let keys = resolve(&base, &cfg.ohttp.keys);
        let s = GatewaySettings { keys, replay_window_s: cfg.ohttp.replay_window_s, replay_max_entries: cfg.ohttp.replay_max_entries };
        Some(Arc::new(Gateway::load(s).map_err(|e| format!("ohttp.keys: {e}"))?))
    };
    let metrics = Arc::new(Metrics::new());
    let resolver = Resolver::new(settings, clock, client, tls.anchor.clone(), metrics.clone())?;
    Ok(Prepared { cfg, gateway, resolver, tls, metrics })
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
            Cmd::Docs(d) => d.run(Cli::command(), "signpost-resolver"),
            Cmd::CheckConfig { config } => match prepare(&config) {
                Ok(p) => {
                    println!("configuration OK: resolver {} using root {}", p.cfg.id, p.cfg.root.id);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_USAGE, e),
            },
            Cmd::Serve { config } => {
                let p = match prepare(&config) {
                    Ok(p) => p,
                    Err(e) => return fail(EX_USAGE, e),
                };
                let log = p.cfg.log.init_reloadable();
                match serve(p, config.clone(), log).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(exit::UNAVAILABLE, e),
                }
            }
            Cmd::OhttpKeygen { keys, keep } => match keygen(&keys, keep) {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_USAGE, e),
            },
            Cmd::Relay { config, check } => relay(&config, check).await,
            Cmd::Lookup { csi, resolver, resolver_id, ca, cert, key, sender, tag, region, xml, dev_plaintext, relay, relay_id, ohttp_keys } => {
                let oblivious = relay.map(|r| (r, relay_id, ohttp_keys.unwrap_or_default()));
                match lookup(&csi, &resolver, &resolver_id, &ca, cert.as_deref(), key.as_deref(), sender, &tag, region.as_deref(), xml, dev_plaintext, oblivious).await {
                    Ok(code) => code,
                    Err((code, e)) => fail(code, e),
                }
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn lookup(
    csis: &[String],
    resolver: &str,
    resolver_id: &str,
    ca: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    sender: Option<String>,
    tags: &[String],
    region: Option<&str>,
    xml: bool,
    dev_plaintext: bool,
    oblivious: Option<(String, String, String)>,
) -> Result<ExitCode, (u8, String)> {
    let usage = |e: String| (EX_USAGE, e);
    let region: Option<Region> = region.map(str::parse).transpose().map_err(|e: signpost_schemas::CsiError| usage(e.to_string()))?;
    let csis: Vec<Csi> = csis.iter().map(|c| Csi::parse(c, region).map_err(|e| usage(format!("{c:?}: {e}")))).collect::<Result<_, _>>()?;
    let read = |p: &Path| std::fs::read(p).map_err(|e| usage(format!("{}: {e}", p.display())));
    let anchor = TrustAnchor::from_pem(&read(ca)?).map_err(|e| usage(format!("{}: {e}", ca.display())))?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some(Identity::from_pem(&read(c)?, &read(k)?).map_err(|e| usage(format!("{} / {}: {e}", c.display(), k.display())))?),
        (None, None) => None,
        _ => return Err(usage("--cert and --key go together".into())),
    };
    let files = match (cert, key) {
        (Some(c), Some(k)) => format!("{} and {}: ", c.display(), k.display()),
        _ => String::new(),
    };
    let mut client = Client::new(Arc::new(client_config(&anchor, identity.as_ref()).map_err(|e| usage(format!("{files}{e}")))?), Duration::from_secs(5));
    let ep = Endpoint::parse(resolver).map_err(|e| usage(format!("--resolver: {e}")))?;
    if !ep.is_https() && !dev_plaintext {
        return Err(usage(signpost_resolver::lookup::LookupError::Plaintext(resolver.to_owned()).to_string()));
    }
    if dev_plaintext {
        eprintln!("signpost-resolver: WARNING: --dev-plaintext: a plain-HTTP resolver is neither encrypted nor authenticated; development only");
        client = client.allow_plaintext();
    }
    let rid = Name::parse(resolver_id).map_err(|e| usage(format!("--resolver-id: {e}")))?;
    let context = if sender.is_some() || !tags.is_empty() {
        Some(SenderContext {
            sender_provider: sender.map(|s| Name::parse(&s)).transpose().map_err(|e| usage(format!("--sender: {e}")))?,
            tags: tags.iter().map(|t| Tag::parse(t)).collect::<Result<_, _>>().map_err(|e| usage(format!("--tag: {e}")))?,
        })
    } else {
        None
    };
    let no_cert = cert.is_none();
    let via = match oblivious {
        None => Via::Direct { resolver: ep, resolver_id: rid },
        Some((relay, relay_id, keys)) => {
            let relay_ep = Endpoint::parse(&relay).map_err(|e| usage(format!("--relay: {e}")))?;
            if !relay_ep.is_https() && !dev_plaintext {
                return Err(usage(signpost_resolver::lookup::LookupError::Plaintext(relay.clone()).to_string()));
            }
            let relay_id = Name::parse(&relay_id).map_err(|e| usage(format!("--relay-id: {e}")))?;
            // A key URL on the relay's host is the relay's; any other is
            // the gateway's (the resolver's id).
            let same_host = |a: &str, b: &str| a.split('/').nth(2) == b.split('/').nth(2);
            let key_server = if same_host(&keys, &relay) { relay_id.clone() } else { rid };
            let bytes = signpost_resolver::lookup::load_keys(&client, &keys, &key_server).await.map_err(|e| (e.exit_code(), e.to_string()))?;
            Via::Relay { relay: relay_ep, relay_id, keys: bytes }
        }
    };
    let explain = |e: signpost_resolver::lookup::LookupError| {
        let mut msg = e.to_string();
        // With TLS 1.3 a server that requires a client certificate closes
        // the connection after the handshake; the HTTP layer only sees it go.
        if no_cert && matches!(e, signpost_resolver::lookup::LookupError::Unavailable(_)) && msg.contains("HTTP:") {
            msg.push_str(" — the connection was closed after the TLS handshake: if the resolver requires a client certificate (tls.client_auth = \"required\"), pass --cert and --key");
        }
        (e.exit_code(), msg)
    };
    let answers = match csis.as_slice() {
        [one] => vec![signpost_resolver::lookup::lookup_via(&client, &via, &anchor, one, context).await.map_err(explain)?],
        many => signpost_resolver::lookup::lookup_bulk_via(&client, &via, &anchor, many, context).await.map_err(explain)?,
    };
    let mut code = 0u8;
    for (csi, l) in csis.iter().zip(&answers) {
        if xml {
            print!("{}", l.xml);
            if !l.xml.ends_with('\n') {
                println!();
            }
        } else {
            print!("{}", signpost_resolver::lookup::describe(csi, l));
        }
        code = code.max(signpost_resolver::lookup::exit_code(l));
    }
    Ok(ExitCode::from(code))
}

async fn serve(p: Prepared, config: PathBuf, log: signpost_net::config::LogReload) -> Result<(), String> {
    p.metrics.build_info("resolver", env!("CARGO_PKG_VERSION"));
    p.metrics.certificate_expiry(p.tls.me.not_after(), Arc::new(SystemClock));
    p.resolver.start().await;
    let limiter = Limiter::new(LimitSettings { rate: p.cfg.rate.queries_per_s, burst: p.cfg.rate.burst, miss_budget: usize::MAX, miss_window: 3600 });
    let b = &p.cfg.bulk;
    let mut svc = ResolverService::new(p.resolver.clone(), limiter).with_bulk(b.max_queries, b.new_identifiers_per_window, b.window_s);
    if let Some(g) = &p.gateway {
        tracing::info!("serving the Oblivious HTTP gateway at {}", signpost_resolver::ohttp::GATEWAY_PATH);
        g.register(&p.metrics);
        svc = svc.with_gateway(g.clone());
    }
    let svc = Arc::new(svc);
    let gateway = p.gateway.clone();
    let tls = if p.cfg.dev_plaintext { None } else { Some(p.tls.server.clone()) };
    let server = Server::new(svc, tls, Some(p.tls.anchor.clone()), p.cfg.limits.to_limits(), p.metrics.clone(), Arc::new(SystemClock));
    // SIGHUP reloads the certificate and key (for new connections; open ones
    // keep theirs) and the log level.
    signpost_net::reload_on_hangup(server.tls_switch(), log, move || {
        let (cfg, base) = Config::load(&config).map_err(|e| e.to_string())?;
        let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
        let tls = cfg.tls.load(&base, &id, SystemClock.now())?;
        tls.me.require(Role::Resolver).map_err(|e| format!("tls.cert: {e}"))?;
        // A rotated OHTTP key file applies from the next request on.
        if let Some(g) = &gateway {
            g.reload().map_err(|e| format!("ohttp.keys: {e}"))?;
        }
        Ok((Some(tls.server), cfg.log.level.clone()))
    });
    signpost_net::run(server, &p.cfg.listen, p.metrics.clone()).await
}

fn keygen(path: &Path, keep: usize) -> Result<String, String> {
    let mut f = if path.exists() { KeyFile::load(path)? } else { KeyFile::default() };
    let now = SystemClock.now().as_secs();
    let id = f.rotate(keep, now).id;
    f.write(path)?;
    let accepted: Vec<String> = f.keys.iter().map(|k| k.id.to_string()).collect();
    Ok(format!("{}: key {id} is current; accepted key ids: {} (SIGHUP a serving resolver to apply)", path.display(), accepted.join(", ")))
}

async fn relay(config: &Path, check: bool) -> ExitCode {
    let (cfg, base) = match signpost_resolver::relay::RelayConfig::load(config) {
        Ok(x) => x,
        Err(e) => return fail(EX_USAGE, e),
    };
    let (svc, tls) = match signpost_resolver::relay::build(&cfg, &base) {
        Ok(x) => x,
        Err(e) => return fail(EX_USAGE, e),
    };
    if check {
        println!("configuration OK: relay {} forwarding to {} ({})", cfg.id, cfg.gateway.url, cfg.gateway.id);
        return ExitCode::SUCCESS;
    }
    let log = cfg.log.init_reloadable();
    let metrics = Arc::new(Metrics::new());
    metrics.build_info("relay", env!("CARGO_PKG_VERSION"));
    svc.register(&metrics);
    metrics.certificate_expiry(tls.me.not_after(), Arc::new(SystemClock));
    let server = Server::new(svc, Some(tls.server.clone()), Some(tls.anchor.clone()), cfg.limits.to_limits(), metrics.clone(), Arc::new(SystemClock));
    let config = config.to_path_buf();
    signpost_net::reload_on_hangup(server.tls_switch(), log, move || {
        let (cfg, base) = signpost_resolver::relay::RelayConfig::load(&config).map_err(|e| e.to_string())?;
        let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
        let tls = cfg.tls.load(&base, &id, SystemClock.now())?;
        Ok((Some(tls.server), cfg.log.level.clone()))
    });
    match signpost_net::run(server, &cfg.listen, metrics).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(exit::UNAVAILABLE, e),
    }
}
