//! What an authority stores per CSI, and a compact binary encoding of it
//! for the embedded store (length-prefixed fields, versioned, checked on
//! read: a corrupt record is an error, never a panic).

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

const VERSION: u8 = 1;

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
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(256 + 400 * self.entries.len()));
        e.u8(VERSION);
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

    /// Reads stored bytes back.
    pub fn decode(b: &[u8]) -> Result<NumberRecord, Corrupt> {
        let mut d = Dec(b);
        if d.u8()? != VERSION {
            return Err(bad("unknown record version"));
        }
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
