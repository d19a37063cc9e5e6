//! The DNS bridge: an optional plain-DNS listener (UDP and TCP) that
//! answers from the same mappings the LoST answers carry, for DNS clients
//! that do not speak LoST yet (private ENUM resolvers, the DNS-based MIMI
//! discovery draft, draft-bertola-mimi-discovery-dns).
//!
//! What it serves (`docs/dns-bridge.md` has the whole picture):
//! - ENUM (RFC 6116): `NAPTR` at `<reversed digits>.<enum_apex>` for every
//!   number the authority holds, one record per URI of every entry that is
//!   visible to everyone (a DNS query carries no sender context);
//! - the draft's `MIMI` records, as `TXT` under the label `_mimi` while the
//!   type has no code point: `_mimi.<reversed digits>.<enum_apex>` for a
//!   number, `_mimi.<MUI>` for a MIMI user identifier under the scope's
//!   domains, and `_mimi.<local part>.<email domain>.<mimi_apex>` for an
//!   email address, each string an MSSI definition
//!   `v=MIMI1; p=<priority>; a=<uri>; e=<host>; s=<provider>`;
//! - the draft's `MIMIX` record, as `TXT` at `_mimix.<email domain>`, for
//!   every email domain in the authority's scope: the domain's MIMI
//!   resolution domain, `<email domain>.<mimi_apex>`.
//!
//! TTLs come from the mappings' lifetimes (the LoST `expires`), negative
//! answers from `answers.negative_ttl_s` (the SOA minimum, RFC 2308). A
//! released or unknown number is NXDOMAIN; a name outside the zones is
//! REFUSED. Answers carry no signatures, so the listener is for loopback
//! and private networks only, and says so when it starts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{NAPTR, NS, SOA, TXT};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use serde::Deserialize;
use signpost_net::Failure;
use signpost_schemas::lost::{Mapping, MappingBody};
use signpost_schemas::{Csi, E164, Email, Expires, FindService, Response, Timestamp};
use signpost_trust::ScopeEntry;

use crate::core::Authority;
use crate::store::Store;

/// The `[dns]` section of the authority's config (absent: no listener).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// The UDP and TCP address (one port for both): loopback or a private
    /// network only.
    pub listen: String,
    /// The ENUM zone apex (RFC 6116 uses `e164.arpa`; private ENUM often a
    /// zone of its own).
    #[serde(default = "default_enum_apex")]
    pub enum_apex: String,
    /// The zone under which email addresses get their MIMI names; default
    /// `mimi.<id>`.
    pub mimi_apex: Option<String>,
    /// The name server name in the zones' SOA and NS records; default the
    /// authority's id.
    pub nameserver: Option<String>,
    /// A TCP connection without a request for this long is closed, ms.
    #[serde(default = "default_tcp_timeout")]
    pub tcp_timeout_ms: u64,
}

fn default_enum_apex() -> String {
    "e164.arpa".into()
}
fn default_tcp_timeout() -> u64 {
    5000
}

/// The label under which the MIMI record of a name is carried as TXT.
pub const MIMI_LABEL: &str = "_mimi";
/// The label under which the MIMIX record of an email domain is carried.
pub const MIMIX_LABEL: &str = "_mimix";
/// The ENUM service of the NAPTRs for `mimi:` URIs (RFC 6116 §3.4.3 form
/// `E2U+type[:subtype]`); other schemes use `E2U+<scheme>` for the
/// registered messaging types and `E2U+mimi:<scheme>` otherwise.
pub const ENUM_SERVICE_MIMI: &str = "E2U+mimi";

/// The zones' fixed SOA timers (seconds); the minimum is the negative TTL.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86_400;
/// TTL of the apex NS and of the MIMIX records, seconds.
const ZONE_TTL: u32 = 3600;

