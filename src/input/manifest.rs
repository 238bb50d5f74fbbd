//! Reading a run's `manifest*.json`: the one type `schema::manifest`
//! (which `output::manifest` writes), and what readers ask of it. Every
//! field may be absent: a report reads manifests of older or newer
//! versions, or half-written ones, and says what it lacks rather than
//! failing.

pub use crate::schema::manifest::{DeletedFiles, Manifest, WrittenFile};

/// The sequence number in a data file's name: 12 for `nw_0012.csv.zst`.
fn file_number(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("nw_")?;
    let digits: &str = rest.split('.').next()?;
    digits.parse().ok()
}

// The readers' side of the one manifest type.
impl Manifest {
    /// Whether retention deleted `name`, by either version: listed as
    /// deleted (1), or numbered within the folded range (2; retention
    /// deletes oldest first, so the deleted files are one range).
    pub fn was_deleted(&self, name: &str) -> bool {
        if self.files.iter().any(|f| f.deleted && f.name == name) {
            return true;
        }
        let d = &self.deleted_files;
        let (Some(first), Some(last), Some(n)) = (
            d.first_file.as_deref().and_then(file_number),
            d.last_file.as_deref().and_then(file_number),
            file_number(name),
        ) else {
            return false;
        };
        d.files > 0 && (first..=last).contains(&n)
    }

    pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// The files retention deleted, of either version: (how many, the
    /// names known, oldest first). Version 1 names every one; version 2
    /// the first and the last.
    pub fn deleted(&self) -> (u64, Vec<String>) {
        let listed: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.deleted)
            .map(|f| f.name.clone())
            .collect();
        let d = &self.deleted_files;
        let mut names = Vec::new();
        names.extend(d.first_file.iter().cloned());
        names.extend(
            d.last_file
                .iter()
                .filter(|l| d.files > 1 && d.first_file.as_ref() != Some(*l))
                .cloned(),
        );
        names.extend(listed.iter().cloned());
        (d.files + listed.len() as u64, names)
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
        let m = Manifest::parse(
            br#"{"finalized": true, "events_lost": 3, "files": [{"name": "nw_0001.csv", "rows": 2, "bytes": 9, "deleted": true}], "future_field": 1}    "#,
        )
        .unwrap();
        assert!(m.finalized);
        assert_eq!(m.events_lost, 3);
        assert!(m.files[0].deleted);
        assert!(Manifest::parse(b"{").is_err());
        assert_eq!(parse_iso8601("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_iso8601("nope"), None);
        assert_eq!(m.deleted(), (1, vec!["nw_0001.csv".to_string()]));
    }

    #[test]
    fn reads_the_folded_deleted_files_of_version_2() {
        let m = Manifest::parse(
            br#"{"manifest_version": 2, "rows_written": 10, "files": [{"name": "nw_0009.csv", "rows": 1, "bytes": 9, "deleted": false}],
                "deleted_files": {"files": 8, "rows": 9, "bytes": 80, "first_file": "nw_0001.csv", "last_file": "nw_0008.csv", "first_seq": 1}}"#,
        )
        .unwrap();
        assert_eq!(m.manifest_version, 2);
        assert_eq!(m.deleted_files.rows, 9);
        assert_eq!(
            m.deleted(),
            (
                8,
                vec!["nw_0001.csv".to_string(), "nw_0008.csv".to_string()]
            )
        );
        let one = Manifest::parse(
            br#"{"deleted_files": {"files": 1, "rows": 9, "bytes": 80, "first_file": "nw_0001.csv", "last_file": "nw_0001.csv"}}"#,
        )
        .unwrap();
        assert_eq!(one.deleted(), (1, vec!["nw_0001.csv".to_string()]));
    }
}

#[cfg(test)]
mod was_deleted_tests {
    use super::*;

    #[test]
    fn a_folded_range_covers_every_file_between_its_first_and_last() {
        let m = Manifest {
            deleted_files: DeletedFiles {
                files: 3,
                first_file: Some("nw_0002.csv".into()),
                last_file: Some("nw_0004.csv".into()),
                ..Default::default()
            },
            files: vec![WrittenFile {
                name: "nw_0009.csv".into(),
                deleted: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(!m.was_deleted("nw_0001.csv"));
        assert!(m.was_deleted("nw_0002.csv"));
        assert!(m.was_deleted("nw_0003.csv"));
        assert!(m.was_deleted("nw_0004.csv"));
        assert!(!m.was_deleted("nw_0005.csv"));
        assert!(m.was_deleted("nw_0009.csv"));
        assert!(!m.was_deleted("summary.json"));
    }
}
