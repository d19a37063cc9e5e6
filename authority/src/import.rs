//! Bulk import of numbering data from CSV (documented in
//! `authority/import-format.md`), streamed: the file is read in batches of
//! lines, each batch parsed on every core, and adjacent rows of one
//! identifier grouped into one [`ImportRecord`]. Memory stays bounded
//! whatever the file size: a batch of lines, its records, and 8 bytes per
//! identifier for the check that no identifier appears twice (spilled to
//! sorted temporary files beyond [`FINGERPRINTS_IN_MEMORY`]).
//!
//! `signpost-authority import` reads a file twice: pass 1 checks every row
//! (nothing is written if one is bad), pass 2 signs and writes batch by
//! batch, each batch with a [`Progress`] checkpoint in the same store
//! transaction, so an interrupted import resumes where it stopped.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use signpost_schemas::lost::{Assurance, DisplayName, Epoch, Tag, Uri};
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

/// One CSI's data with what the full format (as `export` writes it) adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// The identifier, state and entries.
    pub item: ImportItem,
    /// Its epoch (1 unless the file says otherwise).
    pub epoch: Epoch,
    /// Whether the user opted out of discovery.
    pub opted_out: bool,
    /// Byte offset of its first line in the file.
    pub offset: u64,
}

/// The header of the basic format.
pub const HEADER: &str = "csi,state,tnsp,provider,uri,priority,tags,assurance,bound_to_tnsp,display_name";
/// The header of the full format (what `export` writes): the basic
/// columns, then `epoch`, `opted_out`, `visible_to` and `display_lang`.
pub const HEADER_FULL: &str = "csi,state,tnsp,provider,uri,priority,tags,assurance,bound_to_tnsp,display_name,epoch,opted_out,visible_to,display_lang";

/// Fingerprints kept in memory by the duplicate check before a sorted run
/// is written to a temporary file (8 bytes each: 128 MiB).
pub const FINGERPRINTS_IN_MEMORY: usize = 16 << 20;

/// Lines read, parsed and (in pass 2) signed per batch.
pub const BATCH_LINES: usize = 16_384;

/// Which header the file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// [`HEADER`]: 10 columns.
    Basic,
    /// [`HEADER_FULL`]: 14 columns.
    Full,
}

impl Format {
    fn columns(self) -> usize {
        match self {
            Format::Basic => 10,
            Format::Full => 14,
        }
    }
}

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

/// One parsed row.
#[derive(Debug, Clone)]
struct Row {
    csi: Csi,
    tnsp: Option<Name>,
    entry: Option<EntryRecord>,
    epoch: Epoch,
    opted_out: bool,
}

fn lang_ok(s: &str) -> bool {
    // xsd:language: [a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*
    s.split('-').enumerate().all(|(i, p)| (1..=8).contains(&p.len()) && p.chars().all(|c| if i == 0 { c.is_ascii_alphabetic() } else { c.is_ascii_alphanumeric() }))
}

fn row(line: &str, region: Option<Region>, format: Format) -> Result<Row, String> {
    let f = fields(line)?;
    if f.len() != format.columns() {
        return Err(format!("expected {} fields, found {}", format.columns(), f.len()));
    }
    let get = |i: usize| f.get(i).map_or("", |s| s.trim());
    let csi = Csi::parse(get(0), region).map_err(|e| format!("csi {:?}: {e}", get(0)))?;
    let epoch = match get(10) {
        "" => Epoch(1),
        s => match s.parse::<u64>() {
            Ok(n) if n >= 1 => Epoch(n),
            _ => return Err(format!("epoch {s:?} is not a number from 1")),
        },
    };
    let opted_out = match get(11) {
        "" | "false" | "0" => false,
        "true" | "1" => true,
        s => return Err(format!("opted_out {s:?}: use true or false")),
    };
    let tnsp = match get(1) {
        "assigned" => Some(Name::parse(get(2)).map_err(|e| format!("tnsp: {e}"))?),
        "released" => {
            if !get(2).is_empty() || !get(3).is_empty() || opted_out {
                return Err("a released number has no tnsp, no entries and no opt-out".into());
            }
            None
        }
        s => return Err(format!("state {s:?}: use assigned or released")),
    };
    let base = Row { csi, tnsp, entry: None, epoch, opted_out };
    if get(3).is_empty() {
        if (4..10).chain(12..14).any(|i| !get(i).is_empty()) {
            return Err("entry fields given without a provider".into());
        }
        return Ok(base);
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
    let lang = match get(13) {
        "" => "en",
        l if lang_ok(l) => l,
        l => return Err(format!("display_lang {l:?} is not a language tag")),
    };
    if get(9).is_empty() && !get(13).is_empty() {
        return Err("display_lang without a display_name".into());
    }
    let display_name = (!get(9).is_empty()).then(|| DisplayName { text: get(9).to_owned(), lang: lang.to_owned() });
    let visibility = match get(12) {
        "" => Visibility::All,
        s => Visibility::Only(s.split_whitespace().map(Name::parse).collect::<Result<Vec<_>, _>>().map_err(|e| format!("visible_to: {e}"))?),
    };
    Ok(Row { entry: Some(EntryRecord { provider, display_name, uris, priority, tags, assurance, bound_to_tnsp, visibility }), ..base })
}

/// A place in the file: the byte offset reading starts at and how many
/// lines lie before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset.
    pub offset: u64,
    /// Lines before it.
    pub line: usize,
}

