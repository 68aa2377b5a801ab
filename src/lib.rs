//! nvidia-license-server-exporter: reads license entitlements, servers,
//! pools and active leases from NVIDIA's Cloud License Service and serves
//! them as Prometheus metrics, and pushes them over OTLP.
//!
//! Layout (data flows down; ARCHITECTURE.md has the map):
//! - `config`: flags + environment → validated `Config`;
//! - `cls`: the CLS API client (HTTP, JSON, paging, retries);
//! - `snapshot`: API data → the immutable `Snapshot` of one refresh;
//! - `cache`: the published snapshot, single-flight refresh, TTL, stale on error;
//! - `metrics`: the metric table, the live families, the text encoder;
//! - `server`: the HTTP listener, the status page, the healthcheck;
//! - `otlp`: the same families pushed to an OpenTelemetry collector;
//! - `summary`: what a refresh found, as `check` and the log tell it;
//! - `app`: the wiring; shared helpers: `tls`, `retry`, `clock`, `cause`,
//!   `encoding`, `memory`.
//!
//! The binary (`main.rs`) only calls `main`. The library exists so that the
//! fuzz targets and the benchmarks run the code the binary runs; `harness`
//! is all they reach, and nothing else is public.

// One exception, measured and explained in `memory`: the rest of the crate
// has no unsafe code.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

pub use app::main;

mod app;
mod cache;
mod cause;
mod clock;
mod cls;
mod config;
mod encoding;
mod memory;
mod metrics;
mod otlp;
mod retry;
mod server;
mod snapshot;
mod summary;
mod tls;

/// What the fuzz targets and the benchmarks drive: decoding CLS answers,
/// building a snapshot, the metric table, the encoder, the settings parser,
/// the spool's file format.
/// Not an API: it changes with the code.
#[doc(hidden)]
pub mod harness {
    pub use crate::cache::Status;
    pub use crate::cls::decode::{decode_page, Page};
    pub use crate::cls::error::{ClsError, Endpoint, ErrorKind};
    pub use crate::cls::model;
    pub use crate::cls::stats::ApiStats;
    pub use crate::cls::walk::{GroupData, OrgData, ServerData};
    pub use crate::config::duration::{format_go_duration, parse_go_duration};
    pub use crate::config::{parse, CheckOutput, Command};
    pub use crate::metrics::exposition::live_text;
    pub use crate::metrics::families::{self, refresh_families};
    pub use crate::metrics::family::{Desc, Family, Kind, Labels, Metric, Sample};
    pub use crate::metrics::live::{process_families, push_families, PushCounts};
    pub use crate::metrics::process::ProcessStats;
    pub use crate::metrics::text::{encode, Format, Prepared};
    pub use crate::otlp::backlog::{merge as merge_batches, Meta as BatchMeta};
    pub use crate::otlp::spool::{
        decode as decode_spool_file, encode as encode_spool_file, Corrupt as SpoolCorrupt,
    };
    pub use crate::retry::parse_retry_after;
    pub use crate::snapshot::{
        EntitlementKey, EntitlementRow, FeatureUse, PoolFeatureKey, PoolUse, ServerFeatureKey,
        ServerInfoKey, ServerKey, Snapshot,
    };
}
