//! What this kernel and this process allow, probed in one place:
//! privileges, BTF, tracefs, lockdown, and the kernel facts the BPF
//! programs adapt to. `doctor` prints these; the session acts on them.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::btf::types::{Func, FuncProto, Ptr, Struct, Typedef};
use libbpf_rs::btf::{Btf, ReferencesType};
use libbpf_rs::{MapType, ProgramType};
use serde::Serialize;
use thiserror::Error;

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";
/// Where libbpf looks for tracepoint ids, in its own order.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum ProbeError {
    /// The one capability missing, named (capture::privileges).
    #[error("{0}")]
    NotPrivileged(String),
    #[error(
        "this kernel has no BTF ({BTF_VMLINUX} is missing); nwtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error(
        "tracefs is not mounted and mounting it on /sys/kernel/tracing failed ({0}); mount it as root: mount -t tracefs tracefs /sys/kernel/tracing"
    )]
    TracefsMount(io::Error),
    #[error(
        "tracefs is locked down (lockdown=confidentiality): the tracepoint and kprobe backends need it; use --backend fentry, which does not (kernel 6.2+)"
    )]
    TracefsLockedDown,
}

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// True when this process may load and attach BPF tracing programs.
pub fn has_bpf_privileges() -> bool {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// Checks the capabilities (not the uid) for loading, attaching and
/// reading tracefs; the error names the one that is missing.
pub fn check_privileges() -> Result<(), ProbeError> {
    super::privileges::check().map_err(ProbeError::NotPrivileged)
}

pub fn check_btf() -> Result<(), ProbeError> {
    if Path::new(BTF_VMLINUX).exists() {
        Ok(())
    } else {
        Err(ProbeError::NoBtf)
    }
}

/// The mounted tracefs, if any.
pub fn tracefs_root() -> Option<PathBuf> {
    TRACEFS_ROOTS
        .iter()
        .map(PathBuf::from)
        .find(|root| root.join("events").is_dir())
}

/// Returns the tracefs root, mounting tracefs on /sys/kernel/tracing when
/// it is not mounted anywhere (a fresh machine often has it unmounted, and
/// libbpf reads classic tracepoint ids from it). Under
/// lockdown=confidentiality tracefs creates no file (LOCKDOWN_TRACEFS):
/// mounted or not, it is of no use, and the error says so.
pub fn ensure_tracefs() -> Result<PathBuf, ProbeError> {
    if let Some(root) = tracefs_root() {
        return Ok(root);
    }
    let target = CString::new(TRACEFS_ROOTS[0]).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings; data is NULL.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    let mounted = if rc != 0 {
        Err(ProbeError::TracefsMount(io::Error::last_os_error()))
    } else {
        tracefs_root()
            .ok_or_else(|| ProbeError::TracefsMount(io::Error::from(io::ErrorKind::NotFound)))
    };
    mounted.map_err(|e| {
        if lockdown_mode(true) == "confidentiality" {
            ProbeError::TracefsLockedDown
        } else {
            e
        }
    })
}

/// The running kernel's release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    // SAFETY: zeroed utsname is a valid out-parameter for uname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is writable; uname fills NUL-terminated fields.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The kernel lockdown mode in force ("none", "integrity",
/// "confidentiality"), mounting securityfs first if it is not mounted and
/// we may (minimal systems often leave it unmounted).
pub fn lockdown_mode(may_mount: bool) -> String {
    let path = Path::new("/sys/kernel/security/lockdown");
    if !path.exists() && may_mount {
        let _ = std::process::Command::new("mount")
            .args(["-t", "securityfs", "securityfs", "/sys/kernel/security"])
            .stderr(std::process::Stdio::null())
            .status();
    }
    // "none [integrity] confidentiality": the bracketed word is in force.
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
            .unwrap_or("unknown")
            .to_string(),
        Err(_) => "unknown (securityfs not mounted)".to_string(),
    }
}

/// What the kernel's BTF and feature probes say, read once. The BPF
/// programs adapt to these through read-only settings; the backends table
/// uses them to decide what can load.
#[derive(Clone, Debug, Serialize)]
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
    /// io_uring:io_uring_submit_req exists (6.4; CONFIG_IO_URING).
    pub uring_submit_req: bool,
    /// io_uring:io_uring_submit_sqe carries the request (5.19 to 6.3).
    pub uring_submit_sqe_req: bool,
    /// io_uring:io_uring_complete carries the request (5.19; not 5.10).
    pub uring_complete_req: bool,
    /// io_uring:io_uring_cqe_overflow exists (5.19).
    pub uring_cqe_overflow: bool,
    /// io_uring_complete's BTF tracepoint passes the CQE (ctx, req, cqe)
    /// instead of its fields (ctx, req, user_data, res, cflags, extra1,
    /// extra2, from 5.19; 6.12 still has those, 6.18 has the CQE).
    pub uring_complete_cqe: bool,
    /// Tracing programs (tp_btf, fexit) may call bpf_get_socket_cookie():
    /// 5.12 (commit c5dbb89fc2ac), which added bpf_get_socket_ptr_cookie.
    pub socket_cookie_tracing: bool,
    /// The kernel may preempt a task inside a BPF trampoline program
    /// (preemption "full", "lazy" or RT), so that the program's per-CPU
    /// recursion guard can make other tasks skip it: the fentry backend
    /// then loads twin programs (src/bpf/backend_fentry.bpf.h, "twin programs").
    pub programs_preemptible: bool,
    /// The kernel has kprobes: the kprobe PMU that libbpf attaches with,
    /// or tracefs's kprobe_events that the return probes use.
    pub kprobes: bool,
    /// Programs may call bpf_probe_read_kernel(): false under
    /// lockdown=confidentiality (LOCKDOWN_BPF_READ_KERNEL removes it),
    /// where only the fentry backend, which reads kernel memory by BTF
    /// loads, can load (docs/backends.md, "Kernel lockdown").
    pub probe_read_kernel: bool,
}