impl DnsConfig {
    /// Checks the section (called by the config loader).
    pub fn check(&self) -> Result<(), String> {
        let addr: SocketAddr = self.listen.parse().map_err(|e| format!("dns.listen {:?}: {e}", self.listen))?;
        if !private_address(addr.ip()) {
            return Err(format!(
                "dns.listen {addr}: plain DNS carries no signatures, so the listener is for loopback and private networks only (127.0.0.0/8, ::1, 10/8, 172.16/12, 192.168/16, fc00::/7)"
            ));
        }
        parse_zone_name(&self.enum_apex).map_err(|e| format!("dns.enum_apex: {e}"))?;
        if let Some(m) = &self.mimi_apex {
            parse_zone_name(m).map_err(|e| format!("dns.mimi_apex: {e}"))?;
        }
        if let Some(n) = &self.nameserver {
            parse_zone_name(n).map_err(|e| format!("dns.nameserver: {e}"))?;
        }
        if self.tcp_timeout_ms == 0 {
            return Err("dns.tcp_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

fn private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_loopback() || v.is_private(),
        IpAddr::V6(v) => v.is_loopback() || (v.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00)),
    }
}

fn parse_zone_name(s: &str) -> Result<Name, String> {
    let d = signpost_schemas::csi::Domain::parse(s).map_err(|e| e.to_string())?;
    let mut n = Name::from_ascii(d.as_str()).map_err(|e| e.to_string())?;
    n.set_fqdn(true);
    Ok(n)
}

/// The zones and names the listener answers for, made once at start.
#[derive(Debug, Clone)]
pub struct Zones {
    enum_apex: Vec<String>,
    mimi_apex: Vec<String>,
    /// The email domains of the scope (lowercase A-labels).
    email_domains: Vec<String>,
    nameserver: Name,
    negative_ttl: u32,
}

impl Zones {
    /// From the config, the authority's id and scope.
    pub fn new(cfg: &DnsConfig, id: &str, scope: &[ScopeEntry], negative_ttl: u32) -> Result<Zones, String> {
        let enum_apex = parse_zone_name(&cfg.enum_apex)?;
        let mimi_apex = parse_zone_name(cfg.mimi_apex.as_deref().unwrap_or(&format!("mimi.{id}")))?;
        let nameserver = parse_zone_name(cfg.nameserver.as_deref().unwrap_or(id))?;
        let email_domains = scope
            .iter()
            .filter_map(|s| match s {
                ScopeEntry::Domain(d) => Some(d.as_str().to_owned()),
                ScopeEntry::Prefix(_) => None,
            })
            .collect();
        Ok(Zones { enum_apex: labels_of(&enum_apex), mimi_apex: labels_of(&mimi_apex), email_domains, nameserver, negative_ttl })
    }

    /// The MIMI resolution domain of an email domain (what its MIMIX
    /// record holds).
    pub fn resolution_domain(&self, email_domain: &str) -> String {
        format!("{email_domain}.{}", self.mimi_apex.join("."))
    }

    /// The ENUM name of a number (RFC 6116 §2.4: the digits reversed, dot
    /// separated, under the apex).
    pub fn enum_name(&self, n: &E164) -> String {
        let mut out = String::with_capacity(n.digits().len() * 2 + 16);
        for c in n.digits().chars().rev() {
            out.push(c);
            out.push('.');
        }
        out.push_str(&self.enum_apex.join("."));
        out
    }
}

/// Lowercase labels, leftmost first (the root's empty label dropped).
fn labels_of(n: &Name) -> Vec<String> {
    n.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect()
}

/// What a name in the zones is.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// Not in any zone: REFUSED.
    Outside,
    /// A zone apex (SOA and NS live here).
    Apex { zone: String },
    /// A number's NAPTR name.
    Number { zone: String, csi: Option<E164>, digits: String },
    /// The MIMI TXT of a number or an address.
    MimiOf { zone: String, csi: Option<Csi> },
    /// An address's name (exists, no records of its own).
    Mailbox { zone: String, csi: Option<Csi> },
    /// An empty non-terminal (a name above held names).
    Above { zone: String },
    /// MIMIX of an email domain (a zone apex too).
    Mimix { zone: String, domain: String },
    /// In a zone, but nothing is there.
    Nothing { zone: String },
}

