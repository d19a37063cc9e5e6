//! Oblivious HTTP (RFC 9458) for the resolver's LoST endpoint: the
//! gateway side (key file, key configuration, decapsulation, replay
//! window), the Binary HTTP (RFC 9292) framing of a LoST POST, and the
//! client side used by the lookup client.
//!
//! The gateway opens requests with the pure-Rust `hpke` crate (the same
//! backend the `ohttp` crate's `rust-hpke` feature uses) so that it can
//! load raw X25519 private keys from its key file; the client encapsulates
//! with the `ohttp` crate. Each side is thus checked against another
//! implementation in the tests, and against RFC 9458 Appendix A.
//!
//! Only DHKEM(X25519, HKDF-SHA256) with HKDF-SHA256 and AES-128-GCM or
//! ChaCha20-Poly1305 is offered.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use aes_gcm::aead::{Aead as _, KeyInit, Nonce};
use hpke::{Deserializable, Kem as _, OpModeR, Serializable};
use serde::{Deserialize, Serialize};

/// `application/ohttp-keys` (RFC 9540 §3): a list of key configurations.
pub const KEYS_CONTENT_TYPE: &str = "application/ohttp-keys";
/// `message/ohttp-req` (RFC 9458 §9.2).
pub const REQUEST_CONTENT_TYPE: &str = "message/ohttp-req";
/// `message/ohttp-res` (RFC 9458 §9.3).
pub const RESPONSE_CONTENT_TYPE: &str = "message/ohttp-res";
/// RFC 9540 §4: the gateway's well-known location. `GET` gives the key
/// configuration, `POST` with `message/ohttp-req` is the gateway.
pub const GATEWAY_PATH: &str = "/.well-known/ohttp-gateway";
/// RFC 9458 §5.3: the problem type for a key the gateway does not know.
pub const KEY_PROBLEM: &str = "https://iana.org/assignments/http-problem-types#ohttp-key";
/// The problem type this gateway uses for other refusals of an
/// encapsulated request (truncated, garbled, replayed, unsupported suite).
pub const BAD_REQUEST_PROBLEM: &str = "about:blank";

const KEM_X25519: u16 = 0x0020;
const KDF_SHA256: u16 = 0x0001;
const AEAD_AES128GCM: u16 = 0x0001;
const AEAD_CHACHA20: u16 = 0x0003;
/// key id, KEM, KDF, AEAD.
const HEADER_LEN: usize = 7;
/// An X25519 encapsulated key.
const ENC_LEN: usize = 32;
/// Both offered AEADs have a 16-byte tag.
const TAG_LEN: usize = 16;
const REQUEST_LABEL: &[u8] = b"message/bhttp request";
const RESPONSE_LABEL: &[u8] = b"message/bhttp response";

/// Why an encapsulated request or response could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OhttpError {
    /// Shorter than its header, encapsulated key and tag.
    #[error("the encapsulated request is truncated ({0} bytes)")]
    Truncated(usize),
    /// The key id is not one of the gateway's keys (never was, or was
    /// rotated out).
    #[error("key id {0} is not one of this gateway's keys (it may have been rotated out): fetch the key configuration again")]
    UnknownKey(u8),
    /// A KEM, KDF or AEAD that the gateway does not offer.
    #[error("unsupported HPKE suite: KEM {kem:#06x}, KDF {kdf:#06x}, AEAD {aead:#06x}")]
    UnsupportedSuite {
        /// KEM id.
        kem: u16,
        /// KDF id.
        kdf: u16,
        /// AEAD id.
        aead: u16,
    },
    /// Decryption failed (garbled, or sealed to another key).
    #[error("the encapsulated message does not decrypt (garbled, or sealed to another key)")]
    Decrypt,
    /// The same encapsulated request was seen within the replay window.
    #[error("replayed encapsulated request: this one was already answered")]
    Replayed,
    /// A key configuration that cannot be used.
    #[error("key configuration: {0}")]
    KeyConfig(String),
    /// The inner Binary HTTP message is malformed.
    #[error("binary HTTP: {0}")]
    Bhttp(String),
}

