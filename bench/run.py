"""Benchmarks of the exporter daemon; prints a table. Run: .venv/bin/python bench/run.py

- /metrics latency (median, p99) with one target, and with 1,000 credentials
- a daemon-shaped registry (one target, the remediation metrics too) scraped from the
  daemon's web server as the daemon runs it (probes' families pre-rendered, issue 16) and
  from the same server rendering every family with prometheus_client's generate_latest
  per scrape, requests interleaved; the ratio of the medians (the server-side render
  alone, in-process, is the second ratio)
- the daemon's RSS and start-up time (a real `secretwarden run` subprocess until /-/ready)
- Azure requests per hour per target at the default intervals: computed from the
  schedule, and counted from the sandbox's counters over a short run at 1/60 of the
  default intervals (then scaled back).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from table import print_table  # bench/table.py: the script's folder is on sys.path

from daemon.config import ProbesSection, load_config
from daemon.sandbox_config import write_sandbox_config
from daemon.web import WebServer
from exporters.exposition import prerendered_served
from exporters.metrics import Metrics
from exporters.observations import ExpiryObservation, Observed
from exporters.reads import Pace
from remediation.metrics import RemediationMetrics
from sandbox import SandboxThread
from tenant.models import PasswordCredential

ROOT = Path(__file__).resolve().parents[1]
AZURE_SERVICES = ("entra", "graph", "keyvault", "arm")
# Azure calls a healthy run of each probe makes, besides the shared reads (operator
# tokens are cached for their lifetime): the app read, nothing, the reference list.
CALLS_PER_RUN = {"expiry": 1, "health": 0, "graph": 0, "reference": 1}


def graph_calls_per_hour(interval: float) -> float:
    """The Graph probe's paced calls (exporters/reads.py): a token request every
    ceil(3.5) runs, a Key Vault read (shared) every ceil(9.5), a Graph call every ceil(14.5)."""
    pace = Pace.for_graph_interval(interval)
    runs = 3600 / interval
    every = (pace.secret_retest, pace.keyvault_max_age, pace.graph_call_every)
    return sum(runs / math.ceil(age / interval) for age in every)


async def latency(registry: CollectorRegistry, n: int = 400) -> tuple[float, float, int]:
    server = WebServer(registry, ready=lambda: True)
    port = await server.start("127.0.0.1", 0)
    times = []
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{port}/metrics"
            size = len((await http.get(url)).content)
            for _ in range(n):
                t = time.perf_counter()
                (await http.get(url)).raise_for_status()
                times.append(time.perf_counter() - t)
    finally:
        await server.stop()
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000, size


def metrics_with(credentials: int) -> CollectorRegistry:
    return daemon_shaped(credentials)[0]


def daemon_shaped(credentials: int) -> tuple[CollectorRegistry, Metrics]:
    reg = CollectorRegistry()
    m = Metrics(reg, "bench")
    now = datetime.now(UTC)
    creds = tuple(
        PasswordCredential(f"key-{i:04d}", f"API Secret {i}", "abc", now, now + timedelta(days=i))
        for i in range(credentials)
    )
    obs = ExpiryObservation(ok=True, credentials=creds, in_use=creds[0] if creds else None)
    m.record(Observed("portal", "expiry", now, obs), 0.1)
    return reg, m


def versus_plain(n: int = 600) -> tuple[float, float, float]:
    """Median scrape (ms) of the daemon's web server with the pre-rendered families and
    of the same server rendering them all per scrape, alternating which goes first; and
    the ratio of the bodies' production alone (copy + rest vs generate_latest)."""
    reg, metrics = daemon_shaped(1)
    RemediationMetrics(reg, ["portal"])
    ours: list[float] = []
    plain: list[float] = []

    async def run() -> None:
        server = WebServer(reg, ready=lambda: True, prerendered=metrics.exposition)
        port = await server.start("127.0.0.1", 0)
        plain_server = WebServer(reg, ready=lambda: True)
        plain_port = await plain_server.start("127.0.0.1", 0)
        urls = (
            (f"http://127.0.0.1:{port}/metrics", ours),
            (f"http://127.0.0.1:{plain_port}/metrics", plain),
        )
        try:
            async with httpx.AsyncClient() as http:
                for i in range(n):
                    for url, into in urls[:: 1 if i % 2 else -1]:
                        t = time.perf_counter()
                        (await http.get(url)).raise_for_status()
                        into.append(time.perf_counter() - t)
        finally:
            await server.stop()
            await plain_server.stop()

    asyncio.run(run())
    copy, render = [], []
    for _ in range(n):
        t = time.perf_counter()
        with prerendered_served():
            metrics.exposition().text + generate_latest(reg)
        copy.append(time.perf_counter() - t)
        t = time.perf_counter()
        generate_latest(reg)
        render.append(time.perf_counter() - t)
    ratio = statistics.median(copy) / statistics.median(render)
    return statistics.median(ours) * 1000, statistics.median(plain) * 1000, ratio


