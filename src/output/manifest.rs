//! The run manifest beside the CSV files: written when tracing starts,
//! rewritten when it stops. A run whose manifest still says
//! `"finalized": false` died without stopping cleanly.
//!
//! Bounded (version 2): it lists the files still on disk, and folds the
//! ones retention deleted into exact counts ([`DeletedFiles`]), so that a
//! month of rotations does not grow it; it is padded to a reserve sized
//! for the most files retention keeps ([`reserve_for`]), so that its final
//! update fits in place on a full disk.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::output::dir::SafeDir;
use crate::output::layout::LayoutError;
use crate::output::sink::Retention;
pub use crate::schema::manifest::{DeletedFiles, MANIFEST_VERSION, Manifest, WrittenFile};
use crate::timefmt::iso8601;

/// `nw_0042.csv.zst` -> 42.
fn file_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("nw_")?;
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

// The writer's side of the one manifest type (schema::manifest).
impl Manifest {
    /// Sets `files` to the sink's files still on disk and folds the
    /// deleted ones into `deleted_files`. `all` is every file of the run
    /// in creation order (the sink's list).
    pub fn set_files(&mut self, all: &[WrittenFile]) {
        let mut deleted = DeletedFiles::default();
        let mut live = Vec::new();
        for (i, f) in all.iter().enumerate() {
            if !f.deleted {
                live.push(f.clone());
                continue;
            }
            deleted.files += 1;
            deleted.rows += f.rows;
            deleted.bytes += f.bytes;
            if deleted.first_file.is_none() {
                deleted.first_file = Some(f.name.clone());
                deleted.first_seq = file_seq(&f.name);
                deleted.first_started_at = Some(iso8601(f.started_secs));
            }
            deleted.last_file = Some(f.name.clone());
            deleted.last_seq = file_seq(&f.name);
            // A file is finished when the next one starts; the file being
            // written is never deleted, so there is a next one.
            deleted.last_finished_at = all.get(i + 1).map(|n| iso8601(n.started_secs));
        }
        self.manifest_version = MANIFEST_VERSION;
        self.files = live;
        self.deleted_files = deleted;
    }
}

/// The least a manifest is padded to, so that a final update on a full
/// disk can still overwrite it in place (JSON allows trailing space).
const RESERVED_BYTES: usize = 64 * 1024;
/// Room for one entry of `files` (pretty-printed, a 20-digit row and byte
/// count, a name like `nw_1234567.csv.zst`: 142 bytes), with a margin.
const ENTRY_BYTES: usize = 160;
/// Room for everything but `files`, with a margin for a long command line.
const FIXED_BYTES: usize = 32 * 1024;
/// The largest reserve: what retention and the `--on-close` catch-up read
/// of a manifest (output::expire::read_manifest).
pub const MAX_RESERVE: usize = 16 << 20;

/// The reserve for a run that keeps at most `live` files on disk (the one
/// being written included), `None` when it cannot be bounded.
fn reserve_for_files(live: Option<u64>) -> usize {
    let files = usize::try_from(live.unwrap_or(0)).unwrap_or(usize::MAX);
    RESERVED_BYTES.max(FIXED_BYTES.saturating_add(files.saturating_mul(ENTRY_BYTES)))
}

