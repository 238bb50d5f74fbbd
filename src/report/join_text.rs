//! The text form of the `join` and `network` sections (docs/join.md):
//! bytes joined between machines, one-way delays and the clocks' offset
//! with its error, and per conversation what TCP knew over time.

use std::fmt::Write;

use super::format::{bytes, count, latency, signed_latency};
use super::model::Report;
use super::text::{Table, TextOptions, title};
use crate::analysis::join::{Count, DelayOut, DirOut, JoinOut, Unjoined};
use crate::analysis::netside::{NetPointOut, NetworkOut};
use crate::schema::format_timestamp_ns;

fn delays(d: Option<DelayOut>) -> [String; 3] {
    d.map_or_else(
        || ["-".into(), "-".into(), "-".into()],
        |d| {
            [
                signed_latency(d.p50),
                signed_latency(d.p99),
                signed_latency(d.max),
            ]
        },
    )
}

fn direction_row(tb: &mut Table, from: &str, to: &str, d: &DirOut) {
    let [p50, p99, max] = delays(d.measured_delay_ns);
    let one_way = match (d.one_way_delay_ns, d.one_way_error_ns) {
        (Some(w), Some(e)) => format!("{} ± {}", signed_latency(w.p50), signed_latency(e)),
        _ => "-".into(),
    };
    tb.row(vec![
        format!("{from} -> {to}"),
        bytes(d.bytes_sent),
        bytes(d.bytes_joined),
        bytes(d.bytes_sent_not_joined),
        bytes(d.bytes_received_not_joined),
        p50,
        p99,
        max,
        one_way,
    ]);
}

fn delay_table() -> Table {
    Table::new(&[
        "direction",
        "sent",
        "joined",
        "sent, not received",
        "received, not sent",
        "delay p50",
        "p99",
        "max",
        "one-way p50",
    ])
    .left(&[0])
}

fn ops_and_bytes(c: Count) -> String {
    format!("{} ops, {}", count(c.ops), bytes(c.bytes))
}

pub fn render_join(out: &mut String, j: &JoinOut, o: &TextOptions) {
    title(out, o, "Machines joined on TCP sequence numbers");
    let _ = writeln!(
        out,
        "  {} joined of {} TCP bytes sent ({} received); machines with TCP Seq: {}",
        bytes(j.bytes_joined),
        bytes(j.tcp_sent.bytes),
        bytes(j.tcp_received.bytes),
        if j.machines_with_seq.is_empty() {
            "none".to_string()
        } else {
            j.machines_with_seq.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  delay: the receive's end (receiver's clock) minus the send's start (sender's clock)"
    );
    for p in &j.pairs {
        let _ = writeln!(out, "\n  {} <-> {}", p.machine_a, p.machine_b);
        match p.clock_offset {
            Some(c) => {
                // "-1.5us ahead" reads wrong: a negative offset is behind.
                let (word, magnitude) = if c.b_minus_a_ns < 0 {
                    ("behind", -c.b_minus_a_ns)
                } else {
                    ("ahead of", c.b_minus_a_ns)
                };
                let _ = writeln!(
                    out,
                    "  clock offset: {} is {} {word} {}, ± {} (NTP: half the smallest round trip)",
                    p.machine_b,
                    signed_latency(magnitude),
                    p.machine_a,
                    signed_latency(c.error_ns)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  clock offset: unknown (bytes joined in one direction only)"
                );
            }
        }
        let mut tb = delay_table();
        direction_row(&mut tb, &p.machine_a, &p.machine_b, &p.a_to_b);
        direction_row(&mut tb, &p.machine_b, &p.machine_a, &p.b_to_a);
        tb.render(out);
    }
    if !j.conversations.is_empty() {
        let _ = writeln!(out, "\n  conversations:");
        let mut tb = delay_table();
        for c in j.conversations.iter().take(o.top) {
            let a = format!("{} {}", c.machine_a, c.a);
            let b = format!("{} {}", c.machine_b, c.b);
            direction_row(&mut tb, &a, &b, &c.a_to_b);
            direction_row(&mut tb, &b, &a, &c.b_to_a);
        }
        tb.render(out);
        if j.conversations_total > o.top.min(j.conversations.len()) {
            let _ = writeln!(
                out,
                "  ... {} more (see --format json)",
                j.conversations_total - o.top.min(j.conversations.len())
            );
        }
    }
    let u = &j.unjoined;
    let _ = writeln!(out, "\n  not joined (counted, never guessed):");
    if *u == Unjoined::default() {
        let _ = writeln!(out, "    none");
    }
    for (what, c) in [
        ("no TCP Seq value", u.no_seq),
        ("past the memory bound", u.over_bound),
        ("other end in no input", u.no_peer),
        ("both ends on one machine", u.same_machine),
        ("one side on several machines", u.several_machines),
        ("sent, no receive recorded", u.sent_not_received),
        ("received, no send recorded", u.received_not_sent),
    ] {
        if c.bytes > 0 || c.ops > 0 {
            let _ = writeln!(out, "    {what}: {}", ops_and_bytes(c));
        }
    }
}

