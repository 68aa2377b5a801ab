//! Configuration: flags and environment variables → one validated, immutable [`Config`].
//!
//! Two stages, after ripgrep's lowargs/hiargs. [`gather`] reads the flags and the
//! environment into raw strings (flags over environment; values trimmed; an empty
//! value counts as unset, as in the Go exporter) and validates nothing. [`build`]
//! turns them into typed values, and is the only place that reads a file (the API
//! key file). Every input arrives as an argument, so tests never touch the process.
//!
//! Every error is one line naming the setting as the user wrote it and the value —
//! except for secrets, whose value is shown as `<redacted>` — and `main` exits 2 on it.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod duration;

use duration::{format_go_duration, parse_go_duration};

pub const DEFAULT_API_BASE_URL: &str = "https://api.licensing.nvidia.com";
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9844";
pub const DEFAULT_METRICS_PATH: &str = "/metrics";
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(20);
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_PARALLELISM: u32 = 8;
pub const MAX_PARALLELISM: u32 = 256;
pub const DEFAULT_CLS_PAGE_SIZE: u32 = 100;
pub const MAX_CLS_PAGE_SIZE: u32 = 10_000;
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;
pub const DEFAULT_OTEL_ENABLED: bool = false;
pub const DEFAULT_WEB_HEALTHZ_OPEN: bool = true;
pub const DEFAULT_OTEL_ENDPOINT: &str = "127.0.0.1:4317";
pub const DEFAULT_OTEL_SERVICE_NAME: &str = "nvidia-license-server-exporter";
/// The service instance id when neither OTEL_SERVICE_INSTANCE_ID nor HOSTNAME is set.
pub const DEFAULT_OTEL_SERVICE_INSTANCE_ID: &str = "unknown";
pub const DEFAULT_OTEL_INSECURE: bool = true;
pub const DEFAULT_OTEL_PUSH_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_millis(10_000);
pub const DEFAULT_OTLP_PROTOCOL: OtlpProtocol = OtlpProtocol::Grpc;
pub const DEFAULT_OTLP_COMPRESSION: OtlpCompression = OtlpCompression::None;
/// Path appended to a base OTLP endpoint for `http/protobuf`, per the OpenTelemetry spec.
const OTLP_HTTP_METRICS_PATH: &str = "/v1/metrics";

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Config),
    /// `healthcheck`: `api_key` and `org_name` are not required and are left empty;
    /// everything else is read and validated exactly as for `Run`.
    Healthcheck(Config),
    /// The full `--help` text.
    Help(String),
    Version,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub api_key: Secret,
    pub org_name: String,
    /// Without a trailing `/`.
    pub api_base_url: String,
    /// Sent as `x-nv-service-instance-id` when no server names its own.
    pub service_instance_id: Option<String>,
    pub listen: ListenAddr,
    /// The listen address as written (or `:$PORT`, or the default), for logs.
    pub listen_address: String,
    pub metrics_path: String,
    pub scrape_timeout: Duration,
    pub cache_ttl: Duration,
    /// 1..=MAX_PARALLELISM.
    pub parallelism: u32,
    /// 1..=MAX_CLS_PAGE_SIZE.
    pub cls_page_size: u32,
    /// Extra PEM CA bundle for the CLS API; read by `main`.
    pub api_ca_file: Option<PathBuf>,
    /// Prometheus exporter-toolkit web configuration file (TLS, basic auth); read by `main`.
    pub web_config_file: Option<PathBuf>,
    /// Whether `/healthz` stays open when basic auth is configured.
    pub healthz_open: bool,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    /// Normalised to `http://host:port` (port 80 when none was given).
    pub https_proxy: Option<String>,
    /// NO_PROXY entries, trimmed, empty ones dropped.
    pub no_proxy: Vec<String>,
    pub otel: OtelConfig,
}

/// Parsed and validated now so a bad value fails at start; `otlp` reads the
/// certificate files when the push is enabled.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    pub enabled: bool,
    /// Full URL with scheme: `http://` when insecure, `https://` for TLS. For
    /// `http/protobuf` it already ends in `/v1/metrics` unless it came from
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, which is used as written.
    pub endpoint: String,
    /// Resolved: the endpoint's scheme, else OTEL_EXPORTER_OTLP_INSECURE, else OTEL_INSECURE.
    pub insecure: bool,
    pub protocol: OtlpProtocol,
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub compression: OtlpCompression,
    pub certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// OTEL_RESOURCE_ATTRIBUTES in order; `service_name` and
    /// `service_instance_id` below win over keys of the same meaning here.
    pub resource_attributes: Vec<(String, String)>,
    /// OTEL_SERVICE_NAME, else `service.name` in the resource attributes, else the default.
    pub service_name: String,
    pub service_instance_id: String,
    pub push_interval: Duration,
}

/// Where to listen. `AllInterfaces` is the `:port` form (IPv4 and IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    AllInterfaces(u16),
    Ip(SocketAddr),
    /// A name to resolve when binding, such as `localhost`.
    Host(String, u16),
}

