//! The one metric table: every family's name, type, help, unit and labels,
//! and the functions that turn published state into samples. The Prometheus
//! encoder and the OTLP mapper only translate what this module returns.

use crate::cls::{ApiStats, Endpoint};
use crate::metrics::process::ProcessStats;
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// The unit of a family: OpenMetrics `# UNIT` for seconds and bytes (whose
/// names end in the unit); the OTLP mapping uses all of them, in UCUM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    Licenses,
    Leases,
    None,
}

impl Unit {
    /// The OpenMetrics unit, when the family's name carries it.
    pub fn openmetrics(self) -> Option<&'static str> {
        match self {
            Unit::Seconds => Some("seconds"),
            Unit::Bytes => Some("bytes"),
            _ => None,
        }
    }

    /// The UCUM unit of the OTLP mapping (metrics.md).
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "By",
            Unit::Licenses => "{license}",
            Unit::Leases => "{lease}",
            Unit::None => "1",
        }
    }
}

/// A family's declaration. Counter names are declared without `_total`;
/// each encoder adds it where its format wants it.
#[derive(Debug)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// Labels after the constant `org_name`.
    pub labels: &'static [&'static str],
    /// False only for the standard `process_*` families.
    pub org_label: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Values in the order of `Desc::labels`, already normalised.
    pub labels: Vec<String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub desc: &'static Desc,
    pub samples: Vec<Sample>,
}

const ENTITLEMENT: &[&str] = &[
    "virtual_group_id",
    "virtual_group_name",
    "ems_entitlement_id",
    "ems_product_key_id",
    "feature_name",
    "feature_version",
    "product_name",
    "license_type",
];
const SERVER: &[&str] = &[
    "virtual_group_id",
    "virtual_group_name",
    "server_id",
    "server_name",
];
const SERVER_INFO: &[&str] = &[
    "virtual_group_id",
    "virtual_group_name",
    "server_id",
    "server_name",
    "status",
    "deployed_on",
    "leasing_mode",
];
const SERVER_FEATURE: &[&str] = &[
    "virtual_group_id",
    "virtual_group_name",
    "server_id",
    "server_name",
    "feature_name",
    "product_name",
    "license_type",
];
const POOL_FEATURE: &[&str] = &[
    "virtual_group_id",
    "virtual_group_name",
    "server_id",
    "server_name",
    "pool_id",
    "pool_name",
    "feature_name",
    "product_name",
    "license_type",
];

macro_rules! desc {
    ($ident:ident, $name:literal, $kind:ident, $unit:ident, $labels:expr, $help:literal) => {
        pub static $ident: Desc = Desc {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            unit: Unit::$unit,
            labels: $labels,
            org_label: true,
        };
    };
}

