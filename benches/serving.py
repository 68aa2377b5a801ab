#!/usr/bin/env python3
"""Serving a fresh cache: the exporter's /metrics against nginx serving the same bytes.

The fake CLS serves a generated medium org (14 groups, 140 servers, 1,400
leases: about 2,000 series, 630 KB of text, 17 KB gzipped); the release
exporter refreshes once (CACHE_TTL 1h, so the cache stays fresh for the whole
run) and one response of each kind is saved. nginx then serves those bytes as
static files (`metrics` and, for gzip_static, `metrics.gz`) with the same
Content-Type and Vary, configured as a careful operator would: sendfile,
tcp_nopush, reuseport, open_file_cache, keepalive_requests high enough that
wrk never reconnects, access log off, gzip_static for the pre-compressed file.

Both servers get 2 workers (the exporter's tokio runtime has one worker per
core; nginx `worker_processes 2`). wrk runs with 1 thread and 64 keep-alive
connections for a bounded time; it shares the 2 cores with the server under
test. The exporter and nginx take turns, plain then gzip, for several rounds;
the figures are medians over rounds:

- requests/s and the p99 latency, from wrk (`--latency`);
- server CPU per request: utime + stime of the server's processes (the
  exporter; nginx's master and workers) over the run, from /proc/PID/stat,
  divided by the requests wrk completed.

Loopback only; every run is bounded in time (wrk -d) and every wait has a
timeout. Usage: benches/serving.py [--rounds N] [--duration S]
[--connections C] [--threads T] [--org G,S,L | --fixture PATH] [--plain-only] [--exporter PATH]
[--musl PATH] [--no-build] [--json]

A bare hyper server (benches/tools/bare_hyper.rs) serving the same bytes
runs in the same turns: the ceiling of hyper on this machine, with nothing
of the exporter on the path. `--musl PATH` adds a second exporter, the
static musl build, refreshed from the same fake.
"""
import argparse
import gzip
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "target/release/nvidia-license-server-exporter")
FAKE = os.path.join(ROOT, "target/release/examples/fake-cls")
BARE = os.path.join(ROOT, "target/release/examples/bare-hyper")
TICK = os.sysconf("SC_CLK_TCK")
ORG = "lic-bench"
KEY = "bench-key"
WORKERS = 2
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin is not on every PATH


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def until_up(port, limit=20.0):
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            if get(port, "/healthz", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {limit} s")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except OSError:
                pass
    return out


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(field + r":\s+(\d+)", f.read()).group(1))


def parse_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, args, gzip_wanted):
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
            "--timeout", "5s"]
    if gzip_wanted:
        argv += ["-H", "Accept-Encoding: gzip"]
    argv.append(f"http://127.0.0.1:{port}/metrics")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=args.duration + 30).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError("wrk saw errors:\n" + out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
    }


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(port, pids, args, gzip_wanted):
    before, client_before = cpu_ticks(pids), children_cpu()
    result = wrk(port, args, gzip_wanted)
    n = max(result["requests"], 1)
    result["cpu_us"] = (cpu_ticks(pids) - before) / TICK * 1e6 / n
    result["client_cpu_us"] = (children_cpu() - client_before) * 1e6 / n
    return result


NGINX_CONF = """\
# One run of benches/serving.py; everything lives in this directory.
daemon off;
master_process on;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    open_file_cache max=16 inactive=600s;
    open_file_cache_valid 600s;
    server_tokens off;
    etag off;
    types {{ }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {dir}/www;
        location = /metrics {{
            default_type "{content_type}";
            gzip_static on;
            add_header Vary "{vary}";
        }}
        location = /healthz {{
            return 200 "ok\\n";
        }}
    }}
}}
"""


def start_nginx(tmp, port, plain_body, gzip_body, headers):
    """nginx in the foreground (`daemon off`) from a config in `tmp`."""
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    for name, body in (("metrics", plain_body), ("metrics.gz", gzip_body)):
        with open(os.path.join(www, name), "wb") as f:
            f.write(body)
    # The workers run as nobody when the master runs as root.
    for path in (tmp, www, os.path.join(www, "metrics"), os.path.join(www, "metrics.gz")):
        os.chmod(path, 0o755)
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(workers=WORKERS, dir=tmp, port=port, content_type=headers["content-type"],
                                  vary=headers["vary"]))
    nginx = subprocess.Popen([NGINX, "-p", tmp, "-c", conf], stdin=subprocess.DEVNULL)
    until_up(port)
    return nginx


