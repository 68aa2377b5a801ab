//! The static musl binary and the FROM-scratch image, tested as users run
//! them: no C crypto in the dependency tree, a fully static ELF within the
//! size budget, real metrics served from an empty root (a `chroot` into a
//! directory holding only the binary), and the `Dockerfile.scratch` image
//! built and run under podman as PID 1, health-checked by the binary itself.
//!
//! Cost: the first run builds the musl release binary with `scripts/build-musl`
//! (fat LTO: about a minute on two cores; later runs relink only when the
//! sources or HEAD moved). The aarch64 binary is built and run under
//! qemu-user only under CI or with `STATIC_BINARY_AARCH64=1`, to spare the
//! second build on every developer run. Root (chroot) and podman are needed
//! for the last two tests: without them the test says SKIPPED, except under
//! CI, where `.ci/run` installs them and their absence is a failure.
//!
//! Network: the fake CLS and the exporter listen on 127.0.0.1 only; the
//! container shares the host's network namespace (`--network host`).

mod support;

use support::fake_cls::fixture;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::exporter::{base_env, http, Exporter};
use support::fake_cls::FakeCls;
use support::proxy::ConnectProxy;
use support::scratch::{free_addr, scratch_dir};
use support::series::up;
use support::tools::{self, run_bounded, tool};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN_NAME: &str = "nvidia-license-server-exporter";
/// Where Dockerfile.scratch puts the binary; the chroot does the same.
const IN_IMAGE: &str = "/nvidia-license-server-exporter";
const SIZE_BUDGET: u64 = 4 * 1024 * 1024;
const SIZE_AIM: u64 = 3 * 1024 * 1024;

/// Crates that bring a C (or C++) TLS or crypto library. ring is allowed:
/// its few C and assembly parts are built by the `cc` crate with no system
/// library, and it is the provider rustls is configured with.
const C_CRYPTO: &[&str] = &[
    "aws-lc-rs",
    "aws-lc-sys",
    "aws-lc-fips-sys",
    "openssl",
    "openssl-sys",
    "openssl-src",
    "native-tls",
    "tokio-native-tls",
    "hyper-tls",
    "tokio-openssl",
    "hyper-openssl",
    "boring",
    "boring-sys",
    "boringssl",
    "tokio-boring",
    "s2n-tls",
    "s2n-tls-sys",
    "mbedtls",
    "mbedtls-sys-auto",
    "wolfssl",
    "wolfssl-sys",
    "botan",
    "botan-sys",
    "gnutls",
    "gnutls-sys",
    "nettle",
    "nettle-sys",
    "libsodium-sys",
    "libsodium-sys-stable",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn target(self) -> String {
        format!("{}-unknown-linux-musl", self.name())
    }

    /// ELF `e_machine`.
    fn machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers: root, the musl build.

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds (or finds up to date) the static release binary with
/// `scripts/build-musl`, once per test process and architecture.
fn musl_binary(arch: Arch) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    BUILT[arch as usize]
        .get_or_init(|| {
            let started = Instant::now();
            let out = run_bounded(
                Command::new(Path::new(ROOT).join("scripts/build-musl"))
                    .arg(arch.name())
                    .current_dir(ROOT)
                    .env_remove("RUSTFLAGS")
                    .env_remove("CARGO_ENCODED_RUSTFLAGS"),
                None,
                Duration::from_secs(20 * 60),
            );
            assert!(
                out.status.success(),
                "scripts/build-musl {} failed:\n{}{}",
                arch.name(),
                text(&out.stdout),
                text(&out.stderr)
            );
            let last = text(&out.stdout);
            eprintln!(
                "{} ({:.0} s)",
                last.lines().last().unwrap_or("").trim(),
                started.elapsed().as_secs_f64()
            );
            Path::new(ROOT)
                .join("target")
                .join(arch.target())
                .join("release")
                .join(BIN_NAME)
        })
        .clone()
}

