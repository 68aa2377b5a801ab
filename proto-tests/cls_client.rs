//! Protocol tests of the CLS client: the real exporter binary against the
//! fake CLS (and, for answers of their own, a canned-answer server) over
//! loopback sockets. Each test proves one behaviour of paging, retries,
//! partial failures, leases or pipelining, with exact request sequences,
//! series values and log lines. What one fault of the CLS does to a refresh
//! (the status rows, Retry-After, stalls, body limits, the repeated-page
//! guard) has its one home in fault_matrix.rs.

mod support;

use support::fake_cls::fixture;

use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::canned::{Canned, CannedServer, Recorded};
use support::exporter::{log_lines, peak_rss, refresh_failures, retries, Exporter};
use support::fake_cls::{FakeCls, KeyStyle, Paging, Totals};
use support::orgs::{
    client, count_lines, feature_active, group, n_groups, n_of_everything, org, page_numbers,
    server, server_active, server_labels, LISTINGS, ORG,
};
use support::series::{guard, partial, requests_total, up};

fn empty_groups() -> Canned {
    Canned::body(200, r#"{"virtualGroups":[]}"#)
}

// ================================================================== paging

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_defaults_to_100_and_is_set_by_cls_page_size_and_its_flag() {
    let cls = FakeCls::start(n_of_everything(5), "test-key").await;
    let sizes = |cls: &FakeCls| -> Vec<String> {
        let mut s: Vec<String> = cls
            .requests()
            .iter()
            .map(|r| r.query_param("page-size").unwrap_or_default())
            .collect();
        s.dedup();
        s
    };
    {
        let exporter = Exporter::start(&cls.base_url(), &[]);
        assert_eq!(up(&exporter.metrics().await), Some(1.0));
    }
    assert_eq!(sizes(&cls), ["100"], "every request asks for 100");
    cls.clear_requests();
    {
        let exporter = Exporter::start(&cls.base_url(), &[("CLS_PAGE_SIZE", "7")]);
        exporter.metrics().await;
    }
    assert_eq!(sizes(&cls), ["7"]);
    cls.clear_requests();
    {
        let base = cls.base_url();
        let env = [
            ("NVIDIA_API_KEY", "test-key"),
            ("NVIDIA_ORG_NAME", "lic-demo"),
            ("NVIDIA_API_BASE_URL", base.as_str()),
            ("LISTEN_ADDRESS", "127.0.0.1:0"),
            ("CLS_PAGE_SIZE", "7"),
        ];
        let exporter = Exporter::start_with(&env, &["-cls-page-size", "9"]);
        exporter.metrics().await;
    }
    assert_eq!(sizes(&cls), ["9"], "the flag wins over the environment");
}

fn assert_page_numbers(cls: &FakeCls, want: &[&str]) {
    for suffix in LISTINGS {
        assert_eq!(
            page_numbers(&cls.requests(), suffix),
            want,
            "page-number sequence of {suffix}"
        );
    }
}

/// Every item of `n_of_everything(n)` was read: n groups, n servers,
/// n + (n - 1) pools, n leases on s1.
fn assert_everything_read(text: &str, n: u64) {
    assert_eq!(up(text), Some(1.0), "{text}");
    assert_eq!(
        count_lines(text, "nvidia_cls_entitlement_total_quantity{"),
        n as usize,
        "groups"
    );
    assert_eq!(
        count_lines(text, "nvidia_cls_license_server_info{"),
        n as usize,
        "servers"
    );
    assert_eq!(
        count_lines(text, "nvidia_cls_license_pool_feature_allotment_quantity{"),
        2 * n as usize - 1,
        "pools"
    );
    assert_eq!(server_active(text, 1, "s1"), Some(n as f64), "leases");
    assert!(
        !text.contains("nvidia_cls_pagination_guards_total{"),
        "no guard fired"
    );
}

async fn paged(paging: Paging, n: u64, page_size: &str) -> (FakeCls, Exporter, String) {
    let cls = FakeCls::start(n_of_everything(n), "test-key").await;
    cls.set_paging(Paging {
        paginate_sub_resources: true,
        ..paging
    });
    let exporter = Exporter::start(&cls.base_url(), &[("CLS_PAGE_SIZE", page_size)]);
    let text = exporter.metrics().await;
    (cls, exporter, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_spanning_many_pages_is_read_whole() {
    let servers: Vec<Value> = (0..250)
        .map(|s| server(&format!("srv-{s:03}"), "", 1))
        .collect();
    let cls = FakeCls::start(org(vec![group(1, servers, json!({}))]), "test-key").await;
    cls.set_paging(Paging::enabled(0));
    let exporter = Exporter::start(&cls.base_url(), &[("CLS_PAGE_SIZE", "100")]);
    let text = exporter.metrics().await;
    assert_eq!(up(&text), Some(1.0));
    assert_eq!(
        page_numbers(&cls.requests(), "/license-servers"),
        ["-", "1", "2"],
        "3 pages of 100, 100 and 50"
    );
    assert_eq!(count_lines(&text, "nvidia_cls_license_server_info{"), 250);
    for s in 0..250 {
        let id = format!("srv-{s:03}");
        assert!(
            text.contains(&format!(
                "nvidia_cls_license_server_info{{{ORG},{},status=",
                server_labels(1, &id)
            )),
            "{id} is published"
        );
    }
    assert_eq!(cls.requests_ending_with("/license-pools"), 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_based_server_is_paged_on_every_list_endpoint() {
    let (cls, _exporter, text) = paged(Paging::enabled(0), 5, "2").await;
    assert_page_numbers(&cls, &["-", "1", "2"]);
    assert_everything_read(&text, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_based_server_is_paged_on_every_list_endpoint() {
    let (cls, _exporter, text) = paged(Paging::enabled(1), 5, "2").await;
    // The first page comes without page-number; it reports page 1, so the
    // next ones are 2 and 3.
    assert_page_numbers(&cls, &["-", "2", "3"]);
    assert_everything_read(&text, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_by_pages_end_the_listing_without_probing_past_them() {
    let paging = Paging {
        totals: Totals::Pages,
        ..Paging::enabled(0)
    };
    // 6 items in pages of 2: the full third page is the last one.
    let (cls, _exporter, text) = paged(paging, 6, "2").await;
    assert_page_numbers(&cls, &["-", "1", "2"]);
    assert_everything_read(&text, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_by_records_end_the_listing_without_probing_past_them() {
    let paging = Paging {
        totals: Totals::Records,
        key_style: KeyStyle::Alternate, // currentPage, size, totalElements
        ..Paging::enabled(1)
    };
    let (cls, _exporter, text) = paged(paging, 6, "2").await;
    assert_page_numbers(&cls, &["-", "2", "3"]);
    assert_everything_read(&text, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_totals_a_full_page_asks_for_the_next_one() {
    let paging = Paging {
        totals: Totals::None,
        ..Paging::enabled(0)
    };
    // 6 items in pages of 2: three full pages, then an empty one ends it.
    let (cls, _exporter, text) = paged(paging, 6, "2").await;
    assert_page_numbers(&cls, &["-", "1", "2", "3"]);
    assert_everything_read(&text, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_capping_the_page_size_is_paged_by_the_size_it_reports() {
    let paging = Paging {
        totals: Totals::None,
        max_page_size: Some(2),
        ..Paging::enabled(0)
    };
    // Asked for 100, the server sends 2 and says so: a page of 2 is full.
    let (cls, _exporter, text) = paged(paging, 5, "100").await;
    assert_page_numbers(&cls, &["-", "1", "2"]);
    assert_everything_read(&text, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pagination_info_one_page_is_read() {
    let paging = Paging {
        omit_info: true,
        ..Paging::enabled(0)
    };
    let (cls, _exporter, text) = paged(paging, 5, "2").await;
    assert_page_numbers(&cls, &["-"]);
    // Two of each, as the Go exporter would read.
    assert_eq!(up(&text), Some(1.0));
    assert_eq!(
        count_lines(&text, "nvidia_cls_entitlement_total_quantity{"),
        2
    );
    assert_eq!(count_lines(&text, "nvidia_cls_license_server_info{"), 2);
    assert_eq!(
        count_lines(&text, "nvidia_cls_license_pool_feature_allotment_quantity{"),
        3
    );
    assert_eq!(server_active(&text, 1, "s1"), Some(2.0));
    assert!(!text.contains("nvidia_cls_pagination_guards_total{"));
}

/// A canned-answer server for `/virtual-groups` pages numbered from `base`
/// (a missing or lower page-number means the first page): `page` gives the
/// group ids of page n, `report` its paginationInfo. Every other listing is
/// empty.
async fn group_pages(
    base: u64,
    page: impl Fn(u64) -> Vec<u64> + Send + Sync + 'static,
    report: impl Fn(u64) -> Value + Send + Sync + 'static,
) -> CannedServer {
    CannedServer::start(move |request, _| {
        if !request.path.ends_with("/virtual-groups") {
            return Canned::body(200, r#"{"licenseServers":[],"licensePools":[],"clients":[]}"#);
        }
        let number = request
            .query_param("page-number")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n >= base)
            .unwrap_or(base);
        let groups: Vec<Value> = page(number)
            .into_iter()
            .map(|id| json!({"id": id, "name": format!("g{id}"), "entitlements": group(id, vec![], json!({}))["entitlements"].clone()}))
            .collect();
        Canned::json(
            200,
            &json!({"virtualGroups": groups, "paginationInfo": report(number)}),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_based_server_that_reports_no_page_number_is_paged_from_its_first_page() {
    // Groups 1-5 in pages of 2, numbered from 1; a missing page-number (or 0)
    // means page 1; paginationInfo holds only the total.
    let server = group_pages(
        1,
        |n| ((n - 1) * 2 + 1..=((n - 1) * 2 + 2).min(5)).collect(),
        |_| json!({"totalRecords": 5}),
    )
    .await;
    let exporter = Exporter::start(&server.base_url(), &[("CLS_PAGE_SIZE", "2")]);
    let text = exporter.metrics().await;
    // Page 1 comes back twice (unnumbered, then as "1"): the client steps past it.
    assert_eq!(
        page_numbers(&server.requests(), "/virtual-groups"),
        ["-", "1", "2", "3"]
    );
    assert_eq!(
        count_lines(&text, "nvidia_cls_entitlement_total_quantity{"),
        5
    );
    assert!(
        !text.contains("nvidia_cls_pagination_guards_total{"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_before_the_totals_is_stopped_by_the_short_total_guard() {
    // Claims 5 groups, but page 1 is already empty.
    let server = group_pages(
        0,
        |n| if n == 0 { vec![1, 2] } else { vec![] },
        |n| json!({"pageNumber": n, "pageSize": 2, "totalRecords": 5}),
    )
    .await;
    let exporter = Exporter::start(&server.base_url(), &[("CLS_PAGE_SIZE", "2")]);
    let text = exporter.metrics().await;
    assert_eq!(
        page_numbers(&server.requests(), "/virtual-groups"),
        ["-", "1"]
    );
    assert_eq!(up(&text), Some(1.0));
    assert_eq!(
        count_lines(&text, "nvidia_cls_entitlement_total_quantity{"),
        2
    );
    assert_eq!(guard(&text, "virtual_groups", "short_total"), Some(1.0));
    let lines = log_lines(&exporter, "paging stopped early").await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("an empty page came back before the totals were reached"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_cap_stops_an_endless_listing() {
    // 1,001 lease clients in pages of 1: the cap of 1,000 pages stops it.
    let clients: Vec<Value> = (0..1001)
        .map(|l| client("s1", &format!("L{l:04}")))
        .collect();
    let cls = FakeCls::start(
        org(vec![group(
            1,
            vec![server("s1", "si-1", 1)],
            json!({ "si-1": clients }),
        )]),
        "test-key",
    )
    .await;
    cls.set_paging(Paging {
        paginate_sub_resources: true,
        ..Paging::enabled(0)
    });
    let exporter = Exporter::start(&cls.base_url(), &[("CLS_PAGE_SIZE", "1")]);
    let text = exporter.metrics().await;
    assert_eq!(cls.requests_ending_with("/leases/all"), 1000);
    assert_eq!(guard(&text, "leases", "page_cap"), Some(1.0));
    assert_eq!(server_active(&text, 1, "s1"), Some(1000.0));
    let lines = log_lines(&exporter, "paging stopped early: the page cap was reached").await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("endpoint=\"leases\""), "{}", lines[0]);
}

// ================================================================= retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_429_502_503_504_are_retried_until_they_succeed() {
    let cls = FakeCls::start(n_groups(4), "test-key").await;
    for (g, code) in [(1, 429), (2, 502), (3, 503), (4, 504)] {
        cls.set_override(
            &format!("/virtual-groups/{g}/license-servers"),
            Canned::status(code).with_times(2),
        );
    }
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let text = exporter.metrics().await;
    assert_eq!(up(&text), Some(1.0));
    for g in 1..=4 {
        assert_eq!(
            cls.requests_ending_with(&format!("/virtual-groups/{g}/license-servers")),
            3,
            "group {g}: two failures, then success"
        );
        assert_eq!(server_active(&text, g, &format!("s{g}")), Some(1.0));
    }
    for code in ["429", "502", "503", "504"] {
        assert_eq!(
            requests_total(&text, "license_servers", code),
            Some(2.0),
            "{code}"
        );
    }
    assert_eq!(requests_total(&text, "license_servers", "200"), Some(4.0));
    assert_eq!(partial(&text, "license_servers"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_exponentially_with_full_jitter() {
    // 40 groups whose server listing fails twice: 80 waits to look at.
    let groups = 40;
    let cls = FakeCls::start(n_groups(groups), "test-key").await;
    for g in 1..=groups {
        cls.set_override(
            &format!("/virtual-groups/{g}/license-servers"),
            Canned::status(503).with_times(2),
        );
    }
    let exporter = Exporter::start(&cls.base_url(), &[("LOG_LEVEL", "debug")]);
    let text = exporter.metrics().await;
    assert_eq!(up(&text), Some(1.0));
    let retries = retries(&exporter).await;
    assert_eq!(retries.len(), 2 * groups as usize, "{retries:#?}");
    let waits = |attempt: u32| -> Vec<u64> {
        retries
            .iter()
            .filter(|r| r.1 == attempt)
            .map(|r| r.2)
            .collect()
    };
    let (first, second) = (waits(1), waits(2));
    assert_eq!((first.len(), second.len()), (40, 40));
    // Full jitter: uniform in [0, 200 ms · 2^attempt].
    assert!(first.iter().all(|w| *w <= 400), "{first:?}");
    assert!(second.iter().all(|w| *w <= 800), "{second:?}");
    // Spread over the whole range (each bound fails with p < 1e-4).
    assert!(first.iter().min().unwrap() < &100, "{first:?}");
    assert!(first.iter().max().unwrap() > &300, "{first:?}");
    // Exponential: the second wait's range is twice the first's.
    assert!(second.iter().max().unwrap() > &400, "{second:?}");
    // And the client really waited that long before asking again.
    for (path, attempt, wait_ms) in &retries {
        let times = cls.arrivals(path);
        assert_eq!(times.len(), 3, "{path}");
        let gap = times[*attempt as usize] - times[*attempt as usize - 1];
        assert!(
            gap >= Duration::from_millis(*wait_ms) && gap <= Duration::from_millis(wait_ms + 300),
            "{path} attempt {attempt}: waited {gap:?}, logged {wait_ms} ms"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_stops_at_the_refresh_deadline() {
    let cls = FakeCls::start(n_groups(1), "test-key").await;
    cls.set_override("/virtual-groups", Canned::status(502));
    let exporter = Exporter::start(&cls.base_url(), &[("SCRAPE_TIMEOUT", "500ms")]);
    let started = Instant::now();
    let text = exporter.metrics().await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(700), "{elapsed:?}");
    assert_eq!(up(&text), Some(0.0));
    let attempts = cls.requests_ending_with("/virtual-groups");
    assert!((1..=4).contains(&attempts), "{attempts}");
    assert_eq!(
        requests_total(&text, "virtual_groups", "502"),
        Some(attempts as f64)
    );
    assert_eq!(
        refresh_failures(&exporter).await,
        ["GET /virtual-groups failed: HTTP 502"],
        "the last answer, not a bare timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_retried() {
    // The first two connections are closed without an answer.
    let server = CannedServer::start(|_, connection| {
        if connection < 2 {
            Canned::hang_up()
        } else {
            empty_groups()
        }
    })
    .await;
    let exporter = Exporter::start(&server.base_url(), &[]);
    let text = exporter.metrics().await;
    assert_eq!(up(&text), Some(1.0), "{}", exporter.stderr());
    assert_eq!(server.request_count(), 3);
    assert_eq!(server.connections(), 3);
    assert_eq!(requests_total(&text, "virtual_groups", "error"), Some(2.0));
    assert_eq!(requests_total(&text, "virtual_groups", "200"), Some(1.0));
}

// ====================================================== partial failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_listing_failing_on_a_later_page_fails_the_refresh() {
    // Page 0 holds group 1 and promises a second page, which fails.
    let server = CannedServer::start(|request, _| {
        let groups = request.path.ends_with("/virtual-groups");
        if groups && request.query_param("page-number").as_deref() == Some("1") {
            Canned::body(500, "{}")
        } else if groups {
            let g = group(1, vec![], json!({}));
            Canned::json(
                200,
                &json!({"virtualGroups": [g], "paginationInfo": {"pageNumber": 0, "pageSize": 1, "totalPages": 2}}),
            )
        } else {
            Canned::body(200, r#"{"licenseServers":[]}"#)
        }
    })
    .await;
    let exporter = Exporter::start(&server.base_url(), &[("CLS_PAGE_SIZE", "1")]);
    let text = exporter.metrics().await;
    assert_eq!(up(&text), Some(0.0));
    assert!(
        !text.contains("nvidia_cls_entitlement_"),
        "nothing half-read is published"
    );
    assert_eq!(
        refresh_failures(&exporter).await,
        ["GET /virtual-groups failed: HTTP 500"]
    );
}

// ================================================================== leases

fn lease_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.starts_with("nvidia_cls_license_server_feature_active_leases{")
                || l.starts_with("nvidia_cls_license_server_active_leases{")
                || l.starts_with("nvidia_cls_unattributed_leases{")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_clients_count_exactly_like_plain_clients() {
    let plain = FakeCls::start(fixture(), "test-key").await;
    let compressed = FakeCls::start(fixture(), "test-key").await;
    compressed.set_compressed_leases(true);
    let a = Exporter::start(&plain.base_url(), &[]);
    let b = Exporter::start(&compressed.base_url(), &[]);
    let (a, b) = (a.metrics().await, b.metrics().await);
    assert_eq!(lease_lines(&a).len(), 11, "{a}");
    assert_eq!(lease_lines(&a), lease_lines(&b));
    assert_eq!(partial(&b, "leases"), Some(0.0));
}

/// The cap on one response body (src/cls/client.rs MAX_BODY_BYTES).
const BODY_CAP: usize = 64 << 20;

/// base64 of a gzip stream whose JSON inflates to `{"clients":[` followed
/// by `mib` MiB of spaces: one small member repeated (gzip members concatenate).
fn gzip_bomb(mib: usize) -> String {
    use std::io::Write;
    let member = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let mut stream = member(br#"{"clients":["#);
    let spaces = member(&vec![b' '; 1 << 20]);
    for _ in 0..mib {
        stream.extend_from_slice(&spaces);
    }
    base64::engine::general_purpose::STANDARD.encode(&stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_clients_inflating_past_the_cap_are_refused_with_bounded_memory() {
    let cls = FakeCls::start(n_groups(2), "test-key").await;
    let bomb = json!({ "compressedClients": gzip_bomb(100) }).to_string();
    cls.set_override("/virtual-groups/2/leases/all", Canned::body(200, bomb));
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let started = Instant::now();
    let text = exporter.metrics().await;
    let elapsed = started.elapsed();
    let rss = peak_rss(exporter.pid());
    eprintln!("bomb: {elapsed:?}, peak RSS {} MiB", rss >> 20);
    assert_eq!(up(&text), Some(1.0));
    assert_eq!(server_active(&text, 1, "s1"), Some(1.0));
    assert_eq!(server_active(&text, 2, "s2"), None, "unknown, not 0");
    assert_eq!(partial(&text, "leases"), Some(1.0));
    let lines = log_lines(&exporter, "partial refresh").await;
    assert_eq!(lines.len(), 1, "{}", exporter.stderr());
    assert!(
        lines[0].contains("GET /virtual-groups/2/leases/all failed: "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!(
            "compressedClients could not be read: inflates to more than {BODY_CAP} bytes"
        )),
        "{}",
        lines[0]
    );
    assert!(rss < 64 << 20, "peak RSS {} MiB", rss >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_read_from_leases_all() {
    let cls = FakeCls::start(n_groups(2), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let text = exporter.metrics().await;
    assert_eq!(server_active(&text, 1, "s1"), Some(1.0));
    assert_eq!(server_active(&text, 2, "s2"), Some(1.0));
    assert_eq!(cls.requests_ending_with("/leases/all"), 2);
    assert_eq!(cls.requests_ending_with("/leases"), 0, "no old path asked");
    assert_eq!(requests_total(&text, "leases", "200"), Some(2.0));
    assert_eq!(requests_total(&text, "leases", "404"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fall_back_to_plain_leases_on_404_and_remember_it() {
    let cls = FakeCls::start(n_groups(2), "test-key").await;
    cls.set_leases_plain_only(true);
    let exporter = Exporter::start(&cls.base_url(), &[("CACHE_TTL", "100ms")]);
    let first = exporter.metrics().await;
    assert_eq!(up(&first), Some(1.0));
    assert_eq!(server_active(&first, 1, "s1"), Some(1.0));
    assert_eq!(server_active(&first, 2, "s2"), Some(1.0));
    // Both groups' lease calls start together: each may meet the 404 before
    // the other has learned that /leases works.
    let all = cls.requests_ending_with("/leases/all");
    assert!((1..=2).contains(&all), "{all}");
    assert_eq!(cls.requests_ending_with("/leases"), 2);
    assert_eq!(requests_total(&first, "leases", "404"), Some(all as f64));
    assert_eq!(requests_total(&first, "leases", "200"), Some(2.0));
    assert_eq!(partial(&first, "leases"), Some(0.0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = exporter.metrics().await;
    assert_eq!(lease_lines(&first), lease_lines(&second));
    assert_eq!(
        (
            cls.requests_ending_with("/leases/all"),
            cls.requests_ending_with("/leases")
        ),
        (all, 4),
        "the second refresh goes straight to /leases"
    );
    assert_eq!(requests_total(&second, "leases", "404"), Some(all as f64));
}

/// An answer with both `clients` and `compressedClients` holds the same
/// clients twice (the Go exporter reads the compressed ones only): leases
/// without ids must not be counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_clients_replace_clients_sent_alongside() {
    use std::io::Write;
    let clients = json!([
        { "leases": [
            { "featureName": "GRID-Virtual-PC", "leaseCount": 2, "licenseAllotmentFeatureId": "s1-f" },
            { "featureName": "GRID-Virtual-PC", "leaseCount": 1, "licenseAllotmentFeatureId": "s1-f" }
          ],
          "additionalProperties": { "license_server_id": "s1" } }
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json!({ "clients": clients }).to_string().as_bytes())
        .unwrap();
    let both = json!({
        "clients": clients,
        "compressedClients": base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap()),
    });
    let cls = FakeCls::start(n_groups(1), "test-key").await;
    cls.set_override(
        "/virtual-groups/1/leases/all",
        Canned::body(200, both.to_string()),
    );
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let text = exporter.metrics().await;
    assert_eq!(server_active(&text, 1, "s1"), Some(3.0), "{text}");
    assert_eq!(feature_active(&text, 1, "s1"), Some(3.0));
    assert_eq!(partial(&text, "leases"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_service_instance_is_used_when_no_server_carries_one() {
    let cls = FakeCls::start(
        org(vec![
            group(
                1,
                vec![server("s1", "", 1), server("s2", " ", 1)],
                json!({ "si-conf": [client("s1", "L1"), client("s1", "L2"), client("s2", "L3")] }),
            ),
            group(
                2,
                vec![server("s3", "si-3", 1)],
                json!({ "si-3": [client("s3", "L4")] }),
            ),
        ]),
        "test-key",
    )
    .await;
    let exporter = Exporter::start(
        &cls.base_url(),
        &[("NVIDIA_SERVICE_INSTANCE_ID", "si-conf")],
    );
    let text = exporter.metrics().await;
    assert_eq!(server_active(&text, 1, "s1"), Some(2.0));
    assert_eq!(server_active(&text, 1, "s2"), Some(1.0));
    assert_eq!(server_active(&text, 2, "s3"), Some(1.0));
    let instances = |g: u64| -> Vec<String> {
        cls.requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/virtual-groups/{g}/leases/all")))
            .map(|r| {
                r.header("x-nv-service-instance-id")
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(instances(1), ["si-conf"]);
    assert_eq!(instances(2), ["si-3"], "a server's own instance wins");
    assert_eq!(
        cls.requests_ending_with("/leases"),
        0,
        "/leases/all answered"
    );
}

// ============================================================== pipelining

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_parallelism_limit_bounds_requests_of_every_level() {
    // 1 group, 12 servers on 12 instances: 24 pool and lease requests can
    // run at once; PARALLELISM caps them, and is reached.
    let servers: Vec<Value> = (1..=12)
        .map(|s| server(&format!("s{s}"), &format!("si-{s}"), 1))
        .collect();
    for parallelism in [3, 10] {
        let one_group = org(vec![group(1, servers.clone(), json!({}))]);
        let cls = FakeCls::start(one_group, "test-key").await;
        cls.set_latency(Duration::from_millis(50));
        let p = parallelism.to_string();
        let exporter = Exporter::start(&cls.base_url(), &[("PARALLELISM", p.as_str())]);
        assert_eq!(up(&exporter.metrics().await), Some(1.0));
        assert_eq!(cls.request_count(), 26);
        assert_eq!(
            cls.max_in_flight(),
            parallelism,
            "PARALLELISM={parallelism}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_sub_requests_do_not_wait_for_other_groups_server_lists() {
    let cls = FakeCls::start(n_groups(3), "test-key").await;
    // Group 1's server list takes 500 ms more than the others.
    let listing = json!({ "licenseServers": [server("s1", "si-1", 1)] }).to_string();
    cls.set_override(
        "/virtual-groups/1/license-servers",
        Canned::body(200, listing).with_delay(Duration::from_millis(500)),
    );
    let exporter = Exporter::start(&cls.base_url(), &[]);
    assert_eq!(up(&exporter.metrics().await), Some(1.0));
    let timed = cls.requests_timed();
    let at = |suffix: &str| {
        timed
            .iter()
            .find(|(_, r)| r.path.ends_with(suffix))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no request to {suffix}"))
    };
    let slow_listing_done = at("/virtual-groups/1/license-servers") + Duration::from_millis(500);
    for g in [2, 3] {
        assert!(at(&format!("/virtual-groups/{g}/leases/all")) < slow_listing_done);
        assert!(at(&format!("/license-servers/s{g}/license-pools")) < slow_listing_done);
    }
    assert!(at("/virtual-groups/1/leases/all") >= slow_listing_done);
}

/// Index in arrival order of the first request whose path ends with
/// `suffix` and whose page-number is `page` ("-" for none, "*" for any).
fn arrival_index(requests: &[Recorded], suffix: &str, page: &str) -> usize {
    requests
        .iter()
        .position(|r| {
            r.path.ends_with(suffix)
                && (page == "*" || r.query_param("page-number").as_deref().unwrap_or("-") == page)
        })
        .unwrap_or_else(|| panic!("no request to {suffix} page {page}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_requests_start_as_soon_as_their_page_arrives() {
    // Pages of 1 and 40 ms per answer: a group's server list is asked for as
    // soon as the page naming the group is in, not after the last page of
    // groups; a server's pools and its instance's leases likewise.
    let servers = (1..=3)
        .map(|s| server(&format!("s{s}"), &format!("si-{s}"), 1))
        .collect();
    let mut groups = vec![group(1, servers, json!({}))];
    groups.extend((2..=3).map(|g| group(g, vec![], json!({}))));
    let cls = FakeCls::start(org(groups), "test-key").await;
    cls.set_paging(Paging::enabled(0));
    cls.set_latency(Duration::from_millis(40));
    let exporter = Exporter::start(&cls.base_url(), &[("CLS_PAGE_SIZE", "1")]);
    let text = exporter.metrics().await;
    assert_eq!(count_lines(&text, "nvidia_cls_license_server_info{"), 3);
    let requests = cls.requests();
    let last_group_page = arrival_index(&requests, "/virtual-groups", "2");
    let group_1_servers = arrival_index(&requests, "/virtual-groups/1/license-servers", "-");
    assert!(
        group_1_servers < last_group_page,
        "group 1's servers asked for before the last page of groups: {:#?}",
        requests
            .iter()
            .map(|r| (&r.path, &r.query))
            .collect::<Vec<_>>()
    );
    let last_server_page = arrival_index(&requests, "/virtual-groups/1/license-servers", "2");
    let s1_pools = arrival_index(&requests, "/license-servers/s1/license-pools", "*");
    let first_leases = arrival_index(&requests, "/virtual-groups/1/leases/all", "*");
    assert!(
        s1_pools < last_server_page && first_leases < last_server_page,
        "s1's pools and si-1's leases asked for before the last page of servers: {:#?}",
        requests
            .iter()
            .map(|r| (&r.path, &r.query))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_and_reused() {
    let cls = FakeCls::start(n_groups(10), "test-key").await;
    cls.set_latency(Duration::from_millis(5));
    let exporter = Exporter::start(
        &cls.base_url(),
        &[("PARALLELISM", "4"), ("CACHE_TTL", "100ms")],
    );
    assert_eq!(up(&exporter.metrics().await), Some(1.0));
    let (requests, connections) = (cls.request_count(), cls.connections());
    assert_eq!(requests, 31);
    assert!(
        (1..=4).contains(&connections),
        "{connections} connections for {requests} requests"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(up(&exporter.metrics().await), Some(1.0));
    assert_eq!(cls.request_count(), 62);
    assert_eq!(
        cls.connections(),
        connections,
        "the next refresh reuses the pooled connections"
    );
}