/// A value that must not reach logs or error messages; `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    const ALL: [Self; 4] = [Self::Error, Self::Warn, Self::Info, Self::Debug];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    const ALL: [Self; 2] = [Self::Text, Self::Json];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    const ALL: [Self; 2] = [Self::Grpc, Self::HttpProtobuf];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpCompression {
    None,
    Gzip,
}

impl OtlpCompression {
    const ALL: [Self; 2] = [Self::Gzip, Self::None];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
        }
    }
}

/// A configuration error, already worded for the user as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One setting as the user sees it: an environment variable, maybe a flag, and its help.
struct Setting {
    env: &'static str,
    /// Environment names consulted, in order, when `env` is unset.
    aliases: &'static [&'static str],
    /// Without dashes; `None` for the environment-only variables.
    flag: Option<&'static str>,
    /// Placeholder in `--help`; empty for a boolean flag, which may be given bare.
    arg: &'static str,
    default: Shown,
    help: &'static str,
}

/// A default as `--help` shows it, built from the same constants the parser uses.
enum Shown {
    Nothing,
    Required,
    Text(&'static str),
    Duration(Duration),
    Int(u32),
    Bool(bool),
}

use table::*;

/// Every setting, in `--help` order; left unformatted so that it reads as a table.
#[rustfmt::skip]
mod table {
    use super::*;
    use Shown::{Bool, Duration as Dur, Int, Nothing, Required, Text};

    const fn flag(env: &'static str, flag: &'static str, arg: &'static str, default: Shown, help: &'static str) -> Setting {
        Setting { env, aliases: &[], flag: Some(flag), arg, default, help }
    }
    const fn env_only(env: &'static str, default: Shown, help: &'static str) -> Setting {
        Setting { env, aliases: &[], flag: None, arg: "", default, help }
    }
    const fn aka(aliases: &'static [&'static str], setting: Setting) -> Setting {
        Setting { aliases, ..setting }
    }

    pub(super) const API_KEY: Setting = aka(&["NLS_API_KEY"], flag("NVIDIA_API_KEY", "nvidia-api-key", "key", Required, "CLS API key (or NVIDIA_API_KEY_FILE)"));
    pub(super) const ORG_NAME: Setting = aka(&["NLS_ORG_NAME"], flag("NVIDIA_ORG_NAME", "nvidia-org-name", "name", Required, "NVIDIA organization name"));
    pub(super) const API_BASE_URL: Setting = flag("NVIDIA_API_BASE_URL", "nvidia-api-base-url", "url", Text(DEFAULT_API_BASE_URL), "CLS API base URL (http:// or https://)");
    pub(super) const SERVICE_INSTANCE_ID: Setting = flag("NVIDIA_SERVICE_INSTANCE_ID", "nvidia-service-instance-id", "id", Nothing, "x-nv-service-instance-id for leases when no server names one");
    pub(super) const LISTEN_ADDRESS: Setting = flag("LISTEN_ADDRESS", "listen-address", "addr", Text(DEFAULT_LISTEN_ADDRESS), ":port, host:port, ip:port or [ipv6]:port to serve metrics on");
    pub(super) const METRICS_PATH: Setting = flag("METRICS_PATH", "metrics-path", "path", Text(DEFAULT_METRICS_PATH), "path of the metrics endpoint");
    pub(super) const SCRAPE_TIMEOUT: Setting = flag("SCRAPE_TIMEOUT", "scrape-timeout", "duration", Dur(DEFAULT_SCRAPE_TIMEOUT), "bound on one whole refresh of CLS data");
    pub(super) const CACHE_TTL: Setting = flag("CACHE_TTL", "cache-ttl", "duration", Dur(DEFAULT_CACHE_TTL), "how long a refresh is served before the next");
    pub(super) const PARALLELISM: Setting = flag("PARALLELISM", "parallelism", "n", Int(DEFAULT_PARALLELISM), "concurrent CLS requests (1 to 256)");
    pub(super) const CLS_PAGE_SIZE: Setting = flag("CLS_PAGE_SIZE", "cls-page-size", "n", Int(DEFAULT_CLS_PAGE_SIZE), "page size asked of CLS list endpoints (1 to 10000)");
    pub(super) const API_CA_FILE: Setting = flag("NVIDIA_API_CA_FILE", "nvidia-api-ca-file", "path", Nothing, "PEM CA bundle trusted for CLS on top of the built-in roots");
    pub(super) const LOG_LEVEL: Setting = flag("LOG_LEVEL", "log-level", "level", Text(DEFAULT_LOG_LEVEL.as_str()), "error, warn, info or debug");
    pub(super) const LOG_FORMAT: Setting = flag("LOG_FORMAT", "log-format", "format", Text(DEFAULT_LOG_FORMAT.as_str()), "text or json");
    pub(super) const WEB_CONFIG_FILE: Setting = flag("WEB_CONFIG_FILE", "web.config.file", "path", Nothing, "exporter-toolkit web config: TLS and basic auth for the listener");
    pub(super) const WEB_HEALTHZ_OPEN: Setting = flag("WEB_HEALTHZ_OPEN", "web.healthz-open", "", Bool(DEFAULT_WEB_HEALTHZ_OPEN), "serve /healthz without basic auth");
    pub(super) const OTEL_ENABLED: Setting = flag("OTEL_ENABLED", "otel-enabled", "", Bool(DEFAULT_OTEL_ENABLED), "push metrics over OTLP");
    pub(super) const OTEL_ENDPOINT: Setting = flag("OTEL_ENDPOINT", "otel-endpoint", "host:port", Text(DEFAULT_OTEL_ENDPOINT), "OTLP collector; an http:// or https:// scheme decides TLS");
    pub(super) const OTEL_SERVICE_NAME: Setting = flag("OTEL_SERVICE_NAME", "otel-service-name", "name", Text(DEFAULT_OTEL_SERVICE_NAME), "service.name resource attribute");
    pub(super) const OTEL_SERVICE_INSTANCE_ID: Setting = flag("OTEL_SERVICE_INSTANCE_ID", "otel-service-instance-id", "id", Text("the host name"), "service.instance.id resource attribute");
    pub(super) const OTEL_INSECURE: Setting = flag("OTEL_INSECURE", "otel-insecure", "", Bool(DEFAULT_OTEL_INSECURE), "plain-text OTLP when the endpoint has no scheme");
    pub(super) const OTEL_PUSH_INTERVAL: Setting = flag("OTEL_PUSH_INTERVAL", "otel-push-interval", "duration", Dur(DEFAULT_OTEL_PUSH_INTERVAL), "time between OTLP pushes");

