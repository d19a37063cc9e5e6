//! Time: timestamps in the wire's `xsd:dateTime` form, LoST `expires`, and
//! the one clock abstraction every decision takes its `now` from.
//!
//! Signpost code never reads the system clock directly: servers hold a
//! [`SystemClock`], tests and the simulator a [`ManualClock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A point in time, milliseconds since the Unix epoch (UTC), from 1970 to
/// the end of year 9999.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

/// The last millisecond of 9999-12-31.
const MAX_MS: u64 = 253_402_300_799_999;

/// Why a string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UTC date-time like 2026-11-23T07:00:00Z")]
pub struct TimeError(pub String);

impl Timestamp {
    /// The epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From milliseconds since the epoch (saturating at year 9999).
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(if ms > MAX_MS { MAX_MS } else { ms })
    }
    /// From whole seconds since the epoch.
    pub const fn from_secs(s: u64) -> Timestamp {
        Timestamp::from_millis(s.saturating_mul(1000))
    }
    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }
    /// `self + ms`, saturating.
    pub const fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp::from_millis(self.0.saturating_add(ms))
    }
    /// `self + s` seconds, saturating.
    pub const fn plus_secs(self, s: u64) -> Timestamp {
        self.plus_millis(s.saturating_mul(1000))
    }
    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub const fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Parses `xsd:dateTime` with a zone: `Z` or `±hh:mm`, optional fraction
    /// (kept to the millisecond). RFC 5222 §5 wants UTC; offsets are
    /// accepted on input and converted. A value without a zone is refused:
    /// its instant is unknown.
    pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
        parse_datetime(s.trim()).ok_or_else(|| TimeError(s.to_owned()))
    }

    /// Writes the canonical form: `YYYY-MM-DDThh:mm:ssZ`, with `.mmm` only
    /// when the milliseconds are not zero.
    pub fn write(self, out: &mut String) {
        let secs = self.0 / 1000;
        let ms = self.0 % 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (rem / 3600, (rem / 60) % 60, rem % 60);
        // Years past 9999 take more digits: written the slow way.
        if y > 9999 {
            push_num(out, y, 4);
            for (sep, v) in [('-', m), ('-', d), ('T', hh), (':', mm), (':', ss)] {
                out.push(sep);
                push_num(out, v, 2);
            }
            if ms != 0 {
                out.push('.');
                push_num(out, ms, 3);
            }
            out.push('Z');
            return;
        }
        // One push of a buffer filled in place (an answer writes several).
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                if let Some(slot) = b.get_mut(i) {
                    *slot = b'0' + (v % 10) as u8;
                }
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, hh);
        put(14, 2, mm);
        put(17, 2, ss);
        let len = if ms != 0 {
            put(20, 3, ms);
            b.len()
        } else {
            if let Some(z) = b.get_mut(19) {
                *z = b'Z';
            }
            20
        };
        out.push_str(b.get(..len).and_then(|t| std::str::from_utf8(t).ok()).unwrap_or_default());
    }
}

fn push_num(out: &mut String, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut n = v;
    let mut i = buf.len();
    while n > 0 && i > 0 {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
    }
    let start = i.min(buf.len().saturating_sub(width));
    for &b in buf.get(start..).unwrap_or(&[]) {
        out.push(char::from(b));
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(24);
        self.write(&mut s);
        f.write_str(&s)
    }
}
impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian. The
/// usual era-based conversion (400-year cycles of 146 097 days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// (year ≥ 1970, month, day) → days since 1970-01-01.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        _ => 28,
    }
}

fn parse_datetime(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: u8| b.get(at) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0, 4)?, num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0u64;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                ms = ms * 10 + u64::from(b.get(i).copied().unwrap_or(b'0') - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest.get(2) == Some(&b':') => {
            let oh = num(i + 1, 2)?;
            let om = num(i + 4, 2)?;
            if oh > 14 || om > 59 {
                return None;
            }
            let o = i64::try_from(oh * 3600 + om * 60).ok()?;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let local = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    let utc = i64::try_from(local).ok()?.checked_sub(offset_secs)?;
    let utc = u64::try_from(utc).ok()?;
    let ms_total = utc.checked_mul(1000)?.checked_add(ms)?;
    (ms_total <= MAX_MS).then_some(Timestamp(ms_total))
}

/// LoST `expires` (RFC 5222 §5.1): an absolute time, or one of two words.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Expires {
    /// Cache until this instant.
    At(Timestamp),
    /// `NO-CACHE`: use once, do not cache.
    NoCache,
    /// `NO-EXPIRATION`: cache without a deadline (Signpost clamps it).
    NoExpiration,
}

