"""The tenant inventory at 10,000 app registrations; prints a table.
Run: .venv/bin/python bench/inventory.py

Against the sandbox (a `secretwarden sandbox` subprocess, so its CPU is not this
process's), in one run:

- the first full scan of 10,000 apps (+ the portal's): wall time (Graph requests,
  parsing and the one render included), Graph requests, this process's RSS after it;
- an unchanged delta scan (requests), and one after a change;
- `/metrics` median and p99 with all those series, as the daemon serves it (the
  inventory pre-rendered once per scan and appended), plain and gzip, next to
  prometheus_client's `generate_latest` over the same series on the same registry
  (what a scrape would cost if the inventory were an ordinary collector);
- why plain httpx + json.loads and not msgraph-sdk: parsing the same 999-app page into
  the fields we keep, against kiota's JSON parse node into generated `Application` models.

Targets (issue 10): full scan <= 10 s and <= 15 requests, delta <= 2 requests,
scrape p99 <= 30 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from sandbox_proc import start_sandbox
from table import print_table  # bench/table.py: the script's folder is on sys.path

from daemon.web import WebServer
from exporters.inventory import Inventory
from exporters.inventory_select import ManagedApps
from exporters.metrics import Metrics
from tenant.connect import TenantSession
from tenant.directory import SELECT, parse_object
from tenant.endpoints import PUBLIC, RetryPolicy
from tenant.models import SecretValue
from tenant.ports import Identity

APPS = 10_000
SCRAPES = 200


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def scrape_times(server: WebServer, gzip: bool, n: int = SCRAPES) -> tuple[float, float, int]:
    """curl in its own process, as a scraper would be (its time_total: connect, request,
    the whole body; the body is not decompressed)."""
    port = await server.start("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/metrics"
    encoding = "gzip" if gzip else "identity"
    args = ["curl", "-s", "-o", "/dev/null", "-H", f"Accept-Encoding: {encoding}"]
    args += ["-w", "%{time_total} %{size_download}\\n"]
    times = []
    size = 0
    try:
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            seconds, size_text = out.decode().split()
            times.append(float(seconds))
            size = int(size_text)
    finally:
        await server.stop()
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000, size


def timed(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def parse_costs(page: bytes) -> tuple[float, float]:
    """ms to parse one page: json.loads + parse_object, and kiota into Application models."""
    from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
    from msgraph.generated.models.application_collection_response import (
        ApplicationCollectionResponse,
    )

    def ours() -> object:
        return [parse_object(item, None) for item in json.loads(page)["value"]]

    def kiota() -> object:
        root = JsonParseNodeFactory().get_root_parse_node("application/json", page)
        return root.get_object_value(ApplicationCollectionResponse)

    return timed(ours, 9), timed(kiota, 3)


async def main_async() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, d = start_sandbox(Path(tmp))
        try:
            ca = d["ca_file"]
            with httpx.Client(verify=ca, timeout=120) as admin:
                truth = admin.post(
                    f"{d['admin_url']}directory",
                    json={"applications": APPS, "service_principals": 0, "seed": 1},
                ).json()
            cloud = PUBLIC.with_custom(
                authority=d["authority"],
                graph_url=d["graph_url"],
                arm_url=d["arm_url"],
                ca_file=Path(ca),
            )
            operator = Identity(
                kind="client_secret",
                tenant_id=d["tenant_id"],
                client_id=d["operator"]["client_id"],
                client_secret=SecretValue(d["operator"]["client_secret"]),
            )
            registry = CollectorRegistry()
            metrics = Metrics(registry, "bench")
            metrics.add_target("portal")
            inventory = Inventory(registry, managed=ManagedApps.of([d["app"]["object_id"]], []))
            inventory.enable(True, 3600)
            async with TenantSession(operator, cloud, RetryPolicy.none()) as session:
                directory = session.directory(on_response=inventory.count_response)
                # the operator's token first: Entra is not Graph, and it is cached for an hour
                await session.credential.get_token(cloud.graph_scope)
                rss_before = rss_mib()
                full = await inventory.scan(directory)
                rss_after = rss_mib()
                assert full.ok, full.error
                series = len(inventory.view.rows)
                rows.append(
                    (f"first full scan, {truth['applications']:,} apps: wall time",
                     f"{full.duration_seconds:.2f} s (target <= 10 s)")
                )  # fmt: skip
                rows.append(("first full scan: Graph requests", f"{full.requests} (target <= 15)"))
                rss = f"{rss_after:.0f} MiB (before it: {rss_before:.0f} MiB)"
                rows.append(("RSS after the full scan", rss))
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                rows.append(("peak RSS of the process", f"{peak:.0f} MiB"))
                delta = await inventory.scan(directory)
                assert delta.ok, delta.error
                assert not delta.full
                rows.append(
                    ("unchanged delta scan: Graph requests",
                     f"{delta.requests} (target <= 2), {delta.duration_seconds * 1000:.0f} ms")
                )  # fmt: skip
                async with httpx.AsyncClient(verify=ca) as http:
                    some = list(inventory.listings["applications"].objects)[1]  # not the portal
                    await http.post(
                        f"{d['admin_url']}directory/applications/{some}/passwords", json={}
                    )
                changed = await inventory.scan(directory)
                took = f"{changed.duration_seconds * 1000:.0f} ms (render included)"
                rows.append(
                    ("delta scan after one change: Graph requests", f"{changed.requests}, {took}")
                )
                rows.append(("credential series exported", f"{series:,}"))

                # /metrics, as the daemon serves it
                served = WebServer(
                    registry, ready=lambda: True, exposition=lambda: inventory.exposition
                )
                med, p99, size = await scrape_times(served, gzip=False)
                rows.append(
                    ("/metrics, inventory appended: median / p99",
                     f"{med:.1f} / {p99:.1f} ms (target p99 <= 30 ms), {size / 1e6:.1f} MB")
                )  # fmt: skip
                served = WebServer(
                    registry, ready=lambda: True, exposition=lambda: inventory.exposition
                )
                med_gz, p99_gz, size_gz = await scrape_times(served, gzip=True)
                rows.append(
                    ("/metrics, inventory appended, gzip: median / p99",
                     f"{med_gz:.1f} / {p99_gz:.1f} ms, {size_gz / 1e6:.2f} MB")
                )  # fmt: skip

                # the server's own work per scrape (no socket): registry text + the bytes
                def server_work(gz: bool) -> tuple[float, float]:
                    times = []
                    for _ in range(SCRAPES):
                        t = time.perf_counter()
                        body = generate_latest(registry)
                        exp = inventory.exposition
                        exp.gzip_with(body) if gz else exp.plain_with(body)
                        times.append(time.perf_counter() - t)
                    times.sort()
                    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000

                for gz in (False, True):
                    m, p = server_work(gz)
                    what = "gzip" if gz else "plain"
                    rows.append(
                        (
                            f"/metrics handler alone (no socket), {what}: median / p99",
                            f"{m:.2f} / {p:.2f} ms",
                        )
                    )

                # the same series as an ordinary collector: generate_latest per scrape
                naive = CollectorRegistry()
                Metrics(naive, "bench").add_target("portal")
                naive.register(inventory.collector)
                gl = timed(lambda: generate_latest(naive), 9)
                rows.append(("generate_latest, same registry + series (one call)", f"{gl:.0f} ms"))
                plain = WebServer(naive, ready=lambda: True)
                med_n, p99_n, _ = await scrape_times(plain, gzip=False, n=30)
                rows.append(
                    ("/metrics via generate_latest: median / p99",
                     f"{med_n:.1f} / {p99_n:.1f} ms ({med_n / med:.0f}x ours)")
                )  # fmt: skip
                plain = WebServer(naive, ready=lambda: True)
                med_ng, p99_ng, _ = await scrape_times(plain, gzip=True, n=30)
                rows.append(
                    ("/metrics via generate_latest, gzip: median / p99",
                     f"{med_ng:.1f} / {p99_ng:.1f} ms ({med_ng / med_gz:.0f}x ours)")
                )  # fmt: skip

                # the client: one 999-app page, parsed
                token = await session.credential.get_token(cloud.graph_scope)
                async with httpx.AsyncClient(verify=ca) as http:
                    page = (
                        await http.get(
                            f"{d['graph_url']}/applications",
                            params={"$select": ",".join(SELECT), "$top": "999"},
                            headers={"Authorization": f"Bearer {token.token}"},
                        )
                    ).content
                ours, kiota = parse_costs(page)
                rows.append(
                    ("parse one 999-app page: json.loads + 6 fields",
                     f"{ours:.1f} ms ({len(page) / 1e6:.1f} MB)")
                )  # fmt: skip
                rows.append(
                    ("parse one 999-app page: kiota Application models",
                     f"{kiota:.1f} ms ({kiota / ours:.1f}x; x11 pages per full scan)")
                )  # fmt: skip
                load = Path("/proc/loadavg").read_text().split()[:3]
                rows.append((f"load average at the end ({os.cpu_count()} CPUs)", " / ".join(load)))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    return rows


def main() -> None:
    print_table(asyncio.run(main_async()))


if __name__ == "__main__":
    main()
