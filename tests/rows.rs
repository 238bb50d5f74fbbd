//! Root integration test: real traffic under the real tracer, every field of
//! every row asserted.
//!
//! A custom harness (no libtest), so that one tracer serves every scenario
//! and the same binary runs inside a qemu VM: each scenario runs in its own
//! named thread, so its rows are the rows whose Command is that name. A
//! second tracer runs at the same time with a --comm filter, and must see
//! the same rows for its one thread.
//!
//! Prints `N passed, N failed, N skipped` last; exits non-zero on any
//! failure. A scenario is skipped only where the kernel lacks what it
//! tests (MPTCP, io_uring features), and the reason is printed; under
//! CI=true a skip fails (the CI host's kernel has everything), except
//! where NWTRACE_KERNEL_SKIPS=allowed says the kernel is old on purpose
//! (the qemu kernel matrix).

use nwtrace_testkit as common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use common::sys::{self, SysResult, on_the_wire};
use common::*;

/// What a scenario expects, built as it runs from what the syscalls really
/// returned and the sockets' real addresses.
#[derive(Default)]
struct Log {
    rows: Vec<Expected>,
    /// Why the scenario could not run here (then it expects no rows).
    skipped: Option<String>,
    /// The scenario thread's id (for the TID column).
    tid: i32,
    /// The network namespace its sockets are in, when not the process's.
    netns: Option<u64>,
    /// Each socket's cookie from getsockopt(SO_COOKIE), by local port.
    cookies: Vec<(u16, u64)>,
    /// What TCP_INFO said around operations (the TCP columns' oracle).
    tcp_info: Vec<TcpInfoSeen>,
    /// Rows (indexes into `rows`) that are peeks without MSG Flags to say
    /// so (io_uring).
    peek_rows: Vec<usize>,
}

/// TCP_INFO read just before and just after one operation, which is
/// `Log::rows[row]`: (tcpi_rtt µs, tcpi_snd_cwnd, tcpi_total_retrans).
#[derive(Clone, Copy, Debug)]
struct TcpInfoSeen {
    row: usize,
    before: (u32, u32, u32),
    after: (u32, u32, u32),
}

impl Log {
    /// Records TCP_INFO of `fd` around the operation that `op` makes and
    /// logs (with [`Log::op`]).
    fn with_tcp_info<T>(&mut self, fd: i32, op: impl FnOnce(&mut Log) -> T) -> T {
        let before = sys::tcp_info(fd).expect("TCP_INFO");
        let out = op(self);
        let after = sys::tcp_info(fd).expect("TCP_INFO");
        self.tcp_info.push(TcpInfoSeen {
            row: self.rows.len() - 1,
            before,
            after,
        });
        out
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EAGAIN => "EAGAIN",
        libc::EPIPE => "EPIPE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNREFUSED => "ECONNREFUSED",
        other => panic!("scenario hit an errno it does not expect: {other}"),
    }
}

impl Log {
    /// One operation on a socket whose local end is `local`; `peer` is what
    /// the row must show for the other end (None: unknown, left empty).
    fn op(
        &mut self,
        protocol: &'static str,
        dir: Dir,
        local: SocketAddr,
        peer: Option<SocketAddr>,
        result: SysResult<usize>,
        flags: &'static str,
    ) {
        let local = on_the_wire(local);
        let peer = peer.map(on_the_wire);
        let ip_version = match peer.unwrap_or(local) {
            SocketAddr::V4(_) => "4",
            SocketAddr::V6(_) => "6",
        };
        let (src, dst) = match dir {
            Dir::Send => (Some(local), peer),
            Dir::Receive => (peer, Some(local)),
        };
        let (size, error) = match result {
            Ok(n) => (n, ""),
            Err(e) => (0, errno_name(e)),
        };
        self.rows.push(Expected {
            protocol,
            ip_version,
            src,
            dst,
            size,
            dir,
            error,
            flags,
            latency_known: true,
        });
    }
}

/// Whether io_uring rows carry a Latency (issue to completion) here: where
/// the io_uring tracepoints carry the request (5.19+; not 5.10), on every
/// backend. Read from the tracepoints' formats (the tracer has mounted
/// tracefs by the time the scenarios run); where tracefs shows none
/// (lockdown=confidentiality creates no tracefs file), from the kernel
/// version that added the request (5.19).
fn uring_latency_known() -> bool {
    let format = |event: &str| {
        ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .find_map(|root| {
                std::fs::read_to_string(format!("{root}/events/io_uring/{event}/format")).ok()
            })
    };
    let Some(complete) = format("io_uring_complete") else {
        return kernel_version() >= (5, 19);
    };
    let has_req = |f: Option<String>| f.is_some_and(|f| f.contains("field:void * req;"));
    has_req(Some(complete))
        && (has_req(format("io_uring_submit_req")) || has_req(format("io_uring_submit_sqe")))
}

impl Log {
    /// One io_uring request on a socket: Size is its CQE result, no MSG
    /// flags (there is no such syscall).
    fn uring_op(
        &mut self,
        protocol: &'static str,
        dir: Dir,
        local: SocketAddr,
        peer: Option<SocketAddr>,
        res: i32,
    ) {
        let result = if res < 0 { Err(-res) } else { Ok(res as usize) };
        self.op(protocol, dir, local, peer, result, "");
        self.rows.last_mut().unwrap().latency_known = uring_latency_known();
    }
}

fn fd<T: AsRawFd>(s: &T) -> i32 {
    s.as_raw_fd()
}

fn tcp_pair(listen: &str) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind(listen).expect("bind listener");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

fn udp(bind: &str) -> UdpSocket {
    UdpSocket::bind(bind).expect("bind udp")
}

/// Gives the kernel's asynchronous io_uring work (an armed poll, a
/// task_work run, an EINVAL completion that may or may not come) time to
/// happen before the next call. Where a socket can tell the wait is over,
/// the scenarios use `sys::wait_ready` instead; these waits are for work
/// with nothing to poll, or for the absence of a completion.
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

const TCP: &str = "TCP";
const UDP: &str = "UDP";
const NOSIGNAL: i32 = libc::MSG_NOSIGNAL;

fn tcp4(log: &mut Log) {
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (send, recv) = (Dir::Send, Dir::Receive);

    let r = sys::send(fd(&c), &[1; 64], 0);
    log.op(TCP, send, cl, Some(sl), r, "");
    let r = sys::recv(fd(&s), 4096, 0);
    assert_eq!(r, Ok(64));
    log.op(TCP, recv, sl, Some(cl), r, "");

    let r = sys::send(fd(&c), &[2; 100], NOSIGNAL | libc::MSG_MORE);
    log.op(TCP, send, cl, Some(sl), r, "MSG_NOSIGNAL|MSG_MORE");
    let r = sys::sendto(fd(&c), &[3; 28], NOSIGNAL, sl);
    log.op(TCP, send, cl, Some(sl), r, "MSG_NOSIGNAL");
    let r = sys::recv(fd(&s), 128, libc::MSG_WAITALL);
    assert_eq!(r, Ok(128));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_WAITALL");

    let r = sys::write(fd(&c), &[4; 10]);
    log.op(TCP, send, cl, Some(sl), r, "");
    let r = sys::read(fd(&s), 100);
    assert_eq!(r, Ok(10));
    log.op(TCP, recv, sl, Some(cl), r, "");

    let r = sys::sendmsg(fd(&c), &[5; 20], libc::MSG_DONTWAIT, None);
    log.op(TCP, send, cl, Some(sl), r, "MSG_DONTWAIT");
    let r = sys::recv(fd(&s), 100, libc::MSG_PEEK);
    assert_eq!(r, Ok(20));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_PEEK");
    let r = sys::recvmsg(fd(&s), 100, 0, false).map(|(n, _)| n);
    assert_eq!(r, Ok(20));
    log.op(TCP, recv, sl, Some(cl), r, "");

    let r = sys::recv(fd(&s), 100, libc::MSG_DONTWAIT);
    assert_eq!(r, Err(libc::EAGAIN));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_DONTWAIT");
    let r = sys::recvfrom(fd(&s), 100, libc::MSG_PEEK | libc::MSG_DONTWAIT).map(|(n, _)| n);
    assert_eq!(r, Err(libc::EAGAIN));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_PEEK|MSG_DONTWAIT");

    // End of stream: a 0-byte receive is a row. Then a send after our own
    // shutdown fails with EPIPE.
    sys::shutdown_write(fd(&c));
    let r = sys::recv(fd(&s), 100, 0);
    assert_eq!(r, Ok(0));
    log.op(TCP, recv, sl, Some(cl), r, "");
    let r = sys::send(fd(&c), &[6; 5], NOSIGNAL);
    assert_eq!(r, Err(libc::EPIPE));
    log.op(TCP, send, cl, Some(sl), r, "MSG_NOSIGNAL");
}

fn tcp_oob(log: &mut Log) {
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let r = sys::send(fd(&c), b"!", libc::MSG_OOB);
    log.op(TCP, Dir::Send, cl, Some(sl), r, "MSG_OOB");
    sys::wait_ready(fd(&s), libc::POLLPRI);
    let r = sys::recv(fd(&s), 1, libc::MSG_OOB);
    assert_eq!(r, Ok(1));
    log.op(TCP, Dir::Receive, sl, Some(cl), r, "MSG_OOB");
}

/// The TCP columns against the socket's own numbers (issue 24): a
/// conversation of several sizes both ways, TCP_INFO read around each
/// operation; a peek; and at a quiet moment (everything acknowledged) a
/// zero-byte send and a receive with nothing to read, around which
/// TCP_INFO does not change, so their rows must show it exactly.
fn tcp_state(log: &mut Log) {
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (send, recv) = (Dir::Send, Dir::Receive);
    for (i, n) in [1usize, 100, 1448, 5000, 65536].into_iter().enumerate() {
        let data = vec![i as u8; n];
        log.with_tcp_info(fd(&c), |log| {
            let r = sys::send(fd(&c), &data, 0);
            assert_eq!(r, Ok(n));
            log.op(TCP, send, cl, Some(sl), r, "");
        });
        if i == 2 {
            // A peek covers the bytes the next receive takes.
            let r = sys::recv(fd(&s), 10, libc::MSG_PEEK);
            assert_eq!(r, Ok(10));
            log.op(TCP, recv, sl, Some(cl), r, "MSG_PEEK");
        }
        log.with_tcp_info(fd(&s), |log| {
            let r = sys::recv(fd(&s), n, libc::MSG_WAITALL);
            assert_eq!(r, Ok(n));
            log.op(TCP, recv, sl, Some(cl), r, "MSG_WAITALL");
        });
        log.with_tcp_info(fd(&s), |log| {
            let r = sys::write(fd(&s), &[0xee; 17]);
            assert_eq!(r, Ok(17));
            log.op(TCP, send, sl, Some(cl), r, "");
        });
        let r = sys::recv(fd(&c), 17, libc::MSG_WAITALL);
        assert_eq!(r, Ok(17));
        log.op(TCP, recv, cl, Some(sl), r, "MSG_WAITALL");
    }
    // Quiet: every segment acknowledged (loopback takes microseconds).
    wait_until(
        "every segment acknowledged",
        Duration::from_secs(10),
        || sys::tcp_unacked(fd(&c)) == Ok(0) && sys::tcp_unacked(fd(&s)) == Ok(0),
    );
    log.with_tcp_info(fd(&c), |log| {
        let r = sys::send(fd(&c), &[], 0);
        assert_eq!(r, Ok(0));
        log.op(TCP, send, cl, Some(sl), r, "");
    });
    log.with_tcp_info(fd(&c), |log| {
        let r = sys::recv(fd(&c), 100, libc::MSG_DONTWAIT);
        assert_eq!(r, Err(libc::EAGAIN));
        log.op(TCP, recv, cl, Some(sl), r, "MSG_DONTWAIT");
    });
}