impl Zones {
    fn place(&self, labels: &[String]) -> Place {
        if let Some(rest) = strip_suffix(labels, &self.enum_apex) {
            return self.enum_place(rest);
        }
        if let Some(rest) = strip_suffix(labels, &self.mimi_apex) {
            return self.mimi_place(rest);
        }
        if let Some((first, domain)) = labels.split_first()
            && first == MIMIX_LABEL
            && self.email_domains.contains(&domain.join("."))
        {
            return Place::Mimix { zone: labels.join("."), domain: domain.join(".") };
        }
        // A MIMI user identifier's MIMI record: `_mimi.<MUI>`, its own
        // zone apex (like `_mimix.<domain>`), for MUIs under the scope's
        // domains.
        if let Some((first, name)) = labels.split_first()
            && first == MIMI_LABEL
            && name.len() >= 3
        {
            let n = name.join(".");
            if self.email_domains.iter().any(|d| n.ends_with(&format!(".{d}"))) {
                let csi = Csi::from_wire(&format!("mui:{n}")).ok();
                return Place::MimiOf { zone: labels.join("."), csi };
            }
        }
        // Below a MIMIX apex: nothing there.
        for i in 1..labels.len() {
            if let Some(tail) = labels.get(i..)
                && tail.first().is_some_and(|l| l == MIMIX_LABEL)
                && let Some(dom) = tail.get(1..)
                && self.email_domains.contains(&dom.join("."))
            {
                return Place::Nothing { zone: tail.join(".") };
            }
        }
        Place::Outside
    }

    fn enum_place(&self, rest: &[String]) -> Place {
        let zone = self.enum_apex.join(".");
        if rest.is_empty() {
            return Place::Apex { zone };
        }
        let (mimi, digits) = split_mimi(rest);
        if digits.is_empty() || !digits.iter().all(|l| l.len() == 1 && l.bytes().all(|b| b.is_ascii_digit())) {
            return Place::Nothing { zone };
        }
        let number: String = digits.iter().rev().map(String::as_str).collect();
        let csi = E164::from_digits(&number).ok();
        if mimi {
            Place::MimiOf { zone, csi: csi.map(Csi::E164) }
        } else {
            Place::Number { zone, csi, digits: number }
        }
    }

    fn mimi_place(&self, rest: &[String]) -> Place {
        let zone = self.mimi_apex.join(".");
        if rest.is_empty() {
            return Place::Apex { zone };
        }
        let (mimi, name) = split_mimi(rest);
        if let Some((local, domain)) = name.split_first() {
            let d = domain.join(".");
            if self.email_domains.contains(&d) {
                let csi = Email::parse(&format!("{local}@{d}")).ok().map(Csi::Email);
                return if mimi { Place::MimiOf { zone, csi } } else { Place::Mailbox { zone, csi } };
            }
        }
        if mimi {
            return Place::Nothing { zone };
        }
        let joined = rest.join(".");
        if self.email_domains.iter().any(|d| d == &joined || d.ends_with(&format!(".{joined}"))) {
            return Place::Above { zone };
        }
        Place::Nothing { zone }
    }
}

/// What a miss is charged as: the identifier's URI (as LoST charges it),
/// or the name when it names no identifier.
fn budget_key(csi: Option<&Csi>, qname: &Name) -> String {
    csi.map_or_else(|| qname.to_lowercase().to_ascii(), |c| c.uri().to_owned())
}

/// Whether a name starts with the `_mimi` label, and the rest.
fn split_mimi(rest: &[String]) -> (bool, &[String]) {
    match rest.split_first() {
        Some((f, d)) if f == MIMI_LABEL => (true, d),
        _ => (false, rest),
    }
}

fn strip_suffix<'a>(labels: &'a [String], apex: &[String]) -> Option<&'a [String]> {
    let n = labels.len().checked_sub(apex.len())?;
    (labels.get(n..)? == apex).then(|| labels.get(..n)).flatten()
}

/// One answer, before it is put on the wire.
#[derive(Debug, Default)]
pub struct Answer {
    /// NOERROR, NXDOMAIN, REFUSED or SERVFAIL.
    pub rcode: Rcode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
}

/// The response codes the bridge gives.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    /// Data, or no data of that type (NODATA).
    #[default]
    NoError,
    /// No such name.
    NxDomain,
    /// Not one of the zones.
    Refused,
    /// The store failed.
    ServFail,
}

