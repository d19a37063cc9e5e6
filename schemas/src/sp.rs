//! Signpost's own documents in the `sp` namespace: the root table,
//! change-feed frames, and provisioning requests and results.

use crate::csi::{Csi, E164};
use crate::error::{DecodeError, Problem};
use crate::lost::{
    Assurance, Cover, Delegation, DisplayName, Epoch, Signature, Tag, Uri, csi_value, name_attr as name,
    num_attr as num, time_attr as time,
};
use crate::name::Name;
use crate::time::Timestamp;
use crate::xml::{self, Element, Limits, Ns, Writer, bad_value, schema};

fn wrong_root(e: &Element<'_>, want: &str) -> DecodeError {
    if e.ns != Ns::Sp {
        DecodeError::new(Problem::Namespace, format!("root element {} is not in the namespace {}", e.label(), xml::SP_NS))
    } else {
        DecodeError::new(Problem::UnknownRoot, format!("{} is not {want}", e.label()))
    }
}

fn opt_name(e: &Element<'_>, attr: &str) -> Result<Option<Name>, DecodeError> {
    e.attr(attr).map(|_| name(e, attr)).transpose()
}

fn csi(e: &Element<'_>) -> Result<Csi, DecodeError> {
    csi_value(e.req("csi")?)
}

fn open_sp(w: &mut Writer, el: &str) {
    w.open(el).attr("xmlns:sp", xml::SP_NS);
}

// ---------------------------------------------------------------------------
// Root table

/// The root table (`GET /root-table`, README "Run a root"): every delegation the root serves, with a
/// serial number, signed by the root operator.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RootTable {
    /// The root's id (appears as `source` of its answers).
    pub source: Name,
    /// Monotonic serial; also the ETag of `GET /root-table`.
    pub serial: u64,
    /// Resolvers stop using a preloaded copy after this.
    pub valid_until: Timestamp,
    /// How long a resolver may cache "no delegation" (seconds).
    pub negative_lifetime: u32,
    /// The delegations, in file order.
    pub delegations: Vec<Delegation>,
    /// The root operator's signature (absent only before `table sign`).
    pub signature: Option<Signature>,
}

impl RootTable {
    /// Encodes the table as a document.
    pub fn encode(&self) -> String {
        let mut w = Writer::document(256 + self.delegations.len() * 200);
        open_sp(&mut w, "sp:rootTable");
        w.attr("source", self.source.as_str())
            .attr_num("serial", self.serial)
            .attr_time("validUntil", self.valid_until)
            .attr_num("negativeLifetime", u64::from(self.negative_lifetime))
            .gt();
        for d in &self.delegations {
            d.write(&mut w);
        }
        if let Some(s) = &self.signature {
            s.write(&mut w);
        }
        w.close("sp:rootTable");
        w.finish()
    }

    /// Decodes a table (limits for files: [`Limits::DOCUMENT`]). A cover
    /// delegated twice is refused: the table would be ambiguous.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<RootTable, DecodeError> {
        crate::lost::with_root(bytes, limits, |e| {
            if !e.is(Ns::Sp, "rootTable") {
                return Err(wrong_root(e, "<sp:rootTable>"));
            }
            e.only_attrs(&["source", "serial", "validUntil", "negativeLifetime"], false)?;
            e.no_text()?;
            let mut t = RootTable {
                source: name(e, "source")?,
                serial: num(e, "serial")?,
                valid_until: time(e, "validUntil")?,
                negative_lifetime: num(e, "negativeLifetime")?,
                delegations: Vec::with_capacity(e.children.len()),
                signature: None,
            };
            let mut seen = std::collections::HashSet::with_capacity(e.children.len());
            for c in &e.children {
                if t.signature.is_some() {
                    return Err(schema("<sp:signature> must be the last element of <sp:rootTable>"));
                }
                if c.is(Ns::Sp, "delegation") {
                    let d = Delegation::decode(c)?;
                    let key = match &d.cover {
                        Cover::Prefix(p) => p.as_str().to_owned(),
                        Cover::Domain { domain, .. } => domain.as_str().to_owned(),
                    };
                    if !seen.insert(key) {
                        return Err(bad_value(format!("{} is delegated twice in the root table", d.cover)));
                    }
                    t.delegations.push(d);
                } else if c.is(Ns::Sp, "signature") {
                    t.signature = Some(Signature::decode(c)?);
                } else {
                    return Err(schema(format!("<sp:rootTable> may not contain {}", c.label())));
                }
            }
            Ok(t)
        })
    }
}

