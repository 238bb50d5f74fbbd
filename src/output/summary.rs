//! Run summaries: `nw/summary.json` beside `manifest.json` (and
//! `summary_N.json` beside `manifest_N.json`). A summary is the run's
//! [`Aggregate`] (the same one `report` builds from the rows), stored with
//! every key it tracked, plus per file what `report` needs to say about
//! it (rows, bytes, time span, gaps) — enough for `report` to merge
//! summaries instead of rereading the CSV, and to prove first that a
//! summary matches the files on disk.
//!
//! `record` builds one while it writes: the CSV consumer hands each row's
//! event, in batches, to a [`SummaryThread`] (with the sink's row count per
//! file, so that it knows which file each row went to), which feeds a
//! [`SummaryBuilder`] off the thread that drains the ring buffer. `nwtrace
//! summarize` builds one from the files ([`from_files`]).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analysis::persist::AggregateDoc;
use crate::analysis::{Aggregate, AggregateConfig, Op, Source, Totals, TotalsOp};
use crate::capture::event::NetEvent;
use crate::input::scan::{FileResult, QUIET_NS, aggregate_file};
use crate::input::{Discovery, FileStats as ReadStats};
use crate::output::dir::SafeDir;
use crate::output::sink::{CsvSink, WrittenFile};

use crate::schema::Comm;
use crate::timefmt::WallClock;

/// 2: bounded tables (their "other" rows, evictions and per-key error
/// bounds) are stored, and such a summary is used. 1 is still read (an
/// exact one only).
pub const SCHEMA_VERSION: u32 = 2;
/// Gaps kept per file, as `report`'s pass keeps them.
const MAX_QUIET_KEPT: usize = 20;

/// The bounds a summary's tables are built with, so that `summary.json`
/// stays a few MB and the recorder's memory flat whatever the number of
/// conversations (issue #23): past a bound a table keeps its heaviest
/// keys, each with its error bound, and an exact "other" row (see
/// `analysis::capped`); totals, sizes, flags, latency and the time
/// series are exact whatever happens. A run within these bounds has an
/// exact summary (`"exact": true`); one past them a bounded one, which
/// `report` uses and says so.
pub fn summary_config() -> AggregateConfig {
    AggregateConfig {
        max_processes: 2_048,
        max_conversations: 2_048,
        max_remotes: 2_048,
        max_ports: 2_048,
        max_errors: 1_024,
        max_flag_combos: 1_024,
        // Each stored as an endpoint string per process.
        max_peers_per_process: 64,
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
    /// The tables that evicted keys (version 2): they list their heaviest
    /// keys with error bounds and an exact "other" row.
    #[serde(default)]
    pub bounded: Vec<String>,
    /// The run has attribution columns whose views summaries do not store:
    /// `report` reads its CSV.
    #[serde(default)]
    pub views_not_stored: bool,
    pub aggregate: AggregateDoc,
    /// What `--sample` and `--rate-limit` left out (output::unwritten):
    /// `aggregate` is the written rows alone, so that it stays provable
    /// against the files; a reader adds this part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwritten: Option<crate::output::unwritten::UnwrittenDoc>,
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
        let bounded = agg.bounded_tables();
        // The per-container, cgroup and netns tables and the
        // conversations by socket cookie are not in the stored form yet:
        // such a summary is written, marked, and report reads the run's
        // CSV instead, so those views are never lost.
        let views_not_stored = !agg.containers.is_empty()
            || !agg.cgroups.is_empty()
            || !agg.netns.is_empty()
            || agg.conversations.iter().any(|(k, _)| k.cookie.is_some());
        let inexact_reason = if views_not_stored {
            Some(VIEWS_NOT_STORED.to_string())
        } else {
            agg.inexact()
        };
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
            bounded,
            views_not_stored,
            aggregate: AggregateDoc::store(&agg, file_name),
            unwritten: None,
        }
    }

    /// Why `report` cannot use this summary even if it matches its files,
    /// or `None`: an exact one, or a bounded one of version 2 (whose
    /// bounded tables say so in the report).
    pub fn unusable(&self) -> Option<&str> {
        let why = || {
            self.inexact_reason
                .as_deref()
                .unwrap_or("a table overflowed")
        };
        if self.views_not_stored || (!self.exact && self.schema_version < 2) {
            Some(why())
        } else {
            None
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
    fn add(&mut self, op: &TotalsOp) {
        let res = &mut self.res;
        if let Some(last) = res.last_ns
            && op.ts_ns - last >= QUIET_NS
            && res.quiet.len() < MAX_QUIET_KEPT
        {
            res.quiet.push((last, op.ts_ns));
        }
        res.first_ns = Some(res.first_ns.map_or(op.ts_ns, |f| f.min(op.ts_ns)));
        res.last_ns = Some(res.last_ns.map_or(op.ts_ns, |l| l.max(op.ts_ns)));
        res.totals.add_totals_op(op);
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
    pending: VecDeque<TotalsOp>,
    files: Vec<FileAcc>,
    /// The file the next placed row goes to, and its rows placed so far.
    cursor: (usize, u64),
    /// The rows carry columns whose views (containers, cgroups, netns,
    /// cookie conversations) summaries do not store yet.
    views_not_stored: bool,
    /// Rows written that never reached the builder (its thread fell
    /// behind): there is no summary then.
    not_summarised: u64,
    /// CPU time the summary thread used, in ns (for measurements).
    pub thread_cpu_ns: u64,
    /// The last raw comm and its text: a thread's rows repeat it, and
    /// escaping it anew was a few percent of the recorder's CPU.
    last_comm: Option<(Vec<u8>, Comm)>,
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
            not_summarised: 0,
            thread_cpu_ns: 0,
            last_comm: None,
        }
    }
}