impl OhttpError {
    /// The RFC 9457 problem type for the gateway's 400 answer.
    pub fn problem_type(&self) -> &'static str {
        match self {
            OhttpError::UnknownKey(_) => KEY_PROBLEM,
            OhttpError::Truncated(_)
            | OhttpError::UnsupportedSuite { .. }
            | OhttpError::Decrypt
            | OhttpError::Replayed
            | OhttpError::KeyConfig(_)
            | OhttpError::Bhttp(_) => BAD_REQUEST_PROBLEM,
        }
    }

    /// A fixed label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            OhttpError::Truncated(_) => "ohttp_truncated",
            OhttpError::UnknownKey(_) => "ohttp_key",
            OhttpError::UnsupportedSuite { .. } => "ohttp_suite",
            OhttpError::Decrypt => "ohttp_decrypt",
            OhttpError::Replayed => "ohttp_replayed",
            OhttpError::KeyConfig(_) => "ohttp_key_config",
            OhttpError::Bhttp(_) => "ohttp_bhttp",
        }
    }

    /// The `application/problem+json` body (RFC 9457) for a 400 answer.
    pub fn problem_json(&self) -> String {
        serde_json::json!({ "type": self.problem_type(), "title": self.to_string(), "status": 400 }).to_string()
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// A counter family with a fixed set of `outcome` labels, every series
/// registered at once (so each is scraped from 0); counting is one atomic
/// add, nothing when not registered.
#[derive(Debug)]
pub struct Outcomes {
    family: &'static str,
    labels: &'static [&'static str],
    counters: OnceLock<Vec<&'static AtomicU64>>,
}

impl Outcomes {
    /// The family `family{outcome="…"}` over `labels`.
    pub const fn new(family: &'static str, labels: &'static [&'static str]) -> Outcomes {
        Outcomes { family, labels, counters: OnceLock::new() }
    }
    /// Registers every series in `m`, with its help text (once; later calls do nothing).
    pub fn register(&self, m: &signpost_net::Metrics, help: &str) {
        m.describe(self.family, help);
        let _ = self.counters.set(self.labels.iter().map(|l| m.counter(&format!("{}{{outcome=\"{l}\"}}", self.family))).collect());
    }
    /// Counts one `label` (one of the family's labels; others are not counted).
    pub fn count(&self, label: &str) {
        if let (Some(c), Some(i)) = (self.counters.get(), self.labels.iter().position(|l| *l == label))
            && let Some(c) = c.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Outcomes of `POST /.well-known/ohttp-gateway`: answered (`ok`), the
/// wrong content type, or refused before opening, by [`OhttpError::label`].
pub const GATEWAY_OUTCOMES: [&str; 9] = ["ok", "unsupported_media_type", "ohttp_truncated", "ohttp_key", "ohttp_suite", "ohttp_decrypt", "ohttp_replayed", "ohttp_key_config", "ohttp_bhttp"];

/// The gateway's counter family.
pub const GATEWAY_REQUESTS: &str = "signpost_ohttp_gateway_requests_total";

// ---------------------------------------------------------------------------
// Keys

/// One gateway key as stored in the key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// The key identifier (0–255) clients put in their requests.
    pub id: u8,
    /// The X25519 private key, hex.
    pub private_key: String,
    /// When it was made (seconds since the epoch), for operators.
    #[serde(default)]
    pub created: u64,
}

/// The key file: the current key first, then the previous ones still
/// accepted (the overlap window). Written by `signpost-resolver
/// ohttp-keygen`; secret (mode 0600).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Current key first.
    #[serde(default, rename = "key")]
    pub keys: Vec<StoredKey>,
}

impl KeyFile {
    /// Reads a key file.
    pub fn load(path: &Path) -> Result<KeyFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let f: KeyFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if f.keys.is_empty() {
            return Err(format!("{}: no [[key]] in the file (make one with `signpost-resolver ohttp-keygen --keys {}`)", path.display(), path.display()));
        }
        let mut seen = std::collections::HashSet::new();
        for k in &f.keys {
            if !seen.insert(k.id) {
                return Err(format!("{}: key id {} appears twice", path.display(), k.id));
            }
            GatewayKey::from_stored(k).map_err(|e| format!("{}: key {}: {e}", path.display(), k.id))?;
        }
        Ok(f)
    }

