//! Code shared by the fuzz targets in `fuzz_targets/`: a strict checker of
//! the exposition formats, the scrape body as the server assembles it, and
//! the slicing of a fuzz input into fields.

#![forbid(unsafe_code)]

/// The strict checker the protocol tests and the encoder benchmark use too,
/// one file compiled in all three packages.
#[path = "../../proto-tests/support/exposition.rs"]
pub mod exposition;

use nvidia_license_server_exporter::harness::live_text;
use nvidia_license_server_exporter::harness::ApiStats;
use nvidia_license_server_exporter::harness::Snapshot;
use nvidia_license_server_exporter::harness::{refresh_families, Family, Status};
use nvidia_license_server_exporter::harness::{Format, Prepared};
use std::sync::Arc;

/// The byte that separates fields in the inputs of `encoder_grammar`: it
/// never occurs in UTF-8, so any string can sit in a field.
pub const FIELD_SEPARATOR: u8 = 0xFF;

/// Splits `data` on `separator` into at most `max` fields; the last field
/// takes the rest, separators included.
pub fn fields(data: &[u8], separator: u8, max: usize) -> Vec<&[u8]> {
    data.splitn(max.max(1), |b| *b == separator).collect()
}

/// A field as text: invalid UTF-8 becomes U+FFFD, as no `String` in the
/// exporter can hold it either.
pub fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}

/// A scrape's bodies, 0.0.4 then OpenMetrics, as the server assembles them
/// without gzip: the refresh part as `Rendered::new` renders it (label sets
/// prepared once, then each format), then `live_text` (the live families
/// and, for OpenMetrics, `# EOF`). Not through `Rendered` itself, which also
/// deflates every part and writes large ones to a memfd: instrumented
/// deflate would take most of each run, and the gzip splice and the memfd
/// have their own tests.
pub fn scrape_bodies(
    refresh: &[Family<'_>],
    live: &[Family<'_>],
    org: &str,
) -> [(Format, String); 2] {
    let prepared = Prepared::new(refresh, org);
    [Format::Text004, Format::OpenMetrics].map(|format| {
        let mut out = String::new();
        prepared.encode(&mut out, format);
        out.push_str(&String::from_utf8_lossy(&live_text(live, org, format)));
        (format, out)
    })
}

/// What a successful refresh that built `snapshot` publishes.
pub fn good_status(snapshot: Snapshot) -> Status {
    Status {
        up: true,
        duration_seconds: 0.5,
        timestamp: snapshot.collected_at,
        last_success: Some(snapshot.collected_at),
        successes: 1,
        failures: 0,
        snapshot: Some(Arc::new(snapshot)),
    }
}

/// Its refresh families, as the metric table builds them for a scrape.
pub fn good_refresh(status: &Status) -> Vec<Family<'_>> {
    refresh_families(status, &ApiStats::default())
}

/// The checker's name for an encoder format.
pub fn flavor(format: Format) -> exposition::Flavor {
    match format {
        Format::Text004 => exposition::Flavor::Text004,
        Format::OpenMetrics => exposition::Flavor::OpenMetrics,
    }
}
