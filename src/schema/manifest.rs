//! The run manifest's one type: the fields `record` writes beside the CSV
//! files (`output::manifest` owns the file: creating, padding, replacing)
//! and every reader parses (`input::manifest` adds what readers ask of
//! it). One field list, so the writer and the readers cannot drift; the
//! tests pin its JSON byte for byte (contrib/spark and tests/fleet read
//! it too). docs/output.md, "The run manifest", describes the fields.

use serde::{Deserialize, Serialize};

/// The manifest format this nwtrace writes. 2: `files` lists only the
/// files on disk, `deleted_files` counts the rest. 1 (absent): `files`
/// listed every file, each with `"deleted": true|false`.
pub const MANIFEST_VERSION: u32 = 2;

fn version_1() -> u32 {
    1
}

/// The manifest: one field list that `record` fills and writes
/// (`output::manifest`) and that `report`, retention, `--on-close`'s
/// catch-up, the tests and the fleet job read (`input::manifest`): the
/// machine interface for a run's figures.
///
/// Read leniently: every field may be absent (`#[serde(default)]`), so
/// that a manifest of another version, or one made by hand, still reads,
/// and a reader says what it lacks rather than failing. The fields a
/// reader must tell absent from empty are `Option`s (`backend`,
/// `started_at`, `stopped_at`, `exit_reason`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    #[serde(default = "version_1")]
    pub manifest_version: u32,
    pub nwtrace_version: String,
    pub command_line: Vec<String>,
    pub pid: u32,
    pub kernel: String,
    pub backend: Option<String>,
    pub machine_id: String,
    /// When the run started, UTC (`2026-11-26T05:08:14Z`).
    pub started_at: Option<String>,
    pub stopped_at: Option<String>,
    pub finalized: bool,
    pub exit_reason: Option<String>,
    /// The files on disk (version 2; every file in version 1), oldest
    /// first. Set with `Manifest::set_files` (output::manifest).
    pub files: Vec<WrittenFile>,
    /// The files retention deleted, folded (version 2).
    pub deleted_files: DeletedFiles,
    /// Every row written, in `files` and `deleted_files` alike.
    pub rows_written: u64,
    /// Events the capture delivered (equal to rows_written + rows_lost
    /// unless rows were discarded on purpose).
    pub events_captured: u64,
    pub events_lost: u64,
    /// io_uring requests issued while the table of requests in flight
    /// (16384) was full: their rows are lost (part of `events_lost`).
    pub uring_requests_lost: u64,
    /// Kretprobe returns the kernel missed (kprobe backend only).
    pub probes_missed: u64,
    /// Rows captured but not written (a write error stopped the run).
    pub rows_lost: u64,
    pub malformed_records: u64,
    /// Each BPF program's run count and run time, when the kernel's BPF
    /// statistics were on (`kernel.bpf_stats_enabled=1`) during the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramStats>,
    /// The header names of the files' columns: the contract's 14, then
    /// the optional ones of `--columns`. Absent from manifests written
    /// before the optional columns existed (those have the 14).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// The `--on-close` hand-overs of the CSV files, when it was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_close: Option<OnCloseStats>,
    /// Operations not written, by reason: the ring's loss, `--sample`,
    /// `--rate-limit` (with its suppressed counts) and the row filters;
    /// the rates asked for (docs/sampling.md). Set when the run stops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_by_reason: Option<LossByReason>,
}

/// The fields `record` has written in every manifest since version 1:
/// the ones a lenient read would otherwise fill with defaults.
pub const ALWAYS_WRITTEN: [&str; 16] = [
    "nwtrace_version",
    "command_line",
    "pid",
    "kernel",
    "backend",
    "machine_id",
    "started_at",
    "stopped_at",
    "finalized",
    "exit_reason",
    "files",
    "rows_written",
    "events_lost",
    "probes_missed",
    "rows_lost",
    "malformed_records",
];

impl Manifest {
    /// A manifest as `record` writes it, of either version: every field of
    /// [`ALWAYS_WRITTEN`] present, or `None`. For the writer's own readers
    /// (retention, `--on-close`'s catch-up), which act on other runs'
    /// files only when their manifest proves them nwtrace's: `{}` reads
    /// leniently as an empty manifest, but proves nothing.
    pub fn parse_complete(bytes: &[u8]) -> Option<Manifest> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let fields = value.as_object()?;
        if !ALWAYS_WRITTEN.iter().all(|f| fields.contains_key(*f)) {
            return None;
        }
        serde_json::from_value(value).ok()
    }
}

/// One data file of a run, as the manifest lists it (the readers'
/// `input::FileStats` is what reading one found).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WrittenFile {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    /// Removed by the retention limits (listed so in version 1 only).
    pub deleted: bool,
    /// When the file was started (seconds since the epoch): the manifest
    /// folds deleted files into a time range (output::manifest).
    #[serde(skip)]
    pub started_secs: i64,
}

