//! The CLS API client: knows JSON and HTTP, nothing about Prometheus, OTLP
//! or the snapshot built from what it reads.
//!
//! - `client`: settings, connection pool, shared limits;
//! - `walk`: the org walk (groups → servers → pools and leases);
//! - `paging`: every page of a listing, and the guards;
//! - `request`: one GET with retries, caps and timeouts;
//! - `decode`: an answer's body → items (pure);
//! - `segment`: ids as path segments;
//! - `model`: the tolerant serde types; `error`: typed errors;
//!   `stats`: request and guard counters; `proxy`: HTTPS_PROXY tunnels.

pub(crate) mod client;
pub(crate) mod decode;
pub(crate) mod error;
pub mod model;
pub(crate) mod paging;
pub(crate) mod proxy;
pub(crate) mod request;
pub(crate) mod segment;
pub(crate) mod stats;
pub(crate) mod walk;

pub(crate) use client::{ClientSettings, ClsClient};
pub(crate) use error::Endpoint;
pub(crate) use stats::ApiStats;
pub(crate) use walk::{GroupData, OrgData};
