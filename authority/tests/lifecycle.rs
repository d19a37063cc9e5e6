//! The authority core through its public API over a real redb store:
//! provisioning by role, the number lifecycle (the four porting cases,
//! release, reassignment), preferences, sub-delegation, signed answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use signpost_authority::core::ProvisionError;
use signpost_authority::store::{FeedPage, Store};
use signpost_schemas::lost::{AuthorityRef, Cover, Delegation, Endpoint, MappingBody, NoProvidersReason, Tag};
use signpost_schemas::sp::{ChangeOp, Provision, Subject, Visibility};
use signpost_schemas::{Csi, E164Prefix, ErrorKind, FindService, Name, Response, SenderContext};
use signpost_net::Failure;
use signpost_trust::Role;
use support::*;

const N: &str = "tel:+4915112345678";

fn q(c: &str) -> FindService {
    FindService::for_csi(csi(c), false)
}

fn providers(r: &Response) -> Vec<String> {
    match r {
        Response::Found(f) => f
            .mappings
            .iter()
            .map(|m| match &m.body {
                MappingBody::Provider(p) => p.id.to_string(),
                MappingBody::NoProviders { reason, .. } => format!("none:{}", reason.as_str()),
            })
            .collect(),
        other => panic!("expected mappings, got {other:?}"),
    }
}

fn not_found(r: Result<Response, Failure>) {
    assert!(matches!(r, Err(Failure::NotFound { .. })), "{r:?}");
}

#[tokio::test]
async fn assign_entries_and_signed_answers() {
    let w = World::new();
    let a = w.authority().await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let msp = w.peer(Role::Msp, "provider-a.example", &[]);
    not_found(a.answer(&q(N)).await);
    let r = a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    assert_eq!(r.epoch.map(|e| e.0), Some(1));
    // Assigned but no entries: not discoverable.
    not_found(a.answer(&q(N)).await);
    a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.unwrap();
    let ans = a.answer(&q(N)).await.unwrap();
    assert_eq!(providers(&ans), ["provider-a.example"]);
    let Response::Found(f) = &ans else { unreachable!() };
    assert_eq!(f.path.vias().len(), 1);
    // Asked through a resolver: the path lists the resolver, then us.
    let mut via = q(N);
    via.path = Some(signpost_schemas::Path::new(Name::parse("resolver.example").unwrap()));
    let Response::Found(v) = a.answer(&via).await.unwrap() else { panic!() };
    assert_eq!(v.path.vias().iter().map(Name::as_str).collect::<Vec<_>>(), ["resolver.example", "dp.de.example"]);
    assert_eq!(f.location_used.as_deref(), Some("l1"));
    // The mapping verifies with the authority's certificate, for this CSI.
    let v = w.verifier();
    v.verify_mapping(&csi(N), &f.mappings[0], t0()).unwrap();
    assert!(v.verify_mapping(&csi("tel:+4915199999999"), &f.mappings[0], t0()).is_err());
    // Answers do not sign: the same signature comes back each time.
    let again = a.answer(&q(N)).await.unwrap();
    let Response::Found(g) = &again else { unreachable!() };
    assert_eq!(g.mappings[0].signature, f.mappings[0].signature);
    // The feed has the two changes, in order.
    let FeedPage::Changes(ch) = a.store().changes_since(0, 10).await.unwrap() else { panic!() };
    assert_eq!(ch.iter().map(|c| (c.seq, c.op)).collect::<Vec<_>>(), [(1, ChangeOp::Assign), (2, ChangeOp::EntryPut)]);
    assert_eq!(ch[0].subject, Subject::Csi(csi(N)));
}

