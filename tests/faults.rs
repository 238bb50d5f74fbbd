//! Bad input, faults during a run, and what a stop leaves on disk.
//!
//! The root tests here run one at a time (they count the kernel's BPF
//! programs and mount filesystems), behind SERIAL.

use nwtrace_testkit as common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn nwtrace(args: &[&str]) -> Output {
    Command::new(nwtrace_bin())
        .args(args)
        .output()
        .expect("running nwtrace")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code and stderr of a usage mistake: 2, one line, and nothing made.
fn assert_usage_error(args: &[&str], mentions: &str) {
    let out_dir = scratch_dir("usage");
    let target = out_dir.join("out");
    let mut full = vec!["record", "-o", target.to_str().unwrap()];
    full.extend_from_slice(args);
    let out = nwtrace(&full);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.starts_with("nwtrace: error: "), "{args:?}: {err}");
    assert!(
        err.contains(mentions),
        "{args:?}: {err:?} does not mention {mentions:?}"
    );
    assert!(!target.exists(), "{args:?}: created {}", target.display());
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    assert_usage_error(&["--bogus"], "--bogus");
    assert_usage_error(&["--duration", "5x"], "30s");
    assert_usage_error(&["--duration", "0s"], "longer than 0");
    assert_usage_error(&["--rotate-size", "12Q"], "unit");
    assert_usage_error(&["--ring-size", "3M"], "power of two");
    assert_usage_error(&["--max-files", "0"], "--max-files");
    assert_usage_error(&["--pid", "abc"], "--pid");
    assert_usage_error(&["--pid", "999999999"], "no process has pid 999999999");
    assert_usage_error(&["--machine-id", "../etc"], "--machine-id");
    assert_usage_error(&["--timestamp", "a/b"], "--timestamp");
    assert_usage_error(&["--timestamp", ".."], "--timestamp");
    assert_usage_error(&["--comm", "a-name-longer-than-15"], "15 bytes");
    assert_usage_error(&["--backend", "dtrace"], "dtrace");

    let file = scratch_dir("notdir").join("file");
    std::fs::write(&file, "x").unwrap();
    let out = nwtrace(&["record", "-o", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("is not a folder"));
}

/// Runs `nwtrace record` to completion with `args` and returns its output.
fn record(out_dir: &Path, args: &[&str]) -> Output {
    let mut full = vec!["record", "-o", out_dir.to_str().unwrap(), "--backend"];
    let backend = backend();
    full.push(&backend);
    full.extend_from_slice(args);
    nwtrace(&full)
}

#[test]
fn not_root_is_a_clear_error() {
    let _guard = serial();
    if skip_without_root("not_root_is_a_clear_error") {
        return;
    }
    let out_dir = scratch_dir("nobody");
    let target = out_dir.join("out");
    // A copy nobody can reach: the checkout may sit in a folder nobody
    // cannot traverse (a clone in /root, or a 0700 mktemp -d folder).
    let bin_dir = out_dir.join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let bin = bin_dir.join("nwtrace");
    std::fs::copy(nwtrace_bin(), &bin).unwrap();
    for p in [&out_dir, &bin_dir, &bin] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = Command::new(&bin)
        .args(["record", "-o", target.to_str().unwrap(), "--duration", "1s"])
        .env_clear()
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running nwtrace as nobody");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("needs root") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert!(!target.exists());
}

use std::os::unix::process::CommandExt;

/// Runs `script` with `sh` in a private mount namespace (unshare -m).
fn in_mount_namespace(script: &str) -> Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .output()
        .expect("running unshare")
}

#[test]
fn missing_btf_and_unmountable_tracefs_are_clear_errors() {
    let _guard = serial();
    if skip_without_root("missing_btf_and_unmountable_tracefs_are_clear_errors") {
        return;
    }
    let bin = nwtrace_bin();
    let out_dir = scratch_dir("nobtf");
    // A tmpfs over /sys/kernel hides BTF, tracefs and debugfs at once.
    let script = format!(
        "mount -t tmpfs none /sys/kernel && exec {} record -o {} --duration 1s",
        bin.display(),
        out_dir.join("out").display()
    );
    let out = in_mount_namespace(&script);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no BTF") && err.contains("CONFIG_DEBUG_INFO_BTF"),
        "{err}"
    );

    // BTF back (a copy), but no folder to mount tracefs on.
    let script = format!(
        "cp /sys/kernel/btf/vmlinux /tmp/nwtrace-btf-$$ && mount -t tmpfs none /sys/kernel && \
         mkdir -p /sys/kernel/btf && cp /tmp/nwtrace-btf-$$ /sys/kernel/btf/vmlinux && \
         rm /tmp/nwtrace-btf-$$ && exec {} record -o {} --duration 1s",
        bin.display(),
        out_dir.join("out").display()
    );
    let out = in_mount_namespace(&script);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("tracefs") && err.contains("mount -t tracefs"),
        "{err}"
    );
    assert!(!out_dir.join("out").exists());
}

