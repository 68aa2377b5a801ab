//! Zero-copy sending of the large, shared part of plain-text bodies.
//!
//! The refresh part of a large plain body is kept in a sealed memfd and
//! read through a mapping of it (see `bodies`). A plain-TCP connection is wrapped in
//! `SendfileStream`; the handler tells it, through the connection's
//! `Slot`, which shared bytes have a file copy. When hyper hands it a write
//! whose slice lies inside those bytes, that slice goes out with
//! sendfile(2) from the memfd: the kernel sends page references instead of
//! copying the bytes into socket buffers (half the server's CPU for a
//! 600 KB body, and the reader frees references, not copies). Everything
//! else (headers, the live tail, small bodies, TLS connections) is written
//! as usual. While such a response is written the socket is corked
//! (TCP_CORK), so that it leaves in full segments.
//!
//! Matching is by address: a slice that lies inside the slot's `Bytes` is
//! a part of that very allocation (kept alive by the slot), whose copy in
//! the file is identical. Any failure of sendfile other than "would block"
//! turns the mechanism off for the connection and the bytes are written
//! from memory.

use bytes::Bytes;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Shared bytes and a file holding the same bytes from offset 0.
#[derive(Debug, Clone)]
pub(crate) struct FileBacked {
    pub(crate) bytes: Bytes,
    pub(crate) file: Arc<File>,
}

impl FileBacked {
    /// Where `slice` starts in `bytes`, when it lies wholly inside them.
    fn offset_of(&self, slice: &[u8]) -> Option<u64> {
        let start = self.bytes.as_ptr() as usize;
        let at = slice.as_ptr() as usize;
        let inside =
            !slice.is_empty() && at >= start && at + slice.len() <= start + self.bytes.len();
        inside.then(|| (at - start) as u64)
    }
}

/// What the current response of a connection may send from a file. A std
/// mutex: held for a clone, never across an await.
pub(crate) type Slot = Arc<Mutex<Option<FileBacked>>>;

pub(crate) struct SendfileStream {
    stream: TcpStream,
    slot: Slot,
    /// Set after sendfile failed in a way that will not get better.
    off: bool,
    /// TCP_CORK is on: set before the first byte of a response with a file
    /// part, cleared at hyper's flush after the response's last byte.
    corked: bool,
}

impl SendfileStream {
    pub(crate) fn new(stream: TcpStream, slot: Slot) -> SendfileStream {
        SendfileStream {
            stream,
            slot,
            off: false,
            corked: false,
        }
    }

    fn file_backed(&self) -> Option<FileBacked> {
        if self.off {
            return None;
        }
        match self.slot.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One non-blocking attempt of `op` on the socket, waiting for write
    /// readiness first (tokio clears the readiness when `op` would block).
    fn poll_op(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_io(Interest::WRITABLE, || op(&self.stream)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.as_mut().poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(backed) = self.file_backed() else {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        };
        let Some((index, offset)) = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| backed.offset_of(b).map(|offset| (i, offset)))
        else {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        };
        if !self.corked {
            // Full segments: without the cork, sendfile pushes each batch
            // of pages as it goes, and the reader pays for many small
            // segments (nginx's tcp_nopush, for the same reason). Without
            // it, sendfile still works, only less well.
            self.corked = rustix::net::sockopt::set_tcp_cork(&self.stream, true).is_ok();
        }
        if index > 0 {
            // The response head before the file part.
            return Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..index]);
        }
        let len = bufs[0].len();
        let file = backed.file.clone();
        match ready!(self.poll_op(cx, |socket| {
            let mut at = offset;
            rustix::fs::sendfile(socket, &*file, Some(&mut at), len).map_err(io::Error::from)
        })) {
            Ok(n) if n > 0 => Poll::Ready(Ok(n)),
            // A file shorter than its bytes, or a kernel or socket that
            // cannot sendfile: from memory, for the rest of the connection.
            // A broken connection fails that write too, with its own error.
            _ => {
                self.off = true;
                Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// hyper flushes once a response is written: the cork comes off and
    /// the last partial segment leaves.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.corked {
            self.corked = false;
            rustix::net::sockopt::set_tcp_cork(&self.stream, false)?;
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes as `bodies` holds them: a mapping of their sealed file.
    fn backed(bytes: &[u8]) -> FileBacked {
        let (file, bytes) = crate::memory::sealed_copy(bytes).expect("memfds work here");
        FileBacked { bytes, file }
    }

    #[test]
    fn only_slices_inside_the_bytes_have_an_offset() {
        let backed = backed(&[7u8; 100]);
        let bytes = backed.bytes.clone();
        assert_eq!(backed.offset_of(&bytes[..]), Some(0));
        assert_eq!(backed.offset_of(&bytes[40..60]), Some(40));
        assert_eq!(backed.offset_of(&bytes[99..]), Some(99));
        assert_eq!(backed.offset_of(&bytes[50..50]), None);
        let copy = bytes.to_vec();
        assert_eq!(backed.offset_of(&copy), None);
    }

    /// Head, file-backed body and tail arrive whole and in order, through
    /// a socket that fills up (the body is larger than its buffers).
    #[tokio::test]
    async fn head_body_and_tail_arrive_in_order() {
        let backed = backed(
            &(0..3_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        let body = backed.bytes.clone();
        let slot: Slot = Arc::new(Mutex::new(Some(backed)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let mut peer = TcpStream::connect(addr).await.unwrap();
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        let (stream, _) = listener.accept().await.unwrap();
        let mut sending = SendfileStream::new(stream, slot);
        let (head, tail) = (b"HEAD\r\n\r\n".to_vec(), b"tail\n".to_vec());
        let mut pieces = [&head[..], &body[..], &tail[..]];
        while pieces.iter().any(|p| !p.is_empty()) {
            let slices: Vec<IoSlice<'_>> = pieces
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| IoSlice::new(p))
                .collect();
            let mut n = sending.write_vectored(&slices).await.unwrap();
            for piece in pieces.iter_mut() {
                let take = n.min(piece.len());
                *piece = &piece[take..];
                n -= take;
            }
        }
        sending.flush().await.unwrap();
        assert!(!sending.corked, "the flush after a response uncorks");
        sending.shutdown().await.unwrap();
        drop(sending);
        let received = reader.await.unwrap();
        assert_eq!(received, [&head[..], &body[..], &tail[..]].concat());
        assert!(!received.is_empty());
    }
}
