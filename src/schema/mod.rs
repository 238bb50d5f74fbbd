//! The row schema, shared by the writer (`output::row`), the reader
//! (`input`) and the analysis: the header, the column positions and the
//! typed values of the enumerated columns. See `semantics.md`.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::names::{errno_name, write_msg_flags};

pub mod columns;
pub mod files;
pub mod manifest;

pub use files::Compression;

/// The header row, newline included, exactly as every file starts.
pub const HEADER: &str = "Timestamp,PID,Command,Protocol,IP Version,Source Address,\
Destination Address,Source Port,Destination Port,Size,Direction,Latency,Error,MSG Flags\n";

/// The column names, in file order.
pub const COLUMNS: [&str; 14] = [
    "Timestamp",
    "PID",
    "Command",
    "Protocol",
    "IP Version",
    "Source Address",
    "Destination Address",
    "Source Port",
    "Destination Port",
    "Size",
    "Direction",
    "Latency",
    "Error",
    "MSG Flags",
];

pub const NUM_COLUMNS: usize = COLUMNS.len();

pub const COL_TIMESTAMP: usize = 0;
pub const COL_PID: usize = 1;
pub const COL_COMMAND: usize = 2;
pub const COL_PROTOCOL: usize = 3;
pub const COL_IP_VERSION: usize = 4;
pub const COL_SRC_ADDR: usize = 5;
pub const COL_DST_ADDR: usize = 6;
pub const COL_SRC_PORT: usize = 7;
pub const COL_DST_PORT: usize = 8;
pub const COL_SIZE: usize = 9;
pub const COL_DIRECTION: usize = 10;
pub const COL_LATENCY: usize = 11;
pub const COL_ERROR: usize = 12;
pub const COL_MSG_FLAGS: usize = 13;