fn aarch64_wanted(test: &str) -> bool {
    if tools::under_ci() || std::env::var_os("STATIC_BINARY_AARCH64").is_some() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: the aarch64 build runs under CI or with STATIC_BINARY_AARCH64=1 \
         (a second LTO build of about a minute)"
    );
    false
}

// ---------------------------------------------------------------------------
// ELF: only the program headers, which decide how the kernel loads it.

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;

struct Elf {
    machine: u16,
    program_headers: Vec<u32>,
}

fn parse_elf(bytes: &[u8]) -> Elf {
    assert!(bytes.len() > 64 && &bytes[..4] == b"\x7fELF", "not ELF");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF");
    assert_eq!(bytes[5], 1, "not little-endian");
    let u16_at = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36) as usize;
    let phnum = u16_at(0x38) as usize;
    assert!(phoff + phnum * phentsize <= bytes.len(), "program headers");
    Elf {
        machine: u16_at(0x12),
        program_headers: (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect(),
    }
}

fn assert_static_and_small(arch: Arch) -> u64 {
    let path = musl_binary(arch);
    let bytes = std::fs::read(&path).expect("read the musl binary");
    let elf = parse_elf(&bytes);
    assert_eq!(elf.machine, arch.machine(), "ELF machine of {path:?}");
    assert!(
        !elf.program_headers.contains(&PT_INTERP),
        "{path:?} asks for a program interpreter: not static"
    );
    assert!(
        !elf.program_headers.contains(&PT_DYNAMIC),
        "{path:?} has a dynamic section (static-pie?): scripts/build-musl links it static"
    );
    let size = bytes.len() as u64;
    let mib = size as f64 / 1048576.0;
    eprintln!(
        "{} binary: {size} bytes = {mib:.2} MiB (budget 4 MiB, aim below 3 MiB{})",
        arch.target(),
        if size < SIZE_AIM { ": met" } else { ": missed" }
    );
    assert!(
        size <= SIZE_BUDGET,
        "{path:?} is {size} bytes ({mib:.2} MiB), over the 4 MiB budget"
    );
    size
}

