//! `--on-close CMD`: hands each finished file to an operator's command
//! (`aws s3 cp`, `rclone copy`, `gsutil cp`...), in order, exactly once.
//!
//! A command that fails, hangs or is slow never slows tracing: files are
//! queued to one runner thread through a bounded queue; a full queue
//! drops the hand-over and counts it. The runner runs one command at a
//! time, in the order the files closed, as `sh -c CMD nwtrace-on-close
//! PATH`: the path is `$1`, and `NWTRACE_FILE`; `NWTRACE_KIND` says `csv`,
//! `manifest` or `summary`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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
    fn as_str(self) -> &'static str {
        match self {
            FileKind::Csv => "csv",
            FileKind::Manifest => "manifest",
            FileKind::Summary => "summary",
        }
    }
}

/// The hand-overs of a run, for the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCloseStats {
    pub command: String,
    /// Files queued for the command.
    pub queued: u64,
    /// Commands that exited 0.
    pub succeeded: u64,
    /// Commands that exited non-zero, died of a signal, or could not start.
    pub failed: u64,
    /// Files not queued: the queue was full (the command is too slow).
    pub dropped: u64,
    /// Files still queued or running when the run ended and the grace
    /// period ran out (their commands were not run, or were stopped).
    pub unfinished: u64,
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    done: AtomicU64,
    /// Set at the end of the run: start no more commands.
    stopping: AtomicBool,
}

pub struct OnClose {
    command: String,
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
fn run_one(command: &str, path: &Path, kind: FileKind) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
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

fn runner(
    command: String,
    rx: Receiver<(PathBuf, FileKind)>,
    counters: Arc<Counters>,
    running: Arc<Mutex<Option<Child>>>,
) {
    for (path, kind) in rx {
        if counters.stopping.load(Ordering::Relaxed) {
            break;
        }
        let outcome = match run_one(&command, &path, kind) {
            Ok(child) => {
                *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
                // Poll, so that the end can take the child to stop it.
                loop {
                    let mut slot = running.lock().unwrap_or_else(|e| e.into_inner());
                    let Some(child) = slot.as_mut() else {
                        break Err("stopped at the end of the run".to_string());
                    };
                    if counters.stopping.load(Ordering::Relaxed) {
                        // The end came between the start and the store.
                        stop(child);
                        *slot = None;
                        break Err("stopped at the end of the run".to_string());
                    }
                    match child.try_wait() {
                        Ok(Some(status)) if status.success() => {
                            *slot = None;
                            break Ok(());
                        }
                        Ok(Some(status)) => {
                            *slot = None;
                            break Err(status.to_string());
                        }
                        Ok(None) => {}
                        Err(e) => {
                            *slot = None;
                            break Err(e.to_string());
                        }
                    }
                    drop(slot);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Err(e) => Err(format!("could not start: {e}")),
        };
        match outcome {
            Ok(()) => counters.succeeded.fetch_add(1, Ordering::Relaxed),
            Err(why) => {
                log::warn!("nwtrace: --on-close for {} failed: {why}", path.display());
                counters.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        counters.done.fetch_add(1, Ordering::Relaxed);
    }
}

impl OnClose {
    pub fn start(command: &str) -> OnClose {
        let (tx, rx) = mpsc::sync_channel(QUEUE_FILES);
        let counters = Arc::new(Counters::default());
        let running = Arc::new(Mutex::new(None));
        let (c, r, cmd) = (
            Arc::clone(&counters),
            Arc::clone(&running),
            command.to_string(),
        );
        let runner = std::thread::Builder::new()
            .name("nwtrace-on-close".into())
            .spawn(move || runner(cmd, rx, c, r))
            .expect("starting the --on-close thread");
        OnClose {
            command: command.to_string(),
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
        match queue.try_send((path, kind)) {
            Ok(()) => self.queued += 1,
            Err(TrySendError::Full((path, _))) | Err(TrySendError::Disconnected((path, _))) => {
                self.dropped += 1;
                log::warn!(
                    "nwtrace: --on-close queue full: {} not handed over",
                    path.display()
                );
            }
        }
    }

    /// Waits until every queued command has finished, or `deadline`.
    pub fn wait(&self, deadline: Instant) {
        while self.counters.done.load(Ordering::Relaxed) < self.queued && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stats(&self) -> OnCloseStats {
        let done = self.counters.done.load(Ordering::Relaxed);
        OnCloseStats {
            command: self.command.clone(),
            queued: self.queued,
            succeeded: self.counters.succeeded.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.dropped,
            unfinished: self.queued.saturating_sub(done),
        }
    }
}

impl Drop for OnClose {
    /// Stops a command still running and lets the runner end. Files still
    /// queued are not run (they are counted as unfinished by then).
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
        if let Some(runner) = self.runner.take()
            && self.counters.done.load(Ordering::Relaxed) >= self.queued
        {
            let _ = runner.join();
        }
    }
}
