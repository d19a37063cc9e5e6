//! LoST messages (RFC 5222) with Signpost's `sp` extensions, as types that
//! cannot hold what the schema (or Signpost) forbids, and their codec.
//!
//! Decoding is strict about LoST structure (order, required attributes, no
//! foreign attributes, one error of each kind) and tolerant of extension
//! elements it does not know, as RFC 5222 §15 intends, except unqualified
//! ones (the LoST schema lets them pass as extensions by mistake), which
//! are refused.

use crate::csi::{Csi, CsiError, Domain, E164Prefix};
use crate::error::{DecodeError, ErrorKind, Problem};
use crate::name::Name;
use crate::time::{Expires, Timestamp};
use crate::xml::{self, Element, Limits, Ns, Writer, bad_value, schema};

/// The MIMI discovery service URN.
pub const SERVICE_MIMI: &str = "urn:service:mimi";
/// Signpost's location profile: a CSI in `<sp:csi>`.
pub const PROFILE_CSI: &str = "sp-csi";
/// The media type of every LoST body.
pub const CONTENT_TYPE: &str = "application/lost+xml";

// ---------------------------------------------------------------------------
// Small value types

/// A human-readable message with its language: LoST's `message` +
/// `xml:lang` pair. The text is an `xsd:token`: whitespace is collapsed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The text.
    pub text: String,
    /// An `xsd:language` tag.
    pub lang: String,
}

impl Message {
    /// An English message.
    pub fn en(text: impl AsRef<str>) -> Message {
        Message { text: collapse(text.as_ref()), lang: "en".into() }
    }
    fn decode(e: &Element<'_>) -> Result<Option<Message>, DecodeError> {
        match (e.attr("message"), e.lang()) {
            (None, None) => Ok(None),
            (Some(t), Some(l)) => {
                check_lang(l)?;
                Ok(Some(Message { text: collapse(t), lang: l.to_owned() }))
            }
            _ => Err(schema(format!("{}: message and xml:lang go together", e.label()))),
        }
    }
}

/// XML `token` normalisation: runs of whitespace become one space, none at
/// either end.
pub(crate) fn collapse_ws(s: &str) -> String {
    collapse(s)
}

fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

fn check_lang(l: &str) -> Result<(), DecodeError> {
    let mut parts = l.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    if first_ok && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric())) {
        Ok(())
    } else {
        Err(bad_value(format!("{l:?} is not a language tag")))
    }
}

/// A display name with its language (`<displayName xml:lang>`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DisplayName {
    /// The name.
    pub text: String,
    /// An `xsd:language` tag.
    pub lang: String,
}

/// A short tag (`business`, `personal`): 1–32 of `a-z 0-9 . _ -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tag(Box<str>);

impl Tag {
    /// Parses one tag (lowercased).
    pub fn parse(s: &str) -> Result<Tag, DecodeError> {
        let t = s.to_ascii_lowercase();
        if (1..=32).contains(&t.len())
            && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            Ok(Tag(t.into_boxed_str()))
        } else {
            Err(bad_value(format!("{s:?} is not a tag (1-32 of a-z, 0-9, '.', '_', '-')")))
        }
    }
    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn list(s: &str) -> Result<Vec<Tag>, DecodeError> {
        s.split_whitespace().map(Tag::parse).collect()
    }
    pub(crate) fn list_of(s: &str) -> Result<Vec<Tag>, DecodeError> {
        Tag::list(s)
    }
}

/// A URI in a `<uri>` or `<service>`: a scheme, then no whitespace.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Uri(Box<str>);

impl Uri {
    /// Checks `scheme:rest` (RFC 3986 §3.1 scheme syntax), only RFC 3986
    /// characters, every `%` followed by two hex digits, at most 2048 bytes.
    pub fn parse(s: &str) -> Result<Uri, DecodeError> {
        let t = s.trim();
        let scheme_ok = t.split_once(':').is_some_and(|(sch, rest)| {
            !rest.is_empty()
                && sch.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && sch.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let b = t.as_bytes();
        let chars_ok = b.iter().enumerate().all(|(i, &c)| match c {
            b'%' => b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
            _ => c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&c),
        });
        if scheme_ok && chars_ok && t.len() <= 2048 {
            Ok(Uri(t.into()))
        } else {
            Err(bad_value(format!("{s:?} is not a URI (RFC 3986)")))
        }
    }
    /// The URI text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An endpoint URL where a server listens: `https://host:port/path`
/// (`http://` is accepted for development deployments only).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Endpoint(Box<str>);

impl Endpoint {
    /// Checks scheme, a host, and no user info, query or fragment.
    pub fn parse(s: &str) -> Result<Endpoint, DecodeError> {
        let t = s.trim();
        let bad = || bad_value(format!("{s:?} is not an endpoint URL like https://dp.example:7402/lost"));
        let rest = t.strip_prefix("https://").or_else(|| t.strip_prefix("http://")).ok_or_else(bad)?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty()
            || authority.contains('@')
            || t.contains(['?', '#'])
            || t.len() > 512
            || t.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        Ok(Endpoint(t.into()))
    }
    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Whether the URL is TLS.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

/// An assignment epoch: bumped on every release, so a later holder of a
/// number never inherits entries of an earlier one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Epoch(pub u64);

/// How an MSP entry was established.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Assurance {
    /// The number/email provider attested it.
    CsipAttested,
    /// The MSP verified the user itself.
    MspVerified,
}

impl Assurance {
    /// The wire token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Assurance::CsipAttested => "csip-attested",
            Assurance::MspVerified => "msp-verified",
        }
    }
    /// Parses the wire token.
    pub fn parse(s: &str) -> Result<Assurance, DecodeError> {
        match s.trim() {
            "csip-attested" => Ok(Assurance::CsipAttested),
            "msp-verified" => Ok(Assurance::MspVerified),
            _ => Err(bad_value(format!("{s:?} is not an assurance (csip-attested | msp-verified)"))),
        }
    }
}

/// A key id: 1–128 of `A-Z a-z 0-9 . _ -` (it appears in `/certs/{keyId}`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(Box<str>);

impl KeyId {
    /// Parses a key id.
    pub fn parse(s: &str) -> Result<KeyId, DecodeError> {
        let t = s.trim();
        if (1..=128).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            Ok(KeyId(t.into()))
        } else {
            Err(bad_value(format!("{s:?} is not a key id")))
        }
    }
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A signature over canonical bytes (see `SIGNING.md`). ES256 only.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signature {
    /// The signing certificate's key id.
    pub key_id: KeyId,
    /// When the content was signed.
    pub signed_at: Timestamp,
    /// After this the signature no longer vouches for the content.
    pub valid_until: Timestamp,
    /// The ECDSA P-256 signature (ASN.1 DER, as ring produces it).
    pub value: Vec<u8>,
}

/// The signature algorithm: ECDSA P-256 with SHA-256.
pub const ALG_ES256: &str = "ES256";

