//! One request to CLS with its retries: a permit of the parallelism limit,
//! the auth headers, the body cap, the request timeout, and backoff between
//! attempts, never past the refresh deadline.

use super::client::ClsClient;
use super::decode::{decode_page, DecodedPage, Page};
use super::error::{ClsError, Endpoint, ErrorKind};
use crate::retry::{parse_retry_after, Backoff, Jitter};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Body as _;
use hyper::header::{ACCEPT, USER_AGENT};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Largest response body read from CLS. A page of 100 items is a few hundred
/// KiB; a lease listing without paging can reach tens of MiB on a large org.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// One request may take at most this long, even with a generous SCRAPE_TIMEOUT.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 4;
/// The backoff's first step (a wait is anywhere up to it: full jitter, as
/// the requests of one refresh retry together); it doubles up to the max.
const BACKOFF_FIRST: Duration = Duration::from_millis(400);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

impl ClsClient {
    /// One GET with retries: 429, 500, 502, 503, 504, timeouts and transport
    /// failures are retried with exponential backoff and full jitter (or the
    /// server's Retry-After), never past the refresh deadline.
    pub(super) async fn get_page<P: Page>(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> Result<DecodedPage<P::Item>, ClsError> {
        let mut attempt = 0;
        let mut backoff = Backoff::new(BACKOFF_FIRST, BACKOFF_MAX, Jitter::Full);
        loop {
            let (result, retry_after) = self
                .attempt(endpoint, path, query, instance, deadline)
                .await;
            let error = match result {
                Ok(body) => return decode_page::<P>(endpoint, path, &body),
                Err(e) => e,
            };
            attempt += 1;
            if !error.retryable() || attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            // The step grows with every attempt, also one the server timed.
            let computed = backoff.next_wait();
            let wait = retry_after.unwrap_or(computed);
            if !ends_before(wait, deadline) {
                return Err(error);
            }
            tracing::debug!(
                endpoint = endpoint.label(),
                path,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying: {error}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: waits for a permit, sends, reads the capped body, all
    /// within the request timeout and the deadline. Returns the body or the
    /// error, and the server's Retry-After when it sent one.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> (Result<Bytes, ClsError>, Option<Duration>) {
        let inner = &self.inner;
        let what = format!("GET {path}");
        let fail = |kind| ClsError::new(endpoint, what.clone(), kind);
        let Ok(permit) = tokio::time::timeout_at(deadline, inner.permits.acquire()).await else {
            return (Err(fail(ErrorKind::Timeout)), None);
        };
        let request_deadline = deadline.min(Instant::now() + REQUEST_TIMEOUT);
        let uri = format!("{}{path}?{query}", inner.org_url);
        let mut request = hyper::Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("nvidia-license-server-exporter/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-api-key", inner.api_key.clone());
        if let Some(id) = instance.or(inner.service_instance_id.as_deref()) {
            request = request.header("x-nv-service-instance-id", id);
        }
        let request = match request.body(Empty::new()) {
            Ok(r) => r,
            Err(e) => {
                return (
                    Err(fail(ErrorKind::Request(format!("invalid request: {e}")))),
                    None,
                )
            }
        };
        let exchange = async {
            let response = inner
                .http
                .request(request)
                .await
                .map_err(|e| (ErrorKind::Transport(crate::cause::chain(&e)), None, None))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            if !(200..300).contains(&status) {
                return Err((ErrorKind::Status(status), retry_after, Some(status)));
            }
            // A Content-Length above the cap is refused before a byte of the
            // body is read (a chunked body is cut at the cap below).
            if response.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
                return Err((ErrorKind::TooLarge(MAX_BODY_BYTES), None, Some(status)));
            }
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    let kind = if e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        ErrorKind::TooLarge(MAX_BODY_BYTES)
                    } else {
                        ErrorKind::Transport(format!(
                            "reading the body: {}",
                            crate::cause::chain(&*e)
                        ))
                    };
                    (kind, None, Some(status))
                })?
                .to_bytes();
            Ok((body, status))
        };
        let outcome = tokio::time::timeout_at(request_deadline, exchange).await;
        drop(permit);
        match outcome {
            Err(_) => {
                inner.stats.count_request(endpoint, None);
                (Err(fail(ErrorKind::Timeout)), None)
            }
            Ok(Ok((body, status))) => {
                inner.stats.count_request(endpoint, Some(status));
                (Ok(body), None)
            }
            Ok(Err((kind, retry_after, status))) => {
                inner.stats.count_request(endpoint, status);
                (Err(fail(kind)), retry_after)
            }
        }
    }
}

/// Whether a wait that starts now ends before `deadline`. Checked, because a
/// Retry-After may ask for any number of seconds, and `Instant + Duration`
/// panics past the end of the clock.
fn ends_before(wait: Duration, deadline: Instant) -> bool {
    Instant::now()
        .checked_add(wait)
        .is_some_and(|end| end < deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cls::client::testing::{answering, client_of};

    #[test]
    fn a_wait_past_the_end_of_the_clock_ends_after_any_deadline() {
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(ends_before(Duration::from_secs(1), deadline));
        assert!(!ends_before(Duration::from_secs(60), deadline));
        assert!(!ends_before(Duration::from_secs(u64::MAX), deadline));
        assert!(!ends_before(Duration::MAX, deadline));
    }

    /// The error of a refresh against a server that answers every request
    /// with `answer`; it must come within 2 s (the deadline is 10 s away).
    async fn error_at_once(answer: &'static [u8]) -> ErrorKind {
        let base = answering(answer).await;
        let started = Instant::now();
        let error = client_of(base)
            .fetch_org(started + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        error.kind
    }

    #[tokio::test]
    async fn a_content_length_above_the_cap_is_refused_before_the_body() {
        // The body never comes: reading it would wait for the deadline.
        let kind = error_at_once(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n{\"virtualGroups\":[",
        )
        .await;
        assert_eq!(kind, ErrorKind::TooLarge(MAX_BODY_BYTES));
    }

    #[tokio::test]
    async fn a_retry_after_past_the_end_of_the_clock_fails_at_once() {
        let kind = error_at_once(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 18446744073709551615\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(kind, ErrorKind::Status(429));
    }
}
