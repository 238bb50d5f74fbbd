//! A month of rotations compressed into seconds, as root: `record` with a
//! 1 KiB `--rotate-size` and `--max-files 8` while new TCP connections and
//! new UDP peers come all the time, until the run has started
//! `NWTRACE_LONG_RUN_FILES` files (3,000 by default; `bench/long-run` runs
//! 100,000). Then the manifest must still be its 64 KiB reserve, list the
//! files on disk, fold the deleted ones into counts that add up to the rows
//! written, and `report` must say exactly that (text, JSON, HTML).

use nwtrace_testkit as common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

/// What a manifest is padded to (output::manifest's floor).
const RESERVE: u64 = 64 * 1024;
const KEPT: u64 = 8;

/// New connections and new UDP peers until `stop`: each round one TCP
/// connection (64 bytes sent and read; the server closes first, so the
/// client's port never waits in TIME_WAIT) and four UDP sockets on fresh
/// ports sending one datagram each. Counts the operations in `ops`.
fn churn(stop: &AtomicBool, ops: &AtomicU64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let udp_to = sink.local_addr().unwrap();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut client = TcpStream::connect(to).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[1; 64]).unwrap();
        server.read_exact(&mut buf).unwrap();
        drop(server);
        drop(client);
        for _ in 0..4 {
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.send_to(&[2; 32], udp_to).unwrap();
            sink.recv_from(&mut buf).unwrap();
        }
        ops.fetch_add(10, Ordering::Relaxed);
    }
}

