//! Scenarios: strict TOML (samples in `testbed/scenarios/`).

use serde::Deserialize;

/// A scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for the report.
    pub name: String,
    /// Seed of every random choice (population, load, events).
    #[serde(default = "seed")]
    pub seed: u64,
    /// Length of the lookup load, seconds.
    pub duration_s: u64,
    /// Mapping lifetime the authorities give (what ttl-only waits for), s.
    pub mapping_ttl_s: u32,
    /// Negative lifetime the authorities give, s.
    #[serde(default = "neg")]
    pub negative_ttl_s: u32,
    /// Invalidation policies to run the scenario under: "push", "ttl-only".
    pub policies: Vec<String>,
    /// Resolvers in the topology.
    pub resolvers: usize,
    /// Countries, one authority each.
    #[serde(default)]
    pub country: Vec<Country>,
    /// Email domains, one authority each.
    #[serde(default)]
    pub email: Vec<EmailDomain>,
    /// The population.
    pub population: Population,
    /// Lookup load.
    pub load: Load,
    /// Timed events.
    #[serde(default)]
    pub event: Vec<Event>,
    /// A rogue authority: the root delegates `prefix` to it, but its
    /// certificate only covers `certified_for`. Its answers must never be
    /// accepted.
    pub rogue: Option<Rogue>,
}

/// A rogue authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rogue {
    /// The prefix delegated to it.
    pub prefix: String,
    /// What its certificate covers.
    pub certified_for: String,
    /// Numbers it publishes under `prefix`.
    pub numbers: usize,
}

fn seed() -> u64 {
    1
}
fn neg() -> u32 {
    30
}

/// A country.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Country {
    /// ISO 3166 code, e.g. DE (numbers are valid for it per libphonenumber).
    pub region: String,
    /// Its E.164 prefix, e.g. +49.
    pub prefix: String,
    /// The leading national digits numbers are drawn under (e.g. 151).
    pub block: String,
    /// National significant number length.
    pub national_digits: usize,
    /// How many numbers.
    pub numbers: usize,
}

/// An email domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailDomain {
    /// The domain.
    pub domain: String,
    /// How many addresses.
    pub addresses: usize,
}

/// Who has which providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// OTT messaging providers.
    pub ott: Vec<String>,
    /// Share of users with an operator-aligned entry (their TNSP's RCS-like MSP).
    pub operator_aligned_share: f64,
    /// Most OTT entries one user has.
    pub max_ott_per_user: usize,
    /// Share of assigned identifiers with no entry at all (not discoverable).
    pub undiscoverable_share: f64,
}

/// The lookup load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Lookups per second across all clients.
    pub rate: u32,
    /// Zipf exponent of identifier popularity (0 = uniform).
    pub zipf: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Each resolver's limit per client, queries per second (and burst).
    #[serde(default = "per_client")]
    pub per_client_limit: f64,
}

fn per_client() -> f64 {
    1000.0
}

/// A timed event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When, seconds after the load starts.
    pub at_s: f64,
    /// `port`, `release`, `reassign`, `claim`, `preference` (an MSP hides
    /// its entry from senders without context), `outage` / `recover` (an
    /// authority, by `target`), `root-outage` / `root-recover`, `scan` (one
    /// client asks for `count` unassigned numbers as fast as it can),
    /// `resolver-restart` (resolver number `target`, default 0: empty caches).
    pub kind: String,
    /// How many identifiers (port, release, reassign, claim).
    #[serde(default = "one")]
    pub count: usize,
    /// The authority (outage, recover): a country's prefix or an email
    /// domain; the resolver's number (resolver-restart).
    pub target: Option<String>,
}

fn one() -> usize {
    1
}

/// The built-in demo.
pub const DEMO: &str = include_str!("../scenarios/demo.toml");

impl Scenario {
    /// Parses and checks.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        for p in &s.policies {
            if !matches!(p.as_str(), "push" | "ttl-only") {
                return Err(format!("policies: {p:?} is not push or ttl-only"));
            }
        }
        if s.policies.is_empty() || s.resolvers == 0 || s.load.clients == 0 || s.load.rate == 0 || s.duration_s == 0 {
            return Err("policies, resolvers, load.clients, load.rate and duration_s must be non-empty / positive".into());
        }
        for e in &s.event {
            let ok = match e.kind.as_str() {
                "port" | "release" | "reassign" | "claim" | "preference" | "scan" | "root-outage" | "root-recover" | "resolver-restart" => true,
                "outage" | "recover" => e.target.is_some(),
                _ => false,
            };
            if !ok {
                return Err(format!("event at {} s: kind {:?} (port, release, reassign, claim, preference, scan, root-outage, root-recover, resolver-restart, or outage/recover with a target)", e.at_s, e.kind));
            }
            if e.at_s < 0.0 || e.at_s > s.duration_s as f64 {
                return Err(format!("event at {} s is outside the {} s run", e.at_s, s.duration_s));
            }
        }
        if s.country.is_empty() && s.email.is_empty() {
            return Err("a scenario needs at least one country or email domain".into());
        }
        Ok(s)
    }
}
