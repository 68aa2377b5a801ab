//! Content negotiation of a scrape: the exposition format from `Accept`,
//! gzip from `Accept-Encoding`, both through one reading of q-values.

use crate::metrics::text::Format;

/// The items of an `Accept`-style header: each value (before its
/// parameters, trimmed) with its q-value (1 when it has none).
fn weighted(header: &str) -> impl Iterator<Item = (&str, f32)> {
    header.split(',').map(|item| {
        let mut parts = item.split(';');
        let value = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        (value, q)
    })
}

/// The format a scrape's `Accept` prefers: OpenMetrics when it is offered
/// with a q-value at least that of any text/plain range.
pub(crate) fn format(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text004;
    };
    let mut openmetrics: f32 = 0.0;
    let mut text: f32 = 0.0;
    for (media, q) in weighted(accept) {
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            openmetrics = openmetrics.max(q);
        } else if media.eq_ignore_ascii_case("text/plain") {
            text = text.max(q);
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Format::OpenMetrics
    } else {
        Format::Text004
    }
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*` with a q above 0).
pub(crate) fn gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        weighted(value)
            .any(|(coding, q)| (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_the_higher_q() {
        assert_eq!(format(None), Format::Text004);
        assert_eq!(format(Some("*/*")), Format::Text004);
        assert_eq!(
            format(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(
            format(Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            format(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text004
        );
        assert_eq!(
            format(Some("application/openmetrics-text;q=0")),
            Format::Text004
        );
    }

    #[test]
    fn gzip_acceptance_follows_q_values() {
        assert!(gzip(Some("gzip")));
        assert!(gzip(Some("deflate, GZIP;q=0.5")));
        assert!(gzip(Some("*")));
        assert!(!gzip(Some("gzip;q=0")));
        assert!(!gzip(Some("identity")));
        assert!(!gzip(None));
    }
}
