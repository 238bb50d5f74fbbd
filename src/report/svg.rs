//! Hand-written SVG plots for the HTML report: deterministic bytes (fixed
//! decimals, no fonts measured, no randomness), and every text from the
//! data escaped.

use std::fmt::Write;

use super::format::{bytes, latency};
use super::model::{HeatmapOut, LatencyOut, SeriesOut};

const W: f64 = 900.0;
const H: f64 = 260.0;
const ML: f64 = 78.0; // left margin (axis labels)
const MR: f64 = 16.0;
const MT: f64 = 28.0;
const MB: f64 = 38.0;

/// Escapes text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(out: &mut String, title: &str, h: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W:.0} {h:.0}\" width=\"{W:.0}\" height=\"{h:.0}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
<rect x=\"0\" y=\"0\" width=\"{W:.0}\" height=\"{h:.0}\" fill=\"#ffffff\"/>\
<text x=\"{ML:.0}\" y=\"18\" class=\"t\">{t}</text>",
        t = esc(title)
    );
}

fn empty(title: &str) -> String {
    let mut out = String::new();
    open(&mut out, title, 80.0);
    let _ = write!(
        out,
        "<text x=\"{ML:.0}\" y=\"52\" class=\"l\">no data</text></svg>"
    );
    out
}

/// "Nice" upper bound for an axis.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

/// A per-second rate on an axis: whole numbers as they are, fractions
/// (low rates: ticks at 0.25, 0.5, ...) with up to two decimals, so that
/// no two ticks read alike.
pub(super) fn rate_label(v: f64) -> String {
    if v.fract() == 0.0 || v >= 100.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn time_label(t_ns: i64) -> String {
    // HH:MM:SS of the UTC time.
    let s = t_ns.div_euclid(1_000_000_000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A chart of several series over time. `fmt` labels the y axis. Points
/// further apart than `step_ns` (buckets with no ops) break the line, so
/// a gap between runs is not drawn as a slope.
pub fn time_chart(
    title: &str,
    step_ns: i64,
    xs: &[i64],
    series: &[(&str, &str, Vec<f64>)],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    if xs.is_empty() {
        return empty(title);
    }
    let mut out = String::new();
    open(&mut out, title, H);
    let (x0, x1) = (xs[0], *xs.last().expect("non-empty"));
    let span = ((x1 - x0) as f64).max(1.0);
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.2.iter().copied())
            .fold(0.0, f64::max),
    );
    let px = |t: i64| ML + (t - x0) as f64 / span * (W - ML - MR);
    let py = |v: f64| H - MB - v / ymax * (H - MT - MB);
    axes(&mut out, H, ymax, fmt, x0, x1);
    for (name, colour, ys) in series {
        let mut d = String::new();
        let mut prev: Option<i64> = None;
        for (&t, &v) in xs.iter().zip(ys) {
            let join = prev.is_some_and(|p| t - p <= step_ns);
            let sep = if join { " L" } else { " M" };
            let _ = write!(d, "{sep}{:.1},{:.1}", px(t), py(v));
            // A lone point still shows: a round-capped tick.
            if !join {
                d.push_str(" l0.1,0");
            }
            prev = Some(t);
        }
        let d = d.trim_start();
        let _ = write!(
            out,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" stroke-linecap=\"round\" stroke-linejoin=\"round\"><title>{}</title></path>",
            esc(name)
        );
    }
    legend(&mut out, series.iter().map(|s| (s.0, s.1)));
    out.push_str("</svg>");
    out
}

fn axes(out: &mut String, h: f64, ymax: f64, fmt: &dyn Fn(f64) -> String, x0: i64, x1: i64) {
    let _ = write!(
        out,
        "<line x1=\"{ML:.0}\" y1=\"{b:.0}\" x2=\"{r:.0}\" y2=\"{b:.0}\" class=\"ax\"/>\
<line x1=\"{ML:.0}\" y1=\"{MT:.0}\" x2=\"{ML:.0}\" y2=\"{b:.0}\" class=\"ax\"/>",
        b = h - MB,
        r = W - MR
    );
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let y = h - MB - f64::from(i) / 4.0 * (h - MT - MB);
        let _ = write!(
            out,
            "<line x1=\"{ML:.0}\" y1=\"{y:.1}\" x2=\"{r:.0}\" y2=\"{y:.1}\" class=\"g\"/>\
<text x=\"{lx:.0}\" y=\"{ty:.1}\" class=\"l\" text-anchor=\"end\">{}</text>",
            esc(&fmt(v)),
            r = W - MR,
            lx = ML - 6.0,
            ty = y + 4.0
        );
    }
    let _ = write!(
        out,
        "<text x=\"{ML:.0}\" y=\"{y:.0}\" class=\"l\">{}</text>\
<text x=\"{r:.0}\" y=\"{y:.0}\" class=\"l\" text-anchor=\"end\">{} UTC</text>",
        time_label(x0),
        time_label(x1),
        y = h - MB + 16.0,
        r = W - MR
    );
}

