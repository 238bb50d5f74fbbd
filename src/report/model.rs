//! The report as data: built once from a [`Scan`], serialised as the JSON
//! output, and read by the text, HTML and CSV renderers, so every format
//! shows the same numbers. Machine fields are never rounded.

use std::collections::BTreeMap;

use serde::Serialize;

use super::coverage::{gaps, machines, runs_and_coverage};
use super::sections::{latency, msg_flags, series_and_heatmap, sizes};
use crate::analysis::aggregate::{Counters, TopN};
use crate::analysis::{Aggregate, ConvKey, Exemplar, LatencySummary, ProcKey, ProcStats};
use crate::input::scan::Scan;
use crate::schema::columns::Column;
use crate::schema::msg_flags_text;
use crate::schema::{errno_text, format_timestamp_ns, is_retry_errno};

pub const SCHEMA_VERSION: u32 = 1;
/// Problems listed in the report (all are counted).
pub(super) const MAX_PROBLEMS: usize = 100;

/// How to rank the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    /// Bytes sent + received.
    Bytes,
    /// Operations.
    Ops,
    /// p99 latency (sends and receives).
    P99,
    /// Max latency.
    Max,
    /// Errors, retry and hard.
    Errors,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub nwtrace_version: &'static str,
    pub inputs: Vec<String>,
    pub filters: Filters,
    pub sort: SortKey,
    pub coverage: Coverage,
    pub runs: Vec<RunOut>,
    pub machines: Vec<MachineOut>,
    pub totals: TotalsOut,
    pub overview: Vec<OverviewOut>,
    pub latency: Vec<LatencyOut>,
    pub processes: Vec<ProcessOut>,
    pub commands: Vec<ProcessOut>,
    pub conversations: Vec<ConversationOut>,
    /// Which optional columns (`record --columns`) the inputs have, and
    /// how many ops came from files without the container column. Absent
    /// when no input has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<AttributionOut>,
    /// Ops by container, the host (`container_id: null`) as its own row.
    /// Present when some input has the `Container ID` column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ContainerOut>>,
    /// Ops by cgroup path; present with the `Cgroup` column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<CgroupOut>>,
    /// Ops by network namespace; present with the `Netns` column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<Vec<NetnsOut>>,
    pub remote_endpoints: Vec<EndpointOut>,
    pub ports: Vec<PortOut>,
    pub errors: Vec<ErrorOut>,
    pub error_kinds: Vec<ErrorKindOut>,
    pub msg_flags: FlagsOut,
    pub sizes: Vec<SizeOut>,
    pub series: SeriesOut,
    pub heatmap: HeatmapOut,
    pub exemplars: ExemplarsOut,
    /// Per table: rows tracked, rows listed, and the "other" bucket of
    /// keys past the memory bound.
    pub tables: BTreeMap<&'static str, TableInfo>,
    /// Where each run's figures came from: its summary, or its CSV and
    /// why not the summary.
    pub sources: Vec<SourceOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<super::compare::Comparison>,
    /// Sends on one machine joined to their receives on another, by TCP
    /// sequence numbers (docs/join.md); present when an input has the
    /// `TCP Seq` column. Its fields are versioned by `join.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<crate::analysis::join::JoinOut>,
    /// srtt, cwnd and retransmits over time per conversation (docs/join.md);
    /// present when an input has `SRTT us`, `CWND` or `Retrans`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::analysis::netside::NetworkOut>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SourceOut {
    pub machine_id: String,
    pub run: String,
    pub manifest: Option<String>,
    /// `summary` or `csv`.
    pub source: &'static str,
    /// Why not the summary (for `csv`).
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Filters {
    pub pid: Vec<u32>,
    pub comm: Vec<String>,
    pub port: Vec<u16>,
    pub protocol: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cgroup: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_comm: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub netns: Vec<u64>,
    pub machine: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    pub machines: usize,
    pub runs: usize,
    pub files: usize,
    /// Valid rows read (before filters).
    pub rows: u64,
    pub bytes_read: u64,
    pub malformed_rows: u64,
    pub files_missing_header: u64,
    pub files_cut_mid_row: u64,
    pub files_unreadable: u64,
    pub events_lost: u64,
    pub probes_missed: u64,
    pub rows_lost: u64,
    pub unfinalized_runs: u64,
    pub runs_without_manifest: u64,
    /// Files the manifests say retention deleted.
    pub deleted_file_count: u64,
    /// Their names as far as the manifests name them (all for version 1
    /// manifests, the first and last of each run for version 2).
    pub deleted_files: Vec<String>,
    pub missing_files: Vec<String>,
    /// Rows the runs with a manifest wrote: the manifest's count, or the
    /// rows read where that is more (an unfinalised manifest lags).
    pub manifest_rows: u64,
    /// Of those, the rows read from the files on disk: less than
    /// `manifest_rows` when retention deleted files or files are missing.
    pub manifest_rows_read: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    pub gaps: Vec<GapOut>,
    pub problems: Vec<ProblemOut>,
    pub problems_total: u64,
    /// Runs thinned in the kernel (`--sample`, `--rate-limit`): what was
    /// counted but not written, and which figures are exact and which
    /// are the written rows' sample (docs/sampling.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinning: Option<ThinningOut>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThinningOut {
    pub runs: usize,
    pub sampled_out: u64,
    pub rate_limited: u64,
    /// The unwritten operations are in this report's figures (its runs
    /// came from summaries); false: it read their CSV, and every figure
    /// is the written rows' alone.
    pub included: bool,
    /// Figures that are exact, then those from the written rows only.
    pub exact: Vec<&'static str>,
    pub sampled: Vec<&'static str>,
    /// The same, in one sentence.
    pub note: String,
}

