//! The seam between the capture session and what it feeds: the CSV
//! writer, `top`, `watch`, or nothing at all (the benchmark's null
//! consumer). A consumer sees decoded events in the order the kernel
//! produced them, a tick after every drain, and the finish.

use std::ops::ControlFlow;

use crate::capture::event::NetEvent;
use crate::capture::sampling::UnwrittenFlow;
use crate::capture::session::ProgramStats;
use crate::timefmt::WallClock;

/// Why a capture stopped. It carries its own error text, so the command
/// that ran the capture decides the exit status and the manifest's
/// `exit_reason` from it alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal(&'static str),
    DurationElapsed,
    /// A consumer has what it wanted (a count reached, a closed pipe, the
    /// user quit a UI). Not a failure.
    ConsumerDone(String),
    /// A consumer could not go on (a write failed: a full disk). The run
    /// failed.
    ConsumerFailed(String),
    /// Reading the ring buffer failed.
    RingError(String),
}

impl StopReason {
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            StopReason::ConsumerFailed(_) | StopReason::RingError(_)
        )
    }

    /// The manifest's `exit_reason`.
    pub fn describe(&self) -> String {
        match self {
            StopReason::Signal(sig) => sig.to_string(),
            StopReason::DurationElapsed => "duration elapsed".to_string(),
            StopReason::ConsumerDone(why) => why.clone(),
            StopReason::ConsumerFailed(why) => why.clone(),
            StopReason::RingError(e) => format!("ring buffer error: {e}"),
        }
    }
}

/// What a consumer learns on each tick about the capture itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureHealth {
    /// Events delivered so far.
    pub events: u64,
    /// Ring buffer reservations that failed so far (the kernel side's
    /// count of lost events).
    pub events_lost: u64,
    /// Records that did not decode.
    pub malformed_records: u64,
    /// Bytes in the ring buffer not yet read, and its size, sampled after
    /// the drain (so mostly 0: a high value means the reader falls
    /// behind).
    pub ring_used: u64,
    pub ring_size: u64,
    /// Rows the row filters left out so far (`--port`, `--protocol`,
    /// `--direction`, `--ip-version`).
    pub filtered: u64,
    /// Operations `--sample` and `--rate-limit` left out (counted, not
    /// delivered), as drained so far (about a second behind).
    pub sampled_out: u64,
    pub rate_limited: u64,
}

pub trait Consumer {
    /// One decoded event. `clock` turns its monotonic times into wall
    /// time. `Break` stops the capture; the events still in flight are
    /// delivered all the same, and the consumer decides what they mean.
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason>;

    /// Called after every drain of the ring buffer: at least every poll
    /// interval (100 ms), whether events came or not.
    fn on_tick(&mut self, _health: &CaptureHealth) -> ControlFlow<StopReason> {
        ControlFlow::Continue(())
    }

    /// Counts of operations that `--sample` or `--rate-limit` left out
    /// (not delivered as events): drained about every second, and once
    /// more after the last event, before `finish`. Each op is in exactly
    /// one drain.
    fn on_unwritten(
        &mut self,
        _flows: &[UnwrittenFlow],
        _clock: &WallClock,
    ) -> ControlFlow<StopReason> {
        ControlFlow::Continue(())
    }

    /// Each BPF program's run count and run time so far, from the
    /// kernel's own statistics: about every second, only while
    /// `kernel.bpf_stats_enabled` is 1 (they cost two clock reads a run,
    /// so the kernel keeps them off by default).
    fn on_programs(&mut self, _programs: &[ProgramStats]) {}

    /// The capture has stopped and every event has been delivered. A
    /// `Break` here (a last flush failed) overrides a stop that was not
    /// already a failure.
    fn finish(&mut self) -> ControlFlow<StopReason> {
        ControlFlow::Continue(())
    }
}

/// A consumer lent out, so that a command keeps its consumer after the run
/// (to read its counts).
impl<C: Consumer + ?Sized> Consumer for &mut C {
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason> {
        (**self).on_event(event, clock)
    }