/// One data line (blank and `#` lines are skipped).
struct Line {
    no: usize,
    offset: u64,
    text: Result<String, String>,
}

/// Reads lines, counting them and their bytes, and hashing them when asked.
struct Lines<R> {
    r: R,
    pos: Position,
    buf: Vec<u8>,
    digest: Option<ring::digest::Context>,
}

impl<R: BufRead> Lines<R> {
    fn next(&mut self) -> Result<Option<Line>, String> {
        loop {
            self.buf.clear();
            let n = self.r.read_until(b'\n', &mut self.buf).map_err(|e| format!("reading: {e}"))?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(d) = &mut self.digest {
                d.update(&self.buf);
            }
            let at = self.pos;
            self.pos.offset += n as u64;
            self.pos.line += 1;
            let no = self.pos.line;
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim_end_matches(['\n', '\r']),
                Err(_) => return Ok(Some(Line { no, offset: at.offset, text: Err("not UTF-8".into()) })),
            };
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            return Ok(Some(Line { no, offset: at.offset, text: Ok(text.to_owned()) }));
        }
    }
}

/// The row of an identifier being grouped.
struct Pending {
    rec: ImportRecord,
}

/// Streams a file as batches of grouped records.
pub struct Records<R> {
    lines: Lines<R>,
    region: Option<Region>,
    format: Format,
    pending: Option<Pending>,
    threads: usize,
    batch_lines: usize,
    eof: bool,
    /// The next batch's lines, read while this batch was parsed.
    ahead: Vec<Line>,
}

impl<R> std::fmt::Debug for Records<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").field("at", &self.lines.pos).field("format", &self.format).finish()
    }
}

/// One batch: complete records, the rows' errors, and where the records
/// after them start.
#[derive(Debug, Default)]
pub struct Batch {
    /// Records complete in this batch (an identifier whose rows continue
    /// past the batch comes in the next one).
    pub records: Vec<ImportRecord>,
    /// `line N: …` for every bad row (all of them: the caller caps).
    pub errors: Vec<String>,
    /// Where the next batch's first record starts (the resume point once
    /// this batch is written).
    pub next: Position,
    /// Data rows read.
    pub rows: u64,
}

/// Parses on up to `threads` threads, keeping the order, while `meanwhile`
/// runs on the calling thread (reading the next batch's lines).
fn parse_lines<T>(lines: &[Line], region: Option<Region>, format: Format, threads: usize, meanwhile: impl FnOnce() -> T) -> (Vec<Result<Row, String>>, T) {
    let one = |l: &Line| match &l.text {
        Ok(t) => row(t, region, format),
        Err(e) => Err(e.clone()),
    };
    if threads <= 1 || lines.len() < 256 {
        let rows = lines.iter().map(one).collect();
        return (rows, meanwhile());
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines.chunks(per).map(|c| s.spawn(move || c.iter().map(one).collect::<Vec<_>>())).collect();
        let t = meanwhile();
        let mut out = Vec::with_capacity(lines.len());
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(_) => out.extend(std::iter::repeat_with(|| Err("internal error: a parser thread failed".to_owned())).take(per)),
            }
        }
        (out, t)
    })
}