fn func_nargs(btf: &Btf<'_>, name: &str) -> Option<i32> {
    let func: Func<'_> = btf.type_by_name(name)?;
    let proto: FuncProto<'_> = func.referenced_type().try_into().ok()?;
    Some(proto.len() as i32)
}

/// Whether the struct `name` exists and has a member `member`.
fn has_member(btf: &Btf<'_>, name: &str, member: &str) -> bool {
    btf.type_by_name::<Struct<'_>>(name)
        .is_some_and(|s| s.iter().any(|m| m.name.is_some_and(|n| n == member)))
}

/// Arguments of a BTF tracepoint (TP_PROTO), from its `btf_trace_<name>`
/// typedef: a pointer to a function whose first parameter is the
/// tracepoint's private data, which is not an argument.
fn tracepoint_nargs(btf: &Btf<'_>, name: &str) -> Option<i32> {
    let typedef: Typedef<'_> = btf.type_by_name(&format!("btf_trace_{name}"))?;
    let ptr: Ptr<'_> = typedef.referenced_type().try_into().ok()?;
    let proto: FuncProto<'_> = ptr.referenced_type().try_into().ok()?;
    Some(proto.len() as i32 - 1)
}

fn has_typedef(btf: &Btf<'_>, name: &str) -> bool {
    btf.type_by_name::<Typedef<'_>>(name).is_some()
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
            // A tracepoint's record type is named after it.
            uring_submit_req: has_member(&btf, "trace_event_raw_io_uring_submit_req", "req"),
            uring_submit_sqe_req: has_member(&btf, "trace_event_raw_io_uring_submit_sqe", "req"),
            uring_complete_req: has_member(&btf, "trace_event_raw_io_uring_complete", "req"),
            uring_cqe_overflow: has_member(
                &btf,
                "trace_event_raw_io_uring_cqe_overflow",
                "user_data",
            ),
            uring_complete_cqe: tracepoint_nargs(&btf, "io_uring_complete") == Some(3),
            // BPF_CALL_1() declares a btf_<name> typedef for each helper.
            socket_cookie_tracing: has_typedef(&btf, "btf_bpf_get_socket_ptr_cookie"),
            programs_preemptible: programs_preemptible(
                std::fs::read_to_string("/sys/kernel/debug/sched/preempt")
                    .ok()
                    .as_deref(),
                &std::fs::read_to_string("/proc/sys/kernel/version").unwrap_or_default(),
            ),
            kprobes: Path::new("/sys/bus/event_source/devices/kprobe").exists()
                || tracefs_root().is_some_and(|t| t.join("kprobe_events").exists()),
            // The probe libbpf makes before it rewrites the probe_read
            // helpers (features.c, probe_kern_probe_read_kernel): a
            // tracepoint program that calls it.
            probe_read_kernel: ProgramType::Tracepoint
                .is_helper_supported(libbpf_rs::libbpf_sys::BPF_FUNC_probe_read_kernel)
                .unwrap_or(false),
        })
    }
}

/// Whether kernel code, and so a BPF program, can be preempted, from
/// debugfs's `sched/preempt` ("none voluntary (full) lazy": the mode in
/// force in parentheses; PREEMPT_DYNAMIC kernels, 5.12+) when readable,
/// else from `uname -v`, which names the preemption model the kernel was
/// built with: "PREEMPT", "PREEMPT_RT", "PREEMPT_LAZY", or nothing for
/// none/voluntary (init/Makefile, build-version). When neither tells
/// (a PREEMPT_DYNAMIC kernel without debugfs), assume it can: twins cost
/// little, a skipped program costs a row.
pub fn programs_preemptible(sched_preempt: Option<&str>, uname_version: &str) -> bool {
    if let Some(mode) = sched_preempt.and_then(|text| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix('(').and_then(|w| w.strip_suffix(')')))
    }) {
        return mode != "none" && mode != "voluntary";
    }
    uname_version.split_whitespace().any(|w| {
        matches!(
            w,
            "PREEMPT" | "PREEMPT_RT" | "PREEMPT_LAZY" | "PREEMPT_DYNAMIC"
        )
    })
}

/// Whether MPTCP sockets can exist here: `None` when the kernel has no
/// MPTCP at all, else whether `net.mptcp.enabled` is on.
pub fn mptcp_enabled() -> Option<bool> {
    std::fs::read_to_string("/proc/sys/net/mptcp/enabled")
        .map(|v| v.trim() == "1")
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn preemption_is_read_from_debugfs_first_then_uname() {
        use super::programs_preemptible as p;
        assert!(p(Some("none voluntary full (lazy)\n"), "#1 SMP"));
        assert!(p(Some("none voluntary (full) lazy\n"), "#1 SMP"));
        assert!(!p(
            Some("none (voluntary) full lazy\n"),
            "#1 SMP PREEMPT_DYNAMIC"
        ));
        assert!(!p(
            Some("(none) voluntary full\n"),
            "#1 SMP PREEMPT_DYNAMIC"
        ));
        // No debugfs: the build's model.
        assert!(p(None, "#1 SMP PREEMPT_DYNAMIC Debian 6.12.95-1"));
        assert!(p(None, "#1 SMP PREEMPT_LAZY Debian 7.3.4-1"));
        assert!(p(None, "#1 SMP PREEMPT_RT Tue"));
        assert!(p(None, "#1 SMP PREEMPT Tue"));
        assert!(!p(None, "#1 SMP Debian 5.10.237-1 (2025-05-19)"));
        assert!(!p(None, ""));
    }
}
