//! The published snapshot and its refresh: a fresh cache answers without
//! calling CLS; a stale one starts one refresh that every concurrent caller
//! shares (single-flight); a failed refresh keeps the previous snapshot and
//! reports `up 0`.
//!
//! The refresh runs in its own task, bounded by SCRAPE_TIMEOUT, so a scrape
//! that disconnects cannot cancel the refresh others wait for.

use crate::clock::unix_now;
use crate::cls::error::{ClsError, ErrorKind};
use crate::snapshot::Snapshot;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How much longer than SCRAPE_TIMEOUT a caller waits for a refresh: the
/// refresh itself ends at SCRAPE_TIMEOUT, this covers building and rendering.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

pub(crate) type RefreshFuture =
    Pin<Box<dyn Future<Output = Result<Snapshot, RefreshError>> + Send>>;
/// Fetches and builds a snapshot; given the refresh deadline.
pub(crate) type RefreshFn = Arc<dyn Fn(Instant) -> RefreshFuture + Send + Sync>;
/// Makes what the outputs serve from a new status, once per refresh (the
/// listener's ready bodies): `R` is the cache's to hold, not to know.
pub(crate) type RenderFn<R> = Arc<dyn Fn(&Status) -> R + Send + Sync>;

/// Why a refresh published no new snapshot.
#[derive(Debug)]
pub(crate) enum RefreshError {
    /// The org could not be read (its group listing failed).
    Cls(ClsError),
    /// SCRAPE_TIMEOUT passed first.
    TimedOut(Duration),
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Cls(e) => e.fmt(f),
            RefreshError::TimedOut(limit) => write!(
                f,
                "refresh did not finish within SCRAPE_TIMEOUT ({:.1}s)",
                limit.as_secs_f64()
            ),
        }
    }
}

/// What a failed refresh means to the person who runs the exporter: the
/// `check` subcommand says it (and prints its `label` for scripts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// HTTP 401.
    KeyRejected,
    /// HTTP 403.
    KeyLacksAccess,
    /// No connection, a name that does not resolve, an exchange cut short.
    Unreachable,
    /// The TLS handshake failed.
    Tls,
    /// A request or the whole refresh ran out of time.
    Timeout,
    /// Another HTTP status.
    HttpStatus,
    /// An answer the exporter cannot read (not JSON, too large).
    BadAnswer,
    /// A request that cannot be made (an id too long for a URI).
    BadRequest,
}

impl FailureKind {
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::KeyRejected => "key_rejected",
            Self::KeyLacksAccess => "key_lacks_access",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::HttpStatus => "http_status",
            Self::BadAnswer => "bad_answer",
            Self::BadRequest => "bad_request",
        }
    }

    /// A few words that lead the line saying why.
    pub(crate) const fn words(self) -> &'static str {
        match self {
            Self::KeyRejected => "the API key was rejected",
            Self::KeyLacksAccess => "the API key lacks access",
            Self::Unreachable => "CLS is unreachable",
            Self::Tls => "the TLS handshake with CLS failed",
            Self::Timeout => "CLS did not answer in time",
            Self::HttpStatus => "CLS answered with an error",
            Self::BadAnswer => "CLS sent an answer that cannot be read",
            Self::BadRequest => "a request cannot be made",
        }
    }
}

impl RefreshError {
    pub(crate) fn kind(&self) -> FailureKind {
        match self {
            RefreshError::TimedOut(_) => FailureKind::Timeout,
            RefreshError::Cls(e) => match e.kind {
                ErrorKind::Status(401) => FailureKind::KeyRejected,
                ErrorKind::Status(403) => FailureKind::KeyLacksAccess,
                ErrorKind::Status(_) => FailureKind::HttpStatus,
                ErrorKind::Transport(_) => FailureKind::Unreachable,
                ErrorKind::Tls(_) => FailureKind::Tls,
                ErrorKind::Timeout => FailureKind::Timeout,
                ErrorKind::TooLarge(_) | ErrorKind::Decode(_) => FailureKind::BadAnswer,
                ErrorKind::Request(_) => FailureKind::BadRequest,
            },
        }
    }

    /// The reason with its cause chain on one line (control characters
    /// are spaces), as the log, the status page and `check` show it. It
    /// never holds the key: no error message is made with it.
    pub(crate) fn reason(&self) -> String {
        crate::cause::chain(self).replace(char::is_control, " ")
    }
}

impl std::error::Error for RefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RefreshError::Cls(e) => Some(e),
            RefreshError::TimedOut(_) => None,
        }
    }
}

