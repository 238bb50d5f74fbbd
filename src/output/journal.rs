//! The `--on-close` journal (`on_close.jsonl` beside `manifest.json`,
//! `on_close_2.jsonl` beside `manifest_2.json`): one JSON line per step of
//! each hand-over of the run's files, so that a later run in the same
//! machine folder can hand over what this one did not (catch-up). The
//! format is in docs/output.md ("The manifest's on_close block").
//!
//! A running recorder holds an exclusive `flock` on its own journal for its
//! whole life, and a catch-up takes the same lock (non-blocking) on an
//! earlier run's journal before it hands over anything of that run: a run
//! whose lock is taken is still running (or being caught up by another
//! recorder) and is left alone. The lock goes away with the process, so a
//! SIGKILLed run is caught up by the next start.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::output::dir::SafeDir;
use crate::output::expire::{is_data_file_name, is_manifest_name, read_manifest};
use crate::output::layout::{LayoutError, validate_component};
use crate::output::on_close::FileKind;

/// The `v` of every line this version writes.
pub const LINE_VERSION: u32 = 1;
/// A journal is read up to this size (a line is ~60 bytes: ~250,000 steps).
const MAX_READ: u64 = 16 << 20;

/// One step of a file's hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A CSV file was started (so a run killed while writing it still
    /// names it).
    Open,
    /// The file was complete and queued for the command.
    Queued,
    /// The queue was full: not handed over.
    Dropped,
    /// The command was started for it.
    Started,
    /// The command exited 0: handed over.
    Ok,
    /// The command failed (non-zero, a signal, could not start).
    Failed,
    /// The command was still running at the end of the run and was killed.
    Stopped,
    /// Deleted (retention) before a catch-up could hand it over.
    Gone,
    /// Not a regular file any more (a symlink, say): never handed over.
    Refused,
}

