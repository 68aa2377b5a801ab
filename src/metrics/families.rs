//! The one metric table: every family's name, type, unit, help and labels,
//! and the functions that turn published state into samples. The Prometheus
//! encoder and the OTLP mapper only translate what this module returns.
//!
//! Each label set is declared once, below, as a `Labels` impl: the label
//! names and, next to them, the fields of the key that give their values.

use super::family::{Family, Kind, Labels, Metric, NoLabels, StaticLabels, Unit};
use super::live::{DropReason, PushCounts};
use crate::cache::Status;
use crate::cls::stats::PageGuard;
use crate::cls::{ApiStats, Endpoint};
use crate::snapshot::{EntitlementKey, PoolFeatureKey, ServerFeatureKey, ServerInfoKey, ServerKey};

// ------------------------------------------------------------- label sets

impl Labels<8> for EntitlementKey {
    const NAMES: &'static [&'static str; 8] = &[
        "virtual_group_id",
        "virtual_group_name",
        "ems_entitlement_id",
        "ems_product_key_id",
        "feature_name",
        "feature_version",
        "product_name",
        "license_type",
    ];
    fn values(&self) -> [&str; 8] {
        [
            &self.group_id,
            &self.group_name,
            &self.ems_entitlement_id,
            &self.ems_product_key_id,
            &self.feature,
            &self.feature_version,
            &self.product,
            &self.license_type,
        ]
    }
}

impl Labels<4> for ServerKey {
    const NAMES: &'static [&'static str; 4] = &[
        "virtual_group_id",
        "virtual_group_name",
        "server_id",
        "server_name",
    ];
    fn values(&self) -> [&str; 4] {
        [&self.group_id, &self.group_name, &self.id, &self.name]
    }
}

impl Labels<7> for ServerInfoKey {
    const NAMES: &'static [&'static str; 7] = &[
        "virtual_group_id",
        "virtual_group_name",
        "server_id",
        "server_name",
        "status",
        "deployed_on",
        "leasing_mode",
    ];
    fn values(&self) -> [&str; 7] {
        let [a, b, c, d] = self.server.values();
        [
            a,
            b,
            c,
            d,
            &self.status,
            &self.deployed_on,
            &self.leasing_mode,
        ]
    }
}

impl Labels<7> for ServerFeatureKey {
    const NAMES: &'static [&'static str; 7] = &[
        "virtual_group_id",
        "virtual_group_name",
        "server_id",
        "server_name",
        "feature_name",
        "product_name",
        "license_type",
    ];
    fn values(&self) -> [&str; 7] {
        let [a, b, c, d] = self.server.values();
        [a, b, c, d, &self.feature, &self.product, &self.license_type]
    }
}

impl Labels<9> for PoolFeatureKey {
    const NAMES: &'static [&'static str; 9] = &[
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
    fn values(&self) -> [&str; 9] {
        let [a, b, c, d] = self.server.values();
        [
            a,
            b,
            c,
            d,
            &self.pool_id,
            &self.pool_name,
            &self.feature,
            &self.product,
            &self.license_type,
        ]
    }
}

/// `result` of the refresh and push counters.
pub struct ResultLabel(pub &'static str);

impl Labels<1> for ResultLabel {
    const NAMES: &'static [&'static str; 1] = &["result"];
    fn values(&self) -> [&str; 1] {
        self.static_values()
    }
}

impl StaticLabels<1> for ResultLabel {
    fn static_values(&self) -> [&'static str; 1] {
        [self.0]
    }
}

/// `reason` a batch left the OTLP backlog undelivered.
pub struct ReasonLabel(pub DropReason);

impl Labels<1> for ReasonLabel {
    const NAMES: &'static [&'static str; 1] = &["reason"];
    fn values(&self) -> [&str; 1] {
        self.static_values()
    }
}

impl StaticLabels<1> for ReasonLabel {
    fn static_values(&self) -> [&'static str; 1] {
        [self.0.label()]
    }
}

pub struct EndpointLabel(pub Endpoint);

