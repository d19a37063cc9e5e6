//! The server side of HTTP/2 (RFC 9113) as a state machine without I/O,
//! made for LoST's traffic: many small request/response exchanges on few
//! long-lived connections.
//!
//! [`Conn`] takes the bytes the peer sent ([`Conn::recv`]), hands out
//! complete requests ([`Conn::poll_event`]: headers decoded, body
//! buffered), takes responses ([`Conn::respond`], [`Conn::send_data`]) and
//! produces the bytes to send ([`Conn::take_output`]). Flow control, the
//! stream states, SETTINGS, PING, GOAWAY and the protocol's error cases
//! live here; reading and writing the socket, timers and running handlers
//! are the driver's (`server.rs`). Being free of I/O, every frame sequence
//! is testable byte for byte (the tests below), and the driver's
//! per-request cost is a frame parse, an HPACK lookup and a copy.
//!
//! What it does not do: server push (never offered), priorities (parsed and
//! ignored, as RFC 9113 allows), the extended CONNECT protocol, and
//! indexing in the response encoder (see [`hpack`]).

pub mod hpack;

use std::collections::{HashMap, VecDeque};


use bytes::{Buf, Bytes, BytesMut};

/// A hasher for stream ids (small odd integers chosen by one peer, which
/// gains nothing by colliding its own streams): a multiply, not SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Maps keyed by stream id.
pub type IdMap<V> = HashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// LoST's media type: the one content type nearly every request carries.
const LOST_TYPE: &str = "application/lost+xml";

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const DEFAULT_WINDOW: i64 = 65_535;
const MAX_WINDOW: i64 = (1 << 31) - 1;
const DEFAULT_MAX_FRAME: usize = 16_384;

// Frame types.
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// HTTP/2 error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(missing_docs)]
pub enum Code {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

/// A connection error: GOAWAY with this code has been queued; send what
/// [`Conn::take_output`] holds, then close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnError {
    /// The code sent.
    pub code: Code,
    /// Why, for the log.
    pub reason: &'static str,
}

/// The server's settings and bounds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams open at once (a request
    /// being received or answered); more are refused (REFUSED_STREAM).
    pub max_streams: u32,
    /// Largest request body; a larger one is answered by the driver
    /// ([`Event::TooLarge`]).
    pub max_body: usize,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, and the bound on one header block's
    /// encoded size.
    pub max_header_list: usize,
}

/// A request's head: what the handlers look at.
#[derive(Debug, Default)]
pub struct Head {
    /// `:method`.
    pub method: std::borrow::Cow<'static, str>,
    /// `:path` (with query).
    pub path: String,
    /// `content-type`, if sent (LoST's own is not copied).
    pub content_type: Option<std::borrow::Cow<'static, str>>,
    /// `content-length`, if sent.
    pub content_length: Option<u64>,
    /// The regular fields other than those above, in order (names
    /// lowercase).
    pub fields: Vec<(String, Vec<u8>)>,
}

/// What the connection hands the driver.
#[derive(Debug)]
pub enum Event {
    /// A complete request: answer it with [`Conn::respond`].
    Request {
        /// Its stream.
        stream: u32,
        /// Its head.
        head: Head,
        /// Its body.
        body: Bytes,
    },
    /// The request's body would pass `max_body` (declared or received):
    /// answer it (413); what else arrives on the stream is dropped.
    TooLarge {
        /// Its stream.
        stream: u32,
    },
    /// The peer reset a stream the driver may be answering: drop the work.
    Reset {
        /// Its stream.
        stream: u32,
    },
}

#[derive(Debug)]
struct Stream {
    /// The request's head, until the request is complete.
    head: Option<Head>,
    body: BytesMut,
    /// Headers done and the body arriving (not ended, not refused).
    receiving: bool,
    /// END_STREAM received.
    ended: bool,
    /// The response's HEADERS went out.
    responded: bool,
    /// Response data not yet framed (flow control).
    pending: VecDeque<Bytes>,
    pending_len: usize,
    /// The response ends after `pending`.
    end: bool,
    /// END_STREAM sent.
    end_sent: bool,
    /// Bytes of a refused body read and dropped.
    dropped: usize,
    /// Send window.
    window: i64,
}

