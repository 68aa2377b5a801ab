//! Tests of `Snapshot::build`: counting rules, normalisation, merging.
use super::*;
use crate::cls::model::*;
use crate::cls::walk::ServerData;

fn server(id: &str, features: &[(&str, &str, f64)]) -> LicenseServer {
    LicenseServer {
        id: id.into(),
        name: format!("name-{id}"),
        service_instance_id: "si".into(),
        license_server_features: features
            .iter()
            .map(|(fid, name, total)| ServerFeature {
                id: (*fid).into(),
                feature_name: (*name).into(),
                product_name: "vGPU".into(),
                license_type: "CONCURRENT_COUNTED_SINGLE".into(),
                total_quantity: *total,
            })
            .collect(),
        ..LicenseServer::default()
    }
}

fn client(server_id: &str, leases: &[(&str, &str, f64, &str)]) -> LeaseClient {
    LeaseClient {
        leases: leases
            .iter()
            .map(|(id, feature, count, allot)| Lease {
                lease_id: (*id).into(),
                feature_name: (*feature).into(),
                lease_count: *count,
                license_allotment_feature_id: (*allot).into(),
            })
            .collect(),
        additional_properties: ClientProperties {
            license_server_id: server_id.into(),
            license_server_name: String::new(),
        },
    }
}

fn group(id: &str, servers: Vec<LicenseServer>, leases: Vec<LeaseClient>) -> GroupData {
    GroupData {
        group: VirtualGroup {
            id: id.into(),
            name: format!("g{id}"),
            entitlements: Vec::new(),
        },
        servers: servers.into_iter().map(ServerData::from).collect(),
        leases,
        failures: Vec::new(),
        leases_unknown: HashSet::new(),
    }
}

fn active(snap: &Snapshot, server: &str, feature: &str) -> Option<f64> {
    snap.server_features
        .iter()
        .find(|(k, _)| &*k.server.id == server && &*k.feature == feature && &*k.product == "vGPU")
        .map(|(_, v)| v.active_leases)
}

#[test]
fn lease_counting_follows_the_go_exporter_rules() {
    let org = OrgData {
        groups: vec![
            group(
                "1",
                vec![server("s1", &[("f1", "A", 10.0)])],
                vec![
                    // No server id: the group's only server. Count 0 → 1.
                    client("", &[("l1", "A", 0.0, ""), ("l2", "", 3.0, "f1")]),
                    // l1 again: counted once.
                    client("s1", &[("l1", "A", 1.0, "")]),
                ],
            ),
            group(
                "2",
                vec![server("s2", &[("f2", "B", 5.0)]), server("s3", &[])],
                vec![
                    // No server id and two servers: skipped.
                    client("", &[("l9", "B", 1.0, "")]),
                    // l2 was seen in group 1: org-wide dedupe.
                    client("s2", &[("l2", "B", 1.0, "f2"), ("l3", "B", 2.0, "f2")]),
                ],
            ),
        ],
    };
    let snap = Snapshot::build(&org, 0.0);
    // l1 has no allotment id, so its product and type are unknown (Go rule):
    // it lands in its own row, and the capacity row counts l2 only.
    let l1_row = snap
        .server_features
        .iter()
        .find(|(k, _)| &*k.server.id == "s1" && &*k.product == "unknown")
        .map(|(_, v)| *v);
    assert_eq!(
        l1_row,
        Some(FeatureUse {
            total: None,
            active_leases: 1.0,
            leases_known: true
        })
    );
    assert_eq!(active(&snap, "s1", "A"), Some(3.0));
    assert_eq!(active(&snap, "s2", "B"), Some(2.0));
    assert_eq!(snap.unattributed_leases, 1.0);
    let s3 = snap
        .server_leases
        .iter()
        .find(|(k, _)| &*k.id == "s3")
        .map(|(_, v)| *v);
    assert_eq!(s3, Some(0.0), "a server without leases reports 0");
    let s1 = snap
        .server_leases
        .iter()
        .find(|(k, _)| &*k.id == "s1")
        .map(|(_, v)| *v);
    assert_eq!(s1, Some(4.0));
}