    pub(super) const API_KEY_FILE: Setting = env_only("NVIDIA_API_KEY_FILE", Nothing, "file holding the API key, read when NVIDIA_API_KEY is unset");
    pub(super) const PORT: Setting = env_only("PORT", Nothing, "listen on :$PORT when LISTEN_ADDRESS is unset");
    pub(super) const HOSTNAME: Setting = env_only("HOSTNAME", Nothing, "default OTEL_SERVICE_INSTANCE_ID");
    pub(super) const HTTPS_PROXY: Setting = aka(&["https_proxy"], env_only("HTTPS_PROXY", Nothing, "http://host:port proxy for CLS requests"));
    pub(super) const NO_PROXY: Setting = aka(&["no_proxy"], env_only("NO_PROXY", Nothing, "comma-separated hosts reached without the proxy"));
    pub(super) const OTLP_ENDPOINT: Setting = env_only("OTEL_EXPORTER_OTLP_ENDPOINT", Nothing, "wins over OTEL_ENDPOINT");
    pub(super) const OTLP_METRICS_ENDPOINT: Setting = env_only("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", Nothing, "wins over OTEL_EXPORTER_OTLP_ENDPOINT; used as written");
    pub(super) const OTLP_PROTOCOL: Setting = env_only("OTEL_EXPORTER_OTLP_PROTOCOL", Text(DEFAULT_OTLP_PROTOCOL.as_str()), "grpc or http/protobuf");
    pub(super) const OTLP_HEADERS: Setting = env_only("OTEL_EXPORTER_OTLP_HEADERS", Nothing, "k=v,k2=v2, percent-decoded");
    pub(super) const OTLP_TIMEOUT: Setting = env_only("OTEL_EXPORTER_OTLP_TIMEOUT", Int(DEFAULT_OTLP_TIMEOUT.as_millis() as u32), "export timeout in milliseconds");
    pub(super) const OTLP_COMPRESSION: Setting = env_only("OTEL_EXPORTER_OTLP_COMPRESSION", Text(DEFAULT_OTLP_COMPRESSION.as_str()), "gzip or none");
    pub(super) const OTLP_CERTIFICATE: Setting = env_only("OTEL_EXPORTER_OTLP_CERTIFICATE", Nothing, "PEM CA bundle for the collector");
    pub(super) const OTLP_CLIENT_CERTIFICATE: Setting = env_only("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", Nothing, "PEM client certificate");
    pub(super) const OTLP_CLIENT_KEY: Setting = env_only("OTEL_EXPORTER_OTLP_CLIENT_KEY", Nothing, "PEM client key");
    pub(super) const OTLP_INSECURE: Setting = env_only("OTEL_EXPORTER_OTLP_INSECURE", Nothing, "wins over OTEL_INSECURE");
    pub(super) const RESOURCE_ATTRIBUTES: Setting = env_only("OTEL_RESOURCE_ATTRIBUTES", Nothing, "k=v,k2=v2, percent-decoded");
    pub(super) const METRIC_EXPORT_INTERVAL: Setting = env_only("OTEL_METRIC_EXPORT_INTERVAL", Nothing, "milliseconds; wins over OTEL_PUSH_INTERVAL");

