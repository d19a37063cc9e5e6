//! What the benches share: the authority they run (`dp.de.example` for
//! `+49`, the sample's lifetimes).

use signpost_authority::core::Settings;
use signpost_schemas::Name;
use signpost_trust::ScopeEntry;

/// The bench authority's settings.
pub fn settings() -> Settings {
    Settings {
        id: Name::parse("dp.de.example").unwrap(),
        scope: vec![ScopeEntry::parse("+49").unwrap()],
        mapping_ttl: 3600,
        negative_ttl: 60,
        signature_validity: 7 * 86_400,
        renew_before: 86_400,
        root: None,
    }
}
