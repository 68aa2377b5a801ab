#![allow(dead_code)]
pub mod canned;
pub mod demo_org;
pub mod exporter;
pub mod exposition;
pub mod fake_cls;
pub mod front;
pub mod orgs;
pub mod pki;
pub mod proxy;
pub mod scratch;
pub mod series;
pub mod tools;
