//! One line per operation, for `watch`: aligned text for a person, the CSV
//! rows `record` writes, or JSON Lines for `jq` and log shippers. Pure
//! formatting: no I/O.

use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;

use crate::attribution::columns::Attribution;
use crate::capture::event::{Direction, Endpoint, NetEvent, Protocol};
use crate::names::{errno_name, write_msg_flags};
use crate::output::row::{RowFormatter, comm_text};
use crate::schema::columns::{Column, Columns};
use crate::timefmt::{RowTimeFormatter, WallClock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// Aligned columns; `color` adds ANSI colours (a terminal only, never
    /// with NO_COLOR).
    Text { color: bool },
    /// Exactly `record`'s rows, header first.
    Csv,
    /// One JSON object per operation, keyed by the contract's column names.
    Jsonl,
}

/// The text format's column heads, aligned like its lines (the widths of
/// `write_text`).
const TEXT_HEADER: &str = "TIME (UTC)          PID COMM            PROTO LOCAL                        REMOTE                          SIZE      LATENCY ERROR        FLAGS\n";

/// One operation as JSON: the contract's column names and types, numbers
/// as numbers, unknown as null. Strings are the row's own text.
#[derive(Serialize)]
struct JsonOp<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: &'a str,
    #[serde(rename = "PID")]
    pid: u32,
    #[serde(rename = "Command")]
    command: &'a str,
    #[serde(rename = "Protocol")]
    protocol: &'static str,
    #[serde(rename = "IP Version")]
    ip_version: u8,
    #[serde(rename = "Source Address")]
    source_address: Option<String>,
    #[serde(rename = "Destination Address")]
    destination_address: Option<String>,
    #[serde(rename = "Source Port")]
    source_port: Option<u16>,
    #[serde(rename = "Destination Port")]
    destination_port: Option<u16>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Direction")]
    direction: &'static str,
    #[serde(rename = "Latency")]
    latency: Option<u64>,
    #[serde(rename = "Error")]
    error: Option<String>,
    #[serde(rename = "MSG Flags")]
    msg_flags: Option<&'a str>,
}

pub struct LineFormatter {
    format: LineFormat,
    /// The optional columns (`--columns`), after the usual ones.
    attribution: Option<Attribution>,
    header: String,
    row: RowFormatter,
    time: RowTimeFormatter,
    scratch: Vec<u8>,
    text: String,
}

/// A latency as every human view prints it (`crate::units`).
pub fn human_ns(ns: u64) -> String {
    crate::units::latency(ns)
}

fn endpoint_text(e: Option<Endpoint>) -> String {
    e.map_or_else(|| "?".to_string(), |e| e.to_string())
}