/// A small filesystem of our own, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(tag: &str, options: &str) -> SmallFs {
        let dir = scratch_dir(tag);
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                options,
                "nwtrace-test",
                dir.to_str().unwrap(),
            ])
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs {options}");
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Sends UDP datagrams on loopback until `stop` says so or `limit` passes.
fn udp_traffic(limit: Duration, stop: impl Fn() -> bool) -> u64 {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_nonblocking(true).unwrap();
    let to = b.local_addr().unwrap();
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 64];
    while start.elapsed() < limit && !stop() {
        for _ in 0..100 {
            a.send_to(&[7; 32], to).unwrap();
            let _ = b.recv_from(&mut buf);
            sent += 1;
        }
    }
    sent
}

fn assert_whole_rows(dir: &Path) -> usize {
    let files = csv_files(dir);
    assert!(!files.is_empty(), "no CSV under {}", dir.display());
    files.iter().map(|f| read_rows(f).len()).sum()
}

fn manifest_under(dir: &Path) -> serde_json::Value {
    let path = manifest_path_under(dir)
        .unwrap_or_else(|| panic!("no manifest.json under {}", dir.display()));
    serde_json::from_slice(&std::fs::read(path).unwrap()).expect("manifest is JSON")
}

fn manifest_path_under(dir: &Path) -> Option<std::path::PathBuf> {
    find_file(dir, "manifest.json")
}

#[test]
fn disk_full_stops_cleanly_with_whole_rows() {
    let _guard = serial();
    if skip_without_root("disk_full_stops_cleanly_with_whole_rows") {
        return;
    }
    let fs = SmallFs::mount("full", "size=256k");
    let pid = std::process::id().to_string();
    let mut tracer = Tracer::start(&fs.0, &["--pid", &pid]);
    let tracer_pid = tracer.pid();
    let alive =
        || Path::new(&format!("/proc/{tracer_pid}/stat")).exists() && !is_zombie(tracer_pid);
    udp_traffic(Duration::from_secs(60), || !alive());
    let code = tracer.wait();
    let err = tracer.stderr.join("\n");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("captured rows could not be written"), "{err}");
    let rows = assert_whole_rows(&fs.0);
    assert!(rows > 100, "only {rows} rows before the disk filled");
    let manifest = manifest_under(&fs.0);
    assert_eq!(manifest["finalized"], true, "{manifest}");
    assert!(
        manifest["exit_reason"]
            .as_str()
            .unwrap()
            .contains("write error"),
        "{manifest}"
    );
    assert!(manifest["rows_lost"].as_u64().unwrap() > 0, "{manifest}");
    assert_eq!(manifest["rows_written"].as_u64().unwrap() as usize, rows);
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn unwritable_output_is_a_clear_error() {
    let _guard = serial();
    if skip_without_root("unwritable_output_is_a_clear_error") {
        return;
    }
    let fs = SmallFs::mount("readonly", "ro,size=64k");
    let out = record(&fs.0, &["--duration", "1s"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("Read-only file system") && err.contains(fs.0.to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn signals_stop_cleanly_and_finalise_the_manifest() {
    let _guard = serial();
    if skip_without_root("signals_stop_cleanly_and_finalise_the_manifest") {
        return;
    }
    for (signal, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGHUP, "SIGHUP"),
    ] {
        let (dir, mut tracer) = trace_self(&format!("sig{signal}"), &[]);
        udp_traffic(Duration::from_millis(300), || false);
        let code = tracer.stop_with(signal);
        assert_eq!(code, 0, "{name}: {}", tracer.stderr.join("\n"));
        let rows = assert_whole_rows(&dir);
        assert!(rows > 0);
        let manifest = manifest_under(&dir);
        assert_eq!(manifest["finalized"], true);
        assert_eq!(manifest["exit_reason"], name);
        assert_eq!(manifest["rows_written"].as_u64().unwrap() as usize, rows);
        assert_eq!(manifest["events_lost"], 0);
        assert!(
            manifest["command_line"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "--pid")
        );
    }
}

#[test]
fn a_second_sigint_exits_at_once() {
    let _guard = serial();
    if skip_without_root("a_second_sigint_exits_at_once") {
        return;
    }
    let (dir, mut tracer) = trace_self("sigint2", &["--ring-size", "64M"]);
    let signal = |sig| {
        // SAFETY: signals to our own child.
        unsafe { libc::kill(tracer.pid(), sig) };
    };
    // A stopped tracer lets a backlog build up in its ring, so that the
    // drain after the first SIGINT is still running when the second comes
    // (two SIGINTs pending at once would merge into one).
    signal(libc::SIGSTOP);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| udp_traffic(Duration::from_millis(1000), || false));
        }
    });
    signal(libc::SIGCONT);
    signal(libc::SIGINT);
    // The second SIGINT must come after the first was delivered, or the
    // two merge into one pending signal.
    wait_until(
        "the first SIGINT to be delivered",
        Duration::from_secs(10),
        || !signal_pending(tracer.pid(), libc::SIGINT),
    );
    signal(libc::SIGINT);
    assert_eq!(tracer.wait(), 130, "{}", tracer.stderr.join("\n"));
    assert_whole_rows(&dir);
    // It died on purpose: the manifest says it never finished.
    assert_eq!(manifest_under(&dir)["finalized"], false);
}