/// What the latest refresh attempt left behind.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub snapshot: Option<Arc<Snapshot>>,
    pub up: bool,
    pub duration_seconds: f64,
    /// Collection time of the served snapshot; with none, the time of the
    /// latest failed attempt. Whole unix seconds, as the Go exporter writes
    /// `nvidia_cls_scrape_timestamp_seconds` (`Time.Unix()`); the OTLP data
    /// points of the snapshot carry the same time.
    pub timestamp: f64,
    pub last_success: Option<f64>,
    pub successes: u64,
    pub failures: u64,
}

/// Immutable once published; callers hold an `Arc` to it as long as they like.
pub(crate) struct Published<R> {
    pub status: Status,
    pub rendered: R,
    /// The latest attempt, for the status page; None before the first.
    pub last_attempt: Option<Attempt>,
    /// When the latest attempt ended; None before the first one.
    attempted_at: Option<Instant>,
}

#[cfg(test)]
impl<R> Published<R> {
    /// What the cache would publish after an attempt (or before any, with
    /// None): for the tests of the pages that show it.
    pub(crate) fn of(status: Status, rendered: R, last_attempt: Option<Attempt>) -> Self {
        Published {
            status,
            rendered,
            last_attempt,
            attempted_at: None,
        }
    }
}

/// A refresh attempt as the status page tells it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    /// Unix seconds at which it ended.
    pub ended_at: f64,
    /// Why it failed ([`RefreshError::reason`]); None when it succeeded.
    pub error: Option<String>,
}

pub(crate) struct Cache<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for Cache<R> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<R> {
    /// Readers take the lock only to clone an `Arc`; the one writer (the
    /// refresh task) swaps it. Never held across an await.
    published: RwLock<Arc<Published<R>>>,
    /// The running refresh, if any: callers subscribe instead of starting
    /// another one. A std mutex: held for a few instructions, never across
    /// an await.
    inflight: Mutex<Option<watch::Receiver<bool>>>,
    refresh: RefreshFn,
    render: RenderFn<R>,
    ttl: Duration,
    timeout: Duration,
}

impl<R: Send + Sync + 'static> Cache<R> {
    pub(crate) fn new(
        refresh: RefreshFn,
        render: RenderFn<R>,
        ttl: Duration,
        timeout: Duration,
    ) -> Self {
        let status = Status::default();
        let rendered = render(&status);
        Cache {
            inner: Arc::new(Inner {
                published: RwLock::new(Arc::new(Published {
                    status,
                    rendered,
                    last_attempt: None,
                    attempted_at: None,
                })),
                inflight: Mutex::new(None),
                refresh,
                render,
                ttl,
                timeout,
            }),
        }
    }

    /// CACHE_TTL: how long an attempt is served before the next.
    pub(crate) fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// What is published now, without refreshing.
    pub(crate) fn current(&self) -> Arc<Published<R>> {
        self.inner.load()
    }

    /// The published snapshot, refreshed first when it is older than the TTL.
    /// Failed attempts count too, so a failing API is asked once per TTL,
    /// not once per scrape.
    pub(crate) async fn get(&self) -> Arc<Published<R>> {
        let published = self.inner.load();
        if let Some(at) = published.attempted_at {
            if at.elapsed() < self.inner.ttl {
                return published;
            }
        }
        // Boxed: the wait (a timer and a watch) would otherwise make the
        // future of every scrape, fresh ones included, that much larger to
        // build and move.
        Box::pin(self.refreshed()).await
    }

    /// Waits for the running or a new refresh, then what is published.
    async fn refreshed(&self) -> Arc<Published<R>> {
        let mut done = self.join_or_start_refresh();
        let wait = self.inner.timeout + WAIT_MARGIN;
        // Whatever happens to the refresh, answer with what is published.
        let _ = tokio::time::timeout(wait, done.wait_for(|finished| *finished)).await;
        self.inner.load()
    }

    fn join_or_start_refresh(&self) -> watch::Receiver<bool> {
        let mut inflight = match self.inner.inflight.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(rx) = inflight.as_ref() {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(false);
        *inflight = Some(rx.clone());
        tokio::spawn(self.inner.clone().run_refresh(tx));
        rx
    }
}

