"""The opt-in live suite: tenant/ against a real Azure tenant, so anyone with one can
check the sandbox's pessimistic defaults (docs/azure-behaviour.md) against Azure.

Skipped unless every one of these is set (the operator identity must be an owner of
the app with Application.ReadWrite.OwnedBy, hold Key Vault Secrets Officer on the
secret, and a role that can restart the site and read and write its configuration;
see docs/permissions.md)::

    SECRETWARDEN_LIVE_TENANT_ID        the directory (tenant) id
    SECRETWARDEN_LIVE_CLIENT_ID        the operator identity's client id
    SECRETWARDEN_LIVE_CLIENT_SECRET    the operator identity's client secret
    SECRETWARDEN_LIVE_APP_OBJECT_ID    the backend API app registration's object id
    SECRETWARDEN_LIVE_KEY_VAULT_URL    e.g. https://myvault.vault.azure.net/
    SECRETWARDEN_LIVE_SUBSCRIPTION_ID
    SECRETWARDEN_LIVE_RESOURCE_GROUP
    SECRETWARDEN_LIVE_SITE_NAME        the App Service whose reload behaviour is measured
    SECRETWARDEN_LIVE_SECRET_NAME      optional, default AzureAdClientSecret
    SECRETWARDEN_LIVE_APP_SETTING      optional: the app setting holding the reference
    SECRETWARDEN_LIVE_CLOUD            optional: public (default), usgovernment, china
    SECRETWARDEN_LIVE_RELOAD_WAIT      optional: seconds to wait for a reload (default 180)
    SECRETWARDEN_LIVE_POLL             optional: seconds between activeVersion polls (10)
    SECRETWARDEN_LIVE_STOPPED_SECONDS  optional: how long Stop+Start keeps it stopped (10)
    SECRETWARDEN_LIVE_BUSY_WAIT        optional: wait after a 409 without Retry-After (10)
    SECRETWARDEN_LIVE_AUTHORITY, _GRAPH_URL, _ARM_URL, _CA_FILE
                                       optional custom endpoints (an Azure Stack, a
                                       proxy, or the sandbox: the suite is run against
                                       it by tests/integration/test_tenant_live_suite.py)

By default every check only reads (the site, the reference and its ``activeVersion``,
the app settings, the sign-in log). ``SECRETWARDEN_LIVE_WRITE=1`` also:

- adds a short-lived password to the app and removes it again;
- measures the reload model of the named site: for each lever (Restart, Stop+Start, the
  reference refresh, a configuration change) it writes the secret's *current value* again
  as a new Key Vault version (the app's secret never changes), pulls the lever, and
  polls ``activeVersion`` for the new version. It restarts and stops the site: run it
  on a site where a few minutes of restarts are acceptable. The site is started again
  whatever happens, and the configuration change leaves the app setting
  ``SECRETWARDEN_RELOAD_MARKER`` behind (as the daemon's own reloads do).

Run with ``pytest tests/live -m live -s`` (``-s`` shows the printed report).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tenant import errors
from tenant.connect import open_target
from tenant.endpoints import CLOUDS, RetryPolicy
from tenant.models import (
    KEY_ID_TAG,
    RemoveOutcome,
    SecretValue,
    SignInLog,
    SignInsUnreadable,
    SiteState,
    TokenFailure,
)
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
CUSTOM = ("AUTHORITY", "GRAPH_URL", "ARM_URL", "CA_FILE")
WRITE = os.environ.get("SECRETWARDEN_LIVE_WRITE") == "1"
LIVE_TAG = "secretwarden-live-test"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        bool(MISSING),
        reason="live tenant not configured: set SECRETWARDEN_LIVE_"
        + ", SECRETWARDEN_LIVE_".join(MISSING),
    ),
]
writes = pytest.mark.skipif(not WRITE, reason="writes need SECRETWARDEN_LIVE_WRITE=1")


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
        app_setting=os.environ.get("SECRETWARDEN_LIVE_APP_SETTING") or None,
    )
    identity = Identity(
        kind="client_secret",
        tenant_id=env("TENANT_ID"),
        client_id=env("CLIENT_ID"),
        client_secret=SecretValue(env("CLIENT_SECRET")),
    )
    cloud = CLOUDS[env("CLOUD", "public")]
    custom = {k: os.environ.get(f"SECRETWARDEN_LIVE_{k}") for k in CUSTOM}
    if any(custom.values()):
        ca = custom["CA_FILE"]
        cloud = cloud.with_custom(
            authority=custom["AUTHORITY"],
            graph_url=custom["GRAPH_URL"],
            arm_url=custom["ARM_URL"],
            ca_file=Path(ca) if ca else None,
        )
    async with open_target(ref, identity, cloud, RetryPolicy()) as c:
        yield c


async def until_not_busy(call: Callable[[], Awaitable[None]], attempts: int = 12) -> None:
    """The caller's retry layer for transitions (tenant/ sends them once): wait out
    Microsoft.Web's 409 "another operation is in progress" and 429."""
    for attempt in range(1, attempts + 1):
        try:
            await call()
            return
        except (errors.Busy, errors.Throttled) as e:
            if attempt == attempts:
                raise
            wait = e.retry_after if e.retry_after is not None else float(env("BUSY_WAIT", "10"))
            print(f"  {e.kind.value} ({e.status}); retry in {wait:.1f}s")
            await asyncio.sleep(wait)


