// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * nwtrace: one row per TCP/UDP send or receive.
 *
 * Data path of the tracepoint backend (kernel >= 6.3):
 *
 *   sys_enter_{sendto,recvmsg,write,...}  arm the thread's state: start time,
 *                                         flags, user pointers to addresses
 *   sock:sock_{send,recv}_length          the operation itself: the struct
 *                                         sock and the result, on every path
 *                                         (syscalls, splice, io_uring)
 *   sys_exit_{recvfrom,recvmsg,recvmmsg}  only to finish an unconnected UDP
 *                                         receive, whose peer address reaches
 *                                         the user buffer after the tracepoint
 *
 * There are no sys_exit programs for the other syscalls: a stale armed state
 * is recognised because its syscall number is not the one the thread is in.
 * The exception, on every backend: sendfile and splice on a TCP socket are
 * one row per syscall, made by sys_exit_{sendfile64,splice} (see
 * arm_splice()).
 *
 * The fentry and kprobe backends (any kernel with BTF) attach no syscall
 * tracepoint at all: the same per-thread state is armed by the x86_64
 * socket syscall wrappers and sock_read_iter/sock_write_iter (see "fentry
 * and kprobe backends: the syscalls without syscall tracepoints" below),
 * and the sock tracepoints are replaced by the protocol functions: fexit,
 * or kprobe + kretprobe, on tcp_sendmsg, tcp_recvmsg, udp_sendmsg,
 * udp_recvmsg, udpv6_sendmsg, udpv6_recvmsg, mptcp_sendmsg, mptcp_recvmsg
 * and (before 6.5) tcp_sendpage. They read the peer of an unconnected UDP
 * socket from the kernel's msghdr, so they need no hook at the receive's
 * syscall exit.
 *
 * Program names say their family: sys_enter_*, sys_exit_* and tp_*
 * (tracepoint), fentry_* and fexit_* (fentry), kp_* and krp_* (kprobe),
 * uring_* (every backend). docs/backends.md lists them per backend.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "nwtrace.h"

_Static_assert(sizeof(struct nw_event) == NW_EVENT_SIZE, "nw_event layout changed");
_Static_assert(sizeof(struct nw_event_attr) == NW_EVENT_ATTR_SIZE, "nw_event_attr layout changed");
_Static_assert(sizeof(struct nw_flow_key) == NW_FLOW_KEY_SIZE, "nw_flow_key layout changed");

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* mmsg vectors are capped at UIO_MAXIOV by the kernel. */
#define NW_MAX_MMSG 1024

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* Keeps struct nw_event in the object's BTF so the skeleton emits its type. */
struct nw_event nw_event_type = {};
struct nw_event_attr nw_event_attr_type = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* userspace resizes it before load */
} events SEC(".maps");

/* Ring buffer reservations that failed, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

/* Submissions per CPU, so that the ring's fill level is looked at only on
 * every 64th: reading it touches the consumer position, a cache line the
 * reader keeps writing from another CPU (~90 ns an event when read each
 * time, measured on the ping-pong benchmark). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} submit_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pid_filter SEC(".maps");

struct comm_key {
	char comm[NW_TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, __u8);
} comm_filter SEC(".maps");

/* --exclude-comm */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, __u8);
} exclude_comm_filter SEC(".maps");

/* --port: local or remote port, host byte order. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} port_filter SEC(".maps");

/* --cgroup and --container: cgroup v2 ids (cgroupfs inodes) whose
 * processes and their descendants' are traced. Userspace adds the cgroups
 * of containers that start later as it finds them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} container_filter SEC(".maps");

/* Where a row is built when filter_rows is on (see above). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nw_event_attr);
} scratch_records SEC(".maps");

/*
 * The rows thinning left out, counted by row identity (struct
 * nw_flow_key). Two maps, of which the BPF side writes the one that
 * unwritten_side names: userspace flips it, and drains the other a whole
 * drain interval later, when no program can still hold a pointer into it
 * (programs run for microseconds), so that no count is lost between a
 * lookup and a delete. Preallocated (BPF_F_NO_PREALLOC hash maps are
 * refused to tracing programs before 6.1's bpf_mem_alloc, commit
 * 7c8199e24fa0): a full map makes the counts go to unwritten_overflow.
 */
#define NW_UNWRITTEN_ENTRIES 32768
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_UNWRITTEN_ENTRIES);
	__type(key, struct nw_flow_key);
	__type(value, struct nw_flow_counts);
} unwritten_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_UNWRITTEN_ENTRIES);
	__type(key, struct nw_flow_key);
	__type(value, struct nw_flow_counts);
} unwritten_b SEC(".maps");

/* Which of the two the BPF side writes: 0 unwritten_a, 1 unwritten_b. */
volatile __u32 unwritten_side = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NW_OVERFLOW_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} unwritten_overflow SEC(".maps");

/* Rows the row filters (--port, --protocol, --direction, --ip-version)
 * left out, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} filtered_rows SEC(".maps");

/*
 * --rate-limit's buckets, by tgid or cgroup id. One bucket per key shared
 * by every CPU (not per CPU: a process with threads on k CPUs would get k
 * times its limit), updated with atomic adds but refilled without a lock
 * (tracing programs may not take bpf_spin_lock): two CPUs refilling at
 * once can grant a few operations more than the limit, never fewer. LRU:
 * a bucket evicted starts full again, and its suppressed count is gone
 * from the per-process list (not from the totals, which the unwritten
 * map keeps).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct nw_bucket);
} rate_buckets SEC(".maps");

/* Which syscall armed a thread's state. */
enum nw_op {
	NW_OP_NONE = 0,
	NW_OP_SENDTO,   /* name: struct sockaddr *            */
	NW_OP_SENDMSG,  /* name: struct user_msghdr *          */
	NW_OP_SENDMMSG, /* name: struct mmsghdr *              */
	NW_OP_RECVFROM, /* name: struct sockaddr *, namelen: int * */
	NW_OP_RECVMSG,  /* name: struct user_msghdr *          */
	NW_OP_RECVMMSG, /* name: struct mmsghdr *              */
	NW_OP_WRITE,    /* write, writev; sendfile/splice into UDP: no flags, no name */
	NW_OP_READ,     /* read, readv; splice from UDP: no flags, no name */
	/* sendfile or splice into (SEND) or from (RECV) a TCP socket: one row
	 * for the whole syscall, made at its sys_exit; the chunks the kernel
	 * cuts it into are not rows. name: that socket's struct sock *. */
	NW_OP_SPLICE_SEND,
	NW_OP_SPLICE_RECV,
};

struct task_state {
	__u64 start_ns;   /* syscall entry, then each completion in the syscall */
	__u64 name;       /* user pointer, meaning per op (see enum nw_op) */
	__u64 namelen;    /* NW_OP_RECVFROM: user pointer to the address length */
	__s64 syscall_nr; /* the syscall that armed this state */
	__u32 msg_flags;
	__u32 msg_index;  /* mmsg: index of the next message */
	__u8 op;          /* enum nw_op */
	__u8 pending;     /* pending_event waits for its peer address */
	__u8 _pad[2];
	__u32 fn_flags;   /* kprobe backend: arguments saved at function entry */
	__u64 twin_token; /* fentry backend: the call a primary program ran for (twin_*) */
	__u64 fn_sk;
	__u64 fn_msg;
	__u64 pending_name;    /* user struct sockaddr * of the pending receive */
	__u64 pending_namelen; /* user int * holding its length */
	struct nw_event_attr pending_event;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} task_states SEC(".maps");

/* Before 5.11: the same state keyed by thread id. LRU, since threads can
 * exit without telling us. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct task_state);
} task_states_by_tid SEC(".maps");

static const struct task_state empty_state = {};

static __always_inline struct task_state *state_lookup(bool create)
{
	struct task_state *st;
	__u32 tid;

	if (use_task_storage)
		return bpf_task_storage_get(&task_states, bpf_get_current_task_btf(), 0,
					    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	tid = (__u32)bpf_get_current_pid_tgid();
	st = bpf_map_lookup_elem(&task_states_by_tid, &tid);
	if (st || !create)
		return st;
	bpf_map_update_elem(&task_states_by_tid, &tid, &empty_state, BPF_NOEXIST);
	return bpf_map_lookup_elem(&task_states_by_tid, &tid);
}

static __always_inline bool tgid_wanted(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&pid_filter, &tgid))
		return false;
	return true;
}

static __always_inline bool comm_wanted(struct comm_key *key)
{
	return !filter_comms || bpf_map_lookup_elem(&comm_filter, key);
}

/* Deeper than any real hierarchy (systemd + kubepods nest about 6). */
#define NW_MAX_CGROUP_DEPTH 32

/* Whether the current thread is in (or below) a cgroup of --cgroup, and
 * in (or below) one of a container of --container: the thread's cgroup v2
 * and its ancestors, each by id (its kernfs node id, which is what
 * bpf_get_current_cgroup_id() returns and the cgroupfs inode number),
 * against the maps. Two probe reads and one or two lookups per level, and
 * only with those filters on. The parents are walked by hand because
 * bpf_get_current_ancestor_cgroup_id() cannot be called from tracing,
 * kprobe or tracepoint programs on 5.10 (the verifier refuses it there;
 * seen on the VM matrix's 5.10 kernel). */
static __always_inline bool cgroup_wanted(void)
{
	bool cg = !filter_cgroups, ct = !filter_containers;
	struct task_struct *task;
	struct cgroup *cgrp;
	int level;

	if (cg && ct)
		return true;
	task = (struct task_struct *)bpf_get_current_task();
	cgrp = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	for (level = 0; level < NW_MAX_CGROUP_DEPTH && cgrp; level++) {
		/* kernfs_node.id is a u64 since 5.5 (commit 67c0496e87d1). */
		__u64 id = BPF_CORE_READ(cgrp, kn, id);

		if (!cg && bpf_map_lookup_elem(&cgroup_filter, &id))
			cg = true;
		if (!ct && bpf_map_lookup_elem(&container_filter, &id))
			ct = true;
		if (cg && ct)
			return true;
		/* A cgroup's css `self` is its first member: the parent's css
		 * is the parent cgroup. NULL at the root. */
		cgrp = (struct cgroup *)BPF_CORE_READ(cgrp, self.parent);
	}
	return false;
}

/* The filters of the thread, after tgid_wanted(): comm, --exclude-comm,
 * --cgroup, --container. */
static __always_inline bool thread_wanted(void)
{
	if (filter_comms || filter_exclude_comms) {
		struct comm_key key = {};

		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (!comm_wanted(&key))
			return false;
		if (filter_exclude_comms && bpf_map_lookup_elem(&exclude_comm_filter, &key))
			return false;
	}
	return cgroup_wanted();
}

/*
 * Reads a field of a kernel struct. `direct` is a compile-time constant:
 * true where the pointer came from BTF (tp_btf and fexit arguments), which
 * the verifier lets us load from directly at no helper call; false where it
 * did not (kprobe arguments), which needs bpf_probe_read_kernel. Both
 * relocate with CO-RE (vmlinux.h applies preserve_access_index).
 */
