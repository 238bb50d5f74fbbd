//! Reading recordings: finding the files ([`discover`]), their manifests
//! ([`manifest`]), a fast streaming reader of rows ([`reader`]), and the
//! parallel pass that folds every file into one
//! [`Aggregate`](crate::analysis::Aggregate) ([`scan`]).

pub mod discover;
pub mod manifest;
pub mod reader;
pub mod scan;
pub mod tcp;

pub use discover::{Compression, DataFile, Discovery, Run, discover};
pub use manifest::Manifest;
pub use reader::{FileStats, Problem, Row, read_file};
pub use scan::{FileResult, Preloaded, Scan, aggregate_file, scan, scan_with};
