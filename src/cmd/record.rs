//! `nwtrace record`: run control from start to summary.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBufferBuilder;

use crate::UsageError;
use crate::capture::event::NetEvent;
use crate::capture::loader::{self, Backend, KernelFacts, LoadOptions};
use crate::capture::probe;
use crate::cli::RecordArgs;
use crate::output::layout::{create_run_dir, default_machine_id, validate_component};
use crate::output::manifest::{Manifest, ManifestFile};
use crate::output::row::RowFormatter;
use crate::output::sink::{CsvSink, Retention, SinkError};
use crate::timefmt::{WallClock, iso8601, now_epoch_secs, run_folder_name};

/// How long the consumer sleeps between drains when no wakeup comes. The
/// BPF side only wakes it when the ring is a quarter full, so this bounds
/// how stale the files can be.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Rows reach the files at least this often, so a SIGKILL loses at most
/// about this much.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What the ring buffer callback needs, behind one RefCell.
struct Consumer {
    sink: CsvSink,
    formatter: RowFormatter,
    malformed: u64,
    failure: Option<SinkError>,
}

impl Consumer {
    fn on_record(&mut self, data: &[u8]) -> i32 {
        if self.failure.is_some() {
            // The sink is broken: every later record is a lost row.
            self.sink.count_lost(1);
            return 0;
        }
        match NetEvent::try_from(data) {
            Ok(ev) => {
                let formatter = &mut self.formatter;
                if let Err(e) = self.sink.append_row(|buf| formatter.write_row(buf, &ev)) {
                    self.failure = Some(e);
                }
            }
            Err(_) => self.malformed += 1,
        }
        0
    }

    fn flush(&mut self) {
        if self.failure.is_none()
            && let Err(e) = self.sink.flush()
        {
            self.failure = Some(e);
        }
    }
}

/// Why the tracing loop ended.
enum Stop {
    Signal(&'static str),
    DurationElapsed,
    RingError(String),
    /// The sink failed; the error itself is in `Consumer::failure`.
    WriteError,
}

/// The signal that asked the run to stop, 0 for none yet.
struct StopSignal(Arc<AtomicUsize>);

impl StopSignal {
    fn install() -> Result<Self> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let seen = Arc::new(AtomicUsize::new(0));
        let interrupted = Arc::new(AtomicBool::new(false));
        // Registered before the flag setter, so it sees the flag as the
        // previous SIGINT left it: the second Ctrl-C exits at once. Every
        // write so far was whole rows, so no file ends in part of one.
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&interrupted))
            .context("installing the SIGINT handler")?;
        signal_hook::flag::register(SIGINT, interrupted)
            .context("installing the SIGINT handler")?;
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register_usize(sig, Arc::clone(&seen), sig as usize)
                .context("installing signal handlers")?;
        }
        Ok(StopSignal(seen))
    }

    fn received(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Relaxed) as i32 {
            0 => None,
            libc::SIGINT => Some("SIGINT"),
            libc::SIGTERM => Some("SIGTERM"),
            libc::SIGHUP => Some("SIGHUP"),
            _ => Some("signal"),
        }
    }
}

/// Checks everything the user typed before anything is touched.
struct Validated {
    machine_id: String,
    timestamp: String,
}

fn validate(args: &RecordArgs, start_secs: i64) -> Result<Validated, UsageError> {
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
    for pid in &args.pids {
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            return Err(UsageError::Message(format!(
                "no process has pid {pid}; start it first, or leave out --pid to trace everything"
            )));
        }
    }
    if args.output_dir.exists() && !args.output_dir.is_dir() {
        return Err(UsageError::Message(format!(
            "--output-dir {} is not a folder; pick a folder",
            args.output_dir.display()
        )));
    }
    Ok(Validated {
        machine_id,
        timestamp,
    })
}

