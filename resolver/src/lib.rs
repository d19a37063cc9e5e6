pub mod config;
pub mod core;
pub mod resolver;
pub mod service;
pub mod lookup;
