"""tenant.appservice against the sandbox: the refresh's api-version, the wire and the
readings the same as azure-mgmt-web's (the client it replaced, issue 16), and the app's
own action."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest
from azure.mgmt.web.aio import WebSiteManagementClient
from azure.mgmt.web.models import StringDictionary
from helpers import free_port

from tenant.appservice import REFRESH_API_VERSION, RELOAD_MARKER_SETTING, ArmAppService
from tenant.arm import API_VERSION, arm_client
from tenant.connect import TenantSession
from tenant.credentials import operator_credential
from tenant.endpoints import Cloud, RetryPolicy
from tenant.ports import Identity, TargetClients, TargetRef


@pytest.fixture
async def session(
    sb: Any, operator: Identity, sandbox_cloud: Cloud
) -> AsyncIterator[TenantSession]:
    async with TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as s:
        yield s


@pytest.fixture
async def clients(session: TenantSession, target_ref: TargetRef) -> AsyncIterator[TargetClients]:
    async with session.target(target_ref) as c:
        yield c


Wire = list[tuple[str, str, Any]]
# The headers azure-mgmt-web decides per operation (the others are the pipeline's own:
# request id, token, User-Agent).
WIRE_HEADERS = ("Accept", "Content-Type")


def _recorder(seen: Wire, headers: list[dict[str, str]] | None = None) -> Any:
    def record(request: PipelineRequest[Any]) -> None:
        r = request.http_request
        seen.append((r.method, r.url, r.body))
        if headers is not None:
            headers.append({h: r.headers[h] for h in WIRE_HEADERS if h in r.headers})

    return record


@asynccontextmanager
async def recorded_site(
    operator: Identity,
    cloud: Cloud,
    ref: TargetRef,
    seen: Wire,
    headers: list[dict[str, str]] | None = None,
) -> AsyncIterator[ArmAppService]:
    """An ArmAppService whose ARM client records every request it sends (method, URL,
    body; ``headers``: the per-operation ones) through azure-core's raw_request_hook:
    what went on the wire."""
    credential = operator_credential(operator, cloud, RetryPolicy.none())
    client = arm_client(
        credential,
        cloud.arm_url,
        [cloud.arm_scope],
        connection_verify=str(cloud.ca_file),
        retry_total=0,
        raw_request_hook=_recorder(seen, headers),
    )
    async with credential, client:
        yield ArmAppService(client, ref)


@asynccontextmanager
async def recorded_sdk(
    operator: Identity, cloud: Cloud, ref: TargetRef, seen: Wire, headers: list[dict[str, str]]
) -> AsyncIterator[WebSiteManagementClient]:
    """azure-mgmt-web's own client, recording the same way."""
    credential = operator_credential(operator, cloud, RetryPolicy.none())
    client = WebSiteManagementClient(
        credential,
        ref.subscription_id,
        base_url=cloud.arm_url,
        credential_scopes=[cloud.arm_scope],
        connection_verify=str(cloud.ca_file),
        retry_total=0,
        raw_request_hook=_recorder(seen, headers),
    )
    async with credential, client:
        yield client


# Two references to other secrets and one reference a page: the reference list takes
# three pages (its nextLink followed twice), only the last one ours.
PAGED = {"extra_key_vault_references": 2, "arm_page_size": 1}


async def sdk_reads(sdk: WebSiteManagementClient, ref: TargetRef) -> dict[str, Any]:
    """What ArmAppService's reads read, through azure-mgmt-web's models."""
    rg, name = ref.resource_group, ref.site_name
    site = await sdk.web_apps.get(rg, name)
    instances = [i async for i in sdk.web_apps.list_instance_identifiers(rg, name)]
    processes = {
        str(i.name): [p async for p in sdk.web_apps.list_instance_processes(rg, name, i.name)]
        for i in instances
    }
    references = [r async for r in sdk.web_apps.get_app_settings_key_vault_references(rg, name)]
    settings = await sdk.web_apps.list_application_settings(rg, name)
    return {"site": site, "processes": processes, "references": references, "settings": settings}


async def sdk_writes(sdk: WebSiteManagementClient, ref: TargetRef) -> None:
    """ArmAppService's writes (the configuration change, restart, stop, start) as the
    code before issue 16 made them through azure-mgmt-web."""
    rg, name = ref.resource_group, ref.site_name
    listed = await sdk.web_apps.list_application_settings(rg, name)
    merged = {**(listed.properties or {}), RELOAD_MARKER_SETTING: "m-1"}
    await sdk.web_apps.update_application_settings(
        rg, name, StringDictionary(kind=listed.kind, properties=merged)
    )
    await sdk.web_apps.restart(rg, name, soft_restart=False)
    await sdk.web_apps.stop(rg, name)
    await sdk.web_apps.start(rg, name)


