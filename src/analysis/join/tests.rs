//! Synthetic rows of two machines whose truth is known: machine 0 is the
//! client 10.0.0.1:40000, machine 1 the server 10.0.0.2:80. Machine 1's
//! clock is ahead of machine 0's by `OFFSET`; bytes take `AB` to go from
//! 0 to 1 and `BA` back.

use super::*;
use crate::analysis::OpAttr;
use crate::schema::Comm;

const MS: i64 = 1_000_000;
const OFFSET: i64 = 7 * MS;
const AB: i64 = 20 * MS;
const BA: i64 = 2 * MS;
const T0: i64 = 1_795_669_694_000_000_000;

fn ep(s: &str) -> Endpoint {
    let (a, p) = s.rsplit_once(':').unwrap();
    Endpoint {
        addr: a.parse().unwrap(),
        port: p.parse().unwrap(),
    }
}

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:80";

/// An op on `machine` at `start` (that machine's clock) lasting `lat`.
fn op(machine: u32, dir: Direction, start: i64, lat: i64, size: u64, seq: u32) -> Op {
    let (local, remote) = if machine == 0 {
        (ep(CLIENT), ep(SERVER))
    } else {
        (ep(SERVER), ep(CLIENT))
    };
    Op {
        machine,
        ts_ns: start,
        pid: 1,
        comm: Comm::from_text(b"t"),
        protocol: Protocol::Tcp,
        ip_version: 4,
        local,
        remote: Some(remote),
        size,
        direction: dir,
        latency_ns: Some(lat as u64),
        errno: None,
        msg_flags: None,
        attr: OpAttr {
            seq: Some(seq),
            ..OpAttr::default()
        },
    }
}

/// A send at `t` (true time) from `from` and its receive on the other
/// machine, which blocked since `t` and ends when the bytes arrive.
fn exchange(out: &mut Vec<Op>, from: u32, t: i64, size: u64, seq: u32) {
    let (delay, clock_from, clock_to) = if from == 0 {
        (AB, 0, OFFSET)
    } else {
        (BA, OFFSET, 0)
    };
    out.push(op(from, Direction::Send, t + clock_from, 1000, size, seq));
    out.push(op(
        1 - from,
        Direction::Receive,
        t + clock_to,
        delay,
        size,
        seq,
    ));
}

fn run(ops: &[Op]) -> JoinOut {
    let budget = JoinInput::budget(DEFAULT_MAX_SEGMENTS);
    let mut j = JoinInput::new(budget.clone(), DEFAULT_MAX_SEGMENTS);
    // Two partials, as two files of a recording would be.
    let mut k = JoinInput::new(budget, DEFAULT_MAX_SEGMENTS);
    for (i, o) in ops.iter().enumerate() {
        if i % 2 == 0 {
            j.add(o);
        } else {
            k.add(o);
        }
    }
    j.merge(k);
    j.finish(&["a".to_string(), "b".to_string()])
}

fn ping_pong(n: u32, c_seq: u32, s_seq: u32) -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..n {
        let t = T0 + i64::from(i) * 100 * MS;
        exchange(&mut ops, 0, t, 100, c_seq.wrapping_add(i * 100));
        exchange(&mut ops, 1, t + 50 * MS, 1000, s_seq.wrapping_add(i * 1000));
    }
    ops
}

#[test]
fn known_delays_and_offset() {
    let j = run(&ping_pong(50, 1000, 5000));
    assert_eq!(j.pairs.len(), 1);
    let p = &j.pairs[0];
    assert_eq!((p.machine_a.as_str(), p.machine_b.as_str()), ("a", "b"));
    assert_eq!(p.a_to_b.bytes_joined, 5000);
    assert_eq!(p.b_to_a.bytes_joined, 50_000);
    assert_eq!(j.bytes_joined, 55_000);
    assert_eq!(j.unjoined, Unjoined::default());
    // Measured on two clocks: the delay plus B's lead, the delay minus it.
    let m = p.a_to_b.measured_delay_ns.unwrap();
    assert_eq!(
        (m.min, m.p50, m.max),
        (AB + OFFSET, AB + OFFSET, AB + OFFSET)
    );
    let m = p.b_to_a.measured_delay_ns.unwrap();
    assert_eq!(m.p99, BA - OFFSET);
    // NTP: the offset within half the round trip of the truth.
    let o = p.clock_offset.unwrap();
    assert_eq!(o.error_ns, (AB + BA) / 2);
    assert!((o.b_minus_a_ns - OFFSET).abs() <= o.error_ns, "{o:?}");
    assert_eq!(o.b_minus_a_ns, (AB + OFFSET - (BA - OFFSET)) / 2);
    // The one-way delays, corrected, bracket the truth.
    let w = p.a_to_b.one_way_delay_ns.unwrap();
    let e = p.a_to_b.one_way_error_ns.unwrap();
    assert!((w.p50 - AB).abs() <= e, "{w:?} ± {e}");
    let w = p.b_to_a.one_way_delay_ns.unwrap();
    assert!((w.p50 - BA).abs() <= e, "{w:?} ± {e}");
    // One conversation, from the client's end.
    assert_eq!(j.conversations.len(), 1);
    let c = &j.conversations[0];
    assert_eq!((c.a.as_str(), c.b.as_str()), (CLIENT, SERVER));
    assert_eq!(c.a_to_b, p.a_to_b);
}