fn tcp6(log: &mut Log) {
    let (c, s) = tcp_pair("[::1]:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let r = sys::send(fd(&c), &[1; 300], 0);
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");
    let r = sys::recvmsg(fd(&s), 300, libc::MSG_WAITALL, false).map(|(n, _)| n);
    assert_eq!(r, Ok(300));
    log.op(TCP, Dir::Receive, sl, Some(cl), r, "MSG_WAITALL");
    let r = sys::sendmsg(fd(&s), &[2; 7], NOSIGNAL, None);
    log.op(TCP, Dir::Send, sl, Some(cl), r, "MSG_NOSIGNAL");
    let r = sys::read(fd(&c), 100);
    assert_eq!(r, Ok(7));
    log.op(TCP, Dir::Receive, cl, Some(sl), r, "");
}

/// An AF_INET6 listener accepting an IPv4 client: the server side's rows
/// are IPv4 with dotted addresses.
fn tcp_dual_stack(log: &mut Log) {
    let listener = TcpListener::bind("[::]:0").expect("bind [::]");
    let port = listener.local_addr().unwrap().port();
    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect v4");
    let (s, _) = listener.accept().unwrap();
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    assert!(sl.is_ipv6(), "accepted socket should be AF_INET6: {sl}");
    let r = sys::send(fd(&c), &[1; 33], 0);
    log.op(TCP, Dir::Send, cl, Some(cl_peer(&c)), r, "");
    let r = sys::recv(fd(&s), 100, 0);
    assert_eq!(r, Ok(33));
    log.op(TCP, Dir::Receive, sl, Some(s.peer_addr().unwrap()), r, "");
    let r = sys::send(fd(&s), &[2; 44], 0);
    log.op(TCP, Dir::Send, sl, Some(s.peer_addr().unwrap()), r, "");
    let r = sys::recv(fd(&c), 100, 0);
    assert_eq!(r, Ok(44));
    log.op(TCP, Dir::Receive, cl, Some(cl_peer(&c)), r, "");
}

fn cl_peer(c: &TcpStream) -> SocketAddr {
    c.peer_addr().unwrap()
}

fn udp4_connected(log: &mut Log) {
    let (a, b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    a.connect(bl).unwrap();
    b.connect(al).unwrap();
    let r = sys::send(fd(&a), &[1; 32], 0);
    log.op(UDP, Dir::Send, al, Some(bl), r, "");
    let r = sys::recv(fd(&b), 100, 0);
    assert_eq!(r, Ok(32));
    log.op(UDP, Dir::Receive, bl, Some(al), r, "");
    let r = sys::write(fd(&b), &[2; 12]);
    log.op(UDP, Dir::Send, bl, Some(al), r, "");
    let r = sys::read(fd(&a), 100);
    assert_eq!(r, Ok(12));
    log.op(UDP, Dir::Receive, al, Some(bl), r, "");
    let r = sys::sendmsg(fd(&a), &[3; 5], libc::MSG_DONTWAIT, None);
    log.op(UDP, Dir::Send, al, Some(bl), r, "MSG_DONTWAIT");
    let r = sys::recvmsg(fd(&b), 100, 0, false).map(|(n, _)| n);
    assert_eq!(r, Ok(5));
    log.op(UDP, Dir::Receive, bl, Some(al), r, "");
}

fn udp4_unconnected(log: &mut Log) {
    let (a, b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let r = sys::sendto(fd(&a), &[1; 40], 0, bl);
    log.op(UDP, Dir::Send, al, Some(bl), r, "");
    let (n, from) = sys::recvfrom(fd(&b), 100, 0).unwrap();
    assert_eq!((n, from), (40, Some(al)));
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "");

    let r = sys::sendmsg(fd(&a), &[2; 41], libc::MSG_CONFIRM, Some(bl));
    log.op(UDP, Dir::Send, al, Some(bl), r, "MSG_CONFIRM");
    let (n, from) = sys::recvmsg(fd(&b), 100, 0, true).unwrap();
    assert_eq!((n, from), (41, Some(al)));
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "");

    // recv() without an address buffer on an unconnected socket: the peer
    // cannot be known, so it is left empty.
    let r = sys::sendto(fd(&a), &[3; 42], 0, bl);
    log.op(UDP, Dir::Send, al, Some(bl), r, "");
    let r = sys::recv(fd(&b), 100, 0);
    assert_eq!(r, Ok(42));
    log.op(UDP, Dir::Receive, bl, None, r, "");

    let r = sys::recvfrom(fd(&b), 100, libc::MSG_DONTWAIT).map(|(n, _)| n);
    assert_eq!(r, Err(libc::EAGAIN));
    log.op(UDP, Dir::Receive, bl, None, r, "MSG_DONTWAIT");

    // A socket bound to the wildcard: its local address is 0.0.0.0.
    let w = udp("0.0.0.0:0");
    let wl = w.local_addr().unwrap();
    let r = sys::sendto(fd(&w), &[4; 9], 0, bl);
    log.op(UDP, Dir::Send, wl, Some(bl), r, "");
    let (n, from) = sys::recvfrom(fd(&b), 100, 0).unwrap();
    assert_eq!(n, 9);
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "");
}

fn udp6_unconnected(log: &mut Log) {
    let (a, b) = (udp("[::1]:0"), udp("[::1]:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let r = sys::sendto(fd(&a), &[1; 60], 0, bl);
    log.op(UDP, Dir::Send, al, Some(bl), r, "");
    let (n, from) = sys::recvfrom(fd(&b), 100, 0).unwrap();
    assert_eq!((n, from), (60, Some(al)));
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "");
    let r = sys::sendmsg(fd(&b), &[2; 61], 0, Some(al));
    log.op(UDP, Dir::Send, bl, Some(al), r, "");
    let (n, from) = sys::recvmsg(fd(&a), 100, libc::MSG_PEEK, true).unwrap();
    assert_eq!((n, from), (61, Some(bl)));
    log.op(UDP, Dir::Receive, al, from, Ok(n), "MSG_PEEK");
    let (n, from) = sys::recvmsg(fd(&a), 100, 0, true).unwrap();
    log.op(UDP, Dir::Receive, al, from, Ok(n), "");
}

/// A dual-stack UDP socket bound to `::` talking to an IPv4 socket: rows
/// are IPv4, and the wildcard local address reads 0.0.0.0.
fn udp_dual_stack(log: &mut Log) {
    let (a, b) = (udp("[::]:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let a_wildcard_v4: SocketAddr = SocketAddr::from(([0, 0, 0, 0], al.port()));
    let mapped_b: SocketAddr = format!("[::ffff:127.0.0.1]:{}", bl.port()).parse().unwrap();
    let r = sys::sendto(fd(&a), &[1; 16], 0, mapped_b);
    log.op(UDP, Dir::Send, a_wildcard_v4, Some(bl), r, "");
    let (n, from) = sys::recvfrom(fd(&b), 100, 0).unwrap();
    assert_eq!(n, 16);
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "");
    let r = sys::sendto(
        fd(&b),
        &[2; 17],
        0,
        SocketAddr::from(([127, 0, 0, 1], al.port())),
    );
    log.op(
        UDP,
        Dir::Send,
        bl,
        Some(SocketAddr::from(([127, 0, 0, 1], al.port()))),
        r,
        "",
    );
    let (n, from) = sys::recvfrom(fd(&a), 100, 0).unwrap();
    assert_eq!((n, from.map(on_the_wire)), (17, Some(bl)));
    log.op(UDP, Dir::Receive, a_wildcard_v4, from, Ok(n), "");
}

fn udp_trunc(log: &mut Log) {
    let (a, b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    for _ in 0..2 {
        let r = sys::sendto(fd(&a), &[7; 100], 0, bl);
        log.op(UDP, Dir::Send, al, Some(bl), r, "");
    }
    // MSG_TRUNC: the datagram's real length, though only 10 bytes fit.
    let (n, from) = sys::recvfrom(fd(&b), 10, libc::MSG_TRUNC).unwrap();
    assert_eq!(n, 100);
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "MSG_TRUNC");
    // Without it: the bytes copied.
    let (n, from) = sys::recvfrom(fd(&b), 10, 0).unwrap();
    assert_eq!(n, 10);
    log.op(UDP, Dir::Receive, bl, from, Ok(n), "");
}

/// Each message of sendmmsg/recvmmsg is its own row, with its own address.
fn udp_mmsg(log: &mut Log) {
    let (a, b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let payloads: [&[u8]; 3] = [&[1; 10], &[2; 20], &[3; 30]];
    let sent = sys::sendmmsg(fd(&a), &payloads, 0, bl).unwrap();
    assert_eq!(sent, 3);
    for p in payloads {
        log.op(UDP, Dir::Send, al, Some(bl), Ok(p.len()), "");
    }
    let got = sys::recvmmsg(fd(&b), 3, 100, libc::MSG_WAITFORONE).unwrap();
    assert_eq!(got.len(), 3);
    for (n, from) in got {
        assert_eq!(from, Some(al));
        log.op(UDP, Dir::Receive, bl, from, Ok(n), "MSG_WAITFORONE");
    }
}

fn errors(log: &mut Log) {
    // ECONNRESET: the peer closes with SO_LINGER 0, which sends a RST.
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    sys::set_linger_zero(fd(&s));
    drop(s);
    sys::wait_ready(fd(&c), libc::POLLERR);
    let r = sys::recv(fd(&c), 100, 0);
    assert_eq!(r, Err(libc::ECONNRESET));
    log.op(TCP, Dir::Receive, cl, Some(sl), r, "");
    let r = sys::send(fd(&c), &[1; 8], NOSIGNAL);
    assert_eq!(r, Err(libc::EPIPE));
    log.op(TCP, Dir::Send, cl, Some(sl), r, "MSG_NOSIGNAL");

    // ECONNREFUSED: a connected UDP socket learns from ICMP that nobody
    // listens on the port; its next receive reports it.
    let closed = udp("127.0.0.1:0").local_addr().unwrap();
    let u = udp("127.0.0.1:0");
    let ul = u.local_addr().unwrap();
    u.connect(closed).unwrap();
    let r = sys::send(fd(&u), &[2; 8], 0);
    log.op(UDP, Dir::Send, ul, Some(closed), r, "");
    sys::wait_ready(fd(&u), libc::POLLERR);
    let r = sys::recv(fd(&u), 100, 0);
    assert_eq!(r, Err(libc::ECONNREFUSED));
    log.op(UDP, Dir::Receive, ul, Some(closed), r, "");
}

/// Many threads blocked in a receive at once: more than a kretprobe's
/// default maxactive (10 on a small machine), so missed returns would show
/// as missing rows. Their rows come in no fixed order.
fn blocked_receivers(log: &mut Log) {
    const RECEIVERS: usize = 64;
    let a = udp("127.0.0.1:0");
    let al = a.local_addr().unwrap();
    let sockets: Vec<UdpSocket> = (0..RECEIVERS).map(|_| udp("127.0.0.1:0")).collect();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let name = std::thread::current().name().unwrap().to_string();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let receivers: Vec<_> = sockets
        .into_iter()
        .map(|s| {
            let tid_tx = tid_tx.clone();
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    tid_tx.send(unsafe { libc::gettid() }).unwrap();
                    let got = sys::recvfrom(fd(&s), 100, 0);
                    (s.local_addr().unwrap(), got)
                })
                .unwrap()
        })
        .collect();
    let tids: Vec<i32> = tid_rx.iter().take(RECEIVERS).collect();
    // Every receiver must block inside the kernel first.
    wait_until(
        "every receiver to block in recvfrom",
        Duration::from_secs(30),
        || {
            tids.iter()
                .all(|&tid| blocked_in_syscall(tid, libc::SYS_recvfrom))
        },
    );
    for (i, to) in addrs.iter().enumerate() {
        let r = sys::sendto(fd(&a), &vec![9; 1 + i], 0, *to);
        log.op(UDP, Dir::Send, al, Some(*to), r, "");
    }
    for r in receivers {
        let (local, got) = r.join().unwrap();
        let (n, from) = got.unwrap();
        log.op(UDP, Dir::Receive, local, from, Ok(n), "");
    }
}

/// A regular file of `len` bytes for sendfile/splice to read from; removed
/// when the returned guard goes.
struct TempFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl TempFile {
    fn new(tag: &str, len: usize) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("nwtrace-it-{tag}-{}.dat", std::process::id()));
        std::fs::write(&path, vec![0x5a; len]).expect("writing the source file");
        let file = std::fs::File::open(&path).expect("opening the source file");
        TempFile { path, file }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A thread of the scenario's own name that receives on `s` until end of
/// stream or an error, and returns every receive's result.
fn drain(s: TcpStream) -> std::thread::JoinHandle<(TcpStream, Vec<SysResult<usize>>)> {
    let name = std::thread::current().name().unwrap().to_string();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut got = Vec::new();
            loop {
                let r = sys::recv(fd(&s), 65536, 0);
                got.push(r);
                if !matches!(r, Ok(n) if n > 0) {
                    return (s, got);
                }
            }
        })
        .unwrap()
}

