//! `nwtrace record`: a capture session into the CSV writer, with the run
//! folder, the manifest and the summary.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::UsageError;
use crate::attribution::columns::Columns;
use crate::capture::consumer::{Consumer, NullConsumer, StopReason};
use crate::capture::facts;
use crate::capture::sampling::LossByReason;
use crate::capture::session::{self, Outcome, RunStats, Session};
use crate::cli::{DEFAULT_OUTPUT_DIR, OutputArgs, RecordArgs};
use crate::cmd::signals::{SecondInterrupt, StopSignals};
use crate::output::csv::CsvConsumer;
use crate::output::dir::SafeDir;
use crate::output::journal::{self, Journal, RunRef};
use crate::output::layout::{create_run_dir, default_machine_id, validate_component};
use crate::output::manifest::{self, Manifest, ManifestFile};
use crate::output::on_close::{FileKind, OnClose};
use crate::output::row::RowFormatter;
use crate::output::sink::{CsvSink, MaxAge, Retention};
use crate::timefmt::{iso8601, now_epoch_secs, run_folder_name};

/// How long the end of a run waits for queued --on-close commands (the CSV
/// files, then the manifest), before it stops the running one. A hung
/// command must not keep a stopped tracer alive.
const ON_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The run folder's names, checked before anything is touched.
pub struct RunNames {
    pub machine_id: String,
    pub timestamp: String,
}

/// Checks the output options: exit 2 on a mistake, before any probe is
/// loaded or any folder made.
pub fn validate_output(args: &OutputArgs, start_secs: i64) -> Result<RunNames, UsageError> {
    let machine_id = match &args.machine_id {
        Some(id) => {
            validate_component("--machine-id", id)?;
            id.clone()
        }
        None => default_machine_id()?,
    };
    let timestamp = match &args.timestamp {
        Some(ts) => {
            validate_component("--timestamp", ts)?;
            ts.clone()
        }
        None => run_folder_name(start_secs),
    };
    let output_dir = output_dir(args);
    if output_dir.exists() && !output_dir.is_dir() {
        return Err(UsageError::Message(format!(
            "--output-dir {} is not a folder; pick a folder",
            output_dir.display()
        )));
    }
    manifest::reserve_for(&retention(args), args.rotate_size).map_err(UsageError::Message)?;
    Ok(RunNames {
        machine_id,
        timestamp,
    })
}

fn retention(args: &OutputArgs) -> Retention {
    Retention {
        max_files: args.max_files.map(|n| n as usize),
        max_bytes: args.max_size,
    }
}

/// The output folder, or record's default.
fn output_dir(args: &OutputArgs) -> &Path {
    args.output_dir
        .as_deref()
        .unwrap_or(Path::new(DEFAULT_OUTPUT_DIR))
}

/// `--pid` must name a running process (docs/record.md).
pub fn validate_pids(pids: &[u32]) -> Result<(), UsageError> {
    for pid in pids {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(UsageError::Message(format!(
                "no process has pid {pid}; start it first, or leave out --pid to trace everything"
            )));
        }
    }
    Ok(())
}

/// A run being recorded: its CSV consumer, its manifest file, and the
/// manifest's fields so far. `top --record` and `watch --output-dir` use
/// it too, so their files are exactly `record`'s.
pub struct Recording {
    pub csv: CsvConsumer,
    manifest: Manifest,
    manifest_file: ManifestFile,
}

