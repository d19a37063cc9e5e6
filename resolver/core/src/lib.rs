//! # signpost-resolver-core — the resolver's decisions as one state machine
//!
//! Every decision a Signpost resolver makes lives here, with all the state
//! it needs, and none of the I/O: which server to ask (the cached referral,
//! the preloaded root table, the root), loop and depth limits, endpoint
//! choice by RTT with failover, single-flight per key, whether a signed
//! answer is accepted (through the [`Verify`] hook), which lifetime it gets,
//! the answer, referral and negative caches (bounded in entries and bytes),
//! serve-stale with RFC 8767's three timers, change-feed cursors, push
//! invalidation, refresh-ahead and resync.
//!
//! The shape is quinn-proto's `Connection`: the driver feeds inputs, each
//! with `now` —
//! [`Resolver::handle_query`], [`Resolver::handle_upstream`],
//! [`Resolver::handle_fetch`], [`Resolver::handle_feed`],
//! [`Resolver::handle_timeout`], and an operator's [`Resolver::flush`] —
//! and carries out outputs —
//! [`Resolver::poll_answer`], [`Resolver::poll_transmit`],
//! [`Resolver::poll_timeout`], [`Resolver::poll_event`]. The async server
//! (`signpost-resolver`) and the testbed's simulator drive the same code;
//! this crate depends on no runtime, no HTTP and no TLS.
//!
//! ## The invalidation invariant
//!
//! *Every change committed at an authority after the moment an answer was
//! read is delivered to every resolver holding that answer — as a change
//! frame, or as a resync that flushes it.*
//!
//! It holds by construction:
//!
//! 1. Authorities say where their feed stood when they read an answer
//!    (`sp:feedPosition`); an answer is cached only if the resolver's feed
//!    subscription to that authority starts at or before that position, or
//!    if the changes it has applied since then do not touch the identifier
//!    ([`feed::Feed::coverage`]); otherwise the answer is asked for again.
//! 2. A feed resumes from the position through which it has applied
//!    changes; a position older than the authority's history gets a resync,
//!    which flushes everything learned from that authority (and only that).
//! 3. A change evicts every cached answer of the identifier that was read
//!    before it and came from that authority, directly or through its
//!    referral; answers are grouped by identifier, so there is no second
//!    index that could lose track of a replaced entry.
//! 4. Refreshes (hot entries resolved again after an invalidation) are
//!    ordinary resolutions inside the machine and are cached under the
//!    same rule.

#![forbid(unsafe_code)]

pub mod cache;
pub mod feed;
pub mod machine;
pub mod policy;

pub use machine::{Answer, Config, Event, FeedEvent, Fetched, Flush, QueryId, Resolver, Stats, StreamId, Transmit, TransmitId, Upstream, Verify};
pub use policy::Policy;
