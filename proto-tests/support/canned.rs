//! Canned HTTP answers on loopback: the one answer type ([`Canned`], whose
//! [`Tail`] can break it after its body) and the one server that gives them
//! ([`CannedServer`]). The fake CLS answers every request through it; a test
//! that needs answers of its own (a hang-up on the first connections, a page
//! sequence the fake does not play) starts one with its own answer function.
//! Every request is recorded on arrival, with its time.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What follows a canned body: nothing (a complete answer), or a fault of
/// the connection that carries it. With a `content-length` header (see
/// [`Canned::with_header`]) the body is sent under that length whatever its
/// real size; without one, a body with a tail is sent chunked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tail {
    /// The body is complete.
    #[default]
    End,
    /// The connection is cut right after the body (once what came before
    /// is flushed to the socket).
    Close,
    /// Nothing more for this long (the connection stays open), then it is cut.
    Stall(Duration),
    /// `chunk` again and again, `every` apart (back to back when zero),
    /// until `limit` bytes followed the body or the peer goes away. A limit
    /// keeps even an "endless" body bounded.
    Repeat {
        chunk: Bytes,
        limit: u64,
        every: Duration,
    },
}

impl Tail {
    /// `chunk` back to back until `limit` bytes.
    pub fn repeat(chunk: impl Into<Bytes>, limit: u64) -> Tail {
        Tail::Repeat {
            chunk: chunk.into(),
            limit,
            every: Duration::ZERO,
        }
    }

    /// `chunk` once every `every` until `limit` bytes: a body that trickles.
    pub fn trickle(chunk: impl Into<Bytes>, every: Duration, limit: u64) -> Tail {
        Tail::Repeat {
            chunk: chunk.into(),
            limit,
            every,
        }
    }
}

/// One canned answer: a status, headers and a body with its [`Tail`], sent
/// after a delay; or, with [`Canned::hang_up`], no answer at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canned {
    pub status: u16,
    /// Bytes, not text: a fault may be invalid UTF-8.
    pub body: Bytes,
    /// What follows the body.
    pub tail: Tail,
    /// Extra response headers. `content-type: application/json` is added unless given here.
    pub headers: Vec<(String, String)>,
    /// Delay before answering.
    pub delay: Duration,
    /// As an override of the fake CLS ([`super::fake_cls::FakeCls::set_override`]):
    /// only the next N matching requests, then fall through. `None` = forever.
    pub times: Option<usize>,
    /// The connection is closed without a byte of answer (status, headers
    /// and body unused).
    pub hang_up: bool,
}

impl Canned {
    /// Status with a small JSON body `{"message":"injected <code>"}`.
    pub fn status(code: u16) -> Canned {
        Canned::body(code, format!("{{\"message\":\"injected {code}\"}}"))
    }

    /// Status with the given body.
    pub fn body(status: u16, body: impl Into<String>) -> Canned {
        Canned::bytes(status, body.into())
    }

    /// Status with a JSON document as the body.
    pub fn json(status: u16, body: &Value) -> Canned {
        Canned::body(status, body.to_string())
    }

    /// Status with the given body bytes (which need not be UTF-8).
    pub fn bytes(status: u16, body: impl Into<Bytes>) -> Canned {
        Canned {
            status,
            body: body.into(),
            tail: Tail::End,
            headers: Vec::new(),
            delay: Duration::ZERO,
            times: None,
            hang_up: false,
        }
    }

    /// No answer: the connection is closed once the request is read.
    pub fn hang_up() -> Canned {
        Canned {
            hang_up: true,
            ..Canned::bytes(0, Bytes::new())
        }
    }

