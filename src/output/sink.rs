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
/// zstd's default level: fast, and most of the ratio.
const ZSTD_LEVEL: i32 = 3;

pub use crate::schema::manifest::WrittenFile;

pub use crate::schema::Compression;

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
    #[error("compressing rows: {0}")]
    Compress(io::Error),
}

pub struct CsvSink {
    dir: SafeDir,
    rotate_bytes: u64,
    retention: Retention,
    next_seq: u32,
    file: File,
    /// Stats of every file this run created, the current one last.
    files: Vec<WrittenFile>,
    /// Every file before this index is deleted: retention looks from
    /// here, so that a rotation costs the same after 300,000 of them.
    first_live: usize,
    /// Rows formatted but not yet written; always whole rows.
    buf: Vec<u8>,
    buf_rows: u64,
    /// Bytes of whole rows (header included) known to be in the file.
    written: u64,
    rows_lost: u64,
    /// Files finished since the last `take_closed` (rotated away).
    closed: Vec<String>,
    compression: Compression,
    /// The header row each file starts with.
    header: String,
    /// The compressed frame of the buffer, reused between flushes.
    frame: Vec<u8>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// --max-age, and the machine folder whose older runs it also expires.
    max_age: Option<MaxAge>,
}

/// `--max-age`: files older than `age` go, this run's and (when `machine`
/// is set) older runs' too (output::expire says exactly which).
pub struct MaxAge {
    pub age: std::time::Duration,
    pub machine: Option<(SafeDir, String)>,
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
        Self::create_with(run, rotate_bytes, retention, Compression::None)
    }

    /// As [`CsvSink::create`], writing `nw_NNNN.csv.zst` or `.csv.gz`
    /// files when `compression` says; sizes and limits then count
    /// compressed bytes.
    pub fn create_with(
        run: SafeDir,
        rotate_bytes: u64,
        retention: Retention,
        compression: Compression,
    ) -> Result<Self, SinkError> {
        Self::create_with_header(
            run,
            rotate_bytes,
            retention,
            compression,
            HEADER.to_string(),
        )
    }

    /// As [`CsvSink::create_with`], each file starting with `header`
    /// (the contract's, plus any optional columns).
    pub fn create_with_header(
        run: SafeDir,
        rotate_bytes: u64,
        retention: Retention,
        compression: Compression,
        header: String,
    ) -> Result<Self, SinkError> {
        let zstd = match compression {
            Compression::Zstd => {
                Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(SinkError::Compress)?)
            }
            _ => None,
        };
        let mut next_seq = 1;
        let (file, name) = open_next(&run, &mut next_seq, compression.extension())?;
        let mut sink = CsvSink {
            dir: run,
            rotate_bytes,
            retention,
            next_seq,
            file,
            files: vec![WrittenFile {
                name,
                rows: 0,
                bytes: 0,
                deleted: false,
                started_secs: crate::timefmt::now_epoch_secs(),
            }],
            first_live: 0,
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            buf_rows: 0,
            written: 0,
            rows_lost: 0,
            closed: Vec::new(),
            compression,
            header,
            frame: Vec::new(),
            zstd,
            max_age: None,
        };
        sink.write_header()?;
        Ok(sink)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn files(&self) -> &[WrittenFile] {
        &self.files
    }

    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Rows that were captured but could not be written.
    pub fn rows_lost(&self) -> u64 {
        self.rows_lost
    }

    fn current(&mut self) -> &mut WrittenFile {
        self.files.last_mut().expect("a sink always has a file")
    }

    fn write_header(&mut self) -> Result<(), SinkError> {
        self.buf.extend_from_slice(self.header.as_bytes());
        self.flush()
    }

    /// Appends one row that `format` writes into the buffer (newline
    /// included), rotating first if the row would not fit the current file.
    pub fn append_row(&mut self, format: impl FnOnce(&mut Vec<u8>)) -> Result<(), SinkError> {
        let start = self.buf.len();
        format(&mut self.buf);
        let row_len = (self.buf.len() - start) as u64;
        let file_rows = self.current().rows + self.buf_rows;
        if self.compression != Compression::None {
            // Compressed sizes are known at flush, which rotates then; a
            // buffer never holds more than a file, so a frame fits one.
            self.buf_rows += 1;
            if self.buf.len() as u64 >= (FLUSH_BYTES as u64).min(self.rotate_bytes) {
                self.flush()?;
            }
            return Ok(());
        }
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
        let (file, name) = open_next(&self.dir, &mut self.next_seq, self.compression.extension())?;
        self.file = file;
        self.files.push(WrittenFile {
            name,
            rows: 0,
            bytes: 0,
            deleted: false,
            started_secs: crate::timefmt::now_epoch_secs(),
        });
        self.written = 0;
        self.write_header()?;
        self.enforce_retention()
    }

    /// Turns on deletion by age; checked now, at each rotation, and
    /// whenever [`CsvSink::expire_by_age`] is called.
    pub fn set_max_age(&mut self, max_age: MaxAge) {
        self.max_age = Some(max_age);
        self.expire_by_age();
    }

    /// Deletes, oldest first, this run's files (never the current one)
    /// and older runs' files whose mtime is older than --max-age. Returns
    /// how many files went. Failures to delete are logged, not fatal.
    pub fn expire_by_age(&mut self) -> usize {
        let Some(max_age) = &self.max_age else {
            return 0;
        };
        let cutoff = crate::timefmt::now_epoch_secs()
            .saturating_sub(i64::try_from(max_age.age.as_secs()).unwrap_or(i64::MAX));
        let mut gone = 0;
        let current = self.files.len() - 1;
        // This run's files are in creation order: oldest first.
        for f in self.files[self.first_live..current]
            .iter_mut()
            .filter(|f| !f.deleted)
        {
            let Some(st) = self.dir.stat(&f.name) else {
                continue;
            };
            if st.mtime_secs >= cutoff {
                break;
            }
            match self.dir.unlink(&f.name) {
                Ok(()) => {
                    f.deleted = true;
                    gone += 1;
                }
                Err(e) => log::warn!(
                    "nwtrace: --max-age: cannot delete {}: {e}",
                    self.dir.path().join(&f.name).display()
                ),
            }
        }
        if let Some((machine, run)) = &max_age.machine {
            for path in crate::output::expire::expire_old_runs(machine, run, cutoff) {
                log::info!("nwtrace: --max-age deleted {}", path.display());
                gone += 1;
            }
        }
        self.skip_deleted();
        gone
    }

    /// Moves `first_live` past the files deleted at the front.
    fn skip_deleted(&mut self) {
        while self.files[self.first_live].deleted {
            // The current file (the last) is never deleted.
            self.first_live += 1;
        }
    }

    fn enforce_retention(&mut self) -> Result<(), SinkError> {
        self.expire_by_age();
        let Retention {
            max_files,
            max_bytes,
        } = self.retention;
        loop {
            self.skip_deleted();
            let live = self.files[self.first_live..].iter().filter(|f| !f.deleted);
            let (count, bytes) = live.fold((0usize, 0u64), |(n, b), f| (n + 1, b + f.bytes));
            let over = max_files.is_some_and(|m| count > m) || max_bytes.is_some_and(|m| bytes > m);
            // The last file is the one being written: never deleted.
            let current = self.files.len() - 1;
            let oldest = self.files[self.first_live..current]
                .iter_mut()
                .find(|f| !f.deleted);
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
        if self.compression != Compression::None {
            return self.flush_compressed();
        }
        let (done, failure) = write_some(&mut self.file, &self.buf);
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

    /// Compresses the buffer into one frame (zstd) or member (gzip) and
    /// writes it with one write, into the next file if it would take this
    /// one past the rotation size. A frame that does not reach the file
    /// whole is cut off again, and its rows are counted as lost, so the
    /// file always decompresses to whole rows.
    fn flush_compressed(&mut self) -> Result<(), SinkError> {
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        let compressed = match self.compression {
            Compression::Zstd => {
                let z = self.zstd.as_mut().expect("a zstd sink has a compressor");
                frame.reserve(zstd::zstd_safe::compress_bound(self.buf.len()));
                z.compress_to_buffer(&self.buf, &mut frame).map(|_| ())
            }
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(frame, flate2::Compression::new(6));
                let done = gz.write_all(&self.buf).and_then(|()| gz.finish());
                match done {
                    Ok(f) => {
                        frame = f;
                        Ok(())
                    }
                    Err(e) => {
                        frame = Vec::new();
                        Err(e)
                    }
                }
            }
            Compression::None => unreachable!("plain sinks flush as they are"),
        };
        let rows = std::mem::take(&mut self.buf_rows);
        self.buf.clear();
        if let Err(e) = compressed {
            self.rows_lost += rows;
            return Err(SinkError::Compress(e));
        }
        if rows > 0
            && self.current().rows > 0
            && self.written + frame.len() as u64 > self.rotate_bytes
        {
            // The buffer is empty now: rotate writes the new header.
            if let Err(e) = self.rotate() {
                self.rows_lost += rows;
                return Err(e);
            }
        }
        let result = self.write_frame(&frame, rows);
        self.frame = frame;
        result
    }

    fn write_frame(&mut self, frame: &[u8], rows: u64) -> Result<(), SinkError> {
        let (_, failure) = write_some(&mut self.file, frame);
        let current = self.files.last_mut().expect("a sink always has a file");
        match failure {
            None => {
                self.written += frame.len() as u64;
                current.bytes += frame.len() as u64;
                current.rows += rows;
                Ok(())
            }
            Some(source) => {
                self.rows_lost += rows;
                // Never leave part of a frame at the end of a file.
                let _ = self.file.set_len(self.written);
                let path = self.dir.path().join(&current.name);
                Err(SinkError::Write { path, source })
            }
        }
    }

    /// Counts rows that could not even be buffered (the sink had failed).
    pub fn count_lost(&mut self, rows: u64) {
        self.rows_lost += rows;
    }
}

