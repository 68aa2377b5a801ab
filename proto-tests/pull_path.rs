//! Protocol tests of the pull path: the real binary against the fake CLS
//! over loopback sockets, asserting the exact exposition and HTTP behaviour.

mod support;

use support::fake_cls::fixture;

use std::time::Duration;
use support::canned::Canned;
use support::exporter::{http, log_lines, run_to_end, stable, value, Exporter};
use support::fake_cls::FakeCls;
use support::series::data;

async fn fake() -> FakeCls {
    FakeCls::start(fixture(), "test-key").await
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proto-tests/golden/fixture.prom"
);

/// The whole exposition for the fixture org, exactly, except for values that
/// change every run. Regenerate with UPDATE_GOLDEN=1 after checking the diff.
#[tokio::test]
async fn exposition_of_the_fixture_org_is_exact() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let got = stable(&exporter.metrics().await);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want =
        std::fs::read_to_string(GOLDEN).expect("golden file (run with UPDATE_GOLDEN=1 once)");
    assert_eq!(got, want);
}

/// The Go exporter's series for the fixture, written out by hand from its
/// counting rules: each must be present with the same labels and value.
#[tokio::test]
async fn every_go_exporter_series_is_present_with_identical_labels_and_value() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let text = exporter.metrics().await;
    let zrh = r#"virtual_group_id="1",virtual_group_name="Zürich \"HQ\" \\ lab\nwest""#;
    let tokyo = r#"virtual_group_id="2",virtual_group_name="東京""#;
    let zrh1 = r#"server_id="a1b2c3d4-0001-4000-8000-00000000000a",server_name="zrh-ls-01""#;
    let zrh2 = r#"server_id="srv-zrh 02",server_name="zrh-ls-02""#;
    let tk1 = r#"server_id="c3d4e5f6-0002-4000-8000-00000000000c",server_name="tokyo-ls-01""#;
    let vws = r#"feature_name="Quadro-Virtual-DWS",product_name="NVIDIA RTX Virtual Workstation",license_type="CONCURRENT_COUNTED_SINGLE""#;
    let apps = r#"feature_name="GRID-Virtual-Apps",product_name="NVIDIA Virtual Applications",license_type="CONCURRENT_COUNTED_SINGLE""#;
    let vpc = r#"feature_name="GRID-Virtual-PC",product_name="NVIDIA Virtual PC",license_type="CONCURRENT_COUNTED_SINGLE""#;
    let vcs = r#"feature_name="NVIDIA-vComputeServer",product_name="NVIDIA Virtual Compute Server",license_type="CONCURRENT_COUNTED_SINGLE""#;
    let dws_ent = r#"feature_name="Quadro-Virtual-DWS",feature_version="5.0",product_name="NVIDIA RTX Virtual Workstation",license_type="CONCURRENT_COUNTED_SINGLE""#;
    let org = r#"org_name="lic-demo""#;
    let expected: Vec<(String, f64)> = vec![
        (format!("nvidia_cls_up{{{org}}}"), 1.0),
        (
            format!(
                r#"nvidia_cls_entitlement_total_quantity{{{org},{zrh},ems_entitlement_id="EMS-ENT-101",ems_product_key_id="EMS-PK-101-A",{dws_ent}}}"#
            ),
            10.0,
        ),
        (
            format!(
                r#"nvidia_cls_entitlement_total_quantity{{{org},{zrh},ems_entitlement_id="EMS-ENT-101",ems_product_key_id="EMS-PK-101-B",{dws_ent}}}"#
            ),
            5.0,
        ),
        (
            format!(
                r#"nvidia_cls_entitlement_in_use_quantity{{{org},{zrh},ems_entitlement_id="EMS-ENT-101",ems_product_key_id="EMS-PK-101-B",{dws_ent}}}"#
            ),
            1.0,
        ),
        (
            format!(
                r#"nvidia_cls_entitlement_unassigned_quantity{{{org},{zrh},ems_entitlement_id="EMS-ENT-101",ems_product_key_id="EMS-PK-101-B",{dws_ent}}}"#
            ),
            4.0,
        ),
        (
            format!(
                r#"nvidia_cls_entitlement_total_quantity{{{org},{zrh},ems_entitlement_id="EMS-ENT-102",ems_product_key_id="EMS-PK-102",feature_name="GRID-Virtual-Apps",feature_version="5.0",product_name="NVIDIA Virtual Applications",license_type="CONCURRENT_COUNTED_SINGLE"}}"#
            ),
            10.0,
        ),
        (
            format!(
                r#"nvidia_cls_entitlement_total_quantity{{{org},{zrh},ems_entitlement_id="unknown",ems_product_key_id="unknown",feature_name="GRID-Virtual-PC",feature_version="5.0",product_name="NVIDIA Virtual PC",license_type="CONCURRENT_COUNTED_SINGLE"}}"#
            ),
            4.0,
        ),
        (
            format!(
                r#"nvidia_cls_entitlement_total_quantity{{{org},{tokyo},ems_entitlement_id="EMS-ENT-201",ems_product_key_id="EMS-PK-201",feature_name="GRID-Virtual-PC",feature_version="4.0",product_name="NVIDIA Virtual PC",license_type="CONCURRENT_COUNTED_SINGLE"}}"#
            ),
            20.0,
        ),
        (
            format!(
                r#"nvidia_cls_license_server_info{{{org},{zrh},{zrh1},status="ENABLED",deployed_on="CLOUD",leasing_mode="STANDARD"}}"#
            ),
            1.0,
        ),
        (
            format!(
                r#"nvidia_cls_license_server_info{{{org},{tokyo},{tk1},status="unknown",deployed_on="CLOUD",leasing_mode="STANDARD"}}"#
            ),
            1.0,
        ),
        (
            format!("nvidia_cls_license_server_feature_total_quantity{{{org},{zrh},{zrh1},{vws}}}"),
            8.0,
        ),
        (
            format!("nvidia_cls_license_server_feature_total_quantity{{{org},{zrh},{zrh2},{vpc}}}"),
            4.0,
        ),
        (
            format!(
                "nvidia_cls_license_server_feature_total_quantity{{{org},{tokyo},{tk1},{vcs}}}"
            ),
            4.0,
        ),
        (
            format!("nvidia_cls_license_server_feature_active_leases{{{org},{zrh},{zrh1},{apps}}}"),
            2.0,
        ),
        (
            format!("nvidia_cls_license_server_feature_active_leases{{{org},{zrh},{zrh1},{vws}}}"),
            3.0,
        ),
        (
            format!("nvidia_cls_license_server_feature_active_leases{{{org},{zrh},{zrh2},{vpc}}}"),
            1.0,
        ),
        (
            format!("nvidia_cls_license_server_feature_active_leases{{{org},{tokyo},{tk1},{vpc}}}"),
            2.0,
        ),
        (
            format!(
                r#"nvidia_cls_license_server_feature_active_leases{{{org},{tokyo},{tk1},feature_name="GRID-Virtual-PC",product_name="unknown",license_type="unknown"}}"#
            ),
            1.0,
        ),
    ];
    for (series, want) in expected {
        let line = format!("{series} ");
        assert_eq!(
            value(&text, &line),
            Some(want),
            "series {series}\nin:\n{text}"
        );
    }
}

