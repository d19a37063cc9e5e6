//! The authority's decisions: answers (with recipient preferences), the
//! provisioning rules per role, the number lifecycle, and signing.
//!
//! Signing: provisioning signs what it changes when it commits it. A bulk
//! import stores its mappings unsigned (an ECDSA signature costs about
//! 30 µs, three quarters of an import's CPU otherwise). An answer signs
//! on demand: a mapping it returns that has no stored signature, or one
//! within `renew_before` of its end, is taken from the in-memory
//! [`SignatureCache`] (same content, still valid) or signed now and kept
//! there. Signatures made by answers are **not written back**: a read
//! never becomes a write, so enumerating many distinct numbers costs CPU
//! (one signature each, capped by the per-client limits) but no store
//! transactions, no write lock held by the answer path, no fsync and no
//! growth of the file; the price is that the first answer after a restart
//! signs again. A record changed later (provisioning) carries its new
//! stored signatures and no longer matches the cached ones.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use signpost_net::{Failure, LostReply};
use signpost_schemas::lost::{
    AuthorityRef, Cover, Delegation, Endpoint, Epoch, NoProvidersReason, SERVICE_MIMI,
};
use signpost_schemas::route::RoutingTable;
use signpost_schemas::sp::{ChangeOp, EntryRecord, Provision, ProvisionResult, Subject, range_end};
use signpost_schemas::{
    Clock, Csi, E164, Expires, FindService, FindServiceResponse, Mapping, Message, Name, Path, Redirect, Response,
    Timestamp,
};
use signpost_trust::sign::Signer;
use signpost_trust::{Peer, Role, ScopeEntry};
use tokio::sync::{Mutex, watch};

use crate::answers::AnswerCache;
use crate::model::{NumberRecord, State, StoredEntry};
use crate::sigcache::SignatureCache;
use crate::store::{Commit, FeedPage, Store, StoreError};

/// One batch of a bulk import ([`Authority::build_import`]), unsigned.
#[derive(Debug)]
pub struct ImportBatch {
    /// The records, in file order.
    pub records: Vec<NumberRecord>,
    /// Their stored forms, encoded on the build threads.
    pub encoded: Vec<Vec<u8>>,
    /// Their feed events.
    pub changes: Vec<(Subject, ChangeOp)>,
    /// When they were made (their `lastUpdated`).
    pub time: Timestamp,
}

/// What an authority is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Its id (the `source` of its mappings; the id in its certificate).
    pub id: Name,
    /// What it is authoritative for (from its certificate).
    pub scope: Vec<ScopeEntry>,
    /// Cache lifetime of a mapping (seconds), capped by the signature.
    pub mapping_ttl: u32,
    /// Cache lifetime of a notFound (seconds).
    pub negative_ttl: u32,
    /// How long a signature vouches for content (seconds).
    pub signature_validity: u64,
    /// Signatures closer than this to their end are renewed when read.
    pub renew_before: u64,
    /// Where out-of-scope queries are sent ("back to the forest guide").
    pub root: Option<AuthorityRef>,
}

/// Why a provisioning request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The caller's role or scope does not allow it (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The number's state does not allow it (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// Storage or signing failed (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl ProvisionError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ProvisionError::Forbidden(_) => 403,
            ProvisionError::Conflict(_) => 409,
            ProvisionError::BadRequest(_) => 400,
            ProvisionError::Internal(_) => 500,
        }
    }
    /// The LoST error element of the body.
    pub fn kind(&self) -> signpost_schemas::ErrorKind {
        use signpost_schemas::ErrorKind as K;
        match self {
            ProvisionError::Forbidden(_) => K::Forbidden,
            ProvisionError::Conflict(_) | ProvisionError::BadRequest(_) => K::BadRequest,
            ProvisionError::Internal(_) => K::InternalError,
        }
    }
}

impl From<StoreError> for ProvisionError {
    fn from(e: StoreError) -> Self {
        if e.is_conflict() {
            ProvisionError::Conflict(format!("{}; retry the request", e.message()))
        } else {
            ProvisionError::Internal(e.to_string())
        }
    }
}

/// Where [`Authority::route`] sends a findService.
enum Route<'f> {
    /// Answered without the store: a redirect.
    Elsewhere(Response),
    /// Answered from the store's record of `csi`.
    Here {
        /// The location used (its id).
        loc: &'f str,
        /// The identifier.
        csi: &'f Csi,
        /// The feed position read before the store.
        read_at: u64,
    },
}

/// An authority.
pub struct Authority<S: Store> {
    settings: Settings,
    store: S,
    signer: Signer,
    clock: Arc<dyn Clock>,
    write: Mutex<()>,
    /// The records read by the provisioning step in progress (under
    /// `write`): the commit's `expect`.
    reads: std::sync::Mutex<Vec<(Csi, Option<NumberRecord>)>>,
    delegations: RwLock<Arc<RoutingTable<Delegation>>>,
    head: watch::Sender<u64>,
    /// Signatures made on demand (bounded; never written to the store).
    signatures: SignatureCache,
    /// Direct answers, encoded (bounded; checked against the store).
    answers: AnswerCache,
}

impl<S: Store> std::fmt::Debug for Authority<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("id", &self.settings.id).finish()
    }
}

fn in_scope(scope: &[ScopeEntry], csi: &Csi) -> bool {
    scope.iter().any(|s| s.covers(csi))
}

fn forbidden(m: impl Into<String>) -> ProvisionError {
    ProvisionError::Forbidden(m.into())
}

