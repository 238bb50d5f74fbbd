/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * How a handler reads kernel memory: its read style, a compile-time
 * constant that each entry point passes down. The handlers are
 * __always_inline, so clang keeps one body per style with no run-time
 * test, and the handler's source stays one.
 *
 *   NW_READ_PROBE  bpf_probe_read_kernel() (BPF_CORE_READ): kprobes and
 *                  classic tracepoints, whose pointers are plain numbers
 *                  to the verifier.
 *   NW_READ_BTF    plain loads through a pointer the verifier types from
 *                  BTF (an fentry/fexit or tp_btf argument,
 *                  bpf_get_current_task_btf(), a field loaded through
 *                  one): PROBE_MEM loads, fault-checked by the JIT, no
 *                  helper call, and trusted, so helpers such as
 *                  bpf_get_socket_cookie() take them.
 *   NW_READ_CAST   the same loads in a handler of style NW_READ_BTF, for
 *                  an address the verifier does not type (read from
 *                  memory as a number, kept in a map, or a field of a
 *                  larger struct than the pointer's): typed with
 *                  bpf_core_cast(), i.e. bpf_rdonly_cast() (6.2, commit
 *                  a35b9af4ec2c), which the verifier turns into a plain
 *                  move. Not trusted: no helper takes it. Before 6.2 these
 *                  few reads fall back to probe reads (the verifier drops
 *                  the branch this kernel does not take).
 *
 * Why it matters beyond cost: lockdown=confidentiality removes
 * bpf_probe_read_kernel() and bpf_probe_read_kernel_str() (and the old
 * bpf_probe_read()) from every program type (LOCKDOWN_BPF_READ_KERNEL,
 * kernel/trace/bpf_trace.c), and the verifier then refuses a program that
 * calls them (EINVAL). BTF loads are not helper calls: the fentry backend
 * reads only this way on 6.2 and later, and so loads under that lockdown
 * (docs/backends.md, "Kernel lockdown"). bpf_probe_read_user() stays
 * allowed by the kernel, but libbpf rewrites it there: see read_user().
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_KERNEL_READ_BPF_H
#define NW_KERNEL_READ_BPF_H

#define NW_READ_PROBE 0
#define NW_READ_BTF 1
#define NW_READ_CAST 2

/* The style for an address the verifier does not type, in a handler of
 * style `read`. */
#define NW_CAST_STYLE(read) ((read) == NW_READ_PROBE ? NW_READ_PROBE : NW_READ_CAST)

/* Whether `read` loads directly on this kernel. */
#define NW_LOADS(read)                                                          \
	((read) == NW_READ_BTF || ((read) == NW_READ_CAST && bpf_ksym_exists(bpf_rdonly_cast)))

/* ptr as a direct load with `read` needs it. */
#define NW_TYPED(read, ptr) ((read) == NW_READ_CAST ? bpf_core_cast(ptr, typeof(*(ptr))) : (ptr))

/*
 * Reads a field of a kernel struct with the read style `read`. Every
 * style relocates with CO-RE (vmlinux.h applies preserve_access_index).
 */
#define KREAD(read, ptr, field)                                                 \
	(NW_LOADS(read) ? NW_TYPED(read, ptr)->field : BPF_CORE_READ(ptr, field))

/* Copies an array field (an IPv6 address) into dst, with `read`. */
#define KCOPY(read, dst, ptr, field)                                            \
	do {                                                                    \
		if (NW_LOADS(read))                                             \
			__builtin_memcpy(dst, &NW_TYPED(read, ptr)->field, sizeof(dst)); \
		else                                                            \
			bpf_core_read(dst, sizeof(dst), &(ptr)->field);         \
	} while (0)

/* The current task as a BTF pointer, where a handler of style `read` may
 * load through it: bpf_get_current_task_btf() arrived in 5.11 (commit
 * 3ca1032ab7ab); on 5.10 the callers probe-read instead. */
#define NW_TASK_LOADS(read)                                                     \
	((read) != NW_READ_PROBE &&                                             \
	 bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))

/* bpf_probe_read_user(), where the programs may call it (user_reads in
 * settings.bpf.h); else a failed read. Under lockdown=confidentiality the
 * fentry backend loses no row and no field by it: its UDP hooks read the
 * peer from the kernel's msghdr, and only an io_uring sendmsg/recvmsg that
 * failed before reaching the protocol leaves its peer empty. */
static __always_inline long read_user(void *dst, __u32 size, const void *src)
{
	if (!user_reads)
		return -1;
	return bpf_probe_read_user(dst, size, src);
}

#endif /* NW_KERNEL_READ_BPF_H */