/// The series that prove a real refresh through the CLS API happened.
fn assert_real_metrics(exposition: &str) {
    assert_eq!(up(exposition), Some(1.0), "nvidia_cls_up in:\n{exposition}");
    assert!(
        exposition.lines().any(|l| {
            l.starts_with("nvidia_cls_license_server_info{")
                && l.contains(r#"server_name="zrh-ls-01""#)
        }),
        "a license server series in:\n{exposition}"
    );
    let build = exposition
        .lines()
        .find(|l| l.starts_with("nvidia_cls_exporter_build_info{"))
        .expect("build info");
    assert!(
        build.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION")))
            && build.contains("revision=\"")
            && build.contains("rustc_version=\""),
        "{build}"
    );
}

/// A status code from one plain GET, or None when nothing answers (yet).
fn status_of(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// Time from `started` to the first 200 on /healthz, polled for at most 20 s.
fn until_healthy(addr: SocketAddr, started: Instant) -> Duration {
    let deadline = started + Duration::from_secs(20);
    loop {
        if status_of(addr, "/healthz") == Some(200) {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "no 200 on /healthz within 20 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A directory under the test target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(scratch_dir(&format!("static-binary-{name}")))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// The tests.

fn assert_no_c_crypto(arch: Arch) {
    let tree = |offline: bool| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        cmd.args(["tree", "--locked", "--target"])
            .arg(arch.target())
            .args(["-e", "normal,build", "--prefix", "none", "--format", "{p}"])
            .current_dir(ROOT);
        if offline {
            cmd.arg("--offline");
        }
        run_bounded(&mut cmd, None, Duration::from_secs(180))
    };
    // Offline first: the crates are there after the build. Else let cargo
    // fetch what the target needs from the registry.
    let mut out = tree(true);
    if !out.status.success() {
        eprintln!(
            "cargo tree --offline failed, retrying online: {}",
            text(&out.stderr)
        );
        out = tree(false);
    }
    assert!(
        out.status.success(),
        "cargo tree failed:\n{}",
        text(&out.stderr)
    );
    let tree = text(&out.stdout);
    let packages: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(packages.contains(&"rustls"), "rustls in the tree:\n{tree}");
    assert!(packages.contains(&"ring"), "ring in the tree:\n{tree}");
    let found: Vec<&&str> = C_CRYPTO.iter().filter(|c| packages.contains(c)).collect();
    assert!(
        found.is_empty(),
        "C crypto in the {} dependency tree: {found:?} (see `cargo tree -i NAME --target {}`)",
        arch.target(),
        arch.target()
    );
}

#[test]
fn no_c_crypto_stack_in_the_musl_dependency_tree() {
    assert_no_c_crypto(Arch::X86_64);
    assert_no_c_crypto(Arch::Aarch64);
}

#[test]
fn musl_binary_is_static_and_within_the_size_budget() {
    assert_static_and_small(Arch::X86_64);
    let out = run_bounded(
        Command::new(musl_binary(Arch::X86_64))
            .arg("--version")
            .env_clear(),
        None,
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let version = text(&out.stdout);
    assert!(
        version.starts_with(&format!(
            "{BIN_NAME} {} (revision ",
            env!("CARGO_PKG_VERSION")
        )) && version.contains("x86_64-unknown-linux-musl, rustc "),
        "--version printed {version:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aarch64_musl_binary_is_static_small_and_serves_under_qemu() {
    let test = "aarch64_musl_binary_is_static_small_and_serves_under_qemu";
    if !aarch64_wanted(test) {
        return;
    }
    assert_static_and_small(Arch::Aarch64);
    let Some(qemu) = tool("qemu-aarch64", "apt-get install qemu-user") else {
        return;
    };
    let cls = FakeCls::start(fixture(), "test-key").await;
    let mut exporter = Exporter::spawn(
        Command::new(qemu)
            .arg(musl_binary(Arch::Aarch64))
            .env_clear()
            .envs(base_env(&cls.base_url(), "127.0.0.1:0")),
    );
    let addr = exporter.addr;
    let scrape = http(addr, "GET", "/metrics", &[]).await;
    assert_eq!(scrape.status, 200);
    assert_real_metrics(&scrape.text());
    assert!(
        exporter.signal_and_wait("TERM").success(),
        "{}",
        exporter.stderr()
    );
}

/// An empty directory holding only the binary, entered with chroot: no libc,
/// no /etc (no hosts, no resolv.conf), no /proc, no CA store, no shell. The
/// exporter shares the host's network namespace, so it reaches 127.0.0.1.
struct EmptyRoot {
    chroot: PathBuf,
    dir: TempDir,
}

impl EmptyRoot {
    /// None (after SKIPPED) where chroot cannot be used.
    fn new(test: &str) -> Option<EmptyRoot> {
        if !is_root() {
            tools::skip("chroot needs root");
            return None;
        }
        let chroot = tool("chroot", "coreutils")?;
        let binary = musl_binary(Arch::X86_64);
        let dir = TempDir::new(test);
        std::fs::copy(&binary, dir.0.join(BIN_NAME)).expect("copy the binary into the empty root");
        Some(EmptyRoot { chroot, dir })
    }

    /// The binary inside the root with `args` and only the environment `env`.
    fn command(&self, args: &[&str], env: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(&self.chroot);
        cmd.arg(&self.dir.0)
            .arg(IN_IMAGE)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v)));
        cmd
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn musl_binary_serves_real_metrics_from_an_empty_root() {
    let Some(root) = EmptyRoot::new("musl_binary_serves_real_metrics_from_an_empty_root") else {
        return;
    };
    let in_root = |args: &[&str], env: &[(&str, String)]| root.command(args, env);
    let cls = FakeCls::start(fixture(), "test-key").await;
    let env = base_env(&cls.base_url(), "127.0.0.1:0");

    let started = Instant::now();
    let mut exporter = Exporter::spawn(&mut in_root(&[], &env));
    let addr = exporter.addr;
    let cold = until_healthy(addr, started);
    let scrape = http(addr, "GET", "/metrics", &[]).await;
    assert_eq!(scrape.status, 200, "{}", exporter.stderr());
    assert_real_metrics(&scrape.text());
    assert_eq!(http(addr, "GET", "/healthz", &[]).await.status, 200);

    // The health check from inside the same empty root: silent, exit 0.
    let listen = [("LISTEN_ADDRESS", addr.to_string())];
    let check = run_bounded(
        &mut in_root(&["healthcheck"], &listen),
        None,
        Duration::from_secs(10),
    );
    assert!(
        check.status.success(),
        "healthcheck: {}",
        text(&check.stderr)
    );
    assert!(check.stdout.is_empty() && check.stderr.is_empty());
    let rss = exporter.rss() >> 10;

    let status = exporter.signal_and_wait("TERM");
    assert!(
        status.success(),
        "exit after SIGTERM: {status:?}\n{}",
        exporter.stderr()
    );
    let check = run_bounded(
        &mut in_root(&["healthcheck"], &listen),
        None,
        Duration::from_secs(10),
    );
    assert_eq!(
        check.status.code(),
        Some(1),
        "healthcheck of a stopped exporter"
    );

    let mut again = Exporter::spawn(&mut in_root(&[], &env));
    let status = again.signal_and_wait("INT");
    assert!(
        status.success(),
        "exit after SIGINT: {status:?}\n{}",
        again.stderr()
    );

    assert_eq!(
        entries(&root.dir.0),
        vec![BIN_NAME.to_owned()],
        "the exporter wrote into its root"
    );
    eprintln!(
        "empty root: first 200 on /healthz {:.1} ms after exec; RSS after one scrape {rss} KiB",
        cold.as_secs_f64() * 1000.0
    );
}

/// With the default CLS URL and a proxy given by IP, the exporter in the
/// empty root (no resolv.conf, no hosts file, no CA store) asks the proxy for
/// a tunnel to the CLS host name: it needs no name lookup of its own. The
/// proxy refuses, so nothing leaves 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_an_empty_root_cls_is_reached_through_a_proxy_without_name_lookup() {
    let Some(root) =
        EmptyRoot::new("from_an_empty_root_cls_is_reached_through_a_proxy_without_name_lookup")
    else {
        return;
    };
    let proxy = ConnectProxy::refusing().await;
    let env = [
        ("NVIDIA_API_KEY", "test-key".to_owned()),
        ("NVIDIA_ORG_NAME", "lic-demo".to_owned()),
        ("LISTEN_ADDRESS", "127.0.0.1:0".to_owned()),
        ("HTTPS_PROXY", proxy.url()),
        ("SCRAPE_TIMEOUT", "3s".to_owned()),
    ];
    let mut exporter = Exporter::spawn(&mut root.command(&[], &env));
    let addr = exporter.addr;
    let scrape = http(addr, "GET", "/metrics", &[]).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        up(&scrape.text()),
        Some(0.0),
        "a refused tunnel is a failed refresh"
    );
    let head = proxy
        .first_head(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no request reached the proxy; stderr:\n{}",
                exporter.stderr()
            )
        });
    assert!(
        head.starts_with("CONNECT api.licensing.nvidia.com:443 HTTP/1.1\r\n"),
        "the proxy got {head:?}"
    );
    assert!(
        exporter.signal_and_wait("TERM").success(),
        "{}",
        exporter.stderr()
    );
}

/// Removes the test's container and image, whatever happened.
struct Podman {
    podman: PathBuf,
    image: String,
    container: String,
}

impl Podman {
    /// `podman --runtime runc ARGS` (the default runtime fails on rlimits here).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.podman);
        cmd.args(["--runtime", "runc"]).args(args);
        cmd
    }

    fn run(&self, args: &[&str], limit: Duration) -> Output {
        run_bounded(&mut self.cmd(args), None, limit)
    }

    fn inspect(&self, what: &str, format: &str) -> String {
        let out = self.run(
            &[what, "inspect", "--format", format, self.name(what)],
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "podman {what} inspect: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    }

    fn name(&self, what: &str) -> &str {
        if what == "image" {
            &self.image
        } else {
            &self.container
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--force", &self.container], Duration::from_secs(60));
        let _ = self.run(&["rmi", "--force", &self.image], Duration::from_secs(60));
    }
}

fn hard_nofile() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        })
        .unwrap_or_else(|| "65536".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_image_builds_and_runs_as_pid_1_under_podman() {
    let (Some(podman), Some(_runc)) = (
        tool("podman", "apt-get install podman"),
        tool("runc", "apt-get install runc"),
    ) else {
        return;
    };
    let binary_size = std::fs::metadata(musl_binary(Arch::X86_64))
        .expect("musl binary")
        .len();
    let tag = format!("{}-{}", std::process::id(), cache_buster());
    let pm = Podman {
        podman,
        image: format!("localhost/{BIN_NAME}:static-binary-test-{tag}"),
        container: format!("static-binary-test-{tag}"),
    };

    // The image: the README's binary-copy path, from the repository root.
    let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
    let build = run_bounded(
        pm.cmd(&[
            "build",
            "--layers=false",
            "--format",
            "docker",
            "-f",
            "Dockerfile.scratch",
            "--build-arg",
            &version,
            "--build-arg",
            "REVISION=test",
            "-t",
            &pm.image,
            ".",
        ])
        .current_dir(ROOT),
        None,
        Duration::from_secs(300),
    );
    assert!(
        build.status.success(),
        "podman build -f Dockerfile.scratch:\n{}{}",
        text(&build.stdout),
        text(&build.stderr)
    );
    let image_size: u64 = pm
        .inspect("image", "{{.Size}}")
        .parse()
        .expect("image size");
    assert_eq!(pm.inspect("image", "{{.Config.User}}"), "65532:65532");
    assert!(pm
        .inspect("image", "{{json .Config.ExposedPorts}}")
        .contains("9844/tcp"));
    let healthcheck = pm.inspect("image", "{{json .Config.Healthcheck}}");
    assert!(
        healthcheck.contains(r#""CMD","/nvidia-license-server-exporter","healthcheck""#),
        "HEALTHCHECK: {healthcheck}"
    );
    let labels = pm.inspect("image", "{{json .Config.Labels}}");
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels.contains(label), "label {label} in {labels}");
    }
    assert!(
        image_size < binary_size + 64 * 1024,
        "image {image_size} bytes for a {binary_size}-byte binary: more than the binary in it?"
    );

    // The container: read-only root, no tmpfs, host network to reach the fake CLS.
    let cls = FakeCls::start(fixture(), "test-key").await;
    let addr = free_addr();
    let nofile = format!("nofile={0}:{0}", hard_nofile());
    let mut args: Vec<String> = [
        "run",
        "--detach",
        "--name",
        &pm.container,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--ulimit",
        &nofile,
        "--ulimit",
        "nproc=32768:32768",
    ]
    .map(str::to_owned)
    .to_vec();
    let env = base_env(&cls.base_url(), &addr.to_string());
    for (k, v) in env
        .iter()
        .chain(&[("METRICS_PATH", "/custom/metrics".to_owned())])
    {
        args.extend(["--env".to_owned(), format!("{k}={v}")]);
    }
    args.push(pm.image.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let run = pm.run(&args, Duration::from_secs(60));
    assert!(run.status.success(), "podman run: {}", text(&run.stderr));
    let cold = until_healthy(addr, started);

    let logs = || {
        text(
            &pm.run(&["logs", &pm.container], Duration::from_secs(30))
                .stderr,
        )
    };
    let scrape = http(addr, "GET", "/custom/metrics", &[]).await;
    assert_eq!(scrape.status, 200, "{}", logs());
    assert_real_metrics(&scrape.text());

    // The image's own HEALTHCHECK, and the subcommand run by hand: silent, 0.
    let health = pm.run(
        &["healthcheck", "run", &pm.container],
        Duration::from_secs(30),
    );
    assert!(
        health.status.success(),
        "podman healthcheck run: {}{}",
        text(&health.stdout),
        text(&health.stderr)
    );
    let exec = pm.run(
        &["exec", &pm.container, IN_IMAGE, "healthcheck"],
        Duration::from_secs(30),
    );
    assert!(
        exec.status.success(),
        "healthcheck in the container: {}",
        text(&exec.stderr)
    );
    assert!(exec.stdout.is_empty() && exec.stderr.is_empty());

    // PID 1 in its namespace, unprivileged; its resident memory seen from the host.
    let pid = pm.inspect("container", "{{.State.Pid}}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(
        field("NSpid:").last().copied(),
        Some("1"),
        "PID 1 in the container"
    );
    assert_eq!(
        field("Uid:").first().copied(),
        Some("65532"),
        "runs as 65532"
    );
    let rss_kib = field("VmRSS:").first().copied().unwrap_or("?").to_owned();

    // `podman stop` sends SIGTERM to PID 1, which has no default action there:
    // a quick exit 0 shows the exporter handles it (else SIGKILL after 10 s).
    let stop_started = Instant::now();
    let stop = pm.run(
        &["stop", "--time", "10", &pm.container],
        Duration::from_secs(60),
    );
    let stop_took = stop_started.elapsed();
    assert!(stop.status.success(), "podman stop: {}", text(&stop.stderr));
    assert_eq!(
        pm.inspect("container", "{{.State.ExitCode}}"),
        "0",
        "{}",
        logs()
    );
    assert!(
        stop_took < Duration::from_secs(5),
        "stop took {stop_took:?}"
    );
    assert!(logs().contains("SIGTERM received"), "{}", logs());

    eprintln!(
        "scratch image: {image_size} bytes ({:.2} MiB), binary {binary_size} bytes; \
         first 200 on /healthz {:.0} ms after `podman run`; idle RSS after one scrape \
         {rss_kib} KiB; stopped by SIGTERM in {:.0} ms",
        image_size as f64 / 1048576.0,
        cold.as_secs_f64() * 1000.0,
        stop_took.as_secs_f64() * 1000.0
    );
}

/// A few characters that differ between runs in one process id space.
fn cache_buster() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:08x}")
}

