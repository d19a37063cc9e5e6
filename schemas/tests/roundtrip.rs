//! Property tests: for every wire type, `decode(encode(x)) == x`, and every
//! generated document validates with xmllint against the official LoST
//! schema, the LoST+sp driver grammar, or the sp schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::Mutex;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use signpost_schemas::sp::{
    Change, ChangeOp, EntryRecord, FeedFrame, Provision, ProvisionResult, RootTable, Subject, Visibility,
};
use signpost_schemas::*;

const CASES: u32 = 192;

fn name() -> impl Strategy<Value = Name> {
    "[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,4})?(\\.[a-z0-9]{1,6}){0,2}\\.[a-z]{2,6}"
        .prop_filter_map("name", |s| Name::parse(&s).ok())
}

fn e164() -> impl Strategy<Value = E164> {
    (prop::sample::select(vec!["49", "1", "33", "44", "39", "353", "81"]), "[0-9]{4,12}")
        .prop_filter_map("valid number", |(cc, nat)| E164::from_digits(&format!("{cc}{nat}")).ok())
}

fn email() -> impl Strategy<Value = Email> {
    let local = prop_oneof![
        "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[A-Za-z0-9_-]{1,8}){0,2}",
        "\"[ A-Za-z0-9@.,:;()<>\\[\\]]{1,12}\"",
        "[a-z\u{e0}-\u{ff}]{1,8}",
    ];
    (local, "[a-z][a-z0-9-]{0,8}[a-z0-9]\\.(example|test|xn--bcher-kva\\.example)")
        .prop_filter_map("valid email", |(l, d)| Email::parse(&format!("{l}@{d}")).ok())
}

fn csi() -> impl Strategy<Value = Csi> {
    prop_oneof![e164().prop_map(Csi::E164), email().prop_map(Csi::Email)]
}

fn ts() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        (0u64..=253_402_300_799_999).prop_map(Timestamp::from_millis),
        (1_700_000_000u64..1_900_000_000).prop_map(Timestamp::from_secs),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,24}", "[<>&\"' a-z\t\n\r]{0,16}"]
}

fn message() -> impl Strategy<Value = Message> {
    ("[!-~]{1,10}( [!-~]{1,10}){0,3}", prop::sample::select(vec!["en", "de", "fr-CA", "x-klingon"]))
        .prop_map(|(t, l)| Message { text: t, lang: l.to_owned() })
}

fn uri() -> impl Strategy<Value = Uri> {
    "(mimi|https|xmpp|urn):[a-z0-9/._%+-]{1,30}".prop_filter_map("uri", |s| Uri::parse(&s).ok())
}

fn tag() -> impl Strategy<Value = Tag> {
    "[a-z0-9._-]{1,12}".prop_filter_map("tag", |s| Tag::parse(&s).ok())
}

fn path() -> impl Strategy<Value = Path> {
    vec(name(), 1..4).prop_map(|v| Path::from_vec(v).unwrap())
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        "https://127\\.0\\.0\\.[1-9]:[1-9][0-9]{1,4}/lost",
        "https://\\[::1\\]:[1-9][0-9]{1,4}/lost",
        "https://[a-z]{1,8}\\.example(:[0-9]{2,5})?(/[a-z]{1,6})?",
    ]
    .prop_filter_map("endpoint", |s| Endpoint::parse(&s).ok())
}

fn cover() -> impl Strategy<Value = Cover> {
    prop_oneof![
        "\\+[1-9][0-9]{0,6}".prop_map(|p| Cover::Prefix(E164Prefix::parse(&p).unwrap())),
        ("[a-z][a-z0-9]{0,8}(\\.[a-z]{2,6}){1,2}", any::<bool>())
            .prop_filter_map("domain", |(d, inc)| Domain::parse(&d).ok().map(|domain| Cover::Domain {
                domain,
                include_subdomains: inc
            })),
    ]
}

fn delegation() -> impl Strategy<Value = Delegation> {
    (cover(), any::<u32>(), vec((name(), vec(endpoint(), 1..3)), 1..3)).prop_map(|(cover, lifetime, a)| Delegation {
        cover,
        lifetime,
        authorities: a.into_iter().map(|(id, endpoints)| AuthorityRef { id, endpoints }).collect(),
    })
}