/// The clap value names (`tcp`, `udp`; `send`, `receive`) are the filter
/// flags' words, so the flags and the rows share one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    pub fn parse(text: &[u8]) -> Option<Self> {
        match text {
            b"TCP" => Some(Protocol::Tcp),
            b"UDP" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Direction {
    Send,
    Receive,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Send, Direction::Receive];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Send => "send",
            Direction::Receive => "receive",
        }
    }

    pub fn parse(text: &[u8]) -> Option<Self> {
        match text {
            b"send" => Some(Direction::Send),
            b"receive" => Some(Direction::Receive),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// An address and port, as in the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// A thread's comm as the rows write it: UTF-8, with every byte that is
/// not UTF-8 written as `\xNN` (at most 15 raw bytes, so at most 60 bytes
/// of text). Fixed size and `Copy`, so that it can sit in hash keys
/// without an allocation per row.
#[derive(Clone, Copy, Eq, PartialOrd, Ord)]
pub struct Comm {
    len: u8,
    bytes: [u8; Comm::CAP],
}

impl Comm {
    pub const CAP: usize = 62;

    /// From the text of the `Command` column (already escaped). Longer
    /// text than any comm can be is cut, at a character boundary.
    pub fn from_text(text: &[u8]) -> Comm {
        let mut c = Comm {
            len: 0,
            bytes: [0; Comm::CAP],
        };
        let mut n = text.len().min(Comm::CAP);
        if let Ok(s) = std::str::from_utf8(text) {
            while !s.is_char_boundary(n) {
                n -= 1;
            }
        }
        c.bytes[..n].copy_from_slice(&text[..n]);
        c.len = n as u8;
        c
    }

    /// From the kernel's raw comm bytes, escaped as the writer escapes
    /// them (valid UTF-8 kept, every other byte `\xNN`).
    pub fn from_raw(raw: &[u8]) -> Comm {
        if raw.is_ascii() {
            return Comm::from_text(raw);
        }
        let mut text = Vec::with_capacity(64);
        for chunk in raw.utf8_chunks() {
            text.extend_from_slice(chunk.valid().as_bytes());
            for b in chunk.invalid() {
                text.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
        }
        Comm::from_text(&text)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The text; a comm built from bytes that are not UTF-8 shows them
    /// replaced (the writer never produces such a comm).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

/// Compares the text only, not the unused (always zero) tail of the array:
/// comms are short, and this runs in several tables on every op.
impl PartialEq for Comm {
    fn eq(&self, other: &Comm) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// Hashes the text only, like `eq`.
impl std::hash::Hash for Comm {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The errno of an `Error` field: a Linux name, or `E<number>`.
pub fn parse_errno(text: &[u8]) -> Option<i32> {
    static BY_NAME: OnceLock<std::collections::HashMap<&'static str, i32>> = OnceLock::new();
    let map = BY_NAME.get_or_init(|| {
        let mut m = std::collections::HashMap::new();
        for n in 1..4096 {
            if let Some(name) = errno_name(n) {
                m.entry(name).or_insert(n);
            }
        }
        m
    });
    let s = std::str::from_utf8(text).ok()?;
    if let Some(&n) = map.get(s) {
        return Some(n);
    }
    let digits = s.strip_prefix('E')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n > 0)
}

/// The name the rows give an errno.
pub fn errno_text(errno: i32) -> String {
    errno_name(errno)
        .map(str::to_string)
        .unwrap_or_else(|| format!("E{errno}"))
}

/// Errors that mean "try again" (the operation may succeed if repeated:
/// no data yet, interrupted, out of buffers for now), as opposed to hard
/// errors that end or break the exchange (ECONNRESET, EPIPE, ETIMEDOUT,
/// ...).
pub fn is_retry_errno(errno: i32) -> bool {
    matches!(
        errno,
        libc::EAGAIN        // also EWOULDBLOCK
            | libc::EINTR
            | libc::EINPROGRESS
            | libc::EALREADY
            | libc::ENOBUFS
            | 512 // ERESTARTSYS
            | 513 // ERESTARTNOINTR
            | 514 // ERESTARTNOHAND
            | 516 // ERESTART_RESTARTBLOCK
    )
}

/// The name of one MSG_* flag bit (`MSG_PEEK`), or its hex value.
pub fn msg_flag_name(bit: u32) -> String {
    let mut out = Vec::new();
    write_msg_flags(&mut out, bit);
    String::from_utf8(out).expect("ASCII")
}

/// `MSG_A|MSG_B` for a set of flags; empty for 0.
pub fn msg_flags_text(flags: u32) -> String {
    let mut out = Vec::new();
    write_msg_flags(&mut out, flags);
    String::from_utf8(out).expect("ASCII")
}

/// The flags of a `MSG Flags` field: names joined by `|`, unknown bits as
/// hex. `None` when a part is neither.
pub fn parse_msg_flags(text: &[u8]) -> Option<u32> {
    static BY_NAME: OnceLock<Vec<(String, u32)>> = OnceLock::new();
    let names = BY_NAME.get_or_init(|| {
        (0..32)
            .map(|b| 1u32 << b)
            .map(|bit| (msg_flag_name(bit), bit))
            .filter(|(n, _)| n.starts_with("MSG_"))
            .collect()
    });
    let mut flags = 0u32;
    for part in text.split(|&b| b == b'|') {
        if let Some(hex) = part.strip_prefix(b"0x") {
            let s = std::str::from_utf8(hex).ok()?;
            flags |= u32::from_str_radix(s, 16).ok()?;
        } else {
            let (_, bit) = names.iter().find(|(n, _)| n.as_bytes() == part)?;
            flags |= bit;
        }
    }
    Some(flags)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses the row's `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) into nanoseconds
/// since the epoch. Fixed format, by hand: this runs for every row.
pub fn parse_timestamp_ns(b: &[u8]) -> Option<i64> {
    if b.len() != 26
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
    {
        return None;
    }
    #[inline]
    fn num(b: &[u8]) -> Option<u32> {
        let mut v = 0u32;
        for &c in b {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u32::from(d);
        }
        Some(v)
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hh, mm, ss, us) = (
        num(&b[11..13])?,
        num(&b[14..16])?,
        num(&b[17..19])?,
        num(&b[20..26])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss);
    Some(secs * 1_000_000_000 + i64::from(us) * 1000)
}

/// Formats nanoseconds since the epoch as the row does
/// (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC).
pub fn format_timestamp_ns(ns: i64) -> String {
    let mut out = Vec::with_capacity(26);
    crate::timefmt::RowTimeFormatter::default().write(&mut out, ns);
    String::from_utf8(out).expect("ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_columns_agree() {
        assert_eq!(HEADER.trim_end(), COLUMNS.join(","));
        assert_eq!(COLUMNS[COL_MSG_FLAGS], "MSG Flags");
        assert_eq!(COLUMNS[COL_DIRECTION], "Direction");
    }

    #[test]
    fn timestamps_round_trip() {
        for ns in [0i64, 1_795_669_694_000_001_000, 951_782_400_123_456_000] {
            let text = format_timestamp_ns(ns);
            assert_eq!(parse_timestamp_ns(text.as_bytes()), Some(ns), "{text}");
        }
        assert_eq!(
            parse_timestamp_ns(b"2026-11-26 05:08:14.000001"),
            Some(1_795_669_694_000_001_000)
        );
        for bad in [
            &b"2026-11-26 05:08:14"[..],
            b"2026-13-26 05:08:14.000001",
            b"2026-11-26T05:08:14.000001",
            b"2026-11-26 05:08:1x.000001",
        ] {
            assert_eq!(parse_timestamp_ns(bad), None);
        }
    }

    #[test]
    fn errnos_and_flags_parse_back() {
        assert_eq!(parse_errno(b"EAGAIN"), Some(11));
        assert_eq!(parse_errno(b"ERESTARTSYS"), Some(512));
        assert_eq!(parse_errno(b"ECONNRESET"), Some(104));
        assert_eq!(parse_errno(b"E999"), Some(999));
        assert_eq!(parse_errno(b"E"), None);
        assert_eq!(parse_errno(b"boom"), None);
        for n in 1..600 {
            assert_eq!(parse_errno(errno_text(n).as_bytes()), Some(n), "{n}");
        }
        assert!(is_retry_errno(11) && is_retry_errno(512) && is_retry_errno(4));
        assert!(!is_retry_errno(104) && !is_retry_errno(32) && !is_retry_errno(110));
        for flags in [
            0x1u32,
            0x40,
            0x4000 | 0x8000,
            0x20_0000,
            0x4000 | 0x20_0000,
            0xffff_ffff,
        ] {
            let text = msg_flags_text(flags);
            assert_eq!(parse_msg_flags(text.as_bytes()), Some(flags), "{text}");
        }
        assert_eq!(parse_msg_flags(b"MSG_NOPE"), None);
    }

    #[test]
    fn comm_escapes_like_the_writer() {
        assert_eq!(Comm::from_raw(b"ab\xffc").as_bytes(), b"ab\\xffc");
        assert_eq!(Comm::from_raw("żółw".as_bytes()).as_str(), "żółw");
        let long = [0xffu8; 15];
        assert_eq!(Comm::from_raw(&long).as_bytes().len(), 60);
    }
}
