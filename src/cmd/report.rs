//! `nwtrace report`: read recordings, aggregate them in one parallel
//! streaming pass, and write the answers as text, JSON, HTML or CSV.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::UsageError;
use crate::analysis::join::DEFAULT_MAX_SEGMENTS;
use crate::analysis::{Aggregate, AggregateConfig, Filter};
use crate::cli::{Format, ReportArgs};
use crate::input::FileResult;
use crate::input::reader::first_timestamp;
use crate::input::{self, Discovery};
use crate::report::csv_out;
use crate::report::model::{self, Filters, Report, SourceOut};
use crate::report::{compare, html, text};
use crate::schema::{Direction, Protocol, parse_timestamp_ns};

fn usage(msg: impl Into<String>) -> anyhow::Error {
    UsageError::Message(msg.into()).into()
}

/// Absolute UTC, or relative to `start`.
fn parse_time(text: &str, start: Option<i64>) -> Result<i64> {
    let t = text.trim();
    let mut abs = t.replace('T', " ");
    if let Some(s) = abs.strip_suffix('Z') {
        abs = s.to_string();
    }
    if abs.len() == 19 {
        abs.push_str(".000000");
    }
    if let Some(ns) = parse_timestamp_ns(abs.as_bytes()) {
        return Ok(ns);
    }
    let rel = t.strip_prefix('+').unwrap_or(t);
    if let Ok(d) = humantime::parse_duration(rel) {
        let start = start.ok_or_else(|| usage(format!("{text:?}: no rows to count from")))?;
        return Ok(start + d.as_nanos() as i64);
    }
    Err(usage(format!(
        "{text:?} is not a time; write UTC like \"2026-11-26 05:08:14\" or a duration after the start like 30s"
    )))
}

fn filter_for(args: &ReportArgs, d: &Discovery) -> Result<Filter> {
    let start = if args.since.is_some() || args.until.is_some() {
        d.files
            .iter()
            .filter(|f| args.machines.is_empty() || args.machines.contains(&f.machine_id))
            .filter_map(|f| first_timestamp(&f.path, f.compression))
            .min()
    } else {
        None
    };
    let since_ns = args
        .since
        .as_deref()
        .map(|s| parse_time(s, start))
        .transpose()?;
    let until_ns = args
        .until
        .as_deref()
        .map(|s| parse_time(s, start))
        .transpose()?;
    if let (Some(a), Some(b)) = (since_ns, until_ns)
        && b <= a
    {
        return Err(usage("--until must be after --since"));
    }
    let mut f = Filter {
        pids: args.pids.clone(),
        comms: args.comms.clone(),
        netns: args.netns.clone(),
        since_ns,
        until_ns,
        ..Filter::default()
    };
    args.filter.apply(&mut f);
    Ok(f)
}

fn discover(paths: &[PathBuf]) -> Result<Discovery> {
    let d = input::discover(paths).map_err(usage)?;
    if d.files.is_empty() && d.runs.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(usage(format!(
            "no nwtrace data (nw_*.csv or manifest.json) under {}",
            shown.join(", ")
        )));
    }
    Ok(d)
}

