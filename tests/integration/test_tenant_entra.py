"""tenant.entra against the sandbox: the real azure-identity credential, real
ClientAuthenticationErrors, AADSTS codes read from them, and the app's Graph call."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tenant.connect import TenantSession
from tenant.endpoints import PUBLIC, Cloud, RetryPolicy
from tenant.entra import EntraTokenIssuer
from tenant.models import SecretValue, TokenFailure
from tenant.ports import Identity


@pytest.fixture
async def session(operator: Identity, sandbox_cloud: Cloud) -> AsyncIterator[TenantSession]:
    async with TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as s:
        yield s


@pytest.fixture
def issuer(sb: Any, session: TenantSession) -> EntraTokenIssuer:
    return session.token_issuer(sb.describe["tenant_id"])


def in_use_value(sb: Any) -> SecretValue:
    kv = sb.state()["keyvault"]
    current = next(v for v in kv["versions"] if v["version"] == kv["current_version"])
    return SecretValue(current["value"])


async def test_the_key_vault_value_gets_a_token_that_graph_accepts(
    sb: Any, issuer: EntraTokenIssuer
) -> None:
    outcome = await issuer.try_secret(sb.describe["app"]["client_id"], in_use_value(sb))
    assert outcome.ok
    assert outcome.failure is None
    assert outcome.access_token is not None
    assert outcome.expires_on is not None

    call = await issuer.call_graph(outcome.access_token, sb.describe["graph_probe_url"])
    assert (call.status, call.code) == (200, None)
    assert call.duration_seconds >= 0


async def test_a_wrong_secret_is_aadsts7000215_invalid_client_401(
    sb: Any, issuer: EntraTokenIssuer
) -> None:
    outcome = await issuer.try_secret(
        sb.describe["app"]["client_id"], SecretValue("not-the-secret-" + uuid.uuid4().hex)
    )
    assert (outcome.ok, outcome.failure, outcome.aadsts) == (
        False,
        TokenFailure.INVALID_SECRET,
        7000215,
    )
    assert (outcome.status, outcome.error) == (401, "invalid_client")
    assert outcome.secret_rejected


async def test_an_expired_secret_is_aadsts7000222(sb: Any, issuer: EntraTokenIssuer) -> None:
    value = in_use_value(sb)
    key_id = next(c["keyId"] for c in sb.state()["credentials"] if c["in_key_vault"])
    sb.admin("POST", f"credentials/{key_id}/expire", {})

    outcome = await issuer.try_secret(sb.describe["app"]["client_id"], value)
    assert (outcome.failure, outcome.aadsts, outcome.status) == (
        TokenFailure.EXPIRED_SECRET,
        7000222,
        401,
    )


async def test_an_unknown_app_is_aadsts700016(sb: Any, issuer: EntraTokenIssuer) -> None:
    outcome = await issuer.try_secret(str(uuid.uuid4()), in_use_value(sb))
    assert (outcome.failure, outcome.aadsts, outcome.status) == (
        TokenFailure.APP_NOT_FOUND,
        700016,
        400,
    )


async def test_an_unknown_tenant_is_aadsts90002(sb: Any, session: TenantSession) -> None:
    outcome = await session.token_issuer(str(uuid.uuid4())).try_secret(
        sb.describe["app"]["client_id"], in_use_value(sb)
    )
    assert (outcome.failure, outcome.aadsts, outcome.status) == (
        TokenFailure.TENANT_NOT_FOUND,
        90002,
        400,
    )


@pytest.mark.parametrize(
    ("status", "failure"), [(429, TokenFailure.THROTTLED), (503, TokenFailure.UNAVAILABLE)]
)
async def test_throttling_and_outages_at_the_token_endpoint_are_outcomes_not_raises(
    sb: Any, issuer: EntraTokenIssuer, status: int, failure: TokenFailure
) -> None:
    sb.admin(
        "POST", "faults", {"inject": [{"service": "entra", "status": status, "retry_after": 2}]}
    )
    outcome = await issuer.try_secret(sb.describe["app"]["client_id"], in_use_value(sb))
    assert (outcome.ok, outcome.failure, outcome.status) == (False, failure, status)
    assert not outcome.secret_rejected


async def test_an_unreachable_token_endpoint_is_unavailable(sb: Any, operator: Identity) -> None:
    cloud = PUBLIC.with_custom(
        authority="https://127.0.0.1:1", ca_file=Path(sb.describe["ca_file"])
    )
    async with TenantSession(operator, cloud, RetryPolicy.none()) as s:
        outcome = await s.token_issuer(sb.describe["tenant_id"]).try_secret(
            sb.describe["app"]["client_id"], in_use_value(sb)
        )
    assert outcome.failure is TokenFailure.UNAVAILABLE


async def test_nothing_is_cached_across_secrets(sb: Any, issuer: EntraTokenIssuer) -> None:
    client_id = sb.describe["app"]["client_id"]
    assert (await issuer.try_secret(client_id, in_use_value(sb))).ok
    wrong = await issuer.try_secret(client_id, SecretValue("wrong-" + uuid.uuid4().hex))
    assert wrong.failure is TokenFailure.INVALID_SECRET


async def test_graph_refuses_a_bogus_token_with_its_error_code(
    sb: Any, issuer: EntraTokenIssuer
) -> None:
    call = await issuer.call_graph(SecretValue("bogus"), sb.describe["graph_probe_url"])
    assert call.status == 401
    assert call.code == "InvalidAuthenticationToken"


async def test_no_secret_value_reaches_a_log_line_on_refusal_or_success(
    sb: Any, issuer: EntraTokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = in_use_value(sb)
    wrong = SecretValue("wrong-" + uuid.uuid4().hex)
    ok = await issuer.try_secret(sb.describe["app"]["client_id"], good)
    refused = await issuer.try_secret(sb.describe["app"]["client_id"], wrong)
    assert ok.ok
    assert not refused.ok
    assert caplog.records, "the SDKs log at DEBUG; nothing captured means the check is void"
    text = caplog.text + repr(refused) + repr(ok)
    assert good.reveal() not in text
    assert wrong.reveal() not in text
    assert ok.access_token is not None
    assert ok.access_token.reveal() not in text


async def test_a_refused_secret_is_an_outcome_not_a_warning(
    sb: Any, issuer: EntraTokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    app = sb.describe["app"]["client_id"]
    with caplog.at_level(logging.DEBUG, logger="azure.identity"):
        outcome = await issuer.try_secret(app, SecretValue("not-the-secret"))
    assert outcome.failure is TokenFailure.INVALID_SECRET
    assert [r.getMessage() for r in caplog.records if r.name.startswith("azure.identity")] == []

    # Outside try_secret azure-identity still reports failures as it always does.
    from azure.identity.aio import ClientSecretCredential

    d = sb.describe
    credential = ClientSecretCredential(
        d["tenant_id"],
        app,
        "not-the-secret",
        authority=d["authority"],
        disable_instance_discovery=True,
        connection_verify=d["ca_file"],
    )
    with caplog.at_level(logging.WARNING, logger="azure.identity"):
        async with credential:
            with pytest.raises(Exception, match="AADSTS7000215"):
                await credential.get_token("https://graph.microsoft.com/.default")
    assert any("get_token failed" in r.getMessage() for r in caplog.records)
