"""Each probe against the sandbox over HTTPS with the real SDKs, healthy and failing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon.app import health_http_client
from daemon.config import Config, load_config
from daemon.sandbox_config import write_sandbox_config
from exporters.expiry import probe_expiry
from exporters.graph_auth import probe_graph_auth
from exporters.health import probe_health
from exporters.reference import probe_reference
from tenant.connect import TenantSession
from tenant.models import KEY_ID_TAG, SecretValue, TokenFailure
from tenant.ports import TargetClients


def sandbox_config(sb: Any, tmp_path: Path) -> Config:
    path = tmp_path / "secretwarden.toml"
    write_sandbox_config(sb.describe, path, listen_address="127.0.0.1:0", retry_total=0)
    return load_config(path)


@pytest.fixture
async def clients(sb: Any, tmp_path: Path) -> AsyncIterator[TargetClients]:
    config = sandbox_config(sb, tmp_path)
    async with (
        TenantSession(
            config.identity_value(), config.cloud_endpoints(), config.retry_policy()
        ) as s,
        s.target(config.target_ref(config.targets[0])) as c,
    ):
        yield c


@pytest.fixture
async def http(sb: Any, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with health_http_client(sandbox_config(sb, tmp_path)) as client:
        yield client


def now() -> datetime:
    return datetime.now(UTC)


async def test_expiry_healthy_finds_the_in_use_credential(sb: Any, clients: TargetClients) -> None:
    obs = await probe_expiry(clients, now())
    assert obs.ok, obs.error
    assert obs.keyvault_matches_credential
    assert obs.in_use is not None
    assert obs.in_use.key_id == sb.in_use_key_id()
    assert obs.keyvault_version == sb.state()["keyvault"]["current_version"]


async def test_expiry_tag_picks_between_same_hint(sb: Any, clients: TargetClients) -> None:
    # a second credential, its value written to Key Vault tagged with its keyId
    new = await clients.app.add_password("API Secret 2028", None)
    await clients.vault.set_value(new.value, {KEY_ID_TAG: new.credential.key_id})
    obs = await probe_expiry(clients, now())
    assert obs.ok, obs.error
    assert obs.in_use is not None
    assert obs.in_use.key_id == new.credential.key_id
    assert len(obs.credentials) == 2


async def test_expiry_expired_secret(sb: Any, clients: TargetClients) -> None:
    key_id = sb.in_use_key_id()
    sb.admin("POST", f"credentials/{key_id}/expire")
    obs = await probe_expiry(clients, now())
    assert obs.ok, obs.error
    assert not obs.keyvault_matches_credential
    assert obs.in_use is not None
    assert obs.in_use.key_id == key_id
    assert obs.in_use.end is not None
    assert obs.in_use.end <= now()


async def test_expiry_value_matching_no_credential(sb: Any, clients: TargetClients) -> None:
    await clients.vault.set_value(SecretValue("zzz-not-a-credential-value-0123456789"), {})
    obs = await probe_expiry(clients, now())
    assert obs.ok, obs.error
    assert not obs.keyvault_matches_credential
    assert obs.in_use is None
    assert len(obs.credentials) == 1


async def test_expiry_graph_429_storm_is_a_failed_probe_not_a_crash(
    sb: Any, clients: TargetClients
) -> None:
    sb.faults(inject=[{"service": "graph", "status": 429, "count": 50, "retry_after": 1}])
    obs = await probe_expiry(clients, now())
    assert not obs.ok
    assert obs.error is not None
    assert obs.error.startswith("read app registration: ")
    assert "429" in obs.error


async def test_health_ok_and_app_stopped(
    sb: Any, clients: TargetClients, http: httpx.AsyncClient
) -> None:
    url = sb.describe["health_url"]
    obs = await probe_health(http, url, 5)
    assert obs.ok
    assert obs.status_code == 200
    await clients.site.stop()
    obs = await probe_health(http, url, 5)
    assert not obs.ok
    assert obs.status_code is not None
    assert obs.status_code >= 400
    assert obs.error == f"GET {url}: HTTP {obs.status_code}"


async def test_health_timeout(sb: Any, http: httpx.AsyncClient) -> None:
    sb.faults(latency_seconds={"app": 0.5})
    obs = await probe_health(http, sb.describe["health_url"], 0.1)
    assert not obs.ok
    assert obs.status_code is None
    assert "no answer within 0.1s" in (obs.error or "")


async def test_graph_auth_ok(sb: Any, clients: TargetClients) -> None:
    obs = await probe_graph_auth(clients, sb.describe["graph_probe_url"])
    assert obs.ok, obs.error
    assert obs.token_ok
    assert obs.graph_status == 200


async def test_graph_auth_expired_secret(sb: Any, clients: TargetClients) -> None:
    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
    obs = await probe_graph_auth(clients, sb.describe["graph_probe_url"])
    assert not obs.ok
    assert obs.token_failure is TokenFailure.EXPIRED_SECRET
    assert obs.reason == "aadsts_7000222"
    assert obs.auth_failed


async def test_graph_auth_wrong_value(sb: Any, clients: TargetClients) -> None:
    await clients.vault.set_value(SecretValue("zzz-wrong-value-0123456789abcdef"), {})
    obs = await probe_graph_auth(clients, sb.describe["graph_probe_url"])
    assert not obs.ok
    assert obs.token_failure is TokenFailure.INVALID_SECRET
    assert obs.reason == "aadsts_7000215"


async def test_graph_auth_entra_429_is_not_an_auth_failure(sb: Any, clients: TargetClients) -> None:
    # warm the operator's cached token so the 429s hit the token request with the KV value
    assert (await probe_graph_auth(clients, sb.describe["graph_probe_url"])).ok
    sb.faults(inject=[{"service": "entra", "status": 429, "count": 20, "retry_after": 1}])
    obs = await probe_graph_auth(clients, sb.describe["graph_probe_url"])
    assert not obs.ok
    assert not obs.auth_failed
    assert obs.token_failure is TokenFailure.THROTTLED


async def test_reference_resolved_then_stale(sb: Any, clients: TargetClients) -> None:
    obs = await probe_reference(clients)
    assert obs.ok, obs.error
    assert obs.resolved
    assert not obs.stale
    assert obs.current_version == sb.state()["keyvault"]["current_version"]
    # a new Key Vault version the app has not loaded yet
    new = await clients.app.add_password("API Secret 2028", None)
    await clients.vault.set_value(new.value, {})
    obs = await probe_reference(clients)
    assert obs.ok, obs.error
    assert obs.stale
    assert obs.reference is not None
    assert obs.reference.active_version != obs.current_version


async def test_reference_arm_503(sb: Any, clients: TargetClients) -> None:
    sb.faults(inject=[{"service": "arm", "status": 503, "count": 20}])
    obs = await probe_reference(clients)
    assert not obs.ok
    assert (obs.error or "").startswith("read Key Vault references: ")
