//! The API key and the OTLP header values are secrets: every byte the
//! exporter writes anywhere is collected under sentinel values, and neither
//! may appear in it (`check` included, both formats). The one place an OTLP
//! header value belongs is the header of the request to the collector, and
//! the test checks it is there.

mod support;

use support::fake_cls::fixture;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::exporter::{http, run_to_end, Exporter};
use support::fake_cls::FakeCls;
use support::scratch::{free_addr, scratch_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "sentinel-KEY-7f3a9c";
const HEADER: &str = "sentinel-HDR-51d0e8";

/// An OTLP/HTTP collector that keeps every byte it receives, head and body,
/// exactly as they crossed the socket (uncompressed: the exporter is told
/// not to compress, so a key in a protobuf string would show up verbatim).
async fn byte_capturing_collector() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let captured = Arc::new(Mutex::new(Vec::new()));
    let sink = captured.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 16384];
                loop {
                    let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await
                    else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    pending.extend_from_slice(&buf[..n]);
                    // Answer each complete request (head + Content-Length body).
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if pending.len() < end + 4 + length {
                            break;
                        }
                        pending.drain(..end + 4 + length);
                        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (endpoint, captured)
}

fn otlp_settings(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NVIDIA_API_KEY", KEY.to_owned()),
        ("LOG_LEVEL", "debug".to_owned()),
        ("OTEL_ENABLED", "true".to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{HEADER},x-other={HEADER}"),
        ),
    ]
}

/// Waits (at most 10 s) until `bytes` holds `n` OTLP requests.
async fn wait_for_requests(bytes: &Mutex<Vec<u8>>, n: usize) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = bytes.lock().unwrap().clone();
        let count = got.windows(12).filter(|w| w == b"/v1/metrics ").count();
        if count >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything one running exporter wrote: its HTTP answers (every route,
/// both formats, gzip as sent), stdout, stderr and the OTLP bytes.
async fn everything_from(exporter: &mut Exporter) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (path, accept) in [
        ("/metrics", "text/plain"),
        ("/metrics", "application/openmetrics-text"),
        ("/", "text/html"),
        ("/healthz", "*/*"),
        ("/no-such-page", "*/*"),
    ] {
        for encoding in ["identity", "gzip"] {
            let r = http(
                exporter.addr,
                "GET",
                path,
                &[("Accept", accept), ("Accept-Encoding", encoding)],
            )
            .await;
            let mut bytes = format!("{:?}", r.headers).into_bytes();
            bytes.extend_from_slice(&r.body);
            out.push((format!("{path} {accept} {encoding}"), bytes));
        }
    }
    assert!(exporter.signal_and_wait("TERM").success());
    out.push(("stdout".into(), exporter.stdout().into_bytes()));
    out.push(("stderr".into(), exporter.stderr().into_bytes()));
    out
}

/// Stdout and stderr of `check` in both formats against `base_url`, with
/// the sentinel key, at debug; run off the runtime that serves the fake.
async fn check_outputs(base_url: &str, what: &str) -> Vec<(String, Vec<u8>)> {
    let base_url = base_url.to_owned();
    let what = what.to_owned();
    tokio::task::spawn_blocking(move || {
        let env = [
            ("NVIDIA_API_KEY", KEY),
            ("NVIDIA_ORG_NAME", "lic-demo"),
            ("NVIDIA_API_BASE_URL", &base_url),
            ("LOG_LEVEL", "debug"),
            ("SCRAPE_TIMEOUT", "5s"),
        ];
        let mut out = Vec::new();
        for args in [&["check"][..], &["check", "-output", "json"]] {
            let (_, stdout, stderr) = run_to_end(&env, args);
            assert!(
                stdout.contains("lic-demo"),
                "{what} {args:?}: a report: {stdout}"
            );
            out.push((format!("{what} {args:?} stdout"), stdout.into_bytes()));
            out.push((format!("{what} {args:?} stderr"), stderr.into_bytes()));
        }
        out
    })
    .await
    .unwrap()
}

/// Every file of a spool, as written and with its payload inflated (a
/// secret in a compressed payload would not show verbatim).
fn spool_contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    /// The spool header's length (src/otlp/spool.rs): the payload follows.
    const HEADER: usize = 48;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the spool directory") {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut inflated = Vec::new();
        if bytes.len() > HEADER {
            let _ = flate2::read::GzDecoder::new(&bytes[HEADER..]).read_to_end(&mut inflated);
        }
        let name = path.display().to_string();
        out.push((format!("{name} inflated"), inflated));
        out.push((name, bytes));
    }
    out
}

