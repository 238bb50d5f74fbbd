//! `nwtrace record`: run control from start to summary.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBufferBuilder;

use crate::UsageError;
use crate::cli::{BackendChoice, RecordArgs};
use crate::event::NetEvent;
use crate::layout::{create_run_dir, default_machine_id, validate_component};
use crate::loader::{self, Backend, LoadOptions};
use crate::probe;
use crate::row::RowFormatter;
use crate::sink::{CsvSink, SinkError};
use crate::timefmt::{WallClock, now_epoch_secs, run_folder_name};

/// How long the consumer sleeps between drains when no wakeup comes. The
/// BPF side only wakes it when the ring is a quarter full, so this bounds
/// how stale the files can be.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Rows reach the files at least this often.
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

fn install_signal_handlers() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    // Registered first, so it sees the flag before the first signal sets
    // it: a second Ctrl-C exits at once (every write so far was whole rows).
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&stop),
    )
    .context("installing the SIGINT handler")?;
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    Ok(stop)
}

fn choose_backend(choice: BackendChoice, tracefs: &std::path::Path) -> Result<Backend> {
    let has_sock_tp = probe::has_tracepoint(tracefs, "sock", "sock_send_length")
        && probe::has_tracepoint(tracefs, "sock", "sock_recv_length");
    match choice {
        BackendChoice::Auto | BackendChoice::Tracepoint if has_sock_tp => Ok(Backend::Tracepoint),
        _ => anyhow::bail!(
            "the tracepoint backend needs sock:sock_send_length and sock:sock_recv_length (kernel 6.3 or later), and kernel {} has none",
            probe::kernel_release()
        ),
    }
}

pub fn record(args: RecordArgs, verbose: u8) -> Result<ExitCode> {
    // Usage checks first: nothing is attached or written on bad input.
    let machine_id = match &args.machine_id {
        Some(id) => {
            validate_component("--machine-id", id).map_err(UsageError::from)?;
            id.clone()
        }
        None => default_machine_id().map_err(UsageError::from)?,
    };
    let start_secs = now_epoch_secs();
    let timestamp = match &args.timestamp {
        Some(ts) => {
            validate_component("--timestamp", ts).map_err(UsageError::from)?;
            ts.clone()
        }
        None => run_folder_name(start_secs),
    };
    for pid in &args.pids {
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            return Err(UsageError::Message(format!(
                "no process has pid {pid}; start it first, or leave out --pid to trace everything"
            ))
            .into());
        }
    }

    probe::check_privileges()?;
    probe::check_btf()?;
    let tracefs = probe::ensure_tracefs()?;
    let backend = choose_backend(args.backend, &tracefs)?;

    loader::route_libbpf_log(verbose);
    let mut object = MaybeUninit::uninit();
    let mut skel = loader::load(
        &mut object,
        &LoadOptions {
            backend,
            pids: &args.pids,
            comms: &args.comms,
            ring_size: args.ring_size,
        },
    )?;

    let run_dir = create_run_dir(&args.output_dir, &machine_id, &timestamp)?;
    let sink = CsvSink::create(run_dir, args.rotate_size)?;
    let out_dir = sink.dir().to_path_buf();
    let consumer = RefCell::new(Consumer {
        sink,
        formatter: RowFormatter::new(WallClock::sample()),
        malformed: 0,
        failure: None,
    });

    let stop = install_signal_handlers()?;
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            consumer.borrow_mut().on_record(data)
        })
        .context("setting up the ring buffer consumer")?;
    let ring = builder
        .build()
        .context("setting up the ring buffer consumer")?;

    loader::attach(&mut skel)?;
    eprintln!(
        "Tracing TCP/UDP sends and receives (backend: {}) into {} ... Hit Ctrl-C to end.",
        backend.name(),
        out_dir.display()
    );

    let started = Instant::now();
    let deadline = args.duration.map(|d| started + d);
    let mut last_flush = Instant::now();
    loop {
        if let Err(e) = ring.poll(POLL_INTERVAL) {
            // EINTR: a signal arrived; the loop condition handles it.
            if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                return Err(e).context("reading the ring buffer");
            }
        }
        if consumer.borrow().failure.is_some() {
            break;
        }
        if last_flush.elapsed() >= FLUSH_INTERVAL {
            let mut c = consumer.borrow_mut();
            c.flush();
            c.formatter.set_clock(WallClock::sample());
            last_flush = Instant::now();
        }
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }

    // Detach first, then drain: every event produced is in the ring now.
    loader::detach(&mut skel);
    let _ = ring.consume();
    drop(ring);
    let lost = loader::lost_events(&skel)?;
    let mut consumer = consumer.into_inner();
    consumer.flush();

    let sink = &consumer.sink;
    let files: Vec<&str> = sink.files().iter().map(|f| f.name.as_str()).collect();
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
    if consumer.malformed > 0 {
        eprintln!("nwtrace: skipped {} malformed records", consumer.malformed);
    }
    if let Some(failure) = consumer.failure {
        eprintln!(
            "nwtrace: stopped: {failure}; {} rows could not be written",
            sink.rows_lost()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
