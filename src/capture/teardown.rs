//! Detaching without making the user wait for the kernel's perf teardown.
//!
//! A classic tracepoint (the `syscalls:*` events of the tracepoint
//! backend) is attached through a perf event. When the last reference to
//! that perf event goes, the kernel unregisters it and waits for an RCU
//! grace period (`perf_trace_event_unreg()` calls
//! `tracepoint_synchronize_unregister()`), one event after the other under
//! `event_mutex`: 50 to 90 ms each on the development host, over a second
//! for nwtrace's 17 syscall events. That wait made `watch | head -3` and a
//! Ctrl-C take more than a second to return.
//!
//! Closing a BPF link (`BPF_LINK_TYPE_PERF_EVENT`, kernel 5.15) takes its
//! program off the tracepoint while the perf event lives on. It waits
//! for an RCU grace period too, but outside any lock. So
//! [`PerfEventHold`] duplicates every link and perf event descriptor,
//! lets libbpf close its own (no longer the last references: instant),
//! closes the links on parallel threads (one shared wait, about 30 ms,
//! after which no program of ours is attached), and hands the perf events
//! to a child process that closes them one by one after this process
//! has let go of its copies. The child holds nothing but perf events
//! without programs, and is gone about a second later.
//!
//! Where that cannot be proven, the descriptors are closed here, as
//! before: on kernels before 5.15 libbpf attaches with
//! `PERF_EVENT_IOC_SET_BPF`, so the perf event itself holds the program;
//! [`PerfEventHold::release`] checks that no program of ours survived the
//! detach before it hands anything over.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Duplicates of this process's attachment descriptors: BPF links and
/// perf events.
pub struct PerfEventHold {
    links: Vec<OwnedFd>,
    fds: Vec<OwnedFd>,
}

impl PerfEventHold {
    /// Duplicates every BPF link and perf event descriptor of this process
    /// (they all belong to the capture's attachments).
    pub fn take() -> PerfEventHold {
        let mut hold = PerfEventHold {
            links: Vec::new(),
            fds: Vec::new(),
        };
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return hold;
        };
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let list = match target.as_os_str().to_str() {
                Some("anon_inode:[perf_event]") => &mut hold.fds,
                Some("anon_inode:bpf_link") => &mut hold.links,
                _ => continue,
            };
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor number this
            // process has open; a failure returns -1 and is skipped.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup >= 0 {
                // SAFETY: `dup` is a new descriptor that nothing else owns.
                list.push(unsafe { OwnedFd::from_raw_fd(dup) });
            }
        }
        hold
    }

    /// Closes the links, all at once: each close waits for an RCU
    /// grace period (`perf_event_detach_bpf_prog()` calls
    /// `synchronize_rcu_tasks_trace()` on kernels whose syscall
    /// tracepoints may fault, 6.x), outside any lock, so closes on
    /// parallel threads share one wait instead of queueing 17 of them.
    /// Every program is detached when this returns.
    pub fn close_links(&mut self) {
        let links = std::mem::take(&mut self.links);
        std::thread::scope(|s| {
            for link in links {
                if std::thread::Builder::new()
                    .name("nwtrace-detach".into())
                    .spawn_scoped(s, move || drop(link))
                    .is_err()
                {
                    // No thread: this one closed it (dropping the moved
                    // closure dropped the link).
                }
            }
        });
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Lets go of the perf events, after [`Self::close_links`]. Call it
    /// only where no perf event holds a program (BPF perf links, checked
    /// by the caller). Returns whether a child took the slow close.
    pub fn release(self) -> bool {
        if self.fds.is_empty() {
            return false;
        }
        hand_to_child(self.fds)
    }
}

/// Forks a child that closes `fds` once this process has closed its
/// copies, and closes every other descriptor it inherited at once. Returns
/// false (the descriptors then close here) if the child cannot be made.
fn hand_to_child(fds: Vec<OwnedFd>) -> bool {
    let (Ok(go), Ok(ready)) = (cloexec_pipe(), cloexec_pipe()) else {
        return false;
    };
    let mut keep: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    keep.push(go.0.as_raw_fd());
    keep.sort_unstable();
    // SAFETY: fork() in a multithreaded process; the child only makes
    // async-signal-safe system calls (prctl, close_range, read, close,
    // _exit) and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return false;
    }
    if pid == 0 {
        child(&keep, go.0.as_raw_fd(), &fds);
    }
    // Parent: close our copies of the perf events (not the last
    // references: fast), then wait until the child has closed everything
    // else it inherited (programs, maps, files, our stdout), so that
    // nothing of ours outlives this process through it.
    drop(fds);
    drop(go);
    drop(ready.1);
    let mut byte = 0u8;
    loop {
        // SAFETY: reads into a one-byte local buffer from an open pipe.
        let n = unsafe { libc::read(ready.0.as_raw_fd(), (&raw mut byte).cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break; // EOF: the child's close_range closed its write end
        }
    }
    true
}

/// The child's whole life. Never returns.
fn child(keep: &[RawFd], go: RawFd, perf: &[OwnedFd]) -> ! {
    const NAME: &CStr = c"nwtrace-detach";
    // SAFETY: every call below is async-signal-safe and takes plain
    // integers or the static NAME; the child never returns into Rust.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, NAME.as_ptr());
        // The parent's handlers only set flags nobody reads here: let a
        // stop signal (systemd's SIGTERM, a second Ctrl-C) end the child;
        // the kernel then closes the perf events itself, just the same.
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_DFL);
        }
        // Close every descriptor but `keep` (sorted): the gaps between
        // them, then everything above the last.
        let mut first: libc::c_uint = 0;
        for &k in keep {
            if (k as libc::c_uint) > first {
                libc::syscall(libc::SYS_close_range, first, k as libc::c_uint - 1, 0);
            }
            first = k as libc::c_uint + 1;
        }
        libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0);
        // Wait for the parent to close its copies (EOF on `go`), so that
        // the last reference, and the wait, are ours.
        let mut byte = 0u8;
        while libc::read(go, (&raw mut byte).cast(), 1) < 0 {}
        for fd in perf {
            libc::close(fd.as_raw_fd());
        }
        libc::_exit(0)
    }
}

fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_without_perf_events_holds_nothing_and_hands_nothing_over() {
        let hold = PerfEventHold::take();
        assert!(hold.is_empty());
        assert!(!hold.release());
    }
}
