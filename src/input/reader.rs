//! A streaming reader of `nw_*.csv` into typed [`Row`]s: one reused
//! `ByteRecord`, the fixed-format timestamp parsed by hand, no allocation
//! per row. Malformed rows, a missing header and a file cut mid-row are
//! counted with their line; nothing here panics on bad input.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use csv::ByteRecord;

use rustc_hash::FxHashMap;

use super::discover::Compression;
use crate::analysis::{Op, OpAttr, Sym};
use crate::schema::columns::Column;
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
    /// The optional columns the file has (all `None` without them).
    pub attr: OpAttr,
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
            attr: self.attr,
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
    /// The optional columns (`record --columns`) the header names, in
    /// file order.
    pub extra_columns: Vec<Column>,
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

/// Which columns a file has: the 14 standard ones, then any subset of the
/// optional ones in their fixed order (see [`Column`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Where each optional column is, by `Column as usize`.
    extra: [Option<u8>; Column::COUNT],
    n_extra: u8,
}

impl Layout {
    /// The 14 standard columns only.
    pub const STANDARD: Layout = Layout {
        extra: [None; Column::COUNT],
        n_extra: 0,
    };

    /// Fields in a row of this layout.
    pub fn fields(&self) -> usize {
        schema::NUM_COLUMNS + usize::from(self.n_extra)
    }

