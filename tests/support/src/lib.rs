//! Shared pieces of the integration tests: running the real tracer,
//! reading its CSV, and describing the rows a scenario must produce
//! (`sys`: thin syscall wrappers; `fixture`: the report tests' generated
//! recording tree). One crate, compiled once, that every test binary
//! links, instead of a `mod common;` each binary compiled again.

pub mod fixture;
pub mod sys;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The column names, written out here rather than taken from the
/// library: the contract (docs/semantics.md) is the oracle, so a renamed
/// or reordered column fails the tests instead of following the code.
pub const HEADER: [&str; 14] = [
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

/// The nwtrace binary: $NWTRACE_BIN (inside a VM), else the one cargo
/// built beside the running test. Cargo sets `CARGO_BIN_EXE_nwtrace` only
/// while compiling the package's own test targets, not this crate, so the
/// path comes from the test executable's: `<target>/<profile>/deps/<test>`
/// has the binary at `<target>/<profile>/nwtrace`.
pub fn nwtrace_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NWTRACE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("nwtrace"))
        .filter(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no nwtrace binary beside {}: run the tests with cargo test, or set NWTRACE_BIN",
                exe.display()
            )
        })
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Root tests skip on a laptop without privileges, but never under CI.
/// Returns true when the caller should skip.
pub fn skip_without_root(what: &str) -> bool {
    if is_root() {
        return false;
    }
    if in_ci() {
        panic!("{what}: needs root, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {what}: needs root (run the tests as root)");
    true
}

/// A test whose kernel lacks what it exercises skips with the reason, but
/// never under CI, whose host kernel has everything the root tests need:
/// there a skip would hide a regression, so it fails instead.
/// The caller returns right after.
pub fn skip_for_missing_kernel_feature(what: &str, why: &str) {
    if in_ci() {
        panic!("{what}: {why}, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {what}: {why}");
}

/// The backend under test: $NWTRACE_BACKEND, else auto.
pub fn backend() -> String {
    std::env::var("NWTRACE_BACKEND").unwrap_or_else(|_| "auto".into())
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nwtrace-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating scratch dir");
    dir
}

/// Starts a tracer on this test process only, into a fresh scratch dir.
pub fn trace_self(tag: &str, extra: &[&str]) -> (PathBuf, Tracer) {
    let dir = scratch_dir(tag);
    let pid = std::process::id().to_string();
    let mut args = vec!["--pid", pid.as_str()];
    args.extend_from_slice(extra);
    let tracer = Tracer::start(&dir, &args);
    (dir, tracer)
}

/// A running `nwtrace record`.
pub struct Tracer {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
    pub output_dir: PathBuf,
}

impl Tracer {
    /// Starts nwtrace with `args` after `record -o <output_dir>` and waits
    /// for its `Tracing` line.
    pub fn start(output_dir: &Path, args: &[&str]) -> Tracer {
        let mut cmd = Command::new(nwtrace_bin());
        cmd.arg("record")
            .arg("-o")
            .arg(output_dir)
            .arg("--backend")
            .arg(backend())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting nwtrace");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut tracer = Tracer {
            child,
            stderr_lines: rx,
            stderr: Vec::new(),
            output_dir: output_dir.to_path_buf(),
        };
        // Generous: loading under qemu TCG takes a while.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tracer.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    let ready = line.starts_with("Tracing");
                    tracer.stderr.push(line);
                    if ready {
                        return tracer;
                    }
                }
                Err(_) => {
                    let _ = tracer.child.kill();
                    let _ = tracer.child.wait();
                    tracer.stderr.extend(tracer.stderr_lines.try_iter());
                    panic!(
                        "nwtrace never printed its Tracing line; stderr:\n{}",
                        tracer.stderr.join("\n")
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal`, waits for the exit, and returns the exit code.
    pub fn stop_with(&mut self, signal: i32) -> i32 {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
        self.wait()
    }

    pub fn stop(&mut self) -> i32 {
        self.stop_with(libc::SIGINT)
    }

    pub fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for nwtrace") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("nwtrace did not exit within 60 s of being stopped");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF; collect what is left.
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(5)) {
            self.stderr.push(line);
        }
        status.code().unwrap_or(-1)
    }

    /// The run's manifest (the first one under the output folder), as
    /// JSON: scripts and tests read figures there, not on stderr.
    pub fn manifest(&self) -> serde_json::Value {
        let path = find_file(&self.output_dir, "manifest.json")
            .unwrap_or_else(|| panic!("no manifest under {}", self.output_dir.display()));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("manifest JSON")
    }
}

/// The first file called `name` below `dir`.
pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
        }
    }
    None
}

/// One CSV row, by header name.
#[derive(Clone, Debug)]
pub struct Row {
    pub fields: Vec<String>,
}

impl Row {
    pub fn get(&self, name: &str) -> &str {
        let i = HEADER
            .iter()
            .position(|h| *h == name)
            .expect("known column");
        &self.fields[i]
    }
}

/// Every CSV file under `dir` (recursively), in name order.
pub fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a CSV file, checking the header and that every record has 14
/// fields (the csv crate is strict RFC 4180 here).
pub fn read_rows(path: &Path) -> Vec<Row> {
    read_rows_with(path, &[])
}

/// As [`read_rows`], for files with optional columns `extra` after the 14
/// (their values are `Row::fields[14..]`).
pub fn read_rows_with(path: &Path, extra: &[&str]) -> Vec<Row> {
    let text = std::fs::read(path).expect("reading CSV");
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "{} ends in a partial row",
        path.display()
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_slice());
    let header: Vec<String> = reader
        .headers()
        .expect("header row")
        .iter()
        .map(str::to_string)
        .collect();
    let want: Vec<&str> = HEADER.iter().chain(extra).copied().collect();
    assert_eq!(header, want, "header of {}", path.display());
    reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("bad CSV record in {}: {e}", path.display()));
            Row {
                fields: r.iter().map(str::to_string).collect(),
            }
        })
        .collect()
}

/// Parses a row's `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) into epoch microseconds.
pub fn parse_timestamp_us(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
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
    let num = |r: std::ops::Range<usize>| ts.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    // days_from_civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Send,
    Receive,
}

/// A row a scenario expects, field by field. Timestamp and Latency are
/// checked against the scenario's time window, not compared.
#[derive(Clone, Debug)]
pub struct Expected {
    pub protocol: &'static str,
    pub ip_version: &'static str,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub size: usize,
    pub dir: Dir,
    pub error: &'static str,
    pub flags: &'static str,
    pub latency_known: bool,
}

impl Expected {
    /// The fields that are compared exactly, in header order (Command and
    /// PID are added by the checker).
    pub fn exact_fields(&self) -> Vec<String> {
        let addr = |a: Option<SocketAddr>| a.map(|a| a.ip().to_string()).unwrap_or_default();
        let port = |a: Option<SocketAddr>| a.map(|a| a.port().to_string()).unwrap_or_default();
        vec![
            self.protocol.into(),
            self.ip_version.into(),
            addr(self.src),
            addr(self.dst),
            port(self.src),
            port(self.dst),
            self.size.to_string(),
            match self.dir {
                Dir::Send => "send".into(),
                Dir::Receive => "receive".into(),
            },
            self.error.into(),
            self.flags.into(),
        ]
    }
}

/// Columns whose value a scenario knows exactly (the others are checked
/// against the run: the time, the process, the thread name).
const NOT_EXACT: [&str; 4] = ["Timestamp", "PID", "Command", "Latency"];

pub fn exact_fields_of(row: &Row) -> Vec<String> {
    HEADER
        .iter()
        .filter(|c| !NOT_EXACT.contains(c))
        .map(|c| row.get(c).to_string())
        .collect()
}

/// IDs of the BPF programs a process holds (its fdinfo lists each one).
pub fn prog_ids_held_by(pid: i32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// IDs of every BPF program loaded on the machine.
pub fn loaded_prog_ids() -> Vec<u32> {
    libbpf_rs::query::ProgInfoIter::default()
        .map(|p| p.id)
        .collect()
}

/// What a process has attached, read from the kernel through its
/// descriptors: perf events (readlink), BPF links by type (fdinfo), and
/// for each perf event or raw tracepoint link its target
/// (BPF_TASK_FD_QUERY, 4.17+; raw tracepoint links 5.8+).
#[derive(Debug, Default)]
pub struct Attached {
    /// Descriptors that are perf events (`anon_inode:[perf_event]`).
    pub perf_events: usize,
    /// BPF links by their fdinfo `link_type` ("tracing", "raw_tracepoint",
    /// "perf_event"...).
    pub link_types: Vec<String>,
    /// (kind, name): "tracepoint sys_enter_write", "raw_tracepoint
    /// sock_send_length", "kprobe tcp_sendmsg", "kretprobe tcp_sendmsg".
    pub hooks: Vec<(&'static str, String)>,
}

impl Attached {
    /// The hooks of the syscalls or raw_syscalls tracepoint families (as
    /// classic tracepoints, raw tracepoints or tp_btf): sys_enter_<name>,
    /// sys_exit_<name>, sys_enter, sys_exit.
    pub fn syscall_tracepoints(&self) -> Vec<String> {
        self.hooks
            .iter()
            .filter(|(kind, name)| {
                (*kind == "tracepoint" || *kind == "raw_tracepoint")
                    && (name.starts_with("sys_enter") || name.starts_with("sys_exit"))
            })
            .map(|(kind, name)| format!("{kind} {name}"))
            .collect()
    }
}

/// The attachments of process `pid` (root: BPF_TASK_FD_QUERY on another
/// process needs CAP_SYS_ADMIN).
pub fn attached_by(pid: i32) -> Attached {
    use libbpf_rs::libbpf_sys;
    let mut out = Attached::default();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target.to_string_lossy() == "anon_inode:[perf_event]" {
            out.perf_events += 1;
        }
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        if let Some(t) = info.lines().find_map(|l| l.strip_prefix("link_type:")) {
            out.link_types.push(t.trim().to_string());
        }
        let mut buf = [0u8; 256];
        let mut buf_len = buf.len() as u32;
        let (mut prog_id, mut fd_type, mut offset, mut addr) = (0u32, 0u32, 0u64, 0u64);
        // SAFETY: every pointer is to a live local of the type the call
        // writes; buf_len says how much of buf it may fill.
        let rc = unsafe {
            libbpf_sys::bpf_task_fd_query(
                pid,
                fd,
                0,
                buf.as_mut_ptr().cast(),
                &mut buf_len,
                &mut prog_id,
                &mut fd_type,
                &mut offset,
                &mut addr,
            )
        };
        if rc != 0 {
            continue; // not a perf event or raw tracepoint with a program
        }
        let kind = match fd_type {
            libbpf_sys::BPF_FD_TYPE_RAW_TRACEPOINT => "raw_tracepoint",
            libbpf_sys::BPF_FD_TYPE_TRACEPOINT => "tracepoint",
            libbpf_sys::BPF_FD_TYPE_KPROBE => "kprobe",
            libbpf_sys::BPF_FD_TYPE_KRETPROBE => "kretprobe",
            _ => "other",
        };
        let name = std::ffi::CStr::from_bytes_until_nul(&buf)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.hooks.push((kind, name));
    }
    out.hooks.sort();
    out.link_types.sort();
    out
}

/// Polls `done` every 20 ms until it holds, and panics naming `what` if it
/// still does not after `timeout`. The tests wait with this, on something
/// they can observe (a file, a counter, a process state), instead of
/// sleeping a guessed time: fast when the host is fast, and a clear
/// failure, not a flaky one, when it is slow.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `signal` is still pending for process `pid` (sent, not yet
/// delivered), from the SigPnd and ShdPnd masks of /proc/PID/status.
pub fn signal_pending(pid: i32, signal: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let bit = 1u64 << (signal - 1);
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("SigPnd:")
                .or_else(|| l.strip_prefix("ShdPnd:"))
        })
        .filter_map(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .any(|mask| mask & bit != 0)
}

/// Whether thread `tid` of this process sleeps inside system call `nr`
/// (state S in /proc/self/task/TID/stat, and the number that starts
/// /proc/self/task/TID/syscall).
pub fn blocked_in_syscall(tid: i32, nr: i64) -> bool {
    let task = format!("/proc/self/task/{tid}");
    let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap_or_default();
    // The state follows the command, which is in parentheses and may hold
    // spaces: look after the last ')'.
    let sleeping = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
    let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
    let in_nr = syscall
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        == Some(nr);
    sleeping && in_nr
}

/// Whether the BPF map called `name` that process `pid` holds (a hash
/// map, found through the map IDs in its fdinfo) has an entry for `key`:
/// how a test sees that a tracer has taken in something it found on its
/// own, such as a cgroup. Map names are cut at 15 bytes by the kernel,
/// so `name` is compared on those.
pub fn bpf_map_has_key(pid: i32, name: &str, key: &[u8]) -> bool {
    use libbpf_rs::libbpf_sys;
    let name = &name.as_bytes()[..name.len().min(15)];
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    let mut ids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        // SAFETY: a plain syscall wrapper; a negative result is an error.
        let fd = unsafe { libbpf_sys::bpf_map_get_fd_by_id(id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: fd was just returned to us and is closed only by `owned`.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: bpf_map_info is plain integers and arrays; zeroes are valid.
        let mut info: libbpf_sys::bpf_map_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
        // SAFETY: info and len are live locals of the sizes the call is told.
        let rc = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd, &mut info, &mut len) };
        let map_name: Vec<u8> = info
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        if rc != 0 || map_name != name || info.key_size as usize != key.len() {
            continue;
        }
        let mut value = vec![0u8; info.value_size as usize];
        // SAFETY: key has key_size bytes and value has value_size bytes,
        // as the map's info says; fd stays open while `owned` lives.
        let found = unsafe {
            libbpf_sys::bpf_map_lookup_elem(fd, key.as_ptr().cast(), value.as_mut_ptr().cast())
        } == 0;
        drop(owned);
        if found {
            return true;
        }
    }
    false
}
