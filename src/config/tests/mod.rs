//! Tests of the whole of `parse`, both stages at once, as a user meets them: the
//! helpers and the table of every flagged setting here, the cases by concern below.

use super::settings::SETTINGS;
use super::*;
use std::io;

mod flags;
mod otel;
mod secrets;
mod values;

const REQUIRED: [(&str, &str); 2] = [("NVIDIA_API_KEY", "key-123"), ("NVIDIA_ORG_NAME", "acme")];

/// The environment of REQUIRED plus `vars`; later entries win, so "" unsets a required one.
fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let all: Vec<(String, String)> = REQUIRED
        .iter()
        .chain(vars)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name: &str| {
        all.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Parses with REQUIRED plus `vars` (see [`lookup`]).
fn try_parse(
    args: &[&str],
    vars: &[(&str, &str)],
    read_file: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Command, String> {
    parse(&strings(args), &lookup(vars), read_file).map_err(|e| e.to_string())
}

fn no_files(_: &Path) -> io::Result<String> {
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        "permission denied",
    ))
}

/// Parses a `healthcheck` command line: its [`HealthcheckConfig`], and the [`Config`]
/// of every other setting that it validated on the way (key and org name empty).
fn healthcheck(
    args: &[&str],
    vars: &[(&str, &str)],
) -> Result<(HealthcheckConfig, Config), String> {
    let checked = match try_parse(args, vars, &no_files)? {
        Command::Healthcheck(checked) => checked,
        other => panic!("expected Healthcheck, got {other:?}"),
    };
    let Ok(raw::Gathered::Raw(raw)) = raw::gather(&strings(args), &lookup(vars)) else {
        panic!("{args:?} gathered raw values once, so it does again");
    };
    let config = build::without_credentials(&raw).map_err(|e| e.to_string())?;
    assert_eq!(
        (&checked.listen, &checked.web_config_file),
        (&config.listen, &config.web_config_file)
    );
    Ok((checked, config))
}

fn run(args: &[&str], vars: &[(&str, &str)]) -> Config {
    match try_parse(args, vars, &no_files) {
        Ok(Command::Run(config)) => config,
        other => panic!("expected Run, got {other:?}"),
    }
}

fn env(vars: &[(&str, &str)]) -> Config {
    run(&[], vars)
}

fn error(args: &[&str], vars: &[(&str, &str)]) -> String {
    match try_parse(args, vars, &no_files) {
        Err(e) => e,
        Ok(command) => panic!("expected an error, got {command:?}"),
    }
}

/// Asserts that `name=value` in the environment fails with exactly `reason`.
fn rejects(name: &str, value: &str, reason: &str) {
    let want = format!("{name}={value:?} is not valid: {reason}");
    assert_eq!(error(&[], &[(name, value)]), want);
}

type Show = fn(&Config) -> String;

/// Every flagged setting: env name, a value, and what the Config then shows.
#[rustfmt::skip]
fn every_flag() -> Vec<(&'static str, &'static str, &'static str, Show)> {
    vec![
        ("NVIDIA_API_KEY", "key-given", "key-given", |c| c.api_key.expose().into()),
        ("NVIDIA_ORG_NAME", "org-given", "org-given", |c| c.org_name.clone()),
        ("NVIDIA_API_BASE_URL", "http://cls.test:8080/", "http://cls.test:8080", |c| c.api_base_url.clone()),
        ("NVIDIA_SERVICE_INSTANCE_ID", "si-1", "Some(\"si-1\")", |c| format!("{:?}", c.service_instance_id)),
        ("LISTEN_ADDRESS", "127.0.0.1:9000", "Ip(127.0.0.1:9000)", |c| format!("{:?}", c.listen)),
        ("METRICS_PATH", "/m", "/m", |c| c.metrics_path.clone()),
        ("SCRAPE_TIMEOUT", "1m30s", "90s", |c| format!("{:?}", c.scrape_timeout)),
        ("CACHE_TTL", "5m", "300s", |c| format!("{:?}", c.cache_ttl)),
        ("PARALLELISM", "16", "16", |c| c.parallelism.to_string()),
        ("CLS_PAGE_SIZE", "500", "500", |c| c.cls_page_size.to_string()),
        ("NVIDIA_API_CA_FILE", "/ca.pem", "Some(\"/ca.pem\")", |c| format!("{:?}", c.api_ca_file)),
        ("WEB_CONFIG_FILE", "/web.yml", "Some(\"/web.yml\")", |c| format!("{:?}", c.web_config_file)),
        ("WEB_HEALTHZ_OPEN", "false", "false", |c| c.healthz_open.to_string()),
        ("LOG_LEVEL", "DEBUG", "Debug", |c| format!("{:?}", c.log_level)),
        ("LOG_FORMAT", "json", "Json", |c| format!("{:?}", c.log_format)),
        ("OTEL_ENABLED", "true", "true", |c| c.otel.enabled.to_string()),
        ("OTEL_ENDPOINT", "collector:4317", "http://collector:4317", |c| c.otel.endpoint.clone()),
        ("OTEL_SERVICE_NAME", "svc", "svc", |c| c.otel.service_name.clone()),
        ("OTEL_SERVICE_INSTANCE_ID", "i-1", "i-1", |c| c.otel.service_instance_id.clone()),
        ("OTEL_INSECURE", "false", "false https://127.0.0.1:4317", |c| format!("{} {}", c.otel.insecure, c.otel.endpoint)),
        ("OTEL_PUSH_INTERVAL", "30s", "30s", |c| format!("{:?}", c.otel.push_interval)),
        ("OTEL_BACKLOG_MAX_AGE", "2h", "7200s", |c| format!("{:?}", c.otel.backlog.max_age)),
        ("OTEL_BACKLOG_MAX_BYTES", "1GB", "1000000000", |c| c.otel.backlog.max_bytes.to_string()),
        ("OTEL_BACKLOG_REQUEST_MAX_BYTES", "1MiB", "1048576", |c| c.otel.backlog.request_max_bytes.to_string()),
        ("OTEL_SPOOL_DIR", "/var/spool/x", "Some(\"/var/spool/x\")", |c| format!("{:?}", c.otel.backlog.spool_dir)),
    ]
}

