//! The backends, as one table. A backend is a thin set of entry points
//! over the shared BPF handlers: the programs that see a completed send or
//! receive, and those that see the syscall around it. Every backend also
//! loads [`SHARED_PROGRAMS`]. docs/backends.md says which hook each
//! attaches on which kernel.
//!
//! Adding a backend is one entry in [`BACKENDS`]: `--backend auto` tries
//! them in the table's order, `doctor` describes them from it, and the
//! loader enables exactly the programs an entry lists.

use serde::Serialize;

use crate::capture::facts::KernelFacts;

/// How libbpf attaches a program, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// libbpf attaches it from its section name.
    Libbpf,
    /// A kretprobe on this kernel function, made through tracefs with a
    /// large maxactive (libbpf cannot set it; see `kretprobe.rs`).
    ReturnProbe(&'static str),
    /// The twin of a fentry/fexit program: attached by the loader before
    /// every libbpf program, so that on the shared trampoline it runs
    /// after its primary (the newest link runs first), and does the
    /// primary's work when the kernel skipped it (backend_fentry.bpf.h, "twin
    /// programs").
    Twin,
}

/// One BPF program of the object, by its name there.
#[derive(Clone, Copy, Debug)]
pub struct Prog {
    pub name: &'static str,
    /// Whether this kernel has what the program hooks.
    pub when: fn(&KernelFacts) -> bool,
    pub attach: Attach,
}

fn always(_: &KernelFacts) -> bool {
    true
}

/// mptcp_sendmsg/mptcp_recvmsg exist only with CONFIG_MPTCP (Debian's
/// 5.10 cloud kernel has none).
fn has_mptcp(facts: &KernelFacts) -> bool {
    facts.has_mptcp
}

/// Before 6.5 (commit c5c37af6ecad), sendfile and splice into TCP went
/// through tcp_sendpage instead of tcp_sendmsg.
fn has_tcp_sendpage(facts: &KernelFacts) -> bool {
    facts.has_tcp_sendpage
}

/// io_uring requests on sockets are rows made at their completion, with
/// the issue as start, where both tracepoints carry the request (5.19+).
fn has_uring_submit_req(facts: &KernelFacts) -> bool {
    facts.uring_complete_req && facts.uring_submit_req
}

fn has_uring_submit_sqe(facts: &KernelFacts) -> bool {
    facts.uring_complete_req && !facts.uring_submit_req && facts.uring_submit_sqe_req
}

fn has_uring_requests(facts: &KernelFacts) -> bool {
    has_uring_submit_req(facts) || has_uring_submit_sqe(facts)
}

/// A request's CQE that overflowed the CQ ring never reaches
/// io_uring_complete; io_uring_cqe_overflow (5.19) makes its row.
fn has_uring_overflow(facts: &KernelFacts) -> bool {
    has_uring_requests(facts) && facts.uring_cqe_overflow
}

const fn prog(name: &'static str) -> Prog {
    Prog {
        name,
        when: always,
        attach: Attach::Libbpf,
    }
}

const fn prog_if(name: &'static str, when: fn(&KernelFacts) -> bool) -> Prog {
    Prog {
        name,
        when,
        attach: Attach::Libbpf,
    }
}

/// A program and its twin (`<name>_twin`), when `when` holds; the twin
/// only where the kernel can preempt a program (`twin_when`).
const fn twins_if(
    name: &'static str,
    twin: &'static str,
    when: fn(&KernelFacts) -> bool,
    twin_when: fn(&KernelFacts) -> bool,
) -> [Prog; 2] {
    [
        Prog {
            name,
            when,
            attach: Attach::Libbpf,
        },
        Prog {
            name: twin,
            when: twin_when,
            attach: Attach::Twin,
        },
    ]
}

const fn twins(name: &'static str, twin: &'static str) -> [Prog; 2] {
    twins_if(name, twin, always, preemptible)
}

/// Twins cost a second program run per hook, and a trampoline holds 38
/// links (BPF_MAX_TRAMP_LINKS): only where a skipped run can happen.
fn preemptible(facts: &KernelFacts) -> bool {
    facts.programs_preemptible
}

