//! `nwtrace doctor`: what this kernel allows, and which backend `record`
//! would use. Every backend is tried for real (load and attach, then
//! detach), since BTF alone does not prove that a program attaches.
//!
//! The findings are one [`DoctorReport`], printed as aligned text for a
//! person or as JSON (`--format json`, schema_version 1) for scripts.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::capture::backends::{BACKENDS, Backend, BackendDef};
use crate::capture::facts::{self, KernelFacts};
use crate::capture::load::{self, Filters, LoadOptions};
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
    /// The backend `record --backend auto` would use; None when none works.
    pub record_would_use: Option<&'static str>,
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
}

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

fn try_backend(def: &'static BackendDef, facts: &KernelFacts) -> BackendVerdict {
    let tracefs = facts::tracefs_root().unwrap_or_default();
    let filters = Filters::default();
    let opts = LoadOptions {
        tracefs: &tracefs,
        filters: &filters,
        columns: Default::default(),
        ring_size: 4096,
    };
    let (works, error, hint) = match load::load_and_attach(def, facts, &opts) {
        // Dropping it detaches and unloads.
        Ok(loaded) => {
            drop(loaded);
            (true, None, None)
        }
        Err(e) => (false, Some(load::one_line(&e)), hint(def.backend, &e)),
    };
    BackendVerdict {
        name: def.name,
        works,
        error,
        hint,
        sees: def.sees,
        needs: def.needs,
        socket_cookie: load::backend_has_cookie(def, facts),
    }
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
        record_would_use: None,
    };
    if !btf || !privileged {
        return Ok(report);
    }
    let facts = KernelFacts::probe()?;
    report.backends = BACKENDS.iter().map(|b| try_backend(b, &facts)).collect();
    report.record_would_use = report.backends.iter().find(|v| v.works).map(|v| v.name);
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
        let text = match (&v.error, v.hint) {
            (None, _) => format!("works (loaded, attached, detached){cookie}"),
            (Some(e), Some(h)) => format!("does not work: {e} [{h}]"),
            (Some(e), None) => format!("does not work: {e}"),
        };
        writeln!(out, "{:<18}{text}", v.name)?;
    }
    writeln!(out)?;
    let order: Vec<_> = BACKENDS.iter().map(|b| b.name).collect();
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

pub fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let report = examine()?;
    let mut out = io::stdout().lock();
    match args.format {
        DoctorFormat::Text => write_text(&mut out, &report)?,
        DoctorFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(if report.record_would_use.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
