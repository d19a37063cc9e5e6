//! The live topology: the shared test kit's (`signpost-kit`), the same
//! library code the binaries run, with real TLS, real HTTP/2 and real
//! change feeds.

pub use signpost_kit::{AuthorityNode, Cert, Live, Pki, Plan, ResolverNode, RootNode, Running};