const fn return_probe(name: &'static str, func: &'static str) -> Prog {
    Prog {
        name,
        when: always,
        attach: Attach::ReturnProbe(func),
    }
}

/// The programs every backend loads: where the io_uring tracepoints carry
/// the request (5.19+), at io_uring submit and completion for one row per
/// socket request with its latency (docs/kernels.md, "io_uring"). BTF tracepoints
/// (tp_btf), attached through bpf() alone, with no perf event.
pub const SHARED_PROGRAMS: &[Prog] = &[
    prog_if("uring_submit_req", has_uring_submit_req),
    prog_if("uring_submit_sqe", has_uring_submit_sqe),
    prog_if("uring_complete_tp", has_uring_requests),
    prog_if("uring_overflow_tp", has_uring_overflow),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Fentry,
    Tracepoint,
    Kprobe,
}

/// A backend: what it is called, what it needs, and its programs.
#[derive(Debug)]
pub struct BackendDef {
    pub backend: Backend,
    /// The name `--backend` takes and the manifest records.
    pub name: &'static str,
    /// What it sees an operation with (for doctor and the README).
    pub sees: &'static str,
    /// What the kernel must allow.
    pub needs: &'static str,
    /// Why it cannot run here, when that is known before trying.
    pub precondition: fn(&KernelFacts) -> Result<(), &'static str>,
    /// It needs tracefs (classic tracepoints' ids, kprobe_events).
    pub needs_tracefs: bool,
    pub programs: &'static [Prog],
}

fn no_precondition(_: &KernelFacts) -> Result<(), &'static str> {
    Ok(())
}

/// The tracepoint and kprobe backends read kernel memory with
/// bpf_probe_read_kernel(), which lockdown=confidentiality removes.
const NO_PROBE_READ_KERNEL: &str = "this kernel refuses bpf_probe_read_kernel() (lockdown=confidentiality), which this backend reads kernel memory with; the fentry backend does not";

fn needs_kprobes(facts: &KernelFacts) -> Result<(), &'static str> {
    if !facts.probe_read_kernel {
        Err(NO_PROBE_READ_KERNEL)
    } else if facts.kprobes {
        Ok(())
    } else {
        Err(
            "this kernel has no kprobes (CONFIG_KPROBES is off; no kprobe PMU, no tracefs kprobe_events)",
        )
    }
}

fn needs_sock_tracepoints(facts: &KernelFacts) -> Result<(), &'static str> {
    if !facts.probe_read_kernel {
        Err(NO_PROBE_READ_KERNEL)
    } else if facts.sock_tracepoints {
        Ok(())
    } else {
        Err("this kernel has no sock:sock_send_length tracepoint (it arrived in 6.3)")
    }
}

