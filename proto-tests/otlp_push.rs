//! Protocol tests of the OTLP push: the real binary against the fake CLS and
//! an in-process OTLP receiver (tonic `MetricsService`, or a hyper server for
//! OTLP/HTTP) on 127.0.0.1. Short push intervals keep each test to seconds.
//! Multi-threaded runtimes: the harness blocks its thread while it waits for
//! the child process, and the receiver must keep answering meanwhile.

#[path = "support/collector.rs"]
mod collector;
mod support;

use support::fake_cls::fixture;

use collector::{grpc_collector, grpc_collector_on, http_collector, Answer, Collector};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::exporter::{log_lines, value, Exporter};
use support::exposition::{check, Flavor};
use support::fake_cls::FakeCls;
use support::pki::Pki;
use support::scratch::{free_addr, scratch_dir, write_file};
use support::series::up;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::Code;

// ---------------------------------------------------------------------------
// Reading the two outputs

/// One series of either output: (name as in /metrics, labels in order).
type Series = (String, Vec<(String, String)>);

#[derive(Debug, Default)]
struct Exposition {
    help: BTreeMap<String, String>,
    kind: BTreeMap<String, String>,
    samples: BTreeMap<Series, f64>,
}

/// The exposition as maps (HELP and TYPE by family, values by series),
/// read by the strict checker.
fn parse_exposition(text: &str) -> Exposition {
    let checked = check(text, Flavor::Text004).expect("a strict exposition");
    let mut out = Exposition::default();
    for family in checked.families {
        if let Some(help) = family.help {
            out.help.insert(family.name.clone(), help);
        }
        if let Some(kind) = family.kind {
            out.kind.insert(family.name, kind);
        }
    }
    for sample in checked.samples {
        out.samples
            .insert((sample.name, sample.labels), sample.value);
    }
    out
}

fn string_attrs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => (kv.key.clone(), s.clone()),
                other => panic!("attribute {} is not a string: {other:?}", kv.key),
            },
        )
        .collect()
}

fn metrics_of(request: &ExportMetricsServiceRequest) -> &[Metric] {
    assert_eq!(request.resource_metrics.len(), 1);
    assert_eq!(request.resource_metrics[0].scope_metrics.len(), 1);
    &request.resource_metrics[0].scope_metrics[0].metrics
}

fn points(metric: &Metric) -> &[NumberDataPoint] {
    match metric.data.as_ref().expect("data") {
        metric::Data::Gauge(g) => &g.data_points,
        metric::Data::Sum(s) => &s.data_points,
        other => panic!("{}: unexpected data {other:?}", metric.name),
    }
}

fn double(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        other => panic!("not a double: {other:?}"),
    }
}

/// The value of one pushed series, by its name in the exposition.
fn pushed_value(request: &ExportMetricsServiceRequest, name: &str, labels: &[(&str, &str)]) -> f64 {
    for metric in metrics_of(request) {
        let exposed = match &metric.data {
            Some(metric::Data::Sum(_)) => format!("{}_total", metric.name),
            _ => metric.name.clone(),
        };
        if exposed != name {
            continue;
        }
        for point in points(metric) {
            let attrs = string_attrs(&point.attributes);
            if labels
                .iter()
                .all(|(k, v)| attrs.iter().any(|(ak, av)| ak == k && av == v))
            {
                return double(point);
            }
        }
    }
    panic!("{name} {labels:?} was not pushed")
}

/// The nanosecond time of unix seconds, as the exporter computes it.
fn nanos(seconds: f64) -> u64 {
    let whole = seconds.trunc();
    (whole as u64) * 1_000_000_000 + ((seconds - whole) * 1e9).round() as u64
}

/// Exposition value of a series of the org (`org_name` first).
fn org_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name}{{org_name=\"lic-demo\"}} ")
    } else {
        format!("{name}{{org_name=\"lic-demo\",{labels}}} ")
    };
    value(text, &prefix)
}

