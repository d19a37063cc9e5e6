//! A small client for APs: ask a resolver — directly, or through an
//! Oblivious HTTP relay so that the resolver does not learn who asks —
//! verify the answer's signatures with the deployment's trust anchor
//! (certificates fetched through the resolver, by the same route), and
//! describe it for people.

use bytes::Bytes;
use signpost_net::client::Client;
use signpost_schemas::lost::{Endpoint, MappingBody};
use signpost_schemas::{Clock, Csi, FindService, Limits, Name, Request, Response, SenderContext, SystemClock};
use signpost_trust::TrustAnchor;
use signpost_trust::sign::Verifier;

/// An answer with its verification result per mapping.
#[derive(Debug)]
pub struct Lookup {
    /// The raw document.
    pub xml: String,
    /// The decoded answer.
    pub response: Response,
    /// Per mapping: `Ok(())` or why it did not verify.
    pub verified: Vec<Result<(), String>>,
}

/// Why a lookup produced no answer to describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The resolver's URL is `http://` and plain HTTP was not allowed
    /// (`--dev-plaintext`): a usage error.
    Plaintext(String),
    /// The resolver cannot be reached, or failed at the HTTP level.
    Unavailable(String),
    /// The resolver answered something that is not LoST.
    Garbled(String),
}

impl LookupError {
    /// The exit code (`signpost_net::exit`).
    pub fn exit_code(&self) -> u8 {
        match self {
            LookupError::Plaintext(_) => signpost_net::exit::USAGE,
            LookupError::Unavailable(_) => signpost_net::exit::UNAVAILABLE,
            LookupError::Garbled(_) => signpost_net::exit::DATA,
        }
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Plaintext(a) => write!(f, "refusing plain HTTP to {a}: pass --dev-plaintext to reach a development resolver (never in production)"),
            LookupError::Unavailable(e) | LookupError::Garbled(e) => f.write_str(e),
        }
    }
}

/// The exit code for an answer: 0 found and verified, 2 not found, 65 a
/// mapping that does not verify or an error that is the client's or the
/// data's, 69 the resolver's or an upstream's failure.
pub fn exit_code(l: &Lookup) -> u8 {
    use signpost_schemas::ErrorKind as K;
    match &l.response {
        Response::Found(_) if l.verified.iter().all(Result::is_ok) => signpost_net::exit::OK,
        Response::Errors(e) => match e.kind() {
            Some(K::NotFound) => signpost_net::exit::NOT_FOUND,
            Some(K::ServerError | K::ServerTimeout | K::InternalError) => signpost_net::exit::UNAVAILABLE,
            _ => signpost_net::exit::DATA,
        },
        _ => signpost_net::exit::DATA,
    }
}

/// How the resolver is reached.
#[derive(Debug, Clone)]
pub enum Via {
    /// `POST /lost` on the resolver itself.
    Direct {
        /// The resolver's LoST URL.
        resolver: Endpoint,
        /// Its id (certificate name).
        resolver_id: Name,
    },
    /// Oblivious HTTP (RFC 9458) through a relay: the relay learns who
    /// asks, not what; the resolver (the gateway) learns what, not who.
    Relay {
        /// The relay's URL (its `POST /relay` resource).
        relay: Endpoint,
        /// The relay's id (certificate name).
        relay_id: Name,
        /// The gateway's key configuration (`application/ohttp-keys`).
        keys: Vec<u8>,
    },
}

