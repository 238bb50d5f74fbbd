/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The shared handler that every backend's operation hook ends in.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_HANDLER_BPF_H
#define NW_HANDLER_BPF_H

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
 *
 * read: the hook's read style (kernel_read.bpf.h): NW_READ_BTF for fexit
 * and tp_btf, whose sk and kmsg the verifier types, NW_READ_PROBE for
 * kprobes.
 */
static __always_inline void handle_sock_op(struct sock *sk, int ret, __u8 direction,
					   struct msghdr *kmsg, int recv_flags, int read)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_state *st, *armed = NULL;
	__u16 family = 0, protocol = 0;
	__u64 name = 0, namelen_ptr = 0;
	struct nw_event_attr *x;
	struct nw_event *e;

	if (!tgid_wanted(tgid) || !traced_socket(sk, &family, &protocol, read))
		return;
	/* What the socket alone decides: before any other work. */
	if ((want_protocol && protocol != want_protocol) ||
	    (want_direction && direction + 1 != want_direction)) {
		count_filtered();
		return;
	}
	if (!thread_wanted(read))
		return;

	st = state_lookup(false);
	if (st) {
		/* The previous message of a recvmmsg (or, if a sys_exit was
		 * missed, an older receive) waits for its address: its turn
		 * comes first, so rows keep their order. */
		if (st->pending)
			flush_pending(st);
		if (st->op != NW_OP_NONE && st->syscall_nr == current_syscall_nr(read)) {
			/* A chunk of a sendfile/splice on this socket: its
			 * sys_exit makes the syscall's one row. */
			if (st->op == NW_OP_SPLICE_SEND || st->op == NW_OP_SPLICE_RECV) {
				if (st->name == (__u64)sk) {
					/* Make the socket's cookie here, where the
					 * helper may be called: the row, made at
					 * sys_exit, reads it back (sock_cookie()). */
					if (emit_attr && (attr_mask & NW_ATTR_COOKIE))
						sock_cookie(sk, read);
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
			    read);
		if (!(protocol == IPPROTO_UDP && kmsg && (direction == NW_DIR_SEND || ret >= 0) &&
		      read_kernel_peer(e, (__u64)KREAD(read, kmsg, msg_name), read)))
			read_sock_peer(e, sk, family, read);
		return;
	}

	if (armed && direction == NW_DIR_RECV && name && ret >= 0) {
		/* Unconnected-style UDP receive with a name buffer: the source
		 * address is copied out after this tracepoint. Finish it at
		 * sys_exit, or at the next message of a recvmmsg. */
		fill_record(&armed->pending_event, sk, family, protocol, direction, ret, tgid,
			    now, armed, recv_flags, read);
		read_sock_peer(&armed->pending_event.ev, sk, family, read);
		armed->pending_name = name;
		armed->pending_namelen = namelen_ptr;
		armed->pending = 1;
	} else {
		x = record_begin();
		if (x) {
			bool peer_done = false;

			e = &x->ev;
			fill_record(x, sk, family, protocol, direction, ret, tgid, now, armed,
				    recv_flags, read);
			if (protocol == IPPROTO_UDP && kmsg &&
			    (direction == NW_DIR_SEND || ret >= 0)) {
				/* A send's msg_name is where the datagram
				 * went, even on a connected socket; a
				 * receive's was filled in by the protocol. */
				peer_done = read_kernel_peer(e, (__u64)KREAD(read, kmsg, msg_name), read);
			} else if (direction == NW_DIR_SEND) {
				peer_done = read_user_peer(e, name);
			}
			if (!peer_done)
				read_sock_peer(e, sk, family, read);
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

#endif /* NW_HANDLER_BPF_H */
