//! Joining machines on the bytes themselves (issue 24): each TCP send
//! recorded on one machine is paired with the receives of the same bytes
//! recorded on another, by the conversation's 4-tuple seen from both ends
//! (one machine's local end is the other's peer) and overlapping ranges of
//! TCP sequence numbers (`TCP Seq` column: a send of N bytes starting at
//! `write_seq = S` covers `[S, S+N)`, and the peer's receives of those
//! bytes start at the same numbers of `copied_seq`).
//!
//! From the pairs: bytes joined and not joined (each unjoined byte is
//! counted under one reason, never guessed into a pair), the delay from a
//! send's start to the end of the receive that got its bytes, and the two
//! clocks' offset estimated from both directions as NTP does.
//!
//! Memory: 24 bytes per TCP op with a sequence number, against one budget
//! shared by every partial (`max_segments`); ops past it are counted under
//! `over_bound`, not kept. The pairs' delays are kept until the end (at
//! most one per op), for exact percentiles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::Op;
use crate::schema::{Direction, Endpoint, Protocol};

/// The version of the `join` section's fields in the report's JSON.
pub const JOIN_VERSION: u32 = 1;
/// Ops kept for the join at most (24 bytes each: about 100 MB).
pub const DEFAULT_MAX_SEGMENTS: usize = 4_000_000;
/// Conversations listed in the report (all are counted in the pairs).
pub const MAX_CONVERSATIONS_LISTED: usize = 100;

/// One direction of bytes: from `src` to `dst`, whichever machine saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Flow {
    src: Endpoint,
    dst: Endpoint,
}

/// One send or receive of a flow, as the join needs it.
#[derive(Clone, Copy, Debug)]
struct Seg {
    seq: u32,
    len: u32,
    start_ns: i64,
    end_ns: i64,
}

/// Ops and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub ops: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, ops: u64, bytes: u64) {
        self.ops += ops;
        self.bytes += bytes;
    }

    fn merge(&mut self, o: Count) {
        self.add(o.ops, o.bytes);
    }
}

/// TCP ops (sends and receives that moved bytes) that are in no pair, by
/// why. Every such op is in exactly one of these.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unjoined {
    /// Without a `TCP Seq` value (recorded without `--columns seq`).
    pub no_seq: Count,
    /// Past the memory bound (`max_segments`).
    pub over_bound: Count,
    /// Their flow's other end is in no input (or had no sequence numbers).
    pub no_peer: Count,
    /// Both ends of the flow were recorded on one machine (loopback, or a
    /// recorder that saw both namespaces).
    pub same_machine: Count,
    /// The same side of the flow was recorded on several machines.
    pub several_machines: Count,
    /// Sent bytes of joined flows that no recorded receive covers (lost
    /// rows, outside the other recording's time, filtered out).
    pub sent_not_received: Count,
    /// Received bytes of joined flows that no recorded send covers.
    pub received_not_sent: Count,
}

impl Unjoined {
    fn merge(&mut self, o: &Unjoined) {
        self.no_seq.merge(o.no_seq);
        self.over_bound.merge(o.over_bound);
        self.no_peer.merge(o.no_peer);
        self.same_machine.merge(o.same_machine);
        self.several_machines.merge(o.several_machines);
        self.sent_not_received.merge(o.sent_not_received);
        self.received_not_sent.merge(o.received_not_sent);
    }
}

/// The join's input, folded op by op; partials merge.
pub struct JoinInput {
    sides: FxHashMap<(Flow, u32, bool), Vec<Seg>>,
    budget: Arc<AtomicUsize>,
    max_segments: usize,
    unjoined: Unjoined,
    tcp_sent: Count,
    tcp_received: Count,
}

impl JoinInput {
    /// A partial; partials that will merge share one budget.
    pub fn new(budget: Arc<AtomicUsize>, max_segments: usize) -> JoinInput {
        JoinInput {
            sides: FxHashMap::default(),
            budget,
            max_segments,
            unjoined: Unjoined::default(),
            tcp_sent: Count::default(),
            tcp_received: Count::default(),
        }
    }

