//! The exporter's own series read out of one scrape (text 0.0.4), through
//! the strict checker of `exposition.rs`: a reading of a broken exposition
//! fails the test. Labels are matched by name, `org_name` aside unless asked.

use super::exposition::{check, Flavor, Sample};

/// The samples of a scrape in text 0.0.4, by the shared strict checker.
/// An empty body is refused too: the exporter always has its own metrics.
pub fn parse_strict(text: &str) -> Result<Vec<Sample>, String> {
    if text.is_empty() {
        return Err("an empty exposition".into());
    }
    check(text, Flavor::Text004).map(|checked| checked.samples)
}

/// The samples of `name` whose labels include `labels`.
pub fn find(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<Sample> {
    parse_strict(text)
        .expect("a strict exposition")
        .into_iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .collect()
}

/// The value of the one sample of `name` with `labels`, None when absent.
pub fn one(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found = find(text, name, labels);
    assert!(found.len() <= 1, "{name} {labels:?}: {found:#?}");
    found.first().map(|s| s.value)
}

/// `nvidia_cls_up`: 1 after a good refresh, 0 after a failed one; None
/// when absent. Its only label is `org_name`.
pub fn up(text: &str) -> Option<f64> {
    let found = find(text, "nvidia_cls_up", &[]);
    assert!(found.len() <= 1, "nvidia_cls_up: {found:#?}");
    let sample = found.first()?;
    let names: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["org_name"], "the labels of nvidia_cls_up");
    Some(sample.value)
}

/// `nvidia_cls_partial_refresh_failures{endpoint}`.
pub fn partial(text: &str, endpoint: &str) -> Option<f64> {
    one(
        text,
        "nvidia_cls_partial_refresh_failures",
        &[("endpoint", endpoint)],
    )
}

/// `nvidia_cls_api_requests_total{endpoint, code}`.
pub fn requests_total(text: &str, endpoint: &str, code: &str) -> Option<f64> {
    one(
        text,
        "nvidia_cls_api_requests_total",
        &[("endpoint", endpoint), ("code", code)],
    )
}

/// `nvidia_cls_pagination_guards_total{endpoint, guard}`.
pub fn guard(text: &str, endpoint: &str, guard: &str) -> Option<f64> {
    one(
        text,
        "nvidia_cls_pagination_guards_total",
        &[("endpoint", endpoint), ("guard", guard)],
    )
}

/// The series of the snapshot (what a refresh publishes), as lines.
pub fn data(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.starts_with("nvidia_cls_entitlement_")
                || l.starts_with("nvidia_cls_license_")
                || l.starts_with("nvidia_cls_unattributed_leases")
                || l.starts_with("nvidia_cls_partial_refresh_failures")
        })
        .map(str::to_owned)
        .collect()
}
