//! Running nwtrace as a service: the version it reports, the least
//! privilege it needs, its config files. Root tests skip without root,
//! never under CI=true.

use nwtrace_testkit as common;

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::nwtrace_bin;

fn nwtrace(args: &[&str]) -> Output {
    Command::new(nwtrace_bin())
        .args(args)
        .output()
        .expect("running nwtrace")
}

#[test]
fn version_names_the_commit() {
    let _guard = serial();
    let out = nwtrace(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected_prefix = format!("nwtrace {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected_prefix), "{text:?}");
    let commit = text.trim_end().strip_prefix(&expected_prefix).unwrap();
    let commit = commit.strip_suffix(')').unwrap();
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{commit:?}"
    );
    // Built from a checkout, it is the checkout's commit (or an ancestor of
    // it when the tree moved on since the build).
    if let Ok(head) = Command::new("git").args(["rev-parse", "HEAD"]).output()
        && head.status.success()
        && commit != "unknown"
    {
        let ok = Command::new("git")
            .args(["merge-base", "--is-ancestor", commit, "HEAD"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{commit} is not HEAD or an ancestor of it");
    }
}

/// The capabilities a non-root user needs (docs/operations.md, "Least privilege").
const SERVICE_CAPS: [&str; 3] = ["bpf", "perfmon", "dac_read_search"];

/// One root test at a time: a copy of the binary being written while
/// another test forks would make the exec fail with ETXTBSY.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A copy of the binary that nobody can reach and run (the checkout may
/// sit in a folder nobody cannot traverse), and an output folder nobody
/// owns.
fn nobody_setup(tag: &str) -> (PathBuf, PathBuf) {
    let dir = common::scratch_dir(tag);
    let bin = dir.join("nwtrace");
    std::fs::copy(nwtrace_bin(), &bin).unwrap();
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&out, Some(65534), Some(65534)).unwrap();
    (bin, out)
}

/// `setpriv` running `bin` as nobody with exactly `caps` (ambient, so
/// they survive the exec) and nothing else in any set.
fn as_nobody_with(caps: &[&str], bin: &Path, args: &[&str]) -> Command {
    let list: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps={list}"))
        .arg(format!("--ambient-caps={list}"))
        .arg(format!("--bounding-set={list}"))
        .arg(bin)
        .args(args)
        .env_clear()
        .stdin(Stdio::null());
    cmd
}

/// UDP sends to the discard port (9) in the CSV files under `dir`.
fn sends_to_discard(dir: &Path) -> usize {
    common::csv_files(dir)
        .iter()
        .flat_map(|f| common::read_rows(f))
        .filter(|r| r.get("Protocol") == "UDP" && r.get("Destination Port") == "9")
        .count()
}

#[test]
fn records_as_nobody_with_exactly_the_documented_capabilities() {
    if common::skip_without_root("records_as_nobody_with_exactly_the_documented_capabilities") {
        return;
    }
    let _guard = serial();
    let (bin, out) = nobody_setup("caps");
    let pid = std::process::id().to_string();
    let backend = common::backend();
    let args = [
        "record",
        "-o",
        out.to_str().unwrap(),
        "--pid",
        &pid,
        "--backend",
        &backend,
        "--duration",
        "60s",
    ];
    let mut child = as_nobody_with(&SERVICE_CAPS, &bin, &args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("Tracing"), "{line}");
    // Known traffic from this process: 5 UDP sends to the discard port.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        sock.send_to(b"least privilege", "127.0.0.1:9").unwrap();
    }
    // Rows reach the files each second; stop once the five are there.
    common::wait_until("the 5 sends in the CSV", Duration::from_secs(30), || {
        sends_to_discard(&out) >= 5
    });
    // SAFETY: kill on our own child's pid (setpriv exec'd nwtrace).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    let files = common::csv_files(&out);
    assert_eq!(sends_to_discard(&out), 5, "{rest}");
    // The files belong to the user that wrote them.
    let meta = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 65534);
}

#[test]
fn one_capability_fewer_is_one_line_naming_it() {
    if common::skip_without_root("one_capability_fewer_is_one_line_naming_it") {
        return;
    }
    let _guard = serial();
    let (bin, out) = nobody_setup("fewer");
    for missing in SERVICE_CAPS {
        let caps: Vec<&str> = SERVICE_CAPS.into_iter().filter(|c| *c != missing).collect();
        let output = as_nobody_with(
            &caps,
            &bin,
            &["record", "-o", out.to_str().unwrap(), "-d", "1s"],
        )
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{missing}: {err}");
        assert_eq!(err.lines().count(), 1, "{missing}: {err}");
        let name = format!("lacks CAP_{}", missing.to_uppercase());
        assert!(err.contains(&name), "{missing}: {err}");
        assert!(common::csv_files(&out).is_empty(), "{missing}: wrote files");
    }
}

