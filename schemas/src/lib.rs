//! # signpost-schemas — the wire contract
//!
//! Everything two Signpost parts must agree on, with no I/O and no clock of
//! its own:
//!
//! - [`csi`]: cross-service identifiers (E.164 numbers, email addresses) as
//!   newtypes that only hold canonical, valid values;
//! - [`lost`]: the LoST messages of RFC 5222 with Signpost's `sp`
//!   extensions, and their codec ([`xml`] does the bounded reading);
//! - [`sp`]: Signpost's own documents: the root table, change-feed frames,
//!   provisioning requests and results;
//! - [`route`]: longest-prefix and nearest-domain routing tables;
//! - [`signing`]: the canonical bytes that signatures cover;
//! - [`failure`]: why a request failed, mapped onto LoST errors in one place;
//! - [`time`]: timestamps, `expires`, and the [`time::Clock`] trait.
//!
//! The RELAX NG schema of the `sp` namespace, golden sample messages and the
//! ASN.1 of the certificate extension live beside this crate's sources.

#![forbid(unsafe_code)]

pub mod b64;
pub mod csi;
pub mod error;
pub mod failure;
mod fast;
pub mod lost;
pub mod name;
pub mod route;
pub mod signing;
pub mod sp;
pub mod time;
pub mod xml;

pub use csi::{Csi, CsiError, Domain, E164, E164Prefix, Email, Region};
pub use error::{DecodeError, ErrorKind, Problem};
pub use failure::{Failure, failure_errors};
pub use lost::{
    Assurance, AuthorityRef, Cover, Delegation, DisplayName, Endpoint, Epoch, Errors, FindService,
    FindServiceResponse, Issue, IssueList, KeyId, ListServices, ListServicesResponse, Location, Mapping,
    MappingBody, MappingTail, Message, NoProvidersReason, Path, ProviderEntry, Redirect, Request, Response,
    SenderContext, Signature, StaleAnswer, Tag, Uri, Warnings,
};
pub use name::{Name, NameError};
pub use time::{Clock, Expires, ManualClock, SystemClock, Timestamp};
pub use xml::Limits;
