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
    pub fn requests(&self) -> Vec<(Endpoint, String, u64)> {
        let Ok(map) = self.requests.lock() else {
            return Vec::new();
        };
        map.iter()
            .map(|(&(endpoint, status), &n)| {
                let code = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
                (endpoint, code, n)
            })
            .collect()
    }

    pub fn guards(&self) -> Vec<(Endpoint, PageGuard, u64)> {
        let Ok(map) = self.guards.lock() else {
            return Vec::new();
        };
        map.iter().map(|(&(e, g), &n)| (e, g, n)).collect()
    }
}
