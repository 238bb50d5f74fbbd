//! `nwtrace watch` as root: its lines against `record`'s rows for the same
//! operations, and a pipe that closes early.

use nwtrace_testkit as common;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// One tracer-heavy test at a time: they share the CPU with the traffic.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `nwtrace watch ARGS` with stdout piped, and waits for its
/// Tracing line on stderr (the stable interface).
fn start_watch(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(nwtrace_bin())
        .arg("watch")
        .args(["--backend", &backend()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting nwtrace watch");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("Tracing") => break,
            Some(Ok(_)) => {}
            _ => panic!("watch ended before tracing"),
        }
        assert!(Instant::now() < deadline, "watch never started tracing");
    }
    // Keep draining stderr so that the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nwtrace watch did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Known traffic from threads called `name`: a TCP exchange (3 sends and 3
/// receives on each side; the server thread inherits the name) and 2 UDP
/// datagrams each way. Returns the number of operations made.
fn traffic(name: &str) -> usize {
    let name = name.to_string();
    std::thread::Builder::new()
        .name(name)
        .spawn(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 64];
                for _ in 0..3 {
                    let n = s.read(&mut buf).unwrap();
                    std::io::Write::write_all(&mut s, &buf[..n]).unwrap();
                }
            });
            let mut c = TcpStream::connect(addr).unwrap();
            let mut buf = [0u8; 64];
            for i in 0..3 {
                std::io::Write::write_all(&mut c, &vec![b'x'; 10 + i]).unwrap();
                c.read_exact(&mut buf[..10 + i]).unwrap();
            }
            server.join().unwrap();
            let a = UdpSocket::bind("127.0.0.1:0").unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..2 {
                a.send_to(b"ping", b.local_addr().unwrap()).unwrap();
                b.recv_from(&mut buf).unwrap();
            }
            12 + 4
        })
        .unwrap()
        .join()
        .unwrap()
}

