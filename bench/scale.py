"""Scale benchmark: the cost of 1, 10, 100 and 500 targets in one daemon; prints a table.

Run: .venv/bin/python bench/scale.py [--targets 1,10,100,500] [--window 40] [--exe PATH]

``--exe``: the ``secretwarden`` whose daemon is measured (``make bench`` passes
``.venv-release/bin/secretwarden``: the lock's runtime dependencies only, as a user
installs it; the dev venv's tools add imports, e.g. structlog loads rich when present).

For each size, a real ``secretwarden run`` subprocess against a ``secretwarden sandbox``
subprocess (so the sandbox's memory and CPU are not counted). Every target is the
sandbox's portal under its own name: the sandbox serves one tenant per process and the
daemon one cloud (one authority and CA), so "several tenants in one daemon" cannot be
built from several sandboxes; the targets are independent in the daemon (their own SDK
clients, schedules, series, tokens) and read the same app, vault and site.

Measured per size, after ``/-/ready``:

- start-up: exec to the first 200 from ``/-/ready`` (every probe of every target ran once);
- RSS: ``VmRSS`` at the end of the window;
- CPU s/h and Azure requests/h/target: the daemon runs with every probe interval divided
  by ``speed`` (60 up to 10 targets, 600/targets beyond, so that neither the sandbox nor
  the daemon saturates a core); over a window of wall time (``--window``, stretched so
  that it covers the longest default interval once, at most 300 s) the daemon's CPU
  (utime+stime from /proc) and the sandbox's request counters (entra, graph, keyvault,
  arm) are read before and after, then scaled to one hour at the default intervals:
  ``x * 3600 / (window * speed)``. CPU per probe run does not depend on the interval,
  so this overstates only the idle loop's share. Where the window covers less than the
  longest interval (500 targets) requests/h is a partial count (marked ``~``);
- /metrics: size in bytes and series (samples) once the window ends, and the latency of
  200 scrapes (p50 and p99; 20 at 100 targets and more) taken one after another.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sandbox_proc import start_sandbox  # bench/ is on sys.path, as for table.py
from table import print_columns

from daemon.config import ProbesSection
from daemon.sandbox_config import sandbox_config_toml, write_secret_file

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "secretwarden"  # --exe overrides it
PROBES = ("expiry", "health", "graph", "reference")
AZURE_SERVICES = ("entra", "graph", "keyvault", "arm")
SCRAPES = 200  # fewer for the biggest sizes (a scrape of 500 targets took seconds)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def config_for(describe: dict[str, Any], tmp: Path, targets: int, speed: float) -> Path:
    """A daemon config with ``targets`` targets (t0000...), intervals divided by ``speed``."""
    defaults = ProbesSection()
    intervals = {p: defaults.schedule(p).interval_seconds / speed for p in PROBES}
    secret = tmp / "operator-secret"
    write_secret_file(secret, describe["operator"]["client_secret"])
    text = sandbox_config_toml(
        describe,
        state_directory=tmp / "state",
        secret_file=secret,
        listen_address=f"127.0.0.1:{free_port()}",
        target_name="t0000",
        intervals=intervals,
        retry_total=1,
    )
    head, block = text.split("[[targets]]", 1)
    blocks = [
        "[[targets]]" + re.sub(r'name = "t0000"', f'name = "t{i:04d}"', block, count=1)
        for i in range(targets)
    ]
    config = tmp / "sw.toml"
    config.write_text(head + "".join(blocks))
    return config


def counted(client: httpx.Client, admin: str) -> int:
    counters = client.get(admin + "state").json()["counters"]
    return sum(sum(counters.get(s, {}).values()) for s in AZURE_SERVICES)


def measure(targets: int, window: float, exe: Path = EXE) -> dict[str, float]:
    # Keep the sandbox's load about constant: ~60x for a handful of targets, less for many.
    speed = max(1.0, min(60.0, 600.0 / targets))
    longest = max(ProbesSection().schedule(p).interval_seconds for p in PROBES)
    window = min(300.0, max(window, longest / speed))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sandbox, describe = start_sandbox(tmp)
        try:
            client = httpx.Client(verify=describe["ca_file"], timeout=30)
            admin = describe["admin_url"]
            client.post(admin + "faults", json={"app_sync_interval_seconds": 0.0})
            config = config_for(describe, tmp, targets, speed)
            listen = re.search(r'listen_address = "([^"]+)"', config.read_text())
            assert listen is not None
            base = f"http://{listen.group(1)}"
            log = (tmp / "daemon.log").open("w")
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [str(exe), "run", "--config.file", str(config), "--log.level", "warning"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            try:
                while True:
                    try:
                        if httpx.get(base + "/-/ready", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if proc.poll() is not None or time.perf_counter() - t0 > 600:
                        raise RuntimeError(
                            "daemon not ready: " + (tmp / "daemon.log").read_text()[-2000:]
                        )
                    time.sleep(0.02)
                ready = time.perf_counter() - t0
                cpu0, req0, w0 = cpu_seconds(proc.pid), counted(client, admin), time.monotonic()
                time.sleep(window)
                cpu1, req1, w1 = cpu_seconds(proc.pid), counted(client, admin), time.monotonic()
                rss = proc_status(proc.pid, "VmRSS") / 1024
                body = httpx.get(base + "/metrics", timeout=120).text
                series = sum(len(f.samples) for f in text_string_to_metric_families(body))
                times = []
                with httpx.Client(timeout=120) as scraper:
                    for _ in range(max(20, SCRAPES * 10 // max(targets, 10))):
                        t = time.perf_counter()
                        scraper.get(base + "/metrics").raise_for_status()
                        times.append(time.perf_counter() - t)
            finally:
                proc.terminate()
                proc.wait(30)
                log.close()
        finally:
            sandbox.terminate()
            sandbox.wait(30)
    per_hour = 3600 / ((w1 - w0) * speed)
    times.sort()
    return {
        "targets": targets,
        "speed": speed,
        "partial": float(window * speed < longest),
        "ready": ready,
        "rss": rss,
        "cpu_h": (cpu1 - cpu0) * per_hour,
        "req_h_target": (req1 - req0) * per_hour / targets,
        "size": len(body.encode()),
        "series": series,
        "p50": statistics.median(times) * 1000,
        "p99": times[int(len(times) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="1,10,100,500")
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured per size")
    parser.add_argument("--exe", type=Path, default=EXE, help="the secretwarden to measure")
    args = parser.parse_args()
    print(f"measuring {args.exe}", file=sys.stderr)
    # pip compiles an installed package's byte code at install time; an editable install
    # (the release venv's, this checkout) under PYTHONDONTWRITEBYTECODE (set on this
    # machine) would compile this project's ~80 modules from source at every start
    # (~0.13 s of the start-up measured here). Compile them once, as an install would.
    python = args.exe.parent / "python"
    packages = [str(ROOT / p) for p in ("daemon", "tenant", "exporters", "remediation", "sandbox")]
    subprocess.run([str(python), "-m", "compileall", "-q", *packages], check=True)
    results = []
    for n in args.targets.split(","):
        results.append(measure(int(n), args.window, args.exe))
        print(f"measured {n} target(s): {results[-1]}", file=sys.stderr, flush=True)
    header = (
        "targets",
        "ready s",
        "RSS MiB",
        "CPU s/h",
        "Azure req/h/target",
        "/metrics KB",
        "series",
        "series/target",
        "scrape p50 ms",
        "scrape p99 ms",
    )
    rows = [
        (
            f"{r['targets']:.0f} (x{r['speed']:g})",
            f"{r['ready']:.2f}",
            f"{r['rss']:.0f}",
            f"{r['cpu_h']:.0f}",
            ("~" if r["partial"] else "") + f"{r['req_h_target']:.0f}",
            f"{r['size'] / 1024:.0f}",
            f"{r['series']:.0f}",
            f"{r['series'] / r['targets']:.0f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
        )
        for r in results
    ]
    print_columns(header, rows)
    if len(results) > 1:
        a, b = results[0], results[-1]
        n = b["targets"] - a["targets"]
        print(
            f"\nper added target ({a['targets']:.0f} -> {b['targets']:.0f}): "
            f"RSS {(b['rss'] - a['rss']) / n * 1024:.0f} KiB, "
            f"CPU {(b['cpu_h'] - a['cpu_h']) / n:.1f} s/h, "
            f"/metrics {(b['size'] - a['size']) / n / 1024:.1f} KB, "
            f"series {(b['series'] - a['series']) / n:.0f}, "
            f"start-up {(b['ready'] - a['ready']) / n * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
