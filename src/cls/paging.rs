//! Paging a listing: page numbers counted from 0 or 1 as the server shows,
//! `paginationInfo` read in any of its spellings, and the guards that end a
//! listing the server would page forever (logged and counted).

use super::client::ClsClient;
use super::decode::Page;
use super::error::{shorten, ClsError, Endpoint};
use super::stats::PageGuard;
use std::collections::HashSet;
use tokio::time::Instant;

/// Hard cap on pages per listing: 1,000 pages of 100 is 100,000 items.
pub(crate) const MAX_PAGES: u32 = 1000;

impl ClsClient {
    /// Every page of a listing, collected.
    pub(super) async fn list_vec<P: Page>(
        &self,
        endpoint: Endpoint,
        path: String,
        extra_query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<P::Item>, ClsError> {
        let mut items = Vec::new();
        self.list_all::<P>(endpoint, path, extra_query, instance, deadline, |item| {
            items.push(item)
        })
        .await?;
        Ok(items)
    }

    /// Fetches every page of a listing, handing each item not seen before to
    /// `each` as its page arrives. Pages count from 0 or 1 (learned from what
    /// the server reports); listing stops at the totals, at a short page, or
    /// at a guard (a page of repeats, an empty page the totals did not
    /// announce, the page cap), each guard logged and counted.
    pub(super) async fn list_all<P: Page>(
        &self,
        endpoint: Endpoint,
        path: String,
        extra_query: &str,
        instance: Option<&str>,
        deadline: Instant,
        mut each: impl FnMut(P::Item) + Send,
    ) -> Result<(), ClsError> {
        let size = self.inner.page_size;
        let mut seen: HashSet<String> = HashSet::new();
        // Items handed on so far (repeats excluded).
        let mut read: usize = 0;
        let mut number: Option<i64> = None;
        let mut pages: u32 = 0;
        let mut base_known = false;
        let mut shifted = false;
        loop {
            let query = match number {
                None => format!("page-size={size}{extra_query}"),
                Some(n) => format!("page-number={n}&page-size={size}{extra_query}"),
            };
            let (batch, info) = self
                .get_page::<P>(endpoint, &path, &query, instance, deadline)
                .await?;
            self.inner.stats.count_page();
            let batch_len = batch.len();
            let mut fresh = 0;
            for item in batch {
                let key = P::key(&item);
                if key.is_empty() || seen.insert(key) {
                    fresh += 1;
                    each(item);
                }
            }
            read += fresh;
            let Some(info) = info else {
                break; // No paginationInfo: a single page, as the API always did.
            };
            let current = match (number, info.current) {
                (None, Some(reported)) => {
                    base_known = true;
                    reported
                }
                (None, None) => 0,
                (Some(n), _) => n,
            };
            if batch_len == 0 {
                if pages > 0 && info.promises_more(pages, read) {
                    self.guard(endpoint, &path, PageGuard::ShortTotal);
                }
                break;
            }
            if fresh == 0 && pages > 0 {
                // A 1-based server that did not report its page number sends
                // its first page again for page 1: step once past it.
                if !base_known && !shifted {
                    shifted = true;
                    let Some(next) = current.checked_add(1) else {
                        break; // A page number at the end of the range has no next.
                    };
                    number = Some(next);
                    continue;
                }
                self.guard(endpoint, &path, PageGuard::RepeatedPage);
                break;
            }
            pages += 1;
            let more = match (info.total_pages, info.total_records) {
                (Some(total), _) => i64::from(pages) < total,
                (None, Some(total)) => (read as i64) < total,
                (None, None) => {
                    batch_len as i64 >= info.size.filter(|s| *s > 0).unwrap_or(i64::from(size))
                }
            };
            if !more {
                break;
            }
            if pages >= MAX_PAGES {
                self.guard(endpoint, &path, PageGuard::PageCap);
                break;
            }
            let Some(next) = current.checked_add(1) else {
                break; // A page number at the end of the range has no next.
            };
            number = Some(next);
        }
        Ok(())
    }

    fn guard(&self, endpoint: Endpoint, path: &str, guard: PageGuard) {
        self.inner.stats.count_guard(endpoint, guard);
        tracing::warn!(
            endpoint = endpoint.label(),
            path = &*shorten(path),
            guard = guard.label(),
            "paging stopped early: {}",
            match guard {
                PageGuard::RepeatedPage =>
                    "a page held only items already seen (the server seems to ignore page-number)",
                PageGuard::PageCap => "the page cap was reached",
                PageGuard::ShortTotal => "an empty page came back before the totals were reached",
            }
        );
    }
}

/// The keys of `paginationInfo` we understand (the API does not document them).
#[derive(Debug, Default, PartialEq)]
pub struct PageInfo {
    pub current: Option<i64>,
    pub size: Option<i64>,
    pub total_pages: Option<i64>,
    pub total_records: Option<i64>,
}

impl PageInfo {
    pub(crate) fn read(value: &serde_json::Value) -> Option<PageInfo> {
        let map = value.as_object()?;
        let int = |keys: &[&str]| {
            keys.iter().find_map(|k| match map.get(*k)? {
                serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
        };
        Some(PageInfo {
            current: int(&["pageNumber", "currentPage", "page"]),
            size: int(&["pageSize", "size"]),
            total_pages: int(&["totalPages"]),
            total_records: int(&["totalRecords", "totalCount", "totalElements", "totalItems"]),
        })
    }

    fn promises_more(&self, pages: u32, items: usize) -> bool {
        match (self.total_pages, self.total_records) {
            (Some(total), _) => i64::from(pages) < total,
            (None, Some(total)) => (items as i64) < total,
            (None, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cls::client::testing::{answering, client_of};
    use std::time::Duration;

    #[test]
    fn page_info_reads_every_documented_key_spelling() {
        let info = PageInfo::read(
            &serde_json::json!({"currentPage": 2, "size": "50", "totalElements": 120}),
        )
        .unwrap();
        assert_eq!(
            info,
            PageInfo {
                current: Some(2),
                size: Some(50),
                total_pages: None,
                total_records: Some(120)
            }
        );
        assert_eq!(PageInfo::read(&serde_json::json!("x")), None);
    }

    #[tokio::test]
    async fn a_page_number_at_the_end_of_the_range_ends_the_listing() {
        // Every listing answers with this one group, as page i64::MAX of
        // more than can be counted.
        let base = answering(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 85\r\n\r\n{\"virtualGroups\":[{\"id\":1}],\"paginationInfo\":{\"pageNumber\":1e308,\"totalPages\":1e308}}",
        )
        .await;
        let org = client_of(base)
            .fetch_org(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(org.groups.len(), 1);
        assert_eq!(org.groups[0].group.id, "1");
    }
}
