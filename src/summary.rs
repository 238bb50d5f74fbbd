//! Run summaries: `nw/summary.json` beside `manifest.json` (and
//! `summary_N.json` beside `manifest_N.json`). A summary is the run's
//! [`Aggregate`] (the same one `report` builds from the rows), stored with
//! every key it tracked, plus per file what `report` needs to say about
//! it (rows, bytes, time span, gaps) — enough for `report` to merge
//! summaries instead of rereading the CSV, and to prove first that a
//! summary matches the files on disk.
//!
//! `record` builds one while it writes ([`SummaryBuilder`], fed by the CSV
//! consumer so that it knows which file each row went to); `nwtrace
//! summarize` builds one from the files ([`from_files`]).

use std::collections::VecDeque;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::analysis::persist::AggregateDoc;
use crate::analysis::{Aggregate, AggregateConfig, Op, Source, Totals};
use crate::capture::event::NetEvent;
use crate::input::scan::{FileResult, QUIET_NS, aggregate_file};
use crate::input::{Discovery, FileStats as ReadStats};
use crate::output::dir::SafeDir;
use crate::output::sink::{CsvSink, FileStats};
use crate::timefmt::WallClock;

pub const SCHEMA_VERSION: u32 = 1;
/// Gaps kept per file, as `report`'s pass keeps them.
const MAX_QUIET_KEPT: usize = 20;

/// The bounds a summary's tables are built with: far above `report`'s,
/// so that a summary stays exact (nothing evicted) for all but the
/// widest runs. A summary that did evict is written with `"exact":
/// false`, and `report` reads that run's CSV instead.
pub fn summary_config() -> AggregateConfig {
    AggregateConfig {
        max_processes: 16_384,
        max_conversations: 65_536,
        max_remotes: 65_536,
        max_ports: 65_536,
        max_errors: 16_384,
        max_flag_combos: 4_096,
        ..AggregateConfig::default()
    }
}

/// `manifest.json` -> `summary.json`, `manifest_2.json` -> `summary_2.json`.
pub fn summary_name(manifest_name: &str) -> Option<String> {
    manifest_name
        .strip_prefix("manifest")
        .filter(|rest| rest.ends_with(".json"))
        .map(|rest| format!("summary{rest}"))
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SummaryFile {
    pub name: String,
    pub rows: u64,
    /// On disk (compressed bytes for `.csv.gz` / `.csv.zst`), header
    /// included: the manifest's figure.
    pub bytes: u64,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub totals: Totals,
    /// Stretches of a minute or more without a row inside the file.
    pub quiet: Vec<(i64, i64)>,
}

/// Why a summary of a run with attribution columns is not used: report
/// reads that run's CSV, so its per-container, cgroup, netns and cookie
/// views are never lost.
const VIEWS_NOT_STORED: &str = "the run has attribution columns (containers, cgroups, netns or \
                                socket cookies), which summaries do not store yet";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SummaryDoc {
    pub schema_version: u32,
    pub nwtrace_version: String,
    /// `record` or `summarize`.
    pub made_by: String,
    pub machine_id: String,
    pub manifest: String,
    pub rows: u64,
    /// The run's time span: first and last row (UTC, microseconds).
    pub first: Option<String>,
    pub last: Option<String>,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub files: Vec<SummaryFile>,
    /// No table evicted a key: merging gives exactly what one pass gives.
    pub exact: bool,
    pub inexact_reason: Option<String>,
    pub aggregate: AggregateDoc,
}

impl SummaryDoc {
    fn new(
        made_by: &str,
        machine_id: &str,
        manifest: &str,
        mut agg: Aggregate,
        files: Vec<SummaryFile>,
        file_name: impl Fn(u32) -> String,
    ) -> SummaryDoc {
        agg.finish();
        let inexact_reason = agg.inexact().or_else(|| {
            // The per-container, cgroup and netns tables and the
            // conversations by socket cookie are not in the stored form
            // yet: such a summary is written, marked, and report reads
            // the run's CSV instead, so those views are never lost.
            let has_attr = !agg.containers.is_empty()
                || !agg.cgroups.is_empty()
                || !agg.netns.is_empty()
                || agg.conversations.iter().any(|(k, _)| k.cookie.is_some());
            has_attr.then(|| VIEWS_NOT_STORED.to_string())
        });
        let t = &agg.totals;
        let fmt = |v: Option<i64>| v.map(crate::schema::format_timestamp_ns);
        SummaryDoc {
            schema_version: SCHEMA_VERSION,
            nwtrace_version: env!("CARGO_PKG_VERSION").to_string(),
            made_by: made_by.to_string(),
            machine_id: machine_id.to_string(),
            manifest: manifest.to_string(),
            rows: files.iter().map(|f| f.rows).sum(),
            first: fmt(t.first_ns),
            last: fmt(t.last_ns),
            first_ns: t.first_ns,
            last_ns: t.last_ns,
            files,
            exact: inexact_reason.is_none(),
            inexact_reason,
            aggregate: AggregateDoc::store(&agg, file_name),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a summary serialises");
        v.push(b'\n');
        v
    }
}

/// Writes `name` in `dir` atomically: a temporary file, synced, renamed
/// over the old one. Names are resolved through the folder's descriptor,
/// never through a symlink.
pub fn write_atomically(dir: &SafeDir, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = format!(".{name}.{}.tmp", std::process::id());
    let _ = dir.unlink(&tmp);
    let mut file = dir
        .create_file_exclusive(&tmp)
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::AlreadyExists))?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_data()) {
        let _ = dir.unlink(&tmp);
        return Err(e);
    }
    dir.rename(&tmp, name)
}