SERVERS = ("exporter", "nginx", "bare-hyper")
MUSL = "exporter-musl"


def run(args):
    """Returns a dict of the figures (medians over rounds)."""
    fake_port = free_port()
    ports = {server: free_port() for server in SERVERS}
    source = ["--fixture", args.fixture] if args.fixture else ["--generate", args.org]
    fake = subprocess.Popen([FAKE, "--listen", f"127.0.0.1:{fake_port}", *source, "--org", ORG,
                             "--api-key", KEY, "--page-base", "0"], stdout=subprocess.PIPE, text=True)
    procs = {}
    tmp = tempfile.mkdtemp(prefix="serving-bench-")
    try:
        line = fake.stdout.readline()
        assert "listening" in line, line
        env = {"NVIDIA_API_KEY": KEY, "NVIDIA_ORG_NAME": ORG, "NVIDIA_API_BASE_URL": f"http://127.0.0.1:{fake_port}",
               "LISTEN_ADDRESS": f"127.0.0.1:{ports['exporter']}", "CACHE_TTL": "1h", "LOG_LEVEL": "warn"}
        exporter = procs["exporter"] = subprocess.Popen([args.exporter], env=env, stdin=subprocess.DEVNULL)
        until_up(ports["exporter"])
        status, headers, plain_body = get(ports["exporter"], "/metrics")
        assert status == 200 and b'nvidia_cls_up{org_name="lic-bench"} 1' in plain_body, status
        status, gz_headers, gzip_body = get(ports["exporter"], "/metrics", {"Accept-Encoding": "gzip"})
        assert status == 200 and gz_headers.get("content-encoding") == "gzip", gz_headers
        series = sum(1 for line in gzip.decompress(gzip_body).split(b"\n") if line and not line.startswith(b"#"))
        rss_refreshed = status_kib(exporter.pid, "VmRSS") / 1024
        servers = list(SERVERS)
        if args.musl:
            servers.append(MUSL)
            ports[MUSL] = free_port()
            procs[MUSL] = subprocess.Popen([args.musl], env=dict(env, LISTEN_ADDRESS=f"127.0.0.1:{ports[MUSL]}"),
                                           stdin=subprocess.DEVNULL)
            until_up(ports[MUSL])
            assert get(ports[MUSL], "/metrics")[0] == 200
            rss_refreshed_musl = status_kib(procs[MUSL].pid, "VmRSS") / 1024
        fake.terminate()  # nothing may refresh behind the benchmark's back
        fake.wait(timeout=10)

        # The others serve the bytes of these two responses (scrapes differ
        # only in the live process values) with the same headers.
        procs["nginx"] = start_nginx(tmp, ports["nginx"], plain_body, gzip_body, headers)
        www = os.path.join(tmp, "www")
        procs["bare-hyper"] = subprocess.Popen(
            [BARE, f"127.0.0.1:{ports['bare-hyper']}", os.path.join(www, "metrics"), os.path.join(www, "metrics.gz"),
             headers["content-type"], headers["vary"]], stdin=subprocess.DEVNULL)
        until_up(ports["bare-hyper"])
        for server in ("nginx", "bare-hyper"):
            _, h, body = get(ports[server], "/metrics")
            _, gz_h, gz_body = get(ports[server], "/metrics", {"Accept-Encoding": "gzip"})
            assert body == plain_body and gz_body == gzip_body, f"{server} serves other bytes"
            for name in ("content-type", "vary"):
                assert h[name] == headers[name] and gz_h[name] == gz_headers[name], (server, name)
            assert gz_h.get("content-encoding") == "gzip" and "content-encoding" not in h, server
        pids = {server: [p.pid] for server, p in procs.items()}
        pids["nginx"] += children(procs["nginx"].pid)
        assert len(pids["nginx"]) == WORKERS + 1, pids["nginx"]

        kinds = ("plain",) if args.plain_only else ("plain", "gzip")
        runs = {(server, kind): [] for server in servers for kind in kinds}
        for _ in range(args.rounds):
            for kind in kinds:
                for server in servers:
                    runs[(server, kind)].append(measured(ports[server], pids[server], args, kind == "gzip"))
        out = {
            "org": args.fixture or args.org, "series": series, "plain_bytes": len(plain_body),
            "gzip_bytes": len(gzip_body),
            "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
            "threads": args.threads, "workers": WORKERS,
            "exporter_rss_refreshed_mib": rss_refreshed,
            "exporter_rss_mib": status_kib(exporter.pid, "VmRSS") / 1024,
            "exporter_hwm_mib": status_kib(exporter.pid, "VmHWM") / 1024,
            "servers": servers,
        }
        if args.musl:
            out["exporter-musl_rss_refreshed_mib"] = rss_refreshed_musl
            out["exporter-musl_rss_mib"] = status_kib(procs[MUSL].pid, "VmRSS") / 1024
            out["exporter-musl_hwm_mib"] = status_kib(procs[MUSL].pid, "VmHWM") / 1024
        for (server, kind), results in runs.items():
            for figure in ("rps", "p99_ms", "cpu_us", "client_cpu_us"):
                out[f"{server}_{kind}_{figure}"] = statistics.median(r[figure] for r in results)
                out[f"{server}_{kind}_{figure}_all"] = [round(r[figure], 3) for r in results]
                # The ratio to nginx within each round (the two ran seconds
                # apart), then the median: steadier than a ratio of medians
                # when the machine's load drifts between rounds.
                out[f"{server}_{kind}_{figure}_ratio"] = statistics.median(
                    r[figure] / n[figure] for r, n in zip(results, runs[("nginx", kind)]))
        return out
    finally:
        for server, p in list(procs.items()) + [("fake", fake)]:
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if server == "nginx" else signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--org", default="14,140,1400", help="GROUPS,SERVERS,LEASES of the generated org")
    p.add_argument("--fixture", metavar="PATH", help="serve this org file (proto-tests/fixtures/org.json) instead")
    p.add_argument("--plain-only", action="store_true", help="measure plain responses only, not gzip")
    p.add_argument("--exporter", default=EXPORTER, help="the exporter binary (default: the release build)")
    p.add_argument("--musl", metavar="PATH", help="also measure this exporter binary (the static musl build)")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--locked", "--bin", "nvidia-license-server-exporter",
                    "--example", "fake-cls", "--example", "bare-hyper"], cwd=ROOT, check=True)