/// sendfile into TCP is one send row per syscall, however many chunks the
/// kernel cuts it into (65536 bytes each on 6.5+, pages before): Size is
/// what sendfile returned. A second thread drains the peer, so rows come in
/// no fixed order.
fn tcp_sendfile(log: &mut Log) {
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let big = TempFile::new("sendfile", 300_000);
    let reader = drain(s);

    let r = sys::sendfile(fd(&c), big.file.as_raw_fd(), 300_000);
    assert_eq!(r, Ok(300_000));
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");
    let r = sys::sendfile(fd(&c), big.file.as_raw_fd(), 100);
    assert_eq!(r, Ok(100));
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");

    sys::shutdown_write(fd(&c));
    let (_s, got) = reader.join().unwrap();
    assert_eq!(got.iter().flatten().sum::<usize>(), 300_100);
    for r in got {
        log.op(TCP, Dir::Receive, sl, Some(cl), r, "");
    }
    // After our own shutdown: one row with the error, not one per chunk.
    let r = sys::sendfile(fd(&c), big.file.as_raw_fd(), 100);
    assert_eq!(r, Err(libc::EPIPE));
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");
}

/// splice from a pipe into TCP (a send) and from TCP into a pipe (a
/// receive, through tcp_splice_read, which no recvmsg hook sees): one row
/// per splice call. A splice from a file into a pipe is no row.
fn tcp_splice(log: &mut Log) {
    let (c, s) = tcp_pair("[::1]:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let src = TempFile::new("splice", 65536);
    let (pr, pw) = sys::pipe();
    let (qr, qw) = sys::pipe();

    // No socket at either end: no row.
    let filled = sys::splice(src.file.as_raw_fd(), pw.as_raw_fd(), 65536, 0).unwrap();
    assert!(filled > 0);
    let mut sent = 0;
    while sent < filled {
        let r = sys::splice(pr.as_raw_fd(), fd(&c), filled - sent, 0);
        log.op(TCP, Dir::Send, cl, Some(sl), r, "");
        sent += r.expect("splice into TCP");
    }
    assert_eq!(sys::write(pw.as_raw_fd(), &[1; 100]), Ok(100));
    let r = sys::splice(pr.as_raw_fd(), fd(&c), 100, 0);
    assert_eq!(r, Ok(100));
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");
    sent += 100;

    let mut received = 0;
    while received < sent {
        let r = sys::splice(fd(&s), qw.as_raw_fd(), 65536, 0);
        log.op(TCP, Dir::Receive, sl, Some(cl), r, "");
        let n = r.expect("splice from TCP");
        assert!(n > 0);
        received += n;
        // Empty the pipe (reads on a pipe are no rows).
        let mut left = n;
        while left > 0 {
            left -= sys::read(qr.as_raw_fd(), left).expect("read pipe");
        }
    }
    assert_eq!(received, sent);
    // SPLICE_F_NONBLOCK covers only the pipe: the socket itself must be
    // non-blocking for an empty one to give EAGAIN.
    s.set_nonblocking(true).unwrap();
    let r = sys::splice(fd(&s), qw.as_raw_fd(), 65536, libc::SPLICE_F_NONBLOCK);
    assert_eq!(r, Err(libc::EAGAIN));
    log.op(TCP, Dir::Receive, sl, Some(cl), r, "");
    s.set_nonblocking(false).unwrap();
    sys::shutdown_write(fd(&c));
    let r = sys::splice(fd(&s), qw.as_raw_fd(), 65536, 0);
    assert_eq!(r, Ok(0));
    log.op(TCP, Dir::Receive, sl, Some(cl), r, "");
}

/// An MPTCP connection (IPPROTO_MPTCP at both ends) is TCP in the rows,
/// with the addresses the application sees, and every send and receive is
/// one row: never again for a subflow. Skipped, with the reason printed,
/// only where the kernel has no MPTCP.
fn mptcp(log: &mut Log) {
    let (c, s) = match mptcp_pair("127.0.0.1:0") {
        Ok(pair) => pair,
        Err(e @ (libc::EPROTONOSUPPORT | libc::ENOPROTOOPT)) => {
            log.skipped = Some(format!(
                "no MPTCP here: socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) failed with {} ({})",
                if e == libc::ENOPROTOOPT {
                    "ENOPROTOOPT: net.mptcp.enabled is 0"
                } else {
                    "EPROTONOSUPPORT: no CONFIG_MPTCP"
                },
                e
            ));
            return;
        }
        Err(e) => panic!("socket(IPPROTO_MPTCP): errno {e}"),
    };
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (send, recv) = (Dir::Send, Dir::Receive);

    let r = sys::send(fd(&c), &[1; 64], 0);
    log.op(TCP, send, cl, Some(sl), r, "");
    let r = sys::recv(fd(&s), 64, libc::MSG_WAITALL);
    assert_eq!(r, Ok(64));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_WAITALL");
    let r = sys::write(fd(&s), &[2; 10]);
    log.op(TCP, send, sl, Some(cl), r, "");
    let r = sys::read(fd(&c), 100);
    assert_eq!(r, Ok(10));
    log.op(TCP, recv, cl, Some(sl), r, "");
    let r = sys::sendmsg(fd(&c), &[3; 20], NOSIGNAL, None);
    log.op(TCP, send, cl, Some(sl), r, "MSG_NOSIGNAL");
    let r = sys::recvmsg(fd(&s), 20, libc::MSG_WAITALL, false).map(|(n, _)| n);
    assert_eq!(r, Ok(20));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_WAITALL");
    let small = TempFile::new("mptcp", 100);
    let r = sys::sendfile(fd(&c), small.file.as_raw_fd(), 100);
    assert_eq!(r, Ok(100));
    log.op(TCP, send, cl, Some(sl), r, "");
    let r = sys::recv(fd(&s), 100, libc::MSG_WAITALL);
    assert_eq!(r, Ok(100));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_WAITALL");
    let r = sys::recv(fd(&s), 100, libc::MSG_DONTWAIT);
    assert_eq!(r, Err(libc::EAGAIN));
    log.op(TCP, recv, sl, Some(cl), r, "MSG_DONTWAIT");

    // A splice out of an MPTCP socket: one receive row, whatever path
    // the kernel takes under it.
    let r = sys::send(fd(&c), &[4; 30], 0);
    log.op(TCP, send, cl, Some(sl), r, "");
    let (_pr, pw) = sys::pipe();
    let r = sys::splice(fd(&s), pw.as_raw_fd(), 30, 0);
    assert_eq!(r, Ok(30));
    log.op(TCP, recv, sl, Some(cl), r, "");

    // IPv6 MPTCP.
    let (c, s) = mptcp_pair("[::1]:0").expect("IPv6 MPTCP where IPv4 MPTCP works");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let r = sys::sendmsg(fd(&s), &[5; 50], 0, None);
    log.op(TCP, send, sl, Some(cl), r, "");
    let r = sys::recvfrom(fd(&c), 50, libc::MSG_WAITALL).map(|(n, _)| n);
    assert_eq!(r, Ok(50));
    log.op(TCP, recv, cl, Some(sl), r, "MSG_WAITALL");
}

/// A connected MPTCP pair (client, accepted) on `listen`'s address, both
/// ends checked to be MPTCP; the errno of the first socket() otherwise.
fn mptcp_pair(listen: &str) -> SysResult<(TcpStream, TcpStream)> {
    let at: SocketAddr = listen.parse().unwrap();
    let family = if at.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let listener = sys::stream_socket(family, sys::IPPROTO_MPTCP)?;
    sys::bind(listener.as_raw_fd(), at).unwrap();
    sys::listen(listener.as_raw_fd()).unwrap();
    let listener = TcpListener::from(listener);
    let client = sys::stream_socket(family, sys::IPPROTO_MPTCP).unwrap();
    sys::connect(client.as_raw_fd(), listener.local_addr().unwrap()).unwrap();
    let c = TcpStream::from(client);
    let s = TcpStream::from(sys::accept(fd(&listener)).unwrap());
    for end in [&c, &s] {
        let proto = sys::sockopt_int(fd(end), libc::SOL_SOCKET, libc::SO_PROTOCOL);
        assert_eq!(proto, Ok(sys::IPPROTO_MPTCP), "not an MPTCP socket");
    }
    Ok((c, s))
}

/// A ring, or the reason this kernel cannot give one (then the scenario
/// is skipped with that reason).
fn uring(log: &mut Log) -> Option<io_uring::IoUring> {
    match io_uring::IoUring::new(8) {
        Ok(ring) => Some(ring),
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|v| format!("kernel.io_uring_disabled = {}", v.trim()))
                .unwrap_or_else(|_| "no kernel.io_uring_disabled".into());
            log.skipped = Some(format!(
                "no io_uring here: io_uring_setup failed: {e} ({disabled})"
            ));
            None
        }
    }
}

/// Submits one request and waits for its completion; returns the CQE result.
fn uring_run(ring: &mut io_uring::IoUring, sqe: io_uring::squeue::Entry) -> i32 {
    // SAFETY: every buffer the entry points to outlives this call, which
    // waits for the request's completion.
    unsafe { ring.submission().push(&sqe).expect("submission queue full") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("a completion");
    cqe.result()
}

/// io_uring send and recv on TCP with data (or buffer space) there at
/// issue: one row per request, Size = the CQE result, on every kernel.
fn uring_tcp(log: &mut Log) {
    use io_uring::{opcode, types};
    let Some(mut ring) = uring(log) else { return };
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (send, recv) = (Dir::Send, Dir::Receive);

    let buf = [1u8; 64];
    let sqe = opcode::Send::new(types::Fd(fd(&c)), buf.as_ptr(), 64).build();
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 64);
    log.uring_op(TCP, send, cl, Some(sl), r);
    sys::wait_ready(fd(&s), libc::POLLIN);
    let mut rbuf = vec![0u8; 4096];
    // A peek first (the TCP columns' seq must say where it starts,
    // though the row has no flags to tell it is one).
    let sqe = opcode::Recv::new(types::Fd(fd(&s)), rbuf.as_mut_ptr(), 10)
        .flags(libc::MSG_PEEK)
        .build();
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 10);
    log.uring_op(TCP, recv, sl, Some(cl), r);
    log.peek_rows.push(log.rows.len() - 1);
    let sqe = opcode::Recv::new(types::Fd(fd(&s)), rbuf.as_mut_ptr(), 4096).build();
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 64);
    log.uring_op(TCP, recv, sl, Some(cl), r);
}

