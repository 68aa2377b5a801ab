//! One request to CLS with its retries: a permit of the parallelism limit,
//! the auth headers, the body cap, the request timeout, and backoff between
//! attempts, never past the refresh deadline.

use super::client::ClsClient;
use super::decode::{decode_page_from, DecodedPage, Page};
use super::error::{ClsError, Endpoint, ErrorKind};
use crate::retry::{parse_retry_after, Backoff, Jitter};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Body as _;
use hyper::body::Incoming;
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
                .attempt::<P>(endpoint, path, query, instance, deadline)
                .await;
            let error = match result {
                Ok(page) => return Ok(page),
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
            self.inner.stats.count_retry();
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: waits for a permit, sends, decodes the capped body as it
    /// arrives, all within the request timeout and the deadline. Returns the
    /// page or the error, and the server's Retry-After when it sent one.
    async fn attempt<P: Page>(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> (Result<DecodedPage<P::Item>, ClsError>, Option<Duration>) {
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
                .map_err(|e| (ErrorKind::of_transport(&e), None, None))?;
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
            let page = read_page::<P>(endpoint, path, response.into_body())
                .await
                .map_err(|kind| (kind, None, Some(status)))?;
            Ok((page, status))
        };
        let outcome = tokio::time::timeout_at(request_deadline, exchange).await;
        drop(permit);
        match outcome {
            Err(_) => {
                inner.stats.count_request(endpoint, None);
                (Err(fail(ErrorKind::Timeout)), None)
            }
            Ok(Ok((page, status))) => {
                inner.stats.count_request(endpoint, Some(status));
                (Ok(page), None)
            }
            Ok(Err((kind, retry_after, status))) => {
                inner.stats.count_request(endpoint, status);
                (Err(fail(kind)), retry_after)
            }
        }
    }
}

/// Decodes a response body as it arrives. The frames go to a decoder on
/// the blocking pool through a channel of two, so memory holds what is
/// decoded and a frame or two in flight, never the body: an endless body
/// costs what its decoder makes of it, not what it sends. A decoder that
/// has seen enough (an error, the cap) ends the reading.
async fn read_page<P: Page>(
    endpoint: Endpoint,
    path: &str,
    mut body: Incoming,
) -> Result<DecodedPage<P::Item>, ErrorKind> {
    let (frames, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let what = path.to_owned();
    let decoder = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::with_capacity(
            64 * 1024,
            FrameReader {
                rx,
                chunk: Bytes::new(),
                read: 0,
                over_cap: false,
                json: Spaces::default(),
            },
        );
        let page = decode_page_from::<P>(endpoint, &what, &mut reader);
        (page, reader.get_ref().over_cap)
    });
    let mut broken = None;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if frames.send(data).await.is_err() {
                        break; // The decoder stopped: nothing more is wanted.
                    }
                }
            }
            Some(Err(e)) => {
                broken = Some(e);
                break;
            }
        }
    }
    drop(frames);
    let (page, over_cap) = decoder
        .await
        .map_err(|e| ErrorKind::Decode(format!("the decoder stopped: {e}")))?;
    if over_cap {
        return Err(ErrorKind::TooLarge(MAX_BODY_BYTES));
    }
    if let Some(e) = broken {
        return Err(ErrorKind::Transport(format!(
            "reading the body: {}",
            crate::cause::chain(&e)
        )));
    }
    page.map_err(|e| e.kind)
}

/// The body's frames as `Read`, for the decoder; it ends at the last frame
/// and refuses to go past MAX_BODY_BYTES. White space between tokens past
/// the 64th in a row is passed over here (JSON does not care; an answer
/// padded with endless white space is then cheap to read to its cap).
struct FrameReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    chunk: Bytes,
    read: usize,
    over_cap: bool,
    json: Spaces,
}

/// Where the reader is in the JSON text, as far as white space goes.
#[derive(Default)]
struct Spaces {
    in_string: bool,
    escaped: bool,
    run: usize,
}

/// White space in a row kept as it is; more is passed over.
const SPACES_KEPT: usize = 64;

impl Spaces {
    /// Whether `b` goes on to the decoder.
    fn keep(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return true;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            self.run += 1;
            return self.run <= SPACES_KEPT;
        }
        self.run = 0;
        self.in_string = b == b'"';
        true
    }
}

impl std::io::Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n == 0 && !buf.is_empty() {
            if self.chunk.is_empty() {
                let Some(next) = self.rx.blocking_recv() else {
                    return Ok(0);
                };
                self.read += next.len();
                if self.read > MAX_BODY_BYTES {
                    self.over_cap = true;
                    return Err(std::io::Error::other("the body is larger than the cap"));
                }
                self.chunk = next;
            }
            let mut used = 0;
            for &b in self.chunk.iter() {
                if n == buf.len() {
                    break;
                }
                used += 1;
                if self.json.keep(b) {
                    buf[n] = b;
                    n += 1;
                }
            }
            bytes::Buf::advance(&mut self.chunk, used);
        }
        Ok(n)
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
    fn white_space_between_tokens_is_cut_to_a_run_of_64() {
        let pass = |text: &str| -> String {
            let mut spaces = Spaces::default();
            text.bytes()
                .filter(|b| spaces.keep(*b))
                .map(char::from)
                .collect()
        };
        let long = " ".repeat(1000);
        let kept = " ".repeat(SPACES_KEPT);
        assert_eq!(
            pass(&format!("{{{long}\"a{long}\\\"{long}\":{long}1}}")),
            format!("{{{kept}\"a{long}\\\"{long}\":{kept}1}}"),
            "inside a string (escaped quotes too) nothing is cut"
        );
        assert_eq!(pass("[1 2]"), "[1 2]", "tokens stay apart");
    }

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
