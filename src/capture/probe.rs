//! What this kernel and this process allow: privileges, BTF, tracefs, and
//! the tracepoints each backend needs.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";
/// Where libbpf looks for tracepoint ids, in its own order.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("nwtrace needs root, or CAP_BPF and CAP_PERFMON: run it with sudo")]
    NotPrivileged,
    #[error(
        "this kernel has no BTF ({BTF_VMLINUX} is missing); nwtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error(
        "tracefs is not mounted and mounting it on /sys/kernel/tracing failed ({0}); mount it as root: mount -t tracefs tracefs /sys/kernel/tracing"
    )]
    TracefsMount(io::Error),
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

pub fn check_privileges() -> Result<(), ProbeError> {
    if has_bpf_privileges() {
        Ok(())
    } else {
        Err(ProbeError::NotPrivileged)
    }
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
/// libbpf reads classic tracepoint ids from it).
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
    if rc != 0 {
        return Err(ProbeError::TracefsMount(io::Error::last_os_error()));
    }
    tracefs_root().ok_or_else(|| ProbeError::TracefsMount(io::Error::from(io::ErrorKind::NotFound)))
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
