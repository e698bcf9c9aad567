"""Issue 9, memory: every azure-core client of a session sends on one pool with one TLS
context. azure-core builds a new ``SSLContext`` per request when given a CA path, and
aiohttp never reuses a connection across contexts: the daemon grew ~0.3 MB per Key
Vault call (bench/soak.py shows the RSS)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from tenant.connect import TenantSession
from tenant.endpoints import Cloud, RetryPolicy
from tenant.ports import Identity, TargetRef


async def test_repeated_azure_calls_make_no_new_tls_context(
    sb: Any,
    operator: Identity,
    sandbox_cloud: Cloud,
    target_ref: TargetRef,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sandbox_cloud.ca_file is not None  # the case that built a context per request
    async with (
        TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as session,
        session.target(target_ref) as clients,
    ):
        current = await clients.vault.get_current()
        app = await clients.app.get_app()
        await clients.site.get_site()
        assert (await clients.entra.try_secret(app.client_id, current.value)).ok

        made: list[object] = []
        real = ssl.create_default_context

        def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
            made.append(kwargs.get("cafile"))
            return real(*args, **kwargs)

        monkeypatch.setattr(ssl, "create_default_context", counting)
        for _ in range(10):
            await clients.vault.get_current()  # Key Vault
            await clients.site.get_site()  # ARM
            # a token test: a fresh credential each time, on the session's pool
            assert (await clients.entra.try_secret(app.client_id, current.value)).ok
        assert made == [], f"{len(made)} TLS contexts built for 30 Azure calls"


async def test_closing_the_session_closes_its_pool(
    sb: Any, operator: Identity, sandbox_cloud: Cloud, target_ref: TargetRef
) -> None:
    session = TenantSession(operator, sandbox_cloud, RetryPolicy.none())
    async with session, session.target(target_ref) as clients:
        await clients.vault.get_current()
        pool = session._azure
        assert pool is not None
        assert not pool.closed
    assert pool.closed