impl<S: Store> Authority<S> {
    /// Opens an authority over a store.
    pub async fn new(settings: Settings, store: S, signer: Signer, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let mut table = RoutingTable::new();
        for d in store.delegations().await? {
            table.insert(d.cover.clone(), d);
        }
        let (head, _) = watch::channel(store.head().await?);
        Ok(Authority { settings, store, signer, clock, write: Mutex::new(()), reads: std::sync::Mutex::new(Vec::new()), delegations: RwLock::new(Arc::new(table)), head, signatures: SignatureCache::new(crate::sigcache::DEFAULT_BYTES), answers: AnswerCache::new(crate::answers::DEFAULT_BYTES) })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
    /// The newest committed sequence number, as it changes.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Reads a record for a decision (provisioning, under `write`) and
    /// notes what was read, so the commit can be refused if it changed.
    async fn read(&self, csi: &Csi) -> Result<Option<NumberRecord>, StoreError> {
        let r = self.store.get(csi).await?;
        self.reads_guard().push((csi.clone(), r.clone()));
        Ok(r)
    }

    fn reads_guard(&self) -> std::sync::MutexGuard<'_, Vec<(Csi, Option<NumberRecord>)>> {
        match self.reads.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The reads since the last call (and forgets them).
    fn take_reads(&self) -> Vec<(Csi, Option<NumberRecord>)> {
        std::mem::take(&mut *self.reads_guard())
    }

    fn routes(&self) -> Arc<RoutingTable<Delegation>> {
        match self.delegations.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    // ------------------------------------------------------------------
    // Answers

    /// Answers a findService (the shell has decoded it).
    pub async fn answer(&self, f: &FindService) -> Result<Response, Failure> {
        match self.route(f)? {
            Route::Elsewhere(r) => Ok(r),
            Route::Here { loc, csi, read_at } => self.found(f, loc, csi, read_at, false).await,
        }
    }

    /// [`Authority::answer`] for the LoST service: the same answer, sent
    /// as bytes encoded earlier when the stored record has not changed since
    /// (the answer cache, [`crate::answers`]); a miss is answered as
    /// `answer` does and remembered.
    pub async fn answer_wire(&self, f: &FindService) -> Result<LostReply, Failure> {
        match self.route(f)? {
            Route::Elsewhere(r) => Ok(r.into()),
            Route::Here { loc, csi, read_at } => {
                if let Some(body) = self.encoded(f, loc, csi, read_at).await {
                    return Ok(LostReply::Encoded { body, outcome: "found" });
                }
                self.found(f, loc, csi, read_at, true).await.map(Into::into)
            }
        }
    }

    /// Where a findService is answered: a redirect or a notFound from the
    /// delegations and the scope, or here, from the store.
    fn route<'f>(&self, f: &'f FindService) -> Result<Route<'f>, Failure> {
        let id = &self.settings.id;
        if let Some(p) = &f.path
            && p.contains(id)
        {
            return Err(Failure::Loop(format!("{id} is already in the path")));
        }
        // Every error that applies, together (RFC 5222 §13.1).
        let (loc, csi) = signpost_schemas::failure::check_find_service(f, id, SERVICE_MIMI)?;
        // The feed position is read before the data it qualifies: a change
        // committed after this point has a higher seq and reaches every
        // subscriber from here, so no change can fall between an answer
        // and its subscription (the invariant the resolver relies on).
        let read_at = *self.head.borrow();
        if let Some(d) = self.routes().lookup_value(csi) {
            let mut r = self.redirect(f, d.clone(), format!("{} is delegated", d.cover))?;
            if let Response::Redirect(rd) = &mut r {
                rd.feed_position = Some(read_at);
            }
            return Ok(Route::Elsewhere(r));
        }
        if !in_scope(&self.settings.scope, csi) {
            return match &self.settings.root {
                Some(root) => {
                    let cover = match csi {
                        Csi::E164(n) => Cover::Prefix(signpost_schemas::E164Prefix::parse(&format!("+{}", n.digits())).map_err(|e| Failure::Internal(e.to_string()))?),
                        Csi::Email(_) | Csi::Mui(_) => match csi.routing_domain() {
                            Some(d) => Cover::Domain { domain: d.clone(), include_subdomains: false },
                            None => return Err(Failure::Internal("a domain CSI without a domain".into())),
                        },
                    };
                    let d = Delegation { cover, lifetime: 60, authorities: vec![root.clone()] };
                    self.redirect(f, d, format!("{id} is not authoritative for this identifier; ask the root")).map(Route::Elsewhere)
                }
                None => Err(Failure::NotFound {
                    message: format!("{id} is not authoritative for {}", csi.uri()),
                    negative_lifetime: self.settings.negative_ttl,
                    feed_position: None,
                }),
            };
        }
        Ok(Route::Here { loc, csi, read_at })
    }

    /// The request's path with this authority added (RFC 5222 §6: the
    /// answering server returns it, so a recursive answer lists resolver
    /// then authority).
    fn answer_path(&self, f: &FindService) -> Path {
        let id = &self.settings.id;
        match &f.path {
            Some(p) => {
                let mut p = p.clone();
                p.push(id.clone());
                p
            }
            None => Path::new(id.clone()),
        }
    }

