//! Fake NVIDIA Cloud License Service (CLS) over plain HTTP on loopback: owns the
//! imitation of the CLS REST API (as docs/cls.md describes it), its pagination
//! variants, fault injection (canned answers as path overrides), a hold gate,
//! and a synthetic org generator for benchmarks. It answers through the
//! canned-answer server of `canned.rs`, which keeps the request log. Used by
//! integration tests and the `fake-cls` example (which compiles both files).
#![allow(dead_code)]

use base64::Engine;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::canned::{parse_query, percent_decode, Canned, CannedServer, Recorded};

/// The fixture org (`proto-tests/fixtures/org.json`) most tests serve.
pub fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto-tests/fixtures/org.json");
    let text = std::fs::read_to_string(path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Page size used when a paginating fake gets no (or a zero) `page-size`.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Which totals appear in `paginationInfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Totals {
    Pages,
    Records,
    #[default]
    Both,
    None,
}

/// Key names used inside `paginationInfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyStyle {
    /// `pageNumber`, `pageSize`, `totalPages`, `totalRecords`.
    #[default]
    Standard,
    /// `currentPage`, `size`, `totalPages`, `totalElements`.
    Alternate,
}

/// Pagination behaviour of the list endpoints. `Default` = disabled: whole list
/// in one answer, `paginationInfo` describing one page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Paging {
    /// When false the whole list is served in one answer.
    pub enabled: bool,
    /// Number of the first page (0 or 1). A missing page-number, or one below
    /// `base`, means the first page. When disabled, reported as the page number.
    pub base: u32,
    /// The server caps `page-size` to this.
    pub max_page_size: Option<usize>,
    /// Which totals appear in `paginationInfo`.
    pub totals: Totals,
    /// Key names inside `paginationInfo`.
    pub key_style: KeyStyle,
    /// No `paginationInfo` key at all.
    pub omit_info: bool,
    /// Always serve the first page whatever `page-number` says.
    pub ignore_page_number: bool,
    /// Also paginate the license-pools and leases endpoints (off by default:
    /// real CLS is not known to paginate them). Adds `paginationInfo` there.
    pub paginate_sub_resources: bool,
}

impl Paging {
    /// Paging enabled with the given first-page number (0 or 1), all other fields default.
    pub fn enabled(base: u32) -> Paging {
        Paging {
            enabled: true,
            base,
            ..Paging::default()
        }
    }
}

/// Sees every authenticated request before it is routed, and may change the
/// served document (see [`FakeCls::set_on_request`]).
pub type Hook = Arc<dyn Fn(&Recorded, &mut Value) + Send + Sync>;

struct State {
    org: Value,
    on_request: Option<Hook>,
    api_key: String,
    paging: Paging,
    latency: Duration,
    compressed_leases: bool,
    leases_all_only: bool,
    leases_plain_only: bool,
    overrides: Vec<(String, Canned)>,
}

struct Inner {
    state: Mutex<State>,
    /// `true` while held.
    gate: watch::Sender<bool>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The hold gate, then the latency, then the API key, then an
    /// override, then the normal routes.
    async fn answer(&self, rec: Recorded) -> Canned {
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|held| !*held).await;
        let latency = self.lock().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut st = self.lock();
        if rec.header("x-api-key") != Some(st.api_key.as_str()) {
            return message(401, "unauthorized");
        }
        if let Some(canned) = take_override(&mut st, &rec.path) {
            return canned;
        }
        if let Some(hook) = st.on_request.clone() {
            hook(&rec, &mut st.org);
        }
        route(&st, &rec)
    }
}

/// Handle to a running fake. Cheap to clone; all clones control the same server.
#[derive(Clone)]
pub struct FakeCls {
    inner: Arc<Inner>,
    server: CannedServer,
}

impl FakeCls {
    /// Binds 127.0.0.1:0 and serves on the current tokio runtime. Panics if binding fails.
    pub async fn start(org: Value, api_key: &str) -> FakeCls {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        FakeCls::start_on(addr, org, api_key)
            .await
            .expect("fake CLS: bind 127.0.0.1:0")
    }