impl Expires {
    /// Parses the attribute value; the two words are case-sensitive.
    pub fn parse(s: &str) -> Result<Expires, TimeError> {
        match s.trim() {
            "NO-CACHE" => Ok(Expires::NoCache),
            "NO-EXPIRATION" => Ok(Expires::NoExpiration),
            t => Timestamp::parse(t).map(Expires::At),
        }
    }
    /// Writes the attribute value.
    pub fn write(self, out: &mut String) {
        match self {
            Expires::At(t) => t.write(out),
            Expires::NoCache => out.push_str("NO-CACHE"),
            Expires::NoExpiration => out.push_str("NO-EXPIRATION"),
        }
    }
}

/// The source of `now` for every decision.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The operating system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(MAX_MS))
            .unwrap_or(0);
        Timestamp::from_millis(ms)
    }
}

/// A clock that moves only when told to: tests and the simulator. Clones
/// share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Timestamp) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(t.as_millis())))
    }
    /// Moves the clock to `t` (backwards too: tests of clock steps need it).
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }
    /// Moves the clock forward by `ms`.
    pub fn advance_millis(&self, ms: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(v.saturating_add(ms).min(MAX_MS)));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let t = Timestamp::parse("2026-11-23T07:00:00Z").unwrap();
        assert_eq!(t.as_secs(), 1_795_417_200);
        assert_eq!(t.to_string(), "2026-11-23T07:00:00Z");
        let t2 = Timestamp::parse("2026-11-23T08:00:00.25+01:00").unwrap();
        assert_eq!(t2.as_millis(), t.as_millis() + 250);
        assert_eq!(t2.to_string(), "2026-11-23T07:00:00.250Z");
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp::parse("2000-02-29T23:59:59Z").unwrap().to_string(), "2000-02-29T23:59:59Z");
        assert_eq!(Timestamp::parse("9999-12-31T23:59:59.999Z").unwrap().as_millis(), MAX_MS);
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "2026-11-23T07:00:00", "2026-11-23 07:00:00Z", "2026-02-30T00:00:00Z", "1969-12-31T23:59:59Z",
            "2026-11-23T24:00:00Z", "2026-11-23T07:00:00.Z", "2026-11-23T07:00:00+1:00", "x", "",
            "2026-11-23T07:00:00Zjunk", "+2026-11-23T07:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        for day in (0..3_000_000u64).step_by(997) {
            let t = Timestamp::from_secs(day * 86_400 + 3661);
            assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
        }
    }

    #[test]
    fn writes_what_a_field_by_field_format_writes() {
        for k in 0..20_000u64 {
            let ms = k * 15_778_463_117 % (MAX_MS + 1);
            let t = Timestamp::from_millis(ms);
            let secs = ms / 1000;
            let (y, m, d) = civil_from_days(secs / 86_400);
            let r = secs % 86_400;
            let frac = if ms.is_multiple_of(1000) { String::new() } else { format!(".{:03}", ms % 1000) };
            let want = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", r / 3600, r / 60 % 60, r % 60);
            let mut out = String::from("x");
            t.write(&mut out);
            assert_eq!(out, format!("x{want}"), "{ms}");
        }
    }

    #[test]
    fn expires_words_are_case_sensitive() {
        assert_eq!(Expires::parse("NO-CACHE").unwrap(), Expires::NoCache);
        assert!(Expires::parse("no-cache").is_err());
        assert!(Expires::parse("3600").is_err());
    }

    #[test]
    fn manual_clock_is_shared() {
        let c = ManualClock::new(Timestamp::from_secs(10));
        let c2 = c.clone();
        c.advance_millis(1500);
        assert_eq!(c2.now().as_millis(), 11_500);
    }
}