    /// The answer from the store's record of `csi`. With `remember`, the
    /// record is read as bytes, and its encoded answers are kept in the
    /// answer cache (or dropped from it when it answers no mappings).
    async fn found(&self, f: &FindService, loc: &str, csi: &Csi, read_at: u64, remember: bool) -> Result<Response, Failure> {
        let now = self.clock.now();
        let not_found = || Failure::NotFound {
            message: format!("{} is not discoverable", csi.uri()),
            negative_lifetime: self.settings.negative_ttl,
            feed_position: Some(read_at),
        };
        let internal = |e: StoreError| Failure::Internal(e.to_string());
        let remember = remember && self.answers.enabled();
        let (rec, raw) = if remember {
            let read = self.store.get_raw(csi, |b| (NumberRecord::decode(csi.uri(), b), Box::<[u8]>::from(b))).await.map_err(internal)?;
            match read {
                Some((rec, raw)) => (Some(rec.map_err(|e| Failure::Internal(format!("store: {e}")))?), Some(raw)),
                None => (None, None),
            }
        } else {
            (self.store.get(csi).await.map_err(internal)?, None)
        };
        let forget = || {
            if remember {
                self.answers.remove(csi);
            }
        };
        let Some(rec) = rec else {
            forget();
            return Err(not_found());
        };
        // An opted-out number answers its signed opt-out mapping; an
        // assigned number with no entries (and no opt-out) is not
        // discoverable.
        let opted_out = rec.opted_out();
        if matches!(rec.state, State::Released) || (rec.entries.is_empty() && !opted_out) {
            forget();
            return Err(not_found());
        }
        let ctx = f.context.as_ref();
        let mut visible: Vec<&StoredEntry> = rec.entries.iter().filter(|e| crate::answers::visible_to(ctx, &e.record.visibility, &e.record.tags)).collect();
        visible.sort_by_key(|e| e.record.priority);
        // Signed on demand: a mapping stored without a signature (a bulk
        // import) or with one near its end is signed now, or taken from
        // the signature cache; nothing is written (module docs).
        let renew_at = now.plus_secs(self.settings.renew_before);
        let cap = |m: &Mapping| -> Result<Mapping, Failure> {
            let mut m = self.signed(csi, m, now, renew_at)?;
            m.expires = self.expires(now, m.signature.as_ref().map_or(now, |s| s.valid_until));
            Ok(m)
        };
        // Opted out: the signed opt-out mapping, whatever the entries.
        let mappings: Vec<Mapping> = if opted_out || visible.is_empty() {
            match &rec.none {
                Some(m) => vec![cap(m)?],
                None => {
                    forget();
                    return Err(not_found());
                }
            }
        } else {
            visible.iter().map(|e| cap(&e.signed)).collect::<Result<_, _>>()?
        };
        if let Some(raw) = raw {
            self.answers.put(csi, self.encode_record(csi, &rec, raw, &mappings, renew_at));
        }
        Ok(Response::Found(FindServiceResponse { mappings, warnings: vec![], path: self.answer_path(f), location_used: Some(loc.to_owned()), feed_position: Some(read_at) }))
    }

    /// A mapping's `expires` in an answer at `now`: the mapping lifetime,
    /// capped by the end of its signature.
    fn expires(&self, now: Timestamp, signature_end: Timestamp) -> Expires {
        Expires::At(now.plus_secs(u64::from(self.settings.mapping_ttl)).min(signature_end))
    }

    /// The answer-cache entry of a record read as `raw`: each mapping in
    /// its signed form valid at `valid_at` — the one this answer just
    /// returned (`made`), else the stored one, else the signature cache's
    /// — or missing (never signed here: an entry no answer has needed
    /// costs no signature).
    fn encode_record(&self, csi: &Csi, rec: &NumberRecord, raw: Box<[u8]>, made: &[Mapping], valid_at: Timestamp) -> crate::answers::Encoded {
        use crate::answers::{Encoded, Entry, Signed};
        let signed = |m: &Mapping| -> Option<Signed> {
            let same = |x: &Mapping| crate::sigcache::same_content(x, m) && x.signature.as_ref().is_some_and(|s| s.valid_until >= valid_at);
            if let Some(x) = made.iter().find(|x| same(x)) {
                return Signed::of(x);
            }
            if same(m) {
                return Signed::of(m);
            }
            self.signatures.get(csi, m, valid_at).as_ref().and_then(Signed::of)
        };
        let mut entries: Vec<&StoredEntry> = rec.entries.iter().collect();
        entries.sort_by_key(|e| e.record.priority);
        Encoded {
            raw,
            opted_out: rec.opted_out(),
            none: rec.none.as_ref().map(signed),
            entries: entries.into_iter().map(|e| Entry { visibility: e.record.visibility.clone(), tags: e.record.tags.clone(), mapping: signed(&e.signed) }).collect(),
        }
    }

    /// The answer from the answer cache, if the stored record is still the
    /// one its entry was made from and every mapping this answer returns
    /// is there, signed beyond the renewal margin (else `None`: the caller
    /// answers from the record).
    async fn encoded(&self, f: &FindService, loc: &str, csi: &Csi, read_at: u64) -> Option<Bytes> {
        let e = self.answers.get(csi)?;
        // Compared in place (a store error is left to the full path, which
        // reports it).
        if self.store.get_raw(csi, |b| *b == *e.raw).await.ok()? != Some(true) {
            return None;
        }
        let now = self.clock.now();
        let renew_at = now.plus_secs(self.settings.renew_before);
        let ctx = f.context.as_ref();
        fn usable(s: &Option<crate::answers::Signed>, at: Timestamp) -> Option<&crate::answers::Signed> {
            s.as_ref().filter(|s| s.valid_until >= at)
        }
        let mut chosen = Vec::with_capacity(e.entries.len());
        if !e.opted_out {
            for x in e.entries.iter().filter(|x| crate::answers::visible_to(ctx, &x.visibility, &x.tags)) {
                chosen.push(usable(&x.mapping, renew_at)?);
            }
        }
        if chosen.is_empty() {
            chosen.push(usable(e.none.as_ref()?, renew_at)?);
        }
        let mut out = String::with_capacity(256 + chosen.iter().map(|s| s.tail.as_str().len() + 32).sum::<usize>());
        FindServiceResponse::encode_with_into(&mut out, chosen.iter().map(|s| (self.expires(now, s.valid_until), &s.tail)), &self.answer_path(f), Some(loc), Some(read_at));
        Some(Bytes::from(out))
    }

