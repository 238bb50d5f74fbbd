//! The report's coverage section: every run as read, and what the report
//! covers (rows read of those written, losses, malformed rows, files
//! deleted or missing, gaps in time), per run and per machine.

use crate::analysis::aggregate::{max_opt, min_opt};
use std::collections::BTreeMap;

use super::model::{
    Coverage, GapOut, MAX_PROBLEMS, MachineOut, ProblemOut, RunOut, ThinningOut, ts,
};
use crate::input::manifest::parse_iso8601;
use crate::input::scan::Scan;
use crate::schema::format_timestamp_ns;

/// Every run as read, and what the report covers: rows, losses, problems
/// and files deleted or missing.
pub(super) fn runs_and_coverage(scan: &Scan, file_names: &[String]) -> (Vec<RunOut>, Coverage) {
    let agg = &scan.aggregate;
    let d = &scan.discovery;
    let mut runs: Vec<RunOut> = Vec::new();
    let mut cov = Coverage::default();
    for (ri, run) in d.runs.iter().enumerate() {
        let files: Vec<usize> = (0..d.files.len())
            .filter(|&i| d.files[i].run == ri)
            .collect();
        let rows: u64 = files.iter().map(|&i| scan.files[i].stats.rows).sum();
        let malformed: u64 = files.iter().map(|&i| scan.files[i].stats.malformed).sum();
        let first = files.iter().filter_map(|&i| scan.files[i].first_ns).min();
        let last = files.iter().filter_map(|&i| scan.files[i].last_ns).max();
        let m = run.manifest.as_ref();
        let prefix = run.nw_dir.display().to_string();
        cov.deleted_file_count += run.deleted_count;
        cov.deleted_files
            .extend(run.deleted_files.iter().map(|f| format!("{prefix}/{f}")));
        cov.missing_files
            .extend(run.missing_files.iter().map(|f| format!("{prefix}/{f}")));
        runs.push(RunOut {
            machine_id: run.machine_id.clone(),
            run: run.run_dir.clone(),
            manifest: run.manifest_name.clone(),
            rows,
            rows_written: m.map(|m| m.rows_written),
            events_lost: m.map_or(0, |m| m.events_lost),
            probes_missed: m.map_or(0, |m| m.probes_missed),
            rows_lost: m.map_or(0, |m| m.rows_lost),
            finalized: m.is_some_and(|m| m.finalized),
            exit_reason: m.and_then(|m| m.exit_reason.clone()),
            backend: m.and_then(|m| m.backend.clone()),
            started_at: m.and_then(|m| m.started_at.clone()),
            stopped_at: m.and_then(|m| m.stopped_at.clone()),
            first: ts(first),
            last: ts(last),
            files: files.len(),
            deleted_file_count: run.deleted_count,
            deleted_files: run.deleted_files.clone(),
            missing_files: run.missing_files.clone(),
            malformed_rows: malformed,
            manifest_error: run.manifest_error.clone(),
        });
    }
    runs.sort_by(|a, b| {
        (&a.machine_id, &a.run, &a.manifest).cmp(&(&b.machine_id, &b.run, &b.manifest))
    });
    for r in &runs {
        cov.events_lost += r.events_lost;
        cov.probes_missed += r.probes_missed;
        cov.rows_lost += r.rows_lost;
        cov.unfinalized_runs += u64::from(r.manifest.is_some() && !r.finalized);
        cov.runs_without_manifest += u64::from(r.manifest.is_none());
        if r.manifest.is_some() {
            cov.manifest_rows += r.rows_written.unwrap_or(0).max(r.rows);
            cov.manifest_rows_read += r.rows;
        }
    }
    let thinned: Vec<_> = d
        .runs
        .iter()
        .filter_map(|r| r.manifest.as_ref()?.loss_by_reason.as_ref())
        .filter(|l| l.sample.is_some() || l.rate_limit.is_some())
        .collect();
    if !thinned.is_empty() {
        let sampled_out = thinned.iter().map(|l| l.left_out.sampled_out).sum();
        let rate_limited = thinned.iter().map(|l| l.left_out.rate_limited).sum();
        let rows: u64 = scan.files.iter().map(|f| f.stats.rows).sum();
        // The summaries' unwritten parts were merged: more ops than rows.
        let included = sampled_out + rate_limited == 0 || agg.totals.ops > rows;
        cov.thinning = Some(ThinningOut::new(
            thinned.len(),
            sampled_out,
            rate_limited,
            included,
        ));
    }
    cov.runs = runs.len();
    cov.files = d.files.len();
    for (i, f) in scan.files.iter().enumerate() {
        let s = &f.stats;
        cov.rows += s.rows;
        cov.bytes_read += s.bytes;
        cov.malformed_rows += s.malformed;
        cov.files_missing_header += u64::from(s.missing_header);
        cov.files_cut_mid_row += u64::from(s.cut_mid_row);
        cov.files_unreadable += u64::from(s.read_error.is_some() && s.rows == 0);
        cov.first_ns = min_opt(cov.first_ns, f.first_ns);
        cov.last_ns = max_opt(cov.last_ns, f.last_ns);
        cov.problems_total += s.malformed
            + u64::from(s.missing_header)
            + u64::from(s.cut_mid_row)
            + u64::from(s.read_error.is_some());
        if let (Some(e), true) = (&s.read_error, s.problems.is_empty()) {
            cov.problems.push(ProblemOut {
                file: file_names[i].clone(),
                line: 0,
                message: e.clone(),
            });
        }
        for p in &s.problems {
            cov.problems.push(ProblemOut {
                file: file_names[i].clone(),
                line: p.line,
                message: p.message.clone(),
            });
        }
    }
    cov.problems
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    cov.problems.truncate(MAX_PROBLEMS);
    cov.first = ts(cov.first_ns);
    cov.last = ts(cov.last_ns);
    (runs, cov)
}