/// A comm for a terminal: control characters (which could move the cursor
/// or change colours) and non-UTF-8 bytes become `\xNN`.
pub fn terminal_safe(comm: &[u8]) -> String {
    let mut out = String::new();
    for chunk in comm.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

impl LineFormatter {
    pub fn new(format: LineFormat) -> Self {
        Self::with_columns(format, Columns::default())
    }

    /// Lines with the optional columns too: CSV as `record --columns`
    /// writes them, JSON with their header names as keys, text with
    /// `name=value` pairs at the end of the line.
    pub fn with_columns(format: LineFormat, columns: Columns) -> Self {
        let header = match format {
            LineFormat::Text { .. } => TEXT_HEADER.to_string(),
            LineFormat::Csv => columns.header(),
            LineFormat::Jsonl => String::new(),
        };
        LineFormatter {
            format,
            attribution: (!columns.is_empty() && format != LineFormat::Csv)
                .then(|| Attribution::new(columns)),
            header,
            row: RowFormatter::with_columns(columns),
            time: RowTimeFormatter::default(),
            scratch: Vec::new(),
            text: String::new(),
        }
    }

    /// What comes before the first line, if anything.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Appends the line for `ev`, newline included.
    pub fn write(&mut self, out: &mut Vec<u8>, ev: &NetEvent, clock: &WallClock) {
        match self.format {
            LineFormat::Csv => self.row.write_row(out, ev, clock),
            LineFormat::Jsonl => self.write_json(out, ev, clock),
            LineFormat::Text { color } => self.write_text(out, ev, clock, color),
        }
    }

    fn timestamp(&mut self, ev: &NetEvent, clock: &WallClock) -> String {
        // As in the rows: the start; the finish when the start is unknown.
        let mut buf = Vec::with_capacity(26);
        self.time.write(
            &mut buf,
            clock.to_epoch_ns(ev.start_ns.unwrap_or(ev.end_ns)),
        );
        String::from_utf8(buf).expect("timestamps are ASCII")
    }

    fn write_json(&mut self, out: &mut Vec<u8>, ev: &NetEvent, clock: &WallClock) {
        let timestamp = self.timestamp(ev, clock);
        let comm = String::from_utf8_lossy(comm_text(ev.comm(), &mut self.scratch)).into_owned();
        let mut flags = Vec::new();
        if let Some(f) = ev.msg_flags {
            write_msg_flags(&mut flags, f);
        }
        let flags = String::from_utf8(flags).expect("flag names are ASCII");
        let (src, dst) = (ev.source(), ev.destination());
        let op = JsonOp {
            timestamp: &timestamp,
            pid: ev.pid,
            command: &comm,
            protocol: Protocol::as_str(ev.protocol),
            ip_version: ev.ip_version,
            source_address: src.map(|e| e.addr.to_string()),
            destination_address: dst.map(|e| e.addr.to_string()),
            source_port: src.map(|e| e.port),
            destination_port: dst.map(|e| e.port),
            size: ev.ret.max(0) as u64,
            direction: Direction::as_str(ev.direction),
            latency: ev.latency_ns(),
            error: (ev.ret < 0).then(|| errno_text(-ev.ret)),
            msg_flags: (!flags.is_empty()).then_some(flags.as_str()),
        };
        serde_json::to_writer(&mut *out, &op).expect("writing JSON to a Vec");
        if let Some(a) = self.attribution.as_mut() {
            // The object's closing brace makes way for the optional keys.
            out.pop();
            for (col, text) in a.values(ev.attr.as_ref()) {
                out.push(b',');
                serde_json::to_writer(&mut *out, col.header()).expect("writing JSON to a Vec");
                out.push(b':');
                let value = match col {
                    _ if text.is_empty() => serde_json::Value::Null,
                    Column::Cgroup | Column::Container => serde_json::Value::String(text),
                    // Numbers as numbers, as for the 14.
                    _ => text
                        .parse::<u64>()
                        .map(serde_json::Value::from)
                        .unwrap_or(serde_json::Value::String(text)),
                };
                serde_json::to_writer(&mut *out, &value).expect("writing JSON to a Vec");
            }
            out.push(b'}');
        }
        out.push(b'\n');
    }

    fn write_text(&mut self, out: &mut Vec<u8>, ev: &NetEvent, clock: &WallClock, color: bool) {
        let ts = self.timestamp(ev, clock);
        let t = &mut self.text;
        t.clear();
        // HH:MM:SS.ffffff of the row's timestamp; the date is in the rows.
        let _ = write!(t, "{} {:>7} ", &ts[11..], ev.pid);
        let comm = terminal_safe(ev.comm());
        let _ = write!(t, "{comm:<15} {:<5} ", Protocol::as_str(ev.protocol));
        let local = endpoint_text(Some(ev.local));
        let remote = endpoint_text(ev.peer);
        let (arrow, arrow_color) = match ev.direction {
            Direction::Send => ("→", GREEN),
            Direction::Receive => ("←", CYAN),
        };
        if color {
            let _ = write!(t, "{local:<26} {arrow_color}{arrow}{RESET} {remote:<26}");
        } else {
            let _ = write!(t, "{local:<26} {arrow} {remote:<26}");
        }
        let latency = ev.latency_ns().map_or("-".to_string(), human_ns);
        let _ = write!(t, " {:>9} {latency:>12}", ev.ret.max(0));
        let error = if ev.ret < 0 {
            errno_text(-ev.ret)
        } else {
            String::new()
        };
        if color && !error.is_empty() {
            let _ = write!(t, " {RED}{error:<12}{RESET}");
        } else {
            let _ = write!(t, " {error:<12}");
        }
        if let Some(f) = ev.msg_flags.filter(|&f| f != 0) {
            let mut flags = Vec::new();
            write_msg_flags(&mut flags, f);
            let _ = write!(t, " {}", String::from_utf8_lossy(&flags));
        }
        if let Some(a) = self.attribution.as_mut() {
            for (col, text) in a.values(ev.attr.as_ref()) {
                let value = if text.is_empty() { "-" } else { &text };
                let _ = write!(t, " {}={value}", col.word());
            }
        }
        let line = t.trim_end();
        let _ = writeln!(out, "{line}");
    }
}

fn errno_text(errno: i32) -> String {
    errno_name(errno).map_or_else(|| format!("E{errno}"), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::event::tests::sample_event;
    use crate::output::row::HEADER;

    /// 2026-11-26 05:08:14 UTC as the offset, so monotonic 1000 ns is
    /// 05:08:14.000001.
    fn clock() -> WallClock {
        WallClock::with_offset(1_795_669_694_000_000_000)
    }

    fn line(format: LineFormat, ev: &NetEvent) -> String {
        let mut out = Vec::new();
        LineFormatter::new(format).write(&mut out, ev, &clock());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_follow_the_data() {
        let ev = sample_event();
        assert_eq!(
            line(LineFormat::Text { color: false }, &ev),
            "05:08:14.000001    1234 curl            TCP   127.0.0.1:40000            → 10.1.2.3:8080                     64      2.50 µs              MSG_NOSIGNAL\n"
        );
        let mut rx = ev.clone();
        rx.direction = Direction::Receive;
        rx.ret = -104;
        rx.msg_flags = None;
        rx.start_ns = None;
        assert_eq!(
            line(LineFormat::Text { color: false }, &rx),
            "05:08:14.000003    1234 curl            TCP   127.0.0.1:40000            ← 10.1.2.3:8080                      0            - ECONNRESET\n"
        );
    }

    #[test]
    fn a_hostile_comm_is_escaped_for_the_terminal() {
        let mut ev = sample_event();
        ev.set_comm(b"\x1b[2Jevil\x07\xff");
        let text = line(LineFormat::Text { color: false }, &ev);
        assert!(text.contains("\\x1b[2Jevil\\x07\\xff "), "{text}");
        assert!(!text.bytes().any(|b| b < 0x20 && b != b'\n'), "{text:?}");
        // Colour codes come only from nwtrace itself.
        let colored = line(LineFormat::Text { color: true }, &ev);
        assert!(colored.contains("\x1b[32m→\x1b[0m"), "{colored:?}");
        assert!(colored.contains("\\x1b[2J"), "{colored:?}");
    }

    #[test]
    fn jsonl_uses_the_contracts_names_and_types() {
        let mut ev = sample_event();
        ev.set_comm(b"a,\"b");
        let v: serde_json::Value =
            serde_json::from_str(line(LineFormat::Jsonl, &ev).trim_end()).unwrap();
        assert_eq!(v["Timestamp"], "2026-11-26 05:08:14.000001");
        assert_eq!(v["PID"], 1234);
        assert_eq!(v["Command"], "a,\"b");
        assert_eq!(v["Protocol"], "TCP");
        assert_eq!(v["IP Version"], 4);
        assert_eq!(v["Source Address"], "127.0.0.1");
        assert_eq!(v["Destination Address"], "10.1.2.3");
        assert_eq!(v["Source Port"], 40000);
        assert_eq!(v["Destination Port"], 8080);
        assert_eq!(v["Size"], 64);
        assert_eq!(v["Direction"], "send");
        assert_eq!(v["Latency"], 2500);
        assert_eq!(v["Error"], serde_json::Value::Null);
        assert_eq!(v["MSG Flags"], "MSG_NOSIGNAL");
        assert_eq!(v.as_object().unwrap().len(), 14);

        let mut rx = sample_event();
        rx.direction = Direction::Receive;
        rx.peer = None;
        rx.ret = -11;
        rx.start_ns = None;
        rx.msg_flags = None;
        let v: serde_json::Value =
            serde_json::from_str(line(LineFormat::Jsonl, &rx).trim_end()).unwrap();
        assert_eq!(v["Source Address"], serde_json::Value::Null);
        assert_eq!(v["Source Port"], serde_json::Value::Null);
        assert_eq!(v["Destination Address"], "127.0.0.1");
        assert_eq!(v["Size"], 0);
        assert_eq!(v["Latency"], serde_json::Value::Null);
        assert_eq!(v["Error"], "EAGAIN");
        assert_eq!(v["MSG Flags"], serde_json::Value::Null);
    }

    #[test]
    fn csv_is_records_row() {
        let ev = sample_event();
        let mut row = Vec::new();
        RowFormatter::new().write_row(&mut row, &ev, &clock());
        assert_eq!(line(LineFormat::Csv, &ev).as_bytes(), row.as_slice());
        assert_eq!(LineFormatter::new(LineFormat::Csv).header(), HEADER);
    }

    #[test]
    fn the_text_header_lines_up_with_the_lines() {
        let text = line(LineFormat::Text { color: false }, &sample_event());
        let col = |s: &str, word: &str| s.find(word).unwrap();
        let head = TEXT_HEADER;
        // Right-aligned numbers end where their heads end; the rest start
        // where their heads start.
        assert_eq!(col(head, "PID") + 3, col(&text, "1234") + 4);
        assert_eq!(col(head, "COMM"), col(&text, "curl"));
        assert_eq!(col(head, "PROTO"), col(&text, "TCP"));
        assert_eq!(col(head, "LOCAL"), col(&text, "127.0.0.1"));
        assert_eq!(
            head[..col(head, "REMOTE")].chars().count(),
            text[..col(&text, "10.1.2.3")].chars().count()
        );
        let head_chars = |w: &str| head[..col(head, w)].chars().count() + w.len();
        let text_chars = |w: &str| text[..col(&text, w)].chars().count() + w.chars().count();
        // " 64 " finds the size column; the number ends one before it does.
        assert_eq!(head_chars("SIZE"), text_chars(" 64 ") - 1);
        assert_eq!(head_chars("LATENCY"), text_chars("2.50 µs"));
    }

    #[test]
    fn latencies_read_as_people_write_them() {
        assert_eq!(human_ns(850), "850 ns");
        // Three significant figures, as the reports and top print it.
        assert_eq!(human_ns(2_500), "2.50 µs");
        assert_eq!(human_ns(123_400), "123 µs");
        assert_eq!(human_ns(4_560_000), "4.56 ms");
        assert_eq!(human_ns(1_230_000_000), "1.23 s");
    }
}
