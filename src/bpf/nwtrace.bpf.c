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
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "nwtrace.h"

_Static_assert(sizeof(struct nw_event) == NW_EVENT_SIZE, "nw_event layout changed");

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

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

/* Keeps struct nw_event in the object's BTF so the skeleton emits its type. */
struct nw_event nw_event_type = {};

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

/* Which syscall armed a thread's state. */
enum nw_op {
	NW_OP_NONE = 0,
	NW_OP_SENDTO,   /* name: struct sockaddr *            */
	NW_OP_SENDMSG,  /* name: struct user_msghdr *          */
	NW_OP_SENDMMSG, /* name: struct mmsghdr *              */
	NW_OP_RECVFROM, /* name: struct sockaddr *, namelen: int * */
	NW_OP_RECVMSG,  /* name: struct user_msghdr *          */
	NW_OP_RECVMMSG, /* name: struct mmsghdr *              */
	NW_OP_WRITE,    /* write, writev, sendfile, splice: no flags, no name */
	NW_OP_READ,     /* read, readv: no flags, no name      */
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
	__u8 _pad[6];
	__u64 pending_name;    /* user struct sockaddr * of the pending receive */
	__u64 pending_namelen; /* user int * holding its length */
	struct nw_event pending_event;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} task_states SEC(".maps");

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

/* The syscall the current thread is in, or -1 outside a syscall. */
static __always_inline long current_syscall_nr(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);

#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#elif defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno);
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
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* ---- syscall entry: arm the thread's state ----------------------------- */

