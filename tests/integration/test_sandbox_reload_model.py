"""The App Service's reload model, as the sandbox plays it by default (issue 8).

Real HTTP through the SDKs the daemon uses (azure-mgmt-web, azure-keyvault-secrets)
against ``sbp``: a tenant with the sandbox's own defaults (documented reload model, no
activeVersion, 3 s busy) and a clock the test moves. Each test fails if the sandbox is
kinder than the documented Azure in the way it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.web import WebSiteManagementClient
from azure.mgmt.web.models import StringDictionary

from sandbox import Sandbox, reload
from sandbox.site import APP_SETTING, reference_text
from sandbox.testing import SandboxHandle
from tenant._azure import map_http_error

NO_RETRY: dict[str, Any] = {"retry_total": 0}
BUSY = "Cannot modify this site because another operation is in progress"


class Portal:
    """The SDK clients the daemon would hold, built from the describe file only."""

    def __init__(self, sb: SandboxHandle) -> None:
        d = self.d = sb.describe
        self.sb = sb
        cred = ClientSecretCredential(
            d["tenant_id"],
            d["operator"]["client_id"],
            d["operator"]["client_secret"],
            authority=d["authority"],
            disable_instance_discovery=True,
            connection_verify=d["ca_file"],
            **NO_RETRY,
        )
        self.web = WebSiteManagementClient(
            cred, d["subscription_id"], base_url=d["arm_url"], connection_verify=d["ca_file"],
            **NO_RETRY,
        )  # fmt: skip
        self.kv = SecretClient(
            d["key_vault_url"],
            cred,
            verify_challenge_resource=False,
            connection_verify=d["ca_file"],
            **NO_RETRY,
        )
        self.rg, self.site = d["resource_group"], d["site_name"]

    def write_secret(self, value: str) -> str:
        version = self.kv.set_secret(self.d["secret_name"], value).properties.version
        assert version is not None
        return version

    def reference(self) -> Any:
        refs = list(self.web.web_apps.get_app_settings_key_vault_references(self.rg, self.site))
        return next(r for r in refs if r.name == self.d["app_setting"])

    def held(self) -> str | None:
        """The version the app holds, from the sandbox's own view (not ARM's)."""
        version: str | None = self.sb.state()["site"]["resolved_version"]
        return version

    def refresh(self) -> httpx.Response:
        d = self.d
        path = (
            f"/subscriptions/{d['subscription_id']}/resourceGroups/{self.rg}"
            f"/providers/Microsoft.Web/sites/{self.site}"
            "/config/configreferences/appsettings/refresh?api-version=2022-03-01"
        )
        token = self.web._config.credential.get_token("https://management.azure.com/.default")
        return self.sb.client.post(
            d["arm_url"] + path, headers={"Authorization": f"Bearer {token.token}"}
        )

    def settings(self) -> dict[str, str]:
        props = self.web.web_apps.list_application_settings(self.rg, self.site).properties
        return dict(props or {})

    def put_settings(self, settings: dict[str, str]) -> None:
        self.web.web_apps.update_application_settings(
            self.rg, self.site, StringDictionary(properties=settings)
        )

    def quiet(self) -> None:
        """Wait out the site's busy time after a transition."""
        self.sb.advance(self.sb.faults()["site_busy_seconds"] + 0.1)


@pytest.fixture
def portal(sbp: SandboxHandle) -> Iterator[Portal]:
    p = Portal(sbp)
    yield p
    p.web.close()
    p.kv.close()


def test_the_defaults_are_the_worst_reported_behaviour(sbp: SandboxHandle) -> None:
    f = sbp.faults()
    assert f["reload_model"] == "documented"
    assert f["refresh_delay_seconds"] == 5
    assert f["refetch_interval_seconds"] == 86400
    assert f["active_version"] == "absent"
    assert f["site_busy_seconds"] == 3
    assert f["site_busy_status"] == 409
    assert f["graph_read_lag_seconds"] == 0
    assert f["apply_then_fail"] == []
    assert f["signin_log_delay_seconds"] == 120
    assert f["operator_can_read_signins"] is True


def test_restart_and_stop_start_keep_the_cached_value(portal: Portal) -> None:
    old = portal.held()
    new = portal.write_secret("new-value")
    portal.web.web_apps.restart(portal.rg, portal.site, soft_restart=False)
    assert portal.held() == old
    portal.quiet()
    portal.web.web_apps.stop(portal.rg, portal.site)
    portal.quiet()
    portal.web.web_apps.start(portal.rg, portal.site)
    assert portal.held() == old != new
    assert portal.web.web_apps.get(portal.rg, portal.site).state == "Running"


def test_the_reference_status_has_no_active_version(portal: Portal) -> None:
    ref = portal.reference()
    assert ref.properties.status == "Resolved"
    assert ref.properties.active_version is None
    raw = portal.web.web_apps.get_app_settings_key_vault_references(portal.rg, portal.site)
    assert all("activeVersion" not in r.properties.as_dict() for r in raw)
    portal.sb.faults(active_version="present")
    assert portal.reference().properties.active_version == portal.held()


