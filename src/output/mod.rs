//! Output: CSV rows, the rotating files they go to, the run folder layout
//! and the manifest.

pub mod layout;
pub mod manifest;
pub mod row;
pub mod sink;
