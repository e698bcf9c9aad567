"""A daemon (re)started within the watch after a removal: the journal is folded before
the daemon has its Azure clients, so the watch's end must come from the configuration,
not from a target built with clients (the HA SIGKILL test found a start-up KeyError)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from daemon.app import Daemon
from daemon.config import load_config
from daemon.remediate_cli import _rotate, install
from daemon.sandbox_config import write_sandbox_config

FAST = {
    "enabled": True,
    "builtin_triggers": False,
    "refresh_timeout_seconds": 1,
    "propagation_poll_seconds": 0.2,
    "verify_poll_seconds": 0.2,
    "cold_start_timeout_seconds": 10,
}


async def test_a_daemon_started_during_the_watch_after_a_removal_shows_it(
    sb: Any, tmp_path: Path
) -> None:
    path = tmp_path / "sw.toml"
    write_sandbox_config(
        sb.describe, path, listen_address="127.0.0.1:0", retry_total=0, remediation=FAST
    )
    config = load_config(path)
    old = sb.in_use_key_id()
    out = io.StringIO()
    assert await _rotate(config, "portal", False, out) == 0, out.getvalue()
    assert old not in {c["keyId"] for c in sb.state()["credentials"]}, out.getvalue()

    daemon = Daemon(load_config(path), config_path=path, registry=CollectorRegistry())
    install(daemon)  # folds the journal: the removal is minutes old, the watch is on
    await daemon.start(schedule=False)
    try:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{daemon.listen_address}/metrics")).text
        watch = {
            s.labels.get("target"): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "secretwarden_credential_removal_watch"
        }
        assert watch == {"portal": 1.0}
    finally:
        await daemon.stop()
