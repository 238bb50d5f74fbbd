/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * sendfile and splice on a TCP socket: one row per syscall (every backend).
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_SPLICE_BPF_H
#define NW_SPLICE_BPF_H

/* ---- sendfile and splice: one row per syscall ---------------------------- */

/* The struct sock behind file descriptor fd, or NULL when fd is not a
 * socket (fd_sock() in fd_socket.bpf.h: no map is touched). read: the
 * handler's read style; the socket is an address the verifier does not
 * type (NW_CAST_STYLE). */
static __always_inline struct sock *sock_of_fd(long fd, int read)
{
	struct socket *sock;

	if (fd < 0)
		return NULL;
	sock = fd_sock(fd);
	return sock ? KREAD(NW_CAST_STYLE(read), sock, sk) : NULL;
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
static __always_inline void arm_splice(long syscall_nr, long fd_out, long fd_in, int read)
{
	int cast = NW_CAST_STYLE(read);
	__u16 family, protocol;
	struct sock *sk;

	sk = sock_of_fd(fd_out, read);
	if (sk && traced_socket(sk, &family, &protocol, cast)) {
		if (protocol == IPPROTO_TCP)
			arm(syscall_nr, NW_OP_SPLICE_SEND, (__u64)sk, 0, 0, read);
		else
			arm(syscall_nr, NW_OP_WRITE, 0, 0, 0, read);
		return;
	}
	sk = sock_of_fd(fd_in, read);
	if (sk && traced_socket(sk, &family, &protocol, cast)) {
		if (protocol == IPPROTO_TCP)
			arm(syscall_nr, NW_OP_SPLICE_RECV, (__u64)sk, 0, 0, read);
		else
			arm(syscall_nr, NW_OP_READ, 0, 0, 0, read);
	}
}

/* The row of an armed sendfile/splice, with the syscall's return value:
 * the bytes it moved, or the errno (a syscall that moved some bytes and
 * then hit an error returns the byte count). */
static __always_inline void splice_exit(long syscall_nr, long ret, int read)
{
	int cast = NW_CAST_STYLE(read);
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
	if (!traced_socket(sk, &family, &protocol, cast))
		return;
	x = record_begin();
	if (!x)
		return;
	/* Both are bounded by MAX_RW_COUNT (INT_MAX & PAGE_MASK): fits an int. */
	fill_record(x, sk, family, IPPROTO_TCP, direction, (int)ret, tgid, bpf_ktime_get_ns(), st,
		    0, cast);
	read_sock_peer(&x->ev, sk, family, cast);
	record_end(x);
}

#endif /* NW_SPLICE_BPF_H */
