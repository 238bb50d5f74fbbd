//! `nwtrace summarize PATH`: writes `summary.json` for every run under
//! PATH that lacks a valid one (recordings from before summaries, runs
//! that were killed), from its CSV files.

use crate::cli::SummarizeArgs;
use std::process::ExitCode;

use anyhow::Result;

use crate::UsageError;
use crate::input;
use crate::output::dir::SafeDir;
use crate::output::summary::{self, SummaryDoc};

/// Exit 0 when every run has a valid summary at the end, 1 when a run's
/// files are unreadable or damaged (each said on one line, with file and
/// line), 2 for a path that is not there or holds no recording.
pub fn summarize(args: SummarizeArgs) -> Result<ExitCode> {
    let d = input::discover(&args.paths).map_err(UsageError::Message)?;
    if d.runs.is_empty() {
        let shown: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        return Err(UsageError::Message(format!(
            "no nwtrace recording (manifest.json or nw_*.csv) under {}",
            shown.join(", ")
        ))
        .into());
    }
    let (mut written, mut kept, mut skipped, mut failed) = (0, 0, 0, 0);
    for ri in 0..d.runs.len() {
        let run = &d.runs[ri];
        let shown = run.nw_dir.display();
        let Some(name) = run.manifest_name.as_deref().and_then(summary::summary_name) else {
            eprintln!(
                "nwtrace: {shown}: files without a manifest: skipped (a summary is tied to one)"
            );
            skipped += 1;
            continue;
        };
        let path = run.nw_dir.join(&name);
        let existing = std::fs::symlink_metadata(&path).ok();
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            eprintln!(
                "nwtrace: {}: not a regular file; left alone",
                path.display()
            );
            failed += 1;
            continue;
        }
        if existing.is_some() {
            let valid = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<SummaryDoc>(&b).ok())
                .map(|doc| summary::check(&d, ri, &doc, &name));
            match valid {
                Some(Ok(())) if !args.force => {
                    eprintln!(
                        "nwtrace: {}: matches its files; kept (--force rewrites it)",
                        path.display()
                    );
                    kept += 1;
                    continue;
                }
                Some(Ok(())) => {}
                Some(Err(why)) => eprintln!("nwtrace: {}: {why}; rewriting it", path.display()),
                None => eprintln!(
                    "nwtrace: {}: not a summary this nwtrace reads; rewriting it",
                    path.display()
                ),
            }
        }
        let doc = match summary::from_files(&d, ri) {
            Ok(doc) => doc,
            Err(why) => {
                eprintln!("nwtrace: {why}");
                failed += 1;
                continue;
            }
        };
        let res = SafeDir::open_user_path(&run.nw_dir)
            .map_err(|e| e.to_string())
            .and_then(|dir| {
                summary::write_atomically(&dir, &name, &doc.to_json()).map_err(|e| e.to_string())
            });
        match res {
            Ok(()) => {
                let note = match doc.unusable() {
                    Some(w) => format!(" (not exact: {w}; report reads this run's CSV)"),
                    None if !doc.bounded.is_empty() => format!(
                        " (bounded: its {} tables keep their heaviest keys)",
                        doc.bounded.join(", ")
                    ),
                    None => String::new(),
                };
                let n = doc.files.len();
                eprintln!(
                    "nwtrace: wrote {} ({} rows in {n} file{}){note}",
                    path.display(),
                    doc.rows,
                    if n == 1 { "" } else { "s" }
                );
                written += 1;
            }
            Err(e) => {
                eprintln!("nwtrace: {}: {e}", path.display());
                failed += 1;
            }
        }
    }
    eprintln!(
        "nwtrace: {written} summaries written, {kept} kept, {skipped} skipped, {failed} failed"
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
