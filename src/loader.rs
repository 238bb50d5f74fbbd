//! Choosing a backend, then opening, configuring, loading and attaching the
//! one BPF object with only that backend's programs.

use std::mem::MaybeUninit;

use anyhow::{Context, Result, anyhow};
use libbpf_rs::btf::types::{Func, FuncProto};
use libbpf_rs::btf::{Btf, ReferencesType};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapType, OpenObject, ProgramType};

use crate::bpf::{NwtraceLinks, NwtraceSkel, NwtraceSkelBuilder};
use crate::cli::BackendChoice;
use crate::kretprobe::Kretprobes;

/// The probe family that sees the operations. Every backend also uses the
/// syscall entry tracepoints, for flags, addresses and start times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// fexit on tcp_/udp_/udpv6_ sendmsg and recvmsg (BPF trampolines).
    Fentry,
    /// sock:sock_{send,recv}_length (kernel >= 6.3) as BTF tracepoints.
    Tracepoint,
    /// kprobe + kretprobe on the same functions as fentry.
    Kprobe,
}

impl Backend {
    /// The order `--backend auto` tries them in: cheapest first. fentry
    /// needs one program per operation and no sys_exit program; the
    /// tracepoint backend adds sys_exit programs on recvfrom/recvmsg;
    /// kprobes trap twice per operation (see README, "Backends").
    pub const AUTO_ORDER: [Backend; 3] = [Backend::Fentry, Backend::Tracepoint, Backend::Kprobe];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Fentry => "fentry",
            Backend::Tracepoint => "tracepoint",
            Backend::Kprobe => "kprobe",
        }
    }

    /// The backends to try for a --backend choice, in order.
    pub fn candidates(choice: BackendChoice) -> Vec<Backend> {
        match choice {
            BackendChoice::Auto => Self::AUTO_ORDER.to_vec(),
            BackendChoice::Fentry => vec![Backend::Fentry],
            BackendChoice::Tracepoint => vec![Backend::Tracepoint],
            BackendChoice::Kprobe => vec![Backend::Kprobe],
        }
    }

    /// Whether the program named `prog` belongs to this backend's set.
    fn wants(self, prog: &str, facts: &KernelFacts) -> bool {
        if prog.contains("tcp_sendpage") && !facts.has_tcp_sendpage {
            return false;
        }
        if prog.contains("mptcp_") && !facts.has_mptcp {
            return false;
        }
        // sys_exit_*: the one row of a sendfile/splice on TCP, on every
        // backend (tp_exit_* are the tracepoint backend's own).
        prog.starts_with("sys_enter_")
            || prog.starts_with("sys_exit_")
            || match self {
                Backend::Tracepoint => prog.starts_with("tp_"),
                Backend::Fentry => prog.starts_with("fexit_"),
                Backend::Kprobe => prog.starts_with("kp_") || prog.starts_with("krp_"),
            }
    }
}

/// What the kernel's BTF and feature probes say, read once.
#[derive(Clone, Debug)]
pub struct KernelFacts {
    /// Task storage usable from tracing programs (5.11).
    pub task_storage: bool,
    /// Arguments of tcp_recvmsg, udp_recvmsg, udpv6_recvmsg, mptcp_recvmsg
    /// (6 before 5.19).
    pub recvmsg_nargs: [i32; 4],
    /// tcp_sendpage exists (before 6.5).
    pub has_tcp_sendpage: bool,
    /// mptcp_sendmsg and mptcp_recvmsg exist (CONFIG_MPTCP), for the
    /// fentry and kprobe backends.
    pub has_mptcp: bool,
    /// sock:sock_send_length and sock:sock_recv_length exist (6.3).
    pub sock_tracepoints: bool,
}

fn func_nargs(btf: &Btf<'_>, name: &str) -> Option<i32> {
    let func: Func<'_> = btf.type_by_name(name)?;
    let proto: FuncProto<'_> = func.referenced_type().try_into().ok()?;
    Some(proto.len() as i32)
}

impl KernelFacts {
    pub fn probe() -> Result<Self> {
        let btf = Btf::from_vmlinux().context("reading the kernel's BTF")?;
        let nargs = |name: &str| func_nargs(&btf, name).unwrap_or(5);
        let task_storage = MapType::TaskStorage.is_supported().unwrap_or(false)
            && ProgramType::Kprobe
                .is_helper_supported(libbpf_rs::libbpf_sys::BPF_FUNC_task_storage_get)
                .unwrap_or(false);
        Ok(KernelFacts {
            task_storage,
            recvmsg_nargs: [
                nargs("tcp_recvmsg"),
                nargs("udp_recvmsg"),
                nargs("udpv6_recvmsg"),
                nargs("mptcp_recvmsg"),
            ],
            has_tcp_sendpage: btf.type_by_name::<Func<'_>>("tcp_sendpage").is_some(),
            has_mptcp: btf.type_by_name::<Func<'_>>("mptcp_sendmsg").is_some()
                && btf.type_by_name::<Func<'_>>("mptcp_recvmsg").is_some(),
            // The BTF typedef every tp_btf target has.
            sock_tracepoints: has_typedef(&btf, "btf_trace_sock_send_length"),
        })
    }
}