    /// The keys, loaded (current first).
    pub fn gateway_keys(&self) -> Result<Vec<GatewayKey>, String> {
        self.keys.iter().map(|k| GatewayKey::from_stored(k).map_err(|e| format!("key {}: {e}", k.id))).collect()
    }

    /// Rotates: a fresh key with an id not in use becomes current; the
    /// previous current key and up to `keep - 1` older ones stay accepted.
    pub fn rotate(&mut self, keep: usize, now_s: u64) -> StoredKey {
        let next = self.keys.first().map_or(1u8, |k| k.id.wrapping_add(1));
        let id = (0..=255u8).map(|i| next.wrapping_add(i)).find(|i| !self.keys.iter().any(|k| k.id == *i)).unwrap_or(next);
        let (sk, _) = hpke::kem::X25519HkdfSha256::gen_keypair();
        let k = StoredKey { id, private_key: hex(&sk.to_bytes()), created: now_s };
        self.keys.insert(0, k.clone());
        self.keys.truncate(keep.saturating_add(1).max(1));
        k
    }

    /// Writes the file with owner-only permissions.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let body = toml::to_string(self).map_err(|e| e.to_string())?;
        let text = format!(
            "# signpost-resolver OHTTP gateway keys (SECRET). The first key is current\n# (served as the key configuration); the others are still accepted.\n# Rotate with `signpost-resolver ohttp-keygen --keys FILE`, then SIGHUP.\n{body}"
        );
        signpost_trust::ca::write_private(path, &text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A loaded gateway key.
#[derive(Clone)]
pub struct GatewayKey {
    id: u8,
    sk: <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    pk: <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayKey({})", self.id)
    }
}

impl GatewayKey {
    /// From a raw X25519 private key.
    pub fn from_private(id: u8, sk: &[u8]) -> Result<GatewayKey, OhttpError> {
        let sk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(sk).map_err(|e| OhttpError::KeyConfig(format!("private key: {e}")))?;
        let pk = hpke::kem::X25519HkdfSha256::sk_to_pk(&sk);
        Ok(GatewayKey { id, sk, pk })
    }

    fn from_stored(k: &StoredKey) -> Result<GatewayKey, OhttpError> {
        let raw = unhex(&k.private_key).ok_or_else(|| OhttpError::KeyConfig("private_key is not hex".into()))?;
        GatewayKey::from_private(k.id, &raw)
    }

    /// The key id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Its key configuration (RFC 9458 §3): id, KEM, public key, and the
    /// offered (KDF, AEAD) pairs.
    pub fn config(&self) -> Vec<u8> {
        let mut out = vec![self.id];
        out.extend_from_slice(&KEM_X25519.to_be_bytes());
        out.extend_from_slice(&self.pk.to_bytes());
        out.extend_from_slice(&8u16.to_be_bytes());
        for aead in [AEAD_AES128GCM, AEAD_CHACHA20] {
            out.extend_from_slice(&KDF_SHA256.to_be_bytes());
            out.extend_from_slice(&aead.to_be_bytes());
        }
        out
    }

