//! `record --on-close CMD` as root: every finished file handed over once,
//! in order, the open file never; a failing or hanging command never stops
//! the rows, nor a prompt stop.

use nwtrace_testkit as common;

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
        // The traffic's pace (part of the scenario), not a wait.
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

/// The hand-over command of the restart tests: it "uploads" (appends
/// `KIND RETRY PATH` to `done.log`) after sleeping the seconds in `delay`,
/// so a test can make it slow in one run and quick in the next. With
/// `NWTRACE_RETRY=1` it first checks whether the upload is already there,
/// as an idempotent uploader would (README: at-least-once). Every start of
/// the command is logged to `attempts.log` the same way.
fn slow_upload_command(dir: &Path) -> String {
    let (delay, done) = (dir.join("delay"), dir.join("done.log"));
    format!(
        "printf '%s %s %s\\n' \"$NWTRACE_KIND\" \"${{NWTRACE_RETRY:-0}}\" \"$1\" >> {attempts}; \
         sleep \"$(cat {delay})\"; \
         if [ \"${{NWTRACE_RETRY:-0}}\" = 1 ] && grep -q \" $1\\$\" {done}; then exit 0; fi; \
         printf '%s %s %s\\n' \"$NWTRACE_KIND\" \"${{NWTRACE_RETRY:-0}}\" \"$1\" >> {done}",
        delay = delay.display(),
        done = done.display(),
        attempts = dir.join("attempts.log").display()
    )
}

/// Hand-overs that were retries and found the upload already done (they
/// exit 0 without writing to `done.log`, and count as caught up).
fn retries_already_done(dir: &Path) -> usize {
    let retried = |log: &str| {
        log_lines(&dir.join(log))
            .iter()
            .filter(|l| l.split(' ').nth(1) == Some("1"))
            .count()
    };
    retried("attempts.log") - retried("done.log")
}

/// Waits until no command of [`slow_upload_command`] for `dir` runs any
/// more (its shell's command line names `dir`'s `done.log`), and every
/// one started has logged its upload.
fn wait_for_commands_to_finish(dir: &Path) {
    let done_log = dir.join("done.log").display().to_string();
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&done_log))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = log_lines(&dir.join("attempts.log")).len();
        let done = log_lines(&dir.join("done.log")).len();
        if !running() && started == done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{started} commands started, {done} finished after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `done.log` as (kind, retry, path) triples.
fn uploads(dir: &Path) -> Vec<(String, String, String)> {
    log_lines(&dir.join("done.log"))
        .iter()
        .map(|l| {
            let mut p = l.splitn(3, ' ');
            let kind = p.next().unwrap().to_string();
            let retry = p.next().unwrap().to_string();
            (kind, retry, p.next().unwrap().to_string())
        })
        .collect()
}

/// The run folders (`<out>/<machine>/<run>/nw`) with their manifest names,
/// oldest first, as the recorder orders them.
fn runs(out: &Path) -> Vec<PathBuf> {
    let mut manifests = Vec::new();
    for machine in std::fs::read_dir(out).unwrap().flatten() {
        for run in std::fs::read_dir(machine.path()).unwrap().flatten() {
            let nw = run.path().join("nw");
            for f in std::fs::read_dir(&nw).unwrap().flatten() {
                let name = f.file_name().into_string().unwrap();
                if name.starts_with("manifest") && name.ends_with(".json") {
                    manifests.push(nw.join(name));
                }
            }
        }
    }
    manifests.sort();
    manifests
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every file a run with this manifest should hand over, in order: its CSV
/// files (from the folder, by name, as the journal would not be trusted
/// here), then the manifest, then the summary if there is one.
fn expected_uploads(manifest: &Path) -> Vec<(String, String)> {
    let nw = manifest.parent().unwrap();
    let mut want: Vec<(String, String)> = csv_files(nw)
        .into_iter()
        .map(|f| ("csv".to_string(), f.display().to_string()))
        .collect();
    want.push(("manifest".into(), manifest.display().to_string()));
    let summary = nw.join(
        manifest
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replacen("manifest", "summary", 1),
    );
    if summary.exists() {
        want.push(("summary".into(), summary.display().to_string()));
    }
    want
}

fn without_retry(u: &[(String, String, String)]) -> Vec<(String, String)> {
    u.iter().map(|(k, _, p)| (k.clone(), p.clone())).collect()
}

#[test]
fn a_restart_hands_over_what_the_stop_left_exactly_once() {
    let _guard = serial();
    if skip_without_root("a_restart_hands_over_what_the_stop_left_exactly_once") {
        return;
    }
    let dir = scratch_dir("on-close-restart");
    let out = dir.join("out");
    let cmd = slow_upload_command(&dir);
    let pid = std::process::id().to_string();
    let args = ["--pid", &pid, "--rotate-size", "8K", "--on-close", &cmd];

    // Run 1: a slow uploader (1 s a file) and 1 s of traffic: the 5 s grace
    // at the stop leaves most files, and kills the command running then.
    std::fs::write(dir.join("delay"), "1").unwrap();
    let mut first = Tracer::start(&out, &args);
    udp_for(Duration::from_secs(1), || {});
    assert_eq!(first.stop(), 0, "{}", first.stderr.join("\n"));
    let m1 = runs(&out);
    assert_eq!(m1.len(), 1);
    let m1 = json(&m1[0]);
    let left = m1["on_close"]["unfinished"].as_u64().unwrap();
    assert!(left >= 3, "the stop left files: {}", m1["on_close"]);
    assert_eq!(m1["on_close"]["version"], 2);
    let handed_in_first = uploads(&dir).len();

    // Run 2: a quick uploader; it hands over run 1's leftovers first.
    std::fs::write(dir.join("delay"), "0").unwrap();
    let mut second = Tracer::start(&out, &args);
    udp_for(Duration::from_millis(300), || {});
    assert_eq!(second.stop(), 0, "{}", second.stderr.join("\n"));

    let manifests = runs(&out);
    assert_eq!(manifests.len(), 2, "{manifests:?}");
    let mut want = expected_uploads(&manifests[0]);
    let caught_up = want.len() - handed_in_first + retries_already_done(&dir);
    want.extend(expected_uploads(&manifests[1]));
    let got = uploads(&dir);
    assert_eq!(
        without_retry(&got),
        want,
        "every file of both runs once, run 1's first, each in order"
    );
    let m2 = json(&manifests[1]);
    let stats = &m2["on_close"];
    assert_eq!(stats["caught_up"], caught_up as u64, "{stats}");
    assert_eq!(stats["caught_up_failed"], 0, "{stats}");
    assert_eq!(stats["caught_up_gone"], 0, "{stats}");
    assert_eq!(stats["caught_up_unfinished"], 0, "{stats}");
    assert_eq!(stats["unfinished"], 0, "{stats}");
    // Only the command killed at the stop is a retry, and it came first.
    let retries: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, u)| u.1 == "1")
        .map(|(i, _)| i)
        .collect();
    assert!(
        retries.is_empty() || retries == [handed_in_first],
        "retries {retries:?}, run 1 handed over {handed_in_first}"
    );

    // Run 3: nothing of runs 1 and 2 is handed over again. (A second
    // later, so that it gets a run folder of its own: run folders are
    // named by the second the run started. A wait on the clock, part of
    // the scenario, not one on a process.)
    std::thread::sleep(Duration::from_millis(1100));
    let mut third = Tracer::start(&out, &args);
    assert_eq!(third.stop(), 0, "{}", third.stderr.join("\n"));
    let manifests = runs(&out);
    assert_eq!(manifests.len(), 3);
    let m3 = json(&manifests[2]);
    assert_eq!(m3["on_close"]["caught_up"], 0, "{}", m3["on_close"]);
    want.extend(expected_uploads(&manifests[2]));
    assert_eq!(without_retry(&uploads(&dir)), want);
}

