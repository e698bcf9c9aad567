"""Verification reuses the exporters' probes: "detected" and "fixed" mean the same.

:class:`Prober` is the handful of probes remediation needs for one target;
:class:`ExporterProber` binds the exporters' probe functions to a target, and tests of
pure logic can pass any object with the same methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from exporters.graph_auth import probe_graph_auth
from exporters.health import probe_health
from exporters.observations import (
    GraphAuthObservation,
    HealthObservation,
    ReferenceObservation,
)
from exporters.reference import probe_reference
from tenant.ports import TargetClients


class Prober(Protocol):
    async def health(self) -> HealthObservation: ...

    async def graph_auth(self) -> GraphAuthObservation: ...

    async def reference(self) -> ReferenceObservation: ...


@dataclass(frozen=True, slots=True)
class ExporterProber:
    clients: TargetClients
    http: httpx.AsyncClient
    health_url: str
    graph_probe_url: str
    health_timeout: float = 10.0

    async def health(self) -> HealthObservation:
        return await probe_health(self.http, self.health_url, self.health_timeout)

    async def graph_auth(self) -> GraphAuthObservation:
        return await probe_graph_auth(self.clients, self.graph_probe_url)

    async def reference(self) -> ReferenceObservation:
        return await probe_reference(self.clients)


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str  # what was checked, or what failed first
    # True when waiting longer cannot help: the app is up (health OK) but holds another
    # version, so this rung did not load the new value and the ladder should climb.
    settled: bool = False

    def __bool__(self) -> bool:
        return self.ok


async def verify_app(
    prober: Prober, expected_version: str, *, health: bool = True, graph: bool = True
) -> Verification:
    """Is the app running on Key Vault version ``expected_version``, and does it work?

    The reference must be resolved to that version; then (when asked) ``/health`` must
    answer 200 and the Graph probe must succeed with the value Key Vault holds.
    """
    ref = await prober.reference()
    if not ref.ok:
        return Verification(False, f"reference probe failed: {ref.error}")
    if not ref.resolved or ref.reference is None:
        status = ref.reference.status if ref.reference else "missing"
        return Verification(False, f"Key Vault reference not resolved ({status})")
    active = ref.reference.active_version
    if active is not None and active != expected_version:
        reason = f"app holds version {active}, want {expected_version}"
        h = await prober.health()
        return Verification(False, reason, settled=h.ok)
    if active is None and (ref.stale or ref.current_version != expected_version):
        return Verification(False, f"reference not on version {expected_version}")
    if health:
        h = await prober.health()
        if not h.ok:
            return Verification(False, f"/health not OK (status {h.status_code}: {h.error})")
    if graph:
        g = await prober.graph_auth()
        if not g.ok:
            return Verification(False, f"Graph probe failed ({g.reason}: {g.error})")
        if g.keyvault_version is not None and g.keyvault_version != expected_version:
            return Verification(
                False, f"Key Vault moved to {g.keyvault_version} during verification"
            )
    return Verification(True, f"app on version {expected_version}, healthy, Graph OK")
