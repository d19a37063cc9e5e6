//! `signpost-root`: the root server and the root operator's tools.
//!
//! main is a script of phases: parse the CLI → load and check the config
//! without binding → build → bind and log addresses → serve → drain on
//! SIGTERM. A bad config exits 64.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use signpost_net::{Metrics, Server};
use signpost_root::config::{Config, resolve};
use signpost_root::{Expiry, RootService, load_table_file, reload_loop};
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Clock, Limits, Name, SystemClock, Timestamp};
use signpost_trust::ca::{Ca, LeafRequest, write_private};
use signpost_trust::sign::Signer;
use signpost_trust::{Role, ScopeEntry, TrustAnchor};

use signpost_net::exit;

const EX_USAGE: u8 = exit::USAGE;
const DAY: u64 = 86_400;

#[derive(Parser)]
#[command(name = "signpost-root", version, after_help = exit::HELP, about = "Signpost root: delegations to discovery authorities, and the root operator's CA and table tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Docs(signpost_net::docs::DocsCmd),
    /// The deployment's certificate authority (the trust anchor).
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Root table tools.
    Table {
        #[command(subcommand)]
        cmd: TableCmd,
    },
    /// Serve LoST (and the admin plane) as configured.
    Serve {
        /// The TOML config (see root/root.sample.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Load and check a config, its TLS material and its table; bind nothing.
    CheckConfig {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Create a new CA: writes DIR/ca.pem and DIR/ca-key.pem (owner-only).
    Init {
        /// Directory to write into (created; an existing CA is never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Signpost deployment CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issue a certificate for a role: writes DIR/cert.pem (with the CA
    /// certificate after it) and DIR/key.pem.
    Issue {
        /// The CA directory (from `ca init`).
        #[arg(long)]
        ca: PathBuf,
        /// root, authority, resolver, msp, csip or admin.
        #[arg(long)]
        role: String,
        /// The holder's id, e.g. dp.de.example.
        #[arg(long)]
        id: String,
        /// An E.164 prefix (+49) or an email domain (example.com); repeatable.
        #[arg(long)]
        scope: Vec<String>,
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
        /// An IP address to add as a SAN; repeatable.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Overwrite an existing cert.pem / key.pem.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TableCmd {
    /// Sign a root table with the root operator's key (in place, or to --out).
    Sign {
        /// The private key (key.pem of a root-role certificate).
        #[arg(long)]
        key: PathBuf,
        /// The key's certificate, to check it is the root's (default:
        /// cert.pem beside the key, as `ca issue` writes them).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The table file.
        table: PathBuf,
        /// Write here instead of in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a signed table as a server would (signature by a root-role
    /// certificate from the CA, source, validUntil) and say how long it
    /// stays valid. Exits 65 when a server would refuse it.
    Verify {
        /// The deployment CA certificate.
        #[arg(long)]
        ca: PathBuf,
        /// The certificate of the key that signed it (role root).
        #[arg(long)]
        cert: PathBuf,
        /// The table file.
        table: PathBuf,
    },
    /// Print a table's delegations, serial, validity and signature, one
    /// line each (no verification; see `table verify`).
    Show {
        /// The table file.
        table: PathBuf,
    },
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("signpost-root: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli: Cli = match signpost_net::docs::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let clock = SystemClock;
    match cli.cmd {
        Cmd::Docs(d) => d.run(Cli::command(), "signpost-root"),
        Cmd::Ca { cmd: CaCmd::Init { out, name, days } } => {
            if days == 0 {
                return fail(EX_USAGE, "--days 0 makes a CA that is already expired; give at least 1");
            }
            let now = clock.now();
            let ca = match Ca::generate(&name, Timestamp::from_secs(now.as_secs().saturating_sub(3600)), now.plus_secs(days * DAY)) {
                Ok(c) => c,
                Err(e) => return fail(exit::INTERNAL, e),
            };
            match ca.write_dir(&out) {
                Ok(()) => {
                    println!("wrote {} and {}", out.join("ca.pem").display(), out.join("ca-key.pem").display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(exit::INTERNAL, e),
            }
        }
        Cmd::Ca { cmd: CaCmd::Issue { ca, role, id, scope, out, days, ip, force } } => issue(&ca, &role, &id, &scope, &out, days, ip, force, clock.now()),
        Cmd::Table { cmd: TableCmd::Sign { key, cert, table, out } } => sign_table(&key, cert.as_deref(), &table, out.as_deref(), clock.now()),
        Cmd::Table { cmd: TableCmd::Verify { ca, cert, table } } => verify_table(&ca, &cert, &table, clock.now()),
        Cmd::Table { cmd: TableCmd::Show { table } } => show_table(&table),
        Cmd::CheckConfig { config } => match prepare(&config) {
            Ok(p) => {
                let t = p.service.current();
                println!(
                    "configuration OK: root {} with table serial {} ({} delegations, valid until {})",
                    p.cfg.id,
                    t.table().serial,
                    t.table().delegations.len(),
                    t.table().valid_until
                );
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
            let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(exit::INTERNAL, e),
            };
            match rt.block_on(serve(p, config.clone(), log)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(exit::UNAVAILABLE, e),
            }
        }
    }
}

/// A certificate request that is surely a mistake, in words.
fn issue_mistake(role: Role, scope: &[ScopeEntry], days: u64) -> Option<String> {
    if days == 0 {
        return Some("--days 0 issues a certificate that is already expired; give at least 1".into());
    }
    if role == Role::Authority && scope.is_empty() {
        return Some("an authority certificate needs at least one --scope (an E.164 prefix like +49 or an email domain like mail.example): it answers only for its scope".into());
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn issue(ca: &Path, role: &str, id: &str, scope: &[String], out: &Path, days: u64, ip: Vec<IpAddr>, force: bool, now: Timestamp) -> ExitCode {
    let role: Role = match role.parse() {
        Ok(r) => r,
        Err(e) => return fail(EX_USAGE, e),
    };
    let id = match Name::parse(id) {
        Ok(n) => n,
        Err(e) => return fail(EX_USAGE, e),
    };
    let scope: Vec<ScopeEntry> = match scope.iter().map(|s| ScopeEntry::parse(s)).collect() {
        Ok(s) => s,
        Err(e) => return fail(EX_USAGE, e),
    };
    if let Some(why) = issue_mistake(role, &scope, days) {
        return fail(EX_USAGE, why);
    }
    let ca = match Ca::load_dir(ca) {
        Ok(c) => c,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", ca.display())),
    };
    if !force && (out.join("key.pem").exists() || out.join("cert.pem").exists()) {
        return fail(EX_USAGE, format!("{} already holds a certificate; pass --force to replace it", out.display()));
    }
    let req = LeafRequest {
        role,
        id,
        scope,
        not_before: Timestamp::from_secs(now.as_secs().saturating_sub(3600)),
        not_after: now.plus_secs(days * DAY),
        ip_sans: ip,
    };
    let issued = match ca.issue(&req) {
        Ok(i) => i,
        Err(e) => return fail(exit::INTERNAL, e),
    };
    let written = std::fs::create_dir_all(out)
        .and_then(|()| std::fs::write(out.join("cert.pem"), &issued.chain_pem))
        .and_then(|()| write_private(&out.join("key.pem"), &issued.key_pem));
    match written {
        Ok(()) => {
            println!("wrote {} and {}", out.join("cert.pem").display(), out.join("key.pem").display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::INTERNAL, format!("{}: {e}", out.display())),
    }
}

fn read_table(table: &Path) -> Result<RootTable, ExitCode> {
    let bytes = std::fs::read(table).map_err(|e| fail(EX_USAGE, format!("{}: {e}", table.display())))?;
    RootTable::decode(&bytes, &Limits::DOCUMENT).map_err(|e| fail(exit::DATA, format!("{}: {e}", table.display())))
}

fn verify_table(ca: &Path, cert: &Path, table: &Path, now: Timestamp) -> ExitCode {
    let anchor = match std::fs::read(ca).map_err(|e| e.to_string()).and_then(|b| TrustAnchor::from_pem(&b).map_err(|e| e.to_string())) {
        Ok(a) => a,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", ca.display())),
    };
    let signer = match std::fs::read(cert) {
        Ok(b) => b,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", cert.display())),
    };
    let t = match read_table(table) {
        Ok(t) => t,
        Err(code) => return code,
    };
    match load_table_file(table, &signer, &anchor, &t.source, now) {
        Ok(l) => {
            let t = l.table();
            let days = t.valid_until.as_millis().saturating_sub(now.as_millis()) / 86_400_000;
            println!(
                "{}: OK: serial {}, {} delegations, source {}, valid until {} ({days} days), signed by key {}",
                table.display(),
                t.serial,
                t.delegations.len(),
                t.source,
                t.valid_until,
                t.signature.as_ref().map_or("?", |s| s.key_id.as_str())
            );
            if Expiry::of(t.valid_until, now) != Expiry::Fine {
                eprintln!("signpost-root: warning: {} expires in under 7 days; sign a new one", table.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::DATA, format!("{e}; a server would refuse this table")),
    }
}

fn show_table(table: &Path) -> ExitCode {
    let t = match read_table(table) {
        Ok(t) => t,
        Err(code) => return code,
    };
    println!("source {}  serial {}  valid until {}  negative lifetime {} s", t.source, t.serial, t.valid_until, t.negative_lifetime);
    match &t.signature {
        Some(s) => println!("signed by key {} at {}", s.key_id.as_str(), s.signed_at),
        None => println!("not signed (signpost-root table sign)"),
    }
    for d in &t.delegations {
        let to: Vec<String> = d
            .authorities
            .iter()
            .map(|a| format!("{} [{}]", a.id, a.endpoints.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" ")))
            .collect();
        println!("{:<24} lifetime {:>6} s  → {}", d.cover.to_string(), d.lifetime, to.join(", "));
    }
    ExitCode::SUCCESS
}

/// Refuses a key that is not the root's: its certificate (`cert`, or
/// cert.pem beside it) must hold this key and the root role.
fn check_root_key(signer: &Signer, key: &Path, cert: Option<&Path>) -> Result<(), String> {
    let cert = cert.map_or_else(|| key.with_file_name("cert.pem"), Path::to_path_buf);
    let pem = std::fs::read(&cert).map_err(|e| format!("{}: {e}; pass --cert with the root certificate of {}", cert.display(), key.display()))?;
    let (auth, key_id) = signpost_trust::peer::inspect_pem(&pem).map_err(|e| format!("{}: {e}", cert.display()))?;
    if &key_id != signer.key_id() {
        return Err(format!("{} is not the key of {} (the certificate holds key {}, the file key {})", key.display(), cert.display(), key_id.as_str(), signer.key_id().as_str()));
    }
    if auth.role != Role::Root {
        return Err(format!(
            "{} is the key of {} {} ({}); a root table is signed with the root's key (ca issue --role root)",
            key.display(),
            auth.role.as_str(),
            auth.id,
            cert.display()
        ));
    }
    Ok(())
}

fn sign_table(key: &Path, cert: Option<&Path>, table: &Path, out: Option<&Path>, now: Timestamp) -> ExitCode {
    let signer = match std::fs::read(key).map_err(|e| e.to_string()).and_then(|b| Signer::from_pem(&b).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", key.display())),
    };
    if let Err(e) = check_root_key(&signer, key, cert) {
        return fail(EX_USAGE, e);
    }
    let bytes = match std::fs::read(table) {
        Ok(b) => b,
        Err(e) => return fail(EX_USAGE, format!("{}: {e}", table.display())),
    };
    let mut t = match RootTable::decode(&bytes, &Limits::DOCUMENT) {
        Ok(t) => t,
        Err(e) => return fail(exit::DATA, format!("{}: {e}", table.display())),
    };
    if t.valid_until <= now {
        return fail(exit::DATA, format!("{}: validUntil {} is in the past", table.display(), t.valid_until));
    }
    let until = t.valid_until;
    if Expiry::of(until, now) != Expiry::Fine {
        eprintln!(
            "signpost-root: warning: {} is valid for under 7 days (validUntil {until}); the root warns from 7 days before and resolvers refuse it once expired",
            table.display()
        );
    }
    if let Err(e) = signer.sign_root_table(&mut t, now, until) {
        return fail(exit::INTERNAL, e);
    }
    let dest = out.unwrap_or(table);
    // Write beside and rename, so a watching server never reads half a file.
    let tmp = dest.with_extension("xml.tmp");
    let text = match std::str::from_utf8(&bytes).ok().and_then(|src| signpost_root::splice_signature(src, &t)) {
        Some(kept) => kept,
        None => {
            eprintln!("signpost-root: note: {} is rewritten in the canonical layout (its comments and layout could not be kept)", table.display());
            t.encode()
        }
    };
    match std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, dest)) {
        Ok(()) => {
            println!("signed {} (serial {}, key {}, valid until {})", dest.display(), t.serial, signer.key_id().as_str(), until);
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::INTERNAL, format!("{}: {e}", dest.display())),
    }
}

struct Prepared {
    cfg: Config,
    service: Arc<RootService>,
    tls: Option<Arc<rustls::ServerConfig>>,
    anchor: Option<TrustAnchor>,
    table_path: PathBuf,
    signer_pem: Vec<u8>,
    /// The end of the server's own certificate chain (TLS on).
    cert_not_after: Option<Timestamp>,
}

fn read(base: &Path, p: &Path) -> Result<Vec<u8>, String> {
    let p = resolve(base, p);
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Loads everything a server needs, binding nothing.
fn prepare(config: &Path) -> Result<Prepared, String> {
    let (cfg, base) = Config::load(config).map_err(|e| e.to_string())?;
    let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
    let now = SystemClock.now();
    let (tls, anchor, default_signer, cert_not_after) = match &cfg.tls {
        Some(t) => {
            let l = t.load(&base, &id, now)?;
            (Some(l.server), Some(l.anchor), Some(l.cert_pem), Some(l.me.not_after()))
        }
        None => (None, None, None, None),
    };
    let signer_pem = match (&cfg.table.signer_cert, default_signer) {
        (Some(p), _) => read(&base, p)?,
        (None, Some(c)) => c,
        (None, None) => return Err("table.signer_cert is required when TLS is off".into()),
    };
    let anchor_for_table = match (&anchor, &cfg.tls) {
        (Some(a), _) => a.clone(),
        (None, _) => return Err("a trust anchor ([tls] ca) is required to verify the table".into()),
    };
    let table_path = resolve(&base, &cfg.table.path);
    let table = load_table_file(&table_path, &signer_pem, &anchor_for_table, &id, now)?;
    Ok(Prepared { service: Arc::new(RootService::new(id, table)), tls, anchor, table_path, signer_pem, cert_not_after, cfg })
}

async fn serve(p: Prepared, config: PathBuf, log: signpost_net::config::LogReload) -> Result<(), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    metrics.build_info("root", env!("CARGO_PKG_VERSION"));
    if let Some(na) = p.cert_not_after {
        metrics.certificate_expiry(na, clock.clone());
    }
    let t = p.service.current();
    tracing::info!(serial = t.table().serial, delegations = t.table().delegations.len(), "root table loaded");
    let (svc, c) = (p.service.clone(), clock.clone());
    metrics.gauge_fn(
        "signpost_root_table_expiry_seconds",
        Box::new(move || vec![(String::new(), signpost_net::metrics::seconds_until(svc.current().table().valid_until, c.now()))]),
    );
    let svc = p.service.clone();
    metrics.gauge_fn("signpost_root_table_serial", Box::new(move || vec![(String::new(), svc.current().table().serial as f64)]));
    metrics.describe("signpost_root_table_expiry_stage", "How close the served root table is to validUntil: 0 more than a week, 1 under a week, 2 under a day, 3 expired.");
    tokio::spawn(signpost_root::expiry_watch(
        p.service.clone(),
        clock.clone(),
        metrics.gauge("signpost_root_table_expiry_stage"),
        Duration::from_secs(60),
        Duration::from_secs(6 * 3600),
    ));
    let ready = signpost_net::admin::Ready::new();
    let (svc, c) = (p.service.clone(), clock.clone());
    ready.check(Box::new(move || signpost_root::table_unready(&svc.current(), c.now())));
    tokio::spawn(reload_loop(
        p.service.clone(),
        p.table_path.clone(),
        p.signer_pem.clone(),
        p.anchor.clone().ok_or("no trust anchor")?,
        clock.clone(),
        Duration::from_millis(p.cfg.table.reload_interval_ms),
    ));
    let server = Server::new(p.service.clone(), p.tls.clone(), p.anchor.clone(), p.cfg.limits.to_limits(), metrics.clone(), clock);
    // SIGHUP also reloads the certificate and key (new connections) and the
    // log level; the table is reloaded by its own loop.
    signpost_net::reload_on_hangup(server.tls_switch(), log, move || {
        let (cfg, base) = Config::load(&config).map_err(|e| e.to_string())?;
        let id = Name::parse(&cfg.id).map_err(|e| e.to_string())?;
        let tls = cfg.tls.as_ref().map(|t| t.load(&base, &id, SystemClock.now())).transpose()?;
        Ok((tls.map(|l| l.server), cfg.log.level.clone()))
    });
    signpost_net::run_with(server, &p.cfg.listen, metrics, ready).await
}