impl State {
    /// No later run hands the file over again.
    fn is_final(self) -> bool {
        matches!(self, State::Ok | State::Gone | State::Refused)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Line {
    v: u32,
    /// A catch-up step: the earlier run's folder (`<TIMESTAMP>`) and
    /// manifest name; absent for a step of the journal's own run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest: Option<String>,
    file: String,
    kind: String,
    state: State,
}

/// `manifest.json` -> `on_close.jsonl`, `manifest_2.json` -> `on_close_2.jsonl`.
pub fn journal_name(manifest_name: &str) -> Option<String> {
    manifest_name
        .strip_prefix("manifest")
        .and_then(|rest| rest.strip_suffix(".json"))
        .map(|rest| format!("on_close{rest}.jsonl"))
}

fn kind_from_str(kind: &str) -> Option<FileKind> {
    match kind {
        "csv" => Some(FileKind::Csv),
        "manifest" => Some(FileKind::Manifest),
        "summary" => Some(FileKind::Summary),
        _ => None,
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: false when another open file holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock(2) on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// An earlier run, by its folder and manifest: what a catch-up step names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunRef {
    pub run: String,
    pub manifest: String,
}

/// A journal is rewritten with only what a later start still needs once
/// it has grown by this much (a line is ~60 bytes, a rotated file ~4
/// lines: every ~4,000 rotations).
const COMPACT_BYTES: u64 = 1 << 20;

/// This run's journal, locked by this process while it runs.
pub struct Journal {
    inner: Mutex<Inner>,
    /// The run's `nw` folder, for the rewrite.
    dir: SafeDir,
    path: PathBuf,
    name: String,
    compact_bytes: u64,
}

/// The open journal, and what a rewrite of it keeps.
struct Inner {
    file: File,
    /// The journal before the last rewrite, still locked: another
    /// recorder that opened it just before the rename must not find it
    /// free (it would take this run for ended).
    previous: Option<File>,
    /// Bytes in `file`.
    bytes: u64,
    /// Every catch-up line (about earlier runs): few, written at the
    /// start, and a later start needs their final states.
    catch_up: Vec<Line>,
    /// This run's own files not final yet, in the order they appeared:
    /// (file, kind, last state, a command was started for it). Files
    /// handed over (`ok`), gone or refused leave it, and a rewrite drops
    /// their lines: a later start hands over only files its journal
    /// names, and these are done.
    pending: Vec<(String, String, State, bool)>,
}

impl Inner {
    fn remember(&mut self, line: &Line) {
        if line.run.is_some() {
            self.catch_up.push(line.clone());
            return;
        }
        let at = self.pending.iter().position(|p| p.0 == line.file);
        match (at, line.state.is_final()) {
            (Some(i), true) => {
                self.pending.remove(i);
            }
            (Some(i), false) => {
                self.pending[i].2 = line.state;
                self.pending[i].3 |= line.state == State::Started;
            }
            (None, true) => {}
            (None, false) => self.pending.push((
                line.file.clone(),
                line.kind.clone(),
                line.state,
                line.state == State::Started,
            )),
        }
    }

    /// The journal's lines that a later start still needs, in order.
    fn kept_lines(&self) -> Vec<u8> {
        let mut text = Vec::new();
        let mut push = |line: &Line| {
            text.extend(serde_json::to_vec(line).expect("a journal line serialises"));
            text.push(b'\n');
        };
        for line in &self.catch_up {
            push(line);
        }
        for (file, kind, state, started) in &self.pending {
            let line = |state| Line {
                v: LINE_VERSION,
                run: None,
                manifest: None,
                file: file.clone(),
                kind: kind.clone(),
                state,
            };
            if *started && *state != State::Started {
                push(&line(State::Started));
            }
            push(&line(*state));
        }
        text
    }
}

impl Journal {
    /// Creates this run's journal beside its manifest and locks it.
    pub fn create(dir: &SafeDir, manifest_name: &str) -> Result<Journal, LayoutError> {
        let name = journal_name(manifest_name).expect("nwtrace names its manifests manifest*.json");
        let path = dir.path().join(&name);
        let io_err = |source| LayoutError::Io {
            path: path.clone(),
            source,
        };
        // The manifest's name was free, so a journal of that name is a
        // leftover of an earlier run in this folder that lost its manifest:
        // refuse rather than mix two runs' steps.
        let file = dir
            .create_file_exclusive(&name)?
            .ok_or_else(|| io_err(io::ErrorKind::AlreadyExists.into()))?;
        // Nobody else can hold it yet: no manifest names it so far.
        if !try_lock(&file).map_err(io_err)? {
            return Err(io_err(io::ErrorKind::WouldBlock.into()));
        }
        Ok(Journal {
            inner: Mutex::new(Inner {
                file,
                previous: None,
                bytes: 0,
                catch_up: Vec::new(),
                pending: Vec::new(),
            }),
            dir: dir.try_clone().map_err(io_err)?,
            path,
            name,
            compact_bytes: COMPACT_BYTES,
        })
    }

    /// Replaces the journal with the lines a later start still needs
    /// (atomically: a temporary file, locked, renamed over it), so that a
    /// run of months keeps a journal of its pending files, not one line
    /// per step of every file it ever rotated.
    fn compact(&self, inner: &mut Inner) -> io::Result<()> {
        let text = inner.kept_lines();
        let file = self.dir.replace_file(&self.name, |file| {
            if !try_lock(file)? {
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            file.write_all(&text)
        })?;
        inner.previous = Some(std::mem::replace(&mut inner.file, file));
        inner.bytes = text.len() as u64;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Appends one step for the file `name`: of this run (`of` None), or
    /// of the earlier run `of` (a catch-up). `sync` makes it durable before
    /// returning (for the steps a later run decides on: a hand-over done).
    /// A failure is logged: the hand-over itself goes on.
    pub fn record(
        &self,
        of: Option<&RunRef>,
        name: &str,
        kind: FileKind,
        state: State,
        sync: bool,
    ) {
        let line = Line {
            v: LINE_VERSION,
            run: of.map(|r| r.run.clone()),
            manifest: of.map(|r| r.manifest.clone()),
            file: name.to_string(),
            kind: kind.as_str().to_string(),
            state,
        };
        let mut text = serde_json::to_vec(&line).expect("a journal line serialises");
        text.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.remember(&line);
        // One write under the lock: a line is never interleaved with another.
        let file = &mut inner.file;
        let written = file
            .write_all(&text)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            log::warn!("nwtrace: could not write {}: {e}", self.path.display());
            return;
        }
        inner.bytes += text.len() as u64;
        if inner.bytes >= self.compact_bytes
            && let Err(e) = self.compact(&mut inner)
        {
            // The journal keeps growing; nothing is lost.
            log::warn!("nwtrace: could not rewrite {}: {e}", self.path.display());
        }
    }
}

/// A journal's lines (a torn last line, from a recorder that died
/// mid-write, does not parse and is skipped, as is any line of a later
/// version or naming anything but a plain file name).
fn read_lines(nw: &SafeDir, name: &str) -> Vec<Line> {
    let mut text = Vec::new();
    let read = nw
        .open_file_for_read(name)
        .and_then(|f| f.take(MAX_READ).read_to_end(&mut text));
    if let Err(e) = read {
        log::warn!(
            "nwtrace: could not read {}: {e}",
            nw.path().join(name).display()
        );
        return Vec::new();
    }
    text.split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Line>(line).ok())
        .filter(|l| {
            l.v == LINE_VERSION
                && kind_from_str(&l.kind).is_some()
                && validate_component("file", &l.file).is_ok()
        })
        .collect()
}

/// A file of an earlier run to hand over at this start.
pub struct CatchUp {
    /// The earlier run's `nw` folder.
    pub dir: Arc<SafeDir>,
    /// Its journal, open and locked until its last item is done.
    _lock: Arc<File>,
    pub of: RunRef,
    pub name: String,
    pub kind: FileKind,
    /// A command was started for it before and its end is unknown (the
    /// recorder died or stopped it): `NWTRACE_RETRY=1`.
    pub retry: bool,
}

impl CatchUp {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }
}

/// `manifest.json` first, then `manifest_2.json`, `manifest_3.json`...
fn manifest_order(name: &str) -> u64 {
    name.strip_prefix("manifest_")
        .and_then(|r| r.strip_suffix(".json"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// A run of the machine folder that had a journal.
struct Found {
    of: RunRef,
    nw: Arc<SafeDir>,
    journal: String,
}

/// The files of earlier runs in `machine` (every run but this one, `this`)
/// that were never handed over, oldest run first, each run's files in the
/// order they closed, then its manifest and summary unless a journal says
/// they were handed over. Only runs that had `--on-close` with a journal
/// (`on_close.version` 2 or later) are considered, and only when their
/// journal's lock is free (the run is over, and no other recorder is
/// catching it up). A file counts as handed over when any journal of the
/// folder says so: its own run's, or that of a run that caught it up.
/// Nothing is followed through a symlink, and nothing of another run is
/// written to.
pub fn pending(machine: &SafeDir, this: &RunRef) -> Vec<CatchUp> {
    let Ok(runs) = machine.entries() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for run_name in runs {
        if !machine.stat(&run_name).is_some_and(|s| s.is_dir) {
            continue;
        }
        let Some(nw) = machine
            .open_existing_dir(&run_name)
            .and_then(|run| run.open_existing_dir("nw"))
        else {
            continue;
        };
        let Ok(names) = nw.entries() else { continue };
        let mut manifests: Vec<&String> = names.iter().filter(|n| is_manifest_name(n)).collect();
        manifests.sort_by_key(|n| manifest_order(n));
        let nw = Arc::new(nw);
        for manifest_name in manifests {
            let of = RunRef {
                run: run_name.clone(),
                manifest: manifest_name.clone(),
            };
            if &of == this {
                continue;
            }
            let journal = read_manifest(&nw, manifest_name)
                .and_then(|m| m.on_close)
                .filter(|o| o.version >= 2)
                .and_then(|o| o.journal)
                .filter(|j| validate_component("journal", j).is_ok());
            if let Some(journal) = journal {
                found.push(Found {
                    of,
                    nw: Arc::clone(&nw),
                    journal,
                });
            }
        }
    }
    // Lock first, then read: a recorder catching a run up journals each
    // hand-over before it lets go of that run's lock.
    let locks: Vec<Option<Arc<File>>> = found
        .iter()
        .map(|f| {
            let file = f.nw.open_file_for_read(&f.journal).ok()?;
            try_lock(&file).ok()?.then(|| Arc::new(file))
        })
        .collect();
    if locks.iter().all(Option::is_none) {
        return Vec::new();
    }
    // Every step of every journal, by the run it is about.
    let mut steps: HashMap<RunRef, Vec<Line>> = HashMap::new();
    for f in &found {
        for line in read_lines(&f.nw, &f.journal) {
            let about = match (&line.run, &line.manifest) {
                (Some(run), Some(manifest)) => RunRef {
                    run: run.clone(),
                    manifest: manifest.clone(),
                },
                _ => f.of.clone(),
            };
            steps.entry(about).or_default().push(line);
        }
    }
    let mut out = Vec::new();
    for (f, lock) in found.iter().zip(locks) {
        let Some(lock) = lock else { continue };
        let lines = steps.remove(&f.of).unwrap_or_default();
        // Each file once, in the order it first appears in its own run's
        // journal (the order the files were written and closed).
        let mut items: Vec<(String, FileKind, bool)> = Vec::new();
        let mut done: HashSet<&str> = HashSet::new();
        for l in &lines {
            if l.state.is_final() {
                done.insert(&l.file);
            }
            let started = l.state == State::Started;
            match items.iter_mut().find(|i| i.0 == l.file) {
                Some(i) => i.2 |= started,
                None => {
                    let kind = kind_from_str(&l.kind).expect("read_lines kept known kinds");
                    if kind != FileKind::Csv || is_data_file_name(&l.file) {
                        items.push((l.file.clone(), kind, started));
                    }
                }
            }
        }
        // Its manifest and summary, if the run ended before queuing them
        // (SIGKILL): the manifest then says "finalized": false.
        for (name, kind) in [
            (Some(f.of.manifest.clone()), FileKind::Manifest),
            (
                crate::output::summary::summary_name(&f.of.manifest),
                FileKind::Summary,
            ),
        ] {
            let Some(name) = name else { continue };
            if !items.iter().any(|i| i.0 == name) && f.nw.stat(&name).is_some() {
                items.push((name, kind, false));
            }
        }
        items.retain(|i| !done.contains(i.0.as_str()));
        // The manifest and summary go last, as at a stop.
        items.sort_by_key(|i| i.1 != FileKind::Csv);
        out.extend(items.into_iter().map(|(name, kind, retry)| CatchUp {
            dir: Arc::clone(&f.nw),
            _lock: Arc::clone(&lock),
            of: f.of.clone(),
            name,
            kind,
            retry,
        }));
    }
    out
}

/// Whether a catch-up file may be handed over now: `Err(state)` when it
/// was deleted (retention) or is not a regular file any more.
pub fn check_still_there(dir: &SafeDir, name: &str) -> Result<(), State> {
    match dir.stat(name) {
        None => Err(State::Gone),
        Some(st) if !st.is_file => Err(State::Refused),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::layout::create_run_dir;

    #[test]
    fn names() {
        assert_eq!(journal_name("manifest.json").unwrap(), "on_close.jsonl");
        assert_eq!(journal_name("manifest_2.json").unwrap(), "on_close_2.jsonl");
        assert!(journal_name("summary.json").is_none());
        assert_eq!(manifest_order("manifest.json"), 1);
        assert_eq!(manifest_order("manifest_10.json"), 10);
    }

    #[test]
    fn lines_round_trip_and_torn_lines_are_skipped() {
        let out = std::env::temp_dir().join(format!("nwtrace-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let run = create_run_dir(&out, "m", "t").unwrap();
        let j = Journal::create(&run, "manifest.json").unwrap();
        let earlier = RunRef {
            run: "20261207T000000Z".into(),
            manifest: "manifest_2.json".into(),
        };
        j.record(None, "nw_0001.csv", FileKind::Csv, State::Open, false);
        j.record(
            Some(&earlier),
            "nw_0007.csv",
            FileKind::Csv,
            State::Ok,
            true,
        );
        j.record(None, "../x", FileKind::Csv, State::Queued, false);
        std::fs::OpenOptions::new()
            .append(true)
            .open(run.path().join("on_close.jsonl"))
            .unwrap()
            .write_all(b"{\"v\":1,\"file\":\"nw_0003.csv\",\"ki")
            .unwrap();
        let lines = read_lines(&run, "on_close.jsonl");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].file, "nw_0001.csv");
        assert_eq!(lines[0].state, State::Open);
        assert!(lines[0].run.is_none());
        assert_eq!(lines[1].run.as_deref(), Some("20261207T000000Z"));
        assert_eq!(lines[1].manifest.as_deref(), Some("manifest_2.json"));
        // Locked while this journal lives: a catch-up cannot take it.
        let other = run.open_file_for_read("on_close.jsonl").unwrap();
        assert!(!try_lock(&other).unwrap());
        drop(j);
        assert!(try_lock(&other).unwrap());
    }

    #[test]
    fn a_long_run_keeps_its_journal_small_and_its_pending_files() {
        let out = std::env::temp_dir().join(format!("nwtrace-journal-long-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let machine = out.join("m");
        let run = create_run_dir(&out, "m", "earlier").unwrap();
        let mut j = Journal::create(&run, "manifest.json").unwrap();
        j.compact_bytes = 16 * 1024;
        let older = RunRef {
            run: "older".into(),
            manifest: "manifest.json".into(),
        };
        j.record(Some(&older), "nw_0009.csv", FileKind::Csv, State::Ok, true);
        let csv = |i: u32| format!("nw_{i:04}.csv");
        // 20,000 rotations: each file open, queued, started, ok; but
        // nw_0002 failed, nw_0003 was dropped, and the last three are
        // still queued, running and open when the run ends.
        let n = 20_000;
        for i in 1..=n {
            j.record(None, &csv(i), FileKind::Csv, State::Open, false);
            let steps: &[State] = match i {
                2 => &[State::Queued, State::Started, State::Failed],
                3 => &[State::Dropped],
                _ if i == n - 2 => &[State::Queued, State::Started],
                _ if i == n - 1 => &[State::Queued],
                _ if i == n => &[],
                _ => &[State::Queued, State::Started, State::Ok],
            };
            for &st in steps {
                j.record(None, &csv(i), FileKind::Csv, st, false);
            }
        }
        let size = std::fs::metadata(run.path().join("on_close.jsonl"))
            .unwrap()
            .len();
        assert!(size < 17 * 1024, "{size} bytes");
        let names: Vec<String> = std::fs::read_dir(run.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["on_close.jsonl"], "no temporary file is left");
        // Still locked by this run, through the rewrites.
        let other = run.open_file_for_read("on_close.jsonl").unwrap();
        assert!(!try_lock(&other).unwrap());
        drop(other);
        // Another run's catch-up, once this one is over, finds exactly the
        // files not handed over, in order, the one running as a retry.
        std::fs::write(
            run.path().join("manifest.json"),
            serde_json::json!({
                "nwtrace_version": "0.1.0", "command_line": ["nwtrace"], "pid": 1,
                "kernel": "6.18", "backend": "tracepoint", "machine_id": "m",
                "started_at": "x", "stopped_at": null, "finalized": false,
                "exit_reason": null, "files": [], "rows_written": 0, "events_lost": 0,
                "probes_missed": 0, "rows_lost": 0, "malformed_records": 0,
                "on_close": {"version": 2, "command": "true", "journal": "on_close.jsonl",
                    "queued": 0, "succeeded": 0, "failed": 0, "dropped": 0, "unfinished": 0}
            })
            .to_string(),
        )
        .unwrap();
        for i in [2, 3, n - 2, n - 1, n] {
            std::fs::write(run.path().join(csv(i)), "x").unwrap();
        }
        drop(j);
        let machine = SafeDir::open_user_path(&machine).unwrap();
        let this = RunRef {
            run: "later".into(),
            manifest: "manifest.json".into(),
        };
        let items: Vec<(String, bool)> = pending(&machine, &this)
            .iter()
            .filter(|c| c.kind == FileKind::Csv)
            .map(|c| (c.name.clone(), c.retry))
            .collect();
        assert_eq!(
            items,
            [
                (csv(2), true),
                (csv(3), false),
                (csv(n - 2), true),
                (csv(n - 1), false),
                (csv(n), false)
            ]
        );
    }
}
