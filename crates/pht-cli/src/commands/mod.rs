//! One module per command group; each takes resolved arguments and prints through `Output`.

pub mod base;
pub mod blob;
pub mod jobs;
pub mod key;
pub mod results;
pub mod scaffold;
pub mod train;