def start_daemon(config: Path) -> tuple[subprocess.Popen[bytes], float, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "run",
            "--config.file",
            str(config),
            "--log.format",
            "json",
            "--log.level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(str(config) + ".log", "w"),  # noqa: SIM115 -- closed with the process
    )
    listen = load_config(config).web.listen_address
    while True:
        try:
            if httpx.get(f"http://{listen}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 60:
            raise RuntimeError(
                "daemon did not become ready: " + Path(str(config) + ".log").read_text()[-2000:]
            )
        time.sleep(0.05)
    ready = time.perf_counter() - t0
    rss = 0
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return proc, ready, rss


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    rows: list[tuple[str, str]] = []
    med, p99, size = asyncio.run(latency(metrics_with(1)))
    rows.append(("/metrics, one target (median / p99)", f"{med:.2f} ms / {p99:.2f} ms ({size} B)"))
    med, p99, size = asyncio.run(latency(metrics_with(1000)))
    rows.append(
        ("/metrics, 1,000 credentials (median / p99)", f"{med:.2f} ms / {p99:.2f} ms ({size} B)")
    )

    ours, plain, body = versus_plain()
    rows.append(
        (
            "/metrics scrape, pre-rendered vs generate_latest (medians)",
            f"{ours:.2f} ms vs {plain:.2f} ms = {ours / plain:.2f}x",
        )
    )
    rows.append(("/metrics body alone, pre-rendered vs generate_latest", f"{body:.2f}x"))

    defaults = ProbesSection()
    computed = graph_calls_per_hour(defaults.graph.interval_seconds) + sum(
        3600 / defaults.schedule(p).interval_seconds * CALLS_PER_RUN[p] for p in CALLS_PER_RUN
    )
    tokens = "(+ <= 3 operator tokens per daemon)"
    rows.append(("Azure requests/hour/target, computed", f"{computed:.0f} {tokens}"))

    scale = 60.0
    run_seconds = 30.0
    with (
        tempfile.TemporaryDirectory() as tmp,
        SandboxThread(ca_dir=Path(tmp) / "ca", faults={"app_sync_interval_seconds": 0.0}) as sb,
    ):
        client = httpx.Client(verify=sb.describe()["ca_file"])
        admin = sb.describe()["admin_url"]
        config = Path(tmp) / "sw.toml"
        intervals = {p: defaults.schedule(p).interval_seconds / scale for p in CALLS_PER_RUN}
        write_sandbox_config(
            sb.describe(), config, listen_address=f"127.0.0.1:{free_port()}", intervals=intervals
        )
        proc, ready, rss = start_daemon(config)
        try:
            rows.append(("daemon start-up until /-/ready", f"{ready:.2f} s"))
            rows.append(("daemon RSS after start-up", f"{rss / 1024:.1f} MiB"))
            before = client.get(admin + "state").json()["counters"]
            time.sleep(run_seconds)
            after = client.get(admin + "state").json()["counters"]
        finally:
            proc.terminate()
            proc.wait(10)
        counted = sum(
            sum(after.get(s, {}).values()) - sum(before.get(s, {}).values()) for s in AZURE_SERVICES
        )
        per_hour = counted / run_seconds * 3600 / scale
        rows.append(("Azure requests/hour/target, counted", f"{per_hour:.0f}"))
    print_table(rows)


if __name__ == "__main__":
    main()