/// The legend, right-aligned in the plot's width: 100 px an item, so that
/// five marks fit as well as two series.
fn legend<'a>(out: &mut String, items: impl Iterator<Item = (&'a str, &'a str)>) {
    let items: Vec<_> = items.collect();
    let mut x = W - MR - 100.0 * items.len() as f64;
    for (name, colour) in items {
        let _ = write!(
            out,
            "<rect x=\"{x:.0}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
<text x=\"{tx:.0}\" y=\"17\" class=\"l\">{}</text>",
            esc(name),
            tx = x + 14.0
        );
        x += 100.0;
    }
}

pub fn ops_chart(s: &SeriesOut) -> String {
    let w = s.bucket_seconds.max(1) as f64;
    let xs: Vec<i64> = s.points.iter().map(|p| p.t_ns).collect();
    time_chart(
        "Operations per second",
        s.bucket_seconds * 1_000_000_000,
        &xs,
        &[
            (
                "sends/s",
                "#1f77b4",
                s.points.iter().map(|p| p.sends as f64 / w).collect(),
            ),
            (
                "receives/s",
                "#d62728",
                s.points.iter().map(|p| p.receives as f64 / w).collect(),
            ),
        ],
        &rate_label,
    )
}

pub fn bytes_chart(s: &SeriesOut) -> String {
    let w = s.bucket_seconds.max(1) as f64;
    let xs: Vec<i64> = s.points.iter().map(|p| p.t_ns).collect();
    time_chart(
        "Bytes per second",
        s.bucket_seconds * 1_000_000_000,
        &xs,
        &[
            (
                "sent/s",
                "#1f77b4",
                s.points.iter().map(|p| p.bytes_sent as f64 / w).collect(),
            ),
            (
                "received/s",
                "#d62728",
                s.points
                    .iter()
                    .map(|p| p.bytes_received as f64 / w)
                    .collect(),
            ),
        ],
        &|v| bytes(v as u64),
    )
}

pub fn errors_chart(s: &SeriesOut) -> String {
    let xs: Vec<i64> = s.points.iter().map(|p| p.t_ns).collect();
    time_chart(
        "Errors per bucket",
        s.bucket_seconds * 1_000_000_000,
        &xs,
        &[
            (
                "retry",
                "#ff7f0e",
                s.points.iter().map(|p| p.retry_errors as f64).collect(),
            ),
            (
                "hard",
                "#7f0000",
                s.points.iter().map(|p| p.hard_errors as f64).collect(),
            ),
        ],
        &rate_label,
    )
}

/// Percentile markers per latency class, on a log scale.
pub fn latency_chart(lat: &[LatencyOut]) -> String {
    let title = "Latency percentiles by direction (log scale)";
    if lat.is_empty() {
        return empty(title);
    }
    let row_h = 26.0;
    let h = MT + MB + row_h * lat.len() as f64;
    let mut out = String::new();
    open(&mut out, title, h);
    let label_w = 210.0;
    let left = ML + label_w - 60.0;
    let max = lat.iter().map(|l| l.summary.max).max().unwrap_or(1).max(1) as f64;
    let hi = max.log10().ceil().max(1.0);
    let px = |v: u64| left + ((v.max(1) as f64).log10() / hi) * (W - MR - left);
    for d in 0..=hi as u32 {
        let x = px(10u64.pow(d));
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{MT:.0}\" x2=\"{x:.1}\" y2=\"{b:.0}\" class=\"g\"/>\
<text x=\"{x:.1}\" y=\"{ty:.0}\" class=\"l\" text-anchor=\"middle\">{}</text>",
            esc(&latency(10u64.pow(d))),
            b = h - MB,
            ty = h - MB + 16.0
        );
    }
    let marks: [(&str, &str); 5] = [
        ("p50", "#2ca02c"),
        ("p90", "#1f77b4"),
        ("p99", "#ff7f0e"),
        ("p99.9", "#d62728"),
        ("max", "#000000"),
    ];
    for (i, l) in lat.iter().enumerate() {
        let y = MT + row_h * i as f64 + row_h / 2.0;
        let s = &l.summary;
        let _ = write!(
            out,
            "<text x=\"8\" y=\"{ty:.1}\" class=\"l\">{} {} (n={})</text>\
<line x1=\"{a:.1}\" y1=\"{y:.1}\" x2=\"{b:.1}\" y2=\"{y:.1}\" stroke=\"#999999\"/>",
            esc(l.class),
            esc(l.protocol),
            s.count,
            ty = y + 4.0,
            a = px(s.p50),
            b = px(s.max)
        );
        for (j, v) in [s.p50, s.p90, s.p99, s.p999, s.max].into_iter().enumerate() {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{}\"><title>{} {}</title></circle>",
                px(v),
                marks[j].1,
                marks[j].0,
                esc(&latency(v))
            );
        }
    }
    legend(&mut out, marks.iter().copied());
    out.push_str("</svg>");
    out
}

