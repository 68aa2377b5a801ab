//! Fake NVIDIA Cloud License Service (CLS) over plain HTTP on loopback: owns the
//! imitation of the CLS REST API (see docs in `cls-api.md`), its pagination
//! variants, fault injection, a hold gate, a request log, and a synthetic org
//! generator for benchmarks. Used by integration tests and the `fake-cls` example.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
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
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The fixture org (`proto-tests/fixtures/org.json`) most tests serve.
pub fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto-tests/fixtures/org.json");
    let text = std::fs::read_to_string(path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Page size used when a paginating fake gets no (or a zero) `page-size`.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Which totals appear in `paginationInfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Totals {
    Pages,
    Records,
    #[default]
    Both,
    None,
}

/// Key names used inside `paginationInfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyStyle {
    /// `pageNumber`, `pageSize`, `totalPages`, `totalRecords`.
    #[default]
    Standard,
    /// `currentPage`, `size`, `totalPages`, `totalElements`.
    Alternate,
}

/// Pagination behaviour of the list endpoints. `Default` = disabled: whole list
/// in one answer, `paginationInfo` describing one page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paging {
    /// When false the whole list is served in one answer.
    pub enabled: bool,
    /// Number of the first page (0 or 1). A missing page-number, or one below
    /// `base`, means the first page. When disabled, reported as the page number.
    pub base: u32,
    /// The server caps `page-size` to this.
    pub max_page_size: Option<usize>,
    /// Which totals appear in `paginationInfo`.
    pub totals: Totals,
    /// Key names inside `paginationInfo`.
    pub key_style: KeyStyle,
    /// No `paginationInfo` key at all.
    pub omit_info: bool,
    /// Always serve the first page whatever `page-number` says.
    pub ignore_page_number: bool,
    /// Also paginate the license-pools and leases endpoints (off by default:
    /// real CLS is not known to paginate them). Adds `paginationInfo` there.
    pub paginate_sub_resources: bool,
}

impl Paging {
    /// Paging enabled with the given first-page number (0 or 1), all other fields default.
    pub fn enabled(base: u32) -> Paging {
        Paging {
            enabled: true,
            base,
            ..Paging::default()
        }
    }
}

/// What follows a canned body: nothing (a complete answer), or a fault of
/// the connection that carries it. With a `content-length` header (see
/// [`Canned::with_header`]) the body is sent under that length whatever its
/// real size; without one, a body with a tail is sent chunked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tail {
    /// The body is complete.
    #[default]
    End,
    /// The connection is cut right after the body (a moment after, so that
    /// what came before is on the wire first).
    Close,
    /// Nothing more for this long (the connection stays open), then it is cut.
    Stall(Duration),
    /// `chunk` again and again until `limit` bytes followed the body, or the
    /// peer goes away. A limit keeps even an "endless" body bounded.
    Repeat { chunk: Bytes, limit: u64 },
}

