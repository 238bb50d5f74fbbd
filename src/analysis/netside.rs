//! The network's side of a conversation's latency (issue 24): what TCP
//! knew at each op (`SRTT us`, `CWND`, `Retrans` columns) over time, beside
//! the ops' own latency, so a slow call can be read against the RTT and
//! the retransmits of its socket at that moment.
//!
//! Bounded: at most [`MAX_CONVERSATIONS`] conversations are tracked (the
//! rest are counted in `untracked`), each as at most [`MAX_POINTS`] time
//! buckets whose width starts at 10 ms and doubles whenever more are
//! needed. Buckets sit on multiples of their width in absolute time, so
//! partials (one per file) merge exactly.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::Op;
use super::join::Count;
use crate::schema::{Endpoint, Protocol};

/// The version of the `network` section's fields in the report's JSON.
pub const NETWORK_VERSION: u32 = 1;
pub const MAX_CONVERSATIONS: usize = 4096;
pub const MAX_POINTS: usize = 120;
/// Conversations listed in the report.
pub const MAX_LISTED: usize = 20;
const FIRST_STEP_NS: i64 = 10_000_000;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    ops: u64,
    bytes: u64,
    lat_n: u64,
    lat_sum: u64,
    lat_max: u64,
    srtt_n: u64,
    srtt_sum: u64,
    srtt_max: u32,
    cwnd_min: Option<u32>,
    retrans_min: Option<u32>,
    retrans_max: Option<u32>,
}

fn min_opt(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Bucket {
    fn merge(&mut self, o: &Bucket) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.lat_n += o.lat_n;
        self.lat_sum += o.lat_sum;
        self.lat_max = self.lat_max.max(o.lat_max);
        self.srtt_n += o.srtt_n;
        self.srtt_sum += o.srtt_sum;
        self.srtt_max = self.srtt_max.max(o.srtt_max);
        self.cwnd_min = min_opt(self.cwnd_min, o.cwnd_min);
        self.retrans_min = min_opt(self.retrans_min, o.retrans_min);
        self.retrans_max = self.retrans_max.max(o.retrans_max);
    }
}

#[derive(Clone, Debug)]
struct ConvNet {
    step_ns: i64,
    buckets: BTreeMap<i64, Bucket>,
}

impl ConvNet {
    fn new() -> ConvNet {
        ConvNet {
            step_ns: FIRST_STEP_NS,
            buckets: BTreeMap::new(),
        }
    }

    fn put(&mut self, t: i64, b: &Bucket) {
        let key = t.div_euclid(self.step_ns) * self.step_ns;
        self.buckets.entry(key).or_default().merge(b);
        while self.buckets.len() > MAX_POINTS {
            self.coarsen(self.step_ns * 2);
        }
    }

    fn coarsen(&mut self, step_ns: i64) {
        if step_ns <= self.step_ns {
            return;
        }
        self.step_ns = step_ns;
        let old = std::mem::take(&mut self.buckets);
        for (t, b) in old {
            let key = t.div_euclid(step_ns) * step_ns;
            self.buckets.entry(key).or_default().merge(&b);
        }
    }

    fn merge(&mut self, mut o: ConvNet) {
        let step = self.step_ns.max(o.step_ns);
        self.coarsen(step);
        o.coarsen(step);
        for (t, b) in o.buckets {
            self.put(t, &b);
        }
    }
}

/// The per-conversation TCP series, folded op by op; partials merge.
#[derive(Clone, Debug, Default)]
pub struct NetSide {
    convs: FxHashMap<(u32, Endpoint, Endpoint), ConvNet>,
    untracked: Count,
}

impl NetSide {
    /// Takes a TCP op that has any of the `srtt`, `cwnd`, `retrans` columns.
    pub fn add(&mut self, op: &Op) {
        let a = &op.attr;
        let Some(remote) = op.remote else { return };
        if op.protocol != Protocol::Tcp
            || (a.srtt_us.is_none() && a.cwnd.is_none() && a.retrans.is_none())
        {
            return;
        }
        let key = (op.machine, op.local, remote);
        if !self.convs.contains_key(&key) && self.convs.len() >= MAX_CONVERSATIONS {
            self.untracked.ops += 1;
            self.untracked.bytes += op.size;
            return;
        }
        let b = Bucket {
            ops: 1,
            bytes: op.size,
            lat_n: u64::from(op.latency_ns.is_some()),
            lat_sum: op.latency_ns.unwrap_or(0),
            lat_max: op.latency_ns.unwrap_or(0),
            srtt_n: u64::from(a.srtt_us.is_some()),
            srtt_sum: u64::from(a.srtt_us.unwrap_or(0)),
            srtt_max: a.srtt_us.unwrap_or(0),
            cwnd_min: a.cwnd,
            retrans_min: a.retrans,
            retrans_max: a.retrans,
        };
        self.convs
            .entry(key)
            .or_insert_with(ConvNet::new)
            .put(op.ts_ns, &b);
    }