impl Recording {
    /// Makes the run folder, the first CSV file and the manifest.
    pub fn create(
        args: &OutputArgs,
        names: RunNames,
        backend: &str,
        start_secs: i64,
        columns: Columns,
    ) -> Result<Recording> {
        let run_dir = create_run_dir(output_dir(args), &names.machine_id, &names.timestamp)?;
        let manifest_dir: SafeDir = run_dir
            .try_clone()
            .context("duplicating the run folder's descriptor")?;
        let retention = retention(args);
        // validate_output refused limits past the largest reserve.
        let reserve =
            manifest::reserve_for(&retention, args.rotate_size).unwrap_or(manifest::MAX_RESERVE);
        let mut sink = CsvSink::create_with_header(
            run_dir,
            args.rotate_size,
            retention,
            args.compress,
            columns.header(),
        )?;
        if let Some(age) = args.max_age {
            // Older runs are looked for beside this one, in the machine
            // folder; if it cannot be opened, only this run's files go.
            let machine = SafeDir::open_user_path(output_dir(args))
                .ok()
                .and_then(|o| o.open_existing_dir(&names.machine_id))
                .map(|m| (m, names.timestamp.clone()));
            sink.set_max_age(MaxAge { age, machine });
        }
        let mut manifest = Manifest {
            manifest_version: manifest::MANIFEST_VERSION,
            nwtrace_version: env!("CARGO_PKG_VERSION").to_string(),
            command_line: std::env::args().collect(),
            pid: std::process::id(),
            kernel: facts::kernel_release(),
            backend: Some(backend.to_string()),
            machine_id: names.machine_id,
            started_at: Some(iso8601(start_secs)),
            stopped_at: None,
            finalized: false,
            exit_reason: None,
            files: Vec::new(),
            deleted_files: Default::default(),
            rows_written: 0,
            events_captured: 0,
            events_lost: 0,
            uring_requests_lost: 0,
            probes_missed: 0,
            rows_lost: 0,
            malformed_records: 0,
            programs: Vec::new(),
            columns: columns.all_names(),
            on_close: None,
            loss_by_reason: None,
        };
        manifest.set_files(sink.files());
        let manifest_file = ManifestFile::create(manifest_dir, &manifest, reserve)?;
        let mut csv = CsvConsumer::with_formatter(sink, RowFormatter::with_columns(columns));
        if let Some(command) = &args.on_close {
            // This run's journal, locked while it runs; then what earlier
            // runs in the machine folder left (docs/semantics.md).
            let journal = Journal::create(manifest_file.dir(), manifest_file.name())?;
            let catch_up = SafeDir::open_user_path(output_dir(args))
                .ok()
                .and_then(|o| o.open_existing_dir(&manifest.machine_id))
                .map(|machine| {
                    let this = RunRef {
                        run: names.timestamp.clone(),
                        manifest: manifest_file.name().to_string(),
                    };
                    journal::pending(&machine, &this)
                })
                .unwrap_or_default();
            if !catch_up.is_empty() {
                log::info!(
                    "nwtrace: --on-close: handing over {} file(s) of earlier runs first",
                    catch_up.len()
                );
            }
            let on_close = OnClose::start(command, journal, catch_up);
            // The manifest names the journal from the start, so a run that
            // is killed can still be caught up.
            manifest.on_close = Some(on_close.stats());
            if let Err(e) = manifest_file.update(&manifest) {
                log::error!(
                    "nwtrace: could not update {}: {e}",
                    manifest_file.path().display()
                );
            }
            csv = csv.with_on_close(on_close);
        }
        Ok(Recording {
            csv,
            manifest,
            manifest_file,
        })
    }

    pub fn dir(&self) -> &Path {
        self.csv.sink().dir()
    }

    /// Finalises the manifest from the run's statistics, and returns it.
    /// A failure to write it is logged: the rows are what matters.
    pub fn finalize(&mut self, reason: &StopReason, stats: &RunStats) -> &Manifest {
        let sink = self.csv.sink();
        let m = &mut self.manifest;
        m.stopped_at = Some(iso8601(now_epoch_secs()));
        m.finalized = true;
        m.exit_reason = Some(reason.describe());
        m.set_files(sink.files());
        m.rows_written = sink.rows();
        m.events_captured = stats.events;
        m.events_lost = stats.events_lost;
        m.uring_requests_lost = stats.uring_requests_lost;
        m.probes_missed = stats.probes_missed;
        m.rows_lost = sink.rows_lost();
        m.malformed_records = stats.malformed_records;
        m.programs = stats.programs.clone();
        m.loss_by_reason = Some(LossByReason::new(
            stats.events_lost,
            &stats.left_out,
            &stats.thinning,
        ));
        let grace_ends = Instant::now() + ON_CLOSE_GRACE;
        if let Some(on_close) = self.csv.on_close() {
            // The CSV files first: the manifest then says how that went.
            on_close.wait(grace_ends);
            m.on_close = Some(on_close.stats());
        }
        if let Err(e) = self.manifest_file.update(m) {
            log::error!(
                "nwtrace: could not finalise {}: {e}",
                self.manifest_file.path().display()
            );
        }
        let summary_path = self.write_summary(stats);
        let manifest_path = self.manifest_file.path();
        if let Some(on_close) = self.csv.on_close_mut() {
            on_close.hand_over(manifest_path, FileKind::Manifest);
            if let Some(p) = summary_path {
                on_close.hand_over(p, FileKind::Summary);
            }
            on_close.wait(grace_ends);
        }
        &self.manifest
    }
}

impl Recording {
    /// Builds `summary.json` from every row written (see `summary`).
    pub fn enable_summary(&mut self) {
        self.csv.enable_summary();
    }

