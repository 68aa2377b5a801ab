//! The encoder against the exposition grammar: whatever strings reach it as
//! the org name or label values, the text 0.0.4 and OpenMetrics bodies must
//! pass the strict checker in `exporter_fuzz::exposition`, and unescaping
//! what it reads must give back exactly what was encoded.
//!
//! Input: fields separated by 0xFF (never in UTF-8). Field 0 is the org
//! name; the rest are strings. They are used twice:
//! 1. raw, as label values of families from the real metric table, with
//!    values from the fields' bytes (NaN, infinities, subnormals included):
//!    every sample must read back with the same name, labels and value;
//! 2. as every id and name of an org (group, server, feature, pool, lease),
//!    built into a `Snapshot` and rendered as a scrape renders it: the
//!    `org_name` label of every sample must read back as the org name.

#![no_main]

use exporter_fuzz::exposition::{check, Sample as Parsed};
use exporter_fuzz::{
    fields, flavor, good_refresh, good_status, scrape_bodies, text, FIELD_SEPARATOR,
};
use libfuzzer_sys::fuzz_target;
use nvidia_license_server_exporter::harness::model::{
    ClientProperties, Entitlement, EntitlementFeature, Lease, LeaseClient, LicensePool,
    LicenseServer, PoolFeature, ProductKey, ServerFeature, VirtualGroup,
};
use nvidia_license_server_exporter::harness::Format;
use nvidia_license_server_exporter::harness::ProcessStats;
use nvidia_license_server_exporter::harness::ServerData;
use nvidia_license_server_exporter::harness::Snapshot;
use nvidia_license_server_exporter::harness::{
    families, process_families, push_families, Family, Kind, Metric, PushCounts,
};
use nvidia_license_server_exporter::harness::{GroupData, OrgData};
use std::collections::HashSet;

/// Fields read from one input; more would only repeat the same paths.
const MAX_FIELDS: usize = 48;

/// A value from a field's first 8 bytes. Counters get a count (never
/// negative or NaN: OpenMetrics forbids that, and the exporter's are u64).
fn value(field: &[u8], counter: bool) -> f64 {
    let mut bytes = [0u8; 8];
    let n = field.len().min(8);
    bytes[..n].copy_from_slice(&field[..n]);
    let bits = u64::from_le_bytes(bytes);
    if counter {
        (bits >> 11) as f64
    } else {
        f64::from_bits(bits)
    }
}