    pub fn merge(&mut self, other: NetSide) {
        for (k, c) in other.convs {
            let full = self.convs.len() >= MAX_CONVERSATIONS;
            match self.convs.get_mut(&k) {
                Some(mine) => mine.merge(c),
                None if !full => {
                    self.convs.insert(k, c);
                }
                None => {
                    for b in c.buckets.values() {
                        self.untracked.ops += b.ops;
                        self.untracked.bytes += b.bytes;
                    }
                }
            }
        }
        self.untracked.ops += other.untracked.ops;
        self.untracked.bytes += other.untracked.bytes;
    }

    pub fn is_empty(&self) -> bool {
        self.convs.is_empty() && self.untracked.ops == 0
    }

    /// The conversations with most retransmits (then ops), at most
    /// [`MAX_LISTED`]; `machines` names the machine indices.
    pub fn finish(self, machines: &[String]) -> NetworkOut {
        let total = self.convs.len();
        let mut convs: Vec<NetConvOut> = self
            .convs
            .into_iter()
            .map(|((m, local, remote), c)| conv_out(m, local, remote, c, machines))
            .collect();
        convs.sort_by(|a, b| {
            (b.retransmits, b.ops)
                .cmp(&(a.retransmits, a.ops))
                .then_with(|| {
                    (&a.machine, &a.local, &a.remote).cmp(&(&b.machine, &b.local, &b.remote))
                })
        });
        convs.truncate(MAX_LISTED);
        NetworkOut {
            version: NETWORK_VERSION,
            conversations_total: total,
            untracked: self.untracked,
            conversations: convs,
        }
    }
}

fn conv_out(
    m: u32,
    local: Endpoint,
    remote: Endpoint,
    c: ConvNet,
    machines: &[String],
) -> NetConvOut {
    let mut all = Bucket::default();
    let mut points = Vec::with_capacity(c.buckets.len());
    let mut prev_max: Option<u32> = None;
    let mut retransmits = 0u64;
    for (&t, b) in &c.buckets {
        all.merge(b);
        // New retransmits: the counter's rise since the bucket before
        // (within the bucket for the first).
        let rise = match (prev_max.or(b.retrans_min), b.retrans_max) {
            (Some(lo), Some(hi)) => u64::from(hi.saturating_sub(lo)),
            _ => 0,
        };
        retransmits += rise;
        if b.retrans_max.is_some() {
            prev_max = b.retrans_max.max(prev_max);
        }
        points.push(NetPointOut {
            t_ns: t,
            ops: b.ops,
            latency_mean_ns: (b.lat_n > 0).then(|| b.lat_sum / b.lat_n),
            latency_max_ns: (b.lat_n > 0).then_some(b.lat_max),
            srtt_mean_us: (b.srtt_n > 0).then(|| b.srtt_sum as f64 / b.srtt_n as f64),
            srtt_max_us: (b.srtt_n > 0).then_some(b.srtt_max),
            cwnd_min: b.cwnd_min,
            retransmits: b.retrans_max.map(|_| rise),
        });
    }
    NetConvOut {
        machine: machines.get(m as usize).cloned().unwrap_or_default(),
        local: local.to_string(),
        remote: remote.to_string(),
        ops: all.ops,
        bytes: all.bytes,
        retransmits,
        srtt_mean_us: (all.srtt_n > 0).then(|| all.srtt_sum as f64 / all.srtt_n as f64),
        srtt_max_us: (all.srtt_n > 0).then_some(all.srtt_max),
        latency_max_ns: (all.lat_n > 0).then_some(all.lat_max),
        step_ns: c.step_ns,
        points,
    }
}

/// The `network` section of the report (fields versioned by `version`).
#[derive(Clone, Debug, Serialize)]
pub struct NetworkOut {
    pub version: u32,
    pub conversations_total: usize,
    /// Ops of conversations past the memory bound.
    pub untracked: Count,
    /// The conversations with most retransmits, then ops.
    pub conversations: Vec<NetConvOut>,
}

/// One conversation (seen from `machine`'s `local` end).
#[derive(Clone, Debug, Serialize)]
pub struct NetConvOut {
    pub machine: String,
    pub local: String,
    pub remote: String,
    pub ops: u64,
    pub bytes: u64,
    /// The rise of the socket's `Retrans` counter over the recording.
    pub retransmits: u64,
    pub srtt_mean_us: Option<f64>,
    pub srtt_max_us: Option<u32>,
    pub latency_max_ns: Option<u64>,
    /// The buckets' width.
    pub step_ns: i64,
    pub points: Vec<NetPointOut>,
}

