//! HPACK (RFC 7541): the request-side decoder with its dynamic table, and
//! the few encodings the server's responses need.
//!
//! The encoder never indexes (every response field is a literal "without
//! indexing" or a static-table hit), so the peer's header-table size never
//! matters to it. The decoder keeps the 4,096-byte table the protocol
//! starts with; the server never advertises another size.

use std::collections::VecDeque;

/// Why a header block could not be decoded: a connection error
/// (COMPRESSION_ERROR), since the table is now out of step with the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpackError(pub &'static str);

/// Entry overhead counted against the table size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// The static table (RFC 7541 Appendix A), 1-based.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Code lengths of the Huffman code (RFC 7541 Appendix B), symbols 0–255
/// then EOS. The code is canonical: codes of one length are consecutive in
/// symbol order, and each length's first code follows from the counts, so
/// the lengths are the whole table.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10,
    10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5,
    5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23,
    23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23,
    20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21,
    21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28,
    27, 27, 27, 27, 27, 26, 30,
];

const MAX_CODE_BITS: usize = 30;
const EOS: u16 = 256;

/// The canonical decoding tables: per length, how many codes and (in
/// `symbols`) which symbols, in code order.
struct Huffman {
    count: [u16; MAX_CODE_BITS + 1],
    symbols: [u16; 257],
}

// Evaluated at compile time only: an index out of range fails the build.
#[allow(clippy::indexing_slicing)]
const fn huffman() -> Huffman {
    let mut count = [0u16; MAX_CODE_BITS + 1];
    let mut i = 0;
    while i < 257 {
        count[HUFFMAN_LENGTHS[i] as usize] += 1;
        i += 1;
    }
    // Symbols sorted by (length, symbol): a counting sort.
    let mut offset = [0u16; MAX_CODE_BITS + 2];
    let mut len = 1;
    while len <= MAX_CODE_BITS {
        offset[len + 1] = offset[len] + count[len];
        len += 1;
    }
    let mut symbols = [0u16; 257];
    let mut s = 0;
    while s < 257 {
        let l = HUFFMAN_LENGTHS[s] as usize;
        symbols[offset[l] as usize] = s as u16;
        offset[l] += 1;
        s += 1;
    }
    Huffman { count, symbols }
}

static HUFFMAN: Huffman = huffman();

/// Symbols whose codes are at most 8 bits, by their code's 8 leading bits
/// (padded): (symbol, length), length 0 where a longer code starts.
// Evaluated at compile time only: an index out of range fails the build.
#[allow(clippy::indexing_slicing)]
const fn fast_table() -> [(u8, u8); 256] {
    let h = huffman();
    let mut t = [(0u8, 0u8); 256];
    let mut code = 0u32;
    let mut k = 0;
    while k < 257 {
        let sym = h.symbols[k] as usize;
        let len = HUFFMAN_LENGTHS[sym] as u32;
        if k > 0 {
            let prev = HUFFMAN_LENGTHS[h.symbols[k - 1] as usize] as u32;
            code = (code + 1) << (len - prev);
        }
        if len <= 8 {
            let base = (code << (8 - len)) as usize;
            let mut j = 0;
            while j < (1usize << (8 - len)) {
                t[base + j] = (sym as u8, len as u8);
                j += 1;
            }
        }
        k += 1;
    }
    t
}

static FAST: [(u8, u8); 256] = fast_table();