impl ThinningOut {
    pub(super) fn new(
        runs: usize,
        sampled_out: u64,
        rate_limited: u64,
        included: bool,
    ) -> ThinningOut {
        let exact = vec![
            "totals",
            "processes",
            "conversations",
            "remote endpoints",
            "ports",
            "errors",
        ];
        let sampled = vec!["latency", "sizes", "flags", "time series", "exemplars"];
        let what = format!(
            "{runs} run(s) thinned in the kernel: {sampled_out} operations sampled out and {rate_limited} over the rate limit were counted, not written"
        );
        let note = if included {
            format!(
                "{what}; exact (they are included): {}; from the written rows only, a sample (not scaled): {}",
                exact.join(", "),
                sampled.join(", ")
            )
        } else {
            format!(
                "{what}; this report read their CSV, so every figure is the written rows' alone, a sample (not scaled); their summary.json has the exact totals (report without --no-summaries and row filters)"
            )
        };
        ThinningOut {
            runs,
            sampled_out,
            rate_limited,
            included,
            exact: if included { exact } else { Vec::new() },
            sampled,
            note,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct GapOut {
    /// `between_runs`: no run of this machine was recording;
    /// `no_rows`: a run was, but wrote no row (idle, or a hole).
    pub kind: &'static str,
    pub machine_id: String,
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProblemOut {
    pub file: String,
    pub line: u64,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunOut {
    pub machine_id: String,
    pub run: String,
    pub manifest: Option<String>,
    /// Valid rows read from this run's files.
    pub rows: u64,
    /// What the manifest says was written.
    pub rows_written: Option<u64>,
    pub events_lost: u64,
    pub probes_missed: u64,
    pub rows_lost: u64,
    /// `false` also when there is no manifest (see `manifest`).
    pub finalized: bool,
    pub exit_reason: Option<String>,
    pub backend: Option<String>,
    pub started_at: Option<String>,
    pub stopped_at: Option<String>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub files: usize,
    pub deleted_file_count: u64,
    pub deleted_files: Vec<String>,
    pub missing_files: Vec<String>,
    pub malformed_rows: u64,
    pub manifest_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MachineOut {
    pub machine_id: String,
    pub runs: usize,
    pub rows: u64,
    pub ops: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub events_lost: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TotalsOut {
    pub ops: u64,
    pub sends: u64,
    pub receives: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub retry_errors: u64,
    pub hard_errors: u64,
    pub end_of_stream: u64,
    pub latency_unknown: u64,
    pub unknown_peer: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// last - first, in seconds; rates are per this span.
    pub duration_s: f64,
    pub ops_per_s: Option<f64>,
    pub bytes_per_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OverviewOut {
    pub direction: &'static str,
    pub protocol: &'static str,
    pub ip_version: u8,
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    pub ops_per_s: Option<f64>,
    pub bytes_per_s: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LatencyOut {
    pub direction: &'static str,
    /// `send`, `receive_blocking` or `receive_nonblocking`.
    pub class: &'static str,
    pub protocol: &'static str,
    #[serde(flatten)]
    pub summary: LatencySummary,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyByDirection {
    pub send: LatencySummary,
    pub receive: LatencySummary,
    pub receive_blocking: LatencySummary,
    pub receive_nonblocking: LatencySummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProcessOut {
    /// `null` in the per-command rollup.
    pub machine_id: Option<String>,
    /// `null` in the per-command rollup.
    pub pid: Option<u32>,
    pub comm: String,
    /// Processes rolled up (1 per pid row).
    pub processes: u64,
    pub ops: u64,
    pub sends: u64,
    pub receives: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub retry_errors: u64,
    pub hard_errors: u64,
    pub error_rate: f64,
    /// Distinct remote endpoints (address:port).
    pub peers: u64,
    pub peers_capped: bool,
    pub first: Option<String>,
    pub last: Option<String>,
    pub latency_ns: LatencyByDirection,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConversationOut {
    pub machine_id: String,
    pub protocol: &'static str,
    pub pid: u32,
    pub comm: String,
    pub local_address: String,
    pub local_port: u16,
    /// `null` for the unknown-peer bucket.
    pub remote_address: Option<String>,
    pub remote_port: Option<u16>,
    pub ops: u64,
    pub sends: u64,
    pub receives: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub duration_s: f64,
    /// A successful 0-byte receive (the peer closed) was seen.
    pub end_of_stream: bool,
    pub latency_ns: ConvLatency,
    /// With the `Socket Cookie` column: the socket this conversation is
    /// (pid, comm and endpoints are then its first op's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_cookie: Option<u64>,
    /// A cookie conversation whose ops came from more than one process or
    /// went to more than one peer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shared_socket: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AttributionOut {
    /// Header names, in column order, of the optional columns that at
    /// least one input file has.
    pub columns: Vec<&'static str>,
    /// Files with at least one optional column, and without any.
    pub files_with: usize,
    pub files_without: usize,
    /// Ops (after the filters) from files without the `Container ID`
    /// column: in no row of `containers`.
    pub ops_without_container: u64,
    pub bytes_without_container: u64,
}

/// Counters and latency of a group of ops (a container, a cgroup, a
/// network namespace).
#[derive(Clone, Debug, Serialize)]
pub struct GroupStatsOut {
    pub ops: u64,
    pub sends: u64,
    pub receives: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub retry_errors: u64,
    pub hard_errors: u64,
    pub error_rate: f64,
    pub peers: u64,
    pub peers_capped: bool,
    pub first: Option<String>,
    pub last: Option<String>,
    pub latency_ns: LatencyByDirection,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContainerOut {
    pub machine_id: String,
    /// The full id; `null` for the host (ops outside any container).
    pub container_id: Option<String>,
    #[serde(flatten)]
    pub stats: GroupStatsOut,
}

#[derive(Clone, Debug, Serialize)]
pub struct CgroupOut {
    pub machine_id: String,
    /// Relative to the cgroup root, as the `Cgroup` column (`id:NNN`
    /// when the recorder could not resolve it).
    pub cgroup: String,
    #[serde(flatten)]
    pub stats: GroupStatsOut,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetnsOut {
    pub machine_id: String,
    pub netns: u64,
    #[serde(flatten)]
    pub stats: GroupStatsOut,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConvLatency {
    pub send: LatencySummary,
    pub receive: LatencySummary,
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointOut {
    pub protocol: &'static str,
    /// `null` for the unknown-peer bucket.
    pub address: Option<String>,
    pub port: Option<u16>,
    pub ops: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PortOut {
    pub protocol: &'static str,
    /// `local` or `remote`.
    pub role: &'static str,
    pub port: u16,
    pub ops: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorOut {
    pub error: String,
    pub errno: i32,
    /// `retry` (EAGAIN, EINTR, ERESTARTSYS, ...) or `hard`.
    pub kind: &'static str,
    pub direction: &'static str,
    pub machine_id: String,
    pub pid: u32,
    pub comm: String,
    pub count: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorKindOut {
    pub error: String,
    pub kind: &'static str,
    pub direction: &'static str,
    pub count: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FlagsOut {
    pub combinations: Vec<FlagComboOut>,
    pub flags: Vec<FlagOut>,
    /// Ops without flags (write/read/io_uring, or none passed).
    pub no_flags_send: u64,
    pub no_flags_receive: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlagComboOut {
    pub direction: &'static str,
    pub flags: String,
    pub ops: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FlagOut {
    pub direction: &'static str,
    pub flag: String,
    pub ops: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SizeOut {
    pub direction: &'static str,
    /// Inclusive range of sizes in bytes.
    pub low: u64,
    pub high: u64,
    pub count: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesOut {
    pub bucket_seconds: i64,
    pub points: Vec<PointOut>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PointOut {
    pub t: String,
    pub t_ns: i64,
    pub sends: u64,
    pub receives: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retry_errors: u64,
    pub hard_errors: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HeatmapOut {
    pub bucket_seconds: i64,
    /// Row `i` counts latencies in `[2^i, 2^(i+1))` ns.
    pub latency_buckets_log2: usize,
    /// One per time bucket with any latency, in time order.
    pub columns: Vec<HeatColumn>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HeatColumn {
    pub t_ns: i64,
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ExemplarsOut {
    pub slowest: Vec<ExemplarOut>,
    pub largest: Vec<ExemplarOut>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExemplarOut {
    pub file: String,
    pub line: u64,
    pub timestamp: String,
    pub pid: u32,
    pub comm: String,
    pub protocol: &'static str,
    pub direction: &'static str,
    pub local: String,
    pub remote: Option<String>,
    pub size: u64,
    pub latency_ns: Option<u64>,
    pub error: Option<String>,
    pub msg_flags: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TableInfo {
    /// Keys tracked (after the memory bound).
    pub tracked: usize,
    /// Rows in this report (after --top).
    pub listed: usize,
    /// Keys merged into the other bucket (an estimate), 0 if none.
    pub other_keys: u64,
    pub other_ops: u64,
    pub other_bytes: u64,
    /// Keys were evicted (a memory bound, here or in a summary): the
    /// listed rows are the heaviest kept, and each row's ops and bytes
    /// may be low by up to `max_error_ops` and `max_error_bytes` (zero:
    /// every listed row is exact). Totals and the "other" row stay exact.
    pub bounded: bool,
    pub max_error_ops: u64,
    pub max_error_bytes: u64,
}

pub(super) fn ts(ns: Option<i64>) -> Option<String> {
    ns.map(format_timestamp_ns)
}

/// What the report needs beyond the scan.
pub struct Options {
    pub inputs: Vec<String>,
    pub filters: Filters,
    pub sort: SortKey,
    /// Rows per table; `None`: everything tracked.
    pub top: Option<usize>,
}

fn rate(n: u64, secs: f64) -> Option<f64> {
    (secs > 0.0).then(|| n as f64 / secs)
}

/// One ranked table row: its sort values and its key order.
struct Ranked<T> {
    bytes: u64,
    ops: u64,
    p99: u64,
    max: u64,
    errors: u64,
    item: T,
}

fn rank<T>(
    mut rows: Vec<Ranked<T>>,
    sort: SortKey,
    key: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    rows.sort_by(|a, b| {
        let (x, y) = match sort {
            SortKey::Bytes => (a.bytes, b.bytes),
            SortKey::Ops => (a.ops, b.ops),
            SortKey::P99 => (a.p99, b.p99),
            SortKey::Max => (a.max, b.max),
            SortKey::Errors => (a.errors, b.errors),
        };
        // Descending, then bytes, then ops, then the key: a stable order.
        y.cmp(&x)
            .then(b.bytes.cmp(&a.bytes))
            .then(b.ops.cmp(&a.ops))
            .then_with(|| key(&a.item, &b.item))
    });
    rows.into_iter().map(|r| r.item).collect()
}

fn process_out(
    machine_id: Option<String>,
    pid: Option<u32>,
    comm: String,
    n: u64,
    p: &ProcStats,
) -> ProcessOut {
    let c = &p.c;
    let lat = |i: usize| p.latency[i].summary();
    ProcessOut {
        machine_id,
        pid,
        comm,
        processes: n,
        ops: c.total_ops(),
        sends: c.ops[0],
        receives: c.ops[1],
        bytes_sent: c.bytes[0],
        bytes_received: c.bytes[1],
        errors: c.errors(),
        retry_errors: c.retry_errors,
        hard_errors: c.hard_errors,
        error_rate: if c.total_ops() == 0 {
            0.0
        } else {
            c.errors() as f64 / c.total_ops() as f64
        },
        peers: p.peers.len() as u64,
        peers_capped: p.peers_capped,
        first: ts(c.first_ns),
        last: ts(c.last_ns),
        latency_ns: LatencyByDirection {
            send: lat(0),
            receive: p.receive_latency().summary(),
            receive_blocking: lat(1),
            receive_nonblocking: lat(2),
        },
    }
}

fn ranked_process(
    machine_id: Option<String>,
    pid: Option<u32>,
    comm: String,
    n: u64,
    p: &ProcStats,
) -> Ranked<ProcessOut> {
    let all = p.all_latency();
    Ranked {
        bytes: p.c.total_bytes(),
        ops: p.c.total_ops(),
        p99: all.quantile(0.99),
        max: all.max(),
        errors: p.c.errors(),
        item: process_out(machine_id, pid, comm, n, p),
    }
}

fn counters_ranked<T>(c: &Counters, item: T) -> Ranked<T> {
    Ranked {
        bytes: c.total_bytes(),
        ops: c.total_ops(),
        p99: 0,
        max: 0,
        errors: c.errors(),
        item,
    }
}

fn table_info<K: std::hash::Hash + Eq + Ord + Clone, V: crate::analysis::capped::Entry>(
    t: &crate::analysis::Capped<K, V>,
    listed: usize,
    counters: impl Fn(&V) -> &Counters,
) -> TableInfo {
    let o = counters(t.other());
    let err = t.max_bound();
    TableInfo {
        tracked: t.len(),
        listed,
        other_keys: t.other_keys(),
        other_ops: o.total_ops(),
        other_bytes: o.total_bytes(),
        bounded: t.evictions() > 0,
        max_error_ops: err.ops,
        max_error_bytes: err.bytes,
    }
}

fn exemplar_out(e: &Exemplar, files: &[String]) -> ExemplarOut {
    let op = &e.op;
    ExemplarOut {
        file: files
            .get(e.source.file as usize)
            .cloned()
            .unwrap_or_default(),
        line: e.source.line,
        timestamp: format_timestamp_ns(op.ts_ns),
        pid: op.pid,
        comm: op.comm.to_string(),
        protocol: op.protocol.as_str(),
        direction: op.direction.as_str(),
        local: op.local.to_string(),
        remote: op.remote.map(|r| r.to_string()),
        size: op.size,
        latency_ns: op.latency_ns,
        error: op.errno.map(errno_text),
        msg_flags: op.msg_flags.map(msg_flags_text),
    }
}

fn exemplars(t: &TopN, files: &[String]) -> Vec<ExemplarOut> {
    t.items()
        .iter()
        .map(|(_, e)| exemplar_out(e, files))
        .collect()
}

fn cut<T>(mut v: Vec<T>, top: Option<usize>) -> Vec<T> {
    if let Some(n) = top {
        v.truncate(n);
    }
    v
}

/// Builds the report. `agg` must be finished.
pub fn build(scan: &Scan, opts: &Options) -> Report {
    let agg: &Aggregate = &scan.aggregate;
    let d = &scan.discovery;
    let file_names: Vec<String> = d
        .files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect();
    let top = opts.top;
    let sort = opts.sort;
    let (runs, mut cov) = runs_and_coverage(scan, &file_names);
    let machine_name = |i: u32| d.machines.get(i as usize).cloned().unwrap_or_default();

    let machines = machines(&runs, scan);
    cov.machines = machines.len();
    cov.gaps = gaps(&runs, scan);

    // Totals and overview.
    let t = &agg.totals;
    let duration_s = match (t.first_ns, t.last_ns) {
        (Some(a), Some(b)) => (b - a) as f64 / 1e9,
        _ => 0.0,
    };
    let totals = TotalsOut {
        ops: t.ops,
        sends: t.sends,
        receives: t.receives,
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        errors: t.errors,
        retry_errors: t.retry_errors,
        hard_errors: t.hard_errors,
        end_of_stream: t.end_of_stream,
        latency_unknown: t.latency_unknown,
        unknown_peer: t.unknown_peer,
        first: ts(t.first_ns),
        last: ts(t.last_ns),
        first_ns: t.first_ns,
        last_ns: t.last_ns,
        duration_s,
        ops_per_s: rate(t.ops, duration_s),
        bytes_per_s: rate(t.bytes_sent + t.bytes_received, duration_s),
    };
    let overview = agg
        .overview
        .iter()
        .map(|(&(dir, proto, v), o)| OverviewOut {
            direction: dir.as_str(),
            protocol: proto.as_str(),
            ip_version: v,
            ops: o.ops,
            bytes: o.bytes,
            errors: o.errors,
            ops_per_s: rate(o.ops, duration_s),
            bytes_per_s: rate(o.bytes, duration_s),
        })
        .collect();

    let latency = latency(agg);
    let mut tables = BTreeMap::new();

    // Processes and the rollup by comm.
    let procs: Vec<(&ProcKey, &ProcStats)> = agg.processes.iter().collect();
    let ranked = procs
        .iter()
        .map(|(k, p)| {
            ranked_process(
                Some(machine_name(k.machine)),
                Some(k.pid),
                k.comm.to_string(),
                1,
                p,
            )
        })
        .collect();
    let processes = cut(
        rank(ranked, sort, |a: &ProcessOut, b| {
            (&a.machine_id, a.pid, &a.comm).cmp(&(&b.machine_id, b.pid, &b.comm))
        }),
        top,
    );
    tables.insert(
        "processes",
        table_info(&agg.processes, processes.len(), |v| &v.c),
    );
    let mut by_comm: BTreeMap<String, (u64, ProcStats)> = BTreeMap::new();
    for (k, p) in &procs {
        let e = by_comm.entry(k.comm.to_string()).or_default();
        e.0 += 1;
        crate::analysis::capped::Entry::merge(&mut e.1, p);
    }
    let ranked = by_comm
        .iter()
        .map(|(c, (n, p))| ranked_process(None, None, c.clone(), *n, p))
        .collect();
    let commands = cut(
        rank(ranked, sort, |a: &ProcessOut, b| a.comm.cmp(&b.comm)),
        top,
    );
    tables.insert(
        "commands",
        TableInfo {
            tracked: by_comm.len(),
            listed: commands.len(),
            ..TableInfo::default()
        },
    );

    // Conversations.
    let ranked = agg
        .conversations
        .iter()
        .map(|(k, v)| {
            let mut all = v.latency[0].clone();
            all.merge(&v.latency[1]);
            Ranked {
                bytes: v.c.total_bytes(),
                ops: v.c.total_ops(),
                p99: all.quantile(0.99),
                max: all.max(),
                errors: v.c.errors(),
                item: (*k, conv_out(machine_name(k.machine), k, v)),
            }
        })
        .collect();
    let conversations: Vec<ConversationOut> =
        cut(rank(ranked, sort, |a: &(ConvKey, _), b| a.0.cmp(&b.0)), top)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
    tables.insert(
        "conversations",
        table_info(&agg.conversations, conversations.len(), |v| &v.c),
    );

    // The optional columns: which files have them, and the groups.
    let mut present = [false; Column::COUNT];
    let (mut files_with, mut files_without) = (0, 0);
    for f in &scan.files {
        for c in &f.stats.extra_columns {
            present[*c as usize] = true;
        }
        if f.stats.extra_columns.is_empty() {
            files_without += 1;
        } else {
            files_with += 1;
        }
    }
    let has = |c: Column| present[c as usize];
    let attribution = (files_with > 0).then(|| {
        let (ops, bytes) = agg
            .containers
            .iter()
            .map(|(_, v)| &v.c)
            .chain([&agg.containers.other().c])
            .fold((0, 0), |(o, b), c| (o + c.total_ops(), b + c.total_bytes()));
        AttributionOut {
            columns: Column::ALL
                .into_iter()
                .filter(|&c| has(c))
                .map(Column::header)
                .collect(),
            files_with,
            files_without,
            ops_without_container: t.ops - ops,
            bytes_without_container: t.bytes_sent + t.bytes_received - bytes,
        }
    });
    let containers = has(Column::Container).then(|| {
        let v = group_table(&agg.containers, sort, top, |k, stats| ContainerOut {
            machine_id: machine_name(k.machine),
            container_id: Some(k.value.as_str().to_string()).filter(|s| !s.is_empty()),
            stats,
        });
        tables.insert("containers", table_info(&agg.containers, v.len(), |v| &v.c));
        v
    });
    let cgroups = has(Column::Cgroup).then(|| {
        let v = group_table(&agg.cgroups, sort, top, |k, stats| CgroupOut {
            machine_id: machine_name(k.machine),
            cgroup: k.value.as_str().to_string(),
            stats,
        });
        tables.insert("cgroups", table_info(&agg.cgroups, v.len(), |v| &v.c));
        v
    });
    let netns = has(Column::Netns).then(|| {
        let v = group_table(&agg.netns, sort, top, |k, stats| NetnsOut {
            machine_id: machine_name(k.machine),
            netns: k.value,
            stats,
        });
        tables.insert("netns", table_info(&agg.netns, v.len(), |v| &v.c));
        v
    });

    let ranked = agg
        .remotes
        .iter()
        .map(|(k, v)| {
            counters_ranked(
                &v.c,
                (
                    *k,
                    EndpointOut {
                        protocol: k.0.as_str(),
                        address: k.1.map(|e| e.addr.to_string()),
                        port: k.1.map(|e| e.port),
                        ops: v.c.total_ops(),
                        bytes_sent: v.c.bytes[0],
                        bytes_received: v.c.bytes[1],
                        errors: v.c.errors(),
                        first: ts(v.c.first_ns),
                        last: ts(v.c.last_ns),
                    },
                ),
            )
        })
        .collect();
    let remote_endpoints: Vec<EndpointOut> =
        cut(rank(ranked, sort, |a: &(_, _), b| a.0.cmp(&b.0)), top)
            .into_iter()
            .map(|(_, e)| e)
            .collect();
    tables.insert(
        "remote_endpoints",
        table_info(&agg.remotes, remote_endpoints.len(), |v| &v.c),
    );

    let ranked = agg
        .ports
        .iter()
        .map(|(k, c)| {
            counters_ranked(
                c,
                (
                    *k,
                    PortOut {
                        protocol: k.protocol.as_str(),
                        role: k.role.as_str(),
                        port: k.port,
                        ops: c.total_ops(),
                        bytes_sent: c.bytes[0],
                        bytes_received: c.bytes[1],
                        errors: c.errors(),
                    },
                ),
            )
        })
        .collect();
    let ports: Vec<PortOut> = cut(rank(ranked, sort, |a: &(_, _), b| a.0.cmp(&b.0)), top)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    tables.insert("ports", table_info(&agg.ports, ports.len(), |v| v));

    // Errors: by errno x direction x process, ranked by count.
    let mut errors: Vec<ErrorOut> = agg
        .errors
        .iter()
        .map(|(k, c)| ErrorOut {
            error: errno_text(k.errno),
            errno: k.errno,
            kind: kind(k.errno),
            direction: k.direction.as_str(),
            machine_id: machine_name(k.machine),
            pid: k.pid,
            comm: k.comm.to_string(),
            count: c.total_ops(),
            first: ts(c.first_ns),
            last: ts(c.last_ns),
        })
        .collect();
    errors.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.errno.cmp(&b.errno))
            .then(a.direction.cmp(b.direction))
            .then(a.machine_id.cmp(&b.machine_id))
            .then(a.pid.cmp(&b.pid))
            .then(a.comm.cmp(&b.comm))
    });
    let mut kinds: BTreeMap<(i32, &'static str), u64> = BTreeMap::new();
    for e in &errors {
        *kinds.entry((e.errno, e.direction)).or_default() += e.count;
    }
    let mut error_kinds: Vec<ErrorKindOut> = kinds
        .into_iter()
        .map(|((errno, dir), count)| ErrorKindOut {
            error: errno_text(errno),
            kind: kind(errno),
            direction: dir,
            count,
        })
        .collect();
    error_kinds.sort_by_key(|e| std::cmp::Reverse(e.count));
    let errors = cut(errors, top);
    tables.insert("errors", table_info(&agg.errors, errors.len(), |v| v));

    let msg_flags = msg_flags(agg);
    let sizes = sizes(agg);
    let (series, heatmap) = series_and_heatmap(agg);
    let exemplars = ExemplarsOut {
        slowest: exemplars(&agg.slowest, &file_names),
        largest: exemplars(&agg.largest, &file_names),
    };

    Report {
        schema_version: SCHEMA_VERSION,
        nwtrace_version: env!("CARGO_PKG_VERSION"),
        inputs: opts.inputs.clone(),
        filters: opts.filters.clone(),
        sort,
        coverage: cov,
        runs,
        machines: machines.into_values().collect(),
        totals,
        overview,
        latency,
        processes,
        commands,
        conversations,
        attribution,
        containers,
        cgroups,
        netns,
        remote_endpoints,
        ports,
        errors,
        error_kinds,
        msg_flags,
        sizes,
        series,
        heatmap,
        exemplars,
        tables,
        sources: Vec::new(),
        baseline: None,
        join: None,
        network: None,
    }
}

fn kind(errno: i32) -> &'static str {
    if is_retry_errno(errno) {
        "retry"
    } else {
        "hard"
    }
}

fn conv_out(machine_id: String, k: &ConvKey, v: &crate::analysis::ConvStats) -> ConversationOut {
    let k = &v.shown(k);
    let c = &v.c;
    ConversationOut {
        machine_id,
        protocol: k.protocol.as_str(),
        pid: k.pid,
        comm: k.comm.to_string(),
        local_address: k.local.addr.to_string(),
        local_port: k.local.port,
        remote_address: k.remote.map(|r| r.addr.to_string()),
        remote_port: k.remote.map(|r| r.port),
        ops: c.total_ops(),
        sends: c.ops[0],
        receives: c.ops[1],
        bytes_sent: c.bytes[0],
        bytes_received: c.bytes[1],
        errors: c.errors(),
        first: ts(c.first_ns),
        last: ts(c.last_ns),
        duration_s: match (c.first_ns, c.last_ns) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e9,
            _ => 0.0,
        },
        end_of_stream: v.end_of_stream,
        latency_ns: ConvLatency {
            send: v.latency[0].summary(),
            receive: v.latency[1].summary(),
        },
        socket_cookie: k.cookie,
        shared_socket: v.shared,
    }
}

fn group_stats(p: &ProcStats) -> GroupStatsOut {
    let o = process_out(None, None, String::new(), 1, p);
    GroupStatsOut {
        ops: o.ops,
        sends: o.sends,
        receives: o.receives,
        bytes_sent: o.bytes_sent,
        bytes_received: o.bytes_received,
        errors: o.errors,
        retry_errors: o.retry_errors,
        hard_errors: o.hard_errors,
        error_rate: o.error_rate,
        peers: o.peers,
        peers_capped: o.peers_capped,
        first: o.first,
        last: o.last,
        latency_ns: o.latency_ns,
    }
}

/// A group table ranked like the others; ties by machine then key.
fn group_table<K: Copy + Ord + std::hash::Hash, T>(
    t: &crate::analysis::Capped<crate::analysis::aggregate::GroupKey<K>, ProcStats>,
    sort: SortKey,
    top: Option<usize>,
    out: impl Fn(&crate::analysis::aggregate::GroupKey<K>, GroupStatsOut) -> T,
) -> Vec<T> {
    let ranked = t
        .iter()
        .map(|(k, p)| {
            let all = p.all_latency();
            Ranked {
                bytes: p.c.total_bytes(),
                ops: p.c.total_ops(),
                p99: all.quantile(0.99),
                max: all.max(),
                errors: p.c.errors(),
                item: (*k, out(k, group_stats(p))),
            }
        })
        .collect();
    cut(rank(ranked, sort, |a: &(_, T), b| a.0.cmp(&b.0)), top)
        .into_iter()
        .map(|(_, x)| x)
        .collect()
}
