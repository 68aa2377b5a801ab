//! OTLP push: every push interval, the published snapshot (through the
//! shared cache, so pull and push share one refresh) is mapped to one
//! `ExportMetricsServiceRequest`, encoded and compressed once, and handed
//! to the sender as a batch stamped with the snapshot's collection time.
//!
//! Two tasks. The ticker builds a batch per interval; the sender delivers
//! the backlog oldest first. A batch the collector does not take waits in
//! the backlog (and in OTEL_SPOOL_DIR when set) instead of being replaced
//! by a newer one, so an outage leaves no gap once the collector is back.
//! Neither task ever blocks `/metrics`, which only reads the cache;
//! encoding, compression and file work run on the blocking pool.
//!
//! Layout: `mapper` (families → protobuf, pure), `transport` (one attempt
//! over gRPC or HTTP, answer classification), `codec` (encoded bytes over
//! tonic), `delivery` (an attempt's timeout, the backoff), `backlog` (the
//! waiting batches, caps, replay groups; pure), `spool` (batches as files),
//! `sender` (the backlog's owner).

pub(crate) mod backlog;
mod codec;
pub(crate) mod delivery;
pub(crate) mod mapper;
mod sender;
pub(crate) mod spool;
pub(crate) mod transport;

use crate::cache::{Cache, Published, Status};
use crate::clock::unix_now;
use crate::config::OtelConfig;
use crate::metrics::family::Family;
use crate::metrics::live::{self, PushStats};
use crate::metrics::process::ProcessStats;
use prost::Message;
use sender::Sender;
pub(crate) use spool::Spool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
pub(crate) use transport::{Material, Transport};

/// The snapshot part of the metric table for a published status (the same
/// families the text encoder gets).
pub(crate) type FamiliesFn = Arc<dyn Fn(&Status) -> Vec<Family> + Send + Sync>;

/// The running push; `shutdown` ends it with a last push.
pub(crate) struct Push<R> {
    builder: Arc<Builder<R>>,
    sender: Arc<Sender<Transport>>,
    /// True once the spool is read back: batches built before would take
    /// sequence numbers the spool's batches may hold.
    loaded: watch::Receiver<bool>,
    ticker: JoinHandle<()>,
    sending: JoinHandle<()>,
}

/// What makes a batch out of a published snapshot.
struct Builder<R> {
    identity: mapper::Identity,
    families: FamiliesFn,
    stats: Arc<PushStats>,
    cache: Cache<R>,
}

impl<R: Send + Sync + 'static> Push<R> {
    /// Starts the sender (which first reads the spool back) and the ticker
    /// (whose first batch waits for that, so that it joins the backlog
    /// behind the spooled batches); must run inside the runtime.
    pub(crate) fn start(
        config: &OtelConfig,
        transport: Transport,
        spool: Option<Spool>,
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
        let backlog = &config.backlog;
        tracing::info!(
            endpoint = %config.endpoint,
            protocol = config.protocol.as_str(),
            interval_seconds = config.push_interval.as_secs_f64(),
            spool = ?spool.as_ref().map(|s| s.dir().display().to_string()),
            "OTLP push enabled"
        );
        let sender = Arc::new(Sender::new(
            transport,
            spool,
            stats.clone(),
            (config.timeout, backlog.request_max_bytes),
            (backlog.max_age, backlog.max_bytes),
            config.endpoint.clone(),
        ));
        let builder = Arc::new(Builder {
            identity,
            families,
            stats,
            cache,
        });
        let (loaded, ready) = watch::channel(false);
        let sending = tokio::spawn({
            let sender = sender.clone();
            async move {
                sender.load().await;
                let _ = loaded.send(true);
                sender.run().await;
            }
        });
        let ticker = tokio::spawn(tick(
            builder.clone(),
            sender.clone(),
            ready.clone(),
            config.push_interval,
        ));
        Push {
            builder,
            sender,
            loaded: ready,
            ticker,
            sending,
        }
    }

    /// Stops the ticker, adds a last batch of what is published now (no
    /// refresh; unless the newest waiting batch has that snapshot) and lets the sender deliver what it can within `within`:
    /// what is left stays in the spool, or is lost (and logged).
    pub(crate) async fn shutdown(self, within: Duration) {
        let deadline = Instant::now() + within;
        self.ticker.abort();
        let mut loaded = self.loaded.clone();
        let ready = tokio::time::timeout_at(deadline, loaded.wait_for(|done| *done)).await;
        let published = self.builder.cache.current();
        let time = published.status.timestamp;
        if !matches!(ready, Ok(Ok(_))) {
            tracing::info!("the spool is still being read: no last OTLP push");
        } else if time == 0.0 {
            tracing::info!("no refresh attempted yet: no last OTLP push");
        } else if self.sender.newest() == Some(time) {
            // A waiting batch already carries this snapshot: a second one
            // would send its series twice at one time.
            tracing::debug!("the last snapshot is already in the backlog: no last batch");
        } else {
            self.builder.batch(&published, &self.sender).await;
        }
        self.sender.stop(deadline);
        let mut sending = self.sending;
        if tokio::time::timeout_at(deadline, &mut sending)
            .await
            .is_err()
        {
            sending.abort();
            let _ = sending.await;
        }
        self.sender.finish().await;
    }
}

impl<R: Send + Sync + 'static> Builder<R> {
    /// Maps, encodes and compresses one batch (on the blocking pool: a
    /// large org is megabytes), and hands it to the sender.
    async fn batch(&self, published: &Published<R>, sender: &Sender<Transport>) {
        let snapshot = (self.families)(&published.status);
        let live = live::read(Some(self.stats.counts()));
        let time = published.status.timestamp;
        let request = mapper::request(&self.identity, &snapshot, time, &live, unix_now());
        drop(snapshot);
        let encoded = tokio::task::spawn_blocking(move || {
            let encoded = request.encode_to_vec();
            (encoded.len() as u64, backlog::compress(&encoded))
        })
        .await;
        match encoded {
            Ok((raw_len, payload)) => sender.enqueue(time, raw_len, payload).await,
            Err(e) => tracing::error!("OTLP push: a batch could not be built: {e}"),
        }
    }
}

/// One batch per interval, the first once the spool is read back.
async fn tick<R: Send + Sync + 'static>(
    builder: Arc<Builder<R>>,
    sender: Arc<Sender<Transport>>,
    mut ready: watch::Receiver<bool>,
    interval: Duration,
) {
    let _ = ready.wait_for(|loaded| *loaded).await;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let published = builder.cache.get().await;
        builder.batch(&published, &sender).await;
    }
}
