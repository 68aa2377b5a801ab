//! The Prometheus text encoder: text format 0.0.4 and OpenMetrics 1.0, as a
//! pure function of families into a `String`. No I/O.

use super::family::{Desc, Family, Kind};
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
}

/// Appends `families` to `out`. `org` is the value of the constant
/// `org_name` label. OpenMetrics' closing `# EOF` is not written here: the
/// caller appends it after the last part of the exposition.
pub fn encode(out: &mut String, families: &[Family<'_>], org: &str, format: Format) {
    Prepared::new(families, org).encode(out, format);
}

/// Families made ready to render, in either format and as often as needed:
/// every sample's label set (`{org_name="…",name="value",…}`) is escaped
/// once, here, and each render only copies it. A refresh renders its
/// families twice (0.0.4 and OpenMetrics), and escaping was most of the
/// cost of a render.
pub struct Prepared<'a> {
    families: &'a [Family<'a>],
    /// The label sets of all samples, in order, end to end.
    label_sets: String,
    /// Where each sample's label set ends in `label_sets`.
    ends: Vec<usize>,
}

impl<'a> Prepared<'a> {
    pub fn new(families: &'a [Family<'a>], org: &str) -> Prepared<'a> {
        let skeletons: Vec<Skeleton> = families
            .iter()
            .map(|family| Skeleton::new(family.desc(), org))
            .collect();
        // One allocation of the right size, not a doubling series of them;
        // escapes add a byte each, so a little room for them.
        let len: usize = families
            .iter()
            .zip(&skeletons)
            .map(|(family, skeleton)| {
                let values: usize = family
                    .samples()
                    .flat_map(|sample| sample.labels())
                    .map(|value| value.len())
                    .sum();
                family.len() * skeleton.len() + values
            })
            .sum();
        let mut label_sets = String::with_capacity(len + len / 64);
        let mut ends = Vec::with_capacity(families.iter().map(Family::len).sum());
        for (family, skeleton) in families.iter().zip(&skeletons) {
            for sample in family.samples() {
                if sample.labels().is_empty() {
                    label_sets.push_str(&skeleton.without_values);
                } else {
                    for (before, value) in skeleton.before.iter().zip(sample.labels()) {
                        label_sets.push_str(before);
                        escape_label_value(&mut label_sets, value);
                    }
                    label_sets.push_str(&skeleton.after);
                }
                ends.push(label_sets.len());
            }
        }
        Prepared {
            families,
            label_sets,
            ends,
        }
    }

    /// At least the length `encode` appends in `format`: the exact text
    /// but for each value, counted at its longest. A body sized by it is
    /// allocated once instead of doubling its way up (the last doubling
    /// leaves nearly half of a large body unused).
    pub fn encoded_len_bound(&self, format: Format) -> usize {
        /// The longest `write_value` text: `-1.7976931348623157e308`.
        const VALUE: usize = 24;
        let headers: usize = self
            .families
            .iter()
            .map(|f| {
                let d = f.desc();
                let unit = match (format, d.unit.openmetrics()) {
                    (Format::OpenMetrics, Some(unit)) => d.name.len() + unit.len() + 9,
                    _ => 0,
                };
                // HELP and TYPE lines, each name with `_total` at most,
                // the help text with every byte escaped at most.
                2 * (d.name.len() + 6) + 2 * d.help.len() + 24 + unit
            })
            .sum();
        let samples: usize = self
            .families
            .iter()
            .map(|f| f.len() * (f.desc().name.len() + 6 + 2 + VALUE))
            .sum();
        headers + samples + self.label_sets.len()
    }

    /// Appends the families to `out` in `format`.
    pub fn encode(&self, out: &mut String, format: Format) {
        let mut ends = self.ends.iter();
        let mut start = 0;
        for family in self.families {
            let desc = family.desc();
            let counter = desc.kind == Kind::Counter;
            // Text 0.0.4 names a counter family as its samples, with _total.
            let family_suffix = if counter && format == Format::Text004 {
                "_total"
            } else {
                ""
            };
            out.push_str("# HELP ");
            out.push_str(desc.name);
            out.push_str(family_suffix);
            out.push(' ');
            escape_help(out, desc.help, format);
            out.push_str("\n# TYPE ");
            out.push_str(desc.name);
            out.push_str(family_suffix);
            out.push_str(match desc.kind {
                Kind::Gauge => " gauge\n",
                Kind::Counter => " counter\n",
            });
            if format == Format::OpenMetrics {
                if let Some(unit) = desc.unit.openmetrics() {
                    let _ = writeln!(out, "# UNIT {} {unit}", desc.name);
                }
            }
            for (sample, &end) in family.samples().zip(&mut ends) {
                out.push_str(desc.name);
                if counter {
                    out.push_str("_total");
                }
                out.push_str(&self.label_sets[start..end]);
                start = end;
                out.push(' ');
                write_value(out, sample.value());
                out.push('\n');
            }
        }
    }
}

