//! Frame sequences through [`Conn`], byte for byte.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
struct F {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frames(out: &[u8]) -> Vec<F> {
    let mut v = Vec::new();
    let mut p = 0;
    while p + 9 <= out.len() {
        let len = (usize::from(out[p]) << 16) | (usize::from(out[p + 1]) << 8) | usize::from(out[p + 2]);
        let stream = u32::from_be_bytes([out[p + 5], out[p + 6], out[p + 7], out[p + 8]]);
        v.push(F { kind: out[p + 3], flags: out[p + 4], stream, payload: out[p + 9..p + 9 + len].to_vec() });
        p += 9 + len;
    }
    assert_eq!(p, out.len(), "output ends inside a frame");
    v
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let l = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut v = vec![l[1], l[2], l[3], kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn settings() -> Settings {
    Settings { max_streams: 4, max_body: 1000, max_header_list: 4096 }
}

/// A connection past the preface and both SETTINGS; `peer` is the
/// client's SETTINGS payload.
fn open(peer: &[u8]) -> Conn {
    let mut c = Conn::new(settings());
    let mut b = BytesMut::from(PREFACE);
    b.extend_from_slice(&frame(SETTINGS, 0, 0, peer));
    c.recv(&mut b).unwrap();
    let out = output(&mut c);
    let kinds: Vec<u8> = out.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, vec![SETTINGS, WINDOW_UPDATE, SETTINGS]);
    assert_eq!(out[2].flags, ACK);
    c
}

fn output(c: &mut Conn) -> Vec<F> {
    let mut v = Vec::new();
    c.take_output(&mut v);
    frames(&v)
}

fn feed(c: &mut Conn, bytes: &[u8]) -> Result<(), ConnError> {
    let mut b = BytesMut::from(bytes);
    let r = c.recv(&mut b);
    assert!(r.is_err() || b.is_empty(), "complete frames are consumed");
    r
}

fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    hpack::put_field(&mut b, ":method", method.as_bytes());
    b.push(0x87); // :scheme https
    hpack::put_field(&mut b, ":path", path.as_bytes());
    for (k, v) in extra {
        hpack::put_field(&mut b, k, v.as_bytes());
    }
    b
}

fn goaway_code(f: &F) -> u32 {
    assert_eq!(f.kind, GOAWAY);
    u32::from_be_bytes([f.payload[4], f.payload[5], f.payload[6], f.payload[7]])
}

fn rst_code(f: &F) -> u32 {
    assert_eq!(f.kind, RST_STREAM);
    u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]])
}

#[test]
fn server_settings_advertise_streams_window_and_header_list() {
    let mut c = Conn::new(settings());
    let out = output(&mut c);
    assert_eq!(out[0].kind, SETTINGS);
    let mut got = Vec::new();
    for s in out[0].payload.chunks(6) {
        got.push((u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])));
    }
    assert_eq!(got, vec![(0x3, 4), (0x4, 65_535), (0x6, 4096)]);
    assert_eq!(out[1].kind, WINDOW_UPDATE);
}

#[test]
fn a_post_with_a_padded_split_body_is_one_request_and_its_answer_closes_the_stream() {
    let mut c = open(&[]);
    let block = request_block("POST", "/lost", &[("content-type", "application/lost+xml"), ("content-length", "11"), ("user-agent", "t")]);
    let mut wire = frame(HEADERS, END_HEADERS, 1, &block);
    let mut padded = vec![3u8];
    padded.extend_from_slice(b"hello");
    padded.extend_from_slice(&[0, 0, 0]);
    wire.extend(frame(DATA, PADDED, 1, &padded));
    wire.extend(frame(DATA, END_STREAM, 1, b" world"));
    // Delivered a byte at a time: frames are reassembled.
    let mut b = BytesMut::new();
    for x in &wire {
        b.extend_from_slice(&[*x]);
        c.recv(&mut b).unwrap();
    }
    let Some(Event::Request { stream, head, body }) = c.poll_event() else { panic!("no request") };
    assert_eq!((stream, &*head.method, head.path.as_str()), (1, "POST", "/lost"));
    assert_eq!(head.content_type.as_deref(), Some("application/lost+xml"));
    assert_eq!(head.content_length, Some(11));
    assert_eq!(head.fields, vec![("user-agent".to_owned(), b"t".to_vec())]);
    assert_eq!(&body[..], b"hello world");
    assert!(c.poll_event().is_none());
    assert_eq!(c.open_streams(), 1);
    c.respond(1, 200, "application/lost+xml", &[("retry-after", "5")], Bytes::from_static(b"<answer/>"), true);
    let out = output(&mut c);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].kind, out[0].flags, out[0].stream), (HEADERS, END_HEADERS, 1));
    let mut fields = Vec::new();
    hpack::Decoder::default()
        .decode::<()>(&out[0].payload, |f| {
            fields.push((String::from_utf8_lossy(f.name).into_owned(), String::from_utf8_lossy(f.value).into_owned()));
            Ok(())
        })
        .unwrap()
        .unwrap();
    let want: Vec<(String, String)> = [(":status", "200"), ("content-type", "application/lost+xml"), ("content-length", "9"), ("retry-after", "5")]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(fields, want);
    assert_eq!((out[1].kind, out[1].flags, &out[1].payload[..]), (DATA, END_STREAM, &b"<answer/>"[..]));
    assert_eq!(c.open_streams(), 0);
    // DATA on the closed stream is dropped, not an error.
    feed(&mut c, &frame(DATA, 0, 1, b"late")).unwrap();
    assert!(output(&mut c).is_empty());
}

