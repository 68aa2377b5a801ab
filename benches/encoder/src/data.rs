//! The synthetic data: a snapshot whose families hold a given number of
//! series with 7 to 10 labels (org_name included), some values needing
//! escaping, and the same series registered in prometheus-client and in
//! prometheus.

use nvidia_license_server_exporter::harness::ApiStats;
use nvidia_license_server_exporter::harness::{refresh_families, Family, Status};
use nvidia_license_server_exporter::harness::{
    EntitlementKey, EntitlementRow, FeatureUse, PoolFeatureKey, PoolUse, ServerFeatureKey,
    ServerInfoKey, ServerKey, Snapshot,
};
use prometheus_client::metrics::family::Family as PcFamily;
use prometheus_client::metrics::gauge::Gauge as PcGauge;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

pub const ORG: &str = "lic-org \"prod\"";

/// Series per unit of `snapshot`: 3 entitlement, 2 dated entitlement,
/// 1 server info, 2 server feature and 2 pool feature series.
pub const SERIES_PER_UNIT: usize = 10;

/// A small deterministic generator (xorshift): the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }
}

/// Group names: about one in four needs escaping (quote, backslash,
/// newline), others carry non-ASCII UTF-8.
const GROUP_NAMES: &[&str] = &[
    "Engineering",
    "Render Farm \"B\"",
    "Zürich Lab",
    "東京 R&D",
    "Finance\\Ops",
    "QA nightly\nbuilds",
    "Data Science",
    "VDI Pool — Paris",
];
const FEATURES: &[&str] = &[
    "NVIDIA Virtual Compute Server",
    "NVIDIA RTX Virtual Workstation",
    "NVIDIA Virtual PC",
    "NVIDIA Virtual Applications",
    "NVIDIA AI Enterprise",
];
const LICENSE_TYPES: &[&str] = &[
    "CONCURRENT_COUNTED_SINGLE",
    "CONCURRENT_COUNTED_MULTIPLE",
    "NODE_LOCKED",
];
const REGIONS: &[&str] = &["eu-west-1", "us-east-2", "ap-northeast-1", "lab \"cold\""];

/// A quantity: an integer, or now and then a fraction (summed API values).
fn quantity(rng: &mut Rng) -> f64 {
    let n = rng.below(2000) as f64;
    if rng.below(50) == 0 {
        n + 0.5
    } else {
        n
    }
}

/// A snapshot with `units * SERIES_PER_UNIT` series in the families with
/// 7 to 10 labels.
pub fn snapshot(units: usize) -> Snapshot {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut entitlements = BTreeMap::new();
    let mut servers = BTreeMap::new();
    let mut server_features = BTreeMap::new();
    let mut pool_features = BTreeMap::new();
    for i in 0..units {
        let group = i % 40;
        let group_id = (40_000 + group).to_string();
        let group_name = format!("{} {group}", GROUP_NAMES[group % GROUP_NAMES.len()]);
        let feature = rng.pick(FEATURES);
        let version = format!("{}.{}", 13 + rng.below(5), rng.below(4));
        let product = format!("{feature} (contract C-{i:05})");
        let license_type = rng.pick(LICENSE_TYPES);

        let start = 1_735_689_600.0 + rng.below(31_536_000) as f64;
        entitlements.insert(
            EntitlementKey {
                group_id: group_id.as_str().into(),
                group_name: group_name.as_str().into(),
                ems_entitlement_id: (9_000_000 + i).to_string().into(),
                ems_product_key_id: (7_000_000 + i).to_string().into(),
                feature: feature.into(),
                feature_version: version.as_str().into(),
                product: product.as_str().into(),
                license_type: license_type.into(),
            },
            EntitlementRow {
                total: quantity(&mut rng),
                in_use: quantity(&mut rng),
                unassigned: quantity(&mut rng),
                start: Some(start),
                end: Some(start + 94_608_000.0),
            },
        );

        let server_id = rng.uuid();
        let server_name = format!("dls-{}-{i:04}", rng.pick(REGIONS));
        let server = ServerKey {
            group_id: group_id.into(),
            group_name: group_name.into(),
            id: server_id.into(),
            name: server_name.into(),
        };
        servers.insert(
            ServerInfoKey {
                server: server.clone(),
                status: rng.pick(&["ENABLED", "ENABLED", "DISABLED"]).into(),
                deployed_on: rng.pick(&["CLOUD", "ON_PREMISES"]).into(),
                leasing_mode: rng.pick(&["STANDARD", "HIGH_AVAILABILITY"]).into(),
            },
            (),
        );
        server_features.insert(
            ServerFeatureKey {
                server: server.clone(),
                feature: feature.into(),
                product: product.as_str().into(),
                license_type: license_type.into(),
            },
            FeatureUse {
                total: Some(quantity(&mut rng)),
                active_leases: rng.below(500) as f64,
                leases_known: true,
            },
        );
        pool_features.insert(
            PoolFeatureKey {
                server,
                pool_id: rng.uuid().into(),
                pool_name: format!("Default pool {i}").into(),
                feature: feature.into(),
                product: product.into(),
                license_type: license_type.into(),
            },
            PoolUse {
                allotment: quantity(&mut rng),
                in_use: quantity(&mut rng),
            },
        );
    }
    Snapshot {
        collected_at: 1_767_225_600.0,
        entitlements: entitlements.into(),
        servers: servers.into(),
        server_features: server_features.into(),
        pool_features: pool_features.into(),
        ..Snapshot::default()
    }
}

