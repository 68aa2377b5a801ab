//! The fault matrix: one test per way the CLS API (or the road to it) can
//! fail, each against the real exporter binary and the fake CLS over loopback
//! sockets. Every row runs one good refresh first, then injects its fault,
//! and asserts what the contract says: the previous snapshot kept with `up 0`
//! when the whole refresh fails, the documented partial refresh when one
//! sub-resource fails, the exact counters, and one log line that names the
//! fault. After every refresh `assert_sound` checks what must hold whatever
//! happened: the process alive without a panic, `/healthz` and `/metrics`
//! answering, an exposition that passes a strict grammar check and
//! `promtool check metrics`, memory under `RSS_BOUND`, every log record on
//! one line, and the API key nowhere. Where a fault also has a second
//! setting to prove (a 1 s deadline, a server that ignores page-number), the
//! row starts a second exporter for it.
//!
//! This file is the one home of each fault: cls_client.rs tests the client's
//! mechanics (paging, retries that succeed, backoff, pipelining, leases).
//! docs/reliability.md ("Fault matrix") has the table of rows and outcomes.

mod support;

use serde_json::{json, Value};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use support::canned::{Canned, Tail};
use support::exporter::{http, log_lines, refresh_failures, retries, Exporter};
use support::fake_cls::{generate_org, FakeCls, Paging};
use support::front::{Front, Mode};
use support::orgs::{count_lines, n_of_everything, page_numbers, server_active, LISTINGS};
use support::pki::Pki;
use support::scratch::{scratch_dir, write_file};
use support::series::{data, find, guard, one, parse_strict, partial, requests_total, up};
use support::tools::promtool;

/// The API key: a sentinel that must never appear in any output.
const KEY: &str = "sentinel-KEY-fault-matrix-3e9d1c";
const ORG: &str = "lic-demo";
/// CACHE_TTL of every row: the next refresh is one short sleep away.
const TTL: Duration = Duration::from_millis(200);
/// SCRAPE_TIMEOUT of most rows: room for four attempts with backoff
/// (0.4 + 0.8 + 1.6 s at most) before the requests' deadline (4.5 s).
const SCRAPE_TIMEOUT: &str = "5s";
/// Attempts of a retried request (src/cls/client.rs MAX_ATTEMPTS).
const ATTEMPTS: f64 = 4.0;
/// The cap on one response body (src/cls/request.rs MAX_BODY_BYTES).
const BODY_CAP: usize = 64 << 20;
/// The exporter's resident set (VmRSS, debug build) stays under this after
/// every row, the 100 MiB and endless bodies included.
const RSS_BOUND: u64 = 64 << 20;
/// The peak resident set (VmHWM) of the rows that read a body up to the cap
/// (debug build): answers are decoded as they arrive, so a body up to the
/// cap costs what it decodes to, not the cap (18 MiB seen, 81 MiB when
/// bodies were buffered).
const PEAK_BOUND: u64 = 48 << 20;

// ------------------------------------------------------------- the good org

/// Two groups of one server each (group 2 holds S2), with pools and
/// four leases, from the fake's generator.
fn good_org() -> Value {
    generate_org(ORG, 2, 2, 4)
}
const S2: &str = "00000002-0000-4000-8000-000000000001";

/// The group listing of an org document (what `/virtual-groups` serves).
fn group_listing(org: &Value) -> Vec<Value> {
    org["virtualGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let mut g = g.clone();
            let g_obj = g.as_object_mut().unwrap();
            g_obj.remove("licenseServers");
            g_obj.remove("leases");
            g
        })
        .collect()
}

/// One sub-resource of group 2, for the partial-failure half of a row.
#[derive(Clone, Copy, Debug)]
enum Part {
    /// Group 2's server list: S2 and everything under it goes.
    Servers,
    /// S2's pools: its pool series go.
    Pools,
    /// The leases of S2's service instance: its lease counts go (unknown, not 0).
    Leases,
}

impl Part {
    /// The path after the org, as the log names it.
    fn path(self) -> String {
        match self {
            Part::Servers => "/virtual-groups/2/license-servers".to_owned(),
            Part::Pools => format!("/virtual-groups/2/license-servers/{S2}/license-pools"),
            Part::Leases => "/virtual-groups/2/leases/all".to_owned(),
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Part::Servers => "license_servers",
            Part::Pools => "license_pools",
            Part::Leases => "leases",
        }
    }

    /// Whether a series of the good refresh depends on this part.
    fn holds(self, line: &str) -> bool {
        let of_s2 = line.contains(&format!("server_id=\"{S2}\""));
        match self {
            Part::Servers => line.starts_with("nvidia_cls_license_") && of_s2,
            Part::Pools => line.starts_with("nvidia_cls_license_pool_") && of_s2,
            Part::Leases => {
                (line.starts_with("nvidia_cls_license_server_active_leases{")
                    || line.starts_with("nvidia_cls_license_server_feature_active_leases{"))
                    && of_s2
            }
        }
    }
}

// ---------------------------------------------------------------- the row

/// The fake CLS, the exporter, and the exposition of the good refresh.
struct Row {
    cls: FakeCls,
    exporter: Exporter,
    good: String,
    /// Wall time of the scrape of the latest refresh (`next`).
    scrape: Cell<Duration>,
}

impl Row {
    /// The good org on the fake, the exporter on it, one good refresh.
    async fn start(extra: &[(&str, &str)]) -> Row {
        let cls = FakeCls::start(good_org(), KEY).await;
        let base = cls.base_url();
        Row::start_at(cls, &base, extra).await
    }

    /// As `start`, with the exporter pointed at `base_url` (a front of `cls`).
    async fn start_at(cls: FakeCls, base_url: &str, extra: &[(&str, &str)]) -> Row {
        let exporter = start_exporter(base_url, extra);
        let good = refresh(&exporter).await;
        assert_eq!(up(&good), Some(1.0), "{}", exporter.stderr());
        assert!(good.contains(&format!("server_id=\"{S2}\"")));
        Row {
            cls,
            exporter,
            good,
            scrape: Cell::new(Duration::ZERO),
        }
    }

    /// Waits out the TTL and scrapes: one refresh under what the fake does now.
    async fn next(&self) -> String {
        tokio::time::sleep(TTL + Duration::from_millis(50)).await;
        let (text, took) = refresh_timed(&self.exporter).await;
        self.scrape.set(took);
        text
    }

    /// Wall time of the scrape of the latest refresh.
    fn scrape_took(&self) -> Duration {
        self.scrape.get()
    }

    /// Requests to the group listing so far.
    fn listings(&self) -> usize {
        self.cls.requests_ending_with("/virtual-groups")
    }

    /// One refresh with the group listing answering `canned`.
    async fn whole(&self, canned: Canned) -> String {
        self.cls.set_override("/virtual-groups", canned);
        let text = self.next().await;
        self.cls.clear_overrides();
        text
    }

    /// One refresh with `part` answering `canned`.
    async fn sub(&self, part: Part, canned: Canned) -> String {
        self.cls.set_override(&part.path(), canned);
        let text = self.next().await;
        self.cls.clear_overrides();
        text
    }

    /// A whole-refresh failure after the good refresh: `up 0`, the good
    /// series and their collection time kept, `failures` failed refreshes.
    fn assert_kept(&self, now: &str, failures: f64) {
        assert_eq!(up(now), Some(0.0), "{now}");
        assert_eq!(data(now), data(&self.good), "the previous snapshot is kept");
        assert_eq!(
            one(now, "nvidia_cls_scrape_timestamp_seconds", &[]),
            one(&self.good, "nvidia_cls_scrape_timestamp_seconds", &[]),
            "the timestamp is the kept snapshot's"
        );
        assert_eq!(
            one(now, "nvidia_cls_refreshes_total", &[("result", "failure")]),
            Some(failures)
        );
    }

    /// A partial refresh without `part`: `up 1`, the good series except
    /// those of `part`, and `part` counted once in the partial-failure gauge.
    fn assert_partial(&self, now: &str, part: Part) {
        assert_eq!(up(now), Some(1.0), "{now}");
        let gauge = format!(
            "nvidia_cls_partial_refresh_failures{{org_name=\"{ORG}\",endpoint=\"{}\"}} ",
            part.endpoint()
        );
        let want: Vec<String> = data(&self.good)
            .into_iter()
            .filter(|l| !part.holds(l))
            .map(|l| {
                if l.starts_with(&gauge) {
                    format!("{gauge}1")
                } else {
                    l
                }
            })
            .collect();
        assert!(want.len() < data(&self.good).len(), "{part:?} holds series");
        assert_eq!(data(now), want, "partial refresh without {part:?}");
    }

