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

use serde::{Deserialize, Serialize};

use crate::capture::sampling::LossByReason;
use crate::capture::session::ProgramStats;
use crate::output::dir::SafeDir;
use crate::output::layout::LayoutError;
use crate::output::on_close::OnCloseStats;
use crate::output::sink::{Retention, WrittenFile};
use crate::timefmt::iso8601;

/// The manifest format this nwtrace writes. 2: `files` lists only the
/// files on disk, `deleted_files` counts the rest. 1 (absent): `files`
/// listed every file, each with `"deleted": true|false`.
pub const MANIFEST_VERSION: u32 = 2;

fn version_1() -> u32 {
    1
}

/// The manifest's fields. Also read back by `report` and the tests, so it
/// is the machine interface for a run's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(default = "version_1")]
    pub manifest_version: u32,
    pub nwtrace_version: String,
    pub command_line: Vec<String>,
    pub pid: u32,
    pub kernel: String,
    pub backend: String,
    pub machine_id: String,
    pub started_at: String,
    pub stopped_at: Option<String>,
    pub finalized: bool,
    pub exit_reason: Option<String>,
    /// The files on disk (version 2; every file in version 1), oldest
    /// first. Set with [`Manifest::set_files`].
    pub files: Vec<WrittenFile>,
    /// The files retention deleted, folded (version 2).
    #[serde(default)]
    pub deleted_files: DeletedFiles,
    /// Every row written, in `files` and `deleted_files` alike.
    pub rows_written: u64,
    /// Events the capture delivered (equal to rows_written + rows_lost
    /// unless rows were discarded on purpose).
    #[serde(default)]
    pub events_captured: u64,
    pub events_lost: u64,
    /// io_uring requests issued while the table of requests in flight
    /// (16384) was full: their rows are lost (part of `events_lost`).
    #[serde(default)]
    pub uring_requests_lost: u64,
    /// Kretprobe returns the kernel missed (kprobe backend only).
    pub probes_missed: u64,
    /// Rows captured but not written (a write error stopped the run).
    pub rows_lost: u64,
    pub malformed_records: u64,
    /// Each BPF program's run count and run time, when the kernel's BPF
    /// statistics were on (`kernel.bpf_stats_enabled=1`) during the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramStats>,
    /// The header names of the files' columns: the contract's 14, then
    /// the optional ones of `--columns`. Absent from manifests written
    /// before the optional columns existed (those have the 14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// The `--on-close` hand-overs of the CSV files, when it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_close: Option<OnCloseStats>,
    /// Operations not written, by reason: the ring's loss, `--sample`,
    /// `--rate-limit` (with its suppressed counts) and the row filters;
    /// the rates asked for (docs/sampling.md). Set when the run stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_by_reason: Option<LossByReason>,
}

/// The files of a run that retention deleted, as exact totals: how many,
/// their rows and bytes, the first and last of them (in the order they
/// were written: `first_seq`/`last_seq` are the numbers in their names),
/// and when the first was started and the last finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedFiles {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// When the first deleted file was started (UTC, as `started_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started_at: Option<String>,
    /// When the last deleted file was finished (the next one started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_finished_at: Option<String>,
}

/// `nw_0042.csv.zst` -> 42.
fn file_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("nw_")?;
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

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
            backend: "tracepoint".into(),
            machine_id: "m".into(),
            started_at: "2026-11-26T05:08:14Z".into(),
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
}