    pub(super) const SETTINGS: &[Setting] = &[
        API_KEY, ORG_NAME, API_BASE_URL, SERVICE_INSTANCE_ID, LISTEN_ADDRESS, METRICS_PATH, SCRAPE_TIMEOUT,
        CACHE_TTL, PARALLELISM, CLS_PAGE_SIZE, API_CA_FILE, LOG_LEVEL, LOG_FORMAT, WEB_CONFIG_FILE,
        WEB_HEALTHZ_OPEN, OTEL_ENABLED,
        OTEL_ENDPOINT, OTEL_SERVICE_NAME, OTEL_SERVICE_INSTANCE_ID, OTEL_INSECURE, OTEL_PUSH_INTERVAL,
        API_KEY_FILE, PORT, HOSTNAME, HTTPS_PROXY, NO_PROXY, OTLP_ENDPOINT, OTLP_METRICS_ENDPOINT,
        OTLP_PROTOCOL, OTLP_HEADERS, OTLP_TIMEOUT, OTLP_COMPRESSION, OTLP_CERTIFICATE,
        OTLP_CLIENT_CERTIFICATE, OTLP_CLIENT_KEY, OTLP_INSECURE, RESOURCE_ATTRIBUTES, METRIC_EXPORT_INTERVAL,
    ];
}

/// Reads flags and environment, then validates them. `args` excludes argv[0].
pub fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Command, ConfigError> {
    match gather(args, env)? {
        Gathered::Help => Ok(Command::Help(help_text())),
        Gathered::Version => Ok(Command::Version),
        Gathered::Raw(raw) if raw.healthcheck => Ok(Command::Healthcheck(build(&raw, read_file)?)),
        Gathered::Raw(raw) => Ok(Command::Run(build(&raw, read_file)?)),
    }
}

/// A raw value and the name it was given under, so errors can quote the user.
struct Raw {
    name: String,
    value: String,
}

impl Raw {
    fn invalid(&self, reason: &str) -> ConfigError {
        ConfigError(format!(
            "{}={:?} is not valid: {reason}",
            self.name, self.value
        ))
    }

    fn invalid_secret(&self, reason: &str) -> ConfigError {
        ConfigError(format!(
            "{}=\"<redacted>\" is not valid: {reason}",
            self.name
        ))
    }
}

/// Stage one: the raw string of each setting that was given, keyed by its env name.
struct RawArgs {
    healthcheck: bool,
    values: HashMap<&'static str, Raw>,
}

enum Gathered {
    Help,
    Version,
    Raw(RawArgs),
}

/// Reads Go `flag`-style arguments, then fills what they left unset from the environment.
fn gather(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Gathered, ConfigError> {
    let mut values = HashMap::new();
    let mut positionals = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            positionals.extend(rest.by_ref());
            break;
        }
        let Some(body) = arg.strip_prefix('-').filter(|b| !b.is_empty()) else {
            positionals.push(arg);
            continue;
        };
        let body = body.strip_prefix('-').unwrap_or(body);
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if name.is_empty() || name.starts_with('-') {
            // Only up to '=': what follows may be a secret.
            let shown = arg.split('=').next().unwrap_or_default();
            return Err(ConfigError(format!(
                "bad flag syntax: {} (see --help)",
                shown.escape_debug()
            )));
        }
        let written = &arg[..arg.len() - body.len() + name.len()];
        match name {
            "h" | "help" => return Ok(Gathered::Help),
            "version" => return Ok(Gathered::Version),
            _ => {}
        }
        let Some(setting) = SETTINGS.iter().find(|s| s.flag == Some(name)) else {
            // Escaped: the error is one line even for an argument that is not.
            return Err(ConfigError(format!(
                "unknown flag {} (see --help)",
                written.escape_debug()
            )));
        };
        let value = match inline {
            Some(value) => value,
            None if setting.arg.is_empty() => "true",
            None => rest
                .next()
                .map(String::as_str)
                .ok_or_else(|| ConfigError(format!("flag {written} needs a value (see --help)")))?,
        };
        insert(&mut values, setting.env, written, value);
    }
    for setting in SETTINGS {
        for name in std::iter::once(&setting.env).chain(setting.aliases) {
            if values.contains_key(setting.env) {
                break;
            }
            if let Some(value) = env(name) {
                insert(&mut values, setting.env, name, &value);
            }
        }
    }
    let healthcheck = match positionals.split_first() {
        None => false,
        Some((first, extra)) => {
            let unexpected = if first.as_str() == "healthcheck" {
                extra.first()
            } else {
                Some(first)
            };
            if let Some(arg) = unexpected {
                return Err(ConfigError(format!(
                    "unexpected argument {arg:?} (see --help)"
                )));
            }
            true
        }
    };
    Ok(Gathered::Raw(RawArgs {
        healthcheck,
        values,
    }))
}

/// Records a trimmed value; an empty one unsets the setting instead.
fn insert(values: &mut HashMap<&'static str, Raw>, key: &'static str, name: &str, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        values.remove(key);
    } else {
        values.insert(
            key,
            Raw {
                name: name.to_string(),
                value: value.to_string(),
            },
        );
    }
}

impl RawArgs {
    fn get(&self, setting: &Setting) -> Option<&Raw> {
        self.values.get(setting.env)
    }

    /// [`Self::parse`], with `default` when the setting was not given.
    fn parse_or<T>(
        &self,
        setting: &Setting,
        default: T,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        Ok(self.parse(setting, f)?.unwrap_or(default))
    }

    /// Parses the setting when it was given; the error names it as the user wrote it.
    fn parse<T>(
        &self,
        setting: &Setting,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(setting)
            .map(|raw| f(&raw.value).map_err(|reason| raw.invalid(&reason)))
            .transpose()
    }

