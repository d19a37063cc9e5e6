//! Cross-service identifiers (CSIs): E.164 numbers, email addresses, and
//! MIMI user identifiers (MUIs: FQDN-shaped names such as
//! `mymimi.example.com`, draft-bertola-mimi-discovery-dns).
//!
//! A [`Csi`] can only be built by parsing, and parsing canonicalizes, so a
//! value of this type always holds a valid identifier in its canonical URI
//! form (`tel:+4915112345678`, `mailto:alice@example.com`). That URI is the
//! key everywhere in Signpost: stores, caches, signatures, feed events.
//!
//! Two ways in:
//! - [`Csi::from_wire`] takes the canonical form only (what peers send). It
//!   is the hot path of every server: no regexes, no allocation beyond the
//!   result.
//! - [`Csi::parse`] takes what a person types (`+49 151 1234-5678`,
//!   `0151 12345678` with a default region, `Alice@Bücher.example`) and
//!   canonicalizes it with the `phonenumber` and `idna` crates.
//!
//! Both check an E.164 number the same way in the end ([`E164::from_digits`]):
//! an assigned country calling code and a national number length that the
//! numbering plan of that code allows.

use std::fmt;
use std::sync::OnceLock;

/// Why a string is not a CSI. The message names the problem; it is sent back
/// to clients inside a LoST `<badRequest>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CsiError(String);

impl CsiError {
    fn new(msg: impl Into<String>) -> Self {
        CsiError(msg.into())
    }
    /// The human-readable reason.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// A cross-service identifier in canonical form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Csi {
    /// `tel:+<digits>`
    E164(E164),
    /// `mailto:<local>@<domain>`
    Email(Email),
    /// `mui:<a-label fqdn>`
    Mui(Mui),
}

impl Csi {
    /// Parses the canonical URI form exactly as peers send it: `tel:+<digits>`
    /// or `mailto:<local>@<a-label domain>`. Anything else is an error, so a
    /// peer cannot make two keys for one identifier.
    pub fn from_wire(s: &str) -> Result<Csi, CsiError> {
        if let Some(rest) = s.strip_prefix("tel:") {
            let digits = rest.strip_prefix('+').ok_or_else(|| {
                CsiError::new("a tel: CSI must be global: tel:+<country code><number>")
            })?;
            return E164::from_digits(digits).map(Csi::E164);
        }
        let parsed = if s.starts_with("mailto:") {
            Csi::Email(Email::parse(s)?)
        } else if let Some(rest) = s.strip_prefix("mui:") {
            Csi::Mui(Mui::parse(rest)?)
        } else {
            return Err(CsiError::new(
                "a CSI on the wire must be a tel:+…, mailto:… or mui:… URI",
            ));
        };
        if parsed.uri() != s {
            return Err(CsiError::new(format!(
                "CSI is not in canonical form; expected {}",
                parsed.uri()
            )));
        }
        Ok(parsed)
    }

    /// Parses what a person or an import file gives: E.164 in any common
    /// notation (`+49 151 1234-5678`, `tel:+49-151-12345678`, `(0151)
    /// 12345678` with `default_region` DE), or an email address with or
    /// without `mailto:`, or a MUI with or without `mui:` (a name with
    /// letters and dots and no `@`: `mymimi.example.com`).
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Csi, CsiError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(CsiError::new("empty identifier"));
        }
        if s.starts_with("mailto:") || s.contains('@') {
            return Email::parse(s).map(Csi::Email);
        }
        if let Some(rest) = s.strip_prefix("mui:") {
            return Mui::parse(rest).map(Csi::Mui);
        }
        // Phone numbers are digits and punctuation; a name with a letter
        // (or a non-ASCII character) and a dot is a MUI.
        if !s.starts_with("tel:")
            && s.contains('.')
            && s.chars().any(|c| c.is_alphabetic())
        {
            return Mui::parse(s).map(Csi::Mui);
        }
        E164::parse(s, default_region).map(Csi::E164)
    }

    /// The canonical URI, the key everywhere.
    pub fn uri(&self) -> &str {
        match self {
            Csi::E164(e) => e.uri(),
            Csi::Email(e) => e.uri(),
            Csi::Mui(m) => m.uri(),
        }
    }

    /// `e164`, `email` or `mui`: a fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Csi::E164(_) => "e164",
            Csi::Email(_) => "email",
            Csi::Mui(_) => "mui",
        }
    }

    /// The domain an email address or a MUI is routed by (the email's
    /// domain; the MUI's parent, `example.com` for `mymimi.example.com`);
    /// `None` for a number.
    pub fn routing_domain(&self) -> Option<&Domain> {
        match self {
            Csi::E164(_) => None,
            Csi::Email(e) => Some(e.domain()),
            Csi::Mui(m) => Some(m.domain()),
        }
    }
}

