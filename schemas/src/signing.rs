//! The canonical byte strings that signatures cover (mapping signatures and the root table's), specified
//! byte for byte in `schemas/SIGNING.md`.
//!
//! Each is a header line, then fields in a fixed order, each written as
//! `name=<decimal byte length>:<value>\n`. The length prefix makes the
//! encoding injective whatever the values hold (newlines, `=`, `:`), so two
//! different contents never share signing bytes. Lists are preceded by a
//! count field (`uri#=1:2`). The cache lifetime (`expires`) is not covered:
//! resolvers rewrite it.

use crate::csi::Csi;
use crate::lost::{ALG_ES256, Cover, KeyId, Mapping, MappingBody, Signature, Tag};
use crate::sp::RootTable;
use crate::time::Timestamp;

/// The signature metadata that is itself signed.
#[derive(Clone, Copy, Debug)]
pub struct SigParams<'a> {
    /// The signing key's id.
    pub key_id: &'a KeyId,
    /// When signed.
    pub signed_at: Timestamp,
    /// Until when the signature vouches for the content.
    pub valid_until: Timestamp,
}

impl<'a> SigParams<'a> {
    /// The parameters recorded in a signature.
    pub fn of(s: &'a Signature) -> SigParams<'a> {
        SigParams { key_id: &s.key_id, signed_at: s.signed_at, valid_until: s.valid_until }
    }
}

/// Header of the mapping form.
pub const MAPPING_HEADER: &str = "signpost-mapping-v1\n";
/// Header of the root table form.
pub const ROOT_TABLE_HEADER: &str = "signpost-root-table-v1\n";

struct Out<'o>(&'o mut Vec<u8>);

impl Out<'_> {
    fn field(&mut self, name: &str, value: &str) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(b'=');
        self.0.extend_from_slice(value.len().to_string().as_bytes());
        self.0.push(b':');
        self.0.extend_from_slice(value.as_bytes());
        self.0.push(b'\n');
    }
    fn num(&mut self, name: &str, v: u64) {
        self.field(name, &v.to_string());
    }
    fn time(&mut self, name: &str, t: Timestamp) {
        let mut s = String::with_capacity(24);
        t.write(&mut s);
        self.field(name, &s);
    }
    fn params(&mut self, p: &SigParams<'_>) {
        self.field("alg", ALG_ES256);
        self.field("keyId", p.key_id.as_str());
        self.time("signedAt", p.signed_at);
        self.time("validUntil", p.valid_until);
    }
}

/// Appends the signing bytes of a mapping for `csi` to `out`. Covered, in
/// this order: alg, keyId, signedAt, validUntil, csi, source, sourceId,
/// lastUpdated, service, displayNames, uris, the provider entry (id,
/// priority, tags, assurance) or the no-providers marker (reason), epoch.
/// Not covered: `expires` and the signature value.
pub fn mapping_bytes(csi: &Csi, m: &Mapping, p: &SigParams<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(MAPPING_HEADER.as_bytes());
    let mut o = Out(out);
    o.params(p);
    o.field("csi", csi.uri());
    o.field("source", m.source.as_str());
    o.field("sourceId", &m.source_id);
    o.time("lastUpdated", m.last_updated);
    o.field("service", m.service.as_ref().map_or("", |s| s.as_str()));
    o.num("displayName#", m.display_names.len() as u64);
    for d in &m.display_names {
        o.field("displayName.lang", &d.lang);
        o.field("displayName.text", &d.text);
    }
    o.num("uri#", m.uris.len() as u64);
    for u in &m.uris {
        o.field("uri", u.as_str());
    }
    match &m.body {
        MappingBody::Provider(pe) => {
            o.field("kind", "provider");
            o.field("provider.id", pe.id.as_str());
            o.num("provider.priority", u64::from(pe.priority));
            let tags: Vec<&str> = pe.tags.iter().map(Tag::as_str).collect();
            o.field("provider.tags", &tags.join(" "));
            o.field("provider.assurance", pe.assurance.as_str());
            o.num("epoch", pe.epoch.0);
        }
        MappingBody::NoProviders { reason, epoch } => {
            o.field("kind", "noProviders");
            o.field("noProviders.reason", reason.as_str());
            o.num("epoch", epoch.0);
        }
    }
}

