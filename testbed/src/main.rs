//! `signpost-testbed`: run the demo, or a scenario file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signpost_net::exit;
use signpost_testbed::report::{Report, quantile};
use signpost_testbed::scenario::{DEMO, Scenario};

#[derive(Parser)]
#[command(name = "signpost-testbed", version, after_help = exit::HELP, about = "Signpost testbed: whole topologies on loopback, porting/release/outage scenarios, a ground-truth oracle, and reports")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The built-in demo: two countries and an email domain, ports,
    /// releases, reassignments, claims and an outage under load, with push
    /// invalidation and with TTL only, the APs asking directly and through
    /// Oblivious HTTP relays (about two minutes).
    Demo {
        /// Where the reports go.
        #[arg(long, default_value = "signpost-demo")]
        out: PathBuf,
    },
    /// Run a scenario in virtual time: the product's resolver state
    /// machine and authority logic at sizes no machine runs live, one
    /// process, deterministic for a seed (see docs/simulation.md).
    Simulate {
        /// The scenario (strict TOML; the same format `run` reads).
        scenario: PathBuf,
        /// Where the reports go.
        #[arg(long, default_value = "signpost-sim")]
        out: PathBuf,
        /// The seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run a scenario live and simulated and compare their verdicts
    /// (wrong answers, stale answers, invalidation latency) against
    /// stated tolerances; exits 65 when one is outside its tolerance.
    Validate {
        /// A scenario small enough to run live (e.g. testbed/scenarios/small.toml).
        scenario: PathBuf,
        /// Where both runs' reports go (live-SEED/ and simulated-SEED/).
        #[arg(long, default_value = "signpost-validate")]
        out: PathBuf,
        /// Seeds to run (the scenario's seed and the ones after it).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
    },
    /// Run a scenario file (see testbed/scenarios/).
    Run {
        /// The scenario (strict TOML).
        scenario: PathBuf,
        /// Where the reports go.
        #[arg(long, default_value = "signpost-report")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli: Cli = match signpost_net::docs::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (text, out) = match cli.cmd {
        Cmd::Simulate { scenario, out, seed } => return simulate(&scenario, &out, seed),
        Cmd::Validate { scenario, out, seeds } => return validate(&scenario, &out, seeds.max(1)),
        Cmd::Demo { out } => (DEMO.to_owned(), out),
        Cmd::Run { scenario, out } => match std::fs::read_to_string(&scenario) {
            Ok(t) => (t, out),
            Err(e) => {
                eprintln!("signpost-testbed: {}: {e}", scenario.display());
                return ExitCode::from(exit::USAGE);
            }
        },
    };
    let s = match Scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("signpost-testbed: scenario: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Err(e) = signpost_testbed::run::live_scale(&s) {
        eprintln!("signpost-testbed: scenario: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signpost-testbed: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    signpost_schemas::csi::warm_up();
    let runs = (s.policies.len() * s.modes.len()) as u64;
    let bar = indicatif::ProgressBar::new(s.duration_s * runs);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} s")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let b2 = bar.clone();
    let dur = s.duration_s;
    let names: Vec<String> = s.modes.iter().flat_map(|m| s.policies.iter().map(move |p| if m == "direct" { p.clone() } else { format!("{p} via relay") })).collect();
    let result = rt.block_on(signpost_testbed::run_all(&s, &move |k, sec| {
        b2.set_message(format!("running · {}", names.get(k).map_or("", String::as_str)));
        b2.set_position((k as u64 * dur + sec).min(dur * runs));
    }));
    bar.finish_and_clear();
    match result {
        Ok(r) => match r.write(&out) {
            Ok(()) => {
                print_summary(&r, &out);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("signpost-testbed: {e}");
                ExitCode::from(exit::INTERNAL)
            }
        },
        Err(e) => {
            eprintln!("signpost-testbed: {e}");
            ExitCode::from(exit::INTERNAL)
        }
    }
}

fn load(path: &Path) -> Result<Scenario, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("signpost-testbed: {}: {e}", path.display());
        ExitCode::from(exit::USAGE)
    })?;
    Scenario::parse(&text).map_err(|e| {
        eprintln!("signpost-testbed: {}: {e}", path.display());
        ExitCode::from(exit::USAGE)
    })
}

fn validate(path: &Path, out: &Path, seeds: u64) -> ExitCode {
    let mut s = match load(path) {
        Ok(s) => s,
        Err(c) => return c,
    };
    s.policies.retain(|p| signpost_testbed::scenario::LIVE_POLICIES.contains(&p.as_str()));
    if s.policies.is_empty() {
        eprintln!("signpost-testbed: {}: no policy the live mode runs (push, ttl-only)", path.display());
        return ExitCode::from(exit::USAGE);
    }
    signpost_schemas::csi::warm_up();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signpost-testbed: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let (mut lives, mut sims) = (Vec::new(), Vec::new());
    let first = s.seed;
    for seed in first..first + seeds {
        s.seed = seed;
        eprintln!("signpost-testbed: {} seed {seed}: live…", s.name);
        let live = match rt.block_on(signpost_testbed::run_all(&s, &|_, _| {})) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("signpost-testbed: live run: {e}");
                return ExitCode::from(exit::USAGE);
            }
        };
        eprintln!("signpost-testbed: {} seed {seed}: simulated…", s.name);
        let (sim, m) = match signpost_testbed::sim::simulate(&s, seed) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("signpost-testbed: simulation: {e}");
                return ExitCode::from(exit::USAGE);
            }
        };
        if let Err(e) = live.write(&out.join(format!("live-{seed}"))).and_then(|()| sim.write(&m, &out.join(format!("simulated-{seed}")))) {
            eprintln!("signpost-testbed: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
        lives.push(live);
        sims.push(sim);
    }
    let checks = signpost_testbed::sim::validate::compare(&s, &lives, &mut sims);
    let mut ok = true;
    println!("{} seeds ({first}…{}), live and simulated:", seeds, first + seeds - 1);
    println!("{:<9} {:<26} {:>12} {:>12} {:>14}  verdict", "policy", "figure", "live", "simulated", "tolerance");
    for c in &checks {
        ok &= c.pass;
        println!("{:<9} {:<26} {:>12} {:>12} {:>14}  {}", c.policy, c.figure, c.live, c.simulated, c.tolerance, if c.pass { "agree" } else { "DISAGREE" });
    }
    println!("reports: {}/live-SEED/, {}/simulated-SEED/", out.display(), out.display());
    if ok { ExitCode::SUCCESS } else { ExitCode::from(exit::DATA) }
}