impl fmt::Display for Csi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.uri())
    }
}

impl fmt::Debug for Csi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Csi({})", self.uri())
    }
}

// ---------------------------------------------------------------------------
// E.164

/// A default region for national-format input (ISO 3166 alpha-2, e.g. `DE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region(phonenumber::country::Id);

impl std::str::FromStr for Region {
    type Err = CsiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .map(Region)
            .map_err(|_| CsiError::new(format!("unknown region {s:?} (want ISO 3166 alpha-2, e.g. DE)")))
    }
}

/// An E.164 number, stored as its canonical URI `tel:+<digits>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164 {
    uri: Box<str>,
}

/// Per country calling code: the national number lengths its plan allows
/// (bit n set = n digits allowed). Built once from the phonenumber metadata.
struct PlanTable {
    lengths: Vec<u32>, // index: country code 0..1000
}

fn plans() -> &'static PlanTable {
    static PLANS: OnceLock<PlanTable> = OnceLock::new();
    PLANS.get_or_init(|| {
        let mut lengths = vec![0u32; 1000];
        for meta in phonenumber::metadata::DATABASE.iter() {
            let code = usize::from(meta.country_code());
            let d = meta.descriptors();
            let mut mask = 0u32;
            let kinds = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
                d.voicemail(),
            ];
            for desc in kinds.into_iter().flatten() {
                for &n in desc.possible_length() {
                    if n < 32 {
                        mask |= 1 << n;
                    }
                }
            }
            if let Some(slot) = lengths.get_mut(code) {
                *slot |= mask;
            }
        }
        PlanTable { lengths }
    })
}

/// Loads the numbering-plan metadata now rather than on the first request
/// (about 80 ms in release builds, 0.6 s in debug builds).
pub fn warm_up() {
    let _ = plans();
}

