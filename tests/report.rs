//! `nwtrace report` on the generated fixture tree: every number checked
//! against what the generator wrote, computed here independently; merge
//! equals one pass; bad lines counted with file:line; errors and broken
//! pipes; snapshots of the text and JSON.

use nwtrace_testkit::fixture;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fixture::{ERRORS, FLAGS, Fixture, FxRow};
use serde_json::Value;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nwtrace"))
}

fn fixture(tag: &str) -> Fixture {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{tag}"));
    fixture::build(&dir)
}

/// Runs `nwtrace report ARGS` in `dir`; returns (exit code, stdout, stderr).
fn report(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .arg("report")
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("running nwtrace");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    )
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--format", "json"];
    a.extend_from_slice(args);
    let (code, out, err) = report(dir, &a);
    assert_eq!(code, 0, "stderr: {err}");
    serde_json::from_str(&out).expect("valid JSON")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
}

/// The value at quantile q as HdrHistogram defines it: the smallest
/// recorded value with at least ceil(q * n) values at or below it.
fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn assert_close(got: u64, want: u64, tolerance: f64, what: &str) {
    let diff = (got as f64 - want as f64).abs();
    assert!(
        diff <= want as f64 * tolerance + 1.0,
        "{what}: got {got}, want {want} within {tolerance}"
    );
}

fn is_nonblocking(r: &FxRow) -> bool {
    !r.send && (r.flags.contains("MSG_DONTWAIT") || r.error == Some("EAGAIN"))
}

