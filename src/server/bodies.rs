//! What the listener serves of one published refresh: the refresh part in
//! both formats, and a file copy (a memfd) of each large plain part, which
//! plain-TCP connections send with sendfile(2) instead of copying it into
//! the socket for every scrape.

use super::sendfile::{memfd_with, FileBacked};
use crate::metrics::exposition::{Part, Rendered};
use crate::metrics::text::Format;
use std::fs::File;
use std::sync::Arc;

/// Plain parts from this size on get a file copy for sendfile: below it,
/// the extra system calls cost more than the copy they save.
pub(crate) const SENDFILE_MIN_BYTES: usize = 64 * 1024;

pub(crate) struct Bodies {
    rendered: Rendered,
    /// The plain part of each format in a memfd, for parts of
    /// SENDFILE_MIN_BYTES and more where the kernel allows memfds.
    files: [Option<Arc<File>>; 2],
}

fn index(format: Format) -> usize {
    match format {
        Format::Text004 => 0,
        Format::OpenMetrics => 1,
    }
}

impl Bodies {
    pub(crate) fn new(rendered: Rendered) -> Bodies {
        let copy = |part: &Part| {
            (part.plain.len() >= SENDFILE_MIN_BYTES)
                .then(|| memfd_with(&part.plain))
                .flatten()
        };
        Bodies {
            files: [copy(&rendered.text), copy(&rendered.openmetrics)],
            rendered,
        }
    }

    pub(crate) fn part(&self, format: Format) -> &Part {
        self.rendered.part(format)
    }

    /// The plain part of `format` and its file copy, when it has one.
    pub(crate) fn file_backed(&self, format: Format) -> Option<FileBacked> {
        let file = self.files[index(format)].as_ref()?;
        Some(FileBacked {
            bytes: self.part(format).plain.clone(),
            file: file.clone(),
        })
    }
}