impl E164 {
    /// Checks a bare digit string (country code + national number, no `+`).
    /// Rules (E.164 §6 and the numbering plans in libphonenumber's metadata):
    /// 1–15 digits, a country calling code that is assigned, and a national
    /// number length that the plan of that code allows.
    pub fn from_digits(digits: &str) -> Result<E164, CsiError> {
        if digits.is_empty() {
            return Err(CsiError::new("E.164 number has no digits"));
        }
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(CsiError::new(format!(
                "E.164 number contains {c:?}; only digits may follow the +"
            )));
        }
        if digits.len() > 15 {
            return Err(CsiError::new(format!(
                "E.164 number has {} digits; at most 15 are allowed",
                digits.len()
            )));
        }
        if digits.starts_with('0') {
            return Err(CsiError::new("no country calling code starts with 0"));
        }
        let table = plans();
        let mut found = None;
        for cc_len in 1..=3usize.min(digits.len()) {
            let code: usize = digits.get(..cc_len).and_then(|c| c.parse().ok()).unwrap_or(0);
            if table.lengths.get(code).copied().unwrap_or(0) != 0 {
                found = Some((cc_len, code));
                break;
            }
        }
        let Some((cc_len, code)) = found else {
            return Err(CsiError::new(format!(
                "+{} does not start with an assigned country calling code",
                digits
            )));
        };
        let national = digits.len() - cc_len;
        let mask = table.lengths.get(code).copied().unwrap_or(0);
        if mask & (1u32 << national) == 0 {
            let allowed: Vec<String> = (0..32).filter(|n| mask & (1 << n) != 0).map(|n: u32| n.to_string()).collect();
            return Err(CsiError::new(format!(
                "+{code} numbers have {} national digits, not {national}",
                allowed.join(", ")
            )));
        }
        let mut uri = String::with_capacity(5 + digits.len());
        uri.push_str("tel:+");
        uri.push_str(digits);
        Ok(E164 { uri: uri.into_boxed_str() })
    }

    /// Parses human input. Accepted: `+` and digits with spaces, dashes,
    /// dots, slashes and parentheses; `tel:` URIs (RFC 3966) with visual
    /// separators and no parameters; national numbers when a default region
    /// is given; `00` international prefix.
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<E164, CsiError> {
        let mut s = input.trim();
        if let Some(rest) = s.strip_prefix("tel:") {
            if rest.contains(';') {
                return Err(CsiError::new(
                    "tel: URI parameters (;ext=, ;phone-context=, …) are not part of a CSI",
                ));
            }
            s = rest;
        }
        if let Some(c) = s.chars().find(|c| c.is_alphabetic()) {
            return Err(CsiError::new(format!(
                "phone number contains the letter {c:?}"
            )));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '.' | '(' | ')' | '/')))
        {
            return Err(CsiError::new(format!("phone number contains {c:?}")));
        }
        let digit_count = s.chars().filter(char::is_ascii_digit).count();
        if digit_count > 17 {
            return Err(CsiError::new(format!(
                "phone number has {digit_count} digits; E.164 allows at most 15"
            )));
        }
        // "+49 (0)151 …": the "(0)" is the national trunk prefix, never part
        // of the international number.
        let without_trunk;
        let s = if s.contains("(0)") {
            without_trunk = s.replace("(0)", "");
            without_trunk.as_str()
        } else {
            s
        };
        // An international number is exactly its digits: no need to guess.
        if let Some(rest) = s.strip_prefix('+') {
            let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
            if rest.contains('+') {
                return Err(CsiError::new("phone number contains a second +"));
            }
            return E164::from_digits(&digits);
        }
        let international = s.starts_with("00");
        if !international && default_region.is_none() {
            return Err(CsiError::new(
                "phone number lacks a leading + and no default region was given",
            ));
        }
        let region = if international { None } else { default_region.map(|r| r.0) };
        // "00" is the ITU-recommended international prefix (E.164 Annex A);
        // without a region phonenumber cannot know it, so rewrite it to "+".
        let rewritten;
        let s = match s.strip_prefix("00") {
            Some(rest) => {
                rewritten = format!("+{rest}");
                rewritten.as_str()
            }
            None => s,
        };
        let n = phonenumber::parse(region, s)
            .map_err(|e| CsiError::new(format!("not a phone number: {e}")))?;
        let national = n.national();
        let mut digits = n.code().value().to_string();
        for _ in 0..national.zeros() {
            digits.push('0');
        }
        digits.push_str(&national.value().to_string());
        E164::from_digits(&digits)
    }

    /// `tel:+<digits>`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The digits after the `+`, the routing key.
    pub fn digits(&self) -> &str {
        self.uri.get(5..).unwrap_or("")
    }

    /// The country calling code (1 to 3 digits).
    pub fn country_code(&self) -> &str {
        let d = self.digits();
        let table = plans();
        for cc_len in 1..=3usize.min(d.len()) {
            let code: usize = d.get(..cc_len).and_then(|c| c.parse().ok()).unwrap_or(0);
            if table.lengths.get(code).copied().unwrap_or(0) != 0 {
                return d.get(..cc_len).unwrap_or("");
            }
        }
        ""
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.uri)
    }
}

/// A prefix of E.164 digits that a delegation covers: `+49`, `+1204`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164Prefix {
    text: Box<str>, // "+<digits>"
}

impl E164Prefix {
    /// `+` followed by 1–15 digits, not starting with 0.
    pub fn parse(s: &str) -> Result<E164Prefix, CsiError> {
        let digits = s
            .strip_prefix('+')
            .ok_or_else(|| CsiError::new(format!("prefix {s:?} must start with +")))?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CsiError::new(format!(
                "prefix {s:?} must be + followed by 1 to 15 digits"
            )));
        }
        if digits.starts_with('0') {
            return Err(CsiError::new(format!("prefix {s:?}: no country code starts with 0")));
        }
        Ok(E164Prefix { text: s.into() })
    }
    /// The digits after the `+`.
    pub fn digits(&self) -> &str {
        self.text.get(1..).unwrap_or("")
    }
    /// `+<digits>`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// Whether the number starts with this prefix.
    pub fn covers(&self, n: &E164) -> bool {
        n.digits().starts_with(self.digits())
    }
}

impl fmt::Display for E164Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
impl fmt::Debug for E164Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164Prefix({})", self.text)
    }
}

// ---------------------------------------------------------------------------
// Domains and email

/// A DNS domain in lowercase A-label form (`xn--bcher-kva.example`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(Box<str>);

