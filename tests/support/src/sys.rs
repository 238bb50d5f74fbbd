//! Thin libc wrappers, so each scenario states exactly which syscall it
//! makes and with which flags (std's own socket calls add MSG_NOSIGNAL).

use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub type SysResult<T> = Result<T, i32>;

fn check(ret: isize) -> SysResult<usize> {
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret as usize)
    }
}

pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

pub fn from_sockaddr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    if len == 0 {
        return None;
    }
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                0,
                0,
            )))
        }
        _ => None,
    }
}

/// An address as the rows show it: IPv4-mapped IPv6 is IPv4.
pub fn on_the_wire(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// send(2); glibc issues it as sendto(fd, buf, len, flags, NULL, 0).
pub fn send(fd: RawFd, data: &[u8], flags: i32) -> SysResult<usize> {
    // SAFETY: data is valid for data.len() bytes.
    check(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) })
}

/// recv(2); glibc issues it as recvfrom(fd, buf, len, flags, NULL, NULL).
pub fn recv(fd: RawFd, len: usize, flags: i32) -> SysResult<usize> {
    let mut buf = vec![0u8; len];
    // SAFETY: buf is writable for len bytes.
    check(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, flags) })
}

pub fn sendto(fd: RawFd, data: &[u8], flags: i32, to: SocketAddr) -> SysResult<usize> {
    let (sa, len) = to_sockaddr(to);
    // SAFETY: data and sa are valid for the lengths given.
    check(unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            flags,
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

pub fn recvfrom(fd: RawFd, len: usize, flags: i32) -> SysResult<(usize, Option<SocketAddr>)> {
    let mut buf = vec![0u8; len];
    // SAFETY: plain data, zero is valid.
    let mut sa: libc::sockaddr_storage = unsafe { zeroed() };
    let mut sa_len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: buf, sa and sa_len are valid and writable for the sizes given.
    let n = check(unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            len,
            flags,
            (&mut sa as *mut libc::sockaddr_storage).cast(),
            &mut sa_len,
        )
    })?;
    Ok((n, from_sockaddr(&sa, sa_len)))
}

pub fn write(fd: RawFd, data: &[u8]) -> SysResult<usize> {
    // SAFETY: data is valid for data.len() bytes.
    check(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) })
}

pub fn read(fd: RawFd, len: usize) -> SysResult<usize> {
    let mut buf = vec![0u8; len];
    // SAFETY: buf is writable for len bytes.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), len) })
}

pub fn sendmsg(fd: RawFd, data: &[u8], flags: i32, to: Option<SocketAddr>) -> SysResult<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut name = to.map(to_sockaddr);
    // SAFETY: plain data, zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    if let Some((sa, len)) = name.as_mut() {
        msg.msg_name = (sa as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = *len;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg points at live iov/name for the duration of the call.
    check(unsafe { libc::sendmsg(fd, &msg, flags) })
}

pub fn recvmsg(
    fd: RawFd,
    len: usize,
    flags: i32,
    want_name: bool,
) -> SysResult<(usize, Option<SocketAddr>)> {
    let mut buf = vec![0u8; len];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    // SAFETY: plain data, zero is valid.
    let mut sa: libc::sockaddr_storage = unsafe { zeroed() };
    // SAFETY: plain data, zero is valid.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    if want_name {
        msg.msg_name = (&mut sa as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = check(unsafe { libc::recvmsg(fd, &mut msg, flags) })?;
    let name = if want_name {
        from_sockaddr(&sa, msg.msg_namelen)
    } else {
        None
    };
    Ok((n, name))
}

/// sendmmsg with one datagram per payload, all to `to`.
pub fn sendmmsg(fd: RawFd, payloads: &[&[u8]], flags: i32, to: SocketAddr) -> SysResult<usize> {
    let (sa, sa_len) = to_sockaddr(to);
    let mut iovs: Vec<libc::iovec> = payloads
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: plain data, zero is valid.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_name = (&sa as *const libc::sockaddr_storage) as *mut libc::c_void;
            m.msg_hdr.msg_namelen = sa_len;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs points at live iovecs and sa for the duration of the call.
    let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, flags) };
    check(n as isize)
}