// ---------------------------------------------------------------------------
// Change feed

/// What a change did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChangeOp {
    /// A number/address was assigned (new epoch).
    Assign,
    /// Released: every entry removed, epoch bumped.
    Release,
    /// Ported to another TNSP: donor-bound entries removed.
    Port,
    /// An MSP entry was created or changed.
    EntryPut,
    /// An MSP entry was removed.
    EntryRemove,
    /// A block was sub-delegated (or the delegation changed).
    Delegate,
    /// A sub-delegation was withdrawn.
    Undelegate,
    /// The number's user opted out of discovery.
    OptOut,
    /// The opt-out was withdrawn.
    OptIn,
}

impl ChangeOp {
    /// Every op.
    pub const ALL: [ChangeOp; 9] = [
        ChangeOp::Assign,
        ChangeOp::Release,
        ChangeOp::Port,
        ChangeOp::EntryPut,
        ChangeOp::EntryRemove,
        ChangeOp::Delegate,
        ChangeOp::Undelegate,
        ChangeOp::OptOut,
        ChangeOp::OptIn,
    ];
    /// The wire token (also a metrics label).
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Assign => "assign",
            ChangeOp::Release => "release",
            ChangeOp::Port => "port",
            ChangeOp::EntryPut => "entry-put",
            ChangeOp::EntryRemove => "entry-remove",
            ChangeOp::Delegate => "delegate",
            ChangeOp::Undelegate => "undelegate",
            ChangeOp::OptOut => "opt-out",
            ChangeOp::OptIn => "opt-in",
        }
    }
    fn parse(s: &str) -> Result<ChangeOp, DecodeError> {
        ChangeOp::ALL
            .into_iter()
            .find(|o| o.as_str() == s.trim())
            .ok_or_else(|| bad_value(format!("{s:?} is not a change op")))
    }
}

/// What a change is about: one CSI, or a delegated block.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Subject {
    /// One identifier.
    Csi(Csi),
    /// A prefix or domain (delegation changes).
    Cover(Cover),
}

/// One committed change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Change {
    /// The sequence number, given in the commit's own transaction.
    pub seq: u64,
    /// What changed.
    pub subject: Subject,
    /// How.
    pub op: ChangeOp,
    /// When it was committed.
    pub time: Timestamp,
}

/// A frame of `GET /feed?since=N` (the authority's change feed, README
/// "Run an authority"). The stream is a sequence of
/// frames, one element per line (`\n`-terminated), media type
/// `application/signpost-feed+xml`; frames carry no XML declaration.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FeedFrame {
    /// A committed change.
    Change(Change),
    /// Nothing new; `seq` is the newest committed sequence number.
    Heartbeat {
        /// The authority's head.
        seq: u64,
        /// The authority's time.
        time: Timestamp,
    },
    /// The requested `since` is older than retention: flush everything
    /// learned from this authority and resume from `seq`.
    Resync {
        /// Resume from here.
        seq: u64,
        /// Why (human-readable).
        reason: String,
    },
}

/// The media type of the change feed.
pub const FEED_CONTENT_TYPE: &str = "application/signpost-feed+xml";

impl FeedFrame {
    /// Appends the frame and its `\n` to `out`.
    pub fn encode_into(&self, out: &mut String) {
        let mut w = Writer { out: std::mem::take(out) };
        match self {
            FeedFrame::Change(c) => {
                open_sp(&mut w, "sp:change");
                w.attr_num("seq", c.seq).attr("op", c.op.as_str());
                match &c.subject {
                    Subject::Csi(x) => {
                        w.attr("csi", x.uri());
                    }
                    Subject::Cover(cv) => cv.write_attrs(&mut w),
                }
                w.attr_time("time", c.time).empty();
            }
            FeedFrame::Heartbeat { seq, time } => {
                open_sp(&mut w, "sp:heartbeat");
                w.attr_num("seq", *seq).attr_time("time", *time).empty();
            }
            FeedFrame::Resync { seq, reason } => {
                open_sp(&mut w, "sp:resync");
                w.attr_num("seq", *seq).attr("reason", reason).empty();
            }
        }
        w.out.push('\n');
        *out = w.out;
    }

