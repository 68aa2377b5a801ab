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
}

/// The push's counters. Atomics: written by the push's sender task, read
/// by every scrape, no lock shared with either. Here, not in `otlp`, so
/// that the listener reads them without knowing the push.
#[derive(Debug, Default)]
pub(crate) struct PushStats {
    success: AtomicU64,
    partial: AtomicU64,
    failure: AtomicU64,
    /// f64 bits of the unix time; 0 (0.0) before the first accepted push.
    last_success: AtomicU64,
}

impl PushStats {
    pub(crate) fn counts(&self) -> PushCounts {
        let last = f64::from_bits(self.last_success.load(Ordering::Relaxed));
        PushCounts {
            success: self.success.load(Ordering::Relaxed),
            partial: self.partial.load(Ordering::Relaxed),
            failure: self.failure.load(Ordering::Relaxed),
            last_success: (last > 0.0).then_some(last),
        }
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