impl SummaryBuilder {
    /// One event the CSV consumer has written as a row (the next in
    /// sequence). Which file it went to is learned later, from
    /// [`SummaryBuilder::place`].
    #[inline]
    pub fn add(&mut self, ev: &NetEvent, clock: &WallClock) {
        let comm = match &self.last_comm {
            Some((raw, comm)) if raw.as_slice() == ev.comm() => *comm,
            _ => {
                let comm = Comm::from_raw(ev.comm());
                self.last_comm = Some((ev.comm().to_vec(), comm));
                comm
            }
        };
        let mut op = Op::from_event_with_comm(ev, *clock, comm);
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
        self.pending.push_back(TotalsOp::of(&op));
    }

    /// Moves the rows the sink has written into their files' figures:
    /// `rows[i]` is how many rows file `i` holds so far (the sink's
    /// `files()[i].rows`; a file's count only grows, and only the last
    /// file's).
    pub fn place(&mut self, rows: &[u64]) {
        while !self.pending.is_empty() {
            let (i, done) = self.cursor;
            let Some(&f_rows) = rows.get(i) else { return };
            if done < f_rows {
                let op = self.pending.pop_front().expect("not empty");
                if self.files.len() <= i {
                    self.files.resize_with(i + 1, FileAcc::default);
                }
                self.files[i].add(&op);
                self.cursor.1 += 1;
            } else if i + 1 < rows.len() {
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
        files: &[WrittenFile],
        rows_lost: u64,
        machine_id: &str,
        manifest: &str,
    ) -> Result<SummaryDoc, String> {
        if self.not_summarised > 0 {
            return Err(format!(
                "the summary thread fell behind the capture and {} rows were not summarised",
                self.not_summarised
            ));
        }
        let rows: Vec<u64> = files.iter().map(|f| f.rows).collect();
        self.place(&rows);
        let written: u64 = rows.iter().sum();
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
        if self.views_not_stored && !doc.views_not_stored {
            doc.exact = false;
            doc.views_not_stored = true;
            doc.inexact_reason = Some(VIEWS_NOT_STORED.to_string());
        }
        Ok(doc)
    }
}

/// Events per batch handed to the summary thread: one channel message
/// (and one wakeup of that thread, which shares the capture's CPU when
/// the tracer is pinned) per this many rows. 1024 made the wakeups and
/// context switches about 6 % of the recorder's CPU (issue #20); 4096
/// kept four batches of 800 KiB resident (a NetEvent is about 200 bytes).
const BATCH: usize = 2048;
/// How long a batch that is not full waits for more rows.
const BATCH_AGE: Duration = Duration::from_millis(100);
/// Batches the channel holds before a send waits: with [`BATCH`] about
/// 800 KiB of events, some 15 ms of the ping-pong's 280,000 rows/s (the
/// summary thread empties one in about 0.2 ms when it gets the CPU).
const QUEUED_BATCHES: usize = 2;
/// How long one send waits for room in a full channel before the capture
/// thread gives the summary up. The ring buffer (16 MiB, about 190,000
/// events) absorbs that much; waiting longer would lose events, which
/// matter more than the summary (`nwtrace summarize` rebuilds it).
const MAX_WAIT: Duration = Duration::from_millis(50);

/// One message to the summary thread: events written as rows, in order,
/// with the wall clock they were written with, and the row count of every
/// file that may have grown since the last message (file index, rows).
struct Batch {
    events: Vec<NetEvent>,
    clock: WallClock,
    files: Vec<(usize, u64)>,
}

/// The summary built on its own thread: the CSV consumer (the thread that
/// drains the ring buffer) only copies each written row's event into a
/// batch ([`SummaryThread::add`], a few ns) and sends full batches over a
/// bounded channel; the thread runs [`SummaryBuilder::add`] (the whole
/// report aggregate, a few hundred ns a row) and places the rows into
/// their files.
///
/// Backpressure: a full channel makes the capture thread wait briefly
/// (up to [`MAX_WAIT`] per batch). If the summary thread still has not
/// made room, the summary is given up: no more batches are sent, and
/// [`SummaryThread::finish`] returns a builder whose `build` says how
/// many rows were not summarised (`record` then writes no summary and
/// logs why). The capture is never held for longer, and no row is ever
/// silently missing from a summary.
pub struct SummaryThread {
    batch: Vec<NetEvent>,
    clock: Option<WallClock>,
    /// When the batch's first event came.
    since: Instant,
    tx: Option<SyncSender<Batch>>,
    /// Emptied batches coming back, to be filled again: a fresh batch of
    /// this size would be a fresh mapping, its pages zeroed by the kernel
    /// on first touch (that alone cost more than the copies).
    spare: Receiver<Vec<NetEvent>>,
    handle: Option<JoinHandle<SummaryBuilder>>,
    /// The first file whose row count may still change (every file before
    /// the sink's last one is final).
    files_from: usize,
    /// Rows not sent, once the summary was given up.
    given_up: u64,
    /// Time the capture thread spent waiting for room, in all.
    pub waited: Duration,
}

impl SummaryThread {
    /// Starts the thread with `builder`.
    pub fn start(builder: SummaryBuilder) -> std::io::Result<SummaryThread> {
        let (tx, rx) = sync_channel::<Batch>(QUEUED_BATCHES);
        let (spare_tx, spare) = sync_channel::<Vec<NetEvent>>(QUEUED_BATCHES + 2);
        let handle = std::thread::Builder::new()
            .name("nwtrace-summary".into())
            .spawn(move || Self::run(builder, rx, spare_tx))?;
        Ok(SummaryThread {
            batch: Vec::with_capacity(BATCH),
            clock: None,
            since: Instant::now(),
            tx: Some(tx),
            spare,
            handle: Some(handle),
            files_from: 0,
            given_up: 0,
            waited: Duration::ZERO,
        })
    }

    fn run(
        mut builder: SummaryBuilder,
        rx: Receiver<Batch>,
        spare: SyncSender<Vec<NetEvent>>,
    ) -> SummaryBuilder {
        let mut rows: Vec<u64> = Vec::new();
        for mut b in rx {
            for ev in &b.events {
                builder.add(ev, &b.clock);
            }
            b.events.clear();
            // Back for reuse; if the capture side has enough, it is freed.
            let _ = spare.try_send(b.events);
            for (i, r) in b.files {
                if rows.len() <= i {
                    rows.resize(i + 1, 0);
                }
                rows[i] = r;
            }
            builder.place(&rows);
        }
        builder.thread_cpu_ns = thread_cpu_ns();
        builder
    }

    /// One event the CSV consumer has just written as a row into `sink`.
    #[inline]
    pub fn add(&mut self, ev: &NetEvent, clock: &WallClock, sink: &CsvSink) {
        if self.tx.is_none() {
            self.given_up += 1;
            return;
        }
        // The session resamples its clock now and then: a batch has one.
        if self
            .clock
            .is_some_and(|c| c.to_epoch_ns(0) != clock.to_epoch_ns(0))
        {
            self.send(sink);
        }
        self.clock = Some(*clock);
        if self.batch.is_empty() {
            self.since = Instant::now();
        }
        self.batch.push(ev.clone());
        if self.batch.len() >= BATCH {
            self.send(sink);
        }
    }

    /// Sends what is batched if it has waited for [`BATCH_AGE`]: call
    /// after every drain of the ring buffer, so that a quiet capture's
    /// rows do not wait long (and a busy one's go in full batches).
    pub fn tick(&mut self, sink: &CsvSink) {
        if !self.batch.is_empty() && self.since.elapsed() >= BATCH_AGE {
            self.send(sink);
        }
    }

    fn send(&mut self, sink: &CsvSink) {
        let Some(tx) = self.tx.as_ref() else { return };
        let files = sink.files();
        let from = self.files_from.min(files.len());
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let batch = Batch {
            events: std::mem::replace(&mut self.batch, next),
            clock: self.clock.unwrap_or(WallClock::with_offset(0)),
            files: (from..files.len()).map(|i| (i, files[i].rows)).collect(),
        };
        self.files_from = files.len().saturating_sub(1);
        let mut msg = batch;
        let deadline = Instant::now() + MAX_WAIT;
        let started = Instant::now();
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_micros(200));
                }
                // Full past the wait, or the thread is gone (it panicked):
                // no summary.
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => {
                    self.given_up += m.events.len() as u64;
                    self.tx = None;
                    log::warn!(
                        "nwtrace: the summary fell behind the capture (no room after {} ms); \
                         giving it up so that no event is lost (nwtrace summarize makes one \
                         from the files)",
                        MAX_WAIT.as_millis()
                    );
                    break;
                }
            }
        }
        self.waited += started.elapsed();
    }

    /// Sends the last rows, once the sink is flushed for good, and waits
    /// for the thread: the builder, for [`SummaryBuilder::build`].
    pub fn finish(&mut self, sink: &CsvSink) -> Option<SummaryBuilder> {
        if self.tx.is_some() {
            // The last file's final count, even with no row batched.
            self.send(sink);
        }
        self.tx = None;
        let handle = self.handle.take()?;
        let mut builder = match handle.join() {
            Ok(b) => b,
            Err(_) => {
                log::error!("nwtrace: the summary thread panicked: no summary");
                return None;
            }
        };
        builder.not_summarised += self.given_up;
        Some(builder)
    }
}

