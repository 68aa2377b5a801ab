//! The sender: owns the backlog and sends it to the collector, oldest
//! first, one request at a time (several batches a request, up to
//! OTEL_BACKLOG_REQUEST_MAX_BYTES). A batch leaves only when the collector
//! accepted it, or refused it for good, or a cap dropped it.
//!
//! Once an attempt fails, every waiting batch is also written to the spool
//! (when there is one) as it comes, so that a crash during an outage loses
//! at most the batch being written. While the collector answers, batches
//! go out without touching the disk.
//!
//! One request at a time paces the replay by the collector's own answers:
//! a backlog drains as fast as the collector takes it, never faster.

use super::backlog::{self, Backlog, Entry, Meta};
use super::delivery::{self, Export};
use super::spool::{self, Spool};
use super::transport::{Accepted, Body, Failure};
use crate::clock::unix_now;
use crate::metrics::live::{DropReason, PushStats};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Batches in one replay request at most, however small: bounds the work
/// of one merge and the resource metrics of one request.
const MAX_BATCHES_PER_REQUEST: usize = 1024;

pub(crate) struct Sender<E> {
    export: E,
    spool: Option<Arc<Spool>>,
    stats: Arc<PushStats>,
    /// OTEL_EXPORTER_OTLP_TIMEOUT: bounds one attempt.
    timeout: Duration,
    request_max_bytes: u64,
    endpoint: String,
    /// A std mutex: held to change the backlog, never across an await.
    state: Mutex<State>,
    /// Rung when a batch joins and when the push stops.
    changed: Notify,
}

/// Where a request's batches are: in memory, or to be read from the spool.
type Part = (Meta, Result<Bytes, PathBuf>);

struct State {
    backlog: Backlog,
    /// Failed attempts since the collector last accepted a request.
    failed_attempts: u64,
    /// The kinds of drop already logged since the last accepted request.
    drops_logged: [bool; 4],
    /// A spool write failed and none has succeeded since (logged once).
    spool_failing: bool,
    /// After a request of several batches was refused: how many batches
    /// still go one a request, so that one bad batch takes only itself.
    one_by_one: usize,
    /// Set when the push stops: attempts end by then, and none is retried.
    stop_by: Option<Instant>,
}

