//! # signpost-root — the root of the discovery hierarchy
//!
//! Holds only delegations (E.164 prefixes and email domains → authorities),
//! answers `findService` with a `<redirect>` by longest prefix / nearest
//! domain, `notFound` otherwise, and serves the signed table at
//! `GET /root-table` so resolvers can keep resolving while every root is
//! down (the RFC 8806 idea).

#![forbid(unsafe_code)]

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use signpost_net::{Ctx, Failure, Reply, Service};
use signpost_schemas::lost::{Message, SERVICE_MIMI};
use signpost_schemas::route::RoutingTable;
use signpost_schemas::sp::RootTable;
use signpost_schemas::{Clock, Limits, ListServicesResponse, Name, Path as LostPath, Redirect, Request, Response};
use signpost_trust::sign::Verifier;
use signpost_trust::{Role, TrustAnchor};

/// A verified table, indexed for lookup, with its signed document.
#[derive(Debug)]
pub struct LoadedTable {
    table: RootTable,
    routes: RoutingTable<usize>,
    document: Bytes,
    etag: String,
}

impl LoadedTable {
    /// Decodes, verifies (signature by a root-role certificate whose id is
    /// the table's source and `expected_source`, validity at `now`) and
    /// indexes a table document.
    pub fn load(bytes: &[u8], verifier: &Verifier, expected_source: &Name, now: signpost_schemas::Timestamp) -> Result<LoadedTable, String> {
        let table = RootTable::decode(bytes, &Limits::DOCUMENT).map_err(|e| format!("malformed root table: {e}"))?;
        if table.signature.is_none() {
            return Err("the root table is not signed (run `signpost-root table sign`)".into());
        }
        verifier.verify_root_table(&table, now).map_err(|e| format!("root table signature refused: {e}"))?;
        if &table.source != expected_source {
            return Err(format!("the table is for {} but this root is {expected_source}", table.source));
        }
        if table.valid_until < now {
            return Err(format!("the table expired at {}", table.valid_until));
        }
        let mut routes = RoutingTable::new();
        for (i, d) in table.delegations.iter().enumerate() {
            routes.insert(d.cover.clone(), i);
        }
        let etag = format!("\"{}\"", table.serial);
        Ok(LoadedTable { table, routes, document: Bytes::copy_from_slice(bytes), etag })
    }

    /// The table.
    pub fn table(&self) -> &RootTable {
        &self.table
    }
}

/// The root's LoST service.
#[derive(Debug)]
pub struct RootService {
    id: Name,
    table: RwLock<Arc<LoadedTable>>,
}

impl RootService {
    /// A service answering from `table`.
    pub fn new(id: Name, table: LoadedTable) -> RootService {
        RootService { id, table: RwLock::new(Arc::new(table)) }
    }

    /// The table in use.
    pub fn current(&self) -> Arc<LoadedTable> {
        match self.table.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Swaps in a new table, atomically for readers. A table whose serial
    /// is lower than the current one is refused (rollback protection); the
    /// same serial with other content too.
    pub fn swap(&self, new: LoadedTable) -> Result<bool, String> {
        let cur = self.current();
        if new.table.serial < cur.table.serial {
            return Err(format!("serial {} is older than the serving serial {}", new.table.serial, cur.table.serial));
        }
        if new.table.serial == cur.table.serial {
            if new.table == cur.table {
                return Ok(false);
            }
            return Err(format!("serial {} changed content without a new serial", new.table.serial));
        }
        let mut g = match self.table.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(new);
        Ok(true)
    }

    fn find(&self, f: &signpost_schemas::FindService) -> Result<Response, Failure> {
        // RFC 5222 §6: a server whose id is already in the path
        // answers loop and forwards nothing.
        if let Some(p) = &f.path
            && p.contains(&self.id)
        {
            return Err(Failure::Loop(format!("{} is already in the path", self.id)));
        }
        // Every error that applies, together (RFC 5222 §13.1).
        let (_, csi) = signpost_schemas::failure::check_find_service(f, &self.id, SERVICE_MIMI)?;
        let t = self.current();
        let Some((cover, &i)) = t.routes.lookup(csi) else {
            return Err(Failure::NotFound {
                message: format!("no delegation covers {}", csi.uri()),
                negative_lifetime: t.table.negative_lifetime,
                feed_position: None,
            });
        };
        let Some(d) = t.table.delegations.get(i) else {
            return Err(Failure::Internal("table index out of step".into()));
        };
        let Some(first) = d.authorities.first() else {
            return Err(Failure::Internal("delegation without authority".into()));
        };
        // The next hop in the path would loop as well.
        if let Some(p) = &f.path
            && p.contains(&first.id)
        {
            return Err(Failure::Loop(format!("{} (the delegated authority) is already in the path", first.id)));
        }
        Ok(Response::Redirect(Redirect {
            target: first.id.clone(),
            source: self.id.clone(),
            message: Some(Message::en(format!("{cover} is delegated to {}", first.id))),
            delegation: d.clone(),
            feed_position: None,
        }))
    }
}

/// Media type of `GET /root-table`.
pub const ROOT_TABLE_CONTENT_TYPE: &str = "application/signpost-root-table+xml";

impl Service for RootService {
    fn id(&self) -> Name {
        self.id.clone()
    }