/// The highest `nw_N` number in `nw`: how many files the run started.
fn newest_file_number(nw: &Path) -> u64 {
    std::fs::read_dir(nw)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let digits = name.strip_prefix("nw_")?.strip_suffix(".csv")?;
                    digits.parse::<u64>().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn nw_dir(out: &Path) -> Option<PathBuf> {
    find_file(out, "manifest.json").map(|m| m.parent().unwrap().to_path_buf())
}

/// A figure of the recorder's memory, KiB: `VmHWM:` (peak) or `VmRSS:`.
fn memory_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn report(out: &Path, format: &str) -> String {
    let o = Command::new(nwtrace_bin())
        .args(["report", "--format", format])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// `1234567` -> `1,234,567`, as report prints counts.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn a_month_of_rotations_keeps_the_manifest_flat_and_the_totals_exact() {
    if skip_without_root("a_month_of_rotations_keeps_the_manifest_flat_and_the_totals_exact") {
        return;
    }
    let target: u64 = std::env::var("NWTRACE_LONG_RUN_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let out = scratch_dir("long-run").join("out");
    let pid = std::process::id().to_string();
    let kept = KEPT.to_string();
    let args = ["--pid", &pid, "--rotate-size", "1K", "--max-files", &kept];
    let mut tracer = Tracer::start(&out, &args);
    let nw = nw_dir(&out).expect("the run's manifest");
    let manifest_path = nw.join("manifest.json");
    let first_size = std::fs::metadata(&manifest_path).unwrap().len();

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let churner = {
        let (stop, ops) = (Arc::clone(&stop), Arc::clone(&ops));
        std::thread::spawn(move || churn(&stop, &ops))
    };
    let started = Instant::now();
    // Generous for a loaded CI machine; the long mode scales it.
    let limit = Duration::from_secs(120 + target / 100);
    let mut files = 0;
    let mut most_on_disk = 0;
    // The recorder's RSS as the file count passes each quarter of the
    // target (figures for bench/results; the bound is summary.rs's).
    let mut rss_by_quarter = Vec::new();
    while files < target {
        assert!(
            started.elapsed() < limit,
            "only {files} files after {:?} ({} operations)",
            started.elapsed(),
            ops.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(200));
        files = newest_file_number(&nw);
        let on_disk = csv_files(&nw).len() as u64;
        most_on_disk = most_on_disk.max(on_disk);
        while files * 4 >= target * (rss_by_quarter.len() as u64 + 1) && rss_by_quarter.len() < 4 {
            rss_by_quarter.push(memory_kib(tracer.pid(), "VmRSS:"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    churner.join().unwrap();
    let traffic_secs = started.elapsed().as_secs_f64();
    let rss_kib = memory_kib(tracer.pid(), "VmHWM:");
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));

    // The manifest: still its reserve, small inside, and exact.
    let size = std::fs::metadata(&manifest_path).unwrap().len();
    assert_eq!(
        (first_size, size),
        (RESERVE, RESERVE),
        "padded to the reserve"
    );
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let json_len = text.trim_end().len() as u64;
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["manifest_version"], 2);
    assert_eq!(m["finalized"], true);
    assert!(
        json_len < 8 * 1024,
        "{json_len} bytes of JSON for {files} files"
    );
    let live = m["files"].as_array().unwrap();
    let deleted = &m["deleted_files"];
    let started_files = newest_file_number(&nw);
    assert!(started_files >= target);
    assert!(live.len() as u64 <= KEPT, "{} listed", live.len());
    assert!(
        most_on_disk <= KEPT + 1,
        "{most_on_disk} files on disk at once"
    );
    assert_eq!(
        deleted["files"].as_u64().unwrap() + live.len() as u64,
        started_files,
        "every file started is listed or counted as deleted"
    );
    assert_eq!(deleted["first_file"], "nw_0001.csv");
    assert_eq!(deleted["first_seq"], 1);
    let first_live = live[0]["name"].as_str().unwrap();
    let last_seq = deleted["last_seq"].as_u64().unwrap();
    assert_eq!(first_live, format!("nw_{:04}.csv", last_seq + 1));
    // Rows: the files on disk, read here, plus the deleted ones' count,
    // are every row written.
    let mut rows_on_disk = 0;
    let on_disk = csv_files(&nw);
    assert_eq!(on_disk.len(), live.len(), "{on_disk:?}");
    for (f, listed) in on_disk.iter().zip(live) {
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            listed["name"].as_str().unwrap()
        );
        let rows = read_rows(f).len() as u64;
        assert_eq!(listed["rows"], rows, "{}", f.display());
        rows_on_disk += rows;
    }
    let rows_written = m["rows_written"].as_u64().unwrap();
    let deleted_rows = deleted["rows"].as_u64().unwrap();
    assert_eq!(deleted_rows + rows_on_disk, rows_written);
    assert!(rows_written > started_files, "{rows_written} rows");

    // The report: exact totals, the deleted files in one line.
    let r: serde_json::Value = serde_json::from_str(&report(&out, "json")).unwrap();
    let cov = &r["coverage"];
    assert_eq!(cov["manifest_rows"], rows_written, "{cov}");
    assert_eq!(cov["manifest_rows_read"], rows_on_disk, "{cov}");
    assert_eq!(cov["deleted_file_count"], deleted["files"], "{cov}");
    assert_eq!(cov["rows"], rows_on_disk, "{cov}");
    let n_deleted = deleted["files"].as_u64().unwrap();
    let line = format!("{} files deleted by retention", grouped(n_deleted));
    let text = report(&out, "text");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("deleted by retention ("))
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains(&line), "{text}");
    assert!(
        text.contains(&format!(
            "rows on disk: {} of the {}",
            grouped(rows_on_disk),
            grouped(rows_written)
        )),
        "{text}"
    );
    let html = report(&out, "html");
    assert!(html.contains(&line), "no '{line}' in the HTML");
    // Of the deleted files, only the first and the last are named.
    let deleted_named = html
        .split("nw_")
        .skip(1)
        .filter_map(|rest| rest.split('.').next()?.parse::<u64>().ok())
        .filter(|&n| n <= last_seq)
        .count();
    assert_eq!(deleted_named, 2, "the HTML names deleted files");

    // For bench/long-run: one line of figures.
    eprintln!(
        "LONG-RUN files={started_files} deleted={n_deleted} rows_written={rows_written} rows_on_disk={rows_on_disk} ops={} traffic_s={traffic_secs:.1} manifest_bytes={size} manifest_json_bytes={json_len} most_files_on_disk={most_on_disk} recorder_rss_kib_by_quarter={} recorder_peak_rss_kib={rss_kib} events_lost={}",
        ops.load(Ordering::Relaxed),
        rss_by_quarter
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("/"),
        m["events_lost"]
    );
}