// The Go exporter's nine families: same names, labels and meaning.
desc!(
    UP,
    "nvidia_cls_up",
    Gauge,
    None,
    &[],
    "Whether the latest NVIDIA CLS refresh succeeded (1 = up, 0 = down)."
);
desc!(
    SCRAPE_DURATION,
    "nvidia_cls_scrape_duration_seconds",
    Gauge,
    Seconds,
    &[],
    "Wall time of the latest NVIDIA CLS refresh attempt."
);
desc!(
    SCRAPE_TIMESTAMP,
    "nvidia_cls_scrape_timestamp_seconds",
    Gauge,
    Seconds,
    &[],
    "Unix time at which the served NVIDIA CLS snapshot was collected."
);
desc!(
    ENTITLEMENT_TOTAL,
    "nvidia_cls_entitlement_total_quantity",
    Gauge,
    Licenses,
    ENTITLEMENT,
    "Total entitlement quantity by virtual group and feature (contract capacity)."
);
desc!(
    SERVER_INFO_DESC,
    "nvidia_cls_license_server_info",
    Gauge,
    None,
    SERVER_INFO,
    "Static information about a license server."
);
desc!(
    SERVER_FEATURE_TOTAL,
    "nvidia_cls_license_server_feature_total_quantity",
    Gauge,
    Licenses,
    SERVER_FEATURE,
    "Total server feature capacity from license-server features."
);
desc!(
    SERVER_FEATURE_ACTIVE,
    "nvidia_cls_license_server_feature_active_leases",
    Gauge,
    Leases,
    SERVER_FEATURE,
    "Active lease count by server feature from CLS active-lease data."
);
desc!(
    ENTITLEMENT_IN_USE,
    "nvidia_cls_entitlement_in_use_quantity",
    Gauge,
    Licenses,
    ENTITLEMENT,
    "Entitlement quantity in use by virtual group, product key and feature."
);
desc!(
    ENTITLEMENT_UNASSIGNED,
    "nvidia_cls_entitlement_unassigned_quantity",
    Gauge,
    Licenses,
    ENTITLEMENT,
    "Entitlement quantity not assigned to any license server."
);
// Beyond the Go exporter.
desc!(
    ENTITLEMENT_START,
    "nvidia_cls_entitlement_start_timestamp_seconds",
    Gauge,
    Seconds,
    ENTITLEMENT,
    "Unix time at which the entitlement starts (the earliest start of the rows with these labels)."
);
desc!(
    ENTITLEMENT_END,
    "nvidia_cls_entitlement_end_timestamp_seconds",
    Gauge,
    Seconds,
    ENTITLEMENT,
    "Unix time at which the entitlement ends (the latest end of the rows with these labels; absent when it never expires)."
);
desc!(
    SERVER_ACTIVE,
    "nvidia_cls_license_server_active_leases",
    Gauge,
    Leases,
    SERVER,
    "All active leases on a license server."
);
desc!(
    POOL_ALLOTMENT,
    "nvidia_cls_license_pool_feature_allotment_quantity",
    Gauge,
    Licenses,
    POOL_FEATURE,
    "Quantity of a server feature allotted to a license pool."
);
desc!(
    POOL_IN_USE,
    "nvidia_cls_license_pool_feature_in_use_quantity",
    Gauge,
    Licenses,
    POOL_FEATURE,
    "Quantity of a license pool's feature allotment in use."
);
desc!(
    LAST_SUCCESS,
    "nvidia_cls_last_success_timestamp_seconds",
    Gauge,
    Seconds,
    &[],
    "Unix time of the latest successful NVIDIA CLS refresh."
);
desc!(
    REFRESHES,
    "nvidia_cls_refreshes",
    Counter,
    None,
    &["result"],
    "NVIDIA CLS refresh attempts since start, by result."
);
desc!(API_REQUESTS, "nvidia_cls_api_requests", Counter, None, &["endpoint", "code"], "NVIDIA CLS API requests since start, by endpoint and HTTP status (error for transport failures).");
desc!(
    PAGING_GUARDS,
    "nvidia_cls_pagination_guards",
    Counter,
    None,
    &["endpoint", "guard"],
    "Paged listings stopped by a guard instead of their natural end, by endpoint and guard."
);
desc!(PARTIAL, "nvidia_cls_partial_refresh_failures", Gauge, None, &["endpoint"], "Sub-resource requests that failed in the latest successful refresh; their data is missing from this snapshot.");
desc!(UNATTRIBUTED, "nvidia_cls_unattributed_leases", Gauge, Leases, &[], "Leases skipped in the latest snapshot because their client names no license server and its group has several.");
desc!(
    BUILD_INFO,
    "nvidia_cls_exporter_build_info",
    Gauge,
    None,
    &["version", "revision", "rustc_version"],
    "Build information of this exporter; value 1."
);

// The OTLP push's own health, live like the process figures; present only
// when the push is enabled.
desc!(
    OTLP_PUSHES,
    "nvidia_cls_otlp_pushes",
    Counter,
    None,
    &["result"],
    "OTLP pushes since start, by result (success; partial: the collector rejected some data points; failure: not delivered)."
);
desc!(
    OTLP_LAST_SUCCESS,
    "nvidia_cls_otlp_last_success_timestamp_seconds",
    Gauge,
    Seconds,
    &[],
    "Unix time of the latest OTLP push the collector accepted (fully or partially)."
);

macro_rules! process_desc {
    ($ident:ident, $name:literal, $kind:ident, $unit:ident, $help:literal) => {
        pub static $ident: Desc = Desc {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            unit: Unit::$unit,
            labels: &[],
            org_label: false,
        };
    };
}

