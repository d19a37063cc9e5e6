//! A whole CSV import run over an [`Authority`]: the check pass, then the
//! batched, checkpointed write pass ([`crate::import`] has the format and
//! the streaming reader). The same run serves both ways of importing:
//!
//! - offline, `signpost-authority import --config …`, on a store no server
//!   holds (the CLI compacts a redb file afterwards);
//! - online, inside a running server (`POST /v1/import`, an admin-role
//!   client certificate): the server keeps answering from the same store
//!   while the batches commit, and every batch's feed events reach the
//!   subscribed resolvers as it commits.
//!
//! Either way a run that stops part-way (a crash, `kill -9`, a conflict)
//! leaves the checkpoint of its last written batch in the store, and the
//! next run of the same file, offline or online, resumes after it.

use std::path::Path;
use std::sync::Arc;

use signpost_schemas::Region;
use signpost_trust::Peer;

use crate::core::Authority;
use crate::import::{Progress, Records, Seen, cores, repeats};
use crate::store::{Checkpoint, Store};

/// Bad rows reported per run, at most.
pub const MAX_ERRORS: usize = 50;

/// What a run reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Pass 1 has checked this many identifiers so far.
    Checking {
        /// Identifiers checked.
        checked: u64,
    },
    /// Pass 1 is done; pass 2 starts (after `done` identifiers written by
    /// an earlier, interrupted run of the same file).
    Writing {
        /// Identifiers in the file.
        total: u64,
        /// Already written.
        done: u64,
        /// The line pass 2 starts at (1-based), when resuming.
        resume_line: Option<usize>,
    },
    /// A batch is committed.
    Written {
        /// Identifiers written so far (including earlier runs').
        done: u64,
        /// Identifiers in the file.
        total: u64,
        /// The feed head after the batch.
        seq: u64,
    },
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Identifiers in the file.
    pub total: u64,
    /// Written by earlier, interrupted runs.
    pub before: u64,
    /// The feed head after the last batch.
    pub seq: u64,
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failed {
    /// The file cannot be opened or read as an import file, or names
    /// nothing to import (exit: data error).
    #[error("{0}")]
    Data(String),
    /// Pass 1 found bad rows; nothing was written. `errors` are `line N: …`,
    /// at most [`MAX_ERRORS`]; `capped` when there may be more.
    #[error("{} bad row(s){}; nothing was imported", errors.len(), if *capped { " (the first ones; there may be more)" } else { "" })]
    BadRows {
        /// The rows' errors.
        errors: Vec<String>,
        /// Whether the list stopped at the cap.
        capped: bool,
    },
    /// Pass 2 stopped after `done` identifiers (data error: a conflict
    /// with a concurrent write, a row refused). Run it again to resume.
    #[error("{message}; {done} identifiers are written; run the same import again to resume")]
    Stopped {
        /// Why.
        message: String,
        /// Identifiers written (a rerun resumes after them).
        done: u64,
    },
    /// The store failed (exit: unavailable).
    #[error("{0}")]
    Store(String),
    /// A bug or a failed thread (exit: internal).
    #[error("{0}")]
    Internal(String),
}

impl Failed {
    /// The exit code of the CLI for it (`signpost_net::exit`).
    pub fn exit_code(&self) -> u8 {
        use signpost_net::exit;
        match self {
            Failed::Data(_) | Failed::BadRows { .. } | Failed::Stopped { .. } => exit::DATA,
            Failed::Store(_) => exit::UNAVAILABLE,
            Failed::Internal(_) => exit::INTERNAL,
        }
    }
}

/// The checkpoint an interrupted run left, if any.
pub async fn interrupted<S: Store>(core: &Authority<S>) -> Result<Option<Progress>, Failed> {
    match core.store().checkpoint().await {
        Ok(Some(b)) => Progress::decode(&b).map(Some).map_err(|e| Failed::Internal(format!("the store's import checkpoint: {e}"))),
        Ok(None) => Ok(None),
        Err(e) => Err(Failed::Store(e.to_string())),
    }
}

