//! Server and provider ids: LoST's `appUniqueString`.
//!
//! RFC 5222 §4 and the schema: `([a-zA-Z0-9\-]+\.)+[a-zA-Z0-9]+`, "a DNS
//! name". Signpost is stricter than the schema pattern (the
//! schema's pattern lets IPv4 literals and edge hyphens through): labels may not start or end
//! with `-`, the name may not be an IPv4 literal, and it is lowercased, so
//! `ROOT-1.Example` and `root-1.example` are one id.

use std::fmt;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid server id (a DNS-style name such as dp.de.example: two or more dot-separated labels of a-z, 0-9 and inner '-'; no port, no underscore, no URL)")]
pub struct NameError(pub String);

/// A server id, MSP id or CSIP id: what appears in `source`, `via`,
/// `redirect/@target` and `sp:provider/@id`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<str>);

impl Name {
    /// Parses and lowercases; surrounding whitespace is dropped, as
    /// `xsd:token` does.
    pub fn parse(s: &str) -> Result<Name, NameError> {
        let t = s.trim();
        let bad = || NameError(s.to_owned());
        if t.is_empty() || t.len() > 253 {
            return Err(bad());
        }
        let mut labels = 0;
        let mut last_numeric = false;
        for label in t.split('.') {
            labels += 1;
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
                || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad());
            }
            last_numeric = label.bytes().all(|b| b.is_ascii_digit());
        }
        if labels < 2 || last_numeric {
            return Err(bad());
        }
        Ok(Name(t.to_ascii_lowercase().into_boxed_str()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_findings() {
        for good in ["dp.example", "ROOT-1.Example", " dp.example ", "xn--bcher-kva.example", "a.b.c.d"] {
            assert!(Name::parse(good).is_ok(), "{good}");
        }
        assert_eq!(Name::parse("ROOT-1.Example").unwrap().as_str(), "root-1.example");
        for bad in [
            "dp.example:7402", "127.0.0.1", "https://dp.example/lost", "localhost", "dp.example.",
            "::1", "[::1]", "dp_de.example", "a..b", "\u{fc}mlaut.example", "-a.b", "a-.b", "",
        ] {
            assert!(Name::parse(bad).is_err(), "{bad}");
        }
    }
}