impl Signature {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.open("sp:signature")
            .attr("alg", ALG_ES256)
            .attr("keyId", self.key_id.as_str())
            .attr_time("signedAt", self.signed_at)
            .attr_time("validUntil", self.valid_until)
            .gt();
        crate::b64::encode_into(&self.value, &mut w.out);
        w.close("sp:signature");
    }
    pub(crate) fn decode(e: &Element<'_>) -> Result<Signature, DecodeError> {
        e.only_attrs(&["alg", "keyId", "signedAt", "validUntil"], false)?;
        e.no_children()?;
        let alg = e.req("alg")?;
        if alg.trim() != ALG_ES256 {
            return Err(bad_value(format!("signature algorithm {alg:?} is not supported (ES256 only)")));
        }
        let signed_at = time_attr(e, "signedAt")?;
        let valid_until = time_attr(e, "validUntil")?;
        let value = crate::b64::decode(e.token_text())
            .ok_or_else(|| bad_value("sp:signature does not hold base64"))?;
        if value.is_empty() {
            return Err(bad_value("sp:signature is empty"));
        }
        Ok(Signature { key_id: KeyId::parse(e.req("keyId")?)?, signed_at, valid_until, value })
    }
}

pub(crate) fn time_attr(e: &Element<'_>, name: &str) -> Result<Timestamp, DecodeError> {
    Timestamp::parse(e.req(name)?).map_err(|x| bad_value(format!("{} {name}: {x}", e.label())))
}

pub(crate) fn num_attr<T: std::str::FromStr>(e: &Element<'_>, name: &str) -> Result<T, DecodeError> {
    let v = e.req(name)?;
    v.trim()
        .parse()
        .map_err(|_| bad_value(format!("{} {name}={v:?} is not a valid number", e.label())))
}

fn bool_attr(e: &Element<'_>, name: &str, default: bool) -> Result<bool, DecodeError> {
    match e.attr(name).map(str::trim) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(bad_value(format!("{} {name}={v:?} is not a boolean", e.label()))),
    }
}

pub(crate) fn name_attr(e: &Element<'_>, name: &str) -> Result<Name, DecodeError> {
    Name::parse(e.req(name)?).map_err(|x| bad_value(format!("{} {name}: {x}", e.label())))
}

pub(crate) fn csi_value(s: &str) -> Result<Csi, DecodeError> {
    Csi::from_wire(s.trim()).map_err(|e: CsiError| bad_value(format!("invalid CSI {:?}: {e}", s.trim())))
}

fn token(e: &Element<'_>, name: &str) -> Result<String, DecodeError> {
    Ok(collapse(e.req(name)?))
}

/// Foreign (non-LoST, non-sp) extension elements are skipped; unqualified
/// ones are refused (the LoST schema's `notLost` lets them pass by mistake).
fn is_skippable_ext(c: &Element<'_>) -> Result<bool, DecodeError> {
    match c.ns {
        Ns::Other => Ok(true),
        Ns::None => Err(schema(format!(
            "{} is unqualified; extension elements must be namespace-qualified",
            c.label()
        ))),
        Ns::Lost | Ns::Sp => Ok(false),
    }
}

fn unexpected(parent: &Element<'_>, c: &Element<'_>) -> DecodeError {
    schema(format!("{} may not contain {} here", parent.label(), c.label()))
}

// ---------------------------------------------------------------------------
// Path

/// The `<path>` of a request or response: every server that handled it, in
/// order (RFC 5222 §6). Never empty.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Path(Vec<Name>);

impl Path {
    /// A path with one `via`.
    pub fn new(first: Name) -> Path {
        Path(vec![first])
    }
    /// A path from a list; `None` if empty.
    pub fn from_vec(v: Vec<Name>) -> Option<Path> {
        (!v.is_empty()).then_some(Path(v))
    }
    /// Appends a `via`.
    pub fn push(&mut self, n: Name) {
        self.0.push(n);
    }
    /// Whether `n` is already in the path (loop detection, §6).
    pub fn contains(&self, n: &Name) -> bool {
        self.0.iter().any(|x| x == n)
    }
    /// The `via` entries.
    pub fn vias(&self) -> &[Name] {
        &self.0
    }
    fn write(&self, w: &mut Writer) {
        w.open("path").gt();
        for v in &self.0 {
            w.open("via").attr("source", v.as_str()).empty();
        }
        w.close("path");
    }
    fn decode(e: &Element<'_>) -> Result<Path, DecodeError> {
        e.only_attrs(&[], false)?;
        e.no_text()?;
        let mut v = Vec::with_capacity(e.children.len());
        for c in &e.children {
            if !c.is(Ns::Lost, "via") {
                return Err(unexpected(e, c));
            }
            c.only_attrs(&["source"], false)?;
            c.no_text()?;
            for x in &c.children {
                if !is_skippable_ext(x)? && x.ns != Ns::Sp {
                    return Err(unexpected(c, x));
                }
            }
            v.push(name_attr(c, "source")?);
        }
        Path::from_vec(v).ok_or_else(|| schema("<path> needs at least one <via>"))
    }
}

// ---------------------------------------------------------------------------
// findService

/// A `<location>` of a request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Location {
    /// Profile `sp-csi` (or no profile with an `<sp:csi>` inside).
    Csi {
        /// The location id (echoed in `locationUsed`).
        id: String,
        /// The identifier.
        csi: Csi,
    },
    /// A profile Signpost does not serve (geodetic, civic…): kept so the
    /// server can name it in `locationProfileUnrecognized`.
    Other {
        /// The location id.
        id: String,
        /// The profile, if the client named one.
        profile: Option<String>,
    },
}

impl Location {
    /// The location id.
    pub fn id(&self) -> &str {
        match self {
            Location::Csi { id, .. } | Location::Other { id, .. } => id,
        }
    }
    fn write(&self, w: &mut Writer) {
        match self {
            Location::Csi { id, csi } => {
                w.open("location").attr("id", id).attr("profile", PROFILE_CSI).gt();
                w.leaf("sp:csi", csi.uri());
                w.close("location");
            }
            Location::Other { id, profile } => {
                w.open("location").attr("id", id).attr_opt("profile", profile.as_deref()).empty();
            }
        }
    }
    fn decode(e: &Element<'_>) -> Result<Location, DecodeError> {
        e.only_attrs(&["id", "profile"], false)?;
        e.no_text()?;
        let id = token(e, "id")?;
        let profile = e.attr("profile").map(str::trim);
        if let Some(p) = profile
            && (p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || "._:-".contains(c)))
        {
            return Err(bad_value(format!("location profile {p:?} is not an NMTOKEN")));
        }
        let csi_el = e.children.iter().find(|c| c.is(Ns::Sp, "csi"));
        for c in &e.children {
            if c.ns == Ns::Lost || c.ns == Ns::None {
                return Err(unexpected(e, c));
            }
        }
        match (profile, csi_el) {
            (Some(PROFILE_CSI) | None, Some(c)) => {
                if e.children.iter().filter(|c| c.is(Ns::Sp, "csi")).count() > 1 {
                    return Err(schema("a sp-csi <location> holds exactly one <sp:csi>"));
                }
                c.only_attrs(&[], false)?;
                c.no_children()?;
                Ok(Location::Csi { id, csi: csi_value(&c.text)? })
            }
            (Some(PROFILE_CSI), None) => Err(schema("a <location> with profile sp-csi needs an <sp:csi> child")),
            (p, _) => Ok(Location::Other { id, profile: p.map(str::to_owned) }),
        }
    }
}

