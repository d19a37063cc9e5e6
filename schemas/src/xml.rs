//! The XML layer: a bounded, namespace-aware reader that builds a small
//! borrowed tree, and a writer that escapes everything it is given.
//!
//! The reader never processes a DTD (a `<!DOCTYPE` is refused, so entity
//! bombs and external entities cost nothing), accepts only the five
//! predefined entities and character references, checks every limit while
//! it reads (never after), and decodes UTF-16 (RFC 5222 §8: "LoST … MUST
//! support UTF-8 and UTF-16") by transcoding once up front.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::error::{DecodeError, Problem};

/// The LoST namespace (RFC 5222 §15).
pub const LOST_NS: &str = "urn:ietf:params:xml:ns:lost1";
/// Signpost's extension namespace.
pub const SP_NS: &str = "urn:signpost:params:xml:ns:disc1";
/// The `xml:` namespace (for `xml:lang`).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Bounds on what the reader accepts. Every limit is checked while reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total input bytes.
    pub max_bytes: usize,
    /// Element nesting depth (the root is depth 1).
    pub max_depth: usize,
    /// Elements in the whole document.
    pub max_elements: usize,
    /// Attributes on one element (namespace declarations included).
    pub max_attributes: usize,
    /// Bytes of one text node or attribute value.
    pub max_text: usize,
}

impl Limits {
    /// For LoST requests and responses and feed frames: 64 KiB is far more
    /// than a findServiceResponse with dozens of mappings needs.
    pub const MESSAGE: Limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 16,
        max_elements: 2048,
        max_attributes: 24,
        max_text: 8 * 1024,
    };
    /// For files an operator loads (the root table) and bulk provisioning.
    pub const DOCUMENT: Limits = Limits {
        max_bytes: 256 * 1024 * 1024,
        max_depth: 16,
        max_elements: 8_000_000,
        max_attributes: 24,
        max_text: 64 * 1024,
    };
}

/// The namespace of an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ns {
    Lost,
    Sp,
    /// Unqualified (no namespace). The LoST schema counts such elements
    /// as extensions by mistake (its `notLost` pattern excludes the `lost1`
    /// namespace twice and the empty namespace never); Signpost refuses them.
    None,
    Other,
}

#[derive(Debug)]
pub(crate) struct Attr<'a> {
    /// Unqualified (`false`) or `xml:` (`true`); attributes in any other
    /// namespace are refused while reading, since no LoST or sp element
    /// allows them.
    pub xml: bool,
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

#[derive(Debug)]
pub(crate) struct Element<'a> {
    pub ns: Ns,
    pub name: &'a str,
    pub attrs: Vec<Attr<'a>>,
    pub children: Vec<Element<'a>>,
    pub text: Cow<'a, str>,
}

fn err(p: Problem, m: impl Into<String>) -> DecodeError {
    DecodeError::new(p, m)
}

/// Finds `part` inside `input` and returns it with `input`'s lifetime.
/// quick-xml hands out names and raw values borrowed from its event, even
/// when the event borrows from our input; this recovers the longer borrow
/// without copying (plain pointer arithmetic, checked).
fn reborrow<'a>(input: &'a str, part: &str) -> Option<&'a str> {
    let base = input.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    let off = p.checked_sub(base)?;
    input.get(off..off.checked_add(part.len())?)
}

/// Turns raw bytes into UTF-8 text: a UTF-8 BOM is dropped, a UTF-16 BOM
/// (either order) transcodes. Anything else must be valid UTF-8.
pub(crate) fn to_text(bytes: &[u8]) -> Result<Cow<'_, str>, DecodeError> {
    let utf16 = |le: bool, body: &[u8]| -> Result<Cow<'_, str>, DecodeError> {
        if !body.len().is_multiple_of(2) {
            return Err(err(Problem::Encoding, "UTF-16 document has an odd number of bytes"));
        }
        let units = body.chunks_exact(2).map(|c| match c {
            [a, b] if le => u16::from_le_bytes([*a, *b]),
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        });
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map(Cow::Owned)
            .map_err(|_| err(Problem::Encoding, "document is not valid UTF-16"))
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest)
            .map(Cow::Borrowed)
            .map_err(|e| err(Problem::Encoding, format!("document is not valid UTF-8 (at byte {})", e.valid_up_to() + 3))),
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        _ => std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|e| err(Problem::Encoding, format!("document is not valid UTF-8 (at byte {})", e.valid_up_to()))),
    }
}