#[test]
fn a_bad_preface_is_a_protocol_error() {
    let mut c = Conn::new(settings());
    let _ = output(&mut c);
    let e = feed(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
    assert_eq!(e.code, Code::Protocol);
    let out = output(&mut c);
    assert_eq!(goaway_code(&out[0]), Code::Protocol as u32);
    assert!(c.is_done());
}

#[test]
fn responses_wait_for_the_peers_windows() {
    // The client allows 10 bytes per stream.
    let mut c = open(&[0, 4, 0, 0, 0, 10]);
    feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &request_block("GET", "/feed", &[]))).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::Request { stream: 1, .. })));
    c.respond(1, 200, "text/plain", &[], Bytes::from(vec![b'x'; 25]), true);
    let out = output(&mut c);
    assert_eq!(out.len(), 2);
    assert_eq!((out[1].kind, out[1].flags, out[1].payload.len()), (DATA, 0, 10));
    assert_eq!(c.queued(1), Some(15));
    feed(&mut c, &frame(WINDOW_UPDATE, 0, 1, &10u32.to_be_bytes())).unwrap();
    let out = output(&mut c);
    assert_eq!((out[0].flags, out[0].payload.len()), (0, 10));
    // Raising the initial window by SETTINGS applies to open streams.
    feed(&mut c, &frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 100])).unwrap();
    let out = output(&mut c);
    assert_eq!(out[0].kind, SETTINGS);
    assert_eq!((out[1].kind, out[1].flags, out[1].payload.len()), (DATA, END_STREAM, 5));
    assert_eq!(c.open_streams(), 0);
}

#[test]
fn the_connection_window_bounds_every_stream_together() {
    let mut c = open(&[]);
    let big = Bytes::from(vec![b'y'; 70_000]);
    for id in [1u32, 3] {
        feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, id, &request_block("GET", "/x", &[]))).unwrap();
    }
    while c.poll_event().is_some() {}
    c.respond(1, 200, "a/b", &[], big.clone(), true);
    c.respond(3, 200, "a/b", &[], big, true);
    let sent: usize = output(&mut c).iter().filter(|f| f.kind == DATA).map(|f| f.payload.len()).sum();
    assert_eq!(sent, 65_535, "the connection's initial window");
    for f in output(&mut c) {
        assert!(f.payload.len() <= DEFAULT_MAX_FRAME);
    }
    feed(&mut c, &frame(WINDOW_UPDATE, 0, 0, &100_000u32.to_be_bytes())).unwrap();
    feed(&mut c, &frame(WINDOW_UPDATE, 0, 1, &10_000u32.to_be_bytes())).unwrap();
    feed(&mut c, &frame(WINDOW_UPDATE, 0, 3, &10_000u32.to_be_bytes())).unwrap();
    let out = output(&mut c);
    let total: usize = out.iter().filter(|f| f.kind == DATA).map(|f| f.payload.len()).sum();
    assert_eq!(total, 140_000 - 65_535);
    assert_eq!(out.iter().filter(|f| f.flags & END_STREAM != 0).count(), 2);
}