/// The sender's context (`<sp:context>`): who asks and for which kind of
/// conversation, so the authority can apply the recipient's preferences.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SenderContext {
    /// The sender's MSP id.
    pub sender_provider: Option<Name>,
    /// Wanted tags (`business`, `personal`…).
    pub tags: Vec<Tag>,
}

impl SenderContext {
    fn write(&self, w: &mut Writer) {
        w.open("sp:context").attr_opt("senderProvider", self.sender_provider.as_ref().map(Name::as_str));
        if !self.tags.is_empty() {
            w.attr_list("tags", self.tags.iter().map(Tag::as_str));
        }
        w.empty();
    }
    fn decode(e: &Element<'_>) -> Result<SenderContext, DecodeError> {
        e.only_attrs(&["senderProvider", "tags"], false)?;
        e.no_children()?;
        e.no_text()?;
        let sender_provider = match e.attr("senderProvider") {
            Some(_) => Some(name_attr(e, "senderProvider")?),
            None => None,
        };
        Ok(SenderContext { sender_provider, tags: Tag::list(e.attr("tags").unwrap_or(""))? })
    }
}

/// `<findService>` (RFC 5222 §8).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FindService {
    /// §8.3.3: whether the server should recurse.
    pub recursive: bool,
    /// One or more locations; the server uses the first it understands.
    pub locations: Vec<Location>,
    /// The service URN (Signpost serves `urn:service:mimi`).
    pub service: Option<Uri>,
    /// Servers that already handled this request (§6).
    pub path: Option<Path>,
    /// The sender's context.
    pub context: Option<SenderContext>,
}

impl FindService {
    /// A query for one CSI.
    pub fn for_csi(csi: Csi, recursive: bool) -> FindService {
        FindService {
            recursive,
            locations: vec![Location::Csi { id: "l1".into(), csi }],
            service: Some(Uri(SERVICE_MIMI.into())),
            path: None,
            context: None,
        }
    }

    /// The location a Signpost server uses (§8.3.1: the first whose profile
    /// it understands), or the `locationProfileUnrecognized` error listing
    /// the profiles it did not understand.
    pub fn csi_location(&self) -> Result<(&str, &Csi), Issue> {
        let mut unsupported = Vec::new();
        for l in &self.locations {
            match l {
                Location::Csi { id, csi } => return Ok((id, csi)),
                Location::Other { profile, .. } => {
                    unsupported.push(profile.clone().unwrap_or_else(|| "unspecified".into()));
                }
            }
        }
        Err(Issue {
            kind: ErrorKind::LocationProfileUnrecognized,
            message: Some(Message::en("Signpost serves only the sp-csi location profile")),
            retry_after: None,
            unsupported_profiles: unsupported,
        })
    }

    fn write(&self, w: &mut Writer) {
        w.open("findService").attr("xmlns", xml::LOST_NS).attr("xmlns:sp", xml::SP_NS);
        if self.recursive {
            w.attr("recursive", "true");
        }
        w.gt();
        for l in &self.locations {
            l.write(w);
        }
        if let Some(s) = &self.service {
            w.leaf("service", s.as_str());
        }
        if let Some(p) = &self.path {
            p.write(w);
        }
        if let Some(c) = &self.context {
            c.write(w);
        }
        w.close("findService");
    }

    fn decode(e: &Element<'_>) -> Result<FindService, DecodeError> {
        e.only_attrs(&["recursive", "validateLocation", "serviceBoundary"], false)?;
        e.no_text()?;
        let recursive = bool_attr(e, "recursive", false)?;
        let _ = bool_attr(e, "validateLocation", false)?;
        if let Some(sb) = e.attr("serviceBoundary")
            && !matches!(sb.trim(), "reference" | "value")
        {
            return Err(bad_value(format!("serviceBoundary={sb:?} is not reference or value")));
        }
        // Order (schema): location+, service?, path?, extensions.
        let mut stage = 0u8;
        let mut f = FindService { recursive, locations: Vec::new(), service: None, path: None, context: None };
        for c in &e.children {
            let next = match (c.ns, c.name) {
                (Ns::Lost, "location") if stage <= 1 => {
                    f.locations.push(Location::decode(c)?);
                    1
                }
                (Ns::Lost, "service") if stage == 1 => {
                    f.service = Some(service_text(c)?);
                    2
                }
                (Ns::Lost, "path") if (1..=2).contains(&stage) => {
                    f.path = Some(Path::decode(c)?);
                    3
                }
                (Ns::Sp, "context") if stage >= 1 => {
                    if f.context.is_some() {
                        return Err(schema("<findService> holds at most one <sp:context>"));
                    }
                    f.context = Some(SenderContext::decode(c)?);
                    4
                }
                (Ns::Sp | Ns::Other | Ns::None, _) if stage >= 1 => {
                    let _ = is_skippable_ext(c)?;
                    4
                }
                _ => return Err(unexpected(e, c)),
            };
            stage = next;
        }
        if f.locations.is_empty() {
            return Err(schema("<findService> needs at least one <location>"));
        }
        Ok(f)
    }
}

fn service_text(c: &Element<'_>) -> Result<Uri, DecodeError> {
    c.only_attrs(&[], false)?;
    c.no_children()?;
    Uri::parse(&c.text)
}

/// `<listServices>` (RFC 5222 §9): which services this server offers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ListServices {
    /// Restrict to sub-services of this URN.
    pub service: Option<Uri>,
    /// Servers that handled the request.
    pub path: Option<Path>,
}

impl ListServices {
    fn write(&self, w: &mut Writer) {
        w.open("listServices").attr("xmlns", xml::LOST_NS).gt();
        if let Some(s) = &self.service {
            w.leaf("service", s.as_str());
        }
        if let Some(p) = &self.path {
            p.write(w);
        }
        w.close("listServices");
    }
    fn decode(e: &Element<'_>) -> Result<ListServices, DecodeError> {
        e.only_attrs(&[], false)?;
        e.no_text()?;
        let mut stage = 0u8;
        let mut l = ListServices { service: None, path: None };
        for c in &e.children {
            stage = match (c.ns, c.name) {
                (Ns::Lost, "service") if stage == 0 => {
                    l.service = Some(service_text(c)?);
                    1
                }
                (Ns::Lost, "path") if stage <= 1 => {
                    l.path = Some(Path::decode(c)?);
                    2
                }
                (Ns::Sp | Ns::Other | Ns::None, _) => {
                    let _ = is_skippable_ext(c)?;
                    3
                }
                _ => return Err(unexpected(e, c)),
            };
        }
        Ok(l)
    }
}

/// `<listServicesResponse>`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ListServicesResponse {
    /// The services offered.
    pub services: Vec<Uri>,
    /// Warnings.
    pub warnings: Vec<Warnings>,
    /// The servers that handled the request.
    pub path: Path,
}