/// A header block being received (HEADERS then CONTINUATION).
#[derive(Debug)]
struct Partial {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
    /// Trailers of an open stream (decoded for the table, then dropped).
    trailers: bool,
}

/// One HTTP/2 server connection.
#[derive(Debug)]
pub struct Conn {
    settings: Settings,
    decoder: hpack::Decoder,
    preface_seen: bool,
    streams: IdMap<Stream>,
    /// The highest client stream id seen.
    last_stream: u32,
    partial: Option<Partial>,
    events: VecDeque<Event>,
    out: Vec<u8>,
    /// Peer's settings that bind us.
    peer_window: i64,
    peer_max_frame: usize,
    /// Connection send window.
    send_window: i64,
    /// Bytes received since the last connection WINDOW_UPDATE.
    recv_unacked: usize,
    /// The connection's receive window as advertised.
    recv_window: usize,
    /// GOAWAY sent (no new streams); the connection closes once the
    /// streams it still has are done.
    going_away: bool,
    /// The peer sent GOAWAY.
    peer_gone: bool,
    closed: bool,
    /// Streams the peer reset, and responses completed: a peer that
    /// resets far more streams than it lets finish is refused (the
    /// "rapid reset" attack).
    resets: u64,
    completed: u64,
    /// Streams with response data waiting for window.
    blocked: VecDeque<u32>,
}

/// The most of a refused body read and dropped before its stream is reset.
const DRAIN_MAX: usize = 16 << 20;

/// The receive window the server advertises for the connection.
const CONN_RECV_WINDOW: usize = 16 << 20;

