/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The tracepoint backend's entry points: the syscall tracepoints and the
 * sock_{send,recv}_length BTF tracepoints.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_BACKEND_TRACEPOINT_BPF_H
#define NW_BACKEND_TRACEPOINT_BPF_H

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
	arm(ctx->syscall_nr, NW_OP_SENDTO, SYS_ARG(ctx, 4), 0, SYS_ARG(ctx, 3), NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmsg")
int sys_enter_sendmsg(struct nw_sys_enter *ctx)
{
	/* sendmsg(fd, msg, flags) */
	arm(ctx->syscall_nr, NW_OP_SENDMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 2), NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int sys_enter_sendmmsg(struct nw_sys_enter *ctx)
{
	/* sendmmsg(fd, msgvec, vlen, flags) */
	arm(ctx->syscall_nr, NW_OP_SENDMMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 3), NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int sys_enter_recvfrom(struct nw_sys_enter *ctx)
{
	/* recvfrom(fd, buf, len, flags, src_addr, addrlen) */
	arm(ctx->syscall_nr, NW_OP_RECVFROM, SYS_ARG(ctx, 4), SYS_ARG(ctx, 5), SYS_ARG(ctx, 3),
	    NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int sys_enter_recvmsg(struct nw_sys_enter *ctx)
{
	/* recvmsg(fd, msg, flags) */
	arm(ctx->syscall_nr, NW_OP_RECVMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 2), NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int sys_enter_recvmmsg(struct nw_sys_enter *ctx)
{
	/* recvmmsg(fd, msgvec, vlen, flags, timeout) */
	arm(ctx->syscall_nr, NW_OP_RECVMMSG, SYS_ARG(ctx, 1), 0, SYS_ARG(ctx, 3), NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct nw_sys_enter *ctx)
{
	/* write(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0, NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct nw_sys_enter *ctx)
{
	/* writev(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_WRITE, 0, 0, 0, NW_READ_PROBE);
	return 0;
}


SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct nw_sys_enter *ctx)
{
	/* read(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_READ, 0, 0, 0, NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct nw_sys_enter *ctx)
{
	/* readv(fd, ...): most of these are not on sockets. */
	if (fd_is_inet_sock(SYS_ARG(ctx, 0)))
		arm(ctx->syscall_nr, NW_OP_READ, 0, 0, 0, NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendfile64")
int sys_enter_sendfile64(struct nw_sys_enter *ctx)
{
	/* sendfile64(out_fd, in_fd, offset, count) */
	arm_splice(ctx->syscall_nr, SYS_ARG(ctx, 0), SYS_ARG(ctx, 1), NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_splice")
int sys_enter_splice(struct nw_sys_enter *ctx)
{
	/* splice(fd_in, off_in, fd_out, off_out, len, flags) */
	arm_splice(ctx->syscall_nr, SYS_ARG(ctx, 2), SYS_ARG(ctx, 0), NW_READ_PROBE);
	return 0;
}

/* The tracepoint backend's: the row of a sendfile or splice on TCP is made
 * here, whatever saw its chunks (the fentry and kprobe backends make it at
 * the syscall function's return, fexit_sys_* and krp_sys_*). */
SEC("tracepoint/syscalls/sys_exit_sendfile64")
int sys_exit_sendfile64(struct nw_sys_exit *ctx)
{
	splice_exit(ctx->syscall_nr, ctx->ret, NW_READ_PROBE);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_splice")
int sys_exit_splice(struct nw_sys_exit *ctx)
{
	splice_exit(ctx->syscall_nr, ctx->ret, NW_READ_PROBE);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_sock_send_length, struct sock *sk, int ret, int flags)
{
	handle_sock_op(sk, ret, NW_DIR_SEND, NULL, 0, NW_READ_BTF);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_sock_recv_length, struct sock *sk, int ret, int flags)
{
	/* flags: what sock_recvmsg() passed down (tcp_recvmsg()'s). */
	handle_sock_op(sk, ret, NW_DIR_RECV, NULL, flags, NW_READ_BTF);
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

#endif /* NW_BACKEND_TRACEPOINT_BPF_H */
