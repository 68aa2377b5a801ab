//! CLS answer bytes → model → `Snapshot` → exposition: must never panic, and
//! whatever the API sends, the exposition must be well formed.
//!
//! The first byte picks what the rest is: kind (byte % 6) 0–3 is one answer
//! of that endpoint (groups, servers, pools, leases), decoded by the same
//! `decode_page` the client calls; kind 4 is one answer per endpoint,
//! separated by NUL bytes (which JSON cannot hold raw), joined into an org so
//! that the snapshot's cross-references (feature ids, lease server ids) meet
//! real data; kind 5 is a `Retry-After` header value (an HTTP-date parser
//! of the `retry` module). The higher bits (byte / 6) mark the first server's leases
//! as unknown, record a failed sub-request, and add a second server.

#![no_main]

use exporter_fuzz::exposition::check;
use exporter_fuzz::{flavor, good_refresh, good_status, scrape_bodies};
use libfuzzer_sys::fuzz_target;
use nvidia_license_server_exporter::harness::model::{
    LeaseClient, LeasesPage, LicensePool, LicensePoolsPage, LicenseServer, LicenseServersPage,
    VirtualGroup, VirtualGroupsPage,
};
use nvidia_license_server_exporter::harness::Snapshot;
use nvidia_license_server_exporter::harness::{decode_page, parse_retry_after, Page, ServerData};
use nvidia_license_server_exporter::harness::{ClsError, ErrorKind};
use nvidia_license_server_exporter::harness::{Endpoint, GroupData, OrgData};

/// Input kinds, picked by the first byte: see the top of the file.
const KINDS: u8 = 6;

/// Groups joined into one org in kind 4: enough for cross-group lease
/// de-duplication, few enough that one input stays fast.
const MAX_JOINED_GROUPS: usize = 4;

/// The items of one answer, as the client would hand them on (repeats of a
/// key dropped, as `list_all` does); none when the answer is refused.
fn items<P: Page>(endpoint: Endpoint, body: &[u8]) -> Vec<P::Item> {
    match decode_page::<P>(endpoint, "/fuzz", body) {
        Ok((items, _page_info)) => {
            let mut seen = std::collections::HashSet::new();
            items
                .into_iter()
                .filter(|item| {
                    let key = P::key(item);
                    key.is_empty() || seen.insert(key)
                })
                .collect()
        }
        Err(e) => {
            // The error's text goes to logs: it must render.
            let _ = e.to_string();
            Vec::new()
        }
    }
}

fn group(group: VirtualGroup) -> GroupData {
    GroupData {
        group,
        ..GroupData::default()
    }
}

fn server(server: LicenseServer, pools: Vec<LicensePool>) -> ServerData {
    ServerData { server, pools }
}

fn org_of(kind: u8, bodies: &[&[u8]]) -> OrgData {
    let body = |i: usize| bodies.get(i).copied().unwrap_or(b"{}");
    let groups = match kind {
        0 => items::<VirtualGroupsPage>(Endpoint::VirtualGroups, body(0))
            .into_iter()
            .map(group)
            .collect(),
        1 => vec![GroupData {
            servers: items::<LicenseServersPage>(Endpoint::LicenseServers, body(0))
                .into_iter()
                .map(|s| server(s, Vec::new()))
                .collect(),
            ..GroupData::default()
        }],
        2 => vec![GroupData {
            servers: vec![server(
                LicenseServer::default(),
                items::<LicensePoolsPage>(Endpoint::LicensePools, body(0)),
            )],
            ..GroupData::default()
        }],
        3 => vec![GroupData {
            leases: items::<LeasesPage>(Endpoint::Leases, body(0)),
            ..GroupData::default()
        }],
        _ => {
            let mut groups: Vec<GroupData> =
                items::<VirtualGroupsPage>(Endpoint::VirtualGroups, body(0))
                    .into_iter()
                    .take(MAX_JOINED_GROUPS)
                    .map(group)
                    .collect();
            if groups.is_empty() {
                groups.push(GroupData::default());
            }
            let servers = items::<LicenseServersPage>(Endpoint::LicenseServers, body(1));
            let pools = items::<LicensePoolsPage>(Endpoint::LicensePools, body(2));
            let leases: Vec<LeaseClient> = items::<LeasesPage>(Endpoint::Leases, body(3));
            for g in &mut groups {
                g.servers = servers
                    .iter()
                    .map(|s| server(s.clone(), pools.clone()))
                    .collect();
                g.leases = leases.clone();
            }
            groups
        }
    };
    OrgData { groups }
}

/// The variations a real refresh has that no answer body carries.
fn flags(g: &mut GroupData, selector: u8) {
    let bits = selector / KINDS;
    if bits & 4 != 0 {
        g.servers.push(server(
            LicenseServer {
                id: "second".into(),
                ..LicenseServer::default()
            },
            Vec::new(),
        ));
    }
    if bits & 1 != 0 {
        if let Some(first) = g.servers.first() {
            g.leases_unknown.insert(first.server.id.trim().to_owned());
        }
    }
    if bits & 2 != 0 {
        g.failures.push(ClsError::new(
            Endpoint::Leases,
            "GET /fuzz",
            ErrorKind::Status(500),
        ));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let kind = selector % KINDS;
    if kind == 5 {
        // Any number of seconds is a valid answer: the retry loop checks
        // the wait against the deadline without overflow (`ends_before`).
        let _ = parse_retry_after(&String::from_utf8_lossy(rest), std::time::SystemTime::now());
        return;
    }
    let bodies: Vec<&[u8]> = if kind == 4 {
        rest.splitn(4, |b| *b == 0).collect()
    } else {
        vec![rest]
    };
    let mut org = org_of(kind, &bodies);
    org.groups.iter_mut().for_each(|g| flags(g, selector));
    let snapshot = Snapshot::build(&org, 1_700_000_000.0);
    let status = good_status(snapshot);
    let families = good_refresh(&status);
    for (format, text) in scrape_bodies(&families, &[], "lic-fuzz") {
        if let Err(e) = check(&text, flavor(format)) {
            panic!("{format:?} exposition rejected: {e}");
        }
    }
});
