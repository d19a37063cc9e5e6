//! Why a LoST request failed, and the one exhaustive mapping of a failure
//! onto a LoST `<errors>` answer. It lives in the wire contract (not in the
//! HTTP shell) so that sans-I/O cores — the resolver's state machine, the
//! simulator — decide failures without depending on any transport.

use crate::csi::Csi;
use crate::error::{DecodeError, ErrorKind};
use crate::lost::{Errors, FindService, Issue, IssueList, ListServices, Uri};
use crate::name::Name;

/// Why a LoST request failed. Every variant reaches the wire through
/// [`failure_errors`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The body did not decode.
    #[error("{0}")]
    Decode(DecodeError),
    /// No location with a profile the server serves.
    #[error("location profile not served")]
    ProfileUnrecognized(Issue),
    /// A service other than the ones served.
    #[error("{0}")]
    ServiceNotImplemented(String),
    /// A client over its rate or miss budget (a `forbidden` with
    /// `sp:retryAfter`; the shell adds a `Retry-After` header).
    #[error("{message}")]
    RateLimited {
        /// Why.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after: u32,
    },
    /// Authentication, authorization or rate limit.
    #[error("{message}")]
    Forbidden {
        /// Why.
        message: String,
        /// For rate limits: when to try again.
        retry_after: Option<u32>,
    },
    /// No mapping or delegation.
    #[error("{message}")]
    NotFound {
        /// Why.
        message: String,
        /// How long the negative answer may be cached.
        negative_lifetime: u32,
        /// An authority's change-feed position when it read the absence.
        feed_position: Option<u64>,
    },
    /// The request would loop.
    #[error("{0}")]
    Loop(String),
    /// An upstream server did not answer and nothing stale can be served.
    #[error("{0}")]
    ServerTimeout(String),
    /// An upstream answer could not be parsed or verified.
    #[error("{0}")]
    ServerError(String),
    /// A fault of this server.
    #[error("{0}")]
    Internal(String),
    /// Several errors that all apply to one request (RFC 5222 §13.1: one
    /// `<errors>` carries at most one error of each kind); the first is
    /// the main one (its kind is [`Failure::kind`]).
    #[error("{}", several_message(.0))]
    Several(Vec<Failure>),
}

fn several_message(v: &[Failure]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl Failure {
    /// The LoST error element.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Failure::Decode(e) => e.kind(),
            Failure::ProfileUnrecognized(i) => i.kind,
            Failure::ServiceNotImplemented(_) => ErrorKind::ServiceNotImplemented,
            Failure::Forbidden { .. } | Failure::RateLimited { .. } => ErrorKind::Forbidden,
            Failure::NotFound { .. } => ErrorKind::NotFound,
            Failure::Loop(_) => ErrorKind::Loop,
            Failure::ServerTimeout(_) => ErrorKind::ServerTimeout,
            Failure::ServerError(_) => ErrorKind::ServerError,
            Failure::Internal(_) => ErrorKind::InternalError,
            Failure::Several(v) => v.first().map_or(ErrorKind::InternalError, Failure::kind),
        }
    }
}

/// The `<errors>` answer for a failure.
pub fn failure_errors(source: Name, f: Failure) -> Errors {
    let mut e = Errors { source, list: IssueList::new(), negative_lifetime: None, feed_position: None };
    add_failure(&mut e, f);
    if e.list.issues().is_empty() {
        // An empty `Several`: still an answer with one error.
        e.list.set(Issue::new(ErrorKind::InternalError, "no error recorded"));
    }
    e
}

fn add_failure(e: &mut Errors, f: Failure) {
    let issue = match f {
        Failure::Decode(d) => Issue::new(d.kind(), d.message()),
        Failure::ProfileUnrecognized(i) => i,
        Failure::ServiceNotImplemented(m) => Issue::new(ErrorKind::ServiceNotImplemented, m),
        Failure::Forbidden { message, retry_after } => {
            let mut i = Issue::new(ErrorKind::Forbidden, message);
            i.retry_after = retry_after;
            i
        }
        Failure::RateLimited { message, retry_after } => {
            let mut i = Issue::new(ErrorKind::Forbidden, message);
            i.retry_after = Some(retry_after);
            i
        }
        Failure::NotFound { message, negative_lifetime, feed_position } => {
            e.negative_lifetime = Some(negative_lifetime);
            e.feed_position = feed_position;
            Issue::new(ErrorKind::NotFound, message)
        }
        Failure::Loop(m) => Issue::new(ErrorKind::Loop, m),
        Failure::ServerTimeout(m) => Issue::new(ErrorKind::ServerTimeout, m),
        Failure::ServerError(m) => Issue::new(ErrorKind::ServerError, m),
        Failure::Internal(m) => Issue::new(ErrorKind::InternalError, m),
        Failure::Several(v) => {
            for f in v {
                add_failure(e, f);
            }
            return;
        }
    };
    // One per kind: the first reported of a kind is kept.
    if e.list.get(issue.kind).is_none() {
        e.list.set(issue);
    }
}

