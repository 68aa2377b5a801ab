//! The metric table against itself and against the operator kit that
//! queries it (dashboard, alert and recording rules).

use super::*;
use std::collections::HashSet;

#[test]
fn family_names_are_unique_and_valid() {
    let mut seen = HashSet::new();
    for d in ALL {
        assert!(seen.insert(d.name), "{} declared twice", d.name);
        assert!(d
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        assert!(
            !d.name.ends_with("_total"),
            "{}: counters are declared without _total",
            d.name
        );
        if let Some(unit) = d.unit.openmetrics() {
            assert!(
                d.name.ends_with(unit),
                "{} must end with its unit {unit}",
                d.name
            );
        }
        assert_eq!(d.org_label, !d.name.starts_with("process_"));
    }
}

#[test]
fn no_snapshot_gives_up_duration_timestamp_and_self_metrics_only() {
    let api = ApiStats::default();
    let state = Status {
        up: false,
        duration_seconds: 0.25,
        timestamp: 1000.0,
        last_success: None,
        successes: 0,
        failures: 1,
        snapshot: None,
    };
    let names: Vec<&str> = refresh_families(&state, &api)
        .iter()
        .map(|f| f.desc().name)
        .collect();
    assert_eq!(
        names,
        [
            "nvidia_cls_up",
            "nvidia_cls_scrape_duration_seconds",
            "nvidia_cls_scrape_timestamp_seconds",
            "nvidia_cls_refreshes",
            "nvidia_cls_exporter_build_info"
        ]
    );
}

/// Sample names a query may use: counters with `_total`.
fn sample_names() -> HashSet<String> {
    ALL.iter()
        .map(|d| match d.kind {
            Kind::Counter => format!("{}_total", d.name),
            Kind::Gauge => d.name.to_owned(),
        })
        .collect()
}

/// Metric names in a query text: tokens starting `nvidia_cls_` or `process_`.
fn referenced(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("nvidia_cls_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn dashboard_is_valid_and_queries_only_families_of_the_table() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/dashboard.json")).unwrap();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let known = sample_names();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    let mut ids = HashSet::new();
    let mut used = HashSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        assert!(panel["type"].is_string() && panel["title"].is_string());
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "{} gridPos.{key}",
                panel["title"]
            );
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has queries", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            for name in referenced(expr) {
                assert!(
                    known.contains(&name),
                    "dashboard query uses unknown metric {name}"
                );
                used.insert(name);
            }
        }
    }
    for needed in [
        "nvidia_cls_license_server_feature_active_leases",
        "nvidia_cls_entitlement_end_timestamp_seconds",
        "nvidia_cls_up",
    ] {
        assert!(used.contains(needed), "dashboard shows {needed}");
    }
}

/// The ems labels split a feature into one series per product key: a
/// panel or rule that means "per feature" must sum over them.
#[test]
fn per_feature_entitlement_views_sum_over_product_keys() {
    let quantities = [
        &ENTITLEMENT_TOTAL.desc,
        &ENTITLEMENT_IN_USE.desc,
        &ENTITLEMENT_UNASSIGNED.desc,
    ];
    for desc in quantities {
        assert!(desc.labels.contains(&"ems_product_key_id"));
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../../deploy/grafana/dashboard.json")).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            if !quantities.iter().any(|d| expr.contains(d.name)) {
                continue;
            }
            let by = expr
                .strip_prefix("sum by (")
                .and_then(|rest| rest.split_once(')'))
                .map(|(by, _)| by);
            assert!(
                by.is_some_and(|by| !by.contains("ems_")),
                "{}: {expr} must sum over the product keys",
                panel["title"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the dashboard shows entitlements per feature");
    let rules = include_str!("../../../deploy/prometheus/alerts.yml");
    for desc in quantities {
        let rule = format!(
            "expr: sum without (ems_entitlement_id, ems_product_key_id) ({})",
            desc.name
        );
        assert!(rules.contains(&rule), "alerts.yml records {}", desc.name);
    }
}

#[test]
fn alert_rules_query_only_families_of_the_table() {
    let rules = include_str!("../../../deploy/prometheus/alerts.yml");
    let known = sample_names();
    let names = referenced(rules);
    assert!(names.len() >= 6);
    for name in names {
        assert!(
            known.contains(&name),
            "alerts.yml uses unknown metric {name}"
        );
    }
}
