//! A socket wrapper that ends a connection stalled either way: a client
//! that takes longer than a limit to send its next request's headers
//! (slowloris, or a kept-alive connection left idle), and one whose
//! response writes make no progress for a while (a scraper that stopped
//! reading must not hold a connection slot, and the response in memory,
//! for ever).
//!
//! The header deadline is hyper's `header_read_timeout` done once per
//! connection: hyper's allocates and registers a new timer for every
//! request, a sixth of what hyper itself spends on a small cached scrape.
//! Here one timer is pushed back instead. It runs from the first read that
//! has to wait after a response was written (or the connection opened)
//! and is paused while the request is answered, which the handler tells
//! through `Answering`: trickled header bytes do not push it back, and a
//! scrape that waits for a slow refresh is not cut off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Set by the handler when a request's headers are in; cleared by the
/// guard when the response's first bytes are written.
pub(super) type Answering = Arc<AtomicBool>;

pub(super) struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Armed while a write is pending; disarmed on any progress.
    stalled_since: Option<Pin<Box<Sleep>>>,
    head_limit: Duration,
    /// One timer for the life of the connection, reset for each request.
    head_deadline: Pin<Box<Sleep>>,
    head_armed: bool,
    answering: Answering,
}

impl<T> StallGuard<T> {
    /// `limit`: for a write without progress; `head_limit`: for the next
    /// request's headers.
    pub(super) fn new(
        inner: T,
        limit: Duration,
        head_limit: Duration,
        answering: Answering,
    ) -> Self {
        StallGuard {
            inner,
            limit,
            stalled_since: None,
            head_limit,
            head_deadline: Box::pin(tokio::time::sleep(head_limit)),
            head_armed: false,
            answering,
        }
    }

    /// Called when a read returned Pending: errors once the wait for the
    /// next request's headers outlasts `head_limit`.
    fn check_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.answering.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        if !self.head_armed {
            self.head_armed = true;
            let deadline = Instant::now() + self.head_limit;
            self.head_deadline.as_mut().reset(deadline);
        }
        match self.head_deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not send request headers in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Response bytes went out: the next request's wait starts afresh.
    fn wrote(&mut self) {
        self.stalled_since = None;
        self.head_armed = false;
        if self.answering.load(Ordering::Relaxed) {
            self.answering.store(false, Ordering::Relaxed);
        }
    }

    /// Called when a write returned Pending: errors once the stall outlasts the limit.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let limit = self.limit;
        let timer = self
            .stalled_since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Pending => self.check_head(cx),
            ready => ready,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.check_stall(cx).map(|r| r.map(|()| 0)),
            ready => {
                self.wrote();
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check_stall(cx).map(|r| r.map(|()| 0)),
            ready => {
                self.wrote();
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled_since = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const HEAD_LIMIT: Duration = Duration::from_millis(300);

    /// A guarded server side and the client's end of one connection.
    async fn pair(answering: &Answering) -> (StallGuard<TcpStream>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let guarded = StallGuard::new(
            server,
            Duration::from_secs(60),
            HEAD_LIMIT,
            answering.clone(),
        );
        (guarded, client)
    }

    /// Reads until an error (the guard's) or 5 s; the error and when it came.
    async fn read_until_error(guarded: &mut StallGuard<TcpStream>) -> (io::Error, Duration) {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let error = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Err(e) = guarded.read(&mut buf).await {
                    return e;
                }
            }
        })
        .await
        .expect("the guard ends the read, not the test's timeout");
        (error, started.elapsed())
    }

    #[tokio::test]
    async fn a_client_that_sends_no_headers_is_cut_off() {
        let (mut guarded, _client) = pair(&Answering::default()).await;
        let (error, after) = read_until_error(&mut guarded).await;
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            after >= HEAD_LIMIT && after < Duration::from_secs(2),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn trickled_header_bytes_do_not_push_the_deadline_back() {
        let (mut guarded, mut client) = pair(&Answering::default()).await;
        let trickle = tokio::spawn(async move {
            for _ in 0..40 {
                if client.write_all(b"G").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let (error, after) = read_until_error(&mut guarded).await;
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(after < HEAD_LIMIT * 2, "cut off after {after:?}");
        trickle.abort();
    }

    #[tokio::test]
    async fn a_request_being_answered_is_not_cut_off_and_the_next_wait_starts_after_the_response() {
        let answering = Answering::default();
        let (mut guarded, mut client) = pair(&answering).await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(guarded.read(&mut buf).await.unwrap() > 0);
        answering.store(true, Ordering::Relaxed); // the handler runs, slowly
        let waited = tokio::time::timeout(HEAD_LIMIT * 3, guarded.read(&mut buf)).await;
        assert!(waited.is_err(), "a read while answering ended: {waited:?}");

        tokio::time::sleep(HEAD_LIMIT).await;
        guarded.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        assert!(!answering.load(Ordering::Relaxed));
        let (error, after) = read_until_error(&mut guarded).await;
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(after >= HEAD_LIMIT, "the wait was not restarted: {after:?}");
    }

    #[tokio::test]
    async fn a_peer_that_never_reads_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _peer = tokio::net::TcpStream::connect(addr).await.unwrap(); // never reads
        let (stream, _) = listener.accept().await.unwrap();
        let mut guarded = StallGuard::new(
            stream,
            Duration::from_millis(200),
            Duration::from_secs(60),
            Answering::default(),
        );
        let chunk = vec![0u8; 1 << 20];
        let started = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                guarded.write_all(&chunk).await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        })
        .await
        .expect("the guard ends the write, not the test's timeout");
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
