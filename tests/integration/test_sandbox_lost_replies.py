"""Graph read lag, replies lost after the write, and Key Vault's refusals (issue 8).

Through the SDKs the daemon uses, with their own retry layers where they have one: a
write whose reply is lost and that the SDK then retries takes effect twice.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.keyvault.secrets import SecretClient
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


def operator(d: dict[str, Any]) -> AsyncClientSecretCredential:
    return AsyncClientSecretCredential(
        d["tenant_id"],
        d["operator"]["client_id"],
        d["operator"]["client_secret"],
        authority=d["authority"],
        disable_instance_discovery=True,
        connection_verify=d["ca_file"],
    )


def graph_client(d: dict[str, Any], cred: AsyncClientSecretCredential) -> GraphServiceClient:
    """msgraph-sdk with its default middleware (retry handler included), as a user of the
    sandbox would build it (the daemon itself sends JSON over the same middleware)."""
    http = httpx.AsyncClient(verify=ssl.create_default_context(cafile=d["ca_file"]))
    http = GraphClientFactory.create_with_default_middleware(client=http)
    host = httpx.URL(d["graph_url"]).host
    auth = AzureIdentityAuthenticationProvider(cred, scopes=[GRAPH_SCOPE], allowed_hosts=[host])
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = d["graph_url"]
    return GraphServiceClient(request_adapter=adapter)


def key_ids_read(sb: SandboxHandle) -> list[str]:
    """What a Graph GET of the application shows (raw HTTP, operator token)."""
    d = sb.describe
    op = d["operator"]
    token = sb.client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": op["client_id"],
            "client_secret": op["client_secret"],
            "scope": GRAPH_SCOPE,
        },
    ).json()["access_token"]
    resp = sb.client.get(
        f"{d['graph_url']}/applications/{d['app']['object_id']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200
    return [c["keyId"] for c in resp.json()["passwordCredentials"]]


def key_ids_held(sb: SandboxHandle) -> list[str]:
    return [c["keyId"] for c in sb.state()["credentials"]]


async def test_graph_reads_show_writes_only_after_the_lag(sbp: SandboxHandle) -> None:
    d = sbp.describe
    sbp.faults(graph_read_lag_seconds=10)
    old = sbp.in_use_key_id()
    async with operator(d) as cred:
        app = graph_client(d, cred).applications.by_application_id(d["app"]["object_id"])
        body = AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="n"))
        added = await app.add_password.post(body)
        assert added is not None
        assert added.key_id is not None
        new = str(added.key_id)
        assert key_ids_read(sbp) == [old]  # the write happened; the read does not show it
        assert new in key_ids_held(sbp)
        sbp.advance(10)
        assert key_ids_read(sbp) == [old, new]
        await app.remove_password.post(RemovePasswordPostRequestBody(key_id=added.key_id))
        assert key_ids_held(sbp) == [old]
        sbp.advance(9)
        assert key_ids_read(sbp) == [old, new]  # removed, still shown
        sbp.advance(1.5)
        assert key_ids_read(sbp) == [old]


async def test_a_lost_add_password_reply_retried_by_the_sdk_creates_two(
    sbp: SandboxHandle,
) -> None:
    d = sbp.describe
    sbp.faults(
        apply_then_fail=[
            {"service": "graph", "method": "POST", "path_contains": "addPassword",
             "status": 503, "count": 1, "retry_after": 0},
        ]
    )  # fmt: skip
    async with operator(d) as cred:
        app = graph_client(d, cred).applications.by_application_id(d["app"]["object_id"])
        body = AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="n"))
        added = await app.add_password.post(body)  # msgraph retried the 503
    assert added is not None
    held = sbp.state()["credentials"]
    assert len(held) == 3  # the original, the one whose reply was lost, the retry's
    assert [c["displayName"] for c in held[1:]] == ["n", "n"]
    assert str(added.key_id) == held[2]["keyId"]  # nobody holds held[1]'s value
    assert sbp.state()["counters"]["graph"] == {"503": 1, "200": 1}  # one POST retried


async def test_a_lost_reply_without_retry_still_took_effect(sbp: SandboxHandle) -> None:
    d = sbp.describe
    sbp.faults(
        apply_then_fail=[
            {"service": "graph", "method": "POST", "path_contains": "removePassword",
             "status": 500, "count": 1},
        ]
    )  # fmt: skip
    old = sbp.in_use_key_id()
    async with operator(d) as cred:
        app = graph_client(d, cred).applications.by_application_id(d["app"]["object_id"])
        with pytest.raises(ODataError) as failed:
            await app.remove_password.post(RemovePasswordPostRequestBody(key_id=old))
        assert failed.value.response_status_code == 500
        assert key_ids_held(sbp) == []  # removed, though the reply said it failed
        with pytest.raises(ODataError) as gone:  # and again: the (invented) gone reply
            await app.remove_password.post(RemovePasswordPostRequestBody(key_id=old))
        assert gone.value.response_status_code == 400
    assert sbp.faults()["apply_then_fail"] == []


def test_a_refused_request_is_not_turned_and_keeps_the_entry(sbp: SandboxHandle) -> None:
    sbp.faults(apply_then_fail=[{"service": "keyvault", "method": "PUT", "status": 503}])
    d = sbp.describe
    resp = sbp.client.put(
        f"{d['key_vault_url']}/secrets/{d['secret_name']}?api-version=7.5",
        json={"value": "x"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert resp.status_code == 401
    assert len(sbp.faults()["apply_then_fail"]) == 1


def vault(sb: SandboxHandle, **kwargs: Any) -> SecretClient:
    d = sb.describe
    cred = ClientSecretCredential(
        d["tenant_id"],
        d["operator"]["client_id"],
        d["operator"]["client_secret"],
        authority=d["authority"],
        disable_instance_discovery=True,
        connection_verify=d["ca_file"],
    )
    return SecretClient(
        d["key_vault_url"],
        cred,
        verify_challenge_resource=False,
        connection_verify=d["ca_file"],
        **kwargs,
    )


def test_a_lost_key_vault_write_reply_is_retried_into_two_versions(sbp: SandboxHandle) -> None:
    sbp.faults(
        apply_then_fail=[{"service": "keyvault", "method": "PUT", "status": 503, "count": 1}]
    )
    with vault(sbp, retry_backoff_factor=0.01) as kv:
        kv.set_secret(sbp.describe["secret_name"], "the-new-value")
    versions = sbp.state()["keyvault"]["versions"]
    assert [v["value"] for v in versions[1:]] == ["the-new-value", "the-new-value"]


def test_a_lost_key_vault_write_reply_without_retry(sbp: SandboxHandle) -> None:
    sbp.faults(apply_then_fail=[{"service": "keyvault", "method": "PUT", "status": 500}])
    with vault(sbp, retry_total=0) as kv, pytest.raises(HttpResponseError) as failed:
        kv.set_secret(sbp.describe["secret_name"], "the-new-value")
    assert failed.value.status_code == 500
    assert sbp.state()["keyvault"]["versions"][-1]["value"] == "the-new-value"


def test_a_disabled_version_answers_403_secret_disabled(sbp: SandboxHandle) -> None:
    name = sbp.describe["secret_name"]
    current = sbp.state()["keyvault"]["current_version"]
    assert sbp.admin("POST", f"keyvault/{name}/current/disable")["version"] == current
    with vault(sbp, retry_total=0) as kv:
        for version in (None, current):
            with pytest.raises(HttpResponseError) as denied:
                kv.get_secret(name, version)
            assert denied.value.status_code == 403
            assert denied.value.error is not None
            assert denied.value.error.code == "Forbidden"
            assert denied.value.response is not None
            body = json.loads(denied.value.response.text())
            assert body["error"]["innererror"] == {"code": "SecretDisabled"}
            assert "disabled secret" in body["error"]["message"]
        listed = list(kv.list_properties_of_secret_versions(name))
        assert [p.enabled for p in listed] == [False]
        kv.update_secret_properties(name, current, enabled=True)  # the SDK's way back
        assert kv.get_secret(name).value
        kv.update_secret_properties(name, current, enabled=False)  # and the SDK's way there
        with pytest.raises(HttpResponseError):
            kv.get_secret(name)
    assert sbp.admin("POST", f"keyvault/{name}/{'0' * 32}/disable").status_code == 404


def test_a_disabled_version_cannot_be_resolved_by_the_app(sbp: SandboxHandle) -> None:
    name = sbp.describe["secret_name"]
    sbp.admin("POST", f"keyvault/{name}/current/disable")
    sbp.admin("POST", "site/refetch")
    assert sbp.state()["site"]["resolved_version"] is None
    resp = sbp.client.get(sbp.describe["app_action_url"])
    assert resp.status_code == 500


def test_a_secret_holds_at_most_15_tags(sbp: SandboxHandle) -> None:
    name = sbp.describe["secret_name"]
    tags = {f"t{i}": str(i) for i in range(15)}
    with vault(sbp, retry_total=0) as kv:
        version = kv.set_secret(name, "v", tags=tags).properties.version
        with pytest.raises(HttpResponseError) as refused:
            kv.set_secret(name, "w", tags={**tags, "t15": "15"})
        assert refused.value.status_code == 400
        assert refused.value.error is not None
        assert refused.value.error.code == "BadParameter"
        with pytest.raises(HttpResponseError):
            kv.update_secret_properties(name, version, tags={**tags, "t15": "15"})
        assert kv.get_secret(name).properties.tags == tags
    assert [v["value"] for v in sbp.state()["keyvault"]["versions"]][-1] == "v"
