//! One authority's change feed as the state machine sees it: where the
//! resolver's knowledge of the authority's changes is complete, the recent
//! changes it has applied, and the subscription's connection state.
//!
//! The invariant this serves (see the crate docs): every change committed at
//! an authority after the moment an answer was read reaches every resolver
//! holding that answer, as a change or as a resync. An answer read at feed
//! position `p` is *covered* when the resolver will apply, or has applied and
//! can still see, every change after `p`:
//!
//! - `known_through` is the position through which every change has been
//!   applied (or, before the first frame, the position the subscription
//!   starts from);
//! - `recent` holds the changes applied after `floor`, so an answer read at
//!   `p >= floor` can be checked against the changes in `(p, known_through]`
//!   it has not seen (then it is *superseded* and asked again);
//! - an answer read before `floor` cannot be checked: it is asked again too.

use std::collections::VecDeque;

use signpost_schemas::sp::Subject;
use signpost_schemas::{Csi, Endpoint, Timestamp};

/// Changes remembered for the coverage check.
pub const RECENT: usize = 65_536;

/// The subscription's connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Never subscribed.
    Idle,
    /// A subscription was asked for and has not connected yet.
    Connecting {
        /// Its stream id.
        stream: u64,
    },
    /// Frames flow.
    Connected {
        /// Its stream id.
        stream: u64,
    },
    /// Waiting to subscribe again.
    Backoff {
        /// When.
        until: Timestamp,
    },
}

/// What an answer's feed position means against this feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Every later change will be (or was) applied: cache it.
    Covered,
    /// A change after the read was applied already, or the read is older
    /// than what can be checked: ask again.
    Superseded,
}

/// One authority's feed.
#[derive(Debug)]
pub struct Feed {
    /// Where the feed can be reached (the authority's endpoints).
    pub endpoints: Vec<Endpoint>,
    /// Connection state.
    pub link: Link,
    /// Position through which changes are applied (`None`: no subscription yet).
    pub known_through: Option<u64>,
    /// Knowledge of applied changes is complete after this position.
    pub floor: u64,
    /// Applied changes after `floor`, oldest first.
    pub recent: VecDeque<(u64, Subject)>,
    /// Next backoff, ms.
    pub backoff_ms: u64,
    /// Which endpoint the next subscription uses.
    pub next_endpoint: usize,
    /// Whether a frame has been applied since the subscription started.
    pub applied_any: bool,
}

impl Feed {
    /// A feed not subscribed yet.
    pub fn new(endpoints: Vec<Endpoint>, backoff_ms: u64) -> Feed {
        Feed { endpoints, link: Link::Idle, known_through: None, floor: 0, recent: VecDeque::new(), backoff_ms, next_endpoint: 0, applied_any: false }
    }

    /// Whether an answer of `csi` read at `read_at` is covered.
    pub fn coverage(&self, csi: &Csi, read_at: u64) -> Coverage {
        let Some(known) = self.known_through else { return Coverage::Covered };
        if read_at >= known {
            return Coverage::Covered;
        }
        if read_at < self.floor {
            return Coverage::Superseded;
        }
        let touched = self.recent.iter().rev().take_while(|(s, _)| *s > read_at).any(|(_, subj)| match subj {
            Subject::Csi(c) => c == csi,
            Subject::Cover(cov) => cov.covers(csi),
        });
        if touched { Coverage::Superseded } else { Coverage::Covered }
    }

    /// Records an applied change.
    pub fn applied(&mut self, seq: u64, subject: Subject) {
        if self.recent.len() >= RECENT
            && let Some((s, _)) = self.recent.pop_front()
        {
            self.floor = s;
        }
        self.recent.push_back((seq, subject));
        self.known_through = Some(seq);
        self.applied_any = true;
    }

    /// Starts knowledge over at `seq` (a resync, or a fresh subscription).
    pub fn restart_at(&mut self, seq: u64) {
        self.recent.clear();
        self.floor = seq;
        self.known_through = Some(seq);
    }
}