/// Families from the table with the fields as raw label values, one label
/// set per sample at most once (the exporter's come from map keys).
fn raw_families<'a>(strings: &'a [String], raw: &[&[u8]]) -> Vec<Family<'a>> {
    /// Two samples of `metric`, family number `i`, their labels and values
    /// taken from the fields in turn.
    fn two<'a, K, const N: usize>(
        metric: &'static Metric<K, N>,
        i: usize,
        strings: &'a [String],
        raw: &[&[u8]],
    ) -> Family<'a> {
        let counter = metric.desc.kind == Kind::Counter;
        let mut seen = HashSet::new();
        let rows: Vec<([&'a str; N], f64)> = (0..2)
            .map(|s| {
                let labels: [&'a str; N] =
                    std::array::from_fn(|l| strings[(i + s * N + l) % strings.len()].as_str());
                (labels, value(raw[(i + s) % raw.len()], counter))
            })
            .filter(|(labels, _)| seen.insert(*labels))
            .collect();
        metric.family_of_values(rows)
    }
    // Families of every label arity the table has, gauges and counters,
    // with and without the org label.
    vec![
        two(&families::UP, 0, strings, raw),
        two(&families::ENTITLEMENT_TOTAL, 1, strings, raw),
        two(&families::SERVER_INFO, 2, strings, raw),
        two(&families::POOL_ALLOTMENT, 3, strings, raw),
        two(&families::ENTITLEMENT_END, 4, strings, raw),
        two(&families::REFRESHES, 5, strings, raw),
        two(&families::API_REQUESTS, 6, strings, raw),
        two(&families::BUILD_INFO, 7, strings, raw),
        two(&families::PROCESS_CPU, 8, strings, raw),
        two(&families::PROCESS_RSS, 9, strings, raw),
    ]
}

/// What the checker must read back from `families`.
fn expected(families: &[Family<'_>], org: &str) -> Vec<Parsed> {
    let mut out = Vec::new();
    for family in families {
        let desc = family.desc();
        let name = match desc.kind {
            Kind::Counter => format!("{}_total", desc.name),
            Kind::Gauge => desc.name.to_owned(),
        };
        for sample in family.samples() {
            let mut labels = Vec::new();
            if desc.org_label {
                labels.push(("org_name".to_owned(), org.to_owned()));
            }
            labels.extend(
                desc.labels
                    .iter()
                    .map(|l| l.to_string())
                    .zip(sample.labels().iter().map(|v| v.to_string())),
            );
            out.push(Parsed {
                name: name.clone(),
                labels,
                value: sample.value(),
            });
        }
    }
    out
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Renders as a scrape does (refresh part, live part, `# EOF`) and checks.
fn render_and_check(refresh: &[Family<'_>], live: &[Family<'_>], org: &str) -> [Vec<Parsed>; 2] {
    scrape_bodies(refresh, live, org).map(|(format, text)| match check(&text, flavor(format)) {
        Ok(checked) => checked.samples,
        Err(e) => panic!("{format:?} exposition rejected: {e}\n{text}"),
    })
}

/// An org whose every id and name is one of the strings, in turn.
fn org_of(strings: &[String]) -> OrgData {
    let mut next = strings.iter().cycle().cloned();
    let mut s = move || next.next().unwrap_or_default();
    let feature_id = s();
    let server_id = s();
    let server = LicenseServer {
        id: server_id.clone(),
        name: s(),
        status: s(),
        virtual_group_id: s(),
        virtual_group_name: s(),
        deployed_on: s(),
        leasing_mode: s(),
        service_instance_id: s(),
        license_server_features: vec![ServerFeature {
            id: feature_id.clone(),
            feature_name: s(),
            product_name: s(),
            license_type: s(),
            total_quantity: 4.0,
        }],
    };
    let pool = LicensePool {
        id: s(),
        name: s(),
        license_pool_features: vec![PoolFeature {
            license_server_feature_id: feature_id.clone(),
            total_allotment: 4.0,
            in_use: 1.0,
        }],
    };
    let group = VirtualGroup {
        id: s(),
        name: s(),
        entitlements: vec![Entitlement {
            id: s(),
            ems_entitlement_id: s(),
            entitlement_product_keys: vec![ProductKey {
                ems_product_key_id: s(),
                entitlement_features: vec![EntitlementFeature {
                    feature_name: s(),
                    feature_version: s(),
                    product_name: s(),
                    license_type: s(),
                    start_date: s(),
                    end_date: s(),
                    total_quantity: 10.0,
                    in_use_quantity: 3.0,
                    unassigned_quantity: 2.0,
                }],
            }],
        }],
    };
    let lease = |lease_id: String, feature_name: &str| Lease {
        lease_id,
        feature_name: feature_name.to_owned(),
        lease_count: 1.0,
        license_allotment_feature_id: feature_id.clone(),
    };
    let leases = vec![
        LeaseClient {
            leases: vec![lease(s(), "")],
            additional_properties: ClientProperties {
                license_server_id: server_id.clone(),
                license_server_name: String::new(),
            },
        },
        // A client naming a server the listing did not return.
        LeaseClient {
            leases: vec![lease(s(), "f")],
            additional_properties: ClientProperties {
                license_server_id: s(),
                license_server_name: s(),
            },
        },
    ];
    OrgData {
        groups: vec![GroupData {
            group,
            servers: vec![ServerData {
                server,
                pools: vec![pool],
            }],
            leases,
            ..GroupData::default()
        }],
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = fields(data, FIELD_SEPARATOR, MAX_FIELDS);
    let org = text(raw[0]);
    let strings: Vec<String> = raw.iter().map(|f| text(f)).collect();

    // 1. Raw label values and values: everything reads back as written.
    let families = raw_families(&strings, &raw);
    let [text004, openmetrics] = render_and_check(&families, &[], &org);
    for (format, got) in [
        (Format::Text004, text004),
        (Format::OpenMetrics, openmetrics),
    ] {
        let want = expected(&families, &org);
        assert_eq!(got.len(), want.len(), "{format:?}: sample count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.name, w.name, "{format:?}");
            assert_eq!(g.labels, w.labels, "{format:?}: labels must round-trip");
            assert!(
                same_value(g.value, w.value),
                "{format:?}: {} read back as {}",
                w.value,
                g.value
            );
        }
    }

    // 2. The same strings through a snapshot, as a scrape renders it.
    let snapshot = Snapshot::build(&org_of(&strings), 1_700_000_000.0);
    let status = good_status(snapshot);
    let refresh = good_refresh(&status);
    let mut live = process_families(&ProcessStats::default());
    live.extend(push_families(&PushCounts::default()));
    for samples in render_and_check(&refresh, &live, &org) {
        assert!(!samples.is_empty());
        for sample in &samples {
            let org_label = sample.labels.iter().find(|(l, _)| l == "org_name");
            match org_label {
                Some((_, v)) => assert_eq!(v, &org, "org_name must round-trip"),
                None => assert!(sample.name.starts_with("process_"), "{}", sample.name),
            }
        }
    }
});