fn signature() -> impl Strategy<Value = Signature> {
    ("[A-Za-z0-9._-]{1,24}", ts(), ts(), vec(any::<u8>(), 1..80)).prop_map(|(k, a, b, value)| Signature {
        key_id: KeyId::parse(&k).unwrap(),
        signed_at: a,
        valid_until: b,
        value,
    })
}

fn location() -> impl Strategy<Value = Location> {
    prop_oneof![
        ("[a-z0-9]{1,8}", csi()).prop_map(|(id, csi)| Location::Csi { id, csi }),
        ("[a-z0-9]{1,8}", option::of("geodetic-2d|civic|[a-z][a-z0-9:._-]{0,10}"))
            .prop_filter("not sp-csi", |(_, p)| p.as_deref() != Some("sp-csi"))
            .prop_map(|(id, profile)| Location::Other { id, profile }),
    ]
}

fn find_service() -> impl Strategy<Value = FindService> {
    (
        any::<bool>(),
        vec(location(), 1..3),
        option::of(uri()),
        option::of(path()),
        option::of((option::of(name()), vec(tag(), 0..3))),
    )
        .prop_map(|(recursive, locations, service, path, ctx)| FindService {
            recursive,
            locations,
            service,
            path,
            context: ctx.map(|(sender_provider, tags)| SenderContext { sender_provider, tags }),
        })
}

fn expires() -> impl Strategy<Value = Expires> {
    prop_oneof![ts().prop_map(Expires::At), Just(Expires::NoCache), Just(Expires::NoExpiration)]
}

fn assurance() -> impl Strategy<Value = Assurance> {
    prop_oneof![Just(Assurance::CsipAttested), Just(Assurance::MspVerified)]
}

fn mapping() -> impl Strategy<Value = Mapping> {
    let body = prop_oneof![
        (name(), any::<u32>(), vec(tag(), 0..3), assurance(), any::<u64>(), vec(uri(), 0..3)).prop_map(
            |(id, priority, tags, assurance, epoch, uris)| {
                (MappingBody::Provider(ProviderEntry { id, priority, tags, assurance, epoch: Epoch(epoch) }), uris)
            }
        ),
        (
            prop_oneof![Just(NoProvidersReason::OptedOut), Just(NoProvidersReason::RecipientPreferences)],
            any::<u64>()
        )
            .prop_map(|(reason, e)| (MappingBody::NoProviders { reason, epoch: Epoch(e) }, Vec::new())),
    ];
    (
        expires(),
        ts(),
        name(),
        "[A-Za-z0-9-]{1,20}",
        vec((text(), prop::sample::select(vec!["en", "de", "zh-Hant"])), 0..3),
        option::of(uri()),
        body,
        option::of(signature()),
    )
        .prop_map(|(expires, last_updated, source, source_id, dn, service, (body, uris), signature)| Mapping {
            expires,
            last_updated,
            source,
            source_id,
            display_names: dn.into_iter().map(|(text, l)| DisplayName { text, lang: l.to_owned() }).collect(),
            service,
            uris,
            body,
            signature,
        })
}

fn issue_list(with_retry: bool) -> impl Strategy<Value = IssueList> {
    vec(
        (
            prop::sample::select(ErrorKind::ALL.to_vec()),
            option::of(message()),
            option::of(any::<u32>()),
            vec("[a-z][a-z0-9.-]{0,10}", 1..3),
        ),
        0..5,
    )
    .prop_map(move |items| {
        let mut l = IssueList::new();
        for (kind, message, retry, profiles) in items {
            l.set(Issue {
                kind,
                message,
                retry_after: if with_retry { retry } else { None },
                unsupported_profiles: if kind == ErrorKind::LocationProfileUnrecognized { profiles } else { Vec::new() },
            });
        }
        l
    })
}

