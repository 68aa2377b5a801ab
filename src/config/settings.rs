//! The settings table: every environment variable and flag, with its default and help.
//!
//! The one place that names a setting. The defaults are constants, so that the build
//! stage and `--help` cannot disagree on one.

use std::time::Duration;

use super::{LogFormat, LogLevel, OtlpCompression, OtlpProtocol};

pub(crate) const DEFAULT_API_BASE_URL: &str = "https://api.licensing.nvidia.com";
pub(crate) const DEFAULT_LISTEN_ADDRESS: &str = ":9844";
pub(crate) const DEFAULT_METRICS_PATH: &str = "/metrics";
pub(crate) const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(20);
pub(crate) const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_PARALLELISM: u32 = 8;
pub(crate) const MAX_PARALLELISM: u32 = 256;
pub(crate) const DEFAULT_CLS_PAGE_SIZE: u32 = 100;
pub(crate) const MAX_CLS_PAGE_SIZE: u32 = 10_000;
pub(crate) const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;
pub(crate) const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;
pub(crate) const DEFAULT_OTEL_ENABLED: bool = false;
pub(crate) const DEFAULT_WEB_HEALTHZ_OPEN: bool = true;
pub(crate) const DEFAULT_OTEL_ENDPOINT: &str = "127.0.0.1:4317";
pub(crate) const DEFAULT_OTEL_SERVICE_NAME: &str = "nvidia-license-server-exporter";
/// The service instance id when neither OTEL_SERVICE_INSTANCE_ID nor HOSTNAME is set.
pub(crate) const DEFAULT_OTEL_SERVICE_INSTANCE_ID: &str = "unknown";
pub(crate) const DEFAULT_OTEL_INSECURE: bool = true;
pub(crate) const DEFAULT_OTEL_PUSH_INTERVAL: Duration = Duration::from_secs(60);
/// How old (by collection time) a batch waiting for the collector may get.
pub(crate) const DEFAULT_OTEL_BACKLOG_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How many stored (compressed) bytes of waiting batches are kept.
pub(crate) const DEFAULT_OTEL_BACKLOG_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// The largest replay request (encoded, before transport compression): the
/// OpenTelemetry Collector's default gRPC receive limit.
pub(crate) const DEFAULT_OTEL_BACKLOG_REQUEST_MAX_BYTES: u64 = 4 * 1024 * 1024;
pub(crate) const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_millis(10_000);
pub(crate) const DEFAULT_OTLP_PROTOCOL: OtlpProtocol = OtlpProtocol::Grpc;
pub(crate) const DEFAULT_OTLP_COMPRESSION: OtlpCompression = OtlpCompression::None;
/// Path appended to a base OTLP endpoint for `http/protobuf`, per the OpenTelemetry spec.
pub(crate) const OTLP_HTTP_METRICS_PATH: &str = "/v1/metrics";

/// One setting as the user sees it: an environment variable, maybe a flag, and its help.
pub(crate) struct Setting {
    pub(crate) env: &'static str,
    /// Environment names consulted, in order, when `env` is unset.
    pub(crate) aliases: &'static [&'static str],
    /// Without dashes; `None` for the environment-only variables.
    pub(crate) flag: Option<&'static str>,
    /// Placeholder in `--help`; empty for a boolean flag, which may be given bare.
    pub(crate) arg: &'static str,
    pub(crate) default: Shown,
    pub(crate) help: &'static str,
}

/// A default as `--help` shows it, built from the same constants the parser uses.
pub(crate) enum Shown {
    Nothing,
    Required,
    Text(&'static str),
    Duration(Duration),
    Int(u32),
    Bool(bool),
    /// A size in bytes, shown in the largest binary unit that divides it.
    Size(u64),
}

pub(crate) use table::*;

/// Every setting, in `--help` order; left unformatted so that it reads as a table.
#[rustfmt::skip]
mod table {
    use super::*;
    use Shown::{Bool, Duration as Dur, Int, Nothing, Required, Size, Text};

    const fn flag(env: &'static str, flag: &'static str, arg: &'static str, default: Shown, help: &'static str) -> Setting {
        Setting { env, aliases: &[], flag: Some(flag), arg, default, help }
    }
    const fn env_only(env: &'static str, default: Shown, help: &'static str) -> Setting {
        Setting { env, aliases: &[], flag: None, arg: "", default, help }
    }
    const fn aka(aliases: &'static [&'static str], setting: Setting) -> Setting {
        Setting { aliases, ..setting }
    }

