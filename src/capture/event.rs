//! Decoding ring buffer records into [`NetEvent`]s.
//!
//! Pure: no I/O, no BPF. The raw layout is the skeleton's generated
//! `nw_event`, which comes from `src/bpf/nwtrace.h`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::bpf::types::nw_attr as RawAttr;
use crate::bpf::types::nw_event as RawEvent;
use crate::schema::columns::{Column, Columns};

/// Constants mirrored from `src/bpf/nwtrace.h`.
pub const NW_RECORD_EVENT: u8 = 1;
/// An event followed by its attribution (`--columns`).
pub const NW_RECORD_EVENT_ATTR: u8 = 2;
const NW_DIR_SEND: u8 = 0;
const NW_DIR_RECV: u8 = 1;
const NW_INFO_HAS_START: u8 = 0x01;
const NW_INFO_HAS_FLAGS: u8 = 0x02;
const NW_INFO_PEER_KNOWN: u8 = 0x04;
pub const NW_EVENT_SIZE: usize = 88;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

pub const NW_EVENT_ATTR_SIZE: usize = 136;
/// Which attribution fields the BPF side fills (its `attr_mask`).
pub const NW_ATTR_TID: u32 = 0x01;
pub const NW_ATTR_UID: u32 = 0x02;
pub const NW_ATTR_CGROUP: u32 = 0x04;
pub const NW_ATTR_NETNS: u32 = 0x08;
pub const NW_ATTR_COOKIE: u32 = 0x10;
/// The TCP columns (srtt, cwnd, retrans, seq): read together.
pub const NW_ATTR_TCP: u32 = 0x20;
/// `nw_attr.tcp` bits: srtt, cwnd and retrans are the socket's.
const NW_TCP_STATE: u32 = 0x01;
/// `nw_attr.seq` is the number after the operation's bytes.
const NW_TCP_SEQ_END: u32 = 0x02;
/// `nw_attr.seq` is the number of its first byte (a peek).
const NW_TCP_SEQ_START: u32 = 0x04;

const _: () = assert!(std::mem::size_of::<RawEvent>() == NW_EVENT_SIZE);
const _: () =
    assert!(std::mem::size_of::<RawEvent>() + std::mem::size_of::<RawAttr>() == NW_EVENT_ATTR_SIZE);

// SAFETY: RawEvent is a #[repr(C)] struct of integers and integer arrays
// generated from the BPF object's BTF; every bit pattern is a valid value.
unsafe impl plain::Plain for RawEvent {}
// SAFETY: as above, for the attribution that may follow the event.
unsafe impl plain::Plain for RawAttr {}

pub use crate::attribution::columns::{Attr, TcpState};

/// The TCP columns of a record: `None` unless the BPF side read a TCP
/// socket. The first byte's sequence number is known for an operation
/// that did not fail: the BPF side gives the number after its bytes
/// (subtract the row's Size; mod 2^32) or, for a peek, the first itself.
fn tcp_state(a: &RawAttr, ret: i32) -> Option<TcpState> {
    if a.tcp & NW_TCP_STATE == 0 {
        return None;
    }
    let seq = match u32::try_from(ret) {
        Err(_) => None,
        Ok(n) if a.tcp & NW_TCP_SEQ_END != 0 => Some(a.seq.wrapping_sub(n)),
        Ok(_) if a.tcp & NW_TCP_SEQ_START != 0 => Some(a.seq),
        Ok(_) => None,
    };
    Some(TcpState {
        srtt_us: a.srtt_us,
        cwnd: a.snd_cwnd,
        retrans: a.total_retrans,
        seq,
    })
}

/// What the BPF side must fill for a column (`attr_mask`). The container
/// id is derived from the cgroup.
fn attr_bits(col: Column) -> u32 {
    match col {
        Column::Tid => NW_ATTR_TID,
        Column::Uid => NW_ATTR_UID,
        Column::Cgroup | Column::Container => NW_ATTR_CGROUP,
        Column::Netns => NW_ATTR_NETNS,
        Column::Cookie => NW_ATTR_COOKIE,
        Column::Srtt | Column::Cwnd | Column::Retrans | Column::Seq => NW_ATTR_TCP,
    }
}

impl Columns {
    /// The BPF side's `attr_mask`: 0 when no column is on.
    pub fn attr_mask(self) -> u32 {
        self.iter().fold(0, |m, c| m | attr_bits(c))
    }
}