/// Decodes a Huffman-coded string literal, appending to `out`: codes of up
/// to 8 bits (the common characters) by one table lookup, longer ones by
/// canonical decoding a bit at a time.
fn huffman_decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let h = &HUFFMAN;
    // `acc` holds `nbits` unread bits, left-aligned.
    let (mut acc, mut nbits, mut next) = (0u64, 0u32, 0usize);
    loop {
        while nbits <= 56 {
            let Some(&b) = src.get(next) else { break };
            acc |= u64::from(b) << (56 - nbits);
            nbits += 8;
            next += 1;
        }
        if nbits == 0 {
            return Ok(());
        }
        let (sym, len) = FAST.get((acc >> 56) as usize).copied().unwrap_or_default();
        if len != 0 && u32::from(len) <= nbits {
            out.push(sym);
            acc <<= len;
            nbits -= u32::from(len);
            continue;
        }
        if nbits < 8 {
            // The end: padding, at most 7 bits, all ones (a prefix of EOS).
            let mask = !(u64::MAX >> nbits);
            if acc & mask != mask {
                return Err(HpackError("invalid Huffman padding"));
            }
            return Ok(());
        }
        let (mut code, mut first, mut index, mut len) = (0u32, 0u32, 0u32, 0u32);
        loop {
            if len >= nbits || len as usize >= MAX_CODE_BITS {
                return Err(HpackError("invalid Huffman code"));
            }
            code |= ((acc >> (63 - len)) & 1) as u32;
            len += 1;
            let count = u32::from(*h.count.get(len as usize).ok_or(HpackError("Huffman code too long"))?);
            if code.wrapping_sub(first) < count {
                let sym = *h.symbols.get((index + code - first) as usize).ok_or(HpackError("Huffman table"))?;
                if sym == EOS {
                    return Err(HpackError("EOS in a Huffman string"));
                }
                out.push(sym as u8);
                acc <<= len;
                nbits -= len;
                break;
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
    }
}

/// Reads an integer with an `n`-bit prefix (RFC 7541 §5.1) at `*pos`.
fn integer(buf: &[u8], pos: &mut usize, n: u8) -> Result<usize, HpackError> {
    let first = *buf.get(*pos).ok_or(HpackError("truncated integer"))?;
    *pos += 1;
    let mask = (1u16 << n) as u8 - 1;
    let mut v = usize::from(first & mask);
    if v < usize::from(mask) {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos).ok_or(HpackError("truncated integer"))?;
        *pos += 1;
        if shift > 28 {
            return Err(HpackError("integer too large"));
        }
        v += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
}

/// Reads a string literal (RFC 7541 §5.2) into `out` (cleared first).
fn string(buf: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<(), HpackError> {
    let huff = buf.get(*pos).is_some_and(|b| b & 0x80 != 0);
    let len = integer(buf, pos, 7)?;
    let end = pos.checked_add(len).ok_or(HpackError("string length"))?;
    let raw = buf.get(*pos..end).ok_or(HpackError("truncated string"))?;
    *pos = end;
    out.clear();
    if huff {
        huffman_decode(raw, out)
    } else {
        out.extend_from_slice(raw);
        Ok(())
    }
}

/// One decoded header field, handed to the block's visitor.
#[derive(Debug)]
pub struct Field<'a> {
    /// Name (as sent; HTTP/2 requires lowercase: the caller checks).
    pub name: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// A dynamic-table entry: name, value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The request-side decoder of one connection.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first.
    table: VecDeque<Entry>,
    size: usize,
    max: usize,
    /// The most the peer may set `max` to (our SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { table: VecDeque::new(), size: 0, max: 4096, limit: 4096, name: Vec::new(), value: Vec::new() }
    }
}