    fn redirect(&self, f: &FindService, d: Delegation, why: String) -> Result<Response, Failure> {
        let Some(first) = d.authorities.first() else {
            return Err(Failure::Internal("delegation without authority".into()));
        };
        if let Some(p) = &f.path
            && p.contains(&first.id)
        {
            return Err(Failure::Loop(format!("{} (the next hop) is already in the path", first.id)));
        }
        Ok(Response::Redirect(Redirect { target: first.id.clone(), source: self.settings.id.clone(), message: Some(Message::en(why)), delegation: d, feed_position: None }))
    }

    // ------------------------------------------------------------------
    // Signing

    fn sign_entry(&self, csi: &Csi, r: &EntryRecord, epoch: Epoch, last_updated: Timestamp, now: Timestamp) -> Result<Mapping, ProvisionError> {
        self.sign(csi, crate::model::entry_mapping(&self.settings.id, r, epoch, last_updated), now)
    }

    fn sign_none(&self, csi: &Csi, epoch: Epoch, reason: NoProvidersReason, last_updated: Timestamp, now: Timestamp) -> Result<Mapping, ProvisionError> {
        self.sign(csi, crate::model::none_mapping(&self.settings.id, epoch, reason, last_updated), now)
    }

    fn sign(&self, csi: &Csi, mut m: Mapping, now: Timestamp) -> Result<Mapping, ProvisionError> {
        self.signer
            .sign_mapping(csi, &mut m, now, now.plus_secs(self.settings.signature_validity))
            .map_err(|e| ProvisionError::Internal(e.to_string()))?;
        Ok(m)
    }

    /// `m` with a signature valid at `valid_at`: its stored one, else a
    /// cached one for the same content, else a new one (then cached). Only
    /// the signature is new: content and `lastUpdated` stay as stored.
    fn signed(&self, csi: &Csi, m: &Mapping, now: Timestamp, valid_at: Timestamp) -> Result<Mapping, Failure> {
        if m.signature.as_ref().is_some_and(|s| s.valid_until >= valid_at) {
            return Ok(m.clone());
        }
        if let Some(c) = self.signatures.get(csi, m, valid_at) {
            return Ok(c);
        }
        let mut fresh = m.clone();
        fresh.signature = None;
        fresh.expires = Expires::NoCache;
        self.signer.sign_mapping(csi, &mut fresh, now, now.plus_secs(self.settings.signature_validity)).map_err(|e| Failure::Internal(e.to_string()))?;
        self.signatures.put(csi, fresh.clone());
        Ok(fresh)
    }

    /// The signature cache (its fill, for tests and tools).
    pub fn signature_cache(&self) -> &SignatureCache {
        &self.signatures
    }

    /// Replaces the signature cache with one bounded to `bytes` (0: no
    /// cache; every answer of an unsigned mapping signs).
    pub fn with_signature_cache(mut self, bytes: u64) -> Self {
        self.signatures = SignatureCache::new(bytes);
        self
    }

    /// The answer cache (its fill, for tests and tools).
    pub fn answer_cache(&self) -> &AnswerCache {
        &self.answers
    }

    /// Replaces the answer cache with one bounded to `bytes` (0: no cache;
    /// every answer decodes its record and encodes its mappings).
    pub fn with_answer_cache(mut self, bytes: u64) -> Self {
        self.answers = AnswerCache::new(bytes);
        self
    }

    // ------------------------------------------------------------------
    // Provisioning

    fn require_scope(&self, csi: &Csi) -> Result<(), ProvisionError> {
        if in_scope(&self.settings.scope, csi) {
            Ok(())
        } else {
            Err(forbidden(format!("{} is not authoritative for {}", self.settings.id, csi.uri())))
        }
    }

    /// May `peer` act as the number provider for this record?
    fn csip_may(&self, peer: &Peer, csi: &Csi, rec: Option<&NumberRecord>) -> Result<(), ProvisionError> {
        match peer.role() {
            Role::Admin if peer.covers(csi) => Ok(()),
            Role::Csip => match rec.and_then(NumberRecord::tnsp) {
                Some(t) if t == peer.id() => Ok(()),
                Some(t) => Err(forbidden(format!("{} is served by {t}, not {}", csi.uri(), peer.id()))),
                None if peer.covers(csi) => Ok(()),
                None => Err(forbidden(format!("{} is outside the scope of {}", csi.uri(), peer.id()))),
            },
            r => Err(forbidden(format!("role {} may not change number state", r.as_str()))),
        }
    }