impl Labels<1> for EndpointLabel {
    const NAMES: &'static [&'static str; 1] = &["endpoint"];
    fn values(&self) -> [&str; 1] {
        self.static_values()
    }
}

impl StaticLabels<1> for EndpointLabel {
    fn static_values(&self) -> [&'static str; 1] {
        [self.0.label()]
    }
}

/// A CLS endpoint and the HTTP status of an answer (`error` without one).
pub struct RequestLabels {
    pub endpoint: Endpoint,
    pub code: &'static str,
}

impl Labels<2> for RequestLabels {
    const NAMES: &'static [&'static str; 2] = &["endpoint", "code"];
    fn values(&self) -> [&str; 2] {
        self.static_values()
    }
}

impl StaticLabels<2> for RequestLabels {
    fn static_values(&self) -> [&'static str; 2] {
        [self.endpoint.label(), self.code]
    }
}

pub struct GuardLabels {
    pub endpoint: Endpoint,
    pub guard: PageGuard,
}

impl Labels<2> for GuardLabels {
    const NAMES: &'static [&'static str; 2] = &["endpoint", "guard"];
    fn values(&self) -> [&str; 2] {
        self.static_values()
    }
}

impl StaticLabels<2> for GuardLabels {
    fn static_values(&self) -> [&'static str; 2] {
        [self.endpoint.label(), self.guard.label()]
    }
}

pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc_version: &'static str,
}

impl Labels<3> for BuildInfo {
    const NAMES: &'static [&'static str; 3] = &["version", "revision", "rustc_version"];
    fn values(&self) -> [&str; 3] {
        self.static_values()
    }
}

impl StaticLabels<3> for BuildInfo {
    fn static_values(&self) -> [&'static str; 3] {
        [self.version, self.revision, self.rustc_version]
    }
}

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: env!("EXPORTER_GIT_REVISION"),
    rustc_version: env!("EXPORTER_RUSTC_VERSION"),
};

// --------------------------------------------------------------- families

