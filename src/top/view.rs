//! From a frame to the figures on screen (and in `--json`): rates over a
//! window are the difference of two cumulative copies of the aggregate,
//! divided by the feed time between them. Pure functions of the frame.

use std::cmp::Ordering;

use crate::analysis::{
    Aggregate, ConvKey, ErrKey, LatClass, LatencyHist, LatencySummary, Op, PortKey, ProcKey,
    SparseHist, Sym,
    aggregate::{Counters, GroupKey},
};
use crate::schema::{Direction, Endpoint, Protocol};

use super::feed::{Frame, Health};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    One,
    Ten,
    Cumulative,
}

impl Window {
    pub fn next(self) -> Window {
        match self {
            Window::One => Window::Ten,
            Window::Ten => Window::Cumulative,
            Window::Cumulative => Window::One,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Window::One => "1s",
            Window::Ten => "10s",
            Window::Cumulative => "cumulative",
        }
    }

    fn span_ns(self) -> Option<i64> {
        match self {
            Window::One => Some(1_000_000_000),
            Window::Ten => Some(10_000_000_000),
            Window::Cumulative => None,
        }
    }
}

/// The other end of a window: the aggregate to subtract (none for
/// cumulative) and the seconds between.
pub struct Base<'a> {
    pub old: Option<&'a Aggregate>,
    pub old_health: Option<&'a Health>,
    /// Seconds covered (at least a millisecond).
    pub secs: f64,
    /// True: figures are per second; false: totals since the start.
    pub per_second: bool,
}

/// Picks the newest copy at least the window old (or the oldest there
/// is, when the feed has not run that long).
pub fn base(frame: &Frame, window: Window) -> Base<'_> {
    let now = frame.at_ns;
    let Some(span) = window.span_ns() else {
        return Base {
            old: None,
            old_health: None,
            secs: ((now - frame.started_ns) as f64 / 1e9).max(1e-3),
            per_second: false,
        };
    };
    let pick = frame
        .history
        .iter()
        .rposition(|s| now - s.at_ns >= span)
        .unwrap_or(0);
    let (old, old_at) = match frame.history.get(pick) {
        Some(s) if s.at_ns < now => (Some(&*s.agg), s.at_ns),
        _ => (None, frame.started_ns),
    };
    let old_health = frame
        .health_history
        .iter()
        .rev()
        .find(|(t, _)| *t <= old_at)
        .map(|(_, h)| h);
    Base {
        old,
        old_health,
        secs: ((now - old_at) as f64 / 1e9).max(1e-3),
        per_second: true,
    }
}

impl Base<'_> {
    fn scale(&self, v: u64) -> f64 {
        if self.per_second {
            v as f64 / self.secs
        } else {
            v as f64
        }
    }
}

/// The sort columns every table shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortCol {
    /// The row's key (pid, endpoint, ...), ascending by default.
    Key,
    Ops,
    Sent,
    Recv,
    /// Sent + received bytes: the default.
    Bytes,
    P50,
    P99,
    Errors,
}

impl SortCol {
    pub fn label(self) -> &'static str {
        match self {
            SortCol::Key => "key",
            SortCol::Ops => "ops",
            SortCol::Sent => "sent",
            SortCol::Recv => "received",
            SortCol::Bytes => "sent+received",
            SortCol::P50 => "p50",
            SortCol::P99 => "p99",
            SortCol::Errors => "errors",
        }
    }
}

/// A row's identity, so that order and selection survive new figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowKey {
    Proc(ProcKey),
    Conv(ConvKey),
    Remote(Protocol, Option<Endpoint>),
    Port(PortKey),
    Err(ErrKey),
    Flags(Direction, u32),
    /// A container (the empty id: the host).
    Container(GroupKey<Sym>),
    /// The table's "other" bucket (keys past its bound).
    Other,
}

/// The figures of one row over the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub ops: f64,
    pub sent: f64,
    pub recv: f64,
    pub retry_errors: f64,
    pub hard_errors: f64,
    /// Over the window (cumulative: everything).
    pub latency: Option<LatencySummary>,
    /// Cumulative totals, whatever the window.
    pub total_ops: u64,
    pub total_bytes: u64,
}

impl Figures {
    pub fn errors(&self) -> f64 {
        self.retry_errors + self.hard_errors
    }

