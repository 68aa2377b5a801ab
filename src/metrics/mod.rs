//! Metrics: the family table, the process figures, the text encoder and the
//! ready-to-send exposition bodies.

pub mod exposition;
pub mod families;
pub mod process;
pub mod text;