async def test_every_call_sends_what_azure_mgmt_web_sends_and_reads_the_same(
    sb: Any, operator: Identity, sandbox_cloud: Cloud, target_ref: TargetRef
) -> None:
    ref = target_ref
    ours: Wire = []
    our_headers: list[dict[str, str]] = []
    sb.faults(**PAGED)
    async with recorded_site(operator, sandbox_cloud, ref, ours, our_headers) as site:
        got_site = await site.get_site()
        got_instances = await site.instances()
        got_references = await site.key_vault_references()
        got_settings = await site.app_settings()
        async with recorded_sdk(operator, sandbox_cloud, ref, [], []) as sdk:
            sdk_read = await sdk_reads(sdk, ref)  # the same state, read by the SDK
        await site.configuration_change("m-1")
        await site.restart()
        await site.stop()
        await site.start()

    sb.reset()
    theirs: Wire = []
    their_headers: list[dict[str, str]] = []
    sb.faults(**PAGED)
    async with recorded_sdk(operator, sandbox_cloud, ref, theirs, their_headers) as sdk:
        await sdk_reads(sdk, ref)
        await sdk_writes(sdk, ref)

    # the same requests, byte for byte (method, URL with its query, body), in order
    assert ours == theirs
    assert our_headers == their_headers
    assert len(ours) == 2 + len(got_instances) + 3 + 1 + 2 + 3
    pages = [url for _, url, _ in ours if "/configreferences/" in url]
    assert ["$skiptoken" in url for url in pages] == [False, True, True]
    assert all(f"api-version={API_VERSION}" in url for _, url, _ in ours)
    assert [m for m, _, _ in ours][-4:] == ["PUT", "POST", "POST", "POST"]

    # the same readings of the same state
    sdk_site = sdk_read["site"]
    assert (got_site.name, got_site.state.value, got_site.default_host_name) == (
        sdk_site.name,
        sdk_site.state,
        sdk_site.default_host_name,
    )
    assert got_site.default_host_name
    sdk_addresses = f"{sdk_site.outbound_ip_addresses},{sdk_site.possible_outbound_ip_addresses}"
    assert got_site.outbound_addresses
    assert set(got_site.outbound_addresses) == set(sdk_addresses.split(","))
    processes = sdk_read["processes"]
    assert [i.id for i in got_instances] == list(processes)
    for instance in got_instances:
        assert [(p.name, p.started, p.scm) for p in instance.processes] == [
            (str(p.name), p.start_time, bool(p.is_scm_site)) for p in processes[instance.id]
        ]
    assert all(p.started is not None for i in got_instances for p in i.processes)
    assert len(sdk_read["references"]) == 3
    assert [r.key for r in got_references] == [sb.describe["app_setting"]]  # only ours
    assert [
        (r.key, r.status, r.vault_name, r.secret_name, r.secret_version, r.active_version)
        for r in got_references
    ] == [
        # ResolveStatus.RESOLVED -> "Resolved", ARM's word (as the code before issue 16)
        (
            r.name,
            getattr(r.status, "value", r.status),
            r.vault_name,
            r.secret_name,
            r.secret_version,
            r.active_version,
        )
        for r in sdk_read["references"]
        if r.name == sb.describe["app_setting"]
    ]
    assert got_references[0].active_version
    assert dict(got_settings.values) == sdk_read["settings"].properties


async def test_the_refresh_uses_the_documented_api_version(
    sb: Any, operator: Identity, sandbox_cloud: Cloud, target_ref: TargetRef
) -> None:
    wire: list[tuple[str, str, Any]] = []
    async with recorded_site(operator, sandbox_cloud, target_ref, wire) as site:
        await site.refresh_key_vault_references()
        await site.restart()
    seen = [f"{method} {url}" for method, url, _ in wire]
    refresh = [s for s in seen if s.startswith("POST") and "/refresh" in s]
    assert len(refresh) == 1
    assert f"api-version={REFRESH_API_VERSION}" in refresh[0]
    assert REFRESH_API_VERSION == "2022-03-01"
    # every other call keeps the SDK's own api-version
    restart = [s for s in seen if "/restart" in s]
    assert len(restart) == 1
    assert "api-version=2022-03-01" not in restart[0]
    assert "softRestart=false" in restart[0]  # a soft restart may keep the resolved value
    assert sb.state()["site"]["refreshes"] == 1


async def test_an_app_settings_write_sends_back_every_setting_and_the_kind(
    sb: Any, operator: Identity, sandbox_cloud: Cloud, target_ref: TargetRef
) -> None:
    before = dict(sb.state()["site"]["settings"])
    wire: list[tuple[str, str, Any]] = []
    async with recorded_site(operator, sandbox_cloud, target_ref, wire) as site:
        await site.configuration_change("m-1")
    puts = [(url, body) for method, url, body in wire if method == "PUT"]
    assert len(puts) == 1
    assert puts[0][0].split("?")[0].endswith("/config/appsettings")
    sent = json.loads(puts[0][1])
    assert sent == {"kind": "app", "properties": {**before, RELOAD_MARKER_SETTING: "m-1"}}


async def test_the_app_action_is_ok_while_running_and_fails_when_stopped(
    sb: Any, clients: TargetClients
) -> None:
    url = sb.describe["app_action_url"]
    ok = await clients.action.run(url)
    assert (ok.ok, ok.status, ok.detail) == (True, 200, None)
    await clients.site.stop()
    stopped = await clients.action.run(url)
    assert not stopped.ok
    assert stopped.status == 403
    await clients.site.start()


async def test_the_app_action_reports_a_graph_failure_by_its_code(
    sb: Any, clients: TargetClients
) -> None:
    # The credential the app holds is removed: its token request is refused.
    await clients.app.remove_password(sb.in_use_key_id())
    failed = await clients.action.run(sb.describe["app_action_url"])
    assert not failed.ok
    assert failed.status == 502
    assert failed.detail == "AADSTS7000215"


async def test_an_unreachable_app_action_is_status_zero(clients: TargetClients) -> None:
    outcome = await clients.action.run(f"https://127.0.0.1:{free_port()}/api/action")
    assert (outcome.ok, outcome.status) == (False, 0)
    assert outcome.detail == "ConnectError"