def test_refresh_answers_first_and_re_resolves_later(portal: Portal) -> None:
    old = portal.held()
    new = portal.write_secret("new-value")
    resp = portal.refresh()
    assert resp.status_code == 200
    assert portal.held() == old  # the reply came before the re-fetch
    assert resp.json()["value"][-1]["properties"]["status"] == "Resolved"
    portal.sb.advance(4.5)
    assert portal.held() == old
    portal.sb.advance(1.0)
    assert portal.held() == new
    assert portal.sb.state()["site"]["refreshes"] == 1


def test_a_second_refresh_does_not_put_off_the_first(portal: Portal) -> None:
    new = portal.write_secret("new-value")
    assert portal.refresh().status_code == 200
    portal.sb.advance(3)
    assert portal.refresh().status_code == 200
    portal.sb.advance(2.5)  # 5.5 s after the first, 2.5 s after the second
    assert portal.held() == new


def test_the_platform_re_fetches_once_a_day(portal: Portal) -> None:
    old = portal.held()
    new = portal.write_secret("new-value")
    portal.sb.advance(86400 - 60)
    assert portal.held() == old
    portal.sb.advance(120)
    assert portal.held() == new


def test_an_app_settings_put_re_resolves_at_once_and_keeps_the_other_settings(
    portal: Portal,
) -> None:
    settings = portal.settings()
    assert settings[portal.d["app_setting"]].startswith("@Microsoft.KeyVault(SecretUri=")
    assert settings[portal.d["app_setting"]].endswith(f"/secrets/{portal.d['secret_name']}/)")
    assert settings["AzureAd__ClientId"] == portal.d["app"]["client_id"]
    new = portal.write_secret("new-value")
    portal.put_settings({**settings, "Extra": "1"})
    assert portal.held() == new
    site = portal.sb.state()["site"]
    assert site["config_changes"] == 1
    assert site["busy_operation"] == "UpdateApplicationSettings"
    assert portal.settings() == {**settings, "Extra": "1"}
    # A PUT replaces every setting: what is left out is gone.
    portal.quiet()
    portal.put_settings({"Only": "this"})
    assert portal.settings() == {"Only": "this"}
    assert portal.held() is None  # no reference left: the app has no secret
    refs = portal.web.web_apps.get_app_settings_key_vault_references(portal.rg, portal.site)
    assert list(refs) == []


def test_a_pinned_reference_holds_its_version(portal: Portal) -> None:
    settings = portal.settings()
    pinned = portal.write_secret("pinned-value")
    uri = f"{portal.d['key_vault_url']}/secrets/{portal.d['secret_name']}/{pinned}"
    pin = f"@Microsoft.KeyVault(SecretUri={uri})"
    portal.put_settings({**settings, portal.d["app_setting"]: pin})
    assert portal.held() == pinned
    props = portal.reference().properties
    assert props.secret_version == pinned
    later = portal.write_secret("later-value")
    portal.quiet()
    portal.sb.admin("POST", "site/refetch")  # even the daily re-fetch keeps the pin
    assert portal.held() == pinned != later
    assert portal.sb.state()["site"]["reference"] == {
        "secret_name": portal.d["secret_name"], "version": pinned, "pinned": True,
    }  # fmt: skip


def test_runbook_model_stop_start_re_resolves_restart_does_not(portal: Portal) -> None:
    portal.sb.faults(reload_model="runbook")
    old = portal.held()
    new = portal.write_secret("new-value")
    portal.web.web_apps.restart(portal.rg, portal.site)
    assert portal.held() == old
    portal.quiet()
    portal.web.web_apps.stop(portal.rg, portal.site)
    portal.quiet()
    portal.web.web_apps.start(portal.rg, portal.site)
    assert portal.held() == new


def test_optimistic_model_restart_and_refresh_re_resolve_at_once(portal: Portal) -> None:
    portal.sb.faults(reload_model="optimistic")
    first = portal.write_secret("first")
    portal.web.web_apps.restart(portal.rg, portal.site)
    assert portal.held() == first
    second = portal.write_secret("second")
    assert portal.refresh().status_code == 200
    assert portal.held() == second


def _busy_error(exc: HttpResponseError) -> dict[str, Any]:
    assert exc.response is not None
    body: dict[str, Any] = json.loads(exc.response.text())
    return body


