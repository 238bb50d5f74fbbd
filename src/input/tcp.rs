//! The pass for issue 24's TCP views: every file whose header has the
//! `TCP Seq` column feeds the cross-machine [`JoinInput`], and every file
//! with `SRTT us`, `CWND` or `Retrans` feeds the [`NetSide`] series. Files
//! without those columns are not read (their header says so); the ones
//! with them are read a second time, beside the main [`scan`](super::scan).

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::discover::Discovery;
use super::reader::{header_columns, read_file};
use crate::analysis::join::JoinInput;
use crate::analysis::netside::NetSide;
use crate::analysis::{Filter, Op};
use crate::schema::columns::Column;

/// What the TCP pass gathered; `None` when no file has the columns.
pub struct TcpScan {
    pub join: Option<JoinInput>,
    pub network: Option<NetSide>,
}

/// Reads the files of `machines` (all when empty) that have TCP columns,
/// with `filter`; `max_segments` bounds the join's memory.
pub fn scan_tcp(
    d: &Discovery,
    filter: &Filter,
    machines: &[String],
    max_segments: usize,
) -> TcpScan {
    let wanted: Vec<(usize, bool, bool)> = d
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| machines.is_empty() || machines.contains(&f.machine_id))
        .filter_map(|(i, f)| {
            let cols = header_columns(&f.path, f.compression);
            let seq = cols.contains(&Column::Seq);
            let net = cols
                .iter()
                .any(|c| matches!(c, Column::Srtt | Column::Cwnd | Column::Retrans));
            (seq || net).then_some((i, seq, net))
        })
        .collect();
    if wanted.is_empty() {
        return TcpScan {
            join: None,
            network: None,
        };
    }
    let budget = JoinInput::budget(max_segments);
    let next = AtomicUsize::new(0);
    let workers = rayon::current_num_threads().min(wanted.len()).max(1);
    let filtering = !filter.is_empty();
    let parts: Vec<(JoinInput, NetSide)> = (0..workers)
        .into_par_iter()
        .map(|_| {
            let mut join = JoinInput::new(budget.clone(), max_segments);
            let mut net = NetSide::default();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, seq, netcols)) = wanted.get(k) else {
                    break;
                };
                let f = &d.files[i];
                read_file(&f.path, f.compression, |row, _| {
                    let mut op = Op::from(row);
                    op.machine = f.machine;
                    if filtering && !filter.matches(&op) {
                        return;
                    }
                    if seq {
                        join.add(&op);
                    }
                    if netcols {
                        net.add(&op);
                    }
                });
            }
            (join, net)
        })
        .collect();
    let mut it = parts.into_iter();
    let (mut join, mut net) = it.next().expect("at least one worker");
    for (j, n) in it {
        join.merge(j);
        net.merge(n);
    }
    TcpScan {
        join: wanted.iter().any(|w| w.1).then_some(join),
        network: wanted.iter().any(|w| w.2).then_some(net),
    }
}
