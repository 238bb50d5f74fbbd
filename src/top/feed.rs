//! The data side of `top`: ops in, frames out.
//!
//! A [`Feed`] folds every op into one cumulative [`Aggregate`] (the core
//! that `report` uses) off the capture thread: on the aggregator thread
//! live, on the reader thread in a replay. Every [`FRAME_NS`] of feed
//! time it publishes a [`Frame`]: a shared copy of the aggregate, the
//! copies of the last seconds (rate windows are differences of two of
//! them), the most recent ops (for the drill-down) and the capture's
//! health. Frames go into a [`Mailbox`] that keeps only the newest: when
//! the screen falls behind, frames are dropped (and counted), never ops.
//!
//! Time here is the feed's clock, given by the caller: the wall clock
//! live, the recording's own timestamps in a replay, anything in a test.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::analysis::{Aggregate, AggregateConfig, Filter, Op, Source};

/// How often a frame is published, in feed time.
pub const FRAME_NS: i64 = 500_000_000;
/// How far apart the kept copies are, and how many seconds they cover.
const HISTORY_STEP_NS: i64 = 1_000_000_000;
const HISTORY_SPAN_NS: i64 = 11_000_000_000;
/// Ops kept for the drill-down's "slowest recent ops".
pub const RECENT_OPS: usize = 4096;

/// The bounds of top's tables: enough rows for a screen and for sorting
/// by any column, small enough that a copy per frame is cheap.
pub fn top_config() -> AggregateConfig {
    AggregateConfig {
        max_processes: 256,
        max_conversations: 512,
        max_remotes: 512,
        max_ports: 512,
        max_errors: 256,
        max_flag_combos: 64,
        max_groups: 256,
        max_peers_per_process: 256,
        exemplars: 10,
    }
}

/// A copy of the aggregate at one instant of feed time.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub at_ns: i64,
    pub agg: Arc<Aggregate>,
}

/// Where the ops come from, for the header and the health view.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceInfo {
    Live {
        backend: String,
    },
    Replay {
        path: String,
        /// 0: as fast as possible.
        speed: f64,
        /// Every row has been read.
        done: bool,
        files: usize,
    },
}

/// The capture's own figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Events (live) or rows (replay) read, before the filter.
    pub events: u64,
    pub events_lost: u64,
    pub malformed: u64,
    /// Rows written by `--record`, when recording.
    pub rows_recorded: Option<u64>,
    /// Where `--record` writes.
    pub record_dir: Option<String>,
    /// Ops the view skipped because its aggregator fell that far behind
    /// (live; the capture and the recording have them).
    pub view_skipped: u64,
    /// Unread bytes in the ring buffer after the last drain, and its size
    /// (live only).
    pub ring_used: u64,
    pub ring_size: u64,
    /// Operations not written, by reason (live only): `--sample`,
    /// `--rate-limit`, the row filters. The view counts written ops only.
    pub sampled_out: u64,
    pub rate_limited: u64,
    pub filtered: u64,
}

/// What the screen or the JSON writer renders.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: u64,
    pub at_ns: i64,
    pub source: SourceInfo,
    pub health: Health,
    /// Health at the start of each kept copy (for events/s), oldest first.
    pub health_history: Vec<(i64, Health)>,
    /// When counting began (the start, or the last filter change).
    pub started_ns: i64,
    /// The filter the counts are under, and its generation.
    pub filter: Filter,
    pub filter_gen: u64,
    pub cur: Snapshot,
    /// Older copies, oldest first, about a second apart; the first is the
    /// empty aggregate at `started_ns`.
    pub history: Vec<Snapshot>,
    /// The latest ops that passed the filter, oldest first.
    pub recent: Arc<Vec<Op>>,
}

/// A filter sent by the screen to the feed; the feed starts counting
/// afresh under it.
#[derive(Default)]
pub struct Control {
    state: Mutex<(u64, Filter)>,
}

