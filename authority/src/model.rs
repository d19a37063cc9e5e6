//! What an authority stores per CSI, and a compact binary encoding of it
//! for the stores (versioned, checked on read: a corrupt record is an
//! error, never a panic).
//!
//! **Version 3** (written now) is version 2 without the CSI (the store's
//! key for the bytes; [`NumberRecord::decode`] takes it) and with one
//! record-wide `lastUpdated` that an unsigned mapping refers to instead of
//! repeating it (a bulk import stores every mapping unsigned, all made at
//! the same time).
//!
//! **Version 2** (read): varints; each mapping stored as what it cannot
//! be derived from — its `lastUpdated` and, when signed, its signature,
//! the raw 64 bytes of the ECDSA P-256 `r ‖ s` instead of DER — since the
//! rest of a mapping follows from the entry it was made for (the same
//! derivation the core signs: [`entry_mapping`], [`none_mapping`]); the
//! authority id and the signing key, the signature times and the
//! `mimi://provider/` URI prefix are written once per record and referred
//! to. A mapping that does not follow the derivation is stored whole.
//! **Version 1** (read only): fixed-width lengths and every mapping whole.

use signpost_schemas::lost::{
    Assurance, DisplayName, Epoch, KeyId, Mapping, MappingBody, NoProvidersReason, ProviderEntry, Signature, Tag, Uri,
};
use signpost_schemas::sp::{EntryRecord, Visibility};
use signpost_schemas::{Csi, Expires, Name, Timestamp};

/// A number's (or address's) state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum State {
    /// Assigned, served by this TNSP / email provider.
    Assigned {
        /// The serving TNSP.
        tnsp: Name,
    },
    /// Released: no entries, awaiting reassignment.
    Released,
}

/// One MSP entry with its signed mapping.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredEntry {
    /// As provisioned.
    pub record: EntryRecord,
    /// The mapping as signed (its `expires` is set per answer).
    pub signed: Mapping,
}

/// Everything stored for one CSI.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NumberRecord {
    /// The CSI.
    pub csi: Csi,
    /// Assigned or released.
    pub state: State,
    /// Bumped at every release; entries live under the current epoch only.
    pub epoch: Epoch,
    /// The MSP entries.
    pub entries: Vec<StoredEntry>,
    /// The signed "exists, nothing for you" mapping of the current epoch
    /// (present while assigned).
    pub none: Option<Mapping>,
}

const V1: u8 = 1;
const V2: u8 = 2;
const V3: u8 = 3;

/// A record that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt stored record: {0}")]
pub struct Corrupt(pub String);

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
    fn list<T>(&mut self, v: &[T], mut f: impl FnMut(&mut Enc, &T)) {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        for x in v {
            f(self, x);
        }
    }
}

struct Dec<'a>(&'a [u8]);

fn bad(what: &str) -> Corrupt {
    Corrupt(what.to_owned())
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let (a, b) = (self.0.get(..n).ok_or_else(|| bad("truncated"))?, self.0.get(n..).unwrap_or(&[]));
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(*self.take(1)?.first().ok_or_else(|| bad("truncated"))?)
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| bad("truncated"))?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| bad("truncated"))?;
        Ok(u64::from_le_bytes(b))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.bytes()?).map_err(|_| bad("not UTF-8"))
    }
    fn opt_str(&mut self) -> Result<Option<&'a str>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(bad("option tag")),
        }
    }
    fn list<T>(&mut self, mut f: impl FnMut(&mut Dec<'a>) -> Result<T, Corrupt>) -> Result<Vec<T>, Corrupt> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(bad("list length"));
        }
        (0..n).map(|_| f(self)).collect()
    }
    fn name(&mut self) -> Result<Name, Corrupt> {
        Name::parse(self.str()?).map_err(|e| Corrupt(e.to_string()))
    }
    fn uri(&mut self) -> Result<Uri, Corrupt> {
        Uri::parse(self.str()?).map_err(|e| Corrupt(e.to_string()))
    }
    fn tag(&mut self) -> Result<Tag, Corrupt> {
        Tag::parse(self.str()?).map_err(|e| Corrupt(e.to_string()))
    }
    fn assurance(&mut self) -> Result<Assurance, Corrupt> {
        match self.u8()? {
            0 => Ok(Assurance::CsipAttested),
            1 => Ok(Assurance::MspVerified),
            _ => Err(bad("assurance")),
        }
    }
}

fn enc_assurance(e: &mut Enc, a: Assurance) {
    e.u8(match a {
        Assurance::CsipAttested => 0,
        Assurance::MspVerified => 1,
    });
}

