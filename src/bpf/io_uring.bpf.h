/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * io_uring: one row per request, made at its completion (every backend).
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_IO_URING_BPF_H
#define NW_IO_URING_BPF_H

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

	if (!req || !tgid_wanted(tgid) || !thread_wanted(NW_READ_BTF))
		return;
	opcode = req->opcode;
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
	req_flags = (__u32)req->flags;
	if (req_flags & (NW_REQ_F_FIXED_FILE | NW_REQ_F_CQE_SKIP))
		return;
	fd = req->cqe.fd;
	sk = sock_of_fd(fd, NW_READ_BTF);
	if (!sk || !traced_socket(sk, &family, &protocol, NW_READ_CAST))
		return;
	/* The command data (struct io_sr_msg) sits at the start of the
	 * request. A multishot recvmsg writes no msghdr back: its source is in
	 * the provided buffer. */
	if (ur.direction == NW_DIR_RECV &&
	    (KREAD(NW_READ_CAST, (struct io_sr_msg *)req, flags) & NW_IORING_RECV_MULTISHOT))
		ur.multishot = 1;
	else if (opcode == NW_IORING_OP_SENDMSG || opcode == NW_IORING_OP_RECVMSG)
		ur.umsg = (__u64)KREAD(NW_READ_CAST, (struct io_sr_msg *)req, umsg);
	ur.start_ns = bpf_ktime_get_ns();
	ur.sk = (__u64)sk;
	ur.ctx = (__u64)req->ctx;
	ur.user_data = req->cqe.user_data;
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
	if (!traced_socket(sk, &family, &protocol, NW_READ_CAST)) {
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
			    NW_READ_CAST);
		read_sock_peer(e, sk, family, NW_READ_CAST);
	}
	/* The tracepoint backend sees no kernel msghdr: an unconnected UDP
	 * peer is in the application's (for a receive, the kernel has copied
	 * the source there by now). */
	if (!(e->info & NW_INFO_PEER_KNOWN) && ur->umsg && (res >= 0 || !ur->direction)) {
		struct user_msghdr *hdr = (struct user_msghdr *)ur->umsg;
		__u64 name = 0;

		if (!read_user(&name, sizeof(name), &hdr->msg_name))
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
 * needs neither. They read kernel memory by BTF loads on every backend
 * (NW_READ_BTF; the request's socket and the socket kept for the row are
 * NW_READ_CAST), so they load under lockdown=confidentiality. Their arguments are the TP_PROTO's, each a u64 slot of
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
			       cqe->user_data, cqe->res, cqe->flags, false);
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

#endif /* NW_IO_URING_BPF_H */
