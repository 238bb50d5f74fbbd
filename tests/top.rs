//! `nwtrace top` end to end in tmux: a replay of the fixture (no root),
//! and as root a live capture of known traffic, with --record against
//! record's own rows. Also the usage error without a terminal and the
//! JSON lines of a replay.

use nwtrace_testkit as common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/top");

/// One tmux test at a time: they share the CPU with the traffic.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tmux server of its own (its own socket), with one 120x40 session
/// that runs `cmd`, then prints its exit status and waits, so that the
/// pane shows the shell's output after top has left the screen.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, cmd: &str) -> Tmux {
        let has_tmux = Command::new("tmux")
            .arg("-V")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            has_tmux,
            "tmux is needed for the top tests (apt-get install -y tmux)"
        );
        let t = Tmux {
            socket: format!("nwtrace-{tag}-{}", std::process::id()),
        };
        let script = format!("{cmd}; echo EXITED $?; sleep 120");
        t.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "40",
            "sh",
            "-c",
            &script,
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.run(&["send-keys", "-t", "top", k]);
            // Typing pace, part of the scenario: keys come one at a time
            // as a person types them, not as one paste. What each key
            // does is then waited for on the screen (wait_for).
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Waits until the screen shows every one of `texts`.
    fn wait_for(&self, texts: &[&str], within: Duration) -> String {
        self.wait_until(|s| texts.iter().all(|t| s.contains(t)), within)
    }

    /// Waits until `ok` holds for the screen.
    fn wait_until(&self, ok: impl Fn(&str) -> bool, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never got there:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alternate_on(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "top", "#{alternate_on}"])
            .trim()
            == "1"
    }

    fn pane_pid(&self) -> i32 {
        self.run(&["display-message", "-p", "-t", "top", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("a pane pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn bin() -> String {
    nwtrace_bin().display().to_string()
}

/// The rows' lines after the header, one string per line.
fn lines_with<'a>(screen: &'a str, text: &str) -> Vec<&'a str> {
    screen.lines().filter(|l| l.contains(text)).collect()
}

#[test]
fn replay_in_tmux_shows_the_fixture_and_restores_the_terminal() {
    let _guard = serial();
    let t = Tmux::start(
        "replay",
        &format!("{} top --replay {FIXTURE} --speed 0", bin()),
    );
    let s = t.wait_for(
        &["replay (max speed, done)", "postgres"],
        Duration::from_secs(30),
    );
    assert!(t.alternate_on(), "top draws on the alternate screen");
    for comm in ["nginx", "curl", "postgres", "dnsmasq", "ntpd"] {
        assert_eq!(lines_with(&s, comm).len(), 1, "{comm} once:\n{s}");
    }
    // Cumulative: exact totals of the fixture (nginx 1222 ops, 7.92 MiB).
    t.keys(&["w", "w"]);
    let s = t.wait_for(&["window cumulative"], Duration::from_secs(5));
    let nginx = lines_with(&s, "nginx")[0];
    assert!(
        nginx.contains("1,222") && nginx.contains("7.92 MiB"),
        "{nginx}"
    );
    assert!(s.contains("ops 1,640"), "all 1640 rows:\n{s}");
    // Conversations, then the filter box.
    t.keys(&["2"]);
    let s = t.wait_for(&["93.184.216.34:443"], Duration::from_secs(5));
    assert_eq!(lines_with(&s, "nginx").len(), 4, "{s}");
    t.keys(&["/", "comm:curl", "Enter"]);
    // The box shows the filter at once; the rows follow when the replay
    // has counted afresh under it.
    let s = t.wait_until(
        |s| s.contains("filter comm:curl") && !s.contains("nginx"),
        Duration::from_secs(10),
    );
    assert_eq!(lines_with(&s, "93.184.216.34:443").len(), 1, "{s}");
    // Drill: Processes -> curl -> its conversation.
    t.keys(&["1", "Enter", "Enter"]);
    let s = t.wait_for(
        &["Slowest recent ops", "receive latency"],
        Duration::from_secs(5),
    );
    assert!(s.contains("TCP curl (pid 2300)"), "{s}");
    t.keys(&["q"]);
    let s = t.wait_for(&["EXITED 0"], Duration::from_secs(10));
    assert!(!t.alternate_on(), "the terminal is back on the main screen");
    assert!(!s.contains("Slowest recent ops"), "{s}");
}

#[test]
fn a_terminal_too_small_says_so() {
    let _guard = serial();
    let t = Tmux::start(
        "small",
        &format!("{} top --replay {FIXTURE} --speed 0", bin()),
    );
    t.wait_for(&["postgres"], Duration::from_secs(30));
    t.run(&["resize-window", "-t", "top", "-x", "70", "-y", "20"]);
    t.wait_for(
        &["needs a terminal of at least 80x24", "70x20"],
        Duration::from_secs(5),
    );
    t.keys(&["q"]);
    t.wait_for(&["EXITED 0"], Duration::from_secs(10));
}

#[test]
fn closing_the_window_ends_top() {
    let _guard = serial();
    let t = Tmux::start(
        "close",
        &format!("{} top --replay {FIXTURE} --speed 0", bin()),
    );
    t.wait_for(&["postgres"], Duration::from_secs(30));
    let top_pid = *children(t.pane_pid()).first().expect("top under the shell");
    // The window goes away: SIGHUP, and the terminal's input ends.
    drop(t);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{top_pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{top_pid}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "top is still running after its window closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn without_a_terminal_top_is_a_usage_error() {
    let out = Command::new(nwtrace_bin())
        .args(["top", "--replay", FIXTURE])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("use --json"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn replay_json_is_one_versioned_object_per_second() {
    let out = Command::new(nwtrace_bin())
        .args(["top", "--replay", FIXTURE, "--speed", "0", "--json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let objs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // Ten recorded seconds: about one object each, and the last.
    assert!((10..=13).contains(&objs.len()), "{}", objs.len());
    for o in &objs {
        assert_eq!(o["nwtrace_top"], 1);
        assert!(o["interval_s"].as_f64().unwrap() > 0.0);
    }
    let last = objs.last().unwrap();
    assert_eq!(last["totals"]["ops"], 1640);
    assert_eq!(last["source"]["done"], true);
    let procs = last["processes"].as_array().unwrap();
    let nginx = procs.iter().find(|p| p["comm"] == "nginx").unwrap();
    assert_eq!(nginx["pid"], 1200);
    assert_eq!(nginx["total_ops"], 1222);
    // Unrounded rates.
    assert!(nginx["ops_per_s"].as_f64().unwrap().fract() != 0.0);
    let errors = last["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["error"] == "ECONNRESET" && e["kind"] == "hard")
    );
    // The filter option narrows everything.
    let out = Command::new(nwtrace_bin())
        .args(["top", "--replay", FIXTURE, "--speed", "0", "--json"])
        .args(["--filter", "comm:curl dir:send"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["totals"]["ops"], 10, "curl's ten sends");
    assert_eq!(last["filter"], "comm:curl dir:send");
}

/// The hand-written recording with the optional columns of `record
/// --columns` (tests/fixtures/attr; its rows are listed in
/// tests/report.rs).
const ATTR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/attr");
const C1: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

#[test]
fn replay_in_tmux_shows_containers() {
    let _guard = serial();
    let t = Tmux::start("attr", &format!("{} top --replay {ATTR} --speed 0", bin()));
    let s = t.wait_for(
        &["replay (max speed, done)", "7 Containers"],
        Duration::from_secs(30),
    );
    assert!(
        s.contains("1 Processes"),
        "full tab titles fit at 120:\n{s}"
    );
    t.keys(&["w", "w", "7"]);
    let s = t.wait_for(
        &["window cumulative", "host (no container)"],
        Duration::from_secs(5),
    );
    // Totals by hand: the host 3 ops 220 B, C1 180 B, C2 150 B; the two
    // ops of the run without the column are in no row.
    let host = lines_with(&s, "host (no container)")[0];
    assert!(host.contains("220 B"), "{host}");
    let c1 = lines_with(&s, &C1[..12]);
    assert_eq!(c1.len(), 1, "{s}");
    assert!(c1[0].contains("180 B"), "{}", c1[0]);
    assert!(!s.contains(&C1[..13]), "ids are cut to 12 digits:\n{s}");
    assert_eq!(lines_with(&s, "c0ffee012345").len(), 1, "{s}");
    // The container filter word.
    t.keys(&["/", &format!("container:{}", &C1[..12]), "Enter"]);
    let s = t.wait_until(
        |s| s.contains("filter container:") && !s.contains("host (no container)"),
        Duration::from_secs(10),
    );
    // One row (the summary line also names the filter).
    assert_eq!(
        s.lines().filter(|l| l.starts_with(&C1[..12])).count(),
        1,
        "{s}"
    );
    assert!(s.contains("ops 3 "), "rows 1, 2 and 11:\n{s}");
    t.keys(&["q"]);
    t.wait_for(&["EXITED 0"], Duration::from_secs(10));
}

#[test]
fn replay_json_with_the_filter_flags_of_record() {
    let run = |extra: &[&str]| -> (Option<i32>, serde_json::Value, String) {
        let out = Command::new(nwtrace_bin())
            .args(["top", "--replay", ATTR, "--speed", "0", "--json"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let last = text
            .lines()
            .last()
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or_default();
        (
            out.status.code(),
            last,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, last, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(last["totals"]["ops"], 11);
    let c = last["containers"].as_array().unwrap();
    let got: Vec<(Option<&str>, u64)> = c
        .iter()
        .map(|c| (c["container_id"].as_str(), c["total_ops"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (None, 3),
            (Some(C1), 3),
            (
                Some("c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
                3
            )
        ]
    );
    // (flags, rows kept: see the list in tests/report.rs)
    for (flags, ops) in [
        (vec!["--container", &C1[..12]], 3),
        (vec!["--port", "6379", "--exclude-comm", "app"], 4),
        // (record's --cgroup wants a cgroup of this host; a recording's
        // may not exist here, so the word says it)
        (
            vec!["--filter", "cgroup:/system.slice", "--direction", "send"],
            3,
        ),
        (vec!["--ip-version", "6"], 2),
        (vec!["--protocol", "udp", "--filter", "ipv:6"], 1),
    ] {
        let (code, last, err) = run(&flags);
        assert_eq!(code, Some(0), "{flags:?}: {err}");
        assert_eq!(last["totals"]["ops"], ops, "{flags:?}");
    }
    for bad in [
        vec!["--container", "abc"],
        vec!["--ip-version", "5"],
        vec!["--protocol", "tcp", "--filter", "proto:udp"],
    ] {
        let (code, _, err) = run(&bad);
        assert_eq!(code, Some(2), "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
    }
}

/// The pids of `pid`'s children.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// TCP exchanges on loopback from threads called `name` for `how_long`:
/// each round a 100-byte request and a 100-byte reply. Returns the
/// server's port.
fn traffic(name: &str, how_long: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 100];
            while s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf).unwrap();
            }
        })
        .unwrap();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let end = Instant::now() + how_long;
            let mut buf = [0u8; 100];
            while Instant::now() < end {
                c.write_all(&[b'x'; 100]).unwrap();
                c.read_exact(&mut buf).unwrap();
                // The traffic's pace (part of the scenario), not a wait.
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .unwrap()
        .join()
        .unwrap();
    server.join().unwrap();
    port
}

fn rows_under(dir: &Path) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = csv_files(dir)
        .iter()
        .flat_map(|f| read_rows(f))
        .map(|r| {
            // Every field but Timestamp and Latency.
            let mut v = vec![r.get("PID").to_string(), r.get("Command").to_string()];
            v.extend(exact_fields_of(&r));
            v
        })
        .collect();
    rows.sort();
    rows
}

fn manifest_in(dir: &Path) -> serde_json::Value {
    let path: PathBuf = find_file(dir, "manifest.json").expect("a manifest");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn live_top_shows_known_traffic_records_like_record_and_cleans_up() {
    let _guard = serial();
    if skip_without_root("live_top_shows_known_traffic_records_like_record_and_cleans_up") {
        return;
    }
    let name = "nwt-top-live";
    let top_dir = scratch_dir("top-record");
    let rec_dir = scratch_dir("top-vs-record");
    let mut record = Tracer::start(&rec_dir, &["--comm", name]);
    let t = Tmux::start(
        "live",
        &format!(
            "{} top --backend {} --comm {name} --record {}",
            bin(),
            backend(),
            top_dir.display()
        ),
    );
    t.wait_for(&["live, backend"], Duration::from_secs(120));
    let top_pid = *children(t.pane_pid())
        .first()
        .expect("top runs under the pane's shell");
    let held = prog_ids_held_by(top_pid);
    assert!(!held.is_empty(), "top holds its programs while tracing");

    let port = traffic(name, Duration::from_secs(2));
    t.keys(&["2"]);
    let remote = format!("127.0.0.1:{port}");
    let s = t.wait_for(&[name, &remote], Duration::from_secs(10));
    // The client's socket (remote = the server's port) and the server's.
    assert!(lines_with(&s, name).len() >= 2, "{s}");
    t.keys(&["1"]);
    let s = t.wait_for(&[name], Duration::from_secs(5));
    assert!(s.contains("PID"), "{s}");

    t.keys(&["q"]);
    t.wait_for(&["EXITED 0"], Duration::from_secs(30));
    assert!(!t.alternate_on(), "the terminal is back on the main screen");
    let loaded = loaded_prog_ids();
    let left: Vec<_> = held.iter().filter(|id| loaded.contains(id)).collect();
    assert!(left.is_empty(), "programs left behind: {left:?}");
    assert_eq!(record.stop(), 0);

    // top --record wrote record's rows (start times differ by a few µs
    // between two tracers: Timestamp and Latency are left out).
    let top_rows = rows_under(&top_dir);
    let rec_rows = rows_under(&rec_dir);
    assert!(top_rows.len() > 100, "{} rows", top_rows.len());
    assert_eq!(top_rows, rec_rows);
    let m = manifest_in(&top_dir);
    assert_eq!(m["finalized"], true);
    assert_eq!(m["rows_written"], top_rows.len());
    assert_eq!(m["command_line"][1], "top");
    let r = manifest_in(&rec_dir);
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&m), keys(&r), "the same manifest fields as record's");
}

#[test]
fn live_json_counts_known_traffic() {
    let _guard = serial();
    if skip_without_root("live_json_counts_known_traffic") {
        return;
    }
    let name = "nwt-top-json";
    let mut child = Command::new(nwtrace_bin())
        .args(["top", "--json", "--backend", &backend(), "--comm", name])
        .args(["--duration", "6s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    // The first object comes once the capture runs.
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(first["source"]["kind"], "live");
    let port = traffic(name, Duration::from_secs(2));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let objs: Vec<serde_json::Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(objs.len() >= 3, "about one a second: {}", objs.len());
    let last = objs.last().unwrap();
    // Each round: a send and a receive on each side (every 20 ms for
    // 2 s), and the server's end-of-stream receive.
    let ops = last["totals"]["ops"].as_u64().unwrap();
    assert!(ops >= 40, "{ops}");
    assert_eq!(last["totals"]["end_of_stream"], 1);
    assert_eq!(
        last["totals"]["bytes_sent"],
        last["totals"]["bytes_received"]
    );
    let procs = last["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert_eq!(procs[0]["comm"], name);
    assert_eq!(procs[0]["pid"], std::process::id());
    let convs = last["conversations"].as_array().unwrap();
    let remote = format!("127.0.0.1:{port}");
    assert!(convs.iter().any(|c| c["remote"] == remote), "{convs:?}");
    // Some interval saw the traffic as a rate.
    assert!(
        objs.iter()
            .any(|o| o["interval"]["ops_per_s"].as_f64().unwrap() > 10.0)
    );
}
