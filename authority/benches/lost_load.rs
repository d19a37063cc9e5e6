//! A LoST load generator for `bench/authority-compare.sh`: findService
//! requests over mutually authenticated TLS 1.3 + HTTP/2 for a set of
//! numbers, each request for the next number of the set, from `--conns`
//! connections with `--streams` requests in flight on each, until
//! `--secs` seconds or `--requests` requests, whichever comes first (the
//! first requests ask every number of the set once, in its order).
//!
//! ```sh
//! lost_load --url https://127.0.0.1:PORT/lost --server dp.de.example \
//!     --ca ca.pem --cert client.pem --key client.key --numbers set.txt \
//!     --conns 4 --streams 32 --secs 20 [--requests N]
//! ```
//!
//! Why not h2load: it cannot present a client certificate, and it sends
//! one body for every request. This sends the canonical findService
//! (`FindService::for_csi`, the body a Signpost resolver sends) of each
//! number of the set in turn, and counts as answers the responses with
//! status 200 whose body is a `<findServiceResponse>`. It has to cost the
//! client less than the server (one core each): each connection is a
//! blocking thread with a minimal HTTP/2 client (RFC 9113) that writes
//! its pre-encoded requests in batches and reads only what it counts
//! (the `:status` from the first header byte, which works with a server
//! whose encoder never indexes, as Signpost's does; a stream's first body
//! bytes). It prints one line: `answers A other O errors E secs S`.
//! `--print-body NUMBER` prints the body for one number and exits.
//! Without `--url` (cargo test), it checks its framing and exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use signpost_schemas::{Csi, FindService, Request};
use signpost_trust::TrustAnchor;
use signpost_trust::tls::{Identity, client_config};

/// At most this many numbers are read from `--numbers`.
const MAX_NUMBERS: usize = 1_000_000;

/// The HTTP/2 connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types and flags (RFC 9113 §6).
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;
const PADDED: u8 = 8;
const PRIORITY: u8 = 0x20;

/// Our receive windows: large, topped up as answers arrive.
const WINDOW: u32 = 1 << 30;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} {v:?} is not a number")))
}

/// The request body for a number such as `+4915100000007`.
fn body(number: &str) -> Result<Vec<u8>, String> {
    let csi = Csi::from_wire(&format!("tel:{}", number.trim())).map_err(|e| format!("{number:?}: {e}"))?;
    Ok(Request::FindService(FindService::for_csi(csi, false)).encode().into_bytes())
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).unwrap();
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2).
fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// The header block of `POST /lost` with a LoST body of `len` bytes, as
/// HTTP/2 clients send it (nghttp2, hyper): the first request of a
/// connection adds `:path`, `:authority` and `content-type` to the
/// server's dynamic table, later ones refer to them by index (RFC 7541
/// §6.1, §6.2.1); `content-length` is a literal without indexing.
fn request_headers(authority: &str, len: usize, first: bool) -> Vec<u8> {
    let mut h = vec![0x83, 0x87]; // :method POST, :scheme https
    if first {
        // Literal with incremental indexing, name from the static table.
        for (index, v) in [(4, b"/lost".as_slice()), (1, authority.as_bytes()), (31, b"application/lost+xml")] {
            hpack_int(&mut h, 0x40, 6, index);
            hpack_str(&mut h, v);
        }
    } else {
        // Newest first: content-type 62, :authority 63, :path 64.
        h.extend_from_slice(&[0x80 | 64, 0x80 | 63, 0x80 | 62]);
    }
    hpack_int(&mut h, 0, 4, 28); // content-length, literal without indexing
    hpack_str(&mut h, len.to_string().as_bytes());
    h
}

/// One request (HEADERS, then DATA with END_STREAM) on `stream`.
fn push_request(out: &mut Vec<u8>, stream: u32, headers: &[u8], body: &[u8]) {
    frame_header(out, headers.len(), HEADERS, END_HEADERS, stream);
    out.extend_from_slice(headers);
    frame_header(out, body.len(), DATA, END_STREAM, stream);
    out.extend_from_slice(body);
}

/// Whether a response body is a findServiceResponse (the root element
/// follows the XML declaration).
fn is_found(b: &[u8]) -> bool {
    b.windows(20).any(|w| w == b"<findServiceResponse")
}

/// What one connection counted.
#[derive(Default)]
struct Counts {
    answers: u64,
    other: u64,
    errors: u64,
    first_problem: Option<String>,
}

/// A stream in flight: its status (from the first header byte) and its
/// first body bytes.
#[derive(Default)]
struct Pending {
    ok_status: bool,
    head: Vec<u8>,
}

