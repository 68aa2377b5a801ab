//! The live families, one source for both outputs: the process figures,
//! read from /proc when asked, and the OTLP push's counters as they are
//! now. The listener renders them after the refresh part of every body; the
//! push sends them with every batch.

pub use super::families::push_families;
use super::families::{
    PROCESS_CPU, PROCESS_MAX_FDS, PROCESS_OPEN_FDS, PROCESS_RSS, PROCESS_START, PROCESS_VSZ,
};
use super::family::Family;
use super::process::ProcessStats;
use crate::clock::unix_now;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live families now: the push's counters (when the push is on) and a
/// fresh reading of the process figures.
pub(crate) fn read(push: Option<PushCounts>) -> Vec<Family<'static>> {
    let mut out = push.as_ref().map(push_families).unwrap_or_default();
    out.extend(process_families(&ProcessStats::read()));
    out
}

pub fn process_families(p: &ProcessStats) -> Vec<Family<'static>> {
    let mut out = vec![
        PROCESS_CPU.one(p.cpu_seconds),
        PROCESS_RSS.one(p.resident_bytes),
        PROCESS_VSZ.one(p.virtual_bytes),
        PROCESS_START.one(p.start_time_seconds),
        PROCESS_OPEN_FDS.one(p.open_fds),
    ];
    if let Some(max) = p.max_fds {
        out.push(PROCESS_MAX_FDS.one(max));
    }
    out
}

/// What the OTLP push has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PushCounts {
    pub success: u64,
    pub partial: u64,
    pub failure: u64,
    pub last_success: Option<f64>,
    pub backlog: BacklogCounts,
}

/// The batches waiting for the collector, and those given up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BacklogCounts {
    pub batches: u64,
    /// Stored (compressed) bytes.
    pub bytes: u64,
    /// Collection time of the oldest waiting batch.
    pub oldest: Option<f64>,
    /// Dropped batches, indexed by `DropReason as usize`.
    pub dropped: [u64; 4],
    /// Batches that could not be written to OTEL_SPOOL_DIR; `None`
    /// without a spool.
    pub spool_write_failures: Option<u64>,
}

/// Why a batch left the backlog undelivered: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Older than OTEL_BACKLOG_MAX_AGE.
    Age = 0,
    /// Past OTEL_BACKLOG_MAX_BYTES.
    Size = 1,
    /// Refused by the collector for good (a non-retryable answer).
    Rejected = 2,
    /// A spool file that did not check out.
    Corrupt = 3,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::Age,
        DropReason::Size,
        DropReason::Rejected,
        DropReason::Corrupt,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::Age => "age",
            DropReason::Size => "size",
            DropReason::Rejected => "rejected",
            DropReason::Corrupt => "corrupt",
        }
    }
}

/// The push's counters. Atomics: written by the push's sender task, read
/// by every scrape, no lock shared with either. Here, not in `otlp`, so
/// that the listener reads them without knowing the push.
/// The backlog's figures are stored by the push after each change of the
/// backlog (which it keeps under its own lock), not read from it: a scrape
/// never waits for the push.
#[derive(Debug, Default)]
pub(crate) struct PushStats {
    success: AtomicU64,
    partial: AtomicU64,
    failure: AtomicU64,
    /// f64 bits of the unix time; 0 (0.0) before the first accepted push.
    last_success: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    /// f64 bits; 0 when the backlog is empty.
    oldest: AtomicU64,
    dropped: [AtomicU64; 4],
    /// Whether OTEL_SPOOL_DIR is set (the write failures are shown then).
    spool: bool,
    spool_write_failures: AtomicU64,
}

impl PushStats {
    pub(crate) fn new(spool: bool) -> PushStats {
        PushStats {
            spool,
            ..PushStats::default()
        }
    }

    pub(crate) fn counts(&self) -> PushCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last = f64::from_bits(load(&self.last_success));
        let oldest = f64::from_bits(load(&self.oldest));
        PushCounts {
            success: load(&self.success),
            partial: load(&self.partial),
            failure: load(&self.failure),
            last_success: (last > 0.0).then_some(last),
            backlog: BacklogCounts {
                batches: load(&self.batches),
                bytes: load(&self.bytes),
                oldest: (oldest > 0.0).then_some(oldest),
                dropped: self.dropped.each_ref().map(load),
                spool_write_failures: self.spool.then(|| load(&self.spool_write_failures)),
            },
        }
    }

    /// The backlog as it is now.
    pub(crate) fn backlog(&self, batches: usize, bytes: u64, oldest: Option<f64>) {
        self.batches.store(batches as u64, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        let oldest = oldest.filter(|t| *t > 0.0).unwrap_or(0.0);
        self.oldest.store(oldest.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason, batches: usize) {
        self.dropped[reason as usize].fetch_add(batches as u64, Ordering::Relaxed);
    }

    pub(crate) fn spool_write_failed(&self) {
        self.spool_write_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accepted(&self, partial: bool) {
        let counter = if partial {
            &self.partial
        } else {
            &self.success
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_success
            .store(unix_now().to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failure.fetch_add(1, Ordering::Relaxed);
    }
}
