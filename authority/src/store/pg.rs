//! The PostgreSQL backend: several authority frontends on one database.
//!
//! **Schema.** Versioned migrations (`MIGRATIONS`), applied at open inside
//! one transaction under a transaction-level advisory lock, so frontends
//! starting together apply each migration once; `schema_version` records
//! the applied version and a database newer than this binary is refused.
//! Records, delegations and feed frames are stored with the same binary
//! codecs as the redb backend (`NumberRecord::encode`, the `sp`
//! provisioning and feed-frame documents), so the two agree byte for byte.
//!
//! **Feed order = commit order.** One row, `feed_meta`, holds the feed
//! head, the oldest retained sequence number and the record count. Every
//! commit starts with `SELECT … FROM feed_meta FOR UPDATE`: the row lock is
//! held until the transaction ends, so writers — from any frontend — are
//! serialized by the database, and the sequence numbers a commit takes
//! (`head + 1 ..= head + n`, written back in the same transaction) are
//! taken only after every earlier holder of the lock has ended. PostgreSQL
//! makes a commit visible before it releases its locks, so when a commit
//! takes N+1, every number up to N is already visible to new snapshots: a
//! feed reader never sees N+1 before N. A rolled-back commit's numbers go
//! back with the head and are reused, so the feed has no gaps either. (A
//! PostgreSQL `SEQUENCE` would not do: its numbers are handed out outside
//! the transaction, so N+1 could commit while N is still in flight, and a
//! reader that saw N+1 would skip N for good.) Taking the lock first also
//! means concurrent writers never deadlock on record rows. Readers
//! (`changes_since`, `stats`) read the head and the events in one snapshot.
//!
//! **No lost update.** The core decides a commit on records it read before
//! it (`Commit::expect`); under the lock the commit compares them with what
//! is stored and is refused as a conflict (HTTP 409, "retry") if another
//! frontend changed one in between.
//!
//! **Notifications.** A commit with feed events also `NOTIFY`s
//! `signpost_feed` (delivered on commit, in commit order); `wait_external`
//! listens on a connection of its own (reconnecting with backoff) and is
//! what `Authority::follow` waits on, with its poll as the fallback.
//!
//! **Standby.** A frontend may answer from a streaming hot standby
//! (`pg_basebackup -R`): if `pg_is_in_recovery()` at open, it applies no
//! migration (the primary's frontends do; the standby's schema must be
//! exactly this binary's version), refuses every write (commit, prune and
//! so the import checkpoint) with [`READ_ONLY`], and follows the head by
//! polling (`LISTEN` is not allowed during recovery; the primary's
//! `NOTIFY`s are not replayed either). Whether it reads a standby is
//! decided once, at open: restart a frontend after promoting its server.
//! [`PgStore::replication_lag`] says how far behind the standby is.
//!
//! **TLS.** With `sslmode=require` in the connection string the connection
//! is TLS through rustls (ring), verifying the server's certificate and
//! host name against the configured CA file. Without it the connection is
//! plain, which is allowed only to a Unix socket or a loopback address
//! (local development); a remote host without `sslmode=require` is refused.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use signpost_schemas::lost::Delegation;
use signpost_schemas::sp::{Change, FeedFrame, Provision};
use signpost_schemas::{Csi, Limits, Timestamp};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{IsolationLevel, NoTls};

use super::{Commit, FeedPage, Stats, Store, StoreError, cover_key, se};
use crate::model::NumberRecord;

/// The schema, one migration per version (version = index + 1). Append
/// only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: records, delegations, the feed and its head.
    "CREATE TABLE numbers (csi TEXT PRIMARY KEY, record BYTEA NOT NULL);
     CREATE TABLE delegations (cover TEXT PRIMARY KEY, doc BYTEA NOT NULL);
     CREATE TABLE changes (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, frame BYTEA NOT NULL);
     CREATE TABLE feed_meta (
         one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
         head BIGINT NOT NULL,
         oldest BIGINT NOT NULL,
         records BIGINT NOT NULL);
     INSERT INTO feed_meta (head, oldest, records) VALUES (0, 1, 0);",
    // 2: CSIs sort in byte order (as the embedded store's keys, so `export`
    // pages through both alike, on the index); the bulk import's checkpoint.
    "ALTER TABLE numbers ALTER COLUMN csi TYPE TEXT COLLATE \"C\";
     CREATE TABLE import_checkpoint (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), state BYTEA NOT NULL);",
];

