//! Bulk (address-book) lookups: `POST /lost/bulk` with an
//! `sp:bulkFindService` document wrapping up to `bulk.max_queries` LoST
//! `findService` requests, answered by an `sp:bulkFindServiceResponse`
//! holding one complete LoST answer per query, in order
//! (`findServiceResponse`, `redirect` or `errors`). The wrapper is defined
//! in `schemas/rng/signpost-bulk.rng.in`; each answer is a LoST document in
//! its own right. Usable directly and inside Oblivious HTTP (the inner
//! request `POST /lost/bulk`).
//!
//! The enumeration budget charges a bulk only for the identifiers its
//! client has not asked about before in the window (so a synced address
//! book costs nothing the second time, and a scan runs out).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::Mutex;

use quick_xml::events::Event;
use signpost_schemas::Timestamp;

/// The bulk path.
pub const BULK_PATH: &str = "/lost/bulk";
/// The content type of bulk requests and answers.
pub const CONTENT_TYPE: &str = "application/signpost+xml";
/// The sp namespace.
pub const SP_NS: &str = "urn:signpost:params:xml:ns:disc1";
/// The request wrapper's local name.
pub const REQUEST_ROOT: &str = "bulkFindService";
/// The answer wrapper's local name.
pub const RESPONSE_ROOT: &str = "bulkFindServiceResponse";

/// Why a bulk document cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BulkError {
    /// Not well-formed, or not the expected wrapper.
    #[error("bulk document: {0}")]
    Malformed(String),
    /// More queries than allowed.
    #[error("a bulk request holds at most {max} findService queries; this one holds {got}: split it")]
    TooMany {
        /// Found.
        got: usize,
        /// Allowed.
        max: usize,
    },
    /// No query at all.
    #[error("a bulk request holds at least one findService query")]
    Empty,
}

/// Splits a wrapper document (`sp:{root}`) into its children, each made a
/// standalone document (the wrapper's namespace declarations are carried
/// into each child that does not declare them itself). Stops with
/// [`BulkError::TooMany`] past `max` children.
pub fn split(doc: &[u8], root: &str, max: usize) -> Result<Vec<Vec<u8>>, BulkError> {
    let bad = |m: String| BulkError::Malformed(m);
    let text = std::str::from_utf8(doc).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    let mut r = quick_xml::Reader::from_str(text);
    let mut depth = 0usize;
    let mut decls: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    let mut child_start: Option<(usize, usize, Vec<String>)> = None;
    let mut seen_root = false;
    loop {
        let before = usize::try_from(r.buffer_position()).unwrap_or(usize::MAX);
        let ev = r.read_event().map_err(|e| bad(format!("not well-formed XML at byte {}: {e}", r.error_position())))?;
        let after = usize::try_from(r.buffer_position()).unwrap_or(usize::MAX);
        match ev {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(bad("a document type declaration is not allowed".into())),
            Event::Text(t) => {
                if !t.chars().all(|c| c.is_ascii_whitespace()) && depth <= 1 {
                    return Err(bad("text outside the wrapped documents".into()));
                }
            }
            Event::CData(_) | Event::GeneralRef(_) if depth <= 1 => return Err(bad("text outside the wrapped documents".into())),
            Event::CData(_) | Event::GeneralRef(_) => {}
            Event::Start(e) if depth == 0 => {
                root_check(&e, root, &mut decls, &mut seen_root)?;
                depth = 1;
            }
            Event::Empty(e) if depth == 0 => {
                root_check(&e, root, &mut decls, &mut seen_root)?;
                break;
            }
            Event::Start(e) => {
                if depth == 1 {
                    let own: Vec<String> = e.attributes().filter_map(Result::ok).map(|a| a.key.as_ref().to_owned()).collect();
                    child_start = Some((before, e.name().as_ref().len(), own));
                }
                depth += 1;
            }
            Event::Empty(e) => {
                if depth == 1 {
                    let own: Vec<String> = e.attributes().filter_map(Result::ok).map(|a| a.key.as_ref().to_owned()).collect();
                    push_child(&mut out, doc, before, after, e.name().as_ref().len(), &own, &decls, max)?;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some((start, name_len, own)) = child_start.take() {
                        push_child(&mut out, doc, start, after, name_len, &own, &decls, max)?;
                    }
                } else if depth == 0 {
                    // The wrapper closed; only misc may follow.
                    loop {
                        match r.read_event().map_err(|e| bad(format!("after the root: {e}")))? {
                            Event::Eof => break,
                            Event::Comment(_) | Event::PI(_) => {}
                            Event::Text(t) if t.chars().all(|c| c.is_ascii_whitespace()) => {}
                            _ => return Err(bad("content after the root element".into())),
                        }
                    }
                    break;
                }
            }
            Event::Eof => {
                if !seen_root {
                    return Err(bad("no root element".into()));
                }
                return Err(bad("the document ends inside the wrapper".into()));
            }
        }
    }
    Ok(out)
}