/// Runs a whole import of the CSV file `data`: pass 1 checks every row
/// (syntax, grouping, scope, new to the store, no identifier twice) and
/// writes nothing if one is bad; pass 2 builds batch k+1 on every core
/// while batch k commits with its checkpoint. With `by` (an online
/// import), every identifier must also be within that admin
/// certificate's scope, as for provisioning. `step` hears of the progress.
pub async fn run<S: Store + 'static>(core: &Arc<Authority<S>>, data: &Path, region: Option<Region>, by: Option<&Peer>, step: &(dyn Fn(Step) + Send + Sync)) -> Result<Outcome, Failed> {
    let resume = interrupted(core).await?;
    let written_before = resume.as_ref().map_or(0, |r| r.next.offset);
    let (digest, size, total) = check(core, data, region, written_before, by, step).await?;
    if let Some(r) = &resume
        && (r.digest != digest || r.size != size)
    {
        return Err(Failed::Data(format!(
            "the store records an unfinished import of another file (sha256 {}, {} of {} identifiers written); run the import again with that file to finish it",
            r.digest, r.done, r.total
        )));
    }
    let before = resume.as_ref().map_or(0, |r| r.done);
    let mut done = before;
    step(Step::Writing { total, done, resume_line: resume.as_ref().map(|r| r.next.line + 1) });
    let mut recs = Records::open(data, resume.as_ref().map(|r| r.next), false, region).map_err(Failed::Data)?;
    let mut seq = core.store().head().await.unwrap_or(0);
    let stopped = |message: String, done: u64| Failed::Stopped { message, done };
    // Batch k+1 is read and built while batch k is written.
    let mut writing: Option<(tokio::task::JoinHandle<Result<u64, crate::core::ProvisionError>>, u64)> = None;
    loop {
        let c2 = core.clone();
        let (back, r) = tokio::task::spawn_blocking(move || {
            let r = match recs.next_batch() {
                Ok(Some(b)) => {
                    let n = b.records.len() as u64;
                    let next = b.next;
                    let last = recs.at_end();
                    Ok(Some((c2.build_import(b.records, cores()).map_err(|e| e.to_string()), n, next, last)))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            (recs, r)
        })
        .await
        .map_err(|e| Failed::Internal(e.to_string()))?;
        recs = back;
        if let Some((h, n)) = writing.take() {
            seq = h.await.map_err(|e| Failed::Internal(e.to_string()))?.map_err(|e| stopped(e.to_string(), done))?;
            done += n;
            step(Step::Written { done, total, seq });
        }
        let Some((built, n, next, last)) = r.map_err(|e| stopped(e, done))? else { break };
        let batch = built.map_err(|e| stopped(e, done))?;
        // The last batch clears the checkpoint: the import is complete.
        let cp = if last { Checkpoint::Clear } else { Checkpoint::Set(Progress { digest: digest.clone(), size, next, done: done + n, total }.encode()) };
        let c3 = core.clone();
        let online = by.is_some();
        let h = tokio::spawn(async move { c3.import_batch(batch, cp, online).await });
        if last {
            seq = h.await.map_err(|e| Failed::Internal(e.to_string()))?.map_err(|e| stopped(e.to_string(), done))?;
            done += n;
            step(Step::Written { done, total, seq });
            break;
        }
        writing = Some((h, n));
    }
    Ok(Outcome { total, before, seq })
}

/// Pass 1. Returns the file's digest, size and identifier count.
async fn check<S: Store>(core: &Arc<Authority<S>>, data: &Path, region: Option<Region>, written_before: u64, by: Option<&Peer>, step: &(dyn Fn(Step) + Send + Sync)) -> Result<(String, u64, u64), Failed> {
    let mut recs = Records::open(data, None, true, region).map_err(Failed::Data)?;
    let mut errors: Vec<String> = Vec::new();
    let mut seen = Seen::default();
    let mut total = 0u64;
    let capped = |mut errors: Vec<String>| {
        errors.truncate(MAX_ERRORS);
        Failed::BadRows { errors, capped: true }
    };
    let read = |mut recs: Records<_>| {
        tokio::task::spawn_blocking(move || {
            let b = recs.next_batch();
            (recs, b)
        })
    };
    // Batch k+1 is read and parsed while batch k is checked against the store.
    let mut reading = read(recs);
    loop {
        let (back, b) = reading.await.map_err(|e| Failed::Internal(e.to_string()))?;
        let Some(b) = b.map_err(Failed::Data)? else {
            recs = back;
            break;
        };
        reading = read(back);
        errors.extend(b.errors);
        for r in &b.records {
            seen.add(&r.item.csi).map_err(Failed::Internal)?;
            if let Some(p) = by
                && !p.covers(&r.item.csi)
            {
                errors.push(format!("line {}: {} is outside the scope of {}'s certificate", r.item.line, r.item.csi.uri(), p.id()));
            }
        }
        total += b.records.len() as u64;
        if errors.len() < MAX_ERRORS {
            let more = core.import_problems(&b.records, written_before, MAX_ERRORS - errors.len()).await.map_err(|e| Failed::Store(e.to_string()))?;
            errors.extend(more);
        }
        if errors.len() >= MAX_ERRORS {
            return Err(capped(errors));
        }
        step(Step::Checking { checked: total });
    }
    let (digest, size) = recs.finish();
    if errors.is_empty() {
        let suspects = seen.suspects(1 << 20).map_err(Failed::Internal)?;
        if !suspects.is_empty() {
            let again = Records::open(data, None, false, region).map_err(Failed::Data)?;
            errors = tokio::task::spawn_blocking(move || repeats(again, &suspects, MAX_ERRORS)).await.map_err(|e| Failed::Internal(e.to_string()))?.map_err(Failed::Data)?;
        }
    }
    if !errors.is_empty() {
        let capped = errors.len() >= MAX_ERRORS;
        return Err(Failed::BadRows { errors, capped });
    }
    Ok((digest.unwrap_or_default(), size, total))
}

/// The state of an online import, as `GET /v1/import` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Pass 1.
    Checking,
    /// Pass 2.
    Writing,
    /// Finished: every identifier written.
    Done,
    /// Stopped; see `error` (and `bad` for bad rows).
    Failed,
}

