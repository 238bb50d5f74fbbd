//! Gives back the memory that only starting needed, before the ring
//! buffer is mapped: the recorder's peak RSS is the ring (mapped twice
//! over, every page resident from the start: 32 MiB for the default
//! 16 MiB ring) plus whatever starting left resident (issue #20).
//!
//! Two things stay resident after the programs are loaded and attached
//! and are not needed again while tracing: the heap that libbpf freed
//! (the kernel's BTF and the object's, parsed), and the pages of the
//! executable that starting read (the embedded BPF object, about 2 MiB,
//! and the code of argument parsing, checks and loading).

/// Frees what it can; never fails (what it cannot free stays resident).
pub fn release() {
    release_free_heap();
    release_executable_pages();
}

/// Returns the heap's free pages to the kernel.
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own free lists; it may be
    // called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops this process's resident pages of its executable's read-only
/// mappings (code, constants, the embedded BPF object) that hold no page
/// this process changed. They are clean pages of the file: whatever is
/// used again is read back from the page cache at its next touch, so only
/// the pages tracing uses come back. (A read-only mapping that the loader
/// relocated, RELRO, has changed pages: `Anonymous` above 0 in smaps. It
/// is left alone, since dropping them would bring back the file's bytes.)
fn release_executable_pages() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Some(exe) = exe.to_str() else { return };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in unchanged_read_only_mappings_of(&smaps, exe) {
        // SAFETY: [start, end) is one whole mapping of the executable's
        // file, private, not writable, and with no anonymous page (none
        // this process changed): MADV_DONTNEED only drops its pages, and
        // touching them again reads the same bytes from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The address ranges of `path`'s mappings in a `/proc/PID/smaps` text
/// that are private, not writable, and have no anonymous pages.
fn unchanged_read_only_mappings_of(smaps: &str, path: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The current mapping's range, while it may be one to drop.
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        // Changed pages show as anonymous, or as swap once swapped out.
        if let Some(v) = line
            .strip_prefix("Anonymous:")
            .or_else(|| line.strip_prefix("Swap:"))
        {
            if v.trim() != "0 kB" {
                candidate = None;
            }
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // A mapping's first line (range, perms, offset, device, inode,
        // path, which may hold spaces): the previous mapping is complete.
        out.extend(candidate.take());
        let name: Vec<&str> = fields.skip(3).collect();
        candidate = (name.join(" ") == path
            && perms.len() == 4
            && perms.as_bytes()[1] == b'-'
            && perms.ends_with('p'))
        .then_some((start, end));
    }
    out.extend(candidate);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_unchanged_read_only_mappings() {
        let smaps = "\
55d0a0000000-55d0a0400000 r--p 00000000 08:01 123 /usr/bin/nw trace
Rss:                3200 kB
Anonymous:             0 kB
55d0a0400000-55d0a0b00000 r-xp 00400000 08:01 123 /usr/bin/nw trace
Anonymous:             0 kB
55d0a0b00000-55d0a0b20000 r--p 00b00000 08:01 123 /usr/bin/nw trace
Anonymous:           128 kB
55d0a0b20000-55d0a0b30000 rw-p 00b20000 08:01 123 /usr/bin/nw trace
Anonymous:             0 kB
Swap:                  0 kB
55d0a0c00000-55d0a0c10000 r--p 00c00000 08:01 123 /usr/bin/nw trace
Anonymous:             0 kB
Swap:                  4 kB
7f0000000000-7f0002001000 r--s 00001000 00:0f 77 anon_inode:bpf-map
Anonymous:             0 kB
7f0003000000-7f0003100000 r-xp 00000000 08:01 456 /usr/lib/libc.so.6
Anonymous:             0 kB
";
        assert_eq!(
            unchanged_read_only_mappings_of(smaps, "/usr/bin/nw trace"),
            vec![
                (0x55d0a0000000, 0x55d0a0400000),
                (0x55d0a0400000, 0x55d0a0b00000)
            ],
            "not the relocated (RELRO) ones, resident or swapped, nor the writable one"
        );
        assert!(unchanged_read_only_mappings_of(smaps, "/usr/bin/other").is_empty());
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        release();
        // Code and constants come back from the file at their next touch.
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