pub fn render_network(out: &mut String, n: &NetworkOut, o: &TextOptions) {
    title(out, o, "The network's side: TCP state over time");
    if n.untracked.ops > 0 {
        let _ = writeln!(
            out,
            "  {} of conversations past the memory bound not shown",
            ops_and_bytes(n.untracked)
        );
    }
    let shown = o.top.min(n.conversations.len());
    for c in n.conversations.iter().take(shown) {
        let _ = writeln!(
            out,
            "\n  {} {} -> {}: {} ops, {}, {} retransmits, srtt mean {} max {}",
            c.machine,
            c.local,
            c.remote,
            count(c.ops),
            bytes(c.bytes),
            count(c.retransmits),
            c.srtt_mean_us
                .map_or("-".into(), |v| latency((v * 1000.0) as u64)),
            c.srtt_max_us
                .map_or("-".into(), |v| latency(u64::from(v) * 1000)),
        );
        let mut tb = Table::new(&[
            "time (UTC)",
            "ops",
            "latency mean",
            "max",
            "srtt mean",
            "max",
            "cwnd min",
            "retrans",
        ])
        .left(&[0]);
        for p in &condense(&c.points, TEXT_ROWS) {
            tb.row(vec![
                format_timestamp_ns(p.t_ns),
                count(p.ops),
                p.latency_mean_ns.map_or("-".into(), latency),
                p.latency_max_ns.map_or("-".into(), latency),
                p.srtt_mean_us
                    .map_or("-".into(), |v| latency((v * 1000.0) as u64)),
                p.srtt_max_us
                    .map_or("-".into(), |v| latency(u64::from(v) * 1000)),
                p.cwnd_min.map_or("-".into(), |v| v.to_string()),
                p.retransmits.map_or("-".into(), count),
            ]);
        }
        tb.render(out);
    }
    if n.conversations_total > shown {
        let _ = writeln!(
            out,
            "  ... {} more (see --format json)",
            n.conversations_total - shown
        );
    }
}

/// Rows of a conversation's series in the text (the JSON has every bucket).
const TEXT_ROWS: usize = 12;

/// At most `n` rows: runs of neighbouring buckets folded into one (sums
/// of ops and retransmits, means weighted by ops, the largest maxima, the
/// smallest cwnd), for reading at a glance.
fn condense(points: &[NetPointOut], n: usize) -> Vec<NetPointOut> {
    let per = points.len().div_ceil(n.max(1)).max(1);
    points
        .chunks(per)
        .map(|c| {
            let ops: u64 = c.iter().map(|p| p.ops).sum();
            let weighted = |f: &dyn Fn(&NetPointOut) -> Option<f64>| {
                let (mut s, mut w) = (0.0, 0.0);
                for p in c {
                    if let Some(v) = f(p) {
                        s += v * p.ops as f64;
                        w += p.ops as f64;
                    }
                }
                (w > 0.0).then(|| s / w)
            };
            NetPointOut {
                t_ns: c[0].t_ns,
                ops,
                latency_mean_ns: weighted(&|p| p.latency_mean_ns.map(|v| v as f64))
                    .map(|v| v as u64),
                latency_max_ns: c.iter().filter_map(|p| p.latency_max_ns).max(),
                srtt_mean_us: weighted(&|p| p.srtt_mean_us),
                srtt_max_us: c.iter().filter_map(|p| p.srtt_max_us).max(),
                cwnd_min: c.iter().filter_map(|p| p.cwnd_min).min(),
                retransmits: c.iter().filter_map(|p| p.retransmits).reduce(|a, b| a + b),
            }
        })
        .collect()
}

/// Both sections, when the report has them.
pub fn render(out: &mut String, r: &Report, o: &TextOptions) {
    if let Some(j) = &r.join {
        render_join(out, j, o);
    }
    if let Some(n) = &r.network {
        render_network(out, n, o);
    }
}
