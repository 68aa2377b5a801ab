//! Flags, environment and Go durations: `config::parse` must never panic,
//! its errors must be one line (as `ConfigError` promises), and every
//! duration that parses must format back (Go's `Duration.String`) to text
//! that parses to the same value.
//!
//! Input: sections separated by NUL. Section 0: the arguments, one per line.
//! Section 1: the environment, `NAME=value` lines; a NAME that is not one of
//! the names below is mapped onto one of them, so mutations reach every
//! variable without the fuzzer having to guess names. Section 2, when
//! present: what every file read returns (else the read fails). Section 3:
//! a duration parsed on its own, and its first 8 bytes as nanoseconds,
//! formatted then parsed.

#![no_main]

use exporter_fuzz::text;
use libfuzzer_sys::fuzz_target;
use nvidia_license_server_exporter::harness::{format_go_duration, parse_go_duration};
use nvidia_license_server_exporter::harness::{parse, Command};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Every variable the exporter reads (config/settings.rs SETTINGS, aliases included).
const ENV_NAMES: &[&str] = &[
    "NVIDIA_API_KEY",
    "NLS_API_KEY",
    "NVIDIA_API_KEY_FILE",
    "NVIDIA_ORG_NAME",
    "NLS_ORG_NAME",
    "NVIDIA_API_BASE_URL",
    "NVIDIA_SERVICE_INSTANCE_ID",
    "LISTEN_ADDRESS",
    "PORT",
    "METRICS_PATH",
    "SCRAPE_TIMEOUT",
    "CACHE_TTL",
    "PARALLELISM",
    "CLS_PAGE_SIZE",
    "NVIDIA_API_CA_FILE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "WEB_CONFIG_FILE",
    "WEB_HEALTHZ_OPEN",
    "OTEL_ENABLED",
    "OTEL_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SERVICE_INSTANCE_ID",
    "OTEL_INSECURE",
    "OTEL_PUSH_INTERVAL",
    "HOSTNAME",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_INSECURE",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_METRIC_EXPORT_INTERVAL",
];

/// Go's largest duration, the parser's upper bound.
const MAX_NANOS: u64 = i64::MAX as u64;

fn env_name(given: &str) -> &'static str {
    ENV_NAMES
        .iter()
        .find(|n| **n == given)
        .copied()
        .unwrap_or_else(|| {
            let sum: usize = given.bytes().map(usize::from).sum();
            ENV_NAMES[sum % ENV_NAMES.len()]
        })
}

/// A duration that parses must survive format → parse unchanged.
fn round_trip(s: &str) {
    if let Ok(d) = parse_go_duration(s) {
        let formatted = format_go_duration(d);
        assert_eq!(
            parse_go_duration(&formatted),
            Ok(d),
            "{s:?} parsed to {d:?}, formatted as {formatted:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let sections: Vec<&[u8]> = data.splitn(4, |b| *b == 0).collect();
    let section = |i: usize| sections.get(i).copied();

    let args: Vec<String> = match section(0) {
        Some(s) if !s.is_empty() => s.split(|b| *b == b'\n').map(text).collect(),
        _ => Vec::new(),
    };
    let mut env: HashMap<&'static str, String> = HashMap::new();
    for line in section(1).unwrap_or_default().split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let line = text(line);
        let (name, value) = line.split_once('=').unwrap_or(("", &line));
        env.insert(env_name(name), value.to_owned());
    }
    let file = section(2).map(text);
    let read_file = |_: &Path| -> std::io::Result<String> {
        file.clone()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    };
    let lookup = |name: &str| env.get(name).cloned();

    match parse(&args, &lookup, &read_file) {
        Ok(Command::Healthcheck(config)) => {
            let _ = format!("{config:?}");
        }
        Ok(Command::Run(config)) | Ok(Command::Check(config, _)) => {
            // Debug output goes to logs: it must render.
            let _ = format!("{config:?}");
            for d in [
                config.scrape_timeout,
                config.cache_ttl,
                config.otel.push_interval,
            ] {
                assert!(d > Duration::ZERO);
            }
        }
        Ok(Command::Help(help)) => assert!(!help.is_empty()),
        Ok(Command::Version) => {}
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.contains(['\n', '\r']),
                "a configuration error must be one line: {message:?}"
            );
        }
    }

    // Every value given may be a duration; so may section 3.
    for value in args.iter().chain(env.values()) {
        round_trip(value);
        if let Some((_, v)) = value.split_once('=') {
            round_trip(v);
        }
    }
    if let Some(s) = section(3) {
        round_trip(&text(s));
        let mut bytes = [0u8; 8];
        let n = s.len().min(8);
        bytes[..n].copy_from_slice(&s[..n]);
        let d = Duration::from_nanos(u64::from_le_bytes(bytes) % (MAX_NANOS + 1));
        let formatted = format_go_duration(d);
        assert_eq!(
            parse_go_duration(&formatted),
            Ok(d),
            "{d:?} formatted as {formatted:?}"
        );
    }
});
