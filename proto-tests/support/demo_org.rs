//! The demo org that `scripts/demo` serves (through `fake-cls --demo`) and
//! the README's screenshot shows: plausible names, every server feature
//! leased between 20 and 95 %, one entitlement ending within 30 days, a few
//! hundred leases, and nothing hostile (the hostile strings are in
//! `fixtures/org.json`, for the tests). Its dates are relative to the day it
//! is made, so the expiring entitlement always expires soon: it is made at
//! start, never committed.
#![allow(dead_code)]

use serde_json::{json, Map, Value};

/// The org name the demo serves and the exporter is given.
pub const DEMO_ORG: &str = "lic-demo";
/// Days from today to the end of the entitlement that expires soon.
pub const EXPIRING_IN_DAYS: i64 = 21;

/// A server feature: (feature, capacity, active leases).
type Feature = (&'static str, u32, u32);

struct Server {
    id: &'static str,
    name: &'static str,
    deployed_on: &'static str,
    instance: &'static str,
    /// The host names of its clients start with this.
    hosts: &'static str,
    features: &'static [Feature],
    /// One pool takes each feature whole; of two, the first takes
    /// FIRST_POOL_SHARE % of its capacity and leases, the second the rest.
    pools: &'static [&'static str],
}

/// A feature of a product key: (feature, total, assigned, days from today to
/// its start, to its end).
type KeyFeature = (&'static str, u32, u32, i64, i64);

struct Group {
    id: u32,
    name: &'static str,
    servers: &'static [Server],
    entitlement: &'static str,
    /// (product key id, sale type, features).
    keys: &'static [(&'static str, &'static str, &'static [KeyFeature])],
}

const DWS: &str = "Quadro-Virtual-DWS";
const VPC: &str = "GRID-Virtual-PC";
const VAPPS: &str = "GRID-Virtual-Apps";
const VCS: &str = "NVIDIA-vComputeServer";

fn product(feature: &str) -> &'static str {
    match feature {
        DWS => "NVIDIA RTX Virtual Workstation",
        VPC => "NVIDIA Virtual PC",
        VAPPS => "NVIDIA Virtual Applications",
        _ => "NVIDIA Virtual Compute Server",
    }
}

/// The first pool's share of a feature, in %.
const FIRST_POOL_SHARE: u32 = 60;

const GROUPS: &[Group] = &[
    Group {
        id: 101,
        name: "Design Studio",
        servers: &[Server {
            id: "5f0c2d1e-3b7a-4c1e-9a51-0e6f2b8d4a11",
            name: "cls-eu-west-1",
            deployed_on: "CLOUD",
            instance: "7c1e4b2a-90d3-4f6e-8a5b-1d2c3e4f5a01",
            hosts: "design-ws",
            features: &[(DWS, 64, 52), (VPC, 40, 14)],
            pools: &["CAD workstations", "Review rooms"],
        }],
        entitlement: "EMS-ENT-4471-0137",
        keys: &[
            (
                "PK-RTXVWS-4471-A",
                "NEW",
                &[(DWS, 64, 64, -344, EXPIRING_IN_DAYS)],
            ),
            ("PK-VPC-4471-B", "NEW", &[(VPC, 50, 40, -344, 386)]),
        ],
    },
    Group {
        id: 102,
        name: "Virtual Desktops",
        servers: &[
            Server {
                id: "a3d9e7c4-1f2b-4d8e-b6a0-3c4d5e6f7a22",
                name: "cls-us-east-1",
                deployed_on: "CLOUD",
                instance: "7c1e4b2a-90d3-4f6e-8a5b-1d2c3e4f5a02",
                hosts: "vdi-nyc",
                features: &[(VPC, 250, 168), (VAPPS, 100, 41)],
                pools: &["Office", "Contractors"],
            },
            Server {
                id: "c8b2f1a0-6e5d-4c3b-9a87-5e6f7a8b9c33",
                name: "dls-fra-01",
                deployed_on: "ON_PREM",
                instance: "2e9f8d7c-6b5a-4e3d-8c2b-9a8b7c6d5e03",
                hosts: "vdi-fra",
                features: &[(VPC, 80, 61)],
                pools: &["Frankfurt office"],
            },
        ],
        entitlement: "EMS-ENT-4471-0192",
        keys: &[
            ("PK-VPC-4471-C", "NEW", &[(VPC, 360, 330, -203, 527)]),
            ("PK-VAPPS-4471-D", "ADD_ON", &[(VAPPS, 120, 100, -112, 527)]),
        ],
    },
    Group {
        id: 103,
        name: "Compute Cluster",
        servers: &[Server {
            id: "e1f2a3b4-c5d6-4e7f-8091-a2b3c4d5e644",
            name: "cls-ap-south-1",
            deployed_on: "CLOUD",
            instance: "7c1e4b2a-90d3-4f6e-8a5b-1d2c3e4f5a04",
            hosts: "gpu-node",
            features: &[(VCS, 32, 29)],
            pools: &["Training", "Inference"],
        }],
        entitlement: "EMS-ENT-4471-0233",
        keys: &[("PK-VCS-4471-E", "NEW", &[(VCS, 32, 32, -61, 669)])],
    },
];

