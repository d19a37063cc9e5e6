//! The authority's stored-record codec from arbitrary bytes (a corrupt
//! store file): never a panic; whatever decodes re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signpost_authority::model::NumberRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = NumberRecord::decode(data) {
        assert_eq!(NumberRecord::decode(&r.encode()).ok().as_ref(), Some(&r));
    }
});
