//! `nwtrace top`'s command: its arguments, the threads and the loop
//! that feed and draw the terminal view in [`crate::top`].
//!
//! Threads: live, the capture thread records and batches ops, and an
//! aggregator thread folds them into the aggregation core and publishes
//! frames (`top::feed`); in a replay the reader thread does both;
//! the main thread renders the newest frame (`top::ui`) from the pure app
//! state (`top::app`), or prints it as JSON (`top::json`). The capture
//! never waits for the screen: a frame the screen did not take in time is
//! replaced and counted.

use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::record::{Recording, validate_output, validate_pids};
use super::signals::{SecondInterrupt, StopSignals};
use crate::UsageError;
use crate::analysis::{Filter, Op, parse_filter};
use crate::capture::consumer::{CaptureHealth, Consumer, StopReason};
use crate::capture::event::NetEvent;
use crate::capture::session::{Outcome, Session};
use crate::cli::{OutputArgs, TopArgs};
use crate::input::{self, DataFile};
use crate::output::csv::CsvConsumer;
use crate::timefmt::{WallClock, now_epoch_secs};

use crate::top::app::{Action, App};
use crate::top::feed::{Control, Feed, Frame, Mailbox, SourceInfo, top_config};
use crate::top::view::Base;
use crate::top::{json, ui};

/// The screen redraws at most this often (10 frames/s).
const DRAW_EVERY: Duration = Duration::from_millis(100);
/// Log lines kept for the health view while the screen is up.
const LOG_LINES: usize = 200;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Where the producer's frames go: the newest-only mailbox (the screen,
/// and a live `--json`), or a bounded queue that waits (a replay's
/// `--json`: nothing is dropped, since nothing is captured).
#[derive(Clone)]
pub enum Out {
    Mailbox(Arc<Mailbox>),
    Queue(SyncSender<Frame>),
}

impl Out {
    fn put(&self, frame: Frame) {
        match self {
            Out::Mailbox(m) => m.put(frame),
            Out::Queue(q) => {
                let _ = q.send(frame);
            }
        }
    }
}

/// Ops waiting for the aggregator when it is behind, at most (about
/// 40 MB); past this the view skips ops (counted), the capture and the
/// recording never wait.
const MAX_PENDING_OPS: usize = 1 << 18;
/// Batches in flight to the aggregator.
const BATCHES: usize = 16;

/// What the capture thread hands to the aggregator thread.
enum ToAggregator {
    Ops(Vec<Op>),
    Tick {
        now_ns: i64,
        health: CaptureHealth,
        rows_recorded: Option<u64>,
        skipped: u64,
    },
}

/// The live consumer, on the capture thread: every event is recorded
/// first (with --record), then turned into an op and batched; each tick
/// hands the batch to the aggregator thread without waiting. Aggregating
/// and copying the aggregate for the screen happen there, so neither
/// slows the capture.
pub struct TopConsumer<'r> {
    batch: Vec<Op>,
    to_agg: Option<SyncSender<ToAggregator>>,
    /// Ops the view could not take (the aggregator that far behind).
    skipped: u64,
    recording: Option<&'r mut CsvConsumer>,
    /// With `--columns`: turns each event's attribution into the op's, so
    /// the Containers view and cookie conversations work live.
    attribution: Option<crate::analysis::attr::OpAttribution>,
}

impl TopConsumer<'_> {
    fn hand_over(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let Some(tx) = &self.to_agg else { return };
        let batch = std::mem::take(&mut self.batch);
        match tx.try_send(ToAggregator::Ops(batch)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(ToAggregator::Ops(b)))
            | Err(mpsc::TrySendError::Disconnected(ToAggregator::Ops(b))) => {
                // Keep it for the next tick, within bounds.
                self.batch = b;
            }
            Err(_) => {}
        }
    }
}