/// A JSON value as the CSV field it stands for.
fn as_field(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn jsonl_lines_equal_records_rows() {
    let _guard = serial();
    if skip_without_root("jsonl_lines_equal_records_rows") {
        return;
    }
    let name = "nwt-watch-json";
    let dir = scratch_dir("watch-json");
    let mut record = Tracer::start(&dir, &["--comm", name]);
    let (mut watch, mut out) = start_watch(&["--format", "jsonl", "--comm", name, "--count", "16"]);
    let ops = traffic(name);
    assert_eq!(ops, 16);
    let code = wait_exit(&mut watch, Duration::from_secs(30));
    assert_eq!(code, 0);
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    assert_eq!(record.stop(), 0);

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let rows: Vec<Row> = csv_files(&dir).iter().flat_map(|f| read_rows(f)).collect();
    assert_eq!(lines.len(), 16, "--count 16: {text}");
    assert_eq!(rows.len(), 16, "record saw the same operations");
    // Pair each line with record's row for the same operation: the same
    // values in every column but the two times, the k-th line of a kind
    // with the k-th row of that kind. Not by position: the client's send
    // and the server's receive of it complete on two CPUs at nearly the
    // same moment, and each tracer orders them by its own completion time.
    let key = |get: &dyn Fn(&str) -> String| -> Vec<String> {
        HEADER
            .iter()
            .filter(|c| **c != "Timestamp" && **c != "Latency")
            .map(|c| get(c))
            .collect()
    };
    let mut unpaired: Vec<(Vec<String>, &Row)> = rows
        .iter()
        .map(|r| (key(&|c| r.get(c).to_string()), r))
        .collect();
    let mut pairs = Vec::new();
    for line in &lines {
        let obj = line.as_object().unwrap();
        assert_eq!(obj.len(), HEADER.len(), "{line}");
        let k = key(&|c| as_field(&line[c]));
        let i = unpaired
            .iter()
            .position(|(rk, _)| *rk == k)
            .unwrap_or_else(|| panic!("no row of record has the columns of {line}: {rows:?}"));
        pairs.push((line, unpaired.remove(i).1));
        // Numbers are numbers, unknown is null.
        for column in [
            "PID",
            "IP Version",
            "Size",
            "Source Port",
            "Destination Port",
        ] {
            assert!(line[column].is_u64(), "{column}: {line}");
        }
        assert!(
            line["Latency"].is_u64(),
            "every operation here has a start: {line}"
        );
    }
    let times: Vec<(OpTime, OpTime)> = pairs
        .iter()
        .map(|(line, row)| {
            (
                OpTime::new(&as_field(&line["Timestamp"]), &as_field(&line["Latency"])),
                OpTime::new(row.get("Timestamp"), row.get("Latency")),
            )
        })
        .collect();
    check_same_operations(&times);
}

/// An operation's start and completion as one tracer wrote them, in ns
/// since the epoch. Timestamp has microseconds, so the start is known to
/// [lo, lo + 999]; Latency is exact nanoseconds from that start.
#[derive(Clone, Copy, Debug)]
struct OpTime {
    start_lo: i64,
    latency: i64,
}

impl OpTime {
    fn new(timestamp: &str, latency: &str) -> Self {
        OpTime {
            start_lo: parse_timestamp_us(timestamp).unwrap() * 1000,
            latency: latency.parse().unwrap(),
        }
    }
    fn start(self) -> (i64, i64) {
        (self.start_lo, self.start_lo + 999)
    }
    fn end(self) -> (i64, i64) {
        (
            self.start_lo + self.latency,
            self.start_lo + 999 + self.latency,
        )
    }
}

/// How far two tracers' times for one operation may be apart where they
/// must agree: each maps CLOCK_MONOTONIC to the wall clock with its own
/// sample of the offset (src/timefmt.rs: off by at most half its narrowest
/// bracket of three clock reads, tens of ns on a vDSO clock); 1 us covers
/// two such samples many times over.
const CLOCK_SLACK_NS: i64 = 1_000;

/// What two independent tracers of one operation must agree on, as
/// `(watch, record)` pairs.
///
/// Each tracer's start is its own entry program's bpf_ktime_get_ns(), and
/// its completion its own completion program's: on one hook the programs
/// run one after the other, in an order the kernel chooses (attach order
/// for tracepoints, newest first for fentry/fexit, and entry and
/// completion hooks need not agree), so each difference is the other
/// tracer's program in between, plus whatever lands there: an interrupt,
/// a preemption, the task storage a thread's first operation allocates
/// (28 us seen). None of that has a bound. What does: every entry program
/// of a syscall runs before every completion program of it, so each
/// tracer's start is no later than the other's completion (the two
/// intervals overlap), whatever the order and however long the gaps.
///
/// That alone would let a small constant error through (a clock offset,
/// a Latency in the wrong unit), so the test also asks that the usual
/// case agrees: the gap is then one program's body (~1 us), so at least
/// half of the operations must agree within 5 us at both ends. A defect
/// moves every operation; an interrupt or a first operation moves a few.
/// (Within one process the bytes are identical: the CSV test below.)
fn check_same_operations(times: &[(OpTime, OpTime)]) {
    let table: String = times
        .iter()
        .map(|(w, r)| {
            format!(
                "\n  start watch-record {:>8} ns, end {:>8} ns, latency watch {:>8} record {:>8}",
                w.start_lo - r.start_lo,
                w.end().0 - r.end().0,
                w.latency,
                r.latency
            )
        })
        .collect();
    eprintln!("watch vs record, per operation:{table}");
    for (w, r) in times {
        for (a, b, what) in [
            (w, r, "watch's start after record's end"),
            (r, w, "record's start after watch's end"),
        ] {
            assert!(
                a.start().0 <= b.end().1 + CLOCK_SLACK_NS,
                "{what}: the intervals of one operation must overlap: {w:?} vs {r:?}{table}"
            );
        }
    }
    let median_abs = |f: &dyn Fn(&(OpTime, OpTime)) -> i64| {
        let mut v: Vec<i64> = times.iter().map(|t| f(t).abs()).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    // Microsecond timestamps: a start difference reads up to 999 ns off.
    let start = median_abs(&|(w, r)| w.start_lo - r.start_lo);
    let end = median_abs(&|(w, r)| w.end().0 - r.end().0);
    assert!(
        start <= 5_000 + 999,
        "median start difference {start} ns{table}"
    );
    assert!(
        end <= 5_000 + 999,
        "median completion difference {end} ns{table}"
    );
}

#[test]
fn csv_is_byte_identical_to_the_recorded_files() {
    let _guard = serial();
    if skip_without_root("csv_is_byte_identical_to_the_recorded_files") {
        return;
    }
    let name = "nwt-watch-csv";
    let dir = scratch_dir("watch-csv");
    let (mut watch, mut out) = start_watch(&[
        "--format",
        "csv",
        "--comm",
        name,
        "--count",
        "16",
        "-o",
        dir.to_str().unwrap(),
    ]);
    traffic(name);
    assert_eq!(wait_exit(&mut watch, Duration::from_secs(30)), 0);
    let mut printed = Vec::new();
    out.read_to_end(&mut printed).unwrap();
    let files = csv_files(&dir);
    assert_eq!(files.len(), 1);
    let recorded = std::fs::read(&files[0]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&printed),
        String::from_utf8_lossy(&recorded)
    );
    assert_eq!(read_rows(&files[0]).len(), 16);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(find_file(&dir, "manifest.json").unwrap()).unwrap())
            .unwrap();
    assert_eq!(manifest["finalized"], true);
    assert_eq!(manifest["exit_reason"], "count reached");
    assert_eq!(manifest["rows_written"], 16);
}