#[test]
fn totals_processes_conversations_errors_and_runs_match_the_rows() {
    let fx = fixture("numbers");
    let v = json(&fx.dir, &["tree"]);
    assert_eq!(v["schema_version"], 1);
    let rows = &fx.rows;

    // Totals.
    let t = &v["totals"];
    assert_eq!(u(&t["ops"]), rows.len() as u64);
    let sent: u64 = rows.iter().filter(|r| r.send).map(|r| r.size).sum();
    let received: u64 = rows.iter().filter(|r| !r.send).map(|r| r.size).sum();
    assert_eq!(u(&t["bytes_sent"]), sent);
    assert_eq!(u(&t["bytes_received"]), received);
    let errors = rows.iter().filter(|r| r.error.is_some()).count() as u64;
    assert_eq!(u(&t["errors"]), errors);
    let retry = rows
        .iter()
        .filter(|r| {
            r.error
                .is_some_and(|e| ERRORS.iter().any(|(n, retry)| *n == e && *retry))
        })
        .count() as u64;
    assert_eq!(u(&t["retry_errors"]), retry);
    assert_eq!(u(&t["hard_errors"]), errors - retry);
    let first = rows.iter().min_by_key(|r| r.t_us).unwrap();
    let last = rows.iter().max_by_key(|r| r.t_us).unwrap();
    assert_eq!(t["first"], first.timestamp.as_str());
    assert_eq!(t["last"], last.timestamp.as_str());
    let eof = rows
        .iter()
        .filter(|r| !r.send && r.protocol == "TCP" && r.size == 0 && r.error.is_none())
        .count() as u64;
    assert_eq!(u(&t["end_of_stream"]), eof);

    // Per process.
    // A pid is a process on its machine.
    let mut procs: BTreeMap<(String, u32, String), Vec<&FxRow>> = BTreeMap::new();
    for r in rows {
        procs
            .entry((r.machine.clone(), r.pid, r.comm.clone()))
            .or_default()
            .push(r);
    }
    let list = v["processes"].as_array().unwrap();
    assert_eq!(list.len(), procs.len());
    for ((machine, pid, comm), rs) in &procs {
        let p = list
            .iter()
            .find(|p| {
                p["machine_id"] == machine.as_str()
                    && p["pid"] == *pid
                    && p["comm"] == comm.as_str()
            })
            .unwrap_or_else(|| panic!("process {pid} {comm} missing"));
        assert_eq!(u(&p["ops"]), rs.len() as u64);
        assert_eq!(u(&p["sends"]), rs.iter().filter(|r| r.send).count() as u64);
        assert_eq!(
            u(&p["receives"]),
            rs.iter().filter(|r| !r.send).count() as u64
        );
        assert_eq!(
            u(&p["bytes_sent"]),
            rs.iter().filter(|r| r.send).map(|r| r.size).sum::<u64>()
        );
        assert_eq!(
            u(&p["bytes_received"]),
            rs.iter().filter(|r| !r.send).map(|r| r.size).sum::<u64>()
        );
        assert_eq!(
            u(&p["errors"]),
            rs.iter().filter(|r| r.error.is_some()).count() as u64
        );
        let peers: std::collections::BTreeSet<String> =
            rs.iter().filter_map(|r| r.remote_key()).collect();
        assert_eq!(u(&p["peers"]), peers.len() as u64);
        for (dir, pick) in [
            ("send", &(|r: &FxRow| r.send) as &dyn Fn(&FxRow) -> bool),
            ("receive", &|r: &FxRow| !r.send),
            ("receive_blocking", &|r: &FxRow| {
                !r.send && !is_nonblocking(r)
            }),
            ("receive_nonblocking", &|r: &FxRow| is_nonblocking(r)),
        ] {
            let mut lat: Vec<u64> = rs
                .iter()
                .filter(|r| pick(r))
                .filter_map(|r| r.latency)
                .collect();
            lat.sort();
            let l = &p["latency_ns"][dir];
            assert_eq!(u(&l["count"]), lat.len() as u64, "{pid} {dir}");
            if lat.is_empty() {
                continue;
            }
            assert_eq!(u(&l["max"]), *lat.last().unwrap(), "{pid} {dir} max");
            for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
                // Per-process histograms: 2 significant digits, within 1%.
                assert_close(
                    u(&l[name]),
                    exact_quantile(&lat, q),
                    0.01,
                    &format!("{pid} {dir} {name}"),
                );
            }
        }
    }

    // Conversations: both directions of a socket on one key; the unknown
    // peer is its own bucket.
    type Key = (
        String,
        String,
        u32,
        String,
        String,
        u16,
        Option<String>,
        Option<u16>,
    );
    let mut convs: BTreeMap<Key, Vec<&FxRow>> = BTreeMap::new();
    for r in rows {
        let key = (
            r.machine.clone(),
            r.protocol.to_string(),
            r.pid,
            r.comm.clone(),
            r.local.0.clone(),
            r.local.1,
            r.remote.as_ref().map(|x| x.0.clone()),
            r.remote.as_ref().map(|x| x.1),
        );
        convs.entry(key).or_default().push(r);
    }
    let list = v["conversations"].as_array().unwrap();
    assert_eq!(list.len(), convs.len());
    let mut unknown_seen = false;
    for (k, rs) in &convs {
        let c = list
            .iter()
            .find(|c| {
                c["machine_id"] == k.0.as_str()
                    && c["protocol"] == k.1.as_str()
                    && c["pid"] == k.2
                    && c["comm"] == k.3.as_str()
                    && c["local_address"] == k.4.as_str()
                    && c["local_port"] == k.5
                    && c["remote_address"].as_str().map(str::to_string) == k.6
                    && c["remote_port"].as_u64().map(|p| p as u16) == k.7
            })
            .unwrap_or_else(|| panic!("conversation {k:?} missing"));
        unknown_seen |= k.6.is_none();
        assert_eq!(u(&c["ops"]), rs.len() as u64);
        assert_eq!(
            u(&c["bytes_sent"]),
            rs.iter().filter(|r| r.send).map(|r| r.size).sum::<u64>()
        );
        assert_eq!(
            u(&c["bytes_received"]),
            rs.iter().filter(|r| !r.send).map(|r| r.size).sum::<u64>()
        );
        assert_eq!(
            c["first"],
            rs.iter().min_by_key(|r| r.t_us).unwrap().timestamp.as_str()
        );
        assert_eq!(
            c["last"],
            rs.iter().max_by_key(|r| r.t_us).unwrap().timestamp.as_str()
        );
    }
    assert!(unknown_seen, "the fixture has unknown peers");

    // Errors: errno x direction.
    let mut errs: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for r in rows {
        if let Some(e) = r.error {
            *errs
                .entry((e.to_string(), if r.send { "send" } else { "receive" }))
                .or_default() += 1;
        }
    }
    let kinds = v["error_kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), errs.len());
    for ((e, d), n) in &errs {
        let k = kinds
            .iter()
            .find(|k| k["error"] == e.as_str() && k["direction"] == *d)
            .unwrap_or_else(|| panic!("{e} {d} missing"));
        assert_eq!(u(&k["count"]), *n);
        let retry = ERRORS.iter().find(|(n, _)| n == e).unwrap().1;
        assert_eq!(k["kind"], if retry { "retry" } else { "hard" }, "{e}");
    }
    let by_process: u64 = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| u(&e["count"]))
        .sum();
    assert_eq!(by_process, errors);
    for e in v["errors"].as_array().unwrap() {
        for field in ["error", "direction", "count"] {
            assert!(!e[field].is_null(), "{field}");
        }
    }
    for (name, _) in ERRORS {
        assert!(errs.keys().any(|(e, _)| e == name), "fixture lacks {name}");
    }

    // Every flag, counted per direction.
    let flags = v["msg_flags"]["flags"].as_array().unwrap();
    for (name, _) in FLAGS {
        for dir in ["send", "receive"] {
            let want = rows
                .iter()
                .filter(|r| (r.send == (dir == "send")) && r.flags.split('|').any(|f| f == name))
                .count() as u64;
            let got = flags
                .iter()
                .find(|f| f["flag"] == name && f["direction"] == dir)
                .map_or(0, |f| u(&f["ops"]));
            assert_eq!(got, want, "{name} {dir}");
        }
    }
    let unknown_bit: u64 = flags
        .iter()
        .filter(|f| f["flag"] == "0x200000")
        .map(|f| u(&f["ops"]))
        .sum();
    assert_eq!(
        unknown_bit,
        rows.iter().filter(|r| r.flags.contains("0x200000")).count() as u64
    );

    // Runs and coverage.
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let by = |m: &str, r: &str| {
        runs.iter()
            .find(|x| x["machine_id"] == m && x["run"] == r)
            .unwrap_or_else(|| panic!("run {m} {r}"))
    };
    for run in runs {
        let want = rows
            .iter()
            .filter(|r| run["machine_id"] == r.machine.as_str() && run["run"] == r.run.as_str())
            .count() as u64;
        assert_eq!(u(&run["rows"]), want);
        for field in ["machine_id", "run", "rows", "events_lost", "finalized"] {
            assert!(!run[field].is_null(), "{field}");
        }
    }
    assert_eq!(by("m-alpha", "20261126T060000Z")["finalized"], false);
    assert_eq!(u(&by("m-alpha", "20261126T060000Z")["events_lost"]), 42);
    assert_eq!(by("m-alpha", "20261126T050000Z")["finalized"], true);
    assert_eq!(by("m-beta", "20261126T070000Z")["manifest"], Value::Null);
    let cov = &v["coverage"];
    assert_eq!(u(&cov["machines"]), 2);
    assert_eq!(u(&cov["runs"]), 4);
    assert_eq!(u(&cov["events_lost"]), 42);
    assert_eq!(u(&cov["unfinalized_runs"]), 1);
    assert_eq!(u(&cov["rows"]), rows.len() as u64);
    assert_eq!(cov["deleted_files"], serde_json::json!(fx.deleted));
    // What is not on disk is exactly the deleted file's 50 rows (the
    // fixture's m-alpha run 1 manifest lists nw_0001.csv with 50 rows).
    assert_eq!(
        u(&cov["manifest_rows"]) - u(&cov["manifest_rows_read"]),
        50,
        "{cov}"
    );
    assert_eq!(u(&cov["malformed_rows"]), 2);
    assert_eq!(u(&cov["files_missing_header"]), 1);
    assert_eq!(u(&cov["files_cut_mid_row"]), 1);
    let problems = cov["problems"].as_array().unwrap();
    for b in &fx.bad {
        assert!(
            problems
                .iter()
                .any(|p| p["file"] == b.file.as_str() && u(&p["line"]) == b.line),
            "{} {}:{} not reported: {problems:?}",
            b.what,
            b.file,
            b.line
        );
    }
    assert_eq!(problems.len(), fx.bad.len());
    // Gaps between runs of one machine (from the manifests), and inside
    // a file (90 s with no row).
    let gaps = cov["gaps"].as_array().unwrap();
    let between = gaps.iter().filter(|g| g["kind"] == "between_runs").count();
    assert_eq!(between, 2, "{gaps:?}");
    let quiet: Vec<&Value> = gaps.iter().filter(|g| g["kind"] == "no_rows").collect();
    assert_eq!(quiet.len(), 1, "{gaps:?}");
    let q: Vec<&FxRow> = rows
        .iter()
        .filter(|r| r.file.ends_with("nw_0004.csv"))
        .collect();
    assert_eq!(quiet[0]["from"], q[0].timestamp.as_str());
    assert_eq!(quiet[0]["to"], q[1].timestamp.as_str());
    assert_eq!(quiet[0]["seconds"], 90.0);
    let machines = v["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 2);
    let alpha_ops = rows.iter().filter(|r| r.machine == "m-alpha").count() as u64;
    assert_eq!(u(&machines[0]["ops"]), alpha_ops);

    // Exemplars point at the real line.
    let slow = &v["exemplars"]["slowest"][0];
    let max_lat = rows.iter().filter_map(|r| r.latency).max().unwrap();
    assert_eq!(u(&slow["latency_ns"]), max_lat);
    let src = rows.iter().find(|r| r.latency == Some(max_lat)).unwrap();
    assert_eq!(slow["file"], src.file.as_str());
    assert_eq!(u(&slow["line"]), src.line);
    let text = std::fs::read_to_string(fx.dir.join(&src.file)).unwrap();
    let line = text.lines().nth(src.line as usize - 1).unwrap();
    assert!(line.contains(&max_lat.to_string()), "{line}");
}

