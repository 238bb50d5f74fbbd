//! `--on-close CMD`: hands each finished file to an operator's command
//! (`aws s3 cp`, `rclone copy`, `gsutil cp`...), in order, exactly once.
//!
//! A command that fails, hangs or is slow never slows tracing: files are
//! queued to one runner thread through a bounded queue; a full queue
//! drops the hand-over and counts it. The runner runs one command at a
//! time, in the order the files closed, as `sh -c CMD nwtrace-on-close
//! PATH`: the path is `$1`, and `NWTRACE_FILE`; `NWTRACE_KIND` says `csv`,
//! `manifest` or `summary`.
//!
//! Each step is written to the run's journal (`journal.rs`), so that the
//! next start in the same machine folder first hands over, once and in
//! order, what earlier runs left: killed at the stop, dropped, failed, or
//! never reached because the recorder died (catch-up). A hand-over is
//! at-least-once: a command that was running when the recorder died is run
//! again (with `NWTRACE_RETRY=1`), since nwtrace cannot know whether it
//! finished its work.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::output::journal::{self, CatchUp, Journal, RunRef, State};

/// Files waiting for the runner. A rotation every few seconds for a long
/// outage of the upload target still fits.
const QUEUE_FILES: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    Manifest,
    Summary,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Csv => "csv",
            FileKind::Manifest => "manifest",
            FileKind::Summary => "summary",
        }
    }
}

/// The manifest's `on_close` version this nwtrace writes: 2 has the
/// journal and the catch-up counts (1, or absent, had neither).
pub const STATS_VERSION: u32 = 2;

pub use crate::schema::manifest::OnCloseStats;

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    done: AtomicU64,
    caught_up: AtomicU64,
    caught_up_failed: AtomicU64,
    caught_up_gone: AtomicU64,
    /// Catch-up items finished (any outcome).
    caught_up_done: AtomicU64,
    /// Set at the end of the run: start no more commands.
    stopping: AtomicBool,
}

pub struct OnClose {
    command: String,
    journal: Arc<Journal>,
    /// The CSV file last written to the journal as open.
    noted_open: Option<PathBuf>,
    catch_up_total: u64,
    queue: Option<SyncSender<(PathBuf, FileKind)>>,
    counters: Arc<Counters>,
    /// The command running now, so that the end can stop it.
    running: Arc<Mutex<Option<Child>>>,
    runner: Option<JoinHandle<()>>,
    queued: u64,
    dropped: u64,
}

