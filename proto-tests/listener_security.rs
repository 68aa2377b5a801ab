//! Listener security configured by an exporter-toolkit web config file: TLS,
//! mutual TLS and basic auth, proven with real TLS clients on 127.0.0.1.

mod support;

use support::fake_cls::fixture;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::time::{Duration, Instant};
use support::exporter::{http, http_on, log_lines, run_to_end, Exporter, Response};
use support::fake_cls::FakeCls;
use support::pki::Pki;
use support::scratch::{scratch_dir, write_file};

async fn https_get(
    exporter: &Exporter,
    connector: &tokio_rustls::TlsConnector,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let tcp = tokio::net::TcpStream::connect(exporter.addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await?;
    Ok(http_on(tls, &exporter.addr.to_string(), "GET", path, headers).await)
}

/// GET `path` with basic auth as `user`.
async fn get_as(exporter: &Exporter, path: &str, user: &str, password: &str) -> Response {
    let credentials = basic(user, password);
    http(
        exporter.addr,
        "GET",
        path,
        &[("Authorization", &credentials)],
    )
    .await
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!("Basic {}", STANDARD.encode(pair))
}

const UP: &str = "nvidia_cls_up{org_name=\"lic-demo\"} 1\n";

#[tokio::test]
async fn basic_auth_guards_metrics_and_the_status_page() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let dir = scratch_dir("web-auth");
    let hash = bcrypt::hash("s3cret pass", 6).unwrap();
    write_file(
        &dir,
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
    );
    let web = dir.join("web.yml");
    let exporter = Exporter::start(
        &cls.base_url(),
        &[("WEB_CONFIG_FILE", web.to_str().unwrap())],
    );
    assert!(exporter.stderr().contains("basic_auth=true"));

    for path in ["/metrics", "/"] {
        let none = http(exporter.addr, "GET", path, &[]).await;
        assert_eq!(none.status, 401, "{path} without credentials");
        assert_eq!(
            none.header("www-authenticate"),
            Some("Basic realm=\"nvidia-license-server-exporter\"")
        );
        let wrong = get_as(&exporter, path, "alice", "nope").await;
        assert_eq!(wrong.status, 401, "{path} with a wrong password");
        let stranger = get_as(&exporter, path, "mallory", "s3cret pass").await;
        assert_eq!(stranger.status, 401, "{path} with an unknown user");
        let good = get_as(&exporter, path, "alice", "s3cret pass").await;
        assert_eq!(good.status, 200, "{path} with the right password");
    }
    let metrics = get_as(&exporter, "/metrics", "alice", "s3cret pass").await;
    assert!(metrics.text().contains(UP));
    assert_eq!(
        http(exporter.addr, "GET", "/healthz", &[]).await.status,
        200,
        "/healthz stays open by default"
    );
    assert!(!exporter.stderr().contains(&hash));

    let closed = Exporter::start(
        &cls.base_url(),
        &[
            ("WEB_CONFIG_FILE", web.to_str().unwrap()),
            ("WEB_HEALTHZ_OPEN", "false"),
        ],
    );
    assert_eq!(http(closed.addr, "GET", "/healthz", &[]).await.status, 401);
}

