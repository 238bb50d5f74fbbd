//! `nwtrace doctor`: what this kernel allows, and which backend `record`
//! would use. Every backend is tried for real (load and attach, then
//! detach), since BTF alone does not prove that a program attaches.
//!
//! The findings are one [`DoctorReport`], printed as aligned text for a
//! person or as JSON (`--format json`, schema_version 1) for scripts.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Result;
use serde::Serialize;

use crate::capture::backends::{self, BACKENDS, Backend, BackendDef};
use crate::capture::facts::{self, KernelFacts};
use crate::capture::load::{self, Filters, LoadOptions};
use crate::capture::privileges::{self, Caps, SERVICE_CAPS};
use crate::cli::{DoctorArgs, DoctorFormat};

#[derive(Debug, Serialize)]
pub struct DoctorReport {
    pub schema_version: u32,
    pub kernel: String,
    pub btf: bool,
    pub lockdown: String,
    pub privileged: bool,
    /// Where tracefs is mounted, if it is (nwtrace mounts it when it may).
    pub tracefs: Option<String>,
    pub tracefs_note: String,
    /// Absent without BTF or privileges: nothing can be probed then.
    pub facts: Option<KernelFacts>,
    /// MPTCP: null when the kernel has none, else net.mptcp.enabled.
    pub mptcp_enabled: Option<bool>,
    pub backends: Vec<BackendVerdict>,
    /// The order `record --backend auto` tries the backends in here.
    pub auto_order: Vec<&'static str>,
    /// The backend `record --backend auto` would use; None when none works.
    pub record_would_use: Option<&'static str>,
    /// With --as-service: the same backends tried as the service runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceReport>,
}

