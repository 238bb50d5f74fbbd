//! The CSV sink: `nw_0001.csv`, `nw_0002.csv`, ... in the run's `nw`
//! folder, each starting with the header, rotated by size, never splitting
//! a row and never ending in part of one.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::output::dir::SafeDir;
use crate::output::layout::LayoutError;
use crate::output::row::HEADER;

/// Buffered bytes past which rows are written out.
const FLUSH_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStats {
    pub name: String,
    pub rows: u64,
    pub bytes: u64,
    /// Removed by the retention limits.
    pub deleted: bool,
}

/// Optional limits on what one run keeps on disk. When a rotation takes the
/// run past one, its oldest files are deleted; the current file never is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    pub max_files: Option<usize>,
    pub max_bytes: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

pub struct CsvSink {
    dir: SafeDir,
    rotate_bytes: u64,
    retention: Retention,
    next_seq: u32,
    file: File,
    /// Stats of every file this run created, the current one last.
    files: Vec<FileStats>,
    /// Rows formatted but not yet written; always whole rows.
    buf: Vec<u8>,
    buf_rows: u64,
    /// Bytes of whole rows (header included) known to be in the file.
    written: u64,
    rows_lost: u64,
    /// Files finished since the last `take_closed` (rotated away).
    closed: Vec<String>,
}

