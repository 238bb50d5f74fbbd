//! `--metrics ADDR:PORT`: the run's health as Prometheus text on
//! `/metrics`, served by a small HTTP thread. The capture never waits for
//! it: events are counted in plain integers, and pushed into the shared
//! counters (atomics) once per tick; the HTTP thread only reads them.
//! Labels are bounded: direction and protocol, the BPF program's name,
//! and version, commit and backend on an info metric. No pid or comm
//! label.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use anyhow::{Context, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::capture::consumer::{CaptureHealth, Consumer, StopReason};
use crate::capture::event::{Direction, NetEvent, Protocol};
use crate::capture::sampling::UnwrittenFlow;
use crate::capture::session::ProgramStats;
use crate::output::csv::CsvConsumer;
use crate::output::sink::CsvSink;
use crate::timefmt::WallClock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    direction: String,
    protocol: String,
}

/// Why operations were not written: `ring_full`, `sampled_out`,
/// `rate_limited`, `filtered`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// One of nwtrace's BPF programs, by its name (a fixed set: the
/// programs of the backend, at most about 70).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
    backend: String,
}

/// The counters the HTTP thread reads.
struct Shared {
    operations: Family<OpLabels, Counter>,
    bytes: Family<OpLabels, Counter>,
    events_captured: Counter,
    events_lost: Counter,
    malformed_records: Counter,
    rows_written: Counter,
    rows_lost: Counter,
    bytes_written: Counter,
    files_created: Counter,
    files: Gauge,
    not_written: Family<ReasonLabels, Counter>,
    program_runs: Family<ProgramLabels, Counter>,
    program_run_ns: Family<ProgramLabels, Counter>,
}

fn index(event: &NetEvent) -> usize {
    let d = usize::from(event.direction == Direction::Receive);
    let p = usize::from(event.protocol == Protocol::Udp);
    d * 2 + p
}

/// Totals already pushed, to push only the difference.
#[derive(Default)]
struct Pushed {
    ops: [u64; 4],
    bytes: [u64; 4],
    health: CaptureHealth,
    rows: u64,
    rows_lost: u64,
    bytes_written: u64,
    files: u64,
    /// ring_full, sampled_out, rate_limited, filtered
    not_written: [u64; 4],
    /// Per program: runs and run time.
    programs: HashMap<String, (u64, u64)>,
}

/// Wraps the CSV consumer: counts each event, then passes it on.
pub struct Metered<'a> {
    pub csv: &'a mut CsvConsumer,
    shared: Arc<Shared>,
    ops: [u64; 4],
    bytes: [u64; 4],
    pushed: Pushed,
    /// As `Pushed::not_written`.
    not_written: [u64; 4],
}

const NOT_WRITTEN: [&str; 4] = ["ring_full", "sampled_out", "rate_limited", "filtered"];

fn bump(counter: &Counter, now: u64, before: &mut u64) {
    if now > *before {
        counter.inc_by(now - *before);
        *before = now;
    }
}

impl Metered<'_> {
    fn push(&mut self, health: Option<&CaptureHealth>) {
        let s = &self.shared;
        // The label values are the row's spellings.
        for (d, dir) in Direction::ALL.into_iter().enumerate() {
            for (p, proto) in Protocol::ALL.into_iter().enumerate() {
                let i = d * 2 + p;
                let labels = OpLabels {
                    direction: dir.as_str().into(),
                    protocol: proto.as_str().into(),
                };
                bump(
                    &s.operations.get_or_create(&labels),
                    self.ops[i],
                    &mut self.pushed.ops[i],
                );
                bump(
                    &s.bytes.get_or_create(&labels),
                    self.bytes[i],
                    &mut self.pushed.bytes[i],
                );
            }
        }
        if let Some(h) = health {
            self.not_written = [h.events_lost, h.sampled_out, h.rate_limited, h.filtered];
        }
        for (i, reason) in NOT_WRITTEN.into_iter().enumerate() {
            let labels = ReasonLabels {
                reason: reason.into(),
            };
            bump(
                &s.not_written.get_or_create(&labels),
                self.not_written[i],
                &mut self.pushed.not_written[i],
            );
        }
        if let Some(h) = health {
            let p = &mut self.pushed.health;
            bump(&s.events_captured, h.events, &mut p.events);
            bump(&s.events_lost, h.events_lost, &mut p.events_lost);
            bump(
                &s.malformed_records,
                h.malformed_records,
                &mut p.malformed_records,
            );
        }
        let sink: &CsvSink = self.csv.sink();
        bump(&s.rows_written, sink.rows(), &mut self.pushed.rows);
        bump(&s.rows_lost, sink.rows_lost(), &mut self.pushed.rows_lost);
        let written: u64 = sink.files().iter().map(|f| f.bytes).sum();
        bump(&s.bytes_written, written, &mut self.pushed.bytes_written);
        bump(
            &s.files_created,
            sink.files().len() as u64,
            &mut self.pushed.files,
        );
        s.files
            .set(sink.files().iter().filter(|f| !f.deleted).count() as i64);
    }
}