fn warnings() -> impl Strategy<Value = Warnings> {
    (name(), issue_list(false), option::of((name(), ts()))).prop_map(|(source, list, stale)| Warnings {
        source,
        list,
        stale: stale.map(|(authority, expired_at)| StaleAnswer { authority, expired_at }),
    })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (vec(mapping(), 1..4), vec(warnings(), 0..3), path(), option::of("[a-z0-9]{1,8}"), option::of(any::<u64>())).prop_map(
            |(mappings, warnings, path, location_used, feed_position)| Response::Found(FindServiceResponse {
                mappings,
                warnings,
                path,
                location_used,
                feed_position
            })
        ),
        (name(), option::of(message()), delegation(), option::of(any::<u64>())).prop_map(|(source, message, delegation, feed_position)| {
            Response::Redirect(Redirect { target: delegation.authorities[0].id.clone(), source, message, delegation, feed_position })
        }),
        (name(), issue_list(true), option::of(any::<u32>()), option::of(any::<u64>())).prop_map(|(source, list, negative_lifetime, feed_position)| {
            // The notFound qualifiers travel inside <notFound>: without one
            // they have nowhere to go.
            let has = list.get(ErrorKind::NotFound).is_some();
            Response::Errors(Errors {
                source,
                list,
                negative_lifetime: negative_lifetime.filter(|_| has),
                feed_position: feed_position.filter(|_| has),
            })
        }),
        (vec(uri(), 0..3), vec(warnings(), 0..2), path())
            .prop_map(|(services, warnings, path)| Response::Services(ListServicesResponse { services, warnings, path })),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        3 => find_service().prop_map(Request::FindService),
        1 => (option::of(uri()), option::of(path())).prop_map(|(service, path)| Request::ListServices(ListServices { service, path })),
    ]
}

fn root_table() -> impl Strategy<Value = RootTable> {
    (name(), any::<u64>(), ts(), any::<u32>(), vec(delegation(), 0..6), option::of(signature())).prop_map(
        |(source, serial, valid_until, negative_lifetime, ds, signature)| {
            let mut seen = std::collections::HashSet::new();
            let delegations = ds
                .into_iter()
                .filter(|d| {
                    seen.insert(match &d.cover {
                        Cover::Prefix(p) => p.to_string(),
                        Cover::Domain { domain, .. } => domain.to_string(),
                    })
                })
                .collect();
            RootTable { source, serial, valid_until, negative_lifetime, delegations, signature }
        },
    )
}

fn frame() -> impl Strategy<Value = FeedFrame> {
    prop_oneof![
        (any::<u64>(), prop_oneof![csi().prop_map(Subject::Csi), cover().prop_map(Subject::Cover)], prop::sample::select(ChangeOp::ALL.to_vec()), ts())
            .prop_map(|(seq, subject, op, time)| FeedFrame::Change(Change { seq, subject, op, time })),
        (any::<u64>(), ts()).prop_map(|(seq, time)| FeedFrame::Heartbeat { seq, time }),
        (any::<u64>(), text()).prop_map(|(seq, reason)| FeedFrame::Resync { seq, reason }),
    ]
}

fn entry() -> impl Strategy<Value = EntryRecord> {
    (
        name(),
        option::of((text(), prop::sample::select(vec!["en", "de"]))),
        vec(uri(), 1..3),
        any::<u32>(),
        vec(tag(), 0..3),
        assurance(),
        any::<bool>(),
        option::of(vec(name(), 1..3)),
    )
        .prop_map(|(provider, dn, uris, priority, tags, assurance, bound_to_tnsp, vis)| EntryRecord {
            provider,
            display_name: dn.map(|(text, l)| DisplayName { text, lang: l.to_owned() }),
            uris,
            priority,
            tags,
            assurance,
            bound_to_tnsp,
            visibility: vis.map_or(Visibility::All, Visibility::Only),
        })
}

