#!/usr/bin/env python3
"""Runs every benchmark and writes the figures to benches/RESULTS.md.

Builds the release binaries (glibc) and the static musl binary, then runs:

- serving (benches/serving.py): wrk against /metrics of a fresh cache of a
  medium org (~2,000 series), plain and gzip, against nginx serving the same
  bytes as static files and a bare hyper server, in turns, several rounds;
  then the same, plain only, for the fixture org (a small org, the common
  case) with wrk -t2 -c32;
- footprint (benches/coldstart.py's cold starts): the static musl binary's
  size and its scratch image's (with podman), RSS after start and after the
  first refresh of the fixture org (a small org), time from exec to the
  first /healthz answer; RSS under the serving benchmark;
- refresh (benches/refresh.py): one refresh of a small and of a large org
  against the critical-path bound, with CPU time and peak RSS;
- encoder (scripts/bench-encoder, when present): its `RESULT encoder` line;
- memory (benches/memory.py), for the glibc and the static musl build: RSS
  after the first refresh of the large org and the peak (VmHWM), RSS after
  50 more refreshes against the first, and RSS after a small org's refresh;
- backlog (benches/backlog.py): the OTLP batch of a large org as stored,
  and the drain of a 24-hour backlog (1,440 batches) into a loopback
  receiver, with the slowest /metrics scrape meanwhile.

Writes a Markdown table (figure | ours | alternative | ratio | target | met?)
with the date, the machine (cores, CPU model, kernel, rustc) and the command.
Loopback only; every step is bounded. About 10 to 12 minutes on 2 cores with
the binaries built, 13 to 14 from a clean clone.

Usage: benches/all.py [--quick] [--output PATH] [--no-build]
  --quick   one short round of everything (to check the script, not for figures)
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

BENCHES = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCHES)
sys.path.insert(0, BENCHES)
sys.dont_write_bytecode = True  # no __pycache__ in the work tree

import backlog  # noqa: E402
import coldstart  # noqa: E402
import memory  # noqa: E402
import refresh  # noqa: E402
import serving  # noqa: E402

MUSL_BIN = coldstart.BIN
MIB = 1048576


def machine():
    with open("/proc/cpuinfo") as f:
        models = re.findall(r"^model name\s*:\s*(.+)$", f.read(), re.M)
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "cores": os.cpu_count(),
        "cpu": models[0] if models else platform.processor() or "unknown",
        "kernel": f"Linux {platform.release()} {platform.machine()}",
        "rustc": rustc,
        "load": load,
    }


class Table:
    def __init__(self):
        self.rows = []

    def add(self, figure, ours, alternative="–", ratio=None, target="–", met=None):
        ratio_text = "–" if ratio is None else f"{ratio:.2f}×"
        met_text = "–" if met is None else ("yes" if met else "**no**")
        self.rows.append((figure, ours, alternative, ratio_text, target, met_text))

    def markdown(self):
        lines = ["| figure | ours | alternative | ratio | target | met? |", "|---|---:|---:|---:|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def step(name):
    print(f"all.py: {name} ...", file=sys.stderr, flush=True)
    return time.monotonic()


def serving_rows(table, notes, quick):
    args = serving.parser().parse_args(
        ["--rounds", "1" if quick else "5", "--duration", "2" if quick else "4", "--musl", MUSL_BIN])
    r = serving.run(args)
    notes.append(
        f"Serving: generated org {r['org']} ({r['series']} series, {r['plain_bytes']:,} bytes plain, "
        f"{r['gzip_bytes']:,} gzip); `wrk -t{r['threads']} -c{r['connections']} -d{r['duration_s']}s --latency`; "
        f"{r['workers']} workers for every server; the exporter is the glibc release build; median of "
        f"{r['rounds']} rounds, servers in turns; a ratio is the median of the rounds' ratios (each round's runs are "
        "seconds apart). Alternative: nginx serving the same bytes (sendfile, tcp_nopush, gzip_static).")
    for kind, target in (("plain", 1.0), ("gzip", 1.2)):
        k, n = f"exporter_{kind}", f"nginx_{kind}"
        ratio = r[f"{k}_rps_ratio"]
        table.add(f"serving {kind}: requests/s", f"{r[k + '_rps']:,.0f}", f"{r[n + '_rps']:,.0f} (nginx)", ratio,
                  f"≥ {target:.1f}× nginx", ratio >= target)
        ratio = r[f"{k}_p99_ms_ratio"]
        table.add(f"serving {kind}: p99 latency", f"{r[k + '_p99_ms']:.2f} ms", f"{r[n + '_p99_ms']:.2f} ms (nginx)",
                  ratio, "≤ nginx", ratio <= 1.0)
        table.add(f"serving {kind}: server CPU per request", f"{r[k + '_cpu_us']:.1f} µs",
                  f"{r[n + '_cpu_us']:.1f} µs (nginx)", r[f"{k}_cpu_us_ratio"], "reported")
        table.add(f"serving {kind}: wrk's CPU per request (the reader's cost)", f"{r[k + '_client_cpu_us']:.1f} µs",
                  f"{r[n + '_client_cpu_us']:.1f} µs (nginx)", r[f"{k}_client_cpu_us_ratio"], "reported")
    for kind in ("plain", "gzip"):
        n = f"nginx_{kind}"
        for server, label in (("bare-hyper", "a bare hyper server (reference)"),
                              ("exporter-musl", "the static musl exporter")):
            k = f"{server}_{kind}"
            table.add(f"serving {kind}: requests/s of {label}", f"{r[k + '_rps']:,.0f}",
                      f"{r[n + '_rps']:,.0f} (nginx)", r[f"{k}_rps_ratio"], "reported")
    return r


def small_serving_rows(table, notes, quick):
    """The common case: a small org (the test fixture), plain, cached."""
    args = serving.parser().parse_args(
        ["--fixture", os.path.join(serving.ROOT, "proto-tests/fixtures/org.json"), "--plain-only", "--threads", "2",
         "--connections", "32", "--rounds", "1" if quick else "3", "--duration", "2" if quick else "5"])
    r = serving.run(args)
    notes.append(
        f"Small-org serving: the test fixture ({r['series']} series, {r['plain_bytes']:,} bytes plain), plain "
        f"only; `wrk -t{r['threads']} -c{r['connections']} -d{r['duration_s']}s`; median of {r['rounds']} rounds "
        "of the rounds' ratios to nginx serving the same bytes; the bare hyper server is the reference.")
    k, n = "exporter_plain", "nginx_plain"
    ratio = r[f"{k}_rps_ratio"]
    table.add("serving plain, small org: requests/s", f"{r[k + '_rps']:,.0f}", f"{r[n + '_rps']:,.0f} (nginx)",
              ratio, "≥ 1.0× nginx", ratio >= 1.0)
    k = "bare-hyper_plain"
    table.add("serving plain, small org: requests/s of a bare hyper server (reference)", f"{r[k + '_rps']:,.0f}",
              f"{r[n + '_rps']:,.0f} (nginx)", r[f"{k}_rps_ratio"], "reported")


def footprint_rows(table, notes, serving_result, quick):
    size = os.path.getsize(MUSL_BIN)
    table.add("static musl binary, stripped", f"{size / MIB:.2f} MiB", ratio=None,
              target="≤ 4 MiB (aim ≤ 3 MiB)", met=size <= 4 * MIB)
    image_row(table)
    coldstart.N = 5 if quick else 20
    cls_port = coldstart.free_port()
    fake = subprocess.Popen([refresh.FAKE, "--listen", f"127.0.0.1:{cls_port}", "--fixture",
                             os.path.join(ROOT, "proto-tests/fixtures/org.json"), "--api-key", "k"],
                            stdout=subprocess.PIPE)
    try:
        fake.stdout.readline()
        times, (idle, refreshed) = coldstart.process_starts([MUSL_BIN], cls_port)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    ms = sorted(t * 1000 for t in times)
    table.add("RSS after start (static musl)", f"{idle / 1024:.1f} MiB")
    table.add("RSS after the first refresh of a small org (fixture; static musl)", f"{refreshed / 1024:.1f} MiB",
              target="≤ 8 MiB", met=refreshed / 1024 <= 8)
    r = serving_result
    table.add("RSS under the serving benchmark, peak (medium org; static musl)",
              f"{r['exporter-musl_hwm_mib']:.1f} MiB")
    table.add("RSS under the serving benchmark, peak (medium org; glibc)", f"{r['exporter_hwm_mib']:.1f} MiB")
    table.add(f"exec to the first /healthz 200 (static musl, median of {len(ms)})", f"{statistics.median(ms):.1f} ms",
              target="≤ 20 ms", met=statistics.median(ms) <= 20)
    notes.append(f"Cold start: worst of {len(ms)} starts {ms[-1]:.1f} ms. RSS is VmRSS, 1 s after the event; "
                 "\"after start\" includes the first refresh, which runs at start (the warm start).")


def image_row(table):
    """The Dockerfile.scratch image of the static binary, as podman sizes it (docs/scratch.md quotes this row)."""
    if not (shutil.which("podman") and (shutil.which("runc") or os.path.exists("/usr/sbin/runc"))):
        table.add("scratch image (Dockerfile.scratch)", "not measured: needs podman and runc")
        return
    subprocess.run(coldstart.PODMAN + ["build", "--layers=false", "--format", "docker", "-f", "Dockerfile.scratch",
                                       "-t", coldstart.IMAGE, "."], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)
    try:
        size = int(subprocess.run(coldstart.PODMAN + ["image", "inspect", "--format", "{{.Size}}", coldstart.IMAGE],
                                  check=True, capture_output=True, text=True, timeout=60).stdout)
    finally:
        subprocess.run(coldstart.PODMAN + ["rmi", "-f", coldstart.IMAGE], capture_output=True, timeout=60)
    table.add("scratch image (Dockerfile.scratch), as podman sizes it", f"{size / MIB:.2f} MiB")


# Growth over the repeated refreshes that still counts as none: the reading
# 1 s after a scrape moves by a few hundred KiB between refreshes (what the
# allocator keeps of the last one), without a trend.
GROWTH_NOISE_MIB = 1.0


def memory_rows(table, notes, quick):
    refreshes = 5 if quick else 50
    for label, binary in (("glibc", memory.EXPORTER), ("static musl", MUSL_BIN)):
        r = memory.run(binary, refreshes)
        table.add(f"memory, large org ({label}): RSS after the first refresh", f"{r['large_rss_mib']:.1f} MiB",
                  target="≤ 20 MiB", met=r["large_rss_mib"] <= 20)
        table.add(f"memory, large org ({label}): peak RSS (VmHWM) of start and first refresh",
                  f"{r['large_hwm_mib']:.1f} MiB", target="≤ 28 MiB", met=r["large_hwm_mib"] <= 28)
        growth = r["repeated_last_rss_mib"] - r["repeated_first_rss_mib"]
        table.add(f"memory, large org ({label}): RSS after {r['refreshes']} refreshes, against after the first",
                  f"{r['repeated_last_rss_mib']:.1f} MiB", f"{r['repeated_first_rss_mib']:.1f} MiB (first)",
                  r["repeated_last_rss_mib"] / r["repeated_first_rss_mib"], "no growth (≤ +1 MiB)",
                  growth <= GROWTH_NOISE_MIB)
        footprint = r["large_rss_mib"] + r["large_memfd_mib"]
        table.add(f"memory, large org ({label}): RSS + the memfds the plain bodies live in (not in RSS)",
                  f"{footprint:.1f} MiB", f"{r['large_memfd_mib']:.1f} MiB in memfds", target="≤ 20 MiB",
                  met=footprint <= 20)
        table.add(f"memory, small org ({label}): RSS after the first refresh", f"{r['small_rss_mib']:.1f} MiB",
                  target="≤ 8 MiB", met=r["small_rss_mib"] <= 8)
    notes.append(
        f"Memory (benches/memory.py): the large org is {memory.LARGE.replace(',', ' / ')} groups/servers/leases "
        "(benches/refresh.py's), paged by 4, 20 ms latency; the repeated refreshes use CACHE_TTL 1s and 2 ms latency, "
        "one scrape after each TTL; VmRSS is read 1 s after a scrape; the small org is the fixture. The glibc build "
        "runs with its allocator settings (docs/memory.md); the profile behind the figures: benches/README.md.")


def refresh_rows(table, notes, quick):
    orgs = (("small", "10,100,1000"), ("large", "100,1000,50000"))
    for name, org in orgs:
        args = refresh.parser().parse_args(["--org", org, "--parallelism", "8", "--runs", "1" if quick else "3"])
        description, rows = refresh.run(args)
        r = rows[0]
        ratio = r["wall_s"] / r["bound_s"]
        notes.append(f"Refresh, {name} org: {description.splitlines()[0]}; PARALLELISM 8 (the default).")
        table.add(f"refresh of a {name} org ({org.replace(',', ' / ')} groups/servers/leases): wall time",
                  f"{r['wall_s'] * 1000:.0f} ms", f"{r['bound_s'] * 1000:.0f} ms (critical-path bound)", ratio,
                  "≤ 1.2× bound", ratio <= 1.2)
        table.add(f"refresh of a {name} org: exporter CPU (user + system)", f"{r['cpu_s'] * 1000:.0f} ms")
        table.add(f"refresh of a {name} org: peak RSS (start + refresh)", f"{r['peak_rss_mib']:.1f} MiB",
                  target="≤ 64 MiB" if name == "large" else "–",
                  met=r["peak_rss_mib"] <= 64 if name == "large" else None)


def encoder_rows(table, notes, quick):
    script = os.path.join(ROOT, "scripts/bench-encoder")
    if not os.access(script, os.X_OK):
        table.add("encoder", "not run: scripts/bench-encoder is missing")
        return
    argv = [script] + (["--quick"] if quick else [])
    try:
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=420)
    except subprocess.TimeoutExpired:
        table.add("encoder", "not run: scripts/bench-encoder took over 7 minutes")
        return
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT encoder ")), None)
    if out.returncode != 0 or line is None:
        table.add("encoder", f"not run: scripts/bench-encoder exited {out.returncode} without a RESULT line")
        return
    values = dict(item.split("=", 1) for item in line.split()[2:] if "=" in item)
    per_series = {k[: -len("_ns_per_series")]: float(v) for k, v in values.items() if k.endswith("_ns_per_series")}
    alternatives = {k: per_series[k] for k in ("prometheus_client", "prometheus") if k in per_series}
    labels = {"ours": "render of a refresh part", "ours_once": "a one-off encode (escaping included)"}
    for key, label in labels.items():
        if key not in per_series:
            continue
        ns = per_series[key]
        if not alternatives:
            table.add(f"encoder, {label}: time per series", f"{ns:.1f} ns")
            continue
        alt_key, alt_ns = min(alternatives.items(), key=lambda kv: kv[1])
        if key == "ours" and "target" in values:
            target, met = f"≥ {values['target']}× faster", alt_ns / ns >= float(values["target"])
        else:
            target, met = "reported", None
        table.add(f"encoder, {label}: time per series ({values.get('series', '?')} series)", f"{ns:.1f} ns",
                  f"{alt_ns:.1f} ns ({alt_key.replace('_', '-')})", alt_ns / ns, target, met)
    notes.append("Encoder: `scripts/bench-encoder` " + line[len("RESULT encoder "):] + " (ratio: speed-up).")


def backlog_rows(table, notes, quick):
    args = backlog.parser().parse_args(["--batches", "100" if quick else "1440"])
    r = backlog.run(args)
    table.add(f"OTLP backlog: one batch of a large org ({r['series']:,} series) as stored",
              f"{r['stored_bytes_per_batch'] / 1024:.0f} KiB", f"{r['encoded_bytes_per_batch'] / 1024:.0f} KiB (encoded)",
              r["stored_bytes_per_batch"] / r["encoded_bytes_per_batch"], "reported")
    table.add("OTLP backlog: hours of that org at 60 s in the default 64 MiB", f"{r['hours_in_64mib']:.1f} h")
    for c in args.compression:
        label = "without compression" if c == "none" else "with gzip"
        table.add(f"OTLP backlog: drain of {r['batches']:,} batches (a day at 60 s), {label}",
                  f"{r[c + '_drain_s']:.1f} s", target="≤ 5 min", met=r[c + "_drain_s"] <= 300)
        table.add(f"OTLP backlog: slowest /metrics scrape during that drain", f"{r[c + '_slowest_scrape_ms']:.1f} ms",
                  target="≤ 100 ms", met=r[c + "_slowest_scrape_ms"] <= 100)
        notes.append(
            f"OTLP backlog, {label}: {r[c + '_requests']} requests, {r[c + '_received_bytes'] / MIB:,.0f} MiB on the "
            f"wire, {r[c + '_dropped']:.0f} batches dropped, {r[c + '_exporter_cpu_s']:.1f} s of exporter CPU "
            "(its first refresh included).")
    notes.append(
        f"OTLP backlog: generated org {r['org']}; one batch from the release exporter's spool, copied into "
        f"{r['batches']} spool files 60 s apart; OTLP/HTTP to a Python receiver on loopback that inflates and "
        "counts every batch; /metrics scraped every 50 ms during the drain, once the first refresh is published.")


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--locked", "--bin", "nvidia-license-server-exporter",
                    "--example", "fake-cls", "--example", "bare-hyper"], cwd=ROOT, check=True)
    subprocess.run([os.path.join(ROOT, "scripts/build-musl")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one short round of everything, to check the script")
    p.add_argument("--output", default=os.path.join(BENCHES, "RESULTS.md"))
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    for tool in ("wrk", serving.NGINX):
        if shutil.which(tool) is None:
            raise SystemExit(f"all.py: {tool} is missing (scripts/install-deps installs it)")
    started = time.monotonic()
    when = datetime.datetime.now(datetime.timezone.utc)
    host = machine()
    table, notes, timings = Table(), [], {}
    if not args.no_build:
        t = step("build")
        build()
        timings["build"] = time.monotonic() - t
    t = step("serving")
    serving_result = serving_rows(table, notes, args.quick)
    small_serving_rows(table, notes, args.quick)
    timings["serving"] = time.monotonic() - t
    t = step("footprint")
    footprint_rows(table, notes, serving_result, args.quick)
    timings["footprint"] = time.monotonic() - t
    t = step("refresh")
    refresh_rows(table, notes, args.quick)
    timings["refresh"] = time.monotonic() - t
    t = step("memory")
    memory_rows(table, notes, args.quick)
    timings["memory"] = time.monotonic() - t
    t = step("encoder")
    encoder_rows(table, notes, args.quick)
    timings["encoder"] = time.monotonic() - t
    t = step("backlog")
    backlog_rows(table, notes, args.quick)
    timings["backlog"] = time.monotonic() - t
    total = time.monotonic() - started

    command = "benches/all.py" + (" --quick" if args.quick else "") + (" --no-build" if args.no_build else "")
    doc = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {when:%Y-%m-%d %H:%M} UTC in {total / 60:.1f} minutes "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())}).",
        "",
        f"Machine: {host['cores']} cores, {host['cpu']}; {host['kernel']}; {host['rustc']}; "
        f"load average at the start {host['load']} (other work shares the machine: compare the ratios, "
        "which are measured side by side in the same run, not the absolute figures).",
        "",
        table.markdown(),
        "",
        "Ratios: ours / alternative (for the encoder, alternative / ours: the speed-up). "
        "How each figure is measured, what the profiles showed, and why a target is not met: "
        "benches/README.md (serving.py, Targets; Footprint).",
        "",
    ] + [f"- {n}" for n in notes] + [
        "",
        "Every serving run, per round (requests/s, p99 ms, server CPU µs per request):",
        "",
        "```",
    ] + [f"{k[:-4]:<32} {v}" for k, v in serving_result.items()
         if k.endswith(("_rps_all", "_p99_ms_all", "_cpu_us_all")) and "client" not in k] + [
        "```",
        "",
    ]
    with open(args.output, "w") as f:
        f.write("\n".join(doc))
    print("\n".join(doc))
    print(f"all.py: wrote {os.path.relpath(args.output, ROOT)} in {total / 60:.1f} minutes", file=sys.stderr)


if __name__ == "__main__":
    main()