// The Go exporter's nine families: same names, labels and meaning.
pub static UP: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_up",
    Kind::Gauge,
    Unit::None,
    "Whether the latest NVIDIA CLS refresh succeeded (1 = up, 0 = down).",
);
pub static SCRAPE_DURATION: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_scrape_duration_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Wall time of the latest NVIDIA CLS refresh attempt.",
);
pub static SCRAPE_TIMESTAMP: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_scrape_timestamp_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Unix time at which the served NVIDIA CLS snapshot was collected.",
);
pub static ENTITLEMENT_TOTAL: Metric<EntitlementKey, 8> = Metric::new(
    "nvidia_cls_entitlement_total_quantity",
    Kind::Gauge,
    Unit::Licenses,
    "Total entitlement quantity by virtual group and feature (contract capacity).",
);
pub static SERVER_INFO: Metric<ServerInfoKey, 7> = Metric::new(
    "nvidia_cls_license_server_info",
    Kind::Gauge,
    Unit::None,
    "Static information about a license server.",
);
pub static SERVER_FEATURE_TOTAL: Metric<ServerFeatureKey, 7> = Metric::new(
    "nvidia_cls_license_server_feature_total_quantity",
    Kind::Gauge,
    Unit::Licenses,
    "Total server feature capacity from license-server features.",
);
pub static SERVER_FEATURE_ACTIVE: Metric<ServerFeatureKey, 7> = Metric::new(
    "nvidia_cls_license_server_feature_active_leases",
    Kind::Gauge,
    Unit::Leases,
    "Active lease count by server feature from CLS active-lease data.",
);
pub static ENTITLEMENT_IN_USE: Metric<EntitlementKey, 8> = Metric::new(
    "nvidia_cls_entitlement_in_use_quantity",
    Kind::Gauge,
    Unit::Licenses,
    "Entitlement quantity in use by virtual group, product key and feature.",
);
pub static ENTITLEMENT_UNASSIGNED: Metric<EntitlementKey, 8> = Metric::new(
    "nvidia_cls_entitlement_unassigned_quantity",
    Kind::Gauge,
    Unit::Licenses,
    "Entitlement quantity not assigned to any license server.",
);
// Beyond the Go exporter.
pub static ENTITLEMENT_START: Metric<EntitlementKey, 8> = Metric::new(
    "nvidia_cls_entitlement_start_timestamp_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Unix time at which the entitlement starts (the earliest start of the rows with these labels).",
);
pub static ENTITLEMENT_END: Metric<EntitlementKey, 8> = Metric::new(
    "nvidia_cls_entitlement_end_timestamp_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Unix time at which the entitlement ends (the latest end of the rows with these labels; absent when it never expires).",
);
pub static SERVER_ACTIVE: Metric<ServerKey, 4> = Metric::new(
    "nvidia_cls_license_server_active_leases",
    Kind::Gauge,
    Unit::Leases,
    "All active leases on a license server.",
);
pub static POOL_ALLOTMENT: Metric<PoolFeatureKey, 9> = Metric::new(
    "nvidia_cls_license_pool_feature_allotment_quantity",
    Kind::Gauge,
    Unit::Licenses,
    "Quantity of a server feature allotted to a license pool.",
);
pub static POOL_IN_USE: Metric<PoolFeatureKey, 9> = Metric::new(
    "nvidia_cls_license_pool_feature_in_use_quantity",
    Kind::Gauge,
    Unit::Licenses,
    "Quantity of a license pool's feature allotment in use.",
);
pub static LAST_SUCCESS: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_last_success_timestamp_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Unix time of the latest successful NVIDIA CLS refresh.",
);
pub static REFRESHES: Metric<ResultLabel, 1> = Metric::new(
    "nvidia_cls_refreshes",
    Kind::Counter,
    Unit::None,
    "NVIDIA CLS refresh attempts since start, by result.",
);
pub static API_REQUESTS: Metric<RequestLabels, 2> = Metric::new(
    "nvidia_cls_api_requests",
    Kind::Counter,
    Unit::None,
    "NVIDIA CLS API requests since start, by endpoint and HTTP status (error for transport failures).",
);
pub static PAGING_GUARDS: Metric<GuardLabels, 2> = Metric::new(
    "nvidia_cls_pagination_guards",
    Kind::Counter,
    Unit::None,
    "Paged listings stopped by a guard instead of their natural end, by endpoint and guard.",
);
pub static PARTIAL: Metric<EndpointLabel, 1> = Metric::new(
    "nvidia_cls_partial_refresh_failures",
    Kind::Gauge,
    Unit::None,
    "Sub-resource requests that failed in the latest successful refresh; their data is missing from this snapshot.",
);
pub static UNATTRIBUTED: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_unattributed_leases",
    Kind::Gauge,
    Unit::Leases,
    "Leases skipped in the latest snapshot because their client names no license server and its group has several.",
);
pub static BUILD_INFO: Metric<BuildInfo, 3> = Metric::new(
    "nvidia_cls_exporter_build_info",
    Kind::Gauge,
    Unit::None,
    "Build information of this exporter; value 1.",
);

// The OTLP push's own health, live like the process figures; present only
// when the push is enabled (see `live`).
pub static OTLP_PUSHES: Metric<ResultLabel, 1> = Metric::new(
    "nvidia_cls_otlp_pushes",
    Kind::Counter,
    Unit::None,
    "OTLP pushes since start, by result (success; partial: the collector rejected some data points; failure: not delivered).",
);
pub static OTLP_LAST_SUCCESS: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_otlp_last_success_timestamp_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Unix time of the latest OTLP push the collector accepted (fully or partially).",
);
pub static OTLP_BACKLOG_BATCHES: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_otlp_backlog_batches",
    Kind::Gauge,
    Unit::None,
    "OTLP batches waiting for the collector to accept them (in memory or in OTEL_SPOOL_DIR).",
);
pub static OTLP_BACKLOG_BYTES: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_otlp_backlog_bytes",
    Kind::Gauge,
    Unit::Bytes,
    "Stored (compressed) size of the OTLP batches waiting for the collector.",
);
pub static OTLP_BACKLOG_OLDEST: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_otlp_backlog_oldest_timestamp_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Collection time of the oldest OTLP batch waiting for the collector; absent when none waits.",
);
pub static OTLP_BACKLOG_DROPPED: Metric<ReasonLabel, 1> = Metric::new(
    "nvidia_cls_otlp_backlog_dropped",
    Kind::Counter,
    Unit::None,
    "OTLP batches given up undelivered, by reason (age: older than OTEL_BACKLOG_MAX_AGE; size: past OTEL_BACKLOG_MAX_BYTES; rejected: refused by the collector for good; corrupt: a spool file that did not check out).",
);
pub static OTLP_SPOOL_WRITE_FAILURES: Metric<NoLabels, 0> = Metric::new(
    "nvidia_cls_otlp_spool_write_failures",
    Kind::Counter,
    Unit::None,
    "OTLP batches that could not be written to OTEL_SPOOL_DIR (a full or failing disk); they stay in memory.",
);

