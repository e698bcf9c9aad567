"""rotate_secret against the sandbox with the real SDKs.

Every test also checks that the app never got a 401 from Graph because of the rotation
(the sandbox counts the 401s of the app's own background sync) and that no credential
still needed was removed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from structlog.testing import capture_logs
from test_rotation_fixtures import (
    TARGET,
    Rig,
    RigFactory,
    assert_converged,
)

from tenant.models import KEY_ID_TAG, SecretValue

# The fixtures (rig, skew, tenant_clients, health_http) live there.
pytest_plugins = ("test_rotation_fixtures",)


def current(st: dict[str, Any]) -> dict[str, Any]:
    kv = st["keyvault"]
    return next(v for v in kv["versions"] if v["version"] == kv["current_version"])


async def test_happy_path_rotates_with_the_least_force(sb: Any, rig: Rig) -> None:
    old = sb.in_use_key_id()
    before = sb.state()
    events: list[Any] = []
    with capture_logs() as logs:
        outcome = await rig.rem.run(TARGET, "rotate", "test", progress=events.append)
    assert outcome.outcome == "success", outcome.detail
    st = assert_converged(sb, gone=[old])
    # no secret value in a log event or a progress line
    said = repr(logs) + repr(events) + outcome.detail
    assert len(st["keyvault"]["versions"]) == 2
    for v in st["keyvault"]["versions"]:
        assert v["value"] not in said
    [new] = st["credentials"]
    assert new["displayName"].startswith("secretwarden ")
    assert current(st)["tags"][KEY_ID_TAG] == new["keyId"]
    assert st["site"]["refreshes"] == 1
    # activeVersion proves the platform's cache only: a Restart starts the workers on it
    assert st["site"]["restarts"] == before["site"]["restarts"] + 1
    assert rig.metric("secretwarden_remediation_total", action="rotate", outcome="success") == 1
    assert (rig.metric("secretwarden_rotation_last_success_timestamp_seconds") or 0) > 0
    assert rig.metric("secretwarden_remediation_in_progress", action="rotate") == 0
    # the journal says what happened and holds no secret value
    text = rig.rem.journal(TARGET).path.read_text()
    for v in st["keyvault"]["versions"]:
        assert v["value"] not in text
    [run] = rig.rem.journal(TARGET).runs()
    assert run.outcome == "success"
    assert run.done[:4] == ["plan", "add_password", "wait_propagation", "write_keyvault"]
    # the old credential went on proof (every worker started after ARM showed the new
    # version in its cache), then the app was checked
    assert run.done[-2:] == ["remove_old", "recheck"]
    removed = next(e for e in run.entries if e.step == "remove_old" and e.phase == "done")
    assert "every worker process" in removed.data["proof"]
    assert "after the cache held version" in removed.data["proof"]


async def test_entra_propagation_delay_of_30s_is_waited_out(sb: Any, rig: Rig) -> None:
    old = sb.in_use_key_id()
    sb.faults(propagation_delay_seconds=30)
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert_converged(sb, gone=[old])
    [run] = rig.rem.journal(TARGET).runs()
    waited = next(e for e in run.entries if e.step == "wait_propagation" and e.phase == "done")
    assert waited.data["seconds"] >= 30
    assert waited.data["tries"] > 1
    # never wrote an unproven value: Entra refused it first (invalid until propagated)
    assert sb.state()["counters"]["entra"].get("401", 0) >= 1


async def test_sticky_cache_climbs_to_stop_and_start(sb: Any, rig_with: RigFactory) -> None:
    # A target without the configuration-change rung (say, no permission to write app
    # settings) climbs past Restart to Stop+Start.
    # The runbook's model: Stop+Start re-reads the reference (Restart does not).
    rig = rig_with(rungs=("refresh", "restart", "stop_start"))
    old = sb.in_use_key_id()
    sb.faults(
        reload_model="runbook",
        sticky_cache=True,
        cold_start_seconds=20,
        inject=[{"service": "arm", "status": 500, "count": 100, "path_contains": "refresh"}],
    )
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    st = assert_converged(sb, gone=[old])
    # tried and did not help; then, once ARM showed the new version after Stop+Start,
    # once more so that every worker started after the cache held it (issue 13)
    assert st["site"]["restarts"] == 2
    assert st["site"]["stops"] == 1
    [run] = rig.rem.journal(TARGET).runs()
    assert "reload.refresh" in run.failed
    assert "reload.restart" in run.done
    assert "reload.stop_start" in run.done
    verified = next(e for e in run.entries if e.step == "verify")
    assert verified.data["rung"] == "restart"
    assert verified.data["recycled_at"] > verified.data["cache_at"]


async def test_never_healthy_app_rolls_back_with_the_old_credential_intact(
    sb: Any, rig: Rig
) -> None:
    old = sb.in_use_key_id()
    old_value = current(sb.state())["value"]
    sb.faults(never_healthy=True)
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "rolled_back", outcome.detail
    assert "/health" in outcome.detail
    st = assert_converged(sb, kept=[old])
    assert [c["keyId"] for c in st["credentials"]] == [old]  # the new one is gone
    assert current(st)["value"] == old_value
    assert rig.metric("secretwarden_remediation_total", action="rotate", outcome="rolled_back") == 1
    assert (rig.metric("secretwarden_rotation_last_success_timestamp_seconds") or 0) == 0


async def test_key_vault_write_failing_after_add_password_removes_the_orphan(
    sb: Any, rig: Rig
) -> None:
    old = sb.in_use_key_id()
    version = sb.state()["keyvault"]["current_version"]
    sb.faults(inject=[{"service": "keyvault", "status": 503, "count": 100, "method": "PUT"}])
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "failed"
    assert "write_keyvault" in outcome.detail
    assert TARGET in outcome.detail
    st = assert_converged(sb, kept=[old])
    assert [c["keyId"] for c in st["credentials"]] == [old]
    assert st["keyvault"]["current_version"] == version
    [run] = rig.rem.journal(TARGET).runs()
    assert "compensate" in run.done
    assert rig.metric("secretwarden_remediation_total", action="rotate", outcome="failed") == 1


async def test_graph_429s_throughout_are_waited_out(sb: Any, rig: Rig) -> None:
    old = sb.in_use_key_id()
    sb.faults(
        inject=[
            {
                "service": "graph",
                "status": 429,
                "count": 2,
                "retry_after": 3,
                "path_contains": "addPassword",
            },
            {
                "service": "graph",
                "status": 429,
                "count": 2,
                "retry_after": 3,
                "path_contains": "removePassword",
            },
            {"service": "graph", "status": 429, "count": 2, "retry_after": 3, "method": "GET"},
        ]
    )
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert_converged(sb, gone=[old])
    assert sb.state()["counters"]["graph"]["429"] == 6
    assert rig.clock.offset >= 9  # Retry-After honoured (on the shared clock)


async def test_too_many_secrets_removes_an_expired_unused_one(sb: Any, rig: Rig) -> None:
    old = sb.in_use_key_id()
    spare = (await rig.clients.app.add_password("left over", None)).credential.key_id
    sb.admin("POST", f"credentials/{spare}/expire")
    sb.faults(max_password_credentials=2)
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert_converged(sb, gone=[old, spare])


async def test_too_many_secrets_without_a_spare_fails_clearly(sb: Any, rig: Rig) -> None:
    old = sb.in_use_key_id()
    other = (await rig.clients.app.add_password("someone else's", None)).credential.key_id
    sb.faults(max_password_credentials=2)
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "failed"
    assert outcome.permanent
    assert "maximum number of client secrets" in outcome.detail
    assert_converged(sb, kept=[old, other])


async def test_a_lifetime_policy_violation_is_reported_not_retried(sb: Any, rig: Rig) -> None:
    old = sb.in_use_key_id()
    sb.faults(max_password_lifetime_days=30)
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "failed"
    assert outcome.permanent
    assert "add_password" in outcome.detail
    assert sb.state()["counters_by_method"]["graph"].get("POST", 0) == 1  # one try only
    assert_converged(sb, kept=[old])


def give_hint(sb: Any, key_id: str, hint: str) -> None:
    """Make a credential's secret start with ``hint`` (in-process: no admin route)."""
    portal = sb.thread.portal

    def edit() -> None:
        c = next(c for c in portal.credentials if c.key_id == key_id)
        c.secret_text = hint + c.secret_text[3:]

    sb.thread.call(edit)