    async fn told_once(&self, needles: &[&str]) -> String {
        told_once(&self.exporter, needles).await
    }
}

/// The exporter of a row: the sentinel key, CACHE_TTL `TTL`, SCRAPE_TIMEOUT
/// `SCRAPE_TIMEOUT`, then `extra` (which wins, as in `Exporter::start`).
fn start_exporter(base_url: &str, extra: &[(&str, &str)]) -> Exporter {
    let ttl = format!("{}ms", TTL.as_millis());
    let mut env: Vec<(&str, &str)> = vec![
        ("NVIDIA_API_KEY", KEY),
        ("CACHE_TTL", &ttl),
        ("SCRAPE_TIMEOUT", SCRAPE_TIMEOUT),
    ];
    env.extend_from_slice(extra);
    Exporter::start(base_url, &env)
}

/// One scrape that finds the cache stale, so it runs (or joins) a refresh;
/// `/healthz` is asked while it runs and must answer at once. Then every
/// check of `assert_sound`. Returns the exposition.
async fn refresh(exporter: &Exporter) -> String {
    refresh_timed(exporter).await.0
}

/// As `refresh`, with the wall time of the scrape itself.
async fn refresh_timed(exporter: &Exporter) -> (String, Duration) {
    let addr = exporter.addr;
    let scrape = tokio::spawn(async move {
        let started = Instant::now();
        let response = http(addr, "GET", "/metrics", &[]).await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let asked = Instant::now();
    let health = exporter.get("/healthz").await;
    assert_eq!(health.status, 200, "/healthz during the refresh");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "/healthz waited for the refresh: {:?}",
        asked.elapsed()
    );
    let (metrics, took) = scrape.await.expect("scrape task");
    assert_eq!(metrics.status, 200, "/metrics: {}", exporter.stderr());
    let text = metrics.text();
    assert_sound(exporter, &text).await;
    (text, took)
}

/// The lines of stderr now that hold `needle`, without waiting.
fn lines_with(exporter: &Exporter, needle: &str) -> usize {
    exporter
        .stderr()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// What holds after any fault: the process alive with no panic; `/healthz`
/// and `/metrics` answering 200; `text` (the latest exposition) passing the
/// strict grammar check and promtool; the resident set under `RSS_BOUND`;
/// every stderr line a whole log record (so no message spans two lines); the
/// API key in no output.
async fn assert_sound(exporter: &Exporter, text: &str) {
    let stderr = exporter.stderr();
    assert!(exporter.alive(), "the exporter died: {stderr}");
    assert!(
        !stderr.contains("panicked at") && !stderr.contains("internal error at"),
        "a panic: {stderr}"
    );
    assert_eq!(exporter.get("/healthz").await.status, 200);
    assert_eq!(exporter.get("/metrics").await.status, 200);
    if let Err(e) = parse_strict(text) {
        panic!("the exposition breaks the grammar: {e}");
    }
    if let Some(Err(report)) = promtool(text) {
        panic!("promtool check metrics: {report}");
    }
    let rss = exporter.rss();
    assert!(rss < RSS_BOUND, "VmRSS {} MiB", rss >> 20);
    for line in stderr.lines() {
        assert!(is_log_record(line), "not a whole log record: {line:?}");
    }
    for (what, output) in [
        ("stderr", stderr.as_str()),
        ("stdout", &exporter.stdout()),
        ("exposition", text),
    ] {
        assert!(!output.contains(KEY), "the API key is in the {what}");
    }
}

/// `2025-11-26T01:22:33.123456Z  WARN message…`: the text log format.
fn is_log_record(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp_ok = words.next().is_some_and(|stamp| {
        stamp.len() >= 20
            && stamp.as_bytes()[4] == b'-'
            && stamp.as_bytes()[10] == b'T'
            && stamp.ends_with('Z')
            && stamp.as_bytes()[..4].iter().all(u8::is_ascii_digit)
    });
    stamp_ok
        && words
            .next()
            .is_some_and(|level| matches!(level, "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR"))
}

/// The one WARN or ERROR line that holds every needle (waiting at most 5 s
/// for it, since stderr is read by a thread): a failure is told once, on one
/// line (`assert_sound` checks no record spans two).
async fn told_once(exporter: &Exporter, needles: &[&str]) -> String {
    told(exporter, needles, 1).await.remove(0)
}

/// The `n` WARN or ERROR lines that hold every needle, as `told_once`.
async fn told(exporter: &Exporter, needles: &[&str], n: usize) -> Vec<String> {
    let find = || -> Vec<String> {
        exporter
            .stderr()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    };
    let started = Instant::now();
    while find().len() < n && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = find();
    assert_eq!(
        lines.len(),
        n,
        "lines with {needles:?}: {lines:#?}\n{}",
        exporter.stderr()
    );
    for line in &lines {
        assert!(
            line.contains(" WARN ") || line.contains(" ERROR "),
            "{line}"
        );
    }
    lines
}

// ======================================================= HTTP status rows

/// A status on the group listing fails the refresh and keeps the snapshot;
/// the same status on `part` leaves only that part out. `tries` attempts
/// each (4 where retried, 1 where not).
async fn status_row(code: u16, part: Part, tries: f64) -> Row {
    let row = Row::start(&[]).await;
    status_whole(
        &row,
        code,
        tries,
        &format!("GET /virtual-groups failed: HTTP {code}"),
    )
    .await;
    status_part(&row, code, part, tries).await;
    row
}

/// The first half of a status row: `code` on the group listing fails the
/// refresh after `tries` attempts (as many requests), keeps the snapshot,
/// and the failure is told once, as `message`.
async fn status_whole(row: &Row, code: u16, tries: f64, message: &str) {
    let code_label = code.to_string();
    let listings = row.listings();
    let now = row.whole(Canned::status(code)).await;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", &code_label),
        Some(tries)
    );
    assert_eq!(
        (row.listings() - listings) as f64,
        tries,
        "requests of the group listing"
    );
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: HTTP ",
        &format!("HTTP {code}"),
    ])
    .await;
    assert_eq!(refresh_failures(&row.exporter).await, [message]);
}

/// The second half: `code` on `part` leaves only that part out after
/// `tries` attempts (as many requests), told on one WARN line. Without its
/// group's servers, the group's leases are not asked for either.
async fn status_part(row: &Row, code: u16, part: Part, tries: f64) {
    let code_label = code.to_string();
    let asked = row.cls.requests_ending_with(&part.path());
    let leases = row.cls.requests_ending_with(&Part::Leases.path());
    let partial_lines = lines_with(&row.exporter, "partial refresh");
    let now = row.sub(part, Canned::status(code)).await;
    row.assert_partial(&now, part);
    assert_eq!(
        requests_total(&now, part.endpoint(), &code_label),
        Some(tries)
    );
    assert_eq!(
        (row.cls.requests_ending_with(&part.path()) - asked) as f64,
        tries,
        "requests of {part:?}"
    );
    if let Part::Servers = part {
        assert_eq!(
            row.cls.requests_ending_with(&Part::Leases.path()),
            leases,
            "no lease listing for a group whose servers are unknown"
        );
    }
    row.told_once(&[&format!(
        " WARN partial refresh, publishing without this part: GET {} failed: HTTP {code}",
        part.path()
    )])
    .await;
    let lines = log_lines(&row.exporter, "partial refresh").await;
    assert_eq!(lines.len(), partial_lines + 1, "{lines:#?}");
}

#[tokio::test]
async fn http_400_fails_once() {
    status_row(400, Part::Servers, 1.0).await;
}

#[tokio::test]
async fn http_401_fails_once_and_says_the_key_was_rejected() {
    let row = Row::start(&[]).await;
    status_whole(
        &row,
        401,
        1.0,
        "GET /virtual-groups failed: HTTP 401: the API key was rejected; check NVIDIA_API_KEY and that it has \"Licensing State\" access",
    )
    .await;
    let told = log_lines(&row.exporter, "API key").await;
    assert_eq!(told.len(), 1, "{}", row.exporter.stderr());
    status_part(&row, 401, Part::Pools, 1.0).await;
    row.told_once(&[
        "GET /virtual-groups failed: HTTP 401: the API key was rejected; check NVIDIA_API_KEY",
    ])
    .await;
}