fn enc_dn(e: &mut Enc, d: &DisplayName) {
    e.str(&d.text);
    e.str(&d.lang);
}

fn dec_dn(d: &mut Dec<'_>) -> Result<DisplayName, Corrupt> {
    Ok(DisplayName { text: d.str()?.to_owned(), lang: d.str()?.to_owned() })
}

fn enc_mapping(e: &mut Enc, m: &Mapping) {
    e.u64(m.last_updated.as_millis());
    e.str(m.source.as_str());
    e.str(&m.source_id);
    e.list(&m.display_names, enc_dn);
    e.opt_str(m.service.as_ref().map(Uri::as_str));
    e.list(&m.uris, |e, u| e.str(u.as_str()));
    match &m.body {
        MappingBody::Provider(p) => {
            e.u8(0);
            e.str(p.id.as_str());
            e.u32(p.priority);
            e.list(&p.tags, |e, t| e.str(t.as_str()));
            enc_assurance(e, p.assurance);
            e.u64(p.epoch.0);
        }
        MappingBody::NoProviders { reason, epoch } => {
            e.u8(1);
            e.u8(match reason {
                NoProvidersReason::RecipientPreferences => 0,
                NoProvidersReason::OptedOut => 1,
            });
            e.u64(epoch.0);
        }
    }
    match &m.signature {
        Some(s) => {
            e.u8(1);
            e.str(s.key_id.as_str());
            e.u64(s.signed_at.as_millis());
            e.u64(s.valid_until.as_millis());
            e.bytes(&s.value);
        }
        None => e.u8(0),
    }
}

fn dec_mapping(d: &mut Dec<'_>) -> Result<Mapping, Corrupt> {
    let last_updated = Timestamp::from_millis(d.u64()?);
    let source = d.name()?;
    let source_id = d.str()?.to_owned();
    let display_names = d.list(dec_dn)?;
    let service = d.opt_str()?.map(|s| Uri::parse(s).map_err(|e| Corrupt(e.to_string()))).transpose()?;
    let uris = d.list(|d| d.uri())?;
    let body = match d.u8()? {
        0 => MappingBody::Provider(ProviderEntry {
            id: d.name()?,
            priority: d.u32()?,
            tags: d.list(|d| d.tag())?,
            assurance: d.assurance()?,
            epoch: Epoch(d.u64()?),
        }),
        1 => {
            let reason = match d.u8()? {
                0 => NoProvidersReason::RecipientPreferences,
                1 => NoProvidersReason::OptedOut,
                _ => return Err(bad("reason")),
            };
            MappingBody::NoProviders { reason, epoch: Epoch(d.u64()?) }
        }
        _ => return Err(bad("mapping body")),
    };
    let signature = match d.u8()? {
        0 => None,
        1 => Some(Signature {
            key_id: KeyId::parse(d.str()?).map_err(|e| Corrupt(e.to_string()))?,
            signed_at: Timestamp::from_millis(d.u64()?),
            valid_until: Timestamp::from_millis(d.u64()?),
            value: d.bytes()?.to_vec(),
        }),
        _ => return Err(bad("signature tag")),
    };
    Ok(Mapping { expires: Expires::NoCache, last_updated, source, source_id, display_names, service, uris, body, signature })
}

fn enc_entry(e: &mut Enc, r: &EntryRecord) {
    e.str(r.provider.as_str());
    match &r.display_name {
        Some(d) => {
            e.u8(1);
            enc_dn(e, d);
        }
        None => e.u8(0),
    }
    e.list(&r.uris, |e, u| e.str(u.as_str()));
    e.u32(r.priority);
    e.list(&r.tags, |e, t| e.str(t.as_str()));
    enc_assurance(e, r.assurance);
    e.u8(u8::from(r.bound_to_tnsp));
    match &r.visibility {
        Visibility::All => e.u8(0),
        Visibility::Only(v) => {
            e.u8(1);
            e.list(v, |e, n| e.str(n.as_str()));
        }
    }
}

fn dec_entry(d: &mut Dec<'_>) -> Result<EntryRecord, Corrupt> {
    let provider = d.name()?;
    let display_name = match d.u8()? {
        0 => None,
        1 => Some(dec_dn(d)?),
        _ => return Err(bad("display name tag")),
    };
    let uris = d.list(|d| d.uri())?;
    let priority = d.u32()?;
    let tags = d.list(|d| d.tag())?;
    let assurance = d.assurance()?;
    let bound_to_tnsp = d.u8()? == 1;
    let visibility = match d.u8()? {
        0 => Visibility::All,
        1 => Visibility::Only(d.list(|d| d.name())?),
        _ => return Err(bad("visibility")),
    };
    Ok(EntryRecord { provider, display_name, uris, priority, tags, assurance, bound_to_tnsp, visibility })
}

