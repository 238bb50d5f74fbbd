//! A streaming reader of `nw_*.csv` into typed [`Row`]s: one reused
//! `ByteRecord`, the fixed-format timestamp parsed by hand, no allocation
//! per row. Malformed rows, a missing header and a file cut mid-row are
//! counted with their line; nothing here panics on bad input.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use csv::ByteRecord;

use super::discover::Compression;
use crate::analysis::Op;
use crate::schema::{self, Comm, Direction, Endpoint, Protocol};

/// One row, typed, in the file's own orientation (source → destination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub ts_ns: i64,
    pub pid: u32,
    pub comm: Comm,
    pub protocol: Protocol,
    pub ip_version: u8,
    pub source: Option<Endpoint>,
    pub destination: Option<Endpoint>,
    pub size: u64,
    pub direction: Direction,
    pub latency_ns: Option<u64>,
    pub errno: Option<i32>,
    pub msg_flags: Option<u32>,
}

impl Row {
    /// The local end: the source of a send, the destination of a receive.
    pub fn local(&self) -> Option<Endpoint> {
        match self.direction {
            Direction::Send => self.source,
            Direction::Receive => self.destination,
        }
    }

    pub fn remote(&self) -> Option<Endpoint> {
        match self.direction {
            Direction::Send => self.destination,
            Direction::Receive => self.source,
        }
    }

    /// The [`Op`] (machine 0), or `None` when the local end is missing
    /// (a row the writer never produces; the reader counts it as
    /// malformed).
    pub fn to_op(&self) -> Option<Op> {
        Some(Op {
            machine: 0,
            ts_ns: self.ts_ns,
            pid: self.pid,
            comm: self.comm,
            protocol: self.protocol,
            ip_version: self.ip_version,
            local: self.local()?,
            remote: self.remote(),
            size: self.size,
            direction: self.direction,
            latency_ns: self.latency_ns,
            errno: self.errno,
            msg_flags: self.msg_flags,
        })
    }
}

/// A row the reader has already checked has a local end.
impl From<&Row> for Op {
    fn from(row: &Row) -> Op {
        row.to_op().expect("rows from the reader have a local end")
    }
}

/// A problem at a line of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub message: String,
}

/// What reading one file found besides its rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub rows: u64,
    pub bytes: u64,
    pub malformed: u64,
    pub missing_header: bool,
    /// The file ends inside a row (the partial row is not counted).
    pub cut_mid_row: bool,
    /// The file could not be read at all, or reading stopped early.
    pub read_error: Option<String>,
    /// The first few problems, with their lines.
    pub problems: Vec<Problem>,
}

const MAX_PROBLEMS_KEPT: usize = 20;

impl FileStats {
    fn problem(&mut self, line: u64, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS_KEPT {
            self.problems.push(Problem {
                line,
                message: message.into(),
            });
        }
    }
}

#[inline]
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

#[inline]
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for part in b.split(|&c| c == b'.') {
        if i == 4 || part.is_empty() || part.len() > 3 {
            return None;
        }
        let v = parse_u64(part)?;
        octets[i] = u8::try_from(v).ok()?;
        i += 1;
    }
    (i == 4).then(|| Ipv4Addr::from(octets))
}

#[inline]
fn parse_addr(b: &[u8], version: u8) -> Option<IpAddr> {
    if version == 4 {
        parse_ipv4(b).map(IpAddr::V4)
    } else {
        std::str::from_utf8(b)
            .ok()?
            .parse::<Ipv6Addr>()
            .ok()
            .map(IpAddr::V6)
    }
}

fn parse_endpoint(
    addr: &[u8],
    port: &[u8],
    version: u8,
    what: &str,
) -> Result<Option<Endpoint>, String> {
    match (addr.is_empty(), port.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => {
            let a = parse_addr(addr, version)
                .ok_or_else(|| format!("bad {what} address {:?}", lossy(addr)))?;
            let p = parse_u64(port)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("bad {what} port {:?}", lossy(port)))?;
            Ok(Some(Endpoint { addr: a, port: p }))
        }
        _ => Err(format!(
            "{what} address and port must both be set or both empty"
        )),
    }
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 40 {
        let mut n = 40;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        format!("{}...", &s[..n])
    } else {
        s.into_owned()
    }
}