#[tokio::test]
async fn http_403_fails_once_and_says_the_key_lacks_access() {
    let row = Row::start(&[]).await;
    status_whole(
        &row,
        403,
        1.0,
        "GET /virtual-groups failed: HTTP 403: the API key lacks access; it needs the \"Licensing State\" access type for this org",
    )
    .await;
    let told = log_lines(&row.exporter, "API key").await;
    assert_eq!(told.len(), 1, "{}", row.exporter.stderr());
    status_part(&row, 403, Part::Leases, 1.0).await;
    row.told_once(&["GET /virtual-groups failed: HTTP 403: the API key lacks access"])
        .await;
}

#[tokio::test]
async fn http_404_fails_once() {
    status_row(404, Part::Pools, 1.0).await;
}

#[tokio::test]
async fn http_500_is_retried() {
    let row = status_row(500, Part::Leases, ATTEMPTS).await;
    status_part(&row, 500, Part::Servers, ATTEMPTS).await;
}

#[tokio::test]
async fn http_502_is_retried() {
    status_row(502, Part::Pools, ATTEMPTS).await;
}

#[tokio::test]
async fn http_503_is_retried() {
    status_row(503, Part::Servers, ATTEMPTS).await;
}

#[tokio::test]
async fn http_504_is_retried() {
    status_row(504, Part::Leases, ATTEMPTS).await;
}

#[tokio::test]
async fn http_429_without_retry_after_is_retried_with_backoff() {
    status_row(429, Part::Servers, ATTEMPTS).await;
}

/// Retry-After, in seconds or as an HTTP date, on a 429 or a 503: the retry
/// waits as told and succeeds; a wait past SCRAPE_TIMEOUT fails the refresh
/// at once; values no server should send cost one refresh at most; 0 retries
/// at once, four attempts at most. Debug logs: each retry is logged with
/// its wait.
#[tokio::test]
async fn retry_after_waits_as_told_or_fails_at_once() {
    let mut row = Row::start(&[("LOG_LEVEL", "debug")]).await;
    // The time between the last two requests of the group listing.
    let last_gap = |row: &Row| -> Duration {
        let at = row.cls.arrivals("/virtual-groups");
        at[at.len() - 1] - at[at.len() - 2]
    };

    // A 503 once, with Retry-After: 1: the retry comes a second later.
    let asked = row.listings();
    let now = row
        .whole(
            Canned::status(503)
                .with_times(1)
                .with_header("retry-after", "1"),
        )
        .await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(data(&now), data(&row.good));
    assert_eq!(row.listings() - asked, 2);
    let gap = last_gap(&row);
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_millis(1300),
        "{gap:?}"
    );
    assert_eq!(
        retries(&row.exporter).await,
        [("/virtual-groups".to_owned(), 1, 1000)]
    );

    // Once, with Retry-After: 1: the retry comes a second later and succeeds.
    let now = row
        .whole(
            Canned::status(429)
                .with_header("retry-after", "1")
                .with_times(1),
        )
        .await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(data(&now), data(&row.good));
    let gap = last_gap(&row);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(requests_total(&now, "virtual_groups", "429"), Some(1.0));
    row.good = now; // The snapshot the next failures keep.

    // Retry-After beyond SCRAPE_TIMEOUT: no waiting, the refresh fails now.
    let started = Instant::now();
    let now = row
        .whole(Canned::status(429).with_header("retry-after", "3600"))
        .await;
    assert!(started.elapsed() < TTL + Duration::from_secs(1));
    row.assert_kept(&now, 1.0);
    assert_eq!(requests_total(&now, "virtual_groups", "429"), Some(2.0));
    row.told_once(&["refresh failed: GET /virtual-groups failed: HTTP 429"])
        .await;

    // Values no server should send: the largest number of seconds, a date
    // past any clock, a date in the past. None may cost more than one refresh.
    let mut failures = 1.0;
    let mut requests = 2.0;
    for (value, tries) in [
        ("18446744073709551615", 1.0),
        ("Fri, 31 Dec 99999999999999999 23:59:59 GMT", ATTEMPTS),
        ("Thu, 01 Jan 1970 00:00:00 GMT", ATTEMPTS),
    ] {
        let now = row
            .whole(Canned::status(429).with_header("retry-after", value))
            .await;
        failures += 1.0;
        requests += tries;
        row.assert_kept(&now, failures);
        assert_eq!(
            requests_total(&now, "virtual_groups", "429"),
            Some(requests),
            "{value}"
        );
    }

    // On a sub-resource, Retry-After: 0 retries at once, then leaves it out.
    let now = row
        .sub(
            Part::Leases,
            Canned::status(429).with_header("retry-after", "0"),
        )
        .await;
    row.assert_partial(&now, Part::Leases);
    assert_eq!(requests_total(&now, "leases", "429"), Some(ATTEMPTS));

    // Once, with an HTTP date 2 s ahead: whole seconds, so a wait of 1 to
    // 2 s, never the backoff of at most 400 ms.
    let logged = retries(&row.exporter).await.len();
    let asked = row.listings();
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let now = row
        .whole(
            Canned::status(429)
                .with_times(1)
                .with_header("retry-after", &date),
        )
        .await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(row.listings() - asked, 2);
    let gap = last_gap(&row);
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_millis(2300),
        "{gap:?}"
    );
    let logged_now = retries(&row.exporter).await;
    assert_eq!(logged_now.len(), logged + 1);
    assert!(
        [1000, 2000].contains(&logged_now[logged].2),
        "{logged_now:?}"
    );
    row.good = now;

    // A 503 whose Retry-After (30 s) is past SCRAPE_TIMEOUT: one request,
    // the refresh fails at once with the status.
    let asked = row.listings();
    let now = row
        .whole(Canned::status(503).with_header("retry-after", "30"))
        .await;
    assert!(
        row.scrape_took() < Duration::from_secs(1),
        "{:?}",
        row.scrape_took()
    );
    failures += 1.0;
    row.assert_kept(&now, failures);
    assert_eq!(row.listings() - asked, 1);
    let told = refresh_failures(&row.exporter).await;
    assert_eq!(told.len(), failures as usize, "{told:#?}");
    assert_eq!(told[told.len() - 1], "GET /virtual-groups failed: HTTP 503");

    // Retry-After: 0 on the group listing: four attempts at most.
    let before = requests_total(&now, "virtual_groups", "429").unwrap();
    let asked = row.listings();
    let now = row
        .whole(Canned::status(429).with_header("retry-after", "0"))
        .await;
    failures += 1.0;
    row.assert_kept(&now, failures);
    assert_eq!(row.listings() - asked, 4);
    assert_eq!(
        requests_total(&now, "virtual_groups", "429"),
        Some(before + ATTEMPTS)
    );
}

// ===================================================== transport rows

#[tokio::test]
async fn connection_refused_is_retried_until_the_deadline_then_keeps_the_snapshot() {
    let row = Row::start(&[]).await;
    row.cls.shutdown();
    let now = row.next().await;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "error"),
        Some(ATTEMPTS)
    );
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: ",
        "Connection refused",
    ])
    .await;

    // Under a deadline of 1 s: retried while time is left, not past it. The
    // first backoff is at most 400 ms: a second attempt always fits.
    let (exporter, now, took) = first_refresh_within_1s(&row.cls.base_url()).await;
    assert!(took < Duration::from_millis(1300), "{took:?}");
    assert_eq!(up(&now), Some(0.0));
    let attempts = requests_total(&now, "virtual_groups", "error").unwrap();
    assert!((2.0..=4.0).contains(&attempts), "{attempts}");
    let failures = refresh_failures(&exporter).await;
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].starts_with("GET /virtual-groups failed: ")
            && failures[0].contains("onnection refused"),
        "{}",
        failures[0]
    );
}

/// A second exporter on `base_url` with SCRAPE_TIMEOUT 1s, and its first
/// refresh (no snapshot before it): the exposition and the scrape's wall time.
async fn first_refresh_within_1s(base_url: &str) -> (Exporter, String, Duration) {
    let exporter = start_exporter(base_url, &[("SCRAPE_TIMEOUT", "1s")]);
    let (text, took) = refresh_timed(&exporter).await;
    (exporter, text, took)
}

#[tokio::test]
async fn dns_failure_is_retried_then_serves_up_zero_without_data() {
    // No good refresh can come first: the name never resolves.
    let exporter = start_exporter("http://cls.fault-matrix.invalid:9", &[]);
    let now = refresh(&exporter).await;
    assert_eq!(up(&now), Some(0.0));
    assert_eq!(data(&now), Vec::<String>::new(), "no snapshot, no data");
    assert_eq!(
        requests_total(&now, "virtual_groups", "error"),
        Some(ATTEMPTS)
    );
    assert_eq!(
        one(&now, "nvidia_cls_refreshes_total", &[("result", "failure")]),
        Some(1.0)
    );
    told_once(
        &exporter,
        &["refresh failed: GET /virtual-groups failed: ", "dns error"],
    )
    .await;
}