impl<E: Export> Sender<E> {
    pub(crate) fn new(
        export: E,
        spool: Option<Spool>,
        stats: Arc<PushStats>,
        (timeout, request_max_bytes): (Duration, u64),
        (max_age, max_bytes): (Duration, u64),
        endpoint: String,
    ) -> Sender<E> {
        Sender {
            export,
            spool: spool.map(Arc::new),
            stats,
            timeout,
            request_max_bytes,
            endpoint,
            state: Mutex::new(State {
                backlog: Backlog::new(max_age, max_bytes),
                failed_attempts: 0,
                drops_logged: [false; 4],
                spool_failing: false,
                one_by_one: 0,
                stop_by: None,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &State) {
        let b = &state.backlog;
        self.stats.backlog(b.len(), b.bytes(), b.oldest());
    }

    /// Reads the spool back, before the first batch of this run is built.
    pub(crate) async fn load(&self) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let scan = match tokio::task::spawn_blocking(move || spool.scan()).await {
            Ok(Ok(scan)) => scan,
            Ok(Err(e)) => {
                tracing::warn!("cannot list OTEL_SPOOL_DIR, starting without its batches: {e}");
                return;
            }
            Err(_) => return,
        };
        if scan.interrupted > 0 {
            tracing::info!(
                files = scan.interrupted,
                "removed the temporary files of spool writes a stop cut short"
            );
        }
        for rejected in &scan.rejected {
            let aside = if rejected.moved {
                ", moved into corrupt/"
            } else {
                ""
            };
            tracing::warn!(
                file = %rejected.path.display(),
                "OTEL_SPOOL_DIR holds a file that is not a batch{aside}: {}",
                rejected.why
            );
        }
        self.stats.dropped(DropReason::Corrupt, scan.rejected.len());
        let found = scan.batches.len();
        let dropped = {
            let mut state = self.state();
            let mut dropped = Vec::new();
            for (meta, path) in scan.batches {
                let entry = Entry {
                    meta,
                    payload: None,
                    file: Some(path),
                };
                let over = state.backlog.insert(entry);
                dropped.extend(over.into_iter().map(|e| (e, DropReason::Size)));
            }
            let old = state.backlog.expire(unix_now());
            dropped.extend(old.into_iter().map(|e| (e, DropReason::Age)));
            self.publish(&state);
            dropped
        };
        if found > 0 {
            tracing::info!(
                batches = found,
                "sending the batches found in OTEL_SPOOL_DIR, oldest first"
            );
        }
        self.discard(dropped).await;
    }

    /// A new batch joins the backlog, behind every older one.
    pub(crate) async fn enqueue(&self, time: f64, raw_len: u64, payload: Vec<u8>) {
        let dropped = {
            let mut state = self.state();
            let meta = Meta {
                time,
                seq: state.backlog.next_seq(),
                raw_len,
                stored_len: (spool::HEADER_LEN + payload.len()) as u64,
            };
            let entry = Entry {
                meta,
                payload: Some(Bytes::from(payload)),
                file: None,
            };
            let over = state.backlog.insert(entry);
            let mut dropped: Vec<_> = over.into_iter().map(|e| (e, DropReason::Size)).collect();
            let old = state.backlog.expire(unix_now());
            dropped.extend(old.into_iter().map(|e| (e, DropReason::Age)));
            self.publish(&state);
            dropped
        };
        self.changed.notify_one();
        self.discard(dropped).await;
    }

    /// Sends until stopped: the oldest batches, one request at a time.
    pub(crate) async fn run(&self) {
        let mut backoff = delivery::backoff();
        loop {
            let (group, stop_by, failing, dropped) = {
                let mut state = self.state();
                let old = state.backlog.expire(unix_now());
                let dropped: Vec<_> = old.into_iter().map(|e| (e, DropReason::Age)).collect();
                let most = match state.one_by_one {
                    0 => MAX_BATCHES_PER_REQUEST,
                    _ => 1,
                };
                let group = state.backlog.head(self.request_max_bytes, most);
                self.publish(&state);
                (group, state.stop_by, state.failed_attempts > 0, dropped)
            };
            self.discard(dropped).await;
            if group.is_empty() {
                if stop_by.is_some() {
                    return;
                }
                self.changed.notified().await;
                continue;
            }
            if failing {
                self.persist().await;
            }
            let Some((seqs, body)) = self.body(&group).await else {
                continue;
            };
            let timeout = match stop_by {
                Some(by) => self
                    .timeout
                    .min(by.saturating_duration_since(Instant::now())),
                None => self.timeout,
            };
            if timeout.is_zero() {
                return;
            }
            let bytes = body.len();
            let attempt = delivery::attempt(&self.export, body, timeout);
            tokio::pin!(attempt);
            // In an outage a batch that joins during a long attempt (a
            // collector that does not answer) goes to disk at once too.
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    _ = self.changed.notified(), if failing => self.persist().await,
                }
            };
            match result {
                Ok(accepted) => {
                    self.accepted(&seqs, bytes, accepted).await;
                    backoff = delivery::backoff();
                }
                Err(Failure::Permanent(reason)) => self.refused(&seqs, &reason).await,
                Err(Failure::Retryable { reason, delay }) => {
                    let stopping = self.failed(&reason);
                    self.persist().await;
                    if stopping {
                        return;
                    }
                    self.wait(delay.unwrap_or_else(|| backoff.next_wait()))
                        .await;
                }
            }
        }
    }