#define KREAD(direct, ptr, field) ((direct) ? (ptr)->field : BPF_CORE_READ(ptr, field))

/* The current task's saved user registers, task_pt_regs(), without
 * bpf_task_pt_regs(), which arrived in 5.15 (commit dd6e10fbd9fb): the top
 * of the task's kernel stack. x86_64 THREAD_SIZE is 16 KiB (no KASAN in
 * distro kernels) with no padding above the registers. Not a BTF pointer:
 * read it with BPF_CORE_READ. */
static __always_inline struct pt_regs *stack_pt_regs(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *stack = BPF_CORE_READ(task, stack);

	return (struct pt_regs *)(stack + 16384 - bpf_core_type_size(struct pt_regs));
}

/* The syscall the current thread is in, or -1 outside a syscall. */
static __always_inline long current_syscall_nr(bool direct)
{
	struct pt_regs *regs;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#if defined(__TARGET_ARCH_x86)
		return KREAD(direct, regs, orig_ax);
#endif
	} else {
		regs = stack_pt_regs();
	}
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#else
#error "nwtrace: current_syscall_nr() needs this architecture's pt_regs field"
#endif
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

static __always_inline __u64 submit_flags(void)
{
	__u32 zero = 0;
	__u32 *submits = bpf_map_lookup_elem(&submit_counts, &zero);

	if (submits && ((*submits)++ & 63) == 0 &&
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* ---- fd -> socket -------------------------------------------------------- */

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * The struct socket behind the current task's descriptor fd, or NULL when
 * fd is not an open socket. No map access, and from 6.2 on no helper call
 * but bpf_get_current_task_btf(), so that read/write/readv/writev on files, pipes and devices
 * (which the per-syscall tracepoints cannot tell apart) stop here cheaply:
 * before it, sys_enter_read armed task storage for every read on the host,
 * ~290 ns a call (issue #11).
 *
 * The fd table is read like fcheck_files() without the RCU dereference:
 * the task is current, so its table cannot go away under us, and a racing
 * close at worst gives a stale file, which the sock tracepoint then ignores
 * (it checks the socket again).
 */
static __always_inline struct socket *fd_sock(unsigned int fd)
{
	struct file *file = NULL, **fds;
	struct fdtable *fdt;
	umode_t mode;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		/* Direct loads through the BTF task pointer: 5.11 and later. */
		struct files_struct *files = bpf_get_current_task_btf()->files;

		if (!files)
			return NULL;
		fdt = files->fdt;
		if (fd >= fdt->max_fds)
			return NULL;
		fds = fdt->fd;
	} else {
		/* 5.10: no bpf_get_current_task_btf() (commit 3ca1032ab7ab,
		 * 5.11), so every step is a probe read. */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		fdt = BPF_CORE_READ(task, files, fdt);
		if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
			return NULL;
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (bpf_ksym_exists(bpf_rdonly_cast) && bpf_core_field_offset(struct kiocb, ki_filp) == 0) {
		/* bpf_rdonly_cast() (6.2, commit a35b9af4ec2c) turns the
		 * loads below into plain fault-checked loads: no helper call.
		 * fd[] is an array of bare pointers, which BTF cannot type, so
		 * the slot is read as the first member of a struct that starts
		 * with a struct file pointer: kiocb.ki_filp (checked above). */
		struct file *f = bpf_core_cast(&fds[fd], struct kiocb)->ki_filp;

		if (!f)
			return NULL;
		if ((f->f_inode->i_mode & S_IFMT) != S_IFSOCK)
			return NULL;
		return f->private_data;
	}
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	return BPF_CORE_READ(file, private_data);
}

/* Whether fd is an AF_INET/AF_INET6 socket: the only ones that make rows.
 * Unix sockets (loggers, D-Bus) stop here too. */
static __always_inline bool fd_is_inet_sock(unsigned int fd)
{
	struct socket *sock = fd_sock(fd);
	__u16 family;

	if (!sock)
		return false;
	if (bpf_ksym_exists(bpf_rdonly_cast))
		family = bpf_core_cast(sock, struct socket)->sk->__sk_common.skc_family;
	else
		family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6;
}

/* ---- syscall entry: arm the thread's state ----------------------------- */

static __always_inline void arm(long syscall_nr, enum nw_op op, __u64 name,
				__u64 namelen, __u32 msg_flags)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_state *st;

	if (!tgid_wanted(tgid) || !thread_wanted())
		return;
	st = state_lookup(true);
	if (!st)
		return;
	st->start_ns = bpf_ktime_get_ns();
	st->name = name;
	st->namelen = namelen;
	st->syscall_nr = syscall_nr;
	st->msg_flags = msg_flags;
	st->msg_index = 0;
	st->op = op;
}

/*
 * The record of the syscalls:sys_enter_* and sys_exit_* events, as their
 * tracefs "format" files give it. Not vmlinux.h's trace_event_raw_sys_enter:
 * that is raw_syscalls:sys_enter, whose id is a long, while here the
 * syscall number is an int followed by padding.
 */
struct nw_sys_enter {
	__u64 common;
	int syscall_nr;
	int _pad;
	unsigned long args[6];
};

struct nw_sys_exit {
	__u64 common;
	int syscall_nr;
	int _pad;
	long ret;
};

#define SYS_ARG(ctx, n) ((ctx)->args[n])

SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct nw_sys_enter *ctx)
{
	/* sendto(fd, buf, len, flags, dest_addr, addrlen) */
	arm(ctx->syscall_nr, NW_OP_SENDTO, SYS_ARG(ctx, 4), 0, SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct nw_sys_enter *ctx)
{
	/* sendmsg(fd, msg, flags) */
	arm(ctx->syscall_nr, NW_OP_SENDMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 2));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int sys_enter_sendmmsg(struct nw_sys_enter *ctx)
{
	/* sendmmsg(fd, msgvec, vlen, flags) */
	arm(ctx->syscall_nr, NW_OP_SENDMMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct nw_sys_enter *ctx)
{
	/* recvfrom(fd, buf, len, flags, src_addr, addrlen) */
	arm(ctx->syscall_nr, NW_OP_RECVFROM, SYS_ARG(ctx, 4), SYS_ARG(ctx, 5), SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct nw_sys_enter *ctx)
{
	/* recvmsg(fd, msg, flags) */
	arm(ctx->syscall_nr, NW_OP_RECVMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 2));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int sys_enter_recvmmsg(struct nw_sys_enter *ctx)
{
	/* recvmmsg(fd, msgvec, vlen, flags, timeout) */
	arm(ctx->syscall_nr, NW_OP_RECVMMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct nw_sys_enter *ctx)
{
	/* write(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct nw_sys_enter *ctx)
{
	/* writev(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0);
	return 0;
}


SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct nw_sys_enter *ctx)
{
	/* read(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_READ, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct nw_sys_enter *ctx)
{
	/* readv(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_READ, 0, 0, 0);
	return 0;
}

/* ---- addresses ---------------------------------------------------------- */

static __always_inline long read_mem(void *dst, __u32 size, const void *src, bool user)
{
	return user ? bpf_probe_read_user(dst, size, src) : bpf_probe_read_kernel(dst, size, src);
}

/* Copies a sockaddr (from user or kernel memory) into the event's peer.
 * False when it is not AF_INET/AF_INET6 or cannot be read: then the peer
 * stays as it was. */
static __always_inline bool read_peer(struct nw_event *e, __u64 addr, bool user)
{
	__u16 family = 0;

	if (!addr || read_mem(&family, sizeof(family), (void *)addr, user))
		return false;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};

		if (read_mem(&sin, sizeof(sin), (void *)addr, user))
			return false;
		e->peer_port = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(e->peer_addr, &sin.sin_addr, 4);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};

		/* Without sin6_scope_id, which some callers leave out. */
		if (read_mem(&sin6, offsetof(struct sockaddr_in6, sin6_scope_id), (void *)addr, user))
			return false;
		e->peer_port = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(e->peer_addr, &sin6.sin6_addr, 16);
	} else {
		return false;
	}
	e->peer_family = family;
	e->info |= NW_INFO_PEER_KNOWN;
	return true;
}

static __always_inline bool read_user_peer(struct nw_event *e, __u64 uaddr)
{
	return read_peer(e, uaddr, true);
}

static __always_inline void read_sock_peer(struct nw_event *e, struct sock *sk, __u16 family,
					  bool direct)
{
	__u16 dport = KREAD(direct, sk, __sk_common.skc_dport);

	/* A zero port means not connected: the peer is unknown, not 0.0.0.0. */
	if (!dport)
		return;
	e->peer_port = bpf_ntohs(dport);
	e->peer_family = family;
	if (family == AF_INET) {
		__u32 daddr = KREAD(direct, sk, __sk_common.skc_daddr);

		__builtin_memcpy(e->peer_addr, &daddr, 4);
	} else if (direct) {
		__builtin_memcpy(e->peer_addr, &sk->__sk_common.skc_v6_daddr, 16);
	} else {
		bpf_core_read(e->peer_addr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	e->info |= NW_INFO_PEER_KNOWN;
}

static __always_inline void read_sock_local(struct nw_event *e, struct sock *sk, __u16 family,
					   bool direct)
{
	e->local_port = KREAD(direct, sk, __sk_common.skc_num);
	/* tcp_set_state(TCP_CLOSE) zeroes skc_num when it releases an
	 * unlocked port (after a reset, say); inet_sport still holds the port
	 * the connection used. It sits in struct inet_sock, past struct sock,
	 * where a BTF-typed load may not reach: probe-read it. */
	if (!e->local_port)
		e->local_port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (family == AF_INET) {
		__u32 saddr = KREAD(direct, sk, __sk_common.skc_rcv_saddr);

		__builtin_memcpy(e->local_addr, &saddr, 4);
	} else if (direct) {
		__builtin_memcpy(e->local_addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
	} else {
		bpf_core_read(e->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	}
}

/* User pointer to the msghdr of the current message of a msg/mmsg op. */
static __always_inline __u64 user_msghdr_of(struct task_state *st)
{
	if (st->op == NW_OP_SENDMSG || st->op == NW_OP_RECVMSG)
		return st->name;
	if (st->msg_index >= NW_MAX_MMSG)
		return 0;
	return st->name + (__u64)st->msg_index * sizeof(struct mmsghdr);
}

/* The user sockaddr pointer the application gave for this message, and,
 * for receives, where the kernel writes its length. */
static __always_inline __u64 user_name_of(struct task_state *st, __u64 *namelen_ptr)
{
	struct user_msghdr *hdr;
	__u64 name = 0;

	*namelen_ptr = 0;
	if (st->op == NW_OP_SENDTO)
		return st->name;
	if (st->op == NW_OP_RECVFROM) {
		*namelen_ptr = st->namelen;
		return st->name;
	}
	hdr = (struct user_msghdr *)user_msghdr_of(st);
	if (!hdr || bpf_probe_read_user(&name, sizeof(name), &hdr->msg_name))
		return 0;
	*namelen_ptr = (__u64)&hdr->msg_namelen;
	return name;
}

static __always_inline bool op_is_send(__u8 op)
{
	return op == NW_OP_SENDTO || op == NW_OP_SENDMSG || op == NW_OP_SENDMMSG || op == NW_OP_WRITE;
}

static __always_inline bool op_has_flags(__u8 op)
{
	return op >= NW_OP_SENDTO && op <= NW_OP_RECVMMSG;
}

/* ---- emitting ----------------------------------------------------------- */

/* IPv4-mapped IPv6 (::ffff:a.b.c.d): such a row says IP version 4. */
static __always_inline bool is_v4_mapped(const unsigned char *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* The row's IP Version, decided as userspace decides it (event.rs). */
static __always_inline __u8 row_ip_version(struct nw_event *e)
{
	if (e->info & NW_INFO_PEER_KNOWN)
		return e->peer_family == AF_INET || is_v4_mapped(e->peer_addr) ? 4 : 6;
	return e->sk_family == AF_INET || is_v4_mapped(e->local_addr) ? 4 : 6;
}

static __always_inline bool port_listed(__u16 port)
{
	return bpf_map_lookup_elem(&port_filter, &port) != NULL;
}

/* The row filters, on a finished row. */
static __always_inline bool row_wanted(struct nw_event *e)
{
	if (want_protocol && e->protocol != want_protocol)
		return false;
	if (want_direction && e->direction + 1 != want_direction)
		return false;
	if (want_ip_version && row_ip_version(e) != want_ip_version)
		return false;
	if (filter_ports && !port_listed(e->local_port) &&
	    !((e->info & NW_INFO_PEER_KNOWN) && port_listed(e->peer_port)))
		return false;
	return true;
}

/* ---- thinning: --sample and --rate-limit -------------------------------- */

/* The murmur3 finaliser: a fixed, seedless mix, the same on every host
 * (src/capture/sampling.rs has its twin). */
static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/*
 * Whether the row's flow is sampled in. A flow is known by its protocol
 * and its two ports, not its addresses: a UDP socket bound to the
 * wildcard address (a server on 0.0.0.0:53, say) has no address of its
 * own in the kernel, while its peer sees a real one, and NAT or a v4
 * socket against a dual-stack v6 one would also make the two ends see
 * different addresses. The two ports are hashed each, then in canonical
 * order (smaller hash first), so that both ends of a conversation, each
 * seeing the other as its peer, decide the same.
 */
static __always_inline bool flow_sampled(struct nw_event *e)
{
	__u64 a, b, lo, hi;

	a = mix64(e->local_port ^ 0x9e3779b97f4a7c15ULL);
	b = mix64((e->info & NW_INFO_PEER_KNOWN ? e->peer_port : 0) ^ 0x9e3779b97f4a7c15ULL);
	lo = a < b ? a : b;
	hi = a < b ? b : a;
	return mix64(lo ^ mix64(hi ^ e->protocol)) % sample_n == 0;
}

/* Takes one operation from the bucket of the row's process (or of the
 * current cgroup); false when it is over the limit. */
static __always_inline bool rate_allows(struct nw_event *e)
{
	const __s64 one = 1000000000LL; /* an operation, in bucket units */
	__u64 key = rate_by_cgroup ? bpf_get_current_cgroup_id() : e->pid;
	__u64 now = bpf_ktime_get_ns();
	struct nw_bucket *b, fresh = {};
	__s64 cap = (__s64)rate_limit * one; /* a second's worth */
	__u64 elapsed;

	b = bpf_map_lookup_elem(&rate_buckets, &key);
	if (!b) {
		fresh.tokens = cap - one;
		fresh.last_ns = now;
		fresh.passed = 1;
		bpf_map_update_elem(&rate_buckets, &key, &fresh, BPF_NOEXIST);
		return true;
	}
	elapsed = now - b->last_ns;
	if ((__s64)elapsed > 0) {
		__s64 t;

		if (elapsed > 1000000000ULL)
			elapsed = 1000000000ULL;
		b->last_ns = now;
		t = b->tokens + (__s64)(elapsed * rate_limit);
		b->tokens = t > cap ? cap : t;
	}
	if (b->tokens >= one) {
		__sync_fetch_and_add(&b->tokens, -one);
		__sync_fetch_and_add(&b->passed, 1);
		return true;
	}
	__sync_fetch_and_add(&b->suppressed, 1);
	return false;
}

static __always_inline void count_overflow(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&unwritten_overflow, &slot);

	if (v)
		__sync_fetch_and_add(v, n);
}

/* Adds a row left out to the unwritten map's entry for its identity. */
static __always_inline void count_unwritten(struct nw_event *e, bool limited)
{
	struct nw_flow_counts *c, init = {};
	struct nw_flow_key k = {};
	__u64 bytes = e->ret > 0 ? e->ret : 0;
	void *map = unwritten_side ? (void *)&unwritten_b : (void *)&unwritten_a;

	k.pid = e->pid;
	k.err = e->ret < 0 ? e->ret : 0;
	k.direction = e->direction;
	k.protocol = e->protocol;
	k.info = e->info & NW_INFO_PEER_KNOWN;
	k.zero = e->ret == 0;
	k.sk_family = e->sk_family;
	k.peer_family = e->peer_family;
	k.local_port = e->local_port;
	k.peer_port = e->peer_port;
	__builtin_memcpy(k.local_addr, e->local_addr, sizeof(k.local_addr));
	__builtin_memcpy(k.peer_addr, e->peer_addr, sizeof(k.peer_addr));
	__builtin_memcpy(k.comm, e->comm, sizeof(k.comm));

	c = bpf_map_lookup_elem(map, &k);
	if (!c) {
		init.ops = 1;
		init.bytes = bytes;
		init.limited = limited;
		init.last_ns = e->end_ns;
		if (!bpf_map_update_elem(map, &k, &init, BPF_NOEXIST))
			return;
		/* Another CPU made it first (EEXIST), or the map is full. */
		c = bpf_map_lookup_elem(map, &k);
		if (!c) {
			count_overflow(NW_OVERFLOW_OPS, 1);
			count_overflow(NW_OVERFLOW_BYTES, bytes);
			if (limited)
				count_overflow(NW_OVERFLOW_LIMITED, 1);
			return;
		}
	}
	__sync_fetch_and_add(&c->ops, 1);
	__sync_fetch_and_add(&c->bytes, bytes);
	if (limited)
		__sync_fetch_and_add(&c->limited, 1);
	c->last_ns = e->end_ns;
}

/* Whether a finished row is written; one left out is counted. Sampling
 * first: a flow sampled out takes nothing from the rate limit. */
static __always_inline bool row_kept(struct nw_event *e)
{
	if (sample_n > 1 && !flow_sampled(e)) {
		count_unwritten(e, false);
		return false;
	}
	if (rate_limit && !rate_allows(e)) {
		count_unwritten(e, true);
		return false;
	}
	return true;
}

static __always_inline void count_filtered(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&filtered_rows, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* Copies a finished row into the ring, if the row filters keep it. */
static __always_inline void output_event(struct nw_event_attr *x)
{
	if (filter_rows && !row_wanted(&x->ev)) {
		count_filtered();
		return;
	}
	if ((sample_n > 1 || rate_limit) && !row_kept(&x->ev))
		return;
	if (emit_attr) {
		if (bpf_ringbuf_output(&events, x, sizeof(struct nw_event_attr), submit_flags()))
			count_lost();
	} else if (bpf_ringbuf_output(&events, x, sizeof(struct nw_event), submit_flags())) {
		count_lost();
	}
}

/*
 * Where a row is built: straight in the ring buffer, or, with the row
 * filters on, in the per-CPU scratch record (record_end() then copies it
 * into the ring only if it passes). NULL: no room (counted as lost).
 * filter_rows and emit_attr are read-only, so the verifier sees one kind
 * of pointer on each path.
 */
static __always_inline struct nw_event_attr *record_begin(void)
{
	struct nw_event_attr *x;
	__u32 zero = 0;

	if (filter_rows)
		return bpf_map_lookup_elem(&scratch_records, &zero);
	if (emit_attr)
		x = bpf_ringbuf_reserve(&events, sizeof(struct nw_event_attr), 0);
	else
		x = bpf_ringbuf_reserve(&events, sizeof(struct nw_event), 0);
	if (!x)
		count_lost();
	return x;
}

static __always_inline void record_end(struct nw_event_attr *x)
{
	if (filter_rows)
		output_event(x);
	else
		bpf_ringbuf_submit(x, submit_flags());
}

static __always_inline void record_discard(struct nw_event_attr *x)
{
	if (!filter_rows)
		bpf_ringbuf_discard(x, 0);
}

/* Finishes a stashed unconnected UDP receive: by now the kernel has copied
 * its source address to the user buffer. */
static __always_inline void flush_pending(struct task_state *st)
{
	struct nw_event *e = &st->pending_event.ev;
	int namelen = 0;

	st->pending = 0;
	if (st->pending_namelen &&
	    !bpf_probe_read_user(&namelen, sizeof(namelen), (void *)st->pending_namelen) &&
	    namelen > 0)
		read_user_peer(e, st->pending_name);
	output_event(&st->pending_event);
}

static __always_inline void fill_event(struct nw_event *e, struct sock *sk, __u16 family,
				       __u8 protocol, __u8 direction, int ret, __u32 tgid,
				       __u64 now, struct task_state *armed, bool direct)
{
	e->record = NW_RECORD_EVENT;
	e->direction = direction;
	e->protocol = protocol;
	e->info = 0;
	e->sk_family = family;
	e->peer_family = 0;
	e->local_port = 0;
	e->peer_port = 0;
	e->pid = tgid;
	e->ret = ret;
	e->msg_flags = 0;
	e->start_ns = 0;
	e->end_ns = now;
	__builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
	__builtin_memset(e->peer_addr, 0, sizeof(e->peer_addr));
	if (direct && bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		/* Two loads instead of bpf_get_current_comm()'s strscpy
		 * (~60 ns): task->comm is NUL-padded by __set_task_comm().
		 * Needs a BTF task pointer: 5.11 and later. */
		struct task_struct *task = bpf_get_current_task_btf();

		*(__u64 *)&e->comm[0] = *(__u64 *)&task->comm[0];
		*(__u64 *)&e->comm[8] = *(__u64 *)&task->comm[8];
	} else {
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	if (armed) {
		e->start_ns = armed->start_ns;
		e->info |= NW_INFO_HAS_START;
		if (op_has_flags(armed->op)) {
			e->msg_flags = armed->msg_flags;
			e->info |= NW_INFO_HAS_FLAGS;
		}
	}
	read_sock_local(e, sk, family, direct);
}

/* The socket's cookie, or 0 where this program cannot have it. */
static __always_inline __u64 sock_cookie(struct sock *sk, bool direct)
{
	if (!cookie_helper)
		return 0;
	/* tp_btf and fexit (BTF pointer): the helper makes the cookie if
	 * the socket has none yet. */
	if (direct)
		return bpf_get_socket_cookie(sk);
	/* A classic tracepoint of a tracing backend (sendfile/splice exit,
	 * io_uring completion): the cookie the helper stored in the socket,
	 * if a tracing program made one (0, empty, otherwise). */
	return BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
}

#define NW_MSG_OOB 0x01 /* uapi */
#define NW_MSG_PEEK 0x02
#define NW_MSG_ERRQUEUE 0x2000

/*
 * The TCP columns: srtt, cwnd, total retransmits and the sequence number,
 * read where the row is made, after the operation (every hook that makes
 * rows runs then: sock_{send,recv}_length, fexit/kretprobe of the protocol
 * functions, the sendfile/splice exit, an io_uring request's last protocol
 * call). A send has advanced write_seq, and a receive copied_seq, by
 * exactly the bytes it returns, so the first byte's number is the value
 * now minus the row's Size; userspace subtracts, because an io_uring row's
 * result is the CQE's, known only at completion. One exception: the
 * receive that reads the peer's FIN moves copied_seq one further than its
 * bytes (tcp_recvmsg_locked(), found_fin_ok), also when the FIN rides on
 * its last data segment; the FIN has been read when it was received
 * (SOCK_DONE, set by tcp_fin()) and copied_seq has reached rcv_nxt, which
 * counts it. So a receive gives copied_seq minus that one, and a receive
 * at end of stream (Size 0) shows the FIN's own number, where the data
 * ended. A peek leaves copied_seq where it was: its first byte is
 * copied_seq itself. Unknown (no SEQ bit):
 * a peek at an SO_PEEK_OFF offset (TCP has it from 6.10), urgent data
 * (MSG_OOB reads the urgent byte outside the stream) and the error queue
 * (MSG_ERRQUEUE reads notifications, not the stream). Exact when one
 * thread at a time uses the socket in that direction: another thread's
 * send between this one's release of the socket lock and this hook would
 * move write_seq (docs/output.md).
 *
 * Fields by CO-RE: srtt_us (3.15+), snd_cwnd, total_retrans, write_seq,
 * copied_seq are in struct tcp_sock on every kernel we support (5.10 to
 * 7.x; 6.8's cacheline groups moved them, CO-RE follows). MPTCP: the
 * socket the application holds is a struct mptcp_sock, not a tcp_sock
 * (its subflows are): no values.
 */
static __always_inline void fill_tcp(struct nw_attr *a, struct sock *sk, __u8 direction,
				     int recv_flags, bool direct)
{
	__u64 done = 1ULL << bpf_core_enum_value(enum sock_flags, SOCK_DONE);
	__u32 seq, rcv_nxt = 0;
	__u64 sk_flags = 0;
	int peek_off;

	if (KREAD(direct, sk, sk_protocol) != IPPROTO_TCP)
		return;
	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		/* 6.2+ (commit a35b9af4ec2c): plain fault-checked loads, no
		 * helper call, on every backend. */
		struct tcp_sock *tp = bpf_core_cast(sk, struct tcp_sock);

		a->srtt_us = tp->srtt_us >> 3;
		a->snd_cwnd = tp->snd_cwnd;
		a->total_retrans = tp->total_retrans;
		if (direction == NW_DIR_SEND) {
			seq = tp->write_seq;
		} else {
			seq = tp->copied_seq;
			rcv_nxt = tp->rcv_nxt;
			sk_flags = tp->inet_conn.icsk_inet.sk.__sk_common.skc_flags;
		}
		peek_off = tp->inet_conn.icsk_inet.sk.sk_peek_off;
	} else {
		struct tcp_sock *tp = (struct tcp_sock *)sk;

		a->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
		a->snd_cwnd = BPF_CORE_READ(tp, snd_cwnd);
		a->total_retrans = BPF_CORE_READ(tp, total_retrans);
		if (direction == NW_DIR_SEND) {
			seq = BPF_CORE_READ(tp, write_seq);
		} else {
			seq = BPF_CORE_READ(tp, copied_seq);
			rcv_nxt = BPF_CORE_READ(tp, rcv_nxt);
			sk_flags = BPF_CORE_READ(sk, __sk_common.skc_flags);
		}
		peek_off = BPF_CORE_READ(sk, sk_peek_off);
	}
	/* The FIN counts in copied_seq once read, never in the data. */
	if (direction == NW_DIR_RECV && (sk_flags & done) && seq == rcv_nxt)
		seq--;
	a->tcp = NW_TCP_STATE;
	a->seq = seq;
	if (direction == NW_DIR_SEND ||
	    !(recv_flags & (NW_MSG_PEEK | NW_MSG_OOB | NW_MSG_ERRQUEUE)))
		a->tcp |= NW_TCP_SEQ_END;
	else if (!(recv_flags & (NW_MSG_OOB | NW_MSG_ERRQUEUE)) && peek_off < 0)
		a->tcp |= NW_TCP_SEQ_START;
}

/* The optional columns of attr_mask; the others are 0. recv_flags: a TCP
 * receive's flags as tcp_recvmsg() had them, else 0. */
static __always_inline void fill_attr(struct nw_event_attr *x, struct sock *sk, __u8 direction,
				      int recv_flags, bool direct)
{
	__builtin_memset(&x->attr, 0, sizeof(x->attr));
	x->ev.record = NW_RECORD_EVENT_ATTR;
	if (attr_mask & NW_ATTR_TID)
		x->attr.tid = (__u32)bpf_get_current_pid_tgid();
	if (attr_mask & NW_ATTR_UID)
		x->attr.uid = (__u32)bpf_get_current_uid_gid();
	if (attr_mask & NW_ATTR_CGROUP)
		x->attr.cgroup_id = bpf_get_current_cgroup_id();
	if (attr_mask & NW_ATTR_NETNS) {
		/* Plain loads through a BTF pointer (tp_btf, fexit) instead of
		 * two probe reads: about 100 ns less per row on the ping-pong. */
		if (direct)
			x->attr.netns = sk->__sk_common.skc_net.net->ns.inum;
		else
			x->attr.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	if (attr_mask & NW_ATTR_COOKIE)
		x->attr.cookie = sock_cookie(sk, direct);
	if (attr_mask & NW_ATTR_TCP)
		fill_tcp(&x->attr, sk, direction, recv_flags, direct);
}

/* fill_event(), and the optional columns when any is on. */
static __always_inline void fill_record(struct nw_event_attr *x, struct sock *sk, __u16 family,
					__u8 protocol, __u8 direction, int ret, __u32 tgid,
					__u64 now, struct task_state *armed, int recv_flags,
					bool direct)
{
	fill_event(&x->ev, sk, family, protocol, direction, ret, tgid, now, armed, direct);
	if (emit_attr)
		fill_attr(x, sk, direction, recv_flags, direct);
}

/* Socket family and protocol (IPPROTO_TCP for MPTCP too), or false when
 * the socket is not TCP, MPTCP or UDP over IPv4/IPv6. */
static __always_inline bool traced_socket(struct sock *sk, __u16 *family, __u16 *protocol,
					  bool direct)
{
	__u16 type;

	if (!sk)
		return false;
	*family = KREAD(direct, sk, __sk_common.skc_family);
	if (*family != AF_INET && *family != AF_INET6)
		return false;
	type = KREAD(direct, sk, sk_type);
	*protocol = KREAD(direct, sk, sk_protocol);
	/* An MPTCP socket (the one the application holds, never a subflow:
	 * those are plain TCP sockets inside the kernel that no hook of ours
	 * sees) is TCP on the wire, and its row says TCP. sk_protocol is 16
	 * bits wide since 5.6 (commit bf9765145b85), before every kernel we
	 * support. */
	if (*protocol == IPPROTO_MPTCP && type == SOCK_STREAM) {
		*protocol = IPPROTO_TCP;
		return true;
	}
	/* sk_type too: a SOCK_RAW socket may carry IPPROTO_TCP. */
	return (*protocol == IPPROTO_TCP && type == SOCK_STREAM) ||
	       (*protocol == IPPROTO_UDP && type == SOCK_DGRAM);
}

/* ---- sendfile and splice: one row per syscall ---------------------------- */

/* The struct sock behind file descriptor fd, or NULL when fd is not a
 * socket (fd_sock() above: no map is touched). */
static __always_inline struct sock *sock_of_fd(long fd)
{
	struct socket *sock;

	if (fd < 0)
		return NULL;
	sock = fd_sock(fd);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

/*
 * sendfile(out_fd, in_fd, ...) and splice(fd_in, ..., fd_out, ...).
 *
 * Into or from a TCP socket, the kernel cuts the syscall into chunks (64
 * KiB through tcp_sendmsg from 6.5, a page each through tcp_sendpage
 * before; tcp_splice_read on the receive side reaches no recvmsg at all),
 * but the contract is one row per syscall: arm a splice op on that socket,
 * let handle_sock_op() drop its chunks, and make the row at sys_exit with
 * the syscall's return value. Into or from UDP each chunk is a datagram,
 * so those keep one row per datagram, with the syscall's start time. With
 * no socket at either end (file to pipe, say), nothing is armed.
 */
static __always_inline void arm_splice(long syscall_nr, long fd_out, long fd_in)
{
	__u16 family, protocol;
	struct sock *sk;

	sk = sock_of_fd(fd_out);
	if (sk && traced_socket(sk, &family, &protocol, false)) {
		if (protocol == IPPROTO_TCP)
			arm(syscall_nr, NW_OP_SPLICE_SEND, (__u64)sk, 0, 0);
		else
			arm(syscall_nr, NW_OP_WRITE, 0, 0, 0);
		return;
	}
	sk = sock_of_fd(fd_in);
	if (sk && traced_socket(sk, &family, &protocol, false)) {
		if (protocol == IPPROTO_TCP)
			arm(syscall_nr, NW_OP_SPLICE_RECV, (__u64)sk, 0, 0);
		else
			arm(syscall_nr, NW_OP_READ, 0, 0, 0);
	}
}

SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile64(struct nw_sys_enter *ctx)
{
	/* sendfile64(out_fd, in_fd, offset, count) */
	arm_splice(ctx->syscall_nr, SYS_ARG(ctx, 0), SYS_ARG(ctx, 1));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_splice")
int sys_enter_splice(struct nw_sys_enter *ctx)
{
	/* splice(fd_in, off_in, fd_out, off_out, len, flags) */
	arm_splice(ctx->syscall_nr, SYS_ARG(ctx, 2), SYS_ARG(ctx, 0));
	return 0;
}

/* The row of an armed sendfile/splice, with the syscall's return value:
 * the bytes it moved, or the errno (a syscall that moved some bytes and
 * then hit an error returns the byte count). */
static __always_inline void splice_exit(long syscall_nr, long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u16 family = 0, protocol = 0;
	struct task_state *st;
	struct nw_event_attr *x;
	struct sock *sk;
	__u8 direction;

	st = state_lookup(false);
	if (!st || (st->op != NW_OP_SPLICE_SEND && st->op != NW_OP_SPLICE_RECV))
		return;
	direction = st->op == NW_OP_SPLICE_SEND ? NW_DIR_SEND : NW_DIR_RECV;
	st->op = NW_OP_NONE;
	/* Armed by another syscall whose exit we did not see: not ours. */
	if (st->syscall_nr != syscall_nr)
		return;
	sk = (struct sock *)st->name;
	if (!traced_socket(sk, &family, &protocol, false))
		return;
	x = record_begin();
	if (!x)
		return;
	/* Both are bounded by MAX_RW_COUNT (INT_MAX & PAGE_MASK): fits an int. */
	fill_record(x, sk, family, IPPROTO_TCP, direction, (int)ret, tgid, bpf_ktime_get_ns(), st,
		    0, false);
	read_sock_peer(&x->ev, sk, family, false);
	record_end(x);
}

/* The tracepoint backend's: the row of a sendfile or splice on TCP is made
 * here, whatever saw its chunks (the fentry and kprobe backends make it at
 * the syscall function's return, fexit_sys_* and krp_sys_*). */
SEC("tracepoint/syscalls/sys_exit_sendfile64")
int sys_exit_sendfile64(struct nw_sys_exit *ctx)
{
	splice_exit(ctx->syscall_nr, ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_splice")
int sys_exit_splice(struct nw_sys_exit *ctx)
{
	splice_exit(ctx->syscall_nr, ctx->ret);
	return 0;
}

/* ---- io_uring: one row per request, made at its completion -------------- */

/*
 * A send/recv/sendmsg/recvmsg request on a socket reaches the same protocol
 * calls as a syscall (in the submitter inside io_uring_enter, in task_work
 * after a poll wakeup, or in an io-wq worker), possibly several times: a
 * non-blocking first attempt that returns -EAGAIN and is retried, a
 * MSG_WAITALL send issued in pieces. Where the io_uring tracepoints carry
 * the request (the tracepoint rework of 5.19 added `req` to
 * io_uring_complete and io_uring_submit_sqe; 6.1, 6.12 and 6.18 have it,
 * 5.10 does not; the loader checks the records' BTF, not versions), the row
 * is made at io_uring:io_uring_complete with the CQE result, Timestamp =
 * the request's issue (io_uring_submit_sqe, renamed io_uring_submit_req in
 * 6.4) and Latency to its completion. The protocol calls in between only
 * leave their addresses (uring_claim()). PID and Command are the
 * submitter's, also when an io-wq worker (`iou-wrk-<tid>`) makes the
 * protocol call. On 5.10 the tracepoints have no request pointer: these
 * programs are not loaded and each protocol call stays a row without
 * Latency.
 *
 * Multishot receives (IORING_RECV_MULTISHOT, 6.0+) post one CQE per
 * receive that carries data, all but the last through io_req_post_cqe() ->
 * io_fill_cqe_aux(), whose io_uring_complete has req == NULL (6.1 to 6.18)
 * but the ring and user_data; the request is found by (ctx, user_data).
 * Each CQE is a row: Timestamp = the previous CQE of the request (the
 * first: its issue). The aux CQE is traced only when it was posted; when
 * the CQ ring is full the kernel ends the multishot and the same data rides
 * on the final CQE, which has the request (io_recv_finish()). So each CQE
 * is one row, and none is missed.
 *
 * A CQE that does not fit the CQ ring goes to the overflow list with
 * io_uring:io_uring_cqe_overflow (5.19+) and never reaches
 * io_uring_complete (io_fill_cqe_req() returns before the tracepoint): that
 * tracepoint makes its row, found by (ctx, user_data).
 *
 * The requests in flight are kept in plain hash maps of 16384: a request
 * that finds them full is counted as lost (uring_lost, which userspace
 * adds to the lost events), and its protocol calls make rows as on 5.10.
 * Nothing is evicted silently.
 *
 * Not claimed (rows as before): fixed files (the fd is an index into the
 * ring's table), IOSQE_CQE_SKIP_SUCCESS requests (no CQE, no tracepoint on
 * success), and the other opcodes.
 *
 * Cost: these tracepoints fire only in processes that use io_uring, once
 * per submitted request and once per completion; the socket-layer hook
 * looks the socket up only for an operation no syscall armed.
 */
#define NW_IORING_OP_SENDMSG 9
#define NW_IORING_OP_RECVMSG 10
#define NW_IORING_OP_SEND 26
#define NW_IORING_OP_RECV 27
#define NW_REQ_F_FIXED_FILE 1	    /* REQ_F_FIXED_FILE == IOSQE_FIXED_FILE (uapi) */
#define NW_REQ_F_CQE_SKIP 0x40	    /* REQ_F_CQE_SKIP == IOSQE_CQE_SKIP_SUCCESS (5.17+) */
#define NW_IORING_RECV_MULTISHOT 2  /* uapi, io_sr_msg.flags */
#define NW_IORING_CQE_F_MORE 2	    /* uapi */
#define NW_URING_MAX 16384

struct uring_req {
	__u64 start_ns;  /* the issue, then each multishot CQE */
	__u64 sk;
	__u64 umsg;      /* sendmsg/recvmsg: the user's msghdr */
	__u64 ctx;       /* with user_data: the key of uring_by_ud */
	__u64 user_data;
	__u8 direction;
	__u8 seen;       /* ev holds the last protocol call's view */
	__u8 multishot;
	__u8 _pad;
	__u32 tgid;      /* the submitter's */
	char comm[NW_TASK_COMM_LEN]; /* the submitting thread's */
	struct nw_event_attr ev;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_URING_MAX);
	__type(key, __u64); /* struct io_kiocb * */
	__type(value, struct uring_req);
} uring_reqs SEC(".maps");

struct uring_sk_key {
	__u64 sk;
	__u64 direction;
};

/* The request last issued on a socket, per direction. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_URING_MAX);
	__type(key, struct uring_sk_key);
	__type(value, __u64);
} uring_by_sk SEC(".maps");

struct uring_ud_key {
	__u64 ctx;
	__u64 user_data;
};

/* The request by ring and user_data, for the CQEs traced without it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_URING_MAX);
	__type(key, struct uring_ud_key);
	__type(value, __u64);
} uring_by_ud SEC(".maps");

/* Requests that found uring_reqs (or its indexes) full, per CPU: their
 * rows are lost. Userspace adds them to the lost events. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} uring_lost SEC(".maps");

static __always_inline void uring_count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&uring_lost, &zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

/* The 6.1 record (io_uring_submit_sqe got `req` in 5.19); 5.10's has none. */
struct trace_event_raw_io_uring_submit_sqe___nw {
	void *req;
} __attribute__((preserve_access_index));

static __always_inline void uring_submit(struct io_kiocb *req)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct uring_sk_key key = {};
	struct uring_ud_key udk = {};
	struct uring_req ur = {};
	__u16 family, protocol;
	struct sock *sk;
	__u64 reqp = (__u64)req;
	__u32 req_flags;
	__u8 opcode;
	int fd;

	if (!req || !tgid_wanted(tgid) || !thread_wanted())
		return;
	opcode = BPF_CORE_READ(req, opcode);
	if (opcode == NW_IORING_OP_SEND || opcode == NW_IORING_OP_SENDMSG)
		ur.direction = NW_DIR_SEND;
	else if (opcode == NW_IORING_OP_RECV || opcode == NW_IORING_OP_RECVMSG)
		ur.direction = NW_DIR_RECV;
	else
		return;
	bpf_get_current_comm(ur.comm, sizeof(ur.comm));
	if (filter_comms) {
		struct comm_key ck = {};

		__builtin_memcpy(ck.comm, ur.comm, sizeof(ck.comm));
		if (!comm_wanted(&ck))
			return;
	}
	if (!bpf_core_field_exists(req->cqe.fd) || !bpf_core_type_exists(struct io_sr_msg))
		return;
	/* Only the low bits matter; flags is 32 bits wide before 6.10. */
	req_flags = (__u32)BPF_CORE_READ(req, flags);
	if (req_flags & (NW_REQ_F_FIXED_FILE | NW_REQ_F_CQE_SKIP))
		return;
	fd = BPF_CORE_READ(req, cqe.fd);
	sk = sock_of_fd(fd);
	if (!sk || !traced_socket(sk, &family, &protocol, false))
		return;
	/* The command data (struct io_sr_msg) sits at the start of the
	 * request. A multishot recvmsg writes no msghdr back: its source is in
	 * the provided buffer. */
	if (ur.direction == NW_DIR_RECV &&
	    (BPF_CORE_READ((struct io_sr_msg *)req, flags) & NW_IORING_RECV_MULTISHOT))
		ur.multishot = 1;
	else if (opcode == NW_IORING_OP_SENDMSG || opcode == NW_IORING_OP_RECVMSG)
		ur.umsg = (__u64)BPF_CORE_READ((struct io_sr_msg *)req, umsg);
	ur.start_ns = bpf_ktime_get_ns();
	ur.sk = (__u64)sk;
	ur.ctx = (__u64)BPF_CORE_READ(req, ctx);
	ur.user_data = BPF_CORE_READ(req, cqe.user_data);
	ur.tgid = tgid;
	if (bpf_map_update_elem(&uring_reqs, &reqp, &ur, BPF_ANY)) {
		/* Full: this request's row is lost (its protocol calls make
		 * rows of their own, as on 5.10). */
		uring_count_lost();
		return;
	}
	key.sk = (__u64)sk;
	key.direction = ur.direction;
	udk.ctx = ur.ctx;
	udk.user_data = ur.user_data;
	/* Neither holds more keys than uring_reqs has requests, but a failure
	 * must not leave a request that no protocol call can find. */
	if (bpf_map_update_elem(&uring_by_sk, &key, &reqp, BPF_ANY) ||
	    bpf_map_update_elem(&uring_by_ud, &udk, &reqp, BPF_ANY)) {
		bpf_map_delete_elem(&uring_reqs, &reqp);
		uring_count_lost();
	}
}

/* A protocol call that no syscall armed, on a socket with a request in
 * flight in that direction: that request's. Its view (addresses) is kept
 * for the row that its completion makes. */
static __always_inline struct nw_event_attr *uring_claim(struct sock *sk, __u8 direction)
{
	struct uring_sk_key key = { .sk = (__u64)sk, .direction = direction };
	struct uring_req *ur;
	__u64 *req;

	req = bpf_map_lookup_elem(&uring_by_sk, &key);
	if (!req)
		return NULL;
	ur = bpf_map_lookup_elem(&uring_reqs, req);
	if (!ur || ur->sk != (__u64)sk)
		return NULL;
	ur->seen = 1;
	return &ur->ev;
}

/* One CQE of a request we follow: its row. */
static __always_inline void uring_row(struct uring_req *ur, int res, __u64 now)
{
	__u16 family = 0, protocol = 0;
	struct sock *sk = (struct sock *)ur->sk;
	struct nw_event_attr *x;
	struct nw_event *e;

	x = record_begin();
	if (!x)
		return; /* counted */
	if (!traced_socket(sk, &family, &protocol, false)) {
		record_discard(x);
		return;
	}
	e = &x->ev;
	if (ur->seen) {
		if (emit_attr)
			__builtin_memcpy(x, &ur->ev, sizeof(struct nw_event_attr));
		else
			__builtin_memcpy(x, &ur->ev, sizeof(struct nw_event));
	} else {
		/* Failed before any protocol call (a bad buffer, say). */
		fill_record(x, sk, family, protocol, ur->direction, res, ur->tgid, now, NULL, 0,
			    false);
		read_sock_peer(e, sk, family, false);
	}
	/* The tracepoint backend sees no kernel msghdr: an unconnected UDP
	 * peer is in the application's (for a receive, the kernel has copied
	 * the source there by now). */
	if (!(e->info & NW_INFO_PEER_KNOWN) && ur->umsg && (res >= 0 || !ur->direction)) {
		struct user_msghdr *hdr = (struct user_msghdr *)ur->umsg;
		__u64 name = 0;

		if (!bpf_probe_read_user(&name, sizeof(name), &hdr->msg_name))
			read_user_peer(e, name);
	}
	/* The submitter's, not the io-wq worker's that may have made the
	 * protocol call (the contract's calling thread). */
	e->pid = ur->tgid;
	__builtin_memcpy(e->comm, ur->comm, sizeof(e->comm));
	e->ret = res;
	e->start_ns = ur->start_ns;
	e->end_ns = now;
	e->info |= NW_INFO_HAS_START;
	record_end(x);
}

/*
 * A CQE: req is the request when the tracepoint has it, else NULL (a
 * multishot receive's CQEs but its last, and every CQE that overflowed),
 * and the request is found by (ctx, user_data). Only CQEs with
 * IORING_CQE_F_MORE keep the request in flight.
 */
static __always_inline void uring_complete(void *req, void *ctx, __u64 user_data, int res,
					   __u32 cflags, bool overflow)
{
	struct uring_ud_key udk = { .ctx = (__u64)ctx, .user_data = user_data };
	__u64 reqp = (__u64)req, now = bpf_ktime_get_ns();
	struct uring_sk_key key = {};
	struct uring_req *ur;
	__u64 *found;

	if (!reqp) {
		found = bpf_map_lookup_elem(&uring_by_ud, &udk);
		if (!found)
			return;
		reqp = *found;
	}
	ur = bpf_map_lookup_elem(&uring_reqs, &reqp);
	if (!ur)
		return;
	/* Another CQE with this ring and user_data (an IORING_OP_MSG_RING
	 * from elsewhere, say) is not ours: without the request, only a
	 * multishot receive's CQEs and overflowed CQEs are. */
	if (!req && (ur->ctx != (__u64)ctx || ur->user_data != user_data ||
		     !(overflow || ur->multishot)))
		return;
	uring_row(ur, res, now);
	if (cflags & NW_IORING_CQE_F_MORE) {
		/* The next CQE of this multishot request starts here. */
		ur->start_ns = now;
		return;
	}
	key.sk = ur->sk;
	key.direction = ur->direction;
	udk.ctx = ur->ctx;
	udk.user_data = ur->user_data;
	found = bpf_map_lookup_elem(&uring_by_sk, &key);
	if (found && *found == reqp)
		bpf_map_delete_elem(&uring_by_sk, &key);
	found = bpf_map_lookup_elem(&uring_by_ud, &udk);
	if (found && *found == reqp)
		bpf_map_delete_elem(&uring_by_ud, &udk);
	bpf_map_delete_elem(&uring_reqs, &reqp);
}

/*
 * The io_uring programs are BTF tracepoints (tp_btf), attached through
 * bpf() alone: no perf event and no tracefs, so that the fentry backend
 * needs neither. Their arguments are the TP_PROTO's, each a u64 slot of
 * ctx; the loads use CTX_LOAD() (constant offsets, see fexit_ret()).
 */
#define CTX_LOAD(ctx, off)                                                      \
	({                                                                      \
		__u64 __v;                                                      \
		asm volatile("%0 = *(u64 *)(%1 + " #off ")" : "=r"(__v) : "r"(ctx)); \
		__v;                                                            \
	})

/* 6.4 and later (commit 2ad57931db64 renamed io_uring_submit_sqe):
 * TP_PROTO(struct io_kiocb *req). */
SEC("tp_btf/io_uring_submit_req")
int uring_submit_req(__u64 *ctx)
{
	uring_submit((struct io_kiocb *)CTX_LOAD(ctx, 0));
	return 0;
}

/* 5.19 to 6.3: the same event under its old name,
 * TP_PROTO(struct io_kiocb *req, bool force_nonblock). 5.10's has no req
 * (this program is not loaded there). */
SEC("tp_btf/io_uring_submit_sqe")
int uring_submit_sqe(__u64 *ctx)
{
	uring_submit((struct io_kiocb *)CTX_LOAD(ctx, 0));
	return 0;
}

/* io_uring_complete's arguments changed while its record did not:
 * TP_PROTO(void *ctx, void *req, u64 user_data, int res, unsigned cflags,
 * u64 extra1, u64 extra2) from 5.19 (6.1, 6.12), then
 * TP_PROTO(struct io_ring_ctx *ctx, void *req, struct io_uring_cqe *cqe)
 * (6.18 has it). Userspace counts them in the kernel's BTF; the verifier
 * drops the branch the read-only setting rules out. */
const volatile bool uring_complete_has_cqe = false;

SEC("tp_btf/io_uring_complete")
int uring_complete_tp(__u64 *ctx)
{
	if (uring_complete_has_cqe) {
		struct io_uring_cqe *cqe = (struct io_uring_cqe *)CTX_LOAD(ctx, 16);

		uring_complete((void *)CTX_LOAD(ctx, 8), (void *)CTX_LOAD(ctx, 0),
			       BPF_CORE_READ(cqe, user_data), BPF_CORE_READ(cqe, res),
			       BPF_CORE_READ(cqe, flags), false);
	} else {
		uring_complete((void *)CTX_LOAD(ctx, 8), (void *)CTX_LOAD(ctx, 0),
			       CTX_LOAD(ctx, 16), (int)CTX_LOAD(ctx, 24), (__u32)CTX_LOAD(ctx, 32),
			       false);
	}
	return 0;
}

/* 5.19 and later: a CQE that did not fit the CQ ring (it reaches the
 * application later from the overflow list, or is dropped when the kernel
 * cannot allocate it; the operation happened either way).
 * TP_PROTO(void *ctx, unsigned long long user_data, s32 res, u32 cflags,
 * void *ocqe) on 6.1, 6.12 and 6.18. */
SEC("tp_btf/io_uring_cqe_overflow")
int uring_overflow_tp(__u64 *ctx)
{
	uring_complete(NULL, (void *)CTX_LOAD(ctx, 0), CTX_LOAD(ctx, 8), (int)CTX_LOAD(ctx, 16),
		       (__u32)CTX_LOAD(ctx, 24), true);
	return 0;
}

/*
 * The shared handler: one send or receive on a socket has completed with
 * result ret. Every backend ends here.
 *
 * kmsg is the kernel's msghdr when the backend sees it (fentry, kprobe):
 * the UDP peer is then read from it. The tracepoint backend passes NULL and
 * reads the addresses the application gave, in user memory.
 *
 * recv_flags: a TCP receive's flags as tcp_recvmsg() got them (MSG_PEEK
 * and MSG_OOB decide its TCP Seq), on every path: syscalls, read(),
 * io_uring; 0 for the other operations.
 */
static __always_inline void handle_sock_op(struct sock *sk, int ret, __u8 direction,
					   struct msghdr *kmsg, int recv_flags, bool direct)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_state *st, *armed = NULL;
	__u16 family = 0, protocol = 0;
	__u64 name = 0, namelen_ptr = 0;
	struct nw_event_attr *x;
	struct nw_event *e;

	if (!tgid_wanted(tgid) || !traced_socket(sk, &family, &protocol, direct))
		return;
	/* What the socket alone decides: before any other work. */
	if ((want_protocol && protocol != want_protocol) ||
	    (want_direction && direction + 1 != want_direction)) {
		count_filtered();
		return;
	}
	if (!thread_wanted())
		return;

	st = state_lookup(false);
	if (st) {
		/* The previous message of a recvmmsg (or, if a sys_exit was
		 * missed, an older receive) waits for its address: its turn
		 * comes first, so rows keep their order. */
		if (st->pending)
			flush_pending(st);
		if (st->op != NW_OP_NONE && st->syscall_nr == current_syscall_nr(direct)) {
			/* A chunk of a sendfile/splice on this socket: its
			 * sys_exit makes the syscall's one row. */
			if (st->op == NW_OP_SPLICE_SEND || st->op == NW_OP_SPLICE_RECV) {
				if (st->name == (__u64)sk) {
					/* Make the socket's cookie here, where the
					 * helper may be called: the row, made at
					 * sys_exit, reads it back (sock_cookie()). */
					if (emit_attr && (attr_mask & NW_ATTR_COOKIE))
						sock_cookie(sk, direct);
					return;
				}
			} else if (op_is_send(st->op) == (direction == NW_DIR_SEND)) {
				armed = st;
			}
		}
	}

	if (!kmsg && armed && protocol == IPPROTO_UDP && armed->op != NW_OP_WRITE &&
	    armed->op != NW_OP_READ)
		name = user_name_of(armed, &namelen_ptr);

	/* An io_uring request's attempt: its completion makes the row. */
	x = armed ? NULL : uring_claim(sk, direction);
	if (x) {
		e = &x->ev;
		fill_record(x, sk, family, protocol, direction, ret, tgid, now, NULL, recv_flags,
			    direct);
		if (!(protocol == IPPROTO_UDP && kmsg && (direction == NW_DIR_SEND || ret >= 0) &&
		      read_peer(e, (__u64)KREAD(direct, kmsg, msg_name), false)))
			read_sock_peer(e, sk, family, direct);
		return;
	}

	if (armed && direction == NW_DIR_RECV && name && ret >= 0) {
		/* Unconnected-style UDP receive with a name buffer: the source
		 * address is copied out after this tracepoint. Finish it at
		 * sys_exit, or at the next message of a recvmmsg. */
		fill_record(&armed->pending_event, sk, family, protocol, direction, ret, tgid,
			    now, armed, recv_flags, direct);
		read_sock_peer(&armed->pending_event.ev, sk, family, direct);
		armed->pending_name = name;
		armed->pending_namelen = namelen_ptr;
		armed->pending = 1;
	} else {
		x = record_begin();
		if (x) {
			bool peer_done = false;

			e = &x->ev;
			fill_record(x, sk, family, protocol, direction, ret, tgid, now, armed,
				    recv_flags, direct);
			if (protocol == IPPROTO_UDP && kmsg &&
			    (direction == NW_DIR_SEND || ret >= 0)) {
				/* A send's msg_name is where the datagram
				 * went, even on a connected socket; a
				 * receive's was filled in by the protocol. */
				peer_done = read_peer(e, (__u64)KREAD(direct, kmsg, msg_name), false);
			} else if (direction == NW_DIR_SEND) {
				peer_done = read_user_peer(e, name);
			}
			if (!peer_done)
				read_sock_peer(e, sk, family, direct);
			record_end(x);
		}
	}

	if (armed) {
		/* The next operation in this syscall (mmsg, sendfile chunks)
		 * starts where this one ended. */
		armed->start_ns = now;
		armed->msg_index++;
	}
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_sock_send_length, struct sock *sk, int ret, int flags)
{
	handle_sock_op(sk, ret, NW_DIR_SEND, NULL, 0, true);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_sock_recv_length, struct sock *sk, int ret, int flags)
{
	/* flags: what sock_recvmsg() passed down (tcp_recvmsg()'s). */
	handle_sock_op(sk, ret, NW_DIR_RECV, NULL, flags, true);
	return 0;
}

/* ---- syscall exit: finish a pending UDP receive ------------------------- */

static __always_inline void finish_pending_receive(void)
{
	struct task_state *st;

	st = state_lookup(false);
	if (st && st->pending)
		flush_pending(st);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int tp_exit_recvfrom(struct nw_sys_exit *ctx)
{
	finish_pending_receive();
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int tp_exit_recvmsg(struct nw_sys_exit *ctx)
{
	finish_pending_receive();
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int tp_exit_recvmmsg(struct nw_sys_exit *ctx)
{
	finish_pending_receive();
	return 0;
}

/* ---- fentry backend: twin programs, for runs the kernel skips ----------- */

/*
 * A trampoline runs each fentry/fexit program under a per-program,
 * per-CPU recursion guard (prog->active; __bpf_prog_enter_recur, 5.12+,
 * and the same check without the counter before), and skips the program
 * (recursion_misses++) while the guard is held. With kernel preemption
 * that is not voluntary (PREEMPT_LAZY is the default of Debian's 7.x,
 * commit 7c70cb94d29c; preempt=full elsewhere) a task can be preempted
 * inside a program while holding the guard: every other task entering
 * that program on that CPU meanwhile loses its row or its start. Seen on
 * 7.3: 3 of 128 rows of a blocking UDP ping-pong lost.
 *
 * So every program of the fentry backend has a twin on the same hook,
 * with its own guard. The twin is attached first and the trampoline runs
 * the newest link first (hlist_add_head in __bpf_trampoline_link_prog,
 * 5.5 to 7.x), so the primary runs, then the twin. The primary marks the
 * call in the task's state when it ran; the twin, finding the mark, clears
 * it and does nothing; finding none, it does the primary's work. A row is
 * lost only when both are skipped in one call (two tasks preempted, one in
 * each), which recursion_misses of the twins counts.
 *
 * The mark is the trampoline frame's address (ctx), the same for both
 * programs of one call. A later call of the same task can have the same
 * address, which matters only if the twin was skipped right after its
 * primary ran (the mark stays) and the next primary is skipped too.
 */
static __always_inline void twin_primary_ran(void *ctx)
{
	struct task_state *st = state_lookup(true);

	if (st)
		st->twin_token = (__u64)ctx;
}

/* In a twin: whether its primary ran for this call (and forget it). */
static __always_inline bool twin_primary_did(void *ctx)
{
	struct task_state *st = state_lookup(false);

	if (st && st->twin_token == (__u64)ctx) {
		st->twin_token = 0;
		return true;
	}
	return false;
}

/* A primary program and its twin, both running body(ctx). */
#define TWIN_PROGRAMS(sec, name, body)                                          \
	SEC(sec)                                                                \
	int name(__u64 *ctx)                                                    \
	{                                                                       \
		body(ctx);                                                      \
		if (twins_loaded)                                               \
			twin_primary_ran(ctx);                                  \
		return 0;                                                       \
	}                                                                       \
	SEC(sec)                                                                \
	int name##_twin(__u64 *ctx)                                             \
	{                                                                       \
		if (!twin_primary_did(ctx))                                     \
			body(ctx);                                              \
		return 0;                                                       \
	}

/* ---- fentry and kprobe backends: the syscalls without syscall tracepoints -- */

/*
 * Attaching any syscall tracepoint (syscalls:* or raw_syscalls:*) puts
 * every thread of the host on the syscall slow path
 * (SYSCALL_WORK_SYSCALL_TRACEPOINT), and the read/write ones then run on
 * every file, pipe and device (issue #20). The fentry and kprobe backends
 * take what those give (start time, the application's flags, the one row
 * per sendfile/splice) from functions that only socket operations reach:
 *
 *   __x64_sys_{sendto,recvfrom,sendmsg,recvmsg,sendmmsg,recvmmsg}
 *       the x86_64 syscall wrappers (struct pt_regs based since 4.17,
 *       commit fa697140f9a2), called through the syscall table and so
 *       never inlined: at entry, arm the thread's state with the flags;
 *   sock_write_iter / sock_read_iter
 *       the socket file's write_iter/read_iter, called through f_op only
 *       for a socket: at entry, arm WRITE/READ when the thread is in
 *       write/writev or read/readv (as sys_enter_write & co do);
 *   __x64_sys_{sendfile64,splice}
 *       at entry arm_splice(), at return the syscall's one row.
 *
 * All of them exist as functions in the BTF of 5.10, 6.1, 6.12 and 6.18
 * (docs/backends.md). The syscall number armed is the one the thread is
 * in (pt_regs orig_ax), so handle_sock_op() matches the state exactly as
 * it does for the tracepoints.
 */

#define NW_NR_READ 0	/* x86_64 syscall numbers */
#define NW_NR_WRITE 1
#define NW_NR_READV 19
#define NW_NR_WRITEV 20
#define NW_PF_IO_WORKER 0x00000010 /* include/linux/sched.h, 5.5+ */
#define NW_PF_KTHREAD 0x00200000

/* The syscall wrapper's arguments: pt_regs as the syscall entry saved
 * them (x86_64: di, si, dx, r10, r8, r9). A kprobe has the wrapper's
 * pt_regs pointer and reads it with probe reads. fentry does not use its
 * argument: on 5.10 its BTF type is a pointer to a forward declaration
 * (the wrapper's file never defines struct pt_regs), and the 5.10
 * verifier refuses to load a program that reads it ("arg0 type FWD is not
 * a struct"). The wrapper's regs are the task's own saved registers, so
 * fentry reads those instead (fentry_syscall_entry()). */
static __always_inline void socket_syscall_entry(struct pt_regs *regs, enum nw_op op, bool direct)
{
	long nr = KREAD(direct, regs, orig_ax);

	if (op == NW_OP_SENDTO) /* sendto(fd, buf, len, flags, dest_addr, addrlen) */
		arm(nr, op, KREAD(direct, regs, r8), 0, KREAD(direct, regs, r10));
	else if (op == NW_OP_RECVFROM) /* recvfrom(fd, buf, len, flags, src_addr, addrlen) */
		arm(nr, op, KREAD(direct, regs, r8), KREAD(direct, regs, r9),
		    KREAD(direct, regs, r10));
	else if (op == NW_OP_SENDMSG || op == NW_OP_RECVMSG) /* (fd, msg, flags) */
		arm(nr, op, KREAD(direct, regs, si), 0, KREAD(direct, regs, dx));
	else /* sendmmsg(fd, msgvec, vlen, flags), recvmmsg(..., flags, timeout) */
		arm(nr, op, KREAD(direct, regs, si), 0, KREAD(direct, regs, r10));
}

/* fentry on a socket syscall wrapper: the task's registers, with direct
 * loads where bpf_task_pt_regs() gives a BTF pointer (5.15+). The verifier
 * keeps only the branch this kernel takes. */
static __always_inline void fentry_syscall_entry(enum nw_op op)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		socket_syscall_entry((struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()),
				     op, true);
	else
		socket_syscall_entry(stack_pt_regs(), op, false);
}

/* sendfile64(out_fd, in_fd, ...), splice(fd_in, off_in, fd_out, ...) */
static __always_inline void splice_syscall_entry(struct pt_regs *regs, bool sendfile, bool direct)
{
	long nr = KREAD(direct, regs, orig_ax);

	if (sendfile)
		arm_splice(nr, KREAD(direct, regs, di), KREAD(direct, regs, si));
	else
		arm_splice(nr, KREAD(direct, regs, dx), KREAD(direct, regs, di));
}

/* fentry on sendfile64/splice, as fentry_syscall_entry(). */
static __always_inline void fentry_splice_entry(bool sendfile)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		splice_syscall_entry((struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()),
				     sendfile, true);
	else
		splice_syscall_entry(stack_pt_regs(), sendfile, false);
}

/* sock_write_iter/sock_read_iter: arm a plain write/read, but only inside
 * the syscalls whose tracepoints armed it before (not in pwritev2, splice,
 * or an io_uring request; never in an io-wq worker or kernel thread, whose
 * saved syscall number means nothing), and only on inet sockets. */
static __always_inline void sock_iter_entry(struct kiocb *iocb, bool write, bool direct)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	long nr = current_syscall_nr(direct);
	struct socket *sock;
	__u16 family;

	if (write ? (nr != NW_NR_WRITE && nr != NW_NR_WRITEV)
		  : (nr != NW_NR_READ && nr != NW_NR_READV))
		return;
	if (BPF_CORE_READ(task, flags) & (NW_PF_IO_WORKER | NW_PF_KTHREAD))
		return;
	sock = BPF_CORE_READ(iocb, ki_filp, private_data);
	family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	if (family == AF_INET || family == AF_INET6)
		arm(nr, write ? NW_OP_WRITE : NW_OP_READ, 0, 0, 0);
}

static __always_inline void on_sys_sendto(__u64 *ctx)
{
	fentry_syscall_entry(NW_OP_SENDTO);
}
TWIN_PROGRAMS("fentry/__x64_sys_sendto", fentry_sys_sendto, on_sys_sendto)

static __always_inline void on_sys_sendmsg(__u64 *ctx)
{
	fentry_syscall_entry(NW_OP_SENDMSG);
}
TWIN_PROGRAMS("fentry/__x64_sys_sendmsg", fentry_sys_sendmsg, on_sys_sendmsg)

static __always_inline void on_sys_sendmmsg(__u64 *ctx)
{
	fentry_syscall_entry(NW_OP_SENDMMSG);
}
TWIN_PROGRAMS("fentry/__x64_sys_sendmmsg", fentry_sys_sendmmsg, on_sys_sendmmsg)

static __always_inline void on_sys_recvfrom(__u64 *ctx)
{
	fentry_syscall_entry(NW_OP_RECVFROM);
}
TWIN_PROGRAMS("fentry/__x64_sys_recvfrom", fentry_sys_recvfrom, on_sys_recvfrom)

static __always_inline void on_sys_recvmsg(__u64 *ctx)
{
	fentry_syscall_entry(NW_OP_RECVMSG);
}
TWIN_PROGRAMS("fentry/__x64_sys_recvmsg", fentry_sys_recvmsg, on_sys_recvmsg)

static __always_inline void on_sys_recvmmsg(__u64 *ctx)
{
	fentry_syscall_entry(NW_OP_RECVMMSG);
}
TWIN_PROGRAMS("fentry/__x64_sys_recvmmsg", fentry_sys_recvmmsg, on_sys_recvmmsg)

static __always_inline void on_sock_write_iter(__u64 *ctx)
{
	sock_iter_entry((struct kiocb *)ctx[0], true, true);
}
TWIN_PROGRAMS("fentry/sock_write_iter", fentry_sock_write_iter, on_sock_write_iter)

static __always_inline void on_sock_read_iter(__u64 *ctx)
{
	sock_iter_entry((struct kiocb *)ctx[0], false, true);
}
TWIN_PROGRAMS("fentry/sock_read_iter", fentry_sock_read_iter, on_sock_read_iter)

static __always_inline void on_sys_sendfile64_entry(__u64 *ctx)
{
	fentry_splice_entry(true);
}
TWIN_PROGRAMS("fentry/__x64_sys_sendfile64", fentry_sys_sendfile64, on_sys_sendfile64_entry)

static __always_inline void on_sys_splice_entry(__u64 *ctx)
{
	fentry_splice_entry(false);
}
TWIN_PROGRAMS("fentry/__x64_sys_splice", fentry_sys_splice, on_sys_splice_entry)

/* The return value follows the one argument (regs, not read: see above). */
static __always_inline void on_sys_sendfile64_exit(__u64 *ctx)
{
	splice_exit(current_syscall_nr(true), (long)CTX_LOAD(ctx, 8));
}
TWIN_PROGRAMS("fexit/__x64_sys_sendfile64", fexit_sys_sendfile64, on_sys_sendfile64_exit)

static __always_inline void on_sys_splice_exit(__u64 *ctx)
{
	splice_exit(current_syscall_nr(true), (long)CTX_LOAD(ctx, 8));
}
TWIN_PROGRAMS("fexit/__x64_sys_splice", fexit_sys_splice, on_sys_splice_exit)

SEC("kprobe/__x64_sys_sendto")
int BPF_KPROBE(kp_sys_sendto, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_SENDTO, false);
	return 0;
}

SEC("kprobe/__x64_sys_sendmsg")
int BPF_KPROBE(kp_sys_sendmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_SENDMSG, false);
	return 0;
}

SEC("kprobe/__x64_sys_sendmmsg")
int BPF_KPROBE(kp_sys_sendmmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_SENDMMSG, false);
	return 0;
}

SEC("kprobe/__x64_sys_recvfrom")
int BPF_KPROBE(kp_sys_recvfrom, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_RECVFROM, false);
	return 0;
}

SEC("kprobe/__x64_sys_recvmsg")
int BPF_KPROBE(kp_sys_recvmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_RECVMSG, false);
	return 0;
}

SEC("kprobe/__x64_sys_recvmmsg")
int BPF_KPROBE(kp_sys_recvmmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_RECVMMSG, false);
	return 0;
}

SEC("kprobe/sock_write_iter")
int BPF_KPROBE(kp_sock_write_iter, struct kiocb *iocb)
{
	sock_iter_entry(iocb, true, false);
	return 0;
}

SEC("kprobe/sock_read_iter")
int BPF_KPROBE(kp_sock_read_iter, struct kiocb *iocb)
{
	sock_iter_entry(iocb, false, false);
	return 0;
}

SEC("kprobe/__x64_sys_sendfile64")
int BPF_KPROBE(kp_sys_sendfile64, struct pt_regs *regs)
{
	splice_syscall_entry(regs, true, false);
	return 0;
}

SEC("kprobe/__x64_sys_splice")
int BPF_KPROBE(kp_sys_splice, struct pt_regs *regs)
{
	splice_syscall_entry(regs, false, false);
	return 0;
}

/* The kretprobe has no arguments: the syscall number the thread is in. */
SEC("kretprobe/__x64_sys_sendfile64")
int BPF_KRETPROBE(krp_sys_sendfile64, long ret)
{
	splice_exit(current_syscall_nr(false), ret);
	return 0;
}

SEC("kretprobe/__x64_sys_splice")
int BPF_KRETPROBE(krp_sys_splice, long ret)
{
	splice_exit(current_syscall_nr(false), ret);
	return 0;
}

/* ---- fentry backend: fexit on the protocol functions --------------------- */

/* udpv6_sendmsg hands IPv4 destinations to udp_sendmsg: an AF_INET6 socket
 * in udp_sendmsg is that nested call, and the outer one makes the row. */
static __always_inline bool nested_udp_sendmsg(struct sock *sk, bool direct)
{
	return KREAD(direct, sk, __sk_common.skc_family) == AF_INET6;
}

/* tcp_sendmsg(sk, msg, size) returns int: ret at ctx[3]. */
static __always_inline void on_tcp_sendmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1],
		       0, true);
}
TWIN_PROGRAMS("fexit/tcp_sendmsg", fexit_tcp_sendmsg, on_tcp_sendmsg)

static __always_inline void on_udp_sendmsg(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];

	if (!nested_udp_sendmsg(sk, true))
		handle_sock_op(sk, (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1], 0, true);
}
TWIN_PROGRAMS("fexit/udp_sendmsg", fexit_udp_sendmsg, on_udp_sendmsg)

static __always_inline void on_udpv6_sendmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1],
		       0, true);
}
TWIN_PROGRAMS("fexit/udpv6_sendmsg", fexit_udpv6_sendmsg, on_udpv6_sendmsg)