    /// One frame as a line.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(160);
        self.encode_into(&mut s);
        s
    }

    /// Decodes one frame (one line, without or with its `\n`).
    pub fn decode(bytes: &[u8]) -> Result<FeedFrame, DecodeError> {
        crate::lost::with_root(bytes, &Limits::MESSAGE, |e| {
            if e.ns != Ns::Sp || !matches!(e.name, "change" | "heartbeat" | "resync") {
                return Err(wrong_root(e, "a feed frame (change, heartbeat, resync)"));
            }
            e.no_children()?;
            e.no_text()?;
            match e.name {
                "change" => {
                    e.only_attrs(&["seq", "op", "csi", "prefix", "domain", "includeSubdomains", "time"], false)?;
                    let subject = if e.attr("csi").is_some() {
                        if e.attr("prefix").is_some() || e.attr("domain").is_some() {
                            return Err(schema("<sp:change> names either a csi or a prefix/domain"));
                        }
                        Subject::Csi(csi(e)?)
                    } else {
                        Subject::Cover(Cover::decode_attrs(e)?)
                    };
                    Ok(FeedFrame::Change(Change {
                        seq: num(e, "seq")?,
                        subject,
                        op: ChangeOp::parse(e.req("op")?)?,
                        time: time(e, "time")?,
                    }))
                }
                "heartbeat" => {
                    e.only_attrs(&["seq", "time"], false)?;
                    Ok(FeedFrame::Heartbeat { seq: num(e, "seq")?, time: time(e, "time")? })
                }
                "resync" => {
                    e.only_attrs(&["seq", "reason"], false)?;
                    Ok(FeedFrame::Resync { seq: num(e, "seq")?, reason: e.req("reason")?.to_owned() })
                }
                _ => Err(wrong_root(e, "a feed frame (change, heartbeat, resync)")),
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Provisioning

/// Who may see an entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Visibility {
    /// Every sender.
    All,
    /// Only senders on these MSPs.
    Only(Vec<Name>),
}

/// An MSP entry as provisioned (what the authority stores; the wire
/// `<mapping>` is derived from it).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EntryRecord {
    /// The MSP.
    pub provider: Name,
    /// The name to show.
    pub display_name: Option<DisplayName>,
    /// How to reach the user there.
    pub uris: Vec<Uri>,
    /// Lower is preferred.
    pub priority: u32,
    /// The recipient's tags.
    pub tags: Vec<Tag>,
    /// How the entry was established.
    pub assurance: Assurance,
    /// Operator-aligned: removed when the number ports away from its TNSP.
    pub bound_to_tnsp: bool,
    /// Who may see it.
    pub visibility: Visibility,
}

impl EntryRecord {
    fn write(&self, w: &mut Writer) {
        w.open("sp:entry")
            .attr("provider", self.provider.as_str())
            .attr_num("priority", u64::from(self.priority));
        if !self.tags.is_empty() {
            w.attr_list("tags", self.tags.iter().map(Tag::as_str));
        }
        w.attr("assurance", self.assurance.as_str());
        if self.bound_to_tnsp {
            w.attr("boundToTnsp", "true");
        }
        if let Visibility::Only(v) = &self.visibility {
            w.attr_list("visibleTo", v.iter().map(Name::as_str));
        }
        w.gt();
        if let Some(d) = &self.display_name {
            w.open("sp:displayName").attr("xml:lang", &d.lang).gt().text(&d.text).close("sp:displayName");
        }
        for u in &self.uris {
            w.leaf("sp:uri", u.as_str());
        }
        w.close("sp:entry");
    }

    fn decode(e: &Element<'_>) -> Result<EntryRecord, DecodeError> {
        e.only_attrs(&["provider", "priority", "tags", "assurance", "boundToTnsp", "visibleTo"], false)?;
        e.no_text()?;
        let bound_to_tnsp = match e.attr("boundToTnsp").map(str::trim) {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(v) => return Err(bad_value(format!("boundToTnsp={v:?} is not a boolean"))),
        };
        let visibility = match e.attr("visibleTo") {
            None => Visibility::All,
            Some(v) => {
                let names = v
                    .split_whitespace()
                    .map(|n| Name::parse(n).map_err(|x| bad_value(x.to_string())))
                    .collect::<Result<Vec<_>, _>>()?;
                if names.is_empty() {
                    return Err(bad_value("visibleTo names no MSP; omit it to show the entry to all"));
                }
                Visibility::Only(names)
            }
        };
        let mut r = EntryRecord {
            provider: name(e, "provider")?,
            display_name: None,
            uris: Vec::new(),
            priority: num(e, "priority")?,
            tags: e.attr("tags").unwrap_or("").split_whitespace().map(Tag::parse).collect::<Result<_, _>>()?,
            assurance: Assurance::parse(e.req("assurance")?)?,
            bound_to_tnsp,
            visibility,
        };
        for c in &e.children {
            if c.is(Ns::Sp, "displayName") && r.display_name.is_none() && r.uris.is_empty() {
                c.only_attrs(&[], true)?;
                c.no_children()?;
                let lang = c.lang().ok_or_else(|| schema("<sp:displayName> needs xml:lang"))?;
                r.display_name = Some(DisplayName { text: c.text.to_string(), lang: lang.to_owned() });
            } else if c.is(Ns::Sp, "uri") {
                c.only_attrs(&[], false)?;
                c.no_children()?;
                r.uris.push(Uri::parse(&c.text)?);
            } else {
                return Err(schema(format!("<sp:entry> may not contain {} here", c.label())));
            }
        }
        if r.uris.is_empty() {
            return Err(schema("<sp:entry> needs at least one <sp:uri>"));
        }
        Ok(r)
    }
}

/// The largest range one bulk operation may cover.
pub const MAX_RANGE: u32 = 1_000_000;

/// A provisioning request (`POST /v1/provision`). Who may send which is
/// decided by the authority from the client certificate's role and scope
/// (an MSP its own entries; a CSIP numbers it serves or holds in scope; an
/// admin everything within its scope, sub-delegations included).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Provision {
    /// MSP: create or replace its own entry for a CSI.
    PutEntry {
        /// The CSI.
        csi: Csi,
        /// The entry.
        entry: EntryRecord,
    },
    /// MSP: remove its own entry.
    RemoveEntry {
        /// The CSI.
        csi: Csi,
        /// Whose entry (an MSP may name only itself).
        provider: Name,
    },
    /// CSIP: assign a CSI (new epoch), to itself unless `tnsp` names another.
    Assign {
        /// The CSI.
        csi: Csi,
        /// The serving TNSP / email provider.
        tnsp: Option<Name>,
    },
    /// CSIP: release (every entry removed, epoch bumped).
    Release {
        /// The CSI.
        csi: Csi,
    },
    /// CSIP: port to another TNSP (donor-bound entries removed).
    Port {
        /// The CSI.
        csi: Csi,
        /// The recipient TNSP.
        to: Name,
    },
    /// CSIP: assign `count` consecutive numbers from `first`.
    AssignRange {
        /// The first number.
        first: E164,
        /// How many (1..=MAX_RANGE), within the same number length.
        count: u32,
        /// The serving TNSP.
        tnsp: Option<Name>,
    },
    /// CSIP: release `count` consecutive numbers from `first`.
    ReleaseRange {
        /// The first number.
        first: E164,
        /// How many.
        count: u32,
    },
    /// CSIP serving the number, or admin: the number's user opts out of
    /// discovery; answers become one signed mapping without URIs and with
    /// `sp:noProviders reason="opted-out"` until `OptIn` or a release.
    OptOut {
        /// The CSI.
        csi: Csi,
    },
    /// CSIP serving the number, or admin: withdraw the opt-out.
    OptIn {
        /// The CSI.
        csi: Csi,
    },
    /// Admin: sub-delegate a block to another authority.
    Delegate(Delegation),
    /// Admin: withdraw a sub-delegation.
    Undelegate(Cover),
}

impl Provision {
    /// A fixed label for metrics and logs.
    pub const fn label(&self) -> &'static str {
        match self {
            Provision::PutEntry { .. } => "put_entry",
            Provision::RemoveEntry { .. } => "remove_entry",
            Provision::Assign { .. } => "assign",
            Provision::Release { .. } => "release",
            Provision::Port { .. } => "port",
            Provision::AssignRange { .. } => "assign_range",
            Provision::ReleaseRange { .. } => "release_range",
            Provision::OptOut { .. } => "opt_out",
            Provision::OptIn { .. } => "opt_in",
            Provision::Delegate(_) => "delegate",
            Provision::Undelegate(_) => "undelegate",
        }
    }

    /// Encodes as a document.
    pub fn encode(&self) -> String {
        let mut w = Writer::document(512);
        match self {
            Provision::PutEntry { csi, entry } => {
                open_sp(&mut w, "sp:putEntry");
                w.attr("csi", csi.uri()).gt();
                entry.write(&mut w);
                w.close("sp:putEntry");
            }
            Provision::RemoveEntry { csi, provider } => {
                open_sp(&mut w, "sp:removeEntry");
                w.attr("csi", csi.uri()).attr("provider", provider.as_str()).empty();
            }
            Provision::Assign { csi, tnsp } => {
                open_sp(&mut w, "sp:assign");
                w.attr("csi", csi.uri()).attr_opt("tnsp", tnsp.as_ref().map(Name::as_str)).empty();
            }
            Provision::Release { csi } => {
                open_sp(&mut w, "sp:release");
                w.attr("csi", csi.uri()).empty();
            }
            Provision::Port { csi, to } => {
                open_sp(&mut w, "sp:port");
                w.attr("csi", csi.uri()).attr("to", to.as_str()).empty();
            }
            Provision::AssignRange { first, count, tnsp } => {
                open_sp(&mut w, "sp:assignRange");
                w.attr("first", first.uri())
                    .attr_num("count", u64::from(*count))
                    .attr_opt("tnsp", tnsp.as_ref().map(Name::as_str))
                    .empty();
            }
            Provision::ReleaseRange { first, count } => {
                open_sp(&mut w, "sp:releaseRange");
                w.attr("first", first.uri()).attr_num("count", u64::from(*count)).empty();
            }
            Provision::OptOut { csi } => {
                open_sp(&mut w, "sp:optOut");
                w.attr("csi", csi.uri()).empty();
            }
            Provision::OptIn { csi } => {
                open_sp(&mut w, "sp:optIn");
                w.attr("csi", csi.uri()).empty();
            }
            Provision::Delegate(d) => {
                open_sp(&mut w, "sp:delegate");
                w.gt();
                d.write(&mut w);
                w.close("sp:delegate");
            }
            Provision::Undelegate(c) => {
                open_sp(&mut w, "sp:undelegate");
                c.write_attrs(&mut w);
                w.empty();
            }
        }
        w.finish()
    }

    /// Decodes a provisioning request.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Provision, DecodeError> {
        crate::lost::with_root(bytes, limits, |e| {
            if e.ns != Ns::Sp {
                return Err(wrong_root(e, "a provisioning request"));
            }
            e.no_text()?;
            let range = |e: &Element<'_>| -> Result<(E164, u32), DecodeError> {
                let first = match csi_value(e.req("first")?)? {
                    Csi::E164(n) => n,
                    Csi::Email(_) | Csi::Mui(_) => return Err(bad_value("a range starts at a tel: CSI")),
                };
                let count: u32 = num(e, "count")?;
                if count == 0 || count > MAX_RANGE {
                    return Err(bad_value(format!("range count {count} is not within 1..={MAX_RANGE}")));
                }
                range_end(&first, count)?;
                Ok((first, count))
            };
            let p = match e.name {
                "putEntry" => {
                    e.only_attrs(&["csi"], false)?;
                    let [c] = e.children.as_slice() else {
                        return Err(schema("<sp:putEntry> holds exactly one <sp:entry>"));
                    };
                    if !c.is(Ns::Sp, "entry") {
                        return Err(schema("<sp:putEntry> holds exactly one <sp:entry>"));
                    }
                    Provision::PutEntry { csi: csi(e)?, entry: EntryRecord::decode(c)? }
                }
                "removeEntry" => {
                    e.only_attrs(&["csi", "provider"], false)?;
                    e.no_children()?;
                    Provision::RemoveEntry { csi: csi(e)?, provider: name(e, "provider")? }
                }
                "assign" => {
                    e.only_attrs(&["csi", "tnsp"], false)?;
                    e.no_children()?;
                    Provision::Assign { csi: csi(e)?, tnsp: opt_name(e, "tnsp")? }
                }
                "release" => {
                    e.only_attrs(&["csi"], false)?;
                    e.no_children()?;
                    Provision::Release { csi: csi(e)? }
                }
                "port" => {
                    e.only_attrs(&["csi", "to"], false)?;
                    e.no_children()?;
                    Provision::Port { csi: csi(e)?, to: name(e, "to")? }
                }
                "assignRange" => {
                    e.only_attrs(&["first", "count", "tnsp"], false)?;
                    e.no_children()?;
                    let (first, count) = range(e)?;
                    Provision::AssignRange { first, count, tnsp: opt_name(e, "tnsp")? }
                }
                "releaseRange" => {
                    e.only_attrs(&["first", "count"], false)?;
                    e.no_children()?;
                    let (first, count) = range(e)?;
                    Provision::ReleaseRange { first, count }
                }
                "optOut" => {
                    e.only_attrs(&["csi"], false)?;
                    e.no_children()?;
                    Provision::OptOut { csi: csi(e)? }
                }
                "optIn" => {
                    e.only_attrs(&["csi"], false)?;
                    e.no_children()?;
                    Provision::OptIn { csi: csi(e)? }
                }
                "delegate" => {
                    e.only_attrs(&[], false)?;
                    let [c] = e.children.as_slice() else {
                        return Err(schema("<sp:delegate> holds exactly one <sp:delegation>"));
                    };
                    if !c.is(Ns::Sp, "delegation") {
                        return Err(schema("<sp:delegate> holds exactly one <sp:delegation>"));
                    }
                    Provision::Delegate(Delegation::decode(c)?)
                }
                "undelegate" => {
                    e.only_attrs(&["prefix", "domain", "includeSubdomains"], false)?;
                    e.no_children()?;
                    Provision::Undelegate(Cover::decode_attrs(e)?)
                }
                _ => return Err(wrong_root(e, "a provisioning request")),
            };
            Ok(p)
        })
    }
}

