/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The row filters (--port, --ip-version, ...), on a finished row.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_ROW_FILTER_BPF_H
#define NW_ROW_FILTER_BPF_H

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

#endif /* NW_ROW_FILTER_BPF_H */
