//! top's tables, each described once: a column is the report's
//! [`Column`] (header, cell, alignment) plus what a terminal needs (its
//! width, the sort key it shows, whether it is a figure that reads per
//! second). `ui::render_table` draws any table from its columns, so a
//! header and its cell cannot drift apart.

use crate::analysis::{ErrKey, LatencySummary, PortKey};
use crate::report::format::{bytes_f, count, latency, rate};
use crate::report::table::{Align, Column};
use crate::report::tables::container_label;
use crate::schema::{errno_text, is_retry_errno, msg_flags_text};

use super::ui::{clean, dir_text, endpoint};
use super::view::{RowKey, SortCol, TableRow};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Processes,
    Conversations,
    Remotes,
    Ports,
    Errors,
    Flags,
    Containers,
}

/// A row as top shows it: its figures per second, or over the whole run.
pub struct Shown {
    pub row: TableRow,
    pub per_second: bool,
}

pub struct TopColumn {
    pub column: Column<Shown>,
    pub width: u16,
    /// The sort column it shows (its header carries the arrow).
    pub sort: Option<SortCol>,
    /// A figure: `/s` in its header in a per-second window.
    pub per_second: bool,
}

impl TopColumn {
    pub fn header(&self, per_second: bool) -> String {
        let s = if self.per_second && per_second {
            "/s"
        } else {
            ""
        };
        format!("{}{s}", self.column.header)
    }

    pub fn right(&self) -> bool {
        self.column.align == Align::Right
    }
}

fn col(column: Column<Shown>, width: u16) -> TopColumn {
    TopColumn {
        column,
        width,
        sort: None,
        per_second: false,
    }
}

fn key(column: Column<Shown>, width: u16) -> TopColumn {
    TopColumn {
        sort: Some(SortCol::Key),
        ..col(column, width)
    }
}

fn figure_col(
    header: &'static str,
    sort: SortCol,
    cell: fn(&Shown) -> String,
    w: u16,
) -> TopColumn {
    TopColumn {
        sort: Some(sort),
        per_second: true,
        ..col(Column::right(header, cell), w)
    }
}

/// A figure: a rate per second, or over the whole run a count (the
/// report's styles).
pub fn figure(v: f64, per_second: bool) -> String {
    if per_second {
        rate(v)
    } else {
        count(v.round() as u64)
    }
}

fn ops(w: u16) -> TopColumn {
    figure_col(
        "OPS",
        SortCol::Ops,
        |s| figure(s.row.fig.ops, s.per_second),
        w,
    )
}

fn sent(w: u16) -> TopColumn {
    figure_col("SENT", SortCol::Sent, |s| bytes_f(s.row.fig.sent), w)
}

fn recv(w: u16) -> TopColumn {
    figure_col("RECV", SortCol::Recv, |s| bytes_f(s.row.fig.recv), w)
}

fn errs(w: u16) -> TopColumn {
    figure_col(
        "ERR",
        SortCol::Errors,
        |s| figure(s.row.fig.errors(), s.per_second),
        w,
    )
}

fn is_other(s: &Shown) -> bool {
    s.row.key == RowKey::Other
}

/// A latency percentile; none on the "(other)" row of processes and
/// conversations, `-` when the window has no op.
fn lat_col(header: &'static str, sort: SortCol, w: u16, other: bool) -> TopColumn {
    let cell: fn(&Shown) -> String = match (sort, other) {
        (SortCol::P50, true) => |s| lat(s, |l| l.p50),
        (SortCol::P50, false) => |s| {
            if is_other(s) {
                String::new()
            } else {
                lat(s, |l| l.p50)
            }
        },
        (_, true) => |s| lat(s, |l| l.p99),
        (_, false) => |s| {
            if is_other(s) {
                String::new()
            } else {
                lat(s, |l| l.p99)
            }
        },
    };
    TopColumn {
        sort: Some(sort),
        ..col(Column::right(header, cell), w)
    }
}

fn lat(s: &Shown, pick: fn(&LatencySummary) -> u64) -> String {
    s.row.fig.latency.map_or("-".into(), |l| latency(pick(&l)))
}

fn peers() -> TopColumn {
    col(
        Column::right("PEERS", |s| {
            s.row.peers.map_or(String::new(), |p| p.to_string())
        }),
        6,
    )
}

