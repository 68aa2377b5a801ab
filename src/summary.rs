//! What one refresh found, in a few figures: the `check` subcommand prints
//! it (text for a person, one JSON object for scripts) and the log line of
//! the first refresh says it. Pure: the figures come in as arguments.

use crate::cache::RefreshError;
use crate::clock::{days_until, format_date};
use crate::cls::OrgData;
use crate::snapshot::Snapshot;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

/// The size of the org one refresh read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Found {
    pub(crate) groups: usize,
    pub(crate) servers: usize,
    pub(crate) pools: usize,
    /// Distinct feature names, on servers or in entitlements.
    pub(crate) features: usize,
    pub(crate) active_leases: f64,
    /// Entitlement rows: one feature of one product key, as the metrics
    /// count them.
    pub(crate) entitlements: usize,
    /// The entitlement row that ends first, today or later.
    pub(crate) nearest_end: Option<NearestEnd>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NearestEnd {
    /// Unix seconds.
    pub(crate) end: f64,
    /// Calendar days from today ([`days_until`]), as the status page counts.
    pub(crate) days: i64,
    pub(crate) group: String,
    pub(crate) feature: String,
    pub(crate) entitlement: String,
    pub(crate) product_key: String,
}

impl Found {
    /// Groups, servers and pools as they were read (`org`); the rest as the
    /// metrics show it (`snapshot`); days counted from `now`.
    pub(crate) fn new(org: &OrgData, snapshot: &Snapshot, now: f64) -> Found {
        let servers = org.groups.iter().flat_map(|g| &g.servers);
        let features: BTreeSet<&str> = snapshot
            .server_features
            .iter()
            .filter(|(_, usage)| usage.total.is_some())
            .map(|(key, _)| &*key.feature)
            .chain(snapshot.entitlements.keys().map(|k| &*k.feature))
            .collect();
        let nearest_end = snapshot
            .entitlements
            .iter()
            .filter_map(|(key, row)| Some((key, row.end?)))
            .filter(|(_, end)| days_until(now, *end) >= 0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(key, end)| NearestEnd {
                end,
                days: days_until(now, end),
                group: key.group_name.to_string(),
                feature: key.feature.to_string(),
                entitlement: key.ems_entitlement_id.to_string(),
                product_key: key.ems_product_key_id.to_string(),
            });
        Found {
            groups: org.groups.len(),
            servers: servers.clone().count(),
            pools: servers.map(|s| s.pools.len()).sum(),
            features: features.len(),
            active_leases: snapshot.server_leases.values().sum(),
            entitlements: snapshot.entitlements.len(),
            nearest_end,
        }
    }
}

/// One line: what the log's first-refresh line says.
impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} virtual groups, {} license servers, {} license pools, {} features, {} active leases, {} entitlements",
            self.groups,
            self.servers,
            self.pools,
            self.features,
            number(self.active_leases),
            self.entitlements
        )?;
        if let Some(end) = &self.nearest_end {
            write!(
                f,
                " (nearest end {}, {})",
                format_date(end.end),
                in_days(end.days)
            )?;
        }
        Ok(())
    }
}

/// What `check` reports: the org, what was found or why nothing was, each
/// part left out, and what it took.
pub(crate) struct Report<'a> {
    pub(crate) org: &'a str,
    pub(crate) outcome: Result<Found, &'a RefreshError>,
    /// (endpoint label, one-line reason) of each part that failed.
    pub(crate) partial_failures: Vec<(&'static str, String)>,
    pub(crate) api_calls: u64,
    pub(crate) pages: u64,
    pub(crate) retries: u64,
    pub(crate) duration_seconds: f64,
}