impl Consumer for TopConsumer<'_> {
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason> {
        if let Some(csv) = self.recording.as_deref_mut() {
            csv.on_event(event, clock)?;
        }
        if self.batch.len() < MAX_PENDING_OPS {
            let op = match self.attribution.as_mut() {
                Some(a) => Op::from_event_with(event, *clock, a.op_attr(event)),
                None => Op::from_event(event, *clock),
            };
            self.batch.push(op);
        } else {
            self.skipped += 1;
        }
        ControlFlow::Continue(())
    }

    fn on_tick(&mut self, health: &CaptureHealth) -> ControlFlow<StopReason> {
        let mut rows_recorded = None;
        if let Some(csv) = self.recording.as_deref_mut() {
            csv.on_tick(health)?;
            rows_recorded = Some(csv.sink().rows());
        }
        self.hand_over();
        if let Some(tx) = &self.to_agg {
            let _ = tx.try_send(ToAggregator::Tick {
                now_ns: now_ns(),
                health: *health,
                rows_recorded,
                skipped: self.skipped,
            });
        }
        ControlFlow::Continue(())
    }

    fn on_unwritten(
        &mut self,
        flows: &[crate::capture::sampling::UnwrittenFlow],
        clock: &WallClock,
    ) -> ControlFlow<StopReason> {
        // The recording's summary counts them; the view shows written ops.
        match self.recording.as_deref_mut() {
            Some(csv) => csv.on_unwritten(flows, clock),
            None => ControlFlow::Continue(()),
        }
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        let r = match self.recording.as_deref_mut() {
            Some(csv) => csv.finish(),
            None => ControlFlow::Continue(()),
        };
        let rows_recorded = self.recording.as_deref().map(|c| c.sink().rows());
        // The end: the rest goes over, waiting is fine now.
        if let Some(tx) = self.to_agg.take() {
            let _ = tx.send(ToAggregator::Ops(std::mem::take(&mut self.batch)));
            let _ = tx.send(ToAggregator::Tick {
                now_ns: now_ns(),
                health: CaptureHealth::default(),
                rows_recorded,
                skipped: self.skipped,
            });
        }
        r
    }
}

/// The aggregator thread: ops into the feed, frames out on the ticks.
fn aggregate(mut feed: Feed, rx: mpsc::Receiver<ToAggregator>, out: Out) {
    for msg in rx {
        match msg {
            ToAggregator::Ops(ops) => {
                for op in &ops {
                    feed.add(op);
                }
            }
            ToAggregator::Tick {
                now_ns,
                health,
                rows_recorded,
                skipped,
            } => {
                // The final tick carries no capture figures (the session
                // gives them after the run); keep the last ones.
                if health != CaptureHealth::default() {
                    feed.health.events = health.events;
                    feed.health.events_lost = health.events_lost;
                    feed.health.malformed = health.malformed_records;
                    feed.health.ring_used = health.ring_used;
                    feed.health.ring_size = health.ring_size;
                    feed.health.sampled_out = health.sampled_out;
                    feed.health.rate_limited = health.rate_limited;
                    feed.health.filtered = health.filtered;
                }
                feed.health.rows_recorded = rows_recorded;
                feed.health.view_skipped = skipped;
                feed.poll_control(now_ns);
                if let Some(frame) = feed.tick(now_ns, false) {
                    out.put(frame);
                }
            }
        }
    }
    let frame = feed.frame(feed.last_tick_ns().unwrap_or_else(now_ns));
    out.put(frame);
}

/// What the producer thread ends with.
struct Ended {
    failed: bool,
    summary: Vec<String>,
}

/// The data files of a replay, in time order of their runs.
fn replay_files(dir: &Path) -> Result<Vec<DataFile>> {
    let d = input::discover(&[dir.to_path_buf()])
        .map_err(|e| UsageError::Message(format!("--replay {e}")))?;
    if d.files.is_empty() {
        return Err(UsageError::Message(format!(
            "--replay {}: no nw_*.csv files under it; give a folder that nwtrace record wrote",
            dir.display()
        ))
        .into());
    }
    let mut files = d.files;
    files.sort_by(|a, b| {
        (&a.machine_id, &a.run_dir, &a.name).cmp(&(&b.machine_id, &b.run_dir, &b.name))
    });
    Ok(files)
}