/// The fentry backend's programs, each with its twin (see [`Attach::Twin`];
/// loaded only where the kernel can preempt a program): the syscalls'
/// part, without syscall tracepoints (x86_64 syscall wrappers and the
/// socket file operations; see the BPF source and docs/backends.md), then
/// the protocol functions that make the rows.
const FENTRY_PROGRAMS: [Prog; 42] = flatten([
    twins("fentry_sys_sendto", "fentry_sys_sendto_twin"),
    twins("fentry_sys_sendmsg", "fentry_sys_sendmsg_twin"),
    twins("fentry_sys_sendmmsg", "fentry_sys_sendmmsg_twin"),
    twins("fentry_sys_recvfrom", "fentry_sys_recvfrom_twin"),
    twins("fentry_sys_recvmsg", "fentry_sys_recvmsg_twin"),
    twins("fentry_sys_recvmmsg", "fentry_sys_recvmmsg_twin"),
    twins("fentry_sock_write_iter", "fentry_sock_write_iter_twin"),
    twins("fentry_sock_read_iter", "fentry_sock_read_iter_twin"),
    twins("fentry_sys_sendfile64", "fentry_sys_sendfile64_twin"),
    twins("fentry_sys_splice", "fentry_sys_splice_twin"),
    twins("fexit_sys_sendfile64", "fexit_sys_sendfile64_twin"),
    twins("fexit_sys_splice", "fexit_sys_splice_twin"),
    twins("fexit_tcp_sendmsg", "fexit_tcp_sendmsg_twin"),
    twins("fexit_udp_sendmsg", "fexit_udp_sendmsg_twin"),
    twins("fexit_udpv6_sendmsg", "fexit_udpv6_sendmsg_twin"),
    twins_if(
        "fexit_tcp_sendpage",
        "fexit_tcp_sendpage_twin",
        has_tcp_sendpage,
        preemptible_with_tcp_sendpage,
    ),
    twins("fexit_tcp_recvmsg", "fexit_tcp_recvmsg_twin"),
    twins("fexit_udp_recvmsg", "fexit_udp_recvmsg_twin"),
    twins("fexit_udpv6_recvmsg", "fexit_udpv6_recvmsg_twin"),
    twins_if(
        "fexit_mptcp_sendmsg",
        "fexit_mptcp_sendmsg_twin",
        has_mptcp,
        preemptible_with_mptcp,
    ),
    twins_if(
        "fexit_mptcp_recvmsg",
        "fexit_mptcp_recvmsg_twin",
        has_mptcp,
        preemptible_with_mptcp,
    ),
]);

fn preemptible_with_tcp_sendpage(facts: &KernelFacts) -> bool {
    facts.programs_preemptible && facts.has_tcp_sendpage
}

fn preemptible_with_mptcp(facts: &KernelFacts) -> bool {
    facts.programs_preemptible && facts.has_mptcp
}

const fn flatten<const N: usize, const M: usize>(pairs: [[Prog; 2]; N]) -> [Prog; M] {
    assert!(M == 2 * N);
    let mut out = [pairs[0][0]; M];
    let mut i = 0;
    while i < N {
        out[2 * i] = pairs[i][0];
        out[2 * i + 1] = pairs[i][1];
        i += 1;
    }
    out
}