/* Before 6.5 (commit c5c37af6ecad), sendfile and splice into TCP went
 * through tcp_sendpage instead of tcp_sendmsg. Loaded only where it exists.
 * Inside a sendfile/splice syscall its chunks are dropped (the syscall's
 * sys_exit makes the row); it stays for the other callers, an io_uring
 * IORING_OP_SPLICE say. */
/* tcp_sendpage(sk, page, offset, size, flags) returns int: ret at ctx[5]. */
static __always_inline void on_tcp_sendpage(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[5], NW_DIR_SEND, NULL, 0, true);
}
TWIN_PROGRAMS("fexit/tcp_sendpage", fexit_tcp_sendpage, on_tcp_sendpage)

/* The return value sits after the arguments, whose number changed (see
 * tcp_recvmsg_nargs). The verifier drops the branches that the read-only
 * setting rules out. */
static __always_inline int fexit_ret(__u64 *ctx, int nargs)
{
	if (nargs == 4)
		return (int)CTX_LOAD(ctx, 32);
	if (nargs == 6)
		return (int)CTX_LOAD(ctx, 48);
	return (int)CTX_LOAD(ctx, 40);
}

/* tcp_recvmsg()'s flags: its 5th argument while `nonblock` came before it
 * (until 5.19, commit ec095263a965), its 4th since. */
