//! Least privilege: what this process's capabilities (never its uid)
//! allow, and the one capability that is missing, named in one line.
//!
//! Measured on 6.18 (docs/operations.md, "Least privilege"): loading and attaching
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
    DacOverride = 1,
    DacReadSearch = 2,
    SysAdmin = 21,
    Perfmon = 38,
    Bpf = 39,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::DacOverride => "CAP_DAC_OVERRIDE",
            Cap::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Cap::DacOverride => "to write kprobe_events in tracefs, when not uid 0",
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
        "nwtrace needs root, or the capabilities {SERVICE_CAPS} (docs/operations.md, \"Least privilege\"): this process lacks {} ({})",
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

/// The capabilities a unit file may name that nwtrace knows, with their
/// bit numbers (linux/capability.h).
const CAP_NAMES: [(&str, u32); 10] = [
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_NET_ADMIN", 12),
    ("CAP_IPC_LOCK", 14),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// The highest capability number this code drops from the bounding set
/// (CAP_CHECKPOINT_RESTORE, 5.9); higher numbers make PR_CAPBSET_DROP fail
/// with EINVAL on older kernels, which is ignored.
const CAP_LAST: u32 = 40;

impl Caps {
    /// Parses a list of capability names ("CAP_BPF CAP_PERFMON"); Err
    /// names the first it does not know.
    pub fn parse(list: &str) -> Result<Caps, String> {
        let mut mask = 0u64;
        for name in list.split_whitespace() {
            let bit = CAP_NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|&(_, b)| b)
                .ok_or_else(|| format!("unknown capability {name}"))?;
            mask |= 1 << bit;
        }
        Ok(Caps(mask))
    }

    /// The names of the capabilities in this set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        let mut v: Vec<_> = CAP_NAMES
            .iter()
            .filter(|&&(_, b)| self.0 & (1 << b) != 0)
            .collect();
        v.sort_by_key(|&&(_, b)| b);
        v.into_iter().map(|&(n, _)| n).collect()
    }
}

/// The capabilities a systemd unit grants (AmbientCapabilities=), read as
/// systemd does: the lines of the unit file, then of its drop-ins in
/// order; an empty assignment resets the list. Returns None when no line
/// sets it.
pub fn unit_ambient_caps<'a>(files: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut caps: Option<Vec<String>> = None;
    for text in files {
        let mut section = "";
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            let Some(value) = line.strip_prefix("AmbientCapabilities=") else {
                continue;
            };
            if section != "[Service]" {
                continue;
            }
            let list = caps.get_or_insert_with(Vec::new);
            if value.trim().is_empty() {
                list.clear();
            }
            // "~" inverts the list: not a least-privilege unit; leave it
            // to systemd and report the names as written.
            list.extend(value.split_whitespace().map(str::to_string));
        }
    }
    caps.map(|v| v.join(" "))
}

/// kernel.perf_event_paranoid, if readable.
pub fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What a backend that works as root but not with the service's
/// capabilities needs, in one line with the fix. `denied`: the failure was
/// EPERM/EACCES. `other_works`: a backend that does work as the service,
/// if any.
pub fn service_advice(
    backend: &str,
    paranoid: Option<i32>,
    caps: Caps,
    denied: bool,
    other_works: Option<&str>,
) -> String {
    let alternative = match other_works {
        Some(b) => format!("; the service can use --backend {b} (auto picks it)"),
        None => String::new(),
    };
    if let Some(cap) = caps.missing_for_bpf() {
        return format!(
            "the service lacks {} ({}): grant it in AmbientCapabilities",
            cap.name(),
            cap.why()
        );
    }
    // docs/operations.md, "Least privilege": kprobe also writes kprobe_events in
    // tracefs (the kretprobes' maxactive), before any perf_event_open.
    if backend == "kprobe" && denied && !caps.has(Cap::DacOverride) {
        return format!(
            "the kprobe backend writes kprobe_events in tracefs, which a non-root user cannot without CAP_DAC_OVERRIDE{}{alternative}",
            if paranoid.is_some_and(|p| p >= 3) {
                " (and at kernel.perf_event_paranoid>=3 it attaches through perf_event_open, which needs CAP_SYS_ADMIN)"
            } else {
                ""
            }
        );
    }
    if denied && !caps.has(Cap::DacReadSearch) && !caps.has(Cap::SysAdmin) {
        return format!(
            "the service lacks {} ({}): grant it in AmbientCapabilities{alternative}",
            Cap::DacReadSearch.name(),
            Cap::DacReadSearch.why()
        );
    }
    match paranoid {
        // The Debian patch (security-perf-allow-further-restriction.patch,
        // Debian's kernels since 4.6): perf_event_open fails with EACCES
        // when perf_event_paranoid > 2 unless capable(CAP_SYS_ADMIN);
        // CAP_PERFMON does not satisfy it.
        Some(p) if p >= 3 && denied && !caps.has(Cap::SysAdmin) => format!(
            "kernel.perf_event_paranoid={p} (Debian): attaching through perf_event_open needs CAP_SYS_ADMIN, CAP_PERFMON is not enough{alternative}; or set kernel.perf_event_paranoid=2 (/etc/sysctl.d/) or grant CAP_SYS_ADMIN in a drop-in (docs/service.md)"
        ),
        _ if denied => format!(
            "refused with the service's capabilities ({}) though root may: a security policy (LSM, lockdown) or a capability nwtrace does not know{alternative}",
            caps.names().join(" ")
        ),
        _ => format!("fails as the service but not as root{alternative}"),
    }
}