// One type per concept: an event's values are the row's values.
pub use crate::schema::{Direction, Endpoint, Protocol};

/// One send or receive, with addresses already normalised: an IPv4-mapped
/// IPv6 address is an IPv4 address here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetEvent {
    pub direction: Direction,
    pub protocol: Protocol,
    pub ip_version: u8,
    pub pid: u32,
    /// The thread's comm; see [`NetEvent::comm`].
    comm: [u8; 16],
    comm_len: u8,
    /// The operation's return value: bytes, or a negative errno.
    pub ret: i32,
    /// Flags the application passed, when the operation came from a
    /// send/recv syscall.
    pub msg_flags: Option<u32>,
    /// CLOCK_MONOTONIC start, when known.
    pub start_ns: Option<u64>,
    pub end_ns: u64,
    pub local: Endpoint,
    pub peer: Option<Endpoint>,
    /// The optional columns' values, in records made with `--columns`.
    pub attr: Option<Attr>,
}

impl NetEvent {
    /// The thread's comm, up to its first NUL.
    pub fn comm(&self) -> &[u8] {
        &self.comm[..usize::from(self.comm_len)]
    }

    /// Replaces the comm (at most 16 bytes are kept, as the kernel keeps
    /// them); for tests and replays.
    pub fn set_comm(&mut self, comm: &[u8]) {
        let len = comm.len().min(self.comm.len());
        self.comm = [0; 16];
        self.comm[..len].copy_from_slice(&comm[..len]);
        self.comm_len = len as u8;
    }

    /// Where the bytes come from: the local end for a send, the peer for a
    /// receive.
    pub fn source(&self) -> Option<Endpoint> {
        match self.direction {
            Direction::Send => Some(self.local),
            Direction::Receive => self.peer,
        }
    }

    pub fn destination(&self) -> Option<Endpoint> {
        match self.direction {
            Direction::Send => self.peer,
            Direction::Receive => Some(self.local),
        }
    }