impl From<Rcode> for ResponseCode {
    fn from(r: Rcode) -> Self {
        match r {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
            Rcode::ServFail => ResponseCode::ServFail,
        }
    }
}

/// The bridge: the zones over an authority, with the same per-client
/// limits as LoST (the query rate and the enumeration budget of `[rate]`,
/// keyed by the client's address: a resolver in front counts as one).
pub struct DnsBridge<S: Store> {
    zones: Zones,
    core: Arc<Authority<S>>,
    limiter: crate::limits::Limiter,
}

impl<S: Store> std::fmt::Debug for DnsBridge<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsBridge").field("zones", &self.zones).finish()
    }
}

/// What a number or address holds for everyone, as LoST answers it.
enum Held {
    /// The visible entry mappings (maybe none: opted out, or entries for
    /// some senders only).
    Mappings(Vec<Mapping>),
    /// Not held (unknown, released, or outside the scope).
    Absent,
}

impl<S: Store> DnsBridge<S> {
    /// A bridge over an authority.
    pub fn new(zones: Zones, core: Arc<Authority<S>>, limiter: crate::limits::Limiter) -> Self {
        DnsBridge { zones, core, limiter }
    }

    /// The zones.
    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    /// Answers one question from `client` (its address). Over the query
    /// rate, or over the enumeration budget for a name not asked before:
    /// REFUSED (RFC 1035 §4.1.1: refused for policy reasons).
    pub async fn answer(&self, qname: &Name, qtype: RecordType, client: &str) -> Answer {
        if self.limiter.query(client, self.core.now()).is_err() {
            return Answer { rcode: Rcode::Refused, ..Answer::default() };
        }
        let labels = labels_of(qname);
        match self.zones.place(&labels) {
            Place::Outside => Answer { rcode: Rcode::Refused, ..Answer::default() },
            Place::Apex { zone } => self.apex(qname, qtype, &zone, None),
            Place::Mimix { zone, domain } => self.apex(qname, qtype, &zone, Some(&domain)),
            Place::Nothing { zone } => self.negative(&zone, Rcode::NxDomain),
            Place::Above { zone } => self.negative(&zone, Rcode::NoError),
            Place::Number { zone, csi, digits } => match self.held(csi.map(Csi::E164), client).await {
                Err(a) => a,
                Ok(Held::Absent) => self.absent_number(&zone, &digits, client).await,
                Ok(Held::Mappings(ms)) => self.records(&zone, qtype, RecordType::NAPTR, || naptrs(qname, &ms, self.core.now())),
            },
            Place::MimiOf { zone, csi } => match self.held(csi.clone(), client).await {
                Err(a) => a,
                // Not held: the `_mimi` name does not exist (nothing lies
                // below it).
                Ok(Held::Absent) => self.no_such(&zone, client, &budget_key(csi.as_ref(), qname)),
                Ok(Held::Mappings(ms)) => self.records(&zone, qtype, RecordType::TXT, || mssis(qname, &ms, self.core.now())),
            },
            Place::Mailbox { zone, csi } => match self.held(csi.clone(), client).await {
                Err(a) => a,
                Ok(Held::Absent) => self.no_such(&zone, client, &budget_key(csi.as_ref(), qname)),
                Ok(Held::Mappings(_)) => self.negative(&zone, Rcode::NoError),
            },
        }
    }

    /// The records of type `want` (or of ANY) at a name that exists.
    fn records(&self, zone: &str, qtype: RecordType, want: RecordType, make: impl FnOnce() -> Vec<Record>) -> Answer {
        if qtype == want || qtype == RecordType::ANY { self.positive(zone, make()) } else { self.negative(zone, Rcode::NoError) }
    }

    /// The LoST answer for `csi` with no sender context: exactly the
    /// mappings a LoST client without context gets.
    async fn held(&self, csi: Option<Csi>, client: &str) -> Result<Held, Answer> {
        let Some(csi) = csi else { return Ok(Held::Absent) };
        let refused = || Answer { rcode: Rcode::Refused, ..Answer::default() };
        let now = self.core.now();
        let key = csi.uri().to_owned();
        self.limiter.lookup(client, &key, now).map_err(|_| refused())?;
        match self.core.answer(&FindService::for_csi(csi, false)).await {
            Ok(Response::Found(f)) => {
                self.limiter.hit(client, &key, now);
                Ok(Held::Mappings(f.mappings.into_iter().filter(|m| matches!(m.body, MappingBody::Provider(_))).collect()))
            }
            Ok(_) | Err(Failure::NotFound { .. }) => Ok(Held::Absent),
            Err(Failure::Internal(e)) => {
                tracing::error!("dns: the store failed: {e}");
                Err(Answer { rcode: Rcode::ServFail, ..Answer::default() })
            }
            Err(_) => Ok(Held::Absent),
        }
    }

