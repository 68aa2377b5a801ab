//! The one strict checker of the two exposition formats the exporter
//! writes, Prometheus text 0.0.4 and OpenMetrics 1.0, written from the
//! format documents and not from the encoder, so the two cannot share a
//! mistake.
//!
//! Strict means: it accepts what a conforming parser accepts *and* what the
//! exporter is meant to write, nothing looser. So comments other than
//! HELP/TYPE/UNIT, blank lines, trailing commas in label sets, timestamps,
//! reserved (`__`) label names, and samples before their family's HELP and
//! TYPE are rejected even where 0.0.4 would tolerate them, because the
//! encoder never writes them.
//!
//! It uses only std, because three packages compile this one file: the
//! protocol tests (as `support::exposition`), the fuzz targets and the
//! encoder benchmark (each with `#[path = ...] mod exposition;`), and
//! `scripts/fuzz` runs its tests with plain `rustc --test`.

use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Text004,
    OpenMetrics,
}

/// A checked exposition, in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition {
    pub families: Vec<Family>,
    pub samples: Vec<Sample>,
}

/// One sample line, label values unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Label names and values in the order written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(l, _)| l == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A family as its metadata lines describe it; HELP text unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Option<String>,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: usize,
}

/// Longest part of a line quoted in an error: enough to find it, short
/// enough that a failing test's message stays readable.
const QUOTED_CHARS: usize = 300;

/// Checks a whole exposition; returns its families and samples, or the
/// first error with its line number.
pub fn check(text: &str, flavor: Flavor) -> Result<Exposition, String> {
    let body = match flavor {
        Flavor::Text004 => text,
        Flavor::OpenMetrics => text
            .strip_suffix("# EOF\n")
            .or_else(|| text.strip_suffix("# EOF"))
            .ok_or("OpenMetrics must end with # EOF")?,
    };
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("the last line must end with a line feed".into());
    }
    let mut families_seen: HashSet<String> = HashSet::new();
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    let mut families: Vec<Family> = Vec::new();
    let mut samples = Vec::new();
    for (index, line) in body.split_terminator('\n').enumerate() {
        let at = |e: String| {
            let quoted: String = line.chars().take(QUOTED_CHARS).collect();
            format!("line {}: {e}: {quoted:?}", index + 1)
        };
        if let Some(comment) = line.strip_prefix('#') {
            metadata(comment, flavor, &mut families, &mut families_seen).map_err(at)?;
            continue;
        }
        let sample = sample(line).map_err(at)?;
        let Some(current) = families.last_mut() else {
            return Err(at("a sample before any TYPE line".into()));
        };
        let kind = current.kind.as_deref().unwrap_or("");
        let expected = match (flavor, kind) {
            (Flavor::OpenMetrics, "counter") => format!("{}_total", current.name),
            _ => current.name.clone(),
        };
        if sample.name != expected {
            return Err(at(format!(
                "sample {} is not in family {} (expected {expected})",
                sample.name, current.name
            )));
        }
        if current.kind.is_none() {
            return Err(at("a sample before its family's TYPE line".into()));
        }
        if current.help.is_none() {
            return Err(at("a sample before its family's HELP line".into()));
        }
        if flavor == Flavor::OpenMetrics
            && kind == "counter"
            && (sample.value.is_nan() || sample.value < 0.0)
        {
            return Err(at(
                "an OpenMetrics counter must be a non-negative number".into()
            ));
        }
        let mut key = sample.labels.clone();
        key.sort();
        if !series.insert((sample.name.clone(), key)) {
            return Err(at("the same series twice".into()));
        }
        current.samples += 1;
        samples.push(sample);
    }
    Ok(Exposition { families, samples })
}

