//! The immutable `Snapshot` of one refresh: API data aggregated into the rows
//! the metric table exports. Pure: no I/O, no clock.
//!
//! Every label value is normalised here (trimmed; empty becomes `unknown`) so
//! that rows which map to one label set are summed into one row.
//!
//! `keys`: the label set of each kind of row; `dates`: entitlement dates.

mod dates;
mod keys;
mod rows;

pub(crate) use dates::parse_date;
use keys::Interner;
pub use keys::{EntitlementKey, PoolFeatureKey, ServerFeatureKey, ServerInfoKey, ServerKey};
pub(crate) use rows::Rows;

use crate::cls::model::{LeaseClient, ServerFeature};
use crate::cls::{Endpoint, GroupData, OrgData};
use dates::FAR_FUTURE;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// Rows sorted by key: the exposition comes out in a stable order, and
/// duplicates are summed by construction.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    /// Unix seconds at which the refresh that built this snapshot started.
    pub collected_at: f64,
    pub entitlements: Rows<EntitlementKey, EntitlementRow>,
    pub servers: Rows<ServerInfoKey, ()>,
    pub server_features: Rows<ServerFeatureKey, FeatureUse>,
    pub server_leases: Rows<ServerKey, f64>,
    pub pool_features: Rows<PoolFeatureKey, PoolUse>,
    /// Leases skipped because their client names no server and the group has
    /// more than one.
    pub unattributed_leases: f64,
    /// Failed sub-resource requests of this refresh, per endpoint.
    pub partial_failures: BTreeMap<Endpoint, u64>,
}

fn non_blank(value: &str) -> Option<&str> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then_some(trimmed)
}

impl Snapshot {
    pub fn build(org: &OrgData, collected_at: f64) -> Snapshot {
        let mut build = Build::default();
        // A lease id seen anywhere in the org counts once (Go exporter rule).
        let mut seen_leases: HashSet<&str> = HashSet::new();
        for group in &org.groups {
            build.add_entitlements(group);
            build.add_servers(group, &mut seen_leases);
            for failure in &group.failures {
                *build.partial_failures.entry(failure.endpoint).or_default() += 1;
            }
        }
        Snapshot {
            collected_at,
            entitlements: build.entitlements.into(),
            servers: build.servers.into(),
            server_features: build.server_features.into(),
            server_leases: build.server_leases.into(),
            pool_features: build.pool_features.into(),
            unattributed_leases: build.unattributed_leases,
            partial_failures: build.partial_failures,
        }
    }
}

/// A snapshot being built, in B-trees that sum the rows that meet in one
/// key, and the one copy of each label value it uses.
#[derive(Default)]
struct Build {
    entitlements: BTreeMap<EntitlementKey, EntitlementRow>,
    servers: BTreeMap<ServerInfoKey, ()>,
    server_features: BTreeMap<ServerFeatureKey, FeatureUse>,
    server_leases: BTreeMap<ServerKey, f64>,
    pool_features: BTreeMap<PoolFeatureKey, PoolUse>,
    unattributed_leases: f64,
    partial_failures: BTreeMap<Endpoint, u64>,
    labels: Interner,
}

impl Build {
    fn add_entitlements(&mut self, data: &GroupData) {
        let group = &data.group;
        for entitlement in &group.entitlements {
            for key in &entitlement.entitlement_product_keys {
                for feature in &key.entitlement_features {
                    let labels = EntitlementKey {
                        group_id: self.labels.label(&group.id),
                        group_name: self.labels.label(&group.name),
                        ems_entitlement_id: self.labels.label(&entitlement.ems_entitlement_id),
                        ems_product_key_id: self.labels.label(&key.ems_product_key_id),
                        feature: self.labels.label(&feature.feature_name),
                        feature_version: self.labels.label(&feature.feature_version),
                        product: self.labels.label(&feature.product_name),
                        license_type: self.labels.label(&feature.license_type),
                    };
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
            let key = ServerKey {
                group_id: self.labels.label(group_id),
                group_name: self.labels.label(group_name),
                id: self.labels.label(&server.id),
                name: self.labels.label(&server.name),
            };
            let info = ServerInfoKey {
                server: key.clone(),
                status: self.labels.label(&server.status),
                deployed_on: self.labels.label(&server.deployed_on),
                leasing_mode: self.labels.label(&server.leasing_mode),
            };
            self.servers.insert(info, ());
            // A server whose leases could not be read has no lease count
            // rather than a count of 0.
            if !data.leases_unknown.contains(server.id.trim()) {
                self.server_leases.entry(key.clone()).or_insert(0.0);
            }
            for feature in &server.license_server_features {
                features_by_id.entry(feature.id.as_str()).or_insert(feature);
                let row = self
                    .server_features
                    .entry(self.labels.feature(
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
                    let usage = self
                        .pool_features
                        .entry(PoolFeatureKey {
                            server: key.clone(),
                            pool_id: self.labels.label(&pool.id),
                            pool_name: self.labels.label(&pool.name),
                            feature: self.labels.label(text(|f| &f.feature_name)),
                            product: self.labels.label(text(|f| &f.product_name)),
                            license_type: self.labels.label(text(|f| &f.license_type)),
                        })
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
        let key = keys.get(server_id).cloned().unwrap_or_else(|| ServerKey {
            group_id: self.labels.label(&data.group.id),
            group_name: self.labels.label(&data.group.name),
            id: self.labels.label(server_id),
            name: self.labels.label(&props.license_server_name),
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
            let fkey = self.labels.feature(
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

#[cfg(test)]
mod tests;
