//! The HTTP listener: routes (`METRICS_PATH`, `/healthz`, `/`), limits
//! (header read timeout, concurrent connections) and graceful shutdown.
//! Never calls CLS itself: it asks the cache.

use crate::cache::{Cache, Published};
use crate::metrics::exposition::{live_text, Part};
use crate::metrics::families::{process_families, push_families, Family, PushCounts};
use crate::metrics::process::ProcessStats;
use crate::metrics::text::Format;
use crate::sendfile::{SendfileStream, Slot};
use crate::stall_guard::StallGuard;
use crate::status_page;
use crate::web_config::BasicAuth;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
    VARY, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A client must send its request headers within this time (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// A response write that makes no progress for this long ends its
/// connection (a client that stopped reading).
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight responses may take to finish after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How old the process figures in a scrape may be. Scrapes this far apart
/// (any scrape interval Prometheus allows) each read /proc afresh; a burst
/// of scrapes shares one reading and one rendered tail instead of paying
/// for both on every request.
pub const LIVE_MAX_AGE: Duration = Duration::from_secs(1);

pub struct AppState {
    pub cache: Cache,
    pub metrics_path: String,
    pub org: String,
    /// Present when the OTLP push is enabled: its counters are live values.
    pub push: Option<Arc<crate::otlp::PushStats>>,
    /// TLS for the listener (`--web.config.file`), when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Basic auth for every route but (with `healthz_open`) `/healthz`.
    pub auth: Option<Arc<BasicAuth>>,
    pub healthz_open: bool,
    /// The rendered live tail of the bodies, shared by the scrapes of the
    /// last LIVE_MAX_AGE.
    pub live: LiveTails,
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// exchanges finish within `DRAIN_TIMEOUT`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Plain TCP sends large shared parts with sendfile; TLS must
            // encrypt them from memory.
            let slot: Option<Slot> = state.tls.is_none().then(Slot::default);
            let service = {
                let state = state.clone();
                let slot = slot.clone();
                service_fn(move |req| {
                    let state = state.clone();
                    let slot = slot.clone();
                    async move { Ok::<_, Infallible>(handle(req, &state, slot.as_ref()).await) }
                })
            };
            match (&state.tls, slot) {
                (None, Some(slot)) => {
                    let io = TokioIo::new(StallGuard::new(
                        SendfileStream::new(stream, slot),
                        WRITE_STALL_TIMEOUT,
                    ));
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
                (None, None) => {
                    let io = TokioIo::new(StallGuard::new(stream, WRITE_STALL_TIMEOUT));
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
                // The handshake gets the header read timeout too: a client
                // that opens TLS and goes quiet must not hold a slot.
                (Some(acceptor), _) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let io = TokioIo::new(StallGuard::new(tls, WRITE_STALL_TIMEOUT));
                            let _ = watcher.watch(http.serve_connection(io, service)).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// `slot`: where a plain-TCP connection learns which bytes of the response
/// it may send from a file (None on TLS).
async fn handle(req: Request<Incoming>, state: &AppState, slot: Option<&Slot>) -> Response<Chunks> {
    let path = req.uri().path();
    let known = path == state.metrics_path || path == "/healthz" || path == "/";
    if !known {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if let Some(auth) = &state.auth {
        let open = path == "/healthz" && state.healthz_open;
        // Boxed, like the cache's refresh wait: off the path of most scrapes.
        if !open && !Box::pin(authorized(auth, &req)).await {
            let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"nvidia-license-server-exporter\""),
            );
            return response;
        }
    }
    if path == state.metrics_path {
        metrics(&req, state, slot).await
    } else if path == "/healthz" {
        plain(StatusCode::OK, "ok\n")
    } else {
        landing(state)
    }
}

/// bcrypt is slow on purpose: verify on the blocking pool, not on the
/// threads that serve other connections.
async fn authorized(auth: &Arc<BasicAuth>, req: &Request<Incoming>) -> bool {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let auth = auth.clone();
    tokio::task::spawn_blocking(move || auth.check(header.as_deref()))
        .await
        .unwrap_or(false)
}

async fn metrics(
    req: &Request<Incoming>,
    state: &AppState,
    slot: Option<&Slot>,
) -> Response<Chunks> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header(ACCEPT));
    let gzip = accepts_gzip(header(ACCEPT_ENCODING));
    let published = state.cache.get().await;
    let push = state.push.as_ref().map(|p| p.counts());
    let part: &Part = published.rendered.part(format);
    let tail = state
        .live
        .current(&published, push)
        .chunk(part, format, gzip, &state.org);
    if let Some(slot) = slot {
        let backed = if gzip { None } else { part.file_backed() };
        match slot.lock() {
            Ok(mut guard) => *guard = backed,
            Err(poisoned) => *poisoned.into_inner() = backed,
        }
    }
    let mut response = Response::new(Chunks::new([part.head(gzip), tail]));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The latest reading of the live values (process figures, push counters)
/// and the tails rendered from it, one per format and encoding, made when
/// first asked for. An `RwLock` around an `Arc`, like the cache: readers
/// hold the lock only to clone the `Arc`.
pub struct LiveTails {
    current: RwLock<Arc<Tails>>,
}

struct Tails {
    /// The refresh part the gzip tails continue (their CRC and length
    /// depend on it). Weak, so an old part is not kept alive; comparing
    /// the pointer is sound because a Weak keeps the allocation.
    published: Weak<Published>,
    read_at: Instant,
    push: Option<PushCounts>,
    families: Vec<Family>,
    /// Indexed by `slot`.
    texts: [OnceLock<Bytes>; 2],
    gzip_ends: [OnceLock<Bytes>; 2],
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
            })),
        }
    }
}