impl Decoder {
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError("index 0"));
        }
        if let Some((n, v)) = STATIC.get(index - 1) {
            return Ok((n.as_bytes(), v.as_bytes()));
        }
        let (n, v) = self.table.get(index - 1 - STATIC.len()).ok_or(HpackError("index past the table"))?;
        Ok((n, v))
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        while self.size + size > self.max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
        // An entry larger than the table empties it and is not kept (§4.4).
        if size <= self.max {
            self.table.push_front((name.into(), value.into()));
            self.size += size;
        }
    }

    fn resize(&mut self, max: usize) {
        self.max = max;
        while self.size > self.max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }

    /// Decodes a whole header block, calling `visit` for every field in
    /// order. A visitor error stops nothing: the block is decoded to its
    /// end so the table stays in step, and the first visitor error is
    /// returned as `Ok(Err(..))`.
    pub fn decode<E>(&mut self, block: &[u8], mut visit: impl FnMut(Field<'_>) -> Result<(), E>) -> Result<Result<(), E>, HpackError> {
        let mut pos = 0;
        let mut first_err = None;
        let mut fields_seen = false;
        let mut emit = |f: Field<'_>, first_err: &mut Option<E>| {
            if first_err.is_none()
                && let Err(e) = visit(f)
            {
                *first_err = Some(e);
            }
        };
        while let Some(&b) = block.get(pos) {
            if b & 0x80 != 0 {
                // Indexed field.
                let i = integer(block, &mut pos, 7)?;
                let (n, v) = self.entry(i)?;
                emit(Field { name: n, value: v }, &mut first_err);
                fields_seen = true;
            } else if b & 0xe0 == 0x20 {
                // Dynamic table size update: only at the block's start.
                if fields_seen {
                    return Err(HpackError("table size update after a field"));
                }
                let max = integer(block, &mut pos, 5)?;
                if max > self.limit {
                    return Err(HpackError("table size update above the limit"));
                }
                self.resize(max);
            } else {
                // Literal: with incremental indexing (01), without (0000)
                // or never indexed (0001).
                let (prefix, index) = if b & 0xc0 == 0x40 { (6, true) } else { (4, false) };
                let i = integer(block, &mut pos, prefix)?;
                let mut name = std::mem::take(&mut self.name);
                let mut value = std::mem::take(&mut self.value);
                let r = (|| {
                    if i == 0 {
                        string(block, &mut pos, &mut name)?;
                    } else {
                        let (n, _) = self.entry(i)?;
                        name.clear();
                        name.extend_from_slice(n);
                    }
                    string(block, &mut pos, &mut value)
                })();
                if r.is_ok() {
                    emit(Field { name: &name, value: &value }, &mut first_err);
                    if index {
                        self.insert(&name, &value);
                    }
                }
                self.name = name;
                self.value = value;
                r?;
                fields_seen = true;
            }
        }
        Ok(match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        })
    }
}