    /// NXDOMAIN for a name that does not exist, charged to the client's
    /// enumeration budget as LoST charges a notFound (a name it asked
    /// before costs nothing); REFUSED once the budget is spent.
    fn no_such(&self, zone: &str, client: &str, key: &str) -> Answer {
        match self.limiter.miss(client, key, self.core.now()) {
            Ok(()) => self.negative(zone, Rcode::NxDomain),
            Err(_) => Answer { rcode: Rcode::Refused, ..Answer::default() },
        }
    }

    /// A number that is not held: NXDOMAIN, unless held numbers lie below
    /// it (then the name exists as an empty non-terminal, RFC 8020, and a
    /// resolver walking down to a number is not charged for it).
    async fn absent_number(&self, zone: &str, digits: &str, client: &str) -> Answer {
        let prefix = format!("tel:+{digits}");
        match self.core.store().list(&prefix, 2).await {
            Ok(rs) if rs.iter().any(|r| r.csi.uri().len() > prefix.len()) => self.negative(zone, Rcode::NoError),
            Ok(_) => self.no_such(zone, client, &prefix),
            Err(e) => {
                tracing::error!("dns: the store failed: {e}");
                Answer { rcode: Rcode::ServFail, ..Answer::default() }
            }
        }
    }

    fn apex(&self, qname: &Name, qtype: RecordType, zone: &str, mimix: Option<&str>) -> Answer {
        let mut answers = Vec::new();
        if matches!(qtype, RecordType::SOA | RecordType::ANY) {
            answers.extend(self.soa(zone));
        }
        if matches!(qtype, RecordType::NS | RecordType::ANY) {
            answers.push(Record::from_rdata(qname.clone(), ZONE_TTL, RData::NS(NS(self.zones.nameserver.clone()))));
        }
        if let Some(d) = mimix
            && matches!(qtype, RecordType::TXT | RecordType::ANY)
        {
            answers.push(Record::from_rdata(qname.clone(), ZONE_TTL, RData::TXT(TXT::new(vec![self.zones.resolution_domain(d)]))));
        }
        if answers.is_empty() {
            return self.negative(zone, Rcode::NoError);
        }
        Answer { rcode: Rcode::NoError, answers, authority: vec![] }
    }

    fn soa(&self, zone: &str) -> Option<Record> {
        let apex = Name::from_ascii(format!("{zone}.")).ok()?;
        let rname = Name::from_ascii(format!("hostmaster.{zone}.")).ok()?;
        // The serial is the feed head: it moves whenever the data does.
        let serial = u32::try_from(*self.core.head().borrow() % u64::from(u32::MAX)).unwrap_or(0);
        let soa = SOA::new(self.zones.nameserver.clone(), rname, serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.zones.negative_ttl);
        Some(Record::from_rdata(apex, self.zones.negative_ttl, RData::SOA(soa)))
    }

    fn negative(&self, zone: &str, rcode: Rcode) -> Answer {
        Answer { rcode, answers: vec![], authority: self.soa(zone).into_iter().collect() }
    }

    fn positive(&self, zone: &str, answers: Vec<Record>) -> Answer {
        if answers.is_empty() {
            return self.negative(zone, Rcode::NoError);
        }
        Answer { rcode: Rcode::NoError, answers, authority: vec![] }
    }
}

/// One TTL for an RRset (RFC 2181 §5.2): the shortest remaining lifetime of
/// the mappings it comes from, at least 1 s.
fn ttl_of(ms: &[Mapping], now: Timestamp) -> u32 {
    ms.iter()
        .map(|m| match m.expires {
            Expires::At(t) => t.as_millis().saturating_sub(now.as_millis()) / 1000,
            Expires::NoCache => 0,
            Expires::NoExpiration => u64::from(u32::MAX),
        })
        .min()
        .map_or(0, |s| u32::try_from(s).unwrap_or(u32::MAX))
        .max(1)
}