impl CsvSink {
    /// Opens the first free `nw_NNNN.csv` in `run`. A file is rotated when
    /// the next row would take it past `rotate_bytes` (a file always holds
    /// at least one row, whatever the limit).
    pub fn create(
        run: SafeDir,
        rotate_bytes: u64,
        retention: Retention,
    ) -> Result<Self, SinkError> {
        let mut next_seq = 1;
        let (file, name) = open_next(&run, &mut next_seq)?;
        let mut sink = CsvSink {
            dir: run,
            rotate_bytes,
            retention,
            next_seq,
            file,
            files: vec![FileStats {
                name,
                rows: 0,
                bytes: 0,
                deleted: false,
            }],
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            buf_rows: 0,
            written: 0,
            rows_lost: 0,
            closed: Vec::new(),
        };
        sink.write_header()?;
        Ok(sink)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn files(&self) -> &[FileStats] {
        &self.files
    }

    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Rows that were captured but could not be written.
    pub fn rows_lost(&self) -> u64 {
        self.rows_lost
    }

    fn current(&mut self) -> &mut FileStats {
        self.files.last_mut().expect("a sink always has a file")
    }

    fn write_header(&mut self) -> Result<(), SinkError> {
        self.buf.extend_from_slice(HEADER.as_bytes());
        self.flush()
    }

    /// Appends one row that `format` writes into the buffer (newline
    /// included), rotating first if the row would not fit the current file.
    pub fn append_row(&mut self, format: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError> {
        let start = self.buf.len();
        format(&mut self.buf);
        let row_len = (self.buf.len() - start) as u64;
        let file_rows = self.current().rows + self.buf_rows;
        if file_rows > 0 && self.written + start as u64 + row_len > self.rotate_bytes {
            let row = self.buf.split_off(start);
            self.rotate()?;
            self.buf.extend_from_slice(&row);
        }
        self.buf_rows += 1;
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        let finished = self.current().name.clone();
        self.closed.push(finished);
        let (file, name) = open_next(&self.dir, &mut self.next_seq)?;
        self.file = file;
        self.files.push(FileStats {
            name,
            rows: 0,
            bytes: 0,
            deleted: false,
        });
        self.written = 0;
        self.write_header()?;
        self.enforce_retention()
    }

    fn enforce_retention(&mut self) -> Result<(), SinkError> {
        let Retention {
            max_files,
            max_bytes,
        } = self.retention;
        loop {
            let live = self.files.iter().filter(|f| !f.deleted);
            let (count, bytes) = live.fold((0usize, 0u64), |(n, b), f| (n + 1, b + f.bytes));
            let over = max_files.is_some_and(|m| count > m) || max_bytes.is_some_and(|m| bytes > m);
            // The last file is the one being written: never deleted.
            let current = self.files.len() - 1;
            let oldest = self.files[..current].iter_mut().find(|f| !f.deleted);
            let (true, Some(oldest)) = (over, oldest) else {
                return Ok(());
            };
            // A name this run created exclusively.
            self.dir
                .unlink(&oldest.name)
                .map_err(|source| SinkError::Write {
                    path: self.dir.path().join(&oldest.name),
                    source,
                })?;
            oldest.deleted = true;
        }
    }

    /// Writes out the buffered rows. On a write error (a full disk), the
    /// rows that reached the file whole are kept, the file is cut back to
    /// the end of the last of them, and the rest are counted as lost.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut done = 0;
        let mut failure = None;
        while done < self.buf.len() {
            match self.file.write(&self.buf[done..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let kept = match failure {
            None => done,
            Some(_) => self.buf[..done]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1),
        };
        let kept_rows = if failure.is_none() {
            self.buf_rows
        } else {
            // The header (if it is in this buffer) ends in a newline too.
            let newlines = self.buf[..kept].iter().filter(|&&b| b == b'\n').count() as u64;
            newlines.saturating_sub(u64::from(self.written == 0 && kept > 0))
        };
        self.written += kept as u64;
        let current = self.files.last_mut().expect("a sink always has a file");
        current.bytes += kept as u64;
        current.rows += kept_rows;
        self.rows_lost += self.buf_rows - kept_rows;
        self.buf_rows = 0;
        self.buf.clear();
        match failure {
            None => Ok(()),
            Some(source) => {
                // Never leave part of a row at the end of a file.
                let _ = self.file.set_len(self.written);
                let path = self.dir.path().join(&current.name);
                Err(SinkError::Write { path, source })
            }
        }
    }

    /// The files finished (rotated away, every row in them written) since
    /// the last call, oldest first. The current file is never among them.
    pub fn take_closed(&mut self) -> Vec<PathBuf> {
        let dir = self.dir.path();
        self.closed.drain(..).map(|name| dir.join(name)).collect()
    }

    /// The file being written now.
    pub fn current_path(&self) -> PathBuf {
        let name = &self.files.last().expect("a sink always has a file").name;
        self.dir.path().join(name)
    }

    /// Counts rows that could not even be buffered (the sink had failed).
    pub fn count_lost(&mut self, rows: u64) {
        self.rows_lost += rows;
    }
}

/// Creates the first free `nw_NNNN.csv` from `*seq` on, exclusively, and
/// leaves `*seq` at the number after it.
fn open_next(dir: &SafeDir, seq: &mut u32) -> Result<(File, String), SinkError> {
    loop {
        let name = format!("nw_{:04}.csv", *seq);
        *seq += 1;
        if let Some(file) = dir.create_file_exclusive(&name)? {
            return Ok((file, name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::layout::create_run_dir;

    fn run_dir(tag: &str) -> SafeDir {
        let out = std::env::temp_dir().join(format!("nwtrace-sink-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        create_run_dir(&out, "m", "t").unwrap()
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn header_first_and_rows_after() {
        let run = run_dir("basic");
        let mut sink = CsvSink::create(run, 1 << 20, Retention::default()).unwrap();
        sink.append_row(|b| b.extend_from_slice(b"row1\n")).unwrap();
        sink.append_row(|b| b.extend_from_slice(b"row2\n")).unwrap();
        sink.flush().unwrap();
        assert_eq!(
            read(sink.dir(), "nw_0001.csv"),
            format!("{HEADER}row1\nrow2\n")
        );
        assert_eq!(sink.rows(), 2);
        assert_eq!(sink.files()[0].rows, 2);
    }

    #[test]
    fn rotation_never_splits_a_row() {
        let run = run_dir("rotate");
        let limit = HEADER.len() as u64 + 25;
        let mut sink = CsvSink::create(run, limit, Retention::default()).unwrap();
        for i in 0..7 {
            sink.append_row(|b| b.extend_from_slice(format!("row-{i:05}\n").as_bytes()))
                .unwrap(); // 10 bytes each: two fit under the limit
        }
        sink.flush().unwrap();
        let names: Vec<_> = sink.files().iter().map(|f| f.name.clone()).collect();
        assert_eq!(
            names,
            ["nw_0001.csv", "nw_0002.csv", "nw_0003.csv", "nw_0004.csv"]
        );
        let mut all = Vec::new();
        for f in sink.files() {
            let text = read(sink.dir(), &f.name);
            assert!(text.starts_with(HEADER), "{}", f.name);
            assert!(text.ends_with('\n'));
            assert!(
                text.len() as u64 <= limit,
                "{} is {} bytes",
                f.name,
                text.len()
            );
            let rows: Vec<_> = text[HEADER.len()..].lines().map(str::to_string).collect();
            assert_eq!(rows.len() as u64, f.rows);
            all.extend(rows);
        }
        let expected: Vec<_> = (0..7).map(|i| format!("row-{i:05}")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn a_row_larger_than_the_limit_still_gets_a_file() {
        let run = run_dir("huge");
        let mut sink = CsvSink::create(run, 10, Retention::default()).unwrap();
        sink.append_row(|b| b.extend_from_slice(b"a-row-longer-than-ten\n"))
            .unwrap();
        sink.append_row(|b| b.extend_from_slice(b"another-long-row\n"))
            .unwrap();
        sink.flush().unwrap();
        assert_eq!(sink.files().len(), 2);
        assert_eq!(sink.rows(), 2);
    }

    fn live_files(sink: &CsvSink) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(sink.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn retention_by_count_deletes_the_oldest() {
        let run = run_dir("keep-count");
        let retention = Retention {
            max_files: Some(2),
            max_bytes: None,
        };
        let mut sink = CsvSink::create(run, HEADER.len() as u64 + 3, retention).unwrap();
        for i in 0..5 {
            sink.append_row(|b| b.extend_from_slice(format!("{i}\n").as_bytes()))
                .unwrap();
        }
        sink.flush().unwrap();
        assert_eq!(live_files(&sink), ["nw_0004.csv", "nw_0005.csv"]);
        let deleted: Vec<_> = sink.files().iter().map(|f| f.deleted).collect();
        assert_eq!(deleted, [true, true, true, false, false]);
        assert_eq!(read(sink.dir(), "nw_0005.csv"), format!("{HEADER}4\n"));
    }

    #[test]
    fn retention_by_size_keeps_the_current_file() {
        let run = run_dir("keep-size");
        let one_file = HEADER.len() as u64 + 2;
        let retention = Retention {
            max_files: None,
            max_bytes: Some(2 * one_file),
        };
        let mut sink = CsvSink::create(run, one_file, retention).unwrap();
        for i in 0..4 {
            sink.append_row(|b| b.extend_from_slice(format!("{i}\n").as_bytes()))
                .unwrap();
        }
        sink.flush().unwrap();
        // The current file is still being filled when the limit is checked.
        assert_eq!(live_files(&sink), ["nw_0003.csv", "nw_0004.csv"]);
        // Even a limit below one file never deletes the file being written.
        let run = run_dir("keep-tiny");
        let retention = Retention {
            max_files: None,
            max_bytes: Some(1),
        };
        let mut sink = CsvSink::create(run, one_file, retention).unwrap();
        for i in 0..3 {
            sink.append_row(|b| b.extend_from_slice(format!("{i}\n").as_bytes()))
                .unwrap();
        }
        sink.flush().unwrap();
        assert_eq!(live_files(&sink), ["nw_0003.csv"]);
    }

    #[test]
    fn existing_files_are_skipped_never_overwritten() {
        let run = run_dir("clash");
        let dir = run.path().to_path_buf();
        std::fs::write(dir.join("nw_0001.csv"), "someone else's\n").unwrap();
        std::fs::write(dir.join("nw_0003.csv"), "and this\n").unwrap();
        let mut sink = CsvSink::create(run, HEADER.len() as u64 + 6, Retention::default()).unwrap();
        sink.append_row(|b| b.extend_from_slice(b"r1\n")).unwrap();
        sink.append_row(|b| b.extend_from_slice(b"r2\n")).unwrap();
        sink.append_row(|b| b.extend_from_slice(b"r3\n")).unwrap();
        sink.flush().unwrap();
        let names: Vec<_> = sink.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["nw_0002.csv", "nw_0004.csv"]);
        assert_eq!(read(&dir, "nw_0001.csv"), "someone else's\n");
        assert_eq!(read(&dir, "nw_0003.csv"), "and this\n");
    }
}