impl JobState {
    fn as_str(&self) -> &'static str {
        match self {
            JobState::Checking => "checking",
            JobState::Writing => "writing",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// One online import: what it was asked and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// Numbers the runs of this server process from 1.
    pub id: u64,
    /// The file (absolute, as the server read it).
    pub file: String,
    /// The admin certificate's id that asked for it.
    pub by: String,
    /// Where it is.
    pub state: JobState,
    /// Identifiers checked by pass 1.
    pub checked: u64,
    /// Identifiers in the file (known after pass 1).
    pub total: u64,
    /// Identifiers written (including earlier runs').
    pub written: u64,
    /// Written by earlier, interrupted runs.
    pub before: u64,
    /// The feed head after the last committed batch.
    pub seq: u64,
    /// Milliseconds since it started (until it ended).
    pub elapsed_ms: u64,
    /// Why it failed, and the exit code the CLI passes on.
    pub error: Option<(u8, String)>,
    /// Bad rows (`line N: …`), when pass 1 refused the file.
    pub bad: Vec<String>,
}

impl JobStatus {
    /// The text form (`key value` lines; `bad` repeated).
    pub fn encode(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "import {}\nstate {}\nfile {}\nby {}\nchecked {}\ntotal {}\nwritten {}\nbefore {}\nseq {}\nelapsed_ms {}\n",
            self.id,
            self.state.as_str(),
            self.file,
            self.by,
            self.checked,
            self.total,
            self.written,
            self.before,
            self.seq,
            self.elapsed_ms
        );
        if let Some((code, e)) = &self.error {
            let _ = writeln!(s, "exit {code}\nerror {}", e.replace(['\n', '\r'], " "));
        }
        for b in &self.bad {
            let _ = writeln!(s, "bad {}", b.replace(['\n', '\r'], " "));
        }
        s
    }

    /// An import that has not got anywhere yet.
    pub fn new(id: u64, file: String, by: String, state: JobState) -> JobStatus {
        JobStatus { id, file, by, state, checked: 0, total: 0, written: 0, before: 0, seq: 0, elapsed_ms: 0, error: None, bad: vec![] }
    }

    /// Reads the text form back (the CLI's side).
    pub fn decode(text: &str) -> Result<JobStatus, String> {
        let mut st = JobStatus::new(0, String::new(), String::new(), JobState::Failed);
        let mut state = None;
        let mut exit = None;
        for l in text.lines() {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            let num = || v.parse::<u64>().map_err(|_| format!("import status: {k} {v:?} is not a number"));
            match k {
                "import" => st.id = num()?,
                "state" => {
                    state = Some(match v {
                        "checking" => JobState::Checking,
                        "writing" => JobState::Writing,
                        "done" => JobState::Done,
                        "failed" => JobState::Failed,
                        _ => return Err(format!("import status: unknown state {v:?}")),
                    })
                }
                "file" => st.file = v.to_owned(),
                "by" => st.by = v.to_owned(),
                "checked" => st.checked = num()?,
                "total" => st.total = num()?,
                "written" => st.written = num()?,
                "before" => st.before = num()?,
                "seq" => st.seq = num()?,
                "elapsed_ms" => st.elapsed_ms = num()?,
                "exit" => exit = Some(u8::try_from(num()?).map_err(|_| format!("import status: exit {v}"))?),
                "error" => st.error = Some((0, v.to_owned())),
                "bad" => st.bad.push(v.to_owned()),
                // Lines a newer server adds.
                _ => {}
            }
        }
        st.state = state.ok_or("import status: no state line")?;
        if let Some((c, _)) = &mut st.error {
            *c = exit.unwrap_or(signpost_net::exit::DATA);
        }
        Ok(st)
    }
}

/// The online imports of one server: at most one runs at a time; the last
/// one's status stays readable after it ends.
#[derive(Debug, Default)]
pub struct Jobs {
    current: std::sync::Mutex<Option<JobStatus>>,
}

impl Jobs {
    fn guard(&self) -> std::sync::MutexGuard<'_, Option<JobStatus>> {
        match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The running or last import.
    pub fn status(&self) -> Option<JobStatus> {
        self.guard().clone()
    }

