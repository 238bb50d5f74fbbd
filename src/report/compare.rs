//! `--baseline`: every table against another recording. Keys that do not
//! depend on the run (process ids and ephemeral ports differ between two
//! recordings): commands by comm, conversations by protocol, comm and
//! remote endpoint, remote endpoints, ports, and errors by errno and
//! direction.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::Report;

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub inputs: Vec<String>,
    pub totals: Vec<MetricDelta>,
    pub commands: Vec<RowDelta>,
    pub conversations: Vec<RowDelta>,
    pub remote_endpoints: Vec<RowDelta>,
    pub ports: Vec<RowDelta>,
    pub errors: Vec<RowDelta>,
}

/// One number then and now. `pct` is `null` when the baseline is 0.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Delta {
    pub baseline: f64,
    pub current: f64,
    pub delta: f64,
    pub pct: Option<f64>,
}

impl Delta {
    pub fn new(baseline: f64, current: f64) -> Delta {
        Delta {
            baseline,
            current,
            delta: current - baseline,
            pct: (baseline != 0.0).then(|| (current - baseline) / baseline * 100.0),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricDelta {
    pub metric: &'static str,
    #[serde(flatten)]
    pub d: Delta,
}

/// A table row's key and its deltas; `null` where the table has no such
/// number.
#[derive(Clone, Debug, Serialize)]
pub struct RowDelta {
    pub key: String,
    /// `added`, `removed` or `both`.
    pub presence: &'static str,
    pub bytes: Delta,
    pub ops: Delta,
    pub p99_ns: Option<Delta>,
    pub errors: Delta,
}

#[derive(Clone, Copy, Default)]
struct Nums {
    bytes: u64,
    ops: u64,
    p99: Option<u64>,
    errors: u64,
}

fn table(base: BTreeMap<String, Nums>, cur: BTreeMap<String, Nums>) -> Vec<RowDelta> {
    let mut keys: Vec<&String> = base.keys().chain(cur.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<RowDelta> = keys
        .into_iter()
        .map(|k| {
            let b = base.get(k).copied();
            let c = cur.get(k).copied();
            let (bn, cn) = (b.unwrap_or_default(), c.unwrap_or_default());
            RowDelta {
                key: k.clone(),
                presence: match (b.is_some(), c.is_some()) {
                    (true, true) => "both",
                    (false, _) => "added",
                    (true, false) => "removed",
                },
                bytes: Delta::new(bn.bytes as f64, cn.bytes as f64),
                ops: Delta::new(bn.ops as f64, cn.ops as f64),
                p99_ns: match (bn.p99, cn.p99) {
                    (None, None) => None,
                    (x, y) => Some(Delta::new(x.unwrap_or(0) as f64, y.unwrap_or(0) as f64)),
                },
                errors: Delta::new(bn.errors as f64, cn.errors as f64),
            }
        })
        .collect();
    // Largest change in bytes first, then the key.
    rows.sort_by(|a, b| {
        b.bytes
            .delta
            .abs()
            .total_cmp(&a.bytes.delta.abs())
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

fn commands(r: &Report) -> BTreeMap<String, Nums> {
    r.commands
        .iter()
        .map(|p| {
            let l = &p.latency_ns;
            let p99 = l.send.p99.max(l.receive.p99);
            (
                p.comm.clone(),
                Nums {
                    bytes: p.bytes_sent + p.bytes_received,
                    ops: p.ops,
                    p99: (l.send.count + l.receive.count > 0).then_some(p99),
                    errors: p.errors,
                },
            )
        })
        .collect()
}

fn conversations(r: &Report) -> BTreeMap<String, Nums> {
    let mut m: BTreeMap<String, Nums> = BTreeMap::new();
    for c in &r.conversations {
        let remote = match (&c.remote_address, c.remote_port) {
            (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            _ => "(unknown peer)".into(),
        };
        let key = format!("{} {} -> {remote}", c.protocol, c.comm);
        let e = m.entry(key).or_default();
        e.bytes += c.bytes_sent + c.bytes_received;
        e.ops += c.ops;
        e.errors += c.errors;
        let p99 = c.latency_ns.send.p99.max(c.latency_ns.receive.p99);
        if c.latency_ns.send.count + c.latency_ns.receive.count > 0 {
            // Several sockets on one key: the worst p99 stands for them.
            e.p99 = Some(e.p99.unwrap_or(0).max(p99));
        }
    }
    m
}

fn endpoints(r: &Report) -> BTreeMap<String, Nums> {
    r.remote_endpoints
        .iter()
        .map(|e| {
            let key = match (&e.address, e.port) {
                (Some(a), Some(p)) => format!("{} {a} {p}", e.protocol),
                _ => format!("{} (unknown peer)", e.protocol),
            };
            (
                key,
                Nums {
                    bytes: e.bytes_sent + e.bytes_received,
                    ops: e.ops,
                    p99: None,
                    errors: e.errors,
                },
            )
        })
        .collect()
}

fn ports(r: &Report) -> BTreeMap<String, Nums> {
    r.ports
        .iter()
        .map(|p| {
            (
                format!("{} {} {}", p.protocol, p.role, p.port),
                Nums {
                    bytes: p.bytes_sent + p.bytes_received,
                    ops: p.ops,
                    p99: None,
                    errors: p.errors,
                },
            )
        })
        .collect()
}

fn errors(r: &Report) -> BTreeMap<String, Nums> {
    r.error_kinds
        .iter()
        .map(|e| {
            (
                format!("{} {}", e.error, e.direction),
                Nums {
                    bytes: 0,
                    ops: e.count,
                    p99: None,
                    errors: e.count,
                },
            )
        })
        .collect()
}

/// `current` against `baseline`. Both should be built without `--top`, so
/// that no row is missing from either side.
pub fn compare(baseline: &Report, current: &Report) -> Comparison {
    let (b, c) = (&baseline.totals, &current.totals);
    let p99 = |r: &Report, dir: &str| {
        r.latency
            .iter()
            .filter(|l| l.direction == dir)
            .map(|l| l.summary.p99)
            .max()
            .unwrap_or(0) as f64
    };
    let m = |metric, x: f64, y: f64| MetricDelta {
        metric,
        d: Delta::new(x, y),
    };
    Comparison {
        inputs: baseline.inputs.clone(),
        totals: vec![
            m("ops", b.ops as f64, c.ops as f64),
            m("bytes_sent", b.bytes_sent as f64, c.bytes_sent as f64),
            m(
                "bytes_received",
                b.bytes_received as f64,
                c.bytes_received as f64,
            ),
            m("errors", b.errors as f64, c.errors as f64),
            m("retry_errors", b.retry_errors as f64, c.retry_errors as f64),
            m("hard_errors", b.hard_errors as f64, c.hard_errors as f64),
            m("send_p99_ns", p99(baseline, "send"), p99(current, "send")),
            m(
                "receive_p99_ns",
                p99(baseline, "receive"),
                p99(current, "receive"),
            ),
        ],
        commands: table(commands(baseline), commands(current)),
        conversations: table(conversations(baseline), conversations(current)),
        remote_endpoints: table(endpoints(baseline), endpoints(current)),
        ports: table(ports(baseline), ports(current)),
        errors: table(errors(baseline), errors(current)),
    }
}
