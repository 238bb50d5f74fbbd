//! nwtrace: every TCP and UDP send and receive on this machine, as CSV.
//!
//! Data path: `bpf/nwtrace.bpf.c` → ring buffer → `event` (decode) →
//! `row` (format) → `sink` (rotating CSV files in the `layout`).
//! Beside it: `probe` (what the kernel allows) → `loader` → `record` (run
//! control).

mod cli;
mod event;
mod layout;
mod loader;
mod names;
mod probe;
mod record;
mod row;
mod sink;
mod timefmt;

mod bpf {
    // The generated skeleton carries lints we do not control.
    #![allow(clippy::all, unused_imports, dead_code, non_camel_case_types)]
    include!(concat!(env!("OUT_DIR"), "/nwtrace.skel.rs"));
}

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// A mistake in how nwtrace was called: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("{0}")]
    Message(String),
}

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => record::record(args, cli.verbose),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One line: the cause chain joined, most general first.
            let msg = err
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("nwtrace: error: {msg}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    }
}