/// Parses one record. The message says which field is wrong.
pub fn parse_record(r: &ByteRecord) -> Result<Row, String> {
    use schema::*;
    if r.len() != NUM_COLUMNS {
        return Err(format!("{} fields, expected {NUM_COLUMNS}", r.len()));
    }
    let f = |i: usize| &r[i];
    let ts_ns = parse_timestamp_ns(f(COL_TIMESTAMP))
        .ok_or_else(|| format!("bad Timestamp {:?}", lossy(f(COL_TIMESTAMP))))?;
    let pid = parse_u64(f(COL_PID))
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| format!("bad PID {:?}", lossy(f(COL_PID))))?;
    let comm = Comm::from_text(f(COL_COMMAND));
    let protocol = Protocol::parse(f(COL_PROTOCOL))
        .ok_or_else(|| format!("bad Protocol {:?}", lossy(f(COL_PROTOCOL))))?;
    let ip_version = match f(COL_IP_VERSION) {
        b"4" => 4,
        b"6" => 6,
        other => return Err(format!("bad IP Version {:?}", lossy(other))),
    };
    let source = parse_endpoint(f(COL_SRC_ADDR), f(COL_SRC_PORT), ip_version, "Source")?;
    let destination = parse_endpoint(f(COL_DST_ADDR), f(COL_DST_PORT), ip_version, "Destination")?;
    let size =
        parse_u64(f(COL_SIZE)).ok_or_else(|| format!("bad Size {:?}", lossy(f(COL_SIZE))))?;
    let direction = Direction::parse(f(COL_DIRECTION))
        .ok_or_else(|| format!("bad Direction {:?}", lossy(f(COL_DIRECTION))))?;
    let latency_ns = match f(COL_LATENCY) {
        b"" => None,
        t => Some(parse_u64(t).ok_or_else(|| format!("bad Latency {:?}", lossy(t)))?),
    };
    let errno = match f(COL_ERROR) {
        b"" => None,
        t => Some(parse_errno(t).ok_or_else(|| format!("bad Error {:?}", lossy(t)))?),
    };
    let msg_flags = match f(COL_MSG_FLAGS) {
        b"" => None,
        t => Some(parse_msg_flags(t).ok_or_else(|| format!("bad MSG Flags {:?}", lossy(t)))?),
    };
    let row = Row {
        ts_ns,
        pid,
        comm,
        protocol,
        ip_version,
        source,
        destination,
        size,
        direction,
        latency_ns,
        errno,
        msg_flags,
    };
    if row.local().is_none() {
        return Err(format!(
            "the local end ({}) is empty",
            if direction == Direction::Send {
                "Source"
            } else {
                "Destination"
            }
        ));
    }
    Ok(row)
}

fn open(path: &Path, compression: Compression) -> io::Result<(Box<dyn Read + Send>, u64, bool)> {
    match compression {
        Compression::None => {
            let mut file = File::open(path)?;
            let len = file.metadata()?.len();
            // Does the file end with a whole row?
            let mut ends_with_newline = true;
            if len > 0 {
                file.seek(SeekFrom::Start(len - 1))?;
                let mut last = [0u8];
                file.read_exact(&mut last)?;
                ends_with_newline = last[0] == b'\n';
                file.seek(SeekFrom::Start(0))?;
            }
            Ok((Box::new(file), len, ends_with_newline))
        }
        // The place to add decoders when record starts compressing.
        Compression::Gzip | Compression::Zstd => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "compressed files are not supported yet",
        )),
    }
}

/// Reads a file, calling `each(row, line)` for every valid row.
pub fn read_file(
    path: &Path,
    compression: Compression,
    mut each: impl FnMut(&Row, u64),
) -> FileStats {
    let mut stats = FileStats::default();
    let (reader, len, ends_with_newline) = match open(path, compression) {
        Ok(x) => x,
        Err(e) => {
            stats.read_error = Some(e.to_string());
            return stats;
        }
    };
    stats.bytes = len;
    read_from(reader, len, ends_with_newline, &mut stats, &mut each);
    stats
}

/// The timestamp of the first valid row among the first few records, for
/// times relative to the start of a recording.
pub fn first_timestamp(path: &Path, compression: Compression) -> Option<i64> {
    let (reader, _, _) = open(path, compression).ok()?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut rec = ByteRecord::new();
    for _ in 0..16 {
        if !rdr.read_byte_record(&mut rec).ok()? {
            return None;
        }
        if let Ok(row) = parse_record(&rec) {
            return Some(row.ts_ns);
        }
    }
    None
}