/// Every backend, in the order `--backend auto` tries them: cheapest per
/// operation first. fentry runs one program per operation and no sys_exit
/// program; the tracepoint backend adds a sys_exit program on
/// recvfrom/recvmsg; kprobes trap at entry and at return (README,
/// "Backends").
pub const BACKENDS: &[BackendDef] = &[
    BackendDef {
        backend: Backend::Fentry,
        name: "fentry",
        sees: "fexit on tcp_sendmsg, tcp_recvmsg, udp_sendmsg, udp_recvmsg, udpv6_sendmsg, udpv6_recvmsg, mptcp_sendmsg, mptcp_recvmsg (and tcp_sendpage before 6.5); fentry on the socket syscalls and sock_read_iter/sock_write_iter (no syscall tracepoint); twin programs where the kernel preempts programs (docs/backends.md)",
        needs: "BPF trampolines (5.5+) and a kernel that allows them",
        precondition: no_precondition,
        // fentry/fexit and tp_btf attach through bpf() alone.
        needs_tracefs: false,
        programs: &FENTRY_PROGRAMS,
    },
    BackendDef {
        backend: Backend::Tracepoint,
        name: "tracepoint",
        sees: "tp_btf/sock_send_length and sock_recv_length (MPTCP too), the syscall tracepoints sys_enter_* of the socket syscalls, read/write/readv/writev, sendfile64 and splice, sys_exit_{sendfile64,splice}, and sys_exit_{recvfrom,recvmsg,recvmmsg} for unconnected UDP peers",
        needs: "kernel 6.3+",
        precondition: needs_sock_tracepoints,
        needs_tracefs: true,
        programs: &[
            // What the syscalls give a row (the start for Latency, the
            // MSG flags, the address arguments, one row per
            // sendfile/splice): the syscall tracepoints, at entry, and at
            // the exit of sendfile and splice (the kernel cuts them into
            // chunks, which the socket tracepoints see and drop). They put
            // every thread of the host on the syscall slow path; the
            // fentry and kprobe backends use none (docs/backends.md).
            prog("sys_enter_sendto"),
            prog("sys_enter_sendmsg"),
            prog("sys_enter_sendmmsg"),
            prog("sys_enter_recvfrom"),
            prog("sys_enter_recvmsg"),
            prog("sys_enter_recvmmsg"),
            prog("sys_enter_write"),
            prog("sys_enter_writev"),
            prog("sys_enter_sendfile64"),
            prog("sys_enter_splice"),
            prog("sys_enter_read"),
            prog("sys_enter_readv"),
            prog("sys_exit_sendfile64"),
            prog("sys_exit_splice"),
            prog("tp_sock_send_length"),
            prog("tp_sock_recv_length"),
            prog("tp_exit_recvfrom"),
            prog("tp_exit_recvmsg"),
            prog("tp_exit_recvmmsg"),
        ],
    },
    BackendDef {
        backend: Backend::Kprobe,
        name: "kprobe",
        sees: "kprobe + kretprobe on the same functions as fentry",
        needs: "CONFIG_KPROBES",
        precondition: needs_kprobes,
        needs_tracefs: true,
        programs: &[
            prog("kp_sys_sendto"),
            prog("kp_sys_sendmsg"),
            prog("kp_sys_sendmmsg"),
            prog("kp_sys_recvfrom"),
            prog("kp_sys_recvmsg"),
            prog("kp_sys_recvmmsg"),
            prog("kp_sock_write_iter"),
            prog("kp_sock_read_iter"),
            prog("kp_sys_sendfile64"),
            prog("kp_sys_splice"),
            return_probe("krp_sys_sendfile64", "__x64_sys_sendfile64"),
            return_probe("krp_sys_splice", "__x64_sys_splice"),
            prog("kp_tcp_sendmsg"),
            return_probe("krp_tcp_sendmsg", "tcp_sendmsg"),
            prog("kp_udp_sendmsg"),
            return_probe("krp_udp_sendmsg", "udp_sendmsg"),
            prog("kp_udpv6_sendmsg"),
            return_probe("krp_udpv6_sendmsg", "udpv6_sendmsg"),
            prog_if("kp_tcp_sendpage", has_tcp_sendpage),
            Prog {
                name: "krp_tcp_sendpage",
                when: has_tcp_sendpage,
                attach: Attach::ReturnProbe("tcp_sendpage"),
            },
            prog("kp_tcp_recvmsg"),
            return_probe("krp_tcp_recvmsg", "tcp_recvmsg"),
            prog("kp_udp_recvmsg"),
            return_probe("krp_udp_recvmsg", "udp_recvmsg"),
            prog("kp_udpv6_recvmsg"),
            return_probe("krp_udpv6_recvmsg", "udpv6_recvmsg"),
            prog_if("kp_mptcp_sendmsg", has_mptcp),
            Prog {
                name: "krp_mptcp_sendmsg",
                when: has_mptcp,
                attach: Attach::ReturnProbe("mptcp_sendmsg"),
            },
            prog_if("kp_mptcp_recvmsg", has_mptcp),
            Prog {
                name: "krp_mptcp_recvmsg",
                when: has_mptcp,
                attach: Attach::ReturnProbe("mptcp_recvmsg"),
            },
        ],
    },
];

impl BackendDef {
    pub fn by_name(name: &str) -> Option<&'static BackendDef> {
        BACKENDS.iter().find(|b| b.name == name)
    }

    /// The names `--backend` accepts: `auto`, then the table's.
    pub fn choices() -> Vec<&'static str> {
        std::iter::once("auto")
            .chain(BACKENDS.iter().map(|b| b.name))
            .collect()
    }

    /// The programs to load on this kernel: the shared ones and this
    /// backend's own, where the kernel has what they hook.
    pub fn programs_for<'a>(&'a self, facts: &'a KernelFacts) -> impl Iterator<Item = &'a Prog> {
        SHARED_PROGRAMS
            .iter()
            .chain(self.programs)
            .filter(move |p| (p.when)(facts))
    }
}

