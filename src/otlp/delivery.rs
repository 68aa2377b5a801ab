//! One export attempt, cut off at its timeout whatever the collector does,
//! and the backoff between attempts. What to retry is the transport's call
//! (the OTLP specification's retryable codes); when and what to send next
//! is the sender's (`sender`).

use super::transport::{Accepted, Body, Failure, Transport};
use crate::retry::{Backoff, Jitter};
#[cfg(test)]
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

/// The first wait after a failed attempt; it doubles up to `MAX_BACKOFF`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One export attempt of an encoded request; `timeout` is the time it has.
pub(crate) trait Export: Send + Sync {
    fn export(
        &self,
        body: Body,
        timeout: Duration,
    ) -> impl Future<Output = Result<Accepted, Failure>> + Send;

    /// Whether a stored (gzip-compressed) batch can go out as it is.
    fn takes_gzip(&self) -> bool {
        false
    }
}

impl Export for Transport {
    fn export(
        &self,
        body: Body,
        timeout: Duration,
    ) -> impl Future<Output = Result<Accepted, Failure>> + Send {
        Transport::export(self, body, timeout)
    }

    fn takes_gzip(&self) -> bool {
        Transport::takes_gzip(self)
    }
}

/// The backoff between attempts: "equal jitter" (each wait between half
/// and all of the current step), so exporters restarted together spread
/// out without ever retrying much sooner than the step. The cap keeps a
/// collector that comes back from waiting more than a few seconds for
/// the backlog.
pub(crate) fn backoff() -> Backoff {
    Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF, Jitter::Equal)
}

/// One attempt: the collector's answer, or a retryable failure when it
/// has not answered within `timeout`.
pub(crate) async fn attempt(
    export: &impl Export,
    body: Body,
    timeout: Duration,
) -> Result<Accepted, Failure> {
    match tokio::time::timeout(timeout, export.export(body, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Retryable {
            reason: format!("no answer within {:.1}s", timeout.as_secs_f64()),
            delay: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hanging;

    impl Export for Hanging {
        async fn export(&self, _: Body, _: Duration) -> Result<Accepted, Failure> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Accepted::default())
        }
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
    async fn a_hanging_collector_is_cut_off_at_the_timeout_as_retryable() {
        let start = tokio::time::Instant::now();
        let result = attempt(
            &Hanging,
            Body::Encoded(Bytes::new()),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(
            result,
            Err(Failure::Retryable {
                reason: "no answer within 2.0s".into(),
                delay: None
            })
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
