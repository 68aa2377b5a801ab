//! The CLS API client: knows JSON and HTTP, nothing about Prometheus or OTLP.

pub mod client;
pub mod error;
pub mod model;
pub mod proxy;
pub mod stats;

#[cfg(test)]
pub use client::ServerData;
pub use client::{ClientSettings, ClsClient, GroupData, OrgData};
pub use error::Endpoint;
pub use stats::ApiStats;
