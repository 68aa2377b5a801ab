//! OTLP push: every push interval, the published snapshot (through the
//! shared cache, so pull and push share one refresh) is mapped to one
//! `ExportMetricsServiceRequest` and sent to the collector.
//!
//! Two tasks and a mailbox of one. The ticker builds a batch per interval
//! and puts it in the mailbox, replacing one not yet taken; the sender takes
//! it and delivers it with retries. So a slow or dead collector holds at most
//! one batch in flight and one waiting, never blocks `/metrics` (which only
//! reads the cache), and newer data always replaces older.
//!
//! Layout: `mapper` (families → protobuf, pure), `transport` (one attempt
//! over gRPC or HTTP, answer classification), `delivery` (retries, backoff,
//! deadline).

pub(crate) mod delivery;
pub(crate) mod mapper;
pub(crate) mod transport;

use crate::cache::{Cache, Published, Status};
use crate::clock::unix_now;
use crate::config::OtelConfig;
use crate::metrics::family::Family;
use crate::metrics::live::{self, PushStats};
use crate::metrics::process::ProcessStats;
use delivery::{deliver, Outcome};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
pub(crate) use transport::{Material, Transport};

/// The snapshot part of the metric table for a published status (the same
/// families the text encoder gets).
pub(crate) type FamiliesFn = Arc<dyn Fn(&Status) -> Vec<Family> + Send + Sync>;

/// The running push; `shutdown` ends it with a last push.
pub(crate) struct Push<R> {
    shared: Arc<Shared<R>>,
    ticker: JoinHandle<()>,
    sender: JoinHandle<()>,
}

struct Shared<R> {
    transport: Transport,
    identity: mapper::Identity,
    families: FamiliesFn,
    stats: Arc<PushStats>,
    cache: Cache<R>,
    /// OTEL_EXPORTER_OTLP_TIMEOUT: bounds the delivery of one batch,
    /// retries included.
    timeout: Duration,
    endpoint: String,
    /// The batch waiting for the sender. A std mutex: held only to swap an
    /// `Option`, never across an await.
    mailbox: Mutex<Option<Arc<ExportMetricsServiceRequest>>>,
    /// Rung when the mailbox is filled; also cuts short the retries of an
    /// older batch.
    filled: Notify,
}

impl<R: Send + Sync + 'static> Push<R> {
    /// Starts the ticker and the sender; must run inside the runtime.
    pub(crate) fn start(
        config: &OtelConfig,
        transport: Transport,
        cache: Cache<R>,
        families: FamiliesFn,
        org: String,
        stats: Arc<PushStats>,
    ) -> Push<R> {
        let start_time = match ProcessStats::read().start_time_seconds {
            t if t > 0.0 => t,
            _ => unix_now(),
        };
        let identity = mapper::Identity {
            resource: mapper::resource_attributes(
                &config.service_name,
                &config.service_instance_id,
                env!("CARGO_PKG_VERSION"),
                &config.resource_attributes,
            ),
            org,
            scope_name: env!("CARGO_PKG_NAME"),
            scope_version: env!("CARGO_PKG_VERSION"),
            start_time,
        };
        let shared = Arc::new(Shared {
            transport,
            identity,
            families,
            stats,
            cache,
            timeout: config.timeout,
            endpoint: config.endpoint.clone(),
            mailbox: Mutex::new(None),
            filled: Notify::new(),
        });
        tracing::info!(
            endpoint = %config.endpoint,
            protocol = config.protocol.as_str(),
            interval_seconds = config.push_interval.as_secs_f64(),
            "OTLP push enabled"
        );
        Push {
            ticker: tokio::spawn(shared.clone().tick(config.push_interval)),
            sender: tokio::spawn(shared.clone().send()),
            shared,
        }
    }

    /// Stops both tasks and pushes what is published now (no refresh),
    /// giving up after `within`.
    pub(crate) async fn shutdown(self, within: Duration) {
        self.ticker.abort();
        self.sender.abort();
        let shared = self.shared;
        let published = shared.cache.current();
        if published.status.timestamp == 0.0 {
            tracing::info!("no refresh attempted yet: no last OTLP push");
            return;
        }
        let request = shared.build(&published);
        let deadline = Instant::now() + within.min(shared.timeout);
        let mut backoff = delivery::backoff();
        let outcome = deliver(&shared.transport, &request, deadline, None, &mut backoff).await;
        shared.record(outcome, "last OTLP push");
    }
}

impl<R: Send + Sync + 'static> Shared<R> {
    fn build(&self, published: &Published<R>) -> ExportMetricsServiceRequest {
        let snapshot = (self.families)(&published.status);
        let live = live::read(Some(self.stats.counts()));
        mapper::request(
            &self.identity,
            &snapshot,
            published.status.timestamp,
            &live,
            unix_now(),
        )
    }

    /// One batch per interval; the first at once. A tick that comes while
    /// the previous batch still waits replaces it.
    async fn tick(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let published = self.cache.get().await;
            let request = Arc::new(self.build(&published));
            let replaced = match self.mailbox.lock() {
                Ok(mut slot) => slot.replace(request),
                Err(poisoned) => poisoned.into_inner().replace(request),
            };
            if replaced.is_some() {
                self.stats.failed();
                tracing::warn!(
                    "OTLP push: the previous batch was still waiting for the collector and was replaced by a newer one"
                );
            }
            self.filled.notify_one();
        }
    }

    fn take(&self) -> Option<Arc<ExportMetricsServiceRequest>> {
        match self.mailbox.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    async fn send(self: Arc<Self>) {
        let mut next = None;
        loop {
            let request = match next.take() {
                Some(request) => request,
                None => {
                    self.filled.notified().await;
                    match self.take() {
                        Some(request) => request,
                        None => continue,
                    }
                }
            };
            let deadline = Instant::now() + self.timeout;
            let mut backoff = delivery::backoff();
            let outcome = deliver(
                &self.transport,
                &request,
                deadline,
                Some(&self.filled),
                &mut backoff,
            )
            .await;
            if matches!(outcome, Outcome::Superseded { .. }) {
                next = self.take();
            }
            self.record(outcome, "OTLP push");
        }
    }

    fn record(&self, outcome: Outcome, what: &str) {
        let endpoint = self.endpoint.as_str();
        match outcome {
            Outcome::Delivered { accepted, attempts } if accepted.rejected > 0 => {
                self.stats.accepted(true);
                tracing::warn!(
                    endpoint,
                    attempts,
                    rejected_data_points = accepted.rejected,
                    "{what}: the collector rejected some data points: {}",
                    accepted.message
                );
            }
            Outcome::Delivered { accepted, attempts } => {
                self.stats.accepted(false);
                if accepted.message.is_empty() {
                    tracing::debug!(endpoint, attempts, "{what} delivered");
                } else {
                    tracing::info!(
                        endpoint,
                        attempts,
                        "{what} delivered; the collector says: {}",
                        accepted.message
                    );
                }
            }
            Outcome::Failed { reason, attempts } => {
                self.stats.failed();
                tracing::warn!(endpoint, attempts, "{what} failed: {reason}");
            }
            Outcome::Superseded { reason, attempts } => {
                self.stats.failed();
                tracing::warn!(
                    endpoint,
                    attempts,
                    "{what} not delivered before a newer batch replaced it: {reason}"
                );
            }
        }
    }
}
