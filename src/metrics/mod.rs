//! Metrics: the family table, the process figures, the text encoder and the
//! ready-to-send exposition bodies.

pub(crate) mod exposition;
pub(crate) mod families;
pub(crate) mod process;
pub(crate) mod text;