    pub fn latency_ns(&self) -> Option<u64> {
        self.start_ns.map(|start| self.end_ns.saturating_sub(start))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event")]
    Truncated(usize),
    #[error("unknown record tag {0}")]
    UnknownRecord(u8),
    #[error("bad direction {0}")]
    BadDirection(u8),
    #[error("bad protocol {0}")]
    BadProtocol(u8),
    #[error("bad address family {0}")]
    BadFamily(u16),
}

fn ipv4(bytes: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

/// An address as the kernel stored it for `family`, with IPv4-mapped IPv6
/// turned into IPv4.
fn address(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET {
        return IpAddr::V4(ipv4(bytes));
    }
    let v6 = Ipv6Addr::from(*bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

impl TryFrom<&[u8]> for NetEvent {
    type Error = DecodeError;

    fn try_from(data: &[u8]) -> Result<Self, DecodeError> {
        let mut raw = RawEvent::default();
        plain::copy_from_bytes(&mut raw, data).map_err(|_| DecodeError::Truncated(data.len()))?;
        let attr = match raw.record {
            NW_RECORD_EVENT => None,
            NW_RECORD_EVENT_ATTR => {
                let tail = data
                    .get(NW_EVENT_SIZE..NW_EVENT_ATTR_SIZE)
                    .ok_or(DecodeError::Truncated(data.len()))?;
                let mut a = RawAttr::default();
                plain::copy_from_bytes(&mut a, tail)
                    .map_err(|_| DecodeError::Truncated(data.len()))?;
                Some(Attr {
                    tid: a.tid,
                    uid: a.uid,
                    cgroup_id: a.cgroup_id,
                    netns: a.netns,
                    cookie: (a.cookie != 0).then_some(a.cookie),
                    tcp: tcp_state(&a, raw.ret),
                })
            }
            r => return Err(DecodeError::UnknownRecord(r)),
        };
        let direction = match raw.direction {
            NW_DIR_SEND => Direction::Send,
            NW_DIR_RECV => Direction::Receive,
            d => return Err(DecodeError::BadDirection(d)),
        };
        let protocol = match i32::from(raw.protocol) {
            libc::IPPROTO_TCP => Protocol::Tcp,
            libc::IPPROTO_UDP => Protocol::Udp,
            _ => return Err(DecodeError::BadProtocol(raw.protocol)),
        };
        if raw.sk_family != AF_INET && raw.sk_family != AF_INET6 {
            return Err(DecodeError::BadFamily(raw.sk_family));
        }
        let peer = if raw.info & NW_INFO_PEER_KNOWN != 0 {
            if raw.peer_family != AF_INET && raw.peer_family != AF_INET6 {
                return Err(DecodeError::BadFamily(raw.peer_family));
            }
            Some(Endpoint {
                addr: address(raw.peer_family, &raw.peer_addr),
                port: raw.peer_port,
            })
        } else {
            None
        };
        let mut local = Endpoint {
            addr: address(raw.sk_family, &raw.local_addr),
            port: raw.local_port,
        };
        // "As on the wire": an AF_INET6 socket talking to an IPv4 peer
        // carries IPv4. Its local address is then v4-mapped (already
        // turned into IPv4 above) or the wildcard `::`, which is 0.0.0.0.
        let ip_version = match (peer, local.addr) {
            (
                Some(Endpoint {
                    addr: IpAddr::V4(_),
                    ..
                }),
                IpAddr::V6(v6),
            ) if v6.is_unspecified() => {
                local.addr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                4
            }
            (
                Some(Endpoint {
                    addr: IpAddr::V6(_),
                    ..
                }),
                _,
            ) => 6,
            (Some(_), _) => 4,
            (None, IpAddr::V4(_)) => 4,
            (None, IpAddr::V6(_)) => 6,
        };
        let comm = raw.comm.map(|c| c as u8);
        let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len()) as u8;
        Ok(NetEvent {
            direction,
            protocol,
            ip_version,
            pid: raw.pid,
            comm,
            comm_len,
            ret: raw.ret,
            msg_flags: (raw.info & NW_INFO_HAS_FLAGS != 0).then_some(raw.msg_flags),
            start_ns: (raw.info & NW_INFO_HAS_START != 0).then_some(raw.start_ns),
            end_ns: raw.end_ns,
            local,
            peer,
            attr,
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A raw record as the BPF side would write it.
    pub fn raw_event() -> RawEvent {
        let mut raw = RawEvent {
            record: NW_RECORD_EVENT,
            direction: NW_DIR_SEND,
            protocol: libc::IPPROTO_TCP as u8,
            info: NW_INFO_HAS_START | NW_INFO_HAS_FLAGS | NW_INFO_PEER_KNOWN,
            sk_family: AF_INET,
            peer_family: AF_INET,
            local_port: 40000,
            peer_port: 8080,
            pid: 1234,
            ret: 64,
            msg_flags: 0x4000,
            start_ns: 1_000,
            end_ns: 3_500,
            ..Default::default()
        };
        raw.local_addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        raw.peer_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        for (dst, src) in raw.comm.iter_mut().zip(b"curl") {
            *dst = *src as i8;
        }
        raw
    }

    /// A decoded TCP send of 64 bytes by `curl`, 127.0.0.1:40000 to
    /// 10.1.2.3:8080, with MSG_NOSIGNAL and a 2,500 ns latency.
    pub fn sample_event() -> NetEvent {
        NetEvent::try_from(bytes(&raw_event()).as_slice()).expect("a valid record")
    }

    pub fn bytes(raw: &RawEvent) -> Vec<u8> {
        // SAFETY: RawEvent is Plain (see above): viewing it as bytes is sound.
        unsafe { plain::as_bytes(raw) }.to_vec()
    }

    fn mapped(v4: [u8; 4]) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[12..].copy_from_slice(&v4);
        a
    }

    #[test]
    fn bpf_fills_only_what_the_columns_need() {
        assert_eq!(Columns::default().attr_mask(), 0);
        assert_eq!(
            Columns::parse("container").unwrap().attr_mask(),
            NW_ATTR_CGROUP
        );
        assert_eq!(
            Columns::parse("tid,cookie").unwrap().attr_mask(),
            NW_ATTR_TID | NW_ATTR_COOKIE
        );
        assert_eq!(Columns::all().attr_mask(), 0x3f);
    }

    #[test]
    fn decodes_a_tcp_v4_send() {
        let ev = NetEvent::try_from(bytes(&raw_event()).as_slice()).unwrap();
        assert_eq!(ev.direction, Direction::Send);
        assert_eq!(ev.protocol, Protocol::Tcp);
        assert_eq!(ev.ip_version, 4);
        assert_eq!(ev.comm(), b"curl");
        assert_eq!(ev.latency_ns(), Some(2_500));
        assert_eq!(ev.msg_flags, Some(0x4000));
        let src = ev.source().unwrap();
        assert_eq!(
            (src.addr.to_string(), src.port),
            ("127.0.0.1".into(), 40000)
        );
        let dst = ev.destination().unwrap();
        assert_eq!((dst.addr.to_string(), dst.port), ("10.1.2.3".into(), 8080));
    }

    #[test]
    fn receive_swaps_source_and_destination() {
        let mut raw = raw_event();
        raw.direction = NW_DIR_RECV;
        let ev = NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
        assert_eq!(ev.source().unwrap().port, 8080);
        assert_eq!(ev.destination().unwrap().port, 40000);
    }

    #[test]
    fn unknown_peer_start_and_flags() {
        let mut raw = raw_event();
        raw.info = 0;
        let ev = NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
        assert_eq!(ev.peer, None);
        assert_eq!(ev.destination(), None);
        assert_eq!(ev.latency_ns(), None);
        assert_eq!(ev.msg_flags, None);
    }

    #[test]
    fn ipv6_addresses() {
        let mut raw = raw_event();
        raw.sk_family = AF_INET6;
        raw.peer_family = AF_INET6;
        raw.local_addr = Ipv6Addr::LOCALHOST.octets();
        raw.peer_addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let ev = NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
        assert_eq!(ev.ip_version, 6);
        assert_eq!(ev.local.addr.to_string(), "::1");
        assert_eq!(ev.peer.unwrap().addr.to_string(), "2001:db8::1");
    }

    #[test]
    fn v4_mapped_peer_on_a_v6_socket_is_ipv4() {
        let mut raw = raw_event();
        raw.sk_family = AF_INET6;
        raw.peer_family = AF_INET6;
        raw.local_addr = mapped([127, 0, 0, 1]);
        raw.peer_addr = mapped([127, 0, 0, 2]);
        let ev = NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
        assert_eq!(ev.ip_version, 4);
        assert_eq!(ev.local.addr.to_string(), "127.0.0.1");
        assert_eq!(ev.peer.unwrap().addr.to_string(), "127.0.0.2");
    }

    #[test]
    fn v4_peer_on_a_wildcard_v6_socket() {
        // Unconnected dual-stack UDP socket bound to `::`, sending to a
        // sockaddr_in: the wildcard local end is 0.0.0.0 in IPv4 terms.
        let mut raw = raw_event();
        raw.protocol = libc::IPPROTO_UDP as u8;
        raw.sk_family = AF_INET6;
        raw.peer_family = AF_INET;
        raw.local_addr = [0; 16];
        let ev = NetEvent::try_from(bytes(&raw).as_slice()).unwrap();
        assert_eq!(ev.ip_version, 4);
        assert_eq!(ev.local.addr.to_string(), "0.0.0.0");
        assert_eq!(ev.peer.unwrap().addr.to_string(), "10.1.2.3");
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn no_bytes_make_the_decoder_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let valid = bytes(&raw_event());
        for round in 0..200_000 {
            let data: Vec<u8> = if round % 2 == 0 {
                let len = (rng.next_u64() % 130) as usize;
                (0..len).map(|_| rng.next_u64() as u8).collect()
            } else {
                // A real record with a few bytes damaged: reaches deeper.
                let mut d = valid.clone();
                for _ in 0..1 + rng.next_u64() % 4 {
                    let i = (rng.next_u64() % d.len() as u64) as usize;
                    d[i] = rng.next_u64() as u8;
                }
                d
            };
            if let Ok(ev) = NetEvent::try_from(data.as_slice()) {
                // Whatever decodes must also format.
                let mut out = Vec::new();
                crate::output::row::RowFormatter::new().write_row(
                    &mut out,
                    &ev,
                    &crate::timefmt::WallClock::with_offset(0),
                );
                assert!(out.ends_with(b"\n"));
            }
        }
    }

    #[test]
    fn attribution_follows_the_event_in_its_own_record_type() {
        let mut raw = raw_event();
        raw.record = NW_RECORD_EVENT_ATTR;
        let attr = RawAttr {
            tid: 1235,
            uid: 1000,
            cgroup_id: 4242,
            netns: 4026531840,
            cookie: 77,
            ..Default::default()
        };
        let mut data = bytes(&raw);
        // SAFETY: RawAttr is Plain (see above).
        data.extend_from_slice(unsafe { plain::as_bytes(&attr) });
        assert_eq!(data.len(), NW_EVENT_ATTR_SIZE);
        let ev = NetEvent::try_from(data.as_slice()).unwrap();
        assert_eq!(
            ev.attr,
            Some(Attr {
                tid: 1235,
                uid: 1000,
                cgroup_id: 4242,
                netns: 4026531840,
                cookie: Some(77),
                tcp: None,
            })
        );
        // A zero cookie is "none", and the event fields decode as before.
        data[NW_EVENT_SIZE + 24..].fill(0);
        let ev = NetEvent::try_from(data.as_slice()).unwrap();
        assert_eq!(ev.attr.unwrap().cookie, None);
        assert_eq!(ev.pid, 1234);
        // The tag promises the tail: without it the record is truncated.
        assert_eq!(
            NetEvent::try_from(&data[..NW_EVENT_SIZE]),
            Err(DecodeError::Truncated(NW_EVENT_SIZE))
        );
        // The default record has no attribution.
        assert_eq!(sample_event().attr, None);
    }

    #[test]
    fn tcp_columns_from_the_values_after_the_operation() {
        let with = |ret: i32, attr: RawAttr| {
            let mut raw = raw_event();
            raw.record = NW_RECORD_EVENT_ATTR;
            raw.ret = ret;
            let mut data = bytes(&raw);
            // SAFETY: RawAttr is Plain (see above).
            data.extend_from_slice(unsafe { plain::as_bytes(&attr) });
            NetEvent::try_from(data.as_slice())
                .unwrap()
                .attr
                .unwrap()
                .tcp
        };
        let sent = RawAttr {
            tcp: NW_TCP_STATE | NW_TCP_SEQ_END,
            srtt_us: 31,
            snd_cwnd: 10,
            total_retrans: 2,
            seq: 1_000_064,
            ..Default::default()
        };
        // 64 bytes that end before 1,000,064 start at 1,000,000.
        assert_eq!(
            with(64, sent),
            Some(TcpState {
                srtt_us: 31,
                cwnd: 10,
                retrans: 2,
                seq: Some(1_000_000),
            })
        );
        // Across the wrap of the 32-bit sequence space.
        let wrapped = RawAttr { seq: 16, ..sent };
        assert_eq!(with(64, wrapped).unwrap().seq, Some(u32::MAX - 47));
        // A zero-byte operation starts where it ends; a failed one has no
        // first byte, but the socket's state is still its state.
        assert_eq!(with(0, sent).unwrap().seq, Some(1_000_064));
        let failed = with(-11, sent).unwrap();
        assert_eq!((failed.seq, failed.cwnd), (None, 10));
        // A peek gives its first byte itself; urgent data gives none.
        let peek = RawAttr {
            tcp: NW_TCP_STATE | NW_TCP_SEQ_START,
            seq: 500,
            ..sent
        };
        assert_eq!(with(64, peek).unwrap().seq, Some(500));
        let oob = RawAttr {
            tcp: NW_TCP_STATE,
            ..sent
        };
        assert_eq!(with(1, oob).unwrap().seq, None);
        // UDP and MPTCP: none of the TCP values.
        assert_eq!(with(64, RawAttr { tcp: 0, ..sent }), None);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let good = bytes(&raw_event());
        assert_eq!(
            NetEvent::try_from(&good[..10]),
            Err(DecodeError::Truncated(10))
        );
        let mut raw = raw_event();
        raw.record = 9;
        assert_eq!(
            NetEvent::try_from(bytes(&raw).as_slice()),
            Err(DecodeError::UnknownRecord(9))
        );
        let mut raw = raw_event();
        raw.direction = 7;
        assert_eq!(
            NetEvent::try_from(bytes(&raw).as_slice()),
            Err(DecodeError::BadDirection(7))
        );
        let mut raw = raw_event();
        raw.protocol = 1;
        assert_eq!(
            NetEvent::try_from(bytes(&raw).as_slice()),
            Err(DecodeError::BadProtocol(1))
        );
        let mut raw = raw_event();
        raw.sk_family = 1;
        assert_eq!(
            NetEvent::try_from(bytes(&raw).as_slice()),
            Err(DecodeError::BadFamily(1))
        );
    }
}