/// An arbitrary constant: the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x5349_474e_504f_5354; // "SIGNPOST"

/// Why a frontend on a standby refuses a write.
pub const READ_ONLY: &str = "this frontend reads a standby; provision through a frontend on the primary";

/// Rows per statement when a commit writes many records (an import).
const BATCH: usize = 5000;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// A libpq-style connection string (`postgres://user:pw@host:port/db?sslmode=require`
    /// or `host=… user=… dbname=…`).
    pub url: String,
    /// Pooled connections at most.
    pub pool_size: usize,
    /// PEM file of the CA that issued the server's certificate (required
    /// with `sslmode=require`).
    pub ca: Option<std::path::PathBuf>,
}

/// The PostgreSQL backend (cheap to clone: a pool handle).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// For the notification listener's own connection.
    conn: Arc<(tokio_postgres::Config, Tls)>,
    /// Woken by the listener on every `NOTIFY` of a commit.
    notify: Arc<tokio::sync::Notify>,
    listening: Arc<std::sync::atomic::AtomicBool>,
    /// The server was a hot standby at open (read-only; see the module docs).
    standby: bool,
}

#[derive(Clone)]
enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

/// The channel every commit with feed events notifies (on commit, in
/// commit order).
const CHANNEL: &str = "signpost_feed";

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", &self.pool.status()).finish()
    }
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Tcp(h) => h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback()),
        #[cfg(unix)]
        Host::Unix(_) => true,
    }
}

fn client_tls(ca: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| StoreError::new(format!("{}: {e}", ca.display())))?;
    for c in certs {
        let c = c.map_err(|e| StoreError::new(format!("{}: {e}", ca.display())))?;
        roots.add(c).map_err(|e| StoreError::new(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(StoreError::new(format!("{}: no certificate", ca.display())));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(se)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(cfg))
}

/// An error with its causes ("connecting: TLS handshake: invalid certificate").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::new(format!("{v} is out of range")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::new(format!("negative counter {v} in the database")))
}

impl PgStore {
    /// Connects, checks the server is reachable, and brings the schema up
    /// to date.
    pub async fn open(s: &PgSettings) -> Result<PgStore, StoreError> {
        let cfg = tokio_postgres::Config::from_str(&s.url).map_err(|e| StoreError::new(format!("store.url: {e}")))?;
        PgStore::open_config(cfg, s.pool_size, s.ca.as_deref()).await
    }

