//! The aggregation core behind `nwtrace report` (fed from CSV rows) and
//! `nwtrace top` (fed from live kernel events).
//!
//! Its input is [`Op`]: one send or receive, a small plain `Copy` struct
//! oriented by the local socket (not by the flow of bytes like the CSV),
//! so that both directions of one socket fall on one conversation key.
//! Build it with `From<&input::Row>` or [`Op::from_event`].
//!
//! [`Aggregate`] folds ops into bounded tables (heavy hitters plus an
//! explicit "other" bucket; totals stay exact). Two aggregates merge, and
//! merging per-file partials equals one pass over all of them. Every
//! counter is cumulative, so a live consumer can take rates over any
//! window by diffing two snapshots of the counters it shows.

pub mod aggregate;
pub mod attr;
pub mod capped;
pub mod filter_text;
pub mod hist;
pub mod join;
pub mod netside;
pub mod op_filter;
pub mod persist;
pub mod series;

pub use aggregate::{
    Aggregate, AggregateConfig, ConvKey, ConvStats, EndpointStats, ErrKey, Exemplar, LatClass,
    PortKey, PortRole, ProcKey, ProcStats, Totals, TotalsOp,
};
pub use attr::{OpAttr, Sym};
pub use capped::Capped;
pub use filter_text::{filter_text, parse_filter};
pub use hist::{LatencyHist, LatencySummary, SparseHist};
pub use series::{Series, SeriesPoint};

use crate::capture::event::NetEvent;
use crate::schema::{Comm, Direction, Endpoint, Protocol};
use crate::timefmt::WallClock;

/// MSG_DONTWAIT (Linux's value; see semantics.md).
pub const MSG_DONTWAIT: u32 = 0x40;

/// One send or receive, oriented by the local socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Which machine the op ran on, as an index into the caller's list of
    /// machines (0 for a live source): pids only mean something per
    /// machine, so process, conversation and error keys include it.
    pub machine: u32,
    /// Wall-clock start of the operation (its finish when the start is
    /// unknown), nanoseconds since the epoch, UTC.
    pub ts_ns: i64,
    pub pid: u32,
    pub comm: Comm,
    pub protocol: Protocol,
    pub ip_version: u8,
    pub local: Endpoint,
    /// `None` when the peer cannot be known (an unconnected UDP receive
    /// without an address buffer).
    pub remote: Option<Endpoint>,
    /// Bytes transferred; 0 when the operation failed.
    pub size: u64,
    pub direction: Direction,
    pub latency_ns: Option<u64>,
    pub errno: Option<i32>,
    /// Flags passed to a send/recv syscall; `None` for write/read/io_uring
    /// and for a row whose flags field is empty.
    pub msg_flags: Option<u32>,
    /// The optional columns (`record --columns`); all `None` when the
    /// recording or the capture does not have them.
    pub attr: OpAttr,
}

impl Op {
    /// From a decoded kernel event, with the clock that maps its
    /// monotonic times to the wall clock.
    pub fn from_event(ev: &NetEvent, clock: WallClock) -> Op {
        Op::from_event_with(ev, clock, OpAttr::default())
    }

    /// [`Op::from_event`] with the optional attribution that the capture
    /// resolved for this event (tid, uid, cgroup path and container id
    /// interned with [`Sym::intern`], netns, socket cookie): the hook for
    /// `record --columns` on the live side. Leave a field `None` when the
    /// capture was not asked for it or could not get it; a container
    /// column that was asked for but found no container is
    /// `Some(Sym::intern(""))` (the host).
    pub fn from_event_with(ev: &NetEvent, clock: WallClock, attr: OpAttr) -> Op {
        let mut op = Op::from_event_with_comm(ev, clock, Comm::from_raw(ev.comm()));
        op.attr = attr;
        op
    }

    /// [`Op::from_event`] with the comm already escaped
    /// (`Comm::from_raw(ev.comm())`), for a caller that caches it.
    #[inline]
    pub fn from_event_with_comm(ev: &NetEvent, clock: WallClock, comm: Comm) -> Op {
        Op {
            machine: 0,
            ts_ns: clock.to_epoch_ns(ev.start_ns.unwrap_or(ev.end_ns)),
            pid: ev.pid,
            comm,
            protocol: ev.protocol,
            ip_version: ev.ip_version,
            local: ev.local,
            remote: ev.peer,
            size: ev.ret.max(0) as u64,
            direction: ev.direction,
            latency_ns: ev.latency_ns(),
            errno: (ev.ret < 0).then(|| -ev.ret),
            // The writer leaves the field empty for 0 too.
            msg_flags: ev.msg_flags.filter(|&f| f != 0),
            attr: OpAttr::default(),
        }
    }

    /// The split rule for receive latency: a receive is non-blocking when
    /// the caller said so (MSG_DONTWAIT) or when it came back with EAGAIN
    /// (nothing to read, so it did not wait). Every other receive may have
    /// waited for data and counts as blocking. (A receive on an
    /// O_NONBLOCK socket that found data is indistinguishable from a
    /// blocking one that did not wait: both are fast, so this never makes
    /// an idle peer look slow.)
    pub fn latency_class(&self) -> LatClass {
        match self.direction {
            Direction::Send => LatClass::Send,
            Direction::Receive => {
                let dontwait = self.msg_flags.is_some_and(|f| f & MSG_DONTWAIT != 0);
                if dontwait || self.errno == Some(libc::EAGAIN) {
                    LatClass::ReceiveNonblocking
                } else {
                    LatClass::ReceiveBlocking
                }
            }
        }
    }