def main():
    args = parser().parse_args()
    for tool in ("wrk", NGINX):
        if shutil.which(tool) is None:
            raise SystemExit(f"serving.py: {tool} is missing (scripts/install-deps installs it)")
    if not args.no_build:
        build()
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=1))
        return
    print(f"org {r['org']}: {r['series']} series, {r['plain_bytes']} bytes plain, {r['gzip_bytes']} gzip; "
          f"wrk -t{r['threads']} -c{r['connections']} -d{r['duration_s']}s; {r['workers']} server workers; "
          f"median of {r['rounds']} rounds; ratios: median of the rounds' ratios\n")
    print("| body | server | requests/s | ratio to nginx | p99 | server CPU per request | wrk CPU per request |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind in ("plain", "gzip"):
        for server in r["servers"]:
            k = f"{server}_{kind}"
            if f"{k}_rps" not in r:
                continue
            ratio = r[f"{k}_rps_ratio"]
            print(f"| {kind} | {server} | {r[k + '_rps']:.0f} | {ratio:.2f} | {r[k + '_p99_ms']:.2f} ms | "
                  f"{r[k + '_cpu_us']:.1f} µs | {r[k + '_client_cpu_us']:.1f} µs |")
    print(f"\nexporter RSS after the refresh: {r['exporter_rss_refreshed_mib']:.1f} MiB; after the runs: "
          f"{r['exporter_rss_mib']:.1f} MiB (peak {r['exporter_hwm_mib']:.1f} MiB)")


if __name__ == "__main__":
    main()
