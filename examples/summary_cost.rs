//! What the run summary costs the recorder, per event:
//!
//!     cargo run --release --example summary_cost [-- EVENTS [ROUNDS]]
//!
//! Feeds a synthetic stream (50 processes, 1,000 conversations, both
//! directions, some errors) through the CSV consumer exactly as `record`
//! does, without and with the summary, and prints CPU nanoseconds per
//! event: on the thread that drains the ring buffer (the capture thread,
//! here the calling thread), in the whole process (every thread, the
//! summary's included), and on the summary thread alone. Checks that the
//! summary it built is exact and counts every row. This loop writes rows
//! faster than the summary thread takes them (about 150 against 270 ns a
//! row here), so with many events the summary may be given up, as
//! `record` does (docs/architecture.md); it says so. A measurement, not a test: its figures depend
//! on the machine; `bench/run` measures the real recorder.

use std::time::Instant;

use nwtrace::capture::consumer::Consumer;
use nwtrace::capture::event::NetEvent;
use nwtrace::output::csv::CsvConsumer;
use nwtrace::output::layout::create_run_dir;
use nwtrace::output::sink::{CsvSink, Retention};
use nwtrace::timefmt::WallClock;

fn cpu_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: a zeroed timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is writable and the clock id is one of the two below.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One ring buffer record (`struct nw_event`, src/bpf/nwtrace.h): a TCP
/// IPv4 operation with its start, flags and peer.
#[allow(clippy::too_many_arguments)]
fn record(
    dir: u8,
    pid: u32,
    lport: u16,
    pport: u16,
    ret: i32,
    flags: u32,
    start: u64,
    end: u64,
) -> [u8; 88] {
    let mut b = [0u8; 88];
    b[0] = 1; // NW_RECORD_EVENT
    b[1] = dir;
    b[2] = libc::IPPROTO_TCP as u8;
    b[3] = 0x01 | 0x02 | 0x04; // start, flags, peer known
    b[4..6].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[6..8].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
    b[8..10].copy_from_slice(&lport.to_ne_bytes());
    b[10..12].copy_from_slice(&pport.to_ne_bytes());
    b[12..16].copy_from_slice(&pid.to_ne_bytes());
    b[16..20].copy_from_slice(&ret.to_ne_bytes());
    b[20..24].copy_from_slice(&flags.to_ne_bytes());
    b[24..32].copy_from_slice(&start.to_ne_bytes());
    b[32..40].copy_from_slice(&end.to_ne_bytes());
    b[40..44].copy_from_slice(&[127, 0, 0, 1]);
    b[56..60].copy_from_slice(&[10, 1, 2, (pid % 200) as u8]);
    b[72..81].copy_from_slice(b"sockperf\0");
    b
}

fn events(n: u64) -> Vec<NetEvent> {
    (0..n)
        .map(|i| {
            let start = 1_000 + i * 2_000;
            let ret = if i % 97 == 0 {
                -104
            } else {
                (i * 37 % 9000) as i32
            };
            let raw = record(
                (i % 2) as u8,
                1000 + (i % 50) as u32,
                40000 + (i % 20) as u16,
                8000 + (i * 7 % 50) as u16,
                ret,
                if i % 3 == 0 { 0x40 } else { 0 },
                start,
                start + i * 101 % 1_000_000,
            );
            NetEvent::try_from(&raw[..]).expect("a valid record")
        })
        .collect()
}

struct Figures {
    capture_ns: f64,
    summary_thread_ns: f64,
    process_ns: f64,
    wall_ns: f64,
}

fn run(with_summary: bool, evs: &[NetEvent]) -> Figures {
    let out = std::env::temp_dir().join(format!(
        "nwtrace-summary-cost-{with_summary}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&out);
    let dir = create_run_dir(&out, "m", "t").expect("a run folder");
    let sink = CsvSink::create(dir, 1 << 30, Retention::default()).expect("a sink");
    let mut csv = CsvConsumer::new(sink);
    if with_summary {
        csv.enable_summary();
    }
    let clock = WallClock::with_offset(1_795_669_694_000_000_000);
    let (t0, p0, w0) = (
        cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID),
        cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID),
        Instant::now(),
    );
    for ev in evs {
        let _ = csv.on_event(ev, &clock);
    }
    let _ = csv.finish();
    let capture = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - t0;
    let mut summary_thread = 0;
    if let Some(b) = csv.take_summary() {
        summary_thread = b.thread_cpu_ns;
        let s = csv.sink();
        // This loop feeds rows faster than any capture (no ring buffer,
        // no kernel): the summary thread can fall behind and be given up.
        match b.build(s.files(), s.rows_lost(), "m", "manifest.json") {
            Ok(doc) => {
                assert!(doc.exact, "the summary is exact");
                assert_eq!(doc.rows, evs.len() as u64, "the summary counts every row");
            }
            Err(why) => println!("(no summary: {why})"),
        }
    }
    let process = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - p0;
    let wall = w0.elapsed().as_nanos() as f64;
    let _ = std::fs::remove_dir_all(&out);
    let n = evs.len() as f64;
    Figures {
        capture_ns: capture as f64 / n,
        summary_thread_ns: summary_thread as f64 / n,
        process_ns: process as f64 / n,
        wall_ns: wall / n,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("EVENTS is a number"));
    let rounds: u32 = args
        .next()
        .map_or(3, |a| a.parse().expect("ROUNDS is a number"));
    let evs = events(n);
    println!("{n} events, CPU ns per event (capture thread / whole process / wall):");
    for round in 1..=rounds {
        let plain = run(false, &evs);
        let with = run(true, &evs);
        println!(
            "round {round}: csv alone {:.0} / {:.0} / {:.0}; csv + summary {:.0} / {:.0} / {:.0}; \
             the summary adds {:.0} on the capture thread, {:.0} in the process; \
             the summary thread used {:.0}",
            plain.capture_ns,
            plain.process_ns,
            plain.wall_ns,
            with.capture_ns,
            with.process_ns,
            with.wall_ns,
            with.capture_ns - plain.capture_ns,
            with.process_ns - plain.process_ns,
            with.summary_thread_ns,
        );
    }
}
