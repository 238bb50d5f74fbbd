//! The plots of the `join` and `network` sections (docs/join.md):
//! delays per direction between machines, and per conversation its ops'
//! latency beside the socket's smoothed RTT, and its retransmits, over
//! time. Deterministic bytes; every text escaped.

use std::fmt::Write;

use super::format::signed_latency;
use super::svg::{esc, rate_label, time_chart};
use crate::analysis::join::{DirOut, JoinOut};
use crate::analysis::netside::NetConvOut;

const W: f64 = 900.0;
const LEFT: f64 = 230.0;
const RIGHT: f64 = 240.0;

/// Per direction of every machine pair: the measured delay's p50, p99
/// and max as bars from zero (or from the most negative value, when the
/// clocks make some negative), with the one-way p50 and its error band
/// when the offset is known.
pub fn delays_chart(j: &JoinOut) -> String {
    let title = "Delay from a send's start to its receive's end, by direction";
    let mut rows: Vec<(String, &DirOut)> = Vec::new();
    for p in &j.pairs {
        rows.push((format!("{} -> {}", p.machine_a, p.machine_b), &p.a_to_b));
        rows.push((format!("{} -> {}", p.machine_b, p.machine_a), &p.b_to_a));
    }
    rows.retain(|r| r.1.measured_delay_ns.is_some());
    let row_h = 46.0;
    let h = 40.0 + row_h * rows.len().max(1) as f64 + 20.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W:.0} {h:.0}\" width=\"{W:.0}\" height=\"{h:.0}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
<rect x=\"0\" y=\"0\" width=\"{W:.0}\" height=\"{h:.0}\" fill=\"#ffffff\"/>\
<text x=\"10\" y=\"18\" class=\"t\">{t}</text>",
        t = esc(title)
    );
    if rows.is_empty() {
        out.push_str("<text x=\"10\" y=\"52\" class=\"l\">no bytes joined</text></svg>");
        return out;
    }
    let vals = rows.iter().flat_map(|r| {
        let m = r.1.measured_delay_ns.expect("kept");
        let w = r.1.one_way_delay_ns.map(|w| w.p50);
        let e = r.1.one_way_error_ns.unwrap_or(0);
        [m.min, m.max, w.map_or(0, |w| w - e), w.map_or(0, |w| w + e)]
    });
    let (lo, hi) = vals.fold((0i64, 1i64), |(l, h), v| (l.min(v), h.max(v)));
    let span = (hi - lo) as f64;
    let x = |v: i64| LEFT + (v - lo) as f64 / span * (W - LEFT - RIGHT);
    let _ = write!(
        out,
        "<line x1=\"{z:.1}\" y1=\"30\" x2=\"{z:.1}\" y2=\"{b:.0}\" class=\"ax\"/>",
        z = x(0),
        b = h - 20.0
    );
    for (i, (label, d)) in rows.iter().enumerate() {
        let y = 34.0 + row_h * i as f64;
        let m = d.measured_delay_ns.expect("kept");
        let _ = write!(
            out,
            "<text x=\"{lx:.0}\" y=\"{ty:.1}\" class=\"l\" text-anchor=\"end\">{}</text>",
            esc(label),
            lx = LEFT - 8.0,
            ty = y + 12.0
        );
        for (k, (name, v, colour)) in [
            ("p50", m.p50, "#1f77b4"),
            ("p99", m.p99, "#ff7f0e"),
            ("max", m.max, "#d62728"),
        ]
        .into_iter()
        .enumerate()
        {
            let (a, b) = (x(0.min(v)), x(0.max(v)));
            let _ = write!(
                out,
                "<rect x=\"{a:.1}\" y=\"{ry:.1}\" width=\"{w:.1}\" height=\"8\" fill=\"{colour}\"><title>{name} {}</title></rect>",
                esc(&signed_latency(v)),
                ry = y + 10.0 * k as f64,
                w = (b - a).max(1.0)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{tx:.0}\" y=\"{ty:.1}\" class=\"l\">p50 {} p99 {} max {}</text>",
            esc(&signed_latency(m.p50)),
            esc(&signed_latency(m.p99)),
            esc(&signed_latency(m.max)),
            tx = W - RIGHT + 6.0,
            ty = y + 12.0
        );
        if let (Some(w), Some(e)) = (d.one_way_delay_ns, d.one_way_error_ns) {
            let (a, b) = (x(w.p50 - e), x(w.p50 + e));
            let _ = write!(
                out,
                "<line x1=\"{a:.1}\" y1=\"{ly:.1}\" x2=\"{b:.1}\" y2=\"{ly:.1}\" stroke=\"#2ca02c\" stroke-width=\"2\"><title>one-way p50 {} ± {}</title></line>\
<circle cx=\"{c:.1}\" cy=\"{ly:.1}\" r=\"3\" fill=\"#2ca02c\"/>",
                esc(&signed_latency(w.p50)),
                esc(&signed_latency(e)),
                c = x(w.p50),
                ly = y + 36.0
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"{LEFT:.0}\" y=\"{y:.0}\" class=\"l\">bars: measured p50, p99, max (two clocks); green: one-way p50 ± the offset's error</text></svg>",
        y = h - 4.0
    );
    out
}

/// A conversation's ops' latency and the socket's srtt (milliseconds),
/// then its retransmits, per time bucket.
pub fn network_charts(c: &NetConvOut) -> String {
    let xs: Vec<i64> = c.points.iter().map(|p| p.t_ns).collect();
    let ms = |v: Option<f64>| v.unwrap_or(0.0);
    let title = format!(
        "{} {} -> {}: latency and srtt",
        c.machine, c.local, c.remote
    );
    let mut out = time_chart(
        &title,
        c.step_ns,
        &xs,
        &[
            (
                "op latency mean",
                "#1f77b4",
                c.points
                    .iter()
                    .map(|p| ms(p.latency_mean_ns.map(|v| v as f64 / 1e6)))
                    .collect(),
            ),
            (
                "op latency max",
                "#aec7e8",
                c.points
                    .iter()
                    .map(|p| ms(p.latency_max_ns.map(|v| v as f64 / 1e6)))
                    .collect(),
            ),
            (
                "srtt mean",
                "#d62728",
                c.points
                    .iter()
                    .map(|p| ms(p.srtt_mean_us.map(|v| v / 1e3)))
                    .collect(),
            ),
        ],
        &|v| format!("{v:.2} ms"),
    );
    out.push_str(&time_chart(
        &format!("{} {} -> {}: retransmits", c.machine, c.local, c.remote),
        c.step_ns,
        &xs,
        &[(
            "retransmits",
            "#ff7f0e",
            c.points
                .iter()
                .map(|p| p.retransmits.unwrap_or(0) as f64)
                .collect(),
        )],
        // A chart of few retransmits has ticks at 0.25, 0.5, ...: not
        // "0, 0, 0, 1, 1".
        &|v| rate_label(v),
    ));
    out
}
