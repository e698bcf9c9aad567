"""tenant/ Graph, Key Vault and ARM clients against the sandbox, through the real SDKs:
every operation, every error shape, paging, the Key Vault challenge and 429s."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.keyvault.secrets._shared import http_challenge_cache

from tenant import errors
from tenant.connect import TenantSession, open_target
from tenant.endpoints import Cloud, RetryPolicy
from tenant.keyvault import KeyVaultSecretStore
from tenant.models import KEY_ID_TAG, RemoveOutcome, SecretValue, SiteState
from tenant.ports import Identity, TargetClients, TargetRef


@pytest.fixture
async def session(
    sb: Any, operator: Identity, sandbox_cloud: Cloud
) -> AsyncIterator[TenantSession]:
    async with TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as s:
        yield s


@pytest.fixture
async def clients(session: TenantSession, target_ref: TargetRef) -> AsyncIterator[TargetClients]:
    async with session.target(target_ref) as c:
        yield c


def counter(sb: Any, service: str, status: int) -> int:
    return int(sb.state()["counters"].get(service, {}).get(str(status), 0))


def inject(sb: Any, service: str, status: int, **extra: Any) -> None:
    sb.admin("POST", "faults", {"inject": [{"service": service, "status": status, **extra}]})


# -- Graph ---------------------------------------------------------------------------


async def test_get_app_by_object_id_lists_its_credentials(sb: Any, clients: TargetClients) -> None:
    app = await clients.app.get_app()
    state = sb.state()["credentials"]
    assert app.object_id == sb.describe["app"]["object_id"]
    assert app.client_id == sb.describe["app"]["client_id"]
    assert {(c.key_id, c.hint) for c in app.credentials} == {(c["keyId"], c["hint"]) for c in state}
    assert all(c.end is not None and c.end.tzinfo is not None for c in app.credentials)


async def test_get_app_by_client_id_then_add_password_resolves_the_object_id(
    sb: Any, session: TenantSession, target_ref: TargetRef
) -> None:
    async with session.target(dataclasses.replace(target_ref, app_object_id=None)) as c:
        app = await c.app.get_app()
        assert app.object_id == sb.describe["app"]["object_id"]
        new = await c.app.add_password("by-client-id", None)
    assert new.credential.key_id in {x["keyId"] for x in sb.state()["credentials"]}


async def test_add_password_returns_a_working_value_once_and_remove_deletes_it(
    sb: Any, clients: TargetClients
) -> None:
    end = datetime.now(UTC) + timedelta(days=90)
    new = await clients.app.add_password("secretwarden test", end)
    assert new.credential.display_name == "secretwarden test"
    assert new.credential.hint == new.value.reveal()[:3]
    assert new.credential.end is not None
    assert abs(new.credential.end - end) < timedelta(seconds=2)
    assert new.value.reveal() not in repr(new)

    outcome = await clients.entra.try_secret(sb.describe["app"]["client_id"], new.value)
    assert outcome.ok

    assert await clients.app.remove_password(new.credential.key_id) is RemoveOutcome.REMOVED
    assert new.credential.key_id not in {c["keyId"] for c in sb.state()["credentials"]}
    assert not (await clients.entra.try_secret(sb.describe["app"]["client_id"], new.value)).ok


async def test_a_lifetime_beyond_the_app_policy_is_a_policy_violation(
    sb: Any, clients: TargetClients
) -> None:
    sb.admin("POST", "faults", {"max_password_lifetime_days": 30})
    with pytest.raises(errors.PolicyViolation) as caught:
        await clients.app.add_password("too long", datetime.now(UTC) + timedelta(days=365))
    assert caught.value.code == "CredentialInvalidLifetimeAsPerAppPolicy"
    assert caught.value.status == 400
    assert caught.value.permanent
    assert not isinstance(caught.value, errors.TooManySecrets)
    assert len(sb.state()["credentials"]) == 1


async def test_one_secret_too_many_is_too_many_secrets(sb: Any, clients: TargetClients) -> None:
    sb.admin("POST", "faults", {"max_password_credentials": 1})
    with pytest.raises(errors.TooManySecrets) as caught:
        await clients.app.add_password("one too many", None)
    assert caught.value.permanent
    assert caught.value.status == 400
    assert "addPassword" in str(caught.value)


async def test_an_unknown_app_is_not_found(session: TenantSession, target_ref: TargetRef) -> None:
    ghost = "00000000-0000-0000-0000-000000000001"
    async with session.target(dataclasses.replace(target_ref, app_object_id=ghost)) as c:
        with pytest.raises(errors.NotFound) as caught:
            await c.app.get_app()
    assert caught.value.status == 404
    assert ghost in str(caught.value)


async def test_graph_403_is_permission_denied(sb: Any, clients: TargetClients) -> None:
    inject(sb, "graph", 403)
    with pytest.raises(errors.PermissionDenied) as caught:
        await clients.app.get_app()
    assert caught.value.status == 403
    assert caught.value.code


async def test_graph_429_surfaces_retry_after_when_retries_are_off(
    sb: Any, clients: TargetClients
) -> None:
    inject(sb, "graph", 429, retry_after=7)
    with pytest.raises(errors.Throttled) as caught:
        await clients.app.get_app()
    assert caught.value.retry_after == 7.0
    assert counter(sb, "graph", 429) == 1


async def test_graph_429_is_retried_after_retry_after_when_retries_are_on(
    sb: Any, target_ref: TargetRef, operator: Identity, sandbox_cloud: Cloud
) -> None:
    inject(sb, "graph", 429, retry_after=1)
    retry = RetryPolicy(total=2, backoff_factor=0.0, backoff_max=1.0, timeout_seconds=10.0)
    started = time.monotonic()
    async with open_target(target_ref, operator, sandbox_cloud, retry) as c:
        app = await c.app.get_app()
    assert app.credentials
    assert time.monotonic() - started >= 1.0  # waited the server's Retry-After
    assert (counter(sb, "graph", 429), counter(sb, "graph", 200)) == (1, 1)


# -- Key Vault -----------------------------------------------------------------------


async def test_get_current_answers_the_challenge_and_returns_the_value(
    sb: Any, clients: TargetClients
) -> None:
    # The SDK remembers each vault's challenge process-wide; forget it so this client
    # has to meet the 401 whatever ran before in this process.
    http_challenge_cache.clear()
    current = await clients.vault.get_current()
    kv = sb.state()["keyvault"]
    assert current.version == kv["current_version"]
    stored = next(v for v in kv["versions"] if v["version"] == current.version)
    assert current.value == SecretValue(stored["value"])
    assert counter(sb, "keyvault", 401) == 1  # the unauthenticated first request


async def test_set_value_writes_a_tagged_version_and_old_versions_stay_readable(
    sb: Any, clients: TargetClients
) -> None:
    before = await clients.vault.get_current()
    new = await clients.vault.set_value(SecretValue("fresh-value-1"), {KEY_ID_TAG: "k-1"})
    assert new.version != before.version
    assert new.tags == {KEY_ID_TAG: "k-1"}
    assert new.content_type == "text/plain"
    assert new.value == SecretValue("fresh-value-1")

    kv = sb.state()["keyvault"]
    assert kv["current_version"] == new.version
    stored = kv["versions"][-1]
    assert (stored["value"], stored["tags"]) == ("fresh-value-1", {KEY_ID_TAG: "k-1"})

    assert (await clients.vault.get_current()).version == new.version
    old = await clients.vault.get_version(before.version)
    assert old.value == before.value


async def test_list_versions_follows_every_page(sb: Any, clients: TargetClients) -> None:
    for i in range(5):
        await clients.vault.set_value(SecretValue(f"value-{i}"), {KEY_ID_TAG: str(i)})
    assert isinstance(clients.vault, KeyVaultSecretStore)
    clients.vault._page_size = 2  # three pages for six versions
    gets_before = sb.state()["counters_by_method"]["keyvault"].get("GET", 0)

    versions = await clients.vault.list_versions()

    expected = [v["version"] for v in sb.state()["keyvault"]["versions"]]
    assert sorted(v.version for v in versions) == sorted(expected)
    assert all(v.value is None for v in versions)
    gets = sb.state()["counters_by_method"]["keyvault"].get("GET", 0) - gets_before
    assert gets >= 3


async def test_a_missing_version_is_not_found_with_secret_not_found(
    clients: TargetClients,
) -> None:
    with pytest.raises(errors.NotFound) as caught:
        await clients.vault.get_version("0" * 32)
    assert (caught.value.status, caught.value.code) == (404, "SecretNotFound")


@pytest.mark.parametrize(
    ("status", "kind"),
    [(403, errors.PermissionDenied), (429, errors.Throttled), (500, errors.Unavailable)],
)
async def test_key_vault_error_statuses_are_classified(
    sb: Any, clients: TargetClients, status: int, kind: type[errors.TenantError]
) -> None:
    await clients.vault.get_current()  # past the challenge
    inject(sb, "keyvault", status)
    with pytest.raises(kind) as caught:
        await clients.vault.set_value(SecretValue("never-stored"), {})
    assert caught.value.status == status
    assert "never-stored" not in str(caught.value)
    assert "never-stored" not in [v["value"] for v in sb.state()["keyvault"]["versions"]]


# -- ARM -----------------------------------------------------------------------------


async def test_site_stop_start_and_restart(sb: Any, clients: TargetClients) -> None:
    assert (await clients.site.get_site()).state is SiteState.RUNNING
    await clients.site.stop()
    assert (await clients.site.get_site()).state is SiteState.STOPPED
    await clients.site.start()
    site = await clients.site.get_site()
    assert site.state is SiteState.RUNNING
    assert site.name == sb.describe["site_name"]
    restarts = sb.state()["site"]["restarts"]
    await clients.site.restart()
    assert sb.state()["site"]["restarts"] == restarts + 1


async def test_the_reference_to_the_secret_is_resolved_to_the_current_version(
    sb: Any, clients: TargetClients
) -> None:
    refs = await clients.site.key_vault_references()
    assert len(refs) == 1
    ref = refs[0]
    assert ref.resolved
    assert ref.secret_name == sb.describe["secret_name"]
    assert ref.active_version == sb.state()["keyvault"]["current_version"]


async def test_references_are_collected_across_every_arm_page(
    sb: Any, clients: TargetClients
) -> None:
    # Ours is last, on the second page: found only by following nextLink.
    sb.faults(arm_page_size=2, extra_key_vault_references=3)
    refs = await clients.site.key_vault_references()
    assert [r.key for r in refs] == [sb.describe["app_setting"]]
    assert refs[0].active_version == sb.state()["keyvault"]["current_version"]
    assert sb.state()["counters_by_method"]["arm"]["GET"] == 2


async def test_refresh_makes_the_app_load_the_new_version(sb: Any, clients: TargetClients) -> None:
    # The optimistic model re-resolves before the refresh answers; the documented one
    # (5 s later) is covered by tests/integration/test_sandbox_reload_model.py.
    sb.faults(reload_model="optimistic")
    new = await clients.vault.set_value(SecretValue("refreshed-value"), {})
    await clients.site.refresh_key_vault_references()
    assert sb.state()["site"]["refreshes"] == 1
    refs = await clients.site.key_vault_references()
    assert refs[0].active_version == new.version


async def test_an_unknown_site_is_not_found(session: TenantSession, target_ref: TargetRef) -> None:
    async with session.target(dataclasses.replace(target_ref, site_name="no-such-site")) as c:
        with pytest.raises(errors.NotFound) as caught:
            await c.site.get_site()
    assert caught.value.status == 404
    assert "no-such-site" in str(caught.value)


async def test_arm_429_surfaces_retry_after_and_403_is_permission_denied(
    sb: Any, clients: TargetClients
) -> None:
    inject(sb, "arm", 429, retry_after=9)
    with pytest.raises(errors.Throttled) as throttled:
        await clients.site.restart()
    assert throttled.value.retry_after == 9.0

    inject(sb, "arm", 403)
    with pytest.raises(errors.PermissionDenied) as denied:
        await clients.site.refresh_key_vault_references()
    assert denied.value.status == 403
    assert "refresh" in str(denied.value)


async def test_arm_429_is_honoured_when_retries_are_on(
    sb: Any, target_ref: TargetRef, operator: Identity, sandbox_cloud: Cloud
) -> None:
    inject(sb, "arm", 429, retry_after=1)
    retry = RetryPolicy(total=2, backoff_factor=0.01, backoff_max=1.0, timeout_seconds=10.0)
    started = time.monotonic()
    async with open_target(target_ref, operator, sandbox_cloud, retry) as c:
        site = await c.site.get_site()
    assert site.state is SiteState.RUNNING
    assert time.monotonic() - started >= 1.0  # waited the server's Retry-After
    assert (counter(sb, "arm", 429), counter(sb, "arm", 200)) == (1, 1)


async def test_removing_an_unknown_credential_is_already_gone_by_a_fresh_read(
    sb: Any, clients: TargetClients
) -> None:
    gets = sb.state()["counters_by_method"].get("graph", {}).get("GET", 0)
    outcome = await clients.app.remove_password("00000000-0000-0000-0000-00000000beef")
    assert outcome is RemoveOutcome.ALREADY_GONE
    # decided by reading the app after Graph's refusal, not by the refusal's text
    assert sb.state()["counters_by_method"]["graph"].get("GET", 0) > gets


async def test_removing_a_key_id_that_is_no_guid_is_refused_before_any_request(
    sb: Any, clients: TargetClients
) -> None:
    await clients.app.get_app()
    posts = sb.state()["counters_by_method"].get("graph", {}).get("POST", 0)
    with pytest.raises(errors.NotFound) as caught:
        await clients.app.remove_password("not-a-guid")
    assert (caught.value.service, caught.value.detail) == ("graph", "the key id is not a GUID")
    assert "removePassword not-a-guid" in str(caught.value)
    assert sb.state()["counters_by_method"].get("graph", {}).get("POST", 0) == posts