static __always_inline void arm(long syscall_nr, enum nw_op op, __u64 name,
				__u64 namelen, __u32 msg_flags)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_state *st;

	if (!tgid_wanted(tgid))
		return;
	if (filter_comms) {
		struct comm_key key = {};

		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (!comm_wanted(&key))
			return;
	}
	st = bpf_task_storage_get(&task_states, bpf_get_current_task_btf(), 0,
				  BPF_LOCAL_STORAGE_GET_F_CREATE);
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
int tp_enter_sendto(struct nw_sys_enter *ctx)
{
	/* sendto(fd, buf, len, flags, dest_addr, addrlen) */
	arm(ctx->syscall_nr, NW_OP_SENDTO, SYS_ARG(ctx, 4), 0, SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int tp_enter_sendmsg(struct nw_sys_enter *ctx)
{
	/* sendmsg(fd, msg, flags) */
	arm(ctx->syscall_nr, NW_OP_SENDMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 2));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int tp_enter_sendmmsg(struct nw_sys_enter *ctx)
{
	/* sendmmsg(fd, msgvec, vlen, flags) */
	arm(ctx->syscall_nr, NW_OP_SENDMMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int tp_enter_recvfrom(struct nw_sys_enter *ctx)
{
	/* recvfrom(fd, buf, len, flags, src_addr, addrlen) */
	arm(ctx->syscall_nr, NW_OP_RECVFROM, SYS_ARG(ctx, 4), SYS_ARG(ctx, 5), SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int tp_enter_recvmsg(struct nw_sys_enter *ctx)
{
	/* recvmsg(fd, msg, flags) */
	arm(ctx->syscall_nr, NW_OP_RECVMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 2));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int tp_enter_recvmmsg(struct nw_sys_enter *ctx)
{
	/* recvmmsg(fd, msgvec, vlen, flags, timeout) */
	arm(ctx->syscall_nr, NW_OP_RECVMMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 3));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_enter_write(struct nw_sys_enter *ctx)
{
	arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int tp_enter_writev(struct nw_sys_enter *ctx)
{
	arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendfile64")
int tp_enter_sendfile64(struct nw_sys_enter *ctx)
{
	arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_splice")
int tp_enter_splice(struct nw_sys_enter *ctx)
{
	arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int tp_enter_read(struct nw_sys_enter *ctx)
{
	arm(ctx->syscall_nr, NW_OP_READ, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_readv")
int tp_enter_readv(struct nw_sys_enter *ctx)
{
	arm(ctx->syscall_nr, NW_OP_READ, 0, 0, 0);
	return 0;
}

/* ---- addresses ---------------------------------------------------------- */

/* Copies a user sockaddr into the event's peer. False when it is not
 * AF_INET/AF_INET6 or cannot be read: then the peer stays unknown. */
static __always_inline bool read_user_peer(struct nw_event *e, __u64 uaddr)
{
	__u16 family = 0;

	if (!uaddr || bpf_probe_read_user(&family, sizeof(family), (void *)uaddr))
		return false;
	if (family == AF_INET) {
		struct sockaddr_in sin = {};

		if (bpf_probe_read_user(&sin, sizeof(sin), (void *)uaddr))
			return false;
		e->peer_port = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(e->peer_addr, &sin.sin_addr, 4);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};

		/* Without sin6_scope_id, which some callers leave out. */
		if (bpf_probe_read_user(&sin6, offsetof(struct sockaddr_in6, sin6_scope_id),
					(void *)uaddr))
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

static __always_inline void read_sock_peer(struct nw_event *e, struct sock *sk, __u16 family)
{
	__u16 dport = BPF_CORE_READ(sk, __sk_common.skc_dport);

	/* A zero port means not connected: the peer is unknown, not 0.0.0.0. */
	if (!dport)
		return;
	e->peer_port = bpf_ntohs(dport);
	e->peer_family = family;
	if (family == AF_INET)
		bpf_core_read(e->peer_addr, 4, &sk->__sk_common.skc_daddr);
	else
		bpf_core_read(e->peer_addr, 16, &sk->__sk_common.skc_v6_daddr);
	e->info |= NW_INFO_PEER_KNOWN;
}

static __always_inline void read_sock_local(struct nw_event *e, struct sock *sk, __u16 family)
{
	/* inet_sport, not skc_num: tcp_set_state(TCP_CLOSE) zeroes inet_num
	 * when it releases an unlocked port, so after a reset skc_num would
	 * say 0 for a connection that did use a port. */
	e->local_port = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (family == AF_INET)
		bpf_core_read(e->local_addr, 4, &sk->__sk_common.skc_rcv_saddr);
	else
		bpf_core_read(e->local_addr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
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
	return op != NW_OP_WRITE && op != NW_OP_READ && op != NW_OP_NONE;
}

/* ---- emitting ----------------------------------------------------------- */

static __always_inline void output_event(struct nw_event *e)
{
	if (bpf_ringbuf_output(&events, e, sizeof(*e), submit_flags()))
		count_lost();
}

/* Finishes a stashed unconnected UDP receive: by now the kernel has copied
 * its source address to the user buffer. */
static __always_inline void flush_pending(struct task_state *st)
{
	struct nw_event *e = &st->pending_event;
	int namelen = 0;

	st->pending = 0;
	if (st->pending_namelen &&
	    !bpf_probe_read_user(&namelen, sizeof(namelen), (void *)st->pending_namelen) &&
	    namelen > 0)
		read_user_peer(e, st->pending_name);
	output_event(e);
}

static __always_inline void fill_event(struct nw_event *e, struct sock *sk, __u16 family,
				       __u8 protocol, __u8 direction, int ret, __u32 tgid,
				       __u64 now, struct task_state *armed)
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
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (armed) {
		e->start_ns = armed->start_ns;
		e->info |= NW_INFO_HAS_START;
		if (op_has_flags(armed->op)) {
			e->msg_flags = armed->msg_flags;
			e->info |= NW_INFO_HAS_FLAGS;
		}
	}
	read_sock_local(e, sk, family);
}

/*
 * The shared handler: one send or receive on a socket has completed with
 * result ret. Every backend ends here.
 */
static __always_inline void handle_sock_op(struct sock *sk, int ret, __u8 direction)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_state *st, *armed = NULL;
	__u16 family, type, protocol;
	__u64 name = 0, namelen_ptr = 0;
	struct nw_event *e;

	if (!sk || !tgid_wanted(tgid))
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	type = BPF_CORE_READ(sk, sk_type);
	protocol = BPF_CORE_READ(sk, sk_protocol);
	/* sk_type too: a SOCK_RAW socket may carry IPPROTO_TCP. */
	if (!((protocol == IPPROTO_TCP && type == SOCK_STREAM) ||
	      (protocol == IPPROTO_UDP && type == SOCK_DGRAM)))
		return;
	if (filter_comms) {
		struct comm_key key = {};

		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (!comm_wanted(&key))
			return;
	}

	st = bpf_task_storage_get(&task_states, bpf_get_current_task_btf(), 0, 0);
	if (st) {
		/* The previous message of a recvmmsg (or, if a sys_exit was
		 * missed, an older receive) waits for its address: its turn
		 * comes first, so rows keep their order. */
		if (st->pending)
			flush_pending(st);
		if (st->op != NW_OP_NONE && st->syscall_nr == current_syscall_nr() &&
		    op_is_send(st->op) == (direction == NW_DIR_SEND))
			armed = st;
	}

	if (armed && protocol == IPPROTO_UDP && armed->op != NW_OP_WRITE && armed->op != NW_OP_READ)
		name = user_name_of(armed, &namelen_ptr);

	if (armed && direction == NW_DIR_RECV && name && ret >= 0) {
		/* Unconnected-style UDP receive with a name buffer: the source
		 * address is copied out after this tracepoint. Finish it at
		 * sys_exit, or at the next message of a recvmmsg. */
		fill_event(&armed->pending_event, sk, family, protocol, direction, ret, tgid,
			   now, armed);
		read_sock_peer(&armed->pending_event, sk, family);
		armed->pending_name = name;
		armed->pending_namelen = namelen_ptr;
		armed->pending = 1;
	} else {
		e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
		if (!e) {
			count_lost();
		} else {
			fill_event(e, sk, family, protocol, direction, ret, tgid, now, armed);
			/* For a UDP send the name, when given, is where the
			 * datagram went, even on a connected socket. */
			if (!(direction == NW_DIR_SEND && read_user_peer(e, name)))
				read_sock_peer(e, sk, family);
			bpf_ringbuf_submit(e, submit_flags());
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
	handle_sock_op(sk, ret, NW_DIR_SEND);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_sock_recv_length, struct sock *sk, int ret, int flags)
{
	handle_sock_op(sk, ret, NW_DIR_RECV);
	return 0;
}

/* ---- syscall exit: finish a pending UDP receive ------------------------- */

static __always_inline void finish_pending_receive(void)
{
	struct task_state *st;

	st = bpf_task_storage_get(&task_states, bpf_get_current_task_btf(), 0, 0);
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
