//! Run summaries (`nw/summary.json`): `report` merging them gives the same
//! figures as one pass over the rows; a summary that does not match its
//! files is ignored and the report says why; `nwtrace summarize` writes
//! the missing ones and refuses bad input; a real run writes one, and a
//! killed run gets one from `summarize`.
//!
//! The trees come from tests/fleet/gen_tree.py (rows written by Python's
//! csv module, with its own oracle), not from nwtrace.

use nwtrace_testkit as common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Tracer, find_file, nwtrace_bin, scratch_dir, skip_without_root};
use serde_json::Value;

fn gen_tree(dir: &Path, machines: u32, runs: u32, rows: u32) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/gen_tree.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .args(["--machines", &machines.to_string()])
        .args(["--runs", &runs.to_string()])
        .args(["--rows", &rows.to_string()])
        .output()
        .expect("python3 runs gen_tree.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the oracle's JSON")
}

fn nwtrace(args: &[&str], paths: &[&Path]) -> Output {
    Command::new(nwtrace_bin())
        .args(args)
        .args(paths)
        .output()
        .expect("running nwtrace")
}

/// `report --format json` and its stderr.
fn report(tree: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["report", "--format", "json"];
    args.extend_from_slice(extra);
    let out = nwtrace(&args, &[tree]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// The report without its `sources`, which says how it was made.
fn figures(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("sources");
    v
}

fn sources(v: &Value) -> Vec<(String, String, Option<String>)> {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                format!(
                    "{}/{}",
                    s["machine_id"].as_str().unwrap(),
                    s["run"].as_str().unwrap()
                ),
                s["source"].as_str().unwrap().to_string(),
                s["reason"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn summarize(paths: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec!["summarize"];
    args.extend_from_slice(extra);
    nwtrace(&args, paths)
}

fn summaries_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "summary.json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn merging_summaries_equals_one_pass_over_the_rows() {
    let dir = scratch_dir("sum-merge");
    let tree = dir.join("tree");
    let truth = gen_tree(&tree, 4, 3, 3000);

    // The tree has more conversations (about 5,400) than report tracks
    // by default (2,048): first compare with room for all of them.
    let all = ["--max-conversations", "100000"];
    let (csv, _) = report(&tree, &all);
    assert!(
        sources(&csv)
            .iter()
            .all(|s| s.1 == "csv" && s.2.as_deref() == Some("no summary.json"))
    );
    assert!(csv["conversations"].as_array().unwrap().len() > 4096);

    let out = summarize(&[&tree], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summaries_under(&tree).len(), 12);

    let (merged, stderr) = report(&tree, &all);
    let s = sources(&merged);
    assert_eq!(s.len(), 12);
    assert!(s.iter().all(|s| s.1 == "summary" && s.2.is_none()), "{s:?}");
    assert!(
        stderr.contains("12 runs from summaries, 0 from CSV"),
        "{stderr}"
    );
    assert_eq!(figures(csv.clone()), figures(merged.clone()));

    // With the default bound, the summaries merge with no bound and only
    // then keep the heaviest 2,048: every conversation listed is exact
    // (one pass over the CSV evicts along the way, and what it lists is a
    // lower bound).
    let (capped, _) = report(&tree, &[]);
    let listed = capped["conversations"].as_array().unwrap();
    assert_eq!(listed.len(), 2048);
    let exact = csv["conversations"].as_array().unwrap();
    for c in listed {
        assert!(exact.contains(c), "{c}");
    }
    let t = &capped["tables"]["conversations"];
    let tracked_ops: u64 = listed.iter().map(|c| c["ops"].as_u64().unwrap()).sum();
    assert_eq!(
        tracked_ops + t["other_ops"].as_u64().unwrap(),
        truth["rows"].as_u64().unwrap()
    );
    let (capped_csv, _) = report(&tree, &["--no-summaries"]);
    let mut other = figures(capped.clone());
    let mut other_csv = figures(capped_csv);
    for v in [&mut other, &mut other_csv] {
        let o = v.as_object_mut().unwrap();
        o.remove("conversations");
        o.remove("tables");
    }
    assert_eq!(other, other_csv, "every other table is the same either way");

    // Against the generator's own count, not only against ourselves.
    assert_eq!(merged["totals"]["ops"], truth["rows"]);
    for p in merged["processes"].as_array().unwrap() {
        let key = format!(
            "{}|{}|{}",
            p["machine_id"].as_str().unwrap(),
            p["pid"],
            p["comm"].as_str().unwrap()
        );
        let want = &truth["processes"][&key];
        for f in [
            "ops",
            "sends",
            "receives",
            "bytes_sent",
            "bytes_received",
            "errors",
        ] {
            assert_eq!(p[f], want[f], "{key} {f}");
        }
    }

    // Some runs from summaries, some from CSV: still the same figures.
    let gone = summaries_under(&tree);
    std::fs::remove_file(&gone[0]).unwrap();
    std::fs::remove_file(&gone[5]).unwrap();
    let (mixed, _) = report(&tree, &all);
    let n_csv = sources(&mixed).iter().filter(|s| s.1 == "csv").count();
    assert_eq!(n_csv, 2);
    assert_eq!(figures(csv.clone()), figures(mixed));

    // The same in text, and with --machine (a whole-file choice).
    let text = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--format",
            "text",
            "--max-conversations",
            "100000",
        ];
        args.extend_from_slice(extra);
        let out = nwtrace(&args, &[&tree]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(text(&[]), text(&["--no-summaries"]));
    let (one, _) = report(&tree, &["--machine", "machine03"]);
    let (one_csv, _) = report(&tree, &["--machine", "machine03", "--no-summaries"]);
    assert!(sources(&one).iter().all(|s| s.1 == "summary"));
    assert_eq!(figures(one), figures(one_csv));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_summary_that_does_not_match_its_files_is_ignored_and_said() {
    let dir = scratch_dir("sum-mismatch");
    let tree = dir.join("tree");
    gen_tree(&tree, 2, 2, 1500);
    assert!(summarize(&[&tree], &[]).status.success());
    let run = tree.join("machine01/20261120T235957Z/nw");

    // A row appended after the summary was made.
    let csv = run.join("nw_0001.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let mut text = original.clone();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&last);
    text.push('\n');
    std::fs::write(&csv, text).unwrap();
    let (r, stderr) = report(&tree, &[]);
    let s = sources(&r);
    let bad = s
        .iter()
        .find(|s| s.0 == "machine01/20261120T235957Z")
        .unwrap();
    assert_eq!(bad.1, "csv");
    let why = bad.2.as_deref().unwrap();
    assert!(
        why.contains("nw_0001.csv has") && why.contains("bytes on disk"),
        "{why}"
    );
    assert_eq!(s.iter().filter(|s| s.1 == "summary").count(), 3);
    assert!(
        stderr.contains("summary not used for machine01/20261120T235957Z"),
        "{stderr}"
    );
    // The figures are the rows on disk, the appended one included.
    let (all_csv, _) = report(&tree, &["--no-summaries"]);
    assert_eq!(figures(r.clone()), figures(all_csv));
    assert_eq!(r["totals"]["ops"], 4 * 1500 + 1);

    // summarize sees the stale summary and rewrites it, but the final
    // manifest still says 1500 rows: report keeps reading the CSV.
    let out = summarize(&[&tree], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("rewriting it") && err.contains("1 summaries written, 3 kept"),
        "{err}"
    );
    let (r, _) = report(&tree, &[]);
    let why = sources(&r)[0].2.clone().unwrap();
    assert!(
        why.contains("the manifest says 1500 rows and 156499 bytes, summary.json 1501"),
        "{why}"
    );

    // The file back as the manifest says: a summary made from it is used.
    std::fs::write(&csv, &original).unwrap();
    assert!(summarize(&[&tree], &[]).status.success());
    let (r, _) = report(&tree, &[]);
    assert!(
        sources(&r).iter().all(|s| s.1 == "summary"),
        "{:?}",
        sources(&r)
    );

    // A summary whose figures were edited no longer adds up.
    let path = run.join("summary.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    doc["aggregate"]["totals"]["ops"] = Value::from(5);
    std::fs::write(&path, doc.to_string()).unwrap();
    let (r, _) = report(&tree, &[]);
    let why = sources(&r)[0].2.clone().unwrap();
    assert!(
        why.contains("summary.json's files hold 1500 rows, its totals 5"),
        "{why}"
    );

    // A schema this nwtrace does not read.
    doc["aggregate"]["totals"]["ops"] = Value::from(1500);
    doc["schema_version"] = Value::from(99);
    std::fs::write(&path, doc.to_string()).unwrap();
    let (r, _) = report(&tree, &[]);
    let why = sources(&r)[0].2.clone().unwrap();
    assert!(why.contains("schema_version 99"), "{why}");

    // A final manifest that disagrees with the summary.
    assert!(summarize(&[&tree], &["--force"]).status.success());
    let other = tree.join("machine02/20261120T235957Z/nw/manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    m["files"][0]["rows"] = Value::from(7);
    std::fs::write(&other, m.to_string()).unwrap();
    let (r, _) = report(&tree, &[]);
    let s = sources(&r);
    let bad = s
        .iter()
        .find(|s| s.0 == "machine02/20261120T235957Z")
        .unwrap();
    assert!(
        bad.2
            .as_deref()
            .unwrap()
            .contains("the manifest says 7 rows"),
        "{bad:?}"
    );

    // A row filter or a time window: every run from its CSV, said why.
    let (r, stderr) = report(&tree, &["--pid", "1001"]);
    assert_eq!(
        stderr.trim(),
        "nwtrace: every run from its CSV: --pid asks for single rows, which summaries do not keep"
    );
    let (_, quiet) = report(&tree, &["--no-summaries"]);
    assert_eq!(quiet, "", "--no-summaries is asked for: nothing to explain");
    assert!(
        sources(&r)
            .iter()
            .all(|s| s.1 == "csv" && s.2.as_deref() == Some("--pid asks for single rows"))
    );
    let (r, _) = report(&tree, &["--since", "10s"]);
    assert!(
        sources(&r)
            .iter()
            .all(|s| s.2.as_deref() == Some("--since asks for single rows"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn summarize_refuses_bad_input_and_keeps_valid_summaries() {
    let dir = scratch_dir("sum-cli");
    let tree = dir.join("tree");
    gen_tree(&tree, 1, 2, 500);

    // A path that is not there: usage error, one line.
    let out = summarize(&[&dir.join("nope")], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope"), "{err}");

    // A folder with no recording.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_eq!(summarize(&[&empty], &[]).status.code(), Some(2));

    // A damaged row: exit 1, the file and line named, no summary for that
    // run, the other run summarised.
    let csv = tree.join("machine01/20261120T235957Z/nw/nw_0001.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[41] = lines[41]
        .replacen(",TCP,", ",SCTP,", 1)
        .replacen(",UDP,", ",SCTP,", 1);
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let out = summarize(&[&tree], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:42: damaged CSV", csv.display())),
        "{err}"
    );
    assert!(
        err.contains("1 summaries written, 0 kept, 0 skipped, 1 failed"),
        "{err}"
    );
    assert_eq!(summaries_under(&tree).len(), 1);

    // A valid summary is kept unless --force.
    let good = summaries_under(&tree)[0].clone();
    std::fs::write(&csv, text).unwrap();
    let before = std::fs::read(&good).unwrap();
    let mut doc: Value = serde_json::from_slice(&before).unwrap();
    doc["made_by"] = Value::from("marked");
    std::fs::write(&good, doc.to_string()).unwrap();
    let out = summarize(&[&tree], &[]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("matches its files; kept (--force rewrites it)"),
        "{err}"
    );
    let kept: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    assert_eq!(kept["made_by"], "marked");
    assert!(summarize(&[&tree], &["--force"]).status.success());
    let forced: Value = serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    assert_eq!(forced["made_by"], "summarize");
    assert_eq!(forced["schema_version"], 2);

    // A symlink where the summary goes is left alone.
    std::fs::remove_file(&good).unwrap();
    std::os::unix::fs::symlink(dir.join("elsewhere"), &good).unwrap();
    let out = summarize(&[&tree], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.join("elsewhere").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

const COMM: &str = "nwsum-traffic";

/// UDP datagrams from a thread with a known comm, for `secs` seconds.
/// UDP sends and receives from a thread named COMM for `secs` seconds;
/// returns how many of each it made.
fn traffic(secs: u64) -> usize {
    std::thread::Builder::new()
        .name(COMM.into())
        .spawn(move || {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = rx.local_addr().unwrap();
            let mut buf = [0u8; 4096];
            let end = std::time::Instant::now() + Duration::from_secs(secs);
            let mut i = 0usize;
            while std::time::Instant::now() < end {
                tx.send_to(&vec![1u8; 1 + i % 3000], to).unwrap();
                rx.recv_from(&mut buf).unwrap();
                i += 1;
                // The traffic's pace (part of the scenario), not a wait.
                std::thread::sleep(Duration::from_micros(200));
            }
            i
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_real_run_writes_a_summary_that_report_uses() {
    if skip_without_root("a_real_run_writes_a_summary_that_report_uses") {
        return;
    }
    let dir = scratch_dir("sum-record");
    let mut tracer = Tracer::start(&dir, &["--comm", COMM, "--rotate-size", "64K"]);
    traffic(2);
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    let manifest = tracer.manifest();
    let path = find_file(&dir, "summary.json").expect("record wrote summary.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["made_by"], "record");
    assert_eq!(doc["exact"], true);
    assert!(manifest["rows_written"].as_u64().unwrap() > 100);
    assert_eq!(doc["rows"], manifest["rows_written"]);
    let files: Vec<_> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].clone(), f["rows"].clone(), f["bytes"].clone()))
        .collect();
    assert!(files.len() > 1, "rotated: {files:?}");
    let listed: Vec<_> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].clone(), f["rows"].clone(), f["bytes"].clone()))
        .collect();
    assert_eq!(files, listed);

    let (merged, _) = report(&dir, &[]);
    assert!(
        sources(&merged).iter().all(|s| s.1 == "summary"),
        "{:?}",
        sources(&merged)
    );
    let (csv, _) = report(&dir, &["--no-summaries"]);
    assert_eq!(figures(merged), figures(csv));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whole rows of `comm` in the CSV files under `dir` now, while a tracer
/// may still be writing them (a last line without its newline is not
/// counted).
fn rows_on_disk(dir: &Path, comm: &str) -> usize {
    common::csv_files(dir)
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.split_inclusive('\n')
                .filter(|l| l.ends_with('\n') && l.split(',').nth(2) == Some(comm))
                .count()
        })
        .sum()
}

#[test]
fn a_killed_run_has_no_summary_until_summarize_makes_one() {
    if skip_without_root("a_killed_run_has_no_summary_until_summarize_makes_one") {
        return;
    }
    let dir = scratch_dir("sum-killed");
    let mut tracer = Tracer::start(&dir, &["--comm", COMM]);
    let sends = traffic(2);
    // Rows reach the file at least every second: kill once all are there.
    common::wait_until(
        "every row of the traffic on disk",
        Duration::from_secs(30),
        || rows_on_disk(&dir, COMM) >= 2 * sends,
    );
    tracer.stop_with(libc::SIGKILL);
    assert_eq!(tracer.manifest()["finalized"], false);
    assert!(find_file(&dir, "summary.json").is_none());

    let (before, _) = report(&dir, &[]);
    assert_eq!(sources(&before)[0].2.as_deref(), Some("no summary.json"));
    assert!(before["totals"]["ops"].as_u64().unwrap() > 100);

    let out = summarize(&[&dir], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = find_file(&dir, "summary.json").expect("summarize wrote it");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["made_by"], "summarize");

    let (after, _) = report(&dir, &[]);
    assert_eq!(sources(&after)[0].1, "summary");
    assert_eq!(figures(before), figures(after));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Summaries do not store the attribution views yet: a run recorded with
/// `--columns` gets a summary marked not exact, and report reads its CSV,
/// says why, and still shows the per-container and cookie views.
#[test]
fn a_run_with_attribution_columns_is_reported_from_its_csv() {
    if skip_without_root("a_run_with_attribution_columns_is_reported_from_its_csv") {
        return;
    }
    let dir = scratch_dir("sum-columns");
    let mut tracer = Tracer::start(&dir, &["--comm", COMM, "--columns", "container,cookie"]);
    traffic(1);
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    let path = find_file(&dir, "summary.json").expect("record wrote summary.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["exact"], false);
    let why = doc["inexact_reason"].as_str().unwrap();
    assert!(why.contains("attribution columns"), "{why}");

    let (r, _) = report(&dir, &[]);
    let s = sources(&r);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, "csv", "{s:?}");
    assert!(
        s[0].2.as_deref().unwrap().contains("attribution columns"),
        "{s:?}"
    );
    // The views the summary could not carry are there, from the CSV: the
    // traffic ran on the host (no container), one socket per direction.
    let containers = r["containers"].as_array().expect("a containers table");
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(containers[0]["container_id"].is_null(), "{containers:?}");
    let (csv, _) = report(&dir, &["--no-summaries"]);
    assert_eq!(figures(r), figures(csv));
    let _ = std::fs::remove_dir_all(&dir);
}

const CHURN_COMM: &str = "nwsum-churn";

/// Many short TCP connections (both ends in threads named `CHURN_COMM`)
/// and UDP datagrams from a fresh socket each, for `secs` seconds: every
/// one a new conversation. Returns the conversations made (each TCP
/// connection and each UDP exchange is two, one per end).
fn churn(secs: u64) -> u64 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::Builder::new()
        .name(CHURN_COMM.into())
        .spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                let mut buf = [0u8; 64];
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break, // the stop connection
                    Ok(n) => {
                        let _ = s.write_all(&buf[..n]);
                    }
                }
            }
        })
        .unwrap();
    let client = std::thread::Builder::new()
        .name(CHURN_COMM.into())
        .spawn(move || {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let to = rx.local_addr().unwrap();
            let end = std::time::Instant::now() + Duration::from_secs(secs);
            let mut made = 0u64;
            let mut buf = [0u8; 64];
            while std::time::Instant::now() < end {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"ping").unwrap();
                let _ = s.read(&mut buf);
                drop(s);
                let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
                tx.send_to(b"peer", to).unwrap();
                let _ = rx.recv_from(&mut buf);
                made += 4;
                // A busy service's pace, not a flood: a debug build's
                // summary thread keeps up (record gives the summary up
                // rather than lose events when it cannot).
                std::thread::sleep(Duration::from_millis(1));
            }
            // Ends the server: a connection that sends nothing.
            drop(TcpStream::connect(addr).unwrap());
            made
        })
        .unwrap();
    let made = client.join().unwrap();
    server.join().unwrap();
    made
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A long run compressed (issue #23): new conversations all the time with
/// fast rotation and retention. The recorder's RSS and summary.json stay
/// under fixed bounds while the distinct conversations pass the summary's
/// bound, the summary is bounded (and says so), and report, from that
/// summary although retention deleted most of the CSV, gives totals equal
/// to the manifest's row count. NWSUM_CHURN_SECS sets the length (20 s by
/// default; bench for longer).
#[test]
fn a_churning_run_keeps_memory_and_summary_bounded() {
    if skip_without_root("a_churning_run_keeps_memory_and_summary_bounded") {
        return;
    }
    let secs: u64 = std::env::var("NWSUM_CHURN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = scratch_dir("sum-churn");
    let mut tracer = Tracer::start(
        &dir,
        &[
            "--comm",
            CHURN_COMM,
            "--rotate-size",
            "256K",
            "--max-files",
            "4",
        ],
    );
    let pid = tracer.pid();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        let mut samples = Vec::new();
        for _ in 0..(secs * 5 + 10) {
            let kib = rss_kib(pid);
            if kib == 0 {
                break;
            }
            peak = peak.max(kib);
            samples.push(kib);
            std::thread::sleep(Duration::from_millis(200));
        }
        (peak, samples)
    });
    let made = churn(secs);
    assert_eq!(tracer.stop(), 0, "{}", tracer.stderr.join("\n"));
    let (peak_kib, samples) = sampler.join().unwrap();
    let manifest = tracer.manifest();
    let rows = manifest["rows_written"].as_u64().unwrap();
    eprintln!(
        "churn: {secs} s, {made} conversations made, {rows} rows, peak RSS {peak_kib} KiB \
         (every 2 s: {:?} KiB)",
        samples.iter().step_by(10).collect::<Vec<_>>()
    );
    // The summary keeps 2,048 conversations: pass that well.
    assert!(made > 3 * 2048, "only {made} conversations in {secs} s");
    // Flat: what the summary holds stops growing once its tables are at
    // their bound (a few seconds in), whatever comes after. Measured
    // (bench/results/churn-20261207.md): about 52 MiB without the summary
    // and 68-71 MiB with it for this debug build.
    assert!(
        peak_kib < 80 * 1024,
        "recorder RSS peaked at {peak_kib} KiB"
    );
    if samples.len() > 40 {
        let settled = samples[20];
        let last = *samples.last().unwrap();
        assert!(
            last < settled + 4 * 1024,
            "RSS grew from {settled} KiB at 4 s to {last} KiB"
        );
    }

    let path = find_file(&dir, "summary.json")
        .unwrap_or_else(|| panic!("no summary.json: {}", tracer.stderr.join("\n")));
    let size = std::fs::metadata(&path).unwrap().len();
    eprintln!("churn: summary.json {size} bytes");
    assert!(size < 4 << 20, "summary.json is {size} bytes");
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["exact"], false);
    assert!(
        doc["bounded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "conversations"),
        "{}",
        doc["bounded"]
    );
    assert_eq!(doc["rows"].as_u64(), Some(rows));
    // Manifest version 2 folds the deleted files into counts.
    let deleted = manifest["deleted_files"]["files"].as_u64().unwrap_or(0) as usize
        + manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["deleted"] == true)
            .count();
    assert!(deleted > 0, "retention deleted files: {manifest}");

    let (r, stderr) = report(&dir, &[]);
    assert!(
        sources(&r).iter().all(|s| s.1 == "summary"),
        "{:?} {stderr}",
        sources(&r)
    );
    assert_eq!(r["totals"]["ops"].as_u64(), Some(rows));
    let t = &r["tables"]["conversations"];
    assert_eq!(t["bounded"], true, "{t}");
    let listed: u64 = r["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ops"].as_u64().unwrap())
        .sum();
    assert_eq!(listed + t["other_ops"].as_u64().unwrap(), rows);
    let text = nwtrace(&["report"], &[&dir]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("bounded table"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