/// One HTTP exchange by a route: status and body.
async fn exchange(client: &Client, via: &Via, method: &str, path: &str, content_type: &str, body: Bytes) -> Result<(u16, Bytes), LookupError> {
    match via {
        Via::Direct { resolver, resolver_id } => {
            let a = if method == "GET" {
                client.get(resolver, resolver_id, path, &[]).await
            } else if path == "/lost" && content_type == signpost_schemas::lost::CONTENT_TYPE {
                client.post_lost(resolver, resolver_id, body).await
            } else {
                let ep = Endpoint::parse(&format!("{}{path}", origin(resolver.as_str()))).map_err(|e| LookupError::Garbled(e.to_string()))?;
                client.raw(&ep, resolver_id, signpost_net::hyper::Method::POST, content_type, body).await
            };
            let a = a.map_err(|e| match e {
                signpost_net::client::ClientError::Plaintext(a) => LookupError::Plaintext(a),
                e => LookupError::Unavailable(format!("the resolver at {} cannot be reached: {e}", resolver.as_str())),
            })?;
            Ok((a.status, a.body))
        }
        Via::Relay { relay, relay_id, keys } => {
            let inner = if method == "GET" {
                let mut m = bhttp::Message::request(b"GET".to_vec(), b"https".to_vec(), b"resolver".to_vec(), path.as_bytes().to_vec());
                let mut out = Vec::new();
                m.write_content(b"");
                m.write_bhttp(bhttp::Mode::KnownLength, &mut out).map_err(|e| LookupError::Garbled(e.to_string()))?;
                out
            } else {
                crate::ohttp::encode_request("resolver", path, content_type, &body).map_err(|e| LookupError::Garbled(e.to_string()))?
            };
            let sealed = crate::ohttp::seal(keys, &inner).map_err(|e| LookupError::Garbled(format!("--ohttp-keys: {e}")))?;
            let a = client
                .raw(relay, relay_id, signpost_net::hyper::Method::POST, crate::ohttp::REQUEST_CONTENT_TYPE, Bytes::from(sealed.body.clone()))
                .await
                .map_err(|e| match e {
                    signpost_net::client::ClientError::Plaintext(a) => LookupError::Plaintext(a),
                    e => LookupError::Unavailable(format!("the relay at {} cannot be reached: {e}", relay.as_str())),
                })?;
            let ct = a.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
            if a.status != 200 || !ct.starts_with(crate::ohttp::RESPONSE_CONTENT_TYPE) {
                let why = format!("the relay answered HTTP {} ({ct}): {}", a.status, String::from_utf8_lossy(&a.body).trim());
                return Err(if a.status >= 500 { LookupError::Unavailable(why) } else { LookupError::Garbled(why) });
            }
            let opened = sealed.open(&a.body).map_err(|e| LookupError::Garbled(format!("the gateway's answer: {e}")))?;
            let r = crate::ohttp::decode_response(&opened).map_err(|e| LookupError::Garbled(format!("the gateway's answer: {e}")))?;
            Ok((r.status, Bytes::from(r.body)))
        }
    }
}

/// `https://host:port` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url.get(after..).and_then(|r| r.find('/')) {
        Some(i) => url.get(..after + i).unwrap_or(url),
        None => url,
    }
}

/// Reads an `application/ohttp-keys` key configuration from a file or an
/// `https://` URL (fetched with `client`; the server id is `server_id`).
pub async fn load_keys(client: &Client, source: &str, server_id: &Name) -> Result<Vec<u8>, LookupError> {
    if source.starts_with("https://") || source.starts_with("http://") {
        let ep = Endpoint::parse(source).map_err(|e| LookupError::Garbled(format!("--ohttp-keys: {e}")))?;
        let a = client.get(&ep, server_id, path_of(source), &[("accept", crate::ohttp::KEYS_CONTENT_TYPE.to_owned())]).await.map_err(|e| LookupError::Unavailable(format!("--ohttp-keys {source}: {e}")))?;
        if a.status != 200 {
            return Err(LookupError::Unavailable(format!("--ohttp-keys {source}: HTTP {}", a.status)));
        }
        Ok(a.body.to_vec())
    } else {
        std::fs::read(source).map_err(|e| LookupError::Garbled(format!("--ohttp-keys {source}: {e}")))
    }
}

fn path_of(url: &str) -> &str {
    let o = origin(url);
    match url.get(o.len()..) {
        Some("") | None => "/",
        Some(p) => p,
    }
}

/// Asks `resolver` (server id `resolver_id`) for `csi`.
pub async fn lookup(client: &Client, resolver: &Endpoint, resolver_id: &Name, anchor: &TrustAnchor, csi: &Csi, context: Option<SenderContext>) -> Result<Lookup, LookupError> {
    lookup_via(client, &Via::Direct { resolver: resolver.clone(), resolver_id: resolver_id.clone() }, anchor, csi, context).await
}

/// Asks the resolver, by `via`, for `csi`, and verifies the answer.
pub async fn lookup_via(client: &Client, via: &Via, anchor: &TrustAnchor, csi: &Csi, context: Option<SenderContext>) -> Result<Lookup, LookupError> {
    let mut f = FindService::for_csi(csi.clone(), true);
    f.context = context;
    let (status, body) = exchange(client, via, "POST", "/lost", signpost_schemas::lost::CONTENT_TYPE, Bytes::from(Request::FindService(f).encode())).await?;
    let xml = String::from_utf8_lossy(&body).into_owned();
    let response = Response::decode(&body, &Limits::MESSAGE).map_err(|e| {
        let why = format!("the resolver's answer (HTTP {status}) does not decode: {e}");
        if status >= 500 { LookupError::Unavailable(why) } else { LookupError::Garbled(why) }
    })?;
    let verified = verify(client, via, csi, &response, anchor).await;
    Ok(Lookup { xml, response, verified })
}