/// io_uring requests that the kernel attempts more than once: a receive
/// that waits for its data (its first, non-blocking attempt's EAGAIN is
/// not a row), a send larger than the socket buffer, and a MSG_WAITALL
/// send that 6.x issues in pieces. One row each, where the io_uring
/// tracepoints carry the request; skipped where they do not (5.10), which
/// gives a row per attempt, as the README says.
fn uring_retry(log: &mut Log) {
    use io_uring::{opcode, types};
    if !uring_latency_known() {
        log.skipped = Some(
            "the io_uring tracepoints carry no request pointer here (before 5.19): \
             a request is a row per protocol call (docs/kernels.md, \"io_uring\")"
                .into(),
        );
        return;
    }
    let Some(mut ring) = uring(log) else { return };
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (send, recv) = (Dir::Send, Dir::Receive);
    let mut rbuf = vec![0u8; 4096];

    // A receive with nothing to read yet: the kernel tries once without
    // blocking, arms a poll, and retries when the data comes.
    let sqe = opcode::Recv::new(types::Fd(fd(&s)), rbuf.as_mut_ptr(), 4096).build();
    // SAFETY: rbuf outlives the request, which completes below.
    unsafe { ring.submission().push(&sqe).unwrap() };
    ring.submit().expect("io_uring_enter");
    settle();
    let r = sys::send(fd(&c), &[2; 10], 0);
    log.op(TCP, send, cl, Some(sl), r, "");
    ring.submit_and_wait(1).expect("io_uring_enter");
    let r = ring.completion().next().expect("a completion").result();
    assert_eq!(r, 10);
    log.uring_op(TCP, recv, sl, Some(cl), r);

    // A send far larger than the socket buffer, drained by another
    // thread: one request, one row, whatever pieces the kernel sends.
    let big = vec![3u8; 4 << 20];
    let drainer = drain(s);
    let sqe = opcode::Send::new(types::Fd(fd(&c)), big.as_ptr(), big.len() as u32).build();
    let r = uring_run(&mut ring, sqe);
    assert!(r > 0, "big send: {r}");
    log.uring_op(TCP, send, cl, Some(sl), r);
    // The same with MSG_WAITALL: 6.x sends the rest in further pieces
    // within the one request (5.10 completes it short).
    let sqe = opcode::Send::new(types::Fd(fd(&c)), big.as_ptr(), big.len() as u32)
        .flags(libc::MSG_WAITALL)
        .build();
    let r = uring_run(&mut ring, sqe);
    assert!(r > 0, "big MSG_WAITALL send: {r}");
    log.uring_op(TCP, send, cl, Some(sl), r);
    sys::shutdown_write(fd(&c));
    let (_s, got) = drainer.join().unwrap();
    for g in got {
        log.op(TCP, recv, sl, Some(cl), g, "");
    }
}

fn sockaddr_in(a: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 only: {a}")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// io_uring sendmsg with a destination and recvmsg with a name buffer on
/// unconnected UDP: one row each, with the addresses of the datagram.
fn uring_udp(log: &mut Log) {
    use io_uring::{opcode, types};
    let Some(mut ring) = uring(log) else { return };
    let (a, b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());

    let payload = [7u8; 33];
    let mut to = sockaddr_in(bl);
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = &mut to as *mut _ as *mut _;
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let sqe = opcode::SendMsg::new(types::Fd(fd(&a)), &msg).build();
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 33);
    log.uring_op(UDP, Dir::Send, al, Some(bl), r);

    let mut rbuf = [0u8; 100];
    // SAFETY: as above.
    let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut riov = libc::iovec {
        iov_base: rbuf.as_mut_ptr() as *mut _,
        iov_len: rbuf.len(),
    };
    // SAFETY: as above.
    let mut rmsg: libc::msghdr = unsafe { std::mem::zeroed() };
    rmsg.msg_name = &mut from as *mut _ as *mut _;
    rmsg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    rmsg.msg_iov = &mut riov;
    rmsg.msg_iovlen = 1;
    let sqe = opcode::RecvMsg::new(types::Fd(fd(&b)), &mut rmsg).build();
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 33);
    assert_eq!(u16::from_be(from.sin_port), al.port());
    log.uring_op(UDP, Dir::Receive, bl, Some(al), r);
}

/// Why io_uring rows here are not one per request with its submitter's
/// Command (then the scenarios that need that are skipped with it).
fn uring_requests_unseen() -> Option<String> {
    (!uring_latency_known()).then(|| {
        "the io_uring tracepoints carry no request pointer here (before 5.19): \
         a request is a row per protocol call (docs/kernels.md, \"io_uring\")"
            .into()
    })
}

/// A multishot receive (IORING_RECV_MULTISHOT, provided buffers) of
/// messages sent one at a time: one row per CQE that carries data, with
/// that CQE's size, then the final CQE at end of stream (Size 0).
fn uring_multishot(log: &mut Log) {
    use io_uring::{cqueue, opcode, types};
    if let Some(why) = uring_requests_unseen() {
        log.skipped = Some(why);
        return;
    }
    let Some(mut ring) = uring(log) else { return };
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    const BGID: u16 = 7;
    const BUF: usize = 4096;
    let sizes = [100usize, 1, 3000, 777, 4096];
    let mut pool = vec![0u8; BUF * 8];
    let sqe = opcode::ProvideBuffers::new(pool.as_mut_ptr(), BUF as i32, 8, BGID, 0).build();
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 0, "IORING_OP_PROVIDE_BUFFERS: {r}");

    let sqe = opcode::RecvMulti::new(types::Fd(fd(&s)), BGID)
        .build()
        .user_data(0x6d73);
    // SAFETY: the pool outlives the request, which ends (at end of
    // stream) before this function returns.
    unsafe { ring.submission().push(&sqe).unwrap() };
    ring.submit().expect("io_uring_enter");
    settle();
    if let Some(cqe) = ring.completion().next() {
        if cqe.result() == -libc::EINVAL {
            log.skipped = Some(format!(
                "no multishot receive here (IORING_RECV_MULTISHOT is 6.0+; {}): EINVAL",
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            ));
            return;
        }
        panic!("multishot receive ended before any data: {}", cqe.result());
    }
    for (i, &n) in sizes.iter().enumerate() {
        let r = sys::send(fd(&c), &vec![i as u8 + 1; n], 0);
        log.op(TCP, Dir::Send, cl, Some(sl), r, "");
        ring.submit_and_wait(1).expect("io_uring_enter");
        let cqe = ring.completion().next().expect("a completion");
        assert_eq!(cqe.result(), n as i32, "message {i}");
        assert!(
            cqueue::more(cqe.flags()),
            "message {i}: the multishot ended"
        );
        assert!(cqueue::buffer_select(cqe.flags()).is_some());
        log.uring_op(TCP, Dir::Receive, sl, Some(cl), cqe.result());
    }
    sys::shutdown_write(fd(&c));
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("the final completion");
    assert_eq!(cqe.result(), 0, "end of stream");
    assert!(!cqueue::more(cqe.flags()));
    log.uring_op(TCP, Dir::Receive, sl, Some(cl), cqe.result());
}

/// io_uring send and recv forced into an io-wq worker (IOSQE_ASYNC), whose
/// thread is `iou-wrk-<tid>`: the rows have the submitting thread's PID
/// and Command all the same.
fn uring_async(log: &mut Log) {
    use io_uring::{opcode, squeue, types};
    if let Some(why) = uring_requests_unseen() {
        log.skipped = Some(why);
        return;
    }
    let Some(mut ring) = uring(log) else { return };
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let buf = [5u8; 300];
    let sqe = opcode::Send::new(types::Fd(fd(&c)), buf.as_ptr(), 300)
        .build()
        .flags(squeue::Flags::ASYNC);
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 300);
    log.uring_op(TCP, Dir::Send, cl, Some(sl), r);
    sys::wait_ready(fd(&s), libc::POLLIN);
    let mut rbuf = vec![0u8; 4096];
    let sqe = opcode::Recv::new(types::Fd(fd(&s)), rbuf.as_mut_ptr(), 4096)
        .build()
        .flags(squeue::Flags::ASYNC);
    let r = uring_run(&mut ring, sqe);
    assert_eq!(r, 300);
    log.uring_op(TCP, Dir::Receive, sl, Some(cl), r);
}

/// More completions than the CQ ring holds: the CQEs that overflow reach
/// the application later from the kernel's overflow list, and never
/// io_uring_complete. Each request is still one row.
fn uring_overflow(log: &mut Log) {
    use io_uring::{opcode, types};
    if let Some(why) = uring_requests_unseen() {
        log.skipped = Some(why);
        return;
    }
    // 2 SQ entries, 4 CQ entries.
    let mut ring = match io_uring::IoUring::new(2) {
        Ok(r) => r,
        Err(e) => {
            log.skipped = Some(format!("no io_uring here: {e}"));
            return;
        }
    };
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let buf = [9u8; 64];
    let sizes: [u32; 7] = [11, 12, 13, 14, 15, 16, 17];
    for (i, &n) in sizes.iter().enumerate() {
        let sqe = opcode::Send::new(types::Fd(fd(&c)), buf.as_ptr(), n)
            .build()
            .user_data(i as u64);
        // SAFETY: buf outlives the requests, all reaped below.
        unsafe { ring.submission().push(&sqe).unwrap() };
        // Submits and waits for this one, without reaping anything.
        ring.submit_and_wait(1).expect("io_uring_enter");
    }
    let mut got = Vec::new();
    while got.len() < sizes.len() {
        // Entering with GETEVENTS moves overflowed CQEs into the ring.
        ring.submit_and_wait(1).expect("io_uring_enter");
        got.extend(ring.completion().map(|c| (c.user_data(), c.result())));
    }
    got.sort();
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(got[i], (i as u64, n as i32), "CQE {i}");
        log.uring_op(TCP, Dir::Send, cl, Some(sl), got[i].1);
    }
}

/// A multishot receive whose CQ ring fills up (4 entries, nothing reaped):
/// the kernel cannot post the fifth message's CQE as an extra one, so it
/// ends the multishot with that data on the request's final CQE, which
/// itself overflows. Five messages, five rows, none twice.
fn uring_multishot_full(log: &mut Log) {
    use io_uring::{cqueue, opcode, types};
    if let Some(why) = uring_requests_unseen() {
        log.skipped = Some(why);
        return;
    }
    let mut ring = match io_uring::IoUring::new(2) {
        Ok(r) => r,
        Err(e) => {
            log.skipped = Some(format!("no io_uring here: {e}"));
            return;
        }
    };
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    const BGID: u16 = 9;
    const BUF: usize = 1024;
    let sizes = [21usize, 22, 23, 24, 25];
    let mut pool = vec![0u8; BUF * 8];
    let sqe = opcode::ProvideBuffers::new(pool.as_mut_ptr(), BUF as i32, 8, BGID, 0).build();
    assert_eq!(uring_run(&mut ring, sqe), 0);
    let sqe = opcode::RecvMulti::new(types::Fd(fd(&s)), BGID)
        .build()
        .user_data(0x66);
    // SAFETY: the pool outlives the request, which ends below.
    unsafe { ring.submission().push(&sqe).unwrap() };
    ring.submit().expect("io_uring_enter");
    settle();
    if let Some(cqe) = ring.completion().next() {
        if cqe.result() == -libc::EINVAL {
            log.skipped = Some("no multishot receive here (IORING_RECV_MULTISHOT is 6.0+)".into());
            return;
        }
        panic!("multishot receive ended before any data: {}", cqe.result());
    }
    for (i, &n) in sizes.iter().enumerate() {
        let r = sys::send(fd(&c), &vec![i as u8; n], 0);
        log.op(TCP, Dir::Send, cl, Some(sl), r, "");
        // Each message's receive runs from task_work; entering the ring
        // without reaping makes sure it has run before the next send.
        ring.submit().expect("io_uring_enter");
        settle();
    }
    let mut got = Vec::new();
    let mut reap = |got: &mut Vec<(i32, bool)>| {
        ring.submit_and_wait(1).expect("io_uring_enter");
        got.extend(
            ring.completion()
                .filter(|c| c.user_data() == 0x66)
                .map(|c| (c.result(), cqueue::more(c.flags()))),
        );
    };
    while got.len() < sizes.len() {
        reap(&mut got);
    }
    let results: Vec<i32> = got.iter().map(|g| g.0).collect();
    let want: Vec<i32> = sizes.iter().map(|&n| n as i32).collect();
    assert_eq!(results, want, "CQEs (result, more): {got:?}");
    // 6.12 and 6.18 end the multishot on the fifth; a kernel that kept the
    // extra CQE on its overflow list instead would still be armed: end it
    // at end of stream, whose CQE is a row too.
    if got.last().unwrap().1 {
        sys::shutdown_write(fd(&c));
        while got.last().unwrap().1 {
            reap(&mut got);
        }
        assert_eq!(got.last().unwrap().0, 0, "end of stream: {got:?}");
    }
    for &(r, _) in &got {
        log.uring_op(TCP, Dir::Receive, sl, Some(cl), r);
    }
}