    /// Opens an encapsulated request sealed to this key (RFC 9458 §4.3);
    /// the caller has matched the key id.
    fn open(&self, msg: &[u8]) -> Result<(Vec<u8>, Opened), OhttpError> {
        let header = msg.get(..HEADER_LEN).ok_or(OhttpError::Truncated(msg.len()))?;
        let be = |i: usize| u16::from_be_bytes([header.get(i).copied().unwrap_or(0), header.get(i + 1).copied().unwrap_or(0)]);
        let (kem, kdf, aead) = (be(1), be(3), be(5));
        if kem != KEM_X25519 || kdf != KDF_SHA256 || !matches!(aead, AEAD_AES128GCM | AEAD_CHACHA20) {
            return Err(OhttpError::UnsupportedSuite { kem, kdf, aead });
        }
        if msg.len() < HEADER_LEN + ENC_LEN + TAG_LEN {
            return Err(OhttpError::Truncated(msg.len()));
        }
        let enc = msg.get(HEADER_LEN..HEADER_LEN + ENC_LEN).ok_or(OhttpError::Truncated(msg.len()))?;
        let ct = msg.get(HEADER_LEN + ENC_LEN..).ok_or(OhttpError::Truncated(msg.len()))?;
        // RFC 9458 §4.3: info = concat(encode_str("message/bhttp request"),
        // encode(1, 0), hdr).
        let mut info = REQUEST_LABEL.to_vec();
        info.push(0);
        info.extend_from_slice(header);
        let encapped = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| OhttpError::Decrypt)?;
        let (pt, secret) = match aead {
            AEAD_AES128GCM => open_with::<hpke::aead::AesGcm128>(&self.sk, &encapped, &info, ct, 16)?,
            _ => open_with::<hpke::aead::ChaCha20Poly1305>(&self.sk, &encapped, &info, ct, 32)?,
        };
        let mut e = [0u8; ENC_LEN];
        e.copy_from_slice(enc);
        Ok((pt, Opened { aead, enc: e, secret }))
    }
}

fn open_with<A: hpke::aead::Aead>(
    sk: &<hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    enc: &<hpke::kem::X25519HkdfSha256 as hpke::Kem>::EncappedKey,
    info: &[u8],
    ct: &[u8],
    secret_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), OhttpError> {
    let mut ctx = hpke::setup_receiver::<A, hpke::kdf::HkdfSha256, hpke::kem::X25519HkdfSha256>(&OpModeR::Base, sk, enc, info).map_err(|_| OhttpError::Decrypt)?;
    let pt = ctx.open(ct, &[]).map_err(|_| OhttpError::Decrypt)?;
    // RFC 9458 §4.4: secret = context.Export("message/bhttp response",
    // max(Nn, Nk)).
    let mut secret = vec![0u8; secret_len];
    ctx.export(RESPONSE_LABEL, &mut secret).map_err(|_| OhttpError::Decrypt)?;
    Ok((pt, secret))
}

/// What the gateway keeps of an opened request to seal its response.
#[derive(Debug)]
pub struct Opened {
    aead: u16,
    enc: [u8; ENC_LEN],
    secret: Vec<u8>,
}

impl Opened {
    /// The encapsulated key (the replay window's key).
    pub fn enc(&self) -> &[u8; ENC_LEN] {
        &self.enc
    }

    /// Seals a response with a fresh random nonce (RFC 9458 §4.4).
    pub fn seal(&self, response: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let mut nonce = vec![0u8; self.secret.len()];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(|_| OhttpError::Decrypt)?;
        self.seal_with_nonce(&nonce, response)
    }