#[tokio::test]
async fn forbidden_cases() {
    let w = World::new();
    let a = w.authority().await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let other_tnsp = w.peer(Role::Csip, "tnsp-b.de.example", &["+4930"]);
    let msp = w.peer(Role::Msp, "provider-a.example", &[]);
    let resolver = w.peer(Role::Resolver, "resolver.example", &[]);
    let forbidden = |r: Result<_, ProvisionError>| assert!(matches!(r, Err(ProvisionError::Forbidden(_))), "{r:?}");
    // A CSIP outside its scope, an MSP or a resolver cannot assign.
    forbidden(a.provision(&other_tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await);
    forbidden(a.provision(&msp, Provision::Assign { csi: csi(N), tnsp: None }).await);
    forbidden(a.provision(&resolver, Provision::Assign { csi: csi(N), tnsp: None }).await);
    // A CSIP assigns to itself only.
    forbidden(a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: Some(Name::parse("tnsp-b.de.example").unwrap()) }).await);
    // Entries need an assigned number.
    assert!(matches!(
        a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await,
        Err(ProvisionError::Conflict(_))
    ));
    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    // An MSP never touches another MSP's entry, nor claims csip-attested.
    forbidden(a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-b.example", false) }).await);
    let mut e = entry("provider-a.example", false);
    e.assurance = signpost_schemas::Assurance::CsipAttested;
    forbidden(a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: e }).await);
    a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.unwrap();
    let msp_b = w.peer(Role::Msp, "provider-b.example", &[]);
    forbidden(a.provision(&msp_b, Provision::RemoveEntry { csi: csi(N), provider: Name::parse("provider-a.example").unwrap() }).await);
    // Another CSIP cannot release or port a number it does not serve.
    forbidden(a.provision(&other_tnsp, Provision::Release { csi: csi(N) }).await);
    forbidden(a.provision(&other_tnsp, Provision::Port { csi: csi(N), to: Name::parse("tnsp-b.de.example").unwrap() }).await);
    // Outside the authority's scope.
    let fr = w.peer(Role::Csip, "tnsp.fr.example", &["+33"]);
    forbidden(a.provision(&fr, Provision::Assign { csi: csi("tel:+33612345678"), tnsp: None }).await);
    // Only admins delegate.
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+4916").unwrap()),
        lifetime: 600,
        authorities: vec![AuthorityRef { id: Name::parse("dp.carrier.example").unwrap(), endpoints: vec![Endpoint::parse("https://127.0.0.1:1/lost").unwrap()] }],
    };
    forbidden(a.provision(&tnsp, Provision::Delegate(d.clone())).await);
    let admin_fr = w.peer(Role::Admin, "admin.fr.example", &["+33"]);
    forbidden(a.provision(&admin_fr, Provision::Delegate(d)).await);
    // Nothing forbidden left a trace in the feed.
    assert_eq!(a.store().head().await.unwrap(), 2);
}

