//! `nwtrace watch`: one line per operation on stdout, as it happens.
//!
//! The capture never waits for stdout. Lines are formatted on the capture
//! thread and handed in batches to a printer thread through a bounded
//! queue; when the terminal or the pipe falls behind and the queue is
//! full, a batch is counted as not printed instead of blocking the ring
//! buffer (and so the kernel side). With --output-dir every row is also
//! recorded, exactly as `record` does, so nothing is lost for good.

use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::capture::consumer::{CaptureHealth, Consumer, StopReason};
use crate::capture::event::NetEvent;
use crate::capture::session::{Outcome, Session};
use crate::cli::{WatchArgs, WatchFormat};
use crate::cmd::record::{Recording, validate_output, validate_pids};
use crate::cmd::signals::{SecondInterrupt, StopSignals};
use crate::output::csv::CsvConsumer;
use crate::output::lines::{LineFormat, LineFormatter};
use crate::schema::columns::Columns;
use crate::timefmt::{WallClock, now_epoch_secs};

/// Batches waiting for the printer. With a batch per drain (every 100 ms
/// at most), this is a few seconds of a slow reader.
const QUEUE_BATCHES: usize = 32;
/// A batch is handed over early past this many bytes, so a burst does not
/// wait for the next tick.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the end waits for the printer to write what is queued.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// What the printer thread reports back.
struct PrinterState {
    /// stdout was closed by its reader (`| head`).
    closed: AtomicBool,
}

/// Writes batches to stdout until the queue closes or stdout does. One
/// write and one flush per batch: lines reach a pipe as soon as they are
/// captured (line-buffered behaviour, without a syscall per line).
fn print_batches(rx: Receiver<Batch>, state: Arc<PrinterState>, done: SyncSender<()>) {
    let mut out = io::stdout().lock();
    for batch in rx {
        if out
            .write_all(&batch.bytes)
            .and_then(|()| out.flush())
            .is_err()
        {
            // EPIPE (SIGPIPE is ignored by Rust programs) or any other
            // failure: nobody can read us any more.
            state.closed.store(true, Ordering::Relaxed);
            break;
        }
    }
    let _ = done.send(());
}

pub struct WatchConsumer<'r> {
    /// With --output-dir: every operation watch takes is recorded first.
    recording: Option<&'r mut CsvConsumer>,
    formatter: LineFormatter,
    batch: Batch,
    queue: Option<SyncSender<Batch>>,
    printer: Arc<PrinterState>,
    printer_done: Receiver<()>,
    /// Operations seen, printed or not.
    pub operations: u64,
    /// Lines that could not be handed to the printer in time.
    pub not_printed: u64,
    limit: Option<u64>,
}

impl<'r> WatchConsumer<'r> {
    pub fn start(
        format: LineFormat,
        columns: Columns,
        limit: Option<u64>,
        recording: Option<&'r mut CsvConsumer>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(QUEUE_BATCHES);
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let printer = Arc::new(PrinterState {
            closed: AtomicBool::new(false),
        });
        let state = Arc::clone(&printer);
        std::thread::Builder::new()
            .name("nwtrace-print".into())
            .spawn(move || print_batches(rx, state, done_tx))
            .expect("starting the printer thread");
        let formatter = LineFormatter::with_columns(format, columns);
        let mut consumer = WatchConsumer {
            recording,
            batch: Batch {
                bytes: formatter.header().as_bytes().to_vec(),
                lines: 0,
            },
            formatter,
            queue: Some(tx),
            printer,
            printer_done: done_rx,
            operations: 0,
            not_printed: 0,
            limit,
        };
        consumer.hand_over();
        consumer
    }

    fn stdout_closed(&self) -> bool {
        self.printer.closed.load(Ordering::Relaxed)
    }

    /// Gives the current batch to the printer, or counts it as not printed
    /// when the printer is that far behind.
    fn hand_over(&mut self) {
        if self.batch.bytes.is_empty() {
            return;
        }
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                bytes: Vec::with_capacity(BATCH_BYTES),
                lines: 0,
            },
        );
        let Some(queue) = &self.queue else { return };
        match queue.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                self.not_printed += b.lines;
            }
        }
    }

    fn status(&self) -> ControlFlow<StopReason> {
        if self.stdout_closed() {
            return ControlFlow::Break(StopReason::ConsumerDone("stdout closed".into()));
        }
        if self.limit.is_some_and(|n| self.operations >= n) {
            return ControlFlow::Break(StopReason::ConsumerDone("count reached".into()));
        }
        ControlFlow::Continue(())
    }
}