/// The priority of an entry split into NAPTR order and preference: order
/// 100 + priority / 65536, preference priority % 65536, so a lower
/// priority sorts first and the import reads the same priority back.
pub fn order_preference(priority: u32) -> (u16, u16) {
    let order = 100u32.saturating_add(priority >> 16);
    (u16::try_from(order).unwrap_or(u16::MAX), u16::try_from(priority & 0xffff).unwrap_or(u16::MAX))
}

/// The ENUM service field for a URI.
pub fn enum_service(uri: &str) -> String {
    let scheme = uri.split_once(':').map_or("", |(s, _)| s).to_ascii_lowercase();
    match scheme.as_str() {
        "mimi" => ENUM_SERVICE_MIMI.to_owned(),
        "sip" | "xmpp" | "im" => format!("E2U+{scheme}"),
        _ => format!("E2U+mimi:{scheme}"),
    }
}

/// The NAPTR regexp that rewrites any AUS to `uri` (RFC 6116 §3.2.2:
/// `!^.*$!<uri>!`), with a delimiter that does not occur in the URI and
/// backslashes escaped (RFC 3402 §3.2).
pub fn regexp_for(uri: &str) -> String {
    let delim = ['!', '|', '#', '~', '%', '@'].into_iter().find(|c| !uri.contains(*c)).unwrap_or('!');
    let body = uri.replace('\\', "\\\\");
    format!("{delim}^.*${delim}{body}{delim}")
}

fn naptrs(qname: &Name, ms: &[Mapping], now: Timestamp) -> Vec<Record> {
    let ttl = ttl_of(ms, now);
    let mut out = Vec::new();
    for m in ms {
        let MappingBody::Provider(p) = &m.body else { continue };
        let (order, preference) = order_preference(p.priority);
        for u in &m.uris {
            let rd = NAPTR::new(
                order,
                preference,
                b"u".to_vec().into_boxed_slice(),
                enum_service(u.as_str()).into_bytes().into_boxed_slice(),
                regexp_for(u.as_str()).into_bytes().into_boxed_slice(),
                Name::root(),
            );
            let mut r = Record::from_rdata(qname.clone(), ttl, RData::NAPTR(rd));
            r.dns_class = DNSClass::IN;
            out.push(r);
        }
    }
    out
}

/// The host of a URI (`mimi://host/…`, `sip:user@host;…`), if it has one.
pub fn uri_host(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once(':')?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let end = rest.find(['/', '?', '#', ';']).unwrap_or(rest.len());
    let auth = rest.get(..end)?;
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    let host = host.split(':').next().unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// An MSSI definition string of the draft, for one URI of an entry:
/// `v=MIMI1; p=<priority>; a=<account>; e=<endpoint>; s=<service>`. The
/// account is the URI (`;` and `"` percent-encoded so the string stays
/// parseable), the endpoint its host, the service the provider's id.
pub fn mssi(priority: u32, uri: &str, provider: &str) -> String {
    let account = uri.replace('%', "%25").replace(';', "%3B").replace('"', "%22");
    let endpoint = uri_host(uri).unwrap_or(provider);
    format!("v=MIMI1; p={priority}; a={account}; e={endpoint}; s={provider}")
}

/// A TXT record's strings hold at most 255 octets each (RFC 1035 §3.3):
/// a longer text is split on character boundaries.
fn txt_strings(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if cur.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn mssis(qname: &Name, ms: &[Mapping], now: Timestamp) -> Vec<Record> {
    let ttl = ttl_of(ms, now);
    let mut out = Vec::new();
    for m in ms {
        let MappingBody::Provider(p) = &m.body else { continue };
        for u in &m.uris {
            let text = mssi(p.priority, u.as_str(), p.id.as_str());
            out.push(Record::from_rdata(qname.clone(), ttl, RData::TXT(TXT::new(txt_strings(&text)))));
        }
    }
    out
}

/// The hickory request handler over the bridge.
pub struct Handler<S: Store> {
    bridge: Arc<DnsBridge<S>>,
}

impl<S: Store> std::fmt::Debug for Handler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish()
    }
}

