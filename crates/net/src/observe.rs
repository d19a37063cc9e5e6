//! What a server saw on the wire, for privacy measurements: who asked
//! (the client certificate's id, the client's address) and what about
//! (the identifiers and the sender's provider in the requests), each kept
//! only as a salted hash ([`crate::csi_tag`]), in bounded sets.
//!
//! Nothing records unless it is given an [`Observer`]: a service wrapped
//! in [`Observed`] (the testbed wraps the root, the authorities and the
//! relays so), or a service that takes one itself (the resolver, whose
//! Oblivious HTTP gateway opens requests the shell cannot read). The
//! products' binaries never make one, so their request path is untouched.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use signpost_schemas::{Limits, Name, Request};

use crate::{Ctx, Failure, LostReply, Reply, Service, csi_tag};

/// Distinct values kept per kind at most; past it new values are counted
/// in [`Seen::dropped`] and not kept.
pub const KEPT: usize = 1 << 16;

/// What one tier saw, as salted hashes (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    /// Requests recorded.
    pub requests: u64,
    /// Client certificate ids.
    pub clients: BTreeSet<String>,
    /// Client addresses (IP).
    pub addresses: BTreeSet<String>,
    /// Identifiers asked about (canonical CSI URIs).
    pub identifiers: BTreeSet<String>,
    /// Sender providers named in requests' sender contexts.
    pub senders: BTreeSet<String>,
    /// Distinct values not kept because a set was full.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Sets {
    requests: u64,
    clients: HashSet<String>,
    addresses: HashSet<String>,
    identifiers: HashSet<String>,
    senders: HashSet<String>,
    dropped: u64,
}

fn keep(set: &mut HashSet<String>, dropped: &mut u64, value: &str) {
    let tag = csi_tag(value);
    if set.contains(&tag) {
        return;
    }
    if set.len() >= KEPT {
        *dropped += 1;
    } else {
        set.insert(tag);
    }
}

/// A bounded recorder of what a server (or a client) saw.
#[derive(Debug, Default)]
pub struct Observer {
    sets: Mutex<Sets>,
}

impl Observer {
    /// An empty recorder.
    pub fn new() -> Observer {
        Observer::default()
    }

    /// Records one request: who sent it (`client`: a certificate id;
    /// `address`), the identifiers it named and the sender's provider of
    /// its context.
    pub fn see<'a>(&self, client: Option<&str>, address: Option<IpAddr>, identifiers: impl IntoIterator<Item = &'a str>, sender: Option<&str>) {
        let mut s = self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Sets { requests, clients, addresses, identifiers: ids, senders, dropped } = &mut *s;
        *requests += 1;
        if let Some(c) = client {
            keep(clients, dropped, c);
        }
        if let Some(a) = address {
            keep(addresses, dropped, &a.to_string());
        }
        for i in identifiers {
            keep(ids, dropped, i);
        }
        if let Some(p) = sender {
            keep(senders, dropped, p);
        }
    }

    /// Records a request as a server received it: the client from `ctx`,
    /// the identifiers and sender's provider from `req` (`None`: a request
    /// the server could not read, e.g. an encapsulated one).
    pub fn see_request(&self, ctx: &Ctx, req: Option<&Request>) {
        let client = ctx.peer.as_ref().map(|p| p.id().as_str());
        match req {
            Some(Request::FindService(f)) => {
                let csi = f.csi_location().ok().map(|(_, c)| c.uri());
                self.see(client, Some(ctx.remote.ip()), csi, f.context.as_ref().and_then(|c| c.sender_provider.as_ref()).map(Name::as_str));
            }
            Some(Request::ListServices(_)) | None => self.see(client, Some(ctx.remote.ip()), None, None),
        }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        let s = self.sets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sorted = |h: &HashSet<String>| h.iter().cloned().collect::<BTreeSet<String>>();
        Seen { requests: s.requests, clients: sorted(&s.clients), addresses: sorted(&s.addresses), identifiers: sorted(&s.identifiers), senders: sorted(&s.senders), dropped: s.dropped }
    }
}

/// A service whose every request is recorded in an [`Observer`] before it
/// is answered: `POST /lost` with what the request names; other paths
/// with the client, and with what the body names when it reads as a LoST
/// request.
#[derive(Debug)]
pub struct Observed<S> {
    inner: Arc<S>,
    observer: Arc<Observer>,
}

impl<S: Service> Observed<S> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<S>, observer: Arc<Observer>) -> Observed<S> {
        Observed { inner, observer }
    }
}

impl<S: Service> Service for Observed<S> {
    fn id(&self) -> Name {
        self.inner.id()
    }

    async fn lost(&self, req: Request, ctx: &Ctx) -> Result<LostReply, Failure> {
        self.observer.see_request(ctx, Some(&req));
        self.inner.lost(req, ctx).await
    }

    async fn get(&self, path: &str, headers: &hyper::HeaderMap, ctx: &Ctx) -> Option<Reply> {
        self.observer.see_request(ctx, None);
        self.inner.get(path, headers, ctx).await
    }

    async fn post(&self, path: &str, headers: &hyper::HeaderMap, body: Bytes, ctx: &Ctx) -> Option<Reply> {
        let req = Request::decode(&body, &Limits::MESSAGE).ok();
        self.observer.see_request(ctx, req.as_ref());
        self.inner.post(path, headers, body, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_as_salted_hashes_and_counted_once() {
        let o = Observer::new();
        o.see(Some("ap.example"), Some([127, 0, 0, 1].into()), ["tel:+4915112345678"], Some("msp.example"));
        o.see(Some("ap.example"), None, ["tel:+4915112345678", "mailto:a@b.example"], None);
        let s = o.seen();
        assert_eq!(s.requests, 2);
        assert_eq!(s.clients, BTreeSet::from([csi_tag("ap.example")]));
        assert_eq!(s.identifiers.len(), 2);
        assert!(s.identifiers.contains(&csi_tag("tel:+4915112345678")));
        assert_eq!(s.senders, BTreeSet::from([csi_tag("msp.example")]));
        let text = format!("{s:?}");
        assert!(!text.contains("4915112345678") && !text.contains("ap.example") && !text.contains("127.0.0.1"), "{text}");
        assert_eq!(s.dropped, 0);
    }
}
