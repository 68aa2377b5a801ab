//! Handing freed memory back to the system after a refresh.
//!
//! glibc's allocator keeps what a refresh frees (the decoded answers, the
//! transient copies of a render) in its arenas, most of it between blocks
//! still in use, so the resident set of a large org stays at the refresh's
//! peak and grows with every refresh (35 → 70 MiB over 51 refreshes of the
//! large benchmark org). `malloc_trim(0)` returns those free pages
//! (measured: 35.4 → 22.7 MiB after the first refresh, flat after 51).
//! musl's allocator returns free pages on its own: nothing to do there.
//!
//! This is the crate's only unsafe code: one call into the C library the
//! glibc build links anyway, with no argument but 0 and no memory handed over.

/// Returns the allocator's free pages to the system, where it holds them.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes the allocator's own locks; it only releases
    // pages no allocation uses, and reads or writes no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