/// Starts the command in its own process group, so that the end of the
/// run can stop it with everything it started. Its output is discarded:
/// nwtrace's own stdout and stderr are for nwtrace (and a command holding
/// them open would keep a reader of nwtrace waiting after it exits).
fn run_one(command: &str, path: &Path, kind: FileKind, retry: bool) -> std::io::Result<Child> {
    let mut cmd = Command::new("/bin/sh");
    if retry {
        cmd.env("NWTRACE_RETRY", "1");
    }
    cmd.arg("-c")
        .arg(command)
        .arg("nwtrace-on-close")
        .arg(path)
        .env("NWTRACE_FILE", path)
        .env("NWTRACE_KIND", kind.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// Stops a command and whatever it started (its process group).
fn stop(child: &mut Child) {
    // SAFETY: kill(2) with a negative pid signals the process group the
    // child leads (it was started with process_group(0)); no memory is
    // involved.
    unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

/// Why a hand-over did not succeed.
enum Failure {
    /// Killed (or never started) at the end of the run.
    Stopped,
    Failed(String),
}

/// Runs the command for one file to its end, or until the end of the run
/// stops it.
fn run_to_end(
    command: &str,
    path: &Path,
    kind: FileKind,
    retry: bool,
    counters: &Counters,
    running: &Mutex<Option<Child>>,
) -> Result<(), Failure> {
    let child = match run_one(command, path, kind, retry) {
        Ok(child) => child,
        Err(e) => return Err(Failure::Failed(format!("could not start: {e}"))),
    };
    *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    // Poll, so that the end can take the child to stop it.
    loop {
        let mut slot = running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(child) = slot.as_mut() else {
            return Err(Failure::Stopped);
        };
        if counters.stopping.load(Ordering::Relaxed) {
            // The end came between the start and the store.
            stop(child);
            *slot = None;
            return Err(Failure::Stopped);
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                *slot = None;
                return Ok(());
            }
            Ok(Some(status)) => {
                *slot = None;
                return Err(Failure::Failed(status.to_string()));
            }
            Ok(None) => {}
            Err(e) => {
                *slot = None;
                return Err(Failure::Failed(e.to_string()));
            }
        }
        drop(slot);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Journals the outcome of a command; the success durably, since the
/// next start decides on it.
fn journal_outcome(
    journal: &Journal,
    of: Option<&RunRef>,
    name: &str,
    kind: FileKind,
    outcome: &Result<(), Failure>,
) {
    let state = match outcome {
        Ok(()) => State::Ok,
        Err(Failure::Stopped) => State::Stopped,
        Err(Failure::Failed(_)) => State::Failed,
    };
    journal.record(of, name, kind, state, state == State::Ok);
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Hands over the earlier runs' files first, then this run's as they come.
fn runner(
    command: String,
    journal: Arc<Journal>,
    catch_up: Vec<CatchUp>,
    rx: Receiver<(PathBuf, FileKind)>,
    counters: Arc<Counters>,
    running: Arc<Mutex<Option<Child>>>,
) {
    for item in catch_up {
        if counters.stopping.load(Ordering::Relaxed) {
            // The rest stays pending in its journal; dropping the items
            // releases the earlier runs' locks.
            break;
        }
        let path = item.path();
        if let Err(state) = journal::check_still_there(&item.dir, &item.name) {
            if state == State::Refused {
                log::warn!(
                    "nwtrace: --on-close catch-up: {} is not a regular file any more; not handed over",
                    path.display()
                );
            }
            journal.record(Some(&item.of), &item.name, item.kind, state, true);
            counters.caught_up_gone.fetch_add(1, Ordering::Relaxed);
            counters.caught_up_done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        journal.record(Some(&item.of), &item.name, item.kind, State::Started, false);
        let outcome = run_to_end(&command, &path, item.kind, item.retry, &counters, &running);
        journal_outcome(&journal, Some(&item.of), &item.name, item.kind, &outcome);
        match outcome {
            Ok(()) => {
                counters.caught_up.fetch_add(1, Ordering::Relaxed);
            }
            Err(Failure::Stopped) => {
                // Not done: counted as unfinished, left for the next start.
                break;
            }
            Err(Failure::Failed(why)) => {
                log::warn!(
                    "nwtrace: --on-close catch-up for {} failed: {why}",
                    path.display()
                );
                counters.caught_up_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        counters.caught_up_done.fetch_add(1, Ordering::Relaxed);
    }
    for (path, kind) in rx {
        if counters.stopping.load(Ordering::Relaxed) {
            break;
        }
        let name = file_name(&path);
        journal.record(None, &name, kind, State::Started, false);
        let outcome = run_to_end(&command, &path, kind, false, &counters, &running);
        journal_outcome(&journal, None, &name, kind, &outcome);
        match outcome {
            Ok(()) => counters.succeeded.fetch_add(1, Ordering::Relaxed),
            Err(failure) => {
                let why = match failure {
                    Failure::Stopped => "stopped at the end of the run".to_string(),
                    Failure::Failed(why) => why,
                };
                log::warn!("nwtrace: --on-close for {} failed: {why}", path.display());
                counters.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        counters.done.fetch_add(1, Ordering::Relaxed);
    }
}

impl OnClose {
    /// Starts the runner: first `catch_up` (earlier runs' files, see
    /// `journal::pending`), then this run's files; every step goes to
    /// `journal`.
    pub fn start(command: &str, journal: Journal, catch_up: Vec<CatchUp>) -> OnClose {
        let (tx, rx) = mpsc::sync_channel(QUEUE_FILES);
        let counters = Arc::new(Counters::default());
        let running = Arc::new(Mutex::new(None));
        let journal = Arc::new(journal);
        let catch_up_total = catch_up.len() as u64;
        let (c, r, j, cmd) = (
            Arc::clone(&counters),
            Arc::clone(&running),
            Arc::clone(&journal),
            command.to_string(),
        );
        let runner = std::thread::Builder::new()
            .name("nwtrace-on-close".into())
            .spawn(move || runner(cmd, j, catch_up, rx, c, r))
            .expect("starting the --on-close thread");
        OnClose {
            command: command.to_string(),
            journal,
            noted_open: None,
            catch_up_total,
            queue: Some(tx),
            counters,
            running,
            runner: Some(runner),
            queued: 0,
            dropped: 0,
        }
    }

    /// Queues `path` for the command; never blocks.
    pub fn hand_over(&mut self, path: PathBuf, kind: FileKind) {
        let Some(queue) = &self.queue else { return };
        let name = file_name(&path);
        // Journaled before the runner can start it.
        self.journal.record(None, &name, kind, State::Queued, false);
        match queue.try_send((path, kind)) {
            Ok(()) => self.queued += 1,
            Err(TrySendError::Full((path, _))) | Err(TrySendError::Disconnected((path, _))) => {
                self.journal
                    .record(None, &name, kind, State::Dropped, false);
                self.dropped += 1;
                log::warn!(
                    "nwtrace: --on-close queue full: {} not handed over",
                    path.display()
                );
            }
        }
    }

    /// Journals the CSV file being written, once per file, so that a run
    /// killed while writing it still names it for the next start.
    pub fn note_open(&mut self, path: PathBuf) {
        if self.noted_open.as_ref() != Some(&path) {
            self.journal
                .record(None, &file_name(&path), FileKind::Csv, State::Open, false);
            self.noted_open = Some(path);
        }
    }

    /// Waits until every queued command (and the catch-up) has finished,
    /// or `deadline`.
    pub fn wait(&self, deadline: Instant) {
        let c = &self.counters;
        while (c.done.load(Ordering::Relaxed) < self.queued
            || c.caught_up_done.load(Ordering::Relaxed) < self.catch_up_total)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stats(&self) -> OnCloseStats {
        let c = &self.counters;
        let done = c.done.load(Ordering::Relaxed);
        OnCloseStats {
            version: STATS_VERSION,
            command: self.command.clone(),
            journal: Some(self.journal.name().to_string()),
            queued: self.queued,
            succeeded: c.succeeded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: self.dropped,
            unfinished: self.queued.saturating_sub(done),
            caught_up: c.caught_up.load(Ordering::Relaxed),
            caught_up_failed: c.caught_up_failed.load(Ordering::Relaxed),
            caught_up_gone: c.caught_up_gone.load(Ordering::Relaxed),
            caught_up_unfinished: self
                .catch_up_total
                .saturating_sub(c.caught_up_done.load(Ordering::Relaxed)),
        }
    }
}

impl Drop for OnClose {
    /// Stops a command still running and waits for the runner to end.
    /// Files still queued are not run (they are counted as unfinished by
    /// then). The wait is what makes the stop complete: a runner caught
    /// between its look at `stopping` and storing a command it had just
    /// started would otherwise leave that command running after nwtrace
    /// exits, uploading while the next start hands the same file over
    /// again. The runner looks at `stopping` before each file and every
    /// 20 ms while a command runs, so the wait is short.
    fn drop(&mut self) {
        self.queue = None;
        self.counters.stopping.store(true, Ordering::Relaxed);
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = running {
            stop(&mut child);
        }
        if let Some(runner) = self.runner.take() {
            let _ = runner.join();
        }
    }
}
