/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The fentry backend's entry points: twin programs, the syscall wrappers'
 * fentry/fexit, and fexit on the protocol functions.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_BACKEND_FENTRY_BPF_H
#define NW_BACKEND_FENTRY_BPF_H

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
	sock_iter_entry((struct kiocb *)ctx[0], true, NW_READ_BTF);
}
TWIN_PROGRAMS("fentry/sock_write_iter", fentry_sock_write_iter, on_sock_write_iter)

static __always_inline void on_sock_read_iter(__u64 *ctx)
{
	sock_iter_entry((struct kiocb *)ctx[0], false, NW_READ_BTF);
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

/* The return value follows the one argument (regs, not read: see
 * syscall_wrappers.bpf.h). */
static __always_inline void on_sys_sendfile64_exit(__u64 *ctx)
{
	splice_exit(current_syscall_nr(NW_READ_BTF), (long)CTX_LOAD(ctx, 8), NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/__x64_sys_sendfile64", fexit_sys_sendfile64, on_sys_sendfile64_exit)

static __always_inline void on_sys_splice_exit(__u64 *ctx)
{
	splice_exit(current_syscall_nr(NW_READ_BTF), (long)CTX_LOAD(ctx, 8), NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/__x64_sys_splice", fexit_sys_splice, on_sys_splice_exit)

/* ---- fentry backend: fexit on the protocol functions --------------------- */

/* udpv6_sendmsg hands IPv4 destinations to udp_sendmsg: an AF_INET6 socket
 * in udp_sendmsg is that nested call, and the outer one makes the row. */
static __always_inline bool nested_udp_sendmsg(struct sock *sk, int read)
{
	return KREAD(read, sk, __sk_common.skc_family) == AF_INET6;
}

/* tcp_sendmsg(sk, msg, size) returns int: ret at ctx[3]. */
static __always_inline void on_tcp_sendmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1],
		       0, NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/tcp_sendmsg", fexit_tcp_sendmsg, on_tcp_sendmsg)

static __always_inline void on_udp_sendmsg(__u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];

	if (!nested_udp_sendmsg(sk, NW_READ_BTF))
		handle_sock_op(sk, (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1], 0, NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/udp_sendmsg", fexit_udp_sendmsg, on_udp_sendmsg)

static __always_inline void on_udpv6_sendmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1],
		       0, NW_READ_BTF);
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
	handle_sock_op((struct sock *)ctx[0], (int)ctx[5], NW_DIR_SEND, NULL, 0, NW_READ_BTF);
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
		       (struct msghdr *)ctx[1], tcp_recvmsg_flags(ctx), NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/tcp_recvmsg", fexit_tcp_recvmsg, on_tcp_recvmsg)

static __always_inline void on_udp_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, udp_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], 0, NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/udp_recvmsg", fexit_udp_recvmsg, on_udp_recvmsg)

static __always_inline void on_udpv6_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, udpv6_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], 0, NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/udpv6_recvmsg", fexit_udpv6_recvmsg, on_udpv6_recvmsg)

/* MPTCP: the socket the application holds goes through mptcp_sendmsg and
 * mptcp_recvmsg, never tcp_sendmsg/tcp_recvmsg (its subflows are fed
 * below those). Loaded only where BTF has them (CONFIG_MPTCP, 5.6+). */
static __always_inline void on_mptcp_sendmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], (int)ctx[3], NW_DIR_SEND, (struct msghdr *)ctx[1],
		       0, NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/mptcp_sendmsg", fexit_mptcp_sendmsg, on_mptcp_sendmsg)

static __always_inline void on_mptcp_recvmsg(__u64 *ctx)
{
	handle_sock_op((struct sock *)ctx[0], fexit_ret(ctx, mptcp_recvmsg_nargs), NW_DIR_RECV,
		       (struct msghdr *)ctx[1], 0, NW_READ_BTF);
}
TWIN_PROGRAMS("fexit/mptcp_recvmsg", fexit_mptcp_recvmsg, on_mptcp_recvmsg)

#endif /* NW_BACKEND_FENTRY_BPF_H */