impl Report<'_> {
    /// A few lines; the first one says whether CLS could be read, and why not.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let org = self.org.escape_debug();
        let calls = format!(
            "{} API calls ({} pages, {} retries) in {:.2} s",
            self.api_calls, self.pages, self.retries, self.duration_seconds
        );
        let found = match &self.outcome {
            Err(error) => {
                let (words, reason) = (error.kind().words(), error.reason());
                // The reason of a 401 or 403 already says it in these words.
                let _ = if reason.contains(words) {
                    writeln!(out, "CLS org \"{org}\" could not be read: {reason}")
                } else {
                    writeln!(
                        out,
                        "CLS org \"{org}\" could not be read: {words}: {reason}"
                    )
                };
                let _ = writeln!(out, "  {calls}");
                return out;
            }
            Ok(found) => found,
        };
        let _ = writeln!(out, "CLS org \"{org}\" read: {calls}");
        let mut row = |name: &str, value: String| {
            let _ = writeln!(out, "  {name:<16} {value}");
        };
        row("virtual groups", found.groups.to_string());
        row("license servers", found.servers.to_string());
        row("license pools", found.pools.to_string());
        row("features", found.features.to_string());
        row("active leases", number(found.active_leases));
        let nearest = match &found.nearest_end {
            Some(end) => format!(
                " (nearest end {}, {}: {} of {}, key {}, group {})",
                format_date(end.end),
                in_days(end.days),
                end.feature.escape_debug(),
                end.entitlement.escape_debug(),
                end.product_key.escape_debug(),
                end.group.escape_debug()
            ),
            None => String::new(),
        };
        row("entitlements", format!("{}{nearest}", found.entitlements));
        if found.groups == 0 {
            out.push_str("  no virtual groups: is NVIDIA_ORG_NAME the org the key belongs to?\n");
        }
        if !self.partial_failures.is_empty() {
            let _ = writeln!(
                out,
                "{} part(s) of the org could not be read and are missing above:",
                self.partial_failures.len()
            );
            for (endpoint, reason) in &self.partial_failures {
                let _ = writeln!(out, "  {endpoint}: {reason}");
            }
        }
        out
    }

    /// One JSON object: `ok`, `error` (`kind`, `message`) when CLS could
    /// not be read, the counts (null then), `partial_failures`, the calls.
    pub(crate) fn json(&self) -> Value {
        let found = self.outcome.as_ref().ok();
        let count = |get: fn(&Found) -> usize| found.map(get);
        json!({
            "org": self.org,
            "ok": found.is_some(),
            "error": self.outcome.as_ref().err().map(|e| json!({
                "kind": e.kind().label(),
                "message": e.reason(),
            })),
            "virtual_groups": count(|f| f.groups),
            "license_servers": count(|f| f.servers),
            "license_pools": count(|f| f.pools),
            "features": count(|f| f.features),
            "active_leases": found.map(|f| f.active_leases),
            "entitlements": count(|f| f.entitlements),
            "nearest_end": found.and_then(|f| f.nearest_end.as_ref()).map(|end| json!({
                "date": format_date(end.end),
                "days": end.days,
                "virtual_group_name": end.group,
                "feature_name": end.feature,
                "ems_entitlement_id": end.entitlement,
                "ems_product_key_id": end.product_key,
            })),
            "partial_failures": self.partial_failures.iter().map(|(endpoint, reason)| json!({
                "endpoint": endpoint,
                "message": reason,
            })).collect::<Vec<_>>(),
            "api_calls": self.api_calls,
            "pages": self.pages,
            "retries": self.retries,
            "duration_seconds": self.duration_seconds,
        })
    }
}

/// The one-line reason of each part of `org` that could not be read.
pub(crate) fn partial_failures(org: &OrgData) -> Vec<(&'static str, String)> {
    org.groups
        .iter()
        .flat_map(|g| &g.failures)
        .map(|e| {
            (
                e.endpoint.label(),
                e.to_string().replace(char::is_control, " "),
            )
        })
        .collect()
}

fn in_days(days: i64) -> String {
    match days {
        0 => "today".to_owned(),
        1 => "in 1 day".to_owned(),
        n => format!("in {n} days"),
    }
}

