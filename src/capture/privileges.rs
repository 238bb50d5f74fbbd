//! Least privilege: what this process's capabilities (never its uid)
//! allow, and the one capability that is missing, named in one line.
//!
//! Measured on 6.18 (README, "Least privilege"): loading and attaching
//! needs `CAP_BPF` (bpf(2) program and map loads) and `CAP_PERFMON`
//! (perf_event_open for the syscall tracepoints, and the tracing program
//! types); reading the tracepoint ids in tracefs, which is a 0700 root
//! folder, needs uid 0 or `CAP_DAC_READ_SEARCH`; mounting tracefs when it
//! is not mounted needs `CAP_SYS_ADMIN`. `CAP_SYS_ADMIN` also stands in for
//! `CAP_BPF` and `CAP_PERFMON`, as in the kernel's `bpf_capable()` and
//! `perfmon_capable()`.

use std::io;
use std::path::Path;

/// A capability nwtrace may need, with its bit number in CapEff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    DacReadSearch = 2,
    SysAdmin = 21,
    Perfmon = 38,
    Bpf = 39,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Cap::DacReadSearch => {
                "to read the tracepoint ids in tracefs, a root-only folder, when not uid 0"
            }
            Cap::SysAdmin => "to mount tracefs, which is not mounted",
            Cap::Perfmon => "to attach tracepoints through perf_event_open",
            Cap::Bpf => "to load BPF programs and maps",
        }
    }
}

/// The set to grant a non-root user (the packaged service's set).
pub const SERVICE_CAPS: &str = "CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH";

/// A process's effective capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps(pub u64);

impl Caps {
    /// This process's effective set, from /proc/self/status (CapEff).
    pub fn effective() -> Caps {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Caps::from_status(&status)
    }

    pub fn from_status(status: &str) -> Caps {
        Caps(
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .unwrap_or(0),
        )
    }

    pub fn has(self, cap: Cap) -> bool {
        self.0 & (1u64 << cap as u32) != 0
    }

    /// bpf_capable() and perfmon_capable(): the cap, or CAP_SYS_ADMIN.
    fn capable(self, cap: Cap) -> bool {
        self.has(cap) || self.has(Cap::SysAdmin)
    }

    /// The first capability missing for loading and attaching, if any.
    pub fn missing_for_bpf(self) -> Option<Cap> {
        [Cap::Bpf, Cap::Perfmon]
            .into_iter()
            .find(|&c| !self.capable(c))
    }
}

/// The state of tracefs as this process sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracefs {
    /// Mounted, and a tracepoint id can be read.
    Readable,
    /// Mounted, but permission is denied on the folder or the id files.
    Denied,
    /// Not mounted where libbpf looks.
    NotMounted,
}

/// Where libbpf looks for tracepoint ids, in its own order.
const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
/// One id file every backend reads.
const PROBE_ID: &str = "events/syscalls/sys_enter_sendto/id";

/// Tries what libbpf will do: read one tracepoint id.
pub fn tracefs_state() -> Tracefs {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut state = Tracefs::NotMounted;
    for root in TRACEFS_ROOTS {
        match std::fs::read_to_string(Path::new(root).join(PROBE_ID)) {
            Ok(_) => return Tracefs::Readable,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => state = Tracefs::Denied,
            Err(_) => {
                // A mounted tracefs whose folder we may not even search.
                let mounted = mounts.lines().any(|l| {
                    let mut f = l.split_whitespace();
                    let (_, at, fstype) = (f.next(), f.next(), f.next());
                    at == Some(root) && fstype == Some("tracefs")
                });
                if mounted && state == Tracefs::NotMounted {
                    state = Tracefs::Denied;
                }
            }
        }
    }
    state
}

/// The one capability this process lacks for tracing, if any: its caps
/// first, then tracefs as it sees it.
pub fn missing(caps: Caps, tracefs: Tracefs) -> Option<Cap> {
    if let Some(cap) = caps.missing_for_bpf() {
        return Some(cap);
    }
    match tracefs {
        Tracefs::Readable => None,
        Tracefs::Denied if !caps.has(Cap::DacReadSearch) => Some(Cap::DacReadSearch),
        // DAC_READ_SEARCH held and still denied: not a capability matter
        // (an LSM); libbpf's own error says more.
        Tracefs::Denied => None,
        Tracefs::NotMounted if !caps.has(Cap::SysAdmin) => Some(Cap::SysAdmin),
        Tracefs::NotMounted => None,
    }
}

/// The one-line error for a missing capability.
pub fn message(cap: Cap) -> String {
    format!(
        "nwtrace needs root, or the capabilities {SERVICE_CAPS} (README, \"Least privilege\"): this process lacks {} ({})",
        cap.name(),
        cap.why()
    )
}

/// Checks this process: Err(the one-line message) when a capability is
/// missing.
pub fn check() -> Result<(), String> {
    match missing(Caps::effective(), tracefs_state()) {
        None => Ok(()),
        Some(cap) => Err(message(cap)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[Cap]) -> Caps {
        Caps(list.iter().fold(0, |acc, &c| acc | 1u64 << c as u32))
    }

    #[test]
    fn reads_capeff() {
        let status = "Name:\tx\nCapInh:\t0\nCapEff:\t000000c000000004\nCapBnd:\t0\n";
        let c = Caps::from_status(status);
        assert!(c.has(Cap::Bpf) && c.has(Cap::Perfmon) && c.has(Cap::DacReadSearch));
        assert!(!c.has(Cap::SysAdmin));
        assert_eq!(Caps::from_status("nothing"), Caps(0));
    }

    #[test]
    fn names_the_one_missing_capability() {
        use Cap::*;
        let readable = Tracefs::Readable;
        assert_eq!(missing(caps(&[]), readable), Some(Bpf));
        assert_eq!(missing(caps(&[Perfmon]), readable), Some(Bpf));
        assert_eq!(missing(caps(&[Bpf]), readable), Some(Perfmon));
        assert_eq!(missing(caps(&[Bpf, Perfmon]), readable), None);
        assert_eq!(missing(caps(&[SysAdmin]), readable), None);
        let denied = Tracefs::Denied;
        assert_eq!(missing(caps(&[Bpf, Perfmon]), denied), Some(DacReadSearch));
        assert_eq!(missing(caps(&[Bpf, Perfmon, DacReadSearch]), denied), None);
        let unmounted = Tracefs::NotMounted;
        assert_eq!(missing(caps(&[Bpf, Perfmon]), unmounted), Some(SysAdmin));
        assert_eq!(missing(caps(&[SysAdmin]), unmounted), None);
        let msg = message(Perfmon);
        assert!(msg.contains("lacks CAP_PERFMON") && !msg.contains('\n'));
    }
}
