//! Output: the consumer seam the capture session feeds, the CSV writer (rows
//! in rotating files), the run folder layout, the safe folder type and the
//! manifest.

pub mod consumer;
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