#[test]
fn filters_windows_top_and_sort() {
    let fx = fixture("filters");
    let rows = &fx.rows;
    let v = json(&fx.dir, &["tree", "--comm", "nginx", "--protocol", "tcp"]);
    let want: Vec<&FxRow> = rows
        .iter()
        .filter(|r| r.comm == "nginx" && r.protocol == "TCP")
        .collect();
    assert_eq!(u(&v["totals"]["ops"]), want.len() as u64);
    assert!(
        v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["comm"] == "nginx")
    );

    let v = json(
        &fx.dir,
        &["tree", "--port", "5353", "--direction", "receive"],
    );
    let want = rows
        .iter()
        .filter(|r| {
            !r.send && (r.local.1 == 5353 || r.remote.as_ref().is_some_and(|x| x.1 == 5353))
        })
        .count() as u64;
    assert_eq!(u(&v["totals"]["ops"]), want);

    let v = json(
        &fx.dir,
        &[
            "tree",
            "--since",
            "2026-11-26 05:05:00",
            "--until",
            "2026-11-26T06:00:00Z",
        ],
    );
    let want = rows
        .iter()
        .filter(|r| {
            r.timestamp.as_str() >= "2026-11-26 05:05:00"
                && r.timestamp.as_str() < "2026-11-26 06:00:00"
        })
        .count() as u64;
    assert_eq!(u(&v["totals"]["ops"]), want);

    // Relative to the first row.
    let first = rows.iter().map(|r| r.t_us).min().unwrap();
    let v = json(&fx.dir, &["tree", "--until", "10s"]);
    let want = rows.iter().filter(|r| r.t_us < first + 10_000_000).count() as u64;
    assert_eq!(u(&v["totals"]["ops"]), want);

    let v = json(&fx.dir, &["tree", "--machine", "m-beta"]);
    let want = rows.iter().filter(|r| r.machine == "m-beta").count() as u64;
    assert_eq!(u(&v["totals"]["ops"]), want);

    // --top and --sort: ranked, and ties in a stable order.
    let v = json(&fx.dir, &["tree", "--top", "2", "--sort", "ops"]);
    let p = v["processes"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert!(u(&p[0]["ops"]) >= u(&p[1]["ops"]));
    let mut by_ops: BTreeMap<(String, u32, String), u64> = BTreeMap::new();
    for r in rows {
        *by_ops
            .entry((r.machine.clone(), r.pid, r.comm.clone()))
            .or_default() += 1;
    }
    assert_eq!(u(&p[0]["ops"]), *by_ops.values().max().unwrap());
    let a = report(&fx.dir, &["--format", "json", "tree", "--sort", "errors"]).1;
    let b = report(&fx.dir, &["--format", "json", "tree", "--sort", "errors"]).1;
    assert_eq!(a, b, "the same input gives the same bytes");
}

