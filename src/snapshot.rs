//! The immutable `Snapshot` of one refresh: API data aggregated into the rows
//! the metric table exports. Pure: no I/O, no clock.
//!
//! Every label value is normalised here (trimmed; empty becomes `unknown`) so
//! that rows which map to one label set are summed into one row.

use crate::cls::model::{LeaseClient, ServerFeature};
use crate::cls::{Endpoint, GroupData, OrgData};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Labels: virtual_group_id, virtual_group_name, ems_entitlement_id,
/// ems_product_key_id, feature_name, feature_version, product_name,
/// license_type: one row per product key and feature.
pub type EntitlementKey = [String; 8];
/// Labels: virtual_group_id, virtual_group_name, server_id, server_name.
pub type ServerKey = [String; 4];
/// Labels: server key, status, deployed_on, leasing_mode.
pub type ServerInfoKey = [String; 7];
/// Labels: server key, feature_name, product_name, license_type.
pub type ServerFeatureKey = [String; 7];
/// Labels: server key, pool_id, pool_name, feature_name, product_name, license_type.
pub type PoolFeatureKey = [String; 9];

/// One entitlement row: the quantities of every API row with its label set
/// summed, their dates merged.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct EntitlementRow {
    pub total: f64,
    pub in_use: f64,
    pub unassigned: f64,
    /// The earliest start of the rows; None when no row has a usable one.
    pub start: Option<f64>,
    /// The latest end; None when a row never expires (no end date, or one
    /// in year 9000 or later), which is later than any date.
    pub end: Option<f64>,
}