/// The Go collector's own test case (one entitlement, one feature under two
/// product keys) through the real binary: its six series, exactly, and no
/// other entitlement series; the snapshot time in whole seconds, as Go
/// writes it.
#[tokio::test]
async fn the_go_collectors_test_case_gives_its_six_series_exactly() {
    let feature = |key: &str, total: u32, in_use: u32, unassigned: u32| {
        serde_json::json!({
            "emsProductKeyId": key,
            "entitlementFeatures": [ {
                "featureName": "NVIDIA RTX Virtual Workstation", "featureVersion": "1.0",
                "productName": "NVIDIA RTX Virtual Workstation", "licenseType": "CONCURRENT",
                "totalQuantity": total, "inUseQuantity": in_use, "unassignedQuantity": unassigned
            } ]
        })
    };
    let org = serde_json::json!({
        "org": "org-1",
        "virtualGroups": [ {
            "id": 1, "name": "DEFAULT_VG",
            "entitlements": [ {
                "emsEntitlementId": "ent-1",
                "entitlementProductKeys": [feature("pk-72", 72, 53, 0), feature("pk-128", 128, 0, 72)]
            } ],
            "licenseServers": []
        } ]
    });
    let cls = FakeCls::start(org, "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[("NVIDIA_ORG_NAME", "org-1")]);
    let text = exporter.metrics().await;
    let labels = |key: &str| {
        format!(
            r#"{{org_name="org-1",virtual_group_id="1",virtual_group_name="DEFAULT_VG",ems_entitlement_id="ent-1",ems_product_key_id="{key}",feature_name="NVIDIA RTX Virtual Workstation",feature_version="1.0",product_name="NVIDIA RTX Virtual Workstation",license_type="CONCURRENT"}}"#
        )
    };
    let want = [
        format!(
            "nvidia_cls_entitlement_total_quantity{} 128",
            labels("pk-128")
        ),
        format!(
            "nvidia_cls_entitlement_total_quantity{} 72",
            labels("pk-72")
        ),
        format!(
            "nvidia_cls_entitlement_in_use_quantity{} 0",
            labels("pk-128")
        ),
        format!(
            "nvidia_cls_entitlement_in_use_quantity{} 53",
            labels("pk-72")
        ),
        format!(
            "nvidia_cls_entitlement_unassigned_quantity{} 72",
            labels("pk-128")
        ),
        format!(
            "nvidia_cls_entitlement_unassigned_quantity{} 0",
            labels("pk-72")
        ),
    ];
    let got: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["total", "in_use", "unassigned"]
                .iter()
                .any(|q| l.starts_with(&format!("nvidia_cls_entitlement_{q}_quantity{{")))
        })
        .collect();
    assert_eq!(got, want, "{text}");
    assert_eq!(
        value(&text, r#"nvidia_cls_up{org_name="org-1"} "#),
        Some(1.0)
    );
    let stamp = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"nvidia_cls_scrape_timestamp_seconds{org_name="org-1"} "#))
        .expect("a scrape timestamp");
    let seconds: u64 = stamp
        .parse()
        .expect("whole unix seconds, as Go writes them");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(seconds <= now && now - seconds < 60, "{seconds} vs {now}");
}