/// recvmmsg of up to `count` datagrams of at most `len` bytes, with names.
pub fn recvmmsg(
    fd: RawFd,
    count: usize,
    len: usize,
    flags: i32,
) -> SysResult<Vec<(usize, Option<SocketAddr>)>> {
    let mut bufs = vec![vec![0u8; len]; count];
    // SAFETY: plain data, zero is valid.
    let mut names: Vec<libc::sockaddr_storage> = (0..count).map(|_| unsafe { zeroed() }).collect();
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: len,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(names.iter_mut())
        .map(|(iov, name)| {
            // SAFETY: plain data, zero is valid.
            let mut m: libc::mmsghdr = unsafe { zeroed() };
            m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: msgs points at live buffers for the duration of the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            count as u32,
            flags,
            std::ptr::null_mut(),
        )
    };
    let n = check(n as isize)?;
    Ok(msgs[..n]
        .iter()
        .zip(&names)
        .map(|(m, name)| {
            (
                m.msg_len as usize,
                from_sockaddr(name, m.msg_hdr.msg_namelen),
            )
        })
        .collect())
}

/// SO_LINGER {on, 0}: close() then sends a RST instead of a FIN.
pub fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: linger is a valid option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain syscall on an fd we own.
    assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_WR) }, 0);
}

/// sendfile(2) of `count` bytes from the start of `in_fd` into `out_fd`.
pub fn sendfile(out_fd: RawFd, in_fd: RawFd, count: usize) -> SysResult<usize> {
    let mut offset: libc::off_t = 0;
    // SAFETY: offset is a valid, writable off_t for the duration of the call.
    check(unsafe { libc::sendfile(out_fd, in_fd, &mut offset, count) })
}

/// splice(2) without offsets (both ends are a pipe or a socket).
pub fn splice(fd_in: RawFd, fd_out: RawFd, len: usize, flags: u32) -> SysResult<usize> {
    // SAFETY: null offsets are allowed for pipes and sockets; no memory is passed.
    check(unsafe {
        libc::splice(
            fd_in,
            std::ptr::null_mut(),
            fd_out,
            std::ptr::null_mut(),
            len,
            flags,
        )
    })
}

/// pipe(2): (read end, write end), owned.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is writable for two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe()");
    // SAFETY: pipe() returned two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

pub const IPPROTO_MPTCP: i32 = 262;

/// A stream socket of `family` with `protocol` (IPPROTO_MPTCP, say), or
/// the errno socket(2) failed with.
pub fn stream_socket(family: i32, protocol: i32) -> SysResult<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, protocol) };
    check(fd as isize)?;
    // SAFETY: socket() returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn bind(fd: RawFd, addr: SocketAddr) -> SysResult<()> {
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: sa is valid for len bytes.
    check(unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_storage).cast(), len) } as isize)
        .map(drop)
}

pub fn listen(fd: RawFd) -> SysResult<()> {
    // SAFETY: plain syscall on an fd we own.
    check(unsafe { libc::listen(fd, 16) } as isize).map(drop)
}

pub fn connect(fd: RawFd, addr: SocketAddr) -> SysResult<()> {
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: sa is valid for len bytes.
    check(unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_storage).cast(), len) } as isize)
        .map(drop)
}

pub fn accept(fd: RawFd) -> SysResult<OwnedFd> {
    // SAFETY: null address buffers are allowed.
    let s = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    check(s as isize)?;
    // SAFETY: accept4() returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// An int socket option (SO_PROTOCOL, say).
pub fn sockopt_int(fd: RawFd, level: i32, name: i32) -> SysResult<i32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid out-parameters of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    } as isize)?;
    Ok(v)
}

/// What TCP_INFO says of a TCP socket: (tcpi_rtt in µs, which is
/// `srtt_us >> 3`; tcpi_snd_cwnd; tcpi_total_retrans).
pub fn tcp_info(fd: RawFd) -> SysResult<(u32, u32, u32)> {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid out-parameters of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    } as isize)?;
    Ok((info.tcpi_rtt, info.tcpi_snd_cwnd, info.tcpi_total_retrans))
}

/// tcpi_unacked of a TCP socket: segments sent and not yet acknowledged.
pub fn tcp_unacked(fd: RawFd) -> SysResult<u32> {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info and len are valid out-parameters of the sizes given.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    } as isize)?;
    Ok(info.tcpi_unacked)
}

/// Waits (poll(2), up to 10 s) until `fd` reports one of `events`
/// (POLLIN, POLLPRI, POLLERR...): a scenario's next call then finds the
/// data or the error the peer or loopback sent, without a guessed sleep.
/// Panics on the timeout. Reads nothing, so no pending error is consumed.
pub fn wait_ready(fd: RawFd, events: i16) -> i16 {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: pfd is one live pollfd, and the count says one.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert!(
        n == 1 && pfd.revents & events != 0,
        "fd {fd} not ready for {events:#x} within 10 s (poll gave {n}, revents {:#x})",
        pfd.revents
    );
    pfd.revents
}
