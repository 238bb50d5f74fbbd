//! The capture session: every command that traces (`record`, `top`,
//! `watch`) starts one, runs it into a [`Consumer`] until a stop
//! condition, and reads its statistics. It owns the checks, the backend
//! choice, the loaded programs, the ring buffer loop and the final drain.
//!
//! It installs no signal handler and writes nothing but log messages:
//! each command owns its signal policy and its output.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBufferBuilder;
use libbpf_rs::skel::Skel;

use crate::attribution::cgroup::cgroup2_root;
use crate::attribution::columns::Columns;
use crate::attribution::container::ContainerCgroups;
use crate::capture::backends::{self, BackendDef};
use crate::capture::consumer::{CaptureHealth, Consumer, StopReason};
use crate::capture::event::NetEvent;
use crate::capture::facts::{self, KernelFacts};
use crate::capture::load::{self, Filters, LoadOptions, Loaded};
use crate::capture::sampling::{self, LeftOut, Thinning};
use crate::timefmt::WallClock;

/// How long the loop sleeps between drains when no wakeup comes. The BPF
/// side only wakes the reader when the ring is a quarter full, so this
/// bounds how late a consumer sees a trickle of events.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the wall clock's offset to CLOCK_MONOTONIC is sampled again
/// (NTP slews the wall clock).
const CLOCK_RESAMPLE: Duration = Duration::from_secs(1);
/// How often `--container` looks for cgroups of containers that started
/// since: their first operations before it are not traced.
const CONTAINER_RESCAN: Duration = Duration::from_secs(1);
/// How often the counts of the operations thinning left out are drained
/// (and the BPF side's map for them is switched): the map a drain reads
/// has been left alone by the BPF side for this long. Each drain costs
/// about a microsecond per flow active since the last: with few operations
/// per flow and second that is most of a sampled recorder's cost
/// (bench/results/sampling-*.md); a longer interval needs room in the map
/// (32768 entries) for that many more flows.
const UNWRITTEN_DRAIN: Duration = Duration::from_secs(1);

/// How often consumers get each program's statistics (`top`'s Health
/// view, `--metrics`), while `kernel.bpf_stats_enabled` is on.
const PROGRAM_STATS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// `auto` or a backend's name from the table.
    pub backend: String,
    pub filters: Filters,
    /// Optional columns (`--columns`): the BPF side adds what they need.
    pub columns: Columns,
    /// Bytes; a power of two.
    pub ring_size: u64,
    /// `--sample`, `--rate-limit`: off by default.
    pub thinning: Thinning,
}

pub use crate::schema::manifest::ProgramStats;

/// The capture's own figures, from which the manifest and the summaries
/// are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events delivered to the consumer.
    pub events: u64,
    /// Events the kernel side saw and could not hand over: ring buffer
    /// reservations that failed, and `uring_requests_lost`.
    pub events_lost: u64,
    /// io_uring requests that found the table of requests in flight full
    /// (part of `events_lost`).
    pub uring_requests_lost: u64,
    /// Kretprobe returns the kernel missed (kprobe backend).
    pub probes_missed: u64,
    /// Records that did not decode.
    pub malformed_records: u64,
    /// Each program's run count and time, when BPF statistics were on.
    pub programs: Vec<ProgramStats>,
    /// What thinning and the row filters left out, by reason.
    pub left_out: LeftOut,
    /// The thinning the run did.
    pub thinning: Thinning,
}

impl RunStats {
    /// Why events were lost, for the summary line after their number.
    pub fn lost_hint(&self) -> String {
        lost_hint(self.events_lost, self.uring_requests_lost)
    }
}

/// Why `lost` events were lost, `uring` of them io_uring requests: a
/// parenthesis for a summary line, empty when nothing was lost.
pub fn lost_hint(lost: u64, uring: u64) -> String {
    const RING: &str = "the ring buffer was full: try a larger --ring-size";
    const URING: &str = "io_uring requests issued while 16384 were in flight";
    match (lost, uring) {
        (0, _) => String::new(),
        (_, 0) => format!(" ({RING})"),
        (l, u) if l == u => format!(" ({URING})"),
        (_, u) => format!(" ({RING}; {u} of them {URING})"),
    }
}