#[tokio::test]
async fn requests_carry_the_documented_headers_and_encoded_paths() {
    let cls = fake().await;
    let exporter = Exporter::start(
        &cls.base_url(),
        &[("NVIDIA_SERVICE_INSTANCE_ID", "si-configured")],
    );
    exporter.metrics().await;
    let requests = cls.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.header("x-api-key"), Some("test-key"), "{}", r.path);
        assert_eq!(r.header("accept"), Some("application/json"));
        assert!(r
            .header("user-agent")
            .unwrap()
            .starts_with("nvidia-license-server-exporter/"));
    }
    let groups = requests
        .iter()
        .find(|r| r.path.ends_with("/virtual-groups"))
        .unwrap();
    assert_eq!(groups.path, "/v1/org/lic-demo/virtual-groups");
    assert_eq!(groups.query_param("detailedView").as_deref(), Some("true"));
    assert_eq!(
        groups.header("x-nv-service-instance-id"),
        Some("si-configured")
    );
    assert!(
        requests.iter().any(|r| r.path
            == "/v1/org/lic-demo/virtual-groups/1/license-servers/srv-zrh%2002/license-pools"),
        "server ids are percent-encoded path segments: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    // Leases are asked per service instance that the group's servers carry.
    let lease_instances: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/leases"))
        .filter_map(|r| r.header("x-nv-service-instance-id").map(str::to_owned))
        .collect();
    assert!(!lease_instances.is_empty());
    assert!(
        lease_instances.iter().all(|i| i != "si-configured"),
        "{lease_instances:?}"
    );
}

#[tokio::test]
async fn org_names_are_percent_encoded_in_paths() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[("NVIDIA_ORG_NAME", "lic/../x y")]);
    let text = exporter.metrics().await;
    assert_eq!(
        cls.requests()[0].path,
        "/v1/org/lic%2F..%2Fx%20y/virtual-groups"
    );
    // The fake does not know that org: the refresh fails, the exporter serves up 0.
    assert!(text.contains("nvidia_cls_up{org_name=\"lic/../x y\"} 0\n"));
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_for() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let r = http(
        exporter.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3",
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE nvidia_cls_refreshes counter\n"));
    assert!(
        text.contains("nvidia_cls_refreshes_total{org_name=\"lic-demo\",result=\"success\"} 1\n")
    );
    assert!(text.contains("# UNIT nvidia_cls_scrape_duration_seconds seconds\n"));
    assert!(text.contains("# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\nprocess_cpu_seconds_total "));
    let plain = exporter.get("/metrics").await;
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!plain.text().contains("# EOF"));
}

