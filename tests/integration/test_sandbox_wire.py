"""The sandbox's raw wire: status codes, headers and bodies as Azure sends them.

Each test names the reference file (../shared/reference/azure-wire/) it is matched to.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from sandbox.admin import PREFIX, Admin
from sandbox.testing import SandboxHandle

GRAPH = "https://graph.microsoft.com/.default"
VAULT = "https://vault.azure.net/.default"
ARM = "https://management.azure.com/.default"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def token_response(sb: SandboxHandle, client_id: str, secret: str, scope: str) -> httpx.Response:
    d = sb.describe
    return sb.client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )


def operator_token(sb: SandboxHandle, scope: str) -> str:
    op = sb.describe["operator"]
    resp = token_response(sb, op["client_id"], op["client_secret"], scope)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def app_value(sb: SandboxHandle) -> str:
    return str(sb.state()["keyvault"]["versions"][-1]["value"])


def app_token(sb: SandboxHandle) -> str:
    resp = token_response(sb, sb.describe["app"]["client_id"], app_value(sb), GRAPH)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_aadsts(resp: httpx.Response, status: int, error: str, code: int) -> None:
    assert resp.status_code == status
    body = resp.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    assert UUID.match(body["trace_id"])
    assert UUID.match(body["correlation_id"])


def assert_graph_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status
    error: dict[str, Any] = resp.json()["error"]
    assert error["code"] == code
    assert error["message"]
    inner = error["innerError"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", inner["date"])
    assert inner["request-id"] == inner["client-request-id"] == resp.headers["request-id"]
    return error


# -- Entra ---------------------------------------------------------------------------


def test_token_success_shape(sb: SandboxHandle) -> None:
    """entra/token-client-credentials-secret.recorded.json"""
    op = sb.describe["operator"]
    body = token_response(sb, op["client_id"], op["client_secret"], GRAPH).json()
    assert list(body) == ["token_type", "expires_in", "ext_expires_in", "access_token"]
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    assert op["client_secret"] not in body["access_token"]


def test_token_errors(sb: SandboxHandle) -> None:
    d = sb.describe
    app = d["app"]["client_id"]
    assert_aadsts(token_response(sb, app, "nope", GRAPH), 401, "invalid_client", 7000215)
    unknown = token_response(sb, "00000000-0000-0000-0000-000000000001", "x", GRAPH)
    assert_aadsts(unknown, 400, "unauthorized_client", 700016)
    assert_aadsts(
        token_response(sb, app, app_value(sb), "https://nope/.default"), 400, "invalid_scope", 70011
    )
    wrong_tenant = sb.client.post(
        f"{d['authority']}/11111111-2222-3333-4444-555555555555/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": app,
            "client_secret": "x",
            "scope": GRAPH,
        },
    )
    assert_aadsts(wrong_tenant, 400, "invalid_request", 90002)
    discovery = sb.client.get(
        f"{d['authority']}/11111111-2222-3333-4444-555555555555/v2.0/.well-known/openid-configuration"
    )
    assert_aadsts(discovery, 400, "invalid_tenant", 90002)


def test_expired_and_revoked_credentials(sb: SandboxHandle) -> None:
    app, value, key = sb.describe["app"]["client_id"], app_value(sb), sb.in_use_key_id()
    assert token_response(sb, app, value, GRAPH).status_code == 200
    expired = sb.admin("POST", f"credentials/{key}/expire")
    assert expired["keyId"] == key
    assert_aadsts(token_response(sb, app, value, GRAPH), 401, "invalid_client", 7000222)
    sb.admin("POST", f"credentials/{key}/revoke")
    assert sb.state()["credentials"] == []
    assert_aadsts(token_response(sb, app, value, GRAPH), 401, "invalid_client", 7000215)
    missing = sb.admin("POST", f"credentials/{key}/expire")
    assert missing.status_code == 404


def test_openid_configuration(sb: SandboxHandle) -> None:
    d = sb.describe
    resp = sb.client.get(f"{d['authority']}/{d['tenant_id']}/v2.0/.well-known/openid-configuration")
    body = resp.json()
    assert body["issuer"] == f"{d['authority']}/{d['tenant_id']}/v2.0"
    assert body["token_endpoint"] == f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token"
    assert resp.headers["Cache-Control"] == "max-age=86400, private"
    # entra/openid-configuration-tenant-not-found: 400 invalid_tenant, cached a day too.
    ghost = "12345678-1234-1234-1234-123456789012"
    unknown = sb.client.get(f"{d['authority']}/{ghost}/v2.0/.well-known/openid-configuration")
    assert_aadsts(unknown, 400, "invalid_tenant", 90002)
    assert unknown.headers["Cache-Control"] == "max-age=86400, private"


def test_propagation_delay(sb: SandboxHandle) -> None:
    sb.faults(propagation_delay_seconds=0.3)
    token = operator_token(sb, GRAPH)
    resp = sb.client.post(
        f"{sb.describe['graph_url']}/applications/{sb.describe['app']['object_id']}/addPassword",
        headers=auth(token),
        json={"passwordCredential": {"displayName": "new"}},
    )
    secret = resp.json()["secretText"]
    app = sb.describe["app"]["client_id"]
    assert_aadsts(token_response(sb, app, secret, GRAPH), 401, "invalid_client", 7000215)
    time.sleep(0.35)
    assert token_response(sb, app, secret, GRAPH).status_code == 200


# -- Graph ---------------------------------------------------------------------------


def test_graph_bearer_checks(sb: SandboxHandle) -> None:
    d = sb.describe
    url = f"{d['graph_url']}/applications/{d['app']['object_id']}"
    assert_graph_error(sb.client.get(url), 401, "InvalidAuthenticationToken")
    assert_graph_error(sb.client.get(url, headers=auth("bogus")), 401, "InvalidAuthenticationToken")
    vault_token = operator_token(sb, VAULT)
    wrong_aud = assert_graph_error(
        sb.client.get(url, headers=auth(vault_token)), 401, "InvalidAuthenticationToken"
    )
    assert "audience" in wrong_aud["message"]
    assert_graph_error(
        sb.client.get(url, headers=auth(app_token(sb))), 403, "Authorization_RequestDenied"
    )
    assert_graph_error(
        sb.client.get(d["graph_probe_url"], headers=auth(operator_token(sb, GRAPH))),
        403,
        "Authorization_RequestDenied",
    )


def test_graph_get_application_select_and_404(sb: SandboxHandle) -> None:
    d = sb.describe
    token = operator_token(sb, GRAPH)
    by_app_id = sb.client.get(
        f"{d['graph_url']}/applications(appId='{d['app']['client_id']}')",
        params={"$select": "id,passwordCredentials"},
        headers=auth(token),
    ).json()
    assert by_app_id["@odata.context"].endswith("#applications(id,passwordCredentials)/$entity")
    assert set(by_app_id) == {"@odata.context", "id", "passwordCredentials"}
    (cred,) = by_app_id["passwordCredentials"]
    assert cred["secretText"] is None
    assert cred["hint"] == app_value(sb)[:3]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", cred["endDateTime"])
    missing = sb.client.get(
        f"{d['graph_url']}/applications/00000000-0000-0000-0000-000000000000", headers=auth(token)
    )
    assert_graph_error(missing, 404, "Request_ResourceNotFound")


def test_graph_add_password_policy_cap_and_remove(sb: SandboxHandle) -> None:
    """graph/addPassword.doc.json, error-400-CredentialInvalidLifetimeAsPerAppPolicy"""
    d = sb.describe
    token = operator_token(sb, GRAPH)
    base = f"{d['graph_url']}/applications/{d['app']['object_id']}"
    sb.faults(max_password_lifetime_days=90, max_password_credentials=2)
    too_long = sb.client.post(f"{base}/addPassword", headers=auth(token), json={})
    err = assert_graph_error(too_long, 400, "CredentialInvalidLifetimeAsPerAppPolicy")
    assert err["details"][0]["target"] == "EndDate"
    end = "2099-01-01T00:00:00Z"
    assert (
        sb.client.post(
            f"{base}/addPassword",
            headers=auth(token),
            json={"passwordCredential": {"endDateTime": end}},
        ).status_code
        == 400
    )
    sb.faults(max_password_lifetime_days=None)
    added = sb.client.post(
        f"{base}/addPassword",
        headers=auth(token),
        json={"passwordCredential": {"displayName": "API Secret 2028"}},
    )
    assert added.status_code == 200
    body = added.json()
    assert body["@odata.context"].endswith("#microsoft.graph.passwordCredential")
    assert body["hint"] == body["secretText"][:3]
    assert body["secretText"][4] == "~"
    assert len(body["secretText"]) == 40
    third = sb.client.post(f"{base}/addPassword", headers=auth(token), json={})
    cap = assert_graph_error(third, 400, "TooManyAppPasswords")
    assert "maximum of 2" in cap["message"]
    removed = sb.client.post(
        f"{base}/removePassword", headers=auth(token), json={"keyId": body["keyId"]}
    )
    assert removed.status_code == 204
    assert removed.content == b""
    assert [c["keyId"] for c in sb.state()["credentials"]] == [sb.in_use_key_id()]


def test_graph_mobile_apps_top_and_next_link(sb: SandboxHandle) -> None:
    token = app_token(sb)
    page = sb.client.get(sb.describe["graph_probe_url"], params={"$top": 2}, headers=auth(token))
    body = page.json()
    assert len(body["value"]) == 2
    nxt = sb.client.get(body["@odata.nextLink"], headers=auth(token)).json()
    assert len(nxt["value"]) == 2
    assert nxt["value"][0]["id"] != body["value"][0]["id"]


# -- Key Vault -----------------------------------------------------------------------


def test_keyvault_challenge_exactly(sb: SandboxHandle) -> None:
    """keyvault/challenge-401.recorded-7.3.json"""
    d = sb.describe
    resp = sb.client.put(
        f"{d['key_vault_url']}/secrets/{d['secret_name']}?api-version=7.5", content=b""
    )
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.microsoftonline.com/{d["tenant_id"]}", '
        'resource="https://vault.azure.net"'
    )
    assert resp.json() == {
        "error": {
            "code": "Unauthorized",
            "message": "AKV10000: Request is missing a Bearer or PoP token.",
        }
    }
    assert len(sb.state()["keyvault"]["versions"]) == 1  # nothing was written


def test_keyvault_bundle_paging_and_404(sb: SandboxHandle) -> None:
    d = sb.describe
    token = operator_token(sb, VAULT)
    url = f"{d['key_vault_url']}/secrets/{d['secret_name']}"
    forbidden = sb.client.get(f"{url}/?api-version=7.5", headers=auth(app_token(sb)))
    assert forbidden.status_code == 401  # a Graph token is not a vault token
    put = sb.client.put(
        f"{url}?api-version=7.5",
        headers=auth(token),
        json={"value": "v2", "tags": {"keyId": "abc"}, "contentType": "text/plain"},
    ).json()
    assert put["value"] == "v2"
    assert re.fullmatch(rf"{re.escape(url)}/[0-9a-f]{{32}}", put["id"])
    assert isinstance(put["attributes"]["created"], int)
    assert put["tags"] == {"keyId": "abc"}
    assert put["contentType"] == "text/plain"
    latest = sb.client.get(f"{url}/?api-version=7.5", headers=auth(token)).json()
    assert latest["id"] == put["id"]
    page = sb.client.get(
        f"{url}/versions", params={"api-version": "7.5", "maxresults": 1}, headers=auth(token)
    ).json()
    assert len(page["value"]) == 1
    assert "value" not in page["value"][0]
    last = sb.client.get(page["nextLink"], headers=auth(token)).json()
    assert len(last["value"]) == 1
    assert last["nextLink"] is None
    missing = sb.client.get(f"{url}/{'0' * 32}?api-version=7.5", headers=auth(token))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SecretNotFound"


# -- ARM -----------------------------------------------------------------------------


def site_url(sb: SandboxHandle, suffix: str = "") -> str:
    d = sb.describe
    return (
        f"{d['arm_url']}/subscriptions/{d['subscription_id']}/resourceGroups/"
        f"{d['resource_group']}/providers/Microsoft.Web/sites/{d['site_name']}{suffix}"
        "?api-version=2025-05-01"
    )


def test_arm_errors(sb: SandboxHandle) -> None:
    token = operator_token(sb, ARM)
    unauth = sb.client.get(site_url(sb))
    assert unauth.status_code == 401
    assert unauth.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in unauth.headers
    graph_tok = sb.client.get(site_url(sb), headers=auth(operator_token(sb, GRAPH)))
    assert graph_tok.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    no_version = sb.client.get(site_url(sb).split("?")[0], headers=auth(token))
    assert no_version.status_code == 400
    assert no_version.json()["error"]["code"] == "MissingApiVersionParameter"
    missing = sb.client.get(
        site_url(sb).replace(sb.describe["site_name"], "x"), headers=auth(token)
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["message"].endswith("https://aka.ms/ARMResourceNotFoundFix")


def test_arm_restart_stop_start_bodies(sb: SandboxHandle) -> None:
    """arm/restart-site.json, stop-site.json, start-site.json: 200 and an empty body"""
    token = operator_token(sb, ARM)
    for action in ("/restart", "/stop", "/start"):
        resp = sb.client.post(site_url(sb, action), headers=auth(token))
        assert resp.status_code == 200
        assert resp.content == b""
    site = sb.state()["site"]
    assert (site["restarts"], site["stops"], site["starts"]) == (1, 1, 1)


def test_arm_reference_list_pages_with_next_link(sb: SandboxHandle) -> None:
    """arm/get-appsettings-kv-references: {value, nextLink}; items keyed by app setting"""
    sb.faults(arm_page_size=2, extra_key_vault_references=3)
    token = operator_token(sb, ARM)
    url: str | None = site_url(sb, "/config/configreferences/appsettings")
    pages = []
    while url is not None:
        page = sb.client.get(url, headers=auth(token)).json()
        pages.append([item["name"] for item in page["value"]])
        url = page["nextLink"]
    assert pages == [
        ["Extra__Setting0", "Extra__Setting1"],
        ["Extra__Setting2", sb.describe["app_setting"]],
    ]
    one = sb.client.get(
        site_url(sb, "/config/configreferences/appsettings/Extra__Setting1"), headers=auth(token)
    )
    assert one.json()["properties"]["secretName"] == "ExtraSecret1"


# -- faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "status", "code"),
    [
        ("graph", 429, "TooManyRequests"),
        ("keyvault", 429, "Throttled"),
        ("arm", 429, "SubscriptionRequestsThrottled"),
        ("graph", 503, "serviceNotAvailable"),
        ("arm", 500, "InternalServerError"),
    ],
)
def test_injected_status_with_retry_after(
    sb: SandboxHandle, service: str, status: int, code: str
) -> None:
    d = sb.describe
    url, scope = {
        "graph": (f"{d['graph_url']}/applications/{d['app']['object_id']}", GRAPH),
        "keyvault": (f"{d['key_vault_url']}/secrets/{d['secret_name']}/?api-version=7.5", VAULT),
        "arm": (site_url(sb), ARM),
    }[service]
    token = operator_token(sb, scope)
    sb.faults(inject=[{"service": service, "status": status, "count": 2, "retry_after": 3}])
    for _ in range(2):
        resp = sb.client.get(url, headers=auth(token))
        assert resp.status_code == status
        assert resp.headers["Retry-After"] == "3"
        body = resp.json()
        # ARM's front door throttles in its own envelope; anything else on a site comes
        # from Microsoft.Web itself, in PascalCase (docs/azure-behaviour.md).
        pascal = service == "arm" and status != 429
        assert (body["Code"] if pascal else body["error"]["code"]) == code
    assert sb.client.get(url, headers=auth(token)).status_code == 200
    assert sb.state()["counters"][service][str(status)] == 2


def test_injection_filters_by_method_and_entra(sb: SandboxHandle) -> None:
    d = sb.describe
    token = operator_token(sb, VAULT)
    url = f"{d['key_vault_url']}/secrets/{d['secret_name']}"
    sb.faults(inject=[{"service": "keyvault", "status": 500, "method": "PUT"}])
    assert sb.client.get(f"{url}/?api-version=7.5", headers=auth(token)).status_code == 200
    put = sb.client.put(f"{url}?api-version=7.5", headers=auth(token), json={"value": "x"})
    assert put.status_code == 500
    assert len(sb.state()["keyvault"]["versions"]) == 1
    sb.faults(inject=[{"service": "entra", "status": 503}])
    op = d["operator"]
    assert token_response(sb, op["client_id"], op["client_secret"], GRAPH).status_code == 503


def test_fault_validation(sb: SandboxHandle) -> None:
    bad = sb.admin("POST", "faults", {"cold_start": 1, "nope": 2, "sticky_cache": True})
    assert bad.status_code == 400
    assert "cold_start, nope" in bad.json()["error"]
    assert sb.state()["faults"]["sticky_cache"] is False  # nothing half-applied
    wrong_type = sb.admin("POST", "faults", {"sticky_cache": "yes"})
    assert wrong_type.status_code == 400
    assert "sticky_cache" in wrong_type.json()["error"]
    bad_inject = sb.admin("POST", "faults", {"inject": [{"service": "dns", "status": 500}]})
    assert bad_inject.status_code == 400
    assert sb.admin("GET", "faults")["inject"] == []


def test_latency(sb: SandboxHandle) -> None:
    sb.faults(latency_seconds={"app": 0.2})
    t0 = time.perf_counter()
    assert sb.client.get(sb.describe["health_url"]).status_code == 200
    assert time.perf_counter() - t0 >= 0.2


def test_every_fault_key_and_admin_route_is_documented(sb: SandboxHandle) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "sandbox.md").read_text()
    fault_table = doc.split("## Fault keys")[1].split("\n## ")[0]
    assert set(re.findall(r"^\| `(\w+)` \|", fault_table, re.M)) == set(sb.faults())
    admin_doc = doc.split("## Admin API")[1].split("\n## ")[0]
    admin = Admin(sb.thread.portal, on_change=lambda: None, on_faults=lambda _: None, describe=dict)
    for route in admin.routes():
        assert isinstance(route, web.RouteDef)
        path = route.path.removeprefix(PREFIX + "/").replace("{key_id}", "{keyId}")
        assert f"`{route.method} {path}`" in admin_doc