/// A canned answer for fault injection (see [`FakeCls::set_override`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canned {
    pub status: u16,
    /// Bytes, not text: a fault may be invalid UTF-8.
    pub body: Bytes,
    /// What follows the body.
    pub tail: Tail,
    /// Extra response headers. `content-type: application/json` is added unless given here.
    pub headers: Vec<(String, String)>,
    /// Extra delay before answering (after the global latency).
    pub delay: Duration,
    /// Apply only to the next N matching requests, then fall through. `None` = forever.
    pub times: Option<usize>,
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

    /// Status with the given body bytes (which need not be UTF-8).
    pub fn bytes(status: u16, body: impl Into<Bytes>) -> Canned {
        Canned {
            status,
            body: body.into(),
            tail: Tail::End,
            headers: Vec::new(),
            delay: Duration::ZERO,
            times: None,
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
}

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
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

/// Sees every authenticated request before it is routed, and may change the
/// served document (see [`FakeCls::set_on_request`]).
pub type Hook = Arc<dyn Fn(&Recorded, &mut Value) + Send + Sync>;

struct State {
    org: Value,
    on_request: Option<Hook>,
    api_key: String,
    paging: Paging,
    latency: Duration,
    compressed_leases: bool,
    leases_all_only: bool,
    leases_plain_only: bool,
    overrides: Vec<(String, Canned)>,
    requests: Vec<Recorded>,
    /// Arrival time of each entry of `requests`, same index.
    arrivals: Vec<Instant>,
}

struct Inner {
    state: Mutex<State>,
    /// `true` while held.
    gate: watch::Sender<bool>,
    /// Flipped to `true` by `shutdown()`.
    stop: watch::Sender<bool>,
    /// TCP connections accepted since start.
    connections: AtomicUsize,
    /// Requests received and not yet answered, and the most seen at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to a running fake. Cheap to clone; all clones control the same server.
#[derive(Clone)]
pub struct FakeCls {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl FakeCls {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime. Panics if binding fails.
    pub async fn start(org: Value, api_key: &str) -> FakeCls {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        FakeCls::start_on(addr, org, api_key)
            .await
            .expect("fake CLS: bind 127.0.0.1:0")
    }

    /// Binds `addr` and serves on the current tokio runtime.
    pub async fn start_on(addr: SocketAddr, org: Value, api_key: &str) -> std::io::Result<FakeCls> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (gate, _) = watch::channel(false);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                org,
                on_request: None,
                api_key: api_key.to_string(),
                paging: Paging::default(),
                latency: Duration::ZERO,
                compressed_leases: false,
                leases_all_only: false,
                leases_plain_only: false,
                overrides: Vec::new(),
                requests: Vec::new(),
                arrivals: Vec::new(),
            }),
            gate,
            stop,
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let acc = inner.clone();
        tokio::spawn(accept_loop(listener, acc));
        Ok(FakeCls { inner, addr })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `org` field of the served document.
    pub fn org_name(&self) -> String {
        org_name(&self.inner.lock().org).to_string()
    }

    /// Stops accepting and closes open connections (in-flight answers are dropped).
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
    }

    pub fn set_org(&self, org: Value) {
        self.inner.lock().org = org;
    }

    /// Calls `hook` with every authenticated request that no override
    /// answers, before it is routed, with the served document to change: an
    /// org that changes between two pages of one listing.
    pub fn set_on_request(&self, hook: impl Fn(&Recorded, &mut Value) + Send + Sync + 'static) {
        self.inner.lock().on_request = Some(Arc::new(hook));
    }

    pub fn set_api_key(&self, key: &str) {
        self.inner.lock().api_key = key.to_string();
    }

    pub fn set_paging(&self, paging: Paging) {
        self.inner.lock().paging = paging;
    }

    /// Delay before each answer.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().latency = latency;
    }

    /// Answer leases as `{"compressedClients": base64(gzip({"clients":[...]}))}`.
    pub fn set_compressed_leases(&self, on: bool) {
        self.inner.lock().compressed_leases = on;
    }

    /// `/leases` answers 404; only `/leases/all` works.
    pub fn set_leases_all_only(&self, on: bool) {
        self.inner.lock().leases_all_only = on;
    }

    /// `/leases/all` answers 404: an older deployment that serves `/leases` alone.
    pub fn set_leases_plain_only(&self, on: bool) {
        self.inner.lock().leases_plain_only = on;
    }

    /// Requests whose path (no query, after `/v1/org/{org}`; raw or
    /// percent-decoded) ends with `path_suffix` get `resp` instead. Replaces an
    /// existing override with the same suffix. Checked after the API key.
    pub fn set_override(&self, path_suffix: &str, resp: Canned) {
        let mut st = self.inner.lock();
        if let Some(slot) = st.overrides.iter_mut().find(|(s, _)| s == path_suffix) {
            slot.1 = resp;
        } else {
            st.overrides.push((path_suffix.to_string(), resp));
        }
    }

    pub fn clear_overrides(&self) {
        self.inner.lock().overrides.clear();
    }

    /// Every request (including those already waiting) waits until `release()`.
    /// Requests are recorded on arrival, before waiting.
    pub fn hold(&self) {
        self.inner.gate.send_replace(true);
    }

    pub fn release(&self) {
        self.inner.gate.send_replace(false);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.inner.lock().requests.len()
    }

    /// Number of recorded requests whose raw path ends with `suffix`.
    pub fn requests_ending_with(&self, suffix: &str) -> usize {
        let st = self.inner.lock();
        st.requests
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .count()
    }

    pub fn clear_requests(&self) {
        let mut st = self.inner.lock();
        st.requests.clear();
        st.arrivals.clear();
    }

    /// Every request with the time it arrived, in arrival order.
    pub fn requests_timed(&self) -> Vec<(Instant, Recorded)> {
        let st = self.inner.lock();
        st.arrivals
            .iter()
            .copied()
            .zip(st.requests.iter().cloned())
            .collect()
    }

    /// TCP connections accepted since start.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight (received, not yet answered) at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> InFlight<'a> {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
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
        inner.connections.fetch_add(1, Ordering::SeqCst);
        let inner = inner.clone();
        tokio::spawn(async move {
            let mut stop = inner.stop.subscribe();
            let svc_inner = inner.clone();
            let svc = service_fn(move |req| handle(svc_inner.clone(), req));
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

/// An answer before it becomes an HTTP response.
struct Reply {
    status: u16,
    body: Bytes,
    tail: Tail,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            body: Bytes::from(body.to_string()),
            tail: Tail::End,
            headers: Vec::new(),
        }
    }

    fn message(status: u16, msg: &str) -> Reply {
        Reply::json(status, &json!({ "message": msg }))
    }

    fn not_found() -> Reply {
        Reply::message(404, "not found")
    }

    fn into_response(self) -> Response<FakeBody> {
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
        match b.body(FakeBody::new(self.body, self.tail)) {
            Ok(r) => r,
            Err(_) => {
                let mut r = Response::new(FakeBody::new(
                    Bytes::from_static(b"{\"message\":\"fake CLS: invalid canned header\"}"),
                    Tail::End,
                ));
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }
        }
    }
}