/// The last number of a range, or an error if the range would leave the
/// first number's length or country calling code.
pub fn range_end(first: &E164, count: u32) -> Result<E164, DecodeError> {
    if count == 0 || count > MAX_RANGE {
        return Err(bad_value(format!("range count {count} is not within 1..={MAX_RANGE}")));
    }
    let digits = first.digits();
    let n: u64 = digits.parse().map_err(|_| bad_value("range start is not a number"))?;
    let last = n
        .checked_add(u64::from(count) - 1)
        .ok_or_else(|| bad_value("range overflows"))?;
    let s = last.to_string();
    if s.len() != digits.len() {
        return Err(bad_value(format!("range from {} with {count} numbers runs past the end of its number length", first.uri())));
    }
    if !s.starts_with(first.country_code()) {
        return Err(bad_value(format!(
            "range from {} with {count} numbers runs out of country code +{}",
            first.uri(),
            first.country_code()
        )));
    }
    let end = E164::from_digits(&s).map_err(|x| bad_value(format!("range end: {x}")))?;
    if end.country_code() != first.country_code() {
        return Err(bad_value(format!(
            "range from {} with {count} numbers runs out of country code +{}",
            first.uri(),
            first.country_code()
        )));
    }
    Ok(end)
}

/// The answer to a successful provisioning request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProvisionResult {
    /// The change-feed sequence number of the (last) change committed.
    pub seq: u64,
    /// The CSI's epoch after the change, where one CSI was concerned.
    pub epoch: Option<Epoch>,
    /// How many CSIs (or delegations) the request changed.
    pub affected: u64,
}

