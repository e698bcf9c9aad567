"""Shared set-up for the remediation integration tests (no tests of its own).

``rem`` is a :class:`~remediation.service.Remediator` for the sandbox's portal, with the
real tenant clients (real SDKs over HTTPS) and a :class:`SkewClock` shared with the
sandbox: a wait in the workflow moves both clocks, so the sandbox's 30 s propagation
delay or cold start takes no real time while everything still happens in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from remediation.guards import GuardSettings
from remediation.service import RemediationTarget, Remediator
from remediation.verify import ExporterProber
from remediation.workflow import WorkflowSettings
from tenant.connect import TenantSession
from tenant.endpoints import Cloud, RetryPolicy
from tenant.ports import Identity, TargetClients, TargetRef

TARGET = "portal"
FAST = WorkflowSettings(
    propagation_timeout=180.0,
    propagation_poll=2.0,
    propagation_poll_max=8.0,
    refresh_timeout=10.0,
    cold_start_timeout=60.0,
    verify_poll=2.0,
    step_attempts=4,
    step_backoff=0.5,
    step_backoff_max=5.0,
    # The sandbox shares the test's clock: no skew to allow for (issue 13's proofs
    # compare the daemon's times with Entra's and ARM's).
    clock_skew=1.0,
)


class SkewClock:
    """Real time plus an offset that sleeping advances (shared with the sandbox)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.offset += max(0.0, seconds)
        await asyncio.sleep(0.002)


@dataclass
class Rig:
    rem: Remediator
    registry: CollectorRegistry
    clock: SkewClock
    clients: TargetClients
    state_dir: Path

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"target": TARGET, **labels})


@pytest.fixture
def skew(sb: Any) -> Iterator[SkewClock]:
    clock = SkewClock()
    # The SDKs cache tokens by real time; tokens that outlive any skew keep them valid.
    sb.faults(token_lifetime_seconds=30 * 86400)
    portal = sb.thread.portal
    original = portal.now
    sb.thread.call(lambda: setattr(portal, "now", clock.now))
    yield clock
    sb.thread.call(lambda: setattr(portal, "now", original))


@pytest.fixture
async def tenant_clients(
    sb: Any, operator: Identity, sandbox_cloud: Cloud, target_ref: TargetRef
) -> AsyncIterator[TargetClients]:
    async with (
        TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as session,
        session.target(target_ref) as clients,
    ):
        yield clients


@pytest.fixture
async def health_http(sb: Any) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    async with httpx.AsyncClient(verify=ctx) as http:
        yield http


def make_rig(
    sb: Any,
    clients: TargetClients,
    http: httpx.AsyncClient,
    clock: SkewClock,
    state_dir: Path,
    *,
    settings: WorkflowSettings = FAST,
    guards: GuardSettings | None = None,
    dry_run: bool = False,
    app_action: bool = False,
) -> Rig:
    d = sb.describe
    prober = ExporterProber(
        clients,
        http,
        d["health_url"],
        d["graph_probe_url"],
        2.0,
        app_action_url=d["app_action_url"] if app_action else None,
    )
    registry = CollectorRegistry()
    rem = Remediator(
        targets={TARGET: RemediationTarget(TARGET, clients, prober)},
        state_dir=state_dir,
        settings=settings,
        guard_settings=guards or GuardSettings(),
        clock=clock,
        registry=registry,
        dry_run=dry_run,
    )
    return Rig(rem, registry, clock, clients, state_dir)


@pytest.fixture
def rig(
    sb: Any,
    tenant_clients: TargetClients,
    health_http: httpx.AsyncClient,
    skew: SkewClock,
    tmp_path: Path,
) -> Rig:
    # The app's own background "Sync from Intune" runs throughout, so any 401 the app
    # gets during a rotation is counted by the sandbox.
    sb.faults(app_sync_interval_seconds=0.02)
    return make_rig(sb, tenant_clients, health_http, skew, tmp_path / "state")


RigFactory = Callable[..., Rig]


@pytest.fixture
def rig_with(
    sb: Any,
    tenant_clients: TargetClients,
    health_http: httpx.AsyncClient,
    skew: SkewClock,
    tmp_path: Path,
) -> RigFactory:
    """``rig_with(**settings)``: a rig whose WorkflowSettings are FAST with overrides
    (``app_action=True`` also verifies with the sandbox's app action)."""
    sb.faults(app_sync_interval_seconds=0.02)

    def make(
        *,
        app_action: bool = False,
        guards: GuardSettings | None = None,
        dry_run: bool = False,
        **kw: Any,
    ) -> Rig:
        return make_rig(
            sb,
            tenant_clients,
            health_http,
            skew,
            tmp_path / "state",
            settings=dataclasses.replace(FAST, **kw),
            guards=guards,
            app_action=app_action,
            dry_run=dry_run,
        )

    return make


def assert_converged(sb: Any, *, gone: list[str] = (), kept: list[str] = ()) -> dict[str, Any]:
    """One Key Vault value that works, the app on it, no 401 the app got."""
    st = sb.state()
    creds = {c["keyId"]: c for c in st["credentials"]}
    in_kv = [c for c in creds.values() if c["in_key_vault"]]
    assert len(in_kv) == 1, st["credentials"]
    assert not in_kv[0]["expired"]
    assert in_kv[0]["in_use_by_app"]
    assert st["site"]["resolved_version"] == st["keyvault"]["current_version"]
    assert st["app"]["graph_401_total"] == 0
    for key in gone:
        assert key not in creds
    for key in kept:
        assert key in creds
    return st
