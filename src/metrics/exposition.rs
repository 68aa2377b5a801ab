//! Ready-to-send exposition bodies. The refresh part is rendered and
//! compressed once per refresh; a scrape only appends the small live part
//! (process figures), so serving a fresh cache copies no large buffer and
//! compresses a few hundred bytes at most.
//!
//! gzip without recompressing the large part: the refresh part is deflated
//! up to a sync flush (byte-aligned, not final), and each scrape appends a
//! final deflate block holding the live part, then the CRC-32 (continued
//! from the refresh part's) and the length. The result is one ordinary gzip
//! member.
//!
//! No I/O: the listener keeps its own file copy of large parts for
//! sendfile(2).

use super::family::Family;
use super::text::{encode, Format, Prepared};
use bytes::Bytes;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use std::io::Write;

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
const OPENMETRICS_EOF: &str = "# EOF\n";

/// One format's refresh part, plain and as the head of a gzip member.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub plain: Bytes,
    gzip_head: Bytes,
    crc: u32,
}

/// The refresh part in both formats.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub text: Part,
    pub openmetrics: Part,
}

impl Rendered {
    pub(crate) fn new(families: &[Family<'_>], org: &str) -> Rendered {
        // Label sets are escaped once for both formats.
        let prepared = Prepared::new(families, org);
        let render = |format| {
            // Allocated once at (nearly) its size, then cut to it: a large
            // body grown by doubling would hold up to twice its bytes.
            let mut out = String::with_capacity(prepared.encoded_len_bound(format));
            prepared.encode(&mut out, format);
            out.shrink_to_fit();
            Part::new(out.into_bytes())
        };
        Rendered {
            text: render(Format::Text004),
            openmetrics: render(Format::OpenMetrics),
        }
    }

    pub(crate) fn part(&self, format: Format) -> &Part {
        match format {
            Format::Text004 => &self.text,
            Format::OpenMetrics => &self.openmetrics,
        }
    }
}

impl Part {
    fn new(plain: Vec<u8>) -> Part {
        let mut encoder = DeflateEncoder::new(GZIP_HEADER.to_vec(), Compression::default());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(&plain);
        let _ = encoder.flush();
        let gzip_head = std::mem::take(encoder.get_mut());
        Part {
            crc: crc32fast::hash(&plain),
            plain: Bytes::from(plain),
            gzip_head: Bytes::from(gzip_head),
        }
    }

    /// The whole body as two chunks, the refresh part shared (not copied):
    /// the live families and, for OpenMetrics, `# EOF` come after it (the
    /// listener's live tail does the same for a scrape).
    #[cfg(test)]
    pub(crate) fn body(
        &self,
        live: &[Family],
        org: &str,
        format: Format,
        gzip: bool,
    ) -> [Bytes; 2] {
        let live = live_text(live, org, format);
        [self.head(gzip), self.tail(&live, gzip)]
    }

    /// The first chunk of a body: this part, plain or as the head of a gzip
    /// member; a reference to the shared bytes.
    pub(crate) fn head(&self, gzip: bool) -> Bytes {
        if gzip {
            self.gzip_head.clone()
        } else {
            self.plain.clone()
        }
    }

    /// The second chunk of a body, given the live text (`live_text`): as it
    /// is, or as the final deflate block and the gzip trailer that continue
    /// this part's head.
    pub(crate) fn tail(&self, live: &Bytes, gzip: bool) -> Bytes {
        if !gzip {
            return live.clone();
        }
        let mut encoder =
            DeflateEncoder::new(Vec::with_capacity(live.len() / 2 + 32), Compression::fast());
        let _ = encoder.write_all(live);
        let mut end = encoder.finish().unwrap_or_default();
        let mut crc = crc32fast::Hasher::new_with_initial(self.crc);
        crc.update(live);
        let length = (self.plain.len() + live.len()) as u32; // ISIZE is the length mod 2^32
        end.extend_from_slice(&crc.finalize().to_le_bytes());
        end.extend_from_slice(&length.to_le_bytes());
        Bytes::from(end)
    }
}

/// The text that follows the refresh part in every body of `format`: the
/// live families and, for OpenMetrics, `# EOF`.
pub fn live_text(live: &[Family<'_>], org: &str, format: Format) -> Bytes {
    let mut tail = String::with_capacity(1024);
    encode(&mut tail, live, org, format);
    if format == Format::OpenMetrics {
        tail.push_str(OPENMETRICS_EOF);
    }
    Bytes::from(tail.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::{Desc, Kind, Unit};
    use std::io::Read;

    static D: Desc = Desc {
        name: "x_bytes",
        help: "X.",
        kind: Kind::Gauge,
        unit: Unit::Bytes,
        labels: &["l"],
        org_label: true,
    };

    fn family(n: usize) -> Vec<Family<'static>> {
        // Test data lives for the test process: leaked, it can be borrowed.
        let value = |i: usize| -> &'static str { Box::leak(format!("v{i}").into_boxed_str()) };
        vec![Family::raw(&D, (0..n).map(|i| (vec![value(i)], i as f64)))]
    }

    fn gunzip(chunks: &[Bytes; 2]) -> String {
        let joined = [&chunks[0][..], &chunks[1][..]].concat();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&joined[..])
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn spliced_gzip_is_one_valid_member_equal_to_the_plain_body() {
        let rendered = Rendered::new(&family(2000), "o");
        for format in [Format::Text004, Format::OpenMetrics] {
            let plain = rendered.part(format).body(&family(3), "o", format, false);
            let zipped = rendered.part(format).body(&family(3), "o", format, true);
            let expected = String::from_utf8([&plain[0][..], &plain[1][..]].concat()).unwrap();
            assert_eq!(gunzip(&zipped), expected);
            assert!(
                zipped[0].len() < plain[0].len() / 3,
                "the refresh part is compressed"
            );
        }
    }

    #[test]
    fn openmetrics_ends_with_eof_after_the_live_part() {
        let rendered = Rendered::new(&family(1), "o");
        let body = rendered
            .openmetrics
            .body(&family(1), "o", Format::OpenMetrics, false);
        assert!(std::str::from_utf8(&body[1])
            .unwrap()
            .ends_with("x_bytes{org_name=\"o\",l=\"v0\"} 0\n# EOF\n"));
        let text = rendered.text.body(&[], "o", Format::Text004, false);
        assert!(text[1].is_empty());
    }

    #[test]
    fn empty_refresh_part_still_makes_valid_gzip() {
        let rendered = Rendered::new(&[], "o");
        let zipped = rendered.text.body(&family(1), "o", Format::Text004, true);
        assert_eq!(
            gunzip(&zipped),
            "# HELP x_bytes X.\n# TYPE x_bytes gauge\nx_bytes{org_name=\"o\",l=\"v0\"} 0\n"
        );
    }
}
