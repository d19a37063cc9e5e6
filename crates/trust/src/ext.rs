//! Signpost's certificate extension (`schemas/asn1/signpost-authorization.asn1`):
//! role, id and scope, DER-encoded by hand (the structure is small and
//! fixed, and a hand-written reader keeps every bound explicit).

use signpost_schemas::{Csi, Domain, E164Prefix, Name};

/// The extension's OID arcs: 2.25.7442409052774610729.1.
pub const OID: [u64; 4] = [2, 25, 7_442_409_052_774_610_729, 1];

/// What a certificate holder is in a deployment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// The root operator.
    Root,
    /// A discovery provider (signs mappings).
    Authority,
    /// A carrier's resolver.
    Resolver,
    /// A messaging service provider.
    Msp,
    /// A number or email provider.
    Csip,
    /// An authority's operator.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [Role::Root, Role::Authority, Role::Resolver, Role::Msp, Role::Csip, Role::Admin];
    /// The CLI / config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Authority => "authority",
            Role::Resolver => "resolver",
            Role::Msp => "msp",
            Role::Csip => "csip",
            Role::Admin => "admin",
        }
    }
    const fn code(self) -> u8 {
        match self {
            Role::Root => 0,
            Role::Authority => 1,
            Role::Resolver => 2,
            Role::Msp => 3,
            Role::Csip => 4,
            Role::Admin => 5,
        }
    }
    fn from_code(c: u8) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == c)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (root, authority, resolver, msp, csip, admin)"))
    }
}

/// One scope entry.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ScopeEntry {
    /// Every number with this prefix.
    Prefix(E164Prefix),
    /// This domain and its subdomains.
    Domain(Domain),
}

impl ScopeEntry {
    /// `+49` → prefix, anything else → domain.
    pub fn parse(s: &str) -> Result<ScopeEntry, String> {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("scope {s:?} is digits without a +: an E.164 prefix is written +{s}"));
        }
        if s.starts_with('+') {
            E164Prefix::parse(s).map(ScopeEntry::Prefix).map_err(|e| e.to_string())
        } else {
            Domain::parse(s).map(ScopeEntry::Domain).map_err(|e| format!("scope {s:?}: {e}"))
        }
    }
    /// Whether the entry covers the CSI.
    pub fn covers(&self, csi: &Csi) -> bool {
        match (self, csi) {
            (ScopeEntry::Prefix(p), Csi::E164(n)) => p.covers(n),
            (ScopeEntry::Domain(d), Csi::Email(_) | Csi::Mui(_)) => {
                csi.routing_domain().is_some_and(|r| domain_within(r.as_str(), d.as_str()))
            }
            _ => false,
        }
    }
    /// Whether every CSI under `cover` is covered by this entry.
    pub fn covers_block(&self, cover: &signpost_schemas::Cover) -> bool {
        match (self, cover) {
            (ScopeEntry::Prefix(p), signpost_schemas::Cover::Prefix(q)) => q.digits().starts_with(p.digits()),
            (ScopeEntry::Domain(d), signpost_schemas::Cover::Domain { domain, .. }) => {
                domain_within(domain.as_str(), d.as_str())
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for ScopeEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScopeEntry::Prefix(p) => write!(f, "{p}"),
            ScopeEntry::Domain(d) => write!(f, "{d}"),
        }
    }
}

fn domain_within(d: &str, parent: &str) -> bool {
    d == parent
        || (d.len() > parent.len()
            && d.ends_with(parent)
            && d.as_bytes().get(d.len() - parent.len() - 1) == Some(&b'.'))
}

/// The decoded extension.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Authorization {
    /// The role.
    pub role: Role,
    /// The holder's id.
    pub id: Name,
    /// What it may speak for.
    pub scope: Vec<ScopeEntry>,
}

const MAX_SCOPE: usize = 4096;