#[test]
fn every_flagged_setting_has_a_case() {
    let cases = every_flag();
    for setting in SETTINGS.iter().filter(|s| s.flag.is_some()) {
        assert!(
            cases.iter().any(|c| c.0 == setting.env),
            "{} has no case",
            setting.env
        );
    }
}

#[test]
fn every_setting_reads_its_env_var() {
    for (name, value, want, show) in every_flag() {
        assert_eq!(show(&env(&[(name, value)])), want, "{name}");
    }
}

#[test]
fn every_setting_reads_its_flag_in_all_four_forms() {
    for (name, value, want, show) in every_flag() {
        let setting = SETTINGS
            .iter()
            .find(|s| s.env == name)
            .expect("a known setting");
        let flag = setting.flag.expect("a flagged setting");
        let (single, double) = (format!("-{flag}"), format!("--{flag}"));
        let joined = [format!("-{flag}={value}"), format!("--{flag}={value}")];
        let mut forms = vec![vec![joined[0].as_str()], vec![joined[1].as_str()]];
        if !setting.arg.is_empty() {
            forms.extend([vec![single.as_str(), value], vec![double.as_str(), value]]);
        }
        for args in forms {
            assert_eq!(show(&run(&args, &[])), want, "{args:?}");
        }
    }
}

#[test]
fn defaults_apply_when_only_required_values_are_set() {
    let c = env(&[]);
    assert_eq!(
        (c.api_key.expose(), c.org_name.as_str()),
        ("key-123", "acme")
    );
    assert_eq!(c.api_base_url, "https://api.licensing.nvidia.com");
    assert_eq!(c.service_instance_id, None);
    assert_eq!(
        (c.listen, c.listen_address.as_str()),
        (ListenAddr::AllInterfaces(9844), ":9844")
    );
    assert_eq!(c.metrics_path, "/metrics");
    assert_eq!(
        (c.scrape_timeout, c.cache_ttl),
        (Duration::from_secs(20), Duration::from_secs(60))
    );
    assert_eq!((c.parallelism, c.cls_page_size), (8, 100));
    assert_eq!(c.api_ca_file, None);
    assert_eq!(
        (c.log_level, c.log_format),
        (LogLevel::Info, LogFormat::Text)
    );
    assert_eq!((c.https_proxy, c.no_proxy), (None, vec![]));
    let o = c.otel;
    assert!(!o.enabled);
    assert_eq!(
        (o.endpoint.as_str(), o.insecure),
        ("http://127.0.0.1:4317", true)
    );
    assert_eq!(
        (o.protocol, o.compression),
        (OtlpProtocol::Grpc, OtlpCompression::None)
    );
    assert!(o.headers.is_empty() && o.resource_attributes.is_empty());
    assert_eq!(o.timeout, Duration::from_secs(10));
    assert_eq!(
        (o.certificate, o.client_certificate, o.client_key),
        (None, None, None)
    );
    assert_eq!(o.service_name, "nvidia-license-server-exporter");
    assert_eq!(o.service_instance_id, "unknown");
    assert_eq!(o.push_interval, Duration::from_secs(60));
    assert_eq!(o.backlog.max_age, Duration::from_secs(86_400));
    assert_eq!(
        (o.backlog.max_bytes, o.backlog.request_max_bytes),
        (64 << 20, 4 << 20)
    );
    assert_eq!(o.backlog.spool_dir, None);
}

#[test]
fn error_quotes_setting_value_and_reason_on_one_line() {
    assert_eq!(
        error(&[], &[("SCRAPE_TIMEOUT", "0s")]),
        "SCRAPE_TIMEOUT=\"0s\" is not valid: must be positive"
    );
    assert_eq!(
        error(&["-cache-ttl=-1s"], &[]),
        "-cache-ttl=\"-1s\" is not valid: must be positive"
    );
    assert_eq!(
        error(&["--metrics-path", "a\nb"], &[]),
        "--metrics-path=\"a\\nb\" is not valid: must start with /"
    );
}