    /// Applies a provisioning request from an authenticated peer.
    pub async fn provision(&self, peer: &Peer, op: Provision) -> Result<ProvisionResult, ProvisionError> {
        let _w = self.write.lock().await;
        self.take_reads();
        let now = self.clock.now();
        let mut commit = Commit { time: now, ..Commit::default() };
        let mut epoch = None;
        let affected;
        let opt_out = matches!(op, Provision::OptOut { .. });
        match op {
            Provision::PutEntry { csi, entry } => {
                self.require_scope(&csi)?;
                match peer.role() {
                    Role::Msp if &entry.provider == peer.id() => {
                        if entry.assurance == signpost_schemas::Assurance::CsipAttested {
                            return Err(forbidden("an MSP cannot mark its own entry csip-attested"));
                        }
                    }
                    Role::Msp => return Err(forbidden(format!("{} may only provision its own entries, not {}'s", peer.id(), entry.provider))),
                    Role::Admin if peer.covers(&csi) => {}
                    r => return Err(forbidden(format!("role {} may not provision entries", r.as_str()))),
                }
                let mut rec = self.assigned(&csi).await?;
                let signed = self.sign_entry(&csi, &entry, rec.epoch, now, now)?;
                rec.entries.retain(|e| e.record.provider != entry.provider);
                rec.entries.push(StoredEntry { record: entry, signed });
                epoch = Some(rec.epoch);
                commit.changes.push((Subject::Csi(csi), ChangeOp::EntryPut));
                commit.records.push(rec);
                affected = 1;
            }
            Provision::RemoveEntry { csi, provider } => {
                self.require_scope(&csi)?;
                match peer.role() {
                    Role::Msp if &provider == peer.id() => {}
                    Role::Msp => return Err(forbidden(format!("{} may only remove its own entries", peer.id()))),
                    Role::Admin if peer.covers(&csi) => {}
                    r => return Err(forbidden(format!("role {} may not remove entries", r.as_str()))),
                }
                let mut rec = self.assigned(&csi).await?;
                let before = rec.entries.len();
                rec.entries.retain(|e| e.record.provider != provider);
                if rec.entries.len() == before {
                    return Err(ProvisionError::Conflict(format!("{} has no entry from {provider}", csi.uri())));
                }
                epoch = Some(rec.epoch);
                commit.changes.push((Subject::Csi(csi), ChangeOp::EntryRemove));
                commit.records.push(rec);
                affected = 1;
            }
            Provision::Assign { csi, tnsp } => {
                self.require_scope(&csi)?;
                let rec = self.read(&csi).await?;
                self.csip_may(peer, &csi, rec.as_ref())?;
                let tnsp = self.assignee(peer, tnsp)?;
                if let Some(r) = &rec
                    && r.tnsp() == Some(&tnsp)
                {
                    // A repeat (a retry after a lost acknowledgement): the
                    // number is already as asked, so nothing is committed
                    // and the answer carries the same epoch, affected 0 and
                    // the current feed head.
                    return Ok(ProvisionResult { seq: *self.head.borrow(), epoch: Some(r.epoch), affected: 0 });
                }
                let new = self.assign_one(&csi, rec, tnsp, now)?;
                epoch = Some(new.epoch);
                commit.changes.push((Subject::Csi(csi), ChangeOp::Assign));
                commit.records.push(new);
                affected = 1;
            }
            Provision::Release { csi } => {
                self.require_scope(&csi)?;
                let rec = self.read(&csi).await?;
                self.csip_may(peer, &csi, rec.as_ref())?;
                let new = self.release_one(&csi, rec)?;
                epoch = Some(new.epoch);
                commit.changes.push((Subject::Csi(csi), ChangeOp::Release));
                commit.records.push(new);
                affected = 1;
            }
            Provision::Port { csi, to } => {
                self.require_scope(&csi)?;
                let rec = self.read(&csi).await?;
                self.csip_may(peer, &csi, rec.as_ref())?;
                let mut rec = match rec {
                    Some(r) if r.tnsp().is_some() => r,
                    _ => return Err(ProvisionError::Conflict(format!("{} is not assigned; nothing to port", csi.uri()))),
                };
                if rec.tnsp() == Some(&to) {
                    return Err(ProvisionError::Conflict(format!("{} is already served by {to}", csi.uri())));
                }
                // Porting keeps OTT entries and removes those bound to the
                // donor operator (operator-aligned APs).
                rec.entries.retain(|e| !e.record.bound_to_tnsp);
                rec.state = State::Assigned { tnsp: to };
                epoch = Some(rec.epoch);
                commit.changes.push((Subject::Csi(csi), ChangeOp::Port));
                commit.records.push(rec);
                affected = 1;
            }
            Provision::AssignRange { first, count, tnsp } => {
                let tnsp = self.assignee(peer, tnsp)?;
                let mut repeats = 0u64;
                for csi in self.range(&first, count)? {
                    self.require_scope(&csi)?;
                    let rec = self.read(&csi).await?;
                    self.csip_may(peer, &csi, rec.as_ref())?;
                    if rec.as_ref().is_some_and(|r| r.tnsp() == Some(&tnsp)) {
                        repeats += 1;
                        continue;
                    }
                    let new = self.assign_one(&csi, rec, tnsp.clone(), now)?;
                    commit.changes.push((Subject::Csi(csi), ChangeOp::Assign));
                    commit.records.push(new);
                }
                // All or nothing: a repeat of the whole range (a retry)
                // succeeds and commits nothing; a range that overlaps
                // assigned numbers otherwise is a conflict.
                if repeats == u64::from(count) {
                    return Ok(ProvisionResult { seq: *self.head.borrow(), epoch: None, affected: 0 });
                }
                if repeats > 0 {
                    return Err(ProvisionError::Conflict(format!("{repeats} numbers of the range are already assigned; release them or repeat the range exactly")));
                }
                affected = u64::from(count);
            }
            Provision::ReleaseRange { first, count } => {
                for csi in self.range(&first, count)? {
                    self.require_scope(&csi)?;
                    let rec = self.read(&csi).await?;
                    self.csip_may(peer, &csi, rec.as_ref())?;
                    let new = self.release_one(&csi, rec)?;
                    commit.changes.push((Subject::Csi(csi), ChangeOp::Release));
                    commit.records.push(new);
                }
                affected = u64::from(count);
            }
            Provision::OptOut { csi } | Provision::OptIn { csi } => {
                let (reason, op) = if opt_out {
                    (NoProvidersReason::OptedOut, ChangeOp::OptOut)
                } else {
                    (NoProvidersReason::RecipientPreferences, ChangeOp::OptIn)
                };
                let rec = match self.opt_change(peer, &csi, reason, now).await? {
                    Ok(rec) => rec,
                    // Already so: a repeat succeeds and changes nothing.
                    Err(epoch) => {
                        let seq = *self.head.borrow();
                        return Ok(ProvisionResult { seq, epoch: Some(epoch), affected: 0 });
                    }
                };
                epoch = Some(rec.epoch);
                commit.changes.push((Subject::Csi(csi), op));
                commit.records.push(rec);
                affected = 1;
            }
            Provision::Delegate(d) => {
                self.admin_for_block(peer, &d.cover)?;
                commit.changes.push((Subject::Cover(d.cover.clone()), ChangeOp::Delegate));
                commit.delegations_put.push(d);
                affected = 1;
            }
            Provision::Undelegate(c) => {
                self.admin_for_block(peer, &c)?;
                let exists = match &c {
                    Cover::Prefix(p) => self.routes().e164.get_exact(p).is_some(),
                    Cover::Domain { domain, .. } => self.routes().email.nearest(domain.as_str()).is_some_and(|(d, _, _)| d == domain),
                };
                if !exists {
                    return Err(ProvisionError::Conflict(format!("{c} is not delegated")));
                }
                commit.changes.push((Subject::Cover(c.clone()), ChangeOp::Undelegate));
                commit.delegations_remove.push(c);
                affected = 1;
            }
        }
        let (puts, removes) = (commit.delegations_put.clone(), commit.delegations_remove.clone());
        commit.expect = self.take_reads();
        let seq = self.store.commit(commit).await?;
        if !puts.is_empty() || !removes.is_empty() {
            self.reload_delegations().await?;
        }
        self.advance(seq);
        Ok(ProvisionResult { seq, epoch, affected })
    }

