//! The identifier space, generated from the seed on demand.
//!
//! Every identifier of a scenario has a global index `g` (authority by
//! authority, each authority's assigned identifiers first and then its spare
//! ones). Its identifier, its initial state and its popularity rank are pure
//! functions of `(seed, g)`: nothing is stored for an identifier until the
//! simulation touches it, so a namespace of ten billion costs nothing.

use signpost_schemas::lost::{Assurance, Uri};
use signpost_schemas::sp::{EntryRecord, Visibility};
use signpost_schemas::{Csi, E164, Name};

use crate::scenario::Scenario;

/// SplitMix64: a well-mixed 64-bit hash of one value.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of (seed, what, g) in [0, 1).
pub fn unit(seed: u64, what: u64, g: u64) -> f64 {
    (mix(seed ^ mix(what ^ mix(g))) >> 11) as f64 / (1u64 << 53) as f64
}

/// One authority of the space.
#[derive(Debug, Clone)]
pub struct Auth {
    /// What the root delegates to it: `+49`, `+1212`, `mail.example`.
    pub key: String,
    /// Its id.
    pub id: Name,
    /// Phone authorities: the digits every number starts with (country
    /// code and block) and how many digits follow.
    pub phone: Option<(String, usize)>,
    /// Email authorities: the domain.
    pub domain: Option<String>,
    /// Identifiers assigned at the start.
    pub assigned: u64,
    /// Assigned plus spare (unassigned, claimable) identifiers.
    pub size: u64,
    /// The world zone (E.164 zone 1–9 by country code; email: 0).
    pub zone: u8,
    /// Its two number providers (TNSPs), or the email provider twice.
    pub tnsps: [String; 2],
}

/// The whole space.
#[derive(Debug, Clone)]
pub struct Space {
    /// The seed.
    pub seed: u64,
    /// Authorities in scenario order (countries, then email domains).
    pub auths: Vec<Auth>,
    /// Global index of each authority's first identifier.
    offsets: Vec<u64>,
    /// Identifiers in the namespace.
    pub total: u64,
    ott: Vec<String>,
    operator_aligned_share: f64,
    max_ott: usize,
    undiscoverable_share: f64,
    /// Popularity permutation: the Feistel domain's half width in bits.
    half_bits: u32,
}

/// Identifiers beyond the assigned ones, as in the live mode: a tenth.
fn spare(n: u64) -> u64 {
    n / 10
}

impl Space {
    /// The space of a scenario.
    pub fn new(s: &Scenario, seed: u64) -> Result<Space, String> {
        let mut auths = Vec::new();
        for c in &s.country {
            let cc = c.prefix.trim_start_matches('+');
            let tail = c.national_digits.checked_sub(c.block.len()).ok_or_else(|| format!("country {}: block {} is longer than {} national digits", c.prefix, c.block, c.national_digits))?;
            let size = c.numbers + spare(c.numbers);
            if tail < 19 && size > 10u64.pow(tail as u32) {
                return Err(format!("country {}: {} numbers (with spares) do not fit in {tail} digits after block {}", c.prefix, size, c.block));
            }
            let lead = format!("{cc}{}", c.block);
            // The first and last numbers must be valid for the plan.
            for j in [0, size.saturating_sub(1)] {
                E164::from_digits(&format!("{lead}{j:0tail$}")).map_err(|e| format!("country {}: {e}", c.prefix))?;
            }
            let tag = c.region.to_ascii_lowercase();
            let zone = cc.chars().next().and_then(|d| d.to_digit(10)).unwrap_or(0) as u8;
            auths.push(Auth {
                key: c.prefix.clone(),
                id: Name::parse(&format!("dp-{cc}.{tag}.example")).map_err(|e| e.to_string())?,
                phone: Some((lead, tail)),
                domain: None,
                assigned: c.numbers,
                size,
                zone,
                tnsps: [format!("tnsp-a.{tag}.example"), format!("tnsp-b.{tag}.example")],
            });
        }
        for e in &s.email {
            let size = e.addresses + spare(e.addresses);
            auths.push(Auth {
                key: e.domain.clone(),
                id: Name::parse(&format!("dp.{}", e.domain)).map_err(|x| x.to_string())?,
                phone: None,
                domain: Some(e.domain.clone()),
                assigned: e.addresses,
                size,
                zone: 0,
                tnsps: [e.domain.clone(), e.domain.clone()],
            });
        }
        let mut offsets = Vec::with_capacity(auths.len());
        let mut total = 0u64;
        for a in &auths {
            offsets.push(total);
            total = total.checked_add(a.size).ok_or("the namespace overflows 64 bits")?;
        }
        if total == 0 {
            return Err("the namespace is empty".into());
        }
        let bits = 64 - (total - 1).leading_zeros().max(1);
        let half_bits = bits.div_ceil(2).max(1);
        Ok(Space {
            seed,
            auths,
            offsets,
            total,
            ott: s.population.ott.clone(),
            operator_aligned_share: s.population.operator_aligned_share,
            max_ott: s.population.max_ott_per_user,
            undiscoverable_share: s.population.undiscoverable_share,
            half_bits,
        })
    }