/// One file's figures as `report`'s pass gathers them.
#[derive(Default)]
struct FileAcc {
    res: FileResult,
}

impl FileAcc {
    fn add(&mut self, op: &Op) {
        let res = &mut self.res;
        if let Some(last) = res.last_ns
            && op.ts_ns - last >= QUIET_NS
            && res.quiet.len() < MAX_QUIET_KEPT
        {
            res.quiet.push((last, op.ts_ns));
        }
        res.first_ns = Some(res.first_ns.map_or(op.ts_ns, |f| f.min(op.ts_ns)));
        res.last_ns = Some(res.last_ns.map_or(op.ts_ns, |l| l.max(op.ts_ns)));
        res.totals.add(op);
    }
}

/// The summary `record` builds as it writes. Each op goes into the
/// aggregate at once (its exemplar source is its sequence number, turned
/// into file and line at the end); its per-file figures wait until the
/// sink says which file the row landed in (a compressed file rotates
/// when its buffer is flushed, after the row was taken).
pub struct SummaryBuilder {
    agg: Aggregate,
    seq: u64,
    pending: VecDeque<Op>,
    files: Vec<FileAcc>,
    /// The file the next placed row goes to, and its rows placed so far.
    cursor: (usize, u64),
    /// The rows carry columns whose views (containers, cgroups, netns,
    /// cookie conversations) summaries do not store yet.
    views_not_stored: bool,
}

impl SummaryBuilder {
    /// A builder for rows with these optional columns.
    pub fn for_columns(columns: crate::attribution::columns::Columns) -> Self {
        use crate::attribution::columns::Column;
        SummaryBuilder {
            views_not_stored: [
                Column::Cgroup,
                Column::Container,
                Column::Netns,
                Column::Cookie,
            ]
            .into_iter()
            .any(|c| columns.contains(c)),
            ..SummaryBuilder::default()
        }
    }
}

impl Default for SummaryBuilder {
    fn default() -> Self {
        SummaryBuilder {
            agg: Aggregate::new(summary_config()),
            seq: 0,
            pending: VecDeque::new(),
            files: Vec::new(),
            cursor: (0, 0),
            views_not_stored: false,
        }
    }
}