/// The most files a run keeps on disk under `retention`: `--max-files`
/// plus the one being written, or for `--max-size` one a `rotate_size`
/// plus two (a plain file ends within a row of the rotation size; a
/// compressed one within a flush, so this is an estimate there). `None`
/// when only `--max-age`, or nothing, limits them.
pub fn most_files_kept(retention: &Retention, rotate_size: u64) -> Option<u64> {
    let by_count = retention.max_files.map(|n| n as u64 + 1);
    let by_size = retention.max_bytes.map(|b| b / rotate_size.max(1) + 2);
    match (by_count, by_size) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The manifest's reserve for a run with these limits, or `Err` (one line
/// for the user) when the files it would list cannot fit [`MAX_RESERVE`].
/// Without a limit on the number of files (only `--max-age`, or none) it
/// is 64 KiB, and a manifest that outgrows it needs free disk space for
/// its final update (docs/output.md, "The run manifest").
pub fn reserve_for(retention: &Retention, rotate_size: u64) -> Result<usize, String> {
    let live = most_files_kept(retention, rotate_size);
    let reserve = reserve_for_files(live);
    if reserve > MAX_RESERVE {
        return Err(format!(
            "these limits keep up to {} files, too many for the run manifest to list (at most {}): use a larger --rotate-size, or a smaller --max-files or --max-size",
            live.unwrap_or(0),
            (MAX_RESERVE - FIXED_BYTES) / ENTRY_BYTES - 1
        ));
    }
    Ok(reserve)
}

/// Owns this run's manifest file in the `nw` folder.
pub struct ManifestFile {
    dir: SafeDir,
    name: String,
    /// The size it is padded to (see [`reserve_for`]).
    reserve: usize,
}

impl ManifestFile {
    /// Creates `manifest.json`, or `manifest_2.json`, ... when another run
    /// sharing the folder has it: runs never touch each other's files.
    pub fn create(dir: SafeDir, first: &Manifest, reserve: usize) -> Result<Self, LayoutError> {
        for n in 1u32.. {
            let name = if n == 1 {
                "manifest.json".to_string()
            } else {
                format!("manifest_{n}.json")
            };
            if let Some(mut file) = dir.create_file_exclusive(&name)? {
                file.write_all(&padded_json(first, reserve))
                    .map_err(|source| LayoutError::Io {
                        path: dir.path().join(&name),
                        source,
                    })?;
                return Ok(ManifestFile { dir, name, reserve });
            }
        }
        unreachable!("u32 names run out")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    /// The run's `nw` folder.
    pub fn dir(&self) -> &SafeDir {
        &self.dir
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the manifest atomically (a reader sees the old one or the
    /// new one, never half of either); when the disk is full, overwrites it
    /// in place within the space it already holds (never past it: a
    /// manifest cut short would not parse, so then the old one stays).
    pub fn update(&self, manifest: &Manifest) -> io::Result<()> {
        let json = padded_json(manifest, self.reserve);
        match self.replace_atomically(&json) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) => {
                self.overwrite_in_place(&json)
            }
            other => other,
        }
    }

    fn overwrite_in_place(&self, json: &[u8]) -> io::Result<()> {
        let file = self.dir.open_file_for_write(&self.name)?;
        let held = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
        if json.len() > held {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the disk is full and the manifest ({} bytes) outgrew its {held} bytes; the previous one stays",
                    json.len()
                ),
            ));
        }
        // Spaces over the rest of the old text, which was longer.
        let mut json = json.to_vec();
        json.resize(held, b' ');
        file.write_all_at(&json, 0)?;
        file.sync_data()
    }

    fn replace_atomically(&self, json: &[u8]) -> io::Result<()> {
        self.dir
            .replace_file(&self.name, |file| file.write_all(json))
            .map(drop)
    }
}