/// The number of threads to parse and sign on: every core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Records<BufReader<std::fs::File>> {
    /// Opens a file: checks its header, then starts after it or at
    /// `resume`. With `digest`, every byte read is hashed ([`Records::finish`]).
    pub fn open(path: &Path, resume: Option<Position>, digest: bool, region: Option<Region>) -> Result<Self, String> {
        let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut r = Records::new(BufReader::with_capacity(1 << 20, f), digest, region)?;
        if let Some(p) = resume {
            if p.offset < r.lines.pos.offset {
                return Err("the checkpoint is inside the header".into());
            }
            r.lines.r.seek(SeekFrom::Start(p.offset)).map_err(|e| e.to_string())?;
            r.lines.pos = p;
        }
        Ok(r)
    }
}

impl<R: BufRead> Records<R> {
    /// Reads the header.
    pub fn new(r: R, digest: bool, region: Option<Region>) -> Result<Self, String> {
        let digest = digest.then(|| ring::digest::Context::new(&ring::digest::SHA256));
        let mut lines = Lines { r, pos: Position::default(), buf: Vec::with_capacity(256), digest };
        let format = match lines.next()? {
            Some(Line { text: Ok(h), .. }) if h.trim() == HEADER => Format::Basic,
            Some(Line { text: Ok(h), .. }) if h.trim() == HEADER_FULL => Format::Full,
            Some(Line { no, text, .. }) => {
                let found = text.unwrap_or_else(|e| e);
                return Err(format!("line {no}: expected the header {HEADER:?} (or the full one, {HEADER_FULL:?}), found {:?}", found.trim()));
            }
            None => return Err("the file has no header and no rows".into()),
        };
        Ok(Records { lines, region, format, pending: None, threads: cores(), batch_lines: BATCH_LINES, eof: false, ahead: Vec::new() })
    }

    /// Lines per batch (tests use small batches).
    pub fn with_batch_lines(mut self, n: usize) -> Self {
        self.batch_lines = n.max(1);
        self
    }

    /// Whether every record has been returned (the batch just returned was
    /// the last).
    pub fn at_end(&self) -> bool {
        self.eof && self.ahead.is_empty() && self.pending.is_none()
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next batch; `None` at the end of the file. Its lines are parsed
    /// on every core while the calling thread reads the next batch's.
    pub fn next_batch(&mut self) -> Result<Option<Batch>, String> {
        if self.at_end() {
            return Ok(None);
        }
        let lines = if self.ahead.is_empty() { self.read_lines()? } else { std::mem::take(&mut self.ahead) };
        let (region, format, threads) = (self.region, self.format, self.threads);
        let (rows, ahead) = parse_lines(&lines, region, format, threads, || if self.eof { Ok(Vec::new()) } else { self.read_lines() });
        self.ahead = ahead?;
        let mut b = Batch { rows: lines.len() as u64, ..Batch::default() };
        for (l, r) in lines.iter().zip(rows) {
            match r {
                Err(e) => b.errors.push(format!("line {}: {e}", l.no)),
                Ok(r) => self.group(l, r, &mut b),
            }
        }
        if self.eof
            && self.ahead.is_empty()
            && let Some(p) = self.pending.take()
        {
            b.records.push(p.rec);
        }
        b.next = match (&self.pending, self.ahead.first()) {
            (Some(p), _) => Position { offset: p.rec.offset, line: p.rec.item.line - 1 },
            (None, Some(l)) => Position { offset: l.offset, line: l.no - 1 },
            (None, None) => self.lines.pos,
        };
        Ok(Some(b))
    }

    /// Up to a batch of lines; sets `eof` when the file ends.
    fn read_lines(&mut self) -> Result<Vec<Line>, String> {
        let mut lines = Vec::with_capacity(self.batch_lines);
        while lines.len() < self.batch_lines {
            match self.lines.next()? {
                Some(l) => lines.push(l),
                None => {
                    self.eof = true;
                    break;
                }
            }
        }
        Ok(lines)
    }

    fn group(&mut self, l: &Line, r: Row, b: &mut Batch) {
        if let Some(p) = &mut self.pending
            && p.rec.item.csi == r.csi
        {
            let it = &mut p.rec.item;
            let key = it.csi.uri();
            if it.tnsp != r.tnsp {
                b.errors.push(format!("line {}: {key} has another state or tnsp than on line {}", l.no, it.line));
            } else if p.rec.epoch != r.epoch || p.rec.opted_out != r.opted_out {
                b.errors.push(format!("line {}: {key} has another epoch or opt-out than on line {}", l.no, it.line));
            } else if let Some(e) = r.entry {
                if it.entries.is_empty() && it.tnsp.is_some() {
                    b.errors.push(format!("line {}: {key} has a row without an entry on line {}; give one row per entry", l.no, it.line));
                } else if it.entries.iter().any(|x| x.provider == e.provider) {
                    b.errors.push(format!("line {}: {key} has a second entry from {}", l.no, e.provider));
                } else {
                    it.entries.push(e);
                }
            } else {
                b.errors.push(format!("line {}: {key} has a row without an entry after its rows on line {}", l.no, it.line));
            }
            return;
        }
        let next = Pending {
            rec: ImportRecord {
                item: ImportItem { csi: r.csi, tnsp: r.tnsp, entries: r.entry.into_iter().collect(), line: l.no },
                epoch: r.epoch,
                opted_out: r.opted_out,
                offset: l.offset,
            },
        };
        if let Some(done) = self.pending.replace(next) {
            b.records.push(done.rec);
        }
    }

    /// The SHA-256 (hex) and size of every byte read, when opened with
    /// `digest` from the start.
    pub fn finish(self) -> (Option<String>, u64) {
        let hex = self.lines.digest.map(|d| d.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect());
        (hex, self.lines.pos.offset)
    }
}

fn fingerprint(csi: &Csi) -> u64 {
    // Fixed keys: the same identifier gives the same fingerprint in every
    // run of the check (it never leaves the process).
    let mut h = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher();
    h.write(csi.uri().as_bytes());
    h.finish()
}

/// Finds identifiers that appear more than once, in bounded memory:
/// fingerprints in memory up to [`FINGERPRINTS_IN_MEMORY`], then sorted
/// runs in temporary files, merged at the end. A repeated fingerprint is a
/// suspect (a real repeat or, rarely, two identifiers with one
/// fingerprint); [`repeats`] settles them with a second read.
#[derive(Debug)]
pub struct Seen {
    mem: Vec<u64>,
    runs: Vec<std::fs::File>,
    limit: usize,
}

impl Default for Seen {
    fn default() -> Self {
        Seen::new(FINGERPRINTS_IN_MEMORY)
    }
}

impl Seen {
    /// At most `limit` fingerprints in memory.
    pub fn new(limit: usize) -> Seen {
        Seen { mem: Vec::new(), runs: Vec::new(), limit: limit.max(1) }
    }