#[test]
fn a_body_over_the_limit_is_answered_and_the_rest_of_it_dropped() {
    let mut c = open(&[]);
    // Declared too large: refused at the headers.
    feed(&mut c, &frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/lost", &[("content-length", "5000")]))).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::TooLarge { stream: 1 })));
    c.respond(1, 413, "application/lost+xml", &[], Bytes::from_static(b"<e/>"), true);
    let out = output(&mut c);
    assert_eq!(out.iter().map(|f| f.kind).collect::<Vec<_>>(), vec![HEADERS, DATA], "answered, not reset");
    // What the client still sends is read and dropped, its window given
    // back, until it ends the stream.
    feed(&mut c, &frame(DATA, 0, 1, &[b'z'; 500])).unwrap();
    let out = output(&mut c);
    assert_eq!((out[0].kind, out[0].stream, &out[0].payload[..]), (WINDOW_UPDATE, 1, &500u32.to_be_bytes()[..]));
    assert_eq!(c.open_streams(), 1);
    feed(&mut c, &frame(DATA, END_STREAM, 1, &[b'z'; 10])).unwrap();
    assert!(output(&mut c).is_empty());
    assert_eq!(c.open_streams(), 0);
    // Undeclared, too large when it arrives.
    feed(&mut c, &frame(HEADERS, END_HEADERS, 3, &request_block("POST", "/lost", &[]))).unwrap();
    feed(&mut c, &frame(DATA, 0, 3, &[b'z'; 900])).unwrap();
    assert!(c.poll_event().is_none());
    feed(&mut c, &frame(DATA, 0, 3, &[b'z'; 900])).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::TooLarge { stream: 3 })));
    // The rest of it is dropped.
    feed(&mut c, &frame(DATA, END_STREAM, 3, &[b'z'; 900])).unwrap();
    assert!(c.poll_event().is_none());
}

#[test]
fn a_content_length_that_does_not_match_the_body_resets_the_stream() {
    let mut c = open(&[]);
    feed(&mut c, &frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/lost", &[("content-length", "3")]))).unwrap();
    feed(&mut c, &frame(DATA, END_STREAM, 1, b"four")).unwrap();
    assert!(c.poll_event().is_none());
    assert_eq!(output(&mut c).iter().map(rst_code).collect::<Vec<_>>(), vec![Code::Protocol as u32]);
}

#[test]
fn malformed_requests_are_reset_and_the_connection_goes_on() {
    let mut c = open(&[]);
    let mut no_path = Vec::new();
    hpack::put_field(&mut no_path, ":method", b"GET");
    let cases: Vec<Vec<u8>> = vec![
        no_path,
        request_block("GET", "/", &[("connection", "close")]),
        request_block("GET", "/", &[("te", "gzip")]),
        {
            let mut b = request_block("GET", "/", &[("x", "1")]);
            hpack::put_field(&mut b, ":authority", b"late");
            b
        },
        {
            let mut b = request_block("GET", "/", &[]);
            b.extend_from_slice(&[0x00, 0x01, b'X', 0x01, b'y']);
            b
        },
    ];
    for (i, block) in cases.iter().enumerate() {
        let id = 1 + 2 * u32::try_from(i).unwrap();
        feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, id, block)).unwrap();
        assert!(c.poll_event().is_none(), "case {i}");
        let out = output(&mut c);
        assert_eq!(out.iter().map(rst_code).collect::<Vec<_>>(), vec![Code::Protocol as u32], "case {i}");
    }
    feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, 11, &request_block("GET", "/ok", &[]))).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::Request { stream: 11, .. })));
}

#[test]
fn streams_past_the_limit_are_refused() {
    let mut c = open(&[]);
    for id in (1..=9u32).step_by(2) {
        feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, id, &request_block("GET", "/", &[]))).unwrap();
    }
    let mut n = 0;
    while c.poll_event().is_some() {
        n += 1;
    }
    assert_eq!(n, 4);
    let out = output(&mut c);
    assert_eq!((out.len(), out[0].stream, rst_code(&out[0])), (1, 9, Code::RefusedStream as u32));
}

#[test]
fn ping_is_answered_and_goaway_drains() {
    let mut c = open(&[]);
    feed(&mut c, &frame(PING, 0, 0, b"12345678")).unwrap();
    let out = output(&mut c);
    assert_eq!((out[0].kind, out[0].flags, &out[0].payload[..]), (PING, ACK, &b"12345678"[..]));
    feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, 1, &request_block("GET", "/", &[]))).unwrap();
    assert!(c.poll_event().is_some());
    c.go_away();
    let out = output(&mut c);
    assert_eq!(goaway_code(&out[0]), 0);
    assert_eq!(u32::from_be_bytes([out[0].payload[0], out[0].payload[1], out[0].payload[2], out[0].payload[3]]), 1);
    // A new stream after GOAWAY is refused; the open one finishes.
    feed(&mut c, &frame(HEADERS, END_HEADERS | END_STREAM, 3, &request_block("GET", "/", &[]))).unwrap();
    assert!(c.poll_event().is_none());
    assert_eq!(rst_code(&output(&mut c)[0]), Code::RefusedStream as u32);
    assert!(!c.is_done());
    c.respond(1, 204, "text/plain", &[], Bytes::new(), true);
    let out = output(&mut c);
    assert_eq!((out.len(), out[0].flags), (1, END_HEADERS | END_STREAM));
    assert!(c.is_done());
}