/// The checks a Signpost server makes on a `findService` before it looks
/// anything up — the service (only `served` is offered) and the location
/// profile (the first `sp-csi` location, RFC 5222 §8.3.1) — with every
/// error that applies reported together: RFC 5222's own examples (a
/// geodetic location for `urn:service:sos.police`) get both
/// `locationProfileUnrecognized` and `serviceNotImplemented`. Loop
/// detection stays with the caller: a loop is answered alone.
pub fn check_find_service<'a>(f: &'a FindService, server: &Name, served: &str) -> Result<(&'a str, &'a Csi), Failure> {
    let service = match &f.service {
        Some(s) if s.as_str() != served => {
            Some(Failure::ServiceNotImplemented(format!("{server} serves {served} only, not {}", s.as_str())))
        }
        _ => None,
    };
    match (f.csi_location(), service) {
        (Ok(found), None) => Ok(found),
        (Ok(_), Some(s)) => Err(s),
        (Err(p), None) => Err(Failure::ProfileUnrecognized(p)),
        (Err(p), Some(s)) => Err(Failure::Several(vec![Failure::ProfileUnrecognized(p), s])),
    }
}

/// The answer to a `listServices` (RFC 5222 §10) from a server offering
/// `offered` (top-level service URNs without sub-services): with no
/// `<service>`, every offered service; with an offered service, its
/// immediate sub-services the server offers (none: an empty list); with a
/// service the server does not offer, `serviceNotImplemented` (it cannot
/// list what it does not know). Loop detection stays with the caller.
pub fn list_services(l: &ListServices, server: &Name, offered: &[&str]) -> Result<Vec<Uri>, Failure> {
    let all = || offered.iter().filter_map(|s| Uri::parse(s).ok());
    match &l.service {
        None => Ok(all().collect()),
        Some(parent) => {
            let p = parent.as_str();
            if offered.iter().any(|s| s.eq_ignore_ascii_case(p)) {
                // Immediate children of `p` among the offered services.
                let children = all()
                    .filter(|u| {
                        u.as_str()
                            .get(p.len()..)
                            .and_then(|rest| rest.strip_prefix('.'))
                            .is_some_and(|rest| !rest.is_empty() && !rest.contains('.'))
                            && u.as_str().get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p))
                    })
                    .collect();
                Ok(children)
            } else {
                Err(Failure::ServiceNotImplemented(format!(
                    "{server} offers {} only, so it lists no sub-services of {p}",
                    offered.join(" ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::lost::Location;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn every_applicable_error_is_reported() {
        let geo = FindService {
            recursive: false,
            locations: vec![Location::Other { id: "6020688f1ce1896d".into(), profile: Some("geodetic-2d".into()) }],
            service: Some(Uri::parse("urn:service:sos.police").unwrap()),
            path: None,
            context: None,
        };
        let f = check_find_service(&geo, &n("a.example"), crate::lost::SERVICE_MIMI).unwrap_err();
        assert_eq!(f.kind(), ErrorKind::LocationProfileUnrecognized);
        let e = failure_errors(n("a.example"), f);
        let kinds: Vec<_> = e.list.issues().iter().map(|i| i.kind).collect();
        assert_eq!(kinds, [ErrorKind::LocationProfileUnrecognized, ErrorKind::ServiceNotImplemented]);
        // One error when only one applies.
        let mut mimi = geo.clone();
        mimi.service = None;
        assert!(matches!(check_find_service(&mimi, &n("a.example"), crate::lost::SERVICE_MIMI), Err(Failure::ProfileUnrecognized(_))));
    }

    #[test]
    fn list_services_follows_the_service_asked_about() {
        let ask = |s: Option<&str>| ListServices { service: s.map(|s| Uri::parse(s).unwrap()), path: None };
        let offered = [crate::lost::SERVICE_MIMI];
        let all = list_services(&ask(None), &n("a.example"), &offered).unwrap();
        assert_eq!(all.iter().map(Uri::as_str).collect::<Vec<_>>(), [crate::lost::SERVICE_MIMI]);
        assert_eq!(list_services(&ask(Some("urn:service:mimi")), &n("a.example"), &offered).unwrap(), vec![]);
        assert!(matches!(list_services(&ask(Some("urn:service:sos")), &n("a.example"), &offered), Err(Failure::ServiceNotImplemented(_))));
        let nested = ["urn:service:x", "urn:service:x.a", "urn:service:x.a.b", "urn:service:xy"];
        let kids = list_services(&ask(Some("urn:service:x")), &n("a.example"), &nested).unwrap();
        assert_eq!(kids.iter().map(Uri::as_str).collect::<Vec<_>>(), ["urn:service:x.a"]);
    }
}