fn padded_json(m: &Manifest, reserve: usize) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(m).expect("manifest serialises");
    out.push(b'\n');
    if out.len() < reserve {
        out.resize(reserve, b' ');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::layout::create_run_dir;

    fn manifest() -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            nwtrace_version: "0.1.0".into(),
            command_line: vec![
                "nwtrace".into(),
                "record".into(),
                "--comm".into(),
                "a\"b".into(),
            ],
            pid: 42,
            kernel: "6.18.0".into(),
            backend: Some("tracepoint".into()),
            machine_id: "m".into(),
            started_at: Some("2026-11-26T05:08:14Z".into()),
            stopped_at: None,
            finalized: false,
            exit_reason: None,
            files: vec![],
            deleted_files: DeletedFiles::default(),
            rows_written: 0,
            events_captured: 0,
            events_lost: 0,
            uring_requests_lost: 0,
            probes_missed: 0,
            rows_lost: 0,
            malformed_records: 0,
            programs: vec![],
            columns: vec![],
            on_close: None,
            loss_by_reason: None,
        }
    }

    #[test]
    fn created_then_finalised_and_never_shared() {
        let out = std::env::temp_dir().join(format!("nwtrace-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let run = create_run_dir(&out, "m", "t").unwrap();
        let mut m = manifest();
        let file = ManifestFile::create(run.try_clone().unwrap(), &m, RESERVED_BYTES).unwrap();
        assert_eq!(file.path(), run.path().join("manifest.json"));
        let first: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(first["finalized"], false);
        assert_eq!(first["command_line"][3], "a\"b");

        m.finalized = true;
        m.exit_reason = Some("SIGINT".into());
        m.set_files(&[WrittenFile {
            name: "nw_0001.csv".into(),
            rows: 3,
            bytes: 300,
            deleted: false,
            started_secs: 0,
        }]);
        file.update(&m).unwrap();
        let last: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(last["finalized"], true);
        assert_eq!(last["files"][0]["rows"], 3);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(run.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["manifest.json"]);

        // A second run in the same folder gets its own manifest.
        let other =
            ManifestFile::create(run.try_clone().unwrap(), &manifest(), RESERVED_BYTES).unwrap();
        assert_eq!(other.path(), run.path().join("manifest_2.json"));
    }

    fn file(seq: u32, rows: u64, deleted: bool, started_secs: i64) -> WrittenFile {
        WrittenFile {
            name: format!("nw_{seq:04}.csv"),
            rows,
            bytes: rows * 100,
            deleted,
            started_secs,
        }
    }

    /// Every field set, optional ones included.
    fn full() -> Manifest {
        use crate::capture::sampling::{LeftOut, LossByReason, RateLimitBy, Suppressed};
        use crate::capture::session::ProgramStats;
        use crate::output::on_close::OnCloseStats;
        let mut m = manifest();
        m.stopped_at = Some("2026-11-26T06:00:00Z".into());
        m.finalized = true;
        m.exit_reason = Some("SIGINT".into());
        m.files = vec![file(3, 3, false, 0)];
        m.deleted_files = DeletedFiles {
            files: 2,
            rows: 5,
            bytes: 500,
            first_file: Some("nw_0001.csv".into()),
            last_file: Some("nw_0002.csv".into()),
            first_seq: Some(1),
            last_seq: Some(2),
            first_started_at: Some("2026-11-26T05:08:14Z".into()),
            last_finished_at: Some("2026-11-26T05:30:00Z".into()),
        };
        m.rows_written = 8;
        m.events_captured = 9;
        m.events_lost = 1;
        m.uring_requests_lost = 1;
        m.probes_missed = 2;
        m.rows_lost = 3;
        m.malformed_records = 4;
        m.programs = vec![ProgramStats {
            name: "handle_exit".into(),
            run_count: 10,
            run_time_ns: 2000,
        }];
        m.columns = vec!["Timestamp".into(), "Cgroup".into()];
        m.on_close = Some(OnCloseStats {
            version: 2,
            command: "gzip".into(),
            journal: Some("on_close.jsonl".into()),
            queued: 3,
            succeeded: 2,
            failed: 1,
            dropped: 0,
            unfinished: 0,
            caught_up: 5,
            caught_up_failed: 6,
            caught_up_gone: 7,
            caught_up_unfinished: 8,
        });
        m.loss_by_reason = Some(LossByReason {
            ring_full: 1,
            left_out: LeftOut {
                sampled_out: 2,
                rate_limited: 3,
                filtered: 4,
                unwritten_overflow_ops: 5,
                unwritten_overflow_bytes: 6,
                suppressed: vec![Suppressed {
                    by: RateLimitBy::Cgroup,
                    id: 7,
                    operations: 3,
                }],
                suppressed_other: 8,
            },
            sample: Some(10),
            rate_limit: Some(100),
            rate_limit_by: Some(RateLimitBy::Process),
        });
        m
    }

    /// The JSON, written out by hand from the contract (docs/output.md):
    /// contrib/spark, tests/fleet and older readers parse exactly this.
    const FULL_JSON: &str = r#"{
  "manifest_version": 2,
  "nwtrace_version": "0.1.0",
  "command_line": [
    "nwtrace",
    "record",
    "--comm",
    "a\"b"
  ],
  "pid": 42,
  "kernel": "6.18.0",
  "backend": "tracepoint",
  "machine_id": "m",
  "started_at": "2026-11-26T05:08:14Z",
  "stopped_at": "2026-11-26T06:00:00Z",
  "finalized": true,
  "exit_reason": "SIGINT",
  "files": [
    {
      "name": "nw_0003.csv",
      "rows": 3,
      "bytes": 300,
      "deleted": false
    }
  ],
  "deleted_files": {
    "files": 2,
    "rows": 5,
    "bytes": 500,
    "first_file": "nw_0001.csv",
    "last_file": "nw_0002.csv",
    "first_seq": 1,
    "last_seq": 2,
    "first_started_at": "2026-11-26T05:08:14Z",
    "last_finished_at": "2026-11-26T05:30:00Z"
  },
  "rows_written": 8,
  "events_captured": 9,
  "events_lost": 1,
  "uring_requests_lost": 1,
  "probes_missed": 2,
  "rows_lost": 3,
  "malformed_records": 4,
  "programs": [
    {
      "name": "handle_exit",
      "run_count": 10,
      "run_time_ns": 2000
    }
  ],
  "columns": [
    "Timestamp",
    "Cgroup"
  ],
  "on_close": {
    "version": 2,
    "command": "gzip",
    "journal": "on_close.jsonl",
    "queued": 3,
    "succeeded": 2,
    "failed": 1,
    "dropped": 0,
    "unfinished": 0,
    "caught_up": 5,
    "caught_up_failed": 6,
    "caught_up_gone": 7,
    "caught_up_unfinished": 8
  },
  "loss_by_reason": {
    "ring_full": 1,
    "sampled_out": 2,
    "rate_limited": 3,
    "filtered": 4,
    "unwritten_overflow_ops": 5,
    "unwritten_overflow_bytes": 6,
    "suppressed": [
      {
        "by": "cgroup",
        "id": 7,
        "operations": 3
      }
    ],
    "suppressed_other": 8,
    "sample": 10,
    "rate_limit": 100,
    "rate_limit_by": "process"
  }
}
"#;

    /// The bytes `record` writes, field for field and in order, for a
    /// manifest with every field set and for the one written at the start
    /// (optional parts absent, not null).
    #[test]
    fn the_written_json_is_byte_for_byte_the_contracts() {
        let json = padded_json(&full(), 0);
        assert_eq!(std::str::from_utf8(&json).unwrap(), FULL_JSON);
        let start = String::from_utf8(padded_json(&manifest(), 0)).unwrap();
        assert_eq!(
            start,
            r#"{
  "manifest_version": 2,
  "nwtrace_version": "0.1.0",
  "command_line": [
    "nwtrace",
    "record",
    "--comm",
    "a\"b"
  ],
  "pid": 42,
  "kernel": "6.18.0",
  "backend": "tracepoint",
  "machine_id": "m",
  "started_at": "2026-11-26T05:08:14Z",
  "stopped_at": null,
  "finalized": false,
  "exit_reason": null,
  "files": [],
  "deleted_files": {
    "files": 0,
    "rows": 0,
    "bytes": 0
  },
  "rows_written": 0,
  "events_captured": 0,
  "events_lost": 0,
  "uring_requests_lost": 0,
  "probes_missed": 0,
  "rows_lost": 0,
  "malformed_records": 0
}
"#
        );
    }

    #[test]
    fn deleted_files_fold_into_exact_counts_and_the_size_stays_flat() {
        // 300,000 rotations, the newest 20 kept (--max-files 20), the
        // first row counts and times all different.
        let kept = 20;
        let n = 300_000u32;
        let all: Vec<WrittenFile> = (1..=n)
            .map(|i| {
                file(
                    i,
                    u64::from(i % 97),
                    i <= n - kept,
                    1_700_000_000 + i64::from(i),
                )
            })
            .collect();
        let mut m = manifest();
        m.set_files(&all);
        assert_eq!(m.files.len(), kept as usize);
        assert!(m.files.iter().all(|f| !f.deleted));
        assert_eq!(m.files[0].name, "nw_299981.csv");
        let d = &m.deleted_files;
        let gone = &all[..(n - kept) as usize];
        assert_eq!(d.files, u64::from(n - kept));
        assert_eq!(d.rows, gone.iter().map(|f| f.rows).sum::<u64>());
        assert_eq!(d.bytes, gone.iter().map(|f| f.bytes).sum::<u64>());
        assert_eq!(d.first_file.as_deref(), Some("nw_0001.csv"));
        assert_eq!(d.last_file.as_deref(), Some("nw_299980.csv"));
        assert_eq!((d.first_seq, d.last_seq), (Some(1), Some(299_980)));
        assert_eq!(d.first_started_at.as_deref(), Some("2023-11-14T22:13:21Z"));
        // Finished when nw_299981 started.
        assert_eq!(
            d.last_finished_at.as_deref(),
            Some(iso8601(1_700_000_000 + 299_981).as_str())
        );
        let reserve = reserve_for(
            &Retention {
                max_files: Some(kept as usize),
                max_bytes: None,
            },
            1 << 20,
        )
        .unwrap();
        assert_eq!(reserve, RESERVED_BYTES);
        let json = padded_json(&m, reserve);
        assert_eq!(json.len(), reserve, "the manifest stays within its reserve");
        let back: Manifest = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.deleted_files, m.deleted_files);
        assert_eq!(back.manifest_version, 2);
    }

    #[test]
    fn the_reserve_holds_the_most_files_retention_keeps() {
        let limits = |max_files: Option<usize>, max_bytes: Option<u64>| Retention {
            max_files,
            max_bytes,
        };
        // No count limit: the floor.
        assert_eq!(
            reserve_for(&limits(None, None), 1 << 20),
            Ok(RESERVED_BYTES)
        );
        // 5,000 files at the longest entry, and a command line.
        let r = reserve_for(&limits(Some(5_000), None), 1 << 20).unwrap();
        let all: Vec<WrittenFile> = (0..5_001)
            .map(|i| WrittenFile {
                name: format!("nw_{:07}.csv.zst", 1_000_000 + i),
                rows: u64::MAX,
                bytes: u64::MAX,
                deleted: false,
                started_secs: 0,
            })
            .collect();
        let mut m = manifest();
        m.command_line = vec!["x".repeat(8_000)];
        m.set_files(&all);
        assert_eq!(padded_json(&m, r).len(), r, "fits its reserve");
        // --max-size over --rotate-size: the same, by the number of files.
        let by_size = reserve_for(&limits(None, Some(5_000 << 20)), 1 << 20).unwrap();
        assert!(by_size >= r);
        // Limits that keep more files than any reserve: refused.
        let refused = reserve_for(&limits(None, Some(1 << 40)), 8 << 10).unwrap_err();
        assert!(refused.contains("--rotate-size"), "{refused}");
        assert!(reserve_for(&limits(Some(1_000_000), None), 1 << 20).is_err());
    }

    #[test]
    fn a_version_1_manifest_still_reads() {
        let v1 = br#"{"nwtrace_version":"0.1.0","command_line":[],"pid":1,"kernel":"k",
            "backend":"tracepoint","machine_id":"m","started_at":"x","stopped_at":null,
            "finalized":true,"exit_reason":null,
            "files":[{"name":"nw_0001.csv","rows":2,"bytes":9,"deleted":true}],
            "rows_written":2,"events_lost":0,"probes_missed":0,"rows_lost":0,
            "malformed_records":0}"#;
        let m: Manifest = serde_json::from_slice(v1).unwrap();
        assert_eq!(m.manifest_version, 1);
        assert!(m.files[0].deleted);
        assert_eq!(m.deleted_files, DeletedFiles::default());
    }

    /// One type written and read: what the writer writes, the reader
    /// (`input::manifest`) parses back to the same value, padding and all.
    #[test]
    fn what_is_written_reads_back_the_same() {
        for m in [manifest(), full()] {
            let back = Manifest::parse(&padded_json(&m, RESERVED_BYTES)).unwrap();
            assert_eq!(back, m);
        }
    }
}