/// A response body: whole (with its exact length, so hyper sends a
/// `content-length`), or followed by a [`Tail`] that breaks the answer.
pub struct FakeBody {
    head: Option<Bytes>,
    tail: Tail,
    /// Bytes of a `Tail::Repeat` sent so far.
    repeated: u64,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl FakeBody {
    fn new(head: Bytes, tail: Tail) -> FakeBody {
        FakeBody {
            head: Some(head),
            tail,
            repeated: 0,
            stall: None,
        }
    }
}

impl Body for FakeBody {
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
        let cut = || std::io::Error::other("fake CLS: connection cut mid-body");
        match &this.tail {
            Tail::End => Poll::Ready(None),
            Tail::Close | Tail::Stall(_) => {
                let pause = match &this.tail {
                    Tail::Stall(pause) => *pause,
                    _ => Duration::from_millis(50),
                };
                let sleep = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(cut()))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Tail::Repeat { chunk, limit } => {
                let left = limit.saturating_sub(this.repeated);
                if left == 0 || chunk.is_empty() {
                    return Poll::Ready(None);
                }
                let n = (chunk.len() as u64).min(left) as usize;
                this.repeated += n as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk.slice(..n)))))
            }
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

async fn handle(
    inner: Arc<Inner>,
    req: Request<Incoming>,
) -> Result<Response<FakeBody>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
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
        path: path.clone(),
        query: query.clone(),
        headers,
    };
    let _in_flight = InFlight::enter(&inner);
    let latency = {
        let mut st = inner.lock();
        st.requests.push(rec.clone());
        st.arrivals.push(Instant::now());
        st.latency
    };

    let mut gate = inner.gate.subscribe();
    let _ = gate.wait_for(|held| !*held).await;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    // Auth first, then fault injection, then the normal routes.
    let canned = {
        let mut st = inner.lock();
        if rec.header("x-api-key") != Some(st.api_key.as_str()) {
            return Ok(Reply::message(401, "unauthorized").into_response());
        }
        take_override(&mut st, &path)
    };
    if let Some(c) = canned {
        if !c.delay.is_zero() {
            tokio::time::sleep(c.delay).await;
        }
        return Ok(Reply {
            status: c.status,
            body: c.body,
            tail: c.tail,
            headers: c.headers,
        }
        .into_response());
    }

    let reply = {
        let mut st = inner.lock();
        if let Some(hook) = st.on_request.clone() {
            hook(&rec, &mut st.org);
        }
        route(&st, req.method(), &rec)
    };
    Ok(reply.into_response())
}

/// The part of a raw path after `/v1/org/{org}` (the whole path if it has no such prefix).
fn after_org(path: &str) -> &str {
    match path.strip_prefix("/v1/org/") {
        Some(rest) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "",
        },
        None => path,
    }
}

