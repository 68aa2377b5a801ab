//! Counters the CLS client keeps about its own requests, read by the metric
//! table on each render.

use super::error::Endpoint;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why a paged listing stopped early instead of at its natural end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageGuard {
    /// A page held only items already seen: the server ignores `page-number`.
    RepeatedPage,
    /// The hard cap on pages per listing was reached.
    PageCap,
    /// The totals promised more items but an empty page came back.
    ShortTotal,
}

impl PageGuard {
    pub fn label(self) -> &'static str {
        match self {
            PageGuard::RepeatedPage => "repeated_page",
            PageGuard::PageCap => "page_cap",
            PageGuard::ShortTotal => "short_total",
        }
    }
}

/// The `code` label of an answer's HTTP status, `error` without one. The
/// texts of every status are made once and kept: labels borrow them.
fn code_label(status: Option<u16>) -> &'static str {
    static CODES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let codes = CODES.get_or_init(|| (0..1000u16).map(|c| format!("{c:03}")).collect());
    match status {
        Some(code) => codes.get(usize::from(code)).map_or("error", String::as_str),
        None => "error",
    }
}

/// A mutex over a small map: requests are counted a few hundred times per
/// refresh and read once per render, so contention is negligible and the map
/// keeps label sets sorted for a stable exposition.
#[derive(Debug, Default)]
pub struct ApiStats {
    requests: Mutex<BTreeMap<(Endpoint, Option<u16>), u64>>,
    guards: Mutex<BTreeMap<(Endpoint, PageGuard), u64>>,
    /// Pages read and attempts repeated, for `check`'s summary. Plain
    /// counters (atomics): nothing reads them together with the maps.
    pages: AtomicU64,
    retries: AtomicU64,
}

impl ApiStats {
    /// Counts one request: `status` is None for a transport failure.
    pub fn count_request(&self, endpoint: Endpoint, status: Option<u16>) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((endpoint, status)).or_default() += 1;
        }
    }

    pub fn count_guard(&self, endpoint: Endpoint, guard: PageGuard) {
        if let Ok(mut map) = self.guards.lock() {
            *map.entry((endpoint, guard)).or_default() += 1;
        }
    }

    /// One page of a listing read and decoded.
    pub fn count_page(&self) {
        self.pages.fetch_add(1, Ordering::Relaxed);
    }

    /// A request about to be sent again after a failed attempt.
    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Pages read since start.
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    /// Attempts repeated since start.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Requests sent since start (every attempt), whatever their answer.
    pub fn request_total(&self) -> u64 {
        self.requests().iter().map(|(_, _, n)| n).sum()
    }

    /// (endpoint, code label, count), sorted.
    pub fn requests(&self) -> Vec<(Endpoint, &'static str, u64)> {
        let Ok(map) = self.requests.lock() else {
            return Vec::new();
        };
        map.iter()
            .map(|(&(endpoint, status), &n)| (endpoint, code_label(status), n))
            .collect()
    }

    pub fn guards(&self) -> Vec<(Endpoint, PageGuard, u64)> {
        let Ok(map) = self.guards.lock() else {
            return Vec::new();
        };
        map.iter().map(|(&(e, g), &n)| (e, g, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_their_status_or_error() {
        let stats = ApiStats::default();
        stats.count_request(Endpoint::Leases, Some(404));
        stats.count_request(Endpoint::Leases, Some(404));
        stats.count_request(Endpoint::VirtualGroups, None);
        assert_eq!(
            stats.requests(),
            [
                (Endpoint::VirtualGroups, "error", 1),
                (Endpoint::Leases, "404", 2)
            ]
        );
        assert_eq!(code_label(Some(1000)), "error", "not an HTTP status");
        assert_eq!(stats.request_total(), 3);
    }

    #[test]
    fn pages_and_retries_are_counted_apart_from_requests() {
        let stats = ApiStats::default();
        stats.count_page();
        stats.count_page();
        stats.count_retry();
        assert_eq!(
            (stats.pages(), stats.retries(), stats.request_total()),
            (2, 1, 0)
        );
    }
}