    /// Like [`PgStore::open`], from a parsed connection config.
    pub async fn open_config(mut cfg: tokio_postgres::Config, pool_size: usize, ca: Option<&Path>) -> Result<PgStore, StoreError> {
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(10));
        }
        let mc = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let tls = match cfg.get_ssl_mode() {
            SslMode::Require => {
                let ca = ca.ok_or_else(|| StoreError::new("sslmode=require needs store.ca (the PEM CA of the server's certificate)"))?;
                Tls::Rustls(client_tls(ca)?)
            }
            _ => {
                if let Some(h) = cfg.get_hosts().iter().find(|h| !is_loopback(h)) {
                    return Err(StoreError::new(format!("{h:?} is not a loopback address or a local socket: add sslmode=require to store.url")));
                }
                cfg.ssl_mode(SslMode::Disable);
                Tls::Plain
            }
        };
        let mgr = match &tls {
            Tls::Plain => Manager::from_config(cfg.clone(), NoTls, mc),
            Tls::Rustls(t) => Manager::from_config(cfg.clone(), t.clone(), mc),
        };
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(se)?;
        let mut store =
            PgStore { pool, conn: Arc::new((cfg, tls)), notify: Arc::new(tokio::sync::Notify::new()), listening: Arc::new(std::sync::atomic::AtomicBool::new(false)), standby: false };
        let c = store.client().await?;
        store.standby = c.query_one("SELECT pg_is_in_recovery()", &[]).await.map_err(se)?.try_get(0).map_err(se)?;
        drop(c);
        if store.standby {
            store.check_standby_schema().await?;
        } else {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Whether this store reads a hot standby (read-only).
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// How far a standby is behind its primary, in seconds: 0 when it has
    /// replayed all the WAL it received (`pg_last_wal_replay_lsn() >=
    /// pg_last_wal_receive_lsn()`: caught up, and idle if the primary writes
    /// nothing; replay is ahead just after a restart, which replays the
    /// local WAL before streaming resumes), otherwise `now() - pg_last_xact_replay_timestamp()` (the
    /// age of the last transaction it replayed, by the standby's clock,
    /// never below 0). `None` when that is unknown (WAL pending and nothing
    /// replayed since the standby started) and on a primary. A standby cut
    /// off from its primary has nothing pending and reads 0: the figure
    /// bounds replay, not the link (watch the primary's
    /// `pg_stat_replication` for that).
    pub async fn replication_lag(&self) -> Result<Option<f64>, StoreError> {
        if !self.standby {
            return Ok(None);
        }
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0::float8
                             ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()))::float8 END",
                &[],
            )
            .await
            .map_err(se)?;
        row.try_get(0).map_err(se)
    }

    /// Reports `signpost_store_standby` (1 on a standby, 0 on a primary)
    /// and, on a standby, `signpost_store_replication_lag_seconds`
    /// ([`PgStore::replication_lag`], read every `every` by the task this
    /// returns; no sample while it is unknown or unreadable).
    pub fn report_replication(&self, metrics: &Arc<signpost_net::Metrics>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        use std::sync::atomic::{AtomicU64, Ordering};
        metrics.gauge("signpost_store_standby").set(i64::from(self.standby));
        if !self.standby {
            return None;
        }
        let lag = Arc::new(AtomicU64::new(f64::NAN.to_bits()));
        let seen = lag.clone();
        metrics.gauge_fn(
            "signpost_store_replication_lag_seconds",
            Box::new(move || {
                let v = f64::from_bits(seen.load(Ordering::Relaxed));
                if v.is_nan() { Vec::new() } else { vec![(String::new(), v)] }
            }),
        );
        let store = self.clone();
        Some(tokio::spawn(async move {
            let mut failing = false;
            loop {
                let v = match store.replication_lag().await {
                    Ok(v) => {
                        failing = false;
                        v.unwrap_or(f64::NAN)
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("replication lag: {e}");
                        }
                        failing = true;
                        f64::NAN
                    }
                };
                lag.store(v.to_bits(), Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        }))
    }

    /// On a standby: the schema the primary's frontends made must be there,
    /// at this binary's version (nothing can be migrated here).
    async fn check_standby_schema(&self) -> Result<(), StoreError> {
        let c = self.client().await?;
        let row = match c.query_opt("SELECT version FROM schema_version", &[]).await {
            Ok(r) => r,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => None,
            Err(e) => return Err(se(e)),
        };
        let Some(row) = row else {
            return Err(StoreError::new("the standby has no Signpost schema yet: start a frontend on the primary first"));
        };
        let current: i32 = row.try_get(0).map_err(se)?;
        let current = usize::try_from(current).map_err(se)?;
        match current.cmp(&MIGRATIONS.len()) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Greater => Err(StoreError::new(format!("the database schema is version {current}, newer than this binary's {}", MIGRATIONS.len()))),
            std::cmp::Ordering::Less => Err(StoreError::new(format!(
                "the standby's schema is version {current}, older than this binary's {}: start a frontend of this release on the primary first",
                MIGRATIONS.len()
            ))),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::new(format!("postgres: {}", chain(&e))))
    }

    /// The schema version this binary brings the database to.
    pub fn schema_version() -> usize {
        MIGRATIONS.len()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(se)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(se)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), version INTEGER NOT NULL)")
            .await
            .map_err(se)?;
        let current: i32 = match tx.query_opt("SELECT version FROM schema_version", &[]).await.map_err(se)? {
            Some(r) => r.try_get(0).map_err(se)?,
            None => {
                tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[]).await.map_err(se)?;
                0
            }
        };
        let current = usize::try_from(current).map_err(se)?;
        if current > MIGRATIONS.len() {
            return Err(StoreError::new(format!("the database schema is version {current}, newer than this binary's {}", MIGRATIONS.len())));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.batch_execute(m).await.map_err(|e| StoreError::new(format!("migration {}: {e}", i + 1)))?;
            let v = i32::try_from(i + 1).map_err(se)?;
            tx.execute("UPDATE schema_version SET version = $1", &[&v]).await.map_err(se)?;
        }
        tx.commit().await.map_err(se)
    }
}

