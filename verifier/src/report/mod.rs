//! Parity reports: the JSON model, the HTML page and the terminal summary.

pub mod html;
pub mod model;
pub mod text;

pub use model::*;
