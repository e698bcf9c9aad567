"""tenant.appservice against the sandbox through azure-mgmt-web: the refresh's
api-version, polling the reference for a version, and the app's own action."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest
from azure.mgmt.web.aio import WebSiteManagementClient
from helpers import free_port

from tenant.appservice import REFRESH_API_VERSION, ArmAppService
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


async def test_the_refresh_uses_the_documented_api_version(
    sb: Any, operator: Identity, sandbox_cloud: Cloud, target_ref: TargetRef
) -> None:
    seen: list[str] = []

    def record(request: PipelineRequest[Any]) -> None:
        seen.append(f"{request.http_request.method} {request.http_request.url}")

    retry = RetryPolicy.none()
    credential = operator_credential(operator, sandbox_cloud, retry)
    client = WebSiteManagementClient(
        credential,
        target_ref.subscription_id,
        base_url=sandbox_cloud.arm_url,
        credential_scopes=[sandbox_cloud.arm_scope],
        connection_verify=str(sandbox_cloud.ca_file),
        retry_total=0,
        raw_request_hook=record,
    )
    async with credential, client:
        site = ArmAppService(client, target_ref)
        await site.refresh_key_vault_references()
        await site.restart()
    refresh = [s for s in seen if s.startswith("POST") and "/refresh" in s]
    assert len(refresh) == 1
    assert f"api-version={REFRESH_API_VERSION}" in refresh[0]
    assert REFRESH_API_VERSION == "2022-03-01"
    # every other call keeps the SDK's own api-version
    restart = [s for s in seen if "/restart" in s]
    assert len(restart) == 1
    assert "api-version=2022-03-01" not in restart[0]
    assert sb.state()["site"]["refreshes"] == 1


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