#[test]
fn a_restart_after_sigkill_hands_over_the_killed_run_once() {
    let _guard = serial();
    if skip_without_root("a_restart_after_sigkill_hands_over_the_killed_run_once") {
        return;
    }
    let dir = scratch_dir("on-close-sigkill");
    let out = dir.join("out");
    let cmd = slow_upload_command(&dir);
    let pid = std::process::id().to_string();
    let args = ["--pid", &pid, "--rotate-size", "8K", "--on-close", &cmd];

    std::fs::write(dir.join("delay"), "0.5").unwrap();
    let mut first = Tracer::start(&out, &args);
    udp_for(Duration::from_secs(1), || {});
    first.stop_with(libc::SIGKILL);
    // The command running at the kill is not nwtrace's to stop any more
    // (its own process group): let it finish, as an upload would. Waiting
    // a fixed second was not always enough on a loaded machine: the
    // restart's retry then ran beside it, both found no upload, and both
    // made one (at-least-once, but not what this test counts).
    wait_for_commands_to_finish(&dir);
    let killed = runs(&out);
    assert_eq!(killed.len(), 1);
    assert_eq!(json(&killed[0])["finalized"], false);
    let files = csv_files(killed[0].parent().unwrap());
    let handed_in_first = uploads(&dir).len();
    assert!(
        files.len() >= handed_in_first + 3,
        "files {} handed {handed_in_first}",
        files.len()
    );
    // Retention (or an operator) deletes one file the kill left (not the
    // last: the one open at the kill must be handed over too).
    let gone = files[files.len() - 2].clone();
    std::fs::remove_file(&gone).unwrap();

    std::fs::write(dir.join("delay"), "0").unwrap();
    let mut second = Tracer::start(&out, &args);
    udp_for(Duration::from_millis(300), || {});
    assert_eq!(second.stop(), 0, "{}", second.stderr.join("\n"));

    let manifests = runs(&out);
    assert_eq!(manifests.len(), 2);
    // Run 1: every CSV file (the one open at the kill too, the deleted one
    // not) and its unfinalised manifest; it wrote no summary.
    let mut want = expected_uploads(&manifests[0]);
    assert_eq!(want.last().unwrap().0, "manifest");
    assert!(!want.iter().any(|w| w.1 == gone.display().to_string()));
    let caught_up = want.len() - handed_in_first + retries_already_done(&dir);
    want.extend(expected_uploads(&manifests[1]));
    assert_eq!(without_retry(&uploads(&dir)), want);
    let stats = &json(&manifests[1])["on_close"];
    assert_eq!(stats["caught_up"], caught_up as u64, "{stats}");
    assert_eq!(stats["caught_up_gone"], 1, "{stats}");
    assert_eq!(stats["caught_up_unfinished"], 0, "{stats}");
}
