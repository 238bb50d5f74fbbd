//! `record --on-close CMD` as root: every finished file handed over once,
//! in order, the open file never; a failing or hanging command never stops
//! the rows, nor a prompt stop.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// About 1,000 UDP operations a second on loopback for `secs` (with 8K
/// files: a rotation every ~70 ms), calling `each` every round.
fn udp_for(secs: Duration, mut each: impl FnMut()) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 64];
    while start.elapsed() < secs {
        for _ in 0..10 {
            a.send_to(&[7; 32], b.local_addr().unwrap()).unwrap();
            let _ = b.recv_from(&mut buf);
        }
        each();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tracer on this process, rotating every 8K, running `command` for each
/// finished file; its output folder is `<scratch>/out`.
fn trace_with_on_close(tag: &str, command: &str) -> (PathBuf, Tracer) {
    let out = scratch_dir(tag).join("out");
    let pid = std::process::id().to_string();
    let args = ["--pid", &pid, "--rotate-size", "8K", "--on-close", command];
    let tracer = Tracer::start(&out, &args);
    (out, tracer)
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn every_finished_file_is_handed_over_once_in_order() {
    let _guard = serial();
    if skip_without_root("every_finished_file_is_handed_over_once_in_order") {
        return;
    }
    let dir = scratch_dir("on-close-log");
    let log = dir.join("handed.log");
    let cmd = format!(
        "printf '%s %s\\n' \"$NWTRACE_KIND\" \"$1\" >> {}",
        log.display()
    );
    let (out, mut tracer) = trace_with_on_close("on-close", &cmd);
    let mut checks = 0;
    udp_for(Duration::from_secs(2), || {
        // The open file is the newest one; nothing handed over so far may
        // be it (files listed after the log was read can only be newer).
        let handed = log_lines(&log);
        let newest = csv_files(&out).pop();
        if let (Some(last), Some(newest)) = (handed.last(), newest) {
            assert!(
                !last.ends_with(newest.to_str().unwrap()),
                "handed over the open file {last}"
            );
            checks += 1;
        }
    });
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    assert!(checks > 3, "the log was checked while tracing: {checks}");

    let files = csv_files(&out);
    assert!(files.len() > 3, "8K rotation made several files: {files:?}");
    let manifest = tracer.manifest();
    let mut want: Vec<String> = files
        .iter()
        .map(|f| format!("csv {}", f.display()))
        .collect();
    let manifest_path = find_file(&out, "manifest.json").unwrap();
    want.push(format!("manifest {}", manifest_path.display()));
    let summary_path = find_file(&out, "summary.json").expect("record wrote summary.json");
    want.push(format!("summary {}", summary_path.display()));
    assert_eq!(
        log_lines(&log),
        want,
        "each file once, in order, then the manifest, then the summary"
    );
    let stats = &manifest["on_close"];
    assert_eq!(
        stats["queued"],
        files.len() as u64,
        "{}",
        manifest["on_close"]
    );
    assert_eq!(
        stats["succeeded"],
        files.len() as u64,
        "{}",
        manifest["on_close"]
    );
    assert_eq!(stats["failed"], 0);
    assert_eq!(stats["dropped"], 0);
    assert_eq!(stats["unfinished"], 0);
}

#[test]
fn a_failing_command_never_stops_the_rows() {
    let _guard = serial();
    if skip_without_root("a_failing_command_never_stops_the_rows") {
        return;
    }
    let (out, mut tracer) = trace_with_on_close("on-close-fail", "exit 3");
    udp_for(Duration::from_secs(1), || {});
    assert_eq!(tracer.stop(), 0);
    let manifest = tracer.manifest();
    let files = csv_files(&out);
    assert!(files.len() > 1);
    let rows: usize = files.iter().map(|f| read_rows(f).len()).sum();
    assert_eq!(manifest["rows_written"], rows as u64);
    assert!(rows > 100);
    assert_eq!(manifest["finalized"], true);
    assert_eq!(
        manifest["on_close"]["failed"],
        files.len() as u64,
        "{}",
        manifest["on_close"]
    );
    assert_eq!(manifest["on_close"]["succeeded"], 0);
}

#[test]
fn a_hanging_command_neither_blocks_rows_nor_the_stop() {
    let _guard = serial();
    if skip_without_root("a_hanging_command_neither_blocks_rows_nor_the_stop") {
        return;
    }
    let (out, mut tracer) = trace_with_on_close("on-close-hang", "sleep 1000");
    udp_for(Duration::from_secs(1), || {});
    // Rows keep reaching the files while the first command hangs.
    let files = csv_files(&out);
    assert!(files.len() > 2, "rotation went on: {files:?}");
    let asked = Instant::now();
    assert_eq!(tracer.stop(), 0);
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    let manifest = tracer.manifest();
    assert_eq!(manifest["finalized"], true);
    assert!(
        manifest["on_close"]["unfinished"].as_u64().unwrap() >= 1,
        "{}",
        manifest["on_close"]
    );
    // The hung command was stopped, not left behind.
    let left = std::process::Command::new("pgrep")
        .args(["-f", "^sleep 1000$"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "sleep 1000 left running");
}