    async fn lost(&self, req: Request, _ctx: &Ctx) -> Result<signpost_net::LostReply, Failure> {
        match req {
            Request::FindService(f) => self.find(&f).map(Into::into),
            Request::ListServices(l) => {
                if let Some(p) = &l.path
                    && p.contains(&self.id)
                {
                    return Err(Failure::Loop(format!("{} is already in the path", self.id)));
                }
                let services = signpost_schemas::failure::list_services(&l, &self.id, &[SERVICE_MIMI])?;
                Ok(Response::Services(ListServicesResponse { services, warnings: vec![], path: LostPath::new(self.id.clone()) }).into())
            }
        }
    }

    async fn get(&self, path: &str, headers: &signpost_net::hyper::HeaderMap, _ctx: &Ctx) -> Option<Reply> {
        if path != "/root-table" {
            return None;
        }
        let t = self.current();
        let etag = t.etag.clone();
        let matches = headers
            .get(signpost_net::hyper::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|x| x.trim() == etag || x.trim() == "*"));
        Some(Reply {
            status: if matches { 304 } else { 200 },
            content_type: ROOT_TABLE_CONTENT_TYPE,
            headers: vec![("etag", etag), ("cache-control", "no-cache".into())],
            body: if matches { Bytes::new() } else { t.document.clone() },
            stream: None,
        })
    }
}