    /// What a bulk import would refuse among `recs`, row by row:
    /// identifiers outside this authority's scope and identifiers already
    /// in the store (except those at a byte offset before `written_before`:
    /// an interrupted run of the same file wrote them), each as `line N:
    /// …`, up to `max` of them (so an operator fixes a file in one pass, not
    /// one row per run). One batched store read per call.
    pub async fn import_problems(&self, recs: &[crate::import::ImportRecord], written_before: u64, max: usize) -> Result<Vec<String>, ProvisionError> {
        let mut out = Vec::new();
        let mut ask = Vec::new();
        for r in recs {
            if let Err(e) = self.require_scope(&r.item.csi) {
                out.push((r.item.line, format!("line {}: {e}", r.item.line)));
            } else if r.offset >= written_before {
                ask.push(r);
            }
        }
        let csis: Vec<Csi> = ask.iter().map(|r| r.item.csi.clone()).collect();
        for (r, found) in ask.iter().zip(self.store.get_many(&csis).await?) {
            if found.is_some() {
                out.push((r.item.line, format!("line {}: {} is already in the store", r.item.line, r.item.csi.uri())));
            }
        }
        out.sort_by_key(|(l, _)| *l);
        Ok(out.into_iter().take(max).map(|(_, e)| e).collect())
    }

    /// The stored record of an imported identifier, updated at `now`,
    /// unsigned: its mappings are signed when an answer first needs them
    /// ([`Authority::answer`]), so an import costs no signature.
    fn record_of(&self, r: crate::import::ImportRecord, now: Timestamp) -> Result<(NumberRecord, (Subject, ChangeOp)), ProvisionError> {
        let crate::import::ImportRecord { item: it, epoch, opted_out, .. } = r;
        self.require_scope(&it.csi).map_err(|e| ProvisionError::BadRequest(format!("line {}: {e}", it.line)))?;
        Ok(match it.tnsp {
            Some(tnsp) => {
                let mut entries = Vec::with_capacity(it.entries.len());
                let id = &self.settings.id;
                for e in it.entries {
                    let signed = crate::model::entry_mapping(id, &e, epoch, now);
                    entries.push(StoredEntry { record: e, signed });
                }
                let reason = if opted_out { NoProvidersReason::OptedOut } else { NoProvidersReason::RecipientPreferences };
                let none = Some(crate::model::none_mapping(id, epoch, reason, now));
                let change = (Subject::Csi(it.csi.clone()), ChangeOp::Assign);
                (NumberRecord { none, csi: it.csi, state: State::Assigned { tnsp }, epoch, entries }, change)
            }
            None => {
                let change = (Subject::Csi(it.csi.clone()), ChangeOp::Release);
                (NumberRecord { csi: it.csi, state: State::Released, epoch, entries: vec![], none: None }, change)
            }
        })
    }

