"""``[remediation] enabled = false`` is read-only, and a running daemon shows what the
CLI did (issue 15, point 3).

A CLI ``rotate`` leaves the old secret pending removal (no proof: ARM refuses the
per-instance view, reports no activeVersion, and the sign-in log is late). A read-only
daemon then never removes it, even once the overlap window has ended, refuses the
webhook, and still shows the rotation and the pending removal exactly as a restarted
daemon would; ``secretwarden cleanup`` finishes the removal."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from daemon.app import Daemon
from daemon.config import Config, load_config
from daemon.remediate_cli import _rotate, install, print_status
from daemon.sandbox_config import write_sandbox_config

OVERLAP_SECONDS = 3
FAST = {
    "enabled": False,
    "refresh_timeout_seconds": 1,
    "propagation_poll_seconds": 0.2,
    "verify_poll_seconds": 0.2,
    "cold_start_timeout_seconds": 10,
    # without the per-instance view, the recycle the rotation made counts once this passed
    "recycle_allowance_seconds": 1,
}
WATCHED = (
    "secretwarden_credential_pending_removal",
    "secretwarden_rotation_last_success_timestamp_seconds",
    "secretwarden_remediation_blocked",
)


@pytest.fixture
def config_file(sb: Any, tmp_path: Path) -> Path:
    sb.faults(
        active_version="absent",
        signin_log_delay_seconds=3600,
        inject=[{"service": "arm", "status": 403, "count": 100000, "path_contains": "/instances"}],
    )
    path = tmp_path / "sw.toml"
    write_sandbox_config(
        sb.describe, path, listen_address="127.0.0.1:0", retry_total=0, remediation=FAST
    )
    path.write_text(path.read_text() + f"overlap_window_hours = {OVERLAP_SECONDS / 3600}\n")
    return path


@pytest.fixture
async def daemon(config_file: Path) -> AsyncIterator[Daemon]:
    d = Daemon(load_config(config_file), config_path=config_file, registry=CollectorRegistry())
    install(d)
    await d.start(schedule=False)
    yield d
    await d.stop()


async def watched(d: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The remediation series a scrape of ``d`` shows."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://{d.listen_address}/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in WATCHED
    }


async def cli_rotate(config: Config) -> str:
    out = io.StringIO()
    code = await _rotate(config, "portal", False, out)
    assert code == 0, out.getvalue()
    return out.getvalue()


def credential_ids(sb: Any) -> set[str]:
    return {c["keyId"] for c in sb.state()["credentials"]}


async def test_a_running_daemon_shows_the_cli_s_rotation_as_a_restarted_one_would(
    sb: Any, config_file: Path, daemon: Daemon
) -> None:
    old = sb.in_use_key_id()
    before = await watched(daemon)
    assert not [k for k in before if k[0] == WATCHED[0]]
    await cli_rotate(daemon.config)
    now = await watched(daemon)  # the next scrape, no restart
    assert now[(WATCHED[0], frozenset({("target", "portal"), ("key_id", old)}))] == 1
    assert now[(WATCHED[1], frozenset({("target", "portal")}))] > 0
    restarted = Daemon(load_config(config_file), registry=CollectorRegistry())
    install(restarted)
    await restarted.start(schedule=False)
    try:
        assert await watched(restarted) == now
    finally:
        await restarted.stop()


async def test_a_read_only_daemon_never_removes_and_cleanup_does(
    sb: Any, config_file: Path, daemon: Daemon
) -> None:
    from daemon.cleanup_cli import run_cleanup

    old = sb.in_use_key_id()
    await cli_rotate(daemon.config)
    assert old in credential_ids(sb)
    await asyncio.sleep(OVERLAP_SECONDS + 0.5)  # the overlap window has ended
    await daemon.run_probe("portal", "reference")  # what made a cleanup run before
    await asyncio.sleep(0.5)
    assert daemon.remediator is not None
    assert daemon.remediator.running("portal") is None
    assert old in credential_ids(sb), "a read-only daemon removed a credential"
    refused = daemon.remediator.trigger("portal", "rotate", "alertmanager: test")
    assert refused.status == "disabled"
    assert "writes nothing to Azure" in refused.detail
    # status says who finishes it
    status = io.StringIO()
    print_status(daemon.config, status)
    assert "read-only" in status.getvalue()
    assert "`secretwarden cleanup` finishes it" in status.getvalue()
    # the CLI finishes it, and the daemon's next scrape shows it gone
    out = io.StringIO()
    assert await run_cleanup(daemon.config, ["portal"], out) == 0, out.getvalue()
    assert "portal: success" in out.getvalue()
    assert old not in credential_ids(sb)
    assert not [k for k in await watched(daemon) if k[0] == WATCHED[0]]


async def test_cleanup_refuses_in_ha_mode_and_removes_nothing(
    sb: Any, config_file: Path, daemon: Daemon
) -> None:
    """With ``[ha] backend = "azure_blob"`` the CLI holds no lease and reads a local
    journal copy: the lease holder might be mid-rotation of the same target. The
    removal it would make here (overlap ended, the same state the test above cleans
    up) must not happen."""
    from daemon.cleanup_cli import run_cleanup

    old = sb.in_use_key_id()
    await cli_rotate(daemon.config)
    await asyncio.sleep(OVERLAP_SECONDS + 0.5)  # the overlap window has ended
    ha = daemon.config.ha.model_copy(
        update={"backend": "azure_blob", "account_url": "https://acct.blob.core.windows.net"}
    )
    config = daemon.config.model_copy(update={"ha": ha})
    out = io.StringIO()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = await run_cleanup(config, ["portal"], out)
    assert (code, out.getvalue()) == (2, "")
    line = err.getvalue()
    assert line.count("\n") == 1
    assert "target(s) portal: step cleanup (remove the old credential) refused" in line
    assert "[ha] backend is 'azure_blob'" in line
    assert "holds no target lease" in line
    assert "the daemon holding the lease finishes pending removals" in line
    assert old in credential_ids(sb), "cleanup removed a credential without the lease"
    status = io.StringIO()
    print_status(config, status)  # read-only + HA: status no longer points at cleanup
    assert "`secretwarden cleanup`" not in status.getvalue()
    assert "the lease holder, once its remediation is on, finishes it" in status.getvalue()
