//! The resolver's decisions, sans I/O: follow a referral, enforce depth and
//! loop limits, accept or reject an answer (signatures, signer scope),
//! compute cache lifetimes, decide to serve stale. Time comes in as `now`;
//! the async driver (`crate::resolver`) and the testbed's simulator both
//! drive this same code.

use signpost_net::Failure;
use signpost_schemas::lost::{AuthorityRef, Delegation};
use signpost_schemas::{Csi, ErrorKind, Expires, FindService, FindServiceResponse, Mapping, Name, Path, Response, Timestamp};

/// Local lifetime policy (hickory-style: positive and negative clamps).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Shortest positive lifetime, seconds.
    pub min_ttl: u64,
    /// Longest positive lifetime (also for `NO-EXPIRATION`), seconds.
    pub max_ttl: u64,
    /// Shortest negative lifetime, seconds.
    pub negative_min_ttl: u64,
    /// Longest negative lifetime, seconds.
    pub negative_max_ttl: u64,
    /// How long past its lifetime an answer may still be served when the
    /// authority cannot be reached (RFC 8767 max-stale), seconds.
    pub max_stale: u64,
    /// Lifetime given to clients for a stale answer (RFC 8767: 30 s).
    pub stale_ttl: u64,
    /// Referrals followed at most for one query.
    pub max_depth: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { min_ttl: 5, max_ttl: 86_400, negative_min_ttl: 5, negative_max_ttl: 3_600, max_stale: 86_400, stale_ttl: 30, max_depth: 8 }
    }
}

impl Policy {
    /// The instant until which a positive answer is fresh; `None` for
    /// `NO-CACHE` (use once).
    pub fn fresh_until(&self, expires: Expires, now: Timestamp) -> Option<Timestamp> {
        let secs = match expires {
            Expires::NoCache => return None,
            Expires::NoExpiration => self.max_ttl,
            Expires::At(t) => (t.millis_since(now) / 1000).clamp(self.min_ttl, self.max_ttl),
        };
        Some(now.plus_secs(secs))
    }
    /// The instant until which a negative answer is fresh.
    pub fn negative_until(&self, lifetime: Option<u32>, now: Timestamp) -> Timestamp {
        let secs = u64::from(lifetime.unwrap_or(0)).clamp(self.negative_min_ttl, self.negative_max_ttl);
        now.plus_secs(secs)
    }
    /// Whether an entry fresh until `fresh_until` may be served stale now.
    pub fn may_serve_stale(&self, fresh_until: Timestamp, now: Timestamp) -> bool {
        now <= fresh_until.plus_secs(self.max_stale)
    }
}

/// What a resolution ends with.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Verified mappings.
    Found {
        /// The answer (mappings verified; path as the authority sent it).
        response: FindServiceResponse,
        /// Fresh until (`None`: do not cache).
        fresh_until: Option<Timestamp>,
        /// The authority that answered.
        authority: Name,
    },
    /// The authority says the CSI is not discoverable.
    NotFound {
        /// The authority's errors, kept to be served again.
        errors: signpost_schemas::Errors,
        /// Negative lifetime end.
        until: Timestamp,
        /// The authority that answered.
        authority: Name,
    },
    /// No usable answer.
    Fail(Failure),
}

/// The next thing the driver must do.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send `request` to one of `targets` (in preference order; the first
    /// that answers wins). `learned` is a referral to cache.
    Ask {
        /// The authorities that can answer.
        targets: Vec<AuthorityRef>,
        /// The request to send (our `via` added).
        request: FindService,
        /// A delegation learned from the last answer, with its end.
        learned: Option<(Delegation, Timestamp)>,
    },
    /// Done.
    Done(Outcome),
}

/// One resolution in progress.
#[derive(Debug)]
pub struct Walk {
    csi: Csi,
    request: FindService,
    own: Name,
    visited: Vec<Name>,
    depth: u8,
    policy: Policy,
}

impl Walk {
    /// Starts resolving `incoming` (a client's findService) for `csi`.
    /// RFC 5222 §6: a server whose id is in the path answers `loop`; a
    /// recursing server adds its own `via` before forwarding.
    pub fn new(incoming: &FindService, csi: Csi, own: Name, policy: Policy) -> Result<Walk, Failure> {
        if incoming.path.as_ref().is_some_and(|p| p.contains(&own)) {
            return Err(Failure::Loop(format!("{own} is already in the path")));
        }
        let mut request = incoming.clone();
        request.recursive = false;
        request.path = Some(match &incoming.path {
            Some(p) => {
                let mut p = p.clone();
                p.push(own.clone());
                p
            }
            None => Path::new(own.clone()),
        });
        let visited = request.path.as_ref().map(|p| p.vias().to_vec()).unwrap_or_default();
        Ok(Walk { csi, request, own, visited, depth: 0, policy })
    }

