//! The report's sections that need no ranking: latency by class, MSG
//! flags, sizes and the time series with its heat map.

use super::model::{
    FlagComboOut, FlagOut, FlagsOut, HeatColumn, HeatmapOut, LatencyOut, PointOut, SeriesOut,
    SizeOut,
};
use crate::analysis::{Aggregate, LatClass};
use crate::schema::{Direction, Protocol, format_timestamp_ns, msg_flag_name, msg_flags_text};

/// Latency by class (send, blocking and non-blocking receive) and protocol.
pub(super) fn latency(agg: &Aggregate) -> Vec<LatencyOut> {
    let mut latency = Vec::new();
    for class in LatClass::ALL {
        for proto in Protocol::ALL {
            if let Some(h) = agg.latency.get(&(class, proto)) {
                latency.push(LatencyOut {
                    direction: if class == LatClass::Send {
                        "send"
                    } else {
                        "receive"
                    },
                    class: class.as_str(),
                    protocol: proto.as_str(),
                    summary: h.summary(),
                });
            }
        }
    }
    latency
}

/// MSG flags: each combination, and each flag alone.
pub(super) fn msg_flags(agg: &Aggregate) -> FlagsOut {
    let mut combinations: Vec<FlagComboOut> = agg
        .flag_combos
        .iter()
        .map(|(&(dir, f), c)| FlagComboOut {
            direction: dir.as_str(),
            flags: msg_flags_text(f),
            ops: c.total_ops(),
            bytes: c.total_bytes(),
        })
        .collect();
    combinations.sort_by(|a, b| {
        b.ops
            .cmp(&a.ops)
            .then(a.direction.cmp(b.direction))
            .then(a.flags.cmp(&b.flags))
    });
    let mut flags = Vec::new();
    for dir in Direction::ALL {
        for bit in 0..32 {
            let n = agg.flag_bits[dir.index()][bit];
            if n > 0 {
                flags.push(FlagOut {
                    direction: dir.as_str(),
                    flag: msg_flag_name(1 << bit),
                    ops: n,
                });
            }
        }
    }
    FlagsOut {
        combinations,
        flags,
        no_flags_send: agg.no_flags[0],
        no_flags_receive: agg.no_flags[1],
    }
}

/// Sizes per op, in log2 buckets.
pub(super) fn sizes(agg: &Aggregate) -> Vec<SizeOut> {
    let mut sizes = Vec::new();
    for dir in Direction::ALL {
        for (b, &n) in agg.sizes[dir.index()].iter().enumerate() {
            if n > 0 {
                let (low, high) = if b == 0 {
                    (0, 0)
                } else {
                    (1u64 << (b - 1), ((1u128 << b) - 1) as u64)
                };
                sizes.push(SizeOut {
                    direction: dir.as_str(),
                    low,
                    high,
                    count: n,
                });
            }
        }
    }
    sizes
}

/// The time series and the latency heat map, one column a bucket.
pub(super) fn series_and_heatmap(agg: &Aggregate) -> (SeriesOut, HeatmapOut) {
    let w = agg.series.width_s();
    let mut series = SeriesOut {
        bucket_seconds: w,
        points: vec![],
    };
    let mut heatmap = HeatmapOut {
        bucket_seconds: w,
        latency_buckets_log2: crate::analysis::series::HEAT_BUCKETS,
        columns: vec![],
    };
    for (t_ns, p) in agg.series.points() {
        series.points.push(PointOut {
            t: format_timestamp_ns(t_ns),
            t_ns,
            sends: p.ops[0],
            receives: p.ops[1],
            bytes_sent: p.bytes[0],
            bytes_received: p.bytes[1],
            retry_errors: p.retry_errors,
            hard_errors: p.hard_errors,
        });
        if !p.heat.is_empty() {
            heatmap.columns.push(HeatColumn {
                t_ns,
                counts: p.heat.clone(),
            });
        }
    }
    (series, heatmap)
}