/// Reads rows from any reader; `len` and `ends_with_newline` describe the
/// whole input (for cut-row detection).
pub fn read_from(
    reader: impl Read,
    len: u64,
    ends_with_newline: bool,
    stats: &mut FileStats,
    each: &mut impl FnMut(&Row, u64),
) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 18)
        .from_reader(reader);
    let mut rec = ByteRecord::new();
    let mut first = true;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                // Only I/O errors reach here in flexible mode (and UTF-8
                // errors, which ByteRecords do not raise).
                let line = e.position().map_or(0, |p| p.line());
                stats.read_error = Some(format!("line {line}: {e}"));
                stats.problem(line, e.to_string());
                break;
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        if !ends_with_newline && rdr.position().byte() >= len {
            stats.cut_mid_row = true;
            stats.problem(line, "the file ends inside this row (cut mid-row)");
            break;
        }
        if first {
            first = false;
            if rec.iter().eq(schema::COLUMNS.iter().map(|c| c.as_bytes())) {
                continue;
            }
            stats.missing_header = true;
            stats.problem(line, "missing or wrong header");
            // The data may still be good: read this line as a row, and
            // count it as malformed only when it is not one.
        }
        match parse_record(&rec) {
            Ok(row) => {
                stats.rows += 1;
                each(&row, line);
            }
            Err(msg) => {
                // A wrong header was counted once already.
                if !(stats.missing_header && line == 1) {
                    stats.malformed += 1;
                    stats.problem(line, msg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<(Row, u64)>, FileStats) {
        let mut rows = Vec::new();
        let mut stats = FileStats::default();
        read_from(
            text.as_bytes(),
            text.len() as u64,
            text.is_empty() || text.ends_with('\n'),
            &mut stats,
            &mut |r: &Row, l| rows.push((*r, l)),
        );
        (rows, stats)
    }

    const ROW: &str = "2026-11-26 05:08:14.000001,1234,curl,TCP,4,127.0.0.1,10.1.2.3,40000,8080,64,send,2500,,MSG_NOSIGNAL\n";

    #[test]
    fn reads_a_row_and_orients_it() {
        let (rows, stats) = read(&format!("{}{ROW}", schema::HEADER));
        assert_eq!(stats.malformed, 0);
        assert!(!stats.missing_header);
        let (row, line) = rows[0];
        assert_eq!(line, 2);
        assert_eq!(row.pid, 1234);
        assert_eq!(row.msg_flags, Some(0x4000));
        let op = Op::from(&row);
        assert_eq!(op.local.to_string(), "127.0.0.1:40000");
        assert_eq!(op.remote.unwrap().to_string(), "10.1.2.3:8080");
        assert_eq!(op.ts_ns, 1_795_669_694_000_001_000);
    }

    #[test]
    fn bad_rows_are_counted_with_their_lines() {
        let text = format!(
            "{}{ROW}{}\n{ROW}2026-11-26 05:08:14.000001,x,curl,TCP,4,,,,,0,send,,,\n\"unterminated,{ROW}",
            schema::HEADER,
            "only,three,fields"
        );
        let (rows, stats) = read(&text);
        assert_eq!(rows.len(), 2);
        assert_eq!(stats.malformed, 3, "{:?}", stats.problems);
        assert_eq!(stats.problems[0].line, 3);
        assert!(stats.problems[0].message.contains("3 fields"));
        assert_eq!(stats.problems[1].line, 5);
        assert!(stats.problems[1].message.contains("PID"));
        // The unterminated quote swallows the rest: one bad record.
        assert_eq!(stats.problems[2].line, 6);
        assert!(!stats.cut_mid_row);
    }

    #[test]
    fn missing_header_and_cut_row() {
        let text = format!("{ROW}{}", &ROW[..50]);
        let (rows, stats) = read(&text);
        assert!(stats.missing_header);
        assert!(stats.cut_mid_row);
        assert_eq!(rows.len(), 1);
        assert_eq!(stats.malformed, 0);
        assert_eq!(stats.problems.last().unwrap().line, 2);

        let (rows, stats) = read("");
        assert!(rows.is_empty() && !stats.missing_header && !stats.cut_mid_row);
    }

    #[test]
    fn unknown_peer_and_ipv6() {
        let text = "2026-11-26 05:08:14.000001,7,a,UDP,4,,127.0.0.1,,40000,64,receive,,,\n\
                    2026-11-26 05:08:14.000001,7,a,UDP,6,::1,2001:db8::1,1,2,0,send,5,EPIPE,MSG_DONTWAIT|0x200000\n";
        let (rows, stats) = read(text);
        assert!(stats.missing_header);
        assert_eq!(rows.len(), 2, "{:?}", stats.problems);
        let op = Op::from(&rows[0].0);
        assert_eq!(op.remote, None);
        assert_eq!(op.local.port, 40000);
        assert_eq!(rows[1].0.errno, Some(32));
        assert_eq!(rows[1].0.msg_flags, Some(0x40 | 0x20_0000));
    }
}