fn totals() -> [TopColumn; 2] {
    [
        col(
            Column::right("TOTAL OPS", |s| count(s.row.fig.total_ops)),
            10,
        ),
        col(
            Column::right("TOTAL BYTES", |s| bytes_f(s.row.fig.total_bytes as f64)),
            11,
        ),
    ]
}

/// The label of a key column, `(other)` on the other row.
fn other_or(s: &Shown, f: impl Fn(&RowKey) -> Option<String>) -> String {
    f(&s.row.key).unwrap_or_else(|| {
        if is_other(s) {
            "(other)".into()
        } else {
            String::new()
        }
    })
}

/// A cell of a key's part: empty on the other row.
fn part(s: &Shown, f: impl Fn(&RowKey) -> Option<String>) -> String {
    f(&s.row.key).unwrap_or_default()
}

fn pid_of(k: &RowKey) -> Option<String> {
    match k {
        RowKey::Proc(p) => Some(p.pid.to_string()),
        RowKey::Conv(c) => Some(c.pid.to_string()),
        RowKey::Err(e) => Some(e.pid.to_string()),
        _ => None,
    }
}

fn comm_of(k: &RowKey) -> Option<String> {
    match k {
        RowKey::Proc(p) => Some(clean(&p.comm.as_str())),
        RowKey::Conv(c) => Some(clean(&c.comm.as_str())),
        RowKey::Err(e) => Some(clean(&e.comm.as_str())),
        _ => None,
    }
}

fn proto_of(k: &RowKey) -> Option<String> {
    match k {
        RowKey::Conv(c) => Some(c.protocol.as_str().into()),
        RowKey::Remote(p, _) => Some(p.as_str().into()),
        RowKey::Port(p) => Some(p.protocol.as_str().into()),
        _ => None,
    }
}

fn processes(wide: bool) -> Vec<TopColumn> {
    let comm = |w| col(Column::left("COMM", |s| other_or(s, comm_of)), w);
    let pid = key(Column::right("PID", |s| part(s, pid_of)), 7);
    let lats = |w| {
        [
            lat_col("P50", SortCol::P50, w, false),
            lat_col("P99", SortCol::P99, w, false),
        ]
    };
    if !wide {
        let mut v = vec![pid, comm(15), ops(8), sent(9), recv(9)];
        v.extend(lats(8));
        v.push(errs(7));
        return v;
    }
    let mut v = vec![pid, comm(16), ops(9), sent(10), recv(10)];
    v.extend(lats(9));
    v.extend([errs(8), peers()]);
    v.extend(totals());
    v
}

fn conversations(wide: bool) -> Vec<TopColumn> {
    let proto = col(Column::left("PROTO", |s| part(s, proto_of)), 5);
    let pid = key(Column::right("PID", |s| part(s, pid_of)), 7);
    let comm = |w| col(Column::left("COMM", |s| other_or(s, comm_of)), w);
    let remote = |w| {
        col(
            Column::left("REMOTE", |s| {
                part(s, |k| match k {
                    RowKey::Conv(c) if s.row.end_of_stream => {
                        Some(format!("{} (closed)", endpoint(c.remote)))
                    }
                    RowKey::Conv(c) => Some(endpoint(c.remote)),
                    _ => None,
                })
            }),
            w,
        )
    };
    let p99 = |w| lat_col("P99", SortCol::P99, w, false);
    if !wide {
        let lport = Column::right("LPORT", |s| {
            part(s, |k| match k {
                RowKey::Conv(c) => Some(c.local.port.to_string()),
                _ => None,
            })
        });
        return vec![
            proto,
            pid,
            comm(9),
            remote(19),
            col(lport, 5),
            ops(6),
            sent(8),
            recv(8),
            p99(7),
        ];
    }
    let local = Column::left("LOCAL", |s| {
        part(s, |k| match k {
            RowKey::Conv(c) => Some(c.local.to_string()),
            _ => None,
        })
    });
    vec![
        proto,
        pid,
        comm(15),
        col(local, 21),
        remote(28),
        ops(7),
        sent(8),
        recv(8),
        p99(8),
        errs(6),
    ]
}