// The standard process families, as the Prometheus client libraries name
// them (no org_name).
pub static PROCESS_CPU: Metric<NoLabels, 0> = Metric::standard(
    "process_cpu_seconds",
    Kind::Counter,
    Unit::Seconds,
    "Total user and system CPU time spent in seconds.",
);
pub static PROCESS_RSS: Metric<NoLabels, 0> = Metric::standard(
    "process_resident_memory_bytes",
    Kind::Gauge,
    Unit::Bytes,
    "Resident memory size in bytes.",
);
pub static PROCESS_VSZ: Metric<NoLabels, 0> = Metric::standard(
    "process_virtual_memory_bytes",
    Kind::Gauge,
    Unit::Bytes,
    "Virtual memory size in bytes.",
);
pub static PROCESS_START: Metric<NoLabels, 0> = Metric::standard(
    "process_start_time_seconds",
    Kind::Gauge,
    Unit::Seconds,
    "Start time of the process since unix epoch in seconds.",
);
pub static PROCESS_OPEN_FDS: Metric<NoLabels, 0> = Metric::standard(
    "process_open_fds",
    Kind::Gauge,
    Unit::None,
    "Number of open file descriptors.",
);
pub static PROCESS_MAX_FDS: Metric<NoLabels, 0> = Metric::standard(
    "process_max_fds",
    Kind::Gauge,
    Unit::None,
    "Maximum number of open file descriptors.",
);

/// Every family, in exposition order (tests check the table against it).
#[cfg(test)]
pub(crate) static ALL: &[&super::family::Desc] = &[
    &UP.desc,
    &SCRAPE_DURATION.desc,
    &SCRAPE_TIMESTAMP.desc,
    &ENTITLEMENT_TOTAL.desc,
    &SERVER_INFO.desc,
    &SERVER_FEATURE_TOTAL.desc,
    &SERVER_FEATURE_ACTIVE.desc,
    &ENTITLEMENT_IN_USE.desc,
    &ENTITLEMENT_UNASSIGNED.desc,
    &ENTITLEMENT_START.desc,
    &ENTITLEMENT_END.desc,
    &SERVER_ACTIVE.desc,
    &POOL_ALLOTMENT.desc,
    &POOL_IN_USE.desc,
    &UNATTRIBUTED.desc,
    &PARTIAL.desc,
    &LAST_SUCCESS.desc,
    &REFRESHES.desc,
    &API_REQUESTS.desc,
    &PAGING_GUARDS.desc,
    &BUILD_INFO.desc,
    &OTLP_PUSHES.desc,
    &OTLP_LAST_SUCCESS.desc,
    &OTLP_BACKLOG_BATCHES.desc,
    &OTLP_BACKLOG_BYTES.desc,
    &OTLP_BACKLOG_OLDEST.desc,
    &OTLP_BACKLOG_DROPPED.desc,
    &OTLP_SPOOL_WRITE_FAILURES.desc,
    &PROCESS_CPU.desc,
    &PROCESS_RSS.desc,
    &PROCESS_VSZ.desc,
    &PROCESS_START.desc,
    &PROCESS_OPEN_FDS.desc,
    &PROCESS_MAX_FDS.desc,
];

// ---------------------------------------------------------------- samples