impl Domain {
    /// IDNA-normalizes (UTS 46, STD3 rules) and checks LDH syntax: labels of
    /// 1–63 letters, digits and inner hyphens, 253 octets in all. One trailing
    /// dot is dropped. IP literals are refused.
    pub fn parse(input: &str) -> Result<Domain, CsiError> {
        let s = input.strip_suffix('.').unwrap_or(input);
        if s.is_empty() {
            return Err(CsiError::new("empty domain"));
        }
        if s.starts_with('[') {
            return Err(CsiError::new(format!(
                "domain {s:?} is an address literal; a CSI needs a domain name"
            )));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(CsiError::new(format!("domain {s:?} contains {c:?}")));
        }
        let ascii = idna::domain_to_ascii_strict(s)
            .map_err(|_| CsiError::new(format!("domain {s:?} is not a valid IDNA domain name")))?;
        Domain::from_ascii(&ascii).map_err(|e| CsiError::new(format!("domain {s:?}: {}", e.0)))
    }

    /// Checks an already-A-label domain without IDNA mapping (wire form).
    fn from_ascii(ascii: &str) -> Result<Domain, CsiError> {
        if ascii.len() > 253 {
            return Err(CsiError::new("longer than 253 octets"));
        }
        let mut labels = 0usize;
        let mut last_all_digits = false;
        for label in ascii.split('.') {
            labels += 1;
            if label.is_empty() || label.len() > 63 {
                return Err(CsiError::new("every label needs 1 to 63 characters"));
            }
            if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
                return Err(CsiError::new("labels may hold only a-z, 0-9 and -"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(CsiError::new("a label may not start or end with -"));
            }
            last_all_digits = label.bytes().all(|b| b.is_ascii_digit());
        }
        if labels > 1 && last_all_digits {
            return Err(CsiError::new("looks like an IP address, not a domain name"));
        }
        Ok(Domain(ascii.into()))
    }

    /// The A-label text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent domain (`a.example.com` → `example.com`); `None` for a
    /// single label.
    pub fn parent(&self) -> Option<&str> {
        self.0.split_once('.').map(|(_, p)| p)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

/// An email address: the local part kept byte-exact, the domain in A-labels.
///
/// Canonical URI (RFC 6068 style): `mailto:` + local part + `@` + domain,
/// where every byte of the local part outside `A-Z a-z 0-9 - . _ ~ ! $ ' ( )
/// * + , ; :` is percent-encoded (uppercase hex). So `"john doe"@x.example`
/// becomes `mailto:%22john%20doe%22@x.example`, and one address has one key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email {
    uri: Box<str>,
    at: usize, // index of the '@' that separates local part and domain in `uri`
    domain: Domain,
}

const LOCAL_MAX: usize = 64;

impl Email {
    /// Parses `local@domain` or `mailto:local@domain` (percent-encoded, as
    /// RFC 6068 writes it). The local part is a dot-atom or a quoted string
    /// (RFC 5322 §3.4.1), UTF-8 allowed (RFC 6532).
    pub fn parse(input: &str) -> Result<Email, CsiError> {
        let addr = match input.strip_prefix("mailto:") {
            Some(rest) => {
                if rest.contains('?') {
                    return Err(CsiError::new("mailto: header fields (?…) are not part of a CSI"));
                }
                percent_decode(rest)?
            }
            None => input.to_owned(),
        };
        let at = addr
            .rfind('@')
            .ok_or_else(|| CsiError::new("email address lacks an @"))?;
        let (local, domain) = (addr.get(..at).unwrap_or(""), addr.get(at + 1..).unwrap_or(""));
        check_local(local)?;
        let domain = Domain::parse(domain)?;
        if !domain.as_str().contains('.') {
            return Err(CsiError::new(format!(
                "email domain {:?} needs at least two labels",
                domain.as_str()
            )));
        }
        let mut uri = String::with_capacity(8 + local.len() + domain.as_str().len());
        uri.push_str("mailto:");
        percent_encode_local(local, &mut uri);
        let at = uri.len();
        uri.push('@');
        uri.push_str(domain.as_str());
        Ok(Email { uri: uri.into_boxed_str(), at, domain })
    }

    /// `mailto:…`
    pub fn uri(&self) -> &str {
        &self.uri
    }
    /// The domain, the routing key.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
    /// The local part as it appears in the URI (percent-encoded).
    pub fn local_encoded(&self) -> &str {
        self.uri.get(7..self.at).unwrap_or("")
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.uri)
    }
}

/// A MIMI user identifier: a fully qualified domain name that names one
/// user (draft-bertola-mimi-discovery-dns), `mymimi.example.com`.
///
/// Canonical form `mui:<name>`: IDNA-mapped to A-labels (UTS 46), lowercase,
/// without the trailing dot, at least three labels. It is routed like an
/// email address whose domain is the MUI's parent (`example.com`): the root
/// sends it to the authority of the nearest delegated parent domain.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mui {
    uri: Box<str>,
    parent: Domain,
}

