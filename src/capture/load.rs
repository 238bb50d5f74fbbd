//! Opening, configuring, loading and attaching the one BPF object with the
//! programs of one backend.

use std::mem::MaybeUninit;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use crate::attribution::columns::Columns;
use crate::attribution::container::ContainerCgroups;
use crate::bpf::{NwtraceLinks, NwtraceSkel, NwtraceSkelBuilder};
use crate::capture::backends::{Attach, Backend, BackendDef};
use crate::capture::facts::KernelFacts;
use crate::capture::kretprobe::Kretprobes;
use crate::capture::sampling::{RateLimitBy, Thinning};
use crate::capture::teardown::PerfEventHold;
use crate::schema::{Direction, Protocol};

/// The in-kernel filters and the ring size.
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub pids: Vec<u32>,
    pub comms: Vec<String>,
    pub ports: Vec<u16>,
    pub protocol: Option<Protocol>,
    pub ip_version: Option<u8>,
    pub direction: Option<Direction>,
    /// Absolute cgroup folders (the CLI checked that they exist).
    pub cgroups: Vec<String>,
    /// Container id prefixes, lowercase hex.
    pub containers: Vec<String>,
    pub exclude_comms: Vec<String>,
}

impl Filters {
    /// Whether a row filter (they need the finished row) is on.
    fn on_rows(&self) -> bool {
        !self.ports.is_empty()
            || self.protocol.is_some()
            || self.ip_version.is_some()
            || self.direction.is_some()
    }
}

pub struct LoadOptions<'a> {
    /// The tracefs root, or why there is none: only the backends that
    /// need it (`BackendDef::needs_tracefs`) fail without it.
    pub tracefs: Result<&'a Path, &'a str>,
    pub filters: &'a Filters,
    pub columns: Columns,
    pub ring_size: u64,
    /// `--sample`, `--rate-limit`.
    pub thinning: Thinning,
}

/// Whether `backend` gives the Socket Cookie column on this kernel: its
/// socket hooks must be tracing programs (tp_btf, fexit), and tracing
/// programs have bpf_get_socket_cookie() from 5.12. Kprobes never do.
pub fn backend_has_cookie(backend: &BackendDef, facts: &KernelFacts) -> bool {
    matches!(backend.backend, Backend::Fentry | Backend::Tracepoint) && facts.socket_cookie_tracing
}

/// A loaded and attached object, with the return probes made outside
/// libbpf. Dropping it detaches and unloads everything.
pub struct Loaded {
    pub skel: NwtraceSkel<'static>,
    pub kretprobes: Kretprobes,
    /// The fentry backend's twin programs' links, made before the
    /// skeleton's (`Attach::Twin`).
    pub twin_links: Vec<libbpf_rs::Link>,
}

impl Loaded {
    /// The syscall tracepoints among the programs attached, as
    /// `syscalls:sys_enter_sendto` (read from their sections), sorted.
    /// Each one puts every thread of the host on the syscall slow path
    /// while attached (docs/backends.md).
    pub fn syscall_tracepoints(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .skel
            .object()
            .progs()
            .filter(|p| p.autoload())
            .filter_map(|p| {
                let section = p.section().to_string_lossy().into_owned();
                let name = section.strip_prefix("tracepoint/syscalls/")?;
                Some(format!("syscalls:{name}"))
            })
            .collect();
        out.sort();
        out
    }

    /// Detaches every program: no event is produced after this returns.
    /// Returns at once: the kernel's slow teardown of the classic
    /// tracepoints' perf events is left to a child process where that is
    /// safe (see teardown.rs).
    pub fn detach(&mut self) {
        // The kprobe backend's return probes are tracefs events that can
        // only be removed once their perf events are closed: there every
        // descriptor closes here, as before.
        let hold = if self.kretprobes.is_empty() && perf_links_supported(&self.skel) {
            Some(PerfEventHold::take())
        } else {
            None
        };
        // With the duplicates held, libbpf's closes are not the last
        // references and return at once.
        self.skel.links = NwtraceLinks::default();
        self.twin_links.clear();
        self.kretprobes.detach();
        if let Some(mut hold) = hold {
            hold.close_links();
            let n = hold.len();
            if hold.release() {
                log::debug!("nwtrace: {n} perf events handed to a child to close");
            }
        }
    }
}

