//! Bulk import of numbering data from CSV (documented in
//! `authority/import-format.md`): every row is checked first, errors are
//! reported with their line numbers, and nothing is written unless the
//! whole file is good.

use signpost_schemas::lost::{Assurance, DisplayName, Tag, Uri};
use signpost_schemas::sp::{EntryRecord, Visibility};
use signpost_schemas::{Csi, Name, Region};

/// One CSI's data from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    /// The CSI.
    pub csi: Csi,
    /// `Some(tnsp)` when assigned, `None` when released.
    pub tnsp: Option<Name>,
    /// Its entries (assigned numbers only).
    pub entries: Vec<EntryRecord>,
    /// The first line it appeared on.
    pub line: usize,
}

/// The header every file starts with.
pub const HEADER: &str = "csi,state,tnsp,provider,uri,priority,tags,assurance,bound_to_tnsp,display_name";

/// Splits one CSV line (RFC 4180 quoting: `"a,b"`, `""` for a quote).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            (_, c) => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    out.push(cur);
    Ok(out)
}

/// Parses a whole file. Returns the items, or every error found (up to
/// `max_errors`), each starting with `line N:`.
pub fn parse(text: &str, region: Option<Region>, max_errors: usize) -> Result<Vec<ImportItem>, Vec<String>> {
    let mut errors = Vec::new();
    let mut items: Vec<ImportItem> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    match lines.next() {
        Some((_, h)) if h.trim() == HEADER => {}
        Some((n, h)) => return Err(vec![format!("line {}: expected the header {HEADER:?}, found {:?}", n + 1, h.trim())]),
        None => return Err(vec!["the file has no header and no rows".into()]),
    }
    for (n, line) in lines {
        if errors.len() >= max_errors {
            break;
        }
        let ln = n + 1;
        match row(line, region) {
            Err(e) => errors.push(format!("line {ln}: {e}")),
            Ok((csi, tnsp, entry)) => {
                let key = csi.uri().to_owned();
                match index.get(&key).and_then(|&i| items.get_mut(i)) {
                    Some(item) => {
                        if item.tnsp != tnsp {
                            errors.push(format!("line {ln}: {key} has another state or tnsp than on line {}", item.line));
                            continue;
                        }
                        if let Some(e) = entry {
                            if item.entries.iter().any(|x| x.provider == e.provider) {
                                errors.push(format!("line {ln}: {key} has a second entry from {}", e.provider));
                                continue;
                            }
                            item.entries.push(e);
                        }
                    }
                    None => {
                        index.insert(key, items.len());
                        items.push(ImportItem { csi, tnsp, entries: entry.into_iter().collect(), line: ln });
                    }
                }
            }
        }
    }
    if errors.is_empty() { Ok(items) } else { Err(errors) }
}

type Row = (Csi, Option<Name>, Option<EntryRecord>);

fn row(line: &str, region: Option<Region>) -> Result<Row, String> {
    let f = fields(line)?;
    if f.len() != 10 {
        return Err(format!("expected 10 fields, found {}", f.len()));
    }
    let get = |i: usize| f.get(i).map_or("", |s| s.trim());
    let csi = Csi::parse(get(0), region).map_err(|e| format!("csi {:?}: {e}", get(0)))?;
    let tnsp = match get(1) {
        "assigned" => Some(Name::parse(get(2)).map_err(|e| format!("tnsp: {e}"))?),
        "released" => {
            if !get(2).is_empty() || !get(3).is_empty() {
                return Err("a released number has no tnsp and no entries".into());
            }
            None
        }
        s => return Err(format!("state {s:?}: use assigned or released")),
    };
    if get(3).is_empty() {
        if (4..10).any(|i| !get(i).is_empty()) {
            return Err("entry fields given without a provider".into());
        }
        return Ok((csi, tnsp, None));
    }
    let provider = Name::parse(get(3)).map_err(|e| format!("provider: {e}"))?;
    let uris = get(4).split_whitespace().map(Uri::parse).collect::<Result<Vec<_>, _>>().map_err(|e| format!("uri: {e}"))?;
    if uris.is_empty() {
        return Err("an entry needs at least one uri".into());
    }
    let priority = if get(5).is_empty() { 10 } else { get(5).parse().map_err(|_| format!("priority {:?} is not a number", get(5)))? };
    let tags = get(6).split_whitespace().map(Tag::parse).collect::<Result<Vec<_>, _>>().map_err(|e| format!("tags: {e}"))?;
    let assurance = if get(7).is_empty() { Assurance::CsipAttested } else { Assurance::parse(get(7)).map_err(|e| e.to_string())? };
    let bound_to_tnsp = match get(8) {
        "" | "false" | "0" => false,
        "true" | "1" => true,
        s => return Err(format!("bound_to_tnsp {s:?}: use true or false")),
    };
    let display_name = (!get(9).is_empty()).then(|| DisplayName { text: get(9).to_owned(), lang: "en".into() });
    Ok((csi, tnsp, Some(EntryRecord { provider, display_name, uris, priority, tags, assurance, bound_to_tnsp, visibility: Visibility::All })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_errors() {
        let text = format!(
            "# numbering data\n{HEADER}\n\
+49 151 12345678,assigned,tnsp-a.de.example,ott.example,mimi://ott.example/u/1,10,personal,msp-verified,false,\"OTT, the app\"\n\
+4915112345678,assigned,tnsp-a.de.example,rcs.example,mimi://rcs.example/u/1,,,,true,\n\
+4915199999999,released,,,,,,,,\n"
        );
        let items = parse(&text, None, 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].entries.len(), 2);
        assert_eq!(items[0].entries[0].display_name.as_ref().unwrap().text, "OTT, the app");
        assert!(items[0].entries[1].bound_to_tnsp);
        assert_eq!(items[1].tnsp, None);
        let bad = format!("{HEADER}\n+49151ABC,assigned,t.example,,,,,,,\n+4915112345678,weird,,,,,,,,\n+4915112345678,assigned,t.example,p.example,,,,,,\n");
        let e = parse(&bad, None, 10).unwrap_err();
        assert_eq!(e.len(), 3);
        assert!(e[0].starts_with("line 2:") && e[1].starts_with("line 3:") && e[2].starts_with("line 4:"), "{e:?}");
        assert!(parse("nonsense\n", None, 10).unwrap_err()[0].contains("header"));
    }
}