/// `doctor --as-service`: every backend tried by a child that holds only
/// the unit's capabilities, as a non-root user (as DynamicUser=yes does).
#[derive(Debug, Serialize)]
pub struct ServiceReport {
    /// The capabilities the unit grants (AmbientCapabilities=).
    pub capabilities: Vec<&'static str>,
    /// Where they were read: the unit file and drop-ins, or the packaged
    /// default when no unit is installed.
    pub capabilities_from: String,
    /// The user the child ran as.
    pub uid: u32,
    /// kernel.perf_event_paranoid; null when unreadable.
    pub perf_event_paranoid: Option<i32>,
    pub backends: Vec<ServiceVerdict>,
    /// The backend the service would use; None: the service cannot start.
    pub backend: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServiceVerdict {
    pub name: String,
    pub works: bool,
    /// The error the child met, in one line.
    pub error: Option<String>,
    /// What is missing and how to fix it, in one line.
    pub fix: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BackendVerdict {
    pub name: &'static str,
    pub works: bool,
    /// Why not, in one line, when it does not work.
    pub error: Option<String>,
    /// What the error means for the user (a refusal by policy is not the
    /// same as unsupported).
    pub hint: Option<&'static str>,
    pub sees: &'static str,
    pub needs: &'static str,
    /// Whether `--columns cookie` has values with this backend here (its
    /// socket hooks are tracing programs, and the kernel is 5.12+); the
    /// column is empty otherwise.
    pub socket_cookie: bool,
    /// The failure was a refusal (EPERM or EACCES).
    pub denied: bool,
    /// The syscall tracepoints this backend attached here
    /// (`syscalls:sys_enter_sendto`, ...), read from the sections of the
    /// programs it loaded: each one puts every thread of the host on the
    /// syscall slow path while attached (docs/backends.md). Empty for a
    /// backend that did not load.
    pub syscall_tracepoints: Vec<String>,
    /// The lockdown mode that refused it ("confidentiality"), when the
    /// kernel is locked down so and the failure is a refusal (EPERM,
    /// EINVAL from the verifier, a helper or tracefs it removes).
    pub refused_by_lockdown: Option<String>,
}

/// What lockdown=confidentiality takes away, for the backends it refuses.
const LOCKDOWN_HINT: &str = "refused by kernel lockdown (confidentiality): it removes bpf_probe_read_kernel() and locks tracefs and kprobes; only the fentry backend, which reads by BTF loads, works under it (kernel 6.2+; docs/backends.md, \"Kernel lockdown\")";

/// A hint for the failures users meet, keyed on the OS error behind them.
fn hint(backend: Backend, err: &anyhow::Error) -> Option<&'static str> {
    let kind = err
        .chain()
        .find_map(|c| c.downcast_ref::<libbpf_rs::Error>())
        .map(libbpf_rs::Error::kind);
    match (backend, kind) {
        (_, Some(libbpf_rs::ErrorKind::PermissionDenied)) => Some(
            "EPERM with BPF privileges: a security policy (lockdown, an LSM) refuses this program type; this is not the same as unsupported",
        ),
        (Backend::Kprobe, Some(libbpf_rs::ErrorKind::NotFound)) => {
            Some("this kernel has no kprobes (CONFIG_KPROBES), or the function is not probeable")
        }
        (Backend::Fentry, Some(libbpf_rs::ErrorKind::NotFound)) => {
            Some("the kernel lacks the function or BPF trampolines")
        }
        _ => None,
    }
}

fn try_backend(
    def: &'static BackendDef,
    facts: &KernelFacts,
    tracefs: Result<&Path, &str>,
    lockdown: &str,
) -> BackendVerdict {
    let filters = Filters::default();
    let opts = LoadOptions {
        tracefs,
        filters: &filters,
        columns: Default::default(),
        ring_size: 4096,
        thinning: Default::default(),
    };
    let mut syscall_tps = Vec::new();
    let (works, error, hint, denied, refused_by_lockdown) =
        match load::load_and_attach(def, facts, &opts) {
            // Dropping it detaches and unloads.
            Ok(loaded) => {
                syscall_tps = loaded.syscall_tracepoints();
                drop(loaded);
                (true, None, None, false, None)
            }
            Err(e) => {
                let by_lockdown = lockdown == "confidentiality" && is_refusal(&e);
                (
                    false,
                    Some(load::one_line(&e)),
                    // Once, where the error does not say it already.
                    if by_lockdown && !load::one_line(&e).contains("lockdown") {
                        Some(LOCKDOWN_HINT)
                    } else if by_lockdown {
                        None
                    } else {
                        hint(def.backend, &e)
                    },
                    is_denied(&e),
                    by_lockdown.then(|| lockdown.to_string()),
                )
            }
        };
    BackendVerdict {
        name: def.name,
        works,
        error,
        hint,
        sees: def.sees,
        needs: def.needs,
        socket_cookie: load::backend_has_cookie(def, facts),
        denied,
        syscall_tracepoints: syscall_tps,
        refused_by_lockdown,
    }
}

/// A refusal as lockdown makes them: EPERM/EACCES, EINVAL (the verifier
/// refusing a helper the lockdown removed), or a precondition or tracefs
/// error that names the lockdown.
fn is_refusal(err: &anyhow::Error) -> bool {
    is_denied(err)
        || err.chain().any(|c| {
            c.downcast_ref::<libbpf_rs::Error>()
                .is_some_and(|e| e.kind() == libbpf_rs::ErrorKind::InvalidInput)
                || c.downcast_ref::<io::Error>()
                    .is_some_and(|e| e.raw_os_error() == Some(libc::EINVAL))
                || c.to_string().contains("lockdown")
        })
}

/// EPERM or EACCES anywhere in the error's chain.
fn is_denied(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<libbpf_rs::Error>()
            .is_some_and(|e| e.kind() == libbpf_rs::ErrorKind::PermissionDenied)
            || c.downcast_ref::<io::Error>()
                .is_some_and(|e| matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)))
    })
}

pub fn examine() -> Result<DoctorReport> {
    let btf = facts::check_btf().is_ok();
    let privileged = facts::has_bpf_privileges();
    let was_mounted = facts::tracefs_root();
    let (tracefs, tracefs_note) = match (&was_mounted, privileged) {
        (Some(root), _) => (Some(root.display().to_string()), "mounted".to_string()),
        (None, true) => match facts::ensure_tracefs() {
            Ok(root) => (
                Some(root.display().to_string()),
                "was not mounted; nwtrace mounted it".to_string(),
            ),
            Err(e @ facts::ProbeError::TracefsLockedDown) => (
                None,
                format!("NOT USABLE (the fentry backend needs none): {e}"),
            ),
            Err(e) => (None, format!("NOT MOUNTED: {e}")),
        },
        (None, false) => (
            None,
            "not mounted (nwtrace mounts it when run as root)".to_string(),
        ),
    };
    let mut report = DoctorReport {
        schema_version: 1,
        kernel: facts::kernel_release(),
        btf,
        lockdown: facts::lockdown_mode(privileged),
        privileged,
        tracefs,
        tracefs_note,
        facts: None,
        mptcp_enabled: facts::mptcp_enabled(),
        backends: Vec::new(),
        auto_order: Vec::new(),
        record_would_use: None,
        service: None,
    };
    if !btf || !privileged {
        return Ok(report);
    }
    let facts = KernelFacts::probe()?;
    // Where tracefs cannot be had, the backends that need it are tried
    // anyway, so that their own error says why (a denial names the
    // capability the service lacks); fentry needs none.
    let tracefs_root = facts::tracefs_root().unwrap_or_default();
    let tracefs = Ok(tracefs_root.as_path());
    report.backends = BACKENDS
        .iter()
        .map(|b| try_backend(b, &facts, tracefs, &report.lockdown))
        .collect();
    report.auto_order = backends::auto_order(&facts)
        .iter()
        .map(|b| b.name)
        .collect();
    report.record_would_use = report
        .auto_order
        .iter()
        .find(|name| report.backends.iter().any(|v| v.works && v.name == **name))
        .copied();
    report.facts = Some(facts);
    Ok(report)
}