/// Whether libbpf attached the tracepoint programs through BPF perf links
/// (`BPF_LINK_TYPE_PERF_EVENT`, kernel 5.15, commit b89fbfbb854c), so that
/// closing a link detaches its program while the perf event stays open.
/// Before that, `PERF_EVENT_IOC_SET_BPF` made the perf event itself hold
/// the program. Probed as libbpf does: linking a loaded tracepoint program
/// to descriptor -1 fails with EBADF only where the link type exists.
fn perf_links_supported(skel: &NwtraceSkel<'_>) -> bool {
    use libbpf_rs::libbpf_sys;
    let Some(prog) = skel
        .object()
        .progs()
        .find(|p| p.autoload() && p.prog_type() == libbpf_rs::ProgramType::Tracepoint)
    else {
        return false;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&prog));
    // SAFETY: a plain syscall wrapper; fd is an open program descriptor,
    // the target -1 makes it fail without creating anything, and NULL
    // options are allowed.
    let rc = unsafe {
        libbpf_sys::bpf_link_create(fd, -1, libbpf_sys::BPF_PERF_EVENT, std::ptr::null())
    };
    if rc >= 0 {
        // SAFETY: a descriptor the call just made (cannot happen with -1).
        unsafe { libc::close(rc) };
        return false;
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
}

/// Storage for one open object. The skeleton borrows it for as long as it
/// lives, and a session owns its skeleton, so the storage is leaked: a few
/// hundred bytes per load attempt (at most one per backend in a process),
/// in exchange for a session type without a lifetime parameter. The BPF
/// object itself is freed when the skeleton drops.
fn object_storage() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// Loads the object with `backend`'s programs and the filters in place,
/// and attaches it: a trial that is also the real thing.
pub fn load_and_attach(
    backend: &BackendDef,
    facts: &KernelFacts,
    opts: &LoadOptions<'_>,
) -> Result<Loaded> {
    (backend.precondition)(facts).map_err(|why| anyhow!(why))?;
    let tracefs = if backend.needs_tracefs {
        Some(opts.tracefs.map_err(|why| anyhow!("{why}"))?)
    } else {
        None
    };
    let mut open = NwtraceSkelBuilder::default()
        .open(object_storage())
        .context("opening the BPF object")?;

    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the BPF object has no .rodata")?;
    rodata.self_tgid = std::process::id();
    rodata.filter_pids = !opts.filters.pids.is_empty();
    rodata.filter_comms = !opts.filters.comms.is_empty();
    let f = opts.filters;
    // Thinning decides on the finished row too: it is built in the
    // scratch record, so that a row left out reserves nothing in the ring.
    rodata.filter_rows = f.on_rows() || opts.thinning.is_on();
    rodata.sample_n = opts.thinning.sample.unwrap_or(0);
    rodata.rate_limit = opts.thinning.rate_limit.unwrap_or(0);
    rodata.rate_by_cgroup = opts.thinning.rate_limit_by == RateLimitBy::Cgroup;
    rodata.want_protocol = match f.protocol {
        None => 0,
        Some(Protocol::Tcp) => libc::IPPROTO_TCP as u8,
        Some(Protocol::Udp) => libc::IPPROTO_UDP as u8,
    };
    rodata.want_direction = match f.direction {
        None => 0,
        Some(Direction::Send) => 1,
        Some(Direction::Receive) => 2,
    };
    rodata.want_ip_version = f.ip_version.unwrap_or(0);
    rodata.filter_ports = !f.ports.is_empty();
    rodata.filter_exclude_comms = !f.exclude_comms.is_empty();
    rodata.filter_cgroups = !f.cgroups.is_empty();
    rodata.filter_containers = !f.containers.is_empty();
    rodata.emit_attr = !opts.columns.is_empty();
    rodata.attr_mask = opts.columns.attr_mask();
    rodata.cookie_helper = backend_has_cookie(backend, facts);
    rodata.user_reads = facts.probe_read_kernel;
    // Wake the consumer early only when a quarter of the ring is unread;
    // otherwise it drains on its own short timer (see session.rs).
    rodata.wakeup_bytes = opts.ring_size / 4;
    rodata.use_task_storage = facts.task_storage;
    rodata.twins_loaded = backend
        .programs_for(facts)
        .any(|p| p.attach == Attach::Twin);
    rodata.uring_complete_has_cqe = facts.uring_complete_cqe;
    [
        rodata.tcp_recvmsg_nargs,
        rodata.udp_recvmsg_nargs,
        rodata.udpv6_recvmsg_nargs,
        rodata.mptcp_recvmsg_nargs,
    ] = facts.recvmsg_nargs;

    open.maps
        .events
        .set_max_entries(opts.ring_size as u32)
        .context("sizing the ring buffer")?;
    open.maps.task_states.set_autocreate(facts.task_storage)?;
    open.maps
        .task_states_by_tid
        .set_autocreate(!facts.task_storage)?;

    let wanted: Vec<_> = backend.programs_for(facts).collect();
    let mut found = 0;
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        let entry = wanted.iter().find(|p| p.name == name);
        found += usize::from(entry.is_some());
        prog.set_autoload(entry.is_some());
        // Return probes are made with a large maxactive in kretprobe.rs.
        prog.set_autoattach(entry.is_some_and(|p| p.attach == Attach::Libbpf));
    }
    if found != wanted.len() {
        // The table names a program the object lacks: a build mismatch.
        anyhow::bail!(
            "the BPF object lacks some of the {} backend's programs",
            backend.name
        );
    }

    let mut skel = open.load().with_context(|| {
        format!(
            "loading the {} programs (-vv shows the verifier's log)",
            backend.name
        )
    })?;

    for pid in &opts.filters.pids {
        skel.maps
            .pid_filter
            .update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .context("filling the pid filter")?;
    }
    for comm in &opts.filters.comms {
        skel.maps
            .comm_filter
            .update(&comm_key(comm), &[1u8], MapFlags::ANY)
            .context("filling the comm filter")?;
    }
    for comm in &opts.filters.exclude_comms {
        skel.maps
            .exclude_comm_filter
            .update(&comm_key(comm), &[1u8], MapFlags::ANY)
            .context("filling the --exclude-comm filter")?;
    }
    for port in &opts.filters.ports {
        skel.maps
            .port_filter
            .update(&port.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .context("filling the port filter")?;
    }
    for dir in &opts.filters.cgroups {
        let id = std::fs::metadata(dir)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .with_context(|| format!("reading cgroup {dir}"))?;
        skel.maps
            .cgroup_filter
            .update(&id.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .context("filling the cgroup filter")?;
    }
    // Twins first: a trampoline runs its newest link first, so each
    // primary, attached by the skeleton next, runs before its twin.
    let mut twin_links = Vec::new();
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if wanted
            .iter()
            .any(|p| p.name == name && p.attach == Attach::Twin)
        {
            twin_links
                .push(prog.attach().with_context(|| {
                    format!("attaching the {} programs ({name})", backend.name)
                })?);
        }
    }
    skel.attach()
        .with_context(|| format!("attaching the {} programs", backend.name))?;
    let mut kretprobes = tracefs.map_or_else(Kretprobes::none, Kretprobes::new);
    for prog in skel.object().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if let Some(Attach::ReturnProbe(func)) =
            wanted.iter().find(|p| p.name == name).map(|p| p.attach)
        {
            kretprobes.attach(&prog, func)?;
        }
    }
    Ok(Loaded {
        skel,
        kretprobes,
        twin_links,
    })
}