#[async_trait::async_trait]
impl<S: Store + 'static> RequestHandler for Handler<S> {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let mut edns_out: Option<Edns> = None;
        if let Some(req) = request.edns.as_ref() {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            edns_out = Some(e);
        }
        let builder = MessageResponseBuilder::new(&request.queries, edns_out.as_ref());
        let mut meta = Metadata::new(request.metadata.id, MessageType::Response, request.metadata.op_code);
        meta.recursion_desired = request.metadata.recursion_desired;
        let query = match request.request_info() {
            Ok(i) if request.metadata.message_type == MessageType::Query && request.metadata.op_code == OpCode::Query => Some(i.query.clone()),
            Ok(_) => {
                meta.response_code = ResponseCode::NotImp;
                None
            }
            Err(_) => {
                meta.response_code = ResponseCode::FormErr;
                None
            }
        };
        let Some(q) = query else {
            return send(&mut response_handle, builder.build_no_records(meta)).await;
        };
        if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
            meta.response_code = ResponseCode::Refused;
            return send(&mut response_handle, builder.build_no_records(meta)).await;
        }
        let name: Name = q.name().into();
        let client = format!("dns:{}", request.src().ip());
        let a = self.bridge.answer(&name, q.query_type(), &client).await;
        meta.response_code = a.rcode.into();
        meta.authoritative = matches!(a.rcode, Rcode::NoError | Rcode::NxDomain);
        let response = builder.build(meta, a.answers.iter(), std::iter::empty(), a.authority.iter(), std::iter::empty());
        send(&mut response_handle, response).await
    }
}

async fn send<'a, R: ResponseHandler>(
    h: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let id = response.metadata().id;
    match h.send_response(response).await {
        Ok(i) => i,
        Err(e) => {
            tracing::debug!("dns: sending a response failed: {e}");
            let mut meta = Metadata::new(id, MessageType::Response, OpCode::Query);
            meta.response_code = ResponseCode::ServFail;
            ResponseInfo::from(hickory_server::proto::op::Header { metadata: meta, counts: Default::default() })
        }
    }
}

/// A running DNS listener.
pub struct DnsListener {
    server: hickory_server::Server<HandlerBox>,
    addr: SocketAddr,
}

/// The handler behind a type-erased store.
pub type HandlerBox = Handler<crate::store::AnyStore>;

impl std::fmt::Debug for DnsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsListener").field("addr", &self.addr).finish()
    }
}

