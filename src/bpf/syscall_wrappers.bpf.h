/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The fentry and kprobe backends' syscall side: what the syscall
 * tracepoints give the tracepoint backend, from functions only socket
 * operations reach. Each backend's entry points are in its own file.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_SYSCALL_WRAPPERS_BPF_H
#define NW_SYSCALL_WRAPPERS_BPF_H

/* ---- fentry and kprobe backends: the syscalls without syscall tracepoints -- */

/*
 * Attaching any syscall tracepoint (syscalls:* or raw_syscalls:*) puts
 * every thread of the host on the syscall slow path
 * (SYSCALL_WORK_SYSCALL_TRACEPOINT), and the read/write ones then run on
 * every file, pipe and device (issue #20). The fentry and kprobe backends
 * take what those give (start time, the application's flags, the one row
 * per sendfile/splice) from functions that only socket operations reach:
 *
 *   __x64_sys_{sendto,recvfrom,sendmsg,recvmsg,sendmmsg,recvmmsg}
 *       the x86_64 syscall wrappers (struct pt_regs based since 4.17,
 *       commit fa697140f9a2), called through the syscall table and so
 *       never inlined: at entry, arm the thread's state with the flags;
 *   sock_write_iter / sock_read_iter
 *       the socket file's write_iter/read_iter, called through f_op only
 *       for a socket: at entry, arm WRITE/READ when the thread is in
 *       write/writev or read/readv (as sys_enter_write & co do);
 *   __x64_sys_{sendfile64,splice}
 *       at entry arm_splice(), at return the syscall's one row.
 *
 * All of them exist as functions in the BTF of 5.10, 6.1, 6.12 and 6.18
 * (docs/backends.md). The syscall number armed is the one the thread is
 * in (pt_regs orig_ax), so handle_sock_op() matches the state exactly as
 * it does for the tracepoints.
 */

#define NW_NR_READ 0	/* x86_64 syscall numbers */
#define NW_NR_WRITE 1
#define NW_NR_READV 19
#define NW_NR_WRITEV 20
#define NW_PF_IO_WORKER 0x00000010 /* include/linux/sched.h, 5.5+ */
#define NW_PF_KTHREAD 0x00200000

/* The syscall wrapper's arguments: pt_regs as the syscall entry saved
 * them (x86_64: di, si, dx, r10, r8, r9). A kprobe has the wrapper's
 * pt_regs pointer and reads it with probe reads. fentry does not use its
 * argument: on 5.10 its BTF type is a pointer to a forward declaration
 * (the wrapper's file never defines struct pt_regs), and the 5.10
 * verifier refuses to load a program that reads it ("arg0 type FWD is not
 * a struct"). The wrapper's regs are the task's own saved registers, so
 * fentry reads those instead (fentry_syscall_entry()). */
static __always_inline void socket_syscall_entry(struct pt_regs *regs, enum nw_op op, int read)
{
	long nr = KREAD(read, regs, orig_ax);

	if (op == NW_OP_SENDTO) /* sendto(fd, buf, len, flags, dest_addr, addrlen) */
		arm(nr, op, KREAD(read, regs, r8), 0, KREAD(read, regs, r10), read);
	else if (op == NW_OP_RECVFROM) /* recvfrom(fd, buf, len, flags, src_addr, addrlen) */
		arm(nr, op, KREAD(read, regs, r8), KREAD(read, regs, r9), KREAD(read, regs, r10),
		    read);
	else if (op == NW_OP_SENDMSG || op == NW_OP_RECVMSG) /* (fd, msg, flags) */
		arm(nr, op, KREAD(read, regs, si), 0, KREAD(read, regs, dx), read);
	else /* sendmmsg(fd, msgvec, vlen, flags), recvmmsg(..., flags, timeout) */
		arm(nr, op, KREAD(read, regs, si), 0, KREAD(read, regs, r10), read);
}

/* fentry on a socket syscall wrapper: the task's registers, with direct
 * loads where bpf_task_pt_regs() gives a BTF pointer (5.15+, commit
 * dd6e10fbd9fb); before, probe reads (5.10). The verifier keeps only the
 * branch this kernel takes. */
static __always_inline void fentry_syscall_entry(enum nw_op op)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		socket_syscall_entry((struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()),
				     op, NW_READ_BTF);
	else
		socket_syscall_entry(stack_pt_regs(), op, NW_READ_PROBE);
}

/* sendfile64(out_fd, in_fd, ...), splice(fd_in, off_in, fd_out, ...) */
static __always_inline void splice_syscall_entry(struct pt_regs *regs, bool sendfile, int read)
{
	long nr = KREAD(read, regs, orig_ax);

	if (sendfile)
		arm_splice(nr, KREAD(read, regs, di), KREAD(read, regs, si), read);
	else
		arm_splice(nr, KREAD(read, regs, dx), KREAD(read, regs, di), read);
}

/* fentry on sendfile64/splice, as fentry_syscall_entry(). */
static __always_inline void fentry_splice_entry(bool sendfile)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))
		splice_syscall_entry((struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()),
				     sendfile, NW_READ_BTF);
	else
		splice_syscall_entry(stack_pt_regs(), sendfile, NW_READ_PROBE);
}

/* sock_write_iter/sock_read_iter: arm a plain write/read, but only inside
 * the syscalls whose tracepoints armed it before (not in pwritev2, splice,
 * or an io_uring request; never in an io-wq worker or kernel thread, whose
 * saved syscall number means nothing), and only on inet sockets. */
static __always_inline void sock_iter_entry(struct kiocb *iocb, bool write, int read)
{
	long nr = current_syscall_nr(read);
	int cast = NW_CAST_STYLE(read);
	struct socket *sock;
	struct file *file;
	struct sock *sk;
	unsigned int flags;
	__u16 family;

	if (write ? (nr != NW_NR_WRITE && nr != NW_NR_WRITEV)
		  : (nr != NW_NR_READ && nr != NW_NR_READV))
		return;
	if (NW_TASK_LOADS(read))
		flags = bpf_get_current_task_btf()->flags;
	else
		flags = BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), flags);
	if (flags & (NW_PF_IO_WORKER | NW_PF_KTHREAD))
		return;
	file = KREAD(read, iocb, ki_filp);
	/* private_data is a void * to BTF: the socket is untyped. */
	sock = KREAD(read, file, private_data);
	sk = KREAD(cast, sock, sk);
	family = KREAD(cast, sk, __sk_common.skc_family);
	if (family == AF_INET || family == AF_INET6)
		arm(nr, write ? NW_OP_WRITE : NW_OP_READ, 0, 0, 0, read);
}

#endif /* NW_SYSCALL_WRAPPERS_BPF_H */