#[tokio::test]
async fn gzip_body_decodes_to_the_plain_body() {
    use std::io::Read;
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let plain = exporter.metrics().await;
    let r = http(
        exporter.addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
    )
    .await;
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    let without_process = |t: &str| {
        t.lines()
            .filter(|l| !l.contains("process_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_process(&unzipped), without_process(&plain));
}

#[tokio::test]
async fn routes_methods_and_head_behave() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[("METRICS_PATH", "/custom")]);
    let health = exporter.get("/healthz").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let landing = exporter.get("/").await;
    assert_eq!(landing.status, 200);
    assert!(landing.text().contains("<a href=\"/custom\">"));
    assert!(landing.text().contains("<a href=\"/healthz\">"));
    assert_eq!(exporter.get("/metrics").await.status, 404);
    assert_eq!(exporter.get("/nope").await.status, 404);
    let post = http(exporter.addr, "POST", "/custom", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let get = exporter.get("/custom").await;
    let head = http(exporter.addr, "HEAD", "/custom", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );
}

#[tokio::test]
async fn failed_refresh_without_snapshot_serves_up_zero_and_no_data() {
    let cls = fake().await;
    cls.set_override("/virtual-groups", Canned::status(500));
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let r = exporter.get("/metrics").await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("nvidia_cls_up{org_name=\"lic-demo\"} 0\n"));
    assert!(text.contains("nvidia_cls_scrape_duration_seconds{"));
    assert!(
        text.contains("nvidia_cls_refreshes_total{org_name=\"lic-demo\",result=\"failure\"} 1\n")
    );
    assert!(!text.contains("nvidia_cls_entitlement"), "{text}");
    assert!(!text.contains("nvidia_cls_license_server"));
    assert!(!text.contains("nvidia_cls_last_success"));
    let told = log_lines(
        &exporter,
        "refresh failed: GET /virtual-groups failed: HTTP 500",
    )
    .await;
    assert_eq!(told.len(), 1, "{}", exporter.stderr());
}

#[tokio::test]
async fn stale_snapshot_is_served_with_up_zero_when_a_refresh_fails() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[("CACHE_TTL", "300ms")]);
    let first = exporter.metrics().await;
    cls.set_override("/virtual-groups", Canned::status(503));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = exporter.metrics().await;
    assert!(second.contains("nvidia_cls_up{org_name=\"lic-demo\"} 0\n"));
    assert!(!data(&first).is_empty());
    assert_eq!(data(&first), data(&second));
    let ts = "nvidia_cls_scrape_timestamp_seconds{org_name=\"lic-demo\"} ";
    assert_eq!(
        value(&first, ts),
        value(&second, ts),
        "timestamp of the served (old) snapshot"
    );
    // Recovery: the next refresh after the TTL succeeds again.
    cls.clear_overrides();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(exporter
        .metrics()
        .await
        .contains("nvidia_cls_up{org_name=\"lic-demo\"} 1\n"));
}