pub struct Outcome {
    pub reason: StopReason,
    pub stats: RunStats,
}

/// A started capture: checks passed, programs loaded and attached.
pub struct Session {
    backend: &'static BackendDef,
    facts: KernelFacts,
    loaded: Loaded,
    /// `--container`: finds the containers' cgroups, again every
    /// CONTAINER_RESCAN while tracing.
    containers: Option<ContainerCgroups>,
    thinning: Thinning,
}

impl Session {
    /// Checks privileges, BTF and tracefs, then loads and attaches the
    /// first backend of `opts.backend`'s candidates that works here. A
    /// tracefs that cannot be had fails only the backends that need it:
    /// fentry does not, and so works where tracefs is locked down.
    pub fn start(opts: &CaptureOptions) -> Result<Session> {
        facts::check_privileges()?;
        facts::check_btf()?;
        let tracefs = facts::ensure_tracefs().map_err(|e| e.to_string());
        let facts = KernelFacts::probe()?;
        let load_opts = LoadOptions {
            tracefs: tracefs.as_deref().map_err(String::as_str),
            filters: &opts.filters,
            columns: opts.columns,
            ring_size: opts.ring_size,
            thinning: opts.thinning,
        };
        let mut containers = if opts.filters.containers.is_empty() {
            None
        } else {
            let root = cgroup2_root().context("--container needs a cgroup v2 hierarchy")?;
            Some(ContainerCgroups::new(root, opts.filters.containers.clone()))
        };
        let mut failures = Vec::new();
        for backend in backends::candidates(&opts.backend, &facts) {
            match load::load_and_attach(backend, &facts, &load_opts) {
                Ok(loaded) => {
                    log::debug!("nwtrace: backend {} ({facts:?})", backend.name);
                    if let Some(c) = containers.as_mut() {
                        let n = load::add_container_cgroups(&loaded.skel, c)?;
                        log::debug!("nwtrace: --container matches {n} cgroups at start");
                    }
                    return Ok(Session {
                        backend,
                        facts,
                        loaded,
                        containers,
                        thinning: opts.thinning,
                    });
                }
                Err(e) => failures.push(format!("{}: {}", backend.name, load::one_line(&e))),
            }
        }
        anyhow::bail!(
            "no backend works on kernel {} ({}); run nwtrace doctor for details (for the service: nwtrace doctor --as-service, as root)",
            facts::kernel_release(),
            failures.join("; ")
        )
    }