    /// Writes the run summary beside the manifest, atomically; its path,
    /// or `None` (logged) when there is none to write.
    fn write_summary(&mut self, stats: &RunStats) -> Option<std::path::PathBuf> {
        let builder = self.csv.take_summary()?;
        let unwritten = self.csv.take_unwritten();
        let sink = self.csv.sink();
        let manifest_name = self.manifest_file.name().to_string();
        let name = crate::output::summary::summary_name(&manifest_name)?;
        let mut doc = match builder.build(
            sink.files(),
            sink.rows_lost(),
            &self.manifest.machine_id,
            &manifest_name,
        ) {
            Ok(doc) => doc,
            Err(why) => {
                log::warn!(
                    "nwtrace: no {name}: {why} (nwtrace summarize makes one from the files)"
                );
                return None;
            }
        };
        if stats.thinning.is_on() || unwritten.is_some() {
            let acc = unwritten.unwrap_or_default();
            let written = doc.aggregate.totals.clone();
            doc.unwritten = Some(acc.into_doc(&stats.thinning, &stats.left_out, &written));
        }
        if let Some(why) = doc.unusable() {
            log::warn!("nwtrace: {name} is not exact ({why}): report will read this run's CSV");
        } else if !doc.bounded.is_empty() {
            log::info!(
                "nwtrace: {name} is bounded (its {} tables keep their heaviest keys)",
                doc.bounded.join(", ")
            );
        }
        let dir = self.manifest_file.dir();
        match crate::output::summary::write_atomically(dir, &name, &doc.to_json()) {
            Ok(()) => Some(dir.path().join(name)),
            Err(e) => {
                log::error!(
                    "nwtrace: could not write {}: {e}",
                    dir.path().join(&name).display()
                );
                None
            }
        }
    }
}

pub fn record(args: RecordArgs) -> Result<ExitCode> {
    let start_secs = now_epoch_secs();
    let names = validate_output(&args.output, start_secs)?;
    validate_pids(&args.capture.pids)?;
    let metrics_server = args.metrics.map(crate::output::metrics::bind).transpose()?;

    let session = Session::start(&args.capture.options()?)?;
    let backend = session.backend().name;
    let columns = args.capture.columns.unwrap_or_default();
    let mut recording = Recording::create(&args.output, names, backend, start_secs, columns)?;
    if !args.discard_rows {
        recording.enable_summary();
    }
    let signals = StopSignals::install(SecondInterrupt::Exits)?;

    // A stable interface (README): scripts wait for a stderr line that
    // starts with "Tracing".
    log::info!(
        "Tracing TCP/UDP sends and receives (backend: {backend}) into {} ... Hit Ctrl-C to end.",
        recording.dir().display()
    );

    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut discard = NullConsumer::default();
    let mut metered;
    let consumer: &mut dyn Consumer = if args.discard_rows {
        &mut discard
    } else if let Some(server) = metrics_server {
        metered = crate::output::metrics::serve(server, backend, &mut recording.csv)?;
        &mut metered
    } else {
        &mut recording.csv
    };
    let Outcome { reason, stats } = session.run(consumer, || {
        if let Some(sig) = signals.received() {
            return Some(StopReason::Signal(sig));
        }
        deadline
            .is_some_and(|d| Instant::now() >= d)
            .then_some(StopReason::DurationElapsed)
    })?;

    let dir = recording.dir().to_path_buf();
    let manifest = recording.finalize(&reason, &stats);
    summarize(manifest, &dir);
    if reason.is_failure() {
        log::error!(
            "nwtrace: stopped on {}; {} captured rows could not be written (every row written is whole)",
            reason.describe(),
            manifest.rows_lost
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's summary on stderr, for a person; scripts read the manifest.
fn summarize(m: &Manifest, dir: &Path) {
    let files: Vec<&str> = m
        .files
        .iter()
        .filter(|f| !f.deleted)
        .map(|f| f.name.as_str())
        .collect();
    log::info!(
        "nwtrace: {} rows in {} file{} ({}) under {}; {} events lost{}",
        m.rows_written,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        files.join(", "),
        dir.display(),
        m.events_lost,
        session::lost_hint(m.events_lost, m.uring_requests_lost)
    );
    if m.probes_missed > 0 {
        log::warn!(
            "nwtrace: the kernel missed {} kretprobe returns (more calls in flight than maxactive)",
            m.probes_missed
        );
    }
    if m.malformed_records > 0 {
        log::warn!("nwtrace: skipped {} malformed records", m.malformed_records);
    }
    if let Some(l) = m
        .loss_by_reason
        .as_ref()
        .filter(|l| l.sample.is_some() || l.rate_limit.is_some())
    {
        log::info!(
            "nwtrace: not written but counted in the summary's totals: {} operations sampled out, {} over the rate limit{}",
            l.left_out.sampled_out,
            l.left_out.rate_limited,
            if l.left_out.unwritten_overflow_ops > 0 {
                format!(
                    " ({} of them found the kernel's table full: per-process figures are lower bounds)",
                    l.left_out.unwritten_overflow_ops
                )
            } else {
                String::new()
            }
        );
    }
}
