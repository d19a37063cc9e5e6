//! Import of a private-ENUM zone (a DNS master file, RFC 1035 §5, as NSD
//! or Knot serve it) into the same [`ImportItem`]s the CSV import makes
//! (`authority/import-format.md`, "ENUM zone files").
//!
//! The file is cut into its logical records (a record continued over
//! lines in parentheses is one) so every problem is reported with the
//! line it starts on; each record is then parsed by hickory-proto's zone
//! parser with the `$ORIGIN`, `$TTL` and owner in force at that point.
//!
//! A NAPTR record whose service field names a messaging enumservice
//! (RFC 6116 §3.4.3: `E2U+sip`, `E2U+im`, `E2U+xmpp`, `E2U+sms`, `E2U+mms`,
//! `E2U+mimi`, with or without a subtype) becomes an entry of the number its
//! owner name encodes (RFC 6116 §2.4): the URI is the regular expression's
//! replacement, the provider the URI's host, the priority the NAPTR
//! preference, raised by 65536 for each higher order the number uses (so
//! order sorts first, then preference, as RFC 3403 §4.1 processes them).
//! Other records (SOA, NS, non-messaging NAPTRs such as `E2U+voice:tel`)
//! are not discovery data and are counted as skipped. A messaging NAPTR
//! that cannot be mapped (a non-terminal rule, a regular expression that
//! rewrites the number, an owner that is not a number) is an error: the
//! whole file is refused, as with CSV.

use std::collections::BTreeMap;

use hickory_proto::rr::{Name as DnsName, RData};
use hickory_proto::serialize::txt::Parser;
use signpost_schemas::lost::{Assurance, Uri};
use signpost_schemas::sp::{EntryRecord, Visibility};
use signpost_schemas::{Csi, E164, Name};

use crate::import::ImportItem;

/// The enumservice types that name a messaging service.
pub const MESSAGING_TYPES: &[&str] = &["mimi", "im", "xmpp", "sip", "sms", "mms"];

/// What an import run read besides its items.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ZoneSummary {
    /// Records read.
    pub records: usize,
    /// Messaging NAPTRs mapped to entries.
    pub mapped: usize,
    /// Records that are not discovery data (SOA, NS, other NAPTRs, …).
    pub skipped: usize,
}

/// Options of a zone import.
#[derive(Debug, Clone)]
pub struct ZoneOptions {
    /// The ENUM apex the owner names are under (`e164.arpa`).
    pub apex: String,
    /// The TNSP the numbers are assigned to.
    pub tnsp: Name,
    /// The origin before any `$ORIGIN` (default: the apex).
    pub origin: Option<String>,
}

/// Whether a file is a zone file rather than CSV: the extension `.zone`,
/// or a first meaningful line that is a `$ORIGIN`/`$TTL` directive or
/// lacks the CSV header's commas.
pub fn looks_like_zone(path: &std::path::Path, text: &str) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zone")) {
        return true;
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    match first {
        Some(l) => l.starts_with('$') || (!l.contains(',') && l.split_whitespace().count() >= 3),
        None => false,
    }
}

/// One logical record: the line it starts on and its text with comments
/// removed and parenthesized line breaks joined.
fn logical_records(text: &str) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut line, mut start) = (1usize, 1usize);
    let (mut quoted, mut escaped, mut comment, mut depth) = (false, false, false, 0usize);
    for c in text.chars() {
        if c == '\n' {
            if quoted {
                return Err(format!("line {line}: a quoted string runs past the end of the line"));
            }
            comment = false;
            escaped = false;
            line += 1;
            if depth > 0 {
                cur.push(' ');
                continue;
            }
            if !cur.trim().is_empty() {
                out.push((start, std::mem::take(&mut cur)));
            } else {
                cur.clear();
            }
            start = line;
            continue;
        }
        if comment {
            continue;
        }
        if escaped {
            escaped = false;
            cur.push(c);
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                cur.push(c);
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => comment = true,
            '(' if !quoted => {
                depth += 1;
                cur.push(' ');
            }
            ')' if !quoted => {
                depth = depth.checked_sub(1).ok_or_else(|| format!("line {line}: ) without ("))?;
                cur.push(' ');
            }
            '\r' => {}
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: unterminated quoted string"));
    }
    if depth > 0 {
        return Err(format!("line {start}: ( not closed before the end of the file"));
    }
    if !cur.trim().is_empty() {
        out.push((start, cur));
    }
    Ok(out)
}

