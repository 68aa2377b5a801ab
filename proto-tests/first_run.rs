//! The first ten minutes, through the real binary: `check` against the
//! fake CLS (an org read, a key rejected or without access, CLS unreachable,
//! TLS, a timeout, a part that fails; text and JSON), the warm start (the
//! first refresh logged before any scrape, a scrape during it joining it),
//! the status page after a failed refresh, `scripts/demo` (a realistic org,
//! Prometheus with the shipped rules, every process stopped on a signal),
//! and the figures of the docs coming from benches/RESULTS.md alone.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::canned::Canned;
use support::demo_org::{date, demo_org, today, EXPIRING_IN_DAYS};
use support::exporter::{http, log_lines, refresh_failures, run_to_end, test_env, Exporter, BIN};
use support::fake_cls::FakeCls;
use support::scratch::free_addr;
use support::series::{find, one, parse_strict, up};
use support::tools::{output_text, promtool, run_bounded, tool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const KEY: &str = "test-key";

/// The fake serving the demo org, dated from today.
async fn demo_cls() -> FakeCls {
    FakeCls::start(demo_org(today()), KEY).await
}

/// What a finished `check` left: exit code, stdout, stderr.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Checked {
    fn json(&self) -> Value {
        assert_eq!(self.stdout.lines().count(), 1, "one line: {}", self.stdout);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs `check` (and `args`) with the test settings against `base_url` and
/// `extra`, off the runtime that serves the fake.
async fn check(base_url: &str, extra: &[(&str, &str)], args: &[&str]) -> Checked {
    let env = test_env(base_url, extra);
    let args: Vec<String> = std::iter::once("check")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_end(&env, &args)
    })
    .await
    .unwrap();
    assert!(
        !stdout.contains(KEY) && !stderr.contains(KEY),
        "the key is never printed"
    );
    Checked {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// The demo org as `check -output json` reports it (but the duration).
fn demo_report(partial_failures: Value, pools: u64, api_calls: u64) -> Value {
    json!({
        "org": "lic-demo", "ok": true, "error": null,
        "virtual_groups": 3, "license_servers": 4, "license_pools": pools, "features": 4,
        "active_leases": 365.0, "entitlements": 5,
        "nearest_end": {
            "date": date(today() + EXPIRING_IN_DAYS), "days": EXPIRING_IN_DAYS,
            "virtual_group_name": "Design Studio", "feature_name": "Quadro-Virtual-DWS",
            "ems_entitlement_id": "EMS-ENT-4471-0137", "ems_product_key_id": "PK-RTXVWS-4471-A",
        },
        "partial_failures": partial_failures,
        "api_calls": api_calls, "pages": api_calls, "retries": 0,
    })
}

/// `value` without its `duration_seconds`, which it must have.
fn without_duration(mut value: Value) -> Value {
    let duration = value
        .as_object_mut()
        .and_then(|o| o.remove("duration_seconds"));
    assert!(
        duration
            .as_ref()
            .and_then(Value::as_f64)
            .is_some_and(|d| d >= 0.0),
        "duration_seconds: {duration:?}"
    );
    value
}

#[tokio::test]
async fn check_reads_the_org_once_and_prints_what_it_found() {
    let cls = demo_cls().await;
    let text = check(&cls.base_url(), &[], &[]).await;
    assert_eq!(text.code, Some(0), "{}{}", text.stdout, text.stderr);
    // 1 group listing, 3 server listings, 4 pool listings, 4 lease listings.
    assert_eq!(cls.request_count(), 12, "one refresh, nothing served");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert!(
        lines[0].starts_with("CLS org \"lic-demo\" read: 12 API calls (12 pages, 0 retries) in "),
        "{}",
        text.stdout
    );
    let end = date(today() + EXPIRING_IN_DAYS);
    assert_eq!(
        lines[1..],
        [
            "  virtual groups   3",
            "  license servers  4",
            "  license pools    7",
            "  features         4",
            "  active leases    365",
            &*format!(
                "  entitlements     5 (nearest end {end}, in {EXPIRING_IN_DAYS} days: \
                 Quadro-Virtual-DWS of EMS-ENT-4471-0137, key PK-RTXVWS-4471-A, group Design Studio)"
            ),
        ]
    );
    assert_eq!(text.stderr, "", "nothing to warn about");

    let json = check(&cls.base_url(), &[], &["-output", "json"]).await;
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    assert_eq!(without_duration(json.json()), demo_report(json!([]), 7, 12));
}

#[tokio::test]
async fn check_lists_a_part_that_failed_and_still_exits_0() {
    let cls = demo_cls().await;
    let pools = "/license-servers/c8b2f1a0-6e5d-4c3b-9a87-5e6f7a8b9c33/license-pools";
    cls.set_override(pools, Canned::status(404));
    let text = check(&cls.base_url(), &[], &[]).await;
    assert_eq!(text.code, Some(0), "{}", text.stdout);
    let reason = format!("GET /virtual-groups/102{pools} failed: HTTP 404");
    assert!(
        text.stdout.ends_with(&format!(
            "  license pools    6\n  features         4\n  active leases    365\n  entitlements     5{}\n\
             1 part(s) of the org could not be read and are missing above:\n  license_pools: {reason}\n",
            text.stdout.lines().nth(6).unwrap().trim_start_matches("  entitlements     5")
        )),
        "{}",
        text.stdout
    );
    let json = check(&cls.base_url(), &[], &["--output=json"]).await;
    assert_eq!(json.code, Some(0));
    let failures = json!([{ "endpoint": "license_pools", "message": reason }]);
    // The failed listing is a call but no page.
    let mut want = demo_report(failures, 6, 12);
    want["pages"] = json!(11);
    assert_eq!(without_duration(json.json()), want);
}

/// Every way CLS cannot be read: exit 1, the first line says why, the JSON
/// has the kind; the calls made are counted.
#[tokio::test]
async fn check_says_in_one_line_why_cls_could_not_be_read() {
    let cls = demo_cls().await;
    let forbidden = demo_cls().await;
    forbidden.set_override("/virtual-groups", Canned::status(403));
    let held = demo_cls().await;
    held.hold();
    let unreachable = format!("http://{}", free_addr());
    // The fake speaks plain HTTP: a TLS client gets no handshake from it.
    let plain_as_tls = cls.base_url().replace("http://", "https://");
    struct Case<'a> {
        what: &'a str,
        base: String,
        extra: &'a [(&'a str, &'a str)],
        kind: &'a str,
        says: &'a str,
        calls: u64,
    }
    let cases = [
        Case {
            what: "key rejected",
            base: cls.base_url(),
            extra: &[("NVIDIA_API_KEY", "wrong-key")],
            kind: "key_rejected",
            says: "GET /virtual-groups failed: HTTP 401: the API key was rejected; check NVIDIA_API_KEY and that it has \"Licensing State\" access",
            calls: 1,
        },
        Case {
            what: "key lacks access",
            base: forbidden.base_url(),
            extra: &[],
            kind: "key_lacks_access",
            says: "GET /virtual-groups failed: HTTP 403: the API key lacks access; it needs the \"Licensing State\" access type for this org",
            calls: 1,
        },
        Case {
            what: "unreachable",
            base: unreachable,
            extra: &[("SCRAPE_TIMEOUT", "5s")],
            kind: "unreachable",
            says: "CLS is unreachable: GET /virtual-groups failed: client error (Connect): tcp connect error: Connection refused",
            calls: 4,
        },
        Case {
            what: "tls",
            base: plain_as_tls,
            extra: &[("SCRAPE_TIMEOUT", "5s")],
            kind: "tls",
            says: "the TLS handshake with CLS failed: GET /virtual-groups failed: client error (Connect): ",
            calls: 4,
        },
        Case {
            what: "timeout",
            base: held.base_url(),
            extra: &[("SCRAPE_TIMEOUT", "1s")],
            kind: "timeout",
            says: "CLS did not answer in time: ",
            calls: 1,
        },
    ];
    for Case {
        what,
        base,
        extra,
        kind,
        says,
        calls,
    } in cases
    {
        let text = check(&base, extra, &[]).await;
        assert_eq!(text.code, Some(1), "{what}: {}{}", text.stdout, text.stderr);
        let lines: Vec<&str> = text.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{what}: {}", text.stdout);
        let why = lines[0]
            .strip_prefix("CLS org \"lic-demo\" could not be read: ")
            .unwrap_or_else(|| panic!("{what}: {}", lines[0]));
        assert!(why.starts_with(says), "{what}: {why}");
        let json = check(&base, extra, &["-output", "json"]).await;
        assert_eq!(json.code, Some(1), "{what}");
        let json = json.json();
        assert_eq!(json["ok"], false, "{what}");
        assert_eq!(json["error"]["kind"], kind, "{what}");
        assert!(
            why.ends_with(json["error"]["message"].as_str().unwrap()),
            "{what}: the same reason in both: {why} / {json}"
        );
        assert!(json["virtual_groups"].is_null() && json["active_leases"].is_null());
        // A timed-out request is counted when it ends, which the refresh
        // deadline can cut short.
        if kind != "timeout" {
            assert_eq!(json["api_calls"], calls, "{what}: {json}");
            assert_eq!(json["retries"], calls - 1, "{what}: {json}");
        }
        assert!(
            lines[1].starts_with(&format!("  {} API calls (0 pages, ", json["api_calls"])),
            "{what}: {}",
            lines[1]
        );
    }
    held.release();
}

#[tokio::test]
async fn check_with_bad_settings_is_exit_2_with_one_line_and_no_report() {
    let cls = demo_cls().await;
    for (extra, args, says) in [
        (
            &[("SCRAPE_TIMEOUT", "soon")][..],
            &[][..],
            "SCRAPE_TIMEOUT=\"soon\" is not valid: ",
        ),
        (
            &[],
            &["-output", "yaml"],
            "-output=\"yaml\" is not valid: expected text or json",
        ),
        (
            &[("NVIDIA_ORG_NAME", "")],
            &[],
            "NVIDIA_ORG_NAME is required",
        ),
        (
            &[("NVIDIA_API_CA_FILE", "/no/such/ca.pem")],
            &[],
            "NVIDIA_API_CA_FILE",
        ),
    ] {
        let out = check(&cls.base_url(), extra, args).await;
        assert_eq!(out.code, Some(2), "{extra:?} {args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "");
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr
                .starts_with(&format!("nvidia-license-server-exporter: {says}")),
            "{}",
            out.stderr
        );
    }
    assert_eq!(cls.request_count(), 0, "CLS is not asked with bad settings");
}

#[test]
fn help_shows_check_next_to_healthcheck() {
    let (status, help, _) = run_to_end(&[], &["--help"]);
    assert!(status.success());
    assert!(help.contains("  nvidia-license-server-exporter check [-output text|json] [flags]\n"));
    let check = help.find("\n  check\n").expect("check in the subcommands");
    let healthcheck = help.find("\n  healthcheck\n").expect("healthcheck");
    assert!(check < healthcheck, "{help}");
}

// -------------------------------------------------------------- warm start

#[tokio::test]
async fn the_first_refresh_runs_at_start_and_is_logged_before_any_scrape() {
    let cls = demo_cls().await;
    let exporter = Exporter::start(&cls.base_url(), &[]);
    let lines = log_lines(&exporter, " INFO first refresh succeeded: ").await;
    assert_eq!(lines.len(), 1, "{}", exporter.stderr());
    let end = date(today() + EXPIRING_IN_DAYS);
    assert!(
        lines[0].contains(&format!(
            "first refresh succeeded: 3 virtual groups, 4 license servers, 7 license pools, 4 features, \
             365 active leases, 5 entitlements (nearest end {end}, in {EXPIRING_IN_DAYS} days) \
             duration_seconds="
        )),
        "{}",
        lines[0]
    );
    assert_eq!(cls.request_count(), 12, "the whole org, before any scrape");
    let stderr = exporter.stderr();
    let listening = stderr.find(" listening address=").unwrap();
    let refreshed = stderr.find("first refresh succeeded").unwrap();
    assert!(listening < refreshed, "the port is bound first: {stderr}");
    // The first scrape is served from the warm cache.
    assert_eq!(up(&exporter.metrics().await), Some(1.0));
    assert_eq!(cls.request_count(), 12);
}

#[tokio::test]
async fn a_bad_key_or_an_unreachable_cls_shows_in_the_log_within_seconds_of_start() {
    let cls = demo_cls().await;
    let started = Instant::now();
    let rejected = Exporter::start(&cls.base_url(), &[("NVIDIA_API_KEY", "wrong-key")]);
    let unreachable = Exporter::start(
        &format!("http://{}", free_addr()),
        &[("SCRAPE_TIMEOUT", "5s")],
    );
    let failures = refresh_failures(&rejected).await;
    assert_eq!(
        failures,
        ["GET /virtual-groups failed: HTTP 401: the API key was rejected; check NVIDIA_API_KEY and that it has \"Licensing State\" access"]
    );
    let failures = refresh_failures(&unreachable).await;
    assert_eq!(failures.len(), 1, "{}", unreachable.stderr());
    assert!(
        failures[0].contains("tcp connect error: Connection refused"),
        "{}",
        failures[0]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for exporter in [&rejected, &unreachable] {
        assert!(!exporter.stderr().contains("first refresh succeeded"));
    }
}

#[tokio::test]
async fn a_scrape_during_the_first_refresh_joins_it() {
    let cls = demo_cls().await;
    cls.hold();
    let exporter = Exporter::start(&cls.base_url(), &[]);
    // The warm start's group listing arrives (and waits) with no scrape made.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cls.requests_ending_with("/virtual-groups") == 0 {
        assert!(Instant::now() < deadline, "no refresh at start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scrapes: Vec<_> = (0..5)
        .map(|_| {
            let addr = exporter.addr;
            tokio::spawn(async move { http(addr, "GET", "/metrics", &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cls.release();
    for scrape in scrapes {
        let r = scrape.await.unwrap();
        assert_eq!((r.status, up(&r.text())), (200, Some(1.0)));
    }
    assert_eq!(
        cls.requests_ending_with("/virtual-groups"),
        1,
        "one refresh"
    );
    let text = exporter.metrics().await;
    assert_eq!(
        one(
            &text,
            "nvidia_cls_refreshes_total",
            &[("result", "success")]
        ),
        Some(1.0)
    );
}

// ------------------------------------------------------------- status page

#[tokio::test]
async fn the_status_page_says_why_the_refresh_failed_and_when_it_was_tried() {
    let cls = demo_cls().await;
    let exporter = Exporter::start(&cls.base_url(), &[("NVIDIA_API_KEY", "wrong-key")]);
    assert_eq!(refresh_failures(&exporter).await.len(), 1);
    let page = exporter.get("/").await.text();
    assert!(
        page.contains("<tr><th>Result</th><td><span class=\"fail\">failed</span></td></tr>\n<tr><th>Tried</th><td>20"),
        "{page}"
    );
    assert!(page.contains(
        "<tr><th>Reason</th><td class=\"reason\">GET /virtual-groups failed: HTTP 401: the API key was rejected; \
         check NVIDIA_API_KEY and that it has &quot;Licensing State&quot; access</td></tr>"
    ));
    assert!(page.contains("No data: no refresh has succeeded yet (the reason is above)."));
    assert!(!page.contains("No data yet") && !page.contains("wrong-key"));
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
}

// -------------------------------------------------------------------- demo

/// The fake CLS as a program, for scripts/demo: the `fake-cls` example,
/// built once (quick: the test build compiled everything it needs) into
/// the target directory and profile of the binary under test.
fn fake_cls_bin() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = Path::new(BIN).parent().expect("the binary's directory");
        let target_dir = profile_dir.parent().expect("the target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--locked", "--example", "fake-cls"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(ROOT);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let out = run_bounded(&mut cargo, None, Duration::from_secs(600));
        assert!(
            out.status.success(),
            "cargo build --example fake-cls: {}",
            output_text(&out)
        );
        profile_dir.join("examples/fake-cls")
    })
}

/// scripts/demo running in its own process group, as a terminal runs it.
struct Demo {
    child: Child,
    cls: SocketAddr,
    exporter: SocketAddr,
    prometheus: SocketAddr,
    stdout: std::sync::mpsc::Receiver<String>,
}

impl Demo {
    /// Starts it on free ports and waits (at most 60 s) for its last line.
    fn start(args: &[&str]) -> Demo {
        let (cls, exporter, prometheus) = (free_addr(), free_addr(), free_addr());
        let mut child = Command::new(Path::new(ROOT).join("scripts/demo"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("EXPORTER_BIN", BIN)
            .env("FAKE_CLS_BIN", fake_cls_bin())
            .env("DEMO_CLS_ADDR", cls.to_string())
            .env("DEMO_LISTEN", exporter.to_string())
            .env("DEMO_PROMETHEUS_ADDR", prometheus.to_string())
            .env("DEMO_PROMETHEUS_INTERVAL", "1s")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/demo");
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let demo = Demo {
            child,
            cls,
            exporter,
            prometheus,
            stdout,
        };
        let mut printed = Vec::new();
        loop {
            match demo.stdout.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line == "demo: Ctrl-C stops everything" => break,
                Ok(line) => printed.push(line),
                Err(_) => panic!("scripts/demo did not come up: {printed:#?}"),
            }
        }
        for url in [
            format!("demo: status page  http://{exporter}/"),
            format!("demo: metrics      http://{exporter}/metrics"),
        ] {
            assert!(printed.contains(&url), "{url} in {printed:#?}");
        }
        demo
    }

    /// Sends `signal` to the script alone, or (`to_group`) to its whole
    /// process group as Ctrl-C does; waits at most 15 s for it to end.
    fn stop(&mut self, signal: &str, to_group: bool) {
        let pid = self.child.id() as i32;
        let target = if to_group { -pid } else { pid };
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), "--", &target.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = support::tools::wait_bounded(&mut self.child, Duration::from_secs(15));
        assert!(
            status.is_some(),
            "scripts/demo did not end after SIG{signal}"
        );
    }

    /// Whether anything accepts a connection on `addr`.
    fn listening(addr: SocketAddr) -> bool {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed test must not leave the processes behind: the group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The demo org looks like a real one: every server feature leased between
/// 20 and 95 %, one product key ending within 30 days, a few hundred
/// leases, no `unknown` label, and an exposition promtool passes.
fn assert_realistic(text: &str) {
    assert_eq!(up(text), Some(1.0));
    let samples = parse_strict(text).expect("a strict exposition");
    assert!(
        samples
            .iter()
            .all(|s| s.labels.iter().all(|(_, v)| v != "unknown")),
        "no unknown label: {text}"
    );
    let capacity = find(
        text,
        "nvidia_cls_license_server_feature_total_quantity",
        &[],
    );
    assert_eq!(capacity.len(), 6);
    for total in &capacity {
        let labels: Vec<(&str, &str)> = total
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let active = one(
            text,
            "nvidia_cls_license_server_feature_active_leases",
            &labels,
        )
        .expect("active leases of every server feature");
        let share = active / total.value;
        assert!((0.2..=0.95).contains(&share), "{labels:?}: {share}");
    }
    let leases: f64 = find(text, "nvidia_cls_license_server_active_leases", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(
        (200.0..1000.0).contains(&leases),
        "a few hundred leases: {leases}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let soon: Vec<_> = find(text, "nvidia_cls_entitlement_end_timestamp_seconds", &[])
        .into_iter()
        .filter(|s| s.value > now && s.value < now + 30.0 * 86_400.0)
        .collect();
    assert_eq!(soon.len(), 1, "one product key ends within 30 days");
    assert_eq!(
        soon[0].label("ems_product_key_id"),
        Some("PK-RTXVWS-4471-A")
    );
    if let Some(checked) = promtool(text) {
        assert_eq!(checked, Ok(()), "promtool check metrics");
    }
}

#[tokio::test]
async fn the_demo_serves_a_realistic_org_and_stops_on_sigterm_sighup_and_ctrl_c() {
    for (signal, to_group) in [("TERM", false), ("HUP", false), ("INT", true)] {
        let mut demo = Demo::start(&[]);
        let text = http(demo.exporter, "GET", "/metrics", &[]).await.text();
        if signal == "TERM" {
            assert_realistic(&text);
        } else {
            assert_eq!(up(&text), Some(1.0));
        }
        demo.stop(signal, to_group);
        for addr in [demo.cls, demo.exporter] {
            assert!(
                !Demo::listening(addr),
                "{addr} still listens after SIG{signal}"
            );
        }
    }
}

async fn prometheus_get(addr: SocketAddr, path: &str) -> Value {
    let r = http(addr, "GET", path, &[]).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).expect("Prometheus answers JSON")
}

#[tokio::test]
async fn the_demo_with_prometheus_shows_the_recording_rules_and_the_expiry_alert() {
    if tool("prometheus", "apt-get install prometheus").is_none() {
        return;
    }
    let mut demo = Demo::start(&["--prometheus"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    // Prometheus answers its API with 503 until its storage and rules are
    // loaded, which takes longer on a loaded machine.
    while http(demo.prometheus, "GET", "/-/ready", &[]).await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alert = loop {
        let alerts = prometheus_get(demo.prometheus, "/api/v1/alerts").await;
        let expiring = alerts["data"]["alerts"].as_array().and_then(|all| {
            all.iter()
                .find(|a| a["labels"]["alertname"] == "NvidiaClsEntitlementExpiringSoon")
                .cloned()
        });
        if let Some(alert) = expiring {
            break alert;
        }
        assert!(
            Instant::now() < deadline,
            "no expiry alert within 90 s: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        alert["state"], "pending",
        "pending for its `for: 1h`: {alert}"
    );
    assert_eq!(alert["labels"]["ems_product_key_id"], "PK-RTXVWS-4471-A");
    assert_eq!(
        alert["annotations"]["summary"],
        format!(
            "Entitlement EMS-ENT-4471-0137 key PK-RTXVWS-4471-A (Quadro-Virtual-DWS) ends in {} days",
            EXPIRING_IN_DAYS - 1
        ),
        "the end date is the start of its day: under {EXPIRING_IN_DAYS} whole days away"
    );
    let rules = prometheus_get(demo.prometheus, "/api/v1/rules?type=record").await;
    let recording: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(recording.len(), 6, "{rules}");
    for rule in &recording {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    // Prometheus's own UI lists the alert (Debian's package serves the
    // classic, server-rendered one).
    let page = http(demo.prometheus, "GET", "/classic/alerts", &[]).await;
    if page.status == 200 {
        assert!(page.text().contains("NvidiaClsEntitlementExpiringSoon"));
    }
    demo.stop("TERM", false);
    for addr in [demo.cls, demo.exporter, demo.prometheus] {
        assert!(!Demo::listening(addr), "{addr} still listens");
    }
}

// ---------------------------------------------------------- figures, once

/// Measured figures (sizes, memory, timings) change with the code: they are
/// written once, by benches/all.py into benches/RESULTS.md, and the other
/// documents link there. What may stay are bounds the code or a test sets.
#[test]
fn figures_that_change_with_the_code_are_only_in_benches_results() {
    const BOUNDS: &[&str] = &[
        "64 MiB",  // the body cap, and the RSS bound of the tests
        "48 MiB",  // the peak RSS bound of the fault matrix
        "4 MiB",   // the binary size the static test allows
        "500 ms",  // the CACHE_TTL of the load test
        "64 KiB",  // the sendfile threshold; the long strings of the fault matrix
        "100 MiB", // the body the fault matrix declares
    ];
    let mut docs: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md"]
        .iter()
        .map(|f| Path::new(ROOT).join(f))
        .collect();
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let units = ["MiB", "KiB", "MB", "KB", "ms", "µs"];
    let mut found = Vec::new();
    for path in &docs {
        let text = std::fs::read_to_string(path).unwrap();
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            let number = pair[0].trim_start_matches(['(', '~', '≈']);
            let unit = pair[1].trim_end_matches([',', '.', ')', ';', ':']);
            let is_number = !number.is_empty()
                && number
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == ',');
            if is_number && units.contains(&unit) {
                let figure = format!("{number} {unit}");
                if !BOUNDS.contains(&figure.as_str()) {
                    found.push(format!("{}: {figure}", path.display()));
                }
            }
            if pair[0].contains('×') && pair[0].chars().any(|c| c.is_ascii_digit()) {
                found.push(format!("{}: {}", path.display(), pair[0]));
            }
        }
    }
    assert!(
        found.is_empty(),
        "measured figures belong in benches/RESULTS.md (benches/all.py), linked from here: {found:#?}"
    );
}

/// The README is the first page a user reads: short, the details in docs/.
#[test]
fn the_readme_stays_under_15_kb() {
    let size = std::fs::metadata(Path::new(ROOT).join("README.md"))
        .unwrap()
        .len();
    assert!(
        size < 15_000,
        "README.md is {size} bytes: move detail to docs/"
    );
}