    /// Notes an identifier.
    pub fn add(&mut self, csi: &Csi) -> Result<(), String> {
        self.mem.push(fingerprint(csi));
        if self.mem.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), String> {
        self.mem.sort_unstable();
        let f = tempfile::tempfile().map_err(|e| format!("temporary file for the duplicate check: {e}"))?;
        let mut w = std::io::BufWriter::new(f);
        for v in &self.mem {
            w.write_all(&v.to_le_bytes()).map_err(|e| format!("temporary file: {e}"))?;
        }
        let mut f = w.into_inner().map_err(|e| format!("temporary file: {e}"))?;
        f.seek(SeekFrom::Start(0)).map_err(|e| format!("temporary file: {e}"))?;
        self.runs.push(f);
        self.mem.clear();
        Ok(())
    }

    /// The fingerprints seen more than once (at most `cap` of them).
    pub fn suspects(mut self, cap: usize) -> Result<HashSet<u64>, String> {
        self.mem.sort_unstable();
        let mut out = HashSet::new();
        let mut sources: Vec<Box<dyn Iterator<Item = Result<u64, String>>>> = vec![Box::new(self.mem.into_iter().map(Ok))];
        for f in self.runs {
            let mut r = BufReader::new(f);
            sources.push(Box::new(std::iter::from_fn(move || {
                let mut b = [0u8; 8];
                match r.read_exact(&mut b) {
                    Ok(()) => Some(Ok(u64::from_le_bytes(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
                    Err(e) => Some(Err(format!("temporary file: {e}"))),
                }
            })));
        }
        // A k-way merge: the smallest head each step.
        let mut heap = std::collections::BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(v) = s.next() {
                heap.push(std::cmp::Reverse((v?, i)));
            }
        }
        let mut last = None;
        while let Some(std::cmp::Reverse((v, i))) = heap.pop() {
            if last == Some(v) {
                out.insert(v);
                if out.len() >= cap {
                    break;
                }
            }
            last = Some(v);
            if let Some(n) = sources.get_mut(i).and_then(Iterator::next) {
                heap.push(std::cmp::Reverse((n?, i)));
            }
        }
        Ok(out)
    }
}

/// The real repeats among `suspects` (a second read of the file):
/// `line N: X already appeared on line M`.
pub fn repeats<R: BufRead>(mut recs: Records<R>, suspects: &HashSet<u64>, max: usize) -> Result<Vec<String>, String> {
    let mut first: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    while let Some(b) = recs.next_batch()? {
        for r in b.records {
            if !suspects.contains(&fingerprint(&r.item.csi)) {
                continue;
            }
            match first.get(r.item.csi.uri()) {
                Some(l) => {
                    out.push(format!("line {}: {} already appeared on line {l} (the rows of one identifier must be adjacent)", r.item.line, r.item.csi.uri()));
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                None => {
                    first.insert(r.item.csi.uri().to_owned(), r.item.line);
                }
            }
        }
    }
    Ok(out)
}

/// How far an import got: stored with each written batch, so a rerun of
/// the same file resumes after the last written batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// SHA-256 of the whole file (hex).
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where the next batch starts.
    pub next: Position,
    /// Identifiers written so far.
    pub done: u64,
    /// Identifiers in the file.
    pub total: u64,
}

impl Progress {
    /// The stored form (`key value` lines).
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "signpost-import 1\nsha256 {}\nsize {}\noffset {}\nline {}\ndone {}\ntotal {}\n",
            self.digest, self.size, self.next.offset, self.next.line, self.done, self.total
        )
        .into_bytes()
    }