impl Authorization {
    /// DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        let mut body = Vec::new();
        tlv(&mut body, 0x02, &[1]); // version INTEGER 1
        tlv(&mut body, 0x0A, &[self.role.code()]); // ENUMERATED
        tlv(&mut body, 0x0C, self.id.as_str().as_bytes()); // UTF8String
        let mut scope = Vec::new();
        for s in &self.scope {
            match s {
                ScopeEntry::Prefix(p) => tlv(&mut scope, 0x80, p.as_str().as_bytes()),
                ScopeEntry::Domain(d) => tlv(&mut scope, 0x81, d.as_str().as_bytes()),
            }
        }
        tlv(&mut body, 0x30, &scope);
        let mut out = Vec::with_capacity(body.len() + 4);
        tlv(&mut out, 0x30, &body);
        out
    }

    /// Strict DER decoding: definite minimal lengths, known tags, nothing
    /// trailing.
    pub fn from_der(der: &[u8]) -> Result<Authorization, String> {
        let mut outer = Reader(der);
        let mut seq = Reader(outer.take(0x30)?);
        outer.end()?;
        if seq.take(0x02)? != [1] {
            return Err("unsupported SignpostAuthorization version".into());
        }
        let role = match seq.take(0x0A)? {
            [c] => Role::from_code(*c).ok_or("unknown role code")?,
            _ => return Err("bad role encoding".into()),
        };
        let id = std::str::from_utf8(seq.take(0x0C)?).map_err(|_| "id is not UTF-8")?;
        let id = Name::parse(id).map_err(|e| e.to_string())?;
        let mut scope_r = Reader(seq.take(0x30)?);
        seq.end()?;
        let mut scope = Vec::new();
        while !scope_r.0.is_empty() {
            if scope.len() >= MAX_SCOPE {
                return Err("scope has too many entries".into());
            }
            let tag = *scope_r.0.first().ok_or("truncated scope")?;
            let v = std::str::from_utf8(scope_r.take(tag)?).map_err(|_| "scope entry is not text")?;
            scope.push(match tag {
                0x80 => ScopeEntry::Prefix(E164Prefix::parse(v).map_err(|e| e.to_string())?),
                0x81 => {
                    let d = Domain::parse(v).map_err(|e| e.to_string())?;
                    if d.as_str() != v {
                        return Err(format!("scope domain {v:?} is not in A-label lowercase form"));
                    }
                    ScopeEntry::Domain(d)
                }
                _ => return Err(format!("unknown scope entry tag {tag:#x}")),
            });
        }
        Ok(Authorization { role, id, scope })
    }

    /// Whether the scope covers the CSI.
    pub fn covers(&self, csi: &Csi) -> bool {
        self.scope.iter().any(|s| s.covers(csi))
    }
}

fn tlv(out: &mut Vec<u8>, tag: u8, v: &[u8]) {
    out.push(tag);
    let n = v.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else if n < 0x1_0000 {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    } else {
        out.extend_from_slice(&[0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(v);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let b = self.0;
        let (&t, rest) = b.split_first().ok_or("truncated DER")?;
        if t != tag {
            return Err(format!("expected DER tag {tag:#x}, found {t:#x}"));
        }
        let (&l0, rest) = rest.split_first().ok_or("truncated DER length")?;
        let (len, rest) = if l0 < 0x80 {
            (usize::from(l0), rest)
        } else {
            let k = usize::from(l0 & 0x7F);
            if k == 0 || k > 3 {
                return Err("unsupported DER length".into());
            }
            let bytes = rest.get(..k).ok_or("truncated DER length")?;
            let len = bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x));
            if bytes.first() == Some(&0) || len < 0x80 {
                return Err("non-minimal DER length".into());
            }
            (len, rest.get(k..).unwrap_or(&[]))
        };
        let v = rest.get(..len).ok_or("DER value runs past the end")?;
        self.0 = rest.get(len..).unwrap_or(&[]);
        Ok(v)
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err("trailing bytes in DER".into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_round_trip_and_strictness() {
        let a = Authorization {
            role: Role::Authority,
            id: Name::parse("dp.de.example").unwrap(),
            scope: vec![ScopeEntry::parse("+49").unwrap(), ScopeEntry::parse("example.com").unwrap()],
        };
        let der = a.to_der();
        assert_eq!(Authorization::from_der(&der).unwrap(), a);
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(Authorization::from_der(&trailing).is_err());
        for cut in 0..der.len() {
            assert!(Authorization::from_der(&der[..cut]).is_err());
        }
        let big = Authorization { scope: (0..300).map(|i| ScopeEntry::parse(&format!("+{}", 100 + i)).unwrap()).collect(), ..a };
        assert_eq!(Authorization::from_der(&big.to_der()).unwrap(), big);
    }

    #[test]
    fn scope_coverage() {
        let csi = |s: &str| Csi::from_wire(s).unwrap();
        let p = ScopeEntry::parse("+49").unwrap();
        assert!(p.covers(&csi("tel:+4915112345678")));
        assert!(!p.covers(&csi("tel:+33612345678")));
        let d = ScopeEntry::parse("example.com").unwrap();
        assert!(d.covers(&csi("mailto:a@example.com")));
        assert!(d.covers(&csi("mailto:a@eu.example.com")));
        assert!(!d.covers(&csi("mailto:a@badexample.com")));
        assert!(!d.covers(&csi("tel:+4915112345678")));
    }
}