impl NumberRecord {
    /// The stored bytes (version 3: without the CSI, which is the store's
    /// key for them).
    pub fn encode(&self) -> Vec<u8> {
        v2::encode(self, true)
    }

    /// The version 2 bytes (what earlier releases wrote; still read).
    pub fn encode_v2(&self) -> Vec<u8> {
        v2::encode(self, false)
    }

    /// The version 1 bytes (what earlier releases wrote; still read).
    pub fn encode_v1(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(256 + 400 * self.entries.len()));
        e.u8(V1);
        e.str(self.csi.uri());
        match &self.state {
            State::Assigned { tnsp } => {
                e.u8(0);
                e.str(tnsp.as_str());
            }
            State::Released => e.u8(1),
        }
        e.u64(self.epoch.0);
        e.list(&self.entries, |e, s| {
            enc_entry(e, &s.record);
            enc_mapping(e, &s.signed);
        });
        match &self.none {
            Some(m) => {
                e.u8(1);
                enc_mapping(&mut e, m);
            }
            None => e.u8(0),
        }
        e.0
    }

    /// Reads stored bytes back (any version); `key` is the URI they are
    /// stored under (version 3 does not repeat it).
    pub fn decode(key: &str, b: &[u8]) -> Result<NumberRecord, Corrupt> {
        match b.first() {
            Some(&V2 | &V3) => return v2::decode(key, b),
            Some(&V1) => {}
            _ => return Err(bad("unknown record version")),
        }
        let mut d = Dec(b);
        d.u8()?;
        let csi = Csi::from_wire(d.str()?).map_err(|e| Corrupt(e.to_string()))?;
        let state = match d.u8()? {
            0 => State::Assigned { tnsp: d.name()? },
            1 => State::Released,
            _ => return Err(bad("state")),
        };
        let epoch = Epoch(d.u64()?);
        let entries = d.list(|d| Ok(StoredEntry { record: dec_entry(d)?, signed: dec_mapping(d)? }))?;
        let none = match d.u8()? {
            0 => None,
            1 => Some(dec_mapping(&mut d)?),
            _ => return Err(bad("none tag")),
        };
        if !d.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(NumberRecord { csi, state, epoch, entries, none })
    }

    /// Whether the number's user opted out of discovery (its "no
    /// providers" mapping says `opted-out`).
    pub fn opted_out(&self) -> bool {
        matches!(self.none.as_ref().map(|m| &m.body), Some(MappingBody::NoProviders { reason: NoProvidersReason::OptedOut, .. }))
    }

    /// The serving TNSP, if assigned.
    pub fn tnsp(&self) -> Option<&Name> {
        match &self.state {
            State::Assigned { tnsp } => Some(tnsp),
            State::Released => None,
        }
    }
}

/// The mapping an entry is signed as (unsigned; `expires` is set per
/// answer).
pub fn entry_mapping(source: &Name, r: &EntryRecord, epoch: Epoch, last_updated: Timestamp) -> Mapping {
    Mapping {
        expires: Expires::NoCache,
        last_updated,
        source: source.clone(),
        source_id: format!("{}.e{}", r.provider, epoch.0),
        display_names: r.display_name.iter().cloned().collect(),
        service: Uri::parse(signpost_schemas::lost::SERVICE_MIMI).ok(),
        uris: r.uris.clone(),
        body: MappingBody::Provider(ProviderEntry { id: r.provider.clone(), priority: r.priority, tags: r.tags.clone(), assurance: r.assurance, epoch }),
        signature: None,
    }
}

/// The "exists, nothing for you" (or opted-out) mapping of an epoch
/// (unsigned).
pub fn none_mapping(source: &Name, epoch: Epoch, reason: NoProvidersReason, last_updated: Timestamp) -> Mapping {
    Mapping {
        expires: Expires::NoCache,
        last_updated,
        source: source.clone(),
        source_id: match reason {
            NoProvidersReason::RecipientPreferences => format!("none.e{}", epoch.0),
            NoProvidersReason::OptedOut => format!("opted-out.e{}", epoch.0),
        },
        display_names: vec![],
        service: Uri::parse(signpost_schemas::lost::SERVICE_MIMI).ok(),
        uris: vec![],
        body: MappingBody::NoProviders { reason, epoch },
        signature: None,
    }
}

