/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The one record type that crosses the ring buffer, shared by the BPF
 * object and (through the skeleton's generated types) by userspace.
 *
 * Layout rules: the record tag comes first, every hole is an explicit
 * padding field, and both sides assert the size, so a change on one side
 * that the other has not seen fails the build instead of garbling rows.
 */
#ifndef NWTRACE_H
#define NWTRACE_H

#define NW_TASK_COMM_LEN 16

/* Record tags. Userspace counts and skips any tag it does not know. */
#define NW_RECORD_EVENT 1
/* struct nw_event_attr: an nw_event followed by its attribution (only
 * when `--columns` asked for any; see emit_attr in settings.bpf.h). */
#define NW_RECORD_EVENT_ATTR 2

/* nw_event.direction */
#define NW_DIR_SEND 0
#define NW_DIR_RECV 1

/* nw_event.info bits */
#define NW_INFO_HAS_START 0x01  /* start_ns is the operation's real start */
#define NW_INFO_HAS_FLAGS 0x02  /* msg_flags came from a send/recv syscall */
#define NW_INFO_PEER_KNOWN 0x04 /* peer_addr/peer_port are meaningful */

struct nw_event {
	unsigned char record;     /* NW_RECORD_EVENT */
	unsigned char direction;  /* NW_DIR_* */
	unsigned char protocol;   /* IPPROTO_TCP or IPPROTO_UDP */
	unsigned char info;       /* NW_INFO_* */
	unsigned short sk_family; /* AF_INET or AF_INET6: the socket's family */
	unsigned short peer_family; /* family of peer_addr, when PEER_KNOWN */
	unsigned short local_port;  /* host byte order */
	unsigned short peer_port;   /* host byte order */
	unsigned int pid;           /* tgid */
	int ret;                    /* the operation's return value */
	unsigned int msg_flags;     /* as the application passed them */
	unsigned long long start_ns; /* CLOCK_MONOTONIC */
	unsigned long long end_ns;   /* CLOCK_MONOTONIC */
	unsigned char local_addr[16]; /* v4: first 4 bytes; v6: all 16 */
	unsigned char peer_addr[16];
	char comm[NW_TASK_COMM_LEN];
};

#define NW_EVENT_SIZE 88

/* Which attribution fields are filled (rodata attr_mask); the others are 0. */
#define NW_ATTR_TID 0x01
#define NW_ATTR_UID 0x02
#define NW_ATTR_CGROUP 0x04
#define NW_ATTR_NETNS 0x08
#define NW_ATTR_COOKIE 0x10
#define NW_ATTR_TCP 0x20 /* srtt_us, snd_cwnd, total_retrans, seq */

/* nw_attr.tcp: which of the TCP values are the socket's (none: UDP, MPTCP). */
#define NW_TCP_STATE 0x01     /* srtt_us, snd_cwnd, total_retrans */
#define NW_TCP_SEQ_END 0x02   /* seq is the number after the operation's bytes */
#define NW_TCP_SEQ_START 0x04 /* seq is the number of its first byte (a peek) */

/*
 * The optional columns' raw values, appended to the event. Only records
 * tagged NW_RECORD_EVENT_ATTR carry it, and only runs with `--columns`
 * make those: the default record stays NW_EVENT_SIZE bytes.
 */
struct nw_attr {
	unsigned int tid;
	unsigned int uid;               /* real uid */
	unsigned long long cgroup_id;   /* cgroup v2 id (cgroupfs inode) */
	unsigned int netns;             /* the socket's net namespace inode */
	unsigned int tcp;               /* NW_TCP_* */
	unsigned long long cookie;      /* socket cookie; 0 = none */
	/* NW_ATTR_TCP, read where the row is made (after the operation). */
	unsigned int srtt_us;           /* tcp_sock.srtt_us >> 3: microseconds */
	unsigned int snd_cwnd;          /* segments */
	unsigned int total_retrans;     /* segments retransmitted so far */
	unsigned int seq;               /* see NW_TCP_SEQ_*: 32-bit sequence space */
};

struct nw_event_attr {
	struct nw_event ev;
	struct nw_attr attr;
};

#define NW_EVENT_ATTR_SIZE 136

/*
 * Operations that `--sample` or `--rate-limit` leave out are not written,
 * but counted (see row_kept in thinning.bpf.h): one entry per row identity
 * (process, endpoints, direction, outcome), so that userspace can add them
 * to the run's exact totals per process and per conversation.
 */
struct nw_flow_key {
	unsigned int pid;
	int err;                  /* 0, or the operation's negative errno */
	unsigned char direction;  /* NW_DIR_* */
	unsigned char protocol;
	unsigned char info;       /* NW_INFO_PEER_KNOWN or 0 */
	unsigned char zero;       /* 1: the operation returned 0 */
	unsigned short sk_family;
	unsigned short peer_family;
	unsigned short local_port;
	unsigned short peer_port;
	unsigned char local_addr[16];
	unsigned char peer_addr[16];
	char comm[NW_TASK_COMM_LEN];
	unsigned int _pad;
};

#define NW_FLOW_KEY_SIZE 72

struct nw_flow_counts {
	unsigned long long ops;
	unsigned long long bytes;   /* sum of the positive return values */
	unsigned long long limited; /* of ops, left out by the rate limit */
	unsigned long long last_ns; /* CLOCK_MONOTONIC of the latest */
};

/* nw_unwritten_overflow[]: what found the unwritten map full. */
#define NW_OVERFLOW_OPS 0
#define NW_OVERFLOW_BYTES 1
#define NW_OVERFLOW_LIMITED 2
#define NW_OVERFLOW_SLOTS 3

/* A token bucket of --rate-limit, per process or cgroup. */
struct nw_bucket {
	long long tokens;             /* credit, in 1e-9 operations */
	unsigned long long last_ns;   /* last refill */
	unsigned long long suppressed; /* operations over the limit */
	unsigned long long passed;
};

#endif /* NWTRACE_H */