    /// A budget of `max_segments` ops for the partials to share.
    pub fn budget(max_segments: usize) -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(max_segments))
    }

    /// Takes one op (anything but a TCP op that moved bytes is ignored;
    /// its `TCP Seq` is `op.attr.seq`).
    pub fn add(&mut self, op: &Op) {
        let Some(remote) = op.remote else { return };
        if op.protocol != Protocol::Tcp || op.size == 0 || op.errno.is_some() {
            return;
        }
        if op.direction == Direction::Send {
            self.tcp_sent.add(1, op.size);
        } else {
            self.tcp_received.add(1, op.size);
        }
        let Some(seq) = op.attr.seq else {
            self.unjoined.no_seq.add(1, op.size);
            return;
        };
        // One call moves less than 2 GiB (Linux's MAX_RW_COUNT).
        let Ok(len) = u32::try_from(op.size) else {
            self.unjoined.no_seq.add(1, op.size);
            return;
        };
        let took = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok();
        if !took {
            self.unjoined.over_bound.add(1, op.size);
            return;
        }
        let send = op.direction == Direction::Send;
        let flow = if send {
            Flow {
                src: op.local,
                dst: remote,
            }
        } else {
            Flow {
                src: remote,
                dst: op.local,
            }
        };
        self.sides
            .entry((flow, op.machine, send))
            .or_default()
            .push(Seg {
                seq,
                len,
                start_ns: op.ts_ns,
                end_ns: op.ts_ns.saturating_add(op.latency_ns.unwrap_or(0) as i64),
            });
    }

    pub fn merge(&mut self, other: JoinInput) {
        for (k, v) in other.sides {
            self.sides.entry(k).or_default().extend(v);
        }
        self.unjoined.merge(&other.unjoined);
        self.tcp_sent.merge(other.tcp_sent);
        self.tcp_received.merge(other.tcp_received);
    }

    /// Whether any op had a sequence number.
    pub fn has_seq(&self) -> bool {
        !self.sides.is_empty() || self.unjoined.over_bound.ops > 0
    }

    /// Joins every flow; `machines` names the ops' machine indices.
    pub fn finish(self, machines: &[String]) -> JoinOut {
        let name = |m: u32| machines.get(m as usize).cloned().unwrap_or_default();
        let mut unjoined = self.unjoined;
        // flow -> (sending machines' ops, receiving machines' ops)
        type Sides = (Vec<(u32, Vec<Seg>)>, Vec<(u32, Vec<Seg>)>);
        let mut flows: BTreeMap<Flow, Sides> = BTreeMap::new();
        let mut with_seq: Vec<u32> = Vec::new();
        for ((flow, machine, send), segs) in self.sides {
            with_seq.push(machine);
            let e = flows.entry(flow).or_default();
            if send {
                e.0.push((machine, segs));
            } else {
                e.1.push((machine, segs));
            }
        }
        with_seq.sort_unstable();
        with_seq.dedup();

        let count = |segs: &[(u32, Vec<Seg>)]| {
            let mut c = Count::default();
            for (_, v) in segs {
                for s in v {
                    c.add(1, u64::from(s.len));
                }
            }
            c
        };
        // (machine_a, a, machine_b, b), a's side first -> the two directions
        let mut convs: BTreeMap<(u32, Endpoint, u32, Endpoint), [DirAcc; 2]> = BTreeMap::new();
        for (flow, (sends, recvs)) in flows {
            let (sent, received) = (count(&sends), count(&recvs));
            if sends.is_empty() || recvs.is_empty() {
                unjoined.no_peer.merge(sent);
                unjoined.no_peer.merge(received);
                continue;
            }
            if sends.len() > 1 || recvs.len() > 1 {
                unjoined.several_machines.merge(sent);
                unjoined.several_machines.merge(received);
                continue;
            }
            let (sm, sends) = sends.into_iter().next().expect("one");
            let (rm, recvs) = recvs.into_iter().next().expect("one");
            if sm == rm {
                unjoined.same_machine.merge(sent);
                unjoined.same_machine.merge(received);
                continue;
            }
            let acc = join_flow(sends, recvs);
            unjoined.sent_not_received.merge(acc.sent_not_joined);
            unjoined.received_not_sent.merge(acc.received_not_joined);
            let (key, slot) = if (sm, flow.src) < (rm, flow.dst) {
                ((sm, flow.src, rm, flow.dst), 0)
            } else {
                ((rm, flow.dst, sm, flow.src), 1)
            };
            convs.entry(key).or_default()[slot] = acc;
        }

        // Per machine pair: the directions' accumulations, then the offset.
        let mut pairs: BTreeMap<(u32, u32), [DirAcc; 2]> = BTreeMap::new();
        for ((ma, _, mb, _), dirs) in &convs {
            let p = pairs.entry((*ma, *mb)).or_default();
            p[0].merge(&dirs[0]);
            p[1].merge(&dirs[1]);
        }
        let mut offsets: BTreeMap<(u32, u32), OffsetOut> = BTreeMap::new();
        let pairs_out: Vec<PairOut> = pairs
            .into_iter()
            .map(|((ma, mb), mut dirs)| {
                let offset = clock_offset(&dirs);
                if let Some(o) = offset {
                    offsets.insert((ma, mb), o);
                }
                PairOut {
                    machine_a: name(ma),
                    machine_b: name(mb),
                    a_to_b: dirs[0].out(offset.map(|o| (o.b_minus_a_ns, o.error_ns))),
                    b_to_a: dirs[1].out(offset.map(|o| (-o.b_minus_a_ns, o.error_ns))),
                    clock_offset: offset,
                }
            })
            .collect();

        let conversations_total = convs.len();
        let mut conv_out: Vec<ConvJoinOut> = convs
            .into_iter()
            .map(|((ma, a, mb, b), mut dirs)| {
                let offset = offsets.get(&(ma, mb)).copied();
                ConvJoinOut {
                    machine_a: name(ma),
                    a: a.to_string(),
                    machine_b: name(mb),
                    b: b.to_string(),
                    a_to_b: dirs[0].out(offset.map(|o| (o.b_minus_a_ns, o.error_ns))),
                    b_to_a: dirs[1].out(offset.map(|o| (-o.b_minus_a_ns, o.error_ns))),
                }
            })
            .collect();
        conv_out.sort_by(|x, y| {
            let j = |c: &ConvJoinOut| c.a_to_b.bytes_joined + c.b_to_a.bytes_joined;
            j(y).cmp(&j(x))
                .then_with(|| (&x.machine_a, &x.a).cmp(&(&y.machine_a, &y.a)))
        });
        conv_out.truncate(MAX_CONVERSATIONS_LISTED);
        let bytes_joined = pairs_out
            .iter()
            .map(|p| p.a_to_b.bytes_joined + p.b_to_a.bytes_joined)
            .sum();
        JoinOut {
            version: JOIN_VERSION,
            max_segments: self.max_segments,
            machines_with_seq: with_seq.into_iter().map(name).collect(),
            tcp_sent: self.tcp_sent,
            tcp_received: self.tcp_received,
            bytes_joined,
            pairs: pairs_out,
            conversations_total,
            conversations: conv_out,
            unjoined,
        }
    }
}