async fn eventually_metric(
    exporter: &Exporter,
    name: &str,
    labels: &str,
    want: impl Fn(f64) -> bool,
    limit: Duration,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = exporter.metrics().await;
        if org_value(&text, name, labels).is_some_and(&want) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The exporter on `cls`, pushing over OTLP to `endpoint` every `interval`
/// ms (`ONCE`: the push at start only), with `extra` settings.
fn pushing(cls: &FakeCls, endpoint: &str, interval: &str, extra: &[(&str, &str)]) -> Exporter {
    let mut env = vec![
        ("OTEL_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_METRIC_EXPORT_INTERVAL", interval),
    ];
    env.extend_from_slice(extra);
    Exporter::start(&cls.base_url(), &env)
}

/// An export interval of an hour: the push at start, and no second one
/// within a test.
const ONCE: &str = "3600000";

/// The exposition once `nvidia_cls_otlp_pushes_total{result}` is `want`
/// (or `limit` has passed).
async fn pushes(exporter: &Exporter, result: &str, want: f64, limit: Duration) -> String {
    let labels = format!("result=\"{result}\"");
    eventually_metric(
        exporter,
        "nvidia_cls_otlp_pushes_total",
        &labels,
        |v| v == want,
        limit,
    )
    .await
}

// ---------------------------------------------------------------------------
// Tests

/// The pushed request and `/metrics` are two views of one snapshot: every
/// family, every series and every value of the snapshot part must be the
/// same; the live families (process, push counters) the same series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_request_equals_the_exposition_of_the_same_snapshot() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::accepting();
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[
            ("OTEL_SERVICE_INSTANCE_ID", "test-instance"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,k8s.namespace.name=lic%20ops",
            ),
        ],
    );
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
    // Scraped once the exporter has counted the push's answer.
    let text = pushes(&exporter, "success", 1.0, Duration::from_secs(5)).await;
    let got = collector.received();
    assert_eq!(got.len(), 1, "one push per interval");
    let request = &got[0].request;

    // Resource and scope.
    let rm = &request.resource_metrics[0];
    assert_eq!(
        string_attrs(&rm.resource.as_ref().unwrap().attributes),
        [
            ("service.name", "nvidia-license-server-exporter"),
            ("service.instance.id", "test-instance"),
            ("service.version", env!("CARGO_PKG_VERSION")),
            ("deployment.environment", "test"),
            ("k8s.namespace.name", "lic ops"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    let scope = rm.scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!(scope.name, "nvidia-license-server-exporter");
    assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));

    let exposition = parse_exposition(&text);
    let snapshot_time = nanos(org_value(&text, "nvidia_cls_scrape_timestamp_seconds", "").unwrap());
    let process_start = nanos(value(&text, "process_start_time_seconds ").unwrap());
    let live = |name: &str| name.starts_with("process_") || name.starts_with("nvidia_cls_otlp_");

    let mut pushed: BTreeMap<Series, f64> = BTreeMap::new();
    for metric in metrics_of(request) {
        let (exposed, kind) = match metric.data.as_ref().unwrap() {
            metric::Data::Gauge(_) => (metric.name.clone(), "gauge"),
            metric::Data::Sum(sum) => {
                assert!(sum.is_monotonic, "{}", metric.name);
                assert_eq!(
                    sum.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
                (format!("{}_total", metric.name), "counter")
            }
            other => panic!("{other:?}"),
        };
        assert!(
            !metric.name.ends_with("_total"),
            "{}: OTLP counter names have no _total",
            metric.name
        );
        assert_eq!(
            exposition.kind.get(&exposed).map(String::as_str),
            Some(kind),
            "{exposed}: type"
        );
        assert_eq!(
            exposition.help.get(&exposed),
            Some(&metric.description),
            "{exposed}: description is the HELP text"
        );
        let unit = if metric.name.ends_with("_seconds") {
            "s"
        } else if metric.name.ends_with("_bytes") {
            "By"
        } else if metric.name.ends_with("_quantity") {
            "{license}"
        } else if metric.name.ends_with("_leases") {
            "{lease}"
        } else {
            "1"
        };
        assert_eq!(metric.unit, unit, "{}: unit", metric.name);
        for point in points(metric) {
            if !live(&metric.name) {
                assert_eq!(point.time_unix_nano, snapshot_time, "{}", metric.name);
            }
            match kind {
                "counter" => assert_eq!(point.start_time_unix_nano, process_start),
                _ => assert_eq!(point.start_time_unix_nano, 0),
            }
            let series = (exposed.clone(), string_attrs(&point.attributes));
            assert!(
                pushed.insert(series.clone(), double(point)).is_none(),
                "{series:?} pushed twice"
            );
        }
    }

    // Known only after the first push ends, so absent from the first push.
    const AFTER_FIRST: &str = "nvidia_cls_otlp_last_success_timestamp_seconds";
    assert!(org_value(&text, AFTER_FIRST, "").is_some());
    let names = |m: &BTreeMap<Series, f64>| {
        m.keys()
            .map(|(n, _)| n.clone())
            .filter(|n| n != AFTER_FIRST)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        names(&pushed),
        names(&exposition.samples),
        "the same families"
    );
    assert!(names(&pushed).contains("nvidia_cls_license_server_feature_active_leases"));
    assert!(names(&pushed).contains("nvidia_cls_otlp_pushes_total"));
    for (series, exposed) in exposition
        .samples
        .iter()
        .filter(|(s, _)| s.0 != AFTER_FIRST)
    {
        let Some(pushed_value) = pushed.get(series) else {
            panic!("{series:?} is in /metrics but was not pushed");
        };
        if !live(&series.0) {
            assert_eq!(pushed_value, exposed, "{series:?}");
        }
    }
    assert_eq!(
        pushed.len(),
        exposition.samples.len() - 1,
        "the same series"
    );
    // The push counters were read before this push ended: zero then, one now.
    assert_eq!(
        pushed_value(
            request,
            "nvidia_cls_otlp_pushes_total",
            &[("result", "success")]
        ),
        0.0
    );
}

/// Pull and push read the same cache: scrapes every 100 ms and pushes every
/// 250 ms together make one CLS refresh per CACHE_TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_push_together_make_one_refresh_per_ttl() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::accepting();
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(&cls, &endpoint, "250", &[("CACHE_TTL", "2s")]);
    let started = Instant::now();
    let mut scrapes = 0;
    while started.elapsed() < Duration::from_millis(5000) {
        exporter.metrics().await;
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let text = exporter.metrics().await;
    let refreshes = org_value(&text, "nvidia_cls_refreshes_total", "result=\"success\"").unwrap();
    let group_listings = cls.requests_ending_with("/virtual-groups");
    assert!(
        scrapes >= 20 && collector.count() >= 10,
        "{scrapes} scrapes, {} pushes",
        collector.count()
    );
    // t=0, then one per TTL (a refresh may start up to one scrape late).
    let most = (elapsed / 2.0).ceil() + 1.0;
    assert!(
        refreshes >= 2.0 && refreshes <= most,
        "{refreshes} refreshes in {elapsed:.1}s with a 2s TTL"
    );
    assert_eq!(
        group_listings as f64, refreshes,
        "one group listing per refresh"
    );
}

/// A retryable answer keeps the batch: it is retried with the backoff
/// (each attempt bounded by OTEL_EXPORTER_OTLP_TIMEOUT) until the collector
/// takes it, the failure said once in the log, then delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_with_backoff_and_the_batch_kept_until_accepted() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::new(vec![], Answer::Grpc(Code::Unavailable, None));
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")],
    );
    assert!(collector.wait_for(4, Duration::from_secs(10)).await);
    let text = eventually_metric(
        &exporter,
        "nvidia_cls_otlp_pushes_total",
        "result=\"failure\"",
        |v| v >= 4.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_backlog_batches", ""),
        Some(1.0)
    );
    assert!(org_value(&text, "nvidia_cls_otlp_backlog_bytes", "").unwrap() > 100.0);
    let snapshot_time = org_value(&text, "nvidia_cls_scrape_timestamp_seconds", "");
    assert_eq!(
        org_value(
            &text,
            "nvidia_cls_otlp_backlog_oldest_timestamp_seconds",
            ""
        ),
        snapshot_time
    );
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_pushes_total", "result=\"success\""),
        Some(0.0)
    );
    let got = collector.received();
    // Backoff 0.25–0.5 s, then 0.5–1 s, then 1–2 s, ...
    for pair in got.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(240),
            "backoff"
        );
    }
    let failed = log_lines(&exporter, "OTLP push failed; batches are kept").await;
    assert_eq!(failed.len(), 1, "said once: {}", exporter.stderr());

    collector.set_fallback(Answer::Accept);
    let text = pushes(&exporter, "success", 1.0, Duration::from_secs(10)).await;
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_backlog_batches", ""),
        Some(0.0)
    );
    assert_eq!(
        org_value(
            &text,
            "nvidia_cls_otlp_backlog_oldest_timestamp_seconds",
            ""
        ),
        None
    );
    let last = collector.received().pop().unwrap();
    assert_eq!(
        pushed_value(&last.request, "nvidia_cls_scrape_timestamp_seconds", &[]),
        snapshot_time.unwrap(),
        "the batch of the first interval, delivered"
    );
    assert!(!log_lines(&exporter, "accepts batches again")
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_argument_is_not_retried() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::new(vec![], Answer::Grpc(Code::InvalidArgument, None));
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(&cls, &endpoint, ONCE, &[]);
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
    let text = pushes(&exporter, "failure", 1.0, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(collector.count(), 1, "no retry");
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_pushes_total", "result=\"failure\""),
        Some(1.0)
    );
    assert!(!log_lines(&exporter, "InvalidArgument").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhausted_is_retried_after_the_collectors_delay() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::new(
        vec![Answer::Grpc(
            Code::ResourceExhausted,
            Some(Duration::from_millis(1200)),
        )],
        Answer::Accept,
    );
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(&cls, &endpoint, ONCE, &[]);
    assert!(collector.wait_for(2, Duration::from_secs(10)).await);
    let got = collector.received();
    assert!(got[1].at - got[0].at >= Duration::from_millis(1150));
    let text = pushes(&exporter, "success", 1.0, Duration::from_secs(5)).await;
    let last = org_value(&text, "nvidia_cls_otlp_last_success_timestamp_seconds", "").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(last <= now && last > now - 30.0, "{last} vs {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_is_logged_and_not_retried() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::new(
        vec![Answer::Partial(3, "3 points had a bad unit")],
        Answer::Accept,
    );
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(&cls, &endpoint, ONCE, &[]);
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
    let text = pushes(&exporter, "partial", 1.0, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(collector.count(), 1, "a partial success is not retried");
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_pushes_total", "result=\"failure\""),
        Some(0.0)
    );
    log_lines(&exporter, "rejected some data points").await;
    let log = exporter.stderr();
    assert!(
        log.contains("rejected some data points: 3 points had a bad unit")
            && log.contains("rejected_data_points=3"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_arrive_as_metadata_gzip_is_used_and_nothing_secret_is_logged() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::accepting();
    let endpoint = grpc_collector(&collector).await;
    let exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20sekrit-token,x-scope-orgid=acme",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("LOG_LEVEL", "debug"),
        ],
    );
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
    let got = &collector.received()[0];
    assert_eq!(got.header("authorization"), Some("Bearer sekrit-token"));
    assert_eq!(got.header("x-scope-orgid"), Some("acme"));
    assert_eq!(got.header("grpc-encoding"), Some("gzip"));
    assert!(got.header("grpc-timeout").is_some(), "per-export timeout");
    assert!(!metrics_of(&got.request).is_empty());
    let mut exporter = exporter;
    assert!(exporter.signal_and_wait("TERM").success());
    let log = exporter.stderr() + &exporter.stdout();
    assert!(!log.contains("sekrit"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_at_start_then_up_receives_data() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let addr = free_addr();
    let endpoint = format!("http://{addr}");
    let exporter = pushing(
        &cls,
        &endpoint,
        "400",
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "300")],
    );
    // Down: pushes fail, /metrics is served as usual.
    let text = eventually_metric(
        &exporter,
        "nvidia_cls_otlp_pushes_total",
        "result=\"failure\"",
        |v| v >= 1.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(up(&text), Some(1.0));
    let text = eventually_metric(
        &exporter,
        "nvidia_cls_otlp_backlog_batches",
        "",
        |v| v >= 2.0,
        Duration::from_secs(5),
    )
    .await;
    assert!(org_value(&text, "nvidia_cls_otlp_backlog_batches", "").unwrap() >= 2.0);
    let collector = Collector::accepting();
    grpc_collector_on(&collector, addr, None).await;
    assert!(
        collector.wait_for(1, Duration::from_secs(10)).await,
        "data arrives once the collector is up; log:\n{}",
        exporter.stderr()
    );
    // The first request is the backlog of the intervals it was down: one
    // resource metrics a batch, oldest first.
    let request = &collector.received()[0].request;
    assert!(
        request.resource_metrics.len() >= 2,
        "{}",
        request.resource_metrics.len()
    );
    let first = ExportMetricsServiceRequest {
        resource_metrics: vec![request.resource_metrics[0].clone()],
    };
    assert_eq!(
        pushed_value(&first, "nvidia_cls_up", &[("org_name", "lic-demo")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_makes_a_last_push_and_exits_promptly() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::accepting();
    let endpoint = grpc_collector(&collector).await;
    let mut exporter = pushing(&cls, &endpoint, ONCE, &[]);
    pushes(&exporter, "success", 1.0, Duration::from_secs(10)).await;
    let started = Instant::now();
    assert!(exporter.signal_and_wait("TERM").success());
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(
        collector.count(),
        2,
        "the last push; log:\n{}",
        exporter.stderr()
    );
    let last = &collector.received()[1].request;
    assert_eq!(
        pushed_value(
            last,
            "nvidia_cls_otlp_pushes_total",
            &[("result", "success")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_dead_collector_still_exits_promptly() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    // A collector that accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let endpoint = format!("http://{addr}");
    let mut exporter = pushing(&cls, &endpoint, "200", &[]);
    // /metrics stays fast while pushes hang.
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(up(&exporter.metrics().await), Some(1.0));
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    assert!(exporter.signal_and_wait("TERM").success());
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    assert!(!held.lock().unwrap().is_empty());
    // Without OTEL_SPOOL_DIR what was not delivered is gone, and said so.
    let lost: Vec<String> = exporter
        .stderr()
        .lines()
        .filter(|l| l.contains("undelivered OTLP batches are lost at shutdown"))
        .map(str::to_owned)
        .collect();
    assert_eq!(lost.len(), 1, "{}", exporter.stderr());
    assert!(lost[0].contains("batches="), "{}", lost[0]);
}

// --- TLS --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_file() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let pki = Pki::new();
    let collector = Collector::accepting();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(
        &pki.server.cert_pem,
        &pki.server.key_pem,
    ));
    let addr = grpc_collector_on(&collector, "127.0.0.1:0".parse().unwrap(), Some(tls)).await;
    let dir = scratch_dir("otlp-tls");
    let ca = write_file(&dir, "ca.pem", &pki.ca_pem);
    let endpoint = format!("https://{addr}");
    let _exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap())],
    );
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);

    // Without the CA file the collector's certificate is not trusted.
    let untrusting = Collector::accepting();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(
        &pki.server.cert_pem,
        &pki.server.key_pem,
    ));
    let addr = grpc_collector_on(&untrusting, "127.0.0.1:0".parse().unwrap(), Some(tls)).await;
    let endpoint = format!("https://{addr}");
    let exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "1000")],
    );
    pushes(&exporter, "failure", 1.0, Duration::from_secs(5)).await;
    assert_eq!(untrusting.count(), 0);
    assert!(
        exporter.stderr().to_lowercase().contains("certificate"),
        "{}",
        exporter.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_with_a_client_certificate() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let pki = Pki::new();
    let collector = Collector::accepting();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server.cert_pem,
            &pki.server.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let addr = grpc_collector_on(&collector, "127.0.0.1:0".parse().unwrap(), Some(tls)).await;
    let dir = scratch_dir("otlp-mtls");
    let ca = write_file(&dir, "ca.pem", &pki.ca_pem);
    let cert = write_file(&dir, "client.pem", &pki.client.cert_pem);
    let key = write_file(&dir, "client-key.pem", &pki.client.key_pem);
    let endpoint = format!("https://{addr}");
    let base = [
        ("OTEL_ENABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_METRIC_EXPORT_INTERVAL", ONCE),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
    ];

    // No client certificate: the collector refuses the handshake.
    let anonymous = Exporter::start(&cls.base_url(), &base);
    pushes(&anonymous, "failure", 1.0, Duration::from_secs(5)).await;
    assert_eq!(collector.count(), 0);
    drop(anonymous);

    let mut env = base.to_vec();
    env.push((
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        cert.to_str().unwrap(),
    ));
    env.push(("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()));
    let _exporter = Exporter::start(&cls.base_url(), &env);
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_tls_files_and_bad_headers_stop_the_start_with_exit_2() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")],
            "OTEL_EXPORTER_OTLP_CERTIFICATE=\"/nonexistent/ca.pem\" cannot be read",
        ),
        (
            &[(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "/nonexistent/c.pem",
            )],
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ),
        (
            &[("OTEL_EXPORTER_OTLP_HEADERS", "bad name=sekrit")],
            "OTEL_EXPORTER_OTLP_HEADERS=\"<redacted>\" is not valid: entry 1",
        ),
    ];
    for (extra, expected) in cases {
        let mut env = vec![
            ("NVIDIA_API_KEY", "k"),
            ("NVIDIA_ORG_NAME", "o"),
            ("OTEL_ENABLED", "true"),
        ];
        env.extend_from_slice(extra);
        let (status, _, stderr) = support::exporter::run_to_end(&env, &[]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("sekrit"));
    }
}