impl ListServicesResponse {
    fn write(&self, w: &mut Writer) {
        w.open("listServicesResponse").attr("xmlns", xml::LOST_NS).attr("xmlns:sp", xml::SP_NS).gt();
        w.open("serviceList").gt();
        for (i, s) in self.services.iter().enumerate() {
            if i > 0 {
                w.out.push(' ');
            }
            w.text(s.as_str());
        }
        w.close("serviceList");
        for x in &self.warnings {
            x.write(w);
        }
        self.path.write(w);
        w.close("listServicesResponse");
    }
    fn decode(e: &Element<'_>) -> Result<ListServicesResponse, DecodeError> {
        e.only_attrs(&[], false)?;
        e.no_text()?;
        let mut it = e.children.iter().peekable();
        let sl = it.next().filter(|c| c.is(Ns::Lost, "serviceList")).ok_or_else(|| schema("<listServicesResponse> starts with <serviceList>"))?;
        sl.only_attrs(&[], false)?;
        sl.no_children()?;
        let services = sl.text.split_whitespace().map(Uri::parse).collect::<Result<_, _>>()?;
        let mut warnings = Vec::new();
        while let Some(c) = it.next_if(|c| c.is(Ns::Lost, "warnings")) {
            warnings.push(Warnings::decode(c)?);
        }
        let p = it.next().filter(|c| c.is(Ns::Lost, "path")).ok_or_else(|| schema("<listServicesResponse> needs a <path>"))?;
        let path = Path::decode(p)?;
        for c in it {
            if !is_skippable_ext(c)? && c.ns != Ns::Sp {
                return Err(unexpected(e, c));
            }
        }
        Ok(ListServicesResponse { services, warnings, path })
    }
}

// ---------------------------------------------------------------------------
// findServiceResponse

/// The MSP entry a mapping describes (`<sp:provider>`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProviderEntry {
    /// The MSP's id.
    pub id: Name,
    /// Lower is preferred.
    pub priority: u32,
    /// The recipient's tags for this entry.
    pub tags: Vec<Tag>,
    /// How the entry was established.
    pub assurance: Assurance,
    /// The number's assignment epoch the entry lives under.
    pub epoch: Epoch,
}

/// Why an existing CSI answers with no MSP for this sender.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum NoProvidersReason {
    /// The recipient's preferences hide every entry from this sender.
    RecipientPreferences,
    /// The recipient opted out of discovery.
    OptedOut,
}

impl NoProvidersReason {
    /// The wire token.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoProvidersReason::RecipientPreferences => "recipient-preferences",
            NoProvidersReason::OptedOut => "opted-out",
        }
    }
    fn parse(s: &str) -> Result<Self, DecodeError> {
        match s.trim() {
            "recipient-preferences" => Ok(NoProvidersReason::RecipientPreferences),
            "opted-out" => Ok(NoProvidersReason::OptedOut),
            _ => Err(bad_value(format!("{s:?} is not a noProviders reason"))),
        }
    }
}

/// What a mapping says: one MSP entry, or "exists, nothing for you".
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MappingBody {
    /// One MSP entry.
    Provider(ProviderEntry),
    /// The CSI exists but no MSP is returned to this sender (the schema
    /// requires at least one mapping, so this is one mapping with no `<uri>`
    /// and this marker).
    NoProviders {
        /// Why.
        reason: NoProvidersReason,
        /// The number's current epoch.
        epoch: Epoch,
    },
}

/// One `<mapping>` (RFC 5222 §5).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mapping {
    /// The cache lifetime (not signed).
    pub expires: Expires,
    /// When the content last changed.
    pub last_updated: Timestamp,
    /// The authority that made the mapping.
    pub source: Name,
    /// The mapping's id at its source (an `xsd:token`).
    pub source_id: String,
    /// Names to show.
    pub display_names: Vec<DisplayName>,
    /// The service.
    pub service: Option<Uri>,
    /// How to reach the user on this MSP (none for `NoProviders`).
    pub uris: Vec<Uri>,
    /// The provider entry or the no-providers marker.
    pub body: MappingBody,
    /// The authority's signature.
    pub signature: Option<Signature>,
}

/// A mapping encoded once, to be sent in many answers that differ only
/// in its `expires` (an authority's direct answers): the bytes that follow
/// the `expires` value in `<mapping expires="…" …>…</mapping>`.
/// [`FindServiceResponse::encode_with_into`] writes answers from it, byte
/// for byte what [`Response::encode`] writes for the same mappings.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MappingTail(Box<str>);

impl MappingTail {
    /// The encoded bytes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Mapping {
    /// Encodes everything after the `expires` value (see [`MappingTail`]).
    pub fn encode_tail(&self) -> MappingTail {
        let mut w = Writer { out: String::with_capacity(512) };
        self.write_tail(&mut w);
        MappingTail(w.out.into_boxed_str())
    }

    fn write(&self, w: &mut Writer) {
        w.out.push_str("<mapping expires=\"");
        self.expires.write(&mut w.out);
        self.write_tail(w);
    }

    /// The closing quote of `expires`, then the rest of the element.
    fn write_tail(&self, w: &mut Writer) {
        w.out.push('"');
        w.attr_time("lastUpdated", self.last_updated)
            .attr("source", self.source.as_str())
            .attr("sourceId", &self.source_id)
            .gt();
        for d in &self.display_names {
            w.open("displayName").attr("xml:lang", &d.lang).gt().text(&d.text).close("displayName");
        }
        if let Some(s) = &self.service {
            w.leaf("service", s.as_str());
        }
        for u in &self.uris {
            w.leaf("uri", u.as_str());
        }
        match &self.body {
            MappingBody::Provider(p) => {
                w.open("sp:provider").attr("id", p.id.as_str()).attr_num("priority", u64::from(p.priority));
                if !p.tags.is_empty() {
                    w.attr_list("tags", p.tags.iter().map(Tag::as_str));
                }
                w.attr("assurance", p.assurance.as_str()).attr_num("epoch", p.epoch.0).empty();
            }
            MappingBody::NoProviders { reason, epoch } => {
                w.open("sp:noProviders").attr("reason", reason.as_str()).attr_num("epoch", epoch.0).empty();
            }
        }
        if let Some(s) = &self.signature {
            s.write(w);
        }
        w.close("mapping");
    }