/// A thread whose comm needs CSV quoting.
fn odd_comm(log: &mut Log) {
    let (a, b) = (udp("127.0.0.1:0"), udp("127.0.0.1:0"));
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let r = sys::sendto(fd(&a), &[1; 3], 0, bl);
    log.op(UDP, Dir::Send, al, Some(bl), r, "");
}

// ---- attribution columns and filters (issue #12) ------------------------

/// The sockets of nwt-port whose ports the --port tracers list: bound
/// before the tracers start (so that their ports are known, and no other
/// test on the machine can hold them), used by the scenario.
static PORT_SOCKETS: std::sync::Mutex<Option<(TcpListener, UdpSocket)>> =
    std::sync::Mutex::new(None);
static PORTS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Binds the listed ports' sockets; returns their ports as text.
fn bind_listed_ports() -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP listener");
    let rx = udp("127.0.0.1:0");
    let ports = (
        listener.local_addr().unwrap().port().to_string(),
        rx.local_addr().unwrap().port().to_string(),
    );
    *PORT_SOCKETS.lock().unwrap() = Some((listener, rx));
    PORTS.set(ports.clone()).expect("bound once");
    ports
}

/// TCP on one listed port, unconnected UDP to the other (its peer port
/// comes from sendto's address, not the socket), and TCP on neither.
fn ports(log: &mut Log) {
    let (listener, rx) = PORT_SOCKETS.lock().unwrap().take().expect("bound in main");
    let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (s, _) = listener.accept().unwrap();
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let r = sys::send(fd(&c), &[1; 20], 0);
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");
    let r = sys::recv(fd(&s), 4096, 0);
    log.op(TCP, Dir::Receive, sl, Some(cl), r, "");

    let tx = udp("127.0.0.1:0");
    let (rl, tl) = (rx.local_addr().unwrap(), tx.local_addr().unwrap());
    let r = sys::sendto(fd(&tx), &[2; 7], 0, rl);
    log.op(UDP, Dir::Send, tl, Some(rl), r, "");
    let (n, from) = sys::recvfrom(fd(&rx), 100, 0).unwrap();
    log.op(UDP, Dir::Receive, rl, from, Ok(n), "");

    let (a, b) = tcp_pair("127.0.0.1:0");
    let (al, bl) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let r = sys::send(fd(&a), &[3; 3], 0);
    log.op(TCP, Dir::Send, al, Some(bl), r, "");
    let r = sys::recv(fd(&b), 4096, 0);
    log.op(TCP, Dir::Receive, bl, Some(al), r, "");
}

fn so_cookie(fd: i32) -> u64 {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len are valid out-parameters of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt(SO_COOKIE)");
    cookie
}

/// Two TCP connections, both ends of each used twice: the Socket Cookie
/// column must give each of the four sockets its own kernel cookie.
fn cookies(log: &mut Log) {
    for _ in 0..2 {
        let (c, s) = tcp_pair("127.0.0.1:0");
        let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
        for size in [11, 12] {
            let r = sys::send(fd(&c), &vec![1; size], 0);
            log.op(TCP, Dir::Send, cl, Some(sl), r, "");
            let r = sys::recv(fd(&s), 4096, 0);
            log.op(TCP, Dir::Receive, sl, Some(cl), r, "");
            let r = sys::send(fd(&s), &vec![2; size], 0);
            log.op(TCP, Dir::Send, sl, Some(cl), r, "");
            let r = sys::recv(fd(&c), 4096, 0);
            log.op(TCP, Dir::Receive, cl, Some(sl), r, "");
        }
        log.cookies.push((cl.port(), so_cookie(fd(&c))));
        log.cookies.push((sl.port(), so_cookie(fd(&s))));
    }
}

/// The inode of a namespace link such as /proc/thread-self/ns/net.
fn ns_inode(link: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(link).expect("a namespace link").ino()
}

/// TCP on loopback in a network namespace of its own (this thread only,
/// as `unshare -n` does for a process), with lo brought up.
fn netns(log: &mut Log) {
    // SAFETY: unshare with a flag only changes this thread's namespaces.
    assert_eq!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        0,
        "unshare(CLONE_NEWNET)"
    );
    lo_up();
    log.netns = Some(ns_inode("/proc/thread-self/ns/net"));
    let (c, s) = tcp_pair("127.0.0.1:0");
    let (cl, sl) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let r = sys::send(fd(&c), &[5; 30], 0);
    log.op(TCP, Dir::Send, cl, Some(sl), r, "");
    let r = sys::recv(fd(&s), 4096, 0);
    log.op(TCP, Dir::Receive, sl, Some(cl), r, "");
}

/// `ip link set lo up` in the current thread's network namespace.
fn lo_up() {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq whose name is
    // set; the socket is closed before returning.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(sock >= 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        assert_eq!(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut ifr), 0, "lo up");
        libc::close(sock);
    }
}

struct Scenario {
    /// Also the thread name, hence the rows' Command.
    thread: &'static str,
    body: fn(&mut Log),
    /// Rows from several threads of that name come in no fixed order.
    unordered: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        thread: "nwt-tcp4",
        body: tcp4,
        unordered: false,
    },
    Scenario {
        thread: "nwt-tcp-oob",
        body: tcp_oob,
        unordered: false,
    },
    Scenario {
        thread: "nwt-tcp-state",
        body: tcp_state,
        unordered: false,
    },
    Scenario {
        thread: "nwt-tcp6",
        body: tcp6,
        unordered: false,
    },
    Scenario {
        thread: "nwt-tcp-dual",
        body: tcp_dual_stack,
        unordered: false,
    },
    Scenario {
        thread: "nwt-udp4c",
        body: udp4_connected,
        unordered: false,
    },
    Scenario {
        thread: "nwt-udp4u",
        body: udp4_unconnected,
        unordered: false,
    },
    Scenario {
        thread: "nwt-udp6u",
        body: udp6_unconnected,
        unordered: false,
    },
    Scenario {
        thread: "nwt-udp-dual",
        body: udp_dual_stack,
        unordered: false,
    },
    Scenario {
        thread: "nwt-udp-trunc",
        body: udp_trunc,
        unordered: false,
    },
    Scenario {
        thread: "nwt-udp-mmsg",
        body: udp_mmsg,
        unordered: false,
    },
    Scenario {
        thread: "nwt-errors",
        body: errors,
        unordered: false,
    },
    Scenario {
        thread: "nwt-sendfile",
        body: tcp_sendfile,
        unordered: true,
    },
    Scenario {
        thread: "nwt-splice",
        body: tcp_splice,
        unordered: false,
    },
    Scenario {
        thread: "nwt-mptcp",
        body: mptcp,
        unordered: false,
    },
    Scenario {
        thread: "nwt-uring-tcp",
        body: uring_tcp,
        unordered: false,
    },
    Scenario {
        thread: "nwt-uring-retry",
        body: uring_retry,
        unordered: true,
    },
    Scenario {
        thread: "nwt-uring-udp",
        body: uring_udp,
        unordered: false,
    },
    Scenario {
        thread: "nwt-uring-mshot",
        body: uring_multishot,
        unordered: true,
    },
    Scenario {
        thread: "nwt-uring-async",
        body: uring_async,
        unordered: false,
    },
    Scenario {
        thread: "nwt-uring-ovf",
        body: uring_overflow,
        unordered: false,
    },
    Scenario {
        thread: "nwt-mshot-full",
        body: uring_multishot_full,
        unordered: true,
    },
    Scenario {
        thread: "a,\"b",
        body: odd_comm,
        unordered: false,
    },
    Scenario {
        thread: "nwt-blocked",
        body: blocked_receivers,
        unordered: true,
    },
    Scenario {
        thread: "nwt-port",
        body: ports,
        unordered: false,
    },
    Scenario {
        thread: "nwt-cookie",
        body: cookies,
        unordered: false,
    },
    Scenario {
        thread: "nwt-netns",
        body: netns,
        unordered: false,
    },
];

/// The --comm filtered tracer follows this scenario.
const FILTERED_THREAD: &str = "nwt-udp4u";

/// Timestamps come from the tracer's own clock mapping; allow this much
/// disagreement with the test's clock.
const CLOCK_SLACK_US: i64 = 5_000;

struct Ran {
    thread: &'static str,
    tid: i32,
    netns: Option<u64>,
    cookies: Vec<(u16, u64)>,
    tcp_info: Vec<TcpInfoSeen>,
    peek_rows: Vec<usize>,
    skipped: Option<String>,
    unordered: bool,
    expected: Vec<Expected>,
    start_us: i64,
    end_us: i64,
}

fn run_scenario(s: &Scenario) -> Result<Ran, String> {
    let start_us = now_us();
    let body = s.body;
    let handle = std::thread::Builder::new()
        .name(s.thread.to_string())
        .spawn(move || {
            let mut log = Log {
                // SAFETY: gettid has no preconditions.
                tid: unsafe { libc::gettid() },
                ..Log::default()
            };
            body(&mut log);
            log
        })
        .map_err(|e| e.to_string())?;
    let log = handle.join().map_err(|p| {
        format!(
            "scenario panicked: {:?}",
            p.downcast_ref::<String>()
                .cloned()
                .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
        )
    })?;
    Ok(Ran {
        thread: s.thread,
        tid: log.tid,
        netns: log.netns,
        cookies: log.cookies,
        tcp_info: log.tcp_info,
        peek_rows: log.peek_rows,
        skipped: log.skipped,
        unordered: s.unordered,
        expected: log.rows,
        start_us,
        end_us: now_us(),
    })
}

fn describe(e: &Expected) -> String {
    e.exact_fields().join(",")
}

