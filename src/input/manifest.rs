//! Reading a run's `manifest*.json` (see `output::manifest` for the
//! writer). Every field is optional here: a report reads manifests of
//! older or newer versions, or half-written ones, and says what it lacks
//! rather than failing.

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ManifestIn {
    pub nwtrace_version: Option<String>,
    pub command_line: Vec<String>,
    pub pid: Option<u32>,
    pub kernel: Option<String>,
    pub backend: Option<String>,
    pub machine_id: Option<String>,
    pub started_at: Option<String>,
    pub stopped_at: Option<String>,
    pub finalized: bool,
    pub exit_reason: Option<String>,
    pub files: Vec<ManifestFileIn>,
    pub rows_written: u64,
    pub events_lost: u64,
    pub probes_missed: u64,
    pub rows_lost: u64,
    pub malformed_records: u64,
    /// What was not written, by reason (`--sample`, `--rate-limit`).
    pub loss_by_reason: Option<crate::capture::sampling::LossByReason>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ManifestFileIn {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    pub deleted: bool,
}

impl ManifestIn {
    pub fn parse(bytes: &[u8]) -> Result<ManifestIn, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Seconds since the epoch of the manifest's `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_iso8601(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let mut row = Vec::with_capacity(26);
    row.extend_from_slice(&b[..10]);
    row.push(b' ');
    row.extend_from_slice(&b[11..19]);
    row.extend_from_slice(b".000000");
    crate::schema::parse_timestamp_ns(&row).map(|ns| ns / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_record_writes_and_tolerates_gaps() {
        let m = ManifestIn::parse(
            br#"{"finalized": true, "events_lost": 3, "files": [{"name": "nw_0001.csv", "rows": 2, "bytes": 9, "deleted": true}], "future_field": 1}    "#,
        )
        .unwrap();
        assert!(m.finalized);
        assert_eq!(m.events_lost, 3);
        assert!(m.files[0].deleted);
        assert!(ManifestIn::parse(b"{").is_err());
        assert_eq!(parse_iso8601("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_iso8601("nope"), None);
    }
}
