"""Issue 13: the removal proof holds for the app's *running processes*.

A matrix over the sandbox's pessimistic App Service: process_model (start_only,
recycle_on_refetch) x instances (1, 2) x active_version (absent, present) x sign-in
evidence (readable, not) x the reference (versionless, pinned), with short token
lifetimes and short delays. Every cell ends rotated or safely pending (then finishes);
a sampler reads ``GET state`` throughout and no worker ever holds the value of a
removed credential; the app counts no 401 for two token lifetimes after the run.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from test_rotation_fixtures import TARGET, Rig, RigFactory, SkewClock

pytest_plugins = ("test_rotation_fixtures",)

LIFETIME = 120.0  # the app's token lifetime (s), short so two of them pass quickly
JITTER = 30.0
OVERLAP = timedelta(hours=1)
SIGNIN_DELAY = 30.0
SIGNIN_JITTER = 20.0

PESSIMISTIC: dict[str, Any] = {
    "instance_recycle_stagger_seconds": 3,
    "config_change_delay_seconds": 2,
    "app_token_lifetime_seconds": LIFETIME,
    "app_token_lifetime_jitter_seconds": JITTER,
    "signin_log_delay_seconds": SIGNIN_DELAY,
    "signin_log_jitter_seconds": SIGNIN_JITTER,
    "signin_log_duplicates": True,
    "propagation_delay_seconds": 4,
    "graph_read_lag_seconds": 2,
    "site_busy_seconds": 3,
    "refresh_delay_seconds": 5,
}

# The daemon's bounds, matched to the short sandbox delays above.
DAEMON: dict[str, Any] = {
    "overlap_window": OVERLAP,
    "graph_read_lag": 2.0,
    "signin_log_reorder": SIGNIN_JITTER + 5,
    "signin_log_delay_bound": SIGNIN_DELAY + SIGNIN_JITTER + 10,
    "recycle_allowance": 60.0,
    "clock_skew": 1.0,
    "post_removal_watch": LIFETIME + JITTER,
    "post_removal_watch_interval": 1.0,
}


@dataclass
class Sampler:
    """Reads ``GET state`` over and over while a run goes on: a worker holding the value
    of a credential that no longer exists is a violation (the next sign-in fails)."""

    client: httpx.Client
    url: str
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    stop: bool = False

    def once(self) -> None:
        st = self.client.get(self.url).json()
        keys = {c["keyId"] for c in st["credentials"]}
        for w in st["site"]["instances"]:
            if w.get("key_id") is not None and w["key_id"] not in keys:
                self.violations.append(
                    f"instance {w['id']} holds removed credential {w['key_id']} "
                    f"(version {w.get('version')})"
                )
        self.samples += 1

    async def run(self) -> None:
        while not self.stop:
            await asyncio.to_thread(self.once)
            await asyncio.sleep(0.005)


@pytest.fixture
async def sampler(sb: Any) -> AsyncIterator[Sampler]:
    ctx = ssl.create_default_context(cafile=sb.ca_file)
    with httpx.Client(verify=ctx, timeout=10) as client:
        s = Sampler(client, sb.describe["admin_url"] + "state")
        task = asyncio.create_task(s.run())
        yield s
        s.stop = True
        await task


async def pin_reference(sb: Any, rig: Rig, skew: SkewClock) -> None:
    version = sb.state()["keyvault"]["current_version"]
    await rig.clients.site.write_reference(version)
    skew.offset += 30  # the configuration change recycles every instance, staggered
    await asyncio.sleep(0.05)
    assert sb.state()["site"]["reference"]["pinned"]


async def finish_pending(rig: Rig, skew: SkewClock, step: float, rounds: int = 8) -> list[str]:
    """Let time pass and the Remediator look again until nothing is pending."""
    said: list[str] = []
    for _ in range(rounds):
        if not rig.rem.pending(TARGET):
            break
        skew.offset += step
        done = await rig.rem.check_pending(TARGET)
        if done is not None:
            assert done.outcome == "success", done.detail
            said.append(done.detail)
    return said


async def two_lifetimes_later(sb: Any, skew: SkewClock) -> dict[str, Any]:
    """Every worker's token expires (twice): each signs in again with what it holds."""
    for _ in range(2):
        skew.offset += LIFETIME + JITTER + 1
        await asyncio.sleep(0.3)  # the app's background sync runs (real time)
    return sb.state()


@pytest.mark.parametrize("signins", ["signins", "no-signins"])
@pytest.mark.parametrize("reference", ["versionless", "pinned"])
@pytest.mark.parametrize("active", ["absent", "present"])
@pytest.mark.parametrize("instances", [1, 2])
@pytest.mark.parametrize("model", ["start_only", "recycle_on_refetch"])
async def test_running_process_matrix(
    sb: Any,
    rig_with: RigFactory,
    skew: SkewClock,
    sampler: Sampler,
    model: str,
    instances: int,
    active: str,
    reference: str,
    signins: str,
) -> None:
    sb.faults(
        **PESSIMISTIC,
        process_model=model,
        instances=instances,
        active_version=active,
        operator_can_read_signins=signins == "signins",
    )
    pinned = reference == "pinned"
    rig = rig_with(app_action=True, pinned_reference=pinned, **DAEMON)
    if pinned:
        await pin_reference(sb, rig, skew)
    old = sb.in_use_key_id()

    outcome = await rig.rem.run(TARGET, "rotate", "matrix")
    assert outcome.outcome == "success", outcome.detail
    st = sb.state()
    new_version = st["keyvault"]["current_version"]
    # every worker was started anew on the new version before anything was removed
    assert {w["version"] for w in st["site"]["instances"]} == {new_version}, st["site"]
    assert len(st["site"]["instances"]) == instances
    if rig.rem.pending(TARGET):
        assert "pending removal" in outcome.detail
        assert rig.metric("secretwarden_credential_pending_removal", key_id=old) == 1
        until = rig.metric("secretwarden_credential_pending_until_timestamp_seconds", key_id=old)
        assert until is not None
        assert until > skew.now().timestamp()
        await finish_pending(rig, skew, OVERLAP.total_seconds() / 4)
    assert rig.rem.pending(TARGET) == []
    assert rig.metric("secretwarden_credential_pending_removal", key_id=old) is None
    assert rig.metric("secretwarden_credential_removal_watch") == 1

    st = await two_lifetimes_later(sb, skew)
    sampler.once()
    assert sampler.samples > 5
    assert sampler.violations == []
    assert old not in {c["keyId"] for c in st["credentials"]}
    assert st["app"]["graph_401_total"] == 0
    assert st["site"]["state"] == "Running"
    assert all(w["key_id"] is not None for w in st["site"]["instances"])