async fn ported(ott: bool, aligned: bool) -> (Vec<String>, Result<Response, Failure>) {
    let w = World::new();
    let a = w.authority().await;
    let donor = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    a.provision(&donor, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    if ott {
        let m = w.peer(Role::Msp, "ott.example", &[]);
        a.provision(&m, Provision::PutEntry { csi: csi(N), entry: entry("ott.example", false) }).await.unwrap();
    }
    if aligned {
        let m = w.peer(Role::Msp, "rcs.tnsp-a.example", &[]);
        a.provision(&m, Provision::PutEntry { csi: csi(N), entry: entry("rcs.tnsp-a.example", true) }).await.unwrap();
    }
    let before = providers(&a.answer(&q(N)).await.unwrap());
    let r = a.provision(&donor, Provision::Port { csi: csi(N), to: Name::parse("tnsp-b.de.example").unwrap() }).await.unwrap();
    assert_eq!(r.epoch.map(|e| e.0), Some(1), "a port keeps the epoch");
    (before, a.answer(&q(N)).await)
}

#[tokio::test]
async fn porting_case_1_ott_only_keeps_everything() {
    let (before, after) = ported(true, false).await;
    assert_eq!(before, ["ott.example"]);
    assert_eq!(providers(&after.unwrap()), ["ott.example"]);
}

#[tokio::test]
async fn porting_case_2_operator_aligned_only_removes_everything() {
    let (before, after) = ported(false, true).await;
    assert_eq!(before, ["rcs.tnsp-a.example"]);
    not_found(after);
}

#[tokio::test]
async fn porting_case_3_mixed_keeps_ott_removes_donor_bound() {
    let (mut before, after) = ported(true, true).await;
    before.sort();
    assert_eq!(before, ["ott.example", "rcs.tnsp-a.example"]);
    assert_eq!(providers(&after.unwrap()), ["ott.example"]);
}

#[tokio::test]
async fn porting_case_4_recipient_operator_takes_over() {
    let w = World::new();
    let a = w.authority().await;
    let donor = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let recipient = w.peer(Role::Csip, "tnsp-b.de.example", &["+4917"]);
    a.provision(&donor, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    let rcs_a = w.peer(Role::Msp, "rcs.tnsp-a.example", &[]);
    a.provision(&rcs_a, Provision::PutEntry { csi: csi(N), entry: entry("rcs.tnsp-a.example", true) }).await.unwrap();
    a.provision(&donor, Provision::Port { csi: csi(N), to: Name::parse("tnsp-b.de.example").unwrap() }).await.unwrap();
    // The donor no longer controls the number; the recipient does, though
    // the number is outside the recipient's own range.
    assert!(matches!(a.provision(&donor, Provision::Release { csi: csi(N) }).await, Err(ProvisionError::Forbidden(_))));
    let rcs_b = w.peer(Role::Msp, "rcs.tnsp-b.example", &[]);
    a.provision(&rcs_b, Provision::PutEntry { csi: csi(N), entry: entry("rcs.tnsp-b.example", true) }).await.unwrap();
    assert_eq!(providers(&a.answer(&q(N)).await.unwrap()), ["rcs.tnsp-b.example"]);
    // Porting back to the donor removes the recipient's bound entry.
    a.provision(&recipient, Provision::Port { csi: csi(N), to: Name::parse("tnsp-a.de.example").unwrap() }).await.unwrap();
    not_found(a.answer(&q(N)).await);
}

#[tokio::test]
async fn release_and_reassignment_start_clean() {
    let w = World::new();
    let a = w.authority().await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let msp = w.peer(Role::Msp, "provider-a.example", &[]);
    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    a.provision(&msp, Provision::PutEntry { csi: csi(N), entry: entry("provider-a.example", false) }).await.unwrap();
    let Response::Found(old) = a.answer(&q(N)).await.unwrap() else { panic!() };
    let r = a.provision(&tnsp, Provision::Release { csi: csi(N) }).await.unwrap();
    assert_eq!(r.epoch.map(|e| e.0), Some(2));
    not_found(a.answer(&q(N)).await);
    assert!(matches!(a.provision(&tnsp, Provision::Release { csi: csi(N) }).await, Err(ProvisionError::Conflict(_))));
    // A new holder: epoch 3, no entries from before.
    let r = a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    assert_eq!(r.epoch.map(|e| e.0), Some(3));
    not_found(a.answer(&q(N)).await);
    let msp_b = w.peer(Role::Msp, "provider-b.example", &[]);
    a.provision(&msp_b, Provision::PutEntry { csi: csi(N), entry: entry("provider-b.example", false) }).await.unwrap();
    let Response::Found(new) = a.answer(&q(N)).await.unwrap() else { panic!() };
    assert_eq!(providers(&Response::Found(new.clone())), ["provider-b.example"]);
    match (&old.mappings[0].body, &new.mappings[0].body) {
        (MappingBody::Provider(o), MappingBody::Provider(n)) => assert!(o.epoch < n.epoch),
        _ => panic!(),
    }
    // Assigning it again to the holder is a repeat: success, same epoch,
    // nothing committed; assigning it to someone else is a conflict.
    let again = a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    assert_eq!((again.epoch.map(|e| e.0), again.affected), (Some(3), 0));
    let admin = w.peer(Role::Admin, "admin.dp.de.example", &["+49"]);
    assert!(matches!(a.provision(&admin, Provision::Assign { csi: csi(N), tnsp: Some(Name::parse("tnsp-b.de.example").unwrap()) }).await, Err(ProvisionError::Conflict(_))));
}

#[tokio::test]
async fn preferences_visibility_and_the_signed_no_providers_answer() {
    let w = World::new();
    let a = w.authority().await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    let mut work = entry("work.example", false);
    work.tags = vec![Tag::parse("business").unwrap()];
    work.priority = 5;
    work.visibility = Visibility::Only(vec![Name::parse("partner.example").unwrap()]);
    let mut home = entry("home.example", false);
    home.tags = vec![Tag::parse("personal").unwrap()];
    home.priority = 20;
    a.provision(&w.peer(Role::Msp, "work.example", &[]), Provision::PutEntry { csi: csi(N), entry: work }).await.unwrap();
    a.provision(&w.peer(Role::Msp, "home.example", &[]), Provision::PutEntry { csi: csi(N), entry: home }).await.unwrap();
    let ask = |sender: Option<&str>, tags: &[&str]| {
        let mut f = q(N);
        f.context = Some(SenderContext {
            sender_provider: sender.map(|s| Name::parse(s).unwrap()),
            tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        });
        f
    };
    // The partner sees both, in priority order; others see only "home".
    assert_eq!(providers(&a.answer(&ask(Some("partner.example"), &[])).await.unwrap()), ["work.example", "home.example"]);
    assert_eq!(providers(&a.answer(&ask(Some("stranger.example"), &[])).await.unwrap()), ["home.example"]);
    assert_eq!(providers(&a.answer(&ask(Some("partner.example"), &["business"])).await.unwrap()), ["work.example"]);
    // Preferences hide everything from this sender: one signed mapping, no uri.
    let r = a.answer(&ask(Some("stranger.example"), &["business"])).await.unwrap();
    assert_eq!(providers(&r), [format!("none:{}", NoProvidersReason::RecipientPreferences.as_str())]);
    let Response::Found(f) = &r else { panic!() };
    assert!(f.mappings[0].uris.is_empty());
    w.verifier().verify_mapping(&csi(N), &f.mappings[0], t0()).unwrap();
}

#[tokio::test]
async fn sub_delegation_and_out_of_scope() {
    let w = World::new();
    let a = w.authority().await;
    let admin = w.peer(Role::Admin, "admin.de.example", &["+49"]);
    let d = Delegation {
        cover: Cover::Prefix(E164Prefix::parse("+4916").unwrap()),
        lifetime: 600,
        authorities: vec![AuthorityRef { id: Name::parse("dp.carrier.example").unwrap(), endpoints: vec![Endpoint::parse("https://127.0.0.1:7410/lost").unwrap()] }],
    };
    a.provision(&admin, Provision::Delegate(d)).await.unwrap();
    match a.answer(&q("tel:+4916012345678")).await.unwrap() {
        Response::Redirect(r) => {
            assert_eq!(r.target.as_str(), "dp.carrier.example");
            assert_eq!(r.delegation.cover.to_string(), "+4916");
        }
        other => panic!("{other:?}"),
    }
    // Numbers outside the block stay here.
    not_found(a.answer(&q(N)).await);
    // A new authority instance over the same store still knows the delegation.
    drop(a);
    let a = w.authority().await;
    assert!(matches!(a.answer(&q("tel:+4916012345678")).await, Ok(Response::Redirect(_))));
    a.provision(&admin, Provision::Undelegate(Cover::Prefix(E164Prefix::parse("+4916").unwrap()))).await.unwrap();
    not_found(a.answer(&q("tel:+4916012345678")).await);
    // Out of scope: notFound saying so.
    match a.answer(&q("tel:+33612345678")).await {
        Err(Failure::NotFound { message, .. }) => assert!(message.contains("not authoritative")),
        other => panic!("{other:?}"),
    }
    assert_eq!(Failure::Loop(String::new()).kind(), ErrorKind::Loop);
}

#[tokio::test]
async fn ranges_emails_and_renewal() {
    let w = World::new();
    let a = w.authority().await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4930"]);
    let first = match csi("tel:+4930123000") {
        Csi::E164(n) => n,
        Csi::Email(_) | Csi::Mui(_) => unreachable!(),
    };
    let r = a.provision(&tnsp, Provision::AssignRange { first: first.clone(), count: 100, tnsp: None }).await.unwrap();
    assert_eq!(r.affected, 100);
    assert_eq!(a.store().stats().await.unwrap().records, 100);
    // All or nothing: a range overlapping an assigned number changes nothing.
    let first2 = match csi("tel:+4930123050") {
        Csi::E164(n) => n,
        Csi::Email(_) | Csi::Mui(_) => unreachable!(),
    };
    let head = a.store().head().await.unwrap();
    assert!(a.provision(&tnsp, Provision::AssignRange { first: first2, count: 100, tnsp: None }).await.is_err());
    assert_eq!(a.store().head().await.unwrap(), head);
    assert_eq!(a.store().stats().await.unwrap().records, 100);
    a.provision(&tnsp, Provision::ReleaseRange { first, count: 100 }).await.unwrap();
    // Email: the provider is the CSIP for its domain.
    let mail = w.peer(Role::Csip, "mail.example", &["mail.example"]);
    let alice = "mailto:alice@mail.example";
    a.provision(&mail, Provision::Assign { csi: csi(alice), tnsp: None }).await.unwrap();
    a.provision(&w.peer(Role::Msp, "chat.example", &[]), Provision::PutEntry { csi: csi(alice), entry: entry("chat.example", false) }).await.unwrap();
    let Response::Found(f) = a.answer(&q(alice)).await.unwrap() else { panic!() };
    let sig0 = f.mappings[0].signature.clone().unwrap();
    // Six and a half days later the signature is within a day of its end:
    // reading renews it, without a feed event and with the same lastUpdated.
    let head = a.store().head().await.unwrap();
    w.clock.advance_millis((6 * DAY + DAY / 2) * 1000);
    let Response::Found(g) = a.answer(&q(alice)).await.unwrap() else { panic!() };
    let sig1 = g.mappings[0].signature.clone().unwrap();
    assert!(sig1.valid_until > sig0.valid_until);
    assert_eq!(g.mappings[0].last_updated, f.mappings[0].last_updated);
    assert_eq!(a.store().head().await.unwrap(), head);
    let mut v = signpost_trust::sign::Verifier::new(w.anchor.clone());
    v.add_pem(w.authority_cert.as_bytes(), w.clock.now_ts()).unwrap();
    v.verify_mapping(&csi(alice), &g.mappings[0], w.clock.now_ts()).unwrap();
}

trait NowTs {
    fn now_ts(&self) -> signpost_schemas::Timestamp;
}
impl NowTs for signpost_schemas::ManualClock {
    fn now_ts(&self) -> signpost_schemas::Timestamp {
        signpost_schemas::Clock::now(self)
    }
}

/// A file of `n` numbers under +4930, each with an OTT entry and every
/// second one an operator entry too.
fn import_text(n: u64) -> String {
    let mut t = format!("{}\n", signpost_authority::import::HEADER);
    for i in 0..n {
        t.push_str(&format!("+4930{i:08},assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/{i},10,personal,msp-verified,false,User {i}\n"));
        if i % 2 == 0 {
            t.push_str(&format!("+4930{i:08},assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/{i},20,,csip-attested,true,\n"));
        }
    }
    t
}

fn signatures(r: &Response) -> Vec<Vec<u8>> {
    match r {
        Response::Found(f) => f.mappings.iter().map(|m| m.signature.as_ref().unwrap().value.clone()).collect(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn imported_mappings_are_signed_on_demand_within_the_cache_bound() {
    const BOUND: u64 = 64 * 1024;
    const N: u64 = 2000;
    let w = World::new();
    let a = w.authority().await.with_signature_cache(BOUND);
    let items = signpost_authority::import::parse(&import_text(N), None, 10).unwrap();
    a.import(items, &|_| {}).await.unwrap();
    // Stored unsigned.
    let rec = a.store().get(&csi("tel:+493000000000")).await.unwrap().unwrap();
    assert!(rec.entries.iter().all(|e| e.signed.signature.is_none()) && rec.none.as_ref().unwrap().signature.is_none());
    let head = a.store().head().await.unwrap();
    let v = w.verifier();
    let hot = "tel:+493000000000";
    let first = a.answer(&q(hot)).await.unwrap();
    assert_eq!(providers(&first), ["ott.example", "rcs.example"]);
    let hot_sigs = signatures(&first);
    // Every distinct number answered once, the hot one between them: each
    // answer verifies, the cache stays within its bound, the hot number's
    // signatures are copied from it (ECDSA signatures are randomized, so
    // equal bytes mean no new signature).
    for i in 1..N {
        let c = format!("tel:+4930{i:08}");
        let r = a.answer(&q(&c)).await.unwrap();
        let Response::Found(f) = &r else { panic!("{r:?}") };
        assert_eq!(f.mappings.len(), if i % 2 == 0 { 2 } else { 1 });
        for m in &f.mappings {
            v.verify_mapping(&csi(&c), m, t0()).unwrap();
        }
        let stats = a.signature_cache().stats();
        assert!(stats.bytes as u64 <= BOUND, "{stats:?}");
        assert_eq!(signatures(&a.answer(&q(hot)).await.unwrap()), hot_sigs);
    }
    let stats = a.signature_cache().stats();
    assert!(stats.entries > 10 && (stats.entries as u64) < N, "evicted down to the bound: {stats:?}");
    // Answers write nothing: no feed event, the record still unsigned.
    assert_eq!(a.store().head().await.unwrap(), head);
    assert!(a.store().get(&csi(hot)).await.unwrap().unwrap().entries[0].signed.signature.is_none());
    // A cold number evicted from the cache is signed again, and verifies.
    let cold = "tel:+493000000001";
    let again = a.answer(&q(cold)).await.unwrap();
    let Response::Found(f) = &again else { panic!() };
    v.verify_mapping(&csi(cold), &f.mappings[0], t0()).unwrap();
    // The opt-out mapping of an imported number is signed when first needed.
    let csip = w.peer(Role::Csip, "tnsp-a.de.example", &["+4930"]);
    a.provision(&csip, Provision::OptOut { csi: csi(cold) }).await.unwrap();
    let Response::Found(f) = a.answer(&q(cold)).await.unwrap() else { panic!() };
    assert!(matches!(f.mappings[0].body, MappingBody::NoProviders { reason: NoProvidersReason::OptedOut, .. }));
    v.verify_mapping(&csi(cold), &f.mappings[0], t0()).unwrap();
    // A provisioned change is signed when committed: a new entry for the
    // hot number answers its stored signature, and the untouched imported
    // entry still its cached one.
    let msp = w.peer(Role::Msp, "chat.example", &[]);
    a.provision(&msp, Provision::PutEntry { csi: csi(hot), entry: entry("chat.example", false) }).await.unwrap();
    let stored = a.store().get(&csi(hot)).await.unwrap().unwrap();
    let chat = stored.entries.iter().find(|e| e.record.provider.as_str() == "chat.example").unwrap();
    let r = a.answer(&q(hot)).await.unwrap();
    let Response::Found(f) = &r else { panic!() };
    let got: Vec<(&str, &[u8])> = f.mappings.iter().map(|m| (m.source_id.as_str(), m.signature.as_ref().unwrap().value.as_slice())).collect();
    assert!(got.contains(&("chat.example.e1", chat.signed.signature.as_ref().unwrap().value.as_slice())), "{got:?}");
    assert!(got.contains(&("ott.example.e1", hot_sigs[0].as_slice())), "{got:?}");
    for m in &f.mappings {
        v.verify_mapping(&csi(hot), m, t0()).unwrap();
    }
}

#[tokio::test]
async fn without_a_signature_cache_every_answer_signs_and_verifies() {
    let w = World::new();
    let a = w.authority().await.with_signature_cache(0);
    a.import(signpost_authority::import::parse(&import_text(3), None, 10).unwrap(), &|_| {}).await.unwrap();
    let c = "tel:+493000000002";
    let (x, y) = (a.answer(&q(c)).await.unwrap(), a.answer(&q(c)).await.unwrap());
    assert_ne!(signatures(&x), signatures(&y));
    let v = w.verifier();
    for r in [&x, &y] {
        let Response::Found(f) = r else { panic!() };
        for m in &f.mappings {
            v.verify_mapping(&csi(c), m, t0()).unwrap();
        }
    }
    assert_eq!(a.signature_cache().stats().entries, 0);
}

/// An online import shares the store with provisioning: a number
/// provisioned between the check pass and its batch's commit makes the
/// batch fail whole (nothing overwritten, nothing of it written); the same
/// batch goes in when nothing interferes.
#[tokio::test]
async fn an_import_batch_never_overwrites_a_number_provisioned_meanwhile() {
    use signpost_authority::import::{ImportItem, ImportRecord};
    use signpost_authority::store::Checkpoint;
    let w = World::new();
    let a = w.authority().await;
    let tnsp = w.peer(Role::Csip, "tnsp-a.de.example", &["+4915"]);
    let rec = |c: &str, line: usize| ImportRecord {
        item: ImportItem { csi: csi(c), tnsp: Some(Name::parse("tnsp-a.de.example").unwrap()), entries: vec![entry("provider-a.example", false)], line },
        epoch: signpost_schemas::lost::Epoch(1),
        opted_out: false,
        offset: 0,
    };
    let file = vec![rec("tel:+4915100000001", 2), rec(N, 3)];
    assert!(a.import_problems(&file, 0, 10).await.unwrap().is_empty());
    let batch = a.build_import(file.clone(), 2).unwrap();
    // Provisioned after the check, before the commit.
    a.provision(&tnsp, Provision::Assign { csi: csi(N), tnsp: None }).await.unwrap();
    let head = a.store().head().await.unwrap();
    let e = a.import_batch(batch, Checkpoint::Clear, true).await.unwrap_err();
    assert!(matches!(e, ProvisionError::Conflict(_)), "{e}");
    assert_eq!(a.store().head().await.unwrap(), head);
    assert!(a.store().get(&csi("tel:+4915100000001")).await.unwrap().is_none());
    // The provisioned record is as provisioned: no entries.
    not_found(a.answer(&q(N)).await);
    // A rerun's check reports the row.
    let p = a.import_problems(&file, 0, 10).await.unwrap();
    assert_eq!(p, vec![format!("line 3: {N} is already in the store")]);
    // Without interference the batch goes in.
    let batch = a.build_import(vec![rec("tel:+4915100000001", 2)], 2).unwrap();
    assert_eq!(a.import_batch(batch, Checkpoint::Clear, true).await.unwrap(), head + 1);
    assert_eq!(providers(&a.answer(&q("tel:+4915100000001")).await.unwrap()), ["provider-a.example"]);
}