    pub(crate) const API_KEY: Setting = aka(&["NLS_API_KEY"], flag("NVIDIA_API_KEY", "nvidia-api-key", "key", Required, "CLS API key (or NVIDIA_API_KEY_FILE)"));
    pub(crate) const ORG_NAME: Setting = aka(&["NLS_ORG_NAME"], flag("NVIDIA_ORG_NAME", "nvidia-org-name", "name", Required, "NVIDIA organization name"));
    pub(crate) const API_BASE_URL: Setting = flag("NVIDIA_API_BASE_URL", "nvidia-api-base-url", "url", Text(DEFAULT_API_BASE_URL), "CLS API base URL (http:// or https://)");
    pub(crate) const SERVICE_INSTANCE_ID: Setting = flag("NVIDIA_SERVICE_INSTANCE_ID", "nvidia-service-instance-id", "id", Nothing, "x-nv-service-instance-id for leases when no server names one");
    pub(crate) const LISTEN_ADDRESS: Setting = flag("LISTEN_ADDRESS", "listen-address", "addr", Text(DEFAULT_LISTEN_ADDRESS), ":port, host:port, ip:port or [ipv6]:port to serve metrics on");
    pub(crate) const METRICS_PATH: Setting = flag("METRICS_PATH", "metrics-path", "path", Text(DEFAULT_METRICS_PATH), "path of the metrics endpoint");
    pub(crate) const SCRAPE_TIMEOUT: Setting = flag("SCRAPE_TIMEOUT", "scrape-timeout", "duration", Dur(DEFAULT_SCRAPE_TIMEOUT), "bound on one whole refresh of CLS data");
    pub(crate) const CACHE_TTL: Setting = flag("CACHE_TTL", "cache-ttl", "duration", Dur(DEFAULT_CACHE_TTL), "how long a refresh is served before the next");
    pub(crate) const PARALLELISM: Setting = flag("PARALLELISM", "parallelism", "n", Int(DEFAULT_PARALLELISM), "concurrent CLS requests (1 to 256)");
    pub(crate) const CLS_PAGE_SIZE: Setting = flag("CLS_PAGE_SIZE", "cls-page-size", "n", Int(DEFAULT_CLS_PAGE_SIZE), "page size asked of CLS list endpoints (1 to 10000)");
    pub(crate) const API_CA_FILE: Setting = flag("NVIDIA_API_CA_FILE", "nvidia-api-ca-file", "path", Nothing, "PEM CA bundle trusted for CLS on top of the built-in roots");
    pub(crate) const LOG_LEVEL: Setting = flag("LOG_LEVEL", "log-level", "level", Text(DEFAULT_LOG_LEVEL.as_str()), "error, warn, info or debug");
    pub(crate) const LOG_FORMAT: Setting = flag("LOG_FORMAT", "log-format", "format", Text(DEFAULT_LOG_FORMAT.as_str()), "text or json");
    pub(crate) const WEB_CONFIG_FILE: Setting = flag("WEB_CONFIG_FILE", "web.config.file", "path", Nothing, "exporter-toolkit web config: TLS and basic auth for the listener");
    pub(crate) const WEB_HEALTHZ_OPEN: Setting = flag("WEB_HEALTHZ_OPEN", "web.healthz-open", "", Bool(DEFAULT_WEB_HEALTHZ_OPEN), "serve /healthz without basic auth");
    pub(crate) const OTEL_ENABLED: Setting = flag("OTEL_ENABLED", "otel-enabled", "", Bool(DEFAULT_OTEL_ENABLED), "push metrics over OTLP");
    pub(crate) const OTEL_ENDPOINT: Setting = flag("OTEL_ENDPOINT", "otel-endpoint", "host:port", Text(DEFAULT_OTEL_ENDPOINT), "OTLP collector; an http:// or https:// scheme decides TLS");
    pub(crate) const OTEL_SERVICE_NAME: Setting = flag("OTEL_SERVICE_NAME", "otel-service-name", "name", Text(DEFAULT_OTEL_SERVICE_NAME), "service.name resource attribute");
    pub(crate) const OTEL_SERVICE_INSTANCE_ID: Setting = flag("OTEL_SERVICE_INSTANCE_ID", "otel-service-instance-id", "id", Text("the host name"), "service.instance.id resource attribute");
    pub(crate) const OTEL_INSECURE: Setting = flag("OTEL_INSECURE", "otel-insecure", "", Bool(DEFAULT_OTEL_INSECURE), "plain-text OTLP when the endpoint has no scheme");
    pub(crate) const OTEL_PUSH_INTERVAL: Setting = flag("OTEL_PUSH_INTERVAL", "otel-push-interval", "duration", Dur(DEFAULT_OTEL_PUSH_INTERVAL), "time between OTLP pushes");
    pub(crate) const OTEL_BACKLOG_MAX_AGE: Setting = flag("OTEL_BACKLOG_MAX_AGE", "otel-backlog-max-age", "duration", Dur(DEFAULT_OTEL_BACKLOG_MAX_AGE), "undelivered OTLP batches older than this are dropped");
    pub(crate) const OTEL_BACKLOG_MAX_BYTES: Setting = flag("OTEL_BACKLOG_MAX_BYTES", "otel-backlog-max-bytes", "size", Size(DEFAULT_OTEL_BACKLOG_MAX_BYTES), "stored (compressed) size of undelivered OTLP batches kept; the oldest go first");
    pub(crate) const OTEL_BACKLOG_REQUEST_MAX_BYTES: Setting = flag("OTEL_BACKLOG_REQUEST_MAX_BYTES", "otel-backlog-request-max-bytes", "size", Size(DEFAULT_OTEL_BACKLOG_REQUEST_MAX_BYTES), "largest OTLP request when the backlog is replayed (several batches in one)");
    pub(crate) const OTEL_SPOOL_DIR: Setting = flag("OTEL_SPOOL_DIR", "otel-spool-dir", "path", Nothing, "directory where undelivered OTLP batches survive restarts (default: memory only)");