/// `# HELP name text`, `# TYPE name type`, `# UNIT name unit` (OpenMetrics).
fn metadata(
    comment: &str,
    flavor: Flavor,
    families: &mut Vec<Family>,
    seen: &mut HashSet<String>,
) -> Result<(), String> {
    let rest = comment
        .strip_prefix(' ')
        .ok_or("expected '# ' at the start")?;
    if rest == "EOF" {
        return Err("# EOF before the end".into());
    }
    let (keyword, rest) = rest
        .split_once(' ')
        .ok_or("expected '# KEYWORD name ...'")?;
    let (name, rest) = match rest.split_once(' ') {
        Some((name, rest)) => (name, Some(rest)),
        None => (rest, None),
    };
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let same = families.last().is_some_and(|f| f.name == name);
    if !same {
        if !seen.insert(name.to_owned()) {
            return Err(format!("family {name} appears twice"));
        }
        families.push(Family {
            name: name.to_owned(),
            kind: None,
            help: None,
            unit: None,
            samples: 0,
        });
    }
    let current = families.last_mut().ok_or("no family")?;
    if current.samples > 0 {
        return Err("metadata after the family's samples".into());
    }
    match keyword {
        "HELP" => {
            if current.help.is_some() {
                return Err("a second HELP line".into());
            }
            // The text may be empty, but the space before it is written.
            let text = rest.ok_or("HELP without a space before its text")?;
            let allowed: &[char] = match flavor {
                Flavor::Text004 => &['\\', 'n'],
                Flavor::OpenMetrics => &['\\', 'n', '"'],
            };
            current.help = Some(unescape(text, allowed)?);
            Ok(())
        }
        "TYPE" => {
            let kind = rest.ok_or("TYPE without a type")?;
            let known: &[&str] = match flavor {
                Flavor::Text004 => &["counter", "gauge", "histogram", "summary", "untyped"],
                Flavor::OpenMetrics => &[
                    "counter",
                    "gauge",
                    "histogram",
                    "gaugehistogram",
                    "stateset",
                    "info",
                    "summary",
                    "unknown",
                ],
            };
            if !known.contains(&kind) {
                return Err(format!("unknown type {kind:?}"));
            }
            if current.kind.replace(kind.to_owned()).is_some() {
                return Err("a second TYPE line".into());
            }
            if flavor == Flavor::OpenMetrics && kind == "counter" && name.ends_with("_total") {
                return Err("an OpenMetrics counter family is named without _total".into());
            }
            Ok(())
        }
        "UNIT" if flavor == Flavor::OpenMetrics => {
            let unit = rest.ok_or("UNIT without a unit")?;
            if current.unit.replace(unit.to_owned()).is_some() {
                return Err("a second UNIT line".into());
            }
            if unit.is_empty() || !name.ends_with(&format!("_{unit}")) {
                return Err(format!("the family name must end with _{unit}"));
            }
            Ok(())
        }
        other => Err(format!("unexpected comment keyword {other:?}")),
    }
}

/// `name{label="value",...} value`: both formats allow a timestamp after
/// the value, but the exporter writes none.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        if let Some(after) = rest.strip_prefix('}') {
            rest = after;
        } else {
            loop {
                let eq = rest.find('=').ok_or("a label without =")?;
                let label = &rest[..eq];
                if !is_label_name(label) {
                    return Err(format!("invalid label name {label:?}"));
                }
                if label.starts_with("__") {
                    return Err(format!("reserved label name {label:?}"));
                }
                if labels.iter().any(|(l, _)| l == label) {
                    return Err(format!("label {label} twice"));
                }
                let quoted = rest[eq + 1..]
                    .strip_prefix('"')
                    .ok_or("a label value must be quoted")?;
                let close = closing_quote(quoted).ok_or("an unterminated label value")?;
                let value = unescape(&quoted[..close], &['\\', 'n', '"'])?;
                labels.push((label.to_owned(), value));
                rest = &quoted[close + 1..];
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                    if rest.starts_with('}') {
                        return Err("a trailing comma in the label set".into());
                    }
                } else if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                } else {
                    return Err("expected , or } after a label value".into());
                }
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    if rest.contains(' ') {
        return Err("a timestamp or other text after the value".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(rest)?,
    })
}

/// The index of the first `"` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Undoes `\\`, `\n` and, where allowed, `\"`; any other escape is an error.
pub fn unescape(s: &str, allowed: &[char]) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e) if allowed.contains(&e) => out.push(if e == 'n' { '\n' } else { e }),
            Some(e) => return Err(format!("invalid escape \\{e}")),
            None => return Err("a lone backslash at the end".into()),
        }
    }
    Ok(out)
}

