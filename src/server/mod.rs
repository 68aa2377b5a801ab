//! The HTTP listener: the accept loop with its limits (header read timeout,
//! concurrent connections, write stalls), listener TLS, and the graceful
//! drain on shutdown. The routes are in `routes`.
//!
//! - `routes`: what each path answers; `negotiate`: format and gzip;
//!   `body`: two-chunk bodies; `bodies`: what a refresh serves, with the
//!   memfd copies; `live_tail`: the shared per-scrape tail;
//! - `sendfile`: zero-copy plain bodies; `stall_guard`: the write-stall
//!   and header-read deadlines; `web_config`: listener TLS and basic auth; `listen`: the
//!   listen address; `status_page`: the page at `/`; `healthcheck`: the
//!   subcommand that asks a running exporter.

mod bodies;
mod body;
pub(crate) mod healthcheck;
pub(crate) mod listen;
mod live_tail;
mod negotiate;
mod routes;
mod sendfile;
mod stall_guard;
pub(crate) mod status_page;
pub(crate) mod web_config;

pub(crate) use bodies::Bodies;

use crate::cache::Cache;
use crate::metrics::live::PushStats;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use live_tail::LiveTails;
use sendfile::{SendfileStream, Slot};
use stall_guard::{Answering, StallGuard};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use web_config::BasicAuth;

/// A client must send its request headers within this time (slowloris).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// A response write that makes no progress for this long ends its
/// connection (a client that stopped reading).
pub(crate) const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight responses may take to finish after SIGTERM.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct AppState {
    pub cache: Cache<Bodies>,
    pub metrics_path: String,
    pub org: String,
    /// Present when the OTLP push is enabled: its counters are live values.
    pub push: Option<Arc<PushStats>>,
    /// TLS for the listener (`--web.config.file`), when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Basic auth for every route but (with `healthz_open`) `/healthz`.
    pub auth: Option<Arc<BasicAuth>>,
    pub healthz_open: bool,
    /// The rendered live tail of the bodies, shared by the scrapes of the
    /// last `live_tail::LIVE_MAX_AGE`.
    live: LiveTails,
}

impl AppState {
    pub(crate) fn new(
        cache: Cache<Bodies>,
        metrics_path: String,
        org: String,
        push: Option<Arc<PushStats>>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        auth: Option<Arc<BasicAuth>>,
        healthz_open: bool,
    ) -> AppState {
        AppState {
            cache,
            metrics_path,
            org,
            push,
            tls,
            auth,
            healthz_open,
            live: LiveTails::default(),
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// exchanges finish within `DRAIN_TIMEOUT`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    // No hyper header_read_timeout: StallGuard keeps that deadline, with
    // one timer per connection instead of one per request.
    let http = hyper::server::conn::http1::Builder::new();
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
            let answering = Answering::default();
            let service = {
                let state = state.clone();
                let slot = slot.clone();
                let answering = answering.clone();
                service_fn(move |req| {
                    answering.store(true, std::sync::atomic::Ordering::Relaxed);
                    let state = state.clone();
                    let slot = slot.clone();
                    async move { Ok::<_, Infallible>(routes::handle(req, &state, slot.as_ref()).await) }
                })
            };
            match (&state.tls, slot) {
                (None, Some(slot)) => {
                    let io = TokioIo::new(guarded(SendfileStream::new(stream, slot), &answering));
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
                (None, None) => {
                    let io = TokioIo::new(guarded(stream, &answering));
                    let _ = watcher.watch(http.serve_connection(io, service)).await;
                }
                // The handshake gets the header read timeout too: a client
                // that opens TLS and goes quiet must not hold a slot.
                (Some(acceptor), _) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let io = TokioIo::new(guarded(tls, &answering));
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

fn guarded<T>(io: T, answering: &Answering) -> StallGuard<T> {
    StallGuard::new(
        io,
        WRITE_STALL_TIMEOUT,
        HEADER_READ_TIMEOUT,
        answering.clone(),
    )
}

#[cfg(test)]
mod tests;
