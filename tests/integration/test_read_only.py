"""``[remediation] enabled = false`` is read-only, and a running daemon shows what the
CLI did (issue 15, point 3).

A CLI ``rotate`` leaves the old secret pending removal (no proof: ARM refuses the
per-instance view, reports no activeVersion, and the sign-in log is late). A read-only
daemon then never removes it, even once the overlap window has ended, refuses the
webhook, and still shows the rotation and the pending removal exactly as a restarted
daemon would; ``secretwarden cleanup`` finishes the removal."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azurite import Azurite
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from daemon.app import Daemon
from daemon.config import Config, load_config
from daemon.remediate_cli import _rotate, install, print_status
from daemon.sandbox_config import write_sandbox_config
from remediation.journal import Journal, make_entry
from tenant.leases import BlobLeases
from tenant.models import SecretValue

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


# -- [ha]: cleanup acts only under the target's lease, from storage's journal -----------


@pytest.fixture
async def ha_config(
    daemon: Daemon, azurite_server: Azurite, tmp_path: Path
) -> AsyncIterator[tuple[Config, BlobLeases]]:
    """``daemon``'s config with ``[ha] backend = "azure_blob"`` on Azurite (a container
    of its own), and a store to play the other daemons with."""
    secret = tmp_path / "storage.secret"
    secret.write_text(azurite_server.connection_string)
    secret.chmod(0o600)
    container = f"c-{secrets.token_hex(6)}"
    ha = daemon.config.ha.model_copy(
        update={"backend": "azure_blob", "connection_string_file": secret, "container": container}
    )
    async with BlobLeases(
        container, connection_string=SecretValue(azurite_server.connection_string)
    ) as store:
        await store.ensure_container()
        yield daemon.config.model_copy(update={"ha": ha}), store


async def rotated_and_overdue(sb: Any, daemon: Daemon) -> str:
    """A CLI rotation (one daemon's journal) whose old credential's window has ended."""
    old = sb.in_use_key_id()
    await cli_rotate(daemon.config)
    await asyncio.sleep(OVERLAP_SECONDS + 0.5)
    return old


async def to_storage(store: BlobLeases, data: bytes) -> None:
    """Put ``data`` in the target's journal in storage, as its lease holder journaled it."""
    held = await store.acquire("portal", 15, "daemon-a")
    await store.append("portal", held.lease_id, data)
    await store.release("portal", held.lease_id)


async def cleanup(config: Config) -> tuple[int, str]:
    from daemon.cleanup_cli import run_cleanup

    out = io.StringIO()
    code = await run_cleanup(config, ["portal"], out)
    return code, out.getvalue()


async def test_ha_cleanup_refuses_a_target_whose_lease_a_daemon_holds(
    sb: Any, daemon: Daemon, ha_config: tuple[Config, BlobLeases]
) -> None:
    """The holder may be mid-rotation of the target: the CLI removes nothing, says who
    holds it and what to do, and leaves the lease alone."""
    config, store = ha_config
    old = await rotated_and_overdue(sb, daemon)
    await to_storage(store, Journal(config.daemon.state_directory, "portal").path.read_bytes())
    held = await store.acquire("portal", 15, "daemon-b")
    code, out = await cleanup(config)
    assert code == 1
    assert out.startswith(
        "portal: step cleanup (remove the old credential) refused: its lease is held by "
        "daemon-b since "
    )
    assert "that daemon may be rotating it now" in out
    assert old in credential_ids(sb), "cleanup removed a credential under another's lease"
    await store.renew("portal", held.lease_id)  # still daemon-b's lease
    assert (await store.info("portal")).holder == "daemon-b"


async def test_ha_cleanup_decides_from_storages_journal_not_the_local_copy(
    sb: Any, daemon: Daemon, ha_config: tuple[Config, BlobLeases]
) -> None:
    """This host's journal says pending; storage's (the journal of record) does not
    (here: empty): nothing is removed."""
    config, _ = ha_config
    old = await rotated_and_overdue(sb, daemon)
    assert await cleanup(config) == (0, "portal: nothing pending removal\n")
    assert old in credential_ids(sb)


async def test_ha_cleanup_refuses_while_a_run_is_unfinished_in_storage(
    sb: Any, daemon: Daemon, ha_config: tuple[Config, BlobLeases]
) -> None:
    config, store = ha_config
    old = await rotated_and_overdue(sb, daemon)
    local = Journal(config.daemon.state_directory, "portal").path.read_bytes()
    begun = make_entry(
        ts=datetime.now(UTC), run="r-next", action="rotate", step="run", phase="begin"
    )
    await to_storage(store, local + (begun.to_json() + "\n").encode())
    code, out = await cleanup(config)
    assert code == 1
    assert "run r-next (rotate) is unfinished in the journal in storage" in out
    assert old in credential_ids(sb)


async def test_ha_cleanup_removes_under_the_lease_and_journals_to_storage(
    sb: Any, daemon: Daemon, ha_config: tuple[Config, BlobLeases]
) -> None:
    config, store = ha_config
    old = await rotated_and_overdue(sb, daemon)
    await to_storage(store, Journal(config.daemon.state_directory, "portal").path.read_bytes())
    code, out = await cleanup(config)
    assert (code, out.startswith("portal: success")) == (0, True), out
    assert old not in credential_ids(sb)
    journal = (await store.read_journal("portal")).decode()
    assert '"action":"cleanup"' in journal.replace(" ", "")
    info = await store.info("portal")
    assert info.state != "leased"  # given back at once: a daemon takes it next round
    assert (info.holder or "").startswith("cli-")
    status = io.StringIO()
    print_status(config, status)  # read-only + HA: who finishes a pending removal
    assert "while no daemon holds the target's lease" in status.getvalue()


async def test_the_cli_lease_is_renewed_while_held_and_released_after(
    ha_config: tuple[Config, BlobLeases],
) -> None:
    """A long cleanup (a recycle, a slow Azure) keeps its lease: renewed every
    interval in the background (still provably held after three renew deadlines), and
    given back on the way out, even after an error."""
    from daemon.ha import cli_lease

    config, store = ha_config
    ha = config.ha.model_copy(update={"renew_deadline_seconds": 0.5, "retry_seconds": 0.1})
    config = config.model_copy(update={"ha": ha})
    held_after: list[bool] = []

    async def hold_then_fail() -> None:
        async with cli_lease(config, "portal") as (leadership, _):
            await asyncio.sleep(1.5)
            held_after.append(leadership.holds("portal"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await hold_then_fail()
    assert held_after == [True]
    assert (await store.info("portal")).state != "leased"
    held = await store.acquire("portal", 15, "daemon-a")  # free for a daemon at once
    await store.release("portal", held.lease_id)