/// Asks for several identifiers in one bulk request (`POST /lost/bulk`,
/// directly or through the relay); one verified answer per identifier, in
/// order. A refusal of the whole bulk (too many queries, over the budget
/// of new identifiers, malformed) is an error naming the reason.
pub async fn lookup_bulk_via(client: &Client, via: &Via, anchor: &TrustAnchor, csis: &[Csi], context: Option<SenderContext>) -> Result<Vec<Lookup>, LookupError> {
    let docs: Vec<String> = csis
        .iter()
        .map(|c| {
            let mut f = FindService::for_csi(c.clone(), true);
            f.context = context.clone();
            Request::FindService(f).encode()
        })
        .collect();
    let body = crate::bulk::wrap(crate::bulk::REQUEST_ROOT, docs.iter().map(|d| d.as_bytes()));
    let (status, answer) = exchange(client, via, "POST", crate::bulk::BULK_PATH, crate::bulk::CONTENT_TYPE, Bytes::from(body)).await?;
    let parts = match crate::bulk::split(&answer, crate::bulk::RESPONSE_ROOT, csis.len()) {
        Ok(p) => p,
        Err(e) => {
            // The whole bulk refused: one LoST <errors> document.
            return Err(match Response::decode(&answer, &Limits::MESSAGE) {
                Ok(Response::Errors(errs)) => {
                    let what: Vec<String> = errs.list.issues().iter().map(|i| format!("{}: {}", i.kind, i.message.as_ref().map_or("", |m| m.text.as_str()))).collect();
                    let why = format!("the bulk request was refused (HTTP {status}): {}", what.join("; "));
                    if status >= 500 { LookupError::Unavailable(why) } else { LookupError::Garbled(why) }
                }
                _ => LookupError::Garbled(format!("the resolver's bulk answer (HTTP {status}) does not decode: {e}")),
            });
        }
    };
    if parts.len() != csis.len() {
        return Err(LookupError::Garbled(format!("the bulk answer holds {} answers for {} queries", parts.len(), csis.len())));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (csi, part) in csis.iter().zip(parts) {
        let response = Response::decode(&part, &Limits::MESSAGE).map_err(|e| LookupError::Garbled(format!("the answer for {csi} does not decode: {e}")))?;
        let verified = verify(client, via, csi, &response, anchor).await;
        out.push(Lookup { xml: String::from_utf8_lossy(&part).into_owned(), response, verified });
    }
    Ok(out)
}

/// Per mapping of a found answer: whether it verifies (signing
/// certificates fetched from the resolver by `via` when unknown).
pub async fn verify(client: &Client, via: &Via, csi: &Csi, response: &Response, anchor: &TrustAnchor) -> Vec<Result<(), String>> {
    let mut verified = Vec::new();
    if let Response::Found(f) = response {
        let mut v = Verifier::new(anchor.clone());
        let now = SystemClock.now();
        for m in &f.mappings {
            let r = match &m.signature {
                None => Err("not signed".to_owned()),
                Some(s) => {
                    if v.signer(&s.key_id).is_none()
                        && let Ok((200, pem)) = exchange(client, via, "GET", &format!("/certs/{}", s.key_id.as_str()), "", Bytes::new()).await
                    {
                        let _ = v.add_pem(&pem, now);
                    }
                    v.verify_mapping(csi, m, now).map(|_| ()).map_err(|e| e.to_string())
                }
            };
            verified.push(r);
        }
    }
    verified
}

/// A human-readable description.
pub fn describe(csi: &Csi, l: &Lookup) -> String {
    match &l.response {
        Response::Found(f) => {
            let mut out = String::new();
            let stale = f.warnings.iter().find_map(|w| w.stale.as_ref());
            let vias: Vec<&str> = f.path.vias().iter().map(Name::as_str).collect();
            out.push_str(&format!("{csi}: answered via {}\n", vias.join(" → ")));
            if let Some(s) = stale {
                out.push_str(&format!("  (stale: {} unreachable; the answer expired at {})\n", s.authority, s.expired_at));
            }
            for (m, v) in f.mappings.iter().zip(&l.verified) {
                let check = match v {
                    Ok(()) => format!("verified ({} signed)", m.source),
                    Err(e) => format!("NOT VERIFIED: {e}"),
                };
                match &m.body {
                    MappingBody::Provider(p) => {
                        let name = m.display_names.first().map_or(String::new(), |d| format!(" \"{}\"", d.text));
                        let uris: Vec<&str> = m.uris.iter().map(|u| u.as_str()).collect();
                        out.push_str(&format!("  {}. {}{name}  {}  [{}]  {check}\n", p.priority, p.id, uris.join(" "), p.assurance.as_str()));
                    }
                    MappingBody::NoProviders { reason, .. } => out.push_str(&format!("  exists, but no provider is shown to this sender ({})  {check}\n", reason.as_str())),
                }
            }
            out
        }
        Response::Errors(e) => {
            let what: Vec<String> = e.list.issues().iter().map(|i| format!("{}: {}", i.kind, i.message.as_ref().map_or("", |m| m.text.as_str()))).collect();
            format!("{csi}: {} (from {})\n", what.join("; "), e.source)
        }
        Response::Redirect(r) => format!("{csi}: referred to {} for {}\n", r.target, r.delegation.cover),
        Response::Services(_) => format!("{csi}: unexpected listServicesResponse\n"),
    }
}
