//! Outbound TLS and proxy: a private CA trusted through NVIDIA_API_CA_FILE,
//! and CLS requests tunnelled through an HTTPS_PROXY (CONNECT) that the test
//! runs itself, all on 127.0.0.1.

mod support;

use support::fake_cls::fixture;

use support::exporter::{log_lines, Exporter};
use support::fake_cls::FakeCls;
use support::front::{Front, Mode};
use support::pki::Pki;
use support::proxy::ConnectProxy;
use support::scratch::{free_addr, scratch_dir, write_file};

const UP: &str = "nvidia_cls_up{org_name=\"lic-demo\"} 1\n";

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_the_ca_file() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let pki = Pki::new();
    let front = Front::start(cls.addr(), Mode::Tls(pki.server_config())).await;
    let base = format!("https://{}", front.addr());

    let untrusted = Exporter::start(&base, &[]);
    let text = untrusted.metrics().await;
    assert!(text.contains("nvidia_cls_up{org_name=\"lic-demo\"} 0\n"));
    let told = log_lines(&untrusted, "certificate").await;
    assert!(!told.is_empty(), "{}", untrusted.stderr());

    let ca = write_file(&scratch_dir("tls-ca"), "ca.pem", &pki.ca_pem);
    let trusted = Exporter::start(&base, &[("NVIDIA_API_CA_FILE", ca.to_str().unwrap())]);
    let text = trusted.metrics().await;
    assert!(text.contains(UP), "{}", trusted.stderr());
    assert!(text.contains("nvidia_cls_license_server_info{"));
}

#[tokio::test]
async fn a_bad_ca_file_stops_the_start_with_a_clear_line() {
    let path = write_file(&scratch_dir("tls-bad"), "ca.pem", "not a certificate\n");
    let (status, _, stderr) = support::exporter::run_to_end(
        &[
            ("NVIDIA_API_KEY", "k"),
            ("NVIDIA_ORG_NAME", "o"),
            ("LISTEN_ADDRESS", "127.0.0.1:0"),
            ("NVIDIA_API_CA_FILE", path.to_str().unwrap()),
        ],
        &[],
    );
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}

#[tokio::test]
async fn https_proxy_tunnels_cls_requests_and_no_proxy_bypasses_it() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let pki = Pki::new();
    let front = Front::start(cls.addr(), Mode::Tls(pki.server_config())).await;
    let base = format!("https://{}", front.addr());
    let ca = write_file(&scratch_dir("tls-proxy"), "ca.pem", &pki.ca_pem);
    let proxy = ConnectProxy::tunnelling().await;
    let proxy_url = proxy.url();

    let via_proxy = Exporter::start(
        &base,
        &[
            ("NVIDIA_API_CA_FILE", ca.to_str().unwrap()),
            ("HTTPS_PROXY", &proxy_url),
        ],
    );
    assert!(
        via_proxy.metrics().await.contains(UP),
        "{}",
        via_proxy.stderr()
    );
    let tunnels = proxy.targets();
    assert!(!tunnels.is_empty());
    assert!(
        tunnels.iter().all(|t| *t == front.addr().to_string()),
        "{tunnels:?}"
    );
    let requests_seen = cls.request_count();
    assert!(
        requests_seen > tunnels.len(),
        "connections are reused inside the tunnels"
    );

    proxy.clear();
    let direct = Exporter::start(
        &base,
        &[
            ("NVIDIA_API_CA_FILE", ca.to_str().unwrap()),
            ("https_proxy", &proxy_url),
            ("NO_PROXY", "example.com,127.0.0.1"),
        ],
    );
    assert!(direct.metrics().await.contains(UP), "{}", direct.stderr());
    assert!(
        proxy.targets().is_empty(),
        "NO_PROXY host went through the proxy"
    );
}

#[tokio::test]
async fn an_unreachable_proxy_fails_the_refresh_with_a_clear_line() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let closed = free_addr();
    let exporter = Exporter::start(
        &cls.base_url(),
        &[
            ("HTTPS_PROXY", &format!("http://{closed}")),
            ("SCRAPE_TIMEOUT", "2s"),
        ],
    );
    let text = exporter.metrics().await;
    assert!(text.contains("nvidia_cls_up{org_name=\"lic-demo\"} 0\n"));
    let told = log_lines(&exporter, "proxy CONNECT failed").await;
    assert!(!told.is_empty(), "{}", exporter.stderr());
}