static __always_inline int tcp_recvmsg_flags(__u64 *ctx)
{
	if (tcp_recvmsg_nargs == 6)
		return (int)CTX_LOAD(ctx, 32);
	return (int)CTX_LOAD(ctx, 24);
}

static __always_inline void on_tcp_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, tcp_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], tcp_recvmsg_flags(ctx), true);
}
TWIN_PROGRAMS("fexit/tcp_recvmsg", fexit_tcp_recvmsg, on_tcp_recvmsg)

static __always_inline void on_udp_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, udp_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], 0, true);
}
TWIN_PROGRAMS("fexit/udp_recvmsg", fexit_udp_recvmsg, on_udp_recvmsg)

static __always_inline void on_udpv6_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, udpv6_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], 0, true);
}
TWIN_PROGRAMS("fexit/udpv6_recvmsg", fexit_udpv6_recvmsg, on_udpv6_recvmsg)

/* MPTCP: the socket the application holds goes through mptcp_sendmsg and
 * mptcp_recvmsg, never tcp_sendmsg/tcp_recvmsg (its subflows are fed
 * below those). Loaded only where BTF has them (CONFIG_MPTCP, 5.6+). */
static __always_inline void on_mptcp_sendmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1],
		       0, true);
}
TWIN_PROGRAMS("fexit/mptcp_sendmsg", fexit_mptcp_sendmsg, on_mptcp_sendmsg)

