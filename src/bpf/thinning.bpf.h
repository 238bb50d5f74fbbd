/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * --sample and --rate-limit, and the counts of the rows they leave out.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_THINNING_BPF_H
#define NW_THINNING_BPF_H

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

#endif /* NW_THINNING_BPF_H */
