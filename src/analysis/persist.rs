//! An [`Aggregate`] as JSON, for run summaries (`nw/summary.json`).
//!
//! The stored form holds one machine's aggregate with every key it
//! tracked, the histograms' buckets, and the exemplars with their file
//! named. A bounded table (one that evicted keys, see [`Capped`]) also
//! stores its "other" row, its evictions, its distinct-key estimate and
//! each key's error bound (`bound`, omitted when zero), so that a bounded
//! summary merges like the aggregate it came from (schema version 2). [`AggregateDoc::load`] rebuilds an aggregate
//! that merges exactly like the one that was stored: the same keys,
//! counters, buckets, series and exemplars, and the distinct-key
//! estimate rebuilt from the keys.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::aggregate::{
    ConvKey, ConvStats, Counters, EndpointStats, ErrKey, Overview, PortKey, PortRole, ProcKey,
    ProcStats, TopN, Totals,
};
use super::capped::{Bound, Capped, Entry, Hll};
use super::hist::{LatencyHist, SparseHist};
use super::series::{Series, SeriesPoint};
use super::{Aggregate, AggregateConfig, Exemplar, LatClass, Op, Source};
use crate::schema::{Comm, Direction, Endpoint, Protocol};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HdrDoc {
    pub protocol: String,
    pub class: String,
    /// (highest value of the bucket, count), ns.
    pub buckets: Vec<(u64, u64)>,
    pub count: u64,
    pub sum_ns: u128,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SparseDoc {
    /// (bucket index, count); see `hist::SparseHist`.
    pub buckets: Vec<(u32, u64)>,
    pub count: u64,
    pub sum_ns: u128,
    pub max_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OverviewDoc {
    pub direction: String,
    pub protocol: String,
    pub ip_version: u8,
    #[serde(flatten)]
    pub counts: Overview,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProcessDoc {
    pub pid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub counters: Counters,
    /// How much the counters may undercount (a bounded table); absent
    /// when exact.
    #[serde(default, skip_serializing_if = "Bound::is_zero")]
    pub bound: Bound,
    pub peers: Vec<String>,
    pub peers_capped: bool,
    /// send, receive_blocking, receive_nonblocking.
    pub latency: [SparseDoc; 3],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConversationDoc {
    pub protocol: String,
    pub pid: u32,
    pub comm: String,
    pub local: String,
    pub remote: Option<String>,
    #[serde(flatten)]
    pub counters: Counters,
    /// How much the counters may undercount (a bounded table); absent
    /// when exact.
    #[serde(default, skip_serializing_if = "Bound::is_zero")]
    pub bound: Bound,
    pub end_of_stream: bool,
    /// send, receive.
    pub latency: [SparseDoc; 2],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RemoteDoc {
    pub protocol: String,
    pub remote: Option<String>,
    #[serde(flatten)]
    pub counters: Counters,
    /// How much the counters may undercount (a bounded table); absent
    /// when exact.
    #[serde(default, skip_serializing_if = "Bound::is_zero")]
    pub bound: Bound,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PortDoc {
    pub protocol: String,
    pub role: String,
    pub port: u16,
    #[serde(flatten)]
    pub counters: Counters,
    /// How much the counters may undercount (a bounded table); absent
    /// when exact.
    #[serde(default, skip_serializing_if = "Bound::is_zero")]
    pub bound: Bound,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorDoc {
    pub errno: i32,
    pub direction: String,
    pub pid: u32,
    pub comm: String,
    #[serde(flatten)]
    pub counters: Counters,
    /// How much the counters may undercount (a bounded table); absent
    /// when exact.
    #[serde(default, skip_serializing_if = "Bound::is_zero")]
    pub bound: Bound,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FlagsDoc {
    pub direction: String,
    pub flags: u32,
    #[serde(flatten)]
    pub counters: Counters,
    /// How much the counters may undercount (a bounded table); absent
    /// when exact.
    #[serde(default, skip_serializing_if = "Bound::is_zero")]
    pub bound: Bound,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpDoc {
    pub ts_ns: i64,
    pub pid: u32,
    pub comm: String,
    pub protocol: String,
    pub ip_version: u8,
    pub local: String,
    pub remote: Option<String>,
    pub size: u64,
    pub direction: String,
    pub latency_ns: Option<u64>,
    pub errno: Option<i32>,
    pub msg_flags: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExemplarDoc {
    pub value: u64,
    pub file: String,
    pub line: u64,
    pub op: OpDoc,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeriesDoc {
    pub width_s: i64,
    /// (bucket start, ns since the epoch; point).
    pub points: Vec<(i64, SeriesPoint)>,
}

/// One machine's aggregate, every key kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AggregateDoc {
    pub totals: Totals,
    pub overview: Vec<OverviewDoc>,
    pub latency: Vec<HdrDoc>,
    pub processes: Vec<ProcessDoc>,
    pub conversations: Vec<ConversationDoc>,
    pub remotes: Vec<RemoteDoc>,
    pub ports: Vec<PortDoc>,
    pub errors: Vec<ErrorDoc>,
    pub flag_combos: Vec<FlagsDoc>,
    /// [direction][bit]: ops with each single flag bit.
    pub flag_bits: Vec<Vec<u64>>,
    pub no_flags: [u64; 2],
    /// [direction][bucket]: bucket 0 holds 0 bytes, `i` holds
    /// `[2^(i-1), 2^i)`.
    pub sizes: Vec<Vec<u64>>,
    pub series: SeriesDoc,
    pub exemplars_kept: usize,
    pub slowest: Vec<ExemplarDoc>,
    pub largest: Vec<ExemplarDoc>,
    /// The tables that evicted keys (none in an exact aggregate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounded: Vec<BoundedDoc>,
}

/// What a bounded table keeps apart from its keys.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BoundedDoc {
    /// processes, conversations, remotes, ports, errors or flag_combos.
    pub table: String,
    /// The "other" row: every op of a key not listed (exact).
    pub other: Counters,
    pub evictions: u64,
    /// The most a key not listed may have had.
    pub untracked: Bound,
    /// The distinct-key estimate's HyperLogLog registers, hex.
    pub hll: String,
}

fn bounded_doc<K, V: Entry>(
    table: &str,
    t: &Capped<K, V>,
    counters: impl Fn(&V) -> Counters,
) -> Option<BoundedDoc>
where
    K: std::hash::Hash + Eq + Ord + Clone,
{
    (t.evictions() > 0).then(|| BoundedDoc {
        table: table.into(),
        other: counters(t.other()),
        evictions: t.evictions(),
        untracked: t.untracked(),
        hll: t.hll().to_hex(),
    })
}

fn restore<K, V: Entry>(
    docs: &[BoundedDoc],
    table: &str,
    t: &mut Capped<K, V>,
    entry: impl Fn(Counters) -> V,
) -> Result<(), String>
where
    K: std::hash::Hash + Eq + Ord + Clone,
{
    for d in docs.iter().filter(|d| d.table == table) {
        let hll = Hll::from_hex(&d.hll)
            .ok_or_else(|| format!("the {table} table's distinct-key estimate is damaged"))?;
        t.restore_untracked(entry(d.other.clone()), d.evictions, d.untracked, &hll);
    }
    Ok(())
}

fn endpoint(e: &Endpoint) -> String {
    e.to_string()
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let sa: SocketAddr = s
        .parse()
        .map_err(|_| format!("bad endpoint {s:?} (want ADDR:PORT or [ADDR]:PORT)"))?;
    Ok(Endpoint {
        addr: sa.ip(),
        port: sa.port(),
    })
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(s.as_bytes()).ok_or_else(|| format!("bad protocol {s:?}"))
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    Direction::parse(s.as_bytes()).ok_or_else(|| format!("bad direction {s:?}"))
}

fn parse_class(s: &str) -> Result<LatClass, String> {
    LatClass::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("bad latency class {s:?}"))
}

fn parse_role(s: &str) -> Result<PortRole, String> {
    [PortRole::Local, PortRole::Remote]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("bad port role {s:?}"))
}

fn comm_text(c: &Comm) -> String {
    c.as_str().into_owned()
}

fn sparse_doc(h: &SparseHist) -> SparseDoc {
    let (buckets, count, sum_ns, max_ns) = h.parts();
    SparseDoc {
        buckets,
        count,
        sum_ns,
        max_ns,
    }
}

fn sparse(d: &SparseDoc) -> Result<SparseHist, String> {
    SparseHist::from_parts(d.buckets.clone(), d.count, d.sum_ns, d.max_ns)
        .ok_or_else(|| "a latency histogram's buckets do not add up".to_string())
}

fn op_doc(op: &Op) -> OpDoc {
    OpDoc {
        ts_ns: op.ts_ns,
        pid: op.pid,
        comm: comm_text(&op.comm),
        protocol: op.protocol.as_str().to_string(),
        ip_version: op.ip_version,
        local: endpoint(&op.local),
        remote: op.remote.as_ref().map(endpoint),
        size: op.size,
        direction: op.direction.as_str().to_string(),
        latency_ns: op.latency_ns,
        errno: op.errno,
        msg_flags: op.msg_flags,
    }
}

fn op_of(d: &OpDoc, machine: u32) -> Result<Op, String> {
    Ok(Op {
        machine,
        ts_ns: d.ts_ns,
        pid: d.pid,
        comm: Comm::from_text(d.comm.as_bytes()),
        protocol: parse_protocol(&d.protocol)?,
        ip_version: d.ip_version,
        local: parse_endpoint(&d.local)?,
        remote: d.remote.as_deref().map(parse_endpoint).transpose()?,
        size: d.size,
        direction: parse_direction(&d.direction)?,
        latency_ns: d.latency_ns,
        errno: d.errno,
        msg_flags: d.msg_flags,
        // Summaries of runs with attribution columns are never used
        // (summary.rs marks them inexact), so an op here has none.
        attr: super::OpAttr::default(),
    })
}

/// Sorted by a key, so that the same aggregate always gives the same
/// bytes.
fn sorted<K: Ord + Copy, V>(it: impl Iterator<Item = (K, V)>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = it.collect();
    v.sort_by_key(|x| x.0);
    v
}

/// A table's keys sorted, each with its entry and bound.
fn sorted_bounded<K, V: Entry>(t: &Capped<K, V>) -> Vec<(K, (&V, Bound))>
where
    K: std::hash::Hash + Eq + Ord + Copy,
{
    sorted(t.iter_bounded().map(|(k, v, b)| (*k, (v, b))))
}

impl AggregateDoc {
    /// Stores `a` (one machine's, flushed: call `series.flush()` first).
    /// `file_name` names an exemplar's `Source::file`.
    pub fn store(a: &Aggregate, file_name: impl Fn(u32) -> String) -> AggregateDoc {
        let exemplars = |t: &TopN| {
            t.items()
                .iter()
                .map(|(value, e)| ExemplarDoc {
                    value: *value,
                    file: file_name(e.source.file),
                    line: e.source.line,
                    op: op_doc(&e.op),
                })
                .collect()
        };
        AggregateDoc {
            totals: a.totals.clone(),
            overview: a
                .overview
                .iter()
                .map(|(&(d, p, v), o)| OverviewDoc {
                    direction: d.as_str().into(),
                    protocol: p.as_str().into(),
                    ip_version: v,
                    counts: *o,
                })
                .collect(),
            latency: a
                .latency
                .iter()
                .map(|(&(class, p), h)| {
                    let (buckets, sum_ns, max_ns) = h.parts();
                    HdrDoc {
                        protocol: p.as_str().into(),
                        class: class.as_str().into(),
                        buckets,
                        count: h.count(),
                        sum_ns,
                        max_ns,
                    }
                })
                .collect(),
            processes: sorted_bounded(&a.processes)
                .into_iter()
                .map(|(k, (v, bound))| {
                    let mut peers: Vec<&Endpoint> = v.peers.iter().collect();
                    peers.sort();
                    ProcessDoc {
                        pid: k.pid,
                        comm: comm_text(&k.comm),
                        counters: v.c.clone(),
                        bound,
                        peers: peers.into_iter().map(endpoint).collect(),
                        peers_capped: v.peers_capped,
                        latency: [
                            sparse_doc(&v.latency[0]),
                            sparse_doc(&v.latency[1]),
                            sparse_doc(&v.latency[2]),
                        ],
                    }
                })
                .collect(),
            conversations: sorted_bounded(&a.conversations)
                .into_iter()
                .map(|(k, (v, bound))| ConversationDoc {
                    protocol: k.protocol.as_str().into(),
                    pid: k.pid,
                    comm: comm_text(&k.comm),
                    local: endpoint(&k.local),
                    remote: k.remote.as_ref().map(endpoint),
                    counters: v.c.clone(),
                    bound,
                    end_of_stream: v.end_of_stream,
                    latency: [sparse_doc(&v.latency[0]), sparse_doc(&v.latency[1])],
                })
                .collect(),
            remotes: sorted_bounded(&a.remotes)
                .into_iter()
                .map(|((p, r), (v, bound))| RemoteDoc {
                    protocol: p.as_str().into(),
                    remote: r.as_ref().map(endpoint),
                    counters: v.c.clone(),
                    bound,
                })
                .collect(),
            ports: sorted_bounded(&a.ports)
                .into_iter()
                .map(|(k, (v, bound))| PortDoc {
                    protocol: k.protocol.as_str().into(),
                    role: k.role.as_str().into(),
                    port: k.port,
                    counters: v.clone(),
                    bound,
                })
                .collect(),
            errors: sorted_bounded(&a.errors)
                .into_iter()
                .map(|(k, (v, bound))| ErrorDoc {
                    errno: k.errno,
                    direction: k.direction.as_str().into(),
                    pid: k.pid,
                    comm: comm_text(&k.comm),
                    counters: v.clone(),
                    bound,
                })
                .collect(),
            flag_combos: sorted_bounded(&a.flag_combos)
                .into_iter()
                .map(|((d, f), (v, bound))| FlagsDoc {
                    direction: d.as_str().into(),
                    flags: f,
                    counters: v.clone(),
                    bound,
                })
                .collect(),
            flag_bits: a.flag_bits.iter().map(|b| b.to_vec()).collect(),
            no_flags: a.no_flags,
            sizes: a.sizes.iter().map(|b| b.to_vec()).collect(),
            series: SeriesDoc {
                width_s: a.series.width_s(),
                points: a.series.points().map(|(t, p)| (t, p.clone())).collect(),
            },
            exemplars_kept: a.config.exemplars,
            slowest: exemplars(&a.slowest),
            largest: exemplars(&a.largest),
            bounded: [
                bounded_doc("processes", &a.processes, |v| v.c.clone()),
                bounded_doc("conversations", &a.conversations, |v| v.c.clone()),
                bounded_doc("remotes", &a.remotes, |v| v.c.clone()),
                bounded_doc("ports", &a.ports, Counters::clone),
                bounded_doc("errors", &a.errors, Counters::clone),
                bounded_doc("flag_combos", &a.flag_combos, Counters::clone),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }

    /// The aggregate back, on `machine`, with no bound on its tables (the
    /// caller sets them before `finish`). `file_index` maps an exemplar's
    /// file name to the caller's numbering; an unknown name is an error.
    pub fn load(
        &self,
        machine: u32,
        config: AggregateConfig,
        file_index: impl Fn(&str) -> Option<u32>,
    ) -> Result<Aggregate, String> {
        let unbounded = AggregateConfig {
            max_processes: usize::MAX / 4,
            max_conversations: usize::MAX / 4,
            max_remotes: usize::MAX / 4,
            max_ports: usize::MAX / 4,
            max_errors: usize::MAX / 4,
            max_flag_combos: usize::MAX / 4,
            ..config
        };
        let mut a = Aggregate::new(unbounded);
        a.totals = self.totals.clone();
        for o in &self.overview {
            let k = (
                parse_direction(&o.direction)?,
                parse_protocol(&o.protocol)?,
                o.ip_version,
            );
            a.overview.insert(k, o.counts);
        }
        for h in &self.latency {
            let k = (parse_class(&h.class)?, parse_protocol(&h.protocol)?);
            let hist = LatencyHist::from_parts(3, &h.buckets, h.sum_ns, h.max_ns);
            if hist.count() != h.count {
                return Err("a latency histogram's buckets do not add up".into());
            }
            a.latency.insert(k, hist);
        }
        for p in &self.processes {
            let key = ProcKey {
                machine,
                pid: p.pid,
                comm: Comm::from_text(p.comm.as_bytes()),
            };
            let mut v = ProcStats {
                c: p.counters.clone(),
                peers_capped: p.peers_capped,
                ..ProcStats::default()
            };
            for peer in &p.peers {
                v.peers.insert(parse_endpoint(peer)?);
            }
            for i in 0..3 {
                v.latency[i] = sparse(&p.latency[i])?;
            }
            a.processes.insert_bounded(key, v, p.bound);
        }
        for c in &self.conversations {
            let key = ConvKey {
                machine,
                protocol: parse_protocol(&c.protocol)?,
                pid: c.pid,
                comm: Comm::from_text(c.comm.as_bytes()),
                local: parse_endpoint(&c.local)?,
                remote: c.remote.as_deref().map(parse_endpoint).transpose()?,
                cookie: None,
            };
            let v = ConvStats {
                c: c.counters.clone(),
                end_of_stream: c.end_of_stream,
                latency: [sparse(&c.latency[0])?, sparse(&c.latency[1])?],
                first_view: None,
                shared: false,
            };
            a.conversations.insert_bounded(key, v, c.bound);
        }
        for r in &self.remotes {
            let key = (
                parse_protocol(&r.protocol)?,
                r.remote.as_deref().map(parse_endpoint).transpose()?,
            );
            a.remotes.insert_bounded(
                key,
                EndpointStats {
                    c: r.counters.clone(),
                },
                r.bound,
            );
        }
        for p in &self.ports {
            let key = PortKey {
                protocol: parse_protocol(&p.protocol)?,
                role: parse_role(&p.role)?,
                port: p.port,
            };
            a.ports.insert_bounded(key, p.counters.clone(), p.bound);
        }
        for e in &self.errors {
            let key = ErrKey {
                errno: e.errno,
                direction: parse_direction(&e.direction)?,
                machine,
                pid: e.pid,
                comm: Comm::from_text(e.comm.as_bytes()),
            };
            a.errors.insert_bounded(key, e.counters.clone(), e.bound);
        }
        for f in &self.flag_combos {
            a.flag_combos.insert_bounded(
                (parse_direction(&f.direction)?, f.flags),
                f.counters.clone(),
                f.bound,
            );
        }
        let b = &self.bounded;
        restore(b, "processes", &mut a.processes, |c| ProcStats {
            c,
            ..ProcStats::default()
        })?;
        restore(b, "conversations", &mut a.conversations, |c| ConvStats {
            c,
            ..ConvStats::default()
        })?;
        restore(b, "remotes", &mut a.remotes, |c| EndpointStats { c })?;
        restore(b, "ports", &mut a.ports, |c| c)?;
        restore(b, "errors", &mut a.errors, |c| c)?;
        restore(b, "flag_combos", &mut a.flag_combos, |c| c)?;
        let shape = |v: &Vec<Vec<u64>>, n: usize| v.len() == 2 && v.iter().all(|d| d.len() == n);
        if !shape(&self.flag_bits, 32) || !shape(&self.sizes, 65) {
            return Err("flag_bits or sizes has the wrong shape".into());
        }
        for d in 0..2 {
            a.flag_bits[d].copy_from_slice(&self.flag_bits[d]);
            a.sizes[d].copy_from_slice(&self.sizes[d]);
        }
        a.no_flags = self.no_flags;
        a.series = Series::from_points(self.series.width_s, self.series.points.clone())
            .ok_or("the time series is not on its own buckets")?;
        if self.exemplars_kept != config.exemplars {
            return Err(format!(
                "it keeps {} exemplars, the reader {}",
                self.exemplars_kept, config.exemplars
            ));
        }
        let exemplars = |list: &[ExemplarDoc]| -> Result<TopN, String> {
            let mut items = Vec::with_capacity(list.len());
            for e in list {
                let file = file_index(&e.file)
                    .ok_or_else(|| format!("an exemplar is in {}, not one of its files", e.file))?;
                items.push((
                    e.value,
                    Exemplar {
                        op: op_of(&e.op, machine)?,
                        source: Source { file, line: e.line },
                    },
                ));
            }
            // The reader's file numbering may order ties differently.
            items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.source.cmp(&b.1.source)));
            TopN::from_items(config.exemplars, items)
                .ok_or_else(|| "more exemplars than it keeps".to_string())
        };
        a.slowest = exemplars(&self.slowest)?;
        a.largest = exemplars(&self.largest)?;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::aggregate::tests::{Rng, fingerprint, random_op};

    /// Partials stored as JSON and loaded back merge into exactly what one
    /// pass over all the ops gives, whatever the file numbering of the
    /// reader.
    #[test]
    fn stored_partials_merge_like_one_pass() {
        let mut rng = Rng(0x5eed);
        let names = ["nw_0001.csv", "nw_0002.csv.gz", "nw_0003.csv"];
        let ops: Vec<(Op, Source)> = (0..12_000u64)
            .map(|i| {
                let mut op = random_op(&mut rng);
                // Some ties, so that the exemplars' order by source counts.
                if i % 7 == 0 {
                    op.latency_ns = Some(1_000_000_000);
                    op.size = 65_000;
                }
                (
                    op,
                    Source {
                        file: (i % 3) as u32,
                        line: i / 3 + 2,
                    },
                )
            })
            .collect();
        let config = AggregateConfig::default();
        let mut one = Aggregate::new(config);
        for (op, src) in &ops {
            one.add(op, *src);
        }
        one.finish();

        // Two "runs": files 0 and 2, and file 1, each numbered from 0.
        let mut merged = Aggregate::new(AggregateConfig {
            max_conversations: usize::MAX / 4,
            max_processes: usize::MAX / 4,
            ..config
        });
        let runs: [&[u32]; 2] = [&[0, 2], &[1]];
        for files in runs {
            let mut part = Aggregate::new(config);
            for (op, src) in ops.iter().filter(|(_, s)| files.contains(&s.file)) {
                let local = files.iter().position(|&f| f == src.file).unwrap() as u32;
                part.add(
                    op,
                    Source {
                        file: local,
                        line: src.line,
                    },
                );
            }
            part.finish();
            assert!(part.inexact().is_none());
            let doc = AggregateDoc::store(&part, |i| names[files[i as usize] as usize].into());
            let json = serde_json::to_vec(&doc).unwrap();
            let back: AggregateDoc = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, doc);
            let loaded = back
                .load(0, config, |n| {
                    names.iter().position(|x| *x == n).map(|i| i as u32)
                })
                .unwrap();
            merged.merge(&loaded);
        }
        merged.set_caps(config);
        merged.finish();
        assert_eq!(fingerprint(&one), fingerprint(&merged));
        assert_eq!(merged.totals.ops, 12_000);
        assert_eq!(merged.slowest.items().len(), 10);
    }

    /// A bounded aggregate (tables that evicted) stores its "other" rows,
    /// evictions, distinct-key estimates and per-key bounds, and loads
    /// back the same.
    #[test]
    fn bounded_tables_round_trip() {
        let mut rng = Rng(0xb0b);
        let config = AggregateConfig {
            max_conversations: 8,
            max_remotes: 4,
            max_ports: 4,
            max_processes: 2,
            ..AggregateConfig::default()
        };
        let mut a = Aggregate::new(config);
        for i in 0..6000u64 {
            let mut op = random_op(&mut rng);
            op.local.port = 20_000 + (i % 700) as u16;
            a.add(&op, Source::default());
        }
        a.finish();
        let bounded = a.bounded_tables();
        assert!(
            bounded.contains(&"conversations".to_string()),
            "{bounded:?}"
        );
        assert!(bounded.contains(&"ports".to_string()), "{bounded:?}");
        let doc = AggregateDoc::store(&a, |_| "nw_0001.csv".into());
        let json = serde_json::to_vec(&doc).unwrap();
        let back: AggregateDoc = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, doc);
        let mut loaded = back
            .load(0, config, |n| (n == "nw_0001.csv").then_some(0))
            .unwrap();
        loaded.set_caps(config);
        loaded.finish();
        assert_eq!(fingerprint(&a), fingerprint(&loaded));
        assert_eq!(loaded.bounded_tables(), bounded);
        let c = |t: &Capped<ConvKey, ConvStats>| {
            let mut v: Vec<_> = t.iter_bounded().map(|(k, _, b)| (*k, b)).collect();
            v.sort_by_key(|x| x.0);
            (
                v,
                t.other().c.clone(),
                t.evictions(),
                t.untracked(),
                t.other_keys(),
            )
        };
        assert_eq!(c(&a.conversations), c(&loaded.conversations));
        assert_eq!(a.ports.other(), loaded.ports.other());
        assert!(a.conversations.max_bound().ops > 0);
        assert_eq!(loaded.totals.ops, 6000);
    }

    #[test]
    fn damaged_documents_are_refused() {
        let mut rng = Rng(11);
        let mut a = Aggregate::default();
        for _ in 0..500 {
            a.add(&random_op(&mut rng), Source::default());
        }
        a.finish();
        let doc = AggregateDoc::store(&a, |_| "nw_0001.csv".into());
        let names = |n: &str| (n == "nw_0001.csv").then_some(0);
        assert!(doc.load(0, AggregateConfig::default(), names).is_ok());
        let mut bad = doc.clone();
        bad.processes[0].latency[0].count += 1;
        assert!(bad.load(0, AggregateConfig::default(), names).is_err());
        let mut bad = doc.clone();
        bad.conversations[0].local = "nowhere".into();
        assert!(bad.load(0, AggregateConfig::default(), names).is_err());
        let mut bad = doc.clone();
        bad.sizes[0].pop();
        assert!(bad.load(0, AggregateConfig::default(), names).is_err());
        // An exemplar in a file the reader does not have.
        assert!(doc.load(0, AggregateConfig::default(), |_| None).is_err());
    }
}