    /// Builds the (unsigned) records of a bulk import batch on `threads`
    /// threads, in order, with their feed events. Blocking: call it off
    /// the async runtime (`spawn_blocking`).
    pub fn build_import(&self, recs: Vec<crate::import::ImportRecord>, threads: usize) -> Result<ImportBatch, ProvisionError> {
        let now = self.clock.now();
        let per = recs.len().div_ceil(threads.max(1)).max(1);
        let mut chunks = Vec::new();
        let mut it = recs.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(per).collect::<Vec<_>>());
        }
        let parts: Vec<Result<Vec<_>, ProvisionError>> = std::thread::scope(|s| {
            let hs: Vec<_> = chunks
                .into_iter()
                .map(|c| {
                    s.spawn(move || {
                        c.into_iter()
                            .map(|r| {
                                let (rec, ch) = self.record_of(r, now)?;
                                let enc = rec.encode();
                                Ok((rec, enc, ch))
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(ProvisionError::Internal("an import thread failed".into())))).collect()
        });
        let mut b = ImportBatch { records: Vec::new(), encoded: Vec::new(), changes: Vec::new(), time: now };
        for p in parts {
            for (rec, enc, ch) in p? {
                b.records.push(rec);
                b.encoded.push(enc);
                b.changes.push(ch);
            }
        }
        Ok(b)
    }

    /// Writes one import batch with its checkpoint in one
    /// transaction. Every identifier must still be new: a backend shared
    /// with other frontends refuses the batch (a conflict, nothing of it
    /// written) if one was created meanwhile. With `beside_writers` (an
    /// online import: this process also provisions), a store with one
    /// writer process is asked too, under the write lock, so a number
    /// provisioned since the check pass is never overwritten.
    pub async fn import_batch(&self, b: ImportBatch, checkpoint: crate::store::Checkpoint, beside_writers: bool) -> Result<u64, ProvisionError> {
        let _w = self.write.lock().await;
        if beside_writers && !self.store.shared() {
            let csis: Vec<Csi> = b.records.iter().map(|r| r.csi.clone()).collect();
            let found = self.store.get_many(&csis).await?;
            let created = found.iter().filter(|f| f.is_some()).count();
            if created > 0 {
                return Err(ProvisionError::Conflict(format!(
                    "{created} identifier(s) of this batch were created while the import ran (by provisioning); nothing of the batch is written"
                )));
            }
        }
        let expect = b.records.iter().map(|r| (r.csi.clone(), None)).collect();
        let commit = Commit { records: b.records, encoded: b.encoded, changes: b.changes, expect, checkpoint: Some(checkpoint), time: b.time, ..Commit::default() };
        let seq = self.store.commit(commit).await?;
        self.advance(seq);
        Ok(seq)
    }

    async fn reload_delegations(&self) -> Result<(), StoreError> {
        let mut t = RoutingTable::new();
        for d in self.store.delegations().await? {
            t.insert(d.cover.clone(), d);
        }
        let mut g = match self.delegations.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(t);
        Ok(())
    }

    /// Publishes a newer feed head (never an older one: the follower may
    /// already have published a later commit of another frontend).
    fn advance(&self, seq: u64) {
        self.head.send_if_modified(|h| {
            let newer = seq > *h;
            if newer {
                *h = seq;
            }
            newer
        });
    }

    /// On a shared store (PostgreSQL with several frontends), follows the
    /// commits made elsewhere: on each notification from the database, and
    /// every `poll` at the latest, reads the store's head and, if it moved,
    /// reloads the delegations when one of the new events touched them,
    /// then publishes the head, which wakes this frontend's `/feed`
    /// streams. `None` for a store with one writer process. The task ends
    /// when the authority is dropped.
    pub fn follow(self: &Arc<Self>, poll: std::time::Duration) -> Option<tokio::task::JoinHandle<()>> {
        if !self.store.shared() {
            return None;
        }
        let weak = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                let Some(a) = weak.upgrade() else { return };
                if let Err(e) = a.catch_up().await {
                    tracing::warn!("following the shared store: {e}");
                }
                a.store.wait_external(poll).await;
            }
        }))
    }

    /// Brings the published head (and the delegations) up to the store's.
    async fn catch_up(&self) -> Result<(), StoreError> {
        // Under the write lock: a local commit's own reload cannot race
        // this one and leave an older table behind.
        let _w = self.write.lock().await;
        let head = self.store.head().await?;
        let mut cursor = *self.head.borrow();
        if head <= cursor {
            return Ok(());
        }
        let mut delegations = false;
        while cursor < head && !delegations {
            match self.store.changes_since(cursor, 512).await? {
                FeedPage::Changes(page) => {
                    let Some(last) = page.last() else { break };
                    cursor = last.seq;
                    delegations = page.iter().any(|c| matches!(c.subject, Subject::Cover(_)));
                }
                FeedPage::Gone { .. } => delegations = true,
            }
        }
        if delegations {
            self.reload_delegations().await?;
        }
        self.advance(head);
        Ok(())
    }

    /// Bulk import (offline tool): every CSI must be new; all records are
    /// built and signed first, then written in one transaction, so a
    /// failure leaves nothing behind. `progress` is called per CSI.
    pub async fn import(&self, items: Vec<crate::import::ImportItem>, progress: &(dyn Fn(u64) + Sync)) -> Result<ProvisionResult, ProvisionError> {
        let _w = self.write.lock().await;
        self.take_reads();
        let now = self.clock.now();
        let mut commit = Commit { time: now, ..Commit::default() };
        let n = items.len() as u64;
        // Every CSI must be new: looked up in batches (one round trip per
        // batch on PostgreSQL), and noted as read, so a CSI created through
        // another frontend meanwhile fails the commit.
        let csis: Vec<Csi> = items.iter().map(|it| it.csi.clone()).collect();
        let found = self.store.get_many(&csis).await?;
        self.reads_guard().extend(csis.into_iter().zip(found.iter().cloned()));
        for (i, (it, existing)) in items.into_iter().zip(found).enumerate() {
            if existing.is_some() {
                return Err(ProvisionError::Conflict(format!("line {}: {} is already in the store", it.line, it.csi.uri())));
            }
            let (rec, change) = self.record_of(crate::import::ImportRecord { item: it, epoch: Epoch(1), opted_out: false, offset: 0 }, now)?;
            commit.changes.push(change);
            commit.records.push(rec);
            progress(i as u64 + 1);
        }
        commit.expect = self.take_reads();
        let seq = self.store.commit(commit).await?;
        self.advance(seq);
        Ok(ProvisionResult { seq, epoch: None, affected: n })
    }

    /// The record with its "no providers" mapping re-signed for `reason`
    /// (`OptedOut`: the user opted out; `RecipientPreferences`: opt-in),
    /// or `Err(epoch)` when it already is so (a repeat changes nothing). The
    /// CSIP serving the number and an admin may; an MSP may not (it
    /// manages its own entries, not the number's discoverability).
    async fn opt_change(&self, peer: &Peer, csi: &Csi, reason: NoProvidersReason, now: Timestamp) -> Result<Result<NumberRecord, Epoch>, ProvisionError> {
        self.require_scope(csi)?;
        let rec = self.read(csi).await?;
        self.csip_may(peer, csi, rec.as_ref())?;
        let mut rec = match rec {
            Some(r) if r.tnsp().is_some() => r,
            _ => return Err(ProvisionError::Conflict(format!("{} is not assigned; only an assigned number can opt out or in", csi.uri()))),
        };
        let out = reason == NoProvidersReason::OptedOut;
        if rec.opted_out() == out {
            return Ok(Err(rec.epoch));
        }
        rec.none = Some(self.sign_none(csi, rec.epoch, reason, now, now)?);
        Ok(Ok(rec))
    }

    async fn assigned(&self, csi: &Csi) -> Result<NumberRecord, ProvisionError> {
        match self.read(csi).await? {
            Some(r) if r.tnsp().is_some() => Ok(r),
            Some(_) => Err(ProvisionError::Conflict(format!("{} is released; entries need an assigned number", csi.uri()))),
            None => Err(ProvisionError::Conflict(format!("{} is not assigned; entries need an assigned number", csi.uri()))),
        }
    }

    fn assignee(&self, peer: &Peer, tnsp: Option<Name>) -> Result<Name, ProvisionError> {
        match (peer.role(), tnsp) {
            (Role::Csip, None) => Ok(peer.id().clone()),
            (Role::Csip, Some(t)) if &t == peer.id() => Ok(t),
            (Role::Csip, Some(t)) => Err(forbidden(format!("{} may assign numbers to itself only, not to {t}", peer.id()))),
            (Role::Admin, Some(t)) => Ok(t),
            (Role::Admin, None) => Err(ProvisionError::BadRequest("an admin must name the tnsp to assign to".into())),
            (r, _) => Err(forbidden(format!("role {} may not assign numbers", r.as_str()))),
        }
    }

    fn assign_one(&self, csi: &Csi, rec: Option<NumberRecord>, tnsp: Name, now: Timestamp) -> Result<NumberRecord, ProvisionError> {
        let epoch = match rec {
            Some(r) => match r.state {
                State::Assigned { tnsp: t } => {
                    return Err(ProvisionError::Conflict(format!("{} is already assigned to {t}; release or port it first", csi.uri())));
                }
                // Reassignment starts clean: a new epoch, no entries.
                State::Released => Epoch(r.epoch.0 + 1),
            },
            None => Epoch(1),
        };
        Ok(NumberRecord { csi: csi.clone(), state: State::Assigned { tnsp }, epoch, entries: vec![], none: Some(self.sign_none(csi, epoch, NoProvidersReason::RecipientPreferences, now, now)?) })
    }

    fn release_one(&self, csi: &Csi, rec: Option<NumberRecord>) -> Result<NumberRecord, ProvisionError> {
        match rec {
            Some(r) if r.tnsp().is_some() => Ok(NumberRecord { csi: csi.clone(), state: State::Released, epoch: Epoch(r.epoch.0 + 1), entries: vec![], none: None }),
            _ => Err(ProvisionError::Conflict(format!("{} is not assigned; nothing to release", csi.uri()))),
        }
    }

    fn range(&self, first: &E164, count: u32) -> Result<Vec<Csi>, ProvisionError> {
        range_end(first, count).map_err(|e| ProvisionError::BadRequest(e.to_string()))?;
        let start: u64 = first.digits().parse().map_err(|_| ProvisionError::BadRequest("bad range start".into()))?;
        (0..u64::from(count))
            .map(|i| E164::from_digits(&(start + i).to_string()).map(Csi::E164).map_err(|e| ProvisionError::BadRequest(e.to_string())))
            .collect()
    }

    fn admin_for_block(&self, peer: &Peer, cover: &Cover) -> Result<(), ProvisionError> {
        if peer.role() != Role::Admin {
            return Err(forbidden(format!("only an admin may change delegations, not role {}", peer.role().as_str())));
        }
        if !peer.scope().iter().any(|s| s.covers_block(cover)) {
            return Err(forbidden(format!("{cover} is outside the scope of {}", peer.id())));
        }
        if !self.settings.scope.iter().any(|s| s.covers_block(cover)) {
            return Err(forbidden(format!("{cover} is outside the scope of {}", self.settings.id)));
        }
        Ok(())
    }
}

/// The authority's own endpoint reference (for tests and tools).
pub fn authority_ref(id: Name, endpoint: Endpoint) -> AuthorityRef {
    AuthorityRef { id, endpoints: vec![endpoint] }
}