/// One time bucket, starting at `t_ns` (UTC, ns since the epoch).
#[derive(Clone, Debug, Serialize)]
pub struct NetPointOut {
    pub t_ns: i64,
    pub ops: u64,
    pub latency_mean_ns: Option<u64>,
    pub latency_max_ns: Option<u64>,
    pub srtt_mean_us: Option<f64>,
    pub srtt_max_us: Option<u32>,
    pub cwnd_min: Option<u32>,
    /// Retransmits new in this bucket (`None` without the column).
    pub retransmits: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::OpAttr;
    use crate::schema::{Comm, Direction};

    const T0: i64 = 1_795_669_694_000_000_000;

    fn op(t_ms: i64, srtt: u32, retrans: u32, lat_us: u64) -> Op {
        Op {
            machine: 0,
            ts_ns: T0 + t_ms * 1_000_000,
            pid: 1,
            comm: Comm::from_text(b"t"),
            protocol: Protocol::Tcp,
            ip_version: 4,
            local: "10.0.0.1:40000"
                .parse::<std::net::SocketAddr>()
                .map(|s| Endpoint {
                    addr: s.ip(),
                    port: s.port(),
                })
                .unwrap(),
            remote: Some(Endpoint {
                addr: "10.0.0.2".parse().unwrap(),
                port: 80,
            }),
            size: 100,
            direction: Direction::Send,
            latency_ns: Some(lat_us * 1000),
            errno: None,
            msg_flags: None,
            attr: OpAttr {
                srtt_us: Some(srtt),
                cwnd: Some(10),
                retrans: Some(retrans),
                ..OpAttr::default()
            },
        }
    }

    #[test]
    fn series_of_srtt_and_retransmits() {
        let mut n = NetSide::default();
        // 5 ops in the first 10 ms, srtt 100; then a retransmit storm:
        // the counter goes 0 -> 3 in the bucket at 50 ms, srtt 900.
        for i in 0..5 {
            n.add(&op(i, 100, 0, 10));
        }
        n.add(&op(50, 900, 2, 5000));
        n.add(&op(55, 900, 3, 7000));
        let out = n.finish(&["m".into()]);
        assert_eq!(out.conversations_total, 1);
        let c = &out.conversations[0];
        assert_eq!((c.ops, c.retransmits, c.srtt_max_us), (7, 3, Some(900)));
        assert_eq!(c.step_ns, 10_000_000);
        assert_eq!(c.points.len(), 2);
        let (p0, p1) = (&c.points[0], &c.points[1]);
        assert_eq!(
            (p0.ops, p0.retransmits, p0.srtt_mean_us),
            (5, Some(0), Some(100.0))
        );
        assert_eq!(
            (p1.ops, p1.retransmits, p1.latency_max_ns),
            (2, Some(3), Some(7_000_000))
        );
        assert_eq!(p1.latency_mean_ns, Some(6_000_000));
        assert_eq!(p1.t_ns - p0.t_ns, 50_000_000);
    }

    #[test]
    fn bounded_points_and_partials_merge_exactly() {
        // 10 s of ops every 5 ms: 2000 ops; at most MAX_POINTS buckets.
        let ops: Vec<Op> = (0..2000)
            .map(|i| op(i * 5, 100 + i as u32, (i / 100) as u32, 1))
            .collect();
        let mut one = NetSide::default();
        ops.iter().for_each(|o| one.add(o));
        let (mut a, mut b) = (NetSide::default(), NetSide::default());
        ops[..700].iter().for_each(|o| a.add(o));
        ops[700..].iter().for_each(|o| b.add(o));
        a.merge(b);
        let (x, y) = (one.finish(&[]), a.finish(&[]));
        let (x, y) = (&x.conversations[0], &y.conversations[0]);
        assert!(x.points.len() <= MAX_POINTS && x.points.len() >= MAX_POINTS / 2);
        assert_eq!(x.step_ns, y.step_ns);
        assert_eq!(x.points.len(), y.points.len());
        assert_eq!((x.ops, x.retransmits), (2000, 19));
        assert_eq!((y.ops, y.retransmits), (2000, 19));
        for (p, q) in x.points.iter().zip(&y.points) {
            assert_eq!(
                (p.t_ns, p.ops, p.srtt_max_us),
                (q.t_ns, q.ops, q.srtt_max_us)
            );
        }
    }

    #[test]
    fn ops_without_tcp_state_and_udp_are_not_series() {
        let mut n = NetSide::default();
        let mut o = op(0, 1, 0, 1);
        o.attr = OpAttr::default();
        n.add(&o);
        let mut u = op(0, 1, 0, 1);
        u.protocol = Protocol::Udp;
        n.add(&u);
        assert!(n.is_empty());
    }
}