/// The instructions of a Dockerfile's last stage, continuation lines joined,
/// comments dropped.
fn final_stage(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file)).expect("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(&format!("{} ", part.trim())),
            None => instructions.push(std::mem::take(&mut current) + line),
        }
    }
    let from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM");
    instructions.split_off(from)
}

/// Dockerfile.multistage cannot be built here (no registry to pull the Rust
/// image from), so its final stage is held to the tested Dockerfile.scratch:
/// the same base, labels, user, port, health check and entry point, and the
/// binary at the same place.
#[test]
fn multistage_final_stage_matches_the_tested_scratch_image() {
    let (scratch, multistage) = (
        final_stage("Dockerfile.scratch"),
        final_stage("Dockerfile.multistage"),
    );
    let copy_target = |stage: &[String]| {
        stage
            .iter()
            .filter(|i| i.starts_with("COPY "))
            .map(|i| i.rsplit(' ').next().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(copy_target(&scratch), vec![IN_IMAGE.to_owned()]);
    assert_eq!(copy_target(&multistage), vec![IN_IMAGE.to_owned()]);
    let rest = |stage: Vec<String>| {
        stage
            .into_iter()
            .filter(|i| !i.starts_with("COPY ") && !i.starts_with("ARG TARGET"))
            .collect::<Vec<_>>()
    };
    assert_eq!(rest(multistage), rest(scratch));
}