/// The order `--backend auto` tries the backends in on this kernel: the
/// table's (cheapest first), except where the kernel can preempt a BPF
/// program. There a preempted trampoline or tracepoint program makes the
/// kernel skip other tasks' runs of it (docs/backends.md, "Preempted
/// programs"); kprobes run with preemption off and lose nothing, so they
/// come first, at a higher cost per operation and without Socket Cookie.
pub fn auto_order(facts: &KernelFacts) -> Vec<&'static BackendDef> {
    let mut order: Vec<_> = BACKENDS.iter().collect();
    if facts.programs_preemptible {
        order.sort_by_key(|b| b.backend != Backend::Kprobe);
    }
    order
}

/// The backends to try for a `--backend` value, in order.
pub fn candidates(choice: &str, facts: &KernelFacts) -> Vec<&'static BackendDef> {
    match choice {
        "auto" => auto_order(facts),
        name => BackendDef::by_name(name).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::NwtraceSkelBuilder;
    use libbpf_rs::skel::SkelBuilder;
    use std::collections::BTreeSet;
    use std::mem::MaybeUninit;

    fn test_facts() -> KernelFacts {
        KernelFacts {
            task_storage: true,
            recvmsg_nargs: [5; 4],
            has_tcp_sendpage: false,
            has_mptcp: true,
            sock_tracepoints: true,
            uring_submit_req: true,
            uring_submit_sqe_req: false,
            uring_complete_req: true,
            uring_cqe_overflow: true,
            uring_complete_cqe: false,
            socket_cookie_tracing: true,
            programs_preemptible: false,
            kprobes: true,
            probe_read_kernel: true,
        }
    }

    /// Opening the object parses the ELF and needs no privileges.
    fn object_programs() -> BTreeSet<String> {
        let mut storage = MaybeUninit::uninit();
        let open = NwtraceSkelBuilder::default()
            .open(&mut storage)
            .expect("opening the BPF object");
        use libbpf_rs::skel::OpenSkel;
        open.open_object()
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect()
    }

    /// Every program of the object is loaded by some backend, and no list
    /// names one twice (the socket tracepoint programs serve both the
    /// tracepoint and the fentry backend).
    #[test]
    fn every_program_belongs_to_the_table() {
        let in_object = object_programs();
        let mut claimed = BTreeSet::new();
        let lists = std::iter::once(SHARED_PROGRAMS).chain(BACKENDS.iter().map(|b| b.programs));
        for list in lists {
            let mut in_list = BTreeSet::new();
            for p in list {
                assert!(
                    in_object.contains(p.name),
                    "{} is not in the object",
                    p.name
                );
                assert!(in_list.insert(p.name), "{} listed twice", p.name);
                claimed.insert(p.name.to_string());
            }
        }
        assert_eq!(claimed, in_object, "programs no backend loads");
    }

    /// Each twin follows its primary, named after it, under the same
    /// condition or a stricter one.
    #[test]
    fn every_twin_has_its_primary() {
        for b in BACKENDS {
            for (i, p) in b.programs.iter().enumerate() {
                if p.attach == Attach::Twin {
                    let primary = &b.programs[i - 1];
                    assert_eq!(format!("{}_twin", primary.name), p.name);
                    assert_eq!(primary.attach, Attach::Libbpf);
                }
            }
        }
    }

    #[test]
    fn names_are_unique_and_auto_tries_all_in_order() {
        let names: Vec<_> = BACKENDS.iter().map(|b| b.name).collect();
        assert_eq!(names, ["fentry", "tracepoint", "kprobe"]);
        let mut facts = test_facts();
        let auto: Vec<_> = candidates("auto", &facts).iter().map(|b| b.name).collect();
        assert_eq!(auto, names);
        facts.programs_preemptible = true;
        let auto: Vec<_> = candidates("auto", &facts).iter().map(|b| b.name).collect();
        assert_eq!(auto, ["kprobe", "fentry", "tracepoint"]);
        assert_eq!(candidates("kprobe", &facts)[0].backend, Backend::Kprobe);
        assert!(candidates("nope", &facts).is_empty());
    }
}