fn take_override(st: &mut State, path: &str) -> Option<Canned> {
    let raw = after_org(path);
    let decoded = percent_decode(raw).unwrap_or_else(|| raw.to_string());
    let idx = st.overrides.iter().position(|(suffix, c)| {
        c.times != Some(0) && (raw.ends_with(suffix.as_str()) || decoded.ends_with(suffix.as_str()))
    })?;
    let entry = &mut st.overrides[idx].1;
    let out = entry.clone();
    if let Some(n) = entry.times.as_mut() {
        *n -= 1;
        if *n == 0 {
            st.overrides.remove(idx);
        }
    }
    Some(out)
}

fn org_name(org: &Value) -> &str {
    org.get("org").and_then(Value::as_str).unwrap_or("")
}

fn id_matches(id: &Value, wanted: &str) -> bool {
    match id {
        Value::String(s) => s == wanted,
        // An integral float (`7.0`) is the id `7`, as the exporter reads it.
        Value::Number(n) => {
            n.to_string() == wanted
                || matches!((n.as_i64(), wanted.parse::<i64>()), (Some(a), Ok(b)) if a == b)
                || matches!((n.as_f64(), wanted.parse::<f64>()), (Some(a), Ok(b)) if a == b)
        }
        _ => false,
    }
}

fn array_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `v` without `keys`. Only the kept fields are cloned: a group's servers
/// and leases (most of a generated org) are never copied just to be dropped.
fn without(v: &Value, keys: &[&str]) -> Value {
    match v.as_object() {
        Some(obj) => Value::Object(
            obj.iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => v.clone(),
    }
}

fn route(st: &State, method: &Method, rec: &Recorded) -> Reply {
    if method != Method::GET {
        return Reply::not_found();
    }
    let Some(rest) = rec.path.strip_prefix("/v1/org/") else {
        return Reply::not_found();
    };
    let mut raw_segs = rest.split('/');
    let mut segs = Vec::new();
    for s in raw_segs.by_ref() {
        match percent_decode(s) {
            Some(d) => segs.push(d),
            None => return Reply::message(400, "bad percent-encoding in path"),
        }
    }
    let query = match parse_query(&rec.query) {
        Ok(q) => q,
        Err(e) => return Reply::message(400, &e),
    };
    if segs.first().map(String::as_str) != Some(org_name(&st.org)) {
        return Reply::not_found();
    }
    let segs: Vec<&str> = segs[1..].iter().map(String::as_str).collect();
    let groups = array_of(&st.org, "virtualGroups");

    match segs.as_slice() {
        ["virtual-groups"] => {
            let items = groups
                .iter()
                .map(|g| without(g, &["licenseServers", "leases"]))
                .collect();
            list_reply(st, &query, "virtualGroups", items, true, Map::new())
        }
        ["virtual-groups", vg, rest @ ..] => {
            let Some(group) = groups
                .iter()
                .find(|g| g.get("id").is_some_and(|id| id_matches(id, vg)))
            else {
                return Reply::not_found();
            };
            let servers = array_of(group, "licenseServers");
            match rest {
                ["license-servers"] => {
                    let items = servers
                        .iter()
                        .map(|s| without(s, &["licensePools"]))
                        .collect();
                    let mut extra = Map::new();
                    extra.insert("productFamily".into(), json!([]));
                    list_reply(st, &query, "licenseServers", items, true, extra)
                }
                ["license-servers", server, "license-pools"] => {
                    let Some(srv) = servers
                        .iter()
                        .find(|s| s.get("id").is_some_and(|id| id_matches(id, server)))
                    else {
                        return Reply::not_found();
                    };
                    let items = array_of(srv, "licensePools").to_vec();
                    list_reply(st, &query, "licensePools", items, false, Map::new())
                }
                ["leases"] if st.leases_all_only => Reply::not_found(),
                ["leases", "all"] if st.leases_plain_only => Reply::not_found(),
                ["leases"] | ["leases", "all"] => {
                    let sid = rec.header("x-nv-service-instance-id").unwrap_or("");
                    let clients = group
                        .get("leases")
                        .and_then(|l| l.get(sid))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    leases_reply(st, &query, clients)
                }
                _ => Reply::not_found(),
            }
        }
        _ => Reply::not_found(),
    }
}

fn leases_reply(st: &State, query: &[(String, String)], clients: Vec<Value>) -> Reply {
    if !st.compressed_leases {
        return list_reply(st, query, "clients", clients, false, Map::new());
    }
    let (page, info) = match paginate(st, query, clients, false) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let inner = json!({ "clients": page }).to_string();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let gz = match enc.write_all(inner.as_bytes()).and_then(|_| enc.finish()) {
        Ok(gz) => gz,
        Err(_) => return Reply::message(500, "gzip failed"),
    };
    let mut body = Map::new();
    body.insert("compressedClients".into(), Value::String(base64(&gz)));
    if let Some(info) = info {
        body.insert("paginationInfo".into(), info);
    }
    Reply::json(200, &Value::Object(body))
}

fn list_reply(
    st: &State,
    query: &[(String, String)],
    key: &str,
    items: Vec<Value>,
    is_list_endpoint: bool,
    mut body: Map<String, Value>,
) -> Reply {
    let (page, info) = match paginate(st, query, items, is_list_endpoint) {
        Ok(p) => p,
        Err(r) => return r,
    };
    body.insert(key.to_string(), Value::Array(page));
    if let Some(info) = info {
        body.insert("paginationInfo".into(), info);
    }
    Reply::json(200, &Value::Object(body))
}

fn query_usize(query: &[(String, String)], name: &str) -> Result<Option<usize>, Reply> {
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| Reply::message(400, &format!("invalid {name}"))),
    }
}