/// One direction of a conversation (or of a machine pair), accumulated.
#[derive(Clone, Debug, Default)]
struct DirAcc {
    sent: Count,
    received: Count,
    joined: u64,
    sent_not_joined: Count,
    received_not_joined: Count,
    /// Receiver's clock at the receive's end minus the sender's clock at
    /// the send's start, per (send, receive) pair that share bytes.
    delays: Vec<i64>,
}

impl DirAcc {
    fn merge(&mut self, o: &DirAcc) {
        self.sent.merge(o.sent);
        self.received.merge(o.received);
        self.joined += o.joined;
        self.sent_not_joined.merge(o.sent_not_joined);
        self.received_not_joined.merge(o.received_not_joined);
        self.delays.extend_from_slice(&o.delays);
    }

    fn min_delay(&self) -> Option<i64> {
        self.delays.iter().copied().min()
    }

    /// `offset`: (the receiver's clock minus the sender's, its error).
    fn out(&mut self, offset: Option<(i64, i64)>) -> DirOut {
        self.delays.sort_unstable();
        let measured = DelayOut::of(&self.delays);
        DirOut {
            ops_sent: self.sent.ops,
            ops_received: self.received.ops,
            bytes_sent: self.sent.bytes,
            bytes_received: self.received.bytes,
            bytes_joined: self.joined,
            bytes_sent_not_joined: self.sent_not_joined.bytes,
            bytes_received_not_joined: self.received_not_joined.bytes,
            pairs: self.delays.len() as u64,
            measured_delay_ns: measured,
            one_way_delay_ns: offset.and_then(|(o, _)| measured.map(|m| m.shift(-o))),
            one_way_error_ns: measured.and(offset.map(|(_, e)| e)),
        }
    }
}