#[tokio::test]
async fn concurrent_scrapes_share_one_refresh() {
    let cls = fake().await;
    // Held before the exporter starts: the first refresh begins at start
    // (the warm start), and the scrapes below must find it still running
    // and join it, not find a fresh cache.
    cls.hold();
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let mut scrapes = Vec::new();
    for _ in 0..20 {
        let addr = exporter.addr;
        scrapes.push(tokio::spawn(async move {
            http(addr, "GET", "/metrics", &[]).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cls.release();
    for s in scrapes {
        let r = s.await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r
            .text()
            .contains("nvidia_cls_up{org_name=\"lic-demo\"} 1\n"));
    }
    assert_eq!(cls.requests_ending_with("/virtual-groups"), 1);
    // Fresh cache: no further API call.
    let before = cls.request_count();
    exporter.metrics().await;
    assert_eq!(cls.request_count(), before);
}

#[tokio::test]
async fn a_refresh_slower_than_scrape_timeout_answers_in_time_with_up_zero() {
    let cls = fake().await;
    cls.set_latency(Duration::from_secs(5));
    let exporter = Exporter::start(&cls.base_url(), &[("SCRAPE_TIMEOUT", "500ms")]);
    let started = std::time::Instant::now();
    let text = exporter.metrics().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(text.contains("nvidia_cls_up{org_name=\"lic-demo\"} 0\n"));
    let told = log_lines(&exporter, "timed out").await;
    assert!(!told.is_empty(), "{}", exporter.stderr());
}

#[tokio::test]
async fn malformed_answers_never_crash_the_exporter() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[("CACHE_TTL", "50ms")]);
    let cases = [
        ("/virtual-groups", Canned::body(200, "{not json")),
        ("/virtual-groups", Canned::body(200, "[]")),
        ("/virtual-groups", Canned::body(200, "")),
        (
            "/virtual-groups",
            Canned::body(200, r#"{"virtualGroups":"nope","paginationInfo":7}"#),
        ),
        (
            "/virtual-groups",
            Canned::body(
                200,
                r#"{"virtualGroups":[{"id":null,"name":{"a":1},"entitlements":[{"entitlementProductKeys":[{"entitlementFeatures":[{"totalQuantity":"1e308","featureName":["x"]}]}]}]}]}"#,
            ),
        ),
        (
            "/license-servers",
            Canned::body(
                200,
                r#"{"licenseServers":[{"id":{"x":1},"licenseServerFeatures":[null,1,{"totalQuantity":-5}]}]}"#,
            ),
        ),
        (
            "/leases/all",
            Canned::body(
                200,
                r#"{"clients":[{"leases":[{"leaseCount":"NaN"}]}],"compressedClients":"!!!"}"#,
            ),
        ),
    ];
    for (path, canned) in cases {
        cls.clear_overrides();
        cls.set_override(path, canned);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let r = exporter.get("/metrics").await;
        assert_eq!(r.status, 200, "after {path}");
        let text = r.text();
        assert!(
            text.contains("nvidia_cls_up{org_name=\"lic-demo\"} "),
            "after {path}: {text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let v = line.rsplit(' ').next().unwrap();
            assert!(
                v.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&v),
                "bad sample line {line}"
            );
        }
    }
    assert_eq!(exporter.get("/healthz").await.status, 200);
    let told = log_lines(&exporter, "expected a JSON object").await;
    assert!(!told.is_empty(), "{}", exporter.stderr());
    assert!(!exporter.stderr().contains("panicked"));
}

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_setting() {
    let base = [("NVIDIA_API_KEY", "k"), ("NVIDIA_ORG_NAME", "o")];
    for (name, value, needle) in [
        ("SCRAPE_TIMEOUT", "abc", "SCRAPE_TIMEOUT=\"abc\""),
        ("PARALLELISM", "0", "PARALLELISM=\"0\""),
        (
            "NVIDIA_API_BASE_URL",
            "ftp://x",
            "NVIDIA_API_BASE_URL=\"ftp://x\"",
        ),
        ("LISTEN_ADDRESS", "nope", "LISTEN_ADDRESS=\"nope\""),
    ] {
        let mut env = base.to_vec();
        env.push((name, value));
        let (status, stdout, stderr) = run_to_end(&env, &[]);
        assert_eq!(status.code(), Some(2), "{name}={value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(stdout.is_empty());
    }
    let (status, _, stderr) = run_to_end(&[("NVIDIA_API_KEY", "k")], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("NVIDIA_ORG_NAME"), "{stderr}");
}

#[test]
fn help_and_version_exit_zero() {
    let (status, stdout, _) = run_to_end(&[], &["--help"]);
    assert!(status.success());
    for name in [
        "NVIDIA_API_KEY",
        "NVIDIA_ORG_NAME",
        "LISTEN_ADDRESS",
        "CACHE_TTL",
        "PARALLELISM",
        "OTEL_ENABLED",
        "CLS_PAGE_SIZE",
    ] {
        assert!(stdout.contains(name), "--help lists {name}");
    }
    let (status, stdout, _) = run_to_end(&[], &["--version"]);
    assert!(status.success());
    assert!(
        stdout.starts_with("nvidia-license-server-exporter 0.1.0 (revision "),
        "{stdout}"
    );
    assert!(stdout.contains("rustc "), "{stdout}");
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_exporter_with_status_zero() {
    let cls = fake().await;
    for signal in ["TERM", "INT"] {
        let mut exporter = Exporter::start(&cls.base_url(), &[]);
        exporter.metrics().await;
        let status = exporter.signal_and_wait(signal);
        assert_eq!(status.code(), Some(0), "SIG{signal}");
        assert!(exporter.stderr().contains(&format!("SIG{signal} received")));
    }
}

#[tokio::test]
async fn healthcheck_subcommand_reports_the_listener_state() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let listen = exporter.addr.to_string();
    let (status, stdout, stderr) = run_to_end(&[("LISTEN_ADDRESS", &listen)], &["healthcheck"]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stdout.is_empty() && stderr.is_empty(), "silent on success");
    drop(exporter);
    let (status, _, stderr) = run_to_end(&[("LISTEN_ADDRESS", &listen)], &["healthcheck"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.starts_with("healthcheck failed: connect"),
        "{stderr}"
    );
}

/// `promtool check metrics` (from Debian's prometheus package, which .ci/run
/// installs) finds no error and no lint problem in the exposition.
#[tokio::test]
async fn promtool_check_metrics_is_clean() {
    let cls = fake().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let text = exporter.metrics().await;
    if let Some(verdict) = support::tools::promtool(&text) {
        verdict.expect("promtool check metrics: no error, no lint warning");
    }
}
