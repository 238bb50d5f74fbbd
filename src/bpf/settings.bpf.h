/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Settings that userspace writes into .rodata before the load (read-only to
 * the programs, so the verifier prunes what a run does not use).
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_SETTINGS_BPF_H
#define NW_SETTINGS_BPF_H

/* Set by userspace before load. */
const volatile __u32 self_tgid = 0;
const volatile bool filter_pids = false;
const volatile bool filter_comms = false;
/* Unread bytes past which a submit wakes the consumer; below it, the
 * consumer drains on its own timer (batched wakeups). */
const volatile __u64 wakeup_bytes = 0;

/* Task storage from tracing programs needs 5.11; before, per-thread state
 * lives in an LRU hash keyed by thread id. */
const volatile bool use_task_storage = true;
/* The fentry backend's twin programs are loaded (see "twin programs"). */
const volatile bool twins_loaded = false;
/* Index of the return value in an fexit context: after the arguments.
 * tcp_recvmsg, udp_recvmsg and udpv6_recvmsg had 6 arguments until their
 * `nonblock` went in 5.19 (commit ec095263a965), then 5 until `addr_len`
 * went too (6.18 has 4). Userspace counts them in the kernel's BTF. */
const volatile int tcp_recvmsg_nargs = 5;
const volatile int udp_recvmsg_nargs = 5;
const volatile int udpv6_recvmsg_nargs = 5;
/* mptcp_recvmsg lost the same arguments in the same commits. */
const volatile int mptcp_recvmsg_nargs = 5;

/*
 * Optional columns (`--columns`). Off by default, and then every record is
 * the 88-byte struct nw_event, made exactly as before: each branch below
 * tests a read-only value that the verifier knows, so the code of the
 * columns that are off is not even loaded. With any column on, every
 * record is a struct nw_event_attr (tag NW_RECORD_EVENT_ATTR, 120 bytes),
 * and only the fields of attr_mask are read (the others stay 0). One
 * record per row, rather than a second record that follows the event,
 * keeps rows whole in the ring (a reservation can fail between two
 * records) and costs one reservation per row either way.
 */
const volatile bool emit_attr = false;
const volatile __u32 attr_mask = 0; /* NW_ATTR_* */
/* bpf_get_socket_cookie() may be called from tracing programs (tp_btf,
 * fexit): 5.12 and later (commit c5dbb89fc2ac). Userspace sets this only
 * for the tracepoint and fentry backends on such a kernel; kprobes and
 * classic tracepoints never have it. */
const volatile bool cookie_helper = false;
/* The programs may read user memory (read_user() in kernel_read.bpf.h).
 * False where bpf_probe_read_kernel() is refused (lockdown=confidentiality):
 * libbpf then takes the kernel for one without the probe_read_{kernel,user}
 * helpers and rewrites every bpf_probe_read_user() call into the old
 * bpf_probe_read() (bpf_object__sanitize_prog(), FEAT_PROBE_READ_KERN),
 * which that lockdown refuses too. The verifier then drops the reads. */
const volatile bool user_reads = true;

/*
 * In-kernel filters (besides pid and comm above). Those of the thread
 * (comm, cgroup) stop an operation before any state is armed; those of the
 * row (protocol, direction, IP version, port) need the finished row, so
 * with any of them on (filter_rows) the row is built in a per-CPU scratch
 * record and copied into the ring only when it passes: a row that is
 * filtered out reserves nothing in the ring buffer.
 */
const volatile bool filter_rows = false;
const volatile __u8 want_protocol = 0;   /* 0: any; IPPROTO_TCP or IPPROTO_UDP */
const volatile __u8 want_direction = 0;  /* 0: any; NW_DIR_* + 1 */
const volatile __u8 want_ip_version = 0; /* 0: any; 4 or 6, as the row says */
const volatile bool filter_ports = false;
const volatile bool filter_exclude_comms = false;
const volatile bool filter_cgroups = false;
const volatile bool filter_containers = false;

/*
 * Thinning (docs/sampling.md): `--sample 1/N` keeps every row of 1 flow in
 * sample_n, `--rate-limit` at most rate_limit rows a second per process
 * (or per cgroup). Both decide on the finished row, which is then built in
 * the scratch record (userspace turns filter_rows on with them), so a row
 * left out reserves nothing in the ring; it is counted in the unwritten
 * map instead. 0: off.
 */
const volatile __u32 sample_n = 0;
const volatile __u64 rate_limit = 0;
const volatile bool rate_by_cgroup = false;

#endif /* NW_SETTINGS_BPF_H */