static __always_inline void on_mptcp_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, mptcp_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], 0, true);
}
TWIN_PROGRAMS("fexit/mptcp_recvmsg", fexit_mptcp_recvmsg, on_mptcp_recvmsg)

/* ---- kprobe backend: kprobe saves the arguments, kretprobe reports -------- */

static __always_inline void kprobe_enter(struct sock *sk, struct msghdr *msg)
{
	struct task_state *st = state_lookup(true);

	if (st) {
		st->fn_sk = (__u64)sk;
		st->fn_msg = (__u64)msg;
		st->fn_flags = 0;
	}
}

static __always_inline void kprobe_return(int ret, __u8 direction)
{
	struct task_state *st = state_lookup(false);
	struct sock *sk;

	if (!st || !st->fn_sk)
		return;
	sk = (struct sock *)st->fn_sk;
	st->fn_sk = 0;
	handle_sock_op(sk, ret, direction, (struct msghdr *)st->fn_msg, st->fn_flags, false);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kp_tcp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(krp_tcp_sendmsg, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

SEC("kprobe/udp_sendmsg")
int BPF_KPROBE(kp_udp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	/* Nested in udpv6_sendmsg: keep the outer call's arguments. */
	if (!nested_udp_sendmsg(sk, false))
		kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udp_sendmsg")
int BPF_KRETPROBE(krp_udp_sendmsg, int ret)
{
	struct task_state *st = state_lookup(false);

	if (st && st->fn_sk && !nested_udp_sendmsg((struct sock *)st->fn_sk, false))
		kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

SEC("kprobe/udpv6_sendmsg")
int BPF_KPROBE(kp_udpv6_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udpv6_sendmsg")
int BPF_KRETPROBE(krp_udpv6_sendmsg, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

/* Before 6.5 only, as for fexit_tcp_sendpage. */
SEC("kprobe/tcp_sendpage")
int BPF_KPROBE(kp_tcp_sendpage, struct sock *sk)
{
	kprobe_enter(sk, NULL);
	return 0;
}

SEC("kretprobe/tcp_sendpage")
int BPF_KRETPROBE(krp_tcp_sendpage, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

_Static_assert(__builtin_offsetof(struct pt_regs, r8) == 72, "x86_64 pt_regs: r8");
_Static_assert(__builtin_offsetof(struct pt_regs, cx) == 88, "x86_64 pt_regs: cx");

/* sk and msg are the first two arguments before and after the 5.19 change. */
SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kp_tcp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	struct task_state *st;

	kprobe_enter(sk, msg);
	/* Its flags, as tcp_recvmsg_flags() reads them for fexit: the 5th
	 * argument (r8) before 5.19, the 4th (cx) since. Constant-offset
	 * loads (CTX_LOAD): a select between the two offsets would be one
	 * load from a moved ctx pointer, which 5.10's verifier refuses. */
	st = state_lookup(false);
	if (st) {
		if (tcp_recvmsg_nargs == 6)
			st->fn_flags = (int)CTX_LOAD(ctx, 72);
		else
			st->fn_flags = (int)CTX_LOAD(ctx, 88);
	}
	return 0;
}

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(krp_tcp_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

SEC("kprobe/udp_recvmsg")
int BPF_KPROBE(kp_udp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udp_recvmsg")
int BPF_KRETPROBE(krp_udp_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

SEC("kprobe/udpv6_recvmsg")
int BPF_KPROBE(kp_udpv6_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udpv6_recvmsg")
int BPF_KRETPROBE(krp_udpv6_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

/* As for fexit_mptcp_*: only where BTF has them. */
SEC("kprobe/mptcp_sendmsg")
int BPF_KPROBE(kp_mptcp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/mptcp_sendmsg")
int BPF_KRETPROBE(krp_mptcp_sendmsg, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

SEC("kprobe/mptcp_recvmsg")
int BPF_KPROBE(kp_mptcp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/mptcp_recvmsg")
int BPF_KRETPROBE(krp_mptcp_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}
