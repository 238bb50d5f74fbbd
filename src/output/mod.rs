//! Output: what consumes the capture (the CSV writer with its rows in
//! rotating files, watch's lines, the metrics), the run folder layout, the
//! safe folder type and the manifest.

pub mod csv;
pub mod dir;
pub mod expire;
pub mod journal;
pub mod layout;
pub mod lines;
pub mod manifest;
pub mod metrics;
pub mod on_close;
pub mod row;
pub mod sink;
pub mod summary;
pub mod unwritten;
