//! Starting and failing to start, through the real binary: everything a
//! setting names is checked before the port is bound (a bad one is exit 2
//! with one line and no `listening` line), and a failure of the running
//! exporter (the port is taken) is exit 1, reported once.

mod support;

use support::exporter::{run_to_end, test_env};
use support::pki::Pki;
use support::scratch::{scratch_dir, write_file};

/// Runs with the settings of a run that would serve, CLS never asked (the
/// run ends before any refresh), and `extra`, to the end; returns the exit
/// code and stderr's lines.
fn run(extra: &[(&str, &str)]) -> (Option<i32>, Vec<String>) {
    let env = test_env("http://127.0.0.1:9", extra);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _, stderr) = run_to_end(&env, &[]);
    (status.code(), stderr.lines().map(str::to_owned).collect())
}

#[test]
fn a_taken_port_is_exit_1_reported_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, lines) = run(&[("LISTEN_ADDRESS", &addr)]);
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
    // Valid PEM, valid base64, not a certificate.
    let ca = write_file(
        &scratch_dir("startup-ca"),
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIBAAIBAA==\n-----END CERTIFICATE-----\n",
    );
    let (code, lines) = run(&[("NVIDIA_API_CA_FILE", ca.to_str().unwrap())]);
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
    // The certificate of one PKI, the key of another.
    let dir = scratch_dir("startup-mtls");
    let cert = write_file(&dir, "a.pem", &Pki::new().client.cert_pem);
    let key = write_file(&dir, "b-key.pem", &Pki::new().client.key_pem);
    for protocol in ["grpc", "http/protobuf"] {
        let (code, lines) = run(&[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9"),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                cert.to_str().unwrap(),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key.to_str().unwrap()),
        ]);
        assert_eq!(code, Some(2), "{protocol}: {lines:#?}");
        assert_eq!(lines.len(), 1, "{protocol}: {lines:#?}");
        assert!(
            lines[0].starts_with("nvidia-license-server-exporter: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY do not fit together"),
            "{protocol}: {}",
            lines[0]
        );
    }
}

/// The environment the running exporter was given, as /proc shows it.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The glibc build turns the allocator's per-thread caches off by running
/// itself again with GLIBC_TUNABLES (the memory of a large org then stays
/// flat over refreshes): same process, same arguments, serving as usual;
/// an operator's own tcache setting is left as it is, other tunables
/// are passed on after ours.
#[test]
fn the_glibc_build_runs_without_thread_caches_unless_told_otherwise() {
    use support::exporter::Exporter;
    let tunables = |extra: &[(&str, &str)]| {
        let exporter = Exporter::start("http://127.0.0.1:9", extra);
        let found: Vec<String> = environ(exporter.pid())
            .into_iter()
            .filter(|v| v.starts_with("GLIBC_TUNABLES="))
            .collect();
        assert!(exporter.alive());
        found
    };
    if cfg!(target_env = "gnu") {
        assert_eq!(
            tunables(&[]),
            ["GLIBC_TUNABLES=glibc.malloc.tcache_count=0"]
        );
        assert_eq!(
            tunables(&[("GLIBC_TUNABLES", "glibc.malloc.check=0")]),
            // What /proc shows after the loader read it: it ends each
            // value in place, so only the first (ours) is visible.
            ["GLIBC_TUNABLES=glibc.malloc.tcache_count=0"]
        );
        assert_eq!(
            tunables(&[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=5")]),
            ["GLIBC_TUNABLES=glibc.malloc.tcache_count=5"]
        );
    } else {
        assert!(tunables(&[]).is_empty());
    }
}
