//! The live tail of a scrape's body: the live families rendered after the
//! refresh part, shared by the scrapes of the last LIVE_MAX_AGE instead of
//! read from /proc and rendered for each.

use super::bodies::Bodies;
use crate::cache::Published;
use crate::metrics::exposition::{live_text, Part};
use crate::metrics::family::Family;
use crate::metrics::live::{self, PushCounts};
use crate::metrics::text::Format;
use bytes::Bytes;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

/// How old the process figures in a scrape may be. Scrapes this far apart
/// (any scrape interval Prometheus allows) each read /proc afresh; a burst
/// of scrapes shares one reading and one rendered tail instead of paying
/// for both on every request.
pub(crate) const LIVE_MAX_AGE: Duration = Duration::from_secs(1);

/// The latest reading of the live values (process figures, push counters)
/// and the tails rendered from it, one per format and encoding, made when
/// first asked for. An `RwLock` around an `Arc`, like the cache: readers
/// hold the lock only to clone the `Arc`.
pub(crate) struct LiveTails {
    current: RwLock<Arc<Tails>>,
}

pub(crate) struct Tails {
    /// The refresh part the gzip tails continue (their CRC and length
    /// depend on it). Weak, so an old part is not kept alive; comparing
    /// the pointer is sound because a Weak keeps the allocation.
    published: Weak<Published<Bodies>>,
    read_at: Instant,
    push: Option<PushCounts>,
    families: Vec<Family<'static>>,
    /// Indexed by `slot`.
    texts: [OnceLock<Bytes>; 2],
    gzip_ends: [OnceLock<Bytes>; 2],
    /// Small plain bodies whole: the refresh part and the live text in one
    /// buffer, so that a scrape is one ready frame, as a static server
    /// sends it (see `Tails::joined`).
    joined: [OnceLock<Bytes>; 2],
}

impl Default for LiveTails {
    fn default() -> LiveTails {
        LiveTails {
            current: RwLock::new(Arc::new(Tails {
                published: Weak::new(),
                read_at: Instant::now(),
                push: None,
                families: Vec::new(),
                texts: Default::default(),
                gzip_ends: Default::default(),
                joined: Default::default(),
            })),
        }
    }
}

impl LiveTails {
    /// Tails for `published` with the push counters as they are now and
    /// process figures at most LIVE_MAX_AGE old: the current ones when they
    /// fit, else a new reading. Two scrapes that find the same stale entry
    /// both read /proc; the later swap wins, and both answers are correct.
    pub(crate) fn current(
        &self,
        published: &Arc<Published<Bodies>>,
        push: Option<PushCounts>,
    ) -> Arc<Tails> {
        let tails = match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if std::ptr::eq(tails.published.as_ptr(), Arc::as_ptr(published))
            && tails.push == push
            && tails.read_at.elapsed() < LIVE_MAX_AGE
        {
            return tails;
        }
        let families = live::read(push);
        let fresh = Arc::new(Tails {
            published: Arc::downgrade(published),
            read_at: Instant::now(),
            push,
            families,
            texts: Default::default(),
            gzip_ends: Default::default(),
            joined: Default::default(),
        });
        match self.current.write() {
            Ok(mut guard) => *guard = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        fresh
    }
}

fn slot(format: Format) -> usize {
    match format {
        Format::Text004 => 0,
        Format::OpenMetrics => 1,
    }
}

impl Tails {
    fn text(&self, format: Format, org: &str) -> &Bytes {
        self.texts[slot(format)].get_or_init(|| live_text(&self.families, org, format))
    }

    /// The second chunk of a body of `format` after `part` (which belongs
    /// to the `published` these tails were made for).
    pub(crate) fn chunk(&self, part: &Part, format: Format, gzip: bool, org: &str) -> Bytes {
        let slot = slot(format);
        let text = self.text(format, org);
        if gzip {
            self.gzip_ends[slot]
                .get_or_init(|| part.tail(text, true))
                .clone()
        } else {
            text.clone()
        }
    }

    /// The whole plain body of `format`: `part`'s plain text and the live
    /// text, copied into one buffer once per reading. For small parts only
    /// (under `bodies::SENDFILE_MIN_BYTES`): a scrape is then one frame, which hyper
    /// writes with the response head in one call, instead of two chunks
    /// that cost a third buffer in every write and a second body poll.
    pub(crate) fn joined(&self, part: &Part, format: Format, org: &str) -> Bytes {
        self.joined[slot(format)]
            .get_or_init(|| {
                let text = self.text(format, org);
                let mut body = Vec::with_capacity(part.plain.len() + text.len());
                body.extend_from_slice(&part.plain);
                body.extend_from_slice(text);
                Bytes::from(body)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Cache, RefreshFn, RenderFn};
    use crate::metrics::exposition::Rendered;
    use crate::snapshot::Snapshot;
    use std::io::Read;

    /// A cache whose every `get` publishes a new refresh (TTL 0).
    fn always_refreshing_cache() -> Cache<Bodies> {
        let refresh: RefreshFn = Arc::new(|_| Box::pin(async { Ok(Snapshot::default()) }));
        let render: RenderFn<Bodies> = Arc::new(|_| Bodies::new(Rendered::new(&[], "o")));
        Cache::new(refresh, render, Duration::ZERO, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn live_tail_is_shared_until_a_refresh_a_push_or_its_age_changes_it() {
        let cache = always_refreshing_cache();
        let live = LiveTails::default();
        let first = cache.get().await;
        let a = live.current(&first, None);
        assert!(Arc::ptr_eq(&a, &live.current(&first, None)));

        let pushed = PushCounts {
            success: 1,
            ..PushCounts::default()
        };
        let b = live.current(&first, Some(pushed));
        assert!(!Arc::ptr_eq(&a, &b), "a push is counted at once");
        assert_eq!(b.push, Some(pushed));

        let second = cache.get().await;
        assert!(!Arc::ptr_eq(&first, &second));
        let c = live.current(&second, Some(pushed));
        assert!(
            !Arc::ptr_eq(&b, &c),
            "a new refresh part needs new gzip ends"
        );

        let old = Instant::now()
            .checked_sub(LIVE_MAX_AGE)
            .expect("the monotonic clock is past LIVE_MAX_AGE");
        *live.current.write().unwrap() = Arc::new(Tails {
            published: Arc::downgrade(&second),
            read_at: old,
            push: Some(pushed),
            families: Vec::new(),
            texts: Default::default(),
            gzip_ends: Default::default(),
            joined: Default::default(),
        });
        let d = live.current(&second, Some(pushed));
        assert!(
            d.read_at > old,
            "process figures are read again after LIVE_MAX_AGE"
        );
        assert!(!d.families.is_empty());
    }

    #[tokio::test]
    async fn shared_tails_make_the_same_body_plain_and_gzip() {
        let cache = always_refreshing_cache();
        let live = LiveTails::default();
        let published = cache.get().await;
        let tails = live.current(&published, None);
        for format in [Format::Text004, Format::OpenMetrics] {
            let part = published.rendered.part(format);
            let plain = [part.head(false), tails.chunk(part, format, false, "o")].concat();
            let zipped = [part.head(true), tails.chunk(part, format, true, "o")].concat();
            assert_eq!(tails.joined(part, format, "o"), plain);
            let mut unzipped = Vec::new();
            flate2::read::GzDecoder::new(&zipped[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            assert_eq!(unzipped, plain);
            assert!(std::str::from_utf8(&plain)
                .unwrap()
                .contains("process_open_fds "));
        }
    }
}
