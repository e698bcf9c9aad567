"""Failure paths nobody had tested: each ends safe and says why."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from test_rotation_fixtures import TARGET, RigFactory, assert_converged

from tenant.models import KEY_ID_TAG, SecretValue

pytest_plugins = ("test_rotation_fixtures",)

DOCUMENTED: dict[str, Any] = {
    "reload_model": "documented",
    "active_version": "present",
    "site_busy_seconds": 3,
    "refresh_delay_seconds": 5,
}


async def test_entra_never_accepting_the_new_secret_removes_it_and_writes_nothing(
    sb: Any, rig_with: RigFactory
) -> None:
    sb.faults(**DOCUMENTED, propagation_delay_seconds=100_000)
    old = sb.in_use_key_id()
    version = sb.state()["keyvault"]["current_version"]
    rig = rig_with(propagation_timeout=60.0, graph_read_lag=1)
    outcome = await rig.rem.run(TARGET, "rotate", "never propagates")
    assert outcome.outcome == "failed"
    assert "wait_propagation" in outcome.detail
    assert "did not accept the new secret within 60s" in outcome.detail
    st = assert_converged(sb, kept=[old])
    assert [c["keyId"] for c in st["credentials"]] == [old]  # the unproven one is gone
    assert st["keyvault"]["current_version"] == version  # never written
    [run] = rig.rem.journal(TARGET).runs()
    assert "compensate" in run.done


async def test_a_rollback_the_app_cannot_reload_keeps_the_new_credential(
    sb: Any, rig_with: RigFactory
) -> None:
    """The new secret never verifies (no reload reaches the site), and the restored
    previous value cannot be loaded either: the new credential stays, the app keeps the
    value it holds, and the error says so."""
    sb.faults(
        **DOCUMENTED,
        inject=[
            {"service": "arm", "status": 500, "count": 10_000, "method": "POST"},
            {"service": "arm", "status": 500, "count": 10_000, "method": "PUT"},
        ],
    )
    old = sb.in_use_key_id()
    rig = rig_with(graph_read_lag=1, transition_attempts=1, step_attempts=1)
    outcome = await rig.rem.run(TARGET, "rotate", "no reload works")
    assert outcome.outcome == "failed"
    assert "did not return to the restored version" in outcome.detail
    [run] = rig.rem.journal(TARGET).runs()
    new = run.facts["new_key_id"]
    assert f"the new credential {new} was kept" in outcome.detail
    st = sb.state()
    keys = {c["keyId"] for c in st["credentials"]}
    assert keys == {old, new}  # nothing removed
    assert [c["keyId"] for c in st["credentials"] if c["in_use_by_app"]] == [old]
    assert st["app"]["graph_401_total"] == 0


async def test_dry_run_of_an_automatic_run_asks_is_it_due_and_writes_nothing(
    sb: Any, rig_with: RigFactory
) -> None:
    sb.faults(**DOCUMENTED)
    before = sb.state()
    rig = rig_with(dry_run=True)
    started = rig.rem.trigger(TARGET, "rotate", "policy: test")  # not forced
    assert started.status == "started"
    outcome = await rig.rem.wait(TARGET)
    assert outcome is not None
    assert outcome.outcome == "nothing_to_do", outcome.detail  # a year left: not due
    due = rig_with(dry_run=True, rotate_before=timedelta(days=400))
    assert due.rem.trigger(TARGET, "rotate", "policy: test").status == "started"
    outcome = await due.rem.wait(TARGET)
    assert outcome is not None
    assert outcome.outcome == "dry_run", outcome.detail
    after = sb.state()
    assert after["credentials"] == before["credentials"]
    assert after["keyvault"]["versions"] == before["keyvault"]["versions"]
    assert after["site"]["config_changes"] == before["site"]["config_changes"]
    assert not rig.rem.journal(TARGET).path.exists()


async def test_a_key_vault_tag_that_disagrees_with_the_value_is_settled_by_entra(
    sb: Any, rig_with: RigFactory
) -> None:
    """Key Vault's tag names another credential, but the value's hint matches only the
    in-use one and Entra accepts the value: the in-use credential is the old one; the
    credential the stale tag names is someone else's and stays."""
    sb.faults(**DOCUMENTED)
    old = sb.in_use_key_id()
    rig = rig_with(app_action=True, graph_read_lag=1)
    other = (await rig.clients.app.add_password("someone else's", None)).credential.key_id
    current = await rig.clients.vault.get_current()
    assert current.value is not None
    await rig.clients.vault.set_value(current.value, {KEY_ID_TAG: other})
    await rig.clients.site.configuration_change("test: load the re-tagged version")
    sb.faults(site_busy_seconds=0)
    outcome = await rig.rem.run(TARGET, "rotate", "tag disagrees")
    assert outcome.outcome == "success", outcome.detail
    assert_converged(sb, gone=[old], kept=[other])


async def test_a_key_vault_tag_that_disagrees_and_no_verdict_from_entra_removes_nothing(
    sb: Any, rig_with: RigFactory
) -> None:
    """Same disagreement, but Entra cannot be asked (throttled): no certainty, so the
    old credential is not removed, and the outcome says why."""
    sb.faults(**DOCUMENTED)
    old = sb.in_use_key_id()
    rig = rig_with(app_action=True, graph_read_lag=1)
    other = (await rig.clients.app.add_password("someone else's", None)).credential.key_id
    current = await rig.clients.vault.get_current()
    assert current.value is not None
    await rig.clients.vault.set_value(SecretValue(current.value.reveal()), {KEY_ID_TAG: other})
    await rig.clients.site.configuration_change("test: load the re-tagged version")
    sb.faults(
        site_busy_seconds=0,
        inject=[{"service": "entra", "status": 429, "count": 1, "retry_after": 1}],
    )
    outcome = await rig.rem.run(TARGET, "rotate", "tag disagrees, no verdict")
    assert outcome.outcome == "success", outcome.detail
    assert f"the Key Vault tag names {other}" in outcome.detail
    assert_converged(sb, kept=[old, other])


async def test_a_pinned_rollback_pins_the_restored_value_and_removes_the_new_one(
    sb: Any, rig_with: RigFactory
) -> None:
    """A pinned reference: the rotation pins the new version; the app never gets healthy
    on it, so the rollback restores the previous value as a new version and pins that
    one (a configuration change); the pinned reference resolved on it is the proof
    that lets the new credential go at once."""
    sb.faults(**{**DOCUMENTED, "active_version": "absent"})
    rig = rig_with(pinned_reference=True, graph_read_lag=1)
    await rig.clients.site.write_reference(sb.state()["keyvault"]["current_version"])
    sb.faults(site_busy_seconds=0, never_healthy=True)
    old = sb.in_use_key_id()
    outcome = await rig.rem.run(TARGET, "rotate", "pinned rollback")
    assert outcome.outcome == "rolled_back", outcome.detail
    assert "new credential removed" in outcome.detail
    st = sb.state()
    kv = st["keyvault"]
    assert st["site"]["reference"] == {
        "secret_name": "AzureAdClientSecret",
        "version": kv["current_version"],
        "pinned": True,
    }
    assert [c["keyId"] for c in st["credentials"]] == [old]
    assert st["site"]["resolved_version"] == kv["current_version"]
    assert st["app"]["graph_401_total"] == 0
    [run] = rig.rem.journal(TARGET).runs()
    assert "rollback.reload.pin" in run.done
    removed = next(e for e in run.entries if e.step == "rollback.remove_new" and e.phase == "done")
    assert "pinned reference resolved" in removed.data["proof"]
