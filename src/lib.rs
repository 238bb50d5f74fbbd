//! nwtrace: every TCP and UDP send and receive on this machine, as CSV.
//!
//! Data path: BPF programs (`src/bpf/nwtrace.bpf.c`) → ring buffer →
//! [`capture`] (session, decode) → a consumer in [`output`] (CSV rows in
//! rotating files, and the manifest) → files. The commands in [`cmd`] wire
//! the pieces together.
//!
//! The library half is what other tools and the tests share: the row
//! schema, the CSV reader and the manifest types.

pub mod analysis;
pub mod attribution;
pub mod capture;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod input;
pub mod logging;
pub mod names;
pub mod output;
pub mod report;
pub mod schema;
pub mod timefmt;
pub mod top;
pub mod units;

/// The import-cycle check over the modules above (`src/layers.rs`).
#[cfg(test)]
mod layers;

pub(crate) mod bpf {
    // The generated skeleton carries lints we do not control.
    #![allow(clippy::all, unused_imports, dead_code, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/nwtrace.skel.rs"));
}

/// A mistake in how nwtrace was called: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Layout(#[from] output::layout::LayoutError),
    #[error("{0}")]
    Message(String),
}