/// The families that change only when a refresh ends: rendered once then.
/// Families without samples are left out.
pub fn refresh_families<'a>(state: &'a Status, api: &ApiStats) -> Vec<Family<'a>> {
    let mut out = vec![
        UP.one(if state.up { 1.0 } else { 0.0 }),
        SCRAPE_DURATION.one(state.duration_seconds),
        SCRAPE_TIMESTAMP.one(state.timestamp),
    ];
    if let Some(s) = state.snapshot.as_deref() {
        let entitlements = || s.entitlements.iter();
        let features = || s.server_features.iter();
        let pools = || s.pool_features.iter();
        out.extend([
            ENTITLEMENT_TOTAL.family(entitlements().map(|(k, e)| (k, e.total))),
            SERVER_INFO.family(s.servers.keys().map(|k| (k, 1.0))),
            SERVER_FEATURE_TOTAL.family(features().filter_map(|(k, f)| Some((k, f.total?)))),
            SERVER_FEATURE_ACTIVE.family(
                features().filter_map(|(k, f)| f.leases_known.then_some((k, f.active_leases))),
            ),
            ENTITLEMENT_IN_USE.family(entitlements().map(|(k, e)| (k, e.in_use))),
            ENTITLEMENT_UNASSIGNED.family(entitlements().map(|(k, e)| (k, e.unassigned))),
            ENTITLEMENT_START.family(entitlements().filter_map(|(k, e)| Some((k, e.start?)))),
            ENTITLEMENT_END.family(entitlements().filter_map(|(k, e)| Some((k, e.end?)))),
            SERVER_ACTIVE.family(s.server_leases.iter().map(|(k, n)| (k, *n))),
            POOL_ALLOTMENT.family(pools().map(|(k, p)| (k, p.allotment))),
            POOL_IN_USE.family(pools().map(|(k, p)| (k, p.in_use))),
            UNATTRIBUTED.one(s.unattributed_leases),
            PARTIAL.family_of(Endpoint::ALL.iter().map(|e| {
                let failed = s.partial_failures.get(e).copied().unwrap_or(0);
                (EndpointLabel(*e), failed as f64)
            })),
        ]);
    }
    if let Some(t) = state.last_success {
        out.push(LAST_SUCCESS.one(t));
    }
    out.push(REFRESHES.family_of([
        (ResultLabel("success"), state.successes as f64),
        (ResultLabel("failure"), state.failures as f64),
    ]));
    out.push(
        API_REQUESTS.family_of(
            api.requests()
                .into_iter()
                .map(|(endpoint, code, n)| (RequestLabels { endpoint, code }, n as f64)),
        ),
    );
    out.push(
        PAGING_GUARDS.family_of(
            api.guards()
                .into_iter()
                .map(|(endpoint, guard, n)| (GuardLabels { endpoint, guard }, n as f64)),
        ),
    );
    out.push(BUILD_INFO.family([(&BUILD, 1.0)]));
    out.retain(|f| !f.is_empty());
    out
}

/// The OTLP push's families.
pub fn push_families(p: &PushCounts) -> Vec<Family<'static>> {
    let mut out = vec![OTLP_PUSHES.family_of([
        (ResultLabel("success"), p.success as f64),
        (ResultLabel("partial"), p.partial as f64),
        (ResultLabel("failure"), p.failure as f64),
    ])];
    if let Some(t) = p.last_success {
        out.push(OTLP_LAST_SUCCESS.one(t));
    }
    let b = &p.backlog;
    out.push(OTLP_BACKLOG_BATCHES.one(b.batches as f64));
    out.push(OTLP_BACKLOG_BYTES.one(b.bytes as f64));
    if let Some(t) = b.oldest {
        out.push(OTLP_BACKLOG_OLDEST.one(t));
    }
    out.push(
        OTLP_BACKLOG_DROPPED
            .family_of(DropReason::ALL.map(|r| (ReasonLabel(r), b.dropped[r as usize] as f64))),
    );
    if let Some(n) = b.spool_write_failures {
        out.push(OTLP_SPOOL_WRITE_FAILURES.one(n as f64));
    }
    out
}

#[cfg(test)]
mod tests;
