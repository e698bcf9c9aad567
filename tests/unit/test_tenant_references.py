"""Pure parts of tenant/: Key Vault reference parsing and writing, the tag limit, and
reading sign-in log records."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest

from tenant._azure import parse_graph_time
from tenant.appservice import ArmAppService
from tenant.endpoints import PUBLIC
from tenant.keyvault import MAX_TAGS, merge_tags
from tenant.models import SecretReference, SignIn, SignInLog
from tenant.ports import TargetRef
from tenant.references import parse_reference
from tenant.signins import beta_url, parse_sign_in, sign_in_filter

V = "ec96f02080254f109c51a1f14cdb1931"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/AzureAdClientSecret/)",
            SecretReference("https://kv1.vault.azure.net/", None, "AzureAdClientSecret", None),
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/AzureAdClientSecret)",
            SecretReference("https://kv1.vault.azure.net/", None, "AzureAdClientSecret", None),
        ),
        (
            f"@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/S/{V})",
            SecretReference("https://kv1.vault.azure.net/", None, "S", V),
        ),
        (
            f"@Microsoft.KeyVault(SecretUri=https://127.0.0.1:8443/secrets/S/{V}/)",
            SecretReference("https://127.0.0.1:8443/", None, "S", V),
        ),
        (
            "@Microsoft.KeyVault(VaultName=kv1;SecretName=S)",
            SecretReference(None, "kv1", "S", None),
        ),
        (
            f" @microsoft.keyvault( VaultName = kv1 ; SecretName = S ; SecretVersion = {V} ) ",
            SecretReference(None, "kv1", "S", V),
        ),
        ("plain-value", None),
        ("@Microsoft.KeyVault(SecretUri=http://kv1.vault.azure.net/secrets/S/)", None),
        ("@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/keys/S/)", None),
        ("@Microsoft.KeyVault(VaultName=kv1)", None),
    ],
)
def test_parse_reference(value: str, expected: SecretReference | None) -> None:
    assert parse_reference(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/S/)",
        f"@Microsoft.KeyVault(SecretUri=https://kv1.vault.azure.net/secrets/S/{V})",
        "@Microsoft.KeyVault(VaultName=kv1;SecretName=S)",
        f"@Microsoft.KeyVault(VaultName=kv1;SecretName=S;SecretVersion={V})",
    ],
)
def test_pinning_and_unpinning_round_trips_in_the_form_it_was_read(value: str) -> None:
    ref = parse_reference(value)
    assert ref is not None
    pinned = ref.with_version("abc123")
    assert pinned.pinned
    assert pinned.version == "abc123"
    assert parse_reference(pinned.setting_value()) == pinned
    versionless = ref.with_version(None)
    assert not versionless.pinned
    assert parse_reference(versionless.setting_value()) == versionless
    # the same form (SecretUri or VaultName) is written back
    assert ("SecretUri=" in pinned.setting_value()) == ("SecretUri=" in value)


def test_merge_tags_keeps_every_user_tag_and_refuses_past_the_limit() -> None:
    users = {f"user{i}": str(i) for i in range(MAX_TAGS - 1)}
    merged = merge_tags(users, {"secretwarden-key-id": "k"})
    assert len(merged) == MAX_TAGS
    assert merged["user0"] == "0"
    # ours replaces ours: no extra tag
    assert merge_tags(merged, {"secretwarden-key-id": "k2"})["secretwarden-key-id"] == "k2"
    with pytest.raises(ValueError, match="limit of 15"):
        merge_tags(merged, {"one-more": "x"})


def test_sign_in_filter_and_beta_root() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert sign_in_filter("app-1", since) == (
        "appId eq 'app-1' and createdDateTime ge 2026-01-02T03:04:05Z"
        " and signInEventTypes/any(t: t eq 'servicePrincipal')"
    )
    assert beta_url(PUBLIC) == "https://graph.microsoft.com/beta"
    assert beta_url(PUBLIC.with_custom(graph_url="https://127.0.0.1:9/v1.0/")) == (
        "https://127.0.0.1:9/beta"
    )
    assert beta_url(dataclasses.replace(PUBLIC, graph_url="https://g.example/v1.0/")) == (
        "https://g.example/beta"
    )


def test_the_filter_time_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        since = datetime(2026, 1, 2, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
        assert "createdDateTime ge 2026-01-02T10:00:00Z" in sign_in_filter("a", since)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05.1234567Z", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T03:04:05.5+00:00", datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1767323045, None),
    ],
)
def test_graph_times(raw: object, parsed: datetime | None) -> None:
    assert parse_graph_time(raw) == parsed


def test_a_sign_in_record_carries_its_address_correlation_and_id() -> None:
    """Issue 13: the removal proof attributes sign-ins by ipAddress (the site's outbound
    addresses) and leaves out the daemon's own by correlationId."""
    got = parse_sign_in(
        {
            "id": "r1",
            "createdDateTime": "2026-01-02T03:04:05Z",
            "servicePrincipalCredentialKeyId": "K1",
            "ipAddress": "20.1.2.3",
            "correlationId": "5ec1e7a0-de70-4abc-8def-0123456789ab",
            "status": {"errorCode": 0},
        }
    )
    assert got is not None
    assert (got.ip_address, got.correlation_id, got.id) == (
        "20.1.2.3",
        "5ec1e7a0-de70-4abc-8def-0123456789ab",
        "r1",
    )
    bare = parse_sign_in(
        {
            "createdDateTime": "2026-01-02T03:04:05Z",
            "ipAddress": "",
            "correlationId": 7,
            "status": {"errorCode": 0},
        }
    )
    assert bare is not None
    assert (bare.ip_address, bare.correlation_id, bare.id) == (None, None, None)