impl SummaryBuilder {
    /// One event the CSV consumer has just handed to `sink`.
    #[inline]
    pub fn add(&mut self, ev: &NetEvent, clock: &WallClock, sink: &CsvSink) {
        let mut op = Op::from_event(ev, *clock);
        // The row keeps microseconds.
        op.ts_ns = op.ts_ns.div_euclid(1000) * 1000;
        self.agg.add(
            &op,
            Source {
                file: 0,
                line: self.seq,
            },
        );
        self.seq += 1;
        self.pending.push_back(op);
        self.place(sink.files());
    }

    /// Moves the rows the sink has written into their files' figures.
    pub fn place(&mut self, files: &[FileStats]) {
        while !self.pending.is_empty() {
            let (i, done) = self.cursor;
            let Some(f) = files.get(i) else { return };
            if done < f.rows {
                let op = self.pending.pop_front().expect("not empty");
                if self.files.len() <= i {
                    self.files.resize_with(i + 1, FileAcc::default);
                }
                self.files[i].add(&op);
                self.cursor.1 += 1;
            } else if i + 1 < files.len() {
                self.cursor = (i + 1, 0);
            } else {
                return;
            }
        }
    }

    /// The summary, once the sink is flushed for good; `Err` says why
    /// there is none (rows were lost, so it would not match the files).
    pub fn build(
        mut self,
        files: &[FileStats],
        rows_lost: u64,
        machine_id: &str,
        manifest: &str,
    ) -> Result<SummaryDoc, String> {
        self.place(files);
        let written: u64 = files.iter().map(|f| f.rows).sum();
        if rows_lost > 0 || !self.pending.is_empty() || written != self.seq {
            return Err(format!(
                "{} rows captured, {written} written, {rows_lost} lost: it would not match the files",
                self.seq
            ));
        }
        // Sequence numbers to (file, line): line 1 is the header.
        let mut starts = Vec::with_capacity(files.len());
        let mut at = 0;
        for f in files {
            starts.push(at);
            at += f.rows;
        }
        let locate = |seq: u64| {
            let i = starts.partition_point(|&s| s <= seq).saturating_sub(1);
            Source {
                file: i as u32,
                line: seq - starts[i] + 2,
            }
        };
        self.agg.slowest.remap(|e| e.source = locate(e.source.line));
        self.agg.largest.remap(|e| e.source = locate(e.source.line));
        self.files.resize_with(files.len(), FileAcc::default);
        let out: Vec<SummaryFile> = files
            .iter()
            .zip(self.files)
            .map(|(f, acc)| SummaryFile {
                name: f.name.clone(),
                rows: f.rows,
                bytes: f.bytes,
                first_ns: acc.res.first_ns,
                last_ns: acc.res.last_ns,
                totals: acc.res.totals,
                quiet: acc.res.quiet,
            })
            .collect();
        let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
        let mut doc = SummaryDoc::new("record", machine_id, manifest, self.agg, out, |i| {
            names.get(i as usize).cloned().unwrap_or_default()
        });
        if self.views_not_stored && doc.exact {
            doc.exact = false;
            doc.inexact_reason = Some(VIEWS_NOT_STORED.to_string());
        }
        Ok(doc)
    }
}

/// Why a file cannot be summarised, with its line when there is one.
fn damage(path: &std::path::Path, s: &ReadStats) -> Option<String> {
    let at = |line: u64| format!("{}:{line}", path.display());
    if let Some(e) = &s.read_error {
        return Some(format!("{}: cannot read: {e}", path.display()));
    }
    if let Some(p) = s.problems.first() {
        return Some(format!("{}: damaged CSV: {}", at(p.line), p.message));
    }
    if s.missing_header {
        return Some(format!("{}: damaged CSV: no header", at(1)));
    }
    if s.cut_mid_row {
        return Some(format!(
            "{}: damaged CSV: the file ends inside a row",
            at(s.rows + 2)
        ));
    }
    if s.malformed > 0 {
        return Some(format!(
            "{}: damaged CSV: {} malformed rows",
            path.display(),
            s.malformed
        ));
    }
    None
}