impl Consumer for WatchConsumer<'_> {
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason> {
        if self.limit.is_some_and(|n| self.operations >= n) {
            // Past --count: events still in flight are not ours, neither
            // to print nor to record.
            return self.status();
        }
        if let Some(csv) = self.recording.as_deref_mut() {
            // A full disk stops the run, as in record.
            csv.on_event(event, clock)?;
        }
        self.operations += 1;
        if self.stdout_closed() {
            // Nobody reads; the run is ending (recorded all the same).
            return self.status();
        }
        self.formatter.write(&mut self.batch.bytes, event, clock);
        self.batch.lines += 1;
        if self.batch.bytes.len() >= BATCH_BYTES {
            self.hand_over();
        }
        self.status()
    }

    fn on_tick(&mut self, health: &CaptureHealth) -> ControlFlow<StopReason> {
        self.hand_over();
        if let Some(csv) = self.recording.as_deref_mut() {
            csv.on_tick(health)?;
        }
        self.status()
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        let recorded = match self.recording.as_deref_mut() {
            Some(csv) => csv.finish(),
            None => ControlFlow::Continue(()),
        };
        self.hand_over();
        // Closing the queue ends the printer once it has written the rest.
        self.queue = None;
        let _ = self.printer_done.recv_timeout(DRAIN_GRACE);
        recorded
    }
}

/// Colour only on a terminal, and never when NO_COLOR is set (to anything
/// but the empty string, as no-color.org says).
fn use_color() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn watch(args: WatchArgs) -> Result<ExitCode> {
    let start_secs = now_epoch_secs();
    let names = match args.output.output_dir {
        Some(_) => Some(validate_output(&args.output, start_secs)?),
        None => None,
    };
    validate_pids(&args.capture.pids)?;

    let session = Session::start(&args.capture.options()?)?;
    let backend = session.backend().name;
    let mut recording = match names {
        Some(names) => Some(Recording::create(
            &args.output,
            names,
            backend,
            start_secs,
            args.capture.columns.unwrap_or_default(),
        )?),
        None => None,
    };
    let signals = StopSignals::install(SecondInterrupt::Exits)?;
    let format = match args.format {
        WatchFormat::Text => LineFormat::Text { color: use_color() },
        WatchFormat::Csv => LineFormat::Csv,
        WatchFormat::Jsonl => LineFormat::Jsonl,
    };
    // The same stable line as record's, so scripts can wait for it.
    match &recording {
        Some(r) => log::info!(
            "Tracing TCP/UDP sends and receives (backend: {backend}) to stdout and into {} ... Hit Ctrl-C to end.",
            r.dir().display()
        ),
        None => log::info!(
            "Tracing TCP/UDP sends and receives (backend: {backend}) to stdout ... Hit Ctrl-C to end."
        ),
    }

    let mut lines = WatchConsumer::start(
        format,
        args.capture.columns.unwrap_or_default(),
        args.count,
        recording.as_mut().map(|r| &mut r.csv),
    );
    let deadline = args.duration.map(|d| Instant::now() + d);
    let should_stop = || {
        if let Some(sig) = signals.received() {
            return Some(StopReason::Signal(sig));
        }
        deadline
            .is_some_and(|d| Instant::now() >= d)
            .then_some(StopReason::DurationElapsed)
    };
    let Outcome { reason, stats } = session.run(&mut lines, should_stop)?;
    let (operations, not_printed) = (lines.operations, lines.not_printed);
    drop(lines);
    if let Some(r) = &mut recording {
        r.finalize(&reason, &stats);
    }
    if not_printed > 0 {
        log::warn!(
            "nwtrace: {not_printed} of {operations} operations were not printed: stdout could not keep up{}",
            if recording.is_some() {
                " (every one is in the CSV files)"
            } else {
                " (add --output-dir to keep them all)"
            }
        );
    }
    if stats.events_lost > 0 {
        log::warn!(
            "nwtrace: {} events lost{}",
            stats.events_lost,
            stats.lost_hint()
        );
    }
    if reason.is_failure() {
        log::error!("nwtrace: stopped on {}", reason.describe());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