#[test]
fn servers_whose_leases_are_unknown_get_no_lease_count() {
    let mut data = group(
        "1",
        vec![
            server("s1", &[("f1", "A", 10.0)]),
            server("s2", &[("f2", "A", 5.0)]),
        ],
        vec![
            client("s1", &[("l1", "A", 1.0, "f1")]),
            client("s2", &[("l2", "A", 1.0, "f2")]),
        ],
    );
    data.leases_unknown.insert("s2".to_owned());
    let snap = Snapshot::build(&OrgData { groups: vec![data] }, 0.0);
    let leases = |id: &str| {
        snap.server_leases
            .iter()
            .find(|(k, _)| &*k.id == id)
            .map(|(_, v)| *v)
    };
    assert_eq!((leases("s1"), leases("s2")), (Some(1.0), None));
    assert_eq!(active(&snap, "s1", "A"), Some(1.0));
    assert_eq!(
        snap.server_features
            .iter()
            .find(|(k, _)| &*k.server.id == "s2")
            .map(|(_, v)| v.total),
        Some(Some(5.0)),
        "its capacity is still known"
    );
}

fn entitlement(ems: &str, keys: Vec<ProductKey>) -> Entitlement {
    Entitlement {
        ems_entitlement_id: ems.into(),
        entitlement_product_keys: keys,
        ..Entitlement::default()
    }
}

fn product_key(ems: &str, features: Vec<EntitlementFeature>) -> ProductKey {
    ProductKey {
        ems_product_key_id: ems.into(),
        entitlement_features: features,
    }
}

fn feature(total: f64, start: &str, end: &str) -> EntitlementFeature {
    EntitlementFeature {
        feature_name: "A".into(),
        feature_version: "1".into(),
        total_quantity: total,
        in_use_quantity: 1.0,
        unassigned_quantity: 0.5,
        start_date: start.into(),
        end_date: end.into(),
        ..EntitlementFeature::default()
    }
}

fn entitlements_of(entitlements: Vec<Entitlement>) -> Vec<(Vec<String>, EntitlementRow)> {
    let mut data = group("1", vec![], vec![]);
    data.group.entitlements = entitlements;
    Snapshot::build(&OrgData { groups: vec![data] }, 0.0)
        .entitlements
        .iter()
        .map(|(k, row)| {
            let ids = vec![
                k.ems_entitlement_id.to_string(),
                k.ems_product_key_id.to_string(),
            ];
            (ids, *row)
        })
        .collect()
}

#[test]
fn one_feature_under_two_product_keys_is_two_rows() {
    let rows = entitlements_of(vec![entitlement(
        "ent-1",
        vec![
            product_key("pk-72", vec![feature(72.0, "2025-01-01", "2026-01-01")]),
            product_key("pk-128", vec![feature(128.0, "2025-06-01", "")]),
        ],
    )]);
    let ids: Vec<_> = rows
        .iter()
        .map(|(ids, row)| (ids.join("/"), row.total))
        .collect();
    assert_eq!(
        ids,
        [
            ("ent-1/pk-128".to_owned(), 128.0),
            ("ent-1/pk-72".to_owned(), 72.0)
        ]
    );
    assert_eq!(rows[0].1.end, None, "an empty end date never expires");
    assert_eq!(rows[1].1.end, parse_date("2026-01-01"));
}

#[test]
fn rows_sharing_every_label_are_summed_and_their_dates_merged() {
    let rows = entitlements_of(vec![entitlement(
        "ent-1",
        vec![product_key(
            "pk-1",
            vec![
                feature(2.0, "2025-06-01", "2027-01-01"),
                feature(3.5, "2025-01-01", "2026-01-01"),
                feature(1.0, "not a date", "2026-06-01"),
            ],
        )],
    )]);
    assert_eq!(
        rows,
        [(
            vec!["ent-1".to_owned(), "pk-1".to_owned()],
            EntitlementRow {
                total: 6.5,
                in_use: 3.0,
                unassigned: 1.5,
                start: parse_date("2025-01-01"),
                end: parse_date("2027-01-01"),
            }
        )]
    );
    // A row that never expires makes the merged row never expire.
    let rows = entitlements_of(vec![entitlement(
        "ent-1",
        vec![product_key(
            "pk-1",
            vec![
                feature(1.0, "", "2027-01-01"),
                feature(1.0, "", "9999-12-31"),
            ],
        )],
    )]);
    assert_eq!((rows[0].1.start, rows[0].1.end), (None, None));
}

#[test]
fn missing_ems_ids_are_unknown() {
    let rows = entitlements_of(vec![
        entitlement("", vec![product_key(" ", vec![feature(1.0, "", "")])]),
        Entitlement {
            id: "not-an-ems-id".into(),
            entitlement_product_keys: vec![ProductKey {
                entitlement_features: vec![feature(2.0, "", "")],
                ..ProductKey::default()
            }],
            ..Entitlement::default()
        },
    ]);
    assert_eq!(rows.len(), 1, "both rows map to one label set");
    assert_eq!(rows[0].0, ["unknown", "unknown"]);
    assert_eq!(rows[0].1.total, 3.0);
}
