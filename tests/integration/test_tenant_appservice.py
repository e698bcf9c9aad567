"""tenant.appservice against the sandbox through azure-mgmt-web: the refresh's
api-version, polling the reference for a version, and the app's own action."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest
from azure.mgmt.web.aio import WebSiteManagementClient
from helpers import free_port

from tenant.appservice import REFRESH_API_VERSION, RELOAD_MARKER_SETTING, ArmAppService
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


@asynccontextmanager
async def recorded_site(
    operator: Identity, cloud: Cloud, ref: TargetRef, seen: list[tuple[str, str, Any]]
) -> AsyncIterator[ArmAppService]:
    """An ArmAppService whose ARM client records every request it sends (method, URL,
    body) through azure-core's raw_request_hook: what went on the wire."""

    def record(request: PipelineRequest[Any]) -> None:
        r = request.http_request
        seen.append((r.method, r.url, r.body))

    credential = operator_credential(operator, cloud, RetryPolicy.none())
    client = WebSiteManagementClient(
        credential,
        ref.subscription_id,
        base_url=cloud.arm_url,
        credential_scopes=[cloud.arm_scope],
        connection_verify=str(cloud.ca_file),
        retry_total=0,
        raw_request_hook=record,
    )
    async with credential, client:
        yield ArmAppService(client, ref)


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