impl Mui {
    /// Parses and canonicalizes a name (`MyMimi.Example.COM.`,
    /// `bücher.example.com`).
    pub fn parse(input: &str) -> Result<Mui, CsiError> {
        let d = Domain::parse(input.trim())?;
        let parent = d
            .parent()
            .filter(|p| p.contains('.'))
            .ok_or_else(|| CsiError::new(format!(
                "MUI {:?} needs at least three labels (a user label under a provider's domain)",
                d.as_str()
            )))?;
        let parent = Domain::from_ascii(parent)?;
        Ok(Mui { uri: format!("mui:{}", d.as_str()).into_boxed_str(), parent })
    }

    /// `mui:…`
    pub fn uri(&self) -> &str {
        &self.uri
    }
    /// The name itself (A-labels).
    pub fn name(&self) -> &str {
        self.uri.get(4..).unwrap_or("")
    }
    /// The parent domain, the routing key.
    pub fn domain(&self) -> &Domain {
        &self.parent
    }
}

impl fmt::Debug for Mui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mui({})", self.uri)
    }
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn check_local(local: &str) -> Result<(), CsiError> {
    if local.is_empty() {
        return Err(CsiError::new("email address has an empty local part"));
    }
    if local.len() > LOCAL_MAX {
        return Err(CsiError::new(format!(
            "email local part has {} octets; at most {LOCAL_MAX} are allowed",
            local.len()
        )));
    }
    if let Some(c) = local.chars().find(|c| c.is_control()) {
        return Err(CsiError::new(format!("email local part contains control character {c:?}")));
    }
    if let Some(inner) = local.strip_prefix('"') {
        // quoted-string: qtext or quoted-pair, closed by the final quote
        let body = inner
            .strip_suffix('"')
            .ok_or_else(|| CsiError::new("email local part opens a quote it does not close"))?;
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\'
                    if chars.next().is_none() => {
                        return Err(CsiError::new("email local part ends in a lone backslash"));
                    }
                '"' => return Err(CsiError::new("email local part has an unescaped quote")),
                _ => {}
            }
        }
        return Ok(());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(CsiError::new(
            "email local part may not start or end with a dot or hold two dots in a row",
        ));
    }
    if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
        return Err(CsiError::new(format!(
            "email local part contains {c:?}; quote it (\"…\") if it is really part of the address"
        )));
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, CsiError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| CsiError::new("bad percent-escape in mailto: URI"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| CsiError::new("mailto: URI decodes to invalid UTF-8"))
}

