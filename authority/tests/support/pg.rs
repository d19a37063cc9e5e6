//! A real PostgreSQL server for the tests: `SIGNPOST_PG` (a connection
//! string to a server on loopback, plain, whose user may create databases)
//! if set; otherwise a throwaway cluster started here — `initdb` and
//! `pg_ctl` from `/usr/lib/postgresql/*/bin` (as the `postgres` user when
//! run as root, since PostgreSQL refuses root) in a temp dir, on a free
//! loopback port, shared by the tests of one binary and stopped when the
//! last of them ends. Every test gets a database of its own.
//!
//! [`primary_and_standby`] starts a pair of its own: a primary and a hot
//! standby streaming from it (`pg_basebackup -R`), on two free ports.
//!
//! No server and `CI` not `true`: the caller is told to skip (a message
//! says how to enable it); with `CI=true` that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio_postgres::NoTls;

/// A running throwaway cluster; stopped on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Cluster {
    fn run(&self, tool: &str, args: &[&str]) -> Result<std::process::Output, String> {
        run_as(&self.bin.join(tool), args, self.as_postgres)
    }

    fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }
}

fn run_as(tool: &Path, args: &[&str], as_postgres: bool) -> Result<std::process::Output, String> {
    let out = if as_postgres {
        Command::new("runuser").arg("-u").arg("postgres").arg("--").arg(tool).args(args).output()
    } else {
        Command::new(tool).args(args).output()
    }
    .map_err(|e| format!("{}: {e}", tool.display()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{} {}: {}{}", tool.display(), args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

fn bindir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A new cluster's directory (owned by `postgres` when run as root) and
/// a free loopback port; nothing started yet.
fn new_cluster() -> Result<Cluster, String> {
    let bin = bindir().ok_or("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")?;
    let as_postgres = is_root();
    let dir = tempfile::Builder::new().prefix("sp-pg").tempdir().map_err(|e| e.to_string())?;
    if as_postgres {
        let st = Command::new("chown").arg("postgres:").arg(dir.path()).status().map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("chown postgres failed (no postgres user?)".into());
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    Ok(Cluster { dir, bin, port, as_postgres })
}

/// Starts the cluster's server on its port (loopback only) with `extra`
/// options; the server log is in the error.
fn start_server(cluster: &Cluster, extra: &str) -> Result<(), String> {
    let data = cluster.dir.path().join("data");
    let d = data.to_str().ok_or("temp dir is not UTF-8")?;
    let fsync = if DURABLE.load(Ordering::Relaxed) { "on" } else { "off" };
    let opts = format!("-p {} -k {d} -c listen_addresses=127.0.0.1 -c fsync={fsync} {extra}", cluster.port);
    let log = data.join("server.log");
    if let Err(e) = cluster.run("pg_ctl", &["-D", d, "-o", &opts, "-l", log.to_str().ok_or("log path")?, "-w", "start"]) {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        return Err(format!("{e}\n{log}"));
    }
    Ok(())
}

fn start_cluster() -> Result<Cluster, String> {
    let cluster = new_cluster()?;
    let data = cluster.dir.path().join("data");
    let d = data.to_str().ok_or("temp dir is not UTF-8")?;
    cluster.run("initdb", &["-D", d, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
    // TLS too (a CA of its own and a certificate for 127.0.0.1), for the
    // sslmode=require test; plain connections stay allowed.
    let tls = cluster.dir.path().join("tls");
    write_tls(&tls).map_err(|e| format!("server certificate: {e}"))?;
    if cluster.as_postgres {
        let st = Command::new("chown").arg("-R").arg("postgres:").arg(&tls).status().map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("chown postgres failed".into());
        }
    }
    let t = tls.to_str().ok_or("temp dir is not UTF-8")?;
    start_server(&cluster, &format!("-c ssl=on -c ssl_cert_file={t}/server.crt -c ssl_key_file={t}/server.key"))?;
    Ok(cluster)
}

/// A hot standby of `primary`: a base backup taken over the replication
/// protocol (initdb's pg_hba trusts replication from 127.0.0.1; `-R`
/// writes `standby.signal` and `primary_conninfo`), started on a port of
/// its own, streaming from the primary.
fn start_standby(primary: &Cluster) -> Result<Cluster, String> {
    let standby = new_cluster()?;
    let data = standby.dir.path().join("data");
    let d = data.to_str().ok_or("temp dir is not UTF-8")?;
    let port = primary.port.to_string();
    standby.run("pg_basebackup", &["-D", d, "-R", "-X", "stream", "--no-sync", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])?;
    start_server(&standby, "-c hot_standby=on")?;
    Ok(standby)
}

/// A primary and a hot standby streaming from it (clusters of their own;
/// `SIGNPOST_PG` is not used: a standby needs the primary's files).
pub struct Replicated {
    /// Connection strings of their `postgres` databases.
    pub primary: String,
    pub standby: String,
    // Dropped in this order: the standby stops first.
    _standby: Cluster,
    _primary: Cluster,
}

/// Starts a [`Replicated`] pair, or `None` (after "skipped: …") when no
/// server binaries are installed outside CI. Blocking (runs the tools).
pub fn primary_and_standby() -> Option<Replicated> {
    let primary = match start_cluster() {
        Ok(c) => c,
        Err(e) => return skip(&e),
    };
    let standby = match start_standby(&primary) {
        Ok(c) => c,
        Err(e) => return skip(&format!("standby: {e}")),
    };
    Some(Replicated { primary: primary.url(), standby: standby.url(), _standby: standby, _primary: primary })
}

fn write_tls(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "signpost test postgres CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &issuer)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("server.crt"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A cluster started after this keeps `fsync = on` (benchmarks; the
/// tests run without it).
pub fn durable() {
    DURABLE.store(true, Ordering::Relaxed);
}

static CLUSTER: Mutex<Option<Weak<Cluster>>> = Mutex::new(None);
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The server's admin connection string and, for a throwaway cluster, the
/// handle that keeps it running.
fn server() -> Result<(String, Option<Arc<Cluster>>), String> {
    if let Ok(url) = std::env::var("SIGNPOST_PG") {
        return Ok((url, None));
    }
    let mut g = CLUSTER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = g.as_ref().and_then(Weak::upgrade) {
        return Ok((c.url(), Some(c)));
    }
    let c = Arc::new(start_cluster()?);
    *g = Some(Arc::downgrade(&c));
    Ok((c.url(), Some(c)))
}

/// A database of one test; dropped (or its cluster stopped) at the end.
pub struct TestDb {
    pub config: tokio_postgres::Config,
    admin: String,
    name: String,
    cluster: Option<Arc<Cluster>>,
}

impl TestDb {
    /// The PEM CA of the server's certificate, for a throwaway cluster
    /// (which also accepts TLS); `None` with `SIGNPOST_PG`.
    pub fn tls_ca(&self) -> Option<PathBuf> {
        self.cluster.as_ref().map(|c| c.dir.path().join("tls/ca.pem"))
    }

    /// The connection string of this database (for configs).
    pub fn url(&self) -> String {
        let mut s = String::new();
        for h in self.config.get_hosts() {
            if let tokio_postgres::config::Host::Tcp(h) = h {
                s.push_str(&format!("host={h} "));
            }
        }
        for p in self.config.get_ports() {
            s.push_str(&format!("port={p} "));
        }
        if let Some(u) = self.config.get_user() {
            s.push_str(&format!("user={u} "));
        }
        if let Some(pw) = self.config.get_password() {
            s.push_str(&format!("password={} ", String::from_utf8_lossy(pw)));
        }
        s.push_str(&format!("dbname={}", self.name));
        s
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.cluster.is_some() {
            // The cluster goes when its last test ends.
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

fn skip<T>(why: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("PostgreSQL: {why}; CI=true requires it");
    }
    eprintln!(
        "skipped: PostgreSQL: {why}. To enable: install PostgreSQL (apt-get install postgresql; the tests start their own cluster from /usr/lib/postgresql/*/bin) or set SIGNPOST_PG to a loopback server's connection string"
    );
    None
}

/// A fresh, empty database, or `None` (after printing "skipped: …") when no
/// server can be had outside CI.
pub async fn fresh_db() -> Option<TestDb> {
    let (admin, cluster) = match server() {
        Ok(s) => s,
        Err(e) => return skip(&e),
    };
    let name = format!("signpost_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let (c, conn) = match tokio_postgres::connect(&admin, NoTls).await {
        Ok(c) => c,
        Err(e) => return skip(&format!("cannot connect to {admin}: {e}")),
    };
    let task = tokio::spawn(conn);
    c.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    drop(c);
    let _ = task.await;
    let mut config = tokio_postgres::Config::from_str(&admin).unwrap();
    config.dbname(&name);
    Some(TestDb { config, admin, name, cluster })
}