    /// The CSI.
    pub fn csi(&self) -> &Csi {
        &self.csi
    }

    /// The first step: a known delegation (cached or from the preloaded
    /// root table) goes straight to its authorities; otherwise the root.
    pub fn start(&mut self, known: Option<&Delegation>, root: &AuthorityRef) -> Step {
        match known {
            Some(d) => Step::Ask { targets: d.authorities.clone(), request: self.request.clone(), learned: None },
            None => Step::Ask { targets: vec![root.clone()], request: self.request.clone(), learned: None },
        }
    }

    /// Decides what an answer from `from` means. `verify` checks one
    /// mapping's signature, signer chain and scope for this CSI.
    pub fn on_response(&mut self, from: &Name, r: Response, now: Timestamp, verify: &dyn Fn(&Csi, &Mapping) -> Result<(), String>) -> Step {
        match r {
            Response::Redirect(rd) => {
                self.depth += 1;
                if self.depth > self.policy.max_depth {
                    return Step::Done(Outcome::Fail(Failure::ServerError(format!("more than {} referrals", self.policy.max_depth))));
                }
                if !rd.delegation.cover.covers(&self.csi) {
                    return Step::Done(Outcome::Fail(Failure::ServerError(format!("{from} referred to {}, which does not cover the identifier", rd.delegation.cover))));
                }
                if rd.target == self.own || self.visited.contains(&rd.target) {
                    return Step::Done(Outcome::Fail(Failure::Loop(format!("{from} referred back to {}", rd.target))));
                }
                self.visited.push(rd.target.clone());
                let until = now.plus_secs(u64::from(rd.delegation.lifetime).clamp(self.policy.min_ttl, self.policy.max_ttl));
                // The target first, then the other authorities of the delegation.
                let mut targets = rd.delegation.authorities.clone();
                targets.sort_by_key(|a| a.id != rd.target);
                Step::Ask { targets, request: self.request.clone(), learned: Some((rd.delegation, until)) }
            }
            Response::Found(f) => {
                let mut fresh: Option<Timestamp> = None;
                let mut no_cache = false;
                for m in &f.mappings {
                    if &m.source != from {
                        return Step::Done(Outcome::Fail(Failure::ServerError(format!("{from} answered with a mapping of {}", m.source))));
                    }
                    if let Err(e) = verify(&self.csi, m) {
                        return Step::Done(Outcome::Fail(Failure::ServerError(format!("mapping from {from} rejected: {e}"))));
                    }
                    match self.policy.fresh_until(m.expires, now) {
                        Some(t) => fresh = Some(fresh.map_or(t, |f: Timestamp| f.min(t))),
                        None => no_cache = true,
                    }
                }
                Step::Done(Outcome::Found { response: f, fresh_until: if no_cache { None } else { fresh }, authority: from.clone() })
            }
            Response::Errors(e) => match e.kind() {
                Some(ErrorKind::NotFound) => {
                    let until = self.policy.negative_until(e.negative_lifetime, now);
                    Step::Done(Outcome::NotFound { errors: e, until, authority: from.clone() })
                }
                Some(ErrorKind::Loop) => Step::Done(Outcome::Fail(Failure::Loop(format!("{from} detected a loop")))),
                other => {
                    let msg = e.list.issues().first().and_then(|i| i.message.as_ref()).map_or(String::new(), |m| m.text.clone());
                    Step::Done(Outcome::Fail(Failure::ServerError(format!(
                        "{from} answered {}: {msg}",
                        other.map_or("errors", ErrorKind::element)
                    ))))
                }
            },
            Response::Services(_) => Step::Done(Outcome::Fail(Failure::ServerError(format!("{from} answered a listServicesResponse")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signpost_schemas::lost::{Cover, Endpoint, Redirect};
    use signpost_schemas::{E164Prefix, Errors, Issue};

    fn name(s: &str) -> Name {
        Name::parse(s).unwrap()
    }
    fn auth(id: &str) -> AuthorityRef {
        AuthorityRef { id: name(id), endpoints: vec![Endpoint::parse("https://127.0.0.1:1/lost").unwrap()] }
    }
    fn redirect(from: &str, to: &str, prefix: &str) -> Response {
        Response::Redirect(Redirect {
            target: name(to),
            source: name(from),
            message: None,
            delegation: Delegation { cover: Cover::Prefix(E164Prefix::parse(prefix).unwrap()), lifetime: 600, authorities: vec![auth(to)] },
            feed_position: None,
        })
    }
    fn walk() -> Walk {
        let csi = Csi::from_wire("tel:+4915112345678").unwrap();
        Walk::new(&FindService::for_csi(csi.clone(), true), csi, name("resolver.example"), Policy::default()).unwrap()
    }
    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    fn ok(_: &Csi, _: &Mapping) -> Result<(), String> {
        Ok(())
    }

    #[test]
    fn lifetimes_are_clamped() {
        let p = Policy::default();
        assert_eq!(p.fresh_until(Expires::NoCache, NOW), None);
        assert_eq!(p.fresh_until(Expires::At(NOW.plus_secs(1)), NOW), Some(NOW.plus_secs(5)));
        assert_eq!(p.fresh_until(Expires::At(NOW.plus_secs(10_000_000)), NOW), Some(NOW.plus_secs(86_400)));
        assert_eq!(p.fresh_until(Expires::NoExpiration, NOW), Some(NOW.plus_secs(86_400)));
        assert_eq!(p.negative_until(Some(1), NOW), NOW.plus_secs(5));
        assert_eq!(p.negative_until(Some(999_999), NOW), NOW.plus_secs(3600));
        assert!(p.may_serve_stale(NOW, NOW.plus_secs(86_400)));
        assert!(!p.may_serve_stale(NOW, NOW.plus_secs(86_401)));
    }

    #[test]
    fn referrals_loops_and_depth() {
        let mut w = walk();
        let root = auth("root.example");
        assert!(matches!(w.start(None, &root), Step::Ask { ref targets, .. } if targets[0].id.as_str() == "root.example"));
        let Step::Ask { targets, request, learned } = w.on_response(&name("root.example"), redirect("root.example", "dp.de.example", "+49"), NOW, &ok) else { panic!() };
        assert_eq!(targets[0].id.as_str(), "dp.de.example");
        assert_eq!(request.path.unwrap().vias()[0].as_str(), "resolver.example");
        assert_eq!(learned.unwrap().1, NOW.plus_secs(600));
        // A referral that does not cover the number.
        let mut w2 = walk();
        assert!(matches!(w2.on_response(&name("root.example"), redirect("root.example", "dp.fr.example", "+33"), NOW, &ok), Step::Done(Outcome::Fail(Failure::ServerError(_)))));
        // A referral back to a server already visited.
        let mut w3 = walk();
        w3.on_response(&name("root.example"), redirect("root.example", "dp.de.example", "+49"), NOW, &ok);
        assert!(matches!(w3.on_response(&name("dp.de.example"), redirect("dp.de.example", "dp.de.example", "+4915"), NOW, &ok), Step::Done(Outcome::Fail(Failure::Loop(_)))));
        // Depth: a chain of distinct referrals ends at max_depth.
        let mut w4 = walk();
        let mut last = Step::Done(Outcome::Fail(Failure::Internal(String::new())));
        for i in 0..10 {
            last = w4.on_response(&name(&format!("dp{i}.example")), redirect(&format!("dp{i}.example"), &format!("dp{}.example", i + 1), "+49"), NOW, &ok);
        }
        assert!(matches!(last, Step::Done(Outcome::Fail(Failure::ServerError(ref m))) if m.contains("referrals")));
        // Our own id in the incoming path: loop.
        let csi = Csi::from_wire("tel:+4915112345678").unwrap();
        let mut f = FindService::for_csi(csi.clone(), true);
        f.path = Some(Path::new(name("resolver.example")));
        assert!(matches!(Walk::new(&f, csi, name("resolver.example"), Policy::default()), Err(Failure::Loop(_))));
    }

    #[test]
    fn negative_and_error_answers() {
        let mut w = walk();
        let mut e = Errors::one(name("dp.de.example"), Issue::new(ErrorKind::NotFound, "no"));
        e.negative_lifetime = Some(120);
        assert!(matches!(w.on_response(&name("dp.de.example"), Response::Errors(e), NOW, &ok), Step::Done(Outcome::NotFound { until, .. }) if until == NOW.plus_secs(120)));
        let mut w = walk();
        let e = Errors::one(name("dp.de.example"), Issue::new(ErrorKind::Forbidden, "rate"));
        assert!(matches!(w.on_response(&name("dp.de.example"), Response::Errors(e), NOW, &ok), Step::Done(Outcome::Fail(Failure::ServerError(_)))));
    }
}