#[test]
fn merging_per_file_partials_equals_one_sequential_pass() {
    let fx = fixture("merge");
    let a = parallel_and_sequential(fx.dir.join("tree"));
    assert_eq!(a.0, a.1);
    // The mixed recording: files with all the optional columns, some of
    // them, and none; cookie conversations that span two files.
    let b = parallel_and_sequential(attr_dir());
    assert_eq!(b.0, b.1);
    assert!(b.0.contains("\"containers\"") && b.0.contains("\"socket_cookie\": 11"));
}

/// The report's JSON from the parallel scan and from one sequential pass.
fn parallel_and_sequential(tree: PathBuf) -> (String, String) {
    use nwtrace::analysis::{Aggregate, AggregateConfig, Filter};
    use nwtrace::input::{self, Scan};
    use nwtrace::report::model;

    let config = AggregateConfig::default();
    let parallel = input::scan(
        input::discover(std::slice::from_ref(&tree)).unwrap(),
        &Filter::default(),
        config,
        &[],
    );

    let d = input::discover(&[tree]).unwrap();
    let mut one = Aggregate::new(config);
    let mut files = Vec::new();
    for (i, f) in d.files.iter().enumerate() {
        files.push(input::aggregate_file(
            f,
            i as u32,
            &Filter::default(),
            &mut one,
        ));
    }
    one.finish();
    let sequential = Scan {
        discovery: d,
        aggregate: one,
        files,
    };
    let opts = model::Options {
        inputs: vec![],
        filters: Default::default(),
        sort: model::SortKey::Bytes,
        top: None,
    };
    let a = serde_json::to_string_pretty(&model::build(&parallel, &opts)).unwrap();
    let b = serde_json::to_string_pretty(&model::build(&sequential, &opts)).unwrap();
    (a, b)
}

