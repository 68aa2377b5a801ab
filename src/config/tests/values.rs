//! Each value parser through `parse`: listen addresses, booleans, durations,
//! ranges, URLs, paths, choices and proxies, with the exact error of each bad value.

use super::*;

#[test]
fn port_fallback_listens_on_all_interfaces() {
    let c = env(&[("PORT", "8080")]);
    assert_eq!(
        (c.listen, c.listen_address.as_str()),
        (ListenAddr::AllInterfaces(8080), ":8080")
    );
    assert_eq!(env(&[("PORT", ":8081")]).listen_address, ":8081");
}

#[test]
fn listen_address_wins_over_port() {
    assert_eq!(
        env(&[("PORT", "8080"), ("LISTEN_ADDRESS", ":9000")]).listen_address,
        ":9000"
    );
    assert_eq!(
        run(&["-listen-address", ":9001"], &[("PORT", "8080")]).listen_address,
        ":9001"
    );
}

#[test]
fn bad_port_is_named_as_port() {
    rejects("PORT", "http", "the port must be a number from 0 to 65535");
}

#[test]
fn listen_address_forms() {
    let listen = |v| env(&[("LISTEN_ADDRESS", v)]).listen;
    let ip = |s: &str| ListenAddr::Ip(s.parse().expect("a socket address"));
    assert_eq!(
        listen("localhost:80"),
        ListenAddr::Host("localhost".into(), 80)
    );
    assert_eq!(listen("[::1]:9844"), ip("[::1]:9844"));
    assert_eq!(listen("0.0.0.0:0"), ip("0.0.0.0:0"));
    assert_eq!(listen(":65535"), ListenAddr::AllInterfaces(65535));
}

#[test]
fn bad_listen_addresses_are_rejected() {
    let name = "LISTEN_ADDRESS";
    rejects(
        name,
        "9844",
        "expected :port, host:port, ip:port or [ipv6]:port",
    );
    rejects(name, ":65536", "the port must be a number from 0 to 65535");
    rejects(name, "host:", "the port must be a number from 0 to 65535");
    rejects(
        name,
        "::1:80",
        "not a valid host name or address (IPv6 addresses need [brackets])",
    );
    rejects(name, "[::g]:80", "not a valid IPv6 address");
}

#[test]
fn bool_accepts_go_parse_bool_forms() {
    for v in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(env(&[("OTEL_ENABLED", v)]).otel.enabled, "{v}");
    }
    for v in ["0", "f", "F", "FALSE", "false", "False"] {
        assert!(!env(&[("OTEL_ENABLED", v)]).otel.enabled, "{v}");
    }
    rejects(
        "OTEL_ENABLED",
        "yes",
        "expected true or false (or 1, 0, t, f)",
    );
}

#[test]
fn zero_negative_or_malformed_durations_are_rejected() {
    rejects("SCRAPE_TIMEOUT", "0", "must be positive");
    rejects("CACHE_TTL", "-1s", "must be positive");
    rejects("OTEL_PUSH_INTERVAL", "0s", "must be positive");
    rejects(
        "CACHE_TTL",
        "1x",
        "unknown unit \"x\"; units are ns, us, ms, s, m, h",
    );
}

#[test]
fn parallelism_and_page_size_must_be_in_range() {
    for v in ["0", "257", "-1", "+5", "many"] {
        rejects("PARALLELISM", v, "expected an integer from 1 to 256");
    }
    rejects(
        "CLS_PAGE_SIZE",
        "10001",
        "expected an integer from 1 to 10000",
    );
    let c = env(&[("PARALLELISM", "256"), ("CLS_PAGE_SIZE", "10000")]);
    assert_eq!((c.parallelism, c.cls_page_size), (256, 10000));
}

#[test]
fn malformed_base_url_is_rejected() {
    let name = "NVIDIA_API_BASE_URL";
    rejects(
        name,
        "api.nvidia.com",
        "must start with https:// or http://",
    );
    rejects(name, "https://", "missing host");
    rejects(name, "https://x/?a=1", "must not have a query or fragment");
    rejects(
        name,
        "https://x:99999",
        "the port must be a number from 0 to 65535",
    );
}

#[test]
fn base_url_keeps_its_path_without_trailing_slash() {
    let c = env(&[("NVIDIA_API_BASE_URL", "https://gw.test/cls//")]);
    assert_eq!(c.api_base_url, "https://gw.test/cls");
}

#[test]
fn bad_metrics_path_is_rejected() {
    let taken = "must not be / or /healthz, which the exporter serves itself";
    rejects("METRICS_PATH", "metrics", "must start with /");
    rejects("METRICS_PATH", "/", taken);
    rejects("METRICS_PATH", "/healthz", taken);
    rejects("METRICS_PATH", "/m?x", "must not contain ? or #");
}

#[test]
fn bad_choices_list_what_is_accepted() {
    rejects("LOG_LEVEL", "trace", "expected error, warn, info or debug");
    rejects("LOG_FORMAT", "xml", "expected text or json");
    rejects(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/json",
        "expected grpc or http/protobuf",
    );
    rejects(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "br",
        "expected gzip or none",
    );
}

#[test]
fn upper_case_proxy_wins_and_is_normalised() {
    let c = env(&[
        ("https_proxy", "http://lower:3128"),
        ("HTTPS_PROXY", "http://upper:3128/"),
    ]);
    assert_eq!(c.https_proxy.as_deref(), Some("http://upper:3128"));
    let c = env(&[("https_proxy", "lower:3128")]);
    assert_eq!(c.https_proxy.as_deref(), Some("http://lower:3128"));
    let c = env(&[("HTTPS_PROXY", "http://proxy.corp")]);
    assert_eq!(c.https_proxy.as_deref(), Some("http://proxy.corp:80"));
}

#[test]
fn bad_proxies_are_rejected() {
    rejects(
        "HTTPS_PROXY",
        "https://p:3128",
        "only http:// proxies are supported",
    );
    rejects(
        "HTTPS_PROXY",
        "http://p:3128/path",
        "expected http://host:port",
    );
    assert_eq!(
        error(&[], &[("https_proxy", "http://user:pw@p:3128")]),
        "https_proxy=\"<redacted>\" is not valid: proxy credentials are not supported"
    );
}

#[test]
fn no_proxy_is_split_and_trimmed() {
    assert_eq!(
        env(&[("NO_PROXY", " a.test, ,.b.test ")]).no_proxy,
        ["a.test", ".b.test"]
    );
    assert_eq!(env(&[("no_proxy", "c.test")]).no_proxy, ["c.test"]);
}
