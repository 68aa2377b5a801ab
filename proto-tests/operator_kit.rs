//! The operator's kit, end to end: a real Prometheus server scrapes the
//! exporter running against the fake CLS; the alert rules pass promtool's
//! checks and unit tests; the status page renders in headless Chromium.

mod support;

use support::fake_cls::fixture;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::demo_org::{date, demo_org, today, EXPIRING_IN_DAYS};
use support::exporter::{http, refresh_failures, Exporter};
use support::fake_cls::FakeCls;
use support::scratch::{free_addr, scratch_dir};
use support::tools::{output_text, run_bounded, tool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = tool("promtool", "apt-get install prometheus") else {
        return;
    };
    let dir = format!("{ROOT}/deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = run_bounded(
            Command::new(&promtool).args(args).current_dir(&dir),
            None,
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "promtool {args:?}: {}",
            output_text(&out)
        );
    }
}

async fn prom_query(prometheus: SocketAddr, query: &str) -> Vec<Value> {
    let r = http(
        prometheus,
        "GET",
        &format!(
            "/api/v1/query?query={}",
            utf8_percent_encode(query, NON_ALPHANUMERIC)
        ),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "{e}: {:?} {:?}",
            r.headers,
            String::from_utf8_lossy(&r.body)
        )
    });
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Prometheus (Debian's package) scrapes the exporter; every family the
/// fixture produces arrives with the fake's values, label escaping intact.
#[tokio::test]
async fn real_prometheus_scrapes_every_family_intact() {
    let Some(prometheus_bin) = tool("prometheus", "apt-get install prometheus") else {
        return;
    };
    let cls = FakeCls::start(fixture(), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[("CACHE_TTL", "2s")]);
    let dir = scratch_dir("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: nvidia-cls\n    static_configs:\n      - targets: ['{}']\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml"),
        exporter.addr
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_addr().port();
    let _prometheus = KillOnDrop(
        Command::new(prometheus_bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let prometheus: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Wait (at most 60 s) until the target is up and the data is queryable.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(prometheus).await.is_ok() {
            let r = http(prometheus, "GET", "/api/v1/targets", &[]).await;
            let targets: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let up = targets["data"]["activeTargets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["health"] == "up"));
            if up
                && !prom_query(prometheus, "nvidia_cls_license_server_info")
                    .await
                    .is_empty()
                && !prom_query(
                    prometheus,
                    "nvidia_cls:entitlement_total_quantity:sum_by_feature",
                )
                .await
                .is_empty()
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the exporter within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let value = |result: &Value| result["value"][1].as_str().unwrap().parse::<f64>().unwrap();
    let one = |results: Vec<Value>, what: &str| -> Value {
        assert_eq!(results.len(), 1, "{what}: {results:?}");
        results.into_iter().next().unwrap()
    };

    // The label with a quote, backslash, newline and non-ASCII text survives.
    let zrh = one(
        prom_query(prometheus, r#"nvidia_cls_license_server_feature_total_quantity{server_name="zrh-ls-01",feature_name="Quadro-Virtual-DWS"}"#).await,
        "zrh DWS capacity",
    );
    assert_eq!(
        zrh["metric"]["virtual_group_name"],
        "Zürich \"HQ\" \\ lab\nwest"
    );
    assert_eq!(zrh["metric"]["org_name"], "lic-demo");
    assert_eq!(value(&zrh), 8.0);

    let expectations: [(&str, f64); 13] = [
        (r#"nvidia_cls_up"#, 1.0),
        (
            r#"nvidia_cls_entitlement_total_quantity{virtual_group_id="1",ems_product_key_id="EMS-PK-101-A",feature_name="Quadro-Virtual-DWS"}"#,
            10.0,
        ),
        (
            r#"nvidia_cls_entitlement_total_quantity{virtual_group_id="1",ems_product_key_id="EMS-PK-101-B",feature_name="Quadro-Virtual-DWS"}"#,
            5.0,
        ),
        // The shipped recording rules give the per-feature view: both
        // product keys summed.
        (
            r#"nvidia_cls:entitlement_total_quantity:sum_by_feature{virtual_group_id="1",feature_name="Quadro-Virtual-DWS"}"#,
            15.0,
        ),
        (
            r#"nvidia_cls:entitlement_in_use_quantity:sum_by_feature{virtual_group_id="1",feature_name="Quadro-Virtual-DWS"}"#,
            4.0,
        ),
        (
            r#"nvidia_cls:entitlement_unassigned_quantity:sum_by_feature{virtual_group_id="1",feature_name="Quadro-Virtual-DWS"}"#,
            6.0,
        ),
        (
            r#"nvidia_cls:entitlement_total_quantity:sum_by_feature{virtual_group_id="1",feature_name="GRID-Virtual-Apps"}"#,
            10.0,
        ),
        (
            r#"nvidia_cls_license_server_feature_active_leases{server_name="zrh-ls-01",feature_name="Quadro-Virtual-DWS"}"#,
            3.0,
        ),
        (
            r#"nvidia_cls_license_server_active_leases{server_name="tokyo-ls-01"}"#,
            4.0,
        ),
        (
            r#"nvidia_cls_license_pool_feature_allotment_quantity{pool_name="東京 pool",feature_name="GRID-Virtual-PC"}"#,
            20.0,
        ),
        (
            r#"nvidia_cls_license_pool_feature_in_use_quantity{pool_name="東京 pool",feature_name="GRID-Virtual-PC"}"#,
            3.0,
        ),
        (
            r#"nvidia_cls_entitlement_end_timestamp_seconds{ems_product_key_id="EMS-PK-101-A"}"#,
            1_830_211_200.0,
        ),
        (r#"nvidia_cls_unattributed_leases"#, 1.0),
    ];
    for (query, want) in expectations {
        assert_eq!(
            value(&one(prom_query(prometheus, query).await, query)),
            want,
            "{query}"
        );
    }
    assert_eq!(
        prom_query(
            prometheus,
            r#"nvidia_cls_license_server_info{status="unknown"}"#
        )
        .await
        .len(),
        1,
        "whitespace-only status is exported as unknown"
    );
    // Every family of the exposition reached Prometheus.
    let names: Vec<String> = exporter
        .metrics()
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        assert!(
            !prom_query(prometheus, &name).await.is_empty(),
            "{name} is missing in Prometheus"
        );
    }
}

/// Headless Chromium (Debian's package) loads the status page from the
/// running exporter: hostile text escaped; after a failed refresh, the
/// reason and when it was tried; with the demo org, the org, the refresh
/// result, bars and expiry dates. The screenshot (the README's, with
/// SAVE_SCREENSHOT=docs/status-page.png) is of the demo org: names in the
/// Latin script, which Debian's default fonts cover.
#[tokio::test]
async fn status_page_renders_in_headless_chromium() {
    let Some(chromium) = tool("chromium", "apt-get install chromium") else {
        return;
    };
    let cls = FakeCls::start(fixture(), "test-key").await;
    let exporter = Exporter::start(&cls.base_url(), &[("NVIDIA_ORG_NAME", "lic-demo<script>")]);
    let page = exporter.get("/").await.text();
    assert!(page.contains("lic-demo&lt;script&gt;"));
    assert!(!page.contains("<script>"));
    drop(exporter);

    let dir = scratch_dir("chromium");
    let run = |url: &str, extra: &[String]| {
        let out = run_bounded(
            Command::new(&chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                ])
                .arg(format!("--user-data-dir={}", dir.join("profile").display()))
                .args(extra)
                .arg(url),
            None,
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dump = ["--dump-dom".to_owned()];

    let rejected = Exporter::start(&cls.base_url(), &[("NVIDIA_API_KEY", "wrong-key")]);
    assert_eq!(refresh_failures(&rejected).await.len(), 1);
    let dom = run(&format!("http://{}/", rejected.addr), &dump);
    assert!(dom.contains("<span class=\"fail\">failed</span>"), "{dom}");
    assert!(dom.contains("<tr><th>Tried</th><td>20"), "{dom}");
    assert!(
        dom.contains("GET /virtual-groups failed: HTTP 401: the API key was rejected"),
        "{dom}"
    );
    assert!(!dom.contains("No data yet") && !dom.contains("wrong-key"));
    drop(rejected);

    let demo = FakeCls::start(demo_org(today()), "test-key").await;
    let exporter = Exporter::start(&demo.base_url(), &[]);
    exporter.metrics().await; // the first refresh, done
    let url = format!("http://{}/", exporter.addr);
    let dom = run(&url, &dump);
    assert!(dom.contains("<strong>lic-demo</strong>"), "{dom}");
    assert!(dom.contains("succeeded"));
    assert!(dom.contains("<td>Design Studio</td><td>cls-eu-west-1</td><td>Quadro-Virtual-DWS</td>"));
    assert!(
        dom.contains("style=\"width:81.2%\""),
        "bar for 52 of 64 leases"
    );
    assert!(dom.contains("52 / 64"));
    let expiring = format!(
        "<span class=\"soon\">{} ({EXPIRING_IN_DAYS} days)</span>",
        date(today() + EXPIRING_IN_DAYS)
    );
    assert!(dom.contains(&expiring), "{expiring} in {dom}");
    let shot = dir.join("status-page.png");
    run(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1040".to_owned(),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "a real screenshot"
    );
    if let Some(target) = std::env::var_os("SAVE_SCREENSHOT") {
        std::fs::copy(&shot, target).unwrap();
    }
}
