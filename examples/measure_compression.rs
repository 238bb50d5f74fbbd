//! The compression figures in the README ("Compressed rotation"):
//!
//!     cargo run --release --example measure_compression -- <a real nw_*.csv>
//!
//! Writes the file's rows through the CSV sink with each `--compress`
//! setting and prints the bytes on disk, the ratio, and the CPU time per
//! million rows (formatting excluded, the write included). A measurement,
//! not a test: its figures depend on the rows and the machine.

use std::io::BufRead;

use nwtrace::output::layout::create_run_dir;
use nwtrace::output::sink::{Compression, CsvSink, Retention};

fn thread_cpu_ns() -> u128 {
    // SAFETY: zeroed timespec is a valid out-parameter.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: ts is writable; the clock id is valid.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: measure_compression <nw_NNNN.csv>");
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("opening the CSV"));
    let rows: Vec<String> = file
        .lines()
        .skip(1)
        .map(|l| l.expect("reading the CSV") + "\n")
        .collect();
    let raw: u64 = rows.iter().map(|r| r.len() as u64).sum();
    for compression in [Compression::None, Compression::Zstd, Compression::Gzip] {
        let out = std::env::temp_dir().join(format!("nwtrace-measure-{compression:?}"));
        let _ = std::fs::remove_dir_all(&out);
        let run = create_run_dir(&out, "m", "t").expect("making a run folder");
        let start = thread_cpu_ns();
        let mut sink = CsvSink::create_with(run, 100 << 20, Retention::default(), compression)
            .expect("creating the sink");
        for r in &rows {
            sink.append_row(|b| b.extend_from_slice(r.as_bytes()))
                .expect("writing");
        }
        sink.flush().expect("flushing");
        let cpu = thread_cpu_ns() - start;
        let bytes: u64 = sink.files().iter().map(|f| f.bytes).sum();
        println!(
            "{compression:?}: {} rows, {raw} bytes of rows -> {bytes} bytes on disk (ratio {:.2}), {:.0} ms CPU per million rows (write included)",
            rows.len(),
            raw as f64 / bytes as f64,
            cpu as f64 / 1e6 / (rows.len() as f64 / 1e6)
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}
