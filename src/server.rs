//! The HTTP listener: routes (`METRICS_PATH`, `/healthz`, `/`), limits
//! (header read timeout, concurrent connections) and graceful shutdown.
//! Never calls CLS itself: it asks the cache.

use crate::cache::Cache;
use crate::metrics::exposition::Part;
use crate::metrics::families::{process_families, push_families};
use crate::metrics::process::ProcessStats;
use crate::metrics::text::Format;
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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
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
            let service = {
                let state = state.clone();
                service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(req, &state).await) }
                })
            };
            match &state.tls {
                None => {
                    let io = TokioIo::new(StallGuard::new(stream, WRITE_STALL_TIMEOUT));
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
                // The handshake gets the header read timeout too: a client
                // that opens TLS and goes quiet must not hold a slot.
                Some(acceptor) => {
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

async fn handle(req: Request<Incoming>, state: &AppState) -> Response<Chunks> {
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
        if !open && !authorized(auth, &req).await {
            let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"nvidia-license-server-exporter\""),
            );
            return response;
        }
    }
    if path == state.metrics_path {
        metrics(&req, state).await
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

async fn metrics(req: &Request<Incoming>, state: &AppState) -> Response<Chunks> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = Format::negotiate(header(ACCEPT));
    let gzip = accepts_gzip(header(ACCEPT_ENCODING));
    let published = state.cache.get().await;
    let mut live = match &state.push {
        Some(push) => push_families(&push.counts()),
        None => Vec::new(),
    };
    live.extend(process_families(&ProcessStats::read()));
    let part: &Part = published.rendered.part(format);
    let body = part.body(&live, &state.org, format, gzip);
    let mut response = Response::new(Chunks::new(body));
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
