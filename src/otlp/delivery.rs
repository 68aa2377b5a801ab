//! Delivering one batch per the OTLP specification: retry only what the
//! transport calls retryable, wait what the collector asks or an exponential
//! backoff with jitter, and stop at the batch's deadline or as soon as a
//! newer batch is waiting (its data replaces this one's).

use super::transport::{Accepted, Failure, Transport};
use crate::retry::{Backoff, Jitter};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use std::future::Future;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first wait after a failed attempt; it doubles up to `MAX_BACKOFF`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Shortest time worth an attempt: with less left, give up instead.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);

/// One export attempt; `timeout` is the time left for it.
pub(crate) trait Export: Send + Sync {
    fn export(
        &self,
        request: &ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<Accepted, Failure>> + Send;
}

impl Export for Transport {
    fn export(
        &self,
        request: &ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<Accepted, Failure>> + Send {
        Transport::export(self, request, timeout)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered {
        accepted: Accepted,
        attempts: u32,
    },
    Failed {
        reason: String,
        attempts: u32,
    },
    /// A newer batch arrived while this one waited to be retried.
    Superseded {
        reason: String,
        attempts: u32,
    },
}

/// The backoff between attempts: "equal jitter" (each wait between half
/// and all of the current step), so exporters restarted together spread
/// out without ever retrying much sooner than the step.
pub(crate) fn backoff() -> Backoff {
    Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF, Jitter::Equal)
}

/// Sends `request` until it is accepted, refused for good, `deadline`
/// passes, or `newer` is notified during a wait.
pub(crate) async fn deliver(
    export: &impl Export,
    request: &ExportMetricsServiceRequest,
    deadline: Instant,
    newer: Option<&Notify>,
    backoff: &mut Backoff,
) -> Outcome {
    let mut attempts = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        attempts += 1;
        let result = match tokio::time::timeout(left, export.export(request, left)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Retryable {
                reason: format!("no answer within {:.1}s", left.as_secs_f64()),
                delay: None,
            }),
        };
        let (reason, delay) = match result {
            Ok(accepted) => return Outcome::Delivered { accepted, attempts },
            Err(Failure::Permanent(reason)) => return Outcome::Failed { reason, attempts },
            Err(Failure::Retryable { reason, delay }) => (reason, delay),
        };
        let wait = delay.unwrap_or_else(|| backoff.next_wait());
        let resume = Instant::now() + wait;
        if resume + MIN_ATTEMPT > deadline {
            let reason = format!("{reason} (deadline reached)");
            return Outcome::Failed { reason, attempts };
        }
        match newer {
            Some(newer) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(resume) => {}
                    _ = newer.notified() => return Outcome::Superseded { reason, attempts },
                }
            }
            None => tokio::time::sleep_until(resume).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers from a script, then succeeds; records when each attempt came.
    struct Scripted {
        answers: Mutex<Vec<Result<Accepted, Failure>>>,
        at: Mutex<Vec<Instant>>,
        /// How long each attempt takes.
        latency: Duration,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Accepted, Failure>>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into_iter().rev().collect()),
                at: Mutex::new(Vec::new()),
                latency: Duration::ZERO,
            }
        }
    }

    impl Export for Scripted {
        async fn export(
            &self,
            _: &ExportMetricsServiceRequest,
            _: Duration,
        ) -> Result<Accepted, Failure> {
            self.at.lock().unwrap().push(Instant::now());
            tokio::time::sleep(self.latency).await;
            self.answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or(Ok(Accepted::default()))
        }
    }

    fn unavailable() -> Result<Accepted, Failure> {
        Err(Failure::Retryable {
            reason: "Unavailable".into(),
            delay: None,
        })
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_within_each_step() {
        let mut backoff = Backoff::seeded(INITIAL_BACKOFF, MAX_BACKOFF, Jitter::Equal, 42);
        let steps = [500, 1000, 2000, 4000, 5000, 5000];
        for step in steps {
            let wait = backoff.next_wait();
            let step = Duration::from_millis(step);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for step {step:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_until_accepted() {
        let export = Scripted::new(vec![unavailable(), unavailable()]);
        let start = Instant::now();
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            start + Duration::from_secs(10),
            None,
            &mut backoff(),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Delivered {
                accepted: Accepted::default(),
                attempts: 3
            }
        );
        let at = export.at.lock().unwrap();
        assert!(at[1] - at[0] >= Duration::from_millis(250));
        assert!(at[2] - at[1] >= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let export = Scripted::new(vec![Err(Failure::Permanent("InvalidArgument".into()))]);
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            Instant::now() + Duration::from_secs(10),
            None,
            &mut backoff(),
        )
        .await;
        assert_eq!(
            outcome,
            Outcome::Failed {
                reason: "InvalidArgument".into(),
                attempts: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_deadline() {
        let export = Scripted::new((0..100).map(|_| unavailable()).collect());
        let start = Instant::now();
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            start + Duration::from_secs(3),
            None,
            &mut backoff(),
        )
        .await;
        let Outcome::Failed { attempts, reason } = outcome else {
            panic!("failed: {outcome:?}")
        };
        assert!(reason.ends_with("(deadline reached)"), "{reason}");
        assert!((3..=5).contains(&attempts), "{attempts}");
        assert!(Instant::now() <= start + Duration::from_secs(3));
        assert!(export
            .at
            .lock()
            .unwrap()
            .iter()
            .all(|t| *t < start + Duration::from_secs(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_collector_is_cut_off_at_the_deadline() {
        let mut export = Scripted::new(vec![]);
        export.latency = Duration::from_secs(3600);
        let start = Instant::now();
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            start + Duration::from_secs(2),
            None,
            &mut backoff(),
        )
        .await;
        assert!(
            matches!(outcome, Outcome::Failed { attempts: 1, .. }),
            "{outcome:?}"
        );
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_collectors_retry_delay_is_honoured() {
        let export = Scripted::new(vec![Err(Failure::Retryable {
            reason: "ResourceExhausted".into(),
            delay: Some(Duration::from_secs(4)),
        })]);
        let start = Instant::now();
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            start + Duration::from_secs(10),
            None,
            &mut backoff(),
        )
        .await;
        assert!(matches!(outcome, Outcome::Delivered { attempts: 2, .. }));
        let at = export.at.lock().unwrap();
        assert_eq!(at[1] - at[0], Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_past_the_deadline_gives_up_at_once() {
        let export = Scripted::new(vec![Err(Failure::Retryable {
            reason: "ResourceExhausted".into(),
            delay: Some(Duration::from_secs(60)),
        })]);
        let start = Instant::now();
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            start + Duration::from_secs(10),
            None,
            &mut backoff(),
        )
        .await;
        assert!(matches!(outcome, Outcome::Failed { attempts: 1, .. }));
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_batch_ends_the_retries_of_the_older_one() {
        let export = Scripted::new((0..100).map(|_| unavailable()).collect());
        let newer = Notify::new();
        newer.notify_one();
        let outcome = deliver(
            &export,
            &ExportMetricsServiceRequest::default(),
            Instant::now() + Duration::from_secs(10),
            Some(&newer),
            &mut backoff(),
        )
        .await;
        assert!(matches!(outcome, Outcome::Superseded { attempts: 1, .. }));
    }
}