# -- reads -----------------------------------------------------------------------------


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


async def test_reports_the_reference_and_its_active_version(live: TargetClients) -> None:
    refs = await live.site.key_vault_references()
    assert refs, "no app setting references the secret (set SECRETWARDEN_LIVE_APP_SETTING?)"
    current = await live.vault.get_current()
    for r in refs:
        print(
            f"\nreference {r.key}: status={r.status} secretVersion={r.secret_version} "
            f"activeVersion={r.active_version or 'ABSENT'} (Key Vault current: "
            f"{current.version})"
        )
    setting = await live.site.reference_setting()
    kind = f"pinned to {setting.reference.version}" if setting.reference.pinned else "versionless"
    print(f"app setting {setting.name} holds a {kind} reference")
    assert (
        setting.reference.secret_name.lower() == env("SECRET_NAME", "AzureAdClientSecret").lower()
    )


async def test_reads_the_sign_in_log(live: TargetClients) -> None:
    app = await live.app.get_app()
    since = datetime.now(UTC) - timedelta(days=1)
    result = await live.signins.service_principal_sign_ins(app.client_id, since)
    if isinstance(result, SignInsUnreadable):
        print(f"\nsign-in log unreadable: HTTP {result.status} {result.code}: {result.reason}")
        assert result.status == 403
        return
    assert isinstance(result, SignInLog)
    print(f"\n{len(result.sign_ins)} service-principal sign-ins in the last 24 h")
    known = {c.key_id.lower() for c in app.credentials}
    by_key: dict[str, int] = {}
    for s in result.sign_ins:
        by_key[(s.key_id or "none").lower()] = by_key.get((s.key_id or "none").lower(), 0) + 1
        assert s.created >= since
    for key, count in sorted(by_key.items()):
        mark = "" if key in known else " (not a current credential)"
        print(f"  keyId {key}: {count}{mark}")


# -- writes ----------------------------------------------------------------------------


@writes
async def test_add_and_remove_a_short_lived_password(live: TargetClients) -> None:
    name = f"secretwarden live test {datetime.now(UTC):%Y%m%dT%H%M%S} (safe to delete)"
    new = await live.app.add_password(name, datetime.now(UTC) + timedelta(days=1))
    try:
        assert new.credential.hint == new.value.hint
        # Graph reads lag writes: find it by name, as after an ambiguous addPassword.
        for _ in range(30):
            if await live.app.find_credentials(name):
                break
            await asyncio.sleep(2)
        assert [c.key_id for c in await live.app.find_credentials(name)] == [new.credential.key_id]
    finally:
        assert await live.app.remove_password(new.credential.key_id) is RemoveOutcome.REMOVED
    # A second removal is decided by a fresh read (the reply's wording is undocumented).
    for _ in range(30):
        if new.credential.key_id not in {c.key_id for c in await live.app.list_credentials()}:
            break
        await asyncio.sleep(2)
    again = await live.app.remove_password(new.credential.key_id)
    print(f"\nremovePassword of a removed keyId: {again.value}")
    assert again is RemoveOutcome.ALREADY_GONE


async def _worker_starts(live: TargetClients) -> dict[str, tuple[str, ...]] | None:
    """Every instance's worker start times (ISO), or None when ARM's per-instance view
    cannot be read (e.g. a plan or OS that does not serve it)."""
    try:
        instances = await live.site.instances()
    except errors.TenantError as e:
        print(f"  per-instance view not readable: {e}")
        return None
    return {
        i.id: tuple(sorted(p.started.isoformat() if p.started else "?" for p in i.workers))
        for i in instances
    }