#[test]
fn bad_paths_are_one_line_and_exit_2() {
    let fx = fixture("errors");
    let empty = fx.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for args in [
        vec!["empty"],
        vec!["does-not-exist"],
        vec!["tree", "--since", "yesterday"],
        vec!["tree", "--machine", "nope"],
        vec!["tree", "--format", "json", "--format", "html"],
        vec!["tree", "--sort", "nope"],
        vec!["tree", "-o", "out.unknown"],
    ] {
        let (code, out, err) = report(&fx.dir, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("nwtrace: error: "), "{args:?}: {err}");
    }
}

#[test]
fn several_formats_in_one_pass_and_csv() {
    let fx = fixture("outputs");
    let (code, out, err) = report(
        &fx.dir,
        &[
            "tree",
            "-o",
            "r.json",
            "-o",
            "r.html",
            "-o",
            "r.txt",
            "-o",
            "r.csv",
            "--csv-table",
            "conversations",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let v: Value = serde_json::from_slice(&std::fs::read(fx.dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(u(&v["totals"]["ops"]), fx.rows.len() as u64);
    assert!(
        std::fs::read_to_string(fx.dir.join("r.html"))
            .unwrap()
            .starts_with("<!DOCTYPE html>")
    );
    assert!(
        std::fs::read_to_string(fx.dir.join("r.txt"))
            .unwrap()
            .starts_with("nwtrace report")
    );
    let csv = std::fs::read_to_string(fx.dir.join("r.csv")).unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    assert_eq!(&rdr.headers().unwrap()[0], "protocol");
    let n = rdr.records().inspect(|r| assert!(r.is_ok())).count();
    assert_eq!(n, v["conversations"].as_array().unwrap().len());
    // The comm with a comma and quotes survives the round trip.
    assert!(csv.contains("\"a,\"\"b\"\"\""), "{csv}");
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let fx = fixture("pipe");
    let mut child = Command::new(bin())
        .args(["report", "tree", "--top", "1000"])
        .current_dir(&fx.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then hang up (like `| head -c1`).
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
}

#[test]
fn baseline_deltas() {
    let fx = fixture("baseline");
    let v = json(&fx.dir, &["tree/m-alpha", "--baseline", "tree/m-beta"]);
    let b = &v["baseline"];
    let ops = b["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "ops")
        .unwrap();
    let alpha = fx.rows.iter().filter(|r| r.machine == "m-alpha").count() as f64;
    let beta = fx.rows.iter().filter(|r| r.machine == "m-beta").count() as f64;
    assert_eq!(ops["baseline"].as_f64().unwrap(), beta);
    assert_eq!(ops["current"].as_f64().unwrap(), alpha);
    assert_eq!(ops["delta"].as_f64().unwrap(), alpha - beta);
    let pct = ops["pct"].as_f64().unwrap();
    assert!((pct - (alpha - beta) / beta * 100.0).abs() < 1e-9);
    let nginx = b["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "nginx")
        .unwrap();
    let count = |m: &str| {
        fx.rows
            .iter()
            .filter(|r| r.machine == m && r.comm == "nginx")
            .count() as f64
    };
    assert_eq!(
        nginx["ops"]["delta"].as_f64().unwrap(),
        count("m-alpha") - count("m-beta")
    );
}

/// Reviewed snapshots of the text and JSON on the fixed fixture.
#[test]
fn snapshots() {
    let fx = fixture("snap");
    let (code, text, err) = report(&fx.dir, &["tree"]);
    assert_eq!(code, 0, "{err}");
    // Not a terminal: plain text, no escape sequences.
    assert!(!text.contains('\x1b'));
    insta::assert_snapshot!("report_text", text);
    let (code, json, err) = report(&fx.dir, &["tree", "--format", "json", "--top", "5"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("report_json_top5", json);
}

#[test]
fn any_level_of_the_tree_is_an_input() {
    let fx = fixture("levels");
    let count = |pred: &dyn Fn(&FxRow) -> bool| fx.rows.iter().filter(|r| pred(r)).count() as u64;
    for (path, want) in [
        ("tree", count(&|_| true)),
        ("tree/m-alpha", count(&|r| r.machine == "m-alpha")),
        (
            "tree/m-beta/20261126T050500Z",
            count(&|r| r.run == "20261126T050500Z"),
        ),
        (
            "tree/m-alpha/20261126T050000Z/nw",
            count(&|r| r.run == "20261126T050000Z"),
        ),
        (
            "tree/m-alpha/20261126T050000Z/nw/nw_0002.csv",
            count(&|r| r.file.ends_with("20261126T050000Z/nw/nw_0002.csv")),
        ),
    ] {
        let v = json(&fx.dir, &[path]);
        assert_eq!(u(&v["totals"]["ops"]), want, "{path}");
        assert!(v["runs"].as_array().unwrap().iter().all(|r| {
            r["machine_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("m-"))
        }));
    }
    // Two paths at once, overlapping: nothing is counted twice.
    let v = json(
        &fx.dir,
        &[
            "tree/m-alpha",
            "tree/m-alpha/20261126T060000Z",
            "tree/m-beta",
        ],
    );
    assert_eq!(u(&v["totals"]["ops"]), fx.rows.len() as u64);
}

// ---------------------------------------------------------------------
// The optional columns of `record --columns` (issue #12), on the
// hand-written mixed recording in tests/fixtures/attr:
//
//   run 120000Z nw_0001.csv: all six columns, 8 rows
//     1,2   redis-server pid 100, container C1, cookie 11: send 100, recv 50
//     3,4   app pid 200, container C2, cookie 22: send 50, recv 100
//     5     app pid 201 (a forked child) on cookie 22: send 0, EPIPE
//     6,7   curl pid 300 on the host, same pid and ports, cookies 33 and 34:
//           send 80 each
//     8     dnsmasq pid 400 (UDP, IPv6) on the host, no cookie, cgroup id:777:
//           send 60
//   run 120000Z nw_0002.csv: Container ID and Socket Cookie only
//     11    redis-server pid 100, C1, cookie 11: recv 30
//   run 130000Z nw_0001.csv: the 14 columns only
//     9     redis-server pid 100 on the same endpoints as cookie 11: send 1000
//     10    nginx pid 500 (IPv6): send 2000
//
// Every figure below is counted from that list by hand.
// ---------------------------------------------------------------------

const C1: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const C2: &str = "c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

fn attr_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/attr")
}

#[test]
fn per_container_view_of_a_mixed_recording() {
    let v = json(&attr_dir(), &["."]);
    assert_eq!(u(&v["totals"]["ops"]), 11);
    let a = &v["attribution"];
    assert_eq!(
        a["columns"],
        serde_json::json!([
            "TID",
            "UID",
            "Cgroup",
            "Container ID",
            "Netns",
            "Socket Cookie"
        ])
    );
    assert_eq!((u(&a["files_with"]), u(&a["files_without"])), (2, 1));
    // Rows 9 and 10.
    assert_eq!(u(&a["ops_without_container"]), 2);
    assert_eq!(u(&a["bytes_without_container"]), 3000);

    // By bytes: the host 220, C1 180, C2 150.
    let c = v["containers"].as_array().unwrap();
    let got: Vec<_> = c
        .iter()
        .map(|c| {
            (
                c["container_id"].as_str().map(str::to_string),
                u(&c["ops"]),
                u(&c["bytes_sent"]),
                u(&c["bytes_received"]),
                u(&c["errors"]),
                u(&c["hard_errors"]),
                u(&c["peers"]),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (None, 3, 220, 0, 0, 0, 2),
            (Some(C1.to_string()), 3, 100, 80, 0, 0, 1),
            (Some(C2.to_string()), 3, 50, 100, 1, 1, 1),
        ]
    );
    assert!(c.iter().all(|c| c["machine_id"] == "m1"));
    // Latency: counts and max are exact.
    let l = &c[1]["latency_ns"];
    assert_eq!((u(&l["send"]["count"]), u(&l["send"]["max"])), (1, 1000));
    assert_eq!(
        (
            u(&l["receive_blocking"]["count"]),
            u(&l["receive_blocking"]["max"])
        ),
        (2, 3000)
    );
    let l = &c[2]["latency_ns"];
    assert_eq!((u(&l["send"]["count"]), u(&l["send"]["max"])), (2, 2000));
    assert_eq!(c[2]["error_rate"].as_f64().unwrap(), 1.0 / 3.0);
    assert_eq!(u(&v["tables"]["containers"]["tracked"]), 3);
    // --top cuts these tables too, keeping the heaviest.
    let top1 = json(&attr_dir(), &[".", "--top", "1"]);
    for (t, n) in [("containers", 3), ("cgroups", 4), ("netns", 3)] {
        assert_eq!(top1[t].as_array().unwrap().len(), 1, "{t}");
        assert_eq!(u(&top1["tables"][t]["listed"]), 1, "{t}");
        assert_eq!(u(&top1["tables"][t]["tracked"]), n, "{t}");
    }
    assert!(top1["containers"][0]["container_id"].is_null());

    // Cgroups: row 11's file has no Cgroup column.
    let g: BTreeMap<String, (u64, u64)> = v["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["cgroup"].as_str().unwrap().to_string(),
                (u(&g["ops"]), u(&g["bytes_sent"]) + u(&g["bytes_received"])),
            )
        })
        .collect();
    let want: BTreeMap<String, (u64, u64)> = [
        (format!("system.slice/docker-{C1}.scope"), (2, 150)),
        (format!("system.slice/docker-{C2}.scope"), (3, 150)),
        (
            "user.slice/user-0.slice/session-1.scope".to_string(),
            (2, 160),
        ),
        ("id:777".to_string(), (1, 60)),
    ]
    .into();
    assert_eq!(g, want);
    let n: Vec<(u64, u64)> = v["netns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (u(&n["netns"]), u(&n["ops"])))
        .collect();
    assert_eq!(n, [(4026531840, 3), (4026532002, 3), (4026532001, 2)]);

    // The text: the host is its own row, ids are cut to 12 digits, and
    // the ops without the column are said.
    let (code, text, err) = report(&attr_dir(), &["."]);
    assert_eq!(code, 0, "{err}");
    let section = text
        .split("Containers (by bytes)")
        .nth(1)
        .expect("a Containers section");
    let lines: Vec<&str> = section.lines().skip(3).take(4).collect();
    let host: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&host[..6], ["host", "(no", "container)", "3", "220", "B"]);
    assert!(
        lines[1]
            .trim_start()
            .starts_with(&format!("{}  ", &C1[..12])),
        "{}",
        lines[1]
    );
    assert!(!section.split("\n\n").next().unwrap().contains(C1));
    assert!(lines[3].contains("2 ops") && lines[3].contains("without the Container ID column"));

    // CSV of the containers table: the host's id is empty.
    let (code, csv, _) = report(
        &attr_dir(),
        &[".", "--format", "csv", "--csv-table", "containers"],
    );
    assert_eq!(code, 0);
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let h: Vec<&str> = rdr.headers().unwrap().iter().take(3).collect();
    assert_eq!(h, ["machine_id", "container_id", "ops"]);
    let recs: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 3);
    assert_eq!((&recs[0][1], &recs[0][2], &recs[0][5]), ("", "3", "220"));
    assert_eq!((&recs[2][1], &recs[2][7]), (C2, "1"));
}

#[test]
fn conversations_are_keyed_by_socket_cookie_where_recorded() {
    let v = json(&attr_dir(), &["."]);
    let convs = v["conversations"].as_array().unwrap();
    // Cookies 11, 22, 33, 34, and the cookie-less rows 8, 9 and 10.
    assert_eq!(convs.len(), 7);
    let by_cookie = |c: u64| -> &Value {
        let mut m = convs.iter().filter(|x| x["socket_cookie"] == c);
        let x = m.next().unwrap_or_else(|| panic!("cookie {c}"));
        assert!(m.next().is_none(), "one conversation per cookie");
        x
    };
    // One socket across two files and both directions.
    let s = by_cookie(11);
    assert_eq!(
        (u(&s["ops"]), u(&s["bytes_sent"]), u(&s["bytes_received"])),
        (3, 100, 80)
    );
    assert_eq!(s.get("shared_socket"), None);
    // A forked child's op stays on its parent's socket; the first op's
    // pid is shown, and the socket is marked shared.
    let s = by_cookie(22);
    assert_eq!((u(&s["ops"]), u(&s["pid"]), u(&s["errors"])), (3, 200, 1));
    assert_eq!(s["shared_socket"], true);
    // Same pid, same ports, two sockets: two conversations.
    for c in [33, 34] {
        let s = by_cookie(c);
        assert_eq!(
            (u(&s["ops"]), u(&s["pid"]), u(&s["remote_port"])),
            (1, 300, 443)
        );
    }
    // Row 9 (no cookie column) is not merged into cookie 11's socket,
    // even though pid and endpoints are the same.
    let plain: Vec<&Value> = convs
        .iter()
        .filter(|x| x.get("socket_cookie").is_none())
        .collect();
    assert_eq!(plain.len(), 3);
    let row9 = plain.iter().find(|x| x["comm"] == "redis-server").unwrap();
    assert_eq!((u(&row9["ops"]), u(&row9["bytes_sent"])), (1, 1000));

    // Without the cookie column nothing changes: the classic key, no
    // cookie fields, no attribution sections.
    let v = json(&attr_dir(), &["m1/20261126T130000Z"]);
    assert_eq!(v["conversations"].as_array().unwrap().len(), 2);
    for key in ["attribution", "containers", "cgroups", "netns"] {
        assert!(v.get(key).is_none(), "{key}");
    }
    assert!(v["conversations"][0].get("socket_cookie").is_none());
    let (_, text, _) = report(&attr_dir(), &["m1/20261126T130000Z"]);
    assert!(!text.contains("Containers") && !text.contains("socket"));
}

#[test]
fn the_filter_words_of_record_keep_exactly_their_rows() {
    let c1 = &C1[..12];
    let c2 = &C2[..16];
    let cg1 = format!("/system.slice/docker-{C1}.scope");
    // (arguments, rows kept, from the list above)
    let cases: Vec<(Vec<&str>, &[u32])> = vec![
        (vec![], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        (vec!["--port", "6379"], &[1, 2, 3, 4, 5, 9, 11]),
        (vec!["--port", "443", "--port", "53"], &[6, 7, 8, 10]),
        (vec!["--protocol", "udp"], &[8]),
        (vec!["--ip-version", "6"], &[8, 10]),
        (
            vec!["--ip-version", "4", "--direction", "receive"],
            &[2, 4, 11],
        ),
        (vec!["--cgroup", "system.slice"], &[1, 2, 3, 4, 5]),
        (vec!["--cgroup", &cg1], &[1, 2]),
        (
            vec!["--cgroup", "user.slice", "--cgroup", "id:777"],
            &[6, 7, 8],
        ),
        (vec!["--cgroup", "/"], &[1, 2, 3, 4, 5, 6, 7]),
        (vec!["--container", c1], &[1, 2, 11]),
        (
            vec!["--container", c1, "--container", c2],
            &[1, 2, 3, 4, 5, 11],
        ),
        (vec!["--container", c2, "--direction", "send"], &[3, 5]),
        (vec!["--exclude-comm", "app"], &[1, 2, 6, 7, 8, 9, 10, 11]),
        (
            vec!["--exclude-comm", "app", "--exclude-comm", "redis-server"],
            &[6, 7, 8, 10],
        ),
        (vec!["--netns", "4026531840"], &[6, 7, 8]),
        (
            vec!["--port", "6379", "--comm", "app", "--pid", "201"],
            &[5],
        ),
    ];
    // Sizes by row number, to check bytes as well as ops.
    let size = |r: u32| [0, 100, 50, 50, 100, 0, 80, 80, 60, 1000, 2000, 30][r as usize];
    for (args, rows) in cases {
        let mut a = vec!["."];
        a.extend(&args);
        let v = json(&attr_dir(), &a);
        let t = &v["totals"];
        assert_eq!(u(&t["ops"]), rows.len() as u64, "{args:?}");
        let bytes: u64 = rows.iter().map(|&r| size(r)).sum();
        assert_eq!(
            u(&t["bytes_sent"]) + u(&t["bytes_received"]),
            bytes,
            "{args:?}"
        );
    }
    // The filters are written back into the JSON.
    let v = json(
        &attr_dir(),
        &[
            ".",
            "--container",
            &C1[..12].to_ascii_uppercase(),
            "--cgroup",
            "a/b/",
            "--ip-version",
            "4",
        ],
    );
    assert_eq!(v["filters"]["container"], serde_json::json!([&C1[..12]]));
    assert_eq!(v["filters"]["cgroup"], serde_json::json!(["/a/b"]));
    assert_eq!(v["filters"]["ip_version"], 4);
    let (_, text, _) = report(
        &attr_dir(),
        &[
            ".",
            "--container",
            &C1[..12],
            "--exclude-comm",
            "app",
            "--netns",
            "7",
        ],
    );
    let line = text.lines().find(|l| l.starts_with("filters: ")).unwrap();
    assert!(
        line.contains(&format!("container [\"{}\"]", &C1[..12]))
            && line.contains("exclude-comm [\"app\"]")
            && line.contains("netns [7]"),
        "{line}"
    );

    for bad in [
        vec!["--container", "3f4e1c2b9a8"],
        vec!["--container", "not-hex-at-all"],
        vec!["--ip-version", "5"],
        vec!["--protocol", "sctp"],
        vec!["--port", "65536"],
        vec!["--cgroup", "a/../b"],
        vec!["--exclude-comm", "0123456789abcdef"],
        vec!["--netns", "x"],
    ] {
        let mut a = vec!["."];
        a.extend(&bad);
        let (code, out, err) = report(&attr_dir(), &a);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("nwtrace: error: "), "{bad:?}: {err}");
    }
}

#[test]
fn attribution_text_is_escaped_in_html() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-attr-html/m/r/nw");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let header = "Timestamp,PID,Command,Protocol,IP Version,Source Address,Destination Address,Source Port,Destination Port,Size,Direction,Latency,Error,MSG Flags,Cgroup,Container ID";
    let row = "2026-11-26 12:00:00.000001,1,x,TCP,4,10.0.0.1,10.0.0.2,1,2,5,send,1,,";
    std::fs::write(
        dir.join("nw_0001.csv"),
        format!("{header}\n{row},\"evil/<script>alert(1)</script>\",{C1}\n"),
    )
    .unwrap();
    let (code, html, err) = report(&dir, &[".", "--format", "html"]);
    assert_eq!(code, 0, "{err}");
    assert!(!html.contains("<script>alert(1)"), "the cgroup is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;"));
    assert!(html.contains("id=\"containers\"") && html.contains(&format!("title=\"{C1}\"")));
}