// --- OTLP/HTTP ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_push_with_gzip_and_headers() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::accepting();
    let endpoint = http_collector(&collector, None).await;
    let exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Basic%20c2Vrcml0",
            ),
        ],
    );
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
    let got = &collector.received()[0];
    assert_eq!(got.path, "/v1/metrics");
    assert_eq!(got.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("authorization"), Some("Basic c2Vrcml0"));
    let text = exporter.metrics().await;
    let exposed = org_value(
        &text,
        "nvidia_cls_license_server_active_leases",
        "virtual_group_id=\"2\",virtual_group_name=\"東京\",server_id=\"c3d4e5f6-0002-4000-8000-00000000000c\",server_name=\"tokyo-ls-01\"",
    )
    .unwrap();
    assert_eq!(
        pushed_value(
            &got.request,
            "nvidia_cls_license_server_active_leases",
            &[("server_name", "tokyo-ls-01")]
        ),
        exposed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_retries_503_but_not_400() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let collector = Collector::new(
        vec![
            Answer::Http(503),
            Answer::Http(503),
            Answer::Accept,
            Answer::Http(400),
        ],
        Answer::Accept,
    );
    let endpoint = http_collector(&collector, None).await;
    let exporter = pushing(
        &cls,
        &endpoint,
        "3000",
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    // Batch 1: 503, 503, accepted. Batch 2 (3 s later): 400, not retried,
    // dropped as rejected. Every failed request counts as a failure.
    assert!(collector.wait_for(4, Duration::from_secs(10)).await);
    let text = pushes(&exporter, "failure", 3.0, Duration::from_secs(3)).await;
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_pushes_total", "result=\"success\""),
        Some(1.0)
    );
    assert_eq!(
        org_value(
            &text,
            "nvidia_cls_otlp_backlog_dropped_total",
            "reason=\"rejected\""
        ),
        Some(1.0)
    );
    assert_eq!(
        org_value(&text, "nvidia_cls_otlp_backlog_batches", ""),
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(collector.count(), 4, "the 400 was not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_over_mtls() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let pki = Pki::new();
    let config = pki.mtls_server_config(&pki);
    let collector = Collector::accepting();
    let endpoint = http_collector(&collector, Some(config)).await;
    let dir = scratch_dir("otlp-http-mtls");
    let ca = write_file(&dir, "ca.pem", &pki.ca_pem);
    let cert = write_file(&dir, "client.pem", &pki.client.cert_pem);
    let key = write_file(&dir, "client-key.pem", &pki.client.key_pem);
    let _exporter = pushing(
        &cls,
        &endpoint,
        ONCE,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                cert.to_str().unwrap(),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()),
        ],
    );
    assert!(collector.wait_for(1, Duration::from_secs(10)).await);
    assert_eq!(collector.received()[0].path, "/v1/metrics");
}