    fn decode(e: &Element<'_>) -> Result<Mapping, DecodeError> {
        e.only_attrs(&["expires", "lastUpdated", "source", "sourceId", "message"], true)?;
        e.no_text()?;
        let expires = Expires::parse(e.req("expires")?).map_err(|x| bad_value(format!("mapping expires: {x}")))?;
        let mut m = Mapping {
            expires,
            last_updated: time_attr(e, "lastUpdated")?,
            source: name_attr(e, "source")?,
            source_id: token(e, "sourceId")?,
            display_names: Vec::new(),
            service: None,
            uris: Vec::new(),
            body: MappingBody::NoProviders { reason: NoProvidersReason::OptedOut, epoch: Epoch(0) },
            signature: None,
        };
        let mut body = None;
        // Order: displayName*, service?, (serviceBoundary…)?, uri*, serviceNumber?, ext*.
        let mut stage = 0u8;
        for c in &e.children {
            stage = match (c.ns, c.name) {
                (Ns::Lost, "displayName") if stage == 0 => {
                    c.only_attrs(&[], true)?;
                    c.no_children()?;
                    let lang = c.lang().ok_or_else(|| schema("<displayName> needs xml:lang"))?;
                    check_lang(lang)?;
                    m.display_names.push(DisplayName { text: c.text.to_string(), lang: lang.to_owned() });
                    0
                }
                (Ns::Lost, "service") if stage == 0 => {
                    m.service = Some(service_text(c)?);
                    1
                }
                (Ns::Lost, "serviceBoundary" | "serviceBoundaryReference") if stage <= 1 => 2,
                (Ns::Lost, "uri") if stage <= 3 => {
                    c.only_attrs(&[], false)?;
                    c.no_children()?;
                    m.uris.push(Uri::parse(&c.text)?);
                    3
                }
                (Ns::Lost, "serviceNumber") if stage <= 3 => 4,
                (Ns::Sp, "provider") => {
                    if body.is_some() {
                        return Err(schema("a <mapping> holds one <sp:provider> or one <sp:noProviders>"));
                    }
                    c.only_attrs(&["id", "priority", "tags", "assurance", "epoch"], false)?;
                    c.no_children()?;
                    body = Some(MappingBody::Provider(ProviderEntry {
                        id: name_attr(c, "id")?,
                        priority: num_attr(c, "priority")?,
                        tags: Tag::list(c.attr("tags").unwrap_or(""))?,
                        assurance: Assurance::parse(c.req("assurance")?)?,
                        epoch: Epoch(num_attr(c, "epoch")?),
                    }));
                    5
                }
                (Ns::Sp, "noProviders") => {
                    if body.is_some() {
                        return Err(schema("a <mapping> holds one <sp:provider> or one <sp:noProviders>"));
                    }
                    c.only_attrs(&["reason", "epoch"], false)?;
                    c.no_children()?;
                    body = Some(MappingBody::NoProviders {
                        reason: NoProvidersReason::parse(c.req("reason")?)?,
                        epoch: Epoch(num_attr(c, "epoch")?),
                    });
                    5
                }
                (Ns::Sp, "signature") => {
                    if m.signature.is_some() {
                        return Err(schema("a <mapping> holds at most one <sp:signature>"));
                    }
                    m.signature = Some(Signature::decode(c)?);
                    5
                }
                (Ns::Sp | Ns::Other | Ns::None, _) => {
                    let _ = is_skippable_ext(c)?;
                    5
                }
                _ => return Err(unexpected(e, c)),
            };
        }
        m.body = body.ok_or_else(|| schema("a <mapping> needs <sp:provider> or <sp:noProviders>"))?;
        if matches!(m.body, MappingBody::NoProviders { .. }) && !m.uris.is_empty() {
            return Err(schema("a <mapping> with <sp:noProviders> may not carry a <uri>"));
        }
        Ok(m)
    }
}

/// `<findServiceResponse>` (RFC 5222 §8.4).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FindServiceResponse {
    /// One or more mappings.
    pub mappings: Vec<Mapping>,
    /// Warnings (e.g. the stale-answer warning).
    pub warnings: Vec<Warnings>,
    /// Every server that handled the request.
    pub path: Path,
    /// The id of the location used.
    pub location_used: Option<String>,
    /// The answering authority's change-feed position when the answer was
    /// read (`<sp:feedPosition>`): every change after it is delivered on the
    /// feed, so a resolver subscribes from here. Authorities set it;
    /// resolvers do not pass it on to their clients.
    pub feed_position: Option<u64>,
}

/// The parts of a `<findServiceResponse>` after its mappings.
struct ResponseRest<'a> {
    warnings: &'a [Warnings],
    path: &'a Path,
    location_used: Option<&'a str>,
    feed_position: Option<u64>,
}

impl FindServiceResponse {
    fn write(&self, w: &mut Writer) {
        let rest = ResponseRest { warnings: &self.warnings, path: &self.path, location_used: self.location_used.as_deref(), feed_position: self.feed_position };
        Self::write_parts(w, |w| self.mappings.iter().for_each(|m| m.write(w)), &rest);
    }

    fn write_parts(w: &mut Writer, mappings: impl FnOnce(&mut Writer), rest: &ResponseRest<'_>) {
        w.open("findServiceResponse").attr("xmlns", xml::LOST_NS).attr("xmlns:sp", xml::SP_NS).gt();
        mappings(w);
        for x in rest.warnings {
            x.write(w);
        }
        rest.path.write(w);
        if let Some(n) = rest.feed_position {
            write_feed_position(w, n);
        }
        if let Some(l) = rest.location_used {
            w.open("locationUsed").attr("id", l).empty();
        }
        w.close("findServiceResponse");
    }

    /// Encodes, as a complete document into `out` (cleared first), the
    /// response with these mappings (each its `expires` and its
    /// [`MappingTail`]), no warnings, and the other parts given: the same
    /// bytes as [`Response::encode`] of that response.
    pub fn encode_with_into<'m>(out: &mut String, mappings: impl IntoIterator<Item = (Expires, &'m MappingTail)>, path: &Path, location_used: Option<&str>, feed_position: Option<u64>) {
        out.clear();
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let mut w = Writer { out: std::mem::take(out) };
        let rest = ResponseRest { warnings: &[], path, location_used, feed_position };
        Self::write_parts(
            &mut w,
            |w| {
                for (expires, tail) in mappings {
                    w.out.push_str("<mapping expires=\"");
                    expires.write(&mut w.out);
                    w.out.push_str(&tail.0);
                }
            },
            &rest,
        );
        *out = w.finish();
    }
    fn decode(e: &Element<'_>) -> Result<FindServiceResponse, DecodeError> {
        e.only_attrs(&[], false)?;
        e.no_text()?;
        let mut r = FindServiceResponse { mappings: Vec::new(), warnings: Vec::new(), path: Path(Vec::new()), location_used: None, feed_position: None };
        // Order: mapping+, locationValidation?, warnings*, path, ext*, locationUsed?
        let mut stage = 0u8;
        for c in &e.children {
            stage = match (c.ns, c.name) {
                (Ns::Lost, "mapping") if stage <= 1 => {
                    r.mappings.push(Mapping::decode(c)?);
                    1
                }
                (Ns::Lost, "path" | "warnings") if stage == 0 => {
                    return Err(schema("<findServiceResponse> needs at least one <mapping> first"));
                }
                (Ns::Lost, "locationValidation") if stage == 1 => 2,
                (Ns::Lost, "warnings") if (1..=3).contains(&stage) => {
                    r.warnings.push(Warnings::decode(c)?);
                    3
                }
                (Ns::Lost, "path") if (1..=3).contains(&stage) => {
                    r.path = Path::decode(c)?;
                    4
                }
                (Ns::Sp, "feedPosition") if stage == 4 => {
                    set_feed_position(&mut r.feed_position, c)?;
                    4
                }
                (Ns::Sp | Ns::Other | Ns::None, _) if stage == 4 => {
                    let _ = is_skippable_ext(c)?;
                    4
                }
                (Ns::Lost, "locationUsed") if stage == 4 => {
                    c.only_attrs(&["id"], false)?;
                    c.no_children()?;
                    r.location_used = Some(token(c, "id")?);
                    5
                }
                _ => return Err(unexpected(e, c)),
            };
        }
        if r.mappings.is_empty() {
            return Err(schema("<findServiceResponse> needs at least one <mapping>"));
        }
        if stage < 4 {
            return Err(schema("<findServiceResponse> needs a <path>"));
        }
        Ok(r)
    }
}