fn number(v: f64) -> String {
    let mut s = String::new();
    crate::metrics::text::write_value(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::days_from_civil;
    use crate::cls::error::{ClsError, Endpoint, ErrorKind};
    use crate::cls::walk::{GroupData, ServerData};
    use crate::snapshot::{
        EntitlementKey, EntitlementRow, FeatureUse, ServerFeatureKey, ServerKey,
    };

    fn day(y: i64, m: u32, d: u32) -> f64 {
        days_from_civil(y, m, d).unwrap() as f64 * 86_400.0
    }

    /// Two groups, three servers (one with two pools), leases on two of
    /// them, three entitlement rows of which one has ended and one never ends.
    fn org_and_snapshot() -> (OrgData, Snapshot) {
        let server = |pools: usize| ServerData {
            pools: vec![Default::default(); pools],
            ..ServerData::default()
        };
        let org = OrgData {
            groups: vec![
                GroupData {
                    servers: vec![server(2), server(1)],
                    ..GroupData::default()
                },
                GroupData {
                    servers: vec![server(0)],
                    failures: vec![ClsError::new(
                        Endpoint::LicensePools,
                        "GET /virtual-groups/2/license-servers/s3/license-pools",
                        ErrorKind::Status(500),
                    )],
                    ..GroupData::default()
                },
            ],
        };
        let key = |id: &str| ServerKey {
            group_id: "1".into(),
            group_name: "Design".into(),
            id: id.into(),
            name: id.into(),
        };
        let mut snapshot = Snapshot::default();
        let mut server_leases = std::collections::BTreeMap::new();
        for (id, feature, leases) in [("s1", "vWS", 30.0), ("s1", "vPC", 2.0), ("s2", "vWS", 0.0)] {
            snapshot.server_features.insert(
                ServerFeatureKey {
                    server: key(id),
                    feature: feature.into(),
                    product: "p".into(),
                    license_type: "t".into(),
                },
                FeatureUse {
                    total: Some(40.0),
                    active_leases: leases,
                    leases_known: true,
                },
            );
            *server_leases.entry(key(id)).or_default() += leases;
        }
        snapshot.server_leases = server_leases.into();
        let entitlement = |pk: &str, feature: &str| EntitlementKey {
            group_name: "Design".into(),
            ems_entitlement_id: "ENT-1".into(),
            ems_product_key_id: pk.into(),
            feature: feature.into(),
            ..EntitlementKey::default()
        };
        for (pk, feature, end) in [
            ("PK-old", "vWS", Some(day(2026, 1, 1))),
            ("PK-soon", "vCS", Some(day(2026, 12, 20) + 86_399.0)),
            ("PK-never", "vPC", None),
        ] {
            snapshot.entitlements.insert(
                entitlement(pk, feature),
                EntitlementRow {
                    total: 10.0,
                    end,
                    ..EntitlementRow::default()
                },
            );
        }
        (org, snapshot)
    }

    #[test]
    fn found_counts_what_was_read_and_the_nearest_end_still_to_come() {
        let (org, snapshot) = org_and_snapshot();
        let now = day(2026, 11, 26) + 15.0 * 3600.0;
        let found = Found::new(&org, &snapshot, now);
        assert_eq!(
            found.to_string(),
            "2 virtual groups, 3 license servers, 3 license pools, 3 features, 32 active leases, \
             3 entitlements (nearest end 2026-12-20, in 24 days)"
        );
        assert_eq!(
            found.nearest_end.map(|e| (e.product_key, e.days)),
            Some(("PK-soon".to_owned(), 24))
        );
    }

    fn report<'a>(outcome: Result<Found, &'a RefreshError>, org: &OrgData) -> Report<'a> {
        Report {
            org: "lic-demo",
            outcome,
            partial_failures: partial_failures(org),
            api_calls: 9,
            pages: 8,
            retries: 1,
            duration_seconds: 0.4242,
        }
    }

    #[test]
    fn the_text_report_has_every_figure_and_each_part_that_failed() {
        let (org, snapshot) = org_and_snapshot();
        let found = Found::new(&org, &snapshot, day(2026, 12, 19));
        assert_eq!(
            report(Ok(found), &org).text(),
            "CLS org \"lic-demo\" read: 9 API calls (8 pages, 1 retries) in 0.42 s\n  \
             virtual groups   2\n  \
             license servers  3\n  \
             license pools    3\n  \
             features         3\n  \
             active leases    32\n  \
             entitlements     3 (nearest end 2026-12-20, in 1 day: vCS of ENT-1, key PK-soon, group Design)\n\
             1 part(s) of the org could not be read and are missing above:\n  \
             license_pools: GET /virtual-groups/2/license-servers/s3/license-pools failed: HTTP 500\n"
        );
    }

    #[test]
    fn an_org_without_groups_gets_a_hint_about_the_org_name() {
        let org = OrgData::default();
        let found = Found::new(&org, &Snapshot::default(), day(2026, 12, 19));
        let text = report(Ok(found), &org).text();
        assert!(
            text.ends_with(
                "  entitlements     0
  no virtual groups: is NVIDIA_ORG_NAME the org the key belongs to?
"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failure_is_one_line_saying_why_then_the_calls() {
        let error = RefreshError::Cls(ClsError::new(
            Endpoint::VirtualGroups,
            "GET /virtual-groups",
            ErrorKind::Status(403),
        ));
        let org = OrgData::default();
        let text = report(Err(&error), &org).text();
        assert_eq!(
            text,
            "CLS org \"lic-demo\" could not be read: GET /virtual-groups failed: \
             HTTP 403: the API key lacks access; it needs the \"Licensing State\" access type for this org\n  \
             9 API calls (8 pages, 1 retries) in 0.42 s\n"
        );
        let json = report(Err(&error), &org).json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["error"]["kind"], "key_lacks_access");
        assert!(json["virtual_groups"].is_null() && json["nearest_end"].is_null());
        assert_eq!(json["api_calls"], 9);
    }

    #[test]
    fn the_json_report_holds_the_same_figures() {
        let (org, snapshot) = org_and_snapshot();
        let found = Found::new(&org, &snapshot, day(2026, 12, 19));
        assert_eq!(
            report(Ok(found), &org).json(),
            json!({
                "org": "lic-demo", "ok": true, "error": null,
                "virtual_groups": 2, "license_servers": 3, "license_pools": 3, "features": 3,
                "active_leases": 32.0, "entitlements": 3,
                "nearest_end": { "date": "2026-12-20", "days": 1, "virtual_group_name": "Design",
                                 "feature_name": "vCS", "ems_entitlement_id": "ENT-1",
                                 "ems_product_key_id": "PK-soon" },
                "partial_failures": [ { "endpoint": "license_pools",
                    "message": "GET /virtual-groups/2/license-servers/s3/license-pools failed: HTTP 500" } ],
                "api_calls": 9, "pages": 8, "retries": 1, "duration_seconds": 0.4242,
            })
        );
    }
}
