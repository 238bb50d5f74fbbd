//! `--format csv`: one table of the report as CSV (RFC 4180, exact
//! numbers), chosen with `--csv-table`.

use super::model::{CgroupOut, ContainerOut, NetnsOut, Report};
use super::tables;

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

pub fn render(r: &Report, table: CsvTable) -> Vec<u8> {
    let multi = false;
    let records = match table {
        CsvTable::Processes => tables::processes(multi).csv(&r.processes),
        CsvTable::Commands => tables::commands().csv(&r.commands),
        CsvTable::Conversations => tables::conversations(multi, false).csv(&r.conversations),
        CsvTable::Endpoints => tables::endpoints().csv(&r.remote_endpoints),
        CsvTable::Ports => tables::ports().csv(&r.ports),
        CsvTable::Errors => tables::errors(multi).csv(&r.errors),
        CsvTable::Series => series(r),
        CsvTable::Containers => {
            tables::groups::<ContainerOut>(multi).csv(r.containers.iter().flatten())
        }
        CsvTable::Cgroups => tables::groups::<CgroupOut>(multi).csv(r.cgroups.iter().flatten()),
        CsvTable::Netns => tables::groups::<NetnsOut>(multi).csv(r.netns.iter().flatten()),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    for record in records {
        let _ = w.write_record(&record);
    }
    w.into_inner().unwrap_or_default()
}

/// The time series: every bucket, exact (the text thins it out).
fn series(r: &Report) -> Vec<Vec<String>> {
    let header = [
        "time",
        "bucket_seconds",
        "sends",
        "receives",
        "bytes_sent",
        "bytes_received",
        "retry_errors",
        "hard_errors",
    ];
    let rows = r.series.points.iter().map(|p| {
        vec![
            p.t.clone(),
            r.series.bucket_seconds.to_string(),
            p.sends.to_string(),
            p.receives.to_string(),
            p.bytes_sent.to_string(),
            p.bytes_received.to_string(),
            p.retry_errors.to_string(),
            p.hard_errors.to_string(),
        ]
    });
    std::iter::once(header.map(String::from).to_vec())
        .chain(rows)
        .collect()
}
