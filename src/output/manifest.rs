//! The run manifest beside the CSV files: written when tracing starts,
//! rewritten when it stops. A run whose manifest still says
//! `"finalized": false` died without stopping cleanly.

use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::capture::sampling::LossByReason;
use crate::capture::session::ProgramStats;
use crate::output::dir::SafeDir;
use crate::output::layout::LayoutError;
use crate::output::on_close::OnCloseStats;
use crate::output::sink::FileStats;

/// The manifest's fields. Also read back by `report` and the tests, so it
/// is the machine interface for a run's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
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
    pub files: Vec<FileStats>,
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

/// The manifest is written padded to this size, so that a final update on a
/// full disk can still overwrite it in place (JSON allows trailing space).
const RESERVED_BYTES: usize = 64 * 1024;

/// Owns this run's manifest file in the `nw` folder.
pub struct ManifestFile {
    dir: SafeDir,
    name: String,
}

impl ManifestFile {
    /// Creates `manifest.json`, or `manifest_2.json`, ... when another run
    /// sharing the folder has it: runs never touch each other's files.
    pub fn create(dir: SafeDir, first: &Manifest) -> Result<Self, LayoutError> {
        for n in 1u32.. {
            let name = if n == 1 {
                "manifest.json".to_string()
            } else {
                format!("manifest_{n}.json")
            };
            if let Some(mut file) = dir.create_file_exclusive(&name)? {
                file.write_all(&padded_json(first))
                    .map_err(|source| LayoutError::Io {
                        path: dir.path().join(&name),
                        source,
                    })?;
                return Ok(ManifestFile { dir, name });
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
    /// in place within the space it already holds.
    pub fn update(&self, manifest: &Manifest) -> io::Result<()> {
        let json = padded_json(manifest);
        match self.replace_atomically(&json) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) => {
                self.overwrite_in_place(&json)
            }
            other => other,
        }
    }

    fn overwrite_in_place(&self, json: &[u8]) -> io::Result<()> {
        let file = self.dir.open_file_for_write(&self.name)?;
        file.write_all_at(json, 0)?;
        file.sync_data()
    }

    fn replace_atomically(&self, json: &[u8]) -> io::Result<()> {
        let tmp = format!(".{}.{}.tmp", self.name, std::process::id());
        // A leftover from a killed run with our pid: ours to remove.
        let _ = self.dir.unlink(&tmp);
        let mut file = self
            .dir
            .create_file_exclusive(&tmp)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists))?;
        let written = file.write_all(json).and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = self.dir.unlink(&tmp);
            return Err(e);
        }
        self.dir.rename(&tmp, &self.name)
    }
}

fn padded_json(m: &Manifest) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(m).expect("manifest serialises");
    out.push(b'\n');
    if out.len() < RESERVED_BYTES {
        out.resize(RESERVED_BYTES, b' ');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::layout::create_run_dir;

    fn manifest() -> Manifest {
        Manifest {
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
        let file = ManifestFile::create(run.try_clone().unwrap(), &m).unwrap();
        assert_eq!(file.path(), run.path().join("manifest.json"));
        let first: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(first["finalized"], false);
        assert_eq!(first["command_line"][3], "a\"b");

        m.finalized = true;
        m.exit_reason = Some("SIGINT".into());
        m.files.push(FileStats {
            name: "nw_0001.csv".into(),
            rows: 3,
            bytes: 300,
            deleted: false,
        });
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
        let other = ManifestFile::create(run.try_clone().unwrap(), &manifest()).unwrap();
        assert_eq!(other.path(), run.path().join("manifest_2.json"));
    }
}