    pub fn backend(&self) -> &'static BackendDef {
        self.backend
    }

    pub fn facts(&self) -> &KernelFacts {
        &self.facts
    }

    /// Feeds `consumer` until `should_stop` returns a reason (it is asked
    /// after every drain) or the consumer stops the run. Then detaches,
    /// delivers every event still in the ring, and finishes the consumer.
    pub fn run(
        mut self,
        consumer: &mut dyn Consumer,
        mut should_stop: impl FnMut() -> Option<StopReason>,
    ) -> Result<Outcome> {
        let delivery = RefCell::new(Delivery {
            consumer,
            clock: WallClock::sample(),
            events: 0,
            malformed: 0,
            stop: None,
        });
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.loaded.skel.maps.events, |data: &[u8]| {
                delivery.borrow_mut().deliver(data);
                0
            })
            .context("setting up the ring buffer consumer")?;
        // Before the ring is mapped, so that the peak is the ring and what
        // tracing uses, not also what starting used.
        crate::capture::startup_memory::release();
        let ring = builder
            .build()
            .context("setting up the ring buffer consumer")?;

        let mut last_clock = Instant::now();
        let mut last_rescan = Instant::now();
        let mut last_unwritten = Instant::now();
        let mut last_programs = Instant::now();
        let mut unwritten = (0u64, 0u64);
        let reason = loop {
            // poll() drains only after a wakeup, and submissions wake the
            // reader only past a quarter of the ring: consume() after every
            // timeout is what drains a trickle of events, or a ring so small
            // that it fills before the BPF side looks at its fill level.
            let drained = ring.poll(POLL_INTERVAL).and_then(|()| ring.consume());
            if let Err(e) = drained
                && e.kind() != libbpf_rs::ErrorKind::Interrupted
            {
                // EINTR is a signal arriving; anything else is a real failure.
                break StopReason::RingError(e.to_string());
            }
            let mut d = delivery.borrow_mut();
            if let Some(reason) = d.stop.take() {
                break reason;
            }
            let (ring_used, ring_size) = ring_fill(&ring);
            let health = CaptureHealth {
                events: d.events,
                events_lost: load::lost_events(&self.loaded.skel).unwrap_or(0),
                malformed_records: d.malformed,
                ring_used,
                ring_size,
                filtered: sampling::filtered_rows(&self.loaded.skel).unwrap_or(0),
                sampled_out: unwritten.0 - unwritten.1,
                rate_limited: unwritten.1,
            };
            if let ControlFlow::Break(reason) = d.consumer.on_tick(&health) {
                break reason;
            }
            if let Some(c) = self.containers.as_mut()
                && last_rescan.elapsed() >= CONTAINER_RESCAN
            {
                last_rescan = Instant::now();
                match load::add_container_cgroups(&self.loaded.skel, c) {
                    Ok(0) => {}
                    Ok(n) => log::debug!("nwtrace: --container: {n} new cgroups"),
                    Err(e) => log::warn!("nwtrace: {}", load::one_line(&e)),
                }
            }
            if last_clock.elapsed() >= CLOCK_RESAMPLE {
                d.clock = WallClock::sample();
                last_clock = Instant::now();
            }
            if last_programs.elapsed() >= PROGRAM_STATS_INTERVAL {
                last_programs = Instant::now();
                if bpf_stats_enabled() {
                    d.consumer.on_programs(&program_stats(&self.loaded).0);
                }
            }
            if self.thinning.is_on() && last_unwritten.elapsed() >= UNWRITTEN_DRAIN {
                last_unwritten = Instant::now();
                let flows = sampling::drain(&mut self.loaded.skel, false)?;
                if let ControlFlow::Break(reason) = d.deliver_unwritten(&flows, &mut unwritten) {
                    break reason;
                }
            }
            drop(d);
            if let Some(reason) = should_stop() {
                break reason;
            }
        };

        // Detach first, then drain: every event produced is in the ring now.
        let (programs, runs_skipped) = program_stats(&self.loaded);
        let probes_missed = self.loaded.kretprobes.missed() + runs_skipped;
        self.loaded.detach();
        let _ = ring.consume();
        drop(ring);
        let events_lost = load::lost_events(&self.loaded.skel)?;
        let uring_requests_lost = load::uring_requests_lost(&self.loaded.skel)?;
        let mut d = delivery.into_inner();
        // Every count of what thinning left out, now that no program runs.
        let flows = sampling::drain(&mut self.loaded.skel, true)?;
        let reason = match d.deliver_unwritten(&flows, &mut unwritten) {
            ControlFlow::Break(last) if !reason.is_failure() => last,
            _ => reason,
        };
        let left_out = sampling::left_out(
            &self.loaded.skel,
            unwritten.0,
            unwritten.1,
            self.thinning.rate_limit_by,
        )?;
        let reason = match d.consumer.finish() {
            ControlFlow::Break(last) if !reason.is_failure() => last,
            _ => reason,
        };
        Ok(Outcome {
            reason,
            stats: RunStats {
                events: d.events,
                events_lost,
                uring_requests_lost,
                probes_missed,
                malformed_records: d.malformed,
                programs,
                left_out,
                thinning: self.thinning,
            },
        })
    }
}

/// Unread bytes in the ring and its size. Read once a tick from the
/// reader's side: it loads the producer position, a cache line the BPF
/// side writes, ten times a second at most (not per event).
fn ring_fill(ring: &libbpf_rs::RingBuffer<'_>) -> (u64, u64) {
    use libbpf_rs::AsRawLibbpf;
    use libbpf_rs::libbpf_sys::{ring__avail_data_size, ring__size, ring_buffer__ring};
    // SAFETY: the pointer is the live ring_buffer that `ring` owns; index 0
    // is the one ring added to it (the events map). libbpf returns NULL
    // for an index it does not have.
    let r = unsafe { ring_buffer__ring(ring.as_libbpf_object().as_ptr(), 0) };
    if r.is_null() {
        return (0, 0);
    }
    // SAFETY: r is a ring of that ring_buffer, valid while it lives; both
    // calls only read its positions and size.
    unsafe { (ring__avail_data_size(r) as u64, ring__size(r) as u64) }
}

