//! One CSV row per [`NetEvent`], written straight into the output buffer:
//! rows are formatted by hand with no allocation, since this runs for
//! every event.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attribution::columns::Attribution;
use crate::capture::event::NetEvent;
use crate::names::{write_errno, write_msg_flags};
use crate::schema::columns::Columns;
use crate::timefmt::{RowTimeFormatter, WallClock};

pub use crate::schema::HEADER;

/// Appends `field` as an RFC 4180 field: quoted, with inner quotes doubled,
/// when it holds a comma, a double quote, CR or LF.
pub fn write_csv_field(out: &mut Vec<u8>, field: &[u8]) {
    if !field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &b in field {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A comm as UTF-8 text: valid UTF-8 is kept, every other byte becomes
/// `\xNN`. Returns the text in `scratch` (reused across rows).
pub(crate) fn comm_text<'a>(comm: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if comm.is_ascii() {
        return comm;
    }
    scratch.clear();
    for chunk in comm.utf8_chunks() {
        scratch.extend_from_slice(chunk.valid().as_bytes());
        for b in chunk.invalid() {
            // Infallible: writing to a Vec.
            let _ = write!(scratch, "\\x{b:02x}");
        }
    }
    scratch
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a dotted IPv4 address. By hand: core::fmt was the largest
/// cost of a row (profiled under the ping-pong benchmark).
fn write_ipv4(out: &mut Vec<u8>, addr: Ipv4Addr) {
    for (i, octet) in addr.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// The last IPv6 address formatted, since a connection's rows repeat it.
/// std's Ipv6Addr Display is RFC 5952 (longest zero run compressed,
/// lowercase hex).
#[derive(Default)]
struct Ipv6Cache {
    addr: Option<Ipv6Addr>,
    text: Vec<u8>,
}

impl Ipv6Cache {
    fn write(&mut self, out: &mut Vec<u8>, addr: Ipv6Addr) {
        if self.addr != Some(addr) {
            self.text.clear();
            // Infallible: writing to a Vec.
            let _ = write!(self.text, "{addr}");
            self.addr = Some(addr);
        }
        out.extend_from_slice(&self.text);
    }
}

/// What the fields from PID to destination port depend on: a socket's
/// rows in one direction repeat them all.
#[derive(Clone, Copy, PartialEq, Eq)]
struct EndpointsKey {
    pid: u32,
    comm: [u8; 16],
    comm_len: u8,
    protocol: crate::schema::Protocol,
    ip_version: u8,
    src: Option<crate::schema::Endpoint>,
    dst: Option<crate::schema::Endpoint>,
}

impl EndpointsKey {
    #[inline]
    fn of(ev: &NetEvent) -> EndpointsKey {
        let raw = ev.comm();
        let mut comm = [0; 16];
        comm[..raw.len()].copy_from_slice(raw);
        EndpointsKey {
            pid: ev.pid,
            comm,
            comm_len: raw.len() as u8,
            protocol: ev.protocol,
            ip_version: ev.ip_version,
            src: ev.source(),
            dst: ev.destination(),
        }
    }
}

/// The text of the fields PID through destination port of the last few
/// keys: formatting them was half of a row's cost (issue #20), and a
/// busy host's rows mostly come from a few sockets.
const ENDPOINTS_CACHED: usize = 4;

/// Formats rows; holds the per-run caches.
pub struct RowFormatter {
    time: RowTimeFormatter,
    scratch: Vec<u8>,
    v6: Ipv6Cache,
    endpoints: Vec<(EndpointsKey, Vec<u8>)>,
    /// The entry of `endpoints` the next miss replaces (round robin).
    endpoints_next: usize,
    /// The last flags and their text.
    flags: Option<(u32, Vec<u8>)>,
    /// The optional columns, when `--columns` asked for any.
    attribution: Option<Attribution>,
}

impl Default for RowFormatter {
    fn default() -> Self {
        Self::new()
    }
}

impl RowFormatter {
    pub fn new() -> Self {
        RowFormatter {
            time: RowTimeFormatter::default(),
            scratch: Vec::with_capacity(64),
            v6: Ipv6Cache::default(),
            endpoints: Vec::with_capacity(ENDPOINTS_CACHED),
            endpoints_next: 0,
            flags: None,
            attribution: None,
        }
    }

    /// Rows with these optional columns after the 14 (none: the default
    /// rows).
    pub fn with_columns(columns: Columns) -> Self {
        let mut f = Self::new();
        if !columns.is_empty() {
            f.attribution = Some(Attribution::new(columns));
        }
        f
    }

    /// The optional columns these rows carry.
    pub fn columns(&self) -> Columns {
        self.attribution
            .as_ref()
            .map(Attribution::columns)
            .unwrap_or_default()
    }

    fn write_addr(&mut self, out: &mut Vec<u8>, addr: IpAddr) {
        match addr {
            IpAddr::V4(v4) => write_ipv4(out, v4),
            IpAddr::V6(v6) => self.v6.write(out, v6),
        }
    }

    /// The fields PID through destination port, without the commas
    /// around them.
    fn write_endpoints(&mut self, out: &mut Vec<u8>, ev: &NetEvent) {
        write_u64(out, u64::from(ev.pid));
        out.push(b',');
        let comm = comm_text(ev.comm(), &mut self.scratch);
        write_csv_field(out, comm);
        out.push(b',');
        out.extend_from_slice(ev.protocol.as_str().as_bytes());
        out.push(b',');
        out.push(b'0' + ev.ip_version);
        out.push(b',');
        let (src, dst) = (ev.source(), ev.destination());
        if let Some(src) = src {
            self.write_addr(out, src.addr);
        }
        out.push(b',');
        if let Some(dst) = dst {
            self.write_addr(out, dst.addr);
        }
        out.push(b',');
        if let Some(src) = src {
            write_u64(out, u64::from(src.port));
        }
        out.push(b',');
        if let Some(dst) = dst {
            write_u64(out, u64::from(dst.port));
        }
    }

    /// Appends one row, newline included.
    /// `clock` turns the event's monotonic times into wall time.
    pub fn write_row(&mut self, out: &mut Vec<u8>, ev: &NetEvent, clock: &WallClock) {
        // Timestamp: the start; the finish when the start is unknown.
        let start = ev.start_ns.unwrap_or(ev.end_ns);
        self.time.write(out, clock.to_epoch_ns(start));
        out.push(b',');
        let key = EndpointsKey::of(ev);
        if let Some((_, text)) = self.endpoints.iter().find(|(k, _)| *k == key) {
            out.extend_from_slice(text);
        } else {
            let mut text = Vec::with_capacity(96);
            self.write_endpoints(&mut text, ev);
            out.extend_from_slice(&text);
            if self.endpoints.len() < ENDPOINTS_CACHED {
                self.endpoints.push((key, text));
            } else {
                self.endpoints[self.endpoints_next] = (key, text);
                self.endpoints_next = (self.endpoints_next + 1) % ENDPOINTS_CACHED;
            }
        }
        out.push(b',');
        write_u64(out, ev.ret.max(0) as u64);
        out.push(b',');
        out.extend_from_slice(ev.direction.as_str().as_bytes());
        out.push(b',');
        if let Some(latency) = ev.latency_ns() {
            write_u64(out, latency);
        }
        out.push(b',');
        if ev.ret < 0 {
            write_errno(out, -ev.ret);
        }
        out.push(b',');
        if let Some(flags) = ev.msg_flags {
            match &self.flags {
                Some((f, text)) if *f == flags => out.extend_from_slice(text),
                _ => {
                    let mut text = Vec::new();
                    write_msg_flags(&mut text, flags);
                    out.extend_from_slice(&text);
                    self.flags = Some((flags, text));
                }
            }
        }
        if let Some(a) = self.attribution.as_mut() {
            // Appends `,value` for each chosen column (RFC 4180 quoting).
            for (_, text) in a.values(ev.attr.as_ref()) {
                out.push(b',');
                write_csv_field(out, text.as_bytes());
            }
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::tests::{bytes, raw_event};

    fn row(raw: &crate::bpf::types::nw_event) -> String {
        let ev = NetEvent::try_from(bytes(raw).as_slice()).unwrap();
        let mut f = RowFormatter::new();
        let mut out = Vec::new();
        f.write_row(
            &mut out,
            &ev,
            &WallClock::with_offset(1_795_669_694_000_000_000),
        );
        String::from_utf8(out).unwrap()
    }

    fn set_comm(raw: &mut crate::bpf::types::nw_event, comm: &[u8]) {
        raw.comm = [0; 16];
        for (dst, src) in raw.comm.iter_mut().zip(comm) {
            *dst = *src as i8;
        }
    }

    #[test]
    fn header_is_exact() {
        assert_eq!(
            HEADER,
            "Timestamp,PID,Command,Protocol,IP Version,Source Address,Destination Address,\
             Source Port,Destination Port,Size,Direction,Latency,Error,MSG Flags\n"
        );
    }

    #[test]
    fn a_full_send_row() {
        assert_eq!(
            row(&raw_event()),
            "2026-11-26 05:08:14.000001,1234,curl,TCP,4,127.0.0.1,10.1.2.3,40000,8080,64,send,2500,,MSG_NOSIGNAL\n"
        );
    }

    #[test]
    fn a_failed_receive_with_unknown_start() {
        let mut raw = raw_event();
        raw.direction = 1;
        raw.ret = -libc::ECONNRESET;
        raw.info = 0x04; // peer known, no start, no flags
        assert_eq!(
            row(&raw),
            "2026-11-26 05:08:14.000003,1234,curl,TCP,4,10.1.2.3,127.0.0.1,8080,40000,0,receive,,ECONNRESET,\n"
        );
    }

    #[test]
    fn unknown_peer_leaves_its_fields_empty() {
        let mut raw = raw_event();
        raw.protocol = libc::IPPROTO_UDP as u8;
        raw.direction = 1;
        raw.info = 0x01 | 0x02;
        raw.msg_flags = 0;
        assert_eq!(
            row(&raw),
            "2026-11-26 05:08:14.000001,1234,curl,UDP,4,,127.0.0.1,,40000,64,receive,2500,,\n"
        );
    }

    #[test]
    fn comm_with_comma_and_quote_is_quoted() {
        let mut raw = raw_event();
        set_comm(&mut raw, b"a,\"b");
        let line = row(&raw);
        assert!(line.contains(",1234,\"a,\"\"b\",TCP,"), "{line}");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let rec = reader.records().next().unwrap().unwrap();
        assert_eq!(&rec[2], "a,\"b");
        assert_eq!(rec.len(), 14);
    }

    #[test]
    fn non_utf8_comm_is_escaped() {
        let mut raw = raw_event();
        set_comm(&mut raw, b"ab\xffc\xe2\x82");
        assert!(row(&raw).contains(",1234,ab\\xffc\\xe2\\x82,TCP,"));
        set_comm(&mut raw, "żółw".as_bytes());
        assert!(row(&raw).contains(",1234,żółw,TCP,"));
    }

    /// Undoes the comm escaping: `\xNN` back to the byte.
    fn unescape(text: &str) -> Vec<u8> {
        let b = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
                out.push(u8::from_str_radix(&text[i + 2..i + 4], 16).unwrap());
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn any_comm_bytes_give_a_valid_row_that_reads_back() {
        let mut rng = crate::capture::event::tests::Rng(0x1234_5678_9abc_def1);
        // Bytes that stress quoting and escaping, and some plain ones.
        let alphabet = b",\"\r\n a\x80\xc3\xa9\xe2\x82\xac\xff\x01|;'";
        for _ in 0..20_000 {
            let len = 1 + (rng.next_u64() % 15) as usize;
            let comm: Vec<u8> = (0..len)
                .map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize])
                .collect();
            let mut raw = raw_event();
            set_comm(&mut raw, &comm);
            let line = row(&raw);
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.as_bytes());
            let rec = reader.records().next().unwrap().unwrap();
            assert_eq!(rec.len(), 14, "{line:?}");
            assert_eq!(unescape(&rec[2]), comm, "{line:?}");
            assert_eq!(&rec[1], "1234");
            assert!(reader.records().next().is_none(), "one row only: {line:?}");
        }
    }

    #[test]
    fn cached_fields_follow_every_rows_own_event() {
        // Events that differ in one or more of the cached fields' inputs;
        // every pair is written a, b, a, b through one formatter, so that
        // a key missing an input would give b the text of a (and a the
        // text of b), and more keys than the cache holds replace entries.
        let mut events = Vec::new();
        for bits in 0..32u32 {
            let mut ev = crate::capture::event::tests::sample_event();
            ev.pid = 1000 + (bits & 1);
            ev.set_comm(if bits & 2 == 0 { b"app" } else { b"apq" });
            ev.local.port = 40000 + ((bits >> 2) & 1) as u16;
            if bits & 8 != 0 {
                ev.direction = crate::schema::Direction::Receive;
            }
            if bits & 16 != 0
                && let Some(peer) = ev.peer.as_mut()
            {
                peer.addr = "10.1.2.4".parse().unwrap();
            }
            ev.msg_flags = [Some(0x4000), Some(0x40), None][(bits % 3) as usize];
            events.push(ev);
        }
        let mut f = RowFormatter::new();
        let clock = WallClock::with_offset(0);
        for a in &events {
            for b in &events {
                for ev in [a, b, a, b] {
                    let mut out = Vec::new();
                    f.write_row(&mut out, ev, &clock);
                    let mut reader = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(out.as_slice());
                    let rec = reader.records().next().unwrap().unwrap();
                    let (src, dst) = (ev.source().unwrap(), ev.destination().unwrap());
                    assert_eq!(&rec[1], ev.pid.to_string());
                    assert_eq!(rec[2].as_bytes(), ev.comm());
                    assert_eq!(&rec[5], src.addr.to_string());
                    assert_eq!(&rec[6], dst.addr.to_string());
                    assert_eq!(&rec[7], src.port.to_string());
                    assert_eq!(&rec[8], dst.port.to_string());
                    assert_eq!(&rec[10], ev.direction.as_str());
                    let mut flags = Vec::new();
                    if let Some(fl) = ev.msg_flags {
                        write_msg_flags(&mut flags, fl);
                    }
                    assert_eq!(rec[13].as_bytes(), flags.as_slice());
                }
            }
        }
    }

    #[test]
    fn addresses_match_std_formatting() {
        let mut f = RowFormatter::new();
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            let v4 = Ipv4Addr::new(a, 255 - a, a / 2, 7);
            let mut out = Vec::new();
            f.write_addr(&mut out, IpAddr::V4(v4));
            assert_eq!(String::from_utf8(out).unwrap(), v4.to_string());
        }
        for text in [
            "::1",
            "2001:db8::1",
            "fe80::1:2",
            "::",
            "1:2:3:4:5:6:7:8",
            "::1",
        ] {
            let v6: Ipv6Addr = text.parse().unwrap();
            let mut out = Vec::new();
            f.write_addr(&mut out, IpAddr::V6(v6));
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn csv_quoting() {
        let q = |s: &[u8]| {
            let mut out = Vec::new();
            write_csv_field(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(q(b"plain"), "plain");
        assert_eq!(q(b"a,b"), "\"a,b\"");
        assert_eq!(q(b"say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(q(b"two\nlines"), "\"two\nlines\"");
        assert_eq!(q(b"cr\r"), "\"cr\r\"");
        assert_eq!(q(b""), "");
    }
}
