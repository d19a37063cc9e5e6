//! One pass over the findService that clients actually send — the form
//! [`crate::Request::encode`] writes: the declaration, `findService` with
//! the LoST and `sp` namespace declarations, `sp-csi` locations, a
//! service, a path, a sender context — read without building a tree.
//!
//! It is *sound, not complete*: it returns `None` at the first byte it is
//! not sure about (another attribute order, a comment, an entity, a
//! non-ASCII byte, a foreign extension, anything near a limit), and the
//! full decoder then reads the document and accepts or refuses it as it
//! always did. Whenever it returns `Some(f)`, the full decoder returns the
//! same `f` for the same bytes (`tests/fast.rs` checks this on generated
//! requests and on mutations of them).

use crate::csi::Csi;
use crate::lost::{FindService, Location, Path, SenderContext, Tag, Uri, collapse_ws, csi_value};
use crate::name::Name;
use crate::xml::{LOST_NS, Limits, SP_NS};

/// Reads a findService in the canonical shape, or says it cannot.
pub(crate) fn find_service(b: &[u8], limits: &Limits) -> Option<FindService> {
    // Small, plain ASCII documents only; anything else takes the full path.
    if b.len() > limits.max_bytes || b.len() > 8 * 1024 || limits.max_depth < 3 || limits.max_attributes < 3 {
        return None;
    }
    if !plain(b) {
        return None;
    }
    // ASCII (checked above), so every byte offset is a character boundary.
    let t = std::str::from_utf8(b).ok()?;
    let mut s = Scan { b, t, i: 0, max_text: limits.max_text };
    if s.starts(b"<?") {
        s.lit(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    }
    s.ws();
    s.lit(b"<findService xmlns=\"")?;
    s.lit(LOST_NS.as_bytes())?;
    s.lit(b"\" xmlns:sp=\"")?;
    s.lit(SP_NS.as_bytes())?;
    s.lit(b"\"")?;
    let recursive = match s.attr(b"recursive") {
        Some(v) => match v {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return None,
        },
        None => false,
    };
    s.lit(b">")?;
    let mut elements = 1usize;
    let mut f = FindService { recursive, locations: Vec::new(), service: None, path: None, context: None };
    s.ws();
    while s.starts(b"<location ") {
        s.lit(b"<location")?;
        let id = collapse_ws(s.attr(b"id")?);
        if s.attr(b"profile")? != "sp-csi" {
            return None;
        }
        s.lit(b">")?;
        s.ws();
        s.lit(b"<sp:csi>")?;
        let csi: Csi = csi_value(s.text()?).ok()?;
        s.lit(b"</sp:csi>")?;
        s.ws();
        s.lit(b"</location>")?;
        s.ws();
        elements += 2;
        f.locations.push(Location::Csi { id, csi });
    }
    if f.locations.is_empty() {
        return None;
    }
    if s.starts(b"<service>") {
        s.lit(b"<service>")?;
        f.service = Some(Uri::parse(s.text()?).ok()?);
        s.lit(b"</service>")?;
        s.ws();
        elements += 1;
    }
    if s.starts(b"<path>") {
        s.lit(b"<path>")?;
        s.ws();
        let mut vias = Vec::new();
        while s.starts(b"<via ") {
            s.lit(b"<via")?;
            vias.push(Name::parse(s.attr(b"source")?).ok()?);
            s.lit(b"/>")?;
            s.ws();
            elements += 1;
        }
        s.lit(b"</path>")?;
        s.ws();
        elements += 1;
        f.path = Some(Path::from_vec(vias)?);
    }
    if s.starts(b"<sp:context") {
        s.lit(b"<sp:context")?;
        let sender_provider = match s.attr(b"senderProvider") {
            Some(v) => Some(Name::parse(v).ok()?),
            None => None,
        };
        let tags = match s.attr(b"tags") {
            Some(v) => Tag::list_of(v).ok()?,
            None => Vec::new(),
        };
        s.lit(b"/>")?;
        s.ws();
        elements += 1;
        f.context = Some(SenderContext { sender_provider, tags });
    }
    s.lit(b"</findService>")?;
    s.ws();
    (s.i == b.len() && elements <= limits.max_elements).then_some(f)
}

/// No byte at or above 0x80, no `&`, no control character but tab, line
/// feed and carriage return: eight bytes at a time.
fn plain(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let bad = |c: u8| c >= 0x80 || c == b'&' || (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r'));
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        let v = u64::from_le_bytes(x);
        // A byte with its high bit set, a byte below 0x20, or an `&`
        // (a zero byte of v ^ 0x26…): each sets that byte's high bit.
        let amp = v ^ (LO * u64::from(b'&'));
        let suspect = (v | (v.wrapping_sub(LO * 0x20) & !v) | (amp.wrapping_sub(LO) & !amp)) & HI;
        if suspect != 0 && w.iter().any(|&c| bad(c)) {
            return false;
        }
    }
    !words.remainder().iter().any(|&c| bad(c))
}

struct Scan<'a> {
    b: &'a [u8],
    /// `b` as text.
    t: &'a str,
    i: usize,
    max_text: usize,
}

impl<'a> Scan<'a> {
    fn starts(&self, p: &[u8]) -> bool {
        self.b.get(self.i..).is_some_and(|r| r.starts_with(p))
    }
    fn lit(&mut self, p: &[u8]) -> Option<()> {
        if self.starts(p) {
            self.i += p.len();
            Some(())
        } else {
            None
        }
    }
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    /// ` name="value"` (one space, double quotes, no whitespace other than
    /// spaces inside: attribute-value normalisation never changes it).
    fn attr(&mut self, name: &[u8]) -> Option<&'a str> {
        let r = self.b.get(self.i..)?;
        let rest = r.strip_prefix(b" ")?.strip_prefix(name)?.strip_prefix(b"=\"")?;
        let end = rest.iter().position(|&c| c == b'"')?;
        let v = rest.get(..end)?;
        if v.len() > self.max_text || v.iter().any(|&c| matches!(c, b'<' | b'\t' | b'\n' | b'\r')) {
            return None;
        }
        let start = self.i + 1 + name.len() + 2;
        self.i = start + end + 1;
        self.t.get(start..start + v.len())
    }
    /// Character data up to the next `<`.
    fn text(&mut self) -> Option<&'a str> {
        let r = self.b.get(self.i..)?;
        let end = r.iter().position(|&c| c == b'<')?;
        let v = r.get(..end)?;
        if v.len() > self.max_text || v.contains(&b'>') {
            return None;
        }
        let start = self.i;
        self.i += end;
        self.t.get(start..start + v.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_word_at_a_time_check_agrees_with_the_byte_at_a_time_one() {
        let naive = |b: &[u8]| !b.iter().any(|&c| c >= 0x80 || c == b'&' || (c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r')));
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet: Vec<u8> = (0u8..=255).collect();
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            // Mostly printable, with a rare byte from anywhere.
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 13 == 0 { alphabet[(r >> 8) as usize % 256] } else { b' ' + (r >> 16) as u8 % 94 }
                })
                .collect();
            assert_eq!(super::plain(&b), naive(&b), "{b:?}");
        }
    }
}