async def test_a_hint_collision_removes_no_credential_it_cannot_tell_apart(
    sb: Any, rig: Rig
) -> None:
    """Two credentials share the Key Vault value's hint and nothing says which one the
    value is: guessing could delete someone else's secret, so none is removed."""
    old = sb.in_use_key_id()
    old_hint = next(c["hint"] for c in sb.state()["credentials"] if c["keyId"] == old)
    soon = rig.clock.now() + timedelta(days=10)  # ends first: the exporter's "safe guess"
    other = (await rig.clients.app.add_password("someone else's", soon)).credential.key_id
    give_hint(sb, other, old_hint)
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert "share" in outcome.detail
    assert_converged(sb, kept=[old, other])


async def test_a_key_vault_value_matching_no_credential_removes_none(sb: Any, rig: Rig) -> None:
    """Key Vault holds a wrong value that happens to share another credential's hint:
    Entra refuses the value, so that credential is not "the old one"."""
    old = sb.in_use_key_id()
    other = (await rig.clients.app.add_password("someone else's", None)).credential.key_id
    other_hint = next(c["hint"] for c in sb.state()["credentials"] if c["keyId"] == other)
    await rig.clients.vault.set_value(SecretValue(other_hint + "-not-a-real-secret-value"), {})
    outcome = await rig.rem.run(TARGET, "rotate", "test")
    assert outcome.outcome == "success", outcome.detail
    assert_converged(sb, kept=[old, other])


