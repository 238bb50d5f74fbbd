//! The report's tables, each described once ([`TableDesc`]): the text
//! report, the HTML report and `--format csv` all draw them from here.
//! A table with a `machine` column shows it first when the report spans
//! more than one machine.

use super::format::{byte_rate, bytes, count, latency, opt_rate, percent};
use super::model::{
    CgroupOut, ContainerOut, ConversationOut, EndpointOut, ErrorKindOut, ErrorOut, ExemplarOut,
    FlagComboOut, FlagOut, LatencyByDirection, LatencyOut, MachineOut, NetnsOut, OverviewOut,
    PortOut, ProcessOut, RunOut,
};
use super::table::{Column, Field, TableDesc, field};
use crate::analysis::LatencySummary;

/// `-` for an absent value.
fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// Empty for an absent value (CSV).
fn or_empty(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// A latency percentile, `-` when the summary counts no op.
fn lat(s: &LatencySummary, pick: fn(&LatencySummary) -> u64) -> String {
    if s.count == 0 {
        "-".into()
    } else {
        latency(pick(s))
    }
}

fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

fn remote(addr: &Option<String>, port: Option<u16>) -> String {
    match (addr, port) {
        (Some(a), Some(p)) => endpoint(a, p),
        _ => "(unknown peer)".into(),
    }
}

/// The error rate as the text table's `err%` column: a percentage
/// without its sign.
fn err_pct(rate: f64) -> String {
    percent(rate).trim_end_matches('%').to_string()
}

/// Prepends a left-aligned `machine` column when `multi`.
fn with_machine<R>(
    multi: bool,
    machine: fn(&R) -> String,
    mut cols: Vec<Column<R>>,
) -> Vec<Column<R>> {
    if multi {
        cols.insert(0, Column::left("machine", machine));
    }
    cols
}

/// The figures of a row that counts ops: a process, a command or a
/// group (container, cgroup, network namespace).
pub trait Stats {
    fn ops(&self) -> u64;
    fn sends(&self) -> u64;
    fn receives(&self) -> u64;
    fn bytes_sent(&self) -> u64;
    fn bytes_received(&self) -> u64;
    fn errors(&self) -> u64;
    fn retry_errors(&self) -> u64;
    fn hard_errors(&self) -> u64;
    fn error_rate(&self) -> f64;
    fn peers(&self) -> String;
    fn peers_exact(&self) -> u64;
    fn first(&self) -> &Option<String>;
    fn last(&self) -> &Option<String>;
    fn latency(&self) -> &LatencyByDirection;
}

macro_rules! stats_of {
    ($t:ty, $($s:tt)*) => {
        impl Stats for $t {
            fn ops(&self) -> u64 { self$($s)*.ops }
            fn sends(&self) -> u64 { self$($s)*.sends }
            fn receives(&self) -> u64 { self$($s)*.receives }
            fn bytes_sent(&self) -> u64 { self$($s)*.bytes_sent }
            fn bytes_received(&self) -> u64 { self$($s)*.bytes_received }
            fn errors(&self) -> u64 { self$($s)*.errors }
            fn retry_errors(&self) -> u64 { self$($s)*.retry_errors }
            fn hard_errors(&self) -> u64 { self$($s)*.hard_errors }
            fn error_rate(&self) -> f64 { self$($s)*.error_rate }
            fn peers(&self) -> String {
                let s = &self$($s)*;
                format!("{}{}", s.peers, if s.peers_capped { "+" } else { "" })
            }
            fn peers_exact(&self) -> u64 { self$($s)*.peers }
            fn first(&self) -> &Option<String> { &self$($s)*.first }
            fn last(&self) -> &Option<String> { &self$($s)*.last }
            fn latency(&self) -> &LatencyByDirection { &self$($s)*.latency_ns }
        }
    };
}

stats_of!(ProcessOut,);
stats_of!(ContainerOut, .stats);
stats_of!(CgroupOut, .stats);
stats_of!(NetnsOut, .stats);

/// Ops, sent, received and errors: the figures most tables show.
fn traffic_columns<R: Stats>() -> [Column<R>; 4] {
    [
        Column::right("ops", |r: &R| count(r.ops())),
        Column::right("sent", |r: &R| bytes(r.bytes_sent()))
            .sorted_by(|r| r.bytes_sent().to_string()),
        Column::right("received", |r: &R| bytes(r.bytes_received()))
            .sorted_by(|r| r.bytes_received().to_string()),
        Column::right("errors", |r: &R| count(r.errors())),
    ]
}

/// A latency column of `pick` (a percentile) of `of` (a direction).
fn latency_column<R: Stats>(header: &'static str, of: Dir, pick: Pct) -> Column<R> {
    // fn pointers cannot capture: one small function per cell kind.
    let cell: fn(&R) -> String = match (of, pick) {
        (Dir::Send, Pct::P50) => |r| lat(&r.latency().send, |s| s.p50),
        (Dir::Send, Pct::P99) => |r| lat(&r.latency().send, |s| s.p99),
        (Dir::Send, Pct::P999) => |r| lat(&r.latency().send, |s| s.p999),
        (Dir::Send, Pct::Max) => |r| lat(&r.latency().send, |s| s.max),
        (Dir::Receive, Pct::P99) => |r| lat(&r.latency().receive, |s| s.p99),
        (Dir::Receive, _) => |r| lat(&r.latency().receive, |s| s.p50),
        (Dir::Blocking, Pct::P50) => |r| lat(&r.latency().receive_blocking, |s| s.p50),
        (Dir::Blocking, Pct::P99) => |r| lat(&r.latency().receive_blocking, |s| s.p99),
        (Dir::Blocking, Pct::P999) => |r| lat(&r.latency().receive_blocking, |s| s.p999),
        (Dir::Blocking, Pct::Max) => |r| lat(&r.latency().receive_blocking, |s| s.max),
    };
    let sort: fn(&R) -> String = match (of, pick) {
        (Dir::Send, Pct::P50) => |r| r.latency().send.p50.to_string(),
        (Dir::Send, Pct::P99) => |r| r.latency().send.p99.to_string(),
        (Dir::Send, Pct::P999) => |r| r.latency().send.p999.to_string(),
        (Dir::Send, Pct::Max) => |r| r.latency().send.max.to_string(),
        (Dir::Receive, Pct::P99) => |r| r.latency().receive.p99.to_string(),
        (Dir::Receive, _) => |r| r.latency().receive.p50.to_string(),
        (Dir::Blocking, Pct::P50) => |r| r.latency().receive_blocking.p50.to_string(),
        (Dir::Blocking, Pct::P99) => |r| r.latency().receive_blocking.p99.to_string(),
        (Dir::Blocking, Pct::P999) => |r| r.latency().receive_blocking.p999.to_string(),
        (Dir::Blocking, Pct::Max) => |r| r.latency().receive_blocking.max.to_string(),
    };
    Column::right(header, cell).sorted_by(sort)
}

#[derive(Clone, Copy)]
enum Dir {
    Send,
    Receive,
    Blocking,
}

#[derive(Clone, Copy)]
enum Pct {
    P50,
    P99,
    P999,
    Max,
}

/// Error rate, peers, then send and blocking-receive latency (p50, p99,
/// p99.9, max): the tail of the process and group tables.
fn profile_columns<R: Stats>() -> Vec<Column<R>> {
    let mut cols = vec![
        Column::right("err%", |r: &R| err_pct(r.error_rate())),
        Column::right("peers", |r: &R| r.peers()),
    ];
    for (dir, first) in [(Dir::Send, "send p50"), (Dir::Blocking, "recv(blk) p50")] {
        cols.push(latency_column(first, dir, Pct::P50));
        cols.push(latency_column("p99", dir, Pct::P99));
        cols.push(latency_column("p99.9", dir, Pct::P999));
        cols.push(latency_column("max", dir, Pct::Max));
    }
    cols
}

/// The CSV's count fields of a process or a group.
fn count_fields<R: Stats>() -> Vec<Field<R>> {
    vec![
        field("ops", |r: &R| r.ops().to_string()),
        field("sends", |r: &R| r.sends().to_string()),
        field("receives", |r: &R| r.receives().to_string()),
        field("bytes_sent", |r: &R| r.bytes_sent().to_string()),
        field("bytes_received", |r: &R| r.bytes_received().to_string()),
        field("errors", |r: &R| r.errors().to_string()),
        field("retry_errors", |r: &R| r.retry_errors().to_string()),
        field("hard_errors", |r: &R| r.hard_errors().to_string()),
        field("peers", |r: &R| r.peers_exact().to_string()),
    ]
}

/// The CSV's latency fields (nanoseconds) of a process or a group.
fn latency_fields<R: Stats>() -> Vec<Field<R>> {
    vec![
        field("send_count", |r: &R| r.latency().send.count.to_string()),
        field("send_p50_ns", |r: &R| r.latency().send.p50.to_string()),
        field("send_p99_ns", |r: &R| r.latency().send.p99.to_string()),
        field("send_max_ns", |r: &R| r.latency().send.max.to_string()),
        field("receive_count", |r: &R| {
            r.latency().receive.count.to_string()
        }),
        field("receive_p50_ns", |r: &R| {
            r.latency().receive.p50.to_string()
        }),
        field("receive_p99_ns", |r: &R| {
            r.latency().receive.p99.to_string()
        }),
        field("receive_max_ns", |r: &R| {
            r.latency().receive.max.to_string()
        }),
        field("receive_blocking_p99_ns", |r: &R| {
            r.latency().receive_blocking.p99.to_string()
        }),
        field("receive_nonblocking_p99_ns", |r: &R| {
            r.latency().receive_nonblocking.p99.to_string()
        }),
    ]
}

/// Processes, heaviest first.
pub fn processes(multi: bool) -> TableDesc<ProcessOut> {
    let mut columns = vec![
        Column::left("pid", |p: &ProcessOut| {
            p.pid.map_or("-".into(), |x| x.to_string())
        }),
        Column::left("comm", |p: &ProcessOut| p.comm.clone()),
    ];
    columns.extend(traffic_columns());
    columns.extend(profile_columns());
    TableDesc {
        columns: with_machine(multi, |p| or_dash(&p.machine_id), columns),
        fields: process_fields(),
    }
}

/// The CSV of processes and of commands (the same rows).
fn process_fields() -> Vec<Field<ProcessOut>> {
    let mut fields = vec![
        field("pid", |p: &ProcessOut| {
            p.pid.map(|x| x.to_string()).unwrap_or_default()
        }),
        field("comm", |p| p.comm.clone()),
        field("processes", |p| p.processes.to_string()),
    ];
    fields.extend(count_fields());
    fields.extend(latency_fields());
    fields
}

/// Processes rolled up by comm.
pub fn commands() -> TableDesc<ProcessOut> {
    let mut columns = vec![
        Column::left("comm", |p: &ProcessOut| p.comm.clone()),
        Column::right("procs", |p: &ProcessOut| count(p.processes)),
    ];
    columns.extend(traffic_columns());
    columns.push(latency_column("send p99", Dir::Send, Pct::P99));
    columns.push(latency_column("recv p99", Dir::Receive, Pct::P99));
    TableDesc {
        columns,
        fields: process_fields(),
    }
}

/// A row of ops grouped by an optional column: a container, a cgroup or
/// a network namespace.
pub trait Group: Stats {
    /// The key column's header in the text and HTML.
    const WHAT: &'static str;
    /// The key's field in the CSV.
    const FIELD: &'static str;
    fn machine(&self) -> String;
    /// The key as people read it.
    fn label(&self) -> String;
    /// The key whole, where `label` shortens it.
    fn full(&self) -> Option<String> {
        None
    }
    /// The key exact (CSV).
    fn key(&self) -> String;
}

/// A container's short id (12 digits, as `docker ps`), or the host.
pub fn container_label(id: Option<&str>) -> String {
    match id {
        Some(id) => id.chars().take(12).collect(),
        None => "host (no container)".into(),
    }
}

/// A cgroup path as `/a/b` from the root; an unresolved `id:NNN` as is.
pub fn cgroup_label(path: &str) -> String {
    if path.starts_with("id:") {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

impl Group for ContainerOut {
    const WHAT: &'static str = "container";
    const FIELD: &'static str = "container_id";
    fn machine(&self) -> String {
        self.machine_id.clone()
    }
    fn label(&self) -> String {
        container_label(self.container_id.as_deref())
    }
    fn full(&self) -> Option<String> {
        self.container_id.clone()
    }
    fn key(&self) -> String {
        or_empty(&self.container_id)
    }
}

impl Group for CgroupOut {
    const WHAT: &'static str = "cgroup";
    const FIELD: &'static str = "cgroup";
    fn machine(&self) -> String {
        self.machine_id.clone()
    }
    fn label(&self) -> String {
        cgroup_label(&self.cgroup)
    }
    fn key(&self) -> String {
        self.cgroup.clone()
    }
}

impl Group for NetnsOut {
    const WHAT: &'static str = "netns";
    const FIELD: &'static str = "netns";
    fn machine(&self) -> String {
        self.machine_id.clone()
    }
    fn label(&self) -> String {
        self.netns.to_string()
    }
    fn key(&self) -> String {
        self.netns.to_string()
    }
}

/// Containers, cgroups or network namespaces, heaviest first.
pub fn groups<G: Group>(multi: bool) -> TableDesc<G> {
    let mut columns = vec![Column::left(G::WHAT, G::label).full(G::full)];
    columns.extend(traffic_columns());
    columns.extend(profile_columns());
    let mut fields = vec![field("machine_id", G::machine), field(G::FIELD, G::key)];
    fields.extend(count_fields());
    fields.push(field("first", |g: &G| or_empty(g.first())));
    fields.push(field("last", |g: &G| or_empty(g.last())));
    fields.extend(latency_fields());
    TableDesc {
        columns: with_machine(multi, G::machine, columns),
        fields,
    }
}

/// Conversations; a `socket` column when some were keyed by cookie.
pub fn conversations(multi: bool, cookies: bool) -> TableDesc<ConversationOut> {
    type C = ConversationOut;
    let mut columns = vec![
        Column::left("proto", |c: &C| c.protocol.into()),
        Column::right("pid", |c: &C| c.pid.to_string()),
        Column::left("comm", |c: &C| c.comm.clone()),
        Column::left("local", |c: &C| endpoint(&c.local_address, c.local_port)),
        Column::left("remote", |c: &C| remote(&c.remote_address, c.remote_port)),
        Column::right("ops", |c: &C| count(c.ops)),
        Column::right("sent", |c: &C| bytes(c.bytes_sent)).sorted_by(|c| c.bytes_sent.to_string()),
        Column::right("received", |c: &C| bytes(c.bytes_received))
            .sorted_by(|c| c.bytes_received.to_string()),
        Column::right("errors", |c: &C| count(c.errors)),
        Column::right("eof", |c: &C| {
            if c.end_of_stream { "yes" } else { "" }.into()
        }),
        Column::right("send p99", |c: &C| lat(&c.latency_ns.send, |s| s.p99))
            .sorted_by(|c| c.latency_ns.send.p99.to_string()),
        Column::right("recv p99", |c: &C| lat(&c.latency_ns.receive, |s| s.p99))
            .sorted_by(|c| c.latency_ns.receive.p99.to_string()),
        Column::left("first", |c: &C| or_dash(&c.first)),
        Column::left("last", |c: &C| or_dash(&c.last)),
    ];
    if cookies {
        // `*`: more than one process or peer used the socket; pid, comm
        // and endpoints are its first op's.
        columns.push(Column::right("socket", |c: &C| {
            c.socket_cookie.map_or("-".into(), |k| {
                format!("{k}{}", if c.shared_socket { "*" } else { "" })
            })
        }));
    }
    let fields = vec![
        field("protocol", |c: &C| c.protocol.into()),
        field("pid", |c: &C| c.pid.to_string()),
        field("comm", |c: &C| c.comm.clone()),
        field("local_address", |c: &C| c.local_address.clone()),
        field("local_port", |c: &C| c.local_port.to_string()),
        field("remote_address", |c: &C| or_empty(&c.remote_address)),
        field("remote_port", |c: &C| {
            c.remote_port.map(|x| x.to_string()).unwrap_or_default()
        }),
        field("ops", |c: &C| c.ops.to_string()),
        field("sends", |c: &C| c.sends.to_string()),
        field("receives", |c: &C| c.receives.to_string()),
        field("bytes_sent", |c: &C| c.bytes_sent.to_string()),
        field("bytes_received", |c: &C| c.bytes_received.to_string()),
        field("errors", |c: &C| c.errors.to_string()),
        field("end_of_stream", |c: &C| c.end_of_stream.to_string()),
        field("first", |c: &C| or_empty(&c.first)),
        field("last", |c: &C| or_empty(&c.last)),
        field("send_p99_ns", |c: &C| c.latency_ns.send.p99.to_string()),
        field("receive_p99_ns", |c: &C| {
            c.latency_ns.receive.p99.to_string()
        }),
        field("socket_cookie", |c: &C| {
            c.socket_cookie.map(|x| x.to_string()).unwrap_or_default()
        }),
    ];
    TableDesc {
        columns: with_machine(multi, |c| c.machine_id.clone(), columns),
        fields,
    }
}

/// Remote endpoints.
pub fn endpoints() -> TableDesc<EndpointOut> {
    type E = EndpointOut;
    TableDesc {
        columns: vec![
            Column::left("proto", |e: &E| e.protocol.into()),
            Column::left("remote", |e: &E| remote(&e.address, e.port)),
            Column::right("ops", |e: &E| count(e.ops)),
            Column::right("sent", |e: &E| bytes(e.bytes_sent))
                .sorted_by(|e| e.bytes_sent.to_string()),
            Column::right("received", |e: &E| bytes(e.bytes_received))
                .sorted_by(|e| e.bytes_received.to_string()),
            Column::right("errors", |e: &E| count(e.errors)),
        ],
        fields: vec![
            field("protocol", |e: &E| e.protocol.into()),
            field("address", |e: &E| or_empty(&e.address)),
            field("port", |e: &E| {
                e.port.map(|x| x.to_string()).unwrap_or_default()
            }),
            field("ops", |e: &E| e.ops.to_string()),
            field("bytes_sent", |e: &E| e.bytes_sent.to_string()),
            field("bytes_received", |e: &E| e.bytes_received.to_string()),
            field("errors", |e: &E| e.errors.to_string()),
            field("first", |e: &E| or_empty(&e.first)),
            field("last", |e: &E| or_empty(&e.last)),
        ],
    }
}

/// Local and remote ports.
pub fn ports() -> TableDesc<PortOut> {
    type P = PortOut;
    TableDesc {
        columns: vec![
            Column::left("proto", |p: &P| p.protocol.into()),
            Column::left("side", |p: &P| p.role.into()),
            Column::right("port", |p: &P| p.port.to_string()),
            Column::right("ops", |p: &P| count(p.ops)),
            Column::right("sent", |p: &P| bytes(p.bytes_sent))
                .sorted_by(|p| p.bytes_sent.to_string()),
            Column::right("received", |p: &P| bytes(p.bytes_received))
                .sorted_by(|p| p.bytes_received.to_string()),
            Column::right("errors", |p: &P| count(p.errors)),
        ],
        fields: vec![
            field("protocol", |p: &P| p.protocol.into()),
            field("role", |p: &P| p.role.into()),
            field("port", |p: &P| p.port.to_string()),
            field("ops", |p: &P| p.ops.to_string()),
            field("bytes_sent", |p: &P| p.bytes_sent.to_string()),
            field("bytes_received", |p: &P| p.bytes_received.to_string()),
            field("errors", |p: &P| p.errors.to_string()),
        ],
    }
}

/// Errors by kind and direction (no CSV: `errors` has them per process).
pub fn error_kinds() -> TableDesc<ErrorKindOut> {
    type K = ErrorKindOut;
    TableDesc {
        columns: vec![
            Column::left("error", |e: &K| e.error.clone()),
            Column::left("kind", |e: &K| e.kind.into()),
            Column::left("direction", |e: &K| e.direction.into()),
            Column::right("count", |e: &K| count(e.count)),
        ],
        fields: Vec::new(),
    }
}

/// Errors per process.
pub fn errors(multi: bool) -> TableDesc<ErrorOut> {
    type E = ErrorOut;
    let columns = vec![
        Column::left("error", |e: &E| e.error.clone()),
        Column::left("direction", |e: &E| e.direction.into()),
        Column::right("pid", |e: &E| e.pid.to_string()),
        Column::left("comm", |e: &E| e.comm.clone()),
        Column::right("count", |e: &E| count(e.count)),
        Column::left("first", |e: &E| or_dash(&e.first)),
        Column::left("last", |e: &E| or_dash(&e.last)),
    ];
    TableDesc {
        columns: with_machine(multi, |e| e.machine_id.clone(), columns),
        fields: vec![
            field("error", |e: &E| e.error.clone()),
            field("kind", |e: &E| e.kind.into()),
            field("direction", |e: &E| e.direction.into()),
            field("pid", |e: &E| e.pid.to_string()),
            field("comm", |e: &E| e.comm.clone()),
            field("count", |e: &E| e.count.to_string()),
            field("first", |e: &E| or_empty(&e.first)),
            field("last", |e: &E| or_empty(&e.last)),
        ],
    }
}

/// The slowest or largest operations, each with its file:line.
pub fn exemplars() -> TableDesc<ExemplarOut> {
    type X = ExemplarOut;
    TableDesc {
        columns: vec![
            Column::left("latency", |e: &X| e.latency_ns.map_or("-".into(), latency))
                .sorted_by(|e| e.latency_ns.unwrap_or(0).to_string()),
            Column::right("size", |e: &X| count(e.size)),
            Column::left("time", |e: &X| e.timestamp.clone()),
            Column::right("pid", |e: &X| e.pid.to_string()),
            Column::left("comm", |e: &X| e.comm.clone()),
            Column::left("proto", |e: &X| e.protocol.into()),
            Column::left("dir", |e: &X| e.direction.into()),
            Column::left("local", |e: &X| e.local.clone()),
            Column::left("remote", |e: &X| {
                e.remote.clone().unwrap_or_else(|| "(unknown)".into())
            }),
            Column::left("error", |e: &X| e.error.clone().unwrap_or_default()),
            Column::left("file:line", |e: &X| format!("{}:{}", e.file, e.line)),
        ],
        fields: Vec::new(),
    }
}

/// Machines, when the report spans more than one.
pub fn machines() -> TableDesc<MachineOut> {
    type M = MachineOut;
    TableDesc {
        columns: vec![
            Column::left("machine", |m: &M| m.machine_id.clone()),
            Column::right("runs", |m: &M| m.runs.to_string()),
            Column::right("rows", |m: &M| count(m.rows)),
            Column::right("ops", |m: &M| count(m.ops)),
            Column::right("sent", |m: &M| bytes(m.bytes_sent))
                .sorted_by(|m| m.bytes_sent.to_string()),
            Column::right("received", |m: &M| bytes(m.bytes_received))
                .sorted_by(|m| m.bytes_received.to_string()),
            Column::right("errors", |m: &M| count(m.errors)),
            Column::right("lost", |m: &M| count(m.events_lost)),
        ],
        fields: Vec::new(),
    }
}

/// The overview by direction, protocol and IP version. No CSV: the JSON
/// has the exact figures.
pub fn overview() -> TableDesc<OverviewOut> {
    type O = OverviewOut;
    TableDesc {
        columns: vec![
            Column::left("direction", |o: &O| o.direction.into()),
            Column::left("proto", |o: &O| o.protocol.into()).html_header("protocol"),
            Column::right("ip", |o: &O| o.ip_version.to_string()).html_header("IP"),
            Column::right("ops", |o: &O| count(o.ops)),
            Column::right("bytes", |o: &O| bytes(o.bytes)),
            Column::right("errors", |o: &O| count(o.errors)),
            Column::right("ops/s", |o: &O| opt_rate(o.ops_per_s)),
            Column::right("bytes/s", |o: &O| byte_rate(o.bytes_per_s)),
        ],
        fields: vec![],
    }
}

/// Latency by class (send, blocking and non-blocking receive) and
/// protocol. No CSV: `--format json` has the exact summaries.
pub fn latency_classes() -> TableDesc<LatencyOut> {
    type L = LatencyOut;
    TableDesc {
        columns: vec![
            Column::left("class", |l: &L| l.class.into()),
            Column::left("proto", |l: &L| l.protocol.into()).html_header("protocol"),
            Column::right("count", |l: &L| count(l.summary.count)),
            Column::right("mean", |l: &L| latency(l.summary.mean.round() as u64)),
            Column::right("p50", |l: &L| latency(l.summary.p50)),
            Column::right("p90", |l: &L| latency(l.summary.p90)),
            Column::right("p99", |l: &L| latency(l.summary.p99)),
            Column::right("p99.9", |l: &L| latency(l.summary.p999)),
            Column::right("max", |l: &L| latency(l.summary.max)),
        ],
        fields: vec![],
    }
}

/// MSG flag combinations as passed, by direction. No CSV.
pub fn flag_combinations() -> TableDesc<FlagComboOut> {
    type F = FlagComboOut;
    TableDesc {
        columns: vec![
            Column::left("direction", |f: &F| f.direction.into()),
            Column::left("flags", |f: &F| f.flags.clone()),
            Column::right("ops", |f: &F| count(f.ops)),
            Column::right("bytes", |f: &F| bytes(f.bytes)).sorted_by(|f| f.bytes.to_string()),
        ],
        fields: vec![],
    }
}

/// Each MSG flag alone, by direction. No CSV.
pub fn flags() -> TableDesc<FlagOut> {
    type F = FlagOut;
    TableDesc {
        columns: vec![
            Column::left("direction", |f: &F| f.direction.into()),
            Column::left("flag", |f: &F| f.flag.clone()),
            Column::right("ops", |f: &F| count(f.ops)),
        ],
        fields: vec![],
    }
}

/// The runs read, one row each. No CSV: `--format json` has every
/// field of a run.
pub fn runs() -> TableDesc<RunOut> {
    type R = RunOut;
    TableDesc {
        columns: vec![
            Column::left("machine", |r: &R| r.machine_id.clone()),
            Column::left("run", |r: &R| r.run.clone()),
            Column::left("manifest", |r: &R| or_dash(&r.manifest)),
            Column::right("rows", |r: &R| count(r.rows)),
            Column::right("written", |r: &R| r.rows_written.map_or("-".into(), count)),
            Column::right("lost", |r: &R| count(r.events_lost)).html_header("events lost"),
            Column::left("finalised", |r: &R| match (&r.manifest, r.finalized) {
                (None, _) => "no manifest".into(),
                (_, true) => "yes".into(),
                (_, false) => "no".into(),
            })
            .warn(|r| r.manifest.is_some() && !r.finalized),
            Column::left("first", |r: &R| or_dash(&r.first)),
            Column::left("last", |r: &R| or_dash(&r.last)),
        ],
        fields: vec![],
    }
}
