#!/usr/bin/env python3
"""Footprint of the static musl binary and the FROM-scratch image.

Reports: the stripped static binary's size, the image's size, resident memory
(idle after start, and idle after a refresh of the fixture org), and the cold
start: the time from exec (or from `podman run`) to the first 200 on /healthz,
as the median and the worst of N starts. Three ways to start it: the binary
directly, the binary alone in an empty directory entered with chroot (needs
root), and the Dockerfile.scratch image under podman (needs podman and runc).
A way whose tools are missing is reported as skipped.

Loopback only (the fake CLS and the exporter listen on 127.0.0.1; the
container uses the host network); every wait is bounded.
Usage: benches/coldstart.py [N]   (default 20)
"""
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 20  # starts per way; the first argument when run as a script
BIN = os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/nvidia-license-server-exporter")
IMAGE = "localhost/nvidia-license-server-exporter:coldstart-bench"
PODMAN = ["podman", "--runtime", "runc"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz_status(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def until_healthy(port, started, limit=20.0):
    while time.perf_counter() - started < limit:
        if healthz_status(port) == 200:
            return time.perf_counter() - started
        time.sleep(0.001)
    raise RuntimeError(f"no 200 on /healthz within {limit} s")


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    assert r.status == 200 and 'nvidia_cls_up{org_name="lic-demo"} 1' in body, r.status


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def env(cls_port, port):
    return {"NVIDIA_API_KEY": "k", "NVIDIA_ORG_NAME": "lic-demo",
            "NVIDIA_API_BASE_URL": f"http://127.0.0.1:{cls_port}",
            "LISTEN_ADDRESS": f"127.0.0.1:{port}", "LOG_LEVEL": "warn"}


def process_starts(argv, cls_port):
    """N cold starts of a local process; RSS figures from the last one."""
    times, rss = [], None
    for i in range(N):
        port = free_port()
        started = time.perf_counter()
        p = subprocess.Popen(argv, env=env(cls_port, port), stdin=subprocess.DEVNULL)
        try:
            times.append(until_healthy(port, started))
            if i == N - 1:
                time.sleep(1)
                idle = rss_kib(p.pid)
                scrape(port)
                time.sleep(1)
                rss = (idle, rss_kib(p.pid))
        finally:
            p.terminate()
            p.wait(timeout=10)
    return times, rss


def podman_starts(cls_port):
    """N cold starts of the image with `podman run -d`; RSS from the last one."""
    nofile = subprocess.run(["bash", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip()
    times, rss = [], None
    for i in range(N):
        port = free_port()
        name = f"coldstart-bench-{os.getpid()}-{i}"
        argv = PODMAN + ["run", "-d", "--name", name, "--network", "host", "--read-only",
                         "--read-only-tmpfs=false", "--ulimit", f"nofile={nofile}:{nofile}",
                         "--ulimit", "nproc=32768:32768"]
        for k, v in env(cls_port, port).items():
            argv += ["-e", f"{k}={v}"]
        started = time.perf_counter()
        subprocess.run(argv + [IMAGE], check=True, capture_output=True, timeout=60)
        try:
            times.append(until_healthy(port, started))
            if i == N - 1:
                pid = subprocess.run(PODMAN + ["inspect", "--format", "{{.State.Pid}}", name],
                                     check=True, capture_output=True, text=True, timeout=30).stdout.strip()
                time.sleep(1)
                idle = rss_kib(pid)
                scrape(port)
                time.sleep(1)
                rss = (idle, rss_kib(pid))
        finally:
            subprocess.run(PODMAN + ["rm", "-f", "-t", "10", name], capture_output=True, timeout=60)
    return times, rss


def row(label, times, rss):
    ms = sorted(t * 1000 for t in times)
    print(f"| {label} | {statistics.median(ms):.1f} ms | {ms[-1]:.1f} ms | "
          f"{rss[0] / 1024:.1f} MiB | {rss[1] / 1024:.1f} MiB |")


def main():
    global N
    if len(sys.argv) > 1:
        N = int(sys.argv[1])
    subprocess.run([os.path.join(ROOT, "scripts/build-musl")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "fake-cls"], cwd=ROOT, check=True)
    cls_port = free_port()
    fake = subprocess.Popen([os.path.join(ROOT, "target/release/examples/fake-cls"), "--listen",
                             f"127.0.0.1:{cls_port}", "--fixture",
                             os.path.join(ROOT, "proto-tests/fixtures/org.json"), "--api-key", "k"],
                            stdout=subprocess.PIPE)
    fake.stdout.readline()
    image_size = None
    try:
        size = os.path.getsize(BIN)
        print(f"static binary: {size} bytes ({size / 1048576:.2f} MiB)\n")
        print(f"| {N} cold starts | median to first /healthz 200 | worst | RSS idle | RSS after a refresh |")
        print("|---|---|---|---|---|")
        row("binary, directly", *process_starts([BIN], cls_port))
        if os.geteuid() == 0 and shutil.which("chroot"):
            with tempfile.TemporaryDirectory() as root:
                shutil.copy(BIN, os.path.join(root, "nvidia-license-server-exporter"))
                row("binary alone in an empty chroot",
                    *process_starts([shutil.which("chroot"), root, "/nvidia-license-server-exporter"], cls_port))
        else:
            print("| empty chroot | skipped: needs root | | | |")
        if shutil.which("podman") and (shutil.which("runc") or os.path.exists("/usr/sbin/runc")):
            subprocess.run(PODMAN + ["build", "--layers=false", "--format", "docker", "-f", "Dockerfile.scratch",
                                     "-t", IMAGE, "."], cwd=ROOT, check=True, capture_output=True, timeout=300)
            try:
                image_size = int(subprocess.run(PODMAN + ["image", "inspect", "--format", "{{.Size}}", IMAGE],
                                                check=True, capture_output=True, text=True).stdout)
                row("scratch image, `podman run -d` (runc)", *podman_starts(cls_port))
            finally:
                subprocess.run(PODMAN + ["rmi", "-f", IMAGE], capture_output=True, timeout=60)
        else:
            print("| scratch image | skipped: needs podman and runc | | | |")
        if image_size is not None:
            print(f"\nscratch image: {image_size} bytes ({image_size / 1048576:.2f} MiB)")
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