fn provision() -> impl Strategy<Value = Provision> {
    let range = || (e164(), 1u32..=5000).prop_filter("range fits", |(f, c)| sp::range_end(f, *c).is_ok());
    prop_oneof![
        (csi(), entry()).prop_map(|(csi, entry)| Provision::PutEntry { csi, entry }),
        (csi(), name()).prop_map(|(csi, provider)| Provision::RemoveEntry { csi, provider }),
        (csi(), option::of(name())).prop_map(|(csi, tnsp)| Provision::Assign { csi, tnsp }),
        csi().prop_map(|csi| Provision::Release { csi }),
        csi().prop_map(|csi| Provision::OptOut { csi }),
        csi().prop_map(|csi| Provision::OptIn { csi }),
        (csi(), name()).prop_map(|(csi, to)| Provision::Port { csi, to }),
        (range(), option::of(name())).prop_map(|((first, count), tnsp)| Provision::AssignRange { first, count, tnsp }),
        range().prop_map(|(first, count)| Provision::ReleaseRange { first, count }),
        delegation().prop_map(Provision::Delegate),
        cover().prop_map(Provision::Undelegate),
    ]
}

/// Runs `CASES` cases; checks the round trip and keeps each document for
/// one xmllint run.
fn check<T: std::fmt::Debug + PartialEq>(
    strategy: impl Strategy<Value = T>,
    encode: impl Fn(&T) -> String,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) -> Vec<(String, String)> {
    let docs = Mutex::new(Vec::new());
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |x| {
            let enc = encode(&x);
            let back = decode(enc.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{enc}")))?;
            prop_assert_eq!(&back, &x, "{}", enc);
            docs.lock().unwrap().push((format!("{x:?}"), enc));
            Ok(())
        })
        .unwrap();
    docs.into_inner().unwrap()
}

#[test]
fn requests_round_trip_and_validate() {
    let docs = check(request(), Request::encode, |b| Request::decode(b, &Limits::MESSAGE));
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
}

#[test]
fn responses_round_trip_and_validate() {
    let docs = check(response(), Response::encode, |b| Response::decode(b, &Limits::MESSAGE));
    assert_eq!(common::xmllint_lost(&docs), Vec::<String>::new());
}

#[test]
fn responses_from_mapping_tails_are_the_same_bytes() {
    // An authority encodes each mapping once (MappingTail) and writes its
    // answers from the tails with a per-answer expires: the bytes must be
    // what encoding the whole response writes.
    let strategy = (vec(mapping(), 1..4), path(), option::of("[a-z0-9]{1,8}"), option::of(any::<u64>()));
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let out = std::cell::RefCell::new(String::from("left over from an earlier answer"));
    runner
        .run(&strategy, |(mappings, path, location_used, feed_position)| {
            let tails: Vec<(Expires, MappingTail)> = mappings.iter().map(|m| (m.expires, m.encode_tail())).collect();
            let mut out = out.borrow_mut();
            FindServiceResponse::encode_with_into(&mut out, tails.iter().map(|(e, t)| (*e, t)), &path, location_used.as_deref(), feed_position);
            let whole = Response::Found(FindServiceResponse { mappings, warnings: vec![], path, location_used, feed_position }).encode();
            prop_assert_eq!(&*out, &whole);
            Ok(())
        })
        .unwrap();
}

#[test]
fn sp_documents_round_trip_and_validate() {
    let mut docs = check(root_table(), RootTable::encode, |b| RootTable::decode(b, &Limits::DOCUMENT));
    docs.extend(check(frame(), FeedFrame::encode, FeedFrame::decode));
    docs.extend(check(provision(), Provision::encode, |b| Provision::decode(b, &Limits::MESSAGE)));
    docs.extend(check(
        (any::<u64>(), option::of(any::<u64>()), any::<u64>())
            .prop_map(|(seq, e, affected)| ProvisionResult { seq, epoch: e.map(Epoch), affected }),
        ProvisionResult::encode,
        ProvisionResult::decode,
    ));
    assert_eq!(common::xmllint(&common::sp_rng(), &docs), Vec::<String>::new());
}

#[test]
fn csis_round_trip_through_wire_and_human_forms() {
    let mut runner = TestRunner::new(Config { cases: 512, failure_persistence: None, ..Config::default() });
    runner
        .run(&csi(), |c| {
            prop_assert_eq!(&Csi::from_wire(c.uri()).unwrap(), &c);
            prop_assert_eq!(&Csi::parse(c.uri(), None).unwrap(), &c);
            Ok(())
        })
        .unwrap();
}