    fn string(&self, setting: &Setting) -> Option<String> {
        self.get(setting).map(|raw| raw.value.clone())
    }

    fn required(&self, setting: &Setting) -> Result<String, ConfigError> {
        self.string(setting).ok_or_else(|| {
            let flag = setting.flag.unwrap_or_default();
            ConfigError(format!(
                "{0} is required: set {0} or pass -{flag}",
                setting.env
            ))
        })
    }
}

/// Stage two: raw strings → typed, validated [`Config`].
fn build(
    raw: &RawArgs,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Config, ConfigError> {
    let (api_key, org_name) = if raw.healthcheck {
        (Secret(String::new()), String::new())
    } else {
        (api_key(raw, read_file)?, raw.required(&ORG_NAME)?)
    };
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
    let no_proxy = raw.string(&NO_PROXY).map_or_else(Vec::new, |list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });

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
            let content = read_file(Path::new(&file.value)).map_err(|e| file.invalid(&format!("cannot read it: {e}")))?;
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
    })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected true or false (or 1, 0, t, f)".to_string()),
    }
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    match parse_go_duration(v)? {
        Duration::ZERO => Err("must be positive".to_string()),
        d => Ok(d),
    }
}

fn parse_millis(v: &str) -> Result<Duration, String> {
    match v.parse::<u64>() {
        Ok(ms) if ms > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Duration::from_millis(ms)),
        _ => Err("expected a whole number of milliseconds greater than zero".to_string()),
    }
}

fn parse_in_range(v: &str, max: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("expected an integer from 1 to {max}")),
    }
}

/// One of `all`, case-insensitively; the error lists them.
fn choose<T: Copy, const N: usize>(
    v: &str,
    all: [T; N],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    all.into_iter()
        .find(|c| v.eq_ignore_ascii_case(name(*c)))
        .ok_or_else(|| {
            let names = all.map(name);
            let (last, rest) = names.split_last().unwrap_or((&"", &[]));
            format!("expected {} or {last}", rest.join(", "))
        })
}

fn parse_metrics_path(v: &str) -> Result<String, String> {
    match v {
        "/" | "/healthz" => {
            Err("must not be / or /healthz, which the exporter serves itself".to_string())
        }
        _ if !v.starts_with('/') => Err("must start with /".to_string()),
        _ if v.contains(['?', '#']) => Err("must not contain ? or #".to_string()),
        _ => Ok(v.to_string()),
    }
}

fn parse_base_url(v: &str) -> Result<String, String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if v.contains(['?', '#']) {
        return Err("must not have a query or fragment".to_string());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    match split_host_port(authority)? {
        ("", _) => Err("missing host".to_string()),
        _ => Ok(v.trim_end_matches('/').to_string()),
    }
}

/// An HTTP proxy URL, normalised to `http://host:port`; a bare `host:port` is accepted as Go does.
fn parse_proxy(v: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "expected http://host:port";
    if v.starts_with("https://") {
        return Err("only http:// proxies are supported");
    }
    let authority = v.strip_prefix("http://").unwrap_or(v).trim_end_matches('/');
    if authority.contains(['/', '?', '#']) || authority.contains("://") {
        return Err(EXPECTED);
    }
    match split_host_port(authority).map_err(|_| EXPECTED)? {
        ("", _) => Err(EXPECTED),
        (host, port) => Ok(format!("http://{host}:{}", port.unwrap_or(80))),
    }
}

/// An OTLP endpoint: whether its scheme asks for TLS (`None` without a scheme), and the rest.
fn parse_endpoint(v: &str) -> Result<(Option<bool>, String), String> {
    let (tls, rest) = match v.split_once("://") {
        Some(("https", rest)) => (Some(true), rest),
        Some(("http", rest)) => (Some(false), rest),
        Some(_) => {
            return Err("expected host:port, http://host:port or https://host:port".to_string())
        }
        None => (None, v),
    };
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match split_host_port(authority)? {
        ("", _) => Err("missing host".to_string()),
        (_, None) if tls.is_none() => {
            Err("expected host:port, http://host:port or https://host:port".to_string())
        }
        _ if tls.is_none() && !path.is_empty() => {
            Err("a path needs an http:// or https:// scheme".to_string())
        }
        _ if v.contains(['?', '#']) => Err("must not have a query or fragment".to_string()),
        _ => Ok((tls, rest.to_string())),
    }
}

fn parse_listen(v: &str) -> Result<ListenAddr, &'static str> {
    match split_host_port(v)? {
        (_, None) => Err("expected :port, host:port, ip:port or [ipv6]:port"),
        ("", Some(port)) => Ok(ListenAddr::AllInterfaces(port)),
        (host, Some(port)) => match v.parse::<SocketAddr>() {
            Ok(addr) => Ok(ListenAddr::Ip(addr)),
            Err(_) => Ok(ListenAddr::Host(host.to_string(), port)),
        },
    }
}

