"""Issue 13's pessimistic Entra, Graph and sign-in log, against the sandbox's own
defaults (``sbd``, a clock the test moves): token caches that outlive their credential,
a late, out-of-order, duplicated and throttled sign-in log whose records carry
``ipAddress`` and ``correlationId``, the app's user sign-ins, a new secret's propagation
delay, Graph's read lag on removePassword, and the two-secret limit."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from sandbox.instances import OUTBOUND_IPS
from sandbox.testing import SandboxHandle

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SP_ONLY = "signInEventTypes/any(t: t eq 'servicePrincipal')"


def _read(sb: SandboxHandle, flt: str | None = SP_ONLY) -> httpx.Response:
    params = {"$filter": flt} if flt else {}
    return sb.client.get(
        f"{sb.describe['graph_beta_url']}/auditLogs/signIns",
        params=params,
        headers={"Authorization": f"Bearer {sb.graph_token()}"},
    )


def _listed(sb: SandboxHandle, flt: str | None = SP_ONLY) -> list[dict[str, Any]]:
    resp = _read(sb, flt)
    assert resp.status_code == 200, resp.text
    value: list[dict[str, Any]] = resp.json()["value"]
    return value


def _action(sb: SandboxHandle) -> httpx.Response:
    return sb.client.get(sb.describe["app_action_url"])


def _token_request(
    sb: SandboxHandle, secret: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    d = sb.describe
    return sb.client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": d["app"]["client_id"],
            "client_secret": secret,
            "scope": GRAPH_SCOPE,
        },
        headers=headers or {},
    )


def _graph(sb: SandboxHandle, method: str, action: str, body: dict[str, Any]) -> httpx.Response:
    d = sb.describe
    return sb.client.request(
        method,
        f"{d['graph_url']}/applications/{d['app']['object_id']}/{action}",
        json=body,
        headers={"Authorization": f"Bearer {sb.graph_token()}"},
    )


def _seed(sb: SandboxHandle, seed: int) -> None:
    sb.thread.call(lambda: sb.thread.portal.rng.seed(seed))


def _current_secret(sb: SandboxHandle) -> str:
    versions = sb.state()["keyvault"]["versions"]
    return str(versions[-1]["value"])


def test_a_cached_token_outlives_its_removed_credential_until_it_expires(
    sbd: SandboxHandle,
) -> None:
    sbd.faults(app_token_lifetime_seconds=600, app_token_lifetime_jitter_seconds=0)
    key_id = sbd.in_use_key_id()
    assert _action(sbd).status_code == 200
    assert _action(sbd).status_code == 200  # both workers hold a token now
    instances = sbd.state()["site"]["instances"]
    assert all(i["token_expires_at"] is not None for i in instances)
    assert all(i["key_id"] == key_id for i in instances)
    sbd.admin("POST", f"credentials/{key_id}/revoke")
    for _ in range(4):
        assert _action(sbd).status_code == 200  # cached tokens keep working
    assert sbd.state()["app"]["graph_401_total"] == 0
    sbd.advance(601)
    failed = [_action(sbd) for _ in range(2)]
    assert [r.status_code for r in failed] == [502, 502]
    assert {r.json()["graph_status"] for r in failed} == {401}
    state = sbd.state()
    assert state["app"]["graph_401_total"] == 2  # one per worker
    # The workers still hold the removed credential's value: key_id names it.
    assert [i["key_id"] for i in state["site"]["instances"]] == [key_id, key_id]


def test_the_log_is_late_out_of_order_and_duplicated(sbd: SandboxHandle) -> None:
    sbd.faults(app_token_lifetime_seconds=0, app_user_flow_signins=False, signin_reads_per_10s=None)
    _seed(sbd, 7)
    for _ in range(10):
        assert _action(sbd).status_code == 200
        sbd.advance(2)
    sbd.advance(280)  # 300 s after the first sign-in: nothing yet
    assert _listed(sbd) == []
    arrivals: list[str] = []  # createdDateTime of each record, in the order it arrived
    seen: set[str] = set()
    for _ in range(125):
        sbd.advance(2)
        fresh = sorted(
            {s["id"]: s["createdDateTime"] for s in _listed(sbd) if s["id"] not in seen}.items(),
            key=lambda item: item[1],
        )
        seen |= {i for i, _ in fresh}
        arrivals += [created for _, created in fresh]
    assert len(arrivals) == 10  # every record arrived within delay + jitter (+ a copy's)
    assert arrivals != sorted(arrivals)  # ... but not in the order they happened
    final = _listed(sbd)
    assert len({s["id"] for s in final}) == 10
    assert len(final) == 15  # every other record is listed twice, under the same id


def test_reads_are_throttled_per_caller_with_retry_after(sbd: SandboxHandle) -> None:
    for _ in range(5):
        assert _read(sbd).status_code == 200
    throttled = _read(sbd)
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    wait = int(throttled.headers["Retry-After"])
    assert 1 <= wait <= 10
    sbd.advance(wait)
    assert _read(sbd).status_code == 200


def test_the_non_premium_403_comes_and_goes(sbd: SandboxHandle) -> None:
    sbd.faults(signin_nonpremium_403_every=2, signin_reads_per_10s=None)
    answers = [_read(sbd) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 403, 200, 403]
    code = answers[1].json()["error"]["code"]
    assert code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"


def test_records_carry_the_callers_address_and_client_request_id(sbd: SandboxHandle) -> None:
    sbd.faults(signin_log_delay_seconds=0, signin_log_jitter_seconds=0)
    sbd.faults(signin_log_duplicates=False, app_user_flow_signins=False)
    assert _action(sbd).status_code == 200
    assert _action(sbd).status_code == 200  # the second worker
    correlation = str(uuid.uuid4())
    resp = _token_request(sbd, _current_secret(sbd), {"client-request-id": correlation})
    assert resp.status_code == 200
    records = _listed(sbd)
    worker_ips = {i["ip_address"] for i in sbd.state()["site"]["instances"]}
    assert worker_ips <= set(OUTBOUND_IPS)  # what ARM lists as outboundIpAddresses
    mine = [r for r in records if r["correlationId"] == correlation]
    assert [r["ipAddress"] for r in mine] == ["127.0.0.1"]  # the caller's own address
    apps = [r for r in records if r["correlationId"] != correlation]
    assert {r["ipAddress"] for r in apps} == worker_ips
    assert len(worker_ips) == 2


def test_the_apps_user_sign_ins_are_invisible_to_the_service_principal_filter(
    sbd: SandboxHandle,
) -> None:
    sbd.faults(signin_log_delay_seconds=0, signin_log_jitter_seconds=0)
    sbd.faults(signin_log_duplicates=False)
    assert _action(sbd).status_code == 200
    sp = _listed(sbd)
    users = _listed(sbd, None)  # the beta API's default: interactive user sign-ins
    assert [r["signInEventTypes"] for r in sp] == [["servicePrincipal"]]
    assert sp[0]["servicePrincipalCredentialKeyId"] == sbd.in_use_key_id()
    assert [r["signInEventTypes"] for r in users] == [["interactiveUser"]]
    assert users[0]["servicePrincipalCredentialKeyId"] is None
    assert users[0]["appId"] == sbd.describe["app"]["client_id"]
    assert users[0]["isInteractive"] is True
    # A removed secret fails the user's sign-in as soon as a user session needs one.
    sbd.faults(app_token_lifetime_seconds=60, app_token_lifetime_jitter_seconds=0)
    sbd.admin("POST", f"credentials/{sbd.in_use_key_id()}/revoke")
    sbd.advance(61)
    assert _action(sbd).status_code == 502
    failed = [r for r in _listed(sbd, None) if r["status"]["errorCode"] != 0]
    assert [r["status"]["errorCode"] for r in failed] == [7000215]
    assert sbd.state()["app"]["graph_401_total"] == 1


def test_a_new_secret_is_refused_until_it_propagated(sbd: SandboxHandle) -> None:
    added = _graph(sbd, "POST", "addPassword", {"passwordCredential": {"displayName": "n"}})
    assert added.status_code == 200
    secret = added.json()["secretText"]
    sbd.advance(19)
    refused = _token_request(sbd, secret)
    assert (refused.status_code, refused.json()["error_codes"]) == (401, [7000215])
    sbd.advance(1.1)
    assert _token_request(sbd, secret).status_code == 200


def test_remove_password_of_a_just_added_key_id_is_not_found_yet(sbd: SandboxHandle) -> None:
    added = _graph(sbd, "POST", "addPassword", {"passwordCredential": {"displayName": "n"}})
    key_id = added.json()["keyId"]
    early = _graph(sbd, "POST", "removePassword", {"keyId": key_id})
    assert early.status_code == 400
    assert (
        early.json()["error"]["message"] == f"No password credential found with keyId '{key_id}'."
    )
    assert key_id in [c["keyId"] for c in sbd.state()["credentials"]]  # nothing removed
    sbd.advance(10.1)
    assert _graph(sbd, "POST", "removePassword", {"keyId": key_id}).status_code == 204


def test_a_two_secret_app_refuses_a_third(sbd: SandboxHandle) -> None:
    limit = 2
    sbd.faults(password_credential_limit=limit)
    body = {"passwordCredential": {"displayName": "n"}}
    assert _graph(sbd, "POST", "addPassword", body).status_code == 200
    third = _graph(sbd, "POST", "addPassword", body)
    assert third.status_code == 400
    assert third.json()["error"]["code"] == "TooManyAppPasswords"
    assert len(sbd.state()["credentials"]) == limit