    /// A successful 0-byte TCP receive: the peer closed (end of stream).
    pub fn is_end_of_stream(&self) -> bool {
        self.direction == Direction::Receive
            && self.protocol == Protocol::Tcp
            && self.size == 0
            && self.errno.is_none()
    }
}

/// Where an op came from, for exemplars: a file index (into the caller's
/// list of files) and the 1-based line in it. A live source may use its
/// own numbering (file 0, line = sequence number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub file: u32,
    pub line: u64,
}

/// Which ops every view counts. Empty lists match everything. Kinds
/// combine with AND, the values of one kind with OR. The words and flags
/// that build one are in [`op_filter`] and [`filter_text`].
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    /// Ops of these comms are left out (checked after `comms`).
    pub exclude_comms: Vec<String>,
    /// Matches the local or the remote port.
    pub ports: Vec<u16>,
    pub protocol: Option<Protocol>,
    /// 4 or 6, as the row's IP Version.
    pub ip_version: Option<u8>,
    pub direction: Option<Direction>,
    /// Cgroup paths, normalised (no leading or trailing `/`): an op
    /// matches when its cgroup is one of them or below one. An op without
    /// a recorded cgroup never matches.
    pub cgroups: Vec<String>,
    /// Container id prefixes (lowercase hex, at least 12 digits). An op
    /// outside any container, or without the column, never matches.
    pub containers: Vec<String>,
    /// Network namespace inodes. An op without the column never matches.
    pub netns: Vec<u64>,
    /// Inclusive start, exclusive end, ns since the epoch.
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty()
            && self.comms.is_empty()
            && self.exclude_comms.is_empty()
            && self.ports.is_empty()
            && self.protocol.is_none()
            && self.ip_version.is_none()
            && self.direction.is_none()
            && self.cgroups.is_empty()
            && self.containers.is_empty()
            && self.netns.is_empty()
            && self.since_ns.is_none()
            && self.until_ns.is_none()
    }

    #[inline]
    pub fn matches(&self, op: &Op) -> bool {
        if self.since_ns.is_some_and(|s| op.ts_ns < s)
            || self.until_ns.is_some_and(|u| op.ts_ns >= u)
        {
            return false;
        }
        if self.protocol.is_some_and(|p| p != op.protocol)
            || self.direction.is_some_and(|d| d != op.direction)
            || self.ip_version.is_some_and(|v| v != op.ip_version)
        {
            return false;
        }
        if !self.pids.is_empty() && !self.pids.contains(&op.pid) {
            return false;
        }
        if !self.comms.is_empty()
            && !self
                .comms
                .iter()
                .any(|c| c.as_bytes() == op.comm.as_bytes())
        {
            return false;
        }
        if self
            .exclude_comms
            .iter()
            .any(|c| c.as_bytes() == op.comm.as_bytes())
        {
            return false;
        }
        if !self.ports.is_empty()
            && !self
                .ports
                .iter()
                .any(|&p| p == op.local.port || op.remote.is_some_and(|r| r.port == p))
        {
            return false;
        }
        if !self.netns.is_empty() && !op.attr.netns.is_some_and(|n| self.netns.contains(&n)) {
            return false;
        }
        if !self.containers.is_empty()
            && !op.attr.container_id().is_some_and(|id| {
                self.containers
                    .iter()
                    .any(|p| id.len() >= p.len() && id[..p.len()].eq_ignore_ascii_case(p))
            })
        {
            return false;
        }
        if !self.cgroups.is_empty()
            && !op.attr.cgroup.is_some_and(|g| {
                let have = g.as_str();
                self.cgroups.iter().any(|w| attr::cgroup_within(have, w))
            })
        {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::tests::{bytes, raw_event};
    use crate::input::reader::{FileStats, Row, read_from};
    use crate::output::row::RowFormatter;

    /// The live path (event → Op) and the recorded path (event → CSV row
    /// → reader → Op) give the same Op, so `top` and `report` agree.
    #[test]
    fn live_and_recorded_ops_agree() {
        let clock = WallClock::with_offset(1_795_669_694_000_000_000);
        let mut variants = Vec::new();
        let base = raw_event();
        variants.push(base);
        let mut recv = base;
        recv.direction = 1;
        recv.ret = -libc::ECONNRESET;
        recv.info = 0x04;
        variants.push(recv);
        let mut udp = base;
        udp.protocol = libc::IPPROTO_UDP as u8;
        udp.direction = 1;
        udp.info = 0x01 | 0x02;
        udp.msg_flags = 0;
        variants.push(udp);
        for raw in variants {
            let ev = NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
            let live = Op::from_event(&ev, clock);
            let mut text = Vec::new();
            RowFormatter::new().write_row(&mut text, &ev, &clock);
            let mut ops = Vec::new();
            let mut stats = FileStats::default();
            read_from(
                text.as_slice(),
                text.len() as u64,
                true,
                &mut stats,
                &mut |r: &Row, _| ops.push(Op::from(r)),
            );
            assert_eq!(ops.len(), 1, "{:?}", stats.problems);
            let mut recorded = ops[0];
            // The row keeps microseconds.
            assert_eq!(recorded.ts_ns, live.ts_ns / 1000 * 1000);
            recorded.ts_ns = live.ts_ns;
            assert_eq!(recorded, live, "{}", String::from_utf8_lossy(&text));
        }
    }
}
