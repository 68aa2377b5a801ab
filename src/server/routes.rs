//! The routes: `METRICS_PATH`, `/healthz` and the status page at `/`, with
//! basic auth where configured. Never calls CLS itself: it asks the cache.

use super::bodies::SENDFILE_MIN_BYTES;
use super::body::Chunks;
use super::sendfile::Slot;
use super::web_config::BasicAuth;
use super::{negotiate, status_page, AppState};
use crate::metrics::exposition::Part;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
    VARY, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// `slot`: where a plain-TCP connection learns which bytes of the response
/// it may send from a file (None on TLS).
pub(crate) async fn handle(
    req: Request<Incoming>,
    state: &AppState,
    slot: Option<&Slot>,
) -> Response<Chunks> {
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
    let format = negotiate::format(header(ACCEPT));
    let gzip = negotiate::gzip(header(ACCEPT_ENCODING));
    let published = state.cache.get().await;
    let push = state.push.as_ref().map(|p| p.counts());
    let part: &Part = published.rendered.part(format);
    let tails = state.live.current(&published, push);
    // Only small parts are joined: a large one has a file copy, or, where
    // memfds are refused, must not be copied again once a second.
    let chunks = if !gzip && part.plain.len() < SENDFILE_MIN_BYTES {
        [tails.joined(part, format, &state.org), Bytes::new()]
    } else {
        [part.head(gzip), tails.chunk(part, format, gzip, &state.org)]
    };
    if let Some(slot) = slot {
        let backed = if gzip {
            None
        } else {
            published.rendered.file_backed(format)
        };
        match slot.lock() {
            Ok(mut guard) => *guard = backed,
            Err(poisoned) => *poisoned.into_inner() = backed,
        }
    }
    let mut response = Response::new(Chunks::new(chunks));
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
    let push = state.push.as_ref().map(|p| p.counts());
    let page = status_page::render(
        &state.cache.current(),
        &state.org,
        &state.metrics_path,
        state.cache.ttl(),
        push.as_ref(),
    );
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
