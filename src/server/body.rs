//! A response body of up to two ready chunks: the shared refresh part and
//! the per-scrape tail, sent without joining them.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) struct Chunks {
    chunks: [Bytes; 2],
    next: usize,
}

impl Chunks {
    pub(crate) fn new(chunks: [Bytes; 2]) -> Chunks {
        Chunks { chunks, next: 0 }
    }

    fn remaining(&self) -> u64 {
        self.chunks[self.next.min(2)..]
            .iter()
            .map(|c| c.len() as u64)
            .sum()
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        while self.next < 2 {
            let i = self.next;
            self.next += 1;
            let chunk = std::mem::take(&mut self.chunks[i]);
            if !chunk.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}