/// The calling thread's CPU time so far, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec, and this clock always
    // exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
/// manifest is final, rows adding up, and an exact or bounded aggregate
/// (see [`SummaryDoc::unusable`]). The aggregate comes back with the
/// bounds `config` (merged into others, its tables keep their heaviest
/// keys past them). `Err` is the reason to read the CSV instead, in a
/// few words.
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
    // An exemplar in a file retention deleted cannot be shown: its row
    // is gone.
    let mut doc = doc;
    for list in [&mut doc.aggregate.slowest, &mut doc.aggregate.largest] {
        list.retain(|e| !was_deleted(r, &e.file));
    }
    let mut aggregate = doc
        .aggregate
        .load(machine, config, index)
        .map_err(|e| format!("{name}: {e}"))?;
    if let Some(u) = &doc.unwritten {
        // The operations not written: exact counts, no distributions.
        let left_out = u
            .aggregate
            .load(machine, config, |_| None)
            .map_err(|e| format!("{name}: its unwritten part: {e}"))?;
        aggregate.merge(&left_out);
    }
    aggregate.set_caps(config);
    let files = doc
        .files
        .iter()
        // Files retention deleted (checked) have no place in the reader's
        // list; their rows stay in the aggregate.
        .filter_map(|f| {
            let i = ours.iter().copied().find(|&i| d.files[i].name == f.name)?;
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
            Some((i, res))
        })
        .collect();
    Ok(Loaded { aggregate, files })
}