/// The files of a run that retention deleted, as exact totals: how many,
/// their rows and bytes, the first and last of them (in the order they
/// were written: `first_seq`/`last_seq` are the numbers in their names),
/// and when the first was started and the last finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeletedFiles {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// When the first deleted file was started (UTC, as `started_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_started_at: Option<String>,
    /// When the last deleted file was finished (the next one started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_finished_at: Option<String>,
}

/// One BPF program's totals over a run, from the kernel's own statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// The hand-overs of a run, for the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnCloseStats {
    #[serde(default = "version_1")]
    pub version: u32,
    pub command: String,
    /// The run's journal, a file name in the run's folder (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// Files queued for the command.
    pub queued: u64,
    /// Commands that exited 0.
    pub succeeded: u64,
    /// Commands that exited non-zero, died of a signal, or could not start.
    pub failed: u64,
    /// Files not queued: the queue was full (the command is too slow).
    pub dropped: u64,
    /// Files still queued or running when the run ended and the grace
    /// period ran out (their commands were not run, or were stopped).
    pub unfinished: u64,
    /// Files of earlier runs handed over at this start (exit 0).
    #[serde(default)]
    pub caught_up: u64,
    /// Files of earlier runs whose command failed at this start (tried
    /// again at the next one).
    #[serde(default)]
    pub caught_up_failed: u64,
    /// Files of earlier runs deleted (retention) before their turn, or no
    /// longer regular files: never handed over.
    #[serde(default)]
    pub caught_up_gone: u64,
    /// Files of earlier runs not reached before this run ended (left for
    /// the next start).
    #[serde(default)]
    pub caught_up_unfinished: u64,
}

/// The manifest's `loss_by_reason`: every reason an operation seen was
/// not written, and the thinning asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossByReason {
    /// Events lost because the ring buffer was full (`events_lost`).
    pub ring_full: u64,
    #[serde(flatten)]
    pub left_out: LeftOut,
    /// `--sample 1/N`'s N; absent: every flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
    /// `--rate-limit`, operations a second, and what it limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_by: Option<RateLimitBy>,
}

/// What thinning and the filters left out, by reason: the manifest's
/// `loss_by_reason` beside the ring's own loss.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Operations of flows that `--sample` did not keep.
    pub sampled_out: u64,
    /// Operations over `--rate-limit`.
    pub rate_limited: u64,
    /// Rows the row filters (`--port`, `--protocol`, `--direction`,
    /// `--ip-version`) left out.
    pub filtered: u64,
    /// Operations left out that found the unwritten map full: in
    /// `sampled_out`/`rate_limited`, but in no process or conversation
    /// (those figures are then lower bounds).
    pub unwritten_overflow_ops: u64,
    pub unwritten_overflow_bytes: u64,
    /// Operations over the limit per process (or cgroup), largest first,
    /// at most `capture::sampling::MAX_SUPPRESSED_LISTED` of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<Suppressed>,
    /// Suppressed operations of the keys not listed.
    #[serde(default)]
    pub suppressed_other: u64,
}

/// One key's operations over `--rate-limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    /// `process` (id: tgid) or `cgroup` (id: cgroup v2 id).
    pub by: RateLimitBy,
    pub id: u64,
    pub operations: u64,
}

/// What a rate limit is counted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBy {
    #[default]
    Process,
    Cgroup,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_manifest_has_every_field_written_since_version_1() {
        // What `record` writes at the start has each of them.
        let written = serde_json::to_value(Manifest::default()).unwrap();
        for f in ALWAYS_WRITTEN {
            assert!(written.get(f).is_some(), "{f} is not written");
        }
        let text = serde_json::to_vec(&Manifest::default()).unwrap();
        assert_eq!(Manifest::parse_complete(&text), Some(Manifest::default()));
        // A version 1 manifest (no version, no deleted_files) is complete.
        let v1 = br#"{"nwtrace_version":"0.1.0","command_line":[],"pid":1,"kernel":"k",
            "backend":"tracepoint","machine_id":"m","started_at":"x","stopped_at":null,
            "finalized":true,"exit_reason":null,"files":[],
            "rows_written":2,"events_lost":0,"probes_missed":0,"rows_lost":0,
            "malformed_records":0}"#;
        assert_eq!(Manifest::parse_complete(v1).unwrap().manifest_version, 1);
        // Each field missing, one at a time: not complete.
        for f in ALWAYS_WRITTEN {
            let mut v = written.clone();
            v.as_object_mut().unwrap().remove(f);
            let text = serde_json::to_vec(&v).unwrap();
            assert_eq!(Manifest::parse_complete(&text), None, "without {f}");
        }
        assert_eq!(Manifest::parse_complete(b"{}"), None);
        assert_eq!(Manifest::parse_complete(b"[]"), None);
        // A field of the wrong type is refused too.
        let mut v = written.clone();
        v["pid"] = serde_json::Value::Null;
        assert_eq!(
            Manifest::parse_complete(&serde_json::to_vec(&v).unwrap()),
            None
        );
    }
}
