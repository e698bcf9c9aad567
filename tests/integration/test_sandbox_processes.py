"""The site's worker processes (issue 13): per-instance values, start times and token
caches, the ARM per-instance view, and how Restart, Start and a configuration change
recycle the workers. Against the sandbox's own defaults (``sbd``), through the real
azure-mgmt-web where a wire shape is involved."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.mgmt.web import WebSiteManagementClient
from helpers import operator_credential

from sandbox.testing import SandboxHandle


def _web(d: dict[str, Any]) -> WebSiteManagementClient:
    cred = operator_credential(d)
    return WebSiteManagementClient(
        cred,
        d["subscription_id"],
        base_url=d["arm_url"],
        connection_verify=d["ca_file"],
        retry_total=0,
    )


def _instances(sb: SandboxHandle) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sb.state()["site"]["instances"]
    return result


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _put_settings(sb: SandboxHandle, web: WebSiteManagementClient, **extra: str) -> None:
    d = sb.describe
    current = web.web_apps.list_application_settings(d["resource_group"], d["site_name"])
    current.properties = {**(current.properties or {}), **extra}
    web.web_apps.update_application_settings(d["resource_group"], d["site_name"], current)


def _new_version(sb: SandboxHandle) -> str:
    """A new Key Vault version of the app's secret (a value of a new credential)."""
    d = sb.describe
    token = sb.graph_token()
    added = sb.client.post(
        f"{d['graph_url']}/applications/{d['app']['object_id']}/addPassword",
        json={"passwordCredential": {"displayName": "next"}},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    cred = operator_credential(d)
    from azure.keyvault.secrets import SecretClient

    kv = SecretClient(
        d["key_vault_url"],
        cred,
        verify_challenge_resource=False,
        connection_verify=d["ca_file"],
        retry_total=0,
    )
    version = kv.set_secret(d["secret_name"], added["secretText"]).properties.version
    assert version is not None
    return str(version)


def test_defaults_are_pessimistic(sbd: SandboxHandle) -> None:
    f = sbd.faults()
    assert f["process_model"] == "start_only"
    assert f["instances"] == 2
    assert f["instance_recycle_stagger_seconds"] == 5
    assert f["config_change_delay_seconds"] == 5
    assert (f["app_token_lifetime_seconds"], f["app_token_lifetime_jitter_seconds"]) == (4500, 900)
    assert (f["signin_log_delay_seconds"], f["signin_log_jitter_seconds"]) == (300, 120)
    assert f["signin_log_duplicates"] is True
    assert f["signin_reads_per_10s"] == 5
    assert f["app_user_flow_signins"] is True
    assert (f["propagation_delay_seconds"], f["graph_read_lag_seconds"]) == (20, 10)
    assert f["password_credential_limit"] is None
    assert f["graph_delta_partial"] is True


def test_the_sdk_lists_instances_and_their_processes_with_start_times(sbd: SandboxHandle) -> None:
    d = sbd.describe
    web = _web(d)
    rg, name = d["resource_group"], d["site_name"]
    site = web.web_apps.get(rg, name)
    assert site.outbound_ip_addresses is not None
    assert site.possible_outbound_ip_addresses
    outbound = site.outbound_ip_addresses.split(",")
    assert set(outbound) <= set(site.possible_outbound_ip_addresses.split(","))

    listed = list(web.web_apps.list_instance_identifiers(rg, name))
    state = _instances(sbd)
    assert [i.name for i in listed] == [s["id"] for s in state]
    assert len(listed) == 2
    assert all(len(i.name or "") == 64 for i in listed)
    assert all(i.properties is not None and i.properties.state == "READY" for i in listed)
    one = web.web_apps.get_instance_info(rg, name, state[0]["id"])
    assert one.name == state[0]["id"]

    for s in state:
        procs = list(web.web_apps.list_instance_processes(rg, name, s["id"]))
        assert len(procs) == 1
        props = procs[0].properties
        assert props is not None
        assert props.start_time is not None
        assert props.start_time == _t(s["started_at"])
        assert props.is_scm_site is False
        full = web.web_apps.get_instance_process(rg, name, str(props.identifier), s["id"])
        assert full.properties is not None
        assert full.properties.start_time == props.start_time
    # Each worker's calls leave from one of the outbound addresses.
    assert {s["ip_address"] for s in state} <= set(outbound)


def test_restart_recycles_the_instances_one_after_another(sbd: SandboxHandle) -> None:
    d = sbd.describe
    web = _web(d)
    rg, name = d["resource_group"], d["site_name"]
    before = _instances(sbd)
    web.web_apps.restart(rg, name)
    now = _t(sbd.state()["now"])
    first, second = _instances(sbd)
    assert _t(first["started_at"]) >= now - timedelta(seconds=2)  # restarted at once
    assert second["started_at"] == before[1]["started_at"]  # not yet
    assert second["recycle_at"] is not None
    sbd.advance(5.1)
    after = _instances(sbd)
    gap = _t(after[1]["started_at"]) - _t(after[0]["started_at"])
    assert gap == timedelta(seconds=5)
    procs = list(web.web_apps.list_instance_processes(rg, name, after[1]["id"]))
    assert procs[0].properties is not None
    assert procs[0].properties.start_time == _t(after[1]["started_at"])


def test_a_stopped_site_lists_no_instances(sbd: SandboxHandle) -> None:
    d = sbd.describe
    web = _web(d)
    rg, name = d["resource_group"], d["site_name"]
    web.web_apps.stop(rg, name)
    assert list(web.web_apps.list_instance_identifiers(rg, name)) == []
    assert all(i["started_at"] is None for i in _instances(sbd))
    sbd.advance(3.1)  # the site is busy after Stop
    web.web_apps.start(rg, name)
    assert [i["started_at"] is not None for i in _instances(sbd)] == [True, False]
    assert sbd.state()["site"]["phase"] == "running"  # one worker up serves requests
    sbd.advance(5)
    assert all(i["started_at"] is not None for i in _instances(sbd))


def test_config_change_answers_before_the_refetch_and_the_recycling(sbd: SandboxHandle) -> None:
    web = _web(sbd.describe)
    old = _instances(sbd)
    version = _new_version(sbd)
    _put_settings(sbd, web, Extra="1")
    site = sbd.state()["site"]
    assert site["settings"]["Extra"] == "1"  # the settings at once
    assert site["resolved_version"] != version  # the re-fetch not yet
    assert [i["started_at"] for i in site["instances"]] == [i["started_at"] for i in old]
    assert site["config_due_at"] is not None
    sbd.advance(5.05)
    site = sbd.state()["site"]
    assert site["resolved_version"] == version
    assert [i["version"] for i in site["instances"]] == [version, old[1]["version"]]
    sbd.advance(5)
    assert [i["version"] for i in _instances(sbd)] == [version, version]


@pytest.mark.parametrize("model", ["start_only", "recycle_on_refetch"])
def test_refresh_and_refetch_reach_a_running_process_only_when_recycling(
    sbd: SandboxHandle, model: str
) -> None:
    sbd.faults(process_model=model)
    old = _instances(sbd)
    version = _new_version(sbd)
    sbd.admin("POST", "site/refetch")
    assert sbd.state()["site"]["resolved_version"] == version  # the cache: at once
    sbd.advance(5.01)
    held = [i["version"] for i in _instances(sbd)]
    if model == "start_only":
        assert held == [i["version"] for i in old]
        # A process start reads the new cache.
        web = _web(sbd.describe)
        web.web_apps.restart(sbd.describe["resource_group"], sbd.describe["site_name"])
        sbd.advance(5.01)
        assert [i["version"] for i in _instances(sbd)] == [version, version]
    else:
        assert held == [version, version]


@pytest.mark.parametrize("model", ["start_only", "recycle_on_refetch"])
def test_the_24h_refetch_after_a_long_jump_reaches_processes_only_when_recycling(
    sbd: SandboxHandle, model: str
) -> None:
    sbd.faults(process_model=model)
    old = [i["version"] for i in _instances(sbd)]
    version = _new_version(sbd)
    sbd.advance(3 * 86400)  # three periodic re-fetches in one jump
    site = sbd.state()["site"]
    assert site["resolved_version"] == version
    held = [i["version"] for i in site["instances"]]
    assert held == (old if model == "start_only" else [version, version])
    # The re-fetch clock moved to the last one that came due, not three days back.
    assert _t(site["resolved_at"]) > _t(sbd.state()["now"]) - timedelta(days=1)