// ---------------------------------------------------------------------------
// errors and warnings

/// One error or warning element.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Issue {
    /// Which one.
    pub kind: ErrorKind,
    /// The human-readable message.
    pub message: Option<Message>,
    /// For `forbidden` by rate limit: when to try again (`<sp:retryAfter>`).
    pub retry_after: Option<u32>,
    /// For `locationProfileUnrecognized`: the profiles not understood
    /// (the schema requires at least one; an empty list is written as
    /// `unspecified`).
    pub unsupported_profiles: Vec<String>,
}

impl Issue {
    /// An issue with an English message.
    pub fn new(kind: ErrorKind, message: impl AsRef<str>) -> Issue {
        Issue { kind, message: Some(Message::en(message)), retry_after: None, unsupported_profiles: Vec::new() }
    }
    fn write(&self, w: &mut Writer) {
        self.write_with(w, |_| {});
    }
    /// Writes the element with `more` extension children after Signpost's own.
    fn write_with(&self, w: &mut Writer, more: impl Fn(&mut Writer)) {
        let name = self.kind.element();
        w.open(name);
        if self.kind == ErrorKind::LocationProfileUnrecognized {
            if self.unsupported_profiles.is_empty() {
                w.attr("unsupportedProfiles", "unspecified");
            } else {
                w.attr_list("unsupportedProfiles", self.unsupported_profiles.iter().map(String::as_str));
            }
        }
        w.message(self.message.as_ref());
        let start = w.out.len();
        w.gt();
        let open = w.out.len();
        if let Some(s) = self.retry_after {
            w.open("sp:retryAfter").attr_num("seconds", u64::from(s)).empty();
        }
        more(w);
        if w.out.len() == open {
            w.out.truncate(start);
            w.empty();
        } else {
            w.close(name);
        }
    }
    fn decode(kind: ErrorKind, c: &Element<'_>) -> Result<Issue, DecodeError> {
        if kind == ErrorKind::LocationProfileUnrecognized {
            c.only_attrs(&["message", "unsupportedProfiles"], true)?;
        } else {
            c.only_attrs(&["message"], true)?;
        }
        c.no_text()?;
        let mut retry_after = None;
        for x in &c.children {
            if x.is(Ns::Sp, "retryAfter") {
                x.only_attrs(&["seconds"], false)?;
                retry_after = Some(num_attr(x, "seconds")?);
            } else if x.is(Ns::Sp, "negativeLifetime") || x.is(Ns::Sp, "feedPosition") {
                // Read by Errors::decode (notFound qualifiers).
            } else if !is_skippable_ext(x)? && x.ns != Ns::Sp {
                return Err(unexpected(c, x));
            }
        }
        let unsupported_profiles = if kind == ErrorKind::LocationProfileUnrecognized {
            let v: Vec<String> = c.req("unsupportedProfiles")?.split_whitespace().map(str::to_owned).collect();
            if v.is_empty() {
                return Err(schema("unsupportedProfiles needs at least one profile"));
            }
            v
        } else {
            Vec::new()
        };
        Ok(Issue { kind, message: Message::decode(c)?, retry_after, unsupported_profiles })
    }
}

/// The shared body of `<errors>` and `<warnings>`: a source and at most one
/// issue of each kind (the schema's rule, kept by construction).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IssueList {
    issues: Vec<Issue>,
}

impl IssueList {
    /// An empty list.
    pub fn new() -> IssueList {
        IssueList { issues: Vec::new() }
    }
    /// Adds an issue, replacing one of the same kind.
    pub fn set(&mut self, i: Issue) {
        match self.issues.iter_mut().find(|x| x.kind == i.kind) {
            Some(slot) => *slot = i,
            None => self.issues.push(i),
        }
    }
    /// The issues, in insertion order.
    pub fn issues(&self) -> &[Issue] {
        &self.issues
    }
    /// The issue of a kind.
    pub fn get(&self, k: ErrorKind) -> Option<&Issue> {
        self.issues.iter().find(|x| x.kind == k)
    }
}

impl Default for IssueList {
    fn default() -> Self {
        IssueList::new()
    }
}

/// `<errors>` (RFC 5222 §13.1).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Errors {
    /// The server that produced the errors.
    pub source: Name,
    /// The errors.
    pub list: IssueList,
    /// How long a `notFound` may be cached, in seconds
    /// (`<sp:negativeLifetime>`, written inside the `<notFound>` element).
    pub negative_lifetime: Option<u32>,
    /// For a `notFound` from an authority: its change-feed position when
    /// the answer was read (`<sp:feedPosition>`, inside `<notFound>`).
    pub feed_position: Option<u64>,
}

impl Errors {
    /// One error.
    pub fn one(source: Name, issue: Issue) -> Errors {
        let mut list = IssueList::new();
        list.set(issue);
        Errors { source, list, negative_lifetime: None, feed_position: None }
    }
    /// The first (main) error kind, if any.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.list.issues().first().map(|i| i.kind)
    }
    fn write(&self, w: &mut Writer) {
        w.open("errors").attr("xmlns", xml::LOST_NS).attr("xmlns:sp", xml::SP_NS).attr("source", self.source.as_str()).gt();
        // Every direct child of <errors> is a LoST error element (deployed
        // clients such as Kamailio read each child as an error): the
        // notFound qualifiers sit inside <notFound>.
        for i in self.list.issues() {
            if i.kind == ErrorKind::NotFound && (self.negative_lifetime.is_some() || self.feed_position.is_some()) {
                i.write_with(w, |w| {
                    if let Some(n) = self.negative_lifetime {
                        w.open("sp:negativeLifetime").attr_num("seconds", u64::from(n)).empty();
                    }
                    if let Some(n) = self.feed_position {
                        write_feed_position(w, n);
                    }
                });
            } else {
                i.write(w);
            }
        }
        w.close("errors");
    }
    fn decode(e: &Element<'_>) -> Result<Errors, DecodeError> {
        let (source, list, ext) = decode_container(e)?;
        let mut negative_lifetime = None;
        let mut feed_position = None;
        // Inside <notFound> (written so), or beside it (as Signpost wrote
        // it before; still read).
        let inner = e.children.iter().filter(|c| c.is(Ns::Lost, "notFound")).flat_map(|c| c.children.iter());
        for x in inner.chain(ext) {
            if x.is(Ns::Sp, "negativeLifetime") {
                x.only_attrs(&["seconds"], false)?;
                negative_lifetime = Some(num_attr(x, "seconds")?);
            } else if x.is(Ns::Sp, "feedPosition") {
                set_feed_position(&mut feed_position, x)?;
            }
        }
        Ok(Errors { source, list, negative_lifetime, feed_position })
    }
}

/// `<warnings>` (RFC 5222 §13.2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Warnings {
    /// The server that produced the warnings.
    pub source: Name,
    /// LoST warning elements.
    pub list: IssueList,
    /// Signpost's serve-stale warning (RFC 8767 semantics).
    pub stale: Option<StaleAnswer>,
}

