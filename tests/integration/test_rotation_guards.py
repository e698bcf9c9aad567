"""Guards and dry-run against the sandbox: cap, backoff, circuit, coalescing, no writes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from structlog.testing import capture_logs
from test_rotation_fixtures import FAST, TARGET, Rig, SkewClock, assert_converged, make_rig

from remediation.guards import GuardSettings
from remediation.journal import Journal
from tenant.ports import TargetClients

pytest_plugins = ("test_rotation_fixtures",)

DUE = dataclasses.replace(FAST, rotate_before=timedelta(days=3650))  # always due
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def writes(sb: Any) -> dict[str, int]:
    by = sb.state()["counters_by_method"]
    return {
        f"{s}:{m}": by.get(s, {}).get(m, 0) for s in ("graph", "keyvault", "arm") for m in WRITES
    }


class Build(Protocol):
    def __call__(self, state: str = "state", *, dry_run: bool = False, **guards: Any) -> Rig: ...


@pytest.fixture
def build(
    sb: Any,
    tenant_clients: TargetClients,
    health_http: httpx.AsyncClient,
    skew: SkewClock,
    tmp_path: Path,
) -> Build:
    """A Remediator on ``tmp_path/state`` (always due); the same ``state`` again is a
    restart of the daemon on that state directory."""
    base = GuardSettings(
        max_rotations_per_day=5,
        backoff_initial=timedelta(minutes=5),
        backoff_max=timedelta(hours=1),
        circuit_failures=3,
    )

    def make(state: str = "state", *, dry_run: bool = False, **guards: Any) -> Rig:
        return make_rig(
            sb,
            tenant_clients,
            health_http,
            skew,
            tmp_path / state,
            settings=DUE,
            guards=dataclasses.replace(base, **guards),
            dry_run=dry_run,
        )

    return make


def fail_key_vault_writes(sb: Any) -> None:
    sb.faults(inject=[{"service": "keyvault", "status": 503, "count": 1000, "method": "PUT"}])


def first_run(rig: Rig) -> str:
    return rig.rem.journal(TARGET).runs()[0].run


def azure_is_fine_again(sb: Any) -> None:
    # Not ``reset``: that would also void the tokens the SDK clients hold.
    portal = sb.thread.portal
    sb.thread.call(lambda: setattr(portal.faults, "inject", []))


async def test_dry_run_logs_the_plan_and_writes_nothing(sb: Any, build: Build) -> None:
    rig = build(dry_run=True)
    before = writes(sb)
    events = []
    with capture_logs() as logs:
        outcome = await rig.rem.run(TARGET, "rotate", "test", progress=events.append)
        heal = await rig.rem.run(TARGET, "heal", "test")
    assert outcome.outcome == "dry_run"
    assert heal.outcome == "dry_run"
    assert writes(sb) == before
    assert not rig.rem.journal(TARGET).path.exists()
    plan = [e.detail for e in events if e.phase == "plan"]
    assert len(plan) == 6
    assert "add a client secret" in plan[0]
    assert any("old credential(s)" in p and sb.in_use_key_id() in p for p in plan)
    assert any(e.get("phase") == "plan" and e.get("dry_run") for e in logs)


async def test_the_cap_blocks_a_second_rotation_and_says_so(
    sb: Any, build: Build, skew: SkewClock
) -> None:
    rig = build(max_rotations_per_day=1)
    first = rig.rem.trigger(TARGET, "rotate", "test")
    assert first.status == "started"
    assert (await rig.rem.wait(TARGET)).outcome == "success"  # type: ignore[union-attr]
    before = writes(sb)
    # Right after it, the same trigger is a duplicate of that run (issue 9), answered
    # as such rather than refused; once it is no longer "just ended", the cap decides.
    duplicate = rig.rem.trigger(TARGET, "rotate", "test")
    assert duplicate.status == "coalesced"
    assert f"a duplicate of rotate run {first_run(rig)}" in duplicate.detail
    skew.offset += rig.rem.duplicate_window + 1
    second = rig.rem.trigger(TARGET, "rotate", "test")
    assert second.status == "blocked"
    assert "cap 1" in second.detail
    assert writes(sb) == before
    assert rig.metric("secretwarden_remediation_blocked", reason="rotation_cap") == 1
    assert rig.metric("secretwarden_remediation_total", action="rotate", outcome="blocked") == 1
    # a heal is not a rotation: the cap does not stop it
    assert rig.rem.trigger(TARGET, "heal", "test").status == "started"
    assert (await rig.rem.wait(TARGET)).outcome == "nothing_to_do"  # type: ignore[union-attr]
    skew.offset += 86400 + 1
    assert rig.rem.trigger(TARGET, "rotate", "test").status == "started"
    await rig.rem.wait(TARGET)


async def test_backoff_after_a_failure_then_a_retry_when_it_ends(
    sb: Any, build: Build, skew: SkewClock
) -> None:
    rig = build()
    fail_key_vault_writes(sb)
    assert rig.rem.trigger(TARGET, "rotate", "test").status == "started"
    assert (await rig.rem.wait(TARGET)).outcome == "failed"  # type: ignore[union-attr]
    blocked = rig.rem.trigger(TARGET, "rotate", "test")
    assert blocked.status == "blocked"
    assert "backing off" in blocked.detail
    assert rig.metric("secretwarden_remediation_blocked", reason="backoff") == 1
    azure_is_fine_again(sb)
    skew.offset += 5 * 60 + 1
    assert rig.rem.trigger(TARGET, "rotate", "test").status == "started"
    assert (await rig.rem.wait(TARGET)).outcome == "success"  # type: ignore[union-attr]
    assert rig.metric("secretwarden_remediation_blocked", reason="backoff") == 0
    assert_converged(sb)


async def test_the_circuit_opens_after_repeated_failures_and_says_so(
    sb: Any, build: Build, skew: SkewClock
) -> None:
    rig = build(circuit_failures=2)
    fail_key_vault_writes(sb)
    with capture_logs() as logs:
        for _ in range(2):
            assert rig.rem.trigger(TARGET, "rotate", "test").status == "started"
            assert (await rig.rem.wait(TARGET)).outcome == "failed"  # type: ignore[union-attr]
            skew.offset += 3600
    opened = [e for e in logs if e["event"] == "remediation blocked"]
    assert opened[-1]["reason"] == "circuit_open"
    assert rig.metric("secretwarden_remediation_blocked", reason="circuit_open") == 1
    before = writes(sb)
    result = rig.rem.trigger(TARGET, "heal", "test")
    assert result.status == "blocked"
    assert "2 failed remediation(s) in a row" in result.detail
    assert writes(sb) == before
    # an operator's successful manual run closes the circuit
    azure_is_fine_again(sb)
    assert (await rig.rem.run(TARGET, "rotate", "operator")).outcome == "success"
    assert rig.metric("secretwarden_remediation_blocked", reason="circuit_open") == 0
    assert_converged(sb)


async def test_triggers_while_a_run_is_in_progress_coalesce(sb: Any, rig: Rig) -> None:
    rig.rem.settings = DUE
    first = rig.rem.trigger(TARGET, "rotate", "test")
    later = [rig.rem.trigger(TARGET, "rotate", "test") for _ in range(5)]
    assert first.status == "started"
    assert {r.status for r in later} == {"coalesced"}
    assert (await rig.rem.wait(TARGET)).outcome == "success"  # type: ignore[union-attr]
    assert len(sb.state()["credentials"]) == 1
    assert rig.metric("secretwarden_remediation_total", action="rotate", outcome="success") == 1


async def test_the_guards_and_the_last_rotation_survive_a_restart(
    sb: Any, build: Build, skew: SkewClock
) -> None:
    rig = build("capped", max_rotations_per_day=1)
    assert (await rig.rem.run(TARGET, "rotate", "operator")).outcome == "success"
    rotated_at = rig.metric("secretwarden_rotation_last_success_timestamp_seconds")
    assert rotated_at
    rig = build("capped", max_rotations_per_day=1)
    assert rig.metric("secretwarden_rotation_last_success_timestamp_seconds") == rotated_at
    assert rig.metric("secretwarden_remediation_blocked", reason="rotation_cap") == 1
    blocked = rig.rem.trigger(TARGET, "rotate", "test")
    assert blocked.status == "blocked"
    assert "cap 1" in blocked.detail

    skew.offset += 86400 + 1
    rig = build("failed", max_rotations_per_day=1)
    fail_key_vault_writes(sb)
    assert rig.rem.trigger(TARGET, "rotate", "test").status == "started"
    assert (await rig.rem.wait(TARGET)).outcome == "failed"  # type: ignore[union-attr]
    azure_is_fine_again(sb)
    rig = build("failed", max_rotations_per_day=1)
    assert rig.metric("secretwarden_remediation_blocked", reason="backoff") == 1
    blocked = rig.rem.trigger(TARGET, "rotate", "test")
    assert blocked.status == "blocked"
    assert "backing off after 1 failure" in blocked.detail
    assert rig.metric("secretwarden_rotation_last_success_timestamp_seconds") == 0


async def test_a_dry_run_daemon_leaves_an_unfinished_run_alone(
    sb: Any, build: Build, skew: SkewClock, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "state", TARGET)
    for step in ("run", "plan"):
        journal.append(ts=skew.now(), run="r1", action="rotate", step=step, phase="begin")
    text = journal.path.read_text()
    before = writes(sb)
    rig = build(dry_run=True)
    assert await rig.rem.recover() == []
    assert (await rig.rem.run(TARGET, "rotate", "test")).outcome == "dry_run"
    assert writes(sb) == before
    assert journal.path.read_text() == text


async def test_a_rotation_by_another_process_counts_against_the_cap_at_once(
    sb: Any, build: Build
) -> None:
    """The daemon and `secretwarden rotate` share the state directory: a manual rotation
    counts against the daemon's daily cap without a restart of the daemon."""
    daemon = build(max_rotations_per_day=1)
    by_hand = build(max_rotations_per_day=1)  # another process on the same state directory
    outcome = await by_hand.rem.run(TARGET, "rotate", "cli")
    assert outcome.outcome == "success", outcome.detail
    before = writes(sb)
    result = daemon.rem.trigger(TARGET, "rotate", "policy: due")
    assert result.status == "blocked"
    assert "cap 1" in result.detail
    assert writes(sb) == before
