"""Issue 13: after any removal the app is watched for one token lifetime: its own action
and /health at a short interval, a failure healed at once, and
``secretwarden_credential_removal_watch`` 1 meanwhile (rebuilt from the journal)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from test_rotation_fixtures import TARGET, RigFactory, SkewClock

pytest_plugins = ("test_rotation_fixtures",)

WATCH = 5400.0


def app_action(sb: Any) -> int:
    status: int = sb.client.get(sb.describe["app_action_url"]).status_code
    return status


async def test_a_failure_during_the_watch_heals_at_once(
    sb: Any, rig_with: RigFactory, skew: SkewClock
) -> None:
    sb.faults(app_sync_interval_seconds=0)
    # No per-instance view proof needed: the window is 0 and the recycle's allowance too.
    rig = rig_with(
        app_action=True,
        overlap_window=timedelta(0),
        recycle_allowance=0.0,
        post_removal_watch=WATCH,
        post_removal_watch_interval=1.0,
    )
    old = sb.in_use_key_id()
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert old not in [c["keyId"] for c in sb.state()["credentials"]]
    assert rig.metric("secretwarden_credential_removal_watch") == 1
    assert await rig.rem.watch_check(TARGET) is None  # the app works: nothing to do

    # The credential the app holds stops working (as a worker whose cached token
    # outlived its removed credential does when it signs in again).
    held = sb.in_use_key_id()
    sb.admin("POST", f"credentials/{held}/revoke")
    assert app_action(sb) == 502
    healed = await rig.rem.watch_check(TARGET)
    assert healed is not None
    assert (healed.action, healed.outcome) == ("heal", "success"), healed.detail
    assert "post-removal watch" in (rig.rem.journal(TARGET).runs()[-1].trigger or "")
    assert app_action(sb) == 200

    # A daemon restart keeps the watch (folded from the journal) ...
    again = rig_with(app_action=True, post_removal_watch=WATCH)
    assert again.metric("secretwarden_credential_removal_watch") == 1
    # ... until one token lifetime after the last removal
    skew.offset += WATCH + 1
    assert await again.rem.watch_check(TARGET) is None
    assert again.metric("secretwarden_credential_removal_watch") == 0


async def test_no_removal_no_watch(sb: Any, rig_with: RigFactory) -> None:
    rig = rig_with(app_action=True, post_removal_watch=WATCH)
    assert rig.metric("secretwarden_credential_removal_watch") == 0
    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/revoke")
    assert await rig.rem.watch_check(TARGET) is None  # not watching: the policy's business


async def test_the_refresh_rung_learns_that_arm_never_reports_active_version(
    sb: Any, rig_with: RigFactory
) -> None:
    """ARM reports no activeVersion for this site: the first rotation waits the refresh
    rung out (its timeout) before the configuration change; the next one, having
    learned it from the journal, polls once and moves on."""
    sb.faults(app_sync_interval_seconds=0, active_version="absent")
    kw: dict[str, Any] = {
        "overlap_window": timedelta(0),
        "recycle_allowance": 0.0,
        "refresh_timeout": 30.0,
        "verify_poll": 2.0,
    }

    def refresh_wait(rig: Any) -> float:
        run = rig.rem.journal(TARGET).runs()[-1]
        at = {e.step + ":" + e.phase: e.ts for e in run.entries}
        return float((at["reload.config_change:begin"] - at["reload.refresh:done"]).total_seconds())

    first = rig_with(**kw)
    outcome = await first.rem.run(TARGET, "rotate", "first")
    assert outcome.outcome == "success", outcome.detail
    assert refresh_wait(first) >= 30.0

    second = rig_with(**kw)  # a daemon restart: learned from the journal
    outcome = await second.rem.run(TARGET, "rotate", "second")
    assert outcome.outcome == "success", outcome.detail
    assert refresh_wait(second) <= 2.5

    # Once ARM has reported it, the rung is waited for again.
    sb.faults(active_version="present")
    third = rig_with(**kw)
    outcome = await third.rem.run(TARGET, "rotate", "third")
    assert outcome.outcome == "success", outcome.detail
    # (its short refresh poll may miss the version; the configuration change then shows it)
    sb.faults(active_version="absent")
    fourth = rig_with(**kw)
    outcome = await fourth.rem.run(TARGET, "rotate", "fourth")
    assert outcome.outcome == "success", outcome.detail
    assert refresh_wait(fourth) >= 30.0


async def test_a_cached_token_outliving_its_removed_credential_is_caught_and_healed(
    sb: Any, rig_with: RigFactory, skew: SkewClock
) -> None:
    """A worker the proof missed (emulated: its process is put back as it was before the
    rotation, holding the old value and a cached token) keeps working after its
    credential is removed, until its token expires; then it fails, the watch sees the
    app's own action fail and heals at once (the Key Vault value works: a reload)."""
    sb.faults(
        app_sync_interval_seconds=0,
        process_model="start_only",
        instances=1,
        app_token_lifetime_seconds=600,
        app_token_lifetime_jitter_seconds=0,
    )
    rig = rig_with(app_action=True, post_removal_watch=WATCH, post_removal_watch_interval=1.0)
    assert app_action(sb) == 200  # the worker signs in and caches its token
    portal = sb.thread.portal
    [worker] = portal.site.instances
    before = sb.thread.call(
        lambda: (worker.version, worker.value, worker.token, worker.token_expires_at)
    )
    old = sb.in_use_key_id()
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert old not in {c["keyId"] for c in sb.state()["credentials"]}
    assert rig.metric("secretwarden_credential_removal_watch") == 1

    def stale() -> None:
        worker.version, worker.value, worker.token, worker.token_expires_at = before

    sb.thread.call(stale)
    [w] = sb.state()["site"]["instances"]
    assert w["key_id"] == old  # a removed credential's value, held by a running worker
    assert app_action(sb) == 200  # its cached token still works
    assert await rig.rem.watch_check(TARGET) is None

    skew.offset += 601  # the token expires: the worker signs in with the removed secret
    failures = sb.state()["app"]["graph_401_total"]
    healed = await rig.rem.watch_check(TARGET)
    assert healed is not None
    assert (healed.action, healed.outcome) == ("heal", "success"), healed.detail
    assert not healed.rotated  # the Key Vault value works: a reload, no new secret
    assert sb.state()["app"]["graph_401_total"] > failures
    assert app_action(sb) == 200
    [w] = sb.state()["site"]["instances"]
    assert w["key_id"] != old
