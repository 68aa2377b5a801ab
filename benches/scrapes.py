#!/usr/bin/env python3
"""Footprint and scrape-path figures of the release binary against the fake CLS.

Reports: stripped binary size, RSS after start and after the first refresh,
and the time of N sequential keep-alive scrapes of a fresh cache, as a ratio
to N requests of /healthz (the cheapest route) in the same run.
Loopback only; every loop is bounded. Usage: benches/scrapes.py [N]
"""
import http.client
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def timed(conn, path, n, headers=None):
    start = time.perf_counter()
    for _ in range(n):
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
    return time.perf_counter() - start


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "nvidia-license-server-exporter",
                    "--example", "fake-cls"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target/release/nvidia-license-server-exporter")
    fake = subprocess.Popen([os.path.join(ROOT, "target/release/examples/fake-cls"), "--listen", "127.0.0.1:18199",
                             "--fixture", os.path.join(ROOT, "proto-tests/fixtures/org.json"), "--api-key", "k"],
                            stdout=subprocess.PIPE)
    fake.stdout.readline()
    env = {"NVIDIA_API_KEY": "k", "NVIDIA_ORG_NAME": "lic-demo", "NVIDIA_API_BASE_URL": "http://127.0.0.1:18199",
           "LISTEN_ADDRESS": "127.0.0.1:19944", "LOG_LEVEL": "warn"}
    exporter = subprocess.Popen([exe], env=env)
    try:
        conn = None
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", 19944, timeout=10)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                break
            except OSError:
                conn = None
                time.sleep(0.01)
        assert conn is not None, "exporter did not start"
        rss_start = rss_kib(exporter.pid)
        timed(conn, "/metrics", 1)
        rss_refreshed = rss_kib(exporter.pid)
        timed(conn, "/healthz", 100)
        healthz = timed(conn, "/healthz", N)
        plain = timed(conn, "/metrics", N)
        gzip = timed(conn, "/metrics", N, {"Accept-Encoding": "gzip"})
        size = os.path.getsize(exe)
        print(f"| figure | value |\n|---|---|")
        print(f"| release binary (stripped, glibc) | {size / 1048576:.2f} MiB ({size} bytes) |")
        print(f"| RSS after start | {rss_start / 1024:.1f} MiB |")
        print(f"| RSS after first refresh (fixture org) | {rss_refreshed / 1024:.1f} MiB |")
        print(f"| {N} /healthz requests (baseline) | {healthz * 1000:.0f} ms |")
        print(f"| {N} scrapes, fresh cache | {plain * 1000:.0f} ms ({plain / healthz:.2f}x baseline) |")
        print(f"| {N} gzip scrapes, fresh cache | {gzip * 1000:.0f} ms ({gzip / healthz:.2f}x baseline) |")
    finally:
        exporter.terminate()
        fake.terminate()
        exporter.wait(timeout=10)
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
