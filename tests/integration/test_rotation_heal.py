"""Healing a 401: reload when the Key Vault value works, rotate only when it does not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from test_rotation_fixtures import TARGET, Rig, assert_converged

from exporters.observations import GraphAuthObservation, Observed
from remediation.policy import Policy
from tenant.models import TokenFailure

pytest_plugins = ("test_rotation_fixtures",)


def app_action(sb: Any) -> int:
    status: int = sb.client.get(sb.describe["app_action_url"]).status_code
    return status


async def test_a_401_with_a_valid_key_vault_value_reloads_and_does_not_rotate(
    sb: Any, rig: Rig
) -> None:
    sb.faults(app_sync_interval_seconds=0)
    old = sb.in_use_key_id()
    # Someone rotated by hand and forgot the restart: Key Vault holds a working value,
    # the app still holds the old one, which is now gone.
    new = await rig.clients.app.add_password("by hand", None)
    await rig.clients.vault.set_value(new.value, {})
    sb.admin("POST", f"credentials/{old}/revoke")
    assert app_action(sb) == 502  # the portal reports Graph's 401
    assert sb.state()["app"]["graph_401_total"] == 1

    outcome = await rig.rem.run(TARGET, "heal", "test")
    assert outcome.outcome == "success", outcome.detail
    assert not outcome.rotated
    st = sb.state()
    assert [c["keyId"] for c in st["credentials"]] == [new.credential.key_id]  # no new secret
    assert st["site"]["resolved_version"] == st["keyvault"]["current_version"]
    assert app_action(sb) == 200
    assert sb.state()["app"]["graph_401_total"] == 1  # no 401 since
    [run] = rig.rem.journal(TARGET).runs()
    assert run.facts["decision"] == "reload"
    assert "add_password" not in run.done


async def test_a_401_with_an_expired_key_vault_value_rotates(sb: Any, rig: Rig) -> None:
    sb.faults(app_sync_interval_seconds=0)
    old = sb.in_use_key_id()
    sb.admin("POST", f"credentials/{old}/expire")
    assert app_action(sb) == 502
    outcome = await rig.rem.run(TARGET, "heal", "test")
    assert outcome.outcome == "success", outcome.detail
    assert outcome.rotated
    before = sb.state()["app"]["graph_401_total"]
    assert app_action(sb) == 200
    st = sb.state()
    assert st["app"]["graph_401_total"] == before
    assert old not in [c["keyId"] for c in st["credentials"]]  # the expired one went too
    [run] = rig.rem.journal(TARGET).runs()
    assert run.facts["decision"] == "rotate"
    assert (rig.metric("secretwarden_rotation_last_success_timestamp_seconds") or 0) > 0


async def test_heal_on_a_healthy_app_does_nothing(sb: Any, rig: Rig) -> None:
    before = sb.state()
    outcome = await rig.rem.run(TARGET, "heal", "test")
    assert outcome.outcome == "nothing_to_do"
    after = assert_converged(sb)
    assert after["site"]["refreshes"] == before["site"]["refreshes"]
    assert after["credentials"] == before["credentials"]


async def test_the_policy_heals_after_n_auth_failures_from_the_probe(sb: Any, rig: Rig) -> None:
    sb.faults(app_sync_interval_seconds=0)
    old = sb.in_use_key_id()
    sb.admin("POST", f"credentials/{old}/expire")
    rig.rem.policy = Policy(heal_after_failures=2)
    bad = GraphAuthObservation(ok=False, token_ok=False, token_failure=TokenFailure.EXPIRED_SECRET)
    seen = Observed(TARGET, "graph", datetime.now(UTC), bad)
    assert rig.rem.observe(seen) is None
    result = rig.rem.observe(seen)
    assert result is not None
    assert result.status == "started"
    outcome = await rig.rem.wait(TARGET)
    assert outcome is not None
    assert outcome.outcome == "success", outcome.detail
    assert app_action(sb) == 200


async def test_no_rollback_onto_an_expired_value_the_new_credential_is_kept(
    sb: Any, rig: Rig
) -> None:
    """Heal rotates away from an expired value, then the app never gets healthy:
    rolling back would put the expired value back and remove the only credential
    that works. The run fails instead, keeping the new secret in place."""
    sb.faults(app_sync_interval_seconds=0)
    old = sb.in_use_key_id()
    sb.admin("POST", f"credentials/{old}/expire")
    sb.faults(never_healthy=True)
    outcome = await rig.rem.run(TARGET, "heal", "test")
    assert outcome.outcome == "failed", outcome.detail
    assert "rollback.restore" in outcome.detail
    assert "rejected by Entra" in outcome.detail
    st = sb.state()
    [new] = [c for c in st["credentials"] if c["keyId"] != old]
    assert new["in_key_vault"]  # still the current Key Vault value
    assert not new["expired"]
    assert new["in_use_by_app"]
    assert len(st["keyvault"]["versions"]) == 2  # nothing restored
    [run] = rig.rem.journal(TARGET).runs()
    assert "rollback.remove_new" not in run.done
