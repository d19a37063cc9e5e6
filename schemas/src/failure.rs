//! Why a LoST request failed, and the one exhaustive mapping of a failure
//! onto a LoST `<errors>` answer. It lives in the wire contract (not in the
//! HTTP shell) so that sans-I/O cores — the resolver's state machine, the
//! simulator — decide failures without depending on any transport.

use crate::error::{DecodeError, ErrorKind};
use crate::lost::{Errors, Issue};
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
        }
    }
}

/// The `<errors>` answer for a failure.
pub fn failure_errors(source: Name, f: Failure) -> Errors {
    let (issue, negative_lifetime, feed_position) = match f {
        Failure::Decode(e) => (Issue::new(e.kind(), e.message()), None, None),
        Failure::ProfileUnrecognized(i) => (i, None, None),
        Failure::ServiceNotImplemented(m) => (Issue::new(ErrorKind::ServiceNotImplemented, m), None, None),
        Failure::Forbidden { message, retry_after } => {
            let mut i = Issue::new(ErrorKind::Forbidden, message);
            i.retry_after = retry_after;
            (i, None, None)
        }
        Failure::RateLimited { message, retry_after } => {
            let mut i = Issue::new(ErrorKind::Forbidden, message);
            i.retry_after = Some(retry_after);
            (i, None, None)
        }
        Failure::NotFound { message, negative_lifetime, feed_position } => {
            (Issue::new(ErrorKind::NotFound, message), Some(negative_lifetime), feed_position)
        }
        Failure::Loop(m) => (Issue::new(ErrorKind::Loop, m), None, None),
        Failure::ServerTimeout(m) => (Issue::new(ErrorKind::ServerTimeout, m), None, None),
        Failure::ServerError(m) => (Issue::new(ErrorKind::ServerError, m), None, None),
        Failure::Internal(m) => (Issue::new(ErrorKind::InternalError, m), None, None),
    };
    let mut e = Errors::one(source, issue);
    e.negative_lifetime = negative_lifetime;
    e.feed_position = feed_position;
    e
}