    /// Seals with a given response nonce (the RFC's test vector).
    pub fn seal_with_nonce(&self, response_nonce: &[u8], response: &[u8]) -> Result<Vec<u8>, OhttpError> {
        // salt = concat(enc, response_nonce); prk = Extract(salt, secret);
        // aead_key = Expand(prk, "key", Nk); aead_nonce = Expand(prk,
        // "nonce", Nn); ct = Seal(aead_key, aead_nonce, "", response).
        let mut salt = self.enc.to_vec();
        salt.extend_from_slice(response_nonce);
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), &self.secret);
        let mut iv = [0u8; 12];
        hk.expand(b"nonce", &mut iv).map_err(|_| OhttpError::Decrypt)?;
        let ct = if self.aead == AEAD_AES128GCM {
            let mut key = [0u8; 16];
            hk.expand(b"key", &mut key).map_err(|_| OhttpError::Decrypt)?;
            let c = aes_gcm::Aes128Gcm::new_from_slice(&key).map_err(|_| OhttpError::Decrypt)?;
            let n = Nonce::<aes_gcm::Aes128Gcm>::try_from(&iv[..]).map_err(|_| OhttpError::Decrypt)?;
            c.encrypt(&n, response).map_err(|_| OhttpError::Decrypt)?
        } else {
            let mut key = [0u8; 32];
            hk.expand(b"key", &mut key).map_err(|_| OhttpError::Decrypt)?;
            let c = chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key).map_err(|_| OhttpError::Decrypt)?;
            let n = Nonce::<chacha20poly1305::ChaCha20Poly1305>::try_from(&iv[..]).map_err(|_| OhttpError::Decrypt)?;
            c.encrypt(&n, response).map_err(|_| OhttpError::Decrypt)?
        };
        let mut out = response_nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// The gateway

/// Settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The key file (reloaded on SIGHUP).
    pub keys: PathBuf,
    /// Requests are remembered this long to refuse replays, seconds.
    pub replay_window_s: u64,
    /// At most this many remembered requests per half window; past it the
    /// window turns over early (documented: replay protection then covers
    /// less time).
    pub replay_max_entries: usize,
}

/// The gateway: its keys and its replay window.
#[derive(Debug)]
pub struct Gateway {
    settings: GatewaySettings,
    keys: RwLock<Vec<GatewayKey>>,
    replay: Mutex<Replay>,
    outcomes: Outcomes,
}

#[derive(Debug, Default)]
struct Replay {
    /// Since `started_s`.
    current: HashMap<[u8; ENC_LEN], ()>,
    /// The half window before.
    previous: HashMap<[u8; ENC_LEN], ()>,
    started_s: u64,
}

impl Gateway {
    /// Loads the key file.
    pub fn load(settings: GatewaySettings) -> Result<Gateway, String> {
        let keys = load_keys(&settings.keys)?;
        Ok(Gateway { settings, keys: RwLock::new(keys), replay: Mutex::new(Replay::default()), outcomes: Outcomes::new(GATEWAY_REQUESTS, &GATEWAY_OUTCOMES) })
    }

    /// A gateway with given keys (tests, benches): current first.
    pub fn with_keys(keys: Vec<GatewayKey>, replay_window_s: u64) -> Gateway {
        let settings = GatewaySettings { keys: PathBuf::new(), replay_window_s, replay_max_entries: 1 << 20 };
        Gateway { settings, keys: RwLock::new(keys), replay: Mutex::new(Replay::default()), outcomes: Outcomes::new(GATEWAY_REQUESTS, &GATEWAY_OUTCOMES) }
    }

    /// Counts its requests in `m`: `signpost_ohttp_gateway_requests_total`
    /// by outcome ([`GATEWAY_OUTCOMES`]).
    pub fn register(&self, m: &signpost_net::Metrics) {
        self.outcomes.register(m, "Oblivious HTTP gateway requests, by outcome: ok (opened and answered inside the encapsulation), unsupported_media_type, or refused before opening (ohttp_truncated, ohttp_key: unknown or rotated-out key, ohttp_suite, ohttp_decrypt, ohttp_replayed, ohttp_key_config, ohttp_bhttp).");
    }

    /// Counts one request's outcome (one of [`GATEWAY_OUTCOMES`]).
    pub fn count(&self, outcome: &str) {
        self.outcomes.count(outcome);
    }