fn containers(wide: bool) -> Vec<TopColumn> {
    let name = key(
        Column::left("CONTAINER", |s| {
            other_or(s, |k| match k {
                RowKey::Container(c) => Some(container_label(
                    Some(c.value.as_str()).filter(|v| !v.is_empty()),
                )),
                _ => None,
            })
        }),
        20,
    );
    let lats = |w| {
        [
            lat_col("P50", SortCol::P50, w, true),
            lat_col("P99", SortCol::P99, w, true),
        ]
    };
    if !wide {
        let mut v = vec![name, ops(8), sent(9), recv(9)];
        v.extend(lats(8));
        v.push(errs(7));
        return v;
    }
    let mut v = vec![name, ops(9), sent(10), recv(10)];
    v.extend(lats(9));
    v.extend([errs(8), peers()]);
    v.extend(totals());
    v
}

fn remotes() -> Vec<TopColumn> {
    let remote = Column::left("REMOTE ENDPOINT", |s| {
        other_or(s, |k| match k {
            RowKey::Remote(_, e) => Some(endpoint(*e)),
            _ => None,
        })
    });
    vec![
        col(Column::left("PROTO", |s| part(s, proto_of)), 5),
        key(remote, 40),
        ops(8),
        sent(9),
        recv(9),
        errs(7),
    ]
}

fn port_of(k: &RowKey) -> Option<&PortKey> {
    match k {
        RowKey::Port(p) => Some(p),
        _ => None,
    }
}

fn ports() -> Vec<TopColumn> {
    vec![
        col(Column::left("PROTO", |s| other_or(s, proto_of)), 5),
        col(
            Column::left("SIDE", |s| {
                part(s, |k| port_of(k).map(|p| p.role.as_str().into()))
            }),
            6,
        ),
        key(
            Column::right("PORT", |s| {
                part(s, |k| port_of(k).map(|p| p.port.to_string()))
            }),
            6,
        ),
        ops(8),
        sent(9),
        recv(9),
        errs(7),
    ]
}

fn err_of(k: &RowKey) -> Option<&ErrKey> {
    match k {
        RowKey::Err(e) => Some(e),
        _ => None,
    }
}

fn errors() -> Vec<TopColumn> {
    vec![
        key(
            Column::left("ERROR", |s| {
                other_or(s, |k| err_of(k).map(|e| errno_text(e.errno)))
            }),
            13,
        ),
        col(
            Column::left("KIND", |s| {
                part(s, |k| {
                    err_of(k).map(|e| {
                        if is_retry_errno(e.errno) {
                            "retry"
                        } else {
                            "hard"
                        }
                        .into()
                    })
                })
            }),
            5,
        ),
        col(
            Column::left("DIR", |s| {
                part(s, |k| err_of(k).map(|e| dir_text(e.direction).into()))
            }),
            4,
        ),
        col(Column::right("PID", |s| part(s, pid_of)), 7),
        col(Column::left("COMM", |s| part(s, comm_of)), 15),
        figure_col(
            "COUNT",
            SortCol::Errors,
            |s| figure(s.row.fig.ops, s.per_second),
            9,
        ),
        col(Column::right("TOTAL", |s| count(s.row.fig.total_ops)), 9),
    ]
}

fn flags() -> Vec<TopColumn> {
    vec![
        col(
            Column::left("DIR", |s| {
                part(s, |k| match k {
                    RowKey::Flags(d, _) => Some(dir_text(*d).into()),
                    _ => None,
                })
            }),
            4,
        ),
        col(
            Column::left("FLAGS", |s| {
                other_or(s, |k| match k {
                    RowKey::Flags(_, f) => Some(msg_flags_text(*f)),
                    _ => None,
                })
            }),
            36,
        ),
        ops(8),
        sent(9),
        recv(9),
        errs(7),
    ]
}

/// The columns of a table, at a width (`wide`: 120 columns or more).
pub fn columns(kind: Kind, wide: bool) -> Vec<TopColumn> {
    match kind {
        Kind::Processes => processes(wide),
        Kind::Conversations => conversations(wide),
        Kind::Containers => containers(wide),
        Kind::Remotes => remotes(),
        Kind::Ports => ports(),
        Kind::Errors => errors(),
        Kind::Flags => flags(),
    }
}
