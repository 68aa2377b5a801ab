//! The CLS API client: knows JSON and HTTP, nothing about Prometheus or OTLP.

pub(crate) mod client;
pub(crate) mod error;
pub(crate) mod model;
pub(crate) mod proxy;
pub(crate) mod stats;

#[cfg(test)]
pub(crate) use client::ServerData;
pub(crate) use client::{ClientSettings, ClsClient, GroupData, OrgData};
pub(crate) use error::Endpoint;
pub(crate) use stats::ApiStats;