/// Compares one scenario's rows with what it expected; returns the problems.
fn check(ran: &Ran, rows: &[Row], pid: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut actual: Vec<&Row> = rows
        .iter()
        .filter(|r| r.get("Command") == ran.thread)
        .collect();
    let mut expected = ran.expected.clone();
    if ran.unordered {
        actual.sort_by_key(|r| exact_fields_of(r));
        expected.sort_by_key(|e| e.exact_fields());
    } else {
        actual.sort_by_key(|r| parse_timestamp_us(r.get("Timestamp")).unwrap_or(0));
    }
    let ran = &Ran {
        expected,
        skipped: None,
        cookies: Vec::new(),
        tcp_info: Vec::new(),
        peek_rows: Vec::new(),
        ..*ran
    };
    if actual.len() != ran.expected.len() {
        problems.push(format!(
            "expected {} rows, got {}",
            ran.expected.len(),
            actual.len()
        ));
    }
    for (i, (want, got)) in ran.expected.iter().zip(&actual).enumerate() {
        let got_exact = exact_fields_of(got);
        if got_exact != want.exact_fields() {
            problems.push(format!(
                "row {i}: expected {}\n              got {}",
                describe(want),
                got_exact.join(",")
            ));
        }
        if got.get("PID") != pid {
            problems.push(format!("row {i}: PID {} is not {pid}", got.get("PID")));
        }
        let Some(ts) = parse_timestamp_us(got.get("Timestamp")) else {
            problems.push(format!("row {i}: bad Timestamp {:?}", got.get("Timestamp")));
            continue;
        };
        if ts < ran.start_us - CLOCK_SLACK_US || ts > ran.end_us + CLOCK_SLACK_US {
            problems.push(format!(
                "row {i}: Timestamp {} is outside the scenario's run",
                got.get("Timestamp")
            ));
        }
        match (want.latency_known, got.get("Latency")) {
            (true, l) => match l.parse::<u64>() {
                Ok(ns) if ns > 0 => {
                    if ts + (ns / 1000) as i64 > ran.end_us + CLOCK_SLACK_US {
                        problems.push(format!(
                            "row {i}: Timestamp + Latency {ns} ns ends after the scenario"
                        ));
                    }
                }
                _ => problems.push(format!("row {i}: Latency {l:?} should be a number above 0")),
            },
            (false, "") => {}
            (false, l) => problems.push(format!("row {i}: Latency {l:?} should be empty")),
        }
    }
    if actual.len() > ran.expected.len() {
        for extra in &actual[ran.expected.len()..] {
            problems.push(format!("extra row: {}", extra.fields.join(",")));
        }
    }
    problems
}

fn rows_under(dir: &std::path::Path) -> Vec<Row> {
    csv_files(dir).iter().flat_map(|f| read_rows(f)).collect()
}

/// The optional columns, all of them, as the header names them.
const EXTRA: [&str; 10] = [
    "TID",
    "UID",
    "Cgroup",
    "Container ID",
    "Netns",
    "Socket Cookie",
    "SRTT us",
    "CWND",
    "Retrans",
    "TCP Seq",
];

/// A tracer with in-kernel filters (and --pid, so also AND across kinds),
/// and which of the unfiltered tracer's rows it must keep. In `args`,
/// `TCP_PORT` and `UDP_PORT` stand for nwt-port's listed ports.
struct FilterCase {
    args: &'static [&'static str],
    keep: fn(&Row) -> bool,
}

fn on_listed_port(r: &Row) -> bool {
    let (tcp, udp) = PORTS.get().expect("bound in main");
    [tcp, udp]
        .iter()
        .any(|p| r.get("Source Port") == *p || r.get("Destination Port") == *p)
}

const FILTER_CASES: &[FilterCase] = &[
    FilterCase {
        args: &["--port", "TCP_PORT", "--port", "UDP_PORT"],
        keep: on_listed_port,
    },
    FilterCase {
        args: &["--protocol", "udp"],
        keep: |r| r.get("Protocol") == "UDP",
    },
    FilterCase {
        args: &["--ip-version", "6"],
        keep: |r| r.get("IP Version") == "6",
    },
    FilterCase {
        args: &["--direction", "receive"],
        keep: |r| r.get("Direction") == "receive",
    },
    FilterCase {
        args: &["--exclude-comm", FILTERED_THREAD],
        keep: |r| r.get("Command") != FILTERED_THREAD,
    },
    FilterCase {
        args: &[
            "--protocol",
            "tcp",
            "--direction",
            "send",
            "--port",
            "TCP_PORT",
            "--port",
            "UDP_PORT",
        ],
        keep: |r| r.get("Protocol") == "TCP" && r.get("Direction") == "send" && on_listed_port(r),
    },
];

/// Compares a filtered tracer's rows with the unfiltered rows it must
/// keep: the same rows, and none that the filter drops.
fn check_filtered(ours: &[Row], got: &[Row], keep: fn(&Row) -> bool) -> Vec<String> {
    let key = |r: &Row| {
        let mut k = exact_fields_of(r);
        k.push(r.get("Command").to_string());
        k.push(r.get("PID").to_string());
        k
    };
    let mut want: Vec<_> = ours.iter().filter(|r| keep(r)).map(key).collect();
    let mut kept: Vec<_> = got.iter().map(key).collect();
    want.sort();
    kept.sort();
    let mut problems = Vec::new();
    if want.is_empty() {
        problems.push("the scenarios made no row that this filter keeps".to_string());
    }
    let wrong = got.iter().filter(|r| !keep(r)).count();
    if wrong != 0 {
        problems.push(format!("{wrong} rows that the filter should have dropped"));
    }
    if want != kept {
        let missing = want.iter().filter(|k| !kept.contains(k)).count();
        problems.push(format!(
            "kept {} rows, expected {} ({missing} missing)",
            kept.len(),
            want.len()
        ));
    }
    problems
}

/// The kernel release's major and minor numbers.
fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// A 64-hex run in a cgroup path (a container id), if there is one.
fn hex64_in(path: &str) -> String {
    path.split(|c: char| !c.is_ascii_hexdigit() || c.is_ascii_uppercase())
        .find(|w| w.len() == 64)
        .unwrap_or_default()
        .to_string()
}

/// Where the TCP columns are in the --columns tracer's rows.
const TCP_COLS: std::ops::Range<usize> = 20..24;

/// One TCP operation's bytes in its stream's sequence space.
#[derive(Clone, Copy, Debug)]
struct SeqRange {
    seq: u32,
    size: u64,
    ts_us: i64,
}

/// The ranges of one direction of a stream, if they tile one interval
/// with neither gap nor overlap, in the order they happened: its first
/// sequence number and length. The first operation's number is the base,
/// so that the interval may cross 2^32.
fn tile(ranges: &[SeqRange]) -> Result<Option<(u32, u64)>, String> {
    let Some(first) = ranges.iter().min_by_key(|r| r.ts_us) else {
        return Ok(None);
    };
    let base = first.seq;
    let mut v: Vec<(u64, u64, i64)> = ranges
        .iter()
        .map(|r| (u64::from(r.seq.wrapping_sub(base)), r.size, r.ts_us))
        .collect();
    v.sort();
    let mut end = 0;
    let mut last_ts = i64::MIN;
    for &(off, size, ts) in &v {
        if off != end {
            return Err(format!(
                "a range starts at {} past the first, where the one before it ends at {end} (ranges, from the first: {v:?})",
                off
            ));
        }
        if ts < last_ts {
            return Err(format!(
                "the ranges are not in the order of their operations (ranges, from the first: {v:?})"
            ));
        }
        end = off + size;
        last_ts = ts;
    }
    Ok(Some((base, end)))
}

/// The TCP columns with no oracle but TCP itself: empty for UDP and MPTCP
/// rows; for TCP, numbers, no retransmits on loopback, a sequence number
/// unless the operation failed (or read urgent data, which is outside the
/// stream); and, per stream direction, the sends' ranges `[seq, seq +
/// Size)` tile one interval, the receives' ranges tile one interval that
/// starts where the sends' does and ends within it (the bytes the join
/// pairs), and each peek starts within the receives'.
fn check_tcp_streams(cols: &[Row], ran: &[Ran]) -> Vec<String> {
    type Flow = (String, String, String, String, String);
    let mut problems = Vec::new();
    // The peeks that no MSG Flags name: by the scenario's own count of
    // its rows, in time order.
    let mut flagless_peeks = std::collections::HashSet::new();
    for r in ran.iter().filter(|r| !r.peek_rows.is_empty()) {
        let mut rows: Vec<&Row> = cols
            .iter()
            .filter(|c| c.get("Command") == r.thread)
            .collect();
        rows.sort_by_key(|c| parse_timestamp_us(c.get("Timestamp")).unwrap_or(0));
        for &i in &r.peek_rows {
            if let Some(row) = rows.get(i) {
                flagless_peeks.insert(row.fields.join(","));
            }
        }
    }
    let mut flows: std::collections::BTreeMap<Flow, [Vec<SeqRange>; 3]> = Default::default();
    for r in cols {
        let t = &r.fields[TCP_COLS];
        let line = r.fields.join(",");
        if r.get("Protocol") != "TCP" || r.get("Command") == "nwt-mptcp" {
            if t.iter().any(|v| !v.is_empty()) {
                problems.push(format!("TCP columns {t:?} on a UDP or MPTCP row: {line}"));
            }
            continue;
        }
        let num = |v: &str| v.parse::<u32>().ok();
        let (Some(_srtt), Some(cwnd), Some(_retrans)) = (num(&t[0]), num(&t[1]), num(&t[2])) else {
            problems.push(format!(
                "SRTT us, CWND, Retrans {t:?} should be numbers: {line}"
            ));
            continue;
        };
        // Retrans is checked against TCP_INFO (check_tcp_info): loopback
        // may retransmit too (a tail loss probe under load).
        if cwnd == 0 {
            problems.push(format!("CWND {cwnd} should be positive: {line}"));
        }
        let receive = r.get("Direction") == "receive";
        let flags: Vec<&str> = r.get("MSG Flags").split('|').collect();
        let want_seq = r.get("Error").is_empty()
            && !(receive && (flags.contains(&"MSG_OOB") || flags.contains(&"MSG_ERRQUEUE")));
        let seq = match (want_seq, num(&t[3])) {
            (true, Some(seq)) => seq,
            (false, None) if t[3].is_empty() => continue,
            _ => {
                problems.push(format!(
                    "TCP Seq {:?} should {}: {line}",
                    t[3],
                    if want_seq { "be a number" } else { "be empty" }
                ));
                continue;
            }
        };
        let range = SeqRange {
            seq,
            size: r.get("Size").parse().unwrap_or(0),
            ts_us: parse_timestamp_us(r.get("Timestamp")).unwrap_or(0),
        };
        let key = (
            r.get("Command").to_string(),
            r.get("Source Address").to_string(),
            r.get("Source Port").to_string(),
            r.get("Destination Address").to_string(),
            r.get("Destination Port").to_string(),
        );
        let peek = flags.contains(&"MSG_PEEK") || flagless_peeks.contains(&line);
        let kind = match (receive, peek) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        flows.entry(key).or_default()[kind].push(range);
    }
    let mut joined = 0;
    for (flow, [sends, receives, peeks]) in &flows {
        let what = format!("{} {}:{} -> {}:{}", flow.0, flow.1, flow.2, flow.3, flow.4);
        let (s, r) = match (tile(sends), tile(receives)) {
            (Ok(s), Ok(r)) => (s, r),
            (s, r) => {
                for e in [s.err(), r.err()].into_iter().flatten() {
                    problems.push(format!("{what}: {e}"));
                }
                continue;
            }
        };
        match (s, r) {
            (Some((s0, slen)), Some((r0, rlen))) => {
                if r0 != s0 || rlen > slen {
                    problems.push(format!(
                        "{what}: the receives cover [{r0}, +{rlen}), not the start of the sends' [{s0}, +{slen})"
                    ));
                }
                for p in peeks {
                    if u64::from(p.seq.wrapping_sub(r0)) > rlen {
                        problems.push(format!(
                            "{what}: a peek at {} is outside the receives' [{r0}, +{rlen})",
                            p.seq
                        ));
                    }
                }
                joined += rlen;
            }
            (None, Some(_)) => problems.push(format!("{what}: receives with no sends")),
            _ => {}
        }
    }
    if joined == 0 {
        problems.push("no TCP bytes were joined from send to receive".into());
    }
    problems
}