/// Appends an integer with an `n`-bit prefix whose high bits are `flags`.
pub fn put_integer(out: &mut Vec<u8>, flags: u8, n: u8, v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends `:status` (indexed when the static table has it).
pub fn put_status(out: &mut Vec<u8>, status: u16) {
    let indexed = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if indexed != 0 {
        put_integer(out, 0x80, 7, indexed);
        return;
    }
    put_integer(out, 0x00, 4, 8);
    let mut digits = [0u8; 3];
    let s = status.min(999);
    digits[0] = b'0' + (s / 100) as u8;
    digits[1] = b'0' + (s / 10 % 10) as u8;
    digits[2] = b'0' + (s % 10) as u8;
    put_integer(out, 0x00, 7, 3);
    out.extend_from_slice(&digits);
}

/// Static-table index of `content-type`.
pub const CONTENT_TYPE: usize = 31;
/// Static-table index of `content-length`.
pub const CONTENT_LENGTH: usize = 28;

/// Appends a literal without indexing whose name is static-table entry
/// `index`.
pub fn put_indexed_name(out: &mut Vec<u8>, index: usize, value: &[u8]) {
    put_integer(out, 0x00, 4, index);
    put_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// Appends a field as a literal without indexing (name from the static
/// table when it has it). `name` must be lowercase.
pub fn put_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    match STATIC.iter().position(|(n, _)| *n == name) {
        Some(i) => put_integer(out, 0x00, 4, i + 1),
        None => {
            out.push(0x00);
            put_integer(out, 0x00, 7, name.len());
            out.extend_from_slice(name.as_bytes());
        }
    }
    put_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn fields(d: &mut Decoder, block: &[u8]) -> Vec<(String, String)> {
        let mut v = Vec::new();
        d.decode::<()>(block, |f| {
            v.push((String::from_utf8_lossy(f.name).into_owned(), String::from_utf8_lossy(f.value).into_owned()));
            Ok(())
        })
        .unwrap()
        .unwrap();
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    // RFC 7541 Appendix C.3: requests without Huffman coding, one table.
    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        let mut d = Decoder::default();
        let r1 = fields(&mut d, &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"));
        assert_eq!(r1, pairs(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")]));
        assert_eq!(d.size, 57);
        let r2 = fields(&mut d, &hex("8286 84be 5808 6e6f 2d63 6163 6865"));
        assert_eq!(r2, pairs(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache")]));
        assert_eq!(d.size, 110);
        let r3 = fields(&mut d, &hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"));
        assert_eq!(r3, pairs(&[(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value")]));
        assert_eq!(d.size, 164);
    }

    // RFC 7541 Appendix C.4: the same requests with Huffman coding.
    #[test]
    fn rfc7541_c4_requests_with_huffman() {
        let mut d = Decoder::default();
        let r1 = fields(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"));
        assert_eq!(r1[3], (":authority".to_owned(), "www.example.com".to_owned()));
        let r2 = fields(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf"));
        assert_eq!(r2[4], ("cache-control".to_owned(), "no-cache".to_owned()));
        let r3 = fields(&mut d, &hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"));
        assert_eq!(r3[4], ("custom-key".to_owned(), "custom-value".to_owned()));
        assert_eq!(d.size, 164);
    }

    // RFC 7541 Appendix C.6: responses with Huffman coding and a 256-byte
    // table (evictions), decoded with the same decoder.
    #[test]
    fn rfc7541_c6_responses_with_huffman_and_eviction() {
        let mut d = Decoder { max: 256, limit: 256, ..Decoder::default() };
        let r1 = fields(
            &mut d,
            &hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3"),
        );
        assert_eq!(
            r1,
            pairs(&[(":status", "302"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")])
        );
        assert_eq!(d.size, 222);
        let r2 = fields(&mut d, &hex("4883 640e ffc1 c0bf"));
        assert_eq!(r2[0], (":status".to_owned(), "307".to_owned()));
        assert_eq!(d.size, 222);
        let r3 = fields(
            &mut d,
            &hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"),
        );
        assert_eq!(r3[4], ("content-encoding".to_owned(), "gzip".to_owned()));
        assert_eq!(r3[5], ("set-cookie".to_owned(), "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1".to_owned()));
        assert_eq!(d.size, 215);
    }

    #[test]
    fn bad_blocks_are_errors_not_panics() {
        for b in [&hex("80")[..], &hex("ff")[..], &hex("be")[..], &hex("4085 ffff ffff ff00")[..], &hex("3fff ffff ffff 0f")[..], &hex("82 3f")[..], &hex("41ff")[..]] {
            let mut d = Decoder::default();
            assert!(d.decode::<()>(b, |_| Ok(())).is_err(), "{b:02x?}");
        }
        // Every truncation and every byte of garbage: no panic.
        let good = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        for n in 0..good.len() {
            let _ = Decoder::default().decode::<()>(&good[..n], |_| Ok(()));
            for x in 0..=255u8 {
                let mut g = good.clone();
                g[n] = x;
                let _ = Decoder::default().decode::<()>(&g, |_| Ok(()));
            }
        }
    }

    #[test]
    fn the_encoder_round_trips_through_the_decoder() {
        let mut out = Vec::new();
        put_status(&mut out, 200);
        put_status(&mut out, 413);
        put_field(&mut out, "content-type", b"application/lost+xml");
        put_field(&mut out, "x-long", &[b'a'; 300]);
        let mut d = Decoder::default();
        let f = fields(&mut d, &out);
        assert_eq!(f[0], (":status".to_owned(), "200".to_owned()));
        assert_eq!(f[1], (":status".to_owned(), "413".to_owned()));
        assert_eq!(f[2], ("content-type".to_owned(), "application/lost+xml".to_owned()));
        assert_eq!(f[3].1.len(), 300);
        assert_eq!(d.size, 0, "literals without indexing leave the table alone");
    }
}
