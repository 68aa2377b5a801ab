//! Starting and failing to start, through the real binary: everything a
//! setting names is checked before the port is bound (a bad one is exit 2
//! with one line and no `listening` line), and a failure of the running
//! exporter (the port is taken) is exit 1, reported once.

mod support;

use std::path::PathBuf;
use support::exporter::run_to_end;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("startup-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The settings of a run that would serve, CLS never asked (the run ends
/// before any refresh).
fn base<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("NVIDIA_API_KEY", "test-key"),
        ("NVIDIA_ORG_NAME", "lic-demo"),
        ("NVIDIA_API_BASE_URL", "http://127.0.0.1:9"),
        ("LISTEN_ADDRESS", "127.0.0.1:0"),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k, v));
    }
    env
}

/// Runs to the end; returns the exit code and stderr's lines.
fn run(env: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    let (status, _, stderr) = run_to_end(env, &[]);
    (status.code(), stderr.lines().map(str::to_owned).collect())
}

#[test]
fn a_taken_port_is_exit_1_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, lines) = run(&base(&[("LISTEN_ADDRESS", &addr)]));
    assert_eq!(code, Some(1), "{lines:#?}");
    let reports: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("cannot listen on LISTEN_ADDRESS="))
        .collect();
    assert_eq!(reports.len(), 1, "{lines:#?}");
    assert!(reports[0].contains(&addr), "{}", reports[0]);
    assert_eq!(lines.len(), 1, "nothing else is said: {lines:#?}");
}

#[test]
fn a_ca_certificate_rustls_refuses_is_exit_2_before_listening() {
    let dir = scratch("ca");
    let ca = dir.join("ca.pem");
    // Valid PEM, valid base64, not a certificate.
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIBAAIBAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (code, lines) = run(&base(&[("NVIDIA_API_CA_FILE", ca.to_str().unwrap())]));
    assert_eq!(code, Some(2), "{lines:#?}");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "nvidia-license-server-exporter: NVIDIA_API_CA_FILE holds a certificate rustls rejects"
        ),
        "{}",
        lines[0]
    );
}

#[test]
fn an_otlp_client_certificate_and_key_that_do_not_fit_are_exit_2_before_listening() {
    let dir = scratch("mtls");
    let a = rcgen::generate_simple_self_signed(["a.test".to_owned()]).unwrap();
    let b = rcgen::generate_simple_self_signed(["b.test".to_owned()]).unwrap();
    let (cert, key) = (dir.join("a.pem"), dir.join("b-key.pem"));
    std::fs::write(&cert, a.cert.pem()).unwrap();
    std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
    for protocol in ["grpc", "http/protobuf"] {
        let (code, lines) = run(&base(&[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9"),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                cert.to_str().unwrap(),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()),
        ]));
        assert_eq!(code, Some(2), "{protocol}: {lines:#?}");
        assert_eq!(lines.len(), 1, "{protocol}: {lines:#?}");
        assert!(
            lines[0].starts_with("nvidia-license-server-exporter: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY do not fit together"),
            "{protocol}: {}",
            lines[0]
        );
    }
}