/// The TCP columns of nwt-tcp-state's rows against TCP_INFO read just
/// before and after each operation: Retrans and CWND within what the two
/// say, SRTT us within a factor of two of them (an ACK may move it in
/// between), and all three exactly TCP_INFO's where it did not change.
fn check_tcp_info(cols: &[Row], ran: &[Ran]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(scenario) = ran.iter().find(|r| r.thread == "nwt-tcp-state") else {
        return vec!["nwt-tcp-state did not run".into()];
    };
    let mut rows: Vec<&Row> = cols
        .iter()
        .filter(|r| r.get("Command") == scenario.thread)
        .collect();
    rows.sort_by_key(|r| parse_timestamp_us(r.get("Timestamp")).unwrap_or(0));
    if rows.len() != scenario.expected.len() {
        return vec![format!(
            "expected {} rows, got {}",
            scenario.expected.len(),
            rows.len()
        )];
    }
    let mut exact = 0;
    for seen in &scenario.tcp_info {
        let r = rows[seen.row];
        let line = r.fields.join(",");
        let t: Vec<u32> = r.fields[TCP_COLS.start..TCP_COLS.end - 1]
            .iter()
            .map(|v| v.parse().unwrap_or(u32::MAX))
            .collect();
        let got = (t[0], t[1], t[2]);
        let (b, a) = (seen.before, seen.after);
        if b == a {
            exact += 1;
            if got != b {
                problems.push(format!(
                    "SRTT us, CWND, Retrans {got:?} are not TCP_INFO's {b:?} (unchanged around the call): {line}"
                ));
            }
            continue;
        }
        let within = |v: u32, x: u32, y: u32| x.min(y) <= v && v <= x.max(y);
        if !within(got.2, b.2, a.2)
            || !within(got.1, b.1, a.1)
            || !within(got.0, b.0.min(a.0) / 2, b.0.max(a.0) * 2)
        {
            problems.push(format!(
                "SRTT us, CWND, Retrans {got:?} are not within TCP_INFO's {b:?} before and {a:?} after: {line}"
            ));
        }
    }
    if exact < 2 {
        problems.push(format!(
            "TCP_INFO changed around the quiet operations too: {:?}",
            scenario.tcp_info
        ));
    }
    problems
}

/// Checks the rows of the --columns tracer against the unfiltered rows and
/// against what the kernel says of this process, its threads and sockets.
fn check_columns(ours: &[Row], cols: &[Row], ran: &[Ran], backend: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let key = |r: &Row| {
        let mut k = exact_fields_of(r);
        k.push(r.get("Command").to_string());
        k
    };
    let mut want: Vec<_> = ours.iter().map(key).collect();
    let mut got: Vec<_> = cols.iter().map(key).collect();
    want.sort();
    got.sort();
    if want != got {
        problems.push(format!(
            "the 14 columns differ from the default tracer's rows ({} vs {} rows)",
            got.len(),
            want.len()
        ));
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() }.to_string();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let cgroup = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_string();
    let container = hex64_in(&cgroup);
    let netns = ns_inode("/proc/self/ns/net").to_string();
    let (major, minor) = kernel_version();
    // Tracing programs (tp_btf, fexit) have bpf_get_socket_cookie() from
    // 5.12; kprobes never.
    let cookie_known = matches!(backend, "tracepoint" | "fentry") && (major, minor) >= (5, 12);
    let by_thread = |t: &str| ran.iter().find(|r| r.thread == t);
    let mut seen_cookies = std::collections::HashMap::new();
    for r in cols {
        let f = &r.fields[14..];
        let line = r.fields.join(",");
        let thread = by_thread(r.get("Command"));
        if f[0].parse::<i32>().is_err() {
            problems.push(format!("TID {:?} is not a number: {line}", f[0]));
        }
        if let Some(t) =
            thread.filter(|t| ["nwt-port", "nwt-cookie", "nwt-netns"].contains(&t.thread))
            && f[0] != t.tid.to_string()
        {
            problems.push(format!(
                "TID {} is not the thread's {}: {line}",
                f[0], t.tid
            ));
        }
        if f[1] != uid {
            problems.push(format!("UID {} is not {uid}: {line}", f[1]));
        }
        if f[2] != cgroup || f[3] != container {
            problems.push(format!(
                "Cgroup/Container ID {:?}/{:?} are not {cgroup:?}/{container:?}: {line}",
                f[2], f[3]
            ));
        }
        let want_netns = thread
            .and_then(|t| t.netns)
            .map_or(netns.clone(), |n| n.to_string());
        if f[4] != want_netns {
            problems.push(format!("Netns {} is not {want_netns}: {line}", f[4]));
        }
        let cookie = &f[5];
        if !cookie_known {
            if !cookie.is_empty() {
                problems.push(format!(
                    "Socket Cookie {cookie} where {backend} has none: {line}"
                ));
            }
            continue;
        }
        // splice() from a TCP socket reaches no hook that may call the
        // helper (tcp_splice_read calls no recvmsg): its rows have the
        // cookie only if an earlier operation made one (README).
        if cookie.is_empty() && r.get("Command") == "nwt-splice" && r.get("Direction") == "receive"
        {
            continue;
        }
        if cookie.parse::<u64>().is_err() {
            problems.push(format!(
                "Socket Cookie {cookie:?} should be a number: {line}"
            ));
            continue;
        }
        if let Some(t) = thread.filter(|t| t.thread == "nwt-cookie") {
            let local = match r.get("Direction") {
                "send" => r.get("Source Port"),
                _ => r.get("Destination Port"),
            };
            let want = t
                .cookies
                .iter()
                .find(|(p, _)| p.to_string() == local)
                .map(|(_, c)| c.to_string());
            if want.as_deref() != Some(cookie.as_str()) {
                problems.push(format!(
                    "Socket Cookie {cookie} is not SO_COOKIE {want:?} of the socket on port {local}: {line}"
                ));
            }
            seen_cookies.insert(local.to_string(), cookie.clone());
        }
    }
    if cookie_known {
        let distinct: std::collections::HashSet<_> = seen_cookies.values().collect();
        if seen_cookies.len() != 4 || distinct.len() != 4 {
            problems.push(format!(
                "four sockets should show four cookies: {seen_cookies:?}"
            ));
        }
    }
    problems
}

/// `--cgroup` and `--container` with real cgroups: a child process moved
/// into a cgroup named as docker names its scopes (made after the tracers
/// started, as a container would be), and one outside it.
struct Cgroups {
    parent: PathBuf,
    outside: PathBuf,
    scope: PathBuf,
    id: String,
}

impl Cgroups {
    fn new() -> Cgroups {
        let root = nwtrace::attribution::cgroup::cgroup2_root().expect("a cgroup2 mount");
        let pid = std::process::id();
        let id = format!(
            "{:012x}{}",
            0xc0ff_ee00_0000_u64 + u64::from(pid),
            "5".repeat(52)
        );
        let parent = root.join(format!("nwtrace-rows-{pid}"));
        let outside = root.join(format!("nwtrace-rows-{pid}-out"));
        std::fs::create_dir_all(&parent).expect("making a cgroup");
        std::fs::create_dir_all(&outside).expect("making a cgroup");
        let scope = parent.join(format!("docker-{id}.scope"));
        Cgroups {
            parent,
            outside,
            scope,
            id,
        }
    }

    /// The cgroup path as /proc/PID/cgroup and the Cgroup column write it.
    fn scope_path(&self) -> String {
        format!(
            "/{}/{}",
            self.parent.file_name().unwrap().to_string_lossy(),
            self.scope.file_name().unwrap().to_string_lossy()
        )
    }

    fn remove(&self) {
        for d in [&self.scope, &self.parent, &self.outside] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

const CGROUP_CHILD_ENV: &str = "NWTRACE_ROWS_CGROUP_CHILD";
const CGROUP_CHILD_COMM: &str = "nwt-cgchild";

/// The child: moves itself into the cgroup whose cgroup.procs is `procs`,
/// then makes 4 rows and prints their addresses.
fn cgroup_child(procs: &str) -> ExitCode {
    std::fs::write(procs, std::process::id().to_string()).expect("moving into the cgroup");
    let name = std::ffi::CString::new(CGROUP_CHILD_COMM).unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let (c, s) = tcp_pair("127.0.0.1:0");
    assert_eq!(sys::send(fd(&c), &[1; 10], 0), Ok(10));
    assert_eq!(sys::recv(fd(&s), 100, 0), Ok(10));
    assert_eq!(sys::send(fd(&s), &[2; 5], 0), Ok(5));
    assert_eq!(sys::recv(fd(&c), 100, 0), Ok(5));
    println!("{} {}", c.local_addr().unwrap(), s.local_addr().unwrap());
    ExitCode::SUCCESS
}

/// Runs a child in `cgroup`; returns the rows it made.
fn run_cgroup_child(cgroup: &std::path::Path) -> Vec<Expected> {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CGROUP_CHILD_ENV, cgroup.join("cgroup.procs"))
        .output()
        .expect("running the cgroup child");
    assert!(out.status.success(), "cgroup child: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text
        .split_whitespace()
        .map(|a| a.parse::<SocketAddr>().unwrap());
    let (cl, sl) = (it.next().unwrap(), it.next().unwrap());
    let mut log = Log::default();
    log.op(TCP, Dir::Send, cl, Some(sl), Ok(10), "");
    log.op(TCP, Dir::Receive, sl, Some(cl), Ok(10), "");
    log.op(TCP, Dir::Send, sl, Some(cl), Ok(5), "");
    log.op(TCP, Dir::Receive, cl, Some(sl), Ok(5), "");
    log.rows
}

/// A --cgroup or --container tracer saw exactly the inside child's rows,
/// with its cgroup and container in the columns, and nothing else of the
/// whole machine.
fn check_cgroup_rows(rows: &[Row], inside: &[Expected], cg: &Cgroups) -> Vec<String> {
    let mut problems = Vec::new();
    let mut want: Vec<_> = inside.iter().map(|e| e.exact_fields()).collect();
    let mut got: Vec<_> = rows
        .iter()
        .filter(|r| r.get("Command") == CGROUP_CHILD_COMM)
        .map(exact_fields_of)
        .collect();
    want.sort();
    got.sort();
    if want != got {
        problems.push(format!(
            "expected the inside child's rows {want:?}\n     got {got:?}"
        ));
    }
    let pids: std::collections::HashSet<_> = rows.iter().map(|r| r.get("PID")).collect();
    if pids.len() > 1 {
        problems.push(format!("rows of several processes: {pids:?}"));
    }
    for r in rows {
        if r.get("Command") != CGROUP_CHILD_COMM {
            problems.push(format!(
                "row from outside the cgroup: {}",
                r.fields.join(",")
            ));
        }
        let (path, id) = (&r.fields[14], &r.fields[15]);
        if *path != cg.scope_path() || *id != cg.id {
            problems.push(format!(
                "Cgroup/Container ID {path:?}/{id:?} are not {:?}/{:?}",
                cg.scope_path(),
                cg.id
            ));
        }
    }
    problems
}

/// A backend attaches what docs/backends.md says, read from the kernel:
/// fentry no perf event at all (only bpf() links) and no syscall
/// tracepoint; kprobe no syscall tracepoint; tracepoint its sys_enter_*
/// ones (which also shows that this check sees them).
fn check_attach_set(backend: &str, a: &Attached) -> Vec<String> {
    let syscall_tps = a.syscall_tracepoints();
    let seen = format!(
        "perf events {}, links {:?}, hooks {:?}",
        a.perf_events, a.link_types, a.hooks
    );
    let mut problems = Vec::new();
    match backend {
        "fentry" => {
            if a.perf_events != 0 {
                problems.push(format!("fentry holds perf events: {seen}"));
            }
            if !a.link_types.iter().any(|t| t == "tracing") {
                problems.push(format!(
                    "fentry holds no tracing (fentry/fexit) link: {seen}"
                ));
            }
        }
        "kprobe" => {
            if !a.hooks.iter().any(|(kind, _)| *kind == "kprobe") {
                problems.push(format!(
                    "kprobe attached no kprobe that BPF_TASK_FD_QUERY sees: {seen}"
                ));
            }
        }
        "tracepoint" => {
            if syscall_tps.is_empty() {
                problems.push(format!(
                    "the tracepoint backend attaches sys_enter_*, but none was seen: {seen}"
                ));
            }
            return problems;
        }
        other => problems.push(format!("unknown backend {other:?} in the manifest")),
    }
    if !syscall_tps.is_empty() {
        problems.push(format!(
            "{backend} attached syscall tracepoints {syscall_tps:?}: {seen}"
        ));
    }
    problems
}

fn main() -> ExitCode {
    if let Ok(procs) = std::env::var(CGROUP_CHILD_ENV) {
        return cgroup_child(&procs);
    }
    if skip_without_root("rows") {
        println!("0 passed, 0 failed, 1 skipped");
        return ExitCode::SUCCESS;
    }
    let pid = std::process::id().to_string();
    let out_all = scratch_dir("all");
    let out_comm = scratch_dir("comm");
    let common_args = ["--machine-id", "nwtrace-test", "--timestamp", "rows"];
    let mut all = Tracer::start(&out_all, &[&["--pid", &pid][..], &common_args].concat());
    let mut filtered = Tracer::start(
        &out_comm,
        &[&["--comm", FILTERED_THREAD][..], &common_args].concat(),
    );
    let (tcp_port, udp_port) = bind_listed_ports();
    let mut filter_tracers: Vec<(String, PathBuf, Tracer)> = FILTER_CASES
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let dir = scratch_dir(&format!("filter{i}"));
            let case_args: Vec<&str> = case
                .args
                .iter()
                .map(|a| match *a {
                    "TCP_PORT" => tcp_port.as_str(),
                    "UDP_PORT" => udp_port.as_str(),
                    a => a,
                })
                .collect();
            let args = [&["--pid", &pid][..], &case_args, &common_args].concat();
            let t = Tracer::start(&dir, &args);
            (case_args.join(" "), dir, t)
        })
        .collect();
    let out_cols = scratch_dir("columns");
    let all_columns = "tid,uid,cgroup,container,netns,cookie,srtt,cwnd,retrans,seq";
    let mut cols = Tracer::start(
        &out_cols,
        &[&["--pid", &pid, "--columns", all_columns][..], &common_args].concat(),
    );
    let mut passed = 0;
    let mut failed = 0;
    let mut ran = Vec::new();
    for s in SCENARIOS {
        match run_scenario(s) {
            Ok(r) => ran.push(r),
            Err(e) => {
                println!("FAIL {}: {e}", s.thread);
                failed += 1;
            }
        }
    }
    // What the first tracer has attached, read from the kernel while it
    // traces (checked below against its backend's claim).
    let attached = attached_by(all.pid());
    // The filter cases are over: stop their tracers before starting the
    // cgroup ones. A trampoline holds 38 programs (BPF_MAX_TRAMP_LINKS),
    // and with twin programs (kernels that preempt BPF programs) each
    // fentry tracer puts 4 on sendfile64 and splice: 9 tracers at once
    // fit, the 11 of this test did not.
    let filter_codes: Vec<i32> = filter_tracers
        .iter_mut()
        .map(|(_, _, t)| t.stop())
        .collect();
    let cg = Cgroups::new();
    let cg_arg = cg
        .parent
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out_cg = scratch_dir("cgroup");
    let mut cg_tracer = Tracer::start(
        &out_cg,
        &[
            &["--cgroup", &cg_arg, "--columns", "cgroup,container"][..],
            &common_args,
        ]
        .concat(),
    );
    let out_ct = scratch_dir("container");
    let mut ct_tracer = Tracer::start(
        &out_ct,
        &[
            &["--container", &cg.id[..12], "--columns", "cgroup,container"][..],
            &common_args,
        ]
        .concat(),
    );

