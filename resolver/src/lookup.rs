//! A small client for APs: ask a resolver, verify the answer's signatures
//! with the deployment's trust anchor (certificates fetched through the
//! resolver), and describe it for people.

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

/// Asks `resolver` (server id `resolver_id`) for `csi`.
pub async fn lookup(client: &Client, resolver: &Endpoint, resolver_id: &Name, anchor: &TrustAnchor, csi: &Csi, context: Option<SenderContext>) -> Result<Lookup, LookupError> {
    let mut f = FindService::for_csi(csi.clone(), true);
    f.context = context;
    let a = client.post_lost(resolver, resolver_id, Bytes::from(Request::FindService(f).encode())).await.map_err(|e| match e {
        signpost_net::client::ClientError::Plaintext(a) => LookupError::Plaintext(a),
        e => LookupError::Unavailable(format!("the resolver at {} cannot be reached: {e}", resolver.as_str())),
    })?;
    let xml = String::from_utf8_lossy(&a.body).into_owned();
    let response = Response::decode(&a.body, &Limits::MESSAGE).map_err(|e| {
        let why = format!("the resolver's answer (HTTP {}) does not decode: {e}", a.status);
        if a.status >= 500 { LookupError::Unavailable(why) } else { LookupError::Garbled(why) }
    })?;
    let mut verified = Vec::new();
    if let Response::Found(f) = &response {
        let mut v = Verifier::new(anchor.clone());
        let now = SystemClock.now();
        for m in &f.mappings {
            let r = match &m.signature {
                None => Err("not signed".to_owned()),
                Some(s) => {
                    if v.signer(&s.key_id).is_none()
                        && let Ok(c) = client.get(resolver, resolver_id, &format!("/certs/{}", s.key_id.as_str()), &[]).await
                        && c.status == 200
                    {
                        let _ = v.add_pem(&c.body, now);
                    }
                    v.verify_mapping(csi, m, now).map(|_| ()).map_err(|e| e.to_string())
                }
            };
            verified.push(r);
        }
    }
    Ok(Lookup { xml, response, verified })
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