#[test]
fn sigkill_leaves_whole_rows_and_no_probes() {
    let _guard = serial();
    if skip_without_root("sigkill_leaves_whole_rows_and_no_probes") {
        return;
    }
    let (dir, mut tracer) = trace_self("sigkill", &[]);
    let held = prog_ids_held_by(tracer.pid());
    assert!(
        held.len() >= 3,
        "the tracer should hold its programs: {held:?}"
    );
    // Longer than the 1 s flush interval, so rows must be on disk.
    udp_traffic(Duration::from_millis(2500), || false);
    let code = tracer.stop_with(libc::SIGKILL);
    assert_eq!(code, -1, "killed by a signal");
    let rows = assert_whole_rows(&dir);
    assert!(rows > 0, "nothing reached the disk within 2.5 s");
    assert_eq!(manifest_under(&dir)["finalized"], false);
    // BPF links and programs are owned by the process's descriptors (nothing
    // is pinned): they go away with it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let outliving = || -> Vec<u32> {
        let loaded = loaded_prog_ids();
        held.iter()
            .copied()
            .filter(|id| loaded.contains(id))
            .collect()
    };
    while !outliving().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        outliving(),
        Vec::<u32>::new(),
        "programs outlived the killed tracer"
    );
}

#[test]
fn a_trickle_of_rows_reaches_the_files_within_seconds() {
    let _guard = serial();
    if skip_without_root("a_trickle_of_rows_reaches_the_files_within_seconds") {
        return;
    }
    let (dir, mut tracer) = trace_self("trickle", &[]);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for _ in 0..5 {
        a.send_to(b"x", to).unwrap();
    }
    // Far below any wakeup threshold: only the reader's own timer and the
    // once-a-second flush bring these rows to disk while it runs.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rows = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        rows = assert_whole_rows(&dir);
        if rows >= 5 {
            break;
        }
    }
    assert_eq!(tracer.stop(), 0);
    assert_eq!(rows, 5, "rows on disk while tracing");
}

#[test]
fn ring_overflow_is_counted_and_tracing_goes_on() {
    let _guard = serial();
    if skip_without_root("ring_overflow_is_counted_and_tracing_goes_on") {
        return;
    }
    let (dir, mut tracer) = trace_self("overflow", &["--ring-size", "4K"]);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| udp_traffic(Duration::from_millis(1500), || false));
        }
    });
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    let manifest = manifest_under(&dir);
    let lost = manifest["events_lost"].as_u64().unwrap();
    assert!(lost > 0, "a 4K ring under a flood should lose events");
    // The person at the terminal is told too.
    let said = format!("; {lost} events lost (the ring buffer was full");
    assert!(
        tracer.stderr.iter().any(|l| l.contains(&said)),
        "{:?}",
        tracer.stderr
    );
    let rows = assert_whole_rows(&dir);
    assert!(
        rows > 1000,
        "tracing should go on past the first loss: {rows} rows"
    );
}

