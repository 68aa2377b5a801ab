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
//! And for both builds, `sealed_copy`: a large plain body is held once, in
//! a sealed memfd that plain-TCP scrapes send with sendfile(2), and read
//! through a read-only mapping of it everywhere else (TLS, the fallback):
//! before, the body was in the heap as well, twice the memory (the memfd's
//! pages are memory too, though in no RSS figure until read).
//!
//! The libc calls and the mapping are the crate's only unsafe code.

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

/// A file holding `bytes`, sealed so that nothing can change or resize it,
/// and those bytes read back through a mapping of it: the one copy both
/// the sendfile path and every other reader use. None where memfds, seals
/// or the mapping are not allowed (then the caller keeps its bytes).
pub(crate) fn sealed_copy(bytes: &[u8]) -> Option<(std::sync::Arc<std::fs::File>, bytes::Bytes)> {
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::io::Write;
    let refused = |what: &str, e: &dyn std::fmt::Display| {
        tracing::debug!("body kept in memory, no sealed memfd: {what}: {e}");
    };
    if bytes.is_empty() {
        return None;
    }
    let fd = rustix::fs::memfd_create(
        "exposition",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| refused("memfd_create", &e))
    .ok()?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)
        .map_err(|e| refused("write", &e))
        .ok()?;
    let seals = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    rustix::fs::fcntl_add_seals(&file, seals)
        .map_err(|e| refused("seal", &e))
        .ok()?;
    let mapping = Mapping::of(&file, bytes.len())
        .map_err(|e| refused("mmap", &e))
        .ok()?;
    Some((std::sync::Arc::new(file), bytes::Bytes::from_owner(mapping)))
}

/// A read-only shared mapping of a sealed file, unmapped when dropped.
struct Mapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and its file sealed against writes,
// shrinking and growing (and against new seals): its bytes never change
// and never go away while it is mapped, so any thread may read them.
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}
#[allow(unsafe_code)]
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `file`, which must be sealed.
    fn of(file: &std::fs::File, len: usize) -> rustix::io::Result<Mapping> {
        use rustix::mm::{MapFlags, ProtFlags};
        #[allow(unsafe_code)]
        // SAFETY: a new mapping at an address the kernel picks, over no
        // memory of ours; the file is sealed, so the pages cannot change
        // under the `&[u8]` handed out, nor be cut off (no SIGBUS).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                file,
                0,
            )?
        };
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>()).ok_or(rustix::io::Errno::NOMEM)?;
        Ok(Mapping { ptr, len })
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        #[allow(unsafe_code)]
        // SAFETY: `len` readable bytes at `ptr` for the mapping's life
        // (see `of`), never written.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr(), self.len)
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        #[allow(unsafe_code)]
        // SAFETY: the mapping `of` made; the `Bytes` that owned it is gone,
        // so no slice of it is left.
        unsafe {
            let _ = rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn a_sealed_copy_reads_back_as_written_and_cannot_be_changed() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (file, bytes) = sealed_copy(&body).expect("memfds work here");
        assert_eq!(&bytes[..], &body[..]);
        assert_eq!(&bytes.slice(1000..1010)[..], &body[1000..1010]);
        let mut read = Vec::new();
        let mut f = &*file;
        f.rewind().unwrap();
        f.read_to_end(&mut read).unwrap();
        assert_eq!(read, body);
        assert!((&*file).write_all(b"x").is_err(), "sealed against writes");
        assert!(file.set_len(10).is_err(), "sealed against shrinking");
        // The mapping outlives the file handle and every other clone.
        drop(file);
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(copy.len(), body.len());
        assert_eq!(copy[199_999], body[199_999]);
    }

    #[test]
    fn nothing_is_made_of_nothing() {
        assert!(sealed_copy(b"").is_none());
    }
}
