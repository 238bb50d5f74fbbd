//! `--format csv`: one table of the report as CSV (RFC 4180, exact
//! numbers), chosen with `--csv-table`.

use super::model::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CsvTable {
    Processes,
    Commands,
    Conversations,
    Endpoints,
    Ports,
    Errors,
    Series,
    /// Ops by container (the host's row has an empty container_id); with
    /// the Container ID column.
    Containers,
    /// Ops by cgroup; with the Cgroup column.
    Cgroups,
    /// Ops by network namespace; with the Netns column.
    Netns,
}

const GROUP_HEADER: [&str; 21] = [
    "ops",
    "sends",
    "receives",
    "bytes_sent",
    "bytes_received",
    "errors",
    "retry_errors",
    "hard_errors",
    "peers",
    "first",
    "last",
    "send_count",
    "send_p50_ns",
    "send_p99_ns",
    "send_max_ns",
    "receive_count",
    "receive_p50_ns",
    "receive_p99_ns",
    "receive_max_ns",
    "receive_blocking_p99_ns",
    "receive_nonblocking_p99_ns",
];

fn group_cells(g: &super::model::GroupStatsOut) -> Vec<String> {
    let l = &g.latency_ns;
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        g.ops.to_string(),
        g.sends.to_string(),
        g.receives.to_string(),
        g.bytes_sent.to_string(),
        g.bytes_received.to_string(),
        g.errors.to_string(),
        g.retry_errors.to_string(),
        g.hard_errors.to_string(),
        g.peers.to_string(),
        o(&g.first),
        o(&g.last),
        l.send.count.to_string(),
        l.send.p50.to_string(),
        l.send.p99.to_string(),
        l.send.max.to_string(),
        l.receive.count.to_string(),
        l.receive.p50.to_string(),
        l.receive.p99.to_string(),
        l.receive.max.to_string(),
        l.receive_blocking.p99.to_string(),
        l.receive_nonblocking.p99.to_string(),
    ]
}

