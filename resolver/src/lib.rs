//! # signpost-resolver — a carrier's recursive, verifying, caching resolver
//!
//! - [`core`]: the decisions, as one sans-I/O state machine (the
//!   `signpost-resolver-core` crate, re-exported);
//! - [`resolver`]: the async driver around it (sockets, timers, tasks);
//! - [`service`]: the LoST service behind the HTTP shell;
//! - [`config`]: the strict TOML configuration;
//! - [`lookup`]: the client library and CLI for APs (direct, or through an
//!   Oblivious HTTP relay);
//! - [`ohttp`]: the Oblivious HTTP gateway (RFC 9458) and client helpers;
//! - [`relay`]: the Oblivious HTTP relay;
//! - [`bulk`]: bulk (address-book) lookups.

pub use signpost_resolver_core as core;

pub mod bulk;
pub mod config;
pub mod lookup;
pub mod ohttp;
pub mod relay;
pub mod resolver;
pub mod service;
