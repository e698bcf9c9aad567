"""Verification reuses the exporters' probes: "detected" and "fixed" mean the same,
plus the app's own Graph-backed action when the target names one.

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
from tenant.models import AppActionOutcome
from tenant.ports import TargetClients


class Prober(Protocol):
    async def health(self) -> HealthObservation: ...

    async def graph_auth(self) -> GraphAuthObservation: ...

    async def reference(self) -> ReferenceObservation: ...

    async def app_action(self) -> AppActionOutcome | None:
        """The app's own Graph-backed action; None when the target names none."""
        ...


@dataclass(frozen=True, slots=True)
class ExporterProber:
    clients: TargetClients
    http: httpx.AsyncClient
    health_url: str
    graph_probe_url: str
    health_timeout: float = 10.0
    app_action_url: str | None = None

    async def health(self) -> HealthObservation:
        return await probe_health(self.http, self.health_url, self.health_timeout)

    async def graph_auth(self) -> GraphAuthObservation:
        return await probe_graph_auth(self.clients, self.graph_probe_url)

    async def reference(self) -> ReferenceObservation:
        return await probe_reference(self.clients)

    async def app_action(self) -> AppActionOutcome | None:
        if self.app_action_url is None:
            return None
        return await self.clients.action.run(self.app_action_url)


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str  # what was checked, or what failed first
    # True when waiting longer cannot help: the app is up (health OK) but holds another
    # version, so this rung did not load the new value and the ladder should climb.
    settled: bool = False
    # What proves the app holds the expected version (ARM's activeVersion, or a pinned
    # reference resolved on it); None: unknown. A missing activeVersion is never proof.
    proof: str | None = None
    active_seen: bool = False  # ARM reported an activeVersion (any)

    def __bool__(self) -> bool:
        return self.ok


async def verify_app(
    prober: Prober,
    expected_version: str,
    *,
    health: bool = True,
    graph: bool = True,
    action: bool = True,
) -> Verification:
    """Is the app working, and is it on Key Vault version ``expected_version``?

    Fails when the reference is not resolved, when ARM says the app holds (or the
    reference pins) another version, when Key Vault moved on, or (as asked) when
    ``/health`` is not 200, the Graph probe fails or the app's own Graph-backed action
    fails. Passes with ``proof`` when ARM's activeVersion or a pinned reference names
    ``expected_version``, and with ``proof`` None when the version is unknown (ARM
    reports no activeVersion): working, but not proven on the new version.
    """
    ref = await prober.reference()
    if not ref.ok:
        return Verification(False, f"reference probe failed: {ref.error}")
    if not ref.resolved or ref.reference is None:
        status = ref.reference.status if ref.reference else "missing"
        return Verification(False, f"Key Vault reference not resolved ({status})")
    active = ref.reference.active_version
    pinned = ref.reference.secret_version
    held = active or pinned
    if held is not None and held != expected_version:
        what = "app holds" if active else "reference is pinned to"
        reason = f"{what} version {held}, want {expected_version}"
        h = await prober.health()
        return Verification(False, reason, settled=h.ok, active_seen=active is not None)
    if ref.current_version is not None and ref.current_version != expected_version and not pinned:
        return Verification(False, f"Key Vault moved to {ref.current_version}")
    proof = (
        f"ARM reports activeVersion {expected_version}"
        if active == expected_version
        else f"the pinned reference resolved on version {expected_version}"
        if pinned == expected_version
        else None
    )
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
    checked = "healthy, Graph OK" if health or graph else "reference resolved"
    if action:
        a = await prober.app_action()
        if a is not None:
            if not a.ok:
                return Verification(
                    False, f"the app's own action failed (HTTP {a.status}: {a.detail})"
                )
            checked += ", app action OK"
    where = f"on version {expected_version}" if proof else "version unknown (no proof)"
    return Verification(
        True, f"app {where}, {checked}", proof=proof, active_seen=active is not None
    )
