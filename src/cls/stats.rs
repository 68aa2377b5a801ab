//! Counters the CLS client keeps about its own requests, read by the metric
//! table on each render.

use super::error::Endpoint;
use std::collections::BTreeMap;
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
    }
}