#[test]
fn retention_keeps_the_newest_files() {
    let _guard = serial();
    if skip_without_root("retention_keeps_the_newest_files") {
        return;
    }
    let (dir, mut tracer) = trace_self("retention", &["--rotate-size", "8K", "--max-files", "3"]);
    udp_traffic(Duration::from_millis(800), || false);
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    let files = csv_files(&dir);
    assert_eq!(files.len(), 3, "{files:?}");
    let manifest = manifest_under(&dir);
    // The manifest lists the files on disk and counts the deleted ones
    // (docs/output.md, "The run manifest").
    let listed = manifest["files"].as_array().unwrap();
    let deleted = &manifest["deleted_files"];
    assert!(
        deleted["files"].as_u64().unwrap() > 0,
        "traffic should have rotated past 3 files: {manifest}"
    );
    assert!(listed.iter().all(|f| f["deleted"] == false));
    let kept: Vec<_> = listed
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let on_disk: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, on_disk);
    // The newest ones: the three the run created after the deleted ones.
    let after = deleted["last_seq"].as_u64().unwrap();
    let newest: Vec<_> = (after + 1..after + 4)
        .map(|n| format!("nw_{n:04}.csv"))
        .collect();
    assert_eq!(kept, newest);
    let rows: u64 = listed.iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(
        rows + deleted["rows"].as_u64().unwrap(),
        manifest["rows_written"].as_u64().unwrap()
    );
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 8192);
    }
}

/// `nwtrace record ... 2>&1 | head`: the reader of stderr goes away, and
/// the run still records and stops cleanly, with its manifest finalised.
#[test]
fn a_closed_stderr_does_not_stop_a_recording() {
    let _guard = serial();
    if skip_without_root("a_closed_stderr_does_not_stop_a_recording") {
        return;
    }
    let dir = scratch_dir("closed-stderr");
    let pid = std::process::id().to_string();
    let mut child = Command::new(nwtrace_bin())
        .args(["record", "--duration", "3s", "--pid", &pid, "-o"])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads: every message nwtrace writes hits EPIPE.
    drop(child.stderr.take());
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // Traffic until the tracer is attached and has written it.
    while manifest_path_under(&dir).is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    udp_traffic(Duration::from_millis(300), || false);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let manifest = manifest_under(&dir);
    assert_eq!(manifest["finalized"], true);
    assert_eq!(manifest["exit_reason"], "duration elapsed");
    assert!(assert_whole_rows(&dir) > 0);
}

/// More io_uring requests in flight than nwtrace's table of them holds
/// (16384): each one beyond is counted as lost, in the manifest and in the
/// summary, never forgotten silently.
#[test]
fn uring_requests_beyond_the_table_are_counted_as_lost() {
    use io_uring::{opcode, types};
    use std::os::fd::AsRawFd;
    let _guard = serial();
    if skip_without_root("uring_requests_beyond_the_table_are_counted_as_lost") {
        return;
    }
    let has_req = |event: &str| {
        std::fs::read_to_string(format!(
            "/sys/kernel/tracing/events/io_uring/{event}/format"
        ))
        .is_ok_and(|f| f.contains("field:void * req;"))
    };
    const TABLE: u64 = 16384;
    const BEYOND: u64 = 300;
    let (dir, mut tracer) = trace_self("uring-full", &[]);
    // The tracer has mounted tracefs by now.
    if !(has_req("io_uring_complete") && has_req("io_uring_submit_req")) {
        tracer.stop();
        skip_for_missing_kernel_feature(
            "uring_requests_beyond_the_table_are_counted_as_lost",
            "the io_uring tracepoints carry no request here (6.4+ needed)",
        );
        return;
    }
    let Ok(mut ring) = io_uring::IoUring::new(4096) else {
        tracer.stop();
        skip_for_missing_kernel_feature(
            "uring_requests_beyond_the_table_are_counted_as_lost",
            "no io_uring here",
        );
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let mut buf = [0u8; 16];
    // Receives that wait for data that never comes: all stay in flight.
    for i in 0..TABLE + BEYOND {
        let sqe = opcode::Recv::new(types::Fd(server.as_raw_fd()), buf.as_mut_ptr(), 16)
            .build()
            .user_data(i);
        // SAFETY: buf outlives the ring, which cancels the requests when
        // it is dropped below.
        while unsafe { ring.submission().push(&sqe) }.is_err() {
            ring.submit().expect("io_uring_enter");
        }
    }
    // No wait is needed before the stop: the programs count a request
    // lost at io_uring_submit_req, which runs inside io_uring_enter, so
    // every count is in the map when submit() returns; and the stop
    // detaches the programs before it reads the map, so the completions
    // that dropping the ring brings (cancellations) cannot change it.
    ring.submit().expect("io_uring_enter");
    drop(ring);
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    let manifest = manifest_under(&dir);
    assert_eq!(manifest["uring_requests_lost"], BEYOND, "{manifest}");
    assert_eq!(manifest["events_lost"], BEYOND, "{manifest}");
    let said = format!("; {BEYOND} events lost (io_uring requests issued while 16384");
    assert!(
        tracer.stderr.iter().any(|l| l.contains(&said)),
        "{:?}",
        tracer.stderr
    );
}