pub fn record(args: RecordArgs, verbose: u8) -> Result<ExitCode> {
    let start_secs = now_epoch_secs();
    let Validated {
        machine_id,
        timestamp,
    } = validate(&args, start_secs)?;

    probe::check_privileges()?;
    probe::check_btf()?;
    let tracefs = probe::ensure_tracefs()?;
    let facts = KernelFacts::probe()?;

    loader::route_libbpf_log(verbose);
    let mut slots = loader::object_slots();
    let candidates = Backend::candidates(args.backend);
    let opts = LoadOptions {
        tracefs: &tracefs,
        pids: &args.pids,
        comms: &args.comms,
        ring_size: args.ring_size,
    };
    let (backend, mut tracer) =
        match loader::start_first_working(&mut slots, &candidates, &facts, &opts) {
            Ok(started) => started,
            Err(failures) => {
                let why = failures
                    .iter()
                    .map(|(b, e)| format!("{}: {}", b.name(), loader::one_line(e)))
                    .collect::<Vec<_>>()
                    .join("; ");
                anyhow::bail!(
                    "no backend works on kernel {} ({why}); run nwtrace doctor for details",
                    probe::kernel_release()
                );
            }
        };
    if verbose > 0 {
        eprintln!("nwtrace: backend {} ({:?})", backend.name(), facts);
    }

    let run_dir = create_run_dir(&args.output_dir, &machine_id, &timestamp)?;
    let manifest_dir = run_dir
        .fd
        .try_clone()
        .context("duplicating the run folder's fd")?;
    let retention = Retention {
        max_files: args.max_files.map(|n| n as usize),
        max_bytes: args.max_size,
    };
    let sink = CsvSink::create(run_dir, args.rotate_size, retention)?;
    let out_dir = sink.dir().to_path_buf();
    let mut manifest = Manifest {
        nwtrace_version: env!("CARGO_PKG_VERSION"),
        command_line: std::env::args().collect(),
        pid: std::process::id(),
        kernel: probe::kernel_release(),
        backend: backend.name().to_string(),
        machine_id,
        started_at: iso8601(start_secs),
        stopped_at: None,
        finalized: false,
        exit_reason: None,
        files: sink.files().to_vec(),
        rows_written: 0,
        events_lost: 0,
        probes_missed: 0,
        rows_lost: 0,
        malformed_records: 0,
    };
    let manifest_file = ManifestFile::create(manifest_dir, &out_dir, &manifest)?;

    let consumer = RefCell::new(Consumer {
        sink,
        formatter: RowFormatter::new(WallClock::sample()),
        malformed: 0,
        failure: None,
    });

    let stop = StopSignal::install()?;
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&tracer.skel.maps.events, |data: &[u8]| {
            consumer.borrow_mut().on_record(data)
        })
        .context("setting up the ring buffer consumer")?;
    let ring = builder
        .build()
        .context("setting up the ring buffer consumer")?;

    eprintln!(
        "Tracing TCP/UDP sends and receives (backend: {}) into {} ... Hit Ctrl-C to end.",
        backend.name(),
        out_dir.display()
    );

    let began = Instant::now();
    let deadline = args.duration.map(|d| began + d);
    let mut last_flush = Instant::now();
    let stop_cause = loop {
        // poll() drains only after a wakeup, and submissions wake the
        // reader only past a quarter of the ring: consume() after every
        // timeout is what drains a trickle of events, or a ring so small
        // that it fills before the BPF side looks at its fill level.
        let drained = ring.poll(POLL_INTERVAL).and_then(|()| ring.consume());
        if let Err(e) = drained
            && e.kind() != libbpf_rs::ErrorKind::Interrupted
        {
            // EINTR is a signal arriving; anything else is a real failure.
            break Stop::RingError(e.to_string());
        }
        if consumer.borrow().failure.is_some() {
            break Stop::WriteError;
        }
        if last_flush.elapsed() >= FLUSH_INTERVAL {
            let mut c = consumer.borrow_mut();
            c.flush();
            c.formatter.set_clock(WallClock::sample());
            last_flush = Instant::now();
        }
        if let Some(sig) = stop.received() {
            break Stop::Signal(sig);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Stop::DurationElapsed;
        }
    };

    // Detach first, then drain: every event produced is in the ring now.
    let probes_missed = tracer.kretprobes.missed();
    tracer.detach();
    let _ = ring.consume();
    drop(ring);
    let lost = loader::lost_events(&tracer.skel)?;
    let mut consumer = consumer.into_inner();
    consumer.flush();
    // A write that failed in the final flush still decides the outcome.
    let stop_cause = if consumer.failure.is_some() {
        Stop::WriteError
    } else {
        stop_cause
    };
    let failed = matches!(stop_cause, Stop::RingError(_) | Stop::WriteError);
    let reason = match (&stop_cause, &consumer.failure) {
        (Stop::Signal(sig), _) => sig.to_string(),
        (Stop::DurationElapsed, _) => "duration elapsed".to_string(),
        (Stop::RingError(e), _) => format!("ring buffer error: {e}"),
        (Stop::WriteError, Some(failure)) => format!("write error: {failure}"),
        (Stop::WriteError, None) => unreachable!("a write error has a failure"),
    };

    let sink = &consumer.sink;
    manifest.stopped_at = Some(iso8601(now_epoch_secs()));
    manifest.finalized = true;
    manifest.exit_reason = Some(reason.clone());
    manifest.files = sink.files().to_vec();
    manifest.rows_written = sink.rows();
    manifest.events_lost = lost;
    manifest.probes_missed = probes_missed;
    manifest.rows_lost = sink.rows_lost();
    manifest.malformed_records = consumer.malformed;
    let manifest_error = manifest_file.update(&manifest).err();

    let files: Vec<&str> = sink
        .files()
        .iter()
        .filter(|f| !f.deleted)
        .map(|f| f.name.as_str())
        .collect();
    eprintln!(
        "nwtrace: {} rows in {} file{} ({}) under {}; {} events lost{}",
        sink.rows(),
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        files.join(", "),
        sink.dir().display(),
        lost,
        if lost > 0 {
            " (the ring buffer was full: try a larger --ring-size)"
        } else {
            ""
        }
    );
    if probes_missed > 0 {
        eprintln!(
            "nwtrace: the kernel missed {probes_missed} kretprobe returns (more calls in flight than maxactive)"
        );
    }
    if consumer.malformed > 0 {
        eprintln!("nwtrace: skipped {} malformed records", consumer.malformed);
    }
    if let Some(e) = manifest_error {
        eprintln!(
            "nwtrace: could not finalise {}: {e}",
            manifest_file.path().display()
        );
    }
    if failed {
        eprintln!(
            "nwtrace: stopped on {reason}; {} captured rows could not be written (every row written is whole)",
            sink.rows_lost()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
