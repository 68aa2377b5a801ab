//! Waiting between attempts, for both clients (CLS and OTLP): exponential
//! backoff with jitter, and the server's `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Where in each step of the backoff a wait falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Jitter {
    /// Anywhere from 0 to the step ("full jitter"): the most spread, for
    /// many requests of one refresh retrying at once against CLS.
    Full,
    /// From half the step to all of it ("equal jitter"): never much shorter
    /// than the step, for one batch retried against a collector.
    Equal,
}

/// Exponential backoff: the step starts at `first` and doubles up to `max`;
/// each wait is a random point of the step as `jitter` says.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    step: Duration,
    max: Duration,
    jitter: Jitter,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration, jitter: Jitter) -> Backoff {
        Backoff::seeded(first, max, jitter, seed())
    }

    pub(crate) fn seeded(first: Duration, max: Duration, jitter: Jitter, seed: u64) -> Backoff {
        Backoff {
            step: first.min(max),
            max,
            jitter,
            // xorshift must not start at 0.
            rng: seed | 1,
        }
    }

    pub(crate) fn next_wait(&mut self) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(2).min(self.max);
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let floor = match self.jitter {
            Jitter::Full => Duration::ZERO,
            Jitter::Equal => step / 2,
        };
        let spread = (step - floor).as_nanos() as u64;
        floor + Duration::from_nanos(self.rng % (spread + 1))
    }
}

/// A seed that differs between processes and between calls; jitter needs
/// spread, not unpredictability.
fn seed() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    nanos ^ (u64::from(std::process::id()) << 32) ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// `Retry-After` as delay-seconds or an HTTP-date, as a wait from `now` (0
/// for a date in the past). None for anything else. A date is counted in
/// whole seconds, the unit both the header and the clock of the server that
/// sent it have.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let seconds = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    };
    let at = seconds(httpdate::parse_http_date(value).ok()?)?;
    Some(Duration::from_secs(at.saturating_sub(seconds(now)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_within_its_step() {
        let mut backoff = Backoff::new(
            Duration::from_millis(400),
            Duration::from_secs(5),
            Jitter::Full,
        );
        for attempt in 0..20 {
            let cap = Duration::from_millis(400)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(5));
            assert!(backoff.next_wait() <= cap);
        }
    }

    #[test]
    fn waits_are_spread() {
        let waits: std::collections::HashSet<Duration> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1), Jitter::Full)
                    .next_wait()
            })
            .collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(784_111_770_900);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", SystemTime::now()),
            Some(Duration::ZERO),
            "a date in the past: at once"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn http_dates_of_any_width_but_the_fixed_one_are_refused() {
        let now = SystemTime::now();
        for value in [
            "Fri, 31 Dec 99999999999999999 23:59:59 GMT",
            "Fri, 31 Dec 2025 99999999999999:00:00 GMT",
            "Fri, 031 Dec 2025 23:59:59 GMT",
            "Fri, 31 Dec 2025 23:59 GMT",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value}");
        }
    }
}
