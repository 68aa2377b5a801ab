//! The Prometheus text encoder: text format 0.0.4 and OpenMetrics 1.0, as a
//! pure function of families into a `String`. No I/O.

use super::families::{Family, Kind};
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text004,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text004 => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Picks the format a scrape's `Accept` header prefers: OpenMetrics when
    /// it is offered with a q-value at least that of any text/plain range.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text004;
        };
        let mut openmetrics: f32 = 0.0;
        let mut text: f32 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// Appends `families` to `out`. `org` is the value of the constant
/// `org_name` label. OpenMetrics' closing `# EOF` is not written here: the
/// caller appends it after the last part of the exposition.
pub fn encode(out: &mut String, families: &[Family], org: &str, format: Format) {
    let mut org_label = String::with_capacity(org.len() + 12);
    org_label.push_str("org_name=\"");
    escape_label_value(&mut org_label, org);
    org_label.push('"');

    for family in families {
        let desc = family.desc;
        let counter = desc.kind == Kind::Counter;
        let family_name = match (format, counter) {
            (Format::Text004, true) => format!("{}_total", desc.name),
            _ => desc.name.to_owned(),
        };
        let kind = match desc.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        out.push_str("# HELP ");
        out.push_str(&family_name);
        out.push(' ');
        escape_help(out, desc.help, format);
        out.push_str("\n# TYPE ");
        out.push_str(&family_name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        if format == Format::OpenMetrics {
            if let Some(unit) = desc.unit.openmetrics() {
                let _ = writeln!(out, "# UNIT {family_name} {unit}");
            }
        }
        for sample in &family.samples {
            out.push_str(desc.name);
            if counter {
                out.push_str("_total");
            }
            let has_labels = desc.org_label || !desc.labels.is_empty();
            if has_labels {
                out.push('{');
                let mut first = true;
                if desc.org_label {
                    out.push_str(&org_label);
                    first = false;
                }
                for (name, value) in desc.labels.iter().zip(&sample.labels) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_label_value(out, value);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(out, sample.value);
            out.push('\n');
        }
    }
}

/// Label values escape `\`, `"` and newline (both formats).
pub fn escape_label_value(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes `\` and newline; OpenMetrics also escapes `"`.
fn escape_help(out: &mut String, help: &str, format: Format) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Integers without a decimal point, other finite values in the shortest
/// form that reads back exactly, and the exposition spellings of the
/// special values (never Rust's `inf`).
pub fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 9.0e18 {
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::families::{Desc, Sample, Unit};

    static GAUGE: Desc = Desc {
        name: "test_value_seconds",
        help: "A help with \\ backslash\nand \"quotes\".",
        kind: Kind::Gauge,
        unit: Unit::Seconds,
        labels: &["a", "b"],
        org_label: true,
    };
    static COUNTER: Desc = Desc {
        name: "test_events",
        help: "Events.",
        kind: Kind::Counter,
        unit: Unit::None,
        labels: &[],
        org_label: false,
    };

    fn families() -> Vec<Family> {
        vec![
            Family {
                desc: &GAUGE,
                samples: vec![Sample {
                    labels: vec!["x\"y\\z\nw".into(), "Zürich".into()],
                    value: 1.5,
                }],
            },
            Family {
                desc: &COUNTER,
                samples: vec![Sample {
                    labels: vec![],
                    value: 3.0,
                }],
            },
        ]
    }

    fn value(v: f64) -> String {
        let mut s = String::new();
        write_value(&mut s, v);
        s
    }

    #[test]
    fn text_004_output_is_exact() {
        let mut out = String::new();
        encode(&mut out, &families(), "lic-\"o\"", Format::Text004);
        assert_eq!(
            out,
            "# HELP test_value_seconds A help with \\\\ backslash\\nand \"quotes\".\n\
             # TYPE test_value_seconds gauge\n\
             test_value_seconds{org_name=\"lic-\\\"o\\\"\",a=\"x\\\"y\\\\z\\nw\",b=\"Zürich\"} 1.5\n\
             # HELP test_events_total Events.\n\
             # TYPE test_events_total counter\n\
             test_events_total 3\n"
        );
    }

    #[test]
    fn openmetrics_output_is_exact() {
        let mut out = String::new();
        encode(&mut out, &families(), "o", Format::OpenMetrics);
        assert_eq!(
            out,
            "# HELP test_value_seconds A help with \\\\ backslash\\nand \\\"quotes\\\".\n\
             # TYPE test_value_seconds gauge\n\
             # UNIT test_value_seconds seconds\n\
             test_value_seconds{org_name=\"o\",a=\"x\\\"y\\\\z\\nw\",b=\"Zürich\"} 1.5\n\
             # HELP test_events Events.\n\
             # TYPE test_events counter\n\
             test_events_total 3\n"
        );
    }

    #[test]
    fn numbers_use_exposition_spelling() {
        assert_eq!(value(0.0), "0");
        assert_eq!(value(-0.0), "0");
        assert_eq!(value(42.0), "42");
        assert_eq!(value(-7.0), "-7");
        assert_eq!(value(0.1), "0.1");
        assert_eq!(value(1e308), "1e308");
        assert_eq!(value(1.5e-7), "1.5e-7");
        assert_eq!(value(1e15), "1000000000000000");
        assert_eq!(value(1e19), "1e19");
        assert_eq!(value(999_999_999_999_999.0), "999999999999999");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn label_escaping_leaves_plain_text_alone() {
        let mut s = String::new();
        escape_label_value(&mut s, "plain 東京");
        assert_eq!(s, "plain 東京");
        s.clear();
        escape_label_value(&mut s, "\\\"\n\t");
        assert_eq!(s, "\\\\\\\"\\n\t");
    }

    #[test]
    fn negotiation_prefers_the_higher_q() {
        assert_eq!(Format::negotiate(None), Format::Text004);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text004);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"
            )),
            Format::Text004
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Text004
        );
    }
}
