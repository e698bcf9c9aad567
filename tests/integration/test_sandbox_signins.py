"""Sign-in evidence: which credential the backend app signed in with (issue 8).

The App Service signs in with the value it resolved; Entra records the credential it
matched; Graph beta lists service principal sign-ins ``signin_log_delay_seconds`` later,
to an operator holding AuditLog.Read.All. Read through azure-identity + HTTP as the
daemon would (msgraph-sdk has no beta signIn model).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from helpers import operator_credential

from sandbox.testing import SandboxHandle

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SP_ONLY = "signInEventTypes/any(t: t eq 'servicePrincipal')"


def signins(sb: SandboxHandle, flt: str | None = SP_ONLY, **params: str) -> httpx.Response:
    d = sb.describe
    cred = operator_credential(d)
    token = cred.get_token(GRAPH_SCOPE).token
    query = {**({"$filter": flt} if flt else {}), **params}
    return sb.client.get(
        f"{d['base_url']}/beta/auditLogs/signIns",
        params=query,
        headers={"Authorization": f"Bearer {token}"},
    )


def listed(sb: SandboxHandle, flt: str | None = SP_ONLY, **params: str) -> list[dict[str, Any]]:
    resp = signins(sb, flt, **params)
    assert resp.status_code == 200, resp.text
    value: list[dict[str, Any]] = resp.json()["value"]
    return value


def app_signs_in(sb: SandboxHandle) -> None:
    assert sb.client.get(sb.describe["app_action_url"]).status_code == 200


def test_the_app_sign_in_names_its_credential_after_the_log_delay(sbp: SandboxHandle) -> None:
    key_id = sbp.in_use_key_id()
    app_id = sbp.describe["app"]["client_id"]
    app_signs_in(sbp)
    state = sbp.state()["signins"]
    assert list(state) == [key_id]  # the admin view has it at once
    assert state[key_id]["count"] == 1
    assert state[key_id]["failed"] == 0
    flt = f"{SP_ONLY} and appId eq '{app_id}'"
    assert listed(sbp, flt) == []  # not yet in the log
    sbp.advance(119)
    assert listed(sbp, flt) == []
    sbp.advance(1.5)
    [entry] = listed(sbp, flt)
    assert entry["appId"] == app_id
    assert entry["servicePrincipalCredentialKeyId"] == key_id
    assert entry["status"]["errorCode"] == 0
    assert entry["signInEventTypes"] == ["servicePrincipal"]
    assert entry["createdDateTime"].endswith("Z")


def test_without_the_service_principal_filter_the_list_is_empty(sbp: SandboxHandle) -> None:
    sbp.faults(signin_log_delay_seconds=0)
    app_signs_in(sbp)
    assert listed(sbp, None) == []
    assert len(listed(sbp)) == 1


def test_filters_on_time_credential_and_status(sbp: SandboxHandle) -> None:
    sbp.faults(signin_log_delay_seconds=0)
    key_id = sbp.in_use_key_id()
    app_signs_in(sbp)
    now = datetime.fromisoformat(sbp.state()["now"])
    later = (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    earlier = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed(sbp, f"{SP_ONLY} and createdDateTime ge {later}") == []
    assert len(listed(sbp, f"{SP_ONLY} and createdDateTime ge {earlier}")) == 1
    assert len(listed(sbp, f"{SP_ONLY} and servicePrincipalCredentialKeyId eq '{key_id}'")) == 1
    assert listed(sbp, f"{SP_ONLY} and status/errorCode ne 0") == []
    assert listed(sbp, f"{SP_ONLY} and appId eq '00000000-0000-0000-0000-000000000000'") == []
    bad = signins(sbp, f"{SP_ONLY} and userPrincipalName eq 'x'")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "BadRequest"


def test_failed_sign_ins_say_which_credential_if_any(sbp: SandboxHandle) -> None:
    sbp.faults(signin_log_delay_seconds=0)
    key_id = sbp.in_use_key_id()
    sbp.admin("POST", f"credentials/{key_id}/expire")
    resp = sbp.client.get(sbp.describe["app_action_url"])
    assert resp.status_code == 502
    d = sbp.describe
    wrong = sbp.client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": d["app"]["client_id"],
            "client_secret": "not-a-secret-of-this-app",
            "scope": GRAPH_SCOPE,
        },
    )
    assert wrong.status_code == 401
    newest, oldest = listed(sbp)
    assert (newest["servicePrincipalCredentialKeyId"], newest["status"]["errorCode"]) == (
        None,
        7000215,
    )
    assert (oldest["servicePrincipalCredentialKeyId"], oldest["status"]["errorCode"]) == (
        key_id,
        7000222,
    )
    assert sbp.state()["signins"][key_id] == {
        "count": 1, "failed": 1, "last": sbp.state()["signins"][key_id]["last"],
    }  # fmt: skip


def test_the_operator_without_audit_log_permission_gets_403(sbp: SandboxHandle) -> None:
    sbp.faults(operator_can_read_signins=False)
    resp = signins(sbp)
    assert resp.status_code == 403
    error = resp.json()["error"]
    assert error["code"] == "Authorization_RequestDenied"
    assert "AuditLog.Read.All" in error["message"]


def test_pages_follow_next_link(sbp: SandboxHandle) -> None:
    sbp.faults(signin_log_delay_seconds=0)
    for _ in range(3):
        app_signs_in(sbp)
    first = signins(sbp, SP_ONLY, **{"$top": "2"}).json()
    assert len(first["value"]) == 2
    assert first["value"][0]["createdDateTime"] >= first["value"][1]["createdDateTime"]
    link = first["@odata.nextLink"]
    assert link.startswith(sbp.describe["base_url"] + "/beta/auditLogs/signIns?")
    d = sbp.describe
    cred = operator_credential(d)
    token = cred.get_token(GRAPH_SCOPE).token
    second = sbp.client.get(link, headers={"Authorization": f"Bearer {token}"}).json()
    assert len(second["value"]) == 1
    assert "@odata.nextLink" not in second