    /// The authority of identifier `g` and its index there.
    pub fn locate(&self, g: u64) -> (usize, u64) {
        let a = self.offsets.partition_point(|&o| o <= g).saturating_sub(1);
        (a, g - self.offsets.get(a).copied().unwrap_or(0))
    }

    /// The identifier with global index `g`.
    pub fn csi(&self, g: u64) -> Result<Csi, String> {
        let (a, j) = self.locate(g);
        let auth = self.auths.get(a).ok_or("identifier outside the space")?;
        match (&auth.phone, &auth.domain) {
            (Some((lead, tail)), _) => E164::from_digits(&format!("{lead}{j:0tail$}", tail = *tail)).map(Csi::E164).map_err(|e| e.to_string()),
            (None, Some(d)) => Csi::from_wire(&format!("mailto:u{j}@{d}")).map_err(|e| e.to_string()),
            (None, None) => Err("authority without a namespace".into()),
        }
    }

    /// Whether `g` is assigned at the start (else it is a spare).
    pub fn assigned_at_start(&self, g: u64) -> bool {
        let (a, j) = self.locate(g);
        self.auths.get(a).is_some_and(|x| j < x.assigned)
    }

    /// The initial state of `g`: its TNSP (0 or 1; `None` for a spare) and
    /// its entries. A pure function of (seed, g).
    pub fn initial(&self, g: u64) -> Result<(Option<u8>, Vec<EntryRecord>), String> {
        if !self.assigned_at_start(g) {
            return Ok((None, vec![]));
        }
        let (a, _) = self.locate(g);
        let auth = self.auths.get(a).ok_or("identifier outside the space")?;
        let phone = auth.phone.is_some();
        let t = if phone { (mix(self.seed ^ mix(g ^ 0x71)) & 1) as u8 } else { 0 };
        let mut entries = Vec::new();
        if unit(self.seed, 0x72, g) >= self.undiscoverable_share {
            let n = if self.max_ott == 0 { 0 } else { 1 + (mix(self.seed ^ mix(g ^ 0x73)) % self.max_ott as u64) as usize };
            let mut names: Vec<&String> = self.ott.iter().collect();
            for k in 0..n.min(names.len()) {
                let i = (mix(self.seed ^ mix(g ^ (0x80 + k as u64))) % names.len() as u64) as usize;
                let p = names.remove(i);
                entries.push(entry(p, g, false)?);
            }
            if phone && unit(self.seed, 0x74, g) < self.operator_aligned_share {
                entries.push(entry(&format!("rcs.{}", auth.tnsps[usize::from(t)]), g, true)?);
            }
        }
        Ok((Some(t), entries))
    }

    /// The identifier at popularity rank `r` (0 = most popular): a seeded
    /// permutation of the namespace (a Feistel network, cycle-walked).
    pub fn at_rank(&self, r: u64) -> u64 {
        let mut x = r;
        loop {
            x = self.feistel(x);
            if x < self.total {
                return x;
            }
        }
    }

    fn feistel(&self, x: u64) -> u64 {
        let hb = self.half_bits;
        let mask = (1u64 << hb) - 1;
        let (mut l, mut r) = (x >> hb, x & mask);
        for round in 0..4u64 {
            let f = mix(self.seed ^ mix(r ^ (round << 56))) & mask;
            let nl = r;
            r = l ^ f;
            l = nl;
        }
        (l << hb) | r
    }
}

/// An entry of `provider` for identifier `g` (as the live mode makes them).
pub fn entry(provider: &str, g: u64, bound: bool) -> Result<EntryRecord, String> {
    Ok(EntryRecord {
        provider: Name::parse(provider).map_err(|e| e.to_string())?,
        display_name: None,
        uris: vec![Uri::parse(&format!("mimi://{provider}/u/{g}")).map_err(|e| e.to_string())?],
        priority: if bound { 5 } else { 10 },
        tags: vec![],
        assurance: Assurance::CsipAttested,
        bound_to_tnsp: bound,
        visibility: Visibility::All,
    })
}

/// Σ_{k=1..n} k^-s (exact up to a million terms, Euler–Maclaurin beyond).
pub fn harmonic(n: u64, s: f64) -> f64 {
    const EXACT: u64 = 1_000_000;
    let upto = n.min(EXACT);
    let mut h: f64 = (1..=upto).map(|k| (k as f64).powf(-s)).sum();
    if n > EXACT {
        let (a, b) = (EXACT as f64 + 0.5, n as f64 + 0.5);
        h += if (s - 1.0).abs() < 1e-12 { (b / a).ln() } else { (b.powf(1.0 - s) - a.powf(1.0 - s)) / (1.0 - s) };
    }
    h
}