/// `<sp:staleAnswer>`: the answer comes from a cache entry past its
/// lifetime because the authority could not be reached.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StaleAnswer {
    /// The authority that could not be reached.
    pub authority: Name,
    /// When the served entry expired.
    pub expired_at: Timestamp,
}

impl Warnings {
    fn write(&self, w: &mut Writer) {
        w.open("warnings").attr("source", self.source.as_str()).gt();
        for i in self.list.issues() {
            i.write(w);
        }
        if let Some(s) = &self.stale {
            w.open("sp:staleAnswer").attr("authority", s.authority.as_str()).attr_time("expiredAt", s.expired_at).empty();
        }
        w.close("warnings");
    }
    fn decode(e: &Element<'_>) -> Result<Warnings, DecodeError> {
        let (source, list, ext) = decode_container(e)?;
        let mut stale = None;
        for x in ext {
            if x.is(Ns::Sp, "staleAnswer") {
                x.only_attrs(&["authority", "expiredAt"], false)?;
                stale = Some(StaleAnswer { authority: name_attr(x, "authority")?, expired_at: time_attr(x, "expiredAt")? });
            }
        }
        Ok(Warnings { source, list, stale })
    }
}

/// Decodes the exceptionContainer: `source`, LoST kinds (each once), then
/// extensions (returned for the caller to read).
fn decode_container<'e, 'a>(e: &'e Element<'a>) -> Result<(Name, IssueList, Vec<&'e Element<'a>>), DecodeError> {
    e.only_attrs(&["source"], false)?;
    e.no_text()?;
    let source = name_attr(e, "source")?;
    let mut list = IssueList::new();
    let mut ext = Vec::new();
    for c in &e.children {
        match c.ns {
            Ns::Lost => {
                if !ext.is_empty() {
                    return Err(schema(format!("{}: LoST elements come before extension elements", e.label())));
                }
                let kind = ErrorKind::from_element(c.name)
                    .ok_or_else(|| schema(format!("{} is not a LoST error or warning", c.label())))?;
                if list.get(kind).is_some() {
                    return Err(schema(format!("{} appears twice in {}", c.label(), e.label())));
                }
                list.set(Issue::decode(kind, c)?);
            }
            Ns::Sp => ext.push(c),
            Ns::Other | Ns::None => {
                let _ = is_skippable_ext(c)?;
                ext.push(c);
            }
        }
    }
    Ok((source, list, ext))
}

// ---------------------------------------------------------------------------
// redirect and delegations

/// What a delegation covers: an E.164 prefix, or an email domain.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Cover {
    /// Every number starting with the prefix.
    Prefix(E164Prefix),
    /// An email domain, and its subdomains if `include_subdomains`.
    Domain {
        /// The domain.
        domain: Domain,
        /// Whether subdomains are covered too.
        include_subdomains: bool,
    },
}

impl Cover {
    /// Whether the CSI falls under this cover.
    pub fn covers(&self, csi: &Csi) -> bool {
        match (self, csi) {
            (Cover::Prefix(p), Csi::E164(n)) => p.covers(n),
            (Cover::Domain { domain, include_subdomains }, Csi::Email(_) | Csi::Mui(_)) => {
                let d = csi.routing_domain().map_or("", Domain::as_str);
                d == domain.as_str()
                    || (*include_subdomains
                        && d.len() > domain.as_str().len()
                        && d.ends_with(domain.as_str())
                        && d.as_bytes().get(d.len() - domain.as_str().len() - 1) == Some(&b'.'))
            }
            _ => false,
        }
    }
    pub(crate) fn write_attrs(&self, w: &mut Writer) {
        match self {
            Cover::Prefix(p) => {
                w.attr("prefix", p.as_str());
            }
            Cover::Domain { domain, include_subdomains } => {
                w.attr("domain", domain.as_str());
                if *include_subdomains {
                    w.attr("includeSubdomains", "true");
                }
            }
        }
    }
    pub(crate) fn decode_attrs(e: &Element<'_>) -> Result<Cover, DecodeError> {
        match (e.attr("prefix"), e.attr("domain")) {
            (Some(p), None) => {
                if e.attr("includeSubdomains").is_some() {
                    return Err(schema(format!("{}: includeSubdomains goes with domain, not prefix", e.label())));
                }
                E164Prefix::parse(p.trim()).map(Cover::Prefix).map_err(|x| bad_value(x.to_string()))
            }
            (None, Some(d)) => {
                let domain = Domain::parse(d.trim()).map_err(|x| bad_value(x.to_string()))?;
                if domain.as_str() != d.trim() {
                    return Err(bad_value(format!("domain {d:?} is not in lowercase A-label form ({domain})")));
                }
                Ok(Cover::Domain { domain, include_subdomains: bool_attr(e, "includeSubdomains", false)? })
            }
            _ => Err(schema(format!("{} needs exactly one of prefix or domain", e.label()))),
        }
    }
}

impl std::fmt::Display for Cover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cover::Prefix(p) => write!(f, "{p}"),
            Cover::Domain { domain, include_subdomains: true } => write!(f, "*.{domain}"),
            Cover::Domain { domain, include_subdomains: false } => write!(f, "{domain}"),
        }
    }
}

/// An authority a delegation points to, with its endpoints ("glue": there
/// is no DNS on these paths).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthorityRef {
    /// The authority's id.
    pub id: Name,
    /// Where it listens (at least one).
    pub endpoints: Vec<Endpoint>,
}

/// A delegation: a prefix or domain, the authorities that serve it, and
/// how long a resolver may keep the referral.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delegation {
    /// What is delegated.
    pub cover: Cover,
    /// Referral lifetime in seconds.
    pub lifetime: u32,
    /// One or more authorities.
    pub authorities: Vec<AuthorityRef>,
}

impl Delegation {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.open("sp:delegation");
        self.cover.write_attrs(w);
        w.attr_num("lifetime", u64::from(self.lifetime)).gt();
        for a in &self.authorities {
            w.open("sp:authority").attr("id", a.id.as_str()).gt();
            for ep in &a.endpoints {
                w.open("sp:endpoint").attr("url", ep.as_str()).empty();
            }
            w.close("sp:authority");
        }
        w.close("sp:delegation");
    }
    pub(crate) fn decode(e: &Element<'_>) -> Result<Delegation, DecodeError> {
        e.only_attrs(&["prefix", "domain", "includeSubdomains", "lifetime"], false)?;
        e.no_text()?;
        let cover = Cover::decode_attrs(e)?;
        let lifetime = num_attr(e, "lifetime")?;
        let mut authorities = Vec::with_capacity(e.children.len());
        for a in &e.children {
            if !a.is(Ns::Sp, "authority") {
                return Err(unexpected(e, a));
            }
            a.only_attrs(&["id"], false)?;
            a.no_text()?;
            let mut endpoints = Vec::with_capacity(a.children.len());
            for ep in &a.children {
                if !ep.is(Ns::Sp, "endpoint") {
                    return Err(unexpected(a, ep));
                }
                ep.only_attrs(&["url"], false)?;
                ep.no_children()?;
                endpoints.push(Endpoint::parse(ep.req("url")?)?);
            }
            if endpoints.is_empty() {
                return Err(schema("<sp:authority> needs at least one <sp:endpoint>"));
            }
            authorities.push(AuthorityRef { id: name_attr(a, "id")?, endpoints });
        }
        if authorities.is_empty() {
            return Err(schema("<sp:delegation> needs at least one <sp:authority>"));
        }
        Ok(Delegation { cover, lifetime, authorities })
    }
}