def test_a_sign_in_record_is_read_and_an_unreadable_one_is_refused() -> None:
    ok = parse_sign_in(
        {
            "createdDateTime": "2026-01-02T03:04:05Z",
            "appId": "a",
            "servicePrincipalCredentialKeyId": "K1",
            "status": {"errorCode": 0, "failureReason": None},
        }
    )
    assert ok == SignIn("K1", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), True, 0, None)
    failed = parse_sign_in(
        {
            "createdDateTime": "2026-01-02T03:04:05Z",
            "status": {"errorCode": 7000215, "failureReason": "Invalid client secret"},
        }
    )
    assert failed is not None
    assert not failed.succeeded
    assert failed.key_id is None
    assert (failed.error_code, failed.failure_reason) == (7000215, "Invalid client secret")
    odd = parse_sign_in(
        {
            "createdDateTime": "2026-01-02T03:04:05Z",
            "servicePrincipalCredentialKeyId": "",
            "status": {"errorCode": 50053, "failureReason": 7},
        }
    )
    assert odd is not None
    assert (odd.key_id, odd.failure_reason, odd.succeeded) == (None, None, False)
    assert parse_sign_in({"createdDateTime": "2026-01-02T03:04:05Z", "status": None}) is None
    assert parse_sign_in("not a record") is None
    # no status code: success unknown, so the record is unreadable (never "succeeded")
    assert parse_sign_in({"createdDateTime": "2026-01-02T03:04:05Z", "status": {}}) is None
    assert (
        parse_sign_in({"createdDateTime": "2026-01-02T03:04:05Z", "status": {"errorCode": True}})
        is None
    )
    assert parse_sign_in({"status": {"errorCode": 0}}) is None


def test_last_success_counts_only_successful_sign_ins_with_that_key() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    log = SignInLog(
        app_id="a",
        since=t0,
        sign_ins=(
            SignIn("OLD", t0 + timedelta(minutes=5), False, 7000215, "bad"),
            SignIn("new", t0 + timedelta(minutes=3), True, 0, None),
            SignIn("old", t0 + timedelta(minutes=1), True, 0, None),
        ),
    )
    assert log.last_success("NEW") == t0 + timedelta(minutes=3)
    assert log.last_success("old") == t0 + timedelta(minutes=1)
    assert log.last_success("other") is None


KV1 = "https://kv1.vault.azure.net/"


def _site(key_vault_url: str, app_setting: str | None = None) -> ArmAppService:
    ref = TargetRef(
        tenant_id="t",
        app_object_id="o",
        app_client_id=None,
        key_vault_url=key_vault_url,
        secret_name="AzureAdClientSecret",
        subscription_id="s",
        resource_group="rg",
        site_name="site",
        app_setting=app_setting,
    )
    return ArmAppService(cast(Any, None), ref)  # only the pure matching is exercised


@pytest.mark.parametrize(
    ("vault_url", "value", "ours"),
    [
        (
            "https://kv1.vault.azure.net/",
            "SecretUri=https://KV1.vault.azure.net/secrets/azureadclientsecret/",
            True,
        ),
        (
            "https://kv1.vault.azure.net/",
            "SecretUri=https://kv2.vault.azure.net/secrets/AzureAdClientSecret/",
            False,
        ),
        (
            "https://kv1.vault.azure.net/",
            "SecretUri=https://kv1.vault.azure.net/secrets/Other/",
            False,
        ),
        (KV1, "VaultName=KV1;SecretName=AzureAdClientSecret", True),
        (KV1, "VaultName=kv2;SecretName=AzureAdClientSecret", False),
        (KV1, "VaultName=kv1;SecretName=Other", False),
        # a vault reached through an address names no vault: the name cannot be checked
        ("https://127.0.0.1:8443/", "VaultName=anything;SecretName=AzureAdClientSecret", True),
    ],
)
def test_which_reference_names_the_targets_secret(vault_url: str, value: str, ours: bool) -> None:
    parsed = parse_reference(f"@Microsoft.KeyVault({value})")
    assert parsed is not None
    assert _site(vault_url)._names_our_secret(parsed) is ours