    /// Reads the key file again (SIGHUP): a rotated file takes effect for
    /// the next request.
    pub fn reload(&self) -> Result<(), String> {
        let keys = load_keys(&self.settings.keys)?;
        let ids: Vec<u8> = keys.iter().map(GatewayKey::id).collect();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        tracing::info!(?ids, "OHTTP gateway keys reloaded (first is current)");
        Ok(())
    }

    /// Replaces the keys (tests): current first.
    pub fn set_keys(&self, keys: Vec<GatewayKey>) {
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// The `application/ohttp-keys` body: the current key's configuration
    /// (RFC 9540 §3: each prefixed with its two-byte length). Only the
    /// current key is published; the previous ones stay accepted.
    pub fn key_configs(&self) -> Vec<u8> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        if let Some(k) = keys.first() {
            let c = k.config();
            out.extend_from_slice(&u16::try_from(c.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    /// Opens an encapsulated request (RFC 9458 §4.3) and refuses a replay
    /// seen within the window (RFC 9458 §6.5). `now_s`: seconds.
    pub fn open(&self, msg: &[u8], now_s: u64) -> Result<(Vec<u8>, Opened), OhttpError> {
        let id = *msg.first().ok_or(OhttpError::Truncated(0))?;
        let key = {
            let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.iter().find(|k| k.id == id).cloned().ok_or(OhttpError::UnknownKey(id))?
        };
        let (pt, opened) = key.open(msg)?;
        // Only requests that decrypt are remembered: a forger cannot fill
        // the window.
        let mut r = self.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let half = (self.settings.replay_window_s / 2).max(1);
        if now_s >= r.started_s.saturating_add(half) || r.current.len() >= self.settings.replay_max_entries {
            let turned = std::mem::take(&mut r.current);
            r.previous = if now_s >= r.started_s.saturating_add(2 * half) { HashMap::new() } else { turned };
            r.started_s = now_s;
        }
        if r.current.contains_key(opened.enc()) || r.previous.contains_key(opened.enc()) {
            return Err(OhttpError::Replayed);
        }
        r.current.insert(*opened.enc(), ());
        Ok((pt, opened))
    }
}

fn load_keys(path: &Path) -> Result<Vec<GatewayKey>, String> {
    KeyFile::load(path)?.gateway_keys().map_err(|e| format!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Binary HTTP framing of a LoST request

/// The inner request the gateway accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Content type (lowercase, parameters dropped).
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

/// Decodes a Binary HTTP request (RFC 9292).
pub fn decode_request(b: &[u8]) -> Result<InnerRequest, OhttpError> {
    let m = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(b)).map_err(|e| OhttpError::Bhttp(e.to_string()))?;
    let c = m.control();
    if !c.is_request() {
        return Err(OhttpError::Bhttp("a response where a request was expected".into()));
    }
    let text = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or_default()).into_owned();
    let ct = text(m.header().get(b"content-type"));
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Ok(InnerRequest { method: text(c.method()), path: text(c.path()), content_type: ct, body: m.content().to_vec() })
}

/// Encodes a Binary HTTP POST (known-length form).
pub fn encode_request(authority: &str, path: &str, content_type: &str, body: &[u8]) -> Result<Vec<u8>, OhttpError> {
    let mut m = bhttp::Message::request(b"POST".to_vec(), b"https".to_vec(), authority.as_bytes().to_vec(), path.as_bytes().to_vec());
    m.put_header("content-type", content_type);
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out).map_err(|e| OhttpError::Bhttp(e.to_string()))?;
    Ok(out)
}

/// Encodes a Binary HTTP response.
pub fn encode_response(status: u16, content_type: &str, body: &[u8]) -> Result<Vec<u8>, OhttpError> {
    let code = bhttp::StatusCode::try_from(status).map_err(|e| OhttpError::Bhttp(e.to_string()))?;
    let mut m = bhttp::Message::response(code);
    m.put_header("content-type", content_type);
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out).map_err(|e| OhttpError::Bhttp(e.to_string()))?;
    Ok(out)
}

/// A decoded Binary HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerResponse {
    /// Status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

/// Decodes a Binary HTTP response.
pub fn decode_response(b: &[u8]) -> Result<InnerResponse, OhttpError> {
    let m = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(b)).map_err(|e| OhttpError::Bhttp(e.to_string()))?;
    let status = m.control().status().ok_or_else(|| OhttpError::Bhttp("a request where a response was expected".into()))?.code();
    let ct = String::from_utf8_lossy(m.header().get(b"content-type").unwrap_or_default()).into_owned();
    Ok(InnerResponse { status, content_type: ct, body: m.content().to_vec() })
}

// ---------------------------------------------------------------------------
// The client side (the `ohttp` crate)

/// A request sealed for the gateway, and what opens its answer.
pub struct Sealed {
    /// The `message/ohttp-req` body.
    pub body: Vec<u8>,
    response: ohttp::ClientResponse,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("len", &self.body.len()).finish()
    }
}