/// `<redirect>` (RFC 5222 §13.3) with the delegation as glue.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Redirect {
    /// The server to ask instead (one of the delegation's authorities).
    pub target: Name,
    /// The server that redirects.
    pub source: Name,
    /// Why.
    pub message: Option<Message>,
    /// The covering prefix or domain, lifetime and endpoints.
    pub delegation: Delegation,
    /// An authority's change-feed position when it read the delegation
    /// (`<sp:feedPosition>`): a sub-delegation that changes later is
    /// announced on its feed. The root has no feed and sends none.
    pub feed_position: Option<u64>,
}

impl Redirect {
    fn write(&self, w: &mut Writer) {
        w.open("redirect")
            .attr("xmlns", xml::LOST_NS)
            .attr("xmlns:sp", xml::SP_NS)
            .attr("target", self.target.as_str())
            .attr("source", self.source.as_str())
            .message(self.message.as_ref())
            .gt();
        self.delegation.write(w);
        if let Some(n) = self.feed_position {
            write_feed_position(w, n);
        }
        w.close("redirect");
    }
    fn decode(e: &Element<'_>) -> Result<Redirect, DecodeError> {
        e.only_attrs(&["target", "source", "message"], true)?;
        e.no_text()?;
        let mut delegation = None;
        let mut feed_position = None;
        for c in &e.children {
            if c.is(Ns::Sp, "delegation") {
                if delegation.is_some() {
                    return Err(schema("<redirect> holds one <sp:delegation>"));
                }
                delegation = Some(Delegation::decode(c)?);
            } else if c.is(Ns::Sp, "feedPosition") {
                set_feed_position(&mut feed_position, c)?;
            } else if !is_skippable_ext(c)? && c.ns != Ns::Sp {
                return Err(unexpected(e, c));
            }
        }
        let delegation = delegation.ok_or_else(|| schema("<redirect> lacks its <sp:delegation> glue"))?;
        let target = name_attr(e, "target")?;
        if !delegation.authorities.iter().any(|a| a.id == target) {
            return Err(schema(format!("redirect target {target} is not among the delegation's authorities")));
        }
        Ok(Redirect { target, source: name_attr(e, "source")?, message: Message::decode(e)?, delegation, feed_position })
    }
}

/// `<sp:feedPosition seq="N"/>`.
fn write_feed_position(w: &mut Writer, seq: u64) {
    w.open("sp:feedPosition").attr_num("seq", seq).empty();
}

fn set_feed_position(slot: &mut Option<u64>, c: &Element<'_>) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(schema("at most one <sp:feedPosition> per answer"));
    }
    c.only_attrs(&["seq"], false)?;
    c.no_children()?;
    *slot = Some(num_attr(c, "seq")?);
    Ok(())
}

// ---------------------------------------------------------------------------
// Top level

/// A LoST request Signpost serves.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    /// `<findService>`
    FindService(FindService),
    /// `<listServices>`
    ListServices(ListServices),
}

/// A LoST response.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    /// `<findServiceResponse>`
    Found(FindServiceResponse),
    /// `<redirect>`
    Redirect(Redirect),
    /// `<errors>`
    Errors(Errors),
    /// `<listServicesResponse>`
    Services(ListServicesResponse),
}

/// Runs `f` on the root of `bytes` (UTF-8 or UTF-16 with BOM).
pub(crate) fn with_root<T>(
    bytes: &[u8],
    limits: &Limits,
    f: impl FnOnce(&Element<'_>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::new(
            Problem::TooLarge,
            format!("document has {} bytes; the limit is {}", bytes.len(), limits.max_bytes),
        ));
    }
    let utf16 = matches!(bytes, [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..]);
    let text = xml::to_text(bytes)?;
    let root = xml::parse(&text, utf16, limits)?;
    f(&root)
}

fn wrong_ns(e: &Element<'_>, want: &str) -> DecodeError {
    DecodeError::new(
        Problem::Namespace,
        format!("root element {} is not in the namespace {want}", e.label()),
    )
}

impl Request {
    /// Decodes a request body. The findService clients send in the
    /// canonical form is read in one pass without a tree (`fast`); every
    /// other document takes the full decoder, with the same result.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Request, DecodeError> {
        if let Some(f) = crate::fast::find_service(bytes, limits) {
            return Ok(Request::FindService(f));
        }
        Request::decode_full(bytes, limits)
    }

    /// The full decoder alone (tests compare the one-pass reader with it).
    #[doc(hidden)]
    pub fn decode_full(bytes: &[u8], limits: &Limits) -> Result<Request, DecodeError> {
        with_root(bytes, limits, |e| {
            if e.ns != Ns::Lost {
                return Err(wrong_ns(e, xml::LOST_NS));
            }
            match e.name {
                "findService" => FindService::decode(e).map(Request::FindService),
                "listServices" => ListServices::decode(e).map(Request::ListServices),
                "listServicesByLocation" | "getServiceBoundary" => Err(DecodeError::new(
                    Problem::UnknownRoot,
                    format!("<{}> is a LoST request Signpost does not serve (findService and listServices only)", e.name),
                )),
                other => Err(DecodeError::new(Problem::UnknownRoot, format!("<{other}> is not a LoST request"))),
            }
        })
    }
    /// Encodes as a complete document.
    pub fn encode(&self) -> String {
        let mut w = Writer::document(512);
        match self {
            Request::FindService(f) => f.write(&mut w),
            Request::ListServices(l) => l.write(&mut w),
        }
        w.finish()
    }
}

impl Response {
    /// Decodes a response body.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Response, DecodeError> {
        with_root(bytes, limits, |e| {
            if e.ns != Ns::Lost {
                return Err(wrong_ns(e, xml::LOST_NS));
            }
            match e.name {
                "findServiceResponse" => FindServiceResponse::decode(e).map(Response::Found),
                "redirect" => Redirect::decode(e).map(Response::Redirect),
                "errors" => Errors::decode(e).map(Response::Errors),
                "listServicesResponse" => ListServicesResponse::decode(e).map(Response::Services),
                other => Err(DecodeError::new(Problem::UnknownRoot, format!("<{other}> is not a LoST response"))),
            }
        })
    }
    /// Encodes as a complete document.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }
    /// Encodes into a reusable buffer (cleared first).
    pub fn encode_into(&self, out: &mut String) {
        out.clear();
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let mut w = Writer { out: std::mem::take(out) };
        match self {
            Response::Found(r) => r.write(&mut w),
            Response::Redirect(r) => r.write(&mut w),
            Response::Errors(r) => r.write(&mut w),
            Response::Services(r) => r.write(&mut w),
        }
        *out = w.finish();
    }
}
