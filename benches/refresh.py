#!/usr/bin/env python3
"""Wall time, peak memory and CPU of one refresh of a large org.

Runs the fake CLS (release build of the `fake-cls` example) with a generated
org -- by default 100 virtual groups, 1,000 license servers (10 per group,
each on its own service instance), 50,000 leases -- answering every request
after a fixed latency, with paged list endpoints, and the release exporter
against it. For each PARALLELISM, one refresh (the first /metrics scrape) is
measured:

- wall time: `nvidia_cls_scrape_duration_seconds` (the refresh itself);
- the critical-path lower bound for that PARALLELISM: the larger of the
  longest dependency chain (pages of groups, then the pages of the last
  group's servers, then one pool or lease call, each one latency long) and
  requests x latency / PARALLELISM, with the request count read back from
  `nvidia_cls_api_requests_total`; the ratio wall / bound (target <= 1.2);
- peak RSS of the exporter (VmHWM of a fresh process, so the peak of its
  start and this refresh; target <= 64 MiB);
- CPU time (user + system) the exporter spent in the refresh, and the fake's.

The fake answers a little slower than its nominal latency (timer rounding,
building the JSON), so the script also times each kind of request alone on
an idle fake and reports a second ratio against the bound computed with
those measured latencies: what remains above 1 there is the exporter's own
doing (scheduling, parsing, building the snapshot) or CPU contention. The
fake and the exporter share the machine's CPUs. Loopback only; every wait
is bounded.

Usage: benches/refresh.py [--org G,S,L] [--latency-ms N] [--page-size N]
                          [--parallelism P1,P2,...] [--runs N]
"""
import argparse
import http.client
import math
import os
import re
import socket
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "target/release/nvidia-license-server-exporter")
FAKE = os.path.join(ROOT, "target/release/examples/fake-cls")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024