#[test]
fn symmetric_delays_give_the_offset_exactly() {
    // With equal delays both ways the estimate is exact.
    let mut ops = Vec::new();
    for i in 0..10 {
        let t = T0 + i * 10 * MS;
        ops.push(op(0, Direction::Send, t, 0, 10, (i * 10) as u32));
        ops.push(op(
            1,
            Direction::Receive,
            t + OFFSET,
            5 * MS,
            10,
            (i * 10) as u32,
        ));
        ops.push(op(1, Direction::Send, t + OFFSET, 0, 10, (i * 10) as u32));
        ops.push(op(0, Direction::Receive, t, 5 * MS, 10, (i * 10) as u32));
    }
    let o = run(&ops).pairs[0].clock_offset.unwrap();
    assert_eq!(o.b_minus_a_ns, OFFSET);
    assert_eq!(o.error_ns, 5 * MS);
}

#[test]
fn a_lost_receive_is_counted_not_guessed() {
    let mut ops = ping_pong(10, 0, 0);
    // The server's 4th receive row is lost (100 bytes).
    let lost = ops
        .iter()
        .position(|o| {
            o.machine == 1 && o.direction == Direction::Receive && o.attr.seq == Some(300)
        })
        .unwrap();
    ops.remove(lost);
    let j = run(&ops);
    let p = &j.pairs[0];
    assert_eq!(p.a_to_b.bytes_sent, 1000);
    assert_eq!(p.a_to_b.bytes_joined, 900);
    assert_eq!(p.a_to_b.bytes_sent_not_joined, 100);
    assert_eq!(j.unjoined.sent_not_received, Count { ops: 1, bytes: 100 });
    assert_eq!(j.unjoined.received_not_sent, Count::default());
    assert_eq!(p.a_to_b.pairs, 9);
}

#[test]
fn sequence_numbers_wrap_at_2_32() {
    // Both directions start just below 2^32 and wrap in the middle.
    let j = run(&ping_pong(40, u32::MAX - 1234, u32::MAX - 9_999));
    let p = &j.pairs[0];
    assert_eq!(p.a_to_b.bytes_joined, 4000);
    assert_eq!(p.b_to_a.bytes_joined, 40_000);
    assert_eq!(j.unjoined, Unjoined::default());
    assert_eq!(p.a_to_b.pairs, 40);
}

#[test]
fn a_send_split_over_several_receives() {
    // One send of 10000 bytes, read as 4096 + 4096 + 1808.
    let seq = u32::MAX - 5000; // and across the wrap, too
    let mut ops = vec![op(0, Direction::Send, T0, 1000, 10_000, seq)];
    let mut at = seq;
    for (i, n) in [4096u32, 4096, 1808].into_iter().enumerate() {
        ops.push(op(
            1,
            Direction::Receive,
            T0 + OFFSET + i as i64 * MS,
            AB,
            u64::from(n),
            at,
        ));
        at = at.wrapping_add(n);
    }
    let j = run(&ops);
    let d = &j.pairs[0].a_to_b;
    assert_eq!((d.bytes_joined, d.pairs), (10_000, 3));
    assert_eq!((d.ops_sent, d.ops_received), (1, 3));
    let m = d.measured_delay_ns.unwrap();
    assert_eq!((m.min, m.max), (AB + OFFSET, AB + OFFSET + 2 * MS));
    // One direction only: no offset, and so no one-way delay.
    assert!(j.pairs[0].clock_offset.is_none());
    assert!(d.one_way_delay_ns.is_none());
}

#[test]
fn a_receive_coalescing_several_sends() {
    // Three sends of 100, 200, 300 read by one receive of 600.
    let mut ops = Vec::new();
    let mut seq = 77u32;
    for (i, n) in [100u32, 200, 300].into_iter().enumerate() {
        ops.push(op(
            0,
            Direction::Send,
            T0 + i as i64 * MS,
            10,
            u64::from(n),
            seq,
        ));
        seq += n;
    }
    ops.push(op(1, Direction::Receive, T0 + OFFSET, AB + 2 * MS, 600, 77));
    let j = run(&ops);
    let d = &j.pairs[0].a_to_b;
    assert_eq!((d.bytes_joined, d.pairs), (600, 3));
    // Each send's delay runs from its own start to the one receive's end.
    let m = d.measured_delay_ns.unwrap();
    assert_eq!(m.max, AB + 2 * MS + OFFSET);
    assert_eq!(m.min, AB + OFFSET);
}