/// Reads a whole document into a tree, enforcing `limits`.
/// `was_utf16` tells whether `input` came from UTF-16 bytes, so that the
/// declaration's encoding can be checked against what was really sent.
pub(crate) fn parse<'a>(input: &'a str, was_utf16: bool, limits: &Limits) -> Result<Element<'a>, DecodeError> {
    let mut reader = NsReader::from_str(input);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        cfg.check_comments = true;
    }
    let mut stack: Vec<Element<'a>> = Vec::with_capacity(8);
    let mut root: Option<Element<'a>> = None;
    let mut elements = 0usize;
    let mut seen_any = false;
    loop {
        let pos = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| err(Problem::NotWellFormed, format!("not well-formed XML near byte {pos}: {e}")))?;
        let ns = match ns {
            ResolveResult::Bound(n) if n.as_ref() == LOST_NS => Ns::Lost,
            ResolveResult::Bound(n) if n.as_ref() == SP_NS => Ns::Sp,
            ResolveResult::Bound(_) => Ns::Other,
            ResolveResult::Unbound => Ns::None,
            ResolveResult::Unknown(p) => {
                return Err(err(Problem::Namespace, format!("undeclared namespace prefix {p:?}")));
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err(err(Problem::NotWellFormed, "more than one root element"));
                }
                seen_any = true;
                elements += 1;
                if elements > limits.max_elements {
                    return Err(err(
                        Problem::TooManyElements,
                        format!("more than {} elements", limits.max_elements),
                    ));
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(err(
                        Problem::TooDeep,
                        format!("elements nest deeper than {} levels", limits.max_depth),
                    ));
                }
                let local = e.local_name();
                let name = reborrow(input, local.as_ref())
                    .ok_or_else(|| err(Problem::NotWellFormed, "element name is not valid UTF-8"))?;
                let mut attrs = Vec::new();
                let mut count = 0usize;
                for a in e.attributes() {
                    let a = a.map_err(|x| err(Problem::NotWellFormed, format!("bad attribute on <{name}>: {x}")))?;
                    count += 1;
                    if count > limits.max_attributes {
                        return Err(err(
                            Problem::TooManyAttributes,
                            format!("<{name}> has more than {} attributes", limits.max_attributes),
                        ));
                    }
                    if a.value.len() > limits.max_text {
                        return Err(err(
                            Problem::TextTooLong,
                            format!("an attribute of <{name}> is longer than {} bytes", limits.max_text),
                        ));
                    }
                    if a.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (ans, alocal) = reader.resolver().resolve_attribute(a.key);
                    let aname = reborrow(input, alocal.as_ref())
                        .ok_or_else(|| err(Problem::NotWellFormed, "attribute name is not valid UTF-8"))?;
                    let xml = match ans {
                        ResolveResult::Unbound => false,
                        ResolveResult::Bound(n) if n.as_ref() == XML_NS => true,
                        ResolveResult::Bound(n) => {
                            return Err(err(
                                Problem::Schema,
                                format!(
                                    "<{name}> carries attribute {aname:?} in namespace {:?}; LoST and sp elements allow no foreign attributes",
                                    n.as_ref()
                                ),
                            ));
                        }
                        ResolveResult::Unknown(p) => {
                            return Err(err(Problem::Namespace, format!("undeclared namespace prefix {p:?}")));
                        }
                    };
                    let raw = reborrow(input, a.value.as_ref());
                    let value = match raw {
                        Some(r) if !r.contains(['&', '\t', '\n', '\r']) => Cow::Borrowed(r),
                        _ => Cow::Owned(
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .map_err(|x| {
                                    err(
                                        if matches!(x, quick_xml::errors::Error::Escape(quick_xml::escape::EscapeError::UnrecognizedEntity(..))) {
                                            Problem::Entity
                                        } else {
                                            Problem::NotWellFormed
                                        },
                                        format!("attribute {aname:?} of <{name}>: {x}"),
                                    )
                                })?
                                .into_owned(),
                        ),
                    };
                    attrs.push(Attr { xml, name: aname, value });
                }
                let el = Element { ns, name, attrs, children: Vec::new(), text: Cow::Borrowed("") };
                if matches!(event, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| err(Problem::NotWellFormed, "unexpected end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                append_text(&mut stack, content, limits)?;
            }
            Event::CData(c) => {
                let raw = c.into_inner();
                append_text(&mut stack, raw, limits)?;
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match r.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(err(
                                Problem::Entity,
                                format!(
                                    "reference to undefined entity &{};",
                                    other
                                ),
                            ));
                        }
                    },
                    Err(e) => return Err(err(Problem::NotWellFormed, format!("bad character reference: {e}"))),
                };
                let mut buf = [0u8; 4];
                append_text(&mut stack, Cow::Owned(c.encode_utf8(&mut buf).to_owned()), limits)?;
            }
            Event::DocType(_) => {
                return Err(err(
                    Problem::Dtd,
                    "document type declarations (DOCTYPE) are not allowed: Signpost processes no DTDs or entities",
                ));
            }
            Event::Decl(d) => {
                if seen_any {
                    return Err(err(Problem::NotWellFormed, "XML declaration after the root element"));
                }
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| err(Problem::NotWellFormed, format!("bad XML declaration: {e}")))?;
                    let enc = enc.to_ascii_lowercase();
                    let ok = match enc.as_str() {
                        "utf-8" | "utf8" => !was_utf16,
                        "utf-16" | "utf-16le" | "utf-16be" => was_utf16,
                        _ => false,
                    };
                    if !ok {
                        return Err(err(
                            Problem::Encoding,
                            format!(
                                "declared encoding {:?} does not match the document; Signpost reads UTF-8 and UTF-16 (with a BOM)",
                                enc
                            ),
                        ));
                    }
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(err(Problem::NotWellFormed, "document ends inside an element (truncated?)"));
    }
    root.ok_or_else(|| err(Problem::NotWellFormed, "document has no root element"))
}