/// Splits `host`, `host:port` or `[ipv6]:port`, checking the host's characters and
/// the port's range. The host may be empty; IPv6 hosts keep their brackets.
fn split_host_port(v: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = match v.strip_prefix('[') {
        Some(inner) => {
            let (ip, after) = inner
                .split_once(']')
                .ok_or("an IPv6 address needs a closing ]")?;
            ip.parse::<Ipv6Addr>()
                .map_err(|_| "not a valid IPv6 address")?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected :port after the IPv6 address")?,
                ),
            };
            (&v[..ip.len() + 2], port)
        }
        None => match v.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (v, None),
        },
    };
    let host_ok = host.starts_with('[')
        || host.parse::<Ipv4Addr>().is_ok()
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !host_ok {
        return Err("not a valid host name or address (IPv6 addresses need [brackets])");
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse::<u16>()
                .map_err(|_| "the port must be a number from 0 to 65535")?,
        ),
        Some(_) => return Err("the port must be a number from 0 to 65535"),
    };
    Ok((host, port))
}

/// `k=v,k2=v2` with percent-encoded keys and values, as in the OpenTelemetry spec.
/// Errors name the entry by position, never its content (header values are secret).
fn parse_pairs(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (i, entry) in v
        .split(',')
        .enumerate()
        .filter(|(_, e)| !e.trim().is_empty())
    {
        let n = i + 1;
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| format!("entry {n} is not key=value"))?;
        let key = percent_decode(key.trim())
            .ok_or_else(|| format!("entry {n} has a bad percent-encoding"))?;
        let value = percent_decode(value.trim())
            .ok_or_else(|| format!("entry {n} has a bad percent-encoding"))?;
        if key.is_empty() {
            return Err(format!("entry {n} has an empty key"));
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `None` on a truncated or non-hex escape, or when the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

fn help_text() -> String {
    use fmt::Write as _;
    let name = env!("CARGO_PKG_NAME");
    let mut out = format!(
        "{name} exports NVIDIA Cloud License Service data as Prometheus metrics and over OTLP.\n\n\
         Usage:\n  {name} [flags]\n  {name} healthcheck [flags]\n\n\
         Subcommands:\n  healthcheck\n        GET /healthz on the local listener (LISTEN_ADDRESS); exit 0 when it answers 200.\n        \
         Reads the same flags and environment; NVIDIA_API_KEY and NVIDIA_ORG_NAME are not needed.\n\n\
         Flags take -name value, -name=value, --name value or --name=value; a bare boolean\n\
         flag means true. A flag wins over its environment variable, which wins over the\n\
         default. An empty environment variable counts as unset.\n  -h, --help\n        print this help\n  \
         --version\n        print the version\n\nSettings (flag and environment variable):\n"
    );
    let entry = |out: &mut String, s: &Setting| {
        let names = std::iter::once(&s.env)
            .chain(s.aliases)
            .copied()
            .collect::<Vec<_>>()
            .join(" or ");
        let default = match s.default {
            Shown::Nothing => String::new(),
            Shown::Required => " (required)".to_string(),
            Shown::Text(text) => format!(" (default {text})"),
            Shown::Duration(d) => format!(" (default {})", format_go_duration(d)),
            Shown::Int(n) => format!(" (default {n})"),
            Shown::Bool(b) => format!(" (default {b})"),
        };
        let _ = match s.flag {
            Some(flag) if s.arg.is_empty() => write!(out, "  -{flag}, {names}"),
            Some(flag) => write!(out, "  -{flag} {}, {names}", s.arg),
            None => write!(out, "  {names}"),
        };
        let _ = writeln!(out, "{default}\n        {}", s.help);
    };
    SETTINGS
        .iter()
        .filter(|s| s.flag.is_some())
        .for_each(|s| entry(&mut out, s));
    out.push_str("\nEnvironment only (the standard OTEL_EXPORTER_OTLP_* variables win over the OTEL_* settings):\n");
    SETTINGS
        .iter()
        .filter(|s| s.flag.is_none())
        .for_each(|s| entry(&mut out, s));
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    const REQUIRED: [(&str, &str); 2] =
        [("NVIDIA_API_KEY", "key-123"), ("NVIDIA_ORG_NAME", "acme")];

    /// Parses with REQUIRED plus `vars`; later entries win, so "" unsets a required one.
    fn try_parse(
        args: &[&str],
        vars: &[(&str, &str)],
        read_file: &dyn Fn(&Path) -> io::Result<String>,
    ) -> Result<Command, String> {
        let all: Vec<(&str, &str)> = REQUIRED.iter().chain(vars).copied().collect();
        let env = |name: &str| {
            all.iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse(&args, &env, read_file).map_err(|e| e.to_string())
    }

    fn no_files(_: &Path) -> io::Result<String> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "permission denied",
        ))
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

    #[test]
    fn flag_beats_env() {
        let c = run(&["-scrape-timeout", "7s"], &[("SCRAPE_TIMEOUT", "5s")]);
        assert_eq!(c.scrape_timeout, Duration::from_secs(7));
    }

    #[test]
    fn last_flag_wins() {
        assert_eq!(
            run(&["-parallelism", "2", "--parallelism=3"], &[]).parallelism,
            3
        );
    }

    #[test]
    fn values_are_trimmed_and_empty_counts_as_unset() {
        assert_eq!(env(&[("METRICS_PATH", "  /x \n")]).metrics_path, "/x");
        assert_eq!(env(&[("METRICS_PATH", "  ")]).metrics_path, "/metrics");
        assert_eq!(
            run(&["-metrics-path="], &[("METRICS_PATH", "/env")]).metrics_path,
            "/env"
        );
    }

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
    fn bare_bool_flag_means_true_and_takes_no_separate_value() {
        assert!(
            run(&["-otel-enabled"], &[("OTEL_ENABLED", "false")])
                .otel
                .enabled
        );
        assert!(!run(&["--otel-insecure=false"], &[]).otel.insecure);
        assert_eq!(
            error(&["-otel-enabled", "false"], &[]),
            "unexpected argument \"false\" (see --help)"
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
    fn missing_required_values_say_how_to_set_them() {
        assert_eq!(
            error(&[], &[("NVIDIA_ORG_NAME", "")]),
            "NVIDIA_ORG_NAME is required: set NVIDIA_ORG_NAME or pass -nvidia-org-name"
        );
        assert_eq!(
            error(&[], &[("NVIDIA_API_KEY", "")]),
            "NVIDIA_API_KEY is required: set NVIDIA_API_KEY or NVIDIA_API_KEY_FILE, \
             or pass -nvidia-api-key"
        );
    }

    #[test]
    fn nls_aliases_are_fallbacks() {
        let unset = [("NVIDIA_API_KEY", ""), ("NVIDIA_ORG_NAME", "")];
        let nls = [("NLS_API_KEY", "nls-key"), ("NLS_ORG_NAME", "nls-org")];
        let c = env(&[unset[0], unset[1], nls[0], nls[1]]);
        assert_eq!(
            (c.api_key.expose(), c.org_name.as_str()),
            ("nls-key", "nls-org")
        );
        let c = env(&nls);
        assert_eq!(
            (c.api_key.expose(), c.org_name.as_str()),
            ("key-123", "acme")
        );
    }

    #[test]
    fn bad_key_is_never_echoed() {
        assert_eq!(
            error(&[], &[("NVIDIA_API_KEY", ""), ("NLS_API_KEY", "sec ret")]),
            "NLS_API_KEY=\"<redacted>\" is not valid: the key must be visible ASCII without spaces"
        );
    }

    fn with_key_file(content: io::Result<&str>) -> Result<Command, String> {
        let content = std::cell::RefCell::new(Some(content.map(str::to_string)));
        let read = |path: &Path| {
            assert_eq!(path, Path::new("/run/secrets/key"));
            content
                .borrow_mut()
                .take()
                .expect("the key file is read once")
        };
        let vars = [
            ("NVIDIA_API_KEY", ""),
            ("NVIDIA_API_KEY_FILE", "/run/secrets/key"),
        ];
        try_parse(&[], &vars, &read)
    }

    #[test]
    fn key_file_trailing_newline_is_stripped() {
        for content in ["from-file", "from-file\n", "from-file\r\n"] {
            match with_key_file(Ok(content)) {
                Ok(Command::Run(c)) => assert_eq!(c.api_key.expose(), "from-file"),
                other => panic!("expected Run, got {other:?}"),
            }
        }
    }

    #[test]
    fn key_file_errors_name_the_path_but_not_the_content() {
        let prefix = "NVIDIA_API_KEY_FILE=\"/run/secrets/key\" is not valid:";
        let missing = io::Error::new(io::ErrorKind::NotFound, "no such file");
        let err = |r| with_key_file(r).expect_err("an error");
        assert_eq!(
            err(Err(missing)),
            format!("{prefix} cannot read it: no such file")
        );
        assert_eq!(err(Ok("\n")), format!("{prefix} the file is empty"));
        let bad = format!("{prefix} the key must be visible ASCII without spaces");
        assert_eq!(err(Ok("two\nlines\n")), bad);
    }

    #[test]
    fn direct_key_wins_over_key_file_which_is_not_read() {
        let c = env(&[("NVIDIA_API_KEY_FILE", "/unreadable")]);
        assert_eq!(c.api_key.expose(), "key-123");
    }

    #[test]
    fn flag_syntax_errors() {
        assert_eq!(error(&["-foo"], &[]), "unknown flag -foo (see --help)");
        assert_eq!(error(&["--foo=1"], &[]), "unknown flag --foo (see --help)");
        assert_eq!(
            error(&["-listen-address"], &[]),
            "flag -listen-address needs a value (see --help)"
        );
        assert_eq!(error(&["---x"], &[]), "bad flag syntax: ---x (see --help)");
        assert_eq!(
            error(&["---key=sekrit"], &[]),
            "bad flag syntax: ---key (see --help)"
        );
    }

    #[test]
    fn flag_errors_stay_one_line_for_arguments_with_control_characters() {
        // Found by the config_parse fuzz target: the flag was quoted raw.
        assert_eq!(
            error(&["-\u{90}\r\u{11}"], &[]),
            "unknown flag -\\u{90}\\r\\u{11} (see --help)"
        );
        assert_eq!(
            error(&["--x\ny=1"], &[]),
            "unknown flag --x\\ny (see --help)"
        );
        assert_eq!(
            error(&["---\n=v"], &[]),
            "bad flag syntax: ---\\n (see --help)"
        );
    }

    #[test]
    fn flag_value_may_start_with_a_dash() {
        assert_eq!(run(&["-nvidia-org-name", "-org"], &[]).org_name, "-org");
    }

    #[test]
    fn double_dash_ends_flags() {
        assert_eq!(
            error(&["--", "-parallelism"], &[]),
            "unexpected argument \"-parallelism\" (see --help)"
        );
        let hc = try_parse(&["-parallelism", "2", "--", "healthcheck"], &[], &no_files);
        assert!(matches!(hc, Ok(Command::Healthcheck(c)) if c.parallelism == 2));
    }

    #[test]
    fn stray_arguments_are_rejected() {
        assert_eq!(
            error(&["serve"], &[]),
            "unexpected argument \"serve\" (see --help)"
        );
        assert_eq!(
            error(&["healthcheck", "now"], &[]),
            "unexpected argument \"now\" (see --help)"
        );
    }

    #[test]
    fn healthcheck_needs_no_key_or_org() {
        let vars = [
            ("NVIDIA_API_KEY", ""),
            ("NVIDIA_ORG_NAME", ""),
            ("NVIDIA_API_KEY_FILE", "/x"),
        ];
        match try_parse(
            &["healthcheck", "-listen-address", "127.0.0.1:9000"],
            &vars,
            &no_files,
        ) {
            Ok(Command::Healthcheck(c)) => {
                assert_eq!((c.api_key.expose(), c.org_name.as_str()), ("", ""));
                assert_eq!(c.listen_address, "127.0.0.1:9000");
                assert_eq!(c.metrics_path, "/metrics");
            }
            other => panic!("expected Healthcheck, got {other:?}"),
        }
    }

    #[test]
    fn healthcheck_flags_may_come_first_and_are_validated() {
        let hc = try_parse(&["-metrics-path", "/m", "healthcheck"], &[], &no_files);
        assert!(matches!(hc, Ok(Command::Healthcheck(c)) if c.metrics_path == "/m"));
        assert_eq!(
            error(&["healthcheck", "-listen-address=nope"], &[]),
            "-listen-address=\"nope\" is not valid: expected :port, host:port, ip:port or [ipv6]:port"
        );
    }

    #[test]
    fn help_and_version_need_no_required_values() {
        for flag in ["-h", "-help", "--help", "--h"] {
            let got = try_parse(&[flag], &[("NVIDIA_API_KEY", "")], &no_files);
            assert!(matches!(got, Ok(Command::Help(_))), "{flag}");
        }
        for flag in ["-version", "--version"] {
            let got = try_parse(&[flag], &[("NVIDIA_API_KEY", "")], &no_files);
            assert!(matches!(got, Ok(Command::Version)), "{flag}");
        }
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = help_text();
        for s in SETTINGS {
            for name in std::iter::once(&s.env).chain(s.aliases) {
                assert!(help.contains(name), "{name} missing from help");
            }
            if let Some(flag) = s.flag {
                let shown = [format!("  -{flag} {}, ", s.arg), format!("  -{flag}, ")];
                assert!(
                    shown.iter().any(|f| help.contains(f)),
                    "-{flag} missing from help"
                );
            }
        }
        for line in [
            "  -scrape-timeout duration, SCRAPE_TIMEOUT (default 20s)\n",
            "  -listen-address addr, LISTEN_ADDRESS (default :9844)\n",
            "  -nvidia-org-name name, NVIDIA_ORG_NAME or NLS_ORG_NAME (required)\n",
            "  -otel-insecure, OTEL_INSECURE (default true)\n",
            "  -parallelism n, PARALLELISM (default 8)\n",
            "  -log-level level, LOG_LEVEL (default info)\n",
            "  HTTPS_PROXY or https_proxy\n",
            "  OTEL_EXPORTER_OTLP_TIMEOUT (default 10000)\n",
            "  healthcheck\n",
        ] {
            assert!(help.contains(line), "{line:?} missing from help:\n{help}");
        }
    }

    #[test]
    fn setting_names_are_unique() {
        for (i, a) in SETTINGS.iter().enumerate() {
            for b in &SETTINGS[i + 1..] {
                assert_ne!(a.env, b.env);
                assert!(a.flag.is_none() || a.flag != b.flag, "{:?}", a.flag);
            }
        }
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let headers = ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=hdr-sekrit");
        let c = env(&[("NVIDIA_API_KEY", "key-sekrit"), headers]);
        assert_eq!(c.otel.headers[0].1.expose(), "hdr-sekrit");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("key-sekrit") && !debug.contains("hdr-sekrit"),
            "{debug}"
        );
        assert!(debug.contains("api_key: <redacted>"), "{debug}");
        assert_eq!(Secret::from("x".to_string()).to_string(), "<redacted>");
    }

    #[test]
    fn bad_headers_are_never_echoed() {
        assert_eq!(
            error(&[], &[("OTEL_EXPORTER_OTLP_HEADERS", "a=1,Bearer sekrit")]),
            "OTEL_EXPORTER_OTLP_HEADERS=\"<redacted>\" is not valid: entry 2 is not key=value"
        );
    }

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
}