#[test]
fn a_closed_pipe_ends_watch_quietly_and_leaves_no_program() {
    let _guard = serial();
    if skip_without_root("a_closed_pipe_ends_watch_quietly_and_leaves_no_program") {
        return;
    }
    let name = "nwt-watch-head";
    let (mut watch, mut out) = start_watch(&["--comm", name]);
    let held = prog_ids_held_by(watch.id() as i32);
    assert!(!held.is_empty(), "watch holds its programs while tracing");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(s, || {
                let a = UdpSocket::bind("127.0.0.1:0").unwrap();
                let b = UdpSocket::bind("127.0.0.1:0").unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    a.send_to(b"x", b.local_addr().unwrap()).unwrap();
                    let _ = b.recv_from(&mut [0u8; 8]);
                    // The traffic's pace (part of the scenario), not a wait.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
            .unwrap();
        // `| head -3`: the header and two lines, then the reader goes.
        let mut line = String::new();
        for _ in 0..3 {
            line.clear();
            out.read_line(&mut line).unwrap();
        }
        drop(out);
        let closed_at = Instant::now();
        let code = wait_exit(&mut watch, Duration::from_secs(10));
        let took = closed_at.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(code, 0);
        // Closing the classic tracepoints' perf events takes the kernel
        // some 30 to 90 ms each, one after the other: nwtrace detaches its
        // programs at once and leaves those closes to a short-lived child
        // (src/capture/teardown.rs), so the exit does not wait for them.
        assert!(took < Duration::from_secs(1), "exit took {took:?}");
    });
    let loaded = loaded_prog_ids();
    let left: Vec<_> = held.iter().filter(|id| loaded.contains(id)).collect();
    assert!(left.is_empty(), "programs left behind: {left:?}");
    // The child that closes the perf events is gone soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while detach_children() > 0 {
        assert!(
            Instant::now() < deadline,
            "nwtrace-detach still runs after 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes named `nwtrace-detach` (see src/capture/teardown.rs).
fn detach_children() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "nwtrace-detach")
        })
        .count()
}

const EXTRA: [&str; 6] = [
    "TID",
    "UID",
    "Cgroup",
    "Container ID",
    "Netns",
    "Socket Cookie",
];
const ALL_COLUMNS: &str = "tid,uid,cgroup,container,netns,cookie";