/// The summary of run `run` of `d`, from its files on disk. `Err` names
/// the first file (and line) that is unreadable or damaged.
pub fn from_files(d: &Discovery, run: usize) -> Result<SummaryDoc, String> {
    let r = &d.runs[run];
    let manifest = r
        .manifest_name
        .clone()
        .ok_or_else(|| format!("{}: no manifest to tie a summary to", r.nw_dir.display()))?;
    let mut agg = Aggregate::new(summary_config());
    let mut files = Vec::new();
    let mut names = Vec::new();
    for df in d.files.iter().filter(|f| f.run == run) {
        let mut local = df.clone();
        local.machine = 0;
        let idx = names.len() as u32;
        let res = aggregate_file(&local, idx, &crate::analysis::Filter::default(), &mut agg);
        if let Some(why) = damage(&df.path, &res.stats) {
            return Err(why);
        }
        names.push(df.name.clone());
        files.push(SummaryFile {
            name: df.name.clone(),
            rows: res.stats.rows,
            bytes: res.stats.bytes,
            first_ns: res.first_ns,
            last_ns: res.last_ns,
            totals: res.totals,
            quiet: res.quiet,
        });
    }
    Ok(SummaryDoc::new(
        "summarize",
        &r.machine_id,
        &manifest,
        agg,
        files,
        |i| names.get(i as usize).cloned().unwrap_or_default(),
    ))
}

/// A run's summary, read and checked against its files and manifest.
pub struct Loaded {
    pub aggregate: Aggregate,
    /// (index into `Discovery::files`, what report's pass would have
    /// gathered from it).
    pub files: Vec<(usize, FileResult)>,
}

/// Reads run `run`'s summary and proves it matches: the same files on
/// disk with the same bytes, the manifest's rows and bytes when the
/// manifest is final, rows adding up, and an exact aggregate. `Err` is
/// the reason to read the CSV instead, in a few words.
pub fn load(d: &Discovery, run: usize, config: AggregateConfig) -> Result<Loaded, String> {
    let r = &d.runs[run];
    let manifest_name = r.manifest_name.as_deref().ok_or("no manifest")?;
    let name = summary_name(manifest_name).ok_or("no summary name for its manifest")?;
    let path = r.nw_dir.join(&name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("no {name}")),
        Err(e) => return Err(format!("{name}: {e}")),
    };
    if !meta.is_file() {
        return Err(format!("{name} is not a regular file"));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{name}: {e}"))?;
    let doc: SummaryDoc = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{name} is not a summary this nwtrace reads ({e})"))?;
    check(d, run, &doc, &name)?;
    let ours: Vec<usize> = (0..d.files.len())
        .filter(|&i| d.files[i].run == run)
        .collect();
    let machine = ours.first().map_or(0, |&i| d.files[i].machine);
    let index = |file: &str| {
        ours.iter()
            .find(|&&i| d.files[i].name == file)
            .map(|&i| i as u32)
    };
    let aggregate = doc
        .aggregate
        .load(machine, config, index)
        .map_err(|e| format!("{name}: {e}"))?;
    let files = doc
        .files
        .iter()
        .map(|f| {
            let i = ours
                .iter()
                .copied()
                .find(|&i| d.files[i].name == f.name)
                .expect("checked");
            let res = FileResult {
                stats: ReadStats {
                    rows: f.rows,
                    bytes: f.bytes,
                    ..ReadStats::default()
                },
                totals: f.totals.clone(),
                first_ns: f.first_ns,
                last_ns: f.last_ns,
                quiet: f.quiet.clone(),
            };
            (i, res)
        })
        .collect();
    Ok(Loaded { aggregate, files })
}

