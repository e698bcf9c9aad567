"""The rotation across every App Service behaviour the public sources leave open.

reload_model (documented, runbook, optimistic) x active_version (absent, present) x the
reference (versionless, pinned) x sign-in evidence (readable, not): every cell ends
rotated (one credential, the app on it), proven by ARM's per-instance view (issue 13),
and the sandbox's app (its background sync and its own action) never gets a 401. The
pending path and its finish are tests/integration/test_running_processes.py's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from test_rotation_fixtures import TARGET, Rig, RigFactory, SkewClock, assert_converged

pytest_plugins = ("test_rotation_fixtures",)

OVERLAP = timedelta(hours=1)
SIGNIN_DELAY = 60.0


async def pin_reference(sb: Any, rig: Rig, skew: SkewClock) -> None:
    """Point the app setting at the current version (a pinned reference)."""
    version = sb.state()["keyvault"]["current_version"]
    await rig.clients.site.write_reference(version)
    skew.offset += 5  # the configuration change leaves the site busy a while
    assert sb.state()["site"]["reference"]["pinned"]


def pending_metric(rig: Rig, key_id: str) -> float | None:
    return rig.registry.get_sample_value(
        "secretwarden_credential_pending_removal", {"target": TARGET, "key_id": key_id}
    )


def assert_app_safe(st: dict[str, Any]) -> None:
    """The app holds a credential that exists and works; it never got a 401."""
    assert any(c["in_use_by_app"] and not c["expired"] for c in st["credentials"]), st
    assert st["app"]["graph_401_total"] == 0
    assert st["site"]["state"] == "Running"


@pytest.mark.parametrize("signins", ["signins", "no-signins"])
@pytest.mark.parametrize("reference", ["versionless", "pinned"])
@pytest.mark.parametrize("active", ["absent", "present"])
@pytest.mark.parametrize("model", ["documented", "runbook", "optimistic"])
async def test_rotation_matrix(
    sb: Any,
    rig_with: RigFactory,
    skew: SkewClock,
    model: str,
    active: str,
    reference: str,
    signins: str,
) -> None:
    sb.faults(
        reload_model=model,
        active_version=active,
        site_busy_seconds=3,
        refresh_delay_seconds=5,
        operator_can_read_signins=signins == "signins",
        signin_log_delay_seconds=SIGNIN_DELAY,
    )
    pinned = reference == "pinned"
    rig = rig_with(
        app_action=True,
        overlap_window=OVERLAP,
        pinned_reference=pinned,
        graph_read_lag=2.0,
    )
    if pinned:
        await pin_reference(sb, rig, skew)
    old = sb.in_use_key_id()

    outcome = await rig.rem.run(TARGET, "rotate", "matrix")
    assert outcome.outcome == "success", outcome.detail
    st = sb.state()
    assert_app_safe(st)
    # Proof right away (issue 13): every worker started after the cache held the new
    # version: a configuration change (or the pin) re-fetches and recycles, and a
    # refresh ARM proves is followed by a Restart; ARM's per-instance view shows it.
    assert_converged(sb, gone=[old])
    assert pending_metric(rig, old) is None
    assert rig.rem.pending(TARGET) == []
    removed = next(
        e
        for r in rig.rem.journal(TARGET).runs()
        for e in r.entries
        if e.step == "remove_old" and e.phase == "done"
    )
    assert "every worker process" in removed.data["proof"]
