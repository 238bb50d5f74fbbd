//! The CSV writer as a consumer: each event becomes one row in the
//! rotating files of the run folder.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::capture::consumer::{CaptureHealth, Consumer, StopReason};
use crate::capture::event::NetEvent;
use crate::capture::sampling::UnwrittenFlow;
use crate::output::on_close::{FileKind, OnClose};
use crate::output::row::RowFormatter;
use crate::output::sink::{CsvSink, SinkError};
use crate::output::summary::{SummaryBuilder, SummaryThread};
use crate::output::unwritten::UnwrittenAcc;
use crate::timefmt::WallClock;

/// Rows reach the files at least this often, so a SIGKILL loses at most
/// about this much.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How often --max-age looks for expired files between rotations.
const EXPIRE_INTERVAL: Duration = Duration::from_secs(60);

pub struct CsvConsumer {
    sink: CsvSink,
    formatter: RowFormatter,
    last_flush: Instant,
    last_expire: Instant,
    /// The first write error; every later event is a lost row.
    failure: Option<SinkError>,
    /// `--on-close`: finished files go to the operator's command.
    on_close: Option<OnClose>,
    /// The run summary being built (`record`), on its own thread: fed
    /// here, beside the rows, because it needs to know which file each
    /// row went to.
    summary: Option<SummaryThread>,
    /// The summary's builder, once the thread has finished.
    summary_done: Option<SummaryBuilder>,
    /// The sink's file count when the journal last heard of a rotation.
    files_journaled: usize,
    /// The counts of operations thinning left out, for the summary.
    unwritten: Option<UnwrittenAcc>,
}

impl CsvConsumer {
    pub fn new(sink: CsvSink) -> Self {
        Self::with_formatter(sink, RowFormatter::new())
    }

    /// As [`CsvConsumer::new`], with rows made by `formatter` (optional
    /// columns); the sink's header must match it.
    pub fn with_formatter(sink: CsvSink, formatter: RowFormatter) -> Self {
        CsvConsumer {
            sink,
            formatter,
            last_flush: Instant::now(),
            last_expire: Instant::now(),
            failure: None,
            on_close: None,
            summary: None,
            summary_done: None,
            files_journaled: 1,
            unwritten: None,
        }
    }

    /// Builds the run summary (`nw/summary.json`) from every row written,
    /// on a thread of its own. If that thread cannot be started, the run
    /// has no summary (logged).
    pub fn enable_summary(&mut self) {
        match SummaryThread::start(SummaryBuilder::for_columns(self.formatter.columns())) {
            Ok(t) => self.summary = Some(t),
            Err(e) => log::error!("nwtrace: cannot start the summary thread ({e}): no summary"),
        }
    }

    /// What thinning left out, once: call after `finish`.
    pub fn take_unwritten(&mut self) -> Option<UnwrittenAcc> {
        self.unwritten.take()
    }

    /// The summary builder, once: call after `finish`.
    pub fn take_summary(&mut self) -> Option<SummaryBuilder> {
        self.summary_done.take()
    }

    /// Hands every finished file to `on_close` from now on.
    pub fn with_on_close(mut self, mut on_close: OnClose) -> Self {
        on_close.note_open(self.sink.current_path());
        self.on_close = Some(on_close);
        self
    }

    pub fn on_close(&self) -> Option<&OnClose> {
        self.on_close.as_ref()
    }

    pub fn on_close_mut(&mut self) -> Option<&mut OnClose> {
        self.on_close.as_mut()
    }

    /// Queues the files finished since the last call, and journals the
    /// one being written now.
    fn hand_over_closed(&mut self) {
        if let Some(on_close) = self.on_close.as_mut() {
            for path in self.sink.take_closed() {
                on_close.hand_over(path, FileKind::Csv);
            }
            on_close.note_open(self.sink.current_path());
        }
    }

    /// Journals a rotation when it happens (the finished files queued, the
    /// new one open) rather than at the next tick: a run killed in between
    /// would leave a file that no journal names, and that no later start
    /// would hand over.
    fn journal_rotation(&mut self) {
        if self.on_close.is_some() && self.sink.files().len() != self.files_journaled {
            self.files_journaled = self.sink.files().len();
            self.hand_over_closed();
        }
    }

    pub fn sink(&self) -> &CsvSink {
        &self.sink
    }

    fn failed(&self) -> ControlFlow<StopReason> {
        match &self.failure {
            Some(e) => ControlFlow::Break(StopReason::ConsumerFailed(format!("write error: {e}"))),
            None => ControlFlow::Continue(()),
        }
    }

    fn flush(&mut self) -> ControlFlow<StopReason> {
        if self.failure.is_none()
            && let Err(e) = self.sink.flush()
        {
            self.failure = Some(e);
        }
        self.last_flush = Instant::now();
        self.journal_rotation();
        self.failed()
    }
}

impl Consumer for CsvConsumer {
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason> {
        if self.failure.is_some() {
            // The sink is broken: every later event is a lost row.
            self.sink.count_lost(1);
            return self.failed();
        }
        let formatter = &mut self.formatter;
        if let Err(e) = self
            .sink
            .append_row(|buf| formatter.write_row(buf, event, clock))
        {
            self.failure = Some(e);
        } else if let Some(summary) = self.summary.as_mut() {
            summary.add(event, clock, &self.sink);
        }
        self.journal_rotation();
        self.failed()
    }

    fn on_tick(&mut self, _health: &CaptureHealth) -> ControlFlow<StopReason> {
        if let Some(summary) = self.summary.as_mut() {
            summary.tick(&self.sink);
        }
        self.hand_over_closed();
        if self.last_expire.elapsed() >= EXPIRE_INTERVAL {
            self.last_expire = Instant::now();
            self.sink.expire_by_age();
        }
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            return self.flush();
        }
        self.failed()
    }

    fn on_unwritten(
        &mut self,
        flows: &[UnwrittenFlow],
        clock: &WallClock,
    ) -> ControlFlow<StopReason> {
        self.unwritten
            .get_or_insert_with(UnwrittenAcc::default)
            .add(flows, clock);
        ControlFlow::Continue(())
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        let flushed = self.flush();
        if let Some(mut summary) = self.summary.take() {
            self.summary_done = summary.finish(&self.sink);
        }
        self.hand_over_closed();
        // The current file is complete now too (whole rows only, even
        // after a write error).
        let last = self.sink.current_path();
        if let Some(on_close) = self.on_close.as_mut() {
            on_close.hand_over(last, FileKind::Csv);
        }
        flushed
    }
}
