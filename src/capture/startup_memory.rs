//! Gives back the heap that only starting needed, before the ring buffer
//! is mapped (issue #20): libbpf parses the kernel's BTF and the object's
//! while loading and frees them, but glibc keeps the freed pages resident
//! until it is asked to trim.
//!
//! Not done on purpose: dropping the executable's clean, read-only pages
//! (MADV_DONTNEED) lowers the RSS figure by a few MiB, but the host gets
//! no memory back (those pages stay in the page cache, shared), and the
//! pages come back as tracing touches them.

/// Frees what it can; never fails (what it cannot free stays resident).
pub fn release() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own free lists; it may be
    // called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
