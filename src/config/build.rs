//! Stage two, the build: raw strings → a typed, validated [`Config`] or [`HealthcheckConfig`].
//!
//! The only file read here is the API key file, through the injected `read_file`;
//! the other files are read by `main`, before it binds the port.

use std::path::{Path, PathBuf};

use super::raw::{Raw, RawArgs};
use super::settings::*;
use super::values::*;
use super::{BacklogConfig, OtelConfig, OtlpCompression, OtlpProtocol, Secret};
use super::{Config, ConfigError, HealthcheckConfig, LogFormat, LogLevel};

/// The server's configuration: the key and org name are required.
pub(crate) fn run(
    raw: &RawArgs,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Config, ConfigError> {
    let api_key = api_key(raw, read_file)?;
    let org_name = raw.required(&ORG_NAME)?;
    settings(raw, api_key, org_name)
}

/// The healthcheck needs only the listener's address and TLS, but every other
/// setting is validated as for [`run`]: a setting the server would refuse fails
/// the healthcheck too.
pub(crate) fn healthcheck(raw: &RawArgs) -> Result<HealthcheckConfig, ConfigError> {
    let Config {
        listen,
        web_config_file,
        ..
    } = without_credentials(raw)?;
    Ok(HealthcheckConfig {
        listen,
        web_config_file,
    })
}

/// Every setting but the key and the org name, which are left empty (and the key
/// file unread): what the healthcheck validates.
pub(crate) fn without_credentials(raw: &RawArgs) -> Result<Config, ConfigError> {
    settings(raw, Secret(String::new()), String::new())
}

/// Every setting after the credentials, in the order their errors are reported.
fn settings(raw: &RawArgs, api_key: Secret, org_name: String) -> Result<Config, ConfigError> {
    let default_listen = Raw {
        name: LISTEN_ADDRESS.env.to_string(),
        value: DEFAULT_LISTEN_ADDRESS.to_string(),
    };
    let (listen_raw, listen_address) = match (raw.get(&LISTEN_ADDRESS), raw.get(&PORT)) {
        (Some(given), _) => (given, given.value.clone()),
        (None, Some(port)) if port.value.starts_with(':') => (port, port.value.clone()),
        (None, Some(port)) => (port, format!(":{}", port.value)),
        (None, None) => (&default_listen, default_listen.value.clone()),
    };
    let listen = parse_listen(&listen_address).map_err(|reason| listen_raw.invalid(reason))?;

    let https_proxy = match raw.get(&HTTPS_PROXY) {
        None => None,
        // The URL may carry credentials, so never echo one that has an '@'.
        Some(proxy) if proxy.value.contains('@') => {
            return Err(proxy.invalid_secret("proxy credentials are not supported"))
        }
        Some(proxy) => Some(parse_proxy(&proxy.value).map_err(|reason| proxy.invalid(reason))?),
    };
    let no_proxy = raw
        .string(&NO_PROXY)
        .map_or_else(Vec::new, |list| parse_no_proxy(&list));

    Ok(Config {
        api_key,
        org_name,
        api_base_url: raw.parse_or(&API_BASE_URL, DEFAULT_API_BASE_URL.into(), parse_base_url)?,
        service_instance_id: raw.string(&SERVICE_INSTANCE_ID),
        listen,
        listen_address,
        metrics_path: raw.parse_or(
            &METRICS_PATH,
            DEFAULT_METRICS_PATH.into(),
            parse_metrics_path,
        )?,
        scrape_timeout: raw.parse_or(&SCRAPE_TIMEOUT, DEFAULT_SCRAPE_TIMEOUT, parse_duration)?,
        cache_ttl: raw.parse_or(&CACHE_TTL, DEFAULT_CACHE_TTL, parse_duration)?,
        parallelism: raw.parse_or(&PARALLELISM, DEFAULT_PARALLELISM, |v| {
            parse_in_range(v, MAX_PARALLELISM)
        })?,
        cls_page_size: raw.parse_or(&CLS_PAGE_SIZE, DEFAULT_CLS_PAGE_SIZE, |v| {
            parse_in_range(v, MAX_CLS_PAGE_SIZE)
        })?,
        api_ca_file: raw.string(&API_CA_FILE).map(PathBuf::from),
        web_config_file: raw.string(&WEB_CONFIG_FILE).map(PathBuf::from),
        healthz_open: raw.parse_or(&WEB_HEALTHZ_OPEN, DEFAULT_WEB_HEALTHZ_OPEN, parse_bool)?,
        log_level: raw.parse_or(&LOG_LEVEL, DEFAULT_LOG_LEVEL, LogLevel::parse)?,
        log_format: raw.parse_or(&LOG_FORMAT, DEFAULT_LOG_FORMAT, LogFormat::parse)?,
        https_proxy,
        no_proxy,
        otel: otel(raw)?,
    })
}

/// The key from the flag, NVIDIA_API_KEY or NLS_API_KEY; only when none is set is
/// NVIDIA_API_KEY_FILE read. Setting both is not an error: the direct value wins, so
/// a command-line override works in an image that ships a key file.
fn api_key(
    raw: &RawArgs,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Secret, ConfigError> {
    let (source, key) = match (raw.get(&API_KEY), raw.get(&API_KEY_FILE)) {
        (Some(direct), _) => (direct, direct.value.clone()),
        (None, Some(file)) => {
            let content = read_file(Path::new(&file.value))
                .map_err(|e| file.invalid(&format!("cannot read it: {e}")))?;
            let key = content.trim_end_matches(['\r', '\n']);
            if key.is_empty() {
                return Err(file.invalid("the file is empty"));
            }
            (file, key.to_string())
        }
        (None, None) => {
            return Err(ConfigError(
                "NVIDIA_API_KEY is required: set NVIDIA_API_KEY or NVIDIA_API_KEY_FILE, or pass -nvidia-api-key".into(),
            ))
        }
    };
    // The key goes into a request header, where only visible ASCII is safe.
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        let reason = "the key must be visible ASCII without spaces";
        return Err(if source.name == API_KEY_FILE.env {
            source.invalid(reason)
        } else {
            source.invalid_secret(reason)
        });
    }
    Ok(Secret(key))
}

fn otel(raw: &RawArgs) -> Result<OtelConfig, ConfigError> {
    // Every given value is validated, even one that a higher-precedence variable overrides.
    let protocol = raw.parse_or(&OTLP_PROTOCOL, DEFAULT_OTLP_PROTOCOL, OtlpProtocol::parse)?;
    let metrics_endpoint = raw.parse(&OTLP_METRICS_ENDPOINT, parse_endpoint)?;
    let base_endpoint = raw.parse(&OTLP_ENDPOINT, parse_endpoint)?;
    let legacy_endpoint = raw.parse(&OTEL_ENDPOINT, parse_endpoint)?;
    let (endpoint, is_base) = match (metrics_endpoint, base_endpoint.or(legacy_endpoint)) {
        (Some(endpoint), _) => (endpoint, false),
        (None, Some(endpoint)) => (endpoint, true),
        (None, None) => ((None, DEFAULT_OTEL_ENDPOINT.to_string()), true),
    };
    let insecure_setting = raw.parse(&OTLP_INSECURE, parse_bool)?;
    let legacy_insecure = raw.parse(&OTEL_INSECURE, parse_bool)?;
    let (scheme_tls, address) = endpoint;
    let insecure = match scheme_tls {
        Some(tls) => !tls,
        None => insecure_setting
            .or(legacy_insecure)
            .unwrap_or(DEFAULT_OTEL_INSECURE),
    };
    let mut endpoint = format!("{}://{address}", if insecure { "http" } else { "https" });
    if is_base && protocol == OtlpProtocol::HttpProtobuf {
        endpoint.push_str(OTLP_HTTP_METRICS_PATH);
    }

    let headers = match raw.get(&OTLP_HEADERS) {
        None => Vec::new(),
        Some(given) => parse_pairs(&given.value).map_err(|reason| given.invalid_secret(&reason))?,
    };
    let resource_attributes = raw.parse_or(&RESOURCE_ATTRIBUTES, Vec::new(), parse_pairs)?;
    let service_name = raw
        .string(&OTEL_SERVICE_NAME)
        .or_else(|| {
            resource_attributes
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| DEFAULT_OTEL_SERVICE_NAME.to_string());
    let push_interval = raw.parse(&OTEL_PUSH_INTERVAL, parse_duration)?;
    let export_interval = raw.parse(&METRIC_EXPORT_INTERVAL, parse_millis)?;
    let spool_dir = raw.string(&OTEL_SPOOL_DIR).map(PathBuf::from);

    Ok(OtelConfig {
        enabled: raw.parse_or(&OTEL_ENABLED, DEFAULT_OTEL_ENABLED, parse_bool)?,
        endpoint,
        insecure,
        protocol,
        headers: headers.into_iter().map(|(k, v)| (k, Secret(v))).collect(),
        timeout: raw.parse_or(&OTLP_TIMEOUT, DEFAULT_OTLP_TIMEOUT, parse_millis)?,
        compression: raw.parse_or(
            &OTLP_COMPRESSION,
            DEFAULT_OTLP_COMPRESSION,
            OtlpCompression::parse,
        )?,
        certificate: raw.string(&OTLP_CERTIFICATE).map(PathBuf::from),
        client_certificate: raw.string(&OTLP_CLIENT_CERTIFICATE).map(PathBuf::from),
        client_key: raw.string(&OTLP_CLIENT_KEY).map(PathBuf::from),
        resource_attributes,
        service_name,
        service_instance_id: raw
            .string(&OTEL_SERVICE_INSTANCE_ID)
            .or_else(|| raw.string(&HOSTNAME))
            .unwrap_or_else(|| DEFAULT_OTEL_SERVICE_INSTANCE_ID.to_string()),
        push_interval: export_interval
            .or(push_interval)
            .unwrap_or(DEFAULT_OTEL_PUSH_INTERVAL),
        backlog: BacklogConfig {
            max_age: raw.parse_or(
                &OTEL_BACKLOG_MAX_AGE,
                DEFAULT_OTEL_BACKLOG_MAX_AGE,
                parse_duration,
            )?,
            max_bytes: raw.parse_or(
                &OTEL_BACKLOG_MAX_BYTES,
                DEFAULT_OTEL_BACKLOG_MAX_BYTES,
                parse_size,
            )?,
            request_max_bytes: raw.parse_or(
                &OTEL_BACKLOG_REQUEST_MAX_BYTES,
                DEFAULT_OTEL_BACKLOG_REQUEST_MAX_BYTES,
                parse_size,
            )?,
            spool_dir,
        },
    })
}
