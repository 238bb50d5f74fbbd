/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kprobe backend's entry points: kprobes on the syscall wrappers, and
 * kprobe + kretprobe on the protocol functions.
 *
 * Part of nwtrace.bpf.c, which includes the parts in dependency order.
 */
#ifndef NW_BACKEND_KPROBE_BPF_H
#define NW_BACKEND_KPROBE_BPF_H

SEC("kprobe/__x64_sys_sendto")
int BPF_KPROBE(kp_sys_sendto, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_SENDTO, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_sendmsg")
int BPF_KPROBE(kp_sys_sendmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_SENDMSG, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_sendmmsg")
int BPF_KPROBE(kp_sys_sendmmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_SENDMMSG, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_recvfrom")
int BPF_KPROBE(kp_sys_recvfrom, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_RECVFROM, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_recvmsg")
int BPF_KPROBE(kp_sys_recvmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_RECVMSG, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_recvmmsg")
int BPF_KPROBE(kp_sys_recvmmsg, struct pt_regs *regs)
{
	socket_syscall_entry(regs, NW_OP_RECVMMSG, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/sock_write_iter")
int BPF_KPROBE(kp_sock_write_iter, struct kiocb *iocb)
{
	sock_iter_entry(iocb, true, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/sock_read_iter")
int BPF_KPROBE(kp_sock_read_iter, struct kiocb *iocb)
{
	sock_iter_entry(iocb, false, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_sendfile64")
int BPF_KPROBE(kp_sys_sendfile64, struct pt_regs *regs)
{
	splice_syscall_entry(regs, true, NW_READ_PROBE);
	return 0;
}

SEC("kprobe/__x64_sys_splice")
int BPF_KPROBE(kp_sys_splice, struct pt_regs *regs)
{
	splice_syscall_entry(regs, false, NW_READ_PROBE);
	return 0;
}

/* The kretprobe has no arguments: the syscall number the thread is in. */
SEC("kretprobe/__x64_sys_sendfile64")
int BPF_KRETPROBE(krp_sys_sendfile64, long ret)
{
	splice_exit(current_syscall_nr(NW_READ_PROBE), ret, NW_READ_PROBE);
	return 0;
}

SEC("kretprobe/__x64_sys_splice")
int BPF_KRETPROBE(krp_sys_splice, long ret)
{
	splice_exit(current_syscall_nr(NW_READ_PROBE), ret, NW_READ_PROBE);
	return 0;
}

/* ---- kprobe backend: kprobe saves the arguments, kretprobe reports -------- */

static __always_inline void kprobe_enter(struct sock *sk, struct msghdr *msg)
{
	struct task_state *st = state_lookup(true);

	if (st) {
		st->fn_sk = (__u64)sk;
		st->fn_msg = (__u64)msg;
		st->fn_flags = 0;
	}
}

static __always_inline void kprobe_return(int ret, __u8 direction)
{
	struct task_state *st = state_lookup(false);
	struct sock *sk;

	if (!st || !st->fn_sk)
		return;
	sk = (struct sock *)st->fn_sk;
	st->fn_sk = 0;
	handle_sock_op(sk, ret, direction, (struct msghdr *)st->fn_msg, st->fn_flags, NW_READ_PROBE);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kp_tcp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(krp_tcp_sendmsg, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

SEC("kprobe/udp_sendmsg")
int BPF_KPROBE(kp_udp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	/* Nested in udpv6_sendmsg: keep the outer call's arguments. */
	if (!nested_udp_sendmsg(sk, NW_READ_PROBE))
		kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udp_sendmsg")
int BPF_KRETPROBE(krp_udp_sendmsg, int ret)
{
	struct task_state *st = state_lookup(false);

	if (st && st->fn_sk && !nested_udp_sendmsg((struct sock *)st->fn_sk, NW_READ_PROBE))
		kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

SEC("kprobe/udpv6_sendmsg")
int BPF_KPROBE(kp_udpv6_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udpv6_sendmsg")
int BPF_KRETPROBE(krp_udpv6_sendmsg, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

/* Before 6.5 only, as for fexit_tcp_sendpage. */
SEC("kprobe/tcp_sendpage")
int BPF_KPROBE(kp_tcp_sendpage, struct sock *sk)
{
	kprobe_enter(sk, NULL);
	return 0;
}

SEC("kretprobe/tcp_sendpage")
int BPF_KRETPROBE(krp_tcp_sendpage, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

_Static_assert(__builtin_offsetof(struct pt_regs, r8) == 72, "x86_64 pt_regs: r8");
_Static_assert(__builtin_offsetof(struct pt_regs, cx) == 88, "x86_64 pt_regs: cx");

/* sk and msg are the first two arguments before and after the 5.19 change. */
SEC("kprobe/tcp_recvmsg")
int BPF_KPROBE(kp_tcp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	struct task_state *st;

	kprobe_enter(sk, msg);
	/* Its flags, as tcp_recvmsg_flags() reads them for fexit: the 5th
	 * argument (r8) before 5.19, the 4th (cx) since. Constant-offset
	 * loads (CTX_LOAD): a select between the two offsets would be one
	 * load from a moved ctx pointer, which 5.10's verifier refuses. */
	st = state_lookup(false);
	if (st) {
		if (tcp_recvmsg_nargs == 6)
			st->fn_flags = (int)CTX_LOAD(ctx, 72);
		else
			st->fn_flags = (int)CTX_LOAD(ctx, 88);
	}
	return 0;
}

SEC("kretprobe/tcp_recvmsg")
int BPF_KRETPROBE(krp_tcp_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

SEC("kprobe/udp_recvmsg")
int BPF_KPROBE(kp_udp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udp_recvmsg")
int BPF_KRETPROBE(krp_udp_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

SEC("kprobe/udpv6_recvmsg")
int BPF_KPROBE(kp_udpv6_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/udpv6_recvmsg")
int BPF_KRETPROBE(krp_udpv6_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

/* As for fexit_mptcp_*: only where BTF has them. */
SEC("kprobe/mptcp_sendmsg")
int BPF_KPROBE(kp_mptcp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/mptcp_sendmsg")
int BPF_KRETPROBE(krp_mptcp_sendmsg, int ret)
{
	kprobe_return(ret, NW_DIR_SEND);
	return 0;
}

SEC("kprobe/mptcp_recvmsg")
int BPF_KPROBE(kp_mptcp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	kprobe_enter(sk, msg);
	return 0;
}

SEC("kretprobe/mptcp_recvmsg")
int BPF_KRETPROBE(krp_mptcp_recvmsg, int ret)
{
	kprobe_return(ret, NW_DIR_RECV);
	return 0;
}

#endif /* NW_BACKEND_KPROBE_BPF_H */