/// Colour for a heat map cell: white (none) through yellow to dark red,
/// by log count.
fn heat_colour(n: u64, max: u64) -> String {
    if n == 0 {
        return "#ffffff".into();
    }
    let f = ((n as f64).ln_1p() / (max as f64).ln_1p()).clamp(0.0, 1.0);
    // yellow (255,237,160) -> orange (253,141,60) -> dark red (128,0,38)
    let (a, b, t) = if f < 0.5 {
        ((255.0, 237.0, 160.0), (253.0, 141.0, 60.0), f * 2.0)
    } else {
        ((253.0, 141.0, 60.0), (128.0, 0.0, 38.0), (f - 0.5) * 2.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Time x log2 latency, colour = count (Gregg's latency heat map).
pub fn heatmap(hm: &HeatmapOut) -> String {
    let title = "Latency heat map (time x log2 latency, colour = ops)";
    if hm.columns.is_empty() {
        return empty(title);
    }
    // Rows in use.
    let mut lo = usize::MAX;
    let mut hi = 0;
    for c in &hm.columns {
        for (i, &n) in c.counts.iter().enumerate() {
            if n > 0 {
                lo = lo.min(i);
                hi = hi.max(i);
            }
        }
    }
    let rows = hi - lo + 1;
    // At most 300 columns: merge neighbours.
    let per = hm.columns.len().div_ceil(300);
    let cols: Vec<(i64, Vec<u64>)> = hm
        .columns
        .chunks(per)
        .map(|ch| {
            let mut v = vec![0u64; rows];
            for c in ch {
                for (i, x) in v.iter_mut().enumerate() {
                    *x += c.counts[lo + i];
                }
            }
            (ch[0].t_ns, v)
        })
        .collect();
    let max = cols
        .iter()
        .flat_map(|c| c.1.iter().copied())
        .max()
        .unwrap_or(1);
    let cell_h = (180.0 / rows as f64).clamp(6.0, 16.0);
    let h = MT + MB + cell_h * rows as f64;
    let mut out = String::new();
    open(&mut out, title, h);
    let x0 = cols[0].0;
    let x1 = cols.last().expect("non-empty").0;
    let cw = (W - ML - MR) / cols.len() as f64;
    for (ci, (t, v)) in cols.iter().enumerate() {
        for (ri, &n) in v.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let y = h - MB - cell_h * (ri + 1) as f64;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{cell_h:.1}\" fill=\"{}\"><title>{} {}..{}: {n}</title></rect>",
                ML + cw * ci as f64,
                cw.max(1.0),
                heat_colour(n, max),
                time_label(*t),
                esc(&latency(1u64 << (lo + ri))),
                esc(&latency(1u64 << (lo + ri + 1)))
            );
        }
    }
    // Latency labels every other row.
    for ri in (0..rows).step_by(2.max(rows / 8)) {
        let y = h - MB - cell_h * ri as f64 - cell_h / 2.0 + 4.0;
        let _ = write!(
            out,
            "<text x=\"{:.0}\" y=\"{y:.1}\" class=\"l\" text-anchor=\"end\">{}</text>",
            ML - 6.0,
            esc(&latency(1u64 << (lo + ri)))
        );
    }
    let _ = write!(
        out,
        "<text x=\"{ML:.0}\" y=\"{y:.0}\" class=\"l\">{}</text>\
<text x=\"{r:.0}\" y=\"{y:.0}\" class=\"l\" text-anchor=\"end\">{} UTC</text>",
        time_label(x0),
        time_label(x1),
        y = h - MB + 16.0,
        r = W - MR
    );
    out.push_str("</svg>");
    out
}

/// Horizontal bars (the size histogram).
pub fn bars(title: &str, rows: &[(String, u64)]) -> String {
    if rows.is_empty() {
        return empty(title);
    }
    let row_h = 16.0;
    let h = MT + 12.0 + row_h * rows.len() as f64;
    let mut out = String::new();
    open(&mut out, title, h);
    let left = 230.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1) as f64;
    for (i, (label, n)) in rows.iter().enumerate() {
        let y = MT + row_h * i as f64;
        let w = (*n as f64 / max * (W - MR - left - 80.0)).max(1.0);
        let _ = write!(
            out,
            "<text x=\"{:.0}\" y=\"{ty:.1}\" class=\"l\" text-anchor=\"end\">{}</text>\
<rect x=\"{left:.0}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bh:.1}\" fill=\"#1f77b4\"/>\
<text x=\"{tx:.1}\" y=\"{ty:.1}\" class=\"l\">{n}</text>",
            left - 8.0,
            esc(label),
            ty = y + 11.0,
            bh = row_h - 3.0,
            tx = left + w + 6.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_is_deterministic() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        let a = bars("t<", &[("<b>".into(), 3)]);
        assert_eq!(a, bars("t<", &[("<b>".into(), 3)]));
        assert!(a.contains("&lt;b&gt;") && !a.contains("<b>"));
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        let ticks: Vec<String> = [0.0, 0.25, 0.5, 0.75, 1.0].map(rate_label).to_vec();
        assert_eq!(ticks, ["0", "0.25", "0.5", "0.75", "1"]);
        assert_eq!(rate_label(1250.0), "1250");
        assert_eq!(heat_colour(0, 5), "#ffffff");
        assert_eq!(heat_colour(5, 5), "#800026");
    }
}