/// The constant text of a family's label sets: what comes before each
/// label value (`{org_name="…",a="`, `",b="`, …) and after the last (`"}`),
/// so that a label set is two appends a label.
struct Skeleton {
    before: Vec<String>,
    after: String,
    /// The label set of a sample without values (`{org_name="…"}`, `{}`).
    without_values: String,
}

impl Skeleton {
    fn new(desc: &Desc, org: &str) -> Skeleton {
        let mut before = Vec::with_capacity(desc.labels.len());
        let mut text = String::new();
        if desc.org_label {
            text.push_str("{org_name=\"");
            escape_label_value(&mut text, org);
            text.push('"');
        }
        let without_values = match (desc.org_label, desc.labels.is_empty()) {
            (true, _) => format!("{text}}}"),
            (false, false) => "{}".to_owned(),
            (false, true) => String::new(),
        };
        for name in desc.labels {
            text.push(if text.is_empty() { '{' } else { ',' });
            text.push_str(name);
            text.push_str("=\"");
            before.push(std::mem::take(&mut text));
            text.push('"');
        }
        if !text.is_empty() {
            text.push('}');
        }
        Skeleton {
            before,
            after: text,
            without_values,
        }
    }

    fn len(&self) -> usize {
        self.before.iter().map(String::len).sum::<usize>() + self.after.len()
    }
}

/// Label values escape `\`, `"` and newline (both formats).
pub(crate) fn escape_label_value(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(at) = rest.bytes().position(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
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
pub(crate) fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.abs() < 9.0e18 && value as i64 as f64 == value {
        // (The round trip, not fract(): that is a libm call on x86-64.)
        write_integer(out, value as i64);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

/// Decimal digits without `fmt`: most values are integers, and the
/// formatting machinery cost more than the digits.
fn write_integer(out: &mut String, n: i64) {
    let mut digits = [0u8; 20]; // i64::MIN is 19 digits and a sign
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    // ASCII digits are always UTF-8.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::family::{Desc, Unit};

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

    fn families() -> Vec<Family<'static>> {
        vec![
            Family::raw(&GAUGE, [(vec!["x\"y\\z\nw", "Zürich"], 1.5)]),
            Family::raw(&COUNTER, [(vec![], 3.0)]),
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
    fn escaping_copies_the_text_between_escapes() {
        let mut s = String::new();
        escape_label_value(&mut s, "Zürich \"Lab\"\\\n東京\n");
        assert_eq!(s, "Zürich \\\"Lab\\\"\\\\\\n東京\\n");
    }

    #[test]
    fn integers_print_all_their_digits() {
        for v in [
            1.0,
            -1.0,
            10.0,
            1_767_225_600.0,
            -987_654_321.0,
            8_999_999_999_999_998_976.0, // the largest f64 below 9e18
            -8_999_999_999_999_998_976.0,
        ] {
            assert_eq!(value(v), format!("{}", v as i64));
        }
        assert_eq!(value(9.0e18), "9e18");
        assert_eq!(value(2.5), "2.5");
    }

    static ORG_ONLY: Desc = Desc {
        name: "test_up",
        help: "Up.",
        kind: Kind::Gauge,
        unit: Unit::None,
        labels: &[],
        org_label: true,
    };
    static NO_ORG: Desc = Desc {
        name: "test_plain",
        help: "Plain.",
        kind: Kind::Counter,
        unit: Unit::None,
        labels: &["a", "b"],
        org_label: false,
    };

    #[test]
    fn prepared_label_sets_serve_every_render_and_format() {
        let mut families = families();
        families.push(Family::raw(&ORG_ONLY, [(vec![], 1.0)]));
        families.push(Family::raw(
            &NO_ORG,
            [(vec!["x", "y\n"], 2.0), (vec!["", "z"], 3.0)],
        ));
        let prepared = Prepared::new(&families, "o");
        for format in [Format::Text004, Format::OpenMetrics] {
            let mut once = String::new();
            prepared.encode(&mut once, format);
            let mut twice = String::new();
            prepared.encode(&mut twice, format);
            assert_eq!(once, twice);
            assert!(once.contains("\ntest_up{org_name=\"o\"} 1\n"));
            assert!(once.ends_with(
                "test_plain_total{a=\"x\",b=\"y\\n\"} 2\n\
                 test_plain_total{a=\"\",b=\"z\"} 3\n"
            ));
        }
    }
}
