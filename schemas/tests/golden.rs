//! Golden samples: every valid one validates with xmllint, decodes,
//! re-encodes to a document that validates and decodes to the same value;
//! every invalid one is refused with the LoST error its file name names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use signpost_schemas::sp::{FeedFrame, Provision, ProvisionResult, RootTable};
use signpost_schemas::{ErrorKind, Limits, Request, Response};

fn is_request(name: &str) -> bool {
    (name.starts_with("find-service") || name.starts_with("list-services")) && !name.contains("response")
}

#[test]
fn valid_lost_samples_validate_decode_and_round_trip() {
    let samples = common::samples("valid/lost");
    let originals: Vec<(String, String)> =
        samples.iter().map(|(n, b)| (n.clone(), String::from_utf8(b.clone()).unwrap())).collect();
    let mut reencoded = Vec::new();
    for (name, body) in &samples {
        let encoded = if is_request(name) {
            let r = Request::decode(body, &Limits::MESSAGE).unwrap_or_else(|e| panic!("{name}: {e}"));
            let enc = r.encode();
            assert_eq!(Request::decode(enc.as_bytes(), &Limits::MESSAGE).unwrap(), r, "{name}");
            enc
        } else {
            let r = Response::decode(body, &Limits::MESSAGE).unwrap_or_else(|e| panic!("{name}: {e}"));
            let enc = r.encode();
            assert_eq!(Response::decode(enc.as_bytes(), &Limits::MESSAGE).unwrap(), r, "{name}");
            enc
        };
        assert!(encoded.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{name}");
        reencoded.push((format!("re-encoded {name}"), encoded));
    }
    let all: Vec<_> = originals.into_iter().chain(reencoded).collect();
    assert_eq!(common::xmllint_lost(&all), Vec::<String>::new());
}

#[test]
fn valid_sp_samples_validate_decode_and_round_trip() {
    let mut docs = Vec::new();
    for (name, body) in common::samples("valid/sp") {
        let enc = if name.starts_with("root-table") {
            let t = RootTable::decode(&body, &Limits::DOCUMENT).unwrap_or_else(|e| panic!("{name}: {e}"));
            let enc = t.encode();
            assert_eq!(RootTable::decode(enc.as_bytes(), &Limits::DOCUMENT).unwrap(), t);
            enc
        } else if name.starts_with("feed-") {
            let f = FeedFrame::decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let enc = f.encode();
            assert!(enc.ends_with('\n') && enc.matches('\n').count() == 1, "a frame is one line");
            assert_eq!(FeedFrame::decode(enc.as_bytes()).unwrap(), f);
            enc
        } else if name == "provision-result.xml" {
            let r = ProvisionResult::decode(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            let enc = r.encode();
            assert_eq!(ProvisionResult::decode(enc.as_bytes()).unwrap(), r);
            enc
        } else {
            let p = Provision::decode(&body, &Limits::MESSAGE).unwrap_or_else(|e| panic!("{name}: {e}"));
            let enc = p.encode();
            assert_eq!(Provision::decode(enc.as_bytes(), &Limits::MESSAGE).unwrap(), p);
            enc
        };
        docs.push((name.clone(), String::from_utf8(body).unwrap()));
        docs.push((format!("re-encoded {name}"), enc));
    }
    assert_eq!(common::xmllint(&common::sp_rng(), &docs), Vec::<String>::new());
}

fn expected(name: &str) -> ErrorKind {
    let kind = name.split("--").next().unwrap();
    ErrorKind::from_element(kind).unwrap_or_else(|| panic!("{name}: file name must start with a LoST error kind"))
}

#[test]
fn invalid_requests_get_the_named_error() {
    for (name, body) in common::samples("invalid/request") {
        let got = match Request::decode(&body, &Limits::MESSAGE) {
            Err(e) => {
                assert!(!e.message().is_empty());
                e.kind()
            }
            Ok(Request::FindService(f)) => match f.csi_location() {
                Err(issue) => issue.kind,
                Ok(_) => panic!("{name}: was accepted"),
            },
            Ok(other) => panic!("{name}: was accepted as {other:?}"),
        };
        assert_eq!(got, expected(&name), "{name}");
    }
}

#[test]
fn invalid_responses_get_the_named_error() {
    for (name, body) in common::samples("invalid/response") {
        match Response::decode(&body, &Limits::MESSAGE) {
            Err(e) => assert_eq!(e.upstream_kind(), expected(&name), "{name}: {e}"),
            Ok(r) => panic!("{name}: was accepted as {r:?}"),
        }
    }
}

#[test]
fn invalid_sp_documents_get_the_named_error() {
    for (name, body) in common::samples("invalid/sp") {
        let r = if name.contains("root-table") {
            RootTable::decode(&body, &Limits::DOCUMENT).map(|_| ())
        } else if name.contains("change") {
            FeedFrame::decode(&body).map(|_| ())
        } else {
            Provision::decode(&body, &Limits::MESSAGE).map(|_| ())
        };
        match r {
            Err(e) => assert_eq!(e.kind(), expected(&name), "{name}: {e}"),
            Ok(()) => panic!("{name}: was accepted"),
        }
    }
}

/// Deployed LoST clients (Kamailio's `lost` module) read every child of
/// `<errors>` as an error: the notFound qualifiers travel inside
/// `<notFound>`, and the placement beside it, as written before, is still read.
#[test]
fn not_found_qualifiers_sit_inside_the_not_found_element() {
    for (name, body) in common::samples("valid/lost").into_iter().filter(|(n, _)| n.starts_with("errors-not-found")) {
        let Response::Errors(e) = Response::decode(&body, &Limits::MESSAGE).unwrap() else { panic!("{name}") };
        assert_eq!(e.negative_lifetime, Some(60), "{name}");
        let enc = e.clone();
        let out = Response::Errors(enc).encode();
        let inner = out.split("<notFound").nth(1).and_then(|s| s.split("</notFound>").next()).unwrap_or("");
        assert!(inner.contains("<sp:negativeLifetime seconds=\"60\"/>"), "{name}: {out}");
        let after = out.split("</notFound>").nth(1).unwrap_or("");
        assert!(!after.contains("<sp:"), "{name}: an sp element is a direct child of <errors>: {out}");
    }
}
