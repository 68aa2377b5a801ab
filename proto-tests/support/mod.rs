#![allow(dead_code)]
pub mod exporter;
pub mod fake_cls;
