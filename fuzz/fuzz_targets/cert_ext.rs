//! Signpost's certificate extension (role, id, scope) from arbitrary DER:
//! never a panic; whatever decodes re-encodes to the same bytes' meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signpost_trust::Authorization;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Authorization::from_der(data) {
        assert_eq!(Authorization::from_der(&a.to_der()).ok().as_ref(), Some(&a));
    }
});