/// Machines: from per-file totals (after filters) and runs.
pub(super) fn machines(runs: &[RunOut], scan: &Scan) -> BTreeMap<String, MachineOut> {
    let d = &scan.discovery;
    let mut machines: BTreeMap<String, MachineOut> = BTreeMap::new();
    for r in runs {
        let m = machines
            .entry(r.machine_id.clone())
            .or_insert_with(|| MachineOut {
                machine_id: r.machine_id.clone(),
                runs: 0,
                rows: 0,
                ops: 0,
                bytes_sent: 0,
                bytes_received: 0,
                errors: 0,
                events_lost: 0,
                first: None,
                last: None,
            });
        m.runs += 1;
        m.rows += r.rows;
        m.events_lost += r.events_lost;
    }
    let mut mfirst: BTreeMap<String, (Option<i64>, Option<i64>)> = BTreeMap::new();
    for (i, f) in d.files.iter().enumerate() {
        let t = &scan.files[i].totals;
        if let Some(m) = machines.get_mut(&f.machine_id) {
            m.ops += t.ops;
            m.bytes_sent += t.bytes_sent;
            m.bytes_received += t.bytes_received;
            m.errors += t.errors;
        }
        let e = mfirst.entry(f.machine_id.clone()).or_default();
        e.0 = min_opt(e.0, t.first_ns);
        e.1 = max_opt(e.1, t.last_ns);
    }
    for (k, (a, b)) in mfirst {
        if let Some(m) = machines.get_mut(&k) {
            m.first = ts(a);
            m.last = ts(b);
        }
    }
    machines
}

/// Gaps in time per machine: stretches between one run's end and the next
/// run's start when nothing on that machine was recording. A run's span is
/// its manifest's start and stop (else its first and last row).
pub(super) fn gaps(runs: &[RunOut], scan: &Scan) -> Vec<GapOut> {
    let mut out = Vec::new();
    for (i, f) in scan.files.iter().enumerate() {
        for &(a, b) in &f.quiet {
            out.push(GapOut {
                kind: "no_rows",
                machine_id: scan.discovery.files[i].machine_id.clone(),
                from: format_timestamp_ns(a),
                to: format_timestamp_ns(b),
                seconds: (b - a) as f64 / 1e9,
            });
        }
    }
    let mut by_machine: BTreeMap<&str, Vec<(i64, i64)>> = BTreeMap::new();
    for r in runs {
        let start = r
            .started_at
            .as_deref()
            .and_then(parse_iso8601)
            .map(|s| s * 1_000_000_000)
            .or_else(|| {
                r.first
                    .as_deref()
                    .and_then(|t| crate::schema::parse_timestamp_ns(t.as_bytes()))
            });
        let stop = r
            .stopped_at
            .as_deref()
            .and_then(parse_iso8601)
            .map(|s| s * 1_000_000_000)
            .or_else(|| {
                r.last
                    .as_deref()
                    .and_then(|t| crate::schema::parse_timestamp_ns(t.as_bytes()))
            });
        if let (Some(a), Some(b)) = (start, stop) {
            by_machine
                .entry(&r.machine_id)
                .or_default()
                .push((a, b.max(a)));
        }
    }
    for (m, mut spans) in by_machine {
        spans.sort();
        let mut end = spans[0].1;
        for &(a, b) in &spans[1..] {
            // Gaps under a second are clock granularity, not holes.
            if a > end + 1_000_000_000 {
                out.push(GapOut {
                    kind: "between_runs",
                    machine_id: m.to_string(),
                    from: format_timestamp_ns(end),
                    to: format_timestamp_ns(a),
                    seconds: (a - end) as f64 / 1e9,
                });
            }
            end = end.max(b);
        }
    }
    out.sort_by(|a, b| (&a.machine_id, &a.from).cmp(&(&b.machine_id, &b.from)));
    out
}