def test_a_transition_during_another_answers_409_in_pascal_case(portal: Portal) -> None:
    portal.web.web_apps.restart(portal.rg, portal.site)
    for call in (
        lambda: portal.web.web_apps.stop(portal.rg, portal.site),
        lambda: portal.web.web_apps.restart(portal.rg, portal.site),
        lambda: portal.put_settings(portal.settings()),
    ):
        with pytest.raises(HttpResponseError) as caught:
            call()
        assert caught.value.status_code == 409
        body = _busy_error(caught.value)
        assert {"Code", "Message", "Details", "Innererror"} <= set(body)
        assert "error" not in body
        assert body["Code"] == "Conflict"
        assert body["Message"].startswith(BUSY)
        assert "OperationName: Restart" in body["Message"]
        # The SDK's ARM error parsing finds no code in this shape; ours reads both.
        mapped = map_http_error(caught.value, "arm", "transition")
        assert (mapped.status, mapped.code) == (409, "Conflict")
        assert BUSY in mapped.detail
    site = portal.sb.state()["site"]
    assert (site["stops"], site["restarts"], site["config_changes"]) == (0, 1, 0)
    assert site["state"] == "Running"
    portal.sb.advance(2.5)
    with pytest.raises(HttpResponseError):
        portal.web.web_apps.start(portal.rg, portal.site)
    portal.sb.advance(0.6)
    portal.web.web_apps.stop(portal.rg, portal.site)  # 3 s after the restart: accepted
    assert portal.sb.state()["site"]["state"] == "Stopped"


def test_busy_can_answer_429_and_reads_and_refresh_are_never_busy(portal: Portal) -> None:
    portal.sb.faults(site_busy_status=429)
    portal.web.web_apps.stop(portal.rg, portal.site)
    with pytest.raises(HttpResponseError) as caught:
        portal.web.web_apps.start(portal.rg, portal.site)
    assert caught.value.status_code == 429
    assert _busy_error(caught.value)["Message"].startswith(BUSY)
    assert portal.web.web_apps.get(portal.rg, portal.site).state == "Stopped"
    assert portal.refresh().status_code == 200
    assert portal.settings()


def test_bad_app_settings_are_refused_in_microsoft_web_shape(portal: Portal) -> None:
    d = portal.d
    url = (
        f"{d['arm_url']}/subscriptions/{d['subscription_id']}/resourceGroups/{portal.rg}"
        f"/providers/Microsoft.Web/sites/{portal.site}/config/appsettings?api-version=2025-05-01"
    )
    token = portal.web._config.credential.get_token("https://management.azure.com/.default")
    headers = {"Authorization": f"Bearer {token.token}"}
    for body in ({"properties": {"A": 1}}, {"properties": ["A"]}, {}):
        resp = portal.sb.client.put(url, json=body, headers=headers)
        assert resp.status_code == 400
        assert resp.json()["Code"] == "BadRequest"
    assert portal.sb.state()["site"]["config_changes"] == 0


@pytest.mark.parametrize(
    ("faults", "named"),
    [
        ({"reload_model": "sometimes"}, "reload_model"),
        ({"active_version": True}, "active_version"),
        ({"site_busy_status": 500}, "site_busy_status"),
        ({"refresh_delay_seconds": -1}, "refresh_delay_seconds"),
        ({"refetch_interval_seconds": 0}, "refetch_interval_seconds"),
        ({"operator_can_read_signins": "yes"}, "operator_can_read_signins"),
        ({"apply_then_fail": [{"service": "dns", "status": 500}]}, "apply_then_fail"),
        ({"apply_then_fail": {"service": "graph"}}, "apply_then_fail"),
    ],
)
def test_bad_values_of_the_new_keys_are_refused_whole(
    sbp: SandboxHandle, faults: dict[str, Any], named: str
) -> None:
    resp = sbp.admin("POST", "faults", {**faults, "graph_read_lag_seconds": 7})
    assert resp.status_code == 400
    assert named in resp.json()["error"]
    assert sbp.faults()["graph_read_lag_seconds"] == 0  # nothing half-applied


async def test_a_pinned_reference_and_the_settings_survive_a_restart_on_a_new_port(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "tenant.json"
    # The settings PUT's re-fetch at once (config_change_delay_seconds defaults to 5 s).
    first = Sandbox(
        state_file=state_file,
        faults={"app_sync_interval_seconds": 0, "config_change_delay_seconds": 0},
    )
    await first.start()
    portal = first.portal
    version = portal.set_secret("AzureAdClientSecret", "pinned", tags={}, content_type=None)
    settings = dict(portal.site.settings)
    pin = reference_text(portal.vault_url, "AzureAdClientSecret", version.version)
    reload.configuration_change(portal, {**settings, APP_SETTING: pin, "Extra": "kept"})
    assert portal.site.resolved_version == version.version
    await first.stop()

    second = Sandbox(state_file=state_file, faults={"app_sync_interval_seconds": 0})
    await second.start(port=0)
    try:
        site = second.portal.site
        assert site.settings["Extra"] == "kept"
        assert site.resolved_version == version.version
        # The vault is wherever the sandbox listens now: the reference moved with it.
        assert site.settings[APP_SETTING] == reference_text(
            second.base_url, "AzureAdClientSecret", version.version
        )
        reload.resolve(second.portal)
        assert site.resolved_version == version.version
    finally:
        await second.stop()
