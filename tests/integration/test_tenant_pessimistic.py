"""tenant/ against the sandbox's documented (pessimistic) defaults, through the real
SDKs: the refresh is asynchronous and activeVersion absent, transitions answer 409
busy, app settings are listed and written whole, references pinned and restored, Key
Vault refuses disabled versions, lost replies and Graph read lag, and the sign-in log."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tenant import errors
from tenant.appservice import RELOAD_MARKER_SETTING, ArmAppService
from tenant.connect import open_target
from tenant.endpoints import PUBLIC, RetryPolicy
from tenant.errors import ErrorKind
from tenant.keyvault import KeyVaultSecretStore, merge_tags
from tenant.models import (
    KEY_ID_TAG,
    RemoveOutcome,
    SecretValue,
    SignInLog,
    SignInsUnreadable,
    SiteState,
)
from tenant.ports import Identity, TargetClients, TargetRef
from tenant.references import parse_reference
from tenant.signins import GraphSignInReader


@pytest.fixture
async def clients(sbp: Any) -> AsyncIterator[TargetClients]:
    d = sbp.describe
    ref = TargetRef(
        tenant_id=d["tenant_id"],
        app_object_id=d["app"]["object_id"],
        app_client_id=d["app"]["client_id"],
        key_vault_url=d["key_vault_url"],
        secret_name=d["secret_name"],
        subscription_id=d["subscription_id"],
        resource_group=d["resource_group"],
        site_name=d["site_name"],
    )
    operator = Identity(
        kind="client_secret",
        tenant_id=d["tenant_id"],
        client_id=d["operator"]["client_id"],
        client_secret=SecretValue(d["operator"]["client_secret"]),
    )
    cloud = PUBLIC.with_custom(
        authority=d["authority"],
        graph_url=d["graph_url"],
        arm_url=d["arm_url"],
        ca_file=Path(d["ca_file"]),
    )
    async with open_target(ref, operator, cloud, RetryPolicy.none()) as c:
        yield c


def settings(sb: Any) -> dict[str, str]:
    return dict(sb.state()["site"]["settings"])


def by_method(sb: Any, service: str, method: str) -> int:
    return int(sb.state()["counters_by_method"].get(service, {}).get(method, 0))


# -- the refresh and activeVersion ---------------------------------------------------


async def test_the_refresh_is_asynchronous_and_polling_waits_for_the_version(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.faults(active_version="present", refresh_delay_seconds=0.5)
    new = await clients.vault.set_value(SecretValue("refreshed-later"), {})
    await clients.site.refresh_key_vault_references()
    at_once = await clients.site.wait_for_active_version(new.version, timeout=0, interval=0.1)
    assert not at_once.matched  # the refresh answered before the app re-fetched
    assert (at_once.wanted, at_once.polls, at_once.status) == (new.version, 1, "Resolved")
    later = await clients.site.wait_for_active_version(new.version, timeout=5, interval=0.1)
    assert later.matched
    assert (later.wanted, later.active_version, later.status) == (
        new.version,
        new.version,
        "Resolved",
    )
    assert later.polls >= 2
    assert sbp.state()["site"]["resolved_version"] == new.version


async def test_an_absent_active_version_is_unknown_even_after_the_app_loaded_it(
    sbp: Any, clients: TargetClients
) -> None:
    # the documented default: activeVersion absent
    new = await clients.vault.set_value(SecretValue("loaded-but-unreported"), {})
    await clients.site.configuration_change("marker-1")
    assert sbp.state()["site"]["resolved_version"] == new.version  # the app holds it
    poll = await clients.site.wait_for_active_version(new.version, timeout=0.3, interval=0.1)
    assert poll.active_version is None
    assert poll.matched is False
    assert poll.status == "Resolved"
    assert poll.polls >= 2


async def test_a_restart_keeps_the_cached_version_under_the_documented_model(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.faults(active_version="present")
    old = sbp.state()["site"]["resolved_version"]
    new = await clients.vault.set_value(SecretValue("not-loaded-by-restart"), {})
    await clients.site.restart()
    poll = await clients.site.wait_for_active_version(new.version, timeout=0.3, interval=0.1)
    assert not poll.matched
    assert poll.active_version == old


# -- transitions: busy -----------------------------------------------------------------


async def test_a_transition_during_another_is_busy_in_pascalcase(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.faults(site_busy_seconds=30)
    await clients.site.restart()
    with pytest.raises(errors.Busy) as caught:
        await clients.site.start()
    e = caught.value
    assert (e.status, e.code, e.kind) == (409, "Conflict", ErrorKind.BUSY)
    assert e.transient
    assert "another operation is in progress" in str(e)
    with pytest.raises(errors.Busy):
        await clients.site.configuration_change("while-busy")
    assert RELOAD_MARKER_SETTING not in settings(sbp)
    sbp.advance(31)
    await clients.site.stop()
    assert (await clients.site.get_site()).state is SiteState.STOPPED
    sbp.advance(31)
    await clients.site.start()
    assert (await clients.site.get_site()).state is SiteState.RUNNING


async def test_a_busy_site_answering_429_is_throttled(sbp: Any, clients: TargetClients) -> None:
    sbp.faults(site_busy_seconds=30, site_busy_status=429)
    await clients.site.stop()
    with pytest.raises(errors.Throttled) as caught:
        await clients.site.start()
    assert caught.value.transient
    sbp.advance(31)
    await clients.site.start()


# -- app settings, configuration change, pinned references -----------------------------


async def test_a_configuration_change_keeps_every_other_setting_and_reloads_at_once(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.faults(active_version="present")
    before = settings(sbp)
    listed = await clients.site.app_settings()
    assert dict(listed.values) == before
    assert "AzureAd__ClientSecret" not in repr(listed)  # values and names stay out of logs
    new = await clients.vault.set_value(SecretValue("loaded-by-config-change"), {})
    changes = sbp.state()["site"]["config_changes"]

    await clients.site.configuration_change("run-42")

    after = settings(sbp)
    assert after == {**before, RELOAD_MARKER_SETTING: "run-42"}
    assert sbp.state()["site"]["config_changes"] == changes + 1
    poll = await clients.site.wait_for_active_version(new.version, timeout=0, interval=0.1)
    assert poll.matched  # the documented immediate re-fetch


async def test_pin_the_reference_to_a_version_and_restore_it_exactly(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.faults(active_version="present")
    before = await clients.site.reference_setting()
    assert before.name == sbp.describe["app_setting"]
    assert not before.reference.pinned
    others = {k: v for k, v in settings(sbp).items() if k != before.name}
    old = sbp.state()["site"]["resolved_version"]
    new = await clients.vault.set_value(SecretValue("pinned-value"), {})
    # a newer version the pinned reference must NOT follow
    await clients.vault.set_value(SecretValue("even-newer"), {})

    change = await clients.site.write_reference(new.version)

    assert change.before == before.raw
    pinned = parse_reference(settings(sbp)[before.name])
    assert pinned is not None
    assert pinned.version == new.version
    assert sbp.state()["site"]["reference"]["pinned"] is True
    assert sbp.state()["site"]["resolved_version"] == new.version
    assert {k: v for k, v in settings(sbp).items() if k != before.name} == others
    assert (await clients.site.reference_setting()).reference.version == new.version
    [status] = await clients.site.key_vault_references()
    assert (status.key, status.secret_name, status.secret_version) == (
        before.name,
        sbp.describe["secret_name"],
        new.version,
    )
    assert status.vault_name
    assert status.details
    assert status.resolved

    # the write was a configuration change: the site is busy for a while
    with pytest.raises(errors.Busy):
        await clients.site.restore_reference(change)
    sbp.advance(sbp.state()["faults"]["site_busy_seconds"] + 1)
    await clients.site.restore_reference(change)

    assert settings(sbp)[before.name] == before.raw
    assert sbp.state()["site"]["reference"]["pinned"] is False
    assert sbp.state()["site"]["resolved_version"] not in (old, new.version)  # the newest


async def test_the_reference_setting_is_the_named_one_or_the_only_one_naming_the_secret(
    sbp: Any, clients: TargetClients
) -> None:
    name = sbp.describe["app_setting"]
    raw = settings(sbp)[name]
    other_vault = raw.replace("://", "://other-").replace("/secrets/", "/secrets/")
    await clients.site.update_app_settings(
        {
            # the same secret name in another vault, and another secret in ours: not ours
            "Other__Vault": other_vault,
            "Other__Secret": raw.replace(sbp.describe["secret_name"], "SomethingElse"),
        }
    )
    assert (await clients.site.reference_setting()).name == name
    sbp.advance(sbp.state()["faults"]["site_busy_seconds"] + 1)
    await clients.site.update_app_settings({"Second__Copy": raw})
    with pytest.raises(errors.TenantError) as caught:
        await clients.site.reference_setting()
    assert "several app settings reference it (AzureAd__ClientSecret, Second__Copy)" in str(
        caught.value
    )
    assert caught.value.kind is ErrorKind.INVALID
    assert isinstance(clients.site, ArmAppService)
    named = ArmAppService(
        clients.site._client, dataclasses.replace(clients.site._ref, app_setting="Second__Copy")
    )
    assert (await named.reference_setting()).name == "Second__Copy"
    # a named setting that holds no reference is not found, whatever else does
    plain = ArmAppService(
        clients.site._client, dataclasses.replace(clients.site._ref, app_setting="Other__Plain")
    )
    with pytest.raises(errors.NotFound) as missing:
        await plain.reference_setting()
    assert "Other__Plain holds a Key Vault reference" in str(missing.value)


async def test_no_setting_referencing_the_secret_is_not_found(
    sbp: Any, clients: TargetClients
) -> None:
    name = sbp.describe["app_setting"]
    await clients.site.update_app_settings({name: "plain-value"})
    with pytest.raises(errors.NotFound) as caught:
        await clients.site.reference_setting()
    assert sbp.describe["secret_name"] in str(caught.value)
    assert "no app setting holds a Key Vault reference" in str(caught.value)


# -- Key Vault ---------------------------------------------------------------------------


async def test_a_disabled_version_is_secret_disabled_not_permission_denied(
    sbp: Any, clients: TargetClients
) -> None:
    old = await clients.vault.get_current()
    await clients.vault.set_value(SecretValue("newer"), {})
    assert isinstance(clients.vault, KeyVaultSecretStore)
    await clients.vault._client.update_secret_properties(
        sbp.describe["secret_name"], old.version, enabled=False
    )
    with pytest.raises(errors.SecretDisabled) as caught:
        await clients.vault.get_version(old.version)
    assert not isinstance(caught.value, errors.PermissionDenied)
    assert (caught.value.status, caught.value.kind) == (403, ErrorKind.SECRET_DISABLED)
    assert caught.value.permanent


async def test_tags_stay_within_fifteen(sbp: Any, clients: TargetClients) -> None:
    current = await clients.vault.get_current()
    users = {f"owner{i}": "x" for i in range(14)}
    tagged = await clients.vault.set_tags(current.version, users)
    assert tagged.tags == users
    merged = merge_tags(tagged.tags, {KEY_ID_TAG: "k1"})
    assert (await clients.vault.set_tags(current.version, merged)).tags == merged
    patches = by_method(sbp, "keyvault", "PATCH")
    puts = by_method(sbp, "keyvault", "PUT")
    with pytest.raises(errors.TenantError) as caught:
        await clients.vault.set_tags(current.version, {**merged, "one-more": "y"})
    assert caught.value.code == "TooManyTags"
    with pytest.raises(errors.TenantError):
        await clients.vault.set_value(SecretValue("sixteen-tags"), {**merged, "one-more": "y"})
    # refused before anything was sent
    assert (by_method(sbp, "keyvault", "PATCH"), by_method(sbp, "keyvault", "PUT")) == (
        patches,
        puts,
    )


async def test_a_lost_key_vault_reply_may_have_applied_and_a_read_shows_it(
    sbp: Any, clients: TargetClients
) -> None:
    await clients.vault.get_current()  # past the challenge
    sbp.faults(apply_then_fail=[{"service": "keyvault", "status": 500, "method": "PUT"}])
    with pytest.raises(errors.Unavailable) as caught:
        await clients.vault.set_value(SecretValue("written-reply-lost"), {KEY_ID_TAG: "k9"})
    assert caught.value.maybe_applied
    current = await clients.vault.get_current()
    assert current.value == SecretValue("written-reply-lost")
    assert current.tags[KEY_ID_TAG] == "k9"


# -- Graph: lost replies, read lag, already gone ------------------------------------------


async def test_an_ambiguous_add_password_is_found_by_its_display_name(
    sbp: Any, clients: TargetClients
) -> None:
    await clients.app.get_app()
    sbp.faults(
        graph_read_lag_seconds=10,
        apply_then_fail=[
            {"service": "graph", "status": 504, "method": "POST", "path_contains": "addPassword"}
        ],
    )
    name = "secretwarden run 7"
    with pytest.raises(errors.Unavailable) as caught:
        await clients.app.add_password(name, None)
    assert caught.value.maybe_applied
    assert len(sbp.state()["credentials"]) == 2  # created once: no SDK retry added another
    assert await clients.app.find_credentials(name) == ()  # Graph's read lag
    sbp.advance(11)
    found = await clients.app.find_credentials(name)
    assert [c.display_name for c in found] == [name]
    assert await clients.app.remove_password(found[0].key_id) is RemoveOutcome.REMOVED


async def test_already_gone_is_decided_by_a_fresh_read_that_waits_out_the_lag(
    sbp: Any, clients: TargetClients
) -> None:
    new = await clients.app.add_password("to be removed", None)
    sbp.advance(20)  # long enough ago that every read shows it
    sbp.faults(
        graph_read_lag_seconds=10,
        apply_then_fail=[
            {"service": "graph", "status": 503, "method": "POST", "path_contains": "removePassword"}
        ],
    )
    with pytest.raises(errors.Unavailable) as lost:
        await clients.app.remove_password(new.credential.key_id)
    assert lost.value.maybe_applied
    assert new.credential.key_id not in {c["keyId"] for c in sbp.state()["credentials"]}
    # Graph refuses the second removal, and a read still shows the credential (lag):
    # not "gone" yet, whatever the refusal says, and not a permanent failure either.
    with pytest.raises(errors.Unsettled) as refused:
        await clients.app.remove_password(new.credential.key_id)
    assert (refused.value.status, refused.value.code) == (400, "Request_BadRequest")
    assert refused.value.transient
    assert "still lists the credential" in str(refused.value)
    assert f"removePassword {new.credential.key_id}" in str(refused.value)
    sbp.advance(11)
    assert await clients.app.remove_password(new.credential.key_id) is RemoveOutcome.ALREADY_GONE


# -- sign-in evidence ------------------------------------------------------------------------


async def test_sign_ins_name_the_credential_after_the_log_delay(
    sbp: Any, clients: TargetClients
) -> None:
    app_id = sbp.describe["app"]["client_id"]
    # the sandbox's clock (tests move it forward), not this machine's
    since = datetime.fromisoformat(sbp.state()["now"]) - timedelta(minutes=1)
    in_use = sbp.in_use_key_id()
    value = SecretValue(sbp.state()["keyvault"]["versions"][-1]["value"])
    assert (await clients.entra.try_secret(app_id, value)).ok
    assert not (await clients.entra.try_secret(app_id, SecretValue("wrong-secret"))).ok

    early = await clients.signins.service_principal_sign_ins(app_id, since)
    assert isinstance(early, SignInLog)
    assert early.last_success(in_use) is None  # not in the log yet
    sbp.advance(121)
    log = await clients.signins.service_principal_sign_ins(app_id, since)
    assert isinstance(log, SignInLog)
    assert log.last_success(in_use) is not None
    assert (log.app_id, log.since) == (app_id, since)
    assert any(not s.succeeded and s.error_code == 7000215 for s in log.sign_ins)
    assert all(s.created >= since for s in log.sign_ins)
    assert [s.created for s in log.sign_ins] == sorted(
        (s.created for s in log.sign_ins), reverse=True
    )
    later = await clients.signins.service_principal_sign_ins(
        app_id, datetime.fromisoformat(sbp.state()["now"]) + timedelta(hours=1)
    )
    assert isinstance(later, SignInLog)
    assert later.sign_ins == ()


async def test_the_sign_in_log_is_read_across_every_page_and_stops_at_the_cap(
    sbp: Any, clients: TargetClients
) -> None:
    app_id = sbp.describe["app"]["client_id"]
    since = datetime.fromisoformat(sbp.state()["now"]) - timedelta(minutes=1)
    value = SecretValue(sbp.state()["keyvault"]["versions"][-1]["value"])
    for _ in range(5):
        assert (await clients.entra.try_secret(app_id, value)).ok
    sbp.advance(121)
    assert isinstance(clients.signins, GraphSignInReader)
    gets = by_method(sbp, "graph", "GET")
    paged = GraphSignInReader(
        clients.signins._http, clients.signins._credential, clients.signins._cloud, page_size=2
    )
    log = await paged.service_principal_sign_ins(app_id, since)
    assert isinstance(log, SignInLog)
    assert len(log.successful(sbp.in_use_key_id())) == 5
    assert by_method(sbp, "graph", "GET") - gets == 3  # pages of 2, 2 and 1
    capped = GraphSignInReader(
        clients.signins._http,
        clients.signins._credential,
        clients.signins._cloud,
        page_size=2,
        max_pages=2,
    )
    with pytest.raises(errors.TenantError) as caught:
        await capped.service_principal_sign_ins(app_id, since)
    assert "more than 2 pages" in str(caught.value)
    assert "sign-in log" in str(caught.value)


async def test_a_refused_sign_in_query_is_a_classified_error(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.admin(
        "POST",
        "faults",
        {"inject": [{"service": "graph", "status": 400, "path_contains": "signIns"}]},
    )
    with pytest.raises(errors.TenantError) as caught:
        await clients.signins.service_principal_sign_ins(
            sbp.describe["app"]["client_id"], datetime.now(UTC)
        )
    assert (caught.value.status, caught.value.kind) == (400, ErrorKind.INVALID)
    assert caught.value.code == "Request_BadRequest"


async def test_no_audit_log_permission_is_an_answer_not_an_error(
    sbp: Any, clients: TargetClients
) -> None:
    sbp.faults(operator_can_read_signins=False)
    result = await clients.signins.service_principal_sign_ins(
        sbp.describe["app"]["client_id"], datetime.now(UTC) - timedelta(hours=1)
    )
    assert isinstance(result, SignInsUnreadable)
    assert result.app_id == sbp.describe["app"]["client_id"]
    assert (result.status, result.code) == (403, "Authorization_RequestDenied")
    assert "AuditLog.Read.All" in result.reason


async def test_a_throttled_sign_in_read_raises_throttled(sbp: Any, clients: TargetClients) -> None:
    sbp.admin(
        "POST",
        "faults",
        {
            "inject": [
                {"service": "graph", "status": 429, "path_contains": "signIns", "retry_after": 3}
            ]
        },
    )
    with pytest.raises(errors.Throttled) as caught:
        await clients.signins.service_principal_sign_ins(
            sbp.describe["app"]["client_id"], datetime.now(UTC)
        )
    assert caught.value.retry_after == 3.0


async def test_the_operations_run_concurrently_on_one_target(clients: TargetClients) -> None:
    site, settings_, refs = await asyncio.gather(
        clients.site.get_site(), clients.site.app_settings(), clients.site.key_vault_references()
    )
    assert site.state is SiteState.RUNNING
    assert settings_.names
    assert refs