/// Refuses the commit when a record it was decided on changed since it
/// was read (under the writers' lock, so nothing changes it meanwhile).
async fn check_expected(tx: &deadpool_postgres::Transaction<'_>, expect: &[(Csi, Option<NumberRecord>)]) -> Result<(), StoreError> {
    if expect.is_empty() {
        return Ok(());
    }
    let st = tx.prepare_cached("SELECT csi, record FROM numbers WHERE csi = ANY($1)").await.map_err(se)?;
    for chunk in expect.chunks(BATCH) {
        let keys: Vec<&str> = chunk.iter().map(|(c, _)| c.uri()).collect();
        let mut now = std::collections::HashMap::with_capacity(chunk.len());
        for row in tx.query(&st, &[&keys]).await.map_err(se)? {
            let k: String = row.try_get(0).map_err(se)?;
            let v: Vec<u8> = row.try_get(1).map_err(se)?;
            now.insert(k, v);
        }
        for (csi, was) in chunk {
            let same = match (was, now.get(csi.uri())) {
                (None, None) => true,
                // Compared decoded: a record written by an earlier release
                // (another encoding version) is the same record.
                (Some(r), Some(b)) => NumberRecord::decode(csi.uri(), b).is_ok_and(|s| s == *r),
                _ => false,
            };
            if !same {
                return Err(StoreError::conflict(format!("{} was changed by another writer since it was read", csi.uri())));
            }
        }
    }
    Ok(())
}

impl Store for PgStore {
    async fn get(&self, csi: &Csi) -> Result<Option<NumberRecord>, StoreError> {
        self.get_raw(csi, |b| NumberRecord::decode(csi.uri(), b)).await?.transpose().map_err(se)
    }

