//! HTTP client of the CLS API: auth headers, percent-encoded paths, paging,
//! retries with backoff, body caps and timeouts, and the pipelined walk over
//! an org (groups → servers → pools and leases).

use super::error::{shorten, ClsError, Endpoint, ErrorKind};
use super::model::{
    InflatedClients, LeaseClient, LeasesPage, LicensePool, LicensePoolsPage, LicenseServer,
    LicenseServersPage, VirtualGroup, VirtualGroupsPage,
};
use super::proxy::ProxyConnector;
use super::stats::{ApiStats, PageGuard};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Body as _;
use hyper::header::{HeaderValue, ACCEPT, USER_AGENT};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest response body read from CLS. A page of 100 items is a few hundred
/// KiB; a lease listing without paging can reach tens of MiB on a large org.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Largest inflated `compressedClients` payload (a gzip bomb stops here): no
/// more than a plain answer may hold. The JSON is parsed as it inflates, so
/// this bounds the work, and the inflated text is never held in memory.
pub const MAX_INFLATED_BYTES: usize = MAX_BODY_BYTES;
/// One request may take at most this long, even with a generous SCRAPE_TIMEOUT.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Hard cap on pages per listing: 1,000 pages of 100 is 100,000 items.
pub const MAX_PAGES: u32 = 1000;

/// What the client needs to know; built by main from the validated config.
#[derive(Clone)]
pub struct ClientSettings {
    pub base_url: String,
    pub api_key: String,
    pub org_name: String,
    pub service_instance_id: Option<String>,
    pub parallelism: usize,
    pub page_size: u32,
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// `http://host:port` of an HTTPS_PROXY, and the NO_PROXY entries.
    pub proxy: Option<String>,
    pub no_proxy: Vec<String>,
}

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

/// Which lease path answers: unknown until one does, then remembered.
const LEASES_UNKNOWN: u8 = 0;
const LEASES_PLAIN: u8 = 1;
const LEASES_ALL: u8 = 2;

type HttpClient = Client<hyper_rustls::HttpsConnector<ProxyConnector>, Empty<Bytes>>;

/// Cheap to clone: the connection pool and counters are shared.
#[derive(Clone)]
pub struct ClsClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    /// `{base}/v1/org/{org}` with the org percent-encoded.
    org_url: String,
    api_key: HeaderValue,
    service_instance_id: Option<String>,
    /// One limit for every request of a refresh, whatever its level, so a
    /// group's leases never wait for other groups' server lists.
    permits: Semaphore,
    page_size: u32,
    leases_path: AtomicU8,
    stats: Arc<ApiStats>,
}

