//! A strict reader of the Prometheus text format 0.0.4 for tests: stricter
//! than Prometheus' own parser where the exporter promises more (HELP and TYPE
//! for every family before its samples, families contiguous, no duplicate
//! series, no timestamps, no empty lines), and `promtool check metrics` when
//! it is installed.
#![allow(dead_code)]

use std::collections::HashSet;

/// One sample, its label values unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of `text`, or the first line that breaks the grammar.
pub fn parse_strict(text: &str) -> Result<Vec<Series>, String> {
    let Some(body) = text.strip_suffix('\n') else {
        return Err("the exposition does not end with a newline".into());
    };
    let mut out = Vec::new();
    // Families whose HELP/TYPE were read, and the one samples may belong to.
    let mut families: HashSet<String> = HashSet::new();
    let mut current: Option<(String, bool, bool)> = None; // (name, help, type)
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    for (number, line) in body.split('\n').enumerate() {
        let at = |why: &str| format!("line {}: {why}: {:?}", number + 1, clip(line));
        if line.is_empty() {
            return Err(at("empty line"));
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let (keyword, rest) = comment.split_once(' ').ok_or_else(|| at("bare comment"))?;
            let (name, text) = rest.split_once(' ').ok_or_else(|| at("no text"))?;
            if !is_metric_name(name) {
                return Err(at("bad metric name"));
            }
            let same = current.as_ref().is_some_and(|(n, _, _)| n == name);
            if !same {
                if !families.insert(name.to_owned()) {
                    return Err(at("family not contiguous"));
                }
                current = Some((name.to_owned(), false, false));
            }
            let Some((_, help, kind)) = current.as_mut() else {
                unreachable!("set above")
            };
            match keyword {
                "HELP" => {
                    if *help {
                        return Err(at("second HELP"));
                    }
                    check_help(text).map_err(|e| at(&e))?;
                    *help = true;
                }
                "TYPE" => {
                    if *kind {
                        return Err(at("second TYPE"));
                    }
                    if !matches!(
                        text,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(at("unknown type"));
                    }
                    *kind = true;
                }
                _ => return Err(at("comment other than HELP or TYPE")),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("comment without a space"));
        }
        let sample = parse_sample(line).map_err(|e| at(&e))?;
        match &current {
            Some((family, true, true)) if *family == sample.name => {}
            Some((family, _, _)) if *family == sample.name => {
                return Err(at("sample before its HELP and TYPE"))
            }
            _ => return Err(at("sample outside its family")),
        }
        let mut key = sample.labels.clone();
        key.sort();
        if !series.insert((sample.name.clone(), key)) {
            return Err(at("duplicate series"));
        }
        out.push(sample);
    }
    Ok(out)
}

/// Long lines are shown cut in messages.
fn clip(line: &str) -> String {
    line.chars().take(300).collect()
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// HELP escapes only `\\` and `\n`.
fn check_help(text: &str) -> Result<(), String> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("bad escape in HELP".into());
        }
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Series, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            let eq = rest.find('=').ok_or("label without =")?;
            let label = &rest[..eq];
            if !is_label_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            if labels.iter().any(|(k, _): &(String, String)| k == label) {
                return Err(format!("label {label} twice"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => return Err("bad escape in a label value".into()),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            rest = &rest[close + 1..];
            if let Some(more) = rest.strip_prefix(',') {
                rest = more;
                if rest.starts_with('}') {
                    return Err("trailing comma".into());
                }
            } else if let Some(end) = rest.strip_prefix('}') {
                rest = end;
                break;
            } else {
                return Err("label not followed by , or }".into());
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
    if value.contains(' ') {
        return Err("a timestamp or trailing text after the value".into());
    }
    Ok(Series {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Go's ParseFloat forms the format allows: decimal or exponent notation,
/// `NaN`, `+Inf`, `-Inf` (not Rust's `inf`, `NaN` spellings beyond that).
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) || !exponent_ok
    {
        return Err(format!("bad value {text:?}"));
    }
    text.parse().map_err(|_| format!("bad value {text:?}"))
}

/// `promtool check metrics` on `text`: None when promtool is not installed
/// (outside CI), else its findings (errors and lint warnings).
pub fn promtool(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    let promtool = super::exporter::tool("promtool")?;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    let input = text.to_owned();
    // Written from a thread: promtool may answer before it read everything.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("promtool output");
    let _ = writer.join();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(report)
    })
}
