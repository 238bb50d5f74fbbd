//! nwtrace: every TCP and UDP send and receive on this machine, as CSV.
//!
//! The binary: parse the command line, run a subcommand, map the outcome
//! to an exit status. Everything else is in the library (`lib.rs`).

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use nwtrace::UsageError;
use nwtrace::cli::{Cli, Command};
use nwtrace::cmd::{config, doctor, generate, record, report, watch};

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        // Flags > NWTRACE_* environment > config files > defaults.
        Command::Record(_) => record::record(nwtrace::config::record_args()?),
        Command::Config(args) => config::config(*args),
        Command::Generate(args) => generate::generate(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Watch(args) => watch::watch(*args),
        Command::Top(args) => nwtrace::cmd::top::top(*args),
        Command::Report(args) => report::report(*args),
        Command::Summarize(args) => nwtrace::cmd::summarize::summarize(args),
    }
}

/// Parses the command line; a usage mistake is one line on stderr and
/// exit 2 (clap's own report is several lines of usage and tips).
fn parse_cli() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if e.use_stderr() => {
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let _ = writeln!(io::stderr(), "nwtrace: error: {first} (see nwtrace --help)");
            Err(ExitCode::from(EXIT_USAGE))
        }
        // --help and --version
        Err(e) => e.exit(),
    }
}

/// True when the error is stdout (or stderr) having been closed by its
/// reader, as in `nwtrace doctor | head -1`: that ends nwtrace quietly.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    nwtrace::logging::init(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the cause chain joined, most general first.
            let msg = err
                .chain()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
            let _ = writeln!(io::stderr(), "nwtrace: error: {msg}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    }
}