/// Appends the signing bytes of a root table to `out`. Covered: alg, keyId,
/// signedAt, validUntil (of the signature), source, serial, the table's
/// validUntil, negativeLifetime, then every delegation in file order: its
/// cover (`prefix` or `domain` + `includeSubdomains`), lifetime, and every
/// authority with its endpoints in order.
pub fn root_table_bytes(t: &RootTable, p: &SigParams<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(ROOT_TABLE_HEADER.as_bytes());
    let mut o = Out(out);
    o.params(p);
    o.field("source", t.source.as_str());
    o.num("serial", t.serial);
    o.time("table.validUntil", t.valid_until);
    o.num("negativeLifetime", u64::from(t.negative_lifetime));
    o.num("delegation#", t.delegations.len() as u64);
    for d in &t.delegations {
        match &d.cover {
            Cover::Prefix(px) => o.field("prefix", px.as_str()),
            Cover::Domain { domain, include_subdomains } => {
                o.field("domain", domain.as_str());
                o.field("includeSubdomains", if *include_subdomains { "true" } else { "false" });
            }
        }
        o.num("lifetime", u64::from(d.lifetime));
        o.num("authority#", d.authorities.len() as u64);
        for a in &d.authorities {
            o.field("authority.id", a.id.as_str());
            o.num("endpoint#", a.endpoints.len() as u64);
            for e in &a.endpoints {
                o.field("endpoint", e.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lost::*;
    use crate::name::Name;
    use crate::time::Expires;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn sample() -> (Csi, Mapping, KeyId) {
        let csi = Csi::from_wire("tel:+4915112345678").unwrap();
        let m = Mapping {
            expires: Expires::At(t("2026-11-23T09:00:00Z")),
            last_updated: t("2026-11-23T07:00:00Z"),
            source: Name::parse("dp.de.example").unwrap(),
            source_id: "m-4915112345678-a-7".into(),
            display_names: vec![DisplayName { text: "Provider A".into(), lang: "en".into() }],
            service: Some(Uri::parse("urn:service:mimi").unwrap()),
            uris: vec![Uri::parse("mimi://provider-a.example/u/alice").unwrap()],
            body: MappingBody::Provider(ProviderEntry {
                id: Name::parse("provider-a.example").unwrap(),
                priority: 10,
                tags: vec![Tag::parse("personal").unwrap(), Tag::parse("work").unwrap()],
                assurance: Assurance::CsipAttested,
                epoch: Epoch(3),
            }),
            signature: None,
        };
        (csi, m, KeyId::parse("sha256-AbCd").unwrap())
    }

    /// The test vector printed in SIGNING.md; a change here is a wire break.
    #[test]
    fn mapping_vector() {
        let (csi, m, k) = sample();
        let p = SigParams { key_id: &k, signed_at: t("2026-11-23T07:00:00Z"), valid_until: t("2026-11-30T07:00:00Z") };
        let mut out = Vec::new();
        mapping_bytes(&csi, &m, &p, &mut out);
        let expected = "signpost-mapping-v1\n\
alg=5:ES256\n\
keyId=11:sha256-AbCd\n\
signedAt=20:2026-11-23T07:00:00Z\n\
validUntil=20:2026-11-30T07:00:00Z\n\
csi=18:tel:+4915112345678\n\
source=13:dp.de.example\n\
sourceId=19:m-4915112345678-a-7\n\
lastUpdated=20:2026-11-23T07:00:00Z\n\
service=16:urn:service:mimi\n\
displayName#=1:1\n\
displayName.lang=2:en\n\
displayName.text=10:Provider A\n\
uri#=1:1\n\
uri=33:mimi://provider-a.example/u/alice\n\
kind=8:provider\n\
provider.id=18:provider-a.example\n\
provider.priority=2:10\n\
provider.tags=13:personal work\n\
provider.assurance=13:csip-attested\n\
epoch=1:3\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn expires_is_not_covered_but_everything_else_is() {
        let (csi, m, k) = sample();
        let p = SigParams { key_id: &k, signed_at: t("2026-11-23T07:00:00Z"), valid_until: t("2026-11-30T07:00:00Z") };
        let bytes = |m: &Mapping| {
            let mut v = Vec::new();
            mapping_bytes(&csi, m, &p, &mut v);
            v
        };
        let base = bytes(&m);
        let mut m2 = m.clone();
        m2.expires = Expires::NoCache;
        assert_eq!(bytes(&m2), base);
        let mut m3 = m.clone();
        m3.uris[0] = Uri::parse("mimi://evil.example/u/alice").unwrap();
        assert_ne!(bytes(&m3), base);
        let mut m4 = m.clone();
        if let MappingBody::Provider(pe) = &mut m4.body {
            pe.epoch = Epoch(4);
        }
        assert_ne!(bytes(&m4), base);
        // Field boundaries cannot be shifted: "a b" + "c" differs from "a" + "b c".
        let mut m5 = m.clone();
        m5.display_names = vec![DisplayName { text: "x\ndisplayName.lang=2:en".into(), lang: "en".into() }];
        let mut m6 = m.clone();
        m6.display_names = vec![
            DisplayName { text: "x".into(), lang: "en".into() },
            DisplayName { text: "en".into(), lang: "en".into() },
        ];
        assert_ne!(bytes(&m5), bytes(&m6));
        let other = Csi::from_wire("tel:+4915199999999").unwrap();
        let mut v = Vec::new();
        mapping_bytes(&other, &m, &p, &mut v);
        assert_ne!(v, base);
    }
}