#[test]
fn header_blocks_span_continuations_and_may_not_be_interrupted() {
    let mut c = open(&[]);
    let block = request_block("GET", "/split", &[("user-agent", "continued")]);
    let (a, b) = block.split_at(5);
    let mut wire = frame(HEADERS, END_STREAM, 1, a);
    wire.extend(frame(CONTINUATION, END_HEADERS, 1, b));
    feed(&mut c, &wire).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::Request { stream: 1, .. })));
    let mut wire = frame(HEADERS, 0, 3, a);
    wire.extend(frame(PING, 0, 0, b"12345678"));
    let e = feed(&mut c, &wire).unwrap_err();
    assert_eq!(e.code, Code::Protocol);
}

#[test]
fn a_client_that_resets_nearly_everything_is_sent_away() {
    let mut c = open(&[]);
    let mut id = 1u32;
    let mut err = None;
    for _ in 0..1100 {
        let mut wire = frame(HEADERS, END_HEADERS | END_STREAM, id, &request_block("GET", "/", &[]));
        wire.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
        if let Err(e) = feed(&mut c, &wire) {
            err = Some(e);
            break;
        }
        while c.poll_event().is_some() {}
        id += 2;
    }
    assert_eq!(err.map(|e| e.code), Some(Code::EnhanceYourCalm));
}

#[test]
fn protocol_violations_are_connection_errors() {
    let cases: Vec<(Vec<u8>, Code)> = vec![
        (frame(DATA, 0, 0, b"x"), Code::Protocol),
        (frame(DATA, 0, 7, b"x"), Code::Protocol),
        (frame(HEADERS, END_HEADERS, 2, &request_block("GET", "/", &[])), Code::Protocol),
        (frame(SETTINGS, 0, 1, &[]), Code::Protocol),
        (frame(SETTINGS, 0, 0, &[0, 4]), Code::FrameSize),
        (frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]), Code::FlowControl),
        (frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]), Code::Protocol),
        (frame(PING, 0, 0, b"short"), Code::FrameSize),
        (frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()), Code::Protocol),
        (frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()), Code::FlowControl),
        (frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]), Code::Protocol),
        (frame(RST_STREAM, 0, 5, &[0, 0, 0, 8]), Code::Protocol),
        (frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]), Code::Compression),
        (frame(CONTINUATION, END_HEADERS, 1, &[0x82]), Code::Protocol),
        ({
            let mut v = frame(DATA, 0, 1, &[]);
            v[0] = 0x01; // length 65,536: past the frame size
            v
        }, Code::FrameSize),
    ];
    for (i, (wire, code)) in cases.into_iter().enumerate() {
        let mut c = open(&[]);
        let mut b = BytesMut::from(&wire[..]);
        let e = c.recv(&mut b).expect_err(&format!("case {i}"));
        assert_eq!(e.code, code, "case {i}: {}", e.reason);
        assert_eq!(goaway_code(output(&mut c).last().unwrap()), code as u32, "case {i}");
        assert!(c.is_done());
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A deterministic stream of frames with random types, flags, ids and
    // payloads (xorshift), after a valid start.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let mut c = open(&[]);
        for _ in 0..40 {
            let kind = (next() % 11) as u8;
            let flags = (next() & 0x2d) as u8;
            let stream = (next() % 8) as u32;
            let len = (next() % 40) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut b = BytesMut::from(&frame(kind, flags, stream, &payload)[..]);
            if c.recv(&mut b).is_err() {
                break;
            }
            while let Some(ev) = c.poll_event() {
                if let Event::Request { stream, .. } | Event::TooLarge { stream } = ev {
                    c.respond(stream, 200, "a/b", &[], Bytes::from_static(b"ok"), next() % 2 == 0);
                }
            }
            let _ = output(&mut c);
        }
    }
}
