//! `nwtrace config`: record's effective settings and where each came from.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::cli::{ConfigArgs, DoctorFormat};
use crate::config::{self, Setting};

#[derive(Serialize)]
struct Report<'a> {
    schema_version: u32,
    config_files: Vec<String>,
    settings: &'a [Setting],
}

pub fn config(args: ConfigArgs) -> Result<ExitCode> {
    let resolved = config::for_config(&args)?;
    let mut out = io::stdout().lock();
    match args.format {
        DoctorFormat::Json => {
            let report = Report {
                schema_version: 1,
                config_files: resolved
                    .files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                settings: &resolved.settings,
            };
            // One write: an io::Error (a closed pipe) stays an io::Error.
            let text = serde_json::to_string_pretty(&report)?;
            writeln!(out, "{text}")?;
        }
        DoctorFormat::Text => {
            let files: Vec<String> = resolved
                .files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            writeln!(
                out,
                "# config files: {}",
                if files.is_empty() {
                    "none".to_string()
                } else {
                    files.join(", ")
                }
            )?;
            let width = resolved
                .settings
                .iter()
                .map(|s| s.key.len())
                .max()
                .unwrap_or(0);
            for s in &resolved.settings {
                let value = if s.values.is_empty() {
                    "-".to_string()
                } else {
                    s.values.join(",")
                };
                writeln!(out, "{:width$}  {:24}  # {}", s.key, value, s.source)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
