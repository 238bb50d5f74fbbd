//! `nwtrace generate man|completions DIR` (hidden): the man pages and
//! shell completions, from the very CLI definition the binary parses with,
//! for scripts/build-deb.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, GenerateArgs, GenerateWhat};

pub fn generate(args: GenerateArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    match args.what {
        GenerateWhat::Man => man(&args.dir)?,
        GenerateWhat::Completions => completions(&args.dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `nwtrace.1` and `nwtrace-<subcommand>.1` for every visible
/// subcommand.
fn man(dir: &Path) -> Result<()> {
    let cmd = Cli::command();
    let write = |name: &str, cmd: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are &'static str; this runs once, at packaging time.
        let name: &'static str = Box::leak(format!("nwtrace-{}", sub.get_name()).into_boxed_str());
        write(name, sub.clone().name(name))?;
    }
    write("nwtrace", cmd)
}

/// `nwtrace.bash`, `_nwtrace` (zsh) and `nwtrace.fish`.
fn completions(dir: &Path) -> Result<()> {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "nwtrace", dir)
            .with_context(|| format!("writing the {shell} completion into {}", dir.display()))?;
    }
    Ok(())
}