    async fn get_raw<R: Send, F: FnOnce(&[u8]) -> R + Send>(&self, csi: &Csi, f: F) -> Result<Option<R>, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached("SELECT record FROM numbers WHERE csi = $1").await.map_err(se)?;
        match c.query_opt(&st, &[&csi.uri()]).await.map_err(se)? {
            Some(row) => {
                let b: &[u8] = row.try_get(0).map_err(se)?;
                Ok(Some(f(b)))
            }
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        // Operator tooling, not the hot path: a prefix match in byte order
        // (COLLATE "C", as the embedded store's keys sort).
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT csi, record FROM numbers WHERE left(csi, length($1)) = $1 ORDER BY csi COLLATE \"C\" LIMIT $2")
            .await
            .map_err(se)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for row in c.query(&st, &[&prefix, &limit]).await.map_err(se)? {
            let (k, b): (&str, &[u8]) = (row.try_get(0).map_err(se)?, row.try_get(1).map_err(se)?);
            out.push(NumberRecord::decode(k, b).map_err(se)?);
        }
        Ok(out)
    }

    async fn get_many(&self, csis: &[Csi]) -> Result<Vec<Option<NumberRecord>>, StoreError> {
        let c = self.client().await?;
        let st = c.prepare_cached("SELECT csi, record FROM numbers WHERE csi = ANY($1)").await.map_err(se)?;
        let mut out = Vec::with_capacity(csis.len());
        for chunk in csis.chunks(BATCH) {
            let keys: Vec<&str> = chunk.iter().map(Csi::uri).collect();
            let mut found = std::collections::HashMap::with_capacity(chunk.len());
            for row in c.query(&st, &[&keys]).await.map_err(se)? {
                let k: String = row.try_get(0).map_err(se)?;
                let v: &[u8] = row.try_get(1).map_err(se)?;
                let rec = NumberRecord::decode(&k, v).map_err(se)?;
                found.insert(k, rec);
            }
            out.extend(chunk.iter().map(|csi| found.remove(csi.uri())));
        }
        Ok(out)
    }

    async fn commit(&self, c: Commit) -> Result<u64, StoreError> {
        if self.standby {
            return Err(StoreError::new(READ_ONLY));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(se)?;
        // The lock that serializes writers and orders the feed (module docs).
        let row = tx.query_one("SELECT head FROM feed_meta FOR UPDATE", &[]).await.map_err(se)?;
        let mut seq = to_u64(row.try_get(0).map_err(se)?)?;
        check_expected(&tx, &c.expect).await?;
        // One row per CSI and statement (the last version of a CSI wins, as
        // in a sequence of redb inserts).
        let mut last = std::collections::HashMap::with_capacity(c.records.len());
        for (i, r) in c.records.iter().enumerate() {
            last.insert(r.csi.uri(), i);
        }
        // New records, for the exact record count in feed_meta without a
        // count(*): a CSI the writer read (`expect`, just checked under the
        // lock) is new if it was absent; the others are counted before the
        // upsert. (Not `RETURNING (xmax = 0)`: Postgres-wire distributed
        // engines have no xmax; docs/scale-out.md.)
        let absent: std::collections::HashMap<&str, bool> = c.expect.iter().map(|(k, r)| (k.uri(), r.is_none())).collect();
        let wanted: Vec<(usize, &NumberRecord)> = c.records.iter().enumerate().filter(|(i, r)| last.get(r.csi.uri()) == Some(i)).collect();
        let mut fresh: i64 = 0;
        let mut unread: Vec<&str> = Vec::new();
        for (_, r) in &wanted {
            match absent.get(r.csi.uri()) {
                Some(true) => fresh += 1,
                Some(false) => {}
                None => unread.push(r.csi.uri()),
            }
        }
        if !unread.is_empty() {
            let st = tx.prepare_cached("SELECT count(*) FROM numbers WHERE csi = ANY($1)").await.map_err(se)?;
            for chunk in unread.chunks(BATCH) {
                let held: i64 = tx.query_one(&st, &[&chunk]).await.map_err(se)?.try_get(0).map_err(se)?;
                fresh += i64::try_from(chunk.len()).map_err(se)? - held;
            }
        }
        let mut keys: Vec<&str> = Vec::with_capacity(BATCH.min(c.records.len()));
        let mut vals: Vec<Vec<u8>> = Vec::with_capacity(BATCH.min(c.records.len()));
        let upsert = tx
            .prepare_cached("INSERT INTO numbers (csi, record) SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (csi) DO UPDATE SET record = EXCLUDED.record")
            .await
            .map_err(se)?;
        for (i, r) in wanted {
            keys.push(r.csi.uri());
            vals.push(c.encoded.get(i).cloned().unwrap_or_else(|| r.encode()));
            if keys.len() == BATCH {
                tx.execute(&upsert, &[&keys, &vals]).await.map_err(se)?;
                keys.clear();
                vals.clear();
            }
        }
        if !keys.is_empty() {
            tx.execute(&upsert, &[&keys, &vals]).await.map_err(se)?;
        }
        for d in &c.delegations_put {
            let doc = Provision::Delegate(d.clone()).encode();
            tx.execute(
                "INSERT INTO delegations (cover, doc) VALUES ($1, $2) ON CONFLICT (cover) DO UPDATE SET doc = EXCLUDED.doc",
                &[&cover_key(&d.cover), &doc.as_bytes()],
            )
            .await
            .map_err(se)?;
        }
        if !c.delegations_remove.is_empty() {
            let covers: Vec<String> = c.delegations_remove.iter().map(cover_key).collect();
            tx.execute("DELETE FROM delegations WHERE cover = ANY($1)", &[&covers]).await.map_err(se)?;
        }
        let seqs_empty = c.changes.is_empty();
        let time_ms = to_i64(c.time.as_millis())?;
        let insert = tx.prepare_cached("INSERT INTO changes (seq, time_ms, frame) SELECT s, $2, f FROM unnest($1::bigint[], $3::bytea[]) AS t(s, f)").await.map_err(se)?;
        let mut seqs: Vec<i64> = Vec::with_capacity(BATCH.min(c.changes.len()));
        let mut frames: Vec<Vec<u8>> = Vec::with_capacity(BATCH.min(c.changes.len()));
        for (subject, op) in c.changes {
            seq += 1;
            seqs.push(to_i64(seq)?);
            frames.push(FeedFrame::Change(Change { seq, subject, op, time: c.time }).encode().into_bytes());
            if seqs.len() == BATCH {
                tx.execute(&insert, &[&seqs, &time_ms, &frames]).await.map_err(se)?;
                seqs.clear();
                frames.clear();
            }
        }
        if !seqs.is_empty() {
            tx.execute(&insert, &[&seqs, &time_ms, &frames]).await.map_err(se)?;
        }
        tx.execute("UPDATE feed_meta SET head = $1, records = records + $2", &[&to_i64(seq)?, &fresh]).await.map_err(se)?;
        match &c.checkpoint {
            Some(super::Checkpoint::Set(b)) => {
                tx.execute("INSERT INTO import_checkpoint (one, state) VALUES (TRUE, $1) ON CONFLICT (one) DO UPDATE SET state = EXCLUDED.state", &[b])
                    .await
                    .map_err(se)?;
            }
            Some(super::Checkpoint::Clear) => {
                tx.execute("DELETE FROM import_checkpoint", &[]).await.map_err(se)?;
            }
            None => {}
        }
        if !seqs_empty {
            // Delivered to the other frontends' listeners when (and only
            // if) this commits.
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()]).await.map_err(se)?;
        }
        tx.commit().await.map_err(se)?;
        Ok(seq)
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        to_u64(c.query_one("SELECT head FROM feed_meta", &[]).await.map_err(se)?.try_get(0).map_err(se)?)
    }

    async fn changes_since(&self, since: u64, limit: usize) -> Result<FeedPage, StoreError> {
        let mut c = self.client().await?;
        // One snapshot for the head and the events.
        let tx = c.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await.map_err(se)?;
        let m = tx.query_one("SELECT head, oldest FROM feed_meta", &[]).await.map_err(se)?;
        let head = to_u64(m.try_get(0).map_err(se)?)?;
        let oldest = to_u64(m.try_get(1).map_err(se)?)?;
        if since < head && since.saturating_add(1) < oldest {
            return Ok(FeedPage::Gone { oldest, head });
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let from = i64::try_from(since).unwrap_or(i64::MAX);
        let st = tx.prepare_cached("SELECT frame FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2").await.map_err(se)?;
        let rows = tx.query(&st, &[&from, &limit]).await.map_err(se)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let b: &[u8] = row.try_get(0).map_err(se)?;
            match FeedFrame::decode(b).map_err(se)? {
                FeedFrame::Change(ch) => out.push(ch),
                other => return Err(StoreError::new(format!("corrupt feed entry {other:?}"))),
            }
        }
        tx.commit().await.map_err(se)?;
        Ok(FeedPage::Changes(out))
    }

    async fn delegations(&self) -> Result<Vec<Delegation>, StoreError> {
        let c = self.client().await?;
        let rows = c.query("SELECT doc FROM delegations ORDER BY cover", &[]).await.map_err(se)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let b: &[u8] = row.try_get(0).map_err(se)?;
            match Provision::decode(b, &Limits::MESSAGE).map_err(se)? {
                Provision::Delegate(d) => out.push(d),
                other => return Err(StoreError::new(format!("corrupt delegation {}", other.label()))),
            }
        }
        Ok(out)
    }

    async fn prune(&self, keep: u64, older_than: Timestamp) -> Result<u64, StoreError> {
        if self.standby {
            return Err(StoreError::new(READ_ONLY));
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(se)?;
        let m = tx.query_one("SELECT head, oldest FROM feed_meta FOR UPDATE", &[]).await.map_err(se)?;
        let head = to_u64(m.try_get(0).map_err(se)?)?;
        let oldest = to_u64(m.try_get(1).map_err(se)?)?;
        let by_count = to_i64(oldest.max(head.saturating_sub(keep).saturating_add(1)))?;
        // Then past every consecutive event older than the age limit: up to
        // the first young one, or past the last one if all are old.
        let row = tx
            .query_one(
                "SELECT COALESCE((SELECT min(seq) FROM changes WHERE seq >= $1 AND time_ms >= $2),
                                 (SELECT max(seq) + 1 FROM changes WHERE seq >= $1),
                                 $1)",
                &[&by_count, &to_i64(older_than.as_millis())?],
            )
            .await
            .map_err(se)?;
        let new_oldest: i64 = row.try_get(0).map_err(se)?;
        let dropped = tx.execute("DELETE FROM changes WHERE seq < $1", &[&new_oldest]).await.map_err(se)?;
        tx.execute("UPDATE feed_meta SET oldest = $1", &[&new_oldest]).await.map_err(se)?;
        tx.commit().await.map_err(se)?;
        Ok(dropped)
    }

    async fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<NumberRecord>, StoreError> {
        let c = self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            Some(a) => {
                let st = c.prepare_cached("SELECT csi, record FROM numbers WHERE csi > $1 ORDER BY csi LIMIT $2").await.map_err(se)?;
                c.query(&st, &[&a, &limit]).await.map_err(se)?
            }
            None => {
                let st = c.prepare_cached("SELECT csi, record FROM numbers ORDER BY csi LIMIT $1").await.map_err(se)?;
                c.query(&st, &[&limit]).await.map_err(se)?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (k, b): (&str, &[u8]) = (row.try_get(0).map_err(se)?, row.try_get(1).map_err(se)?);
            out.push(NumberRecord::decode(k, b).map_err(se)?);
        }
        Ok(out)
    }

    async fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.client().await?;
        match c.query_opt("SELECT state FROM import_checkpoint", &[]).await.map_err(se)? {
            Some(r) => Ok(Some(r.try_get(0).map_err(se)?)),
            None => Ok(None),
        }
    }

    fn shared(&self) -> bool {
        true
    }

    async fn wait_external(&self, max: Duration) {
        if self.standby {
            // No LISTEN during recovery: the follower polls.
            tokio::time::sleep(max).await;
            return;
        }
        if !self.listening.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tokio::spawn(listen(self.conn.clone(), Arc::downgrade(&self.notify)));
        }
        let _ = tokio::time::timeout(max, self.notify.notified()).await;
    }

    async fn stats(&self) -> Result<Stats, StoreError> {
        let mut c = self.client().await?;
        let tx = c.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await.map_err(se)?;
        let m = tx.query_one("SELECT head, oldest, records FROM feed_meta", &[]).await.map_err(se)?;
        let head = to_u64(m.try_get(0).map_err(se)?)?;
        let oldest = to_u64(m.try_get(1).map_err(se)?)?;
        let records = to_u64(m.try_get(2).map_err(se)?)?;
        tx.commit().await.map_err(se)?;
        // Retained events are contiguous from `oldest` to `head`.
        Ok(Stats { records, changes: (head + 1).saturating_sub(oldest), head })
    }
}