struct Load {
    bodies: Vec<Vec<u8>>,
    /// The header block of a connection's first request for each body.
    first_headers: Vec<Vec<u8>>,
    /// The longest body.
    longest: usize,
    headers: Vec<Vec<u8>>,
    streams: u64,
    limit: u64,
    secs: u64,
    start: Instant,
    sent: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    /// The index of the next number to ask, or `None` when the run is over.
    fn next(&self) -> Option<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let k = self.sent.fetch_add(1, Ordering::Relaxed);
        if k >= self.limit || self.start.elapsed().as_secs() >= self.secs {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        Some((k % self.bodies.len() as u64) as usize)
    }
}

/// Runs one connection until the load is over and its streams are answered.
fn connection(load: &Load, addr: &str, server: ServerName<'static>, tls: Arc<rustls::ClientConfig>) -> Result<Counts, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(tls, server).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(PREFACE);
    // SETTINGS: no push, a large initial stream window; a large
    // connection window.
    frame_header(&mut out, 12, SETTINGS, 0, 0);
    out.extend_from_slice(&[0, 2, 0, 0, 0, 0, 0, 4]);
    out.extend_from_slice(&WINDOW.to_be_bytes());
    frame_header(&mut out, 4, WINDOW_UPDATE, 0, 0);
    out.extend_from_slice(&(WINDOW - 65_535).to_be_bytes());
    let mut c = Counts::default();
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut next_id: u32 = 1;
    // The server's limits on what we send.
    let mut max_streams = load.streams;
    let mut send_window: i64 = 65_535;
    let mut received: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0usize;
    let mut settled = false;
    loop {
        // Fill the streams (once the server's SETTINGS arrived).
        while settled && (pending.len() as u64) < max_streams && send_window >= load.longest as i64 {
            let Some(i) = load.next() else { break };
            let b = &load.bodies[i];
            send_window -= b.len() as i64;
            let h = if next_id == 1 { &load.first_headers[i] } else { &load.headers[i] };
            push_request(&mut out, next_id, h, b);
            pending.insert(next_id, Pending::default());
            next_id += 2;
        }
        if !out.is_empty() {
            s.write_all(&out).map_err(|e| format!("write: {e}"))?;
            s.flush().map_err(|e| format!("flush: {e}"))?;
            out.clear();
        }
        if settled && pending.is_empty() && load.stop.load(Ordering::Relaxed) {
            return Ok(c);
        }
        let n = s.read(&mut buf[have..]).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        have += n;
        // Whole frames.
        let mut at = 0;
        while have - at >= 9 {
            let len = (usize::from(buf[at]) << 16) | (usize::from(buf[at + 1]) << 8) | usize::from(buf[at + 2]);
            if have - at < 9 + len {
                break;
            }
            let (kind, flags) = (buf[at + 3], buf[at + 4]);
            let stream = u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]) & 0x7fff_ffff;
            let payload = &buf[at + 9..at + 9 + len];
            at += 9 + len;
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    for p in payload.chunks_exact(6) {
                        let v = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
                        if u16::from_be_bytes([p[0], p[1]]) == 3 {
                            max_streams = max_streams.min(u64::from(v));
                        }
                    }
                    frame_header(&mut out, 0, SETTINGS, ACK, 0);
                    settled = true;
                }
                PING if flags & ACK == 0 => {
                    frame_header(&mut out, payload.len(), PING, ACK, 0);
                    out.extend_from_slice(payload);
                }
                WINDOW_UPDATE if stream == 0 && payload.len() == 4 => {
                    send_window += i64::from(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff);
                }
                HEADERS => {
                    if let Some(p) = pending.get_mut(&stream) {
                        let mut block = payload;
                        if flags & PADDED != 0 {
                            block = block.get(1..).unwrap_or(&[]);
                        }
                        if flags & PRIORITY != 0 {
                            block = block.get(5..).unwrap_or(&[]);
                        }
                        // `:status: 200` is static-table entry 8.
                        p.ok_status |= block.first() == Some(&0x88);
                    }
                    if flags & END_STREAM != 0 && pending.remove(&stream).is_some() {
                        c.other += 1;
                    }
                }
                DATA => {
                    received += len as u64;
                    if let Some(p) = pending.get_mut(&stream)
                        && p.head.len() < 120
                    {
                        p.head.extend_from_slice(&payload[..payload.len().min(120 - p.head.len())]);
                    }
                    if flags & END_STREAM != 0
                        && let Some(p) = pending.remove(&stream)
                    {
                        if p.ok_status && is_found(&p.head) {
                            c.answers += 1;
                        } else {
                            c.other += 1;
                            c.first_problem.get_or_insert_with(|| format!("status 200: {}, body {}", p.ok_status, String::from_utf8_lossy(&p.head)));
                        }
                    }
                }
                RST_STREAM if pending.remove(&stream).is_some() => {
                    c.errors += 1;
                    c.first_problem.get_or_insert_with(|| format!("stream {stream} reset"));
                }
                GOAWAY => {
                    c.errors += pending.len() as u64;
                    c.first_problem.get_or_insert_with(|| format!("GOAWAY: {}", String::from_utf8_lossy(payload.get(8..).unwrap_or(&[]))));
                    return Ok(c);
                }
                _ => {}
            }
        }
        buf.copy_within(at..have, 0);
        have -= at;
        if received >= u64::from(WINDOW / 2) {
            frame_header(&mut out, 4, WINDOW_UPDATE, 0, 0);
            out.extend_from_slice(&u32::try_from(received).unwrap().to_be_bytes());
            received = 0;
        }
    }
}