impl Control {
    pub fn set_filter(&self, filter: Filter) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        s.1 = filter;
    }

    fn current(&self) -> (u64, Filter) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn generation(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// The newest frame, waiting for the screen. Putting a frame over one
/// that was never taken counts a dropped update.
#[derive(Default)]
pub struct Mailbox {
    slot: Mutex<Option<Frame>>,
    ready: Condvar,
    dropped: AtomicU64,
    closed: Mutex<bool>,
}

impl Mailbox {
    pub fn put(&self, frame: Frame) {
        let mut s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if s.replace(frame).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_all();
    }

    pub fn take(&self) -> Option<Frame> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Waits up to `timeout` for a frame.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<Frame> {
        let s = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (mut s, _) = self
            .ready
            .wait_timeout_while(s, timeout, |s| s.is_none() && !self.is_closed())
            .unwrap_or_else(|e| e.into_inner());
        s.take()
    }

    /// Frames replaced before the screen took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The producer has finished: no frame will come after the one in
    /// the slot.
    pub fn close(&self) {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.ready.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Feed {
    config: AggregateConfig,
    control: Arc<Control>,
    filter_gen: u64,
    filter: Filter,
    agg: Aggregate,
    started_ns: Option<i64>,
    history: VecDeque<Snapshot>,
    health_history: VecDeque<(i64, Health)>,
    recent: VecDeque<Op>,
    last_frame_ns: Option<i64>,
    seq: u64,
    line: u64,
    pub source: SourceInfo,
    pub health: Health,
}

impl Feed {
    pub fn new(config: AggregateConfig, control: Arc<Control>, source: SourceInfo) -> Feed {
        let (filter_gen, filter) = control.current();
        Feed {
            config,
            control,
            filter_gen,
            filter,
            agg: Aggregate::new(config),
            started_ns: None,
            history: VecDeque::new(),
            health_history: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT_OPS),
            last_frame_ns: None,
            seq: 0,
            line: 0,
            source,
            health: Health::default(),
        }
    }

    /// Counts one op (if it passes the filter).
    #[inline]
    pub fn add(&mut self, op: &Op) {
        if !self.filter.matches(op) {
            return;
        }
        self.line += 1;
        self.agg.add(
            op,
            Source {
                file: 0,
                line: self.line,
            },
        );
        if self.recent.len() == RECENT_OPS {
            self.recent.pop_front();
        }
        self.recent.push_back(*op);
    }

    /// Starts counting at `now_ns` if not started yet (the first tick or
    /// the first op, whichever the caller has first).
    pub fn start_at(&mut self, now_ns: i64) {
        if self.started_ns.is_none() {
            self.started_ns = Some(now_ns);
            self.history.push_back(Snapshot {
                at_ns: now_ns,
                agg: Arc::new(Aggregate::new(self.config)),
            });
            self.health_history.push_back((now_ns, self.health.clone()));
        }
    }

    /// The screen has set a new filter since this feed took its own.
    pub fn filter_changed(&self) -> bool {
        self.control.generation() != self.filter_gen
    }

    /// Takes a filter change from the screen: counting starts afresh.
    /// Returns true when the filter changed.
    pub fn poll_control(&mut self, now_ns: i64) -> bool {
        if self.control.generation() == self.filter_gen {
            return false;
        }
        let (filter_gen, filter) = self.control.current();
        self.filter_gen = filter_gen;
        self.filter = filter;
        self.agg = Aggregate::new(self.config);
        self.history.clear();
        self.health_history.clear();
        self.recent.clear();
        self.started_ns = None;
        self.start_at(now_ns);
        self.last_frame_ns = None;
        true
    }

    /// When the last frame was made.
    pub fn last_tick_ns(&self) -> Option<i64> {
        self.last_frame_ns
    }

    /// A frame when one is due at `now_ns` (or when `force`).
    pub fn tick(&mut self, now_ns: i64, force: bool) -> Option<Frame> {
        self.start_at(now_ns);
        let due = self
            .last_frame_ns
            .is_none_or(|t| now_ns - t >= FRAME_NS || now_ns < t);
        if !(due || force) {
            return None;
        }
        Some(self.frame(now_ns))
    }

    /// A frame of the state at `now_ns`, now.
    pub fn frame(&mut self, now_ns: i64) -> Frame {
        self.start_at(now_ns);
        self.last_frame_ns = Some(now_ns);
        self.agg.flush();
        let cur = Snapshot {
            at_ns: now_ns,
            agg: Arc::new(self.agg.clone()),
        };
        if self
            .history
            .back()
            .is_none_or(|s| now_ns - s.at_ns >= HISTORY_STEP_NS)
        {
            self.history.push_back(cur.clone());
            self.health_history.push_back((now_ns, self.health.clone()));
        }
        // Keep one copy at least the span old, so a 10 s window has a
        // start as long as the feed has run that long.
        while self.history.len() > 2 && now_ns - self.history[1].at_ns >= HISTORY_SPAN_NS {
            self.history.pop_front();
            self.health_history.pop_front();
        }
        self.seq += 1;
        Frame {
            seq: self.seq,
            at_ns: now_ns,
            source: self.source.clone(),
            health: self.health.clone(),
            health_history: self.health_history.iter().cloned().collect(),
            started_ns: self.started_ns.unwrap_or(now_ns),
            filter: self.filter.clone(),
            filter_gen: self.filter_gen,
            cur,
            history: self.history.iter().cloned().collect(),
            recent: Arc::new(self.recent.iter().copied().collect()),
        }
    }
}