#[tokio::test]
async fn tls_handshake_failure_keeps_the_snapshot() {
    let cls = FakeCls::start(good_org(), KEY).await;
    let trusted = Pki::new();
    let front = Front::start(cls.addr(), Mode::Tls(trusted.server_config())).await;
    let ca = write_file(&scratch_dir("fault-matrix-ca"), "ca.pem", &trusted.ca_pem);
    let row = Row::start_at(
        cls,
        &format!("https://{}", front.addr()),
        &[("NVIDIA_API_CA_FILE", ca.to_str().unwrap())],
    )
    .await;
    // The same address now presents a certificate of a CA nobody trusts.
    front.set_mode(Mode::Tls(Pki::new().server_config()));
    let now = row.next().await;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "error"),
        Some(ATTEMPTS)
    );
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: ",
        "invalid peer certificate",
    ])
    .await;
}

#[tokio::test]
async fn hostile_bytes_instead_of_http_keep_the_snapshot() {
    let cls = FakeCls::start(good_org(), KEY).await;
    let front = Front::start(cls.addr(), Mode::Plain).await;
    let row = Row::start_at(cls, &format!("http://{}", front.addr()), &[]).await;
    front.set_mode(Mode::Garbage(
        b"\x00\xff\xfeSSH-2.0-x\r\n}{#\"\\\n\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}".to_vec(),
    ));
    let now = row.next().await;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "error"),
        Some(ATTEMPTS)
    );
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: ",
        "invalid HTTP",
    ])
    .await;
}

/// A stall: the refresh ends at SCRAPE_TIMEOUT (1 s here) whatever the
/// server does, /healthz answers meanwhile (see `refresh`), and a stalled
/// sub-resource costs only itself.
async fn stall_row(canned: Canned, part: Part) {
    let row = Row::start(&[("SCRAPE_TIMEOUT", "1s")]).await;
    let started = Instant::now();
    let now = row.whole(canned.clone()).await;
    let took = started.elapsed() - TTL;
    assert!(took < Duration::from_millis(1600), "{took:?}");
    assert!(
        row.scrape_took() < Duration::from_millis(1300),
        "{:?}",
        row.scrape_took()
    );
    row.assert_kept(&now, 1.0);
    assert_eq!(requests_total(&now, "virtual_groups", "error"), Some(1.0));
    let duration = one(&now, "nvidia_cls_scrape_duration_seconds", &[]).unwrap();
    assert!((0.8..=1.1).contains(&duration), "{duration}");
    row.told_once(&["refresh failed: GET /virtual-groups failed: timed out"])
        .await;
    assert_eq!(
        refresh_failures(&row.exporter).await,
        ["GET /virtual-groups failed: timed out"]
    );

    let now = row.sub(part, canned).await;
    assert!(
        row.scrape_took() < Duration::from_millis(1300),
        "{:?}",
        row.scrape_took()
    );
    row.assert_partial(&now, part);
    assert_eq!(requests_total(&now, part.endpoint(), "error"), Some(1.0));
    row.told_once(&[&format!(
        "partial refresh, publishing without this part: GET {} failed: timed out",
        part.path()
    )])
    .await;
    let lines = log_lines(&row.exporter, "partial refresh").await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
}

#[tokio::test]
async fn stall_before_headers_ends_at_the_deadline() {
    stall_row(
        Canned::body(200, "{}").with_delay(Duration::from_secs(60)),
        Part::Servers,
    )
    .await;
}

#[tokio::test]
async fn stall_mid_body_ends_at_the_deadline() {
    stall_row(
        Canned::body(200, r#"{"virtualGroups":[{"id":1,"#)
            .with_header("content-length", "100000")
            .with_tail(Tail::Stall(Duration::from_secs(60))),
        Part::Leases,
    )
    .await;
}

#[tokio::test]
async fn a_body_that_trickles_forever_ends_at_the_deadline() {
    // One space every 20 ms, chunked (a minute's worth at most).
    stall_row(
        Canned::body(200, r#"{"virtualGroups":["#).with_tail(Tail::trickle(
            &b" "[..],
            Duration::from_millis(20),
            3000,
        )),
        Part::Pools,
    )
    .await;
}

#[tokio::test]
async fn truncated_body_is_retried_then_keeps_the_snapshot() {
    // Promises 1000 bytes, sends 26, closes.
    let truncated = Canned::body(200, r#"{"virtualGroups":[{"id":1,"#)
        .with_header("content-length", "1000")
        .with_tail(Tail::Close);
    let row = Row::start(&[]).await;
    let now = row.whole(truncated.clone()).await;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "200"),
        Some(1.0 + ATTEMPTS)
    );
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: reading the body: ",
        "end of file before message length reached",
    ])
    .await;

    let now = row.sub(Part::Pools, truncated.clone()).await;
    row.assert_partial(&now, Part::Pools);
    // S1 and S2 in the good refresh, S1 and four times S2 now.
    assert_eq!(
        requests_total(&now, "license_pools", "200"),
        Some(3.0 + ATTEMPTS)
    );
    row.told_once(&[
        &format!("GET {} failed: reading the body: ", Part::Pools.path()),
        "end of file before message length reached",
    ])
    .await;

    // Under a deadline of 1 s: retried while time is left, not past it.
    row.cls.set_override("/virtual-groups", truncated);
    let (exporter, now, took) = first_refresh_within_1s(&row.cls.base_url()).await;
    row.cls.clear_overrides();
    assert!(took < Duration::from_millis(1300), "{took:?}");
    assert_eq!(up(&now), Some(0.0));
    let attempts = requests_total(&now, "virtual_groups", "200").unwrap();
    assert!(
        (2.0..=4.0).contains(&attempts),
        "a transport error is retried: {attempts}"
    );
    let failures = refresh_failures(&exporter).await;
    assert_eq!(failures.len(), 1);
    // The last attempt either fails on its own or is cut by the deadline
    // (on a loaded machine the deadline may come first): both are reported.
    assert!(
        (failures[0].starts_with("GET /virtual-groups failed: reading the body: ")
            && failures[0].contains("end of file before message length reached"))
            || failures[0] == "GET /virtual-groups failed: timed out",
        "{}",
        failures[0]
    );
}

/// A body of `mib` MiB of JSON whitespace after `head`, with its length
/// declared (`declared`) or sent chunked (`!declared`).
fn big_body(head: &str, mib: u64, declared: bool) -> Canned {
    let total = mib << 20;
    let canned = Canned::body(200, head).with_tail(Tail::repeat(
        vec![b' '; 64 << 10],
        total - head.len() as u64,
    ));
    if declared {
        canned.with_header("content-length", &total.to_string())
    } else {
        canned
    }
}