/// Days since 1970-01-01 of today (UTC).
pub fn today() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 86_400) as i64
}

/// `YYYY-MM-DD` of a day number (Howard Hinnant's civil_from_days).
pub fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `(capacity, leases)` split into the pools of a server: the first pool
/// takes FIRST_POOL_SHARE % of each (rounded down), the second the rest.
fn split(pools: usize, capacity: u32, leases: u32) -> Vec<(u32, u32)> {
    if pools < 2 {
        return vec![(capacity, leases)];
    }
    let first = (
        capacity * FIRST_POOL_SHARE / 100,
        leases * FIRST_POOL_SHARE / 100,
    );
    vec![first, (capacity - first.0, leases - first.1)]
}

/// A lease id that looks like one (a UUID), different for every lease.
fn lease_id(n: u32) -> String {
    format!(
        "3fa85f64-5717-4562-b3fc-{:012x}",
        0x2c96_3f66_0000_u64 + u64::from(n)
    )
}

/// The demo org with dates relative to `today` (days since 1970-01-01).
pub fn demo_org(today: i64) -> Value {
    let mut lease_number = 0;
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|group| {
            let mut leases = Map::new();
            let servers: Vec<Value> = group
                .servers
                .iter()
                .map(|server| {
                    let feature_id = |f: &str| format!("{}-{}", server.name, f.to_lowercase());
                    let features: Vec<Value> = server
                        .features
                        .iter()
                        .map(|&(feature, capacity, _)| {
                            json!({
                                "id": feature_id(feature), "featureName": feature,
                                "productName": product(feature),
                                "licenseType": "CONCURRENT_COUNTED_SINGLE",
                                "totalQuantity": capacity,
                            })
                        })
                        .collect();
                    let pools: Vec<Value> = server
                        .pools
                        .iter()
                        .enumerate()
                        .map(|(p, name)| {
                            let shares: Vec<Value> = server
                                .features
                                .iter()
                                .map(|&(feature, capacity, leased)| {
                                    let (allotment, in_use) =
                                        split(server.pools.len(), capacity, leased)[p];
                                    json!({ "licenseServerFeatureId": feature_id(feature),
                                            "totalAllotment": allotment, "inUse": in_use })
                                })
                                .collect();
                            json!({ "id": format!("{}-pool-{}", server.name, p + 1), "name": name,
                                    "licensePoolFeatures": shares })
                        })
                        .collect();
                    let mut clients = Vec::new();
                    for &(feature, _, leased) in server.features {
                        for _ in 0..leased {
                            lease_number += 1;
                            clients.push(json!({
                                "clientId": format!("client-{lease_number:04}"),
                                "hostname": format!("{}-{lease_number:03}", server.hosts),
                                "leases": [ { "leaseId": lease_id(lease_number), "featureName": feature,
                                              "leaseCount": 1,
                                              "licenseAllotmentFeatureId": feature_id(feature) } ],
                                "additionalProperties": { "license_server_id": server.id,
                                                          "license_server_name": server.name },
                            }));
                        }
                    }
                    leases.insert(server.instance.to_owned(), Value::Array(clients));
                    json!({
                        "id": server.id, "name": server.name, "status": "ENABLED",
                        "virtualGroupId": group.id, "virtualGroupName": group.name,
                        "deployedOn": server.deployed_on, "leasingMode": "STANDARD",
                        "serviceInstanceId": server.instance,
                        "licenseServerFeatures": features,
                        "licensePools": pools,
                    })
                })
                .collect();
            let keys: Vec<Value> = group
                .keys
                .iter()
                .map(|&(key, sale, features)| {
                    let features: Vec<Value> = features
                        .iter()
                        .map(|&(feature, total, assigned, start, end)| {
                            json!({
                                "featureName": feature, "featureVersion": "17.0",
                                "productName": product(feature), "productFamily": "vGPU",
                                "namespace": "NVIDIA", "licenseType": "CONCURRENT_COUNTED_SINGLE",
                                "startDate": format!("{}T00:00:00Z", date(today + start)),
                                "endDate": date(today + end),
                                "totalQuantity": total, "inUseQuantity": assigned,
                                "unassignedQuantity": total - assigned,
                                "overagePercent": 0, "availableOverageQuantity": 0,
                            })
                        })
                        .collect();
                    json!({ "id": key.to_lowercase(), "emsProductKeyId": key, "saleType": sale,
                            "entitlementFeatures": features })
                })
                .collect();
            json!({
                "id": group.id, "name": group.name, "isDefault": group.id == 101,
                "entitlements": [ { "id": group.entitlement.to_lowercase(),
                                    "emsEntitlementId": group.entitlement,
                                    "entitlementProductKeys": keys } ],
                "licenseServers": servers,
                "leases": leases,
            })
        })
        .collect();
    json!({ "org": DEMO_ORG, "virtualGroups": groups })
}