/// What the ring buffer callback needs, behind one RefCell.
struct Delivery<'c> {
    consumer: &'c mut dyn Consumer,
    clock: WallClock,
    events: u64,
    malformed: u64,
    /// The first stop a consumer asked for; later events still reach it.
    stop: Option<StopReason>,
}

impl Delivery<'_> {
    fn deliver(&mut self, data: &[u8]) {
        match NetEvent::try_from(data) {
            Ok(ev) => {
                self.events += 1;
                if let ControlFlow::Break(reason) = self.consumer.on_event(&ev, &self.clock) {
                    self.stop.get_or_insert(reason);
                }
            }
            Err(_) => self.malformed += 1,
        }
    }
}

impl Delivery<'_> {
    /// Hands drained counts of operations left out to the consumer, and
    /// adds them to `drained` (operations, of which rate limited).
    fn deliver_unwritten(
        &mut self,
        flows: &[sampling::UnwrittenFlow],
        drained: &mut (u64, u64),
    ) -> ControlFlow<StopReason> {
        if flows.is_empty() {
            return ControlFlow::Continue(());
        }
        for f in flows {
            drained.0 += f.ops;
            drained.1 += f.limited;
        }
        self.consumer.on_unwritten(flows, &self.clock)
    }
}

/// Whether the kernel keeps BPF run statistics now
/// (`kernel.bpf_stats_enabled`; an admin or a tool like bpftop turns it on).
fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() == "1")
}

/// Each loaded program's run count and run time, when the kernel keeps
/// them (`kernel.bpf_stats_enabled=1`; empty otherwise), and the runs the
/// kernel skipped in all of them: a program that fires while another BPF
/// program holds its CPU's recursion guard is not run at all (kernels
/// count these in `recursion_misses` from 5.12; seen on 7.3 with
/// `PREEMPT_LAZY`, when a preempted syscall tracepoint program blocks the
/// next one on that CPU). Each skipped run may be a row or a start lost.
///
/// The skipped runs of a program that has a twin (the fentry backend) are
/// not counted: its twin did its work (src/bpf/backend_fentry.bpf.h, "twin programs").
/// The twin's own skipped runs are.
fn program_stats(loaded: &Loaded) -> (Vec<ProgramStats>, u64) {
    let mut out = Vec::new();
    let mut skipped = 0;
    let mut recovered = 0;
    let loaded_names: std::collections::HashSet<String> = loaded
        .skel
        .object()
        .progs()
        .filter(|p| p.autoload())
        .map(|p| p.name().to_string_lossy().into_owned())
        .collect();
    for prog in loaded.skel.object().progs() {
        if !prog.autoload() {
            continue;
        }
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        let fd = prog.as_fd();
        // SAFETY: info is a writable bpf_prog_info of len bytes, and fd an
        // open program descriptor borrowed for the call.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&mut info as *mut libbpf_rs::libbpf_sys::bpf_prog_info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            continue;
        }
        let name = prog.name().to_string_lossy().into_owned();
        if loaded_names.contains(&format!("{name}_twin")) {
            recovered += info.recursion_misses;
        } else {
            skipped += info.recursion_misses;
        }
        if info.run_cnt > 0 {
            out.push(ProgramStats {
                name,
                run_count: info.run_cnt,
                run_time_ns: info.run_time_ns,
            });
        }
    }
    if recovered > 0 {
        log::debug!("nwtrace: {recovered} skipped program runs were made up by their twins");
    }
    (out, skipped)
}

#[cfg(test)]
mod tests {
    use super::lost_hint;

    #[test]
    fn the_lost_hint_names_what_was_full() {
        assert_eq!(lost_hint(0, 0), "");
        assert_eq!(
            lost_hint(7, 0),
            " (the ring buffer was full: try a larger --ring-size)"
        );
        assert_eq!(
            lost_hint(3, 3),
            " (io_uring requests issued while 16384 were in flight)"
        );
        assert_eq!(
            lost_hint(10, 4),
            " (the ring buffer was full: try a larger --ring-size; 4 of them io_uring requests issued while 16384 were in flight)"
        );
    }
}