impl EntitlementRow {
    fn merge(&mut self, other: EntitlementRow) {
        self.total += other.total;
        self.in_use += other.in_use;
        self.unassigned += other.unassigned;
        self.start = match (self.start, other.start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.end = match (self.end, other.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct FeatureUse {
    /// None for a row that only leases name (no server feature has its labels).
    pub total: Option<f64>,
    pub active_leases: f64,
    /// False while no lease answer covers this row (its lease call failed):
    /// then no lease count is exported rather than a false 0.
    pub leases_known: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct PoolUse {
    pub allotment: f64,
    pub in_use: f64,
}

/// Sorted maps: the exposition comes out in a stable order, and duplicates
/// are summed by construction.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Unix seconds at which the refresh that built this snapshot started.
    pub collected_at: f64,
    pub entitlements: BTreeMap<EntitlementKey, EntitlementRow>,
    pub servers: BTreeMap<ServerInfoKey, ()>,
    pub server_features: BTreeMap<ServerFeatureKey, FeatureUse>,
    pub server_leases: BTreeMap<ServerKey, f64>,
    pub pool_features: BTreeMap<PoolFeatureKey, PoolUse>,
    /// Leases skipped because their client names no server and the group has
    /// more than one.
    pub unattributed_leases: f64,
    /// Failed sub-resource requests of this refresh, per endpoint.
    pub partial_failures: BTreeMap<Endpoint, u64>,
}

/// A label value as exported: trimmed, `unknown` when empty.
pub fn label(value: &str) -> String {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        "unknown".to_owned()
    } else {
        trimmed.to_owned()
    }
}

fn non_blank(value: &str) -> Option<&str> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

impl Snapshot {
    pub fn build(org: &OrgData, collected_at: f64) -> Snapshot {
        let mut snap = Snapshot {
            collected_at,
            ..Snapshot::default()
        };
        // A lease id seen anywhere in the org counts once (Go exporter rule).
        let mut seen_leases: HashSet<&str> = HashSet::new();
        for group in &org.groups {
            snap.add_entitlements(group);
            snap.add_servers(group, &mut seen_leases);
            for failure in &group.failures {
                *snap.partial_failures.entry(failure.endpoint).or_default() += 1;
            }
        }
        snap
    }

    fn add_entitlements(&mut self, data: &GroupData) {
        let group = &data.group;
        for entitlement in &group.entitlements {
            for key in &entitlement.entitlement_product_keys {
                for feature in &key.entitlement_features {
                    let labels: EntitlementKey = [
                        label(&group.id),
                        label(&group.name),
                        label(&entitlement.ems_entitlement_id),
                        label(&key.ems_product_key_id),
                        label(&feature.feature_name),
                        label(&feature.feature_version),
                        label(&feature.product_name),
                        label(&feature.license_type),
                    ];
                    let row = EntitlementRow {
                        total: feature.total_quantity,
                        in_use: feature.in_use_quantity,
                        unassigned: feature.unassigned_quantity,
                        start: parse_date(&feature.start_date),
                        end: parse_date(&feature.end_date).filter(|t| *t < FAR_FUTURE),
                    };
                    match self.entitlements.entry(labels) {
                        Entry::Vacant(slot) => {
                            slot.insert(row);
                        }
                        Entry::Occupied(mut slot) => slot.get_mut().merge(row),
                    }
                }
            }
        }
    }

    fn add_servers<'a>(&mut self, data: &'a GroupData, seen_leases: &mut HashSet<&'a str>) {
        // Per server: its resolved label key, so capacity, info, pools and
        // leases of one server always carry the same labels.
        let mut keys: HashMap<&str, ServerKey> = HashMap::new();
        let mut features_by_id: HashMap<&str, &ServerFeature> = HashMap::new();
        for entry in &data.servers {
            let server = &entry.server;
            let group_id = match non_blank(&server.virtual_group_id) {
                Some(id) if id != "0" => id,
                _ => data.group.id.as_str(),
            };
            let group_name = non_blank(&server.virtual_group_name).unwrap_or(&data.group.name);
            let key: ServerKey = [
                label(group_id),
                label(group_name),
                label(&server.id),
                label(&server.name),
            ];
            let [a, b, c, d] = key.clone();
            self.servers.insert(
                [
                    a,
                    b,
                    c,
                    d,
                    label(&server.status),
                    label(&server.deployed_on),
                    label(&server.leasing_mode),
                ],
                (),
            );
            // A server whose leases could not be read has no lease count
            // rather than a count of 0.
            if !data.leases_unknown.contains(server.id.trim()) {
                self.server_leases.entry(key.clone()).or_insert(0.0);
            }
            for feature in &server.license_server_features {
                features_by_id.entry(feature.id.as_str()).or_insert(feature);
                let row = self
                    .server_features
                    .entry(feature_key(
                        &key,
                        &feature.feature_name,
                        &feature.product_name,
                        &feature.license_type,
                    ))
                    .or_default();
                row.total = Some(row.total.unwrap_or(0.0) + feature.total_quantity);
                row.leases_known |= !data.leases_unknown.contains(server.id.trim());
            }
            for pool in &entry.pools {
                let pool_features: HashMap<&str, &ServerFeature> = server
                    .license_server_features
                    .iter()
                    .map(|f| (f.id.as_str(), f))
                    .collect();
                for pf in &pool.license_pool_features {
                    let feature = pool_features.get(pf.license_server_feature_id.as_str());
                    let text = |get: fn(&ServerFeature) -> &str| feature.map_or("", |f| get(f));
                    let [a, b, c, d] = key.clone();
                    let usage = self
                        .pool_features
                        .entry([
                            a,
                            b,
                            c,
                            d,
                            label(&pool.id),
                            label(&pool.name),
                            label(text(|f| &f.feature_name)),
                            label(text(|f| &f.product_name)),
                            label(text(|f| &f.license_type)),
                        ])
                        .or_default();
                    usage.allotment += pf.total_allotment;
                    usage.in_use += pf.in_use;
                }
            }
            keys.entry(server.id.trim()).or_insert(key);
        }

        let only_server = (data.servers.len() == 1).then(|| data.servers[0].server.id.trim());
        for client in &data.leases {
            self.add_client(
                data,
                client,
                &keys,
                &features_by_id,
                only_server,
                seen_leases,
            );
        }
    }

    fn add_client<'a>(
        &mut self,
        data: &GroupData,
        client: &'a LeaseClient,
        keys: &HashMap<&str, ServerKey>,
        features_by_id: &HashMap<&str, &ServerFeature>,
        only_server: Option<&str>,
        seen_leases: &mut HashSet<&'a str>,
    ) {
        let props = &client.additional_properties;
        let Some(server_id) = non_blank(&props.license_server_id).or(only_server) else {
            self.unattributed_leases += client.leases.len() as f64;
            return;
        };
        if data.leases_unknown.contains(server_id) {
            return; // Another instance's view of it would be a partial count.
        }
        // A client may name a server the listing did not return: keep its
        // leases under the name the client gives.
        let key = keys.get(server_id).cloned().unwrap_or_else(|| {
            [
                label(&data.group.id),
                label(&data.group.name),
                label(server_id),
                label(&props.license_server_name),
            ]
        });
        for lease in &client.leases {
            if let Some(id) = non_blank(&lease.lease_id) {
                if !seen_leases.insert(id) {
                    continue;
                }
            }
            let count = if lease.lease_count <= 0.0 {
                1.0
            } else {
                lease.lease_count
            };
            let feature = features_by_id.get(lease.license_allotment_feature_id.as_str());
            let feature_name = non_blank(&lease.feature_name)
                .or_else(|| feature.map(|f| f.feature_name.as_str()))
                .unwrap_or("");
            let fkey = feature_key(
                &key,
                feature_name,
                feature.map_or("", |f| &f.product_name),
                feature.map_or("", |f| &f.license_type),
            );
            let row = self.server_features.entry(fkey).or_default();
            row.active_leases += count;
            row.leases_known = true;
            *self.server_leases.entry(key.clone()).or_insert(0.0) += count;
        }
    }
}

fn feature_key(
    server: &ServerKey,
    feature: &str,
    product: &str,
    license_type: &str,
) -> ServerFeatureKey {
    let [a, b, c, d] = server.clone();
    [
        a,
        b,
        c,
        d,
        label(feature),
        label(product),
        label(license_type),
    ]
}

/// Dates at or past this (year 9000) mean "never expires".
const FAR_FUTURE: f64 = 221_845_392_000.0;

/// `YYYY-MM-DD` or RFC 3339 (`2025-01-01T00:00:00Z`, offsets and fractions
/// allowed) as unix seconds; anything else is unknown.
pub fn parse_date(text: &str) -> Option<f64> {
    let text = text.trim();
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let days = crate::clock::days_from_civil(num(0..4)?, num(5..7)? as u32, num(8..10)? as u32)?;
    let mut seconds = (days * 86_400) as f64;
    if bytes.len() == 10 {
        return Some(seconds);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes.len() < 19
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    seconds += (h * 3600 + m * 60 + s) as f64;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        seconds += format!("0.{}", &fraction[..digits]).parse::<f64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let ob = rest.as_bytes();
            if ob.len() != 6 || ob[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(seconds - offset as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cls::model::*;
    use crate::cls::ServerData;

    #[test]
    fn dates_parse_in_both_documented_forms() {
        assert_eq!(parse_date("1970-01-01"), Some(0.0));
        assert_eq!(parse_date("2027-12-31"), Some(1_830_211_200.0));
        assert_eq!(parse_date("2025-01-01T00:00:00Z"), Some(1_735_689_600.0));
        assert_eq!(
            parse_date("2025-01-01T01:00:00+01:00"),
            Some(1_735_689_600.0)
        );
        assert_eq!(parse_date("2025-01-01T00:00:00.5Z"), Some(1_735_689_600.5));
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("2025-02-30"), None);
        assert_eq!(parse_date("31/12/2027"), None);
        assert_eq!(parse_date("2025-01-01T00:00:00"), None);
        assert_eq!(parse_date("2025-01-01Tab:00:00Z"), None);
    }

    #[test]
    fn labels_are_trimmed_and_empty_becomes_unknown() {
        assert_eq!(label("  a b "), "a b");
        assert_eq!(label(" \t\n"), "unknown");
        assert_eq!(label(""), "unknown");
    }

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
            servers: servers
                .into_iter()
                .map(|server| ServerData {
                    server,
                    pools: Vec::new(),
                })
                .collect(),
            leases,
            failures: Vec::new(),
            leases_unknown: HashSet::new(),
        }
    }

    fn active(snap: &Snapshot, server: &str, feature: &str) -> Option<f64> {
        snap.server_features
            .iter()
            .find(|(k, _)| k[2] == server && k[4] == feature && k[5] == "vGPU")
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
            .find(|(k, _)| k[2] == "s1" && k[5] == "unknown")
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
            .find(|(k, _)| k[2] == "s3")
            .map(|(_, v)| *v);
        assert_eq!(s3, Some(0.0), "a server without leases reports 0");
        let s1 = snap
            .server_leases
            .iter()
            .find(|(k, _)| k[2] == "s1")
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
                .find(|(k, _)| k[2] == id)
                .map(|(_, v)| *v)
        };
        assert_eq!((leases("s1"), leases("s2")), (Some(1.0), None));
        assert_eq!(active(&snap, "s1", "A"), Some(1.0));
        assert_eq!(
            snap.server_features
                .iter()
                .find(|(k, _)| k[2] == "s2")
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
            .into_iter()
            .map(|(k, row)| (k[2..4].to_vec(), row))
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
}