/// Reads the recording into the feed, at `speed` times the recorded pace
/// (0: at once), then waits; a filter change replays from the start.
fn replay(
    path: String,
    files: Vec<DataFile>,
    speed: f64,
    control: Arc<Control>,
    out: Out,
    stop: Arc<AtomicBool>,
) -> Ended {
    let source = SourceInfo::Replay {
        path,
        speed,
        done: false,
        files: files.len(),
    };
    let mut machines: Vec<String> = Vec::new();
    for f in &files {
        if !machines.contains(&f.machine_id) {
            machines.push(f.machine_id.clone());
        }
    }
    'replay: loop {
        let mut feed = Feed::new(top_config(), Arc::clone(&control), source.clone());
        let start = Instant::now();
        let mut first: Option<i64> = None;
        let mut latest = i64::MIN;
        let mut restart = false;
        for df in &files {
            // Pids only mean something per machine (as in report).
            let machine = machines
                .iter()
                .position(|m| *m == df.machine_id)
                .unwrap_or(0) as u32;
            let stats = input::read_file(&df.path, df.compression, |row, _line| {
                if restart || stop.load(Ordering::Relaxed) {
                    return;
                }
                feed.health.events += 1;
                let Some(mut op) = row.to_op() else { return };
                op.machine = machine;
                let first = *first.get_or_insert(op.ts_ns);
                feed.start_at(first);
                if speed > 0.0 {
                    // Wait until the op is due, publishing frames of the
                    // time in between.
                    let due =
                        Duration::from_secs_f64(((op.ts_ns - first).max(0) as f64 / 1e9) / speed);
                    loop {
                        let el = start.elapsed();
                        let virt = first + (el.as_secs_f64() * speed * 1e9) as i64;
                        if let Some(fr) = feed.tick(virt.min(op.ts_ns).max(latest), false) {
                            out.put(fr);
                        }
                        if el >= due || stop.load(Ordering::Relaxed) || feed.filter_changed() {
                            break;
                        }
                        std::thread::sleep((due - el).min(Duration::from_millis(20)));
                    }
                } else if latest > i64::MIN
                    && let Some(fr) = feed.tick(latest, false)
                {
                    out.put(fr);
                }
                if feed.filter_changed() {
                    restart = true;
                    return;
                }
                latest = latest.max(op.ts_ns);
                feed.add(&op);
            });
            feed.health.malformed += stats.malformed;
            if let Some(e) = stats.read_error {
                log::warn!("nwtrace: {}: {e}", df.path.display());
            }
            if restart {
                continue 'replay;
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let SourceInfo::Replay { done, .. } = &mut feed.source {
            *done = true;
        }
        let end = if latest == i64::MIN { now_ns() } else { latest };
        out.put(feed.frame(end));
        // Finished: wait for a new filter or the end.
        while !stop.load(Ordering::Relaxed) {
            if feed.filter_changed() {
                continue 'replay;
            }
            if matches!(out, Out::Queue(_)) {
                // --json: one pass, then the end.
                break 'replay;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        break;
    }
    Ended {
        failed: false,
        summary: Vec::new(),
    }
}

/// Captures into the feed (and the recording) until `stop`.
#[allow(clippy::too_many_arguments)]
fn live(
    args: &TopArgs,
    output: Option<(OutputArgs, crate::cmd::record::RunNames, i64)>,
    control: Arc<Control>,
    out: Out,
    stop: Arc<AtomicBool>,
    started: mpsc::Sender<Result<()>>,
    deadline: Option<Instant>,
) -> Ended {
    let session = match args
        .capture
        .options()
        .map_err(anyhow::Error::from)
        .and_then(|o| Session::start(&o))
    {
        Ok(s) => s,
        Err(e) => {
            let _ = started.send(Err(e));
            return Ended {
                failed: true,
                summary: Vec::new(),
            };
        }
    };
    let backend = session.backend().name;
    let mut recording = match output {
        Some((output, names, start_secs)) => {
            let columns = args.capture.columns.unwrap_or_default();
            match Recording::create(&output, names, backend, start_secs, columns) {
                Ok(r) => Some(r),
                Err(e) => {
                    let _ = started.send(Err(e));
                    return Ended {
                        failed: true,
                        summary: Vec::new(),
                    };
                }
            }
        }
        None => None,
    };
    let mut feed = Feed::new(
        top_config(),
        control,
        SourceInfo::Live {
            backend: backend.to_string(),
        },
    );
    if let Some(r) = &recording {
        feed.health.record_dir = Some(r.dir().display().to_string());
        feed.health.rows_recorded = Some(0);
    }
    feed.start_at(now_ns());
    let _ = started.send(Ok(()));
    log::info!(
        "Tracing TCP/UDP sends and receives (backend: {backend}){} ...",
        recording
            .as_ref()
            .map(|r| format!(" into {}", r.dir().display()))
            .unwrap_or_default()
    );
    let (tx, rx) = mpsc::sync_channel(BATCHES);
    let aggregator = match std::thread::Builder::new()
        .name("nwtrace-aggregate".into())
        .spawn(move || aggregate(feed, rx, out))
    {
        Ok(h) => h,
        Err(e) => {
            return Ended {
                failed: true,
                summary: vec![format!(
                    "nwtrace: error: starting the aggregator thread: {e}"
                )],
            };
        }
    };
    let mut consumer = TopConsumer {
        batch: Vec::with_capacity(4096),
        to_agg: Some(tx),
        skipped: 0,
        recording: recording.as_mut().map(|r| &mut r.csv),
        attribution: args
            .capture
            .columns
            .filter(|c| !c.is_empty())
            .map(crate::analysis::attr::OpAttribution::new),
    };
    // The manifest names the signal that ended the run, as record's does.
    let signals = StopSignals::install(SecondInterrupt::Ignored).ok();
    let result = session.run(&mut consumer, || {
        if let Some(sig) = signals.as_ref().and_then(StopSignals::received) {
            return Some(StopReason::Signal(sig));
        }
        if stop.load(Ordering::Relaxed) {
            return Some(StopReason::ConsumerDone("quit".into()));
        }
        deadline
            .is_some_and(|d| Instant::now() >= d)
            .then_some(StopReason::DurationElapsed)
    });
    let skipped = consumer.skipped;
    drop(consumer);
    let _ = aggregator.join();
    let mut summary = Vec::new();
    if skipped > 0 {
        summary.push(format!(
            "nwtrace: the view skipped {skipped} ops (it fell behind; the capture and any recording have them all)"
        ));
    }
    let failed = match result {
        Ok(Outcome { reason, stats }) => {
            if let Some(r) = &mut recording {
                let dir = r.dir().display().to_string();
                let m = r.finalize(&reason, &stats);
                summary.push(format!(
                    "nwtrace: {} rows recorded under {dir}; {} events lost",
                    m.rows_written, m.events_lost
                ));
            } else if stats.events_lost > 0 {
                summary.push(format!(
                    "nwtrace: {} events lost{}",
                    stats.events_lost,
                    stats.lost_hint()
                ));
            }
            if reason.is_failure() {
                summary.push(format!("nwtrace: stopped on {}", reason.describe()));
            }
            reason.is_failure()
        }
        Err(e) => {
            summary.push(format!("nwtrace: error: {e:#}"));
            true
        }
    };
    stop.store(true, Ordering::Relaxed);
    Ended { failed, summary }
}

/// Log messages while the screen is up: kept for the health view, and
/// printed on stderr once the terminal is restored.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<String>>>);

impl LogBuffer {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut v = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for line in String::from_utf8_lossy(buf).lines() {
            if !line.is_empty() {
                v.push(line.to_string());
            }
        }
        let n = v.len();
        if n > LOG_LINES {
            v.drain(..n - LOG_LINES);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Puts the terminal back: main screen, cooked mode, cursor shown. Safe
/// to call more than once.
pub fn restore_terminal() {
    let _ = crossterm::terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        io::stdout(),
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped: on q, on a signal, on an error
/// (`?`), and (with the panic hook) on a panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        crossterm::terminal::enable_raw_mode().context("switching the terminal to raw mode")?;
        let guard = TerminalGuard;
        crossterm::execute!(
            io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )
        .context("switching to the alternate screen")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn run_screen(
    mailbox: &Mailbox,
    control: &Control,
    stop: &AtomicBool,
    signals: &StopSignals,
    producer: &JoinHandle<Ended>,
    logs: &LogBuffer,
    initial_filter: &str,
) -> Result<()> {
    use crossterm::event::{self, Event, KeyEventKind};
    use ratatui::Terminal;
    use ratatui::backend::CrosstermBackend;

    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    terminal.clear()?;
    let mut app = App::new();
    app.filter_text = initial_filter.to_string();
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if let Some(frame) = mailbox.take() {
            app.on_frame(frame);
            dirty = true;
        }
        app.ui_dropped = mailbox.dropped();
        if dirty && last_draw.is_none_or(|t| t.elapsed() >= DRAW_EVERY) {
            let lines = logs.lines();
            terminal.draw(|f| ui::render(f, &app, &lines))?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => match app.handle_key(k) {
                    Action::Quit => break,
                    Action::SetFilter(f) => control.set_filter(*f),
                    Action::None => {}
                },
                Event::Resize(..) => terminal.autoresize()?,
                _ => {}
            }
            dirty = true;
        }
        if signals.received().is_some() || stop.load(Ordering::Relaxed) || producer.is_finished() {
            break;
        }
    }
    Ok(())
}

fn run_json(
    out: JsonIn,
    stop: &AtomicBool,
    signals: &StopSignals,
    producer: &JoinHandle<Ended>,
) -> Result<()> {
    let mut stdout = io::stdout().lock();
    let mut prev: Option<Frame> = None;
    let mut last_printed: Option<Frame> = None;
    let mut print = |frame: &Frame, prev: &Option<Frame>, dropped: u64| -> io::Result<()> {
        let b = match prev {
            Some(p) => Base {
                old: Some(&p.cur.agg),
                old_health: Some(&p.health),
                secs: ((frame.at_ns - p.at_ns) as f64 / 1e9).max(1e-3),
                per_second: true,
            },
            None => Base {
                old: None,
                old_health: None,
                secs: ((frame.at_ns - frame.started_ns) as f64 / 1e9).max(1e-3),
                per_second: true,
            },
        };
        let v = json::object(frame, &b, dropped);
        serde_json::to_writer(&mut stdout, &v)?;
        stdout.write_all(b"\n")?;
        stdout.flush()
    };
    loop {
        let (frame, dropped) = match &out {
            JsonIn::Mailbox(m) => (m.wait(Duration::from_millis(100)), m.dropped()),
            JsonIn::Queue(q) => (q.recv_timeout(Duration::from_millis(100)).ok(), 0),
        };
        let finished = producer.is_finished();
        if let Some(frame) = frame {
            // A new filter starts a new series of intervals.
            if prev
                .as_ref()
                .is_some_and(|p| p.filter_gen != frame.filter_gen)
            {
                prev = None;
            }
            let final_frame = matches!(frame.source, SourceInfo::Replay { done: true, .. });
            let due = prev
                .as_ref()
                .is_none_or(|p| frame.at_ns - p.at_ns >= 1_000_000_000)
                || final_frame;
            if due {
                if (prev.as_ref().is_none_or(|p| p.at_ns < frame.at_ns) || final_frame)
                    && let Err(e) = print(&frame, &prev, dropped)
                {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        break;
                    }
                    return Err(e.into());
                }
                prev = Some(frame.clone());
            }
            last_printed = Some(frame);
            continue;
        }
        if signals.received().is_some() || finished {
            // The last frame, if the interval was not printed yet.
            if let Some(l) = &last_printed
                && prev.as_ref().is_some_and(|p| p.seq < l.seq)
            {
                let _ = print(l, &prev, 0);
            }
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(())
}

enum JsonIn {
    Mailbox(Arc<Mailbox>),
    Queue(mpsc::Receiver<Frame>),
}

pub fn top(args: TopArgs) -> Result<ExitCode> {
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        return Err(UsageError::Message(format!(
            "--speed {}: give a pace of 0 (as fast as possible) or more, like 1 or 10",
            args.speed
        ))
        .into());
    }
    let mut filter: Filter = match &args.filter {
        Some(text) => {
            parse_filter(text).map_err(|e| UsageError::Message(format!("--filter: {e}")))?
        }
        None => Filter::default(),
    };
    // The filter flags are words of the same filter (AND across kinds).
    let before = filter.clone();
    // The capture's filter flags (in the kernel when live) are also words
    // of the op filter, so a replay honours them and the / box shows them.
    args.capture.filter.apply(&mut filter);
    if before.protocol.is_some_and(|p| Some(p) != filter.protocol)
        || before
            .direction
            .is_some_and(|d| Some(d) != filter.direction)
        || before
            .ip_version
            .is_some_and(|v| Some(v) != filter.ip_version)
    {
        return Err(UsageError::Message(
            "--filter and the filter flags ask for two different protocols, directions or IP versions".into(),
        )
        .into());
    }
    if !(args.json || io::stdout().is_terminal() && io::stdin().is_terminal()) {
        return Err(UsageError::Message(
            "top needs a terminal; use --json for one JSON object per second on stdout".into(),
        )
        .into());
    }
    let control = Arc::new(Control::default());
    let stop = Arc::new(AtomicBool::new(false));
    let signals = StopSignals::install(SecondInterrupt::Ignored)?;
    let deadline = args.duration.map(|d| Instant::now() + d);
    let (out, json_in, mailbox) = if args.json && args.replay.is_some() {
        let (tx, rx) = mpsc::sync_channel(4);
        (Out::Queue(tx), Some(JsonIn::Queue(rx)), None)
    } else {
        let m = Arc::new(Mailbox::default());
        (
            Out::Mailbox(Arc::clone(&m)),
            args.json.then(|| JsonIn::Mailbox(Arc::clone(&m))),
            Some(m),
        )
    };

    let producer_done = Arc::new(AtomicBool::new(false));
    let producer = if let Some(dir) = &args.replay {
        // In a replay, --pid and --comm are filters like the others.
        filter.pids.extend(&args.capture.pids);
        filter.comms.extend(args.capture.comms.iter().cloned());
        control.set_filter(filter.clone());
        let files = replay_files(dir)?;
        let (path, speed, c, s) = (
            dir.display().to_string(),
            args.speed,
            Arc::clone(&control),
            Arc::clone(&stop),
        );
        let out = out.clone();
        std::thread::Builder::new()
            .name("nwtrace-replay".into())
            .spawn({
                let done = Arc::clone(&producer_done);
                move || {
                    let e = replay(path, files, speed, c, out, s);
                    done.store(true, Ordering::Relaxed);
                    e
                }
            })
            .context("starting the replay thread")?
    } else {
        control.set_filter(filter.clone());
        let start_secs = now_epoch_secs();
        let output = match &args.record {
            Some(dir) => {
                let o = args.output_args(dir);
                let names = validate_output(&o, start_secs)?;
                Some((o, names, start_secs))
            }
            None => None,
        };
        validate_pids(&args.capture.pids)?;
        let (tx, rx) = mpsc::channel();
        let (a, c, s, o) = (
            args.clone(),
            Arc::clone(&control),
            Arc::clone(&stop),
            out.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("nwtrace-capture".into())
            .spawn({
                let done = Arc::clone(&producer_done);
                move || {
                    let e = live(&a, output, c, o, s, tx, deadline);
                    done.store(true, Ordering::Relaxed);
                    e
                }
            })
            .context("starting the capture thread")?;
        // A failed start is reported before the screen is touched.
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                let _ = handle.join();
                anyhow::bail!("the capture thread ended before it started");
            }
        }
        handle
    };
    drop(out);

    let logs = LogBuffer::default();
    let result = match json_in {
        Some(j) => run_json(j, &stop, &signals, &producer),
        None => {
            let screen_done = Arc::new(AtomicBool::new(false));
            watchdog(
                Arc::clone(&screen_done),
                Arc::clone(&stop),
                Arc::clone(&producer_done),
            )?;
            crate::logging::redirect(Some(Box::new(logs.clone())));
            let r = run_screen(
                mailbox.as_deref().expect("a mailbox for the screen"),
                &control,
                &stop,
                &signals,
                &producer,
                &logs,
                &crate::analysis::filter_text(&filter),
            );
            screen_done.store(true, Ordering::Relaxed);
            crate::logging::redirect(None);
            r
        }
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(m) = &mailbox {
        m.close();
    }
    // The terminal is restored by now: what was logged meanwhile goes to
    // stderr, then the producer's summary.
    for line in logs.lines() {
        log::info!("{line}");
    }
    let ended = match producer.join() {
        Ok(e) => e,
        Err(_) => Ended {
            failed: true,
            summary: vec!["nwtrace: the capture thread panicked".into()],
        },
    };
    for line in &ended.summary {
        log::info!("{line}");
    }
    result?;
    Ok(if ended.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Ends the process cleanly when the screen cannot: when the terminal goes
/// away (SIGHUP from a closed window), crossterm's reader spins on the
/// end of its input and never returns to the loop that checks signals.
/// After a stop signal, the screen gets 2 s to end by itself; then this
/// restores the terminal, stops the capture, waits for it to finish (the
/// recording's manifest is finalised then) and exits.
fn watchdog(
    screen_done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    producer_done: Arc<AtomicBool>,
) -> Result<()> {
    let signals = StopSignals::install(SecondInterrupt::Ignored)?;
    std::thread::Builder::new()
        .name("nwtrace-watchdog".into())
        .spawn(move || {
            let mut since: Option<Instant> = None;
            while !screen_done.load(Ordering::Relaxed) {
                if since.is_none() && signals.received().is_some() {
                    since = Some(Instant::now());
                }
                if since.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
                    restore_terminal();
                    stop.store(true, Ordering::Relaxed);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !producer_done.load(Ordering::Relaxed) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .context("starting the watchdog thread")?;
    Ok(())
}

/// For `top --record DIR`: the output options of record, with DIR.
impl TopArgs {
    pub fn output_args(&self, dir: &Path) -> OutputArgs {
        OutputArgs {
            output_dir: Some(PathBuf::from(dir)),
            machine_id: self.machine_id.clone(),
            timestamp: self.timestamp.clone(),
            rotate_size: self.rotate_size,
            max_files: self.max_files,
            max_size: self.max_size,
            // top --record keeps record's plain files; compression, age
            // retention and shipping are record's (and the service's).
            compress: Default::default(),
            max_age: None,
            on_close: None,
        }
    }
}
