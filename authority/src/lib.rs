//! # signpost-authority — mappings, signed answers, provisioning, lifecycle, change feed

#![forbid(unsafe_code)]

pub mod bulk;
pub mod config;
pub mod core;
pub mod dns;
pub use signpost_net::limits;
pub mod import;

pub mod service;
pub mod model;
pub mod sigcache;
pub mod answers;
mod clock;
pub mod store;
pub mod zone_import;