#[test]
fn partial_overlap_counts_the_rest() {
    // A 1000-byte send; the recording of the receiver starts after its
    // first 400 bytes were read.
    let ops = vec![
        op(0, Direction::Send, T0, 10, 1000, 0),
        op(1, Direction::Receive, T0 + OFFSET, AB, 600, 400),
        op(1, Direction::Receive, T0 + OFFSET, AB, 50, 1000),
    ];
    let j = run(&ops);
    let d = &j.pairs[0].a_to_b;
    assert_eq!(d.bytes_joined, 600);
    assert_eq!(d.bytes_sent_not_joined, 400);
    assert_eq!(d.bytes_received_not_joined, 50);
    // A partly joined op is not an unjoined op; its bytes are counted.
    assert_eq!(j.unjoined.sent_not_received, Count { ops: 0, bytes: 400 });
    assert_eq!(j.unjoined.received_not_sent, Count { ops: 1, bytes: 50 });
}

#[test]
fn unjoinable_traffic_by_reason() {
    let mut ops = ping_pong(3, 0, 0);
    // No seq: counted.
    let mut o = op(0, Direction::Send, T0, 1, 42, 0);
    o.attr.seq = None;
    ops.push(o);
    // A flow whose peer is not recorded.
    let mut o = op(0, Direction::Send, T0, 1, 10, 0);
    o.remote = Some(ep("10.9.9.9:443"));
    ops.push(o);
    // Both ends on machine 0 (loopback).
    let mut o = op(0, Direction::Receive, T0, 1, 5, 0);
    o.remote = Some(ep("10.9.9.9:443"));
    o.local = ep("10.0.0.1:40000");
    let mut o2 = op(0, Direction::Send, T0, 1, 5, 0);
    o2.local = ep("10.0.0.1:40001");
    o2.remote = Some(ep("10.0.0.1:40002"));
    let mut o3 = op(0, Direction::Receive, T0, 1, 5, 0);
    o3.local = ep("10.0.0.1:40002");
    o3.remote = Some(ep("10.0.0.1:40001"));
    ops.extend([o, o2, o3]);
    // UDP and failed ops are no part of it.
    let mut u = op(0, Direction::Send, T0, 1, 7, 0);
    u.protocol = Protocol::Udp;
    let mut f = op(0, Direction::Send, T0, 1, 0, 0);
    f.errno = Some(32);
    ops.extend([u, f]);
    let j = run(&ops);
    assert_eq!(j.unjoined.no_seq, Count { ops: 1, bytes: 42 });
    // The 10-byte send to :443 and the 5-byte receive from it are one
    // flow each, neither with the other end recorded.
    assert_eq!(j.unjoined.no_peer, Count { ops: 2, bytes: 15 });
    assert_eq!(j.unjoined.same_machine, Count { ops: 2, bytes: 10 });
    assert_eq!(j.bytes_joined, 3300);
    assert_eq!(j.tcp_sent.ops + j.tcp_received.ops, 12 + 1 + 1 + 3);
    assert_eq!(j.tcp_sent.bytes, 3 * 1100 + 42 + 10 + 5);
}

#[test]
fn several_recorders_of_one_side_are_not_guessed_between() {
    let mut ops = ping_pong(2, 0, 0);
    // A third machine also recorded the client's sends.
    let dup: Vec<_> = ops
        .iter()
        .filter(|o| o.machine == 0 && o.direction == Direction::Send)
        .map(|o| Op { machine: 2, ..*o })
        .collect();
    ops.extend(dup);
    let j = run(&ops);
    assert_eq!(j.unjoined.several_machines, Count { ops: 6, bytes: 600 });
    assert_eq!(j.pairs[0].a_to_b.bytes_joined, 0);
    assert_eq!(j.pairs[0].b_to_a.bytes_joined, 2000);
}

#[test]
fn the_memory_bound_is_counted() {
    let ops = ping_pong(10, 0, 0);
    let budget = JoinInput::budget(30);
    let mut j = JoinInput::new(budget, 30);
    for o in &ops {
        j.add(o);
    }
    let out = j.finish(&["a".into(), "b".into()]);
    assert_eq!(out.max_segments, 30);
    assert_eq!(out.unjoined.over_bound.ops, 10);
    let kept: u64 = out
        .pairs
        .iter()
        .map(|p| {
            p.a_to_b.ops_sent + p.a_to_b.ops_received + p.b_to_a.ops_sent + p.b_to_a.ops_received
        })
        .sum();
    assert_eq!(kept, 30);
}
