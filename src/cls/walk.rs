//! The walk over an org: groups, then each group's servers, and as each
//! page of servers arrives, their pools and the leases of each service
//! instance, all under one parallelism limit. Only a failed group listing
//! fails the refresh; a failed sub-resource is left out and recorded.

use super::client::ClsClient;
use super::error::{ClsError, Endpoint, ErrorKind};
use super::model::{
    LeaseClient, LeasesPage, LicensePool, LicensePoolsPage, LicenseServer, LicenseServersPage,
    VirtualGroup, VirtualGroupsPage,
};
use super::segment::{id_segment, no_usable_id};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Everything fetched in one refresh, before any aggregation.
#[derive(Debug, Default)]
pub struct OrgData {
    pub groups: Vec<GroupData>,
}

#[derive(Debug, Default)]
pub struct GroupData {
    pub group: VirtualGroup,
    pub servers: Vec<ServerData>,
    pub leases: Vec<LeaseClient>,
    /// Sub-resources of this group that could not be read: the rest of the
    /// group is still published (partial refresh).
    pub failures: Vec<ClsError>,
    /// Ids of servers whose service instance's leases could not be read:
    /// their lease counts are unknown, not zero.
    pub leases_unknown: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct ServerData {
    pub server: LicenseServer,
    pub pools: Vec<LicensePool>,
}

impl From<LicenseServer> for ServerData {
    /// A server before (or without) its pools.
    fn from(server: LicenseServer) -> ServerData {
        ServerData {
            server,
            pools: Vec::new(),
        }
    }
}

/// Which lease path answers: unknown until one does, then remembered.
pub(super) const LEASES_UNKNOWN: u8 = 0;
const LEASES_PLAIN: u8 = 1;
const LEASES_ALL: u8 = 2;

impl ClsClient {
    /// Reads the whole org. Only a failed group listing fails the refresh;
    /// a failed sub-resource is recorded in its group's `failures`.
    ///
    /// Pipelined: each group's walk starts as soon as the page naming the
    /// group arrives, not after the last page of groups.
    pub(crate) async fn fetch_org(&self, deadline: Instant) -> Result<OrgData, ClsError> {
        let deadline = requests_deadline(deadline);
        let mut tasks = JoinSet::new();
        let mut count = 0usize;
        self.list_all::<VirtualGroupsPage>(
            Endpoint::VirtualGroups,
            "/virtual-groups".to_owned(),
            "&detailedView=true",
            None,
            deadline,
            |group| {
                let (client, index) = (self.clone(), count);
                count += 1;
                tasks.spawn(async move { (index, client.fetch_group(group, deadline).await) });
            },
        )
        .await?; // On error, dropping `tasks` aborts the walks already started.
        let mut slots: Vec<Option<GroupData>> = Vec::new();
        slots.resize_with(count, || None);
        while let Some(joined) = tasks.join_next().await {
            // A task can only fail to join by panicking, which aborts the
            // process (panic = "abort"), so a join error is unreachable in
            // release builds; in tests it is simply skipped.
            if let Ok((index, data)) = joined {
                if let Some(slot) = slots.get_mut(index) {
                    *slot = Some(data);
                }
            }
        }
        Ok(OrgData {
            groups: slots.into_iter().flatten().collect(),
        })
    }

