//! A strict reader of text format 0.0.4, enough to tell whether three
//! expositions say the same thing: samples as (name, sorted labels) → value
//! bits, HELP and TYPE per family. Order and number spelling do not matter
//! (`1` and `1.0` are one value); escaping does.

use std::collections::BTreeMap;

pub type Labels = Vec<(String, String)>;

#[derive(Debug, Default, PartialEq)]
pub struct Exposition {
    pub samples: BTreeMap<(String, Labels), u64>,
    pub help: BTreeMap<String, String>,
    pub types: BTreeMap<String, String>,
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let help = unescape(help, false).map_err(at)?;
            if out.help.insert(name.to_owned(), help).is_some() {
                return Err(at("second HELP".into()));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
            if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("second TYPE".into()));
            }
        } else if line.starts_with('#') {
            continue;
        } else {
            let (key, value) = sample(line).map_err(at)?;
            if out.samples.insert(key, value).is_some() {
                return Err(at("duplicate series".into()));
            }
        }
    }
    Ok(out)
}

fn sample(line: &str) -> Result<((String, Labels), u64), String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("label without =")?;
            let label = rest[..eq].trim();
            let quoted = rest[eq + 1..]
                .trim_start()
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            let end = closing_quote(quoted).ok_or("unterminated label value")?;
            labels.push((label.to_owned(), unescape(&quoted[..end], true)?));
            rest = &quoted[end + 1..];
            rest = rest.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix(',') {
                rest = after;
            } else if !rest.starts_with('}') {
                return Err("expected , or }".into());
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut fields = rest.split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    if fields.next().is_some() {
        return Err("timestamps are not expected here".into());
    }
    let mut seen = labels.clone();
    seen.sort();
    seen.dedup_by(|a, b| a.0 == b.0);
    if seen.len() != labels.len() {
        return Err("a label twice".into());
    }
    Ok(((name.to_owned(), seen), value.to_bits()))
}

/// The index of the `"` that ends a label value (not an escaped one).
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

/// Label values know `\\`, `\"` and `\n`; HELP knows `\\` and `\n`.
fn unescape(s: &str, label: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if label && (c == '"' || c == '\n') {
                return Err(format!("unescaped {c:?} in a label value"));
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if label => out.push('"'),
            other => return Err(format!("unknown escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// What differs between two expositions, briefly; None when they agree.
pub fn difference(a: &Exposition, b: &Exposition) -> Option<String> {
    if a == b {
        return None;
    }
    let only = |x: &Exposition, y: &Exposition| {
        x.samples
            .iter()
            .find(|(k, v)| y.samples.get(*k) != Some(v))
            .map(|(k, v)| format!("{k:?} = {}", f64::from_bits(*v)))
    };
    if let Some(s) = only(a, b) {
        return Some(format!("sample {s} not in the other"));
    }
    if let Some(s) = only(b, a) {
        return Some(format!("sample {s} only in the other"));
    }
    if a.help != b.help {
        let k = a.help.iter().find(|(k, v)| b.help.get(*k) != Some(v));
        return Some(format!("HELP differs: {k:?}"));
    }
    Some("TYPE lines differ".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_number_spellings_read_back() {
        let a = parse(
            "# HELP m A \\\\ help\\n.\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\\nw\",b=\"Zürich\"} 1\n",
        )
        .unwrap();
        let b = parse(
            "# HELP m A \\\\ help\\n.\n# TYPE m gauge\nm{b=\"Zürich\",a=\"x\\\"y\\\\z\\nw\",} 1.0\n",
        )
        .unwrap();
        assert_eq!(difference(&a, &b), None);
        let ((_, labels), _) = a.samples.iter().next().unwrap();
        assert_eq!(labels[0].1, "x\"y\\z\nw");
    }

    #[test]
    fn an_unescaped_quote_is_an_error() {
        assert!(parse("m{a=\"x\"y\"} 1\n").is_err());
        assert!(parse("m{a=\"x\"} 1\nm{a=\"x\"} 2\n").is_err());
    }
}
