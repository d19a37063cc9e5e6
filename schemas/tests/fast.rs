//! The one-pass findService reader against the full decoder: whenever the
//! fast path accepts a document, the full decoder returns the same request
//! for the same bytes — on generated requests, on every golden request
//! sample, and on random mutations of both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use signpost_schemas::lost::Tag;
use signpost_schemas::{Csi, FindService, Limits, Location, Name, Path, Request, SenderContext, Uri};

fn csi() -> impl Strategy<Value = Csi> {
    prop_oneof![
        (0u32..100_000_000).prop_map(|n| Csi::from_wire(&format!("tel:+49151{n:08}")).unwrap()),
        "[a-z0-9][a-z0-9_+-]{0,11}".prop_map(|l| Csi::from_wire(&format!("mailto:{l}@mail.example")).unwrap()),
    ]
}
fn name() -> impl Strategy<Value = Name> {
    "[a-z][a-z0-9]{0,8}\\.(example|test)".prop_map(|s| Name::parse(&s).unwrap())
}
fn find_service() -> impl Strategy<Value = FindService> {
    (
        any::<bool>(),
        vec(("[a-zA-Z0-9._-]{1,10}", csi()), 1..3),
        option::of(prop_oneof![Just("urn:service:mimi"), Just("urn:service:sos.police")]),
        option::of(vec(name(), 1..4)),
        option::of((option::of(name()), vec("[a-z]{1,8}", 0..3))),
    )
        .prop_map(|(recursive, locs, service, path, ctx)| FindService {
            recursive,
            locations: locs.into_iter().map(|(id, csi)| Location::Csi { id, csi }).collect(),
            service: service.map(|s| Uri::parse(s).unwrap()),
            path: path.and_then(Path::from_vec),
            context: ctx.map(|(sender_provider, tags)| SenderContext { sender_provider, tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect() }),
        })
}

/// The property: fast ⇒ full, with the same value.
fn agree(bytes: &[u8]) {
    let fast = Request::decode(bytes, &Limits::MESSAGE);
    let full = Request::decode_full(bytes, &Limits::MESSAGE);
    match (&fast, &full) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes)),
        (Err(_), Err(_)) => {}
        _ => panic!("fast {fast:?} vs full {full:?} for {}", String::from_utf8_lossy(bytes)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]

    #[test]
    fn generated_requests_decode_the_same_on_both_paths(f in find_service()) {
        let enc = Request::FindService(f.clone()).encode();
        assert_eq!(Request::decode(enc.as_bytes(), &Limits::MESSAGE).unwrap(), Request::FindService(f));
        agree(enc.as_bytes());
    }

    #[test]
    fn mutated_requests_decode_the_same_on_both_paths(f in find_service(), edits in vec((any::<prop::sample::Index>(), 0u8..4, 0x09u8..0x7f), 1..4)) {
        let mut b = Request::FindService(f).encode().into_bytes();
        for (at, op, byte) in edits {
            let i = at.index(b.len().max(1));
            match op {
                0 => b[i] = byte,
                1 => b.insert(i, byte),
                2 => { b.remove(i); }
                _ => { b.insert(i, b' '); }
            }
        }
        agree(&b);
    }
}

#[test]
fn the_golden_requests_decode_the_same_on_both_paths() {
    for (name, body) in common::samples("valid/lost").into_iter().chain(common::samples("invalid/request")) {
        if name.contains("response") {
            continue;
        }
        agree(&body);
    }
}

#[test]
fn what_the_fast_path_does_not_know_takes_the_full_decoder() {
    let f = FindService::for_csi(Csi::from_wire("tel:+4915112345678").unwrap(), true);
    let enc = Request::FindService(f.clone()).encode();
    // Single quotes, a comment, an entity, a foreign extension: all still
    // decode (through the full decoder) to the same request or its error.
    for variant in [
        enc.replace("id=\"l1\"", "id='l1'"),
        enc.replace("<service>", "<!-- c --><service>"),
        enc.replace("tel:+4915112345678", "tel:&#43;4915112345678"),
        enc.replace("</findService>", "<x:ext xmlns:x=\"urn:x\"/></findService>"),
    ] {
        assert_eq!(Request::decode(variant.as_bytes(), &Limits::MESSAGE).unwrap(), Request::FindService(f.clone()), "{variant}");
        agree(variant.as_bytes());
    }
}
