//! Keeping the resident set of a long-running exporter at what it holds.
//!
//! A refresh of a large org allocates and frees tens of MiB (the decoded
//! answers, the snapshot being built, the transient copies of a render);
//! what outlives it is a few MiB. musl's allocator hands freed pages back
//! on its own. glibc's keeps them: in one arena per thread that allocated
//! (the decoders run on the blocking pool, so a refresh touches many), and
//! between blocks still in use, so the resident set stayed at the peak and
//! grew with every refresh (35 → 70 MiB over 51 refreshes of the large
//! benchmark org). Two things here, glibc only:
//!
//! - `configure_allocator`, before any thread: one arena, so the pages one
//!   refresh freed are the next one's, and a fixed mmap threshold (64 KiB)
//!   so that large buffers (bodies, row vectors, read buffers) are mapped
//!   on their own and unmapped when freed instead of splitting the heap;
//! - `release_free_memory`, after a refresh: `malloc_trim(0)` returns the
//!   heap's free pages.
//!
//! - `without_thread_caches`, first thing in `main`: glibc's per-thread
//!   caches hold freed blocks of every thread that ran a decoder, scattered
//!   over the heap where trimming cannot reach them; with them the large
//!   org still grew 19.5 → 25.9 MiB over 51 refreshes, without them it
//!   stays at 16.5. Only the environment can turn them off
//!   (`GLIBC_TUNABLES`, read when the program is loaded), so the exporter
//!   sets it and executes itself again, once: same process, same
//!   arguments. A `GLIBC_TUNABLES` that already names `tcache_count` is
//!   the operator's choice and is left alone.
//!
//! The two libc calls are the crate's only unsafe code: into the C library
//! the glibc build links anyway, with plain integers, no memory handed over.

/// The tunable that turns glibc's per-thread caches off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NO_THREAD_CACHE: &str = "glibc.malloc.tcache_count=0";

/// Restarts the program in place with glibc's thread caches off, unless
/// the environment already says what they should be. Returns only when it
/// did not restart (musl, already set, or the restart failed: then the
/// exporter runs with the caches, as it would have anyway).
pub(crate) fn without_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        let current = current.to_string_lossy();
        if current.contains("glibc.malloc.tcache_count") {
            return;
        }
        let tunables = if current.is_empty() {
            NO_THREAD_CACHE.to_owned()
        } else {
            format!("{NO_THREAD_CACHE}:{current}")
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_default();
        // exec only returns on failure; the error is not worth a word in
        // the log: the exporter then runs as it did before this existed.
        let _ = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .exec();
    }
}

/// Sets glibc's allocator up for a long-running process whose work comes in
/// bursts. Must run before the first thread is started.
pub(crate) fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists, so no allocation races it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

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