/// An argv and an environment for fexecve, built before a fork so that the
/// child allocates nothing.
pub struct ExecArgs {
    _strings: Vec<std::ffi::CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into `_strings`, which the struct owns and
// never changes; the struct is only read (by the child, after fork).
unsafe impl Send for ExecArgs {}
// SAFETY: as for Send: nothing is mutated after construction.
unsafe impl Sync for ExecArgs {}

impl ExecArgs {
    pub fn new<'a>(
        argv: impl IntoIterator<Item = &'a str>,
        env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
        extra_env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> io::Result<ExecArgs> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let nul = |e| io::Error::new(io::ErrorKind::InvalidInput, e);
        let args: Vec<CString> = argv
            .into_iter()
            .map(|a| CString::new(a).map_err(nul))
            .collect::<io::Result<_>>()?;
        let mut vars: Vec<CString> = Vec::new();
        for (k, v) in env {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            vars.push(CString::new(kv).map_err(nul)?);
        }
        for (k, v) in extra_env {
            vars.push(CString::new(format!("{k}={v}")).map_err(nul)?);
        }
        let ptrs = |list: &[CString]| {
            let mut p: Vec<*const libc::c_char> = list.iter().map(|c| c.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        let (argv, envp) = (ptrs(&args), ptrs(&vars));
        let mut strings = args;
        strings.extend(vars);
        Ok(ExecArgs {
            _strings: strings,
            argv,
            envp,
        })
    }

    /// Executes the file open at `fd`; returns only on failure.
    pub fn fexecve(&self, fd: std::os::fd::RawFd) -> io::Error {
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to
        // NUL-terminated strings that self owns for the call's duration.
        unsafe { libc::fexecve(fd, self.argv.as_ptr(), self.envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// In a child between fork and exec: become `uid`/`gid` holding exactly
/// `caps` as ambient capabilities (kept across exec, as systemd's
/// AmbientCapabilities= does), with no new privileges and a bounding set of
/// `caps` only. Call only as root. Uses only async-signal-safe calls.
pub fn become_service(caps: Caps, uid: u32, gid: u32) -> io::Result<()> {
    fn check(r: libc::c_int) -> io::Result<()> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
    // SAFETY: prctl, setgroups, setresgid, setresuid and capset are plain
    // syscalls on this (child) process; every pointer passed points to a
    // live local of the right type and size.
    unsafe {
        for cap in 0..=CAP_LAST {
            if caps.0 & (1 << cap) == 0 {
                // EINVAL: the kernel has no such capability; fine.
                let r = libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
                if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))?;
        // linux/capability.h, version 3: two 32-bit halves.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let half = |shift: u32| {
            let bits = (caps.0 >> shift) as u32;
            Data {
                effective: bits,
                permitted: bits,
                inheritable: bits,
            }
        };
        let data = [half(0), half(32)];
        check(libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int)?;
        for cap in 0..=CAP_LAST {
            if caps.0 & (1 << cap) != 0 {
                check(libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                ))?;
            }
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(())
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

    #[test]
    fn parses_capability_lists_both_ways() {
        let c = Caps::parse(SERVICE_CAPS).unwrap();
        assert_eq!(c, Caps(0x0000_00c0_0000_0004));
        assert_eq!(c.names(), ["CAP_DAC_READ_SEARCH", "CAP_PERFMON", "CAP_BPF"]);
        assert_eq!(Caps::parse("cap_bpf").unwrap(), caps(&[Cap::Bpf]));
        assert_eq!(Caps::parse("").unwrap(), Caps(0));
        assert_eq!(
            Caps::parse("CAP_BPF CAP_NOPE").unwrap_err(),
            "unknown capability CAP_NOPE"
        );
    }

    #[test]
    fn reads_ambient_caps_like_systemd() {
        let unit = "[Unit]\nAmbientCapabilities=CAP_SYS_ADMIN\n[Service]\nAmbientCapabilities=CAP_BPF CAP_PERFMON\nAmbientCapabilities=CAP_DAC_READ_SEARCH\n";
        assert_eq!(
            unit_ambient_caps([unit]).as_deref(),
            Some("CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH")
        );
        let dropin = "[Service]\nAmbientCapabilities=\nAmbientCapabilities=CAP_SYS_ADMIN CAP_BPF\n";
        assert_eq!(
            unit_ambient_caps([unit, dropin]).as_deref(),
            Some("CAP_SYS_ADMIN CAP_BPF")
        );
        assert_eq!(unit_ambient_caps(["[Service]\nUser=x\n"]), None);
    }

    /// The packaged unit grants exactly SERVICE_CAPS, the set doctor and
    /// the error messages name.
    #[test]
    fn the_packaged_unit_grants_service_caps() {
        let unit = include_str!("../../packaging/nwtrace.service");
        let ambient = unit_ambient_caps([unit]).unwrap();
        assert_eq!(Caps::parse(&ambient), Caps::parse(SERVICE_CAPS));
        let bounding = unit
            .lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
            .unwrap();
        assert_eq!(Caps::parse(bounding), Caps::parse(SERVICE_CAPS));
    }

    #[test]
    fn advice_names_paranoid_3_and_the_fixes() {
        let service = Caps::parse(SERVICE_CAPS).unwrap();
        let a = service_advice("tracepoint", Some(3), service, true, None);
        assert!(a.starts_with("kernel.perf_event_paranoid=3 (Debian"), "{a}");
        assert!(
            a.contains("needs CAP_SYS_ADMIN") && a.contains("kernel.perf_event_paranoid=2"),
            "{a}"
        );
        assert!(!a.contains("--backend") && !a.contains('\n'), "{a}");
        let a = service_advice("tracepoint", Some(3), service, true, Some("fentry"));
        assert!(a.contains("--backend fentry"), "{a}");
        // Paranoid 2, or a failure that is not a refusal: not the sysctl.
        let a = service_advice("tracepoint", Some(2), service, true, None);
        assert!(
            !a.contains("perf_event_paranoid") && a.contains("security policy"),
            "{a}"
        );
        let a = service_advice("tracepoint", Some(3), service, false, None);
        assert!(!a.contains("perf_event_paranoid"), "{a}");
        // CAP_SYS_ADMIN held: paranoid 3 is not the cause.
        let a = service_advice(
            "tracepoint",
            Some(3),
            caps(&[Cap::SysAdmin, Cap::Bpf]),
            true,
            None,
        );
        assert!(!a.contains("perf_event_paranoid"), "{a}");
        // Refused without CAP_DAC_READ_SEARCH: tracefs, before the sysctl.
        let a = service_advice(
            "tracepoint",
            Some(3),
            caps(&[Cap::Bpf, Cap::Perfmon]),
            true,
            None,
        );
        assert!(
            a.starts_with("the service lacks CAP_DAC_READ_SEARCH"),
            "{a}"
        );
        // kprobe's own write into tracefs.
        let a = service_advice("kprobe", Some(2), service, true, Some("fentry"));
        assert!(
            a.starts_with("the kprobe backend writes kprobe_events")
                && a.contains("CAP_DAC_OVERRIDE"),
            "{a}"
        );
        assert!(
            !a.contains("perf_event_paranoid") && a.contains("--backend fentry"),
            "{a}"
        );
        let a = service_advice("kprobe", Some(3), service, true, None);
        assert!(
            a.contains("CAP_DAC_OVERRIDE") && a.contains("needs CAP_SYS_ADMIN"),
            "{a}"
        );
        let with_override = Caps(service.0 | 1 << Cap::DacOverride as u32);
        let a = service_advice("kprobe", Some(3), with_override, true, None);
        assert!(
            a.starts_with("kernel.perf_event_paranoid=3 (Debian)"),
            "{a}"
        );
        // A missing capability comes first.
        let a = service_advice("tracepoint", Some(3), caps(&[Cap::Bpf]), true, None);
        assert!(a.starts_with("the service lacks CAP_PERFMON"), "{a}");
    }
}