/// Reads the table file and the signer certificate, verifies and loads.
pub fn load_table_file(path: &Path, signer_pem: &[u8], anchor: &TrustAnchor, id: &Name, now: signpost_schemas::Timestamp) -> Result<LoadedTable, String> {
    let mut v = Verifier::new(anchor.clone());
    let key = v.add_pem(signer_pem, now).map_err(|e| format!("table signer certificate: {e}"))?;
    if let Some(p) = v.signer(&key)
        && p.role() != Role::Root
    {
        return Err(format!("table signer certificate has role {}, not root", p.role().as_str()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    LoadedTable::load(&bytes, &v, id, now).map_err(|e| format!("{}: {e}", path.display()))
}

/// Watches the table file (and SIGHUP) and swaps in good new versions; a
/// bad one is logged and the current table keeps serving.
pub async fn reload_loop(
    svc: Arc<RootService>,
    path: PathBuf,
    signer_pem: Vec<u8>,
    anchor: TrustAnchor,
    clock: Arc<dyn Clock>,
    interval: Duration,
) {
    let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    let mut last = stamp(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let by_signal = {
            let hup_fut = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => false,
                _ = hup_fut => true,
            }
        };
        #[cfg(not(unix))]
        let by_signal = {
            tokio::time::sleep(interval).await;
            false
        };
        let now_stamp = stamp(&path);
        if !by_signal && now_stamp == last {
            continue;
        }
        last = now_stamp;
        match load_table_file(&path, &signer_pem, &anchor, &svc.id, clock.now()) {
            Ok(t) => {
                let serial = t.table.serial;
                match svc.swap(t) {
                    Ok(true) => tracing::info!(serial, "root table reloaded"),
                    Ok(false) => tracing::debug!(serial, "root table unchanged"),
                    Err(e) => tracing::error!("root table reload refused, still serving the previous table: {e}"),
                }
            }
            Err(e) => tracing::error!("root table reload refused, still serving the previous table: {e}"),
        }
    }
}

/// The signed table `signed` written into the operator's own file `src`
/// (comments, order, indentation kept): the old `<sp:signature>` is removed
/// and the new one goes before `</sp:rootTable>`. `None` when that cannot
/// be done safely (another namespace prefix, or the result does not decode
/// to exactly `signed`); then the caller writes `signed.encode()`.
pub fn splice_signature(src: &str, signed: &RootTable) -> Option<String> {
    let encoded = signed.encode();
    let new_sig = {
        let start = encoded.find("<sp:signature")?;
        let end = encoded.find("</sp:signature>")? + "</sp:signature>".len();
        encoded.get(start..end)?.to_owned()
    };
    if !src.contains("<sp:rootTable") || !src.contains(signpost_schemas::xml::SP_NS) {
        return None;
    }
    let mut out = src.to_owned();
    // Remove every old signature, with the indentation before it and the
    // line end after it.
    while let Some(start) = out.find("<sp:signature") {
        let end = match (out.get(start..)?.find("</sp:signature>"), out.get(start..)?.find("/>")) {
            (Some(c), _) => start + c + "</sp:signature>".len(),
            (None, Some(sc)) => start + sc + 2,
            (None, None) => return None,
        };
        let line_start = out.get(..start)?.trim_end_matches([' ', '\t']).len();
        let line_start = if out.get(line_start.saturating_sub(1)..line_start) == Some("\n") { line_start - 1 } else { line_start };
        out.replace_range(line_start..end, "");
    }
    let close = out.rfind("</sp:rootTable>")?;
    let before = out.get(..close)?.trim_end_matches([' ', '\t', '\n', '\r']).len();
    out.replace_range(before..close, &format!("\n  {new_sig}\n"));
    let back = RootTable::decode(out.as_bytes(), &Limits::DOCUMENT).ok()?;
    (&back == signed).then_some(out)
}

/// Seconds before `validUntil` from which the root warns: a week, so an
/// operator has time to re-sign, and again in the last day.
pub const EXPIRY_WARN_EARLY_S: u64 = 7 * 86_400;
/// The second, louder warning: the last day.
pub const EXPIRY_WARN_LATE_S: u64 = 86_400;

/// How close a table is to its `validUntil`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    /// More than [`EXPIRY_WARN_EARLY_S`] left.
    Fine,
    /// Less than a week left.
    Week,
    /// Less than a day left.
    Day,
    /// `validUntil` has passed: resolvers refuse the table.
    Expired,
}

impl Expiry {
    /// The stage of a table ending at `valid_until`, seen at `now`.
    pub fn of(valid_until: signpost_schemas::Timestamp, now: signpost_schemas::Timestamp) -> Expiry {
        let left_ms = valid_until.as_millis().saturating_sub(now.as_millis());
        if valid_until < now {
            Expiry::Expired
        } else if left_ms < EXPIRY_WARN_LATE_S * 1000 {
            Expiry::Day
        } else if left_ms < EXPIRY_WARN_EARLY_S * 1000 {
            Expiry::Week
        } else {
            Expiry::Fine
        }
    }
    /// The value of `signpost_root_table_expiry_stage` (0 fine, 1 week,
    /// 2 day, 3 expired).
    pub fn gauge(self) -> i64 {
        match self {
            Expiry::Fine => 0,
            Expiry::Week => 1,
            Expiry::Day => 2,
            Expiry::Expired => 3,
        }
    }
}

/// Why `/readyz` should fail for this table at `now`, if it should.
pub fn table_unready(t: &LoadedTable, now: signpost_schemas::Timestamp) -> Option<String> {
    (t.table.valid_until < now).then(|| {
        format!("the root table (serial {}) expired at {}: sign a new one (signpost-root table sign)", t.table.serial, t.table.valid_until)
    })
}

/// Logs the table's expiry stage when it is not [`Expiry::Fine`] (warn a
/// week and a day ahead, error once expired) and returns it.
pub fn expiry_log(t: &RootTable, now: signpost_schemas::Timestamp) -> Expiry {
    let stage = Expiry::of(t.valid_until, now);
    let hours = t.valid_until.as_millis().saturating_sub(now.as_millis()) / 3_600_000;
    match stage {
        Expiry::Fine => {}
        Expiry::Week | Expiry::Day => tracing::warn!(
            serial = t.serial,
            valid_until = %t.valid_until,
            hours_left = hours,
            "the root table expires in under {}: sign a new one with a later validUntil (signpost-root table sign)",
            if stage == Expiry::Day { "a day" } else { "a week" }
        ),
        Expiry::Expired => tracing::error!(
            serial = t.serial,
            valid_until = %t.valid_until,
            "the root table has expired: resolvers refuse it and /readyz fails; sign a new one (signpost-root table sign)"
        ),
    }
    stage
}

/// Watches the served table's expiry: sets `stage` (the
/// `signpost_root_table_expiry_stage` gauge) and logs through
/// [`expiry_log`] on every change of stage or serial, and every `repeat`
/// while the table is in a warning stage.
pub async fn expiry_watch(svc: Arc<RootService>, clock: Arc<dyn Clock>, stage: &'static signpost_net::metrics::Gauge, every: Duration, repeat: Duration) {
    let mut last: Option<(u64, Expiry)> = None;
    let mut since_log = Duration::ZERO;
    loop {
        let cur = svc.current();
        let now = clock.now();
        let s = Expiry::of(cur.table.valid_until, now);
        stage.set(s.gauge());
        if last != Some((cur.table.serial, s)) || (s != Expiry::Fine && since_log >= repeat) {
            expiry_log(&cur.table, now);
            last = Some((cur.table.serial, s));
            since_log = Duration::ZERO;
        }
        tokio::time::sleep(every).await;
        since_log = since_log.saturating_add(every);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod expiry_tests {
    use super::*;
    use signpost_schemas::Timestamp;

    #[test]
    fn stages_warn_a_week_and_a_day_before_valid_until() {
        let now = Timestamp::from_secs(1_000_000_000);
        assert_eq!(Expiry::of(now.plus_secs(30 * 86_400), now), Expiry::Fine);
        assert_eq!(Expiry::of(now.plus_secs(7 * 86_400), now), Expiry::Fine);
        assert_eq!(Expiry::of(now.plus_secs(7 * 86_400 - 1), now), Expiry::Week);
        assert_eq!(Expiry::of(now.plus_secs(86_400 - 1), now), Expiry::Day);
        assert_eq!(Expiry::of(now, now), Expiry::Day);
        assert_eq!(Expiry::of(Timestamp::from_secs(999_999_999), now), Expiry::Expired);
    }
}