    /// The backoff wait, during which batches that join are written to the
    /// spool as they come; a stop ends it.
    async fn wait(&self, wait: Duration) {
        let resume = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(resume) => return,
                _ = self.changed.notified() => {
                    if self.state().stop_by.is_some() {
                        return;
                    }
                    self.persist().await;
                }
            }
        }
    }

    /// The request of `group`: read from memory or the spool and merged on
    /// the blocking pool; one batch to a transport that takes gzip goes as
    /// stored. A damaged batch is dropped (None: pick again).
    async fn body(&self, group: &[Meta]) -> Option<(Vec<u64>, Body)> {
        let parts: Vec<Part> = {
            let state = self.state();
            group
                .iter()
                .filter_map(|meta| {
                    let entry = state.backlog.get(meta.seq)?;
                    let at = match (&entry.payload, &entry.file) {
                        (Some(payload), _) => Ok(payload.clone()),
                        (None, Some(path)) => Err(path.clone()),
                        (None, None) => return None,
                    };
                    Some((entry.meta, at))
                })
                .collect()
        };
        if parts.is_empty() {
            return None;
        }
        let seqs: Vec<u64> = parts.iter().map(|(m, _)| m.seq).collect();
        let spool = self.spool.clone();
        let as_stored = parts.len() == 1 && self.export.takes_gzip();
        let merged = tokio::task::spawn_blocking(move || {
            let mut batches = Vec::with_capacity(parts.len());
            for (meta, at) in parts {
                let payload = match (at, &spool) {
                    (Ok(payload), _) => payload,
                    (Err(path), Some(spool)) => spool
                        .read(&path, &meta)
                        .map(Bytes::from)
                        .map_err(|why| (meta.seq, why))?,
                    (Err(_), None) => return Err((meta.seq, "no spool to read it from".into())),
                };
                batches.push((meta, payload));
            }
            match batches.pop() {
                Some((_, payload)) if as_stored => Ok(Body::Gzipped(payload)),
                last => {
                    batches.extend(last);
                    backlog::merge(&batches).map(Body::Encoded)
                }
            }
        })
        .await;
        match merged {
            Ok(Ok(body)) => Some((seqs, body)),
            Ok(Err((seq, why))) => {
                self.damaged(seq, &why).await;
                None
            }
            Err(_) => None,
        }
    }

    async fn damaged(&self, seq: u64, why: &str) {
        let entries = {
            let mut state = self.state();
            let entries = state.backlog.remove(&[seq]);
            self.publish(&state);
            entries
        };
        self.stats.dropped(DropReason::Corrupt, entries.len());
        let spool = self.spool.clone();
        for entry in entries {
            tracing::warn!(
                collected_at = entry.meta.time,
                "a waiting OTLP batch is damaged and was dropped: {why}"
            );
            if let (Some(path), Some(spool)) = (entry.file, spool.clone()) {
                let _ = tokio::task::spawn_blocking(move || spool.set_aside(&path)).await;
            }
        }
    }

    async fn accepted(&self, seqs: &[u64], bytes: usize, accepted: Accepted) {
        let (entries, failed, waiting) = {
            let mut state = self.state();
            let entries = state.backlog.remove(seqs);
            let failed = std::mem::take(&mut state.failed_attempts);
            state.drops_logged = [false; 4];
            state.one_by_one = state.one_by_one.saturating_sub(1);
            self.publish(&state);
            (entries, failed, state.backlog.len())
        };
        self.stats.accepted(accepted.rejected > 0);
        let endpoint = self.endpoint.as_str();
        if failed > 0 {
            tracing::info!(
                endpoint,
                failed_attempts = failed,
                waiting,
                "the OTLP collector accepts batches again; the backlog follows, oldest first"
            );
        }
        if accepted.rejected > 0 {
            tracing::warn!(
                endpoint,
                rejected_data_points = accepted.rejected,
                "OTLP push: the collector rejected some data points: {}",
                accepted.message
            );
        } else if !accepted.message.is_empty() {
            tracing::info!(
                endpoint,
                "OTLP push delivered; the collector says: {}",
                accepted.message
            );
        }
        tracing::debug!(
            endpoint,
            batches = entries.len(),
            bytes,
            waiting,
            "OTLP push delivered"
        );
        self.remove_files(entries).await;
    }

    async fn refused(&self, seqs: &[u64], reason: &str) {
        self.stats.failed();
        let endpoint = self.endpoint.as_str();
        if seqs.len() > 1 {
            self.state().one_by_one = seqs.len();
            tracing::warn!(
                endpoint,
                batches = seqs.len(),
                "OTLP push: the collector refused a request of several batches, sending them one a request: {reason}"
            );
            return;
        }
        let entries = {
            let mut state = self.state();
            state.one_by_one = state.one_by_one.saturating_sub(1);
            state.failed_attempts = 0;
            let entries = state.backlog.remove(seqs);
            self.publish(&state);
            entries
        };
        self.stats.dropped(DropReason::Rejected, entries.len());
        for entry in &entries {
            tracing::warn!(
                endpoint,
                collected_at = entry.meta.time,
                "OTLP push: the collector refused a batch for good, dropped: {reason}"
            );
        }
        self.remove_files(entries).await;
    }

    /// Counts a failed attempt; whether the push is stopping.
    fn failed(&self, reason: &str) -> bool {
        self.stats.failed();
        let mut state = self.state();
        state.failed_attempts += 1;
        let endpoint = self.endpoint.as_str();
        let waiting = state.backlog.len();
        if state.failed_attempts == 1 {
            tracing::warn!(
                endpoint,
                waiting,
                "OTLP push failed; batches are kept and sent once the collector answers: {reason}"
            );
        } else {
            tracing::debug!(
                endpoint,
                waiting,
                attempts = state.failed_attempts,
                "OTLP push failed again: {reason}"
            );
        }
        state.stop_by.is_some()
    }

    /// Writes the batches only in memory to the spool, oldest first; the
    /// first failure ends the round (a full disk is not asked again at once).
    async fn persist(&self) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let pending = self.state().backlog.unwritten();
        for (meta, payload) in pending {
            let writer = spool.clone();
            let written = tokio::task::spawn_blocking(move || writer.write(&meta, &payload)).await;
            match written {
                Ok(Ok(path)) => {
                    let orphan = {
                        let mut state = self.state();
                        if std::mem::take(&mut state.spool_failing) {
                            tracing::info!("OTEL_SPOOL_DIR takes batches again");
                        }
                        (!state.backlog.written(meta.seq, path.clone())).then_some(path)
                    };
                    // Delivered or dropped while it was being written.
                    if let Some(path) = orphan {
                        let remover = spool.clone();
                        let _ = tokio::task::spawn_blocking(move || remover.remove(&path)).await;
                    }
                }
                Ok(Err(e)) => {
                    self.stats.spool_write_failed();
                    let first = !std::mem::replace(&mut self.state().spool_failing, true);
                    if first {
                        tracing::warn!(
                            dir = %spool.dir().display(),
                            "cannot write to OTEL_SPOOL_DIR, keeping batches in memory: {e}"
                        );
                    } else {
                        tracing::debug!("cannot write to OTEL_SPOOL_DIR: {e}");
                    }
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// Counts and logs batches a cap dropped (the first of each kind since
    /// the collector last accepted a request at warn), and removes their
    /// files.
    async fn discard(&self, dropped: Vec<(Entry, DropReason)>) {
        if dropped.is_empty() {
            return;
        }
        let mut entries = Vec::with_capacity(dropped.len());
        for (entry, reason) in dropped {
            self.stats.dropped(reason, 1);
            let first = !std::mem::replace(&mut self.state().drops_logged[reason as usize], true);
            let why = match reason {
                DropReason::Age => "older than OTEL_BACKLOG_MAX_AGE",
                _ => "past OTEL_BACKLOG_MAX_BYTES",
            };
            if first {
                tracing::warn!(
                    collected_at = entry.meta.time,
                    "an undelivered OTLP batch was dropped, {why} (further drops are logged at debug)"
                );
            } else {
                tracing::debug!(
                    collected_at = entry.meta.time,
                    "an undelivered OTLP batch was dropped, {why}"
                );
            }
            entries.push(entry);
        }
        self.remove_files(entries).await;
    }

    async fn remove_files(&self, entries: Vec<Entry>) {
        let Some(spool) = self.spool.clone() else {
            return;
        };
        let files: Vec<PathBuf> = entries.into_iter().filter_map(|e| e.file).collect();
        if files.is_empty() {
            return;
        }
        let removed = tokio::task::spawn_blocking(move || {
            files
                .iter()
                .map(|path| spool.remove(path))
                .find_map(Result::err)
        })
        .await;
        if let Ok(Some(e)) = removed {
            tracing::warn!("cannot remove a delivered batch from OTEL_SPOOL_DIR (it will be sent again at the next start): {e}");
        }
    }

    /// The collection time of the newest waiting batch.
    pub(crate) fn newest(&self) -> Option<f64> {
        self.state().backlog.newest()
    }

    /// From now on: attempts end by `by`, and a failed one is not retried.
    pub(crate) fn stop(&self, by: Instant) {
        self.state().stop_by = Some(by);
        self.changed.notify_one();
    }

    /// After the last attempt: what is left stays in the spool, or is lost.
    pub(crate) async fn finish(&self) {
        let left = self.state().backlog.len();
        if left == 0 {
            return;
        }
        if self.spool.is_none() {
            tracing::warn!(
                batches = left,
                "{left} undelivered OTLP batches are lost at shutdown (set OTEL_SPOOL_DIR to keep them)"
            );
            return;
        }
        self.persist().await;
        let state = self.state();
        let lost = state.backlog.unwritten().len();
        let kept = left - lost;
        tracing::info!(
            batches = kept,
            "{kept} undelivered OTLP batches stay in OTEL_SPOOL_DIR for the next start"
        );
        if lost > 0 {
            tracing::warn!(
                batches = lost,
                "{lost} undelivered OTLP batches could not be written and are lost"
            );
        }
    }
}

#[cfg(test)]
mod tests;