/// ECDSA signatures: DER `SEQUENCE { INTEGER r, INTEGER s }` and the raw
/// 64-byte `r ‖ s` of P-256.
mod ecdsa {
    fn int(b: &[u8]) -> Option<([u8; 32], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&len, rest) = rest.split_first()?;
        if tag != 2 || usize::from(len) > rest.len() {
            return None;
        }
        let (v, rest) = rest.split_at(usize::from(len));
        let v = match v {
            [0, tail @ ..] => tail,
            v => v,
        };
        if v.len() > 32 {
            return None;
        }
        let mut out = [0u8; 32];
        out.get_mut(32 - v.len()..)?.copy_from_slice(v);
        Some((out, rest))
    }

    /// The raw form, if `der` is a P-256 signature whose DER is canonical
    /// (so [`der`] gives back the same bytes).
    pub fn raw(der: &[u8]) -> Option<[u8; 64]> {
        let [0x30, len, body @ ..] = der else { return None };
        if usize::from(*len) != body.len() {
            return None;
        }
        let (r, rest) = int(body)?;
        let (s, rest) = int(rest)?;
        if !rest.is_empty() {
            return None;
        }
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&r);
        out[32..].copy_from_slice(&s);
        (self::der(&out) == der).then_some(out)
    }

    fn push_int(out: &mut Vec<u8>, v: &[u8]) {
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len().saturating_sub(1));
        let v = v.get(start..).unwrap_or(&[0]);
        let pad = v.first().is_some_and(|&b| b & 0x80 != 0);
        out.push(2);
        out.push(u8::try_from(v.len() + usize::from(pad)).unwrap_or(0));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }

    /// The DER form of a raw signature.
    pub fn der(raw: &[u8; 64]) -> Vec<u8> {
        let mut body = Vec::with_capacity(72);
        push_int(&mut body, &raw[..32]);
        push_int(&mut body, &raw[32..]);
        let mut out = Vec::with_capacity(body.len() + 2);
        out.push(0x30);
        out.push(u8::try_from(body.len()).unwrap_or(0));
        out.extend_from_slice(&body);
        out
    }
}

/// Version 2 (module docs).
mod v2 {
    use super::*;

    struct W(Vec<u8>);

    impl W {
        fn var(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn bytes(&mut self, b: &[u8]) {
            self.var(b.len() as u64);
            self.0.extend_from_slice(b);
        }
        fn str(&mut self, s: &str) {
            self.bytes(s.as_bytes());
        }
        /// A key id: `sha256-` and 32 hex digits (what the trust crate
        /// makes) as its 16 bytes, anything else as text.
        fn key(&mut self, k: Option<&KeyId>) {
            let Some(k) = k else {
                self.0.push(0);
                return;
            };
            let hex = k.as_str().strip_prefix("sha256-").filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            match hex {
                Some(h) => {
                    self.0.push(1);
                    for i in (0..32).step_by(2) {
                        self.0.push(h.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()).unwrap_or(0));
                    }
                }
                None => {
                    self.0.push(2);
                    self.str(k.as_str());
                }
            }
        }
    }