impl Consumer for Metered<'_> {
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason> {
        let i = index(event);
        self.ops[i] += 1;
        self.bytes[i] += u64::try_from(event.ret).unwrap_or(0);
        self.csv.on_event(event, clock)
    }

    fn on_tick(&mut self, health: &CaptureHealth) -> ControlFlow<StopReason> {
        let r = self.csv.on_tick(health);
        self.push(Some(health));
        r
    }

    fn on_unwritten(
        &mut self,
        flows: &[UnwrittenFlow],
        clock: &WallClock,
    ) -> ControlFlow<StopReason> {
        self.csv.on_unwritten(flows, clock)
    }

    fn on_programs(&mut self, programs: &[ProgramStats]) {
        self.csv.on_programs(programs);
        let s = &self.shared;
        for p in programs {
            let labels = ProgramLabels {
                program: p.name.clone(),
            };
            let pushed = self.pushed.programs.entry(p.name.clone()).or_default();
            bump(
                &s.program_runs.get_or_create(&labels),
                p.run_count,
                &mut pushed.0,
            );
            bump(
                &s.program_run_ns.get_or_create(&labels),
                p.run_time_ns,
                &mut pushed.1,
            );
        }
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        let r = self.csv.finish();
        self.push(None);
        r
    }
}

/// Listens on `addr`, and only there: done before anything is loaded or
/// written, so that a taken port fails the start cleanly.
pub fn bind(addr: SocketAddr) -> Result<tiny_http::Server> {
    tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("--metrics {addr}: cannot listen there"))
}

/// Serves `/metrics` on `server` from a thread; returns the metered
/// wrapper for the CSV consumer.
pub fn serve<'a>(
    server: tiny_http::Server,
    backend: &str,
    csv: &'a mut CsvConsumer,
) -> Result<Metered<'a>> {
    let shared = Arc::new(Shared {
        operations: Family::default(),
        bytes: Family::default(),
        events_captured: Counter::default(),
        events_lost: Counter::default(),
        malformed_records: Counter::default(),
        rows_written: Counter::default(),
        rows_lost: Counter::default(),
        bytes_written: Counter::default(),
        files_created: Counter::default(),
        files: Gauge::default(),
        not_written: Family::default(),
        program_runs: Family::default(),
        program_run_ns: Family::default(),
    });
    let mut registry = Registry::with_prefix("nwtrace");
    let s = &shared;
    // A gauge of 1, not an OpenMetrics info: Prometheus' text parser
    // (and promtool) know no "info" type.
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: env!("NWTRACE_GIT_COMMIT").to_string(),
            backend: backend.to_string(),
        })
        .set(1);
    registry.register(
        "build_info",
        "nwtrace's version, commit and capture backend",
        build,
    );
    registry.register(
        "operations",
        "Sends and receives seen",
        s.operations.clone(),
    );
    registry.register(
        "bytes",
        "Bytes sent and received (successful operations)",
        s.bytes.clone(),
    );
    registry.register(
        "events_captured",
        "Events the capture delivered",
        s.events_captured.clone(),
    );
    registry.register(
        "events_lost",
        "Events lost because the ring buffer was full",
        s.events_lost.clone(),
    );
    registry.register(
        "malformed_records",
        "Ring buffer records skipped as malformed",
        s.malformed_records.clone(),
    );
    registry.register("rows_written", "CSV rows written", s.rows_written.clone());
    registry.register(
        "rows_lost",
        "Rows captured but not written (a write error)",
        s.rows_lost.clone(),
    );
    registry.register(
        "file_bytes_written",
        "Bytes written to the run's files (compressed if --compress)",
        s.bytes_written.clone(),
    );
    registry.register(
        "files_created",
        "Files this run created",
        s.files_created.clone(),
    );
    registry.register("files", "Files of this run on disk now", s.files.clone());
    registry.register(
        "operations_not_written",
        "Operations seen but not written, by reason: ring_full (the ring buffer was full), sampled_out (--sample), rate_limited (--rate-limit), filtered (the row filters)",
        s.not_written.clone(),
    );
    registry.register(
        "bpf_program_runs",
        "Runs of each of nwtrace's BPF programs, counted while kernel.bpf_stats_enabled is 1 (the series appear once it is)",
        s.program_runs.clone(),
    );
    registry.register(
        "bpf_program_run_time_ns",
        "Nanoseconds each of nwtrace's BPF programs ran, counted while kernel.bpf_stats_enabled is 1; rate() of this over rate() of bpf_program_runs is the average cost of a run",
        s.program_run_ns.clone(),
    );

    std::thread::Builder::new()
        .name("nwtrace-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let mut body = String::new();
                    if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                        body.clear();
                    }
                    let header = tiny_http::Header::from_bytes(
                        "Content-Type",
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(to_prometheus_text(&body)).with_header(header)
                } else {
                    tiny_http::Response::from_string("nwtrace: see /metrics\n")
                        .with_status_code(404)
                };
                // A client that went away is its own business.
                let _ = request.respond(response);
            }
        })
        .context("starting the metrics thread")?;
    Ok(Metered {
        csv,
        shared,
        ops: [0; 4],
        bytes: [0; 4],
        pushed: Pushed::default(),
        not_written: [0; 4],
    })
}

/// OpenMetrics text (what prometheus-client writes) as Prometheus' own
/// text format 0.0.4, which every scraper and promtool read: a counter's
/// HELP and TYPE name its `_total` samples, and there is no `# EOF`.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 64);
    for line in open_metrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_text_names_counters_by_their_samples() {
        let om = "# HELP a_rows Rows.\n# TYPE a_rows counter\na_rows_total 3\n# HELP a_files Files.\n# TYPE a_files gauge\na_files 1\n# EOF\n";
        assert_eq!(
            super::to_prometheus_text(om),
            "# HELP a_rows_total Rows.\n# TYPE a_rows_total counter\na_rows_total 3\n# HELP a_files Files.\n# TYPE a_files gauge\na_files 1\n"
        );
    }
}