fn comm_key(comm: &str) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..comm.len()].copy_from_slice(comm.as_bytes());
    key
}

/// Adds the cgroups of `--container`'s containers to the in-kernel filter:
/// at load, then again every second while tracing (containers that start
/// later). Returns how many cgroups it added.
pub fn add_container_cgroups(
    skel: &NwtraceSkel<'_>,
    finder: &mut ContainerCgroups,
) -> Result<usize> {
    let ids = finder.new_ids();
    for id in &ids {
        skel.maps
            .container_filter
            .update(&id.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .context("filling the container filter")?;
    }
    Ok(ids.len())
}

/// Every event the kernel side saw and could not hand over, summed over
/// CPUs: failed ring buffer reservations, and io_uring requests that found
/// the table of requests in flight full (`uring_requests_lost`).
pub fn lost_events(skel: &NwtraceSkel<'_>) -> Result<u64> {
    Ok(percpu_sum(&skel.maps.lost_events, 0)? + uring_requests_lost(skel)?)
}

/// io_uring requests whose row is lost because the table of requests in
/// flight (16384) was full when they were issued.
pub fn uring_requests_lost(skel: &NwtraceSkel<'_>) -> Result<u64> {
    percpu_sum(&skel.maps.uring_lost, 0)
}

/// The sum over CPUs of entry `slot` of a per-CPU array of u64 counters.
pub(crate) fn percpu_sum(map: &impl MapCore, slot: u32) -> Result<u64> {
    let per_cpu = map
        .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading the counters of {}", map.name().to_string_lossy()))?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| v.get(..8))
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
        .sum())
}

/// A failure chain as one line.
pub fn one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
