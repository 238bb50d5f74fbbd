//! `nwtrace doctor`: what this kernel allows, and which backend `record`
//! would use. Every backend is tried for real (load and attach, then
//! detach), since BTF alone does not prove that a program attaches.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::loader::{self, Backend, KernelFacts, LoadOptions};
use crate::probe;

/// A hint for the failures users meet, keyed on the OS error behind them.
fn hint(backend: Backend, err: &anyhow::Error) -> &'static str {
    let kind = err
        .chain()
        .find_map(|c| c.downcast_ref::<libbpf_rs::Error>())
        .map(libbpf_rs::Error::kind);
    match (backend, kind) {
        (_, Some(libbpf_rs::ErrorKind::PermissionDenied)) => {
            " [EPERM with BPF privileges: a security policy (lockdown, an LSM) refuses this program type; this is not the same as unsupported]"
        }
        (Backend::Kprobe, Some(libbpf_rs::ErrorKind::NotFound)) => {
            " [this kernel has no kprobes (CONFIG_KPROBES), or the function is not probeable]"
        }
        (Backend::Fentry, Some(libbpf_rs::ErrorKind::NotFound)) => {
            " [the kernel lacks the function or BPF trampolines]"
        }
        _ => "",
    }
}

fn lockdown(privileged: bool) -> String {
    let path = Path::new("/sys/kernel/security/lockdown");
    if !path.exists() && privileged {
        // securityfs is often unmounted on minimal systems; mount it (as
        // nwtrace does tracefs) so the answer is known.
        let _ = std::process::Command::new("mount")
            .args(["-t", "securityfs", "securityfs", "/sys/kernel/security"])
            .status();
    }
    // "none [integrity] confidentiality": the bracketed word is in force.
    match std::fs::read_to_string("/sys/kernel/security/lockdown") {
        Ok(text) => text
            .split_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
            .unwrap_or("unknown")
            .to_string(),
        Err(_) => "unknown (securityfs not mounted)".to_string(),
    }
}

/// Whether MPTCP sockets exist here, and which backends see them.
fn mptcp(facts: &KernelFacts) -> String {
    let enabled = std::fs::read_to_string("/proc/sys/net/mptcp/enabled")
        .map(|v| v.trim() == "1")
        .ok();
    let state = match enabled {
        None => "not in this kernel (no net.mptcp)",
        Some(false) => "in the kernel, disabled (sysctl net.mptcp.enabled=0)",
        Some(true) => "enabled",
    };
    if enabled.is_none() {
        return format!("{state}: no MPTCP socket can exist");
    }
    let functions = if facts.has_mptcp {
        "fentry and kprobe see it through mptcp_sendmsg/mptcp_recvmsg"
    } else {
        "fentry and kprobe do NOT see it (no mptcp_sendmsg/mptcp_recvmsg in BTF)"
    };
    format!("{state}: rows as TCP; tracepoint sees it through the sock tracepoints; {functions}")
}

pub fn doctor(verbose: u8) -> Result<ExitCode> {
    let line = |what: &str, value: &str| println!("{what:<18}{value}");
    line("kernel", &probe::kernel_release());
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    line(
        "btf",
        if btf {
            "present (/sys/kernel/btf/vmlinux)"
        } else {
            "MISSING: nwtrace needs CONFIG_DEBUG_INFO_BTF=y"
        },
    );
    let privileged = probe::has_bpf_privileges();
    line("lockdown", &lockdown(privileged));
    line(
        "privileges",
        if privileged {
            "yes (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
        } else {
            "NO: run as root"
        },
    );
    let was_mounted = probe::tracefs_root();
    let tracefs = match (&was_mounted, privileged) {
        (Some(root), _) => format!("mounted at {}", root.display()),
        (None, true) => match probe::ensure_tracefs() {
            Ok(root) => format!("was not mounted; nwtrace mounted it at {}", root.display()),
            Err(e) => format!("NOT MOUNTED: {e}"),
        },
        (None, false) => "not mounted (nwtrace mounts it when run as root)".to_string(),
    };
    line("tracefs", &tracefs);
    if !btf || !privileged {
        println!("\nno backend can be tried without BTF and privileges");
        return Ok(ExitCode::FAILURE);
    }

    let facts = KernelFacts::probe()?;
    line(
        "per-thread state",
        if facts.task_storage {
            "task storage"
        } else {
            "LRU hash by thread id (no task storage for tracing programs before 5.11)"
        },
    );
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
    );
    line(
        "tcp_sendpage",
        if facts.has_tcp_sendpage {
            "present (before 6.5): sendfile/splice chunks into TCP go there; their one row per syscall comes from sys_exit"
        } else {
            "absent: sendfile/splice go through tcp_sendmsg (6.5 and later)"
        },
    );
    line("mptcp", &mptcp(&facts));
    line(
        "sock tracepoints",
        if facts.sock_tracepoints {
            "present (sock_send_length, sock_recv_length)"
        } else {
            "absent (they arrived in 6.3)"
        },
    );

    loader::route_libbpf_log(verbose);
    println!("\n{:<18}result", "backend");
    let tracefs = probe::tracefs_root().unwrap_or_default();
    let opts = LoadOptions {
        tracefs: &tracefs,
        pids: &[],
        comms: &[],
        ring_size: 4096,
    };
    let mut first_working = None;
    for backend in Backend::AUTO_ORDER {
        let mut slots = loader::object_slots();
        match loader::load_and_attach(&mut slots[0], backend, &facts, &opts) {
            Ok(started) => {
                drop(started);
                line(backend.name(), "works (loaded, attached, detached)");
                first_working.get_or_insert(backend);
            }
            Err(e) => line(
                backend.name(),
                &format!(
                    "does not work: {}{}",
                    loader::one_line(&e),
                    hint(backend, &e)
                ),
            ),
        }
    }
    println!();
    match first_working {
        Some(b) => {
            line(
                "record would use",
                &format!("{} (auto order: fentry, tracepoint, kprobe)", b.name()),
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            line(
                "record would use",
                "NOTHING: no backend works on this kernel",
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