impl LiveTails {
    /// Tails for `published` with the push counters as they are now and
    /// process figures at most LIVE_MAX_AGE old: the current ones when they
    /// fit, else a new reading. Two scrapes that find the same stale entry
    /// both read /proc; the later swap wins, and both answers are correct.
    fn current(&self, published: &Arc<Published>, push: Option<PushCounts>) -> Arc<Tails> {
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
        let mut families = match &push {
            Some(counts) => push_families(counts),
            None => Vec::new(),
        };
        families.extend(process_families(&ProcessStats::read()));
        let fresh = Arc::new(Tails {
            published: Arc::downgrade(published),
            read_at: Instant::now(),
            push,
            families,
            texts: Default::default(),
            gzip_ends: Default::default(),
        });
        match self.current.write() {
            Ok(mut guard) => *guard = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        fresh
    }
}

impl Tails {
    /// The second chunk of a body of `format` after `part` (which belongs
    /// to the `published` these tails were made for).
    fn chunk(&self, part: &Part, format: Format, gzip: bool, org: &str) -> Bytes {
        let slot = match format {
            Format::Text004 => 0,
            Format::OpenMetrics => 1,
        };
        let text = self.texts[slot].get_or_init(|| live_text(&self.families, org, format));
        if gzip {
            self.gzip_ends[slot]
                .get_or_init(|| part.tail(text, true))
                .clone()
        } else {
            text.clone()
        }
    }
}

fn landing(state: &AppState) -> Response<Chunks> {
    let page = status_page::render(&state.cache.current(), &state.org, &state.metrics_path);
    let mut response = Response::new(Chunks::new([Bytes::from(page), Bytes::new()]));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Chunks> {
    let mut response = Response::new(Chunks::new([
        Bytes::from_static(text.as_bytes()),
        Bytes::new(),
    ]));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*` with a q above 0).
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(value) = accept_encoding else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
    })
}

/// A body of up to two ready chunks: the shared refresh part and the
/// per-scrape tail, sent without joining them.
pub struct Chunks {
    chunks: [Bytes; 2],
    next: usize,
}

impl Chunks {
    fn new(chunks: [Bytes; 2]) -> Chunks {
        Chunks { chunks, next: 0 }
    }

    fn remaining(&self) -> u64 {
        self.chunks[self.next.min(2)..]
            .iter()
            .map(|c| c.len() as u64)
            .sum()
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        while self.next < 2 {
            let i = self.next;
            self.next += 1;
            let chunk = std::mem::take(&mut self.chunks[i]);
            if !chunk.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{RefreshFn, RenderFn};
    use crate::metrics::exposition::Rendered;
    use crate::snapshot::Snapshot;
    use std::io::Read;

    /// A cache whose every `get` publishes a new refresh (TTL 0).
    fn always_refreshing_cache() -> Cache {
        let refresh: RefreshFn = Arc::new(|_| Box::pin(async { Ok(Snapshot::default()) }));
        let render: RenderFn = Arc::new(|_| Rendered::new(&[], "o"));
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
        });
        let d = live.current(&second, Some(pushed));
        assert!(
            d.read_at > old,
            "process figures are read again after LIVE_MAX_AGE"
        );
        assert!(!d.families.is_empty());
    }

    static BIG: crate::metrics::families::Desc = crate::metrics::families::Desc {
        name: "x_licenses",
        help: "X.",
        kind: crate::metrics::families::Kind::Gauge,
        unit: crate::metrics::families::Unit::Licenses,
        labels: &["server", "feature"],
        org_label: true,
    };

    /// Through the real listener, a large body (sent with sendfile and a
    /// corked socket) arrives whole, twice on one connection, plain and
    /// gzip, and the response after it is framed right.
    #[tokio::test]
    async fn large_bodies_arrive_whole_on_a_kept_alive_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let families = vec![Family {
            desc: &BIG,
            samples: (0..5000)
                .map(|i| crate::metrics::families::Sample {
                    labels: vec![format!("server-{i:05}"), format!("feature-{}", i % 7)],
                    value: i as f64,
                })
                .collect(),
        }];
        let rendered = Rendered::new(&families, "o");
        assert!(rendered.text.plain.len() > crate::metrics::exposition::SENDFILE_MIN_BYTES);
        assert!(rendered.text.file_backed().is_some(), "memfds work here");
        let render: RenderFn = Arc::new(move |_| rendered.clone());
        let refresh: RefreshFn = Arc::new(|_| Box::pin(async { Ok(Snapshot::default()) }));
        let state = Arc::new(AppState {
            cache: Cache::new(
                refresh,
                render,
                Duration::from_secs(3600),
                Duration::from_secs(5),
            ),
            metrics_path: "/metrics".to_owned(),
            org: "o".to_owned(),
            push: None,
            tls: None,
            auth: None,
            healthz_open: true,
            live: LiveTails::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));

        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n\
              GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut all))
            .await
            .expect("the server answers within 20 s")
            .unwrap();

        let mut bodies = Vec::new();
        let mut rest = &all[..];
        while !rest.is_empty() {
            let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = std::str::from_utf8(&rest[..end])
                .unwrap()
                .to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            bodies.push((
                head.contains("content-encoding: gzip"),
                rest[end..end + length].to_vec(),
            ));
            rest = &rest[end + length..];
        }
        assert_eq!(bodies.len(), 4);
        // The process values may differ if the requests were more than
        // LIVE_MAX_AGE apart (a very slow machine): compare without them.
        let text = |body: &[u8]| {
            let body = String::from_utf8(body.to_vec()).unwrap();
            body.lines()
                .filter(|l| !l.starts_with("process_"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        let first = text(&bodies[0].1);
        assert!(first.starts_with("# HELP x_licenses X.\n"));
        assert!(first.contains(
            "x_licenses{org_name=\"o\",server=\"server-04999\",feature=\"feature-1\"} 4999\n"
        ));
        assert!(String::from_utf8_lossy(&bodies[0].1).contains("\nprocess_open_fds "));
        assert!(!bodies[0].0 && bodies[1].0 && !bodies[2].0);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&bodies[1].1[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(text(&unzipped), first);
        assert_eq!(text(&bodies[2].1), first);
        assert_eq!(text(&bodies[3].1), "ok\n");
        let _ = stop.send(());
        server.await.unwrap();
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

    #[test]
    fn gzip_acceptance_follows_q_values() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
    }
}
