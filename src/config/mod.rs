//! Configuration: flags and environment variables → one validated, immutable [`Config`].
//!
//! Two stages, after ripgrep's lowargs/hiargs, around one table:
//! - `settings`: every setting's env name, flag, default and help; the one place
//!   that names them.
//! - `raw`: stage one reads the flags and the environment into raw strings (flags
//!   over environment; values trimmed; an empty value counts as unset, as in the Go
//!   exporter) and validates nothing but the flags' syntax.
//! - `build`: stage two turns them into typed values with the parsers of
//!   `values`, and is the only place that reads a file (the API key file).
//! - `help`: the `--help` text, from the table; [`duration`]: Go durations.
//!
//! Every input arrives as an argument, so tests never touch the process. Every error
//! is one line naming the setting as the user wrote it and the value — except for
//! secrets, whose value is shown as `<redacted>` — and `main` exits 2 on it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod build;
pub(crate) mod duration;
mod help;
mod raw;
mod settings;
mod values;

use raw::{Gathered, Subcommand};
use values::choose;

/// Reads flags and environment, then validates them. `args` excludes argv[0].
pub fn parse(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Command, ConfigError> {
    match raw::gather(args, env)? {
        Gathered::Help => Ok(Command::Help(help::text())),
        Gathered::Version => Ok(Command::Version),
        Gathered::Raw(raw) => match raw.subcommand {
            Subcommand::Healthcheck => Ok(Command::Healthcheck(build::healthcheck(&raw)?)),
            Subcommand::Check => {
                let output = raw.parse_output()?;
                Ok(Command::Check(build::run(&raw, read_file)?, output))
            }
            Subcommand::Run => Ok(Command::Run(build::run(&raw, read_file)?)),
        },
    }
}

/// What the command line asked for.
// Built once at start and matched once: boxing `Config` to shrink it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Command {
    Run(Config),
    /// `healthcheck`: the key and org name are not required; every other setting
    /// is still read and validated exactly as for `Run`.
    Healthcheck(HealthcheckConfig),
    /// `check`: one refresh with the settings of `Run` (the key and org name
    /// required), its summary printed in the given format; nothing served.
    Check(Config, CheckOutput),
    /// The full `--help` text.
    Help(String),
    Version,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) api_key: Secret,
    pub(crate) org_name: String,
    /// Without a trailing `/`.
    pub(crate) api_base_url: String,
    /// Sent as `x-nv-service-instance-id` when no server names its own.
    pub(crate) service_instance_id: Option<String>,
    pub(crate) listen: ListenAddr,
    /// The listen address as written (or `:$PORT`, or the default), for logs.
    pub(crate) listen_address: String,
    pub(crate) metrics_path: String,
    pub scrape_timeout: Duration,
    pub cache_ttl: Duration,
    /// 1..=MAX_PARALLELISM.
    pub(crate) parallelism: u32,
    /// 1..=MAX_CLS_PAGE_SIZE.
    pub(crate) cls_page_size: u32,
    /// Extra PEM CA bundle for the CLS API; read by `main`.
    pub(crate) api_ca_file: Option<PathBuf>,
    /// Prometheus exporter-toolkit web configuration file (TLS, basic auth); read by `main`.
    pub(crate) web_config_file: Option<PathBuf>,
    /// Whether `/healthz` stays open when basic auth is configured.
    pub(crate) healthz_open: bool,
    pub(crate) log_level: LogLevel,
    pub(crate) log_format: LogFormat,
    /// Normalised to `http://host:port` (port 80 when none was given).
    pub(crate) https_proxy: Option<String>,
    /// NO_PROXY entries, trimmed, empty ones dropped.
    pub(crate) no_proxy: Vec<String>,
    pub otel: OtelConfig,
}

/// What the `healthcheck` subcommand needs: where the listener is, and whether it speaks TLS.
#[derive(Debug, Clone)]
pub struct HealthcheckConfig {
    pub(crate) listen: ListenAddr,
    /// Read by the healthcheck, for whether the listener speaks TLS.
    pub(crate) web_config_file: Option<PathBuf>,
}

/// Parsed and validated now so a bad value fails at start; `otlp` reads the
/// certificate files when the push is enabled.
#[derive(Debug, Clone)]
pub struct OtelConfig {
    pub(crate) enabled: bool,
    /// Full URL with scheme: `http://` when insecure, `https://` for TLS. For
    /// `http/protobuf` it already ends in `/v1/metrics` unless it came from
    /// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, which is used as written.
    pub(crate) endpoint: String,
    /// Resolved: the endpoint's scheme, else OTEL_EXPORTER_OTLP_INSECURE, else OTEL_INSECURE.
    pub(crate) insecure: bool,
    pub(crate) protocol: OtlpProtocol,
    pub(crate) headers: Vec<(String, Secret)>,
    pub(crate) timeout: Duration,
    pub(crate) compression: OtlpCompression,
    pub(crate) certificate: Option<PathBuf>,
    pub(crate) client_certificate: Option<PathBuf>,
    pub(crate) client_key: Option<PathBuf>,
    /// OTEL_RESOURCE_ATTRIBUTES in order; `service_name` and
    /// `service_instance_id` below win over keys of the same meaning here.
    pub(crate) resource_attributes: Vec<(String, String)>,
    /// OTEL_SERVICE_NAME, else `service.name` in the resource attributes, else the default.
    pub(crate) service_name: String,
    pub(crate) service_instance_id: String,
    pub push_interval: Duration,
    pub(crate) backlog: BacklogConfig,
}

/// What the push keeps of batches the collector has not accepted yet.
#[derive(Debug, Clone)]
pub(crate) struct BacklogConfig {
    /// Batches whose collection time is older are dropped.
    pub(crate) max_age: Duration,
    /// Stored (compressed) bytes kept; the oldest batches go first.
    pub(crate) max_bytes: u64,
    /// A replay request holds batches up to this many encoded bytes.
    pub(crate) request_max_bytes: u64,
    /// OTEL_SPOOL_DIR: opened and checked by `app` before binding.
    pub(crate) spool_dir: Option<PathBuf>,
}

/// Where to listen. `AllInterfaces` is the `:port` form (IPv4 and IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListenAddr {
    AllInterfaces(u16),
    Ip(SocketAddr),
    /// A name to resolve when binding, such as `localhost`.
    Host(String, u16),
}

/// A value that must not reach logs or error messages; `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
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

/// How `check` prints its summary (`-output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutput {
    /// A few lines for a person.
    Text,
    /// One JSON object, for scripts.
    Json,
}

impl CheckOutput {
    const ALL: [Self; 2] = [Self::Text, Self::Json];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogLevel {
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

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    const ALL: [Self; 2] = [Self::Text, Self::Json];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl OtlpProtocol {
    const ALL: [Self; 2] = [Self::Grpc, Self::HttpProtobuf];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OtlpCompression {
    None,
    Gzip,
}

impl OtlpCompression {
    const ALL: [Self; 2] = [Self::Gzip, Self::None];

    fn parse(v: &str) -> Result<Self, String> {
        choose(v, Self::ALL, Self::as_str)
    }

    pub(crate) const fn as_str(self) -> &'static str {
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

#[cfg(test)]
mod tests;
