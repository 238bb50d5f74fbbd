//! How a value reads to a person, once for every human view: the text
//! and HTML reports, `top` and `watch` print a latency, a byte count, a
//! rate, a count or a duration through these functions, so one value
//! looks the same everywhere. A leaf module (it imports nothing of the
//! crate), so that every layer may use it. Machine outputs (JSON, CSV) never come here: they
//! keep the exact numbers (docs/architecture.md lists the styles).

/// A count, exact, thousands separated: `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Three significant figures: `7.50`, `12.3`, `456`.
fn sig3(v: f64) -> String {
    if v >= 99.95 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A rate (a count per second), three significant figures with a
/// decimal suffix: `0`, `0.25`, `7.50`, `456`, `1.23k`, `45.6M`.
pub fn rate(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let (v, unit) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if unit.is_empty() && v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    sig3(v) + unit
}

/// A rate that may be unknown (no time span): `-` then.
pub fn opt_rate(v: Option<f64>) -> String {
    v.map_or("-".into(), rate)
}

/// Bytes in powers of 1024 (as nwtrace's size options), three
/// significant figures: `0 B`, `512 B`, `1.50 KiB`, `15.3 MiB`.
pub fn bytes(n: u64) -> String {
    bytes_f(n as f64)
}

/// [`bytes`] of a fractional amount (a rate): whole bytes below 1 KiB,
/// at least `1 B` when not zero ("41.3 B/s" reads as noise).
pub fn bytes_f(v: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if v < 1024.0 {
        let whole = if v > 0.0 { v.max(1.0) } else { 0.0 };
        return format!("{whole:.0} B");
    }
    let mut v = v / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{} {}", sig3(v), UNITS[u])
}

/// Bytes per second, `-` when unknown: `1.50 KiB/s`.
pub fn byte_rate(v: Option<f64>) -> String {
    v.map_or("-".into(), |b| format!("{}/s", bytes_f(b)))
}

/// A latency (nanoseconds) in ns, µs, ms or s, three significant
/// figures: `850 ns`, `12.3 µs`, `1.20 ms`, `2.50 s`.
pub fn latency(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{} µs", sig3(v / 1e3))
    } else if ns < 1_000_000_000 {
        format!("{} ms", sig3(v / 1e6))
    } else {
        format!("{} s", sig3(v / 1e9))
    }
}

/// A latency that may be negative (a delay between two clocks).
pub fn signed_latency(ns: i64) -> String {
    if ns < 0 {
        format!("-{}", latency(ns.unsigned_abs()))
    } else {
        latency(ns as u64)
    }
}

/// A length of time in seconds: `4.500s` below 10 s, then `42s`,
/// `3m05s`, `1h02m03s`.
pub fn seconds(s: f64) -> String {
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else if s < 10.0 {
        format!("{s:.3}s")
    } else {
        format!("{sec}s")
    }
}

/// A fraction as a percentage with one decimal: `12.5%`.
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_has_one_style() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(7.5), "7.50");
        assert_eq!(rate(456.0), "456");
        assert_eq!(rate(1234.0), "1.23k");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(1023 * 1024), "1023 KiB");
        assert_eq!(bytes_f(41.3), "41 B");
        assert_eq!(bytes_f(0.2), "1 B");
        assert_eq!(byte_rate(Some(2048.0)), "2.00 KiB/s");
        assert_eq!(latency(850), "850 ns");
        assert_eq!(latency(12_345), "12.3 µs");
        assert_eq!(latency(99_960), "100 µs");
        assert_eq!(latency(1_200_000), "1.20 ms");
        assert_eq!(latency(2_500_000_000), "2.50 s");
        assert_eq!(signed_latency(-12_345), "-12.3 µs");
        assert_eq!(seconds(4.5), "4.500s");
        assert_eq!(seconds(3723.0), "1h02m03s");
        assert_eq!(percent(0.125), "12.5%");
    }
}
