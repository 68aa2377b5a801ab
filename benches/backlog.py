#!/usr/bin/env python3
"""The OTLP backlog of a large org: stored bytes per batch, and how long a
24-hour backlog at a 60 s interval (1,440 batches) takes to drain.

1. The fake CLS generates a large org (about 11,000 series); the release
   exporter pushes over OTLP/HTTP to a port nothing listens on, with
   OTEL_SPOOL_DIR set, until its first batch is in the spool: that file is
   one batch as stored (header + gzip-compressed payload). SIGTERM.
2. The spool is filled with 1,440 copies of that batch, their headers
   rewritten (collection times 60 s apart over the last 24 hours, their own
   sequence numbers, the CRC-32 recomputed), as a day of outage leaves it.
3. A loopback OTLP/HTTP receiver (this script: it reads every body, counts
   its top-level `resource_metrics`, one per batch, and answers 200) comes
   up, and the exporter starts again on the spool. Measured: the time from
   its start until the receiver has every spooled batch, the requests and
   bytes that took, and the slowest /metrics scrape during the drain
   (scraped every 50 ms once the first refresh is published), which the
   replay must not slow.

OTEL_BACKLOG_MAX_AGE and OTEL_BACKLOG_MAX_BYTES are raised for the drain
so that no batch of the synthetic day is dropped; the script also reports
how many hours of this org the default 64 MiB holds. Loopback only; every
wait is bounded.

The drain runs twice: without compression and with gzip (where a batch
that goes alone is sent as stored, and the receiver inflates it).

Usage: benches/backlog.py [--org G,S,L] [--batches N] [--compression none,gzip] [--json]
"""
import argparse
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "target/release/nvidia-license-server-exporter")
FAKE = os.path.join(ROOT, "target/release/examples/fake-cls")
# The spool file format (src/otlp/spool.rs): a 48-byte header, then the payload.
HEADER = struct.Struct("<8sIdQQQ")  # magic, version, time, seq, raw length, payload length
HEADER_LEN = 48
MIB = 1048576


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def listening_port(proc, limit=20.0):
    """The port of the exporter's `listening address=...` log line."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = proc.stderr.readline().decode(errors="replace")
        if "address=" in line:
            return int(line.split("address=")[1].split()[0].strip('"').rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            break
    raise SystemExit("backlog.py: the exporter did not start listening")


def drain_stderr(proc):
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()


def start_exporter(cls_port, otlp_port, spool, extra=()):
    env = {
        "NVIDIA_API_KEY": "k",
        "NVIDIA_ORG_NAME": "lic-bench",
        "NVIDIA_API_BASE_URL": f"http://127.0.0.1:{cls_port}",
        "LISTEN_ADDRESS": "127.0.0.1:0",
        "CACHE_TTL": "1h",
        "SCRAPE_TIMEOUT": "60s",
        "OTEL_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "30000",
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
        "OTEL_SPOOL_DIR": spool,
    }
    env.update(extra)
    proc = subprocess.Popen([EXPORTER], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    port = listening_port(proc)
    drain_stderr(proc)
    return proc, port


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spool_files(spool):
    return sorted(n for n in os.listdir(spool) if n.endswith(".otlp") and not n.startswith("."))


def wait_for(what, predicate, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"backlog.py: {what} within {limit:.0f} s")


def resource_metrics(body):
    """Top-level field 1 (resource_metrics) entries of an encoded request."""
    i, n = 0, 0
    while i < len(body):
        key, i = varint(body, i)
        field, wire = key >> 3, key & 7
        if wire != 2:
            raise ValueError(f"unexpected wire type {wire}")
        length, i = varint(body, i)
        i += length
        n += field == 1
    return n


def varint(data, i):
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port):
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.requests = 0
        self.batches = 0
        self.bytes = 0
        self.last_at = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        wire = len(body)
        if self.headers.get("Content-Encoding") == "gzip":
            body = zlib.decompress(body, 31)
        n = resource_metrics(body)
        with self.server.lock:
            self.server.requests += 1
            self.server.batches += n
            self.server.bytes += wire
            self.server.last_at = time.monotonic()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def fill(spool, data, batches, interval, now):
    """`batches` copies of the spool file `data`, collected `interval`
    seconds apart up to `now`."""
    magic, version, _, _, raw_len, payload_len = HEADER.unpack_from(data)
    payload = data[HEADER_LEN:]
    assert magic == b"NVCLSOTB" and len(payload) == payload_len, "a spool file of format 1"
    for i in range(batches):
        when = now - (batches - 1 - i) * interval
        head = HEADER.pack(magic, version, float(int(when)), i, raw_len, payload_len)
        crc = zlib.crc32(payload, zlib.crc32(head))
        name = f"{int(when) * 1000:015d}-{i:010d}.otlp"
        with open(os.path.join(spool, name), "wb") as f:
            f.write(head + struct.pack("<I", crc) + payload)
    return raw_len


def run(args):
    groups, servers, leases = args.org
    tmp = tempfile.mkdtemp(prefix="backlog-bench-")
    spool = os.path.join(tmp, "spool")
    cls_port = free_port()
    fake = subprocess.Popen([FAKE, "--listen", f"127.0.0.1:{cls_port}", "--api-key", "k",
                             "--generate", f"{groups},{servers},{leases}"], stdout=subprocess.PIPE)
    try:
        fake.stdout.readline()
        # 1. One batch as stored.
        dead = free_port()
        proc, port = start_exporter(cls_port, dead, spool)
        try:
            wait_for("a first batch in the spool", lambda: spool_files(spool), 120)
            _, text = get(port, "/metrics")
        finally:
            stop(proc)
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        files = spool_files(spool)
        template = os.path.join(spool, files[0])
        with open(template, "rb") as f:
            data = f.read()
        for name in files:  # the template, and the last batch of the SIGTERM if any
            os.remove(os.path.join(spool, name))
        result = {
            "org": f"{groups},{servers},{leases}",
            "series": series,
            "stored_bytes_per_batch": len(data),
            "encoded_bytes_per_batch": HEADER.unpack_from(data)[4],
            "batches": args.batches,
            "hours_in_64mib": 64 * MIB / len(data) / 60,
        }
        for compression in args.compression:
            drain = drain_once(args, cls_port, spool, data, compression)
            result.update({f"{compression}_{k}": v for k, v in drain.items()})
        return result
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def drain_once(args, cls_port, spool, data, compression):
    """A day of outage in the spool, then the exporter with a collector."""
    fill(spool, data, args.batches, 60, time.time())
    otlp = free_port()
    receiver = Receiver(otlp)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    started = time.monotonic()
    proc, port = start_exporter(cls_port, otlp, spool, {
        "OTEL_BACKLOG_MAX_AGE": "25h",
        "OTEL_BACKLOG_MAX_BYTES": f"{max(64, 2 * len(data) * args.batches // MIB + 1)}MiB",
        "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
    })
    slowest = 0.0
    try:
        # The first scrape waits for the exporter's first refresh of the
        # large org (single flight with the push's): that is not the
        # replay's doing, so it is not counted.
        get(port, "/metrics", timeout=120)
        deadline = started + 600
        # Every spooled batch, then the live one of this start.
        while receiver.batches < args.batches + 1 and time.monotonic() < deadline:
            t = time.monotonic()
            status, _ = get(port, "/metrics")
            slowest = max(slowest, time.monotonic() - t)
            assert status == 200
            time.sleep(0.05)
        drained = (receiver.last_at or time.monotonic()) - started
        _, text = get(port, "/metrics")
        cpu = cpu_seconds(proc.pid)
    finally:
        stop(proc)
        receiver.shutdown()
        receiver.server_close()
    if receiver.batches < args.batches + 1:
        raise SystemExit(f"backlog.py: {receiver.batches} of {args.batches} batches arrived in 10 minutes")
    dropped = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("nvidia_cls_otlp_backlog_dropped_total{"))
    left = spool_files(spool)
    for name in left:
        os.remove(os.path.join(spool, name))
    return {
        "drain_s": drained,
        "exporter_cpu_s": cpu,
        "requests": receiver.requests,
        "received_bytes": receiver.bytes,
        "received_batches": receiver.batches,
        "slowest_scrape_ms": slowest * 1000,
        "dropped": dropped,
    }


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def org(text):
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected GROUPS,SERVERS,LEASES")
    return parts


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--org", type=org, default=org("80,780,7800"), help="generated org (about 11,000 series)")
    p.add_argument("--batches", type=int, default=1440, help="batches in the backlog (a day at 60 s)")
    p.add_argument("--compression", type=lambda v: v.split(","), default=["none", "gzip"],
                   help="OTEL_EXPORTER_OTLP_COMPRESSION of each drain, comma-separated")
    p.add_argument("--json", action="store_true")
    return p


def main():
    args = parser().parse_args()
    for path in (EXPORTER, FAKE):
        if not os.access(path, os.X_OK):
            raise SystemExit(f"backlog.py: {path} is missing (cargo build --release --bin "
                             "nvidia-license-server-exporter --example fake-cls)")
    r = run(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"org {r['org']}: {r['series']} series; one batch stored {r['stored_bytes_per_batch']:,} bytes "
          f"({r['encoded_bytes_per_batch']:,} encoded); 64 MiB hold {r['hours_in_64mib']:.1f} h at 60 s")
    for c in args.compression:
        print(f"{c}: {r['batches']} batches drained in {r[c + '_drain_s']:.1f} s ({r[c + '_exporter_cpu_s']:.1f} s "
              f"exporter CPU): {r[c + '_requests']} requests, {r[c + '_received_bytes'] / MIB:.0f} MiB; "
              f"slowest /metrics during the drain {r[c + '_slowest_scrape_ms']:.1f} ms")


if __name__ == "__main__":
    main()