    /// Starts an import of `file` (absolute) on `core` in a task, unless
    /// one is running (then `Err` with its status). The identifiers it
    /// writes and how it ends are counted in `metrics`
    /// (`signpost_import_identifiers_total`, `signpost_imports_total`).
    pub fn start<S: Store + 'static>(
        self: &Arc<Self>,
        core: Arc<Authority<S>>,
        file: std::path::PathBuf,
        region: Option<Region>,
        by: Peer,
        metrics: Arc<signpost_net::Metrics>,
    ) -> Result<JobStatus, Box<JobStatus>> {
        let status = {
            let mut g = self.guard();
            if let Some(s) = g.as_ref()
                && matches!(s.state, JobState::Checking | JobState::Writing)
            {
                return Err(Box::new(s.clone()));
            }
            let id = g.as_ref().map_or(1, |s| s.id + 1);
            let s = JobStatus::new(id, file.display().to_string(), by.id().to_string(), JobState::Checking);
            *g = Some(s.clone());
            s
        };
        let jobs = self.clone();
        let t0 = std::time::Instant::now();
        let id = status.id;
        tracing::info!(import = id, file = %status.file, by = %status.by, "online import started");
        let written = metrics.counter("signpost_import_identifiers_total");
        tokio::spawn(async move {
            let elapsed = || u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
            let update = |f: &dyn Fn(&mut JobStatus)| {
                if let Some(s) = jobs.guard().as_mut().filter(|s| s.id == id) {
                    f(s);
                    s.elapsed_ms = elapsed();
                }
            };
            let last = std::sync::atomic::AtomicU64::new(0);
            let step = |st: Step| match st {
                Step::Checking { checked } => update(&|s| s.checked = checked),
                Step::Writing { total, done, .. } => {
                    last.store(done, std::sync::atomic::Ordering::Relaxed);
                    update(&|s| {
                        s.state = JobState::Writing;
                        s.checked = total;
                        s.total = total;
                        s.written = done;
                        s.before = done;
                    });
                }
                Step::Written { done, total, seq } => {
                    let before = last.swap(done, std::sync::atomic::Ordering::Relaxed);
                    written.fetch_add(done.saturating_sub(before), std::sync::atomic::Ordering::Relaxed);
                    update(&|s| {
                        s.written = done;
                        s.total = total;
                        s.seq = seq;
                    });
                }
            };
            let r = run(&core, &file, region, Some(&by), &step).await;
            let outcome = match &r {
                Ok(_) => "done",
                Err(Failed::BadRows { .. }) => "bad_rows",
                Err(_) => "stopped",
            };
            metrics.counter(&format!("signpost_imports_total{{outcome=\"{outcome}\"}}")).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match &r {
                Ok(o) => tracing::info!(import = id, identifiers = o.total, written = o.total - o.before, seq = o.seq, ms = elapsed(), "online import done"),
                // The reasons can name identifiers: the count goes to info, the text to debug.
                Err(Failed::BadRows { errors, .. }) => {
                    tracing::warn!(import = id, bad_rows = errors.len(), "online import refused: bad rows; nothing was written");
                    tracing::debug!(import = id, "bad rows: {errors:?}");
                }
                Err(e) => {
                    tracing::warn!(import = id, exit = e.exit_code(), "online import stopped");
                    tracing::debug!(import = id, "online import stopped: {e}");
                }
            }
            update(&|s| match &r {
                Ok(o) => {
                    s.state = JobState::Done;
                    s.total = o.total;
                    s.written = o.total;
                    s.before = o.before;
                    s.seq = o.seq;
                }
                Err(e) => {
                    s.state = JobState::Failed;
                    s.error = Some((e.exit_code(), e.to_string()));
                    if let Failed::BadRows { errors, .. } = e {
                        s.bad = errors.clone();
                    }
                }
            });
        });
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        let s = JobStatus {
            id: 3,
            file: "/data/numbers.csv".into(),
            by: "admin.de.example".into(),
            state: JobState::Failed,
            checked: 10,
            total: 0,
            written: 0,
            before: 0,
            seq: 7,
            elapsed_ms: 12,
            error: Some((65, "2 bad row(s); nothing\nwas imported".into())),
            bad: vec!["line 2: csi \"x\": bad".into(), "line 9: state \"y\"".into()],
        };
        let back = JobStatus::decode(&s.encode()).unwrap();
        assert_eq!(back.error, Some((65, "2 bad row(s); nothing was imported".into())));
        assert_eq!(JobStatus { error: s.error.clone(), ..back.clone() }, s);
        assert!(JobStatus::decode("import 1\n").is_err());
        assert!(JobStatus::decode("state odd\n").is_err());
    }
}