/// Writes `data` with as few writes as the kernel allows, and says how much
/// reached the file and, if it stopped short, why: the caller decides what
/// of a partial write to keep.
fn write_some(file: &mut File, data: &[u8]) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < data.len() {
        match file.write(&data[done..]) {
            Ok(0) => return (done, Some(io::Error::from(io::ErrorKind::WriteZero))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// Creates the first free `nw_NNNN.csv` from `*seq` on, exclusively, and
/// leaves `*seq` at the number after it.
fn open_next(dir: &SafeDir, seq: &mut u32, extension: &str) -> Result<(File, String), SinkError> {
    loop {
        let name = format!("nw_{:04}.{extension}", *seq);
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

#[cfg(test)]
mod compressed_tests {
    use super::*;
    use crate::output::layout::create_run_dir;
    use std::io::Read;

    fn run_dir(tag: &str) -> SafeDir {
        let out = std::env::temp_dir().join(format!("nwtrace-zsink-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        create_run_dir(&out, "m", "t").unwrap()
    }

    fn decompress(compression: Compression, bytes: &[u8]) -> String {
        let mut text = String::new();
        match compression {
            Compression::Zstd => {
                zstd::stream::read::Decoder::new(bytes)
                    .unwrap()
                    .read_to_string(&mut text)
                    .unwrap();
            }
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_string(&mut text)
                    .unwrap();
            }
            Compression::None => text = String::from_utf8(bytes.to_vec()).unwrap(),
        }
        text
    }

    /// Rows like real ones: compressible, but not trivially.
    fn row(i: u64) -> String {
        format!(
            "2026-11-26 13:00:{:02}.{:06},{},curl,TCP,4,10.0.0.{},93.184.216.{},{},443,{},send,{},,\n",
            i % 60,
            (i * 7919) % 1_000_000,
            1000 + i % 17,
            i % 250,
            (i * 31) % 250,
            40000 + i % 1000,
            (i * 131) % 65536,
            (i * 104_729) % 900_000
        )
    }

    #[test]
    fn compressed_files_hold_whole_rows_and_the_rotation_size() {
        for compression in [Compression::Zstd, Compression::Gzip] {
            let run = run_dir(&format!("{compression:?}"));
            let limit = 16 * 1024;
            let retention = Retention::default();
            let mut sink = CsvSink::create_with(run, limit, retention, compression).unwrap();
            let n = 20_000;
            for i in 0..n {
                sink.append_row(|b| b.extend_from_slice(row(i).as_bytes()))
                    .unwrap();
            }
            sink.flush().unwrap();
            assert!(sink.files().len() > 3, "{compression:?} rotated");
            let mut all = Vec::new();
            for f in sink.files() {
                assert!(f.name.ends_with(compression.extension()), "{}", f.name);
                let bytes = std::fs::read(sink.dir().join(&f.name)).unwrap();
                assert_eq!(bytes.len() as u64, f.bytes, "{}", f.name);
                assert!(f.bytes <= limit, "{} is {} bytes", f.name, f.bytes);
                let text = decompress(compression, &bytes);
                assert!(text.starts_with(HEADER) && text.ends_with('\n'));
                let rows: Vec<String> = text[HEADER.len()..].lines().map(String::from).collect();
                assert_eq!(rows.len() as u64, f.rows);
                all.extend(rows);
            }
            assert_eq!(all.len() as u64, n);
            assert!(
                all.iter()
                    .enumerate()
                    .all(|(i, r)| format!("{r}\n") == row(i as u64))
            );
        }
    }

    #[test]
    fn retention_counts_compressed_bytes() {
        let run = run_dir("zretain");
        let limit = 8 * 1024;
        let retention = Retention {
            max_files: None,
            max_bytes: Some(3 * limit),
        };
        let mut sink = CsvSink::create_with(run, limit, retention, Compression::Zstd).unwrap();
        for i in 0..30_000 {
            sink.append_row(|b| b.extend_from_slice(row(i).as_bytes()))
                .unwrap();
        }
        sink.flush().unwrap();
        let live: Vec<_> = sink.files().iter().filter(|f| !f.deleted).collect();
        let on_disk: u64 = live.iter().map(|f| f.bytes).sum();
        // What is left is within the limit, plus the file being written.
        assert!(on_disk <= 4 * limit, "{on_disk}");
        assert!(sink.files().iter().any(|f| f.deleted));
        for f in sink.files() {
            assert_eq!(sink.dir().join(&f.name).exists(), !f.deleted, "{}", f.name);
        }
    }
}

#[cfg(test)]
mod numbering_tests {
    use super::*;
    use crate::output::layout::create_run_dir;

    #[test]
    fn file_numbers_go_past_9999() {
        let out = std::env::temp_dir().join(format!("nwtrace-sink-9999-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let run = create_run_dir(&out, "m", "t").unwrap();
        let retention = Retention {
            max_files: Some(2),
            max_bytes: None,
        };
        let mut sink = CsvSink::create(run, HEADER.len() as u64 + 2, retention).unwrap();
        sink.next_seq = 9998;
        for i in 0..4 {
            sink.append_row(|b| b.extend_from_slice(format!("{i}\n").as_bytes()))
                .unwrap();
        }
        sink.flush().unwrap();
        let names: Vec<&str> = sink.files().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["nw_0001.csv", "nw_9998.csv", "nw_9999.csv", "nw_10000.csv"]
        );
        // Retention goes by creation order, not by name: 10000 is newest.
        let live: Vec<&str> = sink
            .files()
            .iter()
            .filter(|f| !f.deleted)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(live, ["nw_9999.csv", "nw_10000.csv"]);
        assert!(crate::output::expire::is_data_file_name("nw_10000.csv"));
    }
}