process_desc!(
    PROCESS_CPU,
    "process_cpu_seconds",
    Counter,
    Seconds,
    "Total user and system CPU time spent in seconds."
);
process_desc!(
    PROCESS_RSS,
    "process_resident_memory_bytes",
    Gauge,
    Bytes,
    "Resident memory size in bytes."
);
process_desc!(
    PROCESS_VSZ,
    "process_virtual_memory_bytes",
    Gauge,
    Bytes,
    "Virtual memory size in bytes."
);
process_desc!(
    PROCESS_START,
    "process_start_time_seconds",
    Gauge,
    Seconds,
    "Start time of the process since unix epoch in seconds."
);
process_desc!(
    PROCESS_OPEN_FDS,
    "process_open_fds",
    Gauge,
    None,
    "Number of open file descriptors."
);
process_desc!(
    PROCESS_MAX_FDS,
    "process_max_fds",
    Gauge,
    None,
    "Maximum number of open file descriptors."
);

/// Every family, in exposition order (tests check the table against it).
#[cfg(test)]
pub static ALL: &[&Desc] = &[
    &UP,
    &SCRAPE_DURATION,
    &SCRAPE_TIMESTAMP,
    &ENTITLEMENT_TOTAL,
    &SERVER_INFO_DESC,
    &SERVER_FEATURE_TOTAL,
    &SERVER_FEATURE_ACTIVE,
    &ENTITLEMENT_IN_USE,
    &ENTITLEMENT_UNASSIGNED,
    &ENTITLEMENT_START,
    &ENTITLEMENT_END,
    &SERVER_ACTIVE,
    &POOL_ALLOTMENT,
    &POOL_IN_USE,
    &UNATTRIBUTED,
    &PARTIAL,
    &LAST_SUCCESS,
    &REFRESHES,
    &API_REQUESTS,
    &PAGING_GUARDS,
    &BUILD_INFO,
    &OTLP_PUSHES,
    &OTLP_LAST_SUCCESS,
    &PROCESS_CPU,
    &PROCESS_RSS,
    &PROCESS_VSZ,
    &PROCESS_START,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
];

/// What a refresh attempt leaves behind for the metric table.
pub struct RefreshState<'a> {
    pub up: bool,
    pub duration_seconds: f64,
    /// Collection time of the served snapshot; with none, the time of the
    /// failed attempt (as the Go exporter reports it).
    pub timestamp: f64,
    pub last_success: Option<f64>,
    pub successes: u64,
    pub failures: u64,
    pub snapshot: Option<&'a Snapshot>,
    pub api: &'a ApiStats,
}

/// What the OTLP push has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PushCounts {
    pub success: u64,
    pub partial: u64,
    pub failure: u64,
    pub last_success: Option<f64>,
}

pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc_version: &'static str,
}

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("EXPORTER_GIT_REVISION"),
    rustc_version: env!("EXPORTER_RUSTC_VERSION"),
};

fn one(desc: &'static Desc, value: f64) -> Family {
    Family {
        desc,
        samples: vec![Sample {
            labels: Vec::new(),
            value,
        }],
    }
}

fn rows<'a, K: AsRef<[String]> + 'a, V: 'a>(
    desc: &'static Desc,
    map: impl IntoIterator<Item = (&'a K, &'a V)>,
    value: impl Fn(&V) -> Option<f64>,
) -> Family {
    Family {
        desc,
        samples: map
            .into_iter()
            .filter_map(|(k, v)| {
                value(v).map(|value| Sample {
                    labels: k.as_ref().to_vec(),
                    value,
                })
            })
            .collect(),
    }
}

