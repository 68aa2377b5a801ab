//! What the listener serves of one published refresh: the refresh part in
//! both formats, each large plain part moved into a sealed memfd, which
//! plain-TCP connections send with sendfile(2) instead of copying it into
//! the socket for every scrape, and every other reader reads through a
//! mapping of it: one copy (see `memory::sealed_copy`).

use super::sendfile::FileBacked;
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
    pub(crate) fn new(mut rendered: Rendered) -> Bodies {
        // The heap copy of a part that moved into its file is freed here.
        let move_to_file = |part: &mut Part| {
            if part.plain.len() < SENDFILE_MIN_BYTES {
                return None;
            }
            let (file, mapped) = crate::memory::sealed_copy(&part.plain)?;
            part.plain = mapped;
            Some(file)
        };
        Bodies {
            files: [
                move_to_file(&mut rendered.text),
                move_to_file(&mut rendered.openmetrics),
            ],
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