/// Unwraps sequence numbers (mod 2^32) into one line, each from the one
/// before it in time: a step of less than 2^31 either way is taken as
/// the real one. Returns `(first byte, end)` per segment.
fn unwrap(segs: &[Seg], first: i64, first_seq: u32) -> Vec<(i64, i64)> {
    let mut out = Vec::with_capacity(segs.len());
    let (mut prev_u, mut prev_seq) = (first, first_seq);
    for s in segs {
        let u = prev_u + i64::from(s.seq.wrapping_sub(prev_seq) as i32);
        out.push((u, u + i64::from(s.len)));
        (prev_u, prev_seq) = (u, s.seq);
    }
    out
}

/// Joins one flow: the sends of one machine with the receives of another.
fn join_flow(mut sends: Vec<Seg>, mut recvs: Vec<Seg>) -> DirAcc {
    let mut acc = DirAcc::default();
    sends.sort_by_key(|s| (s.start_ns, s.seq));
    recvs.sort_by_key(|s| (s.start_ns, s.seq));
    // Both sides on one line: the receives' first number is placed by its
    // distance from the sends' first (less than 2^31 on any connection).
    let base = 1_i64 << 40;
    let s_line = unwrap(&sends, base, sends[0].seq);
    let r_first = base + i64::from(recvs[0].seq.wrapping_sub(sends[0].seq) as i32);
    let r_line = unwrap(&recvs, r_first, recvs[0].seq);
    let mut s_idx: Vec<usize> = (0..sends.len()).collect();
    let mut r_idx: Vec<usize> = (0..recvs.len()).collect();
    s_idx.sort_by_key(|&i| s_line[i]);
    r_idx.sort_by_key(|&i| r_line[i]);
    let mut s_got = vec![0u64; sends.len()];
    let mut r_got = vec![0u64; recvs.len()];
    let (mut i, mut j) = (0, 0);
    while i < s_idx.len() && j < r_idx.len() {
        let (si, ri) = (s_idx[i], r_idx[j]);
        let (a, b) = (s_line[si], r_line[ri]);
        let lo = a.0.max(b.0);
        let hi = a.1.min(b.1);
        if hi > lo {
            let n = (hi - lo) as u64;
            s_got[si] += n;
            r_got[ri] += n;
            acc.delays
                .push(recvs[ri].end_ns.saturating_sub(sends[si].start_ns));
        }
        if a.1 <= b.1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    for (s, got) in sends.iter().zip(&s_got) {
        let len = u64::from(s.len);
        let got = (*got).min(len);
        acc.sent.add(1, len);
        acc.joined += got;
        if got < len {
            acc.sent_not_joined.add(u64::from(got == 0), len - got);
        }
    }
    for (r, got) in recvs.iter().zip(&r_got) {
        let len = u64::from(r.len);
        let got = (*got).min(len);
        acc.received.add(1, len);
        if got < len {
            acc.received_not_joined.add(u64::from(got == 0), len - got);
        }
    }
    acc
}

/// NTP's estimate from the smallest delay each way: with B's clock ahead
/// of A's by θ, a delay measured A→B is the true one plus θ and B→A the
/// true one minus θ; both true delays are at least 0, so θ lies in
/// `[-min(B→A), min(A→B)]`: its middle, give or take half its width.
fn clock_offset(dirs: &[DirAcc; 2]) -> Option<OffsetOut> {
    let (ab, ba) = (dirs[0].min_delay()?, dirs[1].min_delay()?);
    Some(OffsetOut {
        b_minus_a_ns: (ab - ba) / 2,
        error_ns: (ab + ba + 1) / 2,
        min_delay_a_to_b_ns: ab,
        min_delay_b_to_a_ns: ba,
    })
}

/// The `join` section of the report (fields versioned by `version`).
#[derive(Clone, Debug, Serialize)]
pub struct JoinOut {
    pub version: u32,
    /// The memory bound: ops kept for the join at most.
    pub max_segments: usize,
    /// The machines whose rows have `TCP Seq` values.
    pub machines_with_seq: Vec<String>,
    /// TCP sends and receives that moved bytes, joined or not (a byte
    /// recorded at both ends is in both).
    pub tcp_sent: Count,
    pub tcp_received: Count,
    /// Bytes in some pair, both directions of every machine pair (each
    /// byte once).
    pub bytes_joined: u64,
    pub pairs: Vec<PairOut>,
    pub conversations_total: usize,
    /// The conversations with most bytes joined, at most 100.
    pub conversations: Vec<ConvJoinOut>,
    pub unjoined: Unjoined,
}

/// Two machines (`machine_a` sorts first) and the bytes between them.
#[derive(Clone, Debug, Serialize)]
pub struct PairOut {
    pub machine_a: String,
    pub machine_b: String,
    pub a_to_b: DirOut,
    pub b_to_a: DirOut,
    /// `None` unless bytes were joined both ways.
    pub clock_offset: Option<OffsetOut>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OffsetOut {
    /// B's clock minus A's, nanoseconds: `(min A→B - min B→A) / 2`.
    pub b_minus_a_ns: i64,
    /// The offset is within this of the truth: half the smallest round
    /// trip, `(min A→B + min B→A) / 2`.
    pub error_ns: i64,
    pub min_delay_a_to_b_ns: i64,
    pub min_delay_b_to_a_ns: i64,
}

/// One direction of bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirOut {
    pub ops_sent: u64,
    pub ops_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub bytes_joined: u64,
    pub bytes_sent_not_joined: u64,
    pub bytes_received_not_joined: u64,
    /// (send, receive) pairs that share bytes.
    pub pairs: u64,
    /// Receive's end (receiver's clock) minus send's start (sender's
    /// clock), per pair: the one-way delay plus the clocks' offset.
    pub measured_delay_ns: Option<DelayOut>,
    /// `measured_delay_ns` with the estimated offset taken out: the
    /// one-way delay, each figure give or take `one_way_error_ns`.
    pub one_way_delay_ns: Option<DelayOut>,
    pub one_way_error_ns: Option<i64>,
}

/// A distribution of delays, nanoseconds (may be negative when the
/// clocks differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DelayOut {
    pub min: i64,
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

impl DelayOut {
    /// From sorted values (nearest rank).
    fn of(sorted: &[i64]) -> Option<DelayOut> {
        let n = sorted.len();
        let at = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        (n > 0).then(|| DelayOut {
            min: sorted[0],
            p50: at(0.5),
            p99: at(0.99),
            max: sorted[n - 1],
        })
    }

    fn shift(self, by: i64) -> DelayOut {
        DelayOut {
            min: self.min + by,
            p50: self.p50 + by,
            p99: self.p99 + by,
            max: self.max + by,
        }
    }
}

/// One conversation between two recorded machines (`a` is the end on
/// `machine_a`, which sorts first).
#[derive(Clone, Debug, Serialize)]
pub struct ConvJoinOut {
    pub machine_a: String,
    pub a: String,
    pub machine_b: String,
    pub b: String,
    pub a_to_b: DirOut,
    pub b_to_a: DirOut,
}

#[cfg(test)]
mod tests;