    /// One group: its server list, and as each page of it arrives, the pools
    /// of each server and the leases of each service instance not seen yet.
    async fn fetch_group(&self, group: VirtualGroup, deadline: Instant) -> GroupData {
        /// `Leases(None, …)` is the call made for the whole group when no
        /// server carries a service instance.
        enum Part {
            Pools(usize, Result<Vec<LicensePool>, ClsError>),
            Leases(Option<String>, Result<Vec<LeaseClient>, ClsError>),
        }
        let Some(group_segment) = id_segment(&group.id) else {
            let what = format!("GET /virtual-groups/{:?}/license-servers", group.id);
            return GroupData {
                group,
                failures: vec![no_usable_id(Endpoint::LicenseServers, what)],
                ..GroupData::default()
            };
        };
        let group_path = format!("/virtual-groups/{group_segment}");
        let mut tasks = JoinSet::new();
        let mut servers: Vec<LicenseServer> = Vec::new();
        let mut instances: HashSet<String> = HashSet::new();
        let spawn_leases =
            |tasks: &mut JoinSet<Part>, instance: Option<String>, marker: Option<String>| {
                let (client, group_path) = (self.clone(), group_path.clone());
                tasks.spawn(async move {
                    Part::Leases(marker, client.leases(&group_path, instance, deadline).await)
                });
            };
        let listed = self
            .list_all::<LicenseServersPage>(
                Endpoint::LicenseServers,
                format!("{group_path}/license-servers"),
                "",
                None,
                deadline,
                |server| {
                    let (client, index) = (self.clone(), servers.len());
                    match id_segment(&server.id) {
                        Some(segment) => {
                            let path =
                                format!("{group_path}/license-servers/{segment}/license-pools");
                            tasks.spawn(async move {
                                let pools = client
                                    .list_vec::<LicensePoolsPage>(
                                        Endpoint::LicensePools,
                                        path,
                                        "",
                                        None,
                                        deadline,
                                    )
                                    .await;
                                Part::Pools(index, pools)
                            });
                        }
                        None => {
                            let what = format!(
                                "GET {group_path}/license-servers/{:?}/license-pools",
                                server.id
                            );
                            let error = no_usable_id(Endpoint::LicensePools, what);
                            tasks.spawn(async move { Part::Pools(index, Err(error)) });
                        }
                    }
                    let instance = server.service_instance_id.trim();
                    if !instance.is_empty() && instances.insert(instance.to_owned()) {
                        let instance = Some(instance.to_owned());
                        spawn_leases(&mut tasks, instance.clone(), instance);
                    }
                    servers.push(server);
                },
            )
            .await;
        if let Err(e) = listed {
            // Dropping `tasks` aborts the requests already started for it.
            return GroupData {
                group,
                failures: vec![e],
                ..GroupData::default()
            };
        }
        // No server names its service instance: one call with the configured
        // one, else without the header. A group without servers has no leases.
        if instances.is_empty() && !servers.is_empty() {
            spawn_leases(&mut tasks, self.inner.service_instance_id.clone(), None);
        }

        let mut data = GroupData {
            servers: servers.into_iter().map(ServerData::from).collect(),
            group,
            ..GroupData::default()
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Part::Pools(index, Ok(pools))) => {
                    if let Some(slot) = data.servers.get_mut(index) {
                        slot.pools = pools;
                    }
                }
                Ok(Part::Leases(_, Ok(mut clients))) => data.leases.append(&mut clients),
                Ok(Part::Pools(_, Err(e))) => data.failures.push(e),
                Ok(Part::Leases(instance, Err(e))) => {
                    // The leases of the servers on that instance are unknown,
                    // which is not the same as none.
                    let unknown = data.servers.iter().map(|s| &s.server).filter(|s| {
                        instance
                            .as_deref()
                            .is_none_or(|i| s.service_instance_id.trim() == i)
                    });
                    data.leases_unknown
                        .extend(unknown.map(|s| s.id.trim().to_owned()));
                    data.failures.push(e);
                }
                Err(_) => {}
            }
        }
        data
    }

    /// Active leases of one service instance, from `/leases/all` (what CLS
    /// serves today), or from `/leases` where `/leases/all` answers 404 (older
    /// deployments); the path that worked is remembered for the next
    /// refresh, and a remembered path is asked alone.
    async fn leases(
        &self,
        group_path: &str,
        instance: Option<String>,
        deadline: Instant,
    ) -> Result<Vec<LeaseClient>, ClsError> {
        let remembered = self.inner.leases_path.load(Ordering::Relaxed);
        let order = if remembered == LEASES_PLAIN {
            [LEASES_PLAIN, LEASES_ALL]
        } else {
            [LEASES_ALL, LEASES_PLAIN]
        };
        let mut last_error = None;
        for mode in order {
            let path = if mode == LEASES_ALL {
                format!("{group_path}/leases/all")
            } else {
                format!("{group_path}/leases")
            };
            match self
                .list_vec::<LeasesPage>(Endpoint::Leases, path, "", instance.as_deref(), deadline)
                .await
            {
                Ok(clients) => {
                    self.inner.leases_path.store(mode, Ordering::Relaxed);
                    return Ok(clients);
                }
                Err(e) if e.kind == ErrorKind::Status(404) && remembered == LEASES_UNKNOWN => {
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| ClsError::new(Endpoint::Leases, group_path, ErrorKind::Status(404))))
    }
}

/// When the requests of a refresh must end: a little before the refresh
/// deadline (a tenth of the time left, at most 2 s), so that a request that
/// stalls fails on its own, and the rest of the org is still built and
/// published within SCRAPE_TIMEOUT as a partial refresh.
fn requests_deadline(deadline: Instant) -> Instant {
    let margin =
        (deadline.saturating_duration_since(Instant::now()) / 10).min(Duration::from_secs(2));
    deadline.checked_sub(margin).unwrap_or(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_end_before_the_refresh_deadline() {
        let now = Instant::now();
        let in_secs = |s: u64| now + Duration::from_secs(s);
        assert_eq!(
            requests_deadline(in_secs(1)),
            now + Duration::from_millis(900)
        );
        assert_eq!(requests_deadline(in_secs(20)), in_secs(18));
        assert_eq!(requests_deadline(in_secs(60)), in_secs(58));
        assert_eq!(requests_deadline(now), now);
    }
}
