//! Protocol tests of the OTLP backlog, over gRPC and OTLP/HTTP: the real
//! binary, the fake CLS, and the in-process receiver, on 127.0.0.1. A
//! collector that is down is a port nothing listens on (connections are
//! refused); it comes up on that port.
//!
//! Every interval is 1.5 s with CACHE_TTL 1 s, so each batch comes from a
//! refresh of its own, and collection times (whole seconds) never repeat.
//! A batch is known by its `nvidia_cls_scrape_timestamp_seconds`.

#[path = "support/collector.rs"]
mod collector;
mod support;

use collector::{grpc_collector_on, http_collector_on, Collector};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::exporter::{log_lines, value, Exporter};
use support::fake_cls::{fixture, FakeCls};
use support::scratch::{free_addr, scratch_dir};

const INTERVAL_MS: &str = "1500";

#[derive(Clone, Copy, Debug)]
enum Proto {
    Grpc,
    Http,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Grpc => "grpc",
            Proto::Http => "http/protobuf",
        }
    }

    /// A receiver on `addr`, the collector that comes up.
    async fn serve(self, collector: &Collector, addr: SocketAddr) {
        match self {
            Proto::Grpc => {
                grpc_collector_on(collector, addr, None).await;
            }
            Proto::Http => {
                http_collector_on(collector, addr, None).await;
            }
        }
    }
}

/// The exporter pushing to `addr` over `proto`, with `extra` settings.
fn exporter(cls: &FakeCls, proto: Proto, addr: SocketAddr, extra: &[(&str, &str)]) -> Exporter {
    let endpoint = format!("http://{addr}");
    let mut env = vec![
        ("OTEL_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", proto.name()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", INTERVAL_MS),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("CACHE_TTL", "1s"),
    ];
    env.extend_from_slice(extra);
    Exporter::start(&cls.base_url(), &env)
}

fn org_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = match labels {
        "" => format!("{name}{{org_name=\"lic-demo\"}} "),
        _ => format!("{name}{{org_name=\"lic-demo\",{labels}}} "),
    };
    value(text, &prefix)
}

/// /metrics once `name{labels}` satisfies `want`; fails after `limit`.
async fn until(
    exporter: &Exporter,
    name: &str,
    labels: &str,
    want: impl Fn(f64) -> bool,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = exporter.metrics().await;
        if org_value(&text, name, labels).is_some_and(&want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{{{labels}}} never as wanted: {:?}; log:\n{}",
            org_value(&text, name, labels),
            exporter.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the gauge `name` in one batch (one resource metrics).
fn gauge(rm: &ResourceMetrics, name: &str) -> Option<f64> {
    rm.scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
        .and_then(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.first(),
            _ => None,
        })
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => Some(v),
            _ => None,
        })
}

/// Every batch received, in order of arrival: its collection time, and
/// how many batches waited when it was built (during an outage, 0, 1, 2,
/// ...: the batch's number); and the number of batches of each request.
fn batches(collector: &Collector) -> (Vec<(f64, f64)>, Vec<usize>) {
    let mut out = Vec::new();
    let mut per_request = Vec::new();
    for received in collector.received() {
        let rms = &received.request.resource_metrics;
        per_request.push(rms.len());
        for rm in rms {
            let time = gauge(rm, "nvidia_cls_scrape_timestamp_seconds")
                .expect("every batch carries its snapshot's collection time");
            let waiting = gauge(rm, "nvidia_cls_otlp_backlog_batches").expect("and the backlog");
            out.push((time, waiting));
        }
    }
    (out, per_request)
}

fn times(collector: &Collector) -> Vec<f64> {
    batches(collector).0.iter().map(|(t, _)| *t).collect()
}

/// Waits until the collector has received batches of every time in `want`
/// (and `more` after the last of them); the times received.
async fn received_all(collector: &Collector, want: &[f64], more: usize) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let times = times(collector);
        let last = want.last().copied().unwrap_or(f64::MIN);
        let after = times.iter().filter(|t| **t > last).count();
        if want.iter().all(|t| times.contains(t)) && after >= more {
            return times;
        }
        assert!(
            Instant::now() < deadline,
            "wanted {want:?} and {more} more, received {times:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The spooled batches first, each once in order, then the new process's
/// (which may share the last one's second: a restart can take less).
fn assert_spooled_then_new(times: &[f64], spooled: &[f64]) {
    assert_eq!(times[..spooled.len()], spooled[..], "{times:?}");
    assert_in_order_once(spooled);
    let last = spooled[spooled.len() - 1];
    assert!(
        times[spooled.len()..].iter().all(|t| *t >= last),
        "{times:?}"
    );
    assert_in_order_once(&times[spooled.len()..]);
}

fn assert_in_order_once(times: &[f64]) {
    for pair in times.windows(2) {
        assert!(pair[0] < pair[1], "in time order, each once: {times:?}");
    }
}

/// The collection times of the batches in the spool, oldest first.
fn spooled(dir: &Path) -> Vec<f64> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".otlp") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|n| n.split('-').next().unwrap().parse::<f64>().unwrap() / 1000.0)
        .collect()
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "otlp"))
        .collect();
    files.sort();
    files
}

