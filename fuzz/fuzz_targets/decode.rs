//! Decode arbitrary bytes as every Signpost document kind; whatever decodes
//! must encode to a document that decodes to the same value
//! (parse → encode → reparse); requests decode the same on the one-pass
//! and the full path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signpost_schemas::sp::{FeedFrame, Provision, RootTable};
use signpost_schemas::{Limits, Request, Response};

fuzz_target!(|data: &[u8]| {
    // The one-pass findService reader never accepts what the full decoder
    // would read differently or refuse.
    let (fast, full) = (Request::decode(data, &Limits::MESSAGE), Request::decode_full(data, &Limits::MESSAGE));
    assert_eq!(fast.as_ref().ok(), full.as_ref().ok(), "the two decoders disagree");
    assert_eq!(fast.is_ok(), full.is_ok());
    if let Ok(r) = fast {
        let again = Request::decode(r.encode().as_bytes(), &Limits::MESSAGE);
        assert_eq!(again.as_ref().ok(), Some(&r), "request did not survive re-encoding");
    }
    if let Ok(r) = Response::decode(data, &Limits::MESSAGE) {
        let again = Response::decode(r.encode().as_bytes(), &Limits::MESSAGE);
        assert_eq!(again.as_ref().ok(), Some(&r), "response did not survive re-encoding");
    }
    if let Ok(t) = RootTable::decode(data, &Limits::MESSAGE) {
        assert_eq!(RootTable::decode(t.encode().as_bytes(), &Limits::MESSAGE).ok().as_ref(), Some(&t));
    }
    if let Ok(f) = FeedFrame::decode(data) {
        assert_eq!(FeedFrame::decode(f.encode().as_bytes()).ok().as_ref(), Some(&f));
    }
    if let Ok(p) = Provision::decode(data, &Limits::MESSAGE) {
        assert_eq!(Provision::decode(p.encode().as_bytes(), &Limits::MESSAGE).ok().as_ref(), Some(&p));
    }
});