def get(port, path, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def samples(text, name):
    """(labels, value) of every sample of `name`."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line.rpartition(" ")
            out.append((labels, float(value)))
    return out


ENDPOINTS = ["virtual_groups", "license_servers", "license_pools", "leases"]


def calibrate(fake_port, n=15):
    """Median time of one request of each kind on an idle fake, in seconds."""
    sid = "sid-000000"  # server 0: group 1, on the first page of its group
    paths = {
        "virtual_groups": "/virtual-groups?page-size=4&detailedView=true",
        "license_servers": "/virtual-groups/1/license-servers?page-size=4",
        "license_pools": "/virtual-groups/1/license-servers/00000001-0000-4000-8000-000000000000/license-pools?page-size=4",
        "leases": "/virtual-groups/1/leases?page-size=4",
    }
    conn = http.client.HTTPConnection("127.0.0.1", fake_port, timeout=10)
    out = {}
    try:
        for endpoint, path in paths.items():
            times = []
            for _ in range(n):
                started = time.perf_counter()
                conn.request("GET", "/v1/org/lic-bench" + path,
                             headers={"x-api-key": "bench-key", "x-nv-service-instance-id": sid})
                r = conn.getresponse()
                r.read()
                assert r.status == 200, (path, r.status)
                times.append(time.perf_counter() - started)
            out[endpoint] = statistics.median(times)
    finally:
        conn.close()
    return out


def one_refresh(args, fake_port, parallelism):
    port = free_port()
    env = {
        "NVIDIA_API_KEY": "bench-key",
        "NVIDIA_ORG_NAME": "lic-bench",
        "NVIDIA_API_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "PARALLELISM": str(parallelism),
        "CLS_PAGE_SIZE": str(args.page_size),
        "SCRAPE_TIMEOUT": "120s",
        "CACHE_TTL": "1h",
        "LOG_LEVEL": "warn",
    }
    exporter = subprocess.Popen([EXPORTER], env=env)
    try:
        for _ in range(500):
            try:
                if get(port, "/healthz", 1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.01)
        else:
            raise SystemExit("the exporter did not start")
        cpu_before = cpu_seconds(exporter.pid)
        status, text = get(port, "/metrics", 180)
        cpu = cpu_seconds(exporter.pid) - cpu_before
        rss = peak_rss_mib(exporter.pid)
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
    assert status == 200, status
    up = samples(text, "nvidia_cls_up")
    assert up and up[0][1] == 1, f"refresh failed: {up}"
    servers = len(samples(text, "nvidia_cls_license_server_info"))
    leases = sum(v for _, v in samples(text, "nvidia_cls_license_server_active_leases"))
    assert (servers, leases) == (args.servers, args.leases), (servers, leases)
    wall = samples(text, "nvidia_cls_scrape_duration_seconds")[0][1]
    requests = {e: 0 for e in ENDPOINTS}
    for labels, v in samples(text, "nvidia_cls_api_requests_total"):
        requests[re.search(r'endpoint="(\w+)"', labels).group(1)] += int(v)
    return wall, requests, rss, cpu


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--org", default="100,1000,50000", help="GROUPS,SERVERS,LEASES")
    p.add_argument("--latency-ms", type=int, default=20)
    p.add_argument("--page-size", type=int, default=4)
    p.add_argument("--parallelism", default="8,32,64,128")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--no-build", action="store_true")
    return p


def run(args):
    """Measures every PARALLELISM of `args`; returns (description, rows), a
    row being a dict of the figures (medians of the runs, peak RSS the
    largest)."""
    args.groups, args.servers, args.leases = map(int, args.org.split(","))
    latency = args.latency_ms / 1000
    # Longest chain: every page of groups, then every page of the last
    # group's servers (the generator spreads servers evenly), then one pool
    # or lease call (those are not paged by the fake).
    group_pages = math.ceil(args.groups / args.page_size)
    server_pages = math.ceil(math.ceil(args.servers / args.groups) / args.page_size)
    chain = group_pages + server_pages + 1

    def bound(per_request, requests, parallelism):
        """Critical-path lower bound, given the time of one request by endpoint."""
        longest = (group_pages * per_request["virtual_groups"] + server_pages * per_request["license_servers"]
                   + max(per_request["license_pools"], per_request["leases"]))
        work = sum(requests[e] * per_request[e] for e in ENDPOINTS)
        return max(longest, work / parallelism)

    fake_port = free_port()
    fake = subprocess.Popen([FAKE, "--listen", f"127.0.0.1:{fake_port}", "--generate", args.org,
                             "--org", "lic-bench", "--api-key", "bench-key", "--latency-ms",
                             str(args.latency_ms), "--page-base", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = fake.stdout.readline()
        assert "listening" in line, line
        measured = calibrate(fake_port)
        nominal = {e: latency for e in ENDPOINTS}
        description = (
            f"org: {args.groups} groups, {args.servers} servers, {args.leases} leases; "
            f"latency {args.latency_ms} ms; page size {args.page_size}; "
            f"longest chain {chain} requests ({group_pages} group pages + {server_pages} server pages + 1); "
            f"median of {args.runs} runs\n"
            "one request alone on the idle fake: "
            + ", ".join(f"{e} {measured[e] * 1000:.1f} ms" for e in ENDPOINTS))
        rows = []
        for parallelism in map(int, args.parallelism.split(",")):
            runs = []
            for _ in range(args.runs):
                fake_cpu = cpu_seconds(fake.pid)
                wall, requests, rss, cpu = one_refresh(args, fake_port, parallelism)
                runs.append((wall, requests, rss, cpu, cpu_seconds(fake.pid) - fake_cpu))
            requests = runs[0][1]
            assert all(r[1] == requests for r in runs), [r[1] for r in runs]
            rows.append({
                "parallelism": parallelism,
                "requests": sum(requests.values()),
                "bound_s": bound(nominal, requests, parallelism),
                "measured_bound_s": bound(measured, requests, parallelism),
                "wall_s": statistics.median(r[0] for r in runs),
                "peak_rss_mib": max(r[2] for r in runs),
                "cpu_s": statistics.median(r[3] for r in runs),
                "fake_cpu_s": statistics.median(r[4] for r in runs),
            })
        return description, rows
    finally:
        fake.terminate()
        fake.wait(timeout=10)


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "nvidia-license-server-exporter",
                    "--example", "fake-cls"], cwd=ROOT, check=True)


def main():
    args = parser().parse_args()
    if not args.no_build:
        build()
    description, rows = run(args)
    print(description + "\n")
    print("| PARALLELISM | requests | lower bound | refresh wall time | ratio | ratio to measured-latency bound "
          "| peak RSS | exporter CPU | fake CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        wall = r["wall_s"]
        ratio = lambda b: f"{wall / b:.2f}" if b > 0 else "-"  # noqa: E731 (no latency: no bound)
        print(f"| {r['parallelism']} | {r['requests']} | {r['bound_s'] * 1000:.0f} ms | {wall * 1000:.0f} ms | "
              f"{ratio(r['bound_s'])} | {ratio(r['measured_bound_s'])} | {r['peak_rss_mib']:.1f} MiB | "
              f"{r['cpu_s'] * 1000:.0f} ms | {r['fake_cpu_s'] * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