fn fqdn(s: &str) -> String {
    if s.ends_with('.') { s.to_owned() } else { format!("{s}.") }
}

/// One messaging NAPTR, read.
struct Rule {
    line: usize,
    number: E164,
    order: u16,
    preference: u16,
    uri: Uri,
    provider: Name,
}

/// Parses a zone file. Returns the items and a summary, or every error
/// found (up to `max_errors`), each starting with `line N:`.
pub fn parse(text: &str, opts: &ZoneOptions, max_errors: usize) -> Result<(Vec<ImportItem>, ZoneSummary), Vec<String>> {
    let records = logical_records(text).map_err(|e| vec![e])?;
    let apex = DnsName::from_ascii(fqdn(&opts.apex)).map_err(|e| vec![format!("the ENUM apex {:?}: {e}", opts.apex)])?;
    let mut origin = fqdn(opts.origin.as_deref().unwrap_or(&opts.apex));
    let mut ttl = "3600".to_owned();
    let mut owner: Option<String> = None;
    let mut errors = Vec::new();
    let mut rules = Vec::new();
    let mut summary = ZoneSummary::default();
    for (line, rec) in records {
        if errors.len() >= max_errors {
            break;
        }
        let t = rec.trim();
        let mut words = t.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.starts_with('$') {
            match (first.to_ascii_uppercase().as_str(), words.next()) {
                ("$ORIGIN", Some(o)) => match DnsName::parse(o, DnsName::from_ascii(&origin).ok().as_ref()) {
                    Ok(n) => origin = fqdn(&n.to_ascii()),
                    Err(e) => errors.push(format!("line {line}: $ORIGIN {o}: {e}")),
                },
                ("$TTL", Some(v)) => ttl = v.to_owned(),
                ("$INCLUDE", _) => errors.push(format!("line {line}: $INCLUDE is not followed; import the included file on its own")),
                (d, _) => errors.push(format!("line {line}: {d} is not a directive this import knows ($ORIGIN, $TTL)")),
            }
            continue;
        }
        // A record without an owner continues the previous owner.
        let body = if rec.starts_with([' ', '\t']) {
            match &owner {
                Some(o) => format!("{o} {t}"),
                None => {
                    errors.push(format!("line {line}: a record without an owner name before any owner"));
                    continue;
                }
            }
        } else {
            t.to_owned()
        };
        let zone = format!("$ORIGIN {origin}\n$TTL {ttl}\n{body}\n");
        let parsed = match Parser::new(zone, None, None).parse() {
            Ok((_, map)) => map,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        for set in parsed.values() {
            for r in set.records_without_rrsigs() {
                summary.records += 1;
                owner = Some(fqdn(&r.name.to_ascii()));
                let RData::NAPTR(n) = &r.data else {
                    summary.skipped += 1;
                    continue;
                };
                match rule(line, &r.name, n, &apex) {
                    Ok(Some(rule)) => {
                        summary.mapped += 1;
                        rules.push(rule);
                    }
                    Ok(None) => summary.skipped += 1,
                    Err(e) => errors.push(format!("line {line}: {e}")),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((group(rules, &opts.tnsp), summary))
}

/// A NAPTR as a messaging rule: `Ok(None)` for a non-messaging one.
fn rule(line: usize, owner: &DnsName, n: &hickory_proto::rr::rdata::NAPTR, apex: &DnsName) -> Result<Option<Rule>, String> {
    let services = String::from_utf8_lossy(&n.services).to_ascii_lowercase();
    let Some(types) = services.strip_prefix("e2u+") else {
        return Ok(None);
    };
    // `E2U+sip+im` names several; `sms:tel` a type with a subtype.
    if !types.split('+').any(|t| MESSAGING_TYPES.contains(&t.split(':').next().unwrap_or(""))) {
        return Ok(None);
    }
    let shown = String::from_utf8_lossy(&n.services).into_owned();
    if !n.flags.eq_ignore_ascii_case(b"u") {
        return Err(format!("{shown}: flags {:?}: only terminal rules (flags \"u\") name a URI", String::from_utf8_lossy(&n.flags)));
    }
    if !n.replacement.is_root() {
        return Err(format!("{shown}: a replacement domain ({}) is a non-terminal rule; only a regexp to a URI can be mapped", n.replacement));
    }
    let number = enum_number(owner, apex)?;
    let re = String::from_utf8_lossy(&n.regexp).into_owned();
    let uri = replacement(&re).map_err(|e| format!("{shown}: regexp {re:?}: {e}"))?;
    let uri = Uri::parse(&uri).map_err(|e| format!("{shown}: URI {uri:?}: {e}"))?;
    let host = crate::dns::uri_host(uri.as_str()).ok_or_else(|| format!("{shown}: URI {} names no host to take the provider from", uri.as_str()))?;
    let provider = Name::parse(host).map_err(|e| format!("{shown}: provider {host:?} (the URI's host): {e}"))?;
    Ok(Some(Rule { line, number, order: n.order, preference: n.preference, uri, provider }))
}

/// The number an ENUM owner name encodes (RFC 6116 §2.4, backwards).
fn enum_number(owner: &DnsName, apex: &DnsName) -> Result<E164, String> {
    let shown = owner.to_ascii();
    if !apex.zone_of(owner) {
        return Err(format!("owner {shown} is not under the ENUM apex {apex}"));
    }
    let n = usize::from(owner.num_labels()).saturating_sub(usize::from(apex.num_labels()));
    let labels: Vec<&[u8]> = owner.iter().take(n).collect();
    if labels.is_empty() || !labels.iter().all(|l| l.len() == 1 && l.first().is_some_and(u8::is_ascii_digit)) {
        return Err(format!("owner {shown} is not a number: ENUM names are single digits, reversed, under {apex}"));
    }
    let digits: String = labels.iter().rev().filter_map(|l| l.first().map(|b| char::from(*b))).collect();
    E164::from_digits(&digits).map_err(|e| format!("owner {shown} (+{digits}): {e}"))
}

/// The URI of a NAPTR regexp that rewrites any AUS to a fixed string
/// (`!^.*$!uri!`, RFC 6116 §3.2.2); anything that keeps part of the
/// number (a back-reference) or matches only some numbers cannot be mapped.
fn replacement(re: &str) -> Result<String, String> {
    let mut chars = re.chars();
    let delim = chars.next().ok_or("empty")?;
    if delim.is_ascii_digit() || delim == '\\' || delim == 'i' {
        return Err(format!("{delim:?} cannot be a delimiter (RFC 3402 §3.2)"));
    }
    // Split on unescaped delimiters.
    let mut parts = vec![String::new()];
    let mut esc = false;
    for c in chars {
        if esc {
            if let Some(p) = parts.last_mut() {
                p.push('\\');
                p.push(c);
            }
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == delim {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    let [pattern, repl, flags] = parts.as_slice() else {
        return Err("not of the form <d>pattern<d>replacement<d>flags".into());
    };
    if !matches!(flags.as_str(), "" | "i") {
        return Err(format!("flags {flags:?}"));
    }
    if !matches!(pattern.as_str(), "^.*$" | ".*" | "^.*" | ".*$" | "^(.*)$") {
        return Err(format!("pattern {pattern:?} matches only some numbers; use ^.*$"));
    }
    let mut out = String::new();
    let mut it = repl.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some(d) if d.is_ascii_digit() => return Err(format!("the back-reference \\{d} keeps part of the number")),
                Some(x) => out.push(x),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The rules of each number become its entries (one per provider, URIs
/// in file order, the lowest priority of the provider's rules).
fn group(rules: Vec<Rule>, tnsp: &Name) -> Vec<ImportItem> {
    let mut by_number: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    for r in rules {
        by_number.entry(r.number.uri().to_owned()).or_default().push(r);
    }
    let mut items: Vec<ImportItem> = by_number
        .into_values()
        .filter_map(|rs| {
            let first = rs.first()?;
            let (csi, line) = (Csi::E164(first.number.clone()), rs.iter().map(|r| r.line).min().unwrap_or(first.line));
            let mut orders: Vec<u16> = rs.iter().map(|r| r.order).collect();
            orders.sort_unstable();
            orders.dedup();
            let mut entries: Vec<EntryRecord> = Vec::new();
            for r in &rs {
                let rank = u32::try_from(orders.iter().position(|o| *o == r.order).unwrap_or(0)).unwrap_or(0);
                let priority = rank * 65_536 + u32::from(r.preference);
                match entries.iter_mut().find(|e| e.provider == r.provider) {
                    Some(e) => {
                        if !e.uris.contains(&r.uri) {
                            e.uris.push(r.uri.clone());
                        }
                        e.priority = e.priority.min(priority);
                    }
                    None => entries.push(EntryRecord {
                        provider: r.provider.clone(),
                        display_name: None,
                        uris: vec![r.uri.clone()],
                        priority,
                        tags: vec![],
                        assurance: Assurance::CsipAttested,
                        bound_to_tnsp: false,
                        visibility: Visibility::All,
                    }),
                }
            }
            Some(ImportItem { csi, tnsp: Some(tnsp.clone()), entries, line })
        })
        .collect();
    items.sort_by_key(|i| i.line);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ZoneOptions {
        ZoneOptions { apex: "e164.arpa".into(), tnsp: Name::parse("tnsp-a.de.example").unwrap(), origin: None }
    }

    #[test]
    fn a_zone_maps_and_errors_name_lines() {
        let z = [
            "$ORIGIN 1.5.1.9.4.e164.arpa.",
            "$TTL 300",
            "@ IN SOA ns.example. hostmaster.example. ( 1 3600 600",
            "  86400 60 )",
            "  IN NS ns.example.",
            "8.7.6.5.4.3.2.1 IN NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:+4915112345678@ims.example!\" .",
            "                IN NAPTR 100 20 \"u\" \"E2U+mimi\" \"|^.*$|mimi://p.example/u/a!b|\" . ; a comment",
            "                IN NAPTR 100 5 \"u\" \"E2U+voice:tel\" \"!^.*$!tel:+4915112345678!\" .",
            "9.7.6.5.4.3.2.1 IN NAPTR 10 50 \"u\" \"E2U+im\" \"!^.*$!im:x@p.example!\" .",
            "                IN NAPTR 20 10 \"u\" \"E2U+xmpp\" \"!^.*$!xmpp:x@chat.example!\" .",
            "",
        ]
        .join("\n");
        let z = z.as_str();
        let (items, s) = parse(z, &opts(), 10).unwrap();
        assert_eq!((s.records, s.mapped, s.skipped), (7, 4, 3));
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].csi.uri(), "tel:+4915112345678");
        assert_eq!(items[0].line, 6);
        assert_eq!(items[0].entries[1].uris[0].as_str(), "mimi://p.example/u/a!b");
        assert_eq!(items[1].entries.iter().map(|e| e.priority).collect::<Vec<_>>(), vec![50, 65_546]);
        let bad = "$ORIGIN e164.arpa.\n8.7.6.5.4.3.2.1.1.5.1.9.4 IN NAPTR 100 10 \"u\" \"E2U+sip\" \"!^(.*)$!sip:\\\\1@x.example!\" .\n\
1.2.3.example.com. IN NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:a@x.example!\" .\n\
8.7.6.5.4.3.2.1.1.5.1.9.4 IN NAPTR 100 10 \"\" \"E2U+sip\" \"\" next.example.\n\
9.9 IN NAPTR 100 x \"u\" \"E2U+sip\" \"!^.*$!sip:a@x.example!\" .\n";
        let e = parse(bad, &opts(), 10).unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        for (i, l) in [2, 3, 4, 5].iter().enumerate() {
            assert!(e[i].starts_with(&format!("line {l}:")), "{e:?}");
        }
        assert!(e[0].contains("back-reference"), "{e:?}");
        assert!(e[1].contains("not under the ENUM apex"), "{e:?}");
        assert!(looks_like_zone(std::path::Path::new("a.zone"), ""));
        assert!(looks_like_zone(std::path::Path::new("a.txt"), "$ORIGIN x.\n"));
        assert!(!looks_like_zone(std::path::Path::new("a.csv"), &format!("{}\n", crate::import::HEADER)));
        assert!(logical_records("a ( b\n").is_err());
    }
}