/// Whether MPTCP sockets exist here, and which backends see them.
fn mptcp_text(enabled: Option<bool>, facts: &KernelFacts) -> String {
    let state = match enabled {
        None => return "not in this kernel (no net.mptcp): no MPTCP socket can exist".to_string(),
        Some(false) => "in the kernel, disabled (sysctl net.mptcp.enabled=0)",
        Some(true) => "enabled",
    };
    let functions = if facts.has_mptcp {
        "fentry and kprobe see it through mptcp_sendmsg/mptcp_recvmsg"
    } else {
        "fentry and kprobe do NOT see it (no mptcp_sendmsg/mptcp_recvmsg in BTF)"
    };
    format!("{state}: rows as TCP; tracepoint sees it through the sock tracepoints; {functions}")
}

fn write_text(out: &mut impl Write, r: &DoctorReport) -> io::Result<()> {
    let mut line = |what: &str, value: &str| writeln!(out, "{what:<18}{value}");
    line("kernel", &r.kernel)?;
    line(
        "btf",
        if r.btf {
            "present (/sys/kernel/btf/vmlinux)"
        } else {
            "MISSING: nwtrace needs CONFIG_DEBUG_INFO_BTF=y"
        },
    )?;
    line("lockdown", &r.lockdown)?;
    line(
        "privileges",
        if r.privileged {
            "yes (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
        } else {
            "NO: run as root"
        },
    )?;
    let tracefs = match &r.tracefs {
        Some(root) => format!("{} at {root}", r.tracefs_note),
        None => r.tracefs_note.clone(),
    };
    line("tracefs", &tracefs)?;
    let Some(facts) = &r.facts else {
        return writeln!(out, "\nno backend can be tried without BTF and privileges");
    };
    line(
        "per-thread state",
        if facts.task_storage {
            "task storage"
        } else {
            "LRU hash by thread id (no task storage for tracing programs before 5.11)"
        },
    )?;
    line(
        "recvmsg arguments",
        &format!(
            "tcp_recvmsg {}, udp_recvmsg {}, udpv6_recvmsg {}, mptcp_recvmsg {} (6 before 5.19, then 5, 4 from 6.18)",
            facts.recvmsg_nargs[0],
            facts.recvmsg_nargs[1],
            facts.recvmsg_nargs[2],
            if facts.has_mptcp {
                facts.recvmsg_nargs[3].to_string()
            } else {
                "absent".to_string()
            }
        ),
    )?;
    line(
        "tcp_sendpage",
        if facts.has_tcp_sendpage {
            "present (before 6.5): sendfile/splice chunks into TCP go there; their one row per syscall comes from sys_exit"
        } else {
            "absent: sendfile/splice go through tcp_sendmsg (6.5 and later)"
        },
    )?;
    line("mptcp", &mptcp_text(r.mptcp_enabled, facts))?;
    line(
        "kernel reads",
        if facts.probe_read_kernel {
            "bpf_probe_read_kernel() allowed"
        } else {
            "bpf_probe_read_kernel() REFUSED (lockdown=confidentiality): only the fentry backend, which reads by BTF loads (6.2+), can work"
        },
    )?;
    line(
        "sock tracepoints",
        if facts.sock_tracepoints {
            "present (sock_send_length, sock_recv_length)"
        } else {
            "absent (they arrived in 6.3)"
        },
    )?;
    line(
        "io_uring requests",
        if facts.uring_complete_req && (facts.uring_submit_req || facts.uring_submit_sqe_req) {
            "tracepoints carry the request: one row per send/recv request, with its latency"
        } else if facts.uring_submit_sqe_req || facts.uring_submit_req || facts.uring_complete_req {
            "tracepoints incomplete: io_uring rows come from the socket layer, no latency"
        } else {
            "no io_uring tracepoints with the request (before 5.19, or no CONFIG_IO_URING): rows from the socket layer, no latency"
        },
    )?;
    line(
        "socket cookie",
        if facts.socket_cookie_tracing {
            "tracing programs may read it (5.12+): --columns cookie has values with the tracepoint and fentry backends, never with kprobe"
        } else {
            "not for tracing programs before 5.12: --columns cookie is empty with every backend"
        },
    )?;
    writeln!(out, "\n{:<18}result", "backend")?;
    for v in &r.backends {
        let cookie = if v.socket_cookie {
            "; Socket Cookie: yes"
        } else {
            "; Socket Cookie: empty"
        };
        let tps = match v.syscall_tracepoints.len() {
            0 => "; syscall tracepoints: none".to_string(),
            n => format!(
                "; syscall tracepoints: {n} ({})",
                v.syscall_tracepoints
                    .iter()
                    .map(|t| t.trim_start_matches("syscalls:"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let text = match (&v.error, v.hint) {
            (None, _) => format!("works (loaded, attached, detached){cookie}{tps}"),
            (Some(e), Some(h)) => format!("does not work: {e} [{h}]"),
            (Some(e), None) => format!("does not work: {e}"),
        };
        writeln!(out, "{:<18}{text}", v.name)?;
    }
    writeln!(out)?;
    let order = &r.auto_order;
    match r.record_would_use {
        Some(b) => writeln!(
            out,
            "{:<18}{b} (auto order: {})",
            "record would use",
            order.join(", ")
        ),
        None => writeln!(
            out,
            "{:<18}NOTHING: no backend works on this kernel",
            "record would use"
        ),
    }
}

/// Where systemd looks for the unit, in its order of precedence, and for
/// drop-ins.
const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
];
const UNIT: &str = "nwtrace.service";
/// The user the child runs as: nobody, as unprivileged as a DynamicUser.
const SERVICE_UID: u32 = 65534;

/// The unit's AmbientCapabilities, as systemd would read them, and where
/// from; the packaged set when no unit is installed.
fn service_caps() -> Result<(Caps, String)> {
    let Some(unit) = UNIT_DIRS
        .iter()
        .map(|d| Path::new(d).join(UNIT))
        .find(|p| p.exists())
    else {
        return Ok((
            Caps::parse(SERVICE_CAPS).map_err(anyhow::Error::msg)?,
            format!("the packaged unit; {UNIT} is not installed"),
        ));
    };
    let mut files = vec![unit];
    let mut dropins: Vec<_> = UNIT_DIRS
        .iter()
        .filter_map(|d| std::fs::read_dir(Path::new(d).join(format!("{UNIT}.d"))).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    dropins.sort_by_key(|p| p.file_name().map(|n| n.to_owned()));
    files.extend(dropins);
    let texts = files
        .iter()
        .map(|f| std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
        .collect::<Result<Vec<_>>>()?;
    let list = privileges::unit_ambient_caps(texts.iter().map(String::as_str)).unwrap_or_default();
    let caps = Caps::parse(&list)
        .map_err(|e| anyhow::anyhow!("{}: AmbientCapabilities: {e}", files[0].display()))?;
    let from = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((caps, from))
}

/// One backend as the child saw it.
struct ChildVerdict {
    name: String,
    works: bool,
    error: Option<String>,
    denied: bool,
}

/// Runs `nwtrace doctor --format json` in a child holding only `caps` as
/// user SERVICE_UID, and reads its backends.
fn probe_as_service(caps: Caps) -> Result<Vec<ChildVerdict>> {
    let exe = std::env::current_exe()?;
    // The child executes this binary through a descriptor opened here, as
    // root: uid 65534 may not be able to traverse the folders that hold it
    // (a checkout under /root), and the service's user reaches its binary
    // in /usr/bin anyway.
    let exe_file = std::fs::File::open("/proc/self/exe")
        .map_err(|e| anyhow::anyhow!("opening /proc/self/exe: {e}"))?;
    let exec = privileges::ExecArgs::new(
        ["nwtrace", "doctor", "--format", "json"],
        std::env::vars_os().filter(|(k, _)| k != "NO_COLOR"),
        [("NO_COLOR", "1")],
    )?;
    let fd = exe_file.as_raw_fd();
    let mut cmd = Command::new(&exe);
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe syscalls (prctl, setgroups, setres[ug]id,
    // capset, fexecve); it allocates nothing: exec's arrays were built
    // before the fork, and exe_file outlives the child (output() waits).
    unsafe {
        cmd.pre_exec(move || {
            privileges::become_service(caps, SERVICE_UID, SERVICE_UID)?;
            Err(exec.fexecve(fd))
        });
    }
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "could not run {} as uid {SERVICE_UID} with the service's capabilities: {e}",
            exe.display()
        )
    })?;
    drop(exe_file);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        anyhow::anyhow!(
            "doctor as uid {SERVICE_UID} with {} gave no report: {}",
            caps.names().join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if report["privileged"] != true {
        // Without CAP_BPF and CAP_PERFMON the child tries nothing.
        return Ok(BACKENDS
            .iter()
            .map(|b| ChildVerdict {
                name: b.name.to_string(),
                works: false,
                error: None,
                denied: true,
            })
            .collect());
    }
    Ok(report["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| ChildVerdict {
            name: v["name"].as_str().unwrap_or("?").to_string(),
            works: v["works"] == true,
            error: v["error"].as_str().map(str::to_string),
            denied: v["denied"] == true,
        })
        .collect())
}

fn examine_as_service(root: &DoctorReport, caps: Option<&str>) -> Result<ServiceReport> {
    if !privileges::Caps::effective().has(privileges::Cap::SysAdmin) {
        anyhow::bail!(
            "doctor --as-service needs root: it drops to the service's user and capabilities in a child"
        );
    }
    let (caps, from) = match caps {
        Some(list) => (
            Caps::parse(list).map_err(|e| anyhow::anyhow!("--service-caps: {e}"))?,
            "--service-caps".to_string(),
        ),
        None => service_caps()?,
    };
    let paranoid = privileges::perf_event_paranoid();
    let tried = probe_as_service(caps)?;
    let backend = tried.iter().find(|t| t.works).map(|t| t.name.clone());
    let backends = tried
        .into_iter()
        .map(
            |ChildVerdict {
                 name,
                 works,
                 error,
                 denied,
             }| {
                let root_works = root.backends.iter().any(|b| b.name == name && b.works);
                let fix = match (works, root_works) {
                    (true, _) => None,
                    // Unsupported here whoever runs it: root's verdict says why.
                    (false, false) => Some("unsupported here, as root too (see above)".to_string()),
                    (false, true) => Some(privileges::service_advice(
                        &name,
                        paranoid,
                        caps,
                        denied,
                        backend.as_deref(),
                    )),
                };
                ServiceVerdict {
                    name,
                    works,
                    error,
                    fix,
                }
            },
        )
        .collect();
    Ok(ServiceReport {
        capabilities: caps.names(),
        capabilities_from: from,
        uid: SERVICE_UID,
        perf_event_paranoid: paranoid,
        backends,
        backend,
    })
}

fn write_service_text(out: &mut impl Write, s: &ServiceReport) -> io::Result<()> {
    writeln!(
        out,
        "\n{:<18}uid {}, no new privileges, only {} (from {})",
        "as the service",
        s.uid,
        s.capabilities.join(" "),
        s.capabilities_from
    )?;
    let paranoid = match s.perf_event_paranoid {
        Some(p) if p >= 3 => format!(
            "kernel.perf_event_paranoid={p}: on Debian's kernels perf_event_open then needs CAP_SYS_ADMIN (CAP_PERFMON is not enough)"
        ),
        Some(p) => {
            format!("kernel.perf_event_paranoid={p}: CAP_PERFMON is enough for perf_event_open")
        }
        None => "unreadable".to_string(),
    };
    writeln!(out, "{:<18}{paranoid}", "paranoid sysctl")?;
    writeln!(out, "\n{:<18}result as the service", "backend")?;
    for v in &s.backends {
        let text = match (&v.error, &v.fix) {
            (_, None) => "works".to_string(),
            (Some(e), Some(f)) => format!("does not work: {f} ({e})"),
            (None, Some(f)) => format!("does not work: {f}"),
        };
        writeln!(out, "{:<18}{text}", v.name)?;
    }
    writeln!(out)?;
    match &s.backend {
        Some(b) => writeln!(out, "{:<18}{b}", "service would use"),
        None => writeln!(
            out,
            "{:<18}NOTHING: the service cannot start; the lines above say what to change",
            "service would use"
        ),
    }
}

pub fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let mut report = examine()?;
    if args.as_service {
        report.service = Some(examine_as_service(&report, args.service_caps.as_deref())?);
    }
    let mut out = io::stdout().lock();
    match args.format {
        DoctorFormat::Text => {
            write_text(&mut out, &report)?;
            if let Some(s) = &report.service {
                write_service_text(&mut out, s)?;
            }
        }
        DoctorFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    let works = match &report.service {
        Some(s) => s.backend.is_some(),
        None => report.record_would_use.is_some(),
    };
    Ok(if works {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
