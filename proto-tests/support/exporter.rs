//! Runs the real exporter binary as a child process for protocol tests: a
//! clean environment, a port chosen by the kernel (read back from the log),
//! every byte of stdout and stderr kept for assertions, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const BIN: &str = env!("CARGO_BIN_EXE_nvidia-license-server-exporter");

pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The threads copying stdout and stderr; they end at the child's exit.
    pumps: Vec<std::thread::JoinHandle<()>>,
}

/// A command with only the given environment (plus nothing inherited), so
/// the developer's own NVIDIA_* or OTEL_* variables never leak into a test.
pub fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs to completion: (status, stdout, stderr).
pub fn run_to_end(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String, String) {
    let out = command(env, args)
        .stdin(Stdio::null())
        .output()
        .expect("run exporter");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pump(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
    notify: Option<std::sync::mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Some(tx) = notify {
            let mut reader = BufReader::new(from);
            let mut line = Vec::new();
            while reader
                .read_until(b'\n', &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                into.lock().unwrap().extend_from_slice(&line);
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
        } else {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    })
}

/// The settings of every test exporter: the test key and org, the CLS at
/// `base_url`, and the listen address `listen`.
pub fn base_env(base_url: &str, listen: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NVIDIA_API_KEY", "test-key".to_owned()),
        ("NVIDIA_ORG_NAME", "lic-demo".to_owned()),
        ("NVIDIA_API_BASE_URL", base_url.to_owned()),
        ("LISTEN_ADDRESS", listen.to_owned()),
    ]
}

/// `base_env(base_url, "127.0.0.1:0")` and then `extra`, a later setting
/// replacing an earlier one of the same name: a test exporter's environment.
pub fn test_env(base_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base_env(base_url, "127.0.0.1:0")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

impl Exporter {
    /// Starts the exporter against `base_url` with the test key and org and
    /// `extra` settings, and waits until it listens.
    pub fn start(base_url: &str, extra: &[(&str, &str)]) -> Exporter {
        let env = test_env(base_url, extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Exporter::start_with(&env, &[])
    }

    pub fn start_with(env: &[(&str, &str)], args: &[&str]) -> Exporter {
        Exporter::spawn(&mut command(env, args))
    }

    /// Spawns `cmd` (the binary, or what runs it: chroot, qemu) and waits
    /// (at most 20 s) for its `listening address=...` log line.
    pub fn spawn(cmd: &mut Command) -> Exporter {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pumps = vec![
            pump(child.stdout.take().unwrap(), stdout.clone(), None),
            pump(child.stderr.take().unwrap(), stderr.clone(), Some(tx)),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "exporter did not start listening; stderr:\n{}",
                        String::from_utf8_lossy(&stderr.lock().unwrap())
                    );
                }
            };
            if let Some(rest) = line.split("address=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().trim_matches('"');
                break addr.parse().expect("listen address in log");
            }
        };
        Exporter {
            child,
            addr,
            stdout,
            stderr,
            pumps,
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs (not exited, not a zombie).
    pub fn alive(&self) -> bool {
        proc_status(self.pid(), "State:").is_some_and(|state| !state.starts_with('Z'))
    }

    /// Resident set now, in bytes.
    pub fn rss(&self) -> u64 {
        proc_kib(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident set, in bytes.
    pub fn peak_rss(&self) -> u64 {
        proc_kib(self.pid(), "VmHWM:") * 1024
    }

    /// Sends a signal and waits (at most 10 s) for the exit status; by then
    /// every byte the process wrote has been read into stdout() and stderr().
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                for pump in self.pumps.drain(..) {
                    let _ = pump.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "exporter did not exit after SIG{signal}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        http(self.addr, "GET", path, &[]).await
    }

    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200);
        r.text()
    }
}

/// A field of /proc/<pid>/status, trimmed.
fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_owned())
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    proc_status(pid, field)
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} of process {pid}"))
}

/// Peak resident set of a process, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    proc_kib(pid, "VmHWM:") * 1024
}

/// Log lines containing `needle`, waiting (at most 5 s) until at least one
/// has been read and no more came for 100 ms: stderr is read by a thread, so
/// a line can lag behind the response that followed it.
pub async fn log_lines(exporter: &Exporter, needle: &str) -> Vec<String> {
    let read = || -> Vec<String> {
        exporter
            .stderr()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    };
    let started = Instant::now();
    let (mut lines, mut since) = (read(), Instant::now());
    while started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = read();
        if now.len() != lines.len() {
            (lines, since) = (now, Instant::now());
        } else if !lines.is_empty() && since.elapsed() >= Duration::from_millis(100) {
            break;
        }
    }
    lines
}

/// The message of every "refresh failed" warning (without its fields).
pub async fn refresh_failures(exporter: &Exporter) -> Vec<String> {
    log_lines(exporter, " WARN refresh failed: ")
        .await
        .iter()
        .map(|line| {
            let rest = line.split(" WARN refresh failed: ").nth(1).unwrap();
            rest.split(" duration_seconds=").next().unwrap().to_owned()
        })
        .collect()
}

/// (path, attempt, wait_ms) of every "retrying" debug line.
pub async fn retries(exporter: &Exporter) -> Vec<(String, u32, u64)> {
    log_lines(exporter, "retrying: ")
        .await
        .iter()
        .map(|line| {
            let field = |name: &str| {
                line.split(&format!(" {name}="))
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap_or_else(|| panic!("{name} in {line}"))
                    .trim_matches('"')
                    .to_owned()
            };
            (
                field("path"),
                field("attempt").parse().unwrap(),
                field("wait_ms").parse().unwrap(),
            )
        })
        .collect()
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("utf-8 body")
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`), read
/// to the end, within 30 s.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    http_on(stream, &addr.to_string(), method, path, headers).await
}

/// One HTTP/1.1 exchange on an open stream (plain or TLS), read to the end.
pub async fn http_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let exchange = async {
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        // A TLS peer may close without close_notify: keep what was read.
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("HTTP exchange within 30 s");
    // No complete head (the peer closed or refused): status 0, no body.
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    response
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body (other servers,
/// such as Prometheus, answer this way).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&raw[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        let start = end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    body
}

/// The exposition without the lines whose values change on every run
/// (durations, timestamps, process figures, build info): their values are
/// replaced by `<v>` so the rest can be compared exactly.
pub fn stable(exposition: &str) -> String {
    const VOLATILE: [&str; 5] = [
        "nvidia_cls_scrape_duration_seconds",
        "nvidia_cls_scrape_timestamp_seconds",
        "nvidia_cls_last_success_timestamp_seconds",
        "nvidia_cls_exporter_build_info",
        "process_",
    ];
    exposition
        .lines()
        .map(|line| {
            if line.starts_with("nvidia_cls_exporter_build_info{") {
                "nvidia_cls_exporter_build_info{<labels>} 1".to_owned()
            } else if !line.starts_with('#') && VOLATILE.iter().any(|v| line.starts_with(v)) {
                match line.rfind(' ') {
                    Some(i) => format!("{} <v>", &line[..i]),
                    None => line.to_owned(),
                }
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The value of the one sample whose line starts with `prefix` (name and labels).
pub fn value(exposition: &str, prefix: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
