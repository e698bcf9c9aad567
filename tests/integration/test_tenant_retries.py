"""Who retries: reads are retried by the SDKs, writes and transitions go out once and
come back classified for the caller's one retry layer (tenant.errors), against the
sandbox through the real SDKs with retries switched ON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tenant import errors
from tenant.connect import open_target
from tenant.endpoints import Cloud, RetryPolicy
from tenant.models import SecretValue, SignInLog, SiteState
from tenant.ports import Identity, TargetClients, TargetRef

# Retries on, with waits short enough for a test.
RETRYING = RetryPolicy(total=3, backoff_factor=0.01, backoff_max=0.1, timeout_seconds=10.0)


@pytest.fixture
async def clients(
    sb: Any, target_ref: TargetRef, operator: Identity, sandbox_cloud: Cloud
) -> AsyncIterator[TargetClients]:
    async with open_target(target_ref, operator, sandbox_cloud, RETRYING) as c:
        await c.vault.get_current()  # past Key Vault's challenge
        await c.app.get_app()  # appId and object id known
        yield c


def inject(sb: Any, service: str, status: int, **extra: Any) -> None:
    sb.admin("POST", "faults", {"inject": [{"service": service, "status": status, **extra}]})


def by_method(sb: Any, service: str, method: str) -> int:
    return int(sb.state()["counters_by_method"].get(service, {}).get(method, 0))


def by_status(sb: Any, service: str, status: int) -> int:
    return int(sb.state()["counters"].get(service, {}).get(str(status), 0))


async def test_a_read_is_retried_by_the_sdk(sb: Any, clients: TargetClients) -> None:
    inject(sb, "arm", 503)
    site = await clients.site.get_site()
    assert site.state is SiteState.RUNNING
    assert (by_status(sb, "arm", 503), by_status(sb, "arm", 200)) == (1, 1)


async def test_add_password_is_sent_once_and_a_503_may_have_applied(
    sb: Any, clients: TargetClients
) -> None:
    posts = by_method(sb, "graph", "POST")
    inject(sb, "graph", 503, method="POST")
    with pytest.raises(errors.Unavailable) as caught:
        await clients.app.add_password("secretwarden once", None)
    # msgraph's middleware would have retried this POST three times
    assert by_method(sb, "graph", "POST") - posts == 1
    assert caught.value.maybe_applied
    assert caught.value.transient


async def test_remove_password_is_sent_once(sb: Any, clients: TargetClients) -> None:
    key_id = sb.state()["credentials"][0]["keyId"]
    posts = by_method(sb, "graph", "POST")
    inject(sb, "graph", 503, method="POST")
    with pytest.raises(errors.Unavailable):
        await clients.app.remove_password(key_id)
    assert by_method(sb, "graph", "POST") - posts == 1
    assert key_id in {c["keyId"] for c in sb.state()["credentials"]}


async def test_the_key_vault_write_is_sent_once(sb: Any, clients: TargetClients) -> None:
    puts = by_method(sb, "keyvault", "PUT")
    inject(sb, "keyvault", 500, method="PUT")
    with pytest.raises(errors.Unavailable) as caught:
        await clients.vault.set_value(SecretValue("written-once"), {})
    assert by_method(sb, "keyvault", "PUT") - puts == 1
    assert caught.value.maybe_applied
    assert "written-once" not in str(caught.value)


@pytest.mark.parametrize("transition", ["restart", "stop", "start", "refresh"])
async def test_a_transition_is_sent_once_and_409_is_busy(
    sb: Any, clients: TargetClients, transition: str
) -> None:
    posts = by_method(sb, "arm", "POST")
    inject(sb, "arm", 409, method="POST", retry_after=2)
    call = {
        "restart": clients.site.restart,
        "stop": clients.site.stop,
        "start": clients.site.start,
        "refresh": clients.site.refresh_key_vault_references,
    }[transition]
    with pytest.raises(errors.Busy) as caught:
        await call()
    assert by_method(sb, "arm", "POST") - posts == 1
    assert caught.value.transient
    assert caught.value.maybe_applied  # a write: pessimistically, it may have applied
    assert ("refresh Key Vault references of" if transition == "refresh" else transition) in str(
        caught.value
    )
    assert caught.value.retry_after == 2.0
    assert caught.value.status == 409


async def test_a_transition_throttled_is_sent_once_and_throttled(
    sb: Any, clients: TargetClients
) -> None:
    posts = by_method(sb, "arm", "POST")
    inject(sb, "arm", 429, method="POST", retry_after=1)
    with pytest.raises(errors.Throttled) as caught:
        await clients.site.restart()
    # azure-core would have waited Retry-After and sent it again
    assert by_method(sb, "arm", "POST") - posts == 1
    assert caught.value.retry_after == 1.0


async def test_the_app_settings_write_is_sent_once(sb: Any, clients: TargetClients) -> None:
    puts = by_method(sb, "arm", "PUT")
    inject(sb, "arm", 503, method="PUT")
    with pytest.raises(errors.Unavailable) as caught:
        await clients.site.configuration_change("m-1")
    # azure-core retries a PUT on 503: switched off, so the one retry layer decides
    assert by_method(sb, "arm", "PUT") - puts == 1
    assert caught.value.maybe_applied
    assert "write app settings (SECRETWARDEN_RELOAD_MARKER) of site" in str(caught.value)


async def test_a_tag_update_is_sent_once_and_may_have_applied(
    sb: Any, clients: TargetClients
) -> None:
    version = (await clients.vault.get_current()).version
    patches = by_method(sb, "keyvault", "PATCH")
    inject(sb, "keyvault", 503, method="PATCH")
    with pytest.raises(errors.Unavailable) as caught:
        await clients.vault.set_tags(version, {"owner": "ops"})
    assert by_method(sb, "keyvault", "PATCH") - patches == 1
    assert caught.value.maybe_applied
    assert f"set tags of version {version} of secret" in str(caught.value)


async def test_a_sign_in_log_read_is_retried_by_msgraphs_middleware(
    sb: Any, clients: TargetClients
) -> None:
    # the httpx client's middleware runs only for requests that carry kiota's options
    gets = by_method(sb, "graph", "GET")
    sb.faults(inject=[{"service": "graph", "status": 503, "path_contains": "auditLogs"}])
    app_id = await clients.app.client_id()
    log = await clients.signins.service_principal_sign_ins(
        app_id, datetime.now(UTC) - timedelta(hours=1)
    )
    assert isinstance(log, SignInLog)
    assert by_method(sb, "graph", "GET") - gets == 2