/// Returns the page of `items` and the `paginationInfo` to send (if any).
fn paginate(
    st: &State,
    query: &[(String, String)],
    items: Vec<Value>,
    is_list_endpoint: bool,
) -> Result<(Vec<Value>, Option<Value>), Reply> {
    let p = &st.paging;
    let page_number = query_usize(query, "page-number")?;
    let page_size = query_usize(query, "page-size")?;
    let applies = is_list_endpoint || p.paginate_sub_resources;
    if !applies {
        return Ok((items, None));
    }
    let total = items.len();
    if !p.enabled {
        let info = (!p.omit_info).then(|| info(p, p.base as usize, total, total, 1));
        return Ok((items, info));
    }
    let base = p.base as usize;
    let mut size = page_size.filter(|s| *s > 0).unwrap_or(DEFAULT_PAGE_SIZE);
    if let Some(max) = p.max_page_size {
        size = size.min(max.max(1));
    }
    let number = match page_number {
        Some(n) if !p.ignore_page_number && n >= base => n,
        _ => base,
    };
    let start = (number - base).saturating_mul(size);
    let page: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let total_pages = total.div_ceil(size);
    let info = (!p.omit_info).then(|| info(p, number, size, total, total_pages));
    Ok((page, info))
}

fn info(p: &Paging, number: usize, size: usize, records: usize, pages: usize) -> Value {
    let (k_num, k_size, k_pages, k_records) = match p.key_style {
        KeyStyle::Standard => ("pageNumber", "pageSize", "totalPages", "totalRecords"),
        KeyStyle::Alternate => ("currentPage", "size", "totalPages", "totalElements"),
    };
    let mut m = Map::new();
    m.insert(k_num.into(), json!(number));
    m.insert(k_size.into(), json!(size));
    if matches!(p.totals, Totals::Pages | Totals::Both) {
        m.insert(k_pages.into(), json!(pages));
    }
    if matches!(p.totals, Totals::Records | Totals::Both) {
        m.insert(k_records.into(), json!(records));
    }
    Value::Object(m)
}

/// Decodes `%XX` escapes; `None` on a malformed escape or invalid UTF-8.
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
fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
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

/// Standard-alphabet base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        if chunk.len() > 1 {
            out.push(ALPHABET[(n >> 6) as usize & 63] as char);
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(ALPHABET[n as usize & 63] as char);
        } else {
            out.push('=');
        }
    }
    out
}

const GEN_FEATURES: [(&str, &str); 4] = [
    ("Quadro-Virtual-DWS", "NVIDIA RTX Virtual Workstation"),
    ("GRID-Virtual-PC", "NVIDIA Virtual PC"),
    ("GRID-Virtual-Apps", "NVIDIA Virtual Applications"),
    ("NVIDIA-vComputeServer", "NVIDIA Virtual Compute Server"),
];