    struct R<'a>(&'a [u8]);

    impl<'a> R<'a> {
        fn u8(&mut self) -> Result<u8, Corrupt> {
            let (&b, rest) = self.0.split_first().ok_or_else(|| bad("truncated"))?;
            self.0 = rest;
            Ok(b)
        }
        fn var(&mut self) -> Result<u64, Corrupt> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let b = self.u8()?;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err(bad("varint"))
        }
        fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
            if n > self.0.len() {
                return Err(bad("truncated"));
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
            let n = usize::try_from(self.var()?).map_err(|_| bad("length"))?;
            self.take(n)
        }
        fn str(&mut self) -> Result<&'a str, Corrupt> {
            std::str::from_utf8(self.bytes()?).map_err(|_| bad("not UTF-8"))
        }
        fn count(&mut self) -> Result<usize, Corrupt> {
            let n = usize::try_from(self.var()?).map_err(|_| bad("length"))?;
            if n > self.0.len() {
                return Err(bad("list length"));
            }
            Ok(n)
        }
        fn name(&mut self) -> Result<Name, Corrupt> {
            Name::parse(self.str()?).map_err(|e| Corrupt(e.to_string()))
        }
        fn time(&mut self) -> Result<Timestamp, Corrupt> {
            Ok(Timestamp::from_millis(self.var()?))
        }
        fn key(&mut self) -> Result<Option<KeyId>, Corrupt> {
            let text = match self.u8()? {
                0 => return Ok(None),
                1 => {
                    let mut t = String::with_capacity(39);
                    t.push_str("sha256-");
                    for b in self.take(16)? {
                        t.push_str(&format!("{b:02x}"));
                    }
                    t
                }
                2 => self.str()?.to_owned(),
                _ => return Err(bad("key form")),
            };
            KeyId::parse(&text).map(Some).map_err(|e| Corrupt(e.to_string()))
        }
    }

    /// What a record's mappings share, written once.
    struct Common {
        source: Option<Name>,
        key: Option<KeyId>,
        signed_at: Timestamp,
        valid_until: Timestamp,
        /// Version 3: the first mapping's `lastUpdated` (an unsigned
        /// mapping with this time does not repeat it). `None` in version 2.
        updated: Option<Timestamp>,
    }

    fn common(rec: &NumberRecord, v3: bool) -> Common {
        let mut ms = rec.entries.iter().map(|e| &e.signed).chain(rec.none.iter());
        let first = ms.next();
        let updated = v3.then(|| first.map_or(Timestamp::from_millis(0), |m| m.last_updated));
        let sig = first.and_then(|m| m.signature.as_ref());
        Common {
            source: first.map(|m| m.source.clone()),
            key: sig.map(|s| s.key_id.clone()),
            signed_at: sig.map_or(Timestamp::from_millis(0), |s| s.signed_at),
            valid_until: sig.map_or(Timestamp::from_millis(0), |s| s.valid_until),
            updated,
        }
    }

    // Flags of a derived mapping's signature.
    const SIGNED: u8 = 1;
    const OWN_KEY: u8 = 2;
    const OWN_TIMES: u8 = 4;
    const OWN_UPDATED: u8 = 8;
    const DER: u8 = 16;

    /// `expected`: the mapping derived from the record (unsigned); `m` is
    /// stored as a reference to it when it is that mapping, signed.
    fn mapping(w: &mut W, m: &Mapping, expected: Option<Mapping>, c: &Common) {
        let derived = expected.is_some_and(|mut x| {
            x.last_updated = m.last_updated;
            x.expires = m.expires;
            x.signature = m.signature.clone();
            x == *m
        });
        if !derived {
            // Whole, in the version 1 form.
            w.0.push(0);
            let mut e = Enc(Vec::with_capacity(512));
            enc_mapping(&mut e, m);
            w.bytes(&e.0);
            return;
        }
        w.0.push(1);
        let Some(s) = &m.signature else {
            match c.updated {
                Some(t) if t == m.last_updated => w.0.push(0),
                Some(_) => {
                    w.0.push(OWN_UPDATED);
                    w.var(m.last_updated.as_millis());
                }
                None => {
                    w.0.push(0);
                    w.var(m.last_updated.as_millis());
                }
            }
            return;
        };
        let raw = ecdsa::raw(&s.value);
        let own_key = c.key.as_ref() != Some(&s.key_id);
        let own_times = s.signed_at != c.signed_at || s.valid_until != c.valid_until;
        let own_updated = m.last_updated != s.signed_at;
        let flags = SIGNED | if own_key { OWN_KEY } else { 0 } | if own_times { OWN_TIMES } else { 0 } | if own_updated { OWN_UPDATED } else { 0 } | if raw.is_none() { DER } else { 0 };
        w.0.push(flags);
        if own_key {
            w.key(Some(&s.key_id));
        }
        if own_times {
            w.var(s.signed_at.as_millis());
            w.var(s.valid_until.as_millis());
        }
        if own_updated {
            w.var(m.last_updated.as_millis());
        }
        match raw {
            Some(r) => w.0.extend_from_slice(&r),
            None => w.bytes(&s.value),
        }
    }

    fn read_mapping(r: &mut R<'_>, expected: impl FnOnce(Timestamp) -> Result<Mapping, Corrupt>, c: &Common) -> Result<Mapping, Corrupt> {
        match r.u8()? {
            0 => {
                let mut d = Dec(r.bytes()?);
                let m = dec_mapping(&mut d)?;
                if !d.0.is_empty() {
                    return Err(bad("trailing mapping bytes"));
                }
                Ok(m)
            }
            1 => {
                let flags = r.u8()?;
                if flags & SIGNED == 0 {
                    return match c.updated {
                        Some(t) if flags & OWN_UPDATED == 0 => expected(t),
                        _ => expected(r.time()?),
                    };
                }
                let key_id = if flags & OWN_KEY != 0 {
                    r.key()?.ok_or_else(|| bad("no key"))?
                } else {
                    c.key.clone().ok_or_else(|| bad("no record key"))?
                };
                let (signed_at, valid_until) = if flags & OWN_TIMES != 0 { (r.time()?, r.time()?) } else { (c.signed_at, c.valid_until) };
                let last_updated = if flags & OWN_UPDATED != 0 { r.time()? } else { signed_at };
                let value = if flags & DER != 0 {
                    r.bytes()?.to_vec()
                } else {
                    let raw: [u8; 64] = r.take(64)?.try_into().map_err(|_| bad("signature"))?;
                    ecdsa::der(&raw)
                };
                let mut m = expected(last_updated)?;
                m.signature = Some(Signature { key_id, signed_at, valid_until, value });
                Ok(m)
            }
            _ => Err(bad("mapping form")),
        }
    }

    fn uri(w: &mut W, u: &Uri, provider: &str) {
        // mimi://<provider>/… : the prefix is the entry's provider.
        match u.as_str().strip_prefix("mimi://").and_then(|r| r.strip_prefix(provider)).and_then(|r| r.strip_prefix('/')) {
            Some(rest) => {
                w.0.push(1);
                w.str(rest);
            }
            None => {
                w.0.push(0);
                w.str(u.as_str());
            }
        }
    }

    fn read_uri(r: &mut R<'_>, provider: &str) -> Result<Uri, Corrupt> {
        let s = match r.u8()? {
            1 => format!("mimi://{provider}/{}", r.str()?),
            0 => r.str()?.to_owned(),
            _ => return Err(bad("uri form")),
        };
        Uri::parse(&s).map_err(|e| Corrupt(e.to_string()))
    }

    const ASSURED: u8 = 1;
    const BOUND: u8 = 2;
    const ONLY: u8 = 4;
    const NAMED: u8 = 8;
    const LANG: u8 = 16;

    fn entry(w: &mut W, e: &EntryRecord) {
        let p = e.provider.as_str();
        w.str(p);
        let dn = e.display_name.as_ref();
        let flags = if e.assurance == Assurance::MspVerified { ASSURED } else { 0 }
            | if e.bound_to_tnsp { BOUND } else { 0 }
            | if matches!(e.visibility, Visibility::Only(_)) { ONLY } else { 0 }
            | if dn.is_some() { NAMED } else { 0 }
            | if dn.is_some_and(|d| d.lang != "en") { LANG } else { 0 };
        w.0.push(flags);
        w.var(u64::from(e.priority));
        if let Some(d) = dn {
            w.str(&d.text);
            if d.lang != "en" {
                w.str(&d.lang);
            }
        }
        w.var(e.uris.len() as u64);
        for u in &e.uris {
            uri(w, u, p);
        }
        w.var(e.tags.len() as u64);
        for t in &e.tags {
            w.str(t.as_str());
        }
        if let Visibility::Only(v) = &e.visibility {
            w.var(v.len() as u64);
            for n in v {
                w.str(n.as_str());
            }
        }
    }

    fn read_entry(r: &mut R<'_>) -> Result<EntryRecord, Corrupt> {
        let provider = r.name()?;
        let flags = r.u8()?;
        let priority = u32::try_from(r.var()?).map_err(|_| bad("priority"))?;
        let display_name = if flags & NAMED != 0 {
            let text = r.str()?.to_owned();
            let lang = if flags & LANG != 0 { r.str()?.to_owned() } else { "en".to_owned() };
            Some(DisplayName { text, lang })
        } else {
            None
        };
        let n = r.count()?;
        let uris = (0..n).map(|_| read_uri(r, provider.as_str())).collect::<Result<Vec<_>, _>>()?;
        let n = r.count()?;
        let tags = (0..n).map(|_| Tag::parse(r.str()?).map_err(|e| Corrupt(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
        let visibility = if flags & ONLY != 0 {
            let n = r.count()?;
            Visibility::Only((0..n).map(|_| r.name()).collect::<Result<Vec<_>, _>>()?)
        } else {
            Visibility::All
        };
        let assurance = if flags & ASSURED != 0 { Assurance::MspVerified } else { Assurance::CsipAttested };
        Ok(EntryRecord { provider, display_name, uris, priority, tags, assurance, bound_to_tnsp: flags & BOUND != 0, visibility })
    }

    /// Version 3 (`v3`) or 2: version 3 leaves out the CSI and writes
    /// [`Common::updated`].
    pub(super) fn encode(rec: &NumberRecord, v3: bool) -> Vec<u8> {
        let c = common(rec, v3);
        let mut w = W(Vec::with_capacity(128 + 160 * rec.entries.len()));
        if v3 {
            w.0.push(V3);
        } else {
            w.0.push(V2);
            w.str(rec.csi.uri());
        }
        match &rec.state {
            State::Assigned { tnsp } => {
                w.0.push(0);
                w.str(tnsp.as_str());
            }
            State::Released => w.0.push(1),
        }
        w.var(rec.epoch.0);
        w.str(c.source.as_ref().map_or("", Name::as_str));
        w.key(c.key.as_ref());
        w.var(c.signed_at.as_millis());
        w.var(c.valid_until.as_millis());
        if let Some(t) = c.updated {
            w.var(t.as_millis());
        }
        w.var(rec.entries.len() as u64);
        for e in &rec.entries {
            entry(&mut w, &e.record);
            let expected = c.source.as_ref().map(|s| entry_mapping(s, &e.record, rec.epoch, e.signed.last_updated));
            mapping(&mut w, &e.signed, expected, &c);
        }
        match &rec.none {
            Some(m) => {
                let reason = match &m.body {
                    MappingBody::NoProviders { reason: NoProvidersReason::OptedOut, .. } => 2,
                    _ => 1,
                };
                w.0.push(reason);
                let why = if reason == 2 { NoProvidersReason::OptedOut } else { NoProvidersReason::RecipientPreferences };
                let expected = c.source.as_ref().map(|s| none_mapping(s, rec.epoch, why, m.last_updated));
                mapping(&mut w, m, expected, &c);
            }
            None => w.0.push(0),
        }
        w.0
    }

    pub(super) fn decode(key: &str, b: &[u8]) -> Result<NumberRecord, Corrupt> {
        let mut r = R(b);
        let v3 = match r.u8()? {
            V2 => false,
            V3 => true,
            _ => return Err(bad("unknown record version")),
        };
        let csi = Csi::from_wire(if v3 { key } else { r.str()? }).map_err(|e| Corrupt(e.to_string()))?;
        let state = match r.u8()? {
            0 => State::Assigned { tnsp: r.name()? },
            1 => State::Released,
            _ => return Err(bad("state")),
        };
        let epoch = Epoch(r.var()?);
        let source = match r.str()? {
            "" => None,
            s => Some(Name::parse(s).map_err(|e| Corrupt(e.to_string()))?),
        };
        let key = r.key()?;
        let (signed_at, valid_until) = (r.time()?, r.time()?);
        let updated = if v3 { Some(r.time()?) } else { None };
        let c = Common { source, key, signed_at, valid_until, updated };
        let need_source = || c.source.clone().ok_or_else(|| bad("no record source"));
        let n = r.count()?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let record = read_entry(&mut r)?;
            let signed = read_mapping(&mut r, |lu| Ok(entry_mapping(&need_source()?, &record, epoch, lu)), &c)?;
            entries.push(StoredEntry { record, signed });
        }
        let none = match r.u8()? {
            0 => None,
            k @ (1 | 2) => {
                let why = if k == 2 { NoProvidersReason::OptedOut } else { NoProvidersReason::RecipientPreferences };
                Some(read_mapping(&mut r, |lu| Ok(none_mapping(&need_source()?, epoch, why, lu)), &c)?)
            }
            _ => return Err(bad("none tag")),
        };
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(NumberRecord { csi, state, epoch, entries, none })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use signpost_trust::sign::Signer;

    fn signer() -> Signer {
        let key = rcgen::KeyPair::generate().unwrap();
        Signer::from_pem(key.serialize_pem().as_bytes()).unwrap()
    }

    fn entry(p: &str, uris: &[&str]) -> EntryRecord {
        EntryRecord {
            provider: Name::parse(p).unwrap(),
            display_name: Some(DisplayName { text: "Alice, \"A\"".into(), lang: "en".into() }),
            uris: uris.iter().map(|u| Uri::parse(u).unwrap()).collect(),
            priority: 300,
            tags: vec![Tag::parse("personal").unwrap()],
            assurance: Assurance::MspVerified,
            bound_to_tnsp: false,
            visibility: Visibility::All,
        }
    }

    fn signed(s: &Signer, csi: &Csi, m: Mapping, at: u64) -> Mapping {
        let mut m = m;
        s.sign_mapping(csi, &mut m, Timestamp::from_secs(at), Timestamp::from_secs(at + 86_400)).unwrap();
        m
    }

    fn record(s: &Signer) -> NumberRecord {
        let csi = Csi::from_wire("tel:+4915112345678").unwrap();
        let src = Name::parse("dp.de.example").unwrap();
        let epoch = Epoch(3);
        let a = entry("ott.example", &["mimi://ott.example/u/1", "https://elsewhere.example/x"]);
        let mut b = entry("rcs.example", &["mimi://rcs.example/u/1"]);
        b.display_name = Some(DisplayName { text: "Anna".into(), lang: "de".into() });
        b.visibility = Visibility::Only(vec![Name::parse("friend.example").unwrap()]);
        b.assurance = Assurance::CsipAttested;
        b.bound_to_tnsp = true;
        let t = 1_800_000_000;
        NumberRecord {
            entries: vec![
                StoredEntry { signed: signed(s, &csi, entry_mapping(&src, &a, epoch, Timestamp::from_secs(t)), t), record: a },
                // Signed later, with lastUpdated before the signature (a renewal).
                StoredEntry { signed: signed(s, &csi, entry_mapping(&src, &b, epoch, Timestamp::from_secs(t - 5)), t + 60), record: b },
            ],
            none: Some(signed(s, &csi, none_mapping(&src, epoch, NoProvidersReason::OptedOut, Timestamp::from_secs(t)), t)),
            csi,
            state: State::Assigned { tnsp: Name::parse("tnsp-a.de.example").unwrap() },
            epoch,
        }
    }

    const KEY: &str = "tel:+4915112345678";

    #[test]
    fn versions_3_and_2_round_trip_and_are_compact() {
        let s = signer();
        let r = record(&s);
        let v3 = r.encode();
        assert_eq!(v3[0], V3);
        assert_eq!(NumberRecord::decode(KEY, &v3).unwrap(), r);
        // Versions 2 and 1 are still read (they carry their CSI).
        let v2 = r.encode_v2();
        assert_eq!(v2[0], V2);
        assert_eq!(NumberRecord::decode("tel:+4900", &v2).unwrap(), r);
        let v1 = r.encode_v1();
        assert_eq!(NumberRecord::decode(KEY, &v1).unwrap(), r);
        assert!(v2.len() * 2 < v1.len(), "v2 {} bytes, v1 {}", v2.len(), v1.len());
        assert!(v3.len() < v2.len(), "v3 {} bytes, v2 {}", v3.len(), v2.len());
        // Released, no mappings.
        let rel = NumberRecord { state: State::Released, entries: vec![], none: None, ..r.clone() };
        assert_eq!(NumberRecord::decode(KEY, &rel.encode()).unwrap(), rel);
        // Unsigned (a bulk import): one shared time, a mapping with its own.
        let mut u = r.clone();
        for m in u.entries.iter_mut().map(|e| &mut e.signed).chain(u.none.iter_mut()) {
            m.signature = None;
        }
        u.entries[1].signed.last_updated = Timestamp::from_secs(1_700_000_000);
        let b = u.encode();
        assert_eq!(NumberRecord::decode(KEY, &b).unwrap(), u);
        assert_eq!(NumberRecord::decode(KEY, &u.encode_v2()).unwrap(), u);
        assert!(b.len() + KEY.len() <= u.encode_v2().len(), "unsigned: v3 {} bytes, v2 {}", b.len(), u.encode_v2().len());
        // Every truncation and every flipped byte: an error or another
        // record, never a panic.
        for bytes in [&v3, &v2, &b] {
            for cut in 0..bytes.len() {
                assert!(NumberRecord::decode(KEY, &bytes[..cut]).is_err());
            }
            for i in 0..bytes.len() {
                let mut x = bytes.clone();
                x[i] ^= 0x5a;
                let _ = NumberRecord::decode(KEY, &x);
            }
        }
    }

    #[test]
    fn mappings_off_the_derivation_are_kept_whole() {
        let s = signer();
        let mut r = record(&s);
        r.entries[0].signed.source_id = "custom-id".into();
        r.entries[1].signed.signature.as_mut().unwrap().value = vec![1, 2, 3];
        r.none.as_mut().unwrap().signature = None;
        assert_eq!(NumberRecord::decode(KEY, &r.encode()).unwrap(), r);
        // Signed by other keys than the record's first (a key rollover),
        // one not in the trust crate's form.
        let mut r = record(&s);
        r.entries[1].signed.signature.as_mut().unwrap().key_id = KeyId::parse("sha256-00112233445566778899aabbccddeeff").unwrap();
        r.none.as_mut().unwrap().signature.as_mut().unwrap().key_id = KeyId::parse("old.key-1").unwrap();
        assert_eq!(NumberRecord::decode(KEY, &r.encode()).unwrap(), r);
    }

    #[test]
    fn ecdsa_raw_and_der_agree() {
        let s = signer();
        let r = record(&s);
        for m in r.entries.iter().map(|e| &e.signed).chain(r.none.iter()) {
            let der = &m.signature.as_ref().unwrap().value;
            let raw = ecdsa::raw(der).unwrap();
            assert_eq!(&ecdsa::der(&raw), der);
        }
        // Small integers (leading zero bytes, a high bit that needs a pad).
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        assert_eq!(ecdsa::raw(&ecdsa::der(&raw)), Some(raw));
        assert_eq!(ecdsa::raw(&[0x30, 0]), None);
    }
}
