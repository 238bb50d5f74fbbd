/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Reading addresses: the peer and local endpoints, from the socket, the
 * kernel's msghdr or the application's buffers.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_ADDRESSES_BPF_H
#define NW_ADDRESSES_BPF_H

/* ---- addresses ---------------------------------------------------------- */

static __always_inline long read_mem(void *dst, __u32 size, const void *src, bool user)
{
	return user ? read_user(dst, size, src) : bpf_probe_read_kernel(dst, size, src);
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

/* read_peer() of a sockaddr in kernel memory (the kernel msghdr's
 * msg_name, a void * to BTF) with the handler's read style: typed loads
 * where it may (kernel_read.bpf.h), else probe reads. */
static __always_inline bool read_kernel_peer(struct nw_event *e, __u64 addr, int read)
{
	int cast = NW_CAST_STYLE(read);
	__u16 family;

	if (!NW_LOADS(cast))
		return read_peer(e, addr, false);
	if (!addr)
		return false;
	family = KREAD(cast, (struct sockaddr *)addr, sa_family);
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)addr;
		__u32 a = KREAD(cast, sin, sin_addr.s_addr);

		e->peer_port = bpf_ntohs(KREAD(cast, sin, sin_port));
		__builtin_memcpy(e->peer_addr, &a, 4);
	} else if (family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;

		e->peer_port = bpf_ntohs(KREAD(cast, sin6, sin6_port));
		KCOPY(cast, e->peer_addr, sin6, sin6_addr);
	} else {
		return false;
	}
	e->peer_family = family;
	e->info |= NW_INFO_PEER_KNOWN;
	return true;
}

static __always_inline void read_sock_peer(struct nw_event *e, struct sock *sk, __u16 family,
					  int read)
{
	__u16 dport = KREAD(read, sk, __sk_common.skc_dport);

	/* A zero port means not connected: the peer is unknown, not 0.0.0.0. */
	if (!dport)
		return;
	e->peer_port = bpf_ntohs(dport);
	e->peer_family = family;
	if (family == AF_INET) {
		__u32 daddr = KREAD(read, sk, __sk_common.skc_daddr);

		__builtin_memcpy(e->peer_addr, &daddr, 4);
	} else {
		KCOPY(read, e->peer_addr, sk, __sk_common.skc_v6_daddr);
	}
	e->info |= NW_INFO_PEER_KNOWN;
}

static __always_inline void read_sock_local(struct nw_event *e, struct sock *sk, __u16 family,
					   int read)
{
	e->local_port = KREAD(read, sk, __sk_common.skc_num);
	/* tcp_set_state(TCP_CLOSE) zeroes skc_num when it releases an
	 * unlocked port (after a reset, say); inet_sport still holds the port
	 * the connection used. It sits in struct inet_sock, past struct sock,
	 * where a load through the struct sock type may not reach: cast. */
	if (!e->local_port)
		e->local_port =
			bpf_ntohs(KREAD(NW_CAST_STYLE(read), (struct inet_sock *)sk, inet_sport));
	if (family == AF_INET) {
		__u32 saddr = KREAD(read, sk, __sk_common.skc_rcv_saddr);

		__builtin_memcpy(e->local_addr, &saddr, 4);
	} else {
		KCOPY(read, e->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
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
	if (!hdr || read_user(&name, sizeof(name), &hdr->msg_name))
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

#endif /* NW_ADDRESSES_BPF_H */