/// Builds the report (all rows; each renderer cuts to its top).
fn build(args: &ReportArgs, paths: &[PathBuf]) -> Result<Report> {
    let d = discover(paths)?;
    if !args.machines.is_empty()
        && !d
            .files
            .iter()
            .any(|f| args.machines.contains(&f.machine_id))
    {
        return Err(usage(format!(
            "no data for machine {} under the given paths",
            args.machines.join(", ")
        )));
    }
    let filter = filter_for(args, &d)?;
    let config = AggregateConfig {
        max_conversations: args.max_conversations.max(1),
        ..AggregateConfig::default()
    };
    let merge_keys = merge_keys(args.memory, rayon::current_num_threads());
    let (preloaded, sources) = summaries(args, &d, config.for_merging(merge_keys));
    let scan = input::scan_with(d, &filter, config, &args.machines, preloaded, merge_keys);
    let filters = Filters {
        pid: args.pids.clone(),
        comm: args.comms.clone(),
        port: filter.ports.clone(),
        protocol: filter.protocol.map(Protocol::as_str),
        ip_version: filter.ip_version,
        direction: filter.direction.map(Direction::as_str),
        cgroup: filter.cgroups.iter().map(|c| format!("/{c}")).collect(),
        container: filter.containers.clone(),
        exclude_comm: filter.exclude_comms.clone(),
        netns: filter.netns.clone(),
        machine: args.machines.clone(),
        since: filter.since_ns.map(crate::schema::format_timestamp_ns),
        until: filter.until_ns.map(crate::schema::format_timestamp_ns),
    };
    let mut report = model::build(
        &scan,
        &model::Options {
            inputs: paths.iter().map(|p| p.display().to_string()).collect(),
            filters,
            sort: args.sort,
            top: None,
        },
    );
    report.sources = sources;
    let tcp = input::tcp::scan_tcp(
        &scan.discovery,
        &filter,
        &args.machines,
        DEFAULT_MAX_SEGMENTS,
    );
    let machines = &scan.discovery.machines;
    report.join = tcp.join.map(|j| j.finish(machines));
    report.network = tcp.network.map(|n| n.finish(machines));
    Ok(report)
}

/// What one key of a ranked table costs while summaries merge, about (a
/// conversation with its two latency histograms and the map's slack;
/// ports and errors cost less, processes with peers more).
const BYTES_PER_MERGE_KEY: u64 = 1024;

/// Keys each ranked table may hold while merging, for a `--memory`
/// budget: every worker holds a merged aggregate and the final merge
/// one more; the three large tables (processes, conversations, remote
/// endpoints) share the budget, each growing to twice its bound before
/// it keeps its heaviest keys.
fn merge_keys(memory: u64, workers: usize) -> usize {
    let holders = workers as u64 + 1;
    let keys = memory / (holders * 3 * 2 * BYTES_PER_MERGE_KEY);
    keys.max(1024) as usize
}

/// The row-level options that a summary cannot answer.
fn row_options(args: &ReportArgs) -> Vec<&'static str> {
    let mut v = Vec::new();
    let asked = [
        (!args.pids.is_empty(), "--pid"),
        (!args.comms.is_empty(), "--comm"),
        (!args.filter.ports.is_empty(), "--port"),
        (args.filter.protocol.is_some(), "--protocol"),
        (args.filter.ip_version.is_some(), "--ip-version"),
        (args.filter.direction.is_some(), "--direction"),
        (!args.filter.cgroups.is_empty(), "--cgroup"),
        (!args.filter.containers.is_empty(), "--container"),
        (!args.filter.exclude_comms.is_empty(), "--exclude-comm"),
        (!args.netns.is_empty(), "--netns"),
        (args.since.is_some(), "--since"),
        (args.until.is_some(), "--until"),
    ];
    for (on, name) in asked {
        if on {
            v.push(name);
        }
    }
    v
}