impl Conn {
    /// A new connection; the server's SETTINGS (and the connection window
    /// increase) are queued as the first output.
    pub fn new(settings: Settings) -> Conn {
        let mut c = Conn {
            decoder: hpack::Decoder::default(),
            preface_seen: false,
            streams: IdMap::default(),
            last_stream: 0,
            partial: None,
            events: VecDeque::new(),
            out: Vec::with_capacity(4096),
            peer_window: DEFAULT_WINDOW,
            peer_max_frame: DEFAULT_MAX_FRAME,
            send_window: DEFAULT_WINDOW,
            recv_unacked: 0,
            recv_window: CONN_RECV_WINDOW,
            going_away: false,
            peer_gone: false,
            closed: false,
            resets: 0,
            completed: 0,
            blocked: VecDeque::new(),
            settings,
        };
        let stream_window = u32::try_from(c.stream_recv_window()).unwrap_or(u32::MAX);
        let mut payload = Vec::with_capacity(18);
        for (id, v) in [(0x3u16, c.settings.max_streams), (0x4, stream_window), (0x6, u32::try_from(c.settings.max_header_list).unwrap_or(u32::MAX))] {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&v.to_be_bytes());
        }
        c.frame(SETTINGS, 0, 0, &payload);
        let inc = u32::try_from(CONN_RECV_WINDOW - DEFAULT_WINDOW as usize).unwrap_or(0);
        c.frame(WINDOW_UPDATE, 0, 0, &inc.to_be_bytes());
        c
    }

    /// A stream's receive window: room for the largest body (and a frame
    /// more, so the body limit, not flow control, is what a too-large body
    /// meets).
    fn stream_recv_window(&self) -> usize {
        (self.settings.max_body + DEFAULT_MAX_FRAME).clamp(DEFAULT_WINDOW as usize, MAX_WINDOW as usize)
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.frame_header(payload.len(), kind, flags, stream);
        self.out.extend_from_slice(payload);
    }

    fn frame_header(&mut self, len: usize, kind: u8, flags: u8, stream: u32) {
        let l = u32::try_from(len).unwrap_or(0).to_be_bytes();
        self.out.extend_from_slice(&[l[1], l[2], l[3], kind, flags]);
        self.out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    }

    fn go_away_with(&mut self, code: Code, reason: &'static str) -> ConnError {
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&self.last_stream.to_be_bytes());
        p[4..].copy_from_slice(&(code as u32).to_be_bytes());
        self.frame(GOAWAY, 0, 0, &p);
        self.going_away = true;
        self.closed = true;
        self.streams.clear();
        self.blocked.clear();
        ConnError { code, reason }
    }

    fn reset(&mut self, stream: u32, code: Code) {
        self.frame(RST_STREAM, 0, stream, &(code as u32).to_be_bytes());
        self.streams.remove(&stream);
    }

    /// Consumes the complete frames at the front of `buf`; what remains is
    /// an incomplete frame. On `Err` the connection is over: a GOAWAY is
    /// queued, send it and close.
    pub fn recv(&mut self, buf: &mut BytesMut) -> Result<(), ConnError> {
        if self.closed {
            buf.clear();
            return Ok(());
        }
        if !self.preface_seen {
            let n = buf.len().min(PREFACE.len());
            if buf.get(..n) != PREFACE.get(..n) {
                return Err(self.go_away_with(Code::Protocol, "not the HTTP/2 connection preface"));
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            buf.advance(PREFACE.len());
            self.preface_seen = true;
        }
        loop {
            let Some(&[l0, l1, l2, kind, flags, s0, s1, s2, s3]) = buf.get(..FRAME_HEADER).and_then(|h| <&[u8; FRAME_HEADER]>::try_from(h).ok()) else {
                return Ok(());
            };
            let len = (usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2);
            let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
            if len > DEFAULT_MAX_FRAME {
                return Err(self.go_away_with(Code::FrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
            }
            if buf.len() < FRAME_HEADER + len {
                buf.reserve(FRAME_HEADER + len - buf.len());
                return Ok(());
            }
            buf.advance(FRAME_HEADER);
            let payload = buf.split_to(len).freeze();
            self.on_frame(kind, flags, stream, payload)?;
            if self.closed {
                buf.clear();
                return Ok(());
            }
        }
    }

    fn on_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: Bytes) -> Result<(), ConnError> {
        if let Some(p) = &self.partial
            && (kind != CONTINUATION || stream != p.stream)
        {
            return Err(self.go_away_with(Code::Protocol, "a header block interrupted by another frame"));
        }
        match kind {
            DATA => self.on_data(flags, stream, payload),
            HEADERS => self.on_headers(flags, stream, payload),
            CONTINUATION => self.on_continuation(flags, stream, &payload),
            PRIORITY => {
                if stream == 0 {
                    return Err(self.go_away_with(Code::Protocol, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    self.reset(stream, Code::FrameSize);
                }
                Ok(())
            }
            RST_STREAM => self.on_rst(stream, &payload),
            SETTINGS => self.on_settings(flags, stream, &payload),
            PUSH_PROMISE => Err(self.go_away_with(Code::Protocol, "PUSH_PROMISE from a client")),
            PING => {
                if stream != 0 {
                    return Err(self.go_away_with(Code::Protocol, "PING on a stream"));
                }
                if payload.len() != 8 {
                    return Err(self.go_away_with(Code::FrameSize, "PING payload not 8 bytes"));
                }
                if flags & ACK == 0 {
                    self.frame(PING, ACK, 0, &payload);
                }
                Ok(())
            }
            GOAWAY => {
                if stream != 0 {
                    return Err(self.go_away_with(Code::Protocol, "GOAWAY on a stream"));
                }
                self.peer_gone = true;
                Ok(())
            }
            WINDOW_UPDATE => self.on_window_update(stream, &payload),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    /// Strips padding (RFC 9113 §6.1): the payload without its pad length
    /// byte and pad.
    fn unpad(&mut self, flags: u8, payload: Bytes) -> Result<Bytes, ConnError> {
        if flags & PADDED == 0 {
            return Ok(payload);
        }
        let Some(&pad) = payload.first() else {
            return Err(self.go_away_with(Code::FrameSize, "padded frame without its pad length"));
        };
        let pad = usize::from(pad);
        if pad + 1 > payload.len() {
            return Err(self.go_away_with(Code::Protocol, "padding longer than the frame"));
        }
        Ok(payload.slice(1..payload.len() - pad))
    }

    fn on_data(&mut self, flags: u8, stream: u32, payload: Bytes) -> Result<(), ConnError> {
        if stream == 0 {
            return Err(self.go_away_with(Code::Protocol, "DATA on stream 0"));
        }
        // Flow control counts the whole frame, padding included.
        self.recv_unacked += payload.len();
        if self.recv_unacked > self.recv_window {
            return Err(self.go_away_with(Code::FlowControl, "DATA beyond the connection window"));
        }
        self.replenish();
        let data = self.unpad(flags, payload)?;
        let max_body = self.settings.max_body;
        let Some(s) = self.streams.get_mut(&stream) else {
            if stream > self.last_stream {
                return Err(self.go_away_with(Code::Protocol, "DATA on an idle stream"));
            }
            // A stream already closed or reset: dropped (counted above).
            return Ok(());
        };
        let end = flags & END_STREAM != 0;
        if s.ended {
            self.reset(stream, Code::StreamClosed);
            self.events.push_back(Event::Reset { stream });
            return Ok(());
        }
        if !s.receiving {
            // A refused (too large) body: read and dropped, its window
            // given back so the client can finish sending and read the
            // answer; up to a bound, past which the stream is reset.
            s.ended = end;
            s.dropped += data.len();
            let (done, over) = (s.end_sent && end, s.dropped > DRAIN_MAX);
            if over {
                self.reset(stream, Code::Cancel);
            } else if done {
                self.streams.remove(&stream);
            } else if !end && !data.is_empty() {
                let inc = u32::try_from(data.len()).unwrap_or(0);
                self.frame(WINDOW_UPDATE, 0, stream, &inc.to_be_bytes());
            }
            return Ok(());
        }
        if s.body.len() + data.len() > max_body {
            s.receiving = false;
            s.ended = end;
            s.head = None;
            s.body = BytesMut::new();
            self.events.push_back(Event::TooLarge { stream });
            return Ok(());
        }
        s.body.extend_from_slice(&data);
        if end {
            self.complete(stream);
        }
        Ok(())
    }

    /// Sends a connection WINDOW_UPDATE once half the window is used.
    fn replenish(&mut self) {
        if self.recv_unacked >= self.recv_window / 2 {
            let inc = u32::try_from(self.recv_unacked).unwrap_or(0);
            self.recv_unacked = 0;
            self.frame(WINDOW_UPDATE, 0, 0, &inc.to_be_bytes());
        }
    }

    fn on_headers(&mut self, flags: u8, stream: u32, payload: Bytes) -> Result<(), ConnError> {
        if stream == 0 {
            return Err(self.go_away_with(Code::Protocol, "HEADERS on stream 0"));
        }
        let mut block = self.unpad(flags, payload)?;
        if flags & PRIORITY_FLAG != 0 {
            if block.len() < 5 {
                return Err(self.go_away_with(Code::FrameSize, "HEADERS priority fields truncated"));
            }
            block.advance(5);
        }
        let trailers = match self.streams.get(&stream) {
            Some(s) if !s.ended => true,
            Some(_) => {
                // Headers on a stream whose request is complete.
                return Err(self.go_away_with(Code::StreamClosed, "HEADERS on a half-closed stream"));
            }
            None if stream <= self.last_stream || stream.is_multiple_of(2) => {
                return Err(self.go_away_with(Code::Protocol, "HEADERS reusing a stream id or with an even id"));
            }
            None => false,
        };
        if trailers && flags & END_STREAM == 0 {
            return Err(self.go_away_with(Code::Protocol, "trailers without END_STREAM"));
        }
        if !trailers {
            self.last_stream = stream;
        }
        let end_stream = flags & END_STREAM != 0;
        if flags & END_HEADERS != 0 {
            // The common case: the whole block in one frame, decoded where
            // it lies.
            self.header_block(stream, end_stream, trailers, &block)
        } else {
            self.partial = Some(Partial { stream, end_stream, block: block.to_vec(), trailers });
            Ok(())
        }
    }

    fn on_continuation(&mut self, flags: u8, stream: u32, payload: &[u8]) -> Result<(), ConnError> {
        let Some(mut p) = self.partial.take() else {
            return Err(self.go_away_with(Code::Protocol, "CONTINUATION without HEADERS"));
        };
        if p.stream != stream {
            return Err(self.go_away_with(Code::Protocol, "CONTINUATION on another stream"));
        }
        p.block.extend_from_slice(payload);
        if p.block.len() > self.settings.max_header_list {
            return Err(self.go_away_with(Code::EnhanceYourCalm, "header block larger than SETTINGS_MAX_HEADER_LIST_SIZE"));
        }
        if flags & END_HEADERS != 0 {
            self.header_block(p.stream, p.end_stream, p.trailers, &p.block)
        } else {
            self.partial = Some(p);
            Ok(())
        }
    }

    fn header_block(&mut self, stream: u32, end_stream: bool, trailers: bool, block: &[u8]) -> Result<(), ConnError> {
        let mut head = Head::default();
        let mut malformed: Option<&'static str> = None;
        let mut size = 0usize;
        let max_list = self.settings.max_header_list;
        let r = self.decoder.decode(block, |f| {
            size += f.name.len() + f.value.len() + 32;
            if size > max_list {
                return Err("header list too large");
            }
            if trailers {
                return Ok(());
            }
            field(&mut head, f.name, f.value)
        });
        match r {
            Err(e) => return Err(self.go_away_with(Code::Compression, e.0)),
            Ok(Err(e)) => malformed = Some(e),
            Ok(Ok(())) => {}
        }
        if trailers {
            if malformed.is_some() {
                self.events.push_back(Event::Reset { stream });
                self.reset(stream, Code::Protocol);
                return Ok(());
            }
            if self.streams.get(&stream).is_some_and(|s| s.receiving) {
                self.complete(stream);
            } else if let Some(s) = self.streams.get_mut(&stream) {
                s.ended = true;
            }
            return Ok(());
        }
        if self.going_away {
            // After our GOAWAY: not processed (the peer retries elsewhere).
            self.frame(RST_STREAM, 0, stream, &(Code::RefusedStream as u32).to_be_bytes());
            return Ok(());
        }
        if malformed.is_none() && (head.method.is_empty() || head.path.is_empty()) {
            malformed = Some("a request without :method, :scheme or :path");
        }
        if let Some(why) = malformed {
            tracing::debug!("HTTP/2 stream {stream}: malformed request: {why}");
            self.frame(RST_STREAM, 0, stream, &(Code::Protocol as u32).to_be_bytes());
            return Ok(());
        }
        if self.streams.len() >= self.settings.max_streams as usize {
            self.frame(RST_STREAM, 0, stream, &(Code::RefusedStream as u32).to_be_bytes());
            return Ok(());
        }
        let too_large = head.content_length.is_some_and(|n| n > self.settings.max_body as u64);
        let s = Stream {
            head: (!too_large).then_some(head),
            body: BytesMut::new(),
            receiving: !too_large,
            ended: end_stream,
            responded: false,
            pending: VecDeque::new(),
            pending_len: 0,
            end: false,
            end_sent: false,
            dropped: 0,
            window: self.peer_window,
        };
        self.streams.insert(stream, s);
        if too_large {
            self.events.push_back(Event::TooLarge { stream });
            return Ok(());
        }
        if end_stream {
            self.complete(stream);
        }
        Ok(())
    }

    /// The request on `stream` is complete: hand it out.
    fn complete(&mut self, stream: u32) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        s.receiving = false;
        s.ended = true;
        let Some(head) = s.head.take() else { return };
        if head.content_length.is_some_and(|n| n != s.body.len() as u64) {
            // Malformed (RFC 9113 §8.1.1).
            self.reset(stream, Code::Protocol);
            return;
        }
        let body = std::mem::take(&mut s.body).freeze();
        self.events.push_back(Event::Request { stream, head, body });
    }

    fn on_rst(&mut self, stream: u32, payload: &[u8]) -> Result<(), ConnError> {
        if stream == 0 {
            return Err(self.go_away_with(Code::Protocol, "RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(self.go_away_with(Code::FrameSize, "RST_STREAM payload not 4 bytes"));
        }
        if stream > self.last_stream {
            return Err(self.go_away_with(Code::Protocol, "RST_STREAM on an idle stream"));
        }
        if self.streams.remove(&stream).is_some() {
            self.resets += 1;
            self.events.push_back(Event::Reset { stream });
            if self.resets > 1000 && self.resets > self.completed.saturating_mul(2) {
                return Err(self.go_away_with(Code::EnhanceYourCalm, "too many streams reset by the client"));
            }
        }
        Ok(())
    }

    fn on_settings(&mut self, flags: u8, stream: u32, payload: &[u8]) -> Result<(), ConnError> {
        if stream != 0 {
            return Err(self.go_away_with(Code::Protocol, "SETTINGS on a stream"));
        }
        if flags & ACK != 0 {
            if !payload.is_empty() {
                return Err(self.go_away_with(Code::FrameSize, "SETTINGS ack with a payload"));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(self.go_away_with(Code::FrameSize, "SETTINGS payload not a multiple of 6"));
        }
        for s in payload.chunks_exact(6) {
            let Ok(&[i0, i1, v0, v1, v2, v3]) = <&[u8; 6]>::try_from(s) else { continue };
            let id = u16::from_be_bytes([i0, i1]);
            let v = u32::from_be_bytes([v0, v1, v2, v3]);
            match id {
                0x2 if v > 1 => return Err(self.go_away_with(Code::Protocol, "SETTINGS_ENABLE_PUSH not 0 or 1")),
                0x4 => {
                    if i64::from(v) > MAX_WINDOW {
                        return Err(self.go_away_with(Code::FlowControl, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"));
                    }
                    let delta = i64::from(v) - self.peer_window;
                    self.peer_window = i64::from(v);
                    for st in self.streams.values_mut() {
                        st.window += delta;
                        if st.window > MAX_WINDOW {
                            return Err(ConnError { code: Code::FlowControl, reason: "stream window above 2^31-1" });
                        }
                    }
                }
                0x5 => {
                    if !(16_384..=16_777_215).contains(&v) {
                        return Err(self.go_away_with(Code::Protocol, "SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = v as usize;
                }
                // HEADER_TABLE_SIZE (our encoder never indexes),
                // MAX_CONCURRENT_STREAMS (we never push),
                // MAX_HEADER_LIST_SIZE (advisory), unknown: ignored.
                _ => {}
            }
        }
        self.frame(SETTINGS, ACK, 0, &[]);
        self.flush_blocked();
        Ok(())
    }

    fn on_window_update(&mut self, stream: u32, payload: &[u8]) -> Result<(), ConnError> {
        let Ok(p) = <[u8; 4]>::try_from(payload) else {
            return Err(self.go_away_with(Code::FrameSize, "WINDOW_UPDATE payload not 4 bytes"));
        };
        let inc = i64::from(u32::from_be_bytes(p) & 0x7fff_ffff);
        if stream == 0 {
            if inc == 0 {
                return Err(self.go_away_with(Code::Protocol, "WINDOW_UPDATE of 0 on the connection"));
            }
            self.send_window += inc;
            if self.send_window > MAX_WINDOW {
                return Err(self.go_away_with(Code::FlowControl, "connection window above 2^31-1"));
            }
        } else {
            let Some(s) = self.streams.get_mut(&stream) else {
                if stream > self.last_stream {
                    return Err(self.go_away_with(Code::Protocol, "WINDOW_UPDATE on an idle stream"));
                }
                return Ok(());
            };
            if inc == 0 {
                self.reset(stream, Code::Protocol);
                self.events.push_back(Event::Reset { stream });
                return Ok(());
            }
            s.window += inc;
            if s.window > MAX_WINDOW {
                self.reset(stream, Code::FlowControl);
                self.events.push_back(Event::Reset { stream });
                return Ok(());
            }
        }
        self.flush_blocked();
        Ok(())
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Starts the response on `stream`: its HEADERS (`:status`, the
    /// content type, `content-length` when `body` is the whole of it, then
    /// `fields`), then `body`. `end`: the response is complete; else more
    /// comes through [`Conn::send_data`]. A stream the peer reset is
    /// ignored. A response sent before the request's body ended (413) also
    /// resets the stream's receiving side (RST_STREAM NO_ERROR).
    pub fn respond(&mut self, stream: u32, status: u16, content_type: &str, fields: &[(&str, &str)], body: Bytes, end: bool) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if s.responded {
            return;
        }
        s.responded = true;
        let empty = end && body.is_empty();
        s.end = end;
        s.end_sent = empty;
        let len = body.len();
        let direct = !body.is_empty() && (body.len() as i64) <= s.window.min(self.send_window) && body.len() <= self.peer_max_frame;
        let queued = if direct {
            Some(body)
        } else {
            if !body.is_empty() {
                s.pending_len += body.len();
                s.pending.push_back(body);
            }
            None
        };
        // The header block is written in place after a frame header whose
        // length is filled in once known; a block past the peer's frame
        // size (only with very large extra fields) is re-framed with
        // CONTINUATION.
        let at = self.out.len();
        self.frame_header(0, HEADERS, if empty { END_HEADERS | END_STREAM } else { END_HEADERS }, stream);
        let start = self.out.len();
        hpack::put_status(&mut self.out, status);
        hpack::put_indexed_name(&mut self.out, hpack::CONTENT_TYPE, content_type.as_bytes());
        if end {
            let mut digits = [0u8; 20];
            hpack::put_indexed_name(&mut self.out, hpack::CONTENT_LENGTH, decimal(len, &mut digits));
        }
        for (k, v) in fields {
            hpack::put_field(&mut self.out, k, v.as_bytes());
        }
        let block_len = self.out.len() - start;
        if block_len <= self.peer_max_frame {
            let [_, l0, l1, l2] = u32::try_from(block_len).unwrap_or(0).to_be_bytes();
            if let Some(h) = self.out.get_mut(at..at + 3) {
                h.copy_from_slice(&[l0, l1, l2]);
            }
        } else {
            let block = self.out.split_off(start);
            self.out.truncate(at);
            let max = self.peer_max_frame;
            let mut first = true;
            for (i, chunk) in block.chunks(max).enumerate() {
                let last = (i + 1) * max >= block.len();
                let mut flags = if last { END_HEADERS } else { 0 };
                if first && empty {
                    flags |= END_STREAM;
                }
                self.frame(if first { HEADERS } else { CONTINUATION }, flags, stream, chunk);
                first = false;
            }
        }
        match queued {
            // Within the windows and one frame: framed now, not queued.
            Some(body) => {
                let n = body.len();
                self.send_window -= n as i64;
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.window -= n as i64;
                    s.end_sent = end;
                }
                self.frame_header(n, DATA, if end { END_STREAM } else { 0 }, stream);
                self.out.extend_from_slice(&body);
                if end {
                    self.finish(stream);
                }
            }
            None => self.push_stream(stream),
        }
    }

    /// More of a response started with `end: false`.
    pub fn send_data(&mut self, stream: u32, data: Bytes, end: bool) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if !s.responded || s.end {
            return;
        }
        s.end = end;
        if !data.is_empty() {
            s.pending_len += data.len();
            s.pending.push_back(data);
        }
        self.push_stream(stream);
    }

    /// Response bytes of `stream` accepted but not yet sent (flow
    /// control); `None` once the stream is gone.
    pub fn queued(&self, stream: u32) -> Option<usize> {
        self.streams.get(&stream).map(|s| s.pending_len)
    }

    /// Frames what `stream` has pending, as far as the windows allow.
    fn push_stream(&mut self, stream: u32) {
        let max = self.peer_max_frame;
        loop {
            let Some(s) = self.streams.get_mut(&stream) else { return };
            if s.pending.is_empty() {
                if s.responded && s.end && !s.end_sent {
                    s.end_sent = true;
                    self.frame_header(0, DATA, END_STREAM, stream);
                }
                if self.streams.get(&stream).is_some_and(|s| s.end_sent) {
                    self.finish(stream);
                }
                return;
            }
            let room = s.window.min(self.send_window);
            if room <= 0 {
                if !self.blocked.contains(&stream) {
                    self.blocked.push_back(stream);
                }
                return;
            }
            let Some(front) = s.pending.front_mut() else { return };
            let n = front.len().min(max).min(usize::try_from(room).unwrap_or(0));
            let chunk = front.split_to(n);
            if front.is_empty() {
                s.pending.pop_front();
            }
            s.pending_len -= n;
            s.window -= n as i64;
            self.send_window -= n as i64;
            let last = s.pending.is_empty() && s.end;
            s.end_sent |= last;
            self.frame_header(n, DATA, if last { END_STREAM } else { 0 }, stream);
            self.out.extend_from_slice(&chunk);
        }
    }

    /// The response is out: the stream closes, or, if the peer has not
    /// ended its request (a body refused as too large), stays to drop the
    /// rest of it (some clients, curl among them, take RST_STREAM even with
    /// NO_ERROR as a failure of the request they are still sending).
    fn finish(&mut self, stream: u32) {
        let Some(s) = self.streams.get(&stream) else { return };
        self.completed += 1;
        if s.ended {
            self.streams.remove(&stream);
        }
    }

    /// Whether `stream` has its response under way (or sent).
    pub fn responded(&self, stream: u32) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.responded)
    }

    /// Resets a stream (CANCEL): a body that stalled after its answer.
    pub fn cancel(&mut self, stream: u32) {
        if self.streams.contains_key(&stream) {
            self.reset(stream, Code::Cancel);
        }
    }

    fn flush_blocked(&mut self) {
        let n = self.blocked.len();
        for _ in 0..n {
            let Some(stream) = self.blocked.pop_front() else { break };
            self.push_stream(stream);
            if self.send_window <= 0 {
                break;
            }
        }
    }

    /// Graceful close: GOAWAY naming the last stream accepted; streams in
    /// progress finish, new ones are refused.
    pub fn go_away(&mut self) {
        if self.going_away {
            return;
        }
        let mut p = [0u8; 8];
        p[..4].copy_from_slice(&self.last_stream.to_be_bytes());
        self.frame(GOAWAY, 0, 0, &p);
        self.going_away = true;
    }

    /// Streams open (requests being received or answered).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The connection has nothing left to do: after a GOAWAY (either
    /// side's) with no stream open, or after a connection error.
    pub fn is_done(&self) -> bool {
        self.closed || ((self.going_away || self.peer_gone) && self.streams.is_empty() && self.partial.is_none())
    }

    /// Whether there are bytes to send.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The bytes to send; the buffer is left empty (with its capacity).
    pub fn take_output(&mut self, into: &mut Vec<u8>) {
        into.clear();
        std::mem::swap(into, &mut self.out);
    }

    /// The request bodies that have not ended (for the driver's body
    /// timeout): streams still receiving.
    pub fn receiving(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams.iter().filter(|(_, s)| !s.ended).map(|(id, _)| *id)
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        i -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

/// Adds one request field to `head`, checking what RFC 9113 §8.2–8.3 says
/// makes a request malformed.
fn field(head: &mut Head, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    if let Some(pseudo) = name.strip_prefix(b":") {
        if !head.fields.is_empty() || head.content_type.is_some() || head.content_length.is_some() {
            return Err("a pseudo-header after a regular field");
        }
        let v = std::str::from_utf8(value).map_err(|_| "a pseudo-header that is not UTF-8")?;
        match pseudo {
            b"method" if head.method.is_empty() => {
                head.method = match v {
                    "POST" => std::borrow::Cow::Borrowed("POST"),
                    "GET" => std::borrow::Cow::Borrowed("GET"),
                    other => std::borrow::Cow::Owned(other.to_owned()),
                }
            }
            b"path" if head.path.is_empty() => {
                if v.is_empty() {
                    return Err("an empty :path");
                }
                head.path = v.to_owned();
            }
            b"scheme" | b"authority" => {}
            _ => return Err("an unknown or repeated pseudo-header"),
        }
        return Ok(());
    }
    if name.iter().any(|b| b.is_ascii_uppercase()) || name.is_empty() {
        return Err("a field name that is not lowercase");
    }
    match name {
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade" => Err("a connection-specific field"),
        b"te" if value != b"trailers" => Err("te other than trailers"),
        b"content-type" => {
            head.content_type = Some(if value == LOST_TYPE.as_bytes() {
                std::borrow::Cow::Borrowed(LOST_TYPE)
            } else {
                std::borrow::Cow::Owned(String::from_utf8_lossy(value).into_owned())
            });
            Ok(())
        }
        b"content-length" => {
            let n = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or("an invalid content-length")?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err("two content-lengths");
            }
            head.content_length = Some(n);
            Ok(())
        }
        _ => {
            head.fields.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests;