impl ClsClient {
    pub fn new(settings: ClientSettings, stats: Arc<ApiStats>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in settings.extra_roots {
            roots.add(cert).map_err(|e| {
                format!("NVIDIA_API_CA_FILE holds a certificate rustls rejects: {e}")
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = ProxyConnector::new(http, settings.proxy.as_deref(), &settings.no_proxy);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(settings.parallelism.max(1))
            .build(https);

        let mut api_key = HeaderValue::from_str(&settings.api_key).map_err(|_| {
            "NVIDIA_API_KEY holds characters not allowed in an HTTP header".to_owned()
        })?;
        api_key.set_sensitive(true);
        if let Some(id) = &settings.service_instance_id {
            HeaderValue::from_str(id).map_err(|_| {
                "NVIDIA_SERVICE_INSTANCE_ID holds characters not allowed in an HTTP header"
                    .to_owned()
            })?;
        }
        let base = settings.base_url.trim_end_matches('/');
        Ok(ClsClient {
            inner: Arc::new(Inner {
                http: client,
                org_url: format!("{base}/v1/org/{}", encode_segment(&settings.org_name)),
                api_key,
                service_instance_id: settings.service_instance_id,
                permits: Semaphore::new(settings.parallelism.max(1)),
                page_size: settings.page_size.max(1),
                leases_path: AtomicU8::new(LEASES_UNKNOWN),
                stats,
            }),
        })
    }

    /// Reads the whole org. Only a failed group listing fails the refresh;
    /// a failed sub-resource is recorded in its group's `failures`.
    ///
    /// Pipelined: each group's walk starts as soon as the page naming the
    /// group arrives, not after the last page of groups.
    pub async fn fetch_org(&self, deadline: Instant) -> Result<OrgData, ClsError> {
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
            servers: servers
                .into_iter()
                .map(|server| ServerData {
                    server,
                    pools: Vec::new(),
                })
                .collect(),
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

    /// Every page of a listing, collected.
    async fn list_vec<P: Page>(
        &self,
        endpoint: Endpoint,
        path: String,
        extra_query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<P::Item>, ClsError> {
        let mut items = Vec::new();
        self.list_all::<P>(endpoint, path, extra_query, instance, deadline, |item| {
            items.push(item)
        })
        .await?;
        Ok(items)
    }

    /// Fetches every page of a listing, handing each item not seen before to
    /// `each` as its page arrives. Pages count from 0 or 1 (learned from what
    /// the server reports); listing stops at the totals, at a short page, or
    /// at a guard (a page of repeats, an empty page the totals did not
    /// announce, the page cap), each guard logged and counted.
    async fn list_all<P: Page>(
        &self,
        endpoint: Endpoint,
        path: String,
        extra_query: &str,
        instance: Option<&str>,
        deadline: Instant,
        mut each: impl FnMut(P::Item) + Send,
    ) -> Result<(), ClsError> {
        let size = self.inner.page_size;
        let mut seen: HashSet<String> = HashSet::new();
        // Items handed on so far (repeats excluded).
        let mut read: usize = 0;
        let mut number: Option<i64> = None;
        let mut pages: u32 = 0;
        let mut base_known = false;
        let mut shifted = false;
        loop {
            let query = match number {
                None => format!("page-size={size}{extra_query}"),
                Some(n) => format!("page-number={n}&page-size={size}{extra_query}"),
            };
            let (batch, info) = self
                .get_page::<P>(endpoint, &path, &query, instance, deadline)
                .await?;
            let batch_len = batch.len();
            let mut fresh = 0;
            for item in batch {
                let key = P::key(&item);
                if key.is_empty() || seen.insert(key) {
                    fresh += 1;
                    each(item);
                }
            }
            read += fresh;
            let Some(info) = info else {
                break; // No paginationInfo: a single page, as the API always did.
            };
            let current = match (number, info.current) {
                (None, Some(reported)) => {
                    base_known = true;
                    reported
                }
                (None, None) => 0,
                (Some(n), _) => n,
            };
            if batch_len == 0 {
                if pages > 0 && info.promises_more(pages, read) {
                    self.guard(endpoint, &path, PageGuard::ShortTotal);
                }
                break;
            }
            if fresh == 0 && pages > 0 {
                // A 1-based server that did not report its page number sends
                // its first page again for page 1: step once past it.
                if !base_known && !shifted {
                    shifted = true;
                    let Some(next) = current.checked_add(1) else {
                        break; // A page number at the end of the range has no next.
                    };
                    number = Some(next);
                    continue;
                }
                self.guard(endpoint, &path, PageGuard::RepeatedPage);
                break;
            }
            pages += 1;
            let more = match (info.total_pages, info.total_records) {
                (Some(total), _) => i64::from(pages) < total,
                (None, Some(total)) => (read as i64) < total,
                (None, None) => {
                    batch_len as i64 >= info.size.filter(|s| *s > 0).unwrap_or(i64::from(size))
                }
            };
            if !more {
                break;
            }
            if pages >= MAX_PAGES {
                self.guard(endpoint, &path, PageGuard::PageCap);
                break;
            }
            let Some(next) = current.checked_add(1) else {
                break; // A page number at the end of the range has no next.
            };
            number = Some(next);
        }
        Ok(())
    }

    fn guard(&self, endpoint: Endpoint, path: &str, guard: PageGuard) {
        self.inner.stats.count_guard(endpoint, guard);
        tracing::warn!(
            endpoint = endpoint.label(),
            path = &*shorten(path),
            guard = guard.label(),
            "paging stopped early: {}",
            match guard {
                PageGuard::RepeatedPage =>
                    "a page held only items already seen (the server seems to ignore page-number)",
                PageGuard::PageCap => "the page cap was reached",
                PageGuard::ShortTotal => "an empty page came back before the totals were reached",
            }
        );
    }

    /// One GET with retries: 429, 500, 502, 503, 504, timeouts and transport
    /// failures are retried with exponential backoff and full jitter (or the
    /// server's Retry-After), never past the refresh deadline.
    async fn get_page<P: Page>(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> Result<DecodedPage<P::Item>, ClsError> {
        let mut attempt = 0;
        loop {
            let (result, retry_after) = self
                .attempt(endpoint, path, query, instance, deadline)
                .await;
            let error = match result {
                Ok(body) => return decode_page::<P>(endpoint, path, &body),
                Err(e) => e,
            };
            attempt += 1;
            if !error.retryable() || attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            if !ends_before(wait, deadline) {
                return Err(error);
            }
            tracing::debug!(
                endpoint = endpoint.label(),
                path,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying: {error}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One request: waits for a permit, sends, reads the capped body, all
    /// within the request timeout and the deadline. Returns the body or the
    /// error, and the server's Retry-After when it sent one.
    async fn attempt(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &str,
        instance: Option<&str>,
        deadline: Instant,
    ) -> (Result<Bytes, ClsError>, Option<Duration>) {
        let inner = &self.inner;
        let what = format!("GET {path}");
        let fail = |kind| ClsError::new(endpoint, what.clone(), kind);
        let Ok(permit) = tokio::time::timeout_at(deadline, inner.permits.acquire()).await else {
            return (Err(fail(ErrorKind::Timeout)), None);
        };
        let request_deadline = deadline.min(Instant::now() + REQUEST_TIMEOUT);
        let uri = format!("{}{path}?{query}", inner.org_url);
        let mut request = hyper::Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("nvidia-license-server-exporter/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-api-key", inner.api_key.clone());
        if let Some(id) = instance.or(inner.service_instance_id.as_deref()) {
            request = request.header("x-nv-service-instance-id", id);
        }
        let request = match request.body(Empty::new()) {
            Ok(r) => r,
            Err(e) => {
                return (
                    Err(fail(ErrorKind::Request(format!("invalid request: {e}")))),
                    None,
                )
            }
        };
        let exchange = async {
            let response = inner
                .http
                .request(request)
                .await
                .map_err(|e| (ErrorKind::Transport(error_chain(&e)), None, None))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            if !(200..300).contains(&status) {
                return Err((ErrorKind::Status(status), retry_after, Some(status)));
            }
            // A Content-Length above the cap is refused before a byte of the
            // body is read (a chunked body is cut at the cap below).
            if response.body().size_hint().lower() > MAX_BODY_BYTES as u64 {
                return Err((ErrorKind::TooLarge(MAX_BODY_BYTES), None, Some(status)));
            }
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    let kind = if e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        ErrorKind::TooLarge(MAX_BODY_BYTES)
                    } else {
                        ErrorKind::Transport(format!("reading the body: {}", error_chain(&*e)))
                    };
                    (kind, None, Some(status))
                })?
                .to_bytes();
            Ok((body, status))
        };
        let outcome = tokio::time::timeout_at(request_deadline, exchange).await;
        drop(permit);
        match outcome {
            Err(_) => {
                inner.stats.count_request(endpoint, None);
                (Err(fail(ErrorKind::Timeout)), None)
            }
            Ok(Ok((body, status))) => {
                inner.stats.count_request(endpoint, Some(status));
                (Ok(body), None)
            }
            Ok(Err((kind, retry_after, status))) => {
                inner.stats.count_request(endpoint, status);
                (Err(fail(kind)), retry_after)
            }
        }
    }
}

/// Whether a wait that starts now ends before `deadline`. Checked, because a
/// Retry-After may ask for any number of seconds, and `Instant + Duration`
/// panics past the end of the clock.
fn ends_before(wait: Duration, deadline: Instant) -> bool {
    Instant::now()
        .checked_add(wait)
        .is_some_and(|end| end < deadline)
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

/// Decodes an answer, which must be a JSON object: fields inside it are read
/// leniently (see `model`), but a list, a string or garbage at the top is not
/// an answer we can trust to mean "nothing here".
fn decode<T: DeserializeOwned>(endpoint: Endpoint, path: &str, body: &[u8]) -> Result<T, ClsError> {
    let error =
        |detail: String| ClsError::new(endpoint, format!("GET {path}"), ErrorKind::Decode(detail));
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(error("expected a JSON object".to_owned()));
    }
    serde_json::from_slice(body).map_err(|e| error(e.to_string()))
}

/// One page's items and what its `paginationInfo` says (None without one).
pub type DecodedPage<T> = (Vec<T>, Option<PageInfo>);

/// Everything the client does to turn an answer's body into items: the JSON
/// object check, the lenient model, `compressedClients`, `paginationInfo`.
/// Pure, so the `cls_decode` fuzz target runs exactly this.
pub fn decode_page<P: Page>(
    endpoint: Endpoint,
    path: &str,
    body: &[u8],
) -> Result<DecodedPage<P::Item>, ClsError> {
    let page: P = decode(endpoint, path, body)?;
    let (items, info) = page.into_parts().map_err(|detail| {
        ClsError::new(endpoint, format!("GET {path}"), ErrorKind::Decode(detail))
    })?;
    Ok((items, info.as_ref().and_then(PageInfo::read)))
}

/// A listing's answer: its items, its `paginationInfo`, and a key per item
/// that says when the same object came back twice.
pub trait Page: DeserializeOwned {
    type Item: Send + 'static;
    /// The items and `paginationInfo`, or why the answer cannot be used.
    fn into_parts(self) -> Result<(Vec<Self::Item>, Option<serde_json::Value>), String>;
    fn key(item: &Self::Item) -> String;
}

impl Page for VirtualGroupsPage {
    type Item = VirtualGroup;
    fn into_parts(self) -> Result<(Vec<VirtualGroup>, Option<serde_json::Value>), String> {
        Ok((self.virtual_groups, self.pagination_info))
    }
    fn key(item: &VirtualGroup) -> String {
        item.id.clone()
    }
}

impl Page for LicenseServersPage {
    type Item = LicenseServer;
    fn into_parts(self) -> Result<(Vec<LicenseServer>, Option<serde_json::Value>), String> {
        Ok((self.license_servers, self.pagination_info))
    }
    fn key(item: &LicenseServer) -> String {
        item.id.clone()
    }
}

impl Page for LicensePoolsPage {
    type Item = LicensePool;
    fn into_parts(self) -> Result<(Vec<LicensePool>, Option<serde_json::Value>), String> {
        Ok((self.license_pools, self.pagination_info))
    }
    fn key(item: &LicensePool) -> String {
        item.id.clone()
    }
}

impl Page for LeasesPage {
    type Item = LeaseClient;
    /// `compressedClients`, when it is a non-empty string, is inflated here
    /// and replaces `clients` (the Go exporter's rule): an answer that
    /// carries both holds the same clients twice, and counting both would
    /// count leases without ids twice. A broken one fails the answer:
    /// publishing the instance's leases as none would be wrong, so it
    /// becomes a partial failure like any other failed lease call.
    fn into_parts(self) -> Result<(Vec<LeaseClient>, Option<serde_json::Value>), String> {
        if self.compressed_clients.trim().is_empty() {
            return Ok((self.clients, self.pagination_info));
        }
        let clients = inflate_clients(&self.compressed_clients)
            .map_err(|e| format!("compressedClients could not be read: {e}"))?;
        Ok((clients, self.pagination_info))
    }
    fn key(item: &LeaseClient) -> String {
        let ids: Vec<&str> = item.leases.iter().map(|l| l.lease_id.as_str()).collect();
        ids.join("\u{0}")
    }
}

/// base64 (standard alphabet, padding optional) → gzip → JSON `{"clients":[…]}`,
/// with the inflated size capped.
pub fn inflate_clients(encoded: &str) -> Result<Vec<LeaseClient>, String> {
    let compressed = crate::base64::decode(encoded).ok_or("not valid base64")?;
    // Parsed as it inflates: memory holds the clients, never the text.
    let mut inflated = Counted {
        inner: flate2::read::MultiGzDecoder::new(&compressed[..])
            .take(MAX_INFLATED_BYTES as u64 + 1),
        count: 0,
    };
    let parsed =
        serde_json::from_reader::<_, InflatedClients>(std::io::BufReader::new(&mut inflated));
    if inflated.count > MAX_INFLATED_BYTES {
        return Err(format!("inflates to more than {MAX_INFLATED_BYTES} bytes"));
    }
    match parsed {
        Ok(c) => Ok(c.clients),
        Err(e) if e.is_io() => Err(format!("not valid gzip: {e}")),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// A reader that counts the bytes it hands on.
struct Counted<R> {
    inner: R,
    count: usize,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n;
        Ok(n)
    }
}

/// The keys of `paginationInfo` we understand (the API does not document them).
#[derive(Debug, Default, PartialEq)]
pub struct PageInfo {
    pub current: Option<i64>,
    pub size: Option<i64>,
    pub total_pages: Option<i64>,
    pub total_records: Option<i64>,
}

impl PageInfo {
    fn read(value: &serde_json::Value) -> Option<PageInfo> {
        let map = value.as_object()?;
        let int = |keys: &[&str]| {
            keys.iter().find_map(|k| match map.get(*k)? {
                serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
        };
        Some(PageInfo {
            current: int(&["pageNumber", "currentPage", "page"]),
            size: int(&["pageSize", "size"]),
            total_pages: int(&["totalPages"]),
            total_records: int(&["totalRecords", "totalCount", "totalElements", "totalItems"]),
        })
    }

    fn promises_more(&self, pages: u32, items: usize) -> bool {
        match (self.total_pages, self.total_records) {
            (Some(total), _) => i64::from(pages) < total,
            (None, Some(total)) => (items as i64) < total,
            (None, None) => false,
        }
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^n)].
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let nanos = cap.as_nanos() as u64;
    Duration::from_nanos(if nanos == 0 {
        0
    } else {
        random() % (nanos + 1)
    })
}

/// A xorshift generator seeded from the clock: jitter needs spread, not
/// unpredictability, and this saves a dependency.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    x
}

/// `Retry-After` as delay-seconds or an HTTP-date (IMF-fixdate).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = parse_http_date(value)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → unix seconds. Only the fixed widths of
/// an IMF-fixdate are read, which also keeps the arithmetic far from overflow.
fn parse_http_date(value: &str) -> Option<i64> {
    let rest = value.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let digits = |text: &str, n: usize| text.len() == n && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(day, 2)
        || !digits(year, 4)
        || time.len() != 8
        || !time.split(':').all(|part| digits(part, 2))
    {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u32
        + 1;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let days = crate::snapshot::days_from_civil(year.parse().ok()?, month, day.parse().ok()?)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved
/// characters, so an org name or id can never change the path's shape.
/// An id as a path segment, or None when it cannot name anything: empty
/// or blank (a null id), or `.` and `..`, which a server or proxy on the way
/// reads as "this" and "the parent" path and so would answer for another
/// resource than the one asked for.
fn id_segment(id: &str) -> Option<String> {
    match id.trim() {
        "" | "." | ".." => None,
        _ => Some(encode_segment(id)),
    }
}

/// The failure recorded for a sub-resource that is not asked for because
/// its parent has no usable id (no request is made or counted).
fn no_usable_id(endpoint: Endpoint, what: String) -> ClsError {
    ClsError::new(
        endpoint,
        what,
        ErrorKind::Request("the id is empty, \".\" or \"..\", so no path can name it".into()),
    )
}

pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// hyper-util's errors hide their cause: join the whole `source()` chain.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("lic-abc_1.2~"), "lic-abc_1.2~");
        assert_eq!(encode_segment("a/b c?d#e"), "a%2Fb%20c%3Fd%23e");
        assert_eq!(encode_segment("Zü"), "Z%C3%BC");
        assert_eq!(encode_segment(".."), "..");
    }

    #[test]
    fn ids_that_name_no_resource_make_no_path() {
        for id in ["", "  ", ".", "..", " .. "] {
            assert_eq!(id_segment(id), None, "{id:?}");
        }
        assert_eq!(id_segment("...").as_deref(), Some("..."));
        assert_eq!(id_segment("a/..").as_deref(), Some("a%2F.."));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }

    #[test]
    fn http_dates_of_any_width_but_the_fixed_one_are_refused() {
        for value in [
            "Fri, 31 Dec 99999999999999999 23:59:59 GMT",
            "Fri, 31 Dec 2025 99999999999999:00:00 GMT",
            "Fri, 031 Dec 2025 23:59:59 GMT",
            "Fri, 31 Dec 2025 23:59 GMT",
        ] {
            assert_eq!(parse_http_date(value), None, "{value}");
        }
    }

    #[test]
    fn a_wait_past_the_end_of_the_clock_ends_after_any_deadline() {
        let deadline = Instant::now() + Duration::from_secs(60);
        assert!(ends_before(Duration::from_secs(1), deadline));
        assert!(!ends_before(Duration::from_secs(60), deadline));
        assert!(!ends_before(Duration::from_secs(u64::MAX), deadline));
        assert!(!ends_before(Duration::MAX, deadline));
    }

    /// Answers every request on 127.0.0.1 with `answer` (head, and as much
    /// of the body as it holds), then sends nothing more. Returns the base URL.
    async fn answering(answer: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut buf, mut seen) = (vec![0u8; 8192], Vec::new());
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    fn client_of(base_url: String) -> ClsClient {
        let settings = ClientSettings {
            base_url,
            api_key: "k".into(),
            org_name: "o".into(),
            service_instance_id: None,
            parallelism: 2,
            page_size: 100,
            extra_roots: Vec::new(),
            proxy: None,
            no_proxy: Vec::new(),
        };
        ClsClient::new(settings, Arc::new(ApiStats::default())).unwrap()
    }

    #[tokio::test]
    async fn a_content_length_above_the_cap_is_refused_before_the_body() {
        // The body never comes: reading it would wait for the deadline.
        let base = answering(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 104857600\r\n\r\n{\"virtualGroups\":[",
        )
        .await;
        let started = Instant::now();
        let error = client_of(base)
            .fetch_org(started + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::TooLarge(MAX_BODY_BYTES));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_retry_after_past_the_end_of_the_clock_fails_at_once() {
        let base = answering(
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 18446744073709551615\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        let started = Instant::now();
        let error = client_of(base)
            .fetch_org(started + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Status(429));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_page_number_at_the_end_of_the_range_ends_the_listing() {
        // Every listing answers with this one group, as page i64::MAX of
        // more than can be counted.
        let base = answering(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 85\r\n\r\n{\"virtualGroups\":[{\"id\":1}],\"paginationInfo\":{\"pageNumber\":1e308,\"totalPages\":1e308}}",
        )
        .await;
        let org = client_of(base)
            .fetch_org(Instant::now() + Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(org.groups.len(), 1);
        assert_eq!(org.groups[0].group.id, "1");
    }

    #[test]
    fn backoff_stays_within_its_cap() {
        for attempt in 0..20 {
            let cap = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_MAX);
            assert!(backoff(attempt) <= cap);
        }
    }

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

    #[test]
    fn compressed_clients_inflate_and_bombs_are_refused() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"clients":[{"leases":[{"leaseId":"x"}]}]}"#)
            .unwrap();
        let bytes = gz.finish().unwrap();
        let encoded = encode_base64(&bytes);
        let clients = inflate_clients(&encoded).unwrap();
        assert_eq!(clients[0].leases[0].lease_id, "x");
        assert!(inflate_clients("bm90IGd6aXA=")
            .unwrap_err()
            .starts_with("not valid gzip"));
    }

    #[test]
    fn compressed_clients_replace_plain_clients() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"clients":[{"leases":[{"featureName":"A"}]}]}"#)
            .unwrap();
        let encoded = encode_base64(&gz.finish().unwrap());
        let body = format!(
            r#"{{"clients":[{{"leases":[{{"featureName":"A"}}]}}],"compressedClients":"{encoded}"}}"#
        );
        let (clients, _) =
            decode_page::<LeasesPage>(Endpoint::Leases, "/l", body.as_bytes()).unwrap();
        assert_eq!(clients.len(), 1, "the same client, once");
        // Blank: `clients` is what the answer holds.
        let (clients, _) = decode_page::<LeasesPage>(
            Endpoint::Leases,
            "/l",
            br#"{"clients":[{"leases":[]},{"leases":[]}],"compressedClients":" "}"#,
        )
        .unwrap();
        assert_eq!(clients.len(), 2);
    }

    #[test]
    fn answers_must_be_json_objects() {
        let err = decode::<VirtualGroupsPage>(Endpoint::VirtualGroups, "/x", b"[1]").unwrap_err();
        assert_eq!(err.to_string(), "GET /x failed: response is not valid JSON of the expected shape: expected a JSON object");
        assert!(decode::<VirtualGroupsPage>(Endpoint::VirtualGroups, "/x", b"{").is_err());
        assert!(decode::<VirtualGroupsPage>(Endpoint::VirtualGroups, "/x", b"").is_err());
        assert!(decode::<VirtualGroupsPage>(Endpoint::VirtualGroups, "/x", b" {}").is_ok());
    }

    #[test]
    fn decode_page_returns_items_and_page_info_or_a_decode_error() {
        let (servers, info) = decode_page::<LicenseServersPage>(
            Endpoint::LicenseServers,
            "/s",
            br#"{"licenseServers":[{"id":"s1"},7],"paginationInfo":{"pageNumber":1,"totalPages":"3"}}"#,
        )
        .unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].id, "s1");
        assert_eq!(info.unwrap().total_pages, Some(3));
        let (_, info) =
            decode_page::<LicensePoolsPage>(Endpoint::LicensePools, "/p", b"{}").unwrap();
        assert_eq!(info, None);
        let err = decode_page::<LeasesPage>(
            Endpoint::Leases,
            "/l",
            br#"{"clients":[],"compressedClients":"!!"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "GET /l failed: response is not valid JSON of the expected shape: compressedClients could not be read: not valid base64"
        );
    }

    #[test]
    fn page_info_reads_every_documented_key_spelling() {
        let info = PageInfo::read(
            &serde_json::json!({"currentPage": 2, "size": "50", "totalElements": 120}),
        )
        .unwrap();
        assert_eq!(
            info,
            PageInfo {
                current: Some(2),
                size: Some(50),
                total_pages: None,
                total_records: Some(120)
            }
        );
        assert_eq!(PageInfo::read(&serde_json::json!("x")), None);
    }

    fn encode_base64(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
