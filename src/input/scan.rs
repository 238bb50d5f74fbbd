//! The pass over every file: files are read in parallel (a few workers
//! take files from a shared queue, largest first), each worker folds its
//! files into its own partial [`Aggregate`], and the partials merge. No
//! row is kept; memory is a few partials, each bounded by its config.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::discover::{DataFile, Discovery};
use super::reader::{FileStats, read_file};
use crate::analysis::{Aggregate, AggregateConfig, Filter, Op, Source, Totals};

/// What one file gave.
#[derive(Clone, Debug, Default)]
pub struct FileResult {
    pub stats: FileStats,
    /// Totals of the ops that passed the filter.
    pub totals: Totals,
    /// First and last timestamp of any valid row (before filtering).
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
    /// Stretches of at least [`QUIET_NS`] with no row, inside the file
    /// (start, end), the first few.
    pub quiet: Vec<(i64, i64)>,
}

/// A stretch without any row this long is reported as a gap in time.
pub const QUIET_NS: i64 = 60_000_000_000;
const MAX_QUIET_KEPT: usize = 20;

pub struct Scan {
    pub discovery: Discovery,
    pub aggregate: Aggregate,
    /// Indexed like `discovery.files`.
    pub files: Vec<FileResult>,
}

/// Folds one file into `agg`; `file` is its index for the exemplars.
pub fn aggregate_file(
    df: &DataFile,
    file: u32,
    filter: &Filter,
    agg: &mut Aggregate,
) -> FileResult {
    let mut res = FileResult::default();
    let filtering = !filter.is_empty();
    let stats = read_file(&df.path, df.compression, |row, line| {
        // Rows come in completion order with start times, so a row may be
        // older than the one before; only a forward jump is a gap.
        if let Some(last) = res.last_ns
            && row.ts_ns - last >= QUIET_NS
            && res.quiet.len() < MAX_QUIET_KEPT
        {
            res.quiet.push((last, row.ts_ns));
        }
        res.first_ns = Some(res.first_ns.map_or(row.ts_ns, |f| f.min(row.ts_ns)));
        res.last_ns = Some(res.last_ns.map_or(row.ts_ns, |l| l.max(row.ts_ns)));
        let mut op = Op::from(row);
        op.machine = df.machine;
        if filtering && !filter.matches(&op) {
            return;
        }
        res.totals.add(&op);
        agg.add(&op, Source { file, line });
    });
    res.stats = stats;
    res
}

/// Reads every file of `discovery` whose machine is in `machines` (all
/// when empty).
pub fn scan(
    discovery: Discovery,
    filter: &Filter,
    config: AggregateConfig,
    machines: &[String],
) -> Scan {
    scan_with(
        discovery,
        filter,
        config,
        machines,
        Vec::new(),
        usize::MAX / 4,
    )
}

/// A part already aggregated (a run summary): its aggregate, and what
/// each of its files (by index into `Discovery::files`) gave. Those files
/// are not read.
pub type Preloaded = (Aggregate, Vec<(usize, FileResult)>);

/// As [`scan`], merging `preloaded` parts instead of reading their files.
/// Every part merges into one aggregate whose ranked tables hold up to
/// `merge_keys` keys each (`usize::MAX / 4`: no bound), and only then
/// takes `config`'s bounds: so merging summaries gives what one pass
/// gives (exactly, when no part evicted a key and the merge stayed within
/// `merge_keys`; past it, the tables say they are bounded).
pub fn scan_with(
    discovery: Discovery,
    filter: &Filter,
    config: AggregateConfig,
    machines: &[String],
    preloaded: Vec<Preloaded>,
    merge_keys: usize,
) -> Scan {
    let files = &discovery.files;
    let mut skip = vec![false; files.len()];
    for (_, done) in &preloaded {
        for (i, _) in done {
            skip[*i] = true;
        }
    }
    let mut order: Vec<usize> = (0..files.len())
        .filter(|&i| !skip[i])
        .filter(|&i| machines.is_empty() || machines.contains(&files[i].machine_id))
        .collect();
    // Largest first, so that the last file to start is a small one.
    let size = |i: usize| std::fs::metadata(&files[i].path).map_or(0, |m| m.len());
    let sizes: Vec<u64> = (0..files.len()).map(size).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));

    let next = AtomicUsize::new(0);
    let workers = rayon::current_num_threads().min(order.len()).max(1);
    let partials: Vec<(Aggregate, Vec<(usize, FileResult)>)> = (0..workers)
        .into_par_iter()
        .map(|_| {
            let mut agg = Aggregate::new(config);
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                let r = aggregate_file(&files[i], i as u32, filter, &mut agg);
                done.push((i, r));
            }
            (agg, done)
        })
        .collect();

    let mut aggregate = Aggregate::new(config.for_merging(merge_keys));
    let mut results = vec![FileResult::default(); files.len()];
    let parts = partials.into_iter().chain(
        preloaded
            .into_iter()
            .map(|(a, done)| (a, done.into_iter().collect::<Vec<_>>())),
    );
    for (agg, done) in parts {
        aggregate.merge(&agg);
        for (i, r) in done {
            results[i] = r;
        }
    }
    aggregate.set_caps(config);
    aggregate.finish();
    Scan {
        discovery,
        aggregate,
        files: results,
    }
}