impl ProvisionResult {
    /// Encodes as a document.
    pub fn encode(&self) -> String {
        let mut w = Writer::document(160);
        open_sp(&mut w, "sp:provisionResult");
        w.attr_num("seq", self.seq);
        if let Some(e) = self.epoch {
            w.attr_num("epoch", e.0);
        }
        w.attr_num("affected", self.affected).empty();
        w.finish()
    }
    /// Decodes.
    pub fn decode(bytes: &[u8]) -> Result<ProvisionResult, DecodeError> {
        crate::lost::with_root(bytes, &Limits::MESSAGE, |e| {
            if !e.is(Ns::Sp, "provisionResult") {
                return Err(wrong_root(e, "<sp:provisionResult>"));
            }
            e.only_attrs(&["seq", "epoch", "affected"], false)?;
            e.no_children()?;
            let epoch = match e.attr("epoch") {
                Some(_) => Some(Epoch(num(e, "epoch")?)),
                None => None,
            };
            Ok(ProvisionResult { seq: num(e, "seq")?, epoch, affected: num(e, "affected")? })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_end_bounds() {
        let first = E164::from_digits("4930123000").unwrap();
        assert_eq!(range_end(&first, 1000).unwrap().uri(), "tel:+4930123999");
        assert!(range_end(&first, 0).is_err());
        assert!(range_end(&first, MAX_RANGE + 1).is_err());
        let edge = E164::from_digits("4999999998").unwrap();
        assert!(range_end(&edge, 2).is_ok());
        assert!(range_end(&edge, 3).unwrap_err().message().contains("country code"));
    }
}