/// Checks the wrapper element and collects its namespace declarations.
fn root_check(e: &quick_xml::events::BytesStart<'_>, root: &str, decls: &mut Vec<(String, String)>, seen_root: &mut bool) -> Result<(), BulkError> {
    let bad = |m: String| BulkError::Malformed(m);
    if *seen_root {
        return Err(bad("more than one root element".into()));
    }
    *seen_root = true;
    let name = e.name().as_ref().to_owned();
    let (prefix, local) = name.split_once(':').map_or(("", name.as_str()), |(p, l)| (p, l));
    for a in e.attributes() {
        let a = a.map_err(|x| bad(format!("attribute of <{name}>: {x}")))?;
        let k = a.key.as_ref().to_owned();
        if k == "xmlns" || k.starts_with("xmlns:") {
            decls.push((k, a.value.to_string()));
        }
    }
    let ns_key = if prefix.is_empty() { "xmlns".to_owned() } else { format!("xmlns:{prefix}") };
    let ns = decls.iter().find(|(k, _)| *k == ns_key).map(|(_, v)| v.as_str());
    if local != root || ns != Some(SP_NS) {
        return Err(bad(format!("the root must be <{root}> in the namespace {SP_NS}, not <{name}>")));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn push_child(out: &mut Vec<Vec<u8>>, doc: &[u8], start: usize, end: usize, name_len: usize, own: &[String], decls: &[(String, String)], max: usize) -> Result<(), BulkError> {
    if out.len() >= max {
        return Err(BulkError::TooMany { got: out.len() + 1, max });
    }
    let text = doc.get(start..end).ok_or_else(|| BulkError::Malformed("child out of range".into()))?;
    let head = text.get(..1 + name_len).ok_or_else(|| BulkError::Malformed("child out of range".into()))?;
    let rest = text.get(1 + name_len..).ok_or_else(|| BulkError::Malformed("child out of range".into()))?;
    let mut d = Vec::with_capacity(text.len() + 160);
    d.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    d.extend_from_slice(head);
    for (k, v) in decls {
        if !own.iter().any(|o| o == k) {
            d.extend_from_slice(format!(" {k}=\"{}\"", v.replace('"', "&quot;")).as_bytes());
        }
    }
    d.extend_from_slice(rest);
    out.push(d);
    Ok(())
}

/// Counts the wrapper's children without building them (for the size
/// check before any work): `Err` as [`split`].
pub fn count(doc: &[u8], root: &str) -> Result<usize, BulkError> {
    split(doc, root, usize::MAX).map(|v| v.len())
}

/// Wraps LoST documents (each complete, with its XML declaration) in a
/// wrapper element.
pub fn wrap<'a>(root: &str, docs: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sp:{root} xmlns:sp=\"{SP_NS}\">\n").as_bytes());
    for d in docs {
        out.extend_from_slice(strip_decl(d));
        out.push(b'\n');
    }
    out.extend_from_slice(format!("</sp:{root}>\n").as_bytes());
    out
}

/// A document without its XML declaration and surrounding whitespace.
fn strip_decl(d: &[u8]) -> &[u8] {
    let mut d = d;
    if d.starts_with(b"<?xml")
        && let Some(i) = d.windows(2).position(|w| w == b"?>")
    {
        d = d.get(i + 2..).unwrap_or_default();
    }
    let s = d.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(d.len());
    let e = d.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |i| i + 1);
    d.get(s..e).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// The budget of new identifiers

/// Clients remembered at most; past it, clients whose window ended are
/// forgotten.
const MAX_CLIENTS: usize = 100_000;

/// Per client: the identifiers asked about in the window; a bulk is
/// charged for those not among them.
#[derive(Debug)]
pub struct NewIdentifierBudget {
    per_window: usize,
    window_s: u64,
    hasher: RandomState,
    clients: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    start: Timestamp,
    ids: HashSet<u64>,
}

impl NewIdentifierBudget {
    /// At most `per_window` new identifiers per client per `window_s`.
    pub fn new(per_window: usize, window_s: u64) -> NewIdentifierBudget {
        NewIdentifierBudget { per_window, window_s, hasher: RandomState::new(), clients: Mutex::new(HashMap::new()) }
    }

    /// Charges `client` for the identifiers among `ids` it has not asked
    /// about in the window; `Err(seconds until the window ends)` (and
    /// nothing charged) when that would exceed the budget.
    pub fn charge<'a>(&self, client: &str, ids: impl IntoIterator<Item = &'a str>, now: Timestamp) -> Result<usize, u32> {
        let window_ms = self.window_s.saturating_mul(1000);
        let hashes: Vec<u64> = ids.into_iter().map(|s| self.hasher.hash_one(s)).collect();
        let mut g = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !g.contains_key(client) && g.len() >= MAX_CLIENTS {
            g.retain(|_, s| now.millis_since(s.start) < window_ms);
        }
        let s = g.entry(client.to_owned()).or_insert_with(|| Seen { start: now, ids: HashSet::new() });
        if now.millis_since(s.start) >= window_ms {
            s.start = now;
            s.ids.clear();
        }
        let fresh: HashSet<u64> = hashes.into_iter().filter(|h| !s.ids.contains(h)).collect();
        if s.ids.len() + fresh.len() > self.per_window {
            let left = window_ms.saturating_sub(now.millis_since(s.start));
            return Err(u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX).max(1));
        }
        let n = fresh.len();
        s.ids.extend(fresh);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- two queries -->
<sp:bulkFindService xmlns:sp="urn:signpost:params:xml:ns:disc1" xmlns="urn:ietf:params:xml:ns:lost1">
  <findService recursive="true"><location id="l1" profile="sp-csi"><sp:csi>tel:+4915112345678</sp:csi></location><service>urn:service:mimi</service></findService>
  <findService xmlns="urn:ietf:params:xml:ns:lost1" recursive="true"><location id="l1" profile="sp-csi"><sp:csi>mailto:alice@mail.example</sp:csi></location><service>urn:service:mimi</service></findService>
</sp:bulkFindService>
"#;

    #[test]
    fn children_become_standalone_lost_requests() {
        let docs = split(DOC.as_bytes(), REQUEST_ROOT, 10).unwrap();
        assert_eq!(docs.len(), 2);
        for d in &docs {
            let r = signpost_schemas::Request::decode(d, &signpost_schemas::Limits::MESSAGE).unwrap();
            assert!(matches!(r, signpost_schemas::Request::FindService(_)), "{}", String::from_utf8_lossy(d));
        }
        assert_eq!(split(DOC.as_bytes(), REQUEST_ROOT, 1).unwrap_err(), BulkError::TooMany { got: 2, max: 1 });
    }

    #[test]
    fn bad_wrappers_are_named() {
        for (doc, says) in [
            ("<x/>", "root must be"),
            (r#"<sp:bulkFindService xmlns:sp="urn:other"/>"#, "root must be"),
            (r#"<sp:bulkFindService xmlns:sp="urn:signpost:params:xml:ns:disc1">hello</sp:bulkFindService>"#, "text outside"),
            (r#"<sp:bulkFindService xmlns:sp="urn:signpost:params:xml:ns:disc1"><a>"#, "ends inside"),
            (r#"<!DOCTYPE x [<!ENTITY a "b">]><x/>"#, "document type"),
            ("", "no root"),
            (r#"<sp:bulkFindService xmlns:sp="urn:signpost:params:xml:ns:disc1"></sp:bulkFindService><y/>"#, "after the root"),
        ] {
            let e = split(doc.as_bytes(), REQUEST_ROOT, 10).unwrap_err().to_string();
            assert!(e.contains(says), "{doc}: {e}");
        }
        assert_eq!(split(br#"<sp:bulkFindService xmlns:sp="urn:signpost:params:xml:ns:disc1"/>"#, REQUEST_ROOT, 10).unwrap().len(), 0);
    }

    #[test]
    fn wrapped_answers_split_back() {
        let a = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<errors xmlns=\"urn:ietf:params:xml:ns:lost1\" source=\"r.example\"><notFound/></errors>\n";
        let w = wrap(RESPONSE_ROOT, [&a[..], &a[..]]);
        let back = split(&w, RESPONSE_ROOT, 10).unwrap();
        assert_eq!(back.len(), 2);
        assert!(String::from_utf8_lossy(&back[1]).contains("<notFound/>"));
    }

    #[test]
    fn the_budget_charges_only_identifiers_not_seen_before_in_the_window() {
        let b = NewIdentifierBudget::new(3, 60);
        let t = Timestamp::from_secs(1000);
        assert_eq!(b.charge("ap", ["a", "b"], t), Ok(2));
        assert_eq!(b.charge("ap", ["a", "b", "c"], t), Ok(1));
        assert_eq!(b.charge("ap", ["a", "b", "c", "a"], t), Ok(0), "an address book again is free");
        assert_eq!(b.charge("ap", ["d"], Timestamp::from_secs(1010)), Err(50));
        assert_eq!(b.charge("other", ["d", "e", "f"], t), Ok(3), "per client");
        assert_eq!(b.charge("ap", ["d", "e", "f"], Timestamp::from_secs(1060)), Ok(3), "a new window");
    }
}
