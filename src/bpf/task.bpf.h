/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The current task: its state, whether it is traced, the syscall it is in,
 * and arm(), which every backend's syscall-entry hook calls.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_TASK_BPF_H
#define NW_TASK_BPF_H

static __always_inline struct task_state *state_lookup(bool create)
{
	struct task_state *st;
	__u32 tid;

	if (use_task_storage)
		return bpf_task_storage_get(&task_states, bpf_get_current_task_btf(), 0,
					    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	tid = (__u32)bpf_get_current_pid_tgid();
	st = bpf_map_lookup_elem(&task_states_by_tid, &tid);
	if (st || !create)
		return st;
	bpf_map_update_elem(&task_states_by_tid, &tid, &empty_state, BPF_NOEXIST);
	return bpf_map_lookup_elem(&task_states_by_tid, &tid);
}

static __always_inline bool tgid_wanted(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	if (filter_pids && !bpf_map_lookup_elem(&pid_filter, &tgid))
		return false;
	return true;
}

static __always_inline bool comm_wanted(struct comm_key *key)
{
	return !filter_comms || bpf_map_lookup_elem(&comm_filter, key);
}

/* Deeper than any real hierarchy (systemd + kubepods nest about 6). */
#define NW_MAX_CGROUP_DEPTH 32

/* Whether the current thread is in (or below) a cgroup of --cgroup, and
 * in (or below) one of a container of --container: the thread's cgroup v2
 * and its ancestors, each by id (its kernfs node id, which is what
 * bpf_get_current_cgroup_id() returns and the cgroupfs inode number),
 * against the maps. Two reads and one or two lookups per level, and
 * only with those filters on. The parents are walked by hand because
 * bpf_get_current_ancestor_cgroup_id() cannot be called from tracing,
 * kprobe or tracepoint programs on 5.10 (the verifier refuses it there;
 * seen on the VM matrix's 5.10 kernel). */
static __always_inline bool cgroup_wanted(int read)
{
	bool cg = !filter_cgroups, ct = !filter_containers;
	struct cgroup *cgrp;
	int level;

	if (cg && ct)
		return true;
	if (NW_TASK_LOADS(read))
		cgrp = bpf_get_current_task_btf()->cgroups->dfl_cgrp;
	else
		cgrp = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), cgroups,
				     dfl_cgrp);
	for (level = 0; level < NW_MAX_CGROUP_DEPTH && cgrp; level++) {
		/* kernfs_node.id is a u64 since 5.5 (commit 67c0496e87d1). */
		__u64 id = NW_TASK_LOADS(read) ? cgrp->kn->id : BPF_CORE_READ(cgrp, kn, id);

		if (!cg && bpf_map_lookup_elem(&cgroup_filter, &id))
			cg = true;
		if (!ct && bpf_map_lookup_elem(&container_filter, &id))
			ct = true;
		if (cg && ct)
			return true;
		/* The parent's css `self`, whose cgroup is the parent cgroup
		 * (NULL at the root). By its `cgroup` field, not a cast: a
		 * BTF load keeps the css type. */
		if (NW_TASK_LOADS(read)) {
			struct cgroup_subsys_state *parent = cgrp->self.parent;

			cgrp = parent ? parent->cgroup : NULL;
		} else {
			cgrp = (struct cgroup *)BPF_CORE_READ(cgrp, self.parent);
		}
	}
	return false;
}

/* The filters of the thread, after tgid_wanted(): comm, --exclude-comm,
 * --cgroup, --container. */
static __always_inline bool thread_wanted(int read)
{
	if (filter_comms || filter_exclude_comms) {
		struct comm_key key = {};

		bpf_get_current_comm(key.comm, sizeof(key.comm));
		if (!comm_wanted(&key))
			return false;
		if (filter_exclude_comms && bpf_map_lookup_elem(&exclude_comm_filter, &key))
			return false;
	}
	return cgroup_wanted(read);
}

/* The current task's saved user registers, task_pt_regs(), without
 * bpf_task_pt_regs(), which arrived in 5.15 (commit dd6e10fbd9fb): the top
 * of the task's kernel stack. x86_64 THREAD_SIZE is 16 KiB (no KASAN in
 * distro kernels) with no padding above the registers. Not a BTF pointer:
 * read it with BPF_CORE_READ. */
static __always_inline struct pt_regs *stack_pt_regs(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	void *stack = BPF_CORE_READ(task, stack);

	return (struct pt_regs *)(stack + 16384 - bpf_core_type_size(struct pt_regs));
}

/* The syscall the current thread is in, or -1 outside a syscall. */
static __always_inline long current_syscall_nr(int read)
{
	struct pt_regs *regs;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
#if defined(__TARGET_ARCH_x86)
		return KREAD(read, regs, orig_ax);
#endif
	} else {
		regs = stack_pt_regs();
	}
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ(regs, orig_ax);
#else
#error "nwtrace: current_syscall_nr() needs this architecture's pt_regs field"
#endif
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);

	if (lost)
		__sync_fetch_and_add(lost, 1);
}

static __always_inline __u64 submit_flags(void)
{
	__u32 zero = 0;
	__u32 *submits = bpf_map_lookup_elem(&submit_counts, &zero);

	if (submits && ((*submits)++ & 63) == 0 &&
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* ---- syscall entry: arm the thread's state ----------------------------- */

/* read: the read style of the calling program (kernel_read.bpf.h). */
static __always_inline void arm(long syscall_nr, enum nw_op op, __u64 name,
				__u64 namelen, __u32 msg_flags, int read)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct task_state *st;

	if (!tgid_wanted(tgid) || !thread_wanted(read))
		return;
	st = state_lookup(true);
	if (!st)
		return;
	st->start_ns = bpf_ktime_get_ns();
	st->name = name;
	st->namelen = namelen;
	st->syscall_nr = syscall_nr;
	st->msg_flags = msg_flags;
	st->msg_index = 0;
	st->op = op;
}

#endif /* NW_TASK_BPF_H */
