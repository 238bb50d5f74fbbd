//! The CSV writer as a consumer: each event becomes one row in the
//! rotating files of the run folder.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::capture::event::NetEvent;
use crate::output::consumer::{CaptureHealth, Consumer, StopReason};
use crate::output::row::RowFormatter;
use crate::output::sink::{CsvSink, SinkError};
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
}

impl CsvConsumer {
    pub fn new(sink: CsvSink) -> Self {
        CsvConsumer {
            sink,
            formatter: RowFormatter::new(),
            last_flush: Instant::now(),
            last_expire: Instant::now(),
            failure: None,
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
        }
        self.failed()
    }

    fn on_tick(&mut self, _health: &CaptureHealth) -> ControlFlow<StopReason> {
        if self.last_expire.elapsed() >= EXPIRE_INTERVAL {
            self.last_expire = Instant::now();
            self.sink.expire_by_age();
        }
        if self.last_flush.elapsed() >= FLUSH_INTERVAL {
            return self.flush();
        }
        self.failed()
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        self.flush()
    }
}
