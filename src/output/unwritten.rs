//! The run summary's part for what `--sample` and `--rate-limit` left
//! out: the drained counts, kept in an aggregate of their own beside the
//! written rows' one (which stays provable against the CSV files), and
//! merged into it by whoever reads the summary. Totals, processes,
//! conversations, remotes, ports and errors of the two together are
//! exact; latency, sizes, flags and the time series are the written,
//! sampled rows' alone.

use serde::{Deserialize, Serialize};

use crate::analysis::persist::AggregateDoc;
use crate::analysis::{Aggregate, Op, Totals};
use crate::capture::sampling::{LeftOut, RateLimitBy, Thinning, UnwrittenFlow};
use crate::output::summary::summary_config;
use crate::timefmt::WallClock;

/// Adds up the drained counts during the run.
pub struct UnwrittenAcc {
    agg: Aggregate,
}

impl Default for UnwrittenAcc {
    fn default() -> Self {
        UnwrittenAcc {
            agg: Aggregate::new(summary_config()),
        }
    }
}

impl UnwrittenAcc {
    pub fn add(&mut self, flows: &[UnwrittenFlow], clock: &WallClock) {
        for f in flows {
            let mut op = Op::from_event(&f.event, *clock);
            // As the rows keep time: microseconds.
            op.ts_ns = op.ts_ns.div_euclid(1000) * 1000;
            self.agg.add_unwritten(&op, f.ops, f.bytes);
        }
    }

    pub fn totals(&self) -> &Totals {
        &self.agg.totals
    }

    /// The summary's `unwritten` part. `written` is the written rows'
    /// totals (the summary's own).
    pub fn into_doc(
        mut self,
        thinning: &Thinning,
        left: &LeftOut,
        written: &Totals,
    ) -> UnwrittenDoc {
        self.agg.finish();
        let mut all = written.clone();
        all.merge(&self.agg.totals);
        // What found the unwritten map full is counted, but by no key.
        all.ops += left.unwritten_overflow_ops;
        UnwrittenDoc {
            sample: thinning.sample,
            rate_limit: thinning.rate_limit,
            rate_limit_by: thinning.rate_limit.map(|_| thinning.rate_limit_by),
            sampled_out: left.sampled_out,
            rate_limited: left.rate_limited,
            overflow_ops: left.unwritten_overflow_ops,
            overflow_bytes: left.unwritten_overflow_bytes,
            lower_bounds: left.unwritten_overflow_ops > 0 || self.agg.evicted_keys(),
            all_totals: all,
            exact: EXACT.to_string(),
            sampled: SAMPLED.to_string(),
            aggregate: AggregateDoc::store(&self.agg, |_| String::new()),
        }
    }
}

const EXACT: &str = "totals, processes, conversations, remote endpoints, ports, errors";
const SAMPLED: &str = "latency, sizes, flags, time series, exemplars";

/// `summary.json`'s `unwritten`: present when the run thinned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnwrittenDoc {
    /// `--sample 1/N`'s N.
    pub sample: Option<u32>,
    /// `--rate-limit`, operations a second, and what it limited.
    pub rate_limit: Option<u64>,
    pub rate_limit_by: Option<RateLimitBy>,
    /// Operations not written, by reason.
    pub sampled_out: u64,
    pub rate_limited: u64,
    /// Of those, what found the kernel's unwritten map full: in the
    /// totals' `ops`, in no process or conversation.
    pub overflow_ops: u64,
    pub overflow_bytes: u64,
    /// The per-key figures (and bytes) are lower bounds: the map
    /// overflowed, or a table of the unwritten aggregate evicted keys.
    pub lower_bounds: bool,
    /// Written and unwritten operations together: the run's totals.
    pub all_totals: Totals,
    /// Which figures of the summary with this part merged are exact, and
    /// which are the sampled rows' alone.
    pub exact: String,
    pub sampled: String,
    /// The unwritten operations' counts (no distributions).
    pub aggregate: AggregateDoc,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Source;
    use crate::capture::event::tests::sample_event;

    #[test]
    fn unwritten_counts_equal_the_ops_added_one_by_one() {
        let clock = WallClock::with_offset(0);
        let mut ev = sample_event();
        let mut one_by_one = Aggregate::new(summary_config());
        let mut acc = UnwrittenAcc::default();
        let mut flows = Vec::new();
        for (ret, n) in [(100, 7u64), (-11, 3), (0, 2)] {
            ev.ret = ret;
            let op = Op::from_event(&ev, clock);
            for _ in 0..n {
                one_by_one.add(&op, Source::default());
            }
            flows.push(UnwrittenFlow {
                event: ev.clone(),
                ops: n,
                bytes: op.size * n,
                limited: 0,
            });
        }
        acc.add(&flows, &clock);
        // add() stages rows; the tables see them after a flush.
        one_by_one.flush();
        let a = &acc.agg;
        let b = &one_by_one;
        let strip = |t: &Totals| Totals {
            latency_unknown: 0,
            first_ns: None,
            last_ns: None,
            ..t.clone()
        };
        assert_eq!(strip(&a.totals), strip(&b.totals));
        let procs = |x: &Aggregate| -> Vec<_> {
            x.processes
                .iter()
                .map(|(k, v)| (*k, v.c.ops, v.c.bytes, v.c.errors()))
                .collect()
        };
        assert_eq!(procs(a), procs(b));
        let convs = |x: &Aggregate| -> Vec<_> {
            x.conversations
                .iter()
                .map(|(k, v)| (*k, v.c.ops, v.c.bytes, v.c.errors()))
                .collect()
        };
        assert_eq!(convs(a), convs(b));
        assert_eq!(a.errors.len(), b.errors.len());
        assert!(a.latency.is_empty(), "no distribution from counts");
    }
}
