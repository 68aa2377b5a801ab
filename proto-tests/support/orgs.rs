//! Small orgs built by hand for the protocol tests of the CLS client, and
//! readers of their series. Group `g` is named `g{g}` and holds one
//! entitlement of `g` licenses; server `id` is named `name-{id}` and has one
//! GRID-Virtual-PC feature `{id}-f`; a lease client holds one lease of it.
//! The org is `lic-demo`, as the test exporter's (support/exporter.rs).

use serde_json::{json, Value};

use super::canned::Recorded;
use super::exporter::value;

/// The `org_name` label of every series.
pub const ORG: &str = r#"org_name="lic-demo""#;

/// A server with one feature (id `{id}-f`) and `pools` pools.
pub fn server(id: &str, instance: &str, pools: usize) -> Value {
    let pools: Vec<Value> = (0..pools)
        .map(|p| {
            json!({
                "id": format!("{id}-pool{p}"), "name": format!("pool{p}"),
                "licensePoolFeatures": [
                    { "licenseServerFeatureId": format!("{id}-f"), "totalAllotment": 10, "inUse": p }
                ]
            })
        })
        .collect();
    json!({
        "id": id, "name": format!("name-{id}"), "status": "ENABLED",
        "deployedOn": "CLOUD", "leasingMode": "STANDARD", "serviceInstanceId": instance,
        "licenseServerFeatures": [ {
            "id": format!("{id}-f"), "featureName": "GRID-Virtual-PC",
            "productName": "NVIDIA Virtual PC", "licenseType": "CONCURRENT_COUNTED_SINGLE",
            "totalQuantity": 10
        } ],
        "licensePools": pools,
    })
}

/// A lease client holding one lease `lease` of `server`'s feature.
pub fn client(server: &str, lease: &str) -> Value {
    json!({
        "leases": [ { "leaseId": lease, "featureName": "GRID-Virtual-PC", "leaseCount": 1,
                      "licenseAllotmentFeatureId": format!("{server}-f") } ],
        "additionalProperties": { "license_server_id": server,
                                  "license_server_name": format!("name-{server}") }
    })
}

/// A group with one entitlement of `id` licenses (so every group read shows
/// up as a series), its servers, and its leases keyed by service instance.
pub fn group(id: u64, servers: Vec<Value>, leases: Value) -> Value {
    json!({
        "id": id, "name": format!("g{id}"),
        "entitlements": [ { "id": format!("ent-{id}"), "entitlementProductKeys": [ {
            "entitlementFeatures": [ {
                "featureName": "GRID-Virtual-PC", "featureVersion": "1",
                "productName": "NVIDIA Virtual PC", "licenseType": "CONCURRENT_COUNTED_SINGLE",
                "totalQuantity": id
            } ] } ] } ],
        "licenseServers": servers,
        "leases": leases,
    })
}

pub fn org(groups: Vec<Value>) -> Value {
    json!({ "org": "lic-demo", "virtualGroups": groups })
}

/// The `page-number` of each request whose path ends with `suffix`, in
/// arrival order; `-` when the request had none.
pub fn page_numbers(requests: &[Recorded], suffix: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.path.ends_with(suffix))
        .map(|r| r.query_param("page-number").unwrap_or_else(|| "-".into()))
        .collect()
}

pub fn count_lines(text: &str, prefix: &str) -> usize {
    text.lines().filter(|l| l.starts_with(prefix)).count()
}

pub fn server_labels(group: u64, id: &str) -> String {
    format!(
        r#"virtual_group_id="{group}",virtual_group_name="g{group}",server_id="{id}",server_name="name-{id}""#
    )
}

pub const VPC: &str = r#"feature_name="GRID-Virtual-PC",product_name="NVIDIA Virtual PC",license_type="CONCURRENT_COUNTED_SINGLE""#;

pub fn server_active(text: &str, group: u64, id: &str) -> Option<f64> {
    value(
        text,
        &format!(
            "nvidia_cls_license_server_active_leases{{{ORG},{}}} ",
            server_labels(group, id)
        ),
    )
}

pub fn feature_active(text: &str, group: u64, id: &str) -> Option<f64> {
    value(
        text,
        &format!(
            "nvidia_cls_license_server_feature_active_leases{{{ORG},{},{VPC}}} ",
            server_labels(group, id)
        ),
    )
}

/// `n` of everything, for a page size of 2: groups 1..=n; group 1 has servers
/// s1..sn on service instance `si-1`; s1 has n pools, the others one; `si-1`
/// has n lease clients, one lease each, all on s1.
pub fn n_of_everything(n: u64) -> Value {
    let servers = (1..=n)
        .map(|s| {
            server(
                &format!("s{s}"),
                "si-1",
                if s == 1 { n as usize } else { 1 },
            )
        })
        .collect();
    let clients: Vec<Value> = (1..=n).map(|l| client("s1", &format!("L{l}"))).collect();
    let mut groups = vec![group(1, servers, json!({ "si-1": clients }))];
    groups.extend((2..=n).map(|g| group(g, vec![], json!({}))));
    org(groups)
}

/// The four listings of `n_of_everything`, by path suffix.
pub const LISTINGS: [&str; 4] = [
    "/virtual-groups",
    "/virtual-groups/1/license-servers",
    "/license-servers/s1/license-pools",
    "/virtual-groups/1/leases/all",
];

/// Groups 1..=n, each with one server `s{g}` on instance `si-{g}` and one lease.
pub fn n_groups(n: u64) -> Value {
    org((1..=n)
        .map(|g| {
            let s = format!("s{g}");
            group(
                g,
                vec![server(&s, &format!("si-{g}"), 1)],
                json!({ format!("si-{g}"): [client(&s, &format!("L{g}"))] }),
            )
        })
        .collect())
}
