//! The text report: aligned tables for people. Numbers here are made
//! readable (units, separators); the JSON has the exact ones. With
//! `styled` (a terminal, and no NO_COLOR) titles are bold; otherwise the
//! text is plain.

use std::fmt::Write;

use super::format::{bytes, bytes_f, count, opt_rate, seconds};
use super::model::{CgroupOut, ContainerOut, Coverage, NetnsOut, Report, TableInfo};
use super::tables;

pub struct TextOptions {
    pub styled: bool,
    /// Rows per table.
    pub top: usize,
}

/// A table: first column left-aligned, the others right-aligned unless
/// listed in `left`.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    left: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: vec![],
            left: vec![0],
        }
    }

    /// Puts a left-aligned `machine` column first when `on`.
    pub fn machine_first(mut self, on: bool) -> Table {
        if on {
            self.header.insert(0, "machine".into());
            self.left = std::iter::once(0)
                .chain(self.left.iter().map(|i| i + 1))
                .collect();
        }
        self
    }

    pub fn left(mut self, cols: &[usize]) -> Table {
        self.left.extend_from_slice(cols);
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self, out: &mut String) {
        let n = self.header.len();
        let mut w = vec![0usize; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from("  ");
            for (i, c) in r.iter().enumerate().take(n) {
                let pad = w[i] - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if self.left.contains(&i) {
                    line.push_str(c);
                    if i + 1 < n {
                        line.push_str(&" ".repeat(pad));
                    }
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

pub(super) fn title(out: &mut String, o: &TextOptions, text: &str) {
    out.push('\n');
    if o.styled {
        let _ = writeln!(out, "\x1b[1m{text}\x1b[0m");
    } else {
        let _ = writeln!(out, "{text}");
        let _ = writeln!(out, "{}", "-".repeat(text.chars().count()));
    }
}

fn more(out: &mut String, listed: usize, info: Option<&TableInfo>, shown: usize) {
    if listed > shown {
        let _ = writeln!(out, "  ... {} more (see --format json)", listed - shown);
    }
    if let Some(i) = info.filter(|i| i.other_keys > 0) {
        let _ = writeln!(
            out,
            "  other (~{} keys past the memory bound): {} ops, {}",
            count(i.other_keys),
            count(i.other_ops),
            bytes(i.other_bytes)
        );
    }
    if let Some(i) = info.filter(|i| i.bounded) {
        let _ = if i.max_error_ops == 0 && i.max_error_bytes == 0 {
            writeln!(
                out,
                "  bounded table: the heaviest keys are kept, each listed row exact"
            )
        } else {
            writeln!(
                out,
                "  bounded table: the heaviest keys are kept; a listed row may count up to {} ops, {} too few",
                count(i.max_error_ops),
                bytes(i.max_error_bytes)
            )
        };
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// `N files deleted by retention (first .., last ..)`, or nothing:
/// `count` of them, `names` the ones the manifests name, oldest first.
fn deleted_line(n: u64, names: &[String]) -> Option<String> {
    match names {
        _ if n == 0 => None,
        [] => Some(format!("{} files deleted by retention", count(n))),
        [only] if n == 1 => Some(format!("1 file deleted by retention ({only})")),
        [first, .., last] => Some(format!(
            "{} files deleted by retention (first {first}, last {last})",
            count(n)
        )),
        [first] => Some(format!(
            "{} files deleted by retention (first {first})",
            count(n)
        )),
    }
}

/// `rows on disk: R of the M ...`, when the files on disk hold fewer rows
/// than the runs wrote (retention deleted some, or files are missing):
/// then the report covers only part of the runs, and says so first.
pub fn partial_line(c: &Coverage) -> Option<String> {
    if c.manifest_rows_read >= c.manifest_rows {
        return None;
    }
    Some(format!(
        "rows on disk: {} of the {} the runs' manifests count ({:.1} %); the rest was deleted by retention or is missing",
        count(c.manifest_rows_read),
        count(c.manifest_rows),
        c.manifest_rows_read as f64 * 100.0 / c.manifest_rows as f64
    ))
}

pub fn render(r: &Report, o: &TextOptions) -> String {
    let mut out = String::new();
    let multi = r.machines.len() > 1;
    let c = &r.coverage;
    let t = &r.totals;
    let _ = writeln!(
        out,
        "nwtrace report: {} machine(s), {} run(s), {} file(s), {} rows",
        c.machines,
        c.runs,
        c.files,
        count(c.rows)
    );
    if let Some(line) = partial_line(c) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "time: {} .. {} UTC ({})",
        opt(&c.first),
        opt(&c.last),
        match (c.first_ns, c.last_ns) {
            (Some(a), Some(b)) => seconds((b - a) as f64 / 1e9),
            _ => "-".into(),
        }
    );
    let f = &r.filters;
    let mut filters = Vec::new();
    if !f.pid.is_empty() {
        filters.push(format!("pid {:?}", f.pid));
    }
    if !f.comm.is_empty() {
        filters.push(format!("comm {:?}", f.comm));
    }
    if !f.port.is_empty() {
        filters.push(format!("port {:?}", f.port));
    }
    if let Some(p) = f.protocol {
        filters.push(format!("protocol {p}"));
    }
    if let Some(v) = f.ip_version {
        filters.push(format!("ip-version {v}"));
    }
    if let Some(d) = f.direction {
        filters.push(format!("direction {d}"));
    }
    if !f.exclude_comm.is_empty() {
        filters.push(format!("exclude-comm {:?}", f.exclude_comm));
    }
    if !f.cgroup.is_empty() {
        filters.push(format!("cgroup {:?}", f.cgroup));
    }
    if !f.container.is_empty() {
        filters.push(format!("container {:?}", f.container));
    }
    if !f.netns.is_empty() {
        filters.push(format!("netns {:?}", f.netns));
    }
    if !f.machine.is_empty() {
        filters.push(format!("machine {:?}", f.machine));
    }
    if let Some(s) = &f.since {
        filters.push(format!("since {s}"));
    }
    if let Some(u) = &f.until {
        filters.push(format!("until {u}"));
    }
    if !filters.is_empty() {
        let _ = writeln!(out, "filters: {}", filters.join(", "));
    }

    // 1. Coverage.
    title(&mut out, o, "Coverage");
    let _ = writeln!(
        out,
        "  events lost {}, probes missed {}, rows lost {}; unfinalised runs {}, runs without manifest {}",
        count(c.events_lost),
        count(c.probes_missed),
        count(c.rows_lost),
        c.unfinalized_runs,
        c.runs_without_manifest
    );
    if let Some(t) = &c.thinning {
        let _ = writeln!(out, "  sampled: {}", t.note);
    }
    let _ = writeln!(
        out,
        "  malformed rows {}, files missing a header {}, files cut mid-row {}, unreadable files {}",
        count(c.malformed_rows),
        c.files_missing_header,
        c.files_cut_mid_row,
        c.files_unreadable
    );
    // One line however many: a month of rotations deletes thousands of
    // files, and their names are in --format json.
    if let Some(line) = deleted_line(c.deleted_file_count, &c.deleted_files) {
        let _ = writeln!(out, "  {line}");
    }
    for d in &c.missing_files {
        let _ = writeln!(out, "  listed in a manifest but missing: {d}");
    }
    for g in &c.gaps {
        let _ = writeln!(
            out,
            "  {} on {}: {} .. {} ({})",
            if g.kind == "no_rows" {
                "no rows"
            } else {
                "gap between runs"
            },
            g.machine_id,
            g.from,
            g.to,
            seconds(g.seconds)
        );
    }
    for p in c.problems.iter().take(o.top) {
        let _ = writeln!(out, "  {}:{}: {}", p.file, p.line, p.message);
    }
    if c.problems_total > o.top.min(c.problems.len()) as u64 {
        let _ = writeln!(
            out,
            "  ... {} problems in all (see --format json)",
            count(c.problems_total)
        );
    }
    tables::runs().text(&r.runs, usize::MAX, &mut out);

    // 11. Machines.
    if r.machines.len() > 1 {
        title(&mut out, o, "Machines");
        tables::machines().text(&r.machines, usize::MAX, &mut out);
    }

    // 2. Overview.
    title(&mut out, o, "Overview");
    let _ = writeln!(
        out,
        "  {} ops ({} sends, {} receives), {} sent, {} received, {} errors ({} retry, {} hard)",
        count(t.ops),
        count(t.sends),
        count(t.receives),
        bytes(t.bytes_sent),
        bytes(t.bytes_received),
        count(t.errors),
        count(t.retry_errors),
        count(t.hard_errors)
    );
    let _ = writeln!(
        out,
        "  {} ops/s, {}/s over {}; {} end-of-stream receives, {} ops with unknown peer",
        opt_rate(t.ops_per_s),
        bytes_f(t.bytes_per_s.unwrap_or(0.0)),
        seconds(t.duration_s),
        count(t.end_of_stream),
        count(t.unknown_peer)
    );
    tables::overview().text(&r.overview, usize::MAX, &mut out);

    // 6. Latency.
    title(
        &mut out,
        o,
        "Latency (receives split: blocking may include waiting for data)",
    );
    tables::latency_classes().text(&r.latency, usize::MAX, &mut out);

    // 3. Processes.
    let sort = format!("{:?}", r.sort).to_lowercase();
    title(&mut out, o, &format!("Processes (by {sort})"));
    tables::processes(multi).text(&r.processes, o.top, &mut out);
    more(
        &mut out,
        r.processes.len(),
        r.tables.get("processes"),
        o.top,
    );

    title(&mut out, o, "Commands (processes rolled up by comm)");
    tables::commands().text(&r.commands, o.top, &mut out);
    more(&mut out, r.commands.len(), None, o.top);

    // 3b. The optional columns: containers, cgroups, network namespaces.
    if let Some(cs) = &r.containers {
        title(&mut out, o, &format!("Containers (by {sort})"));
        tables::groups::<ContainerOut>(multi).text(cs, o.top, &mut out);
        more(&mut out, cs.len(), r.tables.get("containers"), o.top);
        if let Some(a) = r
            .attribution
            .as_ref()
            .filter(|a| a.ops_without_container > 0)
        {
            let _ = writeln!(
                out,
                "  {} ops ({}) come from files without the Container ID column and are in no row",
                count(a.ops_without_container),
                bytes(a.bytes_without_container)
            );
        }
    }
    if let Some(cs) = &r.cgroups {
        title(&mut out, o, &format!("Cgroups (by {sort})"));
        tables::groups::<CgroupOut>(multi).text(cs, o.top, &mut out);
        more(&mut out, cs.len(), r.tables.get("cgroups"), o.top);
    }
    if let Some(ns) = &r.netns {
        title(&mut out, o, &format!("Network namespaces (by {sort})"));
        tables::groups::<NetnsOut>(multi).text(ns, o.top, &mut out);
        more(&mut out, ns.len(), r.tables.get("netns"), o.top);
    }

    // 4. Conversations.
    title(&mut out, o, &format!("Conversations (by {sort})"));
    let cookies = r.conversations.iter().any(|c| c.socket_cookie.is_some());
    tables::conversations(multi, cookies).text(&r.conversations, o.top, &mut out);
    if cookies {
        let _ = writeln!(
            out,
            "  keyed by socket cookie where recorded: one socket, one row; * = used by more than one process or peer (pid, comm, endpoints: its first op's)"
        );
    }
    more(
        &mut out,
        r.conversations.len(),
        r.tables.get("conversations"),
        o.top,
    );

    // 5. Remote endpoints and ports.
    title(&mut out, o, "Remote endpoints");
    tables::endpoints().text(&r.remote_endpoints, o.top, &mut out);
    more(
        &mut out,
        r.remote_endpoints.len(),
        r.tables.get("remote_endpoints"),
        o.top,
    );

    title(&mut out, o, "Ports");
    tables::ports().text(&r.ports, o.top, &mut out);
    more(&mut out, r.ports.len(), r.tables.get("ports"), o.top);

    // 7. Errors.
    title(
        &mut out,
        o,
        "Errors (retry: EAGAIN, EINTR, ERESTART*, ...; hard: the rest)",
    );
    tables::error_kinds().text(&r.error_kinds, usize::MAX, &mut out);
    if !r.errors.is_empty() {
        out.push('\n');
        tables::errors(multi).text(&r.errors, o.top, &mut out);
        more(&mut out, r.errors.len(), r.tables.get("errors"), o.top);
    }

    // 8. Flags and sizes.
    title(&mut out, o, "MSG flags");
    let mf = &r.msg_flags;
    let _ = writeln!(
        out,
        "  without flags (write/read/io_uring or none): {} sends, {} receives",
        count(mf.no_flags_send),
        count(mf.no_flags_receive)
    );
    tables::flag_combinations().text(&mf.combinations, o.top, &mut out);
    out.push('\n');
    tables::flags().text(&mf.flags, usize::MAX, &mut out);

    title(&mut out, o, "Sizes (bytes per op)");
    histogram(
        &mut out,
        r.sizes.iter().map(|s| {
            (
                format!("{:>7} {}", s.direction, size_range(s.low, s.high)),
                s.count,
            )
        }),
    );

    // 9. Over time.
    title(
        &mut out,
        o,
        &format!("Over time ({} s buckets)", r.series.bucket_seconds),
    );
    let pts = &r.series.points;
    let step = pts.len().div_ceil(o.top.max(1) * 2).max(1);
    let mut tb = Table::new(&[
        "time",
        "sends/s",
        "receives/s",
        "sent/s",
        "received/s",
        "retry err",
        "hard err",
    ]);
    let w = r.series.bucket_seconds.max(1) as f64;
    for chunk in pts.chunks(step) {
        let sum = |f: fn(&super::model::PointOut) -> u64| chunk.iter().map(f).sum::<u64>();
        let span = w * chunk.len() as f64;
        tb.row(vec![
            chunk[0].t.clone(),
            opt_rate(Some(sum(|p| p.sends) as f64 / span)),
            opt_rate(Some(sum(|p| p.receives) as f64 / span)),
            bytes((sum(|p| p.bytes_sent) as f64 / span) as u64),
            bytes((sum(|p| p.bytes_received) as f64 / span) as u64),
            count(sum(|p| p.retry_errors)),
            count(sum(|p| p.hard_errors)),
        ]);
    }
    tb.render(&mut out);

    // 10. Exemplars.
    title(&mut out, o, "Slowest operations");
    tables::exemplars().text(&r.exemplars.slowest, o.top, &mut out);
    title(&mut out, o, "Largest operations");
    tables::exemplars().text(&r.exemplars.largest, o.top, &mut out);

    // 11. Across machines, and the network's side (docs/join.md).
    super::join_text::render(&mut out, r, o);

    // 12. Compare.
    if let Some(b) = &r.baseline {
        title(
            &mut out,
            o,
            &format!("Against the baseline {}", b.inputs.join(" ")),
        );
        let mut tb = Table::new(&["metric", "baseline", "now", "delta", "%"]);
        for m in &b.totals {
            tb.row(vec![
                m.metric.into(),
                format!("{}", m.d.baseline),
                format!("{}", m.d.current),
                format!("{:+}", m.d.delta),
                pct(&m.d),
            ]);
        }
        tb.render(&mut out);
        for (name, rows) in [
            ("commands", &b.commands),
            ("conversations", &b.conversations),
            ("remote endpoints", &b.remote_endpoints),
            ("ports", &b.ports),
            ("errors", &b.errors),
        ] {
            let _ = writeln!(out, "\n  {name}:");
            let mut tb = Table::new(&[
                "key", "", "bytes", "%", "ops", "%", "p99", "%", "errors", "%",
            ])
            .left(&[1]);
            for d in rows.iter().take(o.top) {
                tb.row(vec![
                    d.key.clone(),
                    d.presence.into(),
                    format!("{:+}", d.bytes.delta),
                    pct(&d.bytes),
                    format!("{:+}", d.ops.delta),
                    pct(&d.ops),
                    d.p99_ns
                        .as_ref()
                        .map_or("-".into(), |p| format!("{:+}", p.delta)),
                    d.p99_ns.as_ref().map_or("-".into(), pct),
                    format!("{:+}", d.errors.delta),
                    pct(&d.errors),
                ]);
            }
            tb.render(&mut out);
            more(&mut out, rows.len(), None, o.top);
        }
    }
    out
}

/// The change in percent; "new" from a baseline of 0, "-" for 0 to 0.
fn pct(d: &super::compare::Delta) -> String {
    match d.pct {
        Some(p) => format!("{p:+.1}%"),
        None if d.current == 0.0 => "-".into(),
        None => "new".into(),
    }
}

fn size_range(low: u64, high: u64) -> String {
    if low == high {
        format!("{low}")
    } else {
        format!("{low}-{high}")
    }
}

/// The log2 histogram people know from bcc: label, count, bar.
pub fn histogram(out: &mut String, rows: impl Iterator<Item = (String, u64)>) {
    let rows: Vec<(String, u64)> = rows.collect();
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let lw = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let cw = rows.iter().map(|r| count(r.1).len()).max().unwrap_or(0);
    for (label, n) in rows {
        let bar = ((n as f64 / max as f64) * 40.0).ceil() as usize;
        let _ = writeln!(
            out,
            "  {label:<lw$}  {:>cw$} |{}",
            count(n),
            "*".repeat(bar)
        );
    }
}
