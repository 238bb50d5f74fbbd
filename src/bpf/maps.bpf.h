/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The maps: the ring buffer and its counters, the filters' sets, the
 * unwritten-row counts, the rate buckets, and each thread's state.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_MAPS_BPF_H
#define NW_MAPS_BPF_H

/* Keeps struct nw_event in the object's BTF so the skeleton emits its type. */
struct nw_event nw_event_type = {};
struct nw_event_attr nw_event_attr_type = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* userspace resizes it before load */
} events SEC(".maps");

/* Ring buffer reservations that failed, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

/* Submissions per CPU, so that the ring's fill level is looked at only on
 * every 64th: reading it touches the consumer position, a cache line the
 * reader keeps writing from another CPU (~90 ns an event when read each
 * time, measured on the ping-pong benchmark). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} submit_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pid_filter SEC(".maps");

struct comm_key {
	char comm[NW_TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, __u8);
} comm_filter SEC(".maps");

/* --exclude-comm */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct comm_key);
	__type(value, __u8);
} exclude_comm_filter SEC(".maps");

/* --port: local or remote port, host byte order. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} port_filter SEC(".maps");

/* --cgroup and --container: cgroup v2 ids (cgroupfs inodes) whose
 * processes and their descendants' are traced. Userspace adds the cgroups
 * of containers that start later as it finds them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} container_filter SEC(".maps");

/* Where a row is built when filter_rows is on (settings.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nw_event_attr);
} scratch_records SEC(".maps");

/*
 * The rows thinning left out, counted by row identity (struct
 * nw_flow_key). Two maps, of which the BPF side writes the one that
 * unwritten_side names: userspace flips it, and drains the other a whole
 * drain interval later, when no program can still hold a pointer into it
 * (programs run for microseconds), so that no count is lost between a
 * lookup and a delete. Preallocated (BPF_F_NO_PREALLOC hash maps are
 * refused to tracing programs before 6.1's bpf_mem_alloc, commit
 * 7c8199e24fa0): a full map makes the counts go to unwritten_overflow.
 */
#define NW_UNWRITTEN_ENTRIES 32768
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_UNWRITTEN_ENTRIES);
	__type(key, struct nw_flow_key);
	__type(value, struct nw_flow_counts);
} unwritten_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NW_UNWRITTEN_ENTRIES);
	__type(key, struct nw_flow_key);
	__type(value, struct nw_flow_counts);
} unwritten_b SEC(".maps");

/* Which of the two the BPF side writes: 0 unwritten_a, 1 unwritten_b. */
volatile __u32 unwritten_side = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NW_OVERFLOW_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} unwritten_overflow SEC(".maps");

/* Rows the row filters (--port, --protocol, --direction, --ip-version)
 * left out, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} filtered_rows SEC(".maps");

/*
 * --rate-limit's buckets, by tgid or cgroup id. One bucket per key shared
 * by every CPU (not per CPU: a process with threads on k CPUs would get k
 * times its limit), updated with atomic adds but refilled without a lock
 * (tracing programs may not take bpf_spin_lock): two CPUs refilling at
 * once can grant a few operations more than the limit, never fewer. LRU:
 * a bucket evicted starts full again, and its suppressed count is gone
 * from the per-process list (not from the totals, which the unwritten
 * map keeps).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct nw_bucket);
} rate_buckets SEC(".maps");

/* Which syscall armed a thread's state. */
enum nw_op {
	NW_OP_NONE = 0,
	NW_OP_SENDTO,   /* name: struct sockaddr *            */
	NW_OP_SENDMSG,  /* name: struct user_msghdr *          */
	NW_OP_SENDMMSG, /* name: struct mmsghdr *              */
	NW_OP_RECVFROM, /* name: struct sockaddr *, namelen: int * */
	NW_OP_RECVMSG,  /* name: struct user_msghdr *          */
	NW_OP_RECVMMSG, /* name: struct mmsghdr *              */
	NW_OP_WRITE,    /* write, writev; sendfile/splice into UDP: no flags, no name */
	NW_OP_READ,     /* read, readv; splice from UDP: no flags, no name */
	/* sendfile or splice into (SEND) or from (RECV) a TCP socket: one row
	 * for the whole syscall, made at its sys_exit; the chunks the kernel
	 * cuts it into are not rows. name: that socket's struct sock *. */
	NW_OP_SPLICE_SEND,
	NW_OP_SPLICE_RECV,
};

struct task_state {
	__u64 start_ns;   /* syscall entry, then each completion in the syscall */
	__u64 name;       /* user pointer, meaning per op (see enum nw_op) */
	__u64 namelen;    /* NW_OP_RECVFROM: user pointer to the address length */
	__s64 syscall_nr; /* the syscall that armed this state */
	__u32 msg_flags;
	__u32 msg_index;  /* mmsg: index of the next message */
	__u8 op;          /* enum nw_op */
	__u8 pending;     /* pending_event waits for its peer address */
	__u8 _pad[2];
	__u32 fn_flags;   /* kprobe backend: arguments saved at function entry */
	__u64 twin_token; /* fentry backend: the call a primary program ran for (twin_*) */
	__u64 fn_sk;
	__u64 fn_msg;
	__u64 pending_name;    /* user struct sockaddr * of the pending receive */
	__u64 pending_namelen; /* user int * holding its length */
	struct nw_event_attr pending_event;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} task_states SEC(".maps");

/* Before 5.11: the same state keyed by thread id. LRU, since threads can
 * exit without telling us. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct task_state);
} task_states_by_tid SEC(".maps");

static const struct task_state empty_state = {};

#endif /* NW_MAPS_BPF_H */