impl<R: Send + Sync + 'static> Inner<R> {
    fn load(&self) -> Arc<Published<R>> {
        match self.published.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn run_refresh(self: Arc<Self>, done: watch::Sender<bool>) {
        let started = Instant::now();
        let started_wall = unix_now();
        let deadline = started + self.timeout;
        let result = match tokio::time::timeout_at(deadline, (self.refresh)(deadline)).await {
            Ok(result) => result,
            Err(_) => Err(RefreshError::TimedOut(self.timeout)),
        };
        let duration_seconds = started.elapsed().as_secs_f64();
        // The decoded answers are gone: their memory serves the render
        // instead of adding to it (see `memory`).
        crate::memory::release_free_memory();
        let previous = self.load();
        let mut status = Status {
            duration_seconds,
            successes: previous.status.successes,
            failures: previous.status.failures,
            last_success: previous.status.last_success,
            ..Status::default()
        };
        let mut error_reason = None;
        match result {
            Ok(snapshot) => {
                status.up = true;
                status.timestamp = snapshot.collected_at.floor();
                status.snapshot = Some(Arc::new(snapshot));
                status.successes += 1;
                status.last_success = Some(unix_now());
                tracing::debug!(duration_seconds, "refresh succeeded");
            }
            Err(error) => {
                status.snapshot = previous.status.snapshot.clone();
                status.timestamp = status
                    .snapshot
                    .as_ref()
                    .map_or(started_wall, |s| s.collected_at)
                    .floor();
                status.failures += 1;
                let reason = error.reason();
                tracing::warn!(
                    duration_seconds,
                    stale = status.snapshot.is_some(),
                    "refresh failed: {reason}"
                );
                error_reason = Some(reason);
            }
        }
        let rendered = (self.render)(&status);
        let published = Arc::new(Published {
            status,
            rendered,
            last_attempt: Some(Attempt {
                ended_at: unix_now(),
                error: error_reason,
            }),
            attempted_at: Some(Instant::now()),
        });
        match self.published.write() {
            Ok(mut guard) => *guard = published,
            Err(poisoned) => *poisoned.into_inner() = published,
        }
        match self.inflight.lock() {
            Ok(mut guard) => *guard = None,
            Err(poisoned) => *poisoned.into_inner() = None,
        }
        let _ = done.send(true);
        // What the previous snapshot and its bodies held, and the render's
        // transient copies, go back to the system (scrapes that still hold
        // the previous one free it when they end).
        drop(previous);
        crate::memory::release_free_memory();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Script {
        calls: AtomicUsize,
        /// Per call: (delay, succeed).
        plan: Mutex<Vec<(Duration, bool)>>,
    }

    fn cache(plan: Vec<(Duration, bool)>, ttl: u64, timeout: u64) -> (Cache<()>, Arc<Script>) {
        let script = Arc::new(Script {
            calls: AtomicUsize::new(0),
            plan: Mutex::new(plan),
        });
        let s = script.clone();
        let refresh: RefreshFn = Arc::new(move |_deadline| {
            let s = s.clone();
            Box::pin(async move {
                let n = s.calls.fetch_add(1, Ordering::SeqCst);
                let (delay, ok) = s
                    .plan
                    .lock()
                    .unwrap()
                    .get(n)
                    .copied()
                    .unwrap_or((Duration::ZERO, true));
                tokio::time::sleep(delay).await;
                if ok {
                    Ok(Snapshot {
                        collected_at: n as f64 + 1.0,
                        ..Snapshot::default()
                    })
                } else {
                    Err(RefreshError::TimedOut(Duration::ZERO))
                }
            })
        });
        let render: RenderFn<()> = Arc::new(|_| ());
        (
            Cache::new(
                refresh,
                render,
                Duration::from_secs(ttl),
                Duration::from_secs(timeout),
            ),
            script,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_timestamp_is_whole_seconds_as_go_writes_it() {
        let render: RenderFn<()> = Arc::new(|_| ());
        let refresh: RefreshFn = Arc::new(|_| {
            Box::pin(async {
                Ok(Snapshot {
                    collected_at: 1_700_000_000.75,
                    ..Snapshot::default()
                })
            })
        });
        let cache = Cache::new(
            refresh,
            render.clone(),
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        assert_eq!(cache.get().await.status.timestamp, 1_700_000_000.0);
        let failing: RefreshFn =
            Arc::new(|_| Box::pin(async { Err(RefreshError::TimedOut(Duration::ZERO)) }));
        let cache = Cache::new(
            failing,
            render,
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let t = cache.get().await.status.timestamp;
        assert!(t > 1_700_000_000.0 && t.fract() == 0.0, "{t}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_scrapes_share_one_refresh() {
        let (cache, script) = cache(vec![(Duration::from_millis(500), true)], 60, 20);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = cache.clone();
            tasks.push(tokio::spawn(async move { c.get().await.status.up }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(script.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_cache_makes_no_call_and_ttl_expiry_refreshes() {
        let (cache, script) = cache(vec![], 60, 20);
        assert_eq!(cache.get().await.status.timestamp, 1.0);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.get().await.status.timestamp, 1.0);
        assert_eq!(script.calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        let p = cache.get().await;
        assert_eq!(p.status.timestamp, 2.0);
        assert_eq!(p.status.successes, 2);
        assert_eq!(script.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_snapshot_kept_when_refresh_fails() {
        let (cache, _) = cache(vec![(Duration::ZERO, true), (Duration::ZERO, false)], 10, 5);
        let first = cache.get().await;
        assert!(first.status.up);
        tokio::time::advance(Duration::from_secs(11)).await;
        let second = cache.get().await;
        assert!(!second.status.up);
        assert_eq!(second.status.timestamp, 1.0, "the previous snapshot's time");
        assert!(Arc::ptr_eq(
            second.status.snapshot.as_ref().unwrap(),
            first.status.snapshot.as_ref().unwrap()
        ));
        assert_eq!((second.status.successes, second.status.failures), (1, 1));
        assert!(second.status.last_success.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_latest_attempt_says_why_it_failed_until_one_succeeds() {
        let plan = vec![(Duration::ZERO, false), (Duration::ZERO, true)];
        let (cache, _) = cache(plan, 10, 5);
        assert_eq!(cache.current().last_attempt, None, "before the first");
        let failed = cache.get().await;
        let attempt = failed.last_attempt.clone().unwrap();
        assert_eq!(
            attempt.error.as_deref(),
            Some("refresh did not finish within SCRAPE_TIMEOUT (0.0s)")
        );
        assert!(attempt.ended_at >= failed.status.timestamp);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.get().await.last_attempt.as_ref().unwrap().error, None);
    }

    #[test]
    fn failures_are_told_by_what_the_user_can_do_about_them() {
        let cls = |kind| {
            RefreshError::Cls(ClsError::new(
                crate::cls::Endpoint::VirtualGroups,
                "GET /virtual-groups",
                kind,
            ))
        };
        let cases = [
            (cls(ErrorKind::Status(401)), FailureKind::KeyRejected),
            (cls(ErrorKind::Status(403)), FailureKind::KeyLacksAccess),
            (cls(ErrorKind::Status(503)), FailureKind::HttpStatus),
            (
                cls(ErrorKind::Transport("refused".into())),
                FailureKind::Unreachable,
            ),
            (
                cls(ErrorKind::Tls("UnknownIssuer".into())),
                FailureKind::Tls,
            ),
            (cls(ErrorKind::Timeout), FailureKind::Timeout),
            (
                RefreshError::TimedOut(Duration::from_secs(20)),
                FailureKind::Timeout,
            ),
            (cls(ErrorKind::Decode("x".into())), FailureKind::BadAnswer),
            (cls(ErrorKind::Request("x".into())), FailureKind::BadRequest),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
        let multi_line = cls(ErrorKind::Transport("a\nb\rc".into()));
        assert_eq!(multi_line.reason(), "GET /virtual-groups failed: a b c");
    }

    #[tokio::test(start_paused = true)]
    async fn failure_without_snapshot_reports_down_with_no_data() {
        let (cache, script) = cache(vec![(Duration::from_millis(300), false)], 10, 5);
        let p = cache.get().await;
        assert!(!p.status.up);
        assert!(p.status.snapshot.is_none());
        assert!(p.status.last_success.is_none());
        assert!((p.status.duration_seconds - 0.3).abs() < 0.01);
        // A failed attempt is cached for the TTL too.
        cache.get().await;
        assert_eq!(script.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_past_the_timeout_counts_as_failed() {
        let (cache, _) = cache(vec![(Duration::from_secs(30), true)], 10, 5);
        let started = Instant::now();
        let p = cache.get().await;
        assert!(!p.status.up);
        assert_eq!(p.status.failures, 1);
        assert!((p.status.duration_seconds - 5.0).abs() < 0.01);
        assert!(started.elapsed() <= Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_scrape_does_not_cancel_the_refresh() {
        let (cache, script) = cache(vec![(Duration::from_secs(2), true)], 60, 20);
        let c = cache.clone();
        let scrape = tokio::spawn(async move { c.get().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        scrape.abort();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            cache.current().status.up,
            "the refresh finished without its scrape"
        );
        assert!(cache.get().await.status.up);
        assert_eq!(script.calls.load(Ordering::SeqCst), 1);
    }
}
