//! `top --json`: one JSON object per interval, the figures of the screen
//! over that interval, unrounded, for scripts. `"nwtrace_top": 1` is the
//! format's version; fields are only ever added under it.

use serde_json::{Value, json};

use crate::analysis::LatencySummary;
use crate::schema::{errno_text, format_timestamp_ns, is_retry_errno, msg_flags_text};

use super::feed::{Frame, SourceInfo};
use super::view::{self, Base, Figures, RowKey, SortCol, TableRow};

pub const VERSION: u64 = 1;

fn lat(s: &Option<LatencySummary>) -> Value {
    match s {
        Some(s) => json!({
            "count": s.count, "mean_ns": s.mean, "p50_ns": s.p50, "p90_ns": s.p90,
            "p99_ns": s.p99, "p999_ns": s.p999, "max_ns": s.max,
        }),
        None => Value::Null,
    }
}

fn figs(f: &Figures) -> serde_json::Map<String, Value> {
    let v = json!({
        "ops_per_s": f.ops,
        "bytes_sent_per_s": f.sent,
        "bytes_received_per_s": f.recv,
        "retry_errors_per_s": f.retry_errors,
        "hard_errors_per_s": f.hard_errors,
        "latency": lat(&f.latency),
        "total_ops": f.total_ops,
        "total_bytes": f.total_bytes,
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object"),
    }
}

fn row(r: &TableRow) -> Value {
    let mut m = figs(&r.fig);
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    match &r.key {
        RowKey::Proc(p) => {
            put("pid", json!(p.pid));
            put("comm", json!(p.comm.as_str()));
            put("peers", json!(r.peers));
        }
        RowKey::Conv(c) => {
            put("protocol", json!(c.protocol.as_str()));
            put("pid", json!(c.pid));
            put("comm", json!(c.comm.as_str()));
            put("local", json!(c.local.to_string()));
            put("remote", json!(c.remote.map(|e| e.to_string())));
            put("peer_closed", json!(r.end_of_stream));
        }
        RowKey::Remote(p, e) => {
            put("protocol", json!(p.as_str()));
            put("remote", json!(e.map(|e| e.to_string())));
        }
        RowKey::Port(k) => {
            put("protocol", json!(k.protocol.as_str()));
            put("side", json!(k.role.as_str()));
            put("port", json!(k.port));
        }
        RowKey::Err(e) => {
            put("error", json!(errno_text(e.errno)));
            put(
                "kind",
                json!(if is_retry_errno(e.errno) {
                    "retry"
                } else {
                    "hard"
                }),
            );
            put("direction", json!(e.direction.as_str()));
            put("pid", json!(e.pid));
            put("comm", json!(e.comm.as_str()));
        }
        RowKey::Flags(d, f) => {
            put("direction", json!(d.as_str()));
            put("flags", json!(msg_flags_text(*f)));
        }
        RowKey::Container(k) => {
            let id = k.value.as_str();
            put("container_id", json!((!id.is_empty()).then_some(id)));
            put("peers", json!(r.peers));
        }
        RowKey::Other => put("other", json!(true)),
    }
    Value::Object(m)
}

fn table(mut rows: Vec<TableRow>) -> Value {
    view::sort_rows(&mut rows, SortCol::Bytes, true);
    Value::Array(rows.iter().map(row).collect())
}

/// The object for `frame`, with rates over `b` (the interval since the
/// previous object).
pub fn object(frame: &Frame, b: &Base<'_>, dropped: u64) -> Value {
    let (events_rate, lost_rate) = view::health_rates(frame, b);
    let h = &frame.health;
    let source = match &frame.source {
        SourceInfo::Live { backend } => json!({"kind": "live", "backend": backend}),
        SourceInfo::Replay {
            path,
            speed,
            done,
            files,
        } => json!({"kind": "replay", "path": path, "speed": speed, "done": done, "files": files}),
    };
    let t = &frame.cur.agg.totals;
    let latency: Vec<Value> = view::latency(frame, b)
        .iter()
        .map(|l| {
            json!({
                "class": l.class.as_str(),
                "protocol": l.protocol.as_str(),
                "ops_per_s": l.rate,
                "latency": lat(&Some(l.summary)),
            })
        })
        .collect();
    let nf = view::no_flags(frame, b);
    let containers = view::containers(frame, b);
    let mut v = json!({
        "nwtrace_top": VERSION,
        "time": format_timestamp_ns(frame.at_ns),
        "time_ns": frame.at_ns,
        "interval_s": b.secs,
        "since_ns": frame.started_ns,
        "filter": crate::analysis::filter_text(&frame.filter),
        "source": source,
        "health": {
            "events": h.events,
            "events_per_s": events_rate,
            "events_lost": h.events_lost,
            "events_lost_per_s": lost_rate,
            "malformed_records": h.malformed,
            "ring_used_bytes": h.ring_used,
            "ring_size_bytes": h.ring_size,
            "rows_recorded": h.rows_recorded,
            "sampled_out": h.sampled_out,
            "rate_limited": h.rate_limited,
            "filtered": h.filtered,
            "updates_dropped": dropped,
        },
        "interval": figs(&view::totals(frame, b)),
        "totals": {
            "ops": t.ops, "sends": t.sends, "receives": t.receives,
            "bytes_sent": t.bytes_sent, "bytes_received": t.bytes_received,
            "retry_errors": t.retry_errors, "hard_errors": t.hard_errors,
            "end_of_stream": t.end_of_stream, "latency_unknown": t.latency_unknown,
            "unknown_peer": t.unknown_peer,
        },
        "processes": table(view::processes(frame, b)),
        "conversations": table(view::conversations(frame, b, None)),
        "remotes": table(view::remotes(frame, b)),
        "ports": table(view::ports(frame, b)),
        "latency": latency,
        "errors": table(view::errors(frame, b)),
        "flags": table(view::flags(frame, b)),
        "no_flags_per_s": {"send": nf[0], "receive": nf[1]},
    });
    // Only with the Container ID column, so the object is unchanged
    // without it.
    if !containers.is_empty() {
        v["containers"] = table(containers);
    }
    v
}