fn has_typedef(btf: &Btf<'_>, name: &str) -> bool {
    btf.type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(name)
        .is_some()
}

pub struct LoadOptions<'a> {
    pub tracefs: &'a std::path::Path,
    pub pids: &'a [u32],
    pub comms: &'a [String],
    pub ring_size: u64,
}

/// Routes libbpf's own log to stderr: warnings with -v, everything with -vv.
pub fn route_libbpf_log(verbose: u8) {
    let level = match verbose {
        0 => None,
        1 => Some(libbpf_rs::PrintLevel::Warn),
        _ => Some(libbpf_rs::PrintLevel::Debug),
    };
    libbpf_rs::set_print(level.map(|level| {
        let print: fn(libbpf_rs::PrintLevel, String) = |_, msg| eprint!("libbpf: {msg}");
        (level, print)
    }));
}

/// Why a backend cannot run here, in a form a user can act on.
fn precondition(backend: Backend, facts: &KernelFacts) -> Result<()> {
    match backend {
        Backend::Tracepoint if !facts.sock_tracepoints => Err(anyhow!(
            "this kernel has no sock:sock_send_length tracepoint (it arrived in 6.3)"
        )),
        _ => Ok(()),
    }
}

/// Loads the object with `backend`'s programs and the filters in place,
/// and attaches it: a trial that is also the real thing.
pub fn load_and_attach<'obj>(
    object: &'obj mut MaybeUninit<OpenObject>,
    backend: Backend,
    facts: &KernelFacts,
    opts: &LoadOptions<'_>,
) -> Result<Started<'obj>> {
    precondition(backend, facts)?;
    let mut open = NwtraceSkelBuilder::default()
        .open(object)
        .context("opening the BPF object")?;

    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the BPF object has no .rodata")?;
    rodata.self_tgid = std::process::id();
    rodata.filter_pids = !opts.pids.is_empty();
    rodata.filter_comms = !opts.comms.is_empty();
    // Wake the consumer early only when a quarter of the ring is unread;
    // otherwise it drains on its own short timer (see record.rs).
    rodata.wakeup_bytes = opts.ring_size / 4;
    rodata.use_task_storage = facts.task_storage;
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
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        prog.set_autoload(backend.wants(&name, facts));
        // Return probes are made with a large maxactive in kretprobe.rs.
        prog.set_autoattach(!name.starts_with("krp_"));
    }

    let mut skel = open.load().with_context(|| {
        format!(
            "loading the {} programs (-vv shows the verifier's log)",
            backend.name()
        )
    })?;

    for pid in opts.pids {
        skel.maps
            .pid_filter
            .update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .context("filling the pid filter")?;
    }
    for comm in opts.comms {
        let mut key = [0u8; 16];
        key[..comm.len()].copy_from_slice(comm.as_bytes());
        skel.maps
            .comm_filter
            .update(&key, &[1u8], MapFlags::ANY)
            .context("filling the comm filter")?;
    }
    skel.attach()
        .with_context(|| format!("attaching the {} programs", backend.name()))?;
    let mut kretprobes = Kretprobes::new(opts.tracefs);
    if backend == Backend::Kprobe {
        for prog in skel.object().progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            if let Some(func) = name.strip_prefix("krp_")
                && prog.autoload()
            {
                kretprobes.attach(&prog, func)?;
            }
        }
    }
    Ok(Started { skel, kretprobes })
}

/// A loaded and attached object, with the return probes made outside
/// libbpf.
pub struct Started<'obj> {
    pub skel: NwtraceSkel<'obj>,
    pub kretprobes: Kretprobes,
}

impl Started<'_> {
    /// Detaches every program: no event is produced after this returns.
    pub fn detach(&mut self) {
        self.skel.links = NwtraceLinks::default();
        self.kretprobes.detach();
    }
}

/// One slot of object storage per backend, so a failed trial's storage is
/// never reused while a later trial's skeleton borrows its own.
pub type ObjectSlots = [MaybeUninit<OpenObject>; 3];

pub fn object_slots() -> ObjectSlots {
    [
        MaybeUninit::uninit(),
        MaybeUninit::uninit(),
        MaybeUninit::uninit(),
    ]
}

/// Tries the candidates in order; returns the first that loads and
/// attaches, or every failure, one per line.
pub fn start_first_working<'obj>(
    slots: &'obj mut ObjectSlots,
    candidates: &[Backend],
    facts: &KernelFacts,
    opts: &LoadOptions<'_>,
) -> Result<(Backend, Started<'obj>), Vec<(Backend, anyhow::Error)>> {
    let mut failures = Vec::new();
    for (slot, &backend) in slots.iter_mut().zip(candidates) {
        match load_and_attach(slot, backend, facts, opts) {
            Ok(started) => return Ok((backend, started)),
            Err(e) => failures.push((backend, e)),
        }
    }
    Err(failures)
}

/// Ring buffer reservations that failed, summed over CPUs.
pub fn lost_events(skel: &NwtraceSkel<'_>) -> Result<u64> {
    let per_cpu = skel
        .maps
        .lost_events
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .context("reading the lost-event counters")?
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
