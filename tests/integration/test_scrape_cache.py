"""/metrics with the probes' families pre-rendered (issue 16): every family once, plain
and gzip, with and without the inventory's pre-rendered text in front."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from prometheus_client import CollectorRegistry

from daemon.web import WebServer
from exporters.exposition import Exposition
from exporters.metrics import Metrics
from remediation.metrics import RemediationMetrics

INVENTORY = Exposition.of(b"# HELP inv_x x\n# TYPE inv_x gauge\ninv_x 1.0\n")


@pytest.mark.parametrize("inventory", [False, True])
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_every_family_once(inventory: bool, encoding: str) -> None:
    reg = CollectorRegistry()
    metrics = Metrics(reg, "0")
    metrics.add_target("portal")
    RemediationMetrics(reg, ["portal"])
    server = WebServer(
        reg,
        ready=lambda: True,
        prerendered=metrics.exposition,
        exposition=(lambda: INVENTORY) if inventory else None,
    )
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as http:
            url = f"http://127.0.0.1:{port}/metrics"
            text = (await http.get(url, headers={"Accept-Encoding": encoding})).text
    finally:
        await server.stop()
    families = Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE"))
    assert max(families.values()) == 1, families
    assert "secretwarden_probe_success" in families  # pre-rendered
    assert "secretwarden_remediation_total" in families  # rendered per scrape
    assert ("inv_x" in families) == inventory