/// Seals a Binary HTTP request to the first usable key of an
/// `application/ohttp-keys` list.
pub fn seal(key_configs: &[u8], request: &[u8]) -> Result<Sealed, OhttpError> {
    let c = ohttp::ClientRequest::from_encoded_config_list(key_configs).map_err(|e| OhttpError::KeyConfig(e.to_string()))?;
    let (body, response) = c.encapsulate(request).map_err(|e| OhttpError::KeyConfig(e.to_string()))?;
    Ok(Sealed { body, response })
}

impl Sealed {
    /// Opens the `message/ohttp-res` answer.
    pub fn open(self, answer: &[u8]) -> Result<Vec<u8>, OhttpError> {
        self.response.decapsulate(answer).map_err(|_| OhttpError::Decrypt)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex to bytes (`None` if not hex).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    // RFC 9458 Appendix A.
    const SKR: &str = "3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a";
    const KEY_CONFIG: &str = "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003";
    const REQUEST: &str = "00034745540568747470730b6578616d706c652e636f6d012f";
    const ENC_REQUEST: &str = "010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525";
    const RESPONSE: &str = "0140c8";
    const RESPONSE_NONCE: &str = "c789e7151fcba46158ca84b04464910d";
    const ENC_RESPONSE: &str = "c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd";

    fn rfc_gateway() -> Gateway {
        Gateway::with_keys(vec![GatewayKey::from_private(1, &unhex(SKR).unwrap()).unwrap()], 600)
    }

    #[test]
    fn rfc9458_appendix_a_decodes_and_the_response_matches() {
        let g = rfc_gateway();
        // The key configuration the RFC derives from its private key.
        assert_eq!(hex(&g.keys.read().unwrap()[0].config()), KEY_CONFIG);
        let (pt, opened) = g.open(&unhex(ENC_REQUEST).unwrap(), 1000).unwrap();
        assert_eq!(hex(&pt), REQUEST);
        let inner = bhttp::Message::read_bhttp::<_, Cursor<&[u8]>>(&mut Cursor::new(&pt[..])).unwrap();
        assert_eq!(inner.control().method(), Some(&b"GET"[..]));
        assert_eq!(inner.control().path(), Some(&b"/"[..]));
        // With the RFC's response nonce the gateway's sealing gives the
        // RFC's encapsulated response, byte for byte.
        let sealed = opened.seal_with_nonce(&unhex(RESPONSE_NONCE).unwrap(), &unhex(RESPONSE).unwrap()).unwrap();
        assert_eq!(hex(&sealed), ENC_RESPONSE);
    }

    #[test]
    fn the_same_request_twice_is_a_replay_and_a_later_window_forgets_it() {
        let g = rfc_gateway();
        g.open(&unhex(ENC_REQUEST).unwrap(), 1000).unwrap();
        assert_eq!(g.open(&unhex(ENC_REQUEST).unwrap(), 1001).unwrap_err(), OhttpError::Replayed);
        assert_eq!(g.open(&unhex(ENC_REQUEST).unwrap(), 1299).unwrap_err(), OhttpError::Replayed);
        // Remembered for at least the window, forgotten after two.
        g.open(&unhex(ENC_REQUEST).unwrap(), 1000 + 1300).unwrap();
    }

    #[test]
    fn truncated_garbled_unknown_and_unsupported_requests_are_named() {
        let g = rfc_gateway();
        let good = unhex(ENC_REQUEST).unwrap();
        assert_eq!(g.open(&[], 0).unwrap_err(), OhttpError::Truncated(0));
        assert_eq!(g.open(&good[..5], 0).unwrap_err(), OhttpError::Truncated(5));
        assert_eq!(g.open(&good[..40], 0).unwrap_err(), OhttpError::Truncated(40));
        let mut bad = good.clone();
        bad[0] = 9;
        assert_eq!(g.open(&bad, 0).unwrap_err(), OhttpError::UnknownKey(9));
        assert_eq!(OhttpError::UnknownKey(9).problem_type(), KEY_PROBLEM);
        let mut bad = good.clone();
        bad[6] = 2;
        assert!(matches!(g.open(&bad, 0).unwrap_err(), OhttpError::UnsupportedSuite { aead: 2, .. }));
        for at in [7, 30, 45, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert_eq!(g.open(&bad, 0).unwrap_err(), OhttpError::Decrypt, "byte {at}");
        }
        // The good one still opens: failures were not remembered.
        g.open(&good, 0).unwrap();
    }

    #[test]
    fn the_ohttp_crate_client_round_trips_through_this_gateway_with_both_aeads() {
        let g = Gateway::with_keys(vec![GatewayKey::from_private(7, &[5u8; 32]).unwrap()], 600);
        let req = encode_request("resolver.example", "/lost", "application/lost+xml", b"<findService/>").unwrap();
        let sealed = seal(&g.key_configs(), &req).unwrap();
        let (pt, opened) = g.open(&sealed.body, 0).unwrap();
        let inner = decode_request(&pt).unwrap();
        assert_eq!((inner.method.as_str(), inner.path.as_str(), inner.content_type.as_str()), ("POST", "/lost", "application/lost+xml"));
        assert_eq!(inner.body, b"<findService/>");
        let resp = encode_response(200, "application/lost+xml", b"<ok/>").unwrap();
        let back = decode_response(&sealed.open(&opened.seal(&resp).unwrap()).unwrap()).unwrap();
        assert_eq!((back.status, back.body.as_slice()), (200, &b"<ok/>"[..]));
        // ChaCha20-Poly1305: the same header with AEAD 3 (sealed by hand
        // through the RFC vector's gateway is not possible, so check the
        // response side against the opener's own secret length).
        let opened = Opened { aead: AEAD_CHACHA20, enc: [1; 32], secret: vec![2; 32] };
        assert_eq!(opened.seal(b"x").unwrap().len(), 32 + 1 + TAG_LEN);
    }

    #[test]
    fn rotation_keeps_the_previous_key_and_drops_older_ones() {
        let mut f = KeyFile::default();
        let a = f.rotate(1, 1).id;
        let b = f.rotate(1, 2).id;
        let c = f.rotate(1, 3).id;
        assert_ne!(a, b);
        assert_eq!(f.keys.iter().map(|k| k.id).collect::<Vec<_>>(), [c, b]);
        let keys: Vec<GatewayKey> = f.keys.iter().map(|k| GatewayKey::from_stored(k).unwrap()).collect();
        let g = Gateway::with_keys(keys, 600);
        // Published: only the current key.
        assert_eq!(g.key_configs()[2], c);
        assert_eq!(g.key_configs().len(), 2 + 45);
    }
}
