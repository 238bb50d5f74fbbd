//! Kretprobes with a large `maxactive`, made through tracefs.
//!
//! A kretprobe can track only `maxactive` calls in flight at once (by
//! default max(10, 2 x CPUs)); past that, returns are silently missed. A
//! server with many threads blocked in recv() exceeds that at once. libbpf
//! cannot set maxactive, but tracefs can (`r4096:...` in kprobe_events), so
//! the kprobe backend's return probes are made there, attached through a
//! perf event, and their `nmissed` is read back from `kprobe_profile`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::{Link, ProgramMut};

/// The most the kernel accepts (KRETPROBE_MAXACTIVE_MAX).
pub const MAXACTIVE: u32 = 4096;
const GROUP: &str = "nwtrace";
/// From linux/perf_event.h (not in the libc crate).
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Return probes this process created; removed from tracefs on drop.
pub struct Kretprobes {
    tracefs: PathBuf,
    events: Vec<String>,
    links: Vec<Link>,
}

fn kprobe_events_write(tracefs: &Path, line: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(tracefs.join("kprobe_events"))?;
    f.write_all(line.as_bytes())
}

/// perf_event_open(PERF_TYPE_TRACEPOINT, config = id) on CPU 0: a trace
/// event's BPF program runs on every CPU whatever the event's CPU.
fn open_tracepoint_event(id: u64) -> std::io::Result<i32> {
    // struct perf_event_attr: type (u32), size (u32), config (u64), then
    // fields left zero. 128 bytes is PERF_ATTR_SIZE_VER7.
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&PERF_TYPE_TRACEPOINT.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: attr is a valid, fully initialised perf_event_attr of the
    // size it declares; the returned fd is checked.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd as i32)
}

impl Kretprobes {
    pub fn new(tracefs: &Path) -> Self {
        remove_stale_events(tracefs);
        Kretprobes {
            tracefs: tracefs.to_path_buf(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    /// No return probe, and tracefs untouched: for the backends that
    /// make none (fentry needs no tracefs at all).
    pub fn none() -> Self {
        Kretprobes {
            tracefs: PathBuf::new(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    fn event_name(func: &str) -> String {
        format!("nwtrace_{}_{func}", std::process::id())
    }

    /// Attaches `prog` as a return probe on `func` with MAXACTIVE.
    pub fn attach(&mut self, prog: &ProgramMut<'_>, func: &str) -> Result<()> {
        let event = Self::event_name(func);
        kprobe_events_write(
            &self.tracefs,
            &format!("r{MAXACTIVE}:{GROUP}/{event} {func}\n"),
        )
        .with_context(|| format!("creating a kretprobe on {func} in kprobe_events"))?;
        self.events.push(event.clone());
        let id_path = self
            .tracefs
            .join("events")
            .join(GROUP)
            .join(&event)
            .join("id");
        let id: u64 = std::fs::read_to_string(&id_path)
            .with_context(|| format!("reading {}", id_path.display()))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {}", id_path.display()))?;
        let pfd = open_tracepoint_event(id)
            .with_context(|| format!("opening the perf event of the kretprobe on {func}"))?;
        // The link owns pfd from here on, and closes it.
        let link = prog
            .attach_perf_event(pfd)
            .with_context(|| format!("attaching to the kretprobe on {func}"))?;
        self.links.push(link);
        Ok(())
    }

    /// Returns that the kernel missed, from kprobe_profile's third column.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn missed(&self) -> u64 {
        if self.events.is_empty() {
            return 0;
        }
        let Ok(profile) = std::fs::read_to_string(self.tracefs.join("kprobe_profile")) else {
            return 0;
        };
        profile
            .lines()
            .filter_map(|line| {
                let mut cols = line.split_whitespace();
                let name = cols.next()?;
                let missed = cols.nth(1)?.parse::<u64>().ok()?;
                self.events.iter().any(|e| e == name).then_some(missed)
            })
            .sum()
    }

    /// Detaches, then removes the events from tracefs.
    pub fn detach(&mut self) {
        self.links.clear();
        for event in self.events.drain(..) {
            let _ = kprobe_events_write(&self.tracefs, &format!("-:{GROUP}/{event}\n"));
        }
    }
}

/// Removes the events of nwtrace runs that died without cleaning up (a
/// SIGKILL): they are inert without a BPF program, but clutter tracefs.
fn remove_stale_events(tracefs: &Path) {
    let Ok(defs) = std::fs::read_to_string(tracefs.join("kprobe_events")) else {
        return;
    };
    for def in defs.lines() {
        // "r4096:nwtrace/nwtrace_1234_tcp_recvmsg tcp_recvmsg"
        let Some(event) = def
            .split_whitespace()
            .next()
            .and_then(|d| d.split_once(':'))
            .map(|(_, e)| e)
        else {
            continue;
        };
        let Some(rest) = event.strip_prefix(&format!("{GROUP}/nwtrace_")) else {
            continue;
        };
        let pid = rest.split('_').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = kprobe_events_write(tracefs, &format!("-:{event}\n"));
        }
    }
}

impl Drop for Kretprobes {
    fn drop(&mut self) {
        self.detach();
    }
}
