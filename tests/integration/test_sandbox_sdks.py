"""The stock Azure SDKs, configured only from the describe file, against the sandbox.

These prove the issue's "Done means": a user points azure-identity, msgraph-sdk,
azure-keyvault-secrets and azure-mgmt-web at the sandbox with the describe file's
facts plus ``disable_instance_discovery=True``, ``verify_challenge_resource=False``
and the CA, and the SDKs cannot tell it from Azure.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.rest import HttpRequest
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient
from azure.mgmt.web import WebSiteManagementClient
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph_core import GraphClientFactory

from sandbox.testing import SandboxHandle

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
NO_RETRY: dict[str, Any] = {"retry_total": 0}


def operator_credential(d: dict[str, Any]) -> ClientSecretCredential:
    return ClientSecretCredential(
        d["tenant_id"],
        d["operator"]["client_id"],
        d["operator"]["client_secret"],
        authority=d["authority"],
        disable_instance_discovery=True,
        connection_verify=d["ca_file"],
        **NO_RETRY,
    )


def async_credential(d: dict[str, Any], client_id: str, secret: str) -> AsyncClientSecretCredential:
    return AsyncClientSecretCredential(
        d["tenant_id"],
        client_id,
        secret,
        authority=d["authority"],
        disable_instance_discovery=True,
        connection_verify=d["ca_file"],
        **NO_RETRY,
    )


def graph_client(d: dict[str, Any], cred: AsyncClientSecretCredential) -> GraphServiceClient:
    http = httpx.AsyncClient(verify=ssl.create_default_context(cafile=d["ca_file"]))
    http = GraphClientFactory.create_with_default_middleware(client=http)
    host = httpx.URL(d["graph_url"]).host
    auth = AzureIdentityAuthenticationProvider(cred, scopes=[GRAPH_SCOPE], allowed_hosts=[host])
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = d["graph_url"]
    return GraphServiceClient(request_adapter=adapter)


def test_sync_credential_gets_token_via_discovery(sb: SandboxHandle) -> None:
    token = operator_credential(sb.describe).get_token(GRAPH_SCOPE)
    assert token.token
    assert token.expires_on > 0
    assert sb.state()["counters"]["entra"]["200"] >= 2  # discovery + token


async def test_async_credential_reads_aadsts_codes(sb: SandboxHandle) -> None:
    d = sb.describe
    async with async_credential(d, d["app"]["client_id"], "wrong-value") as cred:
        with pytest.raises(ClientAuthenticationError) as wrong:
            await cred.get_token(GRAPH_SCOPE)
    assert re.search(r"AADSTS(\d+)", str(wrong.value))[1] == "7000215"  # type: ignore[index]

    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
    value = sb.state()["keyvault"]["versions"][-1]["value"]
    async with async_credential(d, d["app"]["client_id"], value) as cred:
        with pytest.raises(ClientAuthenticationError) as expired:
            await cred.get_token(GRAPH_SCOPE)
    assert re.search(r"AADSTS(\d+)", str(expired.value))[1] == "7000222"  # type: ignore[index]


async def test_graph_sdk_reads_adds_and_removes_passwords(sb: SandboxHandle) -> None:
    d = sb.describe
    async with async_credential(
        d, d["operator"]["client_id"], d["operator"]["client_secret"]
    ) as cred:
        graph = graph_client(d, cred)
        app = graph.applications.by_application_id(d["app"]["object_id"])
        got = await graph.applications_with_app_id(d["app"]["client_id"]).get()
        assert got is not None
        assert got.id == d["app"]["object_id"]
        assert len(got.password_credentials or []) == 1

        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name="API Secret 2028")
        )
        added = await app.add_password.post(body)
        assert added is not None
        assert added.secret_text
        assert added.key_id
        assert added.hint == added.secret_text[:3]
        assert added.end_date_time
        assert added.start_date_time
        assert 729 <= (added.end_date_time - added.start_date_time).days <= 731

        await app.remove_password.post(RemovePasswordPostRequestBody(key_id=added.key_id))
        keys = [c["keyId"] for c in sb.state()["credentials"]]
        assert str(added.key_id) not in keys
        assert len(keys) == 1

        with pytest.raises(ODataError) as denied:
            await graph.device_app_management.mobile_apps.get()
        assert denied.value.response_status_code == 403
        assert denied.value.error is not None
        assert denied.value.error.code == "Authorization_RequestDenied"


async def test_graph_sdk_backend_app_lists_mobile_apps(sb: SandboxHandle) -> None:
    d = sb.describe
    value = sb.state()["keyvault"]["versions"][-1]["value"]
    async with async_credential(d, d["app"]["client_id"], value) as cred:
        graph = graph_client(d, cred)
        apps = await graph.device_app_management.mobile_apps.get()
        assert apps is not None
        assert apps.value
        assert len(apps.value) == 7


def test_keyvault_sdk_challenge_set_get_list(sb: SandboxHandle) -> None:
    d = sb.describe
    client = SecretClient(
        d["key_vault_url"],
        operator_credential(d),
        verify_challenge_resource=False,
        connection_verify=d["ca_file"],
        **NO_RETRY,
    )
    before = client.get_secret(d["secret_name"])
    assert before.value == sb.state()["keyvault"]["versions"][-1]["value"]
    new = client.set_secret(d["secret_name"], "new-value-1", tags={"keyId": "k1"})
    assert new.properties.version
    assert re.fullmatch(r"[0-9a-f]{32}", new.properties.version)
    assert client.get_secret(d["secret_name"]).value == "new-value-1"
    old = client.get_secret(d["secret_name"], before.properties.version)
    assert old.value == before.value
    versions = list(client.list_properties_of_secret_versions(d["secret_name"]))
    assert {v.version for v in versions} == {before.properties.version, new.properties.version}
    assert [v.tags for v in versions if v.version == new.properties.version] == [{"keyId": "k1"}]
    # The first request of each verb carried no token and met the challenge.
    assert sb.state()["counters"]["keyvault"]["401"] >= 1


async def test_keyvault_async_sdk_paging(sb: SandboxHandle) -> None:
    d = sb.describe
    async with (
        async_credential(d, d["operator"]["client_id"], d["operator"]["client_secret"]) as cred,
        AsyncSecretClient(
            d["key_vault_url"],
            cred,
            verify_challenge_resource=False,
            connection_verify=d["ca_file"],
            **NO_RETRY,
        ) as client,
    ):
        for i in range(4):
            await client.set_secret(d["secret_name"], f"v{i}")
        seen = [
            v.version
            async for v in client.list_properties_of_secret_versions(
                d["secret_name"], max_page_size=2
            )
        ]
    assert len(seen) == 5
    assert len(set(seen)) == 5


def test_mgmt_web_sdk_site_restart_references(sb: SandboxHandle) -> None:
    d = sb.describe
    client = WebSiteManagementClient(
        operator_credential(d),
        d["subscription_id"],
        base_url=d["arm_url"],
        connection_verify=d["ca_file"],
        **NO_RETRY,
    )
    rg, site = d["resource_group"], d["site_name"]
    assert client.web_apps.get(rg, site).state == "Running"
    client.web_apps.stop(rg, site)
    assert client.web_apps.get(rg, site).state == "Stopped"
    client.web_apps.start(rg, site)
    client.web_apps.restart(rg, site, soft_restart=False, synchronous=True)
    assert client.web_apps.get(rg, site).state == "Running"

    refs = list(client.web_apps.get_app_settings_key_vault_references(rg, site))
    assert [r.name for r in refs] == [d["app_setting"]]
    ref = client.web_apps.get_app_setting_key_vault_reference(rg, site, d["app_setting"])
    assert ref.status == "Resolved"
    assert ref.active_version == sb.state()["keyvault"]["current_version"]

    url = (
        f"{d['arm_url']}/subscriptions/{d['subscription_id']}/resourceGroups/{rg}/providers"
        f"/Microsoft.Web/sites/{site}/config/configreferences/appsettings/refresh"
        "?api-version=2025-05-01"
    )
    resp = client._client.send_request(HttpRequest("POST", url))  # no SDK method for refresh
    assert resp.status_code == 200
    assert resp.json()["value"][0]["properties"]["status"] == "Resolved"

    with pytest.raises(HttpResponseError) as missing:
        client.web_apps.get(rg, "no-such-site")
    assert missing.value.status_code == 404
    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"
