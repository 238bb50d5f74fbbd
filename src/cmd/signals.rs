//! Signals that end a capture. Each command chooses its own policy: only
//! `record` exits at once on a second Ctrl-C; `top` must restore the
//! terminal first, so nothing here calls `exit()` unless asked to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The exit status of a second Ctrl-C under [`SecondInterrupt::Exits`].
pub const EXIT_SECOND_INTERRUPT: i32 = 130;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondInterrupt {
    /// A second SIGINT exits at once with status 130 (`record`: every write
    /// so far was whole rows, so no file ends in part of one).
    Exits,
    /// A second SIGINT is like the first.
    Ignored,
}

/// The signal that asked the capture to stop, 0 for none yet.
pub struct StopSignals(Arc<AtomicUsize>);

impl StopSignals {
    /// Flags SIGINT, SIGTERM and SIGHUP.
    pub fn install(second: SecondInterrupt) -> Result<Self> {
        let seen = Arc::new(AtomicUsize::new(0));
        if second == SecondInterrupt::Exits {
            let interrupted = Arc::new(AtomicBool::new(false));
            // Registered before the flag setter, so it sees the flag as the
            // previous SIGINT left it.
            signal_hook::flag::register_conditional_shutdown(
                SIGINT,
                EXIT_SECOND_INTERRUPT,
                Arc::clone(&interrupted),
            )
            .context("installing the SIGINT handler")?;
            signal_hook::flag::register(SIGINT, interrupted)
                .context("installing the SIGINT handler")?;
        }
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal_hook::flag::register_usize(sig, Arc::clone(&seen), sig as usize)
                .context("installing signal handlers")?;
        }
        Ok(StopSignals(seen))
    }

    /// The name of the first stop signal received, if any.
    pub fn received(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Relaxed) as i32 {
            0 => None,
            libc::SIGINT => Some("SIGINT"),
            libc::SIGTERM => Some("SIGTERM"),
            libc::SIGHUP => Some("SIGHUP"),
            _ => Some("signal"),
        }
    }
}