/// Listens for commit notifications on a connection of its own and wakes
/// the follower; reconnects with backoff (the follower polls meanwhile).
/// Ends when the store is gone.
async fn listen(conn: Arc<(tokio_postgres::Config, Tls)>, notify: std::sync::Weak<tokio::sync::Notify>) {
    let (cfg, tls) = &*conn;
    let mut backoff = Duration::from_millis(200);
    while notify.strong_count() > 0 {
        let r = match tls {
            Tls::Plain => listen_once(cfg, NoTls, &notify).await,
            Tls::Rustls(t) => listen_once(cfg, t.clone(), &notify).await,
        };
        match r {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => tracing::warn!("feed notifications: {e}; polling until reconnected"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once<T>(cfg: &tokio_postgres::Config, tls: T, notify: &std::sync::Weak<tokio::sync::Notify>) -> Result<(), tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut conn) = cfg.connect(tls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let r = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if r.is_ok() {
        // (Re)connected: whatever was missed meanwhile is caught up now.
        if let Some(n) = notify.upgrade() {
            n.notify_one();
        }
        loop {
            tokio::select! {
                m = rx.recv() => match (m, notify.upgrade()) {
                    (Some(()), Some(n)) => n.notify_one(),
                    _ => break,
                },
                () = tokio::time::sleep(Duration::from_secs(5)) => if notify.strong_count() == 0 { break },
            }
        }
    }
    drop(client);
    driver.abort();
    r
}