impl DnsListener {
    /// Binds UDP and TCP on one address (port 0: one free port for both)
    /// and starts answering. Logs `listening for dns on <addr>` and that
    /// the answers carry no signatures.
    pub async fn start(cfg: &DnsConfig, bridge: Arc<DnsBridge<crate::store::AnyStore>>) -> Result<DnsListener, String> {
        let want: SocketAddr = cfg.listen.parse().map_err(|e| format!("dns.listen: {e}"))?;
        // With port 0 the UDP port is chosen first and TCP takes the same
        // one; another process may hold it on TCP, so a few tries.
        let mut last = String::new();
        for _ in 0..8 {
            let udp = tokio::net::UdpSocket::bind(want).await.map_err(|e| format!("dns.listen {want} (udp): {e}"))?;
            let addr = udp.local_addr().map_err(|e| e.to_string())?;
            match tokio::net::TcpListener::bind(addr).await {
                Ok(tcp) => {
                    let mut server = hickory_server::Server::new(Handler { bridge: bridge.clone() });
                    server.register_socket(udp);
                    server.register_listener(tcp, Duration::from_millis(cfg.tcp_timeout_ms), 16);
                    tracing::info!("listening for dns on {addr}");
                    tracing::warn!(
                        "the DNS bridge on {addr} answers plain DNS: no per-mapping signatures, no sender context, no push invalidation; keep it on loopback or a private network"
                    );
                    return Ok(DnsListener { server, addr });
                }
                Err(e) if want.port() == 0 => last = e.to_string(),
                Err(e) => return Err(format!("dns.listen {addr} (tcp): {e}")),
            }
        }
        Err(format!("dns.listen {want}: no port free on both UDP and TCP: {last}"))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering.
    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!("dns: shutdown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Zones {
        let cfg = DnsConfig { listen: "127.0.0.1:0".into(), enum_apex: "e164.arpa".into(), mimi_apex: None, nameserver: None, tcp_timeout_ms: 5000 };
        Zones::new(&cfg, "dp.de.example", &[ScopeEntry::parse("+49").unwrap(), ScopeEntry::parse("mail.example").unwrap()], 60).unwrap()
    }

    fn place(z: &Zones, n: &str) -> Place {
        z.place(&labels_of(&Name::from_ascii(n).unwrap()))
    }

    #[test]
    fn names_map_to_places() {
        let z = zones();
        let n = E164::from_digits("4915112345678").unwrap();
        assert_eq!(z.enum_name(&n), "8.7.6.5.4.3.2.1.1.5.1.9.4.e164.arpa");
        assert!(matches!(place(&z, "8.7.6.5.4.3.2.1.1.5.1.9.4.E164.arpa."), Place::Number { csi: Some(_), .. }));
        assert!(matches!(place(&z, "_mimi.8.7.6.5.4.3.2.1.1.5.1.9.4.e164.arpa."), Place::MimiOf { csi: Some(Csi::E164(_)), .. }));
        assert!(matches!(place(&z, "4.e164.arpa."), Place::Number { csi: None, .. }));
        assert!(matches!(place(&z, "e164.arpa."), Place::Apex { .. }));
        assert!(matches!(place(&z, "x.4.e164.arpa."), Place::Nothing { .. }));
        assert!(matches!(place(&z, "_mimi.alice.mail.example.mimi.dp.de.example."), Place::MimiOf { csi: Some(Csi::Email(_)), .. }));
        assert!(matches!(place(&z, "alice.mail.example.mimi.dp.de.example."), Place::Mailbox { csi: Some(_), .. }));
        assert!(matches!(place(&z, "example.mimi.dp.de.example."), Place::Above { .. }));
        assert!(matches!(place(&z, "mail.example.mimi.dp.de.example."), Place::Above { .. }));
        assert!(matches!(place(&z, "_mimix.mail.example."), Place::Mimix { .. }));
        assert!(matches!(place(&z, "a._mimix.mail.example."), Place::Nothing { .. }));
        assert_eq!(place(&z, "_mimix.other.example."), Place::Outside);
        assert_eq!(place(&z, "www.example.com."), Place::Outside);
        assert_eq!(z.resolution_domain("mail.example"), "mail.example.mimi.dp.de.example");
    }

    #[test]
    fn records_text() {
        assert_eq!(regexp_for("mimi://p.example/u/1"), "!^.*$!mimi://p.example/u/1!");
        assert_eq!(regexp_for("mimi://p.example/u/a!b"), "|^.*$|mimi://p.example/u/a!b|");
        assert_eq!(enum_service("sip:a@b.example"), "E2U+sip");
        assert_eq!(enum_service("https://x.example/"), "E2U+mimi:https");
        assert_eq!(order_preference(10), (100, 10));
        assert_eq!(order_preference(65536 + 7), (101, 7));
        assert_eq!(uri_host("sip:alice@ims.example;transport=tcp"), Some("ims.example"));
        assert_eq!(uri_host("mimi://p.example:443/u/1"), Some("p.example"));
        assert_eq!(mssi(10, "sip:a@ims.example;x=1", "ims.example"), "v=MIMI1; p=10; a=sip:a@ims.example%3Bx=1; e=ims.example; s=ims.example");
        let long = "x".repeat(600);
        let parts = txt_strings(&long);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert!(DnsConfig { listen: "8.8.8.8:53".into(), enum_apex: "e164.arpa".into(), mimi_apex: None, nameserver: None, tcp_timeout_ms: 1 }.check().is_err());
        assert!(DnsConfig { listen: "10.1.2.3:53".into(), enum_apex: "e164.arpa".into(), mimi_apex: None, nameserver: None, tcp_timeout_ms: 1 }.check().is_ok());
    }
}