/// Whether the run's manifest says retention deleted `file`.
fn was_deleted(r: &crate::input::Run, file: &str) -> bool {
    r.manifest.as_ref().is_some_and(|m| m.was_deleted(file))
}

/// The proof that `doc` stands for run `run`'s files; `Err` says what
/// differs.
pub fn check(d: &Discovery, run: usize, doc: &SummaryDoc, name: &str) -> Result<(), String> {
    let r = &d.runs[run];
    if !(1..=SCHEMA_VERSION).contains(&doc.schema_version) {
        return Err(format!(
            "{name} has schema_version {}, this nwtrace reads 1 to {SCHEMA_VERSION}",
            doc.schema_version
        ));
    }
    if let Some(why) = doc.unusable() {
        return Err(format!("{name} is not exact: {why}"));
    }
    let on_disk: Vec<&crate::input::DataFile> = d.files.iter().filter(|f| f.run == run).collect();
    for f in &doc.files {
        let Some(df) = on_disk.iter().find(|df| df.name == f.name) else {
            // Retention deleted it after the summary counted it: the
            // summary still has its rows (the point of a long run's
            // summary), and the manifest says so.
            if was_deleted(r, &f.name) {
                continue;
            }
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
    use crate::capture::consumer::Consumer;
    use crate::capture::event::tests::{bytes, bytes as bytes_of, raw_event};
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

    /// A run with more conversations, remote endpoints and ports than a
    /// summary keeps gets a bounded summary: its totals exact, its
    /// heaviest conversation exact, an exact "other" row, and `load`
    /// uses it (a version-1 summary like it would be refused).
    #[test]
    fn a_wide_run_gets_a_bounded_summary_that_is_used() {
        let out = std::env::temp_dir().join(format!("nwtrace-summary-wide-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let run = create_run_dir(&out, "m1", "t1").unwrap();
        let sink = CsvSink::create(run, 1 << 30, Retention::default()).unwrap();
        let mut csv = CsvConsumer::new(sink);
        // Fed here, not on its thread: a slow debug build would give the
        // summary up.
        let mut builder = SummaryBuilder::default();
        let clock = WallClock::with_offset(1_795_669_694_000_000_000);
        let n = 30_000u64;
        let mut bytes = 0;
        for i in 0..n {
            let mut raw = raw_event();
            // Every fourth op on one heavy conversation, the rest each on
            // its own (a new local port and peer).
            let heavy = i % 4 == 0;
            raw.pid = if heavy { 7 } else { 100 + (i % 50) as u32 };
            raw.local_port = if heavy {
                443
            } else {
                1024 + (i % 60_000) as u16
            };
            raw.peer_port = if heavy {
                55_555
            } else {
                2000 + (i % 9_000) as u16
            };
            raw.direction = (i % 2) as u8;
            raw.ret = 100;
            bytes += 100;
            raw.start_ns = 1_000 + i * 1_000;
            raw.end_ns = raw.start_ns + 500;
            let ev = crate::capture::event::NetEvent::try_from(bytes_of(&raw).as_slice()).unwrap();
            assert!(csv.on_event(&ev, &clock).is_continue());
            builder.add(&ev, &clock);
        }
        assert!(csv.finish().is_continue());
        let sink = csv.sink();
        let doc = builder
            .build(sink.files(), sink.rows_lost(), "m1", "manifest.json")
            .unwrap();
        assert!(!doc.exact);
        assert!(doc.unusable().is_none(), "{:?}", doc.inexact_reason);
        for t in ["conversations", "remote endpoints", "ports"] {
            assert!(doc.bounded.iter().any(|b| b == t), "{:?}", doc.bounded);
        }
        let json = doc.to_json();
        assert!(json.len() < 4 << 20, "{} bytes", json.len());
        let nw = sink.dir().to_path_buf();
        std::fs::write(nw.join("summary.json"), &json).unwrap();
        let manifest = serde_json::json!({ "finalized": true, "files": sink.files() });
        std::fs::write(nw.join("manifest.json"), manifest.to_string()).unwrap();
        let d = crate::input::discover(std::slice::from_ref(&out)).unwrap();
        let config = AggregateConfig::default();
        let mut agg = load(&d, 0, config).unwrap().aggregate;
        agg.finish();
        assert_eq!(agg.totals.ops, n);
        assert_eq!(agg.totals.bytes_sent + agg.totals.bytes_received, bytes);
        let conv_ops: u64 = agg.conversations.iter().map(|(_, v)| v.c.total_ops()).sum();
        assert_eq!(conv_ops + agg.conversations.other().c.total_ops(), n);
        let (hk, hv) = agg
            .conversations
            .iter()
            .max_by_key(|(_, v)| v.c.total_ops())
            .unwrap();
        assert_eq!((hk.local.port, hv.c.total_ops()), (443, n / 4));
        assert!(agg.conversations.bound(hk).is_zero());
        let proc_ops: u64 = agg.processes.iter().map(|(_, v)| v.c.total_ops()).sum();
        assert_eq!(proc_ops, n, "51 processes: all kept, exact");
        // The same document as version 1 is refused (it has no bounds).
        let mut v1: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v1["schema_version"] = 1.into();
        std::fs::write(nw.join("summary.json"), v1.to_string()).unwrap();
        let why = load(&d, 0, config).err().unwrap();
        assert!(why.contains("not exact"), "{why}");
        let _ = std::fs::remove_dir_all(&out);
    }

    /// A summary thread that cannot keep up is given up, never waited
    /// for: the rows it missed are counted, and `build` says so instead
    /// of writing a summary that would not match the files.
    #[test]
    fn a_summary_that_falls_behind_is_given_up_with_a_count() {
        let out = std::env::temp_dir().join(format!("nwtrace-summary-gone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let run = create_run_dir(&out, "m1", "t1").unwrap();
        let mut sink = CsvSink::create(run, 1 << 20, Retention::default()).unwrap();
        // A thread that takes nothing: its channel stays full.
        let (tx, stalled) = sync_channel::<Batch>(0);
        let (_spare_tx, spare) = sync_channel(1);
        let mut t = SummaryThread {
            batch: Vec::new(),
            clock: None,
            since: Instant::now(),
            tx: Some(tx),
            spare,
            handle: Some(std::thread::spawn(SummaryBuilder::default)),
            files_from: 0,
            given_up: 0,
            waited: Duration::ZERO,
        };
        let ev = crate::capture::event::tests::sample_event();
        let clock = WallClock::with_offset(0);
        let started = Instant::now();
        for _ in 0..(BATCH as u64 * 3 + 5) {
            sink.append_row(|b| b.extend_from_slice(b"row\n")).unwrap();
            t.add(&ev, &clock, &sink);
        }
        sink.flush().unwrap();
        let b = t.finish(&sink).unwrap();
        // One wait of MAX_WAIT, then no more.
        assert!(started.elapsed() >= MAX_WAIT);
        assert!(started.elapsed() < MAX_WAIT * 50, "never blocked for long");
        drop(stalled);
        let why = b.build(sink.files(), 0, "m1", "manifest.json").unwrap_err();
        assert!(
            why.contains(&format!(
                "{} rows were not summarised",
                BATCH as u64 * 3 + 5
            )),
            "{why}"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}