/// Synthetic org for benchmarks. Server `s` (0-based) belongs to group
/// `s % groups` (ids 1..=groups), has `2 + s % 2` features (names
/// `GEN_FEATURES[(s + j) % 4]`), one pool and serviceInstanceId `sid-{s:06}`.
/// Lease `k` (unique leaseId `lease-{k:08}`, leaseCount 1) goes to server
/// `k % servers`, feature `(k / servers) % nfeatures`; clients hold up to 4 leases
/// each and carry `license_server_id`. With `groups == 0` the org is empty;
/// with `servers == 0` there are no leases.
pub fn generate_org(org: &str, groups: usize, servers: usize, leases: usize) -> Value {
    let servers = if groups == 0 { 0 } else { servers };
    let leases = if servers == 0 { 0 } else { leases };
    let nfeat = |s: usize| 2 + s % 2;
    let server_id = |s: usize| format!("{:08x}-0000-4000-8000-{:012x}", s % groups + 1, s);
    let feat_id = |s: usize, j: usize| format!("{}-f{}", server_id(s), j);

    // Per server: clients, and in-use counts per feature.
    let mut clients: Vec<Vec<Value>> = vec![Vec::new(); servers];
    let mut in_use: Vec<Vec<u64>> = (0..servers).map(|s| vec![0; nfeat(s)]).collect();
    let mut pending: Vec<Vec<Value>> = vec![Vec::new(); servers];
    for k in 0..leases {
        let s = k % servers;
        let local = k / servers;
        let j = local % nfeat(s);
        in_use[s][j] += 1;
        pending[s].push(json!({
            "leaseId": format!("lease-{k:08}"),
            "featureName": GEN_FEATURES[(s + j) % 4].0,
            "leaseCount": 1,
            "licenseAllotmentFeatureId": feat_id(s, j),
        }));
        if pending[s].len() == 4 || k + servers >= leases {
            let n = clients[s].len();
            clients[s].push(json!({
                "clientId": format!("client-{s}-{n}"),
                "leases": std::mem::take(&mut pending[s]),
                "additionalProperties": {
                    "license_server_id": server_id(s),
                    "license_server_name": format!("ls-{s:06}"),
                },
            }));
        }
    }

    let mut vgs: Vec<Value> = Vec::with_capacity(groups);
    for g in 0..groups {
        let gid = g + 1;
        let gname = format!("vg-{gid:04}");
        let features: Vec<Value> = GEN_FEATURES
            .iter()
            .map(|(f, p)| {
                json!({
                    "featureName": f, "featureVersion": "17.0", "productName": p,
                    "productFamily": "vGPU", "namespace": "NVIDIA",
                    "licenseType": "CONCURRENT_COUNTED_SINGLE",
                    "startDate": "2025-01-01T00:00:00Z", "endDate": "2027-12-31",
                    "totalQuantity": 100000, "inUseQuantity": 0,
                    "unassignedQuantity": 0, "overagePercent": 0,
                    "availableOverageQuantity": 0,
                })
            })
            .collect();
        let mut srvs = Vec::new();
        let mut lease_map = Map::new();
        for s in (g..servers).step_by(groups) {
            let id = server_id(s);
            let sid = format!("sid-{s:06}");
            let sfeats: Vec<Value> = (0..nfeat(s))
                .map(|j| {
                    let (f, p) = GEN_FEATURES[(s + j) % 4];
                    json!({
                        "id": feat_id(s, j), "featureName": f, "productName": p,
                        "licenseType": "CONCURRENT_COUNTED_SINGLE",
                        "totalQuantity": in_use[s][j].max(10) * 2,
                    })
                })
                .collect();
            let pool_feats: Vec<Value> = (0..nfeat(s))
                .map(|j| {
                    json!({
                        "licenseServerFeatureId": feat_id(s, j),
                        "totalAllotment": in_use[s][j].max(10) * 2,
                        "inUse": in_use[s][j],
                    })
                })
                .collect();
            srvs.push(json!({
                "id": id, "name": format!("ls-{s:06}"), "status": "ENABLED",
                "virtualGroupId": gid, "virtualGroupName": gname,
                "deployedOn": "CLOUD", "leasingMode": "STANDARD",
                "serviceInstanceId": sid,
                "licenseServerFeatures": sfeats,
                "licensePools": [ { "id": format!("{id}-pool"), "name": "default",
                                    "licensePoolFeatures": pool_feats } ],
            }));
            lease_map.insert(sid, Value::Array(std::mem::take(&mut clients[s])));
        }
        vgs.push(json!({
            "id": gid, "name": gname, "isDefault": g == 0,
            "entitlements": [ {
                "id": format!("ent-{gid}"),
                "entitlementProductKeys": [ { "id": format!("pk-{gid}"),
                                              "entitlementFeatures": features } ],
            } ],
            "licenseServers": srvs,
            "leases": lease_map,
        }));
    }
    json!({ "org": org, "virtualGroups": vgs })
}
