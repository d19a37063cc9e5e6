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
    /// How the APs reach the resolvers: `direct` (mTLS to the resolver)
    /// and/or `relay` (Oblivious HTTP through a relay in front of each
    /// resolver). Every policy runs in every mode; the report's observer
    /// table has a column per mode. Default: `["direct"]`.
    #[serde(default = "modes")]
    pub modes: Vec<String>,
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
    /// How `signpost-testbed simulate` runs the scenario (the live mode
    /// ignores this table).
    #[serde(default)]
    pub simulate: Simulate,
}

/// The simulated mode's settings (all optional: a small scenario is
/// simulated exactly, every identifier and every lookup).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Simulate {
    /// Simulated length, s (default: `duration_s`).
    pub duration_s: Option<u64>,
    /// Lookups per second arriving at all resolvers together (default:
    /// `load.rate`).
    pub lookup_rate: Option<f64>,
    /// Identifiers followed per popularity band (ranks 1–9, 10–99, …,
    /// sampled uniformly within a band, each standing for band size /
    /// followed); 0 follows every identifier (exact).
    #[serde(default)]
    pub traced_per_band: u64,
    /// Per band, identifiers followed among those whose own events start
    /// in the run (`rates`), besides `traced_per_band` among the others:
    /// stale answers come only from identifiers that change, so they are
    /// sampled more densely (each still standing for its share). 0: one
    /// uniform sample per band.
    #[serde(default)]
    pub changers_per_band: u64,
    /// Lookups simulated per followed identifier at most: a popular one is
    /// asked through a sample of resolvers, each lookup standing for the
    /// ones left out.
    #[serde(default = "max_lookups")]
    pub max_lookups_per_identifier: f64,
    /// A resolver asking for one identifier more often than this many
    /// times per mapping lifetime is simulated at this rate (its cache
    /// stays as warm), each lookup standing for the ones left out. 0: no
    /// thinning.
    #[serde(default)]
    pub warm_lookups_per_ttl: f64,
    /// Verify every Nth mapping signature cryptographically (the others get
    /// every check but the signature arithmetic: signer, role, scope,
    /// source, validity). 1: all.
    #[serde(default = "one_u64")]
    pub verify_every: u64,
    /// Change and incident rates (per identifier or per server, per year).
    #[serde(default)]
    pub rates: Rates,
    /// The network.
    #[serde(default)]
    pub network: Network,
    /// Under `push-lossy`: the chance a feed frame is lost in transit; the
    /// stream breaks and the resolver resumes from its position.
    #[serde(default = "lossy")]
    pub feed_loss: f64,
    /// How often resolvers check the root table again, s.
    #[serde(default = "refresh")]
    pub root_table_refresh_s: u64,
    /// Cached answers per resolver at most (default: the product's).
    pub resolver_cache_entries: Option<usize>,
    /// Feed events an authority keeps (older `since` gets a resync).
    #[serde(default = "retention")]
    pub feed_retention: u64,
}

impl Default for Simulate {
    fn default() -> Self {
        Simulate {
            duration_s: None,
            lookup_rate: None,
            traced_per_band: 0,
            changers_per_band: 0,
            max_lookups_per_identifier: max_lookups(),
            warm_lookups_per_ttl: 0.0,
            verify_every: 1,
            rates: Rates::default(),
            network: Network::default(),
            feed_loss: lossy(),
            root_table_refresh_s: refresh(),
            resolver_cache_entries: None,
            feed_retention: retention(),
        }
    }
}

fn max_lookups() -> f64 {
    f64::INFINITY
}
fn one_u64() -> u64 {
    1
}
fn lossy() -> f64 {
    0.01
}
fn refresh() -> u64 {
    3600
}
fn retention() -> u64 {
    100_000
}

/// Rates of the simulated year (0: none of that kind).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Ports per assigned number per year.
    #[serde(default)]
    pub port_per_year: f64,
    /// Releases (disconnections; email: closed mailboxes) per assigned identifier per year.
    #[serde(default)]
    pub release_per_year: f64,
    /// A released identifier is assigned to someone new after this many days.
    #[serde(default)]
    pub reassign_after_days: f64,
    /// Changes of a recipient's preferences per assigned identifier per year.
    #[serde(default)]
    pub preference_per_year: f64,
    /// Spare identifiers claimed (newly assigned) per spare per year.
    #[serde(default)]
    pub claim_per_year: f64,
    /// Outages per authority per year.
    #[serde(default)]
    pub authority_outages_per_year: f64,
    /// How long an outage lasts, minutes.
    #[serde(default)]
    pub outage_minutes: f64,
    /// Restarts (empty caches) per resolver per year.
    #[serde(default)]
    pub resolver_restarts_per_year: f64,
}

/// One-way delays between a resolver and a server, by distance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Same country (the resolver's operator is in the authority's country), ms.
    #[serde(default = "metro")]
    pub metro_ms: f64,
    /// Same world zone, ms.
    #[serde(default = "continental")]
    pub continental_ms: f64,
    /// Across zones, ms.
    #[serde(default = "intercontinental")]
    pub intercontinental_ms: f64,
    /// Spread of each delay (log-normal sigma).
    #[serde(default = "jitter")]
    pub jitter: f64,
    /// Requests lost (the resolver's attempt timer fires).
    #[serde(default)]
    pub loss: f64,
}

impl Default for Network {
    fn default() -> Self {
        Network { metro_ms: metro(), continental_ms: continental(), intercontinental_ms: intercontinental(), jitter: jitter(), loss: 0.0 }
    }
}

fn metro() -> f64 {
    2.0
}
fn continental() -> f64 {
    20.0
}
fn intercontinental() -> f64 {
    75.0
}
fn jitter() -> f64 {
    0.3
}

/// Policies the live mode runs (the others are simulated only).
pub const LIVE_POLICIES: [&str; 2] = ["push", "ttl-only"];
/// Every policy.
pub const POLICIES: [&str; 4] = ["push", "ttl-only", "flush-on-notify", "push-lossy"];

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
fn modes() -> Vec<String> {
    vec!["direct".to_owned()]
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
    /// How many numbers are assigned (a tenth more are spare).
    pub numbers: u64,
}

/// An email domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailDomain {
    /// The domain.
    pub domain: String,
    /// How many addresses are in use (a tenth more are spare).
    pub addresses: u64,
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
            if !POLICIES.contains(&p.as_str()) {
                return Err(format!("policies: {p:?} is not one of {}", POLICIES.join(", ")));
            }
        }
        for m in &s.modes {
            if !crate::privacy::MODES.contains(&m.as_str()) {
                return Err(format!("modes: {m:?} is not one of {}", crate::privacy::MODES.join(", ")));
            }
        }
        if s.modes.is_empty() || s.modes.iter().enumerate().any(|(i, m)| s.modes.get(..i).is_some_and(|before| before.contains(m))) {
            return Err("modes: one or more of \"direct\", \"relay\", each once".into());
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