/// `watch --columns`: JSON Lines carry the optional columns under their
/// header names, with the same values as record's rows of the same
/// operations; text lines end in name=value pairs.
#[test]
fn jsonl_optional_columns_equal_records() {
    let _guard = serial();
    if skip_without_root("jsonl_optional_columns_equal_records") {
        return;
    }
    let name = "nwt-watch-cols";
    let dir = scratch_dir("watch-cols");
    let mut record = Tracer::start(&dir, &["--comm", name, "--columns", ALL_COLUMNS]);
    let (mut watch, mut out) = start_watch(&[
        "--format",
        "jsonl",
        "--comm",
        name,
        "--count",
        "16",
        "--columns",
        ALL_COLUMNS,
    ]);
    traffic(name);
    assert_eq!(wait_exit(&mut watch, Duration::from_secs(30)), 0);
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    assert_eq!(record.stop(), 0);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let rows: Vec<Row> = csv_files(&dir)
        .iter()
        .flat_map(|f| read_rows_with(f, &EXTRA))
        .collect();
    assert_eq!((lines.len(), rows.len()), (16, 16), "{text}");
    let mut got: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            assert_eq!(
                l.as_object().unwrap().len(),
                HEADER.len() + EXTRA.len(),
                "{l}"
            );
            for key in ["TID", "UID", "Netns"] {
                assert!(l[key].is_u64(), "{key}: {l}");
            }
            assert!(
                l["Socket Cookie"].is_u64() || l["Socket Cookie"].is_null(),
                "{l}"
            );
            assert!(
                l["Cgroup"].as_str().is_some_and(|c| c.starts_with('/')),
                "{l}"
            );
            EXTRA.iter().map(|k| as_field(&l[*k])).collect()
        })
        .collect();
    let mut want: Vec<Vec<String>> = rows.iter().map(|r| r.fields[14..].to_vec()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() }.to_string();
    assert!(want.iter().all(|w| w[1] == uid), "{want:?}");
}

/// `watch --format csv --columns` prints exactly the file it records.
#[test]
fn csv_with_columns_is_byte_identical_to_the_recorded_files() {
    let _guard = serial();
    if skip_without_root("csv_with_columns_is_byte_identical_to_the_recorded_files") {
        return;
    }
    let name = "nwt-watch-csvc";
    let dir = scratch_dir("watch-csv-cols");
    let (mut watch, mut out) = start_watch(&[
        "--format",
        "csv",
        "--comm",
        name,
        "--count",
        "16",
        "--columns",
        "cookie,tid",
        "-o",
        dir.to_str().unwrap(),
    ]);
    traffic(name);
    assert_eq!(wait_exit(&mut watch, Duration::from_secs(30)), 0);
    let mut printed = Vec::new();
    out.read_to_end(&mut printed).unwrap();
    let files = csv_files(&dir);
    assert_eq!(files.len(), 1);
    let recorded = std::fs::read(&files[0]).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&printed),
        String::from_utf8_lossy(&recorded)
    );
    // File order, whatever order --columns named them in.
    assert_eq!(
        read_rows_with(&files[0], &["TID", "Socket Cookie"]).len(),
        16
    );
}

/// `watch --port P` (the acceptance case: redis on 6379) prints exactly
/// the operations on port P, local or remote, and none on another port.
#[test]
fn port_filter_keeps_exactly_that_ports_operations() {
    let _guard = serial();
    if skip_without_root("port_filter_keeps_exactly_that_ports_operations") {
        return;
    }
    let name = "nwt-watch-port";
    // Two servers on ports the kernel picks; only the first is watched.
    let watched = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = watched.local_addr().unwrap().port();
    let port_text = port.to_string();
    let (mut watch, mut out) = start_watch(&[
        "--format", "jsonl", "--comm", name, "--port", &port_text, "--count", "6",
    ]);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut buf = [0u8; 16];
            for _ in 0..3 {
                client
                    .send_to(b"elsewhere", other.local_addr().unwrap())
                    .unwrap();
                other.recv_from(&mut buf).unwrap();
                client
                    .send_to(b"PING", watched.local_addr().unwrap())
                    .unwrap();
                watched.recv_from(&mut buf).unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(wait_exit(&mut watch, Duration::from_secs(30)), 0);
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 6, "{text}");
    let sends = lines.iter().filter(|l| l["Direction"] == "send").count();
    assert_eq!(sends, 3, "{text}");
    for l in &lines {
        assert_eq!(l["Size"], 4, "only the PINGs: {l}");
        let ports = [&l["Source Port"], &l["Destination Port"]];
        assert!(ports.iter().any(|p| **p == port), "port {port}: {l}");
    }
}
