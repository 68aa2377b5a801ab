#!/usr/bin/env python3
"""Resident memory of the exporter over refreshes of a large and a small org.

For one exporter binary (the glibc release build or the static musl build):

- large org (benches/refresh.py's: 100 groups, 1,000 servers, 50,000
  leases, paged answers of 4, 20 ms latency): VmRSS 1 s after the first
  refresh (the first /metrics scrape) and VmHWM, the peak of the start and
  that refresh;
- the same org refreshed 50 more times (CACHE_TTL 1s, one scrape after each
  TTL, 2 ms latency so that the run stays short): VmRSS 1 s after the last,
  against the first: the growth;
- the bytes in its memfds then (the large plain bodies, which live there
  and are sent with sendfile; memory a container is charged for, but in no
  RSS figure until read);
- the fixture org (proto-tests/fixtures/org.json, a small org): VmRSS 1 s
  after its first refresh.

Loopback only; every wait is bounded.

Usage: benches/memory.py [--exporter BIN] [--refreshes N] [--json]
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "target/release/nvidia-license-server-exporter")
FAKE = os.path.join(ROOT, "target/release/examples/fake-cls")
FIXTURE = os.path.join(ROOT, "proto-tests/fixtures/org.json")
LARGE = "100,1000,50000"
MIB = 1024.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def status(pid):
    """VmRSS and VmHWM in MiB."""
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    return {k: int(re.search(k + r":\s+(\d+)", text).group(1)) / MIB for k in ("VmRSS", "VmHWM")}


def memfd_mib(pid):
    """MiB in the process's memfds (the large plain bodies, sent with
    sendfile): memory too, but in no RSS figure until a reader touches it."""
    total = 0
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        try:
            if os.readlink(os.path.join(fds, fd)).startswith("/memfd:"):
                total += os.stat(os.path.join(fds, fd)).st_size
        except OSError:
            pass  # closed meanwhile
    return total / MIB / 1024


def fake_cls(args):
    port = free_port()
    argv = [FAKE, "--listen", f"127.0.0.1:{port}", "--api-key", "bench-key"] + args
    fake = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    line = fake.stdout.readline()
    if "listening" not in line:
        fake.kill()
        raise SystemExit(f"memory.py: the fake CLS did not start: {line!r}")
    return fake, port


def exporter(binary, cls_port, org, ttl, page_size):
    port = free_port()
    env = {
        "NVIDIA_API_KEY": "bench-key",
        "NVIDIA_ORG_NAME": org,
        "NVIDIA_API_BASE_URL": f"http://127.0.0.1:{cls_port}",
        "LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "CLS_PAGE_SIZE": str(page_size),
        "SCRAPE_TIMEOUT": "120s",
        "CACHE_TTL": ttl,
        "LOG_LEVEL": "warn",
    }
    proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if get(port, "/healthz", 1)[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise SystemExit("memory.py: the exporter did not start")


def scrape(port, org):
    st, body = get(port, "/metrics", 300)
    if st != 200 or f'nvidia_cls_up{{org_name="{org}"}} 1'.encode() not in body:
        raise SystemExit(f"memory.py: the refresh failed (HTTP {st})")


def large(binary, latency_ms, refreshes):
    """(RSS 1 s after the first refresh, its VmHWM, RSS 1 s after the last,
    the memfd bytes after the first)."""
    fake, cls_port = fake_cls(["--generate", LARGE, "--org", "lic-bench", "--latency-ms",
                               str(latency_ms), "--page-base", "0"])
    try:
        proc, port = exporter(binary, cls_port, "lic-bench", "1s" if refreshes else "1h", 4)
        try:
            scrape(port, "lic-bench")
            time.sleep(1)
            first = status(proc.pid)
            first["memfd"] = memfd_mib(proc.pid)
            for _ in range(refreshes):
                time.sleep(1.1)
                scrape(port, "lic-bench")
            time.sleep(1)
            last = status(proc.pid)
            return first["VmRSS"], first["VmHWM"], last["VmRSS"], first["memfd"]
        finally:
            proc.kill()
            proc.wait(timeout=10)
    finally:
        fake.kill()
        fake.wait(timeout=10)


def small(binary):
    fake, cls_port = fake_cls(["--fixture", FIXTURE])
    try:
        proc, port = exporter(binary, cls_port, "lic-demo", "1h", 100)
        try:
            scrape(port, "lic-demo")
            time.sleep(1)
            return status(proc.pid)["VmRSS"]
        finally:
            proc.kill()
            proc.wait(timeout=10)
    finally:
        fake.kill()
        fake.wait(timeout=10)


def run(binary, refreshes=50):
    rss, hwm, _, memfd = large(binary, 20, 0)
    first, _, last, _ = large(binary, 2, refreshes)
    return {
        "large_rss_mib": rss,
        "large_hwm_mib": hwm,
        "large_memfd_mib": memfd,
        "repeated_first_rss_mib": first,
        "repeated_last_rss_mib": last,
        "refreshes": refreshes + 1,
        "small_rss_mib": small(binary),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exporter", default=EXPORTER)
    p.add_argument("--refreshes", type=int, default=50)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    r = run(a.exporter, a.refreshes)
    if a.json:
        print(json.dumps(r))
        return
    print(f"large org, first refresh: RSS {r['large_rss_mib']:.1f} MiB, VmHWM {r['large_hwm_mib']:.1f} MiB, "
          f"memfd bodies {r['large_memfd_mib']:.1f} MiB (RSS + memfd {r['large_rss_mib'] + r['large_memfd_mib']:.1f})")
    print(f"large org, {r['refreshes']} refreshes: RSS {r['repeated_first_rss_mib']:.1f} → "
          f"{r['repeated_last_rss_mib']:.1f} MiB")
    print(f"small org, first refresh: RSS {r['small_rss_mib']:.1f} MiB")


if __name__ == "__main__":
    main()
