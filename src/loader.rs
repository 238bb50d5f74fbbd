//! Opening, configuring, loading and attaching the BPF object.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use crate::bpf::{NwtraceLinks, NwtraceSkel, NwtraceSkelBuilder};

/// The probe family that traces the operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Syscall tracepoints plus sock:sock_{send,recv}_length (>= 6.3).
    Tracepoint,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Tracepoint => "tracepoint",
        }
    }
}

pub struct LoadOptions<'a> {
    pub backend: Backend,
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

/// Loads the object with the filters in place, but attaches nothing.
pub fn load<'obj>(
    object: &'obj mut MaybeUninit<OpenObject>,
    opts: &LoadOptions<'_>,
) -> Result<NwtraceSkel<'obj>> {
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

    open.maps
        .events
        .set_max_entries(opts.ring_size as u32)
        .context("sizing the ring buffer")?;

    match opts.backend {
        Backend::Tracepoint => {}
    }

    let skel = open.load().context(
        "loading the BPF programs into the kernel (run with -vv to see the verifier's log)",
    )?;

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
    Ok(skel)
}

pub fn attach(skel: &mut NwtraceSkel<'_>) -> Result<()> {
    skel.attach().context("attaching the BPF programs")
}

/// Detaches every program: no event is produced after this returns.
pub fn detach(skel: &mut NwtraceSkel<'_>) {
    skel.links = NwtraceLinks::default();
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
