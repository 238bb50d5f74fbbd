//! `--max-age`: deleting what nwtrace wrote before, once it is older than
//! the limit, oldest first, so that a service that restarts (a new run
//! folder each time) still cannot fill the disk.
//!
//! What may be deleted is narrow on purpose (docs/output.md, "Retention"):
//!
//! - this run's own files, except the one being written (the sink does
//!   that, from its own list);
//! - in the *sibling* run folders of the same `<output-dir>/<MACHINE_ID>/`,
//!   a file only when all of these hold: its `nw/` folder holds a manifest
//!   that parses as an nwtrace manifest, and no recorder named by one is
//!   still running; the file's name is `nw_NNNN.csv`, `.csv.zst` or
//!   `.csv.gz`; it is a regular file (not a symlink) owned by this
//!   process's uid; it starts (decompressed) with nwtrace's CSV header; its
//!   mtime is older than the limit;
//! - then, when such an `nw/` folder holds no data file any more, its
//!   `manifest*.json` files, their `summary*.json` and `on_close*.jsonl`,
//!   and the `nw/` and run folders if they are empty (`rmdir`, which never
//!   removes anything else).
//!
//! Nothing is followed through a symlink: every step is an `*at()` call on
//! a descriptor (SafeDir).

use std::io::Read;
use std::path::PathBuf;

use crate::output::dir::SafeDir;
use crate::output::manifest::Manifest;
use crate::output::row::HEADER;

/// `nw_0001.csv`, `nw_12345.csv.zst`, `nw_0002.csv.gz`: four digits or
/// more (numbers past 9999 simply grow).
pub fn is_data_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("nw_") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits >= 4 && matches!(&rest[digits..], ".csv" | ".csv.zst" | ".csv.gz")
}