fn append_text<'a>(stack: &mut [Element<'a>], piece: Cow<'a, str>, limits: &Limits) -> Result<(), DecodeError> {
    let Some(top) = stack.last_mut() else {
        if piece.trim().is_empty() {
            return Ok(());
        }
        return Err(err(Problem::NotWellFormed, "text outside the root element"));
    };
    if top.text.len() + piece.len() > limits.max_text {
        return Err(err(
            Problem::TextTooLong,
            format!("text in <{}> is longer than {} bytes", top.name, limits.max_text),
        ));
    }
    if top.text.is_empty() {
        top.text = piece;
    } else {
        top.text.to_mut().push_str(&piece);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Helpers the message decoders use.

impl<'a> Element<'a> {
    pub fn is(&self, ns: Ns, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// `lost:name` or `sp:name`, for messages.
    pub fn label(&self) -> String {
        let p = match self.ns {
            Ns::Lost => "",
            Ns::Sp => "sp:",
            Ns::None => "(unqualified) ",
            Ns::Other => "(foreign) ",
        };
        format!("<{p}{}>", self.name)
    }

    /// An unqualified attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|a| !a.xml && a.name == name).map(|a| a.value.as_ref())
    }

    pub fn req(&self, name: &str) -> Result<&str, DecodeError> {
        self.attr(name)
            .ok_or_else(|| err(Problem::Schema, format!("{} lacks the required attribute {name:?}", self.label())))
    }

    pub fn lang(&self) -> Option<&str> {
        self.attrs.iter().find(|a| a.xml && a.name == "lang").map(|a| a.value.as_ref())
    }

    /// Refuses any attribute not listed (`xml:lang` only where `lang`).
    pub fn only_attrs(&self, allowed: &[&str], lang: bool) -> Result<(), DecodeError> {
        for a in &self.attrs {
            let ok = if a.xml { lang && a.name == "lang" } else { allowed.contains(&a.name) };
            if !ok {
                let p = if a.xml { "xml:" } else { "" };
                return Err(err(
                    Problem::Schema,
                    format!("{} does not allow the attribute {p}{}", self.label(), a.name),
                ));
            }
        }
        Ok(())
    }

    pub fn no_text(&self) -> Result<(), DecodeError> {
        if self.text.trim().is_empty() {
            Ok(())
        } else {
            Err(err(Problem::Schema, format!("{} may not contain text", self.label())))
        }
    }

    pub fn no_children(&self) -> Result<(), DecodeError> {
        match self.children.first() {
            None => Ok(()),
            Some(c) => Err(err(Problem::Schema, format!("{} may not contain {}", self.label(), c.label()))),
        }
    }

    /// The value of an `xsd:token`-like text: trimmed.
    pub fn token_text(&self) -> &str {
        self.text.trim()
    }
}

/// A value that failed its syntax check.
pub(crate) fn bad_value(what: impl std::fmt::Display) -> DecodeError {
    err(Problem::Value, what.to_string())
}

pub(crate) fn schema(what: impl Into<String>) -> DecodeError {
    err(Problem::Schema, what)
}

// ---------------------------------------------------------------------------
// Writer

/// Writes XML into a `String`. Names are written as given (they are
/// constants in this crate); attribute values and text are escaped.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub out: String,
}

