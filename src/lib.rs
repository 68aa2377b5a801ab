//! nvidia-license-server-exporter: reads license entitlements, servers,
//! pools and active leases from NVIDIA's Cloud License Service and serves
//! them as Prometheus metrics.
//!
//! Layout (data flows down):
//! - `config`, `duration`: flags + environment → validated `Config`.
//! - `cls`: the CLS API client (HTTP, JSON, paging, retries).
//! - `snapshot`: API data → the immutable `Snapshot` of one refresh.
//! - `cache`: the published snapshot, single-flight refresh, TTL, stale on error.
//! - `metrics`: the metric table, the text encoder, ready-to-send bodies.
//! - `otlp`: the same families pushed to an OpenTelemetry collector.
//! - `server`: the HTTP listener (`sendfile`: zero-copy large bodies);
//!   `status_page`: the HTML page at `/`;
//!   `healthcheck`: the `healthcheck` subcommand.
//!
//! The binary (`main.rs`) is wiring only; this library exists so that the
//! fuzz targets and the benchmarks reach the same code the binary runs.

#![forbid(unsafe_code)]

pub use app::main;

mod app;
pub mod cache;
mod cause;
mod clock;
pub mod cls;
pub mod config;
pub mod duration;
mod encoding;
pub mod metrics;
pub mod otlp;
mod retry;
pub mod server;
pub mod snapshot;
mod tls;