pub fn is_manifest_name(name: &str) -> bool {
    name == "manifest.json"
        || name
            .strip_prefix("manifest_")
            .and_then(|r| r.strip_suffix(".json"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// True when the file decompresses (by its name) to nwtrace's header.
pub fn starts_with_header(dir: &SafeDir, name: &str) -> bool {
    let Ok(file) = dir.open_file_for_read(name) else {
        return false;
    };
    let mut reader: Box<dyn Read> = if name.ends_with(".zst") {
        match zstd::stream::read::Decoder::new(file) {
            Ok(d) => Box::new(d),
            Err(_) => return false,
        }
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut head = vec![0u8; HEADER.len()];
    reader.read_exact(&mut head).is_ok() && head == HEADER.as_bytes()
}

/// True when a process with this pid runs and is called nwtrace.
fn recorder_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "nwtrace")
}

/// A manifest of `nw` (at most the largest reserve read, never through a
/// symlink), of either version, or `None` when it cannot be read or
/// parsed.
pub(crate) fn read_manifest(nw: &SafeDir, name: &str) -> Option<Manifest> {
    let mut text = Vec::new();
    nw.open_file_for_read(name)
        .ok()?
        .take(crate::output::manifest::MAX_RESERVE as u64)
        .read_to_end(&mut text)
        .ok()?;
    Manifest::parse_complete(&text)
}

fn manifests(nw: &SafeDir, names: &[String]) -> Option<Vec<(String, Manifest)>> {
    let mut found = Vec::new();
    for name in names.iter().filter(|n| is_manifest_name(n)) {
        found.push((name.clone(), read_manifest(nw, name)?));
    }
    (!found.is_empty()).then_some(found)
}

/// Deletes the expired files of the sibling runs of `this_run` in the
/// machine folder, oldest first, and returns their paths.
pub fn expire_old_runs(machine: &SafeDir, this_run: &str, cutoff_secs: i64) -> Vec<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let Ok(runs) = machine.entries() else {
        return Vec::new();
    };
    // (mtime, run index, name)
    let mut candidates = Vec::new();
    let mut folders = Vec::new();
    for run_name in runs.into_iter().filter(|r| r != this_run) {
        if !machine.stat(&run_name).is_some_and(|s| s.is_dir) {
            continue;
        }
        let Some(run) = machine.open_existing_dir(&run_name) else {
            continue;
        };
        let Some(nw) = run.open_existing_dir("nw") else {
            continue;
        };
        let Ok(names) = nw.entries() else { continue };
        let Some(found) = manifests(&nw, &names) else {
            continue;
        };
        if found
            .iter()
            .any(|(_, m)| !m.finalized && recorder_alive(m.pid))
        {
            continue;
        }
        let index = folders.len();
        for name in names.iter().filter(|n| is_data_file_name(n)) {
            let Some(st) = nw.stat(name) else { continue };
            if st.is_file
                && st.uid == uid
                && st.mtime_secs < cutoff_secs
                && starts_with_header(&nw, name)
            {
                candidates.push((st.mtime_secs, index, name.clone()));
            }
        }
        folders.push((run_name, run, nw, found));
    }
    candidates.sort();
    let mut deleted = Vec::new();
    let mut touched = vec![false; folders.len()];
    for (_, index, name) in candidates {
        let nw = &folders[index].2;
        if nw.unlink(&name).is_ok() {
            deleted.push(nw.path().join(&name));
            touched[index] = true;
        }
    }
    // Runs left with no data: their manifests, then empty folders.
    for ((run_name, run, nw, found), touched) in folders.iter().zip(touched) {
        if !touched {
            continue;
        }
        let left = nw
            .entries()
            .map(|n| n.iter().any(|n| is_data_file_name(n)))
            .unwrap_or(true);
        if left {
            continue;
        }
        for (name, _) in found {
            // The run's summary goes with its manifest (summary.rs names
            // it after the manifest); then the folder can empty.
            if let Some(summary) = crate::output::summary::summary_name(name) {
                let _ = nw.unlink(&summary);
            }
            // And its --on-close journal: nothing is left to hand over.
            if let Some(journal) = crate::output::journal::journal_name(name) {
                let _ = nw.unlink(&journal);
            }
            let _ = nw.unlink(name);
        }
        if run.rmdir("nw").is_ok() {
            let _ = machine.rmdir(run_name);
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_names() {
        for ok in [
            "nw_0001.csv",
            "nw_9999.csv",
            "nw_10000.csv",
            "nw_123456.csv.zst",
            "nw_0002.csv.gz",
        ] {
            assert!(is_data_file_name(ok), "{ok}");
        }
        for bad in [
            "nw_001.csv",
            "nw_0001.csv.tmp",
            "nw_0001.txt",
            "xnw_0001.csv",
            "nw_.csv",
            "nw_00a1.csv",
            "manifest.json",
        ] {
            assert!(!is_data_file_name(bad), "{bad}");
        }
        assert!(is_manifest_name("manifest.json") && is_manifest_name("manifest_12.json"));
        assert!(!is_manifest_name("manifest_.json") && !is_manifest_name("manifest_x.json"));
    }
}

#[cfg(test)]
mod expire_tests {
    use super::*;
    use crate::output::sink::{CsvSink, MaxAge, Retention};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    fn age_file(path: &Path, days: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(days * 86400))
            .unwrap();
    }

    fn manifest_json(finalized: bool) -> String {
        serde_json::json!({
            "nwtrace_version": "0.1.0", "command_line": ["nwtrace"], "pid": 1,
            "kernel": "6.18", "backend": "tracepoint", "machine_id": "m",
            "started_at": "x", "stopped_at": null, "finalized": finalized,
            "exit_reason": null, "files": [], "rows_written": 0, "events_lost": 0,
            "probes_missed": 0, "rows_lost": 0, "malformed_records": 0
        })
        .to_string()
    }

    fn machine_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nwtrace-expire-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A run folder with an nw/ holding `files` (name, content, age in days).
    fn run(machine: &Path, name: &str, manifest: Option<&str>, files: &[(&str, &[u8], u64)]) {
        let nw = machine.join(name).join("nw");
        std::fs::create_dir_all(&nw).unwrap();
        if let Some(m) = manifest {
            std::fs::write(nw.join("manifest.json"), m).unwrap();
        }
        for (f, content, days) in files {
            std::fs::write(nw.join(f), content).unwrap();
            age_file(&nw.join(f), *days);
        }
    }

    fn zst(text: &str) -> Vec<u8> {
        zstd::bulk::compress(text.as_bytes(), 3).unwrap()
    }

    #[test]
    fn only_provably_nwtrace_files_of_other_runs_expire() {
        let m = machine_dir("runs");
        let row = format!("{HEADER}2026-01-01 00:00:00.000000,1,x,UDP,4,,,,,0,send,,,\n");
        let row = row.as_bytes();
        let fin = manifest_json(true);
        let killed = manifest_json(false);
        run(
            &m,
            "A-old",
            Some(&fin),
            &[
                ("nw_0001.csv", row, 9),
                (
                    "nw_0002.csv.zst",
                    &zst(std::str::from_utf8(row).unwrap()),
                    8,
                ),
            ],
        );
        run(
            &m,
            "B-partly",
            Some(&killed),
            &[("nw_0001.csv", row, 9), ("nw_10000.csv", row, 1)],
        );
        // A's --on-close journal goes with its manifest.
        std::fs::write(m.join("A-old/nw/on_close.jsonl"), "{}\n").unwrap();
        run(&m, "C-no-manifest", None, &[("nw_0001.csv", row, 9)]);
        run(
            &m,
            "D-foreign",
            Some(&fin),
            &[("nw_0001.csv", b"not ours\n", 9), ("notes.txt", b"x", 9)],
        );
        run(&m, "E-bad-manifest", Some("{}"), &[("nw_0001.csv", row, 9)]);
        run(&m, "THIS", Some(&fin), &[("nw_0001.csv", row, 9)]);
        std::os::unix::fs::symlink(
            m.join("C-no-manifest/nw/nw_0001.csv"),
            m.join("D-foreign/nw/nw_0002.csv"),
        )
        .unwrap();
        age_file(&m.join("C-no-manifest/nw/nw_0001.csv"), 9);

        let machine = SafeDir::open_user_path(&m).unwrap();
        let cutoff = crate::timefmt::now_epoch_secs() - 7 * 86400;
        let deleted = expire_old_runs(&machine, "THIS", cutoff);
        let names: Vec<String> = deleted
            .iter()
            .map(|p| p.strip_prefix(&m).unwrap().display().to_string())
            .collect();
        // Oldest first (A's 9-day file was aged a moment before B's).
        assert_eq!(
            names,
            [
                "A-old/nw/nw_0001.csv",
                "B-partly/nw/nw_0001.csv",
                "A-old/nw/nw_0002.csv.zst"
            ]
        );
        // A run left empty is removed whole; one with young data stays.
        assert!(!m.join("A-old").exists());
        assert!(m.join("B-partly/nw/nw_10000.csv").exists());
        assert!(m.join("B-partly/nw/manifest.json").exists());
        // Never touched: no manifest, not our header, a symlink, a bad
        // manifest, someone else's file, this run.
        for kept in [
            "C-no-manifest/nw/nw_0001.csv",
            "D-foreign/nw/nw_0001.csv",
            "D-foreign/nw/notes.txt",
            "D-foreign/nw/nw_0002.csv",
            "E-bad-manifest/nw/nw_0001.csv",
            "THIS/nw/nw_0001.csv",
        ] {
            assert!(
                m.join(kept).symlink_metadata().is_ok(),
                "{kept} was deleted"
            );
        }
    }

    #[test]
    fn this_runs_old_files_expire_but_never_the_current_one() {
        let m = machine_dir("own");
        let nw = crate::output::layout::create_run_dir(&m, "mid", "run").unwrap();
        let dir = nw.path().to_path_buf();
        let mut sink = CsvSink::create(nw, HEADER.len() as u64 + 3, Retention::default()).unwrap();
        for i in 0..3 {
            sink.append_row(|b| b.extend_from_slice(format!("{i}\n").as_bytes()))
                .unwrap();
        }
        sink.flush().unwrap();
        for f in ["nw_0001.csv", "nw_0002.csv", "nw_0003.csv"] {
            age_file(&dir.join(f), 30);
        }
        sink.set_max_age(MaxAge {
            age: Duration::from_secs(7 * 86400),
            machine: None,
        });
        let deleted: Vec<bool> = sink.files().iter().map(|f| f.deleted).collect();
        assert_eq!(deleted, [true, true, false]);
        assert!(dir.join("nw_0003.csv").exists());
    }
}
