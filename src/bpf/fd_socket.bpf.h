/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * From a file descriptor to its socket, without touching a map.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_FD_SOCKET_BPF_H
#define NW_FD_SOCKET_BPF_H

/* ---- fd -> socket -------------------------------------------------------- */

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * The struct socket behind the current task's descriptor fd, or NULL when
 * fd is not an open socket. No map access, and from 6.2 on no helper call
 * but bpf_get_current_task_btf(), so that read/write/readv/writev on files, pipes and devices
 * (which the per-syscall tracepoints cannot tell apart) stop here cheaply:
 * before it, sys_enter_read armed task storage for every read on the host,
 * ~290 ns a call (issue #11).
 *
 * The fd table is read like fcheck_files() without the RCU dereference:
 * the task is current, so its table cannot go away under us, and a racing
 * close at worst gives a stale file, which the sock tracepoint then ignores
 * (it checks the socket again).
 */
static __always_inline struct socket *fd_sock(unsigned int fd)
{
	struct file *file = NULL, **fds;
	struct fdtable *fdt;
	umode_t mode;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		/* Direct loads through the BTF task pointer: 5.11 and later. */
		struct files_struct *files = bpf_get_current_task_btf()->files;

		if (!files)
			return NULL;
		fdt = files->fdt;
		if (fd >= fdt->max_fds)
			return NULL;
		fds = fdt->fd;
	} else {
		/* 5.10: no bpf_get_current_task_btf() (commit 3ca1032ab7ab,
		 * 5.11), so every step is a probe read. */
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		fdt = BPF_CORE_READ(task, files, fdt);
		if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
			return NULL;
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (bpf_ksym_exists(bpf_rdonly_cast) && bpf_core_field_offset(struct kiocb, ki_filp) == 0) {
		/* bpf_rdonly_cast() (6.2, commit a35b9af4ec2c) turns the
		 * loads below into plain fault-checked loads: no helper call.
		 * fd[] is an array of bare pointers, which BTF cannot type, so
		 * the slot is read as the first member of a struct that starts
		 * with a struct file pointer: kiocb.ki_filp (checked above). */
		struct file *f = bpf_core_cast(&fds[fd], struct kiocb)->ki_filp;

		if (!f)
			return NULL;
		if ((f->f_inode->i_mode & S_IFMT) != S_IFSOCK)
			return NULL;
		return f->private_data;
	}
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	return BPF_CORE_READ(file, private_data);
}

/* Whether fd is an AF_INET/AF_INET6 socket: the only ones that make rows.
 * Unix sockets (loggers, D-Bus) stop here too. */
static __always_inline bool fd_is_inet_sock(unsigned int fd)
{
	struct socket *sock = fd_sock(fd);
	__u16 family;

	if (!sock)
		return false;
	if (bpf_ksym_exists(bpf_rdonly_cast))
		family = bpf_core_cast(sock, struct socket)->sk->__sk_common.skc_family;
	else
		family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	return family == AF_INET || family == AF_INET6;
}

#endif /* NW_FD_SOCKET_BPF_H */
