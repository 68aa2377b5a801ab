//! The external tools some tests run (promtool, prometheus, chromium,
//! podman, runc, qemu-aarch64, chroot): finding one, saying why a test is
//! skipped when it is missing, and running one within a time limit. Outside
//! CI a missing tool skips the test with a `SKIPPED` line; under CI (`CI`
//! set), where `.ci/run` provides every tool, it is a failure.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// A missing prerequisite of the running test: a `SKIPPED` line with `why`
/// outside CI, a failure under CI.
pub fn skip(why: &str) {
    let current = std::thread::current();
    let test = current.name().unwrap_or("this test");
    assert!(
        !under_ci(),
        "{test}: {why}; under CI .ci/run must provide it"
    );
    eprintln!("SKIPPED {test}: {why} (.ci/run provides it)");
}

/// The path of the tool `name` (on PATH, or in /usr/sbin or /sbin, where
/// Debian puts chroot and runc); when it is missing, `skip` with how to
/// install it (`install`, such as "apt-get install prometheus") and None.
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&paths)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        skip(&format!("{name} is not installed ({install})"));
    }
    found
}

/// Runs `cmd` to completion within `limit` (killed and failed past it),
/// with `input` on its stdin (none: /dev/null).
pub fn run_bounded(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    // Written from a thread: a tool may answer before it read everything.
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    });
    let collect = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = from.read_to_end(&mut buf);
            buf
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let status = wait_bounded(&mut child, limit)
        .unwrap_or_else(|| panic!("{what} did not finish within {limit:?}"));
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The exit status within `limit`; None (and the child killed) past it.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stdout and stderr of a finished tool, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `promtool check metrics` on `text`: None when promtool is not installed
/// (outside CI), else its findings (errors and lint warnings).
pub fn promtool(text: &str) -> Option<Result<(), String>> {
    let promtool = tool("promtool", "apt-get install prometheus")?;
    let out = run_bounded(
        Command::new(promtool).args(["check", "metrics"]),
        Some(text.as_bytes()),
        Duration::from_secs(60),
    );
    let report = output_text(&out);
    Some(if out.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        Err(report)
    })
}