/// UDP round trips on loopback from this process, for `limit`.
fn udp_traffic(limit: Duration) -> u64 {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_nonblocking(true).unwrap();
    let to = b.local_addr().unwrap();
    let start = std::time::Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 64];
    while start.elapsed() < limit {
        for _ in 0..100 {
            a.send_to(&[7; 32], to).unwrap();
            let _ = b.recv_from(&mut buf);
            sent += 1;
        }
    }
    sent
}

/// Every file under `dir` with this ending, sorted.
fn files_ending(dir: &Path, ending: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(ending) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// Decompresses with the system's own tool and checks that the text is
/// the header, then whole rows of 14 fields. Returns the row count.
fn whole_rows_via(tool: &str, file: &Path) -> usize {
    let out = Command::new(tool).arg(file).output().expect(tool);
    assert!(
        out.status.success(),
        "{tool} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.ends_with('\n'),
        "{} ends in part of a row",
        file.display()
    );
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, common::HEADER);
    reader
        .records()
        .map(|r| assert_eq!(r.expect("a whole CSV row").len(), 14))
        .count()
}

#[test]
fn sigkill_leaves_compressed_files_of_whole_rows() {
    if common::skip_without_root("sigkill_leaves_compressed_files_of_whole_rows") {
        return;
    }
    let _guard = serial();
    for (algo, ending, tool) in [("zstd", ".csv.zst", "zstdcat"), ("gzip", ".csv.gz", "zcat")] {
        let limit = 64 * 1024;
        let (dir, mut tracer) = common::trace_self(
            &format!("kill-{algo}"),
            &["--compress", algo, "--rotate-size", "64K"],
        );
        // Longer than the 1 s flush interval, so frames are on disk.
        udp_traffic(Duration::from_millis(3000));
        assert_eq!(tracer.stop_with(libc::SIGKILL), -1, "killed by a signal");
        let files = files_ending(&dir, ending);
        assert!(!files.is_empty(), "{algo}: no {ending} files");
        assert!(
            common::csv_files(&dir).is_empty(),
            "{algo}: plain files too"
        );
        let rows: usize = files.iter().map(|f| whole_rows_via(tool, f)).sum();
        assert!(rows > 0, "{algo}: no rows reached the disk");
        for f in &files {
            let size = std::fs::metadata(f).unwrap().len();
            assert!(size <= limit, "{algo}: {} is {size} bytes", f.display());
        }
    }
}

#[test]
fn compressed_run_lists_its_files_in_the_manifest() {
    if common::skip_without_root("compressed_run_lists_its_files_in_the_manifest") {
        return;
    }
    let _guard = serial();
    let (dir, mut tracer) = common::trace_self("zmanifest", &["--compress", "zstd"]);
    udp_traffic(Duration::from_millis(500));
    assert_eq!(tracer.stop(), 0);
    let manifest = tracer.manifest();
    let files = manifest["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nw_0001.csv.zst"]);
    let path = files_ending(&dir, ".csv.zst").remove(0);
    assert_eq!(
        files[0]["bytes"].as_u64().unwrap(),
        std::fs::metadata(&path).unwrap().len()
    );
    assert_eq!(
        files[0]["rows"].as_u64().unwrap() as usize,
        whole_rows_via("zstdcat", &path)
    );
}

#[test]
fn max_age_deletes_an_old_run_of_nwtrace_and_nothing_else() {
    if common::skip_without_root("max_age_deletes_an_old_run_of_nwtrace_and_nothing_else") {
        return;
    }
    let _guard = serial();
    let out = common::scratch_dir("maxage");
    let record = |timestamp: &str, extra: &[&str]| {
        let mut args = vec![
            "record",
            "-o",
            out.to_str().unwrap(),
            "--machine-id",
            "m",
            "--timestamp",
            timestamp,
            "--backend",
        ];
        let backend = common::backend();
        args.push(&backend);
        args.extend_from_slice(&["--duration", "1s"]);
        args.extend_from_slice(extra);
        let o = nwtrace(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    record("old", &[]);
    let old = out.join("m/old/nw/nw_0001.csv");
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(8 * 86400))
        .unwrap();
    // Someone else's file in the old run, and a young run: both stay.
    std::fs::write(out.join("m/old/notes.txt"), "mine").unwrap();
    record("young", &[]);
    record("now", &["--max-age", "7d"]);
    assert!(!old.exists(), "the 8-day-old file is gone");
    assert!(!out.join("m/old/nw").exists(), "its emptied nw/ folder too");
    assert!(out.join("m/old/notes.txt").exists());
    assert!(out.join("m/young/nw/nw_0001.csv").exists());
    assert!(out.join("m/now/nw/nw_0001.csv").exists());
}

/// GET http://addr/path with a plain TCP client: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connecting to --metrics");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn metric(body: &str, name_and_labels: &str) -> u64 {
    metric_now(body, name_and_labels).unwrap_or_else(|| panic!("no {name_and_labels} in:\n{body}"))
}

