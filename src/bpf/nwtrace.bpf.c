// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * nwtrace: one row per TCP/UDP send or receive.
 *
 * Data path of the tracepoint backend (kernel >= 6.3):
 *
 *   sys_enter_{sendto,recvmsg,write,...}  arm the thread's state: start time,
 *                                         flags, user pointers to addresses
 *   sock:sock_{send,recv}_length          the operation itself: the struct
 *                                         sock and the result, on every path
 *                                         (syscalls, splice, io_uring)
 *   sys_exit_{recvfrom,recvmsg,recvmmsg}  only to finish an unconnected UDP
 *                                         receive, whose peer address reaches
 *                                         the user buffer after the tracepoint
 *
 * There are no sys_exit programs for the other syscalls: a stale armed state
 * is recognised because its syscall number is not the one the thread is in.
 * The exception, on every backend: sendfile and splice on a TCP socket are
 * one row per syscall, made by sys_exit_{sendfile64,splice} (see
 * arm_splice()).
 *
 * The fentry and kprobe backends (any kernel with BTF) attach no syscall
 * tracepoint at all: the same per-thread state is armed by the x86_64
 * socket syscall wrappers and sock_read_iter/sock_write_iter
 * (syscall_wrappers.bpf.h),
 * and the sock tracepoints are replaced by the protocol functions: fexit,
 * or kprobe + kretprobe, on tcp_sendmsg, tcp_recvmsg, udp_sendmsg,
 * udp_recvmsg, udpv6_sendmsg, udpv6_recvmsg, mptcp_sendmsg, mptcp_recvmsg
 * and (before 6.5) tcp_sendpage. They read the peer of an unconnected UDP
 * socket from the kernel's msghdr, so they need no hook at the receive's
 * syscall exit.
 *
 * Program names say their family: sys_enter_*, sys_exit_* and tp_*
 * (tracepoint), fentry_* and fexit_* (fentry), kp_* and krp_* (kprobe),
 * uring_* (every backend). docs/backends.md lists them per backend.
 *
 * The parts (src/bpf/<part>.bpf.h), included below in dependency order:
 *   settings, maps, kernel_read,   what userspace sets, the maps, how
 *   task                           handlers read kernel memory (per
 *                                  backend), the current thread's state
 *                                  and filters
 *   fd_socket, addresses           from a descriptor to its socket; the
 *                                  endpoints
 *   row_filter, thinning, emit     which rows are kept, and writing one
 *   splice, io_uring               the paths that are not one syscall =
 *                                  one operation (every backend)
 *   handler                        handle_sock_op(): where every backend's
 *                                  operation hook ends
 *   syscall_wrappers               the syscall side of fentry and kprobe
 *   backend_tracepoint, backend_fentry, backend_kprobe
 *                                  each backend's entry points (SEC
 *                                  programs), together
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "nwtrace.h"

_Static_assert(sizeof(struct nw_event) == NW_EVENT_SIZE, "nw_event layout changed");
_Static_assert(sizeof(struct nw_event_attr) == NW_EVENT_ATTR_SIZE, "nw_event_attr layout changed");
_Static_assert(sizeof(struct nw_flow_key) == NW_FLOW_KEY_SIZE, "nw_flow_key layout changed");

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* mmsg vectors are capped at UIO_MAXIOV by the kernel. */
#define NW_MAX_MMSG 1024

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The parts, in dependency order: each uses only those before it. */
#include "settings.bpf.h"
#include "maps.bpf.h"
#include "kernel_read.bpf.h"
#include "task.bpf.h"
#include "fd_socket.bpf.h"
#include "addresses.bpf.h"
#include "row_filter.bpf.h"
#include "thinning.bpf.h"
#include "emit.bpf.h"
#include "splice.bpf.h"
#include "io_uring.bpf.h"
#include "handler.bpf.h"
#include "syscall_wrappers.bpf.h"
#include "backend_tracepoint.bpf.h"
#include "backend_fentry.bpf.h"
#include "backend_kprobe.bpf.h"
