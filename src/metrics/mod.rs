//! Metrics: the vocabulary of a family (`family`), the one metric table
//! (`families`), the live families (`live`, with the `/proc` reader
//! `process`), the text encoder (`text`) and the refresh part of the
//! exposition rendered once per refresh (`exposition`). No I/O but the
//! `/proc` reads of `process`.

pub(crate) mod exposition;
pub mod families;
pub(crate) mod family;
pub(crate) mod live;
pub(crate) mod process;
pub(crate) mod text;