    pub fn with_tail(mut self, tail: Tail) -> Canned {
        self.tail = tail;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Canned {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Canned {
        self.delay = delay;
        self
    }

    pub fn with_times(mut self, times: usize) -> Canned {
        self.times = Some(times);
        self
    }

    fn into_response(self) -> Response<CannedBody> {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        let has_ct = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !has_ct {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        match b.body(CannedBody::new(self.body, self.tail)) {
            Ok(r) => r,
            Err(_) => {
                let mut r = Response::new(CannedBody::new(
                    Bytes::from_static(b"{\"message\":\"canned answer: invalid header\"}"),
                    Tail::End,
                ));
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        }
    }
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Raw path, still percent-encoded, without the query.
    pub path: String,
    /// Raw query string (without `?`), empty when absent.
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Percent-decoded value of a query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        parse_query(&self.query)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The answer to one request, given the request and the index of its TCP
/// connection (0-based, in accept order).
pub type AnswerFn =
    dyn Fn(Recorded, usize) -> Pin<Box<dyn Future<Output = Canned> + Send>> + Send + Sync;

struct Shared {
    /// Every request with its arrival time, in arrival order.
    log: Mutex<Vec<(Instant, Recorded)>>,
    /// Flipped to `true` by `shutdown()`.
    stop: watch::Sender<bool>,
    /// TCP connections accepted since start.
    connections: AtomicUsize,
    /// Requests received and not yet answered, and the most seen at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Vec<(Instant, Recorded)>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to a running canned-answer server (HTTP/1.1, keep-alive) on
/// loopback. Cheap to clone; all clones control the same server. It serves
/// until `shutdown()` or the end of the tokio runtime it was started on.
#[derive(Clone)]
pub struct CannedServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl CannedServer {
    /// Binds 127.0.0.1:0 and answers each request with `answer(request,
    /// connection)`. Panics if binding fails.
    pub async fn start(
        answer: impl Fn(&Recorded, usize) -> Canned + Send + Sync + 'static,
    ) -> CannedServer {
        let answer = Arc::new(answer);
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        CannedServer::start_on(
            addr,
            Arc::new(move |request: Recorded, connection| {
                let canned = answer(&request, connection);
                Box::pin(async move { canned })
            }),
        )
        .await
        .expect("canned-answer server: bind 127.0.0.1:0")
    }

    /// Binds `addr` and answers each request with the future `answer` returns.
    pub async fn start_on(
        addr: SocketAddr,
        answer: Arc<AnswerFn>,
    ) -> std::io::Result<CannedServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            stop: watch::channel(false).0,
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        tokio::spawn(accept_loop(listener, shared.clone(), answer));
        Ok(CannedServer { shared, addr })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes open connections (answers in flight are dropped).
    pub fn shutdown(&self) {
        self.shared.stop.send_replace(true);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log().iter().map(|(_, r)| r.clone()).collect()
    }

    pub fn request_count(&self) -> usize {
        self.shared.log().len()
    }

    /// Number of recorded requests whose raw path ends with `suffix`.
    pub fn requests_ending_with(&self, suffix: &str) -> usize {
        self.shared
            .log()
            .iter()
            .filter(|(_, r)| r.path.ends_with(suffix))
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.log().clear();
    }

    /// Every request with the time it arrived, in arrival order.
    pub fn requests_timed(&self) -> Vec<(Instant, Recorded)> {
        self.shared.log().clone()
    }

    /// TCP connections accepted since start.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight (received, not yet answered) at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, answer: Arc<AnswerFn>) {
    let mut stop = shared.stop.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = shared.connections.fetch_add(1, Ordering::SeqCst);
        let (shared, answer) = (shared.clone(), answer.clone());
        tokio::spawn(async move {
            let mut stop = shared.stop.subscribe();
            let svc_shared = shared.clone();
            let svc =
                service_fn(move |req| handle(svc_shared.clone(), answer.clone(), connection, req));
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    answer: Arc<AnswerFn>,
    connection: usize,
    req: Request<Incoming>,
) -> Result<Response<CannedBody>, std::io::Error> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let rec = Recorded {
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
        headers,
    };
    let _in_flight = InFlight::enter(&shared);
    shared.log().push((Instant::now(), rec.clone()));
    let canned = answer(rec, connection).await;
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    if canned.hang_up {
        // An error of the service: hyper closes the connection unanswered.
        return Err(std::io::Error::other("canned answer: hang up"));
    }
    Ok(canned.into_response())
}

/// A response body: whole (with its exact length, so hyper sends a
/// `content-length`), or followed by a [`Tail`] that breaks the answer.
pub struct CannedBody {
    head: Option<Bytes>,
    tail: Tail,
    /// Bytes of a `Tail::Repeat` sent so far.
    repeated: u64,
    /// The pause running now: before the cut of `Stall`, or between two
    /// chunks of a `Repeat`.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The pause before the next step is over.
    paused: bool,
}

impl CannedBody {
    fn new(head: Bytes, tail: Tail) -> CannedBody {
        CannedBody {
            head: Some(head),
            tail,
            repeated: 0,
            pause: None,
            paused: false,
        }
    }
}

impl Body for CannedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if let Some(head) = this.head.take().filter(|h| !h.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        loop {
            if let Some(pause) = this.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
                this.paused = true;
            }
            let wait = match &this.tail {
                Tail::End => return Poll::Ready(None),
                Tail::Close | Tail::Stall(_) if this.paused => {
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "canned answer: connection cut mid-body",
                    ))));
                }
                Tail::Close => {
                    // Pending once, so that hyper flushes the body first.
                    this.paused = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Tail::Stall(pause) => *pause,
                Tail::Repeat {
                    chunk,
                    limit,
                    every,
                } => {
                    let left = limit.saturating_sub(this.repeated);
                    if left == 0 || chunk.is_empty() {
                        return Poll::Ready(None);
                    }
                    if this.paused || every.is_zero() || this.repeated == 0 {
                        this.paused = false;
                        let n = (chunk.len() as u64).min(left) as usize;
                        this.repeated += n as u64;
                        return Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n)))));
                    }
                    *every
                }
            };
            this.pause = Some(Box::pin(tokio::time::sleep(wait)));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tail == Tail::End && self.head.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.tail, &self.head) {
            (Tail::End, head) => SizeHint::with_exact(head.as_ref().map_or(0, |h| h.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape or invalid UTF-8
/// (stricter than the `percent-encoding` crate, which keeps a malformed
/// escape as it is: the fake refuses what a server would).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses `a=b&c=d` (percent-decoding, `+` = space).
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |s: &str| {
            percent_decode(&s.replace('+', " "))
                .ok_or_else(|| "bad percent-encoding in query".to_string())
        };
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}