    pub(crate) const API_KEY_FILE: Setting = env_only("NVIDIA_API_KEY_FILE", Nothing, "file holding the API key, read when NVIDIA_API_KEY is unset");
    pub(crate) const PORT: Setting = env_only("PORT", Nothing, "listen on :$PORT when LISTEN_ADDRESS is unset");
    pub(crate) const HOSTNAME: Setting = env_only("HOSTNAME", Nothing, "default OTEL_SERVICE_INSTANCE_ID");
    pub(crate) const HTTPS_PROXY: Setting = aka(&["https_proxy"], env_only("HTTPS_PROXY", Nothing, "http://host:port proxy for CLS requests"));
    pub(crate) const NO_PROXY: Setting = aka(&["no_proxy"], env_only("NO_PROXY", Nothing, "comma-separated hosts reached without the proxy"));
    pub(crate) const OTLP_ENDPOINT: Setting = env_only("OTEL_EXPORTER_OTLP_ENDPOINT", Nothing, "wins over OTEL_ENDPOINT");
    pub(crate) const OTLP_METRICS_ENDPOINT: Setting = env_only("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", Nothing, "wins over OTEL_EXPORTER_OTLP_ENDPOINT; used as written");
    pub(crate) const OTLP_PROTOCOL: Setting = env_only("OTEL_EXPORTER_OTLP_PROTOCOL", Text(DEFAULT_OTLP_PROTOCOL.as_str()), "grpc or http/protobuf");
    pub(crate) const OTLP_HEADERS: Setting = env_only("OTEL_EXPORTER_OTLP_HEADERS", Nothing, "k=v,k2=v2, percent-decoded");
    pub(crate) const OTLP_TIMEOUT: Setting = env_only("OTEL_EXPORTER_OTLP_TIMEOUT", Int(DEFAULT_OTLP_TIMEOUT.as_millis() as u32), "export timeout in milliseconds");
    pub(crate) const OTLP_COMPRESSION: Setting = env_only("OTEL_EXPORTER_OTLP_COMPRESSION", Text(DEFAULT_OTLP_COMPRESSION.as_str()), "gzip or none");
    pub(crate) const OTLP_CERTIFICATE: Setting = env_only("OTEL_EXPORTER_OTLP_CERTIFICATE", Nothing, "PEM CA bundle for the collector");
    pub(crate) const OTLP_CLIENT_CERTIFICATE: Setting = env_only("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", Nothing, "PEM client certificate");
    pub(crate) const OTLP_CLIENT_KEY: Setting = env_only("OTEL_EXPORTER_OTLP_CLIENT_KEY", Nothing, "PEM client key");
    pub(crate) const OTLP_INSECURE: Setting = env_only("OTEL_EXPORTER_OTLP_INSECURE", Nothing, "wins over OTEL_INSECURE");
    pub(crate) const RESOURCE_ATTRIBUTES: Setting = env_only("OTEL_RESOURCE_ATTRIBUTES", Nothing, "k=v,k2=v2, percent-decoded");
    pub(crate) const METRIC_EXPORT_INTERVAL: Setting = env_only("OTEL_METRIC_EXPORT_INTERVAL", Nothing, "milliseconds; wins over OTEL_PUSH_INTERVAL");

    pub(crate) const SETTINGS: &[Setting] = &[
        API_KEY, ORG_NAME, API_BASE_URL, SERVICE_INSTANCE_ID, LISTEN_ADDRESS, METRICS_PATH, SCRAPE_TIMEOUT,
        CACHE_TTL, PARALLELISM, CLS_PAGE_SIZE, API_CA_FILE, LOG_LEVEL, LOG_FORMAT, WEB_CONFIG_FILE,
        WEB_HEALTHZ_OPEN, OTEL_ENABLED,
        OTEL_ENDPOINT, OTEL_SERVICE_NAME, OTEL_SERVICE_INSTANCE_ID, OTEL_INSECURE, OTEL_PUSH_INTERVAL,
        OTEL_BACKLOG_MAX_AGE, OTEL_BACKLOG_MAX_BYTES, OTEL_BACKLOG_REQUEST_MAX_BYTES, OTEL_SPOOL_DIR,
        API_KEY_FILE, PORT, HOSTNAME, HTTPS_PROXY, NO_PROXY, OTLP_ENDPOINT, OTLP_METRICS_ENDPOINT,
        OTLP_PROTOCOL, OTLP_HEADERS, OTLP_TIMEOUT, OTLP_COMPRESSION, OTLP_CERTIFICATE,
        OTLP_CLIENT_CERTIFICATE, OTLP_CLIENT_KEY, OTLP_INSECURE, RESOURCE_ATTRIBUTES, METRIC_EXPORT_INTERVAL,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names_are_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.env, b.env);
                assert!(a.flag.is_none() || a.flag != b.flag, "{:?}", a.flag);
            }
        }
    }
}
