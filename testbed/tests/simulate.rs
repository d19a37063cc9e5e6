//! The simulated mode through its command and its library: deterministic
//! for a seed, the product's verdicts on the sample scenarios, laziness at
//! sizes no machine runs live, and clear refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use signpost_testbed::scenario::Scenario;
use signpost_testbed::sim::space::Space;
use signpost_testbed::sim::{followed, simulate};

fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_signpost-testbed"))
}

fn run_sim(scenario: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = bin().arg("simulate").arg(scenario).arg("--out").arg(out).args(extra).output().unwrap();
    assert!(o.status.success(), "simulate failed: {}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out.join("report.json")).unwrap();
    for f in ["report.md", "report.html", "measured.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_same_seed_gives_the_same_report_and_another_seed_another() {
    let d = tempfile::tempdir().unwrap();
    let small = scenarios().join("small.toml");
    let a = run_sim(&small, &d.path().join("a"), &[]);
    run_sim(&small, &d.path().join("b"), &[]);
    run_sim(&small, &d.path().join("c"), &["--seed", "99"]);
    let bytes = |x: &str| std::fs::read(d.path().join(x).join("report.json")).unwrap();
    assert_eq!(bytes("a"), bytes("b"), "one seed, two different report.json");
    assert_ne!(bytes("a"), bytes("c"), "another seed, the same report.json");
    // The contract's keys.
    for k in ["resolvers", "authorities", "identifiers", "simulated_seconds", "seed", "policies"] {
        assert!(a.get(k).is_some(), "report.json lacks {k}");
    }
    assert_eq!(a["seed"], 5);
    assert_eq!(a["resolvers"], 2);
    assert_eq!(a["identifiers"], 880);
    for p in ["push", "ttl-only"] {
        assert!(a["policies"][p]["stale_rate"].is_number(), "{p}: no stale_rate");
        assert!(a["policies"][p].get("staleness_p99_ms").is_some(), "{p}: no staleness_p99_ms");
    }
}

#[test]
fn simulated_verdicts_on_the_small_scenario_match_the_products_claims() {
    let d = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenarios().join("small.toml")).unwrap().replace("policies = [\"push\", \"ttl-only\"]", "policies = [\"push\", \"ttl-only\", \"flush-on-notify\", \"push-lossy\"]");
    let f = d.path().join("four.toml");
    std::fs::write(&f, text).unwrap();
    let r = run_sim(&f, &d.path().join("out"), &[]);
    let p = &r["policies"];
    let stale = |x: &str| p[x]["stale_rate"].as_f64().unwrap();
    for x in ["push", "ttl-only", "flush-on-notify", "push-lossy"] {
        assert_eq!(p[x]["wrong_rate"].as_f64().unwrap(), 0.0, "{x}: wrong answers: {}", p[x]["figures"]["wrong_samples"]);
        assert!(p[x]["figures"]["simulated_lookups"].as_u64().unwrap() > 3000, "{x}: too few lookups");
        assert_eq!(p[x]["figures"]["unanswered"].as_u64().unwrap(), 0, "{x}: lookups left without an answer");
    }
    // TTL only is stale, within the mapping lifetime (6 s); push is not,
    // beyond answers in flight while a change is delivered.
    assert!(stale("ttl-only") > 0.001, "ttl-only: {}", stale("ttl-only"));
    assert!(p["ttl-only"]["staleness_max_ms"].as_f64().unwrap() <= 6_000.0);
    assert!(stale("push") < stale("ttl-only") / 20.0, "push {} vs ttl-only {}", stale("push"), stale("ttl-only"));
    assert!(stale("push-lossy") < stale("ttl-only") / 20.0);
    // flush-on-notify reaches only the number authority's own resolvers:
    // the email domain's changes stay stale until their TTL.
    assert!(stale("flush-on-notify") > stale("push") && stale("flush-on-notify") < stale("ttl-only"), "flush-on-notify {}", stale("flush-on-notify"));
    // Invalidation under push is the feed's delivery, not the lifetime.
    assert!(p["push"]["invalidation_p99_ms"].as_f64().unwrap() < 600.0);
    assert!(p["ttl-only"]["invalidation_p99_ms"].as_f64().unwrap() > 1_000.0);
    // Every change was numbered by the authority and fanned out.
    let frames: u64 = p["push"]["figures"]["feed"].as_array().unwrap().iter().map(|a| a["frames_delivered"].as_u64().unwrap()).sum();
    assert!(frames >= 100, "push delivered {frames} frames");
    assert_eq!(p["ttl-only"]["figures"]["feed"].as_array().unwrap().iter().map(|a| a["frames_delivered"].as_u64().unwrap()).sum::<u64>(), 0);
    assert_eq!(p["push"]["figures"]["signatures_checked"], p["push"]["figures"]["signatures_verified"], "small runs verify every signature");
}

fn big(numbers: u64, per_band: u64) -> Scenario {
    Scenario::parse(&format!(
        r#"
name = "big"
seed = 9
duration_s = 172800
mapping_ttl_s = 3600
negative_ttl_s = 600
policies = ["push", "ttl-only"]
resolvers = 50

[[country]]
region = "IN"
prefix = "+91"
block = ""
national_digits = 10
numbers = {numbers}

[population]
ott = ["ott-a.example", "ott-b.example"]
operator_aligned_share = 0.4
max_ott_per_user = 2
undiscoverable_share = 0.1

[load]
rate = 100
zipf = 1.0
clients = 1

[simulate]
lookup_rate = 2000.0
traced_per_band = {per_band}
max_lookups_per_identifier = 200.0
warm_lookups_per_ttl = 4.0
verify_every = 10

[simulate.rates]
port_per_year = 5.0
release_per_year = 5.0
reassign_after_days = 1.0
preference_per_year = 2.0
claim_per_year = 5.0
"#
    ))
    .unwrap()
}

#[test]
fn a_billion_identifiers_cost_only_the_followed_ones() {
    let s = big(1_000_000_000, 40);
    let space = Space::new(&s, s.seed).unwrap();
    assert_eq!(space.total, 1_100_000_000);
    let f = followed(&space, 40).unwrap();
    // Ten bands (ranks 1–9 … 10⁹–1.1·10⁹), the first followed whole.
    assert!(f.len() <= 9 + 40 * 9 && f.len() > 9 * 40, "{} followed", f.len());
    let stands: f64 = f.iter().map(|x| x.stands_for).sum();
    assert!((stands - space.total as f64).abs() / (space.total as f64) < 1e-9, "the followed stand for {stands} of {}", space.total);
    let (r, _) = simulate(&s, s.seed).unwrap();
    assert_eq!(r.identifiers, 1_100_000_000);
    for (p, x) in &r.policies {
        let fig = &x.figures;
        // Only followed identifiers were ever put in a store.
        assert!(fig.materialized > 0 && fig.materialized <= f.len() as u64, "{p}: {} materialized of {} followed", fig.materialized, f.len());
        // The authority answered what the pure function says (no wrong
        // answer), through every kind of change.
        assert_eq!(fig.wrong, 0.0, "{p}: {:?}", fig.wrong_samples);
        for k in ["port", "release", "preference"] {
            assert!(fig.events.get(k).copied().unwrap_or(0.0) > 0.0, "{p}: no {k} events: {:?}", fig.events);
        }
        // Weighted, the lookups stand for the internet rate.
        let want = 2000.0 * 172_800.0;
        assert!((fig.lookups - want).abs() / want < 0.5, "{p}: lookups stand for {} of {want}", fig.lookups);
    }
    assert!(r.policies["push"].stale_rate < r.policies["ttl-only"].stale_rate);
}

#[test]
fn the_namespace_is_a_pure_function_of_seed_and_index() {
    let s = big(1_000_000_000, 10);
    let a = Space::new(&s, 1).unwrap();
    let b = Space::new(&s, 1).unwrap();
    let c = Space::new(&s, 2).unwrap();
    let mut differs = 0;
    for g in [0u64, 1, 7, 123_456_789, 999_999_999, 1_050_000_000] {
        assert_eq!(a.csi(g).unwrap(), b.csi(g).unwrap());
        assert_eq!(a.initial(g).unwrap(), b.initial(g).unwrap());
        assert_eq!(a.at_rank(g), b.at_rank(g));
        differs += usize::from(a.at_rank(g) != c.at_rank(g) || a.initial(g).unwrap() != c.initial(g).unwrap());
        let (auth, j) = a.locate(g);
        assert_eq!((auth, j), (0, g));
        assert_eq!(a.csi(g).unwrap().uri(), format!("tel:+91{g:010}"));
        // Spares (past the assigned billion) start unassigned.
        assert_eq!(a.initial(g).unwrap().0.is_none(), g >= 1_000_000_000);
    }
    assert!(differs > 0, "another seed gave the same namespace");
}

#[test]
fn the_internet_scenario_has_the_size_it_claims_and_is_refused_live() {
    let path = scenarios().join("internet.toml");
    let s = Scenario::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let space = Space::new(&s, s.seed).unwrap();
    assert!(space.auths.len() >= 200, "{} authorities", space.auths.len());
    assert!(s.resolvers >= 10_000);
    assert!(space.total >= 10_000_000_000, "{} identifiers", space.total);
    assert!(s.simulate.duration_s.unwrap_or(s.duration_s) >= 365 * 86_400);
    for p in ["push", "ttl-only", "flush-on-notify", "push-lossy"] {
        assert!(s.policies.iter().any(|x| x == p), "internet.toml lacks {p}");
    }
    let o = bin().arg("run").arg(&path).arg("--out").arg(tempfile::tempdir().unwrap().path()).output().unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("signpost-testbed simulate"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_scenarios_are_refused_with_the_usage_exit_code() {
    let d = tempfile::tempdir().unwrap();
    let o = bin().arg("simulate").arg(d.path().join("absent.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("absent.toml"));
    let f = d.path().join("bad.toml");
    let text = std::fs::read_to_string(scenarios().join("small.toml")).unwrap();
    std::fs::write(&f, text.replace("numbers = 600", "numbers = 600000000")).unwrap();
    let o = bin().arg("simulate").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("do not fit"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&f, text.replace("[simulate.network]", "[simulate.network]\nlatency = 3")).unwrap();
    let o = bin().arg("simulate").arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("latency"));
}

#[test]
fn changers_are_sampled_densely_and_still_stand_for_the_whole_namespace() {
    let mut s = big(1_000_000_000, 30);
    s.simulate.changers_per_band = 30;
    let space = Space::new(&s, s.seed).unwrap();
    let duration = s.simulate.duration_s.unwrap_or(s.duration_s);
    let f = signpost_testbed::sim::followed_stratified(&space, &s.simulate.rates, duration, 30, 30).unwrap();
    let stands: f64 = f.iter().map(|x| x.stands_for).sum();
    assert!((stands - space.total as f64).abs() / (space.total as f64) < 1e-9, "{stands}");
    // About half of the followed tail changes in the run (at these rates
    // about 6 % of all identifiers do).
    let tail: Vec<_> = f.iter().filter(|x| x.rank >= 99).collect();
    let busy = tail.iter().filter(|x| signpost_testbed::sim::changes_within(&space, &s.simulate.rates, x.g, duration)).count();
    assert!(busy * 3 > tail.len() && busy * 3 < tail.len() * 2, "{busy} of {} followed change", tail.len());
    let (r, _) = simulate(&s, s.seed).unwrap();
    for (p, x) in &r.policies {
        assert_eq!(x.figures.wrong, 0.0, "{p}");
        assert!(x.figures.events.values().sum::<f64>() > 0.0);
    }
}