/// A wrong password, no password and an unknown user cost the same bcrypt
/// verification, so their 401s take the same time: the timing says neither
/// which names exist nor anything of the password. Medians of several
/// tries, compared as ratios.
#[tokio::test]
async fn wrong_password_no_password_and_unknown_user_take_the_same_time() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let dir = scratch_dir("web-timing");
    let hash = bcrypt::hash("right", 8).unwrap();
    write_file(
        &dir,
        "web.yml",
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
    );
    let exporter = Exporter::start(
        &cls.base_url(),
        &[("WEB_CONFIG_FILE", dir.join("web.yml").to_str().unwrap())],
    );
    // The first refresh runs at start: let it end before timing, so that
    // its work is not in some of the medians.
    assert_eq!(
        log_lines(&exporter, "first refresh succeeded").await.len(),
        1
    );
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    let mut empty = Vec::new();
    for i in 0..9 {
        let t = Instant::now();
        let r = get_as(&exporter, "/metrics", "alice", "").await;
        empty.push(t.elapsed());
        assert_eq!(r.status, 401);
        let t = Instant::now();
        let r = get_as(&exporter, "/metrics", "alice", &format!("bad{i}")).await;
        wrong.push(t.elapsed());
        assert_eq!(r.status, 401);
        let t = Instant::now();
        let r = get_as(&exporter, "/metrics", &format!("user{i}"), "bad").await;
        unknown.push(t.elapsed());
        assert_eq!(r.status, 401);
    }
    let (wrong, unknown, empty) = (median(wrong), median(unknown), median(empty));
    let ratio = wrong.as_secs_f64() / unknown.as_secs_f64();
    let empty_ratio = empty.as_secs_f64() / unknown.as_secs_f64();
    eprintln!(
        "median 401: wrong password {wrong:?}, no password {empty:?}, unknown user {unknown:?}"
    );
    assert!(
        (0.5..2.0).contains(&ratio) && (0.5..2.0).contains(&empty_ratio),
        "wrong {wrong:?} vs no password {empty:?} vs unknown {unknown:?}"
    );
    assert!(
        wrong > Duration::from_millis(2),
        "a bcrypt verification ran for the wrong password"
    );
}

#[tokio::test]
async fn tls_and_mutual_tls_work_with_real_tls_clients() {
    let cls = FakeCls::start(fixture(), "test-key").await;
    let (server, clients, rogue) = (Pki::new(), Pki::new(), Pki::new());
    let dir = scratch_dir("web-tls");
    write_file(&dir, "server.pem", &server.server.cert_pem);
    write_file(&dir, "server-key.pem", &server.server.key_pem);
    write_file(&dir, "clients.pem", &clients.ca_pem);
    // Relative paths: relative to the web config file's directory.
    write_file(
        &dir,
        "tls.yml",
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n",
    );
    write_file(&dir, "mtls.yml", "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n");

    let tls = Exporter::start(
        &cls.base_url(),
        &[("WEB_CONFIG_FILE", dir.join("tls.yml").to_str().unwrap())],
    );
    let r = https_get(&tls, &server.connector(None), "/metrics", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains(UP));
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = tokio::net::TcpStream::connect(tls.addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = s
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    })
    .await
    .unwrap();
    assert!(!plain.starts_with(b"HTTP/1.1 200"));
    // The healthcheck subcommand speaks TLS to it.
    let (status, _, stderr) = run_to_end(
        &[
            ("LISTEN_ADDRESS", &tls.addr.to_string()),
            ("WEB_CONFIG_FILE", dir.join("tls.yml").to_str().unwrap()),
        ],
        &["healthcheck"],
    );
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mtls = Exporter::start(
        &cls.base_url(),
        &[("WEB_CONFIG_FILE", dir.join("mtls.yml").to_str().unwrap())],
    );
    let with_cert = https_get(
        &mtls,
        &server.connector(Some(&clients.client)),
        "/metrics",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(with_cert.status, 200);
    for (what, client) in [
        ("no client certificate", None),
        ("a certificate of another CA", Some(&rogue.client)),
    ] {
        let result = https_get(&mtls, &server.connector(client), "/metrics", &[]).await;
        let refused = match result {
            Err(_) => true,
            Ok(r) => r.status == 0 || r.body.is_empty(),
        };
        assert!(refused, "{what} was let in");
    }
}

#[test]
fn a_bad_web_config_stops_the_start_naming_the_key() {
    let dir = scratch_dir("web-bad");
    let base = [
        ("NVIDIA_API_KEY", "k"),
        ("NVIDIA_ORG_NAME", "o"),
        ("LISTEN_ADDRESS", "127.0.0.1:0"),
    ];
    for (yaml, needle) in [
        (
            "basic_auth_users:\n  alice: hunter2\n",
            "basic_auth_users.alice is not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: k.pem\n",
            "missing.pem",
        ),
        ("tls_server_confg: {}\n", "unknown key \"tls_server_confg\""),
        ("basic_auth_users: [\n", "YAML"),
    ] {
        let path = dir.join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        let mut env = base.to_vec();
        env.push(("WEB_CONFIG_FILE", path.to_str().unwrap()));
        let (status, _, stderr) = run_to_end(&env, &[]);
        assert_eq!(status.code(), Some(2), "{yaml}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the configured secret is not echoed"
        );
    }
}