impl Writer {
    /// A document: the XML declaration first.
    pub fn document(capacity: usize) -> Writer {
        let mut out = String::with_capacity(capacity);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        Writer { out }
    }
    /// A fragment: no declaration.
    #[cfg(test)]
    pub fn fragment(capacity: usize) -> Writer {
        Writer { out: String::with_capacity(capacity) }
    }
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self
    }
    pub fn attr(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_into(&mut self.out, value, true);
        self.out.push('"');
        self
    }
    pub fn attr_opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.attr(name, v);
        }
        self
    }
    pub fn attr_num(&mut self, name: &str, value: u64) -> &mut Self {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        push_u64(&mut self.out, value);
        self.out.push('"');
        self
    }
    pub fn attr_time(&mut self, name: &str, t: crate::time::Timestamp) -> &mut Self {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        t.write(&mut self.out);
        self.out.push('"');
        self
    }
    /// Writes `name="a b c"`.
    pub fn attr_list<'x>(&mut self, name: &str, items: impl IntoIterator<Item = &'x str>) -> &mut Self {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        for (i, it) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(' ');
            }
            escape_into(&mut self.out, it, true);
        }
        self.out.push('"');
        self
    }
    /// `message="…" xml:lang="…"`, always as the pair the schema requires.
    pub fn message(&mut self, m: Option<&crate::lost::Message>) -> &mut Self {
        if let Some(m) = m {
            self.attr("message", &m.text).attr("xml:lang", &m.lang);
        }
        self
    }
    /// Ends a start tag that has children: `>`.
    pub fn gt(&mut self) -> &mut Self {
        self.out.push('>');
        self
    }
    /// Ends an empty element: `/>`.
    pub fn empty(&mut self) -> &mut Self {
        self.out.push_str("/>");
        self
    }
    pub fn text(&mut self, t: &str) -> &mut Self {
        escape_into(&mut self.out, t, false);
        self
    }
    pub fn close(&mut self, name: &str) -> &mut Self {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }
    /// `<name attrs…>text</name>` for a leaf with no attributes.
    pub fn leaf(&mut self, name: &str, t: &str) -> &mut Self {
        self.open(name).gt().text(t).close(name)
    }
    pub fn finish(mut self) -> String {
        self.out.push('\n');
        self.out
    }
}

pub(crate) fn push_u64(out: &mut String, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &b in buf.get(i..).unwrap_or(&[]) {
        out.push(char::from(b));
    }
}

/// Escapes `&`, `<`, `>` and, in attributes, `"` and the whitespace that
/// attribute-value normalization would otherwise fold (tab, LF, CR), so
/// that what is written is what is read back.
fn escape_into(out: &mut String, s: &str, attr: bool) {
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' if attr => "&quot;",
            b'\t' if attr => "&#9;",
            b'\n' if attr => "&#10;",
            b'\r' => "&#13;",
            _ => continue,
        };
        out.push_str(s.get(last..i).unwrap_or(""));
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(s.get(last..).unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &str) -> Result<Element<'_>, DecodeError> {
        parse(s, false, &Limits::MESSAGE)
    }

    #[test]
    fn namespaces_any_prefix() {
        let d = doc(r#"<l:a xmlns:l="urn:ietf:params:xml:ns:lost1" xmlns:s="urn:signpost:params:xml:ns:disc1"><s:b x="1"/></l:a>"#).unwrap();
        assert_eq!(d.ns, Ns::Lost);
        assert_eq!(d.children[0].ns, Ns::Sp);
        assert_eq!(d.children[0].attr("x"), Some("1"));
    }

    #[test]
    fn entities() {
        let d = doc(r#"<a x="&lt;&#65;&#x42;">&amp;&quot;t&#x1F600;</a>"#).unwrap();
        assert_eq!(d.attr("x"), Some("<AB"));
        assert_eq!(d.text, "&\"t\u{1F600}");
        assert_eq!(doc("<a>&foo;</a>").unwrap_err().problem(), Problem::Entity);
        assert_eq!(doc(r#"<a x="&foo;"/>"#).unwrap_err().problem(), Problem::Entity);
    }

    #[test]
    fn escaping_round_trips() {
        let mut w = Writer::fragment(64);
        w.open("a").attr("x", "a\"<&>\t\n\r b").gt().text("<&>\r\n").close("a");
        let s = w.finish();
        let d = doc(&s).unwrap();
        assert_eq!(d.attr("x"), Some("a\"<&>\t\n\r b"));
        assert_eq!(d.text, "<&>\r\n");
    }

    #[test]
    fn utf16_with_bom() {
        let text = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><a>\u{e9}</a>";
        let mut le = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
        }
        let t = to_text(&le).unwrap();
        assert_eq!(parse(&t, true, &Limits::MESSAGE).unwrap().text, "\u{e9}");
        // A UTF-8 document that claims to be UTF-16 is refused.
        assert_eq!(doc(text).unwrap_err().problem(), Problem::Encoding);
        assert_eq!(doc("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>").unwrap_err().problem(), Problem::Encoding);
        assert_eq!(to_text(b"<a>\xff</a>").unwrap_err().problem(), Problem::Encoding);
    }
}
