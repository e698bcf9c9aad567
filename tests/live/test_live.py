"""The opt-in live suite: tenant/ against a real Azure tenant.

Skipped unless every one of these is set (the operator identity must be an owner of
the app with Application.ReadWrite.OwnedBy, hold Key Vault Secrets Officer on the
secret, and a role that can restart the site and read its configuration)::

    SECRETWARDEN_LIVE_TENANT_ID        the directory (tenant) id
    SECRETWARDEN_LIVE_CLIENT_ID        the operator identity's client id
    SECRETWARDEN_LIVE_CLIENT_SECRET    the operator identity's client secret
    SECRETWARDEN_LIVE_APP_OBJECT_ID    the backend API app registration's object id
    SECRETWARDEN_LIVE_KEY_VAULT_URL    e.g. https://myvault.vault.azure.net/
    SECRETWARDEN_LIVE_SUBSCRIPTION_ID
    SECRETWARDEN_LIVE_RESOURCE_GROUP
    SECRETWARDEN_LIVE_SITE_NAME
    SECRETWARDEN_LIVE_SECRET_NAME      optional, default AzureAdClientSecret
    SECRETWARDEN_LIVE_CLOUD            optional: public (default), usgovernment, china

By default every check only reads. ``SECRETWARDEN_LIVE_WRITE=1`` also adds a short-lived
password to the app and removes it again (the app's Key Vault secret and the site are
never written or restarted by this suite). Run with ``pytest tests/live -m live``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tenant.connect import open_target
from tenant.endpoints import CLOUDS, RetryPolicy
from tenant.models import SecretValue, SiteState, TokenFailure
from tenant.ports import Identity, TargetClients, TargetRef

REQUIRED = (
    "TENANT_ID",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "APP_OBJECT_ID",
    "KEY_VAULT_URL",
    "SUBSCRIPTION_ID",
    "RESOURCE_GROUP",
    "SITE_NAME",
)
MISSING = [n for n in REQUIRED if not os.environ.get(f"SECRETWARDEN_LIVE_{n}")]
WRITE = os.environ.get("SECRETWARDEN_LIVE_WRITE") == "1"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        bool(MISSING),
        reason="live tenant not configured: set SECRETWARDEN_LIVE_"
        + ", SECRETWARDEN_LIVE_".join(MISSING),
    ),
]


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(f"SECRETWARDEN_LIVE_{name}", default)
    assert value is not None
    return value


@pytest.fixture
async def live() -> AsyncIterator[TargetClients]:
    ref = TargetRef(
        tenant_id=env("TENANT_ID"),
        app_object_id=env("APP_OBJECT_ID"),
        app_client_id=None,
        key_vault_url=env("KEY_VAULT_URL"),
        secret_name=env("SECRET_NAME", "AzureAdClientSecret"),
        subscription_id=env("SUBSCRIPTION_ID"),
        resource_group=env("RESOURCE_GROUP"),
        site_name=env("SITE_NAME"),
    )
    identity = Identity(
        kind="client_secret",
        tenant_id=env("TENANT_ID"),
        client_id=env("CLIENT_ID"),
        client_secret=SecretValue(env("CLIENT_SECRET")),
    )
    async with open_target(ref, identity, CLOUDS[env("CLOUD", "public")], RetryPolicy()) as c:
        yield c


async def test_reads_the_app_the_secret_and_the_site(live: TargetClients) -> None:
    app = await live.app.get_app()
    assert app.object_id == env("APP_OBJECT_ID")
    current = await live.vault.get_current()
    assert current.value is not None
    assert any(v.version == current.version for v in await live.vault.list_versions())
    site = await live.site.get_site()
    assert site.state in (SiteState.RUNNING, SiteState.STOPPED)
    refs = await live.site.key_vault_references()
    assert all(r.secret_name for r in refs)


async def test_the_key_vault_value_is_accepted_and_a_wrong_one_is_7000215(
    live: TargetClients,
) -> None:
    app = await live.app.get_app()
    current = await live.vault.get_current()
    assert current.value is not None
    outcome = await live.entra.try_secret(app.client_id, current.value)
    assert outcome.ok, f"the Key Vault value was refused: {outcome.failure} AADSTS{outcome.aadsts}"
    wrong = await live.entra.try_secret(app.client_id, SecretValue("secretwarden-live-wrong"))
    assert wrong.failure is TokenFailure.INVALID_SECRET
    assert wrong.aadsts == 7000215


@pytest.mark.skipif(not WRITE, reason="writes need SECRETWARDEN_LIVE_WRITE=1")
async def test_add_and_remove_a_short_lived_password(live: TargetClients) -> None:
    new = await live.app.add_password(
        "secretwarden live test (safe to delete)", datetime.now(UTC) + timedelta(days=1)
    )
    try:
        assert new.credential.hint == new.value.hint
        listed = await live.app.get_app()
        assert new.credential.key_id in {c.key_id for c in listed.credentials}
    finally:
        await live.app.remove_password(new.credential.key_id)
    after = await live.app.get_app()
    assert new.credential.key_id not in {c.key_id for c in after.credentials}