fn simulate(path: &Path, out: &Path, seed: Option<u64>) -> ExitCode {
    let s = match load(path) {
        Ok(s) => s,
        Err(c) => return c,
    };
    signpost_schemas::csi::warm_up();
    let seed = seed.unwrap_or(s.seed);
    eprintln!("signpost-testbed: simulating {} ({} policies, seed {seed})", s.name, s.policies.len());
    let (r, m) = match signpost_testbed::sim::simulate(&s, seed) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("signpost-testbed: {}: {e}", path.display());
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Err(e) = r.write(&m, out) {
        eprintln!("signpost-testbed: {e}");
        return ExitCode::from(exit::INTERNAL);
    }
    println!("{}", r.markdown(&m).lines().take_while(|l| !l.starts_with("| policy")).collect::<Vec<_>>().join("\n").trim_end());
    println!("reports: {}/report.html, report.md, report.json, measured.json", out.display());
    ExitCode::SUCCESS
}

fn print_summary(r: &Report, out: &Path) {
    println!("scenario {}:", r.scenario);
    println!("{:<18} {:>8} {:>10} {:>9} {:>8} {:>6} {:>7} {:>10} {:>10} {:>8}", "policy", "lookups", "lookups/s", "correct", "stale", "wrong", "errors", "inval p50", "inval p99", "hit %");
    for p in &r.runs {
        let f = |v: Option<f64>| v.map_or("–".into(), |x| if x >= 1000.0 { format!("{:.2} s", x / 1000.0) } else { format!("{x:.1} ms") });
        println!(
            "{:<18} {:>8} {:>10.0} {:>9} {:>8} {:>6} {:>7} {:>10} {:>10} {:>7.1}%",
            p.label(),
            p.lookups,
            p.lookups_per_s,
            p.correct,
            p.stale,
            p.wrong,
            p.errors.values().sum::<u64>(),
            f(quantile(&p.invalidation_ms, 0.5)),
            f(quantile(&p.invalidation_ms, 0.99)),
            100.0 * p.hit_ratio
        );
    }
    for p in &r.runs {
        if !p.errors.is_empty() {
            let e: Vec<String> = p.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("{:<18} errors: {}", p.label(), e.join(", "));
        }
        if p.scan_sent > 0 {
            println!("{:<18} enumeration scan: {} of {} requests refused (rate limit)", p.label(), p.scan_throttled, p.scan_sent);
        }
    }
    for p in &r.runs {
        let f = |v: Option<f64>| v.map_or("–".into(), |x| if x >= 1000.0 { format!("{:.2} s", x / 1000.0) } else { format!("{x:.0} ms") });
        let verdict = if p.wrong == 0 && p.stale == 0 { "PASS" } else if p.wrong == 0 { "STALE" } else { "WRONG" };
        println!(
            "verdict {:<18} {verdict}: {} wrong and {} stale answers of {}; every change reached every resolver within {} (p99)",
            p.label(),
            p.wrong,
            p.stale,
            p.lookups,
            f(quantile(&p.invalidation_ms, 0.99))
        );
    }
    let kinds: std::collections::BTreeSet<&String> = r.runs.iter().flat_map(|p| p.errors.keys()).collect();
    if !kinds.is_empty() {
        println!("the errors are what the scenario's incidents make users see, not faults:");
        for k in kinds {
            println!("  {k:<14} {}", explain_error(k));
        }
    }
    if !r.privacy.is_empty() {
        println!("who learned what (computed from each tier's own records):");
        for (mode, tiers) in &r.privacy {
            for (tier, facts) in tiers {
                let f: Vec<&str> = facts.iter().map(|f| signpost_testbed::privacy::fact_name(f)).collect();
                println!("  {:<8} {:<10} {}", mode, tier, if f.is_empty() { "nothing".to_owned() } else { f.join(", ") });
            }
        }
    }
    println!("reports: {}/report.html, report.md, report.json", out.display());
}

/// What an error kind in the summary comes from, in the scenarios' terms.
fn explain_error(kind: &str) -> &'static str {
    match kind {
        "serverError" => "answers of the rogue authority (a valid certificate for another scope), rejected by the resolvers' verification and never served",
        "serverTimeout" => "lookups during an authority outage for identifiers the resolver had nothing stale for (stale answers are served where it had)",
        "connect" => "requests refused while a resolver restarted (its port was closed for a moment)",
        "relay_502" => "lookups through a relay while its resolver restarted (the relay answers 502: the gateway cannot be reached)",
        "forbidden" => "requests over a client's rate limit (the enumeration scan)",
        "notFound" => "identifiers that are not discoverable (released, never assigned)",
        "loop" => "a request whose path already held the next server",
        _ => "see report.md for the events of the run",
    }
}
