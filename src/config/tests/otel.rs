//! The OTLP settings: the standard OTEL_EXPORTER_OTLP_* variables over the OTEL_* ones,
//! endpoints and TLS, headers and resource attributes, intervals and timeouts.

use super::*;

#[test]
fn headers_and_resource_attributes_are_percent_decoded() {
    let c = env(&[
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b%3Dc , x=1,"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=gr%C3%BCn",
        ),
    ]);
    let headers: Vec<_> = c
        .otel
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(headers, [("api-key", "a b=c"), ("x", "1")]);
    let attrs: Vec<_> = c
        .otel
        .resource_attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        attrs,
        [("deployment.environment", "prod"), ("team", "grün")]
    );
}

#[test]
fn bad_resource_attributes_are_rejected() {
    rejects(
        "OTEL_RESOURCE_ATTRIBUTES",
        "a=%zz",
        "entry 1 has a bad percent-encoding",
    );
    rejects("OTEL_RESOURCE_ATTRIBUTES", "=v", "entry 1 has an empty key");
}

#[test]
fn service_name_falls_back_to_resource_attribute() {
    let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs");
    assert_eq!(env(&[attrs]).otel.service_name, "from-attrs");
    assert_eq!(
        env(&[attrs, ("OTEL_SERVICE_NAME", "explicit")])
            .otel
            .service_name,
        "explicit"
    );
}

#[test]
fn service_instance_id_defaults_to_hostname() {
    let host = ("HOSTNAME", "pod-7");
    assert_eq!(env(&[host]).otel.service_instance_id, "pod-7");
    assert_eq!(
        env(&[host, ("OTEL_SERVICE_INSTANCE_ID", "i-1")])
            .otel
            .service_instance_id,
        "i-1"
    );
}

#[test]
fn standard_endpoints_win_over_otel_endpoint() {
    let legacy = ("OTEL_ENDPOINT", "legacy:4317");
    let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "base:4317");
    let metrics = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "metrics:4317");
    assert_eq!(env(&[legacy]).otel.endpoint, "http://legacy:4317");
    assert_eq!(env(&[legacy, base]).otel.endpoint, "http://base:4317");
    assert_eq!(
        env(&[legacy, base, metrics]).otel.endpoint,
        "http://metrics:4317"
    );
    assert_eq!(
        run(&["-otel-endpoint", "flag:4317"], &[base]).otel.endpoint,
        "http://base:4317"
    );
}

#[test]
fn overridden_or_bad_endpoints_are_rejected() {
    let expected = "expected host:port, http://host:port or https://host:port";
    let vars = [
        ("OTEL_ENDPOINT", "collector"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "base:4317"),
    ];
    assert_eq!(
        error(&[], &vars),
        format!("OTEL_ENDPOINT=\"collector\" is not valid: {expected}")
    );
    rejects("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://c:4317", expected);
    rejects(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "c:4317/v1",
        "a path needs an http:// or https:// scheme",
    );
}

#[test]
fn endpoint_scheme_decides_tls() {
    let c = env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(
        (c.otel.endpoint.as_str(), c.otel.insecure),
        ("https://c:4317", false)
    );
    let c = env(&[
        ("OTEL_ENDPOINT", "http://c:4317"),
        ("OTEL_INSECURE", "false"),
    ]);
    assert_eq!(
        (c.otel.endpoint.as_str(), c.otel.insecure),
        ("http://c:4317", true)
    );
}

#[test]
fn standard_insecure_wins_over_otel_insecure() {
    let c = env(&[
        ("OTEL_INSECURE", "true"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "false"),
    ]);
    assert_eq!(
        (c.otel.endpoint.as_str(), c.otel.insecure),
        ("https://127.0.0.1:4317", false)
    );
}

#[test]
fn http_protobuf_appends_metrics_path_to_base_endpoints_only() {
    let http = ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    let c = env(&[http, ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp/")]);
    assert_eq!(c.otel.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(c.otel.endpoint, "http://c:4318/otlp/v1/metrics");
    let c = env(&[
        http,
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://c/custom"),
    ]);
    assert_eq!(c.otel.endpoint, "https://c/custom");
}

#[test]
fn metric_export_interval_wins_over_push_interval() {
    let c = run(
        &["-otel-push-interval", "30s"],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "15000")],
    );
    assert_eq!(c.otel.push_interval, Duration::from_secs(15));
}

#[test]
fn otlp_timeout_compression_and_tls_files() {
    let c = env(&[
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/cert.pem"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/key.pem"),
    ])
    .otel;
    assert_eq!(
        (c.timeout, c.compression),
        (Duration::from_millis(2500), OtlpCompression::Gzip)
    );
    assert_eq!(c.certificate, Some(PathBuf::from("/ca.pem")));
    assert_eq!(c.client_certificate, Some(PathBuf::from("/cert.pem")));
    assert_eq!(c.client_key, Some(PathBuf::from("/key.pem")));
}

#[test]
fn otlp_milliseconds_must_be_positive_integers() {
    let reason = "expected a whole number of milliseconds greater than zero";
    rejects("OTEL_EXPORTER_OTLP_TIMEOUT", "0", reason);
    rejects("OTEL_METRIC_EXPORT_INTERVAL", "1s", reason);
}

#[test]
fn backlog_caps_take_sizes_and_durations_and_refuse_zero() {
    let c = run(
        &[
            "-otel-backlog-max-bytes",
            "512 KiB",
            "--otel-backlog-max-age=90m",
        ],
        &[("OTEL_BACKLOG_MAX_BYTES", "1GiB")],
    )
    .otel
    .backlog;
    assert_eq!(
        (c.max_bytes, c.max_age),
        (512 << 10, Duration::from_secs(5400))
    );
    rejects("OTEL_BACKLOG_MAX_BYTES", "0B", "must be positive");
    rejects(
        "OTEL_BACKLOG_MAX_BYTES",
        "64",
        "expected a size such as 64MiB, 512KiB or 1GB (units B, KiB, MiB, GiB, KB, MB, GB)",
    );
    rejects("OTEL_BACKLOG_REQUEST_MAX_BYTES", "0MiB", "must be positive");
    rejects("OTEL_BACKLOG_MAX_AGE", "0s", "must be positive");
    assert_eq!(
        error(&["-otel-backlog-max-age", "1d"], &[]),
        "-otel-backlog-max-age=\"1d\" is not valid: unknown unit \"d\"; units are ns, us, ms, s, m, h"
    );
}