fn percent_encode_local(local: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in local.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*+,;:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 15] {
                out.push(char::from(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0')));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        match Csi::parse(s, None) {
            Ok(c) => c.uri().to_owned(),
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn e164_human_forms() {
        assert_eq!(ok("+49 151 1234-5678"), "tel:+4915112345678");
        assert_eq!(ok("tel:+49-151-12345678"), "tel:+4915112345678");
        assert_eq!(ok("+1 (204) 555-0123"), "tel:+12045550123");
        assert_eq!(ok("0049 151 12345678"), "tel:+4915112345678");
        assert_eq!(ok("+49 (0)151 12345678"), "tel:+4915112345678");
        let de: Region = "de".parse().unwrap();
        assert_eq!(
            Csi::parse("0151 12345678", Some(de)).unwrap().uri(),
            "tel:+4915112345678"
        );
        let it: Region = "IT".parse().unwrap();
        // Italian fixed-line numbers keep their leading zero in E.164.
        assert_eq!(Csi::parse("06 1234 5678", Some(it)).unwrap().uri(), "tel:+390612345678");
    }

    #[test]
    fn e164_rejections_say_why() {
        assert!(ok("+49 151 ABC").contains("letter"));
        assert!(ok("+1234567890123456789").contains("at most 15"));
        assert!(ok("0151 12345678").contains("default region"));
        assert!(ok("tel:+4915112345678;ext=1").contains("parameters"));
        assert!(Csi::from_wire("tel:+999123456").unwrap_err().message().contains("country calling code"));
        assert!(Csi::from_wire("tel:+491").unwrap_err().message().contains("national digits"));
        assert!(Csi::from_wire("tel:4915112345678").is_err());
        assert!(Csi::from_wire("tel:+49 151").is_err());
        assert!(Csi::from_wire("tel:+1234567890123456").unwrap_err().message().contains("at most 15"));
    }

    #[test]
    fn wire_and_human_agree() {
        let w = Csi::from_wire("tel:+4915112345678").unwrap();
        assert_eq!(w, Csi::parse("+49 1511 2345678", None).unwrap());
        let m = Csi::from_wire("mailto:alice@example.com").unwrap();
        assert_eq!(m, Csi::parse("alice@EXAMPLE.com", None).unwrap());
    }

    #[test]
    fn email_forms() {
        assert_eq!(ok("Alice@Example.COM"), "mailto:Alice@example.com");
        assert_eq!(ok("mailto:bob@b\u{fc}cher.example"), "mailto:bob@xn--bcher-kva.example");
        assert_eq!(ok("\"john doe\"@example.com"), "mailto:%22john%20doe%22@example.com");
        assert_eq!(ok("mailto:%22john%20doe%22@example.com"), "mailto:%22john%20doe%22@example.com");
        assert_eq!(ok("o'hara+tag@example.com"), "mailto:o'hara+tag@example.com");
        assert_eq!(ok("j\u{fc}rgen@example.de"), "mailto:j%C3%BCrgen@example.de");
        assert_eq!(ok("alice@example.com."), "mailto:alice@example.com");
        // The local part is byte-exact: case is kept.
        assert_ne!(Csi::parse("Alice@example.com", None).unwrap(), Csi::parse("alice@example.com", None).unwrap());
    }

    #[test]
    fn mui_forms() {
        for (input, uri) in [
            ("mymimi.example.com", "mui:mymimi.example.com"),
            ("MyMimi.Example.COM.", "mui:mymimi.example.com"),
            ("mui:mymimi.example.com", "mui:mymimi.example.com"),
            ("alice.bücher.example", "mui:alice.xn--bcher-kva.example"),
        ] {
            assert_eq!(Csi::parse(input, None).unwrap().uri(), uri, "{input}");
        }
        let Csi::Mui(m) = Csi::parse("mymimi.example.com", None).unwrap() else { panic!() };
        assert_eq!((m.name(), m.domain().as_str()), ("mymimi.example.com", "example.com"));
        assert_eq!(Csi::from_wire("mui:mymimi.example.com").unwrap().kind(), "mui");
        assert!(Csi::from_wire("mui:MyMimi.example.com").unwrap_err().message().contains("canonical"));
        assert!(Csi::parse("example.com", None).unwrap_err().message().contains("three labels"));
        assert!(Csi::parse("mui:a..example.com", None).is_err());
        // Numbers stay numbers.
        assert_eq!(Csi::parse("+49 151 1234 5678", None).unwrap().kind(), "e164");
        assert_eq!(Csi::parse("tel:+49-151-12345678", None).unwrap().kind(), "e164");
    }

    #[test]
    fn email_rejections_say_why() {
        assert!(ok("mailto:alice.example.com").contains("lacks an @"));
        assert!(ok("al ice@example.com").contains("' '"));
        assert!(ok(".alice@example.com").contains("dot"));
        assert!(ok("alice@xn--zz-.example").starts_with("ERR"));
        assert!(ok("alice@-bad.example").starts_with("ERR"));
        assert!(ok("alice@localhost").contains("two labels"));
        assert!(ok("alice@[192.0.2.1]").contains("literal"));
        assert!(ok("alice@1.2.3.4").contains("IP"));
        assert!(ok("\"open@example.com").contains("quote"));
        assert!(ok("mailto:alice@example.com?subject=hi").contains("header"));
        assert!(Csi::from_wire("mailto:alice@EXAMPLE.com").unwrap_err().message().contains("canonical"));
        assert!(ok(&format!("{}@example.com", "a".repeat(65))).contains("at most 64"));
    }

    #[test]
    fn prefixes() {
        let p = E164Prefix::parse("+49").unwrap();
        let n = E164::from_digits("4915112345678").unwrap();
        assert!(p.covers(&n));
        assert!(!E164Prefix::parse("+1").unwrap().covers(&n));
        assert!(E164Prefix::parse("49").is_err());
        assert!(E164Prefix::parse("+0").is_err());
        assert!(E164Prefix::parse("+4a").is_err());
    }
}
