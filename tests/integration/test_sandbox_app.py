"""The App Service side of the sandbox: health, the Graph-backed action, what a restart
resolves (sticky cache), cold start, the background sync's 401 count, persistence and
the ``serve`` entry point."""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from sandbox import Sandbox
from sandbox.snapshot import state_json
from sandbox.testing import SandboxHandle

ARM = "https://management.azure.com/.default"
GRAPH = "https://graph.microsoft.com/.default"
VAULT = "https://vault.azure.net/.default"


def op_token(sb: SandboxHandle, scope: str) -> dict[str, str]:
    d = sb.describe
    resp = sb.client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": d["operator"]["client_id"],
            "client_secret": d["operator"]["client_secret"],
            "scope": scope,
        },
    )
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def site_post(sb: SandboxHandle, action: str, query: str = "") -> httpx.Response:
    d = sb.describe
    url = (
        f"{d['arm_url']}/subscriptions/{d['subscription_id']}/resourceGroups/"
        f"{d['resource_group']}/providers/Microsoft.Web/sites/{d['site_name']}/{action}"
        f"?api-version=2025-05-01{query}"
    )
    return sb.client.post(url, headers=op_token(sb, ARM))


def rotate_in_vault(sb: SandboxHandle) -> dict[str, str]:
    """Steps 1-2 of the runbook: a new credential, written as a new Key Vault version."""
    d = sb.describe
    added = sb.client.post(
        f"{d['graph_url']}/applications/{d['app']['object_id']}/addPassword",
        headers=op_token(sb, GRAPH),
        json={"passwordCredential": {"displayName": "API Secret 2028"}},
    ).json()
    put = sb.client.put(
        f"{d['key_vault_url']}/secrets/{d['secret_name']}?api-version=7.5",
        headers=op_token(sb, VAULT),
        json={"value": added["secretText"], "tags": {"keyId": added["keyId"]}},
    )
    assert put.status_code == 200
    return {"keyId": added["keyId"], "version": put.json()["id"].rsplit("/", 1)[-1]}


def test_health_and_action_when_running(sb: SandboxHandle) -> None:
    health = sb.client.get(sb.describe["health_url"])
    assert health.status_code == 200
    action = sb.client.post(sb.describe["app_action_url"])
    assert action.status_code == 200
    assert action.json()["synced"] == 7
    assert sb.state()["app"]["graph_calls_total"] == 1
    assert sb.state()["app"]["graph_401_total"] == 0


def test_action_reports_graph_401_when_secret_expires(sb: SandboxHandle) -> None:
    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
    action = sb.client.get(sb.describe["app_action_url"])
    assert action.status_code == 502
    assert action.json()["graph_status"] == 401
    assert action.json()["code"] == "AADSTS7000222"
    assert sb.state()["app"]["graph_401_total"] == 1
    # health is about the process, not the secret
    assert sb.client.get(sb.describe["health_url"]).status_code == 200


def test_stopped_app_answers_403(sb: SandboxHandle) -> None:
    assert site_post(sb, "stop").status_code == 200
    resp = sb.client.get(sb.describe["health_url"])
    assert resp.status_code == 403
    assert "This web app is stopped" in resp.text
    assert sb.client.post(sb.describe["app_action_url"]).status_code == 403
    assert sb.state()["site"]["state"] == "Stopped"


def test_restart_resolves_current_version_unless_sticky(sb: SandboxHandle) -> None:
    sb.faults(reload_model="optimistic")  # the model under test (documented: tests below)
    old_version = sb.state()["site"]["resolved_version"]
    new = rotate_in_vault(sb)
    assert sb.state()["site"]["resolved_version"] == old_version  # nothing reloaded yet

    sb.faults(sticky_cache=True)
    site_post(sb, "restart")
    assert sb.state()["site"]["resolved_version"] == old_version
    (old,) = [c for c in sb.state()["credentials"] if c["keyId"] != new["keyId"]]
    sb.admin("POST", f"credentials/{old['keyId']}/revoke")
    assert sb.client.post(sb.describe["app_action_url"]).status_code == 502  # the runbook's 401

    site_post(sb, "stop")
    site_post(sb, "start")
    assert sb.state()["site"]["resolved_version"] == new["version"]
    assert sb.client.post(sb.describe["app_action_url"]).status_code == 200


def test_refresh_resolves_even_when_sticky_and_plain_restart_resolves(sb: SandboxHandle) -> None:
    sb.faults(reload_model="optimistic", sticky_cache=True)  # the model under test
    new = rotate_in_vault(sb)
    refreshed = site_post(sb, "config/configreferences/appsettings/refresh")
    assert refreshed.json()["value"][0]["properties"]["activeVersion"] == new["version"]
    assert sb.state()["site"]["resolved_version"] == new["version"]

    sb.faults(sticky_cache=False)
    newer = rotate_in_vault(sb)
    site_post(sb, "restart", "&softRestart=false&synchronous=true")
    assert sb.state()["site"]["resolved_version"] == newer["version"]


def test_cold_start_then_healthy(sb: SandboxHandle) -> None:
    sb.faults(cold_start_seconds=0.3)
    site_post(sb, "restart")
    starting = sb.client.get(sb.describe["health_url"])
    assert starting.status_code == 503
    time.sleep(0.35)
    assert sb.client.get(sb.describe["health_url"]).status_code == 200


def test_never_healthy(sb: SandboxHandle) -> None:
    sb.faults(never_healthy=True)
    assert sb.client.get(sb.describe["health_url"]).status_code == 503
    site_post(sb, "restart")
    assert sb.client.get(sb.describe["health_url"]).status_code == 503


def test_background_sync_counts_401s(sb: SandboxHandle) -> None:
    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
    sb.faults(app_sync_interval_seconds=0.05)
    deadline = time.monotonic() + 3
    while sb.state()["app"]["graph_401_total"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sb.faults(app_sync_interval_seconds=0)
    app = sb.state()["app"]
    assert app["graph_401_total"] >= 3
    assert app["graph_calls_total"] == app["graph_401_total"]


async def test_persistence_survives_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "tenant.json"
    first = Sandbox(state_file=state_file, faults={"app_sync_interval_seconds": 0})
    await first.start()
    d1 = first.describe()
    first.portal.add_credential("kept", None, None)
    first.portal.faults.sticky_cache = True
    await first.stop()

    second = Sandbox(state_file=state_file, faults={"app_sync_interval_seconds": 0})
    await second.start()
    try:
        d2 = second.describe()
        assert d2["tenant_id"] == d1["tenant_id"]
        assert d2["operator"] == d1["operator"]
        assert d2["ca_file"] == d1["ca_file"]
        names = [c["displayName"] for c in state_json(second.portal)["credentials"]]
        assert names == ["API Secret", "kept"]
        assert second.portal.faults.sticky_cache is True
        assert oct(state_file.stat().st_mode & 0o777) == "0o600"
    finally:
        await second.stop()


async def test_in_use_expires_in_sets_the_initial_secrets_expiry(tmp_path: Path) -> None:
    sb = Sandbox(ca_dir=tmp_path / "ca", in_use_expires_in=timedelta(days=3))
    await sb.start()
    try:
        ctx = ssl.create_default_context(cafile=sb.describe()["ca_file"])
        async with httpx.AsyncClient(verify=ctx) as client:
            state = (await client.get(sb.describe()["admin_url"] + "state")).json()
    finally:
        await sb.stop()
    end = datetime.fromisoformat(state["credentials"][0]["endDateTime"])
    assert timedelta(days=2, hours=23) < end - datetime.now(UTC) <= timedelta(days=3)
