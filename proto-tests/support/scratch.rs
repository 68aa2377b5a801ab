//! What a test borrows from the machine: a directory of its own under the
//! target's temp dir, files in it, and a loopback address nothing listens on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A fresh, empty directory `name` for this test process (emptied if it
/// is there from an earlier run).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

/// `contents` written to `name` in `dir`; its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a scratch file");
    path
}

/// A loopback address (kernel-chosen port) that nothing listens on: bound,
/// then released, so a connection to it is refused.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}