    /// Binds `addr` and serves on the current tokio runtime.
    pub async fn start_on(addr: SocketAddr, org: Value, api_key: &str) -> std::io::Result<FakeCls> {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                org,
                on_request: None,
                api_key: api_key.to_string(),
                paging: Paging::default(),
                latency: Duration::ZERO,
                compressed_leases: false,
                leases_all_only: false,
                leases_plain_only: false,
                overrides: Vec::new(),
            }),
            gate: watch::channel(false).0,
        });
        let answering = inner.clone();
        let server = CannedServer::start_on(
            addr,
            Arc::new(move |rec, _connection| {
                let inner = answering.clone();
                Box::pin(async move { inner.answer(rec).await })
            }),
        )
        .await?;
        Ok(FakeCls { inner, server })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The `org` field of the served document.
    pub fn org_name(&self) -> String {
        org_name(&self.inner.lock().org).to_string()
    }

    /// Stops accepting and closes open connections (in-flight answers are dropped).
    pub fn shutdown(&self) {
        self.server.shutdown();
    }

    pub fn set_org(&self, org: Value) {
        self.inner.lock().org = org;
    }

    /// Calls `hook` with every authenticated request that no override
    /// answers, before it is routed, with the served document to change: an
    /// org that changes between two pages of one listing.
    pub fn set_on_request(&self, hook: impl Fn(&Recorded, &mut Value) + Send + Sync + 'static) {
        self.inner.lock().on_request = Some(Arc::new(hook));
    }

    pub fn set_api_key(&self, key: &str) {
        self.inner.lock().api_key = key.to_string();
    }

    pub fn set_paging(&self, paging: Paging) {
        self.inner.lock().paging = paging;
    }

    /// Delay before each answer.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().latency = latency;
    }

    /// Answer leases as `{"compressedClients": base64(gzip({"clients":[...]}))}`.
    pub fn set_compressed_leases(&self, on: bool) {
        self.inner.lock().compressed_leases = on;
    }

    /// `/leases` answers 404; only `/leases/all` works.
    pub fn set_leases_all_only(&self, on: bool) {
        self.inner.lock().leases_all_only = on;
    }

    /// `/leases/all` answers 404: an older deployment that serves `/leases` alone.
    pub fn set_leases_plain_only(&self, on: bool) {
        self.inner.lock().leases_plain_only = on;
    }

    /// Requests whose path (no query, after `/v1/org/{org}`; raw or
    /// percent-decoded) ends with `path_suffix` get `resp` instead (after its
    /// `delay`, for its `times`). Replaces an existing override with the same
    /// suffix. Checked after the API key.
    pub fn set_override(&self, path_suffix: &str, resp: Canned) {
        let mut st = self.inner.lock();
        if let Some(slot) = st.overrides.iter_mut().find(|(s, _)| s == path_suffix) {
            slot.1 = resp;
        } else {
            st.overrides.push((path_suffix.to_string(), resp));
        }
    }

    pub fn clear_overrides(&self) {
        self.inner.lock().overrides.clear();
    }

    /// Every request (including those already waiting) waits until `release()`.
    /// Requests are recorded on arrival, before waiting.
    pub fn hold(&self) {
        self.inner.gate.send_replace(true);
    }

    pub fn release(&self) {
        self.inner.gate.send_replace(false);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    /// Number of recorded requests whose raw path ends with `suffix`.
    pub fn requests_ending_with(&self, suffix: &str) -> usize {
        self.server.requests_ending_with(suffix)
    }

    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// Every request with the time it arrived, in arrival order.
    pub fn requests_timed(&self) -> Vec<(Instant, Recorded)> {
        self.server.requests_timed()
    }

    /// Arrival times of the requests to exactly `path` (after
    /// `/v1/org/{org}`), in order.
    pub fn arrivals(&self, path: &str) -> Vec<Instant> {
        let full = format!("/v1/org/{}{path}", self.org_name());
        self.requests_timed()
            .into_iter()
            .filter(|(_, r)| r.path == full)
            .map(|(t, _)| t)
            .collect()
    }

    /// TCP connections accepted since start.
    pub fn connections(&self) -> usize {
        self.server.connections()
    }

    /// The most requests that were in flight (received, not yet answered) at once.
    pub fn max_in_flight(&self) -> usize {
        self.server.max_in_flight()
    }
}

fn message(status: u16, msg: &str) -> Canned {
    Canned::json(status, &json!({ "message": msg }))
}

fn not_found() -> Canned {
    message(404, "not found")
}

/// The part of a raw path after `/v1/org/{org}` (the whole path if it has no such prefix).
fn after_org(path: &str) -> &str {
    match path.strip_prefix("/v1/org/") {
        Some(rest) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "",
        },
        None => path,
    }
}