/// The proof that `doc` stands for run `run`'s files; `Err` says what
/// differs.
pub fn check(d: &Discovery, run: usize, doc: &SummaryDoc, name: &str) -> Result<(), String> {
    let r = &d.runs[run];
    if doc.schema_version != SCHEMA_VERSION {
        return Err(format!(
            "{name} has schema_version {}, this nwtrace reads {SCHEMA_VERSION}",
            doc.schema_version
        ));
    }
    if !doc.exact {
        return Err(format!(
            "{name} is not exact: {}",
            doc.inexact_reason
                .as_deref()
                .unwrap_or("a table overflowed")
        ));
    }
    let on_disk: Vec<&crate::input::DataFile> = d.files.iter().filter(|f| f.run == run).collect();
    for f in &doc.files {
        let Some(df) = on_disk.iter().find(|df| df.name == f.name) else {
            return Err(format!("{name} lists {}, which is not on disk", f.name));
        };
        let len = std::fs::symlink_metadata(&df.path).map_or(0, |m| m.len());
        if len != f.bytes {
            return Err(format!(
                "{} has {len} bytes on disk, {name} says {}",
                f.name, f.bytes
            ));
        }
    }
    for df in &on_disk {
        if !doc.files.iter().any(|f| f.name == df.name) {
            return Err(format!("{} is on disk but not in {name}", df.name));
        }
    }
    if let Some(m) = r.manifest.as_ref().filter(|m| m.finalized) {
        for mf in m.files.iter().filter(|f| !f.deleted) {
            match doc.files.iter().find(|f| f.name == mf.name) {
                Some(f) if f.rows == mf.rows && f.bytes == mf.bytes => {}
                Some(f) => {
                    return Err(format!(
                        "{}: the manifest says {} rows and {} bytes, {name} {} and {}",
                        mf.name, mf.rows, mf.bytes, f.rows, f.bytes
                    ));
                }
                None => return Err(format!("{name} does not list {}", mf.name)),
            }
        }
    }
    let rows: u64 = doc.files.iter().map(|f| f.rows).sum();
    if rows != doc.aggregate.totals.ops || rows != doc.rows {
        return Err(format!(
            "{name}'s files hold {rows} rows, its totals {}",
            doc.aggregate.totals.ops
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::tests::{bytes, raw_event};
    use crate::output::consumer::Consumer;
    use crate::output::csv::CsvConsumer;
    use crate::output::layout::create_run_dir;
    use crate::output::sink::{Compression, Retention};

    #[test]
    fn names_follow_the_manifest() {
        assert_eq!(summary_name("manifest.json").unwrap(), "summary.json");
        assert_eq!(summary_name("manifest_2.json").unwrap(), "summary_2.json");
        assert_eq!(summary_name("other.json"), None);
    }

    /// What `record` builds while it writes equals what `summarize`
    /// builds from the files afterwards: rotated plain and compressed
    /// files (whose rows are placed when a frame is flushed), quiet gaps,
    /// exemplars by file and line.
    #[test]
    fn built_while_writing_equals_built_from_the_files() {
        for compression in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let out = std::env::temp_dir().join(format!(
                "nwtrace-summary-{compression:?}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&out);
            let run = create_run_dir(&out, "m1", "t1").unwrap();
            let sink =
                CsvSink::create_with(run, 8 * 1024, Retention::default(), compression).unwrap();
            let mut csv = CsvConsumer::new(sink);
            csv.enable_summary();
            let clock = WallClock::with_offset(1_795_669_694_000_000_000);
            let mut t = 1_000u64;
            for i in 0..3000u64 {
                let mut raw = raw_event();
                raw.pid = 100 + (i % 4) as u32;
                raw.local_port = 40000 + (i % 5) as u16;
                raw.peer_port = 8000 + (i % 7) as u16;
                raw.direction = (i % 2) as u8;
                raw.ret = if i % 13 == 0 {
                    -104
                } else {
                    (i * 37 % 5000) as i32
                };
                // A quiet minute now and then, some inside a file.
                t += if i % 997 == 500 {
                    61_000_000_000
                } else {
                    1_000 + i * 17 % 9000
                };
                raw.start_ns = t;
                raw.end_ns = t + i * 101 % 1_000_000;
                let ev = crate::capture::event::NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
                assert!(csv.on_event(&ev, &clock).is_continue());
            }
            assert!(csv.finish().is_continue());
            let builder = csv.take_summary().unwrap();
            let sink = csv.sink();
            assert!(sink.files().len() > 2, "{compression:?} rotated");
            let live = builder
                .build(sink.files(), sink.rows_lost(), "m1", "manifest.json")
                .unwrap();
            // The folder as report finds it, with a manifest.
            let nw = sink.dir().to_path_buf();
            let manifest = serde_json::json!({ "finalized": true, "files": sink.files() });
            std::fs::write(nw.join("manifest.json"), manifest.to_string()).unwrap();
            let d = crate::input::discover(std::slice::from_ref(&out)).unwrap();
            let from_files = from_files(&d, 0).unwrap();
            assert_eq!(live.made_by, "record");
            assert_eq!(from_files.made_by, "summarize");
            assert_eq!(live.files, from_files.files, "{compression:?}");
            assert!(live.files.iter().any(|f| !f.quiet.is_empty()));
            assert_eq!(live.aggregate, from_files.aggregate, "{compression:?}");
            assert!(live.exact);
            check(&d, 0, &live, "summary.json").unwrap();
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}

/// What the summary costs the tracer: events per second through the CSV
/// consumer alone, and with the summary built beside it. In the unit
/// tests it runs small (and checks the summary of a varied stream is
/// exact and counts every row); for the figures in the README, run it big
/// in release:
/// `NWTRACE_COST_EVENTS=2000000 cargo test --release --lib summary_cost -- --nocapture`.
#[cfg(test)]
mod cost {
    use super::*;
    use crate::capture::event::NetEvent;
    use crate::capture::event::tests::{bytes, raw_event};
    use crate::output::consumer::Consumer;
    use crate::output::csv::CsvConsumer;
    use crate::output::layout::create_run_dir;
    use crate::output::sink::Retention;
    use std::time::Instant;

    fn events(n: u64) -> Vec<NetEvent> {
        (0..n)
            .map(|i| {
                let mut raw = raw_event();
                // 50 processes, 1,000 conversations, both directions.
                raw.pid = 1000 + (i % 50) as u32;
                raw.local_port = 40000 + (i % 20) as u16;
                raw.peer_port = 8000 + (i * 7 % 50) as u16;
                raw.direction = (i % 2) as u8;
                raw.ret = (i * 37 % 9000) as i32;
                raw.start_ns = 1_000 + i * 2_000;
                raw.end_ns = raw.start_ns + i * 101 % 1_000_000;
                NetEvent::try_from(bytes(&raw).as_slice()).unwrap()
            })
            .collect()
    }

    fn run(with_summary: bool, evs: &[NetEvent]) -> f64 {
        let out = std::env::temp_dir().join(format!(
            "nwtrace-cost-{with_summary}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&out);
        let dir = create_run_dir(&out, "m", "t").unwrap();
        let sink = CsvSink::create(dir, 1 << 30, Retention::default()).unwrap();
        let mut csv = CsvConsumer::new(sink);
        if with_summary {
            csv.enable_summary();
        }
        let clock = WallClock::with_offset(1_795_669_694_000_000_000);
        let t = Instant::now();
        for ev in evs {
            let _ = csv.on_event(ev, &clock);
        }
        let _ = csv.finish();
        if let Some(b) = csv.take_summary() {
            let s = csv.sink();
            let doc = b
                .build(s.files(), s.rows_lost(), "m", "manifest.json")
                .unwrap();
            assert!(doc.exact);
            assert_eq!(doc.rows, evs.len() as u64);
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&out);
        evs.len() as f64 / secs
    }

    #[test]
    fn summary_cost() {
        let n = std::env::var("NWTRACE_COST_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let evs = events(n);
        for _ in 0..2 {
            let plain = run(false, &evs);
            let with = run(true, &evs);
            println!(
                "csv alone: {:.0} events/s; csv + summary: {:.0} events/s; summary alone ~{:.0} events/s ({:.0} ns/event)",
                plain,
                with,
                1.0 / (1.0 / with - 1.0 / plain),
                (1.0 / with - 1.0 / plain) * 1e9
            );
        }
    }
}