    fn on_tick(&mut self, health: &CaptureHealth) -> ControlFlow<StopReason> {
        (**self).on_tick(health)
    }

    fn on_unwritten(
        &mut self,
        flows: &[UnwrittenFlow],
        clock: &WallClock,
    ) -> ControlFlow<StopReason> {
        (**self).on_unwritten(flows, clock)
    }

    fn on_programs(&mut self, programs: &[ProgramStats]) {
        (**self).on_programs(programs)
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        (**self).finish()
    }
}

/// Takes every event and does nothing with it: what the capture alone
/// costs, for the benchmark.
#[derive(Debug, Default)]
pub struct NullConsumer {
    pub events: u64,
}

impl Consumer for NullConsumer {
    fn on_event(&mut self, _event: &NetEvent, _clock: &WallClock) -> ControlFlow<StopReason> {
        self.events += 1;
        ControlFlow::Continue(())
    }
}

/// Feeds every event to two consumers in turn (`top --record`, `watch
/// --output-dir`). It stops when either one does.
pub struct Tee<A, B>(pub A, pub B);

impl<A: Consumer, B: Consumer> Consumer for Tee<A, B> {
    fn on_event(&mut self, event: &NetEvent, clock: &WallClock) -> ControlFlow<StopReason> {
        let a = self.0.on_event(event, clock);
        let b = self.1.on_event(event, clock);
        first_break(a, b)
    }

    fn on_tick(&mut self, health: &CaptureHealth) -> ControlFlow<StopReason> {
        let a = self.0.on_tick(health);
        let b = self.1.on_tick(health);
        first_break(a, b)
    }

    fn on_unwritten(
        &mut self,
        flows: &[UnwrittenFlow],
        clock: &WallClock,
    ) -> ControlFlow<StopReason> {
        let a = self.0.on_unwritten(flows, clock);
        let b = self.1.on_unwritten(flows, clock);
        first_break(a, b)
    }

    fn on_programs(&mut self, programs: &[ProgramStats]) {
        self.0.on_programs(programs);
        self.1.on_programs(programs);
    }

    fn finish(&mut self) -> ControlFlow<StopReason> {
        let a = self.0.finish();
        let b = self.1.finish();
        first_break(a, b)
    }
}

/// A failure wins over a plain stop, so a full disk is never hidden by the
/// other consumer's quitting.
fn first_break(a: ControlFlow<StopReason>, b: ControlFlow<StopReason>) -> ControlFlow<StopReason> {
    match (a, b) {
        (ControlFlow::Break(a), ControlFlow::Break(b)) => {
            ControlFlow::Break(if b.is_failure() && !a.is_failure() {
                b
            } else {
                a
            })
        }
        (ControlFlow::Break(r), _) | (_, ControlFlow::Break(r)) => ControlFlow::Break(r),
        _ => ControlFlow::Continue(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quits(StopReason);

    impl Consumer for Quits {
        fn on_event(&mut self, _: &NetEvent, _: &WallClock) -> ControlFlow<StopReason> {
            ControlFlow::Break(self.0.clone())
        }
    }

    #[test]
    fn tee_prefers_a_failure() {
        let done = StopReason::ConsumerDone("count reached".into());
        let failed = StopReason::ConsumerFailed("write error: ENOSPC".into());
        let ev = crate::capture::event::tests::sample_event();
        let clock = WallClock::with_offset(0);
        let mut tee = Tee(Quits(done.clone()), Quits(failed.clone()));
        assert_eq!(
            tee.on_event(&ev, &clock),
            ControlFlow::Break(failed.clone())
        );
        let mut tee = Tee(Quits(done.clone()), NullConsumer::default());
        assert_eq!(tee.on_event(&ev, &clock), ControlFlow::Break(done));
        assert_eq!(tee.1.events, 1, "the second consumer still saw the event");
    }
}
