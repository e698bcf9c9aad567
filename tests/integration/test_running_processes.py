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

from tenant.models import SignInLog
from tenant.requestid import is_own

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
    "signin_reads_per_10s": 5,
    "app_user_flow_signins": True,
    "propagation_delay_seconds": 20,
    "graph_read_lag_seconds": 10,
    "site_busy_seconds": 3,
    "refresh_delay_seconds": 5,
}

# The daemon's bounds, matched to the short sandbox delays above.
DAEMON: dict[str, Any] = {
    "overlap_window": OVERLAP,
    "graph_read_lag": 12.0,
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


@pytest.mark.parametrize("signins", ["signins", "intermittent-403", "no-signins"])
@pytest.mark.parametrize("instances", [1, 2])
async def test_without_the_per_instance_view(
    sb: Any,
    rig_with: RigFactory,
    skew: SkewClock,
    sampler: Sampler,
    instances: int,
    signins: str,
) -> None:
    """ARM refuses the per-instance view (a plan or a role that does not serve it): the
    old credential waits for the app's own sign-ins with the new keyId after the
    recycle, in a log caught up past the recycle's allowance, or for the overlap window;
    the daemon's own sign-ins never count."""
    sb.faults(
        **PESSIMISTIC,
        process_model="start_only",
        instances=instances,
        active_version="present",
        operator_can_read_signins=signins != "no-signins",
        # every other read answers 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant
        signin_nonpremium_403_every=2 if signins == "intermittent-403" else None,
        inject=[{"service": "arm", "status": 403, "count": 100000, "path_contains": "/instances"}],
    )
    rig = rig_with(app_action=True, **DAEMON)
    old = sb.in_use_key_id()
    outcome = await rig.rem.run(TARGET, "rotate", "no view")
    assert outcome.outcome == "success", outcome.detail
    assert "pending removal" in outcome.detail  # nothing proves it at once
    assert old in {c["keyId"] for c in sb.state()["credentials"]}

    said = await finish_pending(rig, skew, 90.0, rounds=60)
    assert rig.rem.pending(TARGET) == []
    expected = "overlap window" if signins == "no-signins" else "sign-in evidence"
    assert any(expected in d for d in said), said
    if signins == "intermittent-403":
        assert sb.state()["counters"]["graph"].get("403", 0) >= 1  # it did refuse
    st = await two_lifetimes_later(sb, skew)
    sampler.once()
    assert sampler.violations == []
    assert old not in {c["keyId"] for c in st["credentials"]}
    assert st["app"]["graph_401_total"] == 0


async def test_the_daemons_own_sign_ins_are_recognizable_in_the_log(
    sb: Any, rig_with: RigFactory, skew: SkewClock
) -> None:
    """Every token request of the daemon with the app's secret sends a client-request-id
    of its scheme, which Entra records as the sign-in's correlationId; the app's own
    come from the site's outbound addresses."""
    sb.faults(**{**PESSIMISTIC, "signin_reads_per_10s": None})
    rig = rig_with()
    since = skew.now() - timedelta(seconds=1)
    app_id = await rig.clients.app.client_id()
    value = (await rig.clients.vault.get_current()).value
    assert value is not None
    for _ in range(3):
        assert (await rig.clients.entra.try_secret(app_id, value)).ok
    sb.client.get(sb.describe["app_action_url"])  # the app signs in on its own
    skew.offset += SIGNIN_DELAY + SIGNIN_JITTER + 1
    got = await rig.clients.signins.service_principal_sign_ins(app_id, since)
    assert isinstance(got, SignInLog)
    site = await rig.clients.site.get_site()
    own = [s for s in got.sign_ins if is_own(s.correlation_id)]
    apps = [s for s in got.sign_ins if not is_own(s.correlation_id)]
    assert len({s.correlation_id for s in own}) == 3  # duplicates are read once
    assert len(own) == 3
    assert apps
    assert all(s.ip_address in site.outbound_addresses for s in apps)
    assert not any(s.ip_address in site.outbound_addresses for s in own)