/// The value of a sample, if the page has it yet.
fn metric_now(body: &str, name_and_labels: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))?
        .trim()
        .parse()
        .ok()
}

#[test]
fn metrics_count_known_traffic() {
    if common::skip_without_root("metrics_count_known_traffic") {
        return;
    }
    let _guard = serial();
    // A free port: bind one, then let nwtrace have it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (dir, mut tracer) = common::trace_self("metrics", &["--metrics", &addr]);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..25 {
        a.send_to(&[1; 100], b.local_addr().unwrap()).unwrap();
        b.recv_from(&mut [0; 200]).unwrap();
    }
    // Rows are flushed each second, and the counters pushed in the same
    // tick right after the flush: wait for the 50 rows in the file (not on
    // /metrics, whose every fetch is TCP traffic of this traced process),
    // then fetch the page once.
    common::wait_until("the 50 rows in the CSV", Duration::from_secs(30), || {
        common::csv_files(&dir)
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                text.split_inclusive('\n')
                    .filter(|l| l.ends_with('\n'))
                    .count()
                    .saturating_sub(1)
            })
            .sum::<usize>()
            >= 50
    });
    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let udp_send = r#"nwtrace_operations_total{direction="send",protocol="UDP"}"#;
    let udp_recv = r#"nwtrace_operations_total{direction="receive",protocol="UDP"}"#;
    assert_eq!(metric(&body, udp_send), 25, "{body}");
    assert_eq!(metric(&body, udp_recv), 25, "{body}");
    assert_eq!(
        metric(
            &body,
            r#"nwtrace_bytes_total{direction="send",protocol="UDP"}"#
        ),
        2500
    );
    assert_eq!(metric(&body, "nwtrace_rows_written_total"), 50, "{body}");
    assert_eq!(metric(&body, "nwtrace_events_lost_total"), 0);
    assert_eq!(metric(&body, "nwtrace_files"), 1);
    assert!(body.contains("nwtrace_build_info{version=\""), "{body}");
    // Bounded labels only: no pid or comm.
    assert!(!body.contains("pid=") && !body.contains("comm="), "{body}");
    // Valid Prometheus text, where promtool is installed (Debian's
    // prometheus package; CI installs it).
    if let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else if common::in_ci() {
        panic!("promtool is missing: install Debian's prometheus package");
    }
    let (status, _) = http_get(&addr, "/");
    assert!(status.contains("404"), "{status}");
    assert_eq!(tracer.stop(), 0);
    // Gone with the tracer.
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

/// Restores `kernel.bpf_stats_enabled` when dropped (the statistics cost
/// every BPF program on the host two clock reads a run).
struct BpfStatsOn(String);

impl BpfStatsOn {
    fn new() -> BpfStatsOn {
        const KNOB: &str = "/proc/sys/kernel/bpf_stats_enabled";
        let before = std::fs::read_to_string(KNOB).expect("reading bpf_stats_enabled");
        std::fs::write(KNOB, "1").expect("turning bpf_stats_enabled on");
        BpfStatsOn(before)
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", self.0.trim());
    }
}

#[test]
fn metrics_show_each_programs_runs_while_bpf_stats_are_on() {
    if common::skip_without_root("metrics_show_each_programs_runs_while_bpf_stats_are_on") {
        return;
    }
    let _guard = serial();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _stats = BpfStatsOn::new();
    let (_dir, mut tracer) = common::trace_self("metrics-programs", &["--metrics", &addr]);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..25 {
        a.send_to(&[1; 100], b.local_addr().unwrap()).unwrap();
        b.recv_from(&mut [0; 200]).unwrap();
    }
    // The statistics are pushed about every second: poll for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sends = |body: &str| {
        // Whichever backend runs: its UDP send program is the one that
        // made the rows (tp_sock_send_length, fexit_udp_sendmsg or
        // krp_udp_sendmsg).
        body.lines()
            .filter(|l| l.starts_with("nwtrace_bpf_program_runs_total{"))
            .filter(|l| l.contains("send_length\"") || l.contains("udp_sendmsg\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let body = loop {
        let (status, body) = http_get(&addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        if sends(&body) >= 25 || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(sends(&body) >= 25, "fewer than 25 send runs:\n{body}");
    let time: u64 = body
        .lines()
        .filter(|l| l.starts_with("nwtrace_bpf_program_run_time_ns_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(time > 0, "no run time:\n{body}");
    assert_eq!(tracer.stop(), 0);
}