fn take_override(st: &mut State, path: &str) -> Option<Canned> {
    let raw = after_org(path);
    let decoded = percent_decode(raw).unwrap_or_else(|| raw.to_string());
    let idx = st.overrides.iter().position(|(suffix, c)| {
        c.times != Some(0) && (raw.ends_with(suffix.as_str()) || decoded.ends_with(suffix.as_str()))
    })?;
    let entry = &mut st.overrides[idx].1;
    let out = entry.clone();
    if let Some(n) = entry.times.as_mut() {
        *n -= 1;
        if *n == 0 {
            st.overrides.remove(idx);
        }
    }
    Some(out)
}

fn org_name(org: &Value) -> &str {
    org.get("org").and_then(Value::as_str).unwrap_or("")
}

fn id_matches(id: &Value, wanted: &str) -> bool {
    match id {
        Value::String(s) => s == wanted,
        // An integral float (`7.0`) is the id `7`, as the exporter reads it.
        Value::Number(n) => {
            n.to_string() == wanted
                || matches!((n.as_i64(), wanted.parse::<i64>()), (Some(a), Ok(b)) if a == b)
                || matches!((n.as_f64(), wanted.parse::<f64>()), (Some(a), Ok(b)) if a == b)
        }
        _ => false,
    }
}

fn array_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `v` without `keys`. Only the kept fields are cloned: a group's servers
/// and leases (most of a generated org) are never copied just to be dropped.
fn without(v: &Value, keys: &[&str]) -> Value {
    match v.as_object() {
        Some(obj) => Value::Object(
            obj.iter()
                .filter(|(k, _)| !keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => v.clone(),
    }
}

fn route(st: &State, rec: &Recorded) -> Canned {
    if rec.method != "GET" {
        return not_found();
    }
    let Some(rest) = rec.path.strip_prefix("/v1/org/") else {
        return not_found();
    };
    let mut raw_segs = rest.split('/');
    let mut segs = Vec::new();
    for s in raw_segs.by_ref() {
        match percent_decode(s) {
            Some(d) => segs.push(d),
            None => return message(400, "bad percent-encoding in path"),
        }
    }
    let query = match parse_query(&rec.query) {
        Ok(q) => q,
        Err(e) => return message(400, &e),
    };
    if segs.first().map(String::as_str) != Some(org_name(&st.org)) {
        return not_found();
    }
    let segs: Vec<&str> = segs[1..].iter().map(String::as_str).collect();
    let groups = array_of(&st.org, "virtualGroups");

    match segs.as_slice() {
        ["virtual-groups"] => {
            let items = groups
                .iter()
                .map(|g| without(g, &["licenseServers", "leases"]))
                .collect();
            list_reply(st, &query, "virtualGroups", items, true, Map::new())
        }
        ["virtual-groups", vg, rest @ ..] => {
            let Some(group) = groups
                .iter()
                .find(|g| g.get("id").is_some_and(|id| id_matches(id, vg)))
            else {
                return not_found();
            };
            let servers = array_of(group, "licenseServers");
            match rest {
                ["license-servers"] => {
                    let items = servers
                        .iter()
                        .map(|s| without(s, &["licensePools"]))
                        .collect();
                    let mut extra = Map::new();
                    extra.insert("productFamily".into(), json!([]));
                    list_reply(st, &query, "licenseServers", items, true, extra)
                }
                ["license-servers", server, "license-pools"] => {
                    let Some(srv) = servers
                        .iter()
                        .find(|s| s.get("id").is_some_and(|id| id_matches(id, server)))
                    else {
                        return not_found();
                    };
                    let items = array_of(srv, "licensePools").to_vec();
                    list_reply(st, &query, "licensePools", items, false, Map::new())
                }
                ["leases"] if st.leases_all_only => not_found(),
                ["leases", "all"] if st.leases_plain_only => not_found(),
                ["leases"] | ["leases", "all"] => {
                    let sid = rec.header("x-nv-service-instance-id").unwrap_or("");
                    let clients = group
                        .get("leases")
                        .and_then(|l| l.get(sid))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    leases_reply(st, &query, clients)
                }
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

fn leases_reply(st: &State, query: &[(String, String)], clients: Vec<Value>) -> Canned {
    if !st.compressed_leases {
        return list_reply(st, query, "clients", clients, false, Map::new());
    }
    let (page, info) = match paginate(st, query, clients, false) {
        Ok(p) => p,
        Err(e) => return message(400, &e),
    };
    let inner = json!({ "clients": page }).to_string();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let gz = match enc.write_all(inner.as_bytes()).and_then(|_| enc.finish()) {
        Ok(gz) => gz,
        Err(_) => return message(500, "gzip failed"),
    };
    let mut body = Map::new();
    body.insert(
        "compressedClients".into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(&gz)),
    );
    if let Some(info) = info {
        body.insert("paginationInfo".into(), info);
    }
    Canned::json(200, &Value::Object(body))
}

fn list_reply(
    st: &State,
    query: &[(String, String)],
    key: &str,
    items: Vec<Value>,
    is_list_endpoint: bool,
    mut body: Map<String, Value>,
) -> Canned {
    let (page, info) = match paginate(st, query, items, is_list_endpoint) {
        Ok(p) => p,
        Err(e) => return message(400, &e),
    };
    body.insert(key.to_string(), Value::Array(page));
    if let Some(info) = info {
        body.insert("paginationInfo".into(), info);
    }
    Canned::json(200, &Value::Object(body))
}

/// A numeric query parameter; the error is the message of a 400.
fn query_usize(query: &[(String, String)], name: &str) -> Result<Option<usize>, String> {
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("invalid {name}")),
    }
}

/// Returns the page of `items` and the `paginationInfo` to send (if any).
fn paginate(
    st: &State,
    query: &[(String, String)],
    items: Vec<Value>,
    is_list_endpoint: bool,
) -> Result<(Vec<Value>, Option<Value>), String> {
    let p = &st.paging;
    let page_number = query_usize(query, "page-number")?;
    let page_size = query_usize(query, "page-size")?;
    let applies = is_list_endpoint || p.paginate_sub_resources;
    if !applies {
        return Ok((items, None));
    }
    let total = items.len();
    if !p.enabled {
        let info = (!p.omit_info).then(|| info(p, p.base as usize, total, total, 1));
        return Ok((items, info));
    }
    let base = p.base as usize;
    let mut size = page_size.filter(|s| *s > 0).unwrap_or(DEFAULT_PAGE_SIZE);
    if let Some(max) = p.max_page_size {
        size = size.min(max.max(1));
    }
    let number = match page_number {
        Some(n) if !p.ignore_page_number && n >= base => n,
        _ => base,
    };
    let start = (number - base).saturating_mul(size);
    let page: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    let total_pages = total.div_ceil(size);
    let info = (!p.omit_info).then(|| info(p, number, size, total, total_pages));
    Ok((page, info))
}

fn info(p: &Paging, number: usize, size: usize, records: usize, pages: usize) -> Value {
    let (k_num, k_size, k_pages, k_records) = match p.key_style {
        KeyStyle::Standard => ("pageNumber", "pageSize", "totalPages", "totalRecords"),
        KeyStyle::Alternate => ("currentPage", "size", "totalPages", "totalElements"),
    };
    let mut m = Map::new();
    m.insert(k_num.into(), json!(number));
    m.insert(k_size.into(), json!(size));
    if matches!(p.totals, Totals::Pages | Totals::Both) {
        m.insert(k_pages.into(), json!(pages));
    }
    if matches!(p.totals, Totals::Records | Totals::Both) {
        m.insert(k_records.into(), json!(records));
    }
    Value::Object(m)
}

const GEN_FEATURES: [(&str, &str); 4] = [
    ("Quadro-Virtual-DWS", "NVIDIA RTX Virtual Workstation"),
    ("GRID-Virtual-PC", "NVIDIA Virtual PC"),
    ("GRID-Virtual-Apps", "NVIDIA Virtual Applications"),
    ("NVIDIA-vComputeServer", "NVIDIA Virtual Compute Server"),
];

/// Synthetic org for benchmarks. Server `s` (0-based) belongs to group
/// `s % groups` (ids 1..=groups), has `2 + s % 2` features (names
/// `GEN_FEATURES[(s + j) % 4]`), one pool and serviceInstanceId `sid-{s:06}`.
/// Lease `k` (unique leaseId `lease-{k:08}`, leaseCount 1) goes to server
/// `k % servers`, feature `(k / servers) % nfeatures`; clients hold up to 4 leases
/// each and carry `license_server_id`. With `groups == 0` the org is empty;
/// with `servers == 0` there are no leases.
pub fn generate_org(org: &str, groups: usize, servers: usize, leases: usize) -> Value {
    let servers = if groups == 0 { 0 } else { servers };
    let leases = if servers == 0 { 0 } else { leases };
    let nfeat = |s: usize| 2 + s % 2;
    let server_id = |s: usize| format!("{:08x}-0000-4000-8000-{:012x}", s % groups + 1, s);
    let feat_id = |s: usize, j: usize| format!("{}-f{}", server_id(s), j);

    // Per server: clients, and in-use counts per feature.
    let mut clients: Vec<Vec<Value>> = vec![Vec::new(); servers];
    let mut in_use: Vec<Vec<u64>> = (0..servers).map(|s| vec![0; nfeat(s)]).collect();
    let mut pending: Vec<Vec<Value>> = vec![Vec::new(); servers];
    for k in 0..leases {
        let s = k % servers;
        let local = k / servers;
        let j = local % nfeat(s);
        in_use[s][j] += 1;
        pending[s].push(json!({
            "leaseId": format!("lease-{k:08}"),
            "featureName": GEN_FEATURES[(s + j) % 4].0,
            "leaseCount": 1,
            "licenseAllotmentFeatureId": feat_id(s, j),
        }));
        if pending[s].len() == 4 || k + servers >= leases {
            let n = clients[s].len();
            clients[s].push(json!({
                "clientId": format!("client-{s}-{n}"),
                "leases": std::mem::take(&mut pending[s]),
                "additionalProperties": {
                    "license_server_id": server_id(s),
                    "license_server_name": format!("ls-{s:06}"),
                },
            }));
        }
    }

    let mut vgs: Vec<Value> = Vec::with_capacity(groups);
    for g in 0..groups {
        let gid = g + 1;
        let gname = format!("vg-{gid:04}");
        let features: Vec<Value> = GEN_FEATURES
            .iter()
            .map(|(f, p)| {
                json!({
                    "featureName": f, "featureVersion": "17.0", "productName": p,
                    "productFamily": "vGPU", "namespace": "NVIDIA",
                    "licenseType": "CONCURRENT_COUNTED_SINGLE",
                    "startDate": "2025-01-01T00:00:00Z", "endDate": "2027-12-31",
                    "totalQuantity": 100000, "inUseQuantity": 0,
                    "unassignedQuantity": 0, "overagePercent": 0,
                    "availableOverageQuantity": 0,
                })
            })
            .collect();
        let mut srvs = Vec::new();
        let mut lease_map = Map::new();
        for s in (g..servers).step_by(groups) {
            let id = server_id(s);
            let sid = format!("sid-{s:06}");
            let sfeats: Vec<Value> = (0..nfeat(s))
                .map(|j| {
                    let (f, p) = GEN_FEATURES[(s + j) % 4];
                    json!({
                        "id": feat_id(s, j), "featureName": f, "productName": p,
                        "licenseType": "CONCURRENT_COUNTED_SINGLE",
                        "totalQuantity": in_use[s][j].max(10) * 2,
                    })
                })
                .collect();
            let pool_feats: Vec<Value> = (0..nfeat(s))
                .map(|j| {
                    json!({
                        "licenseServerFeatureId": feat_id(s, j),
                        "totalAllotment": in_use[s][j].max(10) * 2,
                        "inUse": in_use[s][j],
                    })
                })
                .collect();
            srvs.push(json!({
                "id": id, "name": format!("ls-{s:06}"), "status": "ENABLED",
                "virtualGroupId": gid, "virtualGroupName": gname,
                "deployedOn": "CLOUD", "leasingMode": "STANDARD",
                "serviceInstanceId": sid,
                "licenseServerFeatures": sfeats,
                "licensePools": [ { "id": format!("{id}-pool"), "name": "default",
                                    "licensePoolFeatures": pool_feats } ],
            }));
            lease_map.insert(sid, Value::Array(std::mem::take(&mut clients[s])));
        }
        vgs.push(json!({
            "id": gid, "name": gname, "isDefault": g == 0,
            "entitlements": [ {
                "id": format!("ent-{gid}"),
                "entitlementProductKeys": [ { "id": format!("pk-{gid}"),
                                              "entitlementFeatures": features } ],
            } ],
            "licenseServers": srvs,
            "leases": lease_map,
        }));
    }
    json!({ "org": org, "virtualGroups": vgs })
}
