//! # signpost-authority — mappings, signed answers, provisioning, lifecycle, change feed

#![forbid(unsafe_code)]

pub mod config;
pub mod core;
pub mod import;
pub mod limits;
pub mod service;
pub mod model;
pub mod store;