async def test_a_two_secret_app_whose_in_use_secret_expired_frees_that_slot(
    sb: Any, rig: Rig
) -> None:
    """Issue 13: an app that allows personal Microsoft accounts holds at most two
    secrets. The one the app uses has expired (it signs nobody in) and the other is
    someone else's, valid: the expired one frees the slot (past the clock skew), the
    other is never touched, and the app ends on the new one."""
    sb.faults(password_credential_limit=2, app_sync_interval_seconds=0)  # the app is quiet
    old = sb.in_use_key_id()
    other = (await rig.clients.app.add_password("someone else's", None)).credential.key_id
    sb.admin("POST", f"credentials/{old}/expire")
    rig.clock.offset += 5  # beyond the rig's clock skew (1 s)
    outcome = await rig.rem.run(TARGET, "heal", "expired")
    assert outcome.outcome == "success", outcome.detail
    assert outcome.rotated
    st = sb.state()
    creds = {c["keyId"]: c for c in st["credentials"]}
    assert old not in creds
    assert other in creds
    assert len(creds) == 2
    [held] = [c for c in creds.values() if c["in_use_by_app"]]
    assert held["in_key_vault"]
    assert not held["expired"]
    assert sb.client.get(sb.describe["app_action_url"]).status_code == 200
    [run] = rig.rem.journal(TARGET).runs()
    freed = next(e for e in run.entries if e.step == "free_slot" and e.phase == "done")
    assert freed.data["freed_key_id"] == old


async def test_a_two_secret_app_rotates_twice(sb: Any, rig: Rig) -> None:
    """Two secrets at most: each rotation adds one (two held) and removes the old one
    on proof, so the next rotation has its slot."""
    sb.faults(password_credential_limit=2)
    for _ in range(2):
        old = sb.in_use_key_id()
        outcome = await rig.rem.run(TARGET, "rotate", "two-secret")
        assert outcome.outcome == "success", outcome.detail
        st = assert_converged(sb, gone=[old])
        assert len(st["credentials"]) == 1