/// A float as both formats spell it: `NaN`, `+Inf`, `-Inf`, or a decimal
/// number with an optional exponent (no Rust-only spellings like `inf`).
pub fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let mut mantissa = digits(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return Err(format!("invalid value {s:?}"));
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return Err(format!("invalid exponent in {s:?}"));
        }
    }
    if i != b.len() {
        return Err(format!("invalid value {s:?}"));
    }
    s.parse::<f64>()
        .map_err(|e| format!("invalid value {s:?}: {e}"))
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*` (no colon, unlike metric names).
pub fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP a_seconds Help with \\\\ and \\n.\n\
                        # TYPE a_seconds gauge\n\
                        a_seconds{org_name=\"x\\\"y\\\\z\\nw\",b=\"Zürich\"} 1.5\n\
                        a_seconds{org_name=\"o\",b=\"\"} -Inf\n\
                        # HELP c_total Count.\n\
                        # TYPE c_total counter\n\
                        c_total 3\n";

    #[test]
    fn accepts_and_unescapes_text_004() {
        let checked = check(TEXT, Flavor::Text004).unwrap();
        let samples = checked.samples;
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples[0].labels,
            vec![
                ("org_name".to_owned(), "x\"y\\z\nw".to_owned()),
                ("b".to_owned(), "Zürich".to_owned())
            ]
        );
        assert_eq!(samples[0].label("b"), Some("Zürich"));
        assert_eq!(samples[1].value, f64::NEG_INFINITY);
        assert_eq!(samples[2].name, "c_total");
        let families = checked.families;
        assert_eq!(families.len(), 2);
        assert_eq!(families[0].help.as_deref(), Some("Help with \\ and \n."));
        assert_eq!(families[1].kind.as_deref(), Some("counter"));
        assert_eq!(families[1].samples, 1);
        let quoted = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
        let checked = check(quoted, Flavor::Text004).unwrap();
        assert_eq!(checked.samples[0].label("x"), Some("q\"\\\n"));
    }

    #[test]
    fn accepts_openmetrics_with_unit_and_eof() {
        let om = "# HELP a_seconds A \\\"quoted\\\" help.\n# TYPE a_seconds gauge\n\
                  # UNIT a_seconds seconds\na_seconds NaN\n\
                  # HELP c C.\n# TYPE c counter\nc_total 1e19\n# EOF\n";
        let checked = check(om, Flavor::OpenMetrics).unwrap();
        assert!(checked.samples[0].value.is_nan());
        assert_eq!(checked.samples[1].value, 1e19);
        assert_eq!(
            checked.families[0].help.as_deref(),
            Some("A \"quoted\" help.")
        );
        assert_eq!(checked.families[0].unit.as_deref(), Some("seconds"));
    }

    #[test]
    fn rejects_what_a_parser_would_reject() {
        // Each case a family `x` with HELP and TYPE, then one mistake.
        let bad = [
            ("x{a=\"b\"} inf\n", "invalid value"),
            ("x{a=\"b\\t\"} 1\n", "invalid escape"),
            ("x{a=\"b\"\"} 1\n", "expected , or }"),
            ("x{a=\"b} 1\n", "unterminated"),
            ("x{a=\"b\",} 1\n", "trailing comma"),
            ("x{a=\"1\",a=\"2\"} 1\n", "label a twice"),
            ("x{1a=\"b\"} 1\n", "invalid label name"),
            ("x{a:b=\"b\"} 1\n", "invalid label name"),
            ("x{__a=\"b\"} 1\n", "reserved label name"),
            ("y 1\n", "not in family"),
            ("x 1\nx 2\n", "same series twice"),
            ("x 1", "line feed"),
            ("\nx 1\n", "a sample without a value"),
            ("x  1\n", "text after the value"),
            ("x 1.5.2\n", "invalid value"),
            ("x 1e\n", "invalid exponent"),
            ("x 1 1700000000\n", "a timestamp"),
            ("# TYPE y gauge\n# TYPE x gauge\n", "appears twice"),
            ("x 1\n# HELP x late\n", "after the family's samples"),
            ("# HELP x again\n", "a second HELP"),
            ("# TYPE x gauge\n", "a second TYPE"),
            ("# just a comment\n", "unexpected comment keyword"),
        ];
        for (text, want) in bad {
            let text = format!("# HELP x X.\n# TYPE x gauge\n{text}");
            let err = check(&text, Flavor::Text004).expect_err(&text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let bad_metadata = [
            ("x 1\n", "before any TYPE"),
            ("# TYPE x gauge\nx 1\n", "before its family's HELP"),
            ("# HELP x X.\nx 1\n", "before its family's TYPE"),
            ("# HELP x\n# TYPE x gauge\n", "HELP without a space"),
            ("# TYPE x wibble\n", "unknown type"),
            ("# HELP x a \\\" quote\n", "invalid escape"),
            ("# TYPE 0x gauge\n", "invalid metric name"),
            ("#TYPE x gauge\n", "expected '# '"),
            // Whole expositions, each broken once.
            ("# HELP a A.\n# TYPE a gauge\na 1", "line feed"),
            ("a 1\n", "before any TYPE"),
            (
                "# HELP a A.\n# TYPE a gauge\na 1\n\n",
                "a sample without a value",
            ),
            (
                "# HELP a A.\n# TYPE a gauge\na{x=\"\\t\"} 1\n",
                "invalid escape",
            ),
            (
                "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
                "same series twice",
            ),
            (
                "# HELP a A.\n# TYPE a gauge\na 1 1700000000\n",
                "a timestamp",
            ),
            ("# HELP a A.\n# TYPE a gauge\na inf\n", "invalid value"),
            (
                "# HELP a A.\n# TYPE a gauge\na{1x=\"1\"} 1\n",
                "invalid label name",
            ),
            (
                "# HELP a A.\n# TYPE a gauge\na{x=\"1\",} 1\n",
                "trailing comma",
            ),
            (
                "# HELP a A.\n# TYPE a gauge\n# HELP b B.\n# TYPE b gauge\na 1\n",
                "not in family",
            ),
            (
                "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\n# HELP a A.\n",
                "appears twice",
            ),
            ("# HELP 1a A.\n# TYPE 1a gauge\n", "invalid metric name"),
        ];
        for (text, want) in bad_metadata {
            let err = check(text, Flavor::Text004).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let bad_om = [
            ("# HELP x X.\n# TYPE x gauge\nx 1\n", "# EOF"),
            (
                "# HELP c C.\n# TYPE c counter\nc 1\n# EOF\n",
                "not in family",
            ),
            (
                "# HELP c C.\n# TYPE c counter\nc_total -1\n# EOF\n",
                "non-negative",
            ),
            (
                "# HELP x_seconds X.\n# TYPE x_seconds gauge\n# UNIT x_seconds bytes\n# EOF\n",
                "_bytes",
            ),
            (
                "# HELP x X.\n# TYPE x gauge\n# EOF\nx 1\n# EOF\n",
                "# EOF before the end",
            ),
        ];
        for (text, want) in bad_om {
            let err = check(text, Flavor::OpenMetrics).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn long_lines_are_cut_in_messages() {
        let text = format!(
            "# HELP x X.\n# TYPE x gauge\nx{{a=\"{}\"}} 1 2\n",
            "v".repeat(5000)
        );
        let err = check(&text, Flavor::Text004).unwrap_err();
        assert!(err.len() < QUOTED_CHARS + 100, "{}", err.len());
    }

    #[test]
    fn values_use_exposition_spellings_only() {
        for ok in [
            "0", "-7", "1.5", ".5", "5.", "1e308", "1.5e-7", "+3", "NaN", "+Inf", "-Inf",
        ] {
            assert!(parse_value(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "inf", "Inf", "nan", "+", ".", "1e", "0x10", "1_000", " 1", "infinity",
        ] {
            assert!(parse_value(bad).is_err(), "{bad}");
        }
    }
}