pub fn render(r: &Report, table: CsvTable) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let s = |v: &dyn ToString| v.to_string();
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    let on = |v: Option<u16>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let header: &[&str] = match table {
        CsvTable::Processes | CsvTable::Commands => {
            let list = if table == CsvTable::Processes {
                &r.processes
            } else {
                &r.commands
            };
            for p in list {
                let l = &p.latency_ns;
                rows.push(vec![
                    p.pid.map(|x| x.to_string()).unwrap_or_default(),
                    p.comm.clone(),
                    s(&p.processes),
                    s(&p.ops),
                    s(&p.sends),
                    s(&p.receives),
                    s(&p.bytes_sent),
                    s(&p.bytes_received),
                    s(&p.errors),
                    s(&p.retry_errors),
                    s(&p.hard_errors),
                    s(&p.peers),
                    s(&l.send.count),
                    s(&l.send.p50),
                    s(&l.send.p99),
                    s(&l.send.max),
                    s(&l.receive.count),
                    s(&l.receive.p50),
                    s(&l.receive.p99),
                    s(&l.receive.max),
                    s(&l.receive_blocking.p99),
                    s(&l.receive_nonblocking.p99),
                ]);
            }
            &[
                "pid",
                "comm",
                "processes",
                "ops",
                "sends",
                "receives",
                "bytes_sent",
                "bytes_received",
                "errors",
                "retry_errors",
                "hard_errors",
                "peers",
                "send_count",
                "send_p50_ns",
                "send_p99_ns",
                "send_max_ns",
                "receive_count",
                "receive_p50_ns",
                "receive_p99_ns",
                "receive_max_ns",
                "receive_blocking_p99_ns",
                "receive_nonblocking_p99_ns",
            ]
        }
        CsvTable::Conversations => {
            for c in &r.conversations {
                rows.push(vec![
                    c.protocol.into(),
                    s(&c.pid),
                    c.comm.clone(),
                    c.local_address.clone(),
                    s(&c.local_port),
                    o(&c.remote_address),
                    on(c.remote_port),
                    s(&c.ops),
                    s(&c.sends),
                    s(&c.receives),
                    s(&c.bytes_sent),
                    s(&c.bytes_received),
                    s(&c.errors),
                    s(&c.end_of_stream),
                    o(&c.first),
                    o(&c.last),
                    s(&c.latency_ns.send.p99),
                    s(&c.latency_ns.receive.p99),
                    c.socket_cookie.map(|x| x.to_string()).unwrap_or_default(),
                ]);
            }
            &[
                "protocol",
                "pid",
                "comm",
                "local_address",
                "local_port",
                "remote_address",
                "remote_port",
                "ops",
                "sends",
                "receives",
                "bytes_sent",
                "bytes_received",
                "errors",
                "end_of_stream",
                "first",
                "last",
                "send_p99_ns",
                "receive_p99_ns",
                "socket_cookie",
            ]
        }
        CsvTable::Endpoints => {
            for e in &r.remote_endpoints {
                rows.push(vec![
                    e.protocol.into(),
                    o(&e.address),
                    on(e.port),
                    s(&e.ops),
                    s(&e.bytes_sent),
                    s(&e.bytes_received),
                    s(&e.errors),
                    o(&e.first),
                    o(&e.last),
                ]);
            }
            &[
                "protocol",
                "address",
                "port",
                "ops",
                "bytes_sent",
                "bytes_received",
                "errors",
                "first",
                "last",
            ]
        }
        CsvTable::Ports => {
            for p in &r.ports {
                rows.push(vec![
                    p.protocol.into(),
                    p.role.into(),
                    s(&p.port),
                    s(&p.ops),
                    s(&p.bytes_sent),
                    s(&p.bytes_received),
                    s(&p.errors),
                ]);
            }
            &[
                "protocol",
                "role",
                "port",
                "ops",
                "bytes_sent",
                "bytes_received",
                "errors",
            ]
        }
        CsvTable::Errors => {
            for e in &r.errors {
                rows.push(vec![
                    e.error.clone(),
                    e.kind.into(),
                    e.direction.into(),
                    s(&e.pid),
                    e.comm.clone(),
                    s(&e.count),
                    o(&e.first),
                    o(&e.last),
                ]);
            }
            &[
                "error",
                "kind",
                "direction",
                "pid",
                "comm",
                "count",
                "first",
                "last",
            ]
        }
        CsvTable::Containers | CsvTable::Cgroups | CsvTable::Netns => &[],
        CsvTable::Series => {
            for p in &r.series.points {
                rows.push(vec![
                    p.t.clone(),
                    s(&r.series.bucket_seconds),
                    s(&p.sends),
                    s(&p.receives),
                    s(&p.bytes_sent),
                    s(&p.bytes_received),
                    s(&p.retry_errors),
                    s(&p.hard_errors),
                ]);
            }
            &[
                "time",
                "bucket_seconds",
                "sends",
                "receives",
                "bytes_sent",
                "bytes_received",
                "retry_errors",
                "hard_errors",
            ]
        }
    };
    let owned: Vec<&str>;
    let header: &[&str] = match table {
        CsvTable::Containers | CsvTable::Cgroups | CsvTable::Netns => {
            let key = match table {
                CsvTable::Containers => {
                    for c in r.containers.iter().flatten() {
                        let mut row = vec![
                            c.machine_id.clone(),
                            c.container_id.clone().unwrap_or_default(),
                        ];
                        row.extend(group_cells(&c.stats));
                        rows.push(row);
                    }
                    "container_id"
                }
                CsvTable::Cgroups => {
                    for c in r.cgroups.iter().flatten() {
                        let mut row = vec![c.machine_id.clone(), c.cgroup.clone()];
                        row.extend(group_cells(&c.stats));
                        rows.push(row);
                    }
                    "cgroup"
                }
                _ => {
                    for n in r.netns.iter().flatten() {
                        let mut row = vec![n.machine_id.clone(), n.netns.to_string()];
                        row.extend(group_cells(&n.stats));
                        rows.push(row);
                    }
                    "netns"
                }
            };
            owned = ["machine_id", key]
                .into_iter()
                .chain(GROUP_HEADER)
                .collect();
            &owned
        }
        _ => header,
    };
    // Writing to a Vec cannot fail.
    let _ = w.write_record(header);
    for row in rows {
        let _ = w.write_record(&row);
    }
    w.into_inner().unwrap_or_default()
}