/// What a successful refresh that built `snapshot` publishes.
pub fn status(snapshot: Snapshot) -> Status {
    Status {
        up: true,
        duration_seconds: 1.25,
        timestamp: snapshot.collected_at,
        last_success: Some(snapshot.collected_at),
        successes: 1,
        failures: 0,
        snapshot: Some(Arc::new(snapshot)),
    }
}

/// The status's families through the exporter's own metric table, less
/// the handful of self-metrics with fewer labels.
pub fn families(status: &Status) -> Vec<Family<'_>> {
    let mut families = refresh_families(status, &ApiStats::default());
    families.retain(|f| f.desc().labels.len() >= 6);
    families
}

pub fn series(families: &[Family<'_>]) -> usize {
    families.iter().map(|f| f.samples().len()).sum()
}

/// The label pairs of a sample, org_name first, as the crates take them.
fn pairs(family: &Family<'_>, values: &[&str]) -> Vec<(String, String)> {
    std::iter::once(("org_name".to_owned(), ORG.to_owned()))
        .chain(
            family
                .desc()
                .labels
                .iter()
                .zip(values)
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
        )
        .collect()
}

/// prometheus-client appends a period to every help text.
fn help_without_period(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

/// The same series in a prometheus-client registry: one metric family of
/// f64 gauges per family.
pub fn prometheus_client_registry(families: &[Family]) -> prometheus_client::registry::Registry {
    let mut registry = prometheus_client::registry::Registry::default();
    for family in families {
        let metric: PcFamily<Vec<(String, String)>, PcGauge<f64, AtomicU64>> = PcFamily::default();
        for sample in family.samples() {
            metric
                .get_or_create(&pairs(family, sample.labels()))
                .set(sample.value());
        }
        registry.register(
            family.desc().name,
            help_without_period(family.desc().help),
            metric,
        );
    }
    registry
}

/// The same series in a prometheus registry: one GaugeVec per family.
pub fn prometheus_registry(families: &[Family]) -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    for family in families {
        let names: Vec<&str> = std::iter::once("org_name")
            .chain(family.desc().labels.iter().copied())
            .collect();
        let vec = prometheus::GaugeVec::new(
            prometheus::Opts::new(family.desc().name, family.desc().help),
            &names,
        )
        .expect("the exporter's metric and label names are valid");
        for sample in family.samples() {
            let values: Vec<&str> = std::iter::once(ORG)
                .chain(sample.labels().iter().copied())
                .collect();
            vec.with_label_values(&values).set(sample.value());
        }
        registry
            .register(Box::new(vec))
            .expect("each family is registered once");
    }
    registry
}