    fn sort_value(&self, col: SortCol) -> f64 {
        match col {
            SortCol::Key => 0.0,
            SortCol::Ops => self.ops,
            SortCol::Sent => self.sent,
            SortCol::Recv => self.recv,
            SortCol::Bytes => self.sent + self.recv,
            SortCol::P50 => self.latency.map_or(-1.0, |l| l.p50 as f64),
            SortCol::P99 => self.latency.map_or(-1.0, |l| l.p99 as f64),
            SortCol::Errors => self.errors(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    pub key: RowKey,
    pub fig: Figures,
    /// Extra figure: distinct peers (processes), or whether the peer
    /// closed (conversations).
    pub peers: Option<u64>,
    pub end_of_stream: bool,
}

/// Orders rows by `col` (descending when `desc`), ties by key ascending,
/// so equal figures never swap places.
pub fn sort_rows(rows: &mut [TableRow], col: SortCol, desc: bool) {
    rows.sort_by(|a, b| {
        let o = if col == SortCol::Key {
            a.key.cmp(&b.key)
        } else {
            a.fig
                .sort_value(col)
                .partial_cmp(&b.fig.sort_value(col))
                .unwrap_or(Ordering::Equal)
        };
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.key.cmp(&b.key))
    });
}

fn delta(cur: &Counters, old: Option<&Counters>) -> Counters {
    let Some(old) = old else { return cur.clone() };
    let mut d = cur.clone();
    for i in 0..2 {
        d.ops[i] = cur.ops[i].saturating_sub(old.ops[i]);
        d.bytes[i] = cur.bytes[i].saturating_sub(old.bytes[i]);
    }
    d.retry_errors = cur.retry_errors.saturating_sub(old.retry_errors);
    d.hard_errors = cur.hard_errors.saturating_sub(old.hard_errors);
    d
}

fn figures(cur: &Counters, old: Option<&Counters>, b: &Base<'_>) -> Figures {
    let d = delta(cur, old);
    Figures {
        ops: b.scale(d.total_ops()),
        sent: b.scale(d.bytes[0]),
        recv: b.scale(d.bytes[1]),
        retry_errors: b.scale(d.retry_errors),
        hard_errors: b.scale(d.hard_errors),
        latency: None,
        total_ops: cur.total_ops(),
        total_bytes: cur.total_bytes(),
    }
}

fn merged(hists: &[SparseHist]) -> SparseHist {
    let mut out = SparseHist::default();
    for h in hists {
        out.merge(h);
    }
    out
}

/// The latency recorded over the window: the current histogram less the
/// old one. `None` when nothing was recorded in the window.
pub fn window_hist(cur: Option<LatencyHist>, old: Option<LatencyHist>) -> Option<LatencyHist> {
    let cur = cur?;
    let h = match old {
        Some(old) => cur.since(&old)?,
        None => cur,
    };
    (!h.is_empty()).then_some(h)
}

/// The same for the per-key (sparse) histograms.
pub fn window_sparse(cur: &SparseHist, old: Option<&SparseHist>) -> Option<SparseHist> {
    let h = match old {
        Some(old) => cur.since(old)?,
        None => cur.clone(),
    };
    (!h.is_empty()).then_some(h)
}

fn window_summary(cur: &[SparseHist], old: Option<&[SparseHist]>) -> Option<LatencySummary> {
    let old = old.map(merged);
    window_sparse(&merged(cur), old.as_ref()).map(|h| h.summary())
}

pub fn processes(frame: &Frame, b: &Base<'_>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .processes
        .iter()
        .map(|(k, v)| {
            let old = b.old.and_then(|o| o.processes.get(k));
            let mut fig = figures(&v.c, old.map(|o| &o.c), b);
            fig.latency = window_summary(&v.latency, old.map(|o| &o.latency[..]));
            TableRow {
                key: RowKey::Proc(*k),
                fig,
                peers: Some(v.peers.len() as u64),
                end_of_stream: false,
            }
        })
        .collect();
    push_other(
        &mut rows,
        &agg.processes.other().c,
        b.old.map(|o| &o.processes.other().c),
        b,
    );
    rows
}

fn push_other(rows: &mut Vec<TableRow>, cur: &Counters, old: Option<&Counters>, b: &Base<'_>) {
    if cur.total_ops() > 0 {
        rows.push(TableRow {
            key: RowKey::Other,
            fig: figures(cur, old, b),
            peers: None,
            end_of_stream: false,
        });
    }
}

/// Ops by container, the host as its own row (only ops whose source has
/// the Container ID column).
pub fn containers(frame: &Frame, b: &Base<'_>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .containers
        .iter()
        .map(|(k, v)| {
            let old = b.old.and_then(|o| o.containers.get(k));
            let mut fig = figures(&v.c, old.map(|o| &o.c), b);
            fig.latency = window_summary(&v.latency, old.map(|o| &o.latency[..]));
            TableRow {
                key: RowKey::Container(*k),
                fig,
                peers: Some(v.peers.len() as u64),
                end_of_stream: false,
            }
        })
        .collect();
    push_other(
        &mut rows,
        &agg.containers.other().c,
        b.old.map(|o| &o.containers.other().c),
        b,
    );
    rows
}

/// Conversations, all or those of one process.
pub fn conversations(frame: &Frame, b: &Base<'_>, of: Option<&ProcKey>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .conversations
        .iter()
        // A cookie conversation shows (and belongs to the process of) its
        // earliest op, as in report.
        .map(|(k, v)| (v.shown(k), v))
        .filter(|(k, _)| {
            of.is_none_or(|p| p.machine == k.machine && p.pid == k.pid && p.comm == k.comm)
        })
        .map(|(k, v)| {
            let k = &k;
            let old = b.old.and_then(|o| o.conversations.get(k));
            let mut fig = figures(&v.c, old.map(|o| &o.c), b);
            fig.latency = window_summary(&v.latency, old.map(|o| &o.latency[..]));
            TableRow {
                key: RowKey::Conv(*k),
                fig,
                peers: None,
                end_of_stream: v.end_of_stream,
            }
        })
        .collect();
    if of.is_none() {
        push_other(
            &mut rows,
            &agg.conversations.other().c,
            b.old.map(|o| &o.conversations.other().c),
            b,
        );
    }
    rows
}

pub fn remotes(frame: &Frame, b: &Base<'_>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .remotes
        .iter()
        .map(|(k, v)| {
            let old = b.old.and_then(|o| o.remotes.get(k));
            TableRow {
                key: RowKey::Remote(k.0, k.1),
                fig: figures(&v.c, old.map(|o| &o.c), b),
                peers: None,
                end_of_stream: false,
            }
        })
        .collect();
    push_other(
        &mut rows,
        &agg.remotes.other().c,
        b.old.map(|o| &o.remotes.other().c),
        b,
    );
    rows
}

pub fn ports(frame: &Frame, b: &Base<'_>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .ports
        .iter()
        .map(|(k, v)| TableRow {
            key: RowKey::Port(*k),
            fig: figures(v, b.old.and_then(|o| o.ports.get(k)), b),
            peers: None,
            end_of_stream: false,
        })
        .collect();
    push_other(
        &mut rows,
        agg.ports.other(),
        b.old.map(|o| o.ports.other()),
        b,
    );
    rows
}

pub fn errors(frame: &Frame, b: &Base<'_>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .errors
        .iter()
        .map(|(k, v)| TableRow {
            key: RowKey::Err(*k),
            fig: figures(v, b.old.and_then(|o| o.errors.get(k)), b),
            peers: None,
            end_of_stream: false,
        })
        .collect();
    push_other(
        &mut rows,
        agg.errors.other(),
        b.old.map(|o| o.errors.other()),
        b,
    );
    rows
}

pub fn flags(frame: &Frame, b: &Base<'_>) -> Vec<TableRow> {
    let agg = &frame.cur.agg;
    let mut rows: Vec<TableRow> = agg
        .flag_combos
        .iter()
        .map(|(k, v)| TableRow {
            key: RowKey::Flags(k.0, k.1),
            fig: figures(v, b.old.and_then(|o| o.flag_combos.get(k)), b),
            peers: None,
            end_of_stream: false,
        })
        .collect();
    push_other(
        &mut rows,
        agg.flag_combos.other(),
        b.old.map(|o| o.flag_combos.other()),
        b,
    );
    rows
}

/// Ops without flags (write/read/io_uring), by direction, over the
/// window.
pub fn no_flags(frame: &Frame, b: &Base<'_>) -> [f64; 2] {
    let cur = frame.cur.agg.no_flags;
    let old = b.old.map_or([0, 0], |o| o.no_flags);
    [
        b.scale(cur[0].saturating_sub(old[0])),
        b.scale(cur[1].saturating_sub(old[1])),
    ]
}

/// One line of the latency table.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyLine {
    pub class: LatClass,
    pub protocol: Protocol,
    /// Ops with a latency, per second (or in total when cumulative).
    pub rate: f64,
    pub summary: LatencySummary,
}

pub fn latency(frame: &Frame, b: &Base<'_>) -> Vec<LatencyLine> {
    let mut out = Vec::new();
    for (&(class, protocol), h) in &frame.cur.agg.latency {
        let old = b
            .old
            .and_then(|o| o.latency.get(&(class, protocol)).cloned());
        if let Some(w) = window_hist(Some(h.clone()), old) {
            out.push(LatencyLine {
                class,
                protocol,
                rate: b.scale(w.count()),
                summary: w.summary(),
            });
        }
    }
    out
}

/// Totals over the window: ops, sent, received, errors.
pub fn totals(frame: &Frame, b: &Base<'_>) -> Figures {
    let t = &frame.cur.agg.totals;
    let (o_ops, o_sent, o_recv, o_retry, o_hard) = b.old.map_or((0, 0, 0, 0, 0), |o| {
        let t = &o.totals;
        (
            t.ops,
            t.bytes_sent,
            t.bytes_received,
            t.retry_errors,
            t.hard_errors,
        )
    });
    Figures {
        ops: b.scale(t.ops.saturating_sub(o_ops)),
        sent: b.scale(t.bytes_sent.saturating_sub(o_sent)),
        recv: b.scale(t.bytes_received.saturating_sub(o_recv)),
        retry_errors: b.scale(t.retry_errors.saturating_sub(o_retry)),
        hard_errors: b.scale(t.hard_errors.saturating_sub(o_hard)),
        latency: None,
        total_ops: t.ops,
        total_bytes: t.bytes_sent + t.bytes_received,
    }
}

/// Events and lost events per second (or in total) over the window.
pub fn health_rates(frame: &Frame, b: &Base<'_>) -> (f64, f64) {
    let h = &frame.health;
    let (e, l) = b.old_health.map_or((0, 0), |o| (o.events, o.events_lost));
    (
        b.scale(h.events.saturating_sub(e)),
        b.scale(h.events_lost.saturating_sub(l)),
    )
}

/// A conversation's latency per direction over the window.
pub fn conversation_latency(frame: &Frame, b: &Base<'_>, key: &ConvKey) -> [Option<SparseHist>; 2] {
    let cur = frame.cur.agg.conversations.get(key);
    let old = b.old.and_then(|o| o.conversations.get(key));
    let one = |d: usize| window_sparse(&cur?.latency[d], old.map(|o| &o.latency[d]));
    [one(0), one(1)]
}

/// The slowest of the recent ops of one conversation, slowest first.
pub fn slowest_recent(frame: &Frame, key: &ConvKey, n: usize) -> Vec<Op> {
    let mut ops: Vec<Op> = frame
        .recent
        .iter()
        // The conversation's own key rule: by socket cookie when there is
        // one, else by process and endpoints.
        .filter(|op| key.holds(op))
        .copied()
        .collect();
    ops.sort_by(|a, b| {
        b.latency_ns
            .cmp(&a.latency_ns)
            .then_with(|| b.ts_ns.cmp(&a.ts_ns))
    });
    ops.truncate(n);
    ops
}

/// The heat map: for each of the last `width` seconds before the
/// frame's time (oldest first), the count in each log2 latency bucket.
pub fn heat_columns(frame: &Frame, width: usize) -> (i64, Vec<Vec<u64>>) {
    let agg = &frame.cur.agg;
    let step_ns = agg.series.width_s() * 1_000_000_000;
    let last = frame.at_ns.div_euclid(step_ns) * step_ns;
    let first = last - (width as i64 - 1) * step_ns;
    let mut cols = vec![Vec::new(); width];
    for (t, p) in agg.series.points() {
        if t < first || t > last || p.heat.is_empty() {
            continue;
        }
        cols[((t - first) / step_ns) as usize] = p.heat.clone();
    }
    (step_ns, cols)
}