async fn until_spooled(dir: &Path, n: usize) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let times = spooled(dir);
        if times.len() >= n {
            return times;
        }
        assert!(Instant::now() < deadline, "{} spool files", times.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------

/// Down for five intervals, then up: every interval's batch arrives once,
/// in time order (the backlog in one request), then the live ones.
async fn outage_then_every_interval_once_in_order(proto: Proto) {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let addr = free_addr();
    let exporter = exporter(&cls, proto, addr, &[]);
    let text = until(
        &exporter,
        "nvidia_cls_otlp_backlog_batches",
        "",
        |v| v >= 5.0,
        Duration::from_secs(15),
    )
    .await;
    let oldest = org_value(
        &text,
        "nvidia_cls_otlp_backlog_oldest_timestamp_seconds",
        "",
    )
    .expect("the oldest waiting batch's time");
    assert!(org_value(&text, "nvidia_cls_otlp_backlog_bytes", "").unwrap() > 0.0);
    let failed = log_lines(&exporter, "OTLP push failed; batches are kept").await;
    assert_eq!(
        failed.len(),
        1,
        "one line for the outage: {}",
        exporter.stderr()
    );

    let collector = Collector::accepting();
    proto.serve(&collector, addr).await;
    let times = received_all(&collector, &[oldest], 7).await;
    assert_eq!(times[0], oldest, "the first interval comes first");
    assert_in_order_once(&times);
    // Each batch of the outage was built with all before it waiting: their
    // numbers are 0, 1, 2, ... with none missing and none twice.
    let (received, per_request) = batches(&collector);
    let numbers: Vec<f64> = received.iter().map(|(_, n)| *n).collect();
    let outage = per_request[0];
    let expected: Vec<f64> = (0..outage).map(|n| n as f64).collect();
    assert_eq!(numbers[..outage], expected[..], "{received:?}");
    assert!(
        per_request[0] >= 5,
        "the backlog went in one request: {per_request:?}"
    );
    assert!(
        per_request.iter().skip(2).all(|n| *n == 1),
        "then live: {per_request:?}"
    );
    let text = exporter.metrics().await;
    for reason in ["age", "size", "rejected", "corrupt"] {
        let labels = format!("reason=\"{reason}\"");
        assert_eq!(
            org_value(&text, "nvidia_cls_otlp_backlog_dropped_total", &labels),
            Some(0.0),
            "{reason}"
        );
    }
    assert!(!log_lines(&exporter, "accepts batches again")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_outage_of_five_intervals_then_every_interval_once_in_order_then_live() {
    outage_then_every_interval_once_in_order(Proto::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_outage_of_five_intervals_then_every_interval_once_in_order_then_live() {
    outage_then_every_interval_once_in_order(Proto::Http).await;
}

/// Down, killed with SIGKILL, up, restarted on the same spool: every
/// spooled interval arrives, oldest first, then the new ones.
async fn sigkill_then_restart_on_the_spool(proto: Proto) {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let dir = scratch_dir(&format!("backlog-kill-{}", proto.name().replace('/', "-")));
    let spool = dir.join("spool");
    let addr = free_addr();
    let settings = [("OTEL_SPOOL_DIR", spool.to_str().unwrap())];
    let mut first = exporter(&cls, proto, addr, &settings);
    let on_disk = until_spooled(&spool, 4).await;
    let status = first.signal_and_wait("KILL");
    assert!(!status.success());

    let collector = Collector::accepting();
    proto.serve(&collector, addr).await;
    let second = exporter(&cls, proto, addr, &settings);
    let times = received_all(&collector, &on_disk, 1).await;
    assert_spooled_then_new(&times, &on_disk);
    let found = log_lines(&second, "sending the batches found in OTEL_SPOOL_DIR").await;
    assert_eq!(found.len(), 1, "{}", second.stderr());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !spooled(&spool).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        spooled(&spool),
        Vec::<f64>::new(),
        "delivered batches leave the spool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sigkill_during_an_outage_then_restart_on_the_spool_delivers_every_interval() {
    sigkill_then_restart_on_the_spool(Proto::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sigkill_during_an_outage_then_restart_on_the_spool_delivers_every_interval() {
    sigkill_then_restart_on_the_spool(Proto::Http).await;
}

/// OTEL_BACKLOG_MAX_AGE of 3 s: the oldest batches are dropped and counted,
/// the ones within the age delivered.
async fn the_age_cap_drops_the_oldest(proto: Proto) {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let addr = free_addr();
    let exporter = exporter(&cls, proto, addr, &[("OTEL_BACKLOG_MAX_AGE", "3s")]);
    let first = until(
        &exporter,
        "nvidia_cls_scrape_timestamp_seconds",
        "",
        |v| v > 0.0,
        Duration::from_secs(5),
    )
    .await;
    let first = org_value(&first, "nvidia_cls_scrape_timestamp_seconds", "").unwrap();
    let text = until(
        &exporter,
        "nvidia_cls_otlp_backlog_dropped_total",
        "reason=\"age\"",
        |v| v >= 2.0,
        Duration::from_secs(15),
    )
    .await;
    let waiting = org_value(&text, "nvidia_cls_otlp_backlog_batches", "").unwrap();
    assert!(
        (1.0..=3.0).contains(&waiting),
        "{waiting} batches within 3 s"
    );
    let oldest = org_value(
        &text,
        "nvidia_cls_otlp_backlog_oldest_timestamp_seconds",
        "",
    )
    .unwrap();
    assert!(oldest > first);
    let collector = Collector::accepting();
    proto.serve(&collector, addr).await;
    // The backoff may last a few seconds more: more of the oldest may go
    // in that time, none of the newer.
    let times = received_all(&collector, &[], 3).await;
    assert!(
        !times.contains(&first),
        "the first interval was dropped: {times:?}"
    );
    assert!(times[0] >= oldest, "{times:?}");
    assert_in_order_once(&times);
    assert!(!log_lines(&exporter, "older than OTEL_BACKLOG_MAX_AGE")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_the_age_cap_drops_the_oldest_and_counts_them() {
    the_age_cap_drops_the_oldest(Proto::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_the_age_cap_drops_the_oldest_and_counts_them() {
    the_age_cap_drops_the_oldest(Proto::Http).await;
}

/// OTEL_BACKLOG_MAX_BYTES of two and a half batches: past it, the oldest
/// are dropped and counted, and the two newest delivered.
async fn the_size_cap_drops_the_oldest(proto: Proto) {
    let cls = FakeCls::start(fixture(), "test-key").await;
    // One batch's stored size, from an exporter whose collector is down.
    let addr = free_addr();
    let probe = exporter(&cls, proto, addr, &[]);
    let text = until(
        &probe,
        "nvidia_cls_otlp_backlog_batches",
        "",
        |v| v >= 1.0,
        Duration::from_secs(5),
    )
    .await;
    let one = org_value(&text, "nvidia_cls_otlp_backlog_bytes", "").unwrap()
        / org_value(&text, "nvidia_cls_otlp_backlog_batches", "").unwrap();
    drop(probe);

    let cap = format!("{}B", (one * 2.5) as u64);
    let exporter = exporter(&cls, proto, addr, &[("OTEL_BACKLOG_MAX_BYTES", &cap)]);
    let first = until(
        &exporter,
        "nvidia_cls_scrape_timestamp_seconds",
        "",
        |v| v > 0.0,
        Duration::from_secs(5),
    )
    .await;
    let first = org_value(&first, "nvidia_cls_scrape_timestamp_seconds", "").unwrap();
    let text = until(
        &exporter,
        "nvidia_cls_otlp_backlog_dropped_total",
        "reason=\"size\"",
        |v| v >= 2.0,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_backlog_batches", ""),
        Some(2.0),
        "{cap}"
    );
    assert!(org_value(&text, "nvidia_cls_otlp_backlog_bytes", "").unwrap() <= one * 2.5);
    let oldest = org_value(
        &text,
        "nvidia_cls_otlp_backlog_oldest_timestamp_seconds",
        "",
    )
    .unwrap();
    let collector = Collector::accepting();
    proto.serve(&collector, addr).await;
    // More batches may come (and push out the oldest) in the backoff
    // before the next attempt.
    let times = received_all(&collector, &[], 3).await;
    assert!(
        !times.contains(&first),
        "the first interval was dropped: {times:?}"
    );
    assert!(times[0] >= oldest, "{times:?}");
    assert_in_order_once(&times);
    let (_, per_request) = batches(&collector);
    assert!(per_request[0] <= 2, "the cap holds two: {per_request:?}");
    assert!(!log_lines(&exporter, "past OTEL_BACKLOG_MAX_BYTES")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_the_size_cap_drops_the_oldest_and_counts_them() {
    the_size_cap_drops_the_oldest(Proto::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_the_size_cap_drops_the_oldest_and_counts_them() {
    the_size_cap_drops_the_oldest(Proto::Http).await;
}

/// SIGTERM with a spool keeps what was not delivered on disk; a damaged,
/// a truncated and a foreign file there are set aside (or left alone),
/// counted and logged, and every other batch is delivered in order.
async fn sigterm_keeps_the_spool_and_damaged_files_are_set_aside(proto: Proto) {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let dir = scratch_dir(&format!(
        "backlog-corrupt-{}",
        proto.name().replace('/', "-")
    ));
    let spool = dir.join("spool");
    let addr = free_addr();
    let settings = [("OTEL_SPOOL_DIR", spool.to_str().unwrap())];
    let mut first = exporter(&cls, proto, addr, &settings);
    until_spooled(&spool, 4).await;
    let started = Instant::now();
    assert!(first.signal_and_wait("TERM").success());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let kept = log_lines(&first, "stay in OTEL_SPOOL_DIR for the next start").await;
    assert_eq!(kept.len(), 1, "{}", first.stderr());
    let files = spool_files(&spool);
    let on_disk = spooled(&spool);
    assert!(files.len() >= 4, "{files:?}");

    let flipped = &files[1];
    let mut bytes = std::fs::read(flipped).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(flipped, bytes).unwrap();
    let truncated = &files[2];
    let bytes = std::fs::read(truncated).unwrap();
    std::fs::write(truncated, &bytes[..30]).unwrap();
    std::fs::write(spool.join("notes.txt"), "the operator's").unwrap();
    let want: Vec<f64> = on_disk
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1 && *i != 2)
        .map(|(_, t)| *t)
        .collect();

    let collector = Collector::accepting();
    proto.serve(&collector, addr).await;
    let second = exporter(&cls, proto, addr, &settings);
    let times = received_all(&collector, &want, 1).await;
    assert!(!times.contains(&on_disk[1]) && !times.contains(&on_disk[2]));
    assert_spooled_then_new(&times, &want);
    let aside = spool.join("corrupt");
    assert!(aside.join(flipped.file_name().unwrap()).is_file());
    assert!(aside.join(truncated.file_name().unwrap()).is_file());
    assert!(
        spool.join("notes.txt").is_file(),
        "a foreign file is left alone"
    );
    let lines = log_lines(&second, "holds a file that is not a batch").await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.contains("checksum mismatch") && l.contains("moved into corrupt/")));
    assert!(lines.iter().any(|l| l.contains("truncated: 30 bytes")));
    let text = second.metrics().await;
    assert_eq!(
        org_value(
            &text,
            "nvidia_cls_otlp_backlog_dropped_total",
            "reason=\"corrupt\""
        ),
        Some(3.0)
    );
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_spool_write_failures_total", ""),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_sigterm_keeps_the_spool_and_a_corrupt_file_is_moved_aside_and_the_rest_delivered() {
    sigterm_keeps_the_spool_and_damaged_files_are_set_aside(Proto::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sigterm_keeps_the_spool_and_a_corrupt_file_is_moved_aside_and_the_rest_delivered() {
    sigterm_keeps_the_spool_and_damaged_files_are_set_aside(Proto::Http).await;
}

/// A spool directory the exporter cannot write in, or a file, is a bad
/// setting: exit 2 with one line, before the port is bound. Root writes in
/// any directory, so as root the exporter runs as the scratch image's user.
#[test]
fn a_read_only_spool_directory_or_a_file_is_exit_2_before_listening() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir("backlog-read-only");
    let read_only = dir.join("ro");
    std::fs::create_dir(&read_only).unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    for proto in [Proto::Grpc, Proto::Http] {
        for (spool, why) in [
            (&read_only, "cannot write a file in it: Permission denied"),
            (&file, "it is not a directory"),
            (&file.join("below"), "cannot create it"),
        ] {
            let env = support::exporter::test_env(
                "http://127.0.0.1:9",
                &[
                    ("OTEL_ENABLED", "true"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", proto.name()),
                    ("OTEL_SPOOL_DIR", spool.to_str().unwrap()),
                ],
            );
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut command = support::exporter::command(&env, &[]);
            if root {
                command.uid(65532).gid(65532);
            }
            let out = command.output().expect("run the exporter");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{proto:?} {spool:?}: {stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{lines:?}");
            let want = format!(
                "nvidia-license-server-exporter: OTEL_SPOOL_DIR={:?} is not usable: {why}",
                spool.display().to_string()
            );
            assert!(lines[0].starts_with(&want), "{}\nwanted {want}", lines[0]);
        }
    }
}