/// The families that change only when a refresh ends: rendered once then.
/// Families without samples are left out.
pub fn refresh_families(state: &RefreshState) -> Vec<Family> {
    let mut out = vec![
        one(&UP, if state.up { 1.0 } else { 0.0 }),
        one(&SCRAPE_DURATION, state.duration_seconds),
        one(&SCRAPE_TIMESTAMP, state.timestamp),
    ];
    if let Some(s) = state.snapshot {
        out.extend([
            rows(&ENTITLEMENT_TOTAL, &s.entitlements, |q| Some(q.total)),
            rows(&SERVER_INFO_DESC, &s.servers, |_| Some(1.0)),
            rows(&SERVER_FEATURE_TOTAL, &s.server_features, |f| f.total),
            rows(&SERVER_FEATURE_ACTIVE, &s.server_features, |f| {
                f.leases_known.then_some(f.active_leases)
            }),
            rows(&ENTITLEMENT_IN_USE, &s.entitlements, |q| Some(q.in_use)),
            rows(&ENTITLEMENT_UNASSIGNED, &s.entitlements, |q| {
                Some(q.unassigned)
            }),
            rows(&ENTITLEMENT_START, &s.entitlements, |e| e.start),
            rows(&ENTITLEMENT_END, &s.entitlements, |e| e.end),
            rows(&SERVER_ACTIVE, &s.server_leases, |n| Some(*n)),
            rows(&POOL_ALLOTMENT, &s.pool_features, |p| Some(p.allotment)),
            rows(&POOL_IN_USE, &s.pool_features, |p| Some(p.in_use)),
            one(&UNATTRIBUTED, s.unattributed_leases),
            Family {
                desc: &PARTIAL,
                samples: Endpoint::ALL
                    .iter()
                    .map(|e| Sample {
                        labels: vec![e.label().to_owned()],
                        value: s.partial_failures.get(e).copied().unwrap_or(0) as f64,
                    })
                    .collect(),
            },
        ]);
    }
    if let Some(t) = state.last_success {
        out.push(one(&LAST_SUCCESS, t));
    }
    out.push(Family {
        desc: &REFRESHES,
        samples: vec![
            Sample {
                labels: vec!["success".into()],
                value: state.successes as f64,
            },
            Sample {
                labels: vec!["failure".into()],
                value: state.failures as f64,
            },
        ],
    });
    out.push(Family {
        desc: &API_REQUESTS,
        samples: state
            .api
            .requests()
            .into_iter()
            .map(|(e, code, n)| Sample {
                labels: vec![e.label().to_owned(), code],
                value: n as f64,
            })
            .collect(),
    });
    out.push(Family {
        desc: &PAGING_GUARDS,
        samples: state
            .api
            .guards()
            .into_iter()
            .map(|(e, g, n)| Sample {
                labels: vec![e.label().to_owned(), g.label().to_owned()],
                value: n as f64,
            })
            .collect(),
    });
    out.push(Family {
        desc: &BUILD_INFO,
        samples: vec![Sample {
            labels: vec![
                BUILD.version.to_owned(),
                BUILD.revision.to_owned(),
                BUILD.rustc_version.to_owned(),
            ],
            value: 1.0,
        }],
    });
    out.retain(|f| !f.samples.is_empty());
    out
}

/// The OTLP push's families, read per scrape and per push.
pub fn push_families(p: &PushCounts) -> Vec<Family> {
    let result = |label: &str, n: u64| Sample {
        labels: vec![label.to_owned()],
        value: n as f64,
    };
    let mut out = vec![Family {
        desc: &OTLP_PUSHES,
        samples: vec![
            result("success", p.success),
            result("partial", p.partial),
            result("failure", p.failure),
        ],
    }];
    if let Some(t) = p.last_success {
        out.push(one(&OTLP_LAST_SUCCESS, t));
    }
    out
}

/// The live families, read per scrape.
pub fn process_families(p: &ProcessStats) -> Vec<Family> {
    let mut out = vec![
        one(&PROCESS_CPU, p.cpu_seconds),
        one(&PROCESS_RSS, p.resident_bytes),
        one(&PROCESS_VSZ, p.virtual_bytes),
        one(&PROCESS_START, p.start_time_seconds),
        one(&PROCESS_OPEN_FDS, p.open_fds),
    ];
    if let Some(max) = p.max_fds {
        out.push(one(&PROCESS_MAX_FDS, max));
    }
    out
}

#[cfg(test)]
mod tests {
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
        let state = RefreshState {
            up: false,
            duration_seconds: 0.25,
            timestamp: 1000.0,
            last_success: None,
            successes: 0,
            failures: 1,
            snapshot: None,
            api: &api,
        };
        let names: Vec<&str> = refresh_families(&state)
            .iter()
            .map(|f| f.desc.name)
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
            serde_json::from_str(include_str!("../../deploy/grafana/dashboard.json")).unwrap();
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
            &ENTITLEMENT_TOTAL,
            &ENTITLEMENT_IN_USE,
            &ENTITLEMENT_UNASSIGNED,
        ];
        for desc in quantities {
            assert!(desc.labels.contains(&"ems_product_key_id"));
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/grafana/dashboard.json")).unwrap();
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
        let rules = include_str!("../../deploy/prometheus/alerts.yml");
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
        let rules = include_str!("../../deploy/prometheus/alerts.yml");
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
}
