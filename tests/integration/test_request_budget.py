"""The request budget (issue 16): a healthy target costs <= 40 Azure requests an hour at
the default probe intervals, counted by the sandbox itself, and a refused secret is
still seen within 5 minutes. The daemon's schedules run at 1/SPEED of the defaults for
WINDOW seconds (half an hour of defaults); ``exporters.reads.Pace`` follows the Graph
probe's interval, so its proportions are those of a real hour."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.app import Daemon
from daemon.config import PROBE_NAMES, ProbesSection, load_config
from daemon.sandbox_config import write_sandbox_config

SPEED = 120.0
WINDOW = 15.0  # seconds: 30 minutes of the defaults
BUDGET_PER_HOUR = 40
AZURE = ("entra", "graph", "keyvault", "arm")


def _sandbox_total(sb: Any) -> dict[str, int]:
    counters = sb.state()["counters"]
    return {s: sum(counters.get(s, {}).values()) for s in AZURE}


def _daemon_total(d: Daemon) -> dict[str, int]:
    return {
        s: int(d.registry.get_sample_value("secretwarden_azure_requests_total", {"service": s}))
        for s in AZURE
    }


async def test_a_healthy_target_stays_in_budget_and_a_refusal_is_seen_in_5_minutes(
    sb: Any, tmp_path: Path
) -> None:
    defaults = ProbesSection()
    intervals = {p: defaults.schedule(p).interval_seconds / SPEED for p in PROBE_NAMES}
    path = tmp_path / "budget.toml"
    write_sandbox_config(
        sb.describe, path, listen_address="127.0.0.1:0", retry_total=0, intervals=intervals
    )
    d = Daemon(load_config(path), registry=CollectorRegistry())
    await d.start(serve_web=False)
    try:
        while not d.ready():
            await asyncio.sleep(0.05)
        await asyncio.sleep(intervals["graph"])  # past the first runs' burst
        sandbox0, daemon0 = _sandbox_total(sb), _daemon_total(d)
        await asyncio.sleep(WINDOW)
        sandbox1, daemon1 = _sandbox_total(sb), _daemon_total(d)

        sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
        expired = time.monotonic()
        while d.registry.get_sample_value("secretwarden_graph_probe_success", {"target": "portal"}):
            assert time.monotonic() - expired < 10 * intervals["graph"], "refusal never seen"
            await asyncio.sleep(0.01)
        seen_after = time.monotonic() - expired
    finally:
        await d.stop()

    counted = {s: sandbox1[s] - sandbox0[s] for s in AZURE}
    per_hour = sum(counted.values()) * 3600 / (WINDOW * SPEED)
    assert per_hour <= BUDGET_PER_HOUR, (per_hour, counted)
    # the daemon's own counter says the same as the sandbox (a request in flight at
    # either reading may fall on one side only)
    for s in AZURE:
        assert abs((daemon1[s] - daemon0[s]) - counted[s]) <= 2, (s, daemon0, daemon1, counted)
    # 5 minutes at the defaults are 5 Graph probe intervals
    assert seen_after <= 5 * intervals["graph"], seen_after
