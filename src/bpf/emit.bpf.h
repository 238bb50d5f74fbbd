/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Building a row and copying it into the ring.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_EMIT_BPF_H
#define NW_EMIT_BPF_H

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
	    !read_user(&namelen, sizeof(namelen), (void *)st->pending_namelen) &&
	    namelen > 0)
		read_user_peer(e, st->pending_name);
	output_event(&st->pending_event);
}

static __always_inline void fill_event(struct nw_event *e, struct sock *sk, __u16 family,
				       __u8 protocol, __u8 direction, int ret, __u32 tgid,
				       __u64 now, struct task_state *armed, int read)
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
	if (NW_TASK_LOADS(read)) {
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
	read_sock_local(e, sk, family, read);
}

/* The socket's cookie, or 0 where this program cannot have it. */
static __always_inline __u64 sock_cookie(struct sock *sk, int read)
{
	if (!cookie_helper)
		return 0;
	/* tp_btf and fexit (a trusted BTF pointer): the helper makes the
	 * cookie if the socket has none yet. */
	if (read == NW_READ_BTF)
		return bpf_get_socket_cookie(sk);
	/* A socket the verifier does not type (sendfile/splice exit, io_uring
	 * completion) or a classic tracepoint: the cookie the helper stored
	 * in the socket, if a tracing program made one (0, empty, otherwise). */
	return KREAD(read, sk, __sk_common.skc_cookie.counter);
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
				     int recv_flags, int read)
{
	__u64 done = 1ULL << bpf_core_enum_value(enum sock_flags, SOCK_DONE);
	__u32 seq, rcv_nxt = 0;
	__u64 sk_flags = 0;
	int peek_off;

	if (KREAD(read, sk, sk_protocol) != IPPROTO_TCP)
		return;
	if (bpf_ksym_exists(bpf_rdonly_cast)) {
		/* 6.2+ (commit a35b9af4ec2c): plain fault-checked loads, no
		 * helper call, on every backend. Before (5.10, 6.1) probe
		 * reads on every backend: a load through the struct sock type
		 * cannot reach struct tcp_sock's fields. */
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
				      int recv_flags, int read)
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
		if (NW_LOADS(read))
			x->attr.netns = NW_TYPED(read, sk)->__sk_common.skc_net.net->ns.inum;
		else
			x->attr.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	if (attr_mask & NW_ATTR_COOKIE)
		x->attr.cookie = sock_cookie(sk, read);
	if (attr_mask & NW_ATTR_TCP)
		fill_tcp(&x->attr, sk, direction, recv_flags, read);
}

/* fill_event(), and the optional columns when any is on. */
static __always_inline void fill_record(struct nw_event_attr *x, struct sock *sk, __u16 family,
					__u8 protocol, __u8 direction, int ret, __u32 tgid,
					__u64 now, struct task_state *armed, int recv_flags,
					int read)
{
	fill_event(&x->ev, sk, family, protocol, direction, ret, tgid, now, armed, read);
	if (emit_attr)
		fill_attr(x, sk, direction, recv_flags, read);
}

/* Socket family and protocol (IPPROTO_TCP for MPTCP too), or false when
 * the socket is not TCP, MPTCP or UDP over IPv4/IPv6. */
static __always_inline bool traced_socket(struct sock *sk, __u16 *family, __u16 *protocol,
					  int read)
{
	__u16 type;

	if (!sk)
		return false;
	*family = KREAD(read, sk, __sk_common.skc_family);
	if (*family != AF_INET && *family != AF_INET6)
		return false;
	type = KREAD(read, sk, sk_type);
	*protocol = KREAD(read, sk, sk_protocol);
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

#endif /* NW_EMIT_BPF_H */