    pub fn columns(&self) -> Vec<Column> {
        let mut v: Vec<(u8, Column)> = Column::ALL
            .into_iter()
            .filter_map(|c| self.extra[c as usize].map(|i| (i, c)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// From a header record: `Ok(None)` when it is not a header at all
    /// (the first field is not `Timestamp`: data without a header), an
    /// error when it is a damaged or unknown one.
    pub fn from_header(r: &ByteRecord) -> Result<Option<Layout>, String> {
        if r.get(0) != Some(schema::COLUMNS[0].as_bytes()) {
            return Ok(None);
        }
        if r.len() < schema::NUM_COLUMNS
            || !r
                .iter()
                .take(schema::NUM_COLUMNS)
                .eq(schema::COLUMNS.iter().map(|c| c.as_bytes()))
        {
            return Err(format!(
                "wrong header: the first {} columns must be {}",
                schema::NUM_COLUMNS,
                schema::COLUMNS.join(",")
            ));
        }
        let mut layout = Layout::STANDARD;
        let mut last: Option<Column> = None;
        for (i, name) in r.iter().enumerate().skip(schema::NUM_COLUMNS) {
            let Some(c) = Column::from_header(name) else {
                return Err(format!(
                    "wrong header: unknown column {:?} after the {} standard ones (the optional ones are {})",
                    lossy(name),
                    schema::NUM_COLUMNS,
                    Column::ALL.map(Column::header).join(", ")
                ));
            };
            if last.is_some_and(|l| l >= c) {
                return Err(format!(
                    "wrong header: column {:?} is repeated or out of order (the order is {})",
                    c.header(),
                    Column::ALL.map(Column::header).join(", ")
                ));
            }
            last = Some(c);
            layout.extra[c as usize] = Some(i as u8);
            layout.n_extra += 1;
        }
        Ok(Some(layout))
    }
}

/// Interned texts of one file, so that the process-wide table is looked
/// up once per distinct cgroup or container per file, not per row.
#[derive(Default)]
pub struct SymCache {
    map: FxHashMap<Box<[u8]>, Sym>,
}

impl SymCache {
    fn get(&mut self, text: &[u8]) -> Sym {
        if let Some(&s) = self.map.get(text) {
            return s;
        }
        let s = Sym::intern(&String::from_utf8_lossy(text));
        // A file with an unbounded number of distinct texts should not
        // make the cache unbounded; the global table still answers.
        if self.map.len() < 4096 {
            self.map.insert(text.into(), s);
        }
        s
    }
}

fn parse_attr(r: &ByteRecord, layout: &Layout, syms: &mut SymCache) -> Result<OpAttr, String> {
    let mut a = OpAttr::default();
    if layout.n_extra == 0 {
        return Ok(a);
    }
    let field = |c: Column| layout.extra[c as usize].map(|i| &r[usize::from(i)]);
    let number = |c: Column| -> Result<Option<u64>, String> {
        match field(c) {
            None | Some(b"") => Ok(None),
            Some(t) => parse_u64(t)
                .map(Some)
                .ok_or_else(|| format!("bad {} {:?}", c.header(), lossy(t))),
        }
    };
    let small = |c: Column| -> Result<Option<u32>, String> {
        number(c)?
            .map(|v| u32::try_from(v).map_err(|_| format!("bad {} {v}", c.header())))
            .transpose()
    };
    a.tid = small(Column::Tid)?;
    a.uid = small(Column::Uid)?;
    a.netns = number(Column::Netns)?;
    a.cookie = number(Column::Cookie)?;
    a.srtt_us = small(Column::Srtt)?;
    a.cwnd = small(Column::Cwnd)?;
    a.retrans = small(Column::Retrans)?;
    a.seq = small(Column::Seq)?;
    // The recorder writes the path as /proc/PID/cgroup does (`/` is the
    // root), or id:NNN; empty when it had no cgroup for the event. Kept
    // relative to the root: the root is the empty text.
    let cgroup_field = field(Column::Cgroup);
    a.cgroup = match cgroup_field {
        None | Some(b"") => None,
        Some(t) => Some(syms.get(t.strip_prefix(b"/").unwrap_or(t))),
    };
    a.container = match field(Column::Container) {
        None => None,
        // The recorder derives the container from the cgroup: with no
        // cgroup for this event, an empty id is unknown, not the host.
        Some(b"") if cgroup_field == Some(b"") => None,
        // Recorded, and outside any container: the host.
        Some(b"") => Some(syms.get(b"")),
        Some(t) => {
            if t.len() > 64
                || !t
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            {
                return Err(format!(
                    "bad Container ID {:?} (lowercase hex expected)",
                    lossy(t)
                ));
            }
            Some(syms.get(t))
        }
    };
    Ok(a)
}

/// Parses one record of a file with the 14 standard columns only.
pub fn parse_record(r: &ByteRecord) -> Result<Row, String> {
    parse_record_with(r, &Layout::STANDARD, &mut SymCache::default())
}

/// Parses one record of a file with this layout. The message says which
/// field is wrong.
pub fn parse_record_with(
    r: &ByteRecord,
    layout: &Layout,
    syms: &mut SymCache,
) -> Result<Row, String> {
    use schema::*;
    if r.len() != layout.fields() {
        return Err(format!("{} fields, expected {}", r.len(), layout.fields()));
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
        attr: parse_attr(r, layout, syms)?,
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
        // record --compress writes each flush as one whole gzip member or
        // zstd frame, so a file holds whole rows up to its last complete
        // member; a cut one is a decoding error where it starts, which
        // the reader counts like a cut row (nothing after it is read).
        Compression::Gzip => {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            Ok((Box::new(flate2::read::MultiGzDecoder::new(file)), len, true))
        }
        Compression::Zstd => {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            Ok((Box::new(zstd::stream::read::Decoder::new(file)?), len, true))
        }
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
    let mut layout = Layout::STANDARD;
    let mut syms = SymCache::default();
    for i in 0..16 {
        if !rdr.read_byte_record(&mut rec).ok()? {
            return None;
        }
        if i == 0
            && let Ok(Some(l)) = Layout::from_header(&rec)
        {
            layout = l;
            continue;
        }
        if let Ok(row) = parse_record_with(&rec, &layout, &mut syms) {
            return Some(row.ts_ns);
        }
    }
    None
}

/// The optional columns a file's header names (empty without a header),
/// read from its first line only.
pub fn header_columns(path: &Path, compression: Compression) -> Vec<Column> {
    let Ok((reader, _, _)) = open(path, compression) else {
        return Vec::new();
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut rec = ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => match Layout::from_header(&rec) {
            Ok(Some(l)) => l.columns(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
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
    let mut layout = Layout::STANDARD;
    let mut syms = SymCache::default();
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
            match Layout::from_header(&rec) {
                Ok(Some(l)) => {
                    layout = l;
                    stats.extra_columns = l.columns();
                    continue;
                }
                Ok(None) => {
                    stats.missing_header = true;
                    stats.problem(line, "missing or wrong header");
                    // The data may still be good: read this line as a
                    // row, and count it as malformed only when it is not
                    // one.
                }
                Err(msg) => {
                    // A damaged or unknown header: say so once, and read
                    // the rows as the 14 standard columns (a row with
                    // more is malformed, each counted with its line).
                    stats.missing_header = true;
                    stats.problem(line, msg);
                    continue;
                }
            }
        }
        match parse_record_with(&rec, &layout, &mut syms) {
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

    const CID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn all_six_optional_columns() {
        let header = format!(
            "{},TID,UID,Cgroup,Container ID,Netns,Socket Cookie\n",
            schema::HEADER.trim_end()
        );
        let row = ROW.trim_end();
        let text = format!(
            "{header}\
             {row},1236,1000,system.slice/docker-{CID}.scope,{CID},4026532001,8193\n\
             {row},1234,0,/user.slice/session-2.scope,,4026531840,\n\
             {row},1234,0,id:9999,,,\n"
        );
        let (rows, stats) = read(&text);
        assert_eq!(
            (stats.malformed, stats.missing_header),
            (0, false),
            "{:?}",
            stats.problems
        );
        assert_eq!(stats.extra_columns, Column::ALL[..6]);
        assert_eq!(rows.len(), 3);
        let a = rows[0].0.attr;
        assert_eq!((a.tid, a.uid), (Some(1236), Some(1000)));
        assert_eq!(
            a.cgroup.unwrap().as_str(),
            format!("system.slice/docker-{CID}.scope")
        );
        assert_eq!(a.container_id(), Some(CID));
        assert_eq!((a.netns, a.cookie), (Some(4026532001), Some(8193)));
        // An empty Container ID is the host; an empty cookie is unknown.
        let b = rows[1].0.attr;
        assert_eq!(b.container.map(|s| s.as_str()), Some(""));
        assert_eq!(b.container_id(), None);
        assert_eq!(b.cookie, None);
        // The leading `/` is dropped, as the column is relative to the root.
        assert_eq!(b.cgroup.unwrap().as_str(), "user.slice/session-2.scope");
        assert_eq!(rows[2].0.attr.cgroup.unwrap().as_str(), "id:9999");
        assert_eq!(rows[2].0.attr.netns, None);
        // The root cgroup is `/`, kept as the empty path. An empty Cgroup
        // is unknown (the recorder had none for the event), and so is an
        // empty Container ID beside it: not the host.
        let (more, stats) = read(&format!("{header}{row},1,0,/,,,\n{row},1,0,,,,\n"));
        assert_eq!(stats.malformed, 0, "{:?}", stats.problems);
        let (root, unknown) = (more[0].0.attr, more[1].0.attr);
        assert_eq!(root.cgroup.map(|s| s.as_str()), Some(""));
        assert_eq!(root.container.map(|s| s.as_str()), Some(""));
        assert_eq!((unknown.cgroup, unknown.container), (None, None));
        // The standard fields read as without the columns, and the op
        // carries the attribution.
        let plain = read(&format!("{}{ROW}", schema::HEADER)).0[0].0;
        assert_eq!(
            Row {
                attr: OpAttr::default(),
                ..rows[0].0
            },
            plain
        );
        assert_eq!(Op::from(&rows[0].0).attr, a);
    }

    #[test]
    fn any_subset_in_order() {
        let row = ROW.trim_end();
        let text = format!(
            "{},Container ID,Socket Cookie\n{row},{CID},42\n{row},,\n",
            schema::HEADER.trim_end()
        );
        let (rows, stats) = read(&text);
        assert_eq!(stats.malformed, 0, "{:?}", stats.problems);
        assert_eq!(stats.extra_columns, [Column::Container, Column::Cookie]);
        let a = rows[0].0.attr;
        assert_eq!(
            (a.container_id(), a.cookie, a.tid, a.netns),
            (Some(CID), Some(42), None, None)
        );
        let text = format!("{},TID\n{row},77\n", schema::HEADER.trim_end());
        let (rows, stats) = read(&text);
        assert_eq!(stats.malformed, 0);
        assert_eq!(rows[0].0.attr.tid, Some(77));
        assert_eq!(rows[0].0.attr.container, None);
    }

    #[test]
    fn tcp_columns() {
        let row = ROW.trim_end();
        let h = schema::HEADER.trim_end();
        let text = format!(
            "{h},Socket Cookie,SRTT us,CWND,Retrans,TCP Seq\n\
             {row},7,52,10,3,4294967295\n\
             {row},7,52,10,3,\n\
             {row},,,,,\n"
        );
        let (rows, stats) = read(&text);
        assert_eq!(stats.malformed, 0, "{:?}", stats.problems);
        assert_eq!(
            stats.extra_columns,
            [
                Column::Cookie,
                Column::Srtt,
                Column::Cwnd,
                Column::Retrans,
                Column::Seq
            ]
        );
        let a = rows[0].0.attr;
        assert_eq!(
            (a.srtt_us, a.cwnd, a.retrans, a.seq),
            (Some(52), Some(10), Some(3), Some(u32::MAX))
        );
        // A failed operation has no seq; a UDP row has none of them.
        assert_eq!(rows[1].0.attr.seq, None);
        assert_eq!(rows[1].0.attr.cwnd, Some(10));
        let u = rows[2].0.attr;
        assert_eq!(
            (u.srtt_us, u.cwnd, u.retrans, u.seq),
            (None, None, None, None)
        );
        // The sequence space is 32 bits: a larger number is damage.
        let text = format!("{h},TCP Seq\n{row},4294967296\n{row},-1\n{row},1\n");
        let (rows, stats) = read(&text);
        assert_eq!((rows.len(), stats.malformed), (1, 2));
        assert!(stats.problems[0].message.contains("TCP Seq"));
    }

    #[test]
    fn damaged_and_unknown_layouts_are_refused_clearly() {
        let row = ROW.trim_end();
        let h = schema::HEADER.trim_end();
        for (header, says) in [
            (format!("{h},Socket Cookie,TID"), "out of order"),
            (format!("{h},TID,TID"), "repeated or out of order"),
            (format!("{h},Pod"), "unknown column \"Pod\""),
            (format!("{h},tid"), "unknown column \"tid\""),
            (
                h.replace("Latency", "Latency ns"),
                "the first 14 columns must be",
            ),
        ] {
            let text = format!("{header}\n{row},1\n{row},1\n");
            let (rows, stats) = read(&text);
            assert!(stats.missing_header, "{header}");
            assert_eq!(stats.problems[0].line, 1);
            assert!(
                stats.problems[0].message.contains(says),
                "{header}: {:?}",
                stats.problems
            );
            // Rows are not guessed into a layout the header does not say.
            assert!(rows.is_empty(), "{header}");
            assert_eq!(stats.malformed, 2, "{header}");
        }
        // A row whose optional field is damaged is malformed, with its line.
        let text = format!("{h},Container ID,Netns\n{row},XYZ,1\n{row},,n\n{row},,\n{row},1\n");
        let (rows, stats) = read(&text);
        assert_eq!(rows.len(), 1);
        assert_eq!(stats.malformed, 3);
        assert!(
            stats.problems[0].message.contains("Container ID"),
            "{:?}",
            stats.problems
        );
        assert!(stats.problems[1].message.contains("Netns"));
        assert_eq!(stats.problems[2].message, "15 fields, expected 16");
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

    /// What record --compress writes reads back row for row, and a file
    /// cut inside its last frame (a SIGKILL mid-write) gives every row of
    /// the whole frames before it and says that reading stopped.
    #[test]
    fn compressed_files_read_back_and_a_cut_frame_is_reported() {
        use crate::output::layout::create_run_dir;
        use crate::output::sink::{Compression as Write, CsvSink, Retention};
        let row = |i: u64| {
            format!(
                "2026-11-26 05:08:14.{i:06},42,curl,TCP,4,127.0.0.1,10.0.0.1,40000,443,{i},send,100,,\n"
            )
        };
        for (write, read) in [
            (Write::Zstd, Compression::Zstd),
            (Write::Gzip, Compression::Gzip),
        ] {
            let out = std::env::temp_dir()
                .join(format!("nwtrace-reader-{write:?}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&out);
            let run = create_run_dir(&out, "m", "t").unwrap();
            let mut sink = CsvSink::create_with(run, 1 << 30, Retention::default(), write).unwrap();
            for i in 0..100 {
                sink.append_row(|b| b.extend_from_slice(row(i).as_bytes()))
                    .unwrap();
            }
            sink.flush().unwrap(); // one frame of 100 rows
            let first_frame_ends = sink.files()[0].bytes;
            for i in 100..150 {
                sink.append_row(|b| b.extend_from_slice(row(i).as_bytes()))
                    .unwrap();
            }
            sink.flush().unwrap(); // a second frame of 50
            let path = sink.dir().join(&sink.files()[0].name);
            let mut got = Vec::new();
            let stats = read_file(&path, read, |r, _| got.push(r.size));
            assert_eq!(got, (0..150).collect::<Vec<u64>>(), "{write:?}");
            assert!(
                stats.read_error.is_none() && stats.malformed == 0,
                "{stats:?}"
            );

            // Cut the file in the middle of the second frame.
            let len = std::fs::metadata(&path).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len((first_frame_ends + len) / 2)
                .unwrap();
            let mut got = Vec::new();
            let stats = read_file(&path, read, |r, _| got.push(r.size));
            assert!(
                got.len() >= 100 && got.len() < 150,
                "{write:?}: {}",
                got.len()
            );
            assert_eq!(got, (0..got.len() as u64).collect::<Vec<u64>>());
            assert!(stats.read_error.is_some(), "{write:?}: the cut is reported");
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}