fn main() {
    if let Some(n) = arg("--print-body") {
        // The body of one number (for h2load, which sends one body).
        print!("{}", String::from_utf8_lossy(&body(&n).unwrap()));
        return;
    }
    let Some(url) = arg("--url") else {
        self_check();
        println!("lost_load: self-check passed (pass --url to load a server)");
        return;
    };
    let rest = url.strip_prefix("https://").expect("--url https://HOST:PORT/lost");
    let addr = rest.split('/').next().unwrap().to_owned();
    let server = ServerName::try_from(arg("--server").expect("--server ID")).unwrap();
    let anchor = TrustAnchor::from_pem(&std::fs::read(arg("--ca").expect("--ca PEM")).unwrap()).unwrap();
    let id = Identity::from_pem(&std::fs::read(arg("--cert").expect("--cert PEM")).unwrap(), &std::fs::read(arg("--key").expect("--key PEM")).unwrap()).unwrap();
    let mut cfg = client_config(&anchor, Some(&id)).unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(cfg);
    let text = std::fs::read_to_string(arg("--numbers").expect("--numbers FILE")).unwrap();
    let bodies: Vec<Vec<u8>> = text.lines().filter(|l| !l.trim().is_empty()).take(MAX_NUMBERS).map(|l| body(l).unwrap()).collect();
    assert!(!bodies.is_empty(), "--numbers lists no number");
    let headers = bodies.iter().map(|b| request_headers(&addr, b.len(), false)).collect();
    let first_headers = bodies.iter().map(|b| request_headers(&addr, b.len(), true)).collect();
    let conns = num("--conns", 4).max(1);
    let load = Arc::new(Load {
        longest: bodies.iter().map(Vec::len).max().unwrap_or(0),
        bodies,
        first_headers,
        headers,
        streams: num("--streams", 32).max(1),
        limit: num("--requests", u64::MAX),
        secs: num("--secs", 10),
        start: Instant::now(),
        sent: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (load, addr, server, tls) = (load.clone(), addr.clone(), server.clone(), tls.clone());
            std::thread::spawn(move || connection(&load, &addr, server, tls))
        })
        .collect();
    let mut total = Counts::default();
    for t in threads {
        match t.join().unwrap() {
            Ok(c) => {
                total.answers += c.answers;
                total.other += c.other;
                total.errors += c.errors;
                total.first_problem = total.first_problem.or(c.first_problem);
            }
            Err(e) => {
                total.errors += 1;
                total.first_problem.get_or_insert(e);
            }
        }
    }
    if let Some(p) = total.first_problem {
        eprintln!("lost_load: first non-answer: {p}");
    }
    println!("answers {} other {} errors {} secs {:.3}", total.answers, total.other, total.errors, load.start.elapsed().as_secs_f64());
}

/// Checks the request encoding against the project's own HTTP/2 pieces
/// where it can (the body decodes; the HPACK integers of RFC 7541 C.1).
fn self_check() {
    let b = body("+4915100000007").unwrap();
    assert!(matches!(Request::decode(&b, &signpost_schemas::Limits::MESSAGE).unwrap(), Request::FindService(_)));
    assert!(body("not a number").is_err());
    let mut v = Vec::new();
    hpack_int(&mut v, 0, 5, 10);
    assert_eq!(v, [10]);
    v.clear();
    hpack_int(&mut v, 0, 5, 1337);
    assert_eq!(v, [31, 154, 10]);
    let h = request_headers("127.0.0.1:8443", 300, true);
    assert_eq!(&h[..4], &[0x83, 0x87, 0x44, 0x05]);
    assert_eq!(&request_headers("127.0.0.1:8443", 300, false)[..5], &[0x83, 0x87, 0xc0, 0xbf, 0xbe]);
    let mut f = Vec::new();
    push_request(&mut f, 3, &h, &b);
    assert_eq!(f.len(), 9 + h.len() + 9 + b.len());
    assert_eq!(&f[3..9], &[HEADERS, END_HEADERS, 0, 0, 0, 3]);
    assert!(is_found(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<findServiceResponse xmlns="));
    assert!(!is_found(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<errors xmlns="));
}
