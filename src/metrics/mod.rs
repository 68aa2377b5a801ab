//! Metrics: the vocabulary of a family (`family`), the one metric table
//! (`families`), the live families (`live`, with the `/proc` reader
//! `process`), the text encoder (`text`) and the refresh part of the
//! exposition rendered once per refresh (`exposition`). No I/O but the
//! `/proc` reads of `process`.

pub mod exposition;
pub mod families;
pub mod family;
pub mod live;
pub mod process;
pub mod text;