async def test_reports_the_instances_and_the_outbound_addresses(live: TargetClients) -> None:
    """How many instances the site runs, their worker processes' start times, and the
    addresses the app's sign-ins come from (the removal proof attributes by them)."""
    site = await live.site.get_site()
    print(f"\n{site.name}: {len(site.outbound_addresses)} outbound address(es)")
    starts = await _worker_starts(live)
    if starts is None:
        return
    print(f"{site.name} runs {len(starts)} instance(s)")
    for instance, times in starts.items():
        print(f"  instance {instance[:12]}: worker(s) started {', '.join(times) or 'none'}")


async def _reloads(live: TargetClients, lever: str, wait: float) -> str:
    """Write the current value again as a new version, pull ``lever``, and say whether
    ARM then reports the new version active: "reloaded", "kept" or "unknown"."""
    current = await live.vault.get_current()
    assert current.value is not None
    tags = {k: v for k, v in current.tags.items() if k != LIVE_TAG}
    tags[LIVE_TAG] = lever
    before = await _worker_starts(live)
    new = await live.vault.set_value(current.value, tags)  # the same value: the app is safe
    print(f"\n{lever}: wrote version {new.version} (same value)")
    if lever == "restart":
        await until_not_busy(live.site.restart)
    elif lever == "stop_start":
        await until_not_busy(live.site.stop)
        try:
            await asyncio.sleep(float(env("STOPPED_SECONDS", "10")))
        finally:
            await until_not_busy(live.site.start)
    elif lever == "refresh":
        await until_not_busy(live.site.refresh_key_vault_references)
    elif lever == "configuration_change":
        await until_not_busy(
            lambda: live.site.configuration_change(f"live-test {datetime.now(UTC).isoformat()}")
        )
    interval = float(env("POLL", "10"))
    poll = await live.site.wait_for_active_version(new.version, timeout=wait, interval=interval)
    verdict = "reloaded" if poll.matched else ("unknown" if poll.active_version is None else "kept")
    print(
        f"{lever}: {verdict} after {poll.polls} polls "
        f"(activeVersion={poll.active_version or 'ABSENT'}, status={poll.status})"
    )
    # A worker reads the reference when its process starts and keeps that value: the
    # lever reaches a running process only if it started the processes anew.
    after = await _worker_starts(live)
    if before is None or after is None:
        print(f"{lever}: whether it restarted the worker processes: unknown")
    else:
        same = [i for i in after if before.get(i) == after[i]]
        print(
            f"{lever}: {len(after)} instance(s); worker processes restarted on "
            f"{len(after) - len(same)}, kept on {len(same)}"
            + (
                " -> the cache moved but these running processes still hold the value "
                "they started with (a restart is needed)"
                if same and verdict == "reloaded"
                else ""
            )
        )
    return verdict


@writes
async def test_measures_the_reload_model_of_the_site(live: TargetClients) -> None:
    wait = float(env("RELOAD_WAIT", "180"))
    original = await live.vault.get_current()
    before = await live.site.reference_setting()
    if before.reference.pinned:
        pytest.skip("the reference is pinned to a version: new versions never load")
    results: dict[str, str] = {}
    try:
        for lever in ("restart", "stop_start", "refresh", "configuration_change"):
            results[lever] = await _reloads(live, lever, wait)
    finally:
        site = await live.site.get_site()
        if site.state is not SiteState.RUNNING:
            await until_not_busy(live.site.start)
        assert (await live.site.get_site()).state is SiteState.RUNNING
    if results["restart"] == "reloaded":
        model = "optimistic (Restart re-fetches references)"
    elif results["stop_start"] == "reloaded":
        model = "runbook (Stop+Start re-fetches, Restart does not)"
    elif results["configuration_change"] == "reloaded":
        model = "documented (only a configuration change and the refresh re-fetch)"
    else:
        model = "unknown (activeVersion absent or nothing reloaded within the wait)"
    print("\nlever                 result")
    for lever, verdict in results.items():
        print(f"{lever:<21} {verdict}")
    print(f"reload model of {env('SITE_NAME')}: {model}")
    # the app's secret never changed: only new versions of the same value were written
    current = await live.vault.get_current()
    assert current.value == original.value
    assert current.tags.get(KEY_ID_TAG) == original.tags.get(KEY_ID_TAG)