/// Each run's summary when it can be proved to match its files and no
/// row-level filter is asked; the runs left are read from their CSV. Says
/// on stderr what came from where when any summary is there.
fn summaries(
    args: &ReportArgs,
    d: &Discovery,
    config: AggregateConfig,
) -> (Vec<input::Preloaded>, Vec<SourceOut>) {
    use rayon::prelude::*;
    let filters = row_options(args);
    let runs: Vec<usize> = (0..d.runs.len())
        .filter(|&ri| args.machines.is_empty() || args.machines.contains(&d.runs[ri].machine_id))
        .filter(|&ri| d.files.iter().any(|f| f.run == ri))
        .collect();
    // Each worker merges the summaries it loads as it goes, so memory
    // holds one merged aggregate per worker, not every summary at once.
    type Part = (
        Option<Aggregate>,
        Vec<(usize, Result<Vec<(usize, FileResult)>, String>)>,
    );
    let (merged, loaded): Part = runs
        .par_iter()
        .fold(
            || (None, Vec::new()),
            |(mut acc, mut outs): Part, &ri| {
                let l = if args.no_summaries {
                    Err("--no-summaries".to_string())
                } else if !filters.is_empty() {
                    Err(format!("{} asks for single rows", filters.join(" ")))
                } else {
                    crate::output::summary::load(d, ri, config)
                };
                match l {
                    Ok(l) => {
                        match acc.as_mut() {
                            Some(a) => a.merge(&l.aggregate),
                            None => acc = Some(l.aggregate),
                        }
                        outs.push((ri, Ok(l.files)));
                    }
                    Err(why) => outs.push((ri, Err(why))),
                }
                (acc, outs)
            },
        )
        .reduce(
            || (None, Vec::new()),
            |(a, mut x): Part, (b, y): Part| {
                x.extend(y);
                let m = match (a, b) {
                    (Some(mut a), Some(b)) => {
                        a.merge(&b);
                        Some(a)
                    }
                    (a, b) => a.or(b),
                };
                (m, x)
            },
        );
    let mut loaded = loaded;
    loaded.sort_by_key(|(ri, _)| *ri);
    let mut summary_files = Vec::new();
    let mut sources = Vec::new();
    let (mut from_summary, mut rejected) = (0, Vec::new());
    for (ri, l) in loaded {
        let run = &d.runs[ri];
        let (source, reason) = match l {
            Ok(files) => {
                summary_files.extend(files);
                from_summary += 1;
                ("summary", None)
            }
            Err(why) => {
                // A summary that is there but not used is worth a line.
                let present = run
                    .manifest_name
                    .as_deref()
                    .and_then(crate::output::summary::summary_name)
                    .is_some_and(|n| run.nw_dir.join(n).exists());
                if present {
                    rejected.push(format!("{}/{}: {why}", run.machine_id, run.run_dir));
                }
                ("csv", Some(why))
            }
        };
        sources.push(SourceOut {
            machine_id: run.machine_id.clone(),
            run: run.run_dir.clone(),
            manifest: run.manifest_name.clone(),
            source,
            reason,
        });
    }
    if args.no_summaries {
        // Asked for: nothing to explain.
    } else if !filters.is_empty() {
        if !rejected.is_empty() {
            eprintln!(
                "nwtrace: every run from its CSV: {} asks for single rows, which summaries do not keep",
                filters.join(" ")
            );
        }
    } else if from_summary > 0 || !rejected.is_empty() {
        let csv = runs.len() - from_summary;
        let mut line = format!(
            "nwtrace: {from_summary} run{} from summaries, {csv} from CSV",
            if from_summary == 1 { "" } else { "s" }
        );
        if !rejected.is_empty() {
            line.push_str(&format!(
                "; summary not used for {}",
                rejected
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            if rejected.len() > 3 {
                line.push_str(&format!(
                    " (and {} more: see \"sources\" in --format json)",
                    rejected.len() - 3
                ));
            }
        }
        eprintln!("{line}");
    }
    let preloaded = merged.map(|a| (a, summary_files)).into_iter().collect();
    sources.sort_by(|a, b| {
        (&a.machine_id, &a.run, &a.manifest).cmp(&(&b.machine_id, &b.run, &b.manifest))
    });
    (preloaded, sources)
}

/// The report with every table cut to `n` rows.
fn cut(r: &Report, n: usize) -> Report {
    let mut r = r.clone();
    r.processes.truncate(n);
    r.commands.truncate(n);
    r.conversations.truncate(n);
    for v in r.containers.iter_mut() {
        v.truncate(n);
    }
    for v in r.cgroups.iter_mut() {
        v.truncate(n);
    }
    for v in r.netns.iter_mut() {
        v.truncate(n);
    }
    r.remote_endpoints.truncate(n);
    r.ports.truncate(n);
    r.errors.truncate(n);
    r.msg_flags.combinations.truncate(n);
    r.exemplars.slowest.truncate(n);
    r.exemplars.largest.truncate(n);
    for t in r.tables.values_mut() {
        t.listed = t.listed.min(n);
    }
    if let Some(b) = &mut r.baseline {
        b.commands.truncate(n);
        b.conversations.truncate(n);
        b.remote_endpoints.truncate(n);
        b.ports.truncate(n);
        b.errors.truncate(n);
    }
    r
}

fn format_of(path: &Path, fallback: &[Format]) -> Result<Format> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    Ok(match ext.as_deref() {
        Some("json") => Format::Json,
        Some("html") | Some("htm") => Format::Html,
        Some("csv") => Format::Csv,
        Some("txt") | Some("text") => Format::Text,
        _ => match fallback {
            [f] => *f,
            _ => {
                return Err(usage(format!(
                    "{}: say the format with its extension (.txt, .json, .html, .csv) or one --format",
                    path.display()
                )));
            }
        },
    })
}

fn render(r: &Report, format: Format, args: &ReportArgs, styled: bool) -> Result<Vec<u8>> {
    let top = args.top.map(|n| n as usize);
    Ok(match format {
        Format::Text => text::render(
            r,
            &text::TextOptions {
                styled,
                top: top.unwrap_or(10),
            },
        )
        .into_bytes(),
        Format::Json => {
            let r = top.map_or_else(|| r.clone(), |n| cut(r, n));
            let mut v = serde_json::to_vec_pretty(&r).context("serialising the report")?;
            v.push(b'\n');
            v
        }
        Format::Html => html::render(r, top.unwrap_or(50))
            .context("rendering the HTML report")?
            .into_bytes(),
        Format::Csv => {
            let r = top.map_or_else(|| r.clone(), |n| cut(r, n));
            csv_out::render(&r, args.csv_table)
        }
    })
}

pub fn report(args: ReportArgs) -> Result<ExitCode> {
    // Where each format goes, checked before any work.
    let mut plan: Vec<(Format, Option<PathBuf>)> = Vec::new();
    if args.output.is_empty() {
        match args.format.as_slice() {
            [] => plan.push((Format::Text, None)),
            [f] => plan.push((*f, None)),
            _ => return Err(usage("several --format need an --output file each")),
        }
    } else {
        for o in &args.output {
            plan.push((format_of(o, &args.format)?, Some(o.clone())));
        }
    }

    let mut report = build(&args, &args.paths)?;
    if !args.baseline.is_empty() {
        let base = build(&args, &args.baseline)?;
        report.baseline = Some(compare::compare(&base, &report));
    }

    let stdout = io::stdout();
    let styled = stdout.is_terminal()
        && std::env::var_os("NO_COLOR").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    for (format, dest) in plan {
        match dest {
            Some(path) => {
                let bytes = render(&report, format, &args, false)?;
                std::fs::write(&path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            None => {
                let bytes = render(&report, format, &args, styled)?;
                let mut out = stdout.lock();
                match out.write_all(&bytes).and_then(|()| out.flush()) {
                    Ok(()) => {}
                    // `nwtrace report | head`: the reader has had enough.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => return Err(e).context("writing to stdout"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let start = Some(1_000_000_000_000);
        assert_eq!(parse_time("30s", start).unwrap(), 1_030_000_000_000);
        assert_eq!(parse_time("+1m", start).unwrap(), 1_060_000_000_000);
        let abs = parse_time("2026-11-26 05:08:14", None).unwrap();
        assert_eq!(abs, 1_795_669_694_000_000_000);
        assert_eq!(parse_time("2026-11-26T05:08:14Z", None).unwrap(), abs);
        assert_eq!(
            parse_time("2026-11-26 05:08:14.000001", None).unwrap(),
            abs + 1000
        );
        assert!(parse_time("yesterday", start).is_err());
        assert!(parse_time("5s", None).is_err());
    }
}