#[tokio::test]
async fn a_body_declared_past_the_cap_is_refused_from_its_content_length() {
    let mut row = Row::start(&[]).await;
    let started = Instant::now();
    let now = row
        .whole(big_body(r#"{"virtualGroups":["#, 100, true))
        .await;
    let took = started.elapsed() - TTL;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "200"),
        Some(2.0),
        "not retried"
    );
    row.told_once(&[&format!(
        "refresh failed: GET /virtual-groups failed: response body larger than {BODY_CAP} bytes"
    )])
    .await;
    let peak = row.exporter.peak_rss();
    eprintln!(
        "100 MiB body: refresh {took:?}, peak RSS {} MiB, RSS {} MiB",
        peak >> 20,
        row.exporter.rss() >> 20
    );
    assert!(took < Duration::from_secs(1), "refused up front: {took:?}");
    assert!(peak < RSS_BOUND, "peak RSS {} MiB", peak >> 20);

    let now = row
        .sub(Part::Leases, big_body(r#"{"clients":["#, 100, true))
        .await;
    row.assert_partial(&now, Part::Leases);
    row.told_once(&[&format!(
        "GET {} failed: response body larger than {BODY_CAP} bytes",
        Part::Leases.path()
    )])
    .await;
    row.good = now; // The snapshot the next failure keeps.

    // 4 GiB declared: refused the same way, memory bounded.
    let asked = row.listings();
    let now = row
        .whole(big_body(r#"{"virtualGroups":["#, 4 << 10, true))
        .await;
    let peak = row.exporter.peak_rss();
    eprintln!(
        "4 GiB body: scrape {:?}, peak RSS {} MiB",
        row.scrape_took(),
        peak >> 20
    );
    row.assert_kept(&now, 2.0);
    assert_eq!(row.listings() - asked, 1, "too large is not retried");
    let message = format!("GET /virtual-groups failed: response body larger than {BODY_CAP} bytes");
    assert_eq!(refresh_failures(&row.exporter).await, [message.as_str(); 2]);
    assert!(
        row.scrape_took() < Duration::from_secs(5),
        "{:?}",
        row.scrape_took()
    );
    assert!(peak < PEAK_BOUND, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
async fn endless_chunked_body_is_cut_at_the_cap() {
    let row = Row::start(&[]).await;
    let endless = |head: &str| big_body(head, 4 << 10, false);
    let started = Instant::now();
    let now = row.whole(endless(r#"{"virtualGroups":["#)).await;
    let took = started.elapsed() - TTL;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "200"),
        Some(2.0),
        "not retried"
    );
    row.told_once(&[&format!(
        "refresh failed: GET /virtual-groups failed: response body larger than {BODY_CAP} bytes"
    )])
    .await;
    assert_eq!(
        refresh_failures(&row.exporter).await,
        [format!(
            "GET /virtual-groups failed: response body larger than {BODY_CAP} bytes"
        )]
    );
    let peak = row.exporter.peak_rss();
    eprintln!(
        "endless body: refresh {took:?}, peak RSS {} MiB, RSS {} MiB",
        peak >> 20,
        row.exporter.rss() >> 20
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(peak < PEAK_BOUND, "peak RSS {} MiB", peak >> 20);

    let now = row.sub(Part::Pools, endless(r#"{"licensePools":["#)).await;
    row.assert_partial(&now, Part::Pools);
    row.told_once(&[&format!(
        "GET {} failed: response body larger than {BODY_CAP} bytes",
        Part::Pools.path()
    )])
    .await;
    assert!(row.exporter.peak_rss() < PEAK_BOUND);
}

// ========================================================== payload rows

#[tokio::test]
async fn invalid_json_keeps_the_snapshot_or_leaves_the_part_out() {
    let row = Row::start(&[]).await;
    let now = row.whole(Canned::body(200, "{not json")).await;
    row.assert_kept(&now, 1.0);
    assert_eq!(
        requests_total(&now, "virtual_groups", "200"),
        Some(2.0),
        "not retried"
    );
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: response is not valid JSON",
        "key must be a string",
    ])
    .await;

    // Bytes that are not UTF-8 inside a string.
    let now = row
        .whole(Canned::bytes(
            200,
            &b"{\"virtualGroups\":[{\"id\":1,\"name\":\"\xff\xfe\"}]}"[..],
        ))
        .await;
    row.assert_kept(&now, 2.0);
    row.told_once(&[
        "refresh failed: GET /virtual-groups failed: response is not valid JSON",
        "invalid unicode code point",
    ])
    .await;

    let now = row
        .sub(
            Part::Leases,
            Canned::body(200, r#"{"clients":[{"leases":["#),
        )
        .await;
    row.assert_partial(&now, Part::Leases);
    row.told_once(&[
        &format!(
            "GET {} failed: response is not valid JSON",
            Part::Leases.path()
        ),
        "EOF while parsing",
    ])
    .await;
}

#[tokio::test]
async fn json_of_the_wrong_shape_keeps_the_snapshot_or_leaves_the_part_out() {
    let row = Row::start(&[]).await;
    let mut failures = 0.0;
    for body in [
        "[]",
        r#""virtualGroups""#,
        "42",
        r#"{"virtualGroups":"nope"}"#,
        r#"{"virtualGroups":{"id":1,"name":"g"}}"#,
    ] {
        let now = row.whole(Canned::body(200, body)).await;
        failures += 1.0;
        row.assert_kept(&now, failures);
    }
    told(
        &row.exporter,
        &["GET /virtual-groups failed: ", "expected a JSON object"],
        3,
    )
    .await;
    told(
        &row.exporter,
        &[
            "GET /virtual-groups failed: ",
            "virtualGroups is not a list",
        ],
        2,
    )
    .await;

    let now = row
        .sub(
            Part::Servers,
            Canned::body(200, r#"{"licenseServers":{"id":"s"}}"#),
        )
        .await;
    row.assert_partial(&now, Part::Servers);
    row.told_once(&[
        &format!("GET {} failed: ", Part::Servers.path()),
        "licenseServers is not a list",
    ])
    .await;
}

#[tokio::test]
async fn wrong_types_in_fields_are_read_leniently() {
    let row = Row::start(&[]).await;
    row.cls.set_org(json!({ "org": ORG, "virtualGroups": [ {
        "id": 7.0, "name": 12345,
        "entitlements": [
            "not an object",
            { "id": 99, "entitlementProductKeys": { "not": "a list" } },
            { "id": ["x"], "entitlementProductKeys": [ { "entitlementFeatures": [ {
                "featureName": ["GRID"], "featureVersion": { "v": 1 }, "productName": true,
                "licenseType": 3.5, "totalQuantity": "12", "inUseQuantity": true,
                "unassignedQuantity": [1, 2], "startDate": 20250101, "endDate": { "y": 2027 }
            } ] } ] }
        ],
        "licenseServers": [ {
            "id": 555, "name": false, "status": null, "deployedOn": ["CLOUD"],
            "leasingMode": { "m": 1 }, "serviceInstanceId": 42,
            "virtualGroupId": null, "virtualGroupName": ["n"],
            "licenseServerFeatures": [ 17, {
                "id": 1, "featureName": "F", "productName": 2, "licenseType": "T",
                "totalQuantity": "10.5"
            } ],
            "licensePools": [ { "id": 3, "name": 4, "licensePoolFeatures": [
                { "licenseServerFeatureId": 1, "totalAllotment": "12.5", "inUse": [1] },
                "junk"
            ] } ]
        } ],
        "leases": { "42": [ {
            "leases": [
                { "leaseId": 17, "featureName": 5, "leaseCount": "3", "licenseAllotmentFeatureId": 1 },
                { "leaseId": "l2", "leaseCount": "many" }
            ],
            "additionalProperties": { "license_server_id": 555, "license_server_name": [] }
        } ] }
    } ] }));
    let now = row.next().await;
    assert_eq!(up(&now), Some(1.0));
    let group = [("virtual_group_id", "7"), ("virtual_group_name", "12345")];
    let ent = [
        group[0],
        group[1],
        ("feature_name", "unknown"),
        ("feature_version", "unknown"),
        ("product_name", "true"),
        ("license_type", "3.5"),
    ];
    assert_eq!(
        one(&now, "nvidia_cls_entitlement_total_quantity", &ent),
        Some(12.0)
    );
    assert_eq!(
        one(&now, "nvidia_cls_entitlement_in_use_quantity", &ent),
        Some(0.0)
    );
    assert_eq!(
        one(&now, "nvidia_cls_entitlement_unassigned_quantity", &ent),
        Some(0.0)
    );
    assert_eq!(
        find(&now, "nvidia_cls_entitlement_total_quantity", &[]).len(),
        1
    );
    assert!(find(&now, "nvidia_cls_entitlement_start_timestamp_seconds", &[]).is_empty());
    let server = [
        group[0],
        group[1],
        ("server_id", "555"),
        ("server_name", "false"),
    ];
    let mut info = server.to_vec();
    info.extend([
        ("status", "unknown"),
        ("deployed_on", "unknown"),
        ("leasing_mode", "unknown"),
    ]);
    assert_eq!(
        one(&now, "nvidia_cls_license_server_info", &info),
        Some(1.0)
    );
    let feature = |name: &'static str, product: &'static str, kind: &'static str| {
        let mut labels = server.to_vec();
        labels.extend([
            ("feature_name", name),
            ("product_name", product),
            ("license_type", kind),
        ]);
        labels
    };
    let f = feature("F", "2", "T");
    assert_eq!(
        one(&now, "nvidia_cls_license_server_feature_total_quantity", &f),
        Some(10.5)
    );
    assert_eq!(
        find(
            &now,
            "nvidia_cls_license_server_feature_total_quantity",
            &[]
        )
        .len(),
        1
    );
    for (labels, leases) in [
        (f.clone(), 0.0),
        (feature("5", "2", "T"), 3.0),
        (feature("unknown", "unknown", "unknown"), 1.0),
    ] {
        assert_eq!(
            one(
                &now,
                "nvidia_cls_license_server_feature_active_leases",
                &labels
            ),
            Some(leases),
            "{labels:?}"
        );
    }
    assert_eq!(
        one(&now, "nvidia_cls_license_server_active_leases", &server),
        Some(4.0)
    );
    let mut pool = f.clone();
    pool.extend([("pool_id", "3"), ("pool_name", "4")]);
    assert_eq!(
        one(
            &now,
            "nvidia_cls_license_pool_feature_allotment_quantity",
            &pool
        ),
        Some(12.5)
    );
    assert_eq!(
        one(
            &now,
            "nvidia_cls_license_pool_feature_in_use_quantity",
            &pool
        ),
        Some(0.0)
    );
    for endpoint in [
        "virtual_groups",
        "license_servers",
        "license_pools",
        "leases",
    ] {
        assert_eq!(partial(&now, endpoint), Some(0.0), "{endpoint}");
    }
}

#[tokio::test]
async fn empty_lists_publish_an_empty_org() {
    let row = Row::start(&[]).await;
    // The bookkeeping series of a snapshot with nothing in it.
    let empty: Vec<String> = [
        "license_servers",
        "license_pools",
        "leases",
        "virtual_groups",
    ]
    .iter()
    .map(|e| {
        format!("nvidia_cls_partial_refresh_failures{{org_name=\"{ORG}\",endpoint=\"{e}\"}} 0")
    })
    .collect();
    let mut empty_org = vec![format!(
        "nvidia_cls_unattributed_leases{{org_name=\"{ORG}\"}} 0"
    )];
    empty_org.extend(empty);
    empty_org.sort();
    let sorted = |text: &str| {
        let mut d = data(text);
        d.sort();
        d
    };

    row.cls.set_org(json!({ "org": ORG, "virtualGroups": [] }));
    let now = row.next().await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(sorted(&now), empty_org, "what left the API leaves /metrics");

    // Groups whose every list is empty.
    row.cls.set_org(json!({ "org": ORG, "virtualGroups": [
        { "id": 1, "name": "g1", "entitlements": [], "licenseServers": [], "leases": {} },
        { "id": 2, "name": "g2", "entitlements": [ { "id": "e", "entitlementProductKeys": [] } ],
          "licenseServers": [ { "id": "s", "name": "n", "serviceInstanceId": "si",
                                "licenseServerFeatures": [], "licensePools": [] } ],
          "leases": { "si": [ { "leases": [] } ] } }
    ] }));
    let now = row.next().await;
    assert_eq!(up(&now), Some(1.0));
    let server = [
        ("virtual_group_id", "2"),
        ("virtual_group_name", "g2"),
        ("server_id", "s"),
        ("server_name", "n"),
    ];
    assert_eq!(
        one(&now, "nvidia_cls_license_server_active_leases", &server),
        Some(0.0)
    );
    assert_eq!(
        find(&now, "nvidia_cls_license_server_info", &server).len(),
        1
    );
    let mut rest = sorted(&now);
    rest.retain(|l| !l.starts_with("nvidia_cls_license_server_"));
    assert_eq!(rest, empty_org);
}

#[tokio::test]
async fn null_everywhere_is_read_as_nothing() {
    let row = Row::start(&[]).await;
    let now = row.whole(Canned::body(200, "null")).await;
    row.assert_kept(&now, 1.0);
    row.told_once(&["GET /virtual-groups failed: ", "expected a JSON object"])
        .await;

    // A null list is an empty one (a missing field takes its zero value).
    let now = row
        .whole(Canned::body(
            200,
            r#"{"virtualGroups":null,"paginationInfo":null}"#,
        ))
        .await;
    assert_eq!(up(&now), Some(1.0));
    assert!(find(&now, "nvidia_cls_entitlement_total_quantity", &[]).is_empty());

    let nulls = json!({
        "featureName": null, "featureVersion": null, "productName": null, "licenseType": null,
        "startDate": null, "endDate": null, "totalQuantity": null, "inUseQuantity": null,
        "unassignedQuantity": null
    });
    row.cls.set_org(json!({ "org": ORG, "virtualGroups": [
        null,
        { "id": null, "name": null, "entitlements": [ { "id": null, "emsEntitlementId": null,
          "entitlementProductKeys": [ null, { "entitlementFeatures": [ null, nulls ] } ] } ],
          "licenseServers": null, "leases": null },
        { "id": 2, "name": null, "entitlements": null,
          "licenseServers": [ null, { "id": null, "name": null, "status": null,
              "deployedOn": null, "leasingMode": null, "serviceInstanceId": null,
              "virtualGroupId": null, "virtualGroupName": null,
              "licenseServerFeatures": [ null, { "id": null, "featureName": null,
                  "productName": null, "licenseType": null, "totalQuantity": null } ],
              "licensePools": null } ],
          "leases": null }
    ] }));
    let now = row.next().await;
    assert_eq!(up(&now), Some(1.0));
    let unknown = [
        ("virtual_group_id", "unknown"),
        ("virtual_group_name", "unknown"),
        ("feature_name", "unknown"),
        ("feature_version", "unknown"),
        ("product_name", "unknown"),
        ("license_type", "unknown"),
    ];
    assert_eq!(
        one(&now, "nvidia_cls_entitlement_total_quantity", &unknown),
        Some(0.0)
    );
    let server = [
        ("virtual_group_id", "2"),
        ("virtual_group_name", "unknown"),
        ("server_id", "unknown"),
        ("server_name", "unknown"),
        ("status", "unknown"),
        ("deployed_on", "unknown"),
        ("leasing_mode", "unknown"),
    ];
    assert_eq!(
        one(&now, "nvidia_cls_license_server_info", &server),
        Some(1.0)
    );
    // A group or server without an id cannot be asked about: no request
    // with an empty path segment is made (a server could read it as another
    // resource); the part counts as a partial failure and the log says why.
    assert_eq!(partial(&now, "license_servers"), Some(1.0));
    assert_eq!(partial(&now, "license_pools"), Some(1.0));
    let no_id = "failed: the request cannot be made: the id is empty, \".\" or \"..\"";
    row.told_once(&[
        "partial refresh",
        "GET /virtual-groups/\"\"/license-servers",
        no_id,
    ])
    .await;
    row.told_once(&[
        "partial refresh",
        "GET /virtual-groups/2/license-servers/\"\"/license-pools",
        no_id,
    ])
    .await;
    let empty_segments = row
        .cls
        .requests()
        .iter()
        .filter(|r| r.path.contains("//"))
        .count();
    assert_eq!(empty_segments, 0, "no request with an empty path segment");
}

#[tokio::test]
async fn extreme_numbers_are_exported_in_the_exposition_spelling() {
    let mut row = Row::start(&[]).await;
    let feature = |name: &str, total: Value, in_use: Value, unassigned: Value| {
        json!({ "featureName": name, "featureVersion": "1", "productName": "P",
                "licenseType": "T", "totalQuantity": total, "inUseQuantity": in_use,
                "unassignedQuantity": unassigned })
    };
    let mut dated = feature("dated", json!(1), json!(0), json!(0));
    dated["startDate"] = json!("0000-01-01");
    dated["endDate"] = json!("9999-12-31");
    let org: Value = serde_json::from_str(
        &json!({ "org": ORG, "virtualGroups": [ {
            "id": 1, "name": "g",
            "entitlements": [ { "emsEntitlementId": "e", "entitlementProductKeys": [ { "emsProductKeyId": "k", "entitlementFeatures": [
                feature("inf", json!(1e308), json!(-1e308), json!("NaN")),
                feature("inf", json!(1e308), json!(-1e308), json!("Infinity")),
                feature("neg", json!(-5), json!("1e999"), json!("-0")),
                feature("big", json!("BIG_INT"), json!(u64::MAX), json!(i64::MIN)),
                feature("tiny", json!(1e-300), json!(0.1), json!("1e308")),
                dated
            ] } ] } ],
            "licenseServers": [ {
                "id": "s", "name": "n", "serviceInstanceId": "si",
                "licenseServerFeatures": [ { "id": "f", "featureName": "F", "productName": "P",
                    "licenseType": "T", "totalQuantity": 1.7976931348623157e308 } ],
                "licensePools": [ { "id": "p", "name": "p", "licensePoolFeatures": [
                    { "licenseServerFeatureId": "f", "totalAllotment": "-1.5e-7", "inUse": 9007199254740993u64 }
                ] } ]
            } ],
            "leases": { "si": [ { "leases": [
                { "leaseId": "a", "featureName": "F", "leaseCount": 1e308, "licenseAllotmentFeatureId": "f" },
                { "leaseId": "b", "featureName": "F", "leaseCount": 1e308, "licenseAllotmentFeatureId": "f" },
                { "leaseId": "c", "featureName": "F", "leaseCount": -7, "licenseAllotmentFeatureId": "f" }
            ], "additionalProperties": { "license_server_id": "s" } } ] }
        } ] })
        .to_string()
        .replace("\"BIG_INT\"", "123456789012345678901234567890"),
    )
    .unwrap();
    row.cls.set_org(org);
    let now = row.next().await;
    assert_eq!(up(&now), Some(1.0));
    let line = |name: &str, feature: &str| -> String {
        let prefix = format!(
            "{name}{{org_name=\"{ORG}\",virtual_group_id=\"1\",virtual_group_name=\"g\",ems_entitlement_id=\"e\",ems_product_key_id=\"k\",feature_name=\"{feature}\",feature_version=\"1\",product_name=\"P\",license_type=\"T\"}} "
        );
        let found = now
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{prefix}"));
        found[prefix.len()..].to_owned()
    };
    let total = "nvidia_cls_entitlement_total_quantity";
    let in_use = "nvidia_cls_entitlement_in_use_quantity";
    let unassigned = "nvidia_cls_entitlement_unassigned_quantity";
    for (name, feature, want) in [
        (total, "inf", "+Inf"),
        (in_use, "inf", "-Inf"),
        (unassigned, "inf", "0"),
        (total, "neg", "-5"),
        (in_use, "neg", "0"),
        (unassigned, "neg", "0"),
        (total, "big", "1.2345678901234568e29"),
        (in_use, "big", "1.8446744073709552e19"),
        (unassigned, "big", "-9.223372036854776e18"),
        (total, "tiny", "1e-300"),
        (in_use, "tiny", "0.1"),
        (unassigned, "tiny", "1e308"),
    ] {
        assert_eq!(line(name, feature), want, "{name} {feature}");
    }
    let dated = [("feature_name", "dated"), ("ems_entitlement_id", "e")];
    assert_eq!(
        one(
            &now,
            "nvidia_cls_entitlement_start_timestamp_seconds",
            &dated
        ),
        Some(-62_167_219_200.0)
    );
    assert_eq!(
        one(&now, "nvidia_cls_entitlement_end_timestamp_seconds", &dated),
        None,
        "year 9999 never expires"
    );
    let server = [("server_id", "s")];
    assert_eq!(
        one(
            &now,
            "nvidia_cls_license_server_feature_total_quantity",
            &server
        ),
        Some(f64::MAX)
    );
    assert_eq!(
        one(&now, "nvidia_cls_license_server_active_leases", &server),
        Some(f64::INFINITY)
    );
    assert_eq!(
        one(
            &now,
            "nvidia_cls_license_pool_feature_allotment_quantity",
            &server
        ),
        Some(-1.5e-7)
    );
    assert_eq!(
        one(
            &now,
            "nvidia_cls_license_pool_feature_in_use_quantity",
            &server
        ),
        Some(9_007_199_254_740_992.0)
    );

    // Page numbers and totals at the ends of the range.
    row.cls.set_org(good_org());
    for info in [
        json!({ "pageNumber": i64::MAX, "pageSize": 1e308, "totalPages": 1e308 }),
        json!({ "pageNumber": 1e308, "totalRecords": -1 }),
        json!({ "pageNumber": i64::MIN, "pageSize": -1, "totalPages": i64::MAX }),
    ] {
        let body = json!({ "virtualGroups": group_listing(&good_org()), "paginationInfo": info });
        let now = row.whole(Canned::body(200, body.to_string())).await;
        assert_eq!(up(&now), Some(1.0), "{info}");
        assert_eq!(data(&now), data(&row.good), "{info}");
        row.good = now; // The snapshot a failure keeps.
    }

    // A number beyond f64 makes the answer unreadable as a whole.
    let now = row
        .whole(Canned::body(
            200,
            r#"{"virtualGroups":[{"id":1,"entitlements":[{"entitlementProductKeys":[{"entitlementFeatures":[{"totalQuantity":1e400}]}]}]}]}"#,
        ))
        .await;
    row.assert_kept(&now, 1.0);
    row.told_once(&["GET /virtual-groups failed: ", "number out of range"])
        .await;
}

/// Quotes, backslashes, a newline, braces, `#`, NUL, RTL and zero-width
/// characters, an escaped `\n` that is not a newline, and non-Latin text.
const HOSTILE: &str = "q\"uo\\te \\n new\nline }{ # HELP x 1\0nul \u{202E}rtl\u{200F} zw\u{200B}\u{200D}\u{FEFF} 漢字 😀 ,a=\"b\"";

#[tokio::test]
async fn hostile_strings_reach_every_label_escaped() {
    // The org name is a label source too (through the configuration).
    let org_name = "lic-\"q\\b}{#\u{202E}\u{200B} 漢\nx";
    let long = |tag: &str| format!("{tag}:{HOSTILE}{}", "x".repeat(64 << 10));
    let short = |tag: &str| format!("{tag}:{HOSTILE}");
    let (g_id, s_id, pool_id) = (short("gid"), short("sid"), short("pool"));
    let instance = "si \"#}\u{202E}漢";
    let org = json!({ "org": org_name, "virtualGroups": [
        { "id": g_id, "name": long("group"),
          "entitlements": [ { "emsEntitlementId": short("ent"), "entitlementProductKeys": [ { "emsProductKeyId": long("pk"), "entitlementFeatures": [ {
              "featureName": long("feature"), "featureVersion": " \t\n ", "productName": short("product"),
              "licenseType": format!("  {}  ", short("type")), "totalQuantity": 3,
              "startDate": "2025-01-01" } ] } ] } ],
          "licenseServers": [ {
              "id": s_id, "name": long("server"), "status": short("status"),
              "deployedOn": short("deployed"), "leasingMode": short("mode"),
              "serviceInstanceId": instance,
              "licenseServerFeatures": [ { "id": short("fid"), "featureName": short("sfeature"),
                  "productName": short("sproduct"), "licenseType": short("stype"), "totalQuantity": 5 } ],
              "licensePools": [ { "id": pool_id, "name": long("poolname"), "licensePoolFeatures": [
                  { "licenseServerFeatureId": short("fid"), "totalAllotment": 2, "inUse": 1 } ] } ] } ],
          "leases": { instance: [ {
              "leases": [ { "leaseId": short("lease"), "featureName": short("lfeature"), "leaseCount": 1 } ],
              "additionalProperties": { "license_server_id": short("ghost"),
                                        "license_server_name": long("ghostname") } } ] } },
        // A 64 KiB server id cannot fit a request URI (64 KiB at most), and
        // a service instance with a newline cannot be a header value.
        { "id": 2, "name": "g2", "entitlements": [],
          "licenseServers": [ { "id": long("bigid"), "name": "n", "serviceInstanceId": "bad\ninstance",
                                "licenseServerFeatures": [], "licensePools": [] } ],
          "leases": {} }
    ] });
    let cls = FakeCls::start(org.clone(), KEY).await;
    let base = cls.base_url();
    let exporter = start_exporter(&base, &[("NVIDIA_ORG_NAME", org_name)]);
    let now = refresh(&exporter).await;
    assert_eq!(up(&now), Some(1.0), "{}", exporter.stderr());
    let all = parse_strict(&now).unwrap();
    for series in all.iter().filter(|s| !s.name.starts_with("process_")) {
        assert_eq!(series.label("org_name"), Some(org_name), "{}", series.name);
    }
    let labels_of = |name: &str, g: &str| -> Vec<Vec<(String, String)>> {
        all.iter()
            .filter(|s| s.name == name && s.label("virtual_group_id") == Some(g))
            .map(|s| {
                s.labels
                    .iter()
                    .filter(|(k, _)| k != "org_name")
                    .cloned()
                    .collect()
            })
            .collect()
    };
    let own = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let group = [
        ("virtual_group_id", g_id.as_str()),
        ("virtual_group_name", &long("group")),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let with = |extra: &[(&str, String)]| -> Vec<(String, String)> {
        group
            .iter()
            .chain(extra.iter())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let entitlement = with(&[
        ("ems_entitlement_id", short("ent")),
        ("ems_product_key_id", long("pk")),
        ("feature_name", long("feature")),
        ("feature_version", "unknown".into()),
        ("product_name", short("product")),
        ("license_type", short("type")),
    ]);
    assert_eq!(
        labels_of("nvidia_cls_entitlement_total_quantity", &g_id),
        std::slice::from_ref(&entitlement)
    );
    assert_eq!(
        labels_of("nvidia_cls_entitlement_start_timestamp_seconds", &g_id),
        [entitlement]
    );
    let server = [("server_id", s_id.clone()), ("server_name", long("server"))];
    let mut info = with(&server);
    info.extend(own(&[
        ("status", &short("status")),
        ("deployed_on", &short("deployed")),
        ("leasing_mode", &short("mode")),
    ]));
    assert_eq!(labels_of("nvidia_cls_license_server_info", &g_id), [info]);
    let mut feature = with(&server);
    feature.extend(own(&[
        ("feature_name", &short("sfeature")),
        ("product_name", &short("sproduct")),
        ("license_type", &short("stype")),
    ]));
    assert_eq!(
        labels_of("nvidia_cls_license_server_feature_total_quantity", &g_id),
        [feature.clone()]
    );
    let mut pool = with(&server);
    pool.extend(own(&[
        ("pool_id", &pool_id),
        ("pool_name", &long("poolname")),
        ("feature_name", &short("sfeature")),
        ("product_name", &short("sproduct")),
        ("license_type", &short("stype")),
    ]));
    assert_eq!(
        labels_of("nvidia_cls_license_pool_feature_allotment_quantity", &g_id),
        [pool]
    );
    // The lease names a server the listing did not return: it is kept under
    // the name the client gives.
    let ghost = with(&[
        ("server_id", short("ghost")),
        ("server_name", long("ghostname")),
    ]);
    let mut active = labels_of("nvidia_cls_license_server_active_leases", &g_id);
    active.sort();
    let mut want = vec![ghost, with(&server)];
    want.sort();
    assert_eq!(active, want);
    // Group 2's server: listed, but neither its pools nor its leases can be asked for.
    assert_eq!(labels_of("nvidia_cls_license_server_info", "2").len(), 1);
    assert_eq!(partial(&now, "license_pools"), Some(1.0));
    assert_eq!(partial(&now, "leases"), Some(1.0));
    let pools_line = told_once(&exporter, &["partial refresh", "uri too long"]).await;
    assert!(
        pools_line.len() < 2048,
        "a bounded line: {} bytes",
        pools_line.len()
    );
    told_once(
        &exporter,
        &[
            "partial refresh",
            "GET /virtual-groups/2/leases/all failed: ",
        ],
    )
    .await;

    // An escape that is not Unicode in one group's server list: that list
    // is left out.
    cls.set_override(
        "/virtual-groups/2/license-servers",
        Canned::body(
            200,
            r#"{"licenseServers":[{"id":"s","name":"\ud800 lone"}]}"#,
        ),
    );
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let now = refresh(&exporter).await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(partial(&now, "license_servers"), Some(1.0));
    told_once(&exporter, &["partial refresh", "hex escape"]).await;
}

// =========================================================== paging rows

#[tokio::test]
async fn a_paging_loop_is_stopped_by_the_repeated_page_guard() {
    let row = Row::start(&[]).await;
    // The same page, promising a million more, whatever page is asked for.
    let forever = |key: &str, items: Vec<Value>| {
        let info = json!({ "pageNumber": 0, "pageSize": items.len(), "totalPages": 1_000_000 });
        Canned::body(
            200,
            json!({ key: items, "paginationInfo": info }).to_string(),
        )
    };
    let now = row
        .whole(forever("virtualGroups", group_listing(&good_org())))
        .await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(data(&now), data(&row.good));
    assert_eq!(
        requests_total(&now, "virtual_groups", "200"),
        Some(1.0 + 2.0)
    );
    assert_eq!(guard(&now, "virtual_groups", "repeated_page"), Some(1.0));
    row.told_once(&["paging stopped early", "endpoint=\"virtual_groups\""])
        .await;

    let servers = good_org()["virtualGroups"][1]["licenseServers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.as_object_mut().unwrap().remove("licensePools");
            s
        })
        .collect();
    let now = row
        .sub(Part::Servers, forever("licenseServers", servers))
        .await;
    assert_eq!(up(&now), Some(1.0));
    assert_eq!(data(&now), data(&row.good));
    assert_eq!(guard(&now, "license_servers", "repeated_page"), Some(1.0));
    row.told_once(&["paging stopped early", "endpoint=\"license_servers\""])
        .await;

    // A server that ignores page-number, on all four listings (pages of 2):
    // each listing stops at its second page, with one warning that says why.
    let cls = FakeCls::start(n_of_everything(5), KEY).await;
    cls.set_paging(Paging {
        ignore_page_number: true,
        paginate_sub_resources: true,
        ..Paging::enabled(0)
    });
    let exporter = start_exporter(&cls.base_url(), &[("CLS_PAGE_SIZE", "2")]);
    let text = refresh(&exporter).await;
    for suffix in LISTINGS {
        assert_eq!(
            page_numbers(&cls.requests(), suffix),
            ["-", "1"],
            "page-number sequence of {suffix}"
        );
    }
    for endpoint in [
        "virtual_groups",
        "license_servers",
        "license_pools",
        "leases",
    ] {
        assert_eq!(
            guard(&text, endpoint, "repeated_page"),
            Some(1.0),
            "{endpoint}"
        );
    }
    assert_eq!(up(&text), Some(1.0));
    assert_eq!(
        count_lines(&text, "nvidia_cls_entitlement_total_quantity{"),
        2
    );
    assert_eq!(count_lines(&text, "nvidia_cls_license_server_info{"), 2);
    assert_eq!(server_active(&text, 1, "s1"), Some(2.0));
    let lines = log_lines(&exporter, "paging stopped early").await;
    assert_eq!(lines.len(), 4, "one warning per listing: {lines:#?}");
    for line in &lines {
        assert!(line.contains(" WARN "), "{line}");
        assert!(
            line.contains(
                "a page held only items already seen (the server seems to ignore page-number)"
            ),
            "{line}"
        );
        assert!(line.contains("guard=\"repeated_page\""), "{line}");
    }
    for suffix in LISTINGS {
        assert!(
            lines.iter().any(|l| l.contains(&format!("{suffix}\""))),
            "{suffix} named in {lines:#?}"
        );
    }
}

#[tokio::test]
async fn an_org_that_changes_between_pages_is_read_without_duplicates() {
    // One group of four servers, two per page.
    let cls = FakeCls::start(generate_org(ORG, 1, 4, 0), KEY).await;
    cls.set_paging(Paging::enabled(0));
    let base = cls.base_url();
    let exporter = start_exporter(&base, &[("CLS_PAGE_SIZE", "2")]);
    let names = |text: &str| -> Vec<String> {
        let mut names: Vec<String> = find(text, "nvidia_cls_license_server_info", &[])
            .iter()
            .map(|s| s.label("server_name").unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let first = refresh(&exporter).await;
    assert_eq!(
        names(&first),
        ["ls-000000", "ls-000001", "ls-000002", "ls-000003"]
    );

    // Between page 0 and page 1 of the server list: ls-000002 (on page 1)
    // disappears, and a new server is inserted first, which pushes
    // ls-000001 (already read on page 0) onto page 1 too.
    let fired = Arc::new(AtomicBool::new(false));
    let once = fired.clone();
    cls.set_on_request(move |request, org| {
        if request.path.ends_with("/license-servers")
            && request.query_param("page-number").as_deref() == Some("1")
            && !once.swap(true, Ordering::SeqCst)
        {
            let servers = org["virtualGroups"][0]["licenseServers"]
                .as_array_mut()
                .unwrap();
            let mut new = servers[0].clone();
            new["id"] = json!("00000001-0000-4000-8000-0000000000ff");
            new["name"] = json!("ls-new");
            servers.remove(2);
            servers.insert(0, new);
        }
    });
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let changed = refresh(&exporter).await;
    assert!(fired.load(Ordering::SeqCst));
    assert_eq!(up(&changed), Some(1.0));
    // Read once each (the strict check refuses duplicate series): the new
    // server was on a page already read, the gone one is gone.
    assert_eq!(names(&changed), ["ls-000000", "ls-000001", "ls-000003"]);
    assert_eq!(
        find(
            &changed,
            "nvidia_cls_license_server_feature_total_quantity",
            &[("server_name", "ls-000001")]
        )
        .len(),
        find(
            &first,
            "nvidia_cls_license_server_feature_total_quantity",
            &[("server_name", "ls-000001")]
        )
        .len(),
    );

    // The next refresh reads the org as it now is.
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let after = refresh(&exporter).await;
    assert_eq!(
        names(&after),
        ["ls-000000", "ls-000001", "ls-000003", "ls-new"]
    );
}
