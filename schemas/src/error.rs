//! LoST error kinds and the codec's decode error.

use std::fmt;

/// The error (and warning) elements of RFC 5222 §13.1 that the schema
/// defines. `SRSInvalid` and `locationValidationUnavailable` are left out:
/// the schema does not allow them in `<errors>` (the RFC's prose names
/// them, its schema defines neither as an error element).
/// The list is the schema's, closed: not `non_exhaustive`, so that every
/// match on it (the resolver's upstream classification) is exhaustive and a
/// new kind cannot slip through a wildcard arm.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum ErrorKind {
    /// §13.1 badRequest: the request could not be parsed or was invalid.
    BadRequest,
    /// §13.1 internalError.
    InternalError,
    /// §13.1 serviceSubstitution.
    ServiceSubstitution,
    /// §13.1 defaultMappingReturned.
    DefaultMappingReturned,
    /// §13.1 forbidden: authentication, authorization, rate limit.
    Forbidden,
    /// §13.1 notFound: no mapping for this location and service.
    NotFound,
    /// §13.1 loop: a server in `path` would see the request twice.
    Loop,
    /// §13.1 serviceNotImplemented.
    ServiceNotImplemented,
    /// §13.1 serverTimeout: an upstream server did not answer in time.
    ServerTimeout,
    /// §13.1 serverError: an upstream answer could not be used.
    ServerError,
    /// §13.1 locationInvalid.
    LocationInvalid,
    /// §13.1 locationProfileUnrecognized (carries `unsupportedProfiles`).
    LocationProfileUnrecognized,
}

impl ErrorKind {
    /// Every kind, in schema order.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::BadRequest,
        ErrorKind::InternalError,
        ErrorKind::ServiceSubstitution,
        ErrorKind::DefaultMappingReturned,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Loop,
        ErrorKind::ServiceNotImplemented,
        ErrorKind::ServerTimeout,
        ErrorKind::ServerError,
        ErrorKind::LocationInvalid,
        ErrorKind::LocationProfileUnrecognized,
    ];

    /// The LoST element name, also the fixed metrics label.
    pub const fn element(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "badRequest",
            ErrorKind::InternalError => "internalError",
            ErrorKind::ServiceSubstitution => "serviceSubstitution",
            ErrorKind::DefaultMappingReturned => "defaultMappingReturned",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "notFound",
            ErrorKind::Loop => "loop",
            ErrorKind::ServiceNotImplemented => "serviceNotImplemented",
            ErrorKind::ServerTimeout => "serverTimeout",
            ErrorKind::ServerError => "serverError",
            ErrorKind::LocationInvalid => "locationInvalid",
            ErrorKind::LocationProfileUnrecognized => "locationProfileUnrecognized",
        }
    }

    /// The kind for a LoST element name.
    pub fn from_element(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.element() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.element())
    }
}

/// What went wrong while decoding, as a fixed label for metrics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Problem {
    /// The document is larger than the byte limit.
    TooLarge,
    /// Elements nest deeper than the limit.
    TooDeep,
    /// More elements than the limit.
    TooManyElements,
    /// More attributes on one element than the limit.
    TooManyAttributes,
    /// A text node or attribute value is longer than the limit.
    TextTooLong,
    /// Not UTF-8 or UTF-16, or the declaration names another encoding.
    Encoding,
    /// Not well-formed XML.
    NotWellFormed,
    /// A DOCTYPE: DTDs are never processed (no entity expansion, no
    /// external fetches).
    Dtd,
    /// A reference to an entity that XML does not predefine.
    Entity,
    /// An element in the wrong namespace, or an undeclared prefix.
    Namespace,
    /// A root element that is not a message of the expected family.
    UnknownRoot,
    /// A structure the schema does not allow (missing, extra or misplaced
    /// element or attribute).
    Schema,
    /// An attribute or text value with the wrong syntax (CSI, id, time…).
    Value,
}

impl Problem {
    /// The fixed metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Problem::TooLarge => "too_large",
            Problem::TooDeep => "too_deep",
            Problem::TooManyElements => "too_many_elements",
            Problem::TooManyAttributes => "too_many_attributes",
            Problem::TextTooLong => "text_too_long",
            Problem::Encoding => "encoding",
            Problem::NotWellFormed => "not_well_formed",
            Problem::Dtd => "dtd",
            Problem::Entity => "entity",
            Problem::Namespace => "namespace",
            Problem::UnknownRoot => "unknown_root",
            Problem::Schema => "schema",
            Problem::Value => "value",
        }
    }
}

/// Why a document could not be decoded. Every decode error of a request is
/// answered with a LoST `<badRequest>` carrying [`DecodeError::message`].
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    problem: Problem,
    message: String,
}

impl DecodeError {
    pub(crate) fn new(problem: Problem, message: impl Into<String>) -> DecodeError {
        DecodeError { problem, message: message.into() }
    }
    /// The fixed label of the problem.
    pub fn problem(&self) -> Problem {
        self.problem
    }
    /// The human-readable message naming the problem.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The LoST error a server answers a request that failed to decode with.
    /// All decode failures are `badRequest` (RFC 5222 §13.1: "the server
    /// could not parse or otherwise understand a request").
    pub fn kind(&self) -> ErrorKind {
        match self.problem {
            Problem::TooLarge
            | Problem::TooDeep
            | Problem::TooManyElements
            | Problem::TooManyAttributes
            | Problem::TextTooLong
            | Problem::Encoding
            | Problem::NotWellFormed
            | Problem::Dtd
            | Problem::Entity
            | Problem::Namespace
            | Problem::UnknownRoot
            | Problem::Schema
            | Problem::Value => ErrorKind::BadRequest,
        }
    }
    /// The LoST error a resolver answers its client with when an upstream
    /// answer fails to decode: `serverError` (the rule: an upstream answer
    /// that could not be parsed or verified is the resolver's server error,
    /// never the client's fault).
    pub fn upstream_kind(&self) -> ErrorKind {
        ErrorKind::ServerError
    }
}