    /// Reads the stored form back.
    pub fn decode(b: &[u8]) -> Result<Progress, String> {
        let t = std::str::from_utf8(b).map_err(|_| "the import checkpoint is not UTF-8".to_owned())?;
        let mut lines = t.lines();
        if lines.next() != Some("signpost-import 1") {
            return Err("unknown import checkpoint version".into());
        }
        let mut kv = HashMap::new();
        for l in lines {
            let (k, v) = l.split_once(' ').ok_or_else(|| format!("import checkpoint line {l:?}"))?;
            kv.insert(k, v);
        }
        let num = |k: &str| -> Result<u64, String> { kv.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| format!("import checkpoint: no {k}")) };
        Ok(Progress {
            digest: kv.get("sha256").map(|s| (*s).to_owned()).ok_or("import checkpoint: no sha256")?,
            size: num("size")?,
            next: Position { offset: num("offset")?, line: usize::try_from(num("line")?).map_err(|e| e.to_string())? },
            done: num("done")?,
            total: num("total")?,
        })
    }
}

/// Parses a whole file held in memory (small files, tests, benches).
/// Returns the items, or every error found (up to `max_errors`), each
/// starting with `line N:`.
pub fn parse(text: &str, region: Option<Region>, max_errors: usize) -> Result<Vec<ImportItem>, Vec<String>> {
    let mut recs = Records::new(text.as_bytes(), false, region).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    loop {
        match recs.next_batch() {
            Err(e) => return Err(vec![e]),
            Ok(None) => break,
            Ok(Some(b)) => {
                errors.extend(b.errors);
                for r in b.records {
                    if let Some(l) = seen.insert(r.item.csi.uri().to_owned(), r.item.line) {
                        errors.push(format!("line {}: {} already appeared on line {l} (the rows of one identifier must be adjacent)", r.item.line, r.item.csi.uri()));
                    }
                    items.push(r.item);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(items)
    } else {
        errors.sort_by_key(|e| e.strip_prefix("line ").and_then(|r| r.split(':').next()).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0));
        errors.truncate(max_errors);
        Err(errors)
    }
}

/// Quotes a CSV field when it needs it.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"']) || s.starts_with(' ') || s.ends_with(' ') {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// The full-format rows of one stored record (what `export` writes):
/// one row per entry, or one row without an entry.
pub fn export_rows(r: &crate::model::NumberRecord, out: &mut String) -> Result<(), String> {
    use crate::model::State;
    let csi = r.csi.uri();
    let head = |out: &mut String| {
        csv_field(out, csi);
        match &r.state {
            State::Assigned { tnsp } => {
                out.push_str(",assigned,");
                out.push_str(tnsp.as_str());
            }
            State::Released => out.push_str(",released,"),
        }
    };
    let tail = |out: &mut String| {
        out.push(',');
        out.push_str(&r.epoch.0.to_string());
        out.push(',');
        out.push_str(if r.opted_out() { "true" } else { "false" });
    };
    if r.entries.is_empty() {
        head(out);
        out.push_str(",,,,,,,");
        tail(out);
        out.push_str(",,\n");
        return Ok(());
    }
    for e in &r.entries {
        let e = &e.record;
        let dn = e.display_name.as_ref();
        if dn.is_some_and(|d| d.text.contains(['\n', '\r'])) {
            return Err(format!("{csi}: the display name of {}'s entry has a line break, which the CSV format cannot carry", e.provider));
        }
        head(out);
        out.push(',');
        out.push_str(e.provider.as_str());
        out.push(',');
        out.push_str(&e.uris.iter().map(Uri::as_str).collect::<Vec<_>>().join(" "));
        out.push(',');
        out.push_str(&e.priority.to_string());
        out.push(',');
        out.push_str(&e.tags.iter().map(Tag::as_str).collect::<Vec<_>>().join(" "));
        out.push(',');
        out.push_str(e.assurance.as_str());
        out.push(',');
        out.push_str(if e.bound_to_tnsp { "true" } else { "false" });
        out.push(',');
        if let Some(d) = dn {
            csv_field(out, &d.text);
        }
        tail(out);
        out.push(',');
        if let Visibility::Only(v) = &e.visibility {
            out.push_str(&v.iter().map(Name::as_str).collect::<Vec<_>>().join(" "));
        }
        out.push(',');
        if let Some(d) = dn {
            out.push_str(&d.lang);
        }
        out.push('\n');
    }
    Ok(())
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
        // Rows of one identifier must be adjacent.
        let apart = format!("{HEADER}\n+4915112345678,assigned,t.example,,,,,,,\n+4915112345679,assigned,t.example,,,,,,,\n+4915112345678,assigned,t.example,,,,,,,\n");
        let e = parse(&apart, None, 10).unwrap_err();
        assert!(e.len() == 1 && e[0].starts_with("line 4:") && e[0].contains("line 2"), "{e:?}");
    }

    #[test]
    fn batches_never_split_an_identifier_and_positions_resume() {
        let mut text = format!("{HEADER}\n");
        for i in 0..50 {
            for p in ["a.example", "b.example", "c.example"] {
                text.push_str(&format!("+49151{i:08},assigned,t.example,{p},mimi://{p}/u/{i},,,,,\n"));
            }
        }
        let mut recs = Records::new(text.as_bytes(), false, None).unwrap().with_batch_lines(7);
        let mut all = Vec::new();
        let mut positions = Vec::new();
        while let Some(b) = recs.next_batch().unwrap() {
            assert!(b.errors.is_empty(), "{:?}", b.errors);
            all.extend(b.records);
            positions.push((b.next, all.len()));
        }
        assert_eq!(all.len(), 50);
        assert!(all.iter().all(|r| r.item.entries.len() == 3));
        // Resuming at any batch's position reads exactly the records after it.
        for (pos, done) in positions {
            let tail = &text.as_bytes()[usize::try_from(pos.offset).unwrap()..];
            let header = format!("{HEADER}\n");
            let mut r = Records::new(header.as_bytes(), false, None).unwrap();
            r.lines = Lines { r: tail, pos, buf: Vec::new(), digest: None };
            let mut got = Vec::new();
            while let Some(b) = r.next_batch().unwrap() {
                got.extend(b.records);
            }
            assert_eq!(got.len(), 50 - done);
            if let (Some(g), Some(a)) = (got.first(), all.get(done)) {
                assert_eq!((g.item.line, &g.item.csi), (a.item.line, &a.item.csi));
            }
        }
    }

    #[test]
    fn repeated_identifiers_are_found_across_spilled_runs() {
        let mut seen = Seen::new(10);
        let csi = |i: u64| Csi::from_wire(&format!("tel:+49151{i:08}")).unwrap();
        for i in 0..95 {
            seen.add(&csi(i)).unwrap();
        }
        seen.add(&csi(3)).unwrap();
        seen.add(&csi(77)).unwrap();
        let s = seen.suspects(100).unwrap();
        assert_eq!(s, [fingerprint(&csi(3)), fingerprint(&csi(77))].into_iter().collect());
    }

    #[test]
    fn progress_round_trips() {
        let p = Progress { digest: "ab".repeat(32), size: 9, next: Position { offset: 5, line: 2 }, done: 1, total: 3 };
        assert_eq!(Progress::decode(&p.encode()).unwrap(), p);
        assert!(Progress::decode(b"other").is_err());
    }
}