    // The container starts after the tracers: --container finds its
    // cgroup at its next rescan (each second) and puts the cgroup's ID (its
    // inode number) in its BPF filter map, which is what is waited for.
    std::fs::create_dir(&cg.scope).expect("making the docker-named cgroup");
    let scope_id = std::fs::metadata(&cg.scope)
        .expect("the docker-named cgroup")
        .ino();
    wait_until(
        "--container to take in the new cgroup (its container_filter map)",
        Duration::from_secs(60),
        || bpf_map_has_key(ct_tracer.pid(), "container_filter", &scope_id.to_ne_bytes()),
    );
    let inside = run_cgroup_child(&cg.scope);
    let _ = run_cgroup_child(&cg.outside);

    // Rows reach the files at least once a second; stopping flushes them all.
    let code_all = all.stop();
    let code_filtered = filtered.stop();
    let code_cols = cols.stop();
    let code_cg = cg_tracer.stop();
    let code_ct = ct_tracer.stop();
    cg.remove();

    let mut outcome = |name: &str, problems: Vec<String>| {
        if problems.is_empty() {
            println!("ok   {name}");
            passed += 1;
        } else {
            println!("FAIL {name}");
            for p in problems {
                println!("     {p}");
            }
            failed += 1;
        }
    };

    // The run itself: clean exit, nothing lost, the contract's layout.
    let mut problems = Vec::new();
    for (name, code, tracer) in [("all", code_all, &all), ("comm", code_filtered, &filtered)] {
        if code != 0 {
            problems.push(format!(
                "tracer {name} exited {code}: {}",
                tracer.stderr.join(" | ")
            ));
        }
        let manifest = tracer.manifest();
        if manifest["events_lost"] != 0
            || manifest["probes_missed"] != 0
            || manifest["finalized"] != true
        {
            problems.push(format!(
                "tracer {name} lost events or did not finalise: {manifest}"
            ));
        }
    }
    let first_file = out_all.join("nwtrace-test/rows/nw/nw_0001.csv");
    if !first_file.is_file() {
        problems.push(format!("{} is missing", first_file.display()));
    }
    outcome(
        "tracer runs and exits cleanly into <dir>/<machine-id>/<timestamp>/nw",
        problems,
    );

    let backend_all = all.manifest()["backend"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut link_counts = std::collections::BTreeMap::new();
    for t in &attached.link_types {
        *link_counts.entry(t.as_str()).or_insert(0) += 1;
    }
    println!(
        "     attached by backend {backend_all}: {} perf events, BPF links {link_counts:?}, syscall tracepoints {:?}",
        attached.perf_events,
        attached.syscall_tracepoints()
    );
    outcome(
        &format!("attach set of backend {backend_all}: no syscall tracepoint unless tracepoint"),
        check_attach_set(&backend_all, &attached),
    );

    let rows = rows_under(&out_all);
    let ours: Vec<Row> = rows.into_iter().filter(|r| r.get("PID") == pid).collect();
    let mut skipped = 0;
    // The kernel matrix runs old kernels on purpose (tests/vm/matrix).
    let kernel_skips_allowed = std::env::var("NWTRACE_KERNEL_SKIPS").is_ok_and(|v| v == "allowed");
    for r in &ran {
        let problems = check(r, &ours, &pid);
        match &r.skipped {
            // A scenario the kernel cannot run: said so, never silent; and
            // under CI, whose host kernel runs them all, a failure.
            Some(reason) if problems.is_empty() && in_ci() && !kernel_skips_allowed => outcome(
                r.thread,
                vec![format!("skipped ({reason}), and CI=true forbids skipping")],
            ),
            Some(reason) if problems.is_empty() => {
                println!("SKIP {}: {reason}", r.thread);
                skipped += 1;
            }
            _ => outcome(r.thread, problems),
        }
    }

    let known: Vec<&str> = SCENARIOS.iter().map(|s| s.thread).collect();
    let strays: Vec<String> = ours
        .iter()
        .filter(|r| !known.contains(&r.get("Command")))
        .map(|r| format!("stray row: {}", r.fields.join(",")))
        .collect();
    outcome("no rows from outside the scenarios", strays);

    // The second tracer, filtered by comm in the kernel, saw exactly that
    // thread's rows, the same ones.
    let filtered_rows = rows_under(&out_comm);
    let mut problems = Vec::new();
    let key = |r: &Row| {
        let mut k = exact_fields_of(r);
        k.push(r.get("Command").to_string());
        k.push(r.get("PID").to_string());
        k
    };
    let mut want: Vec<_> = ours
        .iter()
        .filter(|r| r.get("Command") == FILTERED_THREAD)
        .map(key)
        .collect();
    let mut got: Vec<_> = filtered_rows.iter().map(key).collect();
    want.sort();
    got.sort();
    if want.is_empty() || want != got {
        problems.push(format!(
            "--comm {FILTERED_THREAD} saw {:?}\n     the --pid tracer saw {:?}",
            got, want
        ));
    }
    outcome("--comm filter and a second concurrent tracer", problems);

    // Each in-kernel filter keeps exactly the rows it should.
    for ((name, dir, tracer), (case, code)) in filter_tracers
        .iter()
        .zip(FILTER_CASES.iter().zip(&filter_codes))
    {
        let mut problems = Vec::new();
        if *code != 0 {
            problems.push(format!(
                "tracer exited {code}: {}",
                tracer.stderr.join(" | ")
            ));
        }
        let got = rows_under(dir);
        problems.extend(check_filtered(&ours, &got, case.keep));
        outcome(&format!("filter {name}"), problems);
    }

    // --columns: the same rows, and what the kernel says of each.
    let mut problems = Vec::new();
    if code_cols != 0 {
        problems.push(format!(
            "tracer exited {code_cols}: {}",
            cols.stderr.join(" | ")
        ));
    }
    let manifest = cols.manifest();
    let backend = manifest["backend"].as_str().unwrap_or_default().to_string();
    let want_names: Vec<&str> = HEADER.iter().chain(&EXTRA).copied().collect();
    if manifest["columns"] != serde_json::json!(want_names) {
        problems.push(format!("manifest columns: {}", manifest["columns"]));
    }
    let col_rows: Vec<Row> = csv_files(&out_cols)
        .iter()
        .flat_map(|f| read_rows_with(f, &EXTRA))
        .collect();
    problems.extend(check_columns(&ours, &col_rows, &ran, &backend));
    outcome(
        &format!("--columns {all_columns} (backend {backend})"),
        problems,
    );
    outcome(
        &format!(
            "TCP columns: empty for UDP and MPTCP, seq ranges tile each stream and the receiver's match the sender's (backend {backend})"
        ),
        check_tcp_streams(&col_rows, &ran),
    );
    outcome(
        &format!("TCP columns against TCP_INFO (backend {backend})"),
        check_tcp_info(&col_rows, &ran),
    );

    // --cgroup and --container: one child process inside, one outside.
    for (name, code, tracer, dir) in [
        (
            "--cgroup (and a docker-named child cgroup)",
            code_cg,
            &cg_tracer,
            &out_cg,
        ),
        (
            "--container (started after the tracer)",
            code_ct,
            &ct_tracer,
            &out_ct,
        ),
    ] {
        let mut problems = Vec::new();
        if code != 0 {
            problems.push(format!(
                "tracer exited {code}: {}",
                tracer.stderr.join(" | ")
            ));
        }
        let rows: Vec<Row> = csv_files(dir)
            .iter()
            .flat_map(|f| read_rows_with(f, &["Cgroup", "Container ID"]))
            .collect();
        problems.extend(check_cgroup_rows(&rows, &inside, &cg));
        outcome(name, problems);
    }

    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