fn assert_absent(outputs: &[(String, Vec<u8>)], secret: &str) {
    for (what, bytes) in outputs {
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(
            !found,
            "{secret} leaked into {what}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_api_key_nor_an_otlp_header_appears_in_any_output() {
    // 1. The key is accepted: the whole org is read, logged at debug,
    //    served and pushed.
    let cls = FakeCls::start(fixture(), KEY).await;
    let (endpoint, otlp) = byte_capturing_collector().await;
    let settings = otlp_settings(&endpoint);
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut exporter = Exporter::start(&cls.base_url(), &env);
    let pushed = wait_for_requests(&otlp, 2).await;
    let mut outputs = everything_from(&mut exporter).await;
    outputs.extend(check_outputs(&cls.base_url(), "check, key accepted").await);
    let text = String::from_utf8_lossy(&pushed).into_owned();
    assert!(
        text.contains("nvidia_cls_up"),
        "the push carried the metrics: {text}"
    );
    let (header_lines, rest): (Vec<&str>, Vec<&str>) =
        text.lines().partition(|l| l.contains(HEADER));
    assert!(
        header_lines.len() >= 4
            && header_lines.iter().all(|l| {
                l.eq_ignore_ascii_case(&format!("authorization: Bearer {HEADER}"))
                    || l.eq_ignore_ascii_case(&format!("x-other: {HEADER}"))
            }),
        "the OTLP header value is sent as that header and nowhere else: {header_lines:?}"
    );
    assert_absent(&[("OTLP requests".into(), pushed)], KEY);
    assert!(rest.iter().all(|l| !l.contains(HEADER)));

    // 2. The key is rejected (401) and the collector is unreachable: the
    //    error paths log what failed, never the values; the batches that
    //    wait are in OTEL_SPOOL_DIR, which must hold metric data only.
    cls.set_api_key("some-other-key");
    let unreachable = format!("http://{}", free_addr());
    let spool = scratch_dir("secrets-spool");
    let mut settings = otlp_settings(&unreachable);
    settings.push(("OTEL_SPOOL_DIR", spool.to_str().unwrap().to_owned()));
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut exporter = Exporter::start(&cls.base_url(), &env);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let failed = everything_from(&mut exporter).await;
    let spooled = spool_contents(&spool);
    assert!(
        spooled
            .iter()
            .any(|(_, bytes)| bytes.windows(13).any(|w| w == b"nvidia_cls_up")),
        "the spool holds the waiting batches: {:?}",
        spooled.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    outputs.extend(spooled);
    let stderr = String::from_utf8_lossy(&failed.last().unwrap().1).into_owned();
    assert!(
        stderr.contains("API key was rejected"),
        "401 is explained: {stderr}"
    );
    outputs.extend(failed);
    outputs.extend(check_outputs(&cls.base_url(), "check, key rejected").await);
    outputs.extend(check_outputs(&unreachable, "check, CLS unreachable").await);

    // 3. Commands that end at once: help, version, bad settings (the key
    //    in the environment and as a flag), a malformed OTLP header whose
    //    text holds the secret, the healthcheck subcommand.
    let base = [
        ("NVIDIA_API_KEY", KEY),
        ("NVIDIA_ORG_NAME", "o"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=ok"),
    ];
    let bad_header = format!("no-equals-sign-{HEADER}");
    type Run<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let runs: Vec<Run> = vec![
        ("--help", base.to_vec(), vec!["--help"]),
        ("--version", base.to_vec(), vec!["--version"]),
        (
            "bad setting",
            [base.as_slice(), &[("PARALLELISM", "x")]].concat(),
            vec![],
        ),
        (
            "bad flag",
            vec![("NVIDIA_ORG_NAME", "o"), ("CACHE_TTL", "-1s")],
            vec!["-nvidia-api-key", KEY],
        ),
        (
            "flag without its value",
            vec![("NVIDIA_ORG_NAME", "o")],
            vec!["--nvidia-api-key"],
        ),
        (
            "malformed OTLP header",
            vec![
                ("NVIDIA_API_KEY", KEY),
                ("NVIDIA_ORG_NAME", "o"),
                ("OTEL_ENABLED", "true"),
                ("OTEL_EXPORTER_OTLP_HEADERS", &bad_header),
            ],
            vec![],
        ),
        (
            "healthcheck",
            [base.as_slice(), &[("LISTEN_ADDRESS", "127.0.0.1:1")]].concat(),
            vec!["healthcheck"],
        ),
    ];
    for (what, env, args) in runs {
        let (_, stdout, stderr) = run_to_end(&env, &args);
        outputs.push((format!("{what} stdout"), stdout.into_bytes()));
        outputs.push((format!("{what} stderr"), stderr.into_bytes()));
    }

    // 4. A panic whose message quotes both secrets (debug builds have a
    //    hook for it): the report is one line with the values blanked out.
    let panic_env = [
        ("NVIDIA_API_KEY", KEY),
        ("NVIDIA_ORG_NAME", "o"),
        ("NVIDIA_API_BASE_URL", "http://127.0.0.1:1"),
        ("LISTEN_ADDRESS", "127.0.0.1:0"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            &format!("authorization={HEADER}"),
        ),
        (
            "EXPORTER_DEBUG_PANIC",
            &format!("bad state: key={KEY}\nheader={HEADER}"),
        ),
    ];
    let (status, stdout, stderr) = run_to_end(&panic_env, &[]);
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("internal error at ")
            && stderr.contains("key=[redacted] header=[redacted]"),
        "{stderr}"
    );
    outputs.push(("panic stdout".into(), stdout.into_bytes()));
    outputs.push(("panic stderr".into(), stderr.into_bytes()));

    assert_absent(&outputs, KEY);
    assert_absent(&outputs, HEADER);
    let total: usize = outputs.iter().map(|(_, b)| b.len()).sum();
    assert!(
        total > 10_000,
        "the outputs were really collected: {total} bytes"
    );
}
